//! The per-step performance model: what one continuous-batching engine step
//! costs on a deployment (GPU x count, model, quantization, engine), and the
//! steady-state prediction per concurrency level built from it.

use serde::{Deserialize, Serialize};

use crate::catalog::{Catalog, Engine, Gpu, Interconnect, Model, Quant};
use crate::SimError;

/// Memory each GPU keeps back for activations, CUDA graphs and the runtime.
const RESERVED_GB_PER_GPU: f64 = 1.0;
/// Bytes per activation element exchanged in tensor-parallel all-reduces.
const ACTIVATION_BYTES: f64 = 2.0;
/// Tokens per step from which llama.cpp leaves its quantized mat-vec / MMQ
/// kernels for dequantise + cuBLAS GEMM (MMQ_MAX_BATCH_SIZE = 32 in the
/// 2024 CUDA backend).
const DEQUANT_GEMM_MIN_TOKENS: u32 = 32;

/// What limits a step or a concurrency level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Bottleneck {
    /// Reading weights and KV cache from memory.
    Bandwidth,
    /// Tensor-core arithmetic.
    Compute,
    /// Tensor-parallel all-reduces between GPUs.
    Interconnect,
    /// Fixed per-step and per-layer costs (launches, scheduling).
    Overhead,
    /// The KV cache cannot hold the requested concurrency.
    KvCapacity,
}

impl Bottleneck {
    pub fn as_str(self) -> &'static str {
        match self {
            Bottleneck::Bandwidth => "bandwidth",
            Bottleneck::Compute => "compute",
            Bottleneck::Interconnect => "interconnect",
            Bottleneck::Overhead => "overhead",
            Bottleneck::KvCapacity => "kv_capacity",
        }
    }
}

/// How several GPUs share a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Parallelism {
    /// Tensor parallel: every GPU holds a slice of every layer.
    Tensor,
    /// Layer split: each GPU holds whole layers and runs them in turn.
    Pipeline,
}

/// Names of the parts of a deployment, as a user types them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DeploymentSpec {
    pub gpu: String,
    pub count: u32,
    /// `None` picks a sensible link for the GPU family when count > 1.
    pub interconnect: Option<String>,
    pub model: String,
    pub quant: String,
    pub engine: String,
    /// Overrides the engine's max_num_seqs.
    pub max_num_seqs: Option<u32>,
    /// Overrides the engine's way of using several GPUs.
    pub parallelism: Option<Parallelism>,
    /// The engine as operators configure it (defaults: the engine's own).
    pub knobs: EngineKnobs,
}

/// The scheduler and memory settings an operator passes to the engine
/// (vLLM's and SGLang's flags); `None` keeps the engine's default.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EngineKnobs {
    /// Token budget of one step: decodes first, the rest prefill chunks
    /// (vLLM `--max-num-batched-tokens`, SGLang `--chunked-prefill-size`).
    pub max_num_batched_tokens: Option<u32>,
    /// Share of each GPU's memory the engine takes for weights, activations
    /// and the KV pool (vLLM `--gpu-memory-utilization`, SGLang `--mem-fraction-static`).
    pub gpu_memory_utilization: Option<f64>,
    /// Tokens per KV block (vLLM `--block-size`, SGLang `--page-size`).
    pub block_size: Option<u32>,
    /// Automatic prefix caching (vLLM; SGLang's radix cache); `None` is the
    /// engine's default for the model: on, but off in vLLM for models with
    /// linear-attention layers, where it is opt-in.
    #[serde(default)]
    pub prefix_caching: Option<bool>,
    /// CPU memory for KV blocks, GB: evicted prefixes and preempted
    /// sequences are reloaded over PCIe instead of recomputed.
    pub cpu_offload_gb: f64,
    /// Pipeline stages; the GPU count is tensor parallel x pipeline stages.
    pub pipeline_parallel: Option<u32>,
    /// Bits per KV-cache element (vLLM and SGLang `--kv-cache-dtype`: 16
    /// for `bfloat16`/`float16`, 8 for `fp8`); `None` is the engine's
    /// default (`auto`).
    #[serde(default)]
    pub kv_cache_bits: Option<f64>,
    /// vLLM's `--async-scheduling` / `--no-async-scheduling` (on by default
    /// since vLLM 0.14.0); `None` is the engine's default.
    #[serde(default)]
    pub async_scheduling: Option<bool>,
    /// Decode-only steps as one CUDA graph (vLLM's `cudagraph_mode`
    /// `FULL_AND_PIECEWISE`, its default since 0.11.0: [`cudagraph_mode`])
    /// or in pieces with attention between them (`PIECEWISE`); `None` is
    /// the engine's default.
    #[serde(default)]
    pub full_decode_graph: Option<bool>,
}

/// Whether a vLLM `cudagraph_mode` runs decode-only steps as one CUDA graph:
/// `FULL_AND_PIECEWISE` yes, `PIECEWISE` no, `auto` (or nothing) the
/// engine's default (`None`). The modes that run some steps eager (`NONE`,
/// `FULL`, `FULL_DECODE_ONLY`) are not modelled and are refused.
pub fn cudagraph_mode(mode: &str) -> Result<Option<bool>, String> {
    let m = mode.trim().to_ascii_lowercase().replace('-', "_");
    match m.as_str() {
        "" | "auto" => Ok(None),
        "full_and_piecewise" => Ok(Some(true)),
        "piecewise" => Ok(Some(false)),
        "none" | "full" | "full_decode_only" => Err(format!(
            "cudagraph mode '{mode}' runs some steps without CUDA graphs, which the simulator does not model; use piecewise or full_and_piecewise"
        )),
        _ => Err(format!("cudagraph mode '{mode}' is not one of auto, piecewise, full_and_piecewise")),
    }
}

/// Bits per KV-cache element of a `--kv-cache-dtype` value, as vLLM and
/// SGLang spell them: `auto` (the engine's default: `None`), `fp8` and its
/// variants (`fp8_e4m3`, `fp8_e5m2`), `bfloat16`/`float16`/`half`.
pub fn kv_cache_bits(dtype: &str) -> Result<Option<f64>, String> {
    let d = dtype.trim().to_ascii_lowercase().replace('-', "_");
    match d.as_str() {
        "" | "auto" => Ok(None),
        "bfloat16" | "bf16" | "float16" | "fp16" | "half" => Ok(Some(16.0)),
        _ if d.starts_with("fp8") => Ok(Some(8.0)),
        _ => Err(format!("KV-cache dtype '{dtype}' is not one of auto, bfloat16, float16, fp8 (fp8_e4m3, fp8_e5m2)")),
    }
}

impl Default for EngineKnobs {
    fn default() -> Self {
        EngineKnobs {
            max_num_batched_tokens: None,
            gpu_memory_utilization: None,
            block_size: None,
            prefix_caching: None,
            cpu_offload_gb: 0.0,
            pipeline_parallel: None,
            kv_cache_bits: None,
            async_scheduling: None,
            full_decode_graph: None,
        }
    }
}

impl Default for DeploymentSpec {
    fn default() -> Self {
        DeploymentSpec {
            gpu: "rtx3090".into(),
            count: 1,
            interconnect: None,
            model: "qwen3-coder-30b-a3b".into(),
            quant: "awq4".into(),
            engine: "vllm".into(),
            max_num_seqs: None,
            parallelism: None,
            knobs: EngineKnobs::default(),
        }
    }
}

/// A resolved deployment: the catalog entries and the derived sizes.
#[derive(Debug, Clone, Serialize)]
pub struct Deployment {
    pub gpu: Gpu,
    pub count: u32,
    pub interconnect: Interconnect,
    pub model: Model,
    pub quant: Quant,
    pub engine: Engine,
    pub parallelism: Parallelism,
    /// Tensor-parallel degree (GPUs sharing each layer).
    pub tp: u32,
    /// Pipeline stages (groups of layers run one after the other).
    pub pp: u32,
    pub max_num_seqs: u32,
    /// Token budget of one engine step (chunked prefill).
    pub max_batched_tokens: u32,
    pub gpu_memory_utilization: f64,
    /// Tokens per KV block: sequences hold whole blocks, prefixes are
    /// cached in whole blocks.
    pub block_size: u32,
    pub prefix_caching: bool,
    /// The engine core schedules the next step while the GPU runs this one,
    /// hiding its CPU work (`Engine::seq_cpu_us`) under the GPU's.
    pub async_scheduling: bool,
    /// Decode-only steps run as one CUDA graph: their per-layer cost is the
    /// engine's `decode_layer_overhead_us` (where it has one).
    pub full_decode_graph: bool,
    /// KV tokens the CPU offload space holds (0: no offload).
    pub cpu_offload_tokens: f64,
    /// Host link of each GPU (PCIe), GB/s per direction, for KV reloads.
    pub host_link_gbs: f64,
    /// Bytes of weights held in memory, all GPUs together.
    pub weight_bytes: f64,
    /// KV-cache bytes per token of context.
    pub kv_bytes_per_token: f64,
    /// Tokens of context the KV cache holds, all GPUs together.
    pub kv_capacity_tokens: f64,
    /// KV-cache tokens' worth of memory a sequence's linear-attention state
    /// takes, whatever its length (0 for a model without such layers): vLLM
    /// allocates it from the same pool.
    pub state_tokens_per_seq: f64,
    /// What resolving the names assumed (a GPU variant not stated, ...).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    // Per-step read sizes.
    dense_read_bytes: f64,
    expert_bytes_each: f64,
    #[serde(skip)]
    expert_routing: ExpertRouting,
}

