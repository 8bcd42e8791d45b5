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
//! - **Thousands of files at a small, flat cost.** A file is read only when the kernel says
//!   it was written to ([`watch`]: inotify; polling where events are not available), and the
//!   globs are walked again only when a file is created, removed or renamed. One read buffer
//!   serves every file. A file idle for `close_inactive_secs` is closed, keeping its
//!   position (a few hundred bytes of state), and opened again when it grows, after checking
//!   that its path still holds the same file (inode, first line, not shorter). At most
//!   `max_open_files` are open: when more have data, idle ones close first and busy ones
//!   take turns of a second, the longest waiting first, so none is starved. Checkpoints of
//!   files that are gone are forgotten after `forget_after_secs`.
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
pub mod watch;

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::{Bytes, BytesMut};
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
use crate::metrics::Stage;
use crate::metrics::error_type::{CHECKPOINT_WRITE_FAILED, READ_FAILED};
use checkpoint::Checkpointer;
use fingerprint::Fingerprint;
use prometheus_client::metrics::counter::Counter;

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
    /// Join the lines of one message (a traceback, a stack trace) into one event; none by
    /// default (each line is an event).
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
    /// A file read to its end that has not grown for this long is closed; its position is
    /// kept, and it is opened again (and checked to be the same file) when it grows.
    /// Filebeat's `close_inactive`. Default 300.
    #[serde(default = "default_close_inactive_secs")]
    pub close_inactive_secs: u64,
    /// Most files held open at once. Past it, idle files are closed first; files with data
    /// take turns (the longest waiting first), so every file is read. Files renamed away or
    /// deleted while being read stay open until finished. Default 1024.
    #[serde(default = "default_max_open_files")]
    pub max_open_files: usize,
    /// How long the checkpoint of a file that is gone (deleted, or renamed out of `include`)
    /// is kept, in case it comes back. Default 604800 (7 days).
    #[serde(default = "default_forget_after_secs")]
    pub forget_after_secs: u64,
    /// Learn of writes and new files from the kernel (inotify), walking the globs again only
    /// when a file is created, removed or renamed (and once a minute as a safeguard). With
    /// `false`, or where no watch can be set, every open file is polled each
    /// `poll_interval_ms` and the globs walked each `glob_interval_ms`. Default true.
    #[serde(default = "default_inotify")]
    pub inotify: bool,
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
fn default_close_inactive_secs() -> u64 {
    300
}
fn default_max_open_files() -> usize {
    1024
}
fn default_forget_after_secs() -> u64 {
    7 * 24 * 3600
}
fn default_inotify() -> bool {
    true
}

/// With inotify, how often the globs are walked even when no event asked for it (a
/// safeguard against a missed event; a walk of 10,000 files takes tens of milliseconds).
const SAFEGUARD_SCAN: Duration = Duration::from_secs(60);

/// The longest pause of a round when no file is open and events are watched: a put-off
/// scan or a checkpoint waits at most this long.
const IDLE_PAUSE: Duration = Duration::from_secs(1);

/// How long a file with data keeps its slot while other files wait for one
/// (`max_open_files` reached) before it closes and waits its turn again.
const TURN: Duration = Duration::from_secs(1);

/// A file source's config, checked: its compiled patterns.
pub struct Checked {
    /// `exclude`, compiled. (`include` is walked by `glob::glob`, which takes the pattern as
    /// text; `check` has made sure each one compiles.)
    exclude: Vec<glob::Pattern>,
    /// `include`, compiled: events on paths that match no pattern ask for no rescan.
    include: Vec<glob::Pattern>,
    multiline: Option<Multiline>,
    /// Names a followed file takes when rotated, outside `include` (see
    /// [`Checked::resume_rotated`]).
    rotated: Vec<String>,
}

