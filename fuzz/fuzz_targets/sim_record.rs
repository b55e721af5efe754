//! Any bytes as a call record body (`GET /v1/calls/{id}` read by the simulator): never a
//! panic, and any JSON object reads (leniently) while anything else is an error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use voxgate::sim::record::{Stage, parse_record};

fuzz_target!(|data: &[u8]| {
    let is_object = matches!(
        serde_json::from_slice::<serde_json::Value>(data),
        Ok(serde_json::Value::Object(_))
    );
    match parse_record(data) {
        Ok(record) => {
            assert!(is_object);
            for turn in &record.turns {
                for stage in Stage::ALL {
                    assert!(turn.stage(stage).is_none_or(f64::is_finite));
                }
            }
        }
        Err(_) => assert!(!is_object),
    }
});
