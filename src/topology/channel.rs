//! The bounded channel in front of every transform and sink: batches of events, limited in
//! estimated bytes.
//!
//! Capacity is counted twice, and both limits are named:
//! - bytes: the sum of [`Event::size`] of the queued events never exceeds `max_bytes` (a single
//!   batch larger than the whole buffer is admitted alone, when the buffer is empty);
//! - batches: at most [`MAX_QUEUED_BATCHES`] batches, so a stream of tiny batches cannot grow
//!   the queue's bookkeeping without bound.
//!
//! When the buffer is full, `when_full = "block"` makes the sender wait (backpressure travels
//! upstream to the source), `"drop_newest"` discards the incoming batch, counts it and marks its
//! events rejected so that sources do not wait for them.

use std::sync::Arc;

use tokio::sync::{Semaphore, mpsc};

use crate::event::{Event, EventStatus, batch_size};
use crate::metrics::BufferGauges;

/// The most batches a channel holds, whatever their size.
pub const MAX_QUEUED_BATCHES: usize = 1024;

/// Default byte capacity of a component's input buffer.
/// Small on purpose: a part of a file read (at most 256 KiB) is well under it, and memory is
/// what a slow sink costs. 2 MiB (measured alone and together with smaller Elasticsearch
/// requests) ran every scenario of `benches/compare` as fast as 4 MiB with less peak memory
/// (BENCHMARKS.md). Raise `buffer.max_bytes` to absorb longer bursts.
pub const DEFAULT_BUFFER_BYTES: usize = 2 * 1024 * 1024;

/// What a full buffer does to the sender.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WhenFull {
    /// Wait until there is room: backpressure.
    #[default]
    Block,
    /// Discard the incoming batch (counted, and marked rejected).
    DropNewest,
}

struct Item {
    events: Vec<Event>,
    permits: u32,
}

struct Shared {
    /// Free capacity in bytes. A sender takes permits before it enqueues; the receiver
    /// returns them when it takes the batch out.
    bytes: Semaphore,
    max_bytes: u32,
    when_full: WhenFull,
    gauges: Option<BufferGauges>,
    discarded: Option<prometheus_client::metrics::counter::Counter>,
}

/// Sending half; cheap to clone (every upstream component holds one).
#[derive(Clone)]
pub struct BatchSender {
    tx: mpsc::Sender<Item>,
    shared: Arc<Shared>,
}

/// Receiving half, owned by the component whose input this is.
pub struct BatchReceiver {
    rx: mpsc::Receiver<Item>,
    shared: Arc<Shared>,
}

/// The receiver is gone: the downstream component stopped.
#[derive(Debug)]
pub struct Closed(pub Vec<Event>);

/// Creates a channel holding at most `max_bytes` of events.
pub fn channel(
    max_bytes: usize,
    when_full: WhenFull,
    gauges: Option<BufferGauges>,
    discarded: Option<prometheus_client::metrics::counter::Counter>,
) -> (BatchSender, BatchReceiver) {
    let max_bytes = max_bytes.clamp(1, u32::MAX as usize) as u32;
    if let Some(g) = &gauges {
        g.max_bytes.set(i64::from(max_bytes));
    }
    let shared = Arc::new(Shared {
        bytes: Semaphore::new(max_bytes as usize),
        max_bytes,
        when_full,
        gauges,
        discarded,
    });
    let (tx, rx) = mpsc::channel(MAX_QUEUED_BATCHES);
    (BatchSender { tx, shared: Arc::clone(&shared) }, BatchReceiver { rx, shared })
}

impl BatchSender {
    /// Enqueues a batch, waiting for room when the policy is `block`.
    pub async fn send(&self, events: Vec<Event>) -> Result<(), Closed> {
        if events.is_empty() {
            return Ok(());
        }
        let size = batch_size(&events);
        let permits = size.clamp(1, self.shared.max_bytes as usize) as u32;
        let acquired = match self.shared.when_full {
            WhenFull::Block => match self.shared.bytes.acquire_many(permits).await {
                Ok(p) => {
                    p.forget();
                    true
                }
                // The semaphore is never closed; treat it as a closed channel all the same.
                Err(_) => return Err(Closed(events)),
            },
            WhenFull::DropNewest => match self.shared.bytes.try_acquire_many(permits) {
                Ok(p) => {
                    p.forget();
                    true
                }
                Err(_) => false,
            },
        };
        if !acquired {
            self.discard(events);
            return Ok(());
        }
        let count = events.len();
        if let Some(g) = &self.shared.gauges {
            g.events.inc_by(count as i64);
            g.bytes.inc_by(i64::from(permits));
        }
        let item = Item { events, permits };
        let refused = match self.shared.when_full {
            WhenFull::Block => match self.tx.send(item).await {
                Ok(()) => return Ok(()),
                Err(mpsc::error::SendError(item)) => (item, true),
            },
            // The batch-count limit is a limit too: a full queue of small batches discards
            // rather than making the sender wait.
            WhenFull::DropNewest => match self.tx.try_send(item) {
                Ok(()) => return Ok(()),
                Err(mpsc::error::TrySendError::Full(item)) => (item, false),
                Err(mpsc::error::TrySendError::Closed(item)) => (item, true),
            },
        };
        let (item, closed) = refused;
        self.shared.bytes.add_permits(item.permits as usize);
        if let Some(g) = &self.shared.gauges {
            g.events.dec_by(count as i64);
            g.bytes.dec_by(i64::from(permits));
        }
        if closed {
            return Err(Closed(item.events));
        }
        self.discard(item.events);
        Ok(())
    }

