//! Reloading a running weir: SIGHUP, `POST /reload` and `--watch-config`, with events
//! flowing. Every test counts what arrives at the far end (the Elasticsearch stand-in, a
//! file written by the file sink): nothing may be missing, and nothing may arrive twice on a
//! path that the reload kept.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::es_server::{EsServer, EsState};
use crate::support::{Weir, free_port, read_lines, require_command, signal, wait_for, weir_bin};

const WAIT: Duration = Duration::from_secs(60);
const LONG: Duration = Duration::from_secs(300);

/// The whole file weir reads: `pipeline` with a `data_dir` in `dir` and the API (with
/// `POST /reload`) on `api`, as [`Weir::start`] writes it.
fn config_text(dir: &Path, api: SocketAddr, pipeline: &str) -> String {
    format!(
        "data_dir = \"{}\"\n{}\n\n[api]\naddress = \"{api}\"\nreload = true\n",
        dir.join("data").display(),
        pipeline.replace("{{dir}}", &dir.display().to_string())
    )
}

/// Starts `weir run --config dir/pipeline.toml` with `args`, and waits until it runs.
fn start(dir: &Path, pipeline: &str, args: &[&str]) -> Weir {
    let api = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let config = dir.join("pipeline.toml");
    std::fs::write(&config, config_text(dir, api, pipeline)).unwrap();
    let stderr = std::fs::File::create(dir.join("stderr")).unwrap();
    let stdout = std::fs::File::create(dir.join("stdout")).unwrap();
    let child = Command::new(weir_bin())
        .args(["run", "--config"])
        .arg(&config)
        .args(args)
        .env("WEIR_LOG", "info")
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .expect("spawn weir");
    let weir = Weir { child, api, dir: dir.to_path_buf(), config };
    let up = wait_for(WAIT, || weir.health().1["status"] == "ok");
    assert!(up, "weir did not start; stderr:\n{}", weir.stderr());
    weir
}

/// Rewrites the pipeline file (the same `data_dir` and API).
fn rewrite(weir: &Weir, pipeline: &str) {
    std::fs::write(&weir.config, config_text(&weir.dir, weir.api, pipeline)).unwrap();
}

fn reloads(weir: &Weir, result: &str) -> f64 {
    weir.metric("weir_config_reloads_total", &[("result", result)])
}

/// Sends SIGHUP and waits until weir has counted the reload's result.
fn sighup(weir: &Weir) {
    let before = reloads(weir, "success") + reloads(weir, "failed");
    signal(weir.child.id(), "HUP");
    let done = wait_for(WAIT, || reloads(weir, "success") + reloads(weir, "failed") > before);
    assert!(done, "the reload did not finish; stderr:\n{}", weir.stderr());
}

