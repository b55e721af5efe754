//! The OpenAI-compatible chat adapter against a fake server speaking the public protocol:
//! what goes on the wire, streamed text and tool calls, errors, stalls and cancels.

#[path = "common/fake_openai_chat.rs"]
mod fake_openai_chat;

use std::sync::Arc;
use std::time::{Duration, Instant};

use fake_openai_chat::{Answer, FakeChat, Piece};
use futures_util::StreamExt;
use voxgate::providers::api::{
    AnswerSchema, Chat, ChatEvent, ChatRequest, FinishReason, Message, ProviderError, RawTimeouts,
    Role, Stage, Tool, ToolCall,
};
use voxgate::providers::openai::chat::OpenAiChat;
use voxgate::providers::openai::{OpenAiClient, RawOpenAi};

const KEY: &str = "sk-test-4d1f0e9a7c";

fn chat(fake: &FakeChat, timeouts: RawTimeouts) -> OpenAiChat {
    let config = RawOpenAi {
        api_key: Some(KEY.into()),
        base_url: Some(fake.base_url.clone()),
        chat_model: Some("fake-model".into()),
        timeouts: Some(timeouts),
        ..RawOpenAi::default()
    }
    .validate()
    .unwrap();
    OpenAiChat::new(Arc::new(OpenAiClient::new(config).unwrap()), None)
}

fn request(text: &str) -> ChatRequest {
    ChatRequest {
        messages: vec![
            Message::new(Role::System, "You are brief."),
            Message::new(Role::User, text),
        ],
        ..ChatRequest::default()
    }
}

async fn collect(chat: &OpenAiChat, request: ChatRequest) -> Vec<Result<ChatEvent, ProviderError>> {
    match chat.stream(request).await {
        Ok(stream) => stream.collect().await,
        Err(error) => vec![Err(error)],
    }
}

#[tokio::test]
async fn text_streams_as_it_is_written() {
    let fake = FakeChat::start(vec![Answer::Stream(vec![
        Piece::Text("Sure, "),
        Piece::Wait(Duration::from_millis(300)),
        Piece::Text("I can help."),
    ])])
    .await;
    let chat = chat(&fake, RawTimeouts::default());
    let started = Instant::now();
    let mut stream = chat.stream(request("Hi")).await.unwrap();
    let first = stream.next().await.unwrap().unwrap();
    let first_at = started.elapsed();
    assert_eq!(first, ChatEvent::Text("Sure, ".into()));
    // The first piece is not held back until the answer is complete.
    assert!(first_at < Duration::from_millis(250), "{first_at:?}");
    let rest: Vec<_> = stream.collect().await;
    assert_eq!(
        rest,
        [
            Ok(ChatEvent::Text("I can help.".into())),
            Ok(ChatEvent::Done(FinishReason::Stop)),
        ]
    );
    let seen = &fake.seen()[0];
    assert_eq!(
        seen.authorization.as_deref(),
        Some(&*format!("Bearer {KEY}"))
    );
    assert_eq!(seen.body["model"], "fake-model");
    assert_eq!(seen.body["stream"], true);
    assert_eq!(seen.body["messages"][1]["content"], "Hi");
    assert_eq!(seen.cancelled_at, None);
}

#[tokio::test]
async fn tool_calls_arrive_whole_with_the_tools_offered() {
    // Not ASCII: the fake splits the arguments in two fragments at a character boundary.
    let arguments = r#"{"name":"city","value":"Tōkyō 東京"}"#.to_owned();
    let fake = FakeChat::start(vec![Answer::Stream(vec![Piece::Tool {
        id: "call_7",
        name: "set_slot",
        arguments: arguments.clone(),
    }])])
    .await;
    let chat = chat(&fake, RawTimeouts::default());
    let mut req = request("I'm in Tokyo");
    req.tools.push(Tool {
        name: "set_slot".into(),
        description: "Record a fact".into(),
        parameters: serde_json::json!({"type":"object","properties":{"name":{"type":"string"},"value":{"type":"string"}}}),
    });
    let events = collect(&chat, req).await;
    assert_eq!(
        events,
        [
            Ok(ChatEvent::ToolCall(ToolCall {
                id: "call_7".into(),
                name: "set_slot".into(),
                arguments,
            })),
            Ok(ChatEvent::Done(FinishReason::ToolCalls)),
        ]
    );
    assert_eq!(
        fake.seen()[0].body["tools"][0]["function"]["name"],
        "set_slot"
    );
    assert_eq!(fake.seen()[0].cancelled_at, None);
}

