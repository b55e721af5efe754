use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};

use base64::Engine as _;
use futures_util::{SinkExt, stream};

use super::*;
use crate::agent::AgentKind;
use crate::audio::pipeline::PipelineConfig;
use crate::ids::StreamId;
use crate::session::journal::Event;
use crate::session::plan::CallPlan;

/// A peer that never takes a message: its socket buffer is full for good.
struct StuckPeer;

impl Sink<WsOut> for StuckPeer {
    type Error = ();
    fn poll_ready(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), ()>> {
        Poll::Pending
    }
    fn start_send(self: Pin<&mut Self>, _: WsOut) -> Result<(), ()> {
        Ok(())
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), ()>> {
        Poll::Pending
    }
    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), ()>> {
        Poll::Pending
    }
}

/// A peer that takes everything; what it took is in the returned list.
fn recording_peer() -> (
    impl Sink<WsOut, Error = ()> + Unpin + Send + 'static,
    Arc<Mutex<Vec<WsOut>>>,
) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = futures_util::sink::drain::<WsOut>()
        .sink_map_err(|_| ())
        .with({
            let seen = Arc::clone(&seen);
            move |out: WsOut| {
                seen.lock().unwrap().push(out.clone());
                std::future::ready(Ok::<_, ()>(out))
            }
        });
    (sink, seen)
}

fn ended(journal: &crate::session::journal::Journal) -> Event {
    journal
        .find(|e| matches!(e, Event::StreamEnded { .. }))
        .expect("the stream ended")
        .event
}

/// What a session needs, for tests: a one-worker pipeline with room for a whole utterance.
pub(in crate::session) fn deps(config: SessionConfig) -> SessionDeps {
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
        agents: Arc::new(crate::agent::Agents::default()),
        on_hang_up: None,
        records: None,
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
        ended(&journal),
        Event::StreamEnded {
            reason: "write_timeout"
        }
    );
    assert!(started.elapsed() < Duration::from_secs(8));
    assert!(
        journal
            .find(|e| matches!(e, Event::TurnUnsent { .. }))
            .is_some(),
        "the echo never reached the socket: unsent"
    );
    assert!(
        journal
            .find(|e| matches!(e, Event::TurnHeard { .. }))
            .is_none(),
        "a peer that reads nothing hears nothing"
    );
}

#[tokio::test]
async fn a_socket_without_start_is_closed_at_the_start_timeout_and_frees_its_pending_slot() {
    let config = SessionConfig {
        start_timeout: Duration::from_millis(200),
        ..SessionConfig::default()
    };
    let deps = deps(config);
    let attachment = deps.sessions.attach(&id("never-starts")).unwrap();
    assert_eq!(deps.sessions.pending(), 1);
    let journal = Arc::clone(&attachment.journal);
    // Media before `start` is dropped and does not keep the socket open.
    let media = caller_messages().into_iter().skip(1).take(20);
    let incoming = stream::iter(media).chain(stream::pending());
    let (sink, _) = recording_peer();
    let started = Instant::now();
    tokio::time::timeout(
        Duration::from_secs(5),
        run(incoming, sink, attachment, deps.clone()),
    )
    .await
    .expect("closed at the start timeout");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(
        ended(&journal),
        Event::StreamEnded {
            reason: "start_timeout"
        }
    );
    assert_eq!((deps.sessions.pending(), deps.sessions.active()), (0, 0));
}

#[tokio::test]
async fn a_start_with_no_call_slot_left_closes_the_socket() {
    let config = SessionConfig {
        max_calls: 1,
        ..SessionConfig::default()
    };
    let deps = deps(config);
    deps.sessions
        .reserve(CallPlan::unplanned(id("admitted"), AgentKind::Echo))
        .unwrap();
    let stray = deps.sessions.attach(&id("stray")).unwrap();
    let journal = Arc::clone(&stray.journal);
    let incoming = stream::iter(caller_messages().into_iter().take(3)).chain(stream::pending());
    let (sink, _) = recording_peer();
    tokio::time::timeout(
        Duration::from_secs(5),
        run(incoming, sink, stray, deps.clone()),
    )
    .await
    .expect("closed at start");
    assert_eq!(ended(&journal), Event::StreamEnded { reason: "capacity" });
    assert_eq!((deps.sessions.pending(), deps.sessions.active()), (0, 1));
}

