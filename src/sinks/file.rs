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
use crate::channel::Batch;
use crate::component::{SinkComponent, SinkContext};
use crate::dead_letter::{Rejected, original_of};
use crate::error::ConfigIssue;
use crate::error::{BuildError, ComponentError, Task};
use crate::event::{Event, EventFinalizers, EventStatus, batch_size};
use crate::files::write_all_in_pieces;
use crate::internal_events::RateLimit;
use crate::template::Template;

/// `[sinks.<id>] type = "file"`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSinkConfig {
    /// Path template: `{{ field }}` and strftime `%` sequences of the event time.
    pub path: String,
    /// How an event becomes a line. Default JSON.
    #[serde(default)]
    pub encoding: EncodingConfig,
    /// Close a file after this long without writes. Default 30.
    #[serde(default = "default_idle")]
    pub idle_timeout_secs: u64,
}

fn default_idle() -> u64 {
    30
}

impl SinkComponent for FileSinkConfig {
    type Checked = Template;

    fn check(&self) -> Result<Template, Vec<ConfigIssue>> {
        Template::parse(&self.path).map_err(|e| vec![ConfigIssue::field("path", e)])
    }

    fn build(&self, template: Template, cx: SinkContext) -> Result<Task, BuildError> {
        // A path without fields or dates is the same for every event: rendered once.
        let fixed = template
            .is_static()
            .then(|| template.render(&Event::from_message(""), chrono::Utc::now()).ok())
            .flatten();
        // Blocks of lines reach the sink exactly when the topology asked for them.
        let raw = self.writes_lines_as_read() && fixed.is_some();
        let sink = FileSink {
            template,
            fixed,
            encoding: self.encoding,
            idle: Duration::from_secs(self.idle_timeout_secs),
            raw,
            cx,
            files: HashMap::new(),
            by_path: HashMap::new(),
            log_limit: RateLimit::default(),
            spare: Vec::new(),
        };
        if !raw {
            return Ok(Box::pin(sink.run()));
        }
        // Writing lines as read, the sink runs on a thread of its own so that its writes
        // overlap with the file source's reads instead of handing off to the blocking pool
        // for each one; encoding events, it gains nothing there and stays on the workers.
        let handle = tokio::runtime::Handle::current();
        Ok(Box::pin(async move {
            match tokio::task::spawn_blocking(move || handle.block_on(sink.run())).await {
                Ok(r) => r,
                Err(e) => Err(ComponentError::Thread(e.to_string())),
            }
        }))
    }

    /// A constant path and the text codec: a block of lines is written as it was read.
    fn writes_lines_as_read(&self) -> bool {
        self.encoding.codec == Codec::Text
            && Template::parse(&self.path).is_ok_and(|t| t.is_static())
    }
}

/// The running sink.
struct FileSink {
    template: Template,
    /// The path, when it is the same for every event.
    fixed: Option<String>,
    encoding: EncodingConfig,
    idle: Duration,
    /// Blocks of lines are written as they are, on the sink's own thread.
    raw: bool,
    cx: SinkContext,
    /// Open files and when each was last written; closed after `idle`.
    files: HashMap<String, (Arc<std::fs::File>, Instant)>,
    /// Encoded lines, the acknowledgement handles of their events and their number, by
    /// file; an event itself is dropped once encoded.
    by_path: HashMap<String, Lines>,
    log_limit: RateLimit,
    /// Written buffers, kept for the next batches: a fresh buffer of megabytes would be
    /// faulted in page by page on every write.
    spare: Vec<Vec<u8>>,
}

impl FileSink {
    async fn run(mut self) -> Result<(), ComponentError> {
        let out = self.cx.metrics.output("_default");
        while let Some(first) = self.cx.input.recv_batch().await {
            let refused = self.gather(first);
            self.cx.dead_letter.send(refused).await;
            self.write_gathered(&out).await;
            let idle = self.idle;
            self.files.retain(|_, (_, last)| last.elapsed() < idle);
        }
        Ok(())
    }

    /// Encodes `first` and the batches already queued behind it, up to the write size, into
    /// `by_path`: fewer, larger writes when the source is ahead, no waiting when it is not.
    /// Returns the events whose path could not be rendered.
    fn gather(&mut self, first: Batch) -> Vec<Rejected> {
        let now = chrono::Utc::now();
        let mut refused = Vec::new();
        let mut constant =
            Lines { bytes: self.spare.pop().unwrap_or_default(), ..Default::default() };
        let mut next = Some(first);
        let mut encoded = 0;
        // Blocks are written from the queue's own buffers, so more of them join a write.
        let write_bytes = if self.raw { RAW_WRITE_BYTES } else { WRITE_BYTES };
        while let Some(batch) = next.take() {
            let events = match batch {
                // A block of lines for a constant path is its own encoding: each line and its
                // newline, as the text codec writes them; written from the block itself,
                // after what was encoded before it.
                Batch::Lines(block) if self.raw => {
                    self.cx.metrics.received(block.len(), block.size());
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
                    self.cx.metrics.received(events.len(), batch_size(&events));
                    events
                }
            };
            for e in events {
                encoded += self.encode(e, now, &mut constant, &mut refused);
            }
            if encoded < write_bytes {
                next = self.cx.input.try_recv_batch();
            }
        }
        if let Some(p) = &self.fixed
            && constant.events > 0
        {
            self.by_path.insert(p.clone(), constant);
        }
        refused
    }

