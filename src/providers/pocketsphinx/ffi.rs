//! The pocketsphinx 5prealpha C library (Debian `libpocketsphinx-dev`), and the one owner
//! of a decoder's raw pointers.
//!
//! `unsafe` is allowed here, and only here, because calling C needs it. Everything outside
//! this file uses [`RawDecoder`], whose methods are safe: it owns its `ps_decoder_t` and
//! `cmd_ln_t`, frees both exactly once, and passes C only NUL-terminated strings and slices
//! it borrows for the call. It must never hand a raw pointer out, nor be shared between
//! threads at once (it is `Send`, not `Sync`).
//!
//! Signatures are copied from `pocketsphinx.h`, `ps_search.h` and sphinxbase's `cmd_ln.h`,
//! `err.h`, `ckd_alloc.h` as Debian ships them (0.8+5prealpha+1): `ps_start_utt` takes no
//! utterance id in this version.

#![allow(unsafe_code)]

use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::ptr::NonNull;
use std::sync::{Mutex, Once};

/// `ps_decoder_t`.
#[repr(C)]
pub(super) struct PsDecoder {
    _private: [u8; 0],
}
/// `cmd_ln_t`.
#[repr(C)]
pub(super) struct CmdLn {
    _private: [u8; 0],
}
/// `arg_t`.
#[repr(C)]
pub(super) struct Arg {
    _private: [u8; 0],
}
/// `ps_seg_t`.
#[repr(C)]
pub(super) struct PsSeg {
    _private: [u8; 0],
}
/// `jsgf_t`.
#[repr(C)]
pub(super) struct Jsgf {
    _private: [u8; 0],
}
/// `jsgf_rule_t`.
#[repr(C)]
pub(super) struct JsgfRule {
    _private: [u8; 0],
}
/// `fsg_model_t`.
#[repr(C)]
pub(super) struct FsgModel {
    _private: [u8; 0],
}
/// `logmath_t`.
#[repr(C)]
pub(super) struct LogMath {
    _private: [u8; 0],
}

#[link(name = "pocketsphinx")]
unsafe extern "C" {
    fn ps_args() -> *const Arg;
    fn ps_init(config: *mut CmdLn) -> *mut PsDecoder;
    fn ps_free(ps: *mut PsDecoder) -> c_int;
    fn ps_start_utt(ps: *mut PsDecoder) -> c_int;
    fn ps_process_raw(
        ps: *mut PsDecoder,
        data: *const i16,
        n_samples: usize,
        no_search: c_int,
        full_utt: c_int,
    ) -> c_int;
    fn ps_end_utt(ps: *mut PsDecoder) -> c_int;
    fn ps_get_hyp(ps: *mut PsDecoder, out_best_score: *mut i32) -> *const c_char;
    fn ps_get_in_speech(ps: *mut PsDecoder) -> u8;
    fn ps_get_n_frames(ps: *mut PsDecoder) -> c_int;
    fn ps_seg_iter(ps: *mut PsDecoder) -> *mut PsSeg;
    fn ps_seg_next(seg: *mut PsSeg) -> *mut PsSeg;
    fn ps_seg_word(seg: *mut PsSeg) -> *const c_char;
    fn ps_seg_frames(seg: *mut PsSeg, out_sf: *mut c_int, out_ef: *mut c_int);
    fn ps_add_word(
        ps: *mut PsDecoder,
        word: *const c_char,
        phones: *const c_char,
        update: c_int,
    ) -> c_int;
    fn ps_lookup_word(ps: *mut PsDecoder, word: *const c_char) -> *mut c_char;
    fn ps_set_fsg(ps: *mut PsDecoder, name: *const c_char, fsg: *mut FsgModel) -> c_int;
    fn ps_get_logmath(ps: *mut PsDecoder) -> *mut LogMath;
    fn ps_set_search(ps: *mut PsDecoder, name: *const c_char) -> c_int;
    fn ps_unset_search(ps: *mut PsDecoder, name: *const c_char) -> c_int;
}

