//! weir's integration tests: one binary, driving the real `weir` executable.

mod support;

mod config_errors;
mod kafka;
mod syslog;
