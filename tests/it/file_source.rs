//! The file source on real files: restarts, rotation by rename and by copytruncate, plain
//! truncation, multi-line messages and bad bytes. Every test counts the lines that arrive,
//! by id: each must arrive exactly once.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::{Weir, read_lines, wait_for};

const TIMEOUT: Duration = Duration::from_secs(90);

/// file (include `include`) -> file sink writing bare messages to `dir/out.log`.
fn pipeline(include: &str, extra_source: &str) -> String {
    format!(
        r#"
[sources.files]
type = "file"
include = ["{include}"]
glob_interval_ms = 50
poll_interval_ms = 20
rotate_wait_ms = 1000
{extra_source}

[sinks.out]
type = "file"
inputs = ["files"]
path = "{{{{dir}}}}/out.log"
encoding.codec = "text"
"#
    )
}

fn line(id: usize) -> String {
    format!("line id={id:07} payload={}", "x".repeat(40 + id % 50))
}

fn append(path: &Path, ids: std::ops::Range<usize>) {
    let mut f = OpenOptions::new().create(true).append(true).open(path).unwrap();
    let mut buf = String::new();
    for id in ids {
        buf.push_str(&line(id));
        buf.push('\n');
    }
    f.write_all(buf.as_bytes()).unwrap();
}

/// How many times each id arrived in `out` (bare lines, or JSON lines holding them).
fn counts(out: &Path) -> BTreeMap<usize, usize> {
    let mut c = BTreeMap::new();
    for l in read_lines(out) {
        let at = l.find("line id=").map(|i| &l[i..]);
        if let Some(id) = at.and_then(|l| l.get(8..15)).and_then(|d| d.parse().ok()) {
            *c.entry(id).or_insert(0) += 1;
        }
    }
    c
}

/// Asserts every id of `0..n` arrived exactly once and nothing else did.
fn assert_exactly_once(out: &Path, n: usize) {
    let c = counts(out);
    let missing: Vec<usize> = (0..n).filter(|i| !c.contains_key(i)).take(10).collect();
    let repeated: Vec<(usize, usize)> =
        c.iter().filter(|(_, k)| **k > 1).map(|(i, k)| (*i, *k)).take(10).collect();
    assert!(missing.is_empty(), "missing ids (first 10): {missing:?}");
    assert!(repeated.is_empty(), "repeated ids (first 10, with counts): {repeated:?}");
    assert_eq!(c.len(), n, "unexpected ids arrived");
}

/// Writes lines `0..n` to `log`: the first tenth at once, the rest from a thread at a steady
/// pace (over a second at least), so that a weir stopped soon after its first line is stopped
/// in the middle of the stream, however fast it reads.
fn append_while_running(log: &Path, n: usize) -> std::thread::JoinHandle<()> {
    append(log, 0..n / 10);
    let log = log.to_path_buf();
    std::thread::spawn(move || {
        let mut from = n / 10;
        while from < n {
            let to = (from + 1000).min(n);
            append(&log, from..to);
            from = to;
            std::thread::sleep(Duration::from_millis(5));
        }
    })
}

fn wait_lines(weir: &Weir, out: &Path, n: usize) {
    let ok = wait_for(TIMEOUT, || read_lines(out).len() >= n);
    assert!(ok, "only {} of {n} lines arrived; stderr:\n{}", read_lines(out).len(), weir.stderr());
}

fn setup() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir(&input).unwrap();
    let out = dir.path().join("out.log");
    (dir, input, out)
}

#[test]
fn restart_resumes_exactly_where_it_stopped() {
    let (dir, input, out) = setup();
    let log = input.join("app.log");
    append(&log, 0..5000);
    let p = pipeline(&format!("{}/*.log", input.display()), "");

    let weir = Weir::start(dir.path(), &p);
    wait_lines(&weir, &out, 5000);
    assert!(weir.stop().success());

    append(&log, 5000..8000);
    let weir = Weir::start(dir.path(), &p);
    wait_lines(&weir, &out, 8000);
    assert!(weir.stop().success());
    assert_exactly_once(&out, 8000);
}

