//! The LLM agent end to end: a real server running an agent profile whose providers are
//! loopback fakes speaking Deepgram's, OpenAI's and ElevenLabs' public protocols, and the
//! Plivo-faithful simulator as the caller, at real time.
//!
//! What a user would notice: the first message is heard; what the caller says reaches the
//! model with the conversation so far; the model's answer is spoken and its tools act
//! (a slot recorded, the call ended by the agent); a barge-in cancels the model and the
//! voice on the wire and the context keeps only what was heard; a failing provider costs a
//! fallback line, not the call; keys never show in `/metrics` or `/v1`.

mod common;

#[path = "common/fake_deepgram.rs"]
mod fake_deepgram;
#[path = "common/fake_elevenlabs.rs"]
mod fake_elevenlabs;
#[path = "common/fake_openai_chat.rs"]
mod fake_openai_chat;

use std::time::Duration;

use common::TestServer;
use fake_deepgram::{FakeDeepgram, LiveScript, results};
use fake_elevenlabs::{FakeChunk, FakeElevenLabs, Script};
use fake_openai_chat::{Answer, FakeChat, Piece};
use voxgate::sim::record::{ApiToken, ServerRecord, fetch_record};
use voxgate::sim::{CallReport, CallerStep, HungUpBy, SimConfig, run_call};

const API_TOKEN: &str = "llm-api-token";
const OPENAI_KEY: &str = "sk-openai-test-5e1b7c";
const DEEPGRAM_KEY: &str = "dg-test-8f2a9d";
const ELEVENLABS_KEY: &str = "el-test-3c6e0b";

const PROFILE: &str = r#"
name = "ava"
system_prompt = "You are Ava. The caller's number is {{ from }}."
first_message = "Hi, this is Ava."
fallback_line = "Sorry, I missed that."
goodbye = "Goodbye from Ava."
max_failures = 2
[llm]
model = "fake-model"
[tts]
provider = "elevenlabs"
"#;

/// The three fakes a call talks to.
struct Fakes {
    deepgram: FakeDeepgram,
    chat: FakeChat,
    voice: FakeElevenLabs,
}

/// One utterance of the fake voice: 40 ms of audio per character of `text`.
fn voice(text: &'static str) -> Script {
    Script::Speak {
        chunks: vec![FakeChunk {
            text,
            ms_per_char: 40,
        }],
        gap: Duration::from_millis(20),
        snake_case: false,
    }
}

/// Deepgram that answers each `Finalize` with `words`.
async fn deepgram_hearing(words: &str) -> FakeDeepgram {
    let heard = results(words, 0.0, 1.0, true, true, true, &[]);
    FakeDeepgram::start(
        LiveScript {
            on_finalize: Some(heard),
            ..LiveScript::default()
        },
        Vec::new(),
    )
    .await
}

async fn server(fakes: &Fakes, profile: &str) -> TestServer {
    let profiles = common::scratch_dir("llm-profiles");
    std::fs::write(profiles.join("ava.toml"), profile).unwrap();
    let profiles = profiles.display().to_string();
    let data_dir = common::scratch_dir("llm-data").display().to_string();
    TestServer::start_with_control(
        None,
        &[
            ("VOXGATE_AGENT", "llm"),
            ("VOXGATE_AGENT_PROFILES_DIR", &profiles),
            ("VOXGATE_API_TOKENS", API_TOKEN),
            ("VOXGATE_DATA_DIR", &data_dir),
            ("OPENAI_API_KEY", OPENAI_KEY),
            ("OPENAI_BASE_URL", &fakes.chat.base_url),
            ("DEEPGRAM_API_KEY", DEEPGRAM_KEY),
            ("VOXGATE_DEEPGRAM_BASE_URL", &fakes.deepgram.base_url),
            ("ELEVENLABS_API_KEY", ELEVENLABS_KEY),
            ("VOXGATE_ELEVENLABS_BASE_URL", &fakes.voice.base_url),
        ],
    )
    .await
}