/// `POST /reload`: (status, body).
fn post_reload(api: SocketAddr) -> (u16, String) {
    use std::io::Read;
    let mut s = TcpStream::connect(api).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    write!(
        s,
        "POST /reload HTTP/1.1\r\nHost: {api}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let status = raw.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, raw.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default())
}

fn stop_cleanly(weir: Weir) {
    let stderr = weir.dir.join("stderr");
    let status = weir.stop();
    let log = std::fs::read_to_string(stderr).unwrap_or_default();
    assert!(status.success(), "weir exited with {status}; stderr:\n{log}");
}

fn append(path: &Path, lines: impl IntoIterator<Item = String>) {
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap();
    let text: String = lines.into_iter().map(|l| l + "\n").collect();
    f.write_all(text.as_bytes()).unwrap();
}

const FILE_TO_FILE: &str = r#"
[sources.in]
type = "file"
include = ["{{dir}}/input.log"]

[sinks.out]
type = "file"
inputs = ["in"]
path = "{{dir}}/out.log"
encoding.codec = "text"
"#;

#[test]
fn sighup_with_an_unchanged_configuration_keeps_weir_running() {
    let dir = tempfile::tempdir().unwrap();
    append(&dir.path().join("input.log"), (0..100).map(|i| format!("before-{i}")));
    let mut weir = start(dir.path(), FILE_TO_FILE, &[]);
    let out = dir.path().join("out.log");
    assert!(wait_for(WAIT, || read_lines(&out).len() == 100), "stderr:\n{}", weir.stderr());
    sighup(&weir);
    sighup(&weir);
    assert!(weir.running(), "SIGHUP stopped weir; stderr:\n{}", weir.stderr());
    assert_eq!(reloads(&weir, "success"), 2.0);
    assert!(weir.stderr().contains("nothing changed"), "{}", weir.stderr());
    // The source kept its place: new lines follow, none read twice.
    append(&dir.path().join("input.log"), (0..100).map(|i| format!("after-{i}")));
    assert!(wait_for(WAIT, || read_lines(&out).len() == 200), "stderr:\n{}", weir.stderr());
    let expected: Vec<String> = (0..100)
        .map(|i| format!("before-{i}"))
        .chain((0..100).map(|i| format!("after-{i}")))
        .collect();
    assert_eq!(read_lines(&out), expected);
    stop_cleanly(weir);
}

/// A file source parsed into the Elasticsearch stand-in; `shape` is the transform each
/// generation changes, `extra` more components.
fn es_pipeline(es: &str, shape: &str, extra: &str) -> String {
    format!(
        r#"
[sources.in]
type = "file"
include = ["{{{{dir}}}}/input.log"]
max_read_bytes = 65536

[transforms.shape]
inputs = ["in"]
{shape}

[sinks.es]
type = "elasticsearch"
inputs = ["shape"]
endpoints = ["{es}"]
index = "weir"
batch.max_events = 500
batch.timeout_secs = 0.2
request.retry_initial_backoff_secs = 0.05
healthcheck = false
{extra}
"#
    )
}

const PARSE_JSON: &str = "type = \"parse_json\"";

fn remap(generation: usize) -> String {
    format!(
        "type = \"remap\"\nsource = '''\n. = merge(., object!(parse_json!(.message)))\n\
         .generation = {generation}\n'''"
    )
}

/// A file sink `sample` on the transform's output, added and removed by reloads.
const SAMPLE_SINK: &str = r#"
[sinks.sample]
type = "file"
inputs = ["shape"]
path = "{{dir}}/sample.log"
encoding.codec = "json"
"#;

/// The acceptance test of reload under load: lines are appended while the pipeline file is
/// rewritten ten times (the transform switched between `parse_json` and `remap` programs, a
/// sink added and removed, an invalid file once, reloads by SIGHUP and by `POST /reload`).
/// Every line must reach the stand-in, and none twice: the Elasticsearch sink is never
/// changed, so it is kept with its batches and connections, and a replaced transform hands
/// the events it had already taken to the sink before it ends.
#[test]
fn a_transform_changed_under_load_delivers_every_line_once() {
    let dir = tempfile::tempdir().unwrap();
    let es = EsServer::start_with(EsState {
        keep_docs: false,
        track_field: Some("id".into()),
        ..EsState::default()
    });
    // WEIR_RELOAD_TEST_LINES=1000000 for the acceptance run; fewer by default (debug builds).
    let n: Option<usize> =
        std::env::var("WEIR_RELOAD_TEST_LINES").ok().and_then(|v| v.parse().ok());
    let n = n.unwrap_or(300_000);
    let rounds = 10;
    let input = dir.path().join("input.log");
    let line = |i: usize| format!(r#"{{"id":"r{i:06}","message":"line {i}","n":{i}}}"#);
    append(&input, (0..n / rounds).map(line));
    let mut weir = start(dir.path(), &es_pipeline(&es.url(), PARSE_JSON, ""), &[]);
    let mut failed = 0.0;
    for round in 1..rounds {
        let (shape, extra) = match round % 4 {
            1 => (remap(round), ""),
            2 => (remap(round), SAMPLE_SINK),
            3 => (PARSE_JSON.to_string(), SAMPLE_SINK),
            _ => (PARSE_JSON.to_string(), ""),
        };
        if round == 6 {
            // An invalid file: every error logged, the running pipeline kept.
            rewrite(&weir, "[sources.in]\ntype = \"file\"\nincldue = [\"x\"]\n");
            failed += 1.0;
        } else {
            rewrite(&weir, &es_pipeline(&es.url(), &shape, extra));
        }
        // The next lines arrive while the reload is under way.
        append(&input, (round * n / rounds..(round + 1) * n / rounds).map(line));
        let delivered = es.state().tracked.len();
        if round % 3 == 0 {
            let (status, body) = post_reload(weir.api);
            assert_eq!(status, if round == 6 { 400 } else { 200 }, "{body}");
        } else {
            sighup(&weir);
        }
        eprintln!(
            "round {round}: {delivered} lines delivered when the reload began, {} when it ended, \
             {} written",
            es.state().tracked.len(),
            (round + 1) * n / rounds
        );
        assert_eq!(reloads(&weir, "failed"), failed, "stderr:\n{}", weir.stderr());
        assert!(weir.running(), "weir stopped at round {round}; stderr:\n{}", weir.stderr());
        let (status, _) = crate::support::http_get(weir.api, "/health/live").unwrap();
        assert_eq!(status, 200);
    }
    assert_eq!(reloads(&weir, "success"), (rounds - 2) as f64);
    let stderr = weir.stderr();
    assert!(stderr.contains("incldue"), "the invalid file's error is logged:\n{stderr}");
    assert!(stderr.contains("changed transforms.shape"), "{stderr}");
    assert!(stderr.contains("added sinks.sample") && stderr.contains("removed sinks.sample"));
    let all = wait_for(LONG, || es.state().tracked.len() >= n);
    let tracked = es.state().tracked.len();
    assert!(all, "{tracked} of {n} lines delivered; stderr:\n{}", weir.stderr());
    // The remap programs ran: their events carry their generation in the sample's file.
    let sample: Vec<serde_json::Value> = read_lines(&dir.path().join("sample.log"))
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(sample.iter().any(|e| e["generation"] == 2), "no event of remap generation 2");
    assert!(sample.iter().all(|e| e["id"].is_string()), "every sampled event was parsed");
    stop_cleanly(weir);
    let dups: usize = es.state().tracked.values().map(|(c, _)| c - 1).sum();
    eprintln!("{n} lines through {} reloads: {dups} duplicates", rounds - 1);
    assert_eq!(dups, 0, "a kept sink sends nothing twice");
}

/// A syslog TCP sender stays connected through reloads that change what follows the source:
/// the source is kept, its listening socket and the connection with it, and no message is
/// lost or repeated.
#[test]
fn a_syslog_tcp_connection_lives_through_a_reload() {
    require_command("logger");
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let pipeline = |program: &str| {
        format!(
            r#"
[sources.syslog]
type = "syslog"
mode = "tcp"
address = "127.0.0.1:{port}"

[transforms.tag]
type = "remap"
inputs = ["syslog"]
source = '''{program}'''

[sinks.out]
type = "file"
inputs = ["tag"]
path = "{{{{dir}}}}/out.log"
encoding.codec = "json"
"#
        )
    };
    let weir = start(dir.path(), &pipeline(".stage = 1"), &[]);
    let p = port.to_string();
    let mut logger = Command::new("logger")
        .args(["-n", "127.0.0.1", "-P", &p, "-T", "--octet-count", "-t", "reload"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = logger.stdin.take().unwrap();
    let out = dir.path().join("out.log");
    let per_stage = 2000;
    for stage in 1..=3 {
        let lines: String = (0..per_stage).map(|i| format!("stage-{stage}-line-{i}\n")).collect();
        stdin.write_all(lines.as_bytes()).unwrap();
        stdin.flush().unwrap();
        let arrived = wait_for(WAIT, || read_lines(&out).len() == stage * per_stage);
        assert!(arrived, "{} lines; stderr:\n{}", read_lines(&out).len(), weir.stderr());
        rewrite(&weir, &pipeline(&format!(".stage = {}", stage + 1)));
        sighup(&weir);
    }
    drop(stdin);
    assert!(logger.wait().unwrap().success(), "logger lost its connection");
    let events: Vec<serde_json::Value> =
        read_lines(&out).iter().map(|l| serde_json::from_str(l).unwrap()).collect();
    let messages: Vec<&str> = events.iter().filter_map(|e| e["message"].as_str()).collect();
    let expected: Vec<String> =
        (1..=3).flat_map(|s| (0..per_stage).map(move |i| format!("stage-{s}-line-{i}"))).collect();
    assert_eq!(messages, expected, "every message once, in order");
    // Each stage's messages went through the program of their stage.
    for (e, m) in events.iter().zip(&expected) {
        let stage: u64 = m[6..7].parse().unwrap();
        assert_eq!(e["stage"], stage, "{e}");
    }
    let opened = weir.metric("weir_component_open_connections", &[("component_id", "syslog")]);
    assert_eq!(opened, 0.0, "logger has closed its one connection");
    let closed = weir.metric("weir_component_connections_closed_total", &[]);
    assert_eq!(closed, 0.0, "weir closed no connection on its own");
    stop_cleanly(weir);
}

/// A client sending numbered lines in a loop on its own thread until finished. `send(n)`
/// sends line `n`: `Ok(true)` when it went through, `Ok(false)` to send it again, `Err` to
/// stop with that failure.
struct Looping {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicUsize>,
    failure: Arc<Mutex<Option<String>>>,
    thread: std::thread::JoinHandle<()>,
}

impl Looping {
    fn start(mut send: impl FnMut(usize) -> Result<bool, String> + Send + 'static) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicUsize::new(0));
        let failure = Arc::new(Mutex::new(None));
        let (s, n, f) = (Arc::clone(&stop), Arc::clone(&sent), Arc::clone(&failure));
        let thread = std::thread::spawn(move || {
            let (stop, sent, failure) = (s, n, f);
            while !stop.load(Ordering::Acquire) {
                let n = sent.load(Ordering::Acquire);
                match send(n) {
                    Ok(true) => sent.store(n + 1, Ordering::Release),
                    Ok(false) => {}
                    Err(e) => {
                        *failure.lock().unwrap() = Some(e);
                        return;
                    }
                }
            }
        });
        Self { stop, sent, failure, thread }
    }

    /// Waits until `count` more lines went through; false when the client failed or stalled.
    fn progress(&self, count: usize) -> bool {
        let from = self.sent.load(Ordering::Acquire);
        let done = wait_for(WAIT, || {
            self.sent.load(Ordering::Acquire) >= from + count
                || self.failure.lock().unwrap().is_some()
        });
        done && self.failure.lock().unwrap().is_none()
    }

    /// Stops the loop: how many lines went through, or why it failed.
    fn finish(self) -> Result<usize, String> {
        self.stop.store(true, Ordering::Release);
        self.thread.join().unwrap();
        match self.failure.lock().unwrap().take() {
            Some(e) => Err(e),
            None => Ok(self.sent.load(Ordering::Acquire)),
        }
    }
}

/// A syslog TCP source whose own table changes keeps its listening socket and its open
/// connections through the reload: its replacement takes both over. A client connecting in
/// a loop (connect, one line, wait for weir to close) is never refused and loses no line, and
/// a sender connected throughout goes on in the same connection.
#[test]
fn a_changed_syslog_source_on_the_same_address_refuses_no_connection() {
    use std::io::Read;

    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let pipeline = |max: usize| {
        format!(
            r#"
[sources.syslog]
type = "syslog"
mode = "tcp"
address = "127.0.0.1:{port}"
max_message_bytes = {max}

[sinks.out]
type = "file"
inputs = ["syslog"]
path = "{{{{dir}}}}/out.log"
encoding.codec = "json"
"#
        )
    };
    let weir = start(dir.path(), &pipeline(4096), &[]);
    let address = SocketAddr::from(([127, 0, 0, 1], port));

    // Short connections, one after another, until told to stop.
    let client = Looping::start(move |n| {
        let mut s = TcpStream::connect(address).map_err(|e| format!("short-{n}: {e}"))?;
        let mut send = || {
            s.set_read_timeout(Some(WAIT))?;
            s.write_all(format!("short-{n}\n").as_bytes())?;
            s.shutdown(std::net::Shutdown::Write)?;
            // weir closes once it has read the line and the end.
            s.read_to_end(&mut Vec::new())
        };
        send().map(|_| true).map_err(|e| format!("short-{n}: {e}"))
    });
    // One connection open throughout.
    let mut long = TcpStream::connect(address).unwrap();
    let mut long_lines = 0;
    let mut say = |long: &mut TcpStream| {
        let line = format!("long-{long_lines}\n");
        long.write_all(line.as_bytes())
            .unwrap_or_else(|e| panic!("{e}; stderr:\n{}", weir.stderr()));
        long_lines += 1;
    };

    for stage in 1..=3 {
        say(&mut long);
        // The short connections go on between reloads.
        assert!(client.progress(20), "the client stalled; stderr:\n{}", weir.stderr());
        rewrite(&weir, &pipeline(4096 + stage));
        sighup(&weir);
        say(&mut long);
        assert_eq!(reloads(&weir, "success"), stage as f64, "stderr:\n{}", weir.stderr());
    }
    assert!(client.progress(20), "the client stalled after the reloads");
    let short = client.finish().unwrap_or_else(|e| panic!("{e}; stderr:\n{}", weir.stderr()));
    drop(long);

    let out = dir.path().join("out.log");
    let all = wait_for(WAIT, || read_lines(&out).len() >= short + long_lines);
    let messages: Vec<String> = read_lines(&out)
        .iter()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["message"].to_string())
        .collect();
    assert!(all, "{} of {} lines; stderr:\n{}", messages.len(), short + long_lines, weir.stderr());
    let mut expected: Vec<String> = (0..short)
        .map(|i| format!("\"short-{i}\""))
        .chain((0..long_lines).map(|i| format!("\"long-{i}\"")))
        .collect();
    let mut got = messages.clone();
    expected.sort();
    got.sort();
    assert_eq!(got, expected, "every line once");
    // The long connection's lines in order, through one connection.
    let long_order: Vec<&String> = messages.iter().filter(|m| m.contains("long-")).collect();
    let in_order: Vec<String> = (0..long_lines).map(|i| format!("\"long-{i}\"")).collect();
    assert_eq!(long_order, in_order.iter().collect::<Vec<_>>());
    let stderr = weir.stderr();
    assert_eq!(stderr.matches("changed sources.syslog").count(), 3, "{stderr}");
    let closed = weir.metric("weir_component_connections_closed_total", &[]);
    assert_eq!(closed, 0.0, "weir closed no connection on its own");
    stop_cleanly(weir);
}

/// A TLS syslog connection open while its source is replaced goes on in the same TLS session
/// with the replacement.
#[test]
fn a_syslog_tls_connection_goes_on_with_the_changed_source() {
    use rustls_pki_types::ServerName;
    use tokio_rustls::rustls;

    let dir = tempfile::tempdir().unwrap();
    let pki = crate::syslog::pki();
    let crt = dir.path().join("server.crt");
    let key = dir.path().join("server.key");
    std::fs::write(&crt, &pki.server.0).unwrap();
    std::fs::write(&key, &pki.server.1).unwrap();
    let port = free_port();
    let pipeline = |max: usize| {
        format!(
            r#"
[sources.syslog]
type = "syslog"
mode = "tcp"
address = "127.0.0.1:{port}"
max_message_bytes = {max}
tls.crt_file = "{}"
tls.key_file = "{}"

[sinks.out]
type = "file"
inputs = ["syslog"]
path = "{{{{dir}}}}/out.log"
encoding.codec = "json"
"#,
            crt.display(),
            key.display()
        )
    };
    let weir = start(dir.path(), &pipeline(4096), &[]);
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki.ca.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let sock = TcpStream::connect(("127.0.0.1", port)).unwrap();
    sock.set_read_timeout(Some(WAIT)).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, sock);
    let out = dir.path().join("out.log");
    for stage in 0..3 {
        tls.write_all(format!("tls-{stage}\n").as_bytes()).unwrap();
        tls.flush().unwrap();
        let arrived = wait_for(WAIT, || read_lines(&out).len() == stage + 1);
        assert!(arrived, "{:?}; stderr:\n{}", read_lines(&out), weir.stderr());
        if stage < 2 {
            rewrite(&weir, &pipeline(4097 + stage));
            sighup(&weir);
            assert_eq!(reloads(&weir, "success"), (stage + 1) as f64, "{}", weir.stderr());
        }
    }
    tls.conn.send_close_notify();
    tls.flush().unwrap();
    let mut rest = Vec::new();
    std::io::Read::read_to_end(&mut tls, &mut rest).expect("weir closes the session cleanly");
    let messages: Vec<String> = read_lines(&out)
        .iter()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["message"].to_string())
        .collect();
    assert_eq!(messages, ["\"tls-0\"", "\"tls-1\"", "\"tls-2\""]);
    assert_eq!(weir.stderr().matches("changed sources.syslog").count(), 2);
    stop_cleanly(weir);
}

/// A reload that turns TLS on closes the plain connections of the old instance instead of
/// handing them on: a sender must not go on in plain text once TLS is required.
#[test]
fn a_reload_that_turns_tls_on_closes_plain_connections() {
    use std::io::Read;
    let dir = tempfile::tempdir().unwrap();
    let pki = crate::syslog::pki();
    let crt = dir.path().join("server.crt");
    let key = dir.path().join("server.key");
    std::fs::write(&crt, &pki.server.0).unwrap();
    std::fs::write(&key, &pki.server.1).unwrap();
    let port = free_port();
    let pipeline = |tls: &str| {
        format!(
            "[sources.syslog]\ntype = \"syslog\"\nmode = \"tcp\"\naddress = \"127.0.0.1:{port}\"\n\
             {tls}\n[sinks.out]\ntype = \"file\"\ninputs = [\"syslog\"]\n\
             path = \"{{{{dir}}}}/out.log\"\nencoding.codec = \"json\"\n"
        )
    };
    let weir = start(dir.path(), &pipeline(""), &[]);
    let mut plain = TcpStream::connect(("127.0.0.1", port)).unwrap();
    plain.write_all(b"plain-0\n").unwrap();
    let out = dir.path().join("out.log");
    assert!(wait_for(WAIT, || read_lines(&out).len() == 1), "stderr:\n{}", weir.stderr());
    let tls = format!("tls.crt_file = \"{}\"\ntls.key_file = \"{}\"", crt.display(), key.display());
    rewrite(&weir, &pipeline(&tls));
    sighup(&weir);
    assert_eq!(reloads(&weir, "success"), 1.0, "stderr:\n{}", weir.stderr());
    // weir closes it: the read ends (at its end, or reset) instead of waiting.
    plain.set_read_timeout(Some(WAIT)).unwrap();
    let read = plain.read(&mut [0u8; 16]);
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    if let Err(e) = &read {
        use std::io::ErrorKind::{TimedOut, WouldBlock};
        assert!(!matches!(e.kind(), WouldBlock | TimedOut), "not closed within {WAIT:?}");
    }
    assert!(weir.stderr().contains("the reload turned TLS on or off"), "{}", weir.stderr());
    stop_cleanly(weir);
}

/// An `http_server` source whose table changes keeps its listening socket through the
/// reload: a client posting one line per new connection in a loop is never refused. A
/// connection the old instance accepted but had read no request from is closed by it, as any
/// server closes an idle connection, and a request it read as it stopped gets 503 with
/// `Retry-After` without its events being taken; the client sends such a request again, as
/// HTTP clients do (it was not handled, so nothing arrives twice).
#[test]
fn a_changed_http_server_on_the_same_address_refuses_no_connection() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let pipeline = |header: usize| {
        format!(
            r#"
[sources.http]
type = "http_server"
address = "127.0.0.1:{port}"
headers = ["X-Stage-{header}"]

[sinks.out]
type = "file"
inputs = ["http"]
path = "{{{{dir}}}}/out.log"
encoding.codec = "json"
"#
        )
    };
    let weir = start(dir.path(), &pipeline(0), &[]);
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    let client = Looping::start(move |n| {
        let body = format!("{{\"message\":\"http-{n}\"}}");
        match crate::support::http_post_json(address, "/", &body) {
            Ok((200, _)) => Ok(true),
            // Closed before an answer, or come as the old instance stopped (503 with
            // Retry-After, its events not taken): sent again.
            Ok((0 | 503, _)) => Ok(false),
            Err(e) if e.kind() != std::io::ErrorKind::ConnectionRefused => Ok(false),
            other => Err(format!("http-{n}: {other:?}")),
        }
    });
    for stage in 1..=3 {
        assert!(client.progress(20), "the client stalled; stderr:\n{}", weir.stderr());
        rewrite(&weir, &pipeline(stage));
        sighup(&weir);
        assert_eq!(reloads(&weir, "success"), stage as f64, "stderr:\n{}", weir.stderr());
    }
    assert!(client.progress(20), "the client stalled after the reloads");
    let sent = client.finish().unwrap_or_else(|e| panic!("{e}; stderr:\n{}", weir.stderr()));
    let out = dir.path().join("out.log");
    let messages = || -> Vec<String> {
        read_lines(&out)
            .iter()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["message"].to_string())
            .collect()
    };
    // Answered 200 only once delivered: everything is there already.
    let mut got = messages();
    got.sort();
    let mut expected: Vec<String> = (0..sent).map(|i| format!("\"http-{i}\"")).collect();
    expected.sort();
    assert_eq!(got, expected, "every line once");
    assert_eq!(weir.stderr().matches("changed sources.http").count(), 3);
    stop_cleanly(weir);
}

