//! The `opentelemetry` source against the real OpenTelemetry Python SDK (`LoggingHandler`,
//! the OTLP/HTTP and OTLP/gRPC exporters; `tests/python/otlp_app.py`) and against hand-made
//! requests for what an SDK never sends (bad bodies, wrong types, oversized bodies; over gRPC
//! with grpcio, `tests/python/otlp_grpc_raw.py`).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::es_server::{EsServer, Fault};
use crate::support::{Weir, free_port, read_lines, test_python, wait_for};

fn app() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/otlp_app.py")
}

/// weir with an OTLP/HTTP source on `port` writing JSON lines to `dir/out.jsonl`.
fn start_to_file(dir: &Path, port: u16) -> Weir {
    start_transport_to_file(dir, "http", port)
}

/// weir with an OTLP source serving `transport` (`grpc` or `http`) on `port`, writing JSON
/// lines to `dir/out.jsonl`.
fn start_transport_to_file(dir: &Path, transport: &str, port: u16) -> Weir {
    Weir::start(
        dir,
        &format!(
            r#"
[sources.otel]
type = "opentelemetry"
{transport}.address = "127.0.0.1:{port}"

[sinks.out]
type = "file"
inputs = ["otel"]
path = "{{{{dir}}}}/out.jsonl"
encoding.codec = "json"
"#
        ),
    )
}

