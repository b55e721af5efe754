//! Plivo's REST API, the calls voxgate makes (reference §4): place a call, read a live
//! call, read a completed call's record (CDR), hang up, cancel a request.
//!
//! Owns: [`PlivoApi`], the object-safe trait the control plane holds as
//! `Arc<dyn PlivoApi>` (so tests swap in a fake), and [`PlivoRest`], its implementation
//! over one `reqwest::Client` built once with Basic auth, `User-Agent: voxgate/<version>`,
//! a per-attempt timeout and no redirects. Layout: `types` (shapes and tolerant parsing),
//! `error` ([`RestError`] and whether an outcome is retriable); when to retry is
//! [`crate::retry`]'s business.
//!
//! Invariants and what this module must never do:
//! - never send a request whose path would hold an empty or odd uuid: a uuid must be 1–64
//!   characters of `[A-Za-z0-9-]`, else [`RestError::InvalidCallUuid`] before any I/O.
//!   `DELETE .../Call//` (or `.../Call/`) hangs up every call on the account;
//! - never retry Make Call unless Plivo provably did not act on it (connect error, 429):
//!   a retried POST after a timeout or 5xx may ring the callee twice;
//! - never log or `Debug`-print the auth token; the `Authorization` header is marked
//!   sensitive and errors never carry a request;
//! - paths always end with `/`, as Plivo requires; bodies of POSTs are JSON;
//! - response bodies are read up to [`MAX_BODY_BYTES`], never more.
//!
//! Logging: each retry at `warn`, a give-up after retrying at `error` once. A request
//! that fails without retrying is not logged here beyond `debug`: the caller owns that
//! outcome.

mod error;
mod types;

#[cfg(test)]
mod tests;

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode};

use crate::retry::{self, Backoff, RetryPolicy};

pub use error::{BuildError, RestError};
pub use types::{
    CallbackMethod, Cdr, HangupOutcome, LiveCall, MakeCall, MakeCallResponse, PlivoTime,
};

/// Plivo's API host.
pub const DEFAULT_BASE_URL: &str = "https://api.plivo.com";

/// The most of a response body ever read (Plivo's answers are a few hundred bytes).
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// Longest uuid accepted in a path (Plivo's are 36 characters).
const MAX_UUID_CHARS: usize = 64;

/// Plivo's REST API as the control plane uses it. Object-safe: hold it as
/// `Arc<dyn PlivoApi>`.
///
/// Every method that takes a uuid refuses an empty or non-`[A-Za-z0-9-]` one with
/// [`RestError::InvalidCallUuid`] without sending anything.
#[async_trait]
pub trait PlivoApi: Send + Sync {
    /// Places an outbound call (`POST .../Call/`, expects 201). Retried only when Plivo
    /// provably did not act (connect error, 429).
    async fn make_call(&self, call: &MakeCall) -> Result<MakeCallResponse, RestError>;

    /// The call if it is live (`GET .../Call/{uuid}/?status=live`); `Ok(None)` on 404:
    /// not live, yet or any more.
    async fn live_call(&self, call_uuid: &str) -> Result<Option<LiveCall>, RestError>;

    /// The call's record (`GET .../Call/{uuid}/`); `Ok(None)` on 404: not registered yet
    /// (Plivo writes it only after the call ends) or unknown.
    async fn cdr(&self, call_uuid: &str) -> Result<Option<Cdr>, RestError>;

    /// Hangs up a live or queued call (`DELETE .../Call/{uuid}/`): 204 →
    /// [`HangupOutcome::HungUp`], 404 → [`HangupOutcome::AlreadyGone`].
    async fn hangup(&self, call_uuid: &str) -> Result<HangupOutcome, RestError>;

    /// Cancels a queued or ringing API call by its Make Call `request_uuid`
    /// (`DELETE .../Request/{uuid}/`): 204 → `HungUp`, 404 → `AlreadyGone`.
    async fn cancel_request(&self, request_uuid: &str) -> Result<HangupOutcome, RestError>;
}

/// How to reach Plivo. `Debug` never shows the auth token.
#[derive(Clone)]
pub struct RestConfig {
    /// Scheme and host, e.g. [`DEFAULT_BASE_URL`]; tests point it at a local fake.
    pub base_url: String,
    /// Account (`MA…`) or subaccount (`SA…`) id: the Basic-auth user and part of each path.
    pub auth_id: String,
    /// The account's auth token: the Basic-auth password.
    pub auth_token: String,
    /// Limit for one attempt, connect to last body byte.
    pub request_timeout: Duration,
    /// Retry timing: attempt budget, backoff base and cap, longest `Retry-After` honoured.
    pub retry: RetryPolicy,
}

