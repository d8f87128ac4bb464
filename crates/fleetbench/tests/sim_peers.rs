//! `fleetbench sim serve` measured by peer clients: the openai Python SDK
//! and GuideLLM (installed by `scripts/ensure-peers.sh`, which
//! `scripts/test.sh` runs and which sets FLEETBENCH_PEER_PYTHON and
//! FLEETBENCH_PEER_GUIDELLM) must each see the TTFT fleetbench sees.
//! Before the role chunk waited for the first token, a client timing the
//! first chunk measured the connection, not the prefill.
//!
//! Both tests send one stream (concurrency 1): the simulated engine then
//! gives every request the same modelled TTFT, so runs made one after the
//! other see the same server, and what differs is where each client starts
//! and stops its clock and what it adds itself. A busy machine only ever
//! adds to a request's TTFT, and it adds more to a Python client than to
//! fleetbench: with a load average of 5.5 on 2 cores from other builds, the
//! peers' medians read 11.2 to 14.3 ms against fleetbench's 10.7 to 11.0 ms,
//! while their 10th percentiles stayed within 1.6 ms of its (with a load
//! average near 2 the medians agreed within 0.4 ms). So each client's 10th
//! percentile of its per-request TTFTs is compared: its TTFT with the least
//! of the machine's delays in it, yet not one odd request. A process at a
//! higher priority (another benchmark at nice -15) can still hold the cores
//! for a whole run of one client and put even its 10th percentile 10 to 60
//! ms up; so the pair is measured again, up to `RUNS` times, 5 s apart (and
//! up to 30 s more while the load average exceeds the cores), until each
//! client's lowest 10th percentile so far agrees with the other's. Each run
//! prints the load average beside its figures.
//!
//! The openai SDK has no TTFT of its own, so `scripts/py/peer_ttft.py`
//! reads its clock at the wire, as fleetbench does: from the moment httpcore
//! has written the request to the arrival of the bytes holding the first
//! chunk with content. Timed from the SDK's call to the parsed chunk, it
//! read 1.4 to 2.3 ms above fleetbench and failed this test in three of six
//! full suite runs on 2026-12-02, at a load average of 0.4 to 0.6: a plain
//! Python socket client read within 0.05 ms of fleetbench, and httpcore's
//! trace put 1.0 to 1.5 ms of the SDK's own Python before the request's
//! bytes left. Timed at the wire it read 0.0 to 0.5 ms above fleetbench in
//! the runs of that day; each run prints the SDK-side figure beside it. The delays only add, so a
//! client whose clock truly reads 2 ms apart from fleetbench's fails every
//! run, as one timing the role chunk would.

use std::process::{Child, Stdio};
use std::sync::{Mutex, MutexGuard, PoisonError};

use serde_json::Value;

mod common;

use common::{quiet_bin, run_ok, tempdir, text};

/// The deployment both tests simulate: an 8B model in FP8 on one H100 under
/// vLLM. Its first token of the 512-token prompt comes about 20 ms after the
/// send: the API server's 14.4 ms, then the prefill of what the prefix cache
/// does not hold (the whole prompt once, its last block after that).
const DEPLOYMENT: [&str; 8] = ["--gpu", "h100-sxm", "--model", "llama-3.1-8b", "--quant", "fp8", "--engine", "vllm"];
/// Output tokens asked for in every request.
const MAX_TOKENS: u32 = 16;
/// Requests timed by each client in a run.
const REQUESTS: usize = 24;
/// Runs of each client at most (see the top of the file).
const RUNS: usize = 4;
/// Requests a run may lose and still be compared: at a load average of 6 to
/// 8 on 2 cores, 3 of about 37 runs of the GuideLLM test came back short
/// (GuideLLM's report twice with 23 successful requests of 24).
const MAY_LOSE: usize = 2;

