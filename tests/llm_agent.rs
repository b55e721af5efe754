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
#[path = "common/fake_openai_audio.rs"]
mod fake_openai_audio;
#[path = "common/fake_openai_chat.rs"]
mod fake_openai_chat;

use std::time::{Duration, Instant};

use common::TestServer;
use fake_deepgram::{FakeDeepgram, LiveScript, results};
use fake_elevenlabs::{FakeChunk, FakeElevenLabs, Script};
use fake_openai_audio::{FakeAudio, Speech};
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
        first_after: Duration::ZERO,
    }
}

/// Deepgram that answers each `Finalize` with `words`.
async fn deepgram_hearing(words: &str) -> FakeDeepgram {
    deepgram_hearing_after(words, Duration::ZERO).await
}

/// Deepgram that answers each `Finalize` with `words`, `delay` after it.
async fn deepgram_hearing_after(words: &str, delay: Duration) -> FakeDeepgram {
    let heard = results(words, 0.0, 1.0, true, true, true, &[]);
    FakeDeepgram::start(
        LiveScript {
            on_finalize: Some(heard),
            finalize_after: delay,
            ..LiveScript::default()
        },
        Vec::new(),
    )
    .await
}

async fn server(fakes: &Fakes, profile: &str) -> TestServer {
    server_running(fakes, profile, "llm").await
}

/// A server whose calls run `agent` unless their answer URL says otherwise.
async fn server_running(fakes: &Fakes, profile: &str, agent: &str) -> TestServer {
    server_with(fakes, profile, agent, None).await
}