#[link(name = "sphinxbase")]
unsafe extern "C" {
    fn cmd_ln_parse_r(
        inout: *mut CmdLn,
        defn: *const Arg,
        argc: i32,
        argv: *mut *mut c_char,
        strict: i32,
    ) -> *mut CmdLn;
    fn cmd_ln_free_r(cmdln: *mut CmdLn) -> c_int;
    fn cmd_ln_float_r(cmdln: *mut CmdLn, name: *const c_char) -> f64;
    fn err_set_logfp(stream: *mut c_void);
    fn ckd_free(ptr: *mut c_void);
    fn jsgf_parse_string(string: *const c_char, parent: *mut Jsgf) -> *mut Jsgf;
    fn jsgf_get_public_rule(grammar: *mut Jsgf) -> *mut JsgfRule;
    fn jsgf_build_fsg(
        grammar: *mut Jsgf,
        rule: *mut JsgfRule,
        lmath: *mut LogMath,
        lw: f32,
    ) -> *mut FsgModel;
    fn jsgf_grammar_free(jsgf: *mut Jsgf);
    fn fsg_model_free(fsg: *mut FsgModel) -> c_int;
}

/// pocketsphinx logs through one process-wide `FILE*` that `ps_init` may swap and close
/// (`-logfn`) while another thread writes to it. Logging is switched off once, before the
/// first decoder, and no decoder is given `-logfn`; start-up errors are found by checking
/// the model's files before loading it.
static QUIET: Once = Once::new();
/// `ps_init` touches that global log state and the headers promise nothing on threads:
/// decoders are created one at a time.
static INIT: Mutex<()> = Mutex::new(());

/// One word of a hypothesis: its text and its first and last 10 ms frame, counted from the
/// utterance's first frame the decoder kept.
pub(super) struct Segment {
    pub(super) word: String,
    pub(super) start_frame: i32,
    pub(super) end_frame: i32,
}

/// An owned pocketsphinx decoder and its configuration.
pub(super) struct RawDecoder {
    ps: NonNull<PsDecoder>,
    config: NonNull<CmdLn>,
}

// SAFETY: the decoder and its configuration are plain heap objects owned by this value
// alone; nothing in them is tied to the thread that made them (no thread-locals in
// sphinxbase 5prealpha), so moving the owner to another thread is sound. It is not `Sync`:
// every call takes `&mut self`.
unsafe impl Send for RawDecoder {}

impl RawDecoder {
    /// Parses `args` (`-name value` pairs) and loads a decoder; `None` if either step fails.
    pub(super) fn new(args: &[(&str, &str)]) -> Option<Self> {
        QUIET.call_once(|| {
            // SAFETY: NULL is the documented way to disable logging (err.h).
            unsafe { err_set_logfp(std::ptr::null_mut()) }
        });
        let strings: Vec<CString> = args
            .iter()
            .flat_map(|(name, value)| [*name, *value])
            .map(CString::new)
            .collect::<Result<_, _>>()
            .ok()?;
        let mut argv: Vec<*mut c_char> = strings.iter().map(|s| s.as_ptr().cast_mut()).collect();
        let argc = i32::try_from(argv.len()).ok()?;
        let _one_at_a_time = INIT.lock().unwrap_or_else(|e| e.into_inner());
        // SAFETY: argv holds argc valid NUL-terminated strings that outlive the call;
        // cmd_ln_parse_r copies the values it keeps (cmd_ln.c strdup's each value), and never
        // writes through argv despite its `char **` type. ps_args() is a static table.
        let config = NonNull::new(unsafe {
            cmd_ln_parse_r(std::ptr::null_mut(), ps_args(), argc, argv.as_mut_ptr(), 1)
        })?;
        // SAFETY: config is a valid cmd_ln_t; ps_init retains its own reference to it.
        let Some(ps) = NonNull::new(unsafe { ps_init(config.as_ptr()) }) else {
            // SAFETY: config came from cmd_ln_parse_r and is freed once, here.
            unsafe { cmd_ln_free_r(config.as_ptr()) };
            return None;
        };
        Some(Self { ps, config })
    }

