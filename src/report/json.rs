//! The JSON form, the names scripts rely on (issue 14):
//! `{"from", "to", "days": [{"date", "listed", "archived", "bytes", "not_downloadable",
//! "failed", "quarantined", "deleted_at_source", "purged_at_source", "lost_at_source",
//! "under_hold"}], "recordings": [{"id", "state", "create_time", "site_url",
//! "host_email", "files": [{"kind", "key", "sha256", "size"}], "archived_at",
//! "deleted_at_source", "purged_at_source", "retained_until", "legal_hold"}], "gaps":
//! [ids]}`.
//!
//! Written as the rows arrive: serde_json writes every value; its formatter writes the
//! punctuation between them. One recording per line, so the file also reads line by line.

use std::io::{self, Write};

use chrono::{DateTime, Utc};
use futures::TryStreamExt as _;
use serde::Serialize;
use serde_json::ser::{CompactFormatter, Formatter as _};

use super::{Overview, ReportError};
use crate::state::{ArchiveState, RecordingId, ReportFile, ReportRecording, ReportSelection, ReportSnapshot};

/// A recording as the JSON form (and the CSV form) shows it.
#[derive(Debug, Serialize)]
pub(super) struct RecordingOut<'a> {
    pub(super) id: &'a RecordingId,
    pub(super) state: ArchiveState,
    pub(super) create_time: DateTime<Utc>,
    pub(super) site_url: Option<&'a str>,
    pub(super) host_email: Option<&'a str>,
    pub(super) files: &'a [ReportFile],
    pub(super) archived_at: Option<DateTime<Utc>>,
    pub(super) deleted_at_source: Option<DateTime<Utc>>,
    pub(super) purged_at_source: Option<DateTime<Utc>>,
    /// The earliest Object Lock retain-until date among its objects.
    pub(super) retained_until: Option<DateTime<Utc>>,
    /// A legal hold is on its objects.
    pub(super) legal_hold: bool,
}

impl<'a> From<&'a ReportRecording> for RecordingOut<'a> {
    fn from(r: &'a ReportRecording) -> Self {
        Self {
            id: &r.id,
            state: r.state,
            create_time: r.create_time,
            site_url: r.site_url.as_deref(),
            host_email: r.host_email.as_deref(),
            files: &r.files,
            archived_at: r.archived_at,
            deleted_at_source: r.deleted_at_source,
            purged_at_source: r.purged_at_source,
            retained_until: r.retained_until,
            legal_hold: r.legal_hold,
        }
    }
}

/// A JSON document written value by value.
struct JsonWriter<W> {
    out: W,
    format: CompactFormatter,
}

impl<W: Write> JsonWriter<W> {
    fn begin_object(&mut self) -> io::Result<()> {
        self.format.begin_object(&mut self.out)
    }

    fn end_object(&mut self) -> io::Result<()> {
        self.format.end_object(&mut self.out)
    }

    /// The key of a member of the current object; its value follows.
    fn key(&mut self, first: bool, key: &str) -> Result<(), ReportError> {
        self.format.begin_object_key(&mut self.out, first).map_err(ReportError::output)?;
        serde_json::to_writer(&mut self.out, key).map_err(ReportError::output)?;
        self.format.end_object_key(&mut self.out).map_err(ReportError::output)?;
        self.format.begin_object_value(&mut self.out).map_err(ReportError::output)
    }

    fn member(&mut self, first: bool, key: &str, value: &impl Serialize) -> Result<(), ReportError> {
        self.key(first, key)?;
        self.value(value)?;
        self.format.end_object_value(&mut self.out).map_err(ReportError::output)
    }

    fn value(&mut self, value: &impl Serialize) -> Result<(), ReportError> {
        serde_json::to_writer(&mut self.out, value).map_err(ReportError::output)
    }

    fn begin_array(&mut self) -> io::Result<()> {
        self.format.begin_array(&mut self.out)
    }

    /// An element of the current array, on a line of its own.
    fn element(&mut self, first: bool, value: &impl Serialize) -> Result<(), ReportError> {
        self.format.begin_array_value(&mut self.out, first).map_err(ReportError::output)?;
        self.out.write_all(b"\n").map_err(ReportError::output)?;
        self.value(value)?;
        self.format.end_array_value(&mut self.out).map_err(ReportError::output)
    }

    fn end_array(&mut self, empty: bool) -> io::Result<()> {
        if !empty {
            self.out.write_all(b"\n")?;
        }
        self.format.end_array(&mut self.out)
    }
}

/// Writes the JSON form: the overview, then every recording of the period as the
/// database sends it, then the gaps (recordings, then quarantine keys).
pub(super) async fn write(
    snapshot: &mut dyn ReportSnapshot,
    overview: &Overview,
    out: &mut (impl Write + Send),
) -> Result<(), ReportError> {
    let mut json = JsonWriter { out, format: CompactFormatter };
    json.begin_object().map_err(ReportError::output)?;
    json.member(true, "from", &overview.period.from)?;
    json.member(false, "to", &overview.period.to)?;
    json.key(false, "days")?;
    json.begin_array().map_err(ReportError::output)?;
    for (i, day) in overview.days.iter().enumerate() {
        json.element(i == 0, day)?;
    }
    json.end_array(overview.days.is_empty()).map_err(ReportError::output)?;
    json.key(false, "recordings")?;
    json.begin_array().map_err(ReportError::output)?;
    let mut first = true;
    let mut recordings = snapshot.recordings(ReportSelection::All);
    while let Some(recording) = recordings.try_next().await? {
        json.element(first, &RecordingOut::from(&recording))?;
        first = false;
    }
    drop(recordings);
    json.end_array(first).map_err(ReportError::output)?;
    json.key(false, "gaps")?;
    json.begin_array().map_err(ReportError::output)?;
    let mut first = true;
    let mut gaps = snapshot.recordings(ReportSelection::Gaps);
    while let Some(recording) = gaps.try_next().await? {
        json.element(first, &recording.id)?;
        first = false;
    }
    drop(gaps);
    for gap in &overview.quarantined {
        json.element(first, &gap.entry.key)?;
        first = false;
    }
    json.end_array(first).map_err(ReportError::output)?;
    json.end_object().map_err(ReportError::output)?;
    json.out.write_all(b"\n").map_err(ReportError::output)
}