/// Held by each test while it runs: the tests time a server on a machine
/// they share, and GuideLLM's start-up (it imports torch) beside the other
/// test's timed requests moved that test's median TTFT by 3 ms on 2 cores.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn one_at_a_time() -> MutexGuard<'static, ()> {
    // A test that failed holding it leaves it poisoned; the other still runs.
    ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The prompt every client sends: 2,048 characters, 512 prompt tokens to
/// the simulator.
fn prompt() -> String {
    format!("{}abc", "word ".repeat(409))
}

fn peer_python() -> String {
    match std::env::var("FLEETBENCH_PEER_PYTHON") {
        Ok(p) if !p.is_empty() => p,
        _ => panic!(
            "FLEETBENCH_PEER_PYTHON is unset: this test needs the openai Python SDK from PyPI. Run \
             scripts/test.sh, or export FLEETBENCH_PEER_PYTHON=$(scripts/ensure-peers.sh)"
        ),
    }
}

fn peer_guidellm() -> String {
    match std::env::var("FLEETBENCH_PEER_GUIDELLM") {
        Ok(p) if !p.is_empty() => p,
        _ => panic!(
            "FLEETBENCH_PEER_GUIDELLM is unset: this test needs GuideLLM from PyPI. Run scripts/test.sh, \
             or export FLEETBENCH_PEER_GUIDELLM=$(scripts/ensure-peers.sh guidellm)"
        ),
    }
}

