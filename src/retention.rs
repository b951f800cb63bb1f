//! Legal holds and retention extensions on archived recordings: every version of every
//! object of a recording (its files and `metadata.json`), set through the store's Object
//! Lock calls, read back with HEAD, then recorded in the database with its custody event
//! (who, why, which versions). Also the retention check `verify` runs on each object.

use chrono::{DateTime, Utc};
use object_store::path::Path;

use crate::config::LockMode;
use crate::state::{ArchivedRow, HoldChange, Operator, RecordingId, RetentionChange, State, StateError};
use crate::storage::{LockClient, StorageError, Store, VersionLock};

/// Why a hold or an extension could not be done on a recording. Nothing is recorded for
/// it unless every version changed was read back as asked.
#[derive(Debug, thiserror::Error)]
pub enum RetentionError {
    /// The recording is not archived (unknown, or not yet stored).
    #[error("{0}: not an archived recording")]
    NotArchived(RecordingId),
    /// The archive is a `file://` directory.
    #[error("the archive is not in an S3 bucket: Object Lock is a feature of S3 buckets")]
    NoObjectLock,
    /// Neither the recording nor `storage.object_lock` names a retention mode.
    #[error("{0}: no retention mode: the recording was archived without one and storage.object_lock.mode is \"none\"")]
    NoMode(RecordingId),
    /// An object of the recording has no version in the store.
    #[error("{id}: {key}: no version of this object is in the store")]
    Missing {
        /// Recording.
        id: RecordingId,
        /// Full key.
        key: String,
    },
    /// A version read back is not as set.
    #[error("{id}: {key} (version {version}): {problem}")]
    NotApplied {
        /// Recording.
        id: RecordingId,
        /// Full key.
        key: String,
        /// Version id.
        version: String,
        /// What HEAD read.
        problem: String,
    },
    /// The store failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The database failed.
    #[error(transparent)]
    State(#[from] StateError),
}

/// Every object of an archived recording: its relative key, its files first, then
/// `metadata.json`.
pub fn object_keys(row: &ArchivedRow) -> Vec<String> {
    let mut keys: Vec<String> = row
        .record
        .files
        .as_array()
        .map(|files| files.iter().filter_map(|f| f.get("key")?.as_str().map(str::to_owned)).collect())
        .unwrap_or_default();
    keys.push(row.record.metadata_key.clone());
    keys
}

/// One object of a recording with every version of it.
struct Versions {
    relative: String,
    key: Path,
    shown: String,
    ids: Vec<String>,
}

async fn versions_of(store: &Store, lock: &LockClient, row: &ArchivedRow) -> Result<Vec<Versions>, RetentionError> {
    let mut out = Vec::new();
    for relative in object_keys(row) {
        let key = store.key(&relative)?;
        let ids = lock.versions(&key).await?;
        if ids.is_empty() {
            return Err(RetentionError::Missing { id: row.id.clone(), key: store.describe(&key) });
        }
        out.push(Versions { relative, shown: store.describe(&key), key, ids });
    }
    Ok(out)
}

/// What a hold or extension did to one recording.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Changed {
    /// Recording.
    pub id: RecordingId,
    /// Object versions changed.
    pub versions: usize,
    /// Versions already as asked (an extension never shortens).
    pub unchanged: usize,
}

/// Puts a legal hold on (`on`) or takes it off every version of every object of
/// recording `id`, checks each with HEAD, then records it with `reason` and the operator.
pub async fn set_legal_hold(
    state: &State,
    store: &Store,
    id: &RecordingId,
    on: bool,
    reason: &str,
    by: &Operator,
) -> Result<Changed, RetentionError> {
    let row = state.archived_one(id).await?.ok_or_else(|| RetentionError::NotArchived(id.clone()))?;
    let lock = store.lock().ok_or(RetentionError::NoObjectLock)?;
    let mut changed = Vec::new();
    for object in versions_of(store, lock, &row).await? {
        for version in &object.ids {
            lock.put_legal_hold(&object.key, Some(version), on).await?;
            let read = lock.head(&object.key, Some(version)).await?;
            if read.as_ref().map(|r| r.legal_hold) != Some(on) {
                return Err(RetentionError::NotApplied {
                    id: id.clone(),
                    key: object.shown.clone(),
                    version: version.clone(),
                    problem: format!("HEAD shows the legal hold {}", if on { "off" } else { "on" }),
                });
            }
            changed.push(serde_json::json!({"key": object.relative, "version_id": version}));
        }
    }
    let count = changed.len();
    let change = HoldChange { on, reason: reason.to_owned(), by: by.clone(), versions: changed.into() };
    if !state.record_legal_hold(id, &change).await? {
        return Err(RetentionError::NotArchived(id.clone()));
    }
    Ok(Changed { id: id.clone(), versions: count, unchanged: 0 })
}

