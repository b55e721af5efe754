//! The provider traits: what an agent asks of a hosted (or local) speech or language model,
//! independent of whose it is.
//!
//! Four capabilities, each an async trait held as `Arc<dyn …>` and built once per process
//! (an adapter owns one HTTP client or connector, shared by every call):
//! - [`SpeechToText`]: a live stream per call — caller audio in, interim and final
//!   transcripts with word timings out ([`SttStream`]);
//! - [`Chat`]: a chat completion streamed as text pieces and whole tool calls
//!   ([`ChatStream`]); dropping the stream closes the connection, which is the cancel;
//! - [`TextToSpeech`]: one utterance per [`TtsStream`] — text in, possibly in pieces, audio
//!   chunks out at the provider's own rate or as phone-ready µ-law, with word timings when
//!   the provider gives them; dropping the stream cancels it on the wire;
//! - [`BatchTranscription`]: a whole recording in, a transcript with times and speakers out
//!   (post-call work).
//!
//! Streams talk to their adapter's task through bounded channels, so an agent never waits
//! on a socket it did not choose to wait on, and every request runs under the
//! [`Timeouts`] (connect, first byte, idle) of its adapter's config.
//!
//! Depends on nothing in voxgate but the audio types and the retry timer; knows nothing of
//! calls, sessions or Plivo. Never: logs or formats an [`ApiKey`].

pub mod error;
pub mod http;
pub mod timeouts;
pub mod ws;

use std::pin::Pin;
use std::sync::Arc;

use futures_util::Stream;
use tokio::sync::mpsc;

use crate::audio::g711;
use crate::audio::resample::Rate;
pub use error::{ApiKey, ProviderError, Stage};
pub use timeouts::{RawTimeouts, Timeouts};

// ----- speech to text -------------------------------------------------------------------

/// The audio a live speech-to-text stream takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SttAudio {
    /// The phone's own G.711 µ-law at 8 kHz: Plivo's bytes, not transcoded.
    Mulaw8k,
    /// Little-endian 16-bit PCM at 16 kHz (the caller's audio resampled by the pipeline).
    Pcm16k,
}

impl SttAudio {
    /// The rate of the PCM [`SttStream::push`] takes.
    pub const fn rate(self) -> Rate {
        match self {
            Self::Mulaw8k => Rate::Hz8000,
            Self::Pcm16k => Rate::Hz16000,
        }
    }
}

/// Most bytes of one frame of STT audio (20 ms of 16 kHz PCM16).
pub const MAX_STT_FRAME: usize = 640;

/// One frame of caller audio on its way to a speech-to-text provider, in its wire
/// encoding, by value (no allocation per frame).
#[derive(Clone)]
pub struct SttFrame {
    len: usize,
    bytes: [u8; MAX_STT_FRAME],
}

impl SttFrame {
    /// The frame's bytes, as the provider receives them.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    /// `samples` encoded as `audio` (µ-law, or PCM16LE); samples beyond one frame are cut.
    pub fn encode(audio: SttAudio, samples: &[i16]) -> Self {
        let mut frame = Self {
            len: 0,
            bytes: [0; MAX_STT_FRAME],
        };
        match audio {
            SttAudio::Mulaw8k => {
                let n = samples.len().min(MAX_STT_FRAME);
                for (byte, &sample) in frame.bytes[..n].iter_mut().zip(samples) {
                    *byte = g711::pcm_to_ulaw(sample);
                }
                frame.len = n;
            }
            SttAudio::Pcm16k => {
                let n = samples.len().min(MAX_STT_FRAME / 2);
                for (pair, &sample) in frame.bytes.chunks_exact_mut(2).zip(&samples[..n]) {
                    pair.copy_from_slice(&sample.to_le_bytes());
                }
                frame.len = n * 2;
            }
        }
        frame
    }
}

impl std::fmt::Debug for SttFrame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SttFrame({} bytes)", self.len)
    }
}

/// A recognised word, timed from the start of the stream's audio.
#[derive(Debug, Clone, PartialEq)]
pub struct SttWord {
    /// The word as recognised (punctuated when the provider punctuates).
    pub text: String,
    /// Start, ms of stream audio.
    pub start_ms: u64,
    /// End, ms of stream audio.
    pub end_ms: u64,
    /// The provider's confidence, 0–1.
    pub confidence: f32,
}

