use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode as AxumStatus};
use axum::response::{IntoResponse, Response};
use axum::routing::post;

use super::*;
use crate::control::model::CallState;
use crate::control::sinks::test_support::{entry, unique_call_id};

const SECRET: &[u8] = b"backend-shared-secret";
const TIMEOUT: Duration = Duration::from_millis(300);

/// What the test backend saw in one request.
#[derive(Debug, Clone)]
struct Received {
    body: serde_json::Value,
    idempotency_key: String,
    content_type: String,
    signature_ok: bool,
}

type Reply = Arc<dyn Fn(usize) -> futures_util::future::BoxFuture<'static, Response> + Send + Sync>;

#[derive(Clone)]
struct Backend {
    received: Arc<Mutex<Vec<Received>>>,
    reply: Reply,
}

async fn updates(State(backend): State<Backend>, headers: HeaderMap, body: Bytes) -> Response {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let mut mac = HmacSha256::new_from_slice(SECRET).unwrap();
    mac.update(&body);
    let expected: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let signature_ok = header(SIGNATURE_HEADER) == format!("sha256={expected}");
    let count = {
        let mut received = backend.received.lock().unwrap();
        received.push(Received {
            body: serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
            idempotency_key: header(IDEMPOTENCY_HEADER),
            content_type: header("content-type"),
            signature_ok,
        });
        received.len()
    };
    if !signature_ok {
        return (AxumStatus::UNAUTHORIZED, "bad signature").into_response();
    }
    (backend.reply)(count).await
}

/// Starts a backend on 127.0.0.1:0 answering the n-th request (from 1) with `reply(n)`.
async fn start<F, Fut>(reply: F) -> (String, Arc<Mutex<Vec<Received>>>)
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Response> + Send + 'static,
{
    let received = Arc::new(Mutex::new(Vec::new()));
    let backend = Backend {
        received: Arc::clone(&received),
        reply: Arc::new(move |n| Box::pin(reply(n))),
    };
    let app = Router::new()
        .route(UPDATES_PATH, post(updates))
        .with_state(backend);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, received)
}

fn sink(url: &str) -> BackendSink {
    BackendSink::new(url, SECRET, TIMEOUT).unwrap()
}

#[tokio::test]
async fn posts_signed_single_event_arrays_with_the_event_id_as_idempotency_key() {
    let (url, received) = start(|_| async { AxumStatus::NO_CONTENT.into_response() }).await;
    let (a, b) = (unique_call_id("backend-a"), unique_call_id("backend-b"));
    let entries = [
        entry(SinkKind::Backend, 1, &a, 4, CallState::Completed),
        entry(SinkKind::Backend, 2, &b, 1, CallState::Initiated),
    ];
    let outcomes = sink(&url).deliver(&entries).await;
    assert_eq!(outcomes, vec![Delivery::Delivered, Delivery::Delivered]);

    let received = received.lock().unwrap().clone();
    assert_eq!(received.len(), 2, "one request per event");
    let first = received
        .iter()
        .find(|r| r.idempotency_key == format!("{a}:4"))
        .expect("the event id is the idempotency key");
    assert!(received.iter().all(|r| r.signature_ok));
    assert!(
        received
            .iter()
            .all(|r| r.content_type == "application/json")
    );
    let updates = first.body.as_array().expect("a JSON array");
    assert_eq!(updates.len(), 1);
    let update = &updates[0];
    assert_eq!(update["call_id"], a.as_str());
    assert_eq!(update["campaign_id"], "spring");
    assert_eq!(update["status"], "completed");
    assert_eq!(update["call_outcome"], "answered");
    assert_eq!(update["duration"], 42);
    assert_eq!(update["hangup_cause"], "NORMAL_CLEARING");
    assert_eq!(
        update["recording_url"],
        format!("https://rec.example/{a}.wav")
    );
    assert_eq!(update["transcript"], "agent: hello\ncaller: hi");
    assert_eq!(update["event"], "call.ended");
    assert_eq!(update["event_id"], format!("{a}:4"));
    assert_eq!(update["seq"], 4);
    assert_eq!(update["metadata"]["lead"], 42);
    assert!(update["occurred_at"].as_str().unwrap().ends_with('Z'));
    let second = received
        .iter()
        .find(|r| r.idempotency_key == format!("{b}:1"))
        .unwrap();
    assert_eq!(second.body[0]["call_outcome"], serde_json::Value::Null);
    assert_eq!(second.body[0]["status"], "initiated");
}

