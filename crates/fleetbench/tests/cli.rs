//! The real `fleetbench` binary against scripted loopback servers: crash
//! safety under SIGKILL, secrets never written, exit statuses, and the
//! stored-run commands.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::Ordering;
use std::time::Duration;

use fleetbench_testkit::{self as testkit, Fault, Script};

mod common;

use common::{bin, output, tempdir, text};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_run_loses_only_requests_in_flight() {
    let s = testkit::start(Script {
        ttft: Duration::from_millis(10),
        itl: Duration::from_millis(5),
        tokens: 5,
        ..Default::default()
    })
    .await;
    let dir = tempdir("cli", "kill");
    let db = dir.join("results.db");
    let mut child = bin()
        .args(["--quiet", "--db"])
        .arg(&db)
        .args(["run", "--url", &s.base_url(), "--model", "m", "--concurrency", "3", "--requests", "100000"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let done = || s.counters.completed.load(Ordering::SeqCst);
    testkit::wait_until(Duration::from_secs(30), Duration::from_millis(20), async || done() >= 30)
        .await
        .expect("the run did not get going: 30 requests completed");
    let completed_before = done();
    // The writer stores records in batches: wait until those completed so
    // far are in the database (read from here, as another process would).
    let reader = fleetbench_store::Store::open(&db).expect("open the results database while the run writes it");
    let id = reader.latest_run_id().expect("latest run").expect("the run is stored");
    let stored = || reader.run(id).map(|r| r.request_count).unwrap_or(0);
    testkit::wait_until(Duration::from_secs(30), Duration::from_millis(20), async || stored() >= completed_before)
        .await
        .unwrap_or_else(|e| panic!("{completed_before} requests completed but only {} were stored: {e}", stored()));
    drop(reader);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let completed_at_kill = done();

    let store = fleetbench_store::Store::open(&db).unwrap();
    let id = store.latest_run_id().unwrap().unwrap();
    let records = store.records(id).unwrap();
    assert!(
        records.len() as u64 >= completed_before,
        "{} stored, but {completed_before} had completed and been stored before the kill",
        records.len()
    );
    assert!(records.len() as u64 <= completed_at_kill);
    assert!(records.iter().all(|r| r.ok() && r.output_tokens == 5));
    let run = store.run(id).unwrap();
    assert_eq!(run.meta.status.as_str(), "incomplete");
    let o = output({
        let mut c = bin();
        c.arg("--db").arg(&db).args(["runs", "list"]);
        c
    })
    .await;
    assert!(text(&o).contains("incomplete"), "{}", text(&o));
}

fn all_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            all_files(&p, out);
        } else {
            out.push(p);
        }
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_api_key_is_never_written_or_printed() {
    let canary = format!("sk-canary-{}-{}", std::process::id(), 0x5eed);
    let ok = testkit::start(Script::default()).await;
    let hostile = testkit::start(Script { fault: Fault::EchoAuth, ..Default::default() }).await;
    let dir = tempdir("cli", "canary");
    let db = dir.join("results.db");
    let mut printed = Vec::new();
    for (url, extra) in [(ok.base_url(), "ok"), (hostile.base_url(), "hostile")] {
        let mut c = bin();
        c.env("OPENAI_API_KEY", &canary)
            .arg("--db")
            .arg(&db)
            .args(["run", "--url", &url, "--model", "m", "--requests", "3", "--keep-text"])
            .arg("--json-out")
            .arg(dir.join(format!("{extra}.json")))
            .arg("--csv-out")
            .arg(dir.join(format!("{extra}.csv")))
            .arg("--md-out")
            .arg(dir.join(format!("{extra}.md")));
        let o = output(c).await;
        assert!(o.status.success(), "{}", text(&o));
        printed.extend_from_slice(&o.stdout);
        printed.extend_from_slice(&o.stderr);
    }
    // The key was really used...
    let seen = ok.counters.auth_headers.lock().unwrap().clone();
    assert_eq!(seen.len(), 3);
    assert!(seen.iter().all(|h| h == &format!("Bearer {canary}")));
    // ...and the hostile server's echo was scrubbed from the error message.
    let hostile_csv = std::fs::read_to_string(dir.join("hostile.csv")).unwrap();
    assert!(hostile_csv.contains("<redacted>"), "{hostile_csv}");
    for args in [
        vec!["runs", "list"],
        vec!["runs", "show", "2"],
        vec!["runs", "export", "2", "--json"],
        vec!["runs", "export", "2", "--csv"],
    ] {
        let mut c = bin();
        c.env("OPENAI_API_KEY", &canary).arg("--db").arg(&db).args(&args);
        let o = output(c).await;
        assert!(o.status.success(), "{args:?}: {}", text(&o));
        printed.extend_from_slice(&o.stdout);
        printed.extend_from_slice(&o.stderr);
    }
    assert!(!contains(&printed, canary.as_bytes()), "the key was printed");
    let mut files = Vec::new();
    all_files(&dir, &mut files);
    assert!(files.len() >= 7, "{files:?}");
    for f in files {
        let bytes = std::fs::read(&f).unwrap();
        assert!(!contains(&bytes, canary.as_bytes()), "the key is in {}", f.display());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_statuses_say_what_happened() {
    let dir = tempdir("cli", "exit");
    let db = dir.join("results.db");
    // Nothing listening: status 2 and a message that says so.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut c = bin();
    c.arg("--db").arg(&db).args(["run", "--url", &format!("http://127.0.0.1:{port}/v1"), "--model", "m"]);
    let o = output(c).await;
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("unreachable"), "{}", text(&o));

    // Bad arguments: status 2 with a helpful message.
    for (args, want) in [
        (vec!["--concurrency", "0"], "at least 1"),
        (vec!["--workload", "nonsense"], "unknown workload"),
        (vec!["--timeout-idle", "5parsecs"], "invalid duration"),
        (vec!["--rate", "0"], "positive"),
    ] {
        let mut c = bin();
        c.arg("--db").arg(&db).args(["run", "--url", "http://127.0.0.1:9/v1", "--model", "m"]).args(&args);
        let o = output(c).await;
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", text(&o));
        assert!(text(&o).contains(want), "{args:?}: {}", text(&o));
    }

    // Every request fails: the run completes, but the error rate exits 3.
    let s = testkit::start(Script { fault: Fault::Http(500), ..Default::default() }).await;
    let mut c = bin();
    c.arg("--db").arg(&db).args([
        "run",
        "--url",
        &s.base_url(),
        "--model",
        "m",
        "--requests",
        "4",
        "--max-error-rate",
        "0.1",
    ]);
    let o = output(c).await;
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(text(&o).contains("http_500 4"), "{}", text(&o));
    let store = fleetbench_store::Store::open(&db).unwrap();
    let id = store.latest_run_id().unwrap().unwrap();
    assert_eq!(store.run(id).unwrap().meta.status.as_str(), "error_rate_exceeded");
    assert_eq!(store.records(id).unwrap().len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_out_and_export_agree() {
    let s = testkit::start(Script {
        ttft: Duration::from_millis(30),
        itl: Duration::from_millis(10),
        tokens: 6,
        ..Default::default()
    })
    .await;
    let dir = tempdir("cli", "export");
    let db = dir.join("results.db");
    let mut c = bin();
    c.arg("--db").arg(&db).args([
        "run",
        "--url",
        &s.base_url(),
        "--model",
        "m",
        "--concurrency",
        "2",
        "--requests",
        "8",
        "--warmup",
        "2",
        "--slo-ttft",
        "1000",
    ]);
    c.arg("--json-out").arg(dir.join("run.json"));
    let o = output(c).await;
    assert!(o.status.success(), "{}", text(&o));
    let out = text(&o);
    assert!(out.contains("8 sent, 8 completed, 0 failed"), "{out}");
    assert!(out.contains("TTFT (ms)") && out.contains("95% CI"), "{out}");
    let run: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("run.json")).unwrap()).unwrap();
    assert_eq!(run["completed"], 8);
    assert_eq!(run["total_output_tokens"], 48);
    assert_eq!(run["max_concurrent_requests"], 2);
    assert_eq!(run["slo_attainment_pct"], 100.0);
    assert_eq!(run["ttfts"].as_array().unwrap().len(), 8);
    let mut c = bin();
    c.arg("--db").arg(&db).args(["runs", "export", "1", "--json"]);
    let o = output(c).await;
    let exported: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    for key in ["completed", "total_output_tokens", "mean_ttft_ms", "p99_itl_ms", "max_concurrent_requests"] {
        assert_eq!(exported[key], run[key], "{key}");
    }
    let mut c = bin();
    c.arg("--db").arg(&db).args(["runs", "export", "1", "--csv"]);
    let o = output(c).await;
    assert_eq!(String::from_utf8_lossy(&o.stdout).lines().count(), 11, "header + 10 requests incl. warm-up");
}

/// `--price` and `--meter` on a run: a stand-in `nvidia-smi` on PATH draws a
/// constant 300 W, a rented entry costs $3.60 per GPU-hour; the figures in
/// `--json-out` follow by hand from the run's own duration and tokens, and
/// `runs export` gives the same keys back from the database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn price_and_meter_give_usd_and_joules_per_token() {
    use std::os::unix::fs::PermissionsExt;
    let s = testkit::start(Script {
        ttft: Duration::from_millis(20),
        itl: Duration::from_millis(10),
        tokens: 20,
        ..Default::default()
    })
    .await;
    let dir = tempdir("cli", "econ");
    let smi = dir.join("bin/nvidia-smi");
    std::fs::create_dir_all(smi.parent().unwrap()).unwrap();
    std::fs::write(&smi, "#!/bin/sh\nprintf '0, 300.00\\n'\n").unwrap();
    std::fs::set_permissions(&smi, std::fs::Permissions::from_mode(0o755)).unwrap();
    let sheet = dir.join("prices.toml");
    std::fs::write(&sheet, "[[backend]]\nname = \"box\"\nkind = \"rented\"\nusd_per_gpu_hour = 3.6\ngpus = 1\n")
        .unwrap();
    let db = dir.join("results.db");
    let path = format!("{}:{}", smi.parent().unwrap().display(), std::env::var("PATH").unwrap_or_default());
    let mut c = bin();
    // A dashboard token in the environment (for `fleetbench dash`) must not
    // change a run that serves no dashboard.
    c.env("FLEETBENCH_DASH_TOKEN", "0123456789abcdef0123");
    c.env("PATH", path).arg("--db").arg(&db).args([
        "run",
        "--url",
        &s.base_url(),
        "--model",
        "m",
        "--concurrency",
        "2",
        "--requests",
        "10",
        "--meter",
        "nvidia-smi",
        "--meter-interval",
        "20ms",
        "--idle",
        "0s",
        "--price",
        "box",
        "--prices",
    ]);
    c.arg(&sheet).arg("--json-out").arg(dir.join("run.json"));
    let o = output(c).await;
    assert!(o.status.success(), "{}", text(&o));
    let out = text(&o);
    assert!(out.contains("energy: nvidia-smi"), "{out}");
    assert!(out.contains("cost (box)") && out.contains("J/token"), "{out}");
    let run: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("run.json")).unwrap()).unwrap();
    let duration = run["duration"].as_f64().unwrap();
    let tokens = run["total_output_tokens"].as_f64().unwrap();
    assert_eq!(tokens, 200.0);
    let usd = 3.6 / 3600.0 * duration;
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * b.abs().max(1.0);
    assert!(close(run["usd_total"].as_f64().unwrap(), usd), "{}", run["usd_total"]);
    assert!(close(run["usd_per_million_output_tokens"].as_f64().unwrap(), usd / tokens * 1e6));
    assert!(close(run["usd_per_request"].as_f64().unwrap(), usd / 10.0));
    // Constant 300 W: J/token is 300 W × the steady window / its tokens (the
    // window may open a few ms before the first reading lands: 2 %).
    let ss = &run["steady_state"];
    let want = 300.0 * ss["duration"].as_f64().unwrap() / ss["output_tokens"].as_f64().unwrap();
    let got = run["energy_per_output_token_j"].as_f64().unwrap();
    assert!((got - want).abs() < 0.02 * want, "J/token {got} vs {want}");
    assert_eq!(run["energy"]["meter"], "nvidia-smi");
    // Past the meter at the defaults (PUE 1.3, US grid): a million tokens at
    // `got` J each is got / 3.6 kWh of IT energy, 1.3 times that at the facility.
    let pm = &run["energy"]["past_the_meter"]["per_million_tokens"];
    assert!((pm["it_kwh"].as_f64().unwrap() - got / 3.6).abs() < 1e-9 * got);
    assert!((pm["facility_kwh"].as_f64().unwrap() - 1.3 * got / 3.6).abs() < 1e-9 * got);
    assert!(pm["fuel_kwh"].as_f64().unwrap() > pm["facility_kwh"].as_f64().unwrap());
    let mut c = bin();
    c.arg("--db").arg(&db).args(["runs", "export", "1", "--json"]);
    let exported: serde_json::Value = serde_json::from_slice(&output(c).await.stdout).unwrap();
    for key in ["usd_per_million_output_tokens", "usd_per_request", "energy_per_output_token_j"] {
        assert_eq!(exported[key], run[key], "{key}");
    }
}

