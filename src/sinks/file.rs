//! `file` sink: appends events to files, one per line, the path templated per event.
//!
//! ```toml
//! [sinks.archive]
//! type = "file"
//! inputs = ["parsed"]
//! path = "/var/log/weir/{{ service.name }}-%Y-%m-%d.log"
//! encoding.codec = "json"
//! ```
//! Files are opened in append mode and written once per batch (batches already queued when one
//! arrives join its write, up to 256 KiB; handed to the system 64 KiB at a time,
//! [`crate::files`]); the events of a write are acknowledged once the system has taken it.
//! With the text codec and a constant path the sink takes a file source's reads as blocks of
//! lines ([`crate::event::LineBlock`]) and writes their buffers as they are (up to 512 KiB a
//! write), with no event per line, on a thread of its own. A file not written for
//! `idle_timeout_secs` is closed. An event whose path cannot be rendered (a field the
//! template names is missing) is rejected, counted, logged and sent to the dead-letter
//! destination, never silently dropped.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Deserialize;
use std::sync::Arc;

use super::util::encoding::{Codec, EncodingConfig};
use crate::config::ConfigIssue;
use crate::dead_letter::{Rejected, original_of};
use crate::event::{Event, EventFinalizers, EventStatus, batch_size};
use crate::files::write_all_in_pieces;
use crate::internal_events::RateLimit;
use crate::template::Template;
use crate::topology::channel::Batch;
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

    /// A constant path and the text codec: a block of lines is written as it was read.
    pub fn writes_lines_as_read(&self) -> bool {
        self.encoding.codec == Codec::Text
            && Template::parse(&self.path).is_ok_and(|t| t.is_static())
    }

    pub fn build(&self, mut cx: SinkContext) -> Result<Task, String> {
        let template = Template::parse(&self.path)?;
        let encoding = self.encoding;
        let idle = Duration::from_secs(self.idle_timeout_secs);
        // A path without fields or dates is the same for every event: rendered once.
        let fixed = template
            .is_static()
            .then(|| template.render(&Event::from_message(""), chrono::Utc::now()).ok())
            .flatten();
        // Blocks of lines reach the sink exactly when the topology asked for them.
        let raw = self.writes_lines_as_read() && fixed.is_some();
        let sink = async move {
            let out = cx.metrics.output("_default");
            let mut files: HashMap<String, (Arc<std::fs::File>, Instant)> = HashMap::new();
            let mut log_limit = RateLimit::default();
            // Encoded lines, the acknowledgement handles of their events and their number,
            // by file; an event itself is dropped once encoded.
            let mut by_path: HashMap<String, Lines> = HashMap::new();
            // Written buffers, kept for the next batches: a fresh buffer of megabytes would
            // be faulted in page by page on every write.
            let mut spare: Vec<Vec<u8>> = Vec::new();
            while let Some(first) = cx.input.recv_batch().await {
                let now = chrono::Utc::now();
                let mut refused = Vec::new();
                let mut constant =
                    Lines { bytes: spare.pop().unwrap_or_default(), ..Default::default() };
                // Batches already queued join this write, up to WRITE_BYTES: fewer, larger
                // writes when the source is ahead, no waiting when it is not.
                let mut next = Some(first);
                let mut encoded = 0;
                // Blocks are written from the queue's own buffers, so more of them join a
                // write: fewer hand-offs to the blocking pool for no copy.
                let write_bytes = if raw { RAW_WRITE_BYTES } else { WRITE_BYTES };
                while let Some(batch) = next.take() {
                    let events = match batch {
                        // A block of lines for a constant path is its own encoding: each
                        // line and its newline, as the text codec writes them.
                        Batch::Lines(block) if raw => {
                            // Written from the block itself, after what was encoded
                            // before it: no copy.
                            cx.metrics.received(block.len(), block.size());
                            if !constant.bytes.is_empty() {
                                let before = std::mem::take(&mut constant.bytes);
                                constant.written.push(Bytes::from(before));
                            }
                            constant.written.push(block.data().clone());
                            encoded += block.size();
                            constant.events += block.len();
                            constant.finalizers.absorb(block.into_finalizers());
                            Vec::new()
                        }
                        other => {
                            let events = other.into_events();
                            cx.metrics.received(events.len(), batch_size(&events));
                            events
                        }
                    };
                    for mut e in events {
                        // The constant path's lines gather outside the map (no hashing per event)
                        // and join it after the batch.
                        let entry = match &fixed {
                            Some(_) => &mut constant,
                            None => match template.render(&e, now) {
                                Ok(path) => by_path.entry(path).or_insert_with(|| Lines {
                                    bytes: spare.pop().unwrap_or_default(),
                                    ..Default::default()
                                }),
                                Err(missing) => {
                                    cx.metrics.error(
                                        crate::metrics::error_type::TEMPLATE_FAILED,
                                        crate::metrics::Stage::Processing,
                                    );
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
                        let before = entry.bytes.len();
                        encoding.encode_line(&e, &mut entry.bytes);
                        encoded += entry.bytes.len() - before;
                        entry.finalizers.absorb(std::mem::take(e.finalizers_mut()));
                        entry.events += 1;
                    }
                    if encoded < write_bytes {
                        next = cx.input.try_recv_batch();
                    }
                }
                if let Some(p) = &fixed
                    && constant.events > 0
                {
                    by_path.insert(p.clone(), constant);
                }
                cx.dead_letter.send(refused).await;
                for (path, lines) in by_path.drain() {
                    let bytes =
                        lines.bytes.len() + lines.written.iter().map(Bytes::len).sum::<usize>();
                    let events = lines.events;
                    match write(&mut files, &path, lines.written, lines.bytes, raw).await {
                        Ok(mut buf) => {
                            out.sent(events, bytes);
                            if spare.len() < SPARE_BUFFERS {
                                buf.clear();
                                spare.push(buf);
                            }
                        }
                        Err(e) => {
                            lines.finalizers.update_status(EventStatus::Errored);
                            files.remove(&path);
                            cx.metrics.error(
                                crate::metrics::error_type::WRITE_FAILED,
                                crate::metrics::Stage::Sending,
                            );
                            tracing::error!(component = %cx.id, path = %path, error = %e,
                                "cannot write; these events will be read again after a restart");
                        }
                    }
                }
                files.retain(|_, (_, last)| last.elapsed() < idle);
            }
            Ok(())
        };
        if !raw {
            return Ok(Box::pin(sink));
        }
        // Writing lines as read, the sink runs on a thread of its own so that its writes
        // overlap with the file source's reads instead of handing off to the blocking pool
        // for each one; encoding events, it gains nothing there and stays on the workers.
        let handle = tokio::runtime::Handle::current();
        Ok(Box::pin(async move {
            match tokio::task::spawn_blocking(move || handle.block_on(sink)).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(error = %e, "file sink thread failed");
                    Err(())
                }
            }
        }))
    }
}

