//! weir's integration tests: one binary, driving the real `weir` executable.

mod support;

mod backpressure;
mod bench_compare;
mod config_errors;
mod connections;
mod dashboards;
mod delivery;
mod deploy;
mod elasticsearch;
mod es_server;
mod evidently_drift;
mod file_source;
mod fuzz_corpora;
mod grok_loghub;
mod http_server;
mod kafka;
mod kibana_server;
mod kube_api_server;
mod kubernetes_logs;
mod kubernetes_manifests;
mod lifecycle;
mod loki;
mod loki_server;
mod model_lines;
mod model_monitoring;
mod monitoring_peers;
mod pipelines;
mod python_servers;
mod reload;
mod sample_logs;
mod secrets;
mod setup;
mod sink_health;
mod stand_in;
mod syslog;