/// `run --dashboard`: the live view lists the run while it runs and its
/// count of finished requests moves on; the run itself completes normally.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_with_dashboard_shows_the_run_live() {
    use std::io::BufRead;
    let s = testkit::start(Script {
        ttft: Duration::from_millis(20),
        itl: Duration::from_millis(20),
        tokens: 10,
        ..Default::default()
    })
    .await;
    let dir = tempdir("cli", "dash");
    let mut child = bin()
        .args(["--quiet", "--db"])
        .arg(dir.join("results.db"))
        .args(["run", "--url", &s.base_url(), "--model", "m", "-c", "2", "--requests", "80"])
        .args(["--dashboard", "127.0.0.1:0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A thread reads stderr to the end (so the child never meets a closed
    // pipe) and hands over the dashboard's address when it appears.
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut rest = Vec::new();
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            match line.strip_prefix("live dashboard: ") {
                Some(u) => {
                    let _ = tx.send(u.split_whitespace().next().unwrap_or("").to_string());
                }
                None => rest.push(line),
            }
        }
        rest
    });
    let url = tokio::task::spawn_blocking(move || rx.recv_timeout(Duration::from_secs(60)))
        .await
        .unwrap()
        .expect("the dashboard's address on stderr");
    let live = |url: String| async move {
        let body = common::http_get(&url, "/api/live").await.expect("GET /api/live answers 200");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        v.as_array().unwrap().iter().find(|r| r["kind"] == "run").cloned()
    };
    let mut seen = Vec::new();
    let rising = testkit::wait_until(Duration::from_secs(30), Duration::from_millis(100), async || {
        if let Some(r) = live(url.clone()).await {
            if r["state"] == "running" {
                seen.push(r["done"].as_u64().unwrap());
            }
        }
        seen.len() >= 2 && seen.last() > seen.first()
    })
    .await;
    assert!(rising.is_ok(), "finished counts seen while running: {seen:?}");
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap()).await.unwrap();
    let rest = reader.join().unwrap();
    assert!(status.success(), "{rest:?}");
    let store = fleetbench_store::Store::open(&dir.join("results.db")).unwrap();
    assert_eq!(store.records(1).unwrap().len(), 80);
}

