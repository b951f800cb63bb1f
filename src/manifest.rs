//! Daily manifests: for each UTC day of `createTime` (the archive's own date layout), an
//! object `<prefix>/manifests/YYYY/MM/DD.json`, written create-only once the day is older
//! than `sync.overlap` and none of its recordings is pending or archiving. It lists every
//! file of the day's archived recordings (recording id, key, SHA-256, size, version id;
//! `metadata.json` included, its digest read back from the store) and the key and SHA-256
//! of the manifest written before it, so the manifests form one chain in the order they
//! were written. A recording of that day archived later (a late arrival, a retry) goes
//! into a supplement `DD.1.json` (then `.2`, ...), chained the same way.
//!
//! The `manifests` table indexes the chain; `verify --manifests` walks it, re-reads each
//! manifest (its SHA-256 and its link to the one before), finds manifest objects the
//! database does not know, and re-checks every listed object's presence and size (with
//! `--all`, its SHA-256 too).
//!
//! One replica writes at a time (`StateStore::lock_manifests`). A manifest is stored
//! before it is recorded; if the process dies in between, the next writer finds the
//! object and adopts it when it is the same manifest (same recordings and files, same
//! previous link), else stops with an error naming the key: the chain never forks
//! silently.

use std::collections::HashSet;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Datelike, NaiveTime, TimeZone, Utc};
use futures::TryStreamExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::errors::ErrorChain;
use crate::state::{ManifestRow, RecordingId, State, StateError, Unmanifested};
use crate::storage::{StorageError, Store};

/// Version tag of a manifest's layout.
pub const MANIFEST_SCHEMA: &str = "webex-archiver/manifest/v1";
/// Where manifests live, under the storage prefix.
pub const MANIFEST_DIR: &str = "manifests";
/// How long the writer's lock lasts without being renewed (it is renewed per day).
const LOCK_TTL: Duration = Duration::from_secs(300);
/// Manifests read from the database at once by `verify --manifests`.
const VERIFY_BATCH: u32 = 500;

/// A manifest object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Layout version.
    pub schema: String,
    /// The UTC day of createTime it covers, `YYYY-MM-DD`.
    pub date: String,
    /// 0 for `DD.json`, n for the supplement `DD.n.json`.
    pub part: i64,
    /// When it was written.
    pub written_at: DateTime<Utc>,
    /// The manifest written before it; `None` for the first.
    pub previous: Option<PreviousManifest>,
    /// The day's recordings archived since the previous part, by id.
    pub recordings: Vec<ManifestRecording>,
}

/// The link to the manifest written before.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreviousManifest {
    /// Its key, relative to the storage prefix.
    pub key: String,
    /// SHA-256 (hex) of its bytes.
    pub sha256: String,
}

/// One recording of a manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestRecording {
    /// Webex recording id.
    pub id: String,
    /// Its files, `metadata.json` last.
    pub files: Vec<ManifestFile>,
}

/// One file of a manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestFile {
    /// `recording`, `audio`, `transcript` or `metadata`.
    pub kind: String,
    /// Object key, relative to the storage prefix.
    pub key: String,
    /// SHA-256 (hex) of the content.
    pub sha256: String,
    /// Bytes.
    pub size: u64,
    /// The store's version id (null where the bucket is not versioned).
    pub version_id: Option<String>,
}

/// Why manifests could not be written or checked.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The database failed.
    #[error("the database")]
    State(#[from] StateError),
    /// The store failed.
    #[error("the archive store")]
    Storage(#[from] StorageError),
    /// An archived recording's stored description cannot be read.
    #[error("recording {id}: {problem}")]
    Recording {
        /// Recording.
        id: RecordingId,
        /// What is wrong.
        problem: String,
    },
    /// A manifest object is in the way that the database does not know and that is not
    /// the one being written.
    #[error(
        "{key} exists but is not the manifest the database expects next (its previous link or its recordings differ); \
         the chain stops here until a person looks"
    )]
    Conflict {
        /// Key.
        key: String,
    },
}

/// Writes the manifests that are due.
#[derive(Clone)]
pub struct ManifestWriter {
    state: State,
    store: Store,
    owner: String,
    overlap: Duration,
}

impl ManifestWriter {
    /// A writer named `owner` (in the lock); a day is due once it ended `overlap` ago.
    pub fn new(state: State, store: Store, owner: String, overlap: Duration) -> Self {
        Self { state, store, owner, overlap }
    }

