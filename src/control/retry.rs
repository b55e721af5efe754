//! When to try a failed delivery again: capped exponential backoff with full jitter, an
//! age limit and an optional attempt budget.
//!
//! Owns only the *timing* half of retry logic (STYLE.md, "Adapters and delivery"); whether
//! an outcome is retriable at all is the sink's call ([`crate::control::sinks::Delivery`]).
//!
//! Invariants:
//! - The delay after the `n`-th failure is uniform in `[0, min(cap, base·2^(n-1))]` (full
//!   jitter: failing callers spread out instead of retrying in lockstep).
//! - A delay is never shorter than the server's hint (`Retry-After`).
//! - Nothing is retried past `max_age` (measured from when the event occurred): the last
//!   retry is due at `max_age` at the latest, and a hint that points past it gives up.
//! - With `max_attempts = Some(k)`, the `k`-th failure gives up.
//!
//! Pure: no clock, no I/O. The randomness comes in through [`RetryPolicy::next_with`] so
//! tests are deterministic.

use std::time::Duration;

use rand::RngExt;
use thiserror::Error;

/// How failed deliveries are timed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Upper bound of the first delay (default 500 ms).
    pub base: Duration,
    /// Upper bound of any delay (default 30 s: after a sink outage, delivery resumes within
    /// this long of the sink coming back, while a sink that stays down sees each waiting
    /// call tried about every 15 s).
    pub cap: Duration,
    /// Give up once the event is this old (default 24 h).
    pub max_age: Duration,
    /// Give up at this many failed attempts, if set (default: no limit but `max_age`).
    pub max_attempts: Option<u32>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            base: Duration::from_millis(500),
            cap: Duration::from_secs(30),
            max_age: Duration::from_secs(24 * 60 * 60),
            max_attempts: None,
        }
    }
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryDecision {
    /// Try again after this delay (from now).
    RetryAt(Duration),
    /// Stop: the entry becomes a dead letter.
    GiveUp,
}

/// A policy that would misbehave (retry in a tight loop, or never retry).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RetryPolicyError {
    /// `base` is zero: every retry would be immediate.
    #[error("retry base must be positive")]
    ZeroBase,
    /// `cap` is below `base`.
    #[error("retry cap ({cap:?}) is below the base ({base:?})")]
    CapBelowBase {
        /// The base.
        base: Duration,
        /// The cap.
        cap: Duration,
    },
    /// `max_age` is zero: nothing would ever be retried.
    #[error("retry max_age must be positive")]
    ZeroMaxAge,
    /// `max_attempts` is zero.
    #[error("retry max_attempts must be at least 1")]
    ZeroAttempts,
}

impl RetryPolicy {
    /// Checks the policy makes sense (config validation calls this once at start).
    pub fn validate(&self) -> Result<(), RetryPolicyError> {
        if self.base.is_zero() {
            return Err(RetryPolicyError::ZeroBase);
        }
        if self.cap < self.base {
            return Err(RetryPolicyError::CapBelowBase {
                base: self.base,
                cap: self.cap,
            });
        }
        if self.max_age.is_zero() {
            return Err(RetryPolicyError::ZeroMaxAge);
        }
        if self.max_attempts == Some(0) {
            return Err(RetryPolicyError::ZeroAttempts);
        }
        Ok(())
    }

    /// The largest delay after the `attempts`-th failure (counted from 1; 0 counts as 1):
    /// `min(cap, base·2^(attempts-1))`.
    pub fn ceiling(&self, attempts: u32) -> Duration {
        let exponent = attempts.saturating_sub(1);
        if exponent >= 31 {
            return self.cap;
        }
        self.base.saturating_mul(1u32 << exponent).min(self.cap)
    }

    /// Decides after the `attempts`-th failed attempt (counted from 1) of an event that
    /// occurred `age` ago, with the server's `Retry-After` if it sent one.
    pub fn next(
        &self,
        attempts: u32,
        age: Duration,
        server_hint: Option<Duration>,
    ) -> RetryDecision {
        self.next_with(attempts, age, server_hint, &mut rand::rng())
    }

