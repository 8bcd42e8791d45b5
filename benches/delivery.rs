//! Micro-benchmarks of what delivery guarantees cost per event, each measured alone: an
//! acknowledgement handle attached to every event of a batch and fired when the last is
//! dropped, the disk buffer's record codec (encode, decode) on parsed model-server events,
//! and the reading of an Elasticsearch `_bulk` response item by item. Throughput is in
//! events.
//!
//!     cargo bench --bench delivery

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde::de::IntoDeserializer;
use weir::buffers::disk::codec;
use weir::event::{BatchNotifier, Event};
use weir::metrics::{ComponentLabels, ComponentMetrics};
use weir::sinks::elasticsearch::encoder::Op;
use weir::sinks::elasticsearch::service::classify;
use weir::transforms::{TransformConfig, TransformOutput};

/// The allocator of the `weir` binary, so the figures match it.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const JSON_LINE: &str = r#"{"timestamp":"2026-11-27T10:00:00.123Z","level":"INFO","logger":"model_server.predict","model":"churn-xgb","model_version":"3","request_id":"5a60125708bb90c3","latency_ms":10.08,"features":{"tenure_months":53.7,"monthly_charges":51.87,"contract":"one-year"},"prediction":"churn","score":0.5558}"#;

const BATCH: usize = 1000;

/// A batch of parsed prediction logs, as a sink receives them.
fn parsed_batch() -> Vec<Event> {
    let de = toml_edit::Value::InlineTable(toml_edit::InlineTable::new()).into_deserializer();
    let config = TransformConfig::deserialize_typed("parse_json", de).unwrap().unwrap();
    let metrics = ComponentMetrics::new(ComponentLabels::new("bench", "transform", "parse_json"));
    let mut t = config.build(&metrics).map_err(|e| e.message).unwrap();
    let line = Bytes::from_static(JSON_LINE.as_bytes());
    let events = (0..BATCH).map(|_| Event::from_message(line.clone())).collect();
    let mut out = TransformOutput::new(0);
    t.transform(events, &mut out);
    out.primary
}

fn acknowledgements(c: &mut Criterion) {
    let events = parsed_batch();
    let mut g = c.benchmark_group("acknowledgements");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function("clone and drop a batch, no handle", |b| {
        b.iter(|| drop(std::hint::black_box(events.clone())))
    });
    g.bench_function("clone and drop a batch, one handle per batch", |b| {
        b.iter(|| {
            let (n, rx) = BatchNotifier::with_receiver();
            let batch: Vec<Event> = events.iter().map(|e| e.clone().with_notifier(&n)).collect();
            drop(n);
            drop(std::hint::black_box(batch));
            rx
        })
    });
    g.finish();
}

fn codec(c: &mut Criterion) {
    let events = parsed_batch();
    let mut payload = Vec::new();
    codec::encode_events(&events, &mut payload);
    let payload = Bytes::from(payload);
    let mut g = c.benchmark_group("disk buffer codec");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function("encode", |b| {
        let mut out = Vec::with_capacity(payload.len());
        b.iter(|| {
            out.clear();
            codec::encode_events(&events, &mut out);
            out.len()
        })
    });
    g.bench_function("decode", |b| b.iter(|| codec::decode_events(&payload).unwrap().len()));
    g.bench_function("crc32 of the payload", |b| b.iter(|| crc32fast::hash(&payload)));
    g.finish();
    eprintln!("record payload: {} bytes for {BATCH} events", payload.len());
}

/// A `_bulk` response to `BATCH` actions as Elasticsearch writes it under the sink's
/// `filter_path` (errors, items.*.status, items.*.error), every item created or, when
/// `rejected`, the last one refused.
fn bulk_response(rejected: bool) -> Vec<u8> {
    let mut items = vec![r#"{"index":{"status":201}}"#.to_string(); BATCH];
    if rejected {
        items[BATCH - 1] = r#"{"index":{"status":400,"error":{"type":"document_parsing_exception","reason":"failed to parse field [score]"}}}"#.to_string();
    }
    format!(r#"{{"errors":{rejected},"items":[{}]}}"#, items.join(",")).into_bytes()
}

fn bulk_responses(c: &mut Criterion) {
    let ops = vec![Op::Index; BATCH];
    let mut g = c.benchmark_group("elasticsearch bulk response");
    g.throughput(Throughput::Elements(BATCH as u64));
    for (name, rejected) in [("every item created", false), ("one item rejected", true)] {
        let body = bulk_response(rejected);
        g.bench_function(name, |b| b.iter(|| classify(200, &body, &ops)));
    }
    g.finish();
}

criterion_group!(benches, acknowledgements, codec, bulk_responses);
criterion_main!(benches);
