//! The exam an MCP agent takes (`fleetbench aiops mcp --fleet DIR`): the
//! episodes of a directory that `aiops generate --mode investigate` wrote
//! ([`FleetDir`], served through [`crate::mcp::Episodes`]), and a sink that
//! scores each submitted investigation and stores it as one backend's
//! answers of an arena run ([`StoredSubmissions`]).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use fleetbench_core::stats::Interval;
use fleetbench_core::units::rfc3339;
use fleetbench_core::{RunMeta, RunStatus};
use fleetbench_store::records::arena::{ArenaBackend, ARENA_RUN_KIND};
use fleetbench_store::{Db, Store, StoreError};
use serde_json::{json, Value};
use tokio::sync::watch;

use super::arena::outcome_answer;
use super::bench::{board, pages_per_day, score_investigation, Board, EpisodeOutcome};
use super::promserver::PromBins;
use super::tools::{Ended, Investigation, Toolset};
use super::world::World;
use super::EpisodeTools;
use crate::mcp::{AnswersFile, Episodes, Submissions};
use crate::AiopsError;

/// The episodes of `DIR/episodes.jsonl`, in file order. Each line names
/// its `seed` and `index`, from which the episode's world is rebuilt.
#[derive(Debug, Clone)]
pub struct FleetDir {
    ids: Vec<String>,
    at: BTreeMap<String, (u64, usize)>,
    /// A real Prometheus per episode for the PromQL tools; `None`: embedded.
    promql: Option<PromBins>,
}

impl FleetDir {
    /// Reads `dir/episodes.jsonl` and checks that every id matches its seed
    /// and index.
    pub fn open(dir: &Path) -> Result<FleetDir, AiopsError> {
        let path = dir.join("episodes.jsonl");
        let text = std::fs::read_to_string(&path)
            .map_err(|source| AiopsError::Io { path: path.display().to_string(), source })?;
        let (mut ids, mut at) = (Vec::new(), BTreeMap::new());
        for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            let bad = |why: &str| AiopsError::EpisodeLine { line: i + 1, why: why.to_string() };
            let v: Value = serde_json::from_str(line).map_err(|e| bad(&e.to_string()))?;
            if v["mode"] != "investigate" {
                return Err(bad(
                    "not an investigate-mode episode (write them with `aiops generate --mode investigate`)",
                ));
            }
            let seed = v["seed"].as_u64().ok_or_else(|| bad("no seed"))?;
            let index = v["index"].as_u64().and_then(|x| usize::try_from(x).ok()).ok_or_else(|| bad("no index"))?;
            let id = World::generate(seed, index).id;
            if v["episode_id"].as_str() != Some(id.as_str()) {
                return Err(bad("episode_id does not match its seed and index"));
            }
            if at.insert(id.clone(), (seed, index)).is_some() {
                return Err(bad("episode listed twice"));
            }
            ids.push(id);
        }
        if ids.is_empty() {
            return Err(AiopsError::Invalid(format!("{} holds no episodes", path.display())));
        }
        Ok(FleetDir { ids, at, promql: None })
    }

    /// Answer the PromQL tools from a real Prometheus backfilled with each
    /// episode as it is opened (`--promql prometheus|auto`).
    pub fn with_prometheus(self, promql: Option<PromBins>) -> FleetDir {
        FleetDir { promql, ..self }
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The world of episode `id`.
    pub fn world(&self, id: &str) -> Option<World> {
        self.at.get(id).map(|&(seed, index)| World::generate(seed, index))
    }
}

impl Episodes for FleetDir {
    fn ids(&self) -> Vec<String> {
        self.ids.clone()
    }

    fn open(&self, episode_id: &str) -> Result<Arc<dyn Toolset>, String> {
        let w = self.world(episode_id).ok_or_else(|| format!("no episode '{episode_id}'"))?;
        let tools = EpisodeTools::open(w, self.promql.as_ref()).map_err(|e| format!("PromQL on Prometheus: {e}"))?;
        Ok(Arc::new(tools))
    }
}

/// Submitted investigations, scored and stored as `backend`'s answers in
/// one arena run (and appended to an answers file when one is given).
pub struct StoredSubmissions {
    fleet: Arc<FleetDir>,
    backend: String,
    run_id: i64,
    store: Mutex<Store>,
    file: Option<AnswersFile>,
    outcomes: Mutex<BTreeMap<String, EpisodeOutcome>>,
    count: watch::Sender<usize>,
}

