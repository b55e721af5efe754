//! The one retry timer: how long to wait before trying a failed operation again, and
//! when to stop. Used by outbox delivery, the Plivo REST client, recording upload and
//! publish, and the provider adapters.
//!
//! Owns only the *timing* half of retry logic (STYLE.md, "Adapters and delivery"): capped
//! exponential backoff with full jitter, the server's `Retry-After` as a floor, attempt
//! and age budgets, and reading a `Retry-After` header. Whether an outcome is retriable at
//! all is each caller's call, and so are sleeping, logging (warn per retry, error once at
//! the give-up) and counting.
//!
//! Two ways in:
//! - [`RetryPolicy::next`]: the pure decision after the `n`-th failure of something that
//!   started `age` ago (the outbox keeps attempts and age in its store);
//! - [`Backoff`]: one operation's state for a loop of attempts (REST requests, uploads),
//!   counting retries and measuring age from its creation.
//!
//! Invariants:
//! - The delay after the `n`-th failure is uniform in `[0, min(cap, base·2^(n-1))]` (full
//!   jitter: failing callers spread out instead of retrying in lockstep).
//! - A delay is never shorter than the server's hint (`Retry-After`); a hint longer than
//!   `max_retry_after` gives up.
//! - Nothing is retried past `max_age`: the last retry is due at `max_age` at the latest,
//!   and a hint that points past it gives up.
//! - With `max_attempts = Some(k)`, the `k`-th failure gives up.
//!
//! It must never sleep, log or read a clock other than through [`Backoff`]'s start
//! instant; it depends on nothing else in voxgate. Randomness comes in through the `*_with`
//! functions so tests are deterministic.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rand::RngExt;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use thiserror::Error;

/// How failures are retried. `Default` is outbox delivery's timing (its callers override
/// fields); request loops build their own, usually with [`RetryPolicy::with_retries`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Upper bound of the first delay (default 500 ms); it doubles per failure.
    pub base: Duration,
    /// Upper bound of any backoff delay (default 30 s: after a sink outage, delivery
    /// resumes within this long of the sink coming back, while a sink that stays down sees
    /// each waiting call tried about every 15 s).
    pub cap: Duration,
    /// Give up at this many failed attempts, if set (default: no limit but `max_age`).
    pub max_attempts: Option<u32>,
    /// Give up once the operation is this old, if set (default 24 h).
    pub max_age: Option<Duration>,
    /// A `Retry-After` longer than this is not waited for: give up at once and let the
    /// caller decide (default: any hint within `max_age` is honoured).
    pub max_retry_after: Option<Duration>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            base: Duration::from_millis(500),
            cap: Duration::from_secs(30),
            max_attempts: None,
            max_age: Some(Duration::from_secs(24 * 60 * 60)),
            max_retry_after: None,
        }
    }
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryDecision {
    /// Try again after this delay (from now).
    RetryAt(Duration),
    /// Stop: the budget is spent.
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
    /// This policy with an attempt budget of `retries` retries after the first attempt
    /// (`max_attempts = retries + 1`).
    pub fn with_retries(self, retries: u32) -> Self {
        Self {
            max_attempts: Some(retries.saturating_add(1)),
            ..self
        }
    }

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
        if self.max_age.is_some_and(|age| age.is_zero()) {
            return Err(RetryPolicyError::ZeroMaxAge);
        }
        if self.max_attempts == Some(0) {
            return Err(RetryPolicyError::ZeroAttempts);
        }
        Ok(())
    }

    /// The largest backoff delay after the `attempts`-th failure (counted from 1; 0 counts
    /// as 1): `min(cap, base·2^(attempts-1))`.
    pub fn ceiling(&self, attempts: u32) -> Duration {
        let exponent = attempts.saturating_sub(1);
        if exponent >= 31 {
            return self.cap;
        }
        self.base.saturating_mul(1u32 << exponent).min(self.cap)
    }

    /// Decides after the `attempts`-th failed attempt (counted from 1) of an operation
    /// that started `age` ago, with the server's `Retry-After` if it sent one.
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
        let left = match self.max_age {
            Some(max_age) => match max_age.checked_sub(age).filter(|left| !left.is_zero()) {
                Some(left) => Some(left),
                None => return RetryDecision::GiveUp,
            },
            None => None,
        };
        let hint = server_hint.unwrap_or(Duration::ZERO);
        if self.max_retry_after.is_some_and(|max| hint > max) || left.is_some_and(|l| hint > l) {
            // The server asks for a wait we will not (or may not) make.
            return RetryDecision::GiveUp;
        }
        let ceiling = u64::try_from(self.ceiling(attempts).as_nanos()).unwrap_or(u64::MAX);
        let jittered = Duration::from_nanos(rng.random_range(0..=ceiling));
        let jittered = left.map_or(jittered, |left| jittered.min(left));
        RetryDecision::RetryAt(jittered.max(hint))
    }
}

/// One operation's retries: a loop of attempts asks it, after each retriable failure, how
/// long to wait ([`Backoff::next_delay`]); `None` means give up. Its age is measured from
/// [`Backoff::new`].
#[derive(Debug, Clone)]
pub struct Backoff {
    policy: RetryPolicy,
    started: Instant,
    retries: u32,
}

impl Backoff {
    /// A fresh operation under `policy`, starting now.
    pub fn new(policy: RetryPolicy) -> Self {
        Self {
            policy,
            started: Instant::now(),
            retries: 0,
        }
    }

    /// Retries granted so far; the attempt at hand is number `retries() + 1`.
    pub fn retries(&self) -> u32 {
        self.retries
    }

    /// After a retriable failure (with the server's `Retry-After`, if any): the wait before
    /// the next attempt, or `None` when the policy gives up.
    pub fn next_delay(&mut self, retry_after: Option<Duration>) -> Option<Duration> {
        self.next_delay_with(retry_after, &mut rand::rng())
    }

    /// [`Backoff::next_delay`] with the jitter drawn from `rng`.
    pub fn next_delay_with<R: rand::Rng + ?Sized>(
        &mut self,
        retry_after: Option<Duration>,
        rng: &mut R,
    ) -> Option<Duration> {
        let failures = self.retries.saturating_add(1);
        match self
            .policy
            .next_with(failures, self.started.elapsed(), retry_after, rng)
        {
            RetryDecision::RetryAt(delay) => {
                self.retries = failures;
                Some(delay)
            }
            RetryDecision::GiveUp => None,
        }
    }
}

/// A response's `Retry-After` as a wait from `now`: delay-seconds, or an HTTP date (a date
/// in the past is no wait). Absent or unparseable counts as none.
pub fn retry_after(headers: &HeaderMap, now: DateTime<Utc>) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = DateTime::parse_from_rfc2822(value).ok()?;
    Some(
        (at.with_timezone(&Utc) - now)
            .to_std()
            .unwrap_or(Duration::ZERO),
    )
}

#[cfg(test)]
mod tests;
