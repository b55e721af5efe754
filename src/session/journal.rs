//! A call's journal: what happened in its session, and when, on one monotonic clock.
//!
//! Written on events (a VAD turn boundary, a turn queued, a barge-in), never per frame;
//! bounded, so a long call cannot grow it without limit. Tests and operators read it to
//! see the server's side of a call (for example when its VAD declared speech).

use std::sync::Mutex;
use std::time::Instant;

use serde::Serialize;

use super::playout::Heard;
use crate::ids::StreamId;

/// Entries kept per call; later ones are counted, not stored.
const MAX_ENTRIES: usize = 4_096;

/// One thing that happened.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The media stream started.
    StreamStarted {
        /// Plivo's stream id.
        stream_id: StreamId,
        /// True when it took over from an earlier socket.
        took_over: bool,
        /// The agent the call's plan chose.
        agent: &'static str,
        /// The flow the call's plan names, if any.
        flow_name: Option<String>,
        /// Whether the call is recorded.
        recorded: bool,
    },
    /// The VAD declared the caller's speech started.
    SpeechStarted {
        /// Onset on the caller's media clock, ms.
        onset_ms: u64,
    },
    /// The VAD declared the caller's speech ended.
    SpeechEnded {
        /// End on the caller's media clock, ms.
        end_ms: u64,
    },
    /// An agent turn was queued for playout.
    TurnQueued {
        /// The turn.
        turn: u64,
        /// Its length, ms.
        duration_ms: u64,
    },
    /// The turn's last frame and its checkpoint were queued for the socket.
    TurnSent {
        /// The turn.
        turn: u64,
    },
    /// The turn was heard (or assumed heard after a timeout).
    TurnHeard {
        /// The turn.
        turn: u64,
        /// How it was confirmed.
        by: &'static str,
    },
    /// The turn was not heard: the stream ended (or the outbound queue was full) before its
    /// audio and checkpoint reached the socket.
    TurnUnsent {
        /// The turn.
        turn: u64,
    },
    /// The caller spoke over the agent: its audio was cleared.
    BargeIn {
        /// Turns whose audio was cut.
        cut_turns: Vec<u64>,
    },
    /// voxgate's side asked to end the call.
    HangUp {
        /// `agent` (its goodbye) or `voxgate` (the agent failed).
        by: &'static str,
        /// Why.
        reason: String,
    },
    /// A DTMF key press.
    Dtmf {
        /// The key.
        digit: String,
    },
    /// The stream ended.
    StreamEnded {
        /// Why.
        reason: &'static str,
    },
}

impl From<Heard> for &'static str {
    fn from(heard: Heard) -> Self {
        match heard {
            Heard::Played => "played",
            Heard::Timeout => "timeout",
            Heard::Unsent => "unsent",
        }
    }
}

/// A journal entry.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Entry {
    /// When, on the process's monotonic clock.
    #[serde(skip)]
    pub at: Instant,
    /// What.
    #[serde(flatten)]
    pub event: Event,
}

/// The journal of one call.
#[derive(Debug, Default)]
pub struct Journal {
    entries: Mutex<(Vec<Entry>, u64)>,
}

impl Journal {
    /// Records `event` now.
    pub fn record(&self, event: Event) {
        self.record_at(Instant::now(), event);
    }

    /// Records `event` as having happened at `at` (a decision whose consequences were
    /// journaled or sent before the decision itself could be).
    pub fn record_at(&self, at: Instant, event: Event) {
        let mut guard = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if guard.0.len() < MAX_ENTRIES {
            guard.0.push(Entry { at, event });
        } else {
            guard.1 += 1;
        }
    }

    /// Everything recorded so far.
    pub fn entries(&self) -> Vec<Entry> {
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .0
            .clone()
    }

    /// The first entry matching `pred`.
    pub fn find(&self, pred: impl Fn(&Event) -> bool) -> Option<Entry> {
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .0
            .iter()
            .find(|e| pred(&e.event))
            .cloned()
    }
}
