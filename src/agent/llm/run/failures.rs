//! What the agent does when a provider fails: retry a reply nothing of which was heard,
//! else the fallback line by espeak-ng, goodbye at `max_failures`; and the timing of both
//! retries.

use super::*;
use crate::retry::RetryPolicy;
use tracing::info;

/// A reply's retry: soon, or not at all (a caller waiting in silence is worse than the
/// fallback line; a `Retry-After` beyond 1.5 s gives up).
pub(super) fn retry_policy() -> RetryPolicy {
    RetryPolicy {
        base: Duration::from_millis(200),
        cap: Duration::from_secs(1),
        max_retry_after: Some(Duration::from_millis(1_500)),
        ..RetryPolicy::default()
    }
    .with_retries(MAX_RETRIES)
}

/// Reopening a failed STT: 0.5 s, 1 s, 2 s apart (jittered), then the outage counts again.
pub(super) fn stt_retry_policy() -> RetryPolicy {
    RetryPolicy {
        base: Duration::from_millis(500),
        cap: Duration::from_secs(2),
        ..RetryPolicy::default()
    }
    .with_retries(3)
}

impl Call {
    /// A chat or TTS failure of the reply in progress.
    pub(super) async fn reply_failed(
        &mut self,
        io: &mut AgentIo,
        api: &'static str,
        error: ProviderError,
    ) -> Done {
        let Some(reply) = &self.reply else {
            return Ok(());
        };
        let source = reply.source;
        if source == Source::Offline {
            // espeak-ng failed saying a fallback line: nothing else can speak.
            warn!(%error, "the offline voice failed: hanging up");
            self.reply = None;
            self.ending = true;
            return io
                .send(Command::HangUp {
                    reason: "no voice left to speak with".into(),
                })
                .await;
        }
        if source == Source::Model
            && !reply.heard_any()
            && reply.attempt < MAX_RETRIES
            && error.retriable()
            && let Some(delay) = self.backoff.next_delay(retry_after(&error))
        {
            warn!(api, %error, ?delay, "provider failed before the caller heard anything: retrying");
            counter!(telemetry::AGENT_PROVIDER_FAILURES, "api" => api, "outcome" => "retried")
                .increment(1);
            io.send(failure(api, &error, "retried")).await?;
            self.cancel_reply(io).await?;
            self.retry = Some((Instant::now() + delay, Source::Model));
            return Ok(());
        }
        self.cancel_reply(io).await?;
        self.failed(io, api, &error).await
    }

    /// A provider failed mid-call: the fallback line, or goodbye after `max_failures`.
    pub(super) async fn failed(
        &mut self,
        io: &mut AgentIo,
        api: &'static str,
        error: &ProviderError,
    ) -> Done {
        self.failures += 1;
        let profile = Arc::clone(&self.setup.profile);
        let last = self.failures >= profile.max_failures;
        let outcome = if last { "goodbye" } else { "fallback" };
        counter!(telemetry::AGENT_PROVIDER_FAILURES, "api" => api, "outcome" => outcome)
            .increment(1);
        warn!(api, provider = error.provider(), kind = error.kind(), %error, failures = self.failures, outcome, "provider failed mid-call");
        io.send(failure(api, error, outcome)).await?;
        if self.ending {
            return Ok(());
        }
        let text = if last {
            self.render(&profile.goodbye)
        } else {
            self.render(&profile.fallback_line)
        };
        if last {
            info!("too many provider failures: saying goodbye");
            self.ending = true;
        }
        let saying_fallback = self
            .reply
            .as_ref()
            .is_some_and(|r| r.source == Source::Offline);
        if !last && (self.pending_line.is_some() || saying_fallback) {
            // The caller is already hearing (or about to hear) the fallback line.
            return Ok(());
        }
        if self.reply.is_some() {
            // What is being said is not what failed (the STT, say): the line follows it.
            self.pending_line = Some((text, last));
            return Ok(());
        }
        self.say_offline(io, text, last);
        Ok(())
    }

    /// Says `text` with espeak-ng (then hangs up, if `hang_up`).
    pub(super) fn say_offline(&mut self, io: &mut AgentIo, text: String, hang_up: bool) {
        let mut reply = self.line(Source::Offline, io.next_turn(), &text);
        reply.hang_up = hang_up;
        self.reply = Some(reply);
    }
}

/// The call record's note of a provider failure.
fn failure(api: &'static str, error: &ProviderError, outcome: &'static str) -> Command {
    Command::ProviderFailed {
        api,
        provider: error.provider(),
        kind: error.kind(),
        outcome,
        message: error.to_string(),
    }
}

fn retry_after(error: &ProviderError) -> Option<Duration> {
    match error {
        ProviderError::Status { retry_after, .. } => *retry_after,
        _ => None,
    }
}
