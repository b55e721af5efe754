//! The client against [`FakePlivo`]: every method, status mapping, the retry rules, the
//! uuid guard, and the fixture shapes of Plivo's SDKs.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::sim::plivo_rest::{CallPhase, Completion, FakePlivo};

const ID: &str = "MAZDQ1ZDU2NDE4MTNHMQ";
const TOKEN: &str = "auth-token-for-tests";

fn config(base_url: String) -> RestConfig {
    RestConfig {
        base_url,
        request_timeout: Duration::from_secs(2),
        retry: RetryPolicy {
            base: Duration::from_millis(1),
            cap: Duration::from_millis(5),
            max_attempts: None,
            max_age: None,
            max_retry_after: Some(Duration::from_secs(2)),
        }
        .with_retries(3),
        ..RestConfig::new(ID, TOKEN)
    }
}

async fn setup() -> (FakePlivo, PlivoRest) {
    let fake = FakePlivo::start(ID, TOKEN).await.unwrap();
    let rest = PlivoRest::new(config(fake.base_url())).unwrap();
    (fake, rest)
}

fn call() -> MakeCall {
    MakeCall {
        hangup_url: Some("https://vg.example/plivo/hangup".into()),
        time_limit: Some(600),
        caller_name: Some("Voxgate".into()),
        ..MakeCall::new(
            "14155550100",
            "14155550199",
            "https://vg.example/answer?call_id=c1",
        )
    }
}

/// Places a call through the client and returns its uuid.
async fn placed(rest: &PlivoRest) -> String {
    rest.make_call(&call()).await.unwrap().request_uuid
}

fn call_path(uuid: &str) -> String {
    format!("/v1/Account/{ID}/Call/{uuid}/")
}

#[tokio::test]
async fn make_call_posts_json_with_auth_to_the_call_resource() {
    let (fake, rest) = setup().await;
    let api: Arc<dyn PlivoApi> = Arc::new(rest);
    let response = api.make_call(&call()).await.unwrap();
    assert_eq!(response.message, "call fired");
    assert!(!response.api_id.is_empty());

    let calls = fake.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].call_uuid, response.request_uuid);
    assert_eq!(calls[0].param("time_limit"), Some("600"));
    assert_eq!(calls[0].param("caller_name"), Some("Voxgate"));
    assert_eq!(
        calls[0].param("ring_url"),
        None,
        "unset params are not sent"
    );

    let requests = fake.requests();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, format!("/v1/Account/{ID}/Call/"));
    assert!(request.auth_ok, "Basic auth with auth_id:auth_token");
    assert_eq!(request.content_type.as_deref(), Some("application/json"));
    let expected_ua = concat!("voxgate/", env!("CARGO_PKG_VERSION"));
    assert_eq!(request.user_agent.as_deref(), Some(expected_ua));
    let body: serde_json::Value = serde_json::from_str(&request.body).unwrap();
    assert_eq!(body["answer_url"], "https://vg.example/answer?call_id=c1");
    assert_eq!(body["time_limit"], 600);
}

#[tokio::test]
async fn bulk_request_uuid_list_yields_the_first() {
    let (fake, rest) = setup().await;
    let bulk = MakeCall::new("14155550100", "14155550199<14155550198", "https://vg/a");
    let response = rest.make_call(&bulk).await.unwrap();
    let calls = fake.calls();
    assert_eq!(calls.len(), 2);
    assert_eq!(response.request_uuid, calls[0].request_uuid);
}

