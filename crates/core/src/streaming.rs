//! The run figures in bounded memory: one pass over the records (in issue
//! order) feeds counts, running sums, latency samples that switch from
//! exact values to a log-linear histogram past a size, and a bounded
//! reservoir for the bootstrap intervals. [`RunMetrics::compute`] is the
//! same pass without bounds, so up to [`Limits::BOUNDED`]'s sizes both give
//! the same figures bit for bit; beyond them a percentile is within
//! [`HISTOGRAM_RELATIVE_ERROR`] of the exact one, means, standard
//! deviations, counts, sums and throughputs stay exact, and the intervals
//! come from the reservoir (see [`FigureStream::finish`]).

use std::collections::BTreeMap;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::metrics::{RunMetrics, SteadyState};
use crate::outcome::{RequestRecord, TokenSource};
use crate::stats::{self, Interval, Summary};
use crate::Slo;

/// Mantissa bits a histogram bucket keeps: 2^10 buckets per power of two.
const MANTISSA_BITS: u32 = 10;
const SHIFT: u32 = 52 - MANTISSA_BITS;

/// The largest relative error of a value read from a [`LogHistogram`]: a
/// bucket spans 2^-10 of its lower bound and is read at its midpoint, so
/// 2^-11 (0.049 %); percentiles interpolated between two such values keep it.
pub const HISTOGRAM_RELATIVE_ERROR: f64 = 1.0 / 2048.0;

/// Counts of finite values in log-linear buckets (an HDR histogram over the
/// bits of an `f64`): memory grows with the range of the values (8 KB per
/// power of two in use), never with their number; recording is O(1).
#[derive(Debug, Clone, Default)]
pub struct LogHistogram {
    /// Negative values by the bucket of their magnitude.
    negative: Buckets,
    zero: u64,
    positive: Buckets,
    count: u64,
}

const ROW: usize = 1 << MANTISSA_BITS;

/// Bucket counts of positive magnitudes, one row of 2^10 per exponent.
#[derive(Debug, Clone, Default)]
struct Buckets {
    rows: Vec<Option<Box<[u64; ROW]>>>,
}

impl Buckets {
    fn add(&mut self, magnitude: f64) {
        let key = (magnitude.to_bits() >> SHIFT) as usize;
        let (row, col) = (key >> MANTISSA_BITS, key & (ROW - 1));
        if self.rows.len() <= row {
            self.rows.resize_with(row + 1, || None);
        }
        self.rows[row].get_or_insert_with(|| Box::new([0; ROW]))[col] += 1;
    }

    /// (bucket key, count) of every bucket in use, ascending.
    fn iter(&self) -> impl DoubleEndedIterator<Item = (u64, u64)> + '_ {
        self.rows.iter().enumerate().filter_map(|(r, row)| row.as_ref().map(|row| (r, row))).flat_map(|(r, row)| {
            row.iter().enumerate().filter(|(_, n)| **n > 0).map(move |(c, n)| (((r << MANTISSA_BITS) | c) as u64, *n))
        })
    }
}

impl LogHistogram {
    pub fn record(&mut self, v: f64) {
        if !v.is_finite() {
            return;
        }
        self.count += 1;
        if v == 0.0 {
            self.zero += 1;
        } else if v > 0.0 {
            self.positive.add(v);
        } else {
            self.negative.add(-v);
        }
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// The middle of a bucket: its lower bound with the next mantissa bit set.
    fn middle(key: u64) -> f64 {
        f64::from_bits((key << SHIFT) | (1 << (SHIFT - 1)))
    }

    /// The value of rank `k` (0-based, ascending), as its bucket's middle.
    pub fn value_at_rank(&self, k: u64) -> Option<f64> {
        if k >= self.count {
            return None;
        }
        let mut seen = 0u64;
        for (key, n) in self.negative.iter().rev() {
            seen += n;
            if k < seen {
                return Some(-Self::middle(key));
            }
        }
        seen += self.zero;
        if k < seen {
            return Some(0.0);
        }
        for (key, n) in self.positive.iter() {
            seen += n;
            if k < seen {
                return Some(Self::middle(key));
            }
        }
        None
    }
}

/// One latency figure's values: kept exactly up to `cap` values, then
/// folded into a [`LogHistogram`]; count, sum, mean, variance, minimum and
/// maximum are always exact (running).
#[derive(Debug, Clone)]
pub struct Sample {
    exact: Vec<f64>,
    cap: usize,
    histogram: Option<LogHistogram>,
    count: u64,
    mean: f64,
    m2: f64,
    min: f64,
    max: f64,
}

impl Sample {
    pub fn new(cap: usize) -> Sample {
        Sample {
            exact: Vec::new(),
            cap,
            histogram: None,
            count: 0,
            mean: 0.0,
            m2: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
        }
    }

