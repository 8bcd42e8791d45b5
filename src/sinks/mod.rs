//! Sinks: where events leave weir. One module per sink; shared machinery in [`util`].

pub mod alerting;
pub mod blackhole;
pub mod console;
pub mod elasticsearch;
pub mod file;
pub mod loki;
pub mod mlflow;
pub mod util;

use crate::config::ConfigIssue;
use crate::topology::{SinkContext, Task};

crate::component_enum! {
    /// The `type` of a `[sinks.<id>]` table.
    SinkConfig {
        "alertmanager" => Alertmanager(alerting::AlertSinkConfig),
        "blackhole" => Blackhole(blackhole::BlackholeConfig),
        "console" => Console(console::ConsoleConfig),
        // Boxed: the config is large, and the enum should stay small.
        "elasticsearch" => Elasticsearch(Box<elasticsearch::ElasticsearchConfig>),
        "file" => File(file::FileSinkConfig),
        "loki" => Loki(Box<loki::LokiConfig>),
        "mlflow" => Mlflow(mlflow::MlflowConfig),
        "webhook" => Webhook(alerting::AlertSinkConfig),
    }
}

impl SinkConfig {
    /// Checks what can be checked without I/O.
    pub fn check(&self) -> Vec<ConfigIssue> {
        match self {
            Self::Blackhole(_) | Self::Console(_) => Vec::new(),
            Self::Elasticsearch(c) => c.check(),
            Self::File(c) => c.check(),
            Self::Loki(c) => c.check(),
            Self::Alertmanager(c) | Self::Webhook(c) => c.check(),
            Self::Mlflow(c) => c.check(),
        }
    }

    /// Does the sink take blocks of lines ([`crate::event::LineBlock`]) and write them as
    /// they are? A source whose consumers all do sends blocks instead of events.
    pub fn writes_lines_as_read(&self) -> bool {
        match self {
            Self::Blackhole(_) => true,
            Self::File(c) => c.writes_lines_as_read(),
            _ => false,
        }
    }

    /// Builds the sink's task.
    pub fn build(&self, cx: SinkContext) -> Result<Task, String> {
        match self {
            Self::Blackhole(c) => c.build(cx),
            Self::Console(c) => c.build(cx),
            Self::Elasticsearch(c) => c.build(cx),
            Self::File(c) => c.build(cx),
            Self::Loki(c) => c.build(cx),
            Self::Alertmanager(c) => c.build_alertmanager(cx),
            Self::Webhook(c) => c.build_webhook(cx),
            Self::Mlflow(c) => c.build(cx),
        }
    }
}
