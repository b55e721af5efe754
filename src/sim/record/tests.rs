use super::*;

/// The record as CONTRACT.md (issue #12) shapes it, with the fields the simulator ignores.
const SAMPLE: &str = r#"{
  "call_id": "c-1", "direction": "inbound", "state": "completed",
  "ended_at": "2026-12-04T20:00:00Z",
  "transcript": [
    {"speaker": "agent", "turn": 1, "text": "Hello! Press 1 or say yes, press 2 or say no.",
     "heard_text": "Hello! Press 1 or say yes, press 2 or say no.",
     "start_ms": 120, "end_ms": 3400, "interrupted": false},
    {"speaker": "caller", "turn": 1, "text": "[dtmf] 1", "start_ms": 3900, "end_ms": 3900,
     "interrupted": false},
    {"speaker": "agent", "turn": 2, "text": "Which city?", "heard_text": "Which",
     "start_ms": 4000, "end_ms": 4300, "interrupted": true},
    {"speaker": "caller", "turn": 2, "text": "paris", "start_ms": 4200, "end_ms": 5000}
  ],
  "turns": [
    {"turn": 1, "speech_end_ms": null, "end_of_turn_ms": null, "stt_final_ms": null,
     "decided_ms": null, "first_tts_audio_ms": null, "first_play_audio_ms": null,
     "first_heard_ms": null, "played_stream_ms": 3300.0, "gateway_ms": null,
     "interrupted": false},
    {"turn": 3, "speech_end_ms": 5000, "end_of_turn_ms": 410.0, "stt_final_ms": 380.0,
     "decided_ms": 411.0, "first_tts_audio_ms": 450.0, "first_play_audio_ms": 451.0,
     "first_heard_ms": 452.0, "played_stream_ms": 2500.0, "gateway_ms": 3.1,
     "interrupted": false, "future_stage_ms": 7}
  ],
  "slots": {"city": "paris", "confirmed": true, "none": null},
  "hung_up_by": "agent"
}"#;

#[test]
fn the_contract_sample_reads_as_written() {
    let record = parse_record(SAMPLE.as_bytes()).unwrap();
    assert!(record.ended);
    assert_eq!(record.state.as_deref(), Some("completed"));
    assert_eq!(record.hung_up_by.as_deref(), Some("agent"));
    assert_eq!(record.transcript.len(), 4);
    let asked = record.agent_line(2).unwrap();
    assert_eq!(asked.heard_text.as_deref(), Some("Which"));
    assert_eq!(asked.interrupted, Some(true));
    let said: Vec<&str> = record
        .caller_lines()
        .filter_map(|l| l.text.as_deref())
        .collect();
    assert_eq!(said, ["[dtmf] 1", "paris"]);

    assert_eq!(record.turns.len(), 2);
    let greeting = &record.turns[0];
    assert_eq!(greeting.speech_end_ms, None);
    assert_eq!(greeting.stage(Stage::EndOfTurn), None);
    assert_eq!(greeting.stage(Stage::PlayedStream), Some(3300.0));
    let answer = &record.turns[1];
    assert_eq!(answer.turn, Some(3));
    assert_eq!(answer.speech_end_ms, Some(5000.0));
    let stages: Vec<f64> = Stage::ALL.iter().filter_map(|&s| answer.stage(s)).collect();
    assert_eq!(
        stages,
        [410.0, 380.0, 411.0, 450.0, 451.0, 452.0, 2500.0, 3.1]
    );

    assert_eq!(record.slots.get("city").map(String::as_str), Some("paris"));
    assert_eq!(
        record.slots.get("confirmed").map(String::as_str),
        Some("true")
    );
    assert!(!record.slots.contains_key("none"));
}

#[test]
fn an_older_server_s_record_reads_as_empty_not_as_an_error() {
    // Before issue #12: `transcript` was a string and there were no turns or slots.
    let old = r#"{"call_id": "c-1", "state": "completed", "transcript": "hello",
                  "ended_at": null}"#;
    let record = parse_record(old.as_bytes()).unwrap();
    assert!(record.transcript.is_empty() && record.turns.is_empty() && record.slots.is_empty());
    assert_eq!(record.hung_up_by, None);
    assert!(!record.ended, "ended_at null: the record is not final yet");
    let bare = parse_record(b"{}").unwrap();
    assert!(bare.ended, "no ended_at at all: nothing to wait for");
}

#[test]
fn wrong_types_are_absent_fields() {
    let odd = r#"{"turns": [{"turn": -1, "gateway_ms": "3", "end_of_turn_ms": true}, 7],
                  "transcript": {"speaker": "agent"}, "slots": [1], "hung_up_by": 5}"#;
    let record = parse_record(odd.as_bytes()).unwrap();
    assert_eq!(record.turns.len(), 1, "the non-object entry is skipped");
    assert_eq!(record.turns[0], StageTurn::default());
    assert!(record.transcript.is_empty() && record.slots.is_empty());
    assert_eq!(record.hung_up_by, None);
}

#[test]
fn only_a_non_object_is_an_error() {
    for body in ["", "[]", "null", "\"x\"", "{"] {
        let e = parse_record(body.as_bytes()).unwrap_err();
        assert_eq!(e.kind(), "not_json", "{body:?}");
    }
}

#[test]
fn the_token_never_shows_in_debug() {
    let token = ApiToken::new("s3cr3t-token").unwrap();
    assert!(!format!("{token:?}").contains("s3cr3t"));
    assert_eq!(ApiToken::new("  "), None);
}
