//! Which offset of each partition may be committed: the contiguous acknowledged position.
//!
//! Every batch the source sends registers, per partition, the range of offsets it carries.
//! When the batch's acknowledgement arrives ([`Tracker::ack`], called from whichever thread
//! dropped the batch's last event), the ranges are marked done, and each partition's position
//! advances over the done ranges at its front, in offset order: a batch acknowledged early
//! waits for the batches before it. A batch that was not delivered (`Errored`) holds its
//! partition's position at its first offset for as long as the partition stays assigned:
//! later batches may be delivered, but the position never passes the failed event, which is
//! read again after a restart or by the partition's next owner.
//!
//! Partitions are known from their assignment on; a revoked partition is forgotten, and
//! acknowledgements for it that arrive later are ignored (its new owner reads again from
//! the last commit). An assignment epoch tells a reassigned partition from its former self.
//!
//! Invariant: a position only ever covers offsets whose events were all delivered or
//! rejected; it is the offset to resume from (last delivered offset + 1), as Kafka commits it.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Instant;

use crate::event::BatchStatus;

/// A topic and a partition.
pub type Key = (Arc<str>, i32);

/// The offsets of one partition that a batch carries: `first` to `next - 1`.
#[derive(Debug, Clone)]
pub struct Range {
    pub key: Key,
    pub first: i64,
    pub next: i64,
}

/// A partition whose position stopped at an event that was not delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    pub key: Key,
    pub offset: i64,
}

#[derive(Debug)]
struct Entry {
    batch: u64,
    first: i64,
    next: i64,
    status: Option<BatchStatus>,
}

#[derive(Debug)]
struct Partition {
    epoch: u64,
    inflight: VecDeque<Entry>,
    /// The offset to resume from, as far as acknowledgements allow.
    position: Option<i64>,
    /// The last position handed to a commit.
    committed: Option<i64>,
    /// Where an undelivered event stopped the position.
    held: Option<i64>,
}

#[derive(Debug, Default)]
struct State {
    partitions: HashMap<Key, Partition>,
    /// Which partitions (and assignment epochs) each batch in flight touches.
    batches: HashMap<u64, Vec<(Key, u64)>>,
    next_batch: u64,
    next_epoch: u64,
}

/// The positions of one consumer's partitions. Shared by the polling thread and the
/// acknowledgement callbacks.
#[derive(Debug, Default)]
pub struct Tracker {
    state: Mutex<State>,
    /// Signalled whenever an acknowledgement arrives (for [`Tracker::wait_drained`]).
    acked: Condvar,
}

impl Tracker {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Partitions newly assigned to this consumer.
    pub fn assign(&self, keys: impl IntoIterator<Item = Key>) {
        let mut s = self.lock();
        for key in keys {
            s.next_epoch += 1;
            let epoch = s.next_epoch;
            s.partitions.insert(
                key,
                Partition {
                    epoch,
                    inflight: VecDeque::new(),
                    position: None,
                    committed: None,
                    held: None,
                },
            );
        }
    }

    /// Partitions taken away: forgotten, with whatever is still in flight for them.
    pub fn revoke(&self, keys: &[Key]) {
        let mut s = self.lock();
        for key in keys {
            s.partitions.remove(key);
        }
    }

    /// Partitions currently assigned.
    pub fn assigned(&self) -> Vec<Key> {
        self.lock().partitions.keys().cloned().collect()
    }

    /// Registers a batch about to be sent; returns its id for [`Tracker::ack`]. Ranges of
    /// partitions that are not assigned (revoked while the batch was gathered) are left out.
    pub fn register(&self, ranges: &[Range]) -> u64 {
        let mut s = self.lock();
        s.next_batch += 1;
        let batch = s.next_batch;
        let mut touched = Vec::with_capacity(ranges.len());
        for r in ranges {
            if let Some(p) = s.partitions.get_mut(&r.key) {
                p.inflight.push_back(Entry { batch, first: r.first, next: r.next, status: None });
                touched.push((r.key.clone(), p.epoch));
            }
        }
        if !touched.is_empty() {
            s.batches.insert(batch, touched);
        }
        batch
    }

    /// A batch's acknowledgement. Returns the partitions that this batch newly holds back.
    pub fn ack(&self, batch: u64, status: BatchStatus) -> Vec<Held> {
        let mut held = Vec::new();
        {
            let mut s = self.lock();
            let Some(touched) = s.batches.remove(&batch) else { return held };
            for (key, epoch) in touched {
                let Some(p) = s.partitions.get_mut(&key).filter(|p| p.epoch == epoch) else {
                    continue;
                };
                if let Some(e) = p.inflight.iter_mut().find(|e| e.batch == batch) {
                    e.status = Some(status);
                }
                while p.inflight.front().is_some_and(|e| e.status.is_some()) {
                    let Some(e) = p.inflight.pop_front() else { break };
                    if p.held.is_some() {
                        // Held: nothing moves the position until the partition is read again.
                        continue;
                    }
                    if e.status == Some(BatchStatus::Errored) {
                        p.held = Some(e.first);
                        held.push(Held { key: key.clone(), offset: e.first });
                    } else {
                        p.position = Some(e.next);
                    }
                }
            }
        }
        self.acked.notify_all();
        held
    }

