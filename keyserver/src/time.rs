//! Time as the key server stores it: UTC milliseconds since the Unix epoch,
//! shown as RFC 3339 — medseal's one clock ([`medseal_format::clock`]),
//! with parsing that answers in the key server's error type.

pub use medseal_format::clock::{Clock, ManualClock, SystemClock, now_ms, rfc3339};

use crate::error::{Error, Result};

/// Parses RFC 3339 into UTC milliseconds.
pub fn parse_rfc3339(s: &str) -> Result<i64> {
    medseal_format::clock::parse_rfc3339(s)
        .ok_or_else(|| Error::Invalid(format!("'{s}' is not an RFC 3339 time")))
}
