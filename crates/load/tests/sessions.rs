//! Agent sessions against a scripted server whose answers and timing are
//! known exactly: every turn carries the whole history with the model's own
//! answers, senders think between turns, sessions are taken whole, and the
//! session figures follow from the records.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use fleetbench_client::{Client, ClientConfig};
use fleetbench_core::{ApiKind, RequestRecord, RunClock, RunMetrics, SamplingParams, Slo};
use fleetbench_load::{run, Arrival, RunPlan, Schedule, StopCondition, Workload, WorkloadSpec};
use fleetbench_testkit as common;
use fleetbench_testkit::Script;
use serde_json::Value;
use tokio::sync::{mpsc, watch};

/// The scripted answer: four tokens `t0 `..`t3 `, first after 30 ms, then one every 5 ms.
const ANSWER: &str = "t0 t1 t2 t3 ";
const TURN_S: f64 = 0.030 + 3.0 * 0.005;
const THINK_S: f64 = 0.1;

fn script() -> Script {
    Script {
        ttft: Duration::from_millis(30),
        itl: Duration::from_millis(5),
        tokens: 4,
        record_bodies: true,
        ..Default::default()
    }
}

const WORKLOAD: &str = "agent-session:turns=2..4,system=60,tool-output=10..20,output=4,think=100ms";

async fn drive(url: &str, schedule: Schedule, requests: u64, warmup: u64, seed: u64) -> Vec<RequestRecord> {
    drive_workload(url, WORKLOAD, schedule, requests, warmup, seed).await
}

async fn drive_workload(
    url: &str,
    workload: &str,
    schedule: Schedule,
    requests: u64,
    warmup: u64,
    seed: u64,
) -> Vec<RequestRecord> {
    let client = Client::new(ClientConfig::new(url, ApiKind::Chat, "test-model")).unwrap();
    let workload: Arc<dyn Workload> = Arc::from(WorkloadSpec::parse(workload).unwrap().build(seed).unwrap());
    let plan = RunPlan {
        schedule,
        stop: StopCondition { requests: Some(requests), duration: None },
        warmup,
        sampling: SamplingParams::default(),
        seed,
        arrivals: None,
        ramp: None,
        shard: None,
    };
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (_stop_tx, stop_rx) = watch::channel(false);
    let report = run(&plan, &client, workload, RunClock::start(), tx, stop_rx).await;
    let mut out = Vec::new();
    while let Ok(r) = rx.try_recv() {
        out.push(r);
    }
    assert_eq!(report.finished, out.len() as u64);
    out.sort_by_key(|r| r.index);
    out
}

