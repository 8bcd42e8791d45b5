//! Buffers in front of sinks other than the in-memory channel of [`crate::channel`]:
//! the disk buffer ([`disk`]).

pub mod disk;
