//! The disk buffer of a sink (`buffer.type = "disk"`): events wait in append-only segment
//! files under `data_dir/buffers/<sink id>/`, so a sink that is down does not hold its sources
//! back until `buffer.max_bytes` of them are on disk, and nothing in the buffer is lost to a
//! `kill -9`, a crash or a power cut.
//!
//! ```text
//! upstream --(memory, 512 KiB)--> writer --> 00000000000000000007.seg, ...008.seg
//!                                                 |
//!                    sink <--(memory, 512 KiB)-- reader     acker --> ack.json, deletes segments
//! ```
//!
//! - **Writer.** Takes the batches waiting in its input (at most 2 MiB of events: a group),
//!   encodes each batch as records ([`codec`], framed with a length and a CRC32 by
//!   [`segment`]), keeping of each event only its acknowledgement handle, appends the group
//!   to the current segment with one `write`, calls `fdatasync`, and only then lets the
//!   handles go, which acknowledges the events to their sources.
//!   This is the fsync policy: **every acknowledgement a source gets from a disk buffer is
//!   backed by an fsync**, so a file checkpoint or Kafka offset never passes an event that a
//!   power cut could take away. The cost is one `fdatasync` per group; group commit keeps it
//!   far below one per batch when input is fast (measured in `benches/e2e.py`). A segment
//!   is closed at an eighth of `max_bytes` (between 256 KiB and 128 MiB) and a new one begun
//!   (its directory entry synced).
//! - **Reader.** Reads records in order up to what the writer has synced, decodes them and
//!   hands them to the sink, one [`BatchNotifier`] per record.
//! - **Acker.** The notifiers' outcomes advance the acknowledged position over the contiguous
//!   run of acknowledged records (as file checkpoints do); the position is written to
//!   `ack.json` (atomically: temporary file, sync, rename) at most every 500 ms and when
//!   weir stops, and segments wholly before it are deleted (before the position is written:
//!   on a full file system their space is what the write needs; when it still fails, an idle
//!   writer whose segment is wholly acknowledged begins a new one so that the old one can go,
//!   and at a stop a wholly acknowledged last segment is deleted too). After a crash the
//!   records between the last written position and the last delivered one are delivered
//!   again: duplicates are bounded by half a second of deliveries plus what the sink had in
//!   flight.
//! - **Full.** `max_bytes` bounds the bytes of the segment files. When the next record does not
//!   fit, `when_full = "block"` makes the writer wait for the acker to free a segment (its input
//!   fills and backpressure reaches the sources); `"drop_newest"` rejects the batch (marked
//!   rejected, counted as discarded with reason `buffer_full`, logged). A failed write (the
//!   file system is full, `ENOSPC`) is cut back off the segment and handled the same way, with
//!   reason `disk_full` and an ERROR naming the file; blocked writes are tried again when a
//!   segment is freed or after a backoff of up to 30 s.
//! - **Errors.** A record the sink did not deliver (it gave up on retries, or stopped) holds
//!   the acknowledged position where it is until weir restarts, which reads it again, as
//!   sources do; until then no segment after it is freed.
//! - **Recovery** at start ([`recover`]): leftover temporary files and empty segments are
//!   deleted; every segment from the acknowledged position on is verified record by record;
//!   bad records are dropped and a bad tail cut off ([`segment::repair`]); each dropped range is
//!   logged at ERROR with its file, offset, size and record count and counted in
//!   `weir_buffer_corrupted_records_total` and `weir_buffer_corrupted_bytes_total`. An
//!   unreadable `ack.json` replays the buffer from its first segment (duplicates, not loss).
//!   Recovery never refuses to start on what it finds; only a directory that cannot be
//!   created or listed is an error. `weir buffer check DATA_DIR` runs the same verification
//!   without changing anything ([`check`]).
//! - **Shutdown.** The writer syncs what it took and stops when its input closes. The reader
//!   keeps handing records to the sink until the buffer is empty, but stops at half the
//!   shutdown timeout so that the sink can flush what it holds in the other half; what is left
//!   stays on disk for the next start.
//!
//! The sink's `weir_buffer_events`, `weir_buffer_size_bytes` and `weir_buffer_max_size_bytes`
//! describe the disk buffer: events not yet acknowledged, bytes of segment files, `max_bytes`.
//!
//! Why files and not a storage crate: the access pattern is a queue (append at one end, read
//! and delete at the other), which files do with one `write` and one `fdatasync` per group and
//! deletion of whole segments; an embedded key-value store (sled, redb, fjall) would add a
//! second write-ahead log, compaction and its own crash-recovery rules to reason about, and
//! LMDB-style stores copy every value into pages. The code that is weir's own is the framing
//! and its verification, which every queue file format needs anyway.
//!
//! Invariant: an event leaves the writer (and its source is acknowledged) only after the
//! record holding it is synced; the acknowledged position never passes a record the sink has
//! not acknowledged.

pub mod check;
pub mod codec;
pub mod segment;

