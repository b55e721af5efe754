//! The shipped demo flow end to end, as a new user meets it: a real server running the
//! default agent (the `demo` flow, spoken by espeak-ng, heard by pocketsphinx) and the
//! Plivo-faithful simulator as the caller. Each test is one call at real time; the caller's
//! speech is espeak-ng's (`fixtures/speech/make_sim.sh`) sent as µ-law, as a phone would.
//!
//! What a caller would notice: the greeting and the menu are heard, a key press and a
//! spoken "yes" both lead to the city question, a spoken city is understood and said back,
//! silence brings the re-prompt, and the flow says goodbye and hangs up the call itself.
//! The server's record of the call (`GET /v1/calls/{id}`) holds the transcript, the slots
//! and who hung up.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::TestServer;
use voxgate::session::journal::Event;
use voxgate::sim::record::{ApiToken, ServerRecord, fetch_record};
use voxgate::sim::{CallReport, CallerStep, EventKind, HungUpBy, SimConfig, load_wav, run_call};

const API_TOKEN: &str = "flows-api-token";

/// A server that runs the default agent, as `voxgate serve` does with no configuration.
async fn demo_server() -> TestServer {
    let data_dir = common::scratch_dir("flows").display().to_string();
    TestServer::start_with_control(
        None,
        &[
            ("VOXGATE_AGENT", "flow"),
            ("VOXGATE_API_TOKENS", API_TOKEN),
            ("VOXGATE_DATA_DIR", &data_dir),
        ],
    )
    .await
}