    /// Adds a value; values that are not finite are left out, as
    /// [`Summary::of`] leaves them out.
    pub fn add(&mut self, v: f64) {
        if !v.is_finite() {
            return;
        }
        self.count += 1;
        let delta = v - self.mean;
        self.mean += delta / self.count as f64;
        self.m2 += delta * (v - self.mean);
        self.min = self.min.min(v);
        self.max = self.max.max(v);
        match &mut self.histogram {
            Some(h) => h.record(v),
            None => {
                self.exact.push(v);
                if self.exact.len() > self.cap {
                    let mut h = LogHistogram::default();
                    for x in std::mem::take(&mut self.exact) {
                        h.record(x);
                    }
                    self.histogram = Some(h);
                }
            }
        }
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// Whether every value is still held (the summary is then exact).
    pub fn is_exact(&self) -> bool {
        self.histogram.is_none()
    }

    /// The mean (running).
    pub fn mean(&self) -> Option<f64> {
        (self.count > 0).then_some(self.mean)
    }

    /// The summary: [`Summary::of`] the values while they are all held;
    /// afterwards exact count, mean, std, min and max, and percentiles
    /// (numpy's linear interpolation between ranks) from the histogram,
    /// within [`HISTOGRAM_RELATIVE_ERROR`].
    pub fn summary(&self) -> Option<Summary> {
        let h = match &self.histogram {
            None => return Summary::of(&self.exact),
            Some(h) => h,
        };
        if self.count == 0 {
            return None;
        }
        let n = self.count;
        let at = |k: u64| {
            if k == 0 {
                self.min
            } else if k + 1 == n {
                self.max
            } else {
                h.value_at_rank(k).unwrap_or(f64::NAN).clamp(self.min, self.max)
            }
        };
        let q = |p: f64| {
            let rank = p / 100.0 * (n - 1) as f64;
            let (lo, hi) = (rank.floor() as u64, rank.ceil() as u64);
            let (a, b) = (at(lo), at(hi));
            a + (b - a) * (rank - lo as f64)
        };
        Some(Summary {
            count: n as usize,
            mean: self.mean,
            median: q(50.0),
            std: (self.m2 / n as f64).max(0.0).sqrt(),
            min: self.min,
            max: self.max,
            p50: q(50.0),
            p90: q(90.0),
            p95: q(95.0),
            p99: q(99.0),
            p999: (n >= 1000).then(|| q(99.9)),
        })
    }
}

/// How much a [`FigureStream`] holds exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Values per per-request latency figure (TTFT, TPOT, E2EL, queue time,
    /// tok/s) kept exactly.
    pub values: usize,
    /// Inter-token gaps kept exactly.
    pub itl_values: usize,
    /// Requests in the bootstrap reservoir.
    pub reservoir: usize,
}

impl Limits {
    /// Everything exact: what [`RunMetrics::compute`] uses.
    pub const UNBOUNDED: Limits = Limits { values: usize::MAX, itl_values: usize::MAX, reservoir: usize::MAX };
    /// What a measured run holds: about 4 MB at most, whatever its length.
    /// Runs of up to 20,000 requests and 200,000 token gaps get exactly the
    /// unbounded figures.
    pub const BOUNDED: Limits = Limits { values: 20_000, itl_values: 200_000, reservoir: 20_000 };
}

/// What must be known of the measured (not warm-up) records before the
/// pass: when they start and end, and each agent's first send and last end
/// (for the steady state). The store answers it with one query.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Spans {
    pub sent: u64,
    /// First send and last end of the measured records.
    pub start: f64,
    pub end: f64,
    /// First send and last end of each agent, ascending by agent; `None`
    /// when a measured record has no agent (open loop).
    pub agents: Option<Vec<(f64, f64)>>,
}

impl Spans {
    /// The spans of `records`' measured requests.
    pub fn of(records: &[RequestRecord]) -> Spans {
        let mut spans = Spans { start: f64::INFINITY, end: f64::NEG_INFINITY, ..Default::default() };
        let mut agents: Option<BTreeMap<u32, (f64, f64)>> = Some(BTreeMap::new());
        for r in records.iter().filter(|r| !r.warmup) {
            spans.sent += 1;
            spans.start = spans.start.min(r.t_send);
            spans.end = spans.end.max(r.t_end);
            match (r.agent, agents.as_mut()) {
                (Some(a), Some(map)) => {
                    let e = map.entry(a).or_insert((f64::INFINITY, f64::NEG_INFINITY));
                    e.0 = e.0.min(r.t_send);
                    e.1 = e.1.max(r.t_end);
                }
                _ => agents = None,
            }
        }
        spans.agents = agents.map(|m| m.into_values().collect());
        spans
    }

    /// The steady-state window: from the moment every one of the `target`
    /// agents has sent until the first runs out of work.
    fn steady_window(&self, target: Option<u32>) -> Option<(f64, f64)> {
        let target = target?;
        let agents = self.agents.as_ref()?;
        if (agents.len() as u32) < target {
            return None;
        }
        let start = agents.iter().map(|a| a.0).fold(f64::NEG_INFINITY, f64::max);
        let end = agents.iter().map(|a| a.1).fold(f64::INFINITY, f64::min);
        (end > start).then_some((start, end))
    }
}

