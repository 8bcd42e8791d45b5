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

pub mod fanout;

use std::sync::Arc;

use tokio::sync::{Semaphore, mpsc};
use vrl::path::OwnedValuePath;

use crate::event::{Event, EventStatus, LineBlock, batch_size};
use crate::metrics::BufferGauges;
pub use fanout::{Copies, Fanout};

/// The most batches a channel holds, whatever their size.
pub const MAX_QUEUED_BATCHES: usize = 1024;

/// Default byte capacity of a sink's input buffer (`buffer.max_bytes` of a memory buffer).
/// Small on purpose: it holds a few parts of a file read (at most 64 KiB each), a request-based
/// sink moves events out of it into its batches at once, and memory is what a slow sink
/// costs; larger buffers did not make the benchmarks faster. Raise `buffer.max_bytes` to
/// absorb longer bursts.
pub const DEFAULT_BUFFER_BYTES: usize = 512 * 1024;

/// Byte capacity of a transform's input. A transform works on what it is handed at once and
/// waits on nothing but the next hop, so its queue only evens out its pace against the
/// source's: a few file-source parts are enough, and more would only hold memory.
pub const TRANSFORM_BUFFER_BYTES: usize = 256 * 1024;

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

/// What a channel carries: events, or a block of lines for a consumer that writes lines as
/// read (see [`BatchSender::with_lines`]).
#[derive(Clone, Debug)]
pub enum Batch {
    Events(Vec<Event>),
    Lines(LineBlock),
}