    /// Writes every manifest due at `now`, oldest day first; returns those written.
    /// Another replica writing is not an error (nothing is written here then).
    pub async fn write_due(&self, now: DateTime<Utc>) -> Result<Vec<ManifestRow>, ManifestError> {
        if !self.state.lock_manifests(&self.owner, LOCK_TTL).await? {
            tracing::debug!("another replica is writing manifests");
            return Ok(Vec::new());
        }
        let result = self.write_due_locked(now).await;
        if let Err(e) = self.state.unlock_manifests(&self.owner).await {
            tracing::warn!(error = %ErrorChain(&e), "cannot release the manifest lock; it expires by itself");
        }
        result
    }

    async fn write_due_locked(&self, now: DateTime<Utc>) -> Result<Vec<ManifestRow>, ManifestError> {
        let before = day_start(crate::time::before(now, self.overlap));
        // No recording is older than Webex (Postgres refuses `MIN_UTC` as a timestamp).
        let mut from = DateTime::<Utc>::UNIX_EPOCH;
        let mut written = Vec::new();
        while let Some(first) = self.state.next_unmanifested(from, before).await? {
            let day = day_start(first);
            let end = crate::time::after(day, Duration::from_secs(86_400));
            from = end;
            if self.state.unsettled(day, end).await? {
                tracing::debug!(day = %day.date_naive(), "a recording of this day is still pending or archiving");
                continue;
            }
            if !self.state.lock_manifests(&self.owner, LOCK_TTL).await? {
                tracing::warn!("the manifest lock was taken over; stopping");
                break;
            }
            let recordings = self.state.unmanifested(day, end).await?;
            let row = self.write_day(day, &recordings, now).await?;
            tracing::info!(key = %row.key, recordings = row.recordings, files = row.files, "manifest written");
            written.push(row);
        }
        Ok(written)
    }

    async fn write_day(
        &self,
        day: DateTime<Utc>,
        recordings: &[Unmanifested],
        now: DateTime<Utc>,
    ) -> Result<ManifestRow, ManifestError> {
        let date = day.format("%Y-%m-%d").to_string();
        let part = self.state.manifest_parts(&date).await?;
        let key = manifest_key(day, part);
        let last = self.state.last_manifest().await?;
        let previous = last.map(|m| PreviousManifest { key: m.key, sha256: m.sha256 });
        let mut listed = Vec::with_capacity(recordings.len());
        for recording in recordings {
            listed.push(self.describe(recording).await?);
        }
        let manifest = Manifest {
            schema: MANIFEST_SCHEMA.into(),
            date: date.clone(),
            part,
            written_at: now,
            previous: previous.clone(),
            recordings: listed,
        };
        let bytes = Bytes::from(serde_json::to_vec_pretty(&manifest).map_err(|e| ManifestError::Recording {
            id: RecordingId(String::new()),
            problem: format!("cannot encode the manifest: {e}"),
        })?);
        let location = self.store.key(&key)?;
        let (bytes, manifest, version_id) = match self
            .store
            .put_create(&location, bytes.clone(), "application/json", Some(&sha256_hex(&bytes)))
            .await
        {
            Ok(version) => (bytes, manifest, version),
            Err(StorageError::AlreadyExists { .. }) => self.adopt(&key, &manifest).await?,
            Err(e) => return Err(e.into()),
        };
        // Object Lock: a manifest is retained as long as the recordings it lists (from the
        // end of its day with `retain_from = create_time`).
        let day_end = crate::time::after(day, Duration::from_secs(86_400));
        let retained_until = match self.store.retain_until(day_end, now) {
            Some(until) if until > Utc::now() => {
                let read = self.store.retain(&location, version_id.as_deref(), until).await?;
                Some(read.retain_until.unwrap_or(until))
            }
            until => until,
        };
        let ids: Vec<RecordingId> = manifest.recordings.iter().map(|r| RecordingId(r.id.clone())).collect();
        let mut row = ManifestRow {
            seq: 0,
            day: date,
            part,
            key,
            sha256: sha256_hex(&bytes),
            prev_sha256: previous.map(|p| p.sha256),
            recordings: manifest.recordings.len() as i64,
            files: manifest.recordings.iter().map(|r| r.files.len() as i64).sum(),
            written_at: manifest.written_at,
            version_id,
            retained_until,
        };
        row.seq = self.state.record_manifest(&row, &ids).await?;
        Ok(row)
    }

