//! Whole calls against a real server on loopback, driven by the Plivo-faithful simulator:
//! the echo comes back as said, barge-in silences the phone at once, signatures are
//! enforced on every route, and 50 concurrent calls play without a gap.

mod common;

use std::time::Duration;

use common::{TestServer, barge_in_script, correlation, utterance};
use voxgate::session::journal::Event;
use voxgate::sim::{
    CallReport, CallerStep, EventKind, LoadConfig, SimConfig, SimError, run_call, run_load,
};
use voxgate::telephony::plivo::signature::{Method, sign_v3_headers};

const TOKEN: &str = "integration-token";

/// The best correlation of `said` anywhere in `heard`, and where.
fn best_match(said: &[i16], heard: &[i16]) -> (f64, usize) {
    (0..heard.len().saturating_sub(said.len()))
        .step_by(1)
        .map(|lag| (correlation(said, heard, lag), lag))
        .fold((f64::MIN, 0), |best, x| if x.0 > best.0 { x } else { best })
}

fn speech(samples: &[i16]) -> &[i16] {
    let loud = |s: &i16| s.unsigned_abs() > 100;
    let first = samples.iter().position(loud).unwrap();
    let last = samples.iter().rposition(loud).unwrap();
    &samples[first..=last]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_round_trip_plays_back_what_the_caller_said() {
    let server = TestServer::start(&[]).await;
    let said = utterance(1);
    let script = vec![
        CallerStep::Audio(said.clone()),
        CallerStep::UntilAgentSilent {
            timeout: Duration::from_secs(10),
        },
    ];
    let report = run_call(SimConfig::new(&server.base, script))
        .await
        .unwrap();

    assert_eq!(
        report.counts.protocol_errors, 0,
        "{:?}",
        report.protocol_errors
    );
    assert_eq!(report.gaps.count, 0);
    let turn = &report.turns[0];
    let latency = turn.response_latency_ms.expect("the agent answered");
    assert!(
        latency < 1_000.0,
        "echo started {latency} ms after the caller stopped"
    );

    // What the caller heard after they stopped speaking is what they said (after µ-law).
    let speech_end = (turn.speech_end_ms.unwrap() * 8.0) as usize;
    let (score, lag) = best_match(speech(&said), &report.heard[speech_end..]);
    assert!(
        score >= 0.9,
        "normalized correlation {score:.3} at lag {lag}"
    );
    eprintln!("echo: correlation {score:.4}, first audio {latency:.0} ms after speech end");
    // And the agent's turn was confirmed heard through playedStream.
    assert!(
        report
            .timeline
            .iter()
            .any(|e| matches!(&e.kind, EventKind::CheckpointPlayed { .. }))
    );
    let journal = server.journal(&report.call_uuid).unwrap();
    assert!(
        journal
            .find(|e| *e
                == Event::TurnHeard {
                    turn: 1,
                    by: "played"
                })
            .is_some()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn barge_in_silences_the_phone_within_40_ms_of_the_servers_speech_start() {
    let server = TestServer::start(&[]).await;
    let report: CallReport = run_call(SimConfig::new(&server.base, barge_in_script()))
        .await
        .unwrap();
    let barge = report
        .turns
        .iter()
        .find(|t| t.barge_in)
        .expect("the second utterance barged in");
    assert!(barge.barge_in_to_clear_ms.is_some());

    // Barge-in waits for min_speech_ms (250 ms by default) of the caller's speech by the
    // server's VAD, so a cough never cuts the agent; from that moment (media clock, which
    // is the simulator's clock) the phone must be silent within 40 ms.
    let (cleared_ms, silent_after) = server.clear_after_min_speech(&report);
    assert!(
        (-20.0..=40.0).contains(&silent_after),
        "phone silent {silent_after:.0} ms after the server's VAD heard 250 ms of speech"
    );
    eprintln!(
        "barge-in: phone silent {silent_after:.0} ms after the server's VAD heard 250 ms of speech"
    );
    // Nothing of the cut turn played after the clear.
    let after = (cleared_ms * 8.0) as usize + 160;
    let before_next = report
        .agent_turns
        .iter()
        .find(|t| t.start_ms > cleared_ms)
        .map_or(report.heard.len(), |t| (t.start_ms * 8.0) as usize);
    assert!(
        report.heard[after.min(before_next)..before_next]
            .iter()
            .all(|&s| s == 0),
        "silence after the clear"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signatures_are_checked_on_the_answer_url_callbacks_and_the_upgrade() {
    let server = TestServer::start(&[("PLIVO_AUTH_TOKEN", TOKEN)]).await;
    let script = || vec![CallerStep::Audio(utterance(3)[..4_000].to_vec())];

    // Valid: the whole call, callbacks included, goes through.
    let mut valid = SimConfig::new(&server.base, script());
    valid.auth_token = Some(TOKEN.into());
    let report = run_call(valid).await.unwrap();
    assert!(
        report.callbacks.iter().all(|c| c.status == Some(200)),
        "{:?}",
        report.callbacks
    );

    // Invalid and missing: refused at the answer URL.
    for token in [Some("not-the-token".to_owned()), None] {
        let mut config = SimConfig::new(&server.base, script());
        config.auth_token = token.clone();
        match run_call(config).await {
            Err(SimError::AnswerStatus { status: 403, .. }) => {}
            other => panic!("{token:?}: expected 403, got {other:?}"),
        }
    }

    // A callback: valid, invalid, missing.
    let url = format!("{}/plivo/hangup", server.base);
    let form: Vec<(String, String)> = vec![
        ("CallUUID".into(), "cb-1".into()),
        ("HangupCause".into(), "NORMAL_CLEARING".into()),
    ];
    let send = |headers: Vec<(&'static str, String)>| {
        let mut request = reqwest::Client::new().post(&url).form(&form);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        request.send()
    };
    assert_eq!(
        send(sign_v3_headers(TOKEN, Method::Post, &url, &form).to_vec())
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        send(sign_v3_headers("wrong", Method::Post, &url, &form).to_vec())
            .await
            .unwrap()
            .status(),
        403
    );
    assert_eq!(send(vec![]).await.unwrap().status(), 403);

    // The WebSocket upgrade: signed over its http:// form; wss://-form or no signature fail.
    let ws_url = format!(
        "{}/plivo/stream?call_id=upgrade-1",
        server.base.replace("http://", "ws://")
    );
    let http_form = ws_url.replace("ws://", "http://");
    let upgrade = |headers: Vec<(&'static str, String)>| {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut request = ws_url.as_str().into_client_request().unwrap();
        for (name, value) in headers {
            request.headers_mut().insert(name, value.parse().unwrap());
        }
        tokio_tungstenite::connect_async(request)
    };
    let (mut ws, _) = upgrade(sign_v3_headers(TOKEN, Method::Get, &http_form, &[]).to_vec())
        .await
        .expect("signed upgrade");
    ws.close(None).await.unwrap();
    for headers in [
        sign_v3_headers(TOKEN, Method::Get, &ws_url, &[]).to_vec(),
        vec![],
    ] {
        let error = upgrade(headers)
            .await
            .expect_err("unsigned upgrade refused");
        assert!(error.to_string().contains("403"), "{error}");
    }
    assert!(
        server
            .metric(r#"voxgate_signature_failures_total{route="stream",kind="invalid"}"#)
            .await
            >= 1.0
    );
    assert!(
        server
            .metric(r#"voxgate_signature_failures_total{route="stream",kind="missing"}"#)
            .await
            >= 1.0
    );
    assert!(
        server
            .metric(r#"voxgate_signature_failures_total{route="answer",kind="missing"}"#)
            .await
            >= 1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_calls_play_without_a_gap() {
    let server = TestServer::start(&[]).await;
    let script = vec![
        CallerStep::Audio(utterance(2)),
        CallerStep::UntilAgentSilent {
            timeout: Duration::from_secs(15),
        },
    ];
    let load = LoadConfig::new(SimConfig::new(&server.base, script), 50)
        .unwrap()
        .with_ramp(Duration::from_millis(500));
    let report = run_load(load).await;
    assert_eq!(report.ok, 50, "{:?}", report.failure_examples);
    assert_eq!(report.answered_turns, 50);
    assert_eq!(report.gaps, 0, "{} ms of gaps", report.gap_ms);
    assert_eq!(
        report.protocol_errors, 0,
        "{:?}",
        report.protocol_error_kinds
    );
    assert_eq!(
        server
            .metric("voxgate_frames_dropped_total{stage=\"pipeline_in\"}")
            .await,
        0.0
    );
    eprintln!("50 calls: {report}");
}
