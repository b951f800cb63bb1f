//! The CSV form: the JSON form's `recordings`, one row per recording, for spreadsheets.
//! The files are spread over one group of columns per kind (`recording_key`,
//! `recording_sha256`, `recording_size`, then audio, transcript, and `metadata_key`), so
//! a key or a digest can be filtered on; times are RFC 3339 in UTC; an absent value is
//! an empty cell. Quoting is the `csv` crate's.

use std::io::Write;

use chrono::{DateTime, SecondsFormat, Utc};
use futures::TryStreamExt as _;

use super::ReportError;
use crate::domain::FileKind;
use crate::state::{ReportRecording, ReportSelection, ReportSnapshot, StateError};

/// The kinds of stored file that have a digest and a size, in column order.
const KINDS: [FileKind; 3] = [FileKind::Recording, FileKind::Audio, FileKind::Transcript];

/// The header row.
pub(super) fn header() -> Vec<String> {
    let mut header: Vec<String> =
        ["id", "state", "create_time", "site_url", "host_email"].into_iter().map(String::from).collect();
    for kind in KINDS {
        for what in ["key", "sha256", "size"] {
            header.push(format!("{}_{what}", kind.as_str()));
        }
    }
    header.extend(
        ["metadata_key", "archived_at", "deleted_at_source", "purged_at_source", "retained_until", "legal_hold"]
            .into_iter()
            .map(String::from),
    );
    header
}

fn time(t: Option<DateTime<Utc>>) -> String {
    t.map(|t| t.to_rfc3339_opts(SecondsFormat::AutoSi, true)).unwrap_or_default()
}

/// A recording's row, in the header's order. A recording with two files of one kind, or
/// a file of no known kind, cannot be shown in these columns: an error names it.
pub(super) fn row(r: &ReportRecording) -> Result<Vec<String>, StateError> {
    let mut row = vec![
        r.id.0.clone(),
        r.state.as_str().to_owned(),
        time(Some(r.create_time)),
        r.site_url.clone().unwrap_or_default(),
        r.host_email.clone().unwrap_or_default(),
    ];
    let mut placed = vec![false; r.files.len()];
    let mut take = |kind: &str| -> Result<Option<usize>, StateError> {
        let mut found = None;
        for (i, _) in r.files.iter().enumerate().filter(|(_, f)| f.kind == kind) {
            if found.replace(i).is_some() {
                return Err(StateError::Corrupt(format!("recording {} has two {kind} files", r.id)));
            }
            placed[i] = true;
        }
        Ok(found)
    };
    for kind in KINDS {
        match take(kind.as_str())?.map(|i| &r.files[i]) {
            Some(file) => row.extend([
                file.key.clone(),
                file.sha256.clone().unwrap_or_default(),
                file.size.map(|s| s.to_string()).unwrap_or_default(),
            ]),
            None => row.extend([String::new(), String::new(), String::new()]),
        }
    }
    row.push(take("metadata")?.map(|i| r.files[i].key.clone()).unwrap_or_default());
    if let Some(i) = placed.iter().position(|p| !p) {
        return Err(StateError::Corrupt(format!(
            "recording {} has a file of unknown kind {:?}",
            r.id, r.files[i].kind
        )));
    }
    row.extend([
        time(r.archived_at),
        time(r.deleted_at_source),
        time(r.purged_at_source),
        time(r.retained_until),
        r.legal_hold.to_string(),
    ]);
    Ok(row)
}

/// Writes the header, then every recording of the period as the database sends it.
pub(super) async fn write(snapshot: &mut dyn ReportSnapshot, out: &mut (impl Write + Send)) -> Result<(), ReportError> {
    let mut csv = ::csv::Writer::from_writer(out);
    csv.write_record(header()).map_err(ReportError::output)?;
    let mut recordings = snapshot.recordings(ReportSelection::All);
    while let Some(recording) = recordings.try_next().await? {
        csv.write_record(row(&recording)?).map_err(ReportError::output)?;
    }
    csv.flush().map_err(ReportError::output)
}
