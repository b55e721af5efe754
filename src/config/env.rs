//! The environment, read as a second, sparse configuration file laid over the first.
//!
//! [`VARS`] maps each variable to the file key it sets. The variables that are set (values
//! trimmed; an empty one counts as unset) are placed as text at their keys and read by
//! serde into the same raw sections as the file, each as its key's own type: numbers,
//! `true`/`false` (also `1`/`0`, `yes`/`no`, `on`/`off`), comma-separated lists. What
//! they set replaces the file's value for that key; the rest of the file stands.
//!
//! `PORT` (Cloud Run and friends) is the one variable with a rule of its own: when neither
//! the file nor `VOXGATE_LISTEN` sets `listen`, it means every interface at that port.
//! A bad value is reported under the variable's name, not the key's.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use serde::de::value::{MapDeserializer, SeqDeserializer};
use serde::de::{self, Deserialize, Deserializer, IntoDeserializer, Visitor};
use serde::forward_to_deserialize_any;

use super::{ConfigError, RawConfig};
use crate::setting::invalid;

/// Each variable and the key it sets. When several variables set one key, the first one
/// set wins.
pub(super) const VARS: &[(&str, &str)] = &[
    ("VOXGATE_LISTEN", "listen"),
    ("VOXGATE_PUBLIC_URL", "public_url"),
    ("VOXGATE_DATA_DIR", "data_dir"),
    ("VOXGATE_AUDIO_WORKERS", "audio.workers"),
    ("VOXGATE_VAD_MODE", "audio.vad_mode"),
    ("VOXGATE_VAD_START_MS", "audio.vad_start_ms"),
    ("VOXGATE_VAD_HANGOVER_MS", "audio.vad_hangover_ms"),
    ("VOXGATE_PLIVO_AUTH_ID", "plivo.auth_id"),
    ("PLIVO_AUTH_ID", "plivo.auth_id"),
    ("VOXGATE_PLIVO_AUTH_TOKEN", "plivo.auth_tokens"),
    ("PLIVO_AUTH_TOKEN", "plivo.auth_tokens"),
    ("VOXGATE_PLIVO_API_URL", "plivo.api_url"),
    ("VOXGATE_VERIFY_SIGNATURES", "plivo.verify_signatures"),
    ("VOXGATE_MAX_CALLS", "session.max_calls"),
    ("VOXGATE_PLAYOUT_LEAD_MS", "session.playout_lead_ms"),
    ("VOXGATE_IDLE_TIMEOUT_SECS", "session.idle_timeout_secs"),
    (
        "VOXGATE_CHECKPOINT_TIMEOUT_MS",
        "session.checkpoint_timeout_ms",
    ),
    ("VOXGATE_WRITE_TIMEOUT_MS", "session.write_timeout_ms"),
    ("VOXGATE_START_TIMEOUT_MS", "session.start_timeout_ms"),
    ("VOXGATE_MAX_PENDING_SOCKETS", "session.max_pending_sockets"),
    ("VOXGATE_DRAIN_TIMEOUT_SECS", "session.drain_timeout_secs"),
    ("VOXGATE_API_TOKENS", "control.api_tokens"),
    ("VOXGATE_CALLER_ID", "control.caller_id"),
    ("VOXGATE_MIN_ANSWERED_SECS", "control.min_answered_secs"),
    ("VOXGATE_REDIS_URL", "control.redis_url"),
    ("VOXGATE_STORE", "control.store"),
    ("VOXGATE_REDIS_PREFIX", "control.redis_prefix"),
    ("VOXGATE_BACKEND_URL", "control.backend_url"),
    ("VOXGATE_BACKEND_SECRET", "control.backend_secret"),
    ("VOXGATE_RECORDING_ENABLED", "recording.enabled"),
    ("VOXGATE_RECORDING_DIR", "recording.dir"),
    ("VOXGATE_RECORDING_SAMPLE_RATE", "recording.sample_rate"),
    ("VOXGATE_RECORDING_FORMAT", "recording.format"),
    ("VOXGATE_RECORDING_UPLOAD_URL", "recording.upload_url"),
    (
        "VOXGATE_RECORDING_KEEP_LOCAL_DAYS",
        "recording.keep_local_days",
    ),
    (
        "VOXGATE_RECORDING_UPLOAD_RETRIES",
        "recording.upload_retries",
    ),
    (
        "VOXGATE_RECORDING_PUBLIC_BASE_URL",
        "recording.public_base_url",
    ),
    ("VOXGATE_AGENT", "agent.default"),
    ("VOXGATE_ESPEAK_VOICE", "espeak.voice"),
    ("VOXGATE_ESPEAK_RATE", "espeak.rate_wpm"),
    ("VOXGATE_ESPEAK_PITCH", "espeak.pitch"),
    ("VOXGATE_FLOWS_DIR", "agent.flows_dir"),
    ("VOXGATE_AGENT_PROFILES_DIR", "agent.profiles_dir"),
    ("VOXGATE_OPENAI_API_KEY", "openai.api_key"),
    ("OPENAI_API_KEY", "openai.api_key"),
    ("VOXGATE_OPENAI_BASE_URL", "openai.base_url"),
    ("OPENAI_BASE_URL", "openai.base_url"),
    ("VOXGATE_OPENAI_CHAT_MODEL", "openai.chat_model"),
    ("VOXGATE_DEEPGRAM_API_KEY", "deepgram.api_key"),
    ("DEEPGRAM_API_KEY", "deepgram.api_key"),
    ("VOXGATE_DEEPGRAM_BASE_URL", "deepgram.base_url"),
    ("VOXGATE_ELEVENLABS_API_KEY", "elevenlabs.api_key"),
    ("ELEVENLABS_API_KEY", "elevenlabs.api_key"),
    ("VOXGATE_ELEVENLABS_BASE_URL", "elevenlabs.base_url"),
    ("VOXGATE_ELEVENLABS_VOICE_ID", "elevenlabs.voice_id"),
    ("VOXGATE_POCKETSPHINX_ENABLED", "pocketsphinx.enabled"),
    ("VOXGATE_POCKETSPHINX_MODEL_DIR", "pocketsphinx.model_dir"),
    ("VOXGATE_POCKETSPHINX_WORKERS", "pocketsphinx.workers"),
    (
        "VOXGATE_POCKETSPHINX_MAX_STREAMS",
        "pocketsphinx.max_streams",
    ),
    ("VOXGATE_HTTP_HEADER_TIMEOUT_MS", "http.header_timeout_ms"),
    ("VOXGATE_HTTP_IDLE_TIMEOUT_SECS", "http.idle_timeout_secs"),
    ("VOXGATE_HTTP_MAX_CONNECTIONS", "http.max_connections"),
    ("VOXGATE_HTTP_SEND_BUFFER_BYTES", "http.send_buffer_bytes"),
];

