//! Agent profiles: what an LLM agent is told, says and can do, in TOML — one file per
//! profile in `agent.profiles_dir`, chosen per call by name like flows.
//!
//! ```toml
//! name = "sales"
//! system_prompt = "You are Ava from Acme. The caller is {{ metadata.customer_name }}."
//! first_message = "Hi, this is Ava from Acme. Do you have a minute?"
//! [stt]
//! provider = "deepgram"
//! [llm]
//! provider = "openai"
//! model = "gpt-4o-mini"
//! [tts]
//! provider = "elevenlabs"
//! [[tools]]
//! name = "check_slot"
//! description = "Whether a time is free"
//! url = "http://127.0.0.1:9000/slots"
//! parameters = { type = "object", properties = { time = { type = "string" } } }
//! ```
//!
//! Every table refuses unknown keys and every template is checked at load, so a mistake
//! stops start-up instead of a call. Header values of HTTP tools may hold secrets: they
//! are never printed (a profile's `Debug` leaves them out).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::agent::flow::template;
use crate::agent::turn::Interruption;

/// The tools every LLM agent has.
pub const BUILT_IN_TOOLS: [&str; 2] = ["end_call", "set_slot"];
/// What the agent says before hanging up when the profile says nothing.
pub const DEFAULT_GOODBYE: &str = "Thank you for your time. Goodbye!";
/// What the agent says when a provider fails and the profile says nothing.
pub const DEFAULT_FALLBACK: &str = "Sorry, I missed that. Could you say it again?";
/// Most HTTP tools one profile may declare.
const MAX_TOOLS: usize = 32;
/// The longest an HTTP tool may be given.
const MAX_TOOL_TIMEOUT_MS: u64 = 30_000;

/// A profile file as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileFile {
    name: Option<String>,
    system_prompt: String,
    first_message: Option<String>,
    goodbye: Option<String>,
    fallback_line: Option<String>,
    max_failures: Option<u32>,
    #[serde(default)]
    interruption: Interruption,
    #[serde(default)]
    stt: SttFile,
    #[serde(default)]
    llm: LlmFile,
    #[serde(default)]
    tts: TtsFile,
    #[serde(default)]
    tools: Vec<ToolFile>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SttFile {
    provider: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LlmFile {
    provider: Option<String>,
    model: Option<String>,
    temperature: Option<f32>,
    max_tokens: Option<u32>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TtsFile {
    provider: Option<String>,
    voice: Option<String>,
    model: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ToolFile {
    name: String,
    description: String,
    #[serde(default)]
    parameters: Option<toml::Value>,
    url: String,
    method: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    timeout_ms: Option<u64>,
    filler: Option<String>,
}

/// Who recognises the caller's speech.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SttChoice {
    /// Deepgram live streaming (`[deepgram]`).
    Deepgram,
}

/// Who writes the answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LlmChoice {
    /// An OpenAI-compatible server (`[openai]`).
    OpenAi,
}

/// Who speaks them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TtsChoice {
    /// ElevenLabs over its stream-input WebSocket (`[elevenlabs]`), µ-law straight to the phone.
    ElevenLabs,
    /// An OpenAI-compatible `/audio/speech` (`[openai]`).
    OpenAi,
    /// espeak-ng, offline (`[espeak]`).
    Espeak,
}

/// An HTTP tool the model may call.
#[derive(Clone)]
pub struct HttpTool {
    /// Its name.
    pub name: String,
    /// What it does, for the model.
    pub description: String,
    /// JSON schema of its arguments.
    pub parameters: serde_json::Value,
    /// Where the call's arguments are sent.
    pub url: url::Url,
    /// `GET` (arguments as the query) or `POST`/`PUT`/`PATCH` (arguments as the JSON body).
    pub method: reqwest::Method,
    /// Headers sent with it (may hold secrets: never printed).
    pub headers: reqwest::header::HeaderMap,
    /// The longest the tool may take.
    pub timeout: Duration,
    /// Said while it runs, if set.
    pub filler: Option<String>,
}

