use super::*;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/audio")
        .join(name)
}

fn view(agent_heard: bool, idle: bool, turns_completed: u64) -> PhoneView {
    PhoneView {
        agent_heard,
        idle,
        turns_completed,
    }
}

/// Runs `runner` with `phone(tick)` until the script ends; returns the ticks it used and
/// the final plan (the one that ended it).
fn run(
    runner: &mut Runner,
    phone: impl Fn(u64) -> PhoneView,
    limit: u64,
) -> (Vec<TickPlan>, TickPlan) {
    let mut plans = Vec::new();
    for tick in 0..limit {
        let plan = runner.tick(tick, phone(tick));
        if plan.finish.is_some() {
            return (plans, plan);
        }
        plans.push(plan);
    }
    panic!("script still running after {limit} ticks");
}

#[test]
fn wav_fixtures_load_and_their_speech_starts_where_the_readme_says() {
    let samples = load_wav(fixture("utterance_1_8k.wav")).unwrap();
    assert_eq!(samples.len(), (52_502 - 44) / 2);
    let (onset, end) = speech_bounds(&samples).unwrap();
    // 200 ms of digital silence before the speech, 800 ms after it.
    assert!((1550..=1650).contains(&onset), "onset at sample {onset}");
    assert!((samples.len() - end).abs_diff(6400) < 100, "end at {end}");

    let ulaw = load_ulaw(fixture("utterance_1.ulaw")).unwrap();
    assert_eq!(ulaw.len(), samples.len());
    assert_eq!(speech_bounds(&ulaw).map(|b| b.0 / 80), Some(onset / 80));
    assert!(matches!(
        audio_step(fixture("utterance_1.ulaw")),
        Ok(CallerStep::Audio(s)) if s == ulaw
    ));
}

#[test]
fn other_wav_formats_and_extensions_are_refused_clearly() {
    let err = load_wav(fixture("utterance_1_16k.wav")).unwrap_err();
    assert!(matches!(err, ScriptError::Format { rate: 16_000, .. }));
    assert!(err.to_string().contains("8000 Hz mono 16-bit"), "{err}");
    assert!(matches!(
        audio_step(fixture("dialogue_segments.json")),
        Err(ScriptError::UnknownExtension(_))
    ));
    assert!(matches!(
        load_wav(fixture("missing.wav")),
        Err(ScriptError::Io { .. })
    ));
}

#[test]
fn dtmf_keys_are_checked() {
    assert!(validate(&[CallerStep::Dtmf("0123456789*#ABCD".into())]).is_ok());
    assert!(matches!(
        validate(&[CallerStep::Dtmf("1e".into())]),
        Err(ScriptError::BadDigit('e'))
    ));
}

#[test]
fn speech_bounds_use_the_threshold() {
    assert_eq!(speech_bounds(&[0, 50, -100, 100]), None);
    assert_eq!(speech_bounds(&[0, 101, 0, -200, 3, 0]), Some((1, 4)));
    assert_eq!(speech_bounds(&[i16::MIN]), Some((0, 1)));
}

#[test]
fn durations_round_up_to_whole_ticks() {
    assert_eq!(ticks_for(Duration::ZERO), 0);
    assert_eq!(ticks_for(Duration::from_millis(20)), 1);
    assert_eq!(ticks_for(Duration::from_millis(21)), 2);
    assert_eq!(ticks_for(Duration::from_secs(2)), 100);
}

#[test]
fn steps_run_tick_by_tick_with_padded_audio() {
    let audio: Vec<i16> = (1..=400).collect();
    let mut runner = Runner::new(
        vec![
            CallerStep::Audio(audio.clone()),
            CallerStep::Silence(Duration::from_millis(40)),
            CallerStep::Silence(Duration::ZERO),
            CallerStep::Dtmf("1#".into()),
            CallerStep::Hangup,
            CallerStep::Silence(Duration::from_secs(1)),
        ],
        Duration::from_secs(1),
    );
    let (plans, last) = run(&mut runner, |_| view(false, true, 0), 100);
    assert_eq!(last.finish, Some(Finish::Hangup));
    assert_eq!(plans.len(), 3 + 2 + 2);
    assert!(plans.iter().all(|p| p.frame.len() == FRAME_SAMPLES_8K));
    let sent: Vec<i16> = plans[..3].iter().flat_map(|p| p.frame.clone()).collect();
    assert_eq!(&sent[..400], &audio[..]);
    assert!(sent[400..].iter().all(|&s| s == 0));
    assert!(plans[3..].iter().all(|p| p.frame.iter().all(|&s| s == 0)));
    let keys: Vec<Option<char>> = plans.iter().map(|p| p.dtmf).collect();
    assert_eq!(keys[5..], [Some('1'), Some('#')]);
    assert_eq!(
        plans[0].events,
        [ScriptEvent::StepStarted {
            index: 0,
            kind: "audio"
        }]
    );
    // The empty silence starts and ends inside tick 5, before the DTMF step.
    assert_eq!(plans[5].events.len(), 2);
    assert_eq!(
        runner.turns(),
        [CallerTurn {
            step: 0,
            start_tick: 0,
            ticks: 3,
            // The ramp passes the speech threshold at its 101st sample.
            onset_ms: Some(12.5),
            end_ms: Some(50.0),
        }]
    );
}

