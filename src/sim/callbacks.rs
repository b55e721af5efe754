//! The HTTP half of Plivo's side: the answer request, the stream status and hangup
//! callbacks, and the signed WebSocket upgrade request.
//!
//! Owns: the fields Plivo sends (reference §1.2, §3, §5.2), where each request goes
//! ([`StreamConnect`] rewriting, loopback checks), and attaching V3 signatures made by
//! [`crate::telephony::plivo::signature`]. Never: signs or parses XML itself (the
//! telephony module does both), and never lets a callback failure fail the call: callbacks
//! come back as [`CallbackResult`]s.

use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::handshake::client::Request;
use tokio_tungstenite::tungstenite::http::HeaderValue;

use crate::telephony::plivo::answer::{self, ParsedStream, StreamElement};
use crate::telephony::plivo::signature::{self, Method};
use crate::telephony::plivo::stream::MediaFormat;

use super::config::{AnswerMethod, SimConfig, StreamConnect};
use super::error::SimError;
use super::report::{CallbackResult, HungUpBy};

/// Longest body quoted in an error.
const QUOTE_BYTES: usize = 200;

/// The `<Stream>` the server answered with, checked.
#[derive(Debug)]
pub(crate) struct Answered {
    /// The element as parsed.
    pub stream: StreamElement,
    /// The audio format its `contentType` names.
    pub format: MediaFormat,
    /// Things Plivo would frown on but still accept: (kind, detail).
    pub notes: Vec<(&'static str, String)>,
}

/// Parameters common to every request about this call.
pub(crate) fn call_params(cfg: &SimConfig) -> Vec<(String, String)> {
    [
        ("CallUUID", cfg.call_uuid.as_str()),
        ("From", cfg.from.as_str()),
        ("To", cfg.to.as_str()),
        ("Direction", "inbound"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

fn push(params: &mut Vec<(String, String)>, key: &str, value: impl Into<String>) {
    params.push((key.to_owned(), value.into()));
}

/// Fetches the answer URL as Plivo does and checks the `<Stream>` it returns.
pub(crate) async fn answer(
    client: &reqwest::Client,
    cfg: &SimConfig,
    session_start: SystemTime,
) -> Result<Answered, SimError> {
    let mut params = call_params(cfg);
    push(&mut params, "CallStatus", "in-progress");
    push(&mut params, "Event", "StartApp");
    push(&mut params, "RequestUUID", cfg.call_uuid.as_str());
    push(&mut params, "SessionStart", plivo_time(session_start, true));
    push(&mut params, "BillRate", "0.0085");
    push(&mut params, "ParentAuthID", cfg.account_id.as_str());
    push(&mut params, "CallerName", cfg.from.as_str());

    let base = cfg.server_path(&cfg.answer_path);
    let request = match cfg.answer_method {
        AnswerMethod::Post => {
            let headers = sign(cfg, Method::Post, &base, &params);
            with_headers(client.post(&base).form(&params), headers)
        }
        AnswerMethod::Get => {
            let query: String = form_urlencoded::Serializer::new(String::new())
                .extend_pairs(&params)
                .finish();
            let url = format!("{base}?{query}");
            let headers = sign(cfg, Method::Get, &url, &[]);
            with_headers(client.get(&url), headers)
        }
    };
    let response = tokio::time::timeout(cfg.timeouts.answer, async {
        let response = request.send().await?;
        let status = response.status();
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = response.text().await?;
        Ok::<_, reqwest::Error>((status, content_type, body))
    })
    .await
    .map_err(|_| SimError::Timeout { stage: "answer" })?;
    let (status, content_type, body) = response.map_err(|source| SimError::Answer {
        url: base.clone(),
        source,
    })?;
    if !status.is_success() {
        return Err(SimError::AnswerStatus {
            status: status.as_u16(),
            body: quote(&body),
        });
    }

    let mut notes = Vec::new();
    let xml_type = content_type.as_deref().is_some_and(|ct| {
        let ct = ct.to_ascii_lowercase();
        ct.starts_with("application/xml") || ct.starts_with("text/xml")
    });
    if !xml_type {
        notes.push((
            "answer_content_type",
            format!("answer Content-Type is {content_type:?}, not application/xml or text/xml"),
        ));
    }
    let stream = match answer::parse_stream_response(&body) {
        Ok(ParsedStream::Stream(stream)) => stream,
        Ok(ParsedStream::Refused { reason }) => return Err(SimError::Refused { reason }),
        Err(source) => {
            return Err(SimError::AnswerXml {
                source,
                body: quote(&body),
            });
        }
    };
    if !stream.keep_call_alive {
        notes.push((
            "keep_call_alive_missing",
            "<Stream> without keepCallAlive=\"true\": Plivo runs the next element at once and ends the call within seconds (4010)".to_owned(),
        ));
    }
    if !stream.bidirectional {
        notes.push((
            "not_bidirectional",
            "<Stream> without bidirectional=\"true\": Plivo plays nothing back".to_owned(),
        ));
    }
    let format = stream_format(cfg, &stream, &mut notes)?;
    Ok(Answered {
        stream,
        format,
        notes,
    })
}

/// The format a `<Stream contentType>` names, checked against what the run expects.
fn stream_format(
    cfg: &SimConfig,
    stream: &StreamElement,
    notes: &mut Vec<(&'static str, String)>,
) -> Result<MediaFormat, SimError> {
    let format = match stream.content_type.as_deref() {
        None => {
            notes.push((
                "content_type_missing",
                "<Stream> has no contentType (Plivo's default is disputed); assuming audio/x-mulaw;rate=8000".to_owned(),
            ));
            MediaFormat::MuLaw8k
        }
        Some(ct) => {
            let rate = ct
                .split(';')
                .filter_map(|p| p.trim().strip_prefix("rate="))
                .find_map(|r| r.parse().ok())
                .unwrap_or(8_000);
            MediaFormat::from_plivo(ct, rate).ok_or_else(|| SimError::ContentType {
                got: Some(ct.to_owned()),
                why: "not one Plivo streams (audio/x-mulaw;rate=8000, audio/x-l16;rate=8000 or 16000)".to_owned(),
            })?
        }
    };
    match cfg.expect_content_type {
        Some(want) if want != format => Err(SimError::ContentType {
            got: stream.content_type.clone(),
            why: format!(
                "expected {};rate={}",
                want.content_type(),
                want.sample_rate()
            ),
        }),
        _ => Ok(format),
    }
}

/// The URL to dial for the stream URL `given`.
pub(crate) fn stream_target(cfg: &SimConfig, given: &str) -> Result<reqwest::Url, SimError> {
    let bad = |why: &str| SimError::StreamUrl {
        url: given.to_owned(),
        why: why.to_owned(),
    };
    let url = reqwest::Url::parse(given).map_err(|e| bad(&e.to_string()))?;
    if !matches!(url.scheme(), "ws" | "wss") {
        return Err(bad("not a ws:// or wss:// URL"));
    }
    let via_server = match cfg.stream_connect {
        StreamConnect::AsGiven => false,
        StreamConnect::ViaServer => true,
        StreamConnect::Auto => url.scheme() == "wss",
    };
    let target = if via_server {
        let server = cfg.server_url()?;
        let scheme = if server.scheme() == "https" {
            "wss"
        } else {
            "ws"
        };
        rebase(&url, &server, scheme).ok_or_else(|| bad("cannot be rebased on the server URL"))?
    } else {
        url
    };
    if cfg.loopback_only {
        require_loopback(&target)?;
    }
    Ok(target)
}

/// Where to post a stream status callback given as `given`.
pub(crate) fn callback_target(cfg: &SimConfig, given: &str) -> Result<reqwest::Url, SimError> {
    let bad = |why: String| SimError::Config(format!("statusCallbackUrl {given:?}: {why}"));
    let url = reqwest::Url::parse(given).map_err(|e| bad(e.to_string()))?;
    let target = if cfg.stream_connect == StreamConnect::ViaServer {
        let server = cfg.server_url()?;
        rebase(&url, &server, server.scheme()).ok_or_else(|| bad("cannot be rebased".into()))?
    } else {
        url
    };
    if cfg.loopback_only {
        require_loopback(&target)?;
    }
    Ok(target)
}

/// `url`'s path and query on `server`'s host and port, with `scheme`.
fn rebase(url: &reqwest::Url, server: &reqwest::Url, scheme: &str) -> Option<reqwest::Url> {
    let host = server.host_str()?;
    let port = server.port().map(|p| format!(":{p}")).unwrap_or_default();
    let query = url.query().map(|q| format!("?{q}")).unwrap_or_default();
    reqwest::Url::parse(&format!("{scheme}://{host}{port}{}{query}", url.path())).ok()
}

/// Refuses URLs whose host is not a loopback address or `localhost`.
pub(crate) fn require_loopback(url: &reqwest::Url) -> Result<(), SimError> {
    let host = url.host_str().unwrap_or("");
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = match bare.parse::<IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => host.eq_ignore_ascii_case("localhost"),
    };
    if loopback {
        Ok(())
    } else {
        Err(SimError::NotLoopback(url.to_string()))
    }
}

/// The WebSocket upgrade request for `dial`, signed over the `http://` form of `given`
/// (the URL as the XML gave it, which is what Plivo signs).
pub(crate) fn ws_request(
    cfg: &SimConfig,
    dial: &reqwest::Url,
    given: &str,
) -> Result<Request, SimError> {
    let mut request = dial
        .as_str()
        .into_client_request()
        .map_err(|e| SimError::StreamUrl {
            url: dial.to_string(),
            why: e.to_string(),
        })?;
    let signing_url = signature::websocket_signing_url(given);
    for (name, value) in sign(cfg, Method::Get, &signing_url, &[]) {
        if let Ok(value) = HeaderValue::from_str(&value) {
            request.headers_mut().insert(name, value);
        }
    }
    Ok(request)
}

/// Posts (or GETs) a callback; never fails the call.
pub(crate) async fn send_callback(
    client: &reqwest::Client,
    cfg: &SimConfig,
    event: &str,
    url: &str,
    method: Method,
    params: &[(String, String)],
) -> CallbackResult {
    let request = match method {
        Method::Post => with_headers(
            client.post(url).form(params),
            sign(cfg, Method::Post, url, params),
        ),
        Method::Get => {
            let query: String = form_urlencoded::Serializer::new(String::new())
                .extend_pairs(params)
                .finish();
            let sep = if url.contains('?') { '&' } else { '?' };
            let full = format!("{url}{sep}{query}");
            let headers = sign(cfg, Method::Get, &full, &[]);
            with_headers(client.get(&full), headers)
        }
    };
    let outcome = tokio::time::timeout(cfg.timeouts.callback, request.send()).await;
    let (status, error) = match outcome {
        Ok(Ok(response)) => (Some(response.status().as_u16()), None),
        Ok(Err(e)) => (None, Some(e.to_string())),
        Err(_) => (None, Some("timed out".to_owned())),
    };
    CallbackResult {
        event: event.to_owned(),
        url: url.to_owned(),
        status,
        error,
    }
}

/// The hangup callback's fields (reference §5.2). `sim_duration` is the call's length on the
/// simulated clock. A stream that ended on Plivo's side (the server closed the socket, or
/// `streamTimeout`) with nothing after `<Stream>` is End Of XML Instructions (4010); a
/// hangup through the REST API is a Normal Hangup from `API Request`; the caller's is a
/// Normal Hangup from `Caller`.
pub(crate) fn hangup_params(
    cfg: &SimConfig,
    answered_at: SystemTime,
    sim_duration: Duration,
    by: HungUpBy,
) -> Vec<(String, String)> {
    let secs = sim_duration.as_secs() + u64::from(sim_duration.subsec_nanos() > 0);
    let end = answered_at + sim_duration;
    let (code, name, source) = match by {
        HungUpBy::Gateway | HungUpBy::Plivo => ("4010", "End Of XML Instructions", "Plivo"),
        HungUpBy::GatewayRest => ("4000", "Normal Hangup", "API Request"),
        HungUpBy::Caller => ("4000", "Normal Hangup", "Caller"),
    };
    let mut params = call_params(cfg);
    push(&mut params, "CallStatus", "completed");
    push(&mut params, "Event", "Hangup");
    push(&mut params, "HangupCause", "NORMAL_CLEARING");
    push(&mut params, "HangupCauseCode", code);
    push(&mut params, "HangupCauseName", name);
    push(&mut params, "HangupSource", source);
    push(&mut params, "Duration", secs.to_string());
    push(&mut params, "BillDuration", secs.to_string());
    push(&mut params, "StartTime", plivo_time(answered_at, false));
    push(&mut params, "AnswerTime", plivo_time(answered_at, false));
    push(&mut params, "EndTime", plivo_time(end, false));
    push(&mut params, "RequestUUID", cfg.call_uuid.as_str());
    push(&mut params, "ParentAuthID", cfg.account_id.as_str());
    params
}

/// A stream status callback's fields (reference §3).
pub(crate) fn stream_status_params(
    cfg: &SimConfig,
    event: &str,
    stream_id: &str,
    at: SystemTime,
) -> Vec<(String, String)> {
    let mut params = call_params(cfg);
    push(&mut params, "Event", event);
    push(&mut params, "StreamID", stream_id);
    push(&mut params, "Timestamp", plivo_time(at, false));
    params
}

/// The method a `statusCallbackMethod` names (POST unless it says GET).
pub(crate) fn callback_method(given: Option<&str>) -> Method {
    match given {
        Some(m) if m.trim().eq_ignore_ascii_case("GET") => Method::Get,
        _ => Method::Post,
    }
}

fn sign(
    cfg: &SimConfig,
    method: Method,
    url: &str,
    params: &[(String, String)],
) -> Vec<(&'static str, String)> {
    match cfg.auth_token.as_deref() {
        Some(token) => signature::sign_v3_headers(token, method, url, params).to_vec(),
        None => Vec::new(),
    }
}

fn with_headers(
    mut request: reqwest::RequestBuilder,
    headers: Vec<(&'static str, String)>,
) -> reqwest::RequestBuilder {
    for (name, value) in headers {
        request = request.header(name, value);
    }
    request
}

fn quote(body: &str) -> String {
    let mut end = body.len().min(QUOTE_BYTES);
    while !body.is_char_boundary(end) {
        end -= 1;
    }
    body[..end].to_owned()
}

/// `yyyy-MM-dd HH:mm:ss` in UTC, with `.ffffff` microseconds when `micros` (Plivo's
/// `SessionStart` format).
pub(crate) fn plivo_time(t: SystemTime, micros: bool) -> String {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    let (hh, mm, ss) = (rem / 3600, rem % 3600 / 60, rem % 60);
    let base = format!("{y:04}-{m:02}-{d:02} {hh:02}:{mm:02}:{ss:02}");
    if micros {
        format!("{base}.{:06}", since.subsec_micros())
    } else {
        base
    }
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telephony::plivo::callback::{
        CallStatus, Callback, CallbackEvent, CallbackKind, Hangup, StreamEvent, StreamStatus,
    };

    /// The simulator's callbacks read back, through the server's own parser, as what
    /// they mean to say.
    #[test]
    fn callbacks_parse_as_the_server_reads_them() {
        let cfg = SimConfig::new("http://127.0.0.1:8080/", Vec::new());
        let answered = UNIX_EPOCH + Duration::from_secs(1_714_644_900);
        for (by, cause, source) in [
            (HungUpBy::Caller, "Normal Hangup", "Caller"),
            (HungUpBy::Gateway, "End Of XML Instructions", "Plivo"),
            (HungUpBy::GatewayRest, "Normal Hangup", "API Request"),
        ] {
            let params = hangup_params(&cfg, answered, Duration::from_millis(41_200), by);
            let field = |k: &str| {
                params
                    .iter()
                    .find(|(key, _)| key == k)
                    .map(|(_, v)| v.as_str())
            };
            assert_eq!(field("HangupSource"), Some(source));
            let callback = Callback::from_params(CallbackKind::Hangup, &[], &params).unwrap();
            assert_eq!(callback.call_id, cfg.call_uuid);
            assert_eq!(
                callback.idempotency_key,
                format!("hangup:{}", cfg.call_uuid)
            );
            assert_eq!(
                callback.event,
                CallbackEvent::Hangup(Hangup {
                    status: CallStatus::Completed,
                    cause: Some(cause.into()),
                    duration_secs: Some(42),
                })
            );
        }
        let params = stream_status_params(&cfg, "StopStream", "s-1", answered);
        let callback = Callback::from_params(CallbackKind::StreamStatus, &[], &params).unwrap();
        assert_eq!(
            callback.idempotency_key,
            "stream:s-1:StopStream:2024-05-02 10:15:00"
        );
        assert_eq!(
            callback.event,
            CallbackEvent::StreamStatus(StreamStatus {
                stream_id: Some("s-1".into()),
                event: Some(StreamEvent::StopStream),
            })
        );
    }

    #[test]
    fn plivo_time_formats_utc() {
        let t = UNIX_EPOCH + Duration::from_micros(1_586_345_673_238_707);
        assert_eq!(plivo_time(t, true), "2020-04-08 11:34:33.238707");
        assert_eq!(plivo_time(t, false), "2020-04-08 11:34:33");
        assert_eq!(plivo_time(UNIX_EPOCH, false), "1970-01-01 00:00:00");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(plivo_time(leap, false), "2000-02-29 00:00:00");
    }

    #[test]
    fn loopback_is_required_only_of_loopback_hosts() {
        let ok = |u: &str| require_loopback(&reqwest::Url::parse(u).unwrap()).is_ok();
        assert!(ok("http://127.0.0.1:8080/x"));
        assert!(ok("ws://localhost/x"));
        assert!(ok("http://[::1]:9/"));
        assert!(!ok("http://10.0.0.1/"));
        assert!(!ok("wss://media.example.net/plivo/stream"));
    }

    #[test]
    fn wss_stream_urls_are_dialled_through_the_server() {
        let cfg = SimConfig::new("http://127.0.0.1:8080/", Vec::new());
        let given = "wss://media.example.net/plivo/stream?call_id=a%20b&x=1";
        let target = stream_target(&cfg, given).unwrap();
        assert_eq!(
            target.as_str(),
            "ws://127.0.0.1:8080/plivo/stream?call_id=a%20b&x=1"
        );
        let plain = stream_target(&cfg, "ws://127.0.0.1:9/s").unwrap();
        assert_eq!(plain.as_str(), "ws://127.0.0.1:9/s");
        let mut strict = cfg.clone();
        strict.loopback_only = true;
        strict.stream_connect = StreamConnect::AsGiven;
        assert!(matches!(
            stream_target(&strict, given),
            Err(SimError::NotLoopback(_))
        ));
        assert!(matches!(
            stream_target(&cfg, "http://127.0.0.1/s"),
            Err(SimError::StreamUrl { .. })
        ));
    }
}
