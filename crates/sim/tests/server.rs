//! The simulated server driven over real HTTP on loopback.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fleetbench_sim::server::{start_server, SimServerConfig, SimServerHandle};
use fleetbench_sim::{Catalog, Deployment, DeploymentSpec};
use futures_util::StreamExt;
use serde_json::{json, Value};

fn deployment(model: &str, max_num_seqs: Option<u32>) -> Deployment {
    let c = Catalog::embedded().unwrap();
    Deployment::resolve(&c, &DeploymentSpec { model: model.into(), max_num_seqs, ..DeploymentSpec::default() }).unwrap()
}

async fn start(cfg: SimServerConfig) -> SimServerHandle {
    start_server(cfg, SocketAddr::from(([127, 0, 0, 1], 0))).await.expect("server starts")
}

/// A server of `model` (its engine's defaults) running `time_scale` times
/// faster than the hardware it models.
async fn start_model(model: &str, time_scale: f64) -> SimServerHandle {
    let mut cfg = SimServerConfig::new(deployment(model, None));
    cfg.time_scale = time_scale;
    start(cfg).await
}

/// Reads an SSE body; returns each `data:` payload with its arrival instant.
async fn sse_events(resp: reqwest::Response) -> Vec<(Instant, String)> {
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
                    out.push((now, data.to_string()));
                }
            }
        }
    }
    out
}

/// The value of the first sample of metric `name` (a labelled line
/// `name{...} value`) in a `/metrics` text; `None` where there is none.
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.strip_prefix(name).is_some_and(|rest| rest.starts_with('{')))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Streams one completion of `n` tokens for a prompt stated as `prompt`
/// tokens; returns the instant it was sent and each token's arrival.
async fn stream_tokens(h: &SimServerHandle, prompt: u32, n: u32) -> (Instant, Vec<Instant>) {
    let sent = Instant::now();
    let resp = reqwest::Client::new()
        .post(format!("{}/completions", h.base_url()))
        .json(&json!({"prompt": "x", "max_tokens": n, "sim_prompt_tokens": prompt, "stream": true}))
        .send()
        .await
        .unwrap();
    let events = sse_events(resp).await;
    let tokens: Vec<Instant> = events.iter().filter(|(_, d)| d != "[DONE]").map(|(t, _)| *t).collect();
    assert_eq!(tokens.len(), n as usize);
    (sent, tokens)
}