struct Serve(Child);
impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `sim serve` on a free port and waits until it answers; returns
/// it with its base URL (polling the port rather than parsing the URL it
/// prints on stderr).
fn serve(args: &[&str]) -> (Serve, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = quiet_bin()
        .args(["sim", "serve", "--port", &port.to_string()])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("fleetbench sim serve starts");
    let serve = Serve(child);
    let addr = format!("127.0.0.1:{port}");
    for _ in 0..200 {
        if fleetbench_testkit::listening_on_loopback(port) {
            return (serve, format!("http://{addr}/v1"));
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("fleetbench sim serve did not listen on {addr} within 10 s");
}

/// `fleetbench run` against `url`: one stream, `REQUESTS` requests of
/// `prompt()` after two warm-up requests (so the timed ones find the
/// connection open); returns each request's TTFT in milliseconds.
fn fleetbench_ttfts(url: &str, dir: &std::path::Path) -> Vec<f64> {
    std::fs::write(dir.join("w.jsonl"), format!("{}\n", serde_json::json!({ "prompt": prompt() }))).unwrap();
    let json_out = dir.join("run.json");
    run_ok(
        quiet_bin()
            .env("FLEETBENCH_DB", dir.join("db.sqlite"))
            .args(["run", "--url", url, "--model", "llama", "--max-tokens", &MAX_TOKENS.to_string(), "-c", "1"])
            .args(["-n", &REQUESTS.to_string(), "--warmup", "2"])
            .arg(format!("--workload=file:{}", dir.join("w.jsonl").display()))
            .arg("--json-out")
            .arg(&json_out),
    );
    let ours: Value = serde_json::from_slice(&std::fs::read(&json_out).unwrap()).unwrap();
    numbers(&ours["ttfts"], "fleetbench's ttfts").into_iter().map(|s| s * 1000.0).collect()
}

/// The numbers of a JSON array (`what` names it in a failure).
fn numbers(v: &Value, what: &str) -> Vec<f64> {
    let list = v.as_array().unwrap_or_else(|| panic!("{what} is not an array: {v}"));
    list.iter().map(|x| x.as_f64().unwrap_or_else(|| panic!("{what}: {x} is not a number"))).collect()
}

/// The 10th percentile (nearest rank: the 3rd fastest of 24) and the median
/// of a run's TTFTs, of which at most `MAY_LOSE` short of `REQUESTS`.
fn p10_and_median(mut ttfts: Vec<f64>, client: &str) -> (f64, f64) {
    let n = ttfts.len();
    assert!((REQUESTS - MAY_LOSE..=REQUESTS).contains(&n), "{client} timed {n} of {REQUESTS} requests: {ttfts:?}");
    ttfts.sort_by(f64::total_cmp);
    (ttfts[n / 10], (ttfts[(n - 1) / 2] + ttfts[n / 2]) / 2.0)
}

/// The machine's load average over the last minute (Linux), if it can be read.
fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg").ok()?.split_whitespace().next()?.parse().ok()
}

fn cores() -> f64 {
    std::thread::available_parallelism().map_or(1.0, |n| n.get() as f64)
}

/// Runs `measure` (one run of the peer, then one of fleetbench: their
/// per-request TTFTs) until the peer's and fleetbench's lowest 10th
/// percentiles so far agree within 2 ms, at most `RUNS` times (see the top of
/// the file), printing each run's figures with its medians.
fn assert_agree(peer: &str, mut measure: impl FnMut() -> (Vec<f64>, Vec<f64>)) {
    let (mut best_p, mut best_f) = (f64::INFINITY, f64::INFINITY);
    for run in 1..=RUNS {
        if run > 1 {
            // Give a burst of load from elsewhere a moment to pass: 5 s, and
            // up to 30 s more while the machine is busier than its cores.
            std::thread::sleep(std::time::Duration::from_secs(5));
            for _ in 0..30 {
                if load_average().is_none_or(|l| l < cores()) {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_secs(1));
            }
        }
        let (peer_ttfts, ours) = measure();
        let (n_p, n_f) = (peer_ttfts.len(), ours.len());
        let (p, p_median) = p10_and_median(peer_ttfts, peer);
        let (f, f_median) = p10_and_median(ours, "fleetbench");
        let load = load_average().map_or_else(|| "unknown".to_string(), |l| format!("{l:.2}"));
        eprintln!(
            "run {run}: TTFT p10 / median: {peer} {p:.2} / {p_median:.2} ms ({n_p} requests), \
             fleetbench {f:.2} / {f_median:.2} ms ({n_f}); load average {load}"
        );
        // The modelled prefill of 512 tokens is several milliseconds: a role
        // chunk sent at once would put a peer's figure near zero.
        assert!(f > 3.0, "fleetbench TTFT {f} ms");
        (best_p, best_f) = (best_p.min(p), best_f.min(f));
        if (best_p - best_f).abs() <= 2.0 {
            return;
        }
    }
    panic!("{peer} TTFT (p10, lowest of {RUNS} runs) {best_p:.2} ms, fleetbench {best_f:.2} ms");
}

/// One run of the openai SDK (`scripts/py/peer_ttft.py`) against `url`: one
/// stream, `REQUESTS` requests of `prompt()` after two warm-up requests;
/// each request's TTFT in milliseconds, timed at the wire (see the top of
/// the file); the SDK-side 10th percentile is printed beside it.
fn openai_ttfts(python: &str, url: &str, dir: &std::path::Path) -> Vec<f64> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/py/peer_ttft.py");
    let out = std::process::Command::new(python)
        .args([script, "--url", url, "--model", "llama", "--max-tokens", &MAX_TOKENS.to_string()])
        .args(["--concurrency", "1", "--requests", &REQUESTS.to_string(), "--prompt-file"])
        .arg(dir.join("p.txt"))
        .output()
        .expect("peer client runs");
    assert!(out.status.success(), "peer client failed: {}", String::from_utf8_lossy(&out.stderr));
    let peer: Value = serde_json::from_slice(&out.stdout).expect("peer client prints JSON");
    let (in_sdk, _) = p10_and_median(numbers(&peer["sdk_ttfts_ms"], "the openai SDK's sdk_ttfts_ms"), "openai SDK");
    eprintln!("openai SDK, timed from its call to the parsed chunk: p10 {in_sdk:.2} ms");
    numbers(&peer["ttfts_ms"], "the openai SDK's ttfts_ms")
}

