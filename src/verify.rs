//! `verify`: re-read archived objects, recompute their SHA-256, and compare them with the
//! database and with `metadata.json`; report missing, corrupt and unclaimed objects.

use std::collections::BTreeSet;

use futures::{StreamExt, TryStreamExt};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::archive::Metadata;
use crate::state::{ArchivedRow, RecordingId, State, StateError};
use crate::storage::{StorageError, Store};

/// Recordings checked at once.
const PARALLEL: usize = 4;
/// Archived recordings read from the database at once by `verify`.
const BATCH: u32 = 500;

/// What `verify` found.
#[derive(Debug, Default, Serialize)]
pub struct VerifyReport {
    /// Archived recordings checked.
    pub checked: usize,
    /// Of which every file matched.
    pub ok: usize,
    /// Files the database or metadata.json names that are not in the store.
    pub missing: Vec<Problem>,
    /// Files whose content does not hash to the recorded SHA-256.
    pub corrupt: Vec<Problem>,
    /// metadata.json absent, unreadable, or disagreeing with the database.
    pub metadata: Vec<Problem>,
    /// Objects whose Object Lock retention is missing or shorter than the database
    /// records, or without the legal hold it records.
    pub retention: Vec<Problem>,
    /// Objects under the prefix that no database row claims (only with `--all`).
    pub unclaimed: Vec<String>,
    /// Whether the unclaimed scan ran.
    pub scanned_for_unclaimed: bool,
}

impl VerifyReport {
    /// Each kind of problem found on recordings, with its label.
    pub fn problems(&self) -> [(&'static str, &Vec<Problem>); 4] {
        [
            ("missing", &self.missing),
            ("corrupt", &self.corrupt),
            ("metadata", &self.metadata),
            ("retention", &self.retention),
        ]
    }

    /// No problem of any kind.
    pub fn clean(&self) -> bool {
        self.missing.is_empty()
            && self.corrupt.is_empty()
            && self.metadata.is_empty()
            && self.retention.is_empty()
            && self.unclaimed.is_empty()
    }
}

/// One problem with one recording.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    /// Recording id.
    pub recording_id: String,
    /// Object key (relative to the storage prefix).
    pub key: String,
    /// What is wrong.
    pub detail: String,
}

