//! Sources: where events come from. One module per source.

pub mod demo;
pub mod file;
pub mod kafka;
pub mod stdin;
pub mod syslog;
pub mod util;

use crate::config::ConfigIssue;
use crate::topology::{SourceContext, Task};

crate::component_enum! {
    /// The `type` of a `[sources.<id>]` table.
    SourceConfig {
        "demo" => Demo(demo::DemoConfig),
        "file" => File(file::FileConfig),
        "kafka" => Kafka(kafka::KafkaConfig),
        "stdin" => Stdin(stdin::StdinConfig),
        "syslog" => Syslog(syslog::SyslogConfig),
    }
}

impl SourceConfig {
    /// Checks what can be checked without I/O.
    pub fn check(&self) -> Vec<ConfigIssue> {
        match self {
            Self::Demo(c) => c.check(),
            Self::File(c) => c.check(),
            Self::Kafka(c) => c.check(),
            Self::Stdin(c) => c.check(),
            Self::Syslog(c) => c.check(),
        }
    }

    /// Builds the source's task.
    pub fn build(&self, cx: SourceContext) -> Result<Task, String> {
        match self {
            Self::Demo(c) => c.build(cx),
            Self::File(c) => c.build(cx),
            Self::Kafka(c) => c.build(cx),
            Self::Stdin(c) => c.build(cx),
            Self::Syslog(c) => c.build(cx),
        }
    }
}