use std::collections::{BTreeMap, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::event::{BatchNotifier, BatchStatus, Event, EventFinalizers, EventStatus, batch_size};
use crate::files::write_all_in_pieces;
use crate::internal_events::RateLimit;
use crate::metrics::{BufferGauges, ComponentMetrics, Labels};
use crate::topology::channel::{self, BatchReceiver, BatchSender, Closed, WhenFull};
use crate::topology::{ShutdownSignal, Task};
use segment::{Damage, Position};

/// Default `buffer.max_bytes` of a disk buffer.
pub const DEFAULT_MAX_BYTES: usize = 256 * 1024 * 1024;

/// The smallest `buffer.max_bytes` a disk buffer accepts.
pub const MIN_MAX_BYTES: usize = 1024 * 1024;

/// Estimated bytes of events in the memory channel in front of the writer (the upstream
/// waits when it is full). A group commit takes what waits there, so this also sizes the
/// groups under load; larger groups were no faster and held more memory.
pub const WRITER_INPUT_BYTES: usize = 512 * 1024;

/// Estimated bytes of events between the reader and the sink. The reader refills it from the
/// page cache far faster than a sink empties it, so more would only hold memory; this is the
/// size of a sink's memory buffer.
const READER_OUTPUT_BYTES: usize = 512 * 1024;

/// Estimated bytes of events the writer takes for one group commit.
const GROUP_BYTES: usize = 2 * 1024 * 1024;

/// A record is closed once its payload passes this size (a batch larger than this becomes
/// several records).
const RECORD_TARGET_BYTES: usize = 64 * 1024;

/// Bytes of records the reader reads at a time.
const READ_CHUNK_BYTES: u64 = 64 * 1024;

/// How often at most the acknowledged position is written.
const ACK_PERSIST_INTERVAL: Duration = Duration::from_millis(500);

/// Longest wait before a failed write is tried again.
const MAX_WRITE_BACKOFF: Duration = Duration::from_secs(30);

/// Where the disk buffer of sink `id` lives.
pub fn dir_for(data_dir: &Path, id: &str) -> PathBuf {
    data_dir.join("buffers").join(id)
}

/// What a disk buffer is built from.
#[derive(Clone, Debug)]
pub struct Settings {
    pub id: String,
    pub dir: PathBuf,
    pub max_bytes: u64,
    pub when_full: WhenFull,
    /// The pipeline's shutdown timeout: the reader stops handing out records at half of it.
    pub shutdown_timeout: Duration,
}

impl Settings {
    fn segment_bytes(&self) -> u64 {
        (self.max_bytes / 8).clamp(256 * 1024, 128 * 1024 * 1024)
    }
}

/// The per-process metric families of disk buffers.
struct Families {
    corrupted_records: Family<Labels, Counter>,
    corrupted_bytes: Family<Labels, Counter>,
}

fn families() -> &'static Families {
    static F: OnceLock<Families> = OnceLock::new();
    F.get_or_init(|| {
        let f =
            Families { corrupted_records: Family::default(), corrupted_bytes: Family::default() };
        let t = crate::metrics::global();
        t.register(
            "buffer_corrupted_records",
            "Records of a disk buffer found corrupt and dropped (at start or when read)",
            f.corrupted_records.clone(),
        );
        t.register(
            "buffer_corrupted_bytes",
            "Bytes of a disk buffer found corrupt and dropped (at start or when read)",
            f.corrupted_bytes.clone(),
        );
        f
    })
}

/// Handles of one disk buffer's series.
#[derive(Clone)]
struct BufferMetrics {
    gauges: BufferGauges,
    corrupted_records: Counter,
    corrupted_bytes: Counter,
    discarded_full: Counter,
    discarded_disk: Counter,
    discarded_large: Counter,
    write_errors: Counter,
}

impl BufferMetrics {
    fn new(component: &ComponentMetrics) -> Self {
        let f = families();
        let l = component.labels.labels();
        Self {
            gauges: component.buffer_gauges(),
            corrupted_records: f.corrupted_records.get_or_create_owned(&l),
            corrupted_bytes: f.corrupted_bytes.get_or_create_owned(&l),
            discarded_full: component
                .discarded_counter(crate::metrics::discard_reason::BUFFER_FULL),
            discarded_disk: component.discarded_counter(crate::metrics::discard_reason::DISK_FULL),
            discarded_large: component
                .discarded_counter(crate::metrics::discard_reason::EVENT_TOO_LARGE),
            write_errors: component.error_counter(
                crate::metrics::error_type::BUFFER_WRITE_FAILED,
                crate::metrics::Stage::Buffering,
            ),
        }
    }
}

/// A buffer directory after recovery: what is on disk and where reading starts.
#[derive(Debug)]
pub struct Recovered {
    /// Segment ids and their lengths in bytes.
    segments: BTreeMap<u64, u64>,
    /// Where the reader starts (the acknowledged position, moved to a segment that exists).
    start: Position,
    /// Id of the segment the writer opens.
    next_segment: u64,
    /// Records and events from `start` on.
    pub records: u64,
    pub events: u64,
    /// What was dropped, one line each (already logged).
    pub dropped: Vec<String>,
}

impl Recovered {
    pub fn bytes(&self) -> u64 {
        self.segments.values().sum()
    }
}