    /// Encodes one event into the lines of its file (the constant path's gather outside the
    /// map, no hashing per event); returns the bytes added.
    fn encode(
        &mut self,
        mut e: Event,
        now: chrono::DateTime<chrono::Utc>,
        constant: &mut Lines,
        refused: &mut Vec<Rejected>,
    ) -> usize {
        let entry = match &self.fixed {
            Some(_) => constant,
            None => match self.template.render(&e, now) {
                Ok(path) => {
                    let spare = &mut self.spare;
                    self.by_path.entry(path).or_insert_with(|| Lines {
                        bytes: spare.pop().unwrap_or_default(),
                        ..Default::default()
                    })
                }
                Err(missing) => {
                    self.cx.metrics.error(
                        crate::metrics::error_type::TEMPLATE_FAILED,
                        crate::metrics::Stage::Processing,
                    );
                    if let Some(suppressed) = self.log_limit.allow() {
                        tracing::error!(component = %self.cx.id, field = %missing.0, suppressed,
                            "event lacks a field of the path template; event rejected and sent \
                             to the dead-letter destination");
                    }
                    refused.push(Rejected {
                        original: original_of(&e),
                        finalizers: std::mem::take(e.finalizers_mut()),
                        destination: None,
                        reason: "missing_field".into(),
                        detail: format!("the path template needs the field `{}`", missing.0),
                    });
                    return 0;
                }
            },
        };
        let before = entry.bytes.len();
        self.encoding.encode_line(&e, &mut entry.bytes);
        entry.finalizers.absorb(std::mem::take(e.finalizers_mut()));
        entry.events += 1;
        entry.bytes.len() - before
    }

    /// Writes what `gather` collected, file by file. A failed write marks its events errored
    /// (read again after a restart) and the sink goes on.
    async fn write_gathered(&mut self, out: &crate::metrics::OutputMetrics) {
        let gathered: Vec<(String, Lines)> = self.by_path.drain().collect();
        for (path, lines) in gathered {
            let bytes = lines.bytes.len() + lines.written.iter().map(Bytes::len).sum::<usize>();
            let events = lines.events;
            match write(&mut self.files, &path, lines.written, lines.bytes, self.raw).await {
                Ok(mut buf) => {
                    out.sent(events, bytes);
                    if self.spare.len() < SPARE_BUFFERS {
                        buf.clear();
                        self.spare.push(buf);
                    }
                }
                Err(e) => {
                    lines.finalizers.update_status(EventStatus::Errored);
                    self.files.remove(&path);
                    self.cx.metrics.error(
                        crate::metrics::error_type::WRITE_FAILED,
                        crate::metrics::Stage::Sending,
                    );
                    tracing::error!(component = %self.cx.id, path = %path, error = %e,
                        "cannot write; these events will be read again after a restart");
                }
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::{Expect, events, run_sink};
    use crate::event::BatchStatus;

    #[tokio::test]
    async fn writes_lines_and_keeps_the_sink_contract() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.log");
        let c = FileSinkConfig {
            path: path.display().to_string(),
            encoding: EncodingConfig::default(),
            idle_timeout_secs: 30,
        };
        let (input, acks) = events(&["one", "two", "three"]);
        let run = run_sink(&c, "file", input).await;
        let written = std::fs::read_to_string(&path).unwrap();
        assert_eq!(written.lines().count(), 3, "{written}");
        assert!(written.contains("\"message\":\"two\""), "{written}");
        let expect = Expect {
            received: 3,
            sent: 3,
            status: Some(BatchStatus::Delivered),
            ..Expect::default()
        };
        expect.check(run, Some(acks)).await;
    }

    #[tokio::test]
    async fn an_event_without_the_paths_field_is_a_dead_letter() {
        let dir = tempfile::tempdir().unwrap();
        let c = FileSinkConfig {
            path: format!("{}/{{{{ service }}}}.log", dir.path().display()),
            encoding: EncodingConfig::default(),
            idle_timeout_secs: 30,
        };
        let (input, acks) = events(&["no service field"]);
        let run = run_sink(&c, "file", input).await;
        assert_eq!(run.dead_letters.len(), 1);
        let expect = Expect {
            received: 1,
            sent: 0,
            errors: vec![("template_failed", crate::metrics::Stage::Processing, 1)],
            status: Some(BatchStatus::Rejected),
            ..Expect::default()
        };
        expect.check(run, Some(acks)).await;
    }
}