#[test]
fn watch_config_picks_up_a_change_and_ignores_an_invalid_file() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input.log");
    append(&input, ["first".to_string()]);
    let weir = start(dir.path(), FILE_TO_FILE, &["--watch-config"]);
    let out = dir.path().join("out.log");
    assert!(wait_for(WAIT, || read_lines(&out) == ["first"]), "stderr:\n{}", weir.stderr());
    // An invalid file is reported and changes nothing.
    rewrite(&weir, "[sources.in]\ntype = \"nope\"\n");
    let refused = wait_for(WAIT, || reloads(&weir, "failed") == 1.0);
    assert!(refused, "stderr:\n{}", weir.stderr());
    assert!(weir.stderr().contains("unknown source type `nope`"), "{}", weir.stderr());
    // A second sink, writing the lines in JSON.
    let with_json = format!(
        "{FILE_TO_FILE}\n[sinks.json]\ntype = \"file\"\ninputs = [\"in\"]\n\
         path = \"{{{{dir}}}}/out.json\"\nencoding.codec = \"json\"\n"
    );
    rewrite(&weir, &with_json);
    let applied = wait_for(WAIT, || reloads(&weir, "success") == 1.0);
    assert!(applied, "stderr:\n{}", weir.stderr());
    append(&input, ["second".to_string()]);
    let json = dir.path().join("out.json");
    assert!(wait_for(WAIT, || read_lines(&json).len() == 1), "stderr:\n{}", weir.stderr());
    assert!(read_lines(&json)[0].contains("\"second\""));
    assert!(wait_for(WAIT, || read_lines(&out) == ["first", "second"]));
    stop_cleanly(weir);
}