/// Opens (creating it if needed) the buffer directory, verifies it and repairs what is
/// damaged, logging and counting every dropped range. Errs only when the directory cannot be
/// created or listed.
fn recover(settings: &Settings, metrics: &BufferMetrics) -> Result<Recovered, String> {
    let dir = &settings.dir;
    let id = &settings.id;
    fs::create_dir_all(dir)
        .map_err(|e| format!("cannot create the disk buffer directory {}: {e}", dir.display()))?;
    let listing = list(dir)?;
    for tmp in &listing.temporary {
        // A write interrupted before its rename: the file it would have replaced is intact.
        let _ = fs::remove_file(tmp);
    }
    let mut segments = BTreeMap::new();
    for (seg, len) in listing.segments {
        if len == 0 {
            let _ = fs::remove_file(dir.join(segment::segment_name(seg)));
        } else {
            segments.insert(seg, len);
        }
    }
    let ack = match segment::read_ack(dir) {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(
                component = %id, error = %e,
                "disk buffer: the acknowledged position is unreadable; delivering the buffer \
                 again from its first segment (duplicates possible, nothing lost)"
            );
            None
        }
    };
    // Segments wholly before the acknowledged position were delivered (a crash came between
    // writing the position and deleting them).
    if let Some(ack) = ack {
        let stale: Vec<u64> = segments.range(..ack.segment).map(|(s, _)| *s).collect();
        for s in stale {
            segments.remove(&s);
            let _ = fs::remove_file(dir.join(segment::segment_name(s)));
        }
    }
    let next_segment = segments
        .keys()
        .next_back()
        .map(|s| s + 1)
        .unwrap_or_else(|| ack.map_or(0, |a| a.segment + 1));
    let start = match (ack, segments.keys().next()) {
        (Some(a), Some(&first)) if a.segment == first => a,
        (_, Some(&first)) => Position { segment: first, offset: 0 },
        (_, None) => Position { segment: next_segment, offset: 0 },
    };
    let mut out = Recovered {
        segments: BTreeMap::new(),
        start,
        next_segment,
        records: 0,
        events: 0,
        dropped: Vec::new(),
    };
    for (seg, len) in segments {
        let path = dir.join(segment::segment_name(seg));
        let from = if seg == start.segment { start.offset.min(len) } else { 0 };
        let found = match segment::scan(&path, from, false) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(
                    component = %id, file = %path.display(), error = %e, bytes = len,
                    "disk buffer: cannot read a segment; it is left out (and left on disk)"
                );
                out.dropped.push(format!("{}: unreadable ({e}), {len} bytes", path.display()));
                continue;
            }
        };
        for c in &found.corruption {
            let line = format!("{}: dropped {}", path.display(), c.describe());
            tracing::error!(
                component = %id,
                file = %path.display(),
                offset = c.offset,
                bytes = c.bytes,
                records = c.records().map_or_else(|| "unknown".to_string(), |r| r.to_string()),
                "disk buffer: corrupt data dropped at start: {}",
                c.describe()
            );
            metrics.corrupted_bytes.inc_by(c.bytes);
            metrics.corrupted_records.inc_by(c.records().unwrap_or(0));
            out.dropped.push(line);
        }
        if let Err(e) = segment::repair(&path, &found) {
            tracing::error!(
                component = %id, file = %path.display(), error = %e,
                "disk buffer: cannot repair a segment; it is left out (and left on disk)"
            );
            continue;
        }
        let kept = found.len - found.dropped_bytes();
        if kept == 0 {
            let _ = fs::remove_file(&path);
            continue;
        }
        out.records += found.records;
        out.events += found.events;
        out.segments.insert(seg, kept);
    }
    // The start segment may have been dropped whole.
    if !out.segments.contains_key(&out.start.segment) {
        out.start = Position {
            segment: out.segments.keys().next().copied().unwrap_or(next_segment),
            offset: 0,
        };
    }
    Ok(out)
}

/// What a recovery found: the reader's start, the segments kept (id, bytes) and the records
/// counted from the start.
#[doc(hidden)]
pub type RecoveryFound = (Position, Vec<(u64, u64)>, u64);

/// Recovers the buffer directory `dir` as a start does, for the fuzz target over arbitrary
/// bytes on disk (`crate::fuzzing`): the reader's start, the segments kept (id, bytes) and
/// the records counted from the start.
#[doc(hidden)]
pub fn recover_for_fuzzing(dir: &Path) -> Result<RecoveryFound, String> {
    thread_local! {
        static METRICS: BufferMetrics = BufferMetrics::new(&ComponentMetrics::new(
            crate::metrics::ComponentLabels::new("fuzz", "sink", "fuzz"),
        ));
    }
    let settings = Settings {
        id: "fuzz".into(),
        dir: dir.to_path_buf(),
        max_bytes: DEFAULT_MAX_BYTES as u64,
        when_full: WhenFull::Block,
        shutdown_timeout: Duration::from_secs(1),
    };
    let r = METRICS.with(|m| recover(&settings, m))?;
    Ok((r.start, r.segments.into_iter().collect(), r.records))
}

/// The files of a buffer directory.
#[derive(Debug, Default)]
struct Listing {
    segments: Vec<(u64, u64)>,
    temporary: Vec<PathBuf>,
    other: Vec<PathBuf>,
}

