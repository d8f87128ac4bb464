//! The catalogs: GPUs, models, quantizations, engines and interconnects, read
//! from TOML (embedded at build time, overridable per file from a directory).

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::SimError;

const GPUS_TOML: &str = include_str!("../data/gpus.toml");
const MODELS_TOML: &str = include_str!("../data/models.toml");
const QUANTS_TOML: &str = include_str!("../data/quants.toml");
const ENGINES_TOML: &str = include_str!("../data/engines.toml");
const INTERCONNECTS_TOML: &str = include_str!("../data/interconnects.toml");
/// Bytes in a GiB.
pub const GIB: f64 = (1u64 << 30) as f64;
/// Share of a GDDR card's bandwidth left for data with inline ECC on: one
/// byte in sixteen carries check bits, as one sixteenth of its memory does
/// (nvidia-smi shows an L40S's 48 GiB as 46,068 MiB).
pub const INLINE_ECC_DATA_SHARE: f64 = 15.0 / 16.0;

/// One accelerator.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Gpu {
    pub id: String,
    pub name: String,
    /// Kernel family (engine efficiency overrides are keyed by it).
    pub family: String,
    #[serde(default)]
    pub aliases: Vec<String>,
    /// The chip a name is matched by when no alias matches (default: the
    /// name without vendor, form-factor and memory words).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chip: Option<String>,
    /// The variant picked when a name gives the chip but not which variant.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub common: bool,
    /// Memory as the vendor states it ("80GB"): for GPU memory that is
    /// binary, GiB (see [`Gpu::memory_bytes`]).
    pub memory_gb: f64,
    /// The total the driver reports, GiB, where it is below `memory_gb` by
    /// more than the engine's reserve covers: datacenter GDDR cards run with
    /// ECC on by default, which keeps 1/16 of the memory for check bits
    /// (nvidia-smi shows an L40S's 48 GB as 46068 MiB). Engines size their
    /// KV cache from this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver_memory_gb: Option<f64>,
    pub memory_bw_gbs: f64,
    /// ECC on by default, stored in line with the data (datacenter GDDR
    /// cards: A10, A40, L4, L40S, T4): a sixteenth of every transfer is
    /// check bits, so the data moves at 15/16 of `memory_bw_gbs`. HBM
    /// keeps its check bits on side channels and needs no such share.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub inline_ecc: bool,
    pub fp32_tflops: f64,
    /// Dense FP16/BF16 tensor throughput.
    pub fp16_tflops: f64,
    #[serde(default)]
    pub fp8_tflops: Option<f64>,
    #[serde(default)]
    pub fp4_tflops: Option<f64>,
    #[serde(default)]
    pub int8_tops: Option<f64>,
    pub tdp_w: f64,
    pub idle_w: f64,
    #[serde(default)]
    pub usd_per_hour: Option<f64>,
    #[serde(default)]
    pub source: String,
}

impl Gpu {
    /// The memory in bytes. A GPU's "80GB" is 80 GiB of HBM (five 16 GiB
    /// stacks), a 4090's "24GB" twelve 2 GiB chips, an M2 Max's "96GB"
    /// unified memory likewise; the driver reports slightly less as the
    /// total (an H100 80GB: 79.2 GiB), which the engine's reserve covers;
    /// where ECC takes more, `driver_memory_gb` says how much is left.
    pub fn memory_bytes(&self) -> f64 {
        self.driver_memory_gb.unwrap_or(self.memory_gb) * GIB
    }

    /// The bandwidth left for data, GB/s: the datasheet's, less the check
    /// bits of inline ECC.
    pub fn data_bw_gbs(&self) -> f64 {
        if self.inline_ecc {
            self.memory_bw_gbs * INLINE_ECC_DATA_SHARE
        } else {
            self.memory_bw_gbs
        }
    }

    /// A PCIe card (its name says so): without bridges, its GPUs talk over
    /// the host's PCIe.
    pub fn is_pcie_card(&self) -> bool {
        gpu_name_parts(&self.name).form.as_deref() == Some("pcie")
    }

    /// The chip this entry is matched by when no alias matches.
    pub fn chip_key(&self) -> String {
        self.chip.as_deref().map(normalize).unwrap_or_else(|| gpu_name_parts(&self.name).chip)
    }

    /// Peak dense tensor throughput in FLOP/s for a compute precision,
    /// falling back to FP16 where the chip lacks the precision.
    pub fn peak_flops(&self, compute: &str) -> f64 {
        let t = match compute {
            "fp8" => self.fp8_tflops,
            "fp4" => self.fp4_tflops.or(self.fp8_tflops),
            "int8" => self.int8_tops,
            _ => None,
        };
        t.unwrap_or(self.fp16_tflops) * 1e12
    }
}

/// One model architecture.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Model {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub aliases: Vec<String>,
    pub layers: u32,
    pub hidden: u32,
    pub heads: u32,
    pub kv_heads: u32,
    pub head_dim: u32,
    pub vocab: u32,
    pub params_total_b: f64,
    pub params_active_b: f64,
    /// Routed experts per MoE layer; 0 for a dense model.
    #[serde(default)]
    pub experts: u32,
    #[serde(default)]
    pub experts_per_token: u32,
    #[serde(default)]
    pub shared_experts: u32,
    #[serde(default)]
    pub tied_embeddings: bool,
    /// KV-cache elements per token per layer when not 2 * kv_heads * head_dim.
    #[serde(default)]
    pub kv_elems_per_layer: Option<u32>,
    #[serde(default = "default_context")]
    pub max_context: u32,
    /// Tokens a sliding-window layer keeps (0: no sliding-window layers).
    #[serde(default)]
    pub sliding_window: u32,
    /// Layers that attend within the sliding window only.
    #[serde(default)]
    pub sliding_layers: u32,
    /// Layers of linear attention (Gated DeltaNet), which keep a state of
    /// fixed size per sequence instead of a KV cache.
    #[serde(default)]
    pub linear_layers: u32,
    /// Bytes of that state per sequence and linear layer.
    #[serde(default)]
    pub linear_state_bytes: f64,
    /// The weight format the checkpoint ships in when it is not 16-bit
    /// (gpt-oss: `mxfp4`, DeepSeek-V3: `fp8`; a config.json's
    /// `quantization_config`): what `--quant auto` loads, as vLLM does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub native_quant: Option<String>,
    #[serde(default)]
    pub source: String,
}

/// A models.toml entry: either every architecture figure, or `config`
/// naming a Hugging Face config.json (a shipped one in
/// `crates/sim/data/models/`, or a path relative to the catalog directory)
/// with any figure stated here overriding the derived one.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelEntry {
    id: String,
    name: Option<String>,
    #[serde(default)]
    aliases: Vec<String>,
    config: Option<String>,
    layers: Option<u32>,
    hidden: Option<u32>,
    heads: Option<u32>,
    kv_heads: Option<u32>,
    head_dim: Option<u32>,
    vocab: Option<u32>,
    params_total_b: Option<f64>,
    params_active_b: Option<f64>,
    experts: Option<u32>,
    experts_per_token: Option<u32>,
    shared_experts: Option<u32>,
    tied_embeddings: Option<bool>,
    kv_elems_per_layer: Option<u32>,
    max_context: Option<u32>,
    sliding_window: Option<u32>,
    sliding_layers: Option<u32>,
    linear_layers: Option<u32>,
    linear_state_bytes: Option<f64>,
    native_quant: Option<String>,
    #[serde(default)]
    source: String,
}

