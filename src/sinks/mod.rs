//! Sinks: where events leave weir. One module per sink; shared machinery in [`util`].

pub mod alerting;
pub mod blackhole;
pub mod console;
pub mod elasticsearch;
pub mod file;
pub mod kafka;
pub mod loki;
pub mod mlflow;
pub mod socket;
pub mod util;

crate::component_enum! {
    sink
    /// The `type` of a `[sinks.<id>]` table.
    SinkConfig {
        "alertmanager" => Alertmanager(alerting::AlertmanagerConfig),
        "blackhole" => Blackhole(blackhole::BlackholeConfig),
        "console" => Console(console::ConsoleConfig),
        // Boxed: the config is large, and the enum should stay small.
        "elasticsearch" => Elasticsearch(Box<elasticsearch::ElasticsearchConfig>),
        "file" => File(file::FileSinkConfig),
        "kafka" => Kafka(Box<kafka::KafkaSinkConfig>),
        "loki" => Loki(Box<loki::LokiConfig>),
        "mlflow" => Mlflow(mlflow::MlflowConfig),
        "socket" => Socket(Box<socket::SocketSinkConfig>),
        "webhook" => Webhook(alerting::WebhookConfig),
    }
}
