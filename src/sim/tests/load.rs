//! Many calls at once, and the bounds on them.

use super::*;

#[tokio::test]
async fn load_runs_concurrent_calls_and_aggregates_them() {
    let fake = Fake::start(FakeConfig {
        actions: vec![
            (15, Action::Play(tone(100, 500.0))),
            (15, Action::Checkpoint("reply")),
        ],
        ..FakeConfig::default()
    })
    .await;
    let call = config(
        &fake,
        vec![
            CallerStep::Audio(tone(200, 400.0)),
            CallerStep::UntilAgentSilent {
                timeout: Duration::from_secs(2),
            },
        ],
        5.0,
    );
    let load = LoadConfig::new(call, 3)
        .unwrap()
        .with_ramp(Duration::from_millis(30));
    let started = Instant::now();
    let report = run_load(load).await;
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(
        (report.calls, report.ok, report.failed),
        (3, 3, 0),
        "{report}"
    );
    let latency = report.latency.clone().unwrap();
    assert_eq!(latency.count, 3);
    // Speech ends at 200 ms; the reply is heard from tick 15 (300 ms) or a little later.
    assert!(
        latency.p50 >= 100.0 && latency.p99 <= 100.0 + SLACK,
        "{report}"
    );
    assert_eq!(report.protocol_errors, 0);
    let uuids: std::collections::HashSet<String> = fake
        .seen()
        .answers
        .iter()
        .map(|a| a.param("CallUUID").unwrap().to_owned())
        .collect();
    assert_eq!(uuids.len(), 3);
    assert!(report.to_string().contains("3 ok"));
}

#[tokio::test]
async fn load_stays_on_loopback_and_within_bounds() {
    let script = vec![CallerStep::Hangup];
    let remote = SimConfig::new("http://10.1.2.3:8080", script.clone());
    assert!(matches!(
        LoadConfig::new(remote, 2),
        Err(SimError::NotLoopback(_))
    ));
    let local = SimConfig::new("http://127.0.0.1:9", script);
    assert!(matches!(
        LoadConfig::new(local.clone(), 0),
        Err(SimError::Config(_))
    ));
    assert!(LoadConfig::new(local.clone(), MAX_CALLS + 1).is_err());
    // Nothing listens on port 9: every call fails, by kind.
    let report = run_load(LoadConfig::new(local, 2).unwrap()).await;
    assert_eq!((report.ok, report.failed), (0, 2));
    assert_eq!(report.failures.get("answer_transport"), Some(&2));
}

#[test]
fn bad_settings_are_refused_before_any_request() {
    let mut cfg = SimConfig::new("http://127.0.0.1:1", Vec::new());
    cfg.speed = 0.0;
    assert!(matches!(cfg.validate(), Err(SimError::Config(_))));
    cfg.speed = f64::NAN;
    assert!(cfg.validate().is_err());
    cfg.speed = 2.0;
    cfg.server = "ftp://x".into();
    assert!(cfg.validate().is_err());
}
