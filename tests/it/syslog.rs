//! The `syslog` source against real senders: util-linux `logger` (RFC 3164 and RFC 5424, UDP
//! and TCP, octet-counted and newline-framed), an rsyslog forwarder (omfwd, octet-counted
//! TCP), a TLS client with certificates generated here, and hand-made bad frames on a raw
//! socket. Events go to a file sink as JSON lines and are checked field by field.

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::Value;

use crate::support::{Weir, fifo, free_port, metric_sum, read_lines, wait_for};

const WAIT: Duration = Duration::from_secs(30);

/// weir with one syslog source (extra settings in `source`) writing JSON lines to `out.log`.
fn start(dir: &Path, mode: &str, port: u16, source: &str) -> Weir {
    Weir::start(
        dir,
        &format!(
            r#"
[sources.syslog]
type = "syslog"
mode = "{mode}"
address = "127.0.0.1:{port}"
{source}

[sinks.out]
type = "file"
inputs = ["syslog"]
path = "{{{{dir}}}}/out.log"
encoding.codec = "json"
"#
        ),
    )
}

fn events(dir: &Path) -> Vec<Value> {
    read_lines(&dir.join("out.log"))
        .iter()
        .map(|l| serde_json::from_str(l).expect("the file sink writes JSON lines"))
        .collect()
}

/// Waits until an event's `message` equals `message`, and returns it.
fn wait_event(weir: &Weir, message: &str) -> Value {
    let mut found = None;
    let ok = wait_for(WAIT, || {
        found = events(&weir.dir).into_iter().find(|e| e["message"] == message);
        found.is_some()
    });
    assert!(
        ok,
        "no event with message {message:?}; events: {:#?}\nweir stderr:\n{}",
        events(&weir.dir),
        weir.stderr()
    );
    found.unwrap_or_default()
}

