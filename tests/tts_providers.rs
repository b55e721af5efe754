//! The ElevenLabs and OpenAI speech adapters and the OpenAI transcription adapter against
//! fake servers speaking the public protocols: what goes on the wire, the audio and word
//! timings that come back, cancels (barge-in), refusals, in-stream errors and timeouts.

#[path = "common/fake_elevenlabs.rs"]
mod fake_elevenlabs;
#[path = "common/fake_openai_audio.rs"]
mod fake_openai_audio;

use std::sync::Arc;
use std::time::{Duration, Instant};

use fake_elevenlabs::{FakeChunk, FakeElevenLabs, Script};
use fake_openai_audio::{FakeAudio, Speech, Transcription};
use serde_json::{Value, json};
use voxgate::audio::resample::Rate;
use voxgate::providers::api::{
    BatchTranscription, ProviderError, RawTimeouts, SpokenWord, Stage, TextToSpeech, TtsAudio,
    TtsChunk, TtsStream,
};
use voxgate::providers::elevenlabs::{ElevenLabsTts, RawElevenLabs};
use voxgate::providers::openai::speech::OpenAiSpeech;
use voxgate::providers::openai::transcribe::OpenAiTranscription;
use voxgate::providers::openai::{OpenAiClient, RawOpenAi};

const KEY: &str = "xi-test-5b2e81c4d7";
const OPENAI_KEY: &str = "sk-test-93a1f0c2e6";

// ----- helpers --------------------------------------------------------------------------

fn elevenlabs(fake: &FakeElevenLabs, timeouts: RawTimeouts) -> ElevenLabsTts {
    let config = RawElevenLabs {
        api_key: Some(KEY.into()),
        base_url: Some(fake.base_url.clone()),
        voice_id: Some("test-voice".into()),
        timeouts: Some(timeouts),
        ..RawElevenLabs::default()
    }
    .validate()
    .unwrap();
    ElevenLabsTts::new(config)
}

fn openai(fake: &FakeAudio) -> Arc<OpenAiClient> {
    openai_with(fake, RawOpenAi::default())
}

/// A client of `fake` with `raw`'s settings (its key, URL and speech model replaced).
fn openai_with(fake: &FakeAudio, raw: RawOpenAi) -> Arc<OpenAiClient> {
    let config = RawOpenAi {
        api_key: Some(OPENAI_KEY.into()),
        base_url: Some(fake.base_url.clone()),
        tts_model: Some("fake-tts".into()),
        tts_voice: Some("coral".into()),
        ..raw
    }
    .validate()
    .unwrap();
    Arc::new(OpenAiClient::new(config).unwrap())
}

/// Neither the OpenAI key nor any 8 or more of its leading characters in `error`.
fn assert_no_openai_key(error: &ProviderError) {
    assert_keyless(error, &OPENAI_KEY[..8]);
}

/// Every item of `stream` until it ends (at most 10 s).
async fn collect(mut stream: TtsStream) -> Vec<Result<TtsChunk, ProviderError>> {
    let mut items = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while let Some(item) = tokio::time::timeout_at(deadline.into(), stream.next())
        .await
        .expect("the stream never ended")
    {
        items.push(item);
    }
    items
}

fn mulaw(chunk: &TtsChunk) -> &[u8] {
    match &chunk.audio {
        TtsAudio::Mulaw8k(bytes) => bytes,
        other => panic!("not µ-law: {other:?}"),
    }
}

fn word(text: &str, start_ms: u64, end_ms: u64) -> SpokenWord {
    SpokenWord {
        text: text.into(),
        start_ms,
        end_ms,
    }
}

fn texts(messages: &[(Instant, Value)]) -> Vec<Option<&str>> {
    messages.iter().map(|(_, m)| m["text"].as_str()).collect()
}

