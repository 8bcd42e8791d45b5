//! Micro-benchmarks of the hot stages, each measured alone: line framing, the parsers on the
//! model-server lines they meet in practice, and a syslog message to an event (with its
//! header's fields left unread, and read by serializing the whole event). Throughput is in
//! input bytes.
//!
//!     cargo bench --bench parse

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use serde::de::IntoDeserializer;
use weir::event::Event;
use weir::metrics::{ComponentLabels, ComponentMetrics};
use weir::sources::util::lines::{LineFramer, Oversize};
use weir::transforms::{Transform, TransformConfig, TransformOutput};

/// The allocator of the `weir` binary, so the figures match it.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const JSON_LINE: &str = r#"{"timestamp":"2026-11-27T10:00:00.123Z","level":"INFO","logger":"model_server.predict","model":"churn-xgb","model_version":"3","request_id":"5a60125708bb90c3","latency_ms":10.08,"features":{"tenure_months":53.7,"monthly_charges":51.87,"contract":"one-year"},"prediction":"churn","score":0.5558}"#;
const ACCESS_LINE: &str = r#"2018-10-15 13:56:18,976 [INFO ] W-9000-resnet-18_1.0 ACCESS_LOG - /127.0.0.1:64003 "POST /predictions/resnet-18 HTTP/1.1" 200 118"#;
const SYSLOG_LINE: &str = r#"<134>1 2026-11-27T10:00:34.274Z gpu-2 kserve 1024 INFER [model@32473 name="resnet-1" rev="1"] 2022-03-01T00:19:27,304 - /172.17.0.1:55078 "PUT /predictions/BERTSeqClassification HTTP/1.1" 200 39113"#;
const SYSLOG_LINE_NO_SD: &str = "<86>1 2026-06-24T18:55:11.000Z combo ftpd 28562 - - connection from 218.69.108.57 () at Fri Jun 24 18:55:11 2005";
const KV_LINE: &str = r#"ts=2026-11-27T10:00:00Z level=info model=resnet-18 version=1.0 latency_ms=118 status=200 msg="prediction served""#;

fn transform(toml: &str) -> Box<dyn Transform> {
    let doc: toml_edit::DocumentMut = toml.parse().unwrap();
    let ty = doc["type"].as_str().unwrap().to_string();
    let mut table = doc.as_table().clone();
    table.remove("type");
    let de = toml_edit::Value::InlineTable(table.into_inline_table()).into_deserializer();
    let config = TransformConfig::deserialize_typed(&ty, de).unwrap().unwrap();
    let metrics = ComponentMetrics::new(ComponentLabels::new("bench", "transform", &ty));
    config.build(&metrics).map_err(|e| e.message).unwrap()
}

fn batch(line: &str, n: usize) -> Vec<Event> {
    let bytes = Bytes::copy_from_slice(line.as_bytes());
    (0..n).map(|_| Event::from_message(bytes.clone())).collect()
}

fn parsers(c: &mut Criterion) {
    let cases = [
        ("parse_json", JSON_LINE, "type = \"parse_json\""),
        (
            "parse_grok",
            ACCESS_LINE,
            r#"type = "parse_grok"
pattern = '%{TIMESTAMP_ISO8601:timestamp} \[%{LOGLEVEL:level}\s*\] %{NOTSPACE:worker} ACCESS_LOG - /%{IP:client.ip}:%{INT:client.port:int} "%{WORD:method} /predictions/%{NOTSPACE:model} HTTP/%{NUMBER}" %{INT:status:int} %{INT:latency_ms:int}'"#,
        ),
        (
            "parse_regex",
            ACCESS_LINE,
            r#"type = "parse_regex"
pattern = '^(?P<timestamp>\S+ \S+) \[(?P<level>\w+)\s*\] (?P<worker>\S+) ACCESS_LOG - /(?P<client>\S+) "(?P<method>\w+) /predictions/(?P<model>\S+) HTTP/[\d.]+" (?P<status>\d+) (?P<latency_ms>\d+)'
types = { status = "int", latency_ms = "int" }"#,
        ),
        ("parse_kv", KV_LINE, "type = \"parse_kv\""),
        ("parse_logfmt", KV_LINE, "type = \"parse_logfmt\""),
        (
            "parse_timestamp",
            "2018-10-15 13:56:18,976",
            "type = \"parse_timestamp\"\nfield = \"message\"\nformats = [\"%Y-%m-%d %H:%M:%S,%3f\"]\ntimezone = \"UTC\"",
        ),
    ];
    let n = 1000;
    let mut group = c.benchmark_group("parse");
    for (name, line, toml) in cases {
        let mut t = transform(toml);
        group.throughput(Throughput::Bytes((line.len() * n) as u64));
        group.bench_with_input(BenchmarkId::from_parameter(name), &line, |b, line| {
            let mut out = TransformOutput::new(1);
            b.iter_batched(
                || batch(line, n),
                |events| {
                    t.transform(events, &mut out);
                    std::mem::take(&mut out.primary)
                },
                criterion::BatchSize::LargeInput,
            );
        });
    }
    group.finish();
}

/// Frames `text` read 256 KiB at a time, each read's lines taken as one block first when
/// `blocks` (as the file source does for sinks that write lines as read); returns the lines.
fn frame(text: &[u8], blocks: bool) -> usize {
    let mut framer = LineFramer::new(0, 100 * 1024, Oversize::Truncate);
    let mut reader = text;
    let mut lines = Vec::new();
    let mut count = 0;
    while framer.read_from(&mut reader, 256 * 1024).unwrap() > 0 {
        if blocks && let Some((_, n)) = framer.take_block() {
            count += n;
        }
        framer.drain_lines(&mut lines);
        count += lines.len();
        lines.clear();
    }
    count
}

fn framing(c: &mut Criterion) {
    let mut text = Vec::new();
    while text.len() < 4 << 20 {
        text.extend_from_slice(JSON_LINE.as_bytes());
        text.push(b'\n');
    }
    let mut group = c.benchmark_group("framing");
    group.throughput(Throughput::Bytes(text.len() as u64));
    group.bench_function("lines_256k_reads", |b| b.iter(|| frame(&text, false)));
    group.bench_function("blocks_256k_reads", |b| b.iter(|| frame(&text, true)));
    group.finish();
}

fn syslog(c: &mut Criterion) {
    use weir::sources::syslog::parse::{Zone, to_event};
    let peer = Some("127.0.0.1:5140".parse().unwrap());
    let now = chrono::Utc::now();
    let mut group = c.benchmark_group("syslog");
    let mut out = Vec::with_capacity(4096);
    for (name, line) in [("sd", SYSLOG_LINE), ("no_sd", SYSLOG_LINE_NO_SD)] {
        let raw = Bytes::from_static(line.as_bytes());
        group.throughput(Throughput::Bytes(raw.len() as u64));
        group.bench_function(format!("to_event/{name}"), |b| {
            b.iter(|| to_event(raw.clone(), peer, now, Zone::Local, None));
        });
        group.bench_function(format!("to_event_and_json/{name}"), |b| {
            b.iter(|| {
                let (event, _) = to_event(raw.clone(), peer, now, Zone::Local, None);
                out.clear();
                serde_json::to_writer(&mut out, &event.view()).unwrap();
                out.len()
            });
        });
    }
    group.finish();
}

criterion_group!(benches, parsers, framing, syslog);
criterion_main!(benches);
