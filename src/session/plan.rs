//! A call's plan: what the call runs, decided once when it is answered.
//!
//! The answer URL resolves the plan (from the control plane's stored call for an outbound
//! call, from the answer URL's query and the defaults for an inbound one) and the registry
//! keeps it with the reservation; the media session reads it from its
//! [`Attachment`](super::Attachment). Nothing downstream parses a URL or reads the store
//! again to learn what the call wanted.

use crate::agent::AgentKind;
use crate::ids::{CallId, Direction};

/// What one call runs.
#[derive(Debug, Clone, PartialEq)]
pub struct CallPlan {
    /// The call.
    pub call_id: CallId,
    /// Which way it goes.
    pub direction: Direction,
    /// The agent that answers the caller.
    pub agent: AgentKind,
    /// The backend's flow name, if it gave one.
    pub flow_name: Option<String>,
    /// Recorded (when the server records calls at all); `false` when the call opted out.
    pub record: bool,
    /// The backend's campaign, if any.
    pub campaign: Option<String>,
    /// The backend's free-form data for the call (`null` when none).
    pub metadata: serde_json::Value,
    /// Caller id (empty when unknown).
    pub from: String,
    /// Destination (empty when unknown).
    pub to: String,
}

impl CallPlan {
    /// The plan of a call nobody planned (a media socket with no reservation): inbound,
    /// recorded, running `agent`.
    pub fn unplanned(call_id: CallId, agent: AgentKind) -> Self {
        Self {
            call_id,
            direction: Direction::Inbound,
            agent,
            flow_name: None,
            record: true,
            campaign: None,
            metadata: serde_json::Value::Null,
            from: String::new(),
            to: String::new(),
        }
    }
}
