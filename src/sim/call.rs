//! One simulated call, start to end: [`run_call`].
//!
//! Owns: the order of a call as Plivo runs it (answer URL → signed WebSocket upgrade →
//! `start` → media on the clock → close → stream status and hangup callbacks) and the clock
//! itself. Tick n runs at t0 + n·20 ms / speed on an absolute schedule (a late tick is
//! caught up, never shifts the ones after it); each tick the phone plays 20 ms, checkpoints
//! passed are acknowledged, and the caller's 20 ms goes out as one `media` message.
//!
//! Never: waits on the server inside the clock. The reader runs in its own task, replies go
//! through a bounded queue with `try_send`, and the only await in the loop is the sleep to
//! the next deadline.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use futures_util::StreamExt as _;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::audio::frame::{FRAME_MS, FRAME_SAMPLES_8K};
use crate::audio::resample::{Rate, Resampler};
use crate::telephony::plivo::signature::Method;
use crate::telephony::plivo::stream::{MediaFormat, encode_payload};

use super::analysis;
use super::callbacks;
use super::config::SimConfig;
use super::error::SimError;
use super::plivo_rest::Completion;
use super::report::{
    CallReport, CallbackResult, ClockStats, Detail, EndReason, EventKind, HungUpBy,
};
use super::script::{Finish, PhoneView, Runner, ScriptEvent, ticks_for};
use super::wire::{self, Outgoing, SEND_QUEUE, Shared, lock};

/// How long a call whose socket the server closed waits for the server's REST hangup
/// (real time), when the REST emulator is in use.
const REST_GRACE: Duration = Duration::from_millis(300);

/// Runs one call against the server in `cfg` and reports what the caller lived through.
///
/// Fails only when the call could not stream (bad settings, answer refused or broken,
/// WebSocket refused); a call that streamed always yields a report, protocol errors and all.
pub async fn run_call(cfg: SimConfig) -> Result<CallReport, SimError> {
    let client = http_client()?;
    run_call_with(&client, cfg).await
}

/// The HTTP client for answer and callback requests (no proxy, no pooling surprises).
pub(crate) fn http_client() -> Result<reqwest::Client, SimError> {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .map_err(|e| SimError::Config(format!("HTTP client: {e}")))
}

