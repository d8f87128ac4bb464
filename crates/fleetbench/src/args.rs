//! Argument groups several commands share: where the backend is and how to
//! talk to it, what to send, the goodput SLOs, arrivals, output files, price
//! and meter, and the live dashboard. Each group turns itself into the
//! library's own configuration type.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::builder::PossibleValuesParser;
use clap::builder::TypedValueParser as _;
use clap::{Args, ValueEnum};
use fleetbench_client::{ApiKey, ClientConfig, Timeouts};
use fleetbench_core::{parse_duration, ApiKind, SamplingParams, Slo};
use fleetbench_econ::instruments::{InstrumentSpec, DEFAULT_PUE, DEFAULT_SUPPLY};
use fleetbench_load::exposition::LiveMetrics;
use fleetbench_load::{Arrival, ArrivalSpec, Schedule, WorkloadSpec};
use fleetbench_sim::{DeploymentSpec, EngineKnobs, Parallelism};
use fleetbench_workload::models::ModelMix;
use fleetbench_workload::{RampKind, RampSpec, Traffic};

/// `--api chat|completions|anthropic`, parsed into the one [`ApiKind`].
fn api_parser() -> impl clap::builder::TypedValueParser<Value = ApiKind> {
    PossibleValuesParser::new(ApiKind::ALL.map(ApiKind::as_str)).map(|s| ApiKind::parse(&s).unwrap_or(ApiKind::Chat))
}

/// Where and how to talk to a backend (run and sweep).
#[derive(Args, Debug, Clone)]
pub struct BackendArgs {
    /// Base URL of the backend, with the API version path.
    #[arg(long, value_name = "URL", help_heading = "Backend")]
    pub url: String,
    /// Model name sent in every request; in `run`, several (a,b,c, or weighted
    /// a,b,c:5,3,2) spread the requests (or sessions) over served models or adapters.
    #[arg(long, help_heading = "Backend")]
    pub model: String,
    /// Wire protocol: chat (OpenAI /v1/chat/completions), completions
    /// (OpenAI /v1/completions) or anthropic (Anthropic /v1/messages).
    #[arg(long, default_value = "chat", value_parser = api_parser(), help_heading = "Backend")]
    pub api: ApiKind,
    /// Environment variable holding the API key (default OPENAI_API_KEY, or
    /// ANTHROPIC_API_KEY with --api anthropic). The key is never logged or stored.
    #[arg(long, value_name = "VAR", help_heading = "Backend")]
    pub api_key_env: Option<String>,
    /// Read the API key from this file (first line) instead of the environment.
    #[arg(long, value_name = "PATH", help_heading = "Backend", conflicts_with = "api_key_env")]
    pub api_key_file: Option<PathBuf>,
    /// Ask for whole responses instead of streams (TTFT then equals E2EL).
    #[arg(long, help_heading = "Backend")]
    pub no_stream: bool,
    /// Time each token by when fleetbench read it, not by the kernel's
    /// receive stamp. By default (Linux, plain http://, no proxy) arrivals
    /// carry the instant the kernel received them, so a busy client does not
    /// add its own lag to TTFT and ITL; this flag shows that lag.
    #[arg(long, help_heading = "Backend")]
    pub read_timestamps: bool,
    /// Give up connecting after this long (e.g. 2s, 500ms).
    #[arg(long, value_name = "DUR", value_parser = parse_duration, help_heading = "Timeouts")]
    pub timeout_connect: Option<Duration>,
    /// Fail a request whose first token takes longer than this.
    #[arg(long, value_name = "DUR", value_parser = parse_duration, help_heading = "Timeouts")]
    pub timeout_first_token: Option<Duration>,
    /// Fail a request when two tokens are further apart than this.
    #[arg(long, value_name = "DUR", value_parser = parse_duration, help_heading = "Timeouts")]
    pub timeout_idle: Option<Duration>,
    /// Fail a request that takes longer than this in all.
    #[arg(long, value_name = "DUR", value_parser = parse_duration, help_heading = "Timeouts")]
    pub timeout_total: Option<Duration>,
    /// On HTTP 429, wait as Retry-After says and retry, up to N times (default 5 when given without N).
    #[arg(long, value_name = "N", num_args = 0..=1, default_missing_value = "5", help_heading = "Timeouts")]
    pub retry_429: Option<u32>,
}

