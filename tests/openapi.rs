//! The control API against its own OpenAPI document: a server with the control plane
//! (FakePlivo as Plivo, a backend that rejects every event so dead letters exist) is
//! fuzzed by schemathesis from `GET /openapi.json`. Every response must be documented and
//! match its schema, and none may be a 5xx.
//!
//! Needs schemathesis (`python3 -m pip install schemathesis`; `scripts/test.sh` installs it).

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::routing::post;
use common::TestServer;
use serde_json::{Value, json};
use voxgate::sim::plivo_rest::FakePlivo;

const API_TOKEN: &str = "api-token";
const AUTH_ID: &str = "MAZDQ1ZDU2NDE4MTNHMQ";
const AUTH_TOKEN: &str = "plivo-auth-token";
/// Hard limit on the whole schemathesis run; it is killed past this.
const RUN_LIMIT: Duration = Duration::from_secs(300);

/// The first schemathesis command that answers `--version`.
async fn schemathesis() -> Vec<String> {
    let candidates: [&[&str]; 3] = [
        &["python3", "-m", "schemathesis.cli"],
        &["schemathesis"],
        &["st"],
    ];
    for candidate in candidates {
        let ok = tokio::process::Command::new(candidate[0])
            .args(&candidate[1..])
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await
            .is_ok_and(|s| s.success());
        if ok {
            return candidate.iter().map(|s| s.to_string()).collect();
        }
    }
    panic!(
        "schemathesis is not installed (tried `python3 -m schemathesis.cli`, `schemathesis`, `st`): \
         install it with `python3 -m pip install schemathesis` (scripts/test.sh does)"
    );
}

/// A backend that rejects every event: each one becomes a dead letter at once.
async fn rejecting_backend() -> String {
    let app = axum::Router::new().route(
        "/api/calls/external-updates",
        post(|| async { (StatusCode::BAD_REQUEST, "rejected by the test backend") }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_error_and_no_schema_mismatch() {
    let command = schemathesis().await;
    let fake = FakePlivo::start(AUTH_ID, AUTH_TOKEN).await.unwrap();
    let backend = rejecting_backend().await;
    let data = std::env::temp_dir().join(format!("voxgate-openapi-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&data).unwrap();
    let api = fake.base_url();
    let data_dir = data.display().to_string();
    let server = TestServer::start_with_control(
        None,
        &[
            ("VOXGATE_API_TOKENS", API_TOKEN),
            ("PLIVO_AUTH_ID", AUTH_ID),
            ("PLIVO_AUTH_TOKEN", AUTH_TOKEN),
            ("VOXGATE_PLIVO_API_URL", &api),
            ("VOXGATE_BACKEND_URL", &backend),
            ("VOXGATE_BACKEND_SECRET", "backend-secret"),
            ("VOXGATE_DATA_DIR", &data_dir),
        ],
    )
    .await;
    let http = reqwest::Client::new();

    // The document needs no token.
    let doc = http
        .get(format!("{}/openapi.json", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(doc.status(), 200);
    let doc: Value = doc.json().await.unwrap();
    assert!(doc["paths"]["/v1/calls"]["post"].is_object());

    // One placed call, so listings and dead letters have content to check against the schemas.
    let placed = http
        .post(format!("{}/v1/calls", server.base))
        .bearer_auth(API_TOKEN)
        .json(
            &json!({"call_id": "openapi-seed", "to": "+14155550100", "from": "+14155550199",
                      "metadata": {"source": "openapi test"}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(placed.status(), 201, "{}", placed.text().await.unwrap());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let dead: Value = http
            .get(format!("{}/v1/deliveries/dead", server.base))
            .bearer_auth(API_TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if !dead["dead"].as_array().unwrap().is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "no dead letter appeared: {dead}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Fixed seed: the same cases every run (VOXGATE_SCHEMATHESIS_SEED explores others).
    let seed = std::env::var("VOXGATE_SCHEMATHESIS_SEED").unwrap_or_else(|_| "1".into());
    let started = Instant::now();
    let mut run = tokio::process::Command::new(&command[0]);
    run.args(&command[1..])
        .arg("run")
        .arg(format!("{}/openapi.json", server.base))
        .args(["--header", &format!("Authorization: Bearer {API_TOKEN}")])
        .args(["--checks", "not_a_server_error,response_schema_conformance"])
        .args(["--max-examples", "30"])
        .args(["--seed", &seed])
        .args(["--workers", "1"])
        .args(["--request-timeout", "10"])
        // Its example database and reports stay out of the repository.
        .current_dir(&data)
        .env("NO_COLOR", "1")
        .env("SCHEMATHESIS_TELEMETRY", "false")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let output = tokio::time::timeout(RUN_LIMIT, run.output())
        .await
        .unwrap_or_else(|_| panic!("schemathesis ran past {RUN_LIMIT:?} and was killed"))
        .expect("schemathesis runs");
    let elapsed = started.elapsed();
    println!("{}", String::from_utf8_lossy(&output.stdout));
    eprintln!("{}", String::from_utf8_lossy(&output.stderr));
    println!("schemathesis took {elapsed:.1?}");

    server.shutdown.cancel();
    let _ = std::fs::remove_dir_all(&data);
    assert!(
        output.status.success(),
        "schemathesis failed ({}): see its output above",
        output.status
    );
}