/// The equal time windows the throughput intervals resample.
const WINDOWS: usize = 10;

/// Reads one figure of a [`Drawn`] request.
type Column = fn(&Drawn) -> Option<f64>;

/// One completed request's figures, as the bootstrap resamples them.
#[derive(Debug, Clone, Copy)]
struct Drawn {
    ttft: Option<f64>,
    tpot: Option<f64>,
    e2el: Option<f64>,
    tok_s: Option<f64>,
    /// Sum (ms) and count of the request's gaps, when it has any.
    itl: Option<(f64, usize)>,
}

/// A uniform sample of at most `cap` items (Vitter's algorithm R, seeded):
/// while no more than `cap` were offered it holds all of them in order.
#[derive(Debug)]
struct Reservoir {
    items: Vec<Drawn>,
    cap: usize,
    seen: u64,
    rng: ChaCha8Rng,
}

impl Reservoir {
    fn new(cap: usize) -> Reservoir {
        Reservoir { items: Vec::new(), cap, seen: 0, rng: ChaCha8Rng::seed_from_u64(stats::BOOTSTRAP_SEED) }
    }

    fn offer(&mut self, d: Drawn) {
        self.seen += 1;
        if self.items.len() < self.cap {
            self.items.push(d);
        } else {
            let j = self.rng.random_range(0..self.seen);
            if let Some(slot) = self.items.get_mut(j as usize) {
                *slot = d;
            }
        }
    }
}

/// The figures of a run, one record at a time (see the module's doc).
#[derive(Debug)]
pub struct FigureStream {
    slo: Slo,
    spans: Spans,
    steady: Option<(f64, f64)>,
    m: RunMetrics,
    ttft: Sample,
    tpot: Sample,
    e2el: Sample,
    itl: Sample,
    queue: Sample,
    /// Time to the first answer token, and whether any response reasoned or
    /// called a tool first (else it would only repeat TTFT).
    answer_ttft: Sample,
    beyond_answer: bool,
    tool_ttft: Sample,
    /// Responses with tool calls, and those whose every call's arguments
    /// parse as a JSON object.
    tool_calling: u64,
    tool_parsed: u64,
    tok_s: Sample,
    tok_s_sum: f64,
    task_tok_s: (f64, u64),
    /// Completed requests with at least one gap.
    itl_requests: u64,
    good: u64,
    server_tokens: u64,
    event_tokens: u64,
    steady_tokens: f64,
    steady_finished: u64,
    window_tokens: Vec<f64>,
    window_requests: Vec<f64>,
    reservoir: Reservoir,
}

impl FigureStream {
    /// Ready for the records whose measured `spans` are given.
    /// `target_concurrency` (closed loop) defines the steady state.
    pub fn new(spans: Spans, slo: &Slo, target_concurrency: Option<u32>, limits: Limits) -> FigureStream {
        let steady = spans.steady_window(target_concurrency);
        FigureStream {
            slo: *slo,
            m: RunMetrics { sent: spans.sent, ..Default::default() },
            steady,
            spans,
            ttft: Sample::new(limits.values),
            tpot: Sample::new(limits.values),
            e2el: Sample::new(limits.values),
            itl: Sample::new(limits.itl_values),
            queue: Sample::new(limits.values),
            answer_ttft: Sample::new(limits.values),
            beyond_answer: false,
            tool_ttft: Sample::new(limits.values),
            tool_calling: 0,
            tool_parsed: 0,
            tok_s: Sample::new(limits.values),
            tok_s_sum: 0.0,
            task_tok_s: (0.0, 0),
            itl_requests: 0,
            good: 0,
            server_tokens: 0,
            event_tokens: 0,
            steady_tokens: 0.0,
            steady_finished: 0,
            window_tokens: vec![0.0; WINDOWS],
            window_requests: vec![0.0; WINDOWS],
            reservoir: Reservoir::new(limits.reservoir),
        }
    }

    /// The window of the run instant `t` falls in, if any.
    fn window(&self, t: f64) -> Option<usize> {
        let (start, end) = (self.spans.start, self.spans.end);
        let width = (end - start) / WINDOWS as f64;
        if width <= 0.0 || t < start || t > end {
            return None;
        }
        Some((((t - start) / width) as usize).min(WINDOWS - 1))
    }

