//! Per-address limit on login attempts: a fixed window per client address.
//! Account lockout (in the database) stops guessing one password from many
//! addresses; this stops one address from spraying many accounts.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Attempts allowed per address per window.
pub struct LoginLimiter {
    per_window: u32,
    window: Duration,
    seen: Mutex<HashMap<String, (Instant, u32)>>,
}

/// A refused attempt.
pub struct Limited {
    /// Seconds until the window resets.
    pub retry_after: u64,
    /// Whether this is the first refusal in the window (worth auditing).
    pub first: bool,
}

/// Addresses tracked before old windows are swept.
const SWEEP_AT: usize = 50_000;

impl LoginLimiter {
    /// `per_window` attempts per `window` per address.
    pub fn new(per_window: u32, window: Duration) -> Self {
        LoginLimiter {
            per_window,
            window,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// Counts an attempt from `addr`; refuses it when over the limit.
    pub fn check(&self, addr: &str) -> Result<(), Limited> {
        let now = Instant::now();
        let Ok(mut seen) = self.seen.lock() else {
            return Ok(());
        };
        if seen.len() >= SWEEP_AT {
            let window = self.window;
            seen.retain(|_, (start, _)| now.duration_since(*start) < window);
        }
        let entry = seen.entry(addr.to_owned()).or_insert((now, 0));
        if now.duration_since(entry.0) >= self.window {
            *entry = (now, 0);
        }
        entry.1 = entry.1.saturating_add(1);
        if entry.1 > self.per_window {
            let left = self.window.saturating_sub(now.duration_since(entry.0));
            return Err(Limited {
                retry_after: left.as_secs().max(1),
                first: entry.1 == self.per_window + 1,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_per_address() {
        let l = LoginLimiter::new(3, Duration::from_secs(60));
        for _ in 0..3 {
            assert!(l.check("a").is_ok());
        }
        let refused = l.check("a").unwrap_err();
        assert!(refused.first && refused.retry_after > 0);
        assert!(!l.check("a").unwrap_err().first);
        assert!(l.check("b").is_ok());
    }
}