/// Neither the error's Display nor its Debug holds `key` or its first 8 characters.
fn assert_keyless(error: &ProviderError, key: &str) {
    for text in [error.to_string(), format!("{error:?}")] {
        assert!(!text.contains(&key[..8]), "{text}");
    }
}

// ----- ElevenLabs -----------------------------------------------------------------------

#[tokio::test]
async fn elevenlabs_passes_the_phones_bytes_through_with_timed_words() {
    // "world," straddles the two chunks; 10 ms per character.
    let fake = FakeElevenLabs::start(vec![Script::Speak {
        chunks: vec![
            FakeChunk {
                text: "Hello wor",
                ms_per_char: 10,
            },
            FakeChunk {
                text: "ld, how are you? ",
                ms_per_char: 10,
            },
        ],
        gap: Duration::from_millis(20),
        snake_case: false,
        first_after: Duration::ZERO,
    }])
    .await;
    let tts = elevenlabs(&fake, RawTimeouts::default());
    let stream = tts.open().await.unwrap();
    stream.say("Hello world,").await.unwrap();
    stream.say("how are you?  ").await.unwrap();
    stream.end().await.unwrap();
    let items = collect(stream).await;
    let chunks: Vec<TtsChunk> = items.into_iter().map(Result::unwrap).collect();

    let seen = &fake.seen()[0];
    assert_eq!(seen.problems, Vec::<String>::new());
    assert_eq!(seen.path, "/v1/text-to-speech/test-voice/stream-input");
    assert_eq!(
        seen.query.get("output_format").map(String::as_str),
        Some("ulaw_8000")
    );
    assert_eq!(
        seen.query.get("model_id").map(String::as_str),
        Some("eleven_flash_v2_5")
    );
    assert_eq!(seen.api_key.as_deref(), Some(KEY));
    let init = &seen.messages[0].1;
    assert_eq!(init["text"], " ");
    assert_eq!(init["voice_settings"]["stability"], 0.5);
    assert_eq!(init["voice_settings"]["similarity_boost"], 0.75);
    assert_eq!(init["voice_settings"]["speed"], 1.0);
    assert_eq!(
        init["generation_config"]["chunk_length_schedule"],
        json!([50])
    );
    assert!(
        !init.to_string().contains(KEY),
        "the key goes in the header only"
    );
    assert_eq!(
        texts(&seen.messages[1..]),
        [Some("Hello world, "), Some("how are you? "), Some("")]
    );
    // Each piece is flushed: spoken now, not held for the chunk schedule.
    assert_eq!(seen.messages[1].1["flush"], true);
    assert_eq!(seen.messages[2].1["flush"], true);
    assert_eq!(seen.messages.last().unwrap().1, json!({"text": ""}));

    // The audio is the fake's, byte for byte, chunk for chunk.
    let got: Vec<&[u8]> = chunks.iter().map(mulaw).collect();
    let sent: Vec<&[u8]> = seen.audio.iter().map(Vec::as_slice).collect();
    assert_eq!(got, sent);
    // Words timed from the utterance's start: the second chunk starts 90 ms in.
    let words: Vec<SpokenWord> = chunks.iter().flat_map(|c| c.words.clone()).collect();
    assert_eq!(
        words,
        [
            word("Hello", 0, 50),
            word("world,", 60, 120),
            word("how", 130, 160),
            word("are", 170, 200),
            word("you?", 210, 250),
        ]
    );
    assert_eq!(chunks[0].words, [word("Hello", 0, 50)]);
    // After isFinal the socket closes normally.
    assert!(fake.closed_at(0).await.is_some());
    assert_eq!(fake.seen()[0].close_code, Some(1000));
}

