//! Turn-taking and barge-in: one pure policy that decides when the caller has finished a
//! turn and when the caller's speech cuts the agent off.
//!
//! It sees four kinds of fact — the agent's audio starting or stopping at the phone, VAD
//! speech start and end, STT transcripts, and the passing of time — and answers with at most
//! one [`Decision`] per fact. Time is passed in as milliseconds on one clock (the caller's
//! media clock), so a test drives it without sleeping; the owner calls [`TurnTaking::poll`]
//! every frame (20 ms) or at [`TurnTaking::next_deadline`].
//!
//! Rules (DESIGN.md "The agent runtime", providers.md §8):
//! - Barge-in only while the agent is audible, at most once per agent turn, never with
//!   [`Interruption::None`]. With a VAD condition, only after `min_speech_ms` of speech
//!   measured from its onset and only while the VAD still hears voice (see
//!   [`TurnTaking::voiced`]): a click or cough shorter than that never cuts the agent, even
//!   though the VAD's end of it comes a hangover (400 ms) later. With
//!   an STT condition, only for a word that is not a filler, so a backchannel "mm-hmm" never
//!   cuts it.
//! - Speech that overlapped the agent without barging in is not a turn: the agent does not
//!   answer a cough or an "uh-huh" said over its own voice.
//! - End of turn by VAD end, by STT final, or both (VAD end, then the final, waiting at most
//!   `stt_grace_ms` for it).
//!
//! It must never do I/O, read a clock, allocate per frame in [`TurnTaking::poll`], or panic on
//! any order of events (a VAD end without a start, a clock that goes backwards).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// What ends the caller's turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum EndOfTurn {
    /// The VAD's end of speech (fast; the transcript may follow later).
    #[default]
    Vad,
    /// An STT final transcript (trusts the recognizer's endpointing).
    SttFinal,
    /// The VAD's end of speech and then an STT final, waiting at most `stt_grace_ms` for it.
    Both,
}

/// What lets the caller's speech cut the agent off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Interruption {
    /// The agent is never cut off.
    None,
    /// VAD speech lasting `min_speech_ms`.
    #[default]
    Vad,
    /// A transcribed word that is not a filler.
    Stt,
    /// VAD speech lasting `min_speech_ms` and a transcribed word that is not a filler.
    Both,
}

/// A strategy name that is not one of the known ones.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{name:?} is not a known {what} (known: {known})")]
pub struct UnknownStrategy {
    /// What was being named ("interruption", "end of turn").
    pub what: &'static str,
    /// The name given.
    pub name: String,
    /// The known names, comma-separated.
    pub known: &'static str,
}

impl EndOfTurn {
    /// Every mode.
    pub const ALL: [Self; 3] = [Self::Vad, Self::SttFinal, Self::Both];

    /// The mode's name in a config or flow file.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Vad => "vad",
            Self::SttFinal => "stt_final",
            Self::Both => "both",
        }
    }
}

impl Interruption {
    /// Every strategy.
    pub const ALL: [Self; 4] = [Self::None, Self::Vad, Self::Stt, Self::Both];

    /// The strategy's name in a config or flow file.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Vad => "vad",
            Self::Stt => "stt",
            Self::Both => "both",
        }
    }

    const fn needs_vad(self) -> bool {
        matches!(self, Self::Vad | Self::Both)
    }

    const fn needs_word(self) -> bool {
        matches!(self, Self::Stt | Self::Both)
    }
}

impl FromStr for EndOfTurn {
    type Err = UnknownStrategy;

    /// A mode by name, ignoring case and surrounding space; `stt` is `stt_final`.
    fn from_str(name: &str) -> Result<Self, UnknownStrategy> {
        let wanted = name.trim().to_ascii_lowercase();
        if wanted == "stt" {
            return Ok(Self::SttFinal);
        }
        Self::ALL
            .into_iter()
            .find(|mode| mode.as_str() == wanted)
            .ok_or_else(|| UnknownStrategy {
                what: "end of turn",
                name: name.to_owned(),
                known: "vad, stt_final, both",
            })
    }
}

impl FromStr for Interruption {
    type Err = UnknownStrategy;

    /// A strategy by name, ignoring case and surrounding space.
    fn from_str(name: &str) -> Result<Self, UnknownStrategy> {
        let wanted = name.trim();
        Self::ALL
            .into_iter()
            .find(|mode| mode.as_str().eq_ignore_ascii_case(wanted))
            .ok_or_else(|| UnknownStrategy {
                what: "interruption",
                name: name.to_owned(),
                known: "none, vad, stt, both",
            })
    }
}

