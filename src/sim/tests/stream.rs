//! The stream: `start`, media on the clock, DTMF, the server closing; the callbacks.

use super::*;

#[tokio::test]
async fn start_then_media_on_an_absolute_20ms_clock() {
    let fake = Fake::start(FakeConfig::default()).await;
    let cfg = config(
        &fake,
        vec![CallerStep::Silence(Duration::from_secs(2))],
        10.0,
    );
    let uuid = cfg.call_uuid.clone();
    let report = run_call(cfg).await.unwrap();
    // 2 s of script at 10× is 0.2 s of real time.
    assert!(
        (190.0..600.0).contains(&report.wall_ms),
        "2 s at speed 10 took {} ms",
        report.wall_ms
    );
    assert_eq!(report.ticks, 100);
    assert_eq!(report.end, EndReason::ScriptDone);

    let messages = received(&fake);
    let start = &messages[0];
    assert_eq!(start["event"], "start");
    assert_eq!(start["sequenceNumber"], 1);
    assert_eq!(start["start"]["callId"], uuid.as_str());
    assert_eq!(start["start"]["streamId"], report.stream_id.as_str());
    assert!(uuid::Uuid::parse_str(&report.stream_id).is_ok());
    assert!(
        start["start"]["accountId"]
            .as_str()
            .unwrap()
            .starts_with("MA")
    );
    assert_eq!(start["start"]["tracks"], serde_json::json!(["inbound"]));
    assert_eq!(start["start"]["mediaFormat"]["encoding"], "audio/x-mulaw");
    assert_eq!(start["start"]["mediaFormat"]["sampleRate"], 8000);

    let media = events(&messages, "media");
    assert_eq!(media.len(), 100);
    for (n, m) in media.iter().enumerate() {
        assert_eq!(m["sequenceNumber"], n as u64 + 2);
        assert_eq!(m["streamId"], report.stream_id.as_str());
        assert_eq!(m["media"]["track"], "inbound");
        // Timestamps are strings, as Plivo sends them.
        assert_eq!(m["media"]["timestamp"], (n * 20).to_string());
        assert_eq!(m["media"]["chunk"], n as u64 + 1);
        let payload = m["media"]["payload"].as_str().unwrap();
        use base64::Engine as _;
        let raw = base64::engine::general_purpose::STANDARD
            .decode(payload)
            .unwrap();
        assert_eq!(raw, vec![0xFF; 160], "line silence is µ-law 0xFF");
    }
    assert_eq!(report.counts.media_sent, 100);
    assert_eq!(report.counts.messages_sent, 101);
}

#[tokio::test]
async fn real_time_pacing_at_speed_one() {
    let fake = Fake::start(FakeConfig::default()).await;
    let cfg = config(
        &fake,
        vec![CallerStep::Silence(Duration::from_millis(300))],
        1.0,
    );
    let report = run_call(cfg).await.unwrap();
    assert!(
        (295.0..900.0).contains(&report.wall_ms),
        "300 ms at speed 1 took {} ms",
        report.wall_ms
    );
    let sent: Vec<f64> = report
        .timeline
        .iter()
        .filter(|e| matches!(e.kind, EventKind::MediaSent { .. }))
        .map(|e| e.wall_ms)
        .collect();
    assert_eq!(sent.len(), 15);
    // Tick n is never early, and a late tick does not push the ones after it.
    for (n, wall) in sent.iter().enumerate() {
        assert!(*wall >= n as f64 * 20.0 - 0.5, "tick {n} at {wall} ms");
    }
}

