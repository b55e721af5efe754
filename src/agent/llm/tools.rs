//! The tools an LLM agent offers its model: the built-in `end_call` and `set_slot`, and
//! the profile's HTTP tools.
//!
//! An HTTP tool sends the model's arguments (the JSON body, or the query for `GET`) to its
//! URL with its headers, under its timeout, and gives the model the answer's body (at most
//! [`MAX_RESULT`] bytes) or a short description of the failure — a tool that fails is
//! news for the model, not for the caller. Never: logs a tool's headers (they may hold
//! secrets) or its arguments.

use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use serde_json::{Value, json};

use super::profile::{HttpTool, Profile};
use crate::providers::api::{Tool, ToolCall};

/// The most of a tool's answer given to the model.
pub const MAX_RESULT: usize = 8 * 1024;

/// A tool call's result, for the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolOutcome {
    /// The call it answers.
    pub call_id: String,
    /// What the model reads.
    pub content: String,
    /// The tool failed (its content says how).
    pub failed: bool,
    /// For the call record: the tool and what went wrong, never its answer's body (which
    /// may echo the caller's data).
    pub note: String,
}

/// A built-in tool's call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuiltIn {
    /// Say goodbye, then hang up.
    EndCall,
    /// Record a fact on the call.
    SetSlot {
        /// Its name.
        name: String,
        /// Its value.
        value: String,
    },
}

/// The tools offered to the model: the built-ins, then the profile's.
pub fn offered(profile: &Profile) -> Vec<Tool> {
    let mut tools = vec![
        Tool {
            name: "end_call".into(),
            description: "End the call after saying goodbye. Use it when the conversation is over."
                .into(),
            parameters: json!({"type": "object", "properties": {
                "reason": {"type": "string", "description": "Why the call ends."}
            }}),
        },
        Tool {
            name: "set_slot".into(),
            description:
                "Record a fact the caller gave (for example their name, city or a preferred time)."
                    .into(),
            parameters: json!({"type": "object", "properties": {
                "name": {"type": "string", "description": "What the fact is, in snake_case."},
                "value": {"type": "string", "description": "The fact."}
            }, "required": ["name", "value"]}),
        },
    ];
    tools.extend(profile.tools.iter().map(|t| Tool {
        name: t.name.clone(),
        description: t.description.clone(),
        parameters: t.parameters.clone(),
    }));
    tools
}

/// `call` as a built-in tool's: `None` for any other tool; `Err` (for the model) when its
/// arguments are wrong.
pub fn built_in(call: &ToolCall) -> Option<Result<BuiltIn, String>> {
    match call.name.as_str() {
        "end_call" => Some(Ok(BuiltIn::EndCall)),
        "set_slot" => {
            let args: Value = serde_json::from_str(&call.arguments).unwrap_or(Value::Null);
            let field = |key: &str| {
                args.get(key)
                    .and_then(Value::as_str)
                    .map(str::trim)
                    .filter(|v| !v.is_empty())
                    .map(|v| v.chars().take(256).collect::<String>())
            };
            Some(match (field("name"), field("value")) {
                (Some(name), Some(value)) => Ok(BuiltIn::SetSlot { name, value }),
                _ => Err("set_slot needs a \"name\" and a \"value\", both strings.".into()),
            })
        }
        _ => None,
    }
}

/// The tool calls of one model round being answered.
#[derive(Default)]
pub struct Run {
    done: Vec<ToolOutcome>,
    pending_ids: Vec<String>,
    pending: Vec<BoxFuture<'static, ToolOutcome>>,
    filler: Option<String>,
}

impl Run {
    /// `call` answered at once.
    pub fn done(&mut self, call: &ToolCall, content: String) {
        self.done.push(ToolOutcome {
            call_id: call.id.clone(),
            content,
            failed: false,
            note: String::new(),
        });
    }

    /// The ids of the calls still running.
    pub fn pending_ids(&self) -> Vec<String> {
        self.pending_ids.clone()
    }

