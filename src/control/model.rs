//! The control plane's data: call states and the Plivo mapping, the call record, and the
//! events delivered to the sinks.
//!
//! Pure data and rules, no I/O: every store, sink and route shares these types, so the
//! state machine is written (and tested) once.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::transcript::ConversationRecord;

pub use crate::ids::Direction;

/// Minimum answered duration for a call to count as `completed` (DESIGN.md default).
pub const DEFAULT_MIN_ANSWERED_SECS: u64 = 5;

/// Where a call is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallState {
    /// Placed (or answered inbound) but not yet ringing.
    Initiated,
    /// The callee's phone rings.
    Ringing,
    /// Answered and talking.
    InProgress,
    /// Answered for at least `min_answered_secs`, then ended.
    Completed,
    /// Not answered, or answered too briefly to count.
    Missed,
    /// The line was busy.
    Busy,
    /// The call could not be placed or failed.
    Failed,
    /// Canceled before it was answered.
    Canceled,
}

impl CallState {
    /// The wire name (`in_progress`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Initiated => "initiated",
            Self::Ringing => "ringing",
            Self::InProgress => "in_progress",
            Self::Completed => "completed",
            Self::Missed => "missed",
            Self::Busy => "busy",
            Self::Failed => "failed",
            Self::Canceled => "canceled",
        }
    }

    /// Parses a wire name.
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "initiated" => Self::Initiated,
            "ringing" => Self::Ringing,
            "in_progress" => Self::InProgress,
            "completed" => Self::Completed,
            "missed" => Self::Missed,
            "busy" => Self::Busy,
            "failed" => Self::Failed,
            "canceled" => Self::Canceled,
            _ => return None,
        })
    }

    /// Terminal states are final.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Completed | Self::Missed | Self::Busy | Self::Failed | Self::Canceled
        )
    }

    fn rank(self) -> u8 {
        match self {
            Self::Initiated => 0,
            Self::Ringing => 1,
            Self::InProgress => 2,
            _ => 3,
        }
    }

    /// Checks `self → next`. States only move forward (`initiated → ringing →
    /// in_progress → terminal`, steps may be skipped); a terminal state never changes.
    /// Moving to the same state is [`Transition::Unchanged`], not an error, so replayed
    /// callbacks are harmless.
    pub fn transition(self, next: CallState) -> Result<Transition, TransitionError> {
        if self == next {
            return Ok(Transition::Unchanged);
        }
        if self.is_terminal() {
            return Err(TransitionError::Terminal {
                from: self,
                to: next,
            });
        }
        if next.rank() < self.rank() {
            return Err(TransitionError::Backwards {
                from: self,
                to: next,
            });
        }
        Ok(Transition::Changed)
    }
}

/// The outcome of a valid transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// The state moves.
    Changed,
    /// Already there: nothing to store, nothing to report.
    Unchanged,
}

/// A transition the state machine refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum TransitionError {
    /// The call already ended.
    #[error("call is already {}; it cannot become {}", from.as_str(), to.as_str())]
    Terminal {
        /// Current state.
        from: CallState,
        /// Refused state.
        to: CallState,
    },
    /// The change would go back (a late callback).
    #[error("call is {}; it cannot go back to {}", from.as_str(), to.as_str())]
    Backwards {
        /// Current state.
        from: CallState,
        /// Refused state.
        to: CallState,
    },
}

/// Maps Plivo's `CallStatus` (callbacks, live call API) to a state. `answered_secs` is
/// the answered duration when the call ended (`Duration`/`bill_duration`), used to tell
/// `completed` from `missed`.
pub fn state_from_plivo(
    status: &str,
    answered_secs: Option<u64>,
    min_answered_secs: u64,
) -> Option<CallState> {
    Some(match status.trim().to_ascii_lowercase().as_str() {
        "queued" => CallState::Initiated,
        "ringing" | "early-media" => CallState::Ringing,
        "in-progress" | "answered" => CallState::InProgress,
        "completed" => {
            if answered_secs.unwrap_or(0) >= min_answered_secs {
                CallState::Completed
            } else {
                CallState::Missed
            }
        }
        "no-answer" | "timeout" => CallState::Missed,
        "busy" => CallState::Busy,
        "failed" => CallState::Failed,
        "cancel" | "canceled" | "cancelled" => CallState::Canceled,
        _ => return None,
    })
}

