//! Typed records: every JSON artifact stored with a run has one Rust type,
//! used by the code that writes it and the code that reads it, declared in
//! the crate that owns the data (the arena's here in [`arena`], sweep levels
//! in `fleetbench-load`, prices and energy in `fleetbench-econ`). The kind
//! each type is stored under is its [`Artifact::KIND`]; [`Store::put`] and
//! [`Store::get_all`] are how the rest of fleetbench touches the artifacts
//! table.

pub mod arena;

pub use fleetbench_core::record::Artifact;

use crate::{Result, Store, StoreError};

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
        self.get_each::<A>(run_id)?
            .into_iter()
            .map(|(name, a)| match a {
                Ok(a) => Ok((name, a)),
                Err(e) => Err(StoreError::Corrupt { run: run_id, why: format!("artifact {}/{name}: {e}", A::KIND) }),
            })
            .collect()
    }

    /// Every artifact of type `A` for `run_id`, each read on its own: a
    /// document that does not read as `A` comes back as its error, so that a
    /// reader can show the others and say which it skipped.
    pub fn get_each<A: Artifact>(&self, run_id: i64) -> Result<Vec<(String, std::result::Result<A, String>)>> {
        Ok(self
            .artifacts(run_id, A::KIND)?
            .into_iter()
            .map(|(name, v)| {
                let a = serde_json::from_value(v).map_err(|e| e.to_string());
                (name, a)
            })
            .collect())
    }

    /// The first artifact of type `A` for `run_id`, by name order.
    pub fn get_first<A: Artifact>(&self, run_id: i64) -> Result<Option<A>> {
        Ok(self.get_all::<A>(run_id)?.into_iter().next().map(|(_, a)| a))
    }
}