fn list(dir: &Path) -> Result<Listing, String> {
    let mut out = Listing::default();
    let entries = fs::read_dir(dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
    for entry in entries {
        let entry = entry.map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if let Some(id) = segment::parse_segment_name(&name) {
            let len = entry.metadata().map(|m| m.len()).unwrap_or(0);
            out.segments.push((id, len));
        } else if name.ends_with(".tmp") {
            out.temporary.push(path);
        } else if name != segment::ACK_FILE {
            out.other.push(path);
        }
    }
    out.segments.sort_unstable();
    Ok(out)
}

/// A record handed to the sink, waiting for its outcome.
#[derive(Debug)]
struct Pending {
    /// The position just after the record.
    end: Position,
    events: u64,
    status: Option<BatchStatus>,
}

struct State {
    /// Segment ids and their bytes on disk (for the write segment: what has been synced).
    segments: BTreeMap<u64, u64>,
    /// The segment being written.
    write_segment: u64,
    writer_done: bool,
    reader_done: bool,
    /// Records handed out, oldest first; `first_seq` is the sequence number of the front.
    pending: VecDeque<Pending>,
    first_seq: u64,
    /// Everything before this position is acknowledged.
    acked: Position,
    /// A record came back errored: the position stays here until restart.
    stuck: bool,
    /// Events written and not acknowledged.
    events: u64,
}

impl State {
    fn bytes(&self) -> u64 {
        self.segments.values().sum()
    }
}

struct Shared {
    settings: Settings,
    state: Mutex<State>,
    /// Writer to reader: synced data, a new segment, or the end.
    written: Notify,
    /// Notifier callbacks to the acker.
    acked: Notify,
    /// Acker to writer: a segment was freed.
    freed: Notify,
    /// Acker to writer: the acknowledged position cannot be written (the file system may be
    /// full); an idle writer whose segment is wholly acknowledged begins a new one, so that
    /// the old one can be deleted and its space used for the position.
    stalled: Notify,
    metrics: BufferMetrics,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn update_gauges(&self, st: &State) {
        self.metrics.gauges.bytes.set(i64::try_from(st.bytes()).unwrap_or(i64::MAX));
        self.metrics.gauges.events.set(i64::try_from(st.events).unwrap_or(i64::MAX));
    }

    /// Registers a record handed to the sink; returns its sequence number.
    fn push_pending(&self, end: Position, events: u64, status: Option<BatchStatus>) -> u64 {
        let mut st = self.lock();
        let seq = st.first_seq + st.pending.len() as u64;
        st.pending.push_back(Pending { end, events, status });
        if status.is_some() {
            self.advance(&mut st);
        }
        seq
    }

    /// A record's outcome (called by its notifier, on whatever thread dropped the last event).
    fn ack(&self, seq: u64, status: BatchStatus) {
        let mut st = self.lock();
        let Some(i) = seq.checked_sub(st.first_seq) else { return };
        if let Some(p) = st.pending.get_mut(i as usize) {
            p.status = Some(status);
        }
        self.advance(&mut st);
    }

    /// Moves the acknowledged position over the finished records at the front.
    fn advance(&self, st: &mut State) {
        let before = st.acked;
        while let Some(front) = st.pending.front() {
            let Some(status) = front.status else { break };
            if status == BatchStatus::Errored && !st.stuck {
                st.stuck = true;
                tracing::error!(
                    component = %self.settings.id,
                    segment = front.end.segment,
                    "the sink did not deliver events read from its disk buffer; they stay \
                     there and are delivered after a restart (no segment after them is freed \
                     until then)"
                );
            }
            if !st.stuck {
                st.acked = front.end;
                st.events = st.events.saturating_sub(front.events);
            }
            st.pending.pop_front();
            st.first_seq += 1;
        }
        if st.acked != before {
            self.update_gauges(st);
        }
        self.acked.notify_one();
    }
}

/// Starts the disk buffer of a sink: recovers its directory, then returns the receiver the
/// sink reads from and the buffer's tasks (writer, reader, acker), named for the topology.
pub fn start(
    settings: Settings,
    input: BatchReceiver,
    component: &ComponentMetrics,
    shutdown: ShutdownSignal,
) -> Result<(BatchReceiver, Vec<(String, Task)>), String> {
    let metrics = BufferMetrics::new(component);
    let recovered = recover(&settings, &metrics)?;
    tracing::info!(
        component = %settings.id,
        dir = %settings.dir.display(),
        segments = recovered.segments.len(),
        records = recovered.records,
        events = recovered.events,
        bytes = recovered.bytes(),
        "disk buffer opened"
    );
    let seg_id = recovered.next_segment;
    let path = settings.dir.join(segment::segment_name(seg_id));
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    let _ = segment::sync_dir(&settings.dir);
    let mut segments = recovered.segments;
    segments.insert(seg_id, 0);
    metrics.gauges.max_bytes.set(i64::try_from(settings.max_bytes).unwrap_or(i64::MAX));
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            segments,
            write_segment: seg_id,
            writer_done: false,
            reader_done: false,
            pending: VecDeque::new(),
            first_seq: 0,
            acked: recovered.start,
            stuck: false,
            events: recovered.events,
        }),
        settings,
        written: Notify::new(),
        acked: Notify::new(),
        freed: Notify::new(),
        stalled: Notify::new(),
        metrics,
    });
    shared.update_gauges(&shared.lock());
    let (out, sink_input) = channel::channel(READER_OUTPUT_BYTES, WhenFull::Block, None, None);
    let writer = Writer {
        shared: Arc::clone(&shared),
        segment: Some(SegmentFile { id: seg_id, file, len: 0 }),
        shutdown: shutdown.clone(),
        log: RateLimit::default(),
    };
    let id = shared.settings.id.clone();
    let tasks: Vec<(String, Task)> = vec![
        (format!("{id} (disk buffer writer)"), Box::pin(writer.run(input))),
        (
            format!("{id} (disk buffer reader)"),
            Box::pin(run_reader(Arc::clone(&shared), recovered.start, out, shutdown)),
        ),
        (format!("{id} (disk buffer acknowledgements)"), Box::pin(run_acker(shared))),
    ];
    Ok((sink_input, tasks))
}

