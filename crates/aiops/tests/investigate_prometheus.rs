//! The PromQL tools answer the same whichever engine runs them: two
//! generated episodes (one with NVIDIA and AMD racks, serving and training;
//! one with a GPU that falls off the bus or an exporter that dies, so series
//! have gaps) are backfilled into a real Prometheus, and every query of
//! `data/investigate_promql.txt` goes through the tools with the embedded
//! engine and with Prometheus: the same series with the same values (1e-9
//! relative), the same refusals, and the same text wherever the values are
//! bit-identical. The `rules` investigator submits the same diagnosis on both.

use std::time::Instant;

use fleetbench_aiops::investigate::baselines::investigate_builtin;
use fleetbench_aiops::investigate::bench::DEFAULT_BUDGET;
use fleetbench_aiops::investigate::promserver::PromBins;
use fleetbench_aiops::investigate::world::{Vendor, Work, World};
use fleetbench_aiops::investigate::{EpisodeTools, ToolReply};
use serde_json::{json, Value};

struct Case {
    line: usize,
    tool: &'static str,
    args: Value,
    refused: bool,
}

fn cases() -> Vec<Case> {
    let mut out = Vec::new();
    for (i, line) in include_str!("data/investigate_promql.txt").lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (head, query) = line.split_once(" | ").unwrap_or_else(|| panic!("line {}: no ' | '", i + 1));
        let f: Vec<&str> = head.split_whitespace().collect();
        let (tool, args, refused) = match f.as_slice() {
            ["instant", t] => ("promql_query", json!({"query": query, "time": t}), false),
            ["error", t] => ("promql_query", json!({"query": query, "time": t}), true),
            ["range", s, e, step] => {
                let step: u64 = step.parse().unwrap_or_else(|_| panic!("line {}: bad step", i + 1));
                ("promql_range", json!({"query": query, "start": s, "end": e, "step": step}), false)
            }
            _ => panic!("line {}: unknown head {head:?}", i + 1),
        };
        out.push(Case { line: i + 1, tool, args, refused });
    }
    out
}

/// The first small episode of seed 5 that `pick` accepts.
fn episode(pick: impl Fn(&World) -> bool) -> World {
    (0..2_000)
        .map(|i| World::generate(5, i))
        .find(|w| w.topo.gpu_count() <= 128 && pick(w))
        .expect("seed 5 has such an episode")
}

fn close(a: f64, b: f64) -> bool {
    (a.is_nan() && b.is_nan()) || a == b || (a - b).abs() <= 1e-9 * a.abs().max(b.abs())
}

fn num(v: &Value) -> f64 {
    match v.as_str() {
        Some("+Inf") => f64::INFINITY,
        Some("-Inf") => f64::NEG_INFINITY,
        Some(s) => s.parse().unwrap_or(f64::NAN),
        None => v.as_f64().unwrap_or(f64::NAN),
    }
}

/// `(labels, [(t, v)])` of a JSON answer, whatever its type.
fn series(data: &Value) -> Vec<(String, Vec<(f64, f64)>)> {
    let pts =
        |p: &Value| p.as_array().map(|a| a.iter().map(|x| (num(&x[0]), num(&x[1]))).collect()).unwrap_or_default();
    match data["resultType"].as_str() {
        Some("scalar") => vec![(String::new(), pts(&json!([data["result"]])))],
        _ => data["result"]
            .as_array()
            .map(|r| {
                r.iter()
                    .map(|s| {
                        let p = if s.get("value").is_some() { pts(&json!([s["value"]])) } else { pts(&s["values"]) };
                        (s["metric"].to_string(), p)
                    })
                    .collect()
            })
            .unwrap_or_default(),
    }
}

fn differs(a: &Value, b: &Value) -> Option<String> {
    if a["resultType"] != b["resultType"] {
        return Some(format!("resultType {} vs {}", a["resultType"], b["resultType"]));
    }
    let (sa, sb) = (series(a), series(b));
    let names = |s: &[(String, Vec<(f64, f64)>)]| s.iter().map(|x| x.0.clone()).collect::<Vec<_>>();
    if names(&sa) != names(&sb) {
        return Some(format!("series {:?} vs {:?}", names(&sa), names(&sb)));
    }
    for ((m, pa), (_, pb)) in sa.iter().zip(&sb) {
        if pa.len() != pb.len() || !pa.iter().zip(pb).all(|(x, y)| x.0 == y.0 && close(x.1, y.1)) {
            return Some(format!("{m}: {pa:?} vs {pb:?}"));
        }
    }
    None
}

