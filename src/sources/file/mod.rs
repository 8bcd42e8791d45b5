//! `file`: tails files matched by globs, one event per line (or per multi-line message).
//!
//! Guarantees, and how they are kept:
//! - **Nothing lost or repeated across restarts.** Positions are checkpointed per file in
//!   `data_dir/<source id>/checkpoints.json`, and a position advances only when every event
//!   before it has been acknowledged ([`checkpoint`]). After a clean shutdown every read line
//!   is acknowledged, so a restart resumes exactly after the last line delivered.
//! - **Rotation.** A file is known by a checksum of its first line ([`fingerprint`]), not by
//!   its inode. Renamed away: the open handle is read to its end, then released after
//!   `rotate_wait_ms` without growth. `copytruncate`: when the file shrinks, weir looks for the
//!   copy (include the rotated name in `include`) and finishes reading it from the same
//!   position. Plain truncation: the file is read again from its start. Its identity (size,
//!   first line) is checked after every read, and a read that took a rewritten file's new
//!   bytes at the old position is dropped rather than sent.
//! - **Bounded memory.** At most `max_read_bytes` are read from a file per round and a line is
//!   never buffered beyond `max_line_bytes`; a read's events are built and sent in parts of
//!   at most 64 KiB (estimated), each waiting while the pipeline is full, so a slow sink slows
//!   reading rather than growing a queue, and a read of short lines never holds all of its
//!   events at once.
//! - **Nothing cut silently.** A line over `max_line_bytes` (with `oversize = "truncate"`,
//!   the default) keeps its first `max_line_bytes` bytes; its event carries `error.message`
//!   and `log.flags = ["truncated"]` (Filebeat's flag, to route on), and the cut is counted
//!   (`weir_component_errors_total{error_type="line_truncated"}`) and logged at a bounded
//!   rate. A multi-line message with a cut line, or with lines left out because the message
//!   reached `max_line_bytes`, is marked the same way.
//!
//! - **Raw shipping without events.** When every consumer writes lines as read (a file
//!   sink with the text codec and a constant path), a read's complete lines go on as one
//!   [`LineBlock`] instead of an event each; a read with a line that needs a change (empty,
//!   `\r\n`, over-long) is framed line by line.
//!
//! Reading runs on a blocking thread (file reads are blocking system calls); batches are
//! handed to the pipeline with `block_on`, which is where backpressure stops the thread.
//! Empty lines are skipped. A last line without its newline is read once the newline is
//! written (the writer may still be in the middle of it).

pub mod checkpoint;
pub mod fingerprint;

use std::collections::HashMap;
use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use serde::Deserialize;

use super::util::lines::{Line, LineFramer, Oversize};
use super::util::multiline::{Aggregator, Group, Multiline, MultilineConfig};
use super::util::{group_event, host_name, line_fields};
use crate::channel::Batch;
use crate::component::{ShutdownSignal, SourceComponent, SourceContext, SourceSender};
use crate::error::{BuildError, ComponentError, ConfigIssue, Task};
use crate::event::{BatchNotifier, Event, EventStatus, LineBlock, SharedFields};
use crate::internal_events::{LineTooLong, RateLimit};
use crate::metrics::ComponentMetrics;
use checkpoint::Checkpointer;
use fingerprint::Fingerprint;

/// Where to start a file that has no checkpoint and is found at start-up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReadFrom {
    #[default]
    Beginning,
    End,
}

/// `[sources.<id>] type = "file"`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Glob patterns of files to read.
    pub include: Vec<String>,
    /// Glob patterns of files to leave alone.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// For files found at start-up without a checkpoint: `beginning` (default) or `end`.
    /// Files that appear later are always read from their beginning.
    #[serde(default)]
    pub read_from: ReadFrom,
    /// How often the globs are evaluated again. Default 1000.
    #[serde(default = "default_glob_interval_ms")]
    pub glob_interval_ms: u64,
    /// Pause when no file has new data. Default 100.
    #[serde(default = "default_poll_interval_ms")]
    pub poll_interval_ms: u64,
    /// Longest line kept whole. Default 100 KiB.
    #[serde(default = "super::stdin::default_max_line_bytes")]
    pub max_line_bytes: usize,
    /// `truncate` (default) or `drop` lines over `max_line_bytes`.
    #[serde(default)]
    pub oversize: Oversize,
    #[serde(default)]
    pub multiline: Option<MultilineConfig>,
    /// Bytes of the first line used to identify a file. Default 256.
    #[serde(default = "default_fingerprint_bytes")]
    pub fingerprint_bytes: usize,
    /// Files not modified for this long when found are skipped.
    #[serde(default)]
    pub ignore_older_secs: Option<u64>,
    /// How long a file that left `include` (renamed away, deleted) is still read after it
    /// stops growing. Default 5000.
    #[serde(default = "default_rotate_wait_ms")]
    pub rotate_wait_ms: u64,
    /// Most bytes read from one file at a time, before the next file gets a turn (which keeps
    /// one busy file from starving the others). Default 128 KiB.
    #[serde(default = "default_max_read_bytes")]
    pub max_read_bytes: usize,
    /// How often checkpoints are written. Default 1000.
    #[serde(default = "default_checkpoint_interval_ms")]
    pub checkpoint_interval_ms: u64,
}

