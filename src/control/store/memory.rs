//! In-memory store: the reference model the real stores are tested against.