/// What a live speech-to-text stream reports.
#[derive(Debug, Clone, PartialEq)]
pub enum SttEvent {
    /// A transcript of a stretch of audio: interim ones are replaced by later results, a
    /// turn's text is its finals joined.
    Transcript {
        /// The words' text (may be empty).
        text: String,
        /// Final for this stretch of audio (else interim).
        is_final: bool,
        /// The provider's endpoint: the speaker paused.
        speech_final: bool,
        /// The answer to a [`SttStream::finalize`].
        from_finalize: bool,
        /// The stretch's start, ms of stream audio.
        start_ms: u64,
        /// The stretch's end, ms of stream audio.
        end_ms: u64,
        /// Word timings.
        words: Vec<SttWord>,
        /// The provider's confidence, 0–1.
        confidence: f32,
    },
    /// The provider heard speech begin.
    SpeechStarted {
        /// ms of stream audio.
        at_ms: u64,
    },
    /// The provider decided the utterance ended (from word timing, even in noise).
    UtteranceEnd {
        /// The last word's end, ms of stream audio.
        last_word_end_ms: u64,
    },
}

/// What the agent's side sends to the adapter's task.
// A frame travels by value: boxing it would allocate once per frame.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum SttInput {
    /// Caller audio.
    Audio(SttFrame),
    /// The gateway decided the turn ended: flush what is buffered into final results.
    Finalize,
    /// The call is over: finish the audio sent, send the last finals, then close.
    Close,
}

/// Caller frames a stream may have waiting for its socket (2 s at 20 ms).
pub const STT_INPUT_CAPACITY: usize = 100;
/// Results a stream may have waiting for the agent.
pub const STT_EVENT_CAPACITY: usize = 64;

/// One call's live speech-to-text stream (the agent's end). Dropping it closes the stream.
#[derive(Debug)]
pub struct SttStream {
    audio: SttAudio,
    input: mpsc::Sender<SttInput>,
    events: mpsc::Receiver<Result<SttEvent, ProviderError>>,
}

/// The adapter's end of an [`SttStream`].
#[derive(Debug)]
pub struct SttTask {
    /// Audio and control from the agent; `None` once the agent dropped its end.
    pub input: mpsc::Receiver<SttInput>,
    /// Results for the agent.
    pub events: mpsc::Sender<Result<SttEvent, ProviderError>>,
}

impl SttStream {
    /// A new stream's two ends, for an adapter to hand out and drive.
    pub fn pair(audio: SttAudio) -> (Self, SttTask) {
        let (input_tx, input_rx) = mpsc::channel(STT_INPUT_CAPACITY);
        let (events_tx, events_rx) = mpsc::channel(STT_EVENT_CAPACITY);
        (
            Self {
                audio,
                input: input_tx,
                events: events_rx,
            },
            SttTask {
                input: input_rx,
                events: events_tx,
            },
        )
    }

    /// The audio the stream takes.
    pub fn audio(&self) -> SttAudio {
        self.audio
    }

    /// Sends one frame of caller PCM at [`SttAudio::rate`]; never waits: false when the
    /// socket is this far behind (the caller counts the drop) or the stream ended.
    pub fn push(&self, samples: &[i16]) -> bool {
        self.input
            .try_send(SttInput::Audio(SttFrame::encode(self.audio, samples)))
            .is_ok()
    }

    /// Asks for final results of what was sent so far (the gateway's end of turn).
    pub fn finalize(&self) -> bool {
        self.input.try_send(SttInput::Finalize).is_ok()
    }

    /// Asks the provider to finish and close; results still arrive until [`SttStream::next`]
    /// returns `None`.
    pub fn close(&self) -> bool {
        self.input.try_send(SttInput::Close).is_ok()
    }

    /// The next result; `None` once the stream ended. An `Err` ends it.
    pub async fn next(&mut self) -> Option<Result<SttEvent, ProviderError>> {
        self.events.recv().await
    }
}

/// A live speech-to-text provider.
#[async_trait::async_trait]
pub trait SpeechToText: Send + Sync + 'static {
    /// The provider's name, for logs and metrics.
    fn name(&self) -> &'static str;
    /// The audio its streams take.
    fn audio(&self) -> SttAudio;
    /// Opens a stream (connected when this returns; call it when the call starts, before
    /// the caller's first word).
    async fn open(&self) -> Result<SttStream, ProviderError>;
}