impl BackendArgs {
    /// `--model`: one model, or a mix of several (`a,b,c[:WEIGHTS]`).
    pub fn model_mix(&self) -> anyhow::Result<ModelMix> {
        ModelMix::parse(&self.model).map_err(|e| anyhow::anyhow!("bad --model '{}': {e}", self.model))
    }

    /// The client configuration, with the API key read from the environment
    /// or the named file.
    pub fn client_config(&self) -> anyhow::Result<ClientConfig> {
        let mut cfg = ClientConfig::new(self.url.clone(), self.api, self.model_mix()?.first());
        cfg.api_key = match (&self.api_key_file, &self.api_key_env) {
            (Some(path), _) => {
                Some(ApiKey::from_file(path).with_context(|| format!("reading the API key file {}", path.display()))?)
            }
            (None, Some(var)) => {
                let key = ApiKey::from_env(var);
                if key.is_none() {
                    bail!("--api-key-env {var}: that environment variable is not set or empty");
                }
                key
            }
            (None, None) => ApiKey::from_env(match self.api {
                ApiKind::Anthropic => "ANTHROPIC_API_KEY",
                _ => "OPENAI_API_KEY",
            }),
        };
        cfg.stream = !self.no_stream;
        cfg.kernel_stamps = !self.read_timestamps;
        cfg.timeouts = Timeouts {
            connect: self.timeout_connect,
            first_token: self.timeout_first_token,
            idle: self.timeout_idle,
            total: self.timeout_total,
        };
        cfg.retry_429 = self.retry_429.unwrap_or(0);
        Ok(cfg)
    }

    /// How long to wait for the backend's first answer before measuring.
    pub fn probe_timeout(&self) -> Duration {
        self.timeout_connect.unwrap_or(Duration::from_secs(10))
    }
}

/// What to send (run and sweep).
#[derive(Args, Debug, Clone)]
pub struct SamplingArgs {
    /// max_tokens for every request (default: the workload's output size).
    #[arg(long, help_heading = "Requests")]
    pub max_tokens: Option<u32>,
    #[arg(long, help_heading = "Requests")]
    pub temperature: Option<f32>,
    /// Ask the server to ignore end-of-sequence (vLLM, SGLang) so outputs are exactly max_tokens.
    #[arg(long, help_heading = "Requests")]
    pub ignore_eos: bool,
    /// Seed for prompts, arrivals and the server's sampler.
    #[arg(long, default_value_t = 0, help_heading = "Requests")]
    pub seed: u64,
    /// What to send: synthetic:in=I,out=O[,spread=S],
    /// shared-prefix:groups=G,users=U,system=S,question=Q,output=O[,multi-turn],
    /// file:PATH.jsonl or coding-swarm (docs/METRICS.md, "Workloads")
    #[arg(long, default_value = DEFAULT_WORKLOAD, help_heading = "Requests")]
    pub workload: String,
}

/// The `--workload` of a command line that gives none.
pub const DEFAULT_WORKLOAD: &str = "synthetic:in=512,out=256";

impl SamplingArgs {
    pub fn sampling(&self) -> SamplingParams {
        SamplingParams {
            max_tokens: self.max_tokens,
            temperature: self.temperature,
            ignore_eos: self.ignore_eos,
            seed: (self.seed != 0).then_some(self.seed),
        }
    }
}

/// Goodput SLOs (run and sweep).
#[derive(Args, Debug, Clone, Default)]
pub struct SloArgs {
    /// Goodput SLO on time to first token, ms.
    #[arg(long, value_name = "MS", help_heading = "Goodput")]
    pub slo_ttft: Option<f64>,
    /// Goodput SLO on time per output token, ms.
    #[arg(long, value_name = "MS", help_heading = "Goodput")]
    pub slo_tpot: Option<f64>,
    /// Goodput SLO on end-to-end latency, ms.
    #[arg(long, value_name = "MS", help_heading = "Goodput")]
    pub slo_e2el: Option<f64>,
}