fn events(dir: &Path) -> Vec<Value> {
    read_lines(&dir.join("out.jsonl")).iter().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// The app's records of `batch`: COUNT info lines, a warning, an exception; each with every
/// field the SDK sent.
fn check_batch(events: &[Value], batch: &str, count: usize) {
    let of_batch: Vec<&Value> = events
        .iter()
        .filter(|e| {
            e["message"].as_str().is_some_and(|m| m.starts_with(&format!("batch {batch} ")))
        })
        .collect();
    assert_eq!(of_batch.len(), count + 2, "batch {batch}: {of_batch:#?}");
    for e in &of_batch {
        assert_eq!(e["service"]["name"], "churn-model", "{e}");
        assert_eq!(e["service"]["version"], "1.4.2", "{e}");
        assert_eq!(e["service"]["environment"], "test", "{e}");
        assert_eq!(e["kubernetes"]["namespace"], "ml", "{e}");
        assert_eq!(e["kubernetes"]["pod"]["name"], "churn-model-0", "{e}");
        assert_eq!(e["host"]["name"], "node-7", "{e}");
        assert_eq!(e["otel"]["resource"]["telemetry.sdk.language"], "python", "{e}");
        assert_eq!(e["log"]["logger"], "inference", "{e}");
        assert!(
            e["log"]["origin"]["file"]["name"].as_str().unwrap().ends_with("otlp_app.py"),
            "{e}"
        );
        assert!(e["log"]["origin"]["file"]["line"].as_i64().unwrap() > 0, "{e}");
        assert_eq!(e["log"]["origin"]["function"], "log_batch", "{e}");
        assert!(e["@timestamp"].as_str().unwrap().ends_with('Z'), "{e}");
        assert!(e["event"]["created"].as_str().is_some(), "{e}");
    }
    for i in 0..count {
        let message = format!("batch {batch} request {i} done");
        let e = of_batch.iter().find(|e| e["message"] == message.as_str()).expect(&message);
        assert_eq!(e["log"]["level"], "INFO", "{e}");
        assert_eq!(e["event"]["severity"], 9, "{e}");
        assert_eq!(e["trace"]["id"], "5b8efff798038103d269b633813fc60c", "{e}");
        assert_eq!(e["span"]["id"], "eee19b7ec3c1b174", "{e}");
        assert_eq!(e["otel"]["trace_flags"], 1, "{e}");
        assert_eq!(e["otel"]["attributes"]["request_id"], format!("{batch}-{i}"), "{e}");
        assert_eq!(e["otel"]["attributes"]["latency_ms"], 12.5, "{e}");
    }
    let warn = of_batch.iter().find(|e| e["log"]["level"] == "WARN").expect("the warning");
    assert_eq!(warn["message"], format!("batch {batch} slow model"));
    assert_eq!(warn["otel"]["attributes"]["model"], "resnet50");
    assert_eq!(warn["otel"]["attributes"]["gpu"], 1);
    assert!(warn.get("trace").is_none(), "logged outside the span: {warn}");
    let error = of_batch.iter().find(|e| e["log"]["level"] == "ERROR").expect("the exception");
    assert_eq!(error["message"], format!("batch {batch} inference failed"));
    assert_eq!(error["event"]["severity"], 17);
    assert_eq!(error["error"]["type"], "ValueError");
    assert_eq!(error["error"]["message"], format!("batch {batch} bad input"));
    let stack = error["error"]["stack_trace"].as_str().unwrap();
    assert!(stack.starts_with("Traceback") && stack.contains("ValueError"), "{stack}");
}

/// The app's exporter endpoint for `transport` on `port`.
fn endpoint(transport: &str, port: u16) -> String {
    match transport {
        "http" => format!("http://127.0.0.1:{port}/v1/logs"),
        _ => format!("127.0.0.1:{port}"),
    }
}

fn sdk_records_arrive(transport: &str, gzip: bool) {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let weir = start_transport_to_file(dir.path(), transport, port);
    let out = Command::new(test_python())
        .arg(app())
        .args([transport, &endpoint(transport, port), "5"])
        .env("OTLP_GZIP", if gzip { "1" } else { "0" })
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("flushed A True"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The exporter was answered only after the file sink had the records.
    check_batch(&events(dir.path()), "A", 5);
    assert_eq!(
        weir.metric("weir_component_received_events_total", &[("component_id", "otel")]),
        7.0
    );
}

#[test]
fn sdk_records_arrive_over_http_with_their_fields() {
    sdk_records_arrive("http", false);
}

#[test]
fn sdk_records_arrive_over_grpc_with_their_fields_gzip_compressed() {
    sdk_records_arrive("grpc", true);
}

fn sdk_retries_deliver_what_was_logged_while_weir_was_stopped(transport: &str) {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let weir = start_transport_to_file(dir.path(), transport, port);
    let log = std::fs::File::create(dir.path().join("app.log")).unwrap();
    let mut app = Command::new(test_python())
        .arg(app())
        .args([transport, &endpoint(transport, port), "20", "--pause"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .unwrap();
    let mut stdout = app.stdout.take().unwrap();
    assert_eq!(line(&mut stdout), "flushed A True");
    assert!(weir.stop().success());
    // Batch B is logged while nothing listens: the exporter's requests are refused.
    app.stdin.as_mut().unwrap().write_all(b"go\n").unwrap();
    let retrying = wait_for(Duration::from_secs(30), || {
        std::fs::read_to_string(dir.path().join("app.log")).unwrap_or_default().contains("retrying")
    });
    assert!(retrying, "the exporter did not retry");
    let _weir = start_transport_to_file(dir.path(), transport, port);
    assert_eq!(line(&mut stdout), "flushed B True");
    assert!(app.wait().unwrap().success());
    let events = events(dir.path());
    check_batch(&events, "A", 20);
    check_batch(&events, "B", 20);
}

#[test]
fn sdk_retries_over_http_deliver_what_was_logged_while_weir_was_stopped() {
    sdk_retries_deliver_what_was_logged_while_weir_was_stopped("http");
}

#[test]
fn sdk_retries_over_grpc_deliver_what_was_logged_while_weir_was_stopped() {
    sdk_retries_deliver_what_was_logged_while_weir_was_stopped("grpc");
}

/// One line of a child's standard output.
fn line(stdout: &mut std::process::ChildStdout) -> String {
    let mut text = Vec::new();
    let mut byte = [0u8];
    while stdout.read(&mut byte).unwrap() == 1 && byte[0] != b'\n' {
        text.push(byte[0]);
    }
    String::from_utf8(text).unwrap()
}

/// A raw HTTP/1.1 POST: (status, headers in lower case, body).
fn post(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String, Vec<u8>) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    let _ = s.write_all(body);
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("a response head");
    let head = String::from_utf8_lossy(&raw[..split]).to_lowercase();
    let status = head.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, head, raw[split + 4..].to_vec())
}

/// A request head declaring a body of `len` bytes, sent without the body: weir answers from
/// the declared length.
fn declared_too_large(addr: SocketAddr, len: usize) -> u16 {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let head = format!(
        "POST /v1/logs HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {len}\r\n\r\n"
    );
    s.write_all(head.as_bytes()).unwrap();
    let mut raw = [0u8; 512];
    let n = s.read(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw[..n]).into_owned();
    text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0)
}

const JSON: (&str, &str) = ("Content-Type", "application/json");

fn json_request(message: &str) -> String {
    serde_json::json!({"resourceLogs": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "curl"}}]},
        "scopeLogs": [{"logRecords": [{
            "timeUnixNano": "1700000000000000000",
            "severityText": "INFO",
            "body": {"kvlistValue": {"values": [{"key": "msg", "value": {"stringValue": message}}]}}
        }]}]
    }]})
    .to_string()
}

