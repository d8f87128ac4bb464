//! Investigate mode over a stream of episodes: score investigations, gather
//! them per backend (mean with its 95 % interval, per scenario, single-fault
//! and beyond-runbook subsets, false positives, over-remediation, tool calls,
//! tokens, time to diagnosis, dollars per incident and per day), compute the
//! best constant answer (`floor`), and write the operator-visible alerts
//! beside the truth (`aiops generate --mode investigate`).

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::Path;

use fleetbench_core::stats::{mean, mean_ci, percentile};
use fleetbench_core::table::{Align, Table};
use serde::Serialize;
use serde_json::{json, Value};

use super::baselines::investigate_builtin;
use super::cases::labels;
use super::episode_tools::EpisodeTools;
use super::promql_source::PromqlChoice;
use super::promserver::PromBins;
use super::score::{parse_submission, score_submission, InvestigationScore, Submission};
use super::tools::{Budget, Ended, Investigation};
use super::world::World;
use crate::leaderboard::Price;
use crate::scenario::Action;
use crate::AiopsError;

/// Job-interrupting incidents per 1,000 GPU-days of a well-run fleet
/// (docs/AIOPS.md section 8: Llama 3's 0.47, Meta RSC's 0.29 to 0.81).
pub const INCIDENTS_PER_1000_GPU_DAYS: f64 = 0.5;

/// The default budget of one investigation.
pub const DEFAULT_BUDGET: Budget =
    Budget { tool_calls: 40, tokens: 200_000, deadline: std::time::Duration::from_secs(600) };

/// One scored investigation.
#[derive(Debug, Clone, Serialize)]
pub struct EpisodeOutcome {
    pub episode_id: String,
    pub scenario: String,
    pub beyond_runbook: bool,
    pub fault: bool,
    pub score: InvestigationScore,
    pub tool_calls: u32,
    pub tool_errors: u32,
    pub tokens: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// From the alert to the submission, seconds.
    pub wall_s: f64,
    pub ended: Ended,
    pub submitted: Option<Value>,
    pub transcript: Vec<Value>,
}

/// Scores an investigation of `world` (any investigator's).
pub fn score_investigation(world: &World, inv: &Investigation) -> EpisodeOutcome {
    let sub: Option<Submission> = match inv.ended {
        Ended::Submitted => inv.submitted.as_ref().and_then(|v| parse_submission(v).ok()),
        _ => None,
    };
    EpisodeOutcome {
        episode_id: world.id.clone(),
        scenario: world.case.key(),
        beyond_runbook: world.case.beyond_runbook(),
        fault: world.case.is_fault(),
        score: score_submission(world, sub.as_ref()),
        tool_calls: inv.tool_calls,
        tool_errors: inv.tool_errors,
        tokens: inv.input_tokens + inv.output_tokens,
        input_tokens: inv.input_tokens,
        output_tokens: inv.output_tokens,
        wall_s: inv.wall_s,
        ended: inv.ended.clone(),
        submitted: inv.submitted.clone(),
        transcript: inv.transcript.clone(),
    }
}

/// One scenario's row.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioScore {
    pub n: usize,
    pub mean_score: f64,
}

/// One backend's leaderboard row (`--json-out` `backends[]`).
#[derive(Debug, Clone, Serialize)]
pub struct Board {
    pub name: String,
    pub n: usize,
    pub mean_score: f64,
    pub ci95: [f64; 2],
    pub per_scenario: BTreeMap<String, ScenarioScore>,
    pub beyond_runbook_score: f64,
    pub single_fault_score: f64,
    pub false_positive_rate: f64,
    pub over_remediation_rate: f64,
    pub unanswered_rate: f64,
    pub tool_calls_p50: f64,
    pub tokens_p50: f64,
    pub ttd_p50_s: f64,
    pub ttd_p90_s: f64,
    pub usd_per_incident: Option<f64>,
    pub usd_per_day: Option<f64>,
}

fn mean0(v: &[f64]) -> f64 {
    mean(v).unwrap_or(0.0)
}

/// Gathers a backend's outcomes; `pages_per_day` prices a day of pages.
pub fn board(name: &str, outs: &[EpisodeOutcome], price: Option<Price>, pages_per_day: f64) -> Board {
    let totals: Vec<f64> = outs.iter().map(|o| o.score.total).collect();
    let ci95 = mean_ci(&totals).map_or([0.0, 0.0], |i| [i.lo, i.hi]);
    Board { ci95, ..board_figures(name, outs, price, pages_per_day) }
}