impl StoredSubmissions {
    /// Opens the run row (from the `meta` template) in `db`.
    pub fn start(
        db: &Db,
        fleet: Arc<FleetDir>,
        backend: &str,
        meta: RunMeta,
        file: Option<AnswersFile>,
    ) -> Result<StoredSubmissions, StoreError> {
        let store = Store::connect(db)?;
        let meta = RunMeta {
            backend_url: "mcp".into(),
            model: backend.to_string(),
            api: "mcp".into(),
            workload: format!("aiops-investigate: {} episodes served over MCP", fleet.len()),
            schedule: "one agent over MCP, one episode at a time".into(),
            config: json!({
                "kind": ARENA_RUN_KIND,
                "mode": "investigate",
                "episodes": fleet.len(),
                "backends": [{"name": backend, "mcp": true}],
            }),
            ..meta
        };
        let run_id = store.create_run(&meta)?;
        Ok(StoredSubmissions {
            fleet,
            backend: backend.to_string(),
            run_id,
            store: Mutex::new(store),
            file,
            outcomes: Mutex::default(),
            count: watch::Sender::new(0),
        })
    }

    pub fn run_id(&self) -> i64 {
        self.run_id
    }

    /// How many episodes were submitted so far, as it changes.
    pub fn submitted_count(&self) -> watch::Receiver<usize> {
        self.count.subscribe()
    }

    /// Stores the backend's leaderboard row over every episode of the
    /// directory (one never submitted scores 0, unanswered) and ends the
    /// run: completed when every episode was submitted, else interrupted.
    pub fn finish(&self) -> Result<(Board, RunStatus), StoreError> {
        let outcomes = self.outcomes.lock().unwrap_or_else(|e| e.into_inner());
        let worlds: Vec<World> = self.fleet.ids.iter().filter_map(|id| self.fleet.world(id)).collect();
        let none = Investigation::empty(Ended::NoSubmission);
        let all: Vec<EpisodeOutcome> = worlds
            .iter()
            .map(|w| outcomes.get(&w.id).cloned().unwrap_or_else(|| score_investigation(w, &none)))
            .collect();
        let b = board(&self.backend, &all, None, pages_per_day(&worlds).1);
        let status = if outcomes.len() == worlds.len() { RunStatus::Completed } else { RunStatus::Interrupted };
        let row = ArenaBackend {
            backend: self.backend.clone(),
            model: None,
            score: b.mean_score,
            ci95: Some(Interval { lo: b.ci95[0], hi: b.ci95[1] }),
            episodes: Some(b.n as u64),
            failed: Some(0),
            scenarios: b.per_scenario.iter().map(|(k, v)| (k.clone(), v.mean_score)).collect(),
            leaderboard: serde_json::to_value(&b).ok(),
            cost: None,
        };
        let store = self.store.lock().unwrap_or_else(|e| e.into_inner());
        store.put(self.run_id, &self.backend, &row)?;
        let summary = json!({
            "kind": ARENA_RUN_KIND,
            "mode": "investigate",
            "episodes": worlds.len(),
            "answers": outcomes.len(),
            "backends": [{"name": b.name, "mean_score": b.mean_score, "ci95": b.ci95}],
        });
        store.finish_run(self.run_id, status, &rfc3339(SystemTime::now()), Some(&summary))?;
        Ok((b, status))
    }
}

impl Submissions for StoredSubmissions {
    fn submitted(&self, episode_id: &str, inv: &Investigation) -> Result<(), String> {
        let w = self.fleet.world(episode_id).ok_or_else(|| format!("no episode '{episode_id}'"))?;
        let o = score_investigation(&w, inv);
        let answer = outcome_answer(&self.backend, &w, &o);
        {
            let store = self.store.lock().unwrap_or_else(|e| e.into_inner());
            store.put(self.run_id, &answer.artifact_name(), &answer).map_err(|e| format!("storing it: {e}"))?;
        }
        if let Some(f) = &self.file {
            f.submitted(episode_id, inv)?;
        }
        let mut outcomes = self.outcomes.lock().unwrap_or_else(|e| e.into_inner());
        outcomes.insert(episode_id.to_string(), o);
        self.count.send_replace(outcomes.len());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fleet_dirs_are_checked_line_by_line() {
        let dir = std::env::temp_dir().join(format!("fb-exam-{}", std::process::id()));
        super::super::bench::generate(&dir, 3, 4).expect("generate");
        let fleet = FleetDir::open(&dir).expect("opens");
        assert_eq!(fleet.len(), 3);
        let id = fleet.ids()[1].clone();
        assert_eq!(fleet.world(&id).map(|w| w.id), Some(id.clone()));
        assert!(fleet.open(&id).is_ok() && fleet.open("ep-nope").is_err());
        let text = std::fs::read_to_string(dir.join("episodes.jsonl")).expect("read");
        for (bad, why) in [
            (text.replacen(&id, "inv99999", 1), "does not match"),
            (format!("{text}{}\n", text.lines().next().unwrap_or_default()), "twice"),
            ("{\"episode_id\": \"ep00000\"}\n".to_string(), "not an investigate-mode"),
            (String::new(), "no episodes"),
        ] {
            std::fs::write(dir.join("episodes.jsonl"), bad).expect("write");
            let e = FleetDir::open(&dir).expect_err("refused");
            assert!(e.to_string().contains(why), "{e}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