impl ModelEntry {
    fn into_model(self, dir: Option<&Path>) -> Result<Model, SimError> {
        let missing = |what: &str| SimError::Catalog {
            file: "models.toml".into(),
            message: format!("model '{}' has neither `config` nor `{what}`", self.id),
        };
        let base = match &self.config {
            Some(cfg) => {
                let text = match crate::hfconfig::embedded_config(cfg) {
                    Some(t) => t.to_string(),
                    None => {
                        let p = dir.map(|d| d.join(cfg)).unwrap_or_else(|| Path::new(cfg).to_path_buf());
                        std::fs::read_to_string(&p).map_err(|e| SimError::Catalog {
                            file: p.display().to_string(),
                            message: format!("model '{}': cannot read its config: {e}", self.id),
                        })?
                    }
                };
                Some(crate::hfconfig::model_from_config(&self.id, &text, cfg)?)
            }
            None => None,
        };
        let pick_u = |v: Option<u32>, b: Option<u32>, what: &str| v.or(b).ok_or_else(|| missing(what));
        let pick_f = |v: Option<f64>, b: Option<f64>, what: &str| v.or(b).ok_or_else(|| missing(what));
        let b = base.as_ref();
        let source = match (&self.config, self.source.is_empty()) {
            (Some(cfg), true) => format!("crates/sim/data/models/{cfg}"),
            (Some(cfg), false) => format!("{} (config: {cfg})", self.source),
            (None, _) => self.source.clone(),
        };
        Ok(Model {
            name: self.name.clone().unwrap_or_else(|| self.id.clone()),
            layers: pick_u(self.layers, b.map(|m| m.layers), "layers")?,
            hidden: pick_u(self.hidden, b.map(|m| m.hidden), "hidden")?,
            heads: pick_u(self.heads, b.map(|m| m.heads), "heads")?,
            kv_heads: pick_u(self.kv_heads, b.map(|m| m.kv_heads), "kv_heads")?,
            head_dim: pick_u(self.head_dim, b.map(|m| m.head_dim), "head_dim")?,
            vocab: pick_u(self.vocab, b.map(|m| m.vocab), "vocab")?,
            params_total_b: pick_f(self.params_total_b, b.map(|m| m.params_total_b), "params_total_b")?,
            params_active_b: pick_f(self.params_active_b, b.map(|m| m.params_active_b), "params_active_b")?,
            experts: self.experts.or(b.map(|m| m.experts)).unwrap_or(0),
            experts_per_token: self.experts_per_token.or(b.map(|m| m.experts_per_token)).unwrap_or(0),
            shared_experts: self.shared_experts.or(b.map(|m| m.shared_experts)).unwrap_or(0),
            tied_embeddings: self.tied_embeddings.or(b.map(|m| m.tied_embeddings)).unwrap_or(false),
            kv_elems_per_layer: self.kv_elems_per_layer.or(b.and_then(|m| m.kv_elems_per_layer)),
            max_context: self.max_context.or(b.map(|m| m.max_context)).unwrap_or_else(default_context),
            sliding_window: self.sliding_window.or(b.map(|m| m.sliding_window)).unwrap_or(0),
            sliding_layers: self.sliding_layers.or(b.map(|m| m.sliding_layers)).unwrap_or(0),
            linear_layers: self.linear_layers.or(b.map(|m| m.linear_layers)).unwrap_or(0),
            linear_state_bytes: self.linear_state_bytes.or(b.map(|m| m.linear_state_bytes)).unwrap_or(0.0),
            native_quant: self.native_quant.clone().or(b.and_then(|m| m.native_quant.clone())),
            source,
            id: self.id,
            aliases: self.aliases,
        })
    }
}

fn default_context() -> u32 {
    32768
}

impl Model {
    /// Whether a request of `prompt` tokens asking for `max_tokens` more
    /// fits the context: vLLM refuses one that does not (HTTP 400), taking
    /// `max_tokens` as a reservation, not a cap (its `max_model_len`
    /// defaults to the context).
    pub fn fits_context(&self, prompt: u32, max_tokens: u32) -> bool {
        u64::from(prompt) + u64::from(max_tokens) <= u64::from(self.max_context)
    }

    pub fn is_moe(&self) -> bool {
        self.experts > 1 && self.experts_per_token > 0
    }

    /// Parameters (in units of 1) of one embedding matrix.
    pub fn embedding_params(&self) -> f64 {
        self.vocab as f64 * self.hidden as f64
    }

    /// Total parameters in routed experts (0 for dense models), derived from
    /// total = shared + routed and active = shared + routed * k / E.
    pub fn routed_params(&self) -> f64 {
        if !self.is_moe() {
            return 0.0;
        }
        let k_over_e = self.experts_per_token as f64 / self.experts as f64;
        ((self.params_total_b - self.params_active_b) * 1e9 / (1.0 - k_over_e)).max(0.0)
    }

    /// KV-cache elements stored per token across the attention layers
    /// (linear-attention layers keep none).
    pub fn kv_elems_per_token(&self) -> f64 {
        let per_layer =
            self.kv_elems_per_layer.map(f64::from).unwrap_or(2.0 * self.kv_heads as f64 * self.head_dim as f64);
        per_layer * self.attention_layers() as f64
    }

    /// Layers of softmax attention (full or sliding-window).
    pub fn attention_layers(&self) -> u32 {
        self.layers.saturating_sub(self.linear_layers)
    }

    /// Bytes of linear-attention state one sequence keeps, over every layer.
    pub fn linear_state_bytes_per_seq(&self) -> f64 {
        self.linear_layers as f64 * self.linear_state_bytes
    }
}

/// One weight format.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Quant {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub aliases: Vec<String>,
    pub bits_per_weight: f64,
    /// Tensor precision of the matmuls: fp16, fp8, fp4 or int8.
    pub compute: String,
    /// "all" or "experts".
    #[serde(default = "default_scope")]
    pub scope: String,
    #[serde(default)]
    pub quantize_embeddings: bool,
    #[serde(default = "one")]
    pub decode_kernel_eff: f64,
    /// Prefill (matmul) throughput relative to plain FP16 kernels.
    #[serde(default = "one")]
    pub prefill_kernel_eff: f64,
    /// Bits per KV-cache element the format is usually served with.
    #[serde(default = "sixteen")]
    pub kv_bits: f64,
    /// The format has no tensor-core GEMM of its own in engines whose
    /// `prefill_dequant` is set: batched matmuls first expand the weights to
    /// an FP16 copy (llama.cpp's dequantise-then-cuBLAS path for GGUF).
    #[serde(default)]
    pub dequant_for_gemm: bool,
}

fn sixteen() -> f64 {
    16.0
}

fn default_scope() -> String {
    "all".to_string()
}

fn one() -> f64 {
    1.0
}

/// The words of an engine's name ("vllm==0.9.2": "vllm", "0.9.2"), each
/// with whether it is a version ("v0.10.1" read as "0.10.1"). A version
/// may also follow a hyphen or an underscore ("vllm-0.11.0",
/// "vllm_v0.10.2"), and has a dot: "vLLM V1" names vLLM's V1 engine, not a
/// release.
fn engine_name_words(name: &str) -> impl Iterator<Item = (&str, bool)> {
    name.split(|c: char| c.is_whitespace() || matches!(c, '=' | '@' | ':'))
        .filter(|w| !w.is_empty())
        .flat_map(|w| match w.char_indices().find(|&(i, c)| matches!(c, '-' | '_') && release(&w[i + 1..]).is_some()) {
            Some((i, _)) => [&w[..i], &w[i + 1..]],
            None => [w, ""],
        })
        .filter(|w| !w.is_empty())
        .map(|w| match release(w) {
            Some(bare) => (bare, true),
            None => (w, false),
        })
}

/// A word that is a release number ("0.10.1rc1", "v0.11"), without its "v".
fn release(word: &str) -> Option<&str> {
    let bare = word.strip_prefix(['v', 'V']).unwrap_or(word);
    let digits = bare.find(|c: char| !c.is_ascii_digit()).unwrap_or(bare.len());
    (digits > 0 && bare[digits..].starts_with('.')).then_some(bare)
}

/// A container image reference, as a deployment records the engine it ran
/// ("vllm/vllm-openai:v0.10.1.1", "docker.io/lmsysorg/sglang:v0.4.9-cu126",
/// "ghcr.io/ggml-org/llama.cpp:server-cuda"): its path and its tag. A name
/// with a space or without a slash is not one.
fn image_reference(name: &str) -> Option<(&str, Option<&str>)> {
    let name = name.trim();
    if name.contains(char::is_whitespace) || !name.contains('/') {
        return None;
    }
    // A digest ("@sha256:...") pins the image but names no version.
    let name = name.split('@').next().unwrap_or(name);
    let last = name.rfind('/')?;
    let (path, tag) = match name[last..].find(':') {
        Some(colon) => (&name[..last + colon], Some(&name[last + colon + 1..])),
        None => (name, None),
    };
    Some((path, tag))
}

/// The first version number in a name ("vLLM 0.8.5", "vllm==0.9.2",
/// "vllm v0.10.1rc1", "0.14.0"), or in an image's tag
/// ("vllm/vllm-openai:v0.11.0"): its major, minor and patch parts, a part
/// left out read as 0 and a suffix after the digits ignored.
pub fn version_in(name: &str) -> Option<[u32; 3]> {
    // An image's registry may carry a port ("host:5000/vllm/vllm-openai"):
    // only its tag says the version.
    let name = match image_reference(name) {
        Some((_, tag)) => tag?,
        None => name,
    };
    let word = engine_name_words(name).find_map(|(w, version)| version.then_some(w))?;
    let mut parts = [0u32; 3];
    for (slot, part) in parts.iter_mut().zip(word.split('.')) {
        let digits: String = part.chars().take_while(char::is_ascii_digit).collect();
        if digits.is_empty() {
            break;
        }
        *slot = digits.parse().ok()?;
        if digits.len() < part.len() {
            break;
        }
    }
    Some(parts)
}

/// Efficiency overrides of one engine on one GPU family.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct FamilyEff {
    #[serde(default)]
    pub bw_eff: Option<f64>,
    #[serde(default)]
    pub compute_eff: Option<f64>,
    /// Overrides the engine's `prefill_dequant` on this family (a backend
    /// whose GEMM dequantises in on-chip memory, e.g. Metal, sets false).
    #[serde(default)]
    pub prefill_dequant: Option<bool>,
}

