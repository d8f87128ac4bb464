//! The trace importers read the committed fixtures (written for these tests
//! in each format's published layout).

use std::path::PathBuf;

use fleetbench_workload::{ArrivalSpec, Trace, TraceFormat, Traffic, WorkloadSpec};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

#[test]
fn mooncake_jsonl_reads_milliseconds_and_block_prefixes() {
    let t = Trace::load(&fixture("mooncake.jsonl"), TraceFormat::Auto).unwrap();
    assert_eq!(t.format, TraceFormat::Mooncake);
    let ts: Vec<f64> = t.entries.iter().map(|e| e.timestamp).collect();
    assert_eq!(ts, vec![0.0, 0.25, 1.0, 1.6]);
    assert_eq!((t.entries[1].input_tokens, t.entries[1].output_tokens), (700, 40));
    // Requests opening with block 0 share a prefix group of one block.
    assert_eq!(t.entries[0].prefix_group, t.entries[3].prefix_group);
    assert_ne!(t.entries[0].prefix_group, t.entries[2].prefix_group);
    assert_eq!(t.entries[0].prefix_tokens, Some(512));
    assert_eq!(t.entries[2].prefix_tokens, Some(300));
}

#[test]
fn burstgpt_csv_reads_its_columns() {
    let t = Trace::load(&fixture("burstgpt.csv"), TraceFormat::Auto).unwrap();
    assert_eq!(t.format, TraceFormat::BurstGpt);
    let got: Vec<(f64, u32, u32)> = t.entries.iter().map(|e| (e.timestamp, e.input_tokens, e.output_tokens)).collect();
    assert_eq!(got, vec![(0.0, 472, 18), (2.0, 1087, 230), (2.0, 91, 441), (7.0, 2210, 75)]);
}

#[test]
fn azure_csv_reads_datetimes() {
    let t = Trace::load(&fixture("azure.csv"), TraceFormat::Auto).unwrap();
    assert_eq!(t.format, TraceFormat::Azure);
    assert_eq!(t.entries.len(), 4);
    assert!((t.entries[1].timestamp - 4.314579).abs() < 1e-6, "{}", t.entries[1].timestamp);
    assert!((t.entries[3].timestamp - 13.31941).abs() < 1e-6);
    assert_eq!((t.entries[2].input_tokens, t.entries[2].output_tokens), (879, 31));
}

#[test]
fn fleetbench_jsonl_carries_conversations_and_drives_the_traffic() {
    let path = fixture("trace.jsonl");
    let spec = ArrivalSpec::parse(&format!("trace:{}", path.display())).unwrap();
    let traffic = Traffic::resolve(&WorkloadSpec::parse("synthetic").unwrap(), false, Some(&spec), 1).unwrap();
    let plan = traffic.arrivals.as_ref().unwrap();
    let times: Vec<f64> = plan.instants().map(|i| i.t).collect();
    assert_eq!(times, vec![0.0, 0.4, 1.1, 2.0]);
    let sp = Default::default();
    let r = traffic.workload.request(3, &sp);
    assert_eq!(r.context.conversation.as_deref(), Some("alice"));
    assert_eq!(r.context.turn, Some(1));
    assert_eq!(r.context.context_tokens, Some(630));
    assert_eq!(r.sampling.max_tokens, Some(20));
    // Both support requests open with the same system prompt, byte for byte.
    let a = traffic.workload.request(0, &sp).prompt.as_messages();
    let b = traffic.workload.request(1, &sp).prompt.as_messages();
    assert_eq!(a[0], b[0]);
    assert_ne!(a[1], b[1]);
    // A trace refuses an explicit --workload rather than ignore it.
    assert!(Traffic::resolve(&WorkloadSpec::parse("synthetic").unwrap(), true, Some(&spec), 1).is_err());
}
