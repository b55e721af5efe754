//! The server's call record, read after the call: retried while it is not there yet, the
//! per-stage split summarised by load.

use super::fake::RECORD_TOKEN;
use super::*;
use crate::sim::record::{ApiToken, FETCH_WINDOW, Stage, fetch_record};

const RECORD: &str = r#"{"call_id": "{call_id}", "state": "completed",
  "ended_at": "2026-12-04T20:00:00Z",
  "transcript": [
    {"speaker": "agent", "turn": 1, "text": "Which city?", "heard_text": "Which city?",
     "start_ms": 0, "end_ms": 900, "interrupted": false},
    {"speaker": "caller", "turn": 1, "text": "paris", "start_ms": 1000, "end_ms": 1500},
    {"speaker": "agent", "turn": 2, "text": "Goodbye!", "heard_text": "Goodbye!",
     "start_ms": 1900, "end_ms": 2500, "interrupted": false}
  ],
  "turns": [
    {"turn": 1, "speech_end_ms": null, "played_stream_ms": null, "interrupted": false},
    {"turn": 2, "speech_end_ms": 1500, "end_of_turn_ms": 410.0, "stt_final_ms": 380.0,
     "decided_ms": 411.0, "first_tts_audio_ms": 450.0, "first_play_audio_ms": 451.0,
     "first_heard_ms": 452.0, "played_stream_ms": 1100.0, "gateway_ms": 3.1,
     "interrupted": false}
  ],
  "slots": {"city": "paris"}, "hung_up_by": "agent"}"#;

fn token() -> ApiToken {
    ApiToken::new(RECORD_TOKEN).unwrap()
}

#[tokio::test]
async fn the_record_is_asked_again_until_it_exists() {
    let fake = Fake::start(FakeConfig {
        record: Some(RECORD),
        record_misses: 2,
        ..FakeConfig::default()
    })
    .await;
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let record = fetch_record(&client, &fake.base(), &token(), "c-7", FETCH_WINDOW)
        .await
        .unwrap();
    assert_eq!(record.turns[1].stage(Stage::Gateway), Some(3.1));
    assert_eq!(record.slots["city"], "paris");
    let seen = fake.seen();
    assert_eq!(seen.record_requests.len(), 3);
    assert_eq!(seen.record_requests[0].0, "c-7");
    assert_eq!(
        seen.record_requests[0].1.as_deref(),
        Some("Bearer api-t0ken")
    );
}

#[tokio::test]
async fn a_refused_token_is_not_retried_and_a_missing_record_gives_up_in_time() {
    let fake = Fake::start(FakeConfig {
        record: Some(RECORD),
        ..FakeConfig::default()
    })
    .await;
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let wrong = ApiToken::new("nope").unwrap();
    let e = fetch_record(&client, &fake.base(), &wrong, "c-1", FETCH_WINDOW)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), "unauthorized");
    assert!(!e.to_string().contains("nope"));
    assert_eq!(fake.seen().record_requests.len(), 1);

    let none = Fake::start(FakeConfig::default()).await;
    let e = fetch_record(
        &client,
        &none.base(),
        &token(),
        "c-1",
        Duration::from_millis(500),
    )
    .await
    .unwrap_err();
    assert!(e.to_string().contains("404"), "{e}");
    assert!((2..=4).contains(&none.seen().record_requests.len()));
}

#[tokio::test]
async fn load_summarises_the_server_s_stages_from_every_record() {
    let fake = Fake::start(FakeConfig {
        record: Some(RECORD),
        ..FakeConfig::default()
    })
    .await;
    let call = config(
        &fake,
        vec![CallerStep::Silence(Duration::from_millis(100))],
        5.0,
    );
    let report = run_load(LoadConfig::new(call, 3).unwrap().with_records(token())).await;
    assert_eq!(report.ok, 3, "{report}");
    assert_eq!(report.records.as_ref().unwrap().fetched, 3, "{report}");
    let gateway = &report.server_stages["gateway"];
    assert_eq!(
        (gateway.count, gateway.p50, gateway.p99, gateway.max),
        (3, 3.1, 3.1, 3.1)
    );
    assert_eq!(report.server_stages["played_stream"].count, 3);
    assert!(!report.server_stages.contains_key("nothing"));
    let text = report.to_string();
    assert!(text.contains("gateway (n=3): p50 3.1 ms"), "{text}");
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["server_stages"]["end_of_turn"]["p50"], 410.0);
}

#[tokio::test]
async fn the_tables_show_the_server_s_split_or_the_wire_s() {
    let fake = Fake::start(FakeConfig {
        record: Some(RECORD),
        actions: vec![
            (15, Action::Play(tone(100, 500.0))),
            (15, Action::Checkpoint("reply")),
        ],
        ..FakeConfig::default()
    })
    .await;
    let script = vec![
        CallerStep::Audio(tone(200, 400.0)),
        CallerStep::UntilAgentSilent {
            timeout: Duration::from_secs(2),
        },
    ];
    let report = run_call(config(&fake, script, 5.0)).await.unwrap();
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let record = fetch_record(
        &client,
        &fake.base(),
        &token(),
        &report.call_uuid,
        FETCH_WINDOW,
    )
    .await
    .unwrap();
    let table = crate::sim::table::server_table(&record, &report);
    let row = table
        .lines()
        .find(|l| l.contains("\"Goodbye!\""))
        .unwrap_or_else(|| panic!("{table}"));
    for cell in ["410", "380", "411", "450", "451", "452", "1100", "3.1"] {
        assert!(row.split_whitespace().any(|c| c == cell), "{cell} in {row}");
    }
    assert!(table.contains("paris"), "{table}");
    assert!(table.contains("slots: city=paris"), "{table}");
    assert!(
        table.contains("hung up by: agent (server), caller (simulator)"),
        "{table}"
    );

    let wire = crate::sim::table::wire_table(&report);
    let row = wire.lines().nth(2).unwrap();
    // Speech ends at 200 ms; the reply's playAudio comes at tick 15 and is heard then.
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cells[..2], ["0", "200"], "{wire}");
    assert!(cells[2..].iter().all(|c| *c != "-"), "{wire}");
    assert!(wire.contains("--api-token"), "{wire}");
}
