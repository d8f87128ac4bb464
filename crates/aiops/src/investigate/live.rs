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
            b.outcomes.push(o.clone());
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
