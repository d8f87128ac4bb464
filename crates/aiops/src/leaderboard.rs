//! Per-backend results: every episode's answer beside its truth and score,
//! and the leaderboard row (mean with 95 % CI, per-item accuracy, per
//! scenario, false positives, over-remediation, unparseable, latency,
//! tokens, cost).

use std::collections::BTreeMap;

use fleetbench_core::stats::{mean, mean_ci, Interval, Summary};
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
    /// the HTML report reads): `backend`, `episode_id`, `scenario` (id),
    /// `label`, `text` (the raw answer), `score`, `truth` (diagnosis JSON),
    /// `items` (points per checklist item), `unparseable`, `parse_error`,
    /// `lenient`, `parsed`; and `error`, `ttft_s`, `e2el_s`, `input_tokens`,
    /// `output_tokens` when known.
    pub fn answer_artifact(&self, backend: &str) -> serde_json::Value {
        let mut v = self.to_json();
        if let Some(obj) = v.as_object_mut() {
            let text = obj.remove("answer").unwrap_or(serde_json::Value::Null);
            obj.insert("text".into(), text);
            obj.insert("backend".into(), serde_json::Value::String(backend.to_string()));
            for k in ["error", "ttft_s", "e2el_s", "input_tokens", "output_tokens", "parse_error", "parsed"] {
                if obj.get(k).is_some_and(serde_json::Value::is_null) {
                    obj.remove(k);
                }
            }
        }
        v
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
    /// reads): `backend`, `model`, `score`, `ci95` (`{lo, hi}`), `episodes`,
    /// `failed`, `scenarios` (table key -> mean score), and the whole row
    /// under `leaderboard`.
    pub fn arena_artifact(&self, model: Option<&str>) -> serde_json::Value {
        let scenarios: BTreeMap<&str, f64> = self.per_scenario.iter().map(|(k, v)| (*k, v.mean_score)).collect();
        serde_json::json!({
            "backend": self.name,
            "model": model,
            "score": self.mean_score,
            "ci95": self.ci95,
            "episodes": self.episodes,
            "failed": self.failed_requests,
            "scenarios": scenarios,
            "leaderboard": self,
        })
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
    let cost_per_diagnosis = price.map(|p| {
        usage.mean_input_tokens.unwrap_or(0.0) * p.input_per_mtok / 1e6
            + usage.mean_output_tokens.unwrap_or(0.0) * p.output_per_mtok / 1e6
    });
    let cost_per_day = match (cost_per_diagnosis, stream_rate_per_s) {
        (Some(c), Some(r)) => Some(c * r * 86_400.0),
        _ => None,
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
        let v = r.answer_artifact("rules");
        assert_eq!(v["backend"], "rules");
        assert_eq!(v["episode_id"], "e1");
        assert_eq!(v["scenario"], "healthy");
        assert_eq!(v["text"], "no idea");
        assert_eq!(v["score"], 0.0);
        assert_eq!(v["unparseable"], true);
        assert!(v.get("answer").is_none() && v.get("error").is_none() && v.get("ttft_s").is_none());
        assert_eq!(validate(&v["truth"]).expect("truth round-trips"), r.truth);
        assert!(v["items"]["detection"].is_number());
    }

    #[test]
    fn arena_artifact_has_the_report_shape() {
        let rs = results();
        let lb = leaderboard("rules", &rs, None, None);
        let v = lb.arena_artifact(Some("m"));
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
    }
}
