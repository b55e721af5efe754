//! Any config file text: an error or a valid config, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use voxgate::config::{CliOverrides, Config};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(config) = Config::load(Some(text), &Default::default(), CliOverrides::default()) {
        let _ = config.to_toml();
    }
});
