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

/// Upgrades to `url` with `headers`; the HTTP status when the server refuses.
async fn try_upgrade(url: &str, headers: &[(&'static str, String)]) -> Result<RawCall, u16> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = url.into_client_request().unwrap();
    for (name, value) in headers {
        request.headers_mut().insert(*name, value.parse().unwrap());
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((ws, _)) => Ok(RawCall {
            ws,
            call_id: "replayed".into(),
            stream_id: "stream-replayed".into(),
        }),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            Err(response.status().as_u16())
        }
        Err(other) => panic!("upgrade failed: {other}"),
    }
}

/// Keeps `call` delivering silence every 20 ms until the returned token is cancelled;
/// hands the call back when it stops.
fn keep_streaming(
    mut call: RawCall,
    first_chunk: u64,
) -> (
    tokio_util::sync::CancellationToken,
    tokio::task::JoinHandle<RawCall>,
) {
    let stop = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn({
        let stop = stop.clone();
        async move {
            let mut chunk = first_chunk;
            while !stop.is_cancelled() {
                call.media(chunk, &SILENCE).await;
                chunk += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            call
        }
    });
    (stop, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_signed_upgrade_cannot_take_a_live_call_over() {
    use voxgate::telephony::plivo::signature::{Method, sign_v3_headers, websocket_signing_url};
    const TOKEN: &str = "replay-test-token";
    let server = TestServer::start(&[("PLIVO_AUTH_TOKEN", TOKEN)]).await;
    let answer_url = format!("{}/plivo/answer", server.base);
    let form: Vec<(String, String)> = vec![
        ("CallUUID".into(), "replay-victim".into()),
        ("From".into(), "+15550001".into()),
        ("To".into(), "+15550002".into()),
    ];
    let mut request = reqwest::Client::new().post(&answer_url).form(&form);
    for (name, value) in sign_v3_headers(TOKEN, Method::Post, &answer_url, &form) {
        request = request.header(name, value);
    }
    let answer = request.send().await.unwrap().text().await.unwrap();
    let start = answer.find("ws://").expect("stream URL in the answer");
    let end = answer[start..].find('<').unwrap() + start;
    let ws_url = answer[start..end].replace("&amp;", "&");

    // The real upgrade, whose headers an attacker captured.
    let captured =
        sign_v3_headers(TOKEN, Method::Get, &websocket_signing_url(&ws_url), &[]).to_vec();
    let mut real = try_upgrade(&ws_url, &captured)
        .await
        .expect("the real upgrade");
    real.call_id = "replay-victim".into();
    real.stream_id = "stream-replay-victim".into();
    real.start().await;
    let (stop, streaming) = keep_streaming(real, 1);
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Replayed as is: the nonce was used. Freshly signed while the call streams: refused too.
    assert_eq!(try_upgrade(&ws_url, &captured).await.err(), Some(403));
    let fresh = sign_v3_headers(TOKEN, Method::Get, &websocket_signing_url(&ws_url), &[]);
    assert_eq!(try_upgrade(&ws_url, &fresh).await.err(), Some(409));
    assert!(
        server
            .metric(r#"voxgate_signature_failures_total{route="stream",kind="replayed"}"#)
            .await
            >= 1.0
    );

    // The real caller's call goes on: it still hears its echo.
    stop.cancel();
    let mut real = streaming.await.unwrap();
    let mut audio = fixture("utterance_1.ulaw");
    audio.extend([0xFF; 8_000]);
    real.stream(1_000, &audio, Duration::from_millis(20)).await;
    let echo = real
        .collect_audio(Duration::from_millis(800), Duration::from_secs(15))
        .await;
    assert!(
        echo.len() >= 100 * 160,
        "the real call still hears its agent: {}",
        echo.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_genuine_reconnect_takes_over_once_the_first_socket_is_silent_or_gone() {
    let server = TestServer::start(&[]).await;
    let mut first = RawCall::open(&server.base, "reconnect-call").await;
    let ws_url = format!(
        "{}/plivo/stream?call_id=reconnect-call",
        server.base.replace("http://", "ws://")
    );
    first.start().await;
    let (stop, streaming) = keep_streaming(first, 1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        try_upgrade(&ws_url, &[]).await.err(),
        Some(409),
        "no takeover while the first socket delivers media"
    );

    // The first socket stops delivering media (Plivo's side of it died): a reconnect
    // after the takeover window is welcome, and the silent socket is closed.
    stop.cancel();
    let mut first = streaming.await.unwrap();
    tokio::time::sleep(Duration::from_millis(1_300)).await;
    let mut second = try_upgrade(&ws_url, &[]).await.expect("the reconnect");
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        use futures_util::StreamExt;
        loop {
            match first.ws.next().await {
                None
                | Some(Err(_))
                | Some(Ok(tokio_tungstenite::tungstenite::Message::Close(_))) => break,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "the silent socket was closed by the takeover"
    );

    // And a socket that is gone is replaced at once.
    second.call_id = "reconnect-call".into();
    second.stream_id = "stream-reconnect-call".into();
    second.start().await;
    second.media(1, &SILENCE).await;
    drop(second);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        try_upgrade(&ws_url, &[]).await.is_ok(),
        "a reconnect after the socket closed"
    );
}
