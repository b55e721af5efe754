//! The media clock: "now" on the call's media timeline, where the agent's audio lands.
//!
//! Plivo timestamps caller audio in milliseconds since the stream began; the phone plays
//! agent audio on that same timeline. The latest caller frame seen tells where the call is:
//! the phone is playing just past its end, and moves on in real time until the next frame
//! arrives. That keeps agent audio on the caller's timeline whatever the jitter or the
//! simulator's `--speed`.
//!
//! The session owns it (intake observes caller frames, the conversation reads "now"); the
//! recording only ever receives the millisecond positions it gives.
//!
//! Never: reads a clock itself (the session passes `Instant`s), or goes backwards.

use std::time::{Duration, Instant};

use crate::audio::frame::FRAME_MS;

/// Real time is counted on past the latest caller frame for at most this long.
pub const MAX_EXTRAPOLATION: Duration = Duration::from_secs(2);

/// Where the call is on the media timeline.
#[derive(Debug, Default, Clone, Copy)]
pub struct MediaClock {
    latest: Option<(u64, Instant)>,
}

impl MediaClock {
    /// A clock that has seen no media yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// A caller frame with media timestamp `timestamp_ms` arrived at `at`.
    pub fn observe(&mut self, timestamp_ms: u64, at: Instant) {
        if self.latest.is_none_or(|(latest, _)| timestamp_ms >= latest) {
            self.latest = Some((timestamp_ms, at));
        }
    }

    /// The media time at `at`: the end of the latest caller frame plus the whole frames of
    /// real time since it arrived (the phone plays in frames). 0 before any media.
    pub fn now_ms(&self, at: Instant) -> u64 {
        let Some((timestamp, seen)) = self.latest else {
            return 0;
        };
        let elapsed = at
            .saturating_duration_since(seen)
            .min(MAX_EXTRAPOLATION)
            .as_millis() as u64;
        timestamp
            .saturating_add(FRAME_MS)
            .saturating_add(elapsed / FRAME_MS * FRAME_MS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn now_is_past_the_latest_frame_and_moves_on_in_whole_frames() {
        let t0 = Instant::now();
        let mut clock = MediaClock::new();
        assert_eq!(clock.now_ms(t0), 0);
        clock.observe(1_000, t0);
        assert_eq!(clock.now_ms(t0), 1_020);
        assert_eq!(clock.now_ms(t0 + ms(19)), 1_020);
        assert_eq!(clock.now_ms(t0 + ms(45)), 1_060);
        assert_eq!(clock.now_ms(t0 + ms(60_000)), 1_020 + 2_000, "capped");
    }

    #[test]
    fn a_late_frame_does_not_move_it_back_and_speed_does_not_matter() {
        let t0 = Instant::now();
        let mut clock = MediaClock::new();
        // Media at 10x real time: the clock follows the timestamps, not the wall.
        for n in 0..100u64 {
            clock.observe(n * 20, t0 + ms(2 * n));
        }
        assert_eq!(clock.now_ms(t0 + ms(199)), 99 * 20 + 20);
        clock.observe(40, t0 + ms(200));
        assert_eq!(clock.now_ms(t0 + ms(200)), 99 * 20 + 20);
        clock.observe(u64::MAX, t0);
        assert_eq!(
            clock.now_ms(t0 + ms(500)),
            u64::MAX,
            "saturates, never wraps"
        );
    }
}
