use super::*;

fn policy(interruption: Interruption, end_of_turn: EndOfTurn) -> TurnTaking {
    TurnTaking::new(TurnConfig {
        interruption,
        end_of_turn,
        ..TurnConfig::default()
    })
}

/// The agent is talking from t = 0.
fn talking(interruption: Interruption) -> TurnTaking {
    let mut turn = policy(interruption, EndOfTurn::Vad);
    turn.set_agent_audible(true, 0);
    turn
}

/// Polls every 20 ms from `from` to `to` (inclusive), the caller's voice going on all the
/// while, and returns the first decision and its time.
fn poll_speaking(turn: &mut TurnTaking, from: u64, to: u64) -> Option<(u64, Decision)> {
    (from..=to).step_by(20).find_map(|t| {
        turn.voiced(t);
        turn.poll(t).map(|d| (t, d))
    })
}

/// Polls every 20 ms from `from` to `to` (inclusive), no new voice heard, and returns the
/// first decision and its time.
fn poll_until(turn: &mut TurnTaking, from: u64, to: u64) -> Option<(u64, Decision)> {
    (from..=to)
        .step_by(20)
        .find_map(|t| turn.poll(t).map(|d| (t, d)))
}

#[test]
fn vad_barge_in_fires_at_min_speech_from_the_onset() {
    let mut turn = talking(Interruption::Vad);
    // The VAD declares speech 60 ms after it began.
    assert_eq!(turn.speech_started(1_000, 1_060), None);
    assert_eq!(turn.next_deadline(), Some(1_250));
    assert_eq!(
        poll_speaking(&mut turn, 1_080, 2_000),
        Some((1_260, Decision::BargeIn { onset_ms: 1_000 }))
    );
}

#[test]
fn vad_barge_in_is_immediate_when_the_vad_was_slower_than_min_speech() {
    let mut turn = talking(Interruption::Vad);
    assert_eq!(
        turn.speech_started(1_000, 1_300),
        Some(Decision::BargeIn { onset_ms: 1_000 })
    );
}

#[test]
fn a_100_ms_click_never_cuts_the_agent() {
    let mut turn = talking(Interruption::Vad);
    // As the VAD reports it: voiced from 1 000 to 1 160 (the click and webrtc-vad's hold),
    // speech declared at 1 120, and its end only after the 400 ms hangover.
    assert_eq!(turn.speech_started(1_000, 1_120), None);
    turn.voiced(1_160);
    assert_eq!(poll_until(&mut turn, 1_140, 1_540), None);
    // Over the agent and no barge-in: not a turn either.
    assert_eq!(turn.speech_ended(1_100, 1_540), None);
    assert_eq!(poll_until(&mut turn, 1_560, 3_000), None);
    assert_eq!(turn.next_deadline(), None);
}

#[test]
fn speech_that_pauses_at_min_speech_cuts_in_when_the_voice_resumes() {
    let mut turn = talking(Interruption::Vad);
    turn.speech_started(1_000, 1_120);
    turn.voiced(1_200);
    // A pause from 1 200: no barge-in at 1 250 nor while the voice is away.
    assert_eq!(poll_until(&mut turn, 1_140, 1_400), None);
    turn.voiced(1_420);
    assert_eq!(
        turn.poll(1_420),
        Some(Decision::BargeIn { onset_ms: 1_000 })
    );
}

#[test]
fn no_barge_in_while_the_agent_is_silent_and_then_a_normal_turn_end() {
    let mut turn = policy(Interruption::Vad, EndOfTurn::Vad);
    assert_eq!(turn.speech_started(0, 60), None);
    assert_eq!(poll_until(&mut turn, 80, 2_000), None);
    assert_eq!(
        turn.speech_ended(2_000, 2_300),
        Some(Decision::EndOfTurn {
            speech_end_ms: 2_000,
            text: None
        })
    );
}

#[test]
fn interruption_none_never_cuts_the_agent() {
    let mut turn = talking(Interruption::None);
    assert_eq!(turn.speech_started(0, 500), None);
    assert_eq!(turn.transcript("stop talking please", true, 600), None);
    assert_eq!(poll_until(&mut turn, 600, 5_000), None);
    assert_eq!(turn.next_deadline(), None);
}

