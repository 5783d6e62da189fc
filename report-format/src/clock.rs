//! The one clock of medseal: UTC milliseconds since the Unix epoch, shown as
//! RFC 3339. The key server, the outbox, the endpoint and the command line
//! all read the time here, so that every record agrees on its form and
//! tests can move time by hand ([`ManualClock`]) where a decision depends
//! on it (expiry, lockout, idle timeouts).

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Now, in UTC milliseconds.
pub fn now_ms() -> i64 {
    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

/// RFC 3339 in UTC with the milliseconds that are not zero, e.g.
/// `2026-11-23T10:00:00.25Z`; a value outside the calendar is shown as the
/// number it is.
pub fn rfc3339(ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| ms.to_string())
}

/// Parses RFC 3339 into UTC milliseconds; `None` if it is not RFC 3339.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let t = OffsetDateTime::parse(s, &Rfc3339).ok()?;
    Some((t.unix_timestamp_nanos() / 1_000_000) as i64)
}

/// Where code that decides by the time reads it.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Now, in UTC milliseconds.
    fn now_ms(&self) -> i64;
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        now_ms()
    }
}

/// A clock that tests set by hand.
#[derive(Debug, Default)]
pub struct ManualClock(std::sync::atomic::AtomicI64);

impl ManualClock {
    /// A clock showing `ms`.
    pub fn at(ms: i64) -> Self {
        ManualClock(std::sync::atomic::AtomicI64::new(ms))
    }

    /// Moves it forward by `ms`.
    pub fn advance(&self, ms: i64) {
        self.0.fetch_add(ms, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let t = parse_rfc3339("2026-11-23T10:00:00.250Z").unwrap();
        assert_eq!(rfc3339(t), "2026-11-23T10:00:00.25Z");
        assert_eq!(rfc3339(t - 250), "2026-11-23T10:00:00Z");
        assert!(parse_rfc3339("yesterday").is_none());
        let c = ManualClock::at(t);
        c.advance(750);
        assert_eq!(rfc3339(c.now_ms()), "2026-11-23T10:00:01Z");
    }
}
