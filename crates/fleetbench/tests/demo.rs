//! `fleetbench demo --quick`: the whole tool offline. It must finish on its
//! own, store a run per setup and level plus the arena run, print the
//! comparison with its explanations, and write a report that holds them.

use std::process::Command;

use fleetbench_store::records::arena::ArenaBackend;

#[test]
fn quick_demo_stores_runs_and_writes_the_report() {
    let dir = std::env::temp_dir().join(format!("fb-demo-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("results.db");
    let out = Command::new(env!("CARGO_BIN_EXE_fleetbench"))
        .env_remove("OPENAI_API_KEY")
        .args(["--quiet", "--db"])
        .arg(&db)
        .args(["demo", "--quick", "--out"])
        .arg(dir.join("report"))
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{text}");
    assert!(!text.contains("warning:"), "{text}");

    // Three setups × levels 1, 4, 16, the agent-session sweep at 1, 2, 4, 8, and the arena.
    let store = fleetbench_store::Store::open(&db).unwrap();
    let runs = store.list_runs(100).unwrap();
    assert_eq!(runs.len(), 14, "{text}");
    let sweeps: Vec<_> =
        runs.iter().filter(|r| r.meta.group.as_deref().is_some_and(|g| g.starts_with("demo-"))).collect();
    assert_eq!(sweeps.len(), 13);
    for r in &sweeps {
        assert_eq!(r.meta.status.as_str(), "completed");
        let records = store.records(r.meta.id).unwrap();
        assert!(!records.is_empty() && records.iter().all(|x| x.ok()), "run {}", r.meta.id);
        assert_eq!(store.artifacts(r.meta.id, "sweep_level").unwrap().len(), 1);
    }
    let arena = runs.iter().find(|r| r.meta.workload.starts_with("aiops-arena")).expect("the arena run");
    let boards = store.get_all::<ArenaBackend>(arena.meta.id).unwrap();
    assert_eq!(boards.len(), 4, "rules, always-healthy, random and the simulated server");
    let score = |name: &str| boards.iter().find(|(n, _)| n == name).map(|(_, b)| b.score);
    // The simulated server answers with the runbook's diagnosis over HTTP.
    assert_eq!(score("rules"), score("sim-rtx3090-moe"));

    // The comparison, with the MoE's single stream far ahead of the dense model's.
    let row = |needle: &str| text.lines().find(|l| l.starts_with("| ") && l.contains(needle)).unwrap().to_string();
    let single = |line: String| line.split('|').nth(2).unwrap().trim().parse::<f64>().unwrap();
    let (moe, dense) = (single(row("(MoE)")), single(row("(dense)")));
    assert!(moe > 3.0 * dense, "MoE {moe} vs dense {dense} tok/s single stream");
    assert!(text.contains("why: "), "{text}");
    // The agents' sessions outgrow the KV cache: the prefix cache is what bends their curve.
    let sessions = text.split_once("agent sessions").unwrap().1;
    assert!(sessions.contains("why: beyond") && sessions.contains("the prefix cache no longer holds"), "{text}");
    assert!(sessions.contains("sessions: completion time"), "{text}");

    let html = std::fs::read_to_string(dir.join("report/index.html")).unwrap();
    assert!(html.contains("chart-throughput") || html.contains("<svg"), "no charts");
    assert!(html.contains("sim-rtx3090-moe"), "the arena leaderboard is in the report");
    let md = std::fs::read_to_string(dir.join("report/report.md")).unwrap();
    assert!(md.contains("## Cost") && md.contains("## Energy"), "cost and modelled energy per setup");
    assert!(md.contains("Energy past the meter"), "the accounting past the meter");
    assert!(
        md.contains(&format!("## Run {}: aiops-arena", arena.meta.id)),
        "the arena run is named, not summarised as empty"
    );
    let show = Command::new(env!("CARGO_BIN_EXE_fleetbench"))
        .arg("--db")
        .arg(&db)
        .args(["runs", "show", &arena.meta.id.to_string()])
        .output()
        .unwrap();
    let show = String::from_utf8_lossy(&show.stdout);
    assert!(show.contains("sim-rtx3090-moe") && show.contains("score"), "{show}");
    assert!(html.contains("chart-cost") && html.contains("chart-energy"));
    assert!(dir.join("report/report.json").is_file());
}
