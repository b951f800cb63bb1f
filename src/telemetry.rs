//! Logging, set up once: an `EnvFilter` (RUST_LOG, else `log.filter`), human-readable
//! lines on a terminal, JSON lines for log shippers. Logs go to stderr; stdout is kept
//! for output that scripts read. While a live progress display is shown on the terminal,
//! log lines are written above it (see [`LogsAboveProgress`]).

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
