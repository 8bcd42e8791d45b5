//! Batching: events are grouped per destination (an index, a tenant) until a batch reaches
//! `max_events` or `max_bytes`, or until `timeout_secs` after its first event, whichever comes
//! first. When no event has arrived for `idle_timeout_secs`, the open batches go at once
//! however small (as Logstash's `pipeline.batch.delay`): a quiet input does not hold its last
//! events for the whole timeout, while a busy one still fills its batches.
//!
//! ```toml
//! batch.max_events = 10000
//! batch.max_bytes = 5000000
//! batch.timeout_secs = 1.0
//! batch.idle_timeout_secs = 0.05
//! ```
//!
//! Invariants: a batch never holds more than `max_events` items, nor more than `max_bytes`
//! unless one item alone is larger; the open batches together hold at most
//! `2 * max_bytes` (past that the oldest is sent early), so many destinations cannot grow
//! memory without bound. The clock is tokio's, so tests run it paused.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::Duration;

use serde::Deserialize;
use tokio::time::Instant;

use crate::error::ConfigIssue;

/// `batch` of a sink. Each sink supplies its own defaults.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchConfig {
    /// Most events in one request.
    pub max_events: Option<usize>,
    /// Most encoded (uncompressed) bytes in one request.
    pub max_bytes: Option<usize>,
    /// Longest wait, from a batch's first event, before it is sent however small.
    pub timeout_secs: Option<f64>,
    /// Send the open batches when no event has arrived for this long (default 0.05; at most
    /// `timeout_secs`).
    pub idle_timeout_secs: Option<f64>,
}

/// Batch limits with every default filled in.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BatchSettings {
    pub max_events: usize,
    pub max_bytes: usize,
    pub timeout: Duration,
    /// Quiet time of the input after which open batches are sent.
    pub idle_timeout: Duration,
}

/// Default quiet time before open batches are sent (Logstash's `pipeline.batch.delay`).
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_millis(50);

impl BatchConfig {
    /// An empty table: every limit from the sink's defaults.
    pub const fn unset() -> Self {
        Self { max_events: None, max_bytes: None, timeout_secs: None, idle_timeout_secs: None }
    }

    pub fn check(&self) -> Vec<ConfigIssue> {
        let mut issues = Vec::new();
        if self.max_events == Some(0) {
            issues.push(ConfigIssue::field(
                "batch.max_events",
                "batch.max_events must be at least 1",
            ));
        }
        if self.max_bytes == Some(0) {
            issues
                .push(ConfigIssue::field("batch.max_bytes", "batch.max_bytes must be at least 1"));
        }
        if let Some(t) = self.timeout_secs
            && !(t.is_finite() && t > 0.0 && t <= 3600.0)
        {
            issues.push(ConfigIssue::field(
                "batch.timeout_secs",
                "batch.timeout_secs must be a number of seconds above 0 and at most 3600",
            ));
        }
        if let Some(t) = self.idle_timeout_secs
            && !(t.is_finite() && t > 0.0 && t <= 3600.0)
        {
            issues.push(ConfigIssue::field(
                "batch.idle_timeout_secs",
                "batch.idle_timeout_secs must be a number of seconds above 0 and at most 3600",
            ));
        }
        issues
    }

    /// The limits, each from the config or else from `defaults`.
    pub fn settings(&self, defaults: BatchSettings) -> BatchSettings {
        let secs = |v: Option<f64>, default: Duration| {
            v.filter(|t| t.is_finite() && *t > 0.0)
                .map_or(default, |t| Duration::from_secs_f64(t.min(3600.0)))
        };
        let timeout = secs(self.timeout_secs, defaults.timeout);
        BatchSettings {
            max_events: self.max_events.unwrap_or(defaults.max_events).max(1),
            max_bytes: self.max_bytes.unwrap_or(defaults.max_bytes).max(1),
            timeout,
            idle_timeout: secs(self.idle_timeout_secs, defaults.idle_timeout).min(timeout),
        }
    }
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self::unset()
    }
}