#[test]
fn until_agent_heard_waits_then_keeps_silent_for_then() {
    let mut runner = Runner::new(
        vec![
            CallerStep::UntilAgentHeard {
                then: Duration::from_millis(40),
            },
            CallerStep::Audio(vec![1000; 160]),
        ],
        Duration::from_secs(1),
    );
    // Agent audio is heard from tick 3.
    let (plans, last) = run(&mut runner, |t| view(t >= 3, false, 0), 100);
    assert_eq!(last.finish, Some(Finish::Done));
    assert_eq!(plans.len(), 6);
    assert_eq!(runner.turns()[0].start_tick, 5);

    let mut runner = Runner::new(
        vec![CallerStep::UntilAgentHeard {
            then: Duration::ZERO,
        }],
        Duration::from_millis(60),
    );
    let (plans, last) = run(&mut runner, |_| view(false, true, 0), 100);
    assert_eq!(plans.len(), 3);
    assert_eq!(last.events, [ScriptEvent::WaitTimedOut { index: 0 }]);
}

#[test]
fn until_agent_silent_waits_for_a_turn_to_finish_after_the_caller_spoke() {
    let script = vec![
        CallerStep::Audio(vec![1000; 320]),
        CallerStep::UntilAgentSilent {
            timeout: Duration::from_secs(1),
        },
    ];
    // One agent turn finished during the caller's audio (a cleared greeting); the reply
    // plays from tick 4 and ends at tick 9.
    let phone = |t: u64| match t {
        0..=1 => view(false, true, 1),
        2..=3 => view(false, true, 1),
        4..=8 => view(true, false, 1),
        _ => view(false, true, 2),
    };
    let mut runner = Runner::new(script.clone(), Duration::from_secs(1));
    let (plans, last) = run(&mut runner, phone, 100);
    assert_eq!(last.finish, Some(Finish::Done));
    assert_eq!(
        plans.len(),
        9,
        "silent until the reply's turn ended at tick 9"
    );

    let mut runner = Runner::new(
        vec![CallerStep::UntilAgentSilent {
            timeout: Duration::from_millis(100),
        }],
        Duration::from_secs(1),
    );
    let (plans, last) = run(&mut runner, |_| view(false, true, 0), 100);
    assert_eq!(plans.len(), 5);
    assert_eq!(last.events, [ScriptEvent::WaitTimedOut { index: 0 }]);
}

#[test]
fn wait_agent_waits_for_the_agent_to_finish_after_a_key_press_and_stay_quiet() {
    let script = vec![
        CallerStep::Dtmf("1".into()),
        CallerStep::WaitAgent {
            timeout: Duration::from_secs(1),
            quiet: Duration::from_millis(40),
        },
    ];
    // The greeting ended before the key; the reply is two turns (ticks 3..=5 and 7..=9)
    // with one idle tick between them, then the agent is quiet.
    let phone = |t: u64| match t {
        0..=2 => view(false, true, 1),
        3..=5 => view(true, false, 1),
        6 => view(false, true, 2),
        7..=9 => view(true, false, 2),
        _ => view(false, true, 3),
    };
    let mut runner = Runner::new(script, Duration::from_secs(1));
    let (plans, last) = run(&mut runner, phone, 100);
    assert_eq!(last.finish, Some(Finish::Done));
    // Key at tick 0; the one idle tick between the turns is not 40 ms of quiet; idle from
    // tick 10, done at tick 12, the third idle tick (more than 40 ms).
    assert_eq!(plans.len(), 12);
}

#[test]
fn steps_a_hang_up_cut_off_are_listed() {
    let script = vec![
        CallerStep::Silence(Duration::from_millis(40)),
        CallerStep::WaitHangup {
            timeout: Duration::from_secs(1),
        },
        CallerStep::Dtmf("1".into()),
        CallerStep::Hangup,
    ];
    let mut runner = Runner::new(script, Duration::from_secs(1));
    assert_eq!(
        runner.not_started(),
        ["0:silence", "1:wait_hangup", "2:dtmf", "3:hangup"]
    );
    for tick in 0..5 {
        let plan = runner.tick(tick, view(false, true, 0));
        assert_eq!(plan.finish, None, "still waiting for the hang-up");
    }
    assert_eq!(runner.not_started(), ["2:dtmf", "3:hangup"]);
}