#[tokio::test]
async fn a_runaway_tool_name_is_a_protocol_error_not_a_growing_buffer() {
    let fake = FakeChat::start(vec![Answer::Stream(vec![
        Piece::Text("One moment."),
        Piece::NameFlood {
            fragment: "lookup_",
            times: 5_000,
        },
    ])])
    .await;
    let chat = chat(&fake, RawTimeouts::default());
    let events = collect(&chat, request("Hi")).await;
    assert_eq!(events[0], Ok(ChatEvent::Text("One moment.".into())));
    let [Err(ProviderError::Protocol { reason, .. })] = &events[1..] else {
        panic!("{events:?}")
    };
    assert!(reason.contains("tool name longer than 64"), "{reason}");
}

#[tokio::test]
async fn nothing_after_the_finish_can_spoil_a_whole_answer() {
    // A server that finishes, then stalls (or breaks) instead of sending usage and [DONE].
    let fake = FakeChat::start(vec![
        Answer::Stream(vec![
            Piece::Text("Bye."),
            Piece::Finish("stop"),
            Piece::Stall,
        ]),
        Answer::Stream(vec![Piece::Text("Bye."), Piece::Finish("stop"), Piece::Cut]),
    ])
    .await;
    let timeouts = RawTimeouts {
        idle_ms: Some(300),
        ..RawTimeouts::default()
    };
    let chat = chat(&fake, timeouts);
    for _ in 0..2 {
        let events = collect(&chat, request("Hi")).await;
        assert_eq!(
            events,
            [
                Ok(ChatEvent::Text("Bye.".into())),
                Ok(ChatEvent::Done(FinishReason::Stop)),
            ]
        );
    }
}

/// Neither the key nor any 8 or more of its leading characters in `error`'s text.
fn assert_keyless(error: &ProviderError) {
    for text in [error.to_string(), format!("{error:?}")] {
        assert!(!text.contains(&KEY[..8]), "{text}");
    }
}

#[tokio::test]
async fn a_server_quoting_the_key_back_never_gets_it_into_the_error() {
    let fake = FakeChat::start(vec![Answer::EchoKey]).await;
    let chat = chat(&fake, RawTimeouts::default());
    let error = chat_err(&chat).await;
    assert!(
        matches!(&error, ProviderError::Status { status: 401, message, .. }
            if message.starts_with("Incorrect API key provided: ***")),
        "{error:?}"
    );
    assert_keyless(&error);
}

#[tokio::test]
async fn a_refusal_gives_the_servers_message_and_never_the_key() {
    let fake = FakeChat::start(vec![Answer::Status(401, "Incorrect API key provided")]).await;
    let chat = chat(&fake, RawTimeouts::default());
    let events = collect(&chat, request("Hi")).await;
    let [Err(error)] = &events[..] else {
        panic!("{events:?}")
    };
    assert!(matches!(error, ProviderError::Status { status: 401, .. }));
    assert!(!error.retriable());
    assert_eq!(
        error.to_string(),
        "openai: HTTP 401: Incorrect API key provided"
    );
    assert_keyless(error);

    let busy = FakeChat::start(vec![Answer::Status(503, "overloaded")]).await;
    let error = chat_err(&chat_for(&busy)).await;
    assert!(error.retriable(), "{error}");
}

fn chat_for(fake: &FakeChat) -> OpenAiChat {
    chat(fake, RawTimeouts::default())
}

async fn chat_err(chat: &OpenAiChat) -> ProviderError {
    match chat.stream(request("Hi")).await {
        Ok(_) => panic!("expected an error"),
        Err(error) => error,
    }
}

#[tokio::test]
async fn errors_mid_stream_and_cut_answers_are_errors_not_short_answers() {
    let fake = FakeChat::start(vec![
        Answer::Stream(vec![
            Piece::Text("Let me "),
            Piece::Error("model overloaded"),
        ]),
        Answer::Stream(vec![Piece::Text("Let me "), Piece::Cut]),
    ])
    .await;
    let chat = chat(&fake, RawTimeouts::default());
    let events = collect(&chat, request("Hi")).await;
    assert_eq!(events[0], Ok(ChatEvent::Text("Let me ".into())));
    assert_eq!(
        events[1].as_ref().unwrap_err().to_string(),
        "openai: model overloaded"
    );
    assert_eq!(events.len(), 2);
    let events = collect(&chat, request("Hi")).await;
    assert_eq!(events[0], Ok(ChatEvent::Text("Let me ".into())));
    assert_eq!(events[1], Err(ProviderError::Closed { provider: "openai" }));
}