#[test]
fn at_most_one_barge_in_per_agent_turn() {
    let mut turn = talking(Interruption::Vad);
    assert!(turn.speech_started(0, 300).is_some());
    turn.speech_ended(800, 800);
    assert_eq!(turn.speech_started(1_000, 1_400), None);
    assert_eq!(poll_until(&mut turn, 1_400, 2_000), None);
    // The next agent turn may be cut again.
    turn.set_agent_audible(false, 2_000);
    turn.speech_ended(2_000, 2_000);
    turn.set_agent_audible(true, 3_000);
    assert_eq!(
        turn.speech_started(3_100, 3_400),
        Some(Decision::BargeIn { onset_ms: 3_100 })
    );
}

#[test]
fn stt_barge_in_needs_a_word_that_is_not_a_filler() {
    let mut turn = talking(Interruption::Stt);
    assert_eq!(turn.speech_started(1_000, 1_060), None);
    // Long speech alone is not enough under Stt.
    assert_eq!(poll_until(&mut turn, 1_080, 2_000), None);
    assert_eq!(turn.transcript("mm-hmm", false, 1_500), None);
    assert_eq!(turn.transcript("Mm-hmm.", true, 1_600), None);
    assert_eq!(
        turn.transcript("wait", false, 1_700),
        Some(Decision::BargeIn { onset_ms: 1_000 })
    );
}

#[test]
fn a_backchannel_never_cuts_the_agent_under_both() {
    let mut turn = talking(Interruption::Both);
    assert_eq!(turn.speech_started(1_000, 1_060), None);
    assert_eq!(turn.transcript("uh-huh", false, 1_200), None);
    assert_eq!(poll_until(&mut turn, 1_080, 1_600), None);
    assert_eq!(turn.transcript("mm-hmm", true, 1_650), None);
    assert_eq!(turn.speech_ended(1_700, 1_700), None);
    assert_eq!(poll_until(&mut turn, 1_700, 3_000), None);
}

#[test]
fn both_needs_min_speech_and_a_word() {
    // The word first: barge-in waits for min speech.
    let mut turn = talking(Interruption::Both);
    turn.speech_started(1_000, 1_060);
    assert_eq!(turn.transcript("hold", false, 1_100), None);
    assert_eq!(turn.next_deadline(), Some(1_250));
    assert_eq!(
        poll_speaking(&mut turn, 1_120, 2_000),
        Some((1_260, Decision::BargeIn { onset_ms: 1_000 }))
    );
    // Min speech first: barge-in waits for the word.
    let mut turn = talking(Interruption::Both);
    turn.speech_started(1_000, 1_060);
    assert_eq!(poll_speaking(&mut turn, 1_080, 1_620), None);
    assert_eq!(
        turn.transcript("hold on", false, 1_620),
        Some(Decision::BargeIn { onset_ms: 1_000 })
    );
    // A short sound with a word is still too short.
    let mut turn = talking(Interruption::Both);
    turn.speech_started(1_000, 1_060);
    turn.speech_ended(1_120, 1_120);
    assert_eq!(turn.transcript("no", true, 1_300), None);
}

#[test]
fn end_of_turn_by_vad_carries_the_finals_heard_so_far() {
    let mut turn = policy(Interruption::Vad, EndOfTurn::Vad);
    turn.speech_started(0, 60);
    assert_eq!(turn.transcript("I want", true, 500), None);
    assert_eq!(turn.transcript("to book", false, 700), None);
    assert_eq!(
        turn.speech_ended(900, 1_100),
        Some(Decision::EndOfTurn {
            speech_end_ms: 900,
            text: Some("I want".into())
        })
    );
}

#[test]
fn end_of_turn_by_stt_final_ignores_the_vad_end() {
    let mut turn = policy(Interruption::Vad, EndOfTurn::SttFinal);
    turn.speech_started(0, 60);
    assert_eq!(turn.speech_ended(900, 1_100), None);
    assert_eq!(poll_until(&mut turn, 1_100, 3_000), None);
    assert_eq!(turn.transcript("book a table", false, 3_100), None);
    assert_eq!(
        turn.transcript("book a table", true, 3_200),
        Some(Decision::EndOfTurn {
            speech_end_ms: 900,
            text: Some("book a table".into())
        })
    );
}