/// Why `verify` could not run.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The database failed.
    #[error(transparent)]
    State(#[from] StateError),
    /// The store could not be listed or read (other than a missing object).
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Checks all archived recordings (`sample` = None) or a random sample; with `all`, also
/// lists the whole prefix for unclaimed objects.
pub async fn verify(state: &State, store: &Store, sample: Option<u32>) -> Result<VerifyReport, VerifyError> {
    verify_in_batches(state, store, sample, BATCH).await
}

/// [`verify`], reading the archived recordings `batch` at a time (by id), so that memory
/// does not grow with their number (only with the problems found). A sample is one batch.
pub async fn verify_in_batches(
    state: &State,
    store: &Store,
    sample: Option<u32>,
    batch: u32,
) -> Result<VerifyReport, VerifyError> {
    let mut report = VerifyReport::default();
    match sample {
        Some(n) => check_rows(store, &state.archived(Some(n)).await?, &mut report).await?,
        None => {
            let mut after: Option<RecordingId> = None;
            loop {
                let rows = state.archived_after(after.as_ref(), batch.max(1)).await?;
                let Some(last) = rows.last() else { break };
                after = Some(last.id.clone());
                check_rows(store, &rows, &mut report).await?;
            }
        }
    }
    if sample.is_none() {
        report.scanned_for_unclaimed = true;
        report.unclaimed = unclaimed(state, store).await?;
    }
    Ok(report)
}

/// Checks `rows`, a few at once, into `report`.
async fn check_rows(store: &Store, rows: &[ArchivedRow], report: &mut VerifyReport) -> Result<(), VerifyError> {
    report.checked += rows.len();
    let results: Vec<Result<Vec<Finding>, VerifyError>> =
        futures::stream::iter(rows.iter().map(|row| check_row(store, row))).buffer_unordered(PARALLEL).collect().await;
    for result in results {
        let findings = result?;
        if findings.is_empty() {
            report.ok += 1;
        }
        for finding in findings {
            match finding {
                Finding::Missing(p) => report.missing.push(p),
                Finding::Corrupt(p) => report.corrupt.push(p),
                Finding::Metadata(p) => report.metadata.push(p),
                Finding::Retention(p) => report.retention.push(p),
            }
        }
    }
    Ok(())
}

enum Finding {
    Missing(Problem),
    Corrupt(Problem),
    Metadata(Problem),
    Retention(Problem),
}

fn problem(row: &ArchivedRow, key: &str, detail: impl Into<String>) -> Problem {
    Problem { recording_id: row.id.0.clone(), key: key.to_owned(), detail: detail.into() }
}

async fn check_row(store: &Store, row: &ArchivedRow) -> Result<Vec<Finding>, VerifyError> {
    let mut findings = Vec::new();
    let record = &row.record;
    // Object Lock: what the database says was applied must be on each object.
    for (key, detail) in crate::retention::retention_problems(store, row, chrono::Utc::now()).await? {
        findings.push(Finding::Retention(problem(row, &key, detail)));
    }
    // The recording file against the database.
    match hash_object(store, &record.media_key).await? {
        None => findings.push(Finding::Missing(problem(row, &record.media_key, "the recording file is missing"))),
        Some((sha, size)) if sha != record.sha256 || size != u64::try_from(record.bytes).unwrap_or(0) => {
            findings.push(Finding::Corrupt(problem(
                row,
                &record.media_key,
                format!(
                    "holds {size} bytes with SHA-256 {sha}; the database says {} bytes with {}",
                    record.bytes, record.sha256
                ),
            )))
        }
        Some(_) => {}
    }
    // metadata.json against the database and against the other files it lists.
    let metadata_key = store.key(&record.metadata_key)?;
    let metadata = match store.get_bytes(&metadata_key).await {
        Ok(bytes) => match serde_json::from_slice::<Metadata>(&bytes) {
            Ok(m) => Some(m),
            Err(e) => {
                findings.push(Finding::Metadata(problem(row, &record.metadata_key, format!("unreadable: {e}"))));
                None
            }
        },
        Err(StorageError::NotFound { .. }) => {
            findings.push(Finding::Missing(problem(row, &record.metadata_key, "metadata.json is missing")));
            None
        }
        Err(e) => return Err(e.into()),
    };
    if let Some(metadata) = metadata {
        if metadata.recording_id != row.id.0 {
            findings.push(Finding::Metadata(problem(
                row,
                &record.metadata_key,
                format!("describes recording {}", metadata.recording_id),
            )));
        }
        match metadata.files.iter().find(|f| f.key == record.media_key) {
            Some(file) if file.sha256 == record.sha256 => {}
            Some(file) => findings.push(Finding::Metadata(problem(
                row,
                &record.metadata_key,
                format!("gives SHA-256 {} for {}; the database says {}", file.sha256, file.key, record.sha256),
            ))),
            None => {
                findings.push(Finding::Metadata(problem(row, &record.metadata_key, "does not list the recording file")))
            }
        }
        for file in metadata.files.iter().filter(|f| f.key != record.media_key) {
            match hash_object(store, &file.key).await? {
                None => findings.push(Finding::Missing(problem(
                    row,
                    &file.key,
                    "a file listed in metadata.json is missing",
                ))),
                Some((sha, _)) if sha != file.sha256 => findings.push(Finding::Corrupt(problem(
                    row,
                    &file.key,
                    format!("hashes to {sha}; metadata.json says {}", file.sha256),
                ))),
                Some(_) => {}
            }
        }
    }
    Ok(findings)
}

/// SHA-256 and size of an object, streamed; `None` when it does not exist.
async fn hash_object(store: &Store, relative: &str) -> Result<Option<(String, u64)>, VerifyError> {
    let key = store.key(relative)?;
    let mut stream = match store.get_stream(&key).await {
        Ok(stream) => stream,
        Err(StorageError::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        size += chunk.len() as u64;
        hasher.update(&chunk);
    }
    Ok(Some((hex::encode(hasher.finalize()), size)))
}

/// Listed objects whose directories are looked up in the database at once by [`unclaimed`].
const LIST_BATCH: usize = 1000;

/// Objects whose directory belongs to no recording of the database (the daily
/// manifests, which `verify --manifests` checks, aside). The listing is read
/// [`LIST_BATCH`] objects at a time and each batch's directories are asked about in one
/// query, so memory grows with the unclaimed objects found, not with the archive.
async fn unclaimed(state: &State, store: &Store) -> Result<Vec<String>, VerifyError> {
    let manifests = format!("{}/", crate::manifest::MANIFEST_DIR);
    let mut batches = store
        .list("")?
        .map_ok(|meta| store.relative(&meta.location).unwrap_or_else(|| meta.location.to_string()))
        .try_filter(|key| std::future::ready(!key.starts_with(&manifests)))
        .try_chunks(LIST_BATCH);
    let mut out = BTreeSet::new();
    while let Some(keys) = batches.try_next().await.map_err(|e| e.1)? {
        let mut dirs: Vec<String> = keys.iter().map(|key| directory(key).to_owned()).collect();
        dirs.sort_unstable();
        dirs.dedup();
        let claimed = state.claimed_prefixes(&dirs).await?;
        out.extend(keys.into_iter().filter(|key| !claimed.contains(directory(key))));
    }
    Ok(out.into_iter().collect())
}

/// The directory of an object key (empty for a key at the root).
fn directory(key: &str) -> &str {
    key.rsplit_once('/').map_or("", |(dir, _)| dir)
}

/// The text form of a report.
pub fn report_text(report: &VerifyReport) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(out, "checked {} archived recording(s): {} intact", report.checked, report.ok);
    for (label, problems) in report.problems() {
        for p in problems {
            let _ = writeln!(out, "{label}: {} {}: {}", p.recording_id, p.key, p.detail);
        }
    }
    if report.scanned_for_unclaimed {
        for key in &report.unclaimed {
            let _ = writeln!(out, "unclaimed: {key} (no database row claims its directory)");
        }
        let _ = writeln!(out, "unclaimed objects: {}", report.unclaimed.len());
    }
    let _ = writeln!(out, "{}", if report.clean() { "verify: clean" } else { "verify: MISMATCHES FOUND" });
    out
}

/// Events read at once by [`verify_log`].
const LOG_BATCH: u32 = 1000;
/// Breaks listed by [`verify_log`] (all are counted).
const LOG_BREAKS_SHOWN: usize = 100;

/// What `verify --log` found.
#[derive(Debug, Default, Serialize)]
pub struct LogReport {
    /// Events checked (the global chain).
    pub events: u64,
    /// Recordings whose chain was checked.
    pub recordings: u64,
    /// Breaks found, in all.
    pub breaks_found: u64,
    /// The first breaks, in the order found.
    pub breaks: Vec<LogBreak>,
}

impl LogReport {
    /// Both chains intact.
    pub fn intact(&self) -> bool {
        self.breaks_found == 0
    }

    fn broken(&mut self, seq: i64, recording_id: Option<&RecordingId>, chain: &'static str, detail: String) {
        self.breaks_found += 1;
        if self.breaks.len() < LOG_BREAKS_SHOWN {
            self.breaks.push(LogBreak { seq, recording_id: recording_id.map(|r| r.0.clone()), chain, detail });
        }
    }
}

/// Where a chain breaks.
#[derive(Debug, Clone, Serialize)]
pub struct LogBreak {
    /// The event's global position.
    pub seq: i64,
    /// Its recording, if any.
    pub recording_id: Option<String>,
    /// `global` or `recording`.
    pub chain: &'static str,
    /// What differs.
    pub detail: String,
}

fn short(hash: Option<&str>) -> &str {
    hash.unwrap_or("none")
}

/// `verify --log`: checks the custody log's two hash chains, reading it in batches
/// (never all at once): every event's hash against its content, the global chain's
/// positions and links and its head, then each recording's links.
pub async fn verify_log(state: &State) -> Result<LogReport, StateError> {
    verify_log_in_batches(state, LOG_BATCH).await
}

/// [`verify_log`], reading `batch` events at a time.
pub async fn verify_log_in_batches(state: &State, batch: u32) -> Result<LogReport, StateError> {
    let batch_size = batch.max(1);
    let mut report = LogReport::default();
    // The global chain, in seq order.
    let (mut last_seq, mut last_sha): (i64, Option<String>) = (0, None);
    loop {
        let batch = state.events_after(last_seq, batch_size).await?;
        if batch.is_empty() {
            break;
        }
        for event in batch {
            report.events += 1;
            let rec = event.recording_id.as_ref();
            if event.seq != last_seq + 1 {
                let detail = format!("seq {} follows seq {last_seq}: events are missing", event.seq);
                report.broken(event.seq, rec, "global", detail);
            }
            if event.prev_global_sha256 != last_sha {
                let detail = format!(
                    "prev_global_sha256 is {}, but the previous event's sha256 is {}",
                    short(event.prev_global_sha256.as_deref()),
                    short(last_sha.as_deref())
                );
                report.broken(event.seq, rec, "global", detail);
            }
            let computed = event.digest();
            if computed != event.sha256 {
                let detail = format!("sha256 is {}, but its content hashes to {computed}: edited", event.sha256);
                report.broken(event.seq, rec, "global", detail);
            }
            last_seq = event.seq;
            last_sha = Some(event.sha256);
        }
    }
    let (head_seq, head_sha) = state.events_head().await?;
    if head_seq != last_seq || head_sha != last_sha {
        let detail = format!(
            "the log's head is seq {head_seq} ({}), but its last event is seq {last_seq} ({}): events are missing",
            short(head_sha.as_deref()),
            short(last_sha.as_deref())
        );
        report.broken(head_seq, None, "global", detail);
    }
    // Each recording's chain, recording by recording.
    let mut after: Option<(RecordingId, i64)> = None;
    let mut previous: Option<String> = None;
    loop {
        let batch = state.events_by_recording_after(after.as_ref().map(|(r, s)| (r, *s)), batch_size).await?;
        if batch.is_empty() {
            break;
        }
        for event in batch {
            let Some(id) = event.recording_id.clone() else { continue };
            let first = after.as_ref().is_none_or(|(r, _)| *r != id);
            if first {
                report.recordings += 1;
                previous = None;
            }
            if event.prev_sha256 != previous {
                let detail = format!(
                    "prev_sha256 is {}, but the recording's previous event's sha256 is {}",
                    short(event.prev_sha256.as_deref()),
                    short(previous.as_deref())
                );
                report.broken(event.seq, Some(&id), "recording", detail);
            }
            previous = Some(event.sha256.clone());
            after = Some((id, event.seq));
        }
    }
    Ok(report)
}

/// `verify --log` as text.
pub fn log_report_text(report: &LogReport) -> String {
    let mut out =
        format!("custody log: {} event(s), {} recording chain(s) checked\n", report.events, report.recordings);
    if report.intact() {
        out.push_str("both hash chains are intact\n");
        return out;
    }
    out.push_str(&format!("{} break(s):\n", report.breaks_found));
    for b in &report.breaks {
        out.push_str(&format!(
            "  seq {} recording {} ({} chain): {}\n",
            b.seq,
            b.recording_id.as_deref().unwrap_or("-"),
            b.chain,
            b.detail
        ));
    }
    if report.breaks.len() < report.breaks_found as usize {
        out.push_str(&format!("  ... and {} more\n", report.breaks_found as usize - report.breaks.len()));
    }
    out
}
