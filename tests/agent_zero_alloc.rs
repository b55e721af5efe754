//! Proves the inbound path allocates nothing per frame with a flow agent listening: Plivo
//! JSON → base64 → µ-law → PCM16 frame → pipeline (VAD, record tap) → the agent seam
//! (`AgentLink::hear`) → the flow agent's task → pocketsphinx's queue and decoder.
//!
//! A counting global allocator sees every thread: the tokio runtime the agent runs on, the
//! DSP workers and the recogniser's worker. The caller's audio here is line noise, which
//! pocketsphinx's own VAD takes for speech, so every frame is decoded and the guess is
//! looked at every 200 ms; a guess that changes costs allocations (its text, the result sent
//! to the agent), per result rather than per frame, and the noise's guess does not change.
//! Then the noise's turn ends (the recogniser, held to the grammar, takes it for "no", and
//! the flow asks again), the caller says "yes" over the same path and the flow must hear
//! it: the frames measured did reach the recogniser. This file holds a single test so no
//! other test allocates while it measures.

use std::time::{Duration, Instant};

use voxgate::agent::config::AgentConfig;
use voxgate::agent::llm::setup::Hosted;
use voxgate::agent::{AgentKind, AgentLink, Agents, CallInfo, Command, Event, Progress};
use voxgate::audio::frame::FRAME_SAMPLES_8K;
use voxgate::audio::pipeline::{CallHandle, CallOptions, Pipeline, PipelineConfig};
use voxgate::audio::resample::Rate;
use voxgate::ids::{CallId, Direction};
use voxgate::providers::espeak::EspeakConfig;
use voxgate::providers::pocketsphinx::PocketsphinxConfig;
use voxgate::telephony::plivo::stream::{Inbound, MediaFormat, decode_payload, parse_inbound};

#[path = "common/counting.rs"]
mod counting;

#[global_allocator]
static GLOBAL: counting::Counting = counting::Counting;

/// A flow that asks yes or no and waits (no timeout, no silence follow-up) while it
/// listens, asking again until it hears yes.
const LISTEN_FLOW: &str = r#"
name = "listen"
start = "ask"
max_call_secs = 600
interruption = "none"

[nodes.ask]
say = "Yes or no?"
ask = { words = ["yes", "no"] }
on = [
  { words = ["yes"], go = "bye" },
  { words = ["no"], go = "ask" },
]
no_match = "ask"

[nodes.bye]
say = "Bye."
hangup = true
"#;

/// 8 kHz µ-law, from a fixture.
fn ulaw(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))).expect("fixture")
}

/// `speech` (8 kHz PCM) as µ-law.
fn wav_as_ulaw(name: &str) -> Vec<u8> {
    let path = format!("{}/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let pcm: Vec<i16> = hound::WavReader::open(path)
        .expect("wav fixture")
        .samples::<i16>()
        .map(|s| s.expect("sample"))
        .collect();
    let mut out = vec![0u8; pcm.len()];
    voxgate::audio::g711::encode_ulaw(&pcm, &mut out).expect("encode");
    out
}

/// Plivo `media` messages carrying `audio` from frame number `first` on.
fn media_messages(audio: &[u8], first: usize) -> Vec<String> {
    use base64::Engine as _;
    audio
        .chunks_exact(FRAME_SAMPLES_8K)
        .enumerate()
        .map(|(i, frame)| {
            let n = first + i;
            let payload = base64::engine::general_purpose::STANDARD.encode(frame);
            format!(
                r#"{{"event":"media","sequenceNumber":{},"streamId":"s-1","media":{{"track":"inbound","timestamp":"{}","chunk":{},"payload":"{payload}"}}}}"#,
                n + 2,
                n * 20,
                n + 1
            )
        })
        .collect()
}

/// What the session does per caller frame: parse, decode into a pooled frame, push it to
/// the pipeline, take the record tap's frame and hand it to the agent. Paced at 5 ms a
/// frame (4x real time), so the agent and the recogniser keep up as they would on a call.
fn run_frames(pipeline: &Pipeline, call: &CallHandle, link: &mut AgentLink, messages: &[String]) {
    let mut scratch = [0u8; 1024];
    for text in messages {
        let started = Instant::now();
        let Ok(Inbound::Media(media)) = parse_inbound(text) else {
            panic!("fixture message did not parse")
        };
        let mut frame = pipeline.pool().get();
        frame.timestamp_ms = media.media.timestamp;
        frame.chunk = media.media.chunk;
        let n = decode_payload(
            &media.media.payload,
            MediaFormat::MuLaw8k,
            &mut scratch,
            frame.fill(8_000, 320),
        )
        .expect("payload decodes");
        frame.fill(8_000, n);
        call.push(frame);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(heard) = call.pop_record() {
                link.hear(heard.timestamp_ms, Rate::Hz8000, heard.samples());
                break;
            }
            assert!(Instant::now() < deadline, "DSP worker stalled");
            std::thread::yield_now();
        }
        while call.pop_event().is_some() {}
        let elapsed = started.elapsed();
        if let Some(rest) = Duration::from_millis(5).checked_sub(elapsed) {
            std::thread::sleep(rest);
        }
    }
}

