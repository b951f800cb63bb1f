//! `verify`: re-read archived objects, recompute their SHA-256, and compare them with the
//! database and with `metadata.json`; report missing, corrupt and unclaimed objects.

use std::collections::{BTreeSet, HashSet};

use futures::{StreamExt, TryStreamExt};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::archive::Metadata;
use crate::state::{ArchivedRow, State, StateError};
use crate::storage::{StorageError, Store};

/// Recordings checked at once.
const PARALLEL: usize = 4;

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
    /// Objects under the prefix that no database row claims (only with `--all`).
    pub unclaimed: Vec<String>,
    /// Whether the unclaimed scan ran.
    pub scanned_for_unclaimed: bool,
}

impl VerifyReport {
    /// No problem of any kind.
    pub fn clean(&self) -> bool {
        self.missing.is_empty() && self.corrupt.is_empty() && self.metadata.is_empty() && self.unclaimed.is_empty()
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
    let rows = state.archived(sample).await?;
    let mut report = VerifyReport { checked: rows.len(), ..Default::default() };
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
            }
        }
    }
    if sample.is_none() {
        report.scanned_for_unclaimed = true;
        let claimed = state.archived_prefixes().await?;
        report.unclaimed = unclaimed(store, &claimed).await?;
    }
    Ok(report)
}

enum Finding {
    Missing(Problem),
    Corrupt(Problem),
    Metadata(Problem),
}

fn problem(row: &ArchivedRow, key: &str, detail: impl Into<String>) -> Problem {
    Problem { recording_id: row.id.0.clone(), key: key.to_owned(), detail: detail.into() }
}

async fn check_row(store: &Store, row: &ArchivedRow) -> Result<Vec<Finding>, VerifyError> {
    let mut findings = Vec::new();
    let record = &row.record;
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

/// Objects whose directory belongs to no recording of the database.
async fn unclaimed(store: &Store, claimed: &HashSet<String>) -> Result<Vec<String>, VerifyError> {
    let keys: Vec<String> = store
        .list("")?
        .map_ok(|meta| store.relative(&meta.location).unwrap_or_else(|| meta.location.to_string()))
        .try_collect()
        .await?;
    let mut out = BTreeSet::new();
    for key in keys {
        let dir = key.rsplit_once('/').map_or("", |(dir, _)| dir);
        if !claimed.contains(dir) {
            out.insert(key);
        }
    }
    Ok(out.into_iter().collect())
}

/// The text form of a report.
pub fn report_text(report: &VerifyReport) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(out, "checked {} archived recording(s): {} intact", report.checked, report.ok);
    for (label, problems) in
        [("missing", &report.missing), ("corrupt", &report.corrupt), ("metadata", &report.metadata)]
    {
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