#[tokio::test]
async fn a_4xx_is_rejected_with_status_and_body() {
    let (url, _) = start(|_| async {
        (
            AxumStatus::BAD_REQUEST,
            "unknown call_id; we never heard of it",
        )
            .into_response()
    })
    .await;
    let call = unique_call_id("backend-400");
    let outcomes = sink(&url)
        .deliver(&[entry(SinkKind::Backend, 1, &call, 1, CallState::Initiated)])
        .await;
    let [Delivery::Reject { reason }] = outcomes.as_slice() else {
        panic!("{outcomes:?}");
    };
    assert!(reason.contains("400"), "{reason}");
    assert!(reason.contains("unknown call_id"), "{reason}");
}

#[tokio::test]
async fn a_429_is_retried_after_its_retry_after() {
    let (url, _) = start(|_| async {
        (
            AxumStatus::TOO_MANY_REQUESTS,
            [("retry-after", "7")],
            "slow down",
        )
            .into_response()
    })
    .await;
    let call = unique_call_id("backend-429");
    let outcomes = sink(&url)
        .deliver(&[entry(SinkKind::Backend, 1, &call, 1, CallState::Initiated)])
        .await;
    let [
        Delivery::Retry {
            reason,
            retry_after,
        },
    ] = outcomes.as_slice()
    else {
        panic!("{outcomes:?}");
    };
    assert_eq!(*retry_after, Some(Duration::from_secs(7)));
    assert!(reason.contains("429"), "{reason}");
}

#[tokio::test]
async fn a_503_is_retried() {
    let (url, _) = start(|_| async { AxumStatus::SERVICE_UNAVAILABLE.into_response() }).await;
    let call = unique_call_id("backend-503");
    let outcomes = sink(&url)
        .deliver(&[entry(SinkKind::Backend, 1, &call, 1, CallState::Initiated)])
        .await;
    assert!(
        matches!(&outcomes[..], [Delivery::Retry { reason, retry_after: None }] if reason.contains("503")),
        "{outcomes:?}"
    );
}

#[tokio::test]
async fn a_hung_backend_is_retried_after_the_timeout_and_stops_the_batch() {
    let (url, received) = start(|_| async {
        tokio::time::sleep(Duration::from_secs(30)).await;
        AxumStatus::OK.into_response()
    })
    .await;
    let entries: Vec<OutboxEntry> = (1..=3)
        .map(|i| {
            let call = unique_call_id(&format!("backend-hung-{i}"));
            entry(SinkKind::Backend, i, &call, 1, CallState::Initiated)
        })
        .collect();
    let started = Instant::now();
    let outcomes = sink(&url).with_concurrency(1).deliver(&entries).await;
    let elapsed = started.elapsed();
    assert!(
        matches!(&outcomes[0], Delivery::Retry { reason, .. } if reason.contains("timed out")),
        "{outcomes:?}"
    );
    assert!(
        outcomes[1..]
            .iter()
            .all(|o| matches!(o, Delivery::Retry { reason, .. } if reason.contains("not tried"))),
        "{outcomes:?}"
    );
    assert!(
        elapsed >= TIMEOUT && elapsed < TIMEOUT * 3,
        "one timeout, not three: {elapsed:?}"
    );
    assert_eq!(
        received.lock().unwrap().len(),
        1,
        "the first request did arrive"
    );
}

