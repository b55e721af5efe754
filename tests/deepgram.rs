//! The Deepgram adapters against a fake Deepgram speaking the public protocol: what goes
//! on the wire (audio frames, query, key, control messages), the events an agent gets,
//! keep-alive, finalize, close, refusals, server-side closes, timeouts, and batch.

#[path = "common/fake_deepgram.rs"]
mod fake_deepgram;

use std::time::{Duration, Instant};

use axum::response::IntoResponse;
use fake_deepgram::{
    BatchAnswer, FakeDeepgram, LiveScript, Received, Step, results, silent_listener,
    two_channel_answer,
};
use serde_json::json;
use voxgate::providers::api::{
    BatchTranscription, ProviderError, RawTimeouts, SpeechToText, Stage, SttAudio, SttEvent,
    SttFrame, SttStream, SttWord, Utterance,
};
use voxgate::providers::deepgram::{DeepgramBatch, DeepgramLive, RawDeepgram};

const KEY: &str = "dg-test-5e0c1b7a93";

fn raw(base_url: &str) -> RawDeepgram {
    RawDeepgram {
        api_key: Some(KEY.into()),
        base_url: Some(base_url.into()),
        ..RawDeepgram::default()
    }
}

fn live(raw: RawDeepgram) -> DeepgramLive {
    DeepgramLive::new(raw.validate().unwrap())
}

/// 20 ms of a tone at 8 kHz, different per frame.
fn frame(n: usize) -> Vec<i16> {
    (0..160)
        .map(|i| ((((i + n * 7) % 40) as i16) - 20) * 500)
        .collect()
}

/// Every event until the stream ends (bounded).
async fn drain(stream: &mut SttStream) -> Vec<Result<SttEvent, ProviderError>> {
    let mut out = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(5), stream.next()).await {
            Ok(Some(event)) => out.push(event),
            Ok(None) => return out,
            Err(_) => panic!("the stream never ended; so far {out:?}"),
        }
    }
}

#[tokio::test]
async fn audio_goes_out_frame_by_frame_with_the_query_and_key() {
    let fake = FakeDeepgram::start(LiveScript::default(), vec![]).await;
    let stt = live(RawDeepgram {
        keyterms: Some(vec!["Plivo".into(), "voxgate".into()]),
        ..raw(&fake.base_url)
    });
    assert_eq!(stt.audio(), SttAudio::Mulaw8k);
    let stream = stt.open().await.unwrap();
    let pushed: Vec<Vec<i16>> = (0..50).map(frame).collect();
    for samples in &pushed {
        assert!(stream.push(samples));
    }
    let seen = fake.wait_socket(0, |s| s.frames().len() >= 50).await;

    let frames = seen.frames();
    assert_eq!(frames.len(), 50);
    for (got, samples) in frames.iter().zip(&pushed) {
        assert_eq!(got.1.len(), 160);
        assert_eq!(got.1, SttFrame::encode(SttAudio::Mulaw8k, samples).bytes());
    }
    for (key, value) in [
        ("model", "nova-3"),
        ("language", "en"),
        ("encoding", "mulaw"),
        ("sample_rate", "8000"),
        ("interim_results", "true"),
        ("vad_events", "true"),
        ("utterance_end_ms", "1000"),
        ("endpointing", "300"),
        ("smart_format", "true"),
    ] {
        assert_eq!(seen.param(key), [value], "query {key} in {}", seen.query);
    }
    assert_eq!(seen.param("keyterm"), ["Plivo", "voxgate"]);
    assert_eq!(
        seen.headers.get("authorization").unwrap(),
        &format!("Token {KEY}")
    );
    assert!(seen.violations.is_empty(), "{:?}", seen.violations);
}

#[tokio::test]
async fn linear16_frames_are_640_bytes_at_16k() {
    let fake = FakeDeepgram::start(LiveScript::default(), vec![]).await;
    let stt = live(RawDeepgram {
        encoding: Some("linear16".into()),
        ..raw(&fake.base_url)
    });
    let stream = stt.open().await.unwrap();
    assert_eq!(stream.audio(), SttAudio::Pcm16k);
    let samples: Vec<i16> = (0..320).map(|i| i * 3 - 400).collect();
    assert!(stream.push(&samples));
    let seen = fake.wait_socket(0, |s| !s.frames().is_empty()).await;
    assert_eq!(seen.param("encoding"), ["linear16"]);
    assert_eq!(seen.param("sample_rate"), ["16000"]);
    assert_eq!(
        seen.frames()[0].1,
        SttFrame::encode(SttAudio::Pcm16k, &samples).bytes()
    );
    assert_eq!(seen.frames()[0].1.len(), 640);
}

