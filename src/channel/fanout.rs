//! Fan-out: one output feeding every component that lists it among its inputs.
//!
//! The batch is copied for all consumers but one, which gets the original: the last that takes
//! whole events. A consumer that reads only a few fields and passes no event on (`drift`) gets
//! a copy of only those ([`BatchSender::copy_of`]). Sends are awaited one after the other, so
//! a consumer whose buffer is full holds the producer back (that is backpressure); a consumer
//! whose buffer still has room never waits for another.
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
        // The copies go first, so that the original is there to copy from.
        let keeper = keeper(&targets);
        for (_, (id, target)) in targets.iter().enumerate().filter(|(i, _)| *i != keeper) {
            let copy = match &batch {
                Batch::Events(events) => Batch::Events(target.copy_of(events)),
                lines => lines.clone(),
            };
            self.deliver(id, target, copy).await;
        }
        match targets.get(keeper) {
            Some((id, target)) => self.deliver(id, target, batch).await,
            // There was no consumer to give it to.
            None => batch.update_status(EventStatus::Errored),
        }
        !self.is_empty()
    }

    /// Copies of `events` for each consumer there is now, made by the caller (a transform's
    /// worker, so that copying is not bound to the task that sends), for [`Fanout::send_copies`].
    pub fn copies(&self, events: Vec<Event>) -> Copies {
        let targets = self.snapshot();
        let keeper = keeper(&targets);
        let copies = (targets.iter().enumerate())
            .filter(|(i, _)| *i != keeper)
            .map(|(_, (_, target))| target.copy_of(&events))
            .collect();
        Copies { targets, original: events, keeper, copies }
    }

    /// Sends what [`Fanout::copies`] made, each copy to its consumer. When a reload changed the
    /// consumers since, the original goes to the new ones as [`Fanout::send`] sends it. With
    /// no consumer, the events come back.
    pub async fn send_copies(&mut self, copies: Copies) -> Result<(), Vec<Event>> {
        let Copies { targets, original, keeper, copies } = copies;
        let now = self.snapshot();
        if now.is_empty() {
            return Err(original);
        }
        if !Arc::ptr_eq(&targets, &now) {
            drop(copies);
            self.send(original).await;
            return Ok(());
        }
        if self.tap.is_active() {
            self.tap.offer_events(&original);
        }
        let mut copies = copies.into_iter();
        let mut original = Some(original);
        for (i, (id, target)) in targets.iter().enumerate() {
            let events = if i == keeper { original.take() } else { copies.next() };
            if let Some(events) = events {
                self.deliver(id, target, Batch::Events(events)).await;
            }
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

/// The consumer that gets the original of a batch, the others getting copies: the last one
/// that takes whole events, since a copy of only the fields a consumer reads costs less than a
/// whole copy ([`BatchSender::copy_of`]).
fn keeper(targets: &[(String, BatchSender)]) -> usize {
    let last = targets.len().saturating_sub(1);
    targets.iter().rposition(|(_, t)| !t.projects()).unwrap_or(last)
}

/// A batch and its copies for each consumer of a fan-out as they were when made
/// ([`Fanout::copies`]): the original for the `keeper`, copies for the others in order.
pub struct Copies {
    targets: Targets,
    original: Vec<Event>,
    keeper: usize,
    copies: Vec<Vec<Event>>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::{WhenFull, channel};
    use crate::event::parse_path;
    use vrl::value::Value;

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

    /// A consumer that reads a few fields gets copies of only those, carrying the
    /// acknowledgement of the whole event; the others get whole events, the original going to
    /// the last of them wherever the projecting consumer is listed.
    #[tokio::test]
    async fn a_consumer_that_reads_a_few_fields_gets_only_them() {
        use crate::event::{BatchNotifier, BatchStatus};
        let model = vrl::owned_value_path!("model", "name");
        for via_copies in [false, true] {
            let (a, mut rx_a) = consumer("a");
            let (b, mut rx_b) = consumer("b");
            let (mut z, mut rx_z) = consumer("z");
            z.1 = z.1.with_reads(Some(vec![model.clone(), parse_path("absent").unwrap()]));
            let mut fanout = Fanout::new(vec![a, z, b]);
            let (notifier, status) = BatchNotifier::with_receiver();
            let mut event = Event::from_message("a line").with_notifier(&notifier);
            event.insert(&model, Value::from("churn"));
            event.insert_key("features", Value::from("many"));
            drop(notifier);
            let whole_size = {
                let mut whole = event.clone();
                whole.recompute_size();
                whole.size()
            };
            if via_copies {
                let copies = fanout.copies(vec![event]);
                assert!(fanout.send_copies(copies).await.is_ok());
            } else {
                assert!(fanout.send(vec![event]).await);
            }
            let whole = r#"{"features":"many","message":"a line","model":{"name":"churn"}}"#;
            assert_eq!(messages(&mut rx_a), [whole]);
            assert_eq!(messages(&mut rx_b), [whole]);
            let mut projected = rx_z.try_recv().expect("z got a batch");
            let only = serde_json::to_string(&projected[0].view()).unwrap();
            assert_eq!(only, r#"{"model":{"name":"churn"}}"#);
            assert!(projected[0].size() < whole_size, "the channel counts the copy's size");
            // The copy holds the acknowledgement: its failure is the batch's.
            projected.pop().unwrap().update_status(EventStatus::Rejected);
            let status = tokio::time::timeout(std::time::Duration::from_secs(60), status).await;
            assert_eq!(status.expect("every copy settled").unwrap(), BatchStatus::Rejected);
        }
    }
}
