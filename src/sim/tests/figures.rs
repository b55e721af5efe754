//! Per-turn figures and waiting steps on scripted calls with known answers.

use super::*;

#[tokio::test]
async fn until_agent_heard_waits_for_the_greeting() {
    let fake = Fake::start(FakeConfig {
        actions: vec![(10, Action::Play(tone(200, 500.0)))],
        ..FakeConfig::default()
    })
    .await;
    let report = run_call(config(
        &fake,
        vec![
            CallerStep::UntilAgentHeard {
                then: Duration::from_millis(100),
            },
            CallerStep::Audio(tone(100, 300.0)),
        ],
        5.0,
    ))
    .await
    .unwrap();
    let heard = first_loud_tick(&report.heard).unwrap() as f64 * 20.0;
    let turn = &report.turns[0];
    assert_eq!(turn.start_ms, heard + 100.0);
    assert!(turn.barge_in, "the caller spoke over the greeting");
}

/// The known answer: the caller speaks 100–400 ms; the fake replies with 200 ms of audio
/// after chunk 35 (heard from 700 ms: latency 300 ms), then, after a 200 ms hole, 800 ms more
/// from 1100 ms (one gap of 200 ms). The caller barges in at 1600 ms; the fake clears after
/// chunk 90 (1780 ms: 180 ms after the onset).
#[tokio::test]
async fn per_turn_figures_match_a_scripted_call() {
    let speech = [vec![0; 800], tone(300, 400.0)].concat();
    let fake = Fake::start(FakeConfig {
        actions: vec![
            (35, Action::Play(tone(200, 600.0))),
            (55, Action::Play(tone(800, 600.0))),
            (55, Action::Checkpoint("t1")),
            (90, Action::Clear),
        ],
        ..FakeConfig::default()
    })
    .await;
    let report = run_call(config(
        &fake,
        vec![
            CallerStep::Audio(speech),
            CallerStep::Silence(Duration::from_millis(1200)),
            CallerStep::Audio(tone(300, 400.0)),
            CallerStep::Silence(Duration::from_millis(600)),
        ],
        5.0,
    ))
    .await
    .unwrap();
    let near = |got: Option<f64>, want: f64, slack: f64| {
        let got = got.expect("figure present");
        assert!(
            got >= want - 0.5 && got <= want + slack,
            "{got} not within [{want}, {want}+{slack}]\n{report}"
        );
    };
    assert_eq!(report.turns.len(), 2);
    let first = &report.turns[0];
    assert_eq!(first.speech_onset_ms, Some(100.0));
    assert_eq!(first.speech_end_ms, Some(400.0));
    near(first.first_agent_audio_ms, 700.0, SLACK);
    near(first.response_latency_ms, 300.0, SLACK);
    assert!(!first.barge_in);
    assert_eq!(first.reply_gaps, 1, "{report}");
    let gap = first.reply_gap_ms;
    assert!(
        (200.0 - SLACK..=200.0 + SLACK).contains(&gap),
        "gap {gap} ms\n{report}"
    );

    let second = &report.turns[1];
    assert_eq!(second.start_ms, 1600.0);
    assert!(second.barge_in);
    near(second.barge_in_to_clear_ms, 180.0, SLACK);
    near(second.barge_in_to_silence_ms, 200.0, SLACK);
    assert_eq!(second.response_latency_ms, None);

    assert_eq!(report.gaps.count, 1);
    let messages = received(&fake);
    let acks = events(&messages, "playedStream");
    assert!(acks.is_empty(), "t1 was cleared: {acks:?}");
    let json = serde_json::to_value(&report).unwrap();
    assert!(json["turns"][0]["response_latency_ms"].is_number());
    assert!(json.get("heard").is_none());
}

#[tokio::test]
async fn echo_bursts_are_heard_with_their_checkpoints() {
    let fake = Fake::start(FakeConfig {
        echo_burst: Some(10),
        ..FakeConfig::default()
    })
    .await;
    let report = run_call(config(
        &fake,
        vec![
            CallerStep::Audio(tone(400, 400.0)),
            CallerStep::Silence(Duration::from_millis(400)),
        ],
        5.0,
    ))
    .await
    .unwrap();
    // The caller's own voice comes back about one burst later.
    let start = first_loud_tick(&report.heard).unwrap();
    assert!((10..=20).contains(&start), "echo heard from tick {start}");
    assert!(report.counts.played_stream_sent >= 2, "{report}");
    assert_eq!(report.gaps.count, 0, "{report}");
}