#[tokio::test]
async fn an_unreachable_backend_is_retried() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let call = unique_call_id("backend-down");
    let outcomes = sink(&url)
        .deliver(&[entry(SinkKind::Backend, 1, &call, 1, CallState::Initiated)])
        .await;
    assert!(
        matches!(&outcomes[..], [Delivery::Retry { .. }]),
        "{outcomes:?}"
    );
}

#[tokio::test]
async fn events_of_one_call_go_in_order_and_wait_behind_a_failure() {
    // The first request fails: the call's second event must not overtake it.
    let (url, received) = start(|n| async move {
        if n == 1 {
            (AxumStatus::BAD_GATEWAY, [("retry-after", "3")]).into_response()
        } else {
            AxumStatus::OK.into_response()
        }
    })
    .await;
    let call = unique_call_id("backend-order");
    let entries = [
        entry(SinkKind::Backend, 1, &call, 1, CallState::Initiated),
        entry(SinkKind::Backend, 2, &call, 2, CallState::Ringing),
    ];
    let sink = sink(&url);
    let outcomes = sink.deliver(&entries).await;
    assert!(
        matches!(outcomes[0], Delivery::Retry { .. }),
        "{outcomes:?}"
    );
    assert_eq!(
        outcomes[1],
        held_back(Some(Duration::from_secs(3))),
        "held behind, at least as long"
    );
    assert_eq!(received.lock().unwrap().len(), 1, "the second was not sent");

    let outcomes = sink.deliver(&entries).await;
    assert_eq!(outcomes, vec![Delivery::Delivered, Delivery::Delivered]);
    let keys: Vec<String> = received
        .lock()
        .unwrap()
        .iter()
        .map(|r| r.idempotency_key.clone())
        .collect();
    assert_eq!(
        keys,
        [
            format!("{call}:1"),
            format!("{call}:1"),
            format!("{call}:2")
        ]
    );
}

#[tokio::test]
async fn an_event_id_that_is_no_header_value_is_rejected_without_a_request() {
    let (url, received) = start(|_| async { AxumStatus::OK.into_response() }).await;
    let call = format!("{}\nInjected: 1", unique_call_id("backend-header"));
    let outcomes = sink(&url)
        .deliver(&[entry(SinkKind::Backend, 1, &call, 1, CallState::Initiated)])
        .await;
    assert!(
        matches!(&outcomes[..], [Delivery::Reject { reason }] if reason.contains("cannot build")),
        "{outcomes:?}"
    );
    assert!(received.lock().unwrap().is_empty());
}

#[test]
fn statuses_are_classified_as_designed() {
    let class = |code: u16| match classify(StatusCode::from_u16(code).unwrap(), None, "") {
        Delivery::Delivered => "delivered",
        Delivery::Retry { .. } => "retry",
        Delivery::Reject { .. } => "reject",
    };
    for code in [200, 201, 202, 204] {
        assert_eq!(class(code), "delivered", "{code}");
    }
    for code in [400, 401, 403, 404, 409, 410, 413, 422] {
        assert_eq!(class(code), "reject", "{code}");
    }
    for code in [408, 429, 500, 502, 503, 504, 301, 302, 307] {
        assert_eq!(class(code), "retry", "{code}");
    }
}

#[test]
fn construction_checks_url_and_secret() {
    assert!(BackendSink::new("http://backend.local:8000/", SECRET, TIMEOUT).is_ok());
    assert!(matches!(
        BackendSink::new("ftp://backend.local", SECRET, TIMEOUT),
        Err(SinkError::BackendUrl { .. })
    ));
    assert!(matches!(
        BackendSink::new("not a url", SECRET, TIMEOUT),
        Err(SinkError::BackendUrl { .. })
    ));
    assert!(matches!(
        BackendSink::new("http://backend.local", b"", TIMEOUT),
        Err(SinkError::EmptySecret)
    ));
    let sink = BackendSink::new("http://backend.local/base/", SECRET, TIMEOUT).unwrap();
    assert_eq!(
        sink.url.as_str(),
        "http://backend.local/base/api/calls/external-updates"
    );
}
