//! Plivo's callbacks (reference §3, §5): the hangup, ring and stream status requests Plivo
//! posts to the URLs voxgate gave it, read into typed values.
//!
//! Owns which call a callback is about (the callback URL's `?call_id=`, else the form's
//! `CallUUID`), its idempotency key (Plivo retries callbacks; a retry repeats the key), and
//! the fields voxgate acts on: call status, hangup cause, answered duration, stream event.
//! Plivo's value sets are open in practice (the reference lists two schemes of stream
//! events), so a status or event this module does not know is kept as `Other(text)`, never
//! refused. The only error is a callback that names no call at all.
//!
//! Never: checks signatures (see `signature`), remembers keys it has seen (the caller
//! does), bounds the body (the HTTP layer does), or panics on any input. Fields voxgate
//! does not use (`BillDuration`, `HangupSource`, times, …) are not read here; the caller
//! keeps the raw form for audit.

use std::fmt;

use thiserror::Error;

#[cfg(test)]
mod tests;

/// The callbacks voxgate receives, one route each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallbackKind {
    /// The call ended (`hangup_url`, reference §5.2).
    Hangup,
    /// The callee's phone rings (`ring_url`, outbound calls).
    Ring,
    /// The media stream's lifecycle (`statusCallbackUrl`, reference §3).
    StreamStatus,
}

impl CallbackKind {
    /// A fixed label for metrics, logs and the audit of orphan callbacks.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hangup => "hangup",
            Self::Ring => "ring",
            Self::StreamStatus => "stream_status",
        }
    }
}

impl fmt::Display for CallbackKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a callback was refused. The caller answers 400 and counts [`CallbackError::kind`].
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum CallbackError {
    /// Neither a non-empty `?call_id=` on the URL nor a non-empty `CallUUID` in the form.
    #[error("{0} callback names no call: no call_id in the URL and no CallUUID")]
    MissingCallId(CallbackKind),
}

impl CallbackError {
    /// A fixed label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::MissingCallId(_) => "missing_call_id",
        }
    }
}

/// A Plivo callback, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Callback {
    /// voxgate's id for the call: the URL's first non-empty `call_id`, else `CallUUID`.
    /// Never empty.
    pub call_id: String,
    /// `CallUUID`, if non-empty.
    pub call_uuid: Option<String>,
    /// The same for every retry of this callback: `hangup:{CallUUID}`, `ring:{CallUUID}`,
    /// `stream:{StreamID}:{Event}:{Timestamp}` (an absent field is empty).
    pub idempotency_key: String,
    /// What the callback says.
    pub event: CallbackEvent,
}

/// What a callback says, by kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallbackEvent {
    /// The call ended.
    Hangup(Hangup),
    /// The callee's phone rings.
    Ring,
    /// The media stream changed state.
    StreamStatus(StreamStatus),
}

/// The hangup callback's fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hangup {
    /// `CallStatus`; [`CallStatus::Completed`] when absent or empty.
    pub status: CallStatus,
    /// `HangupCauseName` (e.g. `Normal Hangup`), else `HangupCause` (e.g.
    /// `NORMAL_CLEARING`); `None` when both are absent or empty.
    pub cause: Option<String>,
    /// `Duration`: answered seconds; `None` when absent or not a whole number.
    pub duration_secs: Option<u64>,
}

/// The stream status callback's fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamStatus {
    /// `StreamID`, if non-empty.
    pub stream_id: Option<String>,
    /// `Event`, if non-empty.
    pub event: Option<StreamEvent>,
}

/// Plivo's `CallStatus` (reference §5.1). Read exactly as sent; anything else is
/// [`CallStatus::Other`] with the text unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallStatus {
    /// `ringing`.
    Ringing,
    /// `in-progress`: answered.
    InProgress,
    /// `completed`.
    Completed,
    /// `no-answer`.
    NoAnswer,
    /// `busy`.
    Busy,
    /// `cancel`.
    Cancel,
    /// `timeout`.
    Timeout,
    /// `failed` (outbound calls).
    Failed,
    /// A value not listed above, as sent.
    Other(String),
}

impl CallStatus {
    /// Reads Plivo's text.
    pub fn from_plivo(text: &str) -> Self {
        match text {
            "ringing" => Self::Ringing,
            "in-progress" => Self::InProgress,
            "completed" => Self::Completed,
            "no-answer" => Self::NoAnswer,
            "busy" => Self::Busy,
            "cancel" => Self::Cancel,
            "timeout" => Self::Timeout,
            "failed" => Self::Failed,
            other => Self::Other(other.to_owned()),
        }
    }

    /// Plivo's text: the inverse of [`CallStatus::from_plivo`].
    pub fn as_str(&self) -> &str {
        match self {
            Self::Ringing => "ringing",
            Self::InProgress => "in-progress",
            Self::Completed => "completed",
            Self::NoAnswer => "no-answer",
            Self::Busy => "busy",
            Self::Cancel => "cancel",
            Self::Timeout => "timeout",
            Self::Failed => "failed",
            Self::Other(text) => text,
        }
    }
}

