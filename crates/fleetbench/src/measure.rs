//! One measured run, as every subcommand that measures does it: store the
//! run, drive the load engine, write each record to the database as it
//! completes, show progress, stop cleanly on Ctrl-C, compute the figures.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use fleetbench_client::Client;
use fleetbench_core::run::redact_url;
use fleetbench_core::units::rfc3339;
use fleetbench_core::{RequestRecord, RunClock, RunMeta, RunMetrics, RunStatus, Slo};
use fleetbench_dash::{LiveRun, LiveState};
use fleetbench_load::{RunPlan, Workload};
use fleetbench_store::{RecordWriter, Store};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::sync::{mpsc, watch};

use crate::instruments::{Instruments, RunFigures};

/// How a run is measured, beyond its plan.
#[derive(Debug, Clone, Default)]
pub struct MeasureOptions {
    pub slo: Slo,
    pub max_error_rate: Option<f64>,
    pub quiet: bool,
    /// The backend runs this many times faster than the hardware it models
    /// (the simulator's `--time-scale`): every instant is multiplied back so
    /// that stored figures are in modelled time. 1 for real backends.
    pub time_scale: f64,
    /// Price entry and energy meter (`--price`, `--meter`).
    pub instruments: Option<Arc<Instruments>>,
    /// The dashboard's view of this run (`--dashboard`).
    pub live: Option<LiveRun>,
}

/// What a measured run produced.
pub struct MeasureOutcome {
    pub meta: RunMeta,
    pub metrics: RunMetrics,
    pub records: Vec<RequestRecord>,
    pub db_path: PathBuf,
    /// Cost and energy, when the run was priced or metered.
    pub figures: RunFigures,
    /// The same under METRICS.md's key names, as stored with the run's
    /// summary (for `--json-out` and sweep levels).
    pub figure_keys: serde_json::Map<String, serde_json::Value>,
}

/// Metadata for a new run against `client`.
pub fn new_meta(
    client: &Client,
    workload: String,
    schedule: String,
    config: serde_json::Value,
    group: Option<String>,
) -> RunMeta {
    let c = client.config();
    let backend = RunBackend { url: redact_url(&c.base_url), model: c.model.clone(), api: c.api.as_str().to_string() };
    run_meta(backend, workload, schedule, config, group)
}

/// What a run was sent to, as its row records it (URL without credentials).
pub struct RunBackend {
    pub url: String,
    pub model: String,
    pub api: String,
}

