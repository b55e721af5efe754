//! Resolving a call's [`CallPlan`] from what the edge knows about it, once per call.
//!
//! An outbound call's choices (agent, flow) were stored by `POST /v1/calls`: they come from
//! the control plane's record of the call. An inbound call has no record yet: it runs the
//! defaults, or what its answer URL names (`?agent=llm&flow=sales`). Recording opt-out rides the URL Plivo dials (`?record=false`), for both. A
//! store that fails to answer costs the call its choices (it runs the defaults, with a
//! warning), never the call itself.

use tracing::warn;

use super::AppState;
use crate::agent::AgentKind;
use crate::ids::{CallId, Direction};
use crate::session::plan::CallPlan;
use crate::telephony::plivo::answer::AnswerRequest;

/// The plan of `call_id`, from the control plane's record of it, the answer request (if
/// this is the answer URL) and the URL's decoded `query`.
pub(super) async fn resolve(
    state: &AppState,
    call_id: CallId,
    answer: Option<&AnswerRequest>,
    query: &[(String, String)],
) -> CallPlan {
    let stored = match &state.control {
        Some(control) => control
            .get(call_id.as_str())
            .await
            .inspect_err(|error| {
                warn!(%call_id, %error, "could not read the call's choices: running the defaults")
            })
            .ok()
            .flatten(),
        None => None,
    };
    let mut plan = CallPlan {
        record: !opted_out_of_recording(query),
        ..CallPlan::unplanned(call_id, state.default_agent)
    };
    if let Some(answer) = answer {
        plan.direction = Direction::from_plivo(&answer.direction);
        plan.from.clone_from(&answer.from);
        plan.to.clone_from(&answer.to);
    }
    // An inbound call picks its flow on the answer URL (`?flow=`); a stored call's own
    // choice below wins.
    if let Some((_, flow)) = query
        .iter()
        .find(|(k, v)| k == "flow" && !v.trim().is_empty())
    {
        plan.flow_name = Some(flow.trim().to_owned());
    }
    // …and its agent (`?agent=llm`); an unknown name keeps the default.
    if let Some((_, name)) = query.iter().find(|(k, _)| k == "agent") {
        match name.parse::<AgentKind>() {
            Ok(agent) => plan.agent = agent,
            Err(_) => warn!(call_id = %plan.call_id, agent = ?name,
                "the answer URL names an unknown agent: running the default"),
        }
    }
    if let Some(call) = stored {
        plan.direction = call.direction;
        if call.flow_name.is_some() {
            plan.flow_name = call.flow_name;
        }
        plan.campaign = call.campaign_id;
        plan.metadata = call.metadata;
        if let Some(name) = call.agent {
            match name.parse::<AgentKind>() {
                Ok(agent) => plan.agent = agent,
                Err(_) => warn!(call_id = %plan.call_id, agent = %name,
                    "the call names an unknown agent: running the default"),
            }
        }
        if plan.from.is_empty() {
            plan.from = call.from;
        }
        if plan.to.is_empty() {
            plan.to = call.to;
        }
    }
    plan
}

/// True when the query says `record=false` (or `0`, `no`, `off`).
pub(super) fn opted_out_of_recording(query: &[(String, String)]) -> bool {
    query.iter().any(|(k, v)| {
        k == "record"
            && matches!(
                v.to_ascii_lowercase().as_str(),
                "false" | "0" | "no" | "off"
            )
    })
}