impl std::fmt::Debug for HttpTool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpTool")
            .field("name", &self.name)
            .field("method", &self.method)
            .field("url", &self.url.as_str())
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// A validated profile.
#[derive(Debug, Clone)]
pub struct Profile {
    /// Its name.
    pub name: String,
    /// The system prompt (a template).
    pub system_prompt: String,
    /// What the agent says first (a template), if it speaks first.
    pub first_message: Option<String>,
    /// Said before hanging up (a template).
    pub goodbye: String,
    /// Said by espeak-ng when a provider fails (a template).
    pub fallback_line: String,
    /// Provider failures in one call before the agent says goodbye and hangs up.
    pub max_failures: u32,
    /// What lets the caller cut the agent off.
    pub interruption: Interruption,
    /// Speech recognition.
    pub stt: SttChoice,
    /// The chat model.
    pub llm: LlmChoice,
    /// The model, if not the provider section's default.
    pub model: Option<String>,
    /// Sampling temperature.
    pub temperature: Option<f32>,
    /// Most tokens per answer.
    pub max_tokens: Option<u32>,
    /// Speech.
    pub tts: TtsChoice,
    /// The voice, if not the provider section's default.
    pub voice: Option<String>,
    /// The TTS model, if not the provider section's default.
    pub tts_model: Option<String>,
    /// HTTP tools.
    pub tools: Vec<HttpTool>,
}

/// Why a profile is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("agent profile {file}: {reason}")]
pub struct ProfileError {
    /// The file.
    pub file: String,
    /// What is wrong.
    pub reason: String,
}

/// Parses and checks one profile file (`file` names it in errors and gives the default name).
pub fn parse_profile(file: &str, text: &str) -> Result<Profile, ProfileError> {
    let fail = |reason: String| ProfileError {
        file: file.to_owned(),
        reason,
    };
    let raw: ProfileFile = toml::from_str(text).map_err(|e| fail(e.message().to_owned()))?;
    let name = raw.name.clone().unwrap_or_else(|| {
        Path::new(file)
            .file_stem()
            .map_or_else(|| file.to_owned(), |s| s.to_string_lossy().into_owned())
    });
    if !valid_name(&name) {
        return Err(fail(format!(
            "name {name:?} must be 1-64 letters, digits, '_' or '-'"
        )));
    }
    for (key, source) in [
        ("system_prompt", Some(&raw.system_prompt)),
        ("first_message", raw.first_message.as_ref()),
        ("goodbye", raw.goodbye.as_ref()),
        ("fallback_line", raw.fallback_line.as_ref()),
    ] {
        if let Some(source) = source {
            template::check(source).map_err(|e| fail(format!("{key}: {e}")))?;
        }
    }
    if raw.system_prompt.trim().is_empty() {
        return Err(fail("system_prompt must not be empty".into()));
    }
    let stt = match raw.stt.provider.as_deref().unwrap_or("deepgram") {
        "deepgram" => SttChoice::Deepgram,
        other => {
            return Err(fail(format!(
                "stt.provider {other:?} is not one of: deepgram"
            )));
        }
    };
    let llm = match raw.llm.provider.as_deref().unwrap_or("openai") {
        "openai" => LlmChoice::OpenAi,
        other => {
            return Err(fail(format!(
                "llm.provider {other:?} is not one of: openai"
            )));
        }
    };
    let tts = match raw.tts.provider.as_deref().unwrap_or("elevenlabs") {
        "elevenlabs" => TtsChoice::ElevenLabs,
        "openai" => TtsChoice::OpenAi,
        "espeak" => TtsChoice::Espeak,
        other => {
            return Err(fail(format!(
                "tts.provider {other:?} is not one of: elevenlabs, openai, espeak"
            )));
        }
    };
    if let Some(t) = raw.llm.temperature
        && !(0.0..=2.0).contains(&t)
    {
        return Err(fail(format!("llm.temperature {t} is not between 0 and 2")));
    }
    let max_failures = raw.max_failures.unwrap_or(3);
    if max_failures == 0 {
        return Err(fail("max_failures must be at least 1".into()));
    }
    if raw.tools.len() > MAX_TOOLS {
        return Err(fail(format!("more than {MAX_TOOLS} tools")));
    }
    let mut tools: Vec<HttpTool> = Vec::new();
    for tool in raw.tools {
        let tool = http_tool(tool).map_err(fail)?;
        if BUILT_IN_TOOLS.contains(&tool.name.as_str()) || tools.iter().any(|t| t.name == tool.name)
        {
            return Err(fail(format!("tool name {:?} is taken", tool.name)));
        }
        tools.push(tool);
    }
    Ok(Profile {
        name,
        system_prompt: raw.system_prompt,
        first_message: raw.first_message.filter(|m| !m.trim().is_empty()),
        goodbye: raw.goodbye.unwrap_or_else(|| DEFAULT_GOODBYE.to_owned()),
        fallback_line: raw
            .fallback_line
            .unwrap_or_else(|| DEFAULT_FALLBACK.to_owned()),
        max_failures,
        interruption: raw.interruption,
        stt,
        llm,
        model: raw.llm.model,
        temperature: raw.llm.temperature,
        max_tokens: raw.llm.max_tokens,
        tts,
        voice: raw.tts.voice,
        tts_model: raw.tts.model,
        tools,
    })
}

fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn http_tool(tool: ToolFile) -> Result<HttpTool, String> {
    let name = tool.name;
    if !valid_name(&name) {
        return Err(format!(
            "tool name {name:?} must be 1-64 letters, digits, '_' or '-'"
        ));
    }
    let url = url::Url::parse(&tool.url)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https"))
        .ok_or_else(|| format!("tool {name}: url {:?} is not an http(s) URL", tool.url))?;
    let method = match tool
        .method
        .as_deref()
        .unwrap_or("POST")
        .to_ascii_uppercase()
        .as_str()
    {
        "GET" => reqwest::Method::GET,
        "POST" => reqwest::Method::POST,
        "PUT" => reqwest::Method::PUT,
        "PATCH" => reqwest::Method::PATCH,
        other => {
            return Err(format!(
                "tool {name}: method {other:?} is not GET, POST, PUT or PATCH"
            ));
        }
    };
    let mut headers = reqwest::header::HeaderMap::new();
    for (key, value) in tool.headers {
        let key = reqwest::header::HeaderName::from_bytes(key.as_bytes())
            .map_err(|_| format!("tool {name}: {key:?} is not a header name"))?;
        // The value is not quoted: it may be a secret.
        let mut value = reqwest::header::HeaderValue::from_str(&value)
            .map_err(|_| format!("tool {name}: the value of header {key} is not valid"))?;
        value.set_sensitive(true);
        headers.insert(key, value);
    }
    let timeout_ms = tool.timeout_ms.unwrap_or(5_000);
    if !(1..=MAX_TOOL_TIMEOUT_MS).contains(&timeout_ms) {
        return Err(format!(
            "tool {name}: timeout_ms {timeout_ms} is not between 1 and {MAX_TOOL_TIMEOUT_MS}"
        ));
    }
    let parameters = match tool.parameters {
        None => serde_json::json!({"type": "object", "properties": {}}),
        Some(value) => {
            serde_json::to_value(value).map_err(|e| format!("tool {name}: parameters: {e}"))?
        }
    };
    if parameters.get("type").and_then(|t| t.as_str()) != Some("object") {
        return Err(format!(
            "tool {name}: parameters must be a JSON schema of type \"object\""
        ));
    }
    if let Some(filler) = &tool.filler {
        template::check(filler).map_err(|e| format!("tool {name}: filler: {e}"))?;
    }
    Ok(HttpTool {
        name,
        description: tool.description,
        parameters,
        url,
        method,
        headers,
        timeout: Duration::from_millis(timeout_ms),
        filler: tool.filler.filter(|f| !f.trim().is_empty()),
    })
}

/// Every loaded profile, by name.
#[derive(Debug, Default)]
pub struct Profiles {
    by_name: BTreeMap<String, Arc<Profile>>,
}

impl Profiles {
    /// Loads every `*.toml` in `dir` (none without a folder); one that does not validate
    /// fails the load, naming the file.
    pub fn load(dir: Option<&Path>) -> Result<Self, ProfileError> {
        let mut by_name = BTreeMap::new();
        let Some(dir) = dir else {
            return Ok(Self { by_name });
        };
        let fail = |reason: String| ProfileError {
            file: dir.display().to_string(),
            reason,
        };
        let mut paths: Vec<_> = std::fs::read_dir(dir)
            .map_err(|e| fail(format!("cannot read the folder: {e}")))?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .collect();
        paths.sort();
        for path in paths {
            let file = path.display().to_string();
            let text = std::fs::read_to_string(&path).map_err(|e| ProfileError {
                file: file.clone(),
                reason: e.to_string(),
            })?;
            let profile = parse_profile(&file, &text)?;
            if by_name.contains_key(&profile.name) {
                return Err(ProfileError {
                    file,
                    reason: format!("another profile is named {:?}", profile.name),
                });
            }
            by_name.insert(profile.name.clone(), Arc::new(profile));
        }
        Ok(Self { by_name })
    }