/// Encoded bytes gathered from queued batches before they are written.
const WRITE_BYTES: usize = 256 * 1024;
/// The same for blocks of lines, which are written without being copied; larger gathers
/// were no faster and held more memory.
const RAW_WRITE_BYTES: usize = 512 * 1024;
/// Written buffers kept for reuse (one per file written in a batch, usually one).
const SPARE_BUFFERS: usize = 1;

/// What a batch gives one file: its encoded lines, the acknowledgement handles of their
/// events (released once written) and how many events they were.
#[derive(Default)]
struct Lines {
    /// Written first, in order: blocks of lines and what was encoded before each.
    written: Vec<Bytes>,
    bytes: Vec<u8>,
    finalizers: EventFinalizers,
    events: usize,
}

/// Appends `first`, then `buf`, to the file at `path`, opening it (and creating its folder)
/// first if need be. On the sink's own thread (`own_thread`) the write blocks there; on the
/// runtime's workers it runs on the blocking pool with the buffers moved there (tokio's own
/// file type would copy them again in parts of 2 MiB, one blocking task each).
async fn write(
    files: &mut HashMap<String, (Arc<std::fs::File>, Instant)>,
    path: &str,
    first: Vec<Bytes>,
    buf: Vec<u8>,
    own_thread: bool,
) -> std::io::Result<Vec<u8>> {
    if !files.contains_key(path) {
        if let Some(parent) = std::path::Path::new(path).parent()
            && !parent.as_os_str().is_empty()
        {
            tokio::fs::create_dir_all(parent).await?;
        }
        let f = tokio::fs::OpenOptions::new().create(true).append(true).open(path).await?;
        files.insert(path.to_string(), (Arc::new(f.into_std().await), Instant::now()));
    }
    let Some((f, last)) = files.get_mut(path) else { return Ok(buf) };
    let file = Arc::clone(f);
    let append = move || {
        for b in &first {
            write_all_in_pieces(&file, b)?;
        }
        write_all_in_pieces(&file, &buf).map(|()| buf)
    };
    let buf = if own_thread {
        append()?
    } else {
        tokio::task::spawn_blocking(append).await.map_err(std::io::Error::other)??
    };
    *last = Instant::now();
    Ok(buf)
}
