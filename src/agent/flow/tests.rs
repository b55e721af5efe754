//! The shipped flows end to end through the engine, and every load-time check.

use std::path::Path;
use std::sync::Arc;

use super::*;

fn demo() -> Arc<Flow> {
    Flows::load(None).unwrap().get(DEMO).unwrap()
}

fn facts() -> CallFacts {
    let mut metadata = serde_json::Map::new();
    metadata.insert("customer_name".into(), "Ada".into());
    CallFacts {
        from: "+14155550100".into(),
        to: "+14155550199".into(),
        direction: "outbound".into(),
        campaign: Some("spring".into()),
        metadata,
    }
}

fn says(actions: &[Action]) -> Vec<&str> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Say { text, .. } => Some(text.as_str()),
            _ => None,
        })
        .collect()
}

fn hang_up(actions: &[Action]) -> Option<&str> {
    actions.iter().find_map(|a| match a {
        Action::HangUp { reason } => Some(reason.as_str()),
        _ => None,
    })
}

/// The demo started at t = 0, its greeting heard by t = 2 s: the menu plays.
fn at_menu() -> FlowRun {
    let (mut run, actions) = FlowRun::start(demo(), facts(), 0);
    assert_eq!(
        says(&actions),
        ["Hello Ada, this is the voxgate demo."],
        "{actions:?}"
    );
    let actions = run.prompt_finished(2_000);
    assert!(
        says(&actions)[0].starts_with("Press 1 or say yes"),
        "{actions:?}"
    );
    let Some(Action::Listen {
        dtmf: true,
        max_digits: 1,
        words,
    }) = actions.get(1)
    else {
        panic!("the menu listens for keys and words: {actions:?}");
    };
    assert!(words.iter().any(|w| w == "yes") && words.iter().any(|w| w == "nope"));
    assert_eq!(run.node(), "menu");
    run
}

/// From the menu to the city question, heard by t = 8 s.
fn at_city(answer: impl FnOnce(&mut FlowRun) -> Vec<Action>) -> FlowRun {
    let mut run = at_menu();
    let actions = answer(&mut run);
    assert_eq!(actions[0], Action::StopListening, "{actions:?}");
    assert!(
        says(&actions)[0].starts_with("Great. Which city"),
        "{actions:?}"
    );
    assert!(
        matches!(&actions[2], Action::Listen { dtmf: false, words, .. } if words.contains(&"NYC".to_owned()))
    );
    assert_eq!(run.node(), "city");
    assert!(run.prompt_finished(8_000).is_empty());
    run
}

#[test]
fn demo_greeting_then_a_key_then_a_city_then_goodbye() {
    let mut run = at_city(|run| run.dtmf('1', 4_000));
    let actions = run.words("I'm in paris at the moment", 10_000);
    assert_eq!(
        actions[..2],
        [
            Action::SetSlot {
                name: "city".into(),
                value: "Paris".into()
            },
            Action::StopListening
        ]
    );
    assert_eq!(
        says(&actions),
        ["Thank you! Our spring offer in Paris starts next week. Goodbye!"]
    );
    assert_eq!(
        hang_up(&actions),
        None,
        "the goodbye is heard before the hang-up"
    );
    assert_eq!(run.slots().get("city").map(String::as_str), Some("Paris"));
    let actions = run.prompt_finished(14_000);
    assert_eq!(hang_up(&actions), Some(reasons::COMPLETED));
    assert!(run.is_done());
    assert!(run.tick(1_000_000).is_empty());
    assert!(run.dtmf('1', 1_000_001).is_empty());
}

#[test]
fn demo_a_spoken_yes_and_a_city_synonym() {
    let mut run = at_city(|run| run.words("Yeah, sure.", 4_000));
    let actions = run.words("the big apple", 10_000);
    assert_eq!(
        run.slots().get("city").map(String::as_str),
        Some("New York")
    );
    assert!(says(&actions)[0].contains("in New York"));
}

#[test]
fn demo_a_key_press_during_the_menu_prompt_is_an_answer() {
    let mut run = at_menu();
    // The prompt is still playing: the caller presses 2 over it.
    let actions = run.dtmf('2', 2_500);
    assert_eq!(
        says(&actions),
        ["No problem. Thank you for your time, goodbye!"]
    );
    assert_eq!(run.node(), "bye_no");
    assert_eq!(
        hang_up(&run.prompt_finished(5_000)),
        Some(reasons::COMPLETED)
    );
}

