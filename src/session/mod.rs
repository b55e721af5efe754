//! Live calls: which calls are on, which media socket serves each, and each call's journal.
//!
//! [`Sessions`] is the registry. The answer URL reserves a call with its [`CallPlan`]
//! (refused beyond `max_calls` or while draining); the media WebSocket attaches to it and
//! gets the plan. A socket with no reservation gets the default plan. When Plivo opens a
//! second socket for the same call (it retries), the new one takes over: the old session
//! is cancelled and the call goes on. A reservation whose socket never comes expires.
//! A socket for a call the answer URL never admitted is *pending* until its `start`: it
//! takes one of `max_pending_sockets` slots, not a call slot, so sockets that never send
//! `start` cannot make a real caller busy; at `start` ([`Sessions::start`]) it takes a call
//! slot or is refused.
//!
//! The registry is touched when calls start and end, never per frame; its lock is never
//! held across an await. Each session task is tracked, so shutdown can drain them.
//!
//! Each media socket is one task, split by concern: [`socket`] is the transport (the
//! select loop, dispatch, how a stream ends) and `writer` the outbound queue and the task
//! that writes it; `intake` takes the caller's
//! audio from `start` to the DSP pipeline and its record tap; `conversation` bridges the
//! agent (VAD events and caller audio in, turns out), barges in and paces the agent's audio
//! out through [`playout`]. [`reorder`] puts chunks back in order, [`clock`] says where the
//! call is on the media timeline, and [`journal`] keeps what happened.

mod agent_audio;
pub mod clock;
pub mod config;
mod conversation;
mod intake;
pub mod journal;
pub mod plan;
pub mod playout;
pub mod reorder;
pub mod socket;
mod turns;
mod writer;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::agent::AgentKind;
use crate::ids::CallId;
use config::SessionConfig;
use journal::Journal;
use plan::CallPlan;

/// A reservation without a socket is forgotten after this long.
const RESERVATION_TTL: Duration = Duration::from_secs(60);
/// Journals of ended calls kept for inspection.
const ENDED_JOURNALS: usize = 1_000;

/// Why a call was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// `max_calls` calls are already on.
    #[error("at capacity")]
    AtCapacity,
    /// The server is shutting down.
    #[error("draining for shutdown")]
    Draining,
    /// The call's socket is live and delivering media: a second upgrade is a replay or a
    /// mistake, not Plivo reconnecting, and must not take the call over.
    #[error("the call's media socket is live")]
    LiveSocket,
    /// `max_pending_sockets` sockets are already waiting for their `start`.
    #[error("too many sockets waiting for start")]
    TooManyPending,
}

impl Refused {
    /// A fixed label for metrics.
    pub fn kind(self) -> &'static str {
        match self {
            Self::AtCapacity => "capacity",
            Self::Draining => "draining",
            Self::LiveSocket => "live_socket",
            Self::TooManyPending => "pending",
        }
    }
}

/// When a socket last delivered media, readable by the registry without a lock: the
/// session stores the time of each media message (one atomic store), `attach` reads it.
#[derive(Debug)]
pub struct MediaPulse {
    epoch: Instant,
    /// Milliseconds after `epoch` of the last media message, plus one; 0 = none yet.
    last: AtomicU64,
}

impl MediaPulse {
    fn new() -> Self {
        Self {
            epoch: Instant::now(),
            last: AtomicU64::new(0),
        }
    }

    /// The socket delivered media at `now`.
    pub fn beat(&self, now: Instant) {
        let ms = now.saturating_duration_since(self.epoch).as_millis() as u64;
        self.last.store(ms.saturating_add(1), Ordering::Relaxed);
    }

    /// True when media arrived within `window` of `now`.
    fn alive_within(&self, window: Duration, now: Instant) -> bool {
        match self.last.load(Ordering::Relaxed) {
            0 => false,
            last => {
                let at = self.epoch + Duration::from_millis(last - 1);
                now.saturating_duration_since(at) < window
            }
        }
    }
}

