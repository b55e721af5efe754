//! The request/response HTTP plumbing shared by the adapters that speak plain HTTP
//! (OpenAI-compatible servers, Deepgram pre-recorded).
//!
//! Owns: sending a built request under the connect and first-byte timeouts
//! ([`send_guarded`]), turning reqwest failures and non-2xx answers into [`ProviderError`]s
//! (with the server's message and `Retry-After`), reading bodies — a streaming body read by
//! read under the idle timeout ([`body_stream`]); a bounded body under the idle timeout, a
//! whole-body deadline and a byte cap ([`read_capped`], [`read_prefix`]) — and counting each
//! request's outcome ([`count_ok`], [`count_error`]).
//!
//! Owns no client and no key: an adapter builds its one client and its request (the key in
//! a header) and hands the request here. Errors from here may quote a server's body, which
//! may quote the key: an adapter passes each through [`ProviderError::without_key`] before
//! it leaves. Never: formats a request (its headers hold the key), reads past a cap, or
//! waits on a body longer than its deadline.

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use metrics::{counter, histogram};
use reqwest::{RequestBuilder, Response};

use super::{ProviderError, Stage, Timeouts};
use crate::telemetry;

/// The most of an error answer's body read (the rest is left unread).
pub const MAX_ERROR_BODY: usize = 64 * 1024;

/// Sends `request` and waits for the answer's headers under `timeouts.first_byte` (pass a
/// longer one for work the server does before it answers, such as a batch transcription),
/// recording the wait in `PROVIDER_FIRST_BYTE`. A non-2xx answer is a
/// [`ProviderError::Status`] with up to [`MAX_ERROR_BODY`] bytes of its body quoted (read
/// within one idle timeout) and its `Retry-After`. Counts nothing: the caller counts the
/// request's outcome once.
pub async fn send_guarded(
    provider: &'static str,
    api: &'static str,
    request: RequestBuilder,
    timeouts: &Timeouts,
) -> Result<Response, ProviderError> {
    let sent = Instant::now();
    let response = timeouts
        .guard(provider, Stage::FirstByte, async {
            request
                .send()
                .await
                .map_err(|e| transport_error(provider, &e, timeouts))
        })
        .await?;
    histogram!(telemetry::PROVIDER_FIRST_BYTE, "provider" => provider, "api" => api)
        .record(sent.elapsed().as_secs_f64());
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let retry_after = crate::retry::retry_after(response.headers(), chrono::Utc::now());
    let body = read_prefix(
        provider,
        response,
        MAX_ERROR_BODY,
        timeouts.idle,
        timeouts.idle,
    )
    .await;
    Err(ProviderError::status(
        provider,
        status.as_u16(),
        &body,
        retry_after,
    ))
}

/// `response`'s body as it arrives, each read under `timeouts.idle`; a failed read ends
/// it with [`ProviderError::Closed`], a late one with an idle [`ProviderError::Timeout`].
/// For streaming answers (chat, speech), which hold no more than one read at a time.
pub fn body_stream(
    provider: &'static str,
    response: Response,
    timeouts: Timeouts,
) -> impl Stream<Item = Result<Bytes, ProviderError>> + Send + 'static {
    futures_util::stream::unfold(Some(response.bytes_stream()), move |state| async move {
        let mut body = state?;
        let read = timeouts
            .guard(provider, Stage::Idle, async {
                body.next()
                    .await
                    .transpose()
                    .map_err(|_| ProviderError::Closed { provider })
            })
            .await;
        match read {
            Ok(None) => None,
            Ok(Some(bytes)) => Some((Ok(bytes), Some(body))),
            Err(error) => Some((Err(error), None)),
        }
    })
}

/// How a bounded read ended.
enum Ended {
    /// The body ended.
    Whole,
    /// It was longer than the cap (what was read is the first `cap` bytes).
    Over,
    /// A read failed or was late.
    Failed(ProviderError),
}

/// The whole body of `response`, if it is at most `cap` bytes and arrives within
/// `deadline` with no read taking longer than `idle`. Longer is a protocol error ("answer
/// larger than …"); later (a server trickling bytes) a [`ProviderError::Timeout`] at the
/// idle stage naming the deadline; a failed read [`ProviderError::Closed`].
pub async fn read_capped(
    provider: &'static str,
    response: Response,
    cap: usize,
    idle: Duration,
    deadline: Duration,
) -> Result<Vec<u8>, ProviderError> {
    let (body, ended) = read_up_to(provider, response, cap, idle, deadline).await;
    match ended {
        Ended::Whole => Ok(body),
        Ended::Over => Err(ProviderError::protocol(
            provider,
            format!("answer larger than {cap} bytes"),
        )),
        Ended::Failed(error) => Err(error),
    }
}

/// At most the first `cap` bytes of `response`'s body: what arrived before the body
/// ended, failed, went `idle` or ran past `deadline` (for quoting an error answer, where
/// part of the message beats none).
pub async fn read_prefix(
    provider: &'static str,
    response: Response,
    cap: usize,
    idle: Duration,
    deadline: Duration,
) -> Vec<u8> {
    read_up_to(provider, response, cap, idle, deadline).await.0
}

