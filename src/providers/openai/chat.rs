//! Streaming chat completions (`POST {base}/chat/completions`, `stream: true`) from any
//! OpenAI-compatible server.
//!
//! The answer is server-sent events ([`super::sse`]), each a JSON chunk whose first
//! choice's `delta` holds a piece of text or fragments of tool calls; `data: [DONE]` ends
//! it. [`ChatDecoder`] turns the bytes into [`ChatEvent`]s: text as it comes, each tool
//! call whole (its fragments joined by `index`) when the choice finishes, then
//! [`ChatEvent::Done`]. An `error` object in the stream, a chunk that is not JSON, or an
//! answer that stops before it finished is an error, never a silently short answer.
//!
//! The finish reason ends the answer: nothing after it is read (the usage chunk and
//! `[DONE]` are left unread, the connection closed), so a stall or a cut after it cannot
//! follow [`ChatEvent::Done`] with an error.
//!
//! Bounded: at most [`MAX_TOOL_CALLS`] calls, each with a name of at most
//! [`MAX_TOOL_NAME`] characters, an id of at most [`MAX_TOOL_ID`] and arguments of at most
//! [`MAX_ARGUMENTS`] bytes; beyond is a protocol error. Cancel by dropping the
//! [`ChatStream`]: the connection closes. Errors carry no key.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use futures_util::StreamExt;
use metrics::counter;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::sse::SseReader;
use super::{OpenAiClient, PROVIDER};
use crate::providers::api::http::{count_error, count_ok};
use crate::providers::api::{
    Chat, ChatAnswer, ChatEvent, ChatRequest, ChatStream, FinishReason, Message, ProviderError,
    Tool, ToolCall,
};
use crate::telemetry;

/// Most tool calls one answer may make.
pub const MAX_TOOL_CALLS: usize = 16;
/// Most bytes of one tool call's arguments.
pub const MAX_ARGUMENTS: usize = 64 * 1024;
/// Most characters of a tool's name (OpenAI's function names are `[a-zA-Z0-9_-]{1,64}`).
pub const MAX_TOOL_NAME: usize = 64;
/// Most characters of a tool call's id.
pub const MAX_TOOL_ID: usize = 256;

/// Chat completions with one model.
#[derive(Debug, Clone)]
pub struct OpenAiChat {
    client: Arc<OpenAiClient>,
    model: String,
}

impl OpenAiChat {
    /// Completions from `model` (else the section's `chat_model`).
    pub fn new(client: Arc<OpenAiClient>, model: Option<&str>) -> Self {
        let model = model.map_or_else(|| client.config().chat_model.clone(), str::to_owned);
        Self { client, model }
    }
}

#[async_trait::async_trait]
impl Chat for OpenAiChat {
    fn name(&self) -> &'static str {
        PROVIDER
    }

    async fn complete(&self, request: ChatRequest) -> Result<ChatAnswer, ProviderError> {
        super::complete::complete(&self.client, &self.model, &request).await
    }

    async fn stream(&self, request: ChatRequest) -> Result<ChatStream, ProviderError> {
        let body = WireRequest::new(&self.model, &request, true);
        let response = self
            .client
            .send(self.client.post("chat/completions").json(&body), "chat")
            .await?;
        let body = Box::pin(self.client.body(response));
        let client = Arc::clone(&self.client);
        let ready: VecDeque<Result<ChatEvent, ProviderError>> = VecDeque::new();
        let state = (Some(body), ChatDecoder::new(), ready);
        let stream =
            futures_util::stream::unfold(state, move |(mut body, mut decoder, mut ready)| {
                let client = Arc::clone(&client);
                async move {
                    loop {
                        if let Some(event) = ready.pop_front() {
                            let event = event.map_err(|e| client.without_key(e));
                            if let Err(error) = &event {
                                count_error(PROVIDER, "chat", error);
                            }
                            return Some((event, (body, decoder, ready)));
                        }
                        // Over: the body is dropped, which closes the connection.
                        let reading = body.as_mut()?;
                        let over = match reading.next().await {
                            Some(Ok(bytes)) => decoder.feed(&bytes, &mut ready),
                            Some(Err(error)) => {
                                ready.push_back(Err(error));
                                true
                            }
                            None => {
                                decoder.end(&mut ready);
                                true
                            }
                        };
                        if over {
                            body = None;
                            if !ready.iter().any(Result::is_err) {
                                count_ok(PROVIDER, "chat");
                            }
                        }
                    }
                }
            });
        Ok(Box::pin(stream))
    }
}