/// [`board`] without the bootstrap interval (`ci95` is `[0, 0]`): cheap
/// enough to recompute after every outcome (the live dashboard).
pub fn board_figures(name: &str, outs: &[EpisodeOutcome], price: Option<Price>, pages_per_day: f64) -> Board {
    let totals: Vec<f64> = outs.iter().map(|o| o.score.total).collect();
    let subset = |f: &dyn Fn(&EpisodeOutcome) -> bool| -> Vec<f64> {
        outs.iter().filter(|o| f(o)).map(|o| o.score.total).collect()
    };
    let mut per: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for o in outs {
        per.entry(o.scenario.clone()).or_default().push(o.score.total);
    }
    let negatives = outs.iter().filter(|o| !o.fault).count().max(1) as f64;
    let share =
        |f: &dyn Fn(&EpisodeOutcome) -> bool| outs.iter().filter(|o| f(o)).count() as f64 / outs.len().max(1) as f64;
    let p50 = |v: Vec<f64>| percentile(&v, 50.0).unwrap_or(0.0);
    let ttd: Vec<f64> = outs.iter().filter(|o| o.ended == Ended::Submitted).map(|o| o.wall_s).collect();
    let usd = price.map(|p| {
        let per_ep: Vec<f64> = outs
            .iter()
            .map(|o| (o.input_tokens as f64 * p.input_per_mtok + o.output_tokens as f64 * p.output_per_mtok) / 1e6)
            .collect();
        mean0(&per_ep)
    });
    Board {
        name: name.to_string(),
        n: outs.len(),
        mean_score: mean0(&totals),
        ci95: [0.0, 0.0],
        per_scenario: per.into_iter().map(|(k, v)| (k, ScenarioScore { n: v.len(), mean_score: mean0(&v) })).collect(),
        beyond_runbook_score: mean0(&subset(&|o| o.beyond_runbook)),
        single_fault_score: mean0(&subset(&|o| o.fault && !o.beyond_runbook)),
        false_positive_rate: outs.iter().filter(|o| o.score.false_positive).count() as f64 / negatives,
        over_remediation_rate: share(&|o| o.score.over_remediation),
        unanswered_rate: share(&|o| o.score.unanswered),
        tool_calls_p50: p50(outs.iter().map(|o| f64::from(o.tool_calls)).collect()),
        tokens_p50: p50(outs.iter().map(|o| o.tokens as f64).collect()),
        ttd_p50_s: percentile(&ttd, 50.0).unwrap_or(0.0),
        ttd_p90_s: percentile(&ttd, 90.0).unwrap_or(0.0),
        usd_per_incident: usd,
        usd_per_day: usd.map(|u| u * pages_per_day),
    }
}

/// The best constant answer over a stream: the floor a backend must beat.
#[derive(Debug, Clone, Serialize)]
pub struct Floor {
    pub mean_score: f64,
    pub ci95: [f64; 2],
    pub answer: Value,
}

/// Tries every constant answer (detected or not, every label, every action,
/// no location, onset or evidence) and keeps the best.
pub fn best_constant(worlds: &[World]) -> Floor {
    let mut best: Option<(f64, Value, Vec<f64>)> = None;
    for detected in [false, true] {
        for label in labels() {
            for action in Action::every() {
                let v = json!({"detected": detected, "root_cause": label, "action": action.as_str()});
                let Ok(sub) = parse_submission(&v) else { continue };
                let totals: Vec<f64> = worlds.iter().map(|w| score_submission(w, Some(&sub)).total).collect();
                let m = mean0(&totals);
                if best.as_ref().is_none_or(|b| m > b.0) {
                    best = Some((m, v, totals));
                }
            }
        }
    }
    let (m, answer, totals) = best.unwrap_or((0.0, Value::Null, Vec::new()));
    Floor { mean_score: m, ci95: mean_ci(&totals).map_or([0.0, 0.0], |i| [i.lo, i.hi]), answer }
}

