//! Investigate mode on the live dashboard: every scored investigation
//! updates the run's snapshot (episodes done, the leaderboard with the
//! investigate figures, the per-scenario scores, the floor and the latest
//! submission). The figures follow each outcome; the bootstrap intervals
//! are recomputed at most every [`CI_EVERY`].

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use fleetbench_core::stats::mean_ci;
use fleetbench_load::live::{InvestigateFigures, LeaderboardRow, LiveRun, LiveState, ScenarioRow};

use super::bench::{board_figures, Board, EpisodeOutcome, Floor};
use super::tools::Ended;
use crate::leaderboard::Price;

/// Characters of the latest submission shown on the dashboard.
const ANSWER_CHARS: usize = 2000;
/// Least time between two recomputations of the live intervals.
const CI_EVERY: Duration = Duration::from_millis(250);

/// One backend's outcomes so far, its figures and its last interval.
struct Backend {
    name: String,
    outcomes: Vec<EpisodeOutcome>,
    board: Option<Board>,
    ci: Option<[f64; 2]>,
}

#[derive(Default)]
struct State {
    /// In the order backends first finished an episode.
    backends: Vec<Backend>,
    last_ci: Option<Instant>,
}

/// The live run of an investigate-mode arena.
pub struct InvestigateTally {
    run: LiveRun,
    started: Instant,
    prices: BTreeMap<String, Price>,
    pages_per_day: f64,
    state: Mutex<State>,
}

impl InvestigateTally {
    /// Starts the tally of `run`, priced with `prices` at `pages_per_day`,
    /// and shows the floor at once.
    pub fn new(run: LiveRun, prices: BTreeMap<String, Price>, pages_per_day: f64, floor: &Floor) -> InvestigateTally {
        let row = floor_row(floor);
        run.update(|s| s.floor = Some(row));
        InvestigateTally { run, started: Instant::now(), prices, pages_per_day, state: Mutex::new(State::default()) }
    }

    /// Counts one scored investigation of `backend`.
    pub fn record(&self, backend: &str, o: &EpisodeOutcome) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let i = match st.backends.iter().position(|b| b.name == backend) {
            Some(i) => i,
            None => {
                st.backends.push(Backend { name: backend.to_string(), outcomes: Vec::new(), board: None, ci: None });
                st.backends.len() - 1
            }
        };
        let (prices, ppd) = (&self.prices, self.pages_per_day);
        if let Some(b) = st.backends.get_mut(i) {
            // The figures need neither the transcript nor the submission.
            let mut kept = o.clone();
            (kept.transcript, kept.submitted) = (Vec::new(), None);
            b.outcomes.push(kept);
            b.board = Some(board_figures(&b.name, &b.outcomes, prices.get(&b.name).copied(), ppd));
        }
        if st.last_ci.is_none_or(|t| t.elapsed() >= CI_EVERY) {
            st.last_ci = Some(Instant::now());
            for b in st.backends.iter_mut() {
                let totals: Vec<f64> = b.outcomes.iter().map(|o| o.score.total).collect();
                b.ci = mean_ci(&totals).map(|c| [c.lo, c.hi]);
            }
        }
        let boards: Vec<(Board, Option<[f64; 2]>)> =
            st.backends.iter().filter_map(|b| b.board.clone().map(|x| (x, b.ci))).collect();
        drop(st);
        let (rows, scenarios) = rows_and_scenarios(&boards);
        let text: Option<String> = o.submitted.as_ref().map(|v| v.to_string().chars().take(ANSWER_CHARS).collect());
        let elapsed = self.started.elapsed().as_secs_f64();
        self.run.update(|s| {
            match &o.ended {
                Ended::Failed(why) => {
                    s.failed += 1;
                    *s.errors.entry(why.clone()).or_default() += 1;
                    s.last_error = Some(format!("{backend}: {why}"));
                }
                _ => s.done += 1,
            }
            if text.is_some() {
                s.last_answer = text;
            }
            s.elapsed_s = elapsed;
            s.leaderboard = rows;
            s.scenarios = scenarios;
        });
    }

    /// The end: the final leaderboard (with its intervals) and the state.
    pub fn finish(&self, boards: &[Board], state: LiveState) {
        let with_ci: Vec<(Board, Option<[f64; 2]>)> =
            boards.iter().filter(|b| b.n > 0).map(|b| (b.clone(), Some(b.ci95))).collect();
        let (rows, scenarios) = rows_and_scenarios(&with_ci);
        let elapsed = self.started.elapsed().as_secs_f64();
        self.run.update(|s| {
            s.leaderboard = rows;
            s.scenarios = scenarios;
            s.elapsed_s = elapsed;
        });
        self.run.finish(state);
    }
}

/// The floor as a leaderboard row named `floor`.
fn floor_row(f: &Floor) -> LeaderboardRow {
    LeaderboardRow {
        backend: "floor".into(),
        score: f.mean_score,
        ci_lo: Some(f.ci95[0]),
        ci_hi: Some(f.ci95[1]),
        ..Default::default()
    }
}

