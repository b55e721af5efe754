//! Caller scripts written as TOML (`voxgate simulate --script FILE`), so a user can drive a
//! flow: wait for the agent, press keys, say a WAV, stay silent, hang up.
//!
//! ```toml
//! [[step]]
//! wait_agent = true        # until the agent finished a turn and stayed quiet
//! timeout_ms = 20000       # optional (default 15000); quiet_ms optional (default 500)
//! [[step]]
//! dtmf = "1"
//! [[step]]
//! say = "../../fixtures/speech/city.wav"   # relative to the script's folder
//! [[step]]
//! silence_ms = 500
//! [[step]]
//! wait_hangup = true       # until the gateway hangs up (timeout_ms, default 15000)
//! [[step]]
//! hangup = true
//! ```
//!
//! Owns: the file format, its checks and turning it into [`CallerStep`]s. [`parse_script`]
//! is pure (text in, steps out, no file access) so it can be fuzzed; [`load_script`] reads
//! the file and the audio it names. Strict: unknown keys, a step with no or two actions,
//! a key that does not belong to its action, bad keys or out-of-range times are errors
//! that name the step. Never: panics or allocates without bound on hostile input (at most
//! [`MAX_STEPS`] steps, [`MAX_SCRIPT_BYTES`] of text).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use thiserror::Error;

use crate::telephony::plivo::stream::is_dtmf_key;

use super::script::{self, CallerStep, ScriptError};

/// Most steps in one script.
pub const MAX_STEPS: usize = 1_000;
/// Largest script file.
pub const MAX_SCRIPT_BYTES: usize = 256 * 1024;
/// Longest wait, silence or timeout a step may ask for (10 minutes).
pub const MAX_STEP_MS: u64 = 600_000;
/// Most keys in one `dtmf` step.
pub const MAX_DTMF_KEYS: usize = 64;
/// `timeout_ms` when a waiting step gives none.
pub const DEFAULT_TIMEOUT_MS: u64 = 15_000;
/// `quiet_ms` when a `wait_agent` step gives none.
pub const DEFAULT_QUIET_MS: u64 = 500;

/// One step as the file writes it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    wait_agent: Option<bool>,
    wait_hangup: Option<bool>,
    say: Option<String>,
    dtmf: Option<String>,
    silence_ms: Option<u64>,
    hangup: Option<bool>,
    timeout_ms: Option<u64>,
    quiet_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScript {
    step: Vec<RawStep>,
}

/// A step as parsed, before any file is read.
#[derive(Debug, Clone, PartialEq)]
pub enum ScriptStep {
    /// [`CallerStep::WaitAgent`].
    WaitAgent {
        /// Longest wait.
        timeout: Duration,
        /// Idle time that means the agent has finished.
        quiet: Duration,
    },
    /// [`CallerStep::WaitHangup`].
    WaitHangup {
        /// Longest wait.
        timeout: Duration,
    },
    /// Say this audio file (as written; relative to the script's folder).
    Say(PathBuf),
    /// Press these keys.
    Dtmf(String),
    /// Stay silent.
    Silence(Duration),
    /// Hang up.
    Hangup,
}

/// Why a script file cannot be used.
#[derive(Debug, Error)]
pub enum ScriptFileError {
    /// The file could not be read.
    #[error("reading script {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Larger than [`MAX_SCRIPT_BYTES`].
    #[error("the script is {0} bytes; at most {MAX_SCRIPT_BYTES} are read")]
    TooLarge(usize),
    /// Not TOML, or not the script's shape (toml's message says where).
    #[error("script: {0}")]
    Toml(String),
    /// No steps.
    #[error("the script has no [[step]]")]
    Empty,
    /// More than [`MAX_STEPS`] steps.
    #[error("the script has {0} steps; at most {MAX_STEPS} are allowed")]
    TooManySteps(usize),
    /// One step is wrong.
    #[error("step {index}: {why}")]
    Step {
        /// Its position, from 1 as a reader counts.
        index: usize,
        /// What is wrong.
        why: String,
    },
    /// A `say` file could not be used.
    #[error("step {index}: {source}")]
    Audio {
        /// Its position, from 1.
        index: usize,
        /// What was wrong with the audio.
        source: ScriptError,
    },
}

/// Parses a script's text. Pure: no file is read.
pub fn parse_script(text: &str) -> Result<Vec<ScriptStep>, ScriptFileError> {
    if text.len() > MAX_SCRIPT_BYTES {
        return Err(ScriptFileError::TooLarge(text.len()));
    }
    let raw: RawScript = toml::from_str(text).map_err(|e| ScriptFileError::Toml(e.to_string()))?;
    if raw.step.is_empty() {
        return Err(ScriptFileError::Empty);
    }
    if raw.step.len() > MAX_STEPS {
        return Err(ScriptFileError::TooManySteps(raw.step.len()));
    }
    raw.step
        .into_iter()
        .enumerate()
        .map(|(i, step)| step_of(step).map_err(|why| ScriptFileError::Step { index: i + 1, why }))
        .collect()
}