    /// A manifest already at `key` (a writer died between storing and recording it): the
    /// same manifest (every field but `written_at`), written earlier, is adopted; anything
    /// else is a conflict.
    async fn adopt(&self, key: &str, expected: &Manifest) -> Result<(Bytes, Manifest, Option<String>), ManifestError> {
        let (bytes, version) = self.store.get_versioned(&self.store.key(key)?).await?;
        let found: Manifest =
            serde_json::from_slice(&bytes).map_err(|_| ManifestError::Conflict { key: key.to_owned() })?;
        // Everything but when it was written must be what this writer would write.
        if found.schema != MANIFEST_SCHEMA
            || found.date != expected.date
            || found.part != expected.part
            || found.previous != expected.previous
            || found.recordings != expected.recordings
        {
            return Err(ManifestError::Conflict { key: key.to_owned() });
        }
        tracing::info!(key, "adopting the manifest stored by a writer that stopped before recording it");
        Ok((bytes, found, version))
    }

    /// A recording's files, `metadata.json` last (its digest read back from the store).
    async fn describe(&self, recording: &Unmanifested) -> Result<ManifestRecording, ManifestError> {
        let bad = |problem: String| ManifestError::Recording { id: recording.id.clone(), problem };
        let entries = recording.files.as_array().ok_or_else(|| bad("its stored files are not a list".into()))?;
        let mut files = Vec::with_capacity(entries.len() + 1);
        for entry in entries {
            let text = |field: &str| {
                entry
                    .get(field)
                    .and_then(|v| v.as_str())
                    .map(str::to_owned)
                    .ok_or_else(|| bad(format!("a file has no {field}")))
            };
            let size = entry.get("size").and_then(|v| v.as_u64()).ok_or_else(|| bad("a file has no size".into()))?;
            files.push(ManifestFile {
                kind: text("kind")?,
                key: text("key")?,
                sha256: text("sha256")?,
                size,
                version_id: entry.get("version_id").and_then(|v| v.as_str()).map(str::to_owned),
            });
        }
        let (metadata, metadata_version) =
            match self.store.get_versioned(&self.store.key(&recording.metadata_key)?).await {
                Ok(read) => read,
                Err(StorageError::NotFound { .. }) => {
                    return Err(bad(format!("its metadata.json ({}) is not in the store", recording.metadata_key)));
                }
                Err(e) => return Err(e.into()),
            };
        files.push(ManifestFile {
            kind: "metadata".into(),
            key: recording.metadata_key.clone(),
            sha256: sha256_hex(&metadata),
            size: metadata.len() as u64,
            version_id: metadata_version,
        });
        Ok(ManifestRecording { id: recording.id.0.clone(), files })
    }
}

/// `manifests/YYYY/MM/DD.json`, or `DD.<part>.json` for a supplement.
pub fn manifest_key(day: DateTime<Utc>, part: i64) -> String {
    let (y, m, d) = (day.year(), day.month(), day.day());
    match part {
        0 => format!("{MANIFEST_DIR}/{y:04}/{m:02}/{d:02}.json"),
        n => format!("{MANIFEST_DIR}/{y:04}/{m:02}/{d:02}.{n}.json"),
    }
}

/// Midnight (UTC) of `t`'s day.
fn day_start(t: DateTime<Utc>) -> DateTime<Utc> {
    Utc.from_utc_datetime(&t.date_naive().and_time(NaiveTime::MIN))
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// What `verify --manifests` found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ManifestReport {
    /// Manifests read.
    pub manifests: u64,
    /// Files checked.
    pub files: u64,
    /// Whether SHA-256s were re-checked (`--all`).
    pub digests_checked: bool,
    /// What is wrong, each naming the key.
    pub problems: Vec<String>,
}

