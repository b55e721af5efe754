//! Whole chat answers (`POST {base}/chat/completions`, `stream: false`), for work nobody
//! listens to live: post-call summaries and extraction. Some servers (Groq, per
//! providers.md §3) take structured output only without streaming, so an
//! [`AnswerSchema`](crate::providers::api::AnswerSchema) is asked for here as
//! `response_format: json_schema`.
//!
//! The answer may take as long as the model writes: its headers wait up to
//! `openai.batch_timeout_ms`, the body is capped at [`MAX_ANSWER`] bytes. The first
//! choice's `message.content` is the text (the JSON, with a schema); a refusal, an `error`
//! object or a body that is not the protocol is an error, never an empty answer. Errors
//! carry no key.

use serde::Deserialize;
use serde_json::Value;

use super::chat::{WireRequest, finish_reason};
use super::{OpenAiClient, PROVIDER};
use crate::providers::api::http::{count_error, count_ok};
use crate::providers::api::{ChatAnswer, ChatRequest, ProviderError, ToolCall};

/// Most bytes of a whole answer.
pub const MAX_ANSWER: usize = 1024 * 1024;

/// `request` to `model`, answered whole.
pub(super) async fn complete(
    client: &OpenAiClient,
    model: &str,
    request: &ChatRequest,
) -> Result<ChatAnswer, ProviderError> {
    let body = WireRequest::new(model, request, false);
    // A failure to send is counted by the client.
    let response = client
        .send_batch(client.post("chat/completions").json(&body), "chat")
        .await?;
    let answer = client
        .read_all(response, MAX_ANSWER)
        .await
        .and_then(|body| parse(&body))
        .map_err(|e| client.without_key(e));
    match &answer {
        Ok(_) => count_ok(PROVIDER, "chat"),
        Err(error) => count_error(PROVIDER, "chat", error),
    }
    answer
}

#[derive(Deserialize)]
struct Completion {
    #[serde(default)]
    choices: Vec<Choice>,
    #[serde(default)]
    error: Option<Value>,
}

#[derive(Deserialize)]
struct Choice {
    message: Answered,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct Answered {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    refusal: Option<String>,
    #[serde(default)]
    tool_calls: Vec<WireCall>,
}

#[derive(Deserialize)]
struct WireCall {
    #[serde(default)]
    id: Option<String>,
    function: WireFunction,
}

#[derive(Deserialize)]
struct WireFunction {
    name: String,
    #[serde(default)]
    arguments: String,
}

/// A whole answer's body as a [`ChatAnswer`] (pure: the fuzz target drives it).
pub fn parse(body: &[u8]) -> Result<ChatAnswer, ProviderError> {
    let completion: Completion = serde_json::from_slice(body)
        .map_err(|e| ProviderError::protocol(PROVIDER, format!("not a completion: {e}")))?;
    if let Some(error) = completion.error {
        let message = error
            .get("message")
            .and_then(Value::as_str)
            .map_or_else(|| error.to_string(), str::to_owned);
        return Err(ProviderError::stream(PROVIDER, message));
    }
    let Some(choice) = completion.choices.into_iter().next() else {
        return Err(ProviderError::protocol(
            PROVIDER,
            "an answer with no choice",
        ));
    };
    if let Some(refusal) = choice.message.refusal.filter(|r| !r.is_empty()) {
        return Err(ProviderError::stream(
            PROVIDER,
            format!("the model refused: {refusal}"),
        ));
    }
    let tool_calls = choice
        .message
        .tool_calls
        .into_iter()
        .enumerate()
        .map(|(index, call)| ToolCall {
            id: call
                .id
                .filter(|id| !id.is_empty())
                .unwrap_or_else(|| format!("call_{index}")),
            name: call.function.name,
            arguments: call.function.arguments,
        })
        .collect();
    Ok(ChatAnswer {
        text: choice.message.content.unwrap_or_default(),
        tool_calls,
        finish: finish_reason(choice.finish_reason.as_deref()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::api::FinishReason;

    #[test]
    fn a_whole_answer_gives_its_text_and_finish() {
        let body = br#"{"id":"x","object":"chat.completion","choices":[{"index":0,
            "message":{"role":"assistant","content":"{\"city\":\"Lyon\"}"},
            "finish_reason":"stop"}],"usage":{"total_tokens":9}}"#;
        let answer = parse(body).unwrap();
        assert_eq!(answer.text, r#"{"city":"Lyon"}"#);
        assert_eq!(answer.finish, FinishReason::Stop);
        assert!(answer.tool_calls.is_empty());
    }

    #[test]
    fn refusals_errors_and_junk_are_errors_not_empty_answers() {
        let refused = br#"{"choices":[{"message":{"role":"assistant","content":null,
            "refusal":"I can't help with that."},"finish_reason":"stop"}]}"#;
        assert!(parse(refused).unwrap_err().to_string().contains("refused"));
        let error = br#"{"error":{"message":"model overloaded","type":"server_error"}}"#;
        assert!(
            parse(error)
                .unwrap_err()
                .to_string()
                .contains("model overloaded")
        );
        assert!(parse(br#"{"choices":[]}"#).is_err());
        assert!(parse(b"<html>").is_err());
    }

    #[test]
    fn tool_calls_come_whole() {
        let body = br#"{"choices":[{"message":{"role":"assistant","content":null,
            "tool_calls":[{"id":"call_1","type":"function","function":{"name":"f","arguments":"{}"}}]},
            "finish_reason":"tool_calls"}]}"#;
        let answer = parse(body).unwrap();
        assert_eq!(answer.tool_calls[0].name, "f");
        assert_eq!(answer.finish, FinishReason::ToolCalls);
    }
}
