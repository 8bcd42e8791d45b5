//! The reader: records in order up to what the writer has synced, decoded and handed to
//! the sink, one notifier per record.

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