/// The kinds of lifecycle event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventType {
    /// The call was placed (or an inbound call arrived).
    #[serde(rename = "call.initiated")]
    Initiated,
    /// The callee's phone rings.
    #[serde(rename = "call.ringing")]
    Ringing,
    /// The call was answered.
    #[serde(rename = "call.answered")]
    Answered,
    /// The media stream started.
    #[serde(rename = "call.media_started")]
    MediaStarted,
    /// The call reached its terminal state (sent once).
    #[serde(rename = "call.ended")]
    Ended,
    /// The recording was uploaded.
    #[serde(rename = "call.recording_ready")]
    RecordingReady,
    /// The single complete record of the call (after post-call processing; sent once).
    #[serde(rename = "call.completed")]
    Completed,
}

impl EventType {
    /// The wire name (`call.answered`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Initiated => "call.initiated",
            Self::Ringing => "call.ringing",
            Self::Answered => "call.answered",
            Self::MediaStarted => "call.media_started",
            Self::Ended => "call.ended",
            Self::RecordingReady => "call.recording_ready",
            Self::Completed => "call.completed",
        }
    }

    /// Parses a wire name.
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "call.initiated" => Self::Initiated,
            "call.ringing" => Self::Ringing,
            "call.answered" => Self::Answered,
            "call.media_started" => Self::MediaStarted,
            "call.ended" => Self::Ended,
            "call.recording_ready" => Self::RecordingReady,
            "call.completed" => Self::Completed,
            _ => return None,
        })
    }

    /// The event a move into `state` reports, if any.
    pub fn for_state(state: CallState) -> Option<Self> {
        match state {
            CallState::Initiated => Some(Self::Initiated),
            CallState::Ringing => Some(Self::Ringing),
            CallState::InProgress => Some(Self::Answered),
            _ if state.is_terminal() => Some(Self::Ended),
            _ => None,
        }
    }
}

/// Everything voxgate knows about a call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallRecord {
    /// The backend's id (or Plivo's `CallUUID` for an inbound call without one).
    pub call_id: String,
    /// Inbound or outbound.
    pub direction: Direction,
    /// Current state.
    pub state: CallState,
    /// Destination (E.164 or `sip:` URI).
    pub to: String,
    /// Caller id.
    pub from: String,
    /// The backend's campaign, if any.
    pub campaign_id: Option<String>,
    /// The backend's flow name, if any.
    pub flow_name: Option<String>,
    /// The agent to run, if not the default.
    pub agent: Option<String>,
    /// Free-form data from the backend, returned as given.
    pub metadata: serde_json::Value,
    /// Make Call's `request_uuid`.
    pub plivo_request_uuid: Option<String>,
    /// Plivo's `CallUUID` once known.
    pub plivo_call_uuid: Option<String>,
    /// When voxgate created the record.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// When the call was answered.
    pub answered_at: Option<DateTime<Utc>>,
    /// When the call ended.
    pub ended_at: Option<DateTime<Utc>>,
    /// Answered duration, seconds (Plivo's figure when known).
    pub duration_secs: Option<u64>,
    /// Plivo's hangup cause (name), or voxgate's reason for a failure.
    pub hangup_cause: Option<String>,
    /// Where the recording is, once uploaded.
    pub recording_url: Option<String>,
    /// The transcript so far, as text: one `speaker: text` line per turn (what the caller
    /// heard, for the agent).
    pub transcript: Option<String>,
    /// The conversation: each turn, the agent's latency split, collected slots, who hung
    /// up (empty until the media stream starts).
    #[serde(default)]
    pub conversation: ConversationRecord,
}

impl CallRecord {
    /// A new record in `initiated`.
    pub fn new(
        call_id: impl Into<String>,
        direction: Direction,
        to: impl Into<String>,
        from: impl Into<String>,
    ) -> Self {
        let now = Utc::now();
        Self {
            call_id: call_id.into(),
            direction,
            state: CallState::Initiated,
            to: to.into(),
            from: from.into(),
            campaign_id: None,
            flow_name: None,
            agent: None,
            metadata: serde_json::Value::Null,
            plivo_request_uuid: None,
            plivo_call_uuid: None,
            created_at: now,
            updated_at: now,
            answered_at: None,
            ended_at: None,
            duration_secs: None,
            hangup_cause: None,
            recording_url: None,
            transcript: None,
            conversation: ConversationRecord::default(),
        }
    }

    /// The outcome label sinks show (`answered`, `no_answer`, `short_call`, `busy`,
    /// `failed`, `canceled`), once the call has ended.
    pub fn call_outcome(&self) -> Option<&'static str> {
        Some(match self.state {
            CallState::Completed => "answered",
            CallState::Missed if self.answered_at.is_some() => "short_call",
            CallState::Missed => "no_answer",
            CallState::Busy => "busy",
            CallState::Failed => "failed",
            CallState::Canceled => "canceled",
            _ => return None,
        })
    }
}

