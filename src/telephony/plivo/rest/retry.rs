//! The second half of the retry split: when to retry, given that an outcome is retriable
//! ([`super::RestError::is_retriable`] decides that). Capped exponential backoff with full
//! jitter, `Retry-After` honoured, within an attempt budget.
//!
//! Pure apart from the random draw: no clock, no sleeping, no logging — the client's
//! request loop does those, so this is testable without waiting.

use std::time::Duration;

use reqwest::header::{HeaderMap, RETRY_AFTER};

/// When to retry a retriable failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt (the attempt budget is `retries + 1`).
    pub retries: u32,
    /// Backoff ceiling before the first retry; it doubles for each further retry.
    pub base: Duration,
    /// The backoff ceiling never exceeds this.
    pub cap: Duration,
    /// A `Retry-After` longer than this is not waited for: the request gives up at once
    /// and the caller (reconcile's next round, say) decides.
    pub max_retry_after: Duration,
}

impl RetryPolicy {
    /// How long to wait before retry number `retry` (1 for the first retry), or `None`
    /// when the budget is spent or the server asks for a wait above `max_retry_after`.
    ///
    /// The wait is drawn uniformly from `[0, min(cap, base · 2^(retry-1))]` ("full
    /// jitter", so clients that failed together do not retry together). With a
    /// `Retry-After`, the wait is at least that long.
    pub fn delay(&self, retry: u32, retry_after: Option<Duration>) -> Option<Duration> {
        if retry == 0 || retry > self.retries {
            return None;
        }
        if retry_after.is_some_and(|after| after > self.max_retry_after) {
            return None;
        }
        let jittered = full_jitter(self.ceiling(retry));
        Some(retry_after.map_or(jittered, |after| after.max(jittered)))
    }

    /// The backoff ceiling for retry number `retry` (≥ 1): `min(cap, base · 2^(retry-1))`.
    pub fn ceiling(&self, retry: u32) -> Duration {
        let doublings = retry.saturating_sub(1).min(31);
        self.base
            .checked_mul(1u32 << doublings)
            .unwrap_or(Duration::MAX)
            .min(self.cap)
    }
}

/// A uniform draw from `[0, ceiling]`, at microsecond resolution.
fn full_jitter(ceiling: Duration) -> Duration {
    let micros = u64::try_from(ceiling.as_micros()).unwrap_or(u64::MAX);
    Duration::from_micros(rand::random_range(0..=micros))
}

/// The `Retry-After` header: delay-seconds, or an HTTP date (a date in the past is no
/// wait). Anything unparseable counts as absent.
pub(super) fn parse_retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let wait = at.signed_duration_since(chrono::Utc::now());
    Some(wait.to_std().unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            retries: 3,
            base: Duration::from_millis(100),
            cap: Duration::from_millis(250),
            max_retry_after: Duration::from_secs(5),
        }
    }

    #[test]
    fn ceiling_doubles_then_caps() {
        let p = policy();
        assert_eq!(p.ceiling(1), Duration::from_millis(100));
        assert_eq!(p.ceiling(2), Duration::from_millis(200));
        assert_eq!(p.ceiling(3), Duration::from_millis(250));
        assert_eq!(p.ceiling(u32::MAX), Duration::from_millis(250));
    }

    #[test]
    fn delays_are_jittered_within_the_ceiling_and_the_budget() {
        let p = policy();
        for retry in 1..=3 {
            for _ in 0..200 {
                let d = p.delay(retry, None).expect("within budget");
                assert!(
                    d <= p.ceiling(retry),
                    "{d:?} above ceiling for retry {retry}"
                );
            }
        }
        // Full jitter: the draws spread out rather than sitting at the ceiling.
        let draws: Vec<_> = (0..200).map(|_| p.delay(2, None).unwrap()).collect();
        assert!(draws.iter().any(|d| *d < Duration::from_millis(100)));
        assert_eq!(p.delay(4, None), None, "budget spent");
        assert_eq!(p.delay(0, None), None);
        let none = RetryPolicy { retries: 0, ..p };
        assert_eq!(none.delay(1, None), None);
    }

    #[test]
    fn retry_after_is_a_floor_and_too_long_gives_up() {
        let p = policy();
        let after = Duration::from_secs(2);
        for _ in 0..50 {
            assert_eq!(p.delay(1, Some(after)), Some(after));
        }
        assert_eq!(p.delay(1, Some(Duration::from_secs(6))), None);
        assert_eq!(p.delay(4, Some(after)), None);
    }

    #[test]
    fn retry_after_header_parses_seconds_and_dates() {
        let mut headers = HeaderMap::new();
        assert_eq!(parse_retry_after(&headers), None);
        headers.insert(RETRY_AFTER, HeaderValue::from_static(" 3 "));
        assert_eq!(parse_retry_after(&headers), Some(Duration::from_secs(3)));
        headers.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(parse_retry_after(&headers), Some(Duration::ZERO));
        let later = (chrono::Utc::now() + chrono::Duration::seconds(30)).to_rfc2822();
        headers.insert(RETRY_AFTER, HeaderValue::from_str(&later).unwrap());
        let wait = parse_retry_after(&headers).unwrap();
        assert!(wait > Duration::from_secs(25) && wait <= Duration::from_secs(30));
        headers.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(parse_retry_after(&headers), None);
    }
}
