//! The custody log: events appended in the transaction that changes a recording's
//! state, in two SHA-256 hash chains (the recording's and the global one).
//!
//! An event's hash covers its canonical encoding ([`Event::canonical`]): a JSON object
//! with sorted keys and no spaces of `seq`, `recording_id`, `type`, `at` (RFC 3339 in
//! UTC, microseconds), `data` (keys sorted, recursively), `prev_sha256` and
//! `prev_global_sha256`. Appends are serialised by the one-row `events_head` table
//! (Postgres: its row lock, held to the commit; SQLite: `BEGIN IMMEDIATE`), which holds
//! the global chain's head; a recording's head is its latest event (an index lookup).

use std::collections::HashMap;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use sha2::{Digest as _, Sha256};

use super::sql::{Backend, Cells, Param, Session, Statement, sql};
use super::{RecordingId, StateResult};

/// One event of the custody log, as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    /// Global position: 1, 2, 3, ... without gaps.
    pub seq: i64,
    /// The recording (none for an unreadable listing item without a usable id).
    pub recording_id: Option<RecordingId>,
    /// What happened (`discovered`, `claimed`, `archived`, ...).
    #[serde(rename = "type")]
    pub kind: String,
    /// When (the database's clock on Postgres, this host's on SQLite).
    pub at: DateTime<Utc>,
    /// What the event says, by kind.
    pub data: serde_json::Value,
    /// SHA-256 (hex) of the recording's previous event.
    pub prev_sha256: Option<String>,
    /// SHA-256 (hex) of the previous event overall.
    pub prev_global_sha256: Option<String>,
    /// SHA-256 (hex) of [`Event::canonical`].
    pub sha256: String,
}

impl Event {
    /// The bytes the event's hash covers (everything but the hash itself).
    pub fn canonical(&self) -> String {
        canonical_encoding(
            self.seq,
            self.recording_id.as_ref().map(|r| r.0.as_str()),
            &self.kind,
            self.at,
            &self.data,
            self.prev_sha256.as_deref(),
            self.prev_global_sha256.as_deref(),
        )
    }

    /// SHA-256 (hex) of the canonical encoding, as it should be stored.
    pub fn digest(&self) -> String {
        hex::encode(Sha256::digest(self.canonical().as_bytes()))
    }
}

fn canonical_encoding(
    seq: i64,
    recording_id: Option<&str>,
    kind: &str,
    at: DateTime<Utc>,
    data: &serde_json::Value,
    prev_sha256: Option<&str>,
    prev_global_sha256: Option<&str>,
) -> String {
    let head = serde_json::json!({
        "seq": seq,
        "recording_id": recording_id,
        "type": kind,
        "at": at.to_rfc3339_opts(SecondsFormat::Micros, true),
        "data": data,
        "prev_sha256": prev_sha256,
        "prev_global_sha256": prev_global_sha256,
    });
    let mut out = String::new();
    write_canonical(&head, &mut out);
    out
}

/// JSON with object keys sorted at every depth and no insignificant space, whatever
/// order a map keeps or a database returns.
fn write_canonical(value: &serde_json::Value, out: &mut String) {
    match value {
        serde_json::Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&serde_json::Value::String(key.clone()).to_string());
                out.push(':');
                write_canonical(&map[key], out);
            }
            out.push('}');
        }
        serde_json::Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// An event to append.
#[derive(Debug, Clone)]
pub(super) struct NewEvent {
    /// The recording, if any.
    pub(super) recording_id: Option<String>,
    /// What happened.
    pub(super) kind: &'static str,
    /// What the event says.
    pub(super) data: serde_json::Value,
}

impl NewEvent {
    /// An event of recording `id`.
    pub(super) fn of(id: &str, kind: &'static str, data: serde_json::Value) -> Self {
        Self { recording_id: Some(id.to_owned()), kind, data }
    }
}

/// The latest event (its chain's head) of each recording of the JSON array `$1` that has
/// one: one lookup in the `(recording_id, seq)` index each, in one statement.
pub(super) fn recording_heads() -> &'static Statement {
    sql!(
        "SELECT id, sha256 FROM (SELECT value AS id, \
             (SELECT sha256 FROM events WHERE recording_id = value ORDER BY seq DESC LIMIT 1) AS sha256 \
         FROM {texts_of_1}) AS heads WHERE sha256 IS NOT NULL"
    )
}

/// The columns of an [`Event`], as a literal for `sql!`.
macro_rules! event_columns {
    () => {
        "seq, recording_id, type, at, data, prev_sha256, prev_global_sha256, sha256"
    };
}
pub(super) use event_columns;

