//! espeak-ng's C library behind a safe face: the few `speak_lib.h` functions voxgate calls,
//! declared by hand (1.51, API revision 12), and the one lock that makes calling them sound.
//!
//! Why unsafe is allowed here and only here: calling C is unsafe by definition, and the
//! library keeps global state and is not reentrant (concurrent calls corrupt audio or
//! crash). So the library is a value, [`Library`], that lives only inside one process-wide
//! mutex: [`with_library`] is the only way to reach it, which makes every call exclusive,
//! and each `unsafe` block below names what it relies on. The rest of the module is safe
//! Rust. Nothing here may ever call `espeak_Terminate`: another handle may still use the
//! library, which stays loaded (a few MiB) until the process exits.
//!
//! The synthesis callback is a C function pointer with no closure; [`Library::synth`]
//! parks the Rust handler in a thread-local for the length of the call (synchronous mode
//! runs the callback on the calling thread) and the trampoline finds it there. A panic in
//! the handler never crosses into C: it is caught, aborts the synthesis and is reported.

#![allow(unsafe_code)]

use std::cell::Cell;
use std::ffi::{CStr, c_char, c_int, c_short, c_uint, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Mutex, PoisonError};

/// `AUDIO_OUTPUT_SYNCHRONOUS`: `espeak_Synth` synthesises on the calling thread and hands
/// audio to the callback before it returns.
const AUDIO_OUTPUT_SYNCHRONOUS: c_int = 2;
/// `espeakINITIALIZE_DONT_EXIT`: report missing data instead of calling `exit(1)`.
const INITIALIZE_DONT_EXIT: c_int = 0x8000;
/// `POS_CHARACTER`: `position` counts characters.
const POS_CHARACTER: c_int = 1;
/// `espeakCHARS_UTF8`: the text is UTF-8.
const CHARS_UTF8: c_uint = 1;
/// `EE_OK`.
const EE_OK: c_int = 0;
/// `espeakRATE`: words per minute, 80..=450.
const PARAM_RATE: c_int = 1;
/// `espeakPITCH`: base pitch, 0..=100, 50 normal.
const PARAM_PITCH: c_int = 3;
/// `espeakEVENT_LIST_TERMINATED`: the last entry of an event list.
const EVENT_LIST_TERMINATED: c_int = 0;
/// `espeakEVENT_WORD`: the start of a word.
pub const EVENT_WORD: c_int = 1;
/// Milliseconds of audio per callback; small, so the first audio leaves early.
const BUFFER_MS: c_int = 40;

/// `espeak_EVENT`, field for field. `id` is a union of `int`, `const char *` and
/// `char[8]`: eight bytes, pointer-aligned, as `*const c_void` is.
#[repr(C)]
#[derive(Debug)]
pub struct Event {
    /// `espeak_EVENT_TYPE`, a C enum (an `int`): [`EVENT_WORD`], …
    pub kind: c_int,
    /// `unique_identifier`.
    pub unique_identifier: c_uint,
    /// Characters from the start of the text, counting from 1 (0 on stray events).
    pub text_position: c_int,
    /// The word's length in characters (word events).
    pub length: c_int,
    /// Milliseconds from the start of the utterance's audio.
    pub audio_position: c_int,
    /// `sample`: internal to the library.
    pub sample: c_int,
    /// `user_data` given to `espeak_Synth` (unused).
    pub user_data: *mut c_void,
    /// `id`: the union (unused).
    pub id: *const c_void,
}

/// `t_espeak_callback`.
type SynthCallback = unsafe extern "C" fn(*mut c_short, c_int, *mut Event) -> c_int;

#[link(name = "espeak-ng")]
unsafe extern "C" {
    fn espeak_Initialize(
        output: c_int,
        buflength: c_int,
        path: *const c_char,
        options: c_int,
    ) -> c_int;
    fn espeak_SetSynthCallback(callback: Option<SynthCallback>);
    fn espeak_SetVoiceByName(name: *const c_char) -> c_int;
    fn espeak_SetParameter(parameter: c_int, value: c_int, relative: c_int) -> c_int;
    fn espeak_Synth(
        text: *const c_void,
        size: usize,
        position: c_uint,
        position_type: c_int,
        end_position: c_uint,
        flags: c_uint,
        unique_identifier: *mut c_uint,
        user_data: *mut c_void,
    ) -> c_int;
}

