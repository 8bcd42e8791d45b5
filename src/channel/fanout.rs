//! Fan-out: one output feeding every component that lists it among its inputs.
//!
//! The batch is cloned for all consumers but the last, which gets the original. Sends are
//! awaited one after the other, so a consumer whose buffer is full holds the producer back
//! (that is backpressure); a consumer whose buffer still has room never waits for another.
//! A consumer that has stopped is removed, and the events meant for it are marked errored so
//! that the source does not move past them.
//!
//! Clones share one list of consumers, which a reload replaces ([`Fanout::set`]): a send
//! takes the list as it is when it begins, so a consumer that a reload took out gets the
//! batches already on their way to it, and its input closes once they are delivered.
//!
//! Each fan-out holds the [`TapPoint`] of its output: when a tap is attached (`weir tap`),
//! every batch is offered to it first, which never waits (see [`crate::tap`]); when none is,
//! that costs one atomic load per batch.

use std::sync::{Arc, Mutex, MutexGuard};

use crate::channel::{Batch, BatchSender};
use crate::event::{Event, EventStatus};
use crate::tap::TapPoint;

type Targets = Arc<Vec<(String, BatchSender)>>;

/// The consumers of one output.
#[derive(Clone, Default)]
pub struct Fanout {
    targets: Arc<Mutex<Targets>>,
    tap: Arc<TapPoint>,
}

impl Fanout {
    pub fn new(targets: Vec<(String, BatchSender)>) -> Self {
        Self { targets: Arc::new(Mutex::new(Arc::new(targets))), tap: Arc::default() }
    }

    /// The fan-out offering its batches to the taps of `point` (its output's).
    pub fn tapped(self, point: Arc<TapPoint>) -> Self {
        Self { tap: point, ..self }
    }

    /// Offers events that go nowhere (an output no component reads) to the taps.
    pub fn tap_unsent(&self, events: &[Event]) {
        if self.tap.is_active() {
            self.tap.offer_events(events);
        }
    }

    fn lock(&self) -> MutexGuard<'_, Targets> {
        self.targets.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The consumers now (one lock and a reference count per batch).
    fn snapshot(&self) -> Targets {
        Arc::clone(&self.lock())
    }

    /// Replaces the consumers of every clone. Sends already under way finish with the
    /// consumers they began with.
    pub fn set(&self, targets: Vec<(String, BatchSender)>) {
        *self.lock() = Arc::new(targets);
    }

    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Do all consumers take blocks of lines as they are (and is there one)?
    pub fn accepts_lines(&self) -> bool {
        let targets = self.snapshot();
        !targets.is_empty() && targets.iter().all(|(_, t)| t.accepts_lines())
    }

    /// Takes out a consumer that has stopped (unless a reload has already replaced it).
    fn remove_stopped(&self, id: &str, stopped: &BatchSender) {
        let mut targets = self.lock();
        if targets.iter().any(|(i, t)| i == id && t.same_channel(stopped)) {
            let kept = targets.iter().filter(|(i, _)| i != id).cloned().collect();
            *targets = Arc::new(kept);
        }
    }

    /// Sends `events` to every consumer. Returns `false` when there is no consumer left.
    pub async fn send(&mut self, events: Vec<Event>) -> bool {
        self.send_batch(Batch::Events(events)).await
    }

    /// Sends a batch or a block of lines to every consumer. Returns `false` when there is no
    /// consumer left.
    pub async fn send_batch(&mut self, batch: Batch) -> bool {
        let targets = self.snapshot();
        if batch.is_empty() {
            return !targets.is_empty();
        }
        if self.tap.is_active() {
            self.tap.offer(&batch);
        }
        let mut batch = Some(batch);
        for (i, (id, target)) in targets.iter().enumerate() {
            let last = i + 1 == targets.len();
            let Some(copy) = (if last { batch.take() } else { batch.clone() }) else { break };
            self.deliver(id, target, copy).await;
        }
        if let Some(orphans) = batch {
            // There was no consumer to give it to.
            orphans.update_status(EventStatus::Errored);
        }
        !self.is_empty()
    }

