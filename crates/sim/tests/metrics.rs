//! What the simulated server says about itself: its time scale on every
//! response and on /metrics (and the client that reads it), and /metrics
//! that Prometheus' own checker accepts.

use std::net::SocketAddr;
use std::time::Duration;

use fleetbench_client::{Client, ClientConfig};
use fleetbench_core::ApiKind;
use fleetbench_sim::server::{start_server, SimServerConfig, SimServerHandle, TIME_SCALE_HEADER};
use fleetbench_sim::{Catalog, Deployment, DeploymentSpec};
use serde_json::json;

async fn start(scale: f64, name: &str) -> SimServerHandle {
    let c = Catalog::embedded().unwrap();
    let d =
        Deployment::resolve(&c, &DeploymentSpec { model: "llama-3.1-8b".into(), ..DeploymentSpec::default() }).unwrap();
    let mut cfg = SimServerConfig::new(d);
    cfg.time_scale = scale;
    cfg.served_model_name = name.into();
    start_server(cfg, SocketAddr::from(([127, 0, 0, 1], 0))).await.expect("server starts")
}

fn http() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

/// One short chat request, so that the histograms and counters have values.
async fn one_request(h: &SimServerHandle) -> reqwest::Response {
    http()
        .post(format!("{}/chat/completions", h.base_url()))
        .json(&json!({"messages": [{"role": "user", "content": "hello"}], "max_tokens": 4, "stream": true}))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn every_response_announces_the_time_scale_and_the_client_reads_it() {
    assert_eq!(TIME_SCALE_HEADER, fleetbench_client::TIME_SCALE_HEADER);
    let h = start(20.0, "m").await;
    let chat = one_request(&h).await;
    assert_eq!(chat.headers()[TIME_SCALE_HEADER], "20");
    chat.text().await.unwrap();
    let base = h.base_url();
    let root = base.trim_end_matches("/v1");
    for url in [format!("{base}/models"), format!("{root}/metrics"), format!("{root}/health"), format!("{root}/nope")] {
        let r = http().get(&url).send().await.unwrap();
        assert_eq!(r.headers().get(TIME_SCALE_HEADER).map(|v| v.to_str().unwrap()), Some("20"), "{url}");
    }
    let metrics = http().get(format!("{root}/metrics")).send().await.unwrap().text().await.unwrap();
    let samples = fleetbench_client::prom::parse(&metrics).unwrap();
    let gauge = samples.iter().find(|s| s.name == "fleetbench:time_scale").expect("the time-scale gauge");
    assert_eq!(gauge.value, 20.0);

    let client = Client::new(ClientConfig::new(base, ApiKind::Chat, "m")).unwrap();
    assert_eq!(client.time_scale(), None, "nothing is known before the probe");
    client.probe(Duration::from_secs(5)).await.unwrap();
    assert_eq!(client.time_scale(), Some(20.0));
    assert_eq!(client.clone().time_scale(), Some(20.0), "clones share what the probe saw");
    h.shutdown().await;
}

#[tokio::test]
async fn every_metric_family_has_help_and_type_and_labels_are_escaped() {
    let h = start(1.0, "a\"b\\c").await;
    one_request(&h).await.text().await.unwrap();
    let root = h.base_url().trim_end_matches("/v1").to_string();
    let text = http().get(format!("{root}/metrics")).send().await.unwrap().text().await.unwrap();
    let samples = fleetbench_client::prom::parse(&text).expect("the exposition parses");
    assert!(samples.iter().any(|s| s.labels.iter().any(|(k, v)| k == "model_name" && v == "a\"b\\c")), "{text}");
    let families: std::collections::BTreeSet<&str> =
        text.lines().filter_map(|l| l.strip_prefix("# TYPE ")).filter_map(|l| l.split(' ').next()).collect();
    assert!(families.len() >= 11, "{families:?}");
    for f in &families {
        assert!(text.contains(&format!("# HELP {f} ")), "{f} has no HELP");
    }
    h.shutdown().await;
}

/// `promtool check metrics` on the live /metrics: nothing but the lint on
/// colons in names, which vLLM's own names (and so the simulator's) have.
#[tokio::test]
#[ignore = "needs promtool: scripts/test.sh installs Prometheus (scripts/ensure-prometheus.sh)"]
async fn promtool_accepts_the_metrics_apart_from_colons() {
    let promtool = std::env::var("PROMTOOL").unwrap_or_else(|_| "promtool".into());
    let version = std::process::Command::new(&promtool).arg("--version").output();
    assert!(
        version.as_ref().is_ok_and(|o| o.status.success()),
        "this test needs promtool ({promtool}): scripts/test.sh installs it with Debian's prometheus package \
         through scripts/ensure-prometheus.sh, or set PROMTOOL to its path"
    );
    let h = start(20.0, "m").await;
    one_request(&h).await.text().await.unwrap();
    let root = h.base_url().trim_end_matches("/v1").to_string();
    let text = http().get(format!("{root}/metrics")).send().await.unwrap().text().await.unwrap();
    h.shutdown().await;
    let out = tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut child = std::process::Command::new(promtool)
            .args(["check", "metrics"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let problems: Vec<&str> = said
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter(|l| !l.contains("metric names should not contain"))
        .collect();
    assert!(problems.is_empty(), "promtool found more than the colon lint:\n{said}");
    assert!(said.contains("fleetbench:time_scale"), "the colon lint names every family, ours too:\n{said}");
}

/// The simulated server's token count of messages joined as it joins them.
fn estimate(texts: &[&str]) -> f64 {
    texts.join("\n").chars().count().div_ceil(4) as f64
}

/// The server's prefix-cache counters, in prompt tokens.
async fn prefix_counters(root: &str) -> (f64, f64) {
    let text = http().get(format!("{root}/metrics")).send().await.unwrap().text().await.unwrap();
    let samples = fleetbench_client::prom::parse(&text).unwrap();
    let value = |name: &str| samples.iter().find(|s| s.name == name).map(|s| s.value).expect(name);
    (value("vllm:prefix_cache_hits_total"), value("vllm:prefix_cache_queries_total"))
}

#[tokio::test]
async fn a_chat_that_carries_its_history_finds_it_in_the_prefix_cache() {
    let h = start(50.0, "m").await;
    let root = h.base_url().trim_end_matches("/v1").to_string();
    let system = "you are a careful engineer ".repeat(200);
    let history = |turns: usize| {
        let mut m = vec![json!({"role": "system", "content": system}), json!({"role": "user", "content": "task one"})];
        for t in 0..turns {
            m.push(json!({"role": "assistant", "content": format!("answer {t} ").repeat(50)}));
            m.push(json!({"role": "user", "content": format!("tool output {t} ").repeat(80)}));
        }
        m
    };
    let send = |messages: Vec<serde_json::Value>| {
        let url = format!("{}/chat/completions", h.base_url());
        async move {
            let body = json!({"messages": messages, "max_tokens": 4});
            http().post(url).json(&body).send().await.unwrap().text().await.unwrap();
        }
    };
    // The first chat finds nothing; it leaves its prompt for its next turn.
    send(history(0)).await;
    assert_eq!(prefix_counters(&root).await.0, 0.0);
    send(history(1)).await;
    let (hits1, queries1) = prefix_counters(&root).await;
    let first = estimate(&[system.as_str(), "task one"]);
    assert!(
        hits1 >= first - 16.0 && hits1 < queries1,
        "turn 1 found {hits1} of {queries1}, the first turn had {first}"
    );
    // Turn 2 opens with all of turn 1's prompt.
    send(history(2)).await;
    let (hits2, queries2) = prefix_counters(&root).await;
    let (hit, asked) = (hits2 - hits1, queries2 - queries1);
    assert!(hit / asked > 0.6, "turn 2: {hit} of {asked} prompt tokens from the cache");
    h.shutdown().await;
}

#[tokio::test]
async fn the_client_tells_a_simulator_the_prompt_size_the_workload_built() {
    let h = start(50.0, "m").await;
    let client = Client::new(ClientConfig::new(h.base_url(), ApiKind::Completions, "m")).unwrap();
    let spec = |expected: Option<u32>| fleetbench_core::RequestSpec {
        id: "r".into(),
        prompt: fleetbench_core::Prompt::Text("word ".repeat(400)),
        sampling: fleetbench_core::SamplingParams { max_tokens: Some(2), ..Default::default() },
        expected_input_tokens: expected,
        label: None,
        context: Default::default(),
    };
    let clock = fleetbench_core::RunClock::start();
    // Before the probe the client does not know it talks to a simulator:
    // the server estimates 2,000 characters as 500 tokens.
    let unknown = client.send(&spec(Some(400)), &clock, 0.0).await;
    assert_eq!(unknown.input_tokens, Some(500), "{unknown:?}");
    client.probe(Duration::from_secs(5)).await.unwrap();
    let stated = client.send(&spec(Some(400)), &clock, 0.0).await;
    assert_eq!(stated.input_tokens, Some(400), "{stated:?}");
    let unstated = client.send(&spec(None), &clock, 0.0).await;
    assert_eq!(unstated.input_tokens, Some(500));
    h.shutdown().await;
}

#[tokio::test]
async fn a_chat_finds_the_answer_it_generated_and_not_a_stand_in() {
    let h = start(50.0, "m").await;
    let root = h.base_url().trim_end_matches("/v1").to_string();
    let system = "you are a careful engineer ".repeat(100);
    let ask = |messages: Vec<serde_json::Value>| {
        let url = format!("{}/chat/completions", h.base_url());
        async move {
            let body = json!({"messages": messages, "max_tokens": 64});
            let v: serde_json::Value = http().post(url).json(&body).send().await.unwrap().json().await.unwrap();
            v["choices"][0]["message"]["content"].as_str().unwrap().to_string()
        }
    };
    let turn = |user: &str, answer: &str| {
        vec![
            json!({"role": "system", "content": system}),
            json!({"role": "user", "content": user}),
            json!({"role": "assistant", "content": answer}),
            json!({"role": "user", "content": "and then?"}),
        ]
    };
    // Each conversation's second turn: how many of its prompt tokens the
    // cache held.
    let mut found = Vec::new();
    for (user, own) in [("first task", true), ("second task", false)] {
        let answer =
            ask(vec![json!({"role": "system", "content": system}), json!({"role": "user", "content": user})]).await;
        let sent = if own { answer.clone() } else { "x".repeat(answer.len()) };
        let before = prefix_counters(&root).await.0;
        ask(turn(user, &sent)).await;
        found.push(prefix_counters(&root).await.0 - before);
    }
    let prompt = estimate(&[system.as_str(), "first task"]);
    // Its own answer comes back as the tokens it generated: found with the
    // prompt before it (64 tokens, less the last, which has no KV yet).
    assert!(found[0] >= prompt + 32.0, "own answer: {} found, the first prompt had {prompt}", found[0]);
    // A stand-in is new text: only the first turn's prompt is found.
    assert!(found[1] <= prompt + 1.0 && found[1] >= prompt - 16.0, "stand-in: {} found of {prompt}", found[1]);
    h.shutdown().await;
}