/// Each body's messages as (role, content).
fn messages(body: &str) -> Vec<(String, String)> {
    let v: Value = serde_json::from_str(body).unwrap();
    v["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["role"].as_str().unwrap().to_string(), m["content"].as_str().unwrap().to_string()))
        .collect()
}

fn by_session(recs: &[RequestRecord]) -> BTreeMap<String, Vec<&RequestRecord>> {
    let mut m: BTreeMap<String, Vec<&RequestRecord>> = BTreeMap::new();
    for r in recs {
        m.entry(r.context.conversation.clone().unwrap()).or_default().push(r);
    }
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_loop_sessions_carry_the_history_and_think_between_turns() {
    let s = common::start(script()).await;
    let recs = drive(&s.base_url(), Schedule::Closed { concurrency: 2 }, 12, 0, 5).await;
    // Sessions are taken whole: at most 12 requests, and every session complete.
    assert!((12 - 3..=12).contains(&recs.len()), "{}", recs.len());
    let sessions = by_session(&recs);
    for (id, turns) in &sessions {
        let planned = turns[0].context.session_turns.unwrap();
        assert_eq!(turns.len() as u32, planned, "{id}");
        for (k, r) in turns.iter().enumerate() {
            assert!(r.ok(), "{:?}", r.error);
            assert_eq!(r.context.turn, Some(k as u32));
            assert_eq!(r.index, turns[0].index + k as u64, "a session's turns have consecutive indexes");
            assert_eq!(r.output_text, None, "texts are dropped unless the run keeps them");
            if k > 0 {
                let prev = turns[k - 1];
                // Turn k is scheduled exactly one think time after turn k-1 ended, from the same agent.
                assert!((r.t_sched - prev.t_end - THINK_S).abs() < 1e-9, "{} {}", r.t_sched, prev.t_end);
                assert!(r.t_send >= r.t_sched - 1e-6 && r.t_send - r.t_sched < 0.03);
                assert_eq!(r.agent, prev.agent);
                assert!(r.context.context_tokens > prev.context.context_tokens);
            }
        }
    }
    // What the server got: turn k of a session sends the system prompt, k earlier turns
    // each followed by the model's own answer, and its new message.
    let bodies = s.counters.bodies.lock().unwrap().clone();
    assert_eq!(bodies.len(), recs.len());
    let mut seen: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for b in &bodies {
        let m = messages(b);
        assert_eq!(m[0].0, "system");
        let turn = (m.len() - 2) / 2;
        assert_eq!(m.len(), 2 + 2 * turn);
        for (i, (role, content)) in m.iter().enumerate().skip(1) {
            if i % 2 == 1 {
                assert_eq!(role, "user");
            } else {
                assert_eq!((role.as_str(), content.as_str()), ("assistant", ANSWER));
            }
        }
        seen.entry(m[1].1.clone()).or_default().push(turn);
    }
    assert_eq!(seen.len(), sessions.len());
    for turns in seen.values_mut() {
        turns.sort();
        assert_eq!(*turns, (0..turns.len()).collect::<Vec<_>>());
    }
    // Never more than the two agents' requests on the server at once.
    assert!(s.counters.max_in_flight.load(std::sync::atomic::Ordering::SeqCst) <= 2);

    // The session figures follow from the script: n turns of 45 ms and n-1 think times.
    let m = RunMetrics::compute(&recs, &Slo::default(), Some(2));
    let f = m.sessions.as_ref().unwrap();
    assert_eq!((f.started, f.completed, f.turns), (sessions.len() as u64, sessions.len() as u64, recs.len() as u64));
    let expected: Vec<f64> =
        sessions.values().map(|t| t.len() as f64 * TURN_S + (t.len() - 1) as f64 * THINK_S).collect();
    let want_mean = expected.iter().sum::<f64>() / expected.len() as f64;
    let got = f.mean_completion_s.unwrap();
    assert!(got >= want_mean - 0.005 && got < want_mean + 0.04, "{got} vs {want_mean}");
    assert!((f.sessions_per_hour - f.completed as f64 * 3600.0 / m.duration).abs() < 1e-6);
    assert_eq!(m.request_turns.len(), recs.len());
    assert_eq!(m.request_sessions[0], recs[0].context.conversation.clone().unwrap());

    // The same seed sends the same sessions.
    let again = drive(&s.base_url(), Schedule::Closed { concurrency: 1 }, 12, 0, 5).await;
    let plan = |recs: &[RequestRecord]| -> Vec<(String, usize)> {
        by_session(recs).into_iter().map(|(k, v)| (k, v.len())).collect()
    };
    assert_eq!(plan(&again), plan(&recs));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_loop_sessions_start_at_the_arrivals_and_warm_up_whole_sessions() {
    let s = common::start(script()).await;
    let schedule = Schedule::Open { rate: 5.0, arrival: Arrival::Constant, max_concurrency: None };
    let recs = drive(&s.base_url(), schedule, 8, 1, 9).await;
    let sessions = by_session(&recs);
    let mut starts: Vec<(f64, bool)> = sessions.values().map(|t| (t[0].t_sched, t[0].warmup)).collect();
    starts.sort_by(|a, b| a.0.total_cmp(&b.0));
    // Session i starts at arrival i, 200 ms apart; the first one is the warm-up, whole.
    for (i, (t, _)) in starts.iter().enumerate() {
        assert!((t - starts[0].0 - 0.2 * i as f64).abs() < 1e-6, "{starts:?}");
    }
    assert!(starts[0].1 && starts[1..].iter().all(|s| !s.1));
    for turns in sessions.values() {
        assert!(turns.iter().all(|r| r.warmup == turns[0].warmup && r.agent.is_none()));
        assert_eq!(turns.len() as u32, turns[0].context.session_turns.unwrap());
    }
    let measured = recs.iter().filter(|r| !r.warmup).count();
    assert!((8 - 3..=8).contains(&measured), "{measured}");
    let m = RunMetrics::compute(&recs, &Slo::default(), None);
    assert_eq!(m.sessions.unwrap().completed, sessions.len() as u64 - 1);
}

/// The conversation fixture of the workload crate (four conversations, eight user turns).
fn conversations_fixture() -> String {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../workload/tests/fixtures/sharegpt-small.json");
    p.to_string_lossy().into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conversations_replay_the_dataset_answers_or_the_models_own() {
    let file = conversations_fixture();
    let dataset: Vec<Value> = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let answers: Vec<String> = dataset
        .iter()
        .flat_map(|c| c["conversations"].as_array().unwrap().iter())
        .filter(|m| m["from"] == "gpt")
        .map(|m| m["value"].as_str().unwrap().to_string())
        .collect();
    for (replay, from_dataset) in [("dataset", true), ("model", false)] {
        let s = common::start(script()).await;
        let workload = format!("conversations:{file},replay={replay}");
        let recs = drive_workload(&s.base_url(), &workload, Schedule::Closed { concurrency: 2 }, 8, 0, 1).await;
        // All four conversations, whole: 3 + 2 + 1 + 2 user turns.
        assert_eq!(recs.len(), 8, "{replay}");
        let sessions = by_session(&recs);
        let turns: Vec<(String, usize)> = sessions.iter().map(|(k, v)| (k.clone(), v.len())).collect();
        let want = [("conv-agents-4", 2), ("conv-cache-3", 1), ("conv-deploy-1", 3), ("conv-latency-2", 2)];
        assert_eq!(turns, want.map(|(k, n)| (k.to_string(), n)));
        let m = RunMetrics::compute(&recs, &Slo::default(), Some(2));
        assert_eq!(m.sessions.unwrap().completed, 4);
        for b in s.counters.bodies.lock().unwrap().iter() {
            for (role, content) in messages(b) {
                if role == "assistant" {
                    if from_dataset {
                        assert!(answers.contains(&content), "{content}");
                    } else {
                        assert_eq!(content, ANSWER);
                    }
                }
            }
        }
        // The longest conversation's last turn carried both earlier answers.
        let deepest = s.counters.bodies.lock().unwrap().iter().map(|b| messages(b).len()).max().unwrap();
        assert_eq!(deepest, 1 + 5, "system, then user, answer, user, answer, user");
    }
}