/// An investigate-mode run of the built-in investigators.
#[derive(Debug, Clone, Serialize)]
pub struct InvestigateRun {
    pub episodes: usize,
    pub seed: u64,
    pub mean_gpus: f64,
    pub pages_per_day: f64,
    pub boards: Vec<Board>,
    pub floor: Floor,
    #[serde(skip)]
    pub outcomes: BTreeMap<String, Vec<EpisodeOutcome>>,
}

/// Pages a day of a fleet of `mean_gpus` GPUs at the default incident rate,
/// counting the noise pages in the same proportion as the stream.
pub fn pages_per_day(worlds: &[World]) -> (f64, f64) {
    let n = worlds.len().max(1) as f64;
    let mean_gpus = worlds.iter().map(|w| w.topo.gpu_count() as f64).sum::<f64>() / n;
    let faults = worlds.iter().filter(|w| w.case.is_fault()).count().max(1) as f64 / n;
    (mean_gpus, INCIDENTS_PER_1000_GPU_DAYS * mean_gpus / 1000.0 / faults)
}

/// A stream of investigate-mode episodes being run by any investigators:
/// hand each backend [`Stream::tools`] of an episode, give its
/// [`Investigation`] back with [`Stream::record`], then [`Stream::finish`].
#[derive(Debug)]
pub struct Stream {
    seed: u64,
    worlds: Vec<World>,
    outcomes: BTreeMap<String, Vec<EpisodeOutcome>>,
}

impl Stream {
    /// The first `episodes` episodes of the stream with `seed`.
    pub fn new(episodes: usize, seed: u64) -> Result<Stream, AiopsError> {
        if episodes == 0 {
            return Err(AiopsError::Invalid("--episodes must be at least 1".into()));
        }
        let worlds = (0..episodes).map(|i| World::generate(seed, i)).collect();
        Ok(Stream { seed, worlds, outcomes: BTreeMap::new() })
    }

    pub fn len(&self) -> usize {
        self.worlds.len()
    }

    pub fn is_empty(&self) -> bool {
        self.worlds.is_empty()
    }

    /// The tools of episode `index` (a fresh set: nothing is shared between
    /// investigators).
    pub fn tools(&self, index: usize) -> Option<EpisodeTools> {
        self.worlds.get(index).map(|w| EpisodeTools::new(w.clone()))
    }

    /// The tools of episode `index` with their PromQL on a real Prometheus
    /// serving the episode when `bins` is given (`PromqlChoice::resolve`),
    /// else on the embedded engine; `None` past the stream's end.
    pub fn open_tools(&self, index: usize, bins: Option<&PromBins>) -> Option<Result<EpisodeTools, AiopsError>> {
        let w = self.worlds.get(index)?;
        Some(EpisodeTools::open(w.clone(), bins).map_err(|e| AiopsError::Invalid(format!("episode {index}: {e}"))))
    }

    /// Scores `backend`'s investigation of episode `index` and keeps it.
    pub fn record(&mut self, backend: &str, index: usize, inv: &Investigation) -> Option<&EpisodeOutcome> {
        let w = self.worlds.get(index)?;
        let list = self.outcomes.entry(backend.to_string()).or_default();
        list.push(score_investigation(w, inv));
        list.last()
    }

    /// The leaderboard, one row per backend in `names` order (priced where
    /// `prices` has the backend), and the floor.
    pub fn finish(self, names: &[String], prices: &BTreeMap<String, Price>) -> InvestigateRun {
        let (mean_gpus, ppd) = pages_per_day(&self.worlds);
        let boards = names
            .iter()
            .map(|n| board(n, self.outcomes.get(n).map_or(&[][..], |v| v), prices.get(n).copied(), ppd))
            .collect();
        InvestigateRun {
            episodes: self.worlds.len(),
            seed: self.seed,
            mean_gpus,
            pages_per_day: ppd,
            boards,
            floor: best_constant(&self.worlds),
            outcomes: self.outcomes,
        }
    }
}