fn logger(args: &[&str]) {
    let out = Command::new("logger").args(args).output().expect("run logger (util-linux)");
    assert!(out.status.success(), "logger {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

fn metric(weir: &Weir, name: &str, labels: &[(&str, &str)]) -> f64 {
    let mut l = vec![("component_id", "syslog")];
    l.extend_from_slice(labels);
    weir.metric(name, &l)
}

#[test]
fn logger_rfc5424_and_rfc3164_over_tcp_with_both_framings() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let weir = start(dir.path(), "tcp", port, "");
    let p = port.to_string();

    logger(&[
        "-n",
        "127.0.0.1",
        "-P",
        &p,
        "-T",
        "--rfc5424",
        "--octet-count",
        "-t",
        "torchserve",
        "-p",
        "local3.err",
        "--id=4242",
        "--msgid",
        "LOAD",
        "--sd-id",
        "model@32473",
        "--sd-param",
        "name=\"resnet-18\"",
        "--sd-param",
        "version=\"1.0\"",
        "tcp-5424-octet model failed to load",
    ]);
    let e = wait_event(&weir, "tcp-5424-octet model failed to load");
    let s = &e["log"]["syslog"];
    assert_eq!(s["appname"], "torchserve", "{e:#}");
    assert_eq!(s["facility"]["code"], 19);
    assert_eq!(s["facility"]["name"], "local3");
    assert_eq!(s["severity"]["code"], 3);
    assert_eq!(s["severity"]["name"], "err");
    assert_eq!(s["procid"], "4242");
    assert_eq!(s["msgid"], "LOAD");
    assert_eq!(s["version"], "1");
    assert_eq!(s["structured_data"]["model@32473"]["name"], "resnet-18");
    assert_eq!(s["structured_data"]["model@32473"]["version"], "1.0");
    assert_eq!(e["source"]["ip"], "127.0.0.1");
    assert!(e["host"]["name"].as_str().is_some_and(|h| !h.is_empty()));
    assert!(e.get("error").is_none(), "{e:#}");
    // logger stamps RFC 5424 messages with the time of sending, with its zone.
    let ts = chrono::DateTime::parse_from_rfc3339(e["@timestamp"].as_str().unwrap()).unwrap();
    assert!((chrono::Utc::now() - ts.to_utc()).num_seconds().abs() < 120, "{ts}");

    // Newline framing on the same port, and RFC 3164.
    logger(&[
        "-n",
        "127.0.0.1",
        "-P",
        &p,
        "-T",
        "--rfc3164",
        "-t",
        "vllm",
        "-p",
        "user.warning",
        "tcp-3164-lines",
    ]);
    let e = wait_event(&weir, "tcp-3164-lines");
    assert_eq!(e["log"]["syslog"]["appname"], "vllm", "{e:#}");
    assert_eq!(e["log"]["syslog"]["severity"]["code"], 4);
    assert_eq!(e["log"]["syslog"]["facility"]["name"], "user");
    assert!(e["log"]["syslog"].get("version").is_none());

    // Several messages on one connection (logger reads them from standard input).
    let mut child = Command::new("logger")
        .args(["-n", "127.0.0.1", "-P", &p, "-T", "--octet-count", "-t", "batch"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    let lines: String = (0..200).map(|i| format!("stdin-line-{i}\n")).collect();
    child.stdin.take().unwrap().write_all(lines.as_bytes()).unwrap();
    assert!(child.wait().unwrap().success());
    let ok = wait_for(WAIT, || {
        events(dir.path()).iter().filter(|e| e["log"]["syslog"]["appname"] == "batch").count()
            == 200
    });
    assert!(ok, "stdin lines missing; stderr:\n{}", weir.stderr());
    let got: Vec<String> = events(dir.path())
        .iter()
        .filter(|e| e["log"]["syslog"]["appname"] == "batch")
        .map(|e| e["message"].as_str().unwrap().to_string())
        .collect();
    let expected: Vec<String> = (0..200).map(|i| format!("stdin-line-{i}")).collect();
    assert_eq!(got, expected, "in order, each once");

    assert_eq!(metric(&weir, "weir_component_received_events_total", &[]), 202.0);
    assert_eq!(metric(&weir, "weir_component_errors_total", &[]), 0.0, "{}", weir.metrics());
    assert!(wait_for(WAIT, || metric(&weir, "weir_component_open_connections", &[]) == 0.0));
}

#[test]
fn logger_over_udp() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let weir = start(dir.path(), "udp", port, r#"timezone = "UTC""#);
    let p = port.to_string();
    logger(&[
        "-n",
        "127.0.0.1",
        "-P",
        &p,
        "-d",
        "--rfc5424",
        "-t",
        "triton",
        "-p",
        "daemon.info",
        "udp-5424",
    ]);
    let e = wait_event(&weir, "udp-5424");
    assert_eq!(e["log"]["syslog"]["appname"], "triton", "{e:#}");
    assert_eq!(e["log"]["syslog"]["facility"]["code"], 3);
    assert_eq!(e["log"]["syslog"]["severity"]["code"], 6);

    logger(&["-n", "127.0.0.1", "-P", &p, "-d", "--rfc3164", "-t", "bentoml", "udp-3164"]);
    let e = wait_event(&weir, "udp-3164");
    assert_eq!(e["log"]["syslog"]["appname"], "bentoml", "{e:#}");
    // RFC 3164 has no zone: the configured one (UTC) applies, and the year is inferred.
    let ts = chrono::DateTime::parse_from_rfc3339(e["@timestamp"].as_str().unwrap()).unwrap();
    let local_now = chrono::Local::now().naive_local();
    let skew = (local_now - ts.naive_utc()).num_minutes().abs();
    assert!(skew < 2, "logger wrote local time; read as UTC it is {ts}, local now {local_now}");

    // A datagram that is not syslog is kept with the sender and the reason.
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.send_to(b"plain words, no PRI\n", ("127.0.0.1", port)).unwrap();
    let e = wait_event(&weir, "plain words, no PRI");
    assert_eq!(e["source"]["ip"], "127.0.0.1");
    assert_eq!(e["source"]["port"], sock.local_addr().unwrap().port());
    assert!(e["error"]["message"].as_str().unwrap().contains("not a syslog message"), "{e:#}");
    assert!(wait_for(WAIT, || metric(
        &weir,
        "weir_component_errors_total",
        &[("error_type", "parse_failed")]
    ) == 1.0));
}

/// rsyslogd started by a test in `dir`, with its own work directory and `rules` (its
/// configuration after `global(workDirectory=...)`); `start` returns once it listens on
/// `port`. Killed when dropped.
pub(crate) struct Rsyslog {
    child: Child,
    dir: PathBuf,
}

impl Rsyslog {
    pub(crate) fn start(dir: &Path, port: u16, rules: &str) -> Self {
        Self::start_when(dir, rules, || TcpStream::connect(("127.0.0.1", port)).is_ok())
    }

    /// Like `start`, returning once `ready` holds (a UDP or Unix socket has no connect to
    /// wait for).
    pub(crate) fn start_when(dir: &Path, rules: &str, ready: impl Fn() -> bool) -> Self {
        let work = dir.join("rsyslog-work");
        std::fs::create_dir_all(&work).unwrap();
        let conf = dir.join("rsyslog.conf");
        let text = format!("global(workDirectory=\"{}\")\n{rules}", work.display());
        std::fs::write(&conf, text).unwrap();
        let child = Command::new(rsyslogd())
            .arg("-n")
            .arg("-f")
            .arg(&conf)
            .arg("-i")
            .arg(dir.join("rsyslog.pid"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("rsyslog.stderr")).unwrap())
            .spawn()
            .expect("start rsyslogd (Debian package rsyslog; scripts/test.sh installs it)");
        let r = Self { child, dir: dir.to_path_buf() };
        let up = wait_for(WAIT, ready);
        assert!(up, "rsyslogd did not listen; stderr:\n{}", r.stderr());
        r
    }

    pub(crate) fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.join("rsyslog.stderr")).unwrap_or_default()
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// rsyslog receiving on `in_port` and forwarding everything to weir with omfwd, octet-counted
/// TCP framing.
fn forwarder(dir: &Path, in_port: u16, weir_port: u16) -> Rsyslog {
    let rules = format!(
        r#"module(load="imtcp")
input(type="imtcp" address="127.0.0.1" port="{in_port}")
action(type="omfwd" target="127.0.0.1" port="{weir_port}" protocol="tcp"
       tcp_framing="octet-counted" template="RSYSLOG_SyslogProtocol23Format"
       action.resumeRetryCount="-1" queue.type="LinkedList" queue.size="10000")
"#
    );
    Rsyslog::start(dir, in_port, &rules)
}

pub(crate) fn rsyslogd() -> PathBuf {
    ["/usr/sbin/rsyslogd", "/sbin/rsyslogd"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("rsyslogd"))
}

#[test]
fn rsyslog_forwarder_with_octet_counted_framing() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let weir = start(dir.path(), "tcp", port, "");
    let in_port = free_port();
    let rsyslog = forwarder(dir.path(), in_port, port);

    // 500 messages, some with line feeds inside (which only octet counting can carry).
    let mut child = Command::new("logger")
        .args(["-n", "127.0.0.1", "-P", &in_port.to_string(), "-T", "--octet-count"])
        .args(["-t", "kserve", "-p", "local0.notice"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    let lines: String = (0..500).map(|i| format!("forwarded-{i:03} via rsyslog\n")).collect();
    child.stdin.take().unwrap().write_all(lines.as_bytes()).unwrap();
    assert!(child.wait().unwrap().success());

    let forwarded = |dir: &Path| -> Vec<Value> {
        events(dir).into_iter().filter(|e| e["log"]["syslog"]["appname"] == "kserve").collect()
    };
    let ok = wait_for(WAIT, || forwarded(dir.path()).len() >= 500);
    assert!(
        ok,
        "got {} of 500 forwarded messages\nweir stderr:\n{}\nrsyslog stderr:\n{}",
        forwarded(dir.path()).len(),
        weir.stderr(),
        rsyslog.stderr()
    );
    let got = forwarded(dir.path());
    let mut messages: Vec<&str> = got.iter().map(|e| e["message"].as_str().unwrap()).collect();
    messages.sort_unstable();
    let expected: Vec<String> = (0..500).map(|i| format!("forwarded-{i:03} via rsyslog")).collect();
    assert_eq!(messages, expected, "each message exactly once");
    let e = &got[0];
    // rsyslog re-emits them as RFC 5424 with its host name and its own PRI handling.
    assert_eq!(e["log"]["syslog"]["version"], "1", "{e:#}");
    assert_eq!(e["log"]["syslog"]["facility"]["name"], "local0");
    assert_eq!(e["log"]["syslog"]["severity"]["name"], "notice");
    assert_eq!(
        metric(&weir, "weir_component_errors_total", &[("error_type", "malformed_frame")]),
        0.0
    );
    assert_eq!(
        metric(&weir, "weir_component_errors_total", &[("error_type", "parse_failed")]),
        0.0
    );
}

#[test]
fn bad_frames_on_a_raw_socket_are_counted_and_good_ones_still_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let weir = start(dir.path(), "tcp", port, "max_message_bytes = 1024");
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();

    let mut raw = Vec::new();
    // Bytes that are not UTF-8, let alone syslog.
    raw.extend_from_slice(b"\xff\xfe\x00binary-garbage\n");
    // A digit first, but no octet count.
    raw.extend_from_slice(b"0 zero-length-claim\n");
    // An octet-counted frame of 5000 bytes, over the 1024-byte limit.
    let head = "<13>1 - - big - - - ";
    let big = format!("{head}{}", "B".repeat(5000 - head.len()));
    raw.extend_from_slice(format!("5000 {big}").as_bytes());
    // A line of 3000 bytes.
    raw.extend_from_slice(format!("<13>1 - - long - - - {}\n", "L".repeat(3000)).as_bytes());
    // Good messages afterwards, in both framings, on the same connection.
    let good = "<14>1 2026-01-01T00:00:00Z host app - - - good-after-bad";
    raw.extend_from_slice(format!("{} {good}", good.len()).as_bytes());
    raw.extend_from_slice(b"<14>1 2026-01-01T00:00:00Z host app - - - good-line-after-bad\n");
    s.write_all(&raw).unwrap();

    let e = wait_event(&weir, "good-after-bad");
    assert!(e.get("error").is_none(), "{e:#}");
    wait_event(&weir, "good-line-after-bad");

    let all = events(dir.path());
    let garbage = all
        .iter()
        .find(|e| e["message"].as_str().is_some_and(|m| m.contains("binary-garbage")))
        .expect("the garbage line is an event");
    assert!(garbage["error"]["message"].as_str().unwrap().contains("not a syslog message"));
    assert_eq!(garbage["source"]["ip"], "127.0.0.1");
    let zero = all.iter().find(|e| e["message"] == "0 zero-length-claim").expect("kept");
    assert!(
        zero["error"]["message"].as_str().unwrap().contains("no valid octet count"),
        "{zero:#}"
    );
    let big = all.iter().find(|e| e["log"]["syslog"]["appname"] == "big").expect("cut, kept");
    assert_eq!(big["message"].as_str().unwrap().len(), 1024 - head.len());
    assert!(big["error"]["message"].as_str().unwrap().contains("5000 bytes cut"), "{big:#}");
    let long = all.iter().find(|e| e["log"]["syslog"]["appname"] == "long").expect("cut, kept");
    assert!(long["error"]["message"].as_str().unwrap().contains("longer than max_message_bytes"));
    assert_eq!(all.len(), 6, "{all:#?}");

    assert_eq!(
        metric(&weir, "weir_component_errors_total", &[("error_type", "message_too_long")]),
        2.0
    );
    assert_eq!(
        metric(&weir, "weir_component_errors_total", &[("error_type", "malformed_frame")]),
        1.0
    );
    assert_eq!(
        metric(&weir, "weir_component_errors_total", &[("error_type", "parse_failed")]),
        2.0
    );
    assert_eq!(metric(&weir, "weir_component_open_connections", &[]), 1.0);
    // Logged once for the connection, naming the peer.
    let peer = s.local_addr().unwrap().to_string();
    let logged = weir.stderr().lines().filter(|l| l.contains("framing problem")).count();
    assert_eq!(logged, 1, "{}", weir.stderr());
    assert!(weir.stderr().contains(&peer), "{}", weir.stderr());

    // An incomplete octet-counted frame cut by the sender closing: kept, flagged.
    s.write_all(b"100 <13>1 - - cut - - - only part").unwrap();
    drop(s);
    let e = wait_event(&weir, "only part");
    assert!(e["error"]["message"].as_str().unwrap().contains("closed inside"), "{e:#}");
    assert!(wait_for(WAIT, || metric(&weir, "weir_component_open_connections", &[]) == 0.0));
}

#[test]
fn max_connections_closes_the_longest_idle_and_read_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let weir = start(dir.path(), "tcp", port, "max_connections = 2\nread_timeout_secs = 5");
    let open =
        |n: f64| wait_for(WAIT, || metric(&weir, "weir_component_open_connections", &[]) == n);
    let mut a = TcpStream::connect(("127.0.0.1", port)).unwrap();
    assert!(open(1.0));
    let mut b = TcpStream::connect(("127.0.0.1", port)).unwrap();
    assert!(open(2.0));
    b.write_all(b"<13>1 - - app - - - from b\n").unwrap();
    wait_event(&weir, "from b");
    // At the limit, a newcomer takes the place of the longest idle connection (a).
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    a.set_read_timeout(Some(WAIT)).unwrap();
    let mut buf = [0u8; 1];
    match a.read(&mut buf) {
        Ok(0) => {}
        Ok(n) => panic!("weir sent {n} bytes"),
        Err(e) => assert_ne!(e.kind(), ErrorKind::WouldBlock, "not closed: {e}"),
    }
    c.write_all(b"<13>1 - - app - - - from c\n").unwrap();
    wait_event(&weir, "from c");
    let closed = |reason: &str| {
        metric(&weir, "weir_component_connections_closed_total", &[("reason", reason)])
    };
    assert_eq!(closed("evicted"), 1.0);
    assert!(weir.stderr().contains("the longest idle connection was closed"));

    // Idle connections are closed after read_timeout_secs, which frees their slots.
    for mut s in [b, c] {
        s.set_read_timeout(Some(WAIT)).unwrap();
        assert!(matches!(s.read(&mut buf), Ok(0)), "idle connection not closed by weir");
    }
    assert!(open(0.0));
    assert_eq!(closed("idle_timeout"), 2.0);
    let mut d = TcpStream::connect(("127.0.0.1", port)).unwrap();
    d.write_all(b"<13>1 - - app - - - after the limit\n").unwrap();
    wait_event(&weir, "after the limit");
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, all signed by the CA.
pub(crate) struct Pki {
    pub(crate) ca_pem: String,
    pub(crate) server: (String, String),
    pub(crate) client: (String, String),
    pub(crate) ca: rustls_pki_types::CertificateDer<'static>,
}

pub(crate) fn pki() -> Pki {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "weir test CA");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let leaf = |names: Vec<String>, usage: rcgen::ExtendedKeyUsagePurpose| {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(names).unwrap();
        params.extended_key_usages = vec![usage];
        let cert = params.signed_by(&key, &issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    };
    Pki {
        ca_pem: ca_cert.pem(),
        server: leaf(vec!["127.0.0.1".into()], rcgen::ExtendedKeyUsagePurpose::ServerAuth),
        client: leaf(vec!["model-server-7".into()], rcgen::ExtendedKeyUsagePurpose::ClientAuth),
        ca: ca_cert.der().clone(),
    }
}

/// Connects with TLS (a client certificate when `client` is given) and writes `data`.
/// Returns the error of the handshake or the write, if any.
fn tls_send(
    port: u16,
    pki: &Pki,
    client: Option<&(String, String)>,
    data: &[u8],
) -> Result<(), String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    use tokio_rustls::rustls;

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki.ca.clone()).unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match client {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()],
                PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let sock = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    sock.set_read_timeout(Some(WAIT)).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, sock);
    tls.write_all(data).map_err(|e| e.to_string())?;
    tls.flush().map_err(|e| e.to_string())?;
    // TLS 1.3 finishes the client's side of the handshake before the server has checked the
    // client certificate; a read tells whether the server accepted it.
    tls.conn.send_close_notify();
    tls.flush().map_err(|e| e.to_string())?;
    let mut rest = Vec::new();
    tls.read_to_end(&mut rest).map_err(|e| e.to_string())?;
    Ok(())
}

