//! What discovery sweeps: the listing (`user` or `admin`), its scopes, and their cursors.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::UnknownName;

/// Which Webex listing is swept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// `GET /v1/recordings`.
    User,
    /// `GET /v1/admin/recordings`, once per site.
    Admin,
}

/// A discovery scope: `user`, or `admin:<siteUrl>`. Each has its own cursors.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct ScopeKey(pub String);

impl ScopeKey {
    /// The user listing.
    pub fn user() -> Self {
        Self("user".into())
    }
    /// The admin listing of one site.
    pub fn admin(site_url: &str) -> Self {
        Self(format!("admin:{site_url}"))
    }
}

impl fmt::Display for ScopeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The two cursors of a scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CursorKind {
    /// The live edge, moved by `run` and `sync`.
    Sync,
    /// Older history, moved by `backfill`.
    Backfill,
}

impl CursorKind {
    /// The name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sync => "sync",
            Self::Backfill => "backfill",
        }
    }

    /// The kind named `text` (as [`CursorKind::as_str`] spells it).
    pub fn parse(text: &str) -> Result<Self, UnknownName> {
        match text {
            "sync" => Ok(Self::Sync),
            "backfill" => Ok(Self::Backfill),
            other => Err(UnknownName { what: "cursor kind", name: other.to_owned() }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_kind_names_round_trip_and_unknown_ones_are_refused() {
        for kind in [CursorKind::Sync, CursorKind::Backfill] {
            assert_eq!(CursorKind::parse(kind.as_str()), Ok(kind));
        }
        assert_eq!(CursorKind::parse("later").unwrap_err().to_string(), "unknown cursor kind \"later\"");
    }
}