impl SloArgs {
    pub fn slo(&self) -> Slo {
        Slo { ttft_ms: self.slo_ttft, tpot_ms: self.slo_tpot, e2el_ms: self.slo_e2el }
    }
}

/// The inter-arrival distribution of an open loop.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ArrivalArg {
    Poisson,
    Constant,
    Gamma,
}

impl ArrivalArg {
    /// The engine's arrival process; `burstiness` is the gamma shape.
    pub fn arrival(self, burstiness: f64) -> Arrival {
        match self {
            ArrivalArg::Poisson => Arrival::Poisson,
            ArrivalArg::Constant => Arrival::Constant,
            ArrivalArg::Gamma => Arrival::Gamma { burstiness },
        }
    }
}

/// When requests go and when the run stops: the one schedule and arrival
/// group of `fleetbench run` and `fleetbench sim replay`, so both accept
/// exactly the same strings.
#[derive(Args, Debug, Clone)]
pub struct TrafficArgs {
    /// Closed loop: this many agents, each sending its next request when the previous one ends.
    #[arg(long, short = 'c', help_heading = "Schedule", conflicts_with_all = ["rate", "arrivals"])]
    pub concurrency: Option<u32>,
    /// Open loop: requests per second, sent on schedule whatever the server does
    /// (shorthand for one open-ended stage of --arrivals).
    #[arg(long, help_heading = "Schedule", conflicts_with = "arrivals")]
    pub rate: Option<f64>,
    /// Inter-arrival distribution for --rate.
    #[arg(long, value_enum, default_value = "poisson", help_heading = "Schedule")]
    pub arrival: ArrivalArg,
    /// Gamma shape for --arrival gamma (below 1 is burstier than Poisson).
    #[arg(long, default_value_t = 1.0, help_heading = "Schedule")]
    pub burstiness: f64,
    /// Open loop in stages or from a trace: constant:8/s*600s,20/s*600s
    /// (inference-perf's constant load: rate x duration requests at random
    /// gaps filling each stage), even:... (exactly 1/rate apart),
    /// poisson:..., gamma:...,cv=2, or trace:[jsonl|mooncake|burstgpt|azure:]FILE
    /// (docs/METRICS.md, "Workloads"). A stage starts when the requests of
    /// the stage before have ended, if that is after its own time.
    #[arg(long, value_name = "SPEC", help_heading = "Schedule")]
    pub arrivals: Option<String>,
    /// Open loop: at most this many in flight (waiting shows as client queue time).
    #[arg(long, help_heading = "Schedule")]
    pub max_concurrency: Option<u32>,
    /// Measured requests (warm-up not counted). Default 100 unless --duration
    /// is given or the --arrivals end by themselves.
    #[arg(long, short = 'n', help_heading = "Schedule")]
    pub requests: Option<u64>,
    /// Stop issuing requests after this long (e.g. 60s, 5m); in-flight ones finish.
    #[arg(long, value_parser = parse_duration, help_heading = "Schedule")]
    pub duration: Option<Duration>,
    /// Warm-up requests sent first and excluded from every figure.
    #[arg(long, default_value_t = 0, help_heading = "Schedule")]
    pub warmup: u64,
    /// Load that rises during the run, reported per window: rate:10..100/60s (open loop)
    /// or concurrency:1..64/120s (agents join), linear or with ,steps=N.
    #[arg(long, value_name = "SPEC", help_heading = "Schedule", conflicts_with_all = ["concurrency", "rate", "arrivals"])]
    pub ramp: Option<String>,
}

