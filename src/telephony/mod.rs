//! Telephony providers. Plivo is the one voxgate speaks today.

pub mod plivo;