#[test]
fn end_of_turn_by_both_waits_for_the_final() {
    let mut turn = policy(Interruption::Vad, EndOfTurn::Both);
    turn.speech_started(0, 60);
    assert_eq!(turn.speech_ended(900, 1_100), None);
    assert_eq!(turn.next_deadline(), Some(1_700));
    assert_eq!(poll_until(&mut turn, 1_100, 1_400), None);
    assert_eq!(
        turn.transcript("paris", true, 1_450),
        Some(Decision::EndOfTurn {
            speech_end_ms: 900,
            text: Some("paris".into())
        })
    );
}

#[test]
fn end_of_turn_by_both_is_immediate_when_the_final_came_first() {
    let mut turn = policy(Interruption::Vad, EndOfTurn::Both);
    turn.speech_started(0, 60);
    turn.transcript("london", true, 800);
    assert_eq!(
        turn.speech_ended(900, 1_100),
        Some(Decision::EndOfTurn {
            speech_end_ms: 900,
            text: Some("london".into())
        })
    );
}

#[test]
fn end_of_turn_by_both_decides_anyway_after_the_grace() {
    let mut turn = policy(Interruption::Vad, EndOfTurn::Both);
    turn.speech_started(0, 60);
    turn.speech_ended(900, 1_100);
    assert_eq!(
        poll_until(&mut turn, 1_120, 3_000),
        Some((
            1_700,
            Decision::EndOfTurn {
                speech_end_ms: 900,
                text: None
            }
        ))
    );
    // And once only.
    assert_eq!(poll_until(&mut turn, 1_720, 3_000), None);
}

#[test]
fn end_of_turn_by_both_waits_again_when_the_caller_goes_on() {
    let mut turn = policy(Interruption::Vad, EndOfTurn::Both);
    turn.speech_started(0, 60);
    turn.speech_ended(900, 1_100);
    turn.speech_started(1_300, 1_360);
    assert_eq!(poll_until(&mut turn, 1_380, 2_500), None);
}

#[test]
fn a_barge_in_turn_ends_normally_with_its_words() {
    let mut turn = talking(Interruption::Vad);
    turn.speech_started(1_000, 1_060);
    assert!(poll_speaking(&mut turn, 1_080, 1_300).is_some());
    turn.transcript("no wait", true, 1_500);
    turn.set_agent_audible(false, 1_320);
    assert_eq!(
        turn.speech_ended(1_800, 1_900),
        Some(Decision::EndOfTurn {
            speech_end_ms: 1_800,
            text: Some("no wait".into())
        })
    );
}

#[test]
fn a_late_final_of_ignored_speech_is_no_turn() {
    let mut turn = policy(Interruption::Both, EndOfTurn::SttFinal);
    turn.set_agent_audible(true, 0);
    turn.speech_started(1_000, 1_060);
    turn.speech_ended(1_300, 1_300);
    turn.set_agent_audible(false, 1_400);
    assert_eq!(turn.transcript("mm-hmm", true, 1_600), None);
}

#[test]
fn events_out_of_order_do_not_panic() {
    let mut turn = policy(Interruption::Both, EndOfTurn::Both);
    assert_eq!(turn.speech_ended(100, 50), None);
    assert_eq!(turn.speech_started(500, 100), None);
    let _ = turn.speech_ended(0, 0);
    turn.poll(u64::MAX);
    turn.transcript("", true, 0);
}

#[test]
fn fillers_match_whole_words_ignoring_case_and_punctuation() {
    let fillers = TurnConfig::default().fillers;
    assert!(is_filler("Um,", &fillers));
    assert!(is_filler("MM-HMM", &fillers));
    assert!(!is_filler("umbrella", &fillers));
    assert!(!is_filler("...", &fillers));
}

#[test]
fn strategies_parse_by_name_with_clear_errors() {
    for mode in Interruption::ALL {
        assert_eq!(mode.as_str().parse(), Ok(mode));
    }
    for mode in EndOfTurn::ALL {
        assert_eq!(mode.as_str().parse(), Ok(mode));
    }
    assert_eq!(" STT ".parse(), Ok(Interruption::Stt));
    assert_eq!("stt".parse(), Ok(EndOfTurn::SttFinal));
    let err = "sometimes".parse::<Interruption>().unwrap_err();
    assert_eq!(
        err.to_string(),
        "\"sometimes\" is not a known interruption (known: none, vad, stt, both)"
    );
    let config: TurnConfig =
        toml::from_str("interruption = \"both\"\nend_of_turn = \"stt_final\"\n").unwrap();
    assert_eq!(config.interruption, Interruption::Both);
    assert_eq!(config.end_of_turn, EndOfTurn::SttFinal);
    assert_eq!(config.min_speech_ms, 250);
    let err = toml::from_str::<TurnConfig>("interruption = \"loud\"\n").unwrap_err();
    assert!(
        err.to_string().contains("not a known interruption"),
        "{err}"
    );
}

