//! Untrusted text cannot forge, recolour or reverse a log line: CR/LF, ANSI escapes and
//! U+202E sent through every input that reaches the log (the answer URL's `call_id`,
//! `From`, `To`, DTMF digits, stream ids, callback fields) come out escaped, one event
//! per line, from the real binary's log.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{RawCall, scratch_dir};

const FORGED: &str = "\r\n2026-01-01T00:00:00.000000Z  INFO voxgate: forged";
const ANSI: &str = "\u{1b}[2J\u{1b}[31m";
const BIDI: &str = "\u{202e}";

struct Served {
    child: Child,
    base: String,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_text_cannot_start_recolour_or_reverse_a_log_line() {
    let dir = scratch_dir("log-forging");
    let log_path = dir.join("voxgate.log");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let served = Served {
        child: Command::new(env!("CARGO_BIN_EXE_voxgate"))
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .arg("--data-dir")
            .arg(&dir)
            .arg("--no-verify-signatures")
            .env_remove("PLIVO_AUTH_TOKEN")
            .env("RUST_LOG", "debug")
            .env("NO_COLOR", "1")
            .stdout(std::fs::File::create(&log_path).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
        base: format!("http://127.0.0.1:{port}"),
    };
    let client = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while client
        .get(format!("{}/health", served.base))
        .send()
        .await
        .is_err()
    {
        assert!(tokio::time::Instant::now() < deadline, "server started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The answer URL: a forged call_id is refused; From and To reach the log.
    let encoded: String = form_urlencoded::byte_serialize(FORGED.as_bytes()).collect();
    let bad_id = client
        .post(format!("{}/plivo/answer?call_id=x{encoded}", served.base))
        .form(&[("CallUUID", "log-uuid")])
        .send()
        .await
        .unwrap();
    assert_eq!(bad_id.status(), 400, "a call_id with CR/LF is refused");
    let from = format!("+15550001{FORGED}");
    let to = format!("{ANSI}+15550002{BIDI}");
    let answer = client
        .post(format!("{}/plivo/answer", served.base))
        .form(&[
            ("CallUUID", "log-call"),
            ("From", from.as_str()),
            ("To", to.as_str()),
        ])
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();

    // The media socket: a forged stream id and forged DTMF digits.
    let mut call = RawCall::connect(&answer, "log-call", None).await;
    call.stream_id = format!("stream{FORGED}{ANSI}{BIDI}");
    let start = serde_json::json!({
        "event": "start",
        "start": {
            "callId": "log-call",
            "streamId": call.stream_id,
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000},
        },
    });
    call.text(start.to_string()).await;
    call.media(1, &[0xFF; 160]).await;
    for digit in [format!("1{FORGED}"), ANSI.to_string(), BIDI.to_string()] {
        let dtmf = serde_json::json!({
            "event": "dtmf", "streamId": call.stream_id, "dtmf": {"digit": digit},
        });
        call.text(dtmf.to_string()).await;
    }
    let unknown = serde_json::json!({"event": format!("mute{FORGED}{ANSI}{BIDI}")});
    call.text(unknown.to_string()).await;

    // A callback whose fields are forged.
    let cause = format!("NORMAL_CLEARING{FORGED}{ANSI}{BIDI}");
    let hangup = client
        .post(format!("{}/plivo/hangup", served.base))
        .form(&[
            ("CallUUID", "log-call"),
            ("HangupCauseName", cause.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(hangup.status(), 200);
    let status = client
        .post(format!("{}/plivo/stream-status", served.base))
        .form(&[
            ("CallUUID", "log-call"),
            ("Event", "DroppedStream"),
            ("StreamID", cause.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(status.status(), 200);
    tokio::time::sleep(Duration::from_millis(500)).await;
    drop(call);
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(served);

    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        log.contains("forged"),
        "the forged text reached the log (escaped): {log}"
    );
    // The configuration banner comes first (printed before logging starts); after it,
    // every line is one event.
    let events = log
        .lines()
        .skip_while(|line| !line.starts_with("20"))
        .collect::<Vec<_>>();
    assert!(events.len() > 5, "the server logged: {log}");
    for line in events {
        assert!(
            line.starts_with("20") && line.as_bytes().get(4) == Some(&b'-'),
            "every line is a real event's, starting with its timestamp: {line:?}"
        );
        assert!(!line.contains('\u{1b}'), "no raw ANSI escape: {line:?}");
        assert!(!line.contains(BIDI), "no raw bidi override: {line:?}");
        assert!(!line.contains('\r'), "no raw carriage return: {line:?}");
    }
    let forged_lines = log
        .lines()
        .filter(|line| line.contains("INFO voxgate: forged") && !line.contains("\\n"))
        .count();
    assert_eq!(forged_lines, 0, "no line is the forged one");
    let _ = std::fs::remove_dir_all(&dir);
}