// ----- chat -----------------------------------------------------------------------------

/// Who said a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Instructions.
    System,
    /// The caller.
    User,
    /// The agent.
    Assistant,
    /// A tool's result.
    Tool,
}

impl Role {
    /// The role's name on the wire.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::System => "system",
            Self::User => "user",
            Self::Assistant => "assistant",
            Self::Tool => "tool",
        }
    }
}

/// A tool call the model made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolCall {
    /// The model's id for the call (echoed in the tool's result).
    pub id: String,
    /// The tool.
    pub name: String,
    /// Its arguments, JSON text as the model wrote them (may not parse).
    pub arguments: String,
}

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Who said it.
    pub role: Role,
    /// What was said (empty for an assistant message that only calls tools).
    pub content: String,
    /// Tool calls (assistant messages).
    pub tool_calls: Vec<ToolCall>,
    /// The call this answers (tool messages).
    pub tool_call_id: Option<String>,
}

impl Message {
    /// A plain message.
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Self {
            role,
            content: content.into(),
            tool_calls: Vec::new(),
            tool_call_id: None,
        }
    }

    /// A tool's result for the call `id`.
    pub fn tool_result(id: impl Into<String>, content: impl Into<String>) -> Self {
        Self {
            role: Role::Tool,
            content: content.into(),
            tool_calls: Vec::new(),
            tool_call_id: Some(id.into()),
        }
    }
}

/// A tool the model may call.
#[derive(Debug, Clone, PartialEq)]
pub struct Tool {
    /// Its name (`[a-zA-Z0-9_-]`).
    pub name: String,
    /// What it does, for the model.
    pub description: String,
    /// A JSON schema of its arguments.
    pub parameters: serde_json::Value,
}

/// A chat completion request.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ChatRequest {
    /// The conversation so far.
    pub messages: Vec<Message>,
    /// Tools the model may call.
    pub tools: Vec<Tool>,
    /// Sampling temperature, if set.
    pub temperature: Option<f32>,
    /// Most tokens to write, if set.
    pub max_tokens: Option<u32>,
    /// The answer must be JSON matching this schema (structured output), if set.
    pub answer_schema: Option<AnswerSchema>,
}

/// A JSON schema the answer must match (OpenAI's `response_format: json_schema`).
#[derive(Debug, Clone, PartialEq)]
pub struct AnswerSchema {
    /// Its name (`[a-zA-Z0-9_-]{1,64}`).
    pub name: String,
    /// The schema. With `strict`, every property is required and objects have
    /// `additionalProperties: false`.
    pub schema: serde_json::Value,
    /// Ask the server to constrain the answer to the schema (where it can).
    pub strict: bool,
}

/// A whole answer ([`Chat::complete`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatAnswer {
    /// Its text (with an [`AnswerSchema`], the JSON).
    pub text: String,
    /// Tool calls it made.
    pub tool_calls: Vec<ToolCall>,
    /// Why it stopped.
    pub finish: FinishReason,
}

/// Why a completion stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FinishReason {
    /// It finished its answer.
    Stop,
    /// It hit the token limit.
    Length,
    /// It called tools.
    ToolCalls,
    /// A content filter stopped it.
    ContentFilter,
    /// Something else the provider named.
    Other(String),
}

/// What a streaming completion yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChatEvent {
    /// A piece of the answer's text.
    Text(String),
    /// A whole tool call (assembled from the stream's fragments).
    ToolCall(ToolCall),
    /// The answer is complete. Always the last event of a stream that did not fail.
    Done(FinishReason),
}

/// A streaming completion. Dropping it closes the connection: the provider's cancel.
pub type ChatStream = Pin<Box<dyn Stream<Item = Result<ChatEvent, ProviderError>> + Send>>;

