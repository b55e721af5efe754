//! The assembled configuration: every key through the file, the environment and the
//! flags, with the error names the sections give.

use std::time::Duration;

use super::*;
use crate::agent::AgentKind;
use crate::control::config::ReconcileConfig;
use crate::recording::config::{RecordingFormat, RecordingRate};
use crate::recording::target::UploadTarget;

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn defaults_listen_on_localhost_8080() {
    let config = Config::load(None, &env(&[]), CliOverrides::default()).unwrap();
    assert_eq!(config.listen, DEFAULT_LISTEN);
    assert_eq!(config.data_dir, PathBuf::from("./data"));
    assert!(config.public_url.is_none());
}

#[test]
fn port_means_every_interface_unless_listen_is_set() {
    let config = Config::load(None, &env(&[("PORT", "9000")]), CliOverrides::default()).unwrap();
    assert_eq!(config.listen, "0.0.0.0:9000".parse().unwrap());
    let both = env(&[("PORT", "9000"), ("VOXGATE_LISTEN", "127.0.0.1:7000")]);
    let config = Config::load(None, &both, CliOverrides::default()).unwrap();
    assert_eq!(config.listen, "127.0.0.1:7000".parse().unwrap());
    let file = Config::load(
        Some("listen = \"127.0.0.1:6000\""),
        &env(&[("PORT", "9000")]),
        CliOverrides::default(),
    );
    assert_eq!(file.unwrap().listen, "127.0.0.1:6000".parse().unwrap());
}

#[test]
fn cli_beats_environment_beats_file() {
    let file = "public_url = \"https://file.example\"\n[audio]\nworkers = 3\n";
    let vars = env(&[
        ("VOXGATE_PUBLIC_URL", "https://env.example/"),
        ("VOXGATE_AUDIO_WORKERS", "5"),
    ]);
    let config = Config::load(Some(file), &vars, CliOverrides::default()).unwrap();
    assert_eq!(config.public_url.as_deref(), Some("https://env.example"));
    assert_eq!(config.pipeline.workers, 5);
    let cli = CliOverrides {
        public_url: Some("https://cli.example".into()),
        ..CliOverrides::default()
    };
    let config = Config::load(Some(file), &vars, cli).unwrap();
    assert_eq!(config.public_url.as_deref(), Some("https://cli.example"));
}

#[test]
fn bad_values_fail_loudly_naming_the_key() {
    let cases = [
        ("listen = \"nowhere\"", "listen"),
        ("public_url = \"ftp://x\"", "public_url"),
        ("public_url = \"https://x/?a=b\"", "public_url"),
        (
            "[audio]\ninput_queue_frames = 0",
            "audio.input_queue_frames",
        ),
        ("[audio]\nvad_mode = 9", "audio.vad_mode"),
    ];
    for (file, key) in cases {
        let err = Config::load(Some(file), &env(&[]), CliOverrides::default()).unwrap_err();
        assert!(err.to_string().starts_with(key), "{file:?}: {err}");
    }
    let err = Config::load(Some("listn = \"x\""), &env(&[]), CliOverrides::default()).unwrap_err();
    assert!(err.to_string().contains("unknown field"), "{err}");
    let err = Config::load(None, &env(&[("PORT", "http")]), CliOverrides::default()).unwrap_err();
    assert!(err.to_string().starts_with("PORT"), "{err}");
}