fn default_glob_interval_ms() -> u64 {
    1000
}
fn default_poll_interval_ms() -> u64 {
    100
}
fn default_fingerprint_bytes() -> usize {
    256
}
fn default_rotate_wait_ms() -> u64 {
    5000
}
fn default_max_read_bytes() -> usize {
    128 * 1024
}
fn default_checkpoint_interval_ms() -> u64 {
    1000
}

/// A file source's config, checked: its compiled patterns.
pub struct Checked {
    /// `exclude`, compiled. (`include` is walked by `glob::glob`, which takes the pattern as
    /// text; `check` has made sure each one compiles.)
    exclude: Vec<glob::Pattern>,
    multiline: Option<Multiline>,
}

impl SourceComponent for FileConfig {
    type Checked = Checked;

    fn check(&self) -> Result<Checked, Vec<ConfigIssue>> {
        let mut issues = Vec::new();
        if self.include.is_empty() {
            issues.push(ConfigIssue::field("include", "give at least one glob pattern"));
        }
        let mut compile = |key: &str, p: &String| {
            glob::Pattern::new(p)
                .map_err(|e| {
                    issues.push(ConfigIssue::field(key, format!("invalid glob pattern `{p}`: {e}")))
                })
                .ok()
        };
        self.include.iter().for_each(|p| drop(compile("include", p)));
        let exclude: Vec<_> = self.exclude.iter().filter_map(|p| compile("exclude", p)).collect();
        if self.max_line_bytes == 0 {
            issues.push(ConfigIssue::field("max_line_bytes", "must be at least 1"));
        }
        if self.fingerprint_bytes < 16 {
            issues.push(ConfigIssue::field("fingerprint_bytes", "must be at least 16"));
        }
        if self.max_read_bytes < 4096 {
            issues.push(ConfigIssue::field("max_read_bytes", "must be at least 4096"));
        }
        let multiline = match self.multiline.as_ref().map(MultilineConfig::check).transpose() {
            Ok(m) => m,
            Err(more) => {
                issues.extend(more);
                None
            }
        };
        if !issues.is_empty() {
            return Err(issues);
        }
        Ok(Checked { exclude, multiline })
    }

    fn build(&self, checked: Checked, cx: SourceContext) -> Result<Task, BuildError> {
        run_reader(self.clone(), checked, None, cx)
    }

    /// Checkpoints advance only over acknowledged lines.
    fn acknowledges(&self) -> bool {
        true
    }
}

/// How a source built on the file reader turns a file's lines into events (the
/// `kubernetes_logs` source: container runtime log formats, fields from the path).
pub trait FileFormat: Send + Sync {
    /// The decoder of the file at `path` and the fields its events share. Called when a file
    /// is opened and when its path changes.
    fn open(&self, path: &str) -> (Box<dyn LineDecoder>, Arc<SharedFields>);
}

/// Turns one file's framed lines into events, holding lines that continue in the next ones.
pub trait LineDecoder: Send {
    /// Feeds one line; finished events go to `out`, each with where a restart resumes once
    /// it and every event before it are delivered (non-decreasing).
    fn push(&mut self, line: Line, fields: &Arc<SharedFields>, out: &mut Vec<(u64, Event)>);
    /// The start of the first line held back, if any (where a restart must resume).
    fn pending_start(&self) -> Option<u64>;
    /// Emits what is held (the file, read up to `position`, is released or was truncated).
    fn flush(&mut self, position: u64, fields: &Arc<SharedFields>, out: &mut Vec<(u64, Event)>);
}