#[tokio::test]
async fn a_silent_server_times_out_at_first_byte_and_a_stall_at_idle() {
    let fake = FakeChat::start(vec![
        Answer::Silent(Duration::from_secs(30)),
        Answer::Stream(vec![Piece::Wait(Duration::from_secs(30))]),
        Answer::Stream(vec![Piece::Text("Hello"), Piece::Stall]),
    ])
    .await;
    let timeouts = RawTimeouts {
        first_byte_ms: Some(200),
        idle_ms: Some(300),
        ..RawTimeouts::default()
    };
    let chat = chat(&fake, timeouts);
    let started = Instant::now();
    let error = chat_err(&chat).await;
    assert!(
        matches!(
            error,
            ProviderError::Timeout {
                stage: Stage::FirstByte,
                ..
            }
        ),
        "{error}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    // The headers come at once, the first chunk (the role) too: a stall after is idle.
    let started = Instant::now();
    let events = collect(&chat, request("Hi")).await;
    let Some(Err(ProviderError::Timeout { stage, .. })) = events.last() else {
        panic!("{events:?}")
    };
    assert_eq!(*stage, Stage::Idle);
    assert!(started.elapsed() < Duration::from_secs(2));
    let events = collect(&chat, request("Hi")).await;
    assert_eq!(events[0], Ok(ChatEvent::Text("Hello".into())));
    assert!(matches!(
        events[1],
        Err(ProviderError::Timeout {
            stage: Stage::Idle,
            ..
        })
    ));
}

#[tokio::test]
async fn nobody_listening_is_a_connect_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let config = RawOpenAi {
        base_url: Some(format!("http://127.0.0.1:{port}/v1")),
        ..RawOpenAi::default()
    }
    .validate()
    .unwrap();
    let chat = OpenAiChat::new(Arc::new(OpenAiClient::new(config).unwrap()), None);
    let error = chat_err(&chat).await;
    assert!(matches!(error, ProviderError::Connect { .. }), "{error}");
    assert!(error.retriable());
}

#[tokio::test]
async fn dropping_the_stream_closes_the_connection_at_once() {
    let fake = FakeChat::start(vec![Answer::Stream(vec![
        Piece::Text("A long answer "),
        Piece::Wait(Duration::from_secs(10)),
        Piece::Text("never sent"),
    ])])
    .await;
    let chat = chat(&fake, RawTimeouts::default());
    let mut stream = chat.stream(request("Hi")).await.unwrap();
    assert_eq!(
        stream.next().await.unwrap(),
        Ok(ChatEvent::Text("A long answer ".into()))
    );
    let dropped = Instant::now();
    drop(stream);
    let deadline = Instant::now() + Duration::from_secs(2);
    let cancelled = loop {
        if let Some(at) = fake.seen()[0].cancelled_at {
            break at;
        }
        assert!(Instant::now() < deadline, "the fake never saw the cancel");
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    let after = cancelled.duration_since(dropped);
    assert!(
        after < Duration::from_millis(50),
        "cancel seen {after:?} after the drop"
    );
}

#[tokio::test]
async fn a_structured_answer_comes_whole_without_streaming_in_the_schemas_shape() {
    let fake = FakeChat::start(vec![Answer::Stream(vec![
        Piece::Text("{\"city\":\"Lyon\","),
        Piece::Text("\"confidence\":0.8}"),
    ])])
    .await;
    let schema = serde_json::json!({
        "type": "object",
        "properties": {"city": {"type": ["string", "null"]}, "confidence": {"type": "number"}},
        "required": ["city", "confidence"],
        "additionalProperties": false
    });
    let request = ChatRequest {
        answer_schema: Some(AnswerSchema {
            name: "call_facts".into(),
            schema: schema.clone(),
            strict: true,
        }),
        ..request("The caller lives in Lyon.")
    };
    let answer = chat_for(&fake).complete(request).await.expect("an answer");
    assert_eq!(answer.text, r#"{"city":"Lyon","confidence":0.8}"#);
    assert_eq!(answer.finish, FinishReason::Stop);

    let seen = fake.seen();
    assert_eq!(seen.len(), 1);
    assert!(seen[0].problems.is_empty(), "{:?}", seen[0].problems);
    // Not streamed (some servers take structured output only whole), the schema as §3
    // shows it, the key in the header.
    assert_ne!(seen[0].body["stream"], true);
    assert_eq!(seen[0].body["response_format"]["type"], "json_schema");
    assert_eq!(
        seen[0].body["response_format"]["json_schema"]["schema"],
        schema
    );
    assert_eq!(
        seen[0].authorization.as_deref(),
        Some(format!("Bearer {KEY}").as_str())
    );

    // An error answer is an error with the server's words, not an empty answer.
    let failing = FakeChat::start(vec![Answer::Status(503, "overloaded")]).await;
    let error = chat_for(&failing)
        .complete(request_with_schema())
        .await
        .unwrap_err();
    assert!(error.to_string().contains("overloaded"), "{error}");
    assert!(error.retriable());
}

fn request_with_schema() -> ChatRequest {
    ChatRequest {
        answer_schema: Some(AnswerSchema {
            name: "facts".into(),
            schema: serde_json::json!({"type": "object", "properties": {}, "additionalProperties": false}),
            strict: true,
        }),
        ..request("Extract.")
    }
}