#[test]
fn signatures_are_enforced_exactly_when_a_token_is_set() {
    let config = Config::load(None, &env(&[]), CliOverrides::default()).unwrap();
    assert!(!config.plivo.verify_signatures);
    let with_token = env(&[("PLIVO_AUTH_TOKEN", "tok-a, tok-b")]);
    let config = Config::load(None, &with_token, CliOverrides::default()).unwrap();
    assert!(config.plivo.verify_signatures);
    assert_eq!(config.plivo.auth_tokens, ["tok-a", "tok-b"]);
    assert!(!config.to_toml().contains("tok-a"), "tokens never printed");
    assert!(
        !format!("{config:?}").contains("tok-a"),
        "tokens never logged"
    );
    let cli = CliOverrides {
        no_verify_signatures: true,
        ..CliOverrides::default()
    };
    assert!(
        !Config::load(None, &with_token, cli)
            .unwrap()
            .plivo
            .verify_signatures
    );
    let err = Config::load(
        Some("[plivo]\nverify_signatures = true"),
        &env(&[]),
        CliOverrides::default(),
    );
    assert!(
        err.unwrap_err()
            .to_string()
            .starts_with("plivo.verify_signatures")
    );
}

#[test]
fn session_limits_have_defaults_and_bounds() {
    let config = Config::load(None, &env(&[]), CliOverrides::default()).unwrap();
    assert_eq!(config.session.playout_lead, Duration::from_millis(200));
    assert_eq!(config.session.max_calls, 200);
    let file = "[session]\nmax_calls = 3\nplayout_lead_ms = 120\nidle_timeout_secs = 5";
    let config = Config::load(Some(file), &env(&[]), CliOverrides::default()).unwrap();
    assert_eq!(config.session.max_calls, 3);
    assert_eq!(config.session.playout_lead, Duration::from_millis(120));
    assert_eq!(config.session.idle_timeout, Duration::from_secs(5));
    for bad in [
        "[session]\nmax_calls = 0",
        "[session]\nplayout_lead_ms = 0",
        "[session]\nplayout_lead_ms = 99999",
    ] {
        assert!(
            Config::load(Some(bad), &env(&[]), CliOverrides::default()).is_err(),
            "{bad}"
        );
    }
}

#[test]
fn sockets_without_start_are_bounded_by_file_or_environment() {
    let config = Config::load(None, &env(&[]), CliOverrides::default()).unwrap();
    assert_eq!(config.session.start_timeout, Duration::from_secs(5));
    assert_eq!(config.session.max_pending_sockets, 100);
    let file = "[session]\nstart_timeout_ms = 2500\nmax_pending_sockets = 7";
    let config = Config::load(Some(file), &env(&[]), CliOverrides::default()).unwrap();
    assert_eq!(config.session.start_timeout, Duration::from_millis(2_500));
    assert_eq!(config.session.max_pending_sockets, 7);
    let vars = env(&[
        ("VOXGATE_START_TIMEOUT_MS", "300"),
        ("VOXGATE_MAX_PENDING_SOCKETS", "12"),
        ("VOXGATE_WRITE_TIMEOUT_MS", "1500"),
        ("VOXGATE_CHECKPOINT_TIMEOUT_MS", "400"),
    ]);
    let config = Config::load(Some(file), &vars, CliOverrides::default()).unwrap();
    assert_eq!(config.session.start_timeout, Duration::from_millis(300));
    assert_eq!(config.session.max_pending_sockets, 12);
    assert_eq!(config.session.write_timeout, Duration::from_millis(1_500));
    assert_eq!(
        config.session.checkpoint_timeout,
        Duration::from_millis(400)
    );
    for bad in [
        "[session]\nstart_timeout_ms = 0",
        "[session]\nstart_timeout_ms = 600001",
        "[session]\nmax_pending_sockets = 0",
    ] {
        assert!(
            Config::load(Some(bad), &env(&[]), CliOverrides::default()).is_err(),
            "{bad}"
        );
    }
}