async fn read_up_to(
    provider: &'static str,
    response: Response,
    cap: usize,
    idle: Duration,
    deadline: Duration,
) -> (Vec<u8>, Ended) {
    let until = tokio::time::Instant::now() + deadline;
    let mut body = Vec::new();
    let mut chunks = response.bytes_stream();
    loop {
        let left = until.saturating_duration_since(tokio::time::Instant::now());
        // The deadline's timeout names the deadline; the idle one the idle.
        let (wait, after, stage) = if left < idle {
            (left, deadline, Stage::Body)
        } else {
            (idle, idle, Stage::Idle)
        };
        let bytes = match tokio::time::timeout(wait, chunks.next()).await {
            Err(_) => {
                let late = ProviderError::Timeout {
                    provider,
                    stage,
                    after,
                };
                return (body, Ended::Failed(late));
            }
            Ok(None) => return (body, Ended::Whole),
            Ok(Some(Err(_))) => return (body, Ended::Failed(ProviderError::Closed { provider })),
            Ok(Some(Ok(bytes))) => bytes,
        };
        let room = cap - body.len();
        if bytes.len() > room {
            body.extend_from_slice(&bytes[..room]);
            return (body, Ended::Over);
        }
        body.extend_from_slice(&bytes);
    }
}

/// A reqwest failure as a provider error. Its text is the innermost cause's (an OS or TLS
/// message), never the request's headers, so no key.
pub fn transport_error(
    provider: &'static str,
    error: &reqwest::Error,
    timeouts: &Timeouts,
) -> ProviderError {
    if error.is_timeout() {
        ProviderError::Timeout {
            provider,
            stage: Stage::Connect,
            after: timeouts.connect,
        }
    } else if error.is_connect() {
        ProviderError::Connect {
            provider,
            reason: root_cause(error),
        }
    } else {
        ProviderError::Closed { provider }
    }
}

/// The innermost cause's text (reqwest's own says only "error sending request").
pub fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// Counts one failed request of `api`: `PROVIDER_ERRORS` by kind and `PROVIDER_REQUESTS`
/// with outcome `error`.
pub fn count_error(provider: &'static str, api: &'static str, error: &ProviderError) {
    counter!(telemetry::PROVIDER_ERRORS, "provider" => provider, "kind" => error.kind())
        .increment(1);
    counter!(telemetry::PROVIDER_REQUESTS, "provider" => provider, "api" => api, "outcome" => "error")
        .increment(1);
}

/// Counts one request of `api` that ended with `outcome` (`ok`, `cancelled`).
pub fn count_outcome(provider: &'static str, api: &'static str, outcome: &'static str) {
    counter!(telemetry::PROVIDER_REQUESTS, "provider" => provider, "api" => api, "outcome" => outcome)
        .increment(1);
}

/// Counts one request of `api` that succeeded.
pub fn count_ok(provider: &'static str, api: &'static str) {
    count_outcome(provider, api, "ok");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server on loopback answering every request with `head` then `pieces` of body,
    /// `gap` apart; its base URL.
    async fn serve(head: &'static str, pieces: Vec<Vec<u8>>, gap: Duration) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let pieces = pieces.clone();
                tokio::spawn(async move {
                    let mut request = [0u8; 4096];
                    let _ = socket.read(&mut request).await;
                    if socket.write_all(head.as_bytes()).await.is_err() {
                        return;
                    }
                    for piece in pieces {
                        tokio::time::sleep(gap).await;
                        if socket.write_all(&piece).await.is_err() {
                            return;
                        }
                    }
                    tokio::time::sleep(Duration::from_secs(30)).await;
                });
            }
        });
        format!("http://{addr}/")
    }

    fn timeouts() -> Timeouts {
        Timeouts {
            connect: Duration::from_secs(1),
            first_byte: Duration::from_secs(1),
            idle: Duration::from_millis(500),
        }
    }

    #[tokio::test]
    async fn a_long_error_body_is_quoted_in_part_with_its_wait() {
        let long = format!("{{\"message\":\"{}\"}}", "x".repeat(100_000));
        let head =
            "HTTP/1.1 503 Service Unavailable\r\nretry-after: 4\r\nconnection: close\r\n\r\n";
        let url = serve(head, vec![long.into_bytes()], Duration::ZERO).await;
        let client = reqwest::Client::new();
        let error = send_guarded("p", "test", client.post(url), &timeouts())
            .await
            .unwrap_err();
        let ProviderError::Status {
            status,
            message,
            retry_after,
            ..
        } = &error
        else {
            panic!("{error:?}")
        };
        assert_eq!(*status, 503);
        assert!(message.starts_with("{\"message\":\"xxx"), "{message}");
        assert_eq!(*retry_after, Some(Duration::from_secs(4)));
    }

    #[tokio::test]
    async fn a_trickling_body_stops_at_its_deadline_and_a_big_one_at_its_cap() {
        let head = "HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n";
        let trickle = vec![b"a".to_vec(); 1000];
        let url = serve(head, trickle, Duration::from_millis(20)).await;
        let client = reqwest::Client::new();
        let response = client.post(&url).send().await.unwrap();
        let started = Instant::now();
        let error = read_capped(
            "p",
            response,
            1 << 20,
            timeouts().idle,
            Duration::from_millis(300),
        )
        .await
        .unwrap_err();
        assert_eq!(
            error,
            ProviderError::Timeout {
                provider: "p",
                stage: Stage::Body,
                after: Duration::from_millis(300)
            }
        );
        assert!(started.elapsed() < Duration::from_secs(2));
        let response = client.post(&url).send().await.unwrap();
        let error = read_capped("p", response, 10, timeouts().idle, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(matches!(error, ProviderError::Protocol { .. }), "{error}");
        let response = client.post(&url).send().await.unwrap();
        let prefix = read_prefix("p", response, 3, timeouts().idle, Duration::from_secs(5)).await;
        assert_eq!(prefix, b"aaa");
    }
}
