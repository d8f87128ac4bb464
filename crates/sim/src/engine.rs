//! The discrete-event serving engine: continuous batching with a waiting
//! queue, chunked prefill, decode, KV-cache accounting and preemption, timed
//! step by step by the performance model. No I/O; time is virtual seconds.

use std::collections::{HashMap, VecDeque};

use crate::perf::{Deployment, StepLoad};

/// A request as the engine sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EngineRequest {
    pub id: u64,
    pub prompt_tokens: u32,
    /// Tokens to generate (the simulated model stops exactly there).
    pub output_tokens: u32,
}

/// Something that happened in a step, at the step's end.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum EngineEvent {
    /// Token number `index` (0-based) of request `id` is ready.
    Token { id: u64, index: u32, t: f64 },
    /// The request produced its last token.
    Finished { id: u64, t: f64 },
    /// The request lost its KV cache and went back to the queue.
    Preempted { id: u64, t: f64 },
}

/// The shared prefix a request opens with, for prefix caching: a group's
/// system prompt of `group.1` tokens and, inside it, a conversation whose
/// history runs to `conversation.1` tokens (counted from the prompt's start,
/// so at least the group's). A conversation's prompts only grow: each turn's
/// whole prompt is cached as the start of the next. Keys are any stable
/// hashes of the names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PrefixKey {
    pub group: Option<(u64, u32)>,
    pub conversation: Option<(u64, u32)>,
    /// A finished request's answer is not kept in the `conversation` entry:
    /// the entry is a prompt repeated byte for byte (a later copy holds no
    /// answer), or the next turn's prompt carries the answer as text the
    /// server did not generate (a stand-in, or the real answer re-tokenized
    /// after a join, as inference-perf's multi-turn users send it), so its
    /// tokens differ from the cached ones from the answer's first token on.
    /// vLLM caches those blocks apart, free and evicted first.
    pub drop_answer: bool,
}

/// One cached prefix: its own tokens (beyond its parent's), how many running
/// sequences use it, when it was last used, and how deep it lies (0: a
/// group's system prompt, 1: a history or repeated prompt inside it).
#[derive(Debug, Clone, Copy)]
struct CacheEntry {
    tokens: u64,
    refs: u32,
    last_use: u64,
    depth: u8,
}

/// The entry of `pool` (the GPU cache or CPU memory) to evict next, of those
/// no running sequence uses: least recently used first; of entries last
/// used together, the deeper first (vLLM frees a request's blocks tail
/// first); then by key, so a replay never depends on a map's order.
fn evict_victim(pool: &HashMap<u64, CacheEntry>) -> Option<u64> {
    pool.iter()
        .filter(|(_, e)| e.refs == 0)
        .min_by_key(|(k, e)| (e.last_use, std::cmp::Reverse(e.depth), **k))
        .map(|(k, _)| *k)
}

#[derive(Debug, Clone)]
struct Seq {
    req: EngineRequest,
    prefix: PrefixKey,
    /// Cache keys this sequence holds a reference on.
    pins: [Option<u64>; 2],
    arrival: f64,
    /// Tokens whose KV is computed (prompt, then recomputed output after a
    /// preemption).
    computed: u32,
    /// Tokens to compute before decoding resumes.
    to_prefill: u32,
    generated: u32,
    /// Context before this sequence's own KV (its cached prefix).
    base: u32,
    /// Tokens of KV this sequence holds itself: reserved for its prompt at
    /// admission, then one more per output token.
    own: u64,
    /// KV-cache tokens held for them, in whole blocks.
    held: u64,
    /// Tokens of its KV saved to CPU memory when it was preempted.
    offloaded: u32,
}

impl Seq {
    fn context(&self) -> u32 {
        self.computed
    }
}

/// Counters the server exposes as metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct EngineCounters {
    pub preemptions: u64,
    pub prompt_tokens: u64,
    pub generation_tokens: u64,
    pub steps: u64,
    pub finished: u64,
    /// Tokens looked up in the prefix cache at admission (the prompt, and
    /// for a preempted sequence its prompt and output so far, at each
    /// admission), as vLLM counts its prefix-cache queries.
    pub prefix_query_tokens: u64,
    /// Of those, tokens served from the prefix cache instead of computed.
    pub prefix_hit_tokens: u64,
    /// KV tokens copied back from CPU memory (offloaded prefixes and
    /// preempted sequences) instead of recomputed.
    pub reloaded_tokens: u64,
}

/// What one step did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepSummary {
    pub start: f64,
    pub end: f64,
    pub decode_seqs: u32,
    pub prefill_tokens: u32,
}

/// The engine state.
#[derive(Debug, Clone)]
pub struct ServingEngine {
    d: Deployment,
    now: f64,
    waiting: VecDeque<Seq>,
    running: Vec<Seq>,
    kv_capacity: u64,
    kv_used: u64,
    counters: EngineCounters,
    /// Automatic prefix caching (vLLM's default): cached prefixes stay in
    /// the KV cache, shared by every sequence using them and counted once,
    /// until space is needed and no running sequence uses them.
    prefix_caching: bool,
    cache: HashMap<u64, CacheEntry>,
    kv_cached: u64,
    /// Of `kv_cached`, tokens of entries no running sequence uses: free to
    /// evict, and free in vLLM's usage gauge.
    kv_idle: u64,
    tick: u64,
    /// Tokens per KV block.
    block: u64,
    /// KV tokens, in whole blocks, a sequence's linear-attention state holds
    /// whatever its length.
    state_held: u64,
    /// KV offload to CPU memory: prefixes evicted from the GPU cache.
    cpu: HashMap<u64, CacheEntry>,
    cpu_capacity: u64,
    cpu_used: u64,
    /// KV tokens to copy from CPU memory before the next step computes.
    reload_tokens: u64,
    /// Start and end of the last step: with async scheduling the step
    /// after it was scheduled while it ran, once the engine core's CPU
    /// work for it was done, so only requests that had reached the engine
    /// core by then are in it.
    last_step: Option<(f64, f64)>,
}

impl ServingEngine {
    pub fn new(deployment: Deployment) -> ServingEngine {
        let kv_capacity = deployment.kv_capacity_tokens.max(1.0).floor() as u64;
        let prefix_caching = deployment.prefix_caching;
        let block = deployment.block_size.max(1) as u64;
        let state_held = (deployment.state_tokens_per_seq.ceil() as u64).div_ceil(block) * block;
        let cpu_capacity = deployment.cpu_offload_tokens.max(0.0).floor() as u64;
        ServingEngine {
            d: deployment,
            now: 0.0,
            waiting: VecDeque::new(),
            running: Vec::new(),
            kv_capacity,
            kv_used: 0,
            counters: EngineCounters::default(),
            prefix_caching,
            cache: HashMap::new(),
            kv_cached: 0,
            kv_idle: 0,
            tick: 0,
            block,
            state_held,
            cpu: HashMap::new(),
            cpu_capacity,
            cpu_used: 0,
            reload_tokens: 0,
            last_step: None,
        }
    }

