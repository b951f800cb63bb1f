//! Progress of long work (`sync`, `backfill`, `demo`): a live display (indicatif) when
//! stderr is a terminal, otherwise a log line at a steady interval. Nothing goes to stdout.

use std::io::IsTerminal;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::archive::Progress;
use crate::discovery::WindowDone;
use crate::state::ScopeKey;
use crate::telemetry::LogsAboveProgress;

/// Interval of progress log lines when stderr is not a terminal.
const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// The live display: a discovery spinner above the archive bar, with log lines above both.
struct Bars {
    discovery: ProgressBar,
    archive: ProgressBar,
    /// Log lines are written above the display while it is shown.
    _logs: LogsAboveProgress,
}

/// A running progress display; ends on [`ProgressDisplay::finish`] or drop.
pub struct ProgressDisplay {
    bars: Option<Bars>,
    progress: Arc<Progress>,
    total: Arc<Mutex<u64>>,
    ticker: Option<tokio::task::JoinHandle<()>>,
}

impl ProgressDisplay {
    /// Starts showing `progress` for the command `label`.
    pub fn start(label: &'static str, progress: Arc<Progress>) -> Self {
        let total = Arc::new(Mutex::new(0u64));
        let started = Instant::now();
        if std::io::stderr().is_terminal() {
            let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
            let discovery = multi.add(ProgressBar::new_spinner());
            discovery.set_style(
                ProgressStyle::with_template("{spinner} {prefix}: {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            discovery.set_prefix("discovery");
            discovery.set_message("starting");
            discovery.enable_steady_tick(Duration::from_millis(200));
            let archive = multi.add(ProgressBar::new(0));
            archive.set_style(
                ProgressStyle::with_template("{prefix}: [{bar:30}] {pos}/{len} recordings  {msg}  eta {eta}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            archive.set_prefix("archive");
            let ticker = {
                let archive = archive.clone();
                let progress = progress.clone();
                tokio::spawn(async move {
                    loop {
                        let done = progress.archived.load(Ordering::Relaxed)
                            + progress.finished_otherwise.load(Ordering::Relaxed);
                        archive.set_position(done);
                        archive.set_message(rate(progress.bytes.load(Ordering::Relaxed), started.elapsed()));
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                })
            };
            let logs = LogsAboveProgress::new(&multi);
            Self { bars: Some(Bars { discovery, archive, _logs: logs }), progress, total, ticker: Some(ticker) }
        } else {
            let ticker = {
                let progress = progress.clone();
                let total = total.clone();
                tokio::spawn(async move {
                    loop {
                        tokio::time::sleep(LOG_INTERVAL).await;
                        let total = *total.lock().unwrap_or_else(|e| e.into_inner());
                        tracing::info!(
                            command = label,
                            archived = progress.archived.load(Ordering::Relaxed),
                            failed_or_not_downloadable = progress.finished_otherwise.load(Ordering::Relaxed),
                            to_do = total,
                            transfer = %rate(progress.bytes.load(Ordering::Relaxed), started.elapsed()),
                            "progress"
                        );
                    }
                })
            };
            Self { bars: None, progress, total, ticker: Some(ticker) }
        }
    }

    /// A discovery window is done.
    pub fn window(&self, scope: &ScopeKey, done: WindowDone) {
        match &self.bars {
            Some(Bars { discovery, .. }) => discovery.set_message(format!(
                "{scope}: window {}/{} up to {}, {} recordings seen",
                done.windows_done,
                done.windows_total,
                done.position.format("%Y-%m-%d"),
                done.recordings
            )),
            None if done.windows_done == done.windows_total || done.windows_done.is_multiple_of(10) => tracing::info!(
                scope = %scope,
                windows_done = done.windows_done,
                windows_total = done.windows_total,
                position = %done.position,
                recordings = done.recordings,
                "discovery progress"
            ),
            None => {}
        }
    }

    /// The number of recordings the archive phase has to do.
    pub fn set_total(&self, total: u64) {
        *self.total.lock().unwrap_or_else(|e| e.into_inner()) = total;
        if let Some(Bars { discovery, archive, .. }) = &self.bars {
            discovery.finish_with_message("done");
            archive.set_length(total);
        }
    }

    /// Stops the display.
    pub fn finish(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(ticker) = self.ticker.take() {
            ticker.abort();
        }
        if let Some(Bars { discovery, archive, .. }) = self.bars.take() {
            let done = self.progress.archived.load(Ordering::Relaxed)
                + self.progress.finished_otherwise.load(Ordering::Relaxed);
            archive.set_position(done);
            discovery.finish_and_clear();
            archive.finish();
        }
    }
}

impl Drop for ProgressDisplay {
    fn drop(&mut self) {
        self.stop();
    }
}

fn rate(bytes: u64, elapsed: Duration) -> String {
    let mib = bytes as f64 / (1u64 << 20) as f64;
    let secs = elapsed.as_secs_f64().max(1e-3);
    format!("{mib:.1} MiB, {:.1} MiB/s", mib / secs)
}
