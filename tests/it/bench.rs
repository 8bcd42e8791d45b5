//! Throughput of the two sinks against their stand-ins, end to end through the real binary.
//! Ignored in normal runs; run with a release binary:
//!
//! ```sh
//! cargo build --release --bin weir
//! WEIR_BIN=target/release/weir WEIR_BENCH_EVENTS=500000 \
//!   cargo test --release --test it bench -- --ignored --nocapture --test-threads 1
//! ```
//!
//! The stand-ins parse every document and entry (as the real servers must) but only count
//! them, so their memory stays flat; they share the machine's cores with weir, so the figures
//! are a lower bound of weir's own throughput.

use std::io::Write;
use std::time::{Duration, Instant};

use crate::es_server::{EsServer, EsState};
use crate::loki_server::{LokiServer, LokiState};
use crate::support::{Weir, shared_data, wait_for};

fn events() -> usize {
    std::env::var("WEIR_BENCH_EVENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(200_000)
}

/// Writes `n` lines built from the sample file's lines by `make`; returns the bytes written.
fn write_lines(
    path: &std::path::Path,
    sample: &str,
    n: usize,
    make: impl Fn(usize, &str) -> String,
) -> u64 {
    let text = std::fs::read_to_string(shared_data().join(sample)).expect("shared data");
    let lines: Vec<&str> = text.lines().collect();
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut bytes = 0u64;
    for i in 0..n {
        let l = make(i, lines[i % lines.len()]);
        bytes += l.len() as u64 + 1;
        writeln!(f, "{l}").unwrap();
    }
    f.flush().unwrap();
    bytes
}

/// CPU seconds (user + system) a process has used, from Linux `/proc` (100 ticks a second).
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn report(what: &str, n: usize, bytes: u64, elapsed: Duration, weir: &Weir) {
    let secs = elapsed.as_secs_f64();
    eprintln!(
        "BENCH {what}: {n} events, {:.1} MB in {secs:.2} s = {:.0} events/s, {:.1} MB/s; \
         weir CPU {:.2} s, RSS {:.0} MB; test process (stand-in) CPU {:.2} s",
        bytes as f64 / 1e6,
        n as f64 / secs,
        bytes as f64 / 1e6 / secs,
        cpu_secs(weir.child.id()),
        weir.rss_bytes() as f64 / 1e6,
        cpu_secs(std::process::id())
    );
}

#[test]
#[ignore = "benchmark: run with --ignored and a release binary"]
fn bench_file_parse_json_elasticsearch() {
    let n = events();
    let dir = tempfile::tempdir().unwrap();
    let bytes = write_lines(
        &dir.path().join("input.log"),
        "loghub/Apache/Apache_2k.log",
        n,
        |i, l| {
            serde_json::json!({
            "message": l, "log": {"level": if i % 9 == 0 { "error" } else { "notice" }},
            "service": {"name": "apache"}, "http": {"response": {"status_code": 200 + (i % 3) * 100}},
            "event": {"duration_ms": i % 250}
        })
        .to_string()
        },
    );
    let es = EsServer::start_with(EsState { keep_docs: false, ..EsState::default() });
    let start = Instant::now();
    let weir = Weir::start(
        dir.path(),
        &format!(
            r#"
[sources.in]
type = "file"
include = ["{{{{dir}}}}/input.log"]
[transforms.parsed]
type = "parse_json"
inputs = ["in"]
[sinks.es]
type = "elasticsearch"
inputs = ["parsed"]
endpoints = ["{}"]
index = "bench-%Y.%m.%d"
"#,
            es.url()
        ),
    );
    assert!(
        wait_for(Duration::from_secs(600), || es.state().indexed >= n),
        "stderr:\n{}",
        weir.stderr()
    );
    report("file -> parse_json -> elasticsearch (gzip bulk)", n, bytes, start.elapsed(), &weir);
    assert_eq!(es.state().indexed, n);
}

#[test]
#[ignore = "benchmark: run with --ignored and a release binary"]
fn bench_syslog_file_to_loki() {
    let n = events();
    let dir = tempfile::tempdir().unwrap();
    let bytes =
        write_lines(&dir.path().join("input.log"), "loghub/Linux/Linux_2k.log", n, |_, l| {
            l.to_string()
        });
    let loki = LokiServer::start_with(LokiState { keep_entries: false, ..LokiState::default() });
    let start = Instant::now();
    let weir = Weir::start(
        dir.path(),
        &format!(
            r#"
[sources.in]
type = "file"
include = ["{{{{dir}}}}/input.log"]
[transforms.syslog]
type = "parse_grok"
inputs = ["in"]
patterns = ['%{{SYSLOGTIMESTAMP:timestamp}} %{{SYSLOGHOST:host.hostname}} %{{DATA:process.name}}(?:\[%{{POSINT:process.pid:int}}\])?: %{{GREEDYDATA:message}}']
[sinks.loki]
type = "loki"
inputs = ["syslog"]
endpoint = "{}"
labels.job = "syslog"
labels.program = "{{{{ process.name }}}}"
structured_metadata.pid = "{{{{ process.pid }}}}"
encoding.codec = "text"
"#,
            loki.url()
        ),
    );
    assert!(
        wait_for(Duration::from_secs(600), || loki.state().accepted_count >= n),
        "stderr:\n{}",
        weir.stderr()
    );
    report("syslog file -> parse_grok -> loki (snappy protobuf)", n, bytes, start.elapsed(), &weir);
}