impl fmt::Display for CallStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A stream status callback's `Event` (reference §3). Plivo documents two schemes; both
/// are read exactly as sent, anything else is [`StreamEvent::Other`] with the text
/// unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEvent {
    /// `StartStream`: audio began after the socket connected.
    StartStream,
    /// `StopStream`: stopped on purpose or `streamTimeout` reached.
    StopStream,
    /// `DroppedStream`: failed to connect, or dropped mid-call.
    DroppedStream,
    /// `DegradedStream`: a slow consumer; Plivo's outbound buffer is filling.
    DegradedStream,
    /// `started` (newer scheme).
    Started,
    /// `stopped` (newer scheme).
    Stopped,
    /// `failed` (newer scheme).
    Failed,
    /// A value not listed above, as sent.
    Other(String),
}

impl StreamEvent {
    /// Reads Plivo's text.
    pub fn from_plivo(text: &str) -> Self {
        match text {
            "StartStream" => Self::StartStream,
            "StopStream" => Self::StopStream,
            "DroppedStream" => Self::DroppedStream,
            "DegradedStream" => Self::DegradedStream,
            "started" => Self::Started,
            "stopped" => Self::Stopped,
            "failed" => Self::Failed,
            other => Self::Other(other.to_owned()),
        }
    }

    /// Plivo's text: the inverse of [`StreamEvent::from_plivo`].
    pub fn as_str(&self) -> &str {
        match self {
            Self::StartStream => "StartStream",
            Self::StopStream => "StopStream",
            Self::DroppedStream => "DroppedStream",
            Self::DegradedStream => "DegradedStream",
            Self::Started => "started",
            Self::Stopped => "stopped",
            Self::Failed => "failed",
            Self::Other(text) => text,
        }
    }

    /// True when the stream is in trouble (dropped, failed or degraded): worth a warning.
    pub fn is_trouble(&self) -> bool {
        matches!(
            self,
            Self::DroppedStream | Self::DegradedStream | Self::Failed
        )
    }
}

impl fmt::Display for StreamEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Callback {
    /// Reads a `kind` callback from the callback URL's decoded query (for `call_id`) and
    /// its decoded form body ([`super::answer::parse_form`]; every Plivo field). Where a
    /// field repeats, the first one counts. Unknown fields and values are never refused.
    pub fn from_params(
        kind: CallbackKind,
        query: &[(String, String)],
        form: &[(String, String)],
    ) -> Result<Callback, CallbackError> {
        let call_uuid = field(form, "CallUUID");
        let call_id = query
            .iter()
            .find(|(key, value)| key == "call_id" && !value.is_empty())
            .map(|(_, value)| value.as_str())
            .or_else(|| Some(call_uuid).filter(|uuid| !uuid.is_empty()))
            .ok_or(CallbackError::MissingCallId(kind))?
            .to_owned();
        let (idempotency_key, event) = match kind {
            CallbackKind::Hangup => {
                let status = Some(field(form, "CallStatus"))
                    .filter(|status| !status.is_empty())
                    .map_or(CallStatus::Completed, CallStatus::from_plivo);
                let cause = [field(form, "HangupCauseName"), field(form, "HangupCause")]
                    .into_iter()
                    .find(|cause| !cause.is_empty())
                    .map(str::to_owned);
                let hangup = Hangup {
                    status,
                    cause,
                    duration_secs: field(form, "Duration").trim().parse().ok(),
                };
                (format!("hangup:{call_uuid}"), CallbackEvent::Hangup(hangup))
            }
            CallbackKind::Ring => (format!("ring:{call_uuid}"), CallbackEvent::Ring),
            CallbackKind::StreamStatus => {
                let (stream_id, event) = (field(form, "StreamID"), field(form, "Event"));
                let key = format!("stream:{stream_id}:{event}:{}", field(form, "Timestamp"));
                let status = StreamStatus {
                    stream_id: non_empty(stream_id),
                    event: Some(event)
                        .filter(|event| !event.is_empty())
                        .map(StreamEvent::from_plivo),
                };
                (key, CallbackEvent::StreamStatus(status))
            }
        };
        Ok(Callback {
            call_id,
            call_uuid: non_empty(call_uuid),
            idempotency_key,
            event,
        })
    }

    /// Which callback this is.
    pub fn kind(&self) -> CallbackKind {
        match self.event {
            CallbackEvent::Hangup(_) => CallbackKind::Hangup,
            CallbackEvent::Ring => CallbackKind::Ring,
            CallbackEvent::StreamStatus(_) => CallbackKind::StreamStatus,
        }
    }
}

/// The first `name` field's value, or `""`.
fn field<'f>(form: &'f [(String, String)], name: &str) -> &'f str {
    form.iter()
        .find(|(key, _)| key == name)
        .map_or("", |(_, value)| value.as_str())
}

fn non_empty(value: &str) -> Option<String> {
    Some(value).filter(|v| !v.is_empty()).map(str::to_owned)
}