#[test]
fn json_gzip_and_bad_requests_get_the_answers_the_specification_asks_for() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let weir = start_to_file(dir.path(), port);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));

    let (status, head, body) = post(addr, "/v1/logs", &[JSON], json_request("plain").as_bytes());
    assert_eq!((status, String::from_utf8_lossy(&body).as_ref()), (200, "{}"));
    assert!(head.contains("content-type: application/json"), "{head}");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(json_request("zipped").as_bytes()).unwrap();
    let (status, _, _) =
        post(addr, "/v1/logs", &[JSON, ("Content-Encoding", "gzip")], &gz.finish().unwrap());
    assert_eq!(status, 200);
    let got = events(dir.path());
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0]["message"], serde_json::json!({"msg": "plain"}));
    assert_eq!(got[1]["message"], serde_json::json!({"msg": "zipped"}));
    assert_eq!(got[1]["service"]["name"], "curl");
    assert_eq!(got[1]["@timestamp"], "2023-11-14T22:13:20Z");

    // Malformed: 400 with the reason, as a google.rpc.Status in the request's encoding.
    let (status, _, body) =
        post(addr, "/v1/logs", &[JSON], b"{\"resourceLogs\": [{\"scopeLogs\": 7}]}");
    let reply: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!((status, reply["code"].as_i64()), (400, Some(3)), "{reply}");
    assert!(
        reply["message"].as_str().unwrap().contains("invalid OTLP/JSON logs request"),
        "{reply}"
    );
    let (status, _, body) = post(
        addr,
        "/v1/logs",
        &[("Content-Type", "application/x-protobuf")],
        b"\x0a\xff\xff\xff\xff",
    );
    assert_eq!(status, 400);
    assert!(String::from_utf8_lossy(&body).contains("invalid OTLP protobuf logs request"));
    let (status, _, body) =
        post(addr, "/v1/logs", &[JSON, ("Content-Encoding", "gzip")], b"not gzip");
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));
    let (status, _, _) = post(addr, "/v1/logs", &[("Content-Type", "text/plain")], b"hello");
    assert_eq!(status, 415);
    let (status, _, _) = post(addr, "/v1/traces", &[JSON], b"{}");
    assert_eq!(status, 404);
    // Over max_body_bytes (10 MiB by default), on the wire and once decompressed.
    let big = vec![b' '; 11 << 20];
    assert_eq!(declared_too_large(addr, big.len()), 413);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&big).unwrap();
    let (status, _, body) =
        post(addr, "/v1/logs", &[JSON, ("Content-Encoding", "gzip")], &gz.finish().unwrap());
    assert_eq!(status, 413, "{}", String::from_utf8_lossy(&body));
    assert_eq!(events(dir.path()).len(), 2, "nothing from the refused requests");
    let errors = |t: &str| {
        weir.metric("weir_component_errors_total", &[("component_id", "otel"), ("error_type", t)])
    };
    assert_eq!(errors("parse_failed"), 3.0);
    assert_eq!(errors("message_too_long"), 2.0);
}