// ----- the request ----------------------------------------------------------------------

#[derive(Serialize)]
pub(super) struct WireRequest<'a> {
    model: &'a str,
    messages: Vec<WireMessage<'a>>,
    stream: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<WireTool<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_format: Option<WireResponseFormat<'a>>,
}

/// `{"type":"json_schema","json_schema":{name, schema, strict}}`.
#[derive(Serialize)]
struct WireResponseFormat<'a> {
    r#type: &'static str,
    json_schema: WireSchema<'a>,
}

#[derive(Serialize)]
struct WireSchema<'a> {
    name: &'a str,
    schema: &'a Value,
    strict: bool,
}

#[derive(Serialize)]
struct WireMessage<'a> {
    role: &'static str,
    content: Option<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<WireToolCall<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_call_id: Option<&'a str>,
}

#[derive(Serialize)]
struct WireToolCall<'a> {
    id: &'a str,
    r#type: &'static str,
    function: WireFunctionCall<'a>,
}

#[derive(Serialize)]
struct WireFunctionCall<'a> {
    name: &'a str,
    arguments: &'a str,
}

#[derive(Serialize)]
struct WireTool<'a> {
    r#type: &'static str,
    function: WireFunction<'a>,
}

#[derive(Serialize)]
struct WireFunction<'a> {
    name: &'a str,
    description: &'a str,
    parameters: &'a Value,
}

impl<'a> WireRequest<'a> {
    /// The body of `request` to `model`, streamed or whole.
    pub(super) fn new(model: &'a str, request: &'a ChatRequest, stream: bool) -> Self {
        Self {
            model,
            messages: request.messages.iter().map(WireMessage::new).collect(),
            stream,
            tools: request.tools.iter().map(WireTool::new).collect(),
            temperature: request.temperature,
            max_tokens: request.max_tokens,
            response_format: request
                .answer_schema
                .as_ref()
                .map(|schema| WireResponseFormat {
                    r#type: "json_schema",
                    json_schema: WireSchema {
                        name: &schema.name,
                        schema: &schema.schema,
                        strict: schema.strict,
                    },
                }),
        }
    }
}

impl<'a> WireMessage<'a> {
    fn new(message: &'a Message) -> Self {
        // An assistant message that only calls tools has null content on the wire.
        let content = (!message.content.is_empty() || message.tool_calls.is_empty())
            .then_some(message.content.as_str());
        Self {
            role: message.role.as_str(),
            content,
            tool_calls: message
                .tool_calls
                .iter()
                .map(|call| WireToolCall {
                    id: &call.id,
                    r#type: "function",
                    function: WireFunctionCall {
                        name: &call.name,
                        arguments: &call.arguments,
                    },
                })
                .collect(),
            tool_call_id: message.tool_call_id.as_deref(),
        }
    }
}

impl<'a> WireTool<'a> {
    fn new(tool: &'a Tool) -> Self {
        Self {
            r#type: "function",
            function: WireFunction {
                name: &tool.name,
                description: &tool.description,
                parameters: &tool.parameters,
            },
        }
    }
}

// ----- the answer -----------------------------------------------------------------------

#[derive(Deserialize)]
struct Chunk {
    #[serde(default)]
    choices: Vec<Choice>,
    #[serde(default)]
    error: Option<Value>,
}