#[test]
fn tls_with_client_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki();
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    };
    let crt = write("server.crt", &pki.server.0);
    let key = write("server.key", &pki.server.1);
    let ca = write("ca.crt", &pki.ca_pem);
    let port = free_port();
    let weir = start(
        dir.path(),
        "tcp",
        port,
        &format!(
            "tls.crt_file = \"{crt}\"\ntls.key_file = \"{key}\"\ntls.ca_file = \"{ca}\"\n\
             tls.verify_certificate = true"
        ),
    );

    let msg = "<165>1 2026-02-03T04:05:06Z gpu-3 triton 77 INFER - over TLS";
    tls_send(port, &pki, Some(&pki.client), format!("{} {msg}", msg.len()).as_bytes())
        .expect("a client with a certificate signed by the CA is served");
    let e = wait_event(&weir, "over TLS");
    assert_eq!(e["host"]["name"], "gpu-3");
    assert_eq!(e["log"]["syslog"]["msgid"], "INFER");
    assert_eq!(e["@timestamp"], "2026-02-03T04:05:06Z");

    let refused = tls_send(port, &pki, None, b"<13>1 - - app - - - no certificate\n");
    assert!(refused.is_err(), "a client without a certificate must be refused");
    assert!(wait_for(WAIT, || metric(
        &weir,
        "weir_component_errors_total",
        &[("error_type", "tls_handshake_failed")]
    ) == 1.0));
    // A plain-text sender on the TLS port is refused too, and counted.
    let mut plain = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let _ = plain.write_all(b"<13>1 - - app - - - plain text\n");
    assert!(wait_for(WAIT, || metric(
        &weir,
        "weir_component_errors_total",
        &[("error_type", "tls_handshake_failed")]
    ) == 2.0));
    assert!(
        events(dir.path()).iter().all(|e| e["message"] == "over TLS"),
        "{:#?}",
        events(dir.path())
    );
}

