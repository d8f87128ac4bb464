//! The scheduler files in deploy/: the Slurm job array runs four shards of
//! one run on a real single-node Slurm cluster and the merged run is exact;
//! the Kubernetes manifests validate against the Kubernetes API's schemas
//! and agree with each other.

mod common;

use common::{output, tempdir, text};

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use fleetbench_core::stats::percentile;
use fleetbench_core::{RunMetrics, Slo};
use fleetbench_sim::fixed::FixedServer;
use fleetbench_store::{Db, Store};
use serde_json::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn env_or_panic(var: &str, how: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| panic!("{var} is unset: {how}"))
}

#[test]
fn the_sbatch_script_takes_its_shard_from_the_array_task() {
    let o = Command::new("bash")
        .arg(repo().join("deploy/slurm/fleetbench-array.sbatch"))
        .arg("--json-out=x.json")
        .env("SLURM_ARRAY_TASK_ID", "5")
        .env("SLURM_ARRAY_TASK_MIN", "2")
        .env("SLURM_ARRAY_TASK_COUNT", "4")
        .env("SLURM_ARRAY_JOB_ID", "77")
        .env("FLEETBENCH", "echo")
        .env("FLEETBENCH_URL", "http://h:1/v1")
        .env("FLEETBENCH_MODEL", "m")
        .output()
        .expect("bash");
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(out.contains("--shard 3/4 --run-id slurm-77"), "{out}");
    assert!(out.contains("--url http://h:1/v1 --model m") && out.trim_end().ends_with("--json-out=x.json"), "{out}");
    let o = Command::new("bash").arg(repo().join("deploy/slurm/fleetbench-array.sbatch")).output().expect("bash");
    assert!(!o.status.success() && text(&o).contains("not a job array task"), "{}", text(&o));
}

/// The value of the first `key: value` line under `deploy/k8s/FILE`.
fn k8s_value(file: &str, key: &str) -> String {
    let body = std::fs::read_to_string(repo().join("deploy/k8s").join(file)).expect("manifest");
    body.lines()
        .filter_map(|l| l.trim().strip_prefix(&format!("{key}:")))
        .map(|v| v.trim().trim_matches('"').to_string())
        .next()
        .unwrap_or_else(|| panic!("{file} has no {key}"))
}

#[test]
fn the_kubernetes_job_is_indexed_and_names_its_secret_and_configmap() {
    let job = std::fs::read_to_string(repo().join("deploy/k8s/job.yaml")).expect("job.yaml");
    assert_eq!(k8s_value("job.yaml", "completionMode"), "Indexed");
    let shards = k8s_value("job.yaml", "completions");
    assert_eq!(k8s_value("job.yaml", "parallelism"), shards, "every shard must run at once");
    assert!(job.contains(&format!("value: \"{shards}\"")), "SHARDS must equal completions");
    assert!(job.contains("--shard \"$JOB_COMPLETION_INDEX/$SHARDS\""), "{job}");
    assert!(job.contains("secretKeyRef") && job.contains("name: PGPASSWORD"), "{job}");
    assert!(job.contains(&format!("name: {}", k8s_value("secret.example.yaml", "name"))));
    assert!(job.contains(&format!("name: {}", k8s_value("configmap.yaml", "name"))));
    assert!(job.contains("requests:") && job.contains("cpu:"), "resource requests");
}