#[test]
fn post_reload_is_off_unless_the_api_enables_it() {
    let dir = tempfile::tempdir().unwrap();
    let weir = Weir::start(dir.path(), FILE_TO_FILE);
    let (status, body) = post_reload(weir.api);
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("reload = true"), "{body}");
    stop_cleanly(weir);
}

/// A replacement that cannot start rolls the reload back: the syslog source moved to a port
/// another process holds fails to bind once its old instance has stopped, so the old source is
/// built again on its old port, weir runs on, and the reload counts as failed.
#[test]
fn a_replacement_that_cannot_start_rolls_back_to_the_old_component() {
    require_command("logger");
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    // Held for the whole test: binding it fails with "address in use".
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_port = taken.local_addr().unwrap().port();
    let pipeline = |port: u16| {
        format!(
            r#"
[sources.syslog]
type = "syslog"
mode = "tcp"
address = "127.0.0.1:{port}"

[sinks.out]
type = "file"
inputs = ["syslog"]
path = "{{{{dir}}}}/out.log"
encoding.codec = "json"
"#
        )
    };
    let send = |message: &str| {
        let status = Command::new("logger")
            .args(["-n", "127.0.0.1", "-P", &port.to_string(), "-T", "--octet-count"])
            .args(["-t", "rollback", message])
            .status()
            .unwrap();
        assert!(status.success(), "logger could not send {message:?} to port {port}");
    };
    let weir = start(dir.path(), &pipeline(port), &[]);
    let out = dir.path().join("out.log");
    send("before");
    assert!(wait_for(WAIT, || read_lines(&out).len() == 1), "stderr:\n{}", weir.stderr());

    rewrite(&weir, &pipeline(taken_port));
    sighup(&weir);
    assert_eq!(reloads(&weir, "failed"), 1.0, "stderr:\n{}", weir.stderr());
    assert_eq!(reloads(&weir, "success"), 0.0);
    let stderr = weir.stderr();
    assert!(stderr.contains("going back to the previous configuration"), "{stderr}");
    assert!(stderr.contains("the previous configuration runs again"), "{stderr}");

    // The old source listens on its old port again, and the pipeline is whole.
    send("after");
    assert!(wait_for(WAIT, || read_lines(&out).len() == 2), "stderr:\n{}", weir.stderr());
    let messages: Vec<String> = read_lines(&out)
        .iter()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["message"].to_string())
        .collect();
    assert_eq!(messages, ["\"before\"", "\"after\""]);
    assert!(wait_for(WAIT, || weir.health().1["status"] == "ok"), "{}", weir.health().1);
    stop_cleanly(weir);
    drop(taken);
}