#[test]
fn an_undelivered_request_is_answered_503_and_the_sdk_sends_it_again() {
    let dir = tempfile::tempdir().unwrap();
    let es = EsServer::start();
    es.state().always = Some(Fault::Status(503));
    let port = free_port();
    let _weir = Weir::start(
        dir.path(),
        &format!(
            r#"
[sources.otel]
type = "opentelemetry"
http.address = "127.0.0.1:{port}"
ack_timeout_secs = 1

[sinks.es]
type = "elasticsearch"
inputs = ["otel"]
endpoints = ["{}"]
index = "logs"
batch.timeout_secs = 0.1
request.retry_initial_backoff_secs = 0.05
request.retry_max_duration_secs = 0.5
"#,
            es.url()
        ),
    );
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let (status, head, body) = post(addr, "/v1/logs", &[JSON], json_request("held").as_bytes());
    let reply: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!((status, reply["code"].as_i64()), (503, Some(14)), "{reply}");
    assert!(head.contains("retry-after: 1"), "{head}");

    // The SDK is answered 503 with Retry-After while Elasticsearch refuses, and sends again.
    let log = std::fs::File::create(dir.path().join("app.log")).unwrap();
    let mut app = Command::new(test_python())
        .arg(app())
        .args(["http", &format!("http://127.0.0.1:{port}/v1/logs"), "10"])
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .unwrap();
    let retrying = wait_for(Duration::from_secs(30), || {
        std::fs::read_to_string(dir.path().join("app.log")).unwrap_or_default().contains("retrying")
    });
    assert!(retrying, "the exporter was not told to retry");
    es.state().always = None;
    let out = app.wait_with_output_or_kill();
    assert!(out.contains("flushed A True"), "{out}");
    // A request answered 503 may have been delivered in part meanwhile: at least once, so
    // the same record can be stored twice; each is there.
    let mut docs: Vec<Value> = es.state().all_docs().into_iter().cloned().collect();
    let mut seen = std::collections::HashSet::new();
    docs.retain(|d| seen.insert(d["message"].to_string()));
    check_batch(&docs, "A", 10);
}

trait WaitOutput {
    fn wait_with_output_or_kill(&mut self) -> String;
}

impl WaitOutput for std::process::Child {
    /// The child's standard output once it exits (killed after 90 s).
    fn wait_with_output_or_kill(&mut self) -> String {
        let exited = wait_for(Duration::from_secs(90), || matches!(self.try_wait(), Ok(Some(_))));
        if !exited {
            let _ = self.kill();
        }
        let mut out = String::new();
        if let Some(mut stdout) = self.stdout.take() {
            let _ = stdout.read_to_string(&mut out);
        }
        out
    }
}

/// Runs `tests/python/otlp_grpc_raw.py` against `port` with `env`: one JSON answer per case.
fn grpc_raw(port: u16, cases: &[&str], env: &[(&str, &str)]) -> Vec<Value> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/otlp_grpc_raw.py");
    let out = Command::new(test_python())
        .arg(script)
        .arg(format!("127.0.0.1:{port}"))
        .args(cases)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let answers: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(answers.len(), cases.len(), "{answers:?}");
    answers
}

