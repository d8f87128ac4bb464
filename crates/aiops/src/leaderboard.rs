//! Per-backend results: every episode's answer beside its truth and score,
//! and the leaderboard row (mean with 95 % CI, per-item accuracy, per
//! scenario, false positives, over-remediation, unparseable, latency,
//! tokens, cost), and the arena's live tally for the dashboard
//! ([`LiveTally`]).

use std::collections::BTreeMap;

use fleetbench_core::stats::{mean, mean_ci, Interval, Summary};
use fleetbench_econ::arena::{inline_api_entry, per_diagnosis, ArenaCost};
use fleetbench_load::live::{LeaderboardRow, LiveRun, LiveState, ScenarioRow as LiveScenarioRow};
use fleetbench_store::records::arena::{Answer, ArenaBackend};
use serde::Serialize;

use crate::diagnosis::Diagnosis;
use crate::scenario::Scenario;
use crate::score::{DiagnosisScore, ItemScores};

/// One episode answered by one backend.
#[derive(Debug, Clone, Serialize)]
pub struct EpisodeResult {
    pub episode_id: String,
    pub scenario: Scenario,
    /// The raw text the backend returned.
    pub answer: String,
    pub parsed: Option<Diagnosis>,
    pub truth: Diagnosis,
    pub score: DiagnosisScore,
    /// Seconds; `None` for in-process operators.
    pub ttft_s: Option<f64>,
    pub e2el_s: Option<f64>,
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    /// Request failure (an empty answer, scored unparseable).
    pub error: Option<String>,
}

impl EpisodeResult {
    /// The per-episode JSON object: answer and truth side by side.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "episode_id": self.episode_id,
            "scenario": self.scenario.id(),
            "label": self.scenario.table_key(),
            "difficulty": crate::episode::difficulty_of(&self.truth),
            "score": self.score.total,
            "items": self.score.items,
            "unparseable": self.score.unparseable,
            "parse_error": self.score.parse_error,
            "lenient": self.score.lenient,
            "action_class": self.score.action_class,
            "answer": self.answer,
            "parsed": self.parsed.as_ref().map(Diagnosis::to_json),
            "truth": self.truth.to_json(),
            "ttft_s": self.ttft_s,
            "e2el_s": self.e2el_s,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "error": self.error,
        })
    }
}

impl EpisodeResult {
    /// The `answer` artifact `aiops run` stores for this result (the shape
    /// the HTML report reads): the answer's `text` beside its `truth`,
    /// score and timings.
    pub fn answer_artifact(&self, backend: &str) -> Answer {
        Answer {
            backend: backend.to_string(),
            episode_id: self.episode_id.clone(),
            scenario: Some(self.scenario.id().to_string()),
            label: Some(self.scenario.table_key().to_string()),
            difficulty: Some(crate::episode::difficulty_of(&self.truth).to_string()),
            text: self.answer.clone(),
            score: Some(self.score.total),
            items: self.score.items.named().iter().map(|(name, got, _)| (name.to_string(), *got)).collect(),
            unparseable: self.score.unparseable,
            lenient: self.score.lenient,
            action_class: self
                .score
                .action_class
                .and_then(|c| serde_json::to_value(c).ok())
                .and_then(|v| v.as_str().map(str::to_string)),
            truth: Some(self.truth.to_json()),
            parsed: self.parsed.as_ref().map(Diagnosis::to_json),
            parse_error: self.score.parse_error.clone(),
            error: self.error.clone(),
            ttft_s: self.ttft_s,
            e2el_s: self.e2el_s,
            input_tokens: self.input_tokens,
            output_tokens: self.output_tokens,
            ..Answer::default()
        }
    }
}

/// Price of a backend, dollars per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Price {
    pub input_per_mtok: f64,
    pub output_per_mtok: f64,
}

/// Per-scenario row.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioRow {
    pub n: usize,
    pub mean_score: f64,
    pub items: BTreeMap<&'static str, f64>,
}

/// Latency and token figures.
#[derive(Debug, Clone, Serialize)]
pub struct Usage {
    pub ttft_ms: Option<Summary>,
    pub e2el_ms: Option<Summary>,
    pub mean_input_tokens: Option<f64>,
    pub mean_output_tokens: Option<f64>,
}

