//! The WebSocket plumbing shared by the streaming adapters (Deepgram live STT, ElevenLabs
//! TTS): opening the socket, turning a refused upgrade, a socket failure or a close frame
//! into a [`ProviderError`], and ending a stream's task the same way everywhere.
//!
//! Owns: [`connect`] (TCP, TLS and the upgrade under the connect timeout, the key in one
//! request header marked sensitive, a cap on every message read), [`upgrade_error`] (a
//! refusal's status, up to [`MAX_ERROR_BODY`] bytes of its body quoted, its `Retry-After`),
//! [`socket_error`], [`close_error`], [`finish`] (count the outcome, hand the one error to
//! the agent, close the socket, all bounded) and [`seconds_to_ms`] for wire times.
//!
//! Every error that leaves here has been through [`ProviderError::without_key`]: a refusal
//! body, a close reason or a transport message may quote the key. Never: formats a request
//! (its headers hold the key), waits on a peer without a deadline.

use std::time::Duration;

use futures_util::{Sink, SinkExt as _};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use url::Url;

use super::{ApiKey, ProviderError, Stage, Timeouts};

/// A client WebSocket (plain `ws://` or `wss://` over rustls).
pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The most of a refused upgrade's body quoted.
pub const MAX_ERROR_BODY: usize = 64 * 1024;

/// How the key travels in the upgrade request: the header's name and what precedes the key
/// in its value (`Authorization: Token <key>`, `xi-api-key: <key>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyHeader {
    /// The header's name.
    pub name: &'static str,
    /// Written before the key (`"Token "`, or `""`).
    pub prefix: &'static str,
}

/// Opens a WebSocket to `url` under `timeouts.connect`, with `key` (if any) in `header`
/// (marked sensitive, so no `Debug` of the request shows it) and server messages capped at
/// `max_message` bytes. A refused upgrade is [`upgrade_error`]'s; every error is free of
/// the key.
pub async fn connect(
    provider: &'static str,
    url: &Url,
    key: Option<(KeyHeader, &ApiKey)>,
    max_message: usize,
    timeouts: &Timeouts,
) -> Result<Socket, ProviderError> {
    let clean = |error: ProviderError| error.without_key(key.map(|(_, key)| key));
    let mut request = url
        .as_str()
        .into_client_request()
        .map_err(|e| ProviderError::Invalid {
            provider,
            reason: format!("bad URL: {e}"),
        })?;
    if let Some((header, key)) = key {
        let mut value = HeaderValue::from_str(&format!("{}{}", header.prefix, key.expose()))
            .map_err(|_| ProviderError::Invalid {
                provider,
                reason: "the API key is not a valid header value".to_owned(),
            })?;
        value.set_sensitive(true);
        request.headers_mut().insert(header.name, value);
    }
    let limits = WebSocketConfig::default()
        .max_message_size(Some(max_message))
        .max_frame_size(Some(max_message));
    timeouts
        .guard(provider, Stage::Connect, async {
            tokio_tungstenite::connect_async_with_config(request, Some(limits), true)
                .await
                .map(|(socket, _)| socket)
                .map_err(|e| upgrade_error(provider, e))
        })
        .await
        .map_err(clean)
}

/// A failed connect or upgrade as a provider error (never quoting the request): a refusal
/// is [`ProviderError::Status`] with the body's message and `Retry-After`; a transport or
/// TLS failure is a (retriable) [`ProviderError::Connect`]; a bad URL is
/// [`ProviderError::Invalid`]; anything else (a malformed handshake) a protocol error.
/// The caller removes the key ([`connect`] does).
pub fn upgrade_error(provider: &'static str, error: WsError) -> ProviderError {
    match error {
        WsError::Http(response) => {
            let retry_after = crate::retry::retry_after(response.headers(), chrono::Utc::now());
            let body = response.body().as_deref().unwrap_or_default();
            let body = &body[..body.len().min(MAX_ERROR_BODY)];
            ProviderError::status(provider, response.status().as_u16(), body, retry_after)
        }
        WsError::Io(e) => ProviderError::Connect {
            provider,
            reason: e.to_string(),
        },
        WsError::Tls(e) => ProviderError::Connect {
            provider,
            reason: format!("TLS: {e}"),
        },
        WsError::Url(e) => ProviderError::Invalid {
            provider,
            reason: format!("bad URL: {e}"),
        },
        WsError::ConnectionClosed | WsError::AlreadyClosed => ProviderError::Closed { provider },
        other => ProviderError::protocol(provider, format!("upgrade failed: {other}")),
    }
}

/// A failure reading or writing an open socket: a message over the cap or a frame that
/// breaks the protocol is a protocol error, anything else (reset, EOF) the connection
/// lost.
pub fn socket_error(provider: &'static str, error: &WsError) -> ProviderError {
    match error {
        WsError::Capacity(e) => {
            ProviderError::protocol(provider, format!("message too large: {e}"))
        }
        WsError::Protocol(e) => ProviderError::protocol(provider, e.to_string()),
        WsError::Utf8(e) => ProviderError::protocol(provider, format!("text frame: {e}")),
        _ => ProviderError::Closed { provider },
    }
}

