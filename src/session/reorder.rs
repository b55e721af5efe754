//! Restores the order of caller media chunks within a small window, and resynchronises
//! when the numbering jumps.
//!
//! Plivo numbers media chunks from 1. A chunk ahead of the next expected one is held (up
//! to `window` of them); when the missing one arrives, the run is released in order. A
//! chunk a little behind the point already released (at most `window`, and always the
//! one just before it) is late or a duplicate and is dropped. When the window overflows,
//! the gap is given up as lost and the held chunks go on.
//!
//! A chunk further ahead or behind than that is not a gap in the audio but a numbering
//! the window cannot follow: a stray number from a broken or hostile peer, or a counter
//! that was reset. It starts a new base (a [`Outcome::Resync`]): what is held is
//! released, the chunk plays, and the numbering continues from it. A stray number costs
//! its own frame, never the frames after it, so no chunk sequence can silence a call for
//! more than the window. Jumps are never counted as lost chunks, and every difference is
//! computed without overflow (any `u64` is a valid chunk number).
//!
//! Fixed memory: `window` slots, allocated once. Every outcome is counted by the caller.

use crate::audio::frame::PooledFrame;

/// What happened to a pushed chunk, besides any frames released.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// In order: released now.
    InOrder,
    /// Ahead of a missing chunk: held back.
    Held,
    /// Just behind what was already released, or a duplicate: dropped.
    Late,
    /// Too far ahead or behind to be reordered: a new base, released now.
    Resync {
        /// How far the chunk was from the expected one.
        distance: u64,
        /// True when the chunk was ahead of the expected one.
        ahead: bool,
    },
}

/// The reorder window of one stream.
pub struct Reorder {
    /// `slots[i]` holds chunk `next + i`; `slots[0]` is empty between pushes.
    slots: Vec<Option<PooledFrame>>,
    next: Option<u64>,
    lost: u64,
    reordered: u64,
    resyncs: u64,
}

impl Reorder {
    /// A window holding up to `window` chunks ahead (0 = no reordering: chunks play in
    /// the order they arrive, a repeat of the last one dropped).
    pub fn new(window: usize) -> Self {
        Self {
            slots: (0..=window).map(|_| None).collect(),
            next: None,
            lost: 0,
            reordered: 0,
            resyncs: 0,
        }
    }

    /// Chunks given up as lost so far (gaps inside the window; never a jump).
    pub fn lost(&self) -> u64 {
        self.lost
    }

    /// Chunks that arrived early and were put back in order.
    pub fn reordered(&self) -> u64 {
        self.reordered
    }

    /// Times the numbering jumped and a new base was taken.
    pub fn resyncs(&self) -> u64 {
        self.resyncs
    }

    /// How far behind the expected chunk a chunk is still only late (a duplicate of the
    /// last released one is always late, even without a window).
    fn tolerance(&self) -> u64 {
        (self.slots.len() as u64 - 1).max(1)
    }

    /// Takes one chunk; hands every frame that is now in order to `release`.
    pub fn push(&mut self, frame: PooledFrame, mut release: impl FnMut(PooledFrame)) -> Outcome {
        let chunk = frame.chunk;
        let next = *self.next.get_or_insert(chunk);
        let window = self.slots.len() as u64;
        if chunk < next {
            let behind = next - chunk;
            if behind <= self.tolerance() {
                return Outcome::Late;
            }
            return self.resync(frame, behind, false, &mut release);
        }
        let mut offset = chunk - next;
        if offset >= window {
            // Too far ahead: give up on the gap, releasing what is held in order.
            while offset >= window && self.slots.iter().any(Option::is_some) {
                self.advance(&mut release);
                offset -= 1;
            }
            if offset >= window {
                return self.resync(frame, chunk - next, true, &mut release);
            }
        }
        let slot = &mut self.slots[offset as usize];
        if slot.is_some() {
            return Outcome::Late; // a duplicate of a held chunk
        }
        *slot = Some(frame);
        let outcome = if offset == 0 {
            Outcome::InOrder
        } else {
            self.reordered += 1;
            Outcome::Held
        };
        while self.slots[0].is_some() {
            self.advance(&mut release);
        }
        outcome
    }

    /// Releases everything held, in order, counting the gaps between them as lost.
    pub fn flush(&mut self, mut release: impl FnMut(PooledFrame)) {
        while self.slots.iter().any(Option::is_some) {
            self.advance(&mut release);
        }
    }

    /// Starts a new base at `frame`'s chunk: what is held goes first, then `frame`.
    fn resync(
        &mut self,
        frame: PooledFrame,
        distance: u64,
        ahead: bool,
        release: &mut impl FnMut(PooledFrame),
    ) -> Outcome {
        for slot in &mut self.slots {
            if let Some(held) = slot.take() {
                release(held);
            }
        }
        self.resyncs += 1;
        self.next = Some(frame.chunk.wrapping_add(1));
        release(frame);
        Outcome::Resync { distance, ahead }
    }