/// Starts the reader of a file source; with a `format`, its lines are decoded by it (and
/// `multiline` is not used).
pub fn run_reader(
    config: FileConfig,
    checked: Checked,
    format: Option<Arc<dyn FileFormat>>,
    cx: SourceContext,
) -> Result<Task, BuildError> {
    let dir = cx.data_dir.join(&cx.id);
    let checkpoints = Checkpointer::load(&dir)?;
    let reader = Reader {
        format,
        config: config.clone(),
        exclude: checked.exclude,
        multiline: checked.multiline,
        checkpoints,
        watchers: Vec::new(),
        too_long: LineTooLong::new(&cx.metrics, config.oversize == Oversize::Truncate),
        read_error_log: RateLimit::default(),
        health: crate::health::global().handle(&cx.metrics.labels),
        unreadable: (0, None),
        metrics: cx.metrics,
        lines_only: cx.out.accepts_lines(),
        out: Some(cx.out),
        shutdown: cx.shutdown,
        id: cx.id,
        host: host_name(),
        handle: tokio::runtime::Handle::current(),
        first_scan: true,
        last_scan: None,
    };
    Ok(Box::pin(async move {
        match tokio::task::spawn_blocking(move || reader.run()).await {
            Ok(r) => r,
            Err(e) => Err(ComponentError::Thread(e.to_string())),
        }
    }))
}

/// Most estimated bytes of events sent downstream at once (see `send_groups`), when a
/// consumer builds on the events. A line's estimate is its bytes; parsed, its fields take
/// several times that by the next hop, and every hop holds a whole part (a channel admits a
/// part larger than its room when it is empty), so parts are kept small.
const SEND_BYTES: usize = 64 * 1024;

/// The same when every consumer writes lines as read: their events are not built on, so
/// larger parts cost no more memory downstream, and they are rare (the read's block goes
/// whole; only lines that need a change are sent as events). Much larger parts make their
/// event vectors large allocations, which the allocator keeps long after they are freed.
const SEND_BYTES_AS_READ: usize = 256 * 1024;

/// One open file.
struct Watcher {
    fp: Fingerprint,
    epoch: u64,
    file: File,
    dev: u64,
    ino: u64,
    path: String,
    /// `host.name` and `log.file.path`, shared by the file's events.
    fields: Arc<SharedFields>,
    framer: LineFramer,
    agg: Option<Aggregator<(u64, u64)>>,
    /// The source's decoder of this file's lines (see [`FileFormat`]), used instead of `agg`.
    decoder: Option<Box<dyn LineDecoder>>,
    /// Still matched by `include` at the last scan.
    in_scan: bool,
    /// Last time data was read (for releasing rotated files).
    last_growth: Instant,
}

impl Watcher {
    /// Position of the file cursor.
    fn position(&self) -> u64 {
        self.framer.consumed_offset() + self.framer.pending_bytes() as u64
    }

    /// Where a restart must resume: before any line held by the multi-line aggregator.
    fn safe_offset(&self) -> u64 {
        let held = match &self.decoder {
            Some(d) => d.pending_start(),
            None => self.agg.as_ref().and_then(Aggregator::pending_first).map(|(start, _)| start),
        };
        held.unwrap_or_else(|| self.framer.consumed_offset())
    }
}

struct Reader {
    /// How lines become events, when a source other than `file` runs this reader.
    format: Option<Arc<dyn FileFormat>>,
    config: FileConfig,
    exclude: Vec<glob::Pattern>,
    multiline: Option<Multiline>,
    checkpoints: Checkpointer,
    watchers: Vec<Watcher>,
    too_long: LineTooLong,
    read_error_log: RateLimit,
    /// `/health`: the source is unhealthy while files it found cannot be read.
    health: crate::health::Handle<'static>,
    /// Files that could not be opened or read since the last scan began, and the first one's
    /// error.
    unreadable: (usize, Option<String>),
    metrics: ComponentMetrics,
    /// Every consumer writes lines as read: reads go on as blocks of lines.
    lines_only: bool,
    out: Option<SourceSender>,
    shutdown: ShutdownSignal,
    id: String,
    host: Bytes,
    handle: tokio::runtime::Handle,
    first_scan: bool,
    last_scan: Option<Instant>,
}

/// A path found by a scan.
struct Found {
    path: PathBuf,
    dev: u64,
    ino: u64,
    size: u64,
    modified: Option<SystemTime>,
}

enum ReadOutcome {
    Data,
    Idle,
    /// The file shrank or its content was replaced.
    Truncated,
    /// Reading failed; the watcher is dropped and found again by the next scan.
    Failed,
    /// No consumer is left downstream: the source stops.
    Closed,
}

