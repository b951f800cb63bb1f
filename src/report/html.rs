//! The HTML form: one self-contained page (inline CSS and SVG; no script, font, image or
//! link fetched from anywhere) that a compliance officer hands an auditor. In order: the
//! period and the totals, the gaps (or a plain "No gaps"), a coverage chart per day, the
//! day table, then the recordings.
//!
//! Every piece that holds a value is rendered by `maud`, which escapes text and
//! attributes (ids, hosts, sites and reasons come from the network); only fixed tags
//! that open and close the streamed tables are written as constants. Numbers carry
//! stable hooks for machines: `data-day` + `data-field` (+ `data-value`) on each day's
//! cells, `data-total` (+ `data-value`) on the totals, `data-gap` on each gap's row and
//! `data-recording` on each recording's row.
//!
//! Size: every gap and every recording final for a reason other than being archived is
//! listed; archived recordings are listed one by one only when the period has at most
//! [`ARCHIVED_ROWS_MAX`] of them (beyond that they are counted per day, and the page says
//! the JSON and CSV forms carry every row).

use std::io::Write;

use chrono::{DateTime, Datelike, NaiveDate, SecondsFormat, Utc};
use futures::TryStreamExt as _;
use maud::{DOCTYPE, Markup, PreEscaped, html};

use super::{Attribution, Day, Overview, QuarantinedGap, ReportError};
use crate::state::{ArchiveState, ReportRecording, ReportSelection, ReportSnapshot};

/// Archived recordings listed one by one at most; beyond, per day counts only.
pub const ARCHIVED_ROWS_MAX: i64 = 10_000;

/// Days beyond which the chart shows a bar per month instead of per day.
const CHART_DAYS_MAX: usize = 400;