/// The initialised library. Only [`with_library`] hands one out, under [`LIBRARY`]'s lock.
#[derive(Debug)]
pub struct Library {
    sample_rate: u32,
}

/// The library's state for the whole process.
enum State {
    /// Nobody has asked for it yet.
    Unloaded,
    /// Initialised; its callback is set.
    Ready(Library),
    /// Initialisation failed; the reason, for every later caller.
    Failed(String),
}

static LIBRARY: Mutex<State> = Mutex::new(State::Unloaded);

/// Runs `f` with the library, alone in the process, initialising it on first use.
///
/// Blocks while another thread is inside; the synthesis worker holds it for one job at a
/// time. Errors with the reason when the library cannot be initialised.
pub fn with_library<R>(f: impl FnOnce(&mut Library) -> R) -> Result<R, String> {
    // A panic inside `f` cannot leave the library half-called: calls into C are atomic
    // from here, so a poisoned lock is still a usable library.
    let mut state = LIBRARY.lock().unwrap_or_else(PoisonError::into_inner);
    if let State::Unloaded = *state {
        *state = initialise();
    }
    match &mut *state {
        State::Ready(library) => Ok(f(library)),
        State::Failed(reason) => Err(reason.clone()),
        State::Unloaded => Err("espeak-ng was not initialised".into()),
    }
}

fn initialise() -> State {
    // SAFETY: called once per process, under LIBRARY's lock; a null path means the
    // built-in data folder; DONT_EXIT keeps the library from exiting the process.
    let rate = unsafe {
        espeak_Initialize(
            AUDIO_OUTPUT_SYNCHRONOUS,
            BUFFER_MS,
            std::ptr::null(),
            INITIALIZE_DONT_EXIT,
        )
    };
    let Ok(sample_rate) = u32::try_from(rate) else {
        return State::Failed(format!(
            "espeak_Initialize failed ({rate}): is espeak-ng-data installed?"
        ));
    };
    // SAFETY: under LIBRARY's lock; `trampoline` has the callback's exact signature and
    // stays valid for the life of the process.
    unsafe { espeak_SetSynthCallback(Some(trampoline)) };
    State::Ready(Library { sample_rate })
}

/// What the handler tells the synthesis after each piece of audio.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Go on.
    Continue,
    /// Stop this utterance now.
    Abort,
}

/// How a synthesis ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The whole text was spoken.
    Finished,
    /// The handler said [`Flow::Abort`].
    Aborted,
}

/// Why a synthesis failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SynthError {
    /// `espeak_Synth` returned this `espeak_ERROR`.
    Code(c_int),
    /// The handler panicked; the synthesis was aborted.
    HandlerPanicked,
}

impl Library {
    /// The sample rate of every utterance, in Hz (22 050 for espeak-ng's voices).
    pub fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    /// Selects a voice by file name with an optional `+variant` (`en-us`, `en-us+f3`);
    /// the `espeak_ERROR` when there is no such voice. The last good voice stays selected.
    pub fn set_voice(&mut self, name: &CStr) -> Result<(), c_int> {
        // SAFETY: `&mut self` means LIBRARY's lock is held; `name` is NUL-terminated and
        // outlives the call, which copies what it keeps.
        check(unsafe { espeak_SetVoiceByName(name.as_ptr()) })
    }

    /// Sets the speaking rate in words per minute (80..=450).
    pub fn set_rate(&mut self, wpm: u32) -> Result<(), c_int> {
        let value = c_int::try_from(wpm).unwrap_or(c_int::MAX);
        // SAFETY: `&mut self` means LIBRARY's lock is held; plain integers.
        check(unsafe { espeak_SetParameter(PARAM_RATE, value, 0) })
    }

    /// Sets the base pitch (0..=100, 50 normal).
    pub fn set_pitch(&mut self, pitch: u8) -> Result<(), c_int> {
        // SAFETY: `&mut self` means LIBRARY's lock is held; plain integers.
        check(unsafe { espeak_SetParameter(PARAM_PITCH, c_int::from(pitch), 0) })
    }

