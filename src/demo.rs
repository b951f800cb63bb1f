//! `webex-archiver demo`: the whole pipeline on one machine with nothing installed. It
//! starts the Webex simulator in-process with a realistic population and a few faults,
//! runs a full `sync` into the embedded default (SQLite and a local directory under the
//! data directory), checks every archived file against the simulator's truth, and prints
//! a short report.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context as _;
use chrono::Utc;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use crate::app::{self, Services};
use crate::config::{Needs, Settings, Sources};
use crate::domain::ArchiveState;
use crate::sim::{Burst429, FaultAction, FaultEndpoint, FaultRule, RetryAfterFormat, SimConfig, Simulator};

/// Marks a directory as the demo's own, so a later run may clear it.
const MARKER: &str = ".webex-archiver-demo";

/// Demo options.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// The data directory (`--data-dir`); the demo works in its `demo/` subdirectory.
    pub data_dir: PathBuf,
    /// Recordings in the simulated org.
    pub recordings: usize,
    /// A fixed recording size in bytes; `None` = varied sizes (256 KiB to 4 MiB).
    pub size: Option<u64>,
    /// A harsher fault mix: 10% server errors, resets and stalls on top of the usual few.
    pub faults: bool,
}

/// What the demo found, for its report and its exit status.
#[derive(Debug, Default)]
pub struct DemoReport {
    /// Recordings the simulated org has (all sites).
    pub found: usize,
    /// Recordings that should be archived (downloadable).
    pub downloadable: usize,
    /// Archived with the simulator's SHA-256.
    pub archived_ok: usize,
    /// Archived with another SHA-256 (must be 0).
    pub mismatched: Vec<String>,
    /// Downloadable but not archived (must be 0).
    pub missing: Vec<String>,
    /// Not downloadable, with the reason recorded.
    pub not_downloadable: Vec<(String, String)>,
    /// Bytes archived.
    pub bytes: u64,
    /// Seconds the sync took.
    pub seconds: f64,
    /// 429s the simulator sent.
    pub rate_limited: u64,
    /// Requests sent before a Retry-After had passed (must be 0).
    pub violations: u64,
    /// Bearer tokens seen on the download host (must be 0).
    pub token_leaks: u64,
    /// Faults the simulator applied, per kind.
    pub faults: BTreeMap<String, u64>,
    /// `verify --all` found nothing wrong.
    pub verify_clean: bool,
    /// Where the files and the state are.
    pub archive_dir: PathBuf,
    /// The SQLite file.
    pub state_file: PathBuf,
}

impl DemoReport {
    /// Everything that should be archived is, correctly, and the client behaved.
    pub fn success(&self) -> bool {
        self.mismatched.is_empty()
            && self.missing.is_empty()
            && self.archived_ok == self.downloadable
            && self.violations == 0
            && self.token_leaks == 0
            && self.verify_clean
    }

    /// The printed report.
    pub fn text(&self) -> String {
        let mib = self.bytes as f64 / (1u64 << 20) as f64;
        let mut out = String::new();
        let _ = writeln!(out, "webex-archiver demo (a simulated Webex org, archived into the embedded default)");
        let _ = writeln!(out, "  recordings found        {}", self.found);
        let _ = writeln!(
            out,
            "  archived                {} of {} downloadable, {mib:.1} MiB in {:.1} s ({:.1} MiB/s)",
            self.archived_ok,
            self.downloadable,
            self.seconds,
            mib / self.seconds.max(1e-3)
        );
        for (id, reason) in &self.not_downloadable {
            let _ = writeln!(out, "  not downloadable        {id}: {reason}");
        }
        let _ = writeln!(
            out,
            "  429s honoured           {} (requests sent before Retry-After had passed: {})",
            self.rate_limited, self.violations
        );
        let faults: Vec<String> = self.faults.iter().map(|(k, v)| format!("{k} x{v}")).collect();
        let _ = writeln!(
            out,
            "  faults survived         {}",
            if faults.is_empty() { "none".into() } else { faults.join(", ") }
        );
        let _ = writeln!(out, "  tokens sent to the download host: {}", self.token_leaks);
        let _ = writeln!(
            out,
            "  SHA-256 vs the simulator: {} match, {} differ, {} missing; verify --all: {}",
            self.archived_ok,
            self.mismatched.len(),
            self.missing.len(),
            if self.verify_clean { "clean" } else { "PROBLEMS" }
        );
        for id in &self.mismatched {
            let _ = writeln!(out, "  MISMATCH                {id}");
        }
        for id in &self.missing {
            let _ = writeln!(out, "  NOT ARCHIVED            {id}");
        }
        let _ = writeln!(out, "  files                   {}", self.archive_dir.display());
        let _ = writeln!(out, "  state                   {}", self.state_file.display());
        let _ = writeln!(out, "{}", if self.success() { "demo: OK" } else { "demo: FAILED" });
        out
    }
}

/// SHA-256 (hex) and size of a file, read in blocks.
fn hash_file(path: &Path) -> std::io::Result<(String, u64)> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut block = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut block)?;
        if n == 0 {
            return Ok((hex::encode(hasher.finalize()), size));
        }
        hasher.update(&block[..n]);
        size += n as u64;
    }
}