    /// `ps_start_utt`; false on error.
    pub(super) fn start_utt(&mut self) -> bool {
        // SAFETY: self.ps is a live decoder owned by self.
        unsafe { ps_start_utt(self.ps.as_ptr()) >= 0 }
    }

    /// `ps_process_raw` of one buffer, searching as it goes; false on error.
    pub(super) fn process_raw(&mut self, samples: &[i16]) -> bool {
        // SAFETY: the pointer and length describe the borrowed slice, which the call only
        // reads; self.ps is live.
        unsafe { ps_process_raw(self.ps.as_ptr(), samples.as_ptr(), samples.len(), 0, 0) >= 0 }
    }

    /// `ps_end_utt`; false on error (or when no utterance was started).
    pub(super) fn end_utt(&mut self) -> bool {
        // SAFETY: self.ps is live.
        unsafe { ps_end_utt(self.ps.as_ptr()) >= 0 }
    }

    /// Whether the last buffer held speech, by pocketsphinx's own VAD.
    pub(super) fn in_speech(&mut self) -> bool {
        // SAFETY: self.ps is live.
        unsafe { ps_get_in_speech(self.ps.as_ptr()) != 0 }
    }

    /// 10 ms frames the decoder has kept in this utterance (its VAD drops leading silence).
    pub(super) fn n_frames(&mut self) -> i32 {
        // SAFETY: self.ps is live.
        unsafe { ps_get_n_frames(self.ps.as_ptr()) }
    }

    /// The current best hypothesis (partial mid-utterance, final after `end_utt`).
    pub(super) fn hyp(&mut self) -> Option<String> {
        let mut text = String::new();
        self.hyp_into(&mut text).then_some(text)
    }

    /// Writes the current best hypothesis into `out` (cleared first; its capacity reused,
    /// so a hypothesis that fits allocates nothing); false when there is none.
    pub(super) fn hyp_into(&mut self, out: &mut String) -> bool {
        out.clear();
        // SAFETY: self.ps is live; a NULL score pointer is allowed (pocketsphinx.c checks).
        let text = unsafe { ps_get_hyp(self.ps.as_ptr(), std::ptr::null_mut()) };
        if text.is_null() {
            return false;
        }
        // SAFETY: a non-NULL hyp is a NUL-terminated string owned by the decoder, valid
        // until the next call on it; it is copied into `out` here.
        let text = unsafe { CStr::from_ptr(text) };
        out.push_str(&text.to_string_lossy());
        true
    }

    /// The words of the current hypothesis with their frames, fillers included.
    pub(super) fn segments(&mut self) -> Vec<Segment> {
        let mut out = Vec::new();
        // SAFETY: self.ps is live; the iterator is walked to its end, where ps_seg_next
        // frees it and returns NULL, so it is neither leaked nor used after free.
        let mut seg = unsafe { ps_seg_iter(self.ps.as_ptr()) };
        while !seg.is_null() {
            let (mut sf, mut ef) = (0, 0);
            // SAFETY: seg is a live iterator; the word is a NUL-terminated string owned by
            // the decoder and copied at once; the frame outputs point at locals.
            let word = unsafe {
                ps_seg_frames(seg, &mut sf, &mut ef);
                let w = ps_seg_word(seg);
                if w.is_null() {
                    String::new()
                } else {
                    CStr::from_ptr(w).to_string_lossy().into_owned()
                }
            };
            out.push(Segment {
                word,
                start_frame: sf,
                end_frame: ef,
            });
            // SAFETY: seg is live; this advances (and at the end frees) it.
            seg = unsafe { ps_seg_next(seg) };
        }
        out
    }

