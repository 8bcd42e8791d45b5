//! `weir tap` against a running weir: what it shows (outputs of a transform, inputs of a
//! sink, globs), how much (`--limit` per interval), what a slow reader costs (its own copies,
//! never the pipeline's delivery), the errors a user meets, a tap across reloads, across a
//! restart of weir (it connects again), and for a set time (`--duration-ms`).

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use crate::support::{Weir, free_port, read_lines, signal, wait_for, weir_bin};

/// Generous: CI is a loaded 2-core machine running the whole suite at once.
const WAIT: Duration = Duration::from_secs(120);

/// Starts weir on `pipeline` with the API on a free port and `api_extra` in `[api]`.
fn start(dir: &Path, pipeline: &str, api_extra: &str) -> Weir {
    start_at(dir, pipeline, api_extra, SocketAddr::from(([127, 0, 0, 1], free_port())))
}

/// As [`start`], with the API at `api`.
fn start_at(dir: &Path, pipeline: &str, api_extra: &str, api: SocketAddr) -> Weir {
    let config = dir.join("pipeline.toml");
    write_config(dir, &config, api, pipeline, api_extra);
    let child = Command::new(weir_bin())
        .args(["run", "--config"])
        .arg(&config)
        .env("WEIR_LOG", "info")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(dir.join("stdout")).unwrap())
        .stderr(std::fs::File::create(dir.join("stderr")).unwrap())
        .spawn()
        .expect("spawn weir");
    let weir = Weir { child, api, dir: dir.to_path_buf(), config };
    let up = wait_for(WAIT, || weir.health().1["status"] == "ok");
    assert!(up, "weir did not start; stderr:\n{}", weir.stderr());
    weir
}

fn write_config(dir: &Path, config: &Path, api: SocketAddr, pipeline: &str, api_extra: &str) {
    let text = format!(
        "data_dir = \"{}\"\n{}\n\n[api]\naddress = \"{api}\"\n{api_extra}\n",
        dir.join("data").display(),
        pipeline.replace("{{dir}}", &dir.display().to_string())
    );
    std::fs::write(config, text).unwrap();
}

/// Demo lines through a transform that marks them, into a file.
const DEMO: &str = r#"
[sources.in]
type = "demo"
interval_ms = 5

[transforms.parse]
type = "remap"
inputs = ["in"]
source = '.stage = "parsed"'

[sinks.out]
type = "file"
inputs = ["parse"]
path = "{{dir}}/out.log"
"#;

fn tap(weir: &Weir, args: &[&str]) -> Command {
    let mut c = Command::new(weir_bin());
    c.arg("tap").arg("--url").arg(format!("http://{}", weir.api)).args(args);
    c
}