/// Work in one engine step.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StepLoad {
    /// Sequences producing one token each.
    pub decode_seqs: u32,
    /// Sum of the context lengths of those sequences (KV read).
    pub decode_context_tokens: f64,
    /// New prompt tokens processed in this step (prefill chunk(s)).
    pub prefill_tokens: u32,
    /// Sum over prefill tokens of the context they attend to.
    pub prefill_attention_tokens: f64,
}

/// Cost of one step, split by what it spends the time on.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct StepCost {
    pub time_s: f64,
    pub memory_s: f64,
    pub compute_s: f64,
    pub interconnect_s: f64,
    pub overhead_s: f64,
    /// Separate weight-expansion pass before batched matmuls (llama.cpp's
    /// dequantise-then-GEMM path); serialised, not overlapped.
    pub dequant_s: f64,
    pub bytes_per_gpu: f64,
    pub flops_per_gpu: f64,
}

impl StepCost {
    /// The largest of the four parts.
    pub fn bottleneck(&self) -> Bottleneck {
        let parts = [
            (self.memory_s + self.dequant_s, Bottleneck::Bandwidth),
            (self.compute_s, Bottleneck::Compute),
            (self.interconnect_s, Bottleneck::Interconnect),
            (self.overhead_s, Bottleneck::Overhead),
        ];
        parts.iter().fold((f64::MIN, Bottleneck::Bandwidth), |acc, p| if p.0 > acc.0 { *p } else { acc }).1
    }
}

/// How the tokens of one step spread over the experts of a MoE layer.
///
/// A token picks `k` of the `E` experts, none twice. Routers do not pick
/// them alike: ranked by popularity, expert `i` is picked in proportion to
/// `i^-s` (the catalog's `expert_routing_zipf`), so a token picks it with
/// probability `q_i = min(1, c * i^-s)`, `c` set so that the `q_i` add up
/// to `k`. A step of `B` tokens then touches `sum(1 - (1 - q_i)^B)`
/// distinct experts: `k` for one token, fewer than `E(1 - (1 - k/E)^B)`
/// (every expert alike, `s` = 0) for a batch, all of them for a long
/// prefill.
#[derive(Debug, Clone)]
pub struct ExpertRouting {
    /// `ln(1 - q_i)` of each expert (−∞ for one every token picks).
    miss_log: Vec<f64>,
}

impl ExpertRouting {
    pub fn new(experts: u32, per_token: u32, zipf: f64) -> ExpertRouting {
        let n = experts as usize;
        let k = f64::from(per_token.min(experts));
        let weight: Vec<f64> = (1..=n).map(|i| (i as f64).powf(-zipf)).collect();
        // The most popular experts may hit a probability of one (every
        // token picks them); those are capped and the rest share what is
        // left of the k picks.
        let mut q = vec![1.0; n];
        let mut rest: f64 = weight.iter().sum();
        for capped in 0..n {
            let scale = (k - capped as f64) / rest;
            if weight[capped] * scale <= 1.0 {
                for (qi, w) in q[capped..].iter_mut().zip(&weight[capped..]) {
                    *qi = w * scale;
                }
                break;
            }
            rest -= weight[capped];
        }
        ExpertRouting { miss_log: q.iter().map(|qi| (1.0 - qi.min(1.0)).ln()).collect() }
    }

    /// Distinct experts `tokens` tokens touch in one layer.
    pub fn coverage(&self, tokens: u32) -> f64 {
        if tokens == 0 {
            return 0.0;
        }
        let b = f64::from(tokens);
        self.miss_log.iter().map(|l| 1.0 - (b * l).exp()).sum()
    }
}

/// Time of one ring all-reduce of `bytes` over `n` GPUs: its latency, which
/// grows with the ring's steps where the link says so, and `2(n−1)/n` of
/// the bytes at the bus bandwidth the link reaches at that width.
pub fn allreduce_time_s(link: &Interconnect, n: u32, bytes: f64) -> f64 {
    if n <= 1 {
        return 0.0;
    }
    let busbw = link.allreduce_busbw_gbs(n);
    let k = f64::from(n);
    let wire = if busbw > 0.0 { 2.0 * (k - 1.0) / k * bytes / (busbw * 1e9) } else { 0.0 };
    link.allreduce_latency_s(n) + wire
}

/// The PCIe generation of a GPU family's hosts (KV offload reloads).
fn host_link(gpu: &Gpu) -> &'static str {
    match gpu.family.as_str() {
        "hopper" | "blackwell" | "blackwell-gddr" | "cdna3" | "cdna4" => "pcie5",
        "volta" | "turing" | "pascal" => "pcie3",
        _ => "pcie4",
    }
}

fn default_link(gpu: &Gpu) -> &'static str {
    // PCIe cards (A100 PCIe, H100 PCIe) are linked by NVLink only where a
    // bridge was fitted, which a GPU name does not say.
    if gpu.is_pcie_card() {
        return host_link(gpu);
    }
    match gpu.family.as_str() {
        "hopper" => "nvlink4",
        "blackwell" => "nvlink5",
        "ampere-hbm" => "nvswitch3",
        "cdna2" | "cdna3" | "cdna4" => "xgmi",
        // Servers of those generations are PCIe 3.0 hosts.
        "volta" | "turing" | "pascal" => "pcie3",
        _ => "pcie4",
    }
}

impl Deployment {
    /// Resolves names against the catalog and sizes the deployment. Fails
    /// when a name is unknown or the weights do not fit.
    pub fn resolve(catalog: &Catalog, spec: &DeploymentSpec) -> Result<Deployment, SimError> {
        Deployment::resolve_with_quant(catalog, spec, Deployment::weight_format(catalog, spec)?)
    }

    /// The weight format `spec` asks for: its `quant`, or, when that is
    /// empty or `auto`, the format the model's checkpoint ships in: the one
    /// its name states (`Qwen/Qwen3-235B-A22B-FP8`), else the model's own
    /// (gpt-oss in MXFP4, DeepSeek-V3 in FP8, a config.json's
    /// `quantization_config`), else its 16-bit weights, as vLLM loads a
    /// checkpoint.
    pub fn weight_format(catalog: &Catalog, spec: &DeploymentSpec) -> Result<Quant, SimError> {
        let text = spec.quant.trim();
        if !(text.is_empty() || text.eq_ignore_ascii_case("auto")) {
            return catalog.require_quant(text);
        }
        let model = catalog.resolve_model(&spec.model, None)?;
        if let Some(named) = catalog.format_in_name(&spec.model) {
            return Ok(named.clone());
        }
        match model.native_quant {
            Some(native) => catalog.require_quant(&native),
            None => catalog.require_quant("auto"),
        }
    }

    /// Like [`Deployment::resolve`] with the weight format given directly
    /// (e.g. one built from free text such as "EXL2 2.5 bpw").
    pub fn resolve_with_quant(catalog: &Catalog, spec: &DeploymentSpec, quant: Quant) -> Result<Deployment, SimError> {
        if spec.count == 0 {
            return Err(SimError::Invalid("GPU count must be at least 1".into()));
        }
        let (gpu, gpu_note) = match catalog.gpu_match(&spec.gpu) {
            Some((g, note)) => (g.clone(), note),
            None => {
                return Err(catalog.require_gpu(&spec.gpu).err().unwrap_or_else(|| SimError::Invalid(spec.gpu.clone())))
            }
        };
        let model = catalog.resolve_model(&spec.model, None)?;
        let engine = catalog.require_engine(&spec.engine)?.as_named(&spec.engine);
        let interconnect = if spec.count <= 1 {
            catalog.require_interconnect("none")?.clone()
        } else {
            let name = spec.interconnect.as_deref().unwrap_or(default_link(&gpu));
            let link = catalog.require_interconnect(name)?.clone();
            if link.bandwidth_gbs <= 0.0 {
                return Err(SimError::Invalid(format!(
                    "interconnect '{name}' is for a single GPU but --count is {}; pick one of pcie4, nvlink3, nvlink4, ...",
                    spec.count
                )));
            }
            link
        };
        let parallelism = spec.parallelism.unwrap_or(if engine.parallel == "pipeline" {
            Parallelism::Pipeline
        } else {
            Parallelism::Tensor
        });
        let host = catalog.require_interconnect(host_link(&gpu))?.clone();
        let mut d = Deployment::build(
            gpu,
            spec.count,
            interconnect,
            model,
            quant,
            engine,
            parallelism,
            spec.max_num_seqs,
            &spec.knobs,
            catalog.expert_routing_zipf,
        )?;
        d.host_link_gbs = host.bandwidth_gbs;
        d.notes.extend(gpu_note);
        // A bridge joins a pair: a wider tensor-parallel group is not all
        // linked, so vLLM leaves its custom all-reduce off and NCCL's ring
        // runs at the pace of its PCIe hops.
        if let Some(most) = d.interconnect.max_gpus.filter(|&m| d.tp > m) {
            d.notes.push(format!(
                "{} joins {most} GPUs; over {}, an all-reduce is a ring through PCIe: modelled as {}",
                d.interconnect.name, d.tp, host.name
            ));
            d.interconnect = host;
        }
        Ok(d)
    }

