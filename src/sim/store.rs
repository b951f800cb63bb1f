//! The recordings the simulator knows, kept sorted newest first so that a listing window
//! is two binary searches and a page is a short walk.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use chrono::{DateTime, Duration as ChronoDuration, SubsecRound, Utc};
use serde::{Deserialize, Serialize};

use super::config::SimConfig;
use super::content::{Content, splitmix64};
use crate::webex::models::{Recording, RecordingPassword};

/// What is true about one recording: what the archiver should end up with.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct TruthRecording {
    /// Recording id.
    pub id: String,
    /// Its `createTime` (the listing window filters on it).
    pub create_time: DateTime<Utc>,
    /// From when the listings show it (later than `create_time` for late arrivals).
    pub visible_at: DateTime<Utc>,
    /// Site host name.
    pub site_url: String,
    /// Host's e-mail.
    pub host_email: String,
    /// `MP4`, `ARF`, `UPLOADED`...
    pub format: String,
    /// Exact size of the recording file, bytes (`sizeBytes` and `Content-Length`).
    pub size_bytes: u64,
    /// Lowercase hex SHA-256 of the recording file. `None` only where digests were
    /// explicitly skipped (`GET /_sim/recordings?digests=false`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// "Prevent downloading" is on: details carry no links.
    pub prevent_downloading: bool,
    /// Listed by `GET /v1/recordings` for the token's user (hosted by them or shared).
    pub visible_to_user: bool,
    /// Shared with the token's user (and not hosted by them).
    pub share_to_me: bool,
    /// `available` or `deleted`.
    pub status: String,
    /// Meeting instance id.
    pub meeting_id: String,
    /// Topic.
    pub topic: String,
    /// Duration, seconds.
    pub duration_seconds: u64,
}

/// A recording published at runtime ([`super::SimHandle::add_recording`],
/// `POST /_sim/recordings`). Everything but `create_time` is optional.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub struct NewRecording {
    /// Its `createTime` (usually in the past: a late arrival).
    pub create_time: DateTime<Utc>,
    /// From when it is listed; `None` = now.
    pub visible_at: Option<DateTime<Utc>>,
    /// Id; `None` = a fresh random-looking one.
    pub id: Option<String>,
    /// Site; `None` = the default site.
    pub site_url: Option<String>,
    /// Host; `None` = the token's user.
    pub host_email: Option<String>,
    /// Shared with the token's user (only meaningful when another user hosts it).
    pub share_to_me: bool,
    /// Format; `None` = `MP4`.
    pub format: Option<String>,
    /// Size in bytes; `None` = the configured size rules.
    pub size_bytes: Option<u64>,
    /// "Prevent downloading".
    pub prevent_downloading: bool,
    /// Topic; `None` = a generated one.
    pub topic: Option<String>,
    /// Meeting instance id; `None` = a fresh one.
    pub meeting_id: Option<String>,
}

/// A move of a recording into or out of Webex's recycle bin at a given time: the listings
/// show it with that `status` from then on (scenario `[[recycle_bin]]`, control
/// `recycle_bin`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BinMove {
    /// Recording id.
    pub id: String,
    /// `deleted` (in the recycle bin), `purged` (removed from it) or `available`
    /// (restored).
    pub status: String,
    /// When, as an instant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<DateTime<Utc>>,
    /// When, after the simulator started (scenario) or the control request; used when
    /// `at` is absent, and "now" when both are.
    #[serde(default, with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub after: Option<std::time::Duration>,
}

/// The statuses a recording can have.
pub(crate) const STATUSES: [&str; 3] = ["available", "deleted", "purged"];

