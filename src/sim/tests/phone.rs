//! The simulated phone: playback order, the heard WAV, checkpoints, clears, bad input, L16.

use super::*;

#[tokio::test]
async fn the_phone_plays_audio_in_order_and_the_heard_wav_holds_it() {
    let a = tone(100, 400.0);
    let b = tone(100, 900.0);
    let fake = Fake::start(FakeConfig {
        actions: vec![(5, Action::Play([a.clone(), b.clone()].concat()))],
        ..FakeConfig::default()
    })
    .await;
    let report = run_call(config(
        &fake,
        vec![CallerStep::Silence(Duration::from_millis(600))],
        5.0,
    ))
    .await
    .unwrap();
    assert_eq!(report.heard.len(), 30 * 160);
    assert_eq!(report.sent.len(), 30 * 160);

    // What Plivo would play: the tones through µ-law, in order, with nothing in between.
    let expected: Vec<i16> = [a, b]
        .concat()
        .iter()
        .map(|&s| g711::ulaw_to_pcm(g711::pcm_to_ulaw(s)))
        .collect();
    let start = first_loud_tick(&report.heard).unwrap();
    // Sent after chunk 5 (tick 4) arrived, so heard from tick 5, or later on a busy machine.
    assert!((5..=15).contains(&start), "heard from tick {start}");
    let at = start * 160;
    assert_eq!(&report.heard[at..at + expected.len()], &expected[..]);
    assert!(report.heard[..at].iter().all(|&s| s == 0));
    assert!(report.heard[at + expected.len()..].iter().all(|&s| s == 0));

    let path = std::env::temp_dir().join(format!("voxgate-sim-heard-{}.wav", report.call_uuid));
    write_wav(&path, &report.heard).unwrap();
    let reader = hound::WavReader::open(&path).unwrap();
    assert_eq!(reader.spec().sample_rate, 8000);
    assert_eq!(reader.spec().channels, 1);
    let back: Vec<i16> = reader.into_samples().map(Result::unwrap).collect();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(back, report.heard);

    let first = report
        .timeline
        .iter()
        .find(|e| e.kind == EventKind::FirstAgentAudioHeard)
        .unwrap();
    assert_eq!(first.tick, start as u64);
    assert_eq!(report.counts.play_audio_received, 10);
}

#[tokio::test]
async fn a_checkpoint_is_acknowledged_only_after_its_audio_played() {
    let fake = Fake::start(FakeConfig {
        actions: vec![
            (5, Action::Play(tone(300, 500.0))),
            (5, Action::Checkpoint("c1")),
        ],
        ..FakeConfig::default()
    })
    .await;
    let report = run_call(config(
        &fake,
        vec![CallerStep::Silence(Duration::from_millis(800))],
        5.0,
    ))
    .await
    .unwrap();
    let messages = received(&fake);
    let played = messages
        .iter()
        .position(|m| m["event"] == "playedStream")
        .expect("playedStream sent");
    assert_eq!(messages[played]["name"], "c1");
    assert_eq!(messages[played]["streamId"], report.stream_id.as_str());
    // 15 frames of audio queued after chunk 5: all of them play before the ack.
    let last_chunk = messages[..played]
        .iter()
        .rev()
        .find_map(|m| m["media"]["chunk"].as_u64())
        .unwrap();
    assert!(last_chunk >= 20, "playedStream after chunk {last_chunk}");
    let start = first_loud_tick(&report.heard).unwrap() as u64;
    let acked = report
        .timeline
        .iter()
        .find(|e| matches!(&e.kind, EventKind::CheckpointPlayed { name } if name == "c1"))
        .unwrap();
    assert_eq!(
        acked.tick,
        start + 15,
        "acked at the tick after the last frame"
    );
    // Sequence numbers rise by one per message, whatever the message.
    for (n, m) in messages.iter().enumerate() {
        assert_eq!(m["sequenceNumber"], n as u64 + 1);
    }
    assert_eq!(report.counts.played_stream_sent, 1);
    assert_eq!(report.agent_turns.len(), 1);
    assert_eq!(report.agent_turns[0].end, TurnEnd::Checkpoint);
}