#[tokio::test]
async fn live_call_is_none_until_live_and_after_the_end() {
    let (fake, rest) = setup().await;
    let uuid = placed(&rest).await;
    assert_eq!(
        rest.live_call(&uuid).await.unwrap(),
        None,
        "queued: not live yet"
    );

    fake.set_live(&uuid, "ringing").unwrap();
    let live = rest.live_call(&uuid).await.unwrap().unwrap();
    assert_eq!(live.call_uuid, uuid);
    assert_eq!(live.call_status, "ringing");
    assert_eq!(live.direction.as_deref(), Some("outbound"));
    assert_eq!(live.from.as_deref(), Some("14155550100"));
    assert_eq!(live.to.as_deref(), Some("14155550199"));
    assert_eq!(live.request_uuid.as_deref(), Some(uuid.as_str()));
    assert_eq!(live.caller_name.as_deref(), Some("Voxgate"));
    assert!(live.session_start().is_some());

    fake.complete(&uuid, Completion::normal(42)).unwrap();
    assert_eq!(
        rest.live_call(&uuid).await.unwrap(),
        None,
        "ended: not live any more"
    );

    let live_requests: Vec<_> = fake.requests().into_iter().skip(1).collect();
    assert_eq!(live_requests.len(), 3);
    for request in live_requests {
        assert_eq!(request.method, "GET");
        assert_eq!(request.path, call_path(&uuid));
        assert_eq!(request.query.as_deref(), Some("status=live"));
        assert!(request.auth_ok);
    }
}

#[tokio::test]
async fn cdr_appears_once_the_call_ended() {
    let (fake, rest) = setup().await;
    let uuid = placed(&rest).await;
    fake.set_live(&uuid, "in-progress").unwrap();
    assert_eq!(rest.cdr(&uuid).await.unwrap(), None, "no CDR while live");

    fake.complete(&uuid, Completion::normal(42)).unwrap();
    let cdr = rest.cdr(&uuid).await.unwrap().unwrap();
    assert_eq!(cdr.call_uuid, uuid);
    assert_eq!(cdr.bill_duration, Some(42));
    assert_eq!(cdr.call_duration, Some(42));
    assert_eq!(cdr.billed_duration, Some(60));
    assert_eq!(cdr.hangup_cause_code, Some(4000));
    assert_eq!(cdr.hangup_cause_name.as_deref(), Some("Normal Hangup"));
    assert_eq!(cdr.call_direction.as_deref(), Some("outbound"));
    assert_eq!(cdr.to_number.as_deref(), Some("14155550199"));
    assert!(cdr.was_answered());
    let utc = chrono::FixedOffset::east_opt(0).unwrap();
    let answered = cdr.answer_time().unwrap().to_utc(utc);
    let ended = cdr.end_time().unwrap().to_utc(utc);
    assert_eq!((ended - answered).num_seconds(), 42);

    let last = fake.requests().pop().unwrap();
    assert_eq!(last.path, call_path(&uuid));
    assert_eq!(last.query, None);
}

#[tokio::test]
async fn hangup_is_204_then_404_already_gone() {
    let (fake, rest) = setup().await;
    let uuid = placed(&rest).await;
    fake.set_live(&uuid, "in-progress").unwrap();
    assert_eq!(rest.hangup(&uuid).await.unwrap(), HangupOutcome::HungUp);
    assert_eq!(
        rest.hangup(&uuid).await.unwrap(),
        HangupOutcome::AlreadyGone
    );
    let unknown = "0b7e6b4a-0000-4000-8000-000000000000";
    assert_eq!(
        rest.hangup(unknown).await.unwrap(),
        HangupOutcome::AlreadyGone
    );

    let CallPhase::Ended(completion) = fake.call(&uuid).unwrap().phase else {
        panic!("the call should have ended");
    };
    assert_eq!(completion.hangup_source, "API Request");
    let request = &fake.requests()[1];
    assert_eq!(request.method, "DELETE");
    assert_eq!(request.path, call_path(&uuid));
    assert!(request.body.is_empty());
}

#[tokio::test]
async fn cancel_request_cancels_a_queued_call() {
    let (fake, rest) = setup().await;
    let uuid = placed(&rest).await;
    assert_eq!(
        rest.cancel_request(&uuid).await.unwrap(),
        HangupOutcome::HungUp
    );
    assert_eq!(
        rest.cancel_request(&uuid).await.unwrap(),
        HangupOutcome::AlreadyGone
    );
    let CallPhase::Ended(completion) = fake.call(&uuid).unwrap().phase else {
        panic!("the call should have been cancelled");
    };
    assert_eq!(completion.hangup_cause_code, 1000);
    assert_eq!(
        fake.requests()[1].path,
        format!("/v1/Account/{ID}/Request/{uuid}/")
    );
}

