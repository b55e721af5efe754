//! What a caller of [`Espeak`] notices: real speech at 22.05 kHz, words where they are
//! said, utterances that stay whole when requested from many tasks at once, cancellation,
//! the cache, voices, and clear refusals.
//!
//! Every test runs the real library. Tests in this process share it through the library
//! lock, each with its own [`Espeak`] (and so its own queue and cache).

use super::*;

fn engine(cache_bytes: usize, queue: usize) -> Espeak {
    Espeak::start(&EspeakConfig {
        cache_bytes,
        queue,
        ..EspeakConfig::default()
    })
    .expect("espeak-ng starts (is libespeak-ng1 with espeak-ng-data installed?)")
}

async fn say(espeak: &Espeak, text: &str, options: &SpeakOptions) -> Vec<i16> {
    espeak
        .speak(text, options)
        .unwrap()
        .collect()
        .await
        .unwrap()
}

/// Every chunk's audio and words, in order.
async fn chunks(mut speech: Speech) -> (Vec<i16>, Vec<WordMark>) {
    let (mut samples, mut words) = (Vec::new(), Vec::new());
    while let Some(chunk) = speech.next().await {
        let chunk = chunk.unwrap();
        assert_eq!(chunk.rate, Rate::Hz22050);
        samples.extend_from_slice(&chunk.samples);
        words.extend(chunk.words);
    }
    (samples, words)
}

fn seconds(samples: &[i16]) -> f64 {
    samples.len() as f64 / 22_050.0
}

fn rms(samples: &[i16]) -> f64 {
    let sum: f64 = samples.iter().map(|&s| f64::from(s).powi(2)).sum();
    (sum / samples.len().max(1) as f64).sqrt()
}

/// The median fundamental frequency over loud 40 ms frames, by autocorrelation over
/// 70–400 Hz.
fn median_pitch_hz(samples: &[i16]) -> f64 {
    let x: Vec<f64> = samples.iter().map(|&s| f64::from(s)).collect();
    let frame = 882;
    let loudest = x.chunks(frame).map(rms_f).fold(0.0, f64::max);
    let mut pitches: Vec<f64> = x
        .chunks_exact(frame)
        .filter(|f| rms_f(f) > loudest / 3.0)
        .map(|f| {
            let lag = (55..=315)
                .max_by(|&a, &b| autocorr(f, a).total_cmp(&autocorr(f, b)))
                .unwrap();
            22_050.0 / lag as f64
        })
        .collect();
    pitches.sort_by(f64::total_cmp);
    pitches[pitches.len() / 2]
}

fn rms_f(f: &[f64]) -> f64 {
    (f.iter().map(|v| v * v).sum::<f64>() / f.len() as f64).sqrt()
}

fn autocorr(f: &[f64], lag: usize) -> f64 {
    f.iter().zip(&f[lag..]).map(|(a, b)| a * b).sum::<f64>() / (f.len() - lag) as f64
}

#[tokio::test]
async fn a_sentence_is_audible_speech_of_plausible_length_at_22050_hz() {
    let espeak = engine(0, 8);
    assert_eq!(espeak.rate(), Rate::Hz22050);
    let samples = say(&espeak, "hello world", &SpeakOptions::default()).await;
    let duration = seconds(&samples);
    assert!((0.5..=2.0).contains(&duration), "{duration} s");
    assert!(rms(&samples) > 500.0, "rms {}", rms(&samples));
}