/// One serving engine.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Engine {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub aliases: Vec<String>,
    pub bw_eff: f64,
    pub compute_eff: f64,
    pub step_overhead_us: f64,
    pub layer_overhead_us: f64,
    /// Per-layer cost of a step that only decodes, when the engine runs the
    /// whole forward pass, attention included, as one CUDA graph (vLLM's
    /// `FULL_AND_PIECEWISE` mode), µs: no launch gap around each layer's
    /// attention. `None`: `layer_overhead_us` for every step.
    #[serde(default)]
    pub decode_layer_overhead_us: Option<f64>,
    /// Decode-only steps run as one CUDA graph by default (vLLM since
    /// 0.11.0), unless a deployment says otherwise.
    #[serde(default)]
    pub full_decode_graph: bool,
    /// The versions, `[from, to)`, that ran decode steps in pieces, with
    /// attention between the graphs: vLLM's V1 engine from 0.8.0, when it
    /// became the default, to 0.11.0. An engine named with a version in
    /// that range has no full decode graph; any other version has one (V0
    /// captured decode whole as well).
    #[serde(default)]
    pub piecewise_decode_versions: Option<[String; 2]>,
    #[serde(default)]
    pub moe_layer_overhead_us: f64,
    /// Activation bytes moved per token per layer, in units of
    /// hidden * 2 bytes (reads and writes between kernels).
    #[serde(default)]
    pub activation_passes: f64,
    /// Extra activation traffic per routed expert slot on MoE layers
    /// (dispatch, permutation, combine), same unit.
    #[serde(default)]
    pub moe_activation_passes: f64,
    /// Batched matmuls on formats with `dequant_for_gemm` expand the weights
    /// to FP16 in a separate pass first (read the packed weights, write two
    /// bytes each), serialised before the GEMM.
    #[serde(default)]
    pub prefill_dequant: bool,
    /// Engine-core CPU time of one step (scheduling, input preparation,
    /// sampling, output hand-off) that the GPU's work does not hide, µs: a
    /// step lasts at least this long. Shows on small models and fast GPUs.
    #[serde(default)]
    pub step_floor_us: f64,
    /// Engine-core CPU time per running sequence per step (its share of
    /// scheduling, input preparation and output processing), µs, which a
    /// synchronous scheduler makes the GPU wait for every step; with async
    /// scheduling it runs while the GPU works and costs nothing.
    #[serde(default)]
    pub seq_cpu_us: f64,
    /// The engine schedules step n + 1 while the GPU runs step n (vLLM's
    /// `--async-scheduling`, its default since 0.14.0), unless a deployment
    /// says otherwise.
    #[serde(default)]
    pub async_scheduling: bool,
    /// The engine version that made `async_scheduling` its default: an
    /// engine named with an earlier version ("vLLM 0.8.5") schedules
    /// synchronously, one with this or a later version ahead.
    #[serde(default)]
    pub async_scheduling_since: Option<String>,
    /// Fixed latency of a request outside the engine core, ms: HTTP, chat
    /// template and tokenisation on the way in, the hand-off to the engine
    /// core and the first token's way back out. Added to every request's
    /// arrival at the engine in `sim replay`, `sim validate` and `sim serve`.
    #[serde(default)]
    pub frontend_ms: f64,
    /// API-server CPU per streamed output token (detokenisation, one SSE
    /// chunk), µs. One server thread handles every stream, so a new request
    /// waits for the tokens queued ahead of it before it reaches the engine.
    #[serde(default)]
    pub frontend_token_us: f64,
    /// API-server latency per prompt token (tokenising the prompt, building
    /// the request's token lists and block hashes), µs, added to
    /// `frontend_ms`.
    #[serde(default)]
    pub frontend_prompt_token_us: f64,
    pub max_num_seqs: u32,
    pub max_batched_tokens: u32,
    /// Bigger scheduler defaults on big GPUs (vLLM's `vllm serve`: 8192
    /// batched tokens and 1024 sequences on GPUs of at least 70 GiB other
    /// than the A100, 2048 and 256 elsewhere).
    #[serde(default)]
    pub large_gpu: Option<LargeGpuDefaults>,
    pub gpu_memory_utilization: f64,
    /// Tokens per KV-cache block (vLLM --block-size, SGLang --page-size).
    #[serde(default = "default_block_size")]
    pub block_size: u32,
    /// How several GPUs are used: "tensor" (default) or "pipeline".
    #[serde(default = "default_parallel")]
    pub parallel: String,
    /// The KV cache keeps the model's 16-bit dtype whatever the weight
    /// format (vLLM's and SGLang's `--kv-cache-dtype auto`: an FP8 KV cache
    /// is asked for on its own). Off: the format's `kv_bits` (TensorRT-LLM's
    /// FP8 and NVFP4 recipes quantize the KV cache with the weights).
    #[serde(default)]
    pub kv_cache_model_dtype: bool,
    /// Models with linear-attention layers (Qwen3-Next, Qwen3.5) as vLLM
    /// serves them: each layer's state per sequence padded to one KV page,
    /// the attention block grown (in 16-token steps) until a page holds
    /// it, and prefix caching off unless asked for. Off: the state takes
    /// its own bytes and the block and prefix caching stay as set.
    #[serde(default)]
    pub hybrid_state_pages: bool,
    /// Attention runs tensor parallel: a rank keeps at least one KV head
    /// (heads copied where the model has fewer KV heads than ranks) and
    /// MLA's latent whole, so the pool holds fewer tokens and each rank
    /// reads its copies (vLLM; SGLang without `--enable-dp-attention`).
    /// Off: the KV cache is split across the ranks (attention data
    /// parallel, as TensorRT-LLM's throughput recipes for these models run).
    #[serde(default)]
    pub kv_copies_across_tp: bool,
    #[serde(default)]
    pub family: BTreeMap<String, FamilyEff>,
    #[serde(default)]
    pub source: String,
}

/// Scheduler defaults an engine picks on GPUs with much memory.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LargeGpuDefaults {
    /// Memory of one GPU, GiB, from which these apply.
    pub min_memory_gib: f64,
    /// GPU ids containing one of these never get them (vLLM leaves the A100 out).
    #[serde(default)]
    pub exclude: Vec<String>,
    pub max_num_seqs: u32,
    pub max_batched_tokens: u32,
}

impl Engine {
    /// The engine as a deployment that names it `name` runs it: with a
    /// version in the name ("vLLM 0.8.5", "vllm==0.9.2"), the defaults of
    /// that version.
    pub fn as_named(&self, name: &str) -> Engine {
        let mut e = self.clone();
        let version = version_in(name);
        if let (Some(since), Some(v)) = (e.async_scheduling_since.as_deref().and_then(version_in), version) {
            e.async_scheduling = v >= since;
        }
        if let (Some([from, to]), Some(v)) = (&e.piecewise_decode_versions, version) {
            if let (Some(from), Some(to)) = (version_in(from), version_in(to)) {
                e.full_decode_graph = !(from <= v && v < to);
            }
        }
        e
    }

    /// The engine's default (max_num_seqs, max_batched_tokens) on this GPU.
    pub fn scheduler_defaults(&self, gpu: &Gpu) -> (u32, u32) {
        match &self.large_gpu {
            Some(l)
                if gpu.memory_bytes() >= l.min_memory_gib * GIB
                    && !l.exclude.iter().any(|x| gpu.id.contains(x.as_str())) =>
            {
                (l.max_num_seqs, l.max_batched_tokens)
            }
            _ => (self.max_num_seqs, self.max_batched_tokens),
        }
    }
}

fn default_block_size() -> u32 {
    16
}

fn default_parallel() -> String {
    "tensor".to_string()
}

impl Engine {
    /// How long a request of `prompt_tokens` takes from the client to the
    /// engine core (and its first token back), seconds: `frontend_ms` and
    /// `frontend_prompt_token_us` per prompt token.
    pub fn frontend_latency_s(&self, prompt_tokens: u32) -> f64 {
        self.frontend_ms.max(0.0) * 1e-3 + f64::from(prompt_tokens) * self.frontend_prompt_token_us.max(0.0) * 1e-6
    }
    pub fn bw_eff_on(&self, gpu: &Gpu) -> f64 {
        self.family.get(&gpu.family).and_then(|f| f.bw_eff).unwrap_or(self.bw_eff)
    }
    pub fn compute_eff_on(&self, gpu: &Gpu) -> f64 {
        self.family.get(&gpu.family).and_then(|f| f.compute_eff).unwrap_or(self.compute_eff)
    }
    pub fn prefill_dequant_on(&self, gpu: &Gpu) -> bool {
        self.family.get(&gpu.family).and_then(|f| f.prefill_dequant).unwrap_or(self.prefill_dequant)
    }
}

