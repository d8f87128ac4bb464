//! A results database with every kind of data the report can show: plain
//! runs at several concurrencies, a sweep with levels, server samples,
//! cost, energy, arena and planner artifacts, and hostile text from a
//! "model" (`<script>` in the model name, an error body and an answer).

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use fleetbench_core::{ErrorKind, RequestError, RequestRecord, RunMeta, RunMetrics, RunStatus, Slo, TokenSource};
use fleetbench_store::Store;
use fleetbench_testkit::RecordBuilder;
use serde_json::json;

pub const HOSTILE_MODEL: &str = "qwen<script>window.__pwned=1</script>";
pub const HOSTILE_ERROR: &str = "upstream said <script>window.__pwned=2</script>";
pub const HOSTILE_ANSWER: &str = "Root cause: <script>window.__pwned=3</script> GPU 3 fell off the bus";

/// A fresh directory under the target tmp dir.
pub fn temp_dir(name: &str) -> PathBuf {
    let base = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base).unwrap();
    base
}

/// Requests of a closed loop at concurrency `c`: decode slows as `c` grows
/// and the aggregate saturates, so the curve has a knee. `fail_every` > 0
/// makes every n-th request fail with [`HOSTILE_ERROR`].
pub fn records(c: u32, n: u64, fail_every: u64) -> Vec<RequestRecord> {
    let c = c.max(1) as f64;
    let gap = 0.010 * (1.0 + c / 4.0).powf(1.3); // seconds between tokens
    let ttft = 0.050 * (1.0 + c / 8.0);
    (0..n)
        .map(|i| {
            let slot = (i as f64 / c).floor();
            let jitter = (i % 5) as f64 * 0.001;
            let t = slot * (ttft + gap * 31.0 + 0.01);
            let out = 32u64;
            let first = t + ttft + jitter;
            let last = first + gap * (out - 1) as f64;
            let failed = fail_every > 0 && i % fail_every == fail_every - 1;
            let r = if failed {
                RecordBuilder::failed(i, RequestError::new(ErrorKind::HttpStatus, HOSTILE_ERROR).with_status(503))
                    .end(first)
            } else {
                RecordBuilder::ok(i)
                    .first_token(first)
                    .last_token(last)
                    .end(last + 0.001)
                    .itl((0..out - 1).map(|k| gap * (0.8 + 0.05 * (k % 9) as f64)).collect::<Vec<_>>())
                    .tokens(out)
                    .finish("length")
            };
            r.agent((i % c as u64) as u32)
                .sent_at(t)
                .first_byte(first - 0.002)
                .input_tokens(128)
                .token_source(TokenSource::Server)
                .build()
        })
        .collect()
}

pub fn meta(model: &str, url: &str, concurrency: u32, command: &str) -> RunMeta {
    RunMeta {
        id: 0,
        tool_version: "0.1.0".into(),
        command_line: command.into(),
        host: "bench-host".into(),
        backend_url: url.into(),
        model: model.into(),
        api: "chat".into(),
        workload: "synthetic:in=128,out=32".into(),
        schedule: format!("closed loop, concurrency {concurrency}"),
        started_at: "2026-11-25T10:00:00Z".into(),
        ended_at: Some("2026-11-25T10:01:00Z".into()),
        status: RunStatus::Completed,
        config: json!({"concurrency": concurrency, "hardware": "1x H100 80GB (simulated)"}),
        pid: None,
        group: Some("fixture".into()),
    }
}

fn store_run(store: &mut Store, meta: &RunMeta, recs: &[RequestRecord], c: u32) -> (i64, RunMetrics) {
    let id = store.create_run(meta).unwrap();
    store.insert_records(id, recs).unwrap();
    let m = RunMetrics::compute(recs, &Slo::default(), Some(c));
    store
        .finish_run(id, RunStatus::Completed, "2026-11-25T10:01:00Z", Some(&serde_json::to_value(&m).unwrap()))
        .unwrap();
    (id, m)
}

/// The ids of a plain-runs trio, a sweep run and an arena/economics run.
pub struct Fixture {
    pub db: PathBuf,
    pub plain: Vec<i64>,
    pub sweep: i64,
    pub arena: i64,
}

impl Fixture {
    pub fn all(&self) -> Vec<i64> {
        let mut v = self.plain.clone();
        v.push(self.sweep);
        v.push(self.arena);
        v
    }
}

