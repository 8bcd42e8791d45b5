//! `console`: writes events to standard output, one per line.
//!
//! When the reader of standard output leaves (`weir run | head`), weir stops as at the end
//! of its sources (draining the other sinks) and exits 0; the events the console did not
//! write are not acknowledged, so a file source reads them again next time.

use serde::Deserialize;
use tokio::io::AsyncWriteExt;

use super::util::encoding::EncodingConfig;
use crate::component::{SinkComponent, SinkContext};
use crate::error::{BuildError, ComponentError, ConfigIssue, Task};
use crate::event::{EventStatus, batch_size};

/// `[sinks.<id>] type = "console"`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleConfig {
    /// How an event becomes a line. Default JSON.
    #[serde(default)]
    pub encoding: EncodingConfig,
}

impl SinkComponent for ConsoleConfig {
    type Checked = ();

    fn check(&self) -> Result<(), Vec<ConfigIssue>> {
        Ok(())
    }

    fn build(&self, (): (), mut cx: SinkContext) -> Result<Task, BuildError> {
        let encoding = self.encoding;
        Ok(Box::pin(async move {
            let mut stdout = tokio::io::stdout();
            let out = cx.metrics.output("_default");
            let mut buf = Vec::with_capacity(64 * 1024);
            while let Some(events) = cx.input.recv().await {
                cx.metrics.received(events.len(), batch_size(&events));
                buf.clear();
                for e in &events {
                    encoding.encode_line(e, &mut buf);
                }
                let written = async {
                    stdout.write_all(&buf).await?;
                    stdout.flush().await
                }
                .await;
                if let Err(e) = written {
                    for ev in &events {
                        ev.update_status(EventStatus::Errored);
                    }
                    cx.metrics.error(
                        crate::metrics::error_type::WRITE_FAILED,
                        crate::metrics::Stage::Sending,
                    );
                    if e.kind() == std::io::ErrorKind::BrokenPipe {
                        return Err(ComponentError::OutputClosed("standard output"));
                    }
                    return Err(ComponentError::io("cannot write to standard output", e));
                }
                out.sent(events.len(), buf.len());
            }
            Ok(())
        }))
    }
}