#[test]
fn demo_no_answer_reprompts_once_then_says_goodbye() {
    let mut run = at_menu();
    assert!(run.prompt_finished(5_000).is_empty());
    // The timeout counts from when the question was heard: 6 s.
    assert!(run.tick(10_999).is_empty());
    let actions = run.tick(11_000);
    assert!(
        says(&actions)[0].starts_with("Sorry, I didn't catch that."),
        "{actions:?}"
    );
    assert!(run.prompt_finished(15_000).is_empty());
    assert!(run.tick(20_999).is_empty());
    let actions = run.tick(21_000);
    assert_eq!(actions[0], Action::StopListening);
    assert_eq!(
        says(&actions),
        ["Sorry we couldn't connect today. Goodbye!"]
    );
    assert_eq!(
        hang_up(&run.prompt_finished(24_000)),
        Some(reasons::COMPLETED)
    );
}

#[test]
fn demo_an_unexpected_answer_reprompts_then_gives_up() {
    let mut run = at_menu();
    run.prompt_finished(5_000);
    let actions = run.words("what is this about", 6_000);
    assert!(says(&actions)[0].starts_with("Sorry, I didn't catch that."));
    run.prompt_finished(9_000);
    let actions = run.dtmf('7', 10_000);
    assert_eq!(
        says(&actions),
        ["Sorry we couldn't connect today. Goodbye!"]
    );
}

#[test]
fn demo_silence_gets_a_follow_up_then_a_goodbye() {
    let mut run = at_city(|run| run.dtmf('1', 4_000));
    assert!(run.tick(15_999).is_empty());
    let actions = run.tick(16_000);
    assert_eq!(says(&actions), ["Are you still there?"]);
    assert!(run.prompt_finished(17_000).is_empty());
    // The caller speaking starts the silence over.
    run.caller_spoke(20_000);
    assert!(run.tick(27_999).is_empty());
    let actions = run.tick(28_000);
    assert_eq!(says(&actions), ["Are you still there?"]);
    run.prompt_finished(29_000);
    let actions = run.tick(37_000);
    assert_eq!(actions[0], Action::StopListening);
    assert_eq!(
        says(&actions),
        ["I can't hear you, so I'll let you go. Goodbye!"]
    );
    assert_eq!(
        hang_up(&run.prompt_finished(40_000)),
        Some(reasons::SILENCE)
    );
}

#[test]
fn demo_hangs_up_at_max_call_length() {
    let mut run = at_city(|run| run.dtmf('1', 4_000));
    run.caller_spoke(299_000);
    let actions = run.tick(300_000);
    assert_eq!(
        actions,
        [
            Action::StopListening,
            Action::HangUp {
                reason: reasons::MAX_CALL.into()
            }
        ]
    );
    assert!(run.is_done());
}

#[test]
fn templates_see_metadata_slots_and_call_facts() {
    let flow = Arc::new(
        parse_flow(
            "t",
            r#"
start = "a"
[nodes.a]
set = { greeting = "Hi {{ metadata.customer_name | default('friend') }}" }
say = "{{ slots.greeting }} ({{ campaign }}, {{ direction }}, {{ from }} to {{ to }}) {{ metadata.missing }}."
hangup = true
"#,
        )
        .unwrap(),
    );
    let (_, actions) = FlowRun::start(Arc::clone(&flow), facts(), 0);
    assert_eq!(
        says(&actions),
        ["Hi Ada (spring, outbound, +14155550100 to +14155550199) ."]
    );
    let (_, actions) = FlowRun::start(flow, CallFacts::default(), 0);
    assert_eq!(says(&actions), ["Hi friend (, ,  to ) ."]);
}

#[test]
fn appointment_by_speech_keys_and_words() {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/flows/appointment.toml"),
    )
    .unwrap();
    let flow = Arc::new(parse_flow("appointment.toml", &text).unwrap());
    let (mut run, actions) = FlowRun::start(flow, facts(), 0);
    assert!(says(&actions)[0].starts_with("Hi Ada, thanks for calling the salon."));
    assert!(says(&run.prompt_finished(1_000))[0].contains("what name"));
    let actions = run.words("It's Grace Hopper", 3_000);
    assert!(
        says(&actions)[0].starts_with("Thanks It's Grace Hopper."),
        "{actions:?}"
    );
    let actions = run.dtmf('2', 4_000);
    assert!(
        says(&actions)[0].starts_with("A coloring, lovely."),
        "{actions:?}"
    );
    let actions = run.words("after lunch please", 6_000);
    assert_eq!(
        says(&actions),
        [
            "Booked: a coloring in the afternoon for It's Grace Hopper. We'll text you the exact time. Goodbye!"
        ]
    );
    assert_eq!(run.slots().len(), 3);
}

