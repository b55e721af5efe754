//! The names a call goes by between modules: its id ([`CallId`]), its media stream's id
//! ([`StreamId`]) and which way it goes ([`Direction`]).
//!
//! Low in the layout and free of the rest of the crate, so every module can take these at
//! its boundary instead of `&str` pairs. A [`CallId`] is only made by [`CallId::parse`],
//! which applies the one rule `POST /v1/calls` has always applied to the backend's id;
//! holding one means the rule was checked. Both ids are `Arc<str>`: cloning one into a
//! registry entry, a plan or a journal line costs a reference count, not a copy.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// Longest call id accepted (it lands in URLs, keys and log lines).
pub const MAX_CALL_ID_LEN: usize = 128;

/// A call's id: the backend's id, or Plivo's `CallUUID` for an inbound call without one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CallId(Arc<str>);

/// Why a string is not a usable call id; the reason is fixed text for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CallIdError {
    /// Empty once trimmed.
    #[error("missing or empty")]
    Empty,
    /// Longer than [`MAX_CALL_ID_LEN`] bytes, or holds a control character.
    #[error("at most 128 printable characters")]
    Unprintable,
}

impl CallId {
    /// Checks `raw` as `POST /v1/calls` does: surrounding whitespace trimmed, then
    /// non-empty, at most [`MAX_CALL_ID_LEN`] bytes, no control characters.
    pub fn parse(raw: &str) -> Result<Self, CallIdError> {
        let id = raw.trim();
        if id.is_empty() {
            return Err(CallIdError::Empty);
        }
        if id.len() > MAX_CALL_ID_LEN || id.chars().any(char::is_control) {
            return Err(CallIdError::Unprintable);
        }
        Ok(Self(id.into()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CallId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for CallId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl AsRef<str> for CallId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// Plivo's id for one media stream of a call (`streamId`); a call that reconnects gets a
/// new one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StreamId(Arc<str>);

impl StreamId {
    /// The id Plivo sent (taken as given: the wire codec has checked the message).
    pub fn new(id: &str) -> Self {
        Self(id.into())
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for StreamId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

/// Which way a call goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Placed by voxgate for the backend.
    Outbound,
    /// Received on a Plivo number.
    Inbound,
}

impl Direction {
    /// Plivo's `Direction` field: `outbound` (any case) is outbound, anything else inbound.
    pub fn from_plivo(direction: &str) -> Self {
        if direction.eq_ignore_ascii_case("outbound") {
            Self::Outbound
        } else {
            Self::Inbound
        }
    }

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Outbound => "outbound",
            Self::Inbound => "inbound",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_id_follows_the_api_rule() {
        assert_eq!(CallId::parse("  call-42 ").unwrap().as_str(), "call-42");
        assert_eq!(CallId::parse(""), Err(CallIdError::Empty));
        assert_eq!(CallId::parse(" \t "), Err(CallIdError::Empty));
        assert_eq!(CallId::parse("a\u{7}b"), Err(CallIdError::Unprintable));
        assert!(CallId::parse(&"x".repeat(MAX_CALL_ID_LEN)).is_ok());
        assert_eq!(
            CallId::parse(&"x".repeat(MAX_CALL_ID_LEN + 1)),
            Err(CallIdError::Unprintable)
        );
    }

    #[test]
    fn ids_serialize_as_their_text() {
        let id = CallId::parse("backend 42").unwrap();
        assert_eq!(serde_json::json!(id), serde_json::json!("backend 42"));
        assert_eq!(
            serde_json::json!(StreamId::new("s-1")),
            serde_json::json!("s-1")
        );
        assert_eq!(
            serde_json::json!(Direction::Inbound),
            serde_json::json!("inbound")
        );
        assert_eq!(Direction::from_plivo("OUTBOUND"), Direction::Outbound);
        assert_eq!(Direction::from_plivo(""), Direction::Inbound);
    }
}
