//! End-to-end acknowledgement: how a source learns that the events it emitted were delivered.
//!
//! A source creates one [`BatchNotifier`] per batch it reads and attaches it to every event of
//! the batch. Events carry clones of the handle through transforms and fan-out; when the last
//! clone is dropped the notifier fires once with the batch's worst status. Sinks mark failures
//! with [`EventStatus`] before they drop an event; an event that is simply dropped (delivered
//! by a sink, or discarded on purpose by a filter) counts as delivered.
//!
//! Invariant: a notifier fires exactly once, after every event that carried it is gone.
//! Sources advance their positions (file checkpoints, Kafka offsets) only from notifications.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use smallvec::SmallVec;
use tokio::sync::oneshot;

/// The outcome of one event's delivery. Ordered from best to worst: the worst status over all
/// the copies of a batch's events becomes the batch's status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum EventStatus {
    /// Discarded on purpose (filter, sample, route with no match): counts as delivered.
    Dropped = 0,
    /// Accepted by its sink.
    Delivered = 1,
    /// Rejected permanently by its sink and sent to the dead-letter destination or logged and
    /// counted there: re-reading it would not help, so the source may move past it.
    Rejected = 2,
    /// Not delivered (the sink gave up on a transient failure, or weir stopped first): the
    /// source must read it again.
    Errored = 3,
}

impl EventStatus {
    fn from_u8(v: u8) -> Self {
        match v {
            0 => Self::Dropped,
            1 => Self::Delivered,
            2 => Self::Rejected,
            _ => Self::Errored,
        }
    }
}

/// The outcome of a whole source batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BatchStatus {
    /// Every event delivered or dropped on purpose.
    Delivered,
    /// Some events rejected permanently (and accounted for), none left undelivered.
    Rejected,
    /// Some events not delivered.
    Errored,
}

impl From<EventStatus> for BatchStatus {
    fn from(s: EventStatus) -> Self {
        match s {
            EventStatus::Dropped | EventStatus::Delivered => Self::Delivered,
            EventStatus::Rejected => Self::Rejected,
            EventStatus::Errored => Self::Errored,
        }
    }
}

type Callback = Box<dyn FnOnce(BatchStatus) + Send + Sync>;

struct NotifierInner {
    status: AtomicU8,
    callback: Option<Callback>,
}

impl Drop for NotifierInner {
    fn drop(&mut self) {
        if let Some(callback) = self.callback.take() {
            let status = EventStatus::from_u8(self.status.load(Ordering::Acquire));
            callback(status.into());
        }
    }
}

/// The acknowledgement handle of one source batch. Cheap to clone (one atomic increment).
#[derive(Clone)]
pub struct BatchNotifier(Arc<NotifierInner>);

impl fmt::Debug for BatchNotifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BatchNotifier")
            .field("status", &EventStatus::from_u8(self.0.status.load(Ordering::Relaxed)))
            .finish()
    }
}

impl BatchNotifier {
    /// A notifier that calls `callback` once every event carrying it has been dropped.
    /// The callback runs on whichever thread drops the last event: keep it short.
    pub fn with_callback(callback: impl FnOnce(BatchStatus) + Send + Sync + 'static) -> Self {
        Self(Arc::new(NotifierInner {
            status: AtomicU8::new(EventStatus::Dropped as u8),
            callback: Some(Box::new(callback)),
        }))
    }

    /// A notifier and the receiver of its one notification.
    pub fn with_receiver() -> (Self, oneshot::Receiver<BatchStatus>) {
        let (tx, rx) = oneshot::channel();
        let notifier = Self::with_callback(move |status| {
            // The receiver may be gone (the source stopped waiting); nothing to do then.
            let _ = tx.send(status);
        });
        (notifier, rx)
    }

    /// Marks the whole batch (a source whose send was interrupted marks it errored).
    pub fn update_status(&self, status: EventStatus) {
        self.0.status.fetch_max(status as u8, Ordering::AcqRel);
    }
}

/// The acknowledgement handles an event carries: usually one, several when events were merged
/// (multi-line aggregation across reads), none when acknowledgements are off.
#[derive(Clone, Default)]
pub struct EventFinalizers(SmallVec<[BatchNotifier; 1]>);

impl fmt::Debug for EventFinalizers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EventFinalizers({})", self.0.len())
    }
}

impl EventFinalizers {
    pub fn add(&mut self, notifier: &BatchNotifier) {
        if !self.0.iter().any(|n| Arc::ptr_eq(&n.0, &notifier.0)) {
            self.0.push(notifier.clone());
        }
    }

    pub fn merge(&mut self, other: EventFinalizers) {
        for n in other.0 {
            if !self.0.iter().any(|m| Arc::ptr_eq(&m.0, &n.0)) {
                self.0.push(n);
            }
        }
    }

    /// Takes `other`'s handles, skipping those equal to the last one held: the events of a
    /// sink's batch usually carry the same one or two, so the handles of a whole batch fit
    /// in a few slots and are released together. Not a full deduplication (a handle seen
    /// earlier may be held twice, which changes nothing); constant work per event.
    pub fn absorb(&mut self, other: EventFinalizers) {
        for n in other.0 {
            if !self.0.last().is_some_and(|m| Arc::ptr_eq(&m.0, &n.0)) {
                self.0.push(n);
            }
        }
    }

    pub fn update_status(&self, status: EventStatus) {
        for n in &self.0 {
            n.update_status(status);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::event::Event;

    fn recorder() -> (BatchNotifier, Arc<Mutex<Vec<BatchStatus>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = Arc::clone(&seen);
        let n = BatchNotifier::with_callback(move |st| s.lock().unwrap().push(st));
        (n, seen)
    }

    #[test]
    fn fires_once_after_the_last_copy_with_the_worst_status() {
        let (n, seen) = recorder();
        let a = Event::from_message("a").with_notifier(&n);
        let b = a.clone();
        let c = Event::from_message("c").with_notifier(&n);
        drop(n);
        drop(a);
        b.update_status(EventStatus::Rejected);
        drop(b);
        assert!(seen.lock().unwrap().is_empty(), "fired before every copy was gone");
        c.update_status(EventStatus::Delivered);
        drop(c);
        assert_eq!(*seen.lock().unwrap(), vec![BatchStatus::Rejected]);
    }

    #[test]
    fn errored_outranks_rejected() {
        let (n, seen) = recorder();
        let a = Event::from_message("a").with_notifier(&n);
        drop(n);
        a.update_status(EventStatus::Errored);
        a.update_status(EventStatus::Rejected);
        drop(a);
        assert_eq!(*seen.lock().unwrap(), vec![BatchStatus::Errored]);
    }

    #[test]
    fn merged_events_hold_both_batches() {
        let (n1, seen1) = recorder();
        let (n2, seen2) = recorder();
        let mut a = Event::from_message("a").with_notifier(&n1);
        let mut b = Event::from_message("b").with_notifier(&n2);
        drop((n1, n2));
        a.merge_finalizers(&mut b);
        drop(b);
        assert!(seen2.lock().unwrap().is_empty());
        drop(a);
        assert_eq!(seen1.lock().unwrap().len(), 1);
        assert_eq!(seen2.lock().unwrap().len(), 1);
    }
}
