//! Restores the order of caller media chunks within a small window.
//!
//! Plivo numbers media chunks from 1. A chunk ahead of the next expected one is held (up
//! to `window` of them); when the missing one arrives, the run is released in order. A
//! chunk at or behind the point already released is late or a duplicate and is dropped.
//! When the window overflows, the gap is given up as lost and the held chunks go on.
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
    /// At or behind what was already released: dropped.
    Late,
}

/// The reorder window of one stream.
pub struct Reorder {
    /// `slots[i]` holds chunk `next + i`; `slots[0]` is empty between pushes.
    slots: Vec<Option<PooledFrame>>,
    next: Option<u64>,
    lost: u64,
    reordered: u64,
}

impl Reorder {
    /// A window holding up to `window` chunks ahead (0 = no reordering: out of order is late).
    pub fn new(window: usize) -> Self {
        Self {
            slots: (0..=window).map(|_| None).collect(),
            next: None,
            lost: 0,
            reordered: 0,
        }
    }

    /// Chunks given up as lost so far.
    pub fn lost(&self) -> u64 {
        self.lost
    }

    /// Chunks that arrived early and were put back in order.
    pub fn reordered(&self) -> u64 {
        self.reordered
    }

    /// Takes one chunk; hands every frame that is now in order to `release`.
    pub fn push(&mut self, frame: PooledFrame, mut release: impl FnMut(PooledFrame)) -> Outcome {
        let chunk = frame.chunk;
        let next = *self.next.get_or_insert(chunk);
        if chunk < next {
            return Outcome::Late;
        }
        let mut offset = chunk - next;
        if offset >= self.slots.len() as u64 {
            // Too far ahead: give up on the gap, releasing what is held in order.
            while offset >= self.slots.len() as u64 && self.slots.iter().any(Option::is_some) {
                self.advance(&mut release);
                offset -= 1;
            }
            if offset >= self.slots.len() as u64 {
                self.lost += offset;
                self.next = Some(chunk);
                offset = 0;
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

    /// Moves past `next`: releases it if held, else counts it lost.
    fn advance(&mut self, release: &mut impl FnMut(PooledFrame)) {
        match self.slots[0].take() {
            Some(frame) => release(frame),
            None => self.lost += 1,
        }
        self.slots.rotate_left(1);
        if let Some(next) = self.next.as_mut() {
            *next += 1;
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
        let (out, _, lost) = run(2, &[1, 10, 11]);
        assert_eq!(out, [1, 10, 11]);
        assert_eq!(lost, 8);
    }

    #[test]
    fn held_chunks_are_released_at_the_end() {
        let (out, _, lost) = run(4, &[1, 3, 4]);
        assert_eq!(out, [1, 3, 4]);
        assert_eq!(lost, 1);
    }

    #[test]
    fn no_window_means_out_of_order_is_late() {
        let (out, outcomes, _) = run(0, &[1, 3, 2, 4]);
        assert_eq!(out, [1, 3, 4]);
        assert_eq!(outcomes[2], Outcome::Late);
    }
}