#[test]
fn every_shipped_example_validates() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/flows");
    let flows = Flows::load(Some(&dir)).unwrap();
    let names: Vec<&str> = flows.names().collect();
    assert_eq!(names, ["appointment", "demo"]);
    assert_eq!(demo().interruption(), crate::agent::turn::Interruption::Vad);
}

/// A flow's load error.
fn error(text: &str) -> FlowError {
    parse_flow("bad.toml", text).unwrap_err()
}

#[test]
fn an_unknown_node_is_named_with_the_key_that_names_it() {
    let err = error("start = \"a\"\n[nodes.a]\nsay = \"hi\"\nnext = \"b\"\n");
    assert_eq!(
        err.to_string(),
        "bad.toml: node \"a\": next = \"b\" is not a node of this flow"
    );
    let err = error("start = \"x\"\n[nodes.a]\nhangup = true\n");
    assert_eq!(
        err.to_string(),
        "bad.toml: node \"(flow)\": start = \"x\" is not a node of this flow"
    );
}

#[test]
fn an_unreachable_node_is_named() {
    let err = error("start = \"a\"\n[nodes.a]\nhangup = true\n[nodes.c]\nhangup = true\n");
    assert_eq!(
        err,
        FlowError::Unreachable {
            file: "bad.toml".into(),
            node: "c".into()
        }
    );
}

#[test]
fn a_loop_without_a_way_out_and_a_dead_end_are_named() {
    let err = error(
        "start = \"a\"\n[nodes.a]\nsay = \"a\"\nnext = \"b\"\n[nodes.b]\nsay = \"b\"\nnext = \"a\"\n",
    );
    assert!(
        matches!(&err, FlowError::NoEnd { node, reason, .. } if node == "a" && reason.contains("loop")),
        "{err}"
    );
    let err = error("start = \"a\"\n[nodes.a]\nsay = \"a\"\n");
    assert_eq!(
        err.to_string(),
        "bad.toml: node \"a\": dead end: no next or else, and not hangup = true"
    );
}

#[test]
fn a_bad_template_is_named_with_its_node_and_key() {
    let err = error("start = \"a\"\n[nodes.a]\nsay = \"Hi {{ name\"\nhangup = true\n");
    assert!(
        matches!(&err, FlowError::Template { node, key, reason, .. }
            if node == "a" && key == "say" && reason.contains("syntax error")),
        "{err}"
    );
    let err = error("start = \"a\"\n[nodes.a]\nset = { x = \"{{ 1 | nope }}\" }\nhangup = true\n");
    assert!(
        matches!(&err, FlowError::Template { key, .. } if key == "set.x"),
        "{err}"
    );
}

#[test]
fn an_ask_without_input_is_named() {
    let err = error(
        "start = \"a\"\n[nodes.a]\nask = { timeout_secs = 5 }\nnext = \"b\"\nelse = \"b\"\n[nodes.b]\nhangup = true\n",
    );
    assert_eq!(
        err,
        FlowError::AskWithoutInput {
            file: "bad.toml".into(),
            node: "a".into()
        }
    );
    assert!(err.to_string().contains("dtmf = true"));
}

#[test]
fn an_empty_flow_a_bad_length_and_unknown_keys_are_refused() {
    assert_eq!(
        error("start = \"a\"\n"),
        FlowError::Empty {
            file: "bad.toml".into()
        }
    );
    let err = error("start = \"a\"\nmax_call_secs = 5\n[nodes.a]\nhangup = true\n");
    assert_eq!(
        err.to_string(),
        "bad.toml: node \"(flow)\": max_call_secs = 5 is outside 10..=14400"
    );
    let err = error("start = \"a\"\n[nodes.a]\nsya = \"hi\"\nhangup = true\n");
    assert!(
        matches!(&err, FlowError::Syntax { reason, .. } if reason.contains("unknown field `sya`")),
        "{err}"
    );
    let err = error("start = \"a\"\ninterruption = \"loud\"\n[nodes.a]\nhangup = true\n");
    assert!(
        err.to_string().contains("not a known interruption"),
        "{err}"
    );
}