#[tokio::test]
async fn bad_uuids_are_refused_without_sending_anything() {
    let (fake, rest) = setup().await;
    fake.add_inbound("live-call-1", "14155550100", "14155550111");
    let long = "a".repeat(65);
    let bad = [
        "",
        " ",
        "../Call",
        "a/b",
        "a b",
        "a?status=live",
        "ä",
        "%2F",
        &long,
    ];
    for uuid in bad {
        let refused = |r: Result<HangupOutcome, RestError>| {
            matches!(r, Err(RestError::InvalidCallUuid { .. }))
        };
        assert!(refused(rest.hangup(uuid).await), "hangup {uuid:?}");
        assert!(refused(rest.cancel_request(uuid).await), "cancel {uuid:?}");
        let err = rest.live_call(uuid).await.unwrap_err();
        assert_eq!(err.kind(), "invalid_call_uuid");
        let err = rest.cdr(uuid).await.unwrap_err();
        assert!(!err.is_retriable(true));
    }
    assert!(fake.requests().is_empty(), "nothing may reach Plivo");
    assert!(matches!(
        fake.call("live-call-1").unwrap().phase,
        CallPhase::Live { .. }
    ));
}

#[tokio::test]
async fn statuses_map_to_errors() {
    let (fake, rest) = setup().await;
    let uuid = placed(&rest).await;
    let cases: [(u16, &str); 4] = [
        (401, "unauthorized"),
        (403, "forbidden"),
        (400, "bad_request"),
        (405, "bad_request"),
    ];
    for (status, kind) in cases {
        let before = fake.requests().len();
        fake.fail_next(1, status);
        let err = rest.cdr(&uuid).await.unwrap_err();
        assert_eq!(err.kind(), kind, "{status}");
        assert_eq!(fake.requests().len(), before + 1, "{status} is not retried");
    }
    fake.fail_next(1, 403);
    let err = rest.make_call(&call()).await.unwrap_err();
    assert_eq!(
        err,
        RestError::Forbidden {
            message: "injected failure".into()
        }
    );
}

#[tokio::test]
async fn wrong_credentials_are_unauthorized() {
    let fake = FakePlivo::start(ID, TOKEN).await.unwrap();
    let rest = PlivoRest::new(RestConfig {
        auth_token: "wrong".into(),
        ..config(fake.base_url())
    })
    .unwrap();
    let err = rest.make_call(&call()).await.unwrap_err();
    assert!(matches!(err, RestError::Unauthorized { .. }), "{err:?}");
    let requests = fake.requests();
    assert_eq!(requests.len(), 1);
    assert!(!requests[0].auth_ok);
    assert!(fake.calls().is_empty());
}

#[tokio::test]
async fn get_retries_a_503_and_succeeds() {
    let (fake, rest) = setup().await;
    let uuid = placed(&rest).await;
    fake.set_live(&uuid, "in-progress").unwrap();
    fake.fail_next(1, 503);
    let live = rest.live_call(&uuid).await.unwrap();
    assert!(live.is_some());
    assert_eq!(fake.requests().len(), 3, "make_call, 503, 200");
}

#[tokio::test]
async fn get_gives_up_after_the_attempt_budget() {
    let (fake, rest) = setup().await;
    let uuid = placed(&rest).await;
    fake.fail_next(4, 502);
    let err = rest.cdr(&uuid).await.unwrap_err();
    assert_eq!(
        err,
        RestError::Server {
            status: 502,
            message: "injected failure".into()
        }
    );
    assert_eq!(fake.requests().len(), 1 + 4, "1 attempt + 3 retries");
    fake.fail_next(2, 429);
    assert_eq!(
        rest.hangup(&uuid).await.unwrap(),
        HangupOutcome::HungUp,
        "DELETE retries 429s"
    );
}

#[tokio::test]
async fn make_call_is_not_retried_after_a_503() {
    let (fake, rest) = setup().await;
    fake.fail_next(1, 503);
    let err = rest.make_call(&call()).await.unwrap_err();
    assert!(matches!(err, RestError::Server { status: 503, .. }));
    assert_eq!(fake.requests().len(), 1, "a second POST could ring twice");
    assert!(fake.calls().is_empty());
}