#[tokio::test]
async fn elevenlabs_accepts_snake_case_final_and_alignment() {
    let fake = FakeElevenLabs::start(vec![Script::Speak {
        chunks: vec![FakeChunk {
            text: "Bye now.",
            ms_per_char: 20,
        }],
        gap: Duration::ZERO,
        snake_case: true,
        first_after: Duration::ZERO,
    }])
    .await;
    let stream = elevenlabs(&fake, RawTimeouts::default())
        .open()
        .await
        .unwrap();
    stream.say("Bye now.").await.unwrap();
    stream.end().await.unwrap();
    let chunks: Vec<TtsChunk> = collect(stream)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let bytes: Vec<u8> = chunks.iter().flat_map(|c| mulaw(c).to_vec()).collect();
    assert_eq!(bytes, fake.seen()[0].audio.concat());
    let words: Vec<SpokenWord> = chunks.iter().flat_map(|c| c.words.clone()).collect();
    // The last word has no space after it: it comes at the end.
    assert_eq!(words, [word("Bye", 0, 60), word("now.", 80, 160)]);
}

#[tokio::test]
async fn dropping_an_elevenlabs_stream_closes_its_socket_at_once() {
    let fake = FakeElevenLabs::start(vec![Script::Speak {
        chunks: vec![
            FakeChunk {
                text: "Hello there ",
                ms_per_char: 10
            };
            20
        ],
        gap: Duration::from_millis(100),
        snake_case: false,
        first_after: Duration::ZERO,
    }])
    .await;
    let mut stream = elevenlabs(&fake, RawTimeouts::default())
        .open()
        .await
        .unwrap();
    stream.say("Hello there.").await.unwrap();
    stream.end().await.unwrap();
    assert!(stream.next().await.unwrap().is_ok());
    let dropped = Instant::now();
    drop(stream);
    let closed = fake
        .closed_at(0)
        .await
        .expect("the fake never saw the close");
    let after = closed.duration_since(dropped);
    assert!(
        after < Duration::from_millis(50),
        "close seen {after:?} after the drop"
    );
    assert_eq!(
        fake.seen()[0].close_code,
        Some(1000),
        "a normal close frame"
    );
    assert!(fake.seen()[0].audio.len() < 20);
}

#[tokio::test]
async fn a_refused_elevenlabs_upgrade_is_a_status_with_the_message() {
    let quota = "This request exceeds your quota of 10000. You have 3 credits remaining.";
    let fake = FakeElevenLabs::start(vec![
        Script::Refuse(401, json!({"detail": {"status": "quota_exceeded", "message": quota}})),
        Script::Refuse(429, json!({"detail": {"status": "too_many_concurrent_requests", "message": "Too many concurrent requests"}})),
        Script::RefuseEchoingKey(401),
    ])
    .await;
    let tts = elevenlabs(&fake, RawTimeouts::default());
    let error = tts.open().await.unwrap_err();
    let ProviderError::Status {
        status, message, ..
    } = &error
    else {
        panic!("{error:?}")
    };
    assert_eq!((*status, message.as_str()), (401, quota));
    assert!(!error.retriable());
    assert_keyless(&error, KEY);
    let busy = tts.open().await.unwrap_err();
    assert!(
        matches!(busy, ProviderError::Status { status: 429, .. }),
        "{busy:?}"
    );
    assert!(busy.retriable());
    // A refusal that quotes the key gives the message without it.
    let echoed = tts.open().await.unwrap_err();
    let ProviderError::Status { message, .. } = &echoed else {
        panic!("{echoed:?}")
    };
    assert!(message.starts_with("Invalid API key: ***"), "{message}");
    assert_keyless(&echoed, KEY);
    assert_eq!(fake.seen()[2].api_key.as_deref(), Some(KEY));
}

