use super::*;

const FULL: u16 = 160;

fn caller(step: usize, start_tick: u64, ticks: u64, onset: f64, end: f64) -> CallerTurn {
    CallerTurn {
        step,
        start_tick,
        ticks,
        onset_ms: Some(onset),
        end_ms: Some(end),
    }
}

/// Agent audio per tick from (first tick, last tick + 1, samples) runs.
fn agent(len: usize, runs: &[(usize, usize, u16)]) -> Vec<u16> {
    let mut v = vec![0; len];
    for &(a, b, n) in runs {
        v[a..b].fill(n);
    }
    v
}

#[test]
fn a_reply_with_a_hole_has_its_latency_and_one_gap() {
    // Caller speaks 10–150 ms; reply heard 200–400 ms, a 40 ms hole, then 440–610 ms
    // ending in a half frame; its checkpoint is reached at tick 32.
    let mut agent = agent(40, &[(10, 20, FULL), (22, 30, FULL)]);
    agent[30] = 80;
    let trace = Trace {
        agent,
        checkpoint_ends: vec![32],
        clears: vec![],
        play_starts: vec![5.0, 180.0],
        caller: vec![caller(0, 0, 8, 10.0, 150.0)],
    };
    let turns = agent_turns(&trace);
    assert_eq!(
        turns,
        [AgentTurn {
            start_ms: 200.0,
            audio_end_ms: 610.0,
            end: TurnEnd::Checkpoint,
            gaps: 1,
            gap_ms: 40.0,
        }]
    );
    let figures = turn_figures(&trace, &turns);
    assert_eq!(
        figures,
        [TurnFigures {
            step: 0,
            start_ms: 0.0,
            speech_onset_ms: Some(10.0),
            speech_end_ms: Some(150.0),
            first_agent_audio_ms: Some(200.0),
            response_latency_ms: Some(50.0),
            first_play_audio_latency_ms: Some(30.0),
            played_stream_latency_ms: Some(490.0),
            barge_in: false,
            barge_in_to_clear_ms: None,
            barge_in_to_silence_ms: None,
            reply_gaps: 1,
            reply_gap_ms: 40.0,
        }]
    );
    assert_eq!(
        gap_totals(&turns),
        GapTotals {
            count: 1,
            total_ms: 40.0
        }
    );
}

#[test]
fn short_frames_inside_a_turn_are_gaps_of_the_missing_samples() {
    // 120 samples, 40 missing, then full frames: a 5 ms gap.
    let trace = Trace {
        agent: agent(6, &[(0, 1, FULL), (1, 2, 120), (2, 4, FULL)]),
        ..Trace::default()
    };
    let turns = agent_turns(&trace);
    assert_eq!(turns.len(), 1);
    assert_eq!((turns[0].gaps, turns[0].gap_ms), (1, 5.0));
    assert_eq!(turns[0].end, TurnEnd::CallEnded);
}

#[test]
fn silence_between_turns_is_not_a_gap() {
    // Two turns, each closed by its checkpoint; the caller never spoke.
    let trace = Trace {
        agent: agent(30, &[(0, 5, FULL), (15, 20, FULL)]),
        checkpoint_ends: vec![6, 21],
        ..Trace::default()
    };
    let turns = agent_turns(&trace);
    assert_eq!(turns.len(), 2);
    assert!(
        turns
            .iter()
            .all(|t| t.gaps == 0 && t.end == TurnEnd::Checkpoint)
    );
    assert_eq!(turns[1].start_ms, 300.0);
}

#[test]
fn barge_in_is_timed_from_the_onset_to_the_clear_and_to_silence() {
    // Caller turn 1 (ticks 0–7) gets a reply from tick 45; the caller barges in at tick 50
    // (speech from 1045 ms); the phone is cleared at 1210 ms and silent from tick 60.
    let trace = Trace {
        agent: agent(80, &[(45, 60, FULL)]),
        checkpoint_ends: vec![],
        clears: vec![(61, 1210.0)],
        play_starts: vec![],
        caller: vec![
            caller(0, 0, 8, 0.0, 150.0),
            caller(2, 50, 10, 1045.0, 1190.0),
        ],
    };
    let turns = agent_turns(&trace);
    let ends: Vec<TurnEnd> = turns.iter().map(|t| t.end).collect();
    assert_eq!(ends, [TurnEnd::CallerSpoke, TurnEnd::Cleared]);
    let figures = turn_figures(&trace, &turns);
    assert_eq!(figures[0].response_latency_ms, Some(900.0 - 150.0));
    assert!(!figures[0].barge_in);
    let barge = &figures[1];
    assert!(barge.barge_in);
    assert_eq!(barge.barge_in_to_clear_ms, Some(165.0));
    assert_eq!(barge.barge_in_to_silence_ms, Some(155.0));
    assert_eq!(
        barge.response_latency_ms, None,
        "no reply after the barge-in"
    );
}

#[test]
fn agent_audio_that_started_before_the_speech_ended_is_not_a_reply() {
    // The agent talks over the whole caller turn and stops: no response latency.
    let trace = Trace {
        agent: agent(30, &[(0, 20, FULL)]),
        caller: vec![caller(0, 2, 5, 45.0, 130.0)],
        ..Trace::default()
    };
    let turns = agent_turns(&trace);
    let figures = turn_figures(&trace, &turns);
    assert_eq!(figures[0].first_agent_audio_ms, None);
    assert!(figures[0].barge_in);
    assert_eq!(figures[0].barge_in_to_clear_ms, None);
    assert_eq!(figures[0].barge_in_to_silence_ms, Some(400.0 - 45.0));
}