/// One recording with its precomputed wire items.
pub(crate) struct SimRecording {
    pub(crate) serial: u64,
    pub(crate) id: String,
    pub(crate) create_time: DateTime<Utc>,
    pub(crate) visible_at: DateTime<Utc>,
    pub(crate) site: usize,
    pub(crate) host: usize,
    pub(crate) share_to_me: bool,
    pub(crate) prevent_downloading: bool,
    pub(crate) format: String,
    pub(crate) service_type: String,
    pub(crate) status: String,
    pub(crate) size: u64,
    pub(crate) duration: u64,
    pub(crate) topic_lower: String,
    /// As `GET /v1/recordings` lists it (password, shareToMe; no host fields).
    pub(crate) user_item: Recording,
    /// As `GET /v1/admin/recordings` lists it (host fields; no password, shareToMe).
    pub(crate) admin_item: Recording,
    sha256: OnceLock<String>,
}

impl SimRecording {
    /// Descending sort key.
    pub(crate) fn key(&self) -> (DateTime<Utc>, &str) {
        (self.create_time, &self.id)
    }

    pub(crate) fn content(&self) -> Content {
        Content::recording(&self.id, &self.format, self.size)
    }

    pub(crate) fn sha256(&self) -> &str {
        self.sha256.get_or_init(|| self.content().sha256_hex())
    }

    pub(crate) fn matches_meeting(&self, meeting: &str) -> bool {
        let r = &self.user_item;
        [&r.meeting_id, &r.scheduled_meeting_id, &r.meeting_series_id].iter().any(|m| m.as_deref() == Some(meeting))
    }
}

/// Facts about the world the store needs to build items.
pub(crate) struct World {
    pub(crate) sites: Vec<String>,
    pub(crate) default_site: usize,
    pub(crate) hosts: Vec<String>,
    pub(crate) site_base: String,
}

impl World {
    pub(crate) fn user(&self) -> usize {
        0
    }
}

/// All recordings, plus sorted views.
pub(crate) struct Store {
    by_id: HashMap<String, Arc<SimRecording>>,
    by_serial: HashMap<u64, Arc<SimRecording>>,
    /// Every recording, newest first.
    pub(crate) all: Vec<Arc<SimRecording>>,
    /// Those the token user may list, newest first.
    pub(crate) user: Vec<Arc<SimRecording>>,
    /// Per site, newest first.
    pub(crate) per_site: Vec<Vec<Arc<SimRecording>>>,
    next_serial: u64,
    /// Recycle-bin moves per recording id, in time order.
    bin: HashMap<String, Vec<(DateTime<Utc>, String)>>,
}

impl Store {
    pub(crate) fn new(sites: usize) -> Self {
        Self {
            by_id: HashMap::new(),
            by_serial: HashMap::new(),
            all: Vec::new(),
            user: Vec::new(),
            per_site: vec![Vec::new(); sites],
            next_serial: 300_000,
            bin: HashMap::new(),
        }
    }

    /// Schedules a recycle-bin move, `base` being what `after` counts from.
    pub(crate) fn schedule(&mut self, mv: &BinMove, base: DateTime<Utc>) -> Result<(), String> {
        if !STATUSES.contains(&mv.status.as_str()) {
            return Err(format!("recycle_bin: status {:?} is not one of {STATUSES:?}", mv.status));
        }
        if !self.contains(&mv.id) {
            return Err(format!("recycle_bin: no recording has the id {:?}", mv.id));
        }
        let at = match (mv.at, mv.after) {
            (Some(at), _) => at,
            (None, Some(after)) => base + ChronoDuration::from_std(after).unwrap_or(ChronoDuration::MAX),
            (None, None) => base,
        };
        let moves = self.bin.entry(mv.id.clone()).or_default();
        let index = moves.partition_point(|(t, _)| *t <= at);
        moves.insert(index, (at, mv.status.clone()));
        Ok(())
    }

    /// A recording's status at `now`: its last recycle-bin move by then, else its own.
    pub(crate) fn status_at<'a>(&'a self, rec: &'a SimRecording, now: DateTime<Utc>) -> &'a str {
        self.bin
            .get(&rec.id)
            .and_then(|moves| moves.iter().rev().find(|(t, _)| *t <= now))
            .map_or(rec.status.as_str(), |(_, status)| status.as_str())
    }

