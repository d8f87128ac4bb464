//! `fleetbench aiops mcp` as a process, spoken to over HTTP as an MCP
//! client would (raw JSON-RPC over streamable HTTP): initialize, list the
//! tools, call one, submit the oracle answer of the first episode and a
//! wrong one for the second; the server stops by itself once every episode
//! is submitted, and the scores are in the store and the answers file. With
//! a token, a request without it is refused, and the token shows nowhere.

mod common;

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fleetbench_aiops::investigate::score::truth_submission;
use fleetbench_aiops::investigate::world::World;
use fleetbench_store::records::arena::{Answer, ArenaBackend};
use serde_json::{json, Value};

const TOKEN: &str = "t0ken-s3cret-value";

fn temp_dir(tag: &str) -> PathBuf {
    common::tempdir("mcp", tag)
}

/// One HTTP POST to `/mcp`: the status, the session id header, and the
/// JSON-RPC message of the reply (a JSON body or the last SSE `data:` event).
fn post(port: u16, token: Option<&str>, session: Option<&str>, body: &Value) -> (u16, Option<String>, Value) {
    try_post(port, token, session, body).expect("POST /mcp")
}

/// [`post`], with the error of a connection that failed.
fn try_post(
    port: u16,
    token: Option<&str>,
    session: Option<&str>,
    body: &Value,
) -> std::io::Result<(u16, Option<String>, Value)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let body = body.to_string();
    let mut req = format!(
        "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n\
         Accept: application/json, text/event-stream\r\nMCP-Protocol-Version: 2025-06-18\r\n\
         Connection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(t) = token {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    if let Some(id) = session {
        req.push_str(&format!("Mcp-Session-Id: {id}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(&body);
    s.write_all(req.as_bytes())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let session = head
        .lines()
        .find_map(|l| l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case("mcp-session-id")))
        .map(|(_, v)| v.trim().to_string());
    let message = rest
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .next_back()
        .or_else(|| rest.lines().find_map(|l| serde_json::from_str(l.trim()).ok()))
        .unwrap_or(Value::Null);
    Ok((status, session, message))
}

fn rpc(id: u64, method: &str, params: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
}

/// The text of a tools/call reply and whether it is an error.
fn tool_text(reply: &Value) -> (String, bool) {
    let r = &reply["result"];
    (r["content"][0]["text"].as_str().unwrap_or_default().to_string(), r["isError"] == true)
}

/// Waits until the server on `port` answers HTTP: a request without the
/// token gets its 401. A bare TCP connect is not enough: connections made
/// while the command was still starting were seen reset.
fn wait_for_port(port: u16) {
    let start = Instant::now();
    let init = rpc(0, "initialize", json!({}));
    while !matches!(try_post(port, None, None, &init), Ok((401, _, _))) {
        assert!(start.elapsed() < Duration::from_secs(30), "the MCP server never answered on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

fn episodes(dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(dir.join("episodes.jsonl"))
        .expect("episodes.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect()
}

#[test]
fn an_agent_over_mcp_is_scored_and_stored() {
    let dir = temp_dir("exam");
    let fleet = dir.join("fleet");
    let out = Command::new(env!("CARGO_BIN_EXE_fleetbench"))
        .args(["--quiet", "aiops", "generate", "--mode", "investigate", "--episodes", "2", "--seed", "11", "--out"])
        .arg(&fleet)
        .output()
        .expect("generate");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let eps = episodes(&fleet);
    let world =
        |e: &Value| World::generate(e["seed"].as_u64().expect("seed"), e["index"].as_u64().expect("i") as usize);
    let (first, second) = (world(&eps[0]), world(&eps[1]));

    let (db, answers) = (dir.join("r.db"), dir.join("answers.jsonl"));
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_fleetbench"))
        .env("FLEETBENCH_MCP_TOKEN", TOKEN)
        .arg("--db")
        .arg(&db)
        .args(["aiops", "mcp", "--fleet"])
        .arg(&fleet)
        .args(["--listen", &format!("127.0.0.1:{port}"), "--name", "exam-agent", "--answers-out"])
        .arg(&answers)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start fleetbench aiops mcp");
    wait_for_port(port);

    let init = rpc(
        1,
        "initialize",
        json!({"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "test", "version": "0"}}),
    );
    // Without the token, or with a wrong one: refused.
    assert_eq!(post(port, None, None, &init).0, 401);
    assert_eq!(post(port, Some("wrong"), None, &init).0, 401);
    let (status, session, reply) = post(port, Some(TOKEN), None, &init);
    assert_eq!(status, 200, "{reply}");
    let session = session.expect("a session id");
    let instructions = reply["result"]["instructions"].as_str().unwrap_or_default();
    assert!(instructions.contains(&format!("Episode {}", first.id)), "{instructions}");
    let s = Some(session.as_str());
    let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    assert!(matches!(post(port, Some(TOKEN), s, &note).0, 200 | 202));

    let (_, _, list) = post(port, Some(TOKEN), s, &rpc(2, "tools/list", json!({})));
    let names: Vec<&str> =
        list["result"]["tools"].as_array().expect("tools").iter().filter_map(|t| t["name"].as_str()).collect();
    assert_eq!(names, ["promql_query", "promql_range", "kernel_log", "topology", "runbook", "submit_diagnosis"]);

    let call = |id, name: &str, args: Value| {
        let (status, _, reply) =
            post(port, Some(TOKEN), s, &rpc(id, "tools/call", json!({"name": name, "arguments": args})));
        assert_eq!(status, 200, "{reply}");
        tool_text(&reply)
    };
    let (text, err) = call(3, "topology", json!({"entity": "fleet"}));
    assert!(!err && text.contains("loop-"), "{text}");
    let (text, err) = call(4, "kernel_log", json!({}));
    assert!(err && text.contains("node"), "a malformed call is an error the agent can read: {text}");
    let (text, err) = call(5, "submit_diagnosis", truth_submission(&first));
    assert!(!err && text.contains(&format!("Next, episode {}", second.id)), "{text}");
    let wrong = json!({"detected": false, "root_cause": "none", "action": "NONE"});
    let (text, err) = call(6, "submit_diagnosis", wrong.clone());
    assert!(!err && text.contains("last episode"), "{text}");

    // Every episode submitted: the server stops by itself.
    let start = Instant::now();
    let mut child = child;
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break st;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "the server did not stop after the last episode");
        std::thread::sleep(Duration::from_millis(50));
    };
    let output = child.wait_with_output().expect("output");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(status.success(), "{stderr}");
    assert!(!stderr.contains(TOKEN) && !String::from_utf8_lossy(&output.stdout).contains(TOKEN), "{stderr}");

    let store = fleetbench_store::Store::open(&db).expect("db");
    let runs = store.list_runs(10).expect("runs");
    let run = &runs.first().expect("the MCP run").meta;
    assert_eq!(run.status.as_str(), "completed");
    assert!(!run.command_line.contains(TOKEN), "{}", run.command_line);
    let stored: Vec<Answer> = store.get_all::<Answer>(run.id).expect("answers").into_iter().map(|(_, a)| a).collect();
    assert_eq!(stored.len(), 2);
    let a0 = stored.iter().find(|a| a.episode_id == first.id).expect("the first episode");
    assert_eq!(
        (a0.backend.as_str(), a0.score, a0.tool_calls, a0.tool_errors),
        ("exam-agent", Some(100.0), Some(3), Some(1))
    );
    assert!(a0.transcript.iter().any(|e| e["name"] == "topology"), "{:?}", a0.transcript);
    let a1 = stored.iter().find(|a| a.episode_id == second.id).expect("the second episode");
    assert_eq!(a1.parsed.as_ref(), Some(&wrong));
    let board = store.get_all::<ArenaBackend>(run.id).expect("boards");
    let mean = (100.0 + a1.score.expect("scored")) / 2.0;
    assert!(board.iter().any(|(n, b)| n == "exam-agent" && (b.score - mean).abs() < 1e-9), "{board:?}");

    // The answers file scores the same through `aiops score`.
    let lines = std::fs::read_to_string(&answers).expect("answers file");
    assert_eq!(lines.lines().count(), 2);
    let out = Command::new(env!("CARGO_BIN_EXE_fleetbench"))
        .args(["--quiet", "aiops", "score", "--json", "--episodes"])
        .arg(fleet.join("episodes.jsonl"))
        .arg("--answers")
        .arg(&answers)
        .output()
        .expect("score");
    let v: Value = serde_json::from_slice(&out.stdout).expect("score json");
    assert!((v["board"]["mean_score"].as_f64().expect("mean") - mean).abs() < 1e-9, "{v}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn off_loopback_without_a_token_is_refused() {
    let dir = temp_dir("refuse");
    let out = Command::new(env!("CARGO_BIN_EXE_fleetbench"))
        .args(["--quiet", "aiops", "generate", "--mode", "investigate", "--episodes", "1", "--seed", "3", "--out"])
        .arg(&dir)
        .output()
        .expect("generate");
    assert!(out.status.success());
    let out = Command::new(env!("CARGO_BIN_EXE_fleetbench"))
        .env_remove("FLEETBENCH_MCP_TOKEN")
        .arg("--db")
        .arg(dir.join("r.db"))
        .args(["aiops", "mcp", "--listen", "0.0.0.0:0", "--fleet"])
        .arg(&dir)
        .output()
        .expect("mcp");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("without a token") && !err.contains("panicked"), "{err}");
    let out = Command::new(env!("CARGO_BIN_EXE_fleetbench")).args(["aiops", "mcp", "--help"]).output().expect("help");
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("FLEETBENCH_MCP_TOKEN") && help.contains("--stdio"), "{help}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_agent_over_stdio_is_scored_and_stored() {
    use std::io::BufRead as _;

    let dir = temp_dir("stdio");
    let fleet = dir.join("fleet");
    let out = Command::new(env!("CARGO_BIN_EXE_fleetbench"))
        .args(["--quiet", "aiops", "generate", "--mode", "investigate", "--episodes", "1", "--seed", "5", "--out"])
        .arg(&fleet)
        .output()
        .expect("generate");
    assert!(out.status.success());
    let e = &episodes(&fleet)[0];
    let w = World::generate(e["seed"].as_u64().expect("seed"), e["index"].as_u64().expect("index") as usize);
    let db = dir.join("r.db");
    let mut child = Command::new(env!("CARGO_BIN_EXE_fleetbench"))
        .arg("--db")
        .arg(&db)
        .args(["aiops", "mcp", "--stdio", "--fleet"])
        .arg(&fleet)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start fleetbench aiops mcp --stdio");
    let mut stdin = child.stdin.take().expect("stdin");
    let init = rpc(
        1,
        "initialize",
        json!({"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "test", "version": "0"}}),
    );
    let submit = rpc(2, "tools/call", json!({"name": "submit_diagnosis", "arguments": truth_submission(&w)}));
    for m in [init, json!({"jsonrpc": "2.0", "method": "notifications/initialized"}), submit] {
        writeln!(stdin, "{m}").expect("write");
    }
    stdin.flush().expect("flush");
    let mut lines = std::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
    let replies: Vec<Value> =
        (0..2).map(|_| serde_json::from_str(&lines.next().expect("a reply").expect("read")).expect("json")).collect();
    assert_eq!(replies[0]["result"]["serverInfo"]["name"], "fleetbench-aiops", "{}", replies[0]);
    let (text, err) = tool_text(&replies[1]);
    assert!(!err && text.contains("last episode"), "{text}");
    drop(stdin);
    let status = child.wait().expect("wait");
    assert!(status.success());
    let store = fleetbench_store::Store::open(&db).expect("db");
    let run = &store.list_runs(1).expect("runs")[0].meta;
    assert_eq!(run.status.as_str(), "completed");
    let stored = store.get_all::<Answer>(run.id).expect("answers");
    assert_eq!(stored.len(), 1);
    assert_eq!((stored[0].0.as_str(), stored[0].1.score), (format!("mcp/{}", w.id).as_str(), Some(100.0)));
    let _ = std::fs::remove_dir_all(&dir);
}
