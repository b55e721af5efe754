//! The requests Plivo makes to a placed call's URLs — ring, answer, hangup — with the
//! fields of reference §1.2 and §5.2, form-encoded (or in the query for GET) and signed
//! with V3 by [`crate::telephony::plivo::signature`] using the account's auth token.

use crate::telephony::plivo::signature::{self, Method};

use super::server::time;
use super::{Completion, FakeCall, FakeError};

/// What the callback's target answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackReply {
    /// The URL requested (for GET, with the parameters in its query).
    pub url: String,
    /// The HTTP status.
    pub status: u16,
    /// The `Content-Type` header.
    pub content_type: Option<String>,
    /// The body (for the answer URL: the XML).
    pub body: String,
}

/// Fields of every callback about `call`.
fn base_params(call: &FakeCall, auth_id: &str) -> Vec<(String, String)> {
    let mut params = vec![
        pair("CallUUID", &call.call_uuid),
        pair("From", &call.from),
        pair("To", &call.to),
        pair("Direction", &call.direction),
        pair("RequestUUID", &call.request_uuid),
        pair("ParentAuthID", auth_id),
    ];
    if call.direction == "outbound" {
        params.push(pair("ALegUUID", &call.call_uuid));
        params.push(pair("ALegRequestUUID", &call.request_uuid));
    }
    if let Some(name) = call.param("caller_name") {
        params.push(pair("CallerName", name));
    }
    params
}

/// The ring URL's fields.
pub(super) fn ring_params(call: &FakeCall, auth_id: &str) -> Vec<(String, String)> {
    let mut params = base_params(call, auth_id);
    params.push(pair("CallStatus", "ringing"));
    params.push(pair("Event", "Ring"));
    params
}

/// The answer URL's fields, with `sip_headers` (`k=v,k2=v2`) as `X-PH-k`.
pub(super) fn answer_params(call: &FakeCall, auth_id: &str) -> Vec<(String, String)> {
    let mut params = base_params(call, auth_id);
    params.push(pair("CallStatus", "in-progress"));
    params.push(pair("Event", "StartApp"));
    params.push(pair(
        "SessionStart",
        &call.placed_at.format("%Y-%m-%d %H:%M:%S%.6f").to_string(),
    ));
    params.push(pair("BillRate", "0.0085"));
    for header in call.param("sip_headers").unwrap_or("").split(',') {
        if let Some((key, value)) = header.split_once('=') {
            params.push((format!("X-PH-{}", key.trim()), value.trim().to_owned()));
        }
    }
    params
}

/// The hangup URL's fields for an ended call.
pub(super) fn hangup_params(
    call: &FakeCall,
    completion: &Completion,
    auth_id: &str,
) -> Vec<(String, String)> {
    let secs = completion.answered_secs.unwrap_or(0).to_string();
    let mut params = base_params(call, auth_id);
    params.extend([
        pair("CallStatus", &completion.call_status),
        pair("Event", "Hangup"),
        pair("HangupCause", &completion.hangup_cause),
        pair("HangupCauseCode", &completion.hangup_cause_code.to_string()),
        pair("HangupCauseName", &completion.hangup_cause_name),
        pair("HangupSource", &completion.hangup_source),
        pair("Duration", &secs),
        pair("BillDuration", &secs),
        pair("StartTime", &time(call.placed_at)),
        pair("EndTime", &call.ended_at.map(time).unwrap_or_default()),
    ]);
    if let Some(answered) = completion.answered_secs.and(call.answered_at) {
        params.push(pair("AnswerTime", &time(answered)));
    }
    params
}

/// Requests `url` with `params` as Plivo does: POST form (the default) or GET query
/// (`method` `GET`), signed over the URL without its `#` fragment (Plivo's timeout
/// settings live there).
pub(super) async fn send(
    client: &reqwest::Client,
    auth_token: &str,
    url: &str,
    method: Option<&str>,
    params: &[(String, String)],
) -> Result<CallbackReply, FakeError> {
    let url = url.split('#').next().unwrap_or(url);
    let get = method.is_some_and(|m| m.trim().eq_ignore_ascii_case("GET"));
    let (mut request, url, headers) = if get {
        let query: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params)
            .finish();
        let separator = if url.contains('?') { '&' } else { '?' };
        let full = format!("{url}{separator}{query}");
        let headers = signature::sign_v3_headers(auth_token, Method::Get, &full, &[]);
        (client.get(&full), full, headers)
    } else {
        let headers = signature::sign_v3_headers(auth_token, Method::Post, url, params);
        (client.post(url).form(params), url.to_owned(), headers)
    };
    for (name, value) in headers {
        request = request.header(name, value);
    }
    let failed = |e: reqwest::Error| FakeError::Http {
        url: url.clone(),
        message: e.to_string(),
    };
    let response = request.send().await.map_err(failed)?;
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = response.text().await.map_err(failed)?;
    Ok(CallbackReply {
        url,
        status,
        content_type,
        body,
    })
}

fn pair(key: &str, value: &str) -> (String, String) {
    (key.to_owned(), value.to_owned())
}