#[tokio::test]
async fn hangup_and_stream_status_callbacks_are_posted_signed() {
    let fake = Fake::start(FakeConfig {
        token: Some(TOKEN.into()),
        ..FakeConfig::default()
    })
    .await;
    let mut cfg = config(
        &fake,
        vec![CallerStep::Silence(Duration::from_millis(200))],
        5.0,
    );
    cfg.auth_token = Some(TOKEN.into());
    let uuid = cfg.call_uuid.clone();
    let report = run_call(cfg).await.unwrap();

    let seen = fake.seen();
    assert_eq!(seen.hangups.len(), 1);
    let hangup = &seen.hangups[0];
    assert_eq!(hangup.signature, Some(Ok(())));
    for (key, value) in [
        ("CallUUID", uuid.as_str()),
        ("CallStatus", "completed"),
        ("Event", "Hangup"),
        ("HangupCause", "NORMAL_CLEARING"),
        ("HangupCauseName", "Normal Hangup"),
        ("HangupSource", "Caller"),
        ("Direction", "inbound"),
        ("From", "14155550100"),
        ("To", "14155550199"),
        ("Duration", "1"),
        ("BillDuration", "1"),
    ] {
        assert_eq!(hangup.param(key), Some(value), "{key}");
    }
    for key in ["StartTime", "AnswerTime", "EndTime"] {
        assert_eq!(
            hangup.param(key).unwrap().len(),
            "2020-04-08 11:34:33".len()
        );
    }

    let events: Vec<&str> = seen
        .statuses
        .iter()
        .map(|r| r.param("Event").unwrap())
        .collect();
    assert_eq!(events, ["StartStream", "StopStream"]);
    for status in &seen.statuses {
        assert_eq!(status.param("CallUUID"), Some(uuid.as_str()));
        assert_eq!(status.param("StreamID"), Some(report.stream_id.as_str()));
        assert!(status.param("Timestamp").is_some());
        assert_eq!(status.signature, Some(Ok(())));
    }
    let outcomes: Vec<(&str, Option<u16>)> = report
        .callbacks
        .iter()
        .map(|c| (c.event.as_str(), c.status))
        .collect();
    assert_eq!(
        outcomes,
        [
            ("StartStream", Some(200)),
            ("StopStream", Some(200)),
            ("Hangup", Some(200))
        ]
    );
}

#[tokio::test]
async fn a_server_that_closes_ends_the_call_as_plivo_reports_it() {
    let fake = Fake::start(FakeConfig {
        actions: vec![(10, Action::Close)],
        ..FakeConfig::default()
    })
    .await;
    let report = run_call(config(
        &fake,
        vec![CallerStep::Silence(Duration::from_secs(5))],
        5.0,
    ))
    .await
    .unwrap();
    assert_eq!(report.end, EndReason::ServerClosed);
    assert!((10..40).contains(&report.ticks), "{} ticks", report.ticks);
    let seen = fake.seen();
    assert_eq!(seen.hangups[0].param("HangupSource"), Some("Plivo"));
    assert_eq!(seen.hangups[0].param("HangupCauseCode"), Some("4010"));
}

#[tokio::test]
async fn dtmf_steps_send_one_message_per_digit() {
    let fake = Fake::start(FakeConfig::default()).await;
    let report = run_call(config(
        &fake,
        vec![
            CallerStep::Silence(Duration::from_millis(40)),
            CallerStep::Dtmf("12#".into()),
        ],
        5.0,
    ))
    .await
    .unwrap();
    let messages = received(&fake);
    let dtmf: Vec<(&str, &str)> = events(&messages, "dtmf")
        .iter()
        .map(|m| {
            (
                m["dtmf"]["digit"].as_str().unwrap(),
                m["dtmf"]["timestamp"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(dtmf, [("1", "40"), ("2", "60"), ("#", "80")]);
    assert_eq!(report.counts.dtmf_sent, 3);
    assert!(matches!(
        run_call(config(&fake, vec![CallerStep::Dtmf("12x".into())], 5.0)).await,
        Err(SimError::Script(ScriptError::BadDigit('x')))
    ));
}

#[tokio::test]
async fn start_echoes_extra_headers_and_stream_timeout_stops_the_stream() {
    let fake = Fake::start(FakeConfig {
        extra_headers: Some("tenant=7,lang=en"),
        stream_timeout_secs: Some(1),
        ..FakeConfig::default()
    })
    .await;
    let report = run_call(config(
        &fake,
        vec![CallerStep::Silence(Duration::from_secs(5))],
        10.0,
    ))
    .await
    .unwrap();
    let messages = received(&fake);
    assert_eq!(messages[0]["extra_headers"], "tenant=7,lang=en");
    assert_eq!(report.end, EndReason::StreamTimeout);
    assert_eq!(report.ticks, 50);
    let seen = fake.seen();
    assert_eq!(seen.hangups[0].param("HangupCauseCode"), Some("4010"));
}
