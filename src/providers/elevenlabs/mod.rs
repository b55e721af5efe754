//! ElevenLabs text to speech over the stream-input WebSocket
//! (`{base}/v1/text-to-speech/{voice_id}/stream-input`, providers.md §6.1): one socket, one
//! generation, one utterance.
//!
//! [`ElevenLabsTts::open`] connects ([`ws::connect`]: connect timeout, key in the
//! `xi-api-key` header marked sensitive) and sends the init message (one space of text, the
//! voice settings, the chunk schedule); the socket's task (`stream.rs`) then sends each text
//! piece as it comes with `"flush":true` (the agent's pieces are whole clauses, to be
//! spoken now rather than held for the chunk schedule) and `{"text":""}` at the end, and
//! hands the server's audio on as it arrives: µ-law 8 kHz (`ulaw_8000`), bytes
//! untouched, ready for the phone, with the words of the character alignment timed from the
//! utterance's start (a word is handed on with the chunk its last character is in; one still
//! open at `isFinal` comes in a last chunk with no audio). `isFinal` ends the utterance and
//! the socket closes normally.
//!
//! Cancel (barge-in): the agent drops its [`TtsStream`] and the task closes the socket at
//! once with a normal close frame — this endpoint has no cancel message (§6.1), and what is
//! not generated is not billed.
//!
//! Never: puts the key anywhere but the upgrade request's header, or in an error (every
//! error passes [`ProviderError::without_key`]: a refusal, close reason or error message
//! may quote it); decodes or resamples the audio; keeps more than one server message (at most [`MAX_MESSAGE`] bytes) in memory.

pub mod config;
pub mod messages;
mod stream;

use url::Url;

pub use config::{ElevenLabsConfig, RawElevenLabs};

use crate::providers::api::ws::{self, KeyHeader, Socket};
use crate::providers::api::{ProviderError, Stage, TextToSpeech, TtsStream, http};
use messages::{GenerationConfig, InitMessage, VoiceSettings};

/// The provider's name in logs, errors and metrics.
pub const PROVIDER: &str = "elevenlabs";
/// The output format asked for: the phone's own µ-law at 8 kHz.
pub const OUTPUT_FORMAT: &str = "ulaw_8000";
/// The largest server message read (a chunk of audio is a few kB of base64).
pub const MAX_MESSAGE: usize = 1024 * 1024;

/// The key's header (marked sensitive by [`ws::connect`]).
const KEY_HEADER: KeyHeader = KeyHeader {
    name: "xi-api-key",
    prefix: "",
};

/// ElevenLabs' streaming text to speech with one voice and model.
#[derive(Debug, Clone)]
pub struct ElevenLabsTts {
    config: ElevenLabsConfig,
    url: Url,
}

impl ElevenLabsTts {
    /// An adapter for `config`.
    pub fn new(config: ElevenLabsConfig) -> Self {
        let url = stream_url(&config);
        Self { config, url }
    }

    /// The socket's URL (without the key, which goes in a header).
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// Connects ([`ws::connect`]) and sends the init message (under the idle timeout).
    async fn connect(&self) -> Result<Socket, ProviderError> {
        let key = self.config.api_key.as_ref().ok_or(ProviderError::Invalid {
            provider: PROVIDER,
            reason: "no API key (elevenlabs.api_key or ELEVENLABS_API_KEY)".to_owned(),
        })?;
        let init = InitMessage {
            text: " ",
            voice_settings: VoiceSettings {
                stability: self.config.stability,
                similarity_boost: self.config.similarity_boost,
                speed: self.config.speed,
            },
            generation_config: GenerationConfig {
                chunk_length_schedule: &self.config.chunk_length_schedule,
            },
        };
        let init = serde_json::to_string(&init).map_err(|e| ProviderError::Invalid {
            provider: PROVIDER,
            reason: e.to_string(),
        })?;
        let timeouts = &self.config.timeouts;
        let mut socket = ws::connect(
            PROVIDER,
            &self.url,
            Some((KEY_HEADER, key)),
            MAX_MESSAGE,
            timeouts,
        )
        .await?;
        timeouts
            .guard(PROVIDER, Stage::Idle, stream::send_text(&mut socket, init))
            .await
            .map_err(|e| e.without_key(Some(key)))?;
        Ok(socket)
    }
}

#[async_trait::async_trait]
impl TextToSpeech for ElevenLabsTts {
    fn name(&self) -> &'static str {
        PROVIDER
    }

    async fn open(&self) -> Result<TtsStream, ProviderError> {
        let socket = self
            .connect()
            .await
            .inspect_err(|e| http::count_error(PROVIDER, "tts", e))?;
        let (tts, task) = TtsStream::pair();
        tokio::spawn(stream::run(
            socket,
            task,
            self.config.timeouts,
            self.config.api_key.clone(),
        ));
        Ok(tts)
    }
}

/// `{base}/v1/text-to-speech/{voice_id}/stream-input?model_id=…&output_format=ulaw_8000`.
fn stream_url(config: &ElevenLabsConfig) -> Url {
    let mut url = config.base_url.clone();
    if let Ok(mut path) = url.path_segments_mut() {
        path.pop_if_empty().extend([
            "v1",
            "text-to-speech",
            config.voice_id.as_str(),
            "stream-input",
        ]);
    }
    url.query_pairs_mut()
        .clear()
        .append_pair("model_id", &config.model_id)
        .append_pair("output_format", OUTPUT_FORMAT);
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_url_names_voice_model_and_phone_format() {
        let config = RawElevenLabs {
            voice_id: Some("voice-1".into()),
            base_url: Some("ws://127.0.0.1:9/proxy/".into()),
            ..RawElevenLabs::default()
        }
        .validate()
        .unwrap();
        assert_eq!(
            ElevenLabsTts::new(config).url().as_str(),
            "ws://127.0.0.1:9/proxy/v1/text-to-speech/voice-1/stream-input\
             ?model_id=eleven_flash_v2_5&output_format=ulaw_8000"
        );
        assert_eq!(
            ElevenLabsTts::new(ElevenLabsConfig::default())
                .url()
                .as_str(),
            "wss://api.elevenlabs.io/v1/text-to-speech/21m00Tcm4TlvDq8ikWAM/stream-input\
             ?model_id=eleven_flash_v2_5&output_format=ulaw_8000"
        );
    }

    #[tokio::test]
    async fn no_key_no_socket() {
        let tts = ElevenLabsTts::new(ElevenLabsConfig::default());
        let error = tts.open().await.unwrap_err();
        assert!(matches!(error, ProviderError::Invalid { .. }), "{error}");
    }
}