async fn server_with(fakes: &Fakes, profile: &str, agent: &str, file: Option<&str>) -> TestServer {
    let profiles = common::scratch_dir("llm-profiles");
    std::fs::write(profiles.join("ava.toml"), profile).unwrap();
    let profiles = profiles.display().to_string();
    let data_dir = common::scratch_dir("llm-data").display().to_string();
    TestServer::start_with_control(
        file,
        &[
            ("VOXGATE_AGENT", agent),
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
    call_on(server, "/plivo/answer", script).await
}

async fn call_on(
    server: &TestServer,
    answer_path: &str,
    script: Vec<CallerStep>,
) -> (CallReport, ServerRecord) {
    let mut config = SimConfig::new(&server.base, script);
    config.answer_path = answer_path.to_owned();
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

/// When the server decided the call's (first) barge-in, from its journal.
fn barge_in_at(server: &TestServer, report: &CallReport, record: &ServerRecord) -> Instant {
    let journal = server
        .journal(&report.call_uuid)
        .expect("the call's journal");
    journal
        .entries()
        .iter()
        .find(|e| matches!(e.event, voxgate::session::journal::Event::BargeIn { .. }))
        .map(|e| e.at)
        .unwrap_or_else(|| panic!("no barge-in: {record:#?}"))
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
            Piece::Wait(Duration::from_millis(MODEL_DELAY_MS as u64)),
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

    // The answer's latency split puts the model's injected delay in its own stage.
    let answer = record
        .turns
        .iter()
        .find(|t| t.speech_end_ms.is_some())
        .unwrap_or_else(|| panic!("no answered turn: {:#?}", record.turns));
    {
        use voxgate::sim::record::Stage;
        let end_of_turn = answer.stage(Stage::EndOfTurn).expect("end of turn timed");
        let ready = answer
            .stage(Stage::SttFinal)
            .map_or(end_of_turn, |f| f.max(end_of_turn));
        let model = answer.stage(Stage::Decided).expect("first token timed") - ready;
        assert!(
            (model - MODEL_DELAY_MS).abs() <= 20.0,
            "the model's stage was {model:.1} ms for an injected {MODEL_DELAY_MS} ms: {answer:?}"
        );
        let tts = answer
            .stage(Stage::FirstTtsAudio)
            .expect("first audio timed");
        assert!(tts > answer.stage(Stage::Decided).unwrap(), "{answer:?}");
        assert!(answer.stage(Stage::Gateway).expect("gateway share timed") <= 10.0);
    }

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

const LONG_ANSWER: &str = "Our spring offer is great. Every customer who books before the end of the month gets a free inspection.";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_barge_in_cancels_the_model_and_the_voice_on_the_wire_and_the_context_keeps_what_was_heard()
 {
    let fakes = Fakes {
        deepgram: deepgram_hearing("Tell me about the offer.").await,
        chat: FakeChat::start(vec![
            Answer::Stream(vec![
                Piece::Text("Our spring offer is great. "),
                Piece::Text(
                    "Every customer who books before the end of the month gets a free inspection. ",
                ),
                // Still writing when the caller cuts in.
                Piece::Wait(Duration::from_secs(20)),
                Piece::Text("Never heard."),
            ]),
            Answer::Stream(vec![
                Piece::Text("Sure."),
                Piece::Tool {
                    id: "call_9",
                    name: "end_call",
                    arguments: "{}".into(),
                },
            ]),
        ])
        .await,
        voice: FakeElevenLabs::start(vec![
            voice("Hi, this is Ava."),
            // About 4 s of speech, still playing at the barge-in.
            voice(LONG_ANSWER),
            voice("Sure."),
        ])
        .await,
    };
    let server = server(&fakes, PROFILE).await;
    let (report, record) = call(
        &server,
        vec![
            wait_agent(),
            CallerStep::Audio(common::utterance(1)),
            CallerStep::UntilAgentHeard {
                then: Duration::from_millis(1_500),
            },
            CallerStep::Audio(common::utterance(2)),
            CallerStep::WaitHangup {
                timeout: Duration::from_secs(20),
            },
        ],
    )
    .await;

    let barge_in = barge_in_at(&server, &report, &record);
    // The model's stream and the voice's socket were closed at once.
    let chat_cancel = fakes.chat.seen()[0]
        .cancelled_at
        .expect("the chat fake saw the first answer cancelled");
    let voice_close = fakes
        .voice
        .closed_at(1)
        .await
        .expect("the voice fake saw the answer's socket close");
    // At or after the barge-in (a cancel before it would be a bug of its own), and soon.
    assert!(chat_cancel >= barge_in && voice_close >= barge_in);
    let chat_ms = chat_cancel.duration_since(barge_in).as_secs_f64() * 1e3;
    let voice_ms = voice_close.duration_since(barge_in).as_secs_f64() * 1e3;
    println!("barge-in → chat cancel {chat_ms:.1} ms, voice close {voice_ms:.1} ms");
    assert!(
        chat_ms < 50.0,
        "chat cancel seen {chat_ms:.1} ms after the barge-in"
    );
    assert!(
        voice_ms < 50.0,
        "voice close seen {voice_ms:.1} ms after the barge-in"
    );

    // The next request's context holds the answer only as far as the caller heard it.
    let seen = fakes.chat.seen();
    assert_eq!(seen.len(), 2, "{seen:#?}");
    let messages = seen[1].body["messages"].as_array().unwrap().clone();
    let roles: Vec<&str> = messages
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["system", "assistant", "user", "assistant", "user"]);
    let heard = messages[3]["content"].as_str().unwrap();
    assert!(
        !heard.is_empty() && heard.len() < LONG_ANSWER.len() && LONG_ANSWER.starts_with(heard),
        "the context kept {heard:?}"
    );
    let cut = record
        .transcript
        .iter()
        .find(|l| l.interrupted == Some(true))
        .unwrap_or_else(|| panic!("no interrupted turn: {record:#?}"));
    assert_eq!(cut.speaker.as_deref(), Some("agent"));
    assert_eq!(record.hung_up_by.as_deref(), Some("agent"));
    // The STT stayed open through the barge-in: one socket for the whole call.
    assert!(fakes.deepgram.socket(1).is_none(), "the STT was reopened");
}

/// A profile whose voice is OpenAI's `/audio/speech` (24 kHz PCM, resampled to the phone).
const OPENAI_VOICE_PROFILE: &str = r#"
name = "ava"
system_prompt = "You are Ava."
first_message = "Hi, this is Ava."
fallback_line = "Sorry, I missed that."
[llm]
model = "fake-model"
[tts]
provider = "openai"
model = "gpt-4o-mini-tts"
voice = "coral"
"#;

/// One OpenAI-compatible server on one address, as a profile sees it (one base URL):
/// the chat fake's routes beside the audio fake's.
async fn openai_server(answers: Vec<Answer>, speech: Vec<Speech>) -> (FakeChat, FakeAudio) {
    let (mut chat, chat_routes) = FakeChat::routes(answers);
    let (mut audio, audio_routes) = FakeAudio::routes(speech, Vec::new());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base_url = format!("http://{}/v1", listener.local_addr().unwrap());
    let app = chat_routes.merge(audio_routes);
    tokio::spawn(async move { axum::serve(listener, app).await });
    chat.base_url.clone_from(&base_url);
    audio.base_url = base_url;
    (chat, audio)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_speech_voices_the_agent_resampled_to_the_phone_and_a_barge_in_drops_its_request() {
    let (chat, audio) = openai_server(
        vec![
            Answer::Stream(vec![
                Piece::Text("Our spring offer is great. "),
                Piece::Text(
                    "Every customer who books before the end of the month gets a free inspection. ",
                ),
                Piece::Wait(Duration::from_secs(20)),
            ]),
            Answer::Stream(vec![
                Piece::Text("Sure."),
                Piece::Tool {
                    id: "call_1",
                    name: "end_call",
                    arguments: "{}".into(),
                },
            ]),
        ],
        // About twice real time: each answer is still arriving while it plays.
        vec![Speech::Pcm {
            ms_per_char: 100,
            gap: Duration::from_millis(10),
        }],
    )
    .await;
    let fakes = Fakes {
        deepgram: deepgram_hearing("Tell me about the offer.").await,
        chat,
        voice: FakeElevenLabs::start(vec![Script::Silent]).await,
    };
    let server = server(&fakes, OPENAI_VOICE_PROFILE).await;
    let (report, record) = call(
        &server,
        vec![
            wait_agent(),
            CallerStep::Audio(common::utterance(1)),
            CallerStep::UntilAgentHeard {
                then: Duration::from_millis(1_500),
            },
            CallerStep::Audio(common::utterance(2)),
            CallerStep::WaitHangup {
                timeout: Duration::from_secs(20),
            },
        ],
    )
    .await;

    // Every line was asked of OpenAI's speech endpoint as §4 says, in the profile's voice.
    let speech = audio.speech_seen();
    assert!(!speech.is_empty(), "no speech request");
    for seen in &speech {
        assert!(seen.problems.is_empty(), "{:?}", seen.problems);
        assert_eq!(seen.body["model"], "gpt-4o-mini-tts");
        assert_eq!(seen.body["voice"], "coral");
        assert_eq!(
            seen.authorization.as_deref(),
            Some(format!("Bearer {OPENAI_KEY}").as_str())
        );
    }
    assert_eq!(speech[0].body["input"], "Hi, this is Ava.");
    assert!(
        fakes.voice.seen().is_empty(),
        "ElevenLabs was used for an OpenAI voice"
    );
    // The caller heard the first line whole: 16 characters × 100 ms of audio, at 8 kHz.
    let first_line = record
        .transcript
        .iter()
        .find(|l| l.speaker.as_deref() == Some("agent"))
        .expect("the first line");
    assert_eq!(first_line.text.as_deref(), Some("Hi, this is Ava."));
    assert_eq!(first_line.interrupted, Some(false));
    let voiced = report.heard.iter().filter(|s| s.abs() > 64).count();
    assert!(
        voiced >= 16 * 100 * 8 * 9 / 10,
        "the caller heard {voiced} voiced samples"
    );
    assert_eq!(report.gaps.count, 0, "gaps in the agent's audio");

    // The barge-in dropped the speech request still streaming.
    let barge_in = barge_in_at(&server, &report, &record);
    let speech = audio.speech_seen();
    for seen in &speech {
        println!(
            "{:?}: {} samples, cancelled {:?} ms after the barge-in",
            seen.body["input"],
            seen.samples.len(),
            seen.cancelled_at.map(
                |at| at.saturating_duration_since(barge_in).as_secs_f64() * 1e3
                    - barge_in.saturating_duration_since(at).as_secs_f64() * 1e3
            )
        );
    }
    let cancelled = speech
        .iter()
        .filter_map(|s| s.cancelled_at)
        .next()
        .unwrap_or_else(|| panic!("no speech request was dropped: {speech:#?}"));
    assert!(cancelled >= barge_in);
    let cancel_ms = cancelled.duration_since(barge_in).as_secs_f64() * 1e3;
    println!("barge-in → speech request dropped {cancel_ms:.1} ms");
    assert!(
        cancel_ms < 50.0,
        "dropped {cancel_ms:.1} ms after the barge-in"
    );
    assert_eq!(record.hung_up_by.as_deref(), Some("agent"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_model_costs_a_fallback_line_then_goodbye_not_a_hung_call() {
    let fakes = Fakes {
        deepgram: deepgram_hearing("Hello?").await,
        chat: FakeChat::start(vec![Answer::Status(503, "overloaded")]).await,
        voice: FakeElevenLabs::start(vec![voice("Hi, this is Ava.")]).await,
    };
    let server = server(&fakes, PROFILE).await;
    let (report, record) = call(
        &server,
        vec![
            wait_agent(),
            CallerStep::Audio(common::utterance(1)),
            wait_agent(),
            CallerStep::Audio(common::utterance(2)),
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
            "Sorry, I missed that.",
            "Goodbye from Ava."
        ],
        "{record:#?}"
    );
    assert_eq!(report.hung_up_by, HungUpBy::Gateway);
    assert_eq!(record.hung_up_by.as_deref(), Some("agent"));
    // Each failure was retried once before anything was heard: four requests in all.
    assert_eq!(fakes.chat.seen().len(), 4);
    // The call record keeps what went wrong and what the agent did.
    let view: serde_json::Value = reqwest::Client::new()
        .get(format!("{}/v1/calls/{}", server.base, report.call_uuid))
        .bearer_auth(API_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let outcomes: Vec<&str> = view["agent_events"]
        .as_array()
        .unwrap_or_else(|| panic!("{view:#}"))
        .iter()
        .map(|e| e["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["retried", "fallback", "retried", "goodbye"]);
    assert_eq!(view["agent_events"][0]["api"], "chat");
    assert_eq!(
        view["agent_events"][0]["message"],
        "openai: HTTP 503: overloaded"
    );
    let retried = server
        .metric("voxgate_agent_provider_failures_total{api=\"chat\",outcome=\"retried\"}")
        .await;
    assert!(retried >= 2.0, "retried {retried}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_voice_fails_the_fallback_line_is_still_spoken_offline() {
    let fakes = Fakes {
        deepgram: deepgram_hearing("Hello?").await,
        chat: FakeChat::start(vec![Answer::Stream(vec![Piece::Text("Hello there.")])]).await,
        voice: FakeElevenLabs::start(vec![
            voice("Hi, this is Ava."),
            Script::Refuse(
                503,
                serde_json::json!({"detail": {"status": "overloaded", "message": "busy"}}),
            ),
        ])
        .await,
    };
    // The server runs flows; this inbound call asks for the profile on its answer URL.
    let server = server_running(&fakes, PROFILE, "flow").await;
    let (report, record) = call_on(
        &server,
        "/plivo/answer?agent=llm&flow=ava",
        vec![
            wait_agent(),
            CallerStep::Audio(common::utterance(1)),
            wait_agent(),
            CallerStep::Hangup,
        ],
    )
    .await;
    let lines = agent_lines(&record);
    assert_eq!(
        lines,
        ["Hi, this is Ava.", "Sorry, I missed that."],
        "{record:#?}"
    );
    assert_eq!(report.hung_up_by, HungUpBy::Caller, "the call went on");
    // The fallback line is real speech at the phone, not silence: loud audio after the
    // greeting (its 640 ms of fake speech) and the caller's utterance.
    let greeting_and_caller = 8 * 640 + common::utterance(1).len();
    let loud = report.heard[greeting_and_caller.min(report.heard.len())..]
        .iter()
        .filter(|s| s.unsigned_abs() > 500)
        .count();
    assert!(loud > 2_000, "{loud} loud samples after the greeting");
}

/// The model's time to its first token, injected by the chat fake.
const MODEL_DELAY_MS: f64 = 300.0;
/// Speech recognition's time from `Finalize` to its final words, injected by the Deepgram
/// fake.
const STT_DELAY_MS: f64 = 150.0;
/// The voice's time from its text to its first audio, injected by the ElevenLabs fake.
const TTS_DELAY_MS: f64 = 200.0;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_providers_delay_lands_in_its_stage_and_the_gateways_share_stays_small() {
    let fakes = Fakes {
        deepgram: deepgram_hearing_after("Hello.", ms(STT_DELAY_MS)).await,
        chat: FakeChat::start(vec![Answer::Stream(vec![
            Piece::Wait(ms(MODEL_DELAY_MS)),
            Piece::Text("OK."),
        ])])
        .await,
        voice: FakeElevenLabs::start(vec![Script::Speak {
            chunks: vec![FakeChunk {
                text: "OK.",
                ms_per_char: 40,
            }],
            gap: Duration::from_millis(20),
            snake_case: false,
            first_after: ms(TTS_DELAY_MS),
        }])
        .await,
    };
    let server = server(&fakes, PROFILE).await;
    // 20 calls at once, 5 caller turns each: 100 answered turns.
    let word: Vec<i16> = common::utterance(1)[..8_000].to_vec();
    let mut script = vec![wait_agent()];
    for _ in 0..5 {
        script.push(CallerStep::Audio(word.clone()));
        script.push(wait_agent());
    }
    script.push(CallerStep::Hangup);
    let calls: Vec<_> = (0..20)
        .map(|_| {
            let script = script.clone();
            let server = &server;
            async move { call(server, script).await }
        })
        .collect();
    let done = futures_util::future::join_all(calls).await;

    let mut stt_ms = Vec::new();
    let mut model_ms = Vec::new();
    let mut tts_ms = Vec::new();
    let mut gateway_ms = Vec::new();
    for (report, record) in &done {
        assert_eq!(report.gaps.count, 0, "gaps in the agent's audio");
        for turn in record.turns.iter().filter(|t| t.speech_end_ms.is_some()) {
            use voxgate::sim::record::Stage;
            let end_of_turn = turn
                .stage(Stage::EndOfTurn)
                .expect("the end of turn is timed");
            let stt_final = turn
                .stage(Stage::SttFinal)
                .expect("the final words are timed");
            let decided = turn
                .stage(Stage::Decided)
                .expect("the first token is timed");
            let first_audio = turn
                .stage(Stage::FirstTtsAudio)
                .expect("the first audio is timed");
            // `Finalize` goes out at the end of turn; the model is asked on its reply; the
            // voice gets the first clause with the first token.
            stt_ms.push(stt_final - end_of_turn);
            model_ms.push(decided - stt_final.max(end_of_turn));
            tts_ms.push(first_audio - decided);
            gateway_ms.push(
                turn.stage(Stage::Gateway)
                    .expect("the gateway share is timed"),
            );
        }
    }
    assert!(model_ms.len() >= 100, "{} answered turns", model_ms.len());
    let p = |v: &[f64], q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    for v in [&mut stt_ms, &mut model_ms, &mut tts_ms, &mut gateway_ms] {
        v.sort_by(f64::total_cmp);
    }
    let stages = [
        ("speech recognition", &stt_ms, STT_DELAY_MS),
        ("model", &model_ms, MODEL_DELAY_MS),
        ("voice", &tts_ms, TTS_DELAY_MS),
    ];
    for (name, v, injected) in stages {
        println!(
            "{} turns: {name} stage p50 {:.1} / p99 {:.1} / max {:.1} ms (injected {injected})",
            v.len(),
            p(v, 0.5),
            p(v, 0.99),
            v[v.len() - 1],
        );
    }
    println!(
        "gateway share p50 {:.1} / p99 {:.1} / max {:.1} ms",
        p(&gateway_ms, 0.5),
        p(&gateway_ms, 0.99),
        gateway_ms[gateway_ms.len() - 1]
    );
    // Twenty calls, their fakes and their callers share this test's two threads: the
    // middle of the spread is the stage, the tail is the box's scheduling.
    for (name, v, injected) in stages {
        let median = p(v, 0.5);
        assert!(
            (median - injected).abs() <= 20.0,
            "the {name} stage was {median:.1} ms (median) for an injected {injected} ms"
        );
    }
    assert!(
        p(&gateway_ms, 0.99) <= 10.0,
        "gateway share p99 {:.1} ms",
        p(&gateway_ms, 0.99)
    );
}

fn ms(ms: f64) -> Duration {
    Duration::from_secs_f64(ms / 1e3)
}

/// A loopback HTTP tool: answers `{"free":true}` after 400 ms, keeping what it was sent.
async fn tool_server() -> (String, ToolSeen) {
    tool_server_after(Duration::from_millis(400)).await
}

type ToolSeen = std::sync::Arc<std::sync::Mutex<Vec<(String, serde_json::Value)>>>;

/// The same tool, answering after `delay`.
async fn tool_server_after(delay: Duration) -> (String, ToolSeen) {
    use axum::routing::post;
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let kept = std::sync::Arc::clone(&seen);
    let app = axum::Router::new().route(
        "/availability",
        post(
            move |headers: axum::http::HeaderMap, body: axum::Json<serde_json::Value>| {
                let kept = std::sync::Arc::clone(&kept);
                async move {
                    let key = headers
                        .get("x-tool-key")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned();
                    kept.lock().unwrap().push((key, body.0));
                    tokio::time::sleep(delay).await;
                    axum::Json(serde_json::json!({"free": true}))
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/availability"), seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_tool_gets_the_models_arguments_and_its_answer_goes_back_to_the_model() {
    let (url, tool_seen) = tool_server().await;
    let profile = format!(
        r#"{PROFILE}
[[tools]]
name = "check_availability"
description = "Whether a technician is free"
url = "{url}"
headers = {{ "X-Tool-Key" = "tool-secret-1" }}
timeout_ms = 3000
filler = "Let me check that for you."
parameters = {{ type = "object", properties = {{ city = {{ type = "string" }}, time = {{ type = "string" }} }}, required = ["city", "time"] }}
"#
    );
    let fakes = Fakes {
        deepgram: deepgram_hearing("Is ten tomorrow free in Tokyo?").await,
        chat: FakeChat::start(vec![
            Answer::Stream(vec![Piece::Tool {
                id: "call_t",
                name: "check_availability",
                arguments: r#"{"city":"Tokyo","time":"10:00"}"#.into(),
            }]),
            Answer::Stream(vec![
                Piece::Text("Yes, ten is free. Goodbye."),
                Piece::Tool {
                    id: "call_e",
                    name: "end_call",
                    arguments: "{}".into(),
                },
            ]),
        ])
        .await,
        voice: FakeElevenLabs::start(vec![voice("Hi, this is Ava.")]).await,
    };
    let server = server(&fakes, &profile).await;
    let (_report, record) = call(
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
    let sent = tool_seen.lock().unwrap().clone();
    assert_eq!(
        sent,
        [(
            "tool-secret-1".to_owned(),
            serde_json::json!({"city": "Tokyo", "time": "10:00"})
        )]
    );
    let seen = fakes.chat.seen();
    assert_eq!(seen.len(), 2, "{seen:#?}");
    let messages = seen[1].body["messages"].as_array().unwrap();
    let call = &messages[messages.len() - 2];
    assert_eq!(call["role"], "assistant");
    assert_eq!(
        call["tool_calls"][0]["function"]["name"],
        "check_availability"
    );
    let result = &messages[messages.len() - 1];
    assert_eq!(result["role"], "tool");
    assert_eq!(result["tool_call_id"], "call_t");
    assert_eq!(result["content"], r#"{"free":true}"#);
    assert_eq!(
        agent_lines(&record),
        [
            "Hi, this is Ava.",
            "Let me check that for you. Yes, ten is free. Goodbye."
        ],
        "{record:#?}"
    );
    assert_eq!(record.hung_up_by.as_deref(), Some("agent"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dying_speech_recognizer_is_reopened_then_the_agent_says_goodbye() {
    let fakes = Fakes {
        // Every socket closes with Deepgram's "no audio" error after 2 s of audio.
        deepgram: FakeDeepgram::start(
            LiveScript {
                steps: vec![
                    fake_deepgram::Step::AfterFrames(100),
                    fake_deepgram::Step::Close(1011, "NET-0001 no audio received"),
                ],
                ..LiveScript::default()
            },
            Vec::new(),
        )
        .await,
        chat: FakeChat::start(vec![Answer::Stream(vec![Piece::Text("Unused.")])]).await,
        voice: FakeElevenLabs::start(vec![voice("Hi, this is Ava.")]).await,
    };
    let server = server(&fakes, PROFILE).await;
    let (report, record) = call(
        &server,
        vec![
            wait_agent(),
            CallerStep::WaitHangup {
                timeout: Duration::from_secs(20),
            },
        ],
    )
    .await;
    assert_eq!(
        agent_lines(&record),
        [
            "Hi, this is Ava.",
            "Sorry, I missed that.",
            "Goodbye from Ava."
        ],
        "{record:#?}"
    );
    assert_eq!(report.hung_up_by, HungUpBy::Gateway);
    assert!(
        fakes.deepgram.socket(1).is_some(),
        "the STT was not reopened"
    );
    assert!(
        fakes.chat.seen().is_empty(),
        "nothing was heard, nothing was asked"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_that_stalls_mid_answer_costs_a_fallback_line_and_the_call_goes_on() {
    let fakes = Fakes {
        deepgram: deepgram_hearing("What do you offer?").await,
        chat: FakeChat::start(vec![Answer::Stream(vec![
            Piece::Text("Let me see. "),
            Piece::Stall,
        ])])
        .await,
        voice: FakeElevenLabs::start(vec![voice("Hi, this is Ava.")]).await,
    };
    let timeouts = "[openai.timeouts]\nidle_ms = 700\n";
    let server = server_with(&fakes, PROFILE, "llm", Some(timeouts)).await;
    let (report, record) = call(
        &server,
        vec![
            wait_agent(),
            CallerStep::Audio(common::utterance(1)),
            CallerStep::UntilAgentSilent {
                timeout: Duration::from_secs(10),
            },
            wait_agent(),
            CallerStep::Hangup,
        ],
    )
    .await;
    let lines = agent_lines(&record);
    assert_eq!(
        lines,
        ["Hi, this is Ava.", "Let me see.", "Sorry, I missed that."],
        "{record:#?}"
    );
    assert_eq!(report.hung_up_by, HungUpBy::Caller, "the call went on");
    // Something was already heard, so the stalled answer was not retried.
    assert_eq!(fakes.chat.seen().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_barge_in_while_a_tool_runs_answers_its_call_so_the_model_can_go_on() {
    let (url, _) = tool_server_after(Duration::from_secs(5)).await;
    let profile = format!(
        r#"{PROFILE}
[[tools]]
name = "check_availability"
description = "Whether a technician is free"
url = "{url}"
timeout_ms = 10000
"#
    );
    const HOLD: &str = "One moment please while I check the schedule for you.";
    let fakes = Fakes {
        deepgram: deepgram_hearing("Is ten free?").await,
        chat: FakeChat::start(vec![
            // Words, then a slow tool call in the same round.
            Answer::Stream(vec![
                Piece::Text(HOLD),
                Piece::Tool {
                    id: "call_slow",
                    name: "check_availability",
                    arguments: "{}".into(),
                },
            ]),
            Answer::Stream(vec![
                Piece::Text("Okay, goodbye."),
                Piece::Tool {
                    id: "call_end",
                    name: "end_call",
                    arguments: "{}".into(),
                },
            ]),
        ])
        .await,
        voice: FakeElevenLabs::start(vec![
            voice("Hi, this is Ava."),
            voice(HOLD),
            voice("Okay, goodbye."),
        ])
        .await,
    };
    let server = server(&fakes, &profile).await;
    let (_report, record) = call(
        &server,
        vec![
            wait_agent(),
            CallerStep::Audio(common::utterance(1)),
            CallerStep::UntilAgentHeard {
                then: Duration::from_millis(500),
            },
            CallerStep::Audio(common::utterance(2)),
            CallerStep::WaitHangup {
                timeout: Duration::from_secs(20),
            },
        ],
    )
    .await;
    let seen = fakes.chat.seen();
    assert_eq!(seen.len(), 2, "{seen:#?}");
    let messages = seen[1].body["messages"].as_array().unwrap();
    let roles: Vec<&str> = messages
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(
        roles,
        ["system", "assistant", "user", "assistant", "tool", "user"],
        "{messages:#?}"
    );
    // The words before the tool were spoken before it ran, and cut where the caller cut in.
    let said = messages[3]["content"].as_str().unwrap();
    assert!(
        !said.is_empty() && said.len() < HOLD.len() && HOLD.starts_with(said),
        "{said:?}"
    );
    assert_eq!(messages[3]["tool_calls"][0]["id"], "call_slow");
    // The unfinished call has its result: the model's API refuses a call without one.
    assert_eq!(messages[4]["tool_call_id"], "call_slow");
    assert_eq!(messages[4]["content"], "Not run: the caller interrupted.");
    assert_eq!(record.hung_up_by.as_deref(), Some("agent"));
}