fn start_blocked(dir: &Path, mode: &str, port: u16) -> Weir {
    fifo(&dir.join("out.fifo"));
    Weir::start(
        dir,
        &format!(
            r#"
[sources.syslog]
type = "syslog"
mode = "{mode}"
address = "127.0.0.1:{port}"

[sinks.out]
type = "file"
inputs = ["syslog"]
path = "{{{{dir}}}}/out.fifo"
encoding.codec = "text"
buffer.max_bytes = 1048576
"#
        ),
    )
}

/// Reads the named pipe on a thread until it ends, counting lines into `lines`.
fn drain_fifo(path: PathBuf, lines: Arc<AtomicUsize>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut f = std::fs::File::open(path).unwrap();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            match f.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let count = buf[..n].iter().filter(|b| **b == b'\n').count();
                    lines.fetch_add(count, Ordering::Relaxed);
                }
            }
        }
    })
}

#[test]
fn tcp_sender_is_held_back_while_the_pipeline_is_full() {
    const LINE: usize = 2000;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let weir = start_blocked(dir.path(), "tcp", port);
    let line = |i: usize| {
        let head = format!("<13>1 - - bp - - - {i:08} ");
        format!("{head}{}\n", "p".repeat(LINE - head.len() - 1))
    };
    // 100 MB: more than weir's buffers and both sockets' kernel buffers together.
    let total = 50_000;
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut written = 0usize;
    let blocked = 'send: {
        for i in (0..total).step_by(100) {
            let chunk: String = (i..i + 100).map(line).collect();
            let mut off = 0;
            while off < chunk.len() {
                match s.write(&chunk.as_bytes()[off..]) {
                    Ok(n) => off += n,
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                        written += off;
                        break 'send true;
                    }
                    Err(e) => panic!("write failed: {e}"),
                }
            }
            written += off;
        }
        false
    };
    assert!(blocked, "weir read all {total} messages while its sink was stalled");
    let read_ahead = metric(&weir, "weir_component_received_events_total", &[]);
    let lines_written = written.div_ceil(LINE);
    assert!(
        read_ahead < 5000.0,
        "weir read {read_ahead} messages ahead of its stalled sink ({lines_written} were written)"
    );

    // The sink moves again: everything the sender wrote arrives, the cut last line included.
    let lines = Arc::new(AtomicUsize::new(0));
    let reader = drain_fifo(dir.path().join("out.fifo"), Arc::clone(&lines));
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let ok = wait_for(Duration::from_secs(120), || lines.load(Ordering::Relaxed) >= lines_written);
    assert!(
        ok,
        "{} of {lines_written} lines arrived\nmetrics:\n{}\nstderr:\n{}",
        lines.load(Ordering::Relaxed),
        weir.metrics(),
        weir.stderr()
    );
    assert_eq!(metric(&weir, "weir_component_received_events_total", &[]), lines_written as f64);
    drop(weir);
    let _ = reader.join();
    assert_eq!(lines.load(Ordering::Relaxed), lines_written);
}

