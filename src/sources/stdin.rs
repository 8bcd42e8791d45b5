//! `stdin`: one event per line of standard input (`cat app.log | weir run -c pipe.toml`).
//!
//! When standard input ends, the source flushes and finishes; once every source has finished,
//! weir drains the pipeline and exits.

use std::time::Instant;

use serde::Deserialize;
use tokio::io::AsyncReadExt;

use super::util::lines::{LineFramer, Oversize};
use super::util::multiline::{Group, Multiline, MultilineConfig};
use super::util::{group_event, host_name, line_fields, sleep_until};
use crate::component::{SourceComponent, SourceContext};
use crate::error::{BuildError, ConfigIssue, Task};
use crate::internal_events::LineTooLong;

/// `[sources.<id>] type = "stdin"`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StdinConfig {
    /// Longest line kept whole. Default 100 KiB.
    #[serde(default = "default_max_line_bytes")]
    pub max_line_bytes: usize,
    /// `truncate` (default) or `drop` lines over the limit.
    #[serde(default)]
    pub oversize: Oversize,
    /// Join the lines of one message (a traceback, a stack trace) into one event; none by
    /// default (each line is an event).
    #[serde(default)]
    pub multiline: Option<MultilineConfig>,
}

pub(crate) fn default_max_line_bytes() -> usize {
    100 * 1024
}

const READ_CHUNK: usize = 64 * 1024;

impl SourceComponent for StdinConfig {
    /// The compiled `multiline` options, if set.
    type Checked = Option<Multiline>;

    fn check(&self) -> Result<Option<Multiline>, Vec<ConfigIssue>> {
        self.multiline.as_ref().map(MultilineConfig::check).transpose()
    }

    fn build(
        &self,
        multiline: Option<Multiline>,
        mut cx: SourceContext,
    ) -> Result<Task, BuildError> {
        let mut framer = LineFramer::new(0, self.max_line_bytes, self.oversize);
        let mut agg = multiline.map(|m| m.aggregator::<()>(self.max_line_bytes));
        let mut too_long = LineTooLong::new(&cx.metrics, self.oversize == Oversize::Truncate);
        let max = self.max_line_bytes;
        let action = if self.oversize == Oversize::Truncate { "cut" } else { "dropped" };
        Ok(Box::pin(async move {
            let host = line_fields(&host_name(), None);
            let mut stdin = tokio::io::stdin();
            let mut chunk = vec![0u8; READ_CHUNK];
            let mut lines = Vec::new();
            let mut groups: Vec<Group<()>> = Vec::new();
            loop {
                let deadline = agg.as_ref().and_then(|a| a.deadline());
                let read = tokio::select! {
                    biased;
                    _ = cx.shutdown.cancelled() => None,
                    _ = sleep_until(deadline) => Some(None),
                    r = stdin.read(&mut chunk) => match r {
                        Ok(n) => Some(Some(n)),
                        Err(e) => {
                            tracing::error!(component = %cx.id, error = %e, "cannot read standard input");
                            None
                        }
                    },
                };
                // `None`: stop (shutdown or error) after flushing what is held.
                let end = matches!(read, None | Some(Some(0)));
                if let Some(Some(n)) = read
                    && n > 0
                {
                    cx.metrics.received(0, n);
                    framer.extend(&chunk[..n]);
                    let over = framer.drain_lines(&mut lines);
                    for _ in 0..over.truncated + over.dropped {
                        too_long.emit("stdin", max, action);
                    }
                }
                if end {
                    lines.extend(framer.take_rest());
                }
                let instant = Instant::now();
                match agg.as_mut() {
                    Some(a) => {
                        for l in lines.drain(..) {
                            a.push_marked(l.bytes, l.truncated, (), instant, &mut groups);
                        }
                        if end {
                            a.flush(&mut groups);
                        } else {
                            a.flush_expired(instant, &mut groups);
                        }
                    }
                    None => groups
                        .extend(lines.drain(..).map(|l| Group::line(l.bytes, (), l.truncated))),
                }
                let now = chrono::Utc::now();
                let events: Vec<_> =
                    groups.drain(..).map(|g| group_event(g, now, &host, max)).collect();
                cx.metrics.received(events.len(), 0);
                if !cx.out.send(events).await || end {
                    break;
                }
            }
            Ok(())
        }))
    }
}
