//! A backend on loopback that speaks voxgate's update API
//! (`POST /api/calls/external-updates`) and can be taken down and brought back.
//!
//! It records every update it accepted, in arrival order, with the request's
//! `Idempotency-Key`, so a test can check what the backend really saw: every event, per
//! call in order, duplicates allowed (delivery is at-least-once). Modes:
//! - [`Mode::Up`]: checks the HMAC signature, records, answers 200.
//! - [`Mode::Stall`]: holds each request until the mode changes, then answers 503 and
//!   records nothing (a backend that hung and lost the request: what it never
//!   acknowledged must come again).
//! - down ([`Backend::go_down`]): the listener is closed, connections are refused.
//!
//! Never records an update it did not answer 200 to, so "the backend has it" means it
//! acknowledged it.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use hmac::{KeyInit, Mac};
use serde_json::Value;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How the backend answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// 200 and recorded.
    Up,
    /// Held until the mode changes, then 503, not recorded.
    Stall,
}

/// One update the backend acknowledged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub call_id: String,
    pub seq: u64,
    pub event: String,
    pub event_id: String,
    /// The request's `Idempotency-Key`.
    pub key: String,
    /// The whole update as sent.
    pub update: Value,
}

struct Shared {
    secret: String,
    mode: watch::Sender<Mode>,
    received: Mutex<Vec<Received>>,
    /// Requests being held right now (Stall).
    held: Mutex<usize>,
    /// Requests ever held.
    held_total: Mutex<usize>,
    bad_signatures: Mutex<usize>,
}

/// The backend; its address stays the same across down and up.
pub struct Backend {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: Mutex<Option<(CancellationToken, JoinHandle<()>)>>,
}

impl Backend {
    /// Starts it, up, on a free loopback port; updates are signed with `secret`.
    pub async fn start(secret: &str) -> Self {
        let (mode, _) = watch::channel(Mode::Up);
        let shared = Arc::new(Shared {
            secret: secret.to_owned(),
            mode,
            received: Mutex::new(Vec::new()),
            held: Mutex::new(0),
            held_total: Mutex::new(0),
            bad_signatures: Mutex::new(0),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let backend = Self {
            addr,
            shared,
            server: Mutex::new(None),
        };
        backend.serve(listener);
        backend
    }

    /// `http://127.0.0.1:{port}`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn serve(&self, listener: tokio::net::TcpListener) {
        let app = axum::Router::new()
            .route("/api/calls/external-updates", post(updates))
            .with_state(Arc::clone(&self.shared));
        let stop = CancellationToken::new();
        let task = tokio::spawn({
            let stop = stop.clone();
            async move {
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(stop.cancelled_owned())
                    .await;
            }
        });
        *self.server.lock().unwrap() = Some((stop, task));
    }

    /// Closes the listener and every connection: connections are refused from now on.
    /// (Not while requests are held.)
    pub async fn go_down(&self) {
        let server = self.server.lock().unwrap().take();
        if let Some((stop, task)) = server {
            stop.cancel();
            tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .expect("backend connections closed")
                .unwrap();
        }
    }

    /// Listens again on the same address.
    pub async fn come_up(&self) {
        let mut tries = 0;
        let listener = loop {
            match tokio::net::TcpListener::bind(self.addr).await {
                Ok(listener) => break listener,
                Err(err) if tries < 50 => {
                    tries += 1;
                    eprintln!("backend: rebinding {}: {err}; retrying", self.addr);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(err) => panic!("backend cannot listen on {} again: {err}", self.addr),
            }
        };
        self.serve(listener);
    }

    /// Changes how requests are answered (held requests are released at once).
    pub fn set_mode(&self, mode: Mode) {
        self.shared.mode.send_replace(mode);
    }

    /// Everything acknowledged so far, in arrival order.
    pub fn received(&self) -> Vec<Received> {
        self.shared.received.lock().unwrap().clone()
    }

    /// Requests being held now.
    pub fn held(&self) -> usize {
        *self.shared.held.lock().unwrap()
    }

    /// Requests held so far, in all.
    pub fn held_total(&self) -> usize {
        *self.shared.held_total.lock().unwrap()
    }

    /// Requests refused for a wrong signature.
    pub fn bad_signatures(&self) -> usize {
        *self.shared.bad_signatures.lock().unwrap()
    }

    /// The distinct events acknowledged for `call_id`, by seq.
    pub fn seqs_of(&self, call_id: &str) -> Vec<u64> {
        let mut seqs: Vec<u64> = self
            .received()
            .iter()
            .filter(|r| r.call_id == call_id)
            .map(|r| r.seq)
            .collect();
        seqs.sort_unstable();
        seqs.dedup();
        seqs
    }
}

/// Counts a held request for as long as it is held.
struct HeldGuard<'a>(&'a Shared);

impl Drop for HeldGuard<'_> {
    fn drop(&mut self) {
        *self.0.held.lock().unwrap() -= 1;
    }
}

async fn updates(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let mut mode = shared.mode.subscribe();
    if *mode.borrow_and_update() == Mode::Stall {
        *shared.held.lock().unwrap() += 1;
        *shared.held_total.lock().unwrap() += 1;
        let _guard = HeldGuard(&shared);
        let _ = mode.wait_for(|m| *m != Mode::Stall).await;
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(shared.secret.as_bytes()).unwrap();
    mac.update(&body);
    let digest: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    if header("x-voxgate-signature") != format!("sha256={digest}") {
        *shared.bad_signatures.lock().unwrap() += 1;
        return StatusCode::UNAUTHORIZED;
    }
    let Ok(updates) = serde_json::from_slice::<Vec<Value>>(&body) else {
        return StatusCode::BAD_REQUEST;
    };
    let key = header("idempotency-key");
    let mut received = shared.received.lock().unwrap();
    for update in updates {
        let text = |field: &str| update[field].as_str().unwrap_or_default().to_owned();
        received.push(Received {
            call_id: text("call_id"),
            seq: update["seq"].as_u64().unwrap_or(0),
            event: text("event"),
            event_id: text("event_id"),
            key: key.clone(),
            update,
        });
    }
    StatusCode::OK
}