/// One leaderboard row.
#[derive(Debug, Clone, Serialize)]
pub struct Leaderboard {
    pub name: String,
    pub episodes: usize,
    pub mean_score: f64,
    pub ci95: Option<Interval>,
    /// Fraction of episodes with full points on each item.
    pub items: BTreeMap<&'static str, f64>,
    pub per_scenario: BTreeMap<&'static str, ScenarioRow>,
    /// By difficulty (`easy`, `medium`, `hard`: number of decoys).
    pub per_difficulty: BTreeMap<&'static str, ScenarioRow>,
    /// Over healthy and decoy-only episodes; `None` when there were none.
    pub false_positive_rate: Option<f64>,
    pub over_remediation_rate: f64,
    pub unparseable_rate: f64,
    pub lenient_rate: f64,
    pub failed_requests: usize,
    pub usage: Usage,
    pub cost_per_diagnosis: Option<f64>,
    pub cost_per_day: Option<f64>,
}

fn item_accuracy(scores: &[&ItemScores]) -> BTreeMap<&'static str, f64> {
    let mut out = BTreeMap::new();
    let n = scores.len().max(1) as f64;
    for (i, (name, _, _)) in crate::score::FULL.named().iter().enumerate() {
        let hits = scores.iter().filter(|s| {
            let (_, got, full) = s.named()[i];
            got >= full
        });
        out.insert(*name, hits.count() as f64 / n);
    }
    out
}

fn rate(results: &[EpisodeResult], f: impl Fn(&EpisodeResult) -> bool) -> f64 {
    if results.is_empty() {
        0.0
    } else {
        results.iter().filter(|r| f(r)).count() as f64 / results.len() as f64
    }
}

impl Leaderboard {
    /// The `arena_backend` artifact of this row (the shape the HTML report
    /// reads): `backend`, `model`, `score`, `ci95`, `episodes`, `failed`,
    /// `scenarios` (table key -> mean score), the whole row under
    /// `leaderboard`, and the backend's cost keys when it is priced.
    pub fn arena_artifact(&self, model: Option<&str>, cost: Option<ArenaCost>) -> ArenaBackend {
        ArenaBackend {
            backend: self.name.clone(),
            model: model.map(str::to_string),
            score: self.mean_score,
            ci95: self.ci95,
            episodes: Some(self.episodes as u64),
            failed: Some(self.failed_requests as u64),
            scenarios: self.per_scenario.iter().map(|(k, v)| (k.to_string(), v.mean_score)).collect(),
            leaderboard: serde_json::to_value(self).ok(),
            cost,
        }
    }
}

