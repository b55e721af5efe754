//! Builds each profile's providers once at start, from the `[openai]`, `[deepgram]` and
//! `[elevenlabs]` sections, sharing one client per provider across every profile and call.
//!
//! A profile that names a hosted provider whose public endpoint needs a key, with no key
//! configured, stops start-up with a message naming the variable to set: better than a
//! call that can only say its fallback line.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::profile::{LlmChoice, Profiles, SttChoice, TtsChoice};
use super::run::LlmSetup;
use crate::providers::api::{Chat, SpeechToText, TextToSpeech};
use crate::providers::deepgram::{DeepgramConfig, DeepgramLive};
use crate::providers::elevenlabs::{ElevenLabsConfig, ElevenLabsTts};
use crate::providers::espeak::tts::EspeakTts;
use crate::providers::espeak::{Espeak, SpeakOptions};
use crate::providers::openai::chat::OpenAiChat;
use crate::providers::openai::speech::OpenAiSpeech;
use crate::providers::openai::{OpenAiClient, OpenAiConfig};

/// The hosted providers' settings.
#[derive(Debug, Clone, Default)]
pub struct Hosted {
    /// `[openai]`.
    pub openai: OpenAiConfig,
    /// `[deepgram]`.
    pub deepgram: DeepgramConfig,
    /// `[elevenlabs]`.
    pub elevenlabs: ElevenLabsConfig,
}

/// Why the profiles' providers cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("agent profile {profile}: {reason}")]
pub struct SetupError {
    /// The profile.
    pub profile: String,
    /// What is missing.
    pub reason: String,
}

/// Each profile's providers, by profile name.
pub fn build(
    profiles: &Profiles,
    hosted: &Hosted,
    espeak: Option<&Espeak>,
) -> Result<BTreeMap<String, Arc<LlmSetup>>, SetupError> {
    let mut setups = BTreeMap::new();
    if profiles.is_empty() {
        return Ok(setups);
    }
    let openai = OpenAiClient::new(hosted.openai.clone()).map(Arc::new);
    let deepgram: Arc<dyn SpeechToText> = Arc::new(DeepgramLive::new(hosted.deepgram.clone()));
    // Tools' headers may hold secrets: a redirect to another host must not carry them.
    let http = reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(3))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| SetupError {
            profile: "(all)".into(),
            reason: format!("cannot build the tools' HTTP client: {e}"),
        })?;
    for profile in profiles.all() {
        let fail = |reason: String| SetupError {
            profile: profile.name.clone(),
            reason,
        };
        let Some(espeak) = espeak else {
            return Err(fail(
                "LLM agents say their fallback line with espeak-ng, which could not start (install espeak-ng-data)".into(),
            ));
        };
        let offline: Arc<dyn TextToSpeech> =
            Arc::new(EspeakTts::new(espeak.clone(), SpeakOptions::default()));
        let openai = || {
            let client = openai.clone().map_err(|e| fail(e.to_string()))?;
            if client.config().api_key.is_none()
                && is_public(&client.config().base_url, "api.openai.com")
            {
                return Err(fail(
                    "it uses OpenAI but no key is set (OPENAI_API_KEY or openai.api_key)".into(),
                ));
            }
            Ok(client)
        };
        let stt = match profile.stt {
            SttChoice::Deepgram => {
                if hosted.deepgram.api_key.is_none()
                    && is_public(&hosted.deepgram.base_url, "api.deepgram.com")
                {
                    return Err(fail(
                        "it uses Deepgram but no key is set (DEEPGRAM_API_KEY or deepgram.api_key)"
                            .into(),
                    ));
                }
                Arc::clone(&deepgram)
            }
        };
        let chat: Arc<dyn Chat> = match profile.llm {
            LlmChoice::OpenAi => Arc::new(OpenAiChat::new(openai()?, profile.model.as_deref())),
        };
        let tts: Arc<dyn TextToSpeech> = match profile.tts {
            TtsChoice::ElevenLabs => {
                if hosted.elevenlabs.api_key.is_none() {
                    return Err(fail(
                        "it speaks with ElevenLabs but no key is set (ELEVENLABS_API_KEY or elevenlabs.api_key)".into(),
                    ));
                }
                let mut config = hosted.elevenlabs.clone();
                if let Some(voice) = &profile.voice {
                    config.voice_id.clone_from(voice);
                }
                if let Some(model) = &profile.tts_model {
                    config.model_id.clone_from(model);
                }
                Arc::new(ElevenLabsTts::new(config))
            }
            TtsChoice::OpenAi => Arc::new(OpenAiSpeech::new(
                openai()?,
                profile.tts_model.as_deref(),
                profile.voice.as_deref(),
            )),
            TtsChoice::Espeak => Arc::new(EspeakTts::new(
                espeak.clone(),
                SpeakOptions {
                    voice: profile.voice.clone(),
                    ..SpeakOptions::default()
                },
            )),
        };
        setups.insert(
            profile.name.clone(),
            Arc::new(LlmSetup {
                profile: Arc::clone(profile),
                stt,
                chat,
                tts,
                offline,
                http: http.clone(),
            }),
        );
    }
    Ok(setups)
}

/// Whether `url` is the provider's own public host (where a key is always needed).
fn is_public(url: &url::Url, host: &str) -> bool {
    url.host_str() == Some(host)
}