/// What [`TrafficArgs::resolve`] makes of the command line.
pub struct ResolvedTraffic {
    pub schedule: Schedule,
    /// The workload and arrivals drawn with the seed given to `resolve`.
    pub traffic: Traffic,
    /// What they were drawn from, to draw them again with another seed.
    pub workload: WorkloadSpec,
    /// Whether `--workload` was given (a trace refuses one).
    pub workload_given: bool,
    pub arrival_spec: Option<ArrivalSpec>,
    /// Measured requests (None: the duration or the arrivals end the run).
    pub requests: Option<u64>,
    /// `--arrivals` as given, for the run's config.
    pub arrivals: Option<String>,
    /// `--ramp`, parsed.
    pub ramp: Option<RampSpec>,
    /// When to stop sending: `--duration`, else a concurrency ramp's length.
    pub duration: Option<Duration>,
}

impl TrafficArgs {
    /// The schedule, the workload and its arrivals (seeded by `seed`,
    /// normally `--seed`), and the request budget.
    pub fn resolve(&self, sampling: &SamplingArgs, seed: u64) -> anyhow::Result<ResolvedTraffic> {
        if let Some(0) = self.concurrency {
            bail!("--concurrency must be at least 1");
        }
        if let Some(r) = self.rate {
            if !(r.is_finite() && r > 0.0) {
                bail!("--rate must be a positive number of requests per second");
            }
        }
        if !(self.burstiness.is_finite() && self.burstiness > 0.0) {
            bail!("--burstiness must be positive");
        }
        let ramp =
            self.ramp.as_deref().map(RampSpec::parse).transpose().map_err(|e| anyhow::anyhow!("bad --ramp: {e}"))?;
        let arrival = self.arrival.arrival(self.burstiness);
        let spec = match ramp {
            Some(r) if r.kind == RampKind::Rate => Some(r.arrivals(arrival)),
            _ => self.arrivals.as_deref().map(ArrivalSpec::parse).transpose()?,
        };
        let workload = WorkloadSpec::parse(&sampling.workload)?;
        let given = sampling.workload != DEFAULT_WORKLOAD;
        let traffic = Traffic::resolve(&workload, given, spec.as_ref(), seed)?;
        let agents = ramp.filter(|r| r.kind == RampKind::Concurrency).map(|r| r.to as u32);
        let schedule = match (self.concurrency.or(agents), self.rate, &traffic.arrivals) {
            (Some(c), _, _) => Schedule::Closed { concurrency: c },
            (None, Some(rate), _) => Schedule::Open { rate, arrival, max_concurrency: self.max_concurrency },
            (None, None, Some(plan)) => {
                Schedule::Open { rate: plan.nominal_rate(), arrival, max_concurrency: self.max_concurrency }
            }
            (None, None, None) => Schedule::Closed { concurrency: 1 },
        };
        // A concurrency ramp lasts its length unless told otherwise.
        let duration = match (self.duration, self.requests, agents) {
            (None, None, Some(_)) => ramp.map(|r| Duration::from_secs_f64(r.over_s)),
            (d, _, _) => d,
        };
        let finite = traffic.arrivals.as_ref().is_some_and(|a| a.is_finite());
        let requests = match (self.requests, duration, finite) {
            (None, None, false) => Some(100),
            (r, _, _) => r,
        };
        let arrivals = self.arrivals.clone();
        Ok(ResolvedTraffic {
            schedule,
            traffic,
            workload,
            workload_given: given,
            arrival_spec: spec,
            requests,
            arrivals,
            ramp,
            duration,
        })
    }
}

/// The model the simulator serves when none is named: a 30B-A3B MoE in AWQ
/// 4-bit fits the default RTX 3090.
const DEFAULT_SIM_MODEL: &str = "qwen3-coder-30b-a3b";

