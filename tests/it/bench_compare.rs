//! The comparison benchmark's pieces that can be checked without running it: weir's scenario
//! pipelines (`benches/compare/weir/`) validate, and the endpoint's protocol code
//! (`examples/bench_endpoint/protocol.rs`) counts what each shipper sends and answers as
//! Elasticsearch and Loki do, checked against weir's own reading of a bulk response.

#[allow(dead_code)]
#[path = "../../examples/bench_endpoint/protocol.rs"]
mod protocol;

use std::path::{Path, PathBuf};
use std::process::Command;

use prost::Message;
use serde_json::Value;
use weir::sinks::elasticsearch::encoder::Op;
use weir::sinks::elasticsearch::service::classify;
use weir::sinks::loki::proto::{EntryAdapter, PushRequest, StreamAdapter, Timestamp};
use weir::sinks::util::driver::{ItemOutcome, Verdict};

use crate::support::weir_bin;

fn scenario_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/compare/weir")
}

/// `weir validate FILE` with the variables the harness sets: (exit code, output).
fn validate(file: &Path, dir: &Path) -> (i32, String) {
    let out = Command::new(weir_bin())
        .arg("validate")
        .arg(file)
        .env("BENCH_DATA_DIR", dir.join("data"))
        .env("BENCH_API_ADDRESS", "127.0.0.1:9598")
        .env("BENCH_INPUT", dir.join("input.log"))
        .env("BENCH_OUTPUT", dir.join("out.log"))
        .env("BENCH_ES_URL", "http://127.0.0.1:9200")
        .env("BENCH_LOKI_URL", "http://127.0.0.1:3100")
        .env("BENCH_SYSLOG_ADDRESS", "127.0.0.1:5514")
        .env("BENCH_PODS_DIR", dir.join("pods"))
        .env("BENCH_OTLP_GRPC_ADDRESS", "127.0.0.1:4317")
        .env("BENCH_OTLP_HTTP_ADDRESS", "127.0.0.1:4318")
        .env("BENCH_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
        .env("BENCH_KAFKA_TOPIC", "bench")
        .output()
        .expect("run weir validate");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn scenario_pipelines_validate() {
    let dir = tempfile::tempdir().unwrap();
    let names = [
        "s1-raw",
        "s2-json-es",
        "s3-regex-file",
        "s4-syslog-loki",
        "s5-json-es-disk",
        "s6-model-monitoring",
        "s7-kubernetes-loki",
        "s8-otlp-es",
        "s9-syslog-es",
        "s10-file-kafka",
    ];
    for name in names {
        let (code, out) = validate(&scenario_dir().join(format!("{name}.toml")), dir.path());
        assert_eq!(code, 0, "{name}.toml does not validate:\n{out}");
        assert!(out.contains("Configuration OK"), "{out}");
    }
}

/// A bulk body as weir's encoder writes it (action without `_id`, compact source).
fn weir_body(n: usize) -> Vec<u8> {
    let mut body = Vec::new();
    for i in 0..n {
        body.extend_from_slice(b"{\"index\":{\"_index\":\"bench\"}}\n");
        body.extend_from_slice(
            format!("{{\"model_version\":\"3\",\"latency_ms\":{i}.5,\"user\":\"a\\\"b\"}}\n")
                .as_bytes(),
        );
    }
    body
}

#[test]
fn bulk_counts_documents_and_answers_weir_with_every_item_delivered() {
    let body = weir_body(3);
    let mut next_id = 0;
    let out = protocol::bulk(
        &body,
        None,
        Some("filter_path=errors,items.*.status,items.*.error"),
        Some(b"\"model_version\":"),
        &mut next_id,
    )
    .unwrap();
    assert_eq!((out.docs, out.marked, out.other_actions), (3, 3, 0));
    assert_eq!(
        String::from_utf8(out.response.clone()).unwrap(),
        r#"{"errors":false,"items":[{"index":{"status":201}},{"index":{"status":201}},{"index":{"status":201}}]}"#
    );
    match classify(200, &out.response, &[Op::Index; 3]) {
        Verdict::Items { outcomes, throttled } => {
            assert_eq!(outcomes, vec![ItemOutcome::Delivered; 3]);
            assert!(!throttled);
        }
        other => panic!("weir would not count the items delivered: {other:?}"),
    }
}

#[test]
fn bulk_without_filter_answers_the_full_item_results() {
    // As rsyslog's omelasticsearch and syslog-ng's elasticsearch-http send them: `_type`
    // or `_id` in the action, a path index, an escaped source that lacks the parsed field.
    let body = b"{\"index\":{\"_index\":\"bench\",\"_type\":\"events\"}}\n{\"msg\":\"{\\\"model_version\\\":3}\"}\n\
{\"create\":{\"_id\":\"x1\"}}\n{\"model_version\":\"3\"}\n\
{\"delete\":{\"_index\":\"old\",\"_id\":\"x0\"}}\n";
    let mut next_id = 41;
    let out =
        protocol::bulk(body, Some("fromthepath"), None, Some(b"\"model_version\":"), &mut next_id)
            .unwrap();
    assert_eq!((out.docs, out.marked, out.other_actions), (2, 1, 1));
    let v: Value = serde_json::from_slice(&out.response).unwrap();
    assert_eq!(v["errors"], false);
    let items = v["items"].as_array().unwrap();
    assert_eq!(items.len(), 3);
    assert_eq!(items[0]["index"]["_index"], "bench");
    assert_eq!(items[0]["index"]["_id"], "bench000000000000042");
    assert_eq!(items[0]["index"]["status"], 201);
    assert_eq!(items[1]["create"]["_index"], "fromthepath");
    assert_eq!(items[1]["create"]["_id"], "x1");
    assert_eq!(items[1]["create"]["result"], "created");
    assert_eq!(items[2]["delete"]["status"], 200);
    assert_eq!(next_id, 42);
}

#[test]
fn bulk_refuses_what_elasticsearch_refuses() {
    let mut id = 0;
    let cases: [(&[u8], Option<&str>, &str); 5] = [
        (b"{\"index\":{}}\n{}", Some("i"), "terminated by a newline"),
        (b"{\"index\":{}}\n{}\n", None, "index is missing"),
        (b"{\"upsert\":{\"_index\":\"i\"}}\n{}\n", None, "expected one of"),
        (b"{\"index\":{\"_index\":\"i\"},\"create\":{}}\n{}\n", None, "expected one of"),
        (b"{\"index\":{\"_index\":\"i\"}}\n", None, "has no source"),
    ];
    for (body, index, reason) in cases {
        let err = protocol::bulk(body, index, None, None, &mut id).unwrap_err();
        assert_eq!(err.status, 400, "{}", String::from_utf8_lossy(body));
        assert!(err.body.contains(reason), "{} -> {}", String::from_utf8_lossy(body), err.body);
        let v: Value = serde_json::from_str(&err.body).unwrap();
        assert_eq!(v["status"], 400);
    }
}

fn entry(line: &str) -> EntryAdapter {
    EntryAdapter {
        timestamp: Some(Timestamp { seconds: 1_700_000_000, nanos: 5 }),
        line: line.into(),
        structured_metadata: vec![],
    }
}

#[test]
fn loki_protobuf_push_is_counted_per_entry() {
    let push = PushRequest {
        streams: vec![
            StreamAdapter {
                labels: r#"{host="gpu-1", job="bench"}"#.into(),
                entries: vec![entry("one"), entry("two")],
                hash: 0,
            },
            StreamAdapter { labels: r#"{job="bench"}"#.into(), entries: vec![entry("")], hash: 0 },
        ],
    };
    let body = snap::raw::Encoder::new().compress_vec(&push.encode_to_vec()).unwrap();
    let out = protocol::loki_protobuf(&body).unwrap();
    assert_eq!((out.streams, out.entries, out.line_bytes, out.empty_lines), (2, 3, 6, 1));

    let no_labels = PushRequest {
        streams: vec![StreamAdapter { labels: "{}".into(), entries: vec![entry("x")], hash: 0 }],
    };
    let body = snap::raw::Encoder::new().compress_vec(&no_labels.encode_to_vec()).unwrap();
    assert_eq!(protocol::loki_protobuf(&body).unwrap_err().status, 400);
    assert_eq!(protocol::loki_protobuf(b"not snappy").unwrap_err().status, 400);
}

#[test]
fn loki_json_push_as_syslog_ng_writes_it() {
    // One stream object per message, the line JSON-escaped, as the scenario's http() template
    // writes them.
    let body = br#"{"streams":[{"stream":{"job":"bench","host":"combo"},"values":[["1781435761000000000","session opened for \"root\""]]},{"stream":{"job":"bench","host":"gpu-3"},"values":[["1781435761000000000","ok",{"trace_id":"1"}]]}]}"#;
    let out = protocol::loki_json(body).unwrap();
    assert_eq!((out.streams, out.entries, out.empty_lines), (2, 2, 0));
    // The lines' bytes unescaped, as Loki stores them: `session opened for "root"` and `ok`.
    assert_eq!(out.line_bytes, 25 + 2);
    // An empty line counts as one; every kind of escape decodes (`\u00e9` is two bytes).
    let body = br#"{"streams":[{"stream":{"a":"b"},"values":[["1",""],["2","\u00e9\\\/"]]}]}"#;
    let out = protocol::loki_json(body).unwrap();
    assert_eq!((out.entries, out.empty_lines, out.line_bytes), (2, 1, 2 + 1 + 1));
    for bad in [
        &br#"{"streams":[{"stream":{},"values":[["1","x"]]}]}"#[..],
        br#"{"streams":[{"stream":{"a":"b"},"values":[[1,"x"]]}]}"#,
        br#"{"streams":[{"stream":{"a":"b"},"values":[["1"]]}]}"#,
        br#"{"streams":[{"stream":{"a":"b"},"values":[["1",7]]}]}"#,
        b"{",
    ] {
        let err = protocol::loki_json(bad).unwrap_err();
        assert_eq!(err.status, 400, "{}", String::from_utf8_lossy(bad));
    }
}