#[test]
fn control_settings_have_defaults_and_are_checked() {
    let config = Config::load(None, &env(&[]), CliOverrides::default()).unwrap();
    assert_eq!(config.control.min_answered_secs, 5);
    assert_eq!(config.control.reconcile, ReconcileConfig::default());
    assert!(config.control.redis_url.is_none() && config.control.backend_url.is_none());
    let vars = env(&[
        ("VOXGATE_API_TOKENS", "t1,t2"),
        ("VOXGATE_BACKEND_URL", "http://127.0.0.1:9000/"),
        ("VOXGATE_BACKEND_SECRET", "s3cret"),
        ("VOXGATE_REDIS_URL", "redis://127.0.0.1:6379"),
    ]);
    let config = Config::load(None, &vars, CliOverrides::default()).unwrap();
    assert_eq!(config.control.api_tokens, ["t1", "t2"]);
    assert_eq!(
        config.control.backend_url.as_deref(),
        Some("http://127.0.0.1:9000")
    );
    let shown = format!("{}{:?}", config.to_toml(), config);
    assert!(
        !shown.contains("s3cret") && !shown.contains("t1"),
        "secrets never shown: {shown}"
    );
    for (file, key) in [
        (
            "[control]\nbackend_url = \"http://x\"",
            "control.backend_secret",
        ),
        ("[control]\nredis_url = \"http://x\"", "control.redis_url"),
        ("[control]\ncaller_id = \"abc\"", "control.caller_id"),
        (
            "[control]\nreconcile_interval_secs = 0",
            "control.reconcile_interval_secs",
        ),
    ] {
        let err = Config::load(Some(file), &env(&[]), CliOverrides::default()).unwrap_err();
        assert!(err.to_string().starts_with(key), "{file}: {err}");
    }
}

#[test]
fn recording_settings_have_defaults_and_are_checked() {
    let config = Config::load(None, &env(&[]), CliOverrides::default()).unwrap();
    let r = &config.recording;
    assert!(r.enabled);
    assert_eq!(r.dir, PathBuf::from("./data").join("recordings"));
    assert_eq!(r.sample_rate, RecordingRate::Hz8000);
    assert_eq!(r.format, RecordingFormat::Wav);
    assert_eq!(
        (r.upload_url.clone(), r.keep_local_days, r.upload_retries),
        (None, None, 5)
    );

    let vars = env(&[
        ("VOXGATE_DATA_DIR", "/srv/vox"),
        ("VOXGATE_RECORDING_ENABLED", "false"),
        ("VOXGATE_RECORDING_SAMPLE_RATE", "16000"),
        ("VOXGATE_RECORDING_FORMAT", "opus"),
        (
            "VOXGATE_RECORDING_UPLOAD_URL",
            "s3://calls-bucket/rec/2024/",
        ),
        ("VOXGATE_RECORDING_KEEP_LOCAL_DAYS", "7"),
        ("VOXGATE_RECORDING_UPLOAD_RETRIES", "2"),
        (
            "VOXGATE_RECORDING_PUBLIC_BASE_URL",
            "https://cdn.example/rec",
        ),
    ]);
    let config = Config::load(None, &vars, CliOverrides::default()).unwrap();
    let r = &config.recording;
    assert!(!r.enabled);
    assert_eq!(r.dir, PathBuf::from("/srv/vox/recordings"));
    assert_eq!(r.sample_rate.hz(), 16_000);
    assert_eq!(r.format, RecordingFormat::Opus);
    assert_eq!(
        r.upload_url,
        Some(UploadTarget::S3 {
            bucket: "calls-bucket".into(),
            prefix: "rec/2024".into()
        })
    );
    assert_eq!((r.keep_local_days, r.upload_retries), (Some(7), 2));
    assert_eq!(
        r.public_base_url.as_deref(),
        Some("https://cdn.example/rec")
    );

    let file = "[recording]\ndir = \"/var/rec\"\nupload_url = \"file:///mnt/rec\"\n";
    let config = Config::load(Some(file), &env(&[]), CliOverrides::default()).unwrap();
    assert_eq!(config.recording.dir, PathBuf::from("/var/rec"));
    assert_eq!(
        config.recording.upload_url,
        Some(UploadTarget::File {
            dir: "/mnt/rec".into()
        })
    );

    for (file, key) in [
        (
            "[recording]\nsample_rate = 44100\n",
            "recording.sample_rate",
        ),
        ("[recording]\nformat = \"mp3\"\n", "recording.format"),
        (
            "[recording]\nupload_url = \"http://x/y\"\n",
            "recording.upload_url",
        ),
        (
            "[recording]\nupload_url = \"ftp://x\"\n",
            "recording.upload_url",
        ),
        (
            "[recording]\nupload_url = \"file://rel/path\"\n",
            "recording.upload_url",
        ),
        (
            "[recording]\nupload_url = \"s3://\"\n",
            "recording.upload_url",
        ),
        (
            "[recording]\nupload_url = \"s3://Bad_Bucket!\"\n",
            "recording.upload_url",
        ),
        (
            "[recording]\nupload_retries = 1000\n",
            "recording.upload_retries",
        ),
        (
            "[recording]\npublic_base_url = \"cdn.example\"\n",
            "recording.public_base_url",
        ),
        (
            "[recording]\nkeep_local_days = 0\n",
            "recording.keep_local_days",
        ),
    ] {
        match Config::load(Some(file), &env(&[]), CliOverrides::default()) {
            Err(ConfigError::Invalid { key: k, .. }) => assert_eq!(k, key, "{file}"),
            other => panic!("{file}: expected an error naming {key}, got {other:?}"),
        }
    }
    let ftp = Config::load(
        Some("[recording]\nupload_url = \"ftp://x\"\n"),
        &env(&[]),
        CliOverrides::default(),
    );
    assert!(
        ftp.unwrap_err()
            .to_string()
            .contains("file://, s3:// or gs://"),
        "the accepted schemes are named"
    );
    let bad = env(&[("VOXGATE_RECORDING_ENABLED", "maybe")]);
    assert!(Config::load(None, &bad, CliOverrides::default()).is_err());
    assert!(
        Config::load(
            Some("[recording]\nbogus = 1\n"),
            &env(&[]),
            CliOverrides::default()
        )
        .is_err(),
        "unknown keys are refused"
    );
}

