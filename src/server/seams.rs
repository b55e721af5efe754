//! The seams between modules that must not know each other: each adapter implements a
//! lower module's trait by calling a higher one, so the lower module stays ignorant of it.
//!
//! The media session (below the control plane in the layout) tells the control plane its
//! stream started through [`StreamStarted`]; the adapter records `call.media_started`
//! on a task of its own, so the session never waits on the store. The recording publisher
//! announces a published recording through [`RecordingAnnouncer`]; the control plane
//! stores its URL on the call and reports `call.recording_ready`.

use std::sync::Arc;

use crate::control::plane::ControlPlane;
use crate::control::store::StoreError;
use crate::ids::CallId;
use crate::recording::publish::{AnnounceError, RecordingAnnouncer};
use crate::session::socket::StreamStarted;

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
