//! The command line: flags to settings, scripts from files, and a whole `simulate` / `load`.

use clap::Parser;

use super::*;
use crate::sim::cli::{LoadArgs, SimulateArgs, load, simulate};

#[derive(Parser)]
struct Simulate {
    #[command(flatten)]
    args: SimulateArgs,
}

#[derive(Parser)]
struct Load {
    #[command(flatten)]
    args: LoadArgs,
}

fn fixture(name: &str) -> String {
    format!("{}/fixtures/audio/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn flags_become_a_script_and_settings() {
    let parsed = Simulate::try_parse_from([
        "simulate",
        "--server",
        "http://127.0.0.1:9999",
        "--audio",
        &fixture("utterance_1_8k.wav"),
        "--audio",
        &fixture("utterance_2.ulaw"),
        "--pause-ms",
        "500",
        "--speed",
        "20",
        "--dtmf",
        "12#",
        "--get",
        "--json",
        "--auth-token",
        "t0k3n",
    ])
    .unwrap()
    .args;
    assert!(parsed.json);
    let cfg = parsed.call.config().unwrap();
    assert_eq!(cfg.server, "http://127.0.0.1:9999");
    assert_eq!(cfg.speed, 20.0);
    assert_eq!(cfg.answer_method, AnswerMethod::Get);
    assert_eq!(cfg.auth_token.as_deref(), Some("t0k3n"));
    let kinds: Vec<&str> = cfg.script.iter().map(CallerStep::kind).collect();
    assert_eq!(
        kinds,
        ["audio", "silence", "audio", "dtmf", "until_agent_silent"]
    );
    assert_eq!(
        cfg.script[1],
        CallerStep::Silence(Duration::from_millis(500))
    );
}

#[test]
fn bad_flags_are_refused_with_the_reason() {
    let parse = |args: &[&str]| {
        let mut all = vec!["simulate"];
        all.extend_from_slice(args);
        Simulate::try_parse_from(all).unwrap().args.call.config()
    };
    let wide = fixture("utterance_1_16k.wav");
    let err = parse(&["--audio", &wide]).unwrap_err().to_string();
    assert!(err.contains("16000 Hz"), "{err}");
    assert!(parse(&[]).is_err(), "no audio and no DTMF");
    assert!(parse(&["--dtmf", "9", "--speed", "0"]).is_err());
    assert!(parse(&["--dtmf", "x"]).is_err());
}

#[tokio::test]
async fn simulate_and_load_run_from_flags() {
    let fake = Fake::start(FakeConfig {
        actions: vec![
            (170, Action::Play(tone(200, 500.0))),
            (170, Action::Checkpoint("reply")),
        ],
        ..FakeConfig::default()
    })
    .await;
    let out = std::env::temp_dir().join(format!("voxgate-sim-cli-{}.wav", fake.addr.port()));
    let server = fake.base();
    let audio = fixture("utterance_1_8k.wav");
    let out_str = out.to_str().unwrap();
    let flags = [
        "--server", &server, "--audio", &audio, "--speed", "20", "--out", out_str,
    ];
    let args = Simulate::try_parse_from(std::iter::once("simulate").chain(flags))
        .unwrap()
        .args;
    simulate(args).await.unwrap();
    let heard = load_wav(&out).unwrap();
    std::fs::remove_file(&out).unwrap();
    assert!(
        heard.iter().any(|s| s.unsigned_abs() > 1000),
        "the reply was heard"
    );

    let flags = [
        "--server", &server, "--audio", &audio, "--speed", "20", "--calls", "2", "--json",
    ];
    let args = Load::try_parse_from(std::iter::once("load").chain(flags))
        .unwrap()
        .args;
    load(args).await.unwrap();
    assert_eq!(fake.seen().answers.len(), 3);
}

#[test]
fn a_script_file_replaces_audio_and_dtmf() {
    let demo = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/sim/demo.toml");
    let parse = |args: &[&str]| {
        let mut all = vec!["simulate"];
        all.extend_from_slice(args);
        Simulate::try_parse_from(all).map(|s| s.args)
    };
    let args = parse(&["--script", demo, "--api-token", "tok"]).unwrap();
    assert!(args.call.api_token().is_some());
    let kinds: Vec<&str> = args
        .call
        .config()
        .unwrap()
        .script
        .iter()
        .map(CallerStep::kind)
        .collect();
    assert_eq!(
        kinds,
        ["wait_agent", "dtmf", "wait_agent", "audio", "wait_hangup"]
    );
    assert!(parse(&["--script", demo, "--dtmf", "1"]).is_err());
    assert!(parse(&["--script", demo, "--audio", "x.wav"]).is_err());
    let missing = parse(&["--script", "/nonexistent/s.toml"]).unwrap();
    let err = format!("{:#}", missing.call.config().unwrap_err());
    assert!(err.contains("/nonexistent/s.toml"), "{err}");
}

#[tokio::test]
async fn plivo_rest_needs_a_token_and_a_loopback_address() {
    let parse = |args: &[&str]| {
        let mut all = vec!["simulate", "--dtmf", "1"];
        all.extend_from_slice(args);
        Simulate::try_parse_from(all).unwrap().args.call
    };
    let call = parse(&["--plivo-rest", "127.0.0.1:0"]);
    let mut cfg = call.config().unwrap();
    let err = call.start_plivo_rest(&mut cfg).await.unwrap_err();
    assert!(err.to_string().contains("--auth-token"), "{err}");
    let call = parse(&["--plivo-rest", "10.0.0.1:8089", "--auth-token", "t"]);
    let mut cfg = call.config().unwrap();
    assert!(call.start_plivo_rest(&mut cfg).await.is_err());
    let call = parse(&["--plivo-rest", "127.0.0.1:0", "--auth-token", "t"]);
    let mut cfg = call.config().unwrap();
    let emulator = call.start_plivo_rest(&mut cfg).await.unwrap();
    assert!(emulator.is_some() && cfg.plivo_rest.is_some());
}
