//! Accepting HTTP connections with every one of them bounded.
//!
//! `axum::serve` keeps a connection for as long as the peer likes: a client that opens a
//! socket and says nothing, sends half a header, or idles on keep-alive holds a file
//! descriptor forever. This loop serves the same router, but each connection has a
//! header read timeout (hyper's, which also runs while a keep-alive connection waits for
//! its next request), an idle timeout on the socket itself, and the number of open
//! connections is capped: beyond the cap a new connection is closed at once and counted.
//! Each accepted socket's kernel send buffer is capped too, so a media peer that stops
//! reading fills it within a few hundred milliseconds of audio and the session's write
//! timeout finds it in seconds, not minutes.
//!
//! It must never touch a request: routing, limits on bodies and messages are the router's.
//! Per connection it costs one task and one semaphore permit; nothing here runs per frame
//! except the idle clock's read of the monotonic time on socket I/O (no syscall, no lock).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use metrics::{counter, gauge};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::config::HttpConfig;
use crate::telemetry;

/// How long shutdown waits for requests in flight once the listener stops.
const GRACEFUL_DEADLINE: Duration = Duration::from_secs(5);

/// Serves `app` on `listener` until `stop` is cancelled, then lets requests in flight
/// finish (bounded) and returns. Upgraded WebSockets are not waited for: their sessions
/// are drained by the composition root before it stops the listener.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: HttpConfig,
    stop: CancellationToken,
) -> io::Result<()> {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let open = gauge!(telemetry::HTTP_CONNECTIONS);
    loop {
        let (stream, _peer) = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            counter!(telemetry::HTTP_CONNECTIONS_REFUSED).increment(1);
            debug!("connection limit reached: closed a new connection");
            continue;
        };
        configure(&stream, limits);
        let io = TokioIo::new(IdleTimeout::new(stream, limits.idle_timeout));
        let service = TowerToHyperService::new(app.clone());
        let connection = builder.serve_connection_with_upgrades(io, service);
        let connection = graceful.watch(connection.into_owned());
        let open = open.clone();
        open.increment(1.0);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                debug!(%error, "connection ended with an error");
            }
            open.decrement(1.0);
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(GRACEFUL_DEADLINE, graceful.shutdown())
        .await
        .is_err()
    {
        debug!("requests still in flight at the graceful deadline");
    }
    Ok(())
}

fn configure(stream: &TcpStream, limits: HttpConfig) {
    let _ = stream.set_nodelay(true);
    if let Some(bytes) = limits.send_buffer_bytes {
        let socket = socket2::SockRef::from(stream);
        if let Err(error) = socket.set_send_buffer_size(bytes) {
            debug!(%error, "could not cap the socket's send buffer");
        }
    }
}

/// A socket that fails with `TimedOut` once it has neither read nor written for `limit`.
///
/// The deadline timer is re-armed only when it fires, not on every read or write: I/O
/// just notes the time, so a busy socket costs no timer work.
struct IdleTimeout<S> {
    inner: S,
    limit: Duration,
    last_active: Instant,
    deadline: Pin<Box<Sleep>>,
}

impl<S> IdleTimeout<S> {
    fn new(inner: S, limit: Duration) -> Self {
        let now = Instant::now();
        Self {
            inner,
            limit,
            last_active: now,
            deadline: Box::pin(tokio::time::sleep_until(now + limit)),
        }
    }

    /// Called when an operation would wait: errors once the socket has been idle too long.
    fn check(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        while self.deadline.as_mut().poll(cx).is_ready() {
            let due = self.last_active + self.limit;
            if Instant::now() >= due {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "connection idle"));
            }
            self.deadline.as_mut().reset(due);
        }
        Ok(())
    }

    /// What a read or write returned, with the idle clock applied: progress notes the
    /// time, a wait checks the deadline.
    fn track<T>(&mut self, cx: &mut Context<'_>, poll: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        match poll {
            Poll::Pending => match self.check(cx) {
                Ok(()) => Poll::Pending,
                Err(error) => Poll::Ready(Err(error)),
            },
            ready => {
                self.last_active = Instant::now();
                ready
            }
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for IdleTimeout<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        self.track(cx, poll)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for IdleTimeout<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.track(cx, poll)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.track(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