/// A new run's row, started now by this process: the tool, the command line
/// and the host filled in, status running.
pub fn run_meta(
    backend: RunBackend,
    workload: String,
    schedule: String,
    config: serde_json::Value,
    group: Option<String>,
) -> RunMeta {
    RunMeta {
        id: 0,
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
        command_line: crate::cmd::run::command_line(),
        host: hostname(),
        backend_url: backend.url,
        model: backend.model,
        api: backend.api,
        workload,
        schedule,
        started_at: rfc3339(SystemTime::now()),
        ended_at: None,
        status: RunStatus::Running,
        config,
        pid: Some(std::process::id()),
        group,
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

/// Runs the plan and stores everything. Records reach the database at
/// most about 100 ms after they complete.
#[allow(clippy::too_many_arguments)]
pub async fn measure(
    store: &Store,
    db_path: &Path,
    mut meta: RunMeta,
    plan: &RunPlan,
    client: &Client,
    workload: Arc<dyn Workload>,
    opts: &MeasureOptions,
) -> anyhow::Result<MeasureOutcome> {
    let scale = if opts.time_scale > 0.0 { opts.time_scale } else { 1.0 };
    meta.id = store.create_run(&meta)?;
    let writer = RecordWriter::start(db_path, meta.id)?;
    let clock = RunClock::start();
    let metering = match &opts.instruments {
        Some(i) => Some(i.begin(&clock, scale).await),
        None => None,
    };
    if let Some(live) = &opts.live {
        live.update(|s| {
            s.run_id = Some(meta.id);
            s.total = plan.stop.requests;
            s.in_flight = plan.schedule.target_concurrency().map(u64::from).unwrap_or(0);
        });
    }
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (stop_tx, stop_rx) = watch::channel(false);
    let ctrl_c = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("\ninterrupted: stopping; requests finished so far are kept");
            let _ = stop_tx.send(true);
        }
    });
    let engine = {
        let plan = plan.clone();
        let client = client.clone();
        tokio::spawn(async move { fleetbench_load::run(&plan, &client, workload, clock, tx, stop_rx).await })
    };

    let total = plan.stop.requests.map(|n| n + plan.warmup);
    let bar = progress_bar(total, opts.quiet);
    let mut records = Vec::new();
    let (mut ok, mut failed, mut tokens) = (0u64, 0u64, 0u64);
    while let Some(mut rec) = rx.recv().await {
        if scale != 1.0 {
            rescale(&mut rec, scale);
        }
        if rec.ok() {
            ok += 1;
            tokens += rec.output_tokens;
        } else {
            failed += 1;
        }
        let elapsed = (clock.now() * scale).max(1e-9);
        bar.set_message(format!("ok {ok} · failed {failed} · {:.0} tok/s", tokens as f64 / elapsed));
        bar.inc(1);
        if let Some(live) = &opts.live {
            live.observe(&rec, elapsed);
        }
        if !writer.write(rec.clone()) {
            break;
        }
        records.push(rec);
    }
    let report = engine.await?;
    ctrl_c.abort();
    bar.finish_and_clear();
    let written = writer.finish()?;
    debug_assert_eq!(written as usize, records.len());

    records.sort_by_key(|r| r.index);
    let metrics = RunMetrics::compute(&records, &opts.slo, plan.schedule.target_concurrency());
    meta.status = if report.interrupted {
        RunStatus::Interrupted
    } else if crate::cmd::run::error_rate_exceeded(&metrics, opts.max_error_rate) {
        RunStatus::ErrorRateExceeded
    } else {
        RunStatus::Completed
    };
    meta.ended_at = Some(rfc3339(SystemTime::now()));
    meta.pid = None;
    let figures = match metering {
        Some(m) => m.finish(store, meta.id, &meta.model, &metrics, &records).await?,
        None => RunFigures::default(),
    };
    let figure_keys = crate::instruments::stored_keys(store, meta.id)?;
    let mut summary = summary_json(&metrics);
    if let Some(o) = summary.as_object_mut() {
        o.extend(figure_keys.clone());
    }
    store.finish_run(meta.id, meta.status, meta.ended_at.as_deref().unwrap_or(""), Some(&summary))?;
    if let Some(live) = &opts.live {
        live.finish(match meta.status {
            RunStatus::Interrupted => LiveState::Interrupted,
            RunStatus::ErrorRateExceeded => LiveState::Failed,
            _ => LiveState::Finished,
        });
    }
    Ok(MeasureOutcome { meta, metrics, records, db_path: db_path.to_path_buf(), figures, figure_keys })
}

/// Multiplies every instant and gap of a record by `scale`.
fn rescale(r: &mut RequestRecord, scale: f64) {
    for t in [&mut r.t_sched, &mut r.t_send, &mut r.t_end] {
        *t *= scale;
    }
    for t in [&mut r.t_first_byte, &mut r.t_first_token, &mut r.t_last_token].into_iter().flatten() {
        *t *= scale;
    }
    for g in &mut r.itl {
        *g *= scale;
    }
}

/// The figures stored with a run: everything but the per-request arrays,
/// which the request rows already hold.
pub fn summary_json(m: &RunMetrics) -> serde_json::Value {
    let mut m = m.clone();
    m.ttfts.clear();
    m.itls.clear();
    m.latencies.clear();
    m.input_lens.clear();
    m.output_lens.clear();
    m.errors.clear();
    serde_json::to_value(&m).unwrap_or(serde_json::Value::Null)
}

fn progress_bar(total: Option<u64>, quiet: bool) -> ProgressBar {
    let bar = match total {
        Some(n) => ProgressBar::new(n),
        None => ProgressBar::new_spinner(),
    };
    if quiet {
        bar.set_draw_target(ProgressDrawTarget::hidden());
        return bar;
    }
    let template = if total.is_some() {
        "{elapsed_precise} [{bar:30}] {pos}/{len} {msg}"
    } else {
        "{elapsed_precise} {spinner} {pos} requests {msg}"
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.enable_steady_tick(std::time::Duration::from_millis(250));
    bar
}
