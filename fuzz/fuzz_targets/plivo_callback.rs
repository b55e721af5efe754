//! Any bytes as a Plivo callback (the first line as the callback URL's query, all of it as
//! the form body) through each callback parser: never a panic, and a callback that is read
//! always names its call and carries the key of its kind.
#![no_main]

use libfuzzer_sys::fuzz_target;
use voxgate::telephony::plivo::answer::{parse_form, parse_query};
use voxgate::telephony::plivo::callback::{Callback, CallbackError, CallbackKind};

fuzz_target!(|data: &[u8]| {
    let form = parse_form(data);
    let text = String::from_utf8_lossy(data);
    let query = parse_query(text.split('\n').next().unwrap_or_default());
    for (kind, prefix) in [
        (CallbackKind::Hangup, "hangup:"),
        (CallbackKind::Ring, "ring:"),
        (CallbackKind::StreamStatus, "stream:"),
    ] {
        match Callback::from_params(kind, &query, &form) {
            Ok(callback) => {
                assert!(!callback.call_id.is_empty());
                assert_eq!(callback.kind(), kind);
                assert!(callback.idempotency_key.starts_with(prefix));
                assert!(callback.call_uuid.as_deref() != Some(""));
            }
            Err(error) => assert_eq!(error, CallbackError::MissingCallId(kind)),
        }
    }
});
