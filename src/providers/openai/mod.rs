//! OpenAI-compatible servers (OpenAI, Groq, vLLM, Ollama, proxies): streaming chat
//! completions ([`chat`]), and the HTTP plumbing every endpoint here shares.
//!
//! One [`OpenAiClient`] per process holds the connection pool, the base URL and the key;
//! each capability is a thin adapter over it. Every request runs under the section's
//! timeouts: connect (the client's), first byte (request sent → response headers) and idle
//! (between two reads of a streaming body, [`OpenAiClient::body`]).
//!
//! Never: puts the key anywhere but the `Authorization` header, or reads an unbounded body.

pub mod chat;
pub mod config;
pub mod speech;
pub mod sse;
pub mod transcribe;

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use metrics::{counter, histogram};
use reqwest::{RequestBuilder, Response};

pub use config::{OpenAiConfig, RawOpenAi};

use crate::providers::api::{ProviderError, Stage, Timeouts};
use crate::telemetry;

/// The provider's name in logs, errors and metrics.
pub const PROVIDER: &str = "openai";
/// The most of an error answer's body read.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// The shared HTTP client of an OpenAI-compatible server.
#[derive(Debug)]
pub struct OpenAiClient {
    http: reqwest::Client,
    config: OpenAiConfig,
}

impl OpenAiClient {
    /// A client for `config` (its connection pool is shared by every call).
    pub fn new(config: OpenAiConfig) -> Result<Self, ProviderError> {
        let http = reqwest::Client::builder()
            .connect_timeout(config.timeouts.connect)
            .build()
            .map_err(|e| ProviderError::Invalid {
                provider: PROVIDER,
                reason: format!("cannot build an HTTP client: {e}"),
            })?;
        Ok(Self { http, config })
    }

    /// The settings.
    pub fn config(&self) -> &OpenAiConfig {
        &self.config
    }

    /// A POST to `path` under the base URL, with the key when there is one.
    pub fn post(&self, path: &str) -> RequestBuilder {
        // The base ends in '/', and paths are this module's constants: joining cannot fail.
        let url = self
            .config
            .base_url
            .join(path)
            .unwrap_or_else(|_| self.config.base_url.clone());
        let request = self.http.post(url);
        match &self.config.api_key {
            Some(key) => request.bearer_auth(key.expose()),
            None => request,
        }
    }

    /// Sends `request` and waits for the answer's headers (connect and first-byte
    /// timeouts); a non-2xx answer is a [`ProviderError::Status`] with the server's message.
    pub async fn send(
        &self,
        request: RequestBuilder,
        api: &'static str,
    ) -> Result<Response, ProviderError> {
        let timeouts = self.config.timeouts;
        let sent = Instant::now();
        let response = timeouts
            .guard(PROVIDER, Stage::FirstByte, async {
                request
                    .send()
                    .await
                    .map_err(|e| transport_error(&e, &timeouts))
            })
            .await
            .inspect_err(|e| count_error(api, e))?;
        histogram!(telemetry::PROVIDER_FIRST_BYTE, "provider" => PROVIDER, "api" => api)
            .record(sent.elapsed().as_secs_f64());
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let retry_after = crate::retry::retry_after(response.headers(), chrono::Utc::now());
        let body = read_capped(response, &timeouts).await.unwrap_or_default();
        let error = ProviderError::status(PROVIDER, status.as_u16(), &body, retry_after);
        count_error(api, &error);
        Err(error)
    }

    /// The body of a streaming answer, each read under the idle timeout.
    pub fn body(
        &self,
        response: Response,
    ) -> impl Stream<Item = Result<Bytes, ProviderError>> + Send + 'static {
        idle_guarded(response, self.config.timeouts.idle)
    }
}

/// `response`'s body, failing with an idle timeout when a read takes longer than `idle`.
fn idle_guarded(
    response: Response,
    idle: Duration,
) -> impl Stream<Item = Result<Bytes, ProviderError>> + Send + 'static {
    futures_util::stream::unfold(Some(response.bytes_stream()), move |state| async move {
        let mut body = state?;
        match tokio::time::timeout(idle, body.next()).await {
            Err(_) => Some((
                Err(ProviderError::Timeout {
                    provider: PROVIDER,
                    stage: Stage::Idle,
                    after: idle,
                }),
                None,
            )),
            Ok(None) => None,
            Ok(Some(Ok(bytes))) => Some((Ok(bytes), Some(body))),
            Ok(Some(Err(_))) => Some((Err(ProviderError::Closed { provider: PROVIDER }), None)),
        }
    })
}

/// Up to [`MAX_ERROR_BODY`] bytes of an error answer.
async fn read_capped(response: Response, timeouts: &Timeouts) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    let mut stream = std::pin::pin!(idle_guarded(response, timeouts.idle));
    while let Some(Ok(bytes)) = stream.next().await {
        let room = MAX_ERROR_BODY - body.len();
        body.extend_from_slice(&bytes[..bytes.len().min(room)]);
        if body.len() >= MAX_ERROR_BODY {
            break;
        }
    }
    Some(body)
}

/// A reqwest failure as a provider error (its text never holds headers, so no key).
fn transport_error(error: &reqwest::Error, timeouts: &Timeouts) -> ProviderError {
    if error.is_timeout() {
        ProviderError::Timeout {
            provider: PROVIDER,
            stage: Stage::Connect,
            after: timeouts.connect,
        }
    } else if error.is_connect() {
        ProviderError::Connect {
            provider: PROVIDER,
            reason: root_cause(error),
        }
    } else {
        ProviderError::Closed { provider: PROVIDER }
    }
}

/// The innermost cause's text (reqwest's own says only "error sending request").
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// Counts a failure of `api`.
pub(crate) fn count_error(api: &'static str, error: &ProviderError) {
    counter!(telemetry::PROVIDER_ERRORS, "provider" => PROVIDER, "kind" => error.kind())
        .increment(1);
    counter!(telemetry::PROVIDER_REQUESTS, "provider" => PROVIDER, "api" => api, "outcome" => "error")
        .increment(1);
}