/// Runs the built-in investigators `names` over `episodes` episodes, their
/// PromQL on the engine `promql` chooses.
pub fn run_builtins(
    names: &[String],
    episodes: usize,
    seed: u64,
    budget: &Budget,
    promql: PromqlChoice,
) -> Result<InvestigateRun, AiopsError> {
    if let Some(bad) = names.iter().find(|n| !super::baselines::BUILTIN.contains(&n.as_str())) {
        return Err(AiopsError::Invalid(format!(
            "'{bad}' is not a built-in investigator ({}); HTTP backends need the agent loop",
            super::baselines::BUILTIN.join(", ")
        )));
    }
    let bins = promql.resolve().map_err(|e| AiopsError::Invalid(format!("--promql: {e}")))?;
    let mut stream = Stream::new(episodes, seed)?;
    for i in 0..stream.len() {
        let Some(tools) = stream.open_tools(i, bins.as_ref()).transpose()? else { continue };
        for name in names {
            if let Some(inv) = investigate_builtin(name, &tools, budget, seed) {
                stream.record(name, i, &inv);
            }
        }
    }
    Ok(stream.finish(names, &BTreeMap::new()))
}

impl InvestigateRun {
    /// The `--json-out` document.
    pub fn json_doc(&self) -> Value {
        json!({
            "mode": "investigate",
            "episodes": self.episodes,
            "seed": self.seed,
            "mean_fleet_gpus": self.mean_gpus,
            "incidents_per_1000_gpu_days": INCIDENTS_PER_1000_GPU_DAYS,
            "pages_per_day": self.pages_per_day,
            "backends": self.boards,
            "floor": self.floor,
        })
    }

    /// One JSON line per backend and episode: the outcome (score items,
    /// tool calls, tokens, wall time, how it ended, the submission and the
    /// whole transcript) with the backend's name (`--answers-out`).
    pub fn outcomes_jsonl(&self) -> String {
        let mut s = String::new();
        for (name, outs) in &self.outcomes {
            for o in outs {
                let mut v = serde_json::to_value(o).unwrap_or(Value::Null);
                v["backend"] = json!(name);
                s.push_str(&v.to_string());
                s.push('\n');
            }
        }
        s
    }

    /// The leaderboard and the per-scenario table as text.
    pub fn render(&self) -> String {
        let mut t = Table::new([
            "backend",
            "score",
            "95% CI",
            "single",
            "beyond",
            "FP",
            "over-rem",
            "calls p50",
            "tokens p50",
            "ttd p50 s",
            "ttd p90 s",
            "$/incident",
            "$/day",
        ])
        .all_right()
        .align(0, Align::Left);
        let money = |v: Option<f64>| v.map_or("-".to_string(), |u| format!("{u:.4}"));
        for b in &self.boards {
            t.push([
                b.name.clone(),
                format!("{:.1}", b.mean_score),
                format!("[{:.1}, {:.1}]", b.ci95[0], b.ci95[1]),
                format!("{:.1}", b.single_fault_score),
                format!("{:.1}", b.beyond_runbook_score),
                format!("{:.0}%", 100.0 * b.false_positive_rate),
                format!("{:.1}%", 100.0 * b.over_remediation_rate),
                format!("{:.0}", b.tool_calls_p50),
                format!("{:.0}", b.tokens_p50),
                format!("{:.3}", b.ttd_p50_s),
                format!("{:.3}", b.ttd_p90_s),
                money(b.usd_per_incident),
                money(b.usd_per_day),
            ]);
        }
        let f = &self.floor;
        t.push(["floor".to_string(), format!("{:.1}", f.mean_score), format!("[{:.1}, {:.1}]", f.ci95[0], f.ci95[1])]);
        let mut s = format!(
            "investigate mode: {} episodes (seed {}), fleets of {:.0} GPUs on average, {:.2} pages a day at {} incidents per 1,000 GPU-days\n{}",
            self.episodes, self.seed, self.mean_gpus, self.pages_per_day, INCIDENTS_PER_1000_GPU_DAYS, t.text()
        );
        s.push_str(&format!("floor = the best constant answer: {}\n\n", f.answer));
        let mut head = vec!["scenario".to_string(), "n".to_string()];
        head.extend(self.boards.iter().map(|b| b.name.clone()));
        let mut st = Table::new(head).all_right().align(0, Align::Left);
        let keys: std::collections::BTreeSet<&String> =
            self.boards.iter().flat_map(|b| b.per_scenario.keys()).collect();
        for k in keys {
            let n = self.boards.first().and_then(|b| b.per_scenario.get(k)).map_or(0, |r| r.n);
            let mut row = vec![k.clone(), n.to_string()];
            row.extend(
                self.boards
                    .iter()
                    .map(|b| b.per_scenario.get(k).map_or("-".into(), |r| format!("{:.1}", r.mean_score))),
            );
            st.push(row);
        }
        s.push_str(&st.text());
        s
    }
}

