//! The writer: group commit of encoded batches into the current segment, `fdatasync`,
//! then the events' acknowledgement handles go; `when_full` and failed writes.

use super::*;

/// The segment being appended to.
pub(super) struct SegmentFile {
    pub(super) id: u64,
    pub(super) file: File,
    pub(super) len: u64,
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

/// Records placed and not yet committed: their frames, to be appended and synced at once.
#[derive(Default)]
struct Pending {
    frames: Vec<u8>,
    held: Vec<Held>,
}

/// The writer stopped (shutdown while it could not write).
struct Stopped;

pub(super) struct Writer {
    pub(super) shared: Arc<Shared>,
    /// `None` only while a blocking write holds it.
    pub(super) segment: Option<SegmentFile>,
    pub(super) shutdown: ShutdownSignal,
    pub(super) log: RateLimit,
}

impl Writer {
    pub(super) async fn run(mut self, mut input: BatchReceiver) -> Result<(), ComponentError> {
        let mut result = self.run_inner(&mut input).await.map_err(|Stopped| {
            ComponentError::Thread("the disk buffer writer's blocking write failed".into())
        });
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

    async fn run_inner(&mut self, input: &mut BatchReceiver) -> Result<(), Stopped> {
        while let Some(group) = self.next_group(input).await {
            let records = self.encode(group);
            self.write_records(records).await?;
        }
        Ok(())
    }

    /// Waits for a batch (rolling to a new segment when the reader waits on a wholly
    /// acknowledged one), then takes what else is waiting, up to about [`GROUP_BYTES`]: a
    /// group is synced once. `None` once the input has closed.
    async fn next_group(&mut self, input: &mut BatchReceiver) -> Option<Vec<Vec<Event>>> {
        let first = loop {
            // `recv` is cancel-safe (a tokio channel): no batch is lost to the other branch.
            tokio::select! {
                b = input.recv() => break b?,
                _ = self.shared.stalled.notified() => {
                    self.roll_if_consumed();
                }
            }
        };
        let mut estimated = batch_size(&first);
        let mut group = vec![first];
        while estimated < GROUP_BYTES {
            let Some(b) = input.try_recv() else { break };
            estimated += batch_size(&b);
            group.push(b);
        }
        Some(group)
    }

    /// Writes a group's records, committing whenever the segment is about full and once at
    /// the end.
    async fn write_records(&mut self, records: Vec<Record>) -> Result<(), Stopped> {
        let mut pending = Pending::default();
        for record in records {
            self.place(record, &mut pending).await?;
        }
        if !pending.frames.is_empty() {
            self.commit(pending.frames, pending.held).await?;
        }
        Ok(())
    }

    /// Adds a record to `pending` once it fits under `max_bytes`, or discards it
    /// (`drop_newest`); `block` commits what is pending first, then waits for room.
    async fn place(&mut self, record: Record, pending: &mut Pending) -> Result<(), Stopped> {
        let max = self.shared.settings.max_bytes;
        loop {
            let used = self.shared.lock().bytes() + pending.frames.len() as u64;
            if used == 0 || used + record.framed.len() as u64 <= max {
                pending.frames.extend_from_slice(&record.framed);
                pending.held.push(record.events);
                // A segment ends near its size, so that it is freed as a whole soon.
                let seg_len = self.segment.as_ref().map_or(0, |s| s.len);
                if seg_len + pending.frames.len() as u64 >= self.shared.settings.segment_bytes() {
                    self.commit_pending(pending).await?;
                }
                return Ok(());
            }
            match self.shared.settings.when_full {
                WhenFull::DropNewest => {
                    self.discard(record.events);
                    return Ok(());
                }
                WhenFull::Block => {
                    // Sync what fits first: its sources are acknowledged meanwhile.
                    if !pending.frames.is_empty() {
                        self.commit_pending(pending).await?;
                    }
                    self.wait_for_space(record.framed.len() as u64).await?;
                }
            }
        }
    }

    async fn commit_pending(&mut self, pending: &mut Pending) -> Result<(), Stopped> {
        let Pending { frames, held } = std::mem::take(pending);
        self.commit(frames, held).await
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
            let (seg_id, seg_len, result) = self.append_off_thread(&frames).await?;
            let Err(e) = result else {
                self.synced(seg_id, seg_len, held);
                return Ok(());
            };
            self.shared.metrics.write_errors.inc();
            // A full file system whose only segment has been delivered frees space once the
            // writer moves on to a new one.
            if self.roll_if_consumed() {
                tokio::select! {
                    _ = self.shared.freed.notified() => {}
                    _ = self.shutdown.cancelled() => return Err(Stopped),
                }
                continue;
            }
            let path = self.shared.settings.dir.join(segment::segment_name(seg_id));
            if self.shared.settings.when_full == WhenFull::DropNewest {
                self.reject_unwritten(&e, &path, held);
                return Ok(());
            }
            self.wait_to_retry(&e, &path, backoff).await?;
            backoff = (backoff * 2).min(MAX_WRITE_BACKOFF);
        }
    }

    /// Appends and syncs `frames` to the current segment on a blocking thread. Returns the
    /// segment's id and length and how the write went; errs when the thread failed (logged).
    async fn append_off_thread(
        &mut self,
        frames: &Arc<Vec<u8>>,
    ) -> Result<(u64, u64, io::Result<()>), Stopped> {
        let Some(mut seg) = self.segment.take() else { return Err(Stopped) };
        let data = Arc::clone(frames);
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
        let (seg_id, seg_len) = (seg.id, seg.len);
        self.segment = Some(seg);
        Ok((seg_id, seg_len, result))
    }

    /// After a successful sync: the records become readable and the events' handles go.
    fn synced(&mut self, seg_id: u64, seg_len: u64, held: Vec<Held>) {
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
    }

    /// A failed write under `drop_newest`: its events are rejected.
    fn reject_unwritten(&mut self, e: &io::Error, path: &Path, held: Vec<Held>) {
        let count: u64 = held.iter().map(|h| h.count).sum();
        if let Some(suppressed) = self.log.allow() {
            tracing::error!(
                component = %self.shared.settings.id,
                file = %path.display(),
                error = %e,
                events = count,
                suppressed,
                "disk buffer cannot write{}; events discarded (when_full = drop_newest)",
                disk_full_note(e),
            );
        }
        for h in held {
            h.reject(&self.shared.metrics.discarded_disk);
        }
    }

    /// A failed write under `block`: waits for freed space or `backoff` before the next try.
    async fn wait_to_retry(
        &mut self,
        e: &io::Error,
        path: &Path,
        backoff: Duration,
    ) -> Result<(), Stopped> {
        if let Some(suppressed) = self.log.allow() {
            tracing::error!(
                component = %self.shared.settings.id,
                file = %path.display(),
                error = %e,
                retry_in_ms = backoff.as_millis() as u64,
                suppressed,
                "disk buffer cannot write{}; holding its input (when_full = block) \
                 and trying again",
                disk_full_note(e),
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
        Ok(())
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

/// Words for a log line when a write failed because the file system is full.
fn disk_full_note(e: &io::Error) -> &'static str {
    if e.raw_os_error() == Some(28) { " (the file system is full)" } else { "" } // ENOSPC
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