/// A link between the GPUs of one server.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Interconnect {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub aliases: Vec<String>,
    /// Per GPU, per direction: host transfers and pipeline hand-offs.
    pub bandwidth_gbs: f64,
    /// One small all-reduce between two GPUs, as NCCL or vLLM's custom
    /// all-reduce achieves it (launch, synchronisation, wire latency).
    pub allreduce_latency_us: f64,
    /// Added for each GPU beyond two: a ring all-reduce takes 2(n−1) steps
    /// (0 where a switch keeps the latency flat in the GPU count).
    #[serde(default)]
    pub allreduce_hop_us: f64,
    /// The bus bandwidth an all-reduce reaches (nccl-tests' `busbw`);
    /// `None`: the link's `bandwidth_gbs`.
    #[serde(default)]
    pub allreduce_busbw_gbs: Option<f64>,
    /// GPUs one CPU socket holds; an all-reduce over more crosses the link
    /// between the sockets and reaches only `cross_socket_busbw_gbs`.
    #[serde(default)]
    pub socket_gpus: Option<u32>,
    #[serde(default)]
    pub cross_socket_busbw_gbs: Option<f64>,
    /// The most GPUs the link joins (an NVLink bridge: a pair); over more,
    /// the all-reduce is a ring through the host's PCIe.
    #[serde(default)]
    pub max_gpus: Option<u32>,
}

impl Interconnect {
    /// The fixed cost of one small all-reduce over `n` GPUs, in seconds.
    pub fn allreduce_latency_s(&self, n: u32) -> f64 {
        (self.allreduce_latency_us + self.allreduce_hop_us * f64::from(n.saturating_sub(2))) * 1e-6
    }
    /// The bus bandwidth of an all-reduce over `n` GPUs, in GB/s.
    pub fn allreduce_busbw_gbs(&self, n: u32) -> f64 {
        let within = self.allreduce_busbw_gbs.unwrap_or(self.bandwidth_gbs);
        match (self.socket_gpus, self.cross_socket_busbw_gbs) {
            (Some(socket), Some(across)) if n > socket => across,
            _ => within,
        }
    }
}

#[derive(Deserialize)]
struct GpuFile {
    #[serde(default)]
    gpu: Vec<Gpu>,
}
#[derive(Deserialize)]
struct ModelFile {
    expert_routing_zipf: Option<f64>,
    #[serde(default)]
    model: Vec<ModelEntry>,
}
#[derive(Deserialize)]
struct QuantFile {
    #[serde(default)]
    quant: Vec<Quant>,
}
#[derive(Deserialize)]
struct EngineFile {
    #[serde(default)]
    engine: Vec<Engine>,
}
#[derive(Deserialize)]
struct InterconnectFile {
    #[serde(default)]
    interconnect: Vec<Interconnect>,
}

/// All five catalogs.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Catalog {
    pub gpus: Vec<Gpu>,
    pub models: Vec<Model>,
    pub quants: Vec<Quant>,
    pub engines: Vec<Engine>,
    pub interconnects: Vec<Interconnect>,
    /// How unevenly MoE routers pick their experts: expert `i`, by
    /// popularity, is picked in proportion to `i^-s` (0: every expert
    /// alike). models.toml's `expert_routing_zipf`, 0 where it says
    /// nothing; see [`crate::perf::ExpertRouting`].
    pub expert_routing_zipf: f64,
}

fn parse<T: serde::de::DeserializeOwned>(text: &str, file: &str) -> Result<T, SimError> {
    toml::from_str(text).map_err(|e| SimError::Catalog { file: file.to_string(), message: e.to_string() })
}

/// Normalises a free-text name for alias matching: lower case, only ASCII
/// letters and digits, with '+' kept.
pub fn normalize(name: &str) -> String {
    name.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '+').map(|c| c.to_ascii_lowercase()).collect()
}

/// Where the trailing digits of a normalised name start (its length when
/// it ends in none).
fn trailing_digits_start(n: &str) -> usize {
    n.trim_end_matches(|c: char| c.is_ascii_digit()).len()
}

/// Where a trailing release tag ("v01" of a normalised "...-v0.1", "v3")
/// starts in a normalised name, if it has one after a letter or digit.
fn version_tag(n: &str) -> Option<usize> {
    let start = trailing_digits_start(n);
    let v = start.checked_sub(1)?;
    (start < n.len() && v > 2 && n.as_bytes()[v] == b'v').then_some(v)
}

/// Where a trailing release date ("2503" of "...-Instruct-2503", year and
/// month) starts in a normalised name: four digits after a letter.
fn date_tag(n: &str) -> Option<usize> {
    let start = trailing_digits_start(n);
    (n.len() - start == 4 && start > 2 && n.as_bytes()[start - 1].is_ascii_alphabetic()).then_some(start)
}

/// Drops parenthesised parts: "llama.cpp (CUDA)" becomes "llama.cpp".
fn strip_parens(name: &str) -> String {
    let mut out = String::new();
    let mut depth = 0usize;
    for c in name.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out.trim().to_string()
}

fn find_by_name<'a, T>(
    items: &'a [T],
    name: &str,
    id: impl Fn(&T) -> &str,
    aliases: impl Fn(&T) -> &[String],
    loose: bool,
) -> Option<&'a T> {
    let matches = |needle: &str| {
        let n = normalize(needle);
        if n.is_empty() {
            return None;
        }
        items.iter().find(|it| normalize(id(it)) == n || aliases(it).iter().any(|a| normalize(a) == n))
    };
    if let Some(hit) = matches(name) {
        return Some(hit);
    }
    let stripped = strip_parens(name);
    if let Some(hit) = matches(&stripped) {
        return Some(hit);
    }
    if loose {
        // Any single word of the text naming an entry ("table header says FP8").
        for word in stripped.split(|c: char| c.is_whitespace() || c == ',' || c == '/') {
            if let Some(hit) = matches(word) {
                return Some(hit);
            }
        }
    }
    None
}

/// Words of a GPU name that say nothing about the chip: vendor, brand,
/// form factor, memory type, system.
const GPU_NOISE: &[&str] = &[
    "nvidia",
    "amd",
    "apple",
    "geforce",
    "tesla",
    "instinct",
    "quadro",
    "sxm",
    "sxm2",
    "sxm3",
    "sxm4",
    "sxm5",
    "pcie",
    "dgx",
    "hgx",
    "nvl",
    "oam",
    "hbm",
    "hbm2",
    "hbm2e",
    "hbm3",
    "hbm3e",
    "gddr6",
    "gddr6x",
    "gddr7",
    "edition",
    "generation",
    "gpu",
    "card",
    "board",
    "with",
    "memory",
    "gb",
];
/// Form-factor words that pick between variants of one chip.
const FORM_FACTORS: &[&str] = &["pcie", "sxm", "sxm2", "sxm4", "sxm5", "nvl", "oam"];

/// What a GPU name says: the chip, the memory size, the GPU core count
/// (Apple: "38-core GPU") and the form factor, if stated.
struct GpuNameParts {
    chip: String,
    memory_gb: Option<f64>,
    cores: Option<u32>,
    form: Option<String>,
}

fn gpu_name_parts(name: &str) -> GpuNameParts {
    let lower = name.to_ascii_lowercase();
    let cores = lower.find("-core gpu").and_then(|i| {
        let head = &lower[..i];
        let start = head.rfind(|c: char| !c.is_ascii_digit()).map(|j| j + 1).unwrap_or(0);
        head[start..].parse().ok()
    });
    let words: Vec<String> = lower
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '.'))
        .filter(|w| !w.is_empty())
        .map(|w| w.trim_matches('.').to_string())
        .collect();
    let mut memory_gb = None;
    for (i, w) in words.iter().enumerate() {
        // "80GB", and "80G" as some listings write it.
        if let Some(n) = w.strip_suffix("gb").or_else(|| w.strip_suffix('g')).and_then(|n| n.parse::<f64>().ok()) {
            memory_gb = Some(n);
        } else if w == "gb" && i > 0 {
            memory_gb = words[i - 1].parse::<f64>().ok().or(memory_gb);
        }
    }
    let form = words.iter().find(|w| FORM_FACTORS.contains(&w.as_str())).map(|w| {
        if w.starts_with("sxm") {
            "sxm".to_string()
        } else {
            w.clone()
        }
    });
    let stripped = strip_parens(&lower);
    let chip = stripped
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty() && !GPU_NOISE.contains(w))
        .filter(|w| {
            let n = w.strip_suffix("gb").or_else(|| w.strip_suffix('g'));
            !n.is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
        })
        .filter(|w| !w.chars().all(|c| c.is_ascii_digit()) || w.len() >= 3)
        .collect::<String>();
    GpuNameParts { chip, memory_gb, cores, form }
}

