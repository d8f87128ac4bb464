//! The dashboard over real loopback HTTP: the bind/token rules, 401 without
//! the token, security headers, the stored-run list and reports, live
//! updates by server-sent events (coalesced) and the client cap.

use std::net::SocketAddr;
use std::time::Duration;

use fleetbench_core::{RunMeta, RunStatus};
use fleetbench_dash::{serve, DashConfig, DashError, LiveBus, LiveRunInfo};
use futures_util::StreamExt;

const TOKEN: &str = "test-token-0123456789abcdef";

fn cfg(listen: &str) -> DashConfig {
    DashConfig { listen: listen.parse().unwrap(), update_interval: Duration::from_millis(200), ..DashConfig::default() }
}

fn local(addr: SocketAddr) -> String {
    // Only loopback targets, even for a server bound to every interface.
    format!("http://127.0.0.1:{}", addr.port())
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

/// Reads server-sent events until `enough` says stop or `limit` passes;
/// returns the `data:` payloads of `live` events.
async fn read_events(
    resp: reqwest::Response,
    limit: Duration,
    enough: impl Fn(&[serde_json::Value]) -> bool,
) -> Vec<serde_json::Value> {
    let mut stream = resp.bytes_stream();
    let mut buf = String::new();
    let mut events = Vec::new();
    let deadline = tokio::time::Instant::now() + limit;
    while let Ok(Some(Ok(chunk))) = tokio::time::timeout_at(deadline, stream.next()).await {
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf[..end].to_string();
            buf.drain(..end + 2);
            if block.lines().any(|l| l == "event: live") {
                let data: String = block.lines().filter_map(|l| l.strip_prefix("data: ")).collect();
                events.push(serde_json::from_str(&data).unwrap());
            }
        }
        if enough(&events) {
            break;
        }
    }
    events
}

#[tokio::test]
async fn non_loopback_binds_need_a_long_enough_token() {
    let e = serve(cfg("0.0.0.0:0"), LiveBus::new()).await.unwrap_err();
    assert!(matches!(e, DashError::TokenRequired(_)), "{e}");
    assert!(e.to_string().contains("--token"));
    let mut c = cfg("0.0.0.0:0");
    c.token = Some("short".into());
    assert!(matches!(serve(c, LiveBus::new()).await.unwrap_err(), DashError::TokenTooShort(5)));
}

#[tokio::test]
async fn without_the_token_every_path_answers_401() {
    let mut c = cfg("0.0.0.0:0");
    c.token = Some(TOKEN.into());
    let h = serve(c, LiveBus::new()).await.unwrap();
    let base = local(h.local_addr());
    let http = client();
    for path in ["/", "/app.js", "/style.css", "/api/runs", "/api/live", "/api/live/events", "/runs/1/report", "/nope"]
    {
        let r = http.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(r.status(), 401, "{path}");
        assert!(r.headers().get("content-security-policy").is_some(), "{path}: no CSP on 401");
    }
    let wrong = http.get(format!("{base}/api/live")).bearer_auth("test-token-0123456789abcdeX").send().await.unwrap();
    assert_eq!(wrong.status(), 401);
    let ok = http.get(format!("{base}/api/live")).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(ok.status(), 200);
    // ?token= once sets an HttpOnly cookie that carries it afterwards.
    let first = http.get(format!("{base}/?token={TOKEN}")).send().await.unwrap();
    assert_eq!(first.status(), 200);
    let cookie = first.headers().get("set-cookie").unwrap().to_str().unwrap().to_string();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
    let pair = cookie.split(';').next().unwrap().to_string();
    let with_cookie = http.get(format!("{base}/app.js")).header("cookie", pair).send().await.unwrap();
    assert_eq!(with_cookie.status(), 200);
    // The page itself never contains the token.
    let page = http.get(format!("{base}/")).bearer_auth(TOKEN).send().await.unwrap().text().await.unwrap();
    assert!(!page.contains(TOKEN));
    h.shutdown().await.unwrap();
}

