//! The acker: advances the acknowledged position over acknowledged records, writes
//! `ack.json` and deletes the segments wholly before it.

use super::*;

pub(super) async fn run_acker(shared: Arc<Shared>) -> Result<(), ComponentError> {
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
