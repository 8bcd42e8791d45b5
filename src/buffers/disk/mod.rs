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

mod acker;
pub mod check;
pub mod codec;
mod reader;
mod recovery;
pub mod segment;
mod writer;

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

use crate::channel::{self, BatchReceiver, BatchSender, Closed, WhenFull};
use crate::component::ShutdownSignal;
use crate::error::{BuildError, ComponentError, Task};
use crate::event::{BatchNotifier, BatchStatus, Event, EventFinalizers, EventStatus, batch_size};
use crate::files::write_all_in_pieces;
use crate::internal_events::RateLimit;
use crate::metrics::{BufferGauges, ComponentMetrics, Labels};
use acker::run_acker;
use reader::run_reader;
pub use recovery::Recovered;
use recovery::{list, recover};
use segment::{Damage, Position};
use writer::{SegmentFile, Writer};

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
    let r = METRICS.with(|m| recover(&settings, m)).map_err(|e| e.to_string())?;
    Ok((r.start, r.segments.into_iter().collect(), r.records))
}

/// Starts the disk buffer of a sink: recovers its directory, then returns the receiver the
/// sink reads from and the buffer's tasks (writer, reader, acker), named for the topology.
pub fn start(
    settings: Settings,
    input: BatchReceiver,
    component: &ComponentMetrics,
    shutdown: ShutdownSignal,
) -> Result<(BatchReceiver, Vec<(String, Task)>), BuildError> {
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
    let file =
        OpenOptions::new().create(true).append(true).open(&path).map_err(|source| {
            BuildError::Io { what: "cannot create", path: path.clone(), source }
        })?;
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

#[cfg(test)]
mod tests;