#[tokio::test]
async fn clear_audio_empties_the_phone_and_its_checkpoints_are_never_acknowledged() {
    let fake = Fake::start(FakeConfig {
        actions: vec![
            (5, Action::Play(tone(2000, 500.0))),
            (5, Action::Checkpoint("never")),
            (15, Action::Clear),
            (20, Action::Checkpoint("after-clear")),
        ],
        ..FakeConfig::default()
    })
    .await;
    let report = run_call(config(
        &fake,
        vec![CallerStep::Silence(Duration::from_millis(600))],
        5.0,
    ))
    .await
    .unwrap();
    let messages = received(&fake);
    let names: Vec<&str> = events(&messages, "playedStream")
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["after-clear"]);
    let cleared = messages
        .iter()
        .position(|m| m["event"] == "clearedAudio")
        .expect("clearedAudio sent");
    assert_eq!(messages[cleared]["streamId"], report.stream_id.as_str());
    let chunk_before = messages[..cleared]
        .iter()
        .rev()
        .find_map(|m| m["media"]["chunk"].as_u64())
        .unwrap();
    assert!(chunk_before >= 15);

    let (tick, dropped, dropped_ms) = report
        .timeline
        .iter()
        .find_map(|e| match &e.kind {
            EventKind::PhoneCleared {
                dropped_checkpoints,
                dropped_ms,
            } => Some((e.tick as usize, dropped_checkpoints.clone(), *dropped_ms)),
            _ => None,
        })
        .unwrap();
    assert_eq!(dropped, ["never"]);
    assert!(dropped_ms > 1500.0, "dropped {dropped_ms} ms");
    // Heard from its start up to the tick the clear arrived in, silent from the next one.
    let frames: Vec<bool> = report
        .heard
        .chunks(160)
        .map(|f| f.iter().any(|&s| s != 0))
        .collect();
    let start = first_loud_tick(&report.heard).unwrap();
    assert!(start <= tick && tick >= 14, "{start} {tick}");
    assert!(frames[start..=tick].iter().all(|&loud| loud), "{frames:?}");
    assert!(frames[tick + 1..].iter().all(|&loud| !loud), "{frames:?}");
    assert_eq!(report.counts.clear_audio_received, 1);
    assert_eq!(report.agent_turns[0].end, TurnEnd::Cleared);
}

#[tokio::test]
async fn garbage_from_the_server_is_counted_and_the_call_goes_on() {
    let bad_stream = r#"{"event":"checkpoint","streamId":"not-this-stream","name":"x"}"#;
    let bad_payload = r#"{"event":"playAudio","streamId":"s","media":{"contentType":"audio/x-mulaw","sampleRate":8000,"payload":"!!!"}}"#;
    let fake = Fake::start(FakeConfig {
        actions: vec![
            (3, Action::Raw("not json at all".into())),
            (3, Action::Raw(r#"{"event":"bogus"}"#.into())),
            (3, Action::Raw(bad_stream.into())),
            (3, Action::Raw(bad_payload.into())),
            (3, Action::Binary),
            (6, Action::Play(tone(100, 500.0))),
        ],
        ..FakeConfig::default()
    })
    .await;
    let report = run_call(config(
        &fake,
        vec![CallerStep::Silence(Duration::from_millis(400))],
        5.0,
    ))
    .await
    .unwrap();
    assert_eq!(report.end, EndReason::ScriptDone);
    let kinds: Vec<&str> = report
        .protocol_errors
        .iter()
        .map(|e| e.kind.as_str())
        .collect();
    for kind in [
        "malformed_json",
        "missing_or_invalid_field",
        "wrong_stream_id",
        "bad_play_audio",
        "binary_frame",
    ] {
        assert!(kinds.contains(&kind), "{kind} missing from {kinds:?}");
    }
    assert_eq!(
        report.counts.protocol_errors,
        report.protocol_errors.len() as u64
    );
    assert!(
        first_loud_tick(&report.heard).is_some(),
        "audio after the garbage still plays"
    );
    assert_eq!(report.counts.messages_received, 5 + 5);
    assert!(report.to_string().contains("protocol error"));
}

#[tokio::test]
async fn an_l16_16k_stream_is_sent_and_played_at_its_rate() {
    let wide: Vec<i16> = (0..3200)
        .map(|i| (8000.0 * (2.0 * std::f64::consts::PI * 500.0 * i as f64 / 16000.0).sin()) as i16)
        .collect();
    let fake = Fake::start(FakeConfig {
        format: MediaFormat::L16At16k,
        actions: vec![(5, Action::Play(wide)), (5, Action::Checkpoint("w"))],
        ..FakeConfig::default()
    })
    .await;
    let report = run_call(config(
        &fake,
        vec![
            CallerStep::Audio(tone(100, 400.0)),
            CallerStep::Silence(Duration::from_millis(400)),
        ],
        5.0,
    ))
    .await
    .unwrap();
    assert!(
        report.protocol_errors.is_empty(),
        "{:?}",
        report.protocol_errors
    );
    let messages = received(&fake);
    assert_eq!(
        messages[0]["start"]["mediaFormat"]["encoding"],
        "audio/x-l16"
    );
    assert_eq!(messages[0]["start"]["mediaFormat"]["sampleRate"], 16000);
    use base64::Engine as _;
    let payload = events(&messages, "media")[0]["media"]["payload"]
        .as_str()
        .unwrap();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(payload)
        .unwrap();
    assert_eq!(bytes.len(), 640, "20 ms of 16 kHz L16");
    let loud = report
        .heard
        .chunks(160)
        .filter(|f| f.iter().any(|s| s.unsigned_abs() > 1000))
        .count();
    assert!(
        (10..=11).contains(&loud),
        "200 ms of 16 kHz audio heard as {loud} frames"
    );
    assert_eq!(report.counts.played_stream_sent, 1);
}
