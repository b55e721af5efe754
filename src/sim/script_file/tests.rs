use super::*;

fn err(text: &str) -> String {
    parse_script(text).unwrap_err().to_string()
}

#[test]
fn every_step_kind_parses_with_its_defaults() {
    let steps = parse_script(
        r#"
        [[step]]
        wait_agent = true
        [[step]]
        dtmf = "1#"
        [[step]]
        say = "city.wav"
        [[step]]
        silence_ms = 250
        [[step]]
        wait_agent = true
        timeout_ms = 20000
        quiet_ms = 0
        [[step]]
        wait_hangup = true
        timeout_ms = 8000
        [[step]]
        hangup = true
        "#,
    )
    .unwrap();
    assert_eq!(
        steps,
        [
            ScriptStep::WaitAgent {
                timeout: Duration::from_millis(DEFAULT_TIMEOUT_MS),
                quiet: Duration::from_millis(DEFAULT_QUIET_MS),
            },
            ScriptStep::Dtmf("1#".into()),
            ScriptStep::Say("city.wav".into()),
            ScriptStep::Silence(Duration::from_millis(250)),
            ScriptStep::WaitAgent {
                timeout: Duration::from_secs(20),
                quiet: Duration::ZERO,
            },
            ScriptStep::WaitHangup {
                timeout: Duration::from_secs(8),
            },
            ScriptStep::Hangup,
        ]
    );
}

#[test]
fn mistakes_are_named_with_their_step() {
    assert!(err("[[step]]\nsay = \"a.wav\"\nvolume = 3\n").contains("unknown field `volume`"));
    assert!(err("[[stepz]]\nhangup = true\n").contains("unknown field `stepz`"));
    assert_eq!(
        err("[[step]]\nhangup = true\n[[step]]\nsay = \"a.wav\"\ndtmf = \"1\"\n"),
        "step 2: one action per step, not say and dtmf"
    );
    assert!(err("[[step]]\ntimeout_ms = 5\n").starts_with("step 1: give one of"));
    assert_eq!(
        err("[[step]]\ndtmf = \"1x\"\n"),
        "step 1: 'x' is not a DTMF key (0-9, *, #, A-D)"
    );
    assert_eq!(
        err("[[step]]\ndtmf = \"1\"\ntimeout_ms = 10\n"),
        "step 1: timeout_ms does not apply to dtmf"
    );
    assert_eq!(
        err("[[step]]\nwait_hangup = true\nquiet_ms = 10\n"),
        "step 1: quiet_ms does not apply to wait_hangup"
    );
    assert_eq!(
        err("[[step]]\nhangup = false\n"),
        "step 1: write hangup = true"
    );
    assert_eq!(
        err("[[step]]\nsilence_ms = 600001\n"),
        "step 1: silence_ms = 600001 is over 600000"
    );
    assert!(err("[[step]]\nsilence_ms = -1\n").starts_with("script: "));
    assert_eq!(err("step = []\n"), "the script has no [[step]]");
    assert!(err("not toml [").starts_with("script: "));
}

#[test]
fn a_script_is_bounded() {
    let many = "[[step]]\nhangup = true\n".repeat(MAX_STEPS + 1);
    assert_eq!(
        err(&many),
        format!(
            "the script has {} steps; at most {MAX_STEPS} are allowed",
            MAX_STEPS + 1
        )
    );
    let huge = format!("# {}\n", "x".repeat(MAX_SCRIPT_BYTES));
    assert!(err(&huge).contains("at most"));
}

#[test]
fn the_shipped_demo_script_loads_with_its_audio() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/sim/demo.toml");
    let steps = load_script(path).unwrap();
    let kinds: Vec<&str> = steps.iter().map(CallerStep::kind).collect();
    assert!(
        kinds.contains(&"audio") && kinds.contains(&"dtmf"),
        "{kinds:?}"
    );
    assert_eq!(kinds.first(), Some(&"wait_agent"));
    assert_eq!(kinds.last(), Some(&"wait_hangup"));
}

#[test]
fn a_missing_audio_file_names_the_step() {
    let dir = std::env::temp_dir().join(format!("voxgate-sim-script-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("s.toml");
    std::fs::write(
        &path,
        "[[step]]\nhangup = true\n[[step]]\nsay = \"nope.wav\"\n",
    )
    .unwrap();
    let e = load_script(&path).unwrap_err().to_string();
    assert!(e.starts_with("step 2: reading "), "{e}");
    assert!(e.contains("nope.wav"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}