/// An event ready to insert: numbered, chained and hashed.
#[derive(Debug)]
pub(super) struct EventRow<'a> {
    pub(super) seq: i64,
    pub(super) recording_id: Option<&'a str>,
    pub(super) kind: &'static str,
    pub(super) at: DateTime<Utc>,
    pub(super) data: &'a serde_json::Value,
    pub(super) prev_sha256: Option<String>,
    pub(super) prev_global_sha256: Option<String>,
    pub(super) sha256: String,
}

/// Appends `events`, in order, in the session's transaction. Call it last in the
/// transaction: on Postgres it locks `events_head` until the commit, and a transaction
/// that waits for nothing while holding it can deadlock with no one.
///
/// Whatever the number of events, this is four statements: take the global head, read
/// the heads of the recordings concerned, insert the events ([`Backend::insert_events`]),
/// store the new global head. A listing page of 100 new recordings costs four round
/// trips, not two hundred.
pub(super) async fn append<B: Backend>(s: &mut Session<B>, events: &[NewEvent]) -> StateResult<()> {
    if events.is_empty() {
        return Ok(());
    }
    let n = events.len() as i64;
    let head = s
        .fetch_one(
            sql!("UPDATE events_head SET seq = seq + $1 WHERE id = 1 RETURNING seq, sha256, {now} AS at"),
            &[Param::Int(n)],
        )
        .await?;
    let mut seq = head.bigint("seq")? - n;
    let mut prev_global = head.opt_text("sha256")?;
    let at = head.time("at")?;
    let mut ids: Vec<&str> = events.iter().filter_map(|e| e.recording_id.as_deref()).collect();
    ids.sort_unstable();
    ids.dedup();
    // A recording's head: its latest event, or the one appended before it in this batch.
    let mut heads = HashMap::with_capacity(ids.len());
    if !ids.is_empty() {
        for row in s.fetch_all(recording_heads(), &[Param::Json(&serde_json::Value::from(ids))]).await? {
            heads.insert(row.text("id")?, row.text("sha256")?);
        }
    }
    let mut rows = Vec::with_capacity(events.len());
    for event in events {
        seq += 1;
        let prev = event.recording_id.as_ref().and_then(|id| heads.get(id).cloned());
        let sha256 = hex::encode(Sha256::digest(
            canonical_encoding(
                seq,
                event.recording_id.as_deref(),
                event.kind,
                at,
                &event.data,
                prev.as_deref(),
                prev_global.as_deref(),
            )
            .as_bytes(),
        ));
        if let Some(id) = &event.recording_id {
            heads.insert(id.clone(), sha256.clone());
        }
        rows.push(EventRow {
            seq,
            recording_id: event.recording_id.as_deref(),
            kind: event.kind,
            at,
            data: &event.data,
            prev_sha256: prev,
            prev_global_sha256: prev_global.replace(sha256.clone()),
            sha256,
        });
    }
    B::insert_events(s, &rows).await?;
    s.execute(sql!("UPDATE events_head SET sha256 = $1 WHERE id = 1"), &[Param::OptText(prev_global.as_deref())])
        .await?;
    Ok(())
}

/// An event from a row of [`event_columns!`].
pub(super) fn event_from_row(row: &impl Cells) -> StateResult<Event> {
    Ok(Event {
        seq: row.bigint("seq")?,
        recording_id: row.opt_text("recording_id")?.map(RecordingId),
        kind: row.text("type")?,
        at: row.time("at")?,
        data: row.json("data")?,
        prev_sha256: row.opt_text("prev_sha256")?,
        prev_global_sha256: row.opt_text("prev_global_sha256")?,
        sha256: row.text("sha256")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_canonical_encoding_sorts_keys_at_every_depth() {
        let event = Event {
            seq: 7,
            recording_id: Some(RecordingId("r1".into())),
            kind: "archived".into(),
            at: DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap(),
            data: serde_json::json!({"z": 1, "a": {"y": [true, null], "b": "é\""}}),
            prev_sha256: None,
            prev_global_sha256: Some("ab".into()),
            sha256: String::new(),
        };
        assert_eq!(
            event.canonical(),
            r#"{"at":"2023-11-14T22:13:20.123456Z","data":{"a":{"b":"é\"","y":[true,null]},"z":1},"prev_global_sha256":"ab","prev_sha256":null,"recording_id":"r1","seq":7,"type":"archived"}"#
        );
        let mut edited = event.clone();
        edited.data["z"] = serde_json::json!(2);
        assert_ne!(edited.digest(), event.digest());
    }
}
