//! Any text as an LLM agent profile: a clear error or a profile, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use voxgate::agent::llm::profile::parse_profile;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(profile) = parse_profile("fuzz.toml", text) {
        assert!(!profile.name.is_empty());
        assert!(profile.max_failures >= 1);
        // A profile's tools never print a header value.
        let _ = format!("{profile:?}");
    }
});