/// The segment being appended to.
struct SegmentFile {
    id: u64,
    file: File,
    len: u64,
}

/// The acknowledgement handles of events encoded and not yet synced, and how many events they
/// are. Only the handles are held: once encoded, an event's fields are in its record, so the
/// writer frees them at once rather than holding a group's events, maps and all, until the
/// sync. Dropped without [`Held::release`] (the writer stopped first), the
/// events are marked errored, so that their sources read them again.
#[derive(Default)]
struct Held {
    count: u64,
    finalizers: EventFinalizers,
}

impl Held {
    /// Takes the handles of an event that has been encoded.
    fn take(&mut self, event: &mut Event) {
        self.count += 1;
        self.finalizers.absorb(std::mem::take(event.finalizers_mut()));
    }

    fn release(mut self) {
        drop(std::mem::take(&mut self.finalizers));
    }

    fn reject(mut self, counter: &Counter) {
        self.finalizers.update_status(EventStatus::Rejected);
        counter.inc_by(self.count);
        drop(std::mem::take(&mut self.finalizers));
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.finalizers.update_status(EventStatus::Errored);
    }
}

/// One encoded record and the events in it.
struct Record {
    framed: Vec<u8>,
    events: Held,
}

/// The writer stopped (shutdown while it could not write).
struct Stopped;

struct Writer {
    shared: Arc<Shared>,
    /// `None` only while a blocking write holds it.
    segment: Option<SegmentFile>,
    shutdown: ShutdownSignal,
    log: RateLimit,
}

impl Writer {
    async fn run(mut self, mut input: BatchReceiver) -> Result<(), ()> {
        let mut result = self.run_inner(&mut input).await;
        if result.is_err() && self.shutdown.is_cancelled() {
            // Stopped while it could not write: what it held is marked errored and read again
            // by the sources after the next start. Not a failure of the buffer.
            tracing::warn!(
                component = %self.shared.settings.id,
                "disk buffer stopped while it could not write; the events it held will be read \
                 again by their sources"
            );
            result = Ok(());
        }
        drop(input);
        {
            let mut st = self.shared.lock();
            st.writer_done = true;
        }
        self.shared.written.notify_one();
        result
    }

    async fn run_inner(&mut self, input: &mut BatchReceiver) -> Result<(), ()> {
        let max = self.shared.settings.max_bytes;
        loop {
            // `recv` is cancel-safe (a tokio channel): no batch is lost to the other branch.
            let first = tokio::select! {
                b = input.recv() => b,
                _ = self.shared.stalled.notified() => {
                    self.roll_if_consumed();
                    continue;
                }
            };
            let Some(first) = first else { break };
            let mut estimated = batch_size(&first);
            let mut group = vec![first];
            while estimated < GROUP_BYTES {
                match input.try_recv() {
                    Some(b) => {
                        estimated += batch_size(&b);
                        group.push(b);
                    }
                    None => break,
                }
            }
            let records = self.encode(group);
            let mut frames: Vec<u8> = Vec::new();
            let mut held: Vec<Held> = Vec::new();
            for record in records {
                loop {
                    let used = self.shared.lock().bytes() + frames.len() as u64;
                    if used == 0 || used + record.framed.len() as u64 <= max {
                        frames.extend_from_slice(&record.framed);
                        held.push(record.events);
                        // A segment ends near its size, so that it is freed as a whole soon.
                        let seg_len = self.segment.as_ref().map_or(0, |s| s.len);
                        if seg_len + frames.len() as u64 >= self.shared.settings.segment_bytes() {
                            self.commit(std::mem::take(&mut frames), std::mem::take(&mut held))
                                .await
                                .map_err(|Stopped| ())?;
                        }
                        break;
                    }
                    match self.shared.settings.when_full {
                        WhenFull::DropNewest => {
                            self.discard(record.events);
                            break;
                        }
                        WhenFull::Block => {
                            // Sync what fits first: its sources are acknowledged meanwhile.
                            if !frames.is_empty() {
                                self.commit(std::mem::take(&mut frames), std::mem::take(&mut held))
                                    .await
                                    .map_err(|Stopped| ())?;
                            }
                            if self.wait_for_space(record.framed.len() as u64).await.is_err() {
                                return Err(());
                            }
                        }
                    }
                }
            }
            if !frames.is_empty() {
                self.commit(frames, held).await.map_err(|Stopped| ())?;
            }
        }
        Ok(())
    }