#[tokio::test]
async fn word_marks_point_at_each_word_in_order_and_inside_the_audio() {
    let espeak = engine(0, 8);
    let text = "Hello world, the café is naïve today.";
    let speech = espeak.speak(text, &SpeakOptions::default()).unwrap();
    let (samples, words) = chunks(speech).await;
    let said: Vec<&str> = words
        .iter()
        .map(|w| &text[w.char_offset..w.char_offset + w.len])
        .collect();
    assert_eq!(
        said,
        ["Hello", "world", "the", "café", "is", "naïve", "today"]
    );
    for pair in words.windows(2) {
        assert!(pair[0].char_offset < pair[1].char_offset, "{pair:?}");
        assert!(pair[0].at_sample < pair[1].at_sample, "{pair:?}");
    }
    assert!(words.last().unwrap().at_sample < samples.len() as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn utterances_requested_from_many_tasks_at_once_each_come_back_whole() {
    let espeak = engine(0, 64);
    let texts = [
        "one",
        "two words",
        "now three words",
        "this has four words",
        "and this one has five",
        "finally this sentence has six words",
    ];
    // Each text alone first: its word count and length.
    let mut alone = Vec::new();
    for text in texts {
        let (samples, words) = chunks(espeak.speak(text, &SpeakOptions::default()).unwrap()).await;
        alone.push((samples.len(), words.len()));
    }
    let mut tasks = Vec::new();
    for round in 0..3 {
        for i in 0..texts.len() {
            let i = (i + round) % texts.len();
            let (espeak, text) = (espeak.clone(), texts[i]);
            tasks.push(tokio::spawn(async move {
                let speech = espeak.speak(text, &SpeakOptions::default()).unwrap();
                (i, chunks(speech).await)
            }));
        }
    }
    for task in tasks {
        let (i, (samples, words)) = task.await.unwrap();
        let (len, count) = alone[i];
        assert_eq!(words.len(), count, "{:?}", texts[i]);
        // espeak-ng carries a little state from one utterance to the next (a few ms).
        let ratio = samples.len() as f64 / len as f64;
        assert!((0.9..=1.1).contains(&ratio), "{:?}: {ratio}", texts[i]);
        assert!(rms(&samples) > 500.0);
    }
}

#[tokio::test]
async fn dropping_a_speech_cancels_it_and_the_next_utterance_is_whole() {
    let espeak = engine(0, 8);
    let before = say(&espeak, "hello world", &SpeakOptions::default()).await;
    let long = "This is a long sentence that nobody will hear to the end, because the \
                caller interrupts it, and so it goes on and on for quite a while longer.";
    let mut speech = espeak.speak(long, &SpeakOptions::default()).unwrap();
    let first = speech.next().await.unwrap().unwrap();
    assert!(!first.samples.is_empty());
    drop(speech);
    // Queued behind the cancelled one: dropped before it is ever spoken.
    drop(espeak.speak(long, &SpeakOptions::default()).unwrap());
    let after = say(&espeak, "hello world", &SpeakOptions::default()).await;
    let ratio = after.len() as f64 / before.len() as f64;
    assert!((0.95..=1.05).contains(&ratio), "{ratio}");
    assert!(rms(&after) > 500.0);
}

#[tokio::test]
async fn saying_the_same_thing_twice_comes_from_the_cache_unchanged() {
    let espeak = engine(1 << 20, 8);
    let text = "Thank you for calling, please hold the line.";
    let first = espeak.speak(text, &SpeakOptions::default()).unwrap();
    assert!(!first.from_cache());
    let (samples, words) = chunks(first).await;
    let second = espeak.speak(text, &SpeakOptions::default()).unwrap();
    assert!(second.from_cache(), "the second time is a hit");
    let (again, again_words) = chunks(second).await;
    assert_eq!(again, samples);
    assert_eq!(again_words, words);
    let slower = SpeakOptions {
        rate_wpm: Some(120),
        ..SpeakOptions::default()
    };
    let third = espeak.speak(text, &slower).unwrap();
    assert!(!third.from_cache(), "another rate is another utterance");
    assert!(third.collect().await.unwrap().len() > samples.len());
}

#[tokio::test]
async fn a_voice_variant_sounds_different_from_the_default() {
    let espeak = engine(0, 8);
    let text = "Good morning, how can I help you?";
    let default = say(&espeak, text, &SpeakOptions::default()).await;
    let female = SpeakOptions {
        voice: Some("en-us+f3".into()),
        ..SpeakOptions::default()
    };
    let f3 = say(&espeak, text, &female).await;
    let (low, high) = (median_pitch_hz(&default), median_pitch_hz(&f3));
    assert!(
        high > low * 1.3,
        "default {low:.0} Hz, en-us+f3 {high:.0} Hz"
    );
    // The default voice is back for the next utterance.
    let again = say(&espeak, text, &SpeakOptions::default()).await;
    let pitch = median_pitch_hz(&again);
    assert!(
        (pitch - low).abs() < low * 0.15,
        "{pitch:.0} Hz vs {low:.0} Hz"
    );
}

#[tokio::test]
async fn an_unknown_voice_is_a_clear_error_and_later_utterances_still_work() {
    let espeak = engine(0, 8);
    let unknown = SpeakOptions {
        voice: Some("xx-nope".into()),
        ..SpeakOptions::default()
    };
    match espeak.speak("hello", &unknown).unwrap().collect().await {
        Err(TtsError::Failed(reason)) => assert!(reason.contains("xx-nope"), "{reason}"),
        other => panic!("expected Failed naming the voice, got {other:?}"),
    }
    let path = SpeakOptions {
        voice: Some("../../etc/passwd".into()),
        ..SpeakOptions::default()
    };
    assert!(matches!(
        espeak.speak("hello", &path),
        Err(TtsError::Failed(_))
    ));
    let samples = say(&espeak, "hello world", &SpeakOptions::default()).await;
    assert!(rms(&samples) > 500.0);

    let err = Espeak::start(&EspeakConfig {
        voice: "xx-nope".into(),
        ..EspeakConfig::default()
    })
    .unwrap_err();
    assert!(
        matches!(&err, TtsError::Unavailable(reason) if reason.contains("xx-nope")),
        "{err:?}"
    );
}

#[tokio::test]
async fn bad_input_is_refused_before_it_is_queued() {
    let espeak = engine(0, 8);
    let options = SpeakOptions::default();
    let long = "a ".repeat(MAX_TEXT_BYTES);
    for text in [long.as_str(), "nul \0 inside"] {
        assert!(matches!(
            espeak.speak(text, &options),
            Err(TtsError::Failed(_))
        ));
    }
    for bad in [
        SpeakOptions {
            rate_wpm: Some(500),
            ..SpeakOptions::default()
        },
        SpeakOptions {
            pitch: Some(101),
            ..SpeakOptions::default()
        },
    ] {
        assert!(matches!(espeak.speak("hi", &bad), Err(TtsError::Failed(_))));
    }
    assert_eq!(say(&espeak, "  \n", &options).await, Vec::<i16>::new());
}

#[tokio::test]
async fn a_full_queue_says_busy_at_once() {
    let espeak = engine(0, 1);
    let options = SpeakOptions::default();
    // While another thread holds the library, the worker can take at most one job in
    // hand and the queue holds one more: of three, at least one is refused.
    let results = ffi::with_library(|_| {
        ["first in line", "second in line", "third in line"]
            .map(|text| espeak.speak(text, &options))
    })
    .unwrap();
    assert!(results[0].is_ok());
    assert!(
        results.iter().any(|r| matches!(r, Err(TtsError::Busy))),
        "{results:?}"
    );
    for speech in results.into_iter().flatten() {
        assert!(rms(&speech.collect().await.unwrap()) > 500.0);
    }
}

#[tokio::test]
async fn a_reader_that_stops_reading_fails_its_utterance_without_holding_up_others() {
    let espeak = engine(0, 8);
    let slow = SpeakOptions {
        rate_wpm: Some(80),
        ..SpeakOptions::default()
    };
    // About a minute of speech: more than the chunk channel holds.
    let text = "one two three four five six seven eight nine ten, ".repeat(8);
    let mut stalled = espeak.speak(&text, &slow).unwrap();
    let next = espeak
        .speak("hello world", &SpeakOptions::default())
        .unwrap();
    let samples = next.collect().await.unwrap();
    assert!(rms(&samples) > 500.0, "the next utterance was spoken");
    let mut heard = 0;
    let error = loop {
        match stalled.next().await {
            Some(Ok(chunk)) => heard += chunk.samples.len(),
            Some(Err(error)) => break error,
            None => panic!("the stalled utterance ended cleanly"),
        }
    };
    assert!(matches!(&error, TtsError::Failed(reason) if reason.contains("fell behind")));
    let heard = heard as f64 / 22_050.0;
    assert!(heard > 15.0, "what fit in the channel arrived: {heard} s");
}
