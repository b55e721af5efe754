//! The answer request (signed form POST or GET), refusals and content types; the signed upgrade.

use super::*;

#[tokio::test]
async fn answer_is_a_signed_form_post_and_the_upgrade_is_signed() {
    let fake = Fake::start(FakeConfig {
        token: Some(TOKEN.into()),
        ..FakeConfig::default()
    })
    .await;
    let mut cfg = config(
        &fake,
        vec![CallerStep::Silence(Duration::from_millis(100))],
        10.0,
    );
    cfg.auth_token = Some(TOKEN.into());
    let uuid = cfg.call_uuid.clone();
    let report = run_call(cfg).await.unwrap();

    let seen = fake.seen();
    let answer = &seen.answers[0];
    assert_eq!(answer.method, "POST");
    assert_eq!(
        answer.content_type.as_deref(),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(answer.signature, Some(Ok(())));
    for (key, value) in [
        ("CallUUID", uuid.as_str()),
        ("From", "14155550100"),
        ("To", "14155550199"),
        ("Direction", "inbound"),
        ("CallStatus", "in-progress"),
        ("Event", "StartApp"),
        ("RequestUUID", uuid.as_str()),
    ] {
        assert_eq!(answer.param(key), Some(value), "{key}");
    }
    let session_start = answer.param("SessionStart").unwrap();
    assert_eq!(session_start.len(), "2020-04-08 11:34:33.238707".len());

    // The upgrade went to the URL from the XML, `&amp;` unescaped, and was signed over its
    // http:// form.
    let upgrade = &seen.upgrades[0];
    assert!(upgrade.url.ends_with("/plivo/stream?call=abc&tenant=7"));
    assert_eq!(upgrade.signature, Some(Ok(())));
    assert_eq!(
        report.stream_url,
        format!("ws://{}/plivo/stream?call=abc&tenant=7", fake.addr)
    );
    assert!(
        report.protocol_errors.is_empty(),
        "{:?}",
        report.protocol_errors
    );
}

#[tokio::test]
async fn a_wrong_token_is_what_the_server_sees_as_unsigned() {
    let fake = Fake::start(FakeConfig {
        token: Some(TOKEN.into()),
        ..FakeConfig::default()
    })
    .await;
    let mut cfg = config(
        &fake,
        vec![CallerStep::Silence(Duration::from_millis(40))],
        10.0,
    );
    cfg.auth_token = Some("another-token".into());
    run_call(cfg.clone()).await.unwrap();
    cfg.auth_token = None;
    run_call(cfg).await.unwrap();
    let seen = fake.seen();
    assert_eq!(
        seen.answers[0].signature,
        Some(Err(SignatureError::Invalid))
    );
    assert_eq!(
        seen.upgrades[0].signature,
        Some(Err(SignatureError::Invalid))
    );
    assert_eq!(
        seen.answers[1].signature,
        Some(Err(SignatureError::Missing))
    );
}

#[tokio::test]
async fn answer_by_get_carries_the_fields_in_the_signed_query() {
    let fake = Fake::start(FakeConfig {
        token: Some(TOKEN.into()),
        ..FakeConfig::default()
    })
    .await;
    let mut cfg = config(
        &fake,
        vec![CallerStep::Silence(Duration::from_millis(40))],
        10.0,
    );
    cfg.auth_token = Some(TOKEN.into());
    cfg.answer_method = AnswerMethod::Get;
    let uuid = cfg.call_uuid.clone();
    run_call(cfg).await.unwrap();
    let seen = fake.seen();
    let answer = &seen.answers[0];
    assert_eq!(answer.method, "GET");
    assert_eq!(answer.param("CallUUID"), Some(uuid.as_str()));
    assert_eq!(answer.param("Event"), Some("StartApp"));
    assert_eq!(answer.signature, Some(Ok(())));
}

#[tokio::test]
async fn a_hangup_answer_is_a_refusal() {
    let fake = Fake::start(FakeConfig {
        refuse: true,
        ..FakeConfig::default()
    })
    .await;
    let err = run_call(config(&fake, vec![CallerStep::Hangup], 10.0))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, SimError::Refused { reason: Some(r) } if r == "busy"),
        "{err}"
    );
    assert_eq!(err.kind(), "refused");
    assert!(fake.seen().upgrades.is_empty());
}

#[tokio::test]
async fn an_unexpected_content_type_is_refused() {
    let fake = Fake::start(FakeConfig {
        format: MediaFormat::L16At8k,
        ..FakeConfig::default()
    })
    .await;
    let mut cfg = config(&fake, vec![CallerStep::Hangup], 10.0);
    cfg.expect_content_type = Some(MediaFormat::MuLaw8k);
    let err = run_call(cfg).await.unwrap_err();
    assert!(matches!(err, SimError::ContentType { .. }), "{err}");
}

#[tokio::test]
async fn answers_plivo_would_reject_fail_the_call_by_kind() {
    for (status, body, kind) in [
        (500, "oops", "answer_status"),
        (200, "<Response><Speak>hi</Speak></Response>", "answer_xml"),
        (200, "", "answer_xml"),
    ] {
        let fake = Fake::start(FakeConfig {
            raw_answer: Some((status, body)),
            ..FakeConfig::default()
        })
        .await;
        let err = run_call(config(&fake, vec![CallerStep::Hangup], 10.0))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), kind, "{status} {body:?}: {err}");
    }
}

#[tokio::test]
async fn a_stream_plivo_would_half_ignore_is_noted() {
    let fake = Fake::start(FakeConfig {
        raw_answer: Some((
            200,
            r#"<?xml version="1.0" encoding="UTF-8"?><Response><Stream contentType="audio/x-mulaw;rate=8000">ws://{addr}/plivo/stream</Stream></Response>"#,
        )),
        ..FakeConfig::default()
    })
    .await;
    let report = run_call(config(
        &fake,
        vec![CallerStep::Silence(Duration::from_millis(40))],
        10.0,
    ))
    .await
    .unwrap();
    let kinds: Vec<&str> = report
        .protocol_errors
        .iter()
        .map(|e| e.kind.as_str())
        .collect();
    assert_eq!(kinds, ["keep_call_alive_missing", "not_bidirectional"]);
    assert!(!report.bidirectional);
    assert_eq!(report.status_callback_url, None);
}