/// [`run_call`] with a shared HTTP client (load runs).
pub(crate) async fn run_call_with(
    client: &reqwest::Client,
    mut cfg: SimConfig,
) -> Result<CallReport, SimError> {
    cfg.validate()?;
    let script = std::mem::take(&mut cfg.script);
    let cfg = Arc::new(cfg);

    let answered_at = SystemTime::now();
    let started = Instant::now();
    let answered = callbacks::answer(client, &cfg, answered_at).await?;
    let answer_ms = ms_since(started);
    let given = answered.stream.url.clone();
    let dial = callbacks::stream_target(&cfg, &given)?;
    let status_callback = answered
        .stream
        .status_callback_url
        .as_deref()
        .map(|url| callbacks::callback_target(&cfg, url))
        .transpose()?
        .map(|url| {
            let method =
                callbacks::callback_method(answered.stream.status_callback_method.as_deref());
            (url.to_string(), method)
        });

    let connecting = Instant::now();
    let socket = connect(&cfg, &dial, &given).await?;
    let connect_ms = ms_since(connecting);
    // The call is live on the REST emulator from the moment it streams.
    let rest_hangup = cfg
        .plivo_rest
        .as_ref()
        .map(|rest| rest.register(&cfg.call_uuid, &cfg.from, &cfg.to));

    let stream_id = uuid::Uuid::new_v4().to_string();
    let (sink, stream) = socket.split();
    let (tx, rx) = mpsc::channel(SEND_QUEUE);
    let written = Arc::new(AtomicU64::new(0));
    let writer = tokio::spawn(wire::writer(sink, rx, stream_id.clone(), written.clone()));
    let _ = tx.try_send(Outgoing::Start {
        call_id: cfg.call_uuid.clone(),
        account_id: cfg.account_id.clone(),
        format: answered.format,
        extra_headers: answered.stream.extra_headers.clone(),
    });
    let t0 = Instant::now();
    let shared = Arc::new(Mutex::new(Shared::new(
        t0,
        cfg.speed,
        cfg.detail,
        stream_id.clone(),
        answered.format,
    )));
    {
        let mut s = lock(&shared);
        s.at_tick(EventKind::StartSent);
        for (kind, detail) in &answered.notes {
            s.protocol_error(kind, detail.clone());
        }
    }
    let reader = tokio::spawn(wire::reader(stream, shared.clone(), tx.clone()));
    let start_stream: Option<JoinHandle<CallbackResult>> = match &status_callback {
        Some((url, method)) if cfg.post_callbacks => {
            let (client, cfg, url, method) = (client.clone(), cfg.clone(), url.clone(), *method);
            let params =
                callbacks::stream_status_params(&cfg, "StartStream", &stream_id, SystemTime::now());
            Some(tokio::spawn(async move {
                callbacks::send_callback(&client, &cfg, "StartStream", &url, method, &params).await
            }))
        }
        _ => None,
    };

    let runner = Runner::new(script, cfg.timeouts.agent_heard);
    // Plivo stops the stream after `streamTimeout` seconds of it.
    let stream_ticks = answered
        .stream
        .stream_timeout_secs
        .map(|secs| ticks_for(Duration::from_secs(u64::from(secs))));
    let mut clock = run_clock(
        &shared,
        &tx,
        runner,
        &cfg,
        answered.format,
        stream_ticks,
        rest_hangup.as_ref(),
    )
    .await;
    let wall_ms = ms_since(t0);
    // A server hanging up through the API may close its socket before its DELETE lands.
    if clock.end == EndReason::ServerClosed
        && let Some(token) = &rest_hangup
        && tokio::time::timeout(REST_GRACE, token.cancelled())
            .await
            .is_ok()
    {
        clock.end = EndReason::ApiHangup;
    }
    let hung_up_by = HungUpBy::from_end(clock.end);

    // Close: the server's close reply ends the reader; neither end is waited on for long.
    lock(&shared).closing = true;
    let _ = tx.try_send(Outgoing::Close);
    drop(tx);
    finish(writer, cfg.timeouts.close).await;
    finish(reader, cfg.timeouts.close).await;

    let mut callbacks_done = Vec::new();
    if let Some(handle) = start_stream
        && let Ok(result) = handle.await
    {
        callbacks_done.push(result);
    }
    if cfg.post_callbacks {
        if let Some((url, method)) = &status_callback {
            let params =
                callbacks::stream_status_params(&cfg, "StopStream", &stream_id, SystemTime::now());
            callbacks_done.push(
                callbacks::send_callback(client, &cfg, "StopStream", url, *method, &params).await,
            );
        }
        // Answered when the answer URL was fetched: setup in real time, then the media.
        let duration = t0.duration_since(started) + Duration::from_millis(clock.ticks * FRAME_MS);
        let params = callbacks::hangup_params(&cfg, answered_at, duration, hung_up_by);
        let url = cfg.server_path(&cfg.hangup_path);
        callbacks_done.push(
            callbacks::send_callback(client, &cfg, "Hangup", &url, Method::Post, &params).await,
        );
    }

    if let Some(rest) = &cfg.plivo_rest {
        let secs = started.elapsed().as_secs();
        let completion = match hung_up_by {
            HungUpBy::Caller => Completion::caller_hung_up(secs),
            HungUpBy::GatewayRest => Completion::hung_up_by_api(secs),
            HungUpBy::Gateway | HungUpBy::Plivo => Completion::end_of_xml(secs),
        };
        rest.ended(&cfg.call_uuid, completion);
    }

    let mut s = lock(&shared);
    s.counts.messages_sent = written.load(Ordering::Relaxed);
    s.trace.caller = clock.caller_turns;
    let agent_turns = analysis::agent_turns(&s.trace);
    let turns = analysis::turn_figures(&s.trace, &agent_turns);
    Ok(CallReport {
        call_uuid: cfg.call_uuid.clone(),
        stream_id,
        stream_url: given,
        connected_url: dial.to_string(),
        content_type: answered.stream.content_type.clone().unwrap_or_default(),
        bidirectional: answered.stream.bidirectional,
        status_callback_url: answered.stream.status_callback_url.clone(),
        speed: cfg.speed,
        end: clock.end,
        hung_up_by,
        skipped_steps: clock.skipped_steps,
        ticks: clock.ticks,
        answer_ms,
        connect_ms,
        wall_ms,
        clock: clock.stats,
        heard: std::mem::take(&mut s.heard),
        sent: std::mem::take(&mut s.sent),
        timeline: std::mem::take(&mut s.timeline),
        gaps: analysis::gap_totals(&agent_turns),
        turns,
        agent_turns,
        counts: s.counts.clone(),
        protocol_errors: std::mem::take(&mut s.protocol_errors),
        callbacks: callbacks_done,
    })
}

