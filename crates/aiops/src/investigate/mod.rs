//! Investigate mode: an operator starts from an alert and pulls what it
//! needs through tools ([`tools`]) until it submits a diagnosis.

pub mod tools;

pub use tools::{Budget, Ended, Investigation, ToolReply, ToolSpec, Toolset, TOOL_NAMES};