async fn call(server: &TestServer, script: Vec<CallerStep>) -> (CallReport, ServerRecord) {
    let mut config = SimConfig::new(&server.base, script);
    config.timeouts.max_call = Duration::from_secs(60);
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

fn wait_agent() -> CallerStep {
    CallerStep::WaitAgent {
        timeout: Duration::from_secs(20),
        quiet: Duration::from_millis(800),
    }
}

fn agent_lines(record: &ServerRecord) -> Vec<String> {
    record
        .transcript
        .iter()
        .filter(|l| l.speaker.as_deref() == Some("agent"))
        .map(|l| l.text.clone().unwrap_or_default())
        .collect()
}

fn caller_lines(record: &ServerRecord) -> Vec<String> {
    record
        .caller_lines()
        .map(|l| l.text.clone().unwrap_or_default())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_model_answers_what_the_caller_said_records_a_slot_and_ends_the_call() {
    let fakes = Fakes {
        deepgram: deepgram_hearing("I am calling from Tokyo.").await,
        chat: FakeChat::start(vec![Answer::Stream(vec![
            Piece::Text("Tokyo is lovely "),
            Piece::Text("this time of year. "),
            Piece::Text("Goodbye!"),
            Piece::Tool {
                id: "call_1",
                name: "set_slot",
                arguments: r#"{"name":"city","value":"Tokyo"}"#.into(),
            },
            Piece::Tool {
                id: "call_2",
                name: "end_call",
                arguments: r#"{"reason":"done"}"#.into(),
            },
        ])])
        .await,
        voice: FakeElevenLabs::start(vec![voice("Hello there. ")]).await,
    };
    let server = server(&fakes, PROFILE).await;
    let (report, record) = call(
        &server,
        vec![
            wait_agent(),
            CallerStep::Audio(common::utterance(1)),
            CallerStep::WaitHangup {
                timeout: Duration::from_secs(20),
            },
        ],
    )
    .await;

    let lines = agent_lines(&record);
    assert_eq!(
        lines,
        [
            "Hi, this is Ava.",
            "Tokyo is lovely this time of year. Goodbye!"
        ],
        "{record:#?}"
    );
    assert_eq!(caller_lines(&record), ["I am calling from Tokyo."]);
    assert_eq!(record.slots.get("city").map(String::as_str), Some("Tokyo"));
    assert_eq!(report.hung_up_by, HungUpBy::Gateway, "{report:?}");
    assert_eq!(record.hung_up_by.as_deref(), Some("agent"));
    assert_eq!(report.gaps.count, 0, "gaps in the agent's audio");

    // The model saw the conversation so far, with the tools it may use.
    let seen = fakes.chat.seen();
    assert_eq!(seen.len(), 1, "one model call");
    let body = &seen[0].body;
    assert_eq!(body["model"], "fake-model");
    let messages = body["messages"].as_array().unwrap();
    assert_eq!(messages[0]["role"], "system");
    assert!(
        messages[0]["content"]
            .as_str()
            .unwrap()
            .starts_with("You are Ava. The caller's number is 1"),
        "{messages:?}"
    );
    assert_eq!(messages[1]["role"], "assistant");
    assert_eq!(messages[1]["content"], "Hi, this is Ava.");
    assert_eq!(messages[2]["role"], "user");
    assert_eq!(messages[2]["content"], "I am calling from Tokyo.");
    let tools: Vec<&str> = body["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(tools, ["end_call", "set_slot"]);

    // Deepgram heard the phone's µ-law 20 ms at a time, was asked to finalize at the end
    // of the caller's turn, and was closed at the end of the call.
    let socket = fakes
        .deepgram
        .wait_socket(0, |s| s.controls().iter().any(|(_, c)| c == "CloseStream"))
        .await;
    assert!(socket.violations.is_empty(), "{:?}", socket.violations);
    assert_eq!(socket.param("encoding"), ["mulaw"]);
    let frames = socket.frames();
    assert!(frames.len() > 50, "{} frames", frames.len());
    assert!(frames.iter().all(|(_, f)| f.len() == 160));
    let controls: Vec<String> = socket.controls().into_iter().map(|(_, c)| c).collect();
    assert!(controls.iter().any(|c| c == "Finalize"), "{controls:?}");
    assert!(controls.iter().any(|c| c == "CloseStream"), "{controls:?}");

    // Two utterances on the voice: the greeting and the answer, each ended with "".
    let voice = fakes.voice.seen();
    assert_eq!(voice.len(), 2, "{voice:#?}");
    let texts: Vec<String> = voice[1]
        .messages
        .iter()
        .filter_map(|(_, m)| m["text"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(
        texts.first().map(String::as_str),
        Some(" "),
        "the init message"
    );
    assert_eq!(
        texts.last().map(String::as_str),
        Some(""),
        "the end of input"
    );
    assert_eq!(
        texts[1..texts.len() - 1].concat().trim(),
        "Tokyo is lovely this time of year. Goodbye!"
    );
    for v in &voice {
        assert!(v.problems.is_empty(), "{:?}", v.problems);
    }

    // The answer's latency split names each stage.
    let answer = record
        .turns
        .iter()
        .find(|t| t.speech_end_ms.is_some())
        .unwrap_or_else(|| panic!("no answered turn: {:#?}", record.turns));
    assert!(!answer.stages.is_empty(), "{answer:?}");

    // No key anywhere a user could see.
    let metrics = reqwest::get(format!("{}/metrics", server.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let call = reqwest::Client::new()
        .get(format!("{}/v1/calls/{}", server.base, report.call_uuid))
        .bearer_auth(API_TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for key in [OPENAI_KEY, DEEPGRAM_KEY, ELEVENLABS_KEY] {
        assert!(
            !metrics.contains(key) && !call.contains(key),
            "{key} leaked"
        );
    }
}
