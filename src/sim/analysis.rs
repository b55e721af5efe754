//! Derives the per-turn figures of a call from what the phone played, tick by tick.
//!
//! Owns: agent-turn segmentation, gap detection, response latency and barge-in timing.
//! Pure functions over a [`Trace`], so every figure can be checked on hand-made input.
//! Never: reads clocks or sockets.
//!
//! Definitions (all in ms on the simulated clock):
//! - An **agent turn** starts at the first tick the phone plays agent audio while no turn is
//!   open, and ends when its checkpoint is reached, when the phone is cleared, when the
//!   caller starts a new `Audio` step, or when the call ends.
//! - A **gap** is a run of ticks inside a turn where the phone had less than a full frame of
//!   agent audio, followed later in the same turn by more agent audio; its length is the
//!   missing samples. Trailing silence before the turn ends is not a gap.
//! - **Response latency** of a caller turn: from the end of its speech to the start of the
//!   first agent turn that starts after it (and before the caller's next `Audio` step).
//! - **Wire stages** of a caller turn, from the end of its speech: the first `playAudio`
//!   that found the phone idle (arrival), the first agent audio heard (= response latency),
//!   and the `playedStream` of the first reply turn (its checkpoint reached).
//! - **Barge-in**: a caller `Audio` step during which agent audio played between the step's
//!   start and the speech onset; timed from the onset to the `clearAudio` and to the first
//!   silent tick.

use crate::audio::frame::FRAME_SAMPLES_8K;

use super::report::{AgentTurn, GapTotals, TurnEnd, TurnFigures};
use super::script::{CallerTurn, tick_ms};

/// Samples per millisecond at 8 kHz.
const SAMPLES_PER_MS: f64 = 8.0;

/// What the figures are derived from.
#[derive(Debug, Default, Clone)]
pub(crate) struct Trace {
    /// Agent samples played in each tick (0..=160).
    pub agent: Vec<u16>,
    /// Ticks at whose start a checkpoint was reached and closed the open turn.
    pub checkpoint_ends: Vec<u64>,
    /// `clearAudio`s: (first tick played after it, ms it arrived).
    pub clears: Vec<(u64, f64)>,
    /// The caller's `Audio` steps.
    pub caller: Vec<CallerTurn>,
    /// Arrival of each `playAudio` that found the phone idle (the start of a reply), ms.
    pub play_starts: Vec<f64>,
}

/// Splits what the phone played into agent turns.
pub(crate) fn agent_turns(trace: &Trace) -> Vec<AgentTurn> {
    let mut bounds: Vec<(u64, TurnEnd)> = trace
        .checkpoint_ends
        .iter()
        .map(|&t| (t, TurnEnd::Checkpoint))
        .chain(trace.clears.iter().map(|&(t, _)| (t, TurnEnd::Cleared)))
        .chain(
            trace
                .caller
                .iter()
                .map(|c| (c.start_tick, TurnEnd::CallerSpoke)),
        )
        .collect();
    bounds.sort_by_key(|&(t, _)| t);
    let mut bounds = bounds.into_iter().peekable();

    struct Open {
        start: u64,
        audio_end_ms: f64,
        gaps: u32,
        gap_samples: u64,
        pending: u64,
    }
    let close = |open: Open, end: TurnEnd| AgentTurn {
        start_ms: tick_ms(open.start),
        audio_end_ms: open.audio_end_ms,
        end,
        gaps: open.gaps,
        gap_ms: open.gap_samples as f64 / SAMPLES_PER_MS,
    };

    let mut turns = Vec::new();
    let mut open: Option<Open> = None;
    for (tick, &played) in (0u64..).zip(&trace.agent) {
        let mut ended = None;
        while let Some(&(t, why)) = bounds.peek() {
            if t > tick {
                break;
            }
            ended.get_or_insert(why);
            bounds.next();
        }
        if let Some(why) = ended
            && let Some(turn) = open.take()
        {
            turns.push(close(turn, why));
        }
        let played = u64::from(played);
        match open.as_mut() {
            None if played > 0 => {
                open = Some(Open {
                    start: tick,
                    audio_end_ms: 0.0,
                    gaps: 0,
                    gap_samples: 0,
                    pending: 0,
                });
            }
            None => continue,
            Some(turn) if played > 0 && turn.pending > 0 => {
                turn.gaps += 1;
                turn.gap_samples += std::mem::take(&mut turn.pending);
            }
            Some(_) => {}
        }
        if let Some(turn) = open.as_mut() {
            if played > 0 {
                turn.audio_end_ms = tick_ms(tick) + played as f64 / SAMPLES_PER_MS;
            }
            turn.pending += FRAME_SAMPLES_8K as u64 - played.min(FRAME_SAMPLES_8K as u64);
        }
    }
    if let Some(turn) = open {
        turns.push(close(turn, TurnEnd::CallEnded));
    }
    turns
}