#[test]
fn udp_drops_are_counted_when_the_pipeline_is_full() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let weir = start_blocked(dir.path(), "udp", port);
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let msg = format!("<13>1 - - udp - - - {}", "u".repeat(300));
    let dropped =
        |w: &Weir| metric(w, "weir_component_discarded_events_total", &[("reason", "buffer_full")]);
    let mut sent = 0u64;
    let ok = wait_for(WAIT, || {
        for _ in 0..1000 {
            sock.send_to(msg.as_bytes(), ("127.0.0.1", port)).unwrap();
        }
        sent += 1000;
        dropped(&weir) > 0.0
    });
    assert!(ok, "no counted drop after {sent} datagrams; {}", weir.metrics());
    assert!(weir.stderr().contains("udp messages dropped"), "{}", weir.stderr());

    // Once the sink moves again, what was queued is delivered: read = written + dropped.
    let lines = Arc::new(AtomicUsize::new(0));
    let reader = drain_fifo(dir.path().join("out.fifo"), Arc::clone(&lines));
    let ok = wait_for(WAIT, || {
        let text = weir.metrics();
        let read = metric_sum(
            &text,
            "weir_component_received_events_total",
            &[("component_id", "syslog")],
        );
        let written =
            metric_sum(&text, "weir_component_sent_events_total", &[("component_id", "out")]);
        let dropped = metric_sum(
            &text,
            "weir_component_discarded_events_total",
            &[("reason", "buffer_full")],
        );
        read > 0.0 && written + dropped == read && written == lines.load(Ordering::Relaxed) as f64
    });
    assert!(ok, "{}", weir.metrics());
    // Every datagram sent is accounted for: read by weir, or dropped by the kernel because
    // weir's socket buffer was full (counted from the kernel's own per-socket counter).
    let accounted = wait_for(WAIT, || {
        let text = weir.metrics();
        let read = metric_sum(
            &text,
            "weir_component_received_events_total",
            &[("component_id", "syslog")],
        );
        let kernel = metric_sum(
            &text,
            "weir_component_discarded_events_total",
            &[("reason", "kernel_buffer_full")],
        );
        read + kernel == sent as f64
    });
    assert!(accounted, "sent {sent}:\n{}", weir.metrics());
    drop(weir);
    let _ = reader.join();
}

