//! The reader: records in order up to what the writer has synced, decoded and handed to
//! the sink, one notifier per record.

use std::ops::ControlFlow;

use super::*;

/// When the reader stops handing records out during a shutdown.
async fn give_up(shutdown: &ShutdownSignal, timeout: Duration) {
    shutdown.cancelled().await;
    let Some(deadline) = shutdown.deadline() else { return };
    let at = deadline.checked_sub(timeout / 2).unwrap_or(deadline);
    tokio::time::sleep_until(Instant::from_std(at)).await;
}

pub(super) async fn run_reader(
    shared: Arc<Shared>,
    start: Position,
    out: BatchSender,
    shutdown: ShutdownSignal,
) -> Result<(), ComponentError> {
    let mut reader =
        Reader { shared, pos: start, file: None, log: RateLimit::default(), out, shutdown };
    reader.run().await;
    let Reader { shared, out, .. } = reader;
    drop(out);
    shared.lock().reader_done = true;
    shared.acked.notify_one();
    Ok(())
}

/// What the writer has made readable, seen from the reader's position.
struct Tail {
    /// Synced length of the reader's segment.
    end: u64,
    /// The segment after it, once the writer has moved past the reader's.
    next: Option<u64>,
    writer_done: bool,
}

/// Decoded records on their way to the sink.
#[derive(Default)]
struct Chunk {
    events: Vec<Event>,
    notifiers: Vec<BatchNotifier>,
}

struct Reader {
    shared: Arc<Shared>,
    /// Where the next record starts.
    pos: Position,
    /// The open segment, kept between chunks.
    file: Option<(u64, File)>,
    log: RateLimit,
    out: BatchSender,
    shutdown: ShutdownSignal,
}

impl Reader {
    /// Hands records to the sink until the buffer ends, the sink stops, a read fails or the
    /// shutdown timeout's first half passes.
    async fn run(&mut self) {
        loop {
            let tail = self.tail();
            if self.pos.offset < tail.end {
                if self.read_and_send(tail.end).await.is_break() {
                    break;
                }
            } else if let Some(next) = tail.next {
                // The segment is complete and read: the position moves on once all of it is
                // acknowledged.
                let to = Position { segment: next, offset: 0 };
                self.shared.push_pending(to, 0, Some(BatchStatus::Delivered));
                self.pos = to;
                self.file = None;
            } else if tail.writer_done {
                break;
            } else {
                // `notify_one` keeps a permit when nobody waits: no wake-up is missed.
                self.shared.written.notified().await;
            }
        }
    }

    fn tail(&self) -> Tail {
        let st = self.shared.lock();
        let end = st.segments.get(&self.pos.segment).copied().unwrap_or(0);
        let next = if self.pos.segment == st.write_segment {
            None
        } else {
            st.segments.range(self.pos.segment + 1..).next().map(|(s, _)| *s)
        };
        Tail { end, next, writer_done: st.writer_done }
    }

    /// Reads the records up to `end` (a chunk of them) and hands their events to the sink.
    async fn read_and_send(&mut self, end: u64) -> ControlFlow<()> {
        let Some(records) = self.read(end).await else { return ControlFlow::Break(()) };
        let chunk = self.decode(records);
        if chunk.events.is_empty() {
            return ControlFlow::Continue(());
        }
        self.send(chunk).await
    }

    /// Reads a chunk of records from the position up to `end`, off the async threads. `None`
    /// when the segment cannot be opened or read (logged).
    async fn read(&mut self, end: u64) -> Option<Vec<segment::RawRecord>> {
        let handle = self.open()?;
        let from = self.pos.offset;
        let read = tokio::task::spawn_blocking(move || {
            let mut f = handle;
            let r = segment::read_records(&mut f, from, end, READ_CHUNK_BYTES);
            (f, r)
        })
        .await;
        let (handle, records) = match read {
            Ok((f, Ok(r))) => (f, r),
            Ok((_, Err(e))) => {
                tracing::error!(component = %self.shared.settings.id, segment = self.pos.segment,
                    error = %e,
                    "cannot read the disk buffer; the sink gets no more events until a restart");
                return None;
            }
            Err(_) => return None,
        };
        self.file = Some((self.pos.segment, handle));
        Some(records)
    }