    /// Sizes a deployment from catalog entries.
    #[allow(clippy::too_many_arguments)]
    pub fn build(
        gpu: Gpu,
        count: u32,
        interconnect: Interconnect,
        model: Model,
        quant: Quant,
        engine: Engine,
        parallelism: Parallelism,
        max_num_seqs: Option<u32>,
        knobs: &EngineKnobs,
        expert_routing_zipf: f64,
    ) -> Result<Deployment, SimError> {
        let (tp, pp) = match (parallelism, knobs.pipeline_parallel) {
            (_, Some(0)) => return Err(SimError::Invalid("pipeline parallel size must be at least 1".into())),
            (_, Some(pp)) if !count.is_multiple_of(pp) => {
                return Err(SimError::Invalid(format!(
                    "{count} GPUs do not split into {pp} pipeline stages (the count must be tensor parallel x pipeline stages)"
                )))
            }
            (_, Some(pp)) => (count / pp, pp),
            (Parallelism::Pipeline, None) => (1, count),
            (Parallelism::Tensor, None) => (count, 1),
        };
        let parallelism = if pp > 1 { Parallelism::Pipeline } else { Parallelism::Tensor };
        let util = knobs.gpu_memory_utilization.unwrap_or(engine.gpu_memory_utilization);
        let async_scheduling = knobs.async_scheduling.unwrap_or(engine.async_scheduling);
        let full_decode_graph = knobs.full_decode_graph.unwrap_or(engine.full_decode_graph);
        if !(util > 0.0 && util <= 1.0) {
            return Err(SimError::Invalid(format!("gpu_memory_utilization must be in (0, 1], got {util}")));
        }
        if !(knobs.cpu_offload_gb.is_finite() && knobs.cpu_offload_gb >= 0.0) {
            return Err(SimError::Invalid(format!(
                "cpu offload must be a non-negative GB figure, got {}",
                knobs.cpu_offload_gb
            )));
        }
        if let Some(bits) = knobs.kv_cache_bits {
            if !(bits.is_finite() && bits > 0.0 && bits <= 32.0) {
                return Err(SimError::Invalid(format!("KV-cache bits must be in (0, 32], got {bits}")));
            }
        }
        let mut block_size = knobs.block_size.unwrap_or(engine.block_size);
        if block_size == 0 {
            return Err(SimError::Invalid("block size must be at least 1 token".into()));
        }
        let (default_seqs, default_tokens) = engine.scheduler_defaults(&gpu);
        let max_batched_tokens = knobs.max_num_batched_tokens.unwrap_or(default_tokens);
        if max_batched_tokens == 0 {
            return Err(SimError::Invalid("max_num_batched_tokens must be at least 1".into()));
        }
        let emb = model.embedding_params();
        let emb_count = if model.tied_embeddings { 1.0 } else { 2.0 };
        let routed = model.routed_params();
        let other = (model.params_total_b * 1e9 - routed - emb_count * emb).max(0.0);
        let bq = quant.bits_per_weight / 8.0;
        let b_other = if quant.scope == "experts" { 2.0 } else { bq };
        let b_emb = if quant.quantize_embeddings { bq } else { 2.0 };
        let weight_bytes = routed * bq + other * b_other + emb_count * emb * b_emb;
        // Per step: all non-expert weights, the output projection, and the
        // touched experts (the input embedding is a lookup, not a read).
        let dense_read_bytes = other * b_other + emb * b_emb;
        let expert_bytes_each = if model.is_moe() { routed * bq / model.experts as f64 } else { 0.0 };
        let expert_routing = ExpertRouting::new(model.experts, model.experts_per_token, expert_routing_zipf);
        let kv_bits = knobs.kv_cache_bits.unwrap_or(if engine.kv_cache_model_dtype { 16.0 } else { quant.kv_bits });
        // KV a tensor-parallel group cannot split is copied, in engines
        // whose attention runs tensor parallel: every rank keeps at least
        // one KV head (where the model has fewer than the ranks), and MLA's
        // latent whole.
        let kv_copies = match model.kv_elems_per_layer {
            _ if !engine.kv_copies_across_tp => 1.0,
            Some(_) => tp as f64,
            None if model.kv_heads > 0 && tp > model.kv_heads => tp as f64 / model.kv_heads as f64,
            None => 1.0,
        };
        let kv_bytes_per_token = model.kv_elems_per_token() * kv_bits / 8.0 * kv_copies;
        // Linear-attention state: in its own bytes, or (vLLM) padded to one
        // KV page a layer, the attention block grown, in whole 16-token
        // steps, until a page holds one layer's state.
        let paged = model.linear_layers > 0 && model.attention_layers() > 0 && engine.hybrid_state_pages;
        let mut state_tokens_per_seq = model.linear_state_bytes_per_seq() / kv_bytes_per_token.max(1.0);
        if paged {
            let layer_token_bytes = kv_bytes_per_token / model.attention_layers() as f64;
            let page = (model.linear_state_bytes / layer_token_bytes.max(1.0) / 16.0).ceil() as u32 * 16;
            block_size = block_size.max(page);
            state_tokens_per_seq = model.linear_layers as f64 * block_size as f64 / model.attention_layers() as f64;
        }
        let prefix_caching = knobs.prefix_caching.unwrap_or(!paged);
        let usable = count as f64 * (gpu.memory_bytes() * util - RESERVED_GB_PER_GPU * 1e9);
        let kv_capacity_bytes = usable - weight_bytes;
        if kv_capacity_bytes <= 0.0 {
            return Err(SimError::DoesNotFit(format!(
                "{} in {} needs {:.1} GB of weights but {} x {} offers {:.1} GB usable at a memory share of {:.0} %; use more GPUs (--count), a smaller quantization, a bigger GPU, or a larger share (--gpu-memory-utilization)",
                model.name,
                quant.name,
                weight_bytes / 1e9,
                count,
                gpu.name,
                usable.max(0.0) / 1e9,
                util * 100.0
            )));
        }
        // The pool is whole blocks.
        let kv_capacity_tokens =
            ((kv_capacity_bytes / kv_bytes_per_token / block_size as f64).floor() * block_size as f64).max(1.0);
        let cpu_offload_tokens = knobs.cpu_offload_gb * 1e9 / kv_bytes_per_token;
        let max_num_seqs = max_num_seqs.unwrap_or(default_seqs).max(1);
        Ok(Deployment {
            gpu,
            count,
            interconnect,
            model,
            quant,
            engine,
            parallelism,
            tp,
            pp,
            max_num_seqs,
            max_batched_tokens,
            gpu_memory_utilization: util,
            block_size,
            prefix_caching,
            async_scheduling,
            full_decode_graph,
            cpu_offload_tokens,
            host_link_gbs: 0.0,
            weight_bytes,
            kv_bytes_per_token,
            kv_capacity_tokens,
            state_tokens_per_seq,
            notes: Vec::new(),
            dense_read_bytes,
            expert_bytes_each,
            expert_routing,
        })
    }

    /// Whether each step waits for the engine core's work on its sequences:
    /// a synchronous scheduler, on an engine with such a cost.
    pub fn waits_for_scheduler(&self) -> bool {
        !self.async_scheduling && self.engine.seq_cpu_us > 0.0
    }

    /// Whether decode-only steps run in pieces (attention between CUDA
    /// graphs, vLLM 0.8 to 0.10) on an engine that could run them whole.
    pub fn decodes_piecewise(&self) -> bool {
        self.engine.decode_layer_overhead_us.is_some() && !self.full_decode_graph
    }

