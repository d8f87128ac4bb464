//! The run driver: one plan measured once, or `repeat` times with a seed of
//! its own each (so that a prefix cache cannot serve one repeat from
//! another), every repeat a stored run, then the spread between them.
//! `fleetbench run` fills a [`RunRequest`] and calls [`measure_repeated`],
//! as `fleetbench sweep` fills a `SweepConfig` and calls
//! [`crate::sweep::driver::run_sweep`]; both go through [`measure`].

use std::sync::Arc;

use fleetbench_client::Client;
use fleetbench_core::repeats::RepeatFigures;
use fleetbench_core::{RunConfig, RunMeta, RunMetrics, RunStatus, Slo};
use fleetbench_store::Store;
use fleetbench_workload::models::{Mixed, ModelMix};
use fleetbench_workload::Traffic;

use crate::live::LiveRunInfo;
use crate::measure::{measure, MeasureError, MeasureOptions, MeasureOutcome, Observers};
use crate::shard::{shard_plan, ShardError, ShardJoin};
use crate::{ArrivalSpec, RunPlan, Workload, WorkloadError, WorkloadSpec};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Measure(#[from] MeasureError),
    #[error(transparent)]
    Shard(#[from] ShardError),
    #[error(transparent)]
    Workload(#[from] WorkloadError),
    #[error("a sharded run is measured once: repeat it by running it again under a new run id")]
    RepeatedShard,
}

/// Everything a run needs to know, as the command line gave it.
#[derive(Debug, Clone)]
pub struct RunRequest {
    /// When and how much every repeat sends. `plan.seed` is the first
    /// repeat's seed; repeat `r` draws its workload and arrivals with
    /// `seed + 1000 r`. `plan.arrivals` and `plan.shard` are filled here.
    pub plan: RunPlan,
    pub workload: WorkloadSpec,
    /// Whether `--workload` was given (a trace refuses one rather than
    /// ignore it).
    pub workload_given: bool,
    /// Open loop: the arrivals (stages, a process, a trace).
    pub arrivals: Option<ArrivalSpec>,
    /// The model, or the models a mix spreads the requests over.
    pub models: ModelMix,
    /// How many times to measure the plan (at least once).
    pub repeat: u32,
    /// One shard of a run measured by several processes (`--shard`).
    pub shard: Option<ShardJoin>,
    /// The template of every repeat's run row (provenance and backend
    /// filled by the caller; workload, schedule and config here).
    pub meta: RunMeta,
    /// The run's settings; the seed, the repeat and the backend's time
    /// scale are filled in per repeat.
    pub config: RunConfig,
    pub slo: Slo,
    pub max_error_rate: Option<f64>,
    /// Keep every record in memory for the caller (per-request exports).
    /// A model mix keeps them anyway: its figures per model need them.
    pub keep_records: bool,
    /// Open the connections the run keeps busy before its clock starts.
    pub preconnect: bool,
}

/// Who watches a run besides the store: each repeat is reported as its
/// [`MeasureOutcome`] as soon as it is stored.
pub type RunObservers<'a> = Observers<'a, MeasureOutcome>;

/// What the repeats produced.
pub struct RepeatedRun {
    /// Every measured repeat, in order: fewer than asked when one was
    /// interrupted (it is the last, and is kept).
    pub runs: Vec<MeasureOutcome>,
    /// The spread between the repeats, when more than one was measured.
    pub repeats: Option<RepeatFigures>,
}

/// Measures the request's plan `repeat` times against `client` and stores
/// every repeat as it is measured (see [`measure`]). `first` is the first
/// repeat's workload and arrivals when the caller has already drawn them
/// from the request's specs with `plan.seed` (so that a trace or a prompt
/// file is read once); without it every repeat draws its own.
pub async fn measure_repeated(
    req: &RunRequest,
    mut first: Option<Traffic>,
    store: &Store,
    client: &Client,
    mut observers: RunObservers<'_>,
) -> Result<RepeatedRun, RunError> {
    if req.repeat > 1 && req.shard.is_some() {
        return Err(RunError::RepeatedShard);
    }
    let repeats = req.repeat.max(1);
    let mixed = req.models.is_mix();
    // A simulator that runs faster than the hardware it models says so; its
    // figures are then multiplied back into modelled time.
    let time_scale = client.time_scale().unwrap_or(1.0);
    let mut runs: Vec<MeasureOutcome> = Vec::new();
    for r in 0..repeats {
        let seed = req.plan.seed.wrapping_add(1000 * u64::from(r));
        let traffic = match first.take() {
            Some(drawn) => drawn,
            None => Traffic::resolve(&req.workload, req.workload_given, req.arrivals.as_ref(), seed)?,
        };
        let workload: Arc<dyn Workload> = match mixed {
            true => Arc::new(Mixed::new(traffic.workload, req.models.clone(), seed)),
            false => Arc::from(traffic.workload),
        };
        let mut meta = req.meta.clone();
        meta.workload = workload.describe();
        meta.schedule = match &traffic.arrivals {
            Some(a) => format!("open loop, arrivals {}", a.describe()),
            None => req.plan.schedule.describe(),
        };
        let config = RunConfig {
            time_scale: (time_scale != 1.0).then_some(time_scale),
            seed: Some(seed),
            repeat: (repeats > 1).then_some(r),
            ..req.config.clone()
        };
        meta.config = serde_json::to_value(config).unwrap_or_default();
        let plan = RunPlan { seed, arrivals: traffic.arrivals, ..req.plan.clone() };
        let plan = match &req.shard {
            Some(j) => shard_plan(&plan, j.shard)?,
            None => plan,
        };
        let live = observers.bus.map(|bus| {
            bus.start(LiveRunInfo {
                kind: "run".into(),
                title: format!("{} · {}", meta.schedule, meta.workload),
                backend: meta.backend_url.clone(),
                model: meta.model.clone(),
                run_id: None,
                total: req.plan.stop.requests,
            })
        });
        let opts = MeasureOptions {
            slo: req.slo,
            max_error_rate: req.max_error_rate,
            time_scale,
            shard: req.shard.clone(),
            keep_records: req.keep_records || mixed,
            preconnect: req.preconnect,
            ..observers.options(live)
        };
        let outcome = measure(store, meta, &plan, client, workload, &opts).await?;
        observers.measured(&outcome);
        let interrupted = outcome.meta.status == RunStatus::Interrupted;
        runs.push(outcome);
        if interrupted {
            break;
        }
    }
    let repeats = (runs.len() > 1).then(|| {
        let each: Vec<(i64, &RunMetrics)> = runs.iter().map(|o| (o.meta.id, &o.metrics)).collect();
        RepeatFigures::compute(&each)
    });
    Ok(RepeatedRun { runs, repeats })
}