#[test]
fn branch_and_ask_mistakes_are_named() {
    let err = error(
        "start = \"a\"\n[nodes.a]\nask = { words = [\"yes\"] }\non = [{ digits = \"1\", go = \"b\" }]\n[nodes.b]\nhangup = true\n",
    );
    assert_eq!(
        err.to_string(),
        "bad.toml: node \"a\": on[0] matches digits but ask.dtmf is not set"
    );
    let err = error(
        "start = \"a\"\n[nodes.a]\nask = { dtmf = true, timeout_secs = 3 }\nnext = \"b\"\n[nodes.b]\nhangup = true\n",
    );
    assert!(err.to_string().contains("needs no_input or else"), "{err}");
    let err = error("start = \"a\"\n[nodes.a]\nhangup = true\nnext = \"a\"\n");
    assert!(
        err.to_string().contains("hangup = true ends the call here"),
        "{err}"
    );
}

#[test]
fn a_routing_loop_without_speech_hangs_up_instead_of_spinning() {
    // Valid (a way out exists through the slot branch), but the slot is never set.
    let flow = parse_flow(
        "loop.toml",
        r#"
start = "a"
[nodes.a]
on = [{ slot = "x", value = "1", go = "end" }]
next = "b"
[nodes.b]
next = "a"
[nodes.end]
hangup = true
"#,
    )
    .unwrap();
    let (run, actions) = FlowRun::start(Arc::new(flow), CallFacts::default(), 0);
    assert_eq!(hang_up(&actions), Some(reasons::LOOP));
    assert!(run.is_done());
}

#[test]
fn a_flows_dir_adds_flows_and_refuses_duplicates_and_bad_files() {
    let dir = std::env::temp_dir().join(format!("voxgate-flows-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let ok = "start = \"a\"\n[nodes.a]\nsay = \"bye\"\nhangup = true\n";
    std::fs::write(dir.join("short.toml"), ok).unwrap();
    std::fs::write(dir.join("notes.txt"), "not a flow").unwrap();
    let flows = Flows::load(Some(&dir)).unwrap();
    assert_eq!(flows.names().collect::<Vec<_>>(), ["demo", "short"]);
    assert_eq!(flows.get("short").unwrap().name(), "short");

    std::fs::write(dir.join("again.toml"), format!("name = \"short\"\n{ok}")).unwrap();
    let err = Flows::load(Some(&dir)).unwrap_err();
    assert!(
        matches!(err, FlowError::Duplicate { ref name, .. } if name == "short"),
        "{err}"
    );
    std::fs::remove_file(dir.join("again.toml")).unwrap();

    std::fs::write(
        dir.join("broken.toml"),
        "start = \"a\"\n[nodes.a]\nsay = \"x\"\n",
    )
    .unwrap();
    let err = Flows::load(Some(&dir)).unwrap_err();
    assert!(
        err.to_string()
            .contains("broken.toml: node \"a\": dead end"),
        "{err}"
    );

    let _ = std::fs::remove_dir_all(&dir);
    let err = Flows::load(Some(&dir)).unwrap_err();
    assert!(matches!(err, FlowError::Unreadable { .. }), "{err}");
}

#[test]
fn any_order_of_events_ends_the_call_by_max_call_secs() {
    // A fixed pseudo-random walk through every input, for both shipped flows.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/flows");
    let flows = Flows::load(Some(&dir)).unwrap();
    for name in ["demo", "appointment"] {
        for seed in 1..=50u64 {
            let flow = flows.get(name).unwrap();
            let max_ms = flow.max_call_secs() * 1_000;
            let (mut run, _) = FlowRun::start(flow, facts(), 0);
            let mut state = seed;
            let mut now = 0;
            while !run.is_done() {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                now += (state >> 33) % 3_000;
                let said = ["yes", "no", "paris", "um", "after lunch", "haircut", "Ada"];
                let _actions = match (state >> 20) % 6 {
                    0 => run.prompt_finished(now),
                    1 => run.dtmf(char::from(b'0' + ((state >> 8) % 4) as u8), now),
                    2 => run.words(said[((state >> 8) % 7) as usize], now),
                    3 => {
                        run.caller_spoke(now);
                        Vec::new()
                    }
                    _ => run.tick(now),
                };
                assert!(
                    now <= max_ms + 60_000,
                    "{name} seed {seed}: still running at {now} ms"
                );
            }
        }
    }
}
