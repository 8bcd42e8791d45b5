//! `file` sink: appends events to files, one per line, the path templated per event.
//!
//! ```toml
//! [sinks.archive]
//! type = "file"
//! inputs = ["parsed"]
//! path = "/var/log/weir/{{ service.name }}-%Y-%m-%d.log"
//! encoding.codec = "json"
//! ```
//! Files are opened in append mode, written once per batch and flushed; a file not written for
//! `idle_timeout_secs` is closed. An event whose path cannot be rendered (a field the template
//! names is missing) is rejected, counted, logged and sent to the dead-letter destination,
//! never silently dropped.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio::io::AsyncWriteExt;

use super::util::encoding::EncodingConfig;
use crate::config::ConfigIssue;
use crate::dead_letter::{Rejected, original_of};
use crate::event::{Event, EventFinalizers, EventStatus, batch_size};
use crate::internal_events::RateLimit;
use crate::template::Template;
use crate::topology::{SinkContext, Task};

/// `[sinks.<id>] type = "file"`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSinkConfig {
    /// Path template: `{{ field }}` and strftime `%` sequences of the event time.
    pub path: String,
    #[serde(default)]
    pub encoding: EncodingConfig,
    /// Close a file after this long without writes. Default 30.
    #[serde(default = "default_idle")]
    pub idle_timeout_secs: u64,
}

fn default_idle() -> u64 {
    30
}

impl FileSinkConfig {
    pub fn check(&self) -> Vec<ConfigIssue> {
        match Template::parse(&self.path) {
            Ok(_) => Vec::new(),
            Err(e) => vec![ConfigIssue::field("path", e)],
        }
    }

    pub fn build(&self, mut cx: SinkContext) -> Result<Task, String> {
        let template = Template::parse(&self.path)?;
        let encoding = self.encoding;
        let idle = Duration::from_secs(self.idle_timeout_secs);
        Ok(Box::pin(async move {
            let out = cx.metrics.output("_default");
            let mut files: HashMap<String, (tokio::fs::File, Instant)> = HashMap::new();
            let mut log_limit = RateLimit::default();
            // Encoded lines and the acknowledgement handles of their events, by file; an event
            // itself is dropped once encoded.
            let mut by_path: HashMap<String, (Vec<u8>, Vec<EventFinalizers>)> = HashMap::new();
            // A path without fields or dates is the same for every event: rendered once.
            let fixed = template
                .is_static()
                .then(|| template.render(&Event::from_message(""), chrono::Utc::now()).ok())
                .flatten();
            while let Some(events) = cx.input.recv().await {
                cx.metrics.received(events.len(), batch_size(&events));
                let now = chrono::Utc::now();
                let mut refused = Vec::new();
                let mut constant: (Vec<u8>, Vec<EventFinalizers>) = Default::default();
                for mut e in events {
                    // The constant path's lines gather outside the map (no hashing per event)
                    // and join it after the batch.
                    let entry = match &fixed {
                        Some(_) => &mut constant,
                        None => match template.render(&e, now) {
                            Ok(path) => by_path.entry(path).or_default(),
                            Err(missing) => {
                                cx.metrics.error("template_failed", "processing");
                                if let Some(suppressed) = log_limit.allow() {
                                    tracing::error!(component = %cx.id, field = %missing.0,
                                        suppressed,
                                        "event lacks a field of the path template; event \
                                         rejected and sent to the dead-letter destination");
                                }
                                refused.push(Rejected {
                                    original: original_of(&e),
                                    finalizers: std::mem::take(e.finalizers_mut()),
                                    destination: None,
                                    reason: "missing_field".into(),
                                    detail: format!(
                                        "the path template needs the field `{}`",
                                        missing.0
                                    ),
                                });
                                continue;
                            }
                        },
                    };
                    encoding.encode_line(&e, &mut entry.0);
                    entry.1.push(std::mem::take(e.finalizers_mut()));
                }
                if let Some(p) = &fixed
                    && !constant.1.is_empty()
                {
                    by_path.insert(p.clone(), constant);
                }
                cx.dead_letter.send(refused).await;
                for (path, (buf, events)) in by_path.drain() {
                    match write(&mut files, &path, &buf).await {
                        Ok(()) => out.sent(events.len(), buf.len()),
                        Err(e) => {
                            for ev in &events {
                                ev.update_status(EventStatus::Errored);
                            }
                            files.remove(&path);
                            cx.metrics.error("write_failed", "sending");
                            tracing::error!(component = %cx.id, path = %path, error = %e,
                                "cannot write; these events will be read again after a restart");
                        }
                    }
                }
                files.retain(|_, (_, last)| last.elapsed() < idle);
            }
            for (_, (mut f, _)) in files.drain() {
                let _ = f.flush().await;
            }
            Ok(())
        }))
    }
}

async fn write(
    files: &mut HashMap<String, (tokio::fs::File, Instant)>,
    path: &str,
    buf: &[u8],
) -> std::io::Result<()> {
    if !files.contains_key(path) {
        if let Some(parent) = std::path::Path::new(path).parent()
            && !parent.as_os_str().is_empty()
        {
            tokio::fs::create_dir_all(parent).await?;
        }
        let f = tokio::fs::OpenOptions::new().create(true).append(true).open(path).await?;
        files.insert(path.to_string(), (f, Instant::now()));
    }
    let Some((f, last)) = files.get_mut(path) else { return Ok(()) };
    f.write_all(buf).await?;
    f.flush().await?;
    *last = Instant::now();
    Ok(())
}