/// Builds the leaderboard row of one backend. `stream_rate_per_s` is the
/// episode rate used for cost per day.
pub fn leaderboard(
    name: &str,
    results: &[EpisodeResult],
    price: Option<Price>,
    stream_rate_per_s: Option<f64>,
) -> Leaderboard {
    let totals: Vec<f64> = results.iter().map(|r| r.score.total).collect();
    let all_items: Vec<&ItemScores> = results.iter().map(|r| &r.score.items).collect();
    let mut per_scenario = BTreeMap::new();
    for s in Scenario::ALL {
        let rows: Vec<&EpisodeResult> = results.iter().filter(|r| r.scenario == s).collect();
        if rows.is_empty() {
            continue;
        }
        let scores: Vec<f64> = rows.iter().map(|r| r.score.total).collect();
        let items: Vec<&ItemScores> = rows.iter().map(|r| &r.score.items).collect();
        per_scenario.insert(
            s.table_key(),
            ScenarioRow { n: rows.len(), mean_score: mean(&scores).unwrap_or(0.0), items: item_accuracy(&items) },
        );
    }
    let mut per_difficulty = BTreeMap::new();
    for d in ["easy", "medium", "hard"] {
        let rows: Vec<&EpisodeResult> =
            results.iter().filter(|r| crate::episode::difficulty_of(&r.truth) == d).collect();
        if rows.is_empty() {
            continue;
        }
        let scores: Vec<f64> = rows.iter().map(|r| r.score.total).collect();
        let items: Vec<&ItemScores> = rows.iter().map(|r| &r.score.items).collect();
        per_difficulty.insert(
            d,
            ScenarioRow { n: rows.len(), mean_score: mean(&scores).unwrap_or(0.0), items: item_accuracy(&items) },
        );
    }
    let negatives: Vec<&EpisodeResult> = results.iter().filter(|r| !r.truth.detected).collect();
    let false_positive_rate = (!negatives.is_empty())
        .then(|| negatives.iter().filter(|r| r.score.false_positive).count() as f64 / negatives.len() as f64);
    let ttft: Vec<f64> = results.iter().filter_map(|r| r.ttft_s).map(|x| x * 1e3).collect();
    let e2el: Vec<f64> = results.iter().filter_map(|r| r.e2el_s).map(|x| x * 1e3).collect();
    let inp: Vec<f64> = results.iter().filter_map(|r| r.input_tokens).map(|x| x as f64).collect();
    let out: Vec<f64> = results.iter().filter_map(|r| r.output_tokens).map(|x| x as f64).collect();
    let usage = Usage {
        ttft_ms: Summary::of(&ttft),
        e2el_ms: Summary::of(&e2el),
        mean_input_tokens: mean(&inp),
        mean_output_tokens: mean(&out),
    };
    let (cost_per_diagnosis, cost_per_day) = match price {
        Some(p) => per_diagnosis(
            &inline_api_entry(name, p.input_per_mtok, p.output_per_mtok),
            usage.mean_input_tokens.unwrap_or(0.0),
            usage.mean_output_tokens.unwrap_or(0.0),
            stream_rate_per_s,
        ),
        None => (None, None),
    };
    Leaderboard {
        name: name.to_string(),
        episodes: results.len(),
        mean_score: mean(&totals).unwrap_or(0.0),
        ci95: mean_ci(&totals),
        items: item_accuracy(&all_items),
        per_scenario,
        per_difficulty,
        false_positive_rate,
        over_remediation_rate: rate(results, |r| r.score.over_remediation),
        unparseable_rate: rate(results, |r| r.score.unparseable),
        lenient_rate: rate(results, |r| r.score.lenient),
        failed_requests: results.iter().filter(|r| r.error.is_some()).count(),
        usage,
        cost_per_diagnosis,
        cost_per_day,
    }
}

/// The `aiops score --json` document: `mean_score`, `ci95`, `items`,
/// `unparseable`, `episodes` (answer beside truth).
pub fn score_report(results: &[EpisodeResult]) -> serde_json::Value {
    let lb = leaderboard("answers", results, None, None);
    serde_json::json!({
        "mean_score": lb.mean_score,
        "ci95": lb.ci95,
        "items": lb.items,
        "unparseable": results.iter().filter(|r| r.score.unparseable).count(),
        "unparseable_rate": lb.unparseable_rate,
        "false_positive_rate": lb.false_positive_rate,
        "over_remediation_rate": lb.over_remediation_rate,
        "per_scenario": lb.per_scenario,
        "per_difficulty": lb.per_difficulty,
        "episodes": results.iter().map(EpisodeResult::to_json).collect::<Vec<_>>(),
    })
}

/// A fixed-width text table of leaderboard rows (for terminals and READMEs).
pub fn render_table(rows: &[Leaderboard]) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<18} {:>4} {:>22} {:>5} {:>5} {:>5} {:>5} {:>5} {:>5} {:>6} {:>6} {:>6} {:>9} {:>9} {:>8}",
        "backend",
        "n",
        "score (95% CI)",
        "det",
        "loc",
        "cause",
        "act",
        "onset",
        "evid",
        "FP",
        "overR",
        "unpar",
        "ttft p50",
        "e2e p50",
        "out tok"
    );
    for r in rows {
        let ci = r.ci95.map(|c| format!("[{:.1}, {:.1}]", c.lo, c.hi)).unwrap_or_else(|| "[n/a]".into());
        let pct = |k: &str| r.items.get(k).map(|v| format!("{:.0}%", v * 100.0)).unwrap_or_default();
        let _ = writeln!(
            s,
            "{:<18} {:>4} {:>7.1} {:>14} {:>5} {:>5} {:>5} {:>5} {:>5} {:>5} {:>6} {:>6} {:>6} {:>9} {:>9} {:>8}",
            r.name,
            r.episodes,
            r.mean_score,
            ci,
            pct("detection"),
            pct("localization"),
            pct("root_cause"),
            pct("action"),
            pct("onset"),
            pct("evidence"),
            r.false_positive_rate.map(|v| format!("{:.0}%", v * 100.0)).unwrap_or_else(|| "n/a".into()),
            format!("{:.0}%", r.over_remediation_rate * 100.0),
            format!("{:.0}%", r.unparseable_rate * 100.0),
            r.usage.ttft_ms.map(|x| format!("{:.0}ms", x.p50)).unwrap_or_else(|| "-".into()),
            r.usage.e2el_ms.map(|x| format!("{:.0}ms", x.p50)).unwrap_or_else(|| "-".into()),
            r.usage.mean_output_tokens.map(|x| format!("{x:.0}")).unwrap_or_else(|| "-".into()),
        );
    }
    s
}