    /// One more record, in issue order; warm-up records are ignored.
    pub fn add(&mut self, r: &RequestRecord) {
        if r.warmup {
            return;
        }
        self.queue.add(r.client_queue_time() * 1000.0);
        if let Some(e) = &r.error {
            *self.m.errors_by_kind.entry(e.label()).or_default() += 1;
        }
        if !r.ok() {
            return;
        }
        let m = &mut self.m;
        m.completed += 1;
        m.total_input_tokens += r.input_tokens.unwrap_or(0);
        m.total_output_tokens += r.output_tokens;
        m.total_reasoning_tokens += r.reasoning_tokens.unwrap_or(0);
        *m.token_source.entry(r.token_source.as_str().to_string()).or_default() += 1;
        if r.token_source == TokenSource::Server {
            self.server_tokens += r.output_tokens;
            self.event_tokens += r.event_tokens;
        }
        let ms = |v: Option<f64>| v.map(|s| s * 1000.0);
        let drawn = Drawn {
            ttft: ms(r.ttft()),
            tpot: ms(r.tpot()),
            e2el: ms(r.e2el()),
            tok_s: r.tok_s(),
            itl: (!r.itl.is_empty()).then(|| (r.itl.iter().sum::<f64>() * 1000.0, r.itl.len())),
        };
        for (sample, v) in [(&mut self.ttft, drawn.ttft), (&mut self.tpot, drawn.tpot), (&mut self.e2el, drawn.e2el)] {
            if let Some(v) = v {
                sample.add(v);
            }
        }
        for g in &r.itl {
            self.itl.add(g * 1000.0);
        }
        if let Some(v) = ms(r.answer_ttft()) {
            self.answer_ttft.add(v);
        }
        self.beyond_answer |= r.beyond_answer();
        if let Some(v) = ms(r.tool_ttft()) {
            self.tool_ttft.add(v);
        }
        if !r.tool_calls.is_empty() {
            self.tool_calling += 1;
            if r.tool_calls.iter().all(|c| c.arguments_object().is_some()) {
                self.tool_parsed += 1;
            }
        }
        if !r.itl.is_empty() {
            self.itl_requests += 1;
        }
        if let Some(v) = drawn.tok_s {
            self.tok_s.add(v);
            self.tok_s_sum += v;
        }
        if let Some(v) = r.task_tok_s() {
            self.task_tok_s.0 += v;
            self.task_tok_s.1 += 1;
        }
        if !self.slo.is_empty() && self.slo.met_by(r) {
            self.good += 1;
        }
        let instants = r.token_instants();
        let w = if instants.is_empty() { 0.0 } else { r.output_tokens as f64 / instants.len() as f64 };
        for t in instants {
            if let Some((start, end)) = self.steady {
                if t >= start && t <= end {
                    self.steady_tokens += w;
                }
            }
            if let Some(i) = self.window(t) {
                self.window_tokens[i] += w;
            }
        }
        if let Some((start, end)) = self.steady {
            if r.t_end >= start && r.t_end <= end {
                self.steady_finished += 1;
            }
        }
        if let Some(i) = self.window(r.t_end) {
            self.window_requests[i] += 1.0;
        }
        self.reservoir.offer(drawn);
    }

    /// The figures, given the most requests in flight at once (a sweep over
    /// every record's send and end: [`crate::metrics::max_in_flight`], or
    /// the store's sorted query). Bootstrap intervals resample the
    /// reservoir; when it holds a uniform part of `n_sub` of `n` requests,
    /// each interval is the m-out-of-n bootstrap's: the reservoir's
    /// interval around the reservoir's estimate, narrowed by
    /// sqrt(n_sub / n) and centred on the whole run's figure.
    pub fn finish(mut self, max_concurrent_requests: u64) -> RunMetrics {
        let mut m = std::mem::take(&mut self.m);
        if m.sent == 0 {
            return m;
        }
        m.failed = m.sent - m.completed;
        m.duration = (self.spans.end - self.spans.start).max(0.0);
        if m.duration > 0.0 {
            m.request_throughput = m.completed as f64 / m.duration;
            m.output_throughput = m.total_output_tokens as f64 / m.duration;
            m.total_token_throughput = (m.total_input_tokens + m.total_output_tokens) as f64 / m.duration;
        }
        let mut summaries = BTreeMap::new();
        for (name, sample) in [
            ("ttft", &self.ttft),
            ("tpot", &self.tpot),
            ("itl", &self.itl),
            ("e2el", &self.e2el),
            ("client_queue", &self.queue),
        ] {
            if let Some(s) = sample.summary() {
                insert_summary(&mut m.latency_ms, name, &s);
                summaries.insert(name, s);
            }
        }
        if self.beyond_answer {
            if let Some(s) = self.answer_ttft.summary() {
                insert_summary(&mut m.latency_ms, "answer_ttft", &s);
            }
        }
        if let Some(s) = self.tool_ttft.summary() {
            insert_summary(&mut m.latency_ms, "tool_ttft", &s);
        }
        m.tool_call_responses = self.tool_calling;
        if self.tool_calling > 0 {
            m.tool_args_json_pct = Some(100.0 * self.tool_parsed as f64 / self.tool_calling as f64);
        }
        let tok_s = self.tok_s.summary();
        if self.tok_s.count() > 0 {
            m.mean_tok_s = Some(self.tok_s_sum / self.tok_s.count() as f64);
        }
        m.median_tok_s = tok_s.map(|s| s.median);
        if self.task_tok_s.1 > 0 {
            m.mean_task_tok_s = Some(self.task_tok_s.0 / self.task_tok_s.1 as f64);
        }
        if !self.slo.is_empty() {
            let good = self.good as f64;
            m.request_goodput = (m.duration > 0.0).then(|| good / m.duration);
            m.slo_attainment_pct = Some(100.0 * good / m.sent as f64);
        }
        m.max_concurrent_requests = max_concurrent_requests;
        m.token_count_mismatch = self.server_tokens > 0
            && (self.server_tokens as f64 - self.event_tokens as f64).abs() / self.server_tokens as f64 > 0.02;
        m.steady_state = self.steady.map(|(start, end)| {
            let duration = end - start;
            SteadyState {
                start,
                end,
                duration,
                output_tokens: self.steady_tokens,
                output_throughput: self.steady_tokens / duration,
                request_throughput: self.steady_finished as f64 / duration,
            }
        });
        m.ci95 = self.intervals(&summaries, tok_s.as_ref());
        m
    }