impl Reader {
    fn run(mut self) -> Result<(), ComponentError> {
        let glob_interval = Duration::from_millis(self.config.glob_interval_ms);
        let checkpoint_interval = Duration::from_millis(self.config.checkpoint_interval_ms);
        let poll = Duration::from_millis(self.config.poll_interval_ms.max(1));
        let mut last_checkpoint = Instant::now();
        let mut open = true;
        while open && !self.shutdown.is_cancelled() {
            if self.last_scan.is_none_or(|t| t.elapsed() >= glob_interval) {
                self.scan();
            }
            let mut progress = false;
            let mut i = 0;
            while i < self.watchers.len() && open {
                match self.read_one(i) {
                    ReadOutcome::Data => progress = true,
                    ReadOutcome::Idle => {}
                    ReadOutcome::Truncated => {
                        self.on_truncated(i);
                        progress = true;
                    }
                    ReadOutcome::Failed => {
                        let w = self.watchers.remove(i);
                        self.checkpoints.release(&w.fp);
                        continue;
                    }
                    ReadOutcome::Closed => open = false,
                }
                i += 1;
            }
            if !open {
                break;
            }
            if !self.flush_expired() || !self.release_rotated() {
                break;
            }
            if last_checkpoint.elapsed() >= checkpoint_interval {
                self.write_checkpoints();
                last_checkpoint = Instant::now();
            }
            if !progress {
                let shutdown = self.shutdown.clone();
                self.handle.block_on(async {
                    tokio::select! {
                        _ = shutdown.cancelled() => {}
                        _ = tokio::time::sleep(poll) => {}
                    }
                });
            }
        }
        // Lines held by a multi-line aggregator are not flushed: their position is not
        // checkpointed, so the next run reads the whole message again.
        drop(self.out.take());
        self.wait_for_acknowledgements();
        self.write_checkpoints();
        Ok(())
    }