/// Per-scenario mean scores, one column per backend.
pub fn render_scenario_table(rows: &[Leaderboard]) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = write!(s, "{:<32} {:>4}", "scenario", "n");
    for r in rows {
        let _ = write!(s, " {:>16}", r.name);
    }
    s.push('\n');
    for sc in Scenario::ALL {
        let key = sc.table_key();
        let n = rows.iter().find_map(|r| r.per_scenario.get(key)).map(|x| x.n);
        let Some(n) = n else { continue };
        // Healthy and decoy-only episodes are keyed by their id already.
        let name = if sc.id() == key { key.to_string() } else { format!("{} {}", sc.id(), key) };
        let _ = write!(s, "{:<32} {:>4}", name, n);
        for r in rows {
            let v = r.per_scenario.get(key).map(|x| format!("{:.1}", x.mean_score)).unwrap_or_else(|| "-".into());
            let _ = write!(s, " {v:>16}");
        }
        s.push('\n');
    }
    for d in ["easy", "medium", "hard"] {
        let Some(n) = rows.iter().find_map(|r| r.per_difficulty.get(d)).map(|x| x.n) else { continue };
        let _ = write!(s, "{:<32} {:>4}", format!("difficulty {d}"), n);
        for r in rows {
            let v = r.per_difficulty.get(d).map(|x| format!("{:.1}", x.mean_score)).unwrap_or_else(|| "-".into());
            let _ = write!(s, " {v:>16}");
        }
        s.push('\n');
    }
    s
}

impl EpisodeResult {
    /// Parses and scores `answer` for an episode.
    pub fn scored(episode_id: &str, scenario: Scenario, truth: &Diagnosis, answer: String) -> EpisodeResult {
        let (score, parsed) = crate::score::score_answer(scenario, truth, &answer);
        EpisodeResult {
            episode_id: episode_id.to_string(),
            scenario,
            answer,
            parsed,
            truth: truth.clone(),
            score,
            ttft_s: None,
            e2el_s: None,
            input_tokens: None,
            output_tokens: None,
            error: None,
        }
    }
}

/// Characters of the latest answer shown on the live dashboard.
const LIVE_ANSWER_CHARS: usize = 2000;
/// Least time between two recomputations of the live intervals.
const LIVE_CI_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

/// Running figures of one backend for the dashboard.
#[derive(Default)]
struct BackendTally {
    scores: Vec<f64>,
    sum: f64,
    failed: u64,
    ci: Option<fleetbench_core::stats::Interval>,
    /// Scenario table key -> (sum, n).
    scenarios: BTreeMap<&'static str, (f64, u64)>,
}

#[derive(Default)]
struct TallyState {
    /// In the order backends first answered.
    backends: Vec<(String, BackendTally)>,
    last_ci: Option<std::time::Instant>,
}

/// The arena's live run: counts and means follow every answer; the
/// bootstrap intervals are recomputed at most every [`LIVE_CI_EVERY`], and
/// only while a browser watches.
pub struct LiveTally {
    run: LiveRun,
    started: std::time::Instant,
    state: std::sync::Mutex<TallyState>,
}

impl LiveTally {
    pub fn new(run: LiveRun) -> LiveTally {
        LiveTally { run, started: std::time::Instant::now(), state: std::sync::Mutex::new(TallyState::default()) }
    }

    /// Marks the live run failed.
    pub fn fail(&self) {
        self.run.finish(LiveState::Failed);
    }