    /// The reader's segment: the file kept open from the last chunk, or opened now.
    fn open(&mut self) -> Option<File> {
        match self.file.take() {
            Some((s, f)) if s == self.pos.segment => Some(f),
            _ => {
                let path = self.shared.settings.dir.join(segment::segment_name(self.pos.segment));
                match File::open(&path) {
                    Ok(f) => Some(f),
                    Err(e) => {
                        tracing::error!(component = %self.shared.settings.id,
                            file = %path.display(), error = %e,
                            "cannot open a disk buffer segment; the sink gets no more events \
                             until a restart");
                        None
                    }
                }
            }
        }
    }

    /// Decodes records into events, each record with a notifier that acknowledges it; a
    /// corrupt record is dropped and counted as done. Moves the position past them all.
    fn decode(&mut self, records: Vec<segment::RawRecord>) -> Chunk {
        let mut chunk = Chunk::default();
        for rec in records {
            let end_pos = Position { segment: self.pos.segment, offset: rec.next };
            self.pos = end_pos;
            let decoded = match rec.payload {
                Ok(ref bytes) => codec::decode_events(bytes).map_err(|e| e.to_string()),
                Err(Damage::BadRecord) => Err("checksum mismatch".to_string()),
                Err(_) => Err("bytes that do not form records".to_string()),
            };
            match decoded {
                Ok(batch) => {
                    let count = batch.len() as u64;
                    let seq = self.shared.push_pending(end_pos, count, None);
                    let s = Arc::clone(&self.shared);
                    let notifier = BatchNotifier::with_callback(move |status| s.ack(seq, status));
                    chunk.events.extend(batch.into_iter().map(|e| e.with_notifier(&notifier)));
                    chunk.notifiers.push(notifier);
                }
                Err(reason) => self.drop_corrupt(&rec, end_pos, &reason),
            }
        }
        chunk
    }

    /// Counts and logs a record that cannot be decoded.
    fn drop_corrupt(&mut self, rec: &segment::RawRecord, end_pos: Position, reason: &str) {
        let bytes = rec.next - rec.offset;
        self.shared.metrics.corrupted_bytes.inc_by(bytes);
        self.shared.metrics.corrupted_records.inc();
        if let Some(suppressed) = self.log.allow() {
            tracing::error!(
                component = %self.shared.settings.id,
                file = %self.shared.settings.dir.join(segment::segment_name(end_pos.segment)).display(),
                offset = rec.offset,
                bytes,
                reason = %reason,
                suppressed,
                "disk buffer: a corrupt record was found while reading; dropped"
            );
        }
        // Nothing to deliver: the record counts as done.
        self.shared.push_pending(end_pos, 0, Some(BatchStatus::Delivered));
    }

    /// Hands a chunk to the sink. Breaks when the sink has stopped or the shutdown gives up
    /// on it; the events not delivered are marked errored, so they stay on disk.
    async fn send(&mut self, chunk: Chunk) -> ControlFlow<()> {
        let id = &self.shared.settings.id;
        let sent = tokio::select! {
            biased;
            r = self.out.send(chunk.events) => Some(r),
            _ = give_up(&self.shutdown, self.shared.settings.shutdown_timeout) => None,
        };
        match sent {
            Some(Ok(())) => ControlFlow::Continue(()),
            Some(Err(Closed(lost))) => {
                for e in &lost {
                    e.update_status(EventStatus::Errored);
                }
                tracing::error!(component = %id,
                    "the sink has stopped; its disk buffer keeps what it holds for the next start");
                ControlFlow::Break(())
            }
            None => {
                for n in &chunk.notifiers {
                    n.update_status(EventStatus::Errored);
                }
                tracing::info!(component = %id,
                    "stopping: the rest of the disk buffer is delivered after the next start");
                ControlFlow::Break(())
            }
        }
    }
}