/// Writes `alerts.jsonl` (what an operator may see: the alerts and the
/// window, no truth) and `episodes.jsonl` (with the truth) for `episodes`
/// episodes of the stream with `seed`.
pub fn generate(dir: &Path, episodes: usize, seed: u64) -> Result<String, AiopsError> {
    let io = |path: &Path, source: std::io::Error| AiopsError::Io { path: path.display().to_string(), source };
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    let (ap, ep) = (dir.join("alerts.jsonl"), dir.join("episodes.jsonl"));
    let mut alerts = std::io::BufWriter::new(std::fs::File::create(&ap).map_err(|e| io(&ap, e))?);
    let mut eps = std::io::BufWriter::new(std::fs::File::create(&ep).map_err(|e| io(&ep, e))?);
    let mut beyond = 0;
    for i in 0..episodes {
        let w = World::generate(seed, i);
        beyond += usize::from(w.case.beyond_runbook());
        let a = json!({
            "episode_id": w.id,
            "alert": w.alerts.first().map(|a| a.to_json()),
            "alerts": w.alerts.iter().map(|a| a.to_json()).collect::<Vec<_>>(),
            "window": w.window_json(),
            "fleet_gpus": w.topo.gpu_count(),
        });
        let e = json!({
            "mode": "investigate",
            "episode_id": w.id,
            "seed": seed,
            "index": i,
            "scenario": w.case.id(),
            "label": w.case.key(),
            "beyond_runbook": w.case.beyond_runbook(),
            "window": w.window_json(),
            "truth": w.truth_json(),
        });
        writeln!(alerts, "{a}").map_err(|e| io(&ap, e))?;
        writeln!(eps, "{e}").map_err(|e| io(&ep, e))?;
    }
    alerts.flush().map_err(|e| io(&ap, e))?;
    eps.flush().map_err(|e| io(&ep, e))?;
    Ok(format!(
        "wrote {episodes} investigate-mode episodes ({beyond} beyond a single-fault runbook) to {} and {}",
        ap.display(),
        ep.display()
    ))
}