#[test]
fn every_shipped_example_parses_and_round_trips() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/config");
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let config = Config::load(Some(&text), &env(&[]), CliOverrides::default())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let again =
            Config::load(Some(&config.to_toml()), &env(&[]), CliOverrides::default()).unwrap();
        assert_eq!(again.to_toml(), config.to_toml());
        seen += 1;
    }
    assert!(seen >= 1);
}

#[test]
fn the_default_agent_runs_flows_and_echo_can_be_named() {
    let config = Config::load(None, &env(&[]), CliOverrides::default()).unwrap();
    assert_eq!(config.agent.default, AgentKind::Flow);
    assert!(config.to_toml().contains("[agent]\ndefault = \"flow\""));
    let from_file = Config::load(
        Some("[agent]\ndefault = \"echo\"\n"),
        &env(&[]),
        CliOverrides::default(),
    );
    assert_eq!(from_file.unwrap().agent.default, AgentKind::Echo);
    let from_env = Config::load(
        Some("[agent]\ndefault = \"parrot\"\n"),
        &env(&[("VOXGATE_AGENT", "echo")]),
        CliOverrides::default(),
    );
    assert_eq!(
        from_env.unwrap().agent.default,
        AgentKind::Echo,
        "the environment beats the file"
    );
}

#[test]
fn an_unknown_agent_fails_naming_the_key_and_the_known_agents() {
    let cases = [
        (Some("[agent]\ndefault = \"parrot\"\n"), env(&[])),
        (None, env(&[("VOXGATE_AGENT", "parrot")])),
    ];
    for (file, vars) in cases {
        match Config::load(file, &vars, CliOverrides::default()) {
            Err(ConfigError::Invalid { key, reason }) => {
                assert_eq!(key, "agent.default");
                assert!(
                    reason.contains("parrot") && reason.contains("known: echo"),
                    "{reason}"
                );
            }
            other => panic!("{file:?}: expected an error naming agent.default, got {other:?}"),
        }
    }
    let err = Config::load(
        Some("[agent]\nname = \"echo\"\n"),
        &env(&[]),
        CliOverrides::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("unknown field"), "{err}");
}