    fn wait_for_acknowledgements(&self) {
        let deadline = self
            .shutdown
            .deadline()
            .map(|d| d.checked_sub(Duration::from_millis(500)).unwrap_or(d))
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(30));
        while self.checkpoints.unacknowledged() > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let left = self.checkpoints.unacknowledged();
        if left > 0 {
            tracing::warn!(
                component = %self.id,
                batches = left,
                "stopping before every event was acknowledged; those lines will be read again"
            );
        }
    }

    fn write_checkpoints(&self) {
        if let Err(e) = self.checkpoints.write() {
            self.metrics.error(
                crate::metrics::error_type::CHECKPOINT_WRITE_FAILED,
                crate::metrics::Stage::Processing,
            );
            tracing::error!(component = %self.id, error = %e, "cannot write checkpoints; will retry");
        }
    }

    /// Evaluates the globs: new files get a watcher, known ones are matched by inode.
    fn scan(&mut self) {
        self.last_scan = Some(Instant::now());
        let was_unreadable = self.unreadable.0 > 0;
        self.unreadable = (0, None);
        let found = self.glob();
        for w in &mut self.watchers {
            w.in_scan = false;
        }
        let cutoff =
            self.config.ignore_older_secs.map(|s| SystemTime::now() - Duration::from_secs(s));
        for f in found {
            let path = f.path.to_string_lossy().into_owned();
            if let Some(w) = self.watchers.iter_mut().find(|w| w.dev == f.dev && w.ino == f.ino) {
                w.in_scan = true;
                if w.path != path {
                    tracing::info!(component = %self.id, from = %w.path, to = %path, "file renamed; following it");
                    w.path = path.clone();
                    w.fields = fields_of(self.format.as_deref(), &self.host, &path);
                    self.checkpoints.rename(&w.fp, &path);
                }
                continue;
            }
            if self.first_scan
                && let (Some(cutoff), Some(m)) = (cutoff, f.modified)
                && m < cutoff
            {
                continue;
            }
            let file = match File::open(&f.path) {
                Ok(file) => file,
                Err(e) => {
                    self.read_failed(&path, &e);
                    continue;
                }
            };
            let fp = match Fingerprint::of(&file, self.config.fingerprint_bytes) {
                Ok(Some(fp)) => fp,
                Ok(None) => continue,
                Err(e) => {
                    self.read_failed(&path, &e);
                    continue;
                }
            };
            if self.watchers.iter().any(|w| w.fp == fp) {
                // A copy of a file being read (copytruncate); used if the original shrinks.
                continue;
            }
            let offset = match self.checkpoints.saved(&fp) {
                Some(o) if o <= f.size => o,
                Some(o) => {
                    tracing::warn!(component = %self.id, path = %path, checkpoint = o, size = f.size,
                        "file is shorter than its checkpoint; reading it from the start");
                    0
                }
                None if self.first_scan && self.config.read_from == ReadFrom::End => f.size,
                None => 0,
            };
            if let Some(w) = self.open_watcher(file, &f, path, fp, offset) {
                self.watchers.push(w);
            }
        }
        self.first_scan = false;
        if was_unreadable && self.unreadable.0 == 0 {
            self.health.healthy();
        }
    }

    fn open_watcher(
        &mut self,
        mut file: File,
        f: &Found,
        path: String,
        fp: Fingerprint,
        offset: u64,
    ) -> Option<Watcher> {
        if let Err(e) = file.seek(SeekFrom::Start(offset)) {
            self.read_failed(&path, &e);
            return None;
        }
        tracing::info!(component = %self.id, path = %path, offset, "reading file");
        let epoch = self.checkpoints.open(&fp, &path, offset);
        let (decoder, fields) = match &self.format {
            Some(format) => {
                let (decoder, fields) = format.open(&path);
                (Some(decoder), fields)
            }
            None => (None, line_fields(&self.host, Some(&path))),
        };
        let agg = match decoder {
            Some(_) => None,
            None => self.multiline.as_ref().map(|m| m.aggregator(self.config.max_line_bytes)),
        };
        Some(Watcher {
            fp,
            epoch,
            file,
            dev: f.dev,
            ino: f.ino,
            fields,
            decoder,
            path,
            framer: LineFramer::new(offset, self.config.max_line_bytes, self.config.oversize),
            agg,
            in_scan: true,
            last_growth: Instant::now(),
        })
    }

    fn glob(&self) -> Vec<Found> {
        let mut found: HashMap<PathBuf, Found> = HashMap::new();
        for pattern in &self.config.include {
            let Ok(paths) = glob::glob(pattern) else { continue };
            for path in paths.flatten() {
                if self.exclude.iter().any(|e| e.matches_path(&path)) || found.contains_key(&path) {
                    continue;
                }
                let Ok(meta) = std::fs::metadata(&path) else { continue };
                if !meta.is_file() {
                    continue;
                }
                found.insert(
                    path.clone(),
                    Found {
                        path,
                        dev: meta.dev(),
                        ino: meta.ino(),
                        size: meta.len(),
                        modified: meta.modified().ok(),
                    },
                );
            }
        }
        let mut v: Vec<Found> = found.into_values().collect();
        v.sort_by(|a, b| a.path.cmp(&b.path));
        v
    }

    fn read_failed(&mut self, path: &str, e: &std::io::Error) {
        if e.kind() == std::io::ErrorKind::NotFound {
            return;
        }
        self.metrics
            .error(crate::metrics::error_type::READ_FAILED, crate::metrics::Stage::Receiving);
        let (count, first) = &mut self.unreadable;
        *count += 1;
        let first = first.get_or_insert_with(|| format!("{path}: {e}"));
        self.health.unhealthy(format!("cannot read {count} file(s); first: {first}"));
        if let Some(suppressed) = self.read_error_log.allow() {
            tracing::warn!(component = %self.id, path, error = %e, suppressed, "cannot read file");
        }
    }

    /// Reads one round from watcher `i` and sends what it yields.
    fn read_one(&mut self, i: usize) -> ReadOutcome {
        let max_read = self.config.max_read_bytes;
        let w = &mut self.watchers[i];
        let n = match w.framer.read_from(&mut w.file, max_read) {
            Ok(n) => n,
            Err(e) => {
                let path = w.path.clone();
                self.read_failed(&path, &e);
                return ReadOutcome::Failed;
            }
        };
        // A file truncated and written again past our position would be read from the middle
        // of its new content: its identity (size, first line) is checked after every read
        // (two system calls per read of up to `max_read_bytes`). After, not before: a check
        // before the read cannot see a truncation and rewrite that lands between the two, and
        // then the new content read at the old position arrives twice (once from there, once
        // when the next check sends the file back to its start).
        let replaced = self.replaced(i);
        if n == 0 {
            return if replaced { ReadOutcome::Truncated } else { ReadOutcome::Idle };
        }
        let w = &mut self.watchers[i];
        if replaced {
            // What was read is either the old file's last bytes (the truncation came after
            // the read: they are sent) or the new file's bytes at the old position (it came
            // before: they are dropped, as the file is read again from its start).
            let at = w.position() - n as u64;
            if read_from_new_content(&w.file, at, w.framer.last_read(n)) {
                w.framer.unread(n);
                return ReadOutcome::Truncated;
            }
        }
        w.last_growth = Instant::now();
        // Raw shipping: when every consumer writes lines as read and nothing joins lines,
        // the read's complete lines go on as one block (events are built only by a consumer
        // that needs them). Lines that need a change (empty, `\r`, over-long) are framed
        // one by one below, as is a rest over the limit.
        let block = if self.lines_only && w.agg.is_none() && w.decoder.is_none() {
            w.framer.take_block()
        } else {
            None
        };
        let mut lines = Vec::new();
        let over = w.framer.drain_lines(&mut lines);
        // A block's position is where the lines framed after it start.
        let block_end = lines.first().map_or_else(|| w.safe_offset(), |l| l.start);
        let instant = Instant::now();
        let mut groups = Vec::with_capacity(lines.len());
        let mut decoded = Vec::new();
        if let Some(d) = w.decoder.as_mut() {
            for l in lines.drain(..) {
                d.push(l, &w.fields, &mut decoded);
            }
        }
        match w.agg.as_mut() {
            Some(a) => {
                for l in lines {
                    a.push_marked(l.bytes, l.truncated, (l.start, l.end), instant, &mut groups);
                }
            }
            None => groups.extend(
                lines.into_iter().map(|l| Group::line(l.bytes, (l.start, l.end), l.truncated)),
            ),
        }
        let action = if self.config.oversize == Oversize::Truncate { "cut" } else { "dropped" };
        for _ in 0..over.truncated + over.dropped {
            self.too_long.emit(&self.watchers[i].path, self.config.max_line_bytes, action);
        }
        self.metrics.received(0, n);
        if let Some((data, count)) = block
            && !self.send_block(i, data, count, block_end)
        {
            return ReadOutcome::Closed;
        }
        if !self.send_groups(i, groups) || !self.send_events(i, decoded) {
            return ReadOutcome::Closed;
        }
        if replaced { ReadOutcome::Truncated } else { ReadOutcome::Data }
    }

    /// Has the file of watcher `i` shrunk below our position, or been replaced by a file with
    /// another first line?
    fn replaced(&self, i: usize) -> bool {
        let fingerprint_bytes = self.config.fingerprint_bytes;
        let w = &self.watchers[i];
        if w.file.metadata().is_ok_and(|m| m.len() < w.position()) {
            return true;
        }
        matches!(Fingerprint::of(&w.file, fingerprint_bytes), Ok(Some(fp)) if fp != w.fp)
    }

    /// The file of watcher `i` shrank: finish the rotated copy if there is one, else start over.
    fn on_truncated(&mut self, i: usize) {
        // Lines already read are complete lines of the old content: flush them.
        let mut groups = Vec::new();
        if let Some(a) = self.watchers[i].agg.as_mut() {
            a.flush(&mut groups);
        }
        if !groups.is_empty() && !self.send_groups(i, groups) {
            return;
        }
        if !self.flush_decoder(i) {
            return;
        }
        let fp = self.watchers[i].fp.clone();
        let (dev, ino) = (self.watchers[i].dev, self.watchers[i].ino);
        let copy = self.glob().into_iter().find(|f| {
            (f.dev, f.ino) != (dev, ino)
                && File::open(&f.path)
                    .ok()
                    .and_then(|file| {
                        Fingerprint::of(&file, self.config.fingerprint_bytes).ok().flatten()
                    })
                    .is_some_and(|c| c == fp)
        });
        let w = &mut self.watchers[i];
        if let Some(copy) = copy
            && let Ok(mut file) = File::open(&copy.path)
            && file.seek(SeekFrom::Start(w.position())).is_ok()
        {
            let path = copy.path.to_string_lossy().into_owned();
            tracing::info!(component = %self.id, from = %w.path, to = %path, offset = w.position(),
                "file truncated after being copied (copytruncate); finishing the copy");
            w.file = file;
            w.dev = copy.dev;
            w.ino = copy.ino;
            w.fields = fields_of(self.format.as_deref(), &self.host, &path);
            w.path = path.clone();
            w.last_growth = Instant::now();
            self.checkpoints.rename(&fp, &path);
            return;
        }
        tracing::warn!(component = %self.id, path = %w.path, offset = w.position(),
            "file truncated; reading it again from the start (if it was rotated with \
             copytruncate, add the rotated name to `include` so the copy is finished)");
        let w = self.watchers.remove(i);
        self.checkpoints.forget(&w.fp);
        // The next scan finds the file again as new and reads it from its start.
        self.last_scan = None;
    }

    /// Turns groups into events and sends them, each part with a notifier for its end.
    /// Events are built and sent in parts of at most [`SEND_BYTES`] (estimated; or
    /// [`SEND_BYTES_AS_READ`] when every consumer writes lines as read), so that a
    /// read of many short lines does not hold all of its events at once while the part
    /// before waits for room downstream. A part's position is where the next part starts
    /// (the last part's, the watcher's safe offset), so a stop between parts repeats nothing.
    /// Returns `false` when the source must stop.
    fn send_groups(&mut self, i: usize, groups: Vec<Group<(u64, u64)>>) -> bool {
        let fields = Arc::clone(&self.watchers[i].fields);
        let now = chrono::Utc::now();
        let max_line_bytes = self.config.max_line_bytes;
        let safe = self.watchers[i].safe_offset();
        let mut groups = groups.into_iter().filter(|g| !g.bytes.is_empty()).peekable();
        // A group's resume point is where the next one starts (the last's, the safe offset).
        let events = std::iter::from_fn(move || {
            let g = groups.next()?;
            let resume = groups.peek().map_or(safe, |next| next.first.0);
            Some((resume, group_event(g, now, &fields, max_line_bytes)))
        });
        self.send_events(i, events)
    }

    /// Sends events, each with where a restart resumes once it is delivered, in parts as
    /// [`Reader::send_groups`] says. Returns `false` when the source must stop.
    fn send_events(&mut self, i: usize, events: impl IntoIterator<Item = (u64, Event)>) -> bool {
        let mut events = events.into_iter().peekable();
        let part_bytes = if self.lines_only { SEND_BYTES_AS_READ } else { SEND_BYTES };
        while events.peek().is_some() {
            let mut part: Vec<Event> = Vec::new();
            let (mut bytes, mut end) = (0, 0);
            for (resume, e) in events.by_ref() {
                bytes += e.size();
                end = resume;
                part.push(e);
                if bytes >= part_bytes {
                    break;
                }
            }
            let w = &self.watchers[i];
            let notifier = self.checkpoints.batch(&w.fp, w.epoch, end);
            for e in &mut part {
                e.finalizers_mut().add(&notifier);
            }
            if !self.send(Batch::Events(part), &notifier) {
                return false;
            }
        }
        true
    }

    /// Sends what the decoder of watcher `i` holds. Returns `false` when the source must stop.
    fn flush_decoder(&mut self, i: usize) -> bool {
        let w = &mut self.watchers[i];
        let mut out = Vec::new();
        let position = w.framer.consumed_offset();
        if let Some(d) = w.decoder.as_mut() {
            d.flush(position, &w.fields, &mut out);
        }
        out.is_empty() || self.send_events(i, out)
    }

    /// Sends the lines of a read as one block, acknowledged up to `end`. Returns `false`
    /// when the source must stop.
    fn send_block(&mut self, i: usize, data: Bytes, count: usize, end: u64) -> bool {
        let w = &self.watchers[i];
        let notifier = self.checkpoints.batch(&w.fp, w.epoch, end);
        let block =
            LineBlock::new(data, count, chrono::Utc::now(), Arc::clone(&w.fields), &notifier);
        self.send(Batch::Lines(block), &notifier)
    }

    /// Sends one part of a read downstream. Returns `false` when the source must stop.
    fn send(&mut self, batch: Batch, notifier: &BatchNotifier) -> bool {
        self.metrics.received(batch.len(), 0);
        let Some(out) = self.out.as_mut() else { return false };
        let shutdown = self.shutdown.clone();
        let sent = self.handle.block_on(async {
            tokio::select! {
                biased;
                ok = out.send_batch(batch) => Some(ok),
                _ = shutdown.cancelled() => None,
            }
        });
        match sent {
            Some(true) => true,
            Some(false) => {
                tracing::error!(component = %self.id, "no downstream component is running; stopping");
                false
            }
            None => {
                // Interrupted while waiting for room: this part never left (nor did the rest
                // of the read); the file's position stays at the part's start.
                notifier.update_status(EventStatus::Errored);
                false
            }
        }
    }

    fn flush_expired(&mut self) -> bool {
        let now = Instant::now();
        for i in 0..self.watchers.len() {
            let mut groups = Vec::new();
            if let Some(a) = self.watchers[i].agg.as_mut() {
                a.flush_expired(now, &mut groups);
            }
            if !groups.is_empty() && !self.send_groups(i, groups) {
                return false;
            }
        }
        true
    }

    /// Releases files that left `include` and have not grown for `rotate_wait_ms`.
    fn release_rotated(&mut self) -> bool {
        let wait = Duration::from_millis(self.config.rotate_wait_ms);
        let mut i = 0;
        while i < self.watchers.len() {
            let w = &self.watchers[i];
            let at_end = w.file.metadata().map(|m| m.len() <= w.position()).unwrap_or(true);
            if !w.in_scan && at_end && w.last_growth.elapsed() >= wait {
                let mut groups = Vec::new();
                if let Some(a) = self.watchers[i].agg.as_mut() {
                    a.flush(&mut groups);
                }
                if !groups.is_empty() && !self.send_groups(i, groups) {
                    return false;
                }
                if !self.flush_decoder(i) {
                    return false;
                }
                let w = self.watchers.remove(i);
                tracing::info!(component = %self.id, path = %w.path, "finished reading rotated or deleted file");
                self.checkpoints.release(&w.fp);
                continue;
            }
            i += 1;
        }
        true
    }
}