impl Batch {
    /// Number of events.
    pub fn len(&self) -> usize {
        match self {
            Self::Events(e) => e.len(),
            Self::Lines(b) => b.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Estimated bytes held (for a block, its data).
    pub fn size(&self) -> usize {
        match self {
            Self::Events(e) => batch_size(e),
            Self::Lines(b) => b.size(),
        }
    }

    pub fn update_status(&self, status: EventStatus) {
        match self {
            Self::Events(events) => events.iter().for_each(|e| e.update_status(status)),
            Self::Lines(b) => b.update_status(status),
        }
    }

    /// The events, a block turned into the events its source would have built.
    pub fn into_events(self) -> Vec<Event> {
        match self {
            Self::Events(e) => e,
            Self::Lines(b) => b.into_events(),
        }
    }
}

struct Item {
    batch: Batch,
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
    /// The consumer writes a block of lines as it is: sources may send it [`LineBlock`]s.
    lines: bool,
    /// The consumer reads only these fields and passes no input event on: a fan-out may send
    /// it copies holding only them ([`Event::project`]).
    reads: Option<Arc<[OwnedValuePath]>>,
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
    let tx = BatchSender { tx, shared: Arc::clone(&shared), lines: false, reads: None };
    (tx, BatchReceiver { rx, shared })
}

impl BatchSender {
    /// Declares whether the consumer takes blocks of lines ([`BatchReceiver::recv_batch`]
    /// and writing them as they are); only then do sources send it blocks.
    pub fn with_lines(mut self, lines: bool) -> Self {
        self.lines = lines;
        self
    }

    pub fn accepts_lines(&self) -> bool {
        self.lines
    }

    /// Declares the only fields the consumer reads, when it passes no input event on
    /// ([`crate::component::TransformComponent::reads`]).
    pub fn with_reads(mut self, reads: Option<Vec<OwnedValuePath>>) -> Self {
        self.reads = reads.map(Arc::from);
        self
    }

    /// What the consumer should be sent of `events`: copies of only the fields it reads, or
    /// whole copies.
    pub fn copy_of(&self, events: &[Event]) -> Vec<Event> {
        match &self.reads {
            Some(paths) => events.iter().map(|e| e.project(paths)).collect(),
            None => events.to_vec(),
        }
    }

    /// Does the consumer take copies of only some fields ([`BatchSender::copy_of`])?
    pub fn projects(&self) -> bool {
        self.reads.is_some()
    }

    /// Do both send into the same channel?
    pub fn same_channel(&self, other: &BatchSender) -> bool {
        self.tx.same_channel(&other.tx)
    }

    /// Enqueues a batch, waiting for room when the policy is `block`.
    pub async fn send(&self, events: Vec<Event>) -> Result<(), Closed> {
        self.send_batch(Batch::Events(events)).await.map_err(|b| Closed(b.into_events()))
    }

    /// Enqueues a batch or block, waiting for room when the policy is `block`; gives it back
    /// when the receiver is gone.
    pub async fn send_batch(&self, batch: Batch) -> Result<(), Batch> {
        if batch.is_empty() {
            return Ok(());
        }
        let size = batch.size();
        let permits = size.clamp(1, self.shared.max_bytes as usize) as u32;
        let acquired = match self.shared.when_full {
            WhenFull::Block => match self.shared.bytes.acquire_many(permits).await {
                Ok(p) => {
                    p.forget();
                    true
                }
                // The semaphore is never closed; treat it as a closed channel all the same.
                Err(_) => return Err(batch),
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
            self.discard(batch);
            return Ok(());
        }
        let count = batch.len();
        if let Some(g) = &self.shared.gauges {
            g.events.inc_by(count as i64);
            g.bytes.inc_by(i64::from(permits));
        }
        let item = Item { batch, permits };
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
            return Err(item.batch);
        }
        self.discard(item.batch);
        Ok(())
    }

    /// Drops a batch that found the buffer full (`drop_newest`): marked rejected and counted.
    fn discard(&self, batch: Batch) {
        batch.update_status(EventStatus::Rejected);
        if let Some(c) = &self.shared.discarded {
            c.inc_by(batch.len() as u64);
        }
        tracing::debug!(
            count = batch.len(),
            "buffer full; batch discarded (when_full = drop_newest)"
        );
    }
}

impl BatchReceiver {
    /// The next batch, or `None` once every sender is gone and the queue is empty.
    pub async fn recv(&mut self) -> Option<Vec<Event>> {
        self.recv_batch().await.map(Batch::into_events)
    }

    /// A batch if one is queued now.
    pub fn try_recv(&mut self) -> Option<Vec<Event>> {
        self.try_recv_batch().map(Batch::into_events)
    }

    /// The next batch as sent: for a consumer that takes blocks of lines as they are.
    pub async fn recv_batch(&mut self) -> Option<Batch> {
        let item = self.rx.recv().await?;
        Some(self.release(item))
    }

    /// A batch as sent, if one is queued now.
    pub fn try_recv_batch(&mut self) -> Option<Batch> {
        let item = self.rx.try_recv().ok()?;
        Some(self.release(item))
    }

    fn release(&self, item: Item) -> Batch {
        self.shared.bytes.add_permits(item.permits as usize);
        if let Some(g) = &self.shared.gauges {
            g.events.dec_by(item.batch.len() as i64);
            g.bytes.dec_by(i64::from(item.permits));
        }
        item.batch
    }
}

impl Drop for BatchReceiver {
    /// A component that stops with batches still queued for it did not deliver them: they are
    /// marked errored (read again after a restart) rather than counted as delivered.
    fn drop(&mut self) {
        self.rx.close();
        while let Ok(item) = self.rx.try_recv() {
            item.batch.update_status(EventStatus::Errored);
            let batch = self.release(item);
            drop(batch);
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

    /// A block reaches a consumer that takes blocks as it was sent, and any other as the
    /// events of its lines; either way it is counted by its lines.
    #[tokio::test]
    async fn a_block_is_received_as_sent_or_as_its_events() {
        let fields = crate::sources::util::line_fields(&bytes::Bytes::from_static(b"h"), None);
        let (n, _ack) = crate::event::BatchNotifier::with_receiver();
        let block = LineBlock::new(
            bytes::Bytes::from_static(b"a\nb\nc\n"),
            3,
            chrono::Utc::now(),
            fields,
            &n,
        );
        let (tx, mut rx) = channel(1000, WhenFull::Block, None, None);
        let tx = tx.with_lines(true);
        assert!(tx.accepts_lines());
        tx.send_batch(Batch::Lines(block.clone())).await.unwrap();
        tx.send_batch(Batch::Lines(block)).await.unwrap();
        let Some(Batch::Lines(first)) = rx.recv_batch().await else { panic!("not a block") };
        assert_eq!((first.len(), first.size()), (3, 6));
        let events = rx.recv().await.unwrap();
        let messages: Vec<_> = events.iter().map(|e| e.message().unwrap().clone()).collect();
        assert_eq!(messages, ["a", "b", "c"]);
    }

    #[tokio::test]
    async fn send_to_dropped_receiver_returns_events() {
        let (tx, rx) = channel(1000, WhenFull::Block, None, None);
        drop(rx);
        let Closed(back) = tx.send(batch(2, 10)).await.unwrap_err();
        assert_eq!(back.len(), 2);
    }
}
