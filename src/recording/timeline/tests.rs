use super::*;

/// Collects everything emitted, channel by channel.
#[derive(Default)]
struct Tape {
    caller: Vec<i16>,
    agent: Vec<i16>,
}

impl Emit for Tape {
    fn block(&mut self, caller: &[i16], agent: &[i16]) {
        assert_eq!(caller.len(), agent.len(), "channels stay the same length");
        self.caller.extend_from_slice(caller);
        self.agent.extend_from_slice(agent);
    }
}

fn frame(value: i16) -> [i16; BLOCK] {
    [value; BLOCK]
}

/// A frame whose samples count up from `first`, so misplacement by one sample shows.
fn ramp(first: i16) -> [i16; BLOCK] {
    std::array::from_fn(|i| first.wrapping_add(i as i16))
}

#[test]
fn caller_frames_land_at_their_timestamps_and_gaps_are_silence() {
    let mut t = Timeline::new();
    let mut tape = Tape::default();
    t.caller(0, &ramp(1), &mut tape);
    // 20..60 ms lost.
    t.caller(60, &ramp(1000), &mut tape);
    t.finish(&mut tape);
    assert_eq!(tape.caller.len(), 4 * BLOCK);
    assert_eq!(&tape.caller[..BLOCK], &ramp(1));
    assert!(tape.caller[BLOCK..3 * BLOCK].iter().all(|&s| s == 0));
    assert_eq!(&tape.caller[3 * BLOCK..], &ramp(1000));
    assert!(tape.agent.iter().all(|&s| s == 0));
}

#[test]
fn agent_audio_follows_the_phone_queue_then_restarts_at_now() {
    let mut t = Timeline::new();
    let mut tape = Tape::default();
    t.caller(0, &frame(0), &mut tape);
    // Sent at 20 ms with the phone idle: plays 20..40, the next queued behind it 40..60.
    t.agent(20, &frame(7));
    t.agent(20, &frame(8));
    // The phone ran dry; the next frame arrives at 100 ms and plays from there.
    t.agent(100, &frame(9));
    for ms in (20..=120).step_by(20) {
        t.caller(ms, &frame(0), &mut tape);
    }
    t.finish(&mut tape);
    let at = |ms: usize| tape.agent[ms * 8];
    assert_eq!(
        [at(0), at(20), at(40), at(60), at(80), at(100), at(120)],
        [0, 7, 8, 0, 0, 9, 0]
    );
    assert_eq!(tape.agent.len(), tape.caller.len());
}

#[test]
fn a_clear_cuts_only_what_had_not_played() {
    let mut t = Timeline::new();
    let mut tape = Tape::default();
    t.caller(0, &frame(0), &mut tape);
    for _ in 0..10 {
        t.agent(20, &frame(5)); // 20..220 ms queued at the phone
    }
    t.clear(100);
    assert_eq!(t.stats().agent_cut, 120 * 8);
    t.agent(140, &frame(6)); // the next turn plays from "now", not after the cut audio
    for ms in (20..=300).step_by(20) {
        t.caller(ms, &frame(0), &mut tape);
    }
    t.finish(&mut tape);
    assert!(tape.agent[20 * 8..100 * 8].iter().all(|&s| s == 5));
    assert!(tape.agent[100 * 8..140 * 8].iter().all(|&s| s == 0));
    assert!(tape.agent[140 * 8..160 * 8].iter().all(|&s| s == 6));
    assert!(tape.agent[160 * 8..].iter().all(|&s| s == 0));
}

#[test]
fn late_and_duplicate_caller_frames_are_dropped_and_counted() {
    let mut t = Timeline::new();
    let mut tape = Tape::default();
    t.caller(0, &frame(1), &mut tape);
    t.caller(20, &frame(2), &mut tape);
    t.caller(0, &frame(9), &mut tape); // already emitted
    assert_eq!(t.stats().caller_late, 1);
    t.finish(&mut tape);
    assert_eq!(tape.caller[..BLOCK], frame(1));
}

#[test]
fn a_hostile_timestamp_is_refused_not_filled_with_silence() {
    let mut t = Timeline::new();
    let mut tape = Tape::default();
    t.caller(0, &frame(1), &mut tape);
    t.caller(u64::MAX, &frame(2), &mut tape);
    t.caller(u64::MAX / 8, &frame(2), &mut tape);
    t.caller(MAX_JUMP_MS + 1_000, &frame(2), &mut tape);
    assert_eq!(t.stats().caller_refused, 3);
    t.agent(u64::MAX, &frame(3));
    t.clear(u64::MAX);
    t.finish(&mut tape);
    assert_eq!(tape.caller.len(), BLOCK, "nothing but the one real frame");
}

#[test]
fn a_jump_longer_than_the_ring_is_emitted_as_silence_in_order() {
    let mut t = Timeline::new();
    let mut tape = Tape::default();
    t.caller(0, &frame(1), &mut tape);
    t.agent(20, &frame(4));
    t.caller(5_000, &frame(2), &mut tape); // 5 s of lost frames
    t.finish(&mut tape);
    assert_eq!(tape.caller.len(), 5_020 * 8);
    assert!(tape.agent[160..320].iter().all(|&s| s == 4));
    assert!(tape.caller[160..5_000 * 8].iter().all(|&s| s == 0));
    assert_eq!(tape.caller[5_000 * 8..], frame(2));
}

#[test]
fn agent_audio_beyond_the_ring_is_dropped_and_counted() {
    let mut t = Timeline::new();
    for _ in 0..(RING / BLOCK + 3) {
        t.agent(0, &frame(1));
    }
    assert_eq!(t.stats().agent_overflow, 3 * BLOCK as u64);
}

#[test]
fn a_long_call_stays_aligned_in_bounded_memory() {
    // 30 minutes of 20 ms frames; the agent answers each 3 s with 1 s of audio.
    let mut t = Timeline::new();
    let mut emitted = 0u64;
    let mut agent_at = Vec::new();
    let mut last_agent = 0i16;
    let mut emit = |_c: &[i16], a: &[i16]| {
        if a[0] != 0 && a[0] != last_agent {
            agent_at.push((emitted, a[0]));
        }
        last_agent = a[0];
        emitted += a.len() as u64;
    };
    let frames = 30 * 60 * 50u64;
    for n in 0..frames {
        let ms = n * 20;
        t.caller(ms, &frame(1), &mut emit);
        if ms % 3_000 == 0 {
            let tag = ((ms / 3_000) % 30_000 + 1) as i16;
            for _ in 0..50 {
                t.agent(ms + 20, &frame(tag));
            }
        }
    }
    t.finish(&mut emit);
    assert_eq!(emitted, frames * BLOCK as u64);
    assert_eq!(agent_at.len() as u64, frames / 150);
    for (pos, tag) in agent_at {
        let expected_ms = (u64::try_from(tag).unwrap() - 1) * 3_000 + 20;
        assert_eq!(pos, expected_ms * 8, "turn {tag} lands where it played");
    }
}