    /// [`RetryPolicy::next`] with the jitter drawn from `rng`.
    pub fn next_with<R: rand::Rng + ?Sized>(
        &self,
        attempts: u32,
        age: Duration,
        server_hint: Option<Duration>,
        rng: &mut R,
    ) -> RetryDecision {
        if self.max_attempts.is_some_and(|max| attempts >= max) {
            return RetryDecision::GiveUp;
        }
        let Some(left) = self.max_age.checked_sub(age).filter(|left| !left.is_zero()) else {
            return RetryDecision::GiveUp;
        };
        let hint = server_hint.unwrap_or(Duration::ZERO);
        if hint > left {
            // The server asks us to wait past the deadline: no retry could ever be allowed.
            return RetryDecision::GiveUp;
        }
        let ceiling = u64::try_from(self.ceiling(attempts).as_nanos()).unwrap_or(u64::MAX);
        let jittered = Duration::from_nanos(rng.random_range(0..=ceiling));
        RetryDecision::RetryAt(jittered.min(left).max(hint))
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    const MS: Duration = Duration::from_millis(1);
    const HOUR: Duration = Duration::from_secs(3600);

    fn delay(decision: RetryDecision) -> Duration {
        match decision {
            RetryDecision::RetryAt(d) => d,
            RetryDecision::GiveUp => panic!("gave up"),
        }
    }

    #[test]
    fn ceiling_doubles_from_base_up_to_cap() {
        let policy = RetryPolicy::default();
        assert_eq!(policy.ceiling(0), 500 * MS);
        assert_eq!(policy.ceiling(1), 500 * MS);
        assert_eq!(policy.ceiling(2), 1000 * MS);
        assert_eq!(policy.ceiling(3), 2000 * MS);
        assert_eq!(policy.ceiling(6), 16 * 1000 * MS);
        assert_eq!(policy.ceiling(7), policy.cap, "32 s is capped at 30 s");
        assert_eq!(policy.ceiling(40), policy.cap);
        assert_eq!(policy.ceiling(u32::MAX), policy.cap);
    }

    #[test]
    fn delays_are_full_jitter_within_bounds_and_spread() {
        let policy = RetryPolicy::default();
        let mut rng = StdRng::seed_from_u64(7);
        for attempts in 1..=15 {
            let ceiling = policy.ceiling(attempts);
            let samples: Vec<Duration> = (0..2000)
                .map(|_| delay(policy.next_with(attempts, Duration::ZERO, None, &mut rng)))
                .collect();
            let (min, max) = (samples.iter().min().unwrap(), samples.iter().max().unwrap());
            assert!(*max <= ceiling, "attempt {attempts}: {max:?} > {ceiling:?}");
            // Full jitter: the whole range is used, down to (almost) zero.
            assert!(*min < ceiling / 50, "attempt {attempts}: min {min:?}");
            assert!(*max > ceiling * 49 / 50, "attempt {attempts}: max {max:?}");
        }
    }

    #[test]
    fn mean_delay_grows_until_the_cap() {
        let policy = RetryPolicy::default();
        let mut rng = StdRng::seed_from_u64(11);
        let mean = |attempts, rng: &mut StdRng| {
            let total: Duration = (0..1000)
                .map(|_| delay(policy.next_with(attempts, Duration::ZERO, None, rng)))
                .sum();
            total / 1000
        };
        let means: Vec<Duration> = (1..=14).map(|a| mean(a, &mut rng)).collect();
        for pair in means[..6].windows(2) {
            assert!(pair[1] > pair[0] * 3 / 2, "{means:?}");
        }
        for late in &means[8..] {
            let half_cap = policy.cap / 2;
            assert!(late.abs_diff(half_cap) < half_cap / 10, "{late:?}");
        }
    }

    #[test]
    fn server_hint_is_a_floor() {
        let policy = RetryPolicy::default();
        let mut rng = StdRng::seed_from_u64(3);
        for _ in 0..200 {
            let d = delay(policy.next_with(1, Duration::ZERO, Some(7 * 1000 * MS), &mut rng));
            assert_eq!(d, 7 * 1000 * MS, "hint above the ceiling wins");
            let d = delay(policy.next_with(12, Duration::ZERO, Some(2 * 1000 * MS), &mut rng));
            assert!(d >= 2 * 1000 * MS && d <= policy.cap);
        }
        // Even past the cap: the server knows when it will be back.
        let d = delay(policy.next_with(1, Duration::ZERO, Some(HOUR), &mut rng));
        assert_eq!(d, HOUR);
    }

    #[test]
    fn gives_up_past_max_age_and_lands_the_last_retry_on_the_deadline() {
        let policy = RetryPolicy::default();
        let mut rng = StdRng::seed_from_u64(5);
        assert_eq!(
            policy.next_with(3, policy.max_age, None, &mut rng),
            RetryDecision::GiveUp
        );
        assert_eq!(
            policy.next_with(3, policy.max_age + HOUR, None, &mut rng),
            RetryDecision::GiveUp
        );
        let almost = policy.max_age - 10 * MS;
        for _ in 0..100 {
            assert!(delay(policy.next_with(20, almost, None, &mut rng)) <= 10 * MS);
        }
        assert_eq!(
            policy.next_with(1, policy.max_age - HOUR, Some(2 * HOUR), &mut rng),
            RetryDecision::GiveUp,
            "a Retry-After past the deadline cannot be honoured"
        );
    }

    #[test]
    fn attempt_budget() {
        let policy = RetryPolicy {
            max_attempts: Some(3),
            ..RetryPolicy::default()
        };
        let mut rng = StdRng::seed_from_u64(1);
        assert!(matches!(
            policy.next_with(2, Duration::ZERO, None, &mut rng),
            RetryDecision::RetryAt(_)
        ));
        assert_eq!(
            policy.next_with(3, Duration::ZERO, None, &mut rng),
            RetryDecision::GiveUp
        );
    }

    #[test]
    fn validation_refuses_tight_loops() {
        assert_eq!(RetryPolicy::default().validate(), Ok(()));
        let zero = RetryPolicy {
            base: Duration::ZERO,
            ..RetryPolicy::default()
        };
        assert_eq!(zero.validate(), Err(RetryPolicyError::ZeroBase));
        let inverted = RetryPolicy {
            cap: 100 * MS,
            ..RetryPolicy::default()
        };
        assert!(matches!(
            inverted.validate(),
            Err(RetryPolicyError::CapBelowBase { .. })
        ));
        let no_attempts = RetryPolicy {
            max_attempts: Some(0),
            ..RetryPolicy::default()
        };
        assert_eq!(no_attempts.validate(), Err(RetryPolicyError::ZeroAttempts));
    }
}
