//! The `socket` sink with real rsyslog as the receiver, in every mode: RFC 5424 over TCP with
//! octet counting (every header field and structured data as rsyslog parsed them, a
//! multi-line message kept whole, and a receiver that stops and starts again mid-run: the
//! sink reconnects and nothing is lost), over UDP (one unframed datagram per event), over a
//! Unix stream socket (newline framing), and over TLS to rsyslog's OpenSSL driver (the
//! receiver's certificate verified: a sink trusting another CA delivers nothing; with mutual
//! TLS, weir's client certificate presented, and without one nothing is acknowledged), and to
//! a TLS receiver that sends no session tickets.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::support::{Weir, free_port, read_lines, wait_for};
use crate::syslog::Rsyslog;

const WAIT: Duration = Duration::from_secs(60);

/// rsyslog receiving RFC 5424 on a TCP port (octet-counted or not: imtcp takes both) and
/// writing each message's parsed fields to `received.log`, `|`-separated.
fn start_receiver(dir: &Path, port: u16) -> Rsyslog {
    let input = format!(
        r#"module(load="imtcp")
input(type="imtcp" address="127.0.0.1" port="{port}")"#
    );
    Rsyslog::start(dir, port, &receiver_rules(dir, &input))
}

/// rsyslog's rules around `input` (modules and inputs): each message's parsed fields written
/// to `received.log`, `|`-separated. A trailing line feed is kept (rsyslog drops it by
/// default), so one the sink added would show.
fn receiver_rules(dir: &Path, input: &str) -> String {
    format!(
        r#"global(parser.dropTrailingLFOnReception="off")
{input}
template(name="fields" type="string"
  string="%syslogfacility-text%|%syslogseverity-text%|%hostname%|%app-name%|%procid%|%msgid%|%structured-data%|%msg%\n")
action(type="omfile" file="{out}" template="fields")
"#,
        out = dir.join("received.log").display()
    )
}

/// A temporary directory with `rsyslog/` inside for the receiver's files.
fn dirs() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let rsyslog_dir = dir.path().join("rsyslog");
    std::fs::create_dir_all(&rsyslog_dir).unwrap();
    (dir, rsyslog_dir)
}

/// Waits until rsyslog has written `n` distinct messages, then checks them all.
fn expect_all(rsyslog_dir: &Path, n: usize, multiline: bool, weir: &Weir, receiver: &Rsyslog) {
    let got = wait_for(WAIT, || received(rsyslog_dir).len() == n);
    let have = received(rsyslog_dir);
    let missing: Vec<usize> = (0..n).filter(|i| !have.contains_key(i)).collect();
    assert!(got, "missing {missing:?}\n{}\n{}", weir.stderr(), receiver.stderr());
    check_fields(&have, multiline);
}

fn append(path: &Path, ids: std::ops::Range<usize>) {
    append_lines(path, ids, true);
}

/// Appends events `ids` to `path`; with `multiline`, every tenth message has a line feed
/// inside (which only octet counting carries whole).
fn append_lines(path: &Path, ids: std::ops::Range<usize>, multiline: bool) {
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap();
    for i in ids {
        let level = if i % 4 == 0 { "error" } else { "info" };
        // JSON-escaped in the file.
        let message = if multiline && i % 10 == 0 {
            format!("prediction {i}\\nsecond line")
        } else {
            format!("prediction {i}")
        };
        writeln!(
            f,
            r#"{{"id":{i},"log":{{"level":"{level}"}},"service":{{"name":"triton"}},"model":"resnet-{}","trace":"t\"{i}]","message":"{message}"}}"#,
            i % 3
        )
        .unwrap();
    }
}

fn start_weir(dir: &Path, port: u16) -> Weir {
    let target =
        format!("mode = \"tcp\"\naddress = \"127.0.0.1:{port}\"\nframing = \"octet_counting\"");
    start_weir_to(dir, &target)
}

/// weir reading `in.log` and writing RFC 5424 to the socket `target` (mode, address or path,
/// framing, tls).
fn start_weir_to(dir: &Path, target: &str) -> Weir {
    Weir::start(
        dir,
        &format!(
            r#"
[sources.lines]
type = "file"
include = ["{{{{dir}}}}/in.log"]

[transforms.fields]
type = "parse_json"
inputs = ["lines"]

[sinks.rsyslog]
type = "socket"
inputs = ["fields"]
{target}
encoding.codec = "syslog"
encoding.syslog.facility = "local4"
encoding.syslog.msg_id_field = "model"
encoding.syslog.structured_data = {{ "inference@32473" = {{ model = "model", trace = "trace" }} }}
"#
        ),
    )
}