/// Something that can be batched: it knows its size in bytes.
pub trait ByteSize {
    fn byte_size(&self) -> usize;
}

/// A batch ready to be sent.
#[derive(Debug)]
pub struct Batch<K, T> {
    pub key: K,
    pub items: Vec<T>,
    pub bytes: usize,
}

struct Open<T> {
    items: Vec<T>,
    bytes: usize,
    deadline: Instant,
    /// Order of opening, to find the oldest batch.
    seq: u64,
}

/// Open batches, one per key.
pub struct Batcher<K, T> {
    settings: BatchSettings,
    open: HashMap<K, Open<T>>,
    total_bytes: usize,
    seq: u64,
    /// Items of the batch taken last: a batch opened while no other is open starts with room
    /// for as many and an eighth more. Grown by doubling instead, a Loki batch of about 8,600
    /// entries had room for 16,384, and both vectors were alive while it grew. Only then:
    /// with several destinations open, one figure is no guide to the next destination's
    /// batch, and room reserved for each would add up.
    last_len: usize,
}

impl<K: Eq + Hash + Clone, T: ByteSize> Batcher<K, T> {
    pub fn new(settings: BatchSettings) -> Self {
        Self { settings, open: HashMap::new(), total_bytes: 0, seq: 0, last_len: 0 }
    }

    /// Adds `item` to the batch of `key`. Returns the batches that must go now: the batch
    /// the item would overflow, the batch it filled, or the oldest batch when the open batches
    /// together exceed twice `max_bytes`.
    pub fn push(&mut self, key: K, item: T, out: &mut Vec<Batch<K, T>>) {
        let size = item.byte_size();
        // An item that would push its batch over max_bytes closes that batch first.
        if let Some(open) = self.open.get(&key)
            && !open.items.is_empty()
            && open.bytes + size > self.settings.max_bytes
            && let Some(b) = self.take(&key)
        {
            out.push(b);
        }
        let now = Instant::now();
        let timeout = self.settings.timeout;
        let seq = &mut self.seq;
        let room = if self.open.is_empty() {
            (self.last_len + self.last_len / 8).min(self.settings.max_events)
        } else {
            0
        };
        let open = self.open.entry(key.clone()).or_insert_with(|| {
            *seq += 1;
            Open { items: Vec::with_capacity(room), bytes: 0, deadline: now + timeout, seq: *seq }
        });
        open.items.push(item);
        open.bytes += size;
        self.total_bytes += size;
        if (open.items.len() >= self.settings.max_events || open.bytes >= self.settings.max_bytes)
            && let Some(b) = self.take(&key)
        {
            out.push(b);
        }
        while self.total_bytes > self.settings.max_bytes.saturating_mul(2) {
            let Some(oldest) = self.open.iter().min_by_key(|(_, o)| o.seq).map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some(b) = self.take(&oldest) {
                out.push(b);
            }
        }
    }

    fn take(&mut self, key: &K) -> Option<Batch<K, T>> {
        let open = self.open.remove(key)?;
        self.total_bytes -= open.bytes;
        self.last_len = open.items.len();
        Some(Batch { key: key.clone(), items: open.items, bytes: open.bytes })
    }

