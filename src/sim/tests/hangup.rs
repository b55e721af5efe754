//! The gateway ends the call: by closing the media socket after its goodbye, or through
//! Plivo's REST API. The simulator stops its script cleanly and reports who hung up.

use base64::Engine as _;

use super::*;
use crate::sim::plivo_rest::{CallPhase, FakePlivo};

fn goodbye_then(action: Action) -> FakeConfig {
    FakeConfig {
        actions: vec![
            (5, Action::Play(tone(200, 500.0))),
            (5, Action::Checkpoint("goodbye")),
            (25, action),
            (30, Action::Close),
        ],
        ..FakeConfig::default()
    }
}

fn script() -> Vec<CallerStep> {
    vec![
        CallerStep::WaitAgent {
            timeout: Duration::from_secs(5),
            quiet: Duration::ZERO,
        },
        CallerStep::WaitHangup {
            timeout: Duration::from_secs(5),
        },
        CallerStep::Dtmf("9".into()),
        CallerStep::Hangup,
    ]
}

#[tokio::test]
async fn a_socket_close_after_the_goodbye_is_a_gateway_hang_up() {
    let fake = Fake::start(goodbye_then(Action::Close)).await;
    let report = run_call(config(&fake, script(), 5.0)).await.unwrap();
    assert_eq!(report.end, EndReason::ServerClosed);
    assert_eq!(report.hung_up_by, HungUpBy::Gateway);
    assert_eq!(report.skipped_steps, ["2:dtmf", "3:hangup"]);
    assert_eq!(report.counts.played_stream_sent, 1, "the goodbye was heard");
    assert_eq!(report.counts.protocol_errors, 0);
    let text = report.to_string();
    assert!(
        text.contains("hung up by: gateway; 2 script step(s) skipped"),
        "{text}"
    );
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["hung_up_by"], "gateway");
    let seen = fake.seen();
    let hangup = &seen.hangups[0];
    assert_eq!(hangup.param("HangupCauseCode"), Some("4010"));
    assert_eq!(
        hangup.param("HangupCauseName"),
        Some("End Of XML Instructions")
    );
    assert_eq!(hangup.param("HangupSource"), Some("Plivo"));
}

#[tokio::test]
async fn a_rest_hang_up_is_reported_as_plivo_would() {
    let plivo = FakePlivo::start("MASIMULATOR000000001", TOKEN)
        .await
        .unwrap();
    let auth = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("MASIMULATOR000000001:{TOKEN}"))
    );
    let url = format!("{}/v1/Account/MASIMULATOR000000001/Call/", plivo.base_url());
    let fake = Fake::start(goodbye_then(Action::RestHangup(url, auth))).await;
    let mut cfg = config(&fake, script(), 5.0);
    cfg.plivo_rest = Some(plivo.calls_handle());
    let uuid = cfg.call_uuid.clone();
    let report = run_call(cfg).await.unwrap();
    assert_eq!(report.end, EndReason::ApiHangup);
    assert_eq!(report.hung_up_by, HungUpBy::GatewayRest);
    assert_eq!(report.skipped_steps, ["2:dtmf", "3:hangup"]);
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["hung_up_by"], "gateway_rest");
    let seen = fake.seen();
    let hangup = &seen.hangups[0];
    assert_eq!(hangup.param("HangupCauseCode"), Some("4000"));
    assert_eq!(hangup.param("HangupSource"), Some("API Request"));
    let CallPhase::Ended(completion) = plivo.call(&uuid).unwrap().phase else {
        panic!("the emulator's call is still live");
    };
    assert_eq!(completion.hangup_source, "API Request");
}

#[tokio::test]
async fn a_caller_hang_up_ends_the_emulator_s_call_too() {
    let plivo = FakePlivo::start("MASIMULATOR000000001", TOKEN)
        .await
        .unwrap();
    let fake = Fake::start(FakeConfig::default()).await;
    let mut cfg = config(
        &fake,
        vec![CallerStep::Silence(Duration::from_millis(100))],
        5.0,
    );
    cfg.plivo_rest = Some(plivo.calls_handle());
    let uuid = cfg.call_uuid.clone();
    let report = run_call(cfg).await.unwrap();
    assert_eq!(report.hung_up_by, HungUpBy::Caller);
    assert!(report.skipped_steps.is_empty());
    let CallPhase::Ended(completion) = plivo.call(&uuid).unwrap().phase else {
        panic!("the emulator's call is still live");
    };
    assert_eq!(completion.hangup_source, "Caller");
    assert_eq!(fake.seen().hangups[0].param("HangupSource"), Some("Caller"));
}

#[tokio::test]
async fn load_counts_who_hung_up() {
    let fake = Fake::start(goodbye_then(Action::Close)).await;
    let load = LoadConfig::new(config(&fake, script(), 5.0), 2).unwrap();
    let report = run_load(load).await;
    assert_eq!((report.ok, report.failed), (2, 0), "{report}");
    assert_eq!(report.hung_up_by.get("gateway"), Some(&2));
    assert!(
        report.to_string().contains("hung up by: gateway 2"),
        "{report}"
    );
}