    /// KV-cache tokens, in whole blocks, that `own` tokens of a sequence
    /// hold after `base` tokens of context (sliding-window layers keep at
    /// most their window), with the blocks of its linear-attention state,
    /// which it holds whatever its length.
    fn footprint(&self, base: u32, own: u64) -> u64 {
        let b = base as f64;
        let tokens = (self.d.attended(b + own as f64) - self.d.attended(b)).ceil().max(0.0) as u64;
        tokens.div_ceil(self.block) * self.block + self.state_held
    }

    /// KV tokens held in CPU memory.
    pub fn cpu_offload_tokens(&self) -> u64 {
        self.cpu_used
    }

    /// Turns prefix caching on or off (default: the deployment's setting).
    pub fn set_prefix_caching(&mut self, on: bool) {
        self.prefix_caching = on;
    }

    pub fn deployment(&self) -> &Deployment {
        &self.d
    }
    /// Virtual time in seconds.
    pub fn now(&self) -> f64 {
        self.now
    }
    /// Moves the clock forward (idle time); never backwards.
    pub fn advance_to(&mut self, t: f64) {
        if t > self.now {
            self.now = t;
        }
    }
    pub fn num_running(&self) -> usize {
        self.running.len()
    }
    pub fn num_waiting(&self) -> usize {
        self.waiting.len()
    }
    pub fn has_work(&self) -> bool {
        !self.running.is_empty() || !self.waiting.is_empty()
    }
    /// `None` while the engine has work it can do now; else the time the
    /// first queued request reaches it (infinity when nothing is queued).
    pub fn idle_until(&self) -> Option<f64> {
        if !self.running.is_empty() {
            return None;
        }
        match self.waiting.front() {
            Some(s) if s.arrival <= self.now => None,
            Some(s) => Some(s.arrival),
            None => Some(f64::INFINITY),
        }
    }
    /// Share of the KV cache in use, 0..1: running sequences' blocks and
    /// the cached prefixes they use. As in vLLM's `kv_cache_usage_perc`,
    /// cached blocks no sequence uses count as free (they are evicted on
    /// demand).
    pub fn kv_usage(&self) -> f64 {
        (self.kv_used + self.kv_cached.saturating_sub(self.kv_idle)) as f64 / self.kv_capacity as f64
    }
    /// KV-cache tokens held by cached prefixes (shared, counted once).
    pub fn kv_cached_tokens(&self) -> u64 {
        self.kv_cached
    }
    pub fn kv_capacity_tokens(&self) -> u64 {
        self.kv_capacity
    }
    pub fn counters(&self) -> EngineCounters {
        self.counters
    }

    /// Queues a request arriving now.
    pub fn submit(&mut self, req: EngineRequest) {
        self.submit_with_prefix(req, PrefixKey::default());
    }

    /// Queues a request arriving now that opens with a shared prefix.
    pub fn submit_with_prefix(&mut self, req: EngineRequest, prefix: PrefixKey) {
        self.submit_at(req, prefix, self.now);
    }

    /// Queues a request that reaches the engine core at `ready`: it is not
    /// scheduled earlier. `ready` may lie before now, in the step that just
    /// ran (a driver hands over what arrived during a step when it ends):
    /// with async scheduling that decides whether it made the step after.
    /// Requests must be submitted in the order of their `ready` times
    /// (first come, first served).
    pub fn submit_at(&mut self, req: EngineRequest, prefix: PrefixKey, ready: f64) {
        let req =
            EngineRequest { prompt_tokens: req.prompt_tokens.max(1), output_tokens: req.output_tokens.max(1), ..req };
        self.counters.prompt_tokens += req.prompt_tokens as u64;
        self.waiting.push_back(Seq {
            req,
            prefix,
            pins: [None, None],
            arrival: ready,
            computed: 0,
            to_prefill: req.prompt_tokens,
            generated: 0,
            base: 0,
            own: 0,
            held: 0,
            offloaded: 0,
        });
    }

    /// Drops a queued or running request and frees its KV cache. Returns
    /// whether it was there.
    pub fn abort(&mut self, id: u64) -> bool {
        if let Some(i) = self.running.iter().position(|s| s.req.id == id) {
            let s = self.running.remove(i);
            self.kv_used -= s.held;
            self.unpin(&s.pins);
            return true;
        }
        if let Some(i) = self.waiting.iter().position(|s| s.req.id == id) {
            if let Some(s) = self.waiting.remove(i) {
                self.cpu_used -= s.offloaded as u64;
            }
            return true;
        }
        false
    }

    /// Arrival time of a queued or running request (virtual seconds).
    pub fn arrival_of(&self, id: u64) -> Option<f64> {
        self.running.iter().chain(self.waiting.iter()).find(|s| s.req.id == id).map(|s| s.arrival)
    }

    /// Moves waiting requests that reached the engine core by `cutoff` into
    /// the running set, while slots and KV room last.
    fn admit(&mut self, cutoff: f64) {
        let max = self.d.max_num_seqs as usize;
        while self.running.len() < max {
            let Some(front) = self.waiting.front() else {
                break;
            };
            if front.arrival > cutoff {
                break;
            }
            let (prefix_hit, pins, from_cpu) = self.lookup(&front.prefix, front.to_prefill);
            // A preempted sequence's own KV comes back from CPU memory.
            let restored = front.offloaded.min(front.to_prefill.saturating_sub(1).saturating_sub(prefix_hit));
            let cached = prefix_hit + restored;
            let base = front.computed + cached;
            let rest = (front.to_prefill - cached) as u64;
            let moved_back: u64 = from_cpu.iter().flatten().filter_map(|k| self.cpu.get(k)).map(|e| e.tokens).sum();
            let need = self.footprint(base, rest + 1) + moved_back;
            // Pinned first, so making room cannot evict what this one reuses.
            self.tick += 1;
            for k in pins.iter().flatten() {
                if let Some(e) = self.cache.get_mut(k) {
                    if e.refs == 0 {
                        self.kv_idle = self.kv_idle.saturating_sub(e.tokens);
                    }
                    e.refs += 1;
                    e.last_use = self.tick;
                } else if let Some(e) = self.cpu.get_mut(k) {
                    e.refs += 1;
                    e.last_use = self.tick;
                }
            }
            if !self.make_room(need) && !self.running.is_empty() {
                self.unpin(&pins);
                break;
            }
            // Prefixes found in CPU memory move back into the GPU cache.
            for k in from_cpu.iter().flatten() {
                if let Some(e) = self.cpu.remove(k) {
                    self.cpu_used -= e.tokens;
                    self.kv_cached += e.tokens;
                    if e.refs == 0 {
                        self.kv_idle += e.tokens;
                    }
                    self.reload_tokens += e.tokens;
                    self.counters.reloaded_tokens += e.tokens;
                    self.cache.insert(*k, e);
                }
            }
            if let Some(mut seq) = self.waiting.pop_front() {
                self.counters.prefix_query_tokens += seq.to_prefill as u64;
                self.counters.prefix_hit_tokens += prefix_hit as u64;
                self.cpu_used -= seq.offloaded as u64;
                self.reload_tokens += restored as u64;
                self.counters.reloaded_tokens += restored as u64;
                seq.offloaded = 0;
                seq.pins = pins;
                seq.computed += cached;
                seq.to_prefill -= cached;
                seq.base = base;
                seq.own = rest;
                seq.held = self.footprint(base, rest);
                self.kv_used += seq.held;
                self.running.push(seq);
            }
        }
    }