    pub(crate) fn get(&self, id: &str) -> Option<&Arc<SimRecording>> {
        self.by_id.get(id)
    }

    pub(crate) fn by_serial(&self, serial: u64) -> Option<&Arc<SimRecording>> {
        self.by_serial.get(&serial)
    }

    pub(crate) fn contains(&self, id: &str) -> bool {
        self.by_id.contains_key(id)
    }

    /// Adds many at once (then sorts once).
    pub(crate) fn extend(&mut self, recs: Vec<SimRecording>) {
        for rec in recs {
            let rec = Arc::new(rec);
            self.index(&rec);
            self.all.push(rec.clone());
            if rec.host == 0 || rec.share_to_me {
                self.user.push(rec.clone());
            }
            self.per_site[rec.site].push(rec);
        }
        let by_key_desc = |a: &Arc<SimRecording>, b: &Arc<SimRecording>| b.key().cmp(&a.key());
        self.all.sort_by(by_key_desc);
        self.user.sort_by(by_key_desc);
        for site in &mut self.per_site {
            site.sort_by(by_key_desc);
        }
    }

    /// Adds one, keeping the views sorted.
    pub(crate) fn insert(&mut self, rec: SimRecording) {
        let rec = Arc::new(rec);
        self.index(&rec);
        insert_sorted(&mut self.all, rec.clone());
        if rec.host == 0 || rec.share_to_me {
            insert_sorted(&mut self.user, rec.clone());
        }
        insert_sorted(&mut self.per_site[rec.site], rec);
    }

    fn index(&mut self, rec: &Arc<SimRecording>) {
        self.by_id.insert(rec.id.clone(), rec.clone());
        self.by_serial.insert(rec.serial, rec.clone());
    }

    pub(crate) fn take_serial(&mut self) -> u64 {
        self.next_serial += 1;
        self.next_serial
    }
}

fn insert_sorted(view: &mut Vec<Arc<SimRecording>>, rec: Arc<SimRecording>) {
    let at = view.partition_point(|r| r.key() > rec.key());
    view.insert(at, rec);
}

/// Index of the first recording of a newest-first view with `create_time < t`.
pub(crate) fn first_before(view: &[Arc<SimRecording>], t: DateTime<Utc>) -> usize {
    view.partition_point(|r| r.create_time >= t)
}

/// Index of the first recording of a newest-first view that sorts after `key`.
pub(crate) fn first_after(view: &[Arc<SimRecording>], key: (DateTime<Utc>, &str)) -> usize {
    view.partition_point(|r| r.key() >= key)
}

impl From<&SimRecording> for TruthRecording {
    fn from(r: &SimRecording) -> Self {
        Self {
            id: r.id.clone(),
            create_time: r.create_time,
            visible_at: r.visible_at,
            site_url: r.user_item.site_url.clone().unwrap_or_default(),
            host_email: r.admin_item.host_email.clone().unwrap_or_default(),
            format: r.format.clone(),
            size_bytes: r.size,
            sha256: None,
            prevent_downloading: r.prevent_downloading,
            visible_to_user: r.host == 0 || r.share_to_me,
            share_to_me: r.share_to_me,
            status: r.status.clone(),
            meeting_id: r.user_item.meeting_id.clone().unwrap_or_default(),
            topic: r.user_item.topic.clone().unwrap_or_default(),
            duration_seconds: r.duration,
        }
    }
}

/// A tiny deterministic generator (SplitMix64), so that a seed means the same population
/// whatever version of `rand` is in use.
pub(crate) struct Dice(u64);

impl Dice {
    pub(crate) fn new(seed: u64) -> Self {
        Self(splitmix64(seed))
    }

    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        splitmix64(self.0)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// Uniform in `lo..=hi`.
    pub(crate) fn range(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo { lo } else { lo + self.next() % (hi - lo + 1) }
    }

