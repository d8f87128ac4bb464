//! The coding-swarm workload: 32 realistic single-module coding tasks (four
//! types × eight variants, from `data/coding_swarm.toml`) that a capable model
//! answers in about 1,500–4,000 tokens and ends by itself. Every request
//! opens with a unique ticket line so no two requests share a prefix, and
//! each sweep level starts at a different variant, so prefix caches cannot
//! flatter one level over another.

use std::collections::BTreeMap;

use fleetbench_core::{ChatMessage, Prompt, RequestSpec, SamplingParams};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Deserialize;

use crate::workload::{Workload, WorkloadError};

const DATA: &str = include_str!("../data/coding_swarm.toml");

/// Task types in the order requests cycle through them.
pub const TASK_TYPES: [&str; 4] = ["algorithm", "tests", "refactoring", "design"];

/// Output budget when the run sets none: room for the longest answers.
pub const DEFAULT_MAX_TOKENS: u32 = 4096;

#[derive(Deserialize)]
struct File {
    types: BTreeMap<String, TaskType>,
}

#[derive(Deserialize, Clone)]
struct TaskType {
    system: String,
    template: String,
    variants: Vec<String>,
}

/// The coding-swarm task set, shifted per sweep level.
#[derive(Clone)]
pub struct CodingSwarm {
    types: Vec<(String, TaskType)>,
    seed: u64,
    level_salt: u64,
}

impl CodingSwarm {
    pub fn builtin(seed: u64) -> Result<CodingSwarm, WorkloadError> {
        let file: File = toml::from_str(DATA).map_err(|e| WorkloadError::Synthetic {
            spec: "coding-swarm".into(),
            why: format!("embedded task file is invalid: {e}"),
        })?;
        let mut types = Vec::new();
        for name in TASK_TYPES {
            let t = file.types.get(name).cloned().ok_or_else(|| WorkloadError::Synthetic {
                spec: "coding-swarm".into(),
                why: format!("embedded task file lacks type {name}"),
            })?;
            types.push((name.to_string(), t));
        }
        Ok(CodingSwarm { types, seed, level_salt: 0 })
    }

    /// The same tasks, starting at another variant: give each sweep level
    /// its own index so levels draw disjoint variants where they can.
    pub fn for_level(&self, level_index: u64) -> CodingSwarm {
        CodingSwarm { level_salt: level_index, ..self.clone() }
    }

    /// (type, variant) of request `index`.
    pub fn task_of(&self, index: u64) -> (usize, usize) {
        let t = (index % self.types.len() as u64) as usize;
        let n = self.types[t].1.variants.len() as u64;
        let v = ((self.level_salt * 3 + index / self.types.len() as u64) % n) as usize;
        (t, v)
    }

    /// The task of request `index` without its ticket line: its type name,
    /// the type's system prompt, the task text and its label.
    pub fn task(&self, index: u64) -> (&str, &str, String, String) {
        let (t, v) = self.task_of(index);
        let (name, ty) = &self.types[t];
        (name, &ty.system, ty.template.replace("{task}", &ty.variants[v]), format!("{name}/{}", v + 1))
    }

    pub fn variant_count(&self) -> usize {
        self.types.iter().map(|(_, t)| t.variants.len()).sum()
    }
}

impl Workload for CodingSwarm {
    fn request(&self, index: u64, sampling: &SamplingParams) -> RequestSpec {
        let (_, system, task, label) = self.task(index);
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed ^ (self.level_salt << 32) ^ index);
        let ticket: u32 = rng.random();
        let mut sampling = sampling.clone();
        sampling.max_tokens.get_or_insert(DEFAULT_MAX_TOKENS);
        RequestSpec {
            id: format!("swarm-{}-{index}", self.level_salt),
            prompt: Prompt::Messages(vec![
                ChatMessage { role: "system".into(), content: format!("Ticket {ticket:08x}. {system}") },
                ChatMessage { role: "user".into(), content: task },
            ]),
            sampling,
            expected_input_tokens: None,
            label: Some(label),
            context: Default::default(),
        }
    }

    fn describe(&self) -> String {
        "coding-swarm".into()
    }

    fn distinct_requests(&self) -> Option<u64> {
        Some(self.variant_count() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn four_types_of_eight_variants() {
        let w = CodingSwarm::builtin(1).unwrap();
        assert_eq!(w.variant_count(), 32);
        let mut seen = std::collections::BTreeSet::new();
        for i in 0..32 {
            seen.insert(w.task_of(i));
        }
        assert_eq!(seen.len(), 32, "32 requests cover every task once");
        let r = w.request(0, &SamplingParams::default());
        assert_eq!(r.sampling.max_tokens, Some(DEFAULT_MAX_TOKENS));
        assert_eq!(r.label.as_deref(), Some("algorithm/1"));
        assert!(!r.prompt.as_text().contains("{task}"));
    }

    #[test]
    fn no_two_requests_share_a_prefix_and_levels_shift_variants() {
        let w = CodingSwarm::builtin(1).unwrap();
        let a = w.request(0, &SamplingParams::default()).prompt.as_text();
        let b = w.for_level(1).request(0, &SamplingParams::default()).prompt.as_text();
        assert_ne!(a[..16], b[..16]);
        // A level of 4 agents' first round uses other variants than level 0's.
        let l0: Vec<_> = (0..4).map(|i| w.task_of(i)).collect();
        let l1: Vec<_> = (0..4).map(|i| w.for_level(1).task_of(i)).collect();
        assert!(l0.iter().all(|t| !l1.contains(t)));
    }
}
