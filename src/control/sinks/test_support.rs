//! Outbox entries for sink and deliverer tests.

use chrono::{Duration as TimeDelta, Utc};

use super::{OutboxEntry, SinkKind};
use crate::control::model::{CallEvent, CallRecord, CallState, Direction, EventType};

/// A call id no other test (or earlier run) uses.
pub(crate) fn unique_call_id(tag: &str) -> String {
    format!("test-{tag}-{}", uuid::Uuid::new_v4().simple())
}

/// Event `seq` of `call_id` moving the call into `state`, as entry `id` for `sink`.
pub(crate) fn entry(
    sink: SinkKind,
    id: u64,
    call_id: &str,
    seq: u64,
    state: CallState,
) -> OutboxEntry {
    let mut call = CallRecord::new(call_id, Direction::Outbound, "+15550100", "+15550199");
    call.campaign_id = Some("spring".to_owned());
    call.metadata = serde_json::json!({"lead": 42});
    call.plivo_call_uuid = Some(format!("uuid-{call_id}"));
    call.state = state;
    // Events of one call occur in seq order.
    call.updated_at = call.created_at + TimeDelta::milliseconds(seq as i64);
    if matches!(state, CallState::InProgress | CallState::Completed) {
        call.answered_at = Some(call.updated_at);
    }
    if state.is_terminal() {
        call.ended_at = Some(call.updated_at);
        call.duration_secs = Some(if state == CallState::Completed { 42 } else { 0 });
        call.hangup_cause = Some("NORMAL_CLEARING".to_owned());
        call.recording_url = Some(format!("https://rec.example/{call_id}.wav"));
        call.transcript = Some("agent: hello\ncaller: hi".to_owned());
    }
    let event = EventType::for_state(state).unwrap_or(EventType::Initiated);
    OutboxEntry {
        id,
        sink,
        event: CallEvent::new(&call, seq, event),
        attempts: 0,
        last_error: None,
    }
}

/// An entry whose event occurred `ago` before now.
pub(crate) fn aged(mut entry: OutboxEntry, ago: std::time::Duration) -> OutboxEntry {
    let ago = TimeDelta::from_std(ago).unwrap_or(TimeDelta::zero());
    entry.event.occurred_at = Utc::now() - ago;
    entry
}