    /// Whether the pronunciation dictionary knows `word`.
    pub(super) fn knows(&mut self, word: &str) -> bool {
        let Ok(word) = CString::new(word) else {
            return false;
        };
        // SAFETY: self.ps is live and word is NUL-terminated; the result is a copy the
        // caller owns (ckd_salloc), freed here with sphinxbase's own allocator.
        unsafe {
            let phones = ps_lookup_word(self.ps.as_ptr(), word.as_ptr());
            if phones.is_null() {
                return false;
            }
            ckd_free(phones.cast());
        }
        true
    }

    /// Adds `word` with one pronunciation (`phones`, ARPAbet, space-separated) to the
    /// decoder's dictionary. Searches made afterwards see it; the active one is not
    /// rebuilt (a new grammar is always set after adding its words).
    pub(super) fn add_word(&mut self, word: &str, phones: &str) -> bool {
        let (Ok(word), Ok(phones)) = (CString::new(word), CString::new(phones)) else {
            return false;
        };
        // SAFETY: self.ps is live and both strings are NUL-terminated; the dictionary
        // copies them. update = 0 leaves the searches alone.
        unsafe { ps_add_word(self.ps.as_ptr(), word.as_ptr(), phones.as_ptr(), 0) >= 0 }
    }

    /// Adds (or replaces) the JSGF search `name` and makes it the active search. Only
    /// between utterances: pocketsphinx refuses to switch while decoding.
    ///
    /// Does what `ps_set_jsgf_string` does (parse, public rule, FSG at `-lw`, set), but
    /// frees the parsed grammar: 5prealpha's `ps_set_jsgf_string` never does, leaking
    /// about 7 KB per call (found by the `pocketsphinx_expect` fuzz target's leak check).
    pub(super) fn use_jsgf(&mut self, name: &str, jsgf: &str) -> bool {
        let (Ok(name), Ok(jsgf)) = (CString::new(name), CString::new(jsgf)) else {
            return false;
        };
        // SAFETY: the string is NUL-terminated and only read; a NULL parent is allowed.
        // The grammar returned is ours and freed below on every path.
        let grammar = unsafe { jsgf_parse_string(jsgf.as_ptr(), std::ptr::null_mut()) };
        if grammar.is_null() {
            return false;
        }
        // SAFETY: grammar is live; the rule is borrowed from it and used before it is
        // freed. self.ps and self.config are live; "-lw" is one of ps_args()'s floats, and
        // the logmath is the decoder's own (borrowed). ps_set_fsg retains the FSG it
        // keeps, so this reference is released with fsg_model_free, as
        // ps_set_jsgf_string does.
        unsafe {
            let rule = jsgf_get_public_rule(grammar);
            let set = !rule.is_null() && {
                let lw = cmd_ln_float_r(self.config.as_ptr(), c"-lw".as_ptr()) as f32;
                let fsg = jsgf_build_fsg(grammar, rule, ps_get_logmath(self.ps.as_ptr()), lw);
                !fsg.is_null() && {
                    let set = ps_set_fsg(self.ps.as_ptr(), name.as_ptr(), fsg) >= 0;
                    fsg_model_free(fsg);
                    set
                }
            };
            jsgf_grammar_free(grammar);
            set && ps_set_search(self.ps.as_ptr(), name.as_ptr()) >= 0
        }
    }

    /// Removes the search `name` (not the active one), freeing its grammar.
    pub(super) fn drop_search(&mut self, name: &str) {
        let Ok(name) = CString::new(name) else {
            return;
        };
        // SAFETY: self.ps is live, name is NUL-terminated; an unknown name returns -1.
        unsafe { ps_unset_search(self.ps.as_ptr(), name.as_ptr()) };
    }
}

impl Drop for RawDecoder {
    fn drop(&mut self) {
        // SAFETY: both pointers are owned by self and freed exactly once, here; ps_free
        // drops the decoder's own reference to the configuration, this drops ours.
        unsafe {
            ps_free(self.ps.as_ptr());
            cmd_ln_free_r(self.config.as_ptr());
        }
    }
}