#[test]
fn heard_text_by_word_timings_keeps_words_begun_before_the_cut() {
    let text = "Hello there, how are you";
    let words = [
        WordTime {
            byte_offset: 0,
            len: 5,
            start_ms: 0,
        },
        WordTime {
            byte_offset: 6,
            len: 6,
            start_ms: 400,
        },
        WordTime {
            byte_offset: 13,
            len: 3,
            start_ms: 900,
        },
        WordTime {
            byte_offset: 17,
            len: 3,
            start_ms: 1_200,
        },
        WordTime {
            byte_offset: 21,
            len: 3,
            start_ms: 1_400,
        },
    ];
    assert_eq!(
        heard_text(text, Some(&words), 1_000, 2_000),
        "Hello there, how"
    );
    assert_eq!(heard_text(text, Some(&words), 0, 2_000), "");
    assert_eq!(heard_text(text, Some(&words), 5_000, 2_000), text);
    // Offsets past the text or inside a character never panic.
    let bad = [WordTime {
        byte_offset: 1,
        len: 99,
        start_ms: 0,
    }];
    assert_eq!(heard_text("héllo", Some(&bad), 10, 20), "héllo");
    let bad = [WordTime {
        byte_offset: 0,
        len: 2,
        start_ms: 0,
    }];
    assert_eq!(heard_text("héllo", Some(&bad), 10, 20), "hé");
}

#[test]
fn heard_text_in_proportion_cuts_at_a_word_boundary() {
    let text = "one two three four";
    // Half the audio reaches character 9 ("t|hree"): "three" had begun.
    assert_eq!(heard_text(text, None, 1_000, 2_000), "one two three");
    assert_eq!(heard_text(text, None, 400, 2_000), "one");
    assert_eq!(heard_text(text, None, 0, 2_000), "");
    assert_eq!(heard_text(text, None, 2_000, 2_000), text);
    assert_eq!(heard_text(text, None, 10, 0), text);
}

#[test]
fn a_final_that_cuts_the_agent_off_also_ends_the_turn_under_stt_final() {
    let mut turn = policy(Interruption::Stt, EndOfTurn::SttFinal);
    turn.set_agent_audible(true, 0);
    assert_eq!(
        turn.transcript("stop", true, 1_000),
        Some(Decision::BargeIn { onset_ms: 1_000 })
    );
    assert_eq!(turn.next_deadline(), Some(1_000));
    assert_eq!(
        turn.poll(1_020),
        Some(Decision::EndOfTurn {
            speech_end_ms: 1_000,
            text: Some("stop".into())
        })
    );
    assert_eq!(turn.poll(1_040), None);
}

#[test]
fn a_late_word_after_the_speech_ended_cuts_in_and_makes_the_turn() {
    let mut turn = policy(Interruption::Both, EndOfTurn::Vad);
    turn.set_agent_audible(true, 0);
    turn.speech_started(1_000, 1_060);
    assert_eq!(turn.speech_ended(1_300, 1_300), None);
    assert_eq!(
        turn.transcript("wait", false, 1_450),
        Some(Decision::BargeIn { onset_ms: 1_000 })
    );
    turn.set_agent_audible(false, 1_460);
    assert_eq!(
        turn.poll(1_460),
        Some(Decision::EndOfTurn {
            speech_end_ms: 1_300,
            text: None
        })
    );
    // Under Both, the final is awaited and carried.
    let mut turn = policy(Interruption::Stt, EndOfTurn::Both);
    turn.set_agent_audible(true, 0);
    turn.speech_started(1_000, 1_060);
    turn.speech_ended(1_300, 1_300);
    assert!(turn.transcript("wait", false, 1_450).is_some());
    turn.set_agent_audible(false, 1_460);
    assert_eq!(turn.poll(1_480), None);
    assert_eq!(
        turn.transcript("wait a second", true, 1_600),
        Some(Decision::EndOfTurn {
            speech_end_ms: 1_300,
            text: Some("wait a second".into())
        })
    );
}
