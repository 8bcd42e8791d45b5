//! Sources: where events come from. One module per source.

pub mod demo;
pub mod file;
pub mod http_server;
pub mod kafka;
pub mod kubernetes_logs;
pub mod opentelemetry;
pub mod stdin;
pub mod syslog;
pub mod util;

crate::component_enum! {
    source
    /// The `type` of a `[sources.<id>]` table.
    SourceConfig {
        "demo" => Demo(demo::DemoConfig),
        "file" => File(file::FileConfig),
        "http_server" => HttpServer(http_server::HttpServerConfig),
        "kafka" => Kafka(kafka::KafkaConfig),
        "kubernetes_logs" => KubernetesLogs(kubernetes_logs::KubernetesLogsConfig),
        "opentelemetry" => Opentelemetry(opentelemetry::OpentelemetryConfig),
        "stdin" => Stdin(stdin::StdinConfig),
        "syslog" => Syslog(syslog::SyslogConfig),
    }
}
