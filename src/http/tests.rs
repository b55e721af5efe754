use std::collections::HashMap;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::config::{CliOverrides, Config};
use crate::telephony::plivo::answer::{ParsedStream, parse_stream_response};
use crate::telephony::plivo::signature::{Method, sign_v3_headers};

const TOKEN: &str = "test-auth-token";

struct Server {
    base: String,
    state: Arc<AppState>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

async fn server(env: &[(&str, &str)]) -> Server {
    let env: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let mut config = Config::load(None, &env, CliOverrides::default()).unwrap();
    config.pipeline.workers = 1;
    config.recording.dir =
        std::env::temp_dir().join(format!("voxgate-http-tests-{}", std::process::id()));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let shutdown = CancellationToken::new();
    let server = crate::server::Server::start_without_control(config, shutdown.clone()).unwrap();
    let state = Arc::clone(server.state());
    let task = tokio::spawn(server.run(listener));
    Server {
        base,
        state,
        shutdown,
        task,
    }
}

impl Server {
    async fn metrics(&self) -> String {
        let url = format!("{}/metrics", self.base);
        reqwest::get(url).await.unwrap().text().await.unwrap()
    }
}

fn form(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

async fn post(url: &str, fields: &[(String, String)], token: Option<&str>) -> reqwest::Response {
    let mut request = reqwest::Client::new().post(url).form(fields);
    if let Some(token) = token {
        for (name, value) in sign_v3_headers(token, Method::Post, url, fields) {
            request = request.header(name, value);
        }
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn health_ready_and_metrics_answer() {
    let s = server(&[]).await;
    let health: serde_json::Value = reqwest::get(format!("{}/health", s.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["dsp_workers"], 1);
    assert_eq!(
        reqwest::get(format!("{}/ready", s.base))
            .await
            .unwrap()
            .status(),
        200
    );
    let metrics = s.metrics().await;
    assert!(
        metrics.contains("voxgate_pipeline_queue_depth"),
        "{metrics}"
    );
    s.shutdown.cancel();
    s.task.await.unwrap().unwrap();
}

#[tokio::test]
async fn answer_returns_a_stream_document_for_get_and_post() {
    let s = server(&[]).await;
    let fields = form(&[
        ("CallUUID", "c0ffee-1"),
        ("From", "+15550001111"),
        ("To", "+15550002222"),
    ]);
    let reply = post(
        &format!("{}/plivo/answer?call_id=backend%2042&x=1", s.base),
        &fields,
        None,
    )
    .await;
    assert_eq!(reply.status(), 200);
    assert!(
        reply.headers()["content-type"]
            .to_str()
            .unwrap()
            .contains("xml")
    );
    let xml = reply.text().await.unwrap();
    let ParsedStream::Stream(stream) = parse_stream_response(&xml).unwrap() else {
        panic!("not a stream: {xml}")
    };
    let expected = format!(
        "{}/plivo/stream?call_id=backend%2042",
        s.base.replace("http://", "ws://")
    );
    assert_eq!(stream.url, expected);
    assert!(stream.bidirectional);
    assert_eq!(
        stream.content_type.as_deref(),
        Some("audio/x-mulaw;rate=8000")
    );
    assert!(xml.contains("keepCallAlive=\"true\""));
    assert!(xml.contains("stream-status?call_id=backend"), "{xml}");

    let get = reqwest::get(format!(
        "{}/plivo/answer?CallUUID=abc-2&From=1&To=2",
        s.base
    ))
    .await
    .unwrap();
    let xml = get.text().await.unwrap();
    assert!(
        xml.contains("call_id=abc-2"),
        "CallUUID is the call id when none is given: {xml}"
    );
    assert_eq!(s.state.sessions.active(), 2);

    let missing = post(
        &format!("{}/plivo/answer", s.base),
        &form(&[("From", "1")]),
        None,
    )
    .await;
    assert_eq!(missing.status(), 400);
}

#[tokio::test]
async fn signatures_are_enforced_when_a_token_is_set() {
    let s = server(&[("PLIVO_AUTH_TOKEN", TOKEN)]).await;
    let url = format!("{}/plivo/answer", s.base);
    let fields = form(&[("CallUUID", "sig-1"), ("From", "1"), ("To", "2")]);
    assert_eq!(post(&url, &fields, Some(TOKEN)).await.status(), 200);
    assert_eq!(post(&url, &fields, Some("wrong-token")).await.status(), 403);
    assert_eq!(post(&url, &fields, None).await.status(), 403);
    // A callback signed for other parameters.
    let hangup = format!("{}/plivo/hangup", s.base);
    let mut request = reqwest::Client::new().post(&hangup).form(&fields);
    for (name, value) in sign_v3_headers(
        TOKEN,
        Method::Post,
        &hangup,
        &form(&[("CallUUID", "other")]),
    ) {
        request = request.header(name, value);
    }
    assert_eq!(request.send().await.unwrap().status(), 403);
    assert_eq!(post(&hangup, &fields, Some(TOKEN)).await.status(), 200);
    let metrics = s.metrics().await;
    assert!(
        metrics.contains("voxgate_signature_failures_total"),
        "{metrics}"
    );
}

#[tokio::test]
async fn calls_beyond_capacity_are_refused_busy() {
    let s = server(&[("VOXGATE_MAX_CALLS", "1")]).await;
    let url = format!("{}/plivo/answer", s.base);
    let first = post(&url, &form(&[("CallUUID", "cap-1")]), None)
        .await
        .text()
        .await
        .unwrap();
    assert!(first.contains("<Stream"));
    let second = post(&url, &form(&[("CallUUID", "cap-2")]), None)
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(
        parse_stream_response(&second).unwrap(),
        ParsedStream::Refused {
            reason: Some("busy".into())
        }
    );
    let again = post(&url, &form(&[("CallUUID", "cap-1")]), None)
        .await
        .text()
        .await
        .unwrap();
    assert!(
        again.contains("<Stream"),
        "Plivo's retry for an admitted call is answered"
    );
}

#[tokio::test]
async fn callbacks_are_idempotent_and_unknown_calls_get_200() {
    let s = server(&[]).await;
    let url = format!("{}/plivo/hangup", s.base);
    let fields = form(&[
        ("CallUUID", "never-seen"),
        ("HangupCause", "NORMAL_CLEARING"),
    ]);
    assert_eq!(post(&url, &fields, None).await.status(), 200);
    assert_eq!(post(&url, &fields, None).await.status(), 200);
    let status = format!("{}/plivo/stream-status", s.base);
    let event = form(&[
        ("CallUUID", "x"),
        ("StreamID", "s"),
        ("Event", "StartStream"),
    ]);
    assert_eq!(post(&status, &event, None).await.status(), 200);
    assert_eq!(
        post(&format!("{}/plivo/ring", s.base), &fields, None)
            .await
            .status(),
        200
    );
    let metrics = s.metrics().await;
    assert!(
        metrics.contains(r#"voxgate_callbacks_total{kind="hangup",duplicate="true"}"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn callbacks_that_name_no_call_are_refused_400_after_the_signature_check() {
    let s = server(&[("PLIVO_AUTH_TOKEN", TOKEN)]).await;
    let nameless = form(&[("Event", "StartStream"), ("CallUUID", "")]);
    for route in ["hangup", "ring", "stream-status"] {
        let url = format!("{}/plivo/{route}", s.base);
        assert_eq!(post(&url, &nameless, None).await.status(), 403, "{route}");
        let refused = post(&url, &nameless, Some(TOKEN)).await;
        assert_eq!(refused.status(), 400, "{route}");
        assert!(refused.text().await.unwrap().contains("names no call"));
        let named = format!("{url}?call_id=backend-9");
        assert_eq!(
            post(&named, &nameless, Some(TOKEN)).await.status(),
            200,
            "{route}"
        );
    }
    let metrics = s.metrics().await;
    assert!(
        metrics.contains(r#"voxgate_bad_messages_total{kind="missing_call_id"} 3"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn shutdown_flips_ready_and_refuses_new_calls_while_draining() {
    let s = server(&[("VOXGATE_DRAIN_TIMEOUT_SECS", "1")]).await;
    // A live call keeps the server draining.
    let attachment = s
        .state
        .sessions
        .attach(&crate::ids::CallId::parse("live").unwrap())
        .unwrap();
    let cancel = attachment.cancel.clone();
    s.state
        .sessions
        .spawn(async move { cancel.cancelled().await });
    s.shutdown.cancel();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_eq!(
        reqwest::get(format!("{}/ready", s.base))
            .await
            .unwrap()
            .status(),
        503
    );
    let refused = post(
        &format!("{}/plivo/answer", s.base),
        &form(&[("CallUUID", "late")]),
        None,
    )
    .await;
    assert!(refused.text().await.unwrap().contains("Hangup"));
    s.task.await.unwrap().unwrap();
    assert!(
        attachment.cancel.is_cancelled(),
        "closed at the drain timeout"
    );
}
