//! The one error a module's configuration section returns when a value is wrong.
//!
//! Each module defines, defaults and validates its own section (`[session]` in
//! `session::config`, `[recording]` in `recording::config`, …); the top-level
//! configuration only assembles them. This leaf is what lets a section name the key at
//! fault without importing the top-level configuration: it depends on nothing, and it
//! must never grow parsing or defaults of its own.

use thiserror::Error;

/// A setting with a value that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{key}: {reason}")]
pub struct InvalidSetting {
    /// The setting as written in the file (`session.max_calls`), or the environment
    /// variable it came from (`PORT`).
    pub key: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

/// An [`InvalidSetting`] for `key`.
pub fn invalid(key: &'static str, reason: impl Into<String>) -> InvalidSetting {
    InvalidSetting {
        key,
        reason: reason.into(),
    }
}
