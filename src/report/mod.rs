//! `report`: the attestation report a compliance officer hands an auditor. For a period
//! `[from, to)` of `createTime` it says, per UTC day and per recording, what Webex
//! listed and what became of it, and names every gap: a listed recording that is neither
//! archived nor final for a stated reason.
//!
//! It reads the database only (one read-only snapshot, [`StateStore::report`]), never
//! Webex nor the store. Day counts come from the database (`GROUP BY` the day); rows are
//! streamed from the database into the output as they arrive, so memory stays flat
//! whatever the number of recordings. Three forms: JSON (the names scripts rely on, see
//! `json.rs`), CSV (one row per recording, `csv.rs`) and HTML (one self-contained page,
//! `html.rs`).
//!
//! What counts as a gap: a recording `pending`, `archiving` or `failed` (`failed` needs a
//! person), and an unreleased quarantine entry (a listed item that could not be read)
//! attributed to the period. `archived`, `not_downloadable` and `lost_at_source` are
//! final with a stated reason. Each recording carries its Object Lock retain-until date
//! (the earliest among its objects; `null` when none was applied) and whether a legal hold
//! is on it; each day counts those `under_hold`.

mod csv;
mod html;
mod json;

use std::io::Write;

use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use serde::Serialize;

use crate::domain::CursorKind;
use crate::state::{Cursor, DayCounts, ReportQuarantine, ReportSnapshot, ScopeKey, State, StateError};

/// The longest period a report covers, in days (a hundred years): a mistyped year
/// should not make a report of every day since the first century.
pub const MAX_DAYS: i64 = 36_525;

/// The form of a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// `{"from", "to", "days", "recordings", "gaps"}`, for scripts.
    Json,
    /// One row per recording, with a header, for spreadsheets.
    Csv,
    /// One self-contained page (inline CSS and SVG, no script), for people.
    Html,
}

/// The period `[from, to)` of `createTime` a report covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    /// First instant covered.
    pub from: DateTime<Utc>,
    /// First instant not covered.
    pub to: DateTime<Utc>,
}

/// Why two instants do not make a period.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeriodError {
    /// `from` is not before `to`.
    #[error("the period is empty: the start must be before the end")]
    Empty {
        /// The start.
        from: DateTime<Utc>,
        /// The end.
        to: DateTime<Utc>,
    },
    /// More days than [`MAX_DAYS`].
    #[error("the period covers {days} days; a report covers at most {MAX_DAYS}")]
    TooLong {
        /// Days it would cover.
        days: i64,
    },
}

impl Period {
    /// The period `[from, to)`.
    pub fn new(from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Self, PeriodError> {
        if from >= to {
            return Err(PeriodError::Empty { from, to });
        }
        let period = Self { from, to };
        let days = (period.last_day() - period.first_day()).num_days() + 1;
        if days > MAX_DAYS {
            return Err(PeriodError::TooLong { days });
        }
        Ok(period)
    }

    /// The UTC day of `from`.
    pub fn first_day(&self) -> NaiveDate {
        self.from.date_naive()
    }

    /// The UTC day of the last instant covered (`to` is not).
    pub fn last_day(&self) -> NaiveDate {
        (self.to - chrono::TimeDelta::nanoseconds(1)).date_naive()
    }

    /// Every UTC day the period touches, in order.
    pub fn days(&self) -> impl Iterator<Item = NaiveDate> {
        let last = self.last_day();
        self.first_day().iter_days().take_while(move |d| *d <= last)
    }

    /// Whether `t` is in the period.
    pub fn contains(&self, t: DateTime<Utc>) -> bool {
        self.from <= t && t < self.to
    }
}

/// Reads a time as the command line gives it: RFC 3339 (`2026-03-01T09:30:00Z`) or a day
/// (`2026-03-01`, meaning that UTC day's start).
pub fn parse_time(text: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(day) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(day.and_time(NaiveTime::MIN).and_utc());
    }
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("{text:?} is neither a day (2026-03-01) nor an RFC 3339 time (2026-03-01T09:30:00Z): {e}"))
}

