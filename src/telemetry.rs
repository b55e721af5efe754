//! Metrics: names, the Prometheus recorder, and the typed events that bump them.
//!
//! One process-wide recorder is installed the first time [`install`] runs; every server
//! in the process (tests start several) renders from it. Every metric name lives here, so
//! `/metrics` is documented in one place. Label values are fixed `&'static str`s, never
//! caller-controlled text, so cardinality stays bounded.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Calls with a live media stream.
pub const ACTIVE_CALLS: &str = "voxgate_active_calls";
/// Calls answered with a refusal, by `reason`.
pub const CALLS_REFUSED: &str = "voxgate_calls_refused_total";
/// Caller frames received and handed to the pipeline.
pub const FRAMES_IN: &str = "voxgate_frames_in_total";
/// 20 ms agent frames sent as `playAudio`.
pub const FRAMES_OUT: &str = "voxgate_frames_out_total";
/// Frames dropped anywhere on the media path, by `stage`.
pub const FRAMES_DROPPED: &str = "voxgate_frames_dropped_total";
/// Caller frames waiting for a DSP worker, summed over calls.
pub const PIPELINE_QUEUE_DEPTH: &str = "voxgate_pipeline_queue_depth";
/// Frames processed by the DSP workers.
pub const PIPELINE_FRAMES: &str = "voxgate_pipeline_frames_total";
/// How far ahead of real time agent audio was when sent, seconds.
pub const PLAYOUT_LEAD: &str = "voxgate_playout_lead_seconds";
/// Barge-ins: the caller spoke over the agent and its audio was cleared.
pub const BARGE_INS: &str = "voxgate_barge_ins_total";
/// Requests refused for a bad or missing signature, by `route` and `kind`.
pub const SIGNATURE_FAILURES: &str = "voxgate_signature_failures_total";
/// Inbound WebSocket messages dropped, by `kind`.
pub const BAD_MESSAGES: &str = "voxgate_bad_messages_total";
/// Media chunks that arrived out of order, by `outcome` (`reordered`, `late`, `resync`).
pub const CHUNKS_OUT_OF_ORDER: &str = "voxgate_chunks_out_of_order_total";
/// Agent turns, by how their playout was confirmed (`played`, `timeout`, `cleared`), or
/// `unsent` when they never reached the socket.
pub const TURNS: &str = "voxgate_turns_total";
/// Caller speech end → `playedStream` of the agent's answer, seconds.
pub const TURN_HEARD_LATENCY: &str = "voxgate_turn_heard_latency_seconds";
/// Streams ended, by `reason` (`closed`, `start_timeout`, `capacity`, `idle_timeout`,
/// `write_timeout`, `too_large`, `invalid_utf8`, `taken_over_or_hung_up`, `shutdown`).
pub const STREAMS_ENDED: &str = "voxgate_streams_ended_total";
/// Plivo callbacks received, by `kind` and whether they were `duplicate`.
pub const CALLBACKS: &str = "voxgate_callbacks_total";
/// HTTP connections open (requests, keep-alive and upgraded WebSockets).
pub const HTTP_CONNECTIONS: &str = "voxgate_http_connections";
/// HTTP connections closed at accept because `http.max_connections` were open.
pub const HTTP_CONNECTIONS_REFUSED: &str = "voxgate_http_connections_refused_total";

// Offline speech recognition (`providers::pocketsphinx`); its dropped frames are
// `FRAMES_DROPPED{stage="stt"}`.
/// Recognising streams open.
pub const STT_STREAMS: &str = "voxgate_stt_streams";
/// Streams refused because `pocketsphinx.max_streams` were open.
pub const STT_REFUSED: &str = "voxgate_stt_refused_total";
/// Recognition results, by `kind` (`partial`, `final`) and `outcome` (`sent`, `dropped`).
pub const STT_RESULTS: &str = "voxgate_stt_results_total";

// Delivery of lifecycle events to the sinks (`control::deliver`); `sink` is `queue` or
// `backend`.
/// Events acknowledged by a sink, by `sink`.
pub const DELIVERIES: &str = "voxgate_deliveries_total";
/// Failed deliveries scheduled for another try, by `sink`.
pub const DELIVERY_RETRIES: &str = "voxgate_delivery_retries_total";
/// Events parked as dead letters, by `sink` and `reason` (`rejected`, `gave_up`).
pub const DEAD_LETTERS: &str = "voxgate_dead_letters_total";
/// Event occurred → acknowledged by the sink, seconds, by `sink`.
pub const DELIVERY_LATENCY: &str = "voxgate_delivery_latency_seconds";

