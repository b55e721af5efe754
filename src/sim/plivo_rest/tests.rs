//! The fake against a plain HTTP client (so its shapes are checked independently of the
//! REST client) and against a small receiver that verifies its callbacks' signatures.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method as HttpMethod, Uri};
use serde_json::Value;

use super::*;
use crate::telephony::plivo::answer::{parse_form, parse_query};
use crate::telephony::plivo::callback::{
    CallStatus, Callback, CallbackEvent, CallbackKind, Hangup,
};
use crate::telephony::plivo::signature::{Method, SignatureError, Verifier};

const ID: &str = "MAZDQ1ZDU2NDE4MTNHMQ";
const TOKEN: &str = "fake-token";

struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    fn new(fake: &FakePlivo) -> Self {
        Self {
            http: reqwest::Client::new(),
            base: format!("{}/v1/Account/{ID}", fake.base_url()),
        }
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> (u16, Value) {
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap()
        };
        (status, body)
    }

    async fn call(&self, method: reqwest::Method, path: &str) -> (u16, Value) {
        let url = format!("{}{path}", self.base);
        let request = self.http.request(method, url).basic_auth(ID, Some(TOKEN));
        self.send(request).await
    }

    async fn make_call(&self, form: &[(&str, &str)]) -> (u16, Value) {
        let request = self
            .http
            .post(format!("{}/Call/", self.base))
            .basic_auth(ID, Some(TOKEN))
            .form(form);
        self.send(request).await
    }
}

const GET: reqwest::Method = reqwest::Method::GET;
const DELETE: reqwest::Method = reqwest::Method::DELETE;

#[tokio::test]
async fn requests_need_basic_auth() {
    let fake = FakePlivo::start(ID, TOKEN).await.unwrap();
    let client = Client::new(&fake);
    let url = format!("{}/Call/", client.base);
    let (status, body) = client.send(client.http.get(&url)).await;
    assert_eq!(status, 401);
    assert!(body["error"].is_string() && body["api_id"].is_string());
    let wrong = client.http.get(&url).basic_auth(ID, Some("nope"));
    assert_eq!(client.send(wrong).await.0, 401);
    let other_account = format!("{}/v1/Account/MAOTHER/Call/", fake.base_url());
    let request = client.http.get(other_account).basic_auth(ID, Some(TOKEN));
    assert_eq!(client.send(request).await.0, 401);
    let seen: Vec<bool> = fake.requests().iter().map(|r| r.auth_ok).collect();
    assert_eq!(seen, [false, false, true]);
}

#[tokio::test]
async fn make_call_from_a_form_fires_a_v4_call() {
    let fake = FakePlivo::start(ID, TOKEN).await.unwrap();
    let client = Client::new(&fake);
    let (status, body) = client
        .make_call(&[
            ("from", "14155550100"),
            ("to", "14155550199"),
            ("answer_url", "https://vg/answer"),
            ("ring_timeout", "30"),
        ])
        .await;
    assert_eq!(status, 201);
    assert_eq!(body["message"], "call fired");
    let request_uuid = body["request_uuid"].as_str().unwrap();
    let parsed = uuid::Uuid::parse_str(request_uuid).unwrap();
    assert_eq!(parsed.get_version_num(), 4);
    let call = fake
        .call(request_uuid)
        .expect("CallUUID equals request_uuid");
    assert_eq!(call.phase, CallPhase::Queued);
    assert_eq!(call.param("ring_timeout"), Some("30"));
    assert_eq!(call.direction, "outbound");
    let recorded = &fake.requests()[0];
    assert_eq!(
        recorded.content_type.as_deref(),
        Some("application/x-www-form-urlencoded")
    );
}

#[tokio::test]
async fn bad_make_calls_and_paths_are_refused() {
    let fake = FakePlivo::start(ID, TOKEN).await.unwrap();
    let client = Client::new(&fake);
    let (status, body) = client.make_call(&[("from", "1"), ("to", "2")]).await;
    assert_eq!(status, 400);
    assert!(body["error"].as_str().unwrap().contains("answer_url"));
    let text = client
        .http
        .post(format!("{}/Call/", client.base))
        .basic_auth(ID, Some(TOKEN))
        .body("from=1&to=2&answer_url=x");
    assert_eq!(client.send(text).await.0, 400, "no Content-Type");

    let no_slash = client
        .http
        .post(format!("{}/Call", client.base))
        .basic_auth(ID, Some(TOKEN))
        .json(&serde_json::json!({"from":"1","to":"2","answer_url":"https://vg/a"}));
    assert_eq!(client.send(no_slash).await.0, 404, "Plivo paths end with /");
    assert!(fake.calls().is_empty());
    assert_eq!(client.call(GET, "/Call/abc").await.0, 404);
    assert_eq!(client.call(reqwest::Method::PUT, "/Call/abc/").await.0, 405);
    assert_eq!(client.call(GET, "/Recording/").await.0, 404);
}

