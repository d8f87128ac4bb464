//! The contract of a stored JSON document: every artifact kept beside a run
//! (a sweep level, a price, an energy report, an arena answer) is one Rust
//! type implementing [`Artifact`], written and read through the store's
//! typed methods (`Store::put`, `Store::get_all`). The type lives in the
//! crate that owns the data; the kind names the table rows it occupies.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// A JSON document stored beside a run under a fixed kind.
pub trait Artifact: Serialize + DeserializeOwned {
    /// The `kind` column this type is stored under.
    const KIND: &'static str;
}
