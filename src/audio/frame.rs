//! The 20 ms audio frame and the pool that recycles frames.
//!
//! A [`Frame`] is one 20 ms block of mono PCM16 as Plivo delivered it: 160 samples at
//! 8 kHz (µ-law or L16) or 320 at 16 kHz (L16), stamped with Plivo's media timestamp and
//! chunk number so every later stage works on the caller's clock, not arrival time.
//!
//! Frames travel between threads as [`PooledFrame`]s: a boxed frame that goes back to its
//! [`FramePool`] when dropped. Once the pool is warm, taking and returning a frame is two
//! lock-free queue operations and an `Arc` count; nothing is allocated. If the pool runs
//! dry a frame is allocated and counted as a miss (a sign the pool is sized too small); if
//! the pool is full when a frame comes back, that frame is freed.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_queue::ArrayQueue;

/// Duration of one frame, in milliseconds.
pub const FRAME_MS: u64 = 20;
/// Samples in one 20 ms frame at 8 kHz.
pub const FRAME_SAMPLES_8K: usize = 160;
/// Samples one frame can hold: 20 ms at 16 kHz.
pub const FRAME_CAPACITY: usize = 320;

/// One 20 ms block of mono PCM16 with the caller's media clock.
#[derive(Clone)]
pub struct Frame {
    /// Plivo's `media.timestamp`: milliseconds since the stream started.
    pub timestamp_ms: u64,
    /// Plivo's `media.chunk`: the chunk counter, from 1.
    pub chunk: u64,
    sample_rate: u32,
    len: usize,
    samples: [i16; FRAME_CAPACITY],
}

impl Frame {
    /// An empty 8 kHz frame at time zero.
    pub fn new() -> Self {
        Self {
            timestamp_ms: 0,
            chunk: 0,
            sample_rate: 8_000,
            len: 0,
            samples: [0; FRAME_CAPACITY],
        }
    }

    /// The samples this frame holds.
    #[inline]
    pub fn samples(&self) -> &[i16] {
        &self.samples[..self.len]
    }

    /// Sample rate of [`Frame::samples`], in Hz.
    #[inline]
    pub fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    /// Makes room for `len` samples at `sample_rate` and returns them to be written.
    /// `len` is clamped to [`FRAME_CAPACITY`].
    #[inline]
    pub fn fill(&mut self, sample_rate: u32, len: usize) -> &mut [i16] {
        self.sample_rate = sample_rate;
        self.len = len.min(FRAME_CAPACITY);
        &mut self.samples[..self.len]
    }

    /// Copies `samples` in (up to [`FRAME_CAPACITY`]) and stamps the frame.
    pub fn set(&mut self, sample_rate: u32, samples: &[i16], timestamp_ms: u64, chunk: u64) {
        self.fill(sample_rate, samples.len())
            .copy_from_slice(&samples[..samples.len().min(FRAME_CAPACITY)]);
        self.timestamp_ms = timestamp_ms;
        self.chunk = chunk;
    }

    /// Forgets the samples and the stamps; keeps the memory.
    pub fn clear(&mut self) {
        self.len = 0;
        self.timestamp_ms = 0;
        self.chunk = 0;
    }
}

impl Default for Frame {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Frame")
            .field("timestamp_ms", &self.timestamp_ms)
            .field("chunk", &self.chunk)
            .field("sample_rate", &self.sample_rate)
            .field("len", &self.len)
            .finish()
    }
}

struct PoolInner {
    free: ArrayQueue<Box<Frame>>,
    misses: AtomicU64,
}

/// A fixed-capacity, lock-free pool of frames shared by every thread of the pipeline.
#[derive(Clone)]
pub struct FramePool {
    inner: Arc<PoolInner>,
}

impl FramePool {
    /// A pool holding up to `capacity` idle frames, all allocated now.
    pub fn new(capacity: usize) -> Self {
        let free = ArrayQueue::new(capacity.max(1));
        while free.push(Box::new(Frame::new())).is_ok() {}
        Self {
            inner: Arc::new(PoolInner {
                free,
                misses: AtomicU64::new(0),
            }),
        }
    }

    /// Takes a cleared frame; allocates (and counts a miss) only when the pool is empty.
    #[inline]
    pub fn get(&self) -> PooledFrame {
        let frame = match self.inner.free.pop() {
            Some(mut frame) => {
                frame.clear();
                frame
            }
            None => {
                self.inner.misses.fetch_add(1, Ordering::Relaxed);
                Box::new(Frame::new())
            }
        };
        PooledFrame {
            frame: Some(frame),
            pool: Arc::clone(&self.inner),
        }
    }

    /// Idle frames in the pool now.
    pub fn available(&self) -> usize {
        self.inner.free.len()
    }

    /// How many times [`FramePool::get`] found the pool empty and allocated.
    pub fn misses(&self) -> u64 {
        self.inner.misses.load(Ordering::Relaxed)
    }
}

/// A frame on loan from a [`FramePool`]; goes back to the pool when dropped.
pub struct PooledFrame {
    frame: Option<Box<Frame>>,
    pool: Arc<PoolInner>,
}

impl std::ops::Deref for PooledFrame {
    type Target = Frame;
    #[inline]
    fn deref(&self) -> &Frame {
        // Invariant: `frame` is Some until drop.
        self.frame.as_deref().unwrap_or_else(|| unreachable!())
    }
}

impl std::ops::DerefMut for PooledFrame {
    #[inline]
    fn deref_mut(&mut self) -> &mut Frame {
        self.frame.as_deref_mut().unwrap_or_else(|| unreachable!())
    }
}

impl Drop for PooledFrame {
    fn drop(&mut self) {
        if let Some(frame) = self.frame.take() {
            // A full pool means more frames were lent than it holds: let this one go.
            let _ = self.pool.free.push(frame);
        }
    }
}

impl std::fmt::Debug for PooledFrame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        (**self).fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_return_to_the_pool_and_come_back_cleared() {
        let pool = FramePool::new(2);
        assert_eq!(pool.available(), 2);
        let mut a = pool.get();
        a.set(8_000, &[1; 160], 40, 3);
        assert_eq!((a.samples().len(), a.timestamp_ms, a.chunk), (160, 40, 3));
        assert_eq!(pool.available(), 1);
        drop(a);
        assert_eq!(pool.available(), 2);
        let b = pool.get();
        assert!(b.samples().is_empty());
        assert_eq!((b.timestamp_ms, b.chunk), (0, 0));
        assert_eq!(pool.misses(), 0);
    }

    #[test]
    fn an_empty_pool_allocates_and_counts_a_miss() {
        let pool = FramePool::new(1);
        let a = pool.get();
        let b = pool.get();
        assert_eq!(pool.misses(), 1);
        drop(a);
        drop(b); // pool already full again: this one is freed, not kept
        assert_eq!(pool.available(), 1);
    }

    #[test]
    fn fill_clamps_to_capacity() {
        let mut frame = Frame::new();
        assert_eq!(frame.fill(16_000, 10_000).len(), FRAME_CAPACITY);
        assert_eq!(frame.sample_rate(), 16_000);
        frame.set(8_000, &[5; 400], 0, 1);
        assert_eq!(frame.samples().len(), FRAME_CAPACITY);
    }
}