#[tokio::test]
async fn an_elevenlabs_error_mid_stream_is_one_error_then_the_end() {
    let fake = FakeElevenLabs::start(vec![
        Script::ErrorAfterText(json!({
            "message": "Have not received a new text input within the timeout of 20.0 seconds",
            "error": "input_timeout_exceeded",
            "code": 1008
        })),
        Script::CloseAfterText(1008, "Quota exceeded for this key"),
    ])
    .await;
    let tts = elevenlabs(&fake, RawTimeouts::default());
    let stream = tts.open().await.unwrap();
    stream.say("Hello.").await.unwrap();
    let items = collect(stream).await;
    assert_eq!(items.len(), 2, "{items:?}");
    assert!(items[0].is_ok());
    let Err(ProviderError::Stream { message, .. }) = &items[1] else {
        panic!("{items:?}")
    };
    assert!(message.contains("input_timeout_exceeded"), "{message}");

    let stream = tts.open().await.unwrap();
    stream.say("Hello.").await.unwrap();
    let items = collect(stream).await;
    let [Err(ProviderError::Stream { message, .. })] = items.as_slice() else {
        panic!("{items:?}")
    };
    assert!(message.contains("Quota exceeded"), "{message}");
}

/// The one error of an utterance the fake ends after its first text.
async fn one_error(tts: &ElevenLabsTts) -> ProviderError {
    let stream = tts.open().await.unwrap();
    stream.say("Hello.").await.unwrap();
    let mut items = collect(stream).await;
    assert_eq!(items.len(), 1, "{items:?}");
    items.pop().unwrap().unwrap_err()
}

#[tokio::test]
async fn elevenlabs_errors_that_quote_the_key_never_show_it() {
    let fake = FakeElevenLabs::start(vec![Script::ErrorEchoingKey, Script::CloseEchoingKey]).await;
    let tts = elevenlabs(&fake, RawTimeouts::default());
    let error = one_error(&tts).await;
    assert!(
        matches!(&error, ProviderError::Stream { message, .. } if message.contains("invalid_api_key: Invalid API key ***")),
        "{error:?}"
    );
    assert_keyless(&error, KEY);
    let error = one_error(&tts).await;
    assert!(
        matches!(&error, ProviderError::Stream { message, .. } if message.contains("invalid key ***") && message.contains("1008")),
        "{error:?}"
    );
    assert_keyless(&error, KEY);
    // The fake did get the key (so it had something to echo).
    assert!(
        fake.seen()
            .iter()
            .all(|s| s.api_key.as_deref() == Some(KEY))
    );
}

#[tokio::test]
async fn an_elevenlabs_normal_close_before_the_end_or_bad_audio_is_an_error() {
    let fake = FakeElevenLabs::start(vec![
        Script::CloseAfterText(1000, ""),
        Script::BadAudioAfterText,
    ])
    .await;
    let tts = elevenlabs(&fake, RawTimeouts::default());
    // The socket closed normally but no isFinal came: the utterance is cut short.
    let error = one_error(&tts).await;
    assert!(
        matches!(&error, ProviderError::Stream { message, .. } if message.contains("1000")),
        "{error:?}"
    );
    let error = one_error(&tts).await;
    assert!(
        matches!(&error, ProviderError::Protocol { reason, .. } if reason.contains("base64")),
        "{error:?}"
    );
    assert!(!error.retriable());
    assert!(fake.closed_at(1).await.is_some(), "the socket is closed");
}