#[test]
fn grpc_calls_get_the_answers_the_specification_asks_for() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let weir = Weir::start(
        dir.path(),
        &format!(
            r#"
[sources.otel]
type = "opentelemetry"
grpc.address = "127.0.0.1:{port}"
grpc.max_body_bytes = 4096

[sinks.out]
type = "file"
inputs = ["otel"]
path = "{{{{dir}}}}/out.jsonl"
encoding.codec = "json"
"#
        ),
    );
    // Bytes that are not HTTP/2 at all: the connection is closed, the server serves on.
    let mut garbage = TcpStream::connect(("127.0.0.1", port)).unwrap();
    garbage.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    garbage.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n\x00\xff\x13garbage").unwrap();
    let mut rest = Vec::new();
    // Closed with unread bytes, the connection may be reset rather than ended.
    match garbage.read_to_end(&mut rest) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("the connection was not closed: {e}"),
    }

    let answers = grpc_raw(
        port,
        &["ok", "gzip", "garbage", "traces", "large", "large_gzip"],
        &[("LARGE", "20000")],
    );
    let code = |i: usize| answers[i]["code"].as_str().unwrap().to_owned();
    let details = |i: usize| answers[i]["details"].as_str().unwrap_or_default().to_owned();
    assert_eq!((code(0), code(1)), ("OK".into(), "OK".into()), "{answers:?}");
    assert_eq!(answers[0]["rejected"], Value::Null, "no partial success: {answers:?}");
    assert_eq!(code(2), "INVALID_ARGUMENT", "{answers:?}");
    assert!(details(2).starts_with("invalid OTLP protobuf logs request"), "{answers:?}");
    assert_eq!(code(3), "UNIMPLEMENTED", "{answers:?}");
    assert!(details(3).contains("TraceService"), "{answers:?}");
    // Over max_body_bytes on the wire, and once decompressed (20,000 x compress to ~100
    // bytes): RESOURCE_EXHAUSTED without RetryInfo, which OTLP clients do not retry.
    for i in [4, 5] {
        assert_eq!(code(i), "RESOURCE_EXHAUSTED", "{answers:?}");
        assert!(details(i).contains("max_body_bytes (4096)"), "{answers:?}");
        assert_eq!(answers[i]["retry_delay"], Value::Null, "{answers:?}");
    }
    let got = events(dir.path());
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0]["message"], "plain");
    assert_eq!(got[1]["message"], "zipped");
    assert_eq!(got[1]["service"]["name"], "raw-grpc");
    assert_eq!(got[1]["@timestamp"], "2023-11-14T22:13:20Z");
    let errors = |t: &str| {
        weir.metric("weir_component_errors_total", &[("component_id", "otel"), ("error_type", t)])
    };
    assert_eq!(errors("parse_failed"), 1.0);
    assert_eq!(errors("message_too_long"), 2.0);
}

#[test]
fn an_undelivered_grpc_call_is_answered_unavailable_and_the_sdk_sends_it_again() {
    let dir = tempfile::tempdir().unwrap();
    let es = EsServer::start();
    es.state().always = Some(Fault::Status(503));
    let port = free_port();
    let _weir = Weir::start(
        dir.path(),
        &format!(
            r#"
[sources.otel]
type = "opentelemetry"
grpc.address = "127.0.0.1:{port}"
ack_timeout_secs = 1

[sinks.es]
type = "elasticsearch"
inputs = ["otel"]
endpoints = ["{}"]
index = "logs"
batch.timeout_secs = 0.1
request.retry_initial_backoff_secs = 0.05
request.retry_max_duration_secs = 0.5
"#,
            es.url()
        ),
    );
    let answers = grpc_raw(port, &["ok"], &[]);
    assert_eq!(answers[0]["code"], "UNAVAILABLE", "{answers:?}");
    assert_eq!(answers[0]["retry_delay"], 1, "RetryInfo: {answers:?}");

    // The SDK is answered UNAVAILABLE with RetryInfo while Elasticsearch refuses, waits the
    // delay it names, and sends again.
    let log = std::fs::File::create(dir.path().join("app.log")).unwrap();
    let mut app = Command::new(test_python())
        .arg(app())
        .args(["grpc", &endpoint("grpc", port), "10"])
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .unwrap();
    let app_log = || std::fs::read_to_string(dir.path().join("app.log")).unwrap_or_default();
    let retrying = wait_for(Duration::from_secs(30), || app_log().contains("retrying"));
    assert!(retrying, "the exporter was not told to retry");
    assert!(app_log().contains("UNAVAILABLE"), "{}", app_log());
    es.state().always = None;
    let out = app.wait_with_output_or_kill();
    assert!(out.contains("flushed A True"), "{out}\n{}", app_log());
    let mut docs: Vec<Value> = es.state().all_docs().into_iter().cloned().collect();
    let mut seen = std::collections::HashSet::new();
    docs.retain(|d| seen.insert(d["message"].to_string()));
    check_batch(&docs, "A", 10);
}