#[tokio::test]
async fn make_call_is_retried_after_a_429() {
    let (fake, rest) = setup().await;
    fake.fail_next(1, 429);
    let response = rest.make_call(&call()).await.unwrap();
    assert_eq!(fake.requests().len(), 2);
    assert_eq!(fake.calls().len(), 1);
    assert_eq!(fake.calls()[0].call_uuid, response.request_uuid);
}

#[tokio::test]
async fn make_call_is_not_retried_after_a_timeout_but_get_is() {
    let fake = FakePlivo::start(ID, TOKEN).await.unwrap();
    let rest = PlivoRest::new(RestConfig {
        request_timeout: Duration::from_millis(300),
        ..config(fake.base_url())
    })
    .unwrap();
    fake.stall_next(1, Duration::from_secs(2));
    let err = rest.make_call(&call()).await.unwrap_err();
    assert_eq!(err, RestError::Timeout);
    assert_eq!(fake.requests().len(), 1);
    // Why: Plivo did place the call before the reply was lost.
    let uuid = fake.calls()[0].call_uuid.clone();

    fake.set_live(&uuid, "in-progress").unwrap();
    fake.stall_next(1, Duration::from_secs(2));
    assert!(rest.live_call(&uuid).await.unwrap().is_some());
    assert_eq!(fake.requests().len(), 3, "the GET was retried once");
}

#[tokio::test]
async fn retry_after_is_honoured_and_too_long_gives_up() {
    let (fake, rest) = setup().await;
    let uuid = placed(&rest).await;
    fake.rate_limit_next(1, 1);
    let started = Instant::now();
    assert_eq!(rest.cdr(&uuid).await.unwrap(), None);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "backoff alone is ≤ 5 ms; only Retry-After waits a second"
    );

    fake.rate_limit_next(1, 60);
    let started = Instant::now();
    let err = rest.cdr(&uuid).await.unwrap_err();
    assert_eq!(err.retry_after(), Some(Duration::from_secs(60)));
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "does not wait 60 s"
    );
    assert_eq!(fake.requests().len(), 1 + 2 + 1);
}

#[tokio::test]
async fn connect_errors_are_retriable_even_for_make_call() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let rest = PlivoRest::new(config(base)).unwrap();
    let err = rest.make_call(&call()).await.unwrap_err();
    assert_eq!(err.kind(), "connect", "{err}");
    assert!(err.is_retriable(false));
}

#[test]
fn retriable_outcomes() {
    let server = RestError::Server {
        status: 500,
        message: String::new(),
    };
    let limited = RestError::RateLimited {
        retry_after: None,
        message: String::new(),
    };
    let connect = RestError::Connect {
        message: String::new(),
    };
    let network = RestError::Network {
        message: String::new(),
    };
    for (error, idempotent, post) in [
        (&server, true, false),
        (&RestError::Timeout, true, false),
        (&network, true, false),
        (&limited, true, true),
        (&connect, true, true),
        (
            &RestError::Forbidden {
                message: String::new(),
            },
            false,
            false,
        ),
        (
            &RestError::Decode {
                message: String::new(),
            },
            false,
            false,
        ),
    ] {
        assert_eq!(error.is_retriable(true), idempotent, "{error:?} GET");
        assert_eq!(error.is_retriable(false), post, "{error:?} POST");
    }
}

#[test]
fn config_is_checked_and_never_shows_the_token() {
    let bad = |c: RestConfig| PlivoRest::new(c).unwrap_err();
    let good = RestConfig::new(ID, TOKEN);
    assert!(matches!(
        bad(RestConfig {
            auth_id: "MA/../x".into(),
            ..good.clone()
        }),
        BuildError::AuthId
    ));
    assert!(matches!(
        bad(RestConfig {
            auth_token: String::new(),
            ..good.clone()
        }),
        BuildError::AuthToken
    ));
    for url in [
        "api.plivo.com",
        "ftp://api.plivo.com",
        "https://api.plivo.com/?x=1",
    ] {
        let config = RestConfig {
            base_url: url.into(),
            ..good.clone()
        };
        assert!(matches!(bad(config), BuildError::BaseUrl { .. }), "{url}");
    }
    let mut spinning = good.clone();
    spinning.retry.base = Duration::ZERO;
    assert!(matches!(bad(spinning), BuildError::Retry(_)));
    let rest = PlivoRest::new(RestConfig {
        base_url: "https://api.plivo.com/".into(),
        ..good.clone()
    })
    .unwrap();
    assert_eq!(
        rest.account_url(),
        format!("https://api.plivo.com/v1/Account/{ID}")
    );
    assert!(!format!("{good:?}").contains(TOKEN));
    assert!(!format!("{rest:?}").contains(TOKEN));
}