/// `pipelines/syslog-to-console.toml`, with its listening addresses set to `address`.
fn example_pipeline(address: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines/syslog-to-console.toml");
    let text = std::fs::read_to_string(&path).expect("pipelines/syslog-to-console.toml");
    let with_address = text
        .replace("${WEIR_SYSLOG_TCP:-0.0.0.0:514}", address)
        .replace("${WEIR_SYSLOG_UDP:-0.0.0.0:514}", address);
    assert_ne!(with_address, text, "the example's addresses are no longer overridable");
    with_address
}

#[test]
fn the_example_pipeline_validates_and_runs() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines/syslog-to-console.toml");
    assert_eq!(crate::support::validate(&[&path]), (0, "Configuration OK\n".to_string()));

    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let weir = Weir::start(dir.path(), &example_pipeline(&format!("127.0.0.1:{port}")));
    let p = port.to_string();
    logger(&[
        "-n",
        "127.0.0.1",
        "-P",
        &p,
        "-T",
        "--octet-count",
        "-t",
        "torchserve",
        "-p",
        "local0.err",
        "example tcp",
    ]);
    logger(&["-n", "127.0.0.1", "-P", &p, "-d", "--rfc3164", "-t", "vllm", "example udp"]);
    let printed = |message: &str| -> Option<Value> {
        read_lines(&dir.path().join("stdout"))
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|e| e["message"] == message)
    };
    assert!(wait_for(WAIT, || printed("example tcp").is_some()), "{}", weir.stderr());
    assert!(wait_for(WAIT, || printed("example udp").is_some()), "{}", weir.stderr());
    let e = printed("example tcp").unwrap_or_default();
    assert_eq!(e["service"]["name"], "torchserve", "{e:#}");
    assert_eq!(e["log"]["level"], "err");
    assert_eq!(printed("example udp").unwrap_or_default()["service"]["name"], "vllm");
}