/// Prepares `<data_dir>/demo`, clearing a previous demo's files (only if it is one).
fn prepare_dir(data_dir: &Path) -> anyhow::Result<PathBuf> {
    let dir = data_dir.join("demo");
    if dir.exists() {
        anyhow::ensure!(
            dir.join(MARKER).exists(),
            "{} exists and was not made by the demo; remove it or choose another --data-dir",
            dir.display()
        );
        std::fs::remove_dir_all(&dir).with_context(|| format!("clearing the previous demo in {}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("{}: cannot create the demo directory", dir.display()))?;
    std::fs::write(dir.join(MARKER), b"made by webex-archiver demo; cleared by the next demo run\n")
        .with_context(|| format!("{}: the data directory is not writable", dir.display()))?;
    Ok(dir)
}

/// The simulated org: 3 sites, several hosts and formats, a few faults.
fn scenario(options: &DemoOptions) -> SimConfig {
    let mut config = SimConfig {
        seed: 2026,
        recordings: options.recordings,
        size_min: 256 << 10,
        size_max: 4 << 20,
        size: options.size,
        share_to_me_fraction: 0.3,
        burst_429: Some(Burst429 {
            requests: Some(4),
            duration: None,
            retry_after: 1,
            retry_after_format: RetryAfterFormat::Seconds,
            retry_after_raw: None,
        }),
        ..SimConfig::default()
    };
    config.span = std::time::Duration::from_secs(30 * 86_400);
    config
}

/// Runs the demo and returns its report.
pub async fn run(options: DemoOptions, stop: &CancellationToken) -> anyhow::Result<DemoReport> {
    let dir = prepare_dir(&options.data_dir)?;
    let sim = Simulator::start(scenario(&options)).await.context("starting the simulator")?;
    // A few faults on named recordings: one truncated download, one login page instead of
    // the media, one recording with "Prevent downloading".
    let ids: Vec<String> = sim.truth().iter().map(|r| r.id.clone()).collect();
    let mut faults = Vec::new();
    if ids.len() >= 3 {
        faults.push(FaultRule::new(FaultAction::ShortBody { after_bytes: 10_000 }).ids([ids[0].clone()]).times(1));
        faults.push(FaultRule::new(FaultAction::LoginPage).ids([ids[1].clone()]).times(1));
    }
    if options.faults {
        faults.push(
            FaultRule::new(FaultAction::ApiError { status: 503 }).endpoint(FaultEndpoint::Details).probability(0.1),
        );
        faults.push(FaultRule::new(FaultAction::Reset { after_bytes: 100_000 }).probability(0.1));
        faults.push(
            FaultRule::new(FaultAction::Stall { after_bytes: 50_000, duration: std::time::Duration::from_millis(500) })
                .probability(0.05),
        );
    }
    sim.set_faults(faults);
    sim.add_recording(crate::sim::NewRecording {
        create_time: Utc::now() - chrono::Duration::days(2),
        prevent_downloading: true,
        topic: Some("Board meeting (download prevented)".into()),
        ..Default::default()
    })?;

    let env: BTreeMap<String, String> = [
        ("WEBEX_ARCHIVER__WEBEX__BASE_URL", sim.api_base_url()),
        // The simulator's download host is this machine, over plain http.
        ("WEBEX_ARCHIVER__WEBEX__DOWNLOAD_HOSTS", "127.0.0.1".into()),
        ("WEBEX_ARCHIVER__WEBEX__ACCESS_TOKEN", sim.access_token()),
        ("WEBEX_ARCHIVER__WEBEX__SCOPE", "admin".into()),
        ("WEBEX_ARCHIVER__SYNC__SINCE", "35d".into()),
        ("WEBEX_ARCHIVER__ARCHIVE__RETRY_BASE", "200ms".into()),
        ("WEBEX_ARCHIVER__ARCHIVE__RETRY_MAX", "2s".into()),
        ("WEBEX_ARCHIVER__HTTP__LISTEN", String::new()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let settings = Settings::load(&Sources { file: None, data_dir: Some(dir.clone()), env }, Needs::Webex)?;
    let archive_dir = match settings.storage_location() {
        crate::config::StorageLocation::File { path } => path,
        crate::config::StorageLocation::S3 { .. } => dir.join("archive"),
    };
    let state_file = dir.join("state.db");

    let started = Instant::now();
    let services = Services::build(settings, stop.clone()).await?;
    let sync = app::sync(&services, false, stop).await?;
    let seconds = started.elapsed().as_secs_f64();

    let truth = sim.truth();
    let rows = services.state.archived(None).await?;
    let archived: HashMap<&str, &crate::state::ArchivedRecord> =
        rows.iter().map(|r| (r.id.0.as_str(), &r.record)).collect();
    let mut report = DemoReport { found: truth.len(), seconds, archive_dir, state_file, ..Default::default() };
    for recording in &truth {
        if recording.prevent_downloading || recording.status != "available" {
            continue;
        }
        report.downloadable += 1;
        let Some(record) = archived.get(recording.id.as_str()) else {
            report.missing.push(recording.id.clone());
            continue;
        };
        // Re-read the file from the archive directory itself, not from the database.
        let path = report.archive_dir.join(&record.media_key);
        // Streamed: a recording of several GiB must not be read into memory.
        let (digest, size) = hash_file(&path).with_context(|| format!("reading {}", path.display()))?;
        if Some(&digest) == recording.sha256.as_ref() {
            report.archived_ok += 1;
            report.bytes += size;
        } else {
            report.mismatched.push(recording.id.clone());
        }
    }
    for failure in &sync.status.recent_failures {
        if failure.state == ArchiveState::NotDownloadable {
            report.not_downloadable.push((failure.id.0.clone(), failure.message.clone().unwrap_or_default()));
        }
    }
    let counters = sim.counters();
    report.rate_limited = counters.rate_limited;
    report.violations = counters.violations;
    report.token_leaks = counters.token_leaks;
    report.faults = counters.faults_injected.clone();
    let verify = crate::verify::verify(&services.state, &services.store, None).await?;
    report.verify_clean = verify.clean();
    sim.shutdown().await;
    Ok(report)
}
