//! Machinery shared by sinks.

pub mod encoding;