macro_rules! string_forms {
    ($ty:ty) => {
        impl TryFrom<String> for $ty {
            type Error = UnknownStrategy;
            fn try_from(name: String) -> Result<Self, UnknownStrategy> {
                name.parse()
            }
        }
        impl From<$ty> for String {
            fn from(value: $ty) -> String {
                value.as_str().to_owned()
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}
string_forms!(EndOfTurn);
string_forms!(Interruption);

/// The default fillers: sounds a listener makes that are not a request to speak.
pub const DEFAULT_FILLERS: [&str; 9] = [
    "um", "uh", "mm", "mm-hmm", "hmm", "uh-huh", "ah", "er", "oh",
];

/// The policy's settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TurnConfig {
    /// What ends the caller's turn.
    pub end_of_turn: EndOfTurn,
    /// What lets the caller cut the agent off.
    pub interruption: Interruption,
    /// Speech shorter than this never cuts the agent off (default 250 ms).
    pub min_speech_ms: u64,
    /// With [`EndOfTurn::Both`], how long after the VAD end to wait for the STT final (default 600 ms).
    pub stt_grace_ms: u64,
    /// Words that never cut the agent off under the STT strategies.
    pub fillers: Vec<String>,
}

impl Default for TurnConfig {
    fn default() -> Self {
        Self {
            end_of_turn: EndOfTurn::default(),
            interruption: Interruption::default(),
            min_speech_ms: 250,
            stt_grace_ms: 600,
            fillers: DEFAULT_FILLERS.map(str::to_owned).to_vec(),
        }
    }
}

/// What the policy decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The caller cuts the agent off: stop its audio, cancel what it is preparing.
    BargeIn {
        /// When the caller's speech began (media clock).
        onset_ms: u64,
    },
    /// The caller finished a turn: the agent may answer.
    EndOfTurn {
        /// When the caller's speech ended (media clock).
        speech_end_ms: u64,
        /// The final transcript of the turn, when one arrived in time.
        text: Option<String>,
    },
}

/// One stretch of caller speech, from VAD start to VAD end.
#[derive(Debug, Clone, Copy)]
struct Speech {
    onset_ms: u64,
    end_ms: Option<u64>,
    /// It cut the agent off.
    barged: bool,
    /// It began or went on while the agent was audible.
    overlapped: bool,
    /// It ended over the agent without cutting it off, so it is no turn.
    ignored: bool,
}

/// The turn-taking policy of one call.
#[derive(Debug)]
pub struct TurnTaking {
    config: TurnConfig,
    agent_audible: bool,
    /// A barge-in already cut the current agent turn.
    barged_this_turn: bool,
    speech: Option<Speech>,
    /// A non-filler word was transcribed during the current speech.
    word_heard: bool,
    /// The last STT message was interim text, so a final is still to come.
    interim_pending: bool,
    /// A final arrived since the current speech began.
    final_in_speech: bool,
    /// Finals of the caller's current turn, joined.
    text: String,
    /// [`EndOfTurn::Both`]: the VAD end seen, waiting for the final until this time.
    awaiting_final: Option<(u64, u64)>,
    /// End of the latest frame the VAD reported voiced.
    voiced_until_ms: u64,
}

/// How far the latest voiced frame may lie behind the clock for speech to count as going
/// on: two frames, as the DSP thread may be a frame behind the session.
pub const VOICE_GAP_MS: u64 = 40;

impl TurnTaking {
    /// A policy with `config`, the agent silent and the caller not speaking.
    pub fn new(config: TurnConfig) -> Self {
        Self {
            config,
            agent_audible: false,
            barged_this_turn: false,
            speech: None,
            word_heard: false,
            interim_pending: false,
            final_in_speech: false,
            text: String::new(),
            awaiting_final: None,
            voiced_until_ms: 0,
        }
    }

    /// The settings in force.
    pub fn config(&self) -> &TurnConfig {
        &self.config
    }

    /// The agent's audio started (`true`) or stopped (`false`) playing at the phone. A start
    /// after a stop is a new agent turn, which may be barged into once.
    pub fn set_agent_audible(&mut self, audible: bool, _now_ms: u64) {
        if audible && !self.agent_audible {
            self.barged_this_turn = false;
            self.word_heard = false;
        }
        self.agent_audible = audible;
        if audible && let Some(speech) = self.speech.as_mut().filter(|s| s.end_ms.is_none()) {
            speech.overlapped = true;
        }
    }

    /// The VAD reported voice up to `until_ms`: the end of the latest frame it called voiced
    /// (webrtc-vad's short hold included). The owner passes it before every
    /// [`poll`](Self::poll); a speech whose voice stopped more than [`VOICE_GAP_MS`] ago
    /// does not barge in, though its `SpeechEnded` is still to come.
    pub fn voiced(&mut self, until_ms: u64) {
        self.voiced_until_ms = self.voiced_until_ms.max(until_ms);
    }

    /// The VAD declared speech that began at `onset_ms` (at or before `now_ms`); the start
    /// is decided on a voiced frame, so voice is heard up to `now_ms`.
    pub fn speech_started(&mut self, onset_ms: u64, now_ms: u64) -> Option<Decision> {
        self.voiced(now_ms);
        let onset_ms = onset_ms.min(now_ms);
        self.speech = Some(Speech {
            onset_ms,
            end_ms: None,
            barged: false,
            overlapped: self.agent_audible,
            ignored: false,
        });
        self.word_heard = false;
        self.final_in_speech = false;
        // The caller went on talking: the turn is not over yet.
        self.awaiting_final = None;
        self.check_barge_in(now_ms)
    }

    /// The VAD declared the speech over at `end_ms`.
    pub fn speech_ended(&mut self, end_ms: u64, now_ms: u64) -> Option<Decision> {
        let speech = self.speech.as_mut()?;
        if speech.end_ms.is_some() {
            return None;
        }
        let end_ms = end_ms.max(speech.onset_ms).min(now_ms.max(speech.onset_ms));
        speech.end_ms = Some(end_ms);
        speech.ignored = speech.overlapped && !speech.barged && self.agent_audible;
        if speech.ignored {
            // Said over the agent without cutting it off: not a turn.
            self.text.clear();
            return None;
        }
        match self.config.end_of_turn {
            EndOfTurn::Vad => Some(self.end_turn(end_ms)),
            EndOfTurn::SttFinal => None,
            EndOfTurn::Both if self.final_in_speech && !self.interim_pending => {
                Some(self.end_turn(end_ms))
            }
            EndOfTurn::Both => {
                self.awaiting_final =
                    Some((end_ms, now_ms.saturating_add(self.config.stt_grace_ms)));
                None
            }
        }
    }

    /// A transcript of the caller's speech (interim or final).
    pub fn transcript(&mut self, text: &str, is_final: bool, now_ms: u64) -> Option<Decision> {
        if self.config.interruption.needs_word()
            && self.agent_audible
            && text
                .split_whitespace()
                .any(|w| !is_filler(w, &self.config.fillers))
        {
            self.word_heard = true;
            if let Some(decision) = self.check_barge_in(now_ms) {
                self.take_text(text, is_final);
                let ended = self.speech.and_then(|s| s.end_ms);
                let ends_turn = match self.config.end_of_turn {
                    EndOfTurn::SttFinal => true,
                    EndOfTurn::Both => ended.is_some(),
                    EndOfTurn::Vad => false,
                };
                if is_final && ends_turn {
                    // The final that cut the agent off also ends the turn: the next poll says so.
                    self.awaiting_final = Some((ended.unwrap_or(now_ms), now_ms));
                }
                return Some(decision);
            }
        }
        if self.agent_audible && !self.barged_this_turn {
            // Words over the agent that did not cut it off belong to no turn.
            return None;
        }
        if self.speech.is_some_and(|s| s.ignored) {
            // A late transcript of speech that was ignored.
            return None;
        }
        self.take_text(text, is_final);
        if !is_final || text.trim().is_empty() {
            return None;
        }
        match self.config.end_of_turn {
            EndOfTurn::Vad => None,
            EndOfTurn::SttFinal => {
                let end = self.speech.and_then(|s| s.end_ms).unwrap_or(now_ms);
                Some(self.end_turn(end))
            }
            EndOfTurn::Both => {
                let (end, _) = self.awaiting_final?;
                Some(self.end_turn(end))
            }
        }
    }

    /// Time passed: fires a barge-in whose minimum speech is now reached, or an end of turn
    /// whose STT final did not come within the grace.
    pub fn poll(&mut self, now_ms: u64) -> Option<Decision> {
        if let Some(decision) = self.check_barge_in(now_ms) {
            return Some(decision);
        }
        match self.awaiting_final {
            Some((end, deadline)) if now_ms >= deadline => Some(self.end_turn(end)),
            _ => None,
        }
    }

    /// The next time [`poll`](Self::poll) may decide something, if any.
    pub fn next_deadline(&self) -> Option<u64> {
        let barge = self
            .speech
            .filter(|s| {
                s.end_ms.is_none()
                    && self.may_barge_in()
                    && self.config.interruption.needs_vad()
                    && (self.config.interruption != Interruption::Both || self.word_heard)
            })
            .map(|s| s.onset_ms.saturating_add(self.config.min_speech_ms));
        let grace = self.awaiting_final.map(|(_, deadline)| deadline);
        match (barge, grace) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn may_barge_in(&self) -> bool {
        self.agent_audible
            && !self.barged_this_turn
            && self.config.interruption != Interruption::None
    }

    /// Whether the speech so far lasted `min_speech_ms` and the voice goes on (an ended
    /// speech counts only within the STT grace after its end, so a late word still joins
    /// it).
    fn vad_condition(&self, now_ms: u64) -> bool {
        let Some(speech) = self.speech else {
            return false;
        };
        let min = self.config.min_speech_ms;
        match speech.end_ms {
            None => {
                now_ms.saturating_sub(speech.onset_ms) >= min
                    && now_ms.saturating_sub(self.voiced_until_ms) <= VOICE_GAP_MS
            }
            Some(end) => {
                end - speech.onset_ms >= min
                    && now_ms.saturating_sub(end) <= self.config.stt_grace_ms
            }
        }
    }

    fn check_barge_in(&mut self, now_ms: u64) -> Option<Decision> {
        if !self.may_barge_in() {
            return None;
        }
        let mode = self.config.interruption;
        let vad = !mode.needs_vad() || self.vad_condition(now_ms);
        let word = !mode.needs_word() || self.word_heard;
        if mode == Interruption::Vad && self.speech.is_some_and(|s| s.end_ms.is_some()) {
            // VAD alone fires while the speech lasts; an ended short speech never does.
            return None;
        }
        if !(vad && word) {
            return None;
        }
        self.barged_this_turn = true;
        let Some(speech) = self.speech.as_mut() else {
            return Some(Decision::BargeIn { onset_ms: now_ms });
        };
        speech.barged = true;
        if let Some(end) = speech.end_ms {
            // A late word cut the agent off after the speech ended (and was set aside as
            // said over the agent): it is the caller's turn after all, and its end is known.
            speech.ignored = false;
            self.awaiting_final = match self.config.end_of_turn {
                EndOfTurn::Vad => Some((end, now_ms)),
                EndOfTurn::Both => Some((end, now_ms.saturating_add(self.config.stt_grace_ms))),
                EndOfTurn::SttFinal => None,
            };
        }
        Some(Decision::BargeIn {
            onset_ms: speech.onset_ms,
        })
    }

    fn take_text(&mut self, text: &str, is_final: bool) {
        self.interim_pending = !is_final && !text.trim().is_empty();
        if is_final {
            self.final_in_speech |= !text.trim().is_empty();
            let text = text.trim();
            if !text.is_empty() {
                if !self.text.is_empty() {
                    self.text.push(' ');
                }
                self.text.push_str(text);
            }
        }
    }

    fn end_turn(&mut self, speech_end_ms: u64) -> Decision {
        self.awaiting_final = None;
        self.final_in_speech = false;
        let text = std::mem::take(&mut self.text);
        Decision::EndOfTurn {
            speech_end_ms,
            text: (!text.is_empty()).then_some(text),
        }
    }
}

/// Whether `word` is one of `fillers`, ignoring case and surrounding punctuation.
pub fn is_filler(word: &str, fillers: &[String]) -> bool {
    let word = word.trim_matches(|c: char| !c.is_alphanumeric());
    !word.is_empty() && fillers.iter().any(|f| f.eq_ignore_ascii_case(word))
}

/// Where one word of an agent turn's text is, and when its audio starts (TTS alignment).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WordTime {
    /// The word's first byte in the text.
    pub byte_offset: usize,
    /// The word's length in bytes.
    pub len: usize,
    /// When the word starts, from the start of the turn's audio.
    pub start_ms: u64,
}

/// What the caller heard of an agent turn cut at `heard_ms` of `total_ms`: by word timings
/// when given (words whose start is before `heard_ms`), else in proportion to the audio
/// heard, cut at a word boundary.
pub fn heard_text(text: &str, words: Option<&[WordTime]>, heard_ms: u64, total_ms: u64) -> String {
    if heard_ms == 0 {
        return String::new();
    }
    if let Some(words) = words {
        let end = words
            .iter()
            .filter(|w| w.start_ms < heard_ms)
            .map(|w| w.byte_offset.saturating_add(w.len))
            .max()
            .unwrap_or(0);
        let mut end = end.min(text.len());
        while !text.is_char_boundary(end) {
            end += 1;
        }
        return text[..end].trim_end().to_owned();
    }
    if total_ms == 0 || heard_ms >= total_ms {
        return text.trim_end().to_owned();
    }
    // The character the audio reached, then every word that had begun by then.
    let chars = text.chars().count() as u64;
    let reached = (chars * heard_ms / total_ms) as usize;
    let mut end = 0;
    let mut in_word = false;
    for (i, (byte, c)) in text.char_indices().enumerate() {
        if c.is_whitespace() {
            in_word = false;
            continue;
        }
        if !in_word && i >= reached {
            break;
        }
        in_word = true;
        end = byte + c.len_utf8();
    }
    text[..end].trim_end().to_owned()
}

#[cfg(test)]
#[path = "turn_tests.rs"]
mod tests;