/// Per caller turn figures, given the agent turns from [`agent_turns`].
pub(crate) fn turn_figures(trace: &Trace, turns: &[AgentTurn]) -> Vec<TurnFigures> {
    let end_tick = trace.agent.len() as u64;
    trace
        .caller
        .iter()
        .enumerate()
        .map(|(i, caller)| {
            let start_ms = tick_ms(caller.start_tick);
            let next_ms = tick_ms(
                trace
                    .caller
                    .get(i + 1)
                    .map_or(end_tick, |next| next.start_tick),
            );
            let reply_from = caller
                .end_ms
                .unwrap_or_else(|| tick_ms(caller.start_tick + caller.ticks));
            let replies: Vec<&AgentTurn> = turns
                .iter()
                .filter(|t| t.start_ms >= reply_from && t.start_ms < next_ms)
                .collect();
            let first = replies.first().map(|t| t.start_ms);

            let onset_tick = caller.onset_ms.map(|ms| (ms / tick_ms(1)) as u64);
            let barge_in = onset_tick
                .is_some_and(|onset| (caller.start_tick..=onset).any(|t| agent_at(trace, t) > 0));
            let (to_clear, to_silence) = match (barge_in, caller.onset_ms, onset_tick) {
                (true, Some(onset_ms), Some(onset)) => {
                    let clear = trace
                        .clears
                        .iter()
                        .map(|&(_, ms)| ms)
                        .find(|&ms| ms >= onset_ms && ms < next_ms)
                        .map(|ms| ms - onset_ms);
                    let silence = (onset..end_tick)
                        .find(|&t| agent_at(trace, t) == 0)
                        .map(|t| (tick_ms(t) - onset_ms).max(0.0));
                    (clear, silence)
                }
                _ => (None, None),
            };
            let first_play = trace
                .play_starts
                .iter()
                .copied()
                .find(|&ms| ms >= reply_from && ms < next_ms);
            let played_stream = first.and_then(|start| {
                trace
                    .checkpoint_ends
                    .iter()
                    .map(|&t| tick_ms(t))
                    .find(|&ms| ms > start && ms <= next_ms)
            });
            let since_end = |at: Option<f64>| at.zip(caller.end_ms).map(|(a, e)| a - e);
            TurnFigures {
                step: caller.step,
                first_play_audio_latency_ms: since_end(first_play),
                played_stream_latency_ms: since_end(played_stream),
                start_ms,
                speech_onset_ms: caller.onset_ms,
                speech_end_ms: caller.end_ms,
                first_agent_audio_ms: first,
                response_latency_ms: first.zip(caller.end_ms).map(|(a, e)| a - e),
                barge_in,
                barge_in_to_clear_ms: to_clear,
                barge_in_to_silence_ms: to_silence,
                reply_gaps: replies.iter().map(|t| t.gaps).sum(),
                reply_gap_ms: replies.iter().map(|t| t.gap_ms).sum(),
            }
        })
        .collect()
}

/// Gaps over all agent turns.
pub(crate) fn gap_totals(turns: &[AgentTurn]) -> GapTotals {
    GapTotals {
        count: turns.iter().map(|t| t.gaps).sum(),
        total_ms: turns.iter().map(|t| t.gap_ms).sum(),
    }
}

fn agent_at(trace: &Trace, tick: u64) -> u16 {
    usize::try_from(tick)
        .ok()
        .and_then(|t| trace.agent.get(t))
        .copied()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests;
