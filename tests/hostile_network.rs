//! A hostile or careless peer, over real sockets against the real server: each case is a
//! way a real call or a real attacker could hurt a production gateway (issue #11).

mod common;

use std::time::Duration;

use common::{RawCall, TestServer, fixture};

const SILENCE: [u8; 160] = [0xFF; 160];

/// Plays utterance 1 and a second of silence on `call`, sending `stray` (chunk number,
/// timestamp) right after the tenth frame, and returns the echo the caller hears.
async fn echo_with_strays(base: &str, call_id: &str, strays: &[u64]) -> Vec<u8> {
    let mut call = RawCall::open(base, call_id).await;
    call.start().await;
    let mut audio = fixture("utterance_1.ulaw");
    audio.extend([0xFF; 8_000]);
    for (i, frame) in audio.chunks_exact(160).enumerate() {
        let chunk = i as u64 + 1;
        call.media(chunk, frame).await;
        if chunk == 10 {
            for &stray in strays {
                call.media_at(stray, (chunk - 1) * 20, &SILENCE).await;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    call.collect_audio(Duration::from_millis(800), Duration::from_secs(15))
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_stray_chunk_number_does_not_deafen_the_call() {
    let server = TestServer::start(&[]).await;
    let clean = echo_with_strays(&server.base, "clean-call", &[]).await;
    assert!(
        clean.len() >= 100 * 160,
        "a clean call echoes: {}",
        clean.len()
    );
    for (call_id, strays) in [
        ("ahead-1000", vec![10 + 1_000]),
        ("ahead-2-53", vec![10 + (1 << 53)]),
        ("u64-max", vec![u64::MAX, u64::MAX]),
        ("reset-to-1", vec![1, 2, 3]),
    ] {
        let echo = echo_with_strays(&server.base, call_id, &strays).await;
        let missing = clean.len().saturating_sub(echo.len()) / 160;
        assert!(
            missing <= 4,
            "{call_id}: the echo lost {missing} frames ({} bytes against {} clean)",
            echo.len(),
            clean.len()
        );
    }
    let resyncs = server
        .metric(r#"voxgate_chunks_out_of_order_total{outcome="resync"}"#)
        .await;
    assert!(resyncs >= 4.0, "jumps are counted as resyncs: {resyncs}");
}