/// Reads the agent's commands until `want` picks one out, or panics after `within`.
fn command_until<T>(
    runtime: &tokio::runtime::Runtime,
    link: &mut AgentLink,
    within: Duration,
    mut want: impl FnMut(&Command) -> Option<T>,
) -> T {
    runtime.block_on(async {
        tokio::time::timeout(within, async {
            loop {
                let command = link.command().await;
                if let Some(found) = want(&command) {
                    return found;
                }
            }
        })
        .await
        .expect("the agent's command in time")
    })
}

/// Waits for the flow's question to be made, then tells the agent the phone played it
/// whole, as the session would: from then on the flow listens.
fn question_heard(runtime: &tokio::runtime::Runtime, link: &mut AgentLink) {
    let turn = command_until(runtime, link, Duration::from_secs(10), |c| match c {
        Command::CloseTurn { turn } => Some(*turn),
        _ => None,
    });
    assert!(link.tell(Event::Playout(Progress::Heard {
        turn,
        heard_ms: 1_000
    })));
}

#[test]
fn a_listening_flow_agent_allocates_nothing_per_frame() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let flows = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("zero-alloc-flows");
    std::fs::create_dir_all(&flows).unwrap();
    std::fs::write(flows.join("listen.toml"), LISTEN_FLOW).unwrap();
    let agents = Agents::start(
        &AgentConfig {
            default: AgentKind::Flow,
            flows_dir: Some(flows),
            profiles_dir: None,
        },
        &EspeakConfig::default(),
        &PocketsphinxConfig::default(),
        &Hosted::default(),
    )
    .expect("espeak-ng and pocketsphinx start (scripts/setup.sh installs them)");
    assert_eq!(
        agents.caller_audio_rate(AgentKind::Flow),
        Some(Rate::Hz8000)
    );
    let pipeline = Pipeline::start(PipelineConfig {
        workers: 2,
        ..PipelineConfig::default()
    })
    .unwrap();
    let call = pipeline
        .join(CallOptions {
            stt_16k: false,
            record: true,
        })
        .unwrap();

    let info = CallInfo {
        call_id: CallId::parse("zero-alloc").unwrap(),
        direction: Direction::Inbound,
        from: "+14155550100".into(),
        to: "+14155550199".into(),
        flow: Some("listen".into()),
        campaign: None,
        metadata: serde_json::Value::Null,
    };
    let agent = agents.build(AgentKind::Flow, Some("listen"));
    let mut link = {
        let _guard = runtime.enter();
        AgentLink::spawn(agent, info, Duration::from_secs(3))
    };
    // The question is spoken; once the phone has played it the flow listens.
    question_heard(&runtime, &mut link);

    let noise = ulaw("audio/line_noise.ulaw");
    let warm = media_messages(&noise, 0);
    let frames = warm.len();
    assert!(frames >= 100, "the noise fixture is {frames} frames");
    // 5 s of warm-up and 20 s measured: one utterance, under the recogniser's 30 s bound.
    let measured: Vec<String> = (0..4)
        .flat_map(|round| media_messages(&noise, frames * (round + 1)))
        .collect();
    run_frames(&pipeline, &call, &mut link, &warm);
    std::thread::sleep(Duration::from_millis(200));

    counting::start();
    run_frames(&pipeline, &call, &mut link, &measured);
    // Let the agent and the recogniser finish what was handed to them.
    std::thread::sleep(Duration::from_millis(300));
    let allocations = counting::stop();
    eprintln!("{allocations} allocations over {} frames", measured.len());

    // The noise ends as a turn would (the session says so); the flow asks again.
    assert!(link.tell(Event::EndOfTurn {
        speech_end_ms: (frames * 5 * 20) as u64,
        text: None
    }));
    question_heard(&runtime, &mut link);
    std::thread::sleep(Duration::from_millis(200));

    // The same path hears a spoken "yes": the flow takes it and moves on.
    let yes = wav_as_ulaw("speech/sim_yes.wav");
    let first = frames * 6;
    run_frames(&pipeline, &call, &mut link, &media_messages(&yes, first));
    let end_ms = ((first * FRAME_SAMPLES_8K + yes.len()) / 8) as u64;
    assert!(link.tell(Event::EndOfTurn {
        speech_end_ms: end_ms,
        text: None
    }));
    let heard = command_until(&runtime, &mut link, Duration::from_secs(10), |c| match c {
        Command::CallerText {
            text,
            is_final: true,
            ..
        } => Some(text.clone()),
        _ => None,
    });
    assert_eq!(heard, "yes", "the flow heard the caller through this path");

    assert_eq!(
        allocations,
        0,
        "{allocations} allocations over {} frames",
        measured.len()
    );
    assert_eq!(pipeline.pool().misses(), 0);
}