impl Catalog {
    /// A GPU by name: an exact id or alias first; otherwise matched by chip,
    /// then memory size (and Apple's GPU core count), ignoring vendor and
    /// form-factor words. When the name leaves the variant open, the
    /// chip's most common variant is picked and the note says so.
    pub fn gpu_match(&self, name: &str) -> Option<(&Gpu, Option<String>)> {
        let unstated = name.to_ascii_lowercase().contains("variant not stated");
        if !unstated {
            if let Some(g) = find_by_name(&self.gpus, name, |g| &g.id, |g| &g.aliases, false) {
                return Some((g, None));
            }
        }
        let q = gpu_name_parts(name);
        if q.chip.is_empty() {
            return None;
        }
        let mut cands: Vec<&Gpu> = self.gpus.iter().filter(|g| g.chip_key() == q.chip).collect();
        if let Some(mem) = q.memory_gb {
            cands.retain(|g| (g.memory_gb - mem).abs() < 1.0);
        }
        if let Some(cores) = q.cores {
            let tag = format!("{cores}-core");
            let with: Vec<&Gpu> =
                cands.iter().copied().filter(|g| g.name.to_ascii_lowercase().contains(&tag)).collect();
            if !with.is_empty() {
                cands = with;
            }
        }
        if let Some(form) = &q.form {
            let with: Vec<&Gpu> = cands
                .iter()
                .copied()
                .filter(|g| gpu_name_parts(&g.name).form.as_deref() == Some(form.as_str()))
                .collect();
            if !with.is_empty() {
                cands = with;
            }
        }
        match cands.as_slice() {
            [] => None,
            [one] => {
                let note = unstated
                    .then(|| format!("GPU '{name}': the variant is not stated; {} is the only match", one.name));
                Some((one, note))
            }
            many => {
                // The chip's common variant, else the candidate with its
                // memory (an A100 PCIe of unstated memory: the 80GB card).
                let common_memory = self.gpus.iter().find(|g| g.common && g.chip_key() == q.chip).map(|g| g.memory_gb);
                let pick = many
                    .iter()
                    .copied()
                    .find(|g| g.common)
                    .or_else(|| many.iter().copied().find(|g| Some(g.memory_gb) == common_memory))
                    .unwrap_or(many[0]);
                let others: Vec<&str> = many.iter().filter(|g| g.id != pick.id).map(|g| g.id.as_str()).collect();
                Some((
                    pick,
                    Some(format!(
                        "GPU '{name}': the variant is not stated; assumed the most common, {} (others: {})",
                        pick.name,
                        others.join(", ")
                    )),
                ))
            }
        }
    }

    /// The catalogs compiled into the binary.
    pub fn embedded() -> Result<Catalog, SimError> {
        Catalog::from_texts(GPUS_TOML, MODELS_TOML, QUANTS_TOML, ENGINES_TOML, INTERCONNECTS_TOML, None)
    }

    fn from_texts(
        gpus: &str,
        models: &str,
        quants: &str,
        engines: &str,
        interconnects: &str,
        dir: Option<&Path>,
    ) -> Result<Catalog, SimError> {
        let models = parse::<ModelFile>(models, "models.toml")?;
        let expert_routing_zipf = models.expert_routing_zipf.unwrap_or(0.0);
        if !(expert_routing_zipf.is_finite() && expert_routing_zipf >= 0.0) {
            return Err(SimError::Catalog {
                file: "models.toml".into(),
                message: format!(
                    "expert_routing_zipf is {expert_routing_zipf}; it must be 0 (experts picked alike) or more"
                ),
            });
        }
        let models = models.model.into_iter().map(|e| e.into_model(dir)).collect::<Result<Vec<_>, _>>()?;
        Ok(Catalog {
            expert_routing_zipf,
            gpus: parse::<GpuFile>(gpus, "gpus.toml")?.gpu,
            models,
            quants: parse::<QuantFile>(quants, "quants.toml")?.quant,
            engines: parse::<EngineFile>(engines, "engines.toml")?.engine,
            interconnects: parse::<InterconnectFile>(interconnects, "interconnects.toml")?.interconnect,
        })
    }

    /// The embedded catalogs, with each of `gpus.toml`, `models.toml`,
    /// `quants.toml`, `engines.toml`, `interconnects.toml` found in `dir`
    /// replacing its embedded counterpart.
    pub fn with_overrides(dir: &Path) -> Result<Catalog, SimError> {
        if !dir.is_dir() {
            return Err(SimError::Catalog {
                file: dir.display().to_string(),
                message: "not a directory; --catalog takes a directory holding any of gpus.toml, models.toml, quants.toml, engines.toml, interconnects.toml".to_string(),
            });
        }
        let read = |name: &str, embedded: &'static str| -> Result<String, SimError> {
            let p = dir.join(name);
            if p.exists() {
                std::fs::read_to_string(&p)
                    .map_err(|e| SimError::Catalog { file: p.display().to_string(), message: e.to_string() })
            } else {
                Ok(embedded.to_string())
            }
        };
        Catalog::from_texts(
            &read("gpus.toml", GPUS_TOML)?,
            &read("models.toml", MODELS_TOML)?,
            &read("quants.toml", QUANTS_TOML)?,
            &read("engines.toml", ENGINES_TOML)?,
            &read("interconnects.toml", INTERCONNECTS_TOML)?,
            Some(dir),
        )
    }

    pub fn gpu(&self, name: &str) -> Option<&Gpu> {
        self.gpu_match(name).map(|(g, _)| g)
    }
    /// A model by id, alias, Hugging Face id (`meta-llama/Llama-3.1-8B-Instruct`)
    /// or a common spelling: after the exact match, the part after the last
    /// '/' is tried without trailing words such as "Instruct", "it", "hf",
    /// "FP8", "AWQ" or "GGUF", or a release tag such as "v0.1".
    /// Meta's own Hugging Face ids of Llama 3 and 3.1 begin with the vendor
    /// (`meta-llama/Meta-Llama-3.1-70B-Instruct`); they are tried without it.
    pub fn model(&self, name: &str) -> Option<&Model> {
        if let Some(m) = find_by_name(&self.models, name, |m| &m.id, |m| &m.aliases, false) {
            return Some(m);
        }
        let tail = strip_parens(name);
        let tail = tail.rsplit('/').next().unwrap_or(&tail);
        let n = normalize(tail);
        self.model_without_suffixes(n.clone()).or_else(|| {
            n.strip_prefix("meta")
                .filter(|rest| rest.starts_with("llama"))
                .and_then(|rest| self.model_without_suffixes(rest.to_string()))
        })
    }

    /// The entry a normalised name names once trailing words and a release
    /// tag are dropped one by one.
    fn model_without_suffixes(&self, mut n: String) -> Option<&Model> {
        const SUFFIXES: &[&str] = &[
            "instruct",
            "it",
            "chat",
            "hf",
            "base",
            "fp8",
            "fp16",
            "bf16",
            "awq",
            "gptq",
            "gguf",
            "int4",
            "int8",
            "dynamic",
            "python",
            "w8a8",
            "w4a16",
            "w8a16",
            "quantized",
            "mxfp4",
            "nvfp4",
            "fp4",
        ];
        loop {
            if let Some(m) =
                self.models.iter().find(|m| normalize(&m.id) == n || m.aliases.iter().any(|a| normalize(a) == n))
            {
                return Some(m);
            }
            if let Some(s) = SUFFIXES.iter().find(|s| n.len() > s.len() + 2 && n.ends_with(*s)) {
                n.truncate(n.len() - s.len());
            } else if let Some(cut) = version_tag(&n) {
                // A release tag: "Mixtral-8x7B-v0.1" is Mixtral 8x7B.
                n.truncate(cut);
            } else if let Some(cut) = date_tag(&n) {
                // A dated release: "Mistral-Small-3.1-24B-Instruct-2503".
                n.truncate(cut);
            } else {
                return None;
            }
        }
    }

    /// The weight format a model's name says its checkpoint ships in: the
    /// trailing words of Hugging Face ids such as `Qwen/Qwen3-235B-A22B-FP8`,
    /// `Qwen/Qwen2.5-7B-Instruct-AWQ`, `...-GPTQ-Int4`,
    /// `RedHatAI/Meta-Llama-3.1-70B-Instruct-quantized.w8a8` or `...-NVFP4`.
    /// `None` when the name states none (or a config.json path, whose
    /// `quantization_config` says it instead).
    pub fn format_in_name(&self, name: &str) -> Option<&Quant> {
        let name = strip_parens(name);
        if name.to_ascii_lowercase().ends_with(".json") {
            return None;
        }
        let tail = name.rsplit('/').next().unwrap_or(&name).to_ascii_lowercase();
        let words: Vec<&str> = tail.split(|c: char| !c.is_ascii_alphanumeric()).filter(|w| !w.is_empty()).collect();
        // The last word that names a format; GPTQ with "int8" after it is
        // 8-bit weight-only.
        let id = words.iter().enumerate().rev().find_map(|(i, w)| match *w {
            "fp8" => Some("fp8"),
            "w8a8" => Some("int8"),
            "awq" => Some("awq4"),
            "gptq" if words.get(i + 1) == Some(&"int8") => Some("int8-wo"),
            "gptq" | "w4a16" => Some("gptq4"),
            "mxfp4" => Some("mxfp4"),
            "nvfp4" | "fp4" => Some("nvfp4"),
            _ => None,
        })?;
        self.quants.iter().find(|q| q.id == id)
    }

    /// A model by name (see [`Catalog::model`]) or from a Hugging Face
    /// `config.json`: a name ending in `.json` is read as one (relative
    /// paths against `base` when given and the file is there, else the
    /// working directory).
    pub fn resolve_model(&self, name: &str, base: Option<&Path>) -> Result<Model, SimError> {
        let trimmed = name.trim();
        if !trimmed.to_ascii_lowercase().ends_with(".json") {
            return self.require_model(trimmed).cloned();
        }
        let path = Path::new(trimmed);
        let path = match base.map(|b| b.join(path)) {
            Some(p) if p.is_file() => p,
            _ => path.to_path_buf(),
        };
        let text = std::fs::read_to_string(&path).map_err(|e| SimError::Catalog {
            file: path.display().to_string(),
            message: format!("cannot read the model config: {e}; give a Hugging Face config.json or a catalog name (`fleetbench sim list models`)"),
        })?;
        // The model's name: its directory ("Qwen3-14B/config.json") or the file stem.
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("model");
        let id = if stem == "config" {
            path.parent().and_then(|p| p.file_name()).and_then(|s| s.to_str()).unwrap_or(stem)
        } else {
            stem
        };
        crate::hfconfig::model_from_config(id, &text, &path.display().to_string())
    }
    pub fn quant(&self, name: &str) -> Option<&Quant> {
        find_by_name(&self.quants, name, |q| &q.id, |q| &q.aliases, true)
    }
    /// An engine by id or alias, also with its version written after it
    /// ("vLLM 0.8.5", "vllm==0.9.2", "vllm v0.10.1"), or the container image
    /// a deployment ran ("vllm/vllm-openai:v0.10.1.1").
    pub fn engine(&self, name: &str) -> Option<&Engine> {
        let lookup = |name: &str| find_by_name(&self.engines, name, |e| &e.id, |e| &e.aliases, false);
        lookup(name)
            .or_else(|| {
                let unversioned: Vec<&str> =
                    engine_name_words(name).take_while(|(_, version)| !version).map(|(w, _)| w).collect();
                let unversioned = unversioned.join(" ");
                (!unversioned.is_empty() && unversioned != name.trim()).then(|| lookup(&unversioned)).flatten()
            })
            .or_else(|| {
                // An image names its engine in its repository
                // ("vllm/vllm-openai", "lmsysorg/sglang"), else in its owner.
                let (path, _) = image_reference(name)?;
                path.rsplit('/').find_map(lookup)
            })
    }
    pub fn interconnect(&self, name: &str) -> Option<&Interconnect> {
        find_by_name(&self.interconnects, name, |i| &i.id, |i| &i.aliases, false)
    }

    /// A quantization by name, also understanding "EXL2 N bpw" and "N-bit"
    /// free text by building an entry with that many bits.
    pub fn quant_from_text(&self, text: &str) -> Option<Quant> {
        if let Some(bpw) = bits_from_text(text) {
            let base = self.quant("exl2").cloned();
            if let Some(mut q) = base {
                q.bits_per_weight = bpw;
                q.name = text.to_string();
                return Some(q);
            }
        }
        self.quant(text).cloned()
    }

    pub fn require_gpu(&self, name: &str) -> Result<&Gpu, SimError> {
        self.gpu(name).ok_or_else(|| unknown("GPU", name, self.gpus.iter().map(|g| g.id.as_str()), "gpus"))
    }
    pub fn require_model(&self, name: &str) -> Result<&Model, SimError> {
        self.model(name).ok_or_else(|| unknown("model", name, self.models.iter().map(|m| m.id.as_str()), "models"))
    }
    pub fn require_quant(&self, name: &str) -> Result<Quant, SimError> {
        self.quant_from_text(name)
            .ok_or_else(|| unknown("quantization", name, self.quants.iter().map(|q| q.id.as_str()), "quants"))
    }
    pub fn require_engine(&self, name: &str) -> Result<&Engine, SimError> {
        self.engine(name).ok_or_else(|| unknown("engine", name, self.engines.iter().map(|e| e.id.as_str()), "engines"))
    }
    pub fn require_interconnect(&self, name: &str) -> Result<&Interconnect, SimError> {
        self.interconnect(name).ok_or_else(|| {
            unknown("interconnect", name, self.interconnects.iter().map(|i| i.id.as_str()), "interconnects")
        })
    }
}

