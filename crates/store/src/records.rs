//! Typed records: every JSON artifact stored with a run has one Rust type
//! here (or in a submodule), used by the code that writes it and the code
//! that reads it. The kind each type is stored under is its
//! [`Artifact::KIND`]; [`Store::put`] and [`Store::get_all`] are the only
//! ways the rest of fleetbench touches the artifacts table.

pub mod arena;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::{Result, Store, StoreError};

/// A JSON document stored beside a run under a fixed kind.
pub trait Artifact: Serialize + DeserializeOwned {
    /// The `kind` column this type is stored under.
    const KIND: &'static str;
}

impl Store {
    /// Stores `value` as the artifact `name` of its kind for `run_id`
    /// (replacing one of the same name).
    pub fn put<A: Artifact>(&self, run_id: i64, name: &str, value: &A) -> Result<()> {
        let json = serde_json::to_value(value)
            .map_err(|e| StoreError::Corrupt { run: run_id, why: format!("artifact {}/{name}: {e}", A::KIND) })?;
        self.put_artifact(run_id, A::KIND, name, &json)
    }

    /// Every artifact of type `A` stored for `run_id`, as (name, value), in
    /// name order. A document that does not read as `A` is an error that
    /// names the run, the kind and the artifact.
    pub fn get_all<A: Artifact>(&self, run_id: i64) -> Result<Vec<(String, A)>> {
        self.artifacts(run_id, A::KIND)?
            .into_iter()
            .map(|(name, v)| {
                serde_json::from_value(v)
                    .map(|a| (name.clone(), a))
                    .map_err(|e| StoreError::Corrupt { run: run_id, why: format!("artifact {}/{name}: {e}", A::KIND) })
            })
            .collect()
    }

    /// The first artifact of type `A` for `run_id`, by name order.
    pub fn get_first<A: Artifact>(&self, run_id: i64) -> Result<Option<A>> {
        Ok(self.get_all::<A>(run_id)?.into_iter().next().map(|(_, a)| a))
    }
}