fn reply(r: ToolReply) -> Result<String, String> {
    match r {
        ToolReply::Output(s) => Ok(s),
        ToolReply::Error(e) => Err(e),
        ToolReply::Submitted(_) => Err("a submission".into()),
    }
}

#[test]
#[ignore = "needs Prometheus (prometheus and promtool): scripts/test.sh installs it"]
fn investigate_promql_agrees_with_prometheus() {
    let bins = PromBins::find().unwrap_or_else(|e| panic!("{e}"));
    let cases = cases();
    assert!(cases.len() >= 50, "only {} queries", cases.len());
    let mixed = episode(|w| {
        let vendors = |v: Vendor| (0..w.topo.nodes.len()).any(|n| w.topo.kind(n).vendor == v);
        let serving = w.topo.nodes.iter().any(|n| matches!(n.work, Work::Serving { .. }));
        let training = w.topo.nodes.iter().any(|n| matches!(n.work, Work::Training { .. }));
        vendors(Vendor::Nvidia) && vendors(Vendor::Amd) && serving && training && w.case.is_fault()
    });
    let gaps = episode(|w| matches!(w.case.id(), "I04" | "I21"));
    let (mut agreed, mut nonempty, mut same_text, mut failures) = (0, 0, 0, Vec::new());
    for world in [mixed, gaps] {
        let id = format!("{} ({}, {} GPUs)", world.id, world.case.key(), world.topo.gpu_count());
        let embedded = EpisodeTools::new(world.clone());
        let started = Instant::now();
        let prom = EpisodeTools::open(world, Some(&bins)).unwrap_or_else(|e| panic!("{id}: {e}"));
        eprintln!("{id}: exported, backfilled and served in {:.1} s", started.elapsed().as_secs_f64());
        assert!(prom.prometheus_url().is_some_and(|u| u.starts_with("http://127.0.0.1:")));
        let rules = |t: &EpisodeTools| investigate_builtin("rules", t, &DEFAULT_BUDGET, 5).map(|i| i.submitted);
        let on_prometheus = rules(&prom);
        assert!(on_prometheus.as_ref().is_some_and(Option::is_some), "{id}: rules submitted nothing");
        assert_eq!(rules(&embedded), on_prometheus, "{id}: rules decides differently on Prometheus");
        for c in &cases {
            let mut json_args = c.args.clone();
            json_args["format"] = json!("json");
            let (a, b) = (reply(embedded.call_now(c.tool, &json_args)), reply(prom.call_now(c.tool, &json_args)));
            let problem = match (&a, &b) {
                (Ok(a), Ok(b)) if !c.refused => {
                    let (a, b): (Value, Value) = (
                        serde_json::from_str(a).unwrap_or_else(|e| panic!("{a}: {e}")),
                        serde_json::from_str(b).unwrap_or_else(|e| panic!("{b}: {e}")),
                    );
                    if series(&a).iter().any(|s| !s.1.is_empty()) {
                        nonempty += 1;
                    }
                    let d = differs(&a, &b);
                    // Bit-identical values must read the same as text.
                    if d.is_none() && a == b {
                        let (ta, tb) =
                            (reply(embedded.call_now(c.tool, &c.args)), reply(prom.call_now(c.tool, &c.args)));
                        if ta == tb {
                            same_text += 1;
                        } else {
                            failures.push(format!("{id} line {}: text {ta:?} vs {tb:?}", c.line));
                        }
                    }
                    d
                }
                (Err(x), Err(y)) if c.refused => (x != y).then(|| format!("refusals {x:?} vs {y:?}")),
                _ => Some(format!("embedded {a:?} vs Prometheus {b:?} (refusal expected: {})", c.refused)),
            };
            match problem {
                Some(p) => failures.push(format!("{id} line {} `{}`: {p}", c.line, c.args["query"])),
                None => agreed += 1,
            }
        }
    }
    assert!(failures.is_empty(), "{} disagreements:\n{}", failures.len(), failures.join("\n"));
    let total = 2 * cases.len();
    assert_eq!(agreed, total);
    // Most answers hold data (the query set is about these episodes), and
    // nearly all are bit-identical, text included.
    assert!(nonempty >= total * 3 / 5, "only {nonempty} of {total} answers hold data");
    assert!(same_text >= total / 2, "only {same_text} of {total} answers read the same as text");
    eprintln!("{agreed} of {total} answers agree; {nonempty} hold data; {same_text} identical as text");
}