// Reconcile (`control::reconcile`): Plivo's REST API asked about calls with late callbacks.
/// Reconcile checks, by `outcome` (`live`, `ended`, `not_ready`, `error`).
pub const RECONCILE_CHECKS: &str = "voxgate_reconcile_checks_total";
/// Calls reconcile stopped checking after too many consecutive errors.
pub const RECONCILE_GAVE_UP: &str = "voxgate_reconcile_gave_up_total";

// Recordings after the call (`recording::publish`, `upload`, `retention`).
/// Recordings stored where their URL points and announced, by `target` (`local`, `file`,
/// `s3`, `gcs`).
pub const RECORDINGS_PUBLISHED: &str = "voxgate_recordings_published_total";
/// Failed recording uploads scheduled for another try, by `target`.
pub const RECORDING_UPLOAD_RETRIES: &str = "voxgate_recording_upload_retries_total";
/// Recordings that hit a failure, by `stage`: `encode` (kept and uploaded as WAV),
/// `upload` (gave up; the local file is kept), `announce` (the control plane refused).
pub const RECORDING_PUBLISH_FAILURES: &str = "voxgate_recording_publish_failures_total";
/// Local recordings the retention sweep handled, by `outcome` (`deleted`, `failed`).
pub const RECORDINGS_SWEPT: &str = "voxgate_recordings_swept_total";

// Recording (`recording`): the stereo WAV writer.
/// Recordings being written.
pub const RECORDINGS_ACTIVE: &str = "voxgate_recordings_active";
/// Recordings ended, by `outcome` (`finished`, `failed`, `empty`).
pub const RECORDINGS: &str = "voxgate_recordings_total";
/// Bytes of audio written to recordings.
pub const RECORDING_BYTES: &str = "voxgate_recording_bytes_total";
/// Audio the recording timeline refused or cut, by `reason` (`caller_late`,
/// `caller_refused`, `agent_overflow` in frames; `agent_cut` in 20 ms of audio).
pub const RECORDING_REFUSED: &str = "voxgate_recording_refused_total";
/// Recordings left by a crash found at start-up, by `outcome` (`repaired`, `failed`).
pub const RECORDING_REPAIRS: &str = "voxgate_recording_repairs_total";
/// Caller frames or events the agent's inbox had no room for, by `kind` (`audio`, `event`).
pub const AGENT_INPUT_DROPPED: &str = "voxgate_agent_input_dropped_total";
/// Agents that failed mid-call, by `how` (`panicked`, `stalled`, `finished`): the call got
/// the fallback line and was hung up.
pub const AGENT_FAILURES: &str = "voxgate_agent_failures_total";
/// Agent audio the session could not use, by `reason` (`no_open_turn`, `resample`).
pub const AGENT_AUDIO_DROPPED: &str = "voxgate_agent_audio_dropped_total";
/// Each stage of an agent turn, seconds after the caller's speech ended, by `stage`
/// (`end_of_turn`, `stt_final`, `decided`, `first_tts_audio`, `first_play_audio`,
/// `first_heard`, `played_stream`, `gateway`).
pub const TURN_STAGE: &str = "voxgate_turn_stage_seconds";
/// Calls ended by voxgate's side, by `by` (`agent`, `voxgate`).
pub const HANGUPS: &str = "voxgate_hangups_total";