pub fn build(dir: &Path) -> Fixture {
    let db = dir.join("results.db");
    let mut store = Store::open(&db).unwrap();
    let url = "http://127.0.0.1:8000/v1";
    let mut plain = Vec::new();
    for c in [1u32, 4, 16] {
        let cmd = format!("fleetbench run --url {url} --model {HOSTILE_MODEL} --concurrency {c} --requests 24");
        let m = meta(HOSTILE_MODEL, url, c, &cmd);
        let (id, _) = store_run(&mut store, &m, &records(c, 24, if c == 16 { 6 } else { 0 }), c);
        plain.push(id);
    }

    let sweep_meta = meta(
        "llama-3.1-8b",
        "http://127.0.0.1:8001/v1",
        32,
        "fleetbench sweep --url http://127.0.0.1:8001/v1 --concurrency 1,2,4,8,16,32",
    );
    let (sweep, _) = store_run(&mut store, &sweep_meta, &records(32, 32, 0), 32);
    for c in [1u32, 2, 4, 8, 16, 32] {
        let m = RunMetrics::compute(&records(c, 24, 0), &Slo::default(), Some(c));
        store
            .put_artifact(sweep, "sweep_level", &format!("c{c:04}"), &json!({"concurrency": c, "metrics": m}))
            .unwrap();
    }
    store
        .put_artifact(
            sweep,
            "server_metrics",
            "vllm",
            &json!({"samples": (0..20).map(|i| json!({"t_s": i as f64 * 0.5, "kv_cache_usage_pct": (i * 5) as f64, "queue_depth": (i % 7) as f64})).collect::<Vec<_>>()}),
        )
        .unwrap();

    let arena_meta = meta("arena", "multiple backends", 4, "fleetbench aiops run --backends a,b --episodes 40");
    let (arena, _) = store_run(&mut store, &arena_meta, &records(4, 16, 0), 4);
    for (name, score, lo, hi, s1, s2) in
        [("vllm-h100", 71.5, 64.0, 78.0, 80.0, 63.0), ("ollama-4090", 52.25, 44.0, 60.5, 61.0, 43.5)]
    {
        store
            .put_artifact(
                arena,
                "arena_backend",
                name,
                &json!({"backend": name, "model": HOSTILE_MODEL, "score": score, "ci95": {"lo": lo, "hi": hi},
                        "episodes": 40, "failed": 1,
                        "scenarios": {"xid79_fallen_off_bus": s1, "nvlink_degraded": s2},
                        "price_entry": name, "price_kind": "rented",
                        "usd_per_request": if score > 60.0 { 0.0031 } else { 0.0012 }}),
            )
            .unwrap();
        store
            .put_artifact(arena, "cost", name, &json!({"backend": name, "usd_per_million_output_tokens": if score > 60.0 { 0.42 } else { 0.9 }, "usd_total": 1.25}))
            .unwrap();
        store
            .put_artifact(arena, "energy", name, &json!({"backend": name, "energy_per_output_token_j": if score > 60.0 { 0.31 } else { 0.55 }, "ci95": {"lo": 0.25, "hi": 0.6}, "idle_power_w": 85.0, "meter": "nvml", "past_the_meter": {"supply": "grid-us", "pue": 1.3, "per_million_tokens": {"it_kwh": 0.1, "facility_kwh": 0.13, "delivered_kwh": 0.14, "fuel_kwh": 0.35, "heat_kwh": 0.35, "co2_kg": 0.05}}}))
            .unwrap();
    }
    store
        .put_artifact(
            arena,
            "answer",
            "001",
            &json!({"backend": "vllm-h100", "scenario": "xid79_fallen_off_bus", "text": HOSTILE_ANSWER, "score": 80}),
        )
        .unwrap();
    for (name, score) in [("002", 60.0), ("003", 66.0)] {
        store
            .put_artifact(
                arena,
                "answer",
                name,
                &json!({"backend": "vllm-h100", "scenario": "S7", "label": "nvlink_degraded", "text": "NVLink 2 degraded", "score": score}),
            )
            .unwrap();
    }
    store
        .put_artifact(
            arena,
            "cost_plan",
            "plan",
            &json!({"sheet": "presets", "job": {"docs": 1000000},
                    "rows": [{"name": "vllm-h100", "kind": "rented", "total_usd": 812.5, "wall_hours": 31.2, "multiplier": 1.0, "bound": "throughput", "price_inputs": "$2.50/GPU-h x 1 GPU at 1515 output tok/s (sheet)"},
                             {"name": "api-mini", "kind": "api", "total_usd": 1530.0, "wall_hours": null, "price_inputs": "$0.15/M in, $0.60/M out"}],
                    "skipped": [{"name": "owned-a100", "why": "no throughput <b>known</b>"}]}),
        )
        .unwrap();
    store.put_artifact(arena, "energy", "broken", &json!({"nope": 1})).unwrap();
    Fixture { db, plain, sweep, arena }
}

