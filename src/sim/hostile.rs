//! The `hostile` preset: at start, a deterministic subset of the population (chosen by
//! `seed`) gets each fault of issue 11, and a storm of 429s with `Retry-After: 0` runs for
//! the first seconds. [`HostilePlan`] says which recording got which fault and what a
//! correct client ends with, so end-to-end tests can state their expectations.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::SimError;
use super::config::{RetryAfterFormat, SimConfig};
use super::faults::{Burst429, FaultAction, FaultRule, ItemVariant, RedirectTarget};
use super::store::{Dice, Store};

/// Mixed into the seed so that the choice does not mirror the population's own draws.
const SALT: u64 = 0x4057_11E5;
/// How long the storm of `Retry-After: 0` lasts from start.
pub const STORM: Duration = Duration::from_secs(3);

/// What a correct client ends with for a targeted recording.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HostileOutcome {
    /// Archived, with the right bytes: its fault is transient (`times` limited) or is one
    /// a lenient reader copes with, so retries or a later listing get it.
    Archived,
    /// Never archived, and the trap host never requested: every way to its file leads to
    /// the trap host (issue 11: `download_host_not_allowed`, final until `retry`). These
    /// faults are permanent.
    Refused,
}

/// One targeted recording.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct HostileTarget {
    /// Recording id.
    pub id: String,
    /// The fault it gets (its rule names only this id).
    pub fault: FaultAction,
    /// How many times (per id) the fault applies; `None` = always.
    pub times: Option<u64>,
    /// The first listing that shows it cannot be read (`no_id`, `wrong_type_id`,
    /// `bad_create_time`, `not_an_object`): a correct client quarantines that item until
    /// a later listing reads it (the fault applies once per id, over both listings).
    pub quarantined_first: bool,
    /// What a correct client ends with.
    pub outcome: HostileOutcome,
}

/// What the hostile preset installed ([`super::SimHandle::hostile_plan`], `GET
/// /_sim/hostile`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct HostilePlan {
    /// The seed the subset was chosen with.
    pub seed: u64,
    /// The targeted recordings, one fault each, all distinct: one per item variant, then
    /// `foreign_download_link`, `foreign_download_url`, `redirect` to the trap host,
    /// `redirect` to the site host, `text_body` (`application/json`), `json_body`,
    /// `html_body` and `no_length_short` (half the file).
    pub targets: Vec<HostileTarget>,
    /// Every rule installed, in order, ahead of the scenario's own `faults`: the targets'
    /// rules, then `empty_page`, `not_json_page` and `items_not_array` (`times = 1`
    /// each, so the first three listing answers after the storm are bad pages, in that
    /// order), then `foreign_next_link` and `self_next_link` (`times = 1` each: the next
    /// two good pages carry them).
    pub rules: Vec<FaultRule>,
    /// The 429 storm started with the simulator (it replaces the scenario's `burst_429`).
    pub storm: Burst429,
}

impl HostilePlan {
    /// Ids whose fault is of kind `kind` (`redirect`, `malformed_item`, ...).
    pub fn ids_with(&self, kind: &str) -> Vec<String> {
        self.targets.iter().filter(|t| t.fault.name() == kind).map(|t| t.id.clone()).collect()
    }

    /// The id whose listing item gets `variant`.
    pub fn id_with_variant(&self, variant: ItemVariant) -> Option<String> {
        self.targets.iter().find(|t| t.fault == FaultAction::MalformedItem { variant }).map(|t| t.id.clone())
    }

    /// The target about `id`, if any.
    pub fn target(&self, id: &str) -> Option<&HostileTarget> {
        self.targets.iter().find(|t| t.id == id)
    }

    /// Ids a correct client ends up archiving.
    pub fn archived_ids(&self) -> Vec<String> {
        self.ids_by(|t| t.outcome == HostileOutcome::Archived)
    }

    /// Ids a correct client never archives (their links lead to the trap host only).
    pub fn refused_ids(&self) -> Vec<String> {
        self.ids_by(|t| t.outcome == HostileOutcome::Refused)
    }