/// Runs a tap that ends by itself (`--count`, or an error) within the deadline.
fn tap_output(weir: &Weir, args: &[&str]) -> Output {
    let child = tap(weir, args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    finish(child)
}

/// Waits for a tap to exit (killed after the deadline, and the test fails).
fn finish(mut child: Child) -> Output {
    let exited = wait_for(WAIT, || matches!(child.try_wait(), Ok(Some(_))));
    if !exited {
        let _ = child.kill();
    }
    let out = child.wait_with_output().unwrap();
    assert!(exited, "weir tap did not exit; stderr:\n{}", String::from_utf8_lossy(&out.stderr));
    out
}

fn json_lines(out: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// The `stage` field of each event a tap has written to `stdout` so far.
fn stages(stdout: &Path) -> Vec<String> {
    (read_lines(stdout).iter())
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|v| v["stage"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn tap_shows_outputs_of_a_transform_inputs_of_a_sink_and_globs() {
    let dir = tempfile::tempdir().unwrap();
    let weir = start(dir.path(), DEMO, "tap = true");

    let out = tap_output(&weir, &["parse", "--count", "5"]);
    assert!(out.status.success(), "stderr:\n{}", text(&out.stderr));
    let events = json_lines(&out);
    assert_eq!(events.len(), 5);
    for e in &events {
        assert_eq!(e["stage"], "parsed", "{e}");
        assert!(e["message"].is_string(), "{e}");
    }
    assert!(text(&out.stderr).contains("tapping the outputs of parse"), "{}", text(&out.stderr));

    // What reaches the sink: the transform's output, printed as logfmt.
    let out = tap_output(&weir, &["--inputs-of", "out", "-n", "3", "--format", "logfmt"]);
    assert!(out.status.success(), "stderr:\n{}", text(&out.stderr));
    let lines: Vec<String> = text(&out.stdout).lines().map(String::from).collect();
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(
        lines.iter().all(|l| l.contains("stage=parsed") && l.contains("message=")),
        "{lines:?}"
    );

    // A glob: the source's own events, before the transform marks them.
    let out = tap_output(&weir, &["--outputs-of", "i*", "-n", "3", "--meta"]);
    assert!(out.status.success(), "stderr:\n{}", text(&out.stderr));
    let events = json_lines(&out);
    assert_eq!(events.len(), 3);
    for e in &events {
        assert_eq!(e["output"], "in", "{e}");
        assert!(e["event"]["message"].is_string() && e["event"]["stage"].is_null(), "{e}");
    }

    // Names that tap nothing: clear errors, exit 1.
    let out = tap_output(&weir, &["nope"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("no component matches \"nope\"") && err.contains("in, out, parse"),
        "{err}"
    );
    let out = tap_output(&weir, &["--outputs-of", "out"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("sinks.out"), "{}", text(&out.stderr));
    assert!(weir.stop().success());
}

#[test]
fn limit_caps_the_events_of_an_interval() {
    let dir = tempfile::tempdir().unwrap();
    let mut weir = start(dir.path(), DEMO, "tap = true");
    // One window of an hour: two events, then none, however many pass.
    let child =
        tap(&weir, &["parse", "--limit", "2", "--interval-ms", "3600000", "--no-reconnect"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
    let sent = || weir.metric("weir_component_sent_events_total", &[("component_id", "parse")]);
    // The tap is attached once weir's first two events for it are out: wait for a few hundred
    // more to pass the transform (the demo makes 200 a second), then stop weir, which ends
    // the tap after it has written what it queued.
    let out_log = dir.path().join("out.log");
    assert!(wait_for(WAIT, || read_lines(&out_log).len() >= 10), "stderr:\n{}", weir.stderr());
    let attached = wait_for(WAIT, || http_tap_count(&weir) == 1);
    assert!(attached, "the tap did not attach; stderr:\n{}", weir.stderr());
    let base = sent();
    assert!(wait_for(WAIT, || sent() >= base + 300.0), "stderr:\n{}", weir.stderr());
    signal(weir.child.id(), "TERM");
    let out = finish(child);
    assert!(weir.wait(WAIT).success(), "stderr:\n{}", weir.stderr());
    let events = json_lines(&out);
    assert_eq!(events.len(), 2, "stderr:\n{}", text(&out.stderr));
    let err = text(&out.stderr);
    // --no-reconnect: the tap ends with weir, as weir ended it.
    assert!(out.status.success() && err.contains("weir is stopping"), "{err}");
    assert!(!err.contains("connecting again"), "{err}");
}

/// A tap outlives a restart of weir: when weir stops it says so and connects again, with
/// backoff, until the new weir answers, then prints the new weir's events.
#[test]
fn a_tap_connects_again_when_weir_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let api = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mut weir = start_at(dir.path(), DEMO, "tap = true", api);
    let stdout = dir.path().join("tap.stdout");
    let stderr = dir.path().join("tap.stderr");
    let mut child = tap(&weir, &["parse", "--limit", "5", "--interval-ms", "50"])
        .stdout(std::fs::File::create(&stdout).unwrap())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    let stages = || stages(&stdout);
    let tap_err = || std::fs::read_to_string(&stderr).unwrap_or_default();
    assert!(wait_for(WAIT, || stages().contains(&"parsed".into())), "{}", weir.stderr());
    signal(weir.child.id(), "TERM");
    assert!(weir.wait(WAIT).success(), "stderr:\n{}", weir.stderr());
    let waiting = wait_for(WAIT, || tap_err().contains("; connecting again in 100 ms"));
    assert!(waiting, "tap stderr:\n{}", tap_err());
    // weir is down: the tap keeps trying (each failed attempt said on stderr).
    let retried = wait_for(WAIT, || tap_err().contains("cannot reach weir's API"));
    assert!(retried, "tap stderr:\n{}", tap_err());
    assert!(matches!(child.try_wait(), Ok(None)), "the tap exited:\n{}", tap_err());

    // The same API address, a pipeline that marks its events differently: what the tap
    // prints next comes from the new weir.
    let restarted = DEMO.replace(".stage = \"parsed\"", ".stage = \"restarted\"");
    let weir = start_at(dir.path(), &restarted, "tap = true", api);
    let followed = wait_for(WAIT, || stages().contains(&"restarted".into()));
    assert!(followed, "tap stderr:\n{}\nweir stderr:\n{}", tap_err(), weir.stderr());
    assert_eq!(tap_err().matches("tapping the outputs of parse").count(), 2, "{}", tap_err());
    assert!(tap_err().contains("connected again to http://"), "{}", tap_err());
    // Failed attempts that fail alike are said once, not once per attempt.
    assert_eq!(tap_err().matches("cannot reach weir's API").count(), 1, "{}", tap_err());
    assert!(matches!(child.try_wait(), Ok(None)), "the tap exited:\n{}", tap_err());
    let _ = child.kill();
    let _ = child.wait();
    assert!(weir.stop().success());
}

/// `--duration-ms`: the tap prints for that long, then exits 0 by itself.
#[test]
fn a_tap_ends_after_its_duration() {
    let dir = tempfile::tempdir().unwrap();
    let weir = start(dir.path(), DEMO, "tap = true");
    let begun = std::time::Instant::now();
    let out = tap_output(&weir, &["parse", "--duration-ms", "5000", "--limit", "5"]);
    let took = begun.elapsed();
    let err = text(&out.stderr);
    assert!(out.status.success(), "stderr:\n{err}");
    // A lower bound only: the tap may not end before its time; how much later it ends is
    // the machine's load (the upper bound is finish's deadline). 5 s leaves a loaded machine
    // ample time to connect to a weir already serving, so the tap was attached meanwhile.
    assert!(took >= Duration::from_millis(5000), "ended after {took:?}");
    assert!(err.contains("tapping the outputs of parse"), "{err}");
    let events = json_lines(&out);
    assert!(events.iter().all(|e| e["stage"] == "parsed"), "{events:?}");
    assert!(weir.stop().success());
}

/// Taps attached now, from weir's own count.
fn http_tap_count(weir: &Weir) -> u64 {
    weir.metric("weir_tap_attached", &[]) as u64
}

/// A reader that does not read loses its own copies, counted and reported, while the
/// pipeline delivers everything as fast as it would without it.
#[test]
fn a_slow_tap_drops_its_copies_and_never_holds_the_pipeline() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input.log");
    std::fs::write(&input, "").unwrap();
    let pipeline = r#"
[sources.in]
type = "file"
include = ["{{dir}}/input.log"]

[sinks.out]
type = "file"
inputs = ["in"]
path = "{{dir}}/out.log"
encoding.codec = "text"
"#;
    let weir = start(dir.path(), pipeline, "tap = true");
    // Every event, no sampling limit to speak of: the tap offers more than any reader takes.
    let mut child = tap(&weir, &["in", "--limit", "100000", "--interval-ms", "1"])
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.path().join("tap.stderr")).unwrap())
        .spawn()
        .unwrap();
    assert!(wait_for(WAIT, || http_tap_count(&weir) == 1), "stderr:\n{}", weir.stderr());
    // Nobody reads the tap's standard output: once the pipe and the socket are full, the
    // client stops reading and weir's queue for it fills.
    let n = 200_000;
    let lines: String = (0..n).map(|i| format!("line {i} of the slow tap test\n")).collect();
    std::fs::write(&input, lines).unwrap();
    let out_log = dir.path().join("out.log");
    let delivered = wait_for(Duration::from_secs(300), || read_lines(&out_log).len() == n);
    assert!(
        delivered,
        "{} of {n} lines delivered; stderr:\n{}",
        read_lines(&out_log).len(),
        weir.stderr()
    );
    // Now read: weir reports what the tap lost.
    let stdout = child.stdout.take().unwrap();
    let drain = std::thread::spawn(move || std::io::copy(&mut { stdout }, &mut std::io::sink()));
    let tap_err = dir.path().join("tap.stderr");
    let reported = wait_for(WAIT, || {
        std::fs::read_to_string(&tap_err).unwrap_or_default().contains("events dropped so far")
    });
    assert!(reported, "tap stderr:\n{}", std::fs::read_to_string(&tap_err).unwrap_or_default());
    assert!(weir.metric("weir_tap_dropped_events_total", &[]) > 0.0);
    assert_eq!(read_lines(&out_log).len(), n, "nothing delivered twice");
    let _ = child.kill();
    let _ = child.wait();
    let _ = drain.join();
    assert!(weir.stop().success());
}

#[test]
fn tap_is_off_unless_enabled_and_says_when_weir_cannot_be_reached() {
    let dir = tempfile::tempdir().unwrap();
    let weir = start(dir.path(), DEMO, "");
    let out = tap_output(&weir, &["parse"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("tapping is off: set tap = true in [api]"), "{err}");
    let port = free_port();
    let out = Command::new(weir_bin())
        .args(["tap", "parse", "--url", &format!("http://127.0.0.1:{port}")])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("cannot reach weir's API at http://127.0.0.1:")
            && err.contains("is weir running"),
        "{err}"
    );
    assert!(weir.stop().success());
}

/// A tap follows a transform that a reload rebuilds, and ends when a reload removes it.
#[test]
fn a_tap_follows_a_reload_and_ends_when_its_component_goes() {
    let dir = tempfile::tempdir().unwrap();
    let weir = start(dir.path(), DEMO, "tap = true");
    let stdout = dir.path().join("tap.stdout");
    let stderr = dir.path().join("tap.stderr");
    let child = tap(&weir, &["parse", "--limit", "5", "--interval-ms", "50"])
        .stdout(std::fs::File::create(&stdout).unwrap())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    let stages = || stages(&stdout);
    assert!(wait_for(WAIT, || !stages().is_empty()), "stderr:\n{}", weir.stderr());
    let reload = |pipeline: &str| {
        write_config(dir.path(), &weir.config, weir.api, pipeline, "tap = true");
        signal(weir.child.id(), "HUP");
    };
    reload(&DEMO.replace(".stage = \"parsed\"", ".stage = \"reparsed\""));
    let followed = wait_for(WAIT, || stages().iter().any(|s| s == "reparsed"));
    assert!(followed, "{:?}; stderr:\n{}", stages(), weir.stderr());
    let err = std::fs::read_to_string(&stderr).unwrap();
    assert!(err.contains("parse was rebuilt by a reload; the tap follows the new one"), "{err}");
    // Without the transform, the tap has nothing left: it ends, and says why.
    reload(
        r#"
[sources.in]
type = "demo"
interval_ms = 5

[sinks.out]
type = "file"
inputs = ["in"]
path = "{{dir}}/out.log"
"#,
    );
    let out = finish(child);
    assert!(out.status.success());
    let err = std::fs::read_to_string(&stderr).unwrap();
    assert!(err.contains("parse was removed by a reload"), "{err}");
    assert!(err.contains("the tap ended: nothing this tap named runs any more"), "{err}");
    assert!(weir.stop().success());
}

/// `weir tap | head`, once `head` has exited: the tap's first event finds standard output
/// closed (the pipe's read end is closed before the tap starts), and the tap ends quietly,
/// exit 0, no panic, and no reconnecting (weir is still there).
#[test]
fn a_tap_whose_reader_is_gone_exits_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let weir = start(dir.path(), DEMO, "tap = true");
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let child = tap(&weir, &["parse"]).stdout(writer).stderr(Stdio::piped()).spawn().unwrap();
    let out = finish(child);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("tapping the outputs of parse"), "{err}");
    assert!(!err.contains("panicked") && !err.contains("connecting again"), "{err}");
    assert!(weir.stop().success());
}

/// `--format yaml`: one YAML document per event, which PyYAML reads back as the events
/// (`@timestamp` and the message strings, nested fields, `--meta`'s output name).
#[test]
fn a_tap_prints_yaml_documents() {
    let dir = tempfile::tempdir().unwrap();
    let weir = start(dir.path(), DEMO, "tap = true");
    let out = tap_output(&weir, &["parse", "-n", "3", "--format", "yaml", "--meta"]);
    assert!(out.status.success(), "stderr:\n{}", text(&out.stderr));
    let yaml = text(&out.stdout);
    assert_eq!(yaml.matches("---\n").count(), 3, "{yaml}");
    let mut python = Command::new(crate::support::test_python())
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps(list(yaml.safe_load_all(sys.stdin))))",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut python.stdin.take().unwrap(), yaml.as_bytes()).unwrap();
    let read = python.wait_with_output().unwrap();
    assert!(read.status.success(), "{}\n{yaml}", text(&read.stderr));
    let docs: Vec<serde_json::Value> = serde_json::from_slice(&read.stdout).unwrap();
    assert_eq!(docs.len(), 3, "{yaml}");
    for d in &docs {
        assert_eq!(d["output"], "parse", "{d}");
        assert_eq!(d["event"]["stage"], "parsed", "{d}");
        assert!(d["event"]["message"].is_string(), "{d}");
        assert!(d["event"]["@timestamp"].as_str().is_some_and(|t| t.contains('T')), "{d}");
    }
    assert!(weir.stop().success());
}
