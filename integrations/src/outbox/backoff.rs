//! When to try again: exponential backoff with jitter.
//!
//! The delay doubles with each attempt up to a ceiling, and each delay is
//! drawn from its upper half at random ("equal jitter") so that many
//! devices coming back online after an outage do not retry in step. A
//! server's Retry-After is a floor: we never come back sooner than asked.

use std::time::Duration;

/// The delay before the attempt after `attempts` failed ones.
pub fn delay(
    attempts: u32,
    initial: Duration,
    max: Duration,
    retry_after: Option<Duration>,
    unit_random: f64,
) -> Duration {
    let exp = attempts.saturating_sub(1).min(40);
    let base = initial.saturating_mul(1u32 << exp.min(31)).min(max);
    let jittered = base.mul_f64(0.5 + 0.5 * unit_random.clamp(0.0, 1.0));
    match retry_after {
        Some(after) => jittered.max(after.min(Duration::from_secs(24 * 3600))),
        None => jittered,
    }
}

/// A uniform random number in [0, 1).
pub fn unit_random() -> f64 {
    let mut b = [0u8; 8];
    if getrandom::fill(&mut b).is_err() {
        return 0.5;
    }
    (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn doubles_to_the_ceiling_within_the_jitter_band() {
        let max = Duration::from_secs(60);
        for (n, base) in [
            (1, 1),
            (2, 2),
            (3, 4),
            (6, 32),
            (7, 60),
            (30, 60),
            (u32::MAX, 60),
        ] {
            let lo = delay(n, S, max, None, 0.0);
            let hi = delay(n, S, max, None, 1.0);
            assert_eq!(hi, Duration::from_secs(base), "attempt {n}");
            assert_eq!(lo, Duration::from_secs(base) / 2, "attempt {n}");
        }
        let r = unit_random();
        assert!((0.0..1.0).contains(&r));
    }

    #[test]
    fn retry_after_is_a_floor() {
        let d = delay(
            1,
            S,
            Duration::from_secs(60),
            Some(Duration::from_secs(120)),
            0.3,
        );
        assert_eq!(d, Duration::from_secs(120));
        let d = delay(
            5,
            S,
            Duration::from_secs(60),
            Some(Duration::from_secs(1)),
            1.0,
        );
        assert_eq!(d, Duration::from_secs(16));
    }
}
