//! Provider API keys never reach a log line, a metric, an error or a `/v1` response — even
//! when the provider quotes the key back, as some proxies and self-hosted servers do.
//!
//! The real binary (`voxgate serve`, debug logging) runs an LLM agent profile whose three
//! providers are loopback fakes that refuse with an error quoting the key they were sent.
//! A simulated call meets every refusal (the voice, the speech recognizer), hears the
//! fallback line and the goodbye; then the whole log, `/metrics` and the call's record are
//! searched for each key and for any 8 characters of its start.

mod common;

#[path = "common/fake_deepgram.rs"]
mod fake_deepgram;
#[path = "common/fake_elevenlabs.rs"]
mod fake_elevenlabs;
#[path = "common/fake_openai_chat.rs"]
mod fake_openai_chat;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fake_deepgram::{FakeDeepgram, LiveScript};
use fake_elevenlabs::{FakeElevenLabs, Script};
use fake_openai_chat::{Answer, FakeChat};
use voxgate::sim::{CallerStep, SimConfig, run_call};

const OPENAI_KEY: &str = "sk-keytest-openai-71c3e5a9";
const DEEPGRAM_KEY: &str = "dgkeytest-deepgram-4b8f20d6";
const ELEVENLABS_KEY: &str = "elkeytest-eleven-93aa17c4";
const API_TOKEN: &str = "keys-api-token";

struct Served(Child);

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `text` holds `key` or 8 characters of its start.
fn leaks(text: &str, key: &str) -> bool {
    text.contains(key) || text.contains(&key[..8])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_stay_out_of_logs_metrics_errors_and_the_api_even_when_providers_quote_them() {
    let quoted = |key: &str| format!("Invalid API key: {key}");
    let deepgram = FakeDeepgram::start(
        LiveScript {
            refuse: Some((
                401,
                serde_json::json!({"err_code": "INVALID_AUTH", "err_msg": quoted(DEEPGRAM_KEY)}),
                None,
            )),
            ..LiveScript::default()
        },
        Vec::new(),
    )
    .await;
    let voice = FakeElevenLabs::start(vec![Script::Refuse(
        401,
        serde_json::json!({"detail": {"status": "invalid_api_key", "message": quoted(ELEVENLABS_KEY)}}),
    )])
    .await;
    let chat = FakeChat::start(vec![Answer::Status(
        401,
        "Incorrect API key provided: sk-keytest-openai-71c3e5a9",
    )])
    .await;

    let dir = common::scratch_dir("provider-keys");
    let profiles = dir.join("agents");
    std::fs::create_dir_all(&profiles).unwrap();
    std::fs::write(
        profiles.join("ava.toml"),
        "system_prompt = 'You are Ava.'\nfirst_message = 'Hi, this is Ava.'\nmax_failures = 2\n",
    )
    .unwrap();
    let log_path = dir.join("voxgate.log");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let _served = Served(
        Command::new(env!("CARGO_BIN_EXE_voxgate"))
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .arg("--data-dir")
            .arg(&dir)
            .arg("--no-verify-signatures")
            .env_remove("PLIVO_AUTH_TOKEN")
            .env("RUST_LOG", "debug")
            .env("NO_COLOR", "1")
            .env("VOXGATE_AGENT", "llm")
            .env("VOXGATE_AGENT_PROFILES_DIR", &profiles)
            .env("VOXGATE_API_TOKENS", API_TOKEN)
            .env("OPENAI_API_KEY", OPENAI_KEY)
            .env("OPENAI_BASE_URL", &chat.base_url)
            .env("DEEPGRAM_API_KEY", DEEPGRAM_KEY)
            .env("VOXGATE_DEEPGRAM_BASE_URL", &deepgram.base_url)
            .env("ELEVENLABS_API_KEY", ELEVENLABS_KEY)
            .env("VOXGATE_ELEVENLABS_BASE_URL", &voice.base_url)
            .stdout(std::fs::File::create(&log_path).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let client = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while client.get(format!("{base}/health")).send().await.is_err() {
        assert!(tokio::time::Instant::now() < deadline, "server started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let mut config = SimConfig::new(
        &base,
        vec![CallerStep::WaitHangup {
            timeout: Duration::from_secs(20),
        }],
    );
    config.timeouts.max_call = Duration::from_secs(40);
    let report = run_call(config).await.expect("the call runs");

    // Every provider was reached with its key (so each had the chance to quote it back).
    assert!(
        deepgram.socket(0).is_some() || !voice.seen().is_empty(),
        "no provider was reached"
    );
    let log = std::fs::read_to_string(&log_path).unwrap();
    // The providers did quote their keys: the log shows where, redacted.
    for provider in ["deepgram", "elevenlabs"] {
        assert!(
            log.contains(&format!("error={provider}: HTTP 401: Invalid API key: ***")),
            "{provider}'s refusal was not logged redacted:\n{log}"
        );
    }
    let metrics = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let record = client
        .get(format!("{base}/v1/calls/{}", report.call_uuid))
        .bearer_auth(API_TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        record.contains("agent_events"),
        "the failures are on the record: {record}"
    );
    for key in [OPENAI_KEY, DEEPGRAM_KEY, ELEVENLABS_KEY] {
        assert!(!leaks(&log, key), "{key} in the log");
        assert!(!leaks(&metrics, key), "{key} in /metrics");
        assert!(!leaks(&record, key), "{key} in /v1/calls: {record}");
    }
}