/// A sweep stored the way the sweep driver stores one: one run per level,
/// each with its `SweepLevelRecord`, and the `SweepRecord` (the knee at
/// `knee`, with `reason`) with the first run. Returns the level runs' ids.
pub struct SweepSpec<'a> {
    pub group: &'a str,
    pub url: &'a str,
    pub model: &'a str,
    pub hardware: &'a str,
    pub levels: &'a [u32],
    pub knee: Option<u32>,
    pub reason: &'a str,
    /// Open loop: the levels are request rates (requests per second).
    pub rate: bool,
}

pub fn store_sweep(store: &mut Store, spec: &SweepSpec) -> Vec<i64> {
    use fleetbench_load::sweep::records::{KneeDoc, SweepInfo, SweepLevelRecord, SweepRecord};
    let mut ids = Vec::new();
    let mut peak: f64 = 0.0;
    for (i, &c) in spec.levels.iter().enumerate() {
        let mut m = meta(spec.model, spec.url, c, &format!("fleetbench sweep --url {} --concurrency 1,2,4", spec.url));
        m.config = if spec.rate {
            json!({"request_rate": c, "hardware": spec.hardware, "sweep": spec.group, "level_index": i})
        } else {
            json!({"concurrency": c, "hardware": spec.hardware, "sweep": spec.group, "level_index": i, "simulated": true})
        };
        m.group = Some(spec.group.into());
        let recs = records(c, 24, 0);
        let (id, metrics) = store_run(store, &m, &recs, c);
        peak = peak.max(metrics.output_throughput);
        let mut stripped = metrics.clone();
        stripped.ttfts.clear();
        stripped.itls.clear();
        stripped.latencies.clear();
        stripped.input_lens.clear();
        stripped.output_lens.clear();
        stripped.errors.clear();
        let level = SweepLevelRecord {
            concurrency: c as f64,
            rate: None,
            label: Some(format!("c={c}")),
            metrics: stripped,
            server: None,
        };
        store.put(id, spec.group, &level).unwrap();
        ids.push(id);
    }
    let knee = spec.knee.map(|k| KneeDoc {
        concurrency: (!spec.rate).then_some(k as f64),
        rate: spec.rate.then_some(k as f64),
        band: [k as f64 / 2.0, k as f64 * 2.0],
        saturation_output_throughput: peak,
        break_level: None,
        reason: spec.reason.into(),
        stop_reason: String::new(),
    });
    let info = SweepInfo {
        group: spec.group.into(),
        repeats: 1,
        backend: spec.url.into(),
        model: spec.model.into(),
        workload: "synthetic:in=128,out=32".into(),
        run_ids: ids.clone(),
    };
    store.put(ids[0], spec.group, &SweepRecord { knee, sweep: info }).unwrap();
    ids
}

/// The demo's three setups as `fleetbench demo --quick` stores them: one
/// sweep each over 1, 4, 16 against its own server, all in ONE group, with
/// cost and modelled energy stored with the knee's run.
pub const DEMO_SETUPS: [&str; 3] = [
    "RTX 3090 · Qwen3-Coder-30B-A3B (MoE) AWQ 4-bit · vLLM",
    "RTX 3090 · Qwen2.5-Coder-32B (dense) AWQ 4-bit · vLLM",
    "H100 SXM · Llama 3.1 8B FP8 · vLLM",
];

pub fn build_demo(dir: &Path) -> (PathBuf, Vec<Vec<i64>>) {
    use fleetbench_econ::records::{CostRecord, EnergyRecord};
    let db = dir.join("demo.db");
    let mut store = Store::open(&db).unwrap();
    let group = "demo-2026-11-25T10:00:00Z-4242";
    let models = ["qwen3-coder-30b-a3b", "qwen2.5-coder-32b", "llama-3.1-8b"];
    let mut all = Vec::new();
    for (i, title) in DEMO_SETUPS.iter().enumerate() {
        let url = format!("http://127.0.0.1:{}/v1", 41000 + i);
        let ids = store_sweep(
            &mut store,
            &SweepSpec {
                group,
                url: &url,
                model: models[i],
                hardware: title,
                levels: &[1, 4, 16],
                knee: Some(16),
                reason: "throughput still grows at 16 agents: no cliff up to the highest level measured",
                rate: false,
            },
        );
        let knee_run = ids[2];
        let cost = CostRecord::rented_at(title, 2.0 + i as f64, 400.0 * (i + 1) as f64, "test rate").unwrap();
        store.put(knee_run, title, &cost).unwrap();
        let energy = EnergyRecord::modelled(title, 300.0, 400.0 * (i + 1) as f64, 1.3, "grid-us").unwrap().unwrap();
        store.put(knee_run, title, &energy).unwrap();
        all.push(ids);
    }
    (db, all)
}
