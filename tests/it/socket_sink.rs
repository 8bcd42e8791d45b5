//! The `socket` sink with real rsyslog as the receiver: RFC 5424 over TCP with octet
//! counting, every header field and structured data as rsyslog parsed them, a multi-line
//! message kept whole, and a receiver that stops and starts again mid-run (the sink
//! reconnects; nothing is lost).

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
    let rules = format!(
        r#"module(load="imtcp")
template(name="fields" type="string"
  string="%syslogfacility-text%|%syslogseverity-text%|%hostname%|%app-name%|%procid%|%msgid%|%structured-data%|%msg%\n")
input(type="imtcp" address="127.0.0.1" port="{port}")
action(type="omfile" file="{out}" template="fields")
"#,
        out = dir.join("received.log").display()
    );
    Rsyslog::start(dir, port, &rules)
}

fn append(path: &Path, ids: std::ops::Range<usize>) {
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap();
    for i in ids {
        let level = if i % 4 == 0 { "error" } else { "info" };
        // Every tenth message has a line feed inside (JSON-escaped in the file).
        let message = if i % 10 == 0 {
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
mode = "tcp"
address = "127.0.0.1:{port}"
framing = "octet_counting"
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

#[test]
fn rsyslog_receives_rfc5424_with_octet_counting_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let rsyslog_dir = dir.path().join("rsyslog");
    std::fs::create_dir_all(&rsyslog_dir).unwrap();
    let port = free_port();
    let receiver = start_receiver(&rsyslog_dir, port);
    append(&dir.path().join("in.log"), 0..200);
    let weir = start_weir(dir.path(), port);
    let got = wait_for(WAIT, || received(&rsyslog_dir).len() == 200);
    assert!(
        got,
        "{} of 200\n{}\n{}",
        received(&rsyslog_dir).len(),
        weir.stderr(),
        receiver.stderr()
    );

    let host = hostname();
    for (id, copies) in received(&rsyslog_dir) {
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
        let message = if id % 10 == 0 {
            // rsyslog writes a control character inside a message as `#` and its octal code.
            format!("prediction {id}#012second line")
        } else {
            format!("prediction {id}")
        };
        assert_eq!(f[7], message, "one message, whole");
    }

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