    /// Copies of `events` for each consumer there is now, made by the caller (a transform's
    /// worker, so that copying is not bound to the task that sends), for [`Fanout::send_copies`].
    pub fn copies(&self, events: Vec<Event>) -> Copies {
        let targets = self.snapshot();
        let mut batches: Vec<Vec<Event>> = (1..targets.len()).map(|_| events.clone()).collect();
        batches.push(events);
        Copies { targets, batches }
    }

    /// Sends what [`Fanout::copies`] made, each copy to its consumer. When a reload changed the
    /// consumers since, the original goes to the new ones as [`Fanout::send`] sends it. With
    /// no consumer, the events come back.
    pub async fn send_copies(&mut self, copies: Copies) -> Result<(), Vec<Event>> {
        let Copies { targets, mut batches } = copies;
        let original = batches.pop().unwrap_or_default();
        let now = self.snapshot();
        if now.is_empty() {
            return Err(original);
        }
        if !Arc::ptr_eq(&targets, &now) {
            drop(batches);
            self.send(original).await;
            return Ok(());
        }
        if self.tap.is_active() {
            self.tap.offer_events(&original);
        }
        batches.push(original);
        for ((id, target), events) in targets.iter().zip(batches) {
            self.deliver(id, target, Batch::Events(events)).await;
        }
        Ok(())
    }

    /// Sends `batch` to one consumer; one that has stopped is taken out and the batch marked
    /// errored.
    async fn deliver(&self, id: &str, target: &BatchSender, batch: Batch) {
        if let Err(lost) = target.send_batch(batch).await {
            self.remove_stopped(id, target);
            tracing::error!(
                component = %id,
                count = lost.len(),
                "downstream component has stopped; its events will be read again after a restart"
            );
            lost.update_status(EventStatus::Errored);
        }
    }
}

/// A batch and its copies, one per consumer of a fan-out as they were when made
/// ([`Fanout::copies`]); the original is the last.
pub struct Copies {
    targets: Targets,
    batches: Vec<Vec<Event>>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::{WhenFull, channel};

    fn consumer(id: &str) -> ((String, BatchSender), crate::channel::BatchReceiver) {
        let (tx, rx) = channel(1 << 20, WhenFull::Block, None, None);
        ((id.to_string(), tx), rx)
    }

    fn messages(rx: &mut crate::channel::BatchReceiver) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(batch) = rx.try_recv() {
            out.extend(batch.iter().map(|e| serde_json::to_string(&e.view()).unwrap()));
        }
        out
    }

    #[tokio::test]
    async fn copies_go_one_to_each_consumer_or_to_the_consumers_of_a_reload() {
        let (a, mut rx_a) = consumer("a");
        let (b, mut rx_b) = consumer("b");
        let mut fanout = Fanout::new(vec![a, b]);
        let copies = fanout.copies(vec![Event::from_message("one")]);
        assert!(fanout.send_copies(copies).await.is_ok());
        let (got_a, got_b) = (messages(&mut rx_a), messages(&mut rx_b));
        assert_eq!(got_a.len(), 1);
        assert_eq!(got_a, got_b);

        // Copied for a and b, sent after a reload put c in their place: c gets the events.
        let copies = fanout.copies(vec![Event::from_message("two")]);
        let (c, mut rx_c) = consumer("c");
        fanout.set(vec![c]);
        assert!(fanout.send_copies(copies).await.is_ok());
        assert!(messages(&mut rx_c)[0].contains("two"));
        assert!(messages(&mut rx_a).is_empty() && messages(&mut rx_b).is_empty());

        // No consumer: the events come back.
        fanout.set(Vec::new());
        let copies = fanout.copies(vec![Event::from_message("three")]);
        assert_eq!(fanout.send_copies(copies).await.map_err(|e| e.len()), Err(1));
    }
}
