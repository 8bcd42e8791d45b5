//! The `http_server` source against real clients: `curl` (NDJSON, JSON, gzip, lines, bad and
//! oversized bodies, credentials, TLS), Python's `logging.handlers.HTTPHandler`, a stalled
//! sink (429/503 with `Retry-After`, nothing lost once it moves again), and a sink rejecting
//! events for good (400, dead letters).

use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::Value;

use crate::support::{Weir, fifo, free_port, wait_for};

/// An answer as curl saw it.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: String,
    body: String,
}

/// Runs curl with `args` (after the common ones) against `url`.
fn curl(dir: &Path, url: &str, args: &[&str]) -> Answer {
    let headers = dir.join(format!("curl-headers-{}", free_port()));
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "30", "-H", "Expect:", "-o", "-", "-w", "\n%{http_code}", "-D"])
        .arg(&headers)
        .args(args)
        .arg(url)
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", &text));
    let headers_text = std::fs::read_to_string(&headers).unwrap_or_default();
    let _ = std::fs::remove_file(&headers);
    Answer { status: status.trim().parse().unwrap_or(0), headers: headers_text, body: body.into() }
}

/// The events the file sink wrote, as JSON.
fn events(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

fn start(dir: &Path, port: u16, source: &str) -> Weir {
    Weir::start(
        dir,
        &format!(
            r#"
[sources.http]
type = "http_server"
address = "127.0.0.1:{port}"
{source}

[sinks.out]
type = "file"
inputs = ["http"]
path = "{{{{dir}}}}/out.ndjson"
encoding.codec = "json"
"#
        ),
    )
}

#[test]
fn curl_posts_ndjson_json_gzip_and_lines_and_bad_bodies_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let port = free_port();
    let weir = start(
        d,
        port,
        r#"path = "/logs"
max_body_bytes = 4096
headers = ["X-Request-Id"]
query_parameters = ["env"]"#,
    );
    let url = format!("http://127.0.0.1:{port}/logs?env=prod&other=x");
    let out = d.join("out.ndjson");

    // NDJSON; answered only once written (wait_for_acks), so the file has it now.
    let nd = curl(
        d,
        &url,
        &[
            "-H",
            "Content-Type: application/x-ndjson",
            "-H",
            "X-Request-Id: r-1",
            "--data-binary",
            "{\"message\":\"nd 1\",\"model\":\"m\"}\n{\"message\":\"nd 2\"}\n",
        ],
    );
    assert_eq!(nd.status, 200, "{nd:?}\n{}", weir.stderr());
    let got = events(&out);
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0]["message"], "nd 1");
    assert_eq!(got[0]["model"], "m");
    assert_eq!(got[0]["source"]["ip"], "127.0.0.1");
    assert_eq!(got[0]["http"]["request"]["header"]["x-request-id"], "r-1");
    assert_eq!(got[0]["http"]["request"]["query"]["env"], "prod");
    assert!(got[0]["http"]["request"]["query"].get("other").is_none());
    assert!(got[0]["@timestamp"].is_string());

    // A JSON array with `curl -d` (which labels it a form): one event per element.
    let arr = curl(d, &url, &["-d", r#"[{"message":"arr 1"},{"message":"arr 2"}]"#]);
    assert_eq!(arr.status, 200, "{arr:?}");
    // gzip.
    let gz = d.join("body.gz");
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut enc, b"{\"message\":\"zipped\"}\n").unwrap();
    std::fs::write(&gz, enc.finish().unwrap()).unwrap();
    let gz_arg = format!("@{}", gz.display());
    let zipped = curl(
        d,
        &url,
        &[
            "-H",
            "Content-Type: application/json",
            "-H",
            "Content-Encoding: gzip",
            "--data-binary",
            &gz_arg,
        ],
    );
    assert_eq!(zipped.status, 200, "{zipped:?}");
    // Plain lines.
    let lines =
        curl(d, &url, &["-H", "Content-Type: text/plain", "--data-binary", "line one\nline two\n"]);
    assert_eq!(lines.status, 200, "{lines:?}");
    // `curl -d` labels text a form too.
    let words = curl(d, &url, &["-d", "just words"]);
    assert_eq!(words.status, 200, "{words:?}");
    let messages: Vec<String> =
        events(&out).iter().map(|e| e["message"].as_str().unwrap().to_string()).collect();
    assert_eq!(
        messages,
        ["nd 1", "nd 2", "arr 1", "arr 2", "zipped", "line one", "line two", "just words"]
    );

    // Refusals: each with its reason, none of the body sent on.
    let bad = curl(
        d,
        &url,
        &[
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            "{\"message\":\"ok\"}\n{\"message\":",
        ],
    );
    assert_eq!(bad.status, 400, "{bad:?}");
    assert!(bad.body.contains("invalid JSON (value 2)"), "{bad:?}");
    let big = "x".repeat(5000);
    let too_large = curl(d, &url, &["-H", "Content-Type: text/plain", "--data-binary", &big]);
    assert_eq!(too_large.status, 413, "{too_large:?}");
    assert!(too_large.body.contains("max_body_bytes (4096)"), "{too_large:?}");
    // A small gzip body that inflates past the limit.
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut enc, &vec![b'a'; 100_000]).unwrap();
    std::fs::write(&gz, enc.finish().unwrap()).unwrap();
    let bomb = curl(d, &url, &["-H", "Content-Encoding: gzip", "--data-binary", &gz_arg]);
    assert_eq!(bomb.status, 413, "{bomb:?}");
    let wrong_path = curl(d, &format!("http://127.0.0.1:{port}/other"), &["-d", "x"]);
    assert_eq!(wrong_path.status, 404);
    let get = curl(d, &url, &[]);
    assert_eq!(get.status, 405);
    assert_eq!(events(&out).len(), 8, "a refused body left events behind");
    let answers = |status: &str| {
        let labels = [("component_id", "http"), ("status", status)];
        weir.metric("weir_component_http_responses_total", &labels)
    };
    let counts = [answers("200"), answers("400"), answers("413"), answers("404"), answers("405")];
    assert_eq!(counts, [5.0, 1.0, 2.0, 1.0, 1.0]);
    let errors = |t: &str| {
        weir.metric("weir_component_errors_total", &[("component_id", "http"), ("error_type", t)])
    };
    assert_eq!(errors("parse_failed"), 1.0);
    assert_eq!(errors("message_too_long"), 2.0);
    assert_eq!(
        weir.metric("weir_component_received_events_total", &[("component_id", "http")]),
        8.0
    );
}