const STYLE: &str = r#"
:root { --ink: #1d2433; --muted: #5b6475; --faint: #9aa3b2; --line: #dde1e8; --head: #f2f4f7;
  --ok: #2f7d4f; --ok-bg: #eaf5ee; --settled: #8792a5; --gap: #b3261e; --gap-bg: #fbeceb; }
* { box-sizing: border-box; }
body { margin: 0; color: var(--ink); background: #fff;
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1240px; margin: 0 auto; padding: 28px 32px 48px; }
header { border-bottom: 3px solid var(--ink); padding-bottom: 14px; margin-bottom: 20px; }
.eyebrow { text-transform: uppercase; letter-spacing: .08em; font-size: 12px; color: var(--muted); margin: 0; }
h1 { font-size: 26px; margin: 4px 0 6px; }
h2 { font-size: 18px; margin: 30px 0 8px; padding-bottom: 4px; border-bottom: 1px solid var(--line); }
.period { font-size: 16px; margin: 0; }
.meta { color: var(--muted); font-size: 12.5px; margin: 4px 0 0; }
.verdict { border-radius: 6px; padding: 12px 16px; margin: 0 0 18px; font-size: 15px; border: 1px solid; }
.verdict strong { font-size: 17px; display: block; margin-bottom: 2px; }
.verdict.ok { background: var(--ok-bg); border-color: #b9dcc6; }
.verdict.ok strong { color: var(--ok); }
.verdict.gaps { background: var(--gap-bg); border-color: #efc2be; }
.verdict.gaps strong { color: var(--gap); }
.verdict.caution { background: #fdf6e3; border-color: #ecd9a0; }
.verdict.caution strong { color: #8a6100; }
.totals { display: grid; grid-template-columns: repeat(auto-fill, minmax(160px, 1fr)); gap: 10px; margin: 0; }
.totals div { border: 1px solid var(--line); border-radius: 6px; padding: 8px 12px; }
.totals dt { font-size: 12px; color: var(--muted); }
.totals dd { margin: 2px 0 0; font-size: 20px; font-weight: 600; font-variant-numeric: tabular-nums; }
.totals dd small { font-size: 12px; font-weight: 400; color: var(--muted); }
.totals .bad dd { color: var(--gap); }
p.note { color: var(--muted); font-size: 12.5px; margin: 6px 0; }
p.none { font-size: 15px; color: var(--ok); font-weight: 600; }
table { border-collapse: collapse; width: 100%; font-size: 12.5px; }
table.gaps, table.recordings { table-layout: fixed; }
thead { display: table-header-group; }
th { background: var(--head); text-align: left; font-weight: 600; padding: 6px 8px;
  border-bottom: 1px solid var(--line); vertical-align: bottom; }
td { padding: 4px 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
tbody tr:nth-child(even) td { background: #fafbfc; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.zero { color: var(--faint); }
td.alert { color: var(--gap); font-weight: 600; }
tr.has-gaps td:first-child { box-shadow: inset 3px 0 0 var(--gap); }
tfoot td { font-weight: 600; border-top: 2px solid var(--ink); background: var(--head); }
td.when { font-variant-numeric: tabular-nums; }
code { font: 11.5px/1.35 ui-monospace, "SFMono-Regular", Menlo, Consolas, "Liberation Mono", monospace;
  overflow-wrap: anywhere; }
.file { display: grid; grid-template-columns: 70px minmax(0, 1fr); margin-bottom: 4px; }
.file .kind { color: var(--muted); }
.file .digest { color: var(--muted); }
.file .digest code { color: var(--muted); }
.state { display: inline-block; padding: 0 6px; border-radius: 3px; font-size: 11.5px; white-space: nowrap;
  border: 1px solid var(--line); }
.state.archived { color: var(--ok); border-color: #b9dcc6; background: var(--ok-bg); }
.state.gap { color: var(--gap); border-color: #efc2be; background: var(--gap-bg); }
.sub { color: var(--muted); }
.nowrap { white-space: nowrap; }
figure { margin: 0; }
figcaption { color: var(--muted); font-size: 12.5px; margin-top: 4px; }
.legend { display: flex; gap: 18px; font-size: 12.5px; margin: 4px 0 6px; flex-wrap: wrap; }
.legend span::before { content: ""; display: inline-block; width: 11px; height: 11px; margin-right: 5px;
  vertical-align: -1px; border-radius: 2px; background: var(--c); }
svg { width: 100%; height: auto; display: block; }
svg text { font: 10px system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif; fill: var(--muted); }
footer { margin-top: 36px; border-top: 1px solid var(--line); padding-top: 10px; color: var(--muted);
  font-size: 12.5px; }
footer dt { font-weight: 600; color: var(--ink); margin-top: 6px; }
footer dd { margin: 0 0 0 0; }
@page { size: A4 landscape; margin: 12mm; }
@media print { main { max-width: none; padding: 0; } h2 { break-after: avoid; } tr { break-inside: avoid; } }
"#;

const BODY_END: &str = "</main></body></html>\n";
const TABLE_END: &str = "</tbody></table>";

/// A time in a table cell: the day, and the time of day under it.
fn when_cell(t: DateTime<Utc>) -> Markup {
    html! { (t.format("%Y-%m-%d")) br; span.sub { (t.format("%H:%M:%S")) } }
}

/// `1234567` as `1,234,567`.
fn grouped(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if n < 0 {
        out.push('-');
    }
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Bytes for a person: `1.5 GiB`.
fn human_bytes(n: i64) -> String {
    const UNITS: [&str; 6] = ["bytes", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{n} bytes") } else { format!("{value:.1} {}", UNITS[unit]) }
}

fn percent(part: i64, whole: i64) -> String {
    if whole == 0 {
        return "—".to_owned();
    }
    let p = part as f64 * 100.0 / whole as f64;
    // Never round a shortfall up to a complete-looking 100%.
    if part < whole && p > 99.9 { "99.9%".to_owned() } else { format!("{p:.1}%") }
}

struct Page<'w, W> {
    out: &'w mut W,
}

impl<W: Write> Page<'_, W> {
    fn put(&mut self, markup: Markup) -> Result<(), ReportError> {
        self.out.write_all(markup.into_string().as_bytes()).map_err(ReportError::output)
    }

    fn fixed(&mut self, markup: &'static str) -> Result<(), ReportError> {
        self.out.write_all(markup.as_bytes()).map_err(ReportError::output)
    }
}

/// Writes the page: the overview first, then the gaps and the recordings as the database
/// sends them.
pub(super) async fn write(
    snapshot: &mut dyn ReportSnapshot,
    overview: &Overview,
    generated: DateTime<Utc>,
    out: &mut (impl Write + Send),
) -> Result<(), ReportError> {
    let mut page = Page { out };
    page.put(head(overview, generated))?;
    // Gaps first.
    page.put(gaps_heading(overview))?;
    if overview.gaps() > 0 {
        page.put(gaps_table_head())?;
        let mut gaps = snapshot.recordings(ReportSelection::Gaps);
        while let Some(recording) = gaps.try_next().await? {
            page.put(gap_row(&recording))?;
        }
        drop(gaps);
        for gap in &overview.quarantined {
            page.put(quarantined_row(gap))?;
        }
        page.fixed(TABLE_END)?;
    }
    page.put(coverage(overview))?;
    page.put(day_table(overview))?;
    let list_archived = overview.totals.archived <= ARCHIVED_ROWS_MAX;
    page.put(recordings_heading(overview, list_archived))?;
    let selection = if list_archived { ReportSelection::Final } else { ReportSelection::FinalNotArchived };
    let mut rows = 0u64;
    let mut recordings = snapshot.recordings(selection);
    while let Some(recording) = recordings.try_next().await? {
        if rows == 0 {
            page.put(recordings_table_head())?;
        }
        page.put(recording_row(&recording))?;
        rows += 1;
    }
    drop(recordings);
    if rows > 0 {
        page.fixed(TABLE_END)?;
    } else {
        page.put(html! { p.note { "No recording of this period is archived or final for a stated reason." } })?;
    }
    page.put(notes(overview))?;
    page.fixed(BODY_END)
}

fn title(overview: &Overview) -> String {
    format!(
        "Recording archive attestation, {} to {}",
        overview.period.from.to_rfc3339_opts(SecondsFormat::AutoSi, true),
        overview.period.to.to_rfc3339_opts(SecondsFormat::AutoSi, true)
    )
}

/// A total with its hook: `data-total` and `data-value` hold the exact number.
fn total(field: &str, label: &str, value: i64, shown: String, extra: Option<String>, bad: bool) -> Markup {
    html! {
        div class=[bad.then_some("bad")] {
            dt { (label) }
            dd data-total=(field) data-value=(value) {
                (shown)
                @if let Some(extra) = extra { " " small { (extra) } }
            }
        }
    }
}

/// From the document's start to the totals (the `<main>` element stays open).
fn head(overview: &Overview, generated: DateTime<Utc>) -> Markup {
    let t = &overview.totals;
    let gaps = overview.gaps();
    let period = &overview.period;
    let last = period.to - chrono::TimeDelta::nanoseconds(1);
    html! {
        (DOCTYPE)
        (PreEscaped("<html lang=\"en\">"))
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title(overview)) }
            style { (PreEscaped(STYLE)) }
        }
        (PreEscaped("<body><main>"))
        header {
            p.eyebrow { "Webex meeting recordings · archive attestation report" }
            h1 { "Coverage of the recording archive" }
            p.period {
                "Recordings created from "
                strong data-period="from" data-value=(period.from.to_rfc3339_opts(SecondsFormat::AutoSi, true)) {
                    (period.from.format("%Y-%m-%d %H:%M:%S UTC"))
                }
                " up to (not including) "
                strong data-period="to" data-value=(period.to.to_rfc3339_opts(SecondsFormat::AutoSi, true)) {
                    (period.to.format("%Y-%m-%d %H:%M:%S UTC"))
                }
                " — " (overview.days.len()) " UTC day" @if overview.days.len() != 1 { "s" }
                ", " span.nowrap { (period.first_day()) " to " (last.date_naive()) } "."
            }
            p.meta {
                "Generated " (generated.format("%Y-%m-%d %H:%M:%S UTC"))
                " by webex-archiver " (env!("CARGO_PKG_VERSION"))
                " from its database alone (one consistent snapshot); all times are UTC."
            }
        }
        @if gaps == 0 {
            div.verdict.ok {
                strong { "No gaps" }
                "Every recording listed by Webex for this period is archived, or final for a stated "
                "reason (not downloadable, lost at the source)."
                @if t.listed == 0 { " No recording was listed for this period." }
            }
        } @else {
            div.verdict.gaps {
                strong { (grouped(gaps)) " gap" @if gaps != 1 { "s" } }
                "Listed by Webex but neither archived nor final for a stated reason: "
                (grouped(t.unfinished)) " waiting or being archived, "
                (grouped(t.failed)) " failed, "
                (grouped(t.quarantined)) " listed but unreadable (quarantined). Each is listed below."
            }
        }
        @match overview.listing_behind() {
            None => div.verdict.caution {
                strong { "Listing not started" }
                "No discovery pass has run on this database: it knows no recording Webex may hold for this period."
            },
            Some(behind) if !behind.is_empty() => div.verdict.caution {
                strong { "Listing not complete for this period" }
                "Discovery has not yet listed up to the end of the period: recordings created after these instants "
                "are not known to the archiver yet. "
                @for (i, (scope, up_to)) in behind.iter().enumerate() {
                    @if i > 0 { "; " }
                    code { (scope.0) } " up to " span.nowrap { (up_to.format("%Y-%m-%d %H:%M:%S UTC")) }
                }
                "."
            },
            Some(_) => {}
        }
        dl.totals {
            (total("listed", "Listed by Webex", t.listed, grouped(t.listed), None, false))
            (total("archived", "Archived", t.archived, grouped(t.archived),
                Some(percent(t.archived, t.listed)), false))
            (total("bytes", "Bytes archived", t.bytes, human_bytes(t.bytes), None, false))
            (total("not_downloadable", "Not downloadable", t.not_downloadable, grouped(t.not_downloadable),
                None, false))
            (total("lost_at_source", "Lost at the source", t.lost_at_source, grouped(t.lost_at_source),
                None, false))
            (total("failed", "Failed", t.failed, grouped(t.failed), None, t.failed > 0))
            (total("quarantined", "Quarantined", t.quarantined, grouped(t.quarantined), None,
                t.quarantined > 0))
            (total("gaps", "Gaps", gaps, grouped(gaps), None, gaps > 0))
            (total("deleted_at_source", "Deleted at the source", t.deleted_at_source,
                grouped(t.deleted_at_source), None, false))
            (total("purged_at_source", "Purged at the source", t.purged_at_source,
                grouped(t.purged_at_source), None, false))
            (total("under_hold", "Under legal hold", t.under_hold, grouped(t.under_hold), None, false))
        }
    }
}

fn gaps_heading(overview: &Overview) -> Markup {
    let gaps = overview.gaps();
    html! {
        h2 id="gaps" { "Gaps" }
        @if gaps == 0 {
            p.none { "No gaps." }
            p.note {
                "No recording of this period is waiting, being archived, failed, or listed but unreadable."
            }
        } @else {
            p.note {
                "Recordings that are not yet archived (waiting or being archived), that failed (they need a "
                "person: fix the cause, then run " code { "webex-archiver retry" } "), and listed items that "
                "could not be read (quarantined; see " code { "webex-archiver status" } ")."
            }
        }
    }
}

fn gaps_table_head() -> Markup {
    html! {
        (PreEscaped("<table class=\"gaps\">"))
        colgroup {
            col style="width: 11%"; col style="width: 28%"; col style="width: 9%"; col style="width: 18%";
            col style="width: 34%";
        }
        thead { tr {
            th { "Created (UTC)" } th { "Recording id or quarantine key" } th { "State" }
            th { "Site · host" } th { "Why it is a gap" }
        } }
        (PreEscaped("<tbody>"))
    }
}

fn gap_reason(r: &ReportRecording) -> String {
    match (r.state, r.reason.as_deref()) {
        (ArchiveState::Failed, Some(reason)) => format!("Failed ({reason}); a person must look, then retry."),
        (ArchiveState::Failed, None) => "Failed; a person must look, then retry.".to_owned(),
        (ArchiveState::Pending, Some(reason)) => format!("Waiting for another attempt (last: {reason})."),
        (ArchiveState::Pending, None) => "Waiting to be archived.".to_owned(),
        (ArchiveState::Archiving, _) => "Being archived now.".to_owned(),
        (state, _) => format!("{}.", state.as_str()),
    }
}

fn gap_row(r: &ReportRecording) -> Markup {
    html! {
        tr data-gap=(r.id.0) {
            td.when { (when_cell(r.create_time)) }
            td { code { (r.id.0) } }
            td { span.state.gap { (r.state.as_str()) } }
            td { (site_host(r)) }
            td { (gap_reason(r)) }
        }
    }
}

fn quarantined_row(gap: &QuarantinedGap) -> Markup {
    let (when_text, basis) = match gap.attribution {
        Attribution::CreateTime(t) => (t.format("%Y-%m-%d %H:%M:%S").to_string(), None),
        Attribution::Window(from, to) => {
            (format!("{} – {}", from.format("%Y-%m-%d"), to.format("%Y-%m-%d")), Some("listing window"))
        }
        Attribution::FirstSeen(t) => {
            (t.format("%Y-%m-%d %H:%M:%S").to_string(), Some("first listed; createTime unknown"))
        }
    };
    html! {
        tr data-gap=(gap.entry.key.0) {
            td.when { (when_text) @if let Some(basis) = basis { br; span.sub { (basis) } } }
            td { code { (gap.entry.key.0) } }
            td { span.state.gap { "quarantined" } }
            td { span.sub { "listed by " } (gap.entry.scope.0) }
            td { "Listed but could not be read: " (gap.entry.reason) }
        }
    }
}

fn site_host(r: &ReportRecording) -> Markup {
    html! {
        (r.site_url.as_deref().unwrap_or("—"))
        @if let Some(host) = &r.host_email { br; span.sub { (host) } }
    }
}

/// A bar of the chart: a day, or a month when the period is long.
struct Bar {
    start: NaiveDate,
    label: String,
    archived: i64,
    settled: i64,
    gaps: i64,
    listed: i64,
}

fn bars(days: &[Day]) -> (Vec<Bar>, bool) {
    let per_month = days.len() > CHART_DAYS_MAX;
    let mut bars: Vec<Bar> = Vec::new();
    for day in days {
        let same = per_month
            && bars.last().is_some_and(|b| (b.start.year(), b.start.month()) == (day.date.year(), day.date.month()));
        if !same {
            let label = if per_month { day.date.format("%Y-%m").to_string() } else { day.date.to_string() };
            bars.push(Bar { start: day.date, label, archived: 0, settled: 0, gaps: 0, listed: 0 });
        }
        if let Some(bar) = bars.last_mut() {
            bar.archived += day.archived;
            bar.settled += day.not_downloadable + day.lost_at_source;
            bar.gaps += day.gaps();
            bar.listed += day.listed + day.quarantined;
        }
    }
    (bars, per_month)
}

/// A coordinate to the hundredth, enough for a drawing and short to write.
fn r2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// The smallest of 1, 2, 5 × 10^k that is at least `x`.
fn nice(x: f64) -> f64 {
    let x = x.max(1.0);
    let magnitude = 10f64.powf(x.log10().floor());
    [1.0, 2.0, 5.0, 10.0].into_iter().map(|m| m * magnitude).find(|v| *v >= x).unwrap_or(10.0 * magnitude)
}

fn coverage(overview: &Overview) -> Markup {
    const W: f64 = 1000.0;
    const LEFT: f64 = 56.0;
    const RIGHT: f64 = 8.0;
    const TOP: f64 = 10.0;
    const PLOT: f64 = 200.0;
    let (bars, per_month) = bars(&overview.days);
    let n = bars.len().max(1) as f64;
    let slot = (W - LEFT - RIGHT) / n;
    let width = r2((slot * 0.78).max(0.5));
    let max = bars.iter().map(|b| b.listed).max().unwrap_or(0) as f64;
    let step = nice(max / 4.0);
    let top = (max / step).ceil().max(1.0) * step;
    let y = |v: f64| r2(TOP + PLOT - v / top * PLOT);
    let base = TOP + PLOT;
    let ticks: Vec<f64> = (0..=((top / step).round() as i64)).map(|i| i as f64 * step).collect();
    let unit = if per_month { "month" } else { "day" };
    // Which bars get a label under the axis.
    let labelled: Vec<(usize, String)> = bars
        .iter()
        .enumerate()
        .filter_map(|(i, b)| {
            if per_month {
                (b.start.month() == 1 || i == 0).then(|| (i, b.start.format("%Y").to_string()))
            } else if bars.len() <= 45 {
                Some((i, b.start.format("%-d").to_string()))
            } else {
                (b.start.day() == 1 || i == 0).then(|| (i, b.start.format("%b %Y").to_string()))
            }
        })
        .collect();
    let months: Vec<(usize, String)> = if !per_month && bars.len() <= 45 {
        bars.iter()
            .enumerate()
            .filter(|(i, b)| *i == 0 || b.start.day() == 1)
            .map(|(i, b)| (i, b.start.format("%b %Y").to_string()))
            .collect()
    } else {
        Vec::new()
    };
    let height = base + 48.0;
    html! {
        h2 id="coverage" { "Coverage per " (unit) }
        div.legend {
            span style="--c: #2f7d4f" { "Archived" }
            span style="--c: #8792a5" { "Final for a stated reason (not downloadable, lost at the source)" }
            span style="--c: #b3261e" { "Gap (waiting, being archived, failed, quarantined)" }
        }
        figure {
            svg xmlns="http://www.w3.org/2000/svg" viewBox={"0 0 " (W) " " (height)} role="img"
                aria-label={"Recordings per " (unit) ": archived, final for a stated reason, and gaps"} {
                @for tick in &ticks {
                    line x1=(LEFT) x2=(W - RIGHT) y1=(y(*tick)) y2=(y(*tick))
                        stroke=(if *tick == 0.0 { "#5b6475" } else { "#e3e6eb" }) stroke-width="1" {}
                    text x=(LEFT - 6.0) y=(y(*tick) + 3.5) text-anchor="end" { (grouped(*tick as i64)) }
                }
                @for (i, bar) in bars.iter().enumerate() {
                    @let x = r2(LEFT + i as f64 * slot + (slot - width) / 2.0);
                    @let archived_top = y(bar.archived as f64);
                    @let settled_top = y((bar.archived + bar.settled) as f64);
                    @let gaps_top = y((bar.archived + bar.settled + bar.gaps) as f64);
                    g {
                        title {
                            (bar.label) ": listed " (bar.listed) ", archived " (bar.archived)
                            ", final for a reason " (bar.settled) ", gaps " (bar.gaps)
                        }
                        rect x=(x) y=(base - PLOT) width=(width) height=(PLOT) fill="transparent" {}
                        @if bar.archived > 0 {
                            rect x=(x) y=(archived_top) width=(width) height=(r2(base - archived_top)) fill="#2f7d4f" {}
                        }
                        @if bar.settled > 0 {
                            rect x=(x) y=(settled_top) width=(width) height=(r2(archived_top - settled_top))
                                fill="#8792a5" {}
                        }
                        @if bar.gaps > 0 {
                            rect x=(x) y=(gaps_top) width=(width) height=(r2(settled_top - gaps_top)) fill="#b3261e" {}
                            // A mark under the axis, so that one gap among thousands shows.
                            rect x=(x) y=(base + 3.0) width=(width.max(1.5)) height="5" fill="#b3261e" {}
                        }
                    }
                }
                @for (i, label) in &labelled {
                    @let x = r2(LEFT + *i as f64 * slot + slot / 2.0);
                    line x1=(x) x2=(x) y1=(base) y2=(base + 12.0) stroke="#c5cad3" stroke-width="1" {}
                    text x=(x) y=(base + 22.0) text-anchor="middle" { (label) }
                }
                @for (i, label) in &months {
                    @let x = r2(LEFT + *i as f64 * slot + 1.0);
                    // A label near the right edge ends there instead of being cut.
                    @let anchor = if x + 60.0 > W - RIGHT { "end" } else { "start" };
                    text x=(if anchor == "end" { W - RIGHT } else { x }) y=(base + 38.0) text-anchor=(anchor) { (label) }
                }
            }
            figcaption {
                "Each bar is one UTC " (unit) " of createTime; its height is what Webex listed (recordings and "
                "unreadable items). A red mark under the axis flags every " (unit) " with a gap."
            }
        }
    }
}

/// A day's cell with its hook.
fn day_cell(day: &Day, field: &str, value: i64, alert: bool) -> Markup {
    let class = if value == 0 {
        "n zero"
    } else if alert {
        "n alert"
    } else {
        "n"
    };
    html! {
        td class=(class) data-day=(day.date) data-field=(field) data-value=(value) {
            @if field == "bytes" && value > 0 { (human_bytes(value)) } @else { (value) }
        }
    }
}

fn total_cell(field: &str, value: i64) -> Markup {
    html! {
        td.n data-total=(field) data-value=(value) {
            @if field == "bytes" { (human_bytes(value)) } @else { (grouped(value)) }
        }
    }
}

fn day_table(overview: &Overview) -> Markup {
    let t = &overview.totals;
    html! {
        h2 id="days" { "Per day" }
        p.note {
            "Recordings by the UTC day of their createTime. Bytes are those of every stored file of the "
            "archived recordings (metadata.json excluded). A quarantined item counts on the day of its "
            "createTime when that reads, else on the first day of its listing window within the period."
        }
        table.days {
            thead { tr {
                th { "Date" } th.n { "Listed" } th.n { "Archived" } th.n { "Bytes" } th.n { "Not downloadable" }
                th.n { "Lost at source" } th.n { "Failed" } th.n { "Quarantined" } th.n { "Gaps" }
                th.n { "Deleted at source" } th.n { "Purged at source" } th.n { "Under hold" }
            } }
            tbody {
                @for day in &overview.days {
                    tr class=[(day.gaps() > 0).then_some("has-gaps")] {
                        td.when { (day.date) }
                        (day_cell(day, "listed", day.listed, false))
                        (day_cell(day, "archived", day.archived, false))
                        (day_cell(day, "bytes", day.bytes, false))
                        (day_cell(day, "not_downloadable", day.not_downloadable, false))
                        (day_cell(day, "lost_at_source", day.lost_at_source, false))
                        (day_cell(day, "failed", day.failed, true))
                        (day_cell(day, "quarantined", day.quarantined, true))
                        (day_cell(day, "gaps", day.gaps(), true))
                        (day_cell(day, "deleted_at_source", day.deleted_at_source, false))
                        (day_cell(day, "purged_at_source", day.purged_at_source, false))
                        (day_cell(day, "under_hold", day.under_hold, false))
                    }
                }
            }
            tfoot { tr {
                td { "Total" }
                (total_cell("listed", t.listed)) (total_cell("archived", t.archived)) (total_cell("bytes", t.bytes))
                (total_cell("not_downloadable", t.not_downloadable)) (total_cell("lost_at_source", t.lost_at_source))
                (total_cell("failed", t.failed)) (total_cell("quarantined", t.quarantined))
                (total_cell("gaps", t.gaps())) (total_cell("deleted_at_source", t.deleted_at_source))
                (total_cell("purged_at_source", t.purged_at_source)) (total_cell("under_hold", t.under_hold))
            } }
        }
    }
}

fn recordings_heading(overview: &Overview, list_archived: bool) -> Markup {
    html! {
        h2 id="recordings" { "Recordings archived or final for a stated reason" }
        @if list_archived {
            p.note {
                "Every such recording of the period, by createTime (the gaps are listed above). Each stored file "
                "is named by its key under the archive's storage prefix, with its SHA-256 and size."
            }
        } @else {
            p.note {
                "This period has " (grouped(overview.totals.archived)) " archived recordings, more than this "
                "page lists one by one (" (grouped(ARCHIVED_ROWS_MAX)) "): they are counted per day above. "
                "Below are the recordings final for another stated reason. The JSON and CSV forms of this "
                "report (" code { "webex-archiver report --format json" } " or " code { "--format csv" }
                ") carry every recording with its keys and SHA-256."
            }
        }
    }
}

fn recordings_table_head() -> Markup {
    html! {
        (PreEscaped("<table class=\"recordings\">"))
        colgroup {
            col style="width: 9%"; col style="width: 19%"; col style="width: 15%"; col style="width: 36%";
            col style="width: 9%"; col style="width: 12%";
        }
        thead { tr {
            th { "Created (UTC)" } th { "Recording id · state" } th { "Site · host" }
            th { "Stored files: key under the storage prefix, SHA-256, size" } th { "Archived at" }
            th { "Deleted at source · retention · legal hold" }
        } }
        (PreEscaped("<tbody>"))
    }
}

fn recording_row(r: &ReportRecording) -> Markup {
    let archived = r.state == ArchiveState::Archived;
    html! {
        tr data-recording=(r.id.0) {
            td.when { (when_cell(r.create_time)) }
            td { code { (r.id.0) } br; span.state.archived[archived] { (r.state.as_str()) } }
            td { (site_host(r)) }
            td {
                @for file in &r.files {
                    div.file {
                        span.kind { (file.kind) }
                        div {
                            code { (file.key) }
                            @if file.sha256.is_some() || file.size.is_some() {
                                div.digest {
                                    @if let Some(sha) = &file.sha256 { "SHA-256 " code { (sha) } }
                                    @if let Some(size) = file.size {
                                        " · " (grouped(i64::try_from(size).unwrap_or(i64::MAX))) " bytes"
                                    }
                                }
                            }
                        }
                    }
                }
                @if r.files.is_empty() { span.sub { "no file stored" } }
            }
            td.when { @if let Some(t) = r.archived_at { (when_cell(t)) } @else { "—" } }
            td {
                @if let Some(t) = r.deleted_at_source { "deleted " (t.format("%Y-%m-%d %H:%M:%S")) br; }
                @if let Some(t) = r.purged_at_source { "purged " (t.format("%Y-%m-%d %H:%M:%S")) br; }
                @if r.deleted_at_source.is_none() && r.purged_at_source.is_none() { "not deleted" br; }
                span.sub {
                    "retained until " @if let Some(t) = r.retained_until { (t.format("%Y-%m-%d")) } @else { "—" } br;
                    "legal hold: " @if r.legal_hold { strong data-field="legal_hold" { "yes" } } @else { "no" }
                }
            }
        }
    }
}

fn notes(overview: &Overview) -> Markup {
    html! {
        footer {
            dl {
                dt { "What this report attests" }
                dd {
                    "For every recording of the period that the archiver recorded from Webex's listings: whether "
                    "it is archived (every file and metadata.json stored, each file's SHA-256 checked as it was "
                    "written), or final for a stated reason: not downloadable (Webex serves no download link to "
                    "this token) or lost at the source (deleted or purged in Webex before it could be archived). "
                    "Anything else is a gap. Recordings created in the period that Webex's listings did not "
                    "return cannot appear here: the discovery cursors (" code { "webex-archiver status" }
                    ") say up to when each scope has been listed."
                }
                dt { "Deleted and purged at the source" }
                dd {
                    "When the archiver first saw a recording in Webex's recycle bin, or purged. A deletion at the "
                    "source never changes or removes anything in the archive."
                }
                dt { "Retention and legal hold" }
                dd {
                    "Not tracked by this version of the archiver: no recording is reported under hold, and none "
                    "has a retention date."
                }
                dt { "Checking the archive itself" }
                dd {
                    "This report reads the archiver's database only. " code { "webex-archiver verify" }
                    " re-reads every archived object and recomputes its SHA-256; " code { "webex-archiver verify --log" }
                    " checks the custody log's hash chains."
                }
            }
            p { "Period: " (title(overview)) "." }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_as_people_write_them() {
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(1_000), "1,000");
        assert_eq!(grouped(1_234_567), "1,234,567");
        assert_eq!(grouped(-1_000), "-1,000");
        assert_eq!(human_bytes(512), "512 bytes");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 << 30), "3.0 GiB");
        assert_eq!(percent(999_999, 1_000_000), "99.9%", "a shortfall never shows as 100%");
        assert_eq!(percent(5, 5), "100.0%");
        assert_eq!(percent(0, 0), "—");
    }

    #[test]
    fn chart_scales_are_round_numbers() {
        assert_eq!(nice(0.0), 1.0);
        assert_eq!(nice(3.0), 5.0);
        assert_eq!(nice(7.5), 10.0);
        assert_eq!(nice(2_600.0), 5_000.0);
    }
}
