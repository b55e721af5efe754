//! The writer of one media socket: the bounded outbound queue, and the task that hands its
//! messages to the socket one at a time.
//!
//! Owns: the queue ([`Outbox`]: the session only `try_send`s into it; when it is full the
//! message is dropped and counted), the count of messages the socket has taken (so the
//! session can tell a turn that reached the peer from one still queued here), the write
//! timeout, and the close frame. Each message gets `write_timeout` to be taken by the socket
//! (written and flushed): a peer that stops reading fills its receive buffer and our capped
//! send buffer, the next message waits, and the session is ended `write_timeout` later.
//!
//! Budget per message: one atomic add, no lock, no allocation beyond the message itself.
//! Never: parses, decides what to send, or waits on anything but the socket.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::{Sink, SinkExt};
use metrics::{Counter, counter};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::telemetry;

/// Outbound messages queued towards the writer before the session counts them dropped.
const OUTBOUND_QUEUE: usize = 256;

/// What the writer hands the transport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WsOut {
    /// A text frame.
    Text(String),
    /// A close frame with an RFC 6455 status code; the last thing sent.
    Close(CloseCode),
}

/// Why voxgate closes a socket, when RFC 6455 has a code for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseCode {
    /// 1007: a text frame that is not UTF-8.
    InvalidPayload,
    /// 1009: a message too big to process.
    TooBig,
}

impl CloseCode {
    /// The status code on the wire.
    pub const fn code(self) -> u16 {
        match self {
            Self::InvalidPayload => 1007,
            Self::TooBig => 1009,
        }
    }

    /// The close frame's reason text.
    pub const fn reason(self) -> &'static str {
        match self {
            Self::InvalidPayload => "text frame is not UTF-8",
            Self::TooBig => "message too big",
        }
    }
}

/// The session's end of the outbound queue.
pub(super) struct Outbox {
    tx: mpsc::Sender<WsOut>,
    queued: u64,
    taken: Arc<AtomicU64>,
    dropped: Counter,
}

impl Outbox {
    /// Queues a text frame. Returns its place in the queue (the first message is 1), or
    /// `None` when the queue was full and the message was dropped (counted).
    pub(super) fn send(&mut self, text: String) -> Option<u64> {
        match self.tx.try_send(WsOut::Text(text)) {
            Ok(()) => {
                self.queued += 1;
                Some(self.queued)
            }
            Err(_) => {
                self.dropped.increment(1);
                None
            }
        }
    }

    /// How many queued messages the socket has taken, in queue order: the message queued
    /// as `n` has reached the socket once `taken() >= n`.
    pub(super) fn taken(&self) -> u64 {
        self.taken.load(Ordering::Acquire)
    }

    /// Ends the queue: the writer sends what is queued, then the close frame (with `code`,
    /// if any), then closes. A full queue drops the code, not the close.
    pub(super) fn close(self, code: Option<CloseCode>) {
        if let Some(code) = code {
            let _ = self.tx.try_send(WsOut::Close(code));
        }
    }
}

/// Starts the writer task over `sink`. It ends when the [`Outbox`] is closed or dropped,
/// or when a message is not taken within `timeout`: then `stalled` is cancelled.
pub(super) fn spawn<Out>(
    sink: Out,
    timeout: Duration,
    stalled: CancellationToken,
) -> (Outbox, tokio::task::JoinHandle<()>)
where
    Out: Sink<WsOut> + Unpin + Send + 'static,
{
    let (tx, rx) = mpsc::channel(OUTBOUND_QUEUE);
    let taken = Arc::new(AtomicU64::new(0));
    let task = tokio::spawn(write_loop(sink, rx, timeout, Arc::clone(&taken), stalled));
    let outbox = Outbox {
        tx,
        queued: 0,
        taken,
        dropped: counter!(telemetry::FRAMES_DROPPED, "stage" => "outbound"),
    };
    (outbox, task)
}

