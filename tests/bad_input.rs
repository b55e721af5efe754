//! Every kind of bad input on the media socket gets its documented response — the message
//! is dropped and counted by kind, the stream goes on — while another call on the same
//! server carries on unaffected.

mod common;

use std::time::Duration;

use common::{RawCall, TestServer, fixture};
use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message;

const SILENCE: [u8; 160] = [0xFF; 160];

async fn bad_count(server: &TestServer, kind: &str) -> f64 {
    server
        .metric(&format!(r#"voxgate_bad_messages_total{{kind="{kind}"}}"#))
        .await
}

/// Sends `send`, then a valid frame, and checks the `kind` counter went up and the socket
/// still takes messages.
async fn check(server: &TestServer, call: &mut RawCall, kind: &str, send: Message) {
    let before = bad_count(server, kind).await;
    call.ws.send(send).await.unwrap();
    call.media(1_000, &SILENCE).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while bad_count(server, kind).await < before + 1.0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{kind} was not counted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_dropped_and_counted_while_other_calls_carry_on() {
    let server = TestServer::start(&[]).await;

    // The well-behaved call: an utterance in real time, then silence; its echo must come back whole.
    let good = tokio::spawn({
        let base = server.base.clone();
        async move {
            let mut call = RawCall::open(&base, "good-call").await;
            call.start().await;
            let mut audio = fixture("utterance_1.ulaw");
            audio.extend([0xFF; 8_000]); // 1 s of silence: the VAD's hangover passes
            call.stream(1, &audio, Duration::from_millis(20)).await;
            call.collect_audio(Duration::from_millis(800), Duration::from_secs(15))
                .await
        }
    });

    let mut bad = RawCall::open(&server.base, "bad-call").await;
    check(&server, &mut bad, "media_before_start", Message::Text(
        r#"{"event":"media","streamId":"x","media":{"timestamp":"0","chunk":1,"payload":"//8="}}"#.into(),
    ))
    .await;
    bad.start().await;
    let cases: Vec<(&str, Message)> = vec![
        ("malformed_json", Message::Text("{not json".into())),
        ("missing_or_invalid_field", Message::Text(r#"{"event":"media","streamId":"stream-bad-call"}"#.into())),
        ("binary_frame", Message::Binary(vec![1u8, 2, 3].into())),
        ("duplicate_start", Message::Text(
            r#"{"event":"start","start":{"callId":"x","streamId":"other","mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000}}}"#.into(),
        )),
        ("unknown_event", Message::Text(r#"{"event":"muteStream","streamId":"stream-bad-call"}"#.into())),
        ("bad_base64", Message::Text(
            r#"{"event":"media","streamId":"stream-bad-call","media":{"timestamp":"20","chunk":2,"payload":"!!!"}}"#.into(),
        )),
        ("wrong_stream_id", Message::Text(
            r#"{"event":"media","streamId":"not-this-one","media":{"timestamp":"20","chunk":2,"payload":"//8="}}"#.into(),
        )),
        ("too_large", Message::Text(format!(r#"{{"event":"media","pad":"{}"}}"#, "x".repeat(70_000)).into())),
    ];
    for (kind, message) in cases {
        check(&server, &mut bad, kind, message).await;
    }

    // Odd-length L16 on a call whose stream is L16.
    let mut l16 = RawCall::open(&server.base, "l16-call").await;
    l16.text(r#"{"event":"start","start":{"callId":"l","streamId":"s-l16","mediaFormat":{"encoding":"audio/x-l16","sampleRate":8000}}}"#).await;
    check(&server, &mut l16, "partial_sample", Message::Text(
        r#"{"event":"media","streamId":"s-l16","media":{"timestamp":"0","chunk":1,"payload":"AQID"}}"#.into(),
    ))
    .await;

    // Duplicate and out-of-order chunks: reordered within the window, a duplicate dropped,
    // a number far from the stream's (2000 after 1000, 1990 after 2003) followed as a
    // new base.
    let outcome = |outcome: &'static str| {
        let server = &server;
        async move {
            server
                .metric(&format!(
                    r#"voxgate_chunks_out_of_order_total{{outcome="{outcome}"}}"#
                ))
                .await
        }
    };
    let before = [
        outcome("late").await,
        outcome("reordered").await,
        outcome("resync").await,
    ];
    for chunk in [2000, 2002, 2001, 2001, 2003, 1990] {
        bad.media(chunk, &SILENCE).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = [
        outcome("late").await,
        outcome("reordered").await,
        outcome("resync").await,
    ];
    let counted: Vec<f64> = after.iter().zip(before).map(|(a, b)| a - b).collect();
    assert_eq!(counted, [1.0, 1.0, 2.0], "late, reordered, resync");

    // A client that disconnects mid-utterance: its stream ends, nothing else does.
    let mut quitter = RawCall::open(&server.base, "quitter").await;
    quitter.start().await;
    quitter
        .stream(1, &fixture("utterance_2.ulaw")[..8_000], Duration::ZERO)
        .await;
    drop(quitter);

    let echoed = good.await.unwrap();
    let utterance = fixture("utterance_1.ulaw");
    let speech = common::speech_span(&utterance);
    assert!(
        echoed.len() >= speech.len() && echoed.len() <= speech.len() + 3_200,
        "the good call's echo came back whole: {} bytes for {} of speech",
        echoed.len(),
        speech.len()
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while server
        .journal("quitter")
        .and_then(|j| j.find(|e| matches!(e, voxgate::session::journal::Event::StreamEnded { .. })))
        .is_none()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the quitter's stream did not end"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        server
            .journal("bad-call")
            .unwrap()
            .find(|e| matches!(e, voxgate::session::journal::Event::StreamEnded { .. }))
            .is_none(),
        "bad input never ends a stream"
    );
}