/// Dials the stream with Plivo's signed upgrade (Nagle off: one small message per tick).
async fn connect(
    cfg: &SimConfig,
    dial: &reqwest::Url,
    given: &str,
) -> Result<wire::Socket, SimError> {
    let request = callbacks::ws_request(cfg, dial, given)?;
    let connect = tokio_tungstenite::connect_async_with_config(request, None, true);
    let (socket, _) = tokio::time::timeout(cfg.timeouts.connect, connect)
        .await
        .map_err(|_| SimError::Timeout { stage: "connect" })?
        .map_err(|source| SimError::Connect {
            url: dial.to_string(),
            source: Box::new(source),
        })?;
    Ok(socket)
}

/// Waits up to `limit` for a task, then aborts it.
async fn finish(mut handle: JoinHandle<()>, limit: Duration) {
    if tokio::time::timeout(limit, &mut handle).await.is_err() {
        handle.abort();
    }
}

fn ms_since(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

/// What the clock loop hands back.
struct ClockOutcome {
    end: EndReason,
    ticks: u64,
    stats: ClockStats,
    caller_turns: Vec<super::script::CallerTurn>,
    /// Steps never started because the other side ended the call.
    skipped_steps: Vec<String>,
}

/// Plays the call, one tick per 20 ms of simulated time.
async fn run_clock(
    shared: &Arc<Mutex<Shared>>,
    tx: &mpsc::Sender<Outgoing>,
    mut runner: Runner,
    cfg: &SimConfig,
    format: MediaFormat,
    stream_ticks: Option<u64>,
    rest_hangup: Option<&CancellationToken>,
) -> ClockOutcome {
    let t0 = lock(shared).t0;
    let period_s = FRAME_MS as f64 / 1000.0 / cfg.speed;
    let max_ticks = ticks_for(cfg.timeouts.max_call);
    let mut encoder = Encoder::new(format);
    let mut stats = ClockStats::default();
    let mut frame = [0i16; FRAME_SAMPLES_8K];
    let mut turns_started = 0u64;
    let mut tick = 0u64;
    let end = loop {
        let deadline = t0 + Duration::from_secs_f64(tick as f64 * period_s);
        tokio::time::sleep_until(tokio::time::Instant::from_std(deadline)).await;
        let late = Instant::now()
            .saturating_duration_since(deadline)
            .as_secs_f64();
        stats.max_late_ms = stats.max_late_ms.max(late * 1000.0);
        if late > period_s {
            stats.late_ticks += 1;
        }

        let mut s = lock(shared);
        if rest_hangup.is_some_and(CancellationToken::is_cancelled) {
            break EndReason::ApiHangup;
        }
        if s.server_closed {
            break EndReason::ServerClosed;
        }
        if stream_ticks.is_some_and(|limit| tick >= limit) {
            break EndReason::StreamTimeout;
        }
        if tick >= max_ticks {
            break EndReason::TimeLimit;
        }
        s.tick = tick;
        let played = s.phone.tick(&mut frame);
        for name in played.reached {
            s.counts.played_stream_sent += 1;
            s.at_tick(EventKind::CheckpointPlayed { name: name.clone() });
            s.send(tx, Outgoing::Played { name });
        }
        if played.turn_ended {
            s.trace.checkpoint_ends.push(tick);
        }
        let view = PhoneView {
            agent_heard: played.agent_samples > 0,
            idle: s.phone.is_idle(),
            turns_completed: s.phone.turns_completed(),
        };
        let plan = runner.tick(tick, view);
        for event in &plan.events {
            s.at_tick(match *event {
                ScriptEvent::StepStarted { index, kind } => EventKind::StepStarted { index, kind },
                ScriptEvent::WaitTimedOut { index } => EventKind::WaitTimedOut { index },
            });
        }
        match plan.finish {
            Some(Finish::Done) => break EndReason::ScriptDone,
            Some(Finish::Hangup) => break EndReason::CallerHangup,
            None => {}
        }
        if played.turn_started {
            turns_started += 1;
            if turns_started == 1 {
                s.at_tick(EventKind::FirstAgentAudioHeard);
            }
            s.at_tick(EventKind::AgentTurnStarted {
                turn: turns_started,
            });
        }
        s.trace.agent.push(played.agent_samples as u16);
        if s.detail == Detail::Full {
            s.heard.extend_from_slice(&frame);
            s.sent.extend_from_slice(&plan.frame);
        }
        let payload = encoder.encode(&plan.frame);
        let chunk = tick + 1;
        s.counts.media_sent += 1;
        if s.detail == Detail::Full {
            s.at_tick(EventKind::MediaSent { chunk });
        }
        let timestamp = tick * FRAME_MS;
        s.send(
            tx,
            Outgoing::Media {
                timestamp,
                chunk,
                payload,
            },
        );
        if let Some(digit) = plan.dtmf {
            s.counts.dtmf_sent += 1;
            s.at_tick(EventKind::DtmfSent { digit });
            s.send(tx, Outgoing::Dtmf { digit, timestamp });
        }
        drop(s);
        tick += 1;
    };
    let skipped_steps = match end {
        EndReason::ScriptDone | EndReason::CallerHangup => Vec::new(),
        _ => runner.not_started(),
    };
    ClockOutcome {
        end,
        ticks: tick,
        stats,
        caller_turns: runner.turns().to_vec(),
        skipped_steps,
    }
}

/// Caller frames (8 kHz) → `media` payloads in the stream's format.
struct Encoder {
    format: MediaFormat,
    upsampler: Option<Resampler>,
    wide: Vec<i16>,
    scratch: Vec<u8>,
}

impl Encoder {
    fn new(format: MediaFormat) -> Self {
        let upsampler = match format {
            // 8 → 16 kHz is a supported pair; if it ever failed, frames would go out at 8 kHz
            // and the server's format checks would say so.
            MediaFormat::L16At16k => Resampler::new(Rate::Hz8000, Rate::Hz16000).ok(),
            _ => None,
        };
        Self {
            format,
            wide: vec![0; 2 * FRAME_SAMPLES_8K],
            upsampler,
            scratch: Vec::new(),
        }
    }

    fn encode(&mut self, frame: &[i16]) -> String {
        let mut out = String::new();
        match self.upsampler.as_mut() {
            Some(up) => {
                let n = up.process(frame, &mut self.wide).unwrap_or(0);
                encode_payload(&self.wide[..n], self.format, &mut self.scratch, &mut out);
            }
            None => encode_payload(frame, self.format, &mut self.scratch, &mut out),
        }
        out
    }
}
