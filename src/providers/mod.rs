//! Providers: the speech and language engines voxgate talks to, each an adapter behind a
//! small API of its own, so the call path never sees an engine's library or wire format.
//!
//! | module | engine |
//! |---|---|
//! | [`pocketsphinx`] | offline speech recognition, in process, on worker threads |

pub mod pocketsphinx;