    /// Encodes batches into framed records of about [`RECORD_TARGET_BYTES`] each. An event
    /// too large for any record is rejected alone (counted and logged).
    fn encode(&mut self, group: Vec<Vec<Event>>) -> Vec<Record> {
        let limit = segment::MAX_RECORD_BYTES as usize;
        let mut out = Vec::new();
        for batch in group {
            let mut builder = segment::RecordBuilder::default();
            let mut held = Held::default();
            for mut e in batch {
                let mut took = builder.push(&e);
                if builder.payload_len() > limit && builder.count() > 1 {
                    // It does not fit beside the others: they go in a record of their own.
                    builder.pop(took);
                    let full = std::mem::take(&mut builder);
                    out.push(Record { framed: full.finish(), events: std::mem::take(&mut held) });
                    took = builder.push(&e);
                }
                if builder.payload_len() > limit {
                    builder.pop(took);
                    if let Some(suppressed) = self.log.allow() {
                        tracing::error!(
                            component = %self.shared.settings.id,
                            bytes = took,
                            suppressed,
                            "event larger than a disk buffer record may be (64 MiB); rejected"
                        );
                    }
                    let mut alone = Held::default();
                    alone.take(&mut e);
                    alone.reject(&self.shared.metrics.discarded_large);
                    continue;
                }
                held.take(&mut e);
                if builder.payload_len() >= RECORD_TARGET_BYTES {
                    let full = std::mem::take(&mut builder);
                    out.push(Record { framed: full.finish(), events: std::mem::take(&mut held) });
                }
            }
            if held.count > 0 {
                out.push(Record { framed: builder.finish(), events: held });
            }
        }
        out
    }

    /// Rejects a record that does not fit (`drop_newest`).
    fn discard(&mut self, events: Held) {
        let count = events.count;
        events.reject(&self.shared.metrics.discarded_full);
        if let Some(suppressed) = self.log.allow() {
            tracing::warn!(
                component = %self.shared.settings.id,
                events = count,
                max_bytes = self.shared.settings.max_bytes,
                suppressed,
                "disk buffer full; events discarded (when_full = drop_newest)"
            );
        }
    }

    /// Waits until a record of `need` bytes fits (`block`). Rolls to a new segment when the
    /// current one is wholly acknowledged, so that it can be freed.
    async fn wait_for_space(&mut self, need: u64) -> Result<(), Stopped> {
        let max = self.shared.settings.max_bytes;
        loop {
            {
                let st = self.shared.lock();
                let used = st.bytes();
                if used == 0 || used + need <= max {
                    return Ok(());
                }
            }
            if self.roll_if_consumed() {
                continue;
            }
            if self.shutdown.is_cancelled() {
                return Err(Stopped);
            }
            tokio::select! {
                _ = self.shared.freed.notified() => {}
                _ = self.shutdown.cancelled() => return Err(Stopped),
            }
        }
    }

    /// Appends `frames` and syncs them, then lets `held` go. A failed write is cut back off
    /// the segment; `block` tries again, `drop_newest` rejects the events.
    async fn commit(&mut self, frames: Vec<u8>, held: Vec<Held>) -> Result<(), Stopped> {
        let mut backoff = Duration::from_millis(100);
        let frames = Arc::new(frames);
        loop {
            let Some(mut seg) = self.segment.take() else { return Err(Stopped) };
            let data = Arc::clone(&frames);
            let joined = tokio::task::spawn_blocking(move || {
                let r = append(&mut seg, &data);
                (seg, r)
            })
            .await;
            let (seg, result) = match joined {
                Ok(x) => x,
                Err(e) => {
                    tracing::error!(component = %self.shared.settings.id, error = %e,
                        "disk buffer writer failed; its events will be read again by their sources");
                    return Err(Stopped);
                }
            };
            let seg_id = seg.id;
            let seg_len = seg.len;
            self.segment = Some(seg);
            match result {
                Ok(()) => {
                    let events: u64 = held.iter().map(|h| h.count).sum();
                    {
                        let mut st = self.shared.lock();
                        st.segments.insert(seg_id, seg_len);
                        st.events += events;
                        self.shared.update_gauges(&st);
                    }
                    self.shared.written.notify_one();
                    // Synced: the sources may now move past these events.
                    for h in held {
                        h.release();
                    }
                    if seg_len >= self.shared.settings.segment_bytes() {
                        self.roll();
                    }
                    return Ok(());
                }
                Err(e) => {
                    self.shared.metrics.write_errors.inc();
                    // A full file system whose only segment has been delivered frees space
                    // once the writer moves on to a new one.
                    if self.roll_if_consumed() {
                        tokio::select! {
                            _ = self.shared.freed.notified() => {}
                            _ = self.shutdown.cancelled() => return Err(Stopped),
                        }
                        continue;
                    }
                    let disk_full = e.raw_os_error() == Some(28); // ENOSPC
                    let path = self.shared.settings.dir.join(segment::segment_name(seg_id));
                    if self.shared.settings.when_full == WhenFull::DropNewest {
                        let count: u64 = held.iter().map(|h| h.count).sum();
                        if let Some(suppressed) = self.log.allow() {
                            tracing::error!(
                                component = %self.shared.settings.id,
                                file = %path.display(),
                                error = %e,
                                events = count,
                                suppressed,
                                "disk buffer cannot write{}; events discarded \
                                 (when_full = drop_newest)",
                                if disk_full { " (the file system is full)" } else { "" },
                            );
                        }
                        for h in held {
                            h.reject(&self.shared.metrics.discarded_disk);
                        }
                        return Ok(());
                    }
                    if let Some(suppressed) = self.log.allow() {
                        tracing::error!(
                            component = %self.shared.settings.id,
                            file = %path.display(),
                            error = %e,
                            retry_in_ms = backoff.as_millis() as u64,
                            suppressed,
                            "disk buffer cannot write{}; holding its input (when_full = block) \
                             and trying again",
                            if disk_full { " (the file system is full)" } else { "" },
                        );
                    }
                    if self.shutdown.is_cancelled() {
                        return Err(Stopped);
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = self.shared.freed.notified() => {}
                        _ = self.shutdown.cancelled() => return Err(Stopped),
                    }
                    backoff = (backoff * 2).min(MAX_WRITE_BACKOFF);
                }
            }
        }
    }