#[tokio::test]
async fn a_short_first_clause_then_a_slow_llm_is_no_timeout() {
    // The server generates only when its buffer meets the schedule (50 characters) or a
    // flush comes: "Sure. " alone would get no audio without a flush.
    let fake = FakeElevenLabs::start(vec![Script::Speak {
        chunks: vec![
            FakeChunk {
                text: "Sure. ",
                ms_per_char: 10,
            },
            FakeChunk {
                text: "Let me check. ",
                ms_per_char: 10,
            },
        ],
        gap: Duration::ZERO,
        snake_case: false,
        first_after: Duration::ZERO,
    }])
    .await;
    let timeouts = RawTimeouts {
        first_byte_ms: Some(300),
        idle_ms: Some(300),
        ..RawTimeouts::default()
    };
    let mut stream = elevenlabs(&fake, timeouts).open().await.unwrap();
    stream.say("Sure.").await.unwrap();
    let first = tokio::time::timeout(Duration::from_secs(2), stream.next())
        .await
        .expect("the short clause is spoken at once")
        .unwrap()
        .unwrap();
    assert_eq!(mulaw(&first), fake.seen()[0].audio[0]);
    // The LLM takes twice the first-byte timeout for its next clause.
    tokio::time::sleep(Duration::from_millis(600)).await;
    stream.say("Let me check.").await.unwrap();
    stream.end().await.unwrap();
    let rest = collect(stream).await;
    assert!(rest.iter().all(Result::is_ok), "{rest:?}");
    let audio: Vec<u8> = std::iter::once(first)
        .chain(rest.into_iter().map(Result::unwrap))
        .flat_map(|c| mulaw(&c).to_vec())
        .collect();
    assert_eq!(audio, fake.seen()[0].audio.concat());
    assert!(
        fake.seen()[0].problems.is_empty(),
        "{:?}",
        fake.seen()[0].problems
    );
}

#[tokio::test]
async fn elevenlabs_silence_is_a_first_byte_then_an_idle_timeout() {
    let fake = FakeElevenLabs::start(vec![
        Script::Silent,
        Script::Speak {
            chunks: vec![
                FakeChunk {
                    text: "Hi ",
                    ms_per_char: 10
                };
                3
            ],
            gap: Duration::from_secs(30),
            snake_case: false,
            first_after: Duration::ZERO,
        },
    ])
    .await;
    let timeouts = RawTimeouts {
        first_byte_ms: Some(300),
        idle_ms: Some(300),
        ..RawTimeouts::default()
    };
    let tts = elevenlabs(&fake, timeouts);
    let stream = tts.open().await.unwrap();
    // No text yet: no clock runs (the agent may still be thinking).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    stream.say("Hello.").await.unwrap();
    let items = collect(stream).await;
    let [
        Err(ProviderError::Timeout {
            stage: Stage::FirstByte,
            ..
        }),
    ] = items.as_slice()
    else {
        panic!("{items:?}")
    };
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(
        fake.closed_at(0).await.is_some(),
        "the socket is closed after a timeout"
    );

    // The flush is answered at once, the end's first chunk too, then the server stalls
    // mid-answer: an idle timeout.
    let stream = tts.open().await.unwrap();
    stream.say("Hi.").await.unwrap();
    stream.end().await.unwrap();
    let items = collect(stream).await;
    assert_eq!(items.len(), 3, "{items:?}");
    assert!(items[0].is_ok() && items[1].is_ok());
    assert!(
        matches!(
            items[2],
            Err(ProviderError::Timeout {
                stage: Stage::Idle,
                ..
            })
        ),
        "{items:?}"
    );
}

// ----- OpenAI speech --------------------------------------------------------------------

fn pcm(chunk: &TtsChunk) -> Vec<i16> {
    match &chunk.audio {
        TtsAudio::Pcm { rate, samples } => {
            assert_eq!(*rate, Rate::Hz24000);
            samples.to_vec()
        }
        other => panic!("not PCM: {other:?}"),
    }
}

