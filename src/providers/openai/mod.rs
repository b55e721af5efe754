//! OpenAI-compatible servers (OpenAI, Groq, vLLM, Ollama, proxies): streaming chat
//! completions ([`chat`]), speech ([`speech`]), recording transcription ([`transcribe`]),
//! and the client every endpoint here shares.
//!
//! One [`OpenAiClient`] per process holds the connection pool, the base URL and the key;
//! each capability is a thin adapter over it and the shared plumbing of
//! [`crate::providers::api::http`]. Every request runs under the section's timeouts:
//! connect (the client's), first byte (request sent → response headers; for a
//! transcription, which uploads and transcribes before it answers, `batch_timeout`) and
//! idle (between two reads of a body). Every error this module returns has passed through
//! [`ProviderError::without_key`] (a server's error body may quote the key it refused).
//!
//! Never: puts the key anywhere but the `Authorization` header, or reads an unbounded body.

pub mod chat;
pub mod complete;
pub mod config;
pub mod speech;
pub mod sse;
pub mod transcribe;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use reqwest::{RequestBuilder, Response};

pub use config::{OpenAiConfig, RawOpenAi};

use crate::providers::api::http;
use crate::providers::api::{ProviderError, Timeouts};

/// The provider's name in logs, errors and metrics.
pub const PROVIDER: &str = "openai";

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
    /// timeouts); a non-2xx answer is a [`ProviderError::Status`] with the server's
    /// message. A failure is counted against `api` and has no key in it.
    pub async fn send(
        &self,
        request: RequestBuilder,
        api: &'static str,
    ) -> Result<Response, ProviderError> {
        self.send_within(request, api, self.config.timeouts).await
    }

    /// [`OpenAiClient::send`] for a request the server works on before it answers (a
    /// transcription): its headers may take up to the section's `batch_timeout`.
    pub async fn send_batch(
        &self,
        request: RequestBuilder,
        api: &'static str,
    ) -> Result<Response, ProviderError> {
        let timeouts = Timeouts {
            first_byte: self.config.batch_timeout,
            ..self.config.timeouts
        };
        self.send_within(request, api, timeouts).await
    }

    async fn send_within(
        &self,
        request: RequestBuilder,
        api: &'static str,
        timeouts: Timeouts,
    ) -> Result<Response, ProviderError> {
        http::send_guarded(PROVIDER, api, request, &timeouts)
            .await
            .map_err(|e| self.without_key(e))
            .inspect_err(|e| http::count_error(PROVIDER, api, e))
    }

    /// The body of a streaming answer, each read under the idle timeout.
    pub fn body(
        &self,
        response: Response,
    ) -> impl Stream<Item = Result<Bytes, ProviderError>> + Send + 'static {
        let key = self.config.api_key.clone();
        http::body_stream(PROVIDER, response, self.config.timeouts)
            .map(move |read| read.map_err(|e| e.without_key(key.as_ref())))
    }

    /// The whole body of a bounded answer: at most `cap` bytes, each read under the idle
    /// timeout, the whole within `batch_timeout`.
    pub async fn read_all(&self, response: Response, cap: usize) -> Result<Vec<u8>, ProviderError> {
        http::read_capped(
            PROVIDER,
            response,
            cap,
            self.config.timeouts.idle,
            self.config.batch_timeout,
        )
        .await
        .map_err(|e| self.without_key(e))
    }

    /// `error` with this client's key, whole or in part, replaced by `***`.
    pub fn without_key(&self, error: ProviderError) -> ProviderError {
        error.without_key(self.config.api_key.as_ref())
    }
}
