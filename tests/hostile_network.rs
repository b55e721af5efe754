//! A hostile or careless peer, over real sockets against the real server: each case is a
//! way a real call or a real attacker could hurt a production gateway (issue #11).

mod common;

use std::time::Duration;

use common::{RawCall, TestServer, fixture, speech_span};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use voxgate::session::journal::Event;

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
            let status = response.status().as_u16();
            if matches!(status, 409 | 503) {
                let connection = response.headers().get("connection");
                assert_eq!(
                    connection.and_then(|v| v.to_str().ok()),
                    Some("close"),
                    "a call refused at the upgrade keeps no connection open"
                );
            }
            Err(status)
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

/// Opens the media socket of `call_id` without answering first, as a stray peer would.
async fn stray_socket(base: &str, call_id: &str) -> Result<RawCall, u16> {
    let url = format!(
        "{}/plivo/stream?call_id={call_id}",
        base.replace("http", "ws")
    );
    try_upgrade(&url, &[]).await
}

/// How the server ended the stream of `call_id`, once it has.
async fn stream_end(server: &TestServer, call_id: &str, within: Duration) -> Event {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if let Some(end) = server
            .journal(call_id)
            .and_then(|j| j.find(|e| matches!(e, Event::StreamEnded { .. })))
        {
            return end.event;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{call_id}: the stream did not end within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Utterance 1 and a second of silence in real time; returns the echo heard back.
async fn echo_call(base: String, call_id: &'static str) -> Vec<u8> {
    let mut call = RawCall::open(&base, call_id).await;
    call.start().await;
    let mut audio = fixture("utterance_1.ulaw");
    audio.extend([0xFF; 8_000]);
    call.stream(1, &audio, Duration::from_millis(20)).await;
    call.collect_audio(Duration::from_millis(800), Duration::from_secs(15))
        .await
}

fn assert_whole_echo(echo: &[u8]) {
    let speech = speech_span(&fixture("utterance_1.ulaw")).len();
    assert!(
        echo.len() >= speech && echo.len() <= speech + 3_200,
        "the good call's echo came back whole: {} bytes for {speech} of speech",
        echo.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sockets_that_never_start_do_not_make_a_real_caller_busy_and_are_closed() {
    let start_timeout = Duration::from_secs(3);
    let server = TestServer::start(&[("VOXGATE_START_TIMEOUT_MS", "3000")]).await;
    let max_pending = server.state.sessions.config().max_pending_sockets;
    let max_calls = server.state.sessions.config().max_calls;
    let opened = tokio::time::Instant::now();
    let (mut open, mut refused) = (Vec::new(), 0);
    for i in 0..max_calls + 20 {
        match stray_socket(&server.base, &format!("stray-{i}")).await {
            Ok(call) => open.push(call.ws),
            Err(status) => {
                assert_eq!(status, 503, "a stray beyond the pending limit");
                refused += 1;
            }
        }
    }
    assert_eq!(
        open.len(),
        max_pending,
        "the pending limit, not the call limit"
    );
    assert_eq!(refused, max_calls + 20 - max_pending);
    assert_eq!(server.state.sessions.pending(), max_pending);
    assert_eq!(server.state.sessions.active(), 0, "no call slot taken");
    assert!(opened.elapsed() < start_timeout, "all still open");

    // A real caller is answered with <Stream>, not busy, and its call works.
    let echo = echo_call(server.base.clone(), "real-caller");

    // Every stray is closed by the start timeout, with its socket.
    let strays = async {
        for mut ws in open {
            let closed = tokio::time::timeout(Duration::from_secs(10), async {
                loop {
                    match ws.next().await {
                        Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                        Some(Ok(_)) => {}
                    }
                }
            })
            .await;
            assert!(closed.is_ok(), "a stray socket was left open");
        }
        opened.elapsed()
    };
    let (echo, closed_after) = tokio::join!(echo, strays);
    assert_whole_echo(&echo);
    assert!(
        closed_after >= start_timeout && closed_after < start_timeout + Duration::from_secs(5),
        "closed at the start timeout: {closed_after:?}"
    );
    assert_eq!(
        stream_end(&server, "stray-0", Duration::from_secs(1)).await,
        Event::StreamEnded {
            reason: "start_timeout"
        }
    );
    assert_eq!(server.state.sessions.pending(), 0);
    let ended = server
        .metric(r#"voxgate_streams_ended_total{reason="start_timeout"}"#)
        .await;
    assert!(ended >= max_pending as f64, "counted: {ended}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_after_an_unsupported_codec_is_counted_as_such_and_the_socket_closed() {
    let server = TestServer::start(&[("VOXGATE_START_TIMEOUT_MS", "1000")]).await;
    let bad = |kind: &'static str| {
        let server = &server;
        async move {
            server
                .metric(&format!(r#"voxgate_bad_messages_total{{kind="{kind}"}}"#))
                .await
        }
    };
    let before = (
        bad("unsupported_format").await,
        bad("media_before_start").await,
    );
    let mut call = RawCall::open(&server.base, "alaw-call").await;
    call.text(r#"{"event":"start","start":{"callId":"a","streamId":"stream-alaw-call","mediaFormat":{"encoding":"audio/x-alaw","sampleRate":8000}}}"#).await;
    for chunk in 1..=3 {
        call.media(chunk, &SILENCE).await;
    }
    assert_eq!(
        stream_end(&server, "alaw-call", Duration::from_secs(5)).await,
        Event::StreamEnded {
            reason: "start_timeout"
        },
        "no valid start: closed at the start timeout"
    );
    let after = (
        bad("unsupported_format").await,
        bad("media_before_start").await,
    );
    assert_eq!(after.0 - before.0, 4.0, "the start and each of its media");
    assert_eq!(after.1, before.1, "not media before start");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_messages_close_with_the_rfc_6455_code() {
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

    let server = TestServer::start(&[]).await;
    let cases: [(&str, Message, u16); 2] = [
        (
            "over-1-mib",
            Message::Text("x".repeat(1_100_000).into()),
            1009,
        ),
        (
            "not-utf8",
            Message::Frame(Frame::message(
                vec![b'{', 0xFF, 0xFE, b'}'],
                OpCode::Data(Data::Text),
                true,
            )),
            1007,
        ),
    ];
    for (call_id, message, code) in cases {
        let mut call = RawCall::open(&server.base, call_id).await;
        call.start().await;
        call.media(1, &SILENCE).await;
        call.ws.send(message).await.unwrap();
        let close = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                match call.ws.next().await {
                    Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
                    Some(Ok(_)) => {}
                    other => panic!("{call_id}: no close frame: {other:?}"),
                }
            }
        })
        .await
        .expect("closed");
        assert_eq!(close, Some(code), "{call_id}");
        let kind = if code == 1009 {
            "too_large"
        } else {
            "invalid_utf8"
        };
        assert_eq!(
            stream_end(&server, call_id, Duration::from_secs(2)).await,
            Event::StreamEnded { reason: kind }
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_stops_reading_is_closed_in_seconds_and_hears_nothing() {
    // The accept loop caps each socket's kernel send buffer (`http.send_buffer_bytes`,
    // 16 KiB), so a pipe that stops draining is full after about 2 s of agent audio. The
    // default write timeout (5 s) is the bar; a checkpoint that is queued but never reaches
    // the socket passes this short grace long before the writer gives up, so counting it
    // as heard would show.
    let server = TestServer::start(&[("VOXGATE_CHECKPOINT_TIMEOUT_MS", "300")]).await;
    let good = tokio::spawn(echo_call(server.base.clone(), "reading-call"));

    // A caller with a 4 KB receive buffer that never reads a byte after the handshake.
    let url = common::stream_url(&common::answer(&server.base, "deaf-call").await);
    let tcp = tokio::net::TcpSocket::new_v4().unwrap();
    tcp.set_recv_buffer_size(4 * 1024).unwrap();
    let tcp = tcp
        .connect(server.base["http://".len()..].parse().unwrap())
        .await
        .unwrap();
    let (ws, _) =
        tokio_tungstenite::client_async(url, tokio_tungstenite::MaybeTlsStream::Plain(tcp))
            .await
            .unwrap();
    let mut deaf = RawCall {
        ws,
        call_id: "deaf-call".into(),
        stream_id: "stream-deaf-call".into(),
    };
    deaf.start().await;
    // About 4.5 s of speech in one breath, then silence until the server closes the socket:
    // the echo fills the pipe (about 2 s of audio fit in it) and its end and checkpoint are
    // queued before the writer gives up.
    let mut speech = Vec::new();
    for n in 1..=2 {
        speech.extend_from_slice(speech_span(&fixture(&format!("utterance_{n}.ulaw"))));
    }
    let journal = server.journal("deaf-call").unwrap();
    let mut agent_spoke = None;
    let frames = speech.chunks(160).chain(std::iter::repeat(&SILENCE[..]));
    for (chunk, frame) in (1..).zip(frames) {
        if journal
            .find(|e| matches!(e, Event::StreamEnded { .. }))
            .is_some()
        {
            break;
        }
        if agent_spoke.is_none()
            && journal
                .find(|e| matches!(e, Event::TurnQueued { .. }))
                .is_some()
        {
            agent_spoke = Some(tokio::time::Instant::now());
        }
        if let Some(spoke) = agent_spoke {
            assert!(
                spoke.elapsed() < Duration::from_secs(20),
                "still open 20 s after the agent spoke"
            );
        }
        let mut padded = [0xFF; 160];
        padded[..frame.len()].copy_from_slice(frame);
        // Once the server has closed, sends may fail: the journal says why it ended.
        let text = deaf.media_text(chunk, (chunk - 1) * 20, &padded);
        let sent = tokio::time::timeout(
            Duration::from_secs(1),
            deaf.ws.send(Message::Text(text.into())),
        )
        .await;
        if !matches!(sent, Ok(Ok(()))) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let spoke = agent_spoke.expect("the agent answered the deaf caller");
    assert_eq!(
        stream_end(&server, "deaf-call", Duration::from_secs(20)).await,
        Event::StreamEnded {
            reason: "write_timeout"
        }
    );
    let closed_after = spoke.elapsed();
    assert!(
        closed_after < Duration::from_secs(20),
        "closed {closed_after:?} after the agent spoke"
    );
    assert!(
        journal
            .find(|e| matches!(e, Event::TurnHeard { .. }))
            .is_none(),
        "nothing was read, so no turn counts as heard"
    );
    assert!(
        journal
            .find(|e| matches!(e, Event::TurnUnsent { .. }))
            .is_some(),
        "the turn still queued is counted unsent"
    );
    assert_whole_echo(&good.await.unwrap());
}
