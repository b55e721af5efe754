//! Turning what Plivo and the media stream say into state changes and events.
//!
//! Every source of truth (callbacks, the media socket, reconcile) goes through the same
//! few functions here, which express the change as a store [`Update`]: the store applies
//! it to the current record in one transaction with its events. A change the state
//! machine refuses (a late or replayed callback after the call ended) is reported, never
//! applied, so a terminal state is never undone and `call.ended` goes out once.

use chrono::{DateTime, Utc};

use super::model::{CallRecord, CallState, EventType, Transition, state_from_plivo};
use super::store::{StoreError, Update};
use crate::transcript::{ConversationRecord, Speaker};

/// What a source says about a call.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observation {
    /// Plivo's `CallStatus` / `call_status` / a CDR-derived status.
    pub status: Option<String>,
    /// Plivo's `CallUUID`, once known.
    pub call_uuid: Option<String>,
    /// Answered duration, seconds (`Duration`, `bill_duration`).
    pub duration_secs: Option<u64>,
    /// Hangup cause name.
    pub hangup_cause: Option<String>,
    /// When the call was answered, if the source says.
    pub answered_at: Option<DateTime<Utc>>,
    /// When the call ended, if the source says.
    pub ended_at: Option<DateTime<Utc>>,
}

/// Validates a destination or caller id: E.164 (`+` optional, 7–15 digits, no leading 0)
/// or a `sip:user@host` URI.
pub fn valid_number(value: &str) -> bool {
    if let Some(rest) = value.strip_prefix("sip:") {
        return match rest.split_once('@') {
            Some((user, host)) => {
                !user.is_empty()
                    && !host.is_empty()
                    && !rest
                        .chars()
                        .any(|c| c.is_whitespace() || c.is_control() || c == '<' || c == '>')
            }
            None => false,
        };
    }
    let digits = value.strip_prefix('+').unwrap_or(value);
    (7..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0')
}

/// The update that applies `observation` with Plivo's mapping (`min_answered_secs` tells
/// `completed` from `missed`). Fields are filled in even when the state does not move (a
/// CDR's duration arriving after the hangup callback). A refused transition is an error:
/// nothing is stored.
pub fn observe(observation: Observation, min_answered_secs: u64) -> Update {
    Box::new(move |call: &mut CallRecord| {
        let mut events = Vec::new();
        if let Some(uuid) = observation.call_uuid.filter(|u| !u.is_empty()) {
            call.plivo_call_uuid.get_or_insert(uuid);
        }
        let next = observation
            .status
            .as_deref()
            .and_then(|s| state_from_plivo(s, observation.duration_secs, min_answered_secs));
        if let Some(next) = next {
            // A replay of the terminal state (Plivo retries) changes nothing; only a
            // different state after the end is refused.
            if call.state.is_terminal() && next.is_terminal() && next != call.state {
                return Err(StoreError::Transition(
                    call.state
                        .transition(next)
                        .expect_err("terminal states are final"),
                ));
            }
            if call.state.transition(next)? == Transition::Changed {
                move_to(call, next, &mut events);
            }
        }
        if call.state.is_terminal() {
            if let Some(secs) = observation.duration_secs {
                call.duration_secs = Some(secs);
            }
            if let Some(cause) = observation.hangup_cause.filter(|c| !c.is_empty()) {
                call.hangup_cause.get_or_insert(cause);
            }
            if let Some(at) = observation.ended_at {
                call.ended_at = Some(at);
            }
        }
        if let Some(at) = observation.answered_at {
            call.answered_at.get_or_insert(at);
        }
        Ok(events)
    })
}

/// Moves `call` to `next` and names the event(s) it produces; `call.answered` comes
/// before a terminal state when the call skipped `in_progress` but was answered.
fn move_to(call: &mut CallRecord, next: CallState, events: &mut Vec<EventType>) {
    let now = Utc::now();
    if next == CallState::InProgress {
        call.answered_at.get_or_insert(now);
    }
    if next.is_terminal() {
        call.ended_at.get_or_insert(now);
    }
    call.state = next;
    if let Some(event) = EventType::for_state(next) {
        events.push(event);
    }
}

/// The media stream started: the call is answered (if no callback said so yet) and
/// `call.media_started` is reported once per call.
pub fn media_started(call_uuid: Option<String>) -> Update {
    Box::new(move |call: &mut CallRecord| {
        let mut events = Vec::new();
        if let Some(uuid) = call_uuid.filter(|u| !u.is_empty()) {
            call.plivo_call_uuid.get_or_insert(uuid);
        }
        if call.state.is_terminal() {
            return Ok(events);
        }
        if call.state != CallState::InProgress {
            move_to(call, CallState::InProgress, &mut events);
        }
        events.push(EventType::MediaStarted);
        Ok(events)
    })
}

/// The call could not be placed: `failed`, with the cause.
pub fn failed(cause: String) -> Update {
    Box::new(move |call: &mut CallRecord| {
        let mut events = Vec::new();
        if call.state.transition(CallState::Failed)? == Transition::Changed {
            call.hangup_cause = Some(cause);
            move_to(call, CallState::Failed, &mut events);
        }
        Ok(events)
    })
}

/// The call's recording is stored at `url`: `recording_url` is set and
/// `call.recording_ready` reported. Not a state change, so it applies after the call
/// ended too; the same URL again changes nothing and reports nothing.
pub fn recording_ready(url: String) -> Update {
    Box::new(move |call: &mut CallRecord| {
        if call.recording_url.as_deref() == Some(url.as_str()) {
            return Ok(Vec::new());
        }
        call.recording_url = Some(url);
        Ok(vec![EventType::RecordingReady])
    })
}

/// The call's conversation so far: kept on the record with the transcript's text form.
/// Not a state change and reports nothing (`call.completed` carries it after the call).
pub fn conversation(record: ConversationRecord) -> Update {
    Box::new(move |call: &mut CallRecord| {
        let lines: Vec<String> = record
            .transcript
            .iter()
            .filter_map(|entry| {
                let text = match entry.speaker {
                    Speaker::Agent => entry.heard_text.as_deref().unwrap_or(&entry.text),
                    Speaker::Caller => &entry.text,
                };
                let who = match entry.speaker {
                    Speaker::Agent => "agent",
                    Speaker::Caller => "caller",
                };
                (!text.is_empty()).then(|| format!("{who}: {text}"))
            })
            .collect();
        call.transcript = (!lines.is_empty()).then(|| lines.join("\n"));
        call.conversation = record;
        Ok(Vec::new())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::model::Direction;

    fn call() -> CallRecord {
        CallRecord::new("c1", Direction::Outbound, "+14155550100", "+14155550199")
    }

    fn run(call: &mut CallRecord, update: Update) -> Result<Vec<EventType>, StoreError> {
        update(call)
    }

    fn status(s: &str, secs: Option<u64>) -> Observation {
        Observation {
            status: Some(s.into()),
            duration_secs: secs,
            hangup_cause: Some("NORMAL_CLEARING".into()),
            ..Observation::default()
        }
    }

    #[test]
    fn numbers_are_e164_or_sip() {
        for ok in [
            "+14155550100",
            "14155550100",
            "919876543210",
            "sip:alice@example.com",
        ] {
            assert!(valid_number(ok), "{ok}");
        }
        for bad in [
            "",
            "+",
            "123",
            "+0123456789",
            "phone",
            "+1 415 555 0100",
            "sip:",
            "sip:@x",
            "sip:a@",
            "sip:a b@x",
        ] {
            assert!(!valid_number(bad), "{bad:?}");
        }
    }

    #[test]
    fn a_normal_call_reports_each_step_once() {
        let mut c = call();
        assert_eq!(
            run(&mut c, observe(status("ringing", None), 5)).unwrap(),
            [EventType::Ringing]
        );
        assert_eq!(
            run(&mut c, observe(status("ringing", None), 5)).unwrap(),
            [],
            "replayed ring"
        );
        assert_eq!(
            run(&mut c, media_started(Some("uuid-1".into()))).unwrap(),
            [EventType::Answered, EventType::MediaStarted]
        );
        assert_eq!(
            run(&mut c, observe(status("completed", Some(42)), 5)).unwrap(),
            [EventType::Ended]
        );
        assert_eq!(c.state, CallState::Completed);
        assert_eq!(
            (c.duration_secs, c.hangup_cause.as_deref()),
            (Some(42), Some("NORMAL_CLEARING"))
        );
        assert_eq!(c.plivo_call_uuid.as_deref(), Some("uuid-1"));
        assert_eq!(
            run(&mut c, observe(status("completed", Some(42)), 5)).unwrap(),
            [],
            "replayed hangup: no second call.ended"
        );
    }

    #[test]
    fn a_terminal_state_is_never_undone() {
        let mut c = call();
        run(&mut c, observe(status("busy", None), 5)).unwrap();
        assert!(run(&mut c, observe(status("completed", Some(30)), 5)).is_err());
        assert!(run(&mut c, observe(status("in-progress", None), 5)).is_err());
        assert_eq!(c.state, CallState::Busy);
        assert_eq!(
            run(&mut c, media_started(None)).unwrap(),
            [],
            "late media start after the end"
        );
    }

    #[test]
    fn a_short_answered_call_is_missed_and_a_late_cdr_fills_in_figures() {
        let mut c = call();
        run(&mut c, observe(status("in-progress", None), 5)).unwrap();
        assert_eq!(
            run(&mut c, observe(status("completed", Some(3)), 5)).unwrap(),
            [EventType::Ended]
        );
        assert_eq!(c.state, CallState::Missed);
        assert_eq!(c.call_outcome(), Some("short_call"));
        let cdr = Observation {
            duration_secs: Some(4),
            ..Observation::default()
        };
        assert_eq!(run(&mut c, observe(cdr, 5)).unwrap(), []);
        assert_eq!(c.duration_secs, Some(4));
    }

    #[test]
    fn a_recording_is_announced_after_the_end_and_once_per_url() {
        let mut c = call();
        run(&mut c, observe(status("completed", Some(42)), 5)).unwrap();
        let url = "s3://rec/c1.wav".to_owned();
        assert_eq!(
            run(&mut c, recording_ready(url.clone())).unwrap(),
            [EventType::RecordingReady]
        );
        assert_eq!(
            (c.state, c.recording_url.as_deref()),
            (CallState::Completed, Some("s3://rec/c1.wav"))
        );
        assert_eq!(
            run(&mut c, recording_ready(url)).unwrap(),
            [],
            "a re-announced URL"
        );
    }

    #[test]
    fn failure_is_terminal_with_its_cause() {
        let mut c = call();
        assert_eq!(
            run(&mut c, failed("plivo_forbidden".into())).unwrap(),
            [EventType::Ended]
        );
        assert_eq!(
            (c.state, c.hangup_cause.as_deref()),
            (CallState::Failed, Some("plivo_forbidden"))
        );
        assert!(run(&mut c, failed("again".into())).unwrap().is_empty());
    }
}