/// Received messages by id (the number after "prediction "): the fields rsyslog parsed.
fn received(dir: &Path) -> BTreeMap<usize, Vec<Vec<String>>> {
    let mut by_id: BTreeMap<usize, Vec<Vec<String>>> = BTreeMap::new();
    for line in read_lines(&dir.join("received.log")) {
        let fields: Vec<String> = line.splitn(8, '|').map(str::to_string).collect();
        let id = fields[7]
            .strip_prefix("prediction ")
            .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("unexpected message: {line}"));
        by_id.entry(id).or_default().push(fields);
    }
    by_id
}

/// Checks every received message (the first copy of each): header fields, structured data
/// and the message exactly as sent, so a line feed the sink added would show as `#012`.
fn check_fields(got: &BTreeMap<usize, Vec<Vec<String>>>, multiline: bool) {
    let host = hostname();
    for (&id, copies) in got {
        let f = &copies[0];
        let severity = if id % 4 == 0 { "err" } else { "info" };
        assert_eq!(f[0], "local4", "{f:?}");
        assert_eq!(f[1], severity, "{f:?}");
        assert_eq!(f[2], host, "the host.name the file source set");
        assert_eq!(f[3], "triton", "APP-NAME from service.name");
        assert_eq!(f[4], "-", "no process.pid: the NILVALUE");
        assert_eq!(f[5], format!("resnet-{}", id % 3), "MSGID from a field");
        assert_eq!(
            f[6],
            format!(r#"[inference@32473 model="resnet-{}" trace="t\"{id}\]"]"#, id % 3),
            "structured data, escaped"
        );
        let message = if multiline && id % 10 == 0 {
            // rsyslog writes a control character inside a message as `#` and its octal code.
            format!("prediction {id}#012second line")
        } else {
            format!("prediction {id}")
        };
        assert_eq!(f[7], message, "one message, whole, nothing appended");
    }
}

#[test]
fn rsyslog_receives_rfc5424_with_octet_counting_across_a_restart() {
    let (dir, rsyslog_dir) = dirs();
    let port = free_port();
    let receiver = start_receiver(&rsyslog_dir, port);
    append(&dir.path().join("in.log"), 0..200);
    let weir = start_weir(dir.path(), port);
    expect_all(&rsyslog_dir, 200, true, &weir, &receiver);

    // The receiver goes away and comes back on the same port: the sink reconnects and
    // delivers what came meanwhile (at least once).
    drop(receiver);
    append(&dir.path().join("in.log"), 200..300);
    let errors = || {
        weir.metric(
            "weir_component_errors_total",
            &[("component_id", "rsyslog"), ("error_type", "write_failed")],
        )
    };
    let tried = wait_for(WAIT, || errors() >= 1.0);
    assert!(tried, "the sink did not notice the receiver was gone:\n{}", weir.stderr());
    let receiver = start_receiver(&rsyslog_dir, port);
    let got = wait_for(WAIT, || received(&rsyslog_dir).len() == 300);
    let have = received(&rsyslog_dir);
    let missing: Vec<usize> = (0..300).filter(|i| !have.contains_key(i)).collect();
    assert!(got, "missing {missing:?}\n{}\n{}", weir.stderr(), receiver.stderr());
    crate::kafka_sink::stop_cleanly(weir);
}

fn hostname() -> String {
    let out = Command::new("hostname").output().expect("hostname");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Whether a UDP socket is bound to `127.0.0.1:port` (the kernel's table: a datagram socket
/// has no handshake to wait for).
fn udp_bound(port: u16) -> bool {
    let local = format!("0100007F:{port:04X}");
    std::fs::read_to_string("/proc/net/udp")
        .is_ok_and(|t| t.lines().any(|l| l.split_whitespace().nth(1) == Some(local.as_str())))
}

#[test]
fn rsyslog_receives_one_unframed_datagram_per_event_over_udp() {
    let (dir, rsyslog_dir) = dirs();
    let port = free_port();
    let input = format!(
        r#"module(load="imudp")
input(type="imudp" address="127.0.0.1" port="{port}")"#
    );
    let rules = receiver_rules(&rsyslog_dir, &input);
    let receiver = Rsyslog::start_when(&rsyslog_dir, &rules, || udp_bound(port));
    let weir =
        start_weir_to(dir.path(), &format!("mode = \"udp\"\naddress = \"127.0.0.1:{port}\""));
    // UDP drops what a full receive buffer cannot take, silently: the events go in steps of
    // 20 (a few KiB, far below any socket buffer), each awaited before the next, so a slow
    // machine cannot turn the test into a measure of rsyslog's read speed.
    for step in 0..5 {
        let ids = step * 20..(step + 1) * 20;
        append_lines(&dir.path().join("in.log"), ids.clone(), true);
        expect_all(&rsyslog_dir, ids.end, true, &weir, &receiver);
    }
    // A datagram is one message: the multi-line ones arrived whole, and none carries a line
    // feed at its end (check_fields compares each message exactly).
    crate::kafka_sink::stop_cleanly(weir);
}

#[test]
fn rsyslog_receives_newline_framed_events_over_a_unix_stream_socket() {
    let (dir, rsyslog_dir) = dirs();
    let socket = rsyslog_dir.join("weir.sock");
    // imptcp listens on a Unix stream socket when given a path.
    let input = format!(
        r#"module(load="imptcp")
input(type="imptcp" path="{}" unlink="on")"#,
        socket.display()
    );
    let rules = receiver_rules(&rsyslog_dir, &input);
    let receiver = Rsyslog::start_when(&rsyslog_dir, &rules, || {
        std::os::unix::net::UnixStream::connect(&socket).is_ok()
    });
    // Newline framing (the default) cannot carry line feeds inside a message: none here.
    append_lines(&dir.path().join("in.log"), 0..200, false);
    let weir =
        start_weir_to(dir.path(), &format!("mode = \"unix\"\npath = \"{}\"", socket.display()));
    expect_all(&rsyslog_dir, 200, false, &weir, &receiver);
    crate::kafka_sink::stop_cleanly(weir);
}

/// rsyslog receiving over TLS (its OpenSSL driver, Debian package rsyslog-openssl) with
/// certificates made here, `auth_mode` for clients: `anon` (no client certificate asked for)
/// or `x509/certvalid` (a client certificate the CA signed, its name not checked). Returns the
/// receiver and its port; the CA and a client certificate the CA signed are written to `dir`
/// (`ca.pem`, `client.pem`, `client.key`).
fn start_tls_receiver(dir: &Path, auth_mode: &str) -> (Rsyslog, u16) {
    let pki = crate::syslog::pki();
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let ca = write("ca.pem", &pki.ca_pem);
    let crt = write("server.pem", &pki.server.0);
    let key = write("server.key", &pki.server.1);
    write("client.pem", &pki.client.0);
    write("client.key", &pki.client.1);
    let port = free_port();
    let input = format!(
        r#"global(defaultNetstreamDriverCAFile="{ca}" defaultNetstreamDriverCertFile="{crt}"
       defaultNetstreamDriverKeyFile="{key}")
module(load="imtcp" streamDriver.name="ossl" streamDriver.mode="1" streamDriver.authMode="{auth_mode}")
input(type="imtcp" address="127.0.0.1" port="{port}")"#,
        ca = ca.display(),
        crt = crt.display(),
        key = key.display()
    );
    (Rsyslog::start(dir, port, &receiver_rules(dir, &input)), port)
}

#[test]
fn rsyslog_receives_over_tls_and_an_unverified_receiver_gets_nothing() {
    let (dir, rsyslog_dir) = dirs();
    // TLS only, no client certificate asked for.
    let (receiver, port) = start_tls_receiver(&rsyslog_dir, "anon");
    let ca = rsyslog_dir.join("ca.pem");
    append(&dir.path().join("in.log"), 0..200);
    // Octet counting, as RFC 5425 prescribes for syslog over TLS.
    let target = format!(
        "mode = \"tcp\"\naddress = \"127.0.0.1:{port}\"\nframing = \"octet_counting\"\ntls.ca_file = \"{}\"",
        ca.display()
    );
    let weir = start_weir_to(dir.path(), &target);
    expect_all(&rsyslog_dir, 200, true, &weir, &receiver);
    crate::kafka_sink::stop_cleanly(weir);

    // A sink that trusts another CA refuses the receiver: errors counted, nothing written.
    let other = tempfile::tempdir().unwrap();
    let other_ca = other.path().join("other-ca.pem");
    std::fs::write(&other_ca, crate::syslog::pki().ca_pem).unwrap();
    append(&other.path().join("in.log"), 1000..1010);
    let target = format!(
        "mode = \"tcp\"\naddress = \"127.0.0.1:{port}\"\nframing = \"octet_counting\"\ntls.ca_file = \"{}\"",
        other_ca.display()
    );
    let weir = start_weir_to(other.path(), &target);
    let errors = || {
        weir.metric(
            "weir_component_errors_total",
            &[("component_id", "rsyslog"), ("error_type", "write_failed")],
        )
    };
    assert!(wait_for(WAIT, || errors() >= 1.0), "no failed handshake counted:\n{}", weir.stderr());
    assert!(weir.stderr().contains("certificate"), "{}", weir.stderr());
    assert_eq!(received(&rsyslog_dir).len(), 200, "nothing from the unverified connection");
}

#[test]
fn rsyslog_requiring_a_client_certificate_receives_from_weir_presenting_one() {
    let (dir, rsyslog_dir) = dirs();
    // Mutual TLS: rsyslog accepts only a client whose certificate the CA signed.
    let (receiver, port) = start_tls_receiver(&rsyslog_dir, "x509/certvalid");
    let (ca, client_crt, client_key) = (
        rsyslog_dir.join("ca.pem"),
        rsyslog_dir.join("client.pem"),
        rsyslog_dir.join("client.key"),
    );
    append(&dir.path().join("in.log"), 0..200);
    let target = format!(
        "mode = \"tcp\"\naddress = \"127.0.0.1:{port}\"\nframing = \"octet_counting\"\n\
         tls = {{ ca_file = \"{}\", crt_file = \"{}\", key_file = \"{}\" }}",
        ca.display(),
        client_crt.display(),
        client_key.display()
    );
    let weir = start_weir_to(dir.path(), &target);
    expect_all(&rsyslog_dir, 200, true, &weir, &receiver);
    crate::kafka_sink::stop_cleanly(weir);

    // Without a client certificate rsyslog refuses the connection: nothing is written, the
    // failure is counted, and no event is acknowledged (they wait to be sent again). Under
    // TLS 1.3 the refusal is an alert after weir's side of the handshake has ended; the sink
    // waits for it (or a session ticket) up to its connect timeout, 10 s by default, which
    // rsyslog's answer on loopback (milliseconds) is far inside.
    let other = tempfile::tempdir().unwrap();
    append(&other.path().join("in.log"), 1000..1010);
    let target = format!(
        "mode = \"tcp\"\naddress = \"127.0.0.1:{port}\"\nframing = \"octet_counting\"\ntls.ca_file = \"{}\"",
        ca.display()
    );
    let weir = start_weir_to(other.path(), &target);
    let metric = |name: &str, labels: &[(&str, &str)]| {
        let mut all = vec![("component_id", "rsyslog")];
        all.extend_from_slice(labels);
        weir.metric(name, &all)
    };
    let errors = || metric("weir_component_errors_total", &[("error_type", "write_failed")]);
    assert!(
        wait_for(WAIT, || errors() >= 2.0),
        "no refused connection counted:\n{}",
        weir.stderr()
    );
    // rsyslog's alert, as rustls reports it.
    assert!(weir.stderr().contains("CertificateRequired"), "{}", weir.stderr());
    assert_eq!(metric("weir_component_sent_events_total", &[]), 0.0, "{}", weir.metrics());
    assert_eq!(
        received(&rsyslog_dir).len(),
        200,
        "nothing from the connection without a certificate"
    );
}

/// A TLS 1.3 receiver that sends no session ticket (rustls with `send_tls13_tickets = 0`)
/// gives the sink no sign that it accepted the client: the sink takes the connection as
/// accepted when `connect_timeout_secs` has passed, and every event arrives.
#[test]
fn a_tls_receiver_sending_no_session_ticket_still_receives() {
    use std::io::BufRead;
    use std::sync::Arc;

    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    use tokio_rustls::rustls;

    let dir = tempfile::tempdir().unwrap();
    let pki = crate::syslog::pki();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from_pem_slice(pki.server.0.as_bytes()).unwrap()],
            PrivateKeyDer::from_pem_slice(pki.server.1.as_bytes()).unwrap(),
        )
        .unwrap();
    config.send_tls13_tickets = 0;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (lines_tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let (sock, _) = listener.accept().unwrap();
        let conn = rustls::ServerConnection::new(Arc::new(config)).unwrap();
        let tls = std::io::BufReader::new(rustls::StreamOwned::new(conn, sock));
        for line in tls.lines() {
            let Ok(line) = line else { break };
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });

    append_lines(&dir.path().join("in.log"), 0..20, false);
    // 2 s: how long the sink waits for a ticket before it writes anyway. A handshake slower
    // than that on a loaded machine only times out and is tried again; WAIT bounds the test.
    let target = format!(
        "mode = \"tcp\"\naddress = \"127.0.0.1:{port}\"\nconnect_timeout_secs = 2\ntls.ca_file = \"{}\"",
        ca.display()
    );
    let weir = start_weir_to(dir.path(), &target);
    let mut got = Vec::new();
    while got.len() < 20 {
        match lines.recv_timeout(WAIT) {
            Ok(line) => got.push(line),
            Err(e) => panic!("{e}: {} of 20 lines\n{}", got.len(), weir.stderr()),
        }
    }
    for (i, line) in got.iter().enumerate() {
        assert!(line.ends_with(&format!("prediction {i}")), "{line}");
    }
    crate::kafka_sink::stop_cleanly(weir);
}