#[tokio::test]
async fn a_call_goes_live_ends_and_is_listed() {
    let fake = FakePlivo::start(ID, TOKEN).await.unwrap();
    let client = Client::new(&fake);
    let (_, body) = client
        .make_call(&[("from", "1"), ("to", "2<3"), ("answer_url", "https://vg/a")])
        .await;
    let uuids: Vec<String> = serde_json::from_value(body["request_uuid"].clone()).unwrap();
    assert_eq!(uuids.len(), 2, "bulk `to` gives a list");
    let (a, b) = (&uuids[0], &uuids[1]);

    fake.set_live(a, "in-progress").unwrap();
    let (status, live) = client.call(GET, &format!("/Call/{a}/?status=live")).await;
    assert_eq!(status, 200);
    assert_eq!(live["call_status"], "in-progress");
    assert_eq!(
        (live["from"].as_str(), live["to"].as_str()),
        (Some("1"), Some("2"))
    );
    let (_, list) = client.call(GET, "/Call/?status=live").await;
    assert_eq!(list["calls"], serde_json::json!([a]));
    assert_eq!(
        client.call(GET, &format!("/Call/{a}/")).await.0,
        404,
        "no CDR yet"
    );

    fake.complete(a, Completion::busy()).unwrap();
    assert!(
        fake.set_live(a, "ringing").is_err(),
        "an ended call stays ended"
    );
    assert_eq!(
        client.call(GET, &format!("/Call/{a}/?status=live")).await.0,
        404
    );
    let (status, cdr) = client.call(GET, &format!("/Call/{a}/")).await;
    assert_eq!(status, 200);
    assert_eq!(cdr["hangup_cause_code"], 3010);
    assert_eq!(cdr["bill_duration"], 0);
    assert!(cdr["answer_time"].is_null());
    assert_eq!(cdr["resource_uri"], format!("/v1/Account/{ID}/Call/{a}/"));
    let (_, page) = client.call(GET, "/Call/").await;
    assert_eq!(page["meta"]["total_count"], 1);
    assert_eq!(page["objects"][0]["call_uuid"], a.as_str());

    // A request can be cancelled only while queued or ringing.
    fake.set_live(b, "in-progress").unwrap();
    assert_eq!(client.call(DELETE, &format!("/Request/{b}/")).await.0, 404);
    assert_eq!(client.call(DELETE, &format!("/Call/{b}/")).await.0, 204);
    assert_eq!(client.call(DELETE, &format!("/Call/{b}/")).await.0, 404);
}

#[tokio::test]
async fn delete_without_a_uuid_hangs_up_every_call() {
    let fake = FakePlivo::start(ID, TOKEN).await.unwrap();
    let client = Client::new(&fake);
    fake.add_inbound("in-1", "1", "2");
    fake.add_inbound("in-2", "3", "4");
    assert_eq!(client.call(DELETE, "/Call//").await.0, 204);
    assert!(
        fake.calls()
            .iter()
            .all(|c| matches!(c.phase, CallPhase::Ended(_))),
        "this is why the client refuses empty uuids"
    );
}

#[tokio::test]
async fn injected_failures_come_first_and_stalls_still_act() {
    let fake = FakePlivo::start(ID, TOKEN).await.unwrap();
    let client = Client::new(&fake);
    fake.fail_next(1, 503);
    fake.rate_limit_next(1, 7);
    assert_eq!(client.call(GET, "/Call/").await.0, 503);
    let response = client
        .http
        .get(format!("{}/Call/", client.base))
        .basic_auth(ID, Some(TOKEN))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 429);
    assert_eq!(response.headers()["retry-after"], "7");
    assert_eq!(client.call(GET, "/Call/").await.0, 200);
}

/// What the callback receiver saw: (method, params, signature check).
type Seen = Arc<Mutex<Vec<(String, Vec<(String, String)>, Result<(), SignatureError>)>>>;