    fn intervals(&self, summaries: &BTreeMap<&str, Summary>, tok_s: Option<&Summary>) -> BTreeMap<String, Interval> {
        let drawn = &self.reservoir.items;
        let all_held = drawn.len() as u64 >= self.reservoir.seen;
        let column = |f: fn(&Drawn) -> Option<f64>| drawn.iter().filter_map(f).collect::<Vec<f64>>();
        let mut ci = BTreeMap::new();
        // The reservoir's interval, or (a part of the run) the m-out-of-n
        // interval around the whole run's figure.
        let mut put =
            |key: String, iv: Option<Interval>, centre: Option<f64>, full: Option<(f64, u64)>, n_sub: usize| {
                let Some(iv) = iv else { return };
                if all_held {
                    ci.insert(key, iv);
                } else if let (Some(centre), Some((full, n))) = (centre, full) {
                    let f = (n_sub as f64 / n.max(1) as f64).sqrt();
                    ci.insert(key, Interval { lo: full + (iv.lo - centre) * f, hi: full + (iv.hi - centre) * f });
                }
            };
        let boot = Bootstrap::of(drawn);
        let figures: [(&str, Column); 3] = [("ttft", |d| d.ttft), ("tpot", |d| d.tpot), ("e2el", |d| d.e2el)];
        for (i, (name, f)) in figures.into_iter().enumerate() {
            let values = column(f);
            let s = summaries.get(name);
            let n = s.map_or(0, |s| s.count as u64);
            let [mean, median, p99] = &boot.figures[i];
            put(format!("mean_{name}_ms"), *mean, stats::mean(&values), s.map(|s| (s.mean, n)), values.len());
            for (stat, p, iv, full) in
                [("median", 50.0, median, s.map(|s| s.median)), ("p99", 99.0, p99, s.map(|s| s.p99))]
            {
                let centre = stats::percentile(&values, p);
                put(format!("{stat}_{name}_ms"), *iv, centre, full.map(|f| (f, n)), values.len());
            }
        }
        let tok = column(|d| d.tok_s);
        let full = tok_s.map(|_| (self.tok_s_sum / self.tok_s.count() as f64, self.tok_s.count()));
        put("mean_tok_s".into(), boot.tok_s, stats::mean(&tok), full, tok.len());

        // Pooled ITL mean, resampling whole requests (gaps within a request
        // are correlated).
        let per_req: Vec<(f64, usize)> = drawn.iter().filter_map(|d| d.itl).collect();
        let (sum, gaps) = per_req.iter().fold((0.0, 0usize), |a, b| (a.0 + b.0, a.1 + b.1));
        put(
            "mean_itl_ms".into(),
            boot.itl,
            (gaps > 0).then(|| sum / gaps as f64),
            self.itl.mean().map(|m| (m, self.itl_requests)),
            per_req.len(),
        );
        if let Some(iv) = stats::mean_ci(&self.window_rates(&self.window_tokens)) {
            ci.insert("output_throughput".into(), iv);
        }
        if let Some(iv) = stats::mean_ci(&self.window_rates(&self.window_requests)) {
            ci.insert("request_throughput".into(), iv);
        }
        ci
    }

    fn window_rates(&self, sums: &[f64]) -> Vec<f64> {
        let width = (self.spans.end - self.spans.start) / WINDOWS as f64;
        if width <= 0.0 {
            return Vec::new();
        }
        sums.iter().map(|s| s / width).collect()
    }
}

