//! weir's integration tests: one binary, driving the real `weir` executable.

mod support;

mod bench;
mod config_errors;
mod deploy;
mod elasticsearch;
mod es_server;
mod kibana_server;
mod loki;
mod loki_server;
mod setup;