/// The shared fields of the file at `path` (when it is renamed).
fn fields_of(format: Option<&dyn FileFormat>, host: &Bytes, path: &str) -> Arc<SharedFields> {
    match format {
        Some(format) => format.open(path).1,
        None => line_fields(host, Some(path)),
    }
}

/// Whether `read`, read at `at` from a file found replaced just after the read, came from the
/// new content: the file holds the same bytes there now. The old content at the same
/// position differs (unless the new file repeats it byte for byte, when reading the new
/// file from its start repeats nothing that was not written twice), or is gone.
fn read_from_new_content(file: &File, at: u64, read: &[u8]) -> bool {
    use std::os::unix::fs::FileExt;
    let mut now = vec![0u8; read.len()];
    file.read_exact_at(&mut now, at).is_ok_and(|()| now == read)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::OpenOptions;
    use std::io::Write;

    fn file_with(dir: &tempfile::TempDir, content: &[u8]) -> File {
        let path = dir.path().join("f.log");
        std::fs::write(&path, content).unwrap();
        File::open(&path).unwrap()
    }

    #[test]
    fn a_read_is_from_the_new_content_when_the_file_holds_it_now() {
        let dir = tempfile::tempdir().unwrap();
        let file = file_with(&dir, b"new first line\nnew second line\n");
        assert!(read_from_new_content(&file, 15, b"new second line\n"));
        assert!(read_from_new_content(&file, 15, b"new"));
    }

    #[test]
    fn a_read_is_from_the_old_content_when_the_file_differs_or_ends_before() {
        let dir = tempfile::tempdir().unwrap();
        let file = file_with(&dir, b"new first line\nnew second line\n");
        assert!(!read_from_new_content(&file, 15, b"old second line\n"));
        // Truncated after the read and not yet written as far: the read was the old tail.
        assert!(!read_from_new_content(&file, 20, b"second line\nthird line\n"));
        let mut w = OpenOptions::new().write(true).open(dir.path().join("f.log")).unwrap();
        w.set_len(0).unwrap();
        w.flush().unwrap();
        assert!(!read_from_new_content(&file, 15, b"new second line\n"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn keeps_the_source_contract_and_checkpoints_what_was_acknowledged() {
        use crate::contract::{Expect, run_source};
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("app.log");
        std::fs::write(&log, "first line of the file\nsecond\nthird\n").unwrap();
        let c: FileConfig =
            toml_edit::de::from_str(&format!("include = [\"{}\"]", log.display())).unwrap();
        assert!(c.acknowledges());
        let data = dir.path().join("data");
        let run = run_source(&c, "file", &data, 3).await;
        let messages: Vec<_> = run
            .out
            .iter()
            .map(|e| serde_json::to_value(e.view()).unwrap()["message"].clone())
            .collect();
        assert_eq!(messages, ["first line of the file", "second", "third"]);
        assert!(
            run.out.iter().all(|e| !e.metadata().finalizers().is_empty()),
            "each event is acknowledged"
        );
        let id = run.metrics.id().to_string();
        Expect { received: 3, sent: 3, ..Expect::default() }.check(run, None).await;
        // The events were dropped (delivered) by `check`: the checkpoint is past all of them.
        let saved = std::fs::read_to_string(data.join(id).join("checkpoints.json")).unwrap();
        assert!(saved.contains("\"offset\": 36"), "{saved}");
    }
}
