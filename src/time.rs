//! Time arithmetic that cannot panic. chrono's `+` and `-` panic on overflow, and
//! durations come from settings, the database and the network: these saturate instead.

use std::time::Duration;

use chrono::{DateTime, Utc};

/// `t + d`, or the latest representable time.
pub fn after(t: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(d).ok().and_then(|d| t.checked_add_signed(d)).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// `t` rounded up to a whole second (S3 Object Lock dates are whole seconds; rounding up
/// never shortens a retention).
pub fn ceil_seconds(t: DateTime<Utc>) -> DateTime<Utc> {
    use chrono::SubsecRound;
    let whole = t.trunc_subsecs(0);
    if whole < t { whole + chrono::Duration::seconds(1) } else { whole }
}

/// `t - d`, or the earliest representable time.
pub fn before(t: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(d).ok().and_then(|d| t.checked_sub_signed(d)).unwrap_or(DateTime::<Utc>::MIN_UTC)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saturates_at_both_ends() {
        let now = Utc::now();
        assert_eq!(after(now, Duration::MAX), DateTime::<Utc>::MAX_UTC);
        assert_eq!(before(now, Duration::MAX), DateTime::<Utc>::MIN_UTC);
        assert_eq!(after(DateTime::<Utc>::MAX_UTC, Duration::from_secs(1)), DateTime::<Utc>::MAX_UTC);
        assert_eq!(before(DateTime::<Utc>::MIN_UTC, Duration::from_secs(1)), DateTime::<Utc>::MIN_UTC);
        assert_eq!(after(now, Duration::from_secs(60)) - now, chrono::Duration::seconds(60));
    }
}