/// One file, two sinks. Both writing bare lines: each read goes on as one block shared by
/// both; one writing JSON: the source builds events for both. Either way each sink gets every
/// line exactly once, across a stop in the middle of the file.
#[test]
fn every_sink_of_a_fan_out_gets_each_line_once() {
    for second in ["text", "json"] {
        let (dir, input, out) = setup();
        let log = input.join("app.log");
        let n = 200_000;
        let writer = append_while_running(&log, n);
        let p = format!(
            "{}\n[sinks.copy]\ntype = \"file\"\ninputs = [\"files\"]\n\
             path = \"{{{{dir}}}}/copy.log\"\nencoding.codec = \"{second}\"\n",
            pipeline(&format!("{}/*.log", input.display()), "")
        );
        let copy = dir.path().join("copy.log");
        let weir = Weir::start(dir.path(), &p);
        wait_lines(&weir, &out, 1);
        assert!(weir.stop().success(), "graceful stop failed");
        assert!(!writer.is_finished(), "the writer finished before the stop; proves nothing");
        writer.join().unwrap();

        let weir = Weir::start(dir.path(), &p);
        wait_lines(&weir, &out, n);
        wait_lines(&weir, &copy, n);
        assert!(weir.stop().success());
        assert_exactly_once(&out, n);
        assert_exactly_once(&copy, n);
        if second == "text" {
            assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&log).unwrap());
        }
    }
}

#[test]
fn stopping_mid_stream_drains_then_resumes_without_repeats() {
    let (dir, input, out) = setup();
    let log = input.join("app.log");
    let n = 300_000;
    let writer = append_while_running(&log, n);
    let p = pipeline(&format!("{}/*.log", input.display()), "");

    let weir = Weir::start(dir.path(), &p);
    wait_lines(&weir, &out, 1);
    assert!(weir.stop().success(), "graceful stop failed");
    let after_first = read_lines(&out).len();
    assert!(!writer.is_finished(), "the writer finished before the stop; proves nothing");
    writer.join().unwrap();

    let weir = Weir::start(dir.path(), &p);
    wait_lines(&weir, &out, n);
    assert!(weir.stop().success());
    assert_exactly_once(&out, n);
    assert!(
        after_first < n,
        "the first run read everything before the signal; the test proves nothing"
    );
}

