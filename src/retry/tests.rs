//! The timer's bounds: backoff ceilings, full jitter, the `Retry-After` floor and limit,
//! the attempt and age budgets, [`Backoff`]'s counting, the `Retry-After` header, and a
//! property test of the whole decision.

use proptest::prelude::*;
use rand::SeedableRng;
use rand::rngs::StdRng;
use reqwest::header::HeaderValue;

use super::*;

const MS: Duration = Duration::from_millis(1);
const SEC: Duration = Duration::from_secs(1);
const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(24 * 3600);

fn delay(decision: RetryDecision) -> Duration {
    match decision {
        RetryDecision::RetryAt(d) => d,
        RetryDecision::GiveUp => panic!("gave up"),
    }
}

/// A request loop's policy: 3 retries, no age limit, `Retry-After` up to 5 s.
fn request_policy() -> RetryPolicy {
    RetryPolicy {
        base: 100 * MS,
        cap: 250 * MS,
        max_age: None,
        max_retry_after: Some(5 * SEC),
        ..RetryPolicy::default()
    }
    .with_retries(3)
}

#[test]
fn defaults_are_the_outbox_timing() {
    let policy = RetryPolicy::default();
    assert_eq!(
        (policy.base, policy.cap, policy.max_age),
        (500 * MS, 30 * SEC, Some(DAY))
    );
    assert_eq!((policy.max_attempts, policy.max_retry_after), (None, None));
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

    let p = request_policy();
    assert_eq!(p.ceiling(1), 100 * MS);
    assert_eq!(p.ceiling(2), 200 * MS);
    assert_eq!(p.ceiling(3), 250 * MS);
    assert_eq!(p.ceiling(u32::MAX), 250 * MS);
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
        let d = delay(policy.next_with(1, Duration::ZERO, Some(7 * SEC), &mut rng));
        assert_eq!(d, 7 * SEC, "hint above the ceiling wins");
        let d = delay(policy.next_with(12, Duration::ZERO, Some(2 * SEC), &mut rng));
        assert!(d >= 2 * SEC && d <= policy.cap);
    }
    // Even past the cap: the server knows when it will be back.
    let d = delay(policy.next_with(1, Duration::ZERO, Some(HOUR), &mut rng));
    assert_eq!(d, HOUR);
}

#[test]
fn retry_after_is_a_floor_and_too_long_gives_up() {
    let p = request_policy();
    let mut rng = StdRng::seed_from_u64(13);
    let after = 2 * SEC;
    for _ in 0..50 {
        assert_eq!(
            p.next_with(1, Duration::ZERO, Some(after), &mut rng),
            RetryDecision::RetryAt(after)
        );
    }
    assert_eq!(
        p.next_with(1, Duration::ZERO, Some(6 * SEC), &mut rng),
        RetryDecision::GiveUp,
        "above max_retry_after"
    );
    assert_eq!(
        p.next_with(4, Duration::ZERO, Some(after), &mut rng),
        RetryDecision::GiveUp,
        "budget spent"
    );
    assert_eq!(
        p.next_with(1, Duration::ZERO, Some(5 * SEC), &mut rng),
        RetryDecision::RetryAt(5 * SEC),
        "exactly max_retry_after is honoured"
    );
}

#[test]
fn gives_up_past_max_age_and_lands_the_last_retry_on_the_deadline() {
    let policy = RetryPolicy::default();
    let mut rng = StdRng::seed_from_u64(5);
    assert_eq!(
        policy.next_with(3, DAY, None, &mut rng),
        RetryDecision::GiveUp
    );
    assert_eq!(
        policy.next_with(3, DAY + HOUR, None, &mut rng),
        RetryDecision::GiveUp
    );
    let almost = DAY - 10 * MS;
    for _ in 0..100 {
        assert!(delay(policy.next_with(20, almost, None, &mut rng)) <= 10 * MS);
    }
    assert_eq!(
        policy.next_with(1, DAY - HOUR, Some(2 * HOUR), &mut rng),
        RetryDecision::GiveUp,
        "a Retry-After past the deadline cannot be honoured"
    );
}

#[test]
fn without_max_age_age_does_not_matter() {
    let p = request_policy();
    let mut rng = StdRng::seed_from_u64(17);
    let d = delay(p.next_with(1, 10 * 365 * DAY, None, &mut rng));
    assert!(d <= p.ceiling(1));
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
    assert_eq!(RetryPolicy::default().with_retries(5).max_attempts, Some(6));
    assert_eq!(
        RetryPolicy::default().with_retries(u32::MAX).max_attempts,
        Some(u32::MAX)
    );
}

#[test]
fn validation_refuses_tight_loops() {
    assert_eq!(RetryPolicy::default().validate(), Ok(()));
    assert_eq!(request_policy().validate(), Ok(()));
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
    let no_age = RetryPolicy {
        max_age: Some(Duration::ZERO),
        ..RetryPolicy::default()
    };
    assert_eq!(no_age.validate(), Err(RetryPolicyError::ZeroMaxAge));
    let no_attempts = RetryPolicy {
        max_attempts: Some(0),
        ..RetryPolicy::default()
    };
    assert_eq!(no_attempts.validate(), Err(RetryPolicyError::ZeroAttempts));
    assert_eq!(
        RetryPolicy::default().with_retries(0).validate(),
        Ok(()),
        "no retries is one attempt, not zero"
    );
}