/// Splits one CSV record (fields may be quoted, with `""` for a quote).
fn csv_fields(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                chars.next();
                fields.last_mut().unwrap().push('"');
            }
            '"' => quoted = !quoted,
            ',' if !quoted => fields.push(String::new()),
            c => fields.last_mut().unwrap().push(c),
        }
    }
    fields
}

#[test]
fn loghub_linux_syslog_lines_parse_as_the_reference_says() {
    let data = crate::support::test_data().join("loghub/Linux");
    let lines = std::fs::read_to_string(data.join("Linux_2k.log")).unwrap();
    let reference: Vec<Vec<String>> =
        std::fs::read_to_string(data.join("Linux_2k.log_structured.csv"))
            .unwrap()
            .lines()
            .skip(1)
            .map(csv_fields)
            .collect();
    assert_eq!(reference.len(), 2000);

    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let weir = start(dir.path(), "tcp", port, r#"timezone = "UTC""#);
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    // The lines were written by a syslog daemon to a file, which drops the PRI: put one back
    // (authpriv.info), and send them newline-framed.
    let mut payload = String::new();
    for l in lines.lines() {
        payload.push_str("<86>");
        payload.push_str(l);
        payload.push('\n');
    }
    s.write_all(payload.as_bytes()).unwrap();
    drop(s);
    assert!(wait_for(WAIT, || events(dir.path()).len() == 2000), "{}", weir.stderr());
    let got = events(dir.path());
    let mut wrong = Vec::new();
    for (e, r) in got.iter().zip(&reference) {
        // LineId, Month, Date, Time, Level (the host), Component, PID, Content, ...
        let (host, component, pid, content) = (&r[4], &r[5], &r[6], &r[7]);
        let s = &e["log"]["syslog"];
        if component.contains(' ') {
            // `syslogd 1.4.1:` and `-- root[2421]:` are not RFC 3164 tags (a tag ends at the
            // first space): the parser takes `syslogd` (or no tag) and keeps the rest in the
            // message. The content is still there, and the event is not an error.
            let ok = e["host"]["name"] == host.as_str()
                && e["message"].as_str().is_some_and(|m| m.trim().ends_with(content.trim()))
                && e.get("error").is_none();
            if !ok {
                wrong.push(format!("line {}: {e}\n  expected {r:?}", r[0]));
            }
            continue;
        }
        let ok = e["host"]["name"] == host.as_str()
            && s["appname"] == component.as_str()
            && (pid.is_empty() && s.get("procid").is_none() || s["procid"] == pid.as_str())
            && e["message"].as_str().map(str::trim) == Some(content.trim())
            && s["facility"]["name"] == "authpriv"
            && s["severity"]["name"] == "info"
            && e.get("error").is_none();
        if !ok {
            wrong.push(format!("line {}: {e}\n  expected {r:?}", r[0]));
        }
    }
    assert!(wrong.is_empty(), "{} of 2000 lines differ:\n{}", wrong.len(), wrong.join("\n"));
    let irregular = reference.iter().filter(|r| r[5].contains(' ')).count();
    assert_eq!(irregular, 8, "the sample's lines with a space in their tag");
    // Timestamps: June 14 at 15:16:01 (year inferred, zone UTC as configured).
    let ts = got[0]["@timestamp"].as_str().unwrap();
    assert!(ts.ends_with("-06-14T15:16:01Z"), "{ts}");
}

#[test]
fn configuration_mistakes_are_reported_together_with_their_place() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pipeline.toml");
    std::fs::write(
        &path,
        r#"
[sources.syslog]
type = "syslog"
mode = "udp"
address = "0.0.0.0:514"
timezone = "Mars/Olympus"
tls.crt_file = "server.crt"
tls.key_file = "server.key"
tls.verify_certificate = true

[sources.kafka]
type = "kafka"
bootstrap_servers = "127.0.0.1:9092"
group_id = "weir"
topics = ["logs"]
auto_offset_reset = "oldest"
librdkafka_options = { "enable.auto.commit" = "true" }

[sinks.out]
type = "blackhole"
inputs = ["syslog", "kafka"]
"#,
    )
    .unwrap();
    let (code, out) = crate::support::validate(&[&path]);
    assert_eq!(code, 1, "{out}");
    for expected in [
        "sources.syslog: unknown time zone `Mars/Olympus`",
        "sources.syslog: TLS needs `mode = \"tcp\"`",
        "sources.syslog: verifying client certificates needs `tls.ca_file`",
        "sources.kafka: `oldest` is not one of earliest",
        "sources.kafka: `enable.auto.commit` cannot be set here",
    ] {
        assert!(out.contains(expected), "missing {expected:?} in:\n{out}");
    }
    assert!(out.contains("5 errors found"), "{out}");
    assert!(out.contains("pipeline.toml:6:"), "the time zone's line is named:\n{out}");
}
