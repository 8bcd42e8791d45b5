//! weir: a log pipeline. Sources read events, transforms parse, enrich and filter them,
//! sinks deliver them; every hop is bounded and every event is acknowledged end to end.
//!
//! The binary (`src/main.rs`) is a thin command line over [`app`].

pub mod api;
pub mod app;
pub mod buffers;
pub mod channel;
pub mod component;
pub mod config;
#[cfg(test)]
pub mod contract;
pub mod dead_letter;
pub mod error;
pub mod event;
pub mod files;
#[doc(hidden)]
pub mod fuzzing;
pub mod health;
pub mod hex;
pub mod internal_events;
pub mod metrics;
pub mod monitoring;
pub mod output;
pub mod pipeline_test;
pub mod redact;
pub mod setup;
pub mod sinks;
pub mod sources;
pub mod tap;
pub mod template;
pub mod top;
pub mod topology;
pub mod transforms;
pub mod utf8;