/// One day of the report: the database's counts for it and the quarantine entries
/// attributed to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Day {
    /// The UTC day (`YYYY-MM-DD`).
    pub date: NaiveDate,
    /// Recordings of that day recorded from Webex's listings.
    pub listed: i64,
    /// Of which archived.
    pub archived: i64,
    /// Bytes of every file stored for them (`metadata.json` excluded).
    pub bytes: i64,
    /// Of which final `not_downloadable`.
    pub not_downloadable: i64,
    /// Of which `failed`.
    pub failed: i64,
    /// Listed items that could not be read, attributed to that day (see
    /// [`QuarantinedGap`]).
    pub quarantined: i64,
    /// Recordings of that day seen deleted at the source.
    pub deleted_at_source: i64,
    /// Recordings of that day seen purged at the source.
    pub purged_at_source: i64,
    /// Of which final `lost_at_source`.
    pub lost_at_source: i64,
    /// Recordings under legal hold.
    pub under_hold: i64,
    /// Of which `pending` or `archiving` (not in the JSON form: `listed - archived -
    /// not_downloadable - failed - lost_at_source`).
    #[serde(skip)]
    pub unfinished: i64,
}

impl Day {
    fn empty(date: NaiveDate) -> Self {
        Self {
            date,
            listed: 0,
            archived: 0,
            bytes: 0,
            not_downloadable: 0,
            failed: 0,
            quarantined: 0,
            deleted_at_source: 0,
            purged_at_source: 0,
            lost_at_source: 0,
            under_hold: 0,
            unfinished: 0,
        }
    }

    fn counted(counts: DayCounts) -> Self {
        Self {
            listed: counts.listed,
            archived: counts.archived,
            bytes: counts.bytes,
            not_downloadable: counts.not_downloadable,
            failed: counts.failed,
            deleted_at_source: counts.deleted_at_source,
            purged_at_source: counts.purged_at_source,
            lost_at_source: counts.lost_at_source,
            under_hold: counts.under_hold,
            unfinished: counts.unfinished,
            ..Self::empty(counts.date)
        }
    }

    /// Gaps of that day: recordings pending, archiving or failed, and quarantined items.
    pub fn gaps(&self) -> i64 {
        self.unfinished + self.failed + self.quarantined
    }

    fn add(&mut self, other: &Day) {
        self.listed += other.listed;
        self.archived += other.archived;
        self.bytes += other.bytes;
        self.not_downloadable += other.not_downloadable;
        self.failed += other.failed;
        self.quarantined += other.quarantined;
        self.deleted_at_source += other.deleted_at_source;
        self.purged_at_source += other.purged_at_source;
        self.lost_at_source += other.lost_at_source;
        self.under_hold += other.under_hold;
        self.unfinished += other.unfinished;
    }
}

/// What a quarantined item's day was taken from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attribution {
    /// Its `createTime` reads (it was quarantined for another field, such as its id).
    CreateTime(DateTime<Utc>),
    /// Its listing window `[from, to)`: `createTime` lies in it but could not be read.
    /// The item counts on the window's first day within the period.
    Window(DateTime<Utc>, DateTime<Utc>),
    /// No window was recorded: the day it was first listed (its `createTime` is earlier).
    FirstSeen(DateTime<Utc>),
}

/// An unreleased quarantine entry attributed to a day of the period: a gap.
#[derive(Debug, Clone, PartialEq)]
pub struct QuarantinedGap {
    /// The entry as the database holds it.
    pub entry: ReportQuarantine,
    /// The day it counts on.
    pub date: NaiveDate,
    /// Why that day.
    pub attribution: Attribution,
}

/// The day of the period a quarantine entry counts on, if it belongs to the period.
fn attribute(entry: ReportQuarantine, period: &Period) -> Option<QuarantinedGap> {
    let (date, attribution) = if let Some(t) = readable_create_time(&entry.raw) {
        (period.contains(t).then_some(t.date_naive())?, Attribution::CreateTime(t))
    } else if let Some((from, to)) = entry.window {
        let overlaps = from < period.to && to > period.from;
        (overlaps.then_some(from.max(period.from).date_naive())?, Attribution::Window(from, to))
    } else {
        let t = entry.first_seen_at;
        (period.contains(t).then_some(t.date_naive())?, Attribution::FirstSeen(t))
    };
    Some(QuarantinedGap { entry, date, attribution })
}

/// A quarantined item's `createTime`, when its stored text has a readable one.
fn readable_create_time(raw: &str) -> Option<DateTime<Utc>> {
    let item: serde_json::Value = serde_json::from_str(raw).ok()?;
    let text = item.get("createTime")?.as_str()?;
    DateTime::parse_from_rfc3339(text).ok().map(|t| t.with_timezone(&Utc))
}