/// The request-level percentile bootstrap (docs/METRICS.md section 5):
/// each resample draws the completed requests with replacement once, and
/// every request-level figure's statistic is read off those draws: means
/// summed in draw order, percentiles (numpy-linear) by walking the figure's
/// values in ascending order with each request's count of draws. O(n) per
/// resample and figure, with no copy and no sort of the resample. Seeded:
/// the same records give the same intervals (the same as resampling each
/// figure on its own did, when every request has every figure).
struct Bootstrap {
    /// Mean, median and p99 intervals of TTFT, TPOT and E2EL.
    figures: [[Option<Interval>; 3]; 3],
    tok_s: Option<Interval>,
    itl: Option<Interval>,
}

impl Bootstrap {
    fn of(drawn: &[Drawn]) -> Bootstrap {
        let n = drawn.len();
        // Each figure's (value, request) pairs, ascending by value.
        let sorted = |f: fn(&Drawn) -> Option<f64>| {
            let mut v: Vec<(f64, usize)> =
                drawn.iter().enumerate().filter_map(|(i, d)| f(d).filter(|x| x.is_finite()).map(|x| (x, i))).collect();
            v.sort_by(|a, b| a.0.total_cmp(&b.0));
            v
        };
        let figures = [sorted(|d| d.ttft), sorted(|d| d.tpot), sorted(|d| d.e2el)];
        let tok_s = sorted(|d| d.tok_s);
        // Each request's value of each figure, for the means (TTFT, TPOT,
        // E2EL, tok/s), and its gaps.
        let value = |f: fn(&Drawn) -> Option<f64>| drawn.iter().map(|d| f(d).filter(|x| x.is_finite())).collect();
        let per_request: [Vec<Option<f64>>; 4] =
            [value(|d| d.ttft), value(|d| d.tpot), value(|d| d.e2el), value(|d| d.tok_s)];

        let resamples = stats::resamples_for(n);
        let mut rng = ChaCha8Rng::seed_from_u64(stats::BOOTSTRAP_SEED);
        let (mut draws, mut counts) = (vec![0usize; n], vec![0u32; n]);
        let mut values: Vec<[Vec<f64>; 3]> = (0..3).map(|_| Default::default()).collect();
        let mut tok_means = Vec::new();
        for _ in 0..if n >= 2 { resamples } else { 0 } {
            counts.iter_mut().for_each(|c| *c = 0);
            for d in draws.iter_mut() {
                *d = rng.random_range(0..n);
                counts[*d] += 1;
            }
            // Means are summed in draw order, as over a copied resample.
            let (mut sums, mut held) = ([0.0; 4], [0u64; 4]);
            for &i in &draws {
                for (f, column) in per_request.iter().enumerate() {
                    if let Some(v) = column[i] {
                        sums[f] += v;
                        held[f] += 1;
                    }
                }
            }
            for (f, out) in (0..figures.len()).zip(values.iter_mut()) {
                if let Some([p50, p99]) = percentiles(&figures[f], &counts, held[f]) {
                    out[0].push(sums[f] / held[f] as f64);
                    out[1].push(p50);
                    out[2].push(p99);
                }
            }
            if held[3] > 0 {
                tok_means.push(sums[3] / held[3] as f64);
            }
        }
        let interval = |mut v: Vec<f64>, items: usize| {
            if items < 2 {
                return None;
            }
            v.retain(|x| x.is_finite());
            v.sort_by(f64::total_cmp);
            Some(Interval { lo: stats::percentile_sorted(&v, 2.5)?, hi: stats::percentile_sorted(&v, 97.5)? })
        };
        let mut out = [[None; 3]; 3];
        for ((slot, [mean, p50, p99]), f) in out.iter_mut().zip(values).zip(&figures) {
            *slot = [interval(mean, f.len()), interval(p50, f.len()), interval(p99, f.len())];
        }
        // Pooled ITL mean, resampling whole requests (gaps within a request
        // are correlated): only those with gaps.
        let per_req: Vec<(f64, usize)> = drawn.iter().filter_map(|d| d.itl).collect();
        let pooled = |s: &[(f64, usize)]| {
            let (sum, n) = s.iter().fold((0.0, 0usize), |a, b| (a.0 + b.0, a.1 + b.1));
            if n == 0 {
                f64::NAN
            } else {
                sum / n as f64
            }
        };
        let itl = stats::bootstrap_ci(&per_req, pooled, stats::resamples_for(per_req.len()), stats::BOOTSTRAP_SEED);
        Bootstrap { figures: out, tok_s: interval(tok_means, tok_s.len()), itl }
    }
}