async fn receiver() -> (SocketAddr, Seen) {
    async fn record(
        State((addr, seen)): State<(SocketAddr, Seen)>,
        method: HttpMethod,
        uri: Uri,
        headers: HeaderMap,
        body: Bytes,
    ) -> ([(&'static str, &'static str); 1], &'static str) {
        let url = format!("http://{addr}{uri}");
        let verifier = Verifier::new(vec![TOKEN.to_owned()]);
        let (params, check) = if method == HttpMethod::GET {
            let params = parse_query(uri.query().unwrap_or(""));
            (
                params,
                verifier.verify_headers(Method::Get, &url, &[], &headers),
            )
        } else {
            let params = parse_form(&body);
            let check = verifier.verify_headers(Method::Post, &url, &params, &headers);
            (params, check)
        };
        seen.lock()
            .unwrap()
            .push((method.to_string(), params, check));
        ([("content-type", "application/xml")], "<Response/>")
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Seen::default();
    let app = Router::new()
        .fallback(record)
        .with_state((addr, seen.clone()));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, seen)
}

fn param<'a>(params: &'a [(String, String)], key: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

#[tokio::test]
async fn callbacks_are_signed_and_carry_plivos_fields() {
    let fake = FakePlivo::start(ID, TOKEN).await.unwrap();
    let (addr, seen) = receiver().await;
    let client = Client::new(&fake);
    let answer_url = format!("http://{addr}/answer?call_id=c1");
    let ring_url = format!("http://{addr}/ring");
    let hangup_url = format!("http://{addr}/hangup#rc=2");
    let (_, body) = client
        .make_call(&[
            ("from", "14155550100"),
            ("to", "14155550199"),
            ("answer_url", &answer_url),
            ("answer_method", "GET"),
            ("ring_url", &ring_url),
            ("hangup_url", &hangup_url),
            ("sip_headers", "CallId=c1,Campaign=spring"),
        ])
        .await;
    let uuid = body["request_uuid"].as_str().unwrap().to_owned();

    let ring = fake.ring(&uuid).await.unwrap().unwrap();
    assert_eq!(ring.status, 200);
    let answer = fake.answer(&uuid).await.unwrap();
    assert_eq!(answer.body, "<Response/>");
    assert_eq!(answer.content_type.as_deref(), Some("application/xml"));
    assert!(matches!(
        fake.hangup_callback(&uuid).await,
        Err(FakeError::WrongPhase { .. })
    ));
    fake.complete(&uuid, Completion::normal(17)).unwrap();
    fake.hangup_callback(&uuid).await.unwrap().unwrap();

    let seen = seen.lock().unwrap().clone();
    let methods: Vec<&str> = seen.iter().map(|(m, _, _)| m.as_str()).collect();
    assert_eq!(methods, ["POST", "GET", "POST"]);
    for (_, params, check) in &seen {
        assert_eq!(*check, Ok(()), "signed with V3 over {params:?}");
        assert_eq!(param(params, "CallUUID"), Some(uuid.as_str()));
        assert_eq!(param(params, "ALegRequestUUID"), Some(uuid.as_str()));
        assert_eq!(param(params, "Direction"), Some("outbound"));
    }
    let (ring, answer, hangup) = (&seen[0].1, &seen[1].1, &seen[2].1);
    assert_eq!(param(ring, "CallStatus"), Some("ringing"));
    assert_eq!(param(answer, "CallStatus"), Some("in-progress"));
    assert_eq!(
        param(answer, "call_id"),
        Some("c1"),
        "the answer URL's own query kept"
    );
    assert_eq!(param(answer, "X-PH-Campaign"), Some("spring"));
    assert_eq!(param(hangup, "CallStatus"), Some("completed"));
    assert_eq!(param(hangup, "HangupCauseCode"), Some("4000"));
    assert_eq!(param(hangup, "Duration"), Some("17"));
    assert!(param(hangup, "AnswerTime").is_some());
    // What the server reads from them.
    let ring = Callback::from_params(CallbackKind::Ring, &[], ring).unwrap();
    assert_eq!(
        (ring.call_id.as_str(), ring.event),
        (uuid.as_str(), CallbackEvent::Ring)
    );
    let hangup = Callback::from_params(CallbackKind::Hangup, &[], hangup).unwrap();
    assert_eq!(
        hangup.event,
        CallbackEvent::Hangup(Hangup {
            status: CallStatus::Completed,
            cause: Some("Normal Hangup".into()),
            duration_secs: Some(17),
        })
    );

    fake.add_inbound("in-1", "1", "2");
    assert_eq!(
        fake.ring("in-1").await.unwrap(),
        None,
        "no ring_url, no callback"
    );
    assert!(matches!(
        fake.ring("nope").await,
        Err(FakeError::UnknownCall(_))
    ));
}