/// The simulated deployment (`sim predict`, `sim serve`, `sim replay`).
#[derive(Args, Debug, Clone)]
pub struct DeploymentArgs {
    /// GPU (id or name; see `fleetbench sim list gpus`).
    #[arg(long, default_value = "rtx3090")]
    pub gpu: String,
    /// Number of GPUs [default: tensor x pipeline parallel size, else 1].
    #[arg(long)]
    pub count: Option<u32>,
    /// Link between GPUs (pcie4, nvlink3, nvlink4, ...); default depends on the GPU.
    #[arg(long)]
    pub interconnect: Option<String>,
    /// Model: a catalog name or Hugging Face id (see `fleetbench sim list models`), or a path to a Hugging Face config.json.
    #[arg(long, default_value = DEFAULT_SIM_MODEL)]
    pub model: String,
    /// Weight format (see `fleetbench sim list quants`) [default: awq4 for the
    /// default model, which needs it to fit the default GPU; for a model you
    /// name, auto: the format its checkpoint ships in (16-bit, gpt-oss's
    /// MXFP4, DeepSeek-V3's FP8), as vLLM loads it].
    #[arg(long)]
    pub quant: Option<String>,
    /// Serving engine (see `fleetbench sim list engines`).
    #[arg(long, default_value = "vllm")]
    pub engine: String,
    /// How several GPUs share the model (default: the engine's way).
    #[arg(long, value_enum)]
    pub parallel: Option<ParallelArg>,
    #[command(flatten)]
    pub knobs: EngineKnobArgs,
}

/// The engine as operators configure it, with vLLM's flag names (SGLang's
/// as aliases). Unset flags keep the engine's default (`fleetbench sim list engines`).
#[derive(Args, Debug, Clone, Default)]
pub struct EngineKnobArgs {
    /// Most sequences in one step (SGLang: --max-running-requests).
    #[arg(long, alias = "max-running-requests", value_name = "N", help_heading = "Engine")]
    pub max_num_seqs: Option<u32>,
    /// Token budget of one step: running decodes first, then prefill chunks
    /// (SGLang: --chunked-prefill-size).
    #[arg(long, alias = "chunked-prefill-size", value_name = "N", help_heading = "Engine")]
    pub max_num_batched_tokens: Option<u32>,
    /// Share of each GPU's memory for weights, activations and the KV pool
    /// (SGLang: --mem-fraction-static).
    #[arg(long, alias = "mem-fraction-static", value_name = "F", help_heading = "Engine")]
    pub gpu_memory_utilization: Option<f64>,
    /// Tokens per KV-cache block (SGLang: --page-size).
    #[arg(long, alias = "page-size", value_name = "N", help_heading = "Engine")]
    pub block_size: Option<u32>,
    /// Turn automatic prefix caching off (SGLang: --disable-radix-cache).
    #[arg(long, alias = "disable-radix-cache", help_heading = "Engine")]
    pub no_prefix_caching: bool,
    /// Turn automatic prefix caching on where the engine leaves it off:
    /// vLLM for models with linear-attention layers (Qwen3-Next, Qwen3.5).
    /// On by default for every other model.
    #[arg(long, conflicts_with = "no_prefix_caching", help_heading = "Engine")]
    pub enable_prefix_caching: bool,
    /// CPU memory for offloaded KV, GB: evicted prefixes and preempted
    /// sequences reload over PCIe instead of being recomputed.
    #[arg(long, value_name = "GB", default_value_t = 0.0, help_heading = "Engine")]
    pub cpu_offload_gb: f64,
    /// GPUs per tensor-parallel group (--tp).
    #[arg(long, alias = "tp", value_name = "N", help_heading = "Engine")]
    pub tensor_parallel_size: Option<u32>,
    /// Pipeline stages (--pp); the GPU count is tensor x pipeline size.
    #[arg(long, alias = "pp", value_name = "N", help_heading = "Engine")]
    pub pipeline_parallel_size: Option<u32>,
    /// KV-cache precision: auto (vLLM and SGLang keep the model's 16-bit
    /// dtype, even for FP8 weights; TensorRT-LLM's FP8 recipes store FP8),
    /// bfloat16, float16, or fp8 (half the bytes: twice the tokens in the
    /// pool, half the KV reads per decode step).
    #[arg(long, value_name = "DTYPE", value_parser = parse_kv_cache_dtype, help_heading = "Engine")]
    pub kv_cache_dtype: Option<KvCacheDtype>,
    /// Schedule the next step while the GPU runs this one, so the engine
    /// core's CPU work per sequence hides under the GPU's (vLLM's default
    /// since 0.14.0)
    #[arg(long, overrides_with = "no_async_scheduling", help_heading = "Engine")]
    pub async_scheduling: bool,
    /// Schedule each step after the last has ended, as vLLM before 0.14.0
    /// did: the GPU waits for the engine core's CPU work every step
    #[arg(long, help_heading = "Engine")]
    pub no_async_scheduling: bool,
    /// How decode steps use CUDA graphs, as vLLM's cudagraph_mode:
    /// full_and_piecewise (a decode-only step is one graph, attention
    /// included: vLLM's default since 0.11.0) or piecewise (attention runs
    /// between the graphs, a launch gap each layer: vLLM 0.8 to 0.10)
    #[arg(long, value_name = "MODE", value_parser = parse_cudagraph_mode, help_heading = "Engine")]
    pub cudagraph_mode: Option<CudaGraphMode>,
}