    /// The settings that cost this deployment something over the engine's
    /// current defaults, named as `sim predict` and `sim replay` print them:
    /// an engine core whose work per sequence the GPU waits for, decode
    /// steps run in pieces.
    pub fn costly_settings(&self) -> Vec<&'static str> {
        [(self.waits_for_scheduler(), "synchronous scheduling"), (self.decodes_piecewise(), "piecewise CUDA graphs")]
            .into_iter()
            .filter_map(|(on, what)| on.then_some(what))
            .collect()
    }

    /// The fixed cost per layer of a step, µs: a decode-only step run as
    /// one CUDA graph has no launch gaps around attention
    /// (`decode_layer_overhead_us`); any other step pays `layer_overhead_us`.
    pub fn layer_overhead_us(&self, load: &StepLoad) -> f64 {
        match self.engine.decode_layer_overhead_us {
            Some(us) if self.full_decode_graph && load.prefill_tokens == 0 => us,
            _ => self.engine.layer_overhead_us,
        }
    }

    /// Bytes of weights one step reads when it processes `tokens` tokens.
    pub fn weight_read_bytes(&self, tokens: u32) -> f64 {
        let experts = if self.model.is_moe() {
            // Distinct experts touched per layer times one expert's bytes
            // summed over the MoE layers.
            self.expert_routing.coverage(tokens) * self.expert_bytes_each
        } else {
            0.0
        };
        self.dense_read_bytes + experts
    }

    fn tp(&self) -> f64 {
        self.tp as f64
    }

    /// Context a token attends to, averaged over the attention layers:
    /// sliding-window layers see at most their window (and keep only that
    /// much KV).
    pub fn attended(&self, context: f64) -> f64 {
        let m = &self.model;
        let layers = m.attention_layers();
        if m.sliding_window == 0 || m.sliding_layers == 0 || layers == 0 {
            return context;
        }
        let f = m.sliding_layers.min(layers) as f64 / layers as f64;
        context * (1.0 - f) + context.min(m.sliding_window as f64) * f
    }

    /// Seconds to move `tokens` tokens of KV between host memory and the
    /// GPUs (each GPU over its own PCIe link).
    pub fn kv_transfer_s(&self, tokens: f64) -> f64 {
        if tokens <= 0.0 || self.host_link_gbs <= 0.0 {
            return 0.0;
        }
        tokens * self.kv_bytes_per_token / self.count as f64 / (self.host_link_gbs * 1e9)
    }

    /// The cost of one engine step.
    pub fn step(&self, load: &StepLoad) -> StepCost {
        let tokens = load.decode_seqs + load.prefill_tokens;
        if tokens == 0 {
            return StepCost {
                time_s: 0.0,
                memory_s: 0.0,
                compute_s: 0.0,
                interconnect_s: 0.0,
                overhead_s: 0.0,
                dequant_s: 0.0,
                bytes_per_gpu: 0.0,
                flops_per_gpu: 0.0,
            };
        }
        let m = &self.model;
        let tp = self.tp();
        let passes = self.engine.activation_passes
            + if m.is_moe() { m.experts_per_token as f64 * self.engine.moe_activation_passes } else { 0.0 };
        let activation_bytes = tokens as f64 * m.layers as f64 * m.hidden as f64 * ACTIVATION_BYTES * passes;
        // The experts a step touches are a sum over every expert: counted once.
        let weights = self.weight_read_bytes(tokens);
        // A decoding sequence reads its KV, and reads and writes back its
        // linear-attention state.
        let state_bytes = 2.0 * f64::from(load.decode_seqs) * m.linear_state_bytes_per_seq();
        let bytes = weights + load.decode_context_tokens * self.kv_bytes_per_token + state_bytes + activation_bytes;
        let attn_width = (m.heads * m.head_dim) as f64 * m.attention_layers() as f64;
        let flops = 2.0 * m.params_active_b * 1e9 * tokens as f64
            + 4.0 * attn_width * (load.decode_context_tokens + load.prefill_attention_tokens);
        let bw = self.gpu.data_bw_gbs() * 1e9 * self.engine.bw_eff_on(&self.gpu) * self.quant.decode_kernel_eff;
        let peak = self.gpu.peak_flops(&self.quant.compute)
            * self.engine.compute_eff_on(&self.gpu)
            * self.quant.prefill_kernel_eff;
        let bytes_per_gpu = bytes / tp;
        let flops_per_gpu = flops / tp;
        let memory_s = bytes_per_gpu / bw;
        let compute_s = flops_per_gpu / peak;
        // Dequantise-then-GEMM: above the mat-vec batch sizes, formats
        // without their own GEMM kernel are expanded to FP16 first (read the
        // packed weights, write two bytes per weight), before the matmul.
        let dequant_s = if tokens >= DEQUANT_GEMM_MIN_TOKENS
            && self.quant.dequant_for_gemm
            && self.engine.prefill_dequant_on(&self.gpu)
        {
            let bq = self.quant.bits_per_weight / 8.0;
            weights * (1.0 + 2.0 / bq) / tp / bw
        } else {
            0.0
        };
        // Tensor parallel: two all-reduces per layer among the tp GPUs of a
        // stage. Pipeline: one activation hand-off per stage boundary.
        let msg = tokens as f64 * m.hidden as f64 * ACTIVATION_BYTES;
        let tp_s = 2.0 * m.layers as f64 * allreduce_time_s(&self.interconnect, self.tp, msg);
        let pp_s = if self.pp > 1 {
            (self.pp - 1) as f64
                * (self.interconnect.allreduce_latency_s(2) + msg / (self.interconnect.bandwidth_gbs.max(1.0) * 1e9))
        } else {
            0.0
        };
        let interconnect_s = tp_s + pp_s;
        let per_layer = self.layer_overhead_us(load) + if m.is_moe() { self.engine.moe_layer_overhead_us } else { 0.0 };
        let mut overhead_s = (self.engine.step_overhead_us + per_layer * m.layers as f64) * 1e-6;
        // The engine core's CPU work per running sequence, which a
        // synchronous scheduler makes the GPU wait for every step; scheduled
        // ahead (async scheduling) it runs while the GPU works.
        if self.waits_for_scheduler() {
            overhead_s += self.engine.seq_cpu_us * 1e-6 * f64::from(load.decode_seqs);
        }
        // The engine core's CPU work per step that the GPU does not hide:
        // a step never takes less.
        let busy = memory_s.max(compute_s) + dequant_s + interconnect_s + overhead_s;
        overhead_s += (self.engine.step_floor_us * 1e-6 - busy).max(0.0);
        StepCost {
            time_s: memory_s.max(compute_s) + dequant_s + interconnect_s + overhead_s,
            memory_s,
            compute_s,
            interconnect_s,
            overhead_s,
            dequant_s,
            bytes_per_gpu,
            flops_per_gpu,
        }
    }

    /// Time to prefill `prompt` tokens in chunks of max_batched_tokens while
    /// `others` sequences of average context `others_context` keep decoding.
    pub fn prefill_time_s(&self, prompt: u32, others: u32, others_context: f64) -> f64 {
        let chunk = self.max_batched_tokens.max(1);
        let mut done = 0u32;
        let mut t = 0.0;
        while done < prompt.max(1) {
            let n = chunk.min(prompt.max(1) - done);
            let load = StepLoad {
                decode_seqs: others,
                decode_context_tokens: others as f64 * self.attended(others_context),
                prefill_tokens: n,
                prefill_attention_tokens: n as f64 * self.attended(done as f64 + n as f64 / 2.0),
            };
            t += self.step(&load).time_s;
            done += n;
        }
        t
    }

    /// Time of one decode step for `seqs` sequences of average context `ctx`.
    pub fn decode_step(&self, seqs: u32, ctx: f64) -> StepCost {
        self.step(&StepLoad {
            decode_seqs: seqs,
            decode_context_tokens: seqs as f64 * self.attended(ctx),
            prefill_tokens: 0,
            prefill_attention_tokens: 0.0,
        })
    }

    /// Average power of the whole deployment at a step mix, in watts: idle
    /// plus the dynamic range scaled by how busy memory and tensor cores are.
    pub fn power_w(&self, cost: &StepCost) -> f64 {
        if cost.time_s <= 0.0 {
            return self.count as f64 * self.gpu.idle_w;
        }
        let mem = (cost.memory_s / cost.time_s).min(1.0);
        let comp = (cost.compute_s / cost.time_s).min(1.0);
        let util = (0.2 + 0.55 * mem + 0.6 * comp).min(1.0);
        self.count as f64 * (self.gpu.idle_w + (self.gpu.tdp_w - self.gpu.idle_w) * util)
    }

    /// Most sequences of `context` tokens the KV cache holds at once.
    pub fn kv_seqs(&self, context: f64) -> u32 {
        (self.kv_capacity_tokens / (self.attended(context) + self.state_tokens_per_seq).max(1.0))
            .floor()
            .min(u32::MAX as f64) as u32
    }
}

/// Workload of a prediction.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Workload {
    pub input_tokens: u32,
    pub output_tokens: u32,
}

/// One concurrency level of `sim predict` (the `--json` contract).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Level {
    pub concurrency: u32,
    pub per_request_tok_s: f64,
    pub aggregate_tok_s: f64,
    pub ttft_ms: f64,
    pub bottleneck: Bottleneck,
    pub kv_cache_usage: f64,
    pub power_w: f64,
}

/// What the published runs say of a model with linear-attention layers,
/// beside the simulator's figures for it (`data/calibration/hybrid-ladders.csv`).
pub const LINEAR_ATTENTION_CAVEAT: &str =
    "models with linear-attention layers read faster in the replay than in the only \
     published runs found (GPUStack's Qwen3.5-9B on an H100 and Qwen3.5-35B-A3B on an H200, vLLM 0.17.1): mean \
     end-to-end latency -8 % to -74 % (docs/SIMULATOR.md, section 1)";