/// The socket serving a call.
struct LiveSocket {
    cancel: CancellationToken,
    pulse: Arc<MediaPulse>,
}

struct CallEntry {
    reserved_at: Instant,
    generation: u64,
    session: Option<LiveSocket>,
    journal: Arc<Journal>,
    plan: Arc<CallPlan>,
    /// Only a socket that has not sent `start` claims this call (the answer URL never
    /// admitted it): it holds a pending slot, not a call slot. A pending entry always has
    /// a session, so only `Registry::remove` drops one.
    pending: bool,
}

impl CallEntry {
    fn new(plan: CallPlan) -> Self {
        Self {
            reserved_at: Instant::now(),
            generation: 0,
            session: None,
            journal: Arc::new(Journal::default()),
            plan: Arc::new(plan),
            pending: false,
        }
    }
}

/// What a media socket gets when it attaches to its call.
pub struct Attachment {
    /// The call's id.
    pub call_id: CallId,
    /// What the call runs, as resolved when it was answered.
    pub plan: Arc<CallPlan>,
    /// Identifies this socket among the call's sockets.
    pub generation: u64,
    /// Cancelled when another socket takes over, the call is hung up, or at shutdown.
    pub cancel: CancellationToken,
    /// The call's journal.
    pub journal: Arc<Journal>,
    /// True when an earlier socket of this call was still open and was taken over.
    pub took_over: bool,
    /// Beat on every media message, so a later upgrade can tell a live socket from a dead one.
    pub pulse: Arc<MediaPulse>,
}

#[derive(Default)]
struct Registry {
    calls: HashMap<CallId, CallEntry>,
    ended: VecDeque<(CallId, Arc<Journal>)>,
    /// Entries of `calls` that are pending (not counted against `max_calls`).
    pending: usize,
}

impl Registry {
    /// Calls that hold a call slot.
    fn admitted(&self) -> usize {
        self.calls.len() - self.pending
    }

    fn remove(&mut self, call_id: &CallId) -> Option<CallEntry> {
        let entry = self.calls.remove(call_id)?;
        if entry.pending {
            self.pending -= 1;
        }
        Some(entry)
    }
}

/// The registry of live calls.
pub struct Sessions {
    config: SessionConfig,
    default_agent: AgentKind,
    registry: Mutex<Registry>,
    generation: AtomicU64,
    draining: AtomicBool,
    root: CancellationToken,
    tracker: TaskTracker,
}

impl Sessions {
    /// An empty registry; calls that come with no plan run `default_agent`.
    pub fn new(config: SessionConfig, default_agent: AgentKind) -> Self {
        Self {
            config,
            default_agent,
            registry: Mutex::new(Registry::default()),
            generation: AtomicU64::new(1),
            draining: AtomicBool::new(false),
            root: CancellationToken::new(),
            tracker: TaskTracker::new(),
        }
    }

    /// The session settings.
    pub fn config(&self) -> &SessionConfig {
        &self.config
    }

