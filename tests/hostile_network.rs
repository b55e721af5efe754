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

/// Open file descriptors of this process (server and test clients alike).
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |dir| dir.count())
}

/// True once the server has closed `stream` (a read sees end of file or a reset).
async fn closed_by_server(stream: &mut tokio::net::TcpStream) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 512];
    loop {
        match tokio::time::timeout(Duration::from_millis(10), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue, // a 408 or the like before the close
            Err(_) => return false,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_partial_and_idle_connections_are_closed_and_calls_go_on() {
    use tokio::io::AsyncWriteExt;
    let server = TestServer::start(&[
        ("VOXGATE_HTTP_HEADER_TIMEOUT_MS", "1000"),
        ("VOXGATE_HTTP_IDLE_TIMEOUT_SECS", "2"),
    ])
    .await;
    let addr = server.base.trim_start_matches("http://").to_owned();
    let baseline = open_fds();

    let mut held = Vec::new();
    for i in 0..1_000 {
        let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
        match i % 3 {
            0 => {} // silent
            1 => {
                let partial = format!("POST /plivo/answer HTTP/1.1\r\nHost: {addr}\r\nX-A: ");
                stream.write_all(partial.as_bytes()).await.unwrap();
            }
            _ => {
                // A whole request, then an idle keep-alive connection.
                let request = format!("GET /health HTTP/1.1\r\nHost: {addr}\r\n\r\n");
                stream.write_all(request.as_bytes()).await.unwrap();
            }
        }
        held.push(stream);
    }

    // A real call works while they are open.
    let echo = echo_with_strays(&server.base, "call-among-idlers", &[]).await;
    assert!(
        echo.len() >= 100 * 160,
        "the call was served: {}",
        echo.len()
    );

    // Every one of them is closed by the server within the timeouts (the call above took
    // longer than both).
    let mut still_open = 0;
    for stream in &mut held {
        if !closed_by_server(stream).await {
            still_open += 1;
        }
    }
    assert_eq!(still_open, 0, "connections the server kept open");
    drop(held);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let now = open_fds();
    assert!(
        now <= baseline + 10,
        "file descriptors back to their baseline: {now} against {baseline}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_limit_are_closed_at_once_and_counted() {
    let server = TestServer::start(&[("VOXGATE_HTTP_MAX_CONNECTIONS", "20")]).await;
    let addr = server.base.trim_start_matches("http://").to_owned();
    let mut held = Vec::new();
    for _ in 0..20 {
        held.push(tokio::net::TcpStream::connect(&addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut extra = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while !closed_by_server(&mut extra).await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the 21st connection was closed"
        );
    }
    drop(held);
    // Once the silent ones are gone, requests are served again.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let ok = reqwest::get(format!("{}/health", server.base))
            .await
            .is_ok_and(|r| r.status().is_success());
        if ok {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "served again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let refused = server
        .metric("voxgate_http_connections_refused_total")
        .await;
    assert!(refused >= 1.0, "refusals counted: {refused}");
}