#[derive(Deserialize)]
struct Choice {
    #[serde(default)]
    index: u32,
    #[serde(default)]
    delta: Option<Delta>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct Delta {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<ToolDelta>>,
}

#[derive(Deserialize)]
struct ToolDelta {
    #[serde(default)]
    index: u32,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    function: Option<FunctionDelta>,
}

#[derive(Deserialize)]
struct FunctionDelta {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    arguments: Option<String>,
}

/// A tool call being assembled from its fragments.
#[derive(Debug, Default)]
struct Partial {
    id: String,
    name: String,
    arguments: String,
}

/// Turns a chat stream's bytes into events (pure: the fuzz target drives it).
#[derive(Debug, Default)]
pub struct ChatDecoder {
    sse: SseReader,
    calls: BTreeMap<u32, Partial>,
    finished: bool,
    done: bool,
    failed: bool,
}

impl ChatDecoder {
    /// A decoder at the start of an answer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads `bytes`, appending the events they complete to `out`. True once the stream
    /// is over (a finish reason, `[DONE]` or an error): later bytes are ignored.
    pub fn feed(
        &mut self,
        bytes: &[u8],
        out: &mut VecDeque<Result<ChatEvent, ProviderError>>,
    ) -> bool {
        if self.over() {
            return true;
        }
        let mut failure = None;
        // The reader is lent out while its events change the rest of the decoder.
        let mut sse = std::mem::take(&mut self.sse);
        let read = sse.feed(bytes, |data| {
            if failure.is_some() || self.done || self.finished {
                return;
            }
            if let Err(error) = self.event(data, out) {
                failure = Some(error);
            }
        });
        self.sse = sse;
        // Bytes after the finish are not read: their faults are not the answer's.
        if let Err(error) = read
            && !self.finished
            && !self.done
        {
            failure.get_or_insert(ProviderError::protocol(PROVIDER, error.to_string()));
        }
        if let Some(error) = failure {
            self.failed = true;
            out.push_back(Err(error));
        }
        self.over()
    }

    /// Whether the answer is over: finished, `[DONE]` or failed.
    fn over(&self) -> bool {
        self.done || self.failed || self.finished
    }

    /// The body ended: an answer that never finished is cut short (one that finished but
    /// did not say `[DONE]` is whole).
    pub fn end(&mut self, out: &mut VecDeque<Result<ChatEvent, ProviderError>>) {
        if self.done || self.failed || self.finished {
            return;
        }
        self.failed = true;
        out.push_back(Err(ProviderError::Closed { provider: PROVIDER }));
    }

    fn event(
        &mut self,
        data: &str,
        out: &mut VecDeque<Result<ChatEvent, ProviderError>>,
    ) -> Result<(), ProviderError> {
        if data.trim() == "[DONE]" || self.finished {
            if !self.finished {
                // Some servers end without a finish reason: what came is the answer.
                self.finish(None, out)?;
            }
            self.done = true;
            return Ok(());
        }
        let chunk: Chunk = serde_json::from_str(data).map_err(|e| {
            counter!(telemetry::PROVIDER_BAD_MESSAGES, "provider" => PROVIDER).increment(1);
            ProviderError::protocol(PROVIDER, format!("a chunk is not chat JSON: {e}"))
        })?;
        if let Some(error) = chunk.error.filter(|e| !e.is_null()) {
            let message = error
                .get("message")
                .and_then(Value::as_str)
                .map_or_else(|| error.to_string(), str::to_owned);
            return Err(ProviderError::stream(PROVIDER, message));
        }
        for choice in chunk.choices.into_iter().filter(|c| c.index == 0) {
            if self.finished {
                break;
            }
            if let Some(delta) = choice.delta {
                if let Some(text) = delta.content.filter(|t| !t.is_empty()) {
                    out.push_back(Ok(ChatEvent::Text(text)));
                }
                for fragment in delta.tool_calls.unwrap_or_default() {
                    self.fragment(fragment)?;
                }
            }
            if let Some(reason) = choice.finish_reason {
                self.finish(Some(&reason), out)?;
            }
        }
        Ok(())
    }