    /// True with probability `p`.
    pub(crate) fn chance(&mut self, p: f64) -> bool {
        ((self.next() >> 11) as f64 / (1u64 << 53) as f64) < p
    }

    pub(crate) fn hex(&mut self, bytes: usize) -> String {
        let mut s = String::with_capacity(bytes * 2);
        while s.len() < bytes * 2 {
            s.push_str(&format!("{:016x}", self.next()));
        }
        s.truncate(bytes * 2);
        s
    }
}

const TOPICS: &[&str] = &[
    "Weekly sync",
    "Q3 planning / budget",
    "John's Meeting",
    "Customer onboarding: ACME Corp.",
    "../../etc/passwd",
    "Réunion d'équipe — été",
    "週次ミーティング",
    "Incident review #4521 (sev 2)",
    "All hands",
    "   Leading and trailing spaces   ",
    "Design review: \"new\" archive\\layout",
    "1:1 Alice <> Bob",
];
const SERVICE_TYPES: &[(&str, u64)] =
    &[("MeetingCenter", 85), ("EventCenter", 5), ("TrainingCenter", 5), ("SupportCenter", 5)];

/// Builds the initial population.
pub(crate) fn populate(config: &SimConfig, world: &World, end: DateTime<Utc>, store: &mut Store) {
    let mut dice = Dice::new(config.seed);
    let span = ChronoDuration::from_std(config.span).unwrap_or(ChronoDuration::days(60)).num_seconds().max(1) as u64;
    let formats: Vec<(&str, u64)> = config.format_weights.iter().map(|(k, w)| (k.as_str(), u64::from(*w))).collect();
    let mut recs = Vec::with_capacity(config.recordings);
    let mut previous: Option<(DateTime<Utc>, String, String)> = None;
    for _ in 0..config.recordings {
        let id = dice.hex(16);
        // About one recording in eight shares its meeting and createTime with the previous
        // one (a recording stopped and restarted): ties in the sort order, several
        // recordings per meeting.
        let (create_time, meeting_series) = match &previous {
            Some((t, series, _)) if dice.chance(0.125) => (*t, series.clone()),
            _ => {
                let back = dice.range(60, span);
                ((end - ChronoDuration::seconds(back as i64)).trunc_subsecs(0), dice.hex(16))
            }
        };
        let site = dice.below(world.sites.len() as u64) as usize;
        let host = dice.below(world.hosts.len() as u64) as usize;
        let share_to_me = host != world.user() && dice.chance(config.share_to_me_fraction);
        let prevent = dice.chance(config.prevent_downloading_fraction) || config.prevent_downloading_ids.contains(&id);
        let deleted = dice.chance(config.deleted_fraction);
        let format = pick_weighted(&mut dice, &formats).unwrap_or("MP4").to_string();
        let size = config
            .size_overrides
            .get(&id)
            .copied()
            .or(config.size)
            .unwrap_or_else(|| dice.range(config.size_min, config.size_max.max(config.size_min)));
        let spec = Spec {
            serial: store.take_serial(),
            id: id.clone(),
            create_time,
            visible_at: create_time,
            site,
            host,
            share_to_me,
            prevent_downloading: prevent,
            format,
            status: if deleted { "deleted" } else { "available" }.into(),
            size,
            topic: None,
            meeting_series: Some(meeting_series.clone()),
        };
        let rec = build(spec, world, &mut dice);
        previous = Some((create_time, meeting_series, id));
        recs.push(rec);
    }
    store.extend(recs);
}

fn pick_weighted<'a>(dice: &mut Dice, items: &[(&'a str, u64)]) -> Option<&'a str> {
    let total: u64 = items.iter().map(|(_, w)| w).sum();
    if total == 0 {
        return None;
    }
    let mut roll = dice.below(total);
    for (name, w) in items {
        if roll < *w {
            return Some(name);
        }
        roll -= w;
    }
    None
}