#[tokio::test]
async fn streaming_chat_has_role_chunk_tokens_usage_and_done() {
    let h = start_model("qwen3-coder-30b-a3b", 200.0).await;
    let resp = reqwest::Client::new()
        .post(format!("{}/chat/completions", h.base_url()))
        .json(&json!({
            "model": "qwen3-coder-30b-a3b",
            "messages": [{"role": "user", "content": "Say something about GPUs, please."}],
            "max_tokens": 12,
            "stream": true,
            "stream_options": {"include_usage": true}
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    let events = sse_events(resp).await;
    assert_eq!(events.last().unwrap().1, "[DONE]");
    let first: Value = serde_json::from_str(&events[0].1).unwrap();
    assert_eq!(first["choices"][0]["delta"], json!({"role": "assistant", "content": ""}));
    let mut tokens = 0;
    let mut usage = None;
    let mut finish = None;
    for (_, data) in &events[1..events.len() - 1] {
        let v: Value = serde_json::from_str(data).unwrap();
        if let Some(u) = v.get("usage").filter(|u| !u.is_null()) {
            usage = Some(u.clone());
            assert_eq!(v["choices"].as_array().unwrap().len(), 0);
            continue;
        }
        let c = v["choices"][0]["delta"]["content"].as_str().unwrap();
        assert!(!c.is_empty());
        tokens += 1;
        if let Some(f) = v["choices"][0]["finish_reason"].as_str() {
            finish = Some(f.to_string());
        }
    }
    assert_eq!(tokens, 12);
    assert_eq!(finish.as_deref(), Some("length"));
    let usage = usage.expect("usage chunk");
    assert_eq!(usage["completion_tokens"], 12);
    // "Say something about GPUs, please." is 33 characters: 9 tokens at 4 chars each.
    assert_eq!(usage["prompt_tokens"], 9);
    h.shutdown().await;
}

#[tokio::test]
async fn completions_stream_and_json_both_carry_usage() {
    let h = start_model("qwen3-coder-30b-a3b", 200.0).await;
    let client = reqwest::Client::new();
    let resp = client
        .post(format!("{}/completions", h.base_url()))
        .json(&json!({"model": "m", "prompt": "def add(a, b):", "max_tokens": 7, "stream": true,
                      "stream_options": {"include_usage": true}}))
        .send()
        .await
        .unwrap();
    let events = sse_events(resp).await;
    let texts: Vec<Value> = events[..events.len() - 1].iter().map(|(_, d)| serde_json::from_str(d).unwrap()).collect();
    let token_chunks = texts.iter().filter(|v| v["choices"].as_array().is_some_and(|c| !c.is_empty())).count();
    assert_eq!(token_chunks, 7);
    assert_eq!(texts.last().unwrap()["usage"]["completion_tokens"], 7);
    assert_eq!(events.last().unwrap().1, "[DONE]");

    let v: Value = client
        .post(format!("{}/completions", h.base_url()))
        .json(&json!({"model": "m", "prompt": "x", "max_tokens": 5, "sim_prompt_tokens": 300}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["object"], "text_completion");
    assert_eq!(v["usage"]["prompt_tokens"], 300);
    assert_eq!(v["usage"]["completion_tokens"], 5);
    assert_eq!(v["choices"][0]["text"].as_str().unwrap().split_whitespace().count(), 5);

    let v: Value = client
        .post(format!("{}/chat/completions", h.base_url()))
        .json(&json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    assert_eq!(v["usage"]["completion_tokens"], 3);

    let bad = client.post(format!("{}/chat/completions", h.base_url())).body("{not json").send().await.unwrap();
    assert_eq!(bad.status(), 400);
    let models: Value = client.get(format!("{}/models", h.base_url())).send().await.unwrap().json().await.unwrap();
    assert_eq!(models["data"][0]["id"], "qwen3-coder-30b-a3b");
    let health = client.get(format!("http://{}/health", h.local_addr())).send().await.unwrap();
    assert_eq!(health.status(), 200);
    h.shutdown().await;
}

#[tokio::test]
async fn metrics_use_vllm_names_and_count_tokens() {
    let h = start_model("qwen3-coder-30b-a3b", 200.0).await;
    let client = reqwest::Client::new();
    client
        .post(format!("{}/completions", h.base_url()))
        .json(&json!({"prompt": "x", "max_tokens": 4, "sim_prompt_tokens": 100}))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let text = client.get(format!("http://{}/metrics", h.local_addr())).send().await.unwrap().text().await.unwrap();
    for name in [
        "vllm:num_requests_running",
        "vllm:num_requests_waiting",
        "vllm:kv_cache_usage_perc",
        "vllm:num_preemptions_total",
        "vllm:prompt_tokens_total",
        "vllm:generation_tokens_total",
        "vllm:time_to_first_token_seconds_bucket",
        "vllm:inter_token_latency_seconds_bucket",
    ] {
        assert!(text.contains(name), "missing {name} in\n{text}");
    }
    let value = |name: &str| metric(&text, name).unwrap_or(-1.0);
    assert_eq!(value("vllm:generation_tokens_total"), 4.0);
    assert_eq!(value("vllm:prompt_tokens_total"), 100.0);
    assert_eq!(value("vllm:time_to_first_token_seconds_count"), 1.0);
    assert_eq!(value("vllm:inter_token_latency_seconds_count"), 3.0);
    h.shutdown().await;
}

#[tokio::test]
async fn token_timing_follows_the_engine_schedule() {
    // Dense 32B on one RTX 3090: about 25 ms per decode step in model time.
    let d = deployment("qwen2.5-coder-32b", None);
    let scale = 2.0;
    let prompt = 200;
    let n = 16;
    // The API server's share, then the prefill.
    let expect_ttft = d.engine.frontend_latency_s(prompt) + d.prefill_time_s(prompt, 0, 0.0);
    let expect_gap = d.decode_step(1, prompt as f64 + n as f64 / 2.0).time_s;
    let mut cfg = SimServerConfig::new(d);
    cfg.time_scale = scale;
    let h = start(cfg).await;
    let (sent, tokens) = stream_tokens(&h, prompt, n).await;
    // On the wall clock (model time = wall time x scale), no token comes
    // before its instant. How late they come is this machine's load, which
    // `fleetbench selftest` measures; a test does not assert it.
    for (k, t) in tokens.iter().enumerate() {
        let at = (*t - sent).as_secs_f64() * scale;
        let due = expect_ttft + k as f64 * expect_gap;
        assert!(at >= due * 0.95, "token {k} at {at} s, due at {due} s of model time");
    }
    // In model time the engine keeps its schedule exactly, however late
    // the machine woke it: its own histograms, in model seconds, hold the
    // first token and the 15 gaps of the one request.
    let text = reqwest::get(format!("http://{}/metrics", h.local_addr())).await.unwrap().text().await.unwrap();
    let value = |name: &str| metric(&text, name).unwrap_or_else(|| panic!("no {name} in\n{text}"));
    let (ttft, gaps) = (value("vllm:time_to_first_token_seconds_sum"), value("vllm:inter_token_latency_seconds_sum"));
    assert_eq!(value("vllm:time_to_first_token_seconds_count"), 1.0);
    assert_eq!(value("vllm:inter_token_latency_seconds_count"), f64::from(n - 1));
    assert!((ttft - expect_ttft).abs() < 1e-9, "first token at {ttft} s of model time, modelled {expect_ttft} s");
    // Each step's context grows by a token; the model's step at the mean
    // context is the mean gap to within a thousandth.
    let gap = gaps / f64::from(n - 1);
    assert!((gap / expect_gap - 1.0).abs() < 1e-3, "mean gap {gap} s of model time, modelled {expect_gap} s");
    h.shutdown().await;
}

#[tokio::test]
async fn concurrency_beyond_max_num_seqs_queues() {
    let mut cfg = SimServerConfig::new(deployment("qwen3-coder-30b-a3b", Some(2)));
    cfg.time_scale = 20.0;
    let h = Arc::new(start(cfg).await);
    let client = reqwest::Client::new();
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let url = format!("{}/completions", h.base_url());
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let sent = Instant::now();
            let resp = client
                .post(url)
                .json(&json!({"prompt": "x", "max_tokens": 40, "sim_prompt_tokens": 100, "stream": true}))
                .send()
                .await
                .unwrap();
            let events = sse_events(resp).await;
            (events[0].0 - sent).as_secs_f64()
        }));
    }
    // Scrape /metrics while the six requests are in flight.
    let saw_waiting = fleetbench_testkit::wait_until(Duration::from_secs(10), Duration::from_millis(5), async || {
        let text = client.get(format!("http://{}/metrics", h.local_addr())).send().await.unwrap().text().await.unwrap();
        metric(&text, "vllm:num_requests_waiting").unwrap_or(0.0) >= 1.0
    })
    .await;
    let mut ttfts = Vec::new();
    for t in tasks {
        ttfts.push(t.await.unwrap());
    }
    ttfts.sort_by(|a, b| a.partial_cmp(b).unwrap());
    assert!(saw_waiting.is_ok(), "vllm:num_requests_waiting never rose above 0");
    assert!(h.stats().max_waiting >= 3, "stats {:?}", h.stats());
    // The queued requests' first tokens come after the first batch's (their
    // wait is the server's queue, reported above; how much later depends on
    // this machine's load, so only the order is checked).
    assert!(ttfts[5] > ttfts[0], "ttfts {ttfts:?}");
}

#[tokio::test]
async fn a_custom_responder_answers_with_its_text() {
    let mut cfg = SimServerConfig::new(deployment("qwen3-coder-30b-a3b", None));
    cfg.time_scale = 200.0;
    cfg.responder = Some(Arc::new(|prompt: &str| {
        prompt.contains("incident").then(|| "root cause: node-3 gpu-5 xid 79".to_string())
    }));
    let h = start(cfg).await;
    let client = reqwest::Client::new();
    let v: Value = client
        .post(format!("{}/chat/completions", h.base_url()))
        .json(&json!({"messages": [{"role": "user", "content": "diagnose this incident"}]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], "root cause: node-3 gpu-5 xid 79");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    // Token-sized pieces: "root", " ", "caus", "e: ", "node", "-3 ", "gpu-", "5 ", "xid ", "79".
    assert_eq!(v["usage"]["completion_tokens"], 10);
    h.shutdown().await;
}

#[tokio::test]
async fn a_client_that_goes_away_is_aborted_in_the_engine() {
    // Dense 32B on one RTX 3090 at real speed: 2000 tokens would take ~50 s.
    let cfg = SimServerConfig::new(deployment("qwen2.5-coder-32b", None));
    let h = start(cfg).await;
    let resp = reqwest::Client::new()
        .post(format!("{}/completions", h.base_url()))
        .json(&json!({"prompt": "x", "max_tokens": 2000, "stream": true}))
        .send()
        .await
        .unwrap();
    let mut stream = resp.bytes_stream();
    // Wait for the first token, then hang up.
    let mut seen = String::new();
    while !seen.contains("\"text\"") {
        let chunk = stream.next().await.unwrap().unwrap();
        seen.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    assert_eq!(h.stats().num_requests_running, 1);
    drop(stream);
    fleetbench_testkit::wait_until(Duration::from_secs(10), Duration::from_millis(20), async || {
        h.stats().num_requests_running == 0
    })
    .await
    .expect("the abandoned request kept running");
    assert!(h.stats().generation_tokens_total < 200);
    h.shutdown().await;
}

#[tokio::test]
async fn completions_find_a_shared_system_prompt_and_a_repeated_prompt_by_their_text() {
    // inference-perf's shared-prefix traffic posts `system + " " + question`
    // as a completion: vLLM finds the system prompt by content, and so must
    // the simulated server.
    let h = start_model("llama-3.1-8b", 200.0).await;
    let client = reqwest::Client::new();
    let system = "fleet ".repeat(640); // 3,840 bytes, 960 tokens at 4 bytes a token
    let post = |prompt: String| {
        let client = client.clone();
        let url = format!("{}/completions", h.base_url());
        async move {
            let r = client.post(url).json(&json!({"prompt": prompt, "max_tokens": 2})).send().await.unwrap();
            assert!(r.status().is_success());
            r.text().await.unwrap();
        }
    };
    let question = |n: usize| format!("{system}question {n}: {}", "why ".repeat(60 + n));
    post(question(1)).await;
    post(question(2)).await;
    assert_eq!(h.stats().prefix_hits_total, 0, "the first two open the group");
    post(question(3)).await;
    let after_third = h.stats().prefix_hits_total;
    // The third finds the system prompt's whole blocks (60 of 64 bytes, at
    // most one 16-token block short of its 960 tokens).
    assert!((944..=960).contains(&after_third), "hits {after_third}");
    post(question(3)).await;
    let again = h.stats().prefix_hits_total - after_third;
    let q3_tokens = question(3).chars().count().div_ceil(4) as u64;
    assert!(again >= q3_tokens - 32 && again < q3_tokens, "the same prompt again: {again} of {q3_tokens}");
    h.shutdown().await;
}

#[tokio::test]
async fn the_api_servers_share_comes_before_the_first_token() {
    // A short prompt on an H100: the prefill is a few milliseconds, and
    // vLLM's API server (HTTP, tokenising, the hand-off to the engine core)
    // adds more than that to every first token, as `sim replay` adds it.
    let d = deployment("llama-3.1-8b", None);
    let frontend = d.engine.frontend_latency_s(16);
    assert!(frontend > 0.01, "vLLM's frontend latency is {frontend} s");
    let engine_only = d.prefill_time_s(16, 0, 0.0);
    let h = start(SimServerConfig::new(d)).await;
    let sent = Instant::now();
    let resp = reqwest::Client::new()
        .post(format!("{}/completions", h.base_url()))
        .json(&json!({"prompt": "x", "max_tokens": 2, "sim_prompt_tokens": 16, "stream": true}))
        .send()
        .await
        .unwrap();
    let events = sse_events(resp).await;
    let ttft = (events[0].0 - sent).as_secs_f64();
    assert!(ttft >= frontend + engine_only, "first token after {ttft} s, before the frontend's {frontend} s");
    h.shutdown().await;
}
