//! Why an attempt stopped without archiving its recording, classified once. What is
//! recorded for the recording ([`crate::state::Outcome`]) follows from it.

use std::error::Error;
use std::fmt;

use chrono::{DateTime, Utc};

use crate::state::StateError;
use crate::storage::StorageError;
use crate::webex::WebexError;

/// The cause of a failure: an error of a lower layer, or a message when nothing failed
/// below us (a short body, a page instead of the file).
pub type Cause = Box<dyn Error + Send + Sync + 'static>;

/// Why an attempt stopped without archiving the recording.
///
/// The first variants are the recording's own failures and count as an attempt; the
/// others are not its fault and give the claim back. Its message is that of its cause
/// (`Transient` and `Final` show their cause as themselves); print it with
/// [`crate::errors::ErrorChain`] for the whole story.
#[derive(Debug)]
pub enum AttemptError {
    /// May pass: try again later (counts as an attempt).
    Transient {
        /// Failure class, e.g. `truncated` (metrics label and `status` column).
        reason: String,
        /// What happened.
        cause: Cause,
    },
    /// Will not pass: the recording becomes `failed`.
    Final {
        /// Failure class, e.g. `conflict`.
        reason: String,
        /// What happened.
        cause: Cause,
    },
    /// No download link for this token: final, distinct from a failure.
    NotDownloadable(String),
    /// A download link was refused (401/403/404/410, or a page served instead of the
    /// file): the attempt fetches fresh links; a refusal that outlasts them is `Transient`.
    LinkRejected(String),
    /// The download site asked us to come back at a given time (not the recording's fault).
    RetryAt(DateTime<Utc>),
    /// The database is unavailable: the worker waits (not the recording's fault).
    Database(StateError),
    /// The archive store does not answer: the worker waits.
    StoreUnreachable(StorageError),
    /// Webex refuses this archiver's token, or no token can be obtained: every attempt
    /// would fail the same way, so the worker waits.
    Auth(WebexError),
    /// Shutdown cut the attempt short.
    Cancelled,
    /// Another worker holds the recording now (our lease expired): its result stands.
    LostLease,
}

impl AttemptError {
    /// A failure that may pass, of class `reason`.
    pub fn transient(reason: &str, cause: impl Into<Cause>) -> Self {
        Self::Transient { reason: reason.to_owned(), cause: cause.into() }
    }

    /// A failure that will not pass, of class `reason`.
    pub fn failed(reason: &str, cause: impl Into<Cause>) -> Self {
        Self::Final { reason: reason.to_owned(), cause: cause.into() }
    }

    /// A cause: `message`, because of `source`.
    pub fn context(message: impl Into<String>, source: impl Into<Cause>) -> Cause {
        Box::new(Context { message: message.into(), source: source.into() })
    }

    /// Whether the worker should wait before claiming again: the database, the store or
    /// the token is unavailable for every recording alike.
    pub fn is_outage(&self) -> bool {
        matches!(self, Self::Database(_) | Self::StoreUnreachable(_) | Self::Auth(_))
    }

    /// Classifies a Webex API error (the recording's details).
    pub(crate) fn from_webex(e: WebexError) -> Self {
        match e {
            WebexError::Cancelled => Self::Cancelled,
            WebexError::Unauthorized { .. } | WebexError::Token(_) => Self::Auth(e),
            WebexError::Status { status: 404 | 410, .. } => Self::failed("gone", e),
            ref err if err.is_transient() => Self::transient("webex", e),
            WebexError::Parse { .. } => Self::transient("bad_response", e),
            other => Self::failed(&format!("http_{}", other.status().unwrap_or(0)), other),
        }
    }

    /// A store error that is this attempt's own (a key the store refuses): final.
    pub(crate) fn storage_final(e: StorageError) -> Self {
        Self::failed("storage", e)
    }
}

impl From<StateError> for AttemptError {
    fn from(e: StateError) -> Self {
        Self::Database(e)
    }
}

impl fmt::Display for AttemptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Transient { cause, .. } | Self::Final { cause, .. } => cause.fmt(f),
            Self::NotDownloadable(why) => f.write_str(why),
            Self::LinkRejected(why) => write!(f, "the download link was refused: {why}"),
            Self::RetryAt(at) => write!(f, "the download site asked to come back at {at}"),
            Self::Database(_) => f.write_str("the database is unavailable"),
            Self::StoreUnreachable(_) => f.write_str("the archive store is unreachable"),
            Self::Auth(e) => e.fmt(f),
            Self::Cancelled => f.write_str("cancelled by shutdown"),
            Self::LostLease => f.write_str("another worker took this recording over"),
        }
    }
}

impl Error for AttemptError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            // These show their cause as themselves: its sources are theirs.
            Self::Transient { cause, .. } | Self::Final { cause, .. } => cause.source(),
            Self::Auth(e) => e.source(),
            Self::Database(e) => Some(e),
            Self::StoreUnreachable(e) => Some(e),
            Self::NotDownloadable(_) | Self::LinkRejected(_) | Self::RetryAt(_) | Self::Cancelled | Self::LostLease => {
                None
            }
        }
    }
}

/// A message and the error it comes from.
#[derive(Debug)]
struct Context {
    message: String,
    source: Cause,
}

impl fmt::Display for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl Error for Context {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(self.source.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::errors::ErrorChain;

    #[test]
    fn the_whole_story_is_told_once() {
        let io = std::io::Error::other("No space left on device");
        let e = AttemptError::transient("storage", AttemptError::context("writing file:///a/b", io));
        assert_eq!(e.to_string(), "writing file:///a/b");
        assert_eq!(ErrorChain(&e).to_string(), "writing file:///a/b: No space left on device");

        let e = AttemptError::failed("conflict", "k already exists");
        assert_eq!(ErrorChain(&e).to_string(), "k already exists");
        assert!(e.source().is_none());
    }

    #[test]
    fn outages_are_told_apart_from_the_recording_s_failures() {
        let webex = WebexError::Unauthorized { tracking_id: None };
        assert!(AttemptError::from_webex(webex).is_outage());
        let gone = WebexError::Status { endpoint: "details", status: 404, message: "x".into(), tracking_id: None };
        assert!(matches!(AttemptError::from_webex(gone), AttemptError::Final { reason, .. } if reason == "gone"));
        assert!(!AttemptError::LostLease.is_outage() && !AttemptError::Cancelled.is_outage());
    }
}