    /// Drops a batch that found the buffer full (`drop_newest`): marked rejected and counted.
    fn discard(&self, events: Vec<Event>) {
        for e in &events {
            e.update_status(EventStatus::Rejected);
        }
        if let Some(c) = &self.shared.discarded {
            c.inc_by(events.len() as u64);
        }
        tracing::debug!(
            count = events.len(),
            "buffer full; batch discarded (when_full = drop_newest)"
        );
    }
}

impl BatchReceiver {
    /// The next batch, or `None` once every sender is gone and the queue is empty.
    pub async fn recv(&mut self) -> Option<Vec<Event>> {
        let item = self.rx.recv().await?;
        Some(self.release(item))
    }

    /// A batch if one is queued now.
    pub fn try_recv(&mut self) -> Option<Vec<Event>> {
        let item = self.rx.try_recv().ok()?;
        Some(self.release(item))
    }

    fn release(&self, item: Item) -> Vec<Event> {
        self.shared.bytes.add_permits(item.permits as usize);
        if let Some(g) = &self.shared.gauges {
            g.events.dec_by(item.events.len() as i64);
            g.bytes.dec_by(i64::from(item.permits));
        }
        item.events
    }
}

impl Drop for BatchReceiver {
    /// A component that stops with batches still queued for it did not deliver them: they are
    /// marked errored (read again after a restart) rather than counted as delivered.
    fn drop(&mut self) {
        self.rx.close();
        while let Ok(item) = self.rx.try_recv() {
            for e in &item.events {
                e.update_status(EventStatus::Errored);
            }
            let events = self.release(item);
            drop(events);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn batch(n: usize, len: usize) -> Vec<Event> {
        (0..n).map(|_| Event::from_message(vec![b'x'; len])).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn blocks_when_full_and_resumes_when_drained() {
        let one = batch_size(&batch(1, 100));
        let (tx, mut rx) = channel(one * 2, WhenFull::Block, None, None);
        tx.send(batch(1, 100)).await.unwrap();
        tx.send(batch(1, 100)).await.unwrap();
        let third = tx.send(batch(1, 100));
        tokio::pin!(third);
        assert!(tokio::time::timeout(Duration::from_secs(60), &mut third).await.is_err());
        assert_eq!(rx.recv().await.unwrap().len(), 1);
        third.await.unwrap();
    }

    #[tokio::test]
    async fn drop_newest_discards_and_rejects() {
        let one = batch_size(&batch(1, 100));
        let (tx, mut rx) = channel(one, WhenFull::DropNewest, None, None);
        tx.send(batch(1, 100)).await.unwrap();
        tx.send(batch(1, 100)).await.unwrap();
        drop(tx);
        assert_eq!(rx.recv().await.unwrap().len(), 1);
        assert!(rx.recv().await.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn drop_newest_never_waits_on_the_batch_count_limit() {
        let (tx, mut rx) = channel(usize::MAX >> 1, WhenFull::DropNewest, None, None);
        for _ in 0..MAX_QUEUED_BATCHES + 10 {
            tokio::time::timeout(Duration::from_secs(60), tx.send(batch(1, 1)))
                .await
                .expect("a drop_newest sender waited for room")
                .unwrap();
        }
        drop(tx);
        let mut received = 0;
        while rx.recv().await.is_some() {
            received += 1;
        }
        assert_eq!(received, MAX_QUEUED_BATCHES);
    }

    #[tokio::test]
    async fn oversized_batch_passes_alone() {
        let (tx, mut rx) = channel(10, WhenFull::Block, None, None);
        tx.send(batch(3, 100)).await.unwrap();
        assert_eq!(rx.recv().await.unwrap().len(), 3);
    }

    #[tokio::test]
    async fn batches_left_in_a_dropped_receiver_are_errored() {
        let (n, ack) = crate::event::BatchNotifier::with_receiver();
        let (tx, rx) = channel(1000, WhenFull::Block, None, None);
        tx.send(vec![Event::from_message("queued").with_notifier(&n)]).await.unwrap();
        drop(n);
        drop(rx);
        assert_eq!(ack.await.unwrap(), crate::event::BatchStatus::Errored);
        // The sender is still there: the events did not wait for it to go.
        drop(tx);
    }

    #[tokio::test]
    async fn send_to_dropped_receiver_returns_events() {
        let (tx, rx) = channel(1000, WhenFull::Block, None, None);
        drop(rx);
        let Closed(back) = tx.send(batch(2, 10)).await.unwrap_err();
        assert_eq!(back.len(), 2);
    }
}