    /// The profile named `name`, or without a name the first by name.
    pub fn get(&self, name: Option<&str>) -> Option<Arc<Profile>> {
        match name {
            Some(name) => self.by_name.get(name).cloned(),
            None => self.by_name.values().next().cloned(),
        }
    }

    /// Every profile.
    pub fn all(&self) -> impl Iterator<Item = &Arc<Profile>> {
        self.by_name.values()
    }

    /// Whether none is loaded.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = r#"
system_prompt = "You are Ava. The caller is {{ metadata.name | default('there') }}."
first_message = "Hi, this is Ava."
max_failures = 2
[llm]
model = "gpt-4o-mini"
temperature = 0.4
[tts]
provider = "openai"
voice = "nova"
[[tools]]
name = "check_slot"
description = "Whether a time is free"
url = "http://127.0.0.1:9000/slots"
method = "get"
headers = { Authorization = "Bearer tool-secret-77" }
timeout_ms = 2000
filler = "One moment."
parameters = { type = "object", properties = { time = { type = "string" } }, required = ["time"] }
"#;

    #[test]
    fn a_full_profile_parses_with_its_defaults() {
        let p = parse_profile("agents/sales.toml", FULL).unwrap();
        assert_eq!(p.name, "sales");
        assert_eq!(p.stt, SttChoice::Deepgram);
        assert_eq!(p.llm, LlmChoice::OpenAi);
        assert_eq!(p.tts, TtsChoice::OpenAi);
        assert_eq!(p.voice.as_deref(), Some("nova"));
        assert_eq!(p.max_failures, 2);
        assert_eq!(p.goodbye, DEFAULT_GOODBYE);
        let tool = &p.tools[0];
        assert_eq!(tool.method, reqwest::Method::GET);
        assert_eq!(tool.timeout, Duration::from_secs(2));
        assert_eq!(tool.parameters["required"][0], "time");
        // A header value may be a secret: Debug never shows it.
        assert!(!format!("{p:?}").contains("tool-secret-77"));
    }

    #[test]
    fn mistakes_name_the_file_and_the_key() {
        let bad = |text: &str| parse_profile("p.toml", text).unwrap_err().reason;
        assert!(bad("system_prompt = 'x'\nsystem_promt = 'y'").contains("unknown field"));
        assert!(bad("system_prompt = '{{ oops'").starts_with("system_prompt:"));
        assert!(bad("system_prompt = 'x'\n[tts]\nprovider = 'polly'").contains("polly"));
        assert!(
            bad("system_prompt = 'x'\n[[tools]]\nname = 'end_call'\ndescription = ''\nurl = 'http://a'")
                .contains("taken")
        );
        assert!(
            bad("system_prompt = 'x'\n[[tools]]\nname = 't'\ndescription = ''\nurl = 'ftp://a'")
                .contains("http(s)")
        );
        let secret = bad(
            "system_prompt = 'x'\n[[tools]]\nname = 't'\ndescription = ''\nurl = 'http://a'\nheaders = { 'X-Key' = \"sec\\nret\" }",
        );
        assert!(!secret.contains("sec"), "{secret}");
        assert!(bad("system_prompt = '  '").contains("empty"));
    }

    #[test]
    fn the_shipped_example_profiles_load() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/agents");
        let profiles = Profiles::load(Some(&dir)).unwrap();
        let sales = profiles
            .get(Some("sales"))
            .expect("examples/agents/sales.toml");
        assert_eq!(sales.stt, SttChoice::Deepgram);
        assert_eq!(sales.tts, TtsChoice::ElevenLabs);
        assert_eq!(sales.tools[0].name, "check_availability");
    }

    #[test]
    fn profiles_load_from_a_folder_by_name() {
        let dir = std::env::temp_dir().join(format!("vg-profiles-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("b.toml"), "system_prompt = 'B'").unwrap();
        std::fs::write(dir.join("a.toml"), "system_prompt = 'A'").unwrap();
        std::fs::write(dir.join("notes.txt"), "ignored").unwrap();
        let profiles = Profiles::load(Some(&dir)).unwrap();
        assert_eq!(profiles.get(Some("b")).unwrap().system_prompt, "B");
        assert_eq!(profiles.get(None).unwrap().name, "a");
        assert!(profiles.get(Some("c")).is_none());
        std::fs::write(dir.join("c.toml"), "name = 'a'\nsystem_prompt = 'C'").unwrap();
        assert!(
            Profiles::load(Some(&dir))
                .unwrap_err()
                .reason
                .contains("another profile")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
