//! Reconcile end to end: a call whose hangup callback never arrives still reaches its
//! terminal state from Plivo's REST API (the CDR), and `call.ended` reaches the backend
//! once. Real server, a local server speaking Plivo's REST API, an HTTP backend, Redis.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::StatusCode;
use axum::routing::post;
use common::TestServer;
use redis::AsyncCommands;
use serde_json::{Value, json};
use voxgate::sim::plivo_rest::{Completion, FakePlivo};

const API_TOKEN: &str = "api-token";
const AUTH_ID: &str = "MAZDQ1ZDU2NDE4MTNHMQ";
const AUTH_TOKEN: &str = "plivo-auth-token";
const SECRET: &str = "backend-secret";

/// An HTTP backend that records every update (signatures are tests/control.rs's job).
async fn backend() -> (Arc<Mutex<Vec<Value>>>, String) {
    let updates: Arc<Mutex<Vec<Value>>> = Arc::default();
    let recorded = Arc::clone(&updates);
    let app = axum::Router::new().route(
        "/api/calls/external-updates",
        post(move |body: Bytes| {
            let recorded = Arc::clone(&recorded);
            async move {
                let batch: Vec<Value> = serde_json::from_slice(&body).unwrap();
                recorded.lock().unwrap().extend(batch);
                StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (updates, url)
}

fn events_of(updates: &Mutex<Vec<Value>>, call_id: &str) -> Vec<String> {
    updates
        .lock()
        .unwrap()
        .iter()
        .filter(|u| u["call_id"] == call_id)
        .map(|u| u["event"].as_str().unwrap_or_default().to_owned())
        .collect()
}

async fn get_call(server: &TestServer, call_id: &str) -> Value {
    common::api_get(&format!("{}/v1/calls/{call_id}", server.base), API_TOKEN).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_whose_hangup_callback_never_comes_is_ended_from_the_cdr() {
    let fake = FakePlivo::start(AUTH_ID, AUTH_TOKEN).await.unwrap();
    let (updates, backend_url) = backend().await;
    let data = std::env::temp_dir().join(format!("voxgate-test-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&data).unwrap();
    let stream = format!("voxgate:test:{}", uuid::Uuid::new_v4());
    let file = format!(
        "[control]\nqueue_stream = \"{stream}\"\nreconcile_initial_delay_secs = 1\nreconcile_interval_secs = 1\n"
    );
    let api = fake.base_url();
    let data_dir = data.display().to_string();
    let server = TestServer::start_with_control(
        Some(&file),
        &[
            ("VOXGATE_API_TOKENS", API_TOKEN),
            ("PLIVO_AUTH_ID", AUTH_ID),
            ("PLIVO_AUTH_TOKEN", AUTH_TOKEN),
            ("VOXGATE_PLIVO_API_URL", &api),
            ("VOXGATE_BACKEND_URL", &backend_url),
            ("VOXGATE_BACKEND_SECRET", SECRET),
            ("VOXGATE_REDIS_URL", "redis://127.0.0.1:6379"),
            ("VOXGATE_DATA_DIR", &data_dir),
        ],
    )
    .await;
    let id = format!("rec-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);

    let response = reqwest::Client::new()
        .post(format!("{}/v1/calls", server.base))
        .bearer_auth(API_TOKEN)
        .json(&json!({"call_id": id, "to": "+14155550100", "from": "+14155550199"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 201);
    let body: Value = response.json().await.unwrap();
    let uuid = body["plivo_request_uuid"].as_str().unwrap().to_owned();

    // Plivo rings and answers; the call ends after 42 s but the hangup callback is lost.
    fake.ring(&uuid).await.unwrap();
    fake.answer(&uuid).await.unwrap();
    fake.complete(&uuid, Completion::normal(42)).unwrap();

    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let call = loop {
        let call = get_call(&server, &id).await;
        if call["status"] == "completed" {
            break call;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not reconciled: {call}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(call["duration"].as_u64(), Some(42));
    assert_eq!(call["hangup_cause"], "Normal Hangup");

    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !events_of(&updates, &id).contains(&"call.ended".to_owned()) {
        assert!(tokio::time::Instant::now() < deadline, "no call.ended");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // More reconcile rounds pass: the ended call is not asked about or reported again.
    let cdr_path = format!("/Call/{uuid}/");
    let asked = || {
        fake.requests()
            .iter()
            .filter(|r| r.method == "GET" && r.path.ends_with(&cdr_path))
            .count()
    };
    let before = asked();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(asked(), before, "a terminal call is never asked about");
    let events = events_of(&updates, &id);
    assert_eq!(
        events.iter().filter(|e| *e == "call.ended").count(),
        1,
        "{events:?}"
    );
    let last = updates
        .lock()
        .unwrap()
        .iter()
        .rfind(|u| u["call_id"] == id.as_str() && u["event"] == "call.ended")
        .cloned()
        .unwrap();
    assert_eq!(last["duration"].as_u64(), Some(42));
    assert!(
        server
            .metric(r#"voxgate_reconcile_checks_total{outcome="ended"}"#)
            .await
            >= 1.0
    );

    let client = redis::Client::open("redis://127.0.0.1:6379").unwrap();
    let mut redis = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis
        .del(&[format!("call_job:{id}"), stream])
        .await
        .unwrap();
    server.shutdown.cancel();
    let _ = std::fs::remove_dir_all(&data);
}
