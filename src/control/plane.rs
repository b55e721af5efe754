//! The control plane's front: what the API, Plivo's callbacks and the media sessions call.
//!
//! It owns the rules that span the store and Plivo: a call is stored (with
//! `call.initiated`) before it is placed, so a crash in between leaves a record, never a
//! call nobody knows about; a Plivo refusal marks the call `failed` with the cause; the
//! backend's `call_id` is required and never replaced; hanging up never sends an empty
//! uuid. Every stored change wakes the deliverer.

use std::sync::Arc;

use serde_json::Value;
use thiserror::Error;
use tracing::{info, warn};

use super::config::ControlConfig;
use super::lifecycle::{self, Observation, valid_number};
use super::model::{CallRecord, CallState, Direction, EventType};
use super::store::{CallFilter, Page, Store, StoreError};
use crate::ids::{CallId, CallIdError};
use crate::telephony::plivo::rest::{CallbackMethod, MakeCall, PlivoApi, RestError};
use crate::transcript::ConversationRecord;

/// A request to place an outbound call.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NewCall {
    /// The backend's id for the call (required).
    pub call_id: Option<String>,
    /// Destination: E.164 or `sip:` URI.
    pub to: Option<String>,
    /// Caller id; the configured one when absent.
    pub from: Option<String>,
    /// The backend's campaign.
    pub campaign_id: Option<String>,
    /// The backend's flow name.
    pub flow_name: Option<String>,
    /// Agent to run.
    pub agent: Option<String>,
    /// Free-form data kept with the call.
    pub metadata: Value,
    /// `Some(false)` opts the call out of recording (`record=false` on its answer URL).
    pub record: Option<bool>,
}

