//! Any bytes as a TOML caller script (`voxgate simulate --script`): never a panic, and a
//! script that parses is within bounds: 1..=MAX_STEPS steps, every time at most
//! MAX_STEP_MS, every DTMF step 1..=MAX_DTMF_KEYS valid keys, every `say` a file name.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use voxgate::sim::script_file::{MAX_DTMF_KEYS, MAX_STEP_MS, MAX_STEPS, ScriptStep, parse_script};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let Ok(steps) = parse_script(&text) else {
        return;
    };
    assert!(!steps.is_empty() && steps.len() <= MAX_STEPS);
    let max = Duration::from_millis(MAX_STEP_MS);
    for step in steps {
        match step {
            ScriptStep::WaitAgent { timeout, quiet } => assert!(timeout <= max && quiet <= max),
            ScriptStep::WaitHangup { timeout } | ScriptStep::Silence(timeout) => {
                assert!(timeout <= max)
            }
            ScriptStep::Say(path) => assert!(!path.as_os_str().is_empty()),
            ScriptStep::Dtmf(keys) => {
                let n = keys.chars().count();
                assert!((1..=MAX_DTMF_KEYS).contains(&n));
                assert!(keys.chars().all(|c| "0123456789*#ABCD".contains(c)), "{keys:?}");
            }
            ScriptStep::Hangup => {}
        }
    }
});