/// One lifecycle event, as stored in the outbox and delivered to every sink.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallEvent {
    /// Idempotency key: `{call_id}:{seq}`; the same event always has the same id.
    pub event_id: String,
    /// The call.
    pub call_id: String,
    /// Position in the call's events, from 1: sinks get a call's events in this order.
    pub seq: u64,
    /// What happened.
    pub event: EventType,
    /// When it happened.
    pub occurred_at: DateTime<Utc>,
    /// The call as it was right after the change.
    pub call: CallRecord,
}

impl CallEvent {
    /// The event number `seq` of `call`.
    pub fn new(call: &CallRecord, seq: u64, event: EventType) -> Self {
        Self {
            event_id: format!("{}:{seq}", call.call_id),
            call_id: call.call_id.clone(),
            seq,
            event,
            occurred_at: call.updated_at,
            call: call.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_only_move_forward_and_terminal_is_final() {
        use CallState::*;
        assert_eq!(Initiated.transition(Ringing), Ok(Transition::Changed));
        assert_eq!(
            Initiated.transition(InProgress),
            Ok(Transition::Changed),
            "ring callback may be missed"
        );
        assert_eq!(Ringing.transition(Missed), Ok(Transition::Changed));
        assert_eq!(InProgress.transition(Completed), Ok(Transition::Changed));
        assert_eq!(InProgress.transition(InProgress), Ok(Transition::Unchanged));
        assert!(matches!(
            InProgress.transition(Ringing),
            Err(TransitionError::Backwards { .. })
        ));
        for terminal in [Completed, Missed, Busy, Failed, Canceled] {
            for next in [
                Initiated, Ringing, InProgress, Completed, Missed, Busy, Failed, Canceled,
            ] {
                let result = terminal.transition(next);
                if next == terminal {
                    assert_eq!(result, Ok(Transition::Unchanged));
                } else {
                    assert!(
                        matches!(result, Err(TransitionError::Terminal { .. })),
                        "{terminal:?} -> {next:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn plivo_statuses_map_as_designed() {
        let map = |s, secs| state_from_plivo(s, secs, DEFAULT_MIN_ANSWERED_SECS);
        assert_eq!(map("queued", None), Some(CallState::Initiated));
        assert_eq!(map("ringing", None), Some(CallState::Ringing));
        assert_eq!(map("in-progress", None), Some(CallState::InProgress));
        assert_eq!(map("completed", Some(5)), Some(CallState::Completed));
        assert_eq!(map("completed", Some(4)), Some(CallState::Missed));
        assert_eq!(map("completed", None), Some(CallState::Missed));
        assert_eq!(map("no-answer", None), Some(CallState::Missed));
        assert_eq!(map("timeout", None), Some(CallState::Missed));
        assert_eq!(map("busy", None), Some(CallState::Busy));
        assert_eq!(map("failed", None), Some(CallState::Failed));
        assert_eq!(map("cancel", None), Some(CallState::Canceled));
        assert_eq!(map("Completed", Some(60)), Some(CallState::Completed));
        assert_eq!(map("weird", None), None);
    }

    #[test]
    fn names_round_trip_and_events_follow_states() {
        for s in [
            "initiated",
            "ringing",
            "in_progress",
            "completed",
            "missed",
            "busy",
            "failed",
            "canceled",
        ] {
            assert_eq!(CallState::parse(s).unwrap().as_str(), s);
        }
        for e in [
            EventType::Initiated,
            EventType::Ended,
            EventType::Completed,
            EventType::RecordingReady,
        ] {
            assert_eq!(EventType::parse(e.as_str()), Some(e));
            assert_eq!(serde_json::to_value(e).unwrap(), e.as_str());
        }
        assert_eq!(
            EventType::for_state(CallState::InProgress),
            Some(EventType::Answered)
        );
        assert_eq!(
            EventType::for_state(CallState::Busy),
            Some(EventType::Ended)
        );
    }

    #[test]
    fn outcome_tells_short_calls_from_unanswered_ones() {
        let mut call = CallRecord::new("c1", Direction::Outbound, "+15550001", "+15550002");
        assert_eq!(call.call_outcome(), None);
        call.state = CallState::Missed;
        assert_eq!(call.call_outcome(), Some("no_answer"));
        call.answered_at = Some(Utc::now());
        assert_eq!(call.call_outcome(), Some("short_call"));
        let event = CallEvent::new(&call, 3, EventType::Ended);
        assert_eq!(event.event_id, "c1:3");
    }
}