    /// Speaks `text` (UTF-8) with the current voice and parameters, calling `handler` with
    /// each piece of audio (`None` once the utterance is finished) and the events that
    /// came with it, on this thread, before returning.
    pub fn synth<F>(&mut self, text: &CStr, mut handler: F) -> Result<Ended, SynthError>
    where
        F: FnMut(Option<&[i16]>, &[Event]) -> Flow,
    {
        let mut call = Call {
            handler: &mut handler,
            aborted: false,
            panicked: false,
        };
        let active = Active {
            call: (&raw mut call).cast(),
            dispatch: dispatch::<F>,
        };
        let _parked = Parked::new(active);
        // SAFETY: `&mut self` means LIBRARY's lock is held. In synchronous mode the call
        // runs the callback on this thread and returns when it is done, so `call` (on this
        // stack frame) outlives every use the trampoline makes of it; `Parked` clears the
        // pointer when this frame ends, even by unwinding. The text is NUL-terminated
        // and its size counts the NUL.
        let code = unsafe {
            espeak_Synth(
                text.as_ptr().cast(),
                text.to_bytes_with_nul().len(),
                0,
                POS_CHARACTER,
                0,
                CHARS_UTF8,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            )
        };
        if call.panicked {
            return Err(SynthError::HandlerPanicked);
        }
        if call.aborted {
            return Ok(Ended::Aborted);
        }
        check(code)
            .map(|()| Ended::Finished)
            .map_err(SynthError::Code)
    }
}

fn check(code: c_int) -> Result<(), c_int> {
    if code == EE_OK { Ok(()) } else { Err(code) }
}

/// One synthesis in progress: its handler and what became of it.
struct Call<'a, F> {
    handler: &'a mut F,
    aborted: bool,
    panicked: bool,
}

/// A type-erased pointer to the [`Call`] in progress on this thread, and the function that
/// knows its type.
#[derive(Clone, Copy)]
struct Active {
    call: *mut c_void,
    dispatch: fn(*mut c_void, Option<&[i16]>, &[Event]) -> Flow,
}

thread_local! {
    static ACTIVE: Cell<Option<Active>> = const { Cell::new(None) };
}

/// Keeps [`Active`] parked in [`ACTIVE`] for one synthesis.
struct Parked;

impl Parked {
    fn new(active: Active) -> Self {
        ACTIVE.set(Some(active));
        Self
    }
}

impl Drop for Parked {
    fn drop(&mut self) {
        ACTIVE.set(None);
    }
}

fn dispatch<F>(call: *mut c_void, audio: Option<&[i16]>, events: &[Event]) -> Flow
where
    F: FnMut(Option<&[i16]>, &[Event]) -> Flow,
{
    // SAFETY: `call` was made from a live `&mut Call<F>` in `Library::synth` with this
    // same `F` (the pointer and this function are stored together), and that frame is
    // still running: the trampoline only runs inside its `espeak_Synth`.
    let call = unsafe { &mut *call.cast::<Call<'_, F>>() };
    match catch_unwind(AssertUnwindSafe(|| (call.handler)(audio, events))) {
        Ok(Flow::Continue) => Flow::Continue,
        Ok(Flow::Abort) => {
            call.aborted = true;
            Flow::Abort
        }
        Err(_) => {
            call.panicked = true;
            Flow::Abort
        }
    }
}

/// The C callback: turns the raw buffers into slices and hands them to the parked handler.
/// Aborts a synthesis nobody parked (the callback on a thread that did not call
/// `espeak_Synth`, which synchronous mode never does).
unsafe extern "C" fn trampoline(wav: *mut c_short, samples: c_int, events: *mut Event) -> c_int {
    let Some(active) = ACTIVE.get() else {
        return 1;
    };
    let audio = match usize::try_from(samples) {
        Ok(len) if !wav.is_null() && len > 0 => {
            // SAFETY: the library passes `samples` valid 16-bit samples at `wav`, which
            // stay put until the callback returns; the slice does not outlive this call.
            Some(unsafe { std::slice::from_raw_parts(wav.cast_const(), len) })
        }
        _ if !wav.is_null() => Some(&[][..]),
        _ => None,
    };
    let events = if events.is_null() {
        &[][..]
    } else {
        let mut len = 0;
        // SAFETY: the library's event list is an array ending with an entry of type
        // LIST_TERMINATED; we read up to and including that entry, no further.
        while unsafe { (*events.add(len)).kind } != EVENT_LIST_TERMINATED {
            len += 1;
        }
        // SAFETY: the `len` entries before the terminator were just walked; they stay put
        // until the callback returns and the slice does not outlive this call.
        unsafe { std::slice::from_raw_parts(events.cast_const(), len) }
    };
    match (active.dispatch)(active.call, audio, events) {
        Flow::Continue => 0,
        Flow::Abort => 1,
    }
}