    /// Prompt tokens of a request the cache already holds (in whole
    /// blocks), the entries that hold them, and those of them that sit in
    /// CPU memory.
    fn lookup(&self, p: &PrefixKey, prompt: u32) -> (u32, [Option<u64>; 2], [Option<u64>; 2]) {
        if !self.prefix_caching {
            return (0, [None, None], [None, None]);
        }
        let find = |k: &u64| self.cache.get(k).map(|e| (e, false)).or_else(|| self.cpu.get(k).map(|e| (e, true)));
        let mut cached = 0u64;
        let mut pins = [None, None];
        let mut from_cpu = [None, None];
        let mut whole_group = true;
        if let Some((k, n)) = p.group {
            if let Some((e, cpu)) = find(&k) {
                cached = e.tokens.min(n as u64);
                pins[0] = Some(k);
                from_cpu[0] = cpu.then_some(k);
                whole_group = cached >= n as u64;
            } else {
                whole_group = false;
            }
        }
        if let (Some((k, n)), true) = (p.conversation, whole_group) {
            if let Some((e, cpu)) = find(&k) {
                let base = p.group.map(|g| g.1 as u64).unwrap_or(0);
                cached = base + e.tokens.min((n as u64).saturating_sub(base));
                pins[1] = Some(k);
                from_cpu[1] = cpu.then_some(k);
            }
        }
        // At least one prompt token is always computed (it yields the first
        // token); only whole blocks are matched.
        let cached = cached.min(prompt.saturating_sub(1) as u64) / self.block * self.block;
        (cached as u32, pins, from_cpu)
    }

    /// A finished turn of a conversation: the KV of its answer stays in the
    /// prefix cache with the prompt, as vLLM keeps every full block of a
    /// finished request, so the next turn (whose prompt repeats the answer)
    /// finds it. The last sampled token has no KV.
    fn keep_answer(&mut self, done: &Seq) {
        if !self.prefix_caching {
            return;
        }
        let (Some((k, _)), Some(pinned), false) = (done.prefix.conversation, done.pins[1], done.prefix.drop_answer)
        else {
            return;
        };
        if pinned != k {
            return;
        }
        let base = done.prefix.group.map(|g| g.1.min(done.req.prompt_tokens)).unwrap_or(0) as u64;
        let have = (done.req.prompt_tokens + done.generated).saturating_sub(1) as u64;
        if let Some(e) = self.cache.get_mut(&k) {
            let want = have.saturating_sub(base);
            if want > e.tokens {
                self.kv_cached += want - e.tokens;
                if e.refs == 0 {
                    self.kv_idle += want - e.tokens;
                }
                e.tokens = want;
            }
        }
    }

    /// Evicts unused cached prefixes, least recently used first, until
    /// `need` more tokens fit; with KV offload they move to CPU memory.
    /// Returns whether they fit.
    ///
    /// vLLM evicts a block at a time, from the front of its queue of free
    /// blocks, where a finished request's blocks go tail first: it takes
    /// only the blocks it needs, and the start of a longer prefix stays
    /// cached for the next request that opens with it. So the victim loses
    /// whole blocks from its end, as many as the room needs, and only then
    /// the next victim; with KV offload, whole entries move to CPU memory.
    fn make_room(&mut self, need: u64) -> bool {
        while self.kv_used + self.kv_cached + need > self.kv_capacity {
            let short = self.kv_used + self.kv_cached + need - self.kv_capacity;
            let trim = short.div_ceil(self.block) * self.block;
            let Some(k) = evict_victim(&self.cache) else {
                return false;
            };
            if self.cpu_capacity == 0 {
                if let Some(e) = self.cache.get_mut(&k).filter(|e| e.tokens > trim) {
                    e.tokens -= trim;
                    self.kv_cached -= trim;
                    self.kv_idle = self.kv_idle.saturating_sub(trim);
                    continue;
                }
            }
            let Some(e) = self.cache.remove(&k) else {
                return false;
            };
            self.kv_cached -= e.tokens;
            self.kv_idle = self.kv_idle.saturating_sub(e.tokens);
            if self.cpu_room(e.tokens) {
                self.cpu_used += e.tokens;
                self.cpu.insert(k, e);
            }
        }
        true
    }

    /// Makes room for `tokens` in CPU memory by dropping offloaded prefixes
    /// no waiting request is about to reload, least recently used first.
    fn cpu_room(&mut self, tokens: u64) -> bool {
        if tokens > self.cpu_capacity {
            return false;
        }
        while self.cpu_used + tokens > self.cpu_capacity {
            match evict_victim(&self.cpu).and_then(|k| self.cpu.remove(&k)) {
                Some(e) => self.cpu_used -= e.tokens,
                None => return false,
            }
        }
        true
    }

    fn unpin(&mut self, pins: &[Option<u64>; 2]) {
        for k in pins.iter().flatten() {
            if let Some(e) = self.cache.get_mut(k) {
                if e.refs == 1 {
                    self.kv_idle += e.tokens;
                }
                e.refs = e.refs.saturating_sub(1);
            } else if let Some(e) = self.cpu.get_mut(k) {
                e.refs = e.refs.saturating_sub(1);
            }
        }
    }