/// `file` with the environment's settings laid over it.
pub(super) fn lay_over(
    file: RawConfig,
    vars: &HashMap<String, String>,
) -> Result<RawConfig, ConfigError> {
    let get = |var: &str| {
        vars.get(var)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    let mut root = BTreeMap::new();
    for &(var, key) in VARS {
        if let Some(text) = get(var) {
            place(&mut root, key, Node::Text { var, text });
        }
    }
    let from_env = RawConfig::deserialize(Node::Table(root))?;

    let mut merged = to_table(&file)?;
    merge(&mut merged, to_table(&from_env)?);
    if !merged.contains_key("listen")
        && let Some(port) = get("PORT")
    {
        let port: u16 = port
            .parse()
            .map_err(|_| invalid("PORT", format!("{port:?} is not a port")))?;
        let every_interface = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port);
        merged.insert("listen".into(), every_interface.to_string().into());
    }
    Ok(merged.try_into()?)
}

/// Puts `node` at the dotted `key`, unless a variable earlier in [`VARS`] put one there.
fn place(table: &mut BTreeMap<&'static str, Node>, key: &'static str, node: Node) {
    match key.split_once('.') {
        None => {
            table.entry(key).or_insert(node);
        }
        Some((section, rest)) => {
            let entry = table
                .entry(section)
                .or_insert_with(|| Node::Table(BTreeMap::new()));
            if let Node::Table(inner) = entry {
                place(inner, rest, node);
            }
        }
    }
}

fn to_table(raw: &RawConfig) -> Result<toml::Table, ConfigError> {
    // Only an integer beyond TOML's range could fail, and the environment refuses those.
    toml::Table::try_from(raw).map_err(|e| invalid("environment", e.to_string()).into())
}

/// Lays `top` over `base`, key by key inside tables.
fn merge(base: &mut toml::Table, top: toml::Table) {
    for (key, value) in top {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(below)), toml::Value::Table(above)) => merge(below, above),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// The environment's settings as a tree: a table per section, text at the leaves.
enum Node {
    Text { var: &'static str, text: String },
    Table(BTreeMap<&'static str, Node>),
}

/// A variable whose text is not a value of its key's type.
#[derive(Debug)]
struct EnvError {
    var: Option<&'static str>,
    reason: String,
}

impl EnvError {
    fn at(var: &'static str, reason: String) -> Self {
        Self {
            var: Some(var),
            reason,
        }
    }
}

impl fmt::Display for EnvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

impl std::error::Error for EnvError {}

impl de::Error for EnvError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Self {
            var: None,
            reason: msg.to_string(),
        }
    }
}