    /// Moves past `next`: releases it if held, else counts it lost.
    fn advance(&mut self, release: &mut impl FnMut(PooledFrame)) {
        match self.slots[0].take() {
            Some(frame) => release(frame),
            None => self.lost += 1,
        }
        self.slots.rotate_left(1);
        if let Some(next) = self.next.as_mut() {
            *next = next.wrapping_add(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::frame::FramePool;

    fn run(window: usize, chunks: &[u64]) -> (Vec<u64>, Vec<Outcome>, u64) {
        let pool = FramePool::new(64);
        let mut reorder = Reorder::new(window);
        let mut out = Vec::new();
        let mut outcomes = Vec::new();
        for &chunk in chunks {
            let mut frame = pool.get();
            frame.chunk = chunk;
            outcomes.push(reorder.push(frame, |f| out.push(f.chunk)));
        }
        reorder.flush(|f| out.push(f.chunk));
        (out, outcomes, reorder.lost())
    }

    #[test]
    fn in_order_chunks_pass_straight_through() {
        let (out, outcomes, lost) = run(4, &[1, 2, 3, 4]);
        assert_eq!(out, [1, 2, 3, 4]);
        assert!(outcomes.iter().all(|o| *o == Outcome::InOrder));
        assert_eq!(lost, 0);
    }

    #[test]
    fn a_swap_within_the_window_is_put_back_in_order() {
        let (out, outcomes, lost) = run(4, &[1, 3, 2, 4, 6, 5, 7]);
        assert_eq!(out, [1, 2, 3, 4, 5, 6, 7]);
        assert_eq!(outcomes[1], Outcome::Held);
        assert_eq!(lost, 0);
    }

    #[test]
    fn duplicates_and_late_chunks_are_dropped() {
        let (out, outcomes, _) = run(4, &[1, 2, 2, 3, 1, 5, 5, 4]);
        assert_eq!(out, [1, 2, 3, 4, 5]);
        assert_eq!(outcomes[2], Outcome::Late);
        assert_eq!(outcomes[4], Outcome::Late);
        assert_eq!(outcomes[6], Outcome::Late, "duplicate of a held chunk");
    }

    #[test]
    fn a_gap_wider_than_the_window_is_given_up_as_lost() {
        let (out, _, lost) = run(2, &[1, 3, 4, 5, 6]);
        assert_eq!(out, [1, 3, 4, 5, 6]);
        assert_eq!(lost, 1);
    }

    #[test]
    fn a_jump_beyond_the_window_starts_a_new_base_instead_of_counting_it_lost() {
        let (out, outcomes, lost) = run(2, &[1, 10, 11]);
        assert_eq!(out, [1, 10, 11]);
        assert_eq!(
            outcomes[1],
            Outcome::Resync {
                distance: 8,
                ahead: true
            }
        );
        assert_eq!(lost, 0, "a jump is a resync, not 8 lost chunks");
    }

    #[test]
    fn one_stray_chunk_far_ahead_costs_nothing_after_it() {
        let mut chunks: Vec<u64> = (1..=10).collect();
        chunks.push(1_010);
        chunks.extend(11..=40);
        let (out, outcomes, lost) = run(4, &chunks);
        let expected: Vec<u64> = (1..=10).chain([1_010]).chain(11..=40).collect();
        assert_eq!(
            out, expected,
            "every real chunk after the stray one is heard"
        );
        assert_eq!(lost, 0);
        assert_eq!(
            outcomes[11],
            Outcome::Resync {
                distance: 1_000,
                ahead: false
            },
            "the real numbering comes back as a resync"
        );
    }

    #[test]
    fn extreme_numbers_never_overflow_or_silence_the_call() {
        for stray in [u64::MAX, u64::MAX - 1, 1 << 53, 0] {
            let mut chunks: Vec<u64> = (1..=10).collect();
            chunks.extend([stray, stray]);
            chunks.extend(11..=30);
            let (out, _, lost) = run(4, &chunks);
            let heard = out.iter().filter(|c| (11..=30).contains(*c)).count();
            assert_eq!(heard, 20, "stray {stray}: {out:?}");
            assert_eq!(lost, 0, "stray {stray}");
        }
    }

    #[test]
    fn a_counter_reset_is_followed_at_once() {
        let chunks: Vec<u64> = (1..=20).chain(1..=20).collect();
        let (out, outcomes, _) = run(4, &chunks);
        assert_eq!(out, chunks, "nothing of the second run is dropped");
        assert_eq!(
            outcomes[20],
            Outcome::Resync {
                distance: 20,
                ahead: false
            }
        );
    }

    #[test]
    fn held_chunks_are_released_at_the_end() {
        let (out, _, lost) = run(4, &[1, 3, 4]);
        assert_eq!(out, [1, 3, 4]);
        assert_eq!(lost, 1);
    }

    #[test]
    fn no_window_means_arrival_order_without_the_duplicates() {
        let (out, outcomes, _) = run(0, &[1, 2, 4, 3, 3, 5]);
        assert_eq!(out, [1, 2, 4, 3, 5]);
        assert_eq!(outcomes[4], Outcome::Late, "a duplicate of the last chunk");
    }

    proptest::proptest! {
        /// Whatever came before, a run of consecutive chunks is heard but for at most the
        /// window (one chunk without a window): nothing can deafen the call for longer.
        #[test]
        fn no_chunk_sequence_silences_a_call_for_more_than_the_window(
            window in 0usize..8,
            prefix in proptest::collection::vec(
                proptest::prop_oneof![
                    0u64..64,
                    proptest::num::u64::ANY,
                    (u64::MAX - 8)..=u64::MAX,
                ],
                0..40,
            ),
            base in proptest::prop_oneof![0u64..64, 0u64..(u64::MAX - 100)],
            len in 1u64..60,
        ) {
            let pool = FramePool::new(128);
            let mut reorder = Reorder::new(window);
            for chunk in prefix {
                let mut frame = pool.get();
                frame.chunk = chunk;
                reorder.push(frame, drop);
            }
            let mut released = 0u64;
            for chunk in base..base + len {
                let mut frame = pool.get();
                frame.chunk = chunk;
                reorder.push(frame, |_| released += 1);
            }
            // Without a window, the duplicate of the last chunk is still dropped.
            let tolerance = window.max(1) as u64;
            proptest::prop_assert!(
                released + tolerance >= len,
                "{released} of {len} released with a window of {window}"
            );
        }
    }
}
