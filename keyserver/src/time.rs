//! Time as the key server stores it: UTC milliseconds since the Unix epoch,
//! shown as RFC 3339.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::error::{Error, Result};

/// Now, in UTC milliseconds.
pub fn now_ms() -> i64 {
    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

/// RFC 3339 with millisecond precision, e.g. `2026-11-23T10:00:00.000Z`.
pub fn rfc3339(ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| ms.to_string())
}

/// Parses RFC 3339 into UTC milliseconds.
pub fn parse_rfc3339(s: &str) -> Result<i64> {
    let t = OffsetDateTime::parse(s, &Rfc3339)
        .map_err(|_| Error::Invalid(format!("'{s}' is not an RFC 3339 time")))?;
    Ok((t.unix_timestamp_nanos() / 1_000_000) as i64)
}

#[cfg(test)]
mod tests {
    #[test]
    fn round_trip() {
        let t = super::parse_rfc3339("2026-11-23T10:00:00.250Z").unwrap();
        assert_eq!(super::rfc3339(t), "2026-11-23T10:00:00.25Z");
        assert!(super::parse_rfc3339("yesterday").is_err());
    }
}

/// Where the key server's code reads the time, so that tests can move it
/// (expiry, lockout, idle timeouts) without waiting.
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
