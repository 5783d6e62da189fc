//! Per-address limit on login attempts: a fixed window per client address,
//! counted in the database so that every server on the store shares it (a
//! client spraying logins across a load balancer meets the same limit as
//! one talking to a single server). Account lockout (also in the database)
//! stops guessing one password from many addresses; this stops one address
//! from spraying many accounts.

use std::time::Duration;

use diesel::prelude::*;

use crate::db::Conn;
use crate::db::schema::login_windows;
use crate::error::Result;

/// No limiter counts in windows longer than a day; rows older than this
/// are swept.
const SWEEP_AFTER_MS: i64 = 25 * 60 * 60 * 1000;

/// Attempts allowed per address per window.
#[derive(Debug, Clone, Copy)]
pub struct LoginLimiter {
    per_window: u32,
    window_ms: i64,
}

/// A refused attempt.
#[derive(Debug)]
pub struct Limited {
    /// Seconds until the window resets.
    pub retry_after: u64,
    /// Whether this is the first refusal in the window (worth auditing).
    pub first: bool,
}

impl LoginLimiter {
    /// `per_window` attempts per `window` per address.
    pub fn new(per_window: u32, window: Duration) -> Self {
        LoginLimiter {
            per_window,
            window_ms: i64::try_from(window.as_millis()).unwrap_or(i64::MAX).max(1),
        }
    }

    /// Counts an attempt from `addr` at `now_ms`; `Ok(Err(_))` refuses it.
    pub fn check(
        &self,
        conn: &mut Conn,
        addr: &str,
        now_ms: i64,
    ) -> Result<std::result::Result<(), Limited>> {
        let start = now_ms - now_ms.rem_euclid(self.window_ms);
        // One atomic upsert on either backend: concurrent attempts from
        // several servers each see their own count.
        let attempts: i32 = crate::write_tx!(conn, |c| {
            let n = diesel::insert_into(login_windows::table)
                .values((
                    login_windows::address.eq(addr),
                    login_windows::window_start.eq(start),
                    login_windows::attempts.eq(1),
                ))
                .on_conflict((login_windows::address, login_windows::window_start))
                .do_update()
                .set(login_windows::attempts.eq(login_windows::attempts + 1))
                .returning(login_windows::attempts)
                .get_result::<i32>(c)?;
            if n == 1 {
                // A new window for this address: drop windows that ended a
                // day ago. Limiters of other lengths share the table (an
                // hourly one for sign-in codes), so a window is only swept
                // once it has ended whatever its length.
                diesel::delete(login_windows::table)
                    .filter(login_windows::window_start.lt(start - SWEEP_AFTER_MS))
                    .execute(c)?;
            }
            Ok::<_, crate::error::Error>(n)
        })?;
        let attempts = u32::try_from(attempts).unwrap_or(u32::MAX);
        if attempts > self.per_window {
            let left_ms = (start + self.window_ms - now_ms).max(0);
            return Ok(Err(Limited {
                retry_after: (left_ms as u64).div_ceil(1000).max(1),
                first: attempts == self.per_window + 1,
            }));
        }
        Ok(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::{Location, connect, migrate};

    #[test]
    fn limits_per_address_and_window() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = connect(&Location::Sqlite(dir.path().join("db.sqlite3"))).unwrap();
        migrate(&mut conn).unwrap();
        let l = LoginLimiter::new(3, Duration::from_secs(60));
        let t = 1_800_000_000_000 + 1_000;
        for _ in 0..3 {
            assert!(l.check(&mut conn, "a", t).unwrap().is_ok());
        }
        let refused = l.check(&mut conn, "a", t + 500).unwrap().unwrap_err();
        assert!(refused.first);
        assert_eq!(refused.retry_after, 59);
        assert!(!l.check(&mut conn, "a", t).unwrap().unwrap_err().first);
        assert!(l.check(&mut conn, "b", t).unwrap().is_ok());
        // The next window starts afresh.
        assert!(l.check(&mut conn, "a", t + 60_000).unwrap().is_ok());
        // An hourly limiter's window survives the minute limiter's sweep.
        let hourly = LoginLimiter::new(1, Duration::from_secs(3600));
        assert!(hourly.check(&mut conn, "h", t).unwrap().is_ok());
        assert!(l.check(&mut conn, "c", t + 120_000).unwrap().is_ok());
        assert!(hourly.check(&mut conn, "h", t + 120_000).unwrap().is_err());
        // A day on, old windows are gone.
        assert!(
            l.check(&mut conn, "d", t + 2 * SWEEP_AFTER_MS)
                .unwrap()
                .is_ok()
        );
        let rows: i64 = login_windows::table.count().get_result(&mut conn).unwrap();
        assert_eq!(rows, 1);
    }
}