    /// Counts one scored answer of `backend`.
    pub fn record(&self, backend: &str, r: &EpisodeResult) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let i = match st.backends.iter().position(|(n, _)| n == backend) {
            Some(i) => i,
            None => {
                st.backends.push((backend.to_string(), BackendTally::default()));
                st.backends.len() - 1
            }
        };
        {
            let b = &mut st.backends[i].1;
            b.scores.push(r.score.total);
            b.sum += r.score.total;
            b.failed += u64::from(r.error.is_some());
            let e = b.scenarios.entry(r.scenario.table_key()).or_default();
            e.0 += r.score.total;
            e.1 += 1;
        }
        if self.run.watched() && st.last_ci.is_none_or(|t| t.elapsed() >= LIVE_CI_EVERY) {
            st.last_ci = Some(std::time::Instant::now());
            for (_, b) in st.backends.iter_mut() {
                b.ci = fleetbench_core::stats::mean_ci(&b.scores);
            }
        }
        let rows = live_rows(&st.backends);
        let scenarios = live_scenarios(&st.backends);
        drop(st);
        let text: String = r.answer.chars().take(LIVE_ANSWER_CHARS).collect();
        let elapsed = self.started.elapsed().as_secs_f64();
        self.run.update(|s| {
            match &r.error {
                Some(e) => {
                    s.failed += 1;
                    *s.errors.entry(e.clone()).or_default() += 1;
                    s.last_error = Some(format!("{backend}: {e}"));
                }
                None => s.done += 1,
            }
            s.last_answer = Some(text);
            s.elapsed_s = elapsed;
            s.leaderboard = rows;
            s.scenarios = scenarios;
        });
    }

    /// A finished request of an HTTP backend: its tokens and latencies feed
    /// the dashboard's throughput and TTFT charts (answers are counted by
    /// [`LiveTally::record`]).
    pub fn timing(&self, rec: &fleetbench_core::RequestRecord) {
        self.run.observe_timing(rec);
    }

    /// The HTTP requests in flight now (`now`: seconds on the run's clock),
    /// for the dashboard's in-flight chart.
    pub fn in_flight(&self, now: f64, n: u64) {
        self.run.tick(now, Some(n));
    }

    /// The end: the leaderboard with its final intervals, and the state.
    pub fn publish_final(&self, boards: &[Leaderboard], state: LiveState) {
        let mut rows: Vec<LeaderboardRow> = boards
            .iter()
            .filter(|b| b.episodes > 0)
            .map(|b| LeaderboardRow {
                backend: b.name.clone(),
                score: b.mean_score,
                ci_lo: b.ci95.map(|c| c.lo),
                ci_hi: b.ci95.map(|c| c.hi),
                answered: (b.episodes - b.failed_requests) as u64,
                failed: b.failed_requests as u64,
                investigate: None,
            })
            .collect();
        rows.sort_by(|x, y| y.score.total_cmp(&x.score));
        let scenarios = Scenario::ALL
            .iter()
            .map(|sc| LiveScenarioRow {
                scenario: sc.table_key().to_string(),
                scores: boards
                    .iter()
                    .filter_map(|b| b.per_scenario.get(sc.table_key()).map(|r| (b.name.clone(), r.mean_score)))
                    .collect(),
            })
            .filter(|r| !r.scores.is_empty())
            .collect();
        let elapsed = self.started.elapsed().as_secs_f64();
        self.run.update(|s| {
            s.leaderboard = rows;
            s.scenarios = scenarios;
            s.elapsed_s = elapsed;
        });
        self.run.finish(state);
    }
}

fn live_rows(backends: &[(String, BackendTally)]) -> Vec<LeaderboardRow> {
    let mut rows: Vec<LeaderboardRow> = backends
        .iter()
        .map(|(name, b)| LeaderboardRow {
            backend: name.clone(),
            score: b.sum / b.scores.len().max(1) as f64,
            ci_lo: b.ci.map(|c| c.lo),
            ci_hi: b.ci.map(|c| c.hi),
            answered: b.scores.len() as u64 - b.failed,
            failed: b.failed,
            investigate: None,
        })
        .collect();
    rows.sort_by(|x, y| y.score.total_cmp(&x.score));
    rows
}