#[test]
fn sdk_exports_over_tls_with_a_bearer_token_on_both_transports() {
    let dir = tempfile::tempdir().unwrap();
    let pki = crate::syslog::pki();
    let (crt, key, ca) =
        (dir.path().join("server.crt"), dir.path().join("server.key"), dir.path().join("ca.crt"));
    std::fs::write(&crt, &pki.server.0).unwrap();
    std::fs::write(&key, &pki.server.1).unwrap();
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    let (grpc_port, http_port) = (free_port(), free_port());
    let tls = format!("{{ crt_file = \"{}\", key_file = \"{}\" }}", crt.display(), key.display());
    let weir = Weir::start(
        dir.path(),
        &format!(
            r#"
[sources.otel]
type = "opentelemetry"
auth = {{ strategy = "bearer", token = "t0ken" }}
grpc = {{ address = "127.0.0.1:{grpc_port}", tls = {tls} }}
http = {{ address = "127.0.0.1:{http_port}", tls = {tls} }}

[sinks.out]
type = "file"
inputs = ["otel"]
path = "{{{{dir}}}}/out.jsonl"
encoding.codec = "json"
"#
        ),
    );
    let ca = ca.display().to_string();
    let run = |transport: &str, endpoint: &str, batch: &str, token: &str| {
        let out = Command::new(test_python())
            .arg(app())
            .args([transport, endpoint, "3"])
            .envs([("OTLP_CA_FILE", ca.as_str()), ("OTLP_TOKEN", token), ("OTLP_BATCH", batch)])
            // `requests` prefers these to the exporter's own CA file.
            .env_remove("REQUESTS_CA_BUNDLE")
            .env_remove("CURL_CA_BUNDLE")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        (text, String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (out, err) = run("grpc", &format!("127.0.0.1:{grpc_port}"), "G", "t0ken");
    assert!(out.contains("flushed G True"), "{out}\n{err}");
    let https = format!("https://127.0.0.1:{http_port}/v1/logs");
    let (out, err) = run("http", &https, "H", "t0ken");
    assert!(out.contains("flushed H True"), "{out}\n{err}");
    let got = events(dir.path());
    check_batch(&got, "G", 3);
    check_batch(&got, "H", 3);

    // A wrong token: refused on both, and nothing of those batches arrives.
    let (_, err) = run("http", &https, "W", "wrong");
    assert!(err.contains("401"), "{err}");
    let answers = grpc_raw(grpc_port, &["ok"], &[("OTLP_CA_FILE", &ca), ("OTLP_TOKEN", "wrong")]);
    assert_eq!(answers[0]["code"], "UNAUTHENTICATED", "{answers:?}");
    let answers = grpc_raw(grpc_port, &["ok"], &[("OTLP_CA_FILE", &ca)]);
    assert_eq!(answers[0]["code"], "UNAUTHENTICATED", "{answers:?}");
    // Plain text to a TLS port: the handshake fails, the connection is closed.
    let plain = grpc_raw(grpc_port, &["ok"], &[("OTLP_TOKEN", "t0ken")]);
    assert_eq!(plain[0]["code"], "UNAVAILABLE", "{plain:?}");
    let got = events(dir.path());
    assert_eq!(got.len(), 10, "only batches G and H: {got:?}");
    assert!(
        weir.metric(
            "weir_component_errors_total",
            &[("component_id", "otel"), ("error_type", "tls_handshake_failed")]
        ) >= 1.0
    );
}

/// An export request of `n` records `{prefix}-{i}` as OTLP/JSON, those with an odd `i`
/// carrying a trace id.
fn json_with_traces(prefix: &str, n: usize) -> String {
    let records: Vec<Value> = (0..n)
        .map(|i| {
            let mut r = serde_json::json!({"body": {"stringValue": format!("{prefix}-{i}")}});
            if i % 2 == 1 {
                r["traceId"] = "0102030405060708090a0b0c0d0e0f10".into();
            }
            r
        })
        .collect();
    serde_json::json!({"resourceLogs": [{"scopeLogs": [{"logRecords": records}]}]}).to_string()
}

/// The same as protobuf.
fn protobuf_with_traces(prefix: &str, n: usize) -> Vec<u8> {
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use prost::Message;
    let request: ExportLogsServiceRequest =
        serde_json::from_str(&json_with_traces(prefix, n)).unwrap();
    request.encode_to_vec()
}

/// A sink that rejects some records for good (the Elasticsearch stand-in refuses documents
/// with a top-level `trace` field, as a mapping conflict would): the answer is a success
/// with a partial success counting exactly those records, over OTLP/HTTP with JSON and with
/// protobuf, and over gRPC; the other records are stored.
#[test]
fn records_a_sink_rejects_are_counted_in_a_partial_success() {
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse;
    use prost::Message;
    let dir = tempfile::tempdir().unwrap();
    let es = EsServer::start_with(crate::es_server::EsState {
        poison_field: Some("trace".into()),
        ..Default::default()
    });
    let (http_port, grpc_port) = (free_port(), free_port());
    let weir = Weir::start(
        dir.path(),
        &format!(
            r#"
[sources.otel]
type = "opentelemetry"
# Wide: the answer waits for Elasticsearch's, on a machine that may be slow.
ack_timeout_secs = 120
http.address = "127.0.0.1:{http_port}"
grpc.address = "127.0.0.1:{grpc_port}"

[sinks.es]
type = "elasticsearch"
inputs = ["otel"]
endpoints = ["{}"]
index = "otel"
batch.timeout_secs = 0.2
"#,
            es.url()
        ),
    );
    let addr = SocketAddr::from(([127, 0, 0, 1], http_port));
    let ready = wait_for(Duration::from_secs(60), || TcpStream::connect(addr).is_ok());
    assert!(ready, "{}", weir.stderr());

    // OTLP/JSON: 5 records, 2 rejected. 64-bit integers are strings in OTLP/JSON.
    let body = json_with_traces("json", 5);
    let (status, _, reply) = post(addr, "/v1/logs", &[JSON], body.as_bytes());
    let reply: Value = serde_json::from_slice(&reply).unwrap();
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["partialSuccess"]["rejectedLogRecords"], "2", "{reply}");
    let message = reply["partialSuccess"]["errorMessage"].as_str().unwrap();
    assert!(message.starts_with("2 of 5 log records were rejected"), "{message}");

    // Protobuf: a request with nothing rejected has no partial success; 4 records, 2 rejected.
    let protobuf = ("Content-Type", "application/x-protobuf");
    let (status, _, reply) = post(addr, "/v1/logs", &[protobuf], &protobuf_with_traces("pb", 1));
    assert_eq!(status, 200);
    let reply = ExportLogsServiceResponse::decode(&reply[..]).unwrap();
    assert_eq!(reply.partial_success, None, "one record, no trace: nothing rejected");
    let (status, _, reply) = post(addr, "/v1/logs", &[protobuf], &protobuf_with_traces("pb", 4));
    assert_eq!(status, 200);
    let partial = ExportLogsServiceResponse::decode(&reply[..]).unwrap().partial_success.unwrap();
    assert_eq!(partial.rejected_log_records, 2, "{partial:?}");

    // gRPC: 5 records, 2 rejected.
    let answers = grpc_raw(grpc_port, &["mixed", "ok"], &[]);
    assert_eq!(answers[0]["code"], "OK", "{answers:?}");
    assert_eq!(answers[0]["rejected"], 2, "{answers:?}");
    assert!(answers[0]["message"].as_str().unwrap().starts_with("2 of 5"), "{answers:?}");
    assert_eq!(answers[1]["rejected"], Value::Null, "{answers:?}");

    // What was not rejected is stored: the records without a trace id, once each.
    let mut stored: Vec<String> = es
        .state()
        .all_docs()
        .iter()
        .map(|d| d["message"].as_str().unwrap_or_default().to_string())
        .collect();
    stored.sort();
    let expected = [
        "json-0", "json-2", "json-4", "mixed-0", "mixed-2", "mixed-4", "pb-0", "pb-0", "pb-2",
        "plain",
    ];
    assert_eq!(stored, expected);
    let rejected = weir.metric(
        "weir_sink_rejected_events_total",
        &[("component_id", "es"), ("reason", "document_parsing_exception")],
    );
    assert_eq!(rejected, 6.0);
}
