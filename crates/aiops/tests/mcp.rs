//! The MCP server with a real MCP client (rmcp's client side): the tools
//! listed, calls answered, errors counted, submissions recorded and the
//! next episode served; over HTTP, the token is required on every request.

mod common;

use std::sync::{Arc, Mutex};

use common::{diagnosis, FixedToolset, BRIEFING, KERNEL_LINE, XID_SERIES};
use fleetbench_aiops::investigate::{Ended, Investigation, Toolset, TOOL_NAMES};
use fleetbench_aiops::mcp::{check_listen, serve_http, AnswersFile, Episodes, McpError, McpServer, Submissions};
use rmcp::model::CallToolRequestParams;
use rmcp::ServiceExt as _;
use serde_json::{json, Value};

struct TwoEpisodes;

impl Episodes for TwoEpisodes {
    fn ids(&self) -> Vec<String> {
        vec!["ep-1".into(), "ep-2".into()]
    }
    fn open(&self, _id: &str) -> Result<Arc<dyn Toolset>, String> {
        Ok(Arc::new(FixedToolset))
    }
}

#[derive(Default)]
struct Kept(Mutex<Vec<(String, Investigation)>>);

impl Submissions for Kept {
    fn submitted(&self, episode_id: &str, investigation: &Investigation) -> Result<(), String> {
        self.0.lock().unwrap().push((episode_id.into(), investigation.clone()));
        Ok(())
    }
}

fn server() -> (McpServer, Arc<Kept>) {
    let kept = Arc::new(Kept::default());
    (McpServer::new(Arc::new(TwoEpisodes), kept.clone()).unwrap(), kept)
}

/// A call's text and whether it was an error, as the client received it.
async fn call(client: &rmcp::service::RunningService<rmcp::RoleClient, ()>, name: &str, args: Value) -> (String, bool) {
    let Value::Object(args) = args else { panic!("arguments are an object") };
    let r = client.call_tool(CallToolRequestParams::new(name.to_string()).with_arguments(args)).await.unwrap();
    let v = serde_json::to_value(&r).unwrap();
    (v["content"][0]["text"].as_str().unwrap().to_string(), v["isError"] == true)
}

#[tokio::test]
async fn a_real_client_investigates_two_episodes() {
    let (server, kept) = server();
    let (client_io, server_io) = tokio::io::duplex(1 << 16);
    let serving = tokio::spawn(async move { server.serve(server_io).await.unwrap().waiting().await });
    let client = ().serve(client_io).await.unwrap();

    let info = client.peer_info().unwrap();
    let instructions = info.instructions.as_deref().unwrap();
    assert!(instructions.contains("Episode ep-1") && instructions.contains(BRIEFING), "{instructions}");
    let tools = client.list_all_tools().await.unwrap();
    assert_eq!(tools.iter().map(|t| t.name.as_ref()).collect::<Vec<_>>(), TOOL_NAMES);
    assert_eq!(tools[2].input_schema["required"], json!(["node"]));

    assert_eq!(
        call(&client, "promql_query", json!({"query": "DCGM_FI_DEV_XID_ERRORS"})).await,
        (XID_SERIES.into(), false)
    );
    assert_eq!(call(&client, "kernel_log", json!({"node": "node-03"})).await, (KERNEL_LINE.into(), false));
    assert_eq!(call(&client, "kernel_log", json!({})).await, ("error: node is required".into(), true));
    let (text, err) = call(&client, "shell", json!({"cmd": "reboot"})).await;
    assert!(err && text.starts_with("error: unknown tool 'shell'"), "{text}");
    let (text, err) = call(&client, "submit_diagnosis", diagnosis()).await;
    assert!(!err && text.contains("Next, episode ep-2") && text.contains(BRIEFING), "{text}");

    let (text, err) = call(&client, "submit_diagnosis", json!({"root_cause": "healthy", "action": "none"})).await;
    assert!(!err && text.contains("last episode"), "{text}");
    let (text, err) = call(&client, "runbook", json!({"query": "xid"})).await;
    assert!(err && text.contains("every episode has been submitted"), "{text}");

    drop(client);
    let _ = serving.await;
    let kept = kept.0.lock().unwrap();
    assert_eq!(kept.len(), 2);
    let (id, inv) = &kept[0];
    assert_eq!(id, "ep-1");
    assert_eq!((inv.submitted.as_ref(), &inv.ended), (Some(&diagnosis()), &Ended::Submitted));
    assert_eq!((inv.tool_calls, inv.tool_errors), (5, 2));
    assert_eq!(inv.transcript[0]["content"], BRIEFING);
    assert!(inv.transcript.iter().any(|e| e["content"] == KERNEL_LINE));
    assert_eq!((kept[1].0.as_str(), kept[1].1.tool_calls), ("ep-2", 1));
}

#[tokio::test]
async fn over_http_the_token_is_required_on_every_request() {
    let (server, _) = server();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/mcp", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(serve_http(server, listener, Some("s3cret".into()), async {
        let _ = stopped.await;
    }));
    let http = reqwest::Client::new();
    let initialize = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "test", "version": "0"}}});
    let post = |auth: Option<&str>| {
        let mut r = http
            .post(&url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(initialize.to_string());
        if let Some(a) = auth {
            r = r.header("authorization", a);
        }
        r.send()
    };
    for bad in [None, Some("Bearer wrong"), Some("s3cret")] {
        assert_eq!(post(bad).await.unwrap().status(), 401, "{bad:?}");
    }
    let ok = post(Some("Bearer s3cret")).await.unwrap();
    assert_eq!(ok.status(), 200);
    let body = ok.text().await.unwrap();
    assert!(body.contains("fleetbench-aiops") && body.contains("Episode ep-1"), "{body}");
    stop.send(()).unwrap();
    serving.await.unwrap().unwrap();
}

#[tokio::test]
async fn off_loopback_without_a_token_is_refused() {
    let (server, _) = server();
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let e = serve_http(server, listener, None, async {}).await.unwrap_err();
    assert!(e.to_string().contains("without a token"), "{e}");
}

#[test]
fn submissions_append_scorable_answer_lines() {
    let path = std::env::temp_dir().join(format!("fb-mcp-answers-{}.jsonl", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let sink = AnswersFile::append(&path).unwrap();
    let inv = Investigation {
        submitted: Some(diagnosis()),
        transcript: vec![json!({"role": "user", "content": BRIEFING})],
        tool_calls: 3,
        tool_errors: 1,
        input_tokens: 0,
        output_tokens: 0,
        wall_s: 1.5,
        ended: Ended::Submitted,
    };
    sink.submitted("ep-1", &inv).unwrap();
    sink.submitted("ep-2", &inv).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2);
    assert_eq!((lines[1]["episode_id"].as_str(), &lines[1]["answer"]), (Some("ep-2"), &diagnosis()));
    assert_eq!(
        (lines[0]["tool_calls"].as_u64(), lines[0]["transcript"][0]["content"].as_str()),
        (Some(3), Some(BRIEFING))
    );
    let _ = std::fs::remove_file(&path);
}

#[test]
fn only_loopback_listens_without_a_token() {
    let any: std::net::SocketAddr = "0.0.0.0:7000".parse().unwrap();
    assert!(matches!(check_listen(any, None), Err(McpError::NeedsToken { .. })));
    assert!(check_listen(any, Some("")).is_err());
    assert!(check_listen(any, Some("t")).is_ok());
    assert!(check_listen("127.0.0.1:7000".parse().unwrap(), None).is_ok());
    assert!(check_listen("[::1]:7000".parse().unwrap(), None).is_ok());
}