/// A `--cudagraph-mode` value: whether decode-only steps run as one CUDA
/// graph, `None` for `auto` (the engine's default).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CudaGraphMode(pub Option<bool>);

fn parse_cudagraph_mode(text: &str) -> Result<CudaGraphMode, String> {
    fleetbench_sim::perf::cudagraph_mode(text).map(CudaGraphMode)
}

/// A `--kv-cache-dtype` value: its bits per element, `None` for `auto`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KvCacheDtype(pub Option<f64>);

fn parse_kv_cache_dtype(text: &str) -> Result<KvCacheDtype, String> {
    fleetbench_sim::perf::kv_cache_bits(text).map(KvCacheDtype)
}

#[derive(ValueEnum, Debug, Clone, Copy)]
pub enum ParallelArg {
    Tensor,
    Pipeline,
}

/// A setting given as an on flag and an off flag: the one given, the on
/// flag first; `None` leaves the engine's default.
fn switch(on: bool, off: bool) -> Option<bool> {
    match (on, off) {
        (true, _) => Some(true),
        (_, true) => Some(false),
        _ => None,
    }
}

impl DeploymentArgs {
    pub fn spec(&self) -> anyhow::Result<DeploymentSpec> {
        let k = &self.knobs;
        let parallel = k.tensor_parallel_size.unwrap_or(1) * k.pipeline_parallel_size.unwrap_or(1);
        // With --count and --pp alone, the tensor-parallel size is what is left.
        let count = match (self.count, k.tensor_parallel_size.is_some(), k.pipeline_parallel_size.is_some()) {
            (Some(c), true, _) if c != parallel => {
                bail!("--count {c} is not the tensor x pipeline parallel size ({parallel}); give one or the other")
            }
            (Some(c), _, _) => c,
            (None, false, false) => 1,
            (None, _, _) => parallel,
        };
        Ok(DeploymentSpec {
            gpu: self.gpu.clone(),
            count,
            interconnect: self.interconnect.clone(),
            model: self.model.clone(),
            quant: self
                .quant
                .clone()
                .unwrap_or_else(|| if self.model == DEFAULT_SIM_MODEL { "awq4" } else { "auto" }.to_string()),
            engine: self.engine.clone(),
            max_num_seqs: k.max_num_seqs,
            parallelism: self.parallel.map(|p| match p {
                ParallelArg::Tensor => Parallelism::Tensor,
                ParallelArg::Pipeline => Parallelism::Pipeline,
            }),
            knobs: EngineKnobs {
                max_num_batched_tokens: k.max_num_batched_tokens,
                gpu_memory_utilization: k.gpu_memory_utilization,
                block_size: k.block_size,
                prefix_caching: switch(k.enable_prefix_caching, k.no_prefix_caching),
                cpu_offload_gb: k.cpu_offload_gb,
                // A tensor-parallel size alone means one stage, whatever the engine's habit.
                pipeline_parallel: k.pipeline_parallel_size.or(k.tensor_parallel_size.map(|_| 1)),
                kv_cache_bits: k.kv_cache_dtype.and_then(|d| d.0),
                async_scheduling: switch(k.async_scheduling, k.no_async_scheduling),
                full_decode_graph: k.cudagraph_mode.and_then(|m| m.0),
            },
        })
    }
}