#[tokio::test]
async fn pages_forbid_inline_scripts_and_build_text_safely() {
    let h = serve(cfg("127.0.0.1:0"), LiveBus::new()).await.unwrap();
    let base = local(h.local_addr());
    let r = client().get(format!("{base}/")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let csp = r.headers()["content-security-policy"].to_str().unwrap().to_string();
    assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-eval"));
    assert!(!csp.contains("script-src 'self' 'unsafe-inline'"));
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    let html = r.text().await.unwrap();
    assert_eq!(html.matches("<script").count(), 1);
    assert!(html.contains("<script src=\"/app.js\" defer></script>"));
    assert!(!html.contains("http://") && !html.contains("https://"));
    let js = client().get(format!("{base}/app.js")).send().await.unwrap().text().await.unwrap();
    assert!(js.contains("textContent"));
    for unsafe_sink in ["innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("] {
        assert!(!js.contains(unsafe_sink), "app.js uses {unsafe_sink}");
    }
    h.shutdown().await.unwrap();
}

#[tokio::test]
async fn live_updates_arrive_coalesced() {
    let bus = LiveBus::new();
    let run = bus.start(LiveRunInfo {
        kind: "run".into(),
        title: "closed loop c=4".into(),
        model: "m".into(),
        total: Some(100),
        ..Default::default()
    });
    let h = serve(cfg("127.0.0.1:0"), bus.clone()).await.unwrap();
    let resp = client().get(format!("{}/api/live/events", local(h.local_addr()))).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    // Once the stream watches the run: a burst of 100 updates, then silence.
    fleetbench_testkit::wait_until(Duration::from_secs(10), Duration::from_millis(5), async || run.watched())
        .await
        .expect("the event stream subscribed to the run");
    let producer = tokio::spawn(async move {
        for i in 1..=100u64 {
            run.update(|s| {
                s.done = i;
                s.output_tok_s = i as f64 * 10.0;
            });
        }
        run
    });
    let events =
        read_events(resp, Duration::from_secs(10), |ev| ev.last().and_then(|e| e[0]["done"].as_u64()) == Some(100))
            .await;
    let run = producer.await.unwrap();
    assert!(run.watched(), "the open stream counts as a watcher");
    let done: Vec<u64> = events.iter().map(|e| e[0]["done"].as_u64().unwrap()).collect();
    assert_eq!(done.last(), Some(&100), "the final state reaches the client: {done:?}");
    assert!(done.windows(2).all(|w| w[0] <= w[1]), "{done:?}");
    assert!(events.len() < 10, "100 updates were not coalesced: {} events", events.len());
    assert_eq!(events[0][0]["title"], "closed loop c=4");
    h.shutdown().await.unwrap();
}

#[tokio::test]
async fn every_frame_carries_every_run_with_its_series() {
    let bus = LiveBus::new();
    let done = bus.start(LiveRunInfo { kind: "sweep".into(), title: "c=1".into(), ..Default::default() });
    done.tick(1.0, Some(1));
    done.finish(fleetbench_dash::LiveState::Finished);
    let running = bus.start(LiveRunInfo { kind: "sweep".into(), title: "c=2".into(), ..Default::default() });
    let h = serve(cfg("127.0.0.1:0"), bus.clone()).await.unwrap();
    let resp = client().get(format!("{}/api/live/events", local(h.local_addr()))).send().await.unwrap();
    fleetbench_testkit::wait_until(Duration::from_secs(10), Duration::from_millis(5), async || running.watched())
        .await
        .expect("the event stream subscribed");
    let producer = tokio::spawn(async move {
        for i in 1..=30u64 {
            running.update(|s| s.done = i);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        running
    });
    let events =
        read_events(resp, Duration::from_secs(10), |ev| ev.last().and_then(|e| e[1]["done"].as_u64()) == Some(30))
            .await;
    producer.await.unwrap();
    assert!(events.len() >= 2, "{events:?}");
    for e in &events {
        assert_eq!(e[0]["title"], "c=1", "{e}");
        assert_eq!(e[0]["state"], "finished");
        assert_eq!(e[0]["series"][0]["in_flight"], 1, "{e}");
        assert_eq!(e[1]["title"], "c=2");
    }
    assert_eq!(events.last().unwrap()[1]["done"], 30);
    h.shutdown().await.unwrap();
}

#[tokio::test]
async fn clients_beyond_the_cap_get_503() {
    let mut c = cfg("127.0.0.1:0");
    c.max_clients = 1;
    let h = serve(c, LiveBus::new()).await.unwrap();
    let url = format!("{}/api/live/events", local(h.local_addr()));
    let first = client().get(&url).send().await.unwrap();
    assert_eq!(first.status(), 200);
    let second = client().get(&url).send().await.unwrap();
    assert_eq!(second.status(), 503);
    drop(first);
    // The slot frees when the first stream goes away.
    fleetbench_testkit::wait_until(Duration::from_secs(10), Duration::from_millis(50), async || {
        client().get(&url).send().await.unwrap().status() == 200
    })
    .await
    .expect("the slot of a closed stream was never released");
    h.shutdown().await.unwrap();
}

#[tokio::test]
async fn stored_runs_are_listed_and_their_reports_served() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("dash-store-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let db = dir.join("results.db");
    let store = fleetbench_store::Store::open(&db).unwrap();
    let id = store
        .create_run(&RunMeta {
            id: 0,
            tool_version: "0.1.0".into(),
            command_line: "fleetbench run".into(),
            host: "h".into(),
            backend_url: "http://127.0.0.1:9/v1".into(),
            model: "<script>alert(1)</script>".into(),
            api: "chat".into(),
            workload: "w".into(),
            schedule: "closed loop, concurrency 1".into(),
            started_at: "2026-11-25T10:00:00Z".into(),
            ended_at: None,
            status: RunStatus::Completed,
            config: serde_json::json!({"concurrency": 1}),
            pid: None,
            group: None,
        })
        .unwrap();
    let mut c = cfg("127.0.0.1:0");
    c.db = Some(db.into());
    let h = serve(c, LiveBus::new()).await.unwrap();
    let base = local(h.local_addr());
    let runs: serde_json::Value =
        serde_json::from_str(&client().get(format!("{base}/api/runs")).send().await.unwrap().text().await.unwrap())
            .unwrap();
    assert_eq!(runs["runs"][0]["id"], id);
    assert_eq!(runs["runs"][0]["model"], "<script>alert(1)</script>");
    let r = client().get(format!("{base}/runs/{id}/report")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-security-policy"].to_str().unwrap().contains("script-src 'self'"));
    let html = r.text().await.unwrap();
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;") && !html.contains("<script>"));
    assert_eq!(client().get(format!("{base}/runs/999/report")).send().await.unwrap().status(), 404);
    assert_eq!(client().get(format!("{base}/runs/x/report")).send().await.unwrap().status(), 400);
    assert_eq!(client().get(format!("{base}/report?runs={id}")).send().await.unwrap().status(), 200);
    h.shutdown().await.unwrap();
}