/// Writes `per_file` lines at a steady pace, then calls `rotate(round)`, `rounds` times.
fn write_with_rotation(
    log: &Path,
    rounds: usize,
    per_file: usize,
    mut rotate: impl FnMut(usize, &mut File),
) {
    let mut id = 0;
    for round in 0..rounds {
        let mut f = OpenOptions::new().create(true).append(true).open(log).unwrap();
        for chunk in 0..per_file / 100 {
            let mut buf = String::new();
            for _ in 0..100 {
                buf.push_str(&line(id));
                buf.push('\n');
                id += 1;
            }
            f.write_all(buf.as_bytes()).unwrap();
            if chunk % 4 == 3 {
                // A steady writer, not a burst: a rotated file is found by the scans.
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        rotate(round, &mut f);
    }
}

#[test]
fn rename_rotation_while_writing_loses_nothing() {
    let (dir, input, out) = setup();
    let log = input.join("app.log");
    // Only the live name is included: rotated files are read to their end through the open
    // handle, then released.
    let weir = Weir::start(dir.path(), &pipeline(&log.display().to_string(), ""));
    let (rounds, per_file) = (5, 2000);
    write_with_rotation(&log, rounds, per_file, |round, _| {
        std::fs::rename(&log, input.join(format!("app.log.{round}"))).unwrap();
    });
    wait_lines(&weir, &out, rounds * per_file);
    assert!(weir.stop().success());
    assert_exactly_once(&out, rounds * per_file);
}

#[test]
fn copytruncate_rotation_while_writing_loses_nothing() {
    let (dir, input, out) = setup();
    let log = input.join("app.log");
    // The rotated copies are included, so that weir can finish a copy after the truncation.
    let weir = Weir::start(dir.path(), &pipeline(&format!("{}*", log.display()), ""));
    let (rounds, per_file) = (5, 2000);
    write_with_rotation(&log, rounds, per_file, |round, f| {
        std::fs::copy(&log, input.join(format!("app.log.{round}"))).unwrap();
        f.set_len(0).unwrap();
    });
    wait_lines(&weir, &out, rounds * per_file);
    assert!(weir.stop().success());
    assert_exactly_once(&out, rounds * per_file);
}

#[test]
fn truncation_starts_the_file_over() {
    let (dir, input, out) = setup();
    let log = input.join("app.log");
    append(&log, 0..1000);
    let weir = Weir::start(dir.path(), &pipeline(&log.display().to_string(), ""));
    wait_lines(&weir, &out, 1000);
    OpenOptions::new().write(true).open(&log).unwrap().set_len(0).unwrap();
    append(&log, 1000..2500);
    wait_lines(&weir, &out, 2500);
    assert!(weir.stop().success());
    assert_exactly_once(&out, 2500);
}

/// Truncated and written again past weir's position while weir waits between polls: the
/// next read, at the old position, takes the new file's bytes; they must be dropped, and the
/// new file read once from its start.
#[test]
fn rewritten_between_polls_is_read_once_from_its_start() {
    let (dir, input, out) = setup();
    let log = input.join("app.log");
    append(&log, 0..1000);
    let p = pipeline(&log.display().to_string(), "")
        .replace("poll_interval_ms = 20", "poll_interval_ms = 1000");
    let weir = Weir::start(dir.path(), &p);
    wait_lines(&weir, &out, 1000);
    let mut f = OpenOptions::new().write(true).open(&log).unwrap();
    f.set_len(0).unwrap();
    let mut text = String::new();
    for id in 1000..2500 {
        text.push_str(&line(id));
        text.push('\n');
    }
    f.write_all(text.as_bytes()).unwrap();
    drop(f);
    wait_lines(&weir, &out, 2500);
    assert!(weir.stop().success());
    assert_exactly_once(&out, 2500);
}

#[test]
fn read_from_end_skips_what_was_there() {
    let (dir, input, out) = setup();
    let log = input.join("app.log");
    append(&log, 0..100);
    let weir =
        Weir::start(dir.path(), &pipeline(&log.display().to_string(), "read_from = \"end\""));
    // The source reports the file open once it has scanned; then new lines are read.
    let opened = wait_for(TIMEOUT, || weir.stderr().contains("reading file"));
    assert!(opened, "{}", weir.stderr());
    append(&log, 100..150);
    wait_lines(&weir, &out, 50);
    assert!(weir.stop().success());
    let c = counts(&out);
    assert_eq!(c.keys().copied().collect::<Vec<_>>(), (100..150).collect::<Vec<_>>());
}

#[test]
fn python_tracebacks_become_one_event() {
    let (dir, input, out) = setup();
    let log = input.join("app.log");
    let mut text = String::new();
    for i in 0..50 {
        text.push_str(&format!("2026-11-27 10:00:{:02},000 [INFO] app: request {i} ok\n", i % 60));
        if i % 10 == 9 {
            text.push_str(&format!(
                "2026-11-27 10:00:{:02},500 [ERROR] app: request {i} failed\n",
                i % 60
            ));
            text.push_str("Traceback (most recent call last):\n  File \"model.py\", line 3, in predict\n    raise ValueError(x)\nValueError: bad input\n");
        }
    }
    std::fs::write(&log, text).unwrap();
    let p = pipeline(
        &log.display().to_string(),
        "multiline.start_pattern = '^\\d{4}-'\nmultiline.condition_pattern = '^\\d{4}-'\nmultiline.mode = \"halt_before\"\nmultiline.timeout_ms = 200",
    )
    .replace("encoding.codec = \"text\"", "encoding.codec = \"json\"");
    let weir = Weir::start(dir.path(), &p);
    wait_lines(&weir, &out, 55);
    assert!(weir.stop().success());
    let events: Vec<serde_json::Value> =
        read_lines(&out).iter().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(events.len(), 55, "50 info lines and 5 errors with their tracebacks");
    let errors: Vec<&str> = events
        .iter()
        .filter_map(|e| e["message"].as_str())
        .filter(|m| m.contains("[ERROR]"))
        .collect();
    assert_eq!(errors.len(), 5);
    for e in errors {
        assert!(e.ends_with("ValueError: bad input") && e.lines().count() == 5, "{e:?}");
    }
    let path = events[0]["log"]["file"]["path"].as_str().unwrap();
    assert_eq!(path, log.display().to_string());
    assert!(events[0]["host"]["name"].is_string());
}

#[test]
fn bad_bytes_and_huge_lines_do_not_stop_weir() {
    let (dir, input, out) = setup();
    let log = input.join("app.log");
    let mut bytes = Vec::new();
    bytes.extend_from_slice(b"first line is fine\n");
    bytes.extend_from_slice(b"\xff\xfe invalid utf-8 \xc3\x28\n");
    bytes.extend_from_slice(b"nul \x00 bytes \x00\n");
    bytes.extend(std::iter::repeat_n(b'z', 300_000));
    bytes.extend_from_slice(b"\nlast line\n");
    std::fs::write(&log, &bytes).unwrap();
    let p = pipeline(&log.display().to_string(), "max_line_bytes = 1000");
    let weir = Weir::start(dir.path(), &p);
    wait_lines(&weir, &out, 5);
    let cut = weir.metric(
        "weir_component_errors_total",
        &[("component_id", "files"), ("error_type", "line_truncated")],
    );
    assert_eq!(cut, 1.0);
    assert!(weir.stop().success());
    let lines = read_lines(&out);
    assert_eq!(lines[0], "first line is fine");
    assert_eq!(lines[3].len(), 1000, "the long line is cut at max_line_bytes");
    assert_eq!(lines[4], "last line");
}

#[test]
fn a_file_deleted_while_read_is_finished_and_released() {
    let (dir, input, out) = setup();
    let log = input.join("app.log");
    append(&log, 0..100_000);
    let weir = Weir::start(dir.path(), &pipeline(&log.display().to_string(), ""));
    wait_lines(&weir, &out, 1);
    std::fs::remove_file(&log).unwrap();
    // The open handle keeps the data: every line still arrives.
    wait_lines(&weir, &out, 100_000);
    let released =
        wait_for(TIMEOUT, || weir.stderr().contains("finished reading rotated or deleted file"));
    assert!(released, "{}", weir.stderr());
    assert!(weir.stop().success());
    assert_exactly_once(&out, 100_000);
}

/// A line cut at `max_line_bytes` carries `error.message` and `log.flags = ["truncated"]`,
/// so that it can be routed apart (here by a `route` transform); the lines around it carry
/// neither, and the cut is counted. Also when the cut line is part of a multi-line message.
#[test]
fn a_cut_line_is_marked_and_can_be_routed() {
    let (dir, input, _) = setup();
    let log = input.join("app.log");
    let long = "y".repeat(5000);
    std::fs::write(&log, format!("before\n{long}\n2024 start\n  {long}\nafter\n")).unwrap();
    let pipeline = format!(
        r#"
[sources.files]
type = "file"
include = ["{}"]
glob_interval_ms = 50
max_line_bytes = 100
multiline = {{ start_pattern = '^\S', condition_pattern = '^\s', mode = "continue_through", timeout_ms = 200 }}

[transforms.r]
type = "route"
inputs = ["files"]
route.cut = '.log.flags == ["truncated"]'

[sinks.cut]
type = "file"
inputs = ["r.cut"]
path = "{{{{dir}}}}/cut.log"
encoding.codec = "json"

[sinks.whole]
type = "file"
inputs = ["r._unmatched"]
path = "{{{{dir}}}}/whole.log"
encoding.codec = "json"
"#,
        log.display()
    );
    let weir = Weir::start(dir.path(), &pipeline);
    let json = |name: &str| -> Vec<serde_json::Value> {
        read_lines(&dir.path().join(name))
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let done = wait_for(TIMEOUT, || json("cut.log").len() + json("whole.log").len() >= 4);
    assert!(done, "cut: {:?}, whole: {:?}\n{}", json("cut.log"), json("whole.log"), weir.stderr());
    let cut = json("cut.log");
    assert_eq!(cut.len(), 2, "{cut:#?}");
    assert_eq!(cut[0]["message"].as_str().unwrap().len(), 100);
    // The continuation does not fit the message's max_line_bytes either: left out, marked.
    assert_eq!(cut[1]["message"], "2024 start", "{cut:#?}");
    for e in &cut {
        assert!(e["error"]["message"].as_str().unwrap().contains("max_line_bytes (100)"), "{e}");
        assert_eq!(e["log"]["flags"], serde_json::json!(["truncated"]));
        assert_eq!(e["log"]["file"]["path"], log.display().to_string(), "shared fields kept");
    }
    let whole: Vec<String> =
        json("whole.log").iter().map(|e| e["message"].as_str().unwrap().to_string()).collect();
    assert_eq!(whole, ["before", "after"]);
    assert!(json("whole.log").iter().all(|e| e.get("error").is_none()));
    let counted = weir.metric(
        "weir_component_errors_total",
        &[("component_id", "files"), ("error_type", "line_truncated")],
    );
    assert_eq!(counted, 2.0);
}

/// Descriptors weir holds on files under `dir` (Linux `/proc`).
fn open_under(weir: &Weir, dir: &Path) -> usize {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{}/fd", weir.child.id())) else { return 0 };
    fds.flatten()
        .filter(|fd| std::fs::read_link(fd.path()).is_ok_and(|t| t.starts_with(dir)))
        .count()
}

/// A file idle for `close_inactive_secs` is closed (its descriptor released); written again,
/// it is opened again and read from where it stopped, and a restart resumes there too.
fn close_inactive_and_reopen(extra: &str) {
    let (dir, input, out) = setup();
    let log = input.join("app.log");
    append(&log, 0..1000);
    let p = pipeline(
        &format!("{}/*.log", input.display()),
        &format!("close_inactive_secs = 1\n{extra}"),
    );
    let weir = Weir::start(dir.path(), &p);
    wait_lines(&weir, &out, 1000);
    let closed = wait_for(TIMEOUT, || open_under(&weir, &input) == 0);
    assert!(closed, "the idle file is still open; stderr:\n{}", weir.stderr());
    append(&log, 1000..2000);
    wait_lines(&weir, &out, 2000);
    let closed = wait_for(TIMEOUT, || open_under(&weir, &input) == 0);
    assert!(closed, "the file is not closed again; stderr:\n{}", weir.stderr());
    assert!(weir.stop().success());
    append(&log, 2000..3000);
    let weir = Weir::start(dir.path(), &p);
    wait_lines(&weir, &out, 3000);
    assert!(weir.stop().success());
    assert_exactly_once(&out, 3000);
}

#[test]
fn an_inactive_file_is_closed_and_reopened_when_it_grows() {
    close_inactive_and_reopen("");
}

#[test]
fn an_inactive_file_is_closed_and_reopened_when_it_grows_polling() {
    close_inactive_and_reopen("inotify = false");
}

/// A file truncated while it is closed for inactivity is read again from its start.
#[test]
fn a_file_truncated_while_closed_is_read_from_its_start() {
    let (dir, input, out) = setup();
    let log = input.join("app.log");
    append(&log, 0..100);
    let p = pipeline(&format!("{}/*.log", input.display()), "close_inactive_secs = 1");
    let weir = Weir::start(dir.path(), &p);
    wait_lines(&weir, &out, 100);
    assert!(wait_for(TIMEOUT, || open_under(&weir, &input) == 0), "{}", weir.stderr());
    File::create(&log).unwrap();
    append(&log, 100..150);
    wait_lines(&weir, &out, 150);
    assert!(weir.stop().success());
    assert_exactly_once(&out, 150);
}

/// 24 files written to at once, 3 descriptors allowed: every file takes turns, none is
/// starved, every line arrives once, and no more than 3 input files are held open (4 for a
/// moment, while a new file's first line is read to identify it).
fn more_files_than_max_open_files(extra: &str) {
    const FILES: usize = 24;
    const ROUNDS: usize = 40;
    const PER_ROUND: usize = 25;
    let (dir, input, out) = setup();
    // Line ids are spread over the files: file k holds the ids equal to k modulo FILES.
    let write_round = |input: &Path, r: usize| {
        for k in 0..FILES {
            let mut buf = String::new();
            for j in 0..PER_ROUND {
                buf.push_str(&line((r * PER_ROUND + j) * FILES + k));
                buf.push('\n');
            }
            let path = input.join(format!("f{k:02}.log"));
            let mut f = OpenOptions::new().create(true).append(true).open(path).unwrap();
            f.write_all(buf.as_bytes()).unwrap();
        }
    };
    write_round(&input, 0);
    let p =
        pipeline(&format!("{}/*.log", input.display()), &format!("max_open_files = 3\n{extra}"));
    let weir = Weir::start(dir.path(), &p);
    let writer = {
        let input = input.clone();
        std::thread::spawn(move || {
            for r in 1..ROUNDS {
                write_round(&input, r);
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let n = FILES * ROUNDS * PER_ROUND;
    let mut most = 0;
    let done = wait_for(TIMEOUT, || {
        most = most.max(open_under(&weir, &input));
        read_lines(&out).len() >= n
    });
    writer.join().unwrap();
    assert!(done, "only {} of {n} lines; stderr:\n{}", read_lines(&out).len(), weir.stderr());
    assert!(most <= 4, "{most} input files open at once");
    assert!(weir.stop().success());
    assert_exactly_once(&out, n);
}

#[test]
fn more_files_than_max_open_files_are_all_read() {
    more_files_than_max_open_files("");
}

#[test]
fn more_files_than_max_open_files_are_all_read_polling() {
    more_files_than_max_open_files("inotify = false");
}

/// The checkpoint of a deleted file is kept for `forget_after_secs`, then forgotten; the
/// other files' checkpoints stay.
#[test]
fn a_deleted_file_is_forgotten_after_the_grace_period() {
    let (dir, input, out) = setup();
    let (gone, kept) = (input.join("gone.log"), input.join("kept.log"));
    append(&gone, 0..100);
    append(&kept, 100..200);
    let p = pipeline(&format!("{}/*.log", input.display()), "forget_after_secs = 2");
    let weir = Weir::start(dir.path(), &p);
    wait_lines(&weir, &out, 200);
    let checkpoints = dir.path().join("data/files/checkpoints.json");
    let saved = || std::fs::read_to_string(&checkpoints).unwrap_or_default();
    let both = wait_for(TIMEOUT, || saved().contains("gone.log") && saved().contains("kept.log"));
    assert!(both, "{}", saved());
    std::fs::remove_file(&gone).unwrap();
    let forgotten = wait_for(TIMEOUT, || !saved().contains("gone.log"));
    assert!(forgotten, "{}", saved());
    assert!(saved().contains("kept.log"), "{}", saved());
    assert!(weir.stop().success());
    assert_exactly_once(&out, 200);
}

/// The ids in `out` in the order they arrived.
fn ids_in_order(out: &Path) -> Vec<usize> {
    read_lines(out)
        .iter()
        .filter_map(|l| l.find("line id=").and_then(|i| l.get(i + 8..i + 15)))
        .filter_map(|d| d.parse().ok())
        .collect()
}

/// Cuts a half-written last line (a kill can leave one) from `out`; returns the ids in it.
fn whole_lines_after_kill(out: &Path) -> Vec<usize> {
    let text = std::fs::read_to_string(out).unwrap_or_default();
    let cut = text.rfind('\n').map_or(0, |i| i + 1);
    std::fs::write(out, &text[..cut]).unwrap();
    ids_in_order(out)
}

/// Asserts that every id of `0..n` arrived, and that the only repeats are the tail of what
/// the killed run delivered (`before`): lines delivered after its last checkpoint, read
/// again from that checkpoint. Each such line arrives twice at most.
fn assert_all_with_repeats_from_the_kill(out: &Path, n: usize, before: &[usize]) {
    let c = counts(out);
    let missing: Vec<usize> = (0..n).filter(|i| !c.contains_key(i)).take(10).collect();
    assert!(missing.is_empty(), "missing ids (first 10): {missing:?}");
    assert_eq!(c.len(), n, "unexpected ids arrived");
    let repeated: Vec<usize> = c.iter().filter(|(_, k)| **k > 1).map(|(i, _)| *i).collect();
    assert!(c.values().all(|k| *k <= 2), "an id arrived more than twice");
    if let Some(first) = repeated.first() {
        let from = before.iter().position(|i| i == first).expect("a repeat not sent before");
        assert_eq!(
            repeated,
            before[from..].to_vec(),
            "the repeats are not exactly the killed run's last lines"
        );
    }
}

/// weir is killed (-9) while reading a file; while it is down more lines are written to it,
/// it is rotated (renamed, a new file takes its name) and the new file written. The rotated
/// name is matched by `include` (as `app.log*`), so the restart finds the old file by its
/// first line and resumes at its checkpoint (the lines written after the kill included), and
/// reads the new one from its start. Lines delivered after the last checkpoint (written every
/// `checkpoint_interval_ms`) come again; nothing else does.
#[test]
fn rotated_while_killed_loses_nothing() {
    let (dir, input, out) = setup();
    let log = input.join("app.log");
    let (before_kill, old, n) = (30_000, 45_000, 60_000);
    append(&log, 0..before_kill);
    let p = pipeline(&format!("{}/app.log*", input.display()), "");
    let weir = Weir::start(dir.path(), &p);
    wait_lines(&weir, &out, 1);
    assert!(!weir.kill9().success());
    append(&log, before_kill..old);
    let before = whole_lines_after_kill(&out);
    std::fs::rename(&log, input.join("app.log.1")).unwrap();
    append(&log, old..n);

    let weir = Weir::start(dir.path(), &p);
    let ok = wait_for(TIMEOUT, || counts(&out).len() >= n);
    assert!(ok, "{} of {n} ids arrived; stderr:\n{}", counts(&out).len(), weir.stderr());
    assert!(weir.stop().success());
    assert_all_with_repeats_from_the_kill(&out, n, &before);
}