/// `--json-out`, `--csv-out`, `--md-out`.
#[derive(Args, Debug, Clone, Default)]
pub struct OutputArgs {
    /// Write the results as JSON (the contract: docs/schemas/).
    #[arg(long, value_name = "PATH", help_heading = "Output")]
    pub json_out: Option<PathBuf>,
    /// Write one CSV row per request.
    #[arg(long, value_name = "PATH", help_heading = "Output")]
    pub csv_out: Option<PathBuf>,
    /// Write the summary as Markdown tables.
    #[arg(long, value_name = "PATH", help_heading = "Output")]
    pub md_out: Option<PathBuf>,
}

/// `--price`, `--prices`, `--meter` and friends (run and sweep).
#[derive(Args, Debug, Clone)]
pub struct InstrumentArgs {
    /// Price the run with this entry of the price sheet: adds
    /// usd_per_million_output_tokens and usd_per_request (`fleetbench cost
    /// presets` lists the built-in entries).
    #[arg(long, value_name = "NAME", help_heading = "Cost and energy")]
    pub price: Option<String>,
    /// Price sheet (TOML with [[backend]] tables). Default: the built-in, dated examples.
    #[arg(long, value_name = "PATH", requires = "price", help_heading = "Cost and energy")]
    pub prices: Option<PathBuf>,
    /// Energy meter sampled during the run: auto (NVML, then nvidia-smi,
    /// then RAPL; says which), nvml, nvidia-smi, rapl, prometheus=URL (DCGM
    /// power of remote GPUs), or none.
    #[arg(long, value_name = "METER", default_value = "none", help_heading = "Cost and energy")]
    pub meter: String,
    /// Time between two meter readings.
    #[arg(long, value_name = "DUR", default_value = "500ms", value_parser = parse_duration, help_heading = "Cost and energy")]
    pub meter_interval: Duration,
    /// Idle baseline sampled before the run and subtracted from J/token (0s to skip).
    #[arg(long, value_name = "DUR", default_value = "5s", value_parser = parse_duration, help_heading = "Cost and energy")]
    pub idle: Duration,
    /// Label matchers for --meter prometheus=URL, e.g. '{Hostname="gpu7"}'.
    #[arg(long, value_name = "SELECTOR", default_value = "", help_heading = "Cost and energy")]
    pub meter_selector: String,
    /// Facility PUE for the energy past the meter.
    #[arg(long, default_value_t = DEFAULT_PUE, help_heading = "Cost and energy")]
    pub pue: f64,
    /// How the electricity is made, for the energy past the meter:
    /// gas-simple-cycle, gas-combined-cycle, grid-us or diesel (`fleetbench energy presets`).
    #[arg(long, default_value = DEFAULT_SUPPLY, help_heading = "Cost and energy")]
    pub supply: String,
}

impl InstrumentArgs {
    pub fn spec(&self) -> InstrumentSpec {
        InstrumentSpec {
            price: self.price.clone(),
            prices: self.prices.clone(),
            meter: self.meter.clone(),
            meter_interval: self.meter_interval,
            idle: self.idle,
            meter_selector: self.meter_selector.clone(),
            pue: self.pue,
            supply: self.supply.clone(),
        }
    }
}

/// The dashboard options every measuring command shares.
#[derive(Args, Debug, Clone, Default)]
pub struct DashboardArgs {
    /// Serve the live dashboard while this command runs: progress, rolling
    /// tok/s and latency, errors (and the arena leaderboard). Without a value
    /// it listens on 127.0.0.1:8686; it closes when the command ends.
    #[arg(
        long,
        value_name = "ADDR:PORT",
        num_args = 0..=1,
        default_missing_value = fleetbench_dash::DEFAULT_LISTEN,
        help_heading = "Dashboard"
    )]
    pub dashboard: Option<std::net::SocketAddr>,
    /// Token the dashboard requires (needed to listen beyond loopback).
    #[arg(
        long,
        env = "FLEETBENCH_DASH_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN",
        help_heading = "Dashboard"
    )]
    pub dashboard_token: Option<String>,
}