    /// Runs one step and reports its events through `sink`. Returns None when
    /// there is nothing to do.
    pub fn step(&mut self, sink: &mut impl FnMut(EngineEvent)) -> Option<StepSummary> {
        // With async scheduling this step was scheduled while the last one
        // ran, once the engine core's CPU work for it was done (vLLM's
        // batch queue of two): a request that reached the engine core
        // after that waits for the step after. With nothing running, no
        // step was scheduled ahead: the engine schedules now, as a
        // synchronous one does.
        let cutoff = match self.last_step {
            Some((start, end)) if self.d.async_scheduling && !self.running.is_empty() && self.now <= end => {
                (start + self.d.engine.step_floor_us.max(0.0) * 1e-6).min(end)
            }
            _ => self.now,
        };
        self.admit(cutoff);
        if self.running.is_empty() {
            // Idle until the first queued request reaches the engine core.
            let next = self.waiting.front().map(|s| s.arrival)?;
            self.advance_to(next);
            self.admit(self.now);
            if self.running.is_empty() {
                return None;
            }
        }
        // Decoding sequences need one more KV slot each; preempt the most
        // recently admitted until they fit (vLLM's recompute preemption).
        loop {
            let growth: u64 = self
                .running
                .iter()
                .filter(|s| s.to_prefill == 0)
                .map(|s| self.footprint(s.base, s.own + 1).saturating_sub(s.held))
                .sum();
            if self.make_room(growth) || self.running.len() <= 1 {
                break;
            }
            if let Some(victim) = self.running.pop() {
                self.kv_used -= victim.held;
                self.unpin(&victim.pins);
                self.counters.preemptions += 1;
                sink(EngineEvent::Preempted { id: victim.req.id, t: self.now });
                // With KV offload its computed KV is saved to CPU memory
                // (when it fits) and reloaded instead of recomputed.
                let own_computed = (victim.computed - victim.base) as u64;
                let offloaded = if own_computed > 0 && self.cpu_room(own_computed) {
                    self.cpu_used += own_computed;
                    own_computed as u32
                } else {
                    0
                };
                let redo = victim.req.prompt_tokens + victim.generated;
                self.waiting.push_front(Seq {
                    computed: 0,
                    to_prefill: redo,
                    base: 0,
                    own: 0,
                    held: 0,
                    offloaded,
                    pins: [None, None],
                    ..victim
                });
            }
        }
        // vLLM V1's order: every running decode first, then prefill chunks
        // within what is left of the step's token budget.
        let mut budget = self.d.max_batched_tokens.max(1);
        let mut load = StepLoad::default();
        let mut plan: Vec<u32> = Vec::with_capacity(self.running.len());
        for s in &self.running {
            if s.to_prefill == 0 {
                load.decode_seqs += 1;
                load.decode_context_tokens += self.d.attended(s.context() as f64);
                budget = budget.saturating_sub(1);
                plan.push(0);
            } else {
                plan.push(u32::MAX);
            }
        }
        for (s, p) in self.running.iter().zip(plan.iter_mut()) {
            if *p == u32::MAX {
                let n = s.to_prefill.min(budget);
                budget -= n;
                load.prefill_tokens += n;
                load.prefill_attention_tokens += n as f64 * self.d.attended(s.computed as f64 + n as f64 / 2.0);
                *p = n;
            }
        }
        let start = self.now;
        let cost = self.d.step(&load);
        // KV copied back from CPU memory before the step can use it.
        let reload_s = self.d.kv_transfer_s(self.reload_tokens as f64);
        self.reload_tokens = 0;
        self.now += (cost.time_s + reload_s).max(1e-9);
        let t = self.now;
        self.counters.steps += 1;
        let mut i = 0;
        while i < self.running.len() {
            let chunk = plan[i];
            let (base, own, decoding) = (self.running[i].base, self.running[i].own, self.running[i].to_prefill == 0);
            // Blocks this sequence holds after a decode step, or after its
            // prompt's start moved into the shared cache.
            let grown = if decoding { self.footprint(base, own + 1) } else { 0 };
            let s = &mut self.running[i];
            let mut emit = false;
            if decoding {
                emit = true;
                s.computed += 1;
                s.own += 1;
                if grown > s.held {
                    self.kv_used += grown - s.held;
                    s.held = grown;
                }
            } else if chunk > 0 && chunk != u32::MAX {
                s.to_prefill -= chunk;
                s.computed += chunk;
                // KV for these tokens was reserved at admission.
                emit = s.to_prefill == 0;
                if emit && self.prefix_caching {
                    let (pins, moved) = insert_prefix(&mut self.cache, &mut self.tick, &mut self.kv_idle, s);
                    s.pins = pins;
                    s.own -= moved;
                    s.base += moved as u32;
                    self.kv_cached += moved;
                    let (b, o) = (s.base, s.own);
                    let left = self.footprint(b, o);
                    let s = &mut self.running[i];
                    self.kv_used -= s.held.saturating_sub(left);
                    s.held = s.held.min(left);
                }
            }
            let s = &mut self.running[i];
            if emit {
                let index = s.generated;
                s.generated += 1;
                self.counters.generation_tokens += 1;
                sink(EngineEvent::Token { id: s.req.id, index, t });
                if s.generated >= s.req.output_tokens {
                    let done = self.running.remove(i);
                    plan.remove(i);
                    self.keep_answer(&done);
                    self.kv_used -= done.held;
                    self.unpin(&done.pins);
                    self.counters.finished += 1;
                    sink(EngineEvent::Finished { id: done.req.id, t });
                    continue;
                }
            }
            i += 1;
        }
        self.last_step = Some((start, t));
        Some(StepSummary { start, end: t, decode_seqs: load.decode_seqs, prefill_tokens: load.prefill_tokens })
    }
}

/// After a sequence's prefill: its group prefix and its whole prompt (as the
/// conversation's history) become or extend cache entries it holds a
/// reference on. Returns the
/// new pins and how many of the sequence's own KV tokens moved into the
/// shared cache.
fn insert_prefix(
    cache: &mut HashMap<u64, CacheEntry>,
    tick: &mut u64,
    idle: &mut u64,
    s: &Seq,
) -> ([Option<u64>; 2], u64) {
    *tick += 1;
    let mut pins = s.pins;
    let mut moved = 0u64;
    let prompt = s.req.prompt_tokens as u64;
    let base = s.prefix.group.map(|g| (g.1 as u64).min(prompt)).unwrap_or(0);
    let mut want = [None, None];
    if let Some((k, _)) = s.prefix.group {
        want[0] = Some((k, base));
    }
    // Conversations only grow: this whole prompt opens the next turn's.
    if let Some((k, _)) = s.prefix.conversation {
        want[1] = Some((k, prompt.saturating_sub(base)));
    }
    for (slot, w) in want.into_iter().enumerate() {
        let Some((k, tokens)) = w else { continue };
        if tokens == 0 {
            continue;
        }
        let e = cache.entry(k).or_insert(CacheEntry { tokens: 0, refs: 0, last_use: 0, depth: slot as u8 });
        // An idle entry this sequence now uses is no longer free.
        if e.refs == 0 && pins[slot] != Some(k) {
            *idle = idle.saturating_sub(e.tokens);
        }
        if tokens > e.tokens {
            moved += tokens - e.tokens;
            e.tokens = tokens;
        }
        e.last_use = *tick;
        if pins[slot] != Some(k) {
            e.refs += 1;
            pins[slot] = Some(k);
        }
    }
    (pins, moved.min(s.own))
}

/// Per-request result of an offline simulation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SimulatedRequest {
    pub id: u64,
    pub arrival: f64,
    pub first_token: f64,
    pub finished: f64,
    pub output_tokens: u32,
}

/// Summary of an offline simulation.
#[derive(Debug, Clone, PartialEq)]
pub struct OfflineSummary {
    pub requests: u64,
    pub output_tokens: u64,
    pub duration_s: f64,
    pub steps: u64,
    pub preemptions: u64,
    pub mean_ttft_s: f64,
    pub max_waiting: usize,
}