/// Sends queued messages; one the socket does not take within `timeout` ends the session.
async fn write_loop<Out: Sink<WsOut> + Unpin>(
    mut sink: Out,
    mut rx: mpsc::Receiver<WsOut>,
    timeout: Duration,
    taken: Arc<AtomicU64>,
    stalled: CancellationToken,
) {
    while let Some(message) = rx.recv().await {
        let text = matches!(message, WsOut::Text(_));
        // `send` writes and flushes: the timeout covers this one message reaching the
        // kernel, so a full send buffer counts against it.
        match tokio::time::timeout(timeout, sink.send(message)).await {
            Ok(Ok(())) if text => {
                taken.fetch_add(1, Ordering::Release);
            }
            Ok(Ok(())) => break,
            Ok(Err(_)) => break,
            Err(_) => {
                warn!("peer stopped reading: closing the stream");
                stalled.cancel();
                return;
            }
        }
    }
    let _ = tokio::time::timeout(timeout, sink.close()).await;
}

#[cfg(test)]
mod tests {
    use std::pin::Pin;
    use std::sync::Mutex;
    use std::task::{Context, Poll};

    use super::*;

    /// A socket that takes `room` messages, then none.
    struct Filling {
        room: usize,
        sent: Arc<Mutex<Vec<WsOut>>>,
    }

    impl Filling {
        fn new(room: usize) -> (Self, Arc<Mutex<Vec<WsOut>>>) {
            let sent = Arc::new(Mutex::new(Vec::new()));
            let sink = Self {
                room,
                sent: Arc::clone(&sent),
            };
            (sink, sent)
        }
    }

    impl Sink<WsOut> for Filling {
        type Error = ();
        fn poll_ready(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), ()>> {
            if self.room == 0 {
                Poll::Pending
            } else {
                Poll::Ready(Ok(()))
            }
        }
        fn start_send(mut self: Pin<&mut Self>, item: WsOut) -> Result<(), ()> {
            self.room -= 1;
            self.sent.lock().unwrap().push(item);
            Ok(())
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), ()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), ()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn taken_counts_only_what_the_socket_took_and_a_stall_ends_the_session() {
        let stalled = CancellationToken::new();
        let (sink, _) = Filling::new(3);
        let (mut outbox, task) = spawn(sink, Duration::from_millis(100), stalled.clone());
        let places: Vec<Option<u64>> = (0..5).map(|i| outbox.send(format!("m{i}"))).collect();
        assert_eq!(places, [Some(1), Some(2), Some(3), Some(4), Some(5)]);
        tokio::time::timeout(Duration::from_secs(5), stalled.cancelled())
            .await
            .expect("the writer gave up on the stuck socket");
        assert_eq!(
            outbox.taken(),
            3,
            "the fourth message never reached the socket"
        );
        task.await.unwrap();
    }

    #[tokio::test]
    async fn the_close_code_goes_out_after_the_queued_messages() {
        let (sink, sent) = Filling::new(10);
        let (mut outbox, task) = spawn(sink, Duration::from_secs(1), CancellationToken::new());
        outbox.send("last words".into());
        outbox.close(Some(CloseCode::TooBig));
        task.await.unwrap();
        assert_eq!(
            *sent.lock().unwrap(),
            [
                WsOut::Text("last words".into()),
                WsOut::Close(CloseCode::TooBig)
            ]
        );
        assert_eq!(CloseCode::TooBig.code(), 1009);
        assert_eq!(CloseCode::InvalidPayload.code(), 1007);
    }

    #[test]
    fn a_full_queue_drops_the_message_and_gives_it_no_place() {
        let (tx, _rx) = mpsc::channel(1);
        let mut outbox = Outbox {
            tx,
            queued: 0,
            taken: Arc::new(AtomicU64::new(0)),
            dropped: counter!(telemetry::FRAMES_DROPPED, "stage" => "outbound"),
        };
        assert_eq!(outbox.send("a".into()), Some(1));
        assert_eq!(outbox.send("b".into()), None);
    }
}