    /// `call` of one of the profile's HTTP tools (or of no tool at all).
    pub fn http(&mut self, profile: &Profile, client: &reqwest::Client, call: ToolCall) {
        let Some(tool) = profile.tools.iter().find(|t| t.name == call.name) else {
            self.done.push(ToolOutcome {
                content: format!("There is no tool named {:?}.", call.name),
                call_id: call.id,
                failed: true,
                note: "the model called a tool the profile does not have".into(),
            });
            return;
        };
        self.pending_ids.push(call.id.clone());
        if self.filler.is_none() {
            self.filler.clone_from(&tool.filler);
        }
        self.pending
            .push(invoke(client.clone(), tool.clone(), call).boxed());
    }

    /// The calls answered, the ones still running (as one future), and the filler to say
    /// while they run.
    pub fn split(
        self,
    ) -> (
        Vec<ToolOutcome>,
        Option<BoxFuture<'static, Vec<ToolOutcome>>>,
        Option<String>,
    ) {
        let pending = (!self.pending.is_empty())
            .then(|| futures_util::future::join_all(self.pending).boxed());
        (self.done, pending, self.filler)
    }
}

/// Calls `tool` with `call`'s arguments.
async fn invoke(client: reqwest::Client, tool: HttpTool, call: ToolCall) -> ToolOutcome {
    let outcome = |content: String, failed: bool| ToolOutcome {
        call_id: call.id.clone(),
        note: if failed {
            // The first sentence only: the reason, not the tool's body.
            let reason = content.split(": ").next().unwrap_or_default();
            format!("{}: {reason}", tool.name)
        } else {
            String::new()
        },
        content,
        failed,
    };
    let args: Value = match serde_json::from_str(&call.arguments) {
        Ok(Value::Object(map)) => Value::Object(map),
        Ok(Value::Null) | Err(_) if call.arguments.trim().is_empty() => json!({}),
        _ => return outcome("The arguments are not a JSON object.".into(), true),
    };
    let mut url = tool.url.clone();
    if tool.method == reqwest::Method::GET {
        let mut pairs = url.query_pairs_mut();
        for (key, value) in args.as_object().into_iter().flatten() {
            let value = value
                .as_str()
                .map_or_else(|| value.to_string(), str::to_owned);
            pairs.append_pair(key, &value);
        }
    }
    let mut request = client
        .request(tool.method.clone(), url)
        .headers(tool.headers.clone())
        .timeout(tool.timeout);
    if tool.method != reqwest::Method::GET {
        request = request.json(&args);
    }
    let response = match request.send().await {
        Ok(response) => response,
        Err(e) if e.is_timeout() => {
            return outcome(
                format!("The tool did not answer within {}.", secs(tool.timeout)),
                true,
            );
        }
        Err(_) => return outcome("The tool could not be reached.".into(), true),
    };
    let status = response.status();
    let (body, cut) =
        match tokio::time::timeout(tool.timeout, read_up_to(response, MAX_RESULT)).await {
            Ok(Ok(read)) => read,
            _ => return outcome("The tool's answer did not arrive whole.".into(), true),
        };
    let mut text = String::from_utf8_lossy(&body).into_owned();
    if cut {
        text.push_str(" …(cut)");
    }
    if status.is_success() {
        outcome(text, false)
    } else {
        outcome(
            format!("The tool failed with HTTP {}: {text}", status.as_u16()),
            true,
        )
    }
}

/// At most `max` bytes of `response`'s body, and whether there was more (never reading
/// more than one chunk past `max`).
async fn read_up_to(
    mut response: reqwest::Response,
    max: usize,
) -> Result<(Vec<u8>, bool), reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = max - body.len();
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if chunk.len() > room {
            return Ok((body, true));
        }
    }
    Ok((body, false))
}

fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(name: &str, arguments: &str) -> ToolCall {
        ToolCall {
            id: "c1".into(),
            name: name.into(),
            arguments: arguments.into(),
        }
    }

    #[test]
    fn built_ins_read_their_arguments() {
        assert_eq!(built_in(&call("end_call", "")), Some(Ok(BuiltIn::EndCall)));
        assert_eq!(
            built_in(&call("set_slot", r#"{"name":"city","value":" Tokyo "}"#)),
            Some(Ok(BuiltIn::SetSlot {
                name: "city".into(),
                value: "Tokyo".into()
            }))
        );
        assert!(matches!(
            built_in(&call("set_slot", r#"{"name":"city"}"#)),
            Some(Err(_))
        ));
        assert_eq!(built_in(&call("lookup", "{}")), None);
    }
}