/// The median and p99 (numpy-linear) of the resample that holds request
/// `i` `counts[i]` times, given one figure's ascending (value, request)
/// pairs and `m`, how many of the resample's draws they hold; in one pass.
/// `None` when the resample holds none of them.
fn percentiles(sorted: &[(f64, usize)], counts: &[u32], m: u64) -> Option<[f64; 2]> {
    if m == 0 {
        return None;
    }
    // The ranks each percentile interpolates between.
    let ranks = |p: f64| {
        let r = p / 100.0 * (m - 1) as f64;
        (r.floor() as u64, (r.floor() as u64 + 1).min(m - 1), r - r.floor())
    };
    let (a, b) = (ranks(50.0), ranks(99.0));
    // (rank, slot in `at`), ascending by rank.
    let mut wanted = [(a.0, 0), (a.1, 1), (b.0, 2), (b.1, 3)];
    wanted.sort_unstable();
    let mut at = [0.0; 4];
    let (mut seen, mut k) = (0u64, 0usize);
    for &(v, i) in sorted {
        seen += u64::from(counts[i]);
        while k < wanted.len() && wanted[k].0 < seen {
            at[wanted[k].1] = v;
            k += 1;
        }
        if k == wanted.len() {
            break;
        }
    }
    Some([at[0] + (at[1] - at[0]) * a.2, at[2] + (at[3] - at[2]) * b.2])
}