/// The leaderboard rows, best first, and the per-scenario table.
fn rows_and_scenarios(boards: &[(Board, Option<[f64; 2]>)]) -> (Vec<LeaderboardRow>, Vec<ScenarioRow>) {
    let mut rows: Vec<LeaderboardRow> = boards.iter().map(|(b, ci)| row(b, *ci)).collect();
    rows.sort_by(|x, y| y.score.total_cmp(&x.score));
    let mut per: BTreeMap<&str, BTreeMap<String, f64>> = BTreeMap::new();
    for (b, _) in boards {
        for (k, v) in &b.per_scenario {
            per.entry(k.as_str()).or_default().insert(b.name.clone(), v.mean_score);
        }
    }
    let scenarios = per.into_iter().map(|(k, scores)| ScenarioRow { scenario: k.to_string(), scores }).collect();
    (rows, scenarios)
}

fn row(b: &Board, ci: Option<[f64; 2]>) -> LeaderboardRow {
    let failed = (b.n as f64 * b.unanswered_rate).round() as u64;
    LeaderboardRow {
        backend: b.name.clone(),
        score: b.mean_score,
        ci_lo: ci.map(|c| c[0]),
        ci_hi: ci.map(|c| c[1]),
        answered: (b.n as u64).saturating_sub(failed),
        failed,
        investigate: Some(InvestigateFigures {
            single_fault_score: b.single_fault_score,
            beyond_runbook_score: b.beyond_runbook_score,
            false_positive_rate: b.false_positive_rate,
            over_remediation_rate: b.over_remediation_rate,
            unanswered_rate: b.unanswered_rate,
            ttd_p50_s: b.ttd_p50_s,
            ttd_p90_s: b.ttd_p90_s,
            tool_calls_p50: b.tool_calls_p50,
            tokens_p50: b.tokens_p50,
            usd_per_incident: b.usd_per_incident,
            usd_per_day: b.usd_per_day,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::investigate::bench::{best_constant, board, score_investigation};
    use crate::investigate::score::truth_submission;
    use crate::investigate::tools::Investigation;
    use crate::investigate::world::World;
    use fleetbench_load::live::{LiveBus, LiveRunInfo};

    fn investigation(world: &World, ended: Ended) -> Investigation {
        Investigation {
            submitted: (ended == Ended::Submitted).then(|| truth_submission(world)),
            transcript: Vec::new(),
            tool_calls: 5,
            tool_errors: 0,
            input_tokens: 1000,
            output_tokens: 200,
            wall_s: 12.0,
            ended,
        }
    }

    #[test]
    fn each_outcome_updates_the_snapshot_and_the_end_sets_the_intervals() {
        let worlds: Vec<World> = (0..3).map(|i| World::generate(4, i)).collect();
        let floor = best_constant(&worlds);
        let bus = LiveBus::new();
        let prices = BTreeMap::from([("m".to_string(), Price { input_per_mtok: 1.0, output_per_mtok: 5.0 })]);
        let info = LiveRunInfo { kind: "aiops".into(), total: Some(6), ..Default::default() };
        let tally = InvestigateTally::new(bus.start(info), prices, 2.0, &floor);
        let snap = || bus.snapshots().pop().expect("the run is on the bus");
        assert_eq!(snap().floor.map(|f| (f.backend, f.score)), Some(("floor".to_string(), floor.mean_score)));

        let ok = score_investigation(&worlds[0], &investigation(&worlds[0], Ended::Submitted));
        tally.record("m", &ok);
        let s = snap();
        assert_eq!((s.done, s.failed, s.leaderboard.len()), (1, 0, 1));
        let f = s.leaderboard[0].investigate.clone().expect("investigate figures");
        assert_eq!((s.leaderboard[0].score, f.tool_calls_p50, f.tokens_p50, f.ttd_p50_s), (100.0, 5.0, 1200.0, 12.0));
        // (1000 × 1 + 200 × 5) / 1e6 dollars an incident, two pages a day.
        assert_eq!((f.usd_per_incident, f.usd_per_day), (Some(0.002), Some(0.004)));
        assert!(s.last_answer.is_some_and(|a| a.contains("root_cause")));
        assert!(!s.scenarios.is_empty());

        let lost = score_investigation(&worlds[1], &investigation(&worlds[1], Ended::Failed("refused".into())));
        tally.record("rules", &lost);
        let s = snap();
        assert_eq!((s.done, s.failed, s.errors.get("refused").copied()), (1, 1, Some(1)));
        assert_eq!(s.leaderboard.iter().map(|r| r.backend.as_str()).collect::<Vec<_>>(), ["m", "rules"]);
        assert_eq!((s.leaderboard[1].answered, s.leaderboard[1].failed), (0, 1));

        let boards = [board("m", &[ok], None, 2.0), board("rules", &[lost], None, 2.0)];
        tally.finish(&boards, LiveState::Finished);
        let s = snap();
        assert_eq!(s.state, LiveState::Finished);
        assert_eq!(s.leaderboard[0].ci_lo, Some(boards[0].ci95[0]));
        assert!(s.floor.is_some(), "the floor stays");
        let json = serde_json::to_value(&s).expect("json");
        assert!(json["leaderboard"][0]["investigate"]["ttd_p90_s"].is_f64(), "{json}");
    }
}