/// Lengthens the retention of every version of every object of recording `id` to
/// `until` (whole seconds, rounded up), in the mode the recording was archived with
/// (else `storage.object_lock.mode`). A version already retained until then or later is
/// left as it is: this never shortens a retention. Each change is read back with HEAD,
/// then recorded with the operator.
pub async fn extend_retention(
    state: &State,
    store: &Store,
    id: &RecordingId,
    until: DateTime<Utc>,
    by: &Operator,
) -> Result<Changed, RetentionError> {
    let row = state.archived_one(id).await?.ok_or_else(|| RetentionError::NotArchived(id.clone()))?;
    let lock = store.lock().ok_or(RetentionError::NoObjectLock)?;
    let mode = row
        .record
        .retention
        .as_ref()
        .and_then(|(mode, _)| LockMode::from_s3_name(mode))
        .or_else(|| store.object_lock().retention().map(|(mode, _)| mode))
        .ok_or_else(|| RetentionError::NoMode(id.clone()))?;
    let until = crate::time::ceil_seconds(until);
    let mut changed = Vec::new();
    let mut unchanged = 0;
    let mut earliest: Option<DateTime<Utc>> = None;
    let mut per_key = std::collections::BTreeMap::new();
    for object in versions_of(store, lock, &row).await? {
        for version in &object.ids {
            let before = lock.head(&object.key, Some(version)).await?.unwrap_or_default();
            let kept = before.retain_until.filter(|current| *current >= until);
            let now_until = match kept {
                Some(current) => {
                    unchanged += 1;
                    current
                }
                None => {
                    // A version already in compliance mode stays in it.
                    let mode = before.mode.filter(|m| *m == LockMode::Compliance).unwrap_or(mode);
                    lock.put_retention(&object.key, Some(version), mode, until).await?;
                    let read = lock.head(&object.key, Some(version)).await?.unwrap_or_default();
                    if !read.covers(mode, until) {
                        return Err(RetentionError::NotApplied {
                            id: id.clone(),
                            key: object.shown.clone(),
                            version: version.clone(),
                            problem: describe_lock(&read),
                        });
                    }
                    changed.push(serde_json::json!({
                        "key": object.relative,
                        "version_id": version,
                        "from": before.retain_until,
                        "to": read.retain_until,
                    }));
                    read.retain_until.unwrap_or(until)
                }
            };
            earliest = Some(earliest.map_or(now_until, |e| e.min(now_until)));
            let entry = per_key.entry(object.relative.clone()).or_insert(now_until);
            *entry = (*entry).min(now_until);
        }
    }
    let mut files = row.record.files.clone();
    if let Some(files) = files.as_array_mut() {
        for file in files {
            let key = file.get("key").and_then(|k| k.as_str()).map(str::to_owned);
            if let Some(at) = key.and_then(|k| per_key.get(&k).copied()) {
                file["retain_until"] = serde_json::to_value(at).unwrap_or_default();
            }
        }
    }
    let count = changed.len();
    if count > 0 {
        let change = RetentionChange {
            mode: mode.s3_name().to_owned(),
            until: earliest.unwrap_or(until),
            files,
            by: by.clone(),
            versions: changed.into(),
        };
        if !state.record_retention(id, &change).await? {
            return Err(RetentionError::NotArchived(id.clone()));
        }
    }
    Ok(Changed { id: id.clone(), versions: count, unchanged })
}

/// What a HEAD read of a version's lock says, for messages.
pub fn describe_lock(read: &VersionLock) -> String {
    match (read.mode, read.retain_until) {
        (Some(mode), Some(until)) => format!("HEAD shows {} until {}", mode.s3_name(), until.to_rfc3339()),
        (Some(mode), None) => format!("HEAD shows {} without a date", mode.s3_name()),
        _ => "HEAD shows no retention".to_owned(),
    }
}

/// What `verify` finds wrong with the retention of one archived recording's current
/// object versions, against what the database says was applied: (relative key, what is
/// wrong) per object whose retention is missing, in a weaker mode, or shorter; and a hold
/// the database records but the store does not show. Empty when all is as recorded (or
/// nothing was recorded, or the recorded retention has ended).
pub async fn retention_problems(
    store: &Store,
    row: &ArchivedRow,
    now: DateTime<Utc>,
) -> Result<Vec<(String, String)>, StorageError> {
    let Some(lock) = store.lock() else { return Ok(Vec::new()) };
    let recorded =
        row.record.retention.as_ref().and_then(|(mode, until)| Some((LockMode::from_s3_name(mode)?, *until)));
    let wants_retention = recorded.filter(|(_, until)| *until > now);
    if wants_retention.is_none() && !row.legal_hold {
        return Ok(Vec::new());
    }
    let mut problems = Vec::new();
    for relative in object_keys(row) {
        let key = store.key(&relative)?;
        let Some(read) = lock.head(&key, None).await? else {
            problems.push((relative, "no object to check the retention of".to_owned()));
            continue;
        };
        if let Some((mode, until)) = wants_retention {
            // Each file's own date when the row has one, else the recording's.
            let wanted = row
                .record
                .files
                .as_array()
                .and_then(|files| {
                    files.iter().find(|f| f.get("key").and_then(|k| k.as_str()) == Some(relative.as_str()))
                })
                .and_then(|f| {
                    f.get("retain_until").and_then(|u| serde_json::from_value::<DateTime<Utc>>(u.clone()).ok())
                })
                .unwrap_or(until);
            if !read.covers(mode, wanted) {
                problems.push((
                    relative.clone(),
                    format!(
                        "retention missing or shorter than recorded ({} until {}): {}",
                        mode.s3_name(),
                        wanted.to_rfc3339(),
                        describe_lock(&read)
                    ),
                ));
            }
        }
        if row.legal_hold && !read.legal_hold {
            problems.push((relative, "under legal hold in the database, but HEAD shows no legal hold".to_owned()));
        }
    }
    Ok(problems)
}
