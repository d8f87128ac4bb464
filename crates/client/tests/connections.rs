//! Connection handling: a streamed response's connection goes back to the
//! pool for the next request, and `Client::preconnect` leaves connections
//! open for a run's first requests.

use std::sync::atomic::Ordering;
use std::time::Duration;

use fleetbench_client::{Client, ClientConfig};
use fleetbench_core::{ApiKind, RequestSpec, RunClock};
use fleetbench_testkit::Script;

fn spec(i: usize) -> RequestSpec {
    fleetbench_testkit::text_request(format!("r{i}"), "hello")
}

fn quick() -> Script {
    Script { ttft: Duration::from_millis(1), itl: Duration::from_millis(1), tokens: 3, ..Default::default() }
}

#[tokio::test]
async fn requests_one_after_another_share_one_connection() {
    let server = fleetbench_testkit::start(quick()).await;
    let client = Client::new(ClientConfig::new(server.base_url(), ApiKind::Chat, "m")).unwrap();
    let clock = RunClock::start();
    for i in 0..5 {
        let rec = client.send(&spec(i), &clock, clock.now()).await;
        assert!(rec.ok(), "{:?}", rec.error);
        assert_eq!(rec.token_events, 3);
    }
    assert_eq!(server.counters.requests.load(Ordering::SeqCst), 5);
    // The body's end after [DONE] was read, so no request needed a new connection.
    assert_eq!(server.counters.connections.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn preconnected_requests_open_no_connection_of_their_own() {
    let server = fleetbench_testkit::start(quick()).await;
    let client = Client::new(ClientConfig::new(server.base_url(), ApiKind::Chat, "m")).unwrap();
    let n = 120;
    assert_eq!(client.preconnect(n, Duration::from_secs(10)).await, n);
    // A request that found another's connection idle first lets its own
    // connection finish in the background: all of them are opened.
    let connections = || server.counters.connections.load(Ordering::SeqCst);
    let all_open = async || connections() == n as u64;
    fleetbench_testkit::wait_until(Duration::from_secs(10), Duration::from_millis(5), all_open).await.unwrap();
    assert_eq!(server.counters.requests.load(Ordering::SeqCst), 0, "GET /models is not a chat request");
    let clock = RunClock::start();
    let sends = (0..n).map(|i| {
        let client = client.clone();
        async move { client.send(&spec(i), &clock, 0.0).await }
    });
    let recs = futures_util::future::join_all(sends).await;
    assert!(recs.iter().all(|r| r.ok()));
    assert_eq!(connections(), n as u64);
}
