//! Model mixes: `--model a,b,c[:WEIGHTS]` spreads a run's requests (or a
//! session workload's sessions, whole) over several served models or LoRA
//! adapters. `a,b,c` weighs them equally; `a,b,c:5,3,2` draws a for half of
//! the requests, b for 30 %, c for 20 %. Which model request `i` (or
//! session `i`) goes to is a pure function of the seed and `i`.

use fleetbench_core::{ChatMessage, RequestSpec, SamplingParams};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::session::SessionPlan;
use crate::text::{hash_str, mix};
use crate::workload::Workload;

/// A parsed `--model` value: each model and its weight (summing to 1).
#[derive(Debug, Clone, PartialEq)]
pub struct ModelMix {
    pub models: Vec<(String, f64)>,
}

impl ModelMix {
    /// Parses `a`, `a,b,c` or `a,b,c:5,3,2`. A colon starts the weights
    /// only when what follows the last one is a list of as many numbers as
    /// there are models, so model names with tags (`llama3:8b`) stay whole.
    pub fn parse(s: &str) -> Result<ModelMix, String> {
        let (names, weights) = match s.rsplit_once(':') {
            Some((names, w)) => {
                let parsed: Result<Vec<f64>, _> = w.split(',').map(|x| x.trim().parse::<f64>()).collect();
                match parsed {
                    Ok(ws) if ws.len() == names.split(',').count() => (names, Some(ws)),
                    Ok(ws) if names.contains(',') => {
                        return Err(format!(
                            "{} weights for {} models: give one weight per model",
                            ws.len(),
                            names.split(',').count()
                        ))
                    }
                    _ => (s, None),
                }
            }
            None => (s, None),
        };
        let names: Vec<String> = names.split(',').map(|n| n.trim().to_string()).collect();
        if names.iter().any(String::is_empty) {
            return Err("a model name is empty: give names separated by commas, e.g. a,b,c".into());
        }
        let weights = weights.unwrap_or_else(|| vec![1.0; names.len()]);
        if weights.iter().any(|w| !(w.is_finite() && *w >= 0.0)) || weights.iter().sum::<f64>() <= 0.0 {
            return Err("weights are numbers of at least 0, not all 0".into());
        }
        let total: f64 = weights.iter().sum();
        Ok(ModelMix { models: names.into_iter().zip(weights.into_iter().map(|w| w / total)).collect() })
    }

    /// The first model (the client's own, used for probing).
    pub fn first(&self) -> &str {
        &self.models[0].0
    }

    pub fn is_mix(&self) -> bool {
        self.models.len() > 1
    }

    /// The model drawn for key `k`.
    fn pick(&self, seed: u64, k: u64) -> &str {
        let u: f64 = ChaCha8Rng::seed_from_u64(mix(seed, k)).random();
        let mut acc = 0.0;
        for (name, w) in &self.models {
            acc += w;
            if u < acc {
                return name;
            }
        }
        &self.models[self.models.len() - 1].0
    }

    pub fn describe(&self) -> String {
        let names: Vec<&str> = self.models.iter().map(|(n, _)| n.as_str()).collect();
        let weights: Vec<String> =
            self.models.iter().map(|(_, w)| format!("{}", (w * 1000.0).round() / 1000.0)).collect();
        format!("{}:{}", names.join(","), weights.join(","))
    }
}

/// A workload whose requests (or sessions) each name the model they go to.
pub struct Mixed {
    inner: Box<dyn Workload>,
    mix: ModelMix,
    seed: u64,
}

impl Mixed {
    pub fn new(inner: Box<dyn Workload>, mix: ModelMix, seed: u64) -> Mixed {
        Mixed { inner, mix, seed }
    }
}

const TAG_MODEL: u64 = 9 << 60;

impl Workload for Mixed {
    fn request(&self, index: u64, sampling: &SamplingParams) -> RequestSpec {
        let mut spec = self.inner.request(index, sampling);
        spec.context.model = Some(self.mix.pick(self.seed ^ TAG_MODEL, index).to_string());
        spec
    }

    fn describe(&self) -> String {
        format!("{} over models {}", self.inner.describe(), self.mix.describe())
    }

    fn distinct_requests(&self) -> Option<u64> {
        self.inner.distinct_requests()
    }

    fn session(&self, index: u64) -> Option<SessionPlan> {
        self.inner.session(index)
    }

    /// Every turn of a session goes to the model its session drew.
    fn turn(
        &self,
        session: &SessionPlan,
        turn: u32,
        history: &[ChatMessage],
        history_tokens: u32,
        sampling: &SamplingParams,
    ) -> RequestSpec {
        let mut spec = self.inner.turn(session, turn, history, history_tokens, sampling);
        spec.context.model = Some(self.mix.pick(self.seed ^ TAG_MODEL, hash_str(&session.id)).to_string());
        spec
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::SyntheticWorkload;

    #[test]
    fn grammar_weights_and_tags() {
        let m = ModelMix::parse("a,b,c:5,3,2").unwrap();
        assert_eq!(m.models, [("a".to_string(), 0.5), ("b".to_string(), 0.3), ("c".to_string(), 0.2)]);
        assert_eq!(ModelMix::parse("a,b").unwrap().models[1].1, 0.5);
        // A tag is part of the name; a lone model is no mix.
        let t = ModelMix::parse("llama3:8b").unwrap();
        assert_eq!((t.first(), t.is_mix()), ("llama3:8b", false));
        assert_eq!(ModelMix::parse("qwen:7b,llama3:8b").unwrap().models[0].0, "qwen:7b");
        assert!(ModelMix::parse("a,b,c:1,2").unwrap_err().contains("one weight per model"));
        assert!(ModelMix::parse("a,,b").unwrap_err().contains("empty"));
        assert!(ModelMix::parse("a,b:0,0").unwrap_err().contains("not all 0"));
    }

    #[test]
    fn requests_spread_by_weight_and_seed() {
        let mix = ModelMix::parse("a,b,c:5,3,2").unwrap();
        let w = Mixed::new(Box::new(SyntheticWorkload::new(16, 4, 0.0, 1)), mix.clone(), 7);
        let sp = SamplingParams::default();
        let picks: Vec<String> = (0..4000).map(|i| w.request(i, &sp).context.model.unwrap()).collect();
        let share = |m: &str| picks.iter().filter(|p| *p == m).count() as f64 / 4000.0;
        assert!((share("a") - 0.5).abs() < 0.03 && (share("b") - 0.3).abs() < 0.03, "{} {}", share("a"), share("b"));
        let again = Mixed::new(Box::new(SyntheticWorkload::new(16, 4, 0.0, 1)), mix, 7);
        assert_eq!(again.request(17, &sp).context.model.as_deref(), Some(picks[17].as_str()));
    }
}