/// Everything a report says before its rows: the period, every day (zeros included),
/// the totals and the quarantined gaps.
#[derive(Debug, Clone)]
pub struct Overview {
    /// The period.
    pub period: Period,
    /// Every UTC day of the period, in order.
    pub days: Vec<Day>,
    /// The sums of `days` (its `date` is the first day).
    pub totals: Day,
    /// Quarantine entries attributed to the period, in key order.
    pub quarantined: Vec<QuarantinedGap>,
    /// How far each scope's live listing (its `sync` cursor) has reached, in scope order.
    pub listed_up_to: Vec<(ScopeKey, DateTime<Utc>)>,
}

impl Overview {
    /// Reads the day counts and the quarantine entries of `snapshot`; `cursors` say how far
    /// discovery has listed.
    async fn read(snapshot: &mut dyn ReportSnapshot, period: Period, cursors: &[Cursor]) -> Result<Self, StateError> {
        let mut days: Vec<Day> = period.days().map(Day::empty).collect();
        let first = period.first_day();
        let index = |date: NaiveDate| usize::try_from((date - first).num_days()).ok();
        for counts in snapshot.days().await? {
            let date = counts.date;
            let day = index(date).and_then(|i| days.get_mut(i)).ok_or_else(|| {
                StateError::Corrupt(format!("the database counted the day {date}, outside the period"))
            })?;
            *day = Day::counted(counts);
        }
        let quarantined: Vec<QuarantinedGap> =
            snapshot.quarantine().await?.into_iter().filter_map(|entry| attribute(entry, &period)).collect();
        for gap in &quarantined {
            if let Some(day) = index(gap.date).and_then(|i| days.get_mut(i)) {
                day.quarantined += 1;
            }
        }
        let mut totals = Day::empty(first);
        days.iter().for_each(|day| totals.add(day));
        let listed_up_to =
            cursors.iter().filter(|c| c.kind == CursorKind::Sync).map(|c| (c.scope.clone(), c.position)).collect();
        Ok(Self { period, days, totals, quarantined, listed_up_to })
    }

    /// Scopes whose listing has not reached the end of the period (recordings created
    /// after their position are not known yet), or `None` when no listing has run at all.
    pub fn listing_behind(&self) -> Option<Vec<&(ScopeKey, DateTime<Utc>)>> {
        (!self.listed_up_to.is_empty())
            .then(|| self.listed_up_to.iter().filter(|(_, up_to)| *up_to < self.period.to).collect())
    }

    /// Gaps in the period.
    pub fn gaps(&self) -> i64 {
        self.totals.gaps()
    }
}

/// What a written report found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Recordings of the period.
    pub recordings: i64,
    /// Of which archived.
    pub archived: i64,
    /// Gaps: recordings pending, archiving or failed, and quarantined items.
    pub gaps: i64,
    /// Why recordings of the period may not all be known yet: scopes whose listing has not
    /// reached the period's end (or that no discovery pass has run).
    pub listing_behind: Vec<String>,
}