#[tokio::test]
async fn openai_speech_streams_pcm_that_reassembles_exactly() {
    let fake = FakeAudio::start(vec![], vec![]).await;
    let speech = OpenAiSpeech::new(openai(&fake), None, None);
    let stream = speech.open().await.unwrap();
    stream.say("Hello there.").await.unwrap();
    stream.say("How can I help?").await.unwrap();
    stream.end().await.unwrap();
    let chunks: Vec<TtsChunk> = collect(stream)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let seen = fake.speech_seen();
    assert!(!seen.is_empty());
    for request in &seen {
        assert_eq!(request.problems, Vec::<String>::new());
        assert_eq!(
            request.authorization.as_deref(),
            Some(&*format!("Bearer {OPENAI_KEY}"))
        );
        assert_eq!(request.body["model"], "fake-tts");
        assert_eq!(request.body["voice"], "coral");
        assert_eq!(request.body["response_format"], "pcm");
        assert_eq!(request.cancelled_at, None);
    }
    // The text went in order (batched or not).
    let inputs: Vec<&str> = seen
        .iter()
        .map(|r| r.body["input"].as_str().unwrap())
        .collect();
    assert_eq!(inputs.join(" "), "Hello there. How can I help?");
    // Odd-sized reads come out as the fake's samples exactly.
    let samples: Vec<i16> = chunks.iter().flat_map(pcm).collect();
    let sent: Vec<i16> = seen.iter().flat_map(|r| r.samples.clone()).collect();
    let chars: usize = inputs.iter().map(|i| i.chars().count()).sum();
    assert_eq!(samples.len(), 24 * 10 * chars);
    assert_eq!(samples, sent);
    assert!(chunks.iter().all(|c| c.words.is_empty()));
}

#[tokio::test]
async fn dropping_an_openai_speech_stream_drops_the_connection() {
    let fake = FakeAudio::start(
        vec![Speech::Pcm {
            ms_per_char: 200,
            gap: Duration::from_millis(5),
        }],
        vec![],
    )
    .await;
    let speech = OpenAiSpeech::new(openai(&fake), None, None);
    let mut stream = speech.open().await.unwrap();
    stream
        .say("This is a long answer the caller will interrupt.")
        .await
        .unwrap();
    assert!(stream.next().await.unwrap().is_ok());
    let dropped = Instant::now();
    drop(stream);
    let deadline = Instant::now() + Duration::from_secs(2);
    let cancelled = loop {
        if let Some(at) = fake.speech_seen()[0].cancelled_at {
            break at;
        }
        assert!(Instant::now() < deadline, "the fake never saw the cancel");
        tokio::time::sleep(Duration::from_millis(1)).await;
    };
    let after = cancelled.duration_since(dropped);
    assert!(
        after < Duration::from_millis(50),
        "cancel seen {after:?} after the drop"
    );
}

#[tokio::test]
async fn openai_speech_rate_limits_are_retriable_with_their_wait() {
    let fake = FakeAudio::start(
        vec![Speech::Status(
            429,
            "Rate limit reached for requests",
            Some(7),
        )],
        vec![],
    )
    .await;
    let stream = OpenAiSpeech::new(openai(&fake), None, None)
        .open()
        .await
        .unwrap();
    stream.say("Hello.").await.unwrap();
    stream.end().await.unwrap();
    let items = collect(stream).await;
    let [Err(error)] = items.as_slice() else {
        panic!("{items:?}")
    };
    let ProviderError::Status {
        status,
        message,
        retry_after,
        ..
    } = error
    else {
        panic!("{error:?}")
    };
    assert_eq!(*status, 429);
    assert_eq!(message, "Rate limit reached for requests");
    assert_eq!(*retry_after, Some(Duration::from_secs(7)));
    assert!(error.retriable());
    assert_keyless(error, OPENAI_KEY);
}

// ----- OpenAI transcription -------------------------------------------------------------