/// The CA and server certificate of the syslog tests, as PEM files in `dir`: (ca, crt, key).
fn pki(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let pki = crate::syslog::pki();
    let write = |name: &str, text: &str| {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    (
        write("ca.crt", &pki.ca_pem),
        write("server.crt", &pki.server.0),
        write("server.key", &pki.server.1),
    )
}

#[test]
fn credentials_and_tls_with_curl() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (ca, crt, key) = pki(d);
    let (tls_port, bearer_port) = (free_port(), free_port());
    let weir = Weir::start(
        d,
        &format!(
            r#"
[sources.secure]
type = "http_server"
address = "127.0.0.1:{tls_port}"
auth.strategy = "basic"
auth.user = "app"
auth.password = "s3cret"
tls.crt_file = "{}"
tls.key_file = "{}"

[sources.token]
type = "http_server"
address = "127.0.0.1:{bearer_port}"
auth.strategy = "bearer"
auth.token = "t0ken"

[sinks.out]
type = "file"
inputs = ["secure", "token"]
path = "{{{{dir}}}}/out.ndjson"
encoding.codec = "json"
"#,
            crt.display(),
            key.display()
        ),
    );
    let https = format!("https://127.0.0.1:{tls_port}/");
    let ca_arg = ca.display().to_string();
    let post = |url: &str, extra: &[&str], message: &str| {
        let body = format!("{{\"message\":\"{message}\"}}");
        let mut args = vec!["--cacert", &ca_arg, "-H", "Content-Type: application/json"];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--data-binary", &body]);
        curl(d, url, &args)
    };
    let ok = post(&https, &["-u", "app:s3cret"], "over tls");
    assert_eq!(ok.status, 200, "{ok:?}\n{}", weir.stderr());
    let wrong = post(&https, &["-u", "app:nope"], "wrong password");
    assert_eq!(wrong.status, 401, "{wrong:?}");
    assert!(wrong.headers.to_ascii_lowercase().contains("www-authenticate: basic"), "{wrong:?}");
    let none = post(&https, &[], "no credentials");
    assert_eq!(none.status, 401);
    // Plain HTTP to the TLS port gets no answer.
    let plain = post(&format!("http://127.0.0.1:{tls_port}/"), &["-u", "app:s3cret"], "plain");
    assert_eq!(plain.status, 0, "{plain:?}");

    let bearer = format!("http://127.0.0.1:{bearer_port}/");
    let ok = post(&bearer, &["-H", "Authorization: Bearer t0ken"], "with token");
    assert_eq!(ok.status, 200, "{ok:?}");
    let wrong = post(&bearer, &["-H", "Authorization: Bearer t0ke"], "wrong token");
    assert_eq!(wrong.status, 401);

    let got: BTreeSet<String> = events(&d.join("out.ndjson"))
        .iter()
        .map(|e| e["message"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(got, BTreeSet::from(["over tls".to_string(), "with token".to_string()]));
    let refused =
        weir.metric("weir_component_errors_total", &[("error_type", "credentials_refused")]);
    assert_eq!(refused, 3.0);
    let handshakes =
        weir.metric("weir_component_errors_total", &[("error_type", "tls_handshake_failed")]);
    assert_eq!(handshakes, 1.0);
}

/// The project's Python (its `.venv`), where the Python peers are installed.
fn python() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python")
}

#[test]
fn python_logging_http_handler_over_tls_with_basic_auth() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (ca, crt, key) = pki(d);
    let port = free_port();
    let weir = start(
        d,
        port,
        &format!(
            r#"path = "/log"
auth.strategy = "basic"
auth.user = "app"
auth.password = "s3cret"
tls.crt_file = "{}"
tls.key_file = "{}""#,
            crt.display(),
            key.display()
        ),
    );
    let script = format!(
        r#"
import logging, logging.handlers, ssl, sys
ctx = ssl.create_default_context(cafile={ca:?})
handler = logging.handlers.HTTPHandler("127.0.0.1:{port}", "/log", method="POST",
                                       secure=True, credentials=("app", "s3cret"), context=ctx)
errors = []
handler.handleError = lambda record: errors.append(sys.exc_info()[1])
log = logging.getLogger("ranker.serve")
log.setLevel(logging.DEBUG)
log.addHandler(handler)
log.info("model %s loaded in %.1f ms", "ranker-v3", 812.46)
log.warning("queue at %d%%", 93, extra={{"request_id": "req-42"}})
try:
    1 / 0
except ZeroDivisionError:
    log.exception("inference failed")
log.debug("plain message")
# HTTPHandler's default method is GET, with the record in the query string.
default = logging.getLogger("default.get")
default.propagate = False
default.addHandler(logging.handlers.HTTPHandler("127.0.0.1:{port}", "/log", secure=True,
                                                credentials=("app", "s3cret"), context=ctx))
default.error("sent with %s", "GET")
if errors:
    sys.exit("HTTPHandler errors: %r" % errors)
"#,
        ca = ca.display().to_string()
    );
    let out = Command::new(python()).arg("-c").arg(&script).output().expect("run python");
    assert!(
        out.status.success(),
        "python failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        weir.stderr()
    );
    // HTTPHandler waits for each answer, which came once the event was written.
    let got = events(&d.join("out.ndjson"));
    assert_eq!(got.len(), 5, "{got:#?}");
    let e = &got[0];
    assert_eq!(e["message"], "model ranker-v3 loaded in 812.5 ms");
    assert_eq!(e["log"]["level"], "INFO");
    assert_eq!(e["log"]["logger"], "ranker.serve");
    assert_eq!(e["log"]["origin"]["function"], "<module>");
    assert!(e["log"]["origin"]["file"]["line"].is_i64(), "{e}");
    assert!(e["process"]["pid"].is_i64(), "{e}");
    assert_eq!(e["process"]["thread"]["name"], "MainThread");
    // `created` is the record's time, not weir's: within the last minute, to the microsecond.
    let ts = chrono::DateTime::parse_from_rfc3339(e["@timestamp"].as_str().unwrap()).unwrap();
    let age = chrono::Utc::now().signed_duration_since(ts);
    assert!(age >= chrono::Duration::zero() && age < chrono::Duration::seconds(60), "{ts}");
    assert_eq!(got[1]["message"], "queue at 93%");
    assert_eq!(got[1]["log"]["level"], "WARNING");
    assert_eq!(got[1]["request_id"], "req-42");
    assert_eq!(got[2]["message"], "inference failed");
    assert_eq!(got[2]["log"]["level"], "ERROR");
    // HTTPHandler formats nothing, so the record has the exception but not its traceback.
    assert_eq!(got[2]["error"]["type"], "ZeroDivisionError", "{}", got[2]);
    assert_eq!(got[2]["error"]["message"], "division by zero");
    assert_eq!(got[3]["message"], "plain message");
    assert_eq!(got[3]["log"]["level"], "DEBUG");
    assert_eq!(got[4]["message"], "sent with GET");
    assert_eq!(got[4]["log"]["logger"], "default.get");
}