/// `selftest` in paced mode: every stream ran, every token has an added
/// latency, the streams joined over one response, tokens are timed by the
/// kernel's receive stamps (Linux), where the process may use two CPUs
/// the client and server threads sit on different ones, and a time-scaled
/// simulated server's stream is timed back into model time.
#[test]
fn selftest_paces_streams_and_places_its_threads() {
    let out = common::run_ok(bin().args([
        "selftest",
        "--streams",
        "20",
        "--tokens",
        "10",
        "--itl",
        "5ms",
        "--duration",
        "1s",
        "--json",
    ]));
    let r: serde_json::Value = serde_json::from_str(&out).expect("selftest --json prints JSON");
    assert_eq!(r["failed"], 0, "{r}");
    assert!(r["completed"].as_u64().unwrap() >= 20, "{r}");
    assert_eq!(r["max_streams_in_flight"], 20, "{r}");
    assert_eq!(r["streamed_tokens"], r["completed"].as_u64().unwrap() * 10, "{r}");
    assert!((r["streams_joined_over_s"].as_f64().unwrap() - 0.05).abs() < 1e-9, "{r}");
    for p in ["added_latency_p50_ms", "added_latency_p99_ms"] {
        assert!(r[p].as_f64().is_some_and(|v| v >= 0.0), "{p}: {r}");
    }
    assert!(r["realtime"].is_boolean(), "{r}");
    assert_eq!(r["kernel_timestamps"], cfg!(target_os = "linux"), "{r}");
    if let (Some(c), Some(s)) = (r["client_cpu"].as_u64(), r["server_cpu"].as_u64()) {
        assert_ne!(c, s, "client and server pinned to one CPU: {r}");
    }
    // The simulated server's pacing: one stream of 64 tokens, its gaps
    // multiplied back to model time (how close they sit to the step is
    // this machine's figure, not asserted).
    let p = &r["sim_pacing"];
    assert_eq!(p["time_scale"], 10.0, "{r}");
    assert_eq!(p["tokens"], 64, "{r}");
    assert!(p["model_step_ms"].as_f64().is_some_and(|s| s > 1.0 && s < 10.0), "{r}");
    let gap = |k: &str| p[k].as_f64().unwrap_or_else(|| panic!("{k}: {r}"));
    assert!(0.0 <= gap("gap_p10_ms") && gap("gap_p10_ms") <= gap("gap_p50_ms"), "{r}");
    assert!(gap("gap_p50_ms") <= gap("gap_p90_ms") && gap("gap_p90_ms") <= gap("gap_max_ms"), "{r}");
    assert!(p["deployment"].as_str().is_some_and(|d| d.contains("H100")), "{r}");
    // Opting out: all at once, nothing pinned, normal priority.
    let out = common::run_ok(bin().args([
        "selftest",
        "--streams",
        "5",
        "--tokens",
        "5",
        "--itl",
        "2ms",
        "--duration",
        "300ms",
        "--json",
        "--all-at-once",
        "--no-pin",
        "--no-realtime",
        "--read-timestamps",
        "--sim-time-scale",
        "0",
    ]));
    let r: serde_json::Value = serde_json::from_str(&out).expect("selftest --json prints JSON");
    assert_eq!(r["streams_joined_over_s"], 0.0, "{r}");
    assert_eq!(r["kernel_timestamps"], false, "{r}");
    assert_eq!(r["realtime"], false, "{r}");
    assert!(r["client_cpu"].is_null() && r["server_cpu"].is_null(), "{r}");
    assert!(r["sim_pacing"].is_null(), "--sim-time-scale 0 skips the pacing stream: {r}");
    assert_eq!(r["failed"], 0, "{r}");
    // A time scale that cannot be is refused before the 10-second run.
    let o = bin().args(["selftest", "--sim-time-scale=-1"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", common::text(&o));
    assert!(common::text(&o).contains("--sim-time-scale must be a positive number"), "{}", common::text(&o));
}

/// A process allowed one CPU (as the peer bench pins it) runs everything on
/// one thread (no runtime worker threads, whose hand-offs cost a context
/// switch each on one core), and measures as it does on many.
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_cpu_runs_on_one_thread_and_measures_all() {
    use std::os::unix::process::CommandExt;
    let s = testkit::start(Script {
        ttft: Duration::from_millis(20),
        itl: Duration::from_millis(2),
        tokens: 20,
        ..Default::default()
    })
    .await;
    let dir = tempdir("cli", "one-cpu");
    let db = dir.join("results.db");
    let mut cmd = bin();
    cmd.args(["--quiet", "--db"]).arg(&db).args([
        "run",
        "--url",
        &s.base_url(),
        "--model",
        "m",
        "--concurrency",
        "8",
        "--requests",
        "200",
    ]);
    // SAFETY: sched_setaffinity on the child itself, between fork and exec;
    // it allocates nothing.
    unsafe {
        cmd.pre_exec(|| {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(0, &mut set);
            if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let pid = child.id();
    // While it runs, count its threads: the main one and the store's writer.
    let threads = || std::fs::read_dir(format!("/proc/{pid}/task")).map(|d| d.count()).unwrap_or(0);
    let mut most = 0;
    let running = || s.counters.completed.load(Ordering::SeqCst);
    testkit::wait_until(Duration::from_secs(30), Duration::from_millis(5), async || {
        most = most.max(threads());
        running() >= 100
    })
    .await
    .expect("the run did not get going");
    most = most.max(threads());
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap()).await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(most <= 2, "{most} threads: a one-CPU process should run on its main thread (plus the store's writer)");
    let store = fleetbench_store::Store::open(&db).unwrap();
    let records = store.records(1).unwrap();
    assert_eq!(records.len(), 200);
    assert!(records.iter().all(|r| r.ok() && r.token_events == 20));
}
