//! The simulated server streams as the engine it simulates: the chat role
//! chunk leaves with the first token (not when the request arrives), and
//! SGLang's and llama.cpp's chunk shapes are theirs.

use std::net::SocketAddr;
use std::time::Instant;

use fleetbench_sim::server::{start_server, SimServerConfig, SimServerHandle};
use fleetbench_sim::{Catalog, Deployment, DeploymentSpec};
use futures_util::StreamExt;
use serde_json::{json, Value};

fn deployment(engine: &str, quant: &str) -> Deployment {
    let c = Catalog::embedded().unwrap();
    let spec = DeploymentSpec {
        gpu: "h100-sxm".into(),
        model: "llama-3.1-8b".into(),
        quant: quant.into(),
        engine: engine.into(),
        ..DeploymentSpec::default()
    };
    Deployment::resolve(&c, &spec).unwrap()
}

async fn start(cfg: SimServerConfig) -> SimServerHandle {
    start_server(cfg, SocketAddr::from(([127, 0, 0, 1], 0))).await.expect("server starts")
}

/// Sends one streaming chat request; returns the request's send instant and
/// each `data:` payload with its arrival instant.
async fn chat_stream(h: &SimServerHandle, body: Value) -> (Instant, Vec<(Instant, Value)>) {
    let sent = Instant::now();
    let resp =
        reqwest::Client::new().post(format!("{}/chat/completions", h.base_url())).json(&body).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut out = Vec::new();
    let mut buf = String::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let now = Instant::now();
        buf.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
        while let Some(pos) = buf.find("\n\n") {
            let event: String = buf.drain(..pos + 2).collect();
            for line in event.lines() {
                if let Some(data) = line.strip_prefix("data: ") {
                    let v = if data == "[DONE]" {
                        Value::String("[DONE]".into())
                    } else {
                        serde_json::from_str(data).unwrap()
                    };
                    out.push((now, v));
                }
            }
        }
    }
    (sent, out)
}

#[tokio::test]
async fn the_role_chunk_waits_for_the_first_token() {
    let d = deployment("vllm", "fp8");
    // An 8,000-token prompt: the modelled prefill is tens of milliseconds.
    let prefill = d.prefill_time_s(8000, 0, 0.0);
    assert!(prefill > 0.02, "prefill {prefill}");
    let mut cfg = SimServerConfig::new(d);
    cfg.time_scale = 1.0;
    let h = start(cfg).await;
    let (sent, events) = chat_stream(
        &h,
        json!({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 3, "stream": true, "sim_prompt_tokens": 8000}),
    )
    .await;
    let (role_at, role) = &events[0];
    assert_eq!(role["choices"][0]["delta"], json!({"role": "assistant", "content": ""}));
    // The engine releases the first token at the end of the prefill step,
    // never before: the role chunk must not be earlier than that.
    let waited = role_at.duration_since(sent).as_secs_f64();
    assert!(waited >= prefill * 0.95, "role chunk after {waited} s, prefill is {prefill} s");
    let (first_at, first) = &events[1];
    assert_eq!(first["choices"][0]["delta"]["content"].as_str().map(str::is_empty), Some(false));
    // Role and first token leave together: the first token is not a step later.
    let gap = first_at.duration_since(*role_at).as_secs_f64();
    assert!(gap < prefill, "first token {gap} s after the role chunk");
    h.shutdown().await;
}

#[tokio::test]
async fn sglang_chunks_carry_its_extra_keys() {
    let mut cfg = SimServerConfig::new(deployment("sglang", "fp8"));
    cfg.time_scale = 200.0;
    let h = start(cfg).await;
    let (_, events) =
        chat_stream(&h, json!({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4, "stream": true}))
            .await;
    assert_eq!(events.len(), 1 + 4 + 1);
    for (_, v) in &events[..events.len() - 1] {
        assert!(v.get("usage").is_some_and(Value::is_null), "{v}");
        assert!(v["choices"][0].get("matched_stop").is_some(), "{v}");
    }
    assert_eq!(events[4].1["choices"][0]["finish_reason"], "length");
    h.shutdown().await;
}

#[tokio::test]
async fn llamacpp_sends_the_finish_reason_in_a_chunk_of_its_own() {
    let mut cfg = SimServerConfig::new(deployment("llamacpp", "q4_k_m"));
    cfg.time_scale = 200.0;
    let h = start(cfg).await;
    let (_, events) = chat_stream(
        &h,
        json!({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 3, "stream": true,
               "stream_options": {"include_usage": true}}),
    )
    .await;
    // role, 3 tokens, finish, usage, [DONE]
    assert_eq!(events.len(), 7, "{events:?}");
    assert_eq!(events[0].1["choices"][0]["delta"], json!({"role": "assistant", "content": null}));
    for (_, v) in &events[1..4] {
        assert!(v["choices"][0]["finish_reason"].is_null(), "{v}");
    }
    assert_eq!(events[4].1["choices"][0]["delta"], json!({}));
    assert_eq!(events[4].1["choices"][0]["finish_reason"], "length");
    assert_eq!(events[5].1["usage"]["completion_tokens"], 3);
    h.shutdown().await;
}