#[test]
fn a_stalled_sink_gets_429_and_503_with_retry_after_and_nothing_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let port = free_port();
    fifo(&d.join("out.fifo"));
    let weir = Weir::start(
        d,
        &format!(
            r#"
[sources.http]
type = "http_server"
address = "127.0.0.1:{port}"
ack_timeout_secs = 2

[sinks.out]
type = "file"
inputs = ["http"]
path = "{{{{dir}}}}/out.fifo"
encoding.codec = "text"
buffer.max_bytes = 65536
"#
        ),
    );
    let url = format!("http://127.0.0.1:{port}/");
    let body = |batch: usize| -> String {
        (0..100).map(|i| format!("batch {batch:03} line {i:03} {}\n", "p".repeat(200))).collect()
    };
    let post = |batch: usize| {
        curl(d, &url, &["-H", "Content-Type: text/plain", "--data-binary", &body(batch)])
    };
    // The sink blocks on the pipe nobody reads: no request is acknowledged.
    let mut pending: Vec<usize> = Vec::new();
    let mut statuses = BTreeSet::new();
    for batch in 0..40 {
        let answer = post(batch);
        assert!(matches!(answer.status, 429 | 503), "{answer:?}");
        assert!(answer.headers.to_ascii_lowercase().contains("retry-after: 1"), "{answer:?}");
        statuses.insert(answer.status);
        pending.push(batch);
        if statuses.len() == 2 {
            break;
        }
    }
    assert_eq!(statuses, BTreeSet::from([429, 503]), "after {} requests", pending.len());
    let answers =
        |status: &str| weir.metric("weir_component_http_responses_total", &[("status", status)]);
    assert_eq!(answers("429") + answers("503"), pending.len() as f64);

    // The sink moves again; the client sends what was refused until it is taken.
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (path, stop) = (d.join("out.fifo"), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut f = std::fs::File::open(path).unwrap();
            let mut all = Vec::new();
            let mut buf = vec![0u8; 1 << 16];
            while !stop.load(Ordering::Relaxed) {
                match f.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => all.extend_from_slice(&buf[..n]),
                }
            }
            all
        })
    };
    for batch in pending.clone() {
        let delivered = wait_for(Duration::from_secs(60), || post(batch).status == 200);
        assert!(delivered, "batch {batch} never accepted\n{}", weir.stderr());
    }
    drop(weir);
    stop.store(true, Ordering::Relaxed);
    let written = String::from_utf8(reader.join().unwrap()).unwrap();
    let lines: BTreeSet<&str> = written.lines().collect();
    for batch in pending {
        for i in 0..100 {
            let line = format!("batch {batch:03} line {i:03} {}", "p".repeat(200));
            assert!(lines.contains(line.as_str()), "lost: batch {batch} line {i}");
        }
    }
}