    /// When the earliest open batch times out.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.open.values().map(|o| o.deadline).min()
    }

    /// Takes every batch whose time is up at `now`.
    pub fn take_expired(&mut self, now: Instant, out: &mut Vec<Batch<K, T>>) {
        let expired: Vec<K> =
            self.open.iter().filter(|(_, o)| o.deadline <= now).map(|(k, _)| k.clone()).collect();
        for k in expired {
            if let Some(b) = self.take(&k) {
                out.push(b);
            }
        }
    }

    /// Takes every open batch (the input has ended).
    pub fn take_all(&mut self, out: &mut Vec<Batch<K, T>>) {
        let keys: Vec<K> = self.open.keys().cloned().collect();
        for k in keys {
            if let Some(b) = self.take(&k) {
                out.push(b);
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct It(usize);
    impl ByteSize for It {
        fn byte_size(&self) -> usize {
            self.0
        }
    }

    fn settings(max_events: usize, max_bytes: usize, timeout_ms: u64) -> BatchSettings {
        BatchSettings {
            max_events,
            max_bytes,
            timeout: Duration::from_millis(timeout_ms),
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn full_by_count_or_by_bytes() {
        let mut b = Batcher::new(settings(3, 100, 1000));
        let mut out = Vec::new();
        b.push("a", It(10), &mut out);
        b.push("a", It(10), &mut out);
        assert!(out.is_empty());
        b.push("a", It(10), &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].items.len(), out[0].bytes), (3, 30));
        out.clear();
        // 60 + 50 would exceed 100 bytes: the first batch goes alone.
        b.push("a", It(60), &mut out);
        b.push("a", It(50), &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].bytes, 60);
        out.clear();
        // One item bigger than max_bytes goes alone, at once.
        b.push("b", It(500), &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].key, "b");
    }

    #[tokio::test(start_paused = true)]
    async fn timeout_starts_at_the_first_event_of_each_batch() {
        let mut b = Batcher::new(settings(100, 10_000, 1000));
        let mut out = Vec::new();
        b.push("a", It(1), &mut out);
        tokio::time::advance(Duration::from_millis(600)).await;
        b.push("b", It(1), &mut out);
        b.push("a", It(1), &mut out);
        let first = b.next_deadline().unwrap();
        tokio::time::sleep_until(first).await;
        b.take_expired(Instant::now(), &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].key, out[0].items.len()), ("a", 2));
        out.clear();
        // "b" opened 600 ms later, so it is due 600 ms later.
        tokio::time::advance(Duration::from_millis(599)).await;
        b.take_expired(Instant::now(), &mut out);
        assert!(out.is_empty());
        tokio::time::advance(Duration::from_millis(1)).await;
        b.take_expired(Instant::now(), &mut out);
        assert_eq!(out.len(), 1);
        assert!(b.is_empty() && b.next_deadline().is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_batch_has_room_for_as_many_items_as_the_last() {
        let mut b = Batcher::new(settings(100, 80, 1000));
        let mut out = Vec::new();
        for _ in 0..8 {
            b.push("a", It(10), &mut out);
        }
        assert_eq!(out.len(), 1, "full at 80 bytes");
        // The next batch is opened with room for 8 and an eighth: 9 items, and no growth.
        for _ in 0..9 {
            b.push("a", It(8), &mut out);
        }
        b.take_all(&mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(out[1].items.len(), 9);
        assert_eq!(out[1].items.capacity(), 9);
        // A small batch (by time) makes the next one small again.
        b.push("a", It(1), &mut out);
        tokio::time::advance(Duration::from_millis(1000)).await;
        b.take_expired(Instant::now(), &mut out);
        assert_eq!(out[2].items.len(), 1);
        b.push("a", It(1), &mut out);
        b.take_all(&mut out);
        assert_eq!(out[3].items.capacity(), 1);
        // Beside another open batch, a new one reserves nothing ahead.
        for _ in 0..8 {
            b.push("a", It(10), &mut out);
        }
        b.push("a", It(1), &mut out);
        b.push("b", It(1), &mut out);
        b.take_all(&mut out);
        let second = out[5..].iter().find(|x| x.key == "b").unwrap();
        assert!(second.items.capacity() < 9, "{}", second.items.capacity());
    }

    #[tokio::test(start_paused = true)]
    async fn many_destinations_stay_within_twice_max_bytes() {
        let mut b = Batcher::new(settings(1000, 100, 60_000));
        let mut out = Vec::new();
        for k in 0..50 {
            b.push(k, It(9), &mut out);
            assert!(b.total_bytes <= 200, "open batches hold {} bytes", b.total_bytes);
        }
        // The oldest destinations were sent early, in order of opening.
        assert_eq!(out.first().map(|b| b.key), Some(0));
        let sent: usize = out.iter().map(|b| b.items.len()).sum();
        let mut rest = Vec::new();
        b.take_all(&mut rest);
        assert_eq!(sent + rest.iter().map(|b| b.items.len()).sum::<usize>(), 50);
    }
}
