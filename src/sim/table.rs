//! The per-turn tables `voxgate simulate` prints after a call: the server's latency split
//! per agent turn when the call record could be read ([`server_table`]), else the stages
//! the wire shows ([`wire_table`]).
//!
//! Owns: presentation only. Never: fetches, measures or fails (absent values print `-`).

use std::fmt::Write as _;

use super::record::{ServerRecord, Stage};
use super::report::CallReport;

/// Longest agent text shown in a row, in characters.
const SAID_CHARS: usize = 34;

/// Column headers for [`Stage::ALL`].
const STAGE_HEADERS: [&str; 8] = [
    "eot", "stt", "decided", "tts", "play", "heard", "played", "gateway",
];

/// The server's split: one row per agent turn, then the caller's lines, slots and who hung
/// up.
pub fn server_table(record: &ServerRecord, report: &CallReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "per agent turn (server; ms from the caller's speech end):"
    );
    let _ = write!(
        out,
        "  {:>4}  {:<width$}  {:>3}",
        "turn",
        "agent said (heard)",
        "int",
        width = SAID_CHARS + 2
    );
    for h in STAGE_HEADERS {
        let _ = write!(out, " {h:>8}");
    }
    out.push('\n');
    if record.turns.is_empty() {
        let _ = writeln!(
            out,
            "  (the record has no turns: an older server, or no agent)"
        );
    }
    for turn in &record.turns {
        let line = turn.turn.and_then(|n| record.agent_line(n));
        let said = line
            .and_then(|l| l.heard_text.as_deref().or(l.text.as_deref()))
            .map_or_else(
                || "-".to_owned(),
                |t| format!("\"{}\"", truncate(t, SAID_CHARS)),
            );
        let interrupted = turn
            .interrupted
            .or_else(|| line.and_then(|l| l.interrupted));
        let _ = write!(
            out,
            "  {:>4}  {:<width$}  {:>3}",
            turn.turn.map_or_else(|| "-".to_owned(), |n| n.to_string()),
            said,
            match interrupted {
                Some(true) => "yes",
                Some(false) => "no",
                None => "-",
            },
            width = SAID_CHARS + 2
        );
        for stage in Stage::ALL {
            let _ = write!(out, " {:>8}", ms(turn.stage(stage)));
        }
        out.push('\n');
    }
    let caller: Vec<_> = record.caller_lines().collect();
    if !caller.is_empty() {
        let _ = writeln!(out, "caller said:");
        for line in caller {
            let _ = writeln!(
                out,
                "  {:>4}  {}",
                line.turn.map_or_else(|| "-".to_owned(), |n| n.to_string()),
                line.text.as_deref().unwrap_or("-")
            );
        }
    }
    if !record.slots.is_empty() {
        let slots: Vec<String> = record
            .slots
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let _ = writeln!(out, "slots: {}", slots.join(", "));
    }
    let _ = writeln!(
        out,
        "hung up by: {} (server), {} (simulator)",
        record.hung_up_by.as_deref().unwrap_or("-"),
        report.hung_up_by.as_str()
    );
    out
}

/// What the wire shows per caller turn, and a pointer to `--api-token`.
pub fn wire_table(report: &CallReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "per caller turn (wire; ms from the caller's speech end):"
    );
    let _ = writeln!(
        out,
        "  {:>4}  {:>13}  {:>15}  {:>11}  {:>12}",
        "step", "speech end at", "first playAudio", "first heard", "playedStream"
    );
    if report.turns.is_empty() {
        let _ = writeln!(out, "  (the caller said nothing)");
    }
    for t in &report.turns {
        let _ = writeln!(
            out,
            "  {:>4}  {:>13}  {:>15}  {:>11}  {:>12}",
            t.step,
            ms(t.speech_end_ms),
            ms(t.first_play_audio_latency_ms),
            ms(t.response_latency_ms),
            ms(t.played_stream_latency_ms)
        );
    }
    let _ = writeln!(
        out,
        "  (--api-token or VOXGATE_API_TOKEN adds the server's split per stage)"
    );
    out
}

/// Whole ms, or one decimal below 10 ms (the gateway's share is a few ms).
fn ms(v: Option<f64>) -> String {
    match v {
        None => "-".to_owned(),
        Some(v) if v.abs() < 10.0 => format!("{v:.1}"),
        Some(v) => format!("{v:.0}"),
    }
}

/// `text` cut to `max` characters, with `…` when cut.
fn truncate(text: &str, max: usize) -> String {
    let mut chars = text.chars();
    let mut out: String = chars.by_ref().take(max).collect();
    if chars.next().is_some() {
        out.pop();
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_text_is_cut_with_an_ellipsis() {
        assert_eq!(truncate("hello", 5), "hello");
        assert_eq!(truncate("hello!", 5), "hell…");
        assert_eq!(truncate("", 5), "");
    }
}
