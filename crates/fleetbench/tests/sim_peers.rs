//! `fleetbench sim serve` measured by a peer client: the openai Python SDK
//! (installed by `scripts/ensure-peers.sh`, which `scripts/test.sh` runs and
//! which sets FLEETBENCH_PEER_PYTHON) must see the TTFT fleetbench sees.
//! Before the role chunk waited for the first token, a client timing the
//! first chunk measured the connection, not the prefill.

use std::process::{Child, Stdio};

use serde_json::Value;

mod common;

use common::{quiet_bin, tempdir};

fn peer_python() -> String {
    match std::env::var("FLEETBENCH_PEER_PYTHON") {
        Ok(p) if !p.is_empty() => p,
        _ => panic!(
            "FLEETBENCH_PEER_PYTHON is unset: this test needs the openai Python SDK from PyPI. Run \
             scripts/test.sh, or export FLEETBENCH_PEER_PYTHON=$(scripts/ensure-peers.sh)"
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
        if std::net::TcpStream::connect(&addr).is_ok() {
            return (serve, format!("http://{addr}/v1"));
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("fleetbench sim serve did not listen on {addr} within 10 s");
}

#[test]
#[ignore = "needs the openai Python SDK from PyPI: scripts/test.sh (scripts/ensure-peers.sh)"]
fn the_openai_sdk_and_fleetbench_agree_on_ttft() {
    let python = peer_python();
    let (_serve, url) = serve(&["--gpu", "h100-sxm", "--model", "llama-3.1-8b", "--quant", "fp8", "--engine", "vllm"]);
    let dir = tempdir("sim-peers", "ttft");
    // 2,048 characters: 512 prompt tokens to the simulator.
    let prompt = format!("{}abc", "word ".repeat(409));
    std::fs::write(dir.join("p.txt"), &prompt).unwrap();
    std::fs::write(dir.join("w.jsonl"), format!("{}\n", serde_json::json!({ "prompt": prompt }))).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/py/peer_ttft.py");
    let out = std::process::Command::new(&python)
        .args([script, "--url", &url, "--model", "llama", "--max-tokens", "16", "--concurrency", "1"])
        .args(["--requests", "24", "--prompt-file"])
        .arg(dir.join("p.txt"))
        .output()
        .expect("peer client runs");
    assert!(out.status.success(), "peer client failed: {}", String::from_utf8_lossy(&out.stderr));
    let peer: Value = serde_json::from_slice(&out.stdout).expect("peer client prints JSON");
    let json_out = dir.join("run.json");
    let status = quiet_bin()
        .env("FLEETBENCH_DB", dir.join("db.sqlite"))
        .args(["run", "--url", &url, "--model", "llama", "--max-tokens", "16", "-c", "1", "-n", "24", "--warmup", "2"])
        .arg(format!("--workload=file:{}", dir.join("w.jsonl").display()))
        .arg("--json-out")
        .arg(&json_out)
        .status()
        .expect("fleetbench run");
    assert!(status.success());
    let ours: Value = serde_json::from_slice(&std::fs::read(&json_out).unwrap()).unwrap();
    let (p, f) = (peer["median_ttft_ms"].as_f64().unwrap(), ours["median_ttft_ms"].as_f64().unwrap());
    // The modelled prefill of 512 tokens is several milliseconds: a role
    // chunk sent at once would put the peer's figure near zero.
    assert!(f > 3.0, "fleetbench TTFT {f} ms");
    assert!((p - f).abs() <= 2.0, "openai SDK median TTFT {p:.2} ms, fleetbench {f:.2} ms");
    let _ = std::fs::remove_dir_all(&dir);
}
