//! Logging, set up once: an `EnvFilter` (RUST_LOG, else `log.filter`), human-readable
//! lines on a terminal, JSON lines for log shippers. Logs go to stderr; stdout is kept
//! for output that scripts read. While a live progress display is shown on the terminal,
//! log lines are written above it (see [`LogsAboveProgress`]).
//!
//! Errors are printed here too, with [`ErrorChain`]: an error's own message says what
//! failed, its `source()` chain says why, and each message is printed once.

use std::error::Error;
use std::fmt;
use std::io::{IsTerminal, Write};
use std::sync::RwLock;

use indicatif::MultiProgress;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

use crate::config::{LogFormat, LogSettings};

/// Installs the global subscriber. Calling it twice is harmless (the second call is ignored).
pub fn init(settings: &LogSettings, rust_log: Option<&str>) {
    let filter = rust_log
        .and_then(|f| EnvFilter::try_new(f).ok())
        .or_else(|| EnvFilter::try_new(&settings.filter).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(LogWriter);
    let _ = match settings.format {
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(false).try_init(),
        LogFormat::Pretty => builder.with_ansi(std::io::stderr().is_terminal()).try_init(),
    };
}

/// An error and its causes on one line, each message once: `what failed: why: root cause`.
///
/// Our error enums follow one rule: a variant with a `#[source]` does not repeat the
/// source in its own message, so the chain is where the whole story is told: in logs
/// (`error = %ErrorChain(&e)`), in failure messages stored in the database, and in what
/// a command prints. Some crates' errors (object_store's, serde's wrappers) do repeat
/// their source in their message: a cause whose text was already printed is skipped.
pub struct ErrorChain<'a>(pub &'a (dyn Error + 'static));

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut shown = self.0.to_string();
        f.write_str(&shown)?;
        let mut next = self.0.source();
        while let Some(cause) = next {
            let text = cause.to_string();
            if !text.is_empty() && !shown.contains(&text) {
                if shown.is_empty() {
                    f.write_str(&text)?;
                } else {
                    write!(f, ": {text}")?;
                }
                shown.push_str(&text);
            }
            next = cause.source();
        }
        Ok(())
    }
}

impl fmt::Debug for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The live progress display log lines are written above, if one is shown.
// NOTE: a process-wide slot, because the tracing subscriber that writes log lines is
// process-wide too: whoever shows a display on the terminal registers it here.
static PROGRESS: RwLock<Option<MultiProgress>> = RwLock::new(None);

/// While alive, log lines are written above the live progress display `bars` (which
/// is hidden for the write and drawn again below the line) instead of through it.
#[must_use = "log lines go above the display only while the guard lives"]
pub struct LogsAboveProgress(());

impl LogsAboveProgress {
    /// Routes log lines above `bars` until the guard is dropped.
    pub fn new(bars: &MultiProgress) -> Self {
        *PROGRESS.write().unwrap_or_else(|e| e.into_inner()) = Some(bars.clone());
        Self(())
    }
}

impl Drop for LogsAboveProgress {
    fn drop(&mut self) {
        *PROGRESS.write().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

/// The log writer: stderr, above the live progress display while one is shown.
#[derive(Debug, Clone, Copy)]
struct LogWriter;

impl<'a> MakeWriter<'a> for LogWriter {
    type Writer = LogWriter;

    fn make_writer(&'a self) -> Self::Writer {
        LogWriter
    }
}

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // The subscriber formats a whole event and writes it with one `write_all`: the
        // display is hidden once per line, not once per fragment.
        let bars = PROGRESS.read().unwrap_or_else(|e| e.into_inner()).clone();
        match bars {
            Some(bars) => bars.suspend(|| std::io::stderr().write_all(buf))?,
            None => std::io::stderr().write_all(buf)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] Middle);

    #[derive(Debug, thiserror::Error)]
    #[error("middle says: {0}")]
    struct Middle(#[source] std::io::Error);

    #[test]
    fn every_cause_is_printed_once() {
        let e = Outer(Middle(std::io::Error::other("disk full")));
        // `Middle` repeats its source (as some crates' errors do): printed once.
        assert_eq!(ErrorChain(&e).to_string(), "outer: middle says: disk full");
        let plain = std::io::Error::other("alone");
        assert_eq!(ErrorChain(&plain).to_string(), "alone");
    }

    #[test]
    fn our_errors_leave_their_source_to_the_chain() {
        use crate::archive::AttemptError;
        use crate::discovery::DiscoveryError;
        use crate::state::StateError;
        use crate::storage::StorageError;
        use crate::webex::{TokenError, WebexError};

        let json = || serde_json::from_str::<u8>("x").expect_err("not a number");
        let store = || object_store::Error::NotSupported { source: "the disk is full".into() };
        let errors: Vec<Box<dyn Error>> = vec![
            Box::new(StateError::Database(sqlx::Error::PoolTimedOut)),
            Box::new(StateError::StoredJson(json())),
            Box::new(StorageError::Store { operation: "put", key: "s3://b/k".into(), source: store() }),
            Box::new(WebexError::Token(TokenError::Unreadable(json()))),
            Box::new(WebexError::Token(TokenError::store(
                "cannot store the refreshed tokens",
                StateError::Corrupt("x".into()),
            ))),
            Box::new(DiscoveryError::State(StateError::Database(sqlx::Error::PoolTimedOut))),
            Box::new(DiscoveryError::Sites(WebexError::Token(TokenError::Unreadable(json())))),
            Box::new(AttemptError::Database(StateError::Database(sqlx::Error::PoolTimedOut))),
            Box::new(AttemptError::StoreUnreachable(StorageError::Store {
                operation: "probe",
                key: "s3://b".into(),
                source: store(),
            })),
            Box::new(AttemptError::transient(
                "storage",
                StorageError::Store { operation: "put", key: "s3://b/k".into(), source: store() },
            )),
        ];
        for e in &errors {
            let own = e.to_string();
            let source = e.source().map(ToString::to_string).unwrap_or_else(|| panic!("{own:?} has no source"));
            assert!(!own.contains(&source), "{own:?} repeats its source {source:?}");
            let chain = ErrorChain(e.as_ref()).to_string();
            assert!(chain.starts_with(&format!("{own}: {source}")), "{chain:?}");
        }
        let e = &errors[2];
        assert_eq!(
            ErrorChain(e.as_ref()).to_string(),
            "s3://b/k: put failed: Operation not supported: the disk is full",
            "a cause printed by its wrapper is not printed again"
        );
    }
}
