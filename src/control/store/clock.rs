//! Time for the stores: when entries fall due, when leases run out, what `updated_at` says.
//!
//! Stores read the time only through a [`Clock`], so tests drive lease expiry and retry
//! delays with a [`ManualClock`] instead of sleeping; production uses [`SystemClock`].
//!
//! Due times and lease deadlines are compared as whole microseconds since the Unix epoch
//! ([`micros`]), in every store alike, so the SQLite store (which keeps them as integers)
//! and the in-memory model agree to the microsecond.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};

/// Where a store gets the current time.
pub trait Clock: Send + Sync + fmt::Debug {
    /// Now.
    fn now(&self) -> DateTime<Utc>;
}

/// The wall clock (`Utc::now()`).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that moves only when told to; clones share the same time.
#[derive(Debug, Clone)]
pub struct ManualClock {
    now: Arc<Mutex<DateTime<Utc>>>,
}

impl ManualClock {
    /// A clock stopped at `start`.
    pub fn new(start: DateTime<Utc>) -> Self {
        Self {
            now: Arc::new(Mutex::new(start)),
        }
    }

    /// Moves the clock forward by `by` (saturating at the end of time).
    pub fn advance(&self, by: Duration) {
        let mut now = self.now.lock().unwrap_or_else(PoisonError::into_inner);
        let step = chrono::Duration::from_std(by).unwrap_or(chrono::Duration::MAX);
        *now = now
            .checked_add_signed(step)
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
    }

    /// Sets the clock to `to` (it may go back).
    pub fn set(&self, to: DateTime<Utc>) {
        *self.now.lock().unwrap_or_else(PoisonError::into_inner) = to;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The shared clock handle the stores hold.
pub type SharedClock = Arc<dyn Clock>;

/// `t` as whole microseconds since the Unix epoch: the unit stores compare times in.
pub fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

/// `from` plus `by`, in microseconds, saturating (a huge lease never wraps into the past).
pub(crate) fn micros_after(from: i64, by: Duration) -> i64 {
    from.saturating_add(i64::try_from(by.as_micros()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told_and_clones_share_it() {
        let start = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let clock = ManualClock::new(start);
        let other = clock.clone();
        assert_eq!(clock.now(), start);
        clock.advance(Duration::from_millis(1_500));
        assert_eq!(micros(other.now()) - micros(start), 1_500_000);
        clock.advance(Duration::MAX);
        assert_eq!(other.now(), DateTime::<Utc>::MAX_UTC);
        assert_eq!(micros_after(i64::MAX - 1, Duration::from_secs(1)), i64::MAX);
    }
}