    fn lock(&self) -> MutexGuard<'_, Registry> {
        // A panic while holding this lock cannot leave the map half-updated: recover it.
        self.registry
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Admits a call at the answer URL with its plan (idempotent for Plivo's retries of
    /// the same call: the first plan stays).
    pub fn reserve(&self, plan: CallPlan) -> Result<(), Refused> {
        if self.is_draining() {
            return Err(Refused::Draining);
        }
        let now = Instant::now();
        let mut registry = self.lock();
        registry.calls.retain(|_, c| {
            c.session.is_some() || now.duration_since(c.reserved_at) < RESERVATION_TTL
        });
        if registry.calls.contains_key(&plan.call_id) {
            return Ok(());
        }
        if registry.admitted() >= self.config.max_calls {
            return Err(Refused::AtCapacity);
        }
        registry
            .calls
            .insert(plan.call_id.clone(), CallEntry::new(plan));
        Ok(())
    }

    /// True when the call is reserved or streaming here.
    pub fn is_known(&self, call_id: &CallId) -> bool {
        self.lock().calls.contains_key(call_id)
    }

    /// Attaches a media socket to its call, taking over from an earlier socket if any. A
    /// call with no reservation gets the default plan, and is pending until
    /// [`Sessions::start`].
    pub fn attach(&self, call_id: &CallId) -> Result<Attachment, Refused> {
        self.attach_with(call_id, || {
            CallPlan::unplanned(call_id.clone(), self.default_agent)
        })
    }

    /// As [`Sessions::attach`], a call with no reservation getting `plan` (a reserved
    /// call keeps its own).
    pub fn attach_planned(&self, plan: CallPlan) -> Result<Attachment, Refused> {
        let call_id = plan.call_id.clone();
        self.attach_with(&call_id, || plan)
    }

    fn attach_with(
        &self,
        call_id: &CallId,
        plan: impl FnOnce() -> CallPlan,
    ) -> Result<Attachment, Refused> {
        if self.is_draining() {
            return Err(Refused::Draining);
        }
        let mut guard = self.lock();
        let registry = &mut *guard;
        if !registry.calls.contains_key(call_id) {
            if registry.pending >= self.config.max_pending_sockets {
                return Err(Refused::TooManyPending);
            }
            registry.pending += 1;
        }
        let entry = registry
            .calls
            .entry(call_id.clone())
            .or_insert_with(|| CallEntry {
                pending: true,
                ..CallEntry::new(plan())
            });
        // Plivo reconnects when its socket died; a socket that is still delivering media
        // is not dead, and whoever asks to replace it (a replayed upgrade) is refused.
        if let Some(live) = &entry.session
            && !live.cancel.is_cancelled()
            && live
                .pulse
                .alive_within(self.config.takeover_after, Instant::now())
        {
            return Err(Refused::LiveSocket);
        }
        let took_over = match entry.session.take() {
            Some(previous) => {
                previous.cancel.cancel();
                true
            }
            None => false,
        };
        let cancel = self.root.child_token();
        let pulse = Arc::new(MediaPulse::new());
        entry.generation = self.generation.fetch_add(1, Ordering::Relaxed);
        entry.session = Some(LiveSocket {
            cancel: cancel.clone(),
            pulse: Arc::clone(&pulse),
        });
        Ok(Attachment {
            call_id: call_id.clone(),
            plan: Arc::clone(&entry.plan),
            generation: entry.generation,
            cancel,
            journal: Arc::clone(&entry.journal),
            took_over,
            pulse,
        })
    }

    /// The socket `generation` of `call_id` sent a valid `start`: a pending call now takes
    /// a call slot, or is refused when none is free. A socket that was taken over meanwhile
    /// is let be (it is being cancelled).
    pub fn start(&self, call_id: &CallId, generation: u64) -> Result<(), Refused> {
        let mut guard = self.lock();
        let registry = &mut *guard;
        let admitted = registry.admitted();
        match registry.calls.get_mut(call_id) {
            Some(entry) if entry.generation == generation && entry.pending => {
                if admitted >= self.config.max_calls {
                    return Err(Refused::AtCapacity);
                }
                entry.pending = false;
                registry.pending -= 1;
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// A socket ended: the call is over unless a newer socket took it over.
    pub fn detach(&self, call_id: &CallId, generation: u64) {
        let mut registry = self.lock();
        if registry
            .calls
            .get(call_id)
            .is_some_and(|c| c.generation == generation)
            && let Some(entry) = registry.remove(call_id)
        {
            Self::remember(&mut registry, call_id, entry.journal);
        }
    }

    /// The call was hung up (Plivo's hangup callback): ends its session, if any.
    pub fn hang_up(&self, call_id: &CallId) -> bool {
        let mut registry = self.lock();
        match registry.remove(call_id) {
            Some(entry) => {
                if let Some(session) = entry.session {
                    session.cancel.cancel();
                }
                Self::remember(&mut registry, call_id, entry.journal);
                true
            }
            None => false,
        }
    }

    fn remember(registry: &mut Registry, call_id: &CallId, journal: Arc<Journal>) {
        if registry.ended.len() == ENDED_JOURNALS {
            registry.ended.pop_front();
        }
        registry.ended.push_back((call_id.clone(), journal));
    }

    /// Calls reserved or streaming (not sockets still pending their `start`).
    pub fn active(&self) -> usize {
        self.lock().admitted()
    }

    /// Sockets waiting for their `start` that hold a pending slot, not a call slot.
    pub fn pending(&self) -> usize {
        self.lock().pending
    }

    /// Calls with a media socket attached (not sockets still pending their `start`).
    pub fn streaming(&self) -> usize {
        self.lock()
            .calls
            .values()
            .filter(|c| c.session.is_some() && !c.pending)
            .count()
    }

    /// The journal of a live or recently ended call.
    pub fn journal(&self, call_id: &CallId) -> Option<Arc<Journal>> {
        let registry = self.lock();
        if let Some(entry) = registry.calls.get(call_id) {
            return Some(Arc::clone(&entry.journal));
        }
        registry
            .ended
            .iter()
            .rev()
            .find(|(id, _)| id == call_id)
            .map(|(_, journal)| Arc::clone(journal))
    }

    /// Stops admitting calls; live ones go on.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// True once shutdown has begun.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Tracks a session task so shutdown can wait for it.
    pub fn spawn<F>(&self, task: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        self.tracker.spawn(task);
    }

    /// Waits up to `deadline` for live sessions to end, then cancels the rest and waits
    /// for them to close. Returns how many had to be cancelled.
    pub async fn drain(&self, deadline: Duration) -> usize {
        self.start_draining();
        self.tracker.close();
        if tokio::time::timeout(deadline, self.tracker.wait())
            .await
            .is_ok()
        {
            return 0;
        }
        let forced = self.tracker.len();
        self.root.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.tracker.wait()).await;
        forced
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sessions(max_calls: usize) -> Sessions {
        Sessions::new(
            SessionConfig {
                max_calls,
                ..SessionConfig::default()
            },
            AgentKind::Echo,
        )
    }

    fn id(id: &str) -> CallId {
        CallId::parse(id).unwrap()
    }

    fn plan(call_id: &str) -> CallPlan {
        CallPlan {
            flow_name: Some("intake".into()),
            record: false,
            ..CallPlan::unplanned(id(call_id), AgentKind::Echo)
        }
    }

    #[test]
    fn capacity_is_enforced_at_answer_and_retries_are_welcome() {
        let s = sessions(2);
        assert_eq!(s.reserve(plan("a")), Ok(()));
        assert_eq!(s.reserve(plan("b")), Ok(()));
        assert_eq!(
            s.reserve(plan("a")),
            Ok(()),
            "Plivo retrying the answer URL"
        );
        assert_eq!(s.reserve(plan("c")), Err(Refused::AtCapacity));
        let c = s.attach(&id("c")).expect("a socket may wait for its start");
        assert_eq!(s.start(&id("c"), c.generation), Err(Refused::AtCapacity));
        assert_eq!(s.active(), 2);
    }

    #[test]
    fn sockets_without_start_take_pending_slots_not_call_slots() {
        let s = Sessions::new(
            SessionConfig {
                max_calls: 2,
                max_pending_sockets: 3,
                ..SessionConfig::default()
            },
            AgentKind::Echo,
        );
        let strays: Vec<Attachment> = (0..3)
            .map(|i| s.attach(&id(&format!("stray-{i}"))).unwrap())
            .collect();
        assert_eq!(
            s.attach(&id("stray-3")).err(),
            Some(Refused::TooManyPending)
        );
        assert_eq!((s.active(), s.pending(), s.streaming()), (0, 3, 0));
        // A real caller is still admitted at the answer URL, and its socket is not pending.
        assert_eq!(s.reserve(plan("real")), Ok(()));
        let real = s.attach(&id("real")).unwrap();
        assert_eq!(s.start(&id("real"), real.generation), Ok(()));
        assert_eq!((s.active(), s.pending(), s.streaming()), (1, 3, 1));
        // A stray that sends `start` takes the last call slot; the next one is refused.
        assert_eq!(s.start(&id("stray-0"), strays[0].generation), Ok(()));
        assert_eq!(
            s.start(&id("stray-0"), strays[0].generation),
            Ok(()),
            "once"
        );
        assert_eq!(
            s.start(&id("stray-1"), strays[1].generation),
            Err(Refused::AtCapacity)
        );
        assert_eq!((s.active(), s.pending()), (2, 2));
        // Sockets that end give their pending slots back.
        s.detach(&id("stray-1"), strays[1].generation);
        assert!(s.hang_up(&id("stray-2")));
        assert_eq!((s.active(), s.pending()), (2, 0));
        assert!(s.attach(&id("stray-4")).is_ok());
    }

    #[test]
    fn a_second_socket_takes_over_and_the_first_one_leaving_does_not_end_the_call() {
        let s = sessions(5);
        s.reserve(plan("a")).unwrap();
        let first = s.attach(&id("a")).unwrap();
        assert!(!first.took_over);
        assert_eq!(
            *first.plan,
            plan("a"),
            "the reserved plan reaches the socket"
        );
        let second = s.attach(&id("a")).unwrap();
        assert!(second.took_over);
        assert!(first.cancel.is_cancelled());
        assert!(!second.cancel.is_cancelled());
        s.detach(&id("a"), first.generation);
        assert_eq!(s.active(), 1, "still on: the second socket serves it");
        s.detach(&id("a"), second.generation);
        assert_eq!(s.active(), 0);
        assert!(s.journal(&id("a")).is_some(), "journal kept after the call");
    }

    #[test]
    fn a_socket_delivering_media_is_not_taken_over_and_a_silent_one_is() {
        let s = Sessions::new(
            SessionConfig {
                takeover_after: Duration::from_millis(50),
                ..SessionConfig::default()
            },
            AgentKind::Echo,
        );
        let live = s.attach(&id("a")).unwrap();
        live.pulse.beat(Instant::now());
        assert_eq!(s.attach(&id("a")).err(), Some(Refused::LiveSocket));
        assert!(!live.cancel.is_cancelled(), "the live socket goes on");

        // Its last media longer ago than the takeover window: Plivo is reconnecting.
        std::thread::sleep(Duration::from_millis(80));
        let second = s.attach(&id("a")).unwrap();
        assert!(second.took_over && live.cancel.is_cancelled());
    }

    #[test]
    fn a_socket_without_a_reservation_gets_the_default_plan() {
        let s = sessions(5);
        let a = s.attach(&id("a")).unwrap();
        assert_eq!(*a.plan, CallPlan::unplanned(id("a"), AgentKind::Echo));
        assert!(a.plan.record);
    }

    #[test]
    fn hang_up_cancels_the_session() {
        let s = sessions(5);
        let a = s.attach(&id("a")).unwrap();
        assert!(s.hang_up(&id("a")));
        assert!(a.cancel.is_cancelled());
        assert!(!s.hang_up(&id("a")), "idempotent");
    }

    #[tokio::test]
    async fn draining_refuses_new_calls_and_cancels_stragglers() {
        let s = sessions(5);
        let a = s.attach(&id("a")).unwrap();
        let cancel = a.cancel.clone();
        s.spawn(async move { cancel.cancelled().await });
        let forced = s.drain(Duration::from_millis(50)).await;
        assert_eq!(forced, 1);
        assert!(a.cancel.is_cancelled());
        assert_eq!(s.reserve(plan("b")), Err(Refused::Draining));
    }
}
