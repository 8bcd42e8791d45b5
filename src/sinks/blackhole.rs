//! `blackhole`: accepts and counts events, for benchmarks and tests.

use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::component::{SinkComponent, SinkContext};
use crate::error::{BuildError, ConfigIssue, Task};

/// `[sinks.<id>] type = "blackhole"`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlackholeConfig {
    /// Log the totals this often (0, the default, never).
    #[serde(default)]
    pub print_interval_secs: u64,
}

impl SinkComponent for BlackholeConfig {
    type Checked = ();

    fn check(&self) -> Result<(), Vec<ConfigIssue>> {
        Ok(())
    }

    fn build(&self, (): (), mut cx: SinkContext) -> Result<Task, BuildError> {
        let every = Duration::from_secs(self.print_interval_secs);
        Ok(Box::pin(async move {
            let out = cx.metrics.output("_default");
            let (mut events_total, mut bytes_total) = (0u64, 0u64);
            let mut last = Instant::now();
            // Blocks of lines are counted as they came, never turned into events.
            while let Some(batch) = cx.input.recv_batch().await {
                let (count, bytes) = (batch.len(), batch.size());
                cx.metrics.received(count, bytes);
                out.sent(count, bytes);
                events_total += count as u64;
                bytes_total += bytes as u64;
                if !every.is_zero() && last.elapsed() >= every {
                    last = Instant::now();
                    tracing::info!(component = %cx.id, events = events_total, bytes = bytes_total, "blackhole totals");
                }
            }
            tracing::info!(component = %cx.id, events = events_total, "blackhole received its last event");
            Ok(())
        }))
    }

    /// Blocks of lines are counted as they came.
    fn writes_lines_as_read(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::{Expect, events, run_sink};
    use crate::event::BatchStatus;

    #[tokio::test]
    async fn keeps_the_sink_contract() {
        let (input, acks) = events(&["a", "b"]);
        let run = run_sink(&BlackholeConfig { print_interval_secs: 0 }, "blackhole", input).await;
        let expect = Expect {
            received: 2,
            sent: 2,
            status: Some(BatchStatus::Delivered),
            ..Expect::default()
        };
        expect.check(run, Some(acks)).await;
    }
}