fn bits_from_text(text: &str) -> Option<f64> {
    let lower = text.to_ascii_lowercase();
    let idx = lower.find("bpw")?;
    let before = lower[..idx].trim_end();
    let start = before.rfind(|c: char| !(c.is_ascii_digit() || c == '.')).map(|i| i + 1).unwrap_or(0);
    before[start..].parse::<f64>().ok().filter(|b| *b > 0.0 && *b <= 32.0)
}

fn unknown<'a>(kind: &str, name: &str, ids: impl Iterator<Item = &'a str>, list: &str) -> SimError {
    let known: Vec<&str> = ids.collect();
    SimError::Unknown {
        kind: kind.to_string(),
        name: name.to_string(),
        hint: format!(
            "known: {}; see `fleetbench sim list {list}`, or add an entry with --catalog DIR",
            known.join(", ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_read_from_engine_names() {
        assert_eq!(version_in("vLLM 0.8.5"), Some([0, 8, 5]));
        assert_eq!(version_in("vllm==0.9.2"), Some([0, 9, 2]));
        assert_eq!(version_in("vllm v0.10.1rc1"), Some([0, 10, 1]));
        assert_eq!(version_in("vllm 0.14"), Some([0, 14, 0]));
        assert_eq!(version_in("vllm-openai:v0.11.0"), Some([0, 11, 0]));
        assert_eq!(version_in("vllm"), None);
        assert_eq!(version_in("TensorRT-LLM"), None);
        // Container images: the tag, not a registry's port, is the version.
        assert_eq!(version_in("vllm/vllm-openai:v0.10.1.1"), Some([0, 10, 1]));
        assert_eq!(version_in("registry.local:5000/vllm/vllm-openai:v0.9.0"), Some([0, 9, 0]));
        assert_eq!(version_in("registry.local:5000/vllm/vllm-openai"), None);
        assert_eq!(version_in("vllm/vllm-openai:latest"), None);
        assert_eq!(version_in("vllm/vllm-openai@sha256:0123abcd"), None);
        // A version joined to the name, and the V1 engine, which is no release.
        assert_eq!(version_in("vllm-0.11.0"), Some([0, 11, 0]));
        assert_eq!(version_in("vllm_v0.10.2"), Some([0, 10, 2]));
        assert_eq!(version_in("vLLM V1"), None);
        assert_eq!(version_in("vllm/vllm-openai:nightly-2026-01-05"), None);
        let c = Catalog::embedded().unwrap();
        let id = |name: &str| c.engine(name).map(|e| e.id.as_str());
        assert_eq!(id("vllm/vllm-openai:v0.10.1.1"), Some("vllm"));
        assert_eq!(id("docker.io/vllm/vllm-openai:nightly"), Some("vllm"));
        assert_eq!(id("docker.io/lmsysorg/sglang:v0.4.9.post2-cu126"), Some("sglang"));
        assert_eq!(id("ghcr.io/ggml-org/llama.cpp:server-cuda"), Some("llamacpp"));
        assert_eq!(id("example/unknown-server:1.0"), None);
        assert_eq!(id("vllm-0.11.0"), Some("vllm"));
        assert_eq!(id("vLLM_v0.10.2"), Some("vllm"));
        assert_eq!(id("vLLM V1"), Some("vllm"));
        assert_eq!(id("gpt-fast"), Some("gpt-fast"));
        let scheduling = |name: &str| c.engine(name).map(|e| e.as_named(name).async_scheduling);
        assert_eq!(scheduling("vllm"), Some(true));
        assert_eq!(scheduling("vLLM 0.13.2"), Some(false));
        assert_eq!(scheduling("vllm 0.14.0"), Some(true));
        assert_eq!(scheduling("vllm 1.0"), Some(true));
        assert_eq!(scheduling("vllm/vllm-openai:v0.10.1.1"), Some(false));
        assert_eq!(scheduling("vllm/vllm-openai:latest"), Some(true));
        assert_eq!(scheduling("nothing 1.0"), None);
        // vLLM's V1 engine captured decode steps in pieces from 0.8.0 (its
        // default from then) until FULL_AND_PIECEWISE became the default in
        // 0.11.0; V0 before it captured them whole.
        let full = |name: &str| c.engine(name).map(|e| e.as_named(name).full_decode_graph);
        assert_eq!(full("vllm"), Some(true));
        assert_eq!(full("vLLM 0.6.3"), Some(true));
        assert_eq!(full("vllm 0.8.0"), Some(false));
        assert_eq!(full("vllm/vllm-openai:v0.10.1.1"), Some(false));
        assert_eq!(full("vllm 0.11.0"), Some(true));
        assert_eq!(full("vllm 0.19"), Some(true));
        assert_eq!(full("sglang"), Some(false));
    }

    /// Datacenter GDDR cards run with ECC on: engines see the driver's total
    /// (an L40S's 46068 MiB), not the 48 GB on the box; HBM cards keep theirs.
    #[test]
    fn ecc_on_gddr_cards_leaves_the_memory_the_driver_reports() {
        let c = Catalog::embedded().unwrap();
        let gib = |name: &str| c.gpu(name).map(|g| g.memory_bytes() / GIB).unwrap();
        assert!((gib("NVIDIA L40S") - 46068.0 / 1024.0).abs() < 0.01);
        assert!((gib("NVIDIA L4") - 23034.0 / 1024.0).abs() < 0.01);
        assert_eq!(gib("NVIDIA A100-SXM4-80GB"), 80.0);
        // The name still matches by the memory the vendor states.
        assert_eq!(c.gpu("NVIDIA L40S 48GB").map(|g| g.id.as_str()), Some("l40s"));
    }

    /// The names published rows give the formats, engines and GPUs added
    /// for them: every GGUF type llama-quantize offers, gpt-fast's
    /// weight-only formats, gpt-fast itself and one GCD of an MI250X.
    #[test]
    fn published_names_of_formats_engines_and_gpus_resolve() {
        let c = Catalog::embedded().unwrap();
        for (text, id) in [
            ("Q4_K_S", "q4_k_s"),
            ("Q3_K", "q3_k_m"),
            ("Q2_K", "q2_k"),
            ("Q5_1", "q5_1"),
            ("IQ4_XS", "iq4_xs"),
            ("F32", "fp32"),
            ("GPTQ-Int4", "gptq4"),
            ("8-bit", "int8-wo"),
            ("4-bit (G=32)", "int4-g32"),
            ("int4", "int4-wo"),
        ] {
            assert_eq!(c.quant_from_text(text).map(|q| q.id), Some(id.to_string()), "{text}");
        }
        for text in ["gpt-fast", "gpt-fast (PyTorch)", "PyTorch (gpt-fast)"] {
            assert_eq!(c.engine(text).map(|e| e.id.as_str()), Some("gpt-fast"), "{text}");
        }
        for text in ["AMD Instinct MI250X", "one GCD of a MI-250x", "MI250X"] {
            assert_eq!(c.gpu(text).map(|g| g.id.as_str()), Some("mi250x-gcd"), "{text}");
        }
    }

    #[test]
    fn embedded_catalogs_parse_and_cover_the_issue_list() {
        let c = Catalog::embedded().expect("embedded catalogs parse");
        for g in [
            "rtx3090",
            "rtx4090",
            "rtx5090",
            "rtx-pro-6000",
            "a100-40gb",
            "a100-80gb",
            "l40s",
            "h100-pcie",
            "h100-sxm",
            "h200",
            "b200",
            "mi300x",
            "m2-max",
            "m2-ultra",
            "m3-max",
            "m4-max",
        ] {
            assert!(c.gpu(g).is_some(), "missing GPU {g}");
        }
        for m in [
            "qwen3-coder-30b-a3b",
            "qwen2.5-coder-32b",
            "llama-3.1-8b",
            "llama-3.1-70b",
            "llama-3.3-70b",
            "mixtral-8x7b",
            "gpt-oss-20b",
            "gpt-oss-120b",
            "qwen3-235b-a22b",
            "deepseek-v3",
            "smollm2-135m",
        ] {
            assert!(c.model(m).is_some(), "missing model {m}");
        }
        for q in ["fp16", "bf16", "fp8", "int8", "awq4", "gptq4", "nvfp4", "mxfp4", "q4_k_m", "q5_k_m", "q6_k", "q8_0"]
        {
            assert!(c.quant(q).is_some(), "missing quant {q}");
        }
        for e in ["vllm", "sglang", "llamacpp", "trtllm"] {
            assert!(c.engine(e).is_some(), "missing engine {e}");
        }
    }

    #[test]
    fn free_text_names_from_the_calibration_file_resolve() {
        let c = Catalog::embedded().unwrap();
        assert_eq!(c.gpu("NVIDIA GeForce RTX 3090 24GB").unwrap().id, "rtx3090");
        assert_eq!(c.gpu("NVIDIA H100 SXM 80GB (DGX H100)").unwrap().id, "h100-sxm");
        assert_eq!(c.model("Meta-Llama-3-8B").unwrap().id, "llama-3.1-8b");
        assert_eq!(c.quant("Q4_K_M").unwrap().id, "q4_k_m");
        assert_eq!(c.quant("table header says FP8 (ambiguous)").unwrap().id, "fp8");
        assert_eq!(c.engine("llama.cpp (CUDA)").unwrap().id, "llamacpp");
        assert_eq!(c.interconnect("NVLink (DGX H100)").unwrap().id, "nvlink4");
        let q = c.quant_from_text("EXL2 2.5 bpw").unwrap();
        assert!((q.bits_per_weight - 2.5).abs() < 1e-9);
        assert!(c.gpu("Voodoo 2").is_none());
    }

    #[test]
    fn gpus_match_by_chip_then_memory_ignoring_form_factor_words() {
        let c = Catalog::embedded().unwrap();
        let id = |n: &str| c.gpu_match(n).map(|(g, note)| (g.id.clone(), note.is_some()));
        assert_eq!(id("NVIDIA H200 SXM 141GB (DGX H200)"), Some(("h200".into(), false)));
        assert_eq!(id("NVIDIA H200 NVL"), Some(("h200-nvl".into(), false)));
        // nvidia-smi's names of the H100 NVL and the A100 40GB PCIe card.
        assert_eq!(id("NVIDIA H100 NVL"), Some(("h100-nvl".into(), false)));
        assert_eq!(id("NVIDIA A100-PCIE-40GB"), Some(("a100-40gb-pcie".into(), false)));
        // The GH200 is named after its Grace memory; its HBM decides.
        assert_eq!(id("NVIDIA GH200 480GB"), Some(("gh200".into(), false)));
        assert_eq!(id("NVIDIA GH200 144G HBM3e"), Some(("gh200-144gb".into(), false)));
        assert_eq!(id("NVIDIA Tesla V100-SXM2-16GB"), Some(("v100-sxm2-16gb".into(), false)));
        assert_eq!(id("NVIDIA Tesla V100 PCIe 16 GB"), Some(("v100-pcie-16gb".into(), false)));
        assert_eq!(id("Apple M2 Max (30-core GPU) 32GB"), Some(("m2-max-30c-32gb".into(), false)));
        assert_eq!(id("Apple M3 Max (40-core GPU) 48GB"), Some(("m3-max-40c-48gb".into(), false)));
        assert_eq!(id("Apple M1 Max 64GB"), Some(("m1-max-32c-64gb".into(), false)));
        assert_eq!(id("GeForce RTX 4080 SUPER 16GB"), Some(("rtx4080-super".into(), false)));
        assert_eq!(id("AMD Instinct MI355X OAM 288GB"), Some(("mi355x".into(), false)));
        // The variant left open: the most common one, with a note saying so.
        assert_eq!(id("NVIDIA H100 (variant not stated)"), Some(("h100-sxm".into(), true)));
        assert_eq!(id("Apple M3 Max"), Some(("m3-max".into(), false)));
        assert_eq!(id("Apple M3 Max (variant not stated)"), Some(("m3-max".into(), true)));
        // PCIe, memory unstated: the PCIe card with the common variant's memory, said so.
        assert_eq!(id("NVIDIA A100 PCIe"), Some(("a100-80gb-pcie".into(), true)));
        // A memory size the chip never had is not matched.
        assert_eq!(id("NVIDIA H100 SXM 24GB"), None);
        assert_eq!(id("NVIDIA RTX 4070"), None);
        for g in ["gb200", "b300", "mi325x", "l4", "a10g", "t4", "p40", "rtx3090ti", "rtx4080", "rtx5080"] {
            let gpu = c.gpu(g).unwrap_or_else(|| panic!("missing GPU {g}"));
            assert!(!gpu.source.is_empty() && gpu.memory_bw_gbs > 0.0 && gpu.fp16_tflops > 0.0, "{g}");
        }
    }

    #[test]
    fn cards_with_inline_ecc_lose_a_sixteenth_of_memory_and_of_bandwidth() {
        let c = Catalog::embedded().unwrap();
        // The cards whose driver shows a sixteenth of the memory kept for
        // check bits are exactly those that move check bits with the data.
        for g in &c.gpus {
            let kept = g.driver_memory_gb.map(|d| 1.0 - d / g.memory_gb);
            let sixteenth = kept.is_some_and(|k| (k - 1.0 / 16.0).abs() < 0.005);
            assert_eq!(g.inline_ecc, sixteenth, "{}: {kept:?}", g.id);
        }
        let bw = |id: &str| c.gpu(id).unwrap().data_bw_gbs();
        assert!((bw("l40s") - 864.0 * 15.0 / 16.0).abs() < 1e-9);
        assert!((bw("a40") - 696.0 * 15.0 / 16.0).abs() < 1e-9);
        // Workstation and consumer cards ship with ECC off; HBM keeps its
        // check bits aside.
        assert_eq!((bw("rtx6000-ada"), bw("rtx4090"), bw("h100-sxm")), (960.0, 1008.0, 3350.0));
    }

    #[test]
    fn a_prediction_says_when_the_gpu_variant_was_assumed() {
        let c = Catalog::embedded().unwrap();
        let spec = crate::DeploymentSpec {
            gpu: "NVIDIA H100 80GB (variant not stated)".into(),
            model: "llama-3.1-8b".into(),
            quant: "fp8".into(),
            ..crate::DeploymentSpec::default()
        };
        let d = crate::Deployment::resolve(&c, &spec).unwrap();
        let p = crate::predict(&d, crate::Workload { input_tokens: 100, output_tokens: 100 }, &[1]);
        assert_eq!(p.notes.len(), 1);
        assert!(p.notes[0].contains("H100 SXM"), "{:?}", p.notes);
    }

    #[test]
    fn every_model_has_a_config_and_the_stated_figures_agree_with_it() {
        let c = Catalog::embedded().unwrap();
        assert!(c.models.len() >= 50, "{} models", c.models.len());
        let text = MODELS_TOML;
        let entries: ModelFile = toml::from_str(text).unwrap();
        for e in entries.model {
            let cfg = e.config.clone().unwrap_or_else(|| panic!("model {} has no config", e.id));
            let derived =
                crate::hfconfig::model_from_config(&e.id, crate::hfconfig::embedded_config(&cfg).unwrap(), &cfg)
                    .unwrap();
            let m = c.model(&e.id).unwrap();
            assert_eq!(
                (m.layers, m.hidden, m.kv_heads, m.head_dim),
                (derived.layers, derived.hidden, derived.kv_heads, derived.head_dim),
                "{}",
                e.id
            );
            assert_eq!((m.experts, m.experts_per_token), (derived.experts, derived.experts_per_token), "{}", e.id);
            let rel = (m.params_total_b - derived.params_total_b).abs() / m.params_total_b;
            assert!(rel < 0.04, "{}: stated {} B, config gives {} B", e.id, m.params_total_b, derived.params_total_b);
        }
        for m in [
            "qwen3-14b",
            "qwen3-32b",
            "codellama-34b",
            "mixtral-8x22b",
            "llama-3.1-405b",
            "llama-4-scout",
            "gemma-3-27b",
            "mistral-small-24b",
            "deepseek-v3",
            "gpt-oss-20b",
            "gpt-oss-120b",
        ] {
            assert!(c.model(m).is_some(), "missing model {m}");
        }
    }

    #[test]
    fn models_resolve_from_hub_ids_spellings_and_config_files() {
        let c = Catalog::embedded().unwrap();
        assert_eq!(c.model("meta-llama/Llama-3.1-8B-Instruct").unwrap().id, "llama-3.1-8b");
        assert_eq!(c.model("Qwen/Qwen3-14B-FP8").unwrap().id, "qwen3-14b");
        assert_eq!(c.model("google/gemma-3-27b-it").unwrap().id, "gemma-3-27b");
        assert_eq!(c.model("unsloth/Mistral-Small-24B-Instruct-2501-GGUF").unwrap().id, "mistral-small-24b");
        // Meta's own ids of Llama 3.1 start with the vendor.
        assert_eq!(c.model("meta-llama/Meta-Llama-3.1-70B-Instruct").unwrap().id, "llama-3.1-70b");
        assert_eq!(c.model("RedHatAI/Meta-Llama-3.1-70B-Instruct-FP8-dynamic").unwrap().id, "llama-3.1-70b");
        assert_eq!(c.model("neuralmagic/Meta-Llama-3.1-8B-Instruct-quantized.w8a8").unwrap().id, "llama-3.1-8b");
        assert_eq!(c.model("Qwen/Qwen2.5-7B-Instruct-GPTQ-Int4").unwrap().id, "qwen2.5-7b");
        assert!(c.model("acme/NotAModel-7B").is_none());
        assert!(c.model("acme/Meta-NotAModel-7B").is_none());
        // A dated release of a known model.
        assert_eq!(c.model("mistralai/Mistral-Small-3.1-24B-Instruct-2503").unwrap().id, "mistral-small-24b");
        assert_eq!(c.model("Qwen/Qwen3-14B-Instruct-2507").unwrap().id, "qwen3-14b");
        assert!(c.model("acme/NotAModel-Instruct-2503").is_none());
        // The format a name states, and none where it states none.
        let format = |name: &str| c.format_in_name(name).map(|q| q.id.clone());
        assert_eq!(format("Qwen/Qwen3-14B-FP8").as_deref(), Some("fp8"));
        assert_eq!(format("TheBloke/Mixtral-8x7B-Instruct-v0.1-AWQ").as_deref(), Some("awq4"));
        assert_eq!(format("meta-llama/Llama-3.1-8B-Instruct"), None);
        assert_eq!(format("openai/gpt-oss-20b"), None);
        assert_eq!(format("models/Qwen3-14B-FP8/config.json"), None, "a config.json says it itself");

        let dir = std::env::temp_dir().join(format!("fleetbench-sim-hfcfg-{}", std::process::id()));
        let model_dir = dir.join("Qwen3-14B");
        std::fs::create_dir_all(&model_dir).unwrap();
        let cfg = model_dir.join("config.json");
        std::fs::write(&cfg, crate::hfconfig::embedded_config("qwen3-14b.json").unwrap()).unwrap();
        let m = c.resolve_model(cfg.to_str().unwrap(), None).unwrap();
        assert_eq!(m.id, "Qwen3-14B");
        assert_eq!(
            m,
            crate::hfconfig::model_from_config(
                "Qwen3-14B",
                crate::hfconfig::embedded_config("qwen3-14b.json").unwrap(),
                &cfg.display().to_string()
            )
            .unwrap()
        );
        let spec = crate::DeploymentSpec {
            gpu: "h100-sxm".into(),
            model: cfg.display().to_string(),
            quant: "fp8".into(),
            ..crate::DeploymentSpec::default()
        };
        let d = crate::Deployment::resolve(&c, &spec).unwrap();
        let shipped =
            crate::Deployment::resolve(&c, &crate::DeploymentSpec { model: "qwen3-14b".into(), ..spec }).unwrap();
        assert!((d.weight_bytes - shipped.weight_bytes).abs() < 1.0);
        let e = c.resolve_model(dir.join("missing.json").to_str().unwrap(), None).unwrap_err().to_string();
        assert!(e.contains("missing.json"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn moe_routed_share_reproduces_active_parameters() {
        let c = Catalog::embedded().unwrap();
        let m = c.model("qwen3-coder-30b-a3b").unwrap();
        let routed = m.routed_params();
        let shared = m.params_total_b * 1e9 - routed;
        let active = shared + routed * 8.0 / 128.0;
        assert!((active / 1e9 - 3.3).abs() < 1e-6, "active {active}");
    }

    #[test]
    fn a_catalog_directory_replaces_only_the_files_it_holds() {
        let dir = std::env::temp_dir().join(format!("fleetbench-sim-catalog-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("gpus.toml"),
            "[[gpu]]\nid = \"lab-card\"\nname = \"Lab Card\"\nfamily = \"ada\"\naliases = [\"LC-1\"]\nmemory_gb = 16\nmemory_bw_gbs = 500\nfp32_tflops = 20\nfp16_tflops = 80\ntdp_w = 200\nidle_w = 10\n",
        )
        .unwrap();
        let c = Catalog::with_overrides(&dir).unwrap();
        assert_eq!(c.gpus.len(), 1);
        assert_eq!(c.gpu("lc-1").unwrap().id, "lab-card");
        assert!(c.gpu("rtx3090").is_none());
        assert!(c.model("llama-3.1-8b").is_some());
        std::fs::write(dir.join("models.toml"), "[[model]]\nid = 3\n").unwrap();
        let err = Catalog::with_overrides(&dir).unwrap_err().to_string();
        assert!(err.contains("models.toml"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(Catalog::with_overrides(&dir).is_err());
    }

    #[test]
    fn the_routing_skew_is_models_toml_s_and_zero_where_it_says_nothing() {
        assert!(Catalog::embedded().unwrap().expert_routing_zipf > 0.0);
        let with =
            |models: &str| Catalog::from_texts(GPUS_TOML, models, QUANTS_TOML, ENGINES_TOML, INTERCONNECTS_TOML, None);
        assert_eq!(with("").unwrap().expert_routing_zipf, 0.0);
        assert_eq!(with("expert_routing_zipf = 0.7\n").unwrap().expert_routing_zipf, 0.7);
        for bad in ["-0.5", "nan"] {
            let err = with(&format!("expert_routing_zipf = {bad}\n")).unwrap_err().to_string();
            assert!(err.contains("models.toml") && err.contains("expert_routing_zipf"), "{err}");
        }
    }

    #[test]
    fn unknown_names_say_what_to_do() {
        let c = Catalog::embedded().unwrap();
        let e = c.require_gpu("tpu-v9").unwrap_err().to_string();
        assert!(e.contains("tpu-v9") && e.contains("sim list gpus"), "{e}");
    }
}