impl Checked {
    /// Files matched by `patterns` (the names files get when rotated, not in `include`) are
    /// looked for once at start: one with a checkpoint was renamed while weir was stopped,
    /// and is read from its checkpoint to its end, then released; the others are left alone.
    pub fn resume_rotated(mut self, patterns: Vec<String>) -> Self {
        self.rotated = patterns;
        self
    }
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
        let include: Vec<_> = self.include.iter().filter_map(|p| compile("include", p)).collect();
        let exclude: Vec<_> = self.exclude.iter().filter_map(|p| compile("exclude", p)).collect();
        if self.max_line_bytes == 0 {
            issues.push(ConfigIssue::field("max_line_bytes", "must be at least 1"));
        }
        if self.fingerprint_bytes < 16 {
            issues.push(ConfigIssue::field("fingerprint_bytes", "must be at least 16"));
        }
        if self.max_open_files == 0 {
            issues.push(ConfigIssue::field("max_open_files", "must be at least 1"));
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
        Ok(Checked { exclude, include, multiline, rotated: Vec::new() })
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
    let checkpoints =
        Checkpointer::load(&dir)?.forget_after(Duration::from_secs(config.forget_after_secs));
    let changes = if config.inotify {
        match watch::Changes::watch(&config.include) {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(component = %cx.id, error = %e,
                    "cannot watch the directories of `include`; polling them instead");
                None
            }
        }
    } else {
        None
    };
    let reader = Reader {
        format,
        config: config.clone(),
        exclude: checked.exclude,
        include: checked.include,
        rotated: checked.rotated,
        changes,
        rescan_wanted: false,
        by_path: None,
        closed: HashMap::new(),
        no_fields: SharedFields::new(Default::default()),
        pool: BytesMut::new(),
        next_turn: 0,
        multiline: checked.multiline,
        checkpoints,
        watchers: Vec::new(),
        too_long: LineTooLong::new(&cx.metrics, config.oversize == Oversize::Truncate),
        read_error_log: RateLimit::default(),
        // Resolved now, so that dashboards show 0 rather than no data until a first failure.
        read_failed: cx.metrics.error_counter(READ_FAILED, Stage::Receiving),
        checkpoint_failed: cx.metrics.error_counter(CHECKPOINT_WRITE_FAILED, Stage::Processing),
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

/// One file being followed: open, or closed (idle, or waiting for a slot under
/// `max_open_files`) with its position kept. A closed file costs its path, identity and
/// position: no descriptor and no buffer.
struct Watcher {
    fp: Fingerprint,
    epoch: u64,
    /// `None` while closed.
    file: Option<File>,
    dev: u64,
    ino: u64,
    path: String,
    /// `host.name` and `log.file.path`, shared by the file's events.
    fields: Arc<SharedFields>,
    framer: LineFramer,
    agg: Option<Box<Aggregator<(u64, u64)>>>,
    /// The source's decoder of this file's lines (see [`FileFormat`]), used instead of `agg`.
    decoder: Option<Box<dyn LineDecoder>>,
    /// Still matched by `include` at the last scan.
    in_scan: bool,
    /// Last time data was read (for releasing rotated files and closing idle ones).
    last_growth: Instant,
    /// May have data not read yet: read it (open) or open it when a slot is free (closed).
    wants_read: bool,
    /// The last read found nothing new.
    at_end: bool,
    /// Order of closed files waiting for a slot: lowest first.
    queued: u64,
    /// When the file was last opened (a busy file's turn under `max_open_files`).
    opened: Instant,
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
            None => self.agg.as_ref().and_then(|a| a.pending_first()).map(|(start, _)| start),
        };
        held.unwrap_or_else(|| self.framer.consumed_offset())
    }

    /// Open, following `include`, and holding nothing that is not yet sent: closing it
    /// loses nothing (a file renamed away or deleted is reachable only by its open handle).
    fn closable(&self) -> bool {
        self.file.is_some() && self.in_scan && self.safe_offset() == self.position()
    }
}