#[tokio::test]
async fn server_results_become_events_in_ms() {
    let script = LiveScript {
        steps: vec![
            Step::AfterFrames(1),
            Step::Send(json!({"type": "SpeechStarted", "channel": [0, 1], "timestamp": 0.42})),
            Step::Send(results(
                "yes",
                0.4,
                0.6,
                false,
                false,
                false,
                &[("yes", "yes", 0.5, 0.8)],
            )),
            Step::Send(json!({"type": "Metadata", "request_id": "x"})),
            Step::SendRaw("{ this is not json"),
            Step::Send(json!({"type": "SomethingNew", "x": 1})),
            Step::Send(results("", 1.0, 0.5, false, false, false, &[])),
            Step::Send(results(
                "yes please",
                0.4,
                1.2,
                true,
                true,
                false,
                &[("yes", "Yes", 0.5, 0.8), ("please", "please.", 0.9, 1.4)],
            )),
            Step::Send(json!({"type": "UtteranceEnd", "channel": [0, 1], "last_word_end": 1.4})),
        ],
        ..LiveScript::default()
    };
    let fake = FakeDeepgram::start(script, vec![]).await;
    let mut stream = live(raw(&fake.base_url)).open().await.unwrap();
    assert!(stream.push(&frame(0)));

    let mut events = Vec::new();
    while events.len() < 4 {
        let next = tokio::time::timeout(Duration::from_secs(5), stream.next())
            .await
            .expect("events arrive")
            .expect("the stream stays open");
        events.push(next.unwrap());
    }
    let word = |text: &str, start_ms, end_ms| SttWord {
        text: text.into(),
        start_ms,
        end_ms,
        confidence: 0.9,
    };
    assert_eq!(
        events,
        vec![
            SttEvent::SpeechStarted { at_ms: 420 },
            SttEvent::Transcript {
                text: "yes".into(),
                is_final: false,
                speech_final: false,
                from_finalize: false,
                start_ms: 400,
                end_ms: 1_000,
                words: vec![word("yes", 500, 800)],
                confidence: 0.95,
            },
            SttEvent::Transcript {
                text: "yes please".into(),
                is_final: true,
                speech_final: true,
                from_finalize: false,
                start_ms: 400,
                end_ms: 1_600,
                words: vec![word("Yes", 500, 800), word("please.", 900, 1_400)],
                confidence: 0.95,
            },
            SttEvent::UtteranceEnd {
                last_word_end_ms: 1_400
            },
        ]
    );
    // Nothing more came of the metadata, the junk, the unknown type or the empty result.
    assert!(stream.close());
    let rest = drain(&mut stream).await;
    assert!(rest.is_empty(), "{rest:?}");
}

