//! Any bytes as Plivo REST responses (Make Call, live call, CDR) and any text as a Plivo
//! time or a uuid: never a panic. A uuid the guard accepts is always safe in a path, and
//! a retry delay never exceeds its ceiling or the server's `Retry-After`.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use voxgate::retry::{RetryDecision, RetryPolicy};
use voxgate::telephony::plivo::rest::{Cdr, LiveCall, MakeCallResponse, PlivoTime, check_uuid};

type Input = (Vec<u8>, String, (u32, u32), (u64, u64, u64), Option<u64>, i32);

fuzz_target!(|input: Input| {
    let (json, text, (retries, retry), (base, cap, max_after), retry_after, offset) = input;

    let _ = serde_json::from_slice::<MakeCallResponse>(&json);
    let account = chrono::FixedOffset::east_opt(offset % 86_400)
        .unwrap_or_else(|| chrono::FixedOffset::east_opt(0).unwrap());
    if let Ok(live) = serde_json::from_slice::<LiveCall>(&json) {
        let _ = live.session_start().map(|t| t.to_utc(account));
    }
    if let Ok(cdr) = serde_json::from_slice::<Cdr>(&json) {
        let _ = cdr.was_answered();
        for time in [cdr.answer_time(), cdr.initiation_time(), cdr.end_time()] {
            let _ = time.map(|t| t.to_utc(account));
        }
    }
    if let Some(time) = PlivoTime::parse(&text) {
        let _ = time.to_utc(account);
    }

    if check_uuid(&text).is_ok() {
        assert!(!text.is_empty() && text.len() <= 64);
        assert!(text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
    }

    // The REST client's shape of policy: an attempt budget, no age limit.
    let policy = RetryPolicy {
        base: Duration::from_micros(base),
        cap: Duration::from_micros(cap),
        max_attempts: None,
        max_age: None,
        max_retry_after: Some(Duration::from_micros(max_after)),
    }
    .with_retries(retries);
    let after = retry_after.map(Duration::from_micros);
    if let RetryDecision::RetryAt(delay) = policy.next(retry, Duration::ZERO, after) {
        assert!(retry <= retries);
        assert!(delay <= policy.ceiling(retry).max(after.unwrap_or_default()));
        assert!(after.is_none_or(|a| Some(a) <= policy.max_retry_after && delay >= a));
    }
});