struct Reader {
    /// How lines become events, when a source other than `file` runs this reader.
    format: Option<Arc<dyn FileFormat>>,
    config: FileConfig,
    exclude: Vec<glob::Pattern>,
    include: Vec<glob::Pattern>,
    /// See [`Checked::resume_rotated`].
    rotated: Vec<String>,
    /// Kernel events on the watched directories; `None`: polling.
    changes: Option<watch::Changes>,
    /// An event asked for a rescan that the `glob_interval_ms` throttle has put off.
    rescan_wanted: bool,
    /// `watchers` by path (for events), rebuilt after the list changes.
    by_path: Option<HashMap<PathBuf, usize>>,
    /// Files closed with nothing to read, by path: left alone until an event or a scan says
    /// they changed, so the passes of each round cost nothing for them (see `demote`).
    closed: HashMap<PathBuf, Watcher>,
    /// The fields of a closed file, which are built again when it opens: one shared empty
    /// set instead of each file's (a few KiB each).
    no_fields: Arc<SharedFields>,
    /// The read buffer, lent to each file's framer in turn.
    pool: BytesMut,
    /// Next place in the queue for a slot under `max_open_files`.
    next_turn: u64,
    multiline: Option<Multiline>,
    checkpoints: Checkpointer,
    /// Files open, waiting for a slot, or no longer matched by `include` and still read:
    /// at most about `max_open_files` plus those with data waiting.
    watchers: Vec<Watcher>,
    too_long: LineTooLong,
    read_error_log: RateLimit,
    read_failed: Counter,
    checkpoint_failed: Counter,
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

/// What [`Reader::reopen`] found.
enum Reopen {
    /// Open again, with data to read.
    Open,
    /// The same file, with nothing new: left closed.
    Same,
    /// The path no longer holds the file (deleted, or another file took the path).
    Gone,
    /// The file was truncated or rewritten: its old content is gone.
    Truncated,
}

/// Closes a watcher's file, keeping its position (nothing is held: see `closable`).
fn close(w: &mut Watcher) {
    w.file = None;
    w.framer.reset(w.position());
}

enum ReadOutcome {
    /// Lines were read; `to_end`: the read was short, so it reached the end of the file.
    Data {
        to_end: bool,
    },
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
        let checkpoint_interval = Duration::from_millis(self.config.checkpoint_interval_ms);
        let poll = Duration::from_millis(self.config.poll_interval_ms.max(1));
        let wake = self.changes.as_ref().map(watch::Changes::wake);
        let mut last_checkpoint = Instant::now();
        let mut open = true;
        self.warn_unmatched();
        while open && !self.shutdown.is_cancelled() {
            if self.scan_due() {
                self.scan();
            }
            let mut progress = false;
            let mut i = 0;
            while i < self.watchers.len() && open {
                let w = &self.watchers[i];
                // With events, an open file is read only when written to (or while it has
                // data, or is renamed away and no longer reported on); polling, every time.
                if w.file.is_none() || (self.changes.is_some() && !w.wants_read && w.in_scan) {
                    i += 1;
                    continue;
                }
                match self.read_one(i) {
                    ReadOutcome::Data { .. } => progress = true,
                    ReadOutcome::Idle => {}
                    ReadOutcome::Truncated => {
                        self.on_truncated(i);
                        progress = true;
                    }
                    ReadOutcome::Failed => {
                        self.remove(i);
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
            progress |= self.share_slots();
            self.demote();
            if last_checkpoint.elapsed() >= checkpoint_interval {
                self.write_checkpoints();
                last_checkpoint = Instant::now();
            }
            if !progress {
                // Nothing open and no events: only checkpoints and put-off scans are left to
                // do, so the round waits longer (an event still wakes it at once).
                let pause = if self.watchers.is_empty() && wake.is_some() {
                    poll.max(checkpoint_interval.min(IDLE_PAUSE))
                } else {
                    poll
                };
                let shutdown = self.shutdown.clone();
                let wake = wake.clone();
                self.handle.block_on(async {
                    let event = async {
                        match wake {
                            Some(w) => w.notified().await,
                            None => std::future::pending().await,
                        }
                    };
                    tokio::select! {
                        _ = shutdown.cancelled() => {}
                        _ = event => {}
                        _ = tokio::time::sleep(pause) => {}
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

    /// Takes the kernel's events (marking the files written to) and says whether the globs
    /// must be walked now: polling, every `glob_interval_ms`; with events, when a file
    /// matching `include` was created, removed or renamed (at most every
    /// `glob_interval_ms`), and every [`SAFEGUARD_SCAN`].
    fn scan_due(&mut self) -> bool {
        let interval = Duration::from_millis(self.config.glob_interval_ms);
        let since = self.last_scan.map(|t| t.elapsed());
        let Some(changes) = &self.changes else {
            return since.is_none_or(|s| s >= interval);
        };
        let pending = changes.take();
        if pending.overflow {
            tracing::warn!(component = %self.id, "file events were lost; checking every file");
            for w in &mut self.watchers {
                w.wants_read = true;
            }
            self.rescan_wanted = true;
        }
        if pending.overflow || !pending.paths.is_empty() {
            self.promote(&pending.paths, pending.overflow);
        }
        if !pending.paths.is_empty() {
            let by_path = self.by_path.get_or_insert_with(|| {
                self.watchers.iter().enumerate().map(|(i, w)| (PathBuf::from(&w.path), i)).collect()
            });
            for path in &pending.paths {
                match by_path.get(path) {
                    Some(&i) => self.watchers[i].wants_read = true,
                    None => {
                        // A file not followed yet (new, or without a first line until now).
                        let matched = self.include.iter().any(|p| p.matches_path(path));
                        if matched && !self.exclude.iter().any(|e| e.matches_path(path)) {
                            self.rescan_wanted = true;
                        }
                    }
                }
            }
        }
        if pending.rescan {
            let matched = |path: &PathBuf| self.include.iter().any(|p| p.matches_path(path));
            self.rescan_wanted |= pending.paths.iter().any(matched);
        }
        match since {
            None => true,
            Some(s) => (self.rescan_wanted && s >= interval) || s >= SAFEGUARD_SCAN,
        }
    }

    /// Stops following watcher `i` (its file failed, or is gone), keeping its position.
    fn remove(&mut self, i: usize) {
        let w = self.watchers.remove(i);
        self.checkpoints.release(&w.fp);
        self.by_path = None;
    }

    /// Moves closed files written to (all of them, when events were lost) back among the
    /// watchers, marked to be opened when a slot is free.
    fn promote(&mut self, paths: &std::collections::HashSet<PathBuf>, all: bool) {
        let moved: Vec<PathBuf> = if all {
            self.closed.keys().cloned().collect()
        } else {
            paths.iter().filter(|p| self.closed.contains_key(*p)).cloned().collect()
        };
        for path in moved {
            if let Some(w) = self.closed.remove(&path) {
                self.promote_one(w);
            }
        }
    }

    fn promote_one(&mut self, mut w: Watcher) {
        w.wants_read = true;
        self.next_turn += 1;
        w.queued = self.next_turn;
        self.watchers.push(w);
        self.by_path = None;
    }

    /// Moves closed files with nothing to read (and still matched by `include`) out of the
    /// watchers, dropping what is built again when they open (fields, the multi-line
    /// aggregator or the source's decoder: a closed file holds no line).
    fn demote(&mut self) {
        let mut i = 0;
        while i < self.watchers.len() {
            let w = &self.watchers[i];
            if w.file.is_some() || w.wants_read || !w.in_scan {
                i += 1;
                continue;
            }
            let mut w = self.watchers.swap_remove(i);
            w.fields = Arc::clone(&self.no_fields);
            w.agg = None;
            w.decoder = None;
            self.by_path = None;
            self.closed.insert(PathBuf::from(&w.path), w);
        }
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
            self.checkpoint_failed.inc();
            tracing::error!(component = %self.id, error = %e, "cannot write checkpoints; will retry");
        }
    }

    /// Evaluates the globs: new files get a watcher, known ones are matched by inode (a
    /// closed one that grew or shrank is marked to be read). A closed file no longer matched
    /// is gone from where it can be read: its watcher goes, its position is kept.
    fn scan(&mut self) {
        self.last_scan = Some(Instant::now());
        self.rescan_wanted = false;
        let was_unreadable = self.unreadable.0 > 0;
        self.unreadable = (0, None);
        let found = self.match_closed(self.glob(&self.config.include));
        let mut by_inode: HashMap<(u64, u64), usize> = HashMap::with_capacity(self.watchers.len());
        let mut fps: HashSet<Fingerprint> = Default::default();
        for (i, w) in self.watchers.iter_mut().enumerate() {
            w.in_scan = false;
            by_inode.insert((w.dev, w.ino), i);
            fps.insert(w.fp.clone());
        }
        let cutoff =
            self.config.ignore_older_secs.map(|s| SystemTime::now() - Duration::from_secs(s));
        let mut open = self.open_files();
        // Fingerprints of closed files, gathered only when a new file is found.
        let mut closed_fps: Option<HashSet<Fingerprint>> = None;
        for f in found {
            let path = f.path.to_string_lossy().into_owned();
            if let Some(&i) = by_inode.get(&(f.dev, f.ino)) {
                let w = &mut self.watchers[i];
                w.in_scan = true;
                if w.file.is_none() && f.size != w.position() {
                    w.wants_read = true;
                }
                if w.path != path {
                    tracing::info!(component = %self.id, from = %w.path, to = %path, "file renamed; following it");
                    w.path = path.clone();
                    w.fields = fields_of(self.format.as_deref(), &self.host, &path);
                    self.checkpoints.rename(&w.fp, &path);
                    self.by_path = None;
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
            let closed = closed_fps.get_or_insert_with(|| {
                self.closed.values().map(|w| w.fp.clone()).collect::<HashSet<_>>()
            });
            if closed.contains(&fp) || !fps.insert(fp.clone()) {
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
            // Past `max_open_files` the file waits for a slot, closed.
            let file = (open < self.config.max_open_files).then_some(file);
            if let Some(w) = self.open_watcher(file, &f, path, fp, offset) {
                open += usize::from(w.file.is_some());
                self.watchers.push(w);
                self.by_path = None;
            }
        }
        if self.first_scan && !self.rotated.is_empty() {
            self.resume_rotated(&mut fps);
        }
        self.first_scan = false;
        // Closed files not found again: renamed out of `include` or deleted.
        let mut i = 0;
        while i < self.watchers.len() {
            let w = &self.watchers[i];
            if w.file.is_none() && !w.in_scan {
                tracing::info!(component = %self.id, path = %w.path, "closed file is gone; forgetting it after forget_after_secs");
                self.remove(i);
                continue;
            }
            i += 1;
        }
        self.closed.retain(|_, w| {
            if !w.in_scan {
                tracing::info!(component = %self.id, path = %w.path, "closed file is gone; forgetting it after forget_after_secs");
                self.checkpoints.release(&w.fp);
            }
            w.in_scan
        });
        if was_unreadable && self.unreadable.0 == 0 {
            self.health.healthy();
        }
    }

    /// At start, files matched by the `rotated` patterns whose checkpoint is short of their end
    /// (renamed while weir was stopped) are read from it to their end, then released as a
    /// file renamed out of `include` is. Files without a checkpoint are not read.
    fn resume_rotated(&mut self, fps: &mut HashSet<Fingerprint>) {
        for f in self.glob(&self.rotated) {
            let path = f.path.to_string_lossy().into_owned();
            let Ok(file) = File::open(&f.path) else { continue };
            let Ok(Some(fp)) = Fingerprint::of(&file, self.config.fingerprint_bytes) else {
                continue;
            };
            let Some(offset) = self.checkpoints.saved(&fp).filter(|&o| o < f.size) else {
                continue;
            };
            if !fps.insert(fp.clone()) {
                continue;
            }
            tracing::info!(component = %self.id, path = %path, offset,
                "file rotated while weir was stopped; reading it to its end");
            if let Some(mut w) = self.open_watcher(Some(file), &f, path, fp, offset) {
                w.in_scan = false;
                self.watchers.push(w);
                self.by_path = None;
            }
        }
    }

    /// Marks the closed files that a scan found where they were (those that changed size go
    /// back among the watchers) or renamed within `include`; returns the other paths found.
    fn match_closed(&mut self, found: Vec<Found>) -> Vec<Found> {
        for w in self.closed.values_mut() {
            w.in_scan = false;
        }
        let mut rest = Vec::new();
        let mut changed = Vec::new();
        for f in found {
            match self.closed.get_mut(&f.path) {
                Some(w) if (w.dev, w.ino) == (f.dev, f.ino) => {
                    w.in_scan = true;
                    if f.size != w.position() {
                        changed.push(f.path);
                    }
                }
                _ => rest.push(f),
            }
        }
        if self.closed.values().any(|w| !w.in_scan) && !rest.is_empty() {
            let moved: HashMap<(u64, u64), PathBuf> = self
                .closed
                .iter()
                .filter(|(_, w)| !w.in_scan)
                .map(|(p, w)| ((w.dev, w.ino), p.clone()))
                .collect();
            rest.retain(|f| {
                let Some(mut w) = moved.get(&(f.dev, f.ino)).and_then(|p| self.closed.remove(p))
                else {
                    return true;
                };
                let path = f.path.to_string_lossy().into_owned();
                tracing::info!(component = %self.id, from = %w.path, to = %path, "file renamed; following it");
                self.checkpoints.rename(&w.fp, &path);
                w.path = path;
                w.in_scan = true;
                if f.size != w.position() {
                    changed.push(f.path.clone());
                }
                self.closed.insert(f.path.clone(), w);
                false
            });
        }
        for path in changed {
            if let Some(w) = self.closed.remove(&path) {
                self.promote_one(w);
            }
        }
        rest
    }

    fn open_files(&self) -> usize {
        self.watchers.iter().filter(|w| w.file.is_some()).count()
    }

    /// A watcher for a newly found file, open (`file`) or waiting for a slot (`None`).
    fn open_watcher(
        &mut self,
        mut file: Option<File>,
        f: &Found,
        path: String,
        fp: Fingerprint,
        offset: u64,
    ) -> Option<Watcher> {
        if let Some(file) = file.as_mut()
            && let Err(e) = file.seek(SeekFrom::Start(offset))
        {
            self.read_failed(&path, &e);
            return None;
        }
        tracing::info!(component = %self.id, path = %path, offset, "reading file");
        let epoch = self.checkpoints.open(&fp, &path, offset);
        let (decoder, fields) = match &self.format {
            // Waiting for a slot: built when it opens (see `reopen`).
            _ if file.is_none() => (None, Arc::clone(&self.no_fields)),
            Some(format) => {
                let (decoder, fields) = format.open(&path);
                (Some(decoder), fields)
            }
            None => (None, line_fields(&self.host, Some(&path))),
        };
        let agg = match decoder {
            Some(_) => None,
            None if file.is_none() => None,
            None => {
                self.multiline.as_ref().map(|m| Box::new(m.aggregator(self.config.max_line_bytes)))
            }
        };
        self.next_turn += 1;
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
            wants_read: true,
            at_end: false,
            queued: self.next_turn,
            opened: Instant::now(),
        })
    }

    /// Closes files idle for `close_inactive_secs`, and shares `max_open_files` among the
    /// files with data: when some wait, idle open files close first (least recently grown
    /// first), then busy ones that have had a [`TURN`]; the longest waiting open. Returns
    /// whether a file was opened.
    fn share_slots(&mut self) -> bool {
        let inactive = Duration::from_secs(self.config.close_inactive_secs);
        let mut waiting: Vec<usize> = Vec::new();
        let mut open = 0;
        for (i, w) in self.watchers.iter_mut().enumerate() {
            if w.closable() && w.at_end && !w.wants_read && w.last_growth.elapsed() >= inactive {
                tracing::debug!(component = %self.id, path = %w.path, "closing inactive file");
                close(w);
            }
            match &w.file {
                Some(_) => open += 1,
                None if w.wants_read => waiting.push(i),
                None => {}
            }
        }
        if waiting.is_empty() {
            return false;
        }
        let cap = self.config.max_open_files;
        let mut free = cap.saturating_sub(open);
        if free < waiting.len() {
            // Idle files first, then busy files that have had their turn.
            let mut give: Vec<(bool, Instant, usize)> = self
                .watchers
                .iter()
                .enumerate()
                .filter(|(_, w)| w.closable() && (w.at_end || w.opened.elapsed() >= TURN))
                .map(|(i, w)| (!w.at_end, w.last_growth, i))
                .collect();
            give.sort();
            for (busy, _, i) in give.into_iter().take(waiting.len() - free) {
                let w = &mut self.watchers[i];
                close(w);
                if busy {
                    self.next_turn += 1;
                    w.wants_read = true;
                    w.queued = self.next_turn;
                }
                free += 1;
            }
        }
        waiting.sort_by_key(|&i| self.watchers[i].queued);
        let mut opened = false;
        let mut gone = Vec::new();
        for i in waiting.into_iter().take(free) {
            match self.reopen(i) {
                Reopen::Open => opened = true,
                Reopen::Same => {}
                Reopen::Gone => gone.push((i, false)),
                Reopen::Truncated => gone.push((i, true)),
            }
        }
        gone.sort_unstable();
        for (i, truncated) in gone.into_iter().rev() {
            if truncated {
                // Its fingerprint may come back with new content, to be read from the start.
                self.checkpoints.forget(&self.watchers[i].fp);
            }
            self.remove(i);
            // The path may now hold another file: find it.
            self.rescan_wanted = true;
            self.last_scan = None;
        }
        opened
    }

    /// Opens the closed watcher `i` again, if its path still holds the same file (inode and
    /// first line) at least as long as the position.
    fn reopen(&mut self, i: usize) -> Reopen {
        let fingerprint_bytes = self.config.fingerprint_bytes;
        let w = &mut self.watchers[i];
        w.wants_read = false;
        // The same file at the same size has nothing new (a file rewritten in place to the
        // same size is not told apart; it is when it grows): one `stat`, no descriptor.
        if let Ok(meta) = std::fs::metadata(&w.path)
            && (meta.dev(), meta.ino()) == (w.dev, w.ino)
            && meta.len() == w.position()
        {
            return Reopen::Same;
        }
        let mut file = match File::open(&w.path) {
            Ok(f) => f,
            Err(e) => {
                let path = w.path.clone();
                self.read_failed(&path, &e);
                return Reopen::Gone;
            }
        };
        let Ok(meta) = file.metadata() else { return Reopen::Gone };
        if (meta.dev(), meta.ino()) != (w.dev, w.ino) {
            // Renamed out of `include` or deleted, and another file took the path.
            return Reopen::Gone;
        }
        let same = meta.len() >= w.position()
            && matches!(Fingerprint::of(&file, fingerprint_bytes), Ok(Some(fp)) if fp == w.fp);
        if !same {
            tracing::warn!(component = %self.id, path = %w.path, offset = w.position(),
                "file truncated while closed; reading it again from the start");
            return Reopen::Truncated;
        }
        if file.seek(SeekFrom::Start(w.position())).is_err() {
            return Reopen::Gone;
        }
        if w.position() == file.metadata().map_or(0, |m| m.len()) {
            // Nothing new after all (a scan saw a size change that was undone).
            return Reopen::Same;
        }
        w.file = Some(file);
        w.opened = Instant::now();
        w.wants_read = true;
        w.at_end = false;
        // What `demote` dropped.
        match &self.format {
            Some(format) => {
                let (decoder, fields) = format.open(&w.path);
                w.decoder.get_or_insert(decoder);
                w.fields = fields;
            }
            None => {
                w.fields = line_fields(&self.host, Some(&w.path));
                if w.agg.is_none() {
                    let max_line_bytes = self.config.max_line_bytes;
                    w.agg = self.multiline.as_ref().map(|m| Box::new(m.aggregator(max_line_bytes)));
                }
            }
        }
        Reopen::Open
    }

    /// At start, names each include pattern that matches no file: a typo, or files that are
    /// not there yet (they are picked up when they appear).
    fn warn_unmatched(&self) {
        for pattern in &self.config.include {
            let matched = glob::glob(pattern)
                .is_ok_and(|mut paths| paths.any(|p| p.is_ok_and(|p| p.is_file())));
            if !matched {
                tracing::warn!(
                    component = %self.id,
                    pattern = %pattern,
                    "include pattern matches no file yet; files that appear are read when found"
                );
            }
        }
    }

    fn glob(&self, patterns: &[String]) -> Vec<Found> {
        let mut found: HashMap<PathBuf, Found> = HashMap::new();
        for pattern in patterns {
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
        self.read_failed.inc();
        let (count, first) = &mut self.unreadable;
        *count += 1;
        let first = first.get_or_insert_with(|| format!("{path}: {e}"));
        self.health.unhealthy(format!("cannot read {count} file(s); first: {first}"));
        if let Some(suppressed) = self.read_error_log.allow() {
            tracing::warn!(component = %self.id, path, error = %e, suppressed, "cannot read file");
        }
    }

    /// Reads one round from watcher `i` (open) and sends what it yields, with the shared
    /// read buffer lent to its framer for the round.
    fn read_one(&mut self, i: usize) -> ReadOutcome {
        let outcome = self.read_lent(i);
        let w = &mut self.watchers[i];
        w.framer.give_back(&mut self.pool);
        match outcome {
            // A short read reached the end: with events, a later write is reported.
            ReadOutcome::Data { to_end } => {
                w.at_end = to_end && self.changes.is_some();
                w.wants_read &= !w.at_end;
            }
            ReadOutcome::Idle => {
                w.at_end = true;
                w.wants_read = false;
            }
            _ => {}
        }
        outcome
    }

    fn read_lent(&mut self, i: usize) -> ReadOutcome {
        let max_read = self.config.max_read_bytes;
        let w = &mut self.watchers[i];
        let Some(file) = w.file.as_mut() else { return ReadOutcome::Idle };
        let n = match w.framer.read_pooled(&mut self.pool, file, max_read) {
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
            if let Some(file) = &w.file
                && read_from_new_content(file, at, w.framer.last_read(n))
            {
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
        if replaced { ReadOutcome::Truncated } else { ReadOutcome::Data { to_end: n < max_read } }
    }

    /// Has the file of watcher `i` shrunk below our position, or been replaced by a file with
    /// another first line?
    fn replaced(&self, i: usize) -> bool {
        let fingerprint_bytes = self.config.fingerprint_bytes;
        let w = &self.watchers[i];
        let Some(file) = &w.file else { return false };
        if file.metadata().is_ok_and(|m| m.len() < w.position()) {
            return true;
        }
        matches!(Fingerprint::of(file, fingerprint_bytes), Ok(Some(fp)) if fp != w.fp)
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
        let copy = self.glob(&self.config.include).into_iter().find(|f| {
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
            w.file = Some(file);
            w.dev = copy.dev;
            w.ino = copy.ino;
            w.fields = fields_of(self.format.as_deref(), &self.host, &path);
            w.path = path.clone();
            w.last_growth = Instant::now();
            self.checkpoints.rename(&fp, &path);
            self.by_path = None;
            return;
        }
        tracing::warn!(component = %self.id, path = %w.path, offset = w.position(),
            "file truncated; reading it again from the start (if it was rotated with \
             copytruncate, add the rotated name to `include` so the copy is finished)");
        let w = self.watchers.remove(i);
        self.by_path = None;
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
            let released = !w.in_scan
                && w.last_growth.elapsed() >= wait
                && w.file
                    .as_ref()
                    .is_none_or(|f| !f.metadata().is_ok_and(|m| m.len() > w.position()));
            if released {
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
                tracing::info!(component = %self.id, path = %self.watchers[i].path, "finished reading rotated or deleted file");
                self.remove(i);
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
        assert!(saved.contains("\"offset\":36"), "{saved}");
    }
}