#[tokio::test]
async fn a_recording_uploads_as_a_form_and_comes_back_as_utterances() {
    let verbose = json!({
        "language": "english", "duration": 8.47, "text": "Hello, is this Sam? Yes, speaking.",
        "segments": [
            {"id": 1, "seek": 0, "start": 2.4, "end": 3.9, "text": " Yes, speaking.", "tokens": [1],
             "temperature": 0.0, "avg_logprob": -0.3, "compression_ratio": 1.0, "no_speech_prob": 0.02},
            {"id": 0, "seek": 0, "start": 0.0, "end": 2.1, "text": " Hello, is this Sam?", "tokens": [50364, 2425],
             "temperature": 0.0, "avg_logprob": -0.21, "compression_ratio": 0.9, "no_speech_prob": 0.01}
        ],
        "usage": {"type": "duration", "seconds": 9}
    });
    let fake = FakeAudio::start(vec![], vec![Transcription::Json(verbose)]).await;
    let transcription = OpenAiTranscription::new(openai(&fake), None);
    let wav: Vec<u8> = b"RIFF\x24\x00\x00\x00WAVEfmt "
        .iter()
        .copied()
        .chain((0..=255u8).cycle().take(5_000))
        .collect();
    let transcript = transcription.transcribe(wav.clone()).await.unwrap();

    let seen = &fake.transcription_seen()[0];
    assert_eq!(
        seen.authorization.as_deref(),
        Some(&*format!("Bearer {OPENAI_KEY}"))
    );
    assert!(
        seen.content_type
            .as_deref()
            .unwrap()
            .starts_with("multipart/form-data")
    );
    let part = |name: &str| {
        seen.parts
            .iter()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("no {name} in {:?}", seen.parts))
    };
    let file = part("file");
    assert_eq!(file.filename.as_deref(), Some("recording.wav"));
    assert_eq!(file.content_type.as_deref(), Some("audio/wav"));
    assert_eq!(file.data, wav);
    assert_eq!(part("model").text(), "whisper-1");
    assert_eq!(part("response_format").text(), "verbose_json");
    assert_eq!(part("timestamp_granularities[]").text(), "segment");
    assert_eq!(seen.problems, Vec::<String>::new());

    assert_eq!(transcript.duration_ms, Some(8_470));
    let said: Vec<_> = transcript
        .utterances
        .iter()
        .map(|u| (u.channel, u.speaker, u.start_ms, u.end_ms, u.text.as_str()))
        .collect();
    assert_eq!(
        said,
        [
            (0, None, 0, 2_100, "Hello, is this Sam?"),
            (0, None, 2_400, 3_900, "Yes, speaking."),
        ]
    );
}

#[tokio::test]
async fn transcription_errors_say_whether_to_retry() {
    let fake = FakeAudio::start(
        vec![],
        vec![
            Transcription::Status(400, "Invalid file format."),
            Transcription::Status(503, "The server is overloaded"),
        ],
    )
    .await;
    let transcription = OpenAiTranscription::new(openai(&fake), None);
    let bad = transcription.transcribe(vec![1, 2, 3]).await.unwrap_err();
    assert!(
        matches!(&bad, ProviderError::Status { status: 400, message, .. } if message == "Invalid file format."),
        "{bad:?}"
    );
    assert!(!bad.retriable());
    assert_keyless(&bad, OPENAI_KEY);
    let busy = transcription.transcribe(vec![1, 2, 3]).await.unwrap_err();
    assert!(
        matches!(busy, ProviderError::Status { status: 503, .. }),
        "{busy:?}"
    );
    assert!(busy.retriable());
}

#[tokio::test]
async fn gpt_4o_transcribe_asks_for_json_and_gets_one_utterance() {
    let json = json!({"text": "Hello, is this Sam? Yes, speaking.",
        "usage": {"type": "tokens", "input_tokens": 14, "output_tokens": 9, "total_tokens": 23}});
    let fake = FakeAudio::start(vec![], vec![Transcription::Json(json)]).await;
    let transcription = OpenAiTranscription::new(openai(&fake), Some("gpt-4o-mini-transcribe"));
    let transcript = transcription.transcribe(vec![1, 2, 3]).await.unwrap();
    let seen = &fake.transcription_seen()[0];
    assert_eq!(seen.problems, Vec::<String>::new());
    let part = |name: &str| seen.parts.iter().find(|p| p.name == name).map(|p| p.text());
    assert_eq!(part("model").as_deref(), Some("gpt-4o-mini-transcribe"));
    assert_eq!(part("response_format").as_deref(), Some("json"));
    assert_eq!(part("timestamp_granularities[]"), None);
    let said: Vec<_> = transcript
        .utterances
        .iter()
        .map(|u| (u.channel, u.speaker, u.text.as_str()))
        .collect();
    assert_eq!(said, [(0, None, "Hello, is this Sam? Yes, speaking.")]);
}