#[test]
fn espeak_settings_come_from_file_or_environment_and_are_checked() {
    let config = Config::load(None, &env(&[]), CliOverrides::default()).unwrap();
    assert_eq!(
        (
            config.espeak.voice.as_str(),
            config.espeak.rate_wpm,
            config.espeak.pitch
        ),
        ("en-us", 175, 50)
    );
    let config = Config::load(
        Some("[espeak]\nvoice = \"en-gb\"\nrate_wpm = 200\ncache_bytes = 0\n"),
        &env(&[
            ("VOXGATE_ESPEAK_VOICE", "en-us+f3"),
            ("VOXGATE_ESPEAK_PITCH", "60"),
        ]),
        CliOverrides::default(),
    )
    .unwrap();
    assert_eq!(
        (
            config.espeak.voice.as_str(),
            config.espeak.rate_wpm,
            config.espeak.pitch,
            config.espeak.cache_bytes
        ),
        ("en-us+f3", 200, 60, 0),
        "the environment beats the file, which beats the defaults"
    );
    for (file, vars, key) in [
        ("[espeak]\nrate_wpm = 20\n", vec![], "espeak.rate_wpm"),
        ("", vec![("VOXGATE_ESPEAK_RATE", "9000")], "espeak.rate_wpm"),
        ("", vec![("VOXGATE_ESPEAK_PITCH", "101")], "espeak.pitch"),
        (
            "",
            vec![("VOXGATE_ESPEAK_PITCH", "loud")],
            "VOXGATE_ESPEAK_PITCH",
        ),
        ("", vec![("VOXGATE_ESPEAK_VOICE", "../en")], "espeak.voice"),
        ("[espeak]\nqueue = 0\n", vec![], "espeak.queue"),
    ] {
        match Config::load(Some(file), &env(&vars), CliOverrides::default()) {
            Err(ConfigError::Invalid { key: k, .. }) => assert_eq!(k, key, "{file:?} {vars:?}"),
            other => panic!("{file:?} {vars:?}: expected an error naming {key}, got {other:?}"),
        }
    }
    assert!(
        Config::load(
            Some("[espeak]\nspeed = 3\n"),
            &env(&[]),
            CliOverrides::default()
        )
        .is_err(),
        "unknown keys are refused"
    );
}

#[test]
fn pocketsphinx_is_on_by_default_and_set_from_file_and_environment() {
    let config = Config::load(None, &env(&[]), CliOverrides::default()).unwrap();
    assert!(config.pocketsphinx.enabled);
    assert_eq!(config.pocketsphinx.max_streams, 32);
    assert!(config.to_toml().contains("[pocketsphinx]"));
    let config = Config::load(
        Some("[pocketsphinx]\nworkers = 2\nmax_streams = 8\nmodel_dir = \"/m\"\n"),
        &env(&[
            ("VOXGATE_POCKETSPHINX_MAX_STREAMS", "6"),
            ("VOXGATE_POCKETSPHINX_ENABLED", "off"),
        ]),
        CliOverrides::default(),
    )
    .unwrap();
    let p = &config.pocketsphinx;
    assert_eq!((p.enabled, p.workers, p.max_streams), (false, 2, 6));
    assert_eq!(p.model_dir, PathBuf::from("/m"));
    let err = Config::load(
        None,
        &env(&[("VOXGATE_POCKETSPHINX_WORKERS", "0")]),
        CliOverrides::default(),
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("VOXGATE_POCKETSPHINX_WORKERS")
            || err.to_string().contains("pocketsphinx.workers"),
        "{err}"
    );
    assert!(
        Config::load(
            Some("[pocketsphinx]\nthreads = 2\n"),
            &env(&[]),
            CliOverrides::default()
        )
        .is_err(),
        "unknown keys are refused"
    );
}