    /// Ids whose first listed item cannot be read.
    pub fn quarantined_first_ids(&self) -> Vec<String> {
        self.ids_by(|t| t.quarantined_first)
    }

    fn ids_by(&self, keep: impl Fn(&HostileTarget) -> bool) -> Vec<String> {
        self.targets.iter().filter(|t| keep(t)).map(|t| t.id.clone()).collect()
    }
}

/// The faults given to one recording each, in the order recordings are assigned
/// (`no_length_short` gets half of its recording's size).
fn target_faults() -> Vec<(FaultAction, Option<u64>, HostileOutcome)> {
    use HostileOutcome::{Archived, Refused};
    let mut faults: Vec<_> =
        ItemVariant::ALL.iter().map(|&variant| (FaultAction::MalformedItem { variant }, Some(1), Archived)).collect();
    faults.extend([
        (FaultAction::ForeignDownloadLink, None, Refused),
        (FaultAction::ForeignDownloadUrl, None, Refused),
        (FaultAction::Redirect { redirect_to: RedirectTarget::Trap }, None, Refused),
        (FaultAction::Redirect { redirect_to: RedirectTarget::Site }, Some(1), Archived),
        (FaultAction::TextBody { content_type: "application/json".into() }, Some(1), Archived),
        (FaultAction::JsonBody, Some(1), Archived),
        (FaultAction::HtmlBody, Some(1), Archived),
        (FaultAction::NoLengthShort { after_bytes: 0 }, Some(1), Archived),
    ]);
    faults
}

/// How many recordings the preset needs: available, downloadable, listed for the
/// token's user.
pub const HOSTILE_TARGETS: usize = ItemVariant::ALL.len() + 8;

/// Chooses the targets among `store`'s recordings and builds the plan.
pub(crate) fn plan(config: &SimConfig, store: &Store, now: DateTime<Utc>) -> Result<HostilePlan, SimError> {
    let mut eligible: Vec<_> = store
        .all
        .iter()
        .filter(|r| {
            r.status == "available"
                && !r.prevent_downloading
                && (r.host == 0 || r.share_to_me)
                && r.visible_at <= now
                && r.user_item.download_url.is_some()
        })
        .collect();
    if eligible.len() < HOSTILE_TARGETS {
        return Err(SimError::Config(format!(
            "`hostile` needs {HOSTILE_TARGETS} recordings that are available, downloadable and listed for the \
             token's user; this population has {}: raise `recordings` (about half qualify with the other defaults: take 60 or more)",
            eligible.len()
        )));
    }
    // Fisher-Yates with the simulator's own generator: the same seed, the same choice.
    let mut dice = Dice::new(config.seed ^ SALT);
    for i in (1..eligible.len()).rev() {
        let j = dice.below(i as u64 + 1) as usize;
        eligible.swap(i, j);
    }
    let mut targets = Vec::with_capacity(HOSTILE_TARGETS);
    let mut rules = Vec::new();
    for (rec, (fault, times, outcome)) in eligible.iter().zip(target_faults()) {
        let fault = match fault {
            FaultAction::NoLengthShort { .. } => FaultAction::NoLengthShort { after_bytes: rec.size / 2 },
            other => other,
        };
        let quarantined_first = matches!(fault, FaultAction::MalformedItem { variant } if !variant.readable());
        let mut rule = FaultRule::new(fault.clone()).ids([rec.id.clone()]);
        rule.times = times;
        rules.push(rule);
        targets.push(HostileTarget { id: rec.id.clone(), fault, times, quarantined_first, outcome });
    }
    for page in [FaultAction::EmptyPage, FaultAction::NotJsonPage, FaultAction::ItemsNotArray] {
        rules.push(FaultRule::new(page).times(1));
    }
    for next in [FaultAction::ForeignNextLink, FaultAction::SelfNextLink] {
        rules.push(FaultRule::new(next).times(1));
    }
    let storm = Burst429 {
        requests: None,
        duration: Some(STORM),
        retry_after: 1,
        retry_after_format: RetryAfterFormat::Seconds,
        retry_after_raw: Some("0".into()),
    };
    Ok(HostilePlan { seed: config.seed, targets, rules, storm })
}