impl RestConfig {
    /// Plivo's production API with `auth_id`/`auth_token` and the defaults: 30 s per
    /// attempt, 3 retries, backoff from 500 ms capped at 8 s, `Retry-After` up to 30 s.
    pub fn new(auth_id: impl Into<String>, auth_token: impl Into<String>) -> Self {
        Self {
            base_url: DEFAULT_BASE_URL.to_owned(),
            auth_id: auth_id.into(),
            auth_token: auth_token.into(),
            request_timeout: Duration::from_secs(30),
            retry: RetryPolicy {
                base: Duration::from_millis(500),
                cap: Duration::from_secs(8),
                max_attempts: None,
                max_age: None,
                max_retry_after: Some(Duration::from_secs(30)),
            }
            .with_retries(3),
        }
    }
}

impl fmt::Debug for RestConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RestConfig")
            .field("base_url", &self.base_url)
            .field("auth_id", &self.auth_id)
            .field("auth_token", &"<redacted>")
            .field("request_timeout", &self.request_timeout)
            .field("retry", &self.retry)
            .finish()
    }
}

/// The Plivo REST client. Build once and share (`Arc<dyn PlivoApi>`); it holds a
/// connection pool.
#[derive(Clone)]
pub struct PlivoRest {
    client: reqwest::Client,
    /// `{base}/v1/Account/{auth_id}`, no trailing slash.
    account_url: String,
    retry: RetryPolicy,
}

impl fmt::Debug for PlivoRest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PlivoRest")
            .field("account_url", &self.account_url)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

/// One request to make, possibly several times.
struct Request {
    op: &'static str,
    method: Method,
    url: String,
    json: Option<Vec<u8>>,
    /// 404 is an answer (`Reply::NotFound`), not an error.
    not_found_ok: bool,
}

impl Request {
    /// GET and DELETE may be repeated; POST (Make Call) may not.
    fn idempotent(&self) -> bool {
        self.method == Method::GET || self.method == Method::DELETE
    }
}

/// A successful exchange.
enum Reply {
    Success(Vec<u8>),
    NotFound,
}

impl PlivoRest {
    /// Builds the client. Fails on a bad base URL, an empty or non-alphanumeric auth id,
    /// an empty auth token, a retry policy that does not validate, or a TLS backend that
    /// will not start.
    pub fn new(config: RestConfig) -> Result<Self, BuildError> {
        config.retry.validate()?;
        let base = config.base_url.trim_end_matches('/');
        let bad_url = |why: &str| BuildError::BaseUrl {
            url: config.base_url.clone(),
            why: why.to_owned(),
        };
        let parsed = reqwest::Url::parse(base).map_err(|e| bad_url(&e.to_string()))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(bad_url("not http or https"));
        }
        if parsed.query().is_some() || parsed.fragment().is_some() {
            return Err(bad_url("has a query or fragment"));
        }
        if config.auth_id.is_empty() || !config.auth_id.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(BuildError::AuthId);
        }
        if config.auth_token.is_empty() {
            return Err(BuildError::AuthToken);
        }

        let credentials = BASE64.encode(format!("{}:{}", config.auth_id, config.auth_token));
        let mut auth = HeaderValue::from_str(&format!("Basic {credentials}"))
            .map_err(|_| BuildError::AuthToken)?;
        auth.set_sensitive(true);
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, auth);
        let client = reqwest::Client::builder()
            .user_agent(concat!("voxgate/", env!("CARGO_PKG_VERSION")))
            .default_headers(headers)
            .timeout(config.request_timeout)
            .connect_timeout(config.request_timeout.min(Duration::from_secs(10)))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| BuildError::Client(e.to_string()))?;
        Ok(Self {
            client,
            account_url: format!("{base}/v1/Account/{}", config.auth_id),
            retry: config.retry,
        })
    }

    /// `{base}/v1/Account/{auth_id}`: every request goes below it.
    pub fn account_url(&self) -> &str {
        &self.account_url
    }

    /// `.../Call/{uuid}/`, after checking `uuid`.
    fn call_url(&self, uuid: &str) -> Result<String, RestError> {
        check_uuid(uuid)?;
        Ok(format!("{}/Call/{uuid}/", self.account_url))
    }

    /// Sends `request`, retrying retriable failures as [`RetryPolicy`] allows.
    async fn execute(&self, request: &Request) -> Result<Reply, RestError> {
        let mut backoff = Backoff::new(self.retry);
        loop {
            let error = match self.attempt(request).await {
                Ok(reply) => return Ok(reply),
                Err(error) => error,
            };
            let retriable = error.is_retriable(request.idempotent());
            let delay = if retriable {
                backoff.next_delay(error.retry_after())
            } else {
                None
            };
            let Some(delay) = delay else {
                if retriable || backoff.retries() > 0 {
                    tracing::error!(
                        op = request.op,
                        attempts = backoff.retries() + 1,
                        kind = error.kind(),
                        error = %error,
                        "Plivo REST request failed; giving up"
                    );
                } else {
                    tracing::debug!(op = request.op, kind = error.kind(), error = %error, "Plivo REST request failed");
                }
                return Err(error);
            };
            tracing::warn!(
                op = request.op,
                attempt = backoff.retries(),
                delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                kind = error.kind(),
                error = %error,
                "Plivo REST request failed; retrying"
            );
            tokio::time::sleep(delay).await;
        }
    }

    /// One attempt: send, read the body (bounded), map the status.
    async fn attempt(&self, request: &Request) -> Result<Reply, RestError> {
        let mut builder = self
            .client
            .request(request.method.clone(), &request.url)
            .header(reqwest::header::ACCEPT, "application/json");
        if let Some(json) = &request.json {
            builder = builder
                .header(CONTENT_TYPE, "application/json")
                .body(json.clone());
        }
        let mut response = builder
            .send()
            .await
            .map_err(|e| RestError::from_transport(&e))?;
        let status = response.status();
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| RestError::from_transport(&e))?
        {
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(RestError::Decode {
                    message: format!("response body over {MAX_BODY_BYTES} bytes"),
                });
            }
            body.extend_from_slice(&chunk);
        }
        if status.is_success() {
            Ok(Reply::Success(body))
        } else if status == StatusCode::NOT_FOUND && request.not_found_ok {
            Ok(Reply::NotFound)
        } else {
            let retry_after = retry::retry_after(response.headers(), chrono::Utc::now());
            Err(RestError::from_status(status, retry_after, &body))
        }
    }

    async fn get<T: serde::de::DeserializeOwned>(
        &self,
        op: &'static str,
        url: String,
    ) -> Result<Option<T>, RestError> {
        let request = Request {
            op,
            method: Method::GET,
            url,
            json: None,
            not_found_ok: true,
        };
        match self.execute(&request).await? {
            Reply::Success(body) => decode(&body).map(Some),
            Reply::NotFound => Ok(None),
        }
    }

    async fn delete(&self, op: &'static str, url: String) -> Result<HangupOutcome, RestError> {
        let request = Request {
            op,
            method: Method::DELETE,
            url,
            json: None,
            not_found_ok: true,
        };
        Ok(match self.execute(&request).await? {
            Reply::Success(_) => HangupOutcome::HungUp,
            Reply::NotFound => HangupOutcome::AlreadyGone,
        })
    }
}

