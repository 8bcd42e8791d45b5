//! weir's integration tests: one binary, driving the real `weir` executable.

mod support;

mod backpressure;
mod config_errors;
mod file_source;
mod grok_loghub;
mod lifecycle;
mod model_monitoring;
mod monitoring_peers;
mod pipelines;
