//! One media-in → playAudio-out round trip over a real loopback WebSocket, through the
//! server's echo path: parse, decode, pipeline (VAD), echo agent, playout, encode, send.
//!
//! The VAD's hangover is excluded by timing only the decisive frame: the client sends a
//! short utterance, then silence at Plivo's real-time pace (one frame per 20 ms), and
//! measures from the last frame it sent to the first `playAudio` that comes back. Besides
//! criterion's estimate, the bench prints p50 and p99 over every measured round trip.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use criterion::{Criterion, criterion_group, criterion_main};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;
use voxgate::config::{CliOverrides, Config};
use voxgate::server::Server;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

fn media(chunk: u64, frame: &[u8]) -> Message {
    let payload = base64::engine::general_purpose::STANDARD.encode(frame);
    Message::Text(
        format!(
            r#"{{"event":"media","sequenceNumber":{},"streamId":"bench-stream","media":{{"track":"inbound","timestamp":"{}","chunk":{chunk},"payload":"{payload}"}}}}"#,
            chunk + 1,
            (chunk - 1) * 20
        )
        .into(),
    )
}

async fn open(base: &str) -> Ws {
    let answer = reqwest::Client::new()
        .post(format!("{base}/plivo/answer"))
        .form(&[("CallUUID", "bench-call"), ("From", "1"), ("To", "2")])
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let start = answer.find("ws://").unwrap();
    let end = answer[start..].find('<').unwrap() + start;
    let (mut ws, _) = tokio_tungstenite::connect_async(&answer[start..end])
        .await
        .unwrap();
    ws.send(Message::Text(
        r#"{"event":"start","sequenceNumber":1,"start":{"callId":"bench-call","streamId":"bench-stream","mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000}}}"#.into(),
    ))
    .await
    .unwrap();
    ws
}

/// Reads until the previous echo's checkpoint: nothing stale is left in the socket.
async fn drain_previous_echo(ws: &mut Ws) {
    loop {
        match tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
            Ok(Some(Ok(Message::Text(text))))
                if text.as_str().contains(r#""event":"checkpoint""#) =>
            {
                return;
            }
            Ok(Some(Ok(_))) => continue,
            _ => panic!("no checkpoint after the echo"),
        }
    }
}

/// One utterance; returns the time from the decisive silence frame to the first playAudio.
async fn round_trip(
    ws: &mut Ws,
    chunk: &mut u64,
    utterance: &[u8],
    previous_echo: bool,
) -> Duration {
    if previous_echo {
        drain_previous_echo(ws).await;
    }
    for frame in utterance.chunks_exact(160) {
        ws.send(media(*chunk, frame)).await.unwrap();
        *chunk += 1;
    }
    let silence = [0xFFu8; 160];
    loop {
        ws.send(media(*chunk, &silence)).await.unwrap();
        *chunk += 1;
        let sent = Instant::now();
        let deadline = tokio::time::Instant::now() + Duration::from_millis(20);
        loop {
            match tokio::time::timeout_at(deadline, ws.next()).await {
                Ok(Some(Ok(Message::Text(text))))
                    if text.as_str().contains(r#""event":"playAudio""#) =>
                {
                    return sent.elapsed();
                }
                Ok(Some(Ok(_))) => continue,
                Ok(_) => panic!("server closed the stream"),
                Err(_) => break, // 20 ms passed: time for the next frame
            }
        }
    }
}

fn echo_round_trip(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let env = [
        ("VOXGATE_MAX_CALLS".to_owned(), "10".to_owned()),
        ("VOXGATE_AGENT".to_owned(), "echo".to_owned()),
    ]
    .into_iter()
    .collect();
    let mut config = Config::load(None, &env, CliOverrides::default()).unwrap();
    // VOXGATE_BENCH_RECORDING=off measures the same path without recording (before/after).
    config.recording.enabled = std::env::var("VOXGATE_BENCH_RECORDING").as_deref() != Ok("off");
    config.recording.dir =
        std::env::temp_dir().join(format!("voxgate-bench-{}", std::process::id()));
    let (base, shutdown) = rt.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let shutdown = CancellationToken::new();
        let server = Server::start_without_control(config, shutdown.clone()).unwrap();
        tokio::spawn(server.run(listener));
        (base, shutdown)
    });
    let fixture = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/audio/utterance_1.ulaw"
    ))
    .unwrap();
    // The first word or so: 600 ms of speech from the fixture's onset (200 ms).
    let utterance = fixture[1_600..6_400].to_vec();
    let mut ws = rt.block_on(open(&base));
    let mut chunk = 1u64;
    let samples = Arc::new(Mutex::new(Vec::new()));

    let mut group = c.benchmark_group("echo_round_trip");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(20));
    group.bench_function("media_in_to_play_audio_out", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let previous_echo = chunk > 1;
                    let latency = round_trip(&mut ws, &mut chunk, &utterance, previous_echo).await;
                    samples.lock().unwrap().push(latency);
                    total += latency;
                }
                total
            })
        })
    });
    group.finish();

    let mut all = samples.lock().unwrap().clone();
    all.sort();
    let pct = |p: f64| all[((all.len() as f64 * p).ceil() as usize).clamp(1, all.len()) - 1];
    println!(
        "echo_round_trip over {} round trips: p50 {:?}, p99 {:?}, max {:?}",
        all.len(),
        pct(0.50),
        pct(0.99),
        all[all.len() - 1]
    );
    shutdown.cancel();
}

criterion_group!(benches, echo_round_trip);
criterion_main!(benches);