/// Scores answers produced elsewhere (`aiops score`) against an
/// investigate-mode `episodes.jsonl`: each answer line is `{"episode_id",
/// "answer"}` where the answer is the `submit_diagnosis` object (or its JSON
/// text), optionally with the `transcript`. `None` when the episodes file is
/// not investigate mode.
pub fn score_answers(episodes: &str, answers: &str) -> Result<Option<(Board, Vec<EpisodeOutcome>)>, AiopsError> {
    let mut worlds: BTreeMap<String, World> = BTreeMap::new();
    for (i, line) in episodes.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let bad = |why: &str| AiopsError::EpisodeLine { line: i + 1, why: why.to_string() };
        let v: Value = serde_json::from_str(line).map_err(|e| bad(&e.to_string()))?;
        if v["mode"] != "investigate" {
            return Ok(None);
        }
        let (seed, index) =
            (v["seed"].as_u64().ok_or_else(|| bad("no seed"))?, v["index"].as_u64().ok_or_else(|| bad("no index"))?);
        let w = World::generate(seed, usize::try_from(index).map_err(|_| bad("index out of range"))?);
        if v["episode_id"].as_str() != Some(w.id.as_str()) {
            return Err(bad("episode_id does not match its seed and index"));
        }
        worlds.insert(w.id.clone(), w);
    }
    let mut given: BTreeMap<String, (Option<Value>, Vec<Value>)> = BTreeMap::new();
    for (i, line) in answers.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let bad = |why: &str| AiopsError::AnswerLine { line: i + 1, why: why.to_string() };
        let v: Value = serde_json::from_str(line).map_err(|e| bad(&e.to_string()))?;
        let id = v["episode_id"].as_str().ok_or_else(|| bad("no episode_id"))?.to_string();
        if !worlds.contains_key(&id) {
            return Err(bad(&format!(
                "episode '{}' is not in the episodes file",
                id.chars().take(40).collect::<String>()
            )));
        }
        let answer = match &v["answer"] {
            Value::String(s) => serde_json::from_str(s.trim()).ok(),
            Value::Object(_) => Some(v["answer"].clone()),
            _ => None,
        };
        let transcript = v["transcript"].as_array().cloned().unwrap_or_default();
        given.insert(id, (answer, transcript));
    }
    let outs: Vec<EpisodeOutcome> = worlds
        .values()
        .map(|w| {
            let (answer, transcript) = given.remove(&w.id).unwrap_or((None, Vec::new()));
            let inv = Investigation {
                ended: if answer.is_some() { Ended::Submitted } else { Ended::NoSubmission },
                submitted: answer,
                transcript,
                tool_calls: 0,
                tool_errors: 0,
                input_tokens: 0,
                output_tokens: 0,
                wall_s: 0.0,
            };
            score_investigation(w, &inv)
        })
        .collect();
    let all: Vec<World> = worlds.into_values().collect();
    Ok(Some((board("answers", &outs, None, pages_per_day(&all).1), outs)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_priced_backend_through_the_stream() {
        let mut stream = Stream::new(20, 5).expect("stream");
        for i in 0..stream.len() {
            let tools = stream.tools(i).expect("tools");
            let answer = super::super::score::truth_submission(tools.world());
            let inv = Investigation {
                submitted: Some(answer),
                transcript: vec![json!({"role": "assistant"})],
                tool_calls: 4 + i as u32 % 3,
                tool_errors: 0,
                input_tokens: 1000,
                output_tokens: 500,
                wall_s: 10.0 + i as f64,
                // Every fifth one runs out of tool calls: unanswered, 0.
                ended: if i % 5 == 4 { Ended::OverToolCalls } else { Ended::Submitted },
            };
            let o = stream.record("model", i, &inv).expect("recorded");
            assert_eq!(o.score.unanswered, i % 5 == 4);
        }
        let prices = BTreeMap::from([("model".to_string(), Price { input_per_mtok: 1.0, output_per_mtok: 2.0 })]);
        let run = stream.finish(&["model".to_string()], &prices);
        let b = &run.boards[0];
        assert!((b.mean_score - 80.0).abs() < 1e-9, "{}", b.mean_score);
        assert!((b.unanswered_rate - 0.2).abs() < 1e-9);
        assert_eq!(b.tokens_p50, 1500.0);
        assert_eq!(b.tool_calls_p50, 5.0);
        assert!((b.usd_per_incident.unwrap_or(0.0) - 0.002).abs() < 1e-12);
        assert!((b.usd_per_day.unwrap_or(0.0) - 0.002 * run.pages_per_day).abs() < 1e-12);
        // Submitted ones only: 10..=28 without 14, 19, 24.
        assert!(b.ttd_p50_s > 10.0 && b.ttd_p90_s <= 28.0 && b.ttd_p90_s > b.ttd_p50_s);
        assert!(run.json_doc()["backends"][0]["ci95"].is_array());
    }

    #[test]
    fn answers_files_score_like_the_tools() {
        let dir = std::env::temp_dir().join(format!("fleetbench-inv-gen-{}", std::process::id()));
        generate(&dir, 12, 3).expect("writes");
        let episodes = std::fs::read_to_string(dir.join("episodes.jsonl")).expect("episodes");
        let alerts = std::fs::read_to_string(dir.join("alerts.jsonl")).expect("alerts");
        assert_eq!(alerts.lines().count(), 12);
        assert!(!alerts.contains("truth") && !alerts.contains("root_cause"), "alerts carry no truth");
        let first: Value = serde_json::from_str(alerts.lines().next().unwrap_or("{}")).expect("json");
        assert!(first["alert"]["labels"]["alertname"].is_string() && first["alert"]["startsAt"].is_string());
        // Oracle answers, one with a transcript, one missing: 11 × 100 + 0.
        let answers: String = (0..11)
            .map(|i| {
                let w = World::generate(3, i);
                let a = super::super::score::truth_submission(&w);
                format!("{}\n", json!({"episode_id": w.id, "answer": a.to_string(), "transcript": [{"role": "x"}]}))
            })
            .collect();
        let (b, outs) = score_answers(&episodes, &answers).expect("scores").expect("investigate mode");
        assert_eq!(b.n, 12);
        assert!((b.mean_score - 1100.0 / 12.0).abs() < 1e-9, "{}", b.mean_score);
        assert_eq!(outs[0].transcript.len(), 1);
        assert!(score_answers("{\"episode_id\": \"ep00000\"}", "").expect("triage").is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