/// A chat model.
#[async_trait::async_trait]
pub trait Chat: Send + Sync + 'static {
    /// The provider's name, for logs and metrics.
    fn name(&self) -> &'static str;
    /// Starts a completion; returns once the answer's headers arrived.
    async fn stream(&self, request: ChatRequest) -> Result<ChatStream, ProviderError>;

    /// The whole answer at once, for work nobody listens to live (post-call summaries
    /// and extraction; some servers take structured output only without streaming). By
    /// default the stream, collected.
    async fn complete(&self, request: ChatRequest) -> Result<ChatAnswer, ProviderError> {
        use futures_util::StreamExt as _;
        let mut stream = self.stream(request).await?;
        let mut answer = ChatAnswer {
            text: String::new(),
            tool_calls: Vec::new(),
            finish: FinishReason::Other("no end".into()),
        };
        while let Some(event) = stream.next().await {
            match event? {
                ChatEvent::Text(text) => answer.text.push_str(&text),
                ChatEvent::ToolCall(call) => answer.tool_calls.push(call),
                ChatEvent::Done(finish) => {
                    answer.finish = finish;
                    return Ok(answer);
                }
            }
        }
        Err(ProviderError::Protocol {
            provider: self.name(),
            reason: "the answer ended without finishing".into(),
        })
    }
}

// ----- text to speech -------------------------------------------------------------------

/// A piece of synthesized audio.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TtsAudio {
    /// Mono PCM16 at the provider's rate (the session resamples).
    Pcm {
        /// Its rate.
        rate: Rate,
        /// The samples.
        samples: Arc<[i16]>,
    },
    /// G.711 µ-law at 8 kHz, ready for the phone as it is.
    Mulaw8k(Arc<[u8]>),
}

impl TtsAudio {
    /// Its length in ms.
    pub fn duration_ms(&self) -> u64 {
        match self {
            Self::Pcm { rate, samples } => samples.len() as u64 * 1_000 / u64::from(rate.hz()),
            Self::Mulaw8k(bytes) => bytes.len() as u64 / 8,
        }
    }
}

/// A word of the utterance and when it is spoken, from the utterance's first sample.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpokenWord {
    /// The word.
    pub text: String,
    /// Its start, ms.
    pub start_ms: u64,
    /// Its end, ms.
    pub end_ms: u64,
}

/// One chunk of an utterance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TtsChunk {
    /// The audio.
    pub audio: TtsAudio,
    /// Words that start in this chunk, timed from the utterance's start (empty when the
    /// provider gives no timings).
    pub words: Vec<SpokenWord>,
}

/// What the agent's side sends to a TTS adapter's task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TtsInput {
    /// More text of the utterance.
    Text(String),
    /// No more text: speak what is buffered and end.
    End,
}

/// Text pieces an utterance may have waiting.
pub const TTS_INPUT_CAPACITY: usize = 64;
/// Audio chunks an utterance may have waiting for the agent.
pub const TTS_CHUNK_CAPACITY: usize = 256;

/// One utterance being synthesized (the agent's end). Dropping it cancels the utterance
/// at the provider.
#[derive(Debug)]
pub struct TtsStream {
    input: mpsc::Sender<TtsInput>,
    chunks: mpsc::Receiver<Result<TtsChunk, ProviderError>>,
}

/// The adapter's end of a [`TtsStream`].
#[derive(Debug)]
pub struct TtsTask {
    /// Text from the agent; `None` once the agent dropped its end (cancel).
    pub input: mpsc::Receiver<TtsInput>,
    /// Audio for the agent; closed when the agent dropped its end (cancel).
    pub chunks: mpsc::Sender<Result<TtsChunk, ProviderError>>,
}

impl TtsStream {
    /// A new utterance's two ends, for an adapter to hand out and drive.
    pub fn pair() -> (Self, TtsTask) {
        let (input_tx, input_rx) = mpsc::channel(TTS_INPUT_CAPACITY);
        let (chunks_tx, chunks_rx) = mpsc::channel(TTS_CHUNK_CAPACITY);
        (
            Self {
                input: input_tx,
                chunks: chunks_rx,
            },
            TtsTask {
                input: input_rx,
                chunks: chunks_tx,
            },
        )
    }

    /// Adds text to the utterance (a speakable piece: a clause or a sentence).
    pub async fn say(&self, text: impl Into<String>) -> Result<(), ProviderError> {
        self.send(TtsInput::Text(text.into())).await
    }

    /// Ends the utterance's text: the rest of its audio follows, then the stream ends.
    pub async fn end(&self) -> Result<(), ProviderError> {
        self.send(TtsInput::End).await
    }

    /// Hands `input` over without waiting: an error when the utterance's inbox is full
    /// ([`TTS_INPUT_CAPACITY`] pieces behind) or the adapter is gone.
    pub fn try_send(&self, input: TtsInput) -> Result<(), ProviderError> {
        self.input
            .try_send(input)
            .map_err(|_| ProviderError::Closed { provider: "tts" })
    }