    fn fragment(&mut self, fragment: ToolDelta) -> Result<(), ProviderError> {
        if !self.calls.contains_key(&fragment.index) && self.calls.len() >= MAX_TOOL_CALLS {
            return Err(ProviderError::protocol(
                PROVIDER,
                format!("more than {MAX_TOOL_CALLS} tool calls"),
            ));
        }
        let call = self.calls.entry(fragment.index).or_default();
        if let Some(id) = fragment.id {
            // Servers send the id once, some repeat it: the latest stands.
            if id.chars().count() > MAX_TOOL_ID {
                return Err(ProviderError::protocol(
                    PROVIDER,
                    format!("a tool call id longer than {MAX_TOOL_ID} characters"),
                ));
            }
            call.id = id;
        }
        if let Some(function) = fragment.function {
            if let Some(name) = function.name {
                if call.name.chars().count() + name.chars().count() > MAX_TOOL_NAME {
                    return Err(ProviderError::protocol(
                        PROVIDER,
                        format!("a tool name longer than {MAX_TOOL_NAME} characters"),
                    ));
                }
                call.name.push_str(&name);
            }
            if let Some(arguments) = function.arguments {
                if call.arguments.len() + arguments.len() > MAX_ARGUMENTS {
                    return Err(ProviderError::protocol(
                        PROVIDER,
                        format!("tool call arguments longer than {MAX_ARGUMENTS} bytes"),
                    ));
                }
                call.arguments.push_str(&arguments);
            }
        }
        Ok(())
    }