/// Reads the script at `path` and the audio its `say` steps name (relative to the
/// script's folder).
pub fn load_script(path: impl AsRef<Path>) -> Result<Vec<CallerStep>, ScriptFileError> {
    let path = path.as_ref();
    let io = |source| ScriptFileError::Io {
        path: path.to_owned(),
        source,
    };
    let size = std::fs::metadata(path).map_err(io)?.len();
    if size > MAX_SCRIPT_BYTES as u64 {
        return Err(ScriptFileError::TooLarge(
            usize::try_from(size).unwrap_or(usize::MAX),
        ));
    }
    let text = std::fs::read_to_string(path).map_err(io)?;
    let folder = path.parent().unwrap_or(Path::new("."));
    parse_script(&text)?
        .into_iter()
        .enumerate()
        .map(|(i, step)| {
            Ok(match step {
                ScriptStep::WaitAgent { timeout, quiet } => {
                    CallerStep::WaitAgent { timeout, quiet }
                }
                ScriptStep::WaitHangup { timeout } => CallerStep::WaitHangup { timeout },
                ScriptStep::Say(file) => {
                    script::audio_step(folder.join(file)).map_err(|source| {
                        ScriptFileError::Audio {
                            index: i + 1,
                            source,
                        }
                    })?
                }
                ScriptStep::Dtmf(keys) => CallerStep::Dtmf(keys),
                ScriptStep::Silence(d) => CallerStep::Silence(d),
                ScriptStep::Hangup => CallerStep::Hangup,
            })
        })
        .collect()
}

/// One raw step → a checked step, or what is wrong with it.
fn step_of(step: RawStep) -> Result<ScriptStep, String> {
    let actions: Vec<&str> = [
        ("wait_agent", step.wait_agent.is_some()),
        ("wait_hangup", step.wait_hangup.is_some()),
        ("say", step.say.is_some()),
        ("dtmf", step.dtmf.is_some()),
        ("silence_ms", step.silence_ms.is_some()),
        ("hangup", step.hangup.is_some()),
    ]
    .into_iter()
    .filter_map(|(name, set)| set.then_some(name))
    .collect();
    let action = match actions.as_slice() {
        [one] => *one,
        [] => {
            return Err(
                "give one of wait_agent, wait_hangup, say, dtmf, silence_ms, hangup".to_owned(),
            );
        }
        many => return Err(format!("one action per step, not {}", many.join(" and "))),
    };
    let allowed: &[&str] = match action {
        "wait_agent" => &["timeout_ms", "quiet_ms"],
        "wait_hangup" => &["timeout_ms"],
        _ => &[],
    };
    for (name, set) in [
        ("timeout_ms", step.timeout_ms.is_some()),
        ("quiet_ms", step.quiet_ms.is_some()),
    ] {
        if set && !allowed.contains(&name) {
            return Err(format!("{name} does not apply to {action}"));
        }
    }
    let ms = |name: &str, value: Option<u64>, default: u64| -> Result<Duration, String> {
        let v = value.unwrap_or(default);
        if v > MAX_STEP_MS {
            return Err(format!("{name} = {v} is over {MAX_STEP_MS}"));
        }
        Ok(Duration::from_millis(v))
    };
    let must_be_true = |value: Option<bool>| {
        if value == Some(true) {
            Ok(())
        } else {
            Err(format!("write {action} = true"))
        }
    };
    Ok(match action {
        "wait_agent" => {
            must_be_true(step.wait_agent)?;
            ScriptStep::WaitAgent {
                timeout: ms("timeout_ms", step.timeout_ms, DEFAULT_TIMEOUT_MS)?,
                quiet: ms("quiet_ms", step.quiet_ms, DEFAULT_QUIET_MS)?,
            }
        }
        "wait_hangup" => {
            must_be_true(step.wait_hangup)?;
            ScriptStep::WaitHangup {
                timeout: ms("timeout_ms", step.timeout_ms, DEFAULT_TIMEOUT_MS)?,
            }
        }
        "hangup" => {
            must_be_true(step.hangup)?;
            ScriptStep::Hangup
        }
        "silence_ms" => ScriptStep::Silence(ms("silence_ms", step.silence_ms, 0)?),
        "say" => {
            let file = step.say.unwrap_or_default();
            if file.trim().is_empty() {
                return Err("say needs a file name".to_owned());
            }
            ScriptStep::Say(PathBuf::from(file))
        }
        _ => {
            let keys = step.dtmf.unwrap_or_default();
            if keys.is_empty() {
                return Err("dtmf needs at least one key".to_owned());
            }
            if keys.chars().count() > MAX_DTMF_KEYS {
                return Err(format!("dtmf has more than {MAX_DTMF_KEYS} keys"));
            }
            if let Some(bad) = keys.chars().find(|c| !is_dtmf_key(*c)) {
                return Err(format!("{bad:?} is not a DTMF key (0-9, *, #, A-D)"));
            }
            ScriptStep::Dtmf(keys)
        }
    })
}

#[cfg(test)]
mod tests;