/// Drives the engine without HTTP: requests arrive at the given virtual
/// times (sorted), each is served to completion. `on_done` sees every
/// finished request.
pub fn simulate_offline(
    deployment: Deployment,
    arrivals: impl IntoIterator<Item = (f64, EngineRequest)>,
    mut on_done: impl FnMut(SimulatedRequest),
) -> OfflineSummary {
    let mut eng = ServingEngine::new(deployment);
    let mut arrivals = arrivals.into_iter().peekable();
    let mut open: std::collections::HashMap<u64, (f64, f64, u32)> = std::collections::HashMap::new();
    let mut requests = 0u64;
    let mut ttft_sum = 0.0;
    let mut max_waiting = 0usize;
    loop {
        while let Some((t, _)) = arrivals.peek() {
            if *t > eng.now() && eng.has_work() {
                break;
            }
            let Some((t, r)) = arrivals.next() else { break };
            eng.advance_to(t);
            open.insert(r.id, (t, f64::NAN, 0));
            eng.submit_at(r, PrefixKey::default(), t);
            requests += 1;
        }
        max_waiting = max_waiting.max(eng.num_waiting());
        let mut finished: Vec<u64> = Vec::new();
        let stepped = eng.step(&mut |ev| match ev {
            EngineEvent::Token { id, index, t } => {
                if let Some(e) = open.get_mut(&id) {
                    if index == 0 {
                        e.1 = t;
                    }
                    e.2 = index + 1;
                }
            }
            EngineEvent::Finished { id, .. } => finished.push(id),
            EngineEvent::Preempted { .. } => {}
        });
        for id in finished {
            if let Some((arrival, first, n)) = open.remove(&id) {
                ttft_sum += first - arrival;
                on_done(SimulatedRequest { id, arrival, first_token: first, finished: eng.now(), output_tokens: n });
            }
        }
        if stepped.is_none() && arrivals.peek().is_none() {
            break;
        }
    }
    let c = eng.counters();
    OfflineSummary {
        requests,
        output_tokens: c.generation_tokens,
        duration_s: eng.now(),
        steps: c.steps,
        preemptions: c.preemptions,
        mean_ttft_s: if requests > 0 { ttft_sum / requests as f64 } else { 0.0 },
        max_waiting,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;
    use crate::perf::DeploymentSpec;

    fn deployment(max_num_seqs: u32) -> Deployment {
        let c = Catalog::embedded().unwrap();
        Deployment::resolve(&c, &DeploymentSpec { max_num_seqs: Some(max_num_seqs), ..DeploymentSpec::default() })
            .unwrap()
    }

    #[test]
    fn single_request_timing_equals_prefill_then_decode_steps() {
        let d = deployment(8);
        let mut eng = ServingEngine::new(d.clone());
        eng.submit(EngineRequest { id: 1, prompt_tokens: 300, output_tokens: 5 });
        let mut tokens = Vec::new();
        while eng
            .step(&mut |e| {
                if let EngineEvent::Token { t, .. } = e {
                    tokens.push(t)
                }
            })
            .is_some()
        {}
        assert_eq!(tokens.len(), 5);
        let prefill = d.prefill_time_s(300, 0, 0.0);
        assert!((tokens[0] - prefill).abs() < 1e-9, "{} vs {prefill}", tokens[0]);
        let gap = d.decode_step(1, 300.0).time_s;
        assert!((tokens[1] - tokens[0] - gap).abs() < 1e-9);
    }

    #[test]
    fn a_request_is_not_scheduled_before_it_reaches_the_engine() {
        let d = deployment(8);
        let mut eng = ServingEngine::new(d.clone());
        eng.submit_at(EngineRequest { id: 1, prompt_tokens: 300, output_tokens: 2 }, PrefixKey::default(), 0.5);
        assert_eq!(eng.idle_until(), Some(0.5));
        let mut first = f64::NAN;
        while eng
            .step(&mut |e| {
                if let EngineEvent::Token { t, index: 0, .. } = e {
                    first = t
                }
            })
            .is_some()
        {}
        let prefill = d.prefill_time_s(300, 0, 0.0);
        assert!((first - 0.5 - prefill).abs() < 1e-9, "{first}");
    }

    #[test]
    fn the_next_turn_finds_the_previous_answer_in_the_cache() {
        let mut eng = ServingEngine::new(deployment(8));
        let turn = |ctx: u32| PrefixKey { group: Some((7, 64)), conversation: Some((9, ctx)), drop_answer: false };
        // Turn one: 64 system + 100 question tokens, 2 output tokens.
        one_by_one(&mut eng, &[(1, 164, turn(64))]);
        let before = eng.counters().prefix_hit_tokens;
        // Turn two repeats the prompt and the answer, then asks 100 more.
        one_by_one(&mut eng, &[(2, 266, turn(166))]);
        let hit = eng.counters().prefix_hit_tokens - before;
        // The prompt and the answer's first token have KV (165 tokens): 160 in whole blocks.
        assert_eq!(hit, 160);
    }

    #[test]
    fn requests_beyond_max_num_seqs_wait() {
        let d = deployment(2);
        let mut eng = ServingEngine::new(d);
        for id in 0..5 {
            eng.submit(EngineRequest { id, prompt_tokens: 50, output_tokens: 20 });
        }
        eng.step(&mut |_| {});
        assert_eq!(eng.num_running(), 2);
        assert_eq!(eng.num_waiting(), 3);
    }

    #[test]
    fn kv_exhaustion_preempts_and_everything_still_finishes() {
        let mut d = deployment(16);
        d.kv_capacity_tokens = 400.0;
        let mut done = 0;
        let s = simulate_offline(
            d,
            (0..6).map(|id| (0.0, EngineRequest { id, prompt_tokens: 40, output_tokens: 60 })),
            |r| {
                assert_eq!(r.output_tokens, 60);
                done += 1;
            },
        );
        assert_eq!(done, 6);
        assert!(s.preemptions > 0, "expected preemptions, got {s:?}");
    }

    #[test]
    fn aborting_frees_the_slot_and_the_kv_cache() {
        let mut eng = ServingEngine::new(deployment(1));
        eng.submit(EngineRequest { id: 1, prompt_tokens: 100, output_tokens: 50 });
        eng.submit(EngineRequest { id: 2, prompt_tokens: 100, output_tokens: 50 });
        eng.step(&mut |_| {});
        assert!(eng.kv_usage() > 0.0);
        assert_eq!(eng.num_waiting(), 1);
        assert!(eng.abort(1));
        assert_eq!(eng.kv_usage(), 0.0);
        assert!(!eng.abort(1));
        let mut first = None;
        eng.step(&mut |e| {
            if let EngineEvent::Token { id, .. } = e {
                first.get_or_insert(id);
            }
        });
        assert_eq!(first, Some(2));
    }

    #[test]
    fn offline_simulation_is_deterministic() {
        let run = || {
            let mut v = Vec::new();
            simulate_offline(
                deployment(4),
                (0..20).map(|id| {
                    (id as f64 * 0.05, EngineRequest { id, prompt_tokens: 100 + id as u32, output_tokens: 30 })
                }),
                |r| v.push((r.id, r.first_token, r.finished)),
            );
            v
        };
        assert_eq!(run(), run());
    }

    #[test]
    fn a_cached_prefix_is_prefilled_once_held_once_and_evicted_when_unused() {
        let mut d = deployment(8);
        d.kv_capacity_tokens = 3000.0;
        let key = PrefixKey { group: Some((7, 1000)), conversation: None, drop_answer: false };
        let mut eng = ServingEngine::new(d.clone());
        eng.submit_with_prefix(EngineRequest { id: 1, prompt_tokens: 1100, output_tokens: 4 }, key);
        while eng.step(&mut |_| {}).is_some() {}
        // Done: only the shared prefix stays cached.
        assert_eq!(eng.kv_cached_tokens(), 1000);
        assert_eq!(eng.counters().prefix_hit_tokens, 0);
        let mut first = None;
        let t0 = eng.now();
        eng.submit_with_prefix(EngineRequest { id: 2, prompt_tokens: 1100, output_tokens: 4 }, key);
        while eng
            .step(&mut |e| {
                if let EngineEvent::Token { index: 0, t, .. } = e {
                    first = Some(t);
                }
            })
            .is_some()
        {}
        // Whole 16-token blocks only: 992 of the 1000 shared tokens.
        assert_eq!(eng.counters().prefix_hit_tokens, 992);
        // Only the 108 other tokens were prefilled, on top of the 992 cached.
        let want = d
            .step(&StepLoad {
                prefill_tokens: 108,
                prefill_attention_tokens: 108.0 * (992.0 + 54.0),
                ..StepLoad::default()
            })
            .time_s;
        let got = first.unwrap() - t0;
        assert!((got - want).abs() < 1e-9, "{got} vs {want}");
        // Without caching the same request prefills everything.
        let mut off = ServingEngine::new(d.clone());
        off.set_prefix_caching(false);
        off.submit_with_prefix(EngineRequest { id: 3, prompt_tokens: 1100, output_tokens: 4 }, key);
        while off.step(&mut |_| {}).is_some() {}
        assert_eq!((off.kv_cached_tokens(), off.counters().prefix_hit_tokens), (0, 0));
        // A request that needs 500 tokens of room evicts that much of the
        // unused prefix, whole blocks from its end; the start stays cached.
        eng.submit(EngineRequest { id: 4, prompt_tokens: 2500, output_tokens: 2 });
        eng.step(&mut |_| {});
        assert_eq!(eng.kv_cached_tokens(), 1000 - 512);
        assert!(eng.kv_usage() <= 1.0);
    }

    fn knobbed(gpu: &str, model: &str, quant: &str, knobs: crate::perf::EngineKnobs) -> Deployment {
        on_engine(gpu, model, quant, "vllm", knobs)
    }

    fn on_engine(gpu: &str, model: &str, quant: &str, engine: &str, knobs: crate::perf::EngineKnobs) -> Deployment {
        let c = Catalog::embedded().unwrap();
        let spec = DeploymentSpec {
            gpu: gpu.into(),
            model: model.into(),
            quant: quant.into(),
            engine: engine.into(),
            knobs,
            ..DeploymentSpec::default()
        };
        Deployment::resolve(&c, &spec).unwrap()
    }

    #[test]
    fn decodes_go_first_and_prefill_chunks_fill_the_rest_of_the_token_budget() {
        // Synchronous scheduling, so the request that arrives last joins
        // the very next step (the async lag has a test of its own).
        let knobs = crate::perf::EngineKnobs {
            max_num_batched_tokens: Some(64),
            async_scheduling: Some(false),
            ..Default::default()
        };
        let d = knobbed("h100-sxm", "llama-3.1-8b", "fp8", knobs);
        assert_eq!(d.max_batched_tokens, 64);
        let mut eng = ServingEngine::new(d);
        for id in 0..10 {
            eng.submit(EngineRequest { id, prompt_tokens: 20, output_tokens: 100 });
        }
        // 200 prompt tokens in chunks of at most 64 per step.
        let mut steps = Vec::new();
        while eng.num_running() < 10 || eng.running.iter().any(|s| s.to_prefill > 0) {
            steps.push(eng.step(&mut |_| {}).unwrap());
        }
        assert!(steps.iter().all(|s| s.decode_seqs + s.prefill_tokens <= 64), "{steps:?}");
        // A long prompt arriving now gets what the ten decodes leave: 54 tokens.
        eng.submit(EngineRequest { id: 99, prompt_tokens: 1000, output_tokens: 4 });
        let s = eng.step(&mut |_| {}).unwrap();
        assert_eq!((s.decode_seqs, s.prefill_tokens), (10, 54));
    }

    #[test]
    fn with_async_scheduling_a_request_arriving_mid_step_joins_the_step_after_next() {
        // Ten sequences decoding, then one more request reaching the engine
        // core at a given instant of a step. Returns the prefill tokens of
        // the three steps after that one.
        let joins = |async_scheduling: bool, into_step: f64| -> (f64, Vec<u32>) {
            let knobs = crate::perf::EngineKnobs { async_scheduling: Some(async_scheduling), ..Default::default() };
            let mut eng = ServingEngine::new(knobbed("h100-sxm", "llama-3.1-8b", "fp8", knobs));
            for id in 0..10 {
                eng.submit(EngineRequest { id, prompt_tokens: 20, output_tokens: 100 });
            }
            eng.step(&mut |_| {});
            let busy = eng.step(&mut |_| {}).unwrap();
            assert_eq!((busy.decode_seqs, busy.prefill_tokens), (10, 0));
            let arrival = busy.start + into_step * (busy.end - busy.start);
            eng.submit_at(
                EngineRequest { id: 99, prompt_tokens: 300, output_tokens: 4 },
                PrefixKey::default(),
                arrival,
            );
            let next: Vec<u32> = (0..3).map(|_| eng.step(&mut |_| {}).unwrap().prefill_tokens).collect();
            (busy.end - busy.start, next)
        };
        let floor = Catalog::embedded().unwrap().engine("vllm").unwrap().step_floor_us * 1e-6;
        // The step is longer than the engine core's CPU work, so the step
        // after it is scheduled while it still runs.
        let (step, sync_mid) = joins(false, 0.5);
        assert!(step > 1.5 * floor, "{step} vs {floor}");
        // Synchronous: scheduled when the step ends, with the newcomer.
        assert_eq!(sync_mid, vec![300, 0, 0]);
        // Async: the next step was scheduled once the engine core's CPU
        // work for this one was done; the newcomer waits one step more.
        assert_eq!(joins(true, 0.9).1, vec![0, 300, 0]);
        // Arriving before that, it makes the next step.
        assert_eq!(joins(true, 0.5 * floor / step).1, vec![300, 0, 0]);
        // An idle engine schedules a lone request at once.
        let knobs = crate::perf::EngineKnobs { async_scheduling: Some(true), ..Default::default() };
        let mut eng = ServingEngine::new(knobbed("h100-sxm", "llama-3.1-8b", "fp8", knobs));
        eng.submit(EngineRequest { id: 1, prompt_tokens: 20, output_tokens: 1 });
        let first = eng.step(&mut |_| {}).unwrap();
        assert!(eng.step(&mut |_| {}).is_none());
        eng.submit_at(
            EngineRequest { id: 2, prompt_tokens: 300, output_tokens: 4 },
            PrefixKey::default(),
            first.end + 1.0,
        );
        let s = eng.step(&mut |_| {}).unwrap();
        assert_eq!((s.start, s.prefill_tokens), (first.end + 1.0, 300));
    }

    #[test]
    fn kv_is_held_in_whole_blocks() {
        let knobs =
            crate::perf::EngineKnobs { block_size: Some(16), prefix_caching: Some(false), ..Default::default() };
        let mut eng = ServingEngine::new(knobbed("h100-sxm", "llama-3.1-8b", "fp8", knobs));
        let cap = eng.kv_capacity_tokens();
        assert_eq!(cap % 16, 0);
        eng.submit(EngineRequest { id: 1, prompt_tokens: 17, output_tokens: 20 });
        eng.step(&mut |_| {});
        // 17 prompt tokens: two blocks of 16.
        assert_eq!(eng.kv_used, 32);
        for _ in 0..16 {
            eng.step(&mut |_| {});
        }
        // 17 + 16 = 33 tokens of context: a third block.
        assert_eq!(eng.kv_used, 48);
        let sglang =
            crate::perf::EngineKnobs { block_size: Some(1), prefix_caching: Some(false), ..Default::default() };
        let mut eng = ServingEngine::new(knobbed("h100-sxm", "llama-3.1-8b", "fp8", sglang));
        eng.submit(EngineRequest { id: 1, prompt_tokens: 17, output_tokens: 20 });
        eng.step(&mut |_| {});
        assert_eq!(eng.kv_used, 17);
    }

    #[test]
    fn prefix_caching_follows_the_deployment_setting() {
        let key = PrefixKey { group: Some((7, 512)), conversation: None, drop_answer: false };
        let hits = |on: bool| {
            let knobs = crate::perf::EngineKnobs { prefix_caching: Some(on), ..Default::default() };
            let mut eng = ServingEngine::new(knobbed("h100-sxm", "llama-3.1-8b", "fp8", knobs));
            for id in 0..2 {
                eng.submit_with_prefix(EngineRequest { id, prompt_tokens: 600, output_tokens: 2 }, key);
                while eng.step(&mut |_| {}).is_some() {}
            }
            eng.counters().prefix_hit_tokens
        };
        assert_eq!((hits(true), hits(false)), (512, 0));
    }

    /// The usage gauge counts cached prefixes only while a running sequence
    /// uses them: the idle total kept step by step equals a scan of the
    /// cache through admissions, shared prefixes, finished turns and
    /// evictions, and an engine with nothing running reads 0 % however
    /// full its cache.
    #[test]
    fn the_usage_gauge_leaves_out_idle_cached_prefixes() {
        let mut d = knobbed("h100-sxm", "llama-3.1-8b", "fp8", crate::perf::EngineKnobs::default());
        // Room for a few prefixes and histories only: evictions happen.
        d.kv_capacity_tokens = 12_000.0;
        let mut eng = ServingEngine::new(d);
        let scan = |e: &ServingEngine| e.cache.values().filter(|c| c.refs == 0).map(|c| c.tokens).sum::<u64>();
        let mut evicted = false;
        for id in 0..40u64 {
            let key = PrefixKey {
                group: Some((id % 5, 1500)),
                conversation: Some((100 + id % 7, 1500 + 200 * (id / 7) as u32)),
                drop_answer: false,
            };
            let prompt = 1600 + 200 * (id / 7) as u32;
            eng.submit_with_prefix(EngineRequest { id, prompt_tokens: prompt, output_tokens: 30 }, key);
            for _ in 0..12 {
                let cached_before = eng.kv_cached_tokens();
                eng.step(&mut |_| {});
                evicted |= eng.kv_cached_tokens() < cached_before;
                assert_eq!(eng.kv_idle, scan(&eng), "after request {id}");
                assert!(eng.kv_usage() <= 1.0 + 1e-9);
            }
        }
        while eng.step(&mut |_| {}).is_some() {
            assert_eq!(eng.kv_idle, scan(&eng));
        }
        assert!(evicted, "the cache must evict for this test to mean anything");
        assert!(eng.kv_cached_tokens() > 0);
        assert_eq!(eng.kv_usage(), 0.0);
    }

    /// Runs requests one after another; returns the engine and each TTFT.
    fn one_by_one(eng: &mut ServingEngine, reqs: &[(u64, u32, PrefixKey)]) -> Vec<f64> {
        let mut ttfts = Vec::new();
        for &(id, prompt, key) in reqs {
            let t0 = eng.now();
            let mut first = None;
            eng.submit_with_prefix(EngineRequest { id, prompt_tokens: prompt, output_tokens: 2 }, key);
            while eng
                .step(&mut |e| {
                    if let EngineEvent::Token { index: 0, t, .. } = e {
                        first = Some(t);
                    }
                })
                .is_some()
            {}
            ttfts.push(first.unwrap() - t0);
        }
        ttfts
    }

    #[test]
    fn an_evicted_prefix_reloads_from_cpu_memory_instead_of_being_recomputed() {
        let a = PrefixKey { group: Some((1, 3200)), conversation: None, drop_answer: false };
        let b = PrefixKey { group: Some((2, 3200)), conversation: None, drop_answer: false };
        let c = PrefixKey { group: Some((3, 3200)), conversation: None, drop_answer: false };
        let reqs = [(1, 3300, a), (2, 3300, b), (3, 3300, c), (4, 3300, a)];
        let run = |offload_gb: f64| {
            let knobs = crate::perf::EngineKnobs { cpu_offload_gb: offload_gb, ..Default::default() };
            let mut d = knobbed("h100-sxm", "llama-3.1-8b", "fp8", knobs);
            // Room for two cached prefixes: c's request evicts a's.
            d.kv_capacity_tokens = 6800.0;
            let mut eng = ServingEngine::new(d);
            let t = one_by_one(&mut eng, &reqs);
            (t, eng.counters())
        };
        let (plain, c0) = run(0.0);
        let (offload, c1) = run(4.0);
        assert_eq!(c0.reloaded_tokens, 0);
        // Without offload, c's request took the 2,912 tokens it needed from
        // the end of a's prefix: a's next request finds the first 288 and
        // recomputes the rest.
        assert_eq!(c0.prefix_hit_tokens, 288, "a's prefix lost its tail");
        assert_eq!(c1.reloaded_tokens, 3200);
        assert_eq!(c1.prefix_hit_tokens, 3200);
        // Reloading 3200 tokens over PCIe 5 beats recomputing them.
        assert!(offload[3] < plain[3] * 0.5, "{offload:?} vs {plain:?}");
        assert!((offload[0] - plain[0]).abs() < 1e-12);
    }

    #[test]
    fn preempted_sequences_reload_their_kv_with_offload() {
        let run = |offload_gb: f64| {
            let knobs = crate::perf::EngineKnobs { cpu_offload_gb: offload_gb, ..Default::default() };
            let mut d = knobbed("h100-sxm", "llama-3.1-8b", "fp8", knobs);
            d.kv_capacity_tokens = 400.0;
            let mut done = 0;
            let mut eng = ServingEngine::new(d);
            for id in 0..6 {
                eng.submit(EngineRequest { id, prompt_tokens: 40, output_tokens: 60 });
            }
            while eng
                .step(&mut |e| {
                    if let EngineEvent::Finished { .. } = e {
                        done += 1
                    }
                })
                .is_some()
            {}
            (done, eng.counters(), eng.cpu_offload_tokens())
        };
        let (done, c, left) = run(1.0);
        assert_eq!(done, 6);
        assert!(c.preemptions > 0 && c.reloaded_tokens > 0, "{c:?}");
        assert_eq!(left, 0, "everything reloaded frees the CPU space");
        let (_, plain, _) = run(0.0);
        assert_eq!(plain.reloaded_tokens, 0);
        assert!(c.prompt_tokens == plain.prompt_tokens);
    }

    /// Qwen3-Next's 36 Gated DeltaNet layers keep a state of fixed size per
    /// sequence: a sequence holds its blocks whatever its length, and each
    /// decode step reads and writes it back; the KV cache per token is the
    /// twelve attention layers'. vLLM pads each layer's state (1,097,728
    /// bytes) to one page of the attention layers' KV (2,048 bytes a token
    /// a layer): the block grows to 544 tokens (536 rounded up to 16), and
    /// a sequence's states take 36 pages, 36 x 544 / 12 tokens of the
    /// pool. Prefix caching is off unless asked for.
    #[test]
    fn linear_attention_state_is_held_per_sequence_and_read_every_step() {
        let d = knobbed("h200", "qwen3-next-80b-a3b", "fp8", crate::perf::EngineKnobs::default());
        let state = 36.0 * d.model.linear_state_bytes;
        assert_eq!(d.kv_bytes_per_token, 12.0 * 2.0 * 2.0 * 256.0 * 2.0);
        assert_eq!((d.block_size, d.state_tokens_per_seq, d.prefix_caching), (544, 1632.0, false));
        let asked = crate::perf::EngineKnobs { prefix_caching: Some(true), ..Default::default() };
        assert!(knobbed("h200", "qwen3-next-80b-a3b", "fp8", asked).prefix_caching);
        // An engine without vLLM's pages keeps the state in its own bytes.
        let own = on_engine("h200", "qwen3-next-80b-a3b", "fp8", "sglang", crate::perf::EngineKnobs::default());
        assert!((own.state_tokens_per_seq - state / own.kv_bytes_per_token).abs() < 1e-9);
        assert!(own.prefix_caching && own.block_size < 544);
        let mut eng = ServingEngine::new(d.clone());
        eng.submit(EngineRequest { id: 1, prompt_tokens: 100, output_tokens: 3 });
        while eng.running.iter().any(|s| s.to_prefill > 0) || eng.num_running() == 0 {
            eng.step(&mut |_| {});
        }
        assert_eq!(eng.kv_used, 544 + 1632);
        // Eight sequences read and write eight states a step, whatever their context.
        let mut stateless = d.clone();
        stateless.model.linear_state_bytes = 0.0;
        for ctx in [100.0, 10_000.0] {
            let extra = d.decode_step(8, ctx).bytes_per_gpu - stateless.decode_step(8, ctx).bytes_per_gpu;
            assert!((extra - 8.0 * 2.0 * state).abs() < 1.0, "{extra}");
        }
        assert!(d.kv_seqs(1000.0) as f64 <= d.kv_capacity_tokens / (1000.0 + d.state_tokens_per_seq));
    }

    /// vLLM 0.19.1 logs "Setting attention block size to 528 tokens" for
    /// Qwen3.5-4B (vLLM issue #40696): its FP32 state of 32 heads of
    /// 128 x 128 and its convolution's 16-bit inputs, 2,146,304 bytes a
    /// layer, over 4,096 bytes of KV a token a layer, is 524 tokens,
    /// rounded up to 528.
    #[test]
    fn the_attention_block_grows_to_hold_a_linear_layer_s_state() {
        let dir = std::env::temp_dir().join(format!("fleetbench-sim-qwen35-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("config.json");
        std::fs::write(
            &config,
            r#"{"model_type": "qwen3_5", "text_config": {"model_type": "qwen3_5_text", "num_hidden_layers": 32,
                "hidden_size": 2560, "intermediate_size": 9216, "num_attention_heads": 16, "num_key_value_heads": 4,
                "head_dim": 256, "full_attention_interval": 4, "vocab_size": 248320, "attn_output_gate": true,
                "linear_conv_kernel_dim": 4, "linear_key_head_dim": 128, "linear_num_key_heads": 16,
                "linear_num_value_heads": 32, "linear_value_head_dim": 128, "mamba_ssm_dtype": "float32"}}"#,
        )
        .unwrap();
        let d = knobbed("a100-80gb", config.to_str().unwrap(), "bf16", crate::perf::EngineKnobs::default());
        std::fs::remove_dir_all(&dir).ok();
        assert_eq!((d.model.linear_layers, d.model.linear_state_bytes), (24, 2_146_304.0));
        assert_eq!(d.block_size, 528);
    }

    #[test]
    fn sliding_window_layers_keep_only_their_window() {
        // Mistral 7B v0.1: every layer slides over 4096 tokens.
        let d = knobbed("h100-sxm", "mistral-7b-v0.1", "fp16", crate::perf::EngineKnobs::default());
        assert_eq!((d.model.sliding_window, d.model.sliding_layers), (4096, 32));
        let mut eng = ServingEngine::new(d.clone());
        eng.set_prefix_caching(false);
        eng.submit(EngineRequest { id: 1, prompt_tokens: 8000, output_tokens: 3 });
        while eng.running.iter().any(|s| s.to_prefill > 0) || eng.num_running() == 0 {
            eng.step(&mut |_| {});
        }
        assert_eq!(eng.kv_used, 4096);
        // And a decode step at 8000 tokens of context reads 4096 of them.
        assert_eq!(d.decode_step(1, 8000.0).bytes_per_gpu, d.decode_step(1, 4096.0).bytes_per_gpu);
    }
}