#[async_trait]
impl PlivoApi for PlivoRest {
    async fn make_call(&self, call: &MakeCall) -> Result<MakeCallResponse, RestError> {
        let json = serde_json::to_vec(call).map_err(|e| RestError::Decode {
            message: format!("could not encode Make Call: {e}"),
        })?;
        let request = Request {
            op: "make_call",
            method: Method::POST,
            url: format!("{}/Call/", self.account_url),
            json: Some(json),
            not_found_ok: false,
        };
        match self.execute(&request).await? {
            Reply::Success(body) => decode(&body),
            // Not asked for (`not_found_ok: false`), so a 404 is already an error.
            Reply::NotFound => Err(RestError::BadRequest {
                status: 404,
                message: String::new(),
            }),
        }
    }

    async fn live_call(&self, call_uuid: &str) -> Result<Option<LiveCall>, RestError> {
        let url = format!("{}?status=live", self.call_url(call_uuid)?);
        self.get("live_call", url).await
    }

    async fn cdr(&self, call_uuid: &str) -> Result<Option<Cdr>, RestError> {
        let url = self.call_url(call_uuid)?;
        self.get("cdr", url).await
    }

    async fn hangup(&self, call_uuid: &str) -> Result<HangupOutcome, RestError> {
        let url = self.call_url(call_uuid)?;
        self.delete("hangup", url).await
    }

    async fn cancel_request(&self, request_uuid: &str) -> Result<HangupOutcome, RestError> {
        check_uuid(request_uuid)?;
        let url = format!("{}/Request/{request_uuid}/", self.account_url);
        self.delete("cancel_request", url).await
    }
}

/// Refuses a uuid that could change the path's meaning (see the module doc).
pub fn check_uuid(uuid: &str) -> Result<(), RestError> {
    let ok = !uuid.is_empty()
        && uuid.len() <= MAX_UUID_CHARS
        && uuid.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(RestError::InvalidCallUuid {
            uuid: uuid.chars().take(MAX_UUID_CHARS).collect(),
        })
    }
}

fn decode<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, RestError> {
    serde_json::from_slice(body).map_err(|e| RestError::Decode {
        message: format!(
            "{e}; body: {}",
            error::quote(&String::from_utf8_lossy(body))
        ),
    })
}