    async fn send(&self, input: TtsInput) -> Result<(), ProviderError> {
        self.input
            .send(input)
            .await
            .map_err(|_| ProviderError::Closed { provider: "tts" })
    }

    /// The next chunk; `None` once the utterance is complete. An `Err` ends it.
    pub async fn next(&mut self) -> Option<Result<TtsChunk, ProviderError>> {
        self.chunks.recv().await
    }
}

/// A streaming text-to-speech provider.
#[async_trait::async_trait]
pub trait TextToSpeech: Send + Sync + 'static {
    /// The provider's name, for logs and metrics.
    fn name(&self) -> &'static str;
    /// Starts an utterance.
    async fn open(&self) -> Result<TtsStream, ProviderError>;
}

// ----- batch transcription --------------------------------------------------------------

/// A stretch of one speaker's speech in a recording.
#[derive(Debug, Clone, PartialEq)]
pub struct Utterance {
    /// The recording's channel it is on (0 = caller, 1 = agent in voxgate's stereo WAV).
    pub channel: u32,
    /// The speaker the provider told apart, if it diarized.
    pub speaker: Option<u32>,
    /// Start, ms from the recording's start.
    pub start_ms: u64,
    /// End, ms.
    pub end_ms: u64,
    /// What was said.
    pub text: String,
}

/// A transcript of a whole recording.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BatchTranscript {
    /// The utterances, by start time.
    pub utterances: Vec<Utterance>,
    /// The recording's length, ms, if the provider said.
    pub duration_ms: Option<u64>,
}

/// A recording-transcription provider (post-call work).
#[async_trait::async_trait]
pub trait BatchTranscription: Send + Sync + 'static {
    /// The provider's name, for logs and metrics.
    fn name(&self) -> &'static str;
    /// Transcribes a WAV file (voxgate's: stereo, caller left, agent right).
    async fn transcribe(&self, wav: Vec<u8>) -> Result<BatchTranscript, ProviderError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_carry_the_phones_bytes() {
        // µ-law decoded and encoded again gives Plivo's bytes back (0x7f, µ-law's
        // "negative zero", comes back as 0xff: the same silence).
        let plivo: Vec<u8> = (0..=255u8).filter(|&b| b != 0x7f).collect();
        let pcm: Vec<i16> = plivo.iter().map(|&b| g711::ulaw_to_pcm(b)).collect();
        for (bytes, pcm) in plivo.chunks(160).zip(pcm.chunks(160)) {
            assert_eq!(SttFrame::encode(SttAudio::Mulaw8k, pcm).bytes(), bytes);
        }
        let frame = SttFrame::encode(SttAudio::Pcm16k, &[1, -2, 0x1234]);
        assert_eq!(frame.bytes(), &[1, 0, 0xfe, 0xff, 0x34, 0x12]);
        assert_eq!(
            SttFrame::encode(SttAudio::Pcm16k, &[0; 400]).bytes().len(),
            MAX_STT_FRAME
        );
    }

    #[tokio::test]
    async fn a_full_stt_stream_refuses_instead_of_waiting() {
        let (stream, mut task) = SttStream::pair(SttAudio::Mulaw8k);
        for _ in 0..STT_INPUT_CAPACITY {
            assert!(stream.push(&[0; 160]));
        }
        assert!(!stream.push(&[0; 160]));
        assert!(
            matches!(task.input.recv().await, Some(SttInput::Audio(f)) if f.bytes().len() == 160)
        );
        drop(stream);
        let mut left = 0;
        while task.input.recv().await.is_some() {
            left += 1;
        }
        assert_eq!(left, STT_INPUT_CAPACITY - 1);
    }

    #[tokio::test]
    async fn dropping_a_tts_stream_is_seen_by_its_adapter() {
        let (stream, task) = TtsStream::pair();
        stream.say("Hello. ").await.unwrap();
        drop(stream);
        task.chunks.closed().await;
        assert!(task.chunks.is_closed());
    }

    #[test]
    fn audio_knows_its_length() {
        let pcm = TtsAudio::Pcm {
            rate: Rate::Hz24000,
            samples: vec![0; 4_800].into(),
        };
        assert_eq!(pcm.duration_ms(), 200);
        assert_eq!(TtsAudio::Mulaw8k(vec![0; 160].into()).duration_ms(), 20);
    }
}