fn live_scenarios(backends: &[(String, BackendTally)]) -> Vec<LiveScenarioRow> {
    Scenario::ALL
        .iter()
        .map(|sc| LiveScenarioRow {
            scenario: sc.table_key().to_string(),
            scores: backends
                .iter()
                .filter_map(|(name, b)| {
                    b.scenarios.get(sc.table_key()).map(|(sum, n)| (name.clone(), sum / (*n).max(1) as f64))
                })
                .collect(),
        })
        .filter(|r| !r.scores.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnosis::validate;

    fn results() -> Vec<EpisodeResult> {
        let truth = |s: Scenario| {
            validate(&serde_json::json!({"detected": s.is_fault(), "root_cause": s.label(), "location": null, "onset": null, "action": "NONE", "evidence": []}))
            .expect("valid truth")
        };
        let healthy = truth(Scenario::Healthy);
        vec![
            EpisodeResult::scored("e0", Scenario::Healthy, &healthy, healthy.to_json().to_string()),
            EpisodeResult::scored("e1", Scenario::Healthy, &healthy, "no idea".into()),
            EpisodeResult::scored(
                "e2",
                Scenario::S6GpuOffBus,
                &truth(Scenario::S6GpuOffBus),
                healthy.to_json().to_string(),
            ),
        ]
    }

    #[test]
    fn scenario_rows_name_healthy_and_decoy_only_once() {
        let lb = leaderboard("b", &results(), None, None);
        let table = render_scenario_table(&[lb]);
        assert!(table.lines().any(|l| l.starts_with("healthy ")), "{table}");
        assert!(!table.contains("healthy healthy"), "{table}");
        assert!(table.contains("S6 pcie.gpu_off_bus"), "{table}");
    }

    #[test]
    fn table_columns_line_up_with_their_headers() {
        let mut rs = results();
        for r in &mut rs {
            (r.ttft_s, r.e2el_s, r.output_tokens) = (Some(0.25), Some(1.5), Some(40));
        }
        let table = render_table(&[leaderboard("b", &rs, None, None)]);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines[0].len(), lines[1].len(), "{table}");
        let col = |l: &str, w: &str| l.find(w).map(|i| i + w.len());
        assert_eq!(col(lines[0], "ttft p50"), col(lines[1], "250ms"), "{table}");
        assert_eq!(col(lines[0], "e2e p50"), col(lines[1], "1500ms"), "{table}");
    }

    #[test]
    fn answer_artifact_carries_text_truth_and_score() {
        let r = &results()[1];
        let a = r.answer_artifact("rules");
        assert_eq!(a.artifact_name(), "rules/e1");
        assert_eq!(a.scenario.as_deref(), Some("healthy"));
        assert_eq!(a.text, "no idea");
        assert_eq!(a.score, Some(0.0));
        assert!(a.unparseable);
        let v = serde_json::to_value(&a).expect("json");
        assert_eq!(v["backend"], "rules");
        assert_eq!(v["episode_id"], "e1");
        assert_eq!(v["text"], "no idea");
        assert!(v.get("answer").is_none() && v.get("error").is_none() && v.get("ttft_s").is_none());
        assert!(v.get("parsed").is_none() && v["parse_error"].is_string());
        assert_eq!(validate(&v["truth"]).expect("truth round-trips"), r.truth);
        assert!(v["items"]["detection"].is_number());
        // The keys of the per-episode JSON, with `text` for `answer`.
        let mut keys: Vec<String> = r.to_json().as_object().expect("object").keys().cloned().collect();
        keys.retain(|k| {
            !["answer", "parsed", "error", "ttft_s", "e2el_s", "input_tokens", "output_tokens"].contains(&k.as_str())
        });
        keys.extend(["text".to_string(), "backend".to_string()]);
        keys.sort();
        let stored: Vec<String> = v.as_object().expect("object").keys().cloned().collect();
        assert_eq!(stored, keys);
    }

    #[test]
    fn arena_artifact_has_the_report_shape() {
        let rs = results();
        let lb = leaderboard("rules", &rs, None, None);
        let v = serde_json::to_value(lb.arena_artifact(Some("m"), None)).expect("json");
        assert_eq!(v["backend"], "rules");
        assert_eq!(v["model"], "m");
        assert_eq!(v["score"], lb.mean_score);
        assert_eq!(v["episodes"], 3);
        assert_eq!(v["failed"], 0);
        let healthy = rs[..2].iter().map(|r| r.score.total).sum::<f64>() / 2.0;
        assert_eq!(v["scenarios"]["healthy"], healthy);
        assert_eq!(v["scenarios"]["pcie.gpu_off_bus"], rs[2].score.total);
        assert!(v["ci95"]["lo"].is_number() && v["ci95"]["hi"].is_number());
        assert_eq!(v["leaderboard"]["name"], "rules");
        assert!(v.get("price_entry").is_none(), "an unpriced backend has no cost keys");
    }

    #[test]
    fn inline_prices_cost_a_mean_diagnosis() {
        let mut rs = results();
        for r in &mut rs {
            (r.input_tokens, r.output_tokens) = (Some(900), Some(40));
        }
        let lb = leaderboard("b", &rs, Some(Price { input_per_mtok: 1.0, output_per_mtok: 2.0 }), Some(0.5));
        let c = lb.cost_per_diagnosis.expect("priced");
        assert!((c - (900.0 + 80.0) / 1e6).abs() < 1e-15, "{c}");
        assert!((lb.cost_per_day.expect("per day") - c * 43_200.0).abs() < 1e-9);
    }

    fn tally_result(id: &str, scenario: Scenario, answer: String, error: Option<&str>) -> EpisodeResult {
        let truth = validate(&serde_json::json!({
            "detected": false, "root_cause": "none", "location": null, "onset": null, "action": "NONE", "evidence": []
        }))
        .expect("truth");
        let mut r = EpisodeResult::scored(id, scenario, &truth, answer);
        r.error = error.map(str::to_string);
        r
    }

    #[test]
    fn the_live_tally_counts_ranks_and_finishes() {
        let bus = fleetbench_load::live::LiveBus::new();
        let tally = LiveTally::new(bus.start(fleetbench_load::live::LiveRunInfo {
            kind: "aiops".into(),
            total: Some(4),
            ..Default::default()
        }));
        let good = r#"{"detected": false, "root_cause": "none", "location": null, "onset": null, "action": "NONE", "evidence": []}"#;
        tally.record("a", &tally_result("e0", Scenario::Healthy, good.into(), None));
        tally.record("b", &tally_result("e0", Scenario::Healthy, String::new(), Some("timeout_total")));
        tally.record("a", &tally_result("e1", Scenario::DecoyOnly, "x".repeat(LIVE_ANSWER_CHARS + 50), None));
        tally.in_flight(1.0, 3);
        let s = &bus.snapshots()[0];
        assert_eq!((s.done, s.failed), (2, 1));
        assert_eq!(s.in_flight, 3, "the HTTP requests in flight reach the dashboard");
        assert_eq!(s.errors.get("timeout_total"), Some(&1));
        assert_eq!(s.last_answer.as_ref().map(|a| a.chars().count()), Some(LIVE_ANSWER_CHARS));
        let names: Vec<&str> = s.leaderboard.iter().map(|r| r.backend.as_str()).collect();
        assert_eq!(names, ["a", "b"], "best first");
        assert_eq!((s.leaderboard[0].answered, s.leaderboard[0].failed), (2, 0));
        assert_eq!((s.leaderboard[1].answered, s.leaderboard[1].failed), (0, 1));
        assert_eq!(s.leaderboard[0].score, 50.0, "100 and an unparseable 0");
        let healthy = s.scenarios.iter().find(|r| r.scenario == "healthy").expect("healthy row");
        assert_eq!(healthy.scores.get("a"), Some(&100.0));
        assert_eq!(healthy.scores.get("b"), Some(&0.0));
        assert_eq!(s.leaderboard[0].ci_lo, None, "no interval is computed while nobody watches");
        assert!(!s.series.is_empty(), "the answers make the charts' first point");

        // An HTTP backend's request feeds the throughput and TTFT charts.
        let _watching = bus.subscribe();
        let rec = fleetbench_core::RequestRecord {
            t_send: 10.0,
            t_first_token: Some(10.25),
            t_last_token: Some(11.0),
            t_end: 11.0,
            output_tokens: 30,
            ..Default::default()
        };
        tally.timing(&rec);
        let s = &bus.snapshots()[0];
        assert_eq!((s.done, s.failed), (2, 1), "timings are not answers");
        assert_eq!(s.ttft_p50_ms.map(|t| t.round()), Some(250.0));
        assert!(s.output_tok_s > 0.0);

        let boards = vec![
            leaderboard("a", &[tally_result("e0", Scenario::Healthy, good.into(), None)], None, None),
            leaderboard("b", &[], None, None),
        ];
        tally.publish_final(&boards, LiveState::Finished);
        let s = &bus.snapshots()[0];
        assert_eq!(s.state, LiveState::Finished);
        assert_eq!(s.leaderboard.len(), 1, "a backend without answers is not ranked");
        assert_eq!(s.leaderboard[0].ci_lo, boards[0].ci95.map(|c| c.lo));
    }
}