#[tokio::test]
async fn a_message_the_transport_cannot_read_closes_with_its_rfc_6455_code() {
    for (unreadable, code) in [
        (Unreadable::TooLarge, 1009),
        (Unreadable::InvalidUtf8, 1007),
    ] {
        let deps = deps(SessionConfig::default());
        let attachment = deps.sessions.attach(&id(unreadable.kind())).unwrap();
        let journal = Arc::clone(&attachment.journal);
        let mut messages = caller_messages();
        messages.truncate(3);
        messages.push(Ok(WsMessage::Unreadable(unreadable)));
        let incoming = stream::iter(messages).chain(stream::pending());
        let (sink, seen) = recording_peer();
        tokio::time::timeout(
            Duration::from_secs(5),
            run(incoming, sink, attachment, deps),
        )
        .await
        .expect("closed");
        assert_eq!(
            ended(&journal),
            Event::StreamEnded {
                reason: unreadable.kind()
            }
        );
        let last = seen.lock().unwrap().last().cloned();
        match last {
            Some(WsOut::Close(close)) => assert_eq!(close.code(), code),
            other => panic!("{unreadable:?}: the last frame was {other:?}"),
        }
    }
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
    let sink = futures_util::sink::drain::<WsOut>().sink_map_err(|_| ());
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
    let sink = futures_util::sink::drain::<WsOut>().sink_map_err(|_| ());
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
    let sink = futures_util::sink::drain::<WsOut>().sink_map_err(|_| ());
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

/// How a test agent misbehaves after saying one second of tone at the start of the call.
#[derive(Clone, Copy)]
enum Misbehaviour {
    /// Stops reading its inbox for good (awaits forever).
    Stuck,
    /// Panics on the next input.
    Panics,
    /// Reads its inbox ten times slower than caller frames come, for good.
    Slow,
}

struct BadAgent(Misbehaviour);

#[async_trait::async_trait]
impl crate::agent::Agent for BadAgent {
    fn caller_audio_rate(&self) -> Option<Rate> {
        Some(Rate::Hz8000)
    }

    async fn run(self: Box<Self>, mut io: crate::agent::AgentIo) {
        let tone: Arc<[i16]> = vec![3_000i16; 8_000].into();
        io.say("one second of tone", Rate::Hz8000, tone)
            .await
            .unwrap();
        match self.0 {
            Misbehaviour::Stuck => std::future::pending::<()>().await,
            Misbehaviour::Panics => {
                io.next().await;
                panic!("the test agent panics");
            }
            Misbehaviour::Slow => {
                while io.next().await.is_some() {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }
}

fn deps_with(agent: Misbehaviour) -> SessionDeps {
    SessionDeps {
        agents: Arc::new(crate::agent::Agents::custom(Arc::new(move || {
            Box::new(BadAgent(agent))
        }))),
        ..deps(SessionConfig {
            checkpoint_timeout: Duration::from_millis(300),
            ..SessionConfig::default()
        })
    }
}

fn play_audio_count(seen: &Mutex<Vec<WsOut>>) -> usize {
    seen.lock()
        .unwrap()
        .iter()
        .filter(|m| matches!(m, WsOut::Text(t) if t.contains("\"playAudio\"")))
        .count()
}

/// A failing agent costs the caller a fallback line and a clean hang-up, never the media:
/// its turn still plays in full and paced, the caller's speech is still heard by the VAD,
/// and the stream ends `agent_failed` after the fallback line.
async fn a_failing_agent_gets_a_fallback_line_and_a_hang_up(how: Misbehaviour) {
    let deps = deps_with(how);
    let attachment = deps.sessions.attach(&id("failing")).unwrap();
    let journal = Arc::clone(&attachment.journal);
    let incoming = stream::iter(caller_messages()).chain(stream::pending());
    let (sink, seen) = recording_peer();
    let started = Instant::now();
    tokio::time::timeout(
        Duration::from_secs(20),
        run(incoming, sink, attachment, deps),
    )
    .await
    .expect("the session ended by itself");
    assert_eq!(
        ended(&journal),
        Event::StreamEnded {
            reason: "agent_failed"
        }
    );
    // The tone (the caller's utterance barges in on it, so at least the 200 ms lead of it
    // went out), then the whole fallback line (0.5 s: 25 frames), which nothing cuts.
    let sent = play_audio_count(&seen);
    assert!((35..=75).contains(&sent), "{sent} frames");
    assert!(
        journal
            .find(|e| matches!(e, Event::SpeechEnded { .. }))
            .is_some(),
        "the caller's utterance went through the pipeline"
    );
    assert!(
        journal
            .find(|e| matches!(e, Event::HangUp { by: "voxgate", .. }))
            .is_some()
    );
    // Paced: the 0.5 s fallback line alone cannot have been sent in less than 0.4 s.
    assert!(started.elapsed() >= Duration::from_millis(400));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_agent_gets_a_fallback_line_and_a_hang_up() {
    a_failing_agent_gets_a_fallback_line_and_a_hang_up(Misbehaviour::Stuck).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_agent_gets_a_fallback_line_and_a_hang_up() {
    a_failing_agent_gets_a_fallback_line_and_a_hang_up(Misbehaviour::Panics).await;
}

/// An agent that reads its inbox ten times slower than frames come is slow, not failed:
/// the caller's speech still goes through the pipeline, the agent's tone plays out whole,
/// and the call is not ended for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_agent_stalls_neither_media_nor_playout() {
    let deps = deps_with(Misbehaviour::Slow);
    let attachment = deps.sessions.attach(&id("slow")).unwrap();
    let journal = Arc::clone(&attachment.journal);
    // The caller's utterance at once, then the line stays open for 3 s and closes.
    let incoming = stream::iter(caller_messages())
        .chain(stream::pending().take_until(Box::pin(tokio::time::sleep(Duration::from_secs(3)))));
    let (sink, seen) = recording_peer();
    tokio::time::timeout(
        Duration::from_secs(20),
        run(incoming, sink, attachment, deps),
    )
    .await
    .expect("the session ended when the caller left");
    assert_ne!(
        ended(&journal),
        Event::StreamEnded {
            reason: "agent_failed"
        }
    );
    assert!(
        journal
            .find(|e| matches!(e, Event::HangUp { .. }))
            .is_none(),
        "a slow agent is not hung up on"
    );
    assert!(
        journal
            .find(|e| matches!(e, Event::SpeechEnded { .. }))
            .is_some(),
        "the caller's utterance went through the pipeline"
    );
    // One second of tone: 50 frames of 20 ms, every one sent.
    assert_eq!(play_audio_count(&seen), 50);
}