// Offline speech (`providers::espeak`).
/// Utterances espeak-ng synthesised to the end (cache hits not counted).
pub const ESPEAK_UTTERANCES: &str = "voxgate_espeak_utterances_total";
/// Rendered-prompt cache lookups, by `outcome` (`hit`, `miss`).
pub const ESPEAK_CACHE: &str = "voxgate_espeak_cache_total";
/// Utterances refused because the synthesis queue was full.
pub const ESPEAK_BUSY: &str = "voxgate_espeak_busy_total";
/// Utterances whose reader dropped them before they were finished.
pub const ESPEAK_CANCELLED: &str = "voxgate_espeak_cancelled_total";
/// Utterances that failed, by `reason` (`failed`: bad input, unknown voice, a reader that
/// fell behind; `unavailable`: the library could not start; `busy`, `closed`).
pub const ESPEAK_ERRORS: &str = "voxgate_espeak_errors_total";
/// `speak` → first chunk of a synthesised utterance (queue wait included), seconds.
pub const ESPEAK_FIRST_CHUNK: &str = "voxgate_espeak_first_chunk_seconds";
/// Requests to hosted providers, by `provider`, `api` (`stt`, `chat`, `tts`, `batch`) and
/// `outcome` (`ok`, `error`, `cancelled`).
pub const PROVIDER_REQUESTS: &str = "voxgate_provider_requests_total";
/// Provider failures, by `provider` and `kind` ([`crate::providers::api::ProviderError::kind`]).
pub const PROVIDER_ERRORS: &str = "voxgate_provider_errors_total";
/// Provider messages that were not the provider's protocol (skipped), by `provider`.
pub const PROVIDER_BAD_MESSAGES: &str = "voxgate_provider_bad_messages_total";
/// Interim results and speech-start events a live STT dropped because the agent was
/// behind, by `provider` (finals are never dropped).
pub const PROVIDER_STT_EVENTS_DROPPED: &str = "voxgate_provider_stt_events_dropped_total";
/// Request sent → first byte of a provider's answer, seconds, by `provider` and `api`.
pub const PROVIDER_FIRST_BYTE: &str = "voxgate_provider_first_byte_seconds";
/// Provider failures an LLM agent met mid-call, by `api` (`stt`, `chat`, `tts`, `tool`) and
/// `outcome` (`retried`, `fallback`, `goodbye`; `reported` for a tool, whose failure the model hears).
pub const AGENT_PROVIDER_FAILURES: &str = "voxgate_agent_provider_failures_total";

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the Prometheus recorder once per process and returns its handle.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                // Delivery spans milliseconds (healthy) to hours (a sink was down).
                .set_buckets_for_metric(
                    Matcher::Full(DELIVERY_LATENCY.into()),
                    &[
                        0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0,
                        3600.0, 21600.0, 86400.0,
                    ],
                )
                // A turn's stages: the gateway's own share is milliseconds, a whole turn
                // seconds.
                .and_then(|builder| {
                    builder.set_buckets_for_metric(
                        Matcher::Full(TURN_STAGE.into()),
                        &[
                            0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0,
                            10.0,
                        ],
                    )
                })
                .and_then(|builder| {
                    builder.set_buckets_for_metric(
                        Matcher::Suffix("seconds".into()),
                        &[0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0, 5.0],
                    )
                })
                .unwrap_or_else(|_| PrometheusBuilder::new());
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be installed (an embedding application's):
            // then ours still renders what is recorded through it directly.
            let _ = metrics::set_global_recorder(recorder);
            describe();
            handle
        })
        .clone()
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_gauge!(ACTIVE_CALLS, "Calls with a live media stream.");
    describe_counter!(CALLS_REFUSED, "Calls answered with a refusal, by reason.");
    describe_counter!(FRAMES_IN, "Caller frames handed to the pipeline.");
    describe_counter!(FRAMES_OUT, "20 ms agent frames sent as playAudio.");
    describe_counter!(
        FRAMES_DROPPED,
        "Frames dropped on the media path, by stage."
    );
    describe_gauge!(
        PIPELINE_QUEUE_DEPTH,
        "Caller frames waiting for a DSP worker."
    );
    describe_counter!(PIPELINE_FRAMES, "Frames processed by the DSP workers.");
    describe_histogram!(
        PLAYOUT_LEAD,
        "Lead of agent audio over real time when sent."
    );
    describe_counter!(
        BARGE_INS,
        "Caller spoke over the agent; its audio was cleared."
    );
    describe_counter!(
        SIGNATURE_FAILURES,
        "Requests refused for a bad or missing signature."
    );
    describe_counter!(BAD_MESSAGES, "Inbound WebSocket messages dropped, by kind.");
    describe_counter!(
        CHUNKS_OUT_OF_ORDER,
        "Media chunks out of order, by outcome."
    );
    describe_counter!(TURNS, "Agent turns, by how their playout was confirmed.");
    describe_histogram!(
        TURN_HEARD_LATENCY,
        "Caller speech end to playedStream of the answer."
    );
    describe_counter!(STREAMS_ENDED, "Media streams ended, by reason.");
    describe_counter!(CALLBACKS, "Plivo callbacks received, by kind.");
    describe_counter!(DELIVERIES, "Events acknowledged by a sink, by sink.");
    describe_counter!(
        DELIVERY_RETRIES,
        "Failed deliveries scheduled for another try, by sink."
    );
    describe_counter!(
        DEAD_LETTERS,
        "Events parked as dead letters, by sink and reason."
    );
    describe_histogram!(
        DELIVERY_LATENCY,
        "Event occurred to acknowledged by the sink, by sink."
    );
    describe_gauge!(RECORDINGS_ACTIVE, "Recordings being written.");
    describe_counter!(RECORDINGS, "Recordings ended, by outcome.");
    describe_counter!(RECORDING_BYTES, "Bytes of audio written to recordings.");
    describe_counter!(
        RECORDING_REFUSED,
        "Audio the recording timeline refused or cut, by reason."
    );
    describe_counter!(
        RECORDING_REPAIRS,
        "Recordings left by a crash found at start-up, by outcome."
    );
    describe_counter!(
        AGENT_INPUT_DROPPED,
        "Caller frames or events the agent's inbox had no room for, by kind."
    );
    describe_counter!(
        AGENT_FAILURES,
        "Agents that failed mid-call (fallback line, hang-up), by how."
    );
    describe_counter!(
        AGENT_AUDIO_DROPPED,
        "Agent audio the session could not use, by reason."
    );
    describe_counter!(
        PROVIDER_REQUESTS,
        "Requests to hosted providers, by provider, api and outcome."
    );
    describe_counter!(PROVIDER_ERRORS, "Provider failures, by provider and kind.");
    describe_counter!(
        PROVIDER_BAD_MESSAGES,
        "Provider messages that were not the provider's protocol, by provider."
    );
    describe_histogram!(
        PROVIDER_FIRST_BYTE,
        "Request sent to first byte of a provider's answer, seconds."
    );
    describe_counter!(
        AGENT_PROVIDER_FAILURES,
        "Provider failures an LLM agent met mid-call, by api and outcome."
    );
    describe_histogram!(
        TURN_STAGE,
        "Agent turn stages, seconds after the caller's speech ended, by stage."
    );
    describe_counter!(HANGUPS, "Calls ended by voxgate's side, by who.");
    describe_counter!(RECONCILE_CHECKS, "Reconcile checks, by outcome.");
    describe_counter!(
        RECONCILE_GAVE_UP,
        "Calls reconcile gave up on after consecutive errors."
    );
    describe_counter!(
        RECORDINGS_PUBLISHED,
        "Recordings stored and announced, by target."
    );
    describe_counter!(
        RECORDING_UPLOAD_RETRIES,
        "Failed recording uploads scheduled for another try, by target."
    );
    describe_counter!(
        RECORDING_PUBLISH_FAILURES,
        "Recordings that hit a failure, by stage."
    );
    describe_counter!(
        RECORDINGS_SWEPT,
        "Local recordings handled by the retention sweep, by outcome."
    );
    describe_counter!(
        ESPEAK_UTTERANCES,
        "Utterances espeak-ng synthesised to the end."
    );
    describe_counter!(ESPEAK_CACHE, "Rendered-prompt cache lookups, by outcome.");
    describe_counter!(ESPEAK_BUSY, "Utterances refused: synthesis queue full.");
    describe_counter!(
        ESPEAK_CANCELLED,
        "Utterances dropped by their reader before the end."
    );
    describe_counter!(ESPEAK_ERRORS, "Utterances that failed, by reason.");
    describe_histogram!(
        ESPEAK_FIRST_CHUNK,
        "speak to the first chunk of a synthesised utterance."
    );
}

/// Counts one dropped inbound message of `kind` (a fixed label).
pub fn bad_message(kind: &'static str) {
    metrics::counter!(BAD_MESSAGES, "kind" => kind).increment(1);
}
