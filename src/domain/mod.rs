//! Domain types: what the archiver stores and reasons about, apart from any wire format
//! (Webex's JSON lives in `webex::models`) or storage format (SQL lives in `state`).
//!
//! This module is a leaf: it depends on no other module of the crate, so every layer
//! (settings, the Webex client, the state store, the pipeline) can share its types.

pub mod key;
mod recording;
mod scope;

pub use key::{KeyInputs, KeyTemplate};
pub use recording::{ArchiveState, FileKind, RecordingId, SourceStatus};
pub use scope::{CursorKind, Scope, ScopeKey};

/// A stored name (a state, a cursor kind) that names nothing known.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {name:?}")]
pub struct UnknownName {
    /// What kind of name it should have been, e.g. `state`.
    pub what: &'static str,
    /// The name as found.
    pub name: String,
}