#[test]
fn connections_are_capped_and_half_sent_requests_closed_after_the_header_timeout() {
    use std::io::Write;
    use std::net::TcpStream;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let port = free_port();
    let weir = start(d, port, "max_connections = 2\nheader_read_timeout_secs = 1");
    let metric = |name: &str, labels: &[(&str, &str)]| {
        let mut all = vec![("component_id", "http")];
        all.extend_from_slice(labels);
        weir.metric(name, &all)
    };
    let half = || {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.write_all(b"POST / HTTP/1.1\r\nHost: weir\r\n").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s
    };
    let mut held = [half(), half()];
    let served =
        wait_for(Duration::from_secs(60), || metric("weir_component_open_connections", &[]) == 2.0);
    assert!(served, "two connections not served\n{}", weir.metrics());
    // A third is closed at once: no answer, the end of the stream.
    let mut third = half();
    let mut buf = [0u8; 64];
    assert!(matches!(third.read(&mut buf), Ok(0) | Err(_)));
    assert_eq!(metric("weir_component_errors_total", &[("error_type", "connection_refused")]), 1.0);
    // The half-sent requests are closed once the header timeout passes, without an answer.
    for s in &mut held {
        assert!(matches!(s.read(&mut buf), Ok(0) | Err(_)), "a half-sent request was answered");
    }
    let closed = wait_for(Duration::from_secs(60), || {
        metric("weir_component_connections_closed_total", &[("reason", "header_timeout")]) == 2.0
    });
    assert!(closed, "{}", weir.metrics());
    // Their places are free again.
    let ok = curl(d, &format!("http://127.0.0.1:{port}/"), &["--data-binary", "after"]);
    assert_eq!(ok.status, 200, "{ok:?}");
}

