//! Starting, serving the API, ending and stopping: the default pipeline, stdin to its end,
//! graceful shutdown and its deadline, the second signal.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{Weir, free_port, http_get, metric_sum, signal, wait_for, weir_bin};

#[test]
fn the_embedded_default_pipeline_runs_and_serves_metrics() {
    let port = free_port();
    let mut child = Command::new(weir_bin())
        .env("WEIR_API_ADDRESS", format!("127.0.0.1:{port}"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let api = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let stdout = child.stdout.take().unwrap();
    // Read until a traceback arrives joined into one parsed event, with the JSON predictions
    // and TorchServe access lines around it parsed too; then keep reading to the end (a closed
    // standard output fails the console sink, and weir with it).
    let (found_tx, found) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let (mut traceback, mut prediction, mut access) = (false, false, false);
        for line in BufReader::new(stdout).lines() {
            if traceback && prediction && access {
                continue;
            }
            let event: serde_json::Value = serde_json::from_str(&line.unwrap()).unwrap();
            assert!(event.get("error").is_none(), "unparsed event: {event}");
            assert_eq!(event["service"]["name"], "model-serving");
            let message = event["message"].as_str().unwrap_or_default();
            traceback |= message.contains("\nTraceback (most recent call last):\n")
                && event["log"]["level"] == "ERROR";
            prediction |= event["features"]["monthly_charges"].is_number();
            access |= event["http"]["response"]["status_code"].is_number();
            if traceback && prediction && access {
                let _ = found_tx.send(());
            }
        }
    });
    let healthy =
        wait_for(Duration::from_secs(30), || matches!(http_get(api, "/health"), Ok((200, _))));
    assert!(healthy);
    assert!(
        found.recv_timeout(Duration::from_secs(60)).is_ok(),
        "the demo output lacked a kind of event"
    );
    let (status, metrics) = http_get(api, "/metrics").unwrap();
    assert_eq!(status, 200);
    assert!(
        metric_sum(
            &metrics,
            "weir_component_sent_events_total",
            &[("component_id", "model_servers")]
        ) > 0.0
    );
    assert!(
        metric_sum(
            &metrics,
            "weir_component_received_events_total",
            &[("component_id", "console")]
        ) > 0.0
    );
    signal(child.id(), "INT");
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    reader.join().unwrap();
}

#[test]
fn stdin_to_its_end_then_exit() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("p.toml");
    std::fs::write(
        &config,
        "[sources.in]\ntype = \"stdin\"\n[transforms.j]\ntype = \"parse_json\"\ninputs = [\"in\"]\n[sinks.out]\ntype = \"console\"\ninputs = [\"j\"]\n",
    )
    .unwrap();
    let mut child = Command::new(weir_bin())
        .args(["run", "--config"])
        .arg(&config)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        for i in 0..20_000 {
            writeln!(stdin, "{{\"i\":{i},\"model\":\"m\"}}").unwrap();
        }
        // The last line has no newline: it still counts at the end of input.
        write!(stdin, "{{\"i\":20000}}").unwrap();
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert!(out.status.success());
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 20_001);
    for (i, e) in lines.iter().enumerate() {
        assert_eq!(e["i"], i, "in order, parsed");
    }
}

/// A file source feeding a console sink whose output nobody reads: shutdown cannot drain.
fn stuck_pipeline(dir: &std::path::Path, timeout_secs: u64) -> Weir {
    let log = dir.join("big.log");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&log).unwrap());
    for i in 0..200_000 {
        writeln!(f, "line {i} {}", "x".repeat(60)).unwrap();
    }
    drop(f);
    let weir = Weir::start_with(
        dir,
        &format!(
            "shutdown_timeout_secs = {timeout_secs}\n[sources.files]\ntype = \"file\"\ninclude = [\"{}\"]\n[sinks.out]\ntype = \"console\"\ninputs = [\"files\"]\nbuffer.max_bytes = 1048576\n",
            log.display()
        ),
        Stdio::piped(),
    );
    let full = wait_for(Duration::from_secs(60), || {
        weir.metric("weir_buffer_size_bytes", &[("component_id", "out")]) > 500_000.0
    });
    assert!(full, "{}", weir.stderr());
    weir
}

#[test]
fn shutdown_gives_up_at_its_deadline_and_keeps_the_checkpoint_honest() {
    let dir = tempfile::tempdir().unwrap();
    let mut weir = stuck_pipeline(dir.path(), 2);
    let started = Instant::now();
    signal(weir.child.id(), "TERM");
    let status = weir.wait(Duration::from_secs(30));
    let took = started.elapsed();
    assert_eq!(status.code(), Some(1), "a shutdown that timed out is not a clean exit");
    assert!(took >= Duration::from_secs(1) && took < Duration::from_secs(10), "took {took:?}");
    assert!(weir.stderr().contains("shutdown timed out"), "{}", weir.stderr());
    // The unread pipe took what it could hold (64 KiB); the rest was never delivered. The
    // checkpoint may cover the lines that reached the pipe, never one more.
    let mut printed = String::new();
    weir.child.stdout.take().unwrap().read_to_string(&mut printed).unwrap();
    let printed = printed.matches('\n').count();
    let checkpoints =
        std::fs::read_to_string(dir.path().join("data/files/checkpoints.json")).unwrap();
    let parsed: serde_json::Value = serde_json::from_str(&checkpoints).unwrap();
    let offset = parsed["checkpoints"][0]["offset"].as_u64().unwrap();
    let (mut covered, mut at) = (0, 0);
    while at < offset {
        at += format!("line {covered} {}\n", "x".repeat(60)).len() as u64;
        covered += 1;
    }
    assert_eq!(at, offset, "the checkpoint is not at the start of a line");
    assert!(
        covered <= printed,
        "the checkpoint covers {covered} lines but only {printed} reached the sink's output"
    );
    assert!(printed < 200_000, "the pipe took everything ({printed} lines)");
}

#[test]
fn a_second_signal_exits_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut weir = stuck_pipeline(dir.path(), 600);
    signal(weir.child.id(), "TERM");
    let draining =
        wait_for(Duration::from_secs(60), || weir.stderr().contains("stopping: draining"));
    assert!(draining);
    let started = Instant::now();
    signal(weir.child.id(), "TERM");
    // The shutdown deadline is 600 s: any exit well within it is the second signal's doing,
    // so the bound leaves a loaded machine plenty of room.
    let status = weir.wait(Duration::from_secs(60));
    assert_eq!(status.code(), Some(130));
    assert!(started.elapsed() < Duration::from_secs(60));
}