    /// Rolls to a new segment when the current one is not empty and wholly acknowledged (it
    /// can then be freed). Returns whether it rolled.
    fn roll_if_consumed(&mut self) -> bool {
        let Some((id, len)) = self.segment.as_ref().map(|s| (s.id, s.len)) else { return false };
        let consumed = len > 0 && self.shared.lock().acked >= Position { segment: id, offset: len };
        if consumed {
            self.roll();
        }
        consumed && self.segment.as_ref().is_some_and(|s| s.id != id)
    }

    /// Closes the current segment and begins the next. On failure the current one goes on.
    fn roll(&mut self) {
        let Some(current) = self.segment.as_ref() else { return };
        let next = current.id + 1;
        let path = self.shared.settings.dir.join(segment::segment_name(next));
        let opened = OpenOptions::new().create(true).append(true).open(&path).and_then(|f| {
            segment::sync_dir(&self.shared.settings.dir)?;
            Ok(f)
        });
        match opened {
            Ok(file) => {
                self.segment = Some(SegmentFile { id: next, file, len: 0 });
                let mut st = self.shared.lock();
                st.segments.insert(next, 0);
                st.write_segment = next;
                drop(st);
                self.shared.written.notify_one();
            }
            Err(e) => {
                let _ = fs::remove_file(&path);
                if let Some(suppressed) = self.log.allow() {
                    tracing::error!(
                        component = %self.shared.settings.id, file = %path.display(), error = %e,
                        suppressed, "cannot begin a new disk buffer segment; the current one grows"
                    );
                }
            }
        }
    }
}

/// Appends and syncs; on failure cuts the segment back to where it was.
fn append(seg: &mut SegmentFile, data: &[u8]) -> io::Result<()> {
    let result = write_all_in_pieces(&seg.file, data).and_then(|()| seg.file.sync_data());
    match result {
        Ok(()) => {
            seg.len += data.len() as u64;
            Ok(())
        }
        Err(e) => {
            // Whatever part was written is removed; the retry writes the whole group again
            // (after a failed fsync the page cache cannot be trusted to hold it).
            let _ = seg.file.set_len(seg.len);
            Err(e)
        }
    }
}

/// When the reader stops handing records out during a shutdown.
async fn give_up(shutdown: &ShutdownSignal, timeout: Duration) {
    shutdown.cancelled().await;
    let Some(deadline) = shutdown.deadline() else { return };
    let at = deadline.checked_sub(timeout / 2).unwrap_or(deadline);
    tokio::time::sleep_until(Instant::from_std(at)).await;
}