/// The choices that define one recording; `build` derives the rest.
pub(crate) struct Spec {
    pub(crate) serial: u64,
    pub(crate) id: String,
    pub(crate) create_time: DateTime<Utc>,
    pub(crate) visible_at: DateTime<Utc>,
    pub(crate) site: usize,
    pub(crate) host: usize,
    pub(crate) share_to_me: bool,
    pub(crate) prevent_downloading: bool,
    pub(crate) format: String,
    pub(crate) status: String,
    pub(crate) size: u64,
    pub(crate) topic: Option<String>,
    pub(crate) meeting_series: Option<String>,
}

pub(crate) fn build(spec: Spec, world: &World, dice: &mut Dice) -> SimRecording {
    let site_url = world.sites[spec.site].clone();
    let site_prefix = site_url.split('.').next().unwrap_or("site").to_string();
    let host_email = world.hosts[spec.host].clone();
    let series = spec.meeting_series.unwrap_or_else(|| dice.hex(16));
    let duration = dice.range(60, 7200);
    let time_recorded = spec.create_time - ChronoDuration::seconds((duration + dice.range(30, 900)) as i64);
    let scheduled = format!("{series}_{}", time_recorded.format("%Y%m%dT%H%M00Z"));
    let meeting_id = format!("{series}_I_{}", 100_000_000_000_000_000 + dice.below(900_000_000_000_000_000));
    let topic = spec.topic.unwrap_or_else(|| TOPICS[dice.below(TOPICS.len() as u64) as usize].to_string());
    let service_type = pick_weighted(dice, SERVICE_TYPES).unwrap_or("MeetingCenter").to_string();
    let tags = if dice.chance(0.2) { Some(vec![dice.hex(16)]) } else { None };
    let password = format!("Pw{}", &dice.hex(4));
    let base = &world.site_base;
    // Drawn either way, so that the flag does not shift the rest of the population.
    let rcid = dice.hex(16);
    let download_url = (!spec.prevent_downloading).then(|| format!("{base}/{site_prefix}/lsr.php?RCID={rcid}"));
    let common = Recording {
        id: Some(spec.id.clone()),
        meeting_id: Some(meeting_id),
        scheduled_meeting_id: Some(scheduled),
        meeting_series_id: Some(series),
        topic: Some(topic.clone()),
        create_time: Some(spec.create_time),
        time_recorded: Some(time_recorded),
        site_url: Some(site_url),
        download_url,
        playback_url: Some(format!("{base}/{site_prefix}/ldr.php?RCID={}", dice.hex(16))),
        format: Some(spec.format.clone()),
        service_type: Some(service_type.clone()),
        duration_seconds: Some(duration),
        size_bytes: Some(spec.size),
        integration_tags: tags,
        status: Some(spec.status.clone()),
        ..Recording::default()
    };
    let user_item = Recording {
        password: Some(RecordingPassword::new(password)),
        share_to_me: Some(spec.share_to_me),
        ..common.clone()
    };
    let admin_item = Recording {
        host_email: Some(host_email.clone()),
        host_display_name: Some(display_name(&host_email)),
        ..common
    };
    SimRecording {
        serial: spec.serial,
        id: spec.id,
        create_time: spec.create_time,
        visible_at: spec.visible_at,
        site: spec.site,
        host: spec.host,
        share_to_me: spec.share_to_me,
        prevent_downloading: spec.prevent_downloading,
        format: spec.format,
        service_type,
        status: spec.status,
        size: spec.size,
        duration,
        topic_lower: topic.to_lowercase(),
        user_item,
        admin_item,
        sha256: OnceLock::new(),
    }
}

/// `alice.smith@x` -> `Alice Smith`.
fn display_name(email: &str) -> String {
    let local = email.split('@').next().unwrap_or(email);
    local
        .split(['.', '_', '-'])
        .filter(|p| !p.is_empty())
        .map(|p| {
            let mut c = p.chars();
            c.next().map(|f| f.to_uppercase().collect::<String>() + c.as_str()).unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join(" ")
}