impl ManifestReport {
    /// Nothing wrong.
    pub fn intact(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Walks the manifests' chain in the order written (see the module documentation).
pub async fn verify_manifests(state: &State, store: &Store, digests: bool) -> Result<ManifestReport, ManifestError> {
    let mut report = ManifestReport { digests_checked: digests, ..Default::default() };
    let mut previous: Option<(String, String)> = None;
    let mut known = HashSet::new();
    let mut after = 0;
    loop {
        let batch = state.manifests(after, VERIFY_BATCH).await?;
        let Some(last) = batch.last() else { break };
        after = last.seq;
        for row in &batch {
            known.insert(row.key.clone());
            check_manifest(store, row, previous.as_ref(), digests, &mut report).await?;
            previous = Some((row.key.clone(), row.sha256.clone()));
        }
    }
    let stored: Vec<String> = store
        .list(MANIFEST_DIR)?
        .map_ok(|meta| store.relative(&meta.location).unwrap_or_else(|| meta.location.to_string()))
        .try_collect()
        .await?;
    for key in stored.into_iter().filter(|k| !known.contains(k)) {
        report.problems.push(format!("{key}: a manifest object the database does not know"));
    }
    Ok(report)
}

async fn check_manifest(
    store: &Store,
    row: &ManifestRow,
    previous: Option<&(String, String)>,
    digests: bool,
    report: &mut ManifestReport,
) -> Result<(), ManifestError> {
    report.manifests += 1;
    let key = &row.key;
    let bytes = match store.get_bytes(&store.key(key)?).await {
        Ok(bytes) => bytes,
        Err(StorageError::NotFound { .. }) => {
            report.problems.push(format!("{key}: missing from the store"));
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    };
    let sha256 = sha256_hex(&bytes);
    if sha256 != row.sha256 {
        report
            .problems
            .push(format!("{key}: its SHA-256 is {sha256}, not the {} recorded when it was written", row.sha256));
    }
    let manifest: Manifest = match serde_json::from_slice(&bytes) {
        Ok(m) => m,
        Err(e) => {
            report.problems.push(format!("{key}: not a manifest ({e})"));
            return Ok(());
        }
    };
    let expected = previous.map(|(key, sha256)| PreviousManifest { key: key.clone(), sha256: sha256.clone() });
    if manifest.previous != expected {
        report.problems.push(format!(
            "{key}: its previous link is {}, but the manifest written before it is {}",
            describe_link(manifest.previous.as_ref()),
            describe_link(expected.as_ref())
        ));
    }
    for file in manifest.recordings.iter().flat_map(|r| &r.files) {
        report.files += 1;
        let location = store.key(&file.key)?;
        if digests {
            match store.get_stream(&location).await {
                Ok(mut stream) => {
                    let mut hasher = Sha256::new();
                    let mut size = 0u64;
                    while let Some(chunk) = stream.try_next().await? {
                        size += chunk.len() as u64;
                        hasher.update(&chunk);
                    }
                    let digest = hex::encode(hasher.finalize());
                    if size != file.size || digest != file.sha256 {
                        report.problems.push(format!(
                            "{}: holds {size} bytes with SHA-256 {digest}; {key} lists {} bytes with {}",
                            file.key, file.size, file.sha256
                        ));
                    }
                }
                Err(StorageError::NotFound { .. }) => report.problems.push(format!("{}: missing ({key})", file.key)),
                Err(e) => return Err(e.into()),
            }
        } else {
            match store.head(&location).await? {
                None => report.problems.push(format!("{}: missing ({key})", file.key)),
                Some(info) if info.size != file.size => {
                    report.problems.push(format!("{}: holds {} bytes; {key} lists {}", file.key, info.size, file.size))
                }
                Some(_) => {}
            }
        }
    }
    Ok(())
}

fn describe_link(link: Option<&PreviousManifest>) -> String {
    match link {
        None => "none".into(),
        Some(p) => format!("{} ({})", p.key, &p.sha256[..p.sha256.len().min(12)]),
    }
}

/// The text form of a report.
pub fn manifest_report_text(report: &ManifestReport) -> String {
    let mut out = format!(
        "manifests: {} read, {} files checked ({}), {}\n",
        report.manifests,
        report.files,
        if report.digests_checked { "size and SHA-256" } else { "presence and size" },
        if report.intact() { "intact".to_owned() } else { format!("{} problem(s)", report.problems.len()) }
    );
    for problem in &report.problems {
        out.push_str("  ");
        out.push_str(problem);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_archive_s_date_layout() {
        let day = Utc.with_ymd_and_hms(2026, 3, 7, 0, 0, 0).unwrap();
        assert_eq!(manifest_key(day, 0), "manifests/2026/03/07.json");
        assert_eq!(manifest_key(day, 2), "manifests/2026/03/07.2.json");
        assert_eq!(day_start(Utc.with_ymd_and_hms(2026, 3, 7, 23, 59, 59).unwrap()), day);
    }
}
