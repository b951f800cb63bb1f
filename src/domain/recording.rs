//! A recording: its id, where it is in its life, and which of its files are archived.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::UnknownName;

/// A Webex recording id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct RecordingId(pub String);

impl fmt::Display for RecordingId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where a recording is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ArchiveState {
    /// Listed, waiting for a worker (now or at `next_attempt_at`).
    Pending,
    /// Claimed by a worker holding a lease.
    Archiving,
    /// Every file and `metadata.json` are stored and checked. Final.
    Archived,
    /// Gave up: attempts exhausted or a final error. `retry` makes it due again.
    Failed,
    /// No download link for this token (e.g. "Prevent downloading"). Final.
    NotDownloadable,
    /// Deleted or purged in Webex before it could be archived: the source no longer
    /// serves it. Final.
    LostAtSource,
}

impl ArchiveState {
    /// Every state, in life order.
    pub const ALL: [Self; 6] =
        [Self::Pending, Self::Archiving, Self::Archived, Self::Failed, Self::NotDownloadable, Self::LostAtSource];

    /// The name stored in the database and shown by `status`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Archiving => "archiving",
            Self::Archived => "archived",
            Self::Failed => "failed",
            Self::NotDownloadable => "not_downloadable",
            Self::LostAtSource => "lost_at_source",
        }
    }

    /// The state named `text` (as [`ArchiveState::as_str`] spells it).
    pub fn parse(text: &str) -> Result<Self, UnknownName> {
        Self::ALL
            .into_iter()
            .find(|s| s.as_str() == text)
            .ok_or_else(|| UnknownName { what: "state", name: text.to_owned() })
    }
}

/// A status a recording can have at the source that means it is gone there: Webex's
/// listings take it as `status` (`available`, the default, is not one of these).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceStatus {
    /// In the recycle bin (restorable for a while).
    Deleted,
    /// Removed from the recycle bin: only a Compliance Officer sees it listed.
    Purged,
}

impl SourceStatus {
    /// Both, in the order a deletion sweep lists them.
    pub const ALL: [Self; 2] = [Self::Deleted, Self::Purged];

    /// The `status` value of the listings, and the name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Deleted => "deleted",
            Self::Purged => "purged",
        }
    }

    /// The status named `text`.
    pub fn parse(text: &str) -> Result<Self, UnknownName> {
        Self::ALL
            .into_iter()
            .find(|s| s.as_str() == text)
            .ok_or_else(|| UnknownName { what: "source status", name: text.to_owned() })
    }
}

/// Which files of a recording are archived.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FileKind {
    /// The MP4/ARF recording.
    Recording,
    /// The audio track.
    Audio,
    /// The transcript.
    Transcript,
}

impl FileKind {
    /// The name used in keys, `metadata.json` and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Recording => "recording",
            Self::Audio => "audio",
            Self::Transcript => "transcript",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_names_round_trip_and_unknown_ones_are_refused() {
        for state in ArchiveState::ALL {
            assert_eq!(ArchiveState::parse(state.as_str()), Ok(state));
        }
        let unknown = ArchiveState::parse("lost").unwrap_err();
        assert_eq!(unknown.to_string(), "unknown state \"lost\"");
    }
}