async fn run_reader(
    shared: Arc<Shared>,
    start: Position,
    out: BatchSender,
    shutdown: ShutdownSignal,
) -> Result<(), ()> {
    let id = shared.settings.id.clone();
    let timeout = shared.settings.shutdown_timeout;
    let mut pos = start;
    let mut file: Option<(u64, File)> = None;
    let mut log = RateLimit::default();
    loop {
        // What can be read in the current segment, and what follows it.
        let (end, next, writer_done) = {
            let st = shared.lock();
            let end = st.segments.get(&pos.segment).copied().unwrap_or(0);
            let next = if pos.segment == st.write_segment {
                None
            } else {
                st.segments.range(pos.segment + 1..).next().map(|(s, _)| *s)
            };
            (end, next, st.writer_done)
        };
        if pos.offset < end {
            let handle = match file.take() {
                Some((s, f)) if s == pos.segment => f,
                _ => {
                    let path = shared.settings.dir.join(segment::segment_name(pos.segment));
                    match File::open(&path) {
                        Ok(f) => f,
                        Err(e) => {
                            tracing::error!(component = %id, file = %path.display(), error = %e,
                                "cannot open a disk buffer segment; the sink gets no more events \
                                 until a restart");
                            break;
                        }
                    }
                }
            };
            let from = pos.offset;
            let read = tokio::task::spawn_blocking(move || {
                let mut f = handle;
                let r = segment::read_records(&mut f, from, end, READ_CHUNK_BYTES);
                (f, r)
            })
            .await;
            let (handle, records) = match read {
                Ok((f, Ok(r))) => (f, r),
                Ok((_, Err(e))) => {
                    tracing::error!(component = %id, segment = pos.segment, error = %e,
                        "cannot read the disk buffer; the sink gets no more events until a restart");
                    break;
                }
                Err(_) => break,
            };
            file = Some((pos.segment, handle));
            let mut events = Vec::new();
            let mut notifiers = Vec::new();
            for rec in records {
                let end_pos = Position { segment: pos.segment, offset: rec.next };
                pos = end_pos;
                let decoded = match rec.payload {
                    Ok(bytes) => codec::decode_events(&bytes).map_err(|e| e.to_string()),
                    Err(Damage::BadRecord) => Err("checksum mismatch".to_string()),
                    Err(_) => Err("bytes that do not form records".to_string()),
                };
                match decoded {
                    Ok(batch) => {
                        let count = batch.len() as u64;
                        let seq = shared.push_pending(end_pos, count, None);
                        let s = Arc::clone(&shared);
                        let notifier =
                            BatchNotifier::with_callback(move |status| s.ack(seq, status));
                        events.extend(batch.into_iter().map(|e| e.with_notifier(&notifier)));
                        notifiers.push(notifier);
                    }
                    Err(reason) => {
                        let bytes = rec.next - rec.offset;
                        shared.metrics.corrupted_bytes.inc_by(bytes);
                        shared.metrics.corrupted_records.inc();
                        if let Some(suppressed) = log.allow() {
                            tracing::error!(
                                component = %id,
                                file = %shared.settings.dir.join(segment::segment_name(end_pos.segment)).display(),
                                offset = rec.offset,
                                bytes,
                                reason = %reason,
                                suppressed,
                                "disk buffer: a corrupt record was found while reading; dropped"
                            );
                        }
                        // Nothing to deliver: the record counts as done.
                        shared.push_pending(end_pos, 0, Some(BatchStatus::Delivered));
                    }
                }
            }
            if events.is_empty() {
                continue;
            }
            let sent = tokio::select! {
                biased;
                r = out.send(events) => Some(r),
                _ = give_up(&shutdown, timeout) => None,
            };
            match sent {
                Some(Ok(())) => {}
                Some(Err(Closed(lost))) => {
                    for e in &lost {
                        e.update_status(EventStatus::Errored);
                    }
                    tracing::error!(component = %id,
                        "the sink has stopped; its disk buffer keeps what it holds for the next start");
                    break;
                }
                None => {
                    for n in &notifiers {
                        n.update_status(EventStatus::Errored);
                    }
                    tracing::info!(component = %id,
                        "stopping: the rest of the disk buffer is delivered after the next start");
                    break;
                }
            }
        } else if let Some(next) = next {
            // The segment is complete and read: the position moves on once all of it is
            // acknowledged.
            let to = Position { segment: next, offset: 0 };
            shared.push_pending(to, 0, Some(BatchStatus::Delivered));
            pos = to;
            file = None;
        } else if writer_done {
            break;
        } else {
            // `notify_one` keeps a permit when nobody waits: no wake-up is missed.
            shared.written.notified().await;
        }
    }
    drop(out);
    shared.lock().reader_done = true;
    shared.acked.notify_one();
    Ok(())
}

async fn run_acker(shared: Arc<Shared>) -> Result<(), ()> {
    let id = shared.settings.id.clone();
    let dir = shared.settings.dir.clone();
    let mut persisted = shared.lock().acked;
    let mut last_write: Option<Instant> = None;
    loop {
        let (acked, freed, done) = {
            let mut st = shared.lock();
            let mut freed: Vec<u64> = st
                .segments
                .range(..st.acked.segment)
                .map(|(s, _)| *s)
                .filter(|s| *s != st.write_segment)
                .collect();
            // Once writer and reader have stopped, a wholly acknowledged last segment goes too
            // (on a full file system its space may be what the position needs); recovery
            // begins the next one after it.
            let ws = st.write_segment;
            if st.writer_done
                && st.reader_done
                && st.pending.is_empty()
                && st
                    .segments
                    .get(&ws)
                    .is_some_and(|&len| st.acked >= Position { segment: ws, offset: len })
            {
                freed.push(ws);
            }
            for s in &freed {
                st.segments.remove(s);
            }
            if !freed.is_empty() {
                shared.update_gauges(&st);
            }
            (st.acked, freed, st.reader_done && st.pending.is_empty())
        };
        // Freed segments go first: on a full file system their space is what lets the
        // position be written. A crash in between leaves an older position pointing before
        // segments that no longer exist, which recovery skips (nothing lost, nothing repeated).
        if !freed.is_empty() {
            let d = dir.clone();
            let _ = tokio::task::spawn_blocking(move || {
                for s in freed {
                    let _ = fs::remove_file(d.join(segment::segment_name(s)));
                }
                let _ = segment::sync_dir(&d);
            })
            .await;
            shared.freed.notify_one();
            last_write = None;
        }
        let due = last_write.is_none_or(|t| t.elapsed() >= ACK_PERSIST_INTERVAL);
        if acked != persisted && (due || done) {
            let d = dir.clone();
            let written = tokio::task::spawn_blocking(move || segment::write_ack(&d, acked)).await;
            match written {
                Ok(Ok(())) => persisted = acked,
                Ok(Err(e)) => {
                    tracing::error!(component = %id, error = %e,
                        "cannot write the disk buffer's acknowledged position; will retry");
                    shared.stalled.notify_one();
                }
                Err(_) => {}
            }
            last_write = Some(Instant::now());
        }
        if done && acked == persisted {
            return Ok(());
        }
        if acked != persisted {
            let wait = last_write
                .map_or(Duration::ZERO, |t| ACK_PERSIST_INTERVAL.saturating_sub(t.elapsed()));
            tokio::select! {
                _ = shared.acked.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        } else {
            // `notify_one` keeps a permit when nobody waits: no acknowledgement is missed.
            shared.acked.notified().await;
        }
    }
}

#[cfg(test)]
mod tests;
