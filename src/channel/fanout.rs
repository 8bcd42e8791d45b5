//! Fan-out: one output feeding every component that lists it among its inputs.
//!
//! The batch is cloned for all consumers but the last, which gets the original. Sends are
//! awaited one after the other, so a consumer whose buffer is full holds the producer back
//! (that is backpressure); a consumer whose buffer still has room never waits for another.
//! A consumer that has stopped is removed, and the events meant for it are marked errored so
//! that the source does not move past them.

use crate::channel::{Batch, BatchSender};
use crate::event::{Event, EventStatus};

/// The consumers of one output.
#[derive(Clone, Default)]
pub struct Fanout {
    targets: Vec<(String, BatchSender)>,
}

impl Fanout {
    pub fn new(targets: Vec<(String, BatchSender)>) -> Self {
        Self { targets }
    }

    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }

    /// Do all consumers take blocks of lines as they are (and is there one)?
    pub fn accepts_lines(&self) -> bool {
        !self.targets.is_empty() && self.targets.iter().all(|(_, t)| t.accepts_lines())
    }

    /// Sends `events` to every consumer. Returns `false` when there is no consumer left.
    pub async fn send(&mut self, events: Vec<Event>) -> bool {
        self.send_batch(Batch::Events(events)).await
    }

    /// Sends a batch or a block of lines to every consumer. Returns `false` when there is no
    /// consumer left.
    pub async fn send_batch(&mut self, batch: Batch) -> bool {
        if batch.is_empty() {
            return !self.targets.is_empty();
        }
        let mut batch = Some(batch);
        let mut i = 0;
        while i < self.targets.len() {
            let last = i + 1 == self.targets.len();
            let Some(copy) = (if last { batch.take() } else { batch.clone() }) else { break };
            match self.targets[i].1.send_batch(copy).await {
                Ok(()) => i += 1,
                Err(lost) => {
                    let (id, _) = self.targets.remove(i);
                    tracing::error!(
                        component = %id,
                        count = lost.len(),
                        "downstream component has stopped; its events will be read again after a restart"
                    );
                    lost.update_status(EventStatus::Errored);
                    if last {
                        break;
                    }
                }
            }
        }
        if let Some(orphans) = batch {
            // The last consumer was removed before it got the original.
            orphans.update_status(EventStatus::Errored);
        }
        !self.targets.is_empty()
    }
}