#[tokio::test]
async fn a_transcription_that_never_answers_or_trickles_times_out() {
    let fake = FakeAudio::start(
        vec![],
        vec![
            Transcription::Stall,
            Transcription::Trickle(Duration::from_millis(20)),
        ],
    )
    .await;
    // The idle timeout stays long: only the batch timeout can end these.
    let client = openai_with(
        &fake,
        RawOpenAi {
            batch_timeout_ms: Some(400),
            ..RawOpenAi::default()
        },
    );
    let transcription = OpenAiTranscription::new(client, None);
    let started = Instant::now();
    let error = transcription.transcribe(vec![1, 2, 3]).await.unwrap_err();
    assert!(
        matches!(
            error,
            ProviderError::Timeout {
                stage: Stage::FirstByte,
                after,
                ..
            } if after == Duration::from_millis(400)
        ),
        "{error:?}"
    );
    assert!(error.retriable());
    assert!(started.elapsed() < Duration::from_secs(3));
    let started = Instant::now();
    let error = transcription.transcribe(vec![1, 2, 3]).await.unwrap_err();
    assert!(
        matches!(error, ProviderError::Timeout { stage: Stage::Body, after, .. } if after == Duration::from_millis(400)),
        "{error:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(fake.transcription_seen().len(), 2);
}

#[tokio::test]
async fn a_transcription_slower_than_the_first_byte_timeout_still_arrives() {
    // Real recordings take seconds to upload and transcribe: that wait is the batch
    // timeout's, not the (short) first-byte one's.
    let fake = FakeAudio::start(
        vec![],
        vec![Transcription::Late(
            Duration::from_millis(600),
            json!({"text": "Hi."}),
        )],
    )
    .await;
    let client = openai_with(
        &fake,
        RawOpenAi {
            timeouts: Some(RawTimeouts {
                first_byte_ms: Some(100),
                ..RawTimeouts::default()
            }),
            ..RawOpenAi::default()
        },
    );
    let transcript = OpenAiTranscription::new(client, None)
        .transcribe(vec![1, 2, 3])
        .await
        .unwrap();
    // whisper-1 asks for verbose_json; an answer with only text is one utterance.
    assert_eq!(transcript.utterances[0].text, "Hi.");
}

#[tokio::test]
async fn an_oversized_transcription_is_refused() {
    let fake = FakeAudio::start(vec![], vec![Transcription::Huge(9 << 20)]).await;
    let error = OpenAiTranscription::new(openai(&fake), None)
        .transcribe(vec![1, 2, 3])
        .await
        .unwrap_err();
    assert!(
        matches!(&error, ProviderError::Protocol { reason, .. } if reason.contains("larger")),
        "{error:?}"
    );
    assert!(!error.retriable());
}

#[tokio::test]
async fn servers_quoting_the_key_back_never_get_it_into_openai_errors() {
    let fake = FakeAudio::start(vec![Speech::EchoKey], vec![Transcription::EchoKey]).await;
    let error = OpenAiTranscription::new(openai(&fake), None)
        .transcribe(vec![1, 2, 3])
        .await
        .unwrap_err();
    assert!(
        matches!(&error, ProviderError::Status { status: 401, message, .. } if message.contains("***")),
        "{error:?}"
    );
    assert_no_openai_key(&error);
    let stream = OpenAiSpeech::new(openai(&fake), None, None)
        .open()
        .await
        .unwrap();
    stream.say("Hello.").await.unwrap();
    stream.end().await.unwrap();
    let items = collect(stream).await;
    let [Err(error)] = items.as_slice() else {
        panic!("{items:?}")
    };
    assert!(
        matches!(error, ProviderError::Status { status: 401, .. }),
        "{error:?}"
    );
    assert_no_openai_key(error);
}