#[test]
#[ignore = "needs kubernetes-validate: scripts/test.sh installs it (FLEETBENCH_KUBERNETES_VALIDATE)"]
fn the_kubernetes_manifests_validate_against_the_api_schemas() {
    let validate = env_or_panic(
        "FLEETBENCH_KUBERNETES_VALIDATE",
        "run scripts/test.sh, or export it as the path scripts/ensure-kubernetes-validate.sh prints",
    );
    let dir = repo().join("deploy/k8s");
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(&dir).expect("deploy/k8s").map(|e| e.expect("entry").path()).collect();
    files.sort();
    assert_eq!(files.len(), 3, "{files:?}");
    let o = Command::new(&validate).arg("--strict").args(&files).output().expect("kubernetes-validate");
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(text(&o).matches(" passed for resource ").count(), 3, "{}", text(&o));
    // The validator does check: a mistyped field fails.
    let bad = tempdir("deploy", "k8s").join("job.yaml");
    let job = std::fs::read_to_string(dir.join("job.yaml")).expect("job.yaml");
    std::fs::write(&bad, job.replace("completionMode: Indexed", "completionMode: [Indexed]")).expect("write");
    let o = Command::new(&validate).arg("--strict").arg(&bad).output().expect("kubernetes-validate");
    assert!(!o.status.success() && text(&o).contains("completionMode"), "{}", text(&o));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Slurm: scripts/test.sh starts a single-node cluster (FLEETBENCH_SLURM_CONF)"]
async fn a_slurm_array_of_four_shards_makes_one_exact_run() {
    let conf = env_or_panic("FLEETBENCH_SLURM_CONF", "run scripts/test.sh, or `scripts/ensure-slurm.sh start`");
    let server = FixedServer::new(8, Duration::from_millis(4));
    let addr = server.start().expect("start the fixed server");
    let dir = tempdir("deploy", "slurm");
    let db = dir.join("results.db");
    let mut c = Command::new("sbatch");
    c.args(["--wait", "--array=0-3"])
        .arg(format!("--output={}/task-%a.out", dir.display()))
        .arg(format!("--chdir={}", dir.display()))
        .arg(repo().join("deploy/slurm/fleetbench-array.sbatch"))
        .env("SLURM_CONF", &conf)
        .env("FLEETBENCH", env!("CARGO_BIN_EXE_fleetbench"))
        .env("FLEETBENCH_DB", &db)
        .env("FLEETBENCH_URL", format!("http://{addr}/v1"))
        .env("FLEETBENCH_MODEL", "m")
        .env("FLEETBENCH_CONCURRENCY", "8")
        .env("FLEETBENCH_REQUESTS", "160")
        .env("FLEETBENCH_WORKLOAD", "synthetic:in=16,out=8")
        .env("FLEETBENCH_SHARD_TIMEOUT", "120s");
    let o = output(c).await;
    let logs: String = (0..4)
        .map(|i| std::fs::read_to_string(dir.join(format!("task-{i}.out"))).unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(o.status.success(), "sbatch: {}\n{logs}", text(&o));
    let job = text(&o).split_whitespace().last().map(str::to_string).expect("the job id sbatch printed");
    let key = format!("slurm-{job}");

    let store = Store::connect(&Db::Sqlite(db.clone())).expect("the results database");
    let id = store.resolve_run(&key).expect("the run the array made");
    let records = store.records(id).expect("records");
    let run = store.run(id).expect("run");
    assert_eq!(run.shards.len(), 4, "{logs}");
    let mut sum_max = 0;
    for shard in 0..4u64 {
        let mine: Vec<_> = records.iter().filter(|r| r.index % 4 == shard).cloned().collect();
        let m = RunMetrics::compute(&mine, &Slo::default(), Some(2));
        assert_eq!(m.completed, 40, "shard {shard}'s requests are all there");
        sum_max += m.max_concurrent_requests;
    }
    let mut c = common::quiet_bin();
    c.arg("--db").arg(&db).args(["runs", "show", &key, "--json"]);
    let o = output(c).await;
    assert!(o.status.success(), "{}", text(&o));
    let merged: Value = serde_json::from_slice(&o.stdout).expect("runs show --json");
    assert_eq!(merged["shards"], 4);
    assert_eq!(merged["completed"], 160);
    assert_eq!(merged["max_concurrent_requests"].as_u64(), Some(sum_max), "the union's concurrency is the sum");
    assert_eq!(sum_max, 8);
    let ttft: Vec<f64> = records.iter().filter(|r| !r.warmup).filter_map(|r| r.ttft()).map(|t| t * 1000.0).collect();
    for (name, p) in [("median", 50.0), ("p90", 90.0), ("p99", 99.0)] {
        let want = percentile(&ttft, p).expect("a percentile");
        let got = merged[format!("{name}_ttft_ms")].as_f64().expect("merged percentile");
        assert!((got - want).abs() <= 1e-9 * want.max(1.0), "{name} TTFT: merged {got}, union {want}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