#[test]
fn sdk_fixture_shapes_parse() {
    // plivo-python tests/resources/fixtures/callCreateResponse.json
    let created: MakeCallResponse = serde_json::from_str(
        r#"{"message": "call fired", "request_uuid": "9834029e-58b6-11e1-b8b7-a5bd0e4e126f",
            "api_id": "97ceeb52-58b6-11e1-86da-77300b68f8bb"}"#,
    )
    .unwrap();
    assert_eq!(created.request_uuid, "9834029e-58b6-11e1-b8b7-a5bd0e4e126f");
    let bulk: MakeCallResponse =
        serde_json::from_str(r#"{"request_uuid": ["a-1", "b-2"], "api_id": "x"}"#).unwrap();
    assert_eq!(
        (bulk.request_uuid.as_str(), bulk.message.as_str()),
        ("a-1", "")
    );
    assert!(serde_json::from_str::<MakeCallResponse>(r#"{"request_uuid": []}"#).is_err());

    // plivo-go fixtures/liveCallGetResponse.json
    let live: LiveCall = serde_json::from_str(
        r#"{"api_id": "18f3bbb0-3ef1-11e7-a68e-02d2f90c026e", "call_status": "in-progress",
            "call_uuid": "d0a87a1a-b0e9-4ab2-ac07-c22ee87cd04a", "caller_name": "",
            "direction": "outbound", "from": "+918687888990",
            "request_uuid": "d0a87a1a-b0e9-4ab2-ac07-c22ee87cd04a",
            "session_start": "2017-05-22 13:17:49.050872", "to": "919798990001",
            "stir_verification": "Verified"}"#,
    )
    .unwrap();
    assert_eq!(live.call_status, "in-progress");
    assert_eq!(live.parent_call_uuid, None);
    assert_eq!(live.stir_verification.as_deref(), Some("Verified"));

    // plivo-go fixtures/callGetResponse.json, with the numbers as strings as some
    // accounts return them, and a field the client does not know.
    let cdr: Cdr = serde_json::from_str(
        r#"{"answer_time": null, "api_id": "95727cf4-3eeb-11e7-8edf-02ed609bd62b",
            "bill_duration": "0", "billed_duration": 0, "call_direction": "outbound",
            "call_duration": "0", "call_uuid": "4d04c52e-cea3-4458-bbdb-0bfc314ee7cd",
            "end_time": "2017-05-22 17:49:40+05:30", "from_number": "+919879879876",
            "initiation_time": "2017-05-22 17:49:30+05:30", "parent_call_uuid": null,
            "resource_uri": "/v1/Account/MAJHUDTEYWLSIUYTDBCZ/Call/4d04c52e-cea3-4458-bbdb-0bfc314ee7cd/",
            "to_number": "919999999999", "total_amount": "0.00000", "total_rate": "0.03570",
            "stir_verification": "Not Applicable", "voice_network_group": "India All Networks",
            "hangup_cause_code": "3010"}"#,
    )
    .unwrap();
    assert_eq!(cdr.bill_duration, Some(0));
    assert_eq!(cdr.call_duration, Some(0));
    assert_eq!(cdr.hangup_cause_code, Some(3010));
    assert!(!cdr.was_answered());
    let end = cdr.end_time().unwrap();
    let start = cdr.initiation_time().unwrap();
    assert_eq!(end.offset, chrono::FixedOffset::east_opt(19_800));
    let utc = chrono::FixedOffset::east_opt(0).unwrap();
    assert_eq!((end.to_utc(utc) - start.to_utc(utc)).num_seconds(), 10);
    assert!(
        serde_json::from_str::<Cdr>(r#"{"bill_duration": 3}"#).is_err(),
        "no call_uuid"
    );
}