/// The server's close frame, when it came before the stream was complete: its reason and
/// code quoted ([`ProviderError::Stream`]), or [`ProviderError::Closed`] for a bare close.
pub fn close_error(provider: &'static str, frame: Option<&CloseFrame>) -> ProviderError {
    match frame {
        Some(frame) if !frame.reason.trim().is_empty() => ProviderError::stream(
            provider,
            format!(
                "closed the stream: {} (code {})",
                frame.reason.trim(),
                u16::from(frame.code)
            ),
        ),
        Some(frame) => ProviderError::stream(
            provider,
            format!("closed the stream (code {})", u16::from(frame.code)),
        ),
        None => ProviderError::Closed { provider },
    }
}

/// Whether `frame` is a normal close (code 1000, or a close without a frame): the server's
/// end of a stream we asked to end.
pub fn is_normal_close(frame: Option<&CloseFrame>) -> bool {
    match frame {
        None => true,
        Some(frame) => frame.code == CloseCode::Normal,
    }
}

/// How a stream's task ended.
#[derive(Debug)]
pub enum Ending {
    /// Complete: the agent got everything.
    Done,
    /// The agent went away (cancel); nobody reads any more.
    Cancelled,
    /// The stream failed; the agent gets this error.
    Failed(ProviderError),
}

/// Ends a stream's task: counts the outcome of `api` (`PROVIDER_REQUESTS`, and
/// `PROVIDER_ERRORS` for a failure), hands a failure (the key removed) to the agent unless
/// it is gone, waiting at most `within`, drops `to_agent` (the agent's stream ends), then
/// closes the socket with a normal close frame, at most `within` too: the agent never
/// waits on the closing handshake.
pub async fn finish<T, S>(
    provider: &'static str,
    api: &'static str,
    ending: Ending,
    key: Option<&ApiKey>,
    to_agent: mpsc::Sender<Result<T, ProviderError>>,
    sink: &mut S,
    within: Duration,
) where
    S: Sink<Message> + Unpin,
{
    match ending {
        Ending::Done => super::http::count_ok(provider, api),
        Ending::Cancelled => super::http::count_outcome(provider, api, "cancelled"),
        Ending::Failed(error) => {
            let error = error.without_key(key);
            super::http::count_error(provider, api, &error);
            tracing::warn!(provider, api, %error, "stream failed");
            if !to_agent.is_closed() {
                let _ = tokio::time::timeout(within, to_agent.send(Err(error))).await;
            }
        }
    }
    drop(to_agent);
    let normal = CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    };
    let _ = tokio::time::timeout(within, async {
        let _ = sink.send(Message::Close(Some(normal))).await;
        let _ = sink.close().await;
    })
    .await;
}

/// Seconds from the wire as whole ms: NaN and negatives are 0, huge values saturate at
/// `u64::MAX` (callers add with `saturating_add`).
pub fn seconds_to_ms(seconds: f64) -> u64 {
    // `as` from f64 saturates and maps NaN to 0.
    (seconds * 1_000.0).round() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_times_saturate() {
        assert_eq!(seconds_to_ms(-3.0), 0);
        assert_eq!(seconds_to_ms(f64::NAN), 0);
        assert_eq!(seconds_to_ms(1e300), u64::MAX);
        assert_eq!(seconds_to_ms(f64::INFINITY), u64::MAX);
        assert_eq!(seconds_to_ms(0.0205), 21);
    }

    #[test]
    fn close_frames_say_why() {
        let frame = |code: u16, reason: &str| CloseFrame {
            code: CloseCode::from(code),
            reason: reason.to_owned().into(),
        };
        let net = close_error("dg", Some(&frame(1011, " NET-0001 no audio ")));
        assert_eq!(
            net.to_string(),
            "dg: closed the stream: NET-0001 no audio (code 1011)"
        );
        assert!(!net.retriable());
        assert_eq!(
            close_error("dg", Some(&frame(1000, ""))).to_string(),
            "dg: closed the stream (code 1000)"
        );
        assert_eq!(
            close_error("dg", None),
            ProviderError::Closed { provider: "dg" }
        );
        assert!(is_normal_close(Some(&frame(1000, ""))));
        assert!(is_normal_close(None));
        assert!(!is_normal_close(Some(&frame(1008, "quota"))));
    }

    #[tokio::test]
    async fn a_refusal_quoting_the_key_is_redacted() {
        // A server that refuses every upgrade with a body quoting the key it got.
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = vec![0u8; 4096];
            let n = socket.read(&mut request).await.unwrap();
            let request = String::from_utf8_lossy(&request[..n]).into_owned();
            let key = request
                .lines()
                .find_map(|l| l.strip_prefix("x-key: "))
                .unwrap_or("none")
                .to_owned();
            let body = format!(r#"{{"message":"bad key {key}"}}"#);
            let answer = format!(
                "HTTP/1.1 401 Unauthorized\r\ncontent-length: {}\r\nretry-after: 2\r\n\r\n{body}",
                body.len()
            );
            let _ = socket.write_all(answer.as_bytes()).await;
        });
        let key = ApiKey::new("k-0123456789abcdef").unwrap();
        let url = Url::parse(&format!("ws://{addr}/")).unwrap();
        let header = KeyHeader {
            name: "x-key",
            prefix: "",
        };
        let error = connect("p", &url, Some((header, &key)), 1024, &Timeouts::default())
            .await
            .unwrap_err();
        let text = format!("{error} {error:?}");
        assert!(!text.contains("k-012345"), "{text}");
        assert!(
            matches!(&error, ProviderError::Status { status: 401, message, retry_after: Some(d), .. }
                if message == "bad key ***" && *d == Duration::from_secs(2)),
            "{error:?}"
        );
    }
}
