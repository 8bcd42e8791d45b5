//! The disk buffer's tasks against real files: acknowledgement after sync, order, restart,
//! `when_full`, recovery from a corrupt record.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinSet;

use super::*;
use crate::event::Value;
use crate::metrics::ComponentLabels;

struct Buffer {
    upstream: Option<BatchSender>,
    sink: BatchReceiver,
    tasks: JoinSet<Result<(), ComponentError>>,
    shutdown: ShutdownSignal,
    metrics: ComponentMetrics,
}

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// A unique component id, so that tests running at once do not share metric series.
fn unique(name: &str) -> String {
    format!("{name}_{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

fn open(dir: &Path, id: &str, max_bytes: u64, when_full: WhenFull) -> Buffer {
    let metrics = ComponentMetrics::new(ComponentLabels::new(id, "sink", "test"));
    let (upstream, input) = channel::channel(WRITER_INPUT_BYTES, WhenFull::Block, None, None);
    let shutdown = ShutdownSignal::new();
    let settings = Settings {
        id: id.to_string(),
        dir: dir.to_path_buf(),
        max_bytes,
        when_full,
        shutdown_timeout: Duration::from_secs(10),
    };
    let (sink, tasks) = start(settings, input, &metrics, shutdown.clone()).unwrap();
    let mut set = JoinSet::new();
    for (_, t) in tasks {
        set.spawn(t);
    }
    Buffer { upstream: Some(upstream), sink, tasks: set, shutdown, metrics }
}

/// A batch of events numbered from `first`, each `pad` bytes long, with a notifier.
fn batch(first: usize, n: usize, pad: usize) -> (Vec<Event>, oneshot::Receiver<BatchStatus>) {
    let (notifier, rx) = BatchNotifier::with_receiver();
    let events = (first..first + n)
        .map(|i| {
            let mut e = Event::from_message(format!("{i:08} {}", "x".repeat(pad)));
            e.insert_key("n", Value::Integer(i as i64));
            e.insert_key("at", Value::Timestamp(chrono::Utc::now()));
            e.with_notifier(&notifier)
        })
        .collect();
    (events, rx)
}

fn number(e: &Event) -> i64 {
    match e.as_map().and_then(|m| m.get("n")) {
        Some(Value::Integer(n)) => *n,
        other => panic!("no number: {other:?}"),
    }
}

/// Receives `n` events from the sink side.
async fn take(sink: &mut BatchReceiver, n: usize) -> Vec<Event> {
    let mut out = Vec::new();
    while out.len() < n {
        let batch = tokio::time::timeout(Duration::from_secs(30), sink.recv())
            .await
            .expect("the sink got nothing for 30 s")
            .expect("the buffer closed its output");
        out.extend(batch);
    }
    out
}

/// Waits (polling, up to 30 s) until `check` holds.
async fn until(mut check: impl FnMut() -> bool) -> bool {
    for _ in 0..3000 {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

async fn finish(b: Buffer) -> BatchReceiver {
    finish_joined(b).await.0
}

/// [`finish`], with a handle that completes once every task of the buffer has ended (its
/// last position written).
async fn finish_joined(mut b: Buffer) -> (BatchReceiver, tokio::task::JoinHandle<()>) {
    drop(b.upstream.take());
    b.shutdown.trigger(Duration::from_secs(10));
    let sink = b.sink;
    // The caller drains `sink`; tasks end once it has taken everything.
    let joined = tokio::spawn(async move { while b.tasks.join_next().await.is_some() {} });
    (sink, joined)
}

fn segment_files(dir: &Path) -> usize {
    list(dir).unwrap().segments.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sources_are_acknowledged_after_sync_and_the_sink_gets_everything_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let id = unique("order");
    let mut b = open(dir.path(), &id, 2 * 1024 * 1024, WhenFull::Block);
    let tx = b.upstream.clone().unwrap();
    let mut acks = Vec::new();
    for i in 0..100 {
        let (events, ack) = batch(i * 20, 20, 500);
        tx.send(events).await.unwrap();
        acks.push(ack);
    }
    // The sink has read nothing yet; every source batch is acknowledged all the same.
    for ack in acks {
        assert_eq!(ack.await.unwrap(), BatchStatus::Delivered);
    }
    assert!(segment_files(dir.path()) > 1, "1 MiB of events in 256 KiB segments");
    let got = take(&mut b.sink, 2000).await;
    let numbers: Vec<i64> = got.iter().map(number).collect();
    assert_eq!(numbers, (0..2000).collect::<Vec<i64>>());
    assert!(matches!(got[0].as_map().unwrap()["at"], Value::Timestamp(_)));
    let gauges = b.metrics.buffer_gauges();
    assert_eq!(gauges.events.get(), 2000);
    drop(got);
    // Acknowledged by the sink: the position moves, consumed segments go.
    assert!(until(|| gauges.events.get() == 0).await);
    assert!(until(|| segment_files(dir.path()) == 1).await, "consumed segments remain");
    drop(tx);
    let mut sink = finish(b).await;
    assert!(sink.recv().await.is_none());
    assert!(until(|| segment::read_ack(dir.path()).ok().flatten().is_some()).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_with_everything_delivered_leaves_no_segment_and_a_restart_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let id = unique("drained");
    let mut b = open(dir.path(), &id, 2 * 1024 * 1024, WhenFull::Block);
    let tx = b.upstream.clone().unwrap();
    let (events, ack) = batch(0, 50, 100);
    tx.send(events).await.unwrap();
    assert_eq!(ack.await.unwrap(), BatchStatus::Delivered);
    drop(tx);
    drop(take(&mut b.sink, 50).await);
    let mut sink = finish(b).await;
    assert!(sink.recv().await.is_none());
    // The last segment, wholly delivered, is deleted at the stop; the position is past it.
    // (The stop's tasks run on after `finish`: freed segments go before the position is
    // written, so wait for both.)
    let stopped =
        || segment_files(dir.path()) == 0 && segment::read_ack(dir.path()).ok().flatten().is_some();
    assert!(until(stopped).await, "a delivered segment remains, or no position was written");
    let position = segment::read_ack(dir.path()).unwrap().unwrap();
    assert!(position.offset > 0, "{position:?}");

    // A restart delivers nothing again and goes on with a segment after the old one.
    let mut b = open(dir.path(), &id, 2 * 1024 * 1024, WhenFull::Block);
    let tx = b.upstream.clone().unwrap();
    let (events, ack) = batch(50, 10, 100);
    tx.send(events).await.unwrap();
    assert_eq!(ack.await.unwrap(), BatchStatus::Delivered);
    let got = take(&mut b.sink, 10).await;
    let numbers: Vec<i64> = got.iter().map(number).collect();
    assert_eq!(numbers, (50..60).collect::<Vec<i64>>());
    let segments = list(dir.path()).unwrap().segments;
    assert!(segments.iter().all(|(s, _)| *s > position.segment), "{segments:?} vs {position:?}");
    drop(got);
    drop(tx);
    let mut sink = finish(b).await;
    assert!(sink.recv().await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_delivers_again_what_the_sink_did_not_acknowledge() {
    let dir = tempfile::tempdir().unwrap();
    let id = unique("restart");
    let mut b = open(dir.path(), &id, 8 * 1024 * 1024, WhenFull::Block);
    let tx = b.upstream.clone().unwrap();
    for i in 0..10 {
        let (events, ack) = batch(i * 10, 10, 100);
        tx.send(events).await.unwrap();
        assert_eq!(ack.await.unwrap(), BatchStatus::Delivered);
    }
    drop(tx);
    let mut got = take(&mut b.sink, 100).await;
    // The first 40 are delivered; the sink gives up on the rest.
    let rest = got.split_off(40);
    drop(got);
    for e in &rest {
        e.update_status(EventStatus::Errored);
    }
    drop(rest);
    let (mut sink, joined) = finish_joined(b).await;
    assert!(sink.recv().await.is_none());
    drop(sink);
    // Every acknowledgement is in the position once the buffer's tasks have ended (waiting
    // only for a first position could restart from an earlier one).
    joined.await.unwrap();
    assert!(segment::read_ack(dir.path()).ok().flatten().is_some_and(|p| p.offset > 0));

    let mut b = open(dir.path(), &id, 8 * 1024 * 1024, WhenFull::Block);
    let again = take(&mut b.sink, 60).await;
    let numbers: Vec<i64> = again.iter().map(number).collect();
    assert_eq!(numbers, (40..100).collect::<Vec<i64>>());
    drop(again);
    let mut sink = finish(b).await;
    assert!(sink.recv().await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_holds_the_upstream_until_the_sink_frees_space() {
    let dir = tempfile::tempdir().unwrap();
    let id = unique("block");
    let max = 1024 * 1024;
    let mut b = open(dir.path(), &id, max, WhenFull::Block);
    let tx = b.upstream.clone().unwrap();
    // 10 MB of events (19 MB in memory) into a 1 MiB buffer whose sink reads nothing for
    // now: the disk, the writer's group and its input channel hold about half of it.
    let sender = tokio::spawn(async move {
        for i in 0..1000 {
            let (events, _ack) = batch(i * 10, 10, 1000);
            tx.send(events).await.unwrap();
        }
    });
    let gauges = b.metrics.buffer_gauges();
    assert!(until(|| gauges.bytes.get() as u64 > max / 2).await);
    // An observation window: the sender stays blocked and the files within max_bytes.
    for _ in 0..100 {
        assert!(gauges.bytes.get() as u64 <= max, "{} bytes on disk", gauges.bytes.get());
        assert!(!sender.is_finished(), "10 MB went into a 1 MiB buffer without a reader");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // A sink that delivers (drops) what it reads frees the space batch by batch.
    let mut numbers = Vec::new();
    while numbers.len() < 10_000 {
        let got = take(&mut b.sink, 1).await;
        numbers.extend(got.iter().map(number));
    }
    assert_eq!(numbers, (0..10_000).collect::<Vec<i64>>());
    sender.await.unwrap();
    let mut sink = finish(b).await;
    assert!(sink.recv().await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_newest_rejects_what_does_not_fit_and_counts_it() {
    let dir = tempfile::tempdir().unwrap();
    let id = unique("dropnewest");
    let max = 1024 * 1024;
    let mut b = open(dir.path(), &id, max, WhenFull::DropNewest);
    let tx = b.upstream.clone().unwrap();
    let mut outcomes = Vec::new();
    for i in 0..400 {
        let (events, ack) = batch(i * 10, 10, 1000);
        tx.send(events).await.unwrap();
        outcomes.push(ack);
    }
    let mut delivered = 0;
    let mut rejected = 0;
    for ack in outcomes {
        match ack.await.unwrap() {
            BatchStatus::Delivered => delivered += 1,
            BatchStatus::Rejected => rejected += 1,
            BatchStatus::Errored => panic!("errored"),
        }
    }
    assert!(delivered > 0 && rejected > 0, "{delivered} delivered, {rejected} rejected");
    assert_eq!(
        b.metrics.discarded_counter(crate::metrics::discard_reason::BUFFER_FULL).get(),
        rejected * 10
    );
    let gauges = b.metrics.buffer_gauges();
    assert!(gauges.bytes.get() as u64 <= max);
    // What was kept arrives.
    let got = take(&mut b.sink, delivered as usize * 10).await;
    assert_eq!(got.len(), delivered as usize * 10);
    drop(got);
    drop(tx);
    let mut sink = finish(b).await;
    assert!(sink.recv().await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_record_is_dropped_at_start_and_the_rest_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let id = unique("corrupt");
    let b = open(dir.path(), &id, 8 * 1024 * 1024, WhenFull::Block);
    let tx = b.upstream.clone().unwrap();
    for i in 0..5 {
        let (events, ack) = batch(i * 10, 10, 10);
        tx.send(events).await.unwrap();
        assert_eq!(ack.await.unwrap(), BatchStatus::Delivered);
    }
    // A crash: the tasks vanish, nothing is acknowledged.
    let Buffer { mut tasks, sink, .. } = b;
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    drop(sink);
    drop(tx);
    // Flip a byte in the payload of the second record.
    let seg = dir.path().join(segment::segment_name(0));
    let mut bytes = std::fs::read(&seg).unwrap();
    let first_len = u32::from_le_bytes(bytes[0..4].try_into().unwrap()) as usize;
    let second = first_len + segment::HEADER_BYTES as usize;
    bytes[second + 20] ^= 0x40;
    std::fs::write(&seg, &bytes).unwrap();

    let mut b = open(dir.path(), &id, 8 * 1024 * 1024, WhenFull::Block);
    let got = take(&mut b.sink, 40).await;
    let numbers: Vec<i64> = got.iter().map(number).collect();
    let expected: Vec<i64> = (0..10).chain(20..50).collect();
    assert_eq!(numbers, expected);
    let f = families();
    let labels = b.metrics.labels.labels();
    assert_eq!(f.corrupted_records.get_or_create(&labels).get(), 1);
    assert_eq!(
        f.corrupted_bytes.get_or_create(&labels).get(),
        (u32::from_le_bytes(bytes[second..second + 4].try_into().unwrap()) as u64)
            + segment::HEADER_BYTES
    );
    drop(got);
    let mut sink = finish(b).await;
    assert!(sink.recv().await.is_none());
}