pub(crate) fn insert_summary(map: &mut BTreeMap<String, f64>, name: &str, s: &Summary) {
    for (stat, v) in [
        ("mean", s.mean),
        ("median", s.median),
        ("std", s.std),
        ("p50", s.p50),
        ("p90", s.p90),
        ("p95", s.p95),
        ("p99", s.p99),
    ] {
        map.insert(format!("{stat}_{name}_ms"), v);
    }
    if let Some(v) = s.p999 {
        map.insert(format!("p999_{name}_ms"), v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::{ErrorKind, RequestError};

    /// Deterministic values spread over six orders of magnitude.
    fn spread(n: usize) -> Vec<f64> {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        (0..n).map(|_| 10f64.powf(rng.random_range(-3.0..3.0))).collect()
    }

    #[test]
    fn histogram_values_are_within_the_stated_error() {
        let values = spread(20_000);
        let mut h = LogHistogram::default();
        for v in &values {
            h.record(*v);
        }
        h.record(0.0);
        h.record(-2.5);
        h.record(f64::NAN);
        let mut sorted = values.clone();
        sorted.extend([0.0, -2.5]);
        sorted.sort_by(f64::total_cmp);
        assert_eq!(h.count(), sorted.len() as u64);
        for (k, exact) in sorted.iter().enumerate() {
            let got = h.value_at_rank(k as u64).unwrap();
            let err = if *exact == 0.0 { got.abs() } else { ((got - exact) / exact).abs() };
            assert!(err <= HISTOGRAM_RELATIVE_ERROR, "rank {k}: {got} for {exact} ({err})");
        }
        assert_eq!(h.value_at_rank(sorted.len() as u64), None);
    }

    #[test]
    fn a_sample_is_exact_until_its_cap_then_close() {
        let values = spread(5_000);
        let exact = Summary::of(&values).unwrap();
        let mut held = Sample::new(5_000);
        let mut folded = Sample::new(100);
        for v in &values {
            held.add(*v);
            folded.add(*v);
        }
        assert!(held.is_exact() && !folded.is_exact());
        assert_eq!(held.summary(), Some(exact));
        let s = folded.summary().unwrap();
        assert_eq!((s.count, s.min, s.max), (exact.count, exact.min, exact.max));
        let close = |a: f64, b: f64, tol: f64| ((a - b) / b).abs() <= tol;
        assert!(close(s.mean, exact.mean, 1e-12) && close(s.std, exact.std, 1e-9), "{s:?} {exact:?}");
        for (got, want) in [(s.p50, exact.p50), (s.p90, exact.p90), (s.p95, exact.p95), (s.p99, exact.p99)] {
            assert!(close(got, want, HISTOGRAM_RELATIVE_ERROR), "{got} vs {want}");
        }
        assert!(close(s.p999.unwrap(), exact.p999.unwrap(), HISTOGRAM_RELATIVE_ERROR));
    }

    #[test]
    fn percentiles_read_off_counts_equal_those_of_the_expanded_resample() {
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        for n in [1usize, 2, 3, 5, 40, 333] {
            let values: Vec<f64> = (0..n).map(|_| rng.random_range(0.0..100.0)).collect();
            let mut sorted: Vec<(f64, usize)> = values.iter().copied().zip(0..).collect();
            sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
            for _ in 0..20 {
                let counts: Vec<u32> = (0..n).map(|_| rng.random_range(0..3)).collect();
                let expanded: Vec<f64> =
                    values.iter().zip(&counts).flat_map(|(v, c)| std::iter::repeat_n(*v, *c as usize)).collect();
                let got = percentiles(&sorted, &counts, expanded.len() as u64);
                if expanded.is_empty() {
                    assert_eq!(got, None);
                    continue;
                }
                let [p50, p99] = got.unwrap();
                let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * b.abs().max(1.0);
                assert!(close(p50, stats::percentile(&expanded, 50.0).unwrap()), "n {n} {counts:?}");
                assert!(close(p99, stats::percentile(&expanded, 99.0).unwrap()), "n {n} {counts:?}");
            }
        }
    }

    fn records(n: u64) -> Vec<RequestRecord> {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let agents = 8;
        let mut next_send = vec![0.0; agents];
        (0..n)
            .map(|i| {
                let a = (i % agents as u64) as usize;
                let send = next_send[a];
                let ttft = rng.random_range(0.01..0.2);
                let itl: Vec<f64> = (0..rng.random_range(1..40)).map(|_| rng.random_range(0.001..0.03)).collect();
                let first = send + ttft;
                let last = first + itl.iter().sum::<f64>();
                next_send[a] = last + 0.001;
                let mut r = RequestRecord {
                    index: i,
                    agent: Some(a as u32),
                    warmup: i < 4,
                    t_sched: send,
                    t_send: send,
                    t_first_token: Some(first),
                    t_last_token: Some(last),
                    t_end: last,
                    token_events: itl.len() as u64 + 1,
                    event_tokens: itl.len() as u64 + 1,
                    output_tokens: itl.len() as u64 + 1,
                    input_tokens: Some(32),
                    token_source: TokenSource::Server,
                    itl,
                    ..Default::default()
                };
                if i % 17 == 0 {
                    r.error = Some(RequestError::new(ErrorKind::TimeoutIdle, "stalled"));
                }
                r
            })
            .collect()
    }

    fn streamed(rs: &[RequestRecord], limits: Limits) -> RunMetrics {
        let slo = Slo { ttft_ms: Some(150.0), ..Default::default() };
        let mut s = FigureStream::new(Spans::of(rs), &slo, Some(8), limits);
        for r in rs {
            s.add(r);
        }
        let measured = rs.iter().filter(|r| !r.warmup).map(|r| (r.t_send, r.t_end));
        s.finish(crate::metrics::max_in_flight(measured))
    }

    #[test]
    fn within_its_limits_the_stream_gives_the_exact_figures() {
        let rs = records(1_200);
        let slo = Slo { ttft_ms: Some(150.0), ..Default::default() };
        let exact = crate::metrics::RunMetrics::compute(&rs, &slo, Some(8));
        let bounded = Limits { values: 1_200, itl_values: 100_000, reservoir: 1_200 };
        let mut s = streamed(&rs, bounded);
        assert!(exact.steady_state.is_some() && exact.ci95.len() >= 12 && exact.failed > 0);
        s.ttfts = exact.ttfts.clone();
        s.itls = exact.itls.clone();
        s.latencies = exact.latencies.clone();
        s.input_lens = exact.input_lens.clone();
        s.output_lens = exact.output_lens.clone();
        s.errors = exact.errors.clone();
        assert_eq!(s, exact);
    }

    #[test]
    fn past_its_limits_counts_stay_exact_and_percentiles_close() {
        let rs = records(1_200);
        let slo = Slo { ttft_ms: Some(150.0), ..Default::default() };
        let exact = crate::metrics::RunMetrics::compute(&rs, &slo, Some(8));
        let s = streamed(&rs, Limits { values: 100, itl_values: 1_000, reservoir: 300 });
        assert_eq!(
            (s.sent, s.completed, s.failed, s.total_output_tokens, s.max_concurrent_requests),
            (exact.sent, exact.completed, exact.failed, exact.total_output_tokens, exact.max_concurrent_requests)
        );
        assert_eq!(s.errors_by_kind, exact.errors_by_kind);
        assert_eq!(s.steady_state, exact.steady_state);
        assert_eq!((s.slo_attainment_pct, s.output_throughput), (exact.slo_attainment_pct, exact.output_throughput));
        assert_eq!(s.latency_ms.keys().collect::<Vec<_>>(), exact.latency_ms.keys().collect::<Vec<_>>());
        for (k, want) in &exact.latency_ms {
            let got = s.latency_ms[k];
            let tol = if k.starts_with("mean") || k.starts_with("std") { 1e-9 } else { HISTOGRAM_RELATIVE_ERROR };
            let err = if *want == 0.0 { got.abs() } else { ((got - want) / want).abs() };
            assert!(err <= tol, "{k}: {got} vs {want}");
        }
        assert_eq!(s.ci95.keys().collect::<Vec<_>>(), exact.ci95.keys().collect::<Vec<_>>());
        for (k, iv) in &s.ci95 {
            let want = exact.ci95[k];
            // A reservoir of 300 of ~1,100 requests, narrowed to the whole
            // run: the same width within a third (p99 from 300 values:
            // within a half), around the run's figure. Without the narrowing
            // it would be sqrt(1,100 / 300) = 1.9 times as wide.
            let ratio = iv.half_width() / want.half_width();
            let range = if k.starts_with("p99") { 0.5..2.0 } else { 0.67..1.5 };
            assert!(range.contains(&ratio), "{k}: {iv:?} vs {want:?}");
            if let Some(v) = s.ms(k).or(s.mean_tok_s.filter(|_| k == "mean_tok_s")) {
                assert!(iv.contains(v), "{k}: {v} outside {iv:?}");
            }
        }
    }
}