#[tokio::test]
async fn a_quiet_stream_sends_keepalive_text_and_never_an_empty_frame() {
    let fake = FakeDeepgram::start(LiveScript::default(), vec![]).await;
    let stt = live(RawDeepgram {
        keepalive_ms: Some(300),
        ..raw(&fake.base_url)
    });
    let stream = stt.open().await.unwrap();
    // Audio every 20 ms for half a second: no keep-alive needed.
    for n in 0..25 {
        assert!(stream.push(&frame(n)));
        if n == 10 {
            assert!(stream.push(&[])); // an empty frame must not reach the wire
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let last_push = Instant::now();
    let seen = fake
        .wait_socket(0, |s| s.controls().iter().any(|(_, t)| t == "KeepAlive"))
        .await;
    let frames = seen.frames();
    assert_eq!(frames.len(), 25);
    assert!(frames.iter().all(|(_, bytes)| bytes.len() == 160));
    let (first_keepalive, _) = seen
        .controls()
        .into_iter()
        .find(|(_, t)| t == "KeepAlive")
        .unwrap();
    let last_frame = frames.last().unwrap().0;
    assert!(
        first_keepalive > last_frame,
        "a keep-alive went out while audio was flowing"
    );
    // Sent as a text frame with exactly the documented JSON, a keep-alive period after
    // the last audio (well under the 10 s after which Deepgram gives up).
    assert!(
        seen.messages
            .iter()
            .any(|(_, m)| *m == Received::Text(r#"{"type":"KeepAlive"}"#.into()))
    );
    let quiet = first_keepalive.duration_since(last_frame);
    assert!(quiet >= Duration::from_millis(250), "{quiet:?}");
    assert!(first_keepalive.duration_since(last_push) < Duration::from_secs(2));
    // And it keeps going while the stream stays quiet.
    let seen = fake
        .wait_socket(0, |s| {
            s.controls()
                .iter()
                .filter(|(_, t)| t == "KeepAlive")
                .count()
                >= 3
        })
        .await;
    assert!(seen.violations.is_empty(), "{:?}", seen.violations);
    assert_eq!(seen.frames().len(), 25);
}

#[tokio::test]
async fn finalize_is_answered_from_finalize() {
    let script = LiveScript {
        on_finalize: Some(results(
            "thanks",
            0.0,
            0.8,
            true,
            false,
            true,
            &[("thanks", "Thanks.", 0.1, 0.6)],
        )),
        ..LiveScript::default()
    };
    let fake = FakeDeepgram::start(script, vec![]).await;
    let mut stream = live(raw(&fake.base_url)).open().await.unwrap();
    for n in 0..5 {
        assert!(stream.push(&frame(n)));
    }
    assert!(stream.finalize());
    let event = tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(
        matches!(&event, SttEvent::Transcript { from_finalize: true, is_final: true, text, .. } if text == "thanks"),
        "{event:?}"
    );
    let seen = fake.socket(0).unwrap();
    assert_eq!(
        seen.messages.last().unwrap().1,
        Received::Text(r#"{"type":"Finalize"}"#.into())
    );
    assert_eq!(seen.frames().len(), 5, "the audio went before the Finalize");
}

#[tokio::test]
async fn close_delivers_the_last_final_then_ends() {
    let script = LiveScript {
        on_close_stream: vec![results(
            "goodbye",
            2.0,
            0.7,
            true,
            true,
            false,
            &[("goodbye", "Goodbye.", 2.1, 2.6)],
        )],
        ..LiveScript::default()
    };
    let fake = FakeDeepgram::start(script, vec![]).await;
    let stt = live(raw(&fake.base_url));
    let mut stream = stt.open().await.unwrap();
    for n in 0..3 {
        assert!(stream.push(&frame(n)));
    }
    assert!(stream.close());
    let events = drain(&mut stream).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(
        matches!(&events[0], Ok(SttEvent::Transcript { text, is_final: true, .. }) if text == "goodbye")
    );
    let seen = fake.wait_socket(0, |s| s.ended.is_some()).await;
    let controls: Vec<String> = seen.controls().into_iter().map(|(_, t)| t).collect();
    assert_eq!(controls, ["CloseStream"]);
    assert_eq!(seen.frames().len(), 3);

    // Dropping the stream (the call hung up) is the hard cancel: CloseStream, and the
    // socket (which is billed) ends at once.
    let stream = stt.open().await.unwrap();
    assert!(stream.push(&frame(0)));
    fake.wait_socket(1, |s| s.frames().len() == 1).await;
    let dropped = Instant::now();
    drop(stream);
    let seen = fake.wait_socket(1, |s| s.ended.is_some()).await;
    let ended = seen.ended.unwrap().duration_since(dropped);
    assert!(
        ended < Duration::from_millis(500),
        "ended {ended:?} after the drop"
    );
    assert!(seen.controls().iter().any(|(_, t)| t == "CloseStream"));
    assert_eq!(seen.frames().len(), 1);
    assert!(seen.violations.is_empty(), "{:?}", seen.violations);
}

/// Neither the error's Display nor its Debug holds the key or its first 8 characters.
fn assert_keyless(error: &ProviderError) {
    for text in [error.to_string(), format!("{error:?}")] {
        assert!(!text.contains(&KEY[..8]), "{text}");
    }
}

#[tokio::test]
async fn errors_that_quote_the_key_never_show_it() {
    let refusing = FakeDeepgram::start(
        LiveScript {
            refuse_echoing_key: Some(401),
            ..LiveScript::default()
        },
        vec![],
    )
    .await;
    let error = live(raw(&refusing.base_url)).open().await.unwrap_err();
    assert!(
        matches!(&error, ProviderError::Status { status: 401, message, .. } if message == "Invalid credentials: Token ***"),
        "{error:?}"
    );
    assert_keyless(&error);

    let closing = FakeDeepgram::start(
        LiveScript {
            steps: vec![Step::AfterFrames(1), Step::CloseEchoingKey(1008)],
            ..LiveScript::default()
        },
        vec![],
    )
    .await;
    let mut stream = live(raw(&closing.base_url)).open().await.unwrap();
    assert!(stream.push(&frame(0)));
    let events = drain(&mut stream).await;
    let [Err(error)] = events.as_slice() else {
        panic!("{events:?}")
    };
    assert!(
        matches!(error, ProviderError::Stream { message, .. } if message.contains("bad key Token ***")),
        "{error:?}"
    );
    assert_keyless(error);
}

#[tokio::test]
async fn a_normal_close_we_did_not_ask_for_is_an_error() {
    let script = LiveScript {
        steps: vec![Step::AfterFrames(2), Step::Close(1000, "")],
        ..LiveScript::default()
    };
    let fake = FakeDeepgram::start(script, vec![]).await;
    let mut stream = live(raw(&fake.base_url)).open().await.unwrap();
    assert!(stream.push(&frame(0)));
    assert!(stream.push(&frame(1)));
    let events = drain(&mut stream).await;
    assert!(
        matches!(events.as_slice(), [Err(ProviderError::Stream { message, .. })] if message.contains("1000")),
        "{events:?}"
    );
}

#[tokio::test]
async fn a_server_that_keeps_pinging_after_close_stream_is_cut_off() {
    let script = LiveScript {
        ping_every: Some(Duration::from_millis(50)),
        ignore_close_stream: true,
        ..LiveScript::default()
    };
    let fake = FakeDeepgram::start(script, vec![]).await;
    let stt = live(RawDeepgram {
        timeouts: Some(RawTimeouts {
            idle_ms: Some(400),
            ..RawTimeouts::default()
        }),
        ..raw(&fake.base_url)
    });
    let mut stream = stt.open().await.unwrap();
    assert!(stream.push(&frame(0)));
    let asked = Instant::now();
    assert!(stream.close());
    let events = drain(&mut stream).await;
    assert!(
        matches!(
            events.as_slice(),
            [Err(ProviderError::Timeout {
                stage: Stage::Idle,
                ..
            })]
        ),
        "{events:?}"
    );
    let seen = fake.wait_socket(0, |s| s.ended.is_some()).await;
    let open_for = seen.ended.unwrap().duration_since(asked);
    assert!(
        open_for < Duration::from_millis(1_500),
        "the socket lived {open_for:?} after CloseStream"
    );
    assert!(open_for >= Duration::from_millis(350), "{open_for:?}");
}

#[tokio::test]
async fn a_refused_key_is_a_401_that_never_shows_the_key() {
    let body =
        json!({"err_code": "INVALID_AUTH", "err_msg": "Invalid credentials.", "request_id": "r1"});
    let script = LiveScript {
        refuse: Some((401, body, None)),
        ..LiveScript::default()
    };
    let fake = FakeDeepgram::start(script, vec![]).await;
    let error = live(raw(&fake.base_url)).open().await.unwrap_err();
    match &error {
        ProviderError::Status {
            status, message, ..
        } => {
            assert_eq!(*status, 401);
            assert_eq!(message, "Invalid credentials.");
        }
        other => panic!("{other:?}"),
    }
    assert!(!error.retriable());
    assert!(!error.to_string().contains(KEY));
    assert!(!format!("{error:?}").contains(KEY));
    // The key did go, in the header.
    assert_eq!(
        fake.socket(0)
            .unwrap()
            .headers
            .get("authorization")
            .unwrap(),
        &format!("Token {KEY}")
    );
}

#[tokio::test]
async fn too_many_streams_is_a_retriable_429_with_its_wait() {
    let body = json!({"err_code": "TOO_MANY_REQUESTS", "err_msg": "Too many requests.", "request_id": "r2"});
    let script = LiveScript {
        refuse: Some((429, body, Some("3"))),
        ..LiveScript::default()
    };
    let fake = FakeDeepgram::start(script, vec![]).await;
    let error = live(raw(&fake.base_url)).open().await.unwrap_err();
    assert!(error.retriable());
    assert!(matches!(
        error,
        ProviderError::Status { status: 429, retry_after: Some(d), .. } if d == Duration::from_secs(3)
    ));
}

#[tokio::test]
async fn a_server_close_with_a_reason_is_one_error_naming_it() {
    let script = LiveScript {
        steps: vec![
            Step::AfterFrames(2),
            Step::Close(1011, "NET-0001 Deepgram did not receive audio data"),
        ],
        ..LiveScript::default()
    };
    let fake = FakeDeepgram::start(script, vec![]).await;
    let mut stream = live(raw(&fake.base_url)).open().await.unwrap();
    assert!(stream.push(&frame(0)));
    assert!(stream.push(&frame(1)));
    let events = drain(&mut stream).await;
    assert_eq!(events.len(), 1, "{events:?}");
    match &events[0] {
        Err(error @ ProviderError::Stream { message, .. }) => {
            assert!(message.contains("NET-0001"), "{message}");
            assert!(!error.to_string().contains(KEY));
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn an_upgrade_that_never_comes_is_a_connect_timeout() {
    let base = silent_listener().await;
    let stt = live(RawDeepgram {
        timeouts: Some(RawTimeouts {
            connect_ms: Some(300),
            ..RawTimeouts::default()
        }),
        ..raw(&base)
    });
    let started = Instant::now();
    let error = stt.open().await.unwrap_err();
    assert!(
        matches!(
            error,
            ProviderError::Timeout {
                stage: Stage::Connect,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(error.retriable());
}

fn batch(fake: &FakeDeepgram, batch_timeout_ms: Option<u64>) -> DeepgramBatch {
    DeepgramBatch::new(
        RawDeepgram {
            batch_timeout_ms,
            ..raw(&fake.base_url)
        }
        .validate()
        .unwrap(),
    )
    .unwrap()
}

const WAV: &[u8] = b"RIFF\x24\x00\x00\x00WAVEfmt fake recording bytes";

#[tokio::test]
async fn batch_gives_both_parties_in_start_order() {
    let fake = FakeDeepgram::start(
        LiveScript::default(),
        vec![BatchAnswer::Json(two_channel_answer())],
    )
    .await;
    let transcript = batch(&fake, None).transcribe(WAV.to_vec()).await.unwrap();
    assert_eq!(transcript.duration_ms, Some(6_250));
    let utterance = |channel, start_ms, end_ms, text: &str| Utterance {
        channel,
        speaker: None,
        start_ms,
        end_ms,
        text: text.into(),
    };
    assert_eq!(
        transcript.utterances,
        vec![
            utterance(0, 400, 900, "Hello."),
            utterance(1, 1_200, 3_100, "Hi, how can I help?"),
            utterance(0, 4_000, 4_900, "Yes please."),
        ]
    );
    let requests = fake.requests();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(request.headers.get("content-type").unwrap(), "audio/wav");
    assert_eq!(
        request.headers.get("authorization").unwrap(),
        &format!("Token {KEY}")
    );
    assert_eq!(request.body, WAV);
    assert_eq!(request.param("multichannel"), ["true"]);
    assert_eq!(request.param("utterances"), ["true"]);
    assert_eq!(request.param("model"), ["nova-3"]);
}

#[tokio::test]
async fn batch_server_errors_are_retriable_and_stalls_time_out() {
    let fake = FakeDeepgram::start(
        LiveScript::default(),
        vec![
            BatchAnswer::Status(
                500,
                json!({"err_code": "INTERNAL", "err_msg": "Something broke."}),
            ),
            BatchAnswer::Status(
                400,
                json!({"err_code": "Bad Request", "err_msg": "corrupt or unsupported data"}),
            ),
            BatchAnswer::Stall,
        ],
    )
    .await;
    let adapter = batch(&fake, Some(300));
    let error = adapter.transcribe(WAV.to_vec()).await.unwrap_err();
    assert!(
        matches!(&error, ProviderError::Status { status: 500, message, .. } if message == "Something broke."),
        "{error:?}"
    );
    assert!(error.retriable());
    let error = adapter.transcribe(WAV.to_vec()).await.unwrap_err();
    assert!(matches!(error, ProviderError::Status { status: 400, .. }));
    assert!(!error.retriable());
    assert!(!format!("{error} {error:?}").contains(KEY));

    let started = Instant::now();
    let error = adapter.transcribe(WAV.to_vec()).await.unwrap_err();
    assert!(
        matches!(
            error,
            ProviderError::Timeout {
                stage: Stage::FirstByte,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(fake.requests().len(), 3);
}

#[tokio::test]
async fn a_huge_batch_answer_is_refused() {
    let fake = FakeDeepgram::start(LiveScript::default(), vec![BatchAnswer::Huge(17 << 20)]).await;
    let error = batch(&fake, None)
        .transcribe(WAV.to_vec())
        .await
        .unwrap_err();
    assert!(
        matches!(&error, ProviderError::Protocol { reason, .. } if reason.contains("larger")),
        "{error:?}"
    );
}

/// A stand-in for the pre-recorded endpoint (`POST /v1/listen`) answering every request
/// with `answer(authorization header)`; its `ws://` base URL. For the hostile answers the
/// shared fake does not script: a server quoting the key back, a trickling body.
async fn batch_server(answer: fn(Option<String>) -> axum::response::Response) -> String {
    use axum::http::HeaderMap;
    let app = axum::Router::new().route(
        "/v1/listen",
        axum::routing::post(
            move |headers: HeaderMap, _body: axum::body::Bytes| async move {
                answer(
                    headers
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned),
                )
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("ws://{addr}")
}

#[tokio::test]
async fn a_batch_refusal_quoting_the_key_never_shows_it() {
    // As some proxies do: the refused key, whole and in part, in the error body.
    let url = batch_server(|authorization| {
        let key = authorization
            .as_deref()
            .and_then(|v| v.strip_prefix("Token "))
            .unwrap_or("")
            .to_owned();
        let prefix: String = key.chars().take(10).collect();
        let body = json!({"err_code": "INVALID_AUTH",
            "err_msg": format!("Invalid credentials: {key} (keys like {prefix}… are revoked)")});
        (axum::http::StatusCode::UNAUTHORIZED, axum::Json(body)).into_response()
    })
    .await;
    let adapter = DeepgramBatch::new(raw(&url).validate().unwrap()).unwrap();
    let error = adapter.transcribe(WAV.to_vec()).await.unwrap_err();
    assert!(
        matches!(&error, ProviderError::Status { status: 401, message, .. } if message.starts_with("Invalid credentials: ***")),
        "{error:?}"
    );
    for text in [error.to_string(), format!("{error:?}")] {
        assert!(!text.contains(&KEY[..8]), "{text}");
    }
}

#[tokio::test]
async fn a_long_batch_error_body_is_quoted_in_part() {
    let long = "x".repeat(100_000);
    let fake = FakeDeepgram::start(
        LiveScript::default(),
        vec![BatchAnswer::Status(
            502,
            json!({"err_code": "BAD_GATEWAY", "err_msg": long}),
        )],
    )
    .await;
    let error = batch(&fake, None)
        .transcribe(WAV.to_vec())
        .await
        .unwrap_err();
    let ProviderError::Status {
        status, message, ..
    } = &error
    else {
        panic!("{error:?}")
    };
    assert_eq!(*status, 502);
    // Over 64 KB is cut, not "(no message)": the start of the body still says what broke.
    assert!(message.contains("BAD_GATEWAY"), "{message}");
    assert!(error.retriable());
}

#[tokio::test]
async fn a_trickling_batch_answer_stops_at_the_batch_timeout() {
    let url = batch_server(|_| {
        let bytes = futures_util::stream::unfold(0u32, |n| async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let byte: &'static [u8] = if n == 0 { b"{" } else { b" " };
            Some((
                Ok::<_, std::io::Error>(axum::body::Bytes::from_static(byte)),
                n + 1,
            ))
        });
        axum::response::Response::builder()
            .header("content-type", "application/json")
            .body(axum::body::Body::from_stream(bytes))
            .unwrap()
    })
    .await;
    let adapter = DeepgramBatch::new(
        RawDeepgram {
            batch_timeout_ms: Some(400),
            ..raw(&url)
        }
        .validate()
        .unwrap(),
    )
    .unwrap();
    let started = Instant::now();
    let error = adapter.transcribe(WAV.to_vec()).await.unwrap_err();
    assert!(
        matches!(error, ProviderError::Timeout { stage: Stage::Body, after, .. } if after == Duration::from_millis(400)),
        "{error:?}"
    );
    assert!(error.retriable());
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn a_server_that_takes_audio_and_never_answers_times_out() {
    let fake = FakeDeepgram::start(LiveScript::default(), vec![]).await;
    let stt = live(RawDeepgram {
        answer_timeout_ms: Some(400),
        ..raw(&fake.base_url)
    });
    let mut stream = stt.open().await.unwrap();
    // A quiet stream is not a dead one: nothing is owed before audio is sent.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(stream.push(&frame(0)));
    let events = drain(&mut stream).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(
        matches!(
            events[0],
            Err(ProviderError::Timeout {
                stage: Stage::FirstByte,
                ..
            })
        ),
        "{events:?}"
    );
    assert_eq!(fake.socket(0).unwrap().frames().len(), 1);
}