    /// Positions that moved since they were last handed to a commit (of `keys`, or of every
    /// partition), marked as committed now.
    pub fn take_commits(&self, keys: Option<&[Key]>) -> Vec<(Key, i64)> {
        let mut s = self.lock();
        let mut out = Vec::new();
        for (key, p) in s.partitions.iter_mut() {
            if keys.is_some_and(|k| !k.contains(key)) {
                continue;
            }
            if let Some(pos) = p.position
                && p.committed != Some(pos)
            {
                p.committed = Some(pos);
                out.push((key.clone(), pos));
            }
        }
        out
    }

    /// A commit of these positions failed: they are committed again next time.
    pub fn commit_failed(&self, positions: &[(Key, i64)]) {
        let mut s = self.lock();
        for (key, pos) in positions {
            if let Some(p) = s.partitions.get_mut(key)
                && p.committed == Some(*pos)
            {
                p.committed = None;
            }
        }
    }

    /// Batches still in flight for `keys` (or for every partition).
    pub fn in_flight(&self, keys: Option<&[Key]>) -> usize {
        let s = self.lock();
        s.partitions
            .iter()
            .filter(|(k, _)| keys.is_none_or(|keys| keys.contains(k)))
            .map(|(_, p)| p.inflight.len())
            .sum()
    }

    /// Waits until nothing is in flight for `keys` (or for any partition), or until
    /// `deadline`. Returns whether everything was acknowledged.
    pub fn wait_drained(&self, keys: Option<&[Key]>, deadline: Instant) -> bool {
        let mut s = self.lock();
        loop {
            let pending: usize = s
                .partitions
                .iter()
                .filter(|(k, _)| keys.is_none_or(|keys| keys.contains(k)))
                .map(|(_, p)| p.inflight.len())
                .sum();
            if pending == 0 {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            s = match self.acked.wait_timeout(s, deadline - now) {
                Ok((guard, _)) => guard,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn key(p: i32) -> Key {
        (Arc::from("logs"), p)
    }

    fn range(p: i32, first: i64, next: i64) -> Range {
        Range { key: key(p), first, next }
    }

    #[test]
    fn position_advances_only_over_contiguous_acknowledged_batches() {
        let t = Tracker::default();
        t.assign([key(0), key(1)]);
        let a = t.register(&[range(0, 0, 10), range(1, 0, 5)]);
        let b = t.register(&[range(0, 10, 20)]);
        let c = t.register(&[range(0, 20, 30)]);
        // Out of order: c and b before a.
        t.ack(c, BatchStatus::Delivered);
        assert_eq!(t.take_commits(None), vec![]);
        t.ack(b, BatchStatus::Rejected);
        assert_eq!(t.take_commits(None), vec![]);
        t.ack(a, BatchStatus::Delivered);
        let mut commits = t.take_commits(None);
        commits.sort();
        assert_eq!(commits, vec![(key(0), 30), (key(1), 5)]);
        assert_eq!(t.take_commits(None), vec![], "each position is handed out once");
    }

    #[test]
    fn an_errored_batch_holds_its_partition() {
        let t = Tracker::default();
        t.assign([key(0)]);
        let a = t.register(&[range(0, 0, 10)]);
        let b = t.register(&[range(0, 10, 20)]);
        let c = t.register(&[range(0, 20, 30)]);
        t.ack(a, BatchStatus::Delivered);
        assert_eq!(t.ack(b, BatchStatus::Errored), vec![Held { key: key(0), offset: 10 }]);
        assert_eq!(t.ack(c, BatchStatus::Delivered), vec![], "held once");
        assert_eq!(t.take_commits(None), vec![(key(0), 10)]);
        let d = t.register(&[range(0, 30, 40)]);
        t.ack(d, BatchStatus::Delivered);
        assert_eq!(t.take_commits(None), vec![], "never past the failed event");
    }

    #[test]
    fn revoked_partitions_ignore_late_acknowledgements_and_reassignment_starts_fresh() {
        let t = Tracker::default();
        t.assign([key(0)]);
        let a = t.register(&[range(0, 0, 10)]);
        t.revoke(&[key(0)]);
        t.assign([key(0)]);
        t.ack(a, BatchStatus::Delivered);
        assert_eq!(t.take_commits(None), vec![], "a batch of the former assignment");
        assert_eq!(t.in_flight(None), 0);
        // Ranges of partitions not assigned are not registered.
        let b = t.register(&[range(7, 0, 1)]);
        t.ack(b, BatchStatus::Delivered);
        assert_eq!(t.take_commits(None), vec![]);
    }

    #[test]
    fn failed_commits_are_retried() {
        let t = Tracker::default();
        t.assign([key(0)]);
        let a = t.register(&[range(0, 0, 3)]);
        t.ack(a, BatchStatus::Delivered);
        let first = t.take_commits(None);
        t.commit_failed(&first);
        assert_eq!(t.take_commits(None), first);
    }

    #[test]
    fn wait_drained_returns_when_acknowledged_from_another_thread() {
        let t = Arc::new(Tracker::default());
        t.assign([key(0), key(1)]);
        let a = t.register(&[range(0, 0, 1)]);
        let b = t.register(&[range(1, 0, 1)]);
        let deadline = Instant::now() + Duration::from_secs(30);
        let t2 = Arc::clone(&t);
        let acker = std::thread::spawn(move || t2.ack(a, BatchStatus::Delivered));
        assert!(t.wait_drained(Some(&[key(0)]), deadline));
        acker.join().unwrap();
        assert_eq!(t.in_flight(Some(&[key(1)])), 1);
        assert!(!t.wait_drained(None, Instant::now()), "b is still in flight");
        t.ack(b, BatchStatus::Delivered);
        assert!(t.wait_drained(None, Instant::now()));
    }
}
