use std::pin::Pin;
use std::task::{Context, Poll};

use base64::Engine as _;
use futures_util::stream;

use super::*;
use crate::agent::AgentKind;
use crate::audio::pipeline::PipelineConfig;
use crate::ids::StreamId;
use crate::session::journal::Event;
use crate::session::plan::CallPlan;

/// A peer that never takes a message: its socket buffer is full for good.
struct StuckPeer;

impl Sink<String> for StuckPeer {
    type Error = ();
    fn poll_ready(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), ()>> {
        Poll::Pending
    }
    fn start_send(self: Pin<&mut Self>, _: String) -> Result<(), ()> {
        Ok(())
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), ()>> {
        Poll::Pending
    }
    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), ()>> {
        Poll::Pending
    }
}

fn deps(config: SessionConfig) -> SessionDeps {
    SessionDeps {
        pipeline: Arc::new(
            Pipeline::start(PipelineConfig {
                workers: 1,
                // The tests push a whole utterance at once: room for all of it, so a busy
                // machine slows the worker down but never makes it drop speech.
                input_capacity: 1_000,
                ..PipelineConfig::default()
            })
            .unwrap(),
        ),
        sessions: Arc::new(Sessions::new(config, AgentKind::Echo)),
        config,
        on_stream_started: None,
        recorder: None,
    }
}

fn id(id: &str) -> CallId {
    CallId::parse(id).unwrap()
}

/// `start`, then the utterance fixture and a second of silence as `media` messages.
fn caller_messages() -> Vec<Result<WsMessage, ()>> {
    let start = r#"{"event":"start","start":{"callId":"c","streamId":"s","mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000}}}"#;
    let mut audio = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/audio/utterance_1.ulaw"
    ))
    .unwrap();
    audio.extend([0xFF; 8_000]);
    let mut messages = vec![Ok(WsMessage::Text(start.into()))];
    for (i, frame) in audio.chunks_exact(160).enumerate() {
        let payload = base64::engine::general_purpose::STANDARD.encode(frame);
        let text = format!(
            r#"{{"event":"media","streamId":"s","media":{{"timestamp":"{}","chunk":{},"payload":"{payload}"}}}}"#,
            i * 20,
            i + 1
        );
        messages.push(Ok(WsMessage::Text(text.into())));
    }
    messages
}

#[tokio::test]
async fn a_peer_that_stops_reading_is_closed_after_the_write_timeout() {
    let config = SessionConfig {
        write_timeout: Duration::from_millis(200),
        ..SessionConfig::default()
    };
    let deps = deps(config);
    let attachment = deps.sessions.attach(&id("stuck")).unwrap();
    let journal = Arc::clone(&attachment.journal);
    // The caller's messages, then a socket that stays open but sends nothing more.
    let incoming = stream::iter(caller_messages()).chain(stream::pending());
    let started = Instant::now();
    tokio::time::timeout(
        Duration::from_secs(10),
        run(incoming, StuckPeer, attachment, deps),
    )
    .await
    .expect("the session ended by itself");
    assert!(
        journal
            .find(|e| matches!(e, Event::TurnQueued { .. }))
            .is_some(),
        "the echo was due"
    );
    assert_eq!(
        journal
            .find(|e| matches!(e, Event::StreamEnded { .. }))
            .unwrap()
            .event,
        Event::StreamEnded {
            reason: "write_timeout"
        }
    );
    assert!(started.elapsed() < Duration::from_secs(8));
}

#[tokio::test]
async fn an_idle_stream_is_closed() {
    let config = SessionConfig {
        idle_timeout: Duration::from_millis(300),
        ..SessionConfig::default()
    };
    let deps = deps(config);
    let attachment = deps.sessions.attach(&id("idle")).unwrap();
    let journal = Arc::clone(&attachment.journal);
    let sink = futures_util::sink::drain::<String>().sink_map_err(|_| ());
    let incoming = stream::iter(caller_messages().into_iter().take(5)).chain(stream::pending());
    tokio::time::timeout(
        Duration::from_secs(5),
        run(incoming, sink, attachment, deps),
    )
    .await
    .expect("closed for idleness");
    assert_eq!(
        journal
            .find(|e| matches!(e, Event::StreamEnded { .. }))
            .unwrap()
            .event,
        Event::StreamEnded {
            reason: "idle_timeout"
        }
    );
}

#[tokio::test]
async fn a_second_socket_takes_over_the_call_once_the_first_is_silent() {
    // The first socket's media stops after five messages: past the takeover window it
    // counts as dead (Plivo reconnecting), not as a live call to protect.
    let deps = deps(SessionConfig {
        takeover_after: Duration::from_millis(50),
        ..SessionConfig::default()
    });
    let first = deps.sessions.attach(&id("retry")).unwrap();
    let journal = Arc::clone(&first.journal);
    let incoming = stream::iter(caller_messages().into_iter().take(5)).chain(stream::pending());
    let sink = futures_util::sink::drain::<String>().sink_map_err(|_| ());
    let session = tokio::spawn(run(incoming, sink, first, deps.clone()));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let second = deps.sessions.attach(&id("retry")).unwrap();
    assert!(second.took_over);
    tokio::time::timeout(Duration::from_secs(5), session)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        deps.sessions.active(),
        1,
        "the call is still on, served by the second socket"
    );
    assert_eq!(
        journal
            .find(|e| matches!(e, Event::StreamEnded { .. }))
            .unwrap()
            .event,
        Event::StreamEnded {
            reason: "taken_over_or_hung_up"
        }
    );
}

#[tokio::test]
async fn the_session_runs_what_the_plan_says() {
    let deps = deps(SessionConfig::default());
    let plan = CallPlan {
        flow_name: Some("intake".into()),
        record: false,
        ..CallPlan::unplanned(id("planned"), AgentKind::Echo)
    };
    deps.sessions.reserve(plan).unwrap();
    let attachment = deps.sessions.attach(&id("planned")).unwrap();
    let journal = Arc::clone(&attachment.journal);
    let incoming = stream::iter(caller_messages().into_iter().take(5));
    let sink = futures_util::sink::drain::<String>().sink_map_err(|_| ());
    tokio::time::timeout(
        Duration::from_secs(5),
        run(incoming, sink, attachment, deps),
    )
    .await
    .unwrap();
    assert_eq!(
        journal
            .find(|e| matches!(e, Event::StreamStarted { .. }))
            .unwrap()
            .event,
        Event::StreamStarted {
            stream_id: StreamId::new("s"),
            took_over: false,
            agent: "echo",
            flow_name: Some("intake".into()),
            recorded: false,
        }
    );
}