/// A committed caller fixture (8 kHz mono WAV).
fn speech(name: &str) -> Vec<i16> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/speech")
        .join(name);
    load_wav(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn wait_agent() -> CallerStep {
    CallerStep::WaitAgent {
        timeout: Duration::from_secs(20),
        quiet: Duration::from_millis(800),
    }
}

fn wait_hangup() -> CallerStep {
    CallerStep::WaitHangup {
        timeout: Duration::from_secs(30),
    }
}

/// Runs one call on the default flow and reads the server's record of it.
async fn call(server: &TestServer, script: Vec<CallerStep>) -> (CallReport, ServerRecord) {
    call_on(server, &AnswerPath("/plivo/answer"), script).await
}

/// What the agent meant to say, turn by turn.
fn agent_lines(record: &ServerRecord) -> Vec<String> {
    record
        .transcript
        .iter()
        .filter(|l| l.speaker.as_deref() == Some("agent"))
        .map(|l| l.text.clone().unwrap_or_default())
        .collect()
}

fn said(lines: &[String], words: &str) -> bool {
    lines.iter().any(|l| l.contains(words))
}

/// The flow hung up on its own, by closing the media socket, and both sides say so.
fn assert_flow_hung_up(report: &CallReport, record: &ServerRecord) {
    assert_eq!(
        report.hung_up_by,
        HungUpBy::Gateway,
        "the simulator saw {:?} end the call; skipped steps {:?}",
        report.hung_up_by,
        report.skipped_steps
    );
    assert_eq!(record.hung_up_by.as_deref(), Some("agent"), "{record:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_flow_key_press_then_a_spoken_city_then_goodbye_and_hang_up() {
    let server = demo_server().await;
    let (report, record) = call(
        &server,
        vec![
            wait_agent(),
            CallerStep::Dtmf("1".into()),
            wait_agent(),
            CallerStep::Audio(speech("sim_tokyo.wav")),
            wait_hangup(),
        ],
    )
    .await;

    let lines = agent_lines(&record);
    assert!(said(&lines, "this is the voxgate demo"), "{lines:#?}");
    assert!(said(&lines, "Press 1 or say yes"), "{lines:#?}");
    assert!(said(&lines, "Which city are you in"), "{lines:#?}");
    assert!(
        said(&lines, "Our spring offer in Tokyo starts next week"),
        "the city was not understood: {lines:#?}\ncaller: {:#?}",
        record.caller_lines().collect::<Vec<_>>()
    );
    assert_eq!(
        record.slots.get("city").map(String::as_str),
        Some("Tokyo"),
        "{record:?}"
    );
    assert_flow_hung_up(&report, &record);
    // Every prompt reached the phone whole: nothing was cut, nothing skipped.
    assert!(
        record
            .transcript
            .iter()
            .all(|l| l.interrupted != Some(true)),
        "{record:?}"
    );
    assert_eq!(report.gaps.count, 0, "gaps in the agent's audio");
    // And the phone heard speech: the greeting and the prompts are audio, not silence.
    let loud = report
        .heard
        .iter()
        .filter(|s| s.unsigned_abs() > 500)
        .count();
    assert!(
        loud > 8_000,
        "the phone heard only {loud} loud samples ({} s of audio)",
        report.heard.len() / 8_000
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_flow_a_spoken_yes_takes_the_yes_branch() {
    let server = demo_server().await;
    let (report, record) = call(
        &server,
        vec![
            wait_agent(),
            CallerStep::Audio(speech("sim_yes.wav")),
            wait_agent(),
            CallerStep::Hangup,
        ],
    )
    .await;
    let lines = agent_lines(&record);
    assert!(
        said(&lines, "Which city are you in"),
        "a spoken yes did not lead to the city question: {lines:#?}\ncaller: {:#?}",
        record.caller_lines().collect::<Vec<_>>()
    );
    assert!(
        record
            .caller_lines()
            .any(|l| l.text.as_deref() == Some("yes")),
        "{record:?}"
    );
    assert_eq!(report.hung_up_by, HungUpBy::Caller);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_flow_silence_brings_the_reprompt_then_a_key_press_ends_the_call() {
    let server = demo_server().await;
    let (report, record) = call(
        &server,
        vec![
            wait_agent(),
            // The menu waits 6 s for an answer, then asks again.
            CallerStep::UntilAgentHeard {
                then: Duration::ZERO,
            },
            wait_agent(),
            CallerStep::Dtmf("2".into()),
            wait_hangup(),
        ],
    )
    .await;
    let lines = agent_lines(&record);
    let reprompt = lines
        .iter()
        .position(|l| l.starts_with("Sorry, I didn't catch that"))
        .unwrap_or_else(|| panic!("no re-prompt: {lines:#?}"));
    assert!(
        lines[reprompt + 1..]
            .iter()
            .any(|l| l.contains("No problem. Thank you for your time")),
        "key 2 after the re-prompt did not end the call: {lines:#?}"
    );
    assert!(!said(&lines, "Which city"), "{lines:#?}");
    assert_flow_hung_up(&report, &record);
}

/// A flow with one long prompt the caller may cut off (`interruption = "vad"`), then a
/// key-press question, then goodbye.
const LONG_FLOW: &str = r#"
name = "long"
start = "story"
max_call_secs = 120
interruption = "vad"

[nodes.story]
say = "Let me tell you about our spring offer. Every customer who books before the end of the month gets a free inspection, a second visit at half price, and a reminder before each appointment, so nothing is ever missed. Press 1 when you are ready."
ask = { dtmf = true, max_digits = 1, timeout_secs = 20 }
on = [ { digits = "1", go = "bye" } ]
no_input = "bye"
no_match = "bye"

[nodes.bye]
say = "Goodbye."
hangup = true
"#;

/// A server with the `long` flow beside the demo; calls pick it with `?flow=long`.
async fn long_flow_server() -> (TestServer, AnswerPath) {
    let flows = common::scratch_dir("flows-long");
    std::fs::write(flows.join("long.toml"), LONG_FLOW).unwrap();
    let flows_dir = flows.display().to_string();
    let data_dir = common::scratch_dir("flows-data").display().to_string();
    let server = TestServer::start_with_control(
        None,
        &[
            ("VOXGATE_AGENT", "flow"),
            ("VOXGATE_FLOWS_DIR", &flows_dir),
            ("VOXGATE_API_TOKENS", API_TOKEN),
            ("VOXGATE_DATA_DIR", &data_dir),
        ],
    )
    .await;
    (server, AnswerPath("/plivo/answer?flow=long"))
}

/// The answer path a call takes.
struct AnswerPath(&'static str);

/// Runs one call through `path` and reads the server's record of it.
async fn call_on(
    server: &TestServer,
    path: &AnswerPath,
    script: Vec<CallerStep>,
) -> (CallReport, ServerRecord) {
    let mut config = SimConfig::new(&server.base, script);
    config.answer_path = path.0.to_owned();
    config.timeouts.max_call = Duration::from_secs(90);
    let report = run_call(config).await.expect("the call runs");
    assert_eq!(
        report.counts.protocol_errors, 0,
        "{:?}",
        report.protocol_errors
    );
    let record = fetch_record(
        &reqwest::Client::new(),
        &server.base,
        &ApiToken::new(API_TOKEN).unwrap(),
        &report.call_uuid,
        Duration::from_secs(5),
    )
    .await
    .expect("the call's record");
    (report, record)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn barge_in_cuts_a_long_prompt_at_once_and_the_transcript_keeps_what_was_heard() {
    let (server, path) = long_flow_server().await;
    let (report, record) = call_on(
        &server,
        &path,
        vec![
            CallerStep::UntilAgentHeard {
                then: Duration::from_millis(2_000),
            },
            CallerStep::Audio(common::utterance(2)),
            CallerStep::Silence(Duration::from_millis(1_000)),
            CallerStep::Hangup,
        ],
    )
    .await;

    // The server decided to barge in once the caller had spoken min_speech_ms (250 ms, the
    // default) by its VAD; the phone went silent within 40 ms of that moment.
    let (cleared_ms, silent_after) = server.clear_after_min_speech(&report);
    eprintln!(
        "barge-in: phone cleared at {cleared_ms:.0} ms: {silent_after:.0} ms after the \
         caller's speech reached 250 ms"
    );
    assert!(
        silent_after <= 40.0,
        "phone silent {silent_after:.0} ms after the speech reached the minimum"
    );
    assert!(
        silent_after >= -20.0,
        "cleared before the caller had spoken the minimum ({silent_after:.0} ms)"
    );

    // The story's transcript line keeps only what the caller heard: a prefix, in proportion
    // to the ~2.3 s that played of a ~14 s prompt.
    let story = record.agent_line(1).expect("the story's turn");
    assert_eq!(story.interrupted, Some(true), "{story:?}");
    let text = story.text.as_deref().unwrap();
    let heard = story
        .heard_text
        .as_deref()
        .expect("heard text of a cut turn");
    assert!(
        text.starts_with(heard),
        "{heard:?} is not a prefix of {text:?}"
    );
    let heard_words = heard.split_whitespace().count();
    let all_words = text.split_whitespace().count();
    eprintln!("barge-in: heard {heard_words} of {all_words} words: {heard:?}");
    assert!(
        (3..all_words / 2).contains(&heard_words),
        "heard {heard_words} of {all_words} words: {heard:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100_ms_click_during_a_prompt_does_not_cut_it() {
    let (server, path) = long_flow_server().await;
    // A click: 100 ms of loud broadband noise (a deterministic LCG), as a bumped handset.
    let mut seed = 0x2545_f491_u32;
    let click: Vec<i16> = (0..800)
        .map(|_| {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            ((seed >> 16) as i16) / 2
        })
        .collect();
    let (report, record) = call_on(
        &server,
        &path,
        vec![
            CallerStep::UntilAgentHeard {
                then: Duration::from_millis(2_000),
            },
            CallerStep::Audio(click),
            CallerStep::Silence(Duration::from_millis(1_500)),
            CallerStep::Hangup,
        ],
    )
    .await;
    assert!(
        !report
            .timeline
            .iter()
            .any(|e| matches!(e.kind, EventKind::PhoneCleared { .. })),
        "the click cleared the phone"
    );
    let journal = server.journal(&report.call_uuid).unwrap();
    // Else this test would prove nothing: the VAD did take the click for speech.
    assert!(
        journal
            .find(|e| matches!(e, Event::SpeechStarted { .. }))
            .is_some(),
        "the VAD never heard the click"
    );
    assert!(
        journal
            .find(|e| matches!(e, Event::BargeIn { .. }))
            .is_none(),
        "the server barged in on a click"
    );
    // The prompt went on playing: its turn is not marked interrupted, and the click is
    // no caller turn.
    let story = record.agent_line(1).expect("the story's turn");
    assert_ne!(story.interrupted, Some(true), "{story:?}");
    assert_eq!(record.caller_lines().count(), 0, "{:?}", record.transcript);
}