/// Sharding one run over several processes or hosts (run and sweep).
#[derive(Args, Debug, Clone, Default)]
pub struct ShardArgs {
    /// This process is shard I of N (from 0): --concurrency, --requests and --rate stay
    /// the whole run's; this shard takes its share. Needs --run-id.
    #[arg(long, value_name = "I/N", value_parser = parse_shard, help_heading = "Sharding")]
    pub shard: Option<fleetbench_workload::Shard>,
    /// The run all shards write into (the same on every shard, e.g. a Slurm job id);
    /// `runs show ID` reads it back. A sweep's group: each level is the run ID/c=4.
    #[arg(long, value_name = "ID", help_heading = "Sharding")]
    pub run_id: Option<String>,
    /// Longest wait at the start for the other shards to join (and, in a sweep, at each level's end).
    #[arg(long, value_name = "DUR", default_value = "10m", value_parser = parse_duration, help_heading = "Sharding")]
    pub shard_timeout: Duration,
}

fn parse_shard(s: &str) -> Result<fleetbench_workload::Shard, String> {
    fleetbench_workload::Shard::parse(s)
}

impl ShardArgs {
    /// How this process joins the other shards of a run whose schedule is
    /// `schedule` (`None`: a run of its own). `--run-id` alone is a run of
    /// one shard under that id.
    pub fn join(&self, schedule: &Schedule) -> anyhow::Result<Option<fleetbench_load::shard::ShardJoin>> {
        let shard = match (&self.run_id, self.shard) {
            (None, None) => return Ok(None),
            (None, Some(s)) => bail!("--shard {s} needs --run-id ID, the same on every shard, to meet the others"),
            (Some(_), s) => s.unwrap_or(fleetbench_workload::Shard { index: 0, count: 1 }),
        };
        let key = self.key()?;
        let target_concurrency = schedule.target_concurrency();
        Ok(Some(fleetbench_load::shard::ShardJoin { shard, key, timeout: self.shard_timeout, target_concurrency }))
    }
}

impl ShardArgs {
    fn key(&self) -> anyhow::Result<String> {
        let key = self.run_id.clone().unwrap_or_default();
        if key.trim().is_empty() {
            bail!("--run-id must not be empty");
        }
        Ok(key)
    }

    /// How this process takes part in a sweep measured by several (`None`:
    /// a sweep of its own). Each level is a sharded run under `ID/c=4`.
    pub fn sweep(&self) -> anyhow::Result<Option<fleetbench_load::sweep::sharded::SweepShard>> {
        let shard = match (&self.run_id, self.shard) {
            (None, None) => return Ok(None),
            (None, Some(s)) => bail!("--shard {s} needs --run-id ID, the same on every shard, to meet the others"),
            (Some(_), s) => s.unwrap_or(fleetbench_workload::Shard { index: 0, count: 1 }),
        };
        Ok(Some(fleetbench_load::sweep::sharded::SweepShard { shard, key: self.key()?, timeout: self.shard_timeout }))
    }
}

/// `--metrics-listen`: fleetbench's live figures for Prometheus (run and sweep).
#[derive(Args, Debug, Clone, Default)]
pub struct MetricsArgs {
    /// Serve this command's live figures in Prometheus' format at http://ADDR/metrics while it runs
    /// (requests in flight, completed, errors by kind, output tokens, TTFT/TPOT/ITL histograms).
    #[arg(long, value_name = "ADDR:PORT", help_heading = "Dashboard")]
    pub metrics_listen: Option<std::net::SocketAddr>,
}

impl MetricsArgs {
    /// The figures and their endpoint, when asked for; the endpoint stops
    /// when the server is dropped.
    pub async fn start(
        &self,
    ) -> anyhow::Result<Option<(std::sync::Arc<LiveMetrics>, fleetbench_load::exposition::MetricsServer)>> {
        let Some(addr) = self.metrics_listen else { return Ok(None) };
        let metrics = LiveMetrics::new();
        let server = fleetbench_load::exposition::MetricsServer::start(addr, metrics.clone())
            .await
            .with_context(|| format!("--metrics-listen {addr}: cannot listen there"))?;
        Ok(Some((metrics, server)))
    }
}