/// Why a call was not placed.
#[derive(Debug, Error)]
pub enum PlaceError {
    /// No `call_id`, or an unusable one: the backend's id is required, never generated.
    #[error("call_id is required: send the backend's id for this call ({0})")]
    CallId(CallIdError),
    /// `to` or `from` is not E.164 or a `sip:` URI.
    #[error("{field} must be an E.164 number or a sip: URI")]
    Number {
        /// `to` or `from`.
        field: &'static str,
    },
    /// The `call_id` is already known: nothing was placed.
    #[error("call {} already exists", .0.call_id)]
    Exists(Box<CallRecord>),
    /// No Plivo account is configured.
    #[error("no Plivo account configured (plivo.auth_id and an auth token)")]
    NoPlivo,
    /// Plivo refused or failed; the call is stored as `failed` with the cause.
    #[error("Plivo did not place the call: {error}")]
    Plivo {
        /// What Plivo said.
        error: RestError,
        /// The call, now `failed`.
        call: Box<CallRecord>,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why a hangup failed.
#[derive(Debug, Error)]
pub enum HangupError {
    /// No such call.
    #[error("no call {0}")]
    NotFound(String),
    /// The call has no Plivo uuid yet and no request uuid to cancel.
    #[error("call {0} has not reached Plivo yet")]
    NotPlaced(String),
    /// No Plivo account is configured.
    #[error("no Plivo account configured")]
    NoPlivo,
    /// Plivo failed.
    #[error(transparent)]
    Plivo(#[from] RestError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The control plane.
pub struct ControlPlane {
    store: Arc<dyn Store>,
    plivo: Option<Arc<dyn PlivoApi>>,
    config: ControlConfig,
    wake: Arc<dyn Fn() + Send + Sync>,
}

impl ControlPlane {
    /// A control plane over `store`, placing calls through `plivo`; `wake` is called after
    /// every change that stored events (it nudges the deliverer).
    pub fn new(
        store: Arc<dyn Store>,
        plivo: Option<Arc<dyn PlivoApi>>,
        config: ControlConfig,
        wake: Arc<dyn Fn() + Send + Sync>,
    ) -> Self {
        Self {
            store,
            plivo,
            config,
            wake,
        }
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Places an outbound call; `public_base` is the URL Plivo reaches voxgate at.
    pub async fn place_call(
        &self,
        new: NewCall,
        public_base: &str,
    ) -> Result<CallRecord, PlaceError> {
        let call_id = CallId::parse(new.call_id.as_deref().unwrap_or(""))
            .map_err(PlaceError::CallId)?
            .as_str()
            .to_owned();
        let to = new.to.unwrap_or_default();
        if !valid_number(&to) {
            return Err(PlaceError::Number { field: "to" });
        }
        let from = new
            .from
            .or_else(|| self.config.caller_id.clone())
            .unwrap_or_default();
        if !valid_number(&from) {
            return Err(PlaceError::Number { field: "from" });
        }
        let plivo = self.plivo.clone().ok_or(PlaceError::NoPlivo)?;

        let mut call = CallRecord::new(
            call_id.clone(),
            Direction::Outbound,
            to.clone(),
            from.clone(),
        );
        call.campaign_id = new.campaign_id;
        call.flow_name = new.flow_name;
        call.agent = new.agent;
        call.metadata = new.metadata;
        match self.store.create_call(call, EventType::Initiated).await {
            Ok(_) => {}
            Err(StoreError::AlreadyExists(existing)) => return Err(PlaceError::Exists(existing)),
            Err(other) => return Err(other.into()),
        }
        (self.wake)();

        let with_id = |path: &str| {
            let separator = if path.contains('?') { '&' } else { '?' };
            let mut url = format!("{public_base}{path}{separator}call_id=");
            url.extend(form_urlencoded::byte_serialize(call_id.as_bytes()));
            url
        };
        let answer_path = if new.record == Some(false) {
            "/plivo/answer?record=false"
        } else {
            "/plivo/answer"
        };
        let mut request = MakeCall::new(from, to, with_id(answer_path));
        request.answer_method = Some(CallbackMethod::Post);
        request.hangup_url = Some(with_id("/plivo/hangup"));
        request.hangup_method = Some(CallbackMethod::Post);
        request.ring_url = Some(with_id("/plivo/ring"));
        request.ring_method = Some(CallbackMethod::Post);
        match plivo.make_call(&request).await {
            Ok(response) => {
                let request_uuid = response.request_uuid;
                info!(%call_id, %request_uuid, "call placed");
                let updated = self
                    .store
                    .update_call(
                        &call_id,
                        Box::new(move |call: &mut CallRecord| {
                            call.plivo_request_uuid = Some(request_uuid);
                            Ok(Vec::new())
                        }),
                    )
                    .await;
                updated?;
            }
            Err(error) => {
                warn!(%call_id, kind = error.kind(), %error, "Plivo did not place the call");
                let cause = format!("plivo_{}", error.kind());
                self.store
                    .update_call(&call_id, lifecycle::failed(cause))
                    .await?;
                (self.wake)();
                let call = self
                    .store
                    .get_call(&call_id)
                    .await?
                    .ok_or_else(|| StoreError::NotFound(call_id.clone()))?;
                return Err(PlaceError::Plivo {
                    error,
                    call: Box::new(call),
                });
            }
        }
        self.store
            .get_call(&call_id)
            .await?
            .ok_or(PlaceError::Store(StoreError::NotFound(call_id)))
    }

    /// Plivo fetched the answer URL: the call is answered. An inbound call voxgate has
    /// not seen is created (its `call_id` is the given one: `CallUUID` unless the answer
    /// URL carried an id).
    pub async fn on_answer(
        &self,
        call_id: &CallId,
        call_uuid: &str,
        direction: Direction,
        from: &str,
        to: &str,
    ) -> Result<(), StoreError> {
        let call_id = call_id.as_str();
        if self.store.get_call(call_id).await?.is_none() {
            let mut call = CallRecord::new(call_id, direction, to, from);
            call.plivo_call_uuid = Some(call_uuid.to_owned()).filter(|u| !u.is_empty());
            match self.store.create_call(call, EventType::Initiated).await {
                Ok(_) | Err(StoreError::AlreadyExists(_)) => {}
                Err(other) => return Err(other),
            }
        }
        self.observe(
            call_id,
            Observation {
                status: Some("in-progress".into()),
                call_uuid: Some(call_uuid.to_owned()),
                ..Observation::default()
            },
        )
        .await
    }

    /// A Plivo callback (ring, hangup) or a reconcile finding about `call_id`. Unknown
    /// calls are kept for audit; refused transitions (late or replayed) are logged and
    /// change nothing.
    pub async fn observe(&self, call_id: &str, observation: Observation) -> Result<(), StoreError> {
        match self
            .store
            .update_call(
                call_id,
                lifecycle::observe(observation, self.config.min_answered_secs),
            )
            .await
        {
            Ok(events) => {
                if !events.is_empty() {
                    (self.wake)();
                }
                Ok(())
            }
            Err(StoreError::Transition(refused)) => {
                info!(%call_id, %refused, "ignored a late or replayed status");
                Ok(())
            }
            Err(other) => Err(other),
        }
    }

    /// Keeps a callback that matched no call.
    pub async fn orphan_callback(
        &self,
        kind: &str,
        fields: &[(String, String)],
    ) -> Result<(), StoreError> {
        self.store.record_orphan_callback(kind, fields).await
    }

    /// The media stream of `call_id` started.
    pub async fn on_media_started(
        &self,
        call_id: &CallId,
        call_uuid: Option<String>,
    ) -> Result<(), StoreError> {
        match self
            .store
            .update_call(call_id.as_str(), lifecycle::media_started(call_uuid))
            .await
        {
            Ok(events) => {
                if !events.is_empty() {
                    (self.wake)();
                }
                Ok(())
            }
            Err(StoreError::NotFound(_)) => Ok(()),
            Err(other) => Err(other),
        }
    }

    /// The call's recording is stored at `url`: sets `recording_url` and reports
    /// `call.recording_ready`, also after the call ended (it is not a state change). The
    /// same URL again reports nothing. [`StoreError::NotFound`] for an unknown call.
    pub async fn on_recording_ready(&self, call_id: &str, url: &str) -> Result<(), StoreError> {
        let events = self
            .store
            .update_call(call_id, lifecycle::recording_ready(url.to_owned()))
            .await?;
        if !events.is_empty() {
            info!(%call_id, %url, "recording ready");
            (self.wake)();
        }
        Ok(())
    }

    /// Keeps `call_id`'s conversation (transcript, turns, slots, who hung up) on its record.
    /// [`StoreError::NotFound`] for an unknown call.
    pub async fn on_conversation(
        &self,
        call_id: &str,
        record: ConversationRecord,
    ) -> Result<(), StoreError> {
        self.store
            .update_call(call_id, lifecycle::conversation(record))
            .await
            .map(drop)
    }

    /// Hangs up (or cancels, before Plivo assigned a call uuid) through Plivo's REST API.
    pub async fn hang_up(&self, call_id: &str) -> Result<CallRecord, HangupError> {
        let plivo = self.plivo.clone().ok_or(HangupError::NoPlivo)?;
        let call = self
            .store
            .get_call(call_id)
            .await?
            .ok_or_else(|| HangupError::NotFound(call_id.to_owned()))?;
        if call.state.is_terminal() {
            return Ok(call);
        }
        // Never an empty uuid: Plivo would hang up every call on the account.
        let outcome = match (
            call.plivo_call_uuid.as_deref(),
            call.plivo_request_uuid.as_deref(),
        ) {
            (Some(uuid), _) if !uuid.is_empty() => plivo.hangup(uuid).await?,
            (_, Some(request)) if !request.is_empty() => plivo.cancel_request(request).await?,
            _ => return Err(HangupError::NotPlaced(call_id.to_owned())),
        };
        info!(%call_id, ?outcome, "hung up through Plivo");
        // An answered call's end (and duration) comes with Plivo's hangup callback or
        // reconcile; one not yet answered is canceled now.
        if call.state != CallState::InProgress {
            let cancel = Observation {
                status: Some("cancel".into()),
                ..Observation::default()
            };
            self.observe(call_id, cancel).await?;
        }
        Ok(self.store.get_call(call_id).await?.unwrap_or(call))
    }

    /// One call.
    pub async fn get(&self, call_id: &str) -> Result<Option<CallRecord>, StoreError> {
        self.store.get_call(call_id).await
    }

    /// A page of calls.
    pub async fn list(
        &self,
        filter: &CallFilter,
        page: &Page,
    ) -> Result<Vec<CallRecord>, StoreError> {
        self.store.list_calls(filter, page).await
    }
}
