//! The seams between modules that must not know each other: each adapter implements a
//! lower module's trait by calling a higher one, so the lower module stays ignorant of it.
//!
//! The media session (below the control plane in the layout) tells the control plane its
//! stream started through [`StreamStarted`]; the adapter records `call.media_started`
//! on a task of its own, so the session never waits on the store. The recording publisher
//! announces a published recording through [`RecordingAnnouncer`]; the control plane
//! stores its URL on the call and reports `call.recording_ready`. The session keeps its
//! conversation on the call record through [`ConversationRecords`] (one writer task per
//! call, the latest value winning) and asks Plivo to hang up through [`HangUpCall`].

use std::sync::Arc;

use crate::control::plane::ControlPlane;
use crate::control::store::StoreError;
use crate::ids::CallId;
use crate::recording::publish::{AnnounceError, RecordingAnnouncer};
use crate::session::socket::{ConversationRecords, HangUpCall, StreamStarted};
use crate::transcript::ConversationRecord;

/// The recording → control seam. A store that is down is worth retrying; anything else
/// (an unknown call) is not.
#[async_trait::async_trait]
impl RecordingAnnouncer for ControlPlane {
    async fn announce(&self, call_id: &str, url: &str) -> Result<(), AnnounceError> {
        self.on_recording_ready(call_id, url)
            .await
            .map_err(|error| match error {
                StoreError::Backend(_) => AnnounceError::Unavailable(error.to_string()),
                _ => AnnounceError::Rejected(error.to_string()),
            })
    }
}

/// The session → control seam: a started stream becomes `call.media_started`.
pub(super) fn media_started(control: Arc<ControlPlane>) -> Arc<dyn StreamStarted> {
    Arc::new(MediaStarted { control })
}

struct MediaStarted {
    control: Arc<ControlPlane>,
}

impl StreamStarted for MediaStarted {
    fn stream_started(&self, call_id: &CallId, call_uuid: &str) {
        let (control, call_id, call_uuid) = (
            Arc::clone(&self.control),
            call_id.clone(),
            call_uuid.to_owned(),
        );
        tokio::spawn(async move {
            if let Err(error) = control.on_media_started(&call_id, Some(call_uuid)).await {
                tracing::warn!(%call_id, %error, "could not record the media start");
            }
        });
    }
}

/// The session → control seam for the conversation: each call's latest record is written
/// by a task of its own, so the session never waits on the store.
pub(super) fn conversation_records(control: Arc<ControlPlane>) -> Arc<dyn ConversationRecords> {
    Arc::new(Records { control })
}

struct Records {
    control: Arc<ControlPlane>,
}

impl ConversationRecords for Records {
    fn open(&self, call_id: &CallId) -> tokio::sync::watch::Sender<ConversationRecord> {
        let (tx, mut rx) = tokio::sync::watch::channel(ConversationRecord::default());
        let (control, call_id) = (Arc::clone(&self.control), call_id.clone());
        tokio::spawn(async move {
            // `changed` yields a value not yet seen even after the session dropped its end,
            // so the last record is always written.
            while rx.changed().await.is_ok() {
                let record = rx.borrow_and_update().clone();
                match control.on_conversation(call_id.as_str(), record).await {
                    Ok(()) | Err(StoreError::NotFound(_)) => {}
                    Err(error) => {
                        tracing::warn!(%call_id, %error, "could not keep the conversation on the record")
                    }
                }
            }
        });
        tx
    }
}

/// The session → control seam for hanging up: Plivo's REST hang-up, on a task of its own.
pub(super) fn hang_up(control: Arc<ControlPlane>) -> Arc<dyn HangUpCall> {
    Arc::new(HangUp { control })
}

struct HangUp {
    control: Arc<ControlPlane>,
}

impl HangUpCall for HangUp {
    fn hang_up(&self, call_id: &CallId, call_uuid: &str) {
        let (control, call_id, call_uuid) = (
            Arc::clone(&self.control),
            call_id.clone(),
            call_uuid.to_owned(),
        );
        tokio::spawn(async move {
            match control.hang_up(call_id.as_str()).await {
                Ok(_) => tracing::info!(%call_id, %call_uuid, "hung up through Plivo's REST API"),
                Err(crate::control::plane::HangupError::NoPlivo) => {
                    tracing::debug!(%call_id, "no Plivo credentials: the closed stream ends the call")
                }
                Err(error) => {
                    tracing::warn!(%call_id, %error, "Plivo's REST hang-up failed: the closed stream ends the call")
                }
            }
        });
    }
}