/// One run of GuideLLM against `root` (the server's URL without /v1): one
/// stream, `REQUESTS` rows of `data`; each request's TTFT in milliseconds.
fn guidellm_ttfts(guidellm: &str, root: &str, data: &std::path::Path, dir: &std::path::Path) -> Vec<f64> {
    let result = dir.join("guidellm.json");
    let out = std::process::Command::new(guidellm)
        .env("HF_HUB_OFFLINE", "1")
        .env("HF_HOME", dir.join("hf"))
        .arg("run")
        .arg("--backend")
        .arg(format!(
            "kind=openai_http,target={root},model=llama,request_format=/v1/chat/completions,validate_backend=false"
        ))
        .args(["--profile", "kind=concurrent,streams=1"])
        .arg("--constraint")
        .arg(format!("kind=max_requests,count={REQUESTS}"))
        .arg("--data")
        .arg(format!("kind=json_file,path={}", data.display()))
        .arg("--output")
        .arg(format!("kind=json,path={}", result.display()))
        .arg("--disable-console")
        .output()
        .expect("guidellm runs");
    assert!(out.status.success(), "guidellm failed: {}", text(&out));
    let report: Value = serde_json::from_slice(&std::fs::read(&result).expect("guidellm writes its JSON report"))
        .expect("guidellm's report is JSON");
    let benchmark = &report["benchmarks"][0];
    let prompt_tokens = &benchmark["metrics"]["prompt_token_count"]["successful"]["mean"];
    assert_eq!(prompt_tokens.as_f64(), Some(512.0), "guidellm's prompt tokens");
    let requests = benchmark["requests"]["successful"].as_array().expect("guidellm's successful requests");
    if requests.len() < REQUESTS {
        eprintln!("GuideLLM's requests: {}", benchmark["metrics"]["request_totals"]);
    }
    requests
        .iter()
        .map(|r| r["time_to_first_token_ms"].as_f64().unwrap_or_else(|| panic!("a request without a TTFT: {r}")))
        .collect()
}

#[test]
#[ignore = "needs the openai Python SDK from PyPI: scripts/test.sh (scripts/ensure-peers.sh)"]
fn the_openai_sdk_and_fleetbench_agree_on_ttft() {
    let python = peer_python();
    let _one = one_at_a_time();
    let (_serve, url) = serve(&DEPLOYMENT);
    let dir = tempdir("sim-peers", "ttft");
    std::fs::write(dir.join("p.txt"), prompt()).unwrap();
    assert_agree("openai SDK", || (openai_ttfts(&python, &url, &dir), fleetbench_ttfts(&url, &dir)));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
#[ignore = "needs GuideLLM from PyPI: scripts/test.sh (scripts/ensure-peers.sh)"]
fn guidellm_and_fleetbench_agree_on_ttft() {
    let guidellm = peer_guidellm();
    let _one = one_at_a_time();
    let (_serve, url) = serve(&DEPLOYMENT);
    let dir = tempdir("sim-peers", "guidellm");
    // GuideLLM sends each row of its data file once, in order, here until it
    // has sent REQUESTS: rows of the same prompt, each asking for MAX_TOKENS
    // output tokens (it sends them as max_completion_tokens with ignore_eos).
    // With the prompts given as text it never tokenizes, so no tokenizer is
    // fetched from Hugging Face (HF_HUB_OFFLINE makes sure of it; HF_HOME
    // keeps the `datasets` cache it writes for the data file in the temp dir).
    let row = serde_json::json!({ "prompt": prompt(), "output_tokens_count": MAX_TOKENS });
    let data = dir.join("data.jsonl");
    // A few rows more than it sends, so that the data never runs out first.
    std::fs::write(&data, format!("{row}\n").repeat(REQUESTS + 4)).unwrap();
    let root = url.strip_suffix("/v1").expect("the server's URL ends in /v1");
    // GuideLLM times from the first write of the request headers (an httpx
    // trace hook), so a connection it opens is not counted; fleetbench times
    // from its send, and its two warm-up requests leave the connection open
    // for the timed ones. Both stop at the first chunk carrying a token.
    assert_agree("GuideLLM", || (guidellm_ttfts(&guidellm, root, &data, &dir), fleetbench_ttfts(&url, &dir)));
    let _ = std::fs::remove_dir_all(&dir);
}