/// A sink that rejects events for good (the Elasticsearch stand-in refuses documents with a
/// top-level `trace` field, as a mapping conflict would): the request is answered 400 with the
/// reason, as Vector's `http_server` answers a batch a sink rejected ("Contents failed to
/// deliver to sink"), and the rejected event is a dead letter; the request's other events are
/// stored, and a request with nothing rejected gets 200.
#[test]
fn events_a_sink_rejects_for_good_are_answered_400_and_become_dead_letters() {
    use crate::es_server::{EsServer, EsState};
    let dir = tempfile::tempdir().unwrap();
    let es =
        EsServer::start_with(EsState { poison_field: Some("trace".into()), ..Default::default() });
    let port = free_port();
    let weir = Weir::start(
        dir.path(),
        &format!(
            r#"
[sources.http]
type = "http_server"
address = "127.0.0.1:{port}"
# Wide: the answer waits for Elasticsearch's, on a machine that may be slow.
ack_timeout_secs = 120

[sinks.es]
type = "elasticsearch"
inputs = ["http"]
endpoints = ["{}"]
index = "logs"
batch.timeout_secs = 0.2
"#,
            es.url()
        ),
    );
    let up = wait_for(Duration::from_secs(60), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    assert!(up, "{}", weir.stderr());
    let url = format!("http://127.0.0.1:{port}/");
    let post = |body: &str| {
        curl(dir.path(), &url, &["-H", "Content-Type: application/x-ndjson", "--data-binary", body])
    };

    let answer =
        post("{\"message\":\"a\"}\n{\"message\":\"b\",\"trace\":\"t1\"}\n{\"message\":\"c\"}\n");
    assert_eq!(answer.status, 400, "{answer:?}\n{}", weir.stderr());
    assert!(answer.body.contains("rejected the events for good"), "{answer:?}");
    assert!(!answer.headers.to_ascii_lowercase().contains("retry-after"), "{answer:?}");
    let answer = post("{\"message\":\"d\"}\n");
    assert_eq!(answer.status, 200, "{answer:?}\n{}", weir.stderr());

    let mut stored: Vec<String> = es
        .state()
        .all_docs()
        .iter()
        .map(|d| d["message"].as_str().unwrap_or_default().to_string())
        .collect();
    stored.sort();
    assert_eq!(stored, ["a", "c", "d"], "the events not rejected are stored once");
    let letters = || -> Vec<Value> {
        let Ok(entries) = std::fs::read_dir(dir.path().join("data/dead_letter")) else {
            return Vec::new();
        };
        entries
            .flatten()
            .flat_map(|e| crate::support::read_lines(&e.path()))
            .map(|l| serde_json::from_str(&l).unwrap())
            .collect()
    };
    assert!(wait_for(Duration::from_secs(60), || !letters().is_empty()), "{}", weir.stderr());
    let letters = letters();
    assert_eq!(letters.len(), 1, "{letters:#?}");
    assert_eq!(letters[0]["weir"]["dead_letter"]["sink"], "es", "{:#}", letters[0]);
    assert!(letters[0].to_string().contains("t1"), "the rejected event: {:#}", letters[0]);
}