/// The prediction: one level per requested concurrency.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    pub levels: Vec<Level>,
    /// What resolving the deployment assumed (e.g. a GPU variant not
    /// stated), and what published runs say of this kind of model.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl Prediction {
    /// "bandwidth-bound at 1–4, compute-bound at 8": the bottleneck named
    /// at each level, runs of equal ones merged.
    pub fn bottleneck_story(&self) -> String {
        let mut parts: Vec<(&str, u32, u32)> = Vec::new();
        for l in &self.levels {
            let b = l.bottleneck.as_str();
            match parts.last_mut() {
                Some((name, _, hi)) if *name == b => *hi = l.concurrency,
                _ => parts.push((b, l.concurrency, l.concurrency)),
            }
        }
        parts
            .into_iter()
            .map(|(b, lo, hi)| if lo == hi { format!("{b}-bound at {lo}") } else { format!("{b}-bound at {lo}–{hi}") })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Steady-state prediction for a closed loop of `c` clients each sending the
/// workload back to back.
pub fn predict_level(d: &Deployment, w: Workload, c: u32) -> Level {
    let c = c.max(1);
    let avg_ctx = w.input_tokens as f64 + w.output_tokens as f64 / 2.0;
    let kv_limit = d.kv_seqs(avg_ctx).max(1);
    let running = c.min(d.max_num_seqs).min(kv_limit);
    let kv_bound = running < c.min(d.max_num_seqs);
    let out = w.output_tokens.max(1) as f64;
    let dec = d.decode_step(running, avg_ctx);
    // Each request's prefill rides in the decode steps of the others; spread
    // its extra cost over the running requests' outputs.
    let ttft0 = d.prefill_time_s(w.input_tokens, running - 1, avg_ctx);
    // Marginal cost of a prefill inside steps that decode anyway.
    let chunks = w.input_tokens.max(1).div_ceil(d.max_batched_tokens.max(1)) as f64;
    let prefill_extra = (ttft0 - chunks * d.decode_step(running - 1, avg_ctx).time_s).max(0.0);
    let t_tok = dec.time_s + running as f64 * prefill_extra / out;
    let service = ttft0 + out * t_tok;
    let wait = if c > running { (c as f64 / running as f64 - 1.0) * service } else { 0.0 };
    let per_request = out / service;
    let aggregate = running as f64 * per_request;
    let kv_used = running as f64 * (d.attended(avg_ctx) + d.state_tokens_per_seq) / d.kv_capacity_tokens;
    Level {
        concurrency: c,
        per_request_tok_s: per_request,
        aggregate_tok_s: aggregate,
        ttft_ms: (wait + ttft0) * 1000.0,
        bottleneck: if kv_bound { Bottleneck::KvCapacity } else { dec.bottleneck() },
        kv_cache_usage: kv_used.min(1.0),
        power_w: d.power_w(&dec),
    }
}

/// Predictions for each concurrency level.
pub fn predict(d: &Deployment, w: Workload, concurrency: &[u32]) -> Prediction {
    let mut notes = d.notes.clone();
    if d.model.linear_layers > 0 {
        notes.push(LINEAR_ATTENTION_CAVEAT.to_string());
    }
    Prediction { levels: concurrency.iter().map(|&c| predict_level(d, w, c)).collect(), notes }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A prediction for a model with linear-attention layers carries the
    /// caveat of its published runs, and counts its states in the KV use.
    #[test]
    fn a_linear_attention_prediction_carries_its_caveat() {
        let w = Workload { input_tokens: 300, output_tokens: 300 };
        let hybrid = deployment("h200", 1, None, "qwen3.5-35b-a3b", "fp16", "vllm");
        let p = predict(&hybrid, w, &[64]);
        assert!(p.notes.iter().any(|n| n == LINEAR_ATTENTION_CAVEAT), "{:?}", p.notes);
        let kv = p.levels[0].kv_cache_usage;
        let without_states = 64.0 * hybrid.attended(450.0) / hybrid.kv_capacity_tokens;
        assert!(kv > 2.0 * without_states, "{kv} {without_states}");
        let plain = predict(&deployment("h200", 1, None, "qwen3-30b-a3b", "fp16", "vllm"), w, &[1]);
        assert!(plain.notes.is_empty(), "{:?}", plain.notes);
    }

    /// Where attention runs tensor parallel (vLLM), a rank keeps at least
    /// one KV head and MLA's whole latent: Qwen3-30B-A3B's 4 KV heads on 8
    /// ranks are kept twice, DeepSeek-V3's latent 8 times; TensorRT-LLM's
    /// attention data parallel keeps one copy.
    #[test]
    fn kv_a_tensor_parallel_group_cannot_split_is_copied() {
        let per_token = |count: u32, model: &str, quant: &str, engine: &str| {
            deployment("h200", count, None, model, quant, engine).kv_bytes_per_token
        };
        let qwen = |count| per_token(count, "qwen3-30b-a3b", "fp16", "vllm");
        assert_eq!(qwen(4), 48.0 * 2.0 * 4.0 * 128.0 * 2.0);
        assert_eq!(qwen(8), 2.0 * qwen(4));
        assert_eq!(per_token(8, "deepseek-v3", "fp8", "vllm"), 8.0 * 61.0 * 576.0 * 2.0);
        // TensorRT-LLM's FP8 recipe keeps an FP8 KV cache, once.
        assert_eq!(per_token(8, "deepseek-v3", "fp8", "trtllm"), 61.0 * 576.0);
    }

    fn deployment(gpu: &str, count: u32, link: Option<&str>, model: &str, quant: &str, engine: &str) -> Deployment {
        let c = Catalog::embedded().unwrap();
        Deployment::resolve(
            &c,
            &DeploymentSpec {
                gpu: gpu.into(),
                count,
                interconnect: link.map(String::from),
                model: model.into(),
                quant: quant.into(),
                engine: engine.into(),
                max_num_seqs: None,
                parallelism: None,
                knobs: EngineKnobs::default(),
            },
        )
        .unwrap()
    }

    #[test]
    fn auto_loads_the_checkpoints_own_weight_format() {
        let c = Catalog::embedded().unwrap();
        let format = |model: &str, quant: &str| {
            let spec = DeploymentSpec { model: model.into(), quant: quant.into(), ..DeploymentSpec::default() };
            Deployment::weight_format(&c, &spec).unwrap().id
        };
        assert_eq!(format("gpt-oss-20b", ""), "mxfp4");
        assert_eq!(format("openai/gpt-oss-120b", "AUTO"), "mxfp4");
        assert_eq!(format("deepseek-ai/DeepSeek-R1", "auto"), "fp8");
        assert_eq!(format("meta-llama/Llama-3.1-8B-Instruct", ""), "fp16");
        // A checkpoint whose name states its format ships in it.
        assert_eq!(format("Qwen/Qwen3-235B-A22B-FP8", ""), "fp8");
        assert_eq!(format("RedHatAI/Meta-Llama-3.1-70B-Instruct-FP8-dynamic", "auto"), "fp8");
        assert_eq!(format("neuralmagic/Meta-Llama-3.1-8B-Instruct-quantized.w8a8", ""), "int8");
        assert_eq!(format("Qwen/Qwen2.5-7B-Instruct-AWQ", ""), "awq4");
        assert_eq!(format("Qwen/Qwen2.5-7B-Instruct-GPTQ-Int4", ""), "gptq4");
        assert_eq!(format("nvidia/Llama-3.3-70B-Instruct-FP4", ""), "nvfp4");
        assert_eq!(format("Qwen/Qwen2.5-7B-Instruct-GPTQ-Int8", ""), "int8-wo");
        assert_eq!(format("Qwen/Qwen3-235B-A22B-FP8", "bf16"), "fp16", "a format asked for still wins");
        // A format that is asked for wins.
        assert_eq!(format("gpt-oss-20b", "bf16"), "fp16");
        assert_eq!(format("llama-3.1-8b", "fp8"), "fp8");
    }

    #[test]
    fn vllm_keeps_a_16_bit_kv_cache_for_fp8_weights_unless_asked() {
        // vLLM's --kv-cache-dtype auto keeps the model's dtype: FP8 weights
        // halve the weight bytes, not the KV bytes.
        let bf16 = deployment("h100-sxm", 1, None, "llama-3.1-8b", "fp16", "vllm");
        let fp8 = deployment("h100-sxm", 1, None, "llama-3.1-8b", "fp8", "vllm");
        assert_eq!(fp8.kv_bytes_per_token, bf16.kv_bytes_per_token);
        assert!(fp8.weight_bytes < 0.6 * bf16.weight_bytes);
        // TensorRT-LLM's FP8 recipe stores the KV cache in FP8 too.
        let trt = deployment("h100-sxm", 1, None, "llama-3.1-8b", "fp8", "trtllm");
        assert_eq!(trt.kv_bytes_per_token, bf16.kv_bytes_per_token / 2.0);
        // --kv-cache-dtype fp8 halves vLLM's KV bytes and about doubles its pool.
        let c = Catalog::embedded().unwrap();
        let spec = |dtype: &str| DeploymentSpec {
            gpu: "h100-sxm".into(),
            model: "llama-3.1-8b".into(),
            quant: "fp8".into(),
            engine: "vllm".into(),
            knobs: EngineKnobs { kv_cache_bits: kv_cache_bits(dtype).unwrap(), ..EngineKnobs::default() },
            ..DeploymentSpec::default()
        };
        let small = Deployment::resolve(&c, &spec("fp8_e4m3")).unwrap();
        assert_eq!(small.kv_bytes_per_token, bf16.kv_bytes_per_token / 2.0);
        let ratio = small.kv_capacity_tokens / fp8.kv_capacity_tokens;
        assert!((1.95..2.05).contains(&ratio), "{ratio}");
        assert_eq!(Deployment::resolve(&c, &spec("auto")).unwrap().kv_bytes_per_token, fp8.kv_bytes_per_token);
        assert_eq!(Deployment::resolve(&c, &spec("bfloat16")).unwrap().kv_bytes_per_token, fp8.kv_bytes_per_token);
        let err = kv_cache_bits("int3").unwrap_err();
        assert!(err.contains("int3") && err.contains("fp8"), "{err}");
    }

    #[test]
    fn dense_decode_is_bandwidth_bound_and_matches_hand_computation() {
        let d = deployment("h100-sxm", 1, None, "llama-3.1-8b", "fp16", "vllm");
        // Llama 3.1 8B in BF16: 8.03e9 params, untied 128256 x 4096 input
        // embedding not read, so 8.03e9 - 525.3e6 = 7.505e9 params read
        // at 2 bytes = 15.01 GB per step at batch 1, context 0.
        let emb = 128256.0 * 4096.0;
        // Plus activation traffic: 1 token x 32 layers x 4096 x 2 B x passes.
        let expect_bytes = (8.03e9 - emb) * 2.0 + 32.0 * 4096.0 * 2.0 * d.engine.activation_passes;
        let cost = d.decode_step(1, 0.0);
        assert!((cost.bytes_per_gpu - expect_bytes).abs() / expect_bytes < 1e-9);
        let bw = 3350e9 * d.engine.bw_eff_on(&d.gpu);
        assert!((cost.memory_s - expect_bytes / bw).abs() < 1e-12);
        assert_eq!(cost.bottleneck(), Bottleneck::Bandwidth);
        assert!(cost.memory_s > 10.0 * cost.compute_s);
    }

    #[test]
    fn vllm_serve_defaults_depend_on_the_gpu() {
        let at = |gpu: &str| {
            let d = deployment(gpu, 1, None, "llama-3.1-8b", "fp16", "vllm");
            (d.max_num_seqs, d.max_batched_tokens)
        };
        // At least 70 GiB and not an A100: 1024 sequences, 8192 tokens a step.
        assert_eq!(at("h100-sxm"), (1024, 8192));
        assert_eq!(at("h200"), (1024, 8192));
        assert_eq!(at("a100-80gb"), (256, 2048));
        assert_eq!(at("l40s"), (256, 2048));
        let k = EngineKnobs { max_num_batched_tokens: Some(4096), ..EngineKnobs::default() };
        assert_eq!(with_knobs("l40s", 1, "llama-3.1-8b", "fp16", k).unwrap().max_batched_tokens, 4096);
    }

    /// Lambda's Llama 3 70B runs on 2, 4 and 8 H100s share one intercept
    /// a step (docs/SIMULATOR.md, section 7): the fixed cost of a layer does
    /// not shrink as its weights are split over more GPUs, while the bytes
    /// each GPU reads do.
    #[test]
    fn a_layers_fixed_cost_is_the_same_at_every_tensor_parallel_degree() {
        let steps: Vec<StepCost> = [2, 4, 8]
            .iter()
            .map(|&tp| deployment("h100-sxm", tp, None, "llama-3.1-70b", "fp16", "vllm").decode_step(1, 0.0))
            .collect();
        let d = deployment("h100-sxm", 2, None, "llama-3.1-70b", "fp16", "vllm");
        let decode = StepLoad { decode_seqs: 1, ..StepLoad::default() };
        let per_layer = (d.engine.step_overhead_us + d.layer_overhead_us(&decode) * d.model.layers as f64) * 1e-6;
        assert!(per_layer > 0.0);
        for s in &steps {
            assert!((s.overhead_s - per_layer).abs() < 1e-12, "{} against {per_layer}", s.overhead_s);
        }
        assert!(steps[0].memory_s > 3.9 * steps[2].memory_s && steps[0].memory_s < 4.1 * steps[2].memory_s);
    }

    #[test]
    fn a_step_lasts_at_least_the_host_floor() {
        let mut d = deployment("h100-sxm", 1, None, "qwen3-0.6b", "fp16", "vllm");
        // Without the per-layer cost, so that the bare step is shorter than the floor.
        d.engine.layer_overhead_us = 0.0;
        d.engine.decode_layer_overhead_us = Some(0.0);
        d.engine.step_floor_us = 0.0;
        let bare = d.decode_step(4, 500.0);
        d.engine.step_floor_us = 2400.0;
        let floored = d.decode_step(4, 500.0);
        assert!(bare.time_s < 2.4e-3, "{}", bare.time_s);
        assert!((floored.time_s - 2.4e-3).abs() < 1e-12);
        assert_eq!(floored.bottleneck(), Bottleneck::Overhead);
        // A step longer than the floor is not touched.
        let mut big = deployment("h100-sxm", 1, None, "llama-3.1-8b", "fp16", "vllm");
        let t = big.decode_step(1, 0.0).time_s;
        big.engine.step_floor_us = 0.0;
        assert_eq!(big.decode_step(1, 0.0).time_s, t);
    }

    #[test]
    fn a_synchronous_scheduler_makes_each_step_wait_for_its_sequences() {
        let d = deployment("l40s", 1, None, "llama-3.1-8b", "bf16", "vllm");
        // vLLM schedules ahead by default (since 0.14.0): no CPU cost per sequence.
        assert!(d.async_scheduling);
        let seq_s = d.engine.seq_cpu_us * 1e-6;
        assert!(seq_s > 0.0);
        let mut sync = d.clone();
        sync.async_scheduling = false;
        for n in [1u32, 8, 32] {
            let (a, s) = (d.decode_step(n, 200.0), sync.decode_step(n, 200.0));
            assert!((s.time_s - a.time_s - seq_s * f64::from(n)).abs() < 1e-12, "{n}: {} vs {}", s.time_s, a.time_s);
        }
        // A deployment's knob wins over the engine's default.
        let spec = DeploymentSpec {
            gpu: "l40s".into(),
            model: "llama-3.1-8b".into(),
            quant: "bf16".into(),
            engine: "vllm".into(),
            knobs: EngineKnobs { async_scheduling: Some(false), ..EngineKnobs::default() },
            ..DeploymentSpec::default()
        };
        assert!(!Deployment::resolve(&Catalog::embedded().unwrap(), &spec).unwrap().async_scheduling);
    }

    /// vLLM since 0.11.0 runs a decode-only step as one CUDA graph
    /// (`FULL_AND_PIECEWISE`): its layers pay `decode_layer_overhead_us`.
    /// A step with a prefill chunk, and every step of a piecewise
    /// deployment (vLLM 0.8 to 0.10), pay `layer_overhead_us`.
    #[test]
    fn a_decode_step_in_one_cuda_graph_pays_the_smaller_layer_cost() {
        let d = deployment("h100-sxm", 1, None, "llama-3.1-8b", "bf16", "vllm");
        assert!(d.full_decode_graph);
        let (full_us, piecewise_us) = (d.engine.decode_layer_overhead_us.unwrap(), d.engine.layer_overhead_us);
        assert!(full_us < piecewise_us, "{full_us} vs {piecewise_us}");
        let mut piecewise = d.clone();
        piecewise.full_decode_graph = false;
        let layers = d.model.layers as f64;
        let decode = d.decode_step(8, 4000.0);
        let gap = piecewise.decode_step(8, 4000.0).time_s - decode.time_s;
        assert!((gap - (piecewise_us - full_us) * layers * 1e-6).abs() < 1e-12, "{gap}");
        // A mixed step runs in pieces whatever the mode.
        let mixed =
            StepLoad { decode_seqs: 8, decode_context_tokens: 4000.0, prefill_tokens: 512, ..StepLoad::default() };
        assert_eq!(d.step(&mixed).time_s, piecewise.step(&mixed).time_s);
        // The deployment's knob, as vLLM's cudagraph_mode spells it, wins.
        assert_eq!(cudagraph_mode("PIECEWISE"), Ok(Some(false)));
        assert_eq!(cudagraph_mode("full_and_piecewise"), Ok(Some(true)));
        assert_eq!(cudagraph_mode("auto"), Ok(None));
        let err = cudagraph_mode("full_decode_only").unwrap_err();
        assert!(err.contains("not model"), "{err}");
        assert!(cudagraph_mode("fast").unwrap_err().contains("piecewise"));
        let k = EngineKnobs { full_decode_graph: Some(false), ..EngineKnobs::default() };
        assert!(!with_knobs("h100-sxm", 1, "llama-3.1-8b", "bf16", k).unwrap().full_decode_graph);
        // Engines without the figure keep one per-layer cost.
        let s = deployment("h100-sxm", 1, None, "llama-3.1-8b", "bf16", "sglang");
        assert_eq!(s.layer_overhead_us(&StepLoad::default()), s.engine.layer_overhead_us);
    }

    #[test]
    fn gguf_prefill_on_cuda_llamacpp_pays_a_dequantise_pass() {
        let d = deployment("a100-80gb-pcie", 1, None, "llama-3.1-8b", "q4_k_m", "llamacpp");
        let chunk = StepLoad { prefill_tokens: 512, ..StepLoad::default() };
        let cost = d.step(&chunk);
        // Read the packed weights, write an FP16 copy (2 bytes per weight).
        let bq = d.quant.bits_per_weight / 8.0;
        let bw = d.gpu.data_bw_gbs() * 1e9 * d.engine.bw_eff_on(&d.gpu);
        let expect = d.weight_read_bytes(512) * (1.0 + 2.0 / bq) / bw;
        assert!((cost.dequant_s - expect).abs() < 1e-12, "{} vs {expect}", cost.dequant_s);
        assert!((cost.time_s - (cost.memory_s.max(cost.compute_s) + cost.dequant_s + cost.overhead_s)).abs() < 1e-12);
        // Decode (mat-vec kernels), FP16 weights and Metal do not.
        assert_eq!(d.decode_step(4, 100.0).dequant_s, 0.0);
        let f16 = deployment("a100-80gb-pcie", 1, None, "llama-3.1-8b", "fp16", "llamacpp");
        assert_eq!(f16.step(&chunk).dequant_s, 0.0);
        let mac = deployment("m2-max", 1, None, "llama-3.1-8b", "q4_k_m", "llamacpp");
        assert_eq!(mac.step(&chunk).dequant_s, 0.0);
        // Nor do other engines' formats.
        let awq = deployment("a100-80gb-pcie", 1, None, "llama-3.1-8b", "awq4", "vllm");
        assert_eq!(awq.step(&chunk).dequant_s, 0.0);
    }

    #[test]
    fn moe_expert_coverage_follows_the_formula() {
        // Experts picked alike: E * (1 - (1 - k/E)^B).
        let alike = ExpertRouting::new(128, 8, 0.0);
        assert_eq!(alike.coverage(0), 0.0);
        assert!((alike.coverage(1) - 8.0).abs() < 1e-9);
        // Two tokens: 128 * (1 - (120/128)^2) = 15.5.
        assert!((alike.coverage(2) - 15.5).abs() < 1e-9);
        assert!(alike.coverage(512) > 127.99);
        // Uneven routing: one token still picks k, a batch touches fewer
        // than if experts were alike, more with every token, and a long
        // prefill all of them.
        for (e, k) in [(128, 8), (8, 2), (32, 4), (256, 8)] {
            let even = ExpertRouting::new(e, k, 0.0);
            let skewed = ExpertRouting::new(e, k, 1.0);
            assert!((skewed.coverage(1) - f64::from(k)).abs() < 1e-9, "{e} {k}");
            let mut last = skewed.coverage(1);
            for b in [2, 4, 8, 16, 32, 64] {
                let c = skewed.coverage(b);
                assert!(c > last && c < even.coverage(b), "{e} experts, {b} tokens: {c}");
                last = c;
            }
            assert!(skewed.coverage(1 << 20) > f64::from(e) - 1e-6);
        }
        // Eight experts, two a token, s = 1: the favourite is picked by
        // min(1, 2 * 1/H8) = 0.736 of the tokens (H8 = 2.718).
        let mixtral = ExpertRouting::new(8, 2, 1.0);
        let h8: f64 = (1..=8).map(|i| 1.0 / f64::from(i)).sum();
        assert!((1.0 - mixtral.miss_log[0].exp() - 2.0 / h8).abs() < 1e-12);
        // A skew so strong that the favourites are picked by every token:
        // they are capped at one and the rest share what is left.
        let steep = ExpertRouting::new(128, 8, 3.0);
        assert!(steep.miss_log[0] == f64::NEG_INFINITY && steep.miss_log[127].is_finite());
        assert!((steep.coverage(1) - 8.0).abs() < 1e-9);
        // Bytes read grow with the batch until the experts are covered.
        let d = deployment("rtx3090", 1, None, "qwen3-coder-30b-a3b", "awq4", "vllm");
        let b1 = d.weight_read_bytes(1);
        let b8 = d.weight_read_bytes(8);
        let b_all = d.weight_read_bytes(4096);
        assert!(b1 < b8 && b8 < b_all);
        // At full coverage every weight but the input embedding is read.
        let emb = 151936.0 * 2048.0 * 2.0;
        assert!((b_all - (d.weight_bytes - emb)).abs() / d.weight_bytes < 1e-3);
        // The catalog's routing skew sets how many experts a batch reads:
        // with experts picked alike, 8 tokens read 51.6 of 128 a layer.
        let mut alike = Catalog::embedded().unwrap();
        alike.expert_routing_zipf = 0.0;
        // (DeploymentSpec's default is this deployment.)
        let even = Deployment::resolve(&alike, &DeploymentSpec::default()).unwrap();
        assert!((even.weight_read_bytes(1) - b1).abs() < 1.0, "one token reads k experts either way");
        let expert = even.expert_bytes_each;
        assert!((even.weight_read_bytes(8) - even.weight_read_bytes(1) - (51.6 - 8.0) * expert).abs() < 0.1 * expert);
        assert!(b8 < even.weight_read_bytes(8));
    }

    #[test]
    fn tensor_parallel_adds_two_allreduces_per_layer() {
        let one = deployment("rtx3090", 1, None, "qwen2.5-coder-32b", "awq4", "vllm");
        let two = deployment("rtx3090", 2, Some("pcie4"), "qwen2.5-coder-32b", "awq4", "vllm");
        let c1 = one.decode_step(1, 0.0);
        let c2 = two.decode_step(1, 0.0);
        // Bytes split across the two GPUs.
        assert!((c2.bytes_per_gpu * 2.0 - c1.bytes_per_gpu).abs() / c1.bytes_per_gpu < 1e-9);
        // 64 layers x 2 all-reduces x (9 us + 2*(1/2)*5120*2 B at the
        // 20 GB/s bus bandwidth a PCIe 4.0 all-reduce reaches).
        let per = 9e-6 + 5120.0 * 2.0 / 20e9;
        assert!((c2.interconnect_s - 128.0 * per).abs() < 1e-9, "{}", c2.interconnect_s);
        assert_eq!(c1.interconnect_s, 0.0);
    }

    #[test]
    fn a_pcie_all_reduce_slows_with_its_ring_and_across_sockets() {
        let c = Catalog::embedded().unwrap();
        let pcie = c.interconnect("pcie4").unwrap();
        let us = |n| pcie.allreduce_latency_s(n) * 1e6;
        // A ring's steps: 9 us over two GPUs, 5.5 us more for each GPU beyond.
        assert!((us(2) - 9.0).abs() < 1e-9 && (us(4) - 20.0).abs() < 1e-9 && (us(8) - 42.0).abs() < 1e-9);
        // Eight GPUs span two sockets: the bus bandwidth drops.
        assert_eq!((pcie.allreduce_busbw_gbs(4), pcie.allreduce_busbw_gbs(8)), (20.0, 12.0));
        let mb = 1e6;
        let t = |n| allreduce_time_s(pcie, n, mb);
        assert!((t(8) - (42e-6 + 1.75 * mb / 12e9)).abs() < 1e-12, "{}", t(8));
        assert!(t(2) < t(4) && t(4) < t(8));
        // NVSwitch keeps one latency and one bandwidth at every width.
        let switch = c.interconnect("nvlink4").unwrap();
        assert_eq!(switch.allreduce_latency_s(8), switch.allreduce_latency_s(2));
        assert_eq!(switch.allreduce_busbw_gbs(8), switch.bandwidth_gbs);
    }

    #[test]
    fn a_bridge_joins_a_pair_and_wider_rings_run_over_pcie() {
        let pair = deployment("rtx3090", 2, Some("nvlink3"), "qwen2.5-coder-32b", "awq4", "vllm");
        assert_eq!(pair.interconnect.id, "nvlink3");
        assert!(pair.notes.is_empty(), "{:?}", pair.notes);
        let four = deployment("rtx3090", 4, Some("nvlink3"), "qwen2.5-coder-32b", "awq4", "vllm");
        assert_eq!(four.interconnect.id, "pcie4");
        assert!(four.notes.iter().any(|n| n.contains("joins 2 GPUs") && n.contains("PCIe 4.0")), "{:?}", four.notes);
    }

    #[test]
    fn pcie_cards_default_to_their_hosts_pcie() {
        let link = |gpu: &str| deployment(gpu, 2, None, "llama-3.1-8b", "fp16", "vllm").interconnect.id;
        assert_eq!(link("h100-pcie"), "pcie5");
        assert_eq!(link("a100-80gb-pcie"), "pcie4");
        assert_eq!(link("h100-sxm"), "nvlink4");
        assert_eq!(link("a100-80gb"), "nvswitch3");
        let bridged = deployment("h100-pcie", 2, Some("nvlink4"), "llama-3.1-8b", "fp16", "vllm");
        assert_eq!(bridged.interconnect.id, "nvlink4", "a bridge the user names is used");
    }

    #[test]
    fn inline_ecc_slows_the_weight_reads_by_a_sixteenth() {
        let with_ecc = deployment("l40s", 1, None, "llama-3.1-8b", "fp16", "vllm");
        let mut without = with_ecc.clone();
        without.gpu.inline_ecc = false;
        let (a, b) = (with_ecc.decode_step(1, 512.0), without.decode_step(1, 512.0));
        assert!((a.memory_s / b.memory_s - 16.0 / 15.0).abs() < 1e-12, "{} vs {}", a.memory_s, b.memory_s);
        assert!(a.time_s > b.time_s);
    }

    #[test]
    fn kv_capacity_is_memory_left_after_weights() {
        let d = deployment("h100-sxm", 1, None, "llama-3.1-8b", "fp16", "vllm");
        let weights: f64 = 8.03e9 * 2.0;
        // 80 GiB, as the H100's "80GB" is.
        let usable = 80.0 * 1073741824.0 * 0.9 - 1e9;
        // 32 layers x 2 x 8 heads x 128 dims x 2 bytes = 131072 B per token.
        assert!((d.kv_bytes_per_token - 131072.0).abs() < 1e-9);
        // In whole blocks of 16 tokens (vLLM's default).
        let expect = ((usable - weights) / 131072.0 / 16.0).floor() * 16.0;
        assert!((d.kv_capacity_tokens - expect).abs() < 1e-6, "{}", d.kv_capacity_tokens);
        assert_eq!(d.kv_capacity_tokens % 16.0, 0.0);
        // And a model that does not fit is refused with advice.
        let c = Catalog::embedded().unwrap();
        let err = Deployment::resolve(
            &c,
            &DeploymentSpec {
                gpu: "rtx3090".into(),
                model: "llama-3.1-70b".into(),
                quant: "fp16".into(),
                ..DeploymentSpec::default()
            },
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("--count"), "{err}");
        // A share too small for the reserved memory offers nothing, not a
        // negative amount, and says what share it was.
        let err = Deployment::resolve(
            &c,
            &DeploymentSpec {
                gpu: "rtx3090".into(),
                model: "llama-3.1-8b".into(),
                quant: "fp16".into(),
                knobs: EngineKnobs { gpu_memory_utilization: Some(0.015), ..EngineKnobs::default() },
                ..DeploymentSpec::default()
            },
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("offers 0.0 GB usable at a memory share of 2 %"), "{err}");
    }

    #[test]
    fn moe_beats_dense_single_stream_and_saturates_with_concurrency() {
        let moe = deployment("rtx3090", 1, None, "qwen3-coder-30b-a3b", "awq4", "vllm");
        let dense = deployment("rtx3090", 1, None, "qwen2.5-coder-32b", "awq4", "vllm");
        let w = Workload { input_tokens: 300, output_tokens: 2500 };
        let m1 = predict_level(&moe, w, 1);
        let d1 = predict_level(&dense, w, 1);
        assert!(m1.per_request_tok_s > 2.5 * d1.per_request_tok_s);
        let p = predict(&moe, w, &[1, 2, 4, 8, 16]);
        for pair in p.levels.windows(2) {
            assert!(pair[1].aggregate_tok_s >= pair[0].aggregate_tok_s * 0.99);
            assert!(pair[1].per_request_tok_s <= pair[0].per_request_tok_s * 1.001);
        }
    }

    #[test]
    fn predict_json_has_exactly_the_contract_keys() {
        let d = deployment("rtx3090", 1, None, "qwen3-coder-30b-a3b", "awq4", "vllm");
        let p = predict(&d, Workload { input_tokens: 300, output_tokens: 2500 }, &[1, 8]);
        let v = serde_json::to_value(&p).unwrap();
        let levels = v["levels"].as_array().unwrap();
        assert_eq!(levels.len(), 2);
        let mut keys: Vec<&str> = levels[0].as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "aggregate_tok_s",
                "bottleneck",
                "concurrency",
                "kv_cache_usage",
                "per_request_tok_s",
                "power_w",
                "ttft_ms"
            ]
        );
        assert_eq!(levels[1]["concurrency"], 8);
        assert!(["bandwidth", "compute", "interconnect", "overhead", "kv_capacity"]
            .contains(&levels[1]["bottleneck"].as_str().unwrap()));
    }

    #[test]
    fn beyond_kv_capacity_the_bottleneck_is_named_and_ttft_grows() {
        let d = deployment("rtx3090", 1, None, "qwen2.5-coder-32b", "awq4", "vllm");
        let w = Workload { input_tokens: 1000, output_tokens: 1000 };
        let limit = d.kv_seqs(1500.0);
        assert!((1..64).contains(&limit), "limit {limit}");
        let over = predict_level(&d, w, limit * 4);
        let under = predict_level(&d, w, 1);
        assert_eq!(over.bottleneck, Bottleneck::KvCapacity);
        assert!(over.ttft_ms > 3.0 * under.ttft_ms);
        assert!(over.kv_cache_usage <= 1.0);
    }

    fn with_knobs(gpu: &str, count: u32, model: &str, quant: &str, knobs: EngineKnobs) -> Result<Deployment, SimError> {
        let spec = DeploymentSpec {
            gpu: gpu.into(),
            count,
            model: model.into(),
            quant: quant.into(),
            engine: "vllm".into(),
            knobs,
            ..DeploymentSpec::default()
        };
        Deployment::resolve(&Catalog::embedded().unwrap(), &spec)
    }

    #[test]
    fn gpu_memory_utilization_sets_the_kv_pool() {
        let at = |u: f64| {
            let k = EngineKnobs { gpu_memory_utilization: Some(u), ..EngineKnobs::default() };
            with_knobs("h100-sxm", 1, "llama-3.1-8b", "fp16", k).unwrap()
        };
        let (hi, lo) = (at(0.9), at(0.5));
        // 0.4 x 80 GiB less pool, at 131072 bytes a token, to within a block.
        let fewer = hi.kv_capacity_tokens - lo.kv_capacity_tokens;
        assert!((fewer - 0.4 * 80.0 * crate::catalog::GIB / 131072.0).abs() <= 16.0, "{fewer}");
        let err = with_knobs(
            "h100-sxm",
            1,
            "llama-3.1-8b",
            "fp16",
            EngineKnobs { gpu_memory_utilization: Some(1.5), ..EngineKnobs::default() },
        )
        .unwrap_err();
        assert!(err.to_string().contains("gpu_memory_utilization"), "{err}");
    }

    #[test]
    fn tensor_and_pipeline_degrees_split_the_gpus() {
        let tp8 = with_knobs("h100-sxm", 8, "llama-2-70b", "fp16", EngineKnobs::default()).unwrap();
        assert_eq!((tp8.tp, tp8.pp), (8, 1));
        let k = EngineKnobs { pipeline_parallel: Some(2), ..EngineKnobs::default() };
        let tp4pp2 = with_knobs("h100-sxm", 8, "llama-2-70b", "fp16", k).unwrap();
        assert_eq!((tp4pp2.tp, tp4pp2.pp), (4, 2));
        let (a, b) = (tp8.decode_step(8, 1000.0), tp4pp2.decode_step(8, 1000.0));
        // Half the tensor-parallel width: each GPU reads twice the bytes,
        // and the stages run one after the other.
        assert!((b.bytes_per_gpu - 2.0 * a.bytes_per_gpu).abs() / a.bytes_per_gpu < 1e-9);
        // All-reduces among 4 instead of 8, plus one hand-off between the stages.
        let msg = 8.0 * 8192.0 * 2.0;
        let link = &tp4pp2.interconnect;
        let want = 2.0 * 80.0 * allreduce_time_s(link, 4, msg)
            + link.allreduce_latency_s(2)
            + msg / (link.bandwidth_gbs * 1e9);
        assert!((b.interconnect_s - want).abs() < 1e-12, "{} vs {want}", b.interconnect_s);
        let k = EngineKnobs { pipeline_parallel: Some(3), ..EngineKnobs::default() };
        let err = with_knobs("h100-sxm", 8, "llama-2-70b", "fp16", k).unwrap_err().to_string();
        assert!(err.contains("pipeline stages"), "{err}");
    }
}
