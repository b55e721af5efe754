//! Any flow file text: a load error or a flow the engine can start, never a panic or a hang.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use voxgate::agent::flow::{CallFacts, FlowRun, parse_flow};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(flow) = parse_flow("fuzz.toml", text) else { return };
    // A valid flow must also run: start it and drive every kind of input once.
    let (mut run, _) = FlowRun::start(Arc::new(flow), CallFacts::default(), 0);
    let _ = run.prompt_finished(1_000);
    let _ = run.dtmf('1', 2_000);
    let _ = run.words("yes", 3_000);
    let _ = run.tick(1_000_000_000);
});