impl From<EnvError> for ConfigError {
    fn from(e: EnvError) -> Self {
        invalid(e.var.unwrap_or("environment"), e.reason).into()
    }
}

impl<'de> IntoDeserializer<'de, EnvError> for Node {
    type Deserializer = Self;

    fn into_deserializer(self) -> Self {
        self
    }
}

/// Reads text as the number type the key asks for; TOML cannot hold integers past `i64`.
macro_rules! number {
    ($($method:ident => $visit:ident($ty:ty)),* $(,)?) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, EnvError> {
            let Node::Text { var, text } = self else {
                return self.deserialize_any(visitor);
            };
            match text.parse::<$ty>() {
                Ok(n) if i64::try_from(n).is_ok() => visitor.$visit(n),
                Ok(_) => Err(EnvError::at(var, format!("{text:?} is too large"))),
                Err(_) => Err(EnvError::at(var, format!("{text:?} is not a number"))),
            }
        }
    )*};
}

impl<'de> Deserializer<'de> for Node {
    type Error = EnvError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, EnvError> {
        match self {
            Self::Text { text, .. } => visitor.visit_string(text),
            Self::Table(table) => {
                let mut map = MapDeserializer::new(table.into_iter());
                let value = visitor.visit_map(&mut map)?;
                map.end()?;
                Ok(value)
            }
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, EnvError> {
        visitor.visit_some(self)
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, EnvError> {
        let Self::Text { var, text } = self else {
            return self.deserialize_any(visitor);
        };
        match text.to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => visitor.visit_bool(true),
            "0" | "false" | "no" | "off" => visitor.visit_bool(false),
            _ => Err(EnvError::at(var, format!("{text:?} is not true or false"))),
        }
    }

    /// A comma-separated list, each item trimmed.
    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, EnvError> {
        let Self::Text { var, text } = self else {
            return self.deserialize_any(visitor);
        };
        let items = text.split(',').map(|item| Self::Text {
            var,
            text: item.trim().to_owned(),
        });
        let mut seq = SeqDeserializer::new(items);
        let value = visitor.visit_seq(&mut seq)?;
        seq.end()?;
        Ok(value)
    }

    number! {
        deserialize_u8 => visit_u8(u8),
        deserialize_u16 => visit_u16(u16),
        deserialize_u32 => visit_u32(u32),
        deserialize_u64 => visit_u64(u64),
        deserialize_i8 => visit_i8(i8),
        deserialize_i16 => visit_i16(i16),
        deserialize_i32 => visit_i32(i32),
        deserialize_i64 => visit_i64(i64),
    }

    forward_to_deserialize_any! {
        f32 f64 char str string bytes byte_buf unit unit_struct newtype_struct tuple
        tuple_struct map struct enum identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variable_sets_a_real_key() {
        // "1" is a valid number, true, text and a one-item list: any failure here is a
        // key the raw sections do not have.
        for &(var, key) in VARS {
            let vars = HashMap::from([(var.to_owned(), "1".to_owned())]);
            let raw = lay_over(RawConfig::default(), &vars)
                .unwrap_or_else(|e| panic!("{var} → {key}: {e}"));
            let table = to_table(&raw).unwrap();
            let set = match key.split_once('.') {
                None => table.get(key),
                Some((section, rest)) => table[section].get(rest),
            };
            assert!(set.is_some(), "{var} did not set {key}");
        }
    }

    #[test]
    fn the_first_variable_set_wins() {
        let vars = HashMap::from([
            ("PLIVO_AUTH_ID".to_owned(), "MA_PLAIN".to_owned()),
            ("VOXGATE_PLIVO_AUTH_ID".to_owned(), "MA_VOXGATE".to_owned()),
        ]);
        let raw = lay_over(RawConfig::default(), &vars).unwrap();
        assert_eq!(raw.plivo.auth_id.as_deref(), Some("MA_VOXGATE"));
    }

    #[test]
    fn bad_text_is_reported_under_the_variable() {
        for (var, text, reason) in [
            ("VOXGATE_MAX_CALLS", "lots", "\"lots\" is not a number"),
            ("VOXGATE_VAD_MODE", "300", "\"300\" is not a number"),
            (
                "VOXGATE_RECORDING_ENABLED",
                "maybe",
                "\"maybe\" is not true or false",
            ),
            (
                "VOXGATE_MIN_ANSWERED_SECS",
                "18446744073709551615",
                "\"18446744073709551615\" is too large",
            ),
        ] {
            let vars = HashMap::from([(var.to_owned(), text.to_owned())]);
            match lay_over(RawConfig::default(), &vars) {
                Err(ConfigError::Invalid { key, reason: r }) => {
                    assert_eq!((key, r.as_str()), (var, reason));
                }
                other => panic!("{var}={text}: {other:?}"),
            }
        }
    }
}