#[test]
fn backoff_grants_the_budget_then_gives_up() {
    let p = request_policy();
    let mut rng = StdRng::seed_from_u64(19);
    let mut backoff = Backoff::new(p);
    assert_eq!(backoff.retries(), 0);
    for retry in 1..=3 {
        let d = backoff
            .next_delay_with(None, &mut rng)
            .expect("within budget");
        assert!(
            d <= p.ceiling(retry),
            "{d:?} above ceiling for retry {retry}"
        );
        assert_eq!(backoff.retries(), retry);
    }
    assert_eq!(
        backoff.next_delay_with(None, &mut rng),
        None,
        "budget spent"
    );
    assert_eq!(backoff.retries(), 3, "a give-up grants nothing");

    let mut none = Backoff::new(p.with_retries(0));
    assert_eq!(none.next_delay(None), None);
    assert_eq!(none.retries(), 0);
}

#[test]
fn backoff_delays_are_jittered_within_the_ceiling() {
    let p = RetryPolicy {
        max_attempts: None,
        ..request_policy()
    };
    let mut rng = StdRng::seed_from_u64(23);
    for _ in 0..200 {
        let mut backoff = Backoff::new(p);
        let first = backoff.next_delay_with(None, &mut rng).unwrap();
        assert!(
            first <= p.ceiling(1),
            "the first delay uses retry 1's ceiling"
        );
    }
    // Full jitter: the draws spread out rather than sitting at the ceiling.
    let draws: Vec<_> = (0..200)
        .map(|_| {
            let mut backoff = Backoff::new(p);
            backoff.next_delay_with(None, &mut rng).unwrap();
            backoff.next_delay_with(None, &mut rng).unwrap()
        })
        .collect();
    assert!(draws.iter().all(|d| *d <= p.ceiling(2)));
    assert!(draws.iter().any(|d| *d < 100 * MS));
}

#[test]
fn backoff_honours_retry_after_and_its_limit() {
    let p = request_policy();
    let mut backoff = Backoff::new(p);
    assert_eq!(backoff.next_delay(Some(2 * SEC)), Some(2 * SEC));
    assert_eq!(backoff.next_delay(Some(6 * SEC)), None, "too long to wait");
    assert_eq!(backoff.retries(), 1);
}

#[test]
fn backoff_measures_age_from_its_start() {
    let p = RetryPolicy {
        max_age: Some(HOUR),
        ..RetryPolicy::default()
    };
    let Some(started) = Instant::now().checked_sub(2 * HOUR) else {
        return; // A clock this young cannot hold an operation that old.
    };
    let mut old = Backoff {
        started,
        ..Backoff::new(p)
    };
    assert_eq!(old.next_delay(None), None, "older than max_age");
    let mut fresh = Backoff::new(p);
    assert!(fresh.next_delay(None).is_some());
}

#[test]
fn retry_after_header_parses_seconds_and_dates() {
    let now = DateTime::parse_from_rfc3339("2026-05-01T12:00:00Z")
        .unwrap()
        .with_timezone(&Utc);
    let headers = |value: &str| {
        let mut map = HeaderMap::new();
        map.insert(RETRY_AFTER, HeaderValue::from_str(value).unwrap());
        map
    };
    assert_eq!(retry_after(&HeaderMap::new(), now), None);
    assert_eq!(retry_after(&headers(" 3 "), now), Some(3 * SEC));
    assert_eq!(retry_after(&headers("120"), now), Some(120 * SEC));
    assert_eq!(
        retry_after(&headers("Fri, 01 May 2026 12:00:30 GMT"), now),
        Some(30 * SEC)
    );
    assert_eq!(
        retry_after(&headers("Fri, 01 May 2026 11:00:00 GMT"), now),
        Some(Duration::ZERO),
        "a date in the past means now"
    );
    assert_eq!(
        retry_after(&headers("Wed, 21 Oct 2015 07:28:00 GMT"), Utc::now()),
        Some(Duration::ZERO)
    );
    let later = (Utc::now() + chrono::Duration::seconds(30)).to_rfc2822();
    let wait = retry_after(&headers(&later), Utc::now()).unwrap();
    assert!(wait > 25 * SEC && wait <= 30 * SEC);
    assert_eq!(retry_after(&headers("soon"), now), None);
    assert_eq!(retry_after(&headers("-5"), now), None);
}

fn duration_ms(max: u64) -> impl Strategy<Value = Duration> {
    (0..=max).prop_map(Duration::from_millis)
}

proptest! {
    /// The decision is exactly the budgets' verdict, and a granted delay always lies
    /// between the hint and the larger of the ceiling and the hint, within the time left.
    #[test]
    fn decision_respects_every_bound(
        base in duration_ms(10_000),
        cap in duration_ms(100_000),
        max_attempts in proptest::option::of(0u32..20),
        max_age in proptest::option::of(duration_ms(200_000)),
        max_retry_after in proptest::option::of(duration_ms(100_000)),
        attempts in 0u32..40,
        age in duration_ms(300_000),
        hint in proptest::option::of(duration_ms(150_000)),
        seed in any::<u64>(),
    ) {
        let policy = RetryPolicy { base, cap, max_attempts, max_age, max_retry_after };
        let mut rng = StdRng::seed_from_u64(seed);
        let decision = policy.next_with(attempts, age, hint, &mut rng);
        let floor = hint.unwrap_or_default();
        let left = max_age.map(|max| max.saturating_sub(age));
        let allowed = max_attempts.is_none_or(|max| attempts < max)
            && left.is_none_or(|left| !left.is_zero() && floor <= left)
            && max_retry_after.is_none_or(|max| floor <= max);
        match decision {
            RetryDecision::GiveUp => prop_assert!(!allowed),
            RetryDecision::RetryAt(d) => {
                prop_assert!(allowed);
                prop_assert!(d >= floor);
                prop_assert!(d <= policy.ceiling(attempts).max(floor));
                prop_assert!(d <= policy.cap.max(floor));
                prop_assert!(left.is_none_or(|left| d <= left));
            }
        }
    }
}