/// Why a report could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The database failed.
    #[error("reading the database")]
    State(#[from] StateError),
    /// The output could not be written.
    #[error("writing the report")]
    Output(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl ReportError {
    fn output(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Output(Box::new(e))
    }
}

/// Writes the report of `period` in `format` into `out` (flushed at the end), from one
/// snapshot of the database.
pub async fn write(
    state: &State,
    period: Period,
    format: Format,
    mut out: impl Write + Send,
) -> Result<Summary, ReportError> {
    // Read before the snapshot: a cursor only moves forward, so it is never shown ahead of
    // the recordings the report holds.
    let cursors = state.cursors().await?;
    let mut snapshot = state.report(period.from, period.to).await?;
    let overview = Overview::read(snapshot.as_mut(), period, &cursors).await?;
    match format {
        Format::Json => json::write(snapshot.as_mut(), &overview, &mut out).await?,
        Format::Csv => csv::write(snapshot.as_mut(), &mut out).await?,
        Format::Html => html::write(snapshot.as_mut(), &overview, Utc::now(), &mut out).await?,
    }
    out.flush().map_err(ReportError::output)?;
    let listing_behind = match overview.listing_behind() {
        None => vec!["no discovery pass has run".to_owned()],
        Some(behind) => behind.iter().map(|(scope, up_to)| format!("{scope} is listed only up to {up_to}")).collect(),
    };
    Ok(Summary {
        recordings: overview.totals.listed,
        archived: overview.totals.archived,
        gaps: overview.gaps(),
        listing_behind,
    })
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::state::{QuarantineKey, ScopeKey};

    fn at(y: i32, m: u32, d: u32, h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, h, 0, 0).single().unwrap_or_default()
    }

    #[test]
    fn times_are_days_or_rfc3339_and_anything_else_is_refused_by_name() {
        assert_eq!(parse_time("2026-03-01"), Ok(at(2026, 3, 1, 0)));
        assert_eq!(parse_time("2026-03-01T09:00:00+02:00"), Ok(at(2026, 3, 1, 7)));
        let refused = parse_time("March").unwrap_err();
        assert!(refused.contains("\"March\" is neither a day"), "{refused}");
        assert!(parse_time("2026-02-30").is_err(), "no such day");
    }

    #[test]
    fn a_period_covers_every_day_it_touches_and_must_not_be_empty() {
        let march = Period::new(at(2026, 3, 1, 0), at(2026, 4, 1, 0)).unwrap();
        assert_eq!(march.days().count(), 31);
        assert_eq!(march.last_day(), NaiveDate::from_ymd_opt(2026, 3, 31).unwrap());
        let leap_year = Period::new(at(2028, 1, 1, 0), at(2029, 1, 1, 0)).unwrap();
        assert_eq!(leap_year.days().count(), 366);
        let partial = Period::new(at(2026, 3, 1, 12), at(2026, 3, 2, 1)).unwrap();
        assert_eq!(partial.days().count(), 2);
        assert!(matches!(Period::new(at(2026, 3, 2, 0), at(2026, 3, 1, 0)), Err(PeriodError::Empty { .. })));
        assert!(matches!(Period::new(at(2026, 3, 1, 0), at(2026, 3, 1, 0)), Err(PeriodError::Empty { .. })));
        assert!(matches!(Period::new(at(1026, 3, 1, 0), at(2026, 3, 1, 0)), Err(PeriodError::TooLong { .. })));
    }

    fn entry(raw: &str, window: Option<(DateTime<Utc>, DateTime<Utc>)>) -> ReportQuarantine {
        ReportQuarantine {
            key: QuarantineKey("k".into()),
            scope: ScopeKey::user(),
            reason: "r".into(),
            raw: raw.into(),
            window,
            first_seen_at: at(2026, 3, 20, 8),
        }
    }

    #[test]
    fn a_quarantined_item_counts_on_its_readable_create_time_else_its_window_s_first_day_in_the_period() {
        let march = Period::new(at(2026, 3, 1, 0), at(2026, 4, 1, 0)).unwrap();
        let window = Some((at(2026, 3, 10, 0), at(2026, 3, 17, 0)));
        let readable = attribute(entry(r#"{"createTime":"2026-03-12T10:00:00Z"}"#, window), &march).unwrap();
        assert_eq!(readable.date, NaiveDate::from_ymd_opt(2026, 3, 12).unwrap());
        let unreadable = attribute(entry(r#"{"id":"x","createTime":"soon"}"#, window), &march).unwrap();
        assert_eq!(unreadable.date, NaiveDate::from_ymd_opt(2026, 3, 10).unwrap());
        // A window that starts before the period counts on the period's first day.
        let straddling = Some((at(2026, 2, 26, 0), at(2026, 3, 5, 0)));
        assert_eq!(attribute(entry("not json", straddling), &march).unwrap().date, march.first_day());
        let before = Some((at(2026, 2, 1, 0), at(2026, 3, 1, 0)));
        assert_eq!(attribute(entry("not json", before), &march), None, "the window ends where the period starts");
        let elsewhere = attribute(entry(r#"{"createTime":"2026-05-01T00:00:00Z"}"#, window), &march);
        assert_eq!(elsewhere, None, "a readable createTime outside the period wins over the window");
        let windowless = attribute(entry("{}", None), &march).unwrap();
        assert_eq!(windowless.attribution, Attribution::FirstSeen(at(2026, 3, 20, 8)));
    }
}
