//! The control plane end to end, on loopback: `POST /v1/calls` places the call through a
//! local server speaking Plivo's REST API, Plivo's signed callbacks drive the lifecycle,
//! and every event reaches a real Redis (hash + stream) and an HTTP backend, in order,
//! each idempotency key once.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use common::{RawCall, TestServer};
use hmac::{KeyInit, Mac};
use redis::AsyncCommands;
use serde_json::{Value, json};
use voxgate::session::journal::Event;
use voxgate::sim::plivo_rest::{Completion, FakePlivo};

const API_TOKEN: &str = "api-token";
const AUTH_ID: &str = "MAZDQ1ZDU2NDE4MTNHMQ";
const AUTH_TOKEN: &str = "plivo-auth-token";
const SECRET: &str = "backend-secret";

/// An HTTP backend that checks the signature and records every update it accepts.
#[derive(Clone, Default)]
struct Backend {
    updates: Arc<Mutex<Vec<Value>>>,
    keys: Arc<Mutex<Vec<String>>>,
    bad_signatures: Arc<Mutex<usize>>,
}

async fn external_updates(
    State(backend): State<Backend>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(&body);
    let expected = format!("sha256={}", hex(&mac.finalize().into_bytes()));
    if headers
        .get("x-voxgate-signature")
        .and_then(|v| v.to_str().ok())
        != Some(expected.as_str())
    {
        *backend.bad_signatures.lock().unwrap() += 1;
        return StatusCode::UNAUTHORIZED;
    }
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let updates: Vec<Value> = serde_json::from_slice(&body).unwrap();
    backend.keys.lock().unwrap().push(key);
    backend.updates.lock().unwrap().extend(updates);
    StatusCode::OK
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Backend {
    async fn start() -> (Self, String) {
        let backend = Backend::default();
        let app = axum::Router::new()
            .route("/api/calls/external-updates", post(external_updates))
            .with_state(backend.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (backend, url)
    }

    fn events_of(&self, call_id: &str) -> Vec<String> {
        let updates = self.updates.lock().unwrap();
        updates
            .iter()
            .filter(|u| u["call_id"] == call_id)
            .map(|u| u["event"].as_str().unwrap_or_default().to_owned())
            .collect()
    }
}

struct Setup {
    /// Unique per run: Redis keeps idempotency markers and job hashes between runs.
    run: String,
    server: TestServer,
    fake: FakePlivo,
    backend: Backend,
    stream: String,
    _data: tempdir::Dir,
}

mod tempdir {
    /// A folder under the system temp dir, removed on drop.
    pub struct Dir(pub std::path::PathBuf);
    impl Dir {
        pub fn new() -> Self {
            let path = std::env::temp_dir().join(format!("voxgate-test-{}", uuid::Uuid::new_v4()));
            std::fs::create_dir_all(&path).unwrap();
            Self(path)
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

async fn setup() -> Setup {
    let fake = FakePlivo::start(AUTH_ID, AUTH_TOKEN).await.unwrap();
    let (backend, backend_url) = Backend::start().await;
    let data = tempdir::Dir::new();
    let stream = format!("voxgate:test:{}", uuid::Uuid::new_v4());
    let file = format!("[control]\nqueue_stream = \"{stream}\"\n");
    let api = fake.base_url();
    let data_dir = data.0.display().to_string();
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
    Setup {
        run: uuid::Uuid::new_v4().simple().to_string()[..8].to_owned(),
        server,
        fake,
        backend,
        stream,
        _data: data,
    }
}

async fn api(
    server: &TestServer,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .request(method, format!("{}{path}", server.base))
        .bearer_auth(API_TOKEN);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_placed_call_reaches_both_sinks_in_order_once() {
    let s = setup().await;
    let id = format!("call-{}", s.run);
    let job_key = format!("call_job:{id}");
    let (status, body) = api(
        &s.server,
        reqwest::Method::POST,
        "/v1/calls",
        Some(json!({"call_id": id, "to": "+14155550100", "from": "+14155550199", "campaign_id": "camp-7", "extra": 1})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["call_id"], id.as_str());
    assert_eq!(body["status"], "initiated");
    let uuid = body["plivo_request_uuid"].as_str().unwrap().to_owned();

    let placed = s.fake.call(&uuid).expect("Plivo got the call");
    assert!(
        placed
            .param("answer_url")
            .unwrap()
            .ends_with(&format!("/plivo/answer?call_id={id}"))
    );
    assert!(
        placed
            .param("hangup_url")
            .unwrap()
            .contains(&format!("call_id={id}"))
    );

    // Plivo's side of the call: ring, answer (fetches our answer URL), hang up after 30 s.
    s.fake.ring(&uuid).await.unwrap();
    let answer = s.fake.answer(&uuid).await.unwrap();
    assert!(answer.body.contains("<Stream"), "{}", answer.body);
    s.fake.complete(&uuid, Completion::normal(30)).unwrap();
    s.fake.hangup_callback(&uuid).await.unwrap();
    s.fake.hangup_callback(&uuid).await.unwrap(); // Plivo retries callbacks

    let expected = [
        "call.initiated",
        "call.ringing",
        "call.answered",
        "call.ended",
    ];
    wait_for("four events at the backend", || {
        s.backend.events_of(&id).len() >= 4
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(s.backend.events_of(&id), expected);
    let keys = s.backend.keys.lock().unwrap().clone();
    let mut unique = keys.clone();
    unique.dedup();
    assert_eq!(
        keys.len(),
        unique.len(),
        "each idempotency key once: {keys:?}"
    );
    assert_eq!(*s.backend.bad_signatures.lock().unwrap(), 0);
    let last = s.backend.updates.lock().unwrap().last().cloned().unwrap();
    assert_eq!(
        (last["status"].as_str(), last["call_outcome"].as_str()),
        (Some("completed"), Some("answered"))
    );
    assert_eq!(
        (last["duration"].as_u64(), last["campaign_id"].as_str()),
        (Some(30), Some("camp-7"))
    );

    // The queue: the job hash and one stream entry per event, in order.
    let client = redis::Client::open("redis://127.0.0.1:6379").unwrap();
    let mut redis = client.get_multiplexed_async_connection().await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let status: Option<String> = redis.hget(&job_key, "status").await.unwrap();
        if status.as_deref() == Some("completed") || tokio::time::Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let job: std::collections::HashMap<String, String> = redis.hgetall(&job_key).await.unwrap();
    assert_eq!(job.get("status").map(String::as_str), Some("completed"));
    assert_eq!(job.get("data_source").map(String::as_str), Some("voxgate"));
    assert_eq!(
        job.get("plivo_uuid").map(String::as_str),
        Some(uuid.as_str())
    );
    let entries: redis::streams::StreamRangeReply = redis.xrange_all(&s.stream).await.unwrap();
    let events: Vec<String> = entries
        .ids
        .iter()
        .filter_map(|e| e.get::<String>("event"))
        .collect();
    assert_eq!(events, expected);
    let _: () = redis
        .del(&[job_key.as_str(), s.stream.as_str()])
        .await
        .unwrap();

    // And the API shows the call as it ended.
    let (status, call) = api(
        &s.server,
        reqwest::Method::GET,
        &format!("/v1/calls/{id}"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        (call["status"].as_str(), call["duration"].as_u64()),
        (Some("completed"), Some(30))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_refuses_bad_requests_clearly_and_never_places_twice() {
    let s = setup().await;
    let (dup, refused) = (format!("dup-{}", s.run), format!("refused-{}", s.run));
    let post = |body: Value| api(&s.server, reqwest::Method::POST, "/v1/calls", Some(body));

    let (status, body) = post(json!({"to": "+14155550100"})).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "call_id_required");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("call_id is required")
    );
    let (status, _) = post(json!({"call_id": "  ", "to": "+14155550100"})).await;
    assert_eq!(status, 400);
    let (status, body) = post(json!({"call_id": "x1", "to": "not-a-number"})).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_number"))
    );
    let (status, body) =
        post(json!({"call_id": "x2", "to": "+14155550100", "agent": "nonsense"})).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("unknown_agent"))
    );
    assert_eq!(
        body["error"]["message"],
        r#"unknown agent "nonsense": the known agents are echo, flow, llm"#
    );
    assert!(s.fake.calls().is_empty(), "nothing was placed");

    let (status, _) =
        post(json!({"call_id": dup, "to": "+14155550100", "from": "+14155550199"})).await;
    assert_eq!(status, 201);
    let (status, body) =
        post(json!({"call_id": dup, "to": "+14155550111", "from": "+14155550199"})).await;
    assert_eq!(status, 409);
    assert_eq!(body["call"]["call_id"], dup.as_str());
    assert_eq!(s.fake.calls().len(), 1, "no second call was placed");

    let unauthorized = reqwest::Client::new()
        .post(format!("{}/v1/calls", s.server.base))
        .bearer_auth("wrong")
        .json(&json!({"call_id": "z", "to": "+14155550100"}))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthorized.status(), 401);
    // The scheme is case-insensitive; the token is not.
    for (scheme, token, status) in [
        ("bearer", API_TOKEN.to_owned(), 404),
        ("BEARER", API_TOKEN.to_owned(), 404),
        ("Basic", API_TOKEN.to_owned(), 401),
        ("Bearer", API_TOKEN.to_uppercase(), 401),
    ] {
        let response = reqwest::Client::new()
            .get(format!("{}/v1/calls/no-such-call", s.server.base))
            .header("authorization", format!("{scheme} {token}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), status, "{scheme} {token}");
    }
    let malformed = reqwest::Client::new()
        .post(format!("{}/v1/calls", s.server.base))
        .bearer_auth(API_TOKEN)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status(), 400);
    let wrong_type = reqwest::Client::new()
        .post(format!("{}/v1/calls", s.server.base))
        .bearer_auth(API_TOKEN)
        .body("call_id=x")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_type.status(), 415);

    // Plivo refuses (403, e.g. concurrency limit): a clear error, the call failed with the cause.
    s.fake.fail_next(1, 403);
    let (status, body) =
        post(json!({"call_id": refused, "to": "+14155550100", "from": "+14155550199"})).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (502, Some("plivo_forbidden"))
    );
    let (_, call) = api(
        &s.server,
        reqwest::Method::GET,
        &format!("/v1/calls/{refused}"),
        None,
    )
    .await;
    assert_eq!(call["status"], "failed");
    assert_eq!(call["hangup_cause"], "plivo_forbidden");
    let (status, _) = api(&s.server, reqwest::Method::GET, "/v1/calls/nope", None).await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_and_flow_of_a_placed_call_reach_its_media_session() {
    let s = setup().await;
    let id = format!("planned-{}", s.run);
    let (status, body) = api(
        &s.server,
        reqwest::Method::POST,
        "/v1/calls",
        Some(
            json!({"call_id": id, "to": "+14155550100", "from": "+14155550199",
            "agent": "echo", "flow_name": "intake-v2", "record": false}),
        ),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let uuid = body["plivo_request_uuid"].as_str().unwrap().to_owned();
    let answer = s.fake.answer(&uuid).await.unwrap();
    let mut call = RawCall::connect(&answer.body, &id, Some(AUTH_TOKEN)).await;
    call.start().await;

    let started = || {
        s.server
            .journal(&id)?
            .find(|e| matches!(e, Event::StreamStarted { .. }))
    };
    wait_for("the stream to start", || started().is_some()).await;
    let Event::StreamStarted {
        agent,
        flow_name,
        recorded,
        ..
    } = started().unwrap().event
    else {
        unreachable!()
    };
    assert_eq!(agent, "echo");
    assert_eq!(flow_name.as_deref(), Some("intake-v2"));
    assert!(!recorded, "the call opted out of recording");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_keeps_each_calls_own_id_end_to_end() {
    let s = setup().await;
    let ids: Vec<String> = (1..=3).map(|n| format!("camp-{}-{n}", s.run)).collect();
    let mut uuids = Vec::new();
    for id in &ids {
        let (status, body) = api(
            &s.server,
            reqwest::Method::POST,
            "/v1/calls",
            Some(json!({"call_id": id, "to": "+14155550100", "from": "+14155550199", "campaign_id": format!("camp-{}", s.run)})),
        )
        .await;
        assert_eq!(status, 201, "{body}");
        uuids.push(body["plivo_request_uuid"].as_str().unwrap().to_owned());
    }
    for uuid in &uuids {
        s.fake.answer(uuid).await.unwrap();
        s.fake.complete(uuid, Completion::normal(12)).unwrap();
        s.fake.hangup_callback(uuid).await.unwrap();
    }
    for (id, uuid) in ids.iter().zip(&uuids) {
        let placed = s.fake.call(uuid).unwrap();
        assert!(
            placed
                .param("answer_url")
                .unwrap()
                .ends_with(&format!("call_id={id}"))
        );
        wait_for("events", || {
            s.backend.events_of(id).contains(&"call.ended".to_owned())
        })
        .await;
    }
    let (status, page) = api(
        &s.server,
        reqwest::Method::GET,
        &format!("/v1/calls?campaign_id=camp-{}", s.run),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let listed: Vec<&str> = page["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["call_id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, ids);
    let client = redis::Client::open("redis://127.0.0.1:6379").unwrap();
    let mut redis = client.get_multiplexed_async_connection().await.unwrap();
    for id in &ids {
        let _: () = redis.del(format!("call_job:{id}")).await.unwrap();
    }
    let _: () = redis.del(&s.stream).await.unwrap();
}