    fn finish(
        &mut self,
        reason: Option<&str>,
        out: &mut VecDeque<Result<ChatEvent, ProviderError>>,
    ) -> Result<(), ProviderError> {
        self.finished = true;
        for (index, call) in std::mem::take(&mut self.calls) {
            if call.name.is_empty() {
                return Err(ProviderError::protocol(
                    PROVIDER,
                    format!("tool call {index} has no name"),
                ));
            }
            let id = if call.id.is_empty() {
                format!("call_{index}")
            } else {
                call.id
            };
            out.push_back(Ok(ChatEvent::ToolCall(ToolCall {
                id,
                name: call.name,
                arguments: call.arguments,
            })));
        }
        out.push_back(Ok(ChatEvent::Done(finish_reason(reason))));
        Ok(())
    }
}

/// A `finish_reason` as a [`FinishReason`] (none: a plain stop).
pub(super) fn finish_reason(reason: Option<&str>) -> FinishReason {
    match reason {
        None | Some("stop") => FinishReason::Stop,
        Some("length") => FinishReason::Length,
        Some("tool_calls" | "function_call") => FinishReason::ToolCalls,
        Some("content_filter") => FinishReason::ContentFilter,
        Some(other) => FinishReason::Other(other.chars().take(64).collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::api::Role;

    fn decode(chunks: &[&str]) -> Vec<Result<ChatEvent, ProviderError>> {
        let mut decoder = ChatDecoder::new();
        let mut out = VecDeque::new();
        let mut over = false;
        for chunk in chunks {
            over = decoder.feed(chunk.as_bytes(), &mut out);
        }
        if !over {
            decoder.end(&mut out);
        }
        out.into()
    }

    const HEAD: &str = r#"data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}"#;

    #[test]
    fn text_streams_then_done() {
        let events = decode(&[
            HEAD,
            "\n\n",
            r#"data: {"choices":[{"index":0,"delta":{"content":"Sure, "},"finish_reason":null}]}"#,
            "\n\ndata: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"I can.\"},\"finish_reason\":null}]}\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n",
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":2,\"total_tokens\":7}}\n\n",
            "data: [DONE]\n\n",
        ]);
        assert_eq!(
            events,
            [
                Ok(ChatEvent::Text("Sure, ".into())),
                Ok(ChatEvent::Text("I can.".into())),
                Ok(ChatEvent::Done(FinishReason::Stop)),
            ]
        );
    }

    #[test]
    fn tool_calls_are_joined_by_index() {
        let events = decode(&[
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_1\",\"type\":\"function\",\"function\":{\"name\":\"end_call\",\"arguments\":\"\"}}]},\"finish_reason\":null}]}\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":1,\"id\":\"call_2\",\"function\":{\"name\":\"set_slot\",\"arguments\":\"{\\\"name\\\":\"}}]},\"finish_reason\":null}]}\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"reason\\\":\\\"done\\\"}\"}}]},\"finish_reason\":null}]}\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":1,\"function\":{\"arguments\":\"\\\"city\\\"}\"}}]},\"finish_reason\":null}]}\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\n\ndata: [DONE]\n\n",
        ]);
        assert_eq!(
            events,
            [
                Ok(ChatEvent::ToolCall(ToolCall {
                    id: "call_1".into(),
                    name: "end_call".into(),
                    arguments: r#"{"reason":"done"}"#.into(),
                })),
                Ok(ChatEvent::ToolCall(ToolCall {
                    id: "call_2".into(),
                    name: "set_slot".into(),
                    arguments: r#"{"name":"city"}"#.into(),
                })),
                Ok(ChatEvent::Done(FinishReason::ToolCalls)),
            ]
        );
    }

    #[test]
    fn errors_in_the_stream_and_short_answers_are_errors() {
        let events = decode(&[
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}]}\n\n",
            "data: {\"error\":{\"message\":\"model overloaded\",\"type\":\"server_error\"}}\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"ignored\"}}]}\n\n",
        ]);
        assert_eq!(events.len(), 2);
        assert_eq!(
            events[1].as_ref().unwrap_err().to_string(),
            "openai: model overloaded"
        );
        let cut =
            decode(&["data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}]}\n\n"]);
        assert_eq!(cut[1], Err(ProviderError::Closed { provider: PROVIDER }));
        let garbage = decode(&["data: <html>\n\n"]);
        assert!(matches!(garbage[0], Err(ProviderError::Protocol { .. })));
        // A server that ends with [DONE] but no finish reason gave a whole answer.
        let done = decode(&[
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}]}\n\ndata: [DONE]\n\n",
        ]);
        assert_eq!(done[1], Ok(ChatEvent::Done(FinishReason::Stop)));
    }

    #[test]
    fn too_many_or_too_long_tool_calls_are_refused() {
        let mut chunks = Vec::new();
        for i in 0..=MAX_TOOL_CALLS {
            chunks.push(format!("data: {{\"choices\":[{{\"index\":0,\"delta\":{{\"tool_calls\":[{{\"index\":{i},\"function\":{{\"name\":\"t\"}}}}]}}}}]}}\n\n"));
        }
        let refs: Vec<&str> = chunks.iter().map(String::as_str).collect();
        let events = decode(&refs);
        assert!(matches!(
            events.last(),
            Some(Err(ProviderError::Protocol { .. }))
        ));
    }

    /// A tool-call fragment for call 0 with `name` and `id` (when given).
    fn fragment(name: &str, id: Option<&str>) -> String {
        let mut call = serde_json::json!({"index": 0, "function": {"name": name}});
        if let Some(id) = id {
            call["id"] = id.into();
        }
        let chunk = serde_json::json!({"choices": [{"index": 0, "delta": {"tool_calls": [call]}}]});
        format!("data: {chunk}\n\n")
    }

    #[test]
    fn a_tool_name_or_id_flood_is_a_protocol_error() {
        // 64 characters in fragments are a name; one more is not.
        let mut chunks = vec![
            fragment(&"n".repeat(60), Some("call_1")),
            fragment("name", None),
        ];
        chunks.push(
            "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\n\n"
                .into(),
        );
        let refs: Vec<&str> = chunks.iter().map(String::as_str).collect();
        let events = decode(&refs);
        assert!(
            matches!(&events[0], Ok(ChatEvent::ToolCall(call)) if call.name.len() == MAX_TOOL_NAME),
            "{events:?}"
        );
        // A server repeating a name fragment forever is cut off at the cap, not buffered.
        let flood: Vec<String> = (0..10_000).map(|_| fragment("get_weather", None)).collect();
        let refs: Vec<&str> = flood.iter().map(String::as_str).collect();
        let events = decode(&refs);
        let [Err(ProviderError::Protocol { reason, .. })] = &events[..] else {
            panic!("{events:?}")
        };
        assert!(reason.contains("tool name longer than 64"), "{reason}");
        let long_id = fragment("t", Some(&"i".repeat(MAX_TOOL_ID + 1)));
        let events = decode(&[&long_id]);
        assert!(
            matches!(&events[..], [Err(ProviderError::Protocol { reason, .. })] if reason.contains("id longer")),
            "{events:?}"
        );
    }

    #[test]
    fn nothing_after_the_finish_is_read() {
        let mut decoder = ChatDecoder::new();
        let mut out = VecDeque::new();
        let finish = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"},\"finish_reason\":\"stop\"}]}\n\n";
        assert!(decoder.feed(finish.as_bytes(), &mut out));
        // What a broken server sends after the finish is neither read nor an error.
        assert!(decoder.feed(b"data: <html>\n\n", &mut out));
        decoder.end(&mut out);
        assert_eq!(
            Vec::from(out),
            [
                Ok(ChatEvent::Text("Hi".into())),
                Ok(ChatEvent::Done(FinishReason::Stop))
            ]
        );
        // In the same read too, even past the SSE reader's limit.
        let mut decoder = ChatDecoder::new();
        let mut out = VecDeque::new();
        let mut bytes = finish.as_bytes().to_vec();
        bytes.extend(std::iter::repeat_n(b'x', super::super::sse::MAX_EVENT + 10));
        assert!(decoder.feed(&bytes, &mut out));
        assert_eq!(out.back(), Some(&Ok(ChatEvent::Done(FinishReason::Stop))));
    }

    #[test]
    fn the_request_is_openais_shape() {
        let request = ChatRequest {
            messages: vec![
                Message::new(Role::System, "Be brief."),
                Message::new(Role::User, "Hi"),
                Message {
                    role: Role::Assistant,
                    content: String::new(),
                    tool_calls: vec![ToolCall {
                        id: "call_1".into(),
                        name: "lookup".into(),
                        arguments: "{}".into(),
                    }],
                    tool_call_id: None,
                },
                Message::tool_result("call_1", "{\"open\":true}"),
            ],
            tools: vec![Tool {
                name: "lookup".into(),
                description: "Looks up".into(),
                parameters: serde_json::json!({"type":"object","properties":{}}),
            }],
            temperature: Some(0.5),
            max_tokens: None,
            answer_schema: None,
        };
        let wire = serde_json::to_value(WireRequest::new("m", &request, true)).unwrap();
        assert_eq!(
            wire,
            serde_json::json!({
                "model": "m",
                "stream": true,
                "temperature": 0.5,
                "messages": [
                    {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": "Hi"},
                    {"role": "assistant", "content": null, "tool_calls": [
                        {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": "{}"}}
                    ]},
                    {"role": "tool", "content": "{\"open\":true}", "tool_call_id": "call_1"}
                ],
                "tools": [{"type": "function", "function": {"name": "lookup", "description": "Looks up", "parameters": {"type":"object","properties":{}}}}]
            })
        );
    }

    #[test]
    fn an_answer_schema_is_asked_as_a_json_schema_response_format_without_streaming() {
        let request = ChatRequest {
            messages: vec![Message::new(Role::User, "Extract.")],
            answer_schema: Some(crate::providers::api::AnswerSchema {
                name: "call_facts".into(),
                schema: serde_json::json!({"type":"object","properties":{},"additionalProperties":false}),
                strict: true,
            }),
            ..ChatRequest::default()
        };
        let wire = serde_json::to_value(WireRequest::new("m", &request, false)).unwrap();
        assert_eq!(wire["stream"], false);
        assert_eq!(
            wire["response_format"],
            serde_json::json!({"type": "json_schema", "json_schema": {
                "name": "call_facts", "strict": true,
                "schema": {"type":"object","properties":{},"additionalProperties":false}}})
        );
    }
}
