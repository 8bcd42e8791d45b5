//! Delivery guarantees under faults, end to end through the real binary: `kill -9` loops, a
//! sink that refuses for longer than any memory buffer lasts, two sinks of which one is dead,
//! corrupted disk buffers, permanent rejections and their dead letters, a full file system
//! under a disk buffer. Every test counts event ids at the far end: none may be missing, and
//! duplicates must be explained by the unacknowledged window.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::es_server::{EsServer, EsState, Fault};
use crate::support::{Weir, read_lines, test_data, wait_for, weir_bin};

const LONG: Duration = Duration::from_secs(180);

/// Writes `n` JSON lines with ids `d000000`.. (real Apache log lines as messages) to `path`;
/// returns the ids and the byte offset where each line ends.
fn write_input(path: &Path, n: usize, poison_every: Option<usize>) -> (Vec<String>, Vec<u64>) {
    let apache = std::fs::read_to_string(test_data().join("loghub/Apache/Apache_2k.log"))
        .expect("shared loghub data");
    let lines: Vec<&str> = apache.lines().collect();
    let mut out = String::with_capacity(n * 200);
    let mut ids = Vec::with_capacity(n);
    let mut ends = Vec::with_capacity(n);
    for i in 0..n {
        let id = format!("d{i:06}");
        let mut doc = serde_json::json!({
            "id": id,
            "message": lines[i % lines.len()],
            "service": {"name": "apache"},
        });
        if poison_every.is_some_and(|p| i % p == 0) {
            doc["poison"] = serde_json::json!("not a number");
        }
        out.push_str(&doc.to_string());
        out.push('\n');
        ends.push(out.len() as u64);
        ids.push(id);
    }
    std::fs::write(path, out).unwrap();
    (ids, ends)
}

/// A file source reading `dir/input.log`, parsed as JSON.
const SOURCE: &str = r#"
[sources.in]
type = "file"
include = ["{{dir}}/input.log"]

[transforms.parsed]
type = "parse_json"
inputs = ["in"]
"#;

/// An elasticsearch sink `id` reading `parsed`, quick to retry.
fn es_sink(id: &str, url: &str, extra: &str) -> String {
    format!(
        r#"
[sinks.{id}]
type = "elasticsearch"
inputs = ["parsed"]
endpoints = ["{url}"]
index = "weir"
batch.max_events = 500
batch.timeout_secs = 0.2
request.retry_initial_backoff_secs = 0.05
request.retry_max_duration_secs = 0.5
request.timeout_secs = 2
healthcheck = false
{extra}
"#
    )
}

/// Stops weir with SIGTERM and expects a clean exit.
fn stop_cleanly(weir: Weir) {
    let stderr = weir.dir.join("stderr");
    let status = weir.stop();
    assert!(
        status.success(),
        "weir exited with {status}; stderr:\n{}",
        std::fs::read_to_string(stderr).unwrap_or_default()
    );
}

fn tracking() -> EsState {
    EsState { keep_docs: false, track_field: Some("id".into()), ..EsState::default() }
}

fn missing(es: &EsServer, ids: &[String]) -> Vec<String> {
    let st = es.state();
    ids.iter().filter(|id| !st.tracked.contains_key(*id)).cloned().collect()
}

fn duplicates(es: &EsServer) -> usize {
    es.state().tracked.values().map(|(c, _)| c - 1).sum()
}

/// The file source's persisted position in `input.log`, in lines.
fn checkpointed_lines(dir: &Path, ends: &[u64]) -> usize {
    let path = dir.join("data/in/checkpoints.json");
    let Ok(text) = std::fs::read_to_string(&path) else { return 0 };
    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    let offset = v["checkpoints"]
        .as_array()
        .and_then(|a| a.iter().find_map(|c| c["offset"].as_u64()))
        .unwrap_or(0);
    ends.partition_point(|e| *e <= offset)
}

/// `weir buffer check DATA_DIR`: (exit code, output).
fn buffer_check(data_dir: &Path) -> (i32, String) {
    let out = Command::new(weir_bin())
        .args(["buffer", "check"])
        .arg(data_dir)
        .output()
        .expect("run weir buffer check");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The events waiting in the disk buffers, as `weir buffer check` counts them.
fn events_waiting(report: &str) -> usize {
    report
        .lines()
        .filter_map(|l| l.trim().strip_prefix("total: "))
        .filter_map(|l| l.split(" records and ").nth(1))
        .filter_map(|l| l.split(' ').next())
        .filter_map(|n| n.parse::<usize>().ok())
        .sum()
}

/// Ships `n` events from a file to the stand-in while weir is killed with SIGKILL at random
/// points; then checks that nothing is missing, and that the duplicates do not exceed the
/// unacknowledged window measured after each kill from what weir had persisted (the events
/// the far end already had beyond the source's checkpoint, plus the events waiting in the
/// disk buffer) plus the documents of requests weir sent again within one run. Those are
/// at-least-once too: on a loaded machine the stand-in can be slower than
/// `request.timeout_secs`, and a request that timed out is sent again after it was indexed.
fn kill_loop(buffer: &str, n: usize, kills: usize) {
    let dir = tempfile::tempdir().unwrap();
    let es = EsServer::start_with(tracking());
    let (ids, ends) = write_input(&dir.path().join("input.log"), n, None);
    let pipeline = format!("{SOURCE}{}", es_sink("es", &es.url(), buffer));
    let seed: u64 = rand::random();
    eprintln!("kill loop ({buffer:?}): seed {seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let mut targets: Vec<usize> =
        (0..kills).map(|_| rng.random_range(n / 20..n * 9 / 10)).collect();
    targets.sort_unstable();
    let mut window = 0;
    for target in targets {
        es.state().new_sender();
        let weir = Weir::start(dir.path(), &pipeline);
        let reached = wait_for(LONG, || es.state().tracked.len() >= target);
        assert!(reached, "stuck below {target} events; stderr:\n{}", weir.stderr());
        weir.kill9();
        // A request that had reached the stand-in is still indexed after the kill, even one
        // not yet read from its socket: let every one finish before counting.
        assert!(es.settle(Duration::from_secs(10)));
        let line = checkpointed_lines(dir.path(), &ends);
        let beyond = es
            .state()
            .tracked
            .keys()
            .filter(|id| id[1..].parse::<usize>().is_ok_and(|i| i >= line))
            .count();
        let (_, report) = buffer_check(&dir.path().join("data"));
        let waiting = events_waiting(&report);
        eprintln!(
            "killed at {} events delivered: source checkpoint at line {line}, {beyond} \
             delivered beyond it, {waiting} waiting in the disk buffer",
            es.state().tracked.len()
        );
        window += beyond + waiting;
    }
    es.state().new_sender();
    let weir = Weir::start(dir.path(), &pipeline);
    let all = wait_for(LONG, || es.state().tracked.len() >= n);
    assert!(all, "{} ids missing; stderr:\n{}", missing(&es, &ids).len(), weir.stderr());
    stop_cleanly(weir);
    let lost = missing(&es, &ids);
    assert!(lost.is_empty(), "{} ids lost, first {:?}", lost.len(), lost.first());
    let dup = duplicates(&es);
    let (resent_requests, resent) = {
        let st = es.state();
        (st.resent_requests, st.resent_indexed)
    };
    eprintln!(
        "{kills} kills: {dup} duplicates, unacknowledged window {window} events, \
         {resent} documents in {resent_requests} requests sent again"
    );
    assert!(
        dup <= window + resent,
        "{dup} duplicates exceed the unacknowledged window of {window} and the {resent} \
         documents sent again"
    );
}

#[test]
fn kill_9_at_random_points_loses_nothing_memory_buffer() {
    kill_loop("", 200_000, 5);
}

#[test]
fn kill_9_at_random_points_loses_nothing_disk_buffer() {
    kill_loop("buffer.type = \"disk\"\nbuffer.max_bytes = 268435456", 200_000, 5);
}

#[test]
fn a_sink_refusing_longer_than_memory_lasts_loses_nothing_with_a_disk_buffer() {
    let dir = tempfile::tempdir().unwrap();
    let state = EsState { always: Some(Fault::Status(503)), ..tracking() };
    let es = EsServer::start_with(state);
    // About 20 MB of JSON: some 400 MB as events in memory, far beyond a memory buffer.
    let n = 100_000;
    let (ids, _) = write_input(&dir.path().join("input.log"), n, None);
    let total = std::fs::metadata(dir.path().join("input.log")).unwrap().len() as f64;
    let pipeline = format!(
        "{SOURCE}{}",
        es_sink(
            "es",
            &es.url(),
            "id_key = \"id\"\nbuffer.type = \"disk\"\nbuffer.max_bytes = 268435456"
        )
    );
    let weir = Weir::start(dir.path(), &pipeline);
    // The source is not held back: the disk buffer takes everything while the sink refuses.
    let read =
        |w: &Weir| w.metric("weir_component_received_bytes_total", &[("component_id", "in")]);
    let buffered = |w: &Weir| w.metric("weir_buffer_events", &[("component_id", "es")]);
    let all_in = wait_for(LONG, || read(&weir) >= total && buffered(&weir) >= n as f64);
    assert!(
        all_in,
        "read {} of {total} bytes, {} events buffered; stderr:\n{}",
        read(&weir),
        buffered(&weir),
        weir.stderr()
    );
    let rss = weir.rss_bytes();
    eprintln!("sink down, everything buffered on disk: resident memory {rss} bytes");
    assert!(rss < 200 * 1024 * 1024, "resident memory {rss} bytes");
    assert_eq!(es.state().tracked.len(), 0);
    // Every kind of refusal, then recovery.
    {
        let mut st = es.state();
        st.faults.extend([
            Fault::Items { every: 3, status: 429 },
            Fault::Items { every: 2, status: 503 },
            Fault::Reset,
            Fault::ResetAfterIndexing,
            Fault::Delay(Duration::from_secs(5)),
            Fault::Status(429),
            Fault::Reset,
        ]);
        st.always = None;
    }
    let all = wait_for(LONG, || es.state().tracked.len() >= n);
    assert!(all, "{} ids missing; stderr:\n{}", missing(&es, &ids).len(), weir.stderr());
    assert!(missing(&es, &ids).is_empty());
    // Ids make the retries idempotent: nothing arrived twice.
    assert_eq!(duplicates(&es), 0);
    assert!(wait_for(Duration::from_secs(30), || buffered(&weir) == 0.0));
    let rss_after = weir.rss_bytes();
    assert!(rss_after < 200 * 1024 * 1024, "resident memory {rss_after} bytes");
    stop_cleanly(weir);
}

/// Two sinks on one source: `alive` (a file) and `dead` (a stand-in refusing everything)
/// behind a 4 MiB disk buffer.
fn two_sinks(when_full: &str) -> (tempfile::TempDir, EsServer, Weir, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let es = EsServer::start_with(EsState { always: Some(Fault::Status(503)), ..tracking() });
    // About 15 MB of records on disk if all were kept.
    let (ids, _) = write_input(&dir.path().join("input.log"), 60_000, None);
    let pipeline = format!(
        r#"{SOURCE}
[sinks.alive]
type = "file"
inputs = ["parsed"]
path = "{{{{dir}}}}/alive.jsonl"
{}"#,
        es_sink(
            "dead",
            &es.url(),
            &format!(
                "id_key = \"id\"\nbuffer.type = \"disk\"\nbuffer.max_bytes = 4194304\n\
                 buffer.when_full = \"{when_full}\""
            )
        )
    );
    let weir = Weir::start(dir.path(), &pipeline);
    (dir, es, weir, ids)
}

fn alive_ids(dir: &Path) -> HashSet<String> {
    read_lines(&dir.join("alive.jsonl"))
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["id"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn two_sinks_one_dead_the_other_receives_until_the_dead_ones_disk_buffer_is_full() {
    let (dir, es, weir, ids) = two_sinks("block");
    let alive = |_: &Weir| alive_ids(dir.path()).len();
    let on_disk = |w: &Weir| w.metric("weir_buffer_size_bytes", &[("component_id", "dead")]);
    // The alive sink keeps receiving until the dead one's buffer is full; then the source is
    // held back (block) and both stop.
    let mut last = 0;
    let settled = wait_for(LONG, || {
        let now = alive(&weir);
        let same = now == last && now > 0;
        last = now;
        if !same {
            std::thread::sleep(Duration::from_millis(500));
        }
        same
    });
    assert!(settled, "the alive sink never settled; stderr:\n{}", weir.stderr());
    let full = on_disk(&weir);
    let held = weir.metric("weir_buffer_events", &[("component_id", "dead")]);
    eprintln!("dead sink's buffer: {full} bytes, {held} events; alive sink got {last} events");
    assert!(last < ids.len(), "the dead sink's full buffer did not hold the source back");
    assert!(full <= 4_194_304.0, "{full} bytes on disk");
    assert!(full >= 4_194_304.0 * 0.75, "stalled with the buffer at {full} bytes of 4 MiB");
    assert!(last as f64 >= held, "alive got {last}, fewer than the {held} the dead one holds");
    // Revived, the dead sink drains its buffer and everything reaches both.
    es.state().always = None;
    assert!(
        wait_for(LONG, || es.state().tracked.len() >= ids.len() && alive(&weir) >= ids.len()),
        "dead got {}, alive {}; stderr:\n{}",
        es.state().tracked.len(),
        alive(&weir),
        weir.stderr()
    );
    assert!(missing(&es, &ids).is_empty());
    stop_cleanly(weir);
}

#[test]
fn two_sinks_one_dead_drop_newest_keeps_the_other_going() {
    let (dir, es, weir, ids) = two_sinks("drop_newest");
    // The alive sink gets everything while the other is dead.
    assert!(
        wait_for(LONG, || alive_ids(dir.path()).len() >= ids.len()),
        "alive got {}; stderr:\n{}",
        alive_ids(dir.path()).len(),
        weir.stderr()
    );
    let discarded = weir.metric(
        "weir_component_discarded_events_total",
        &[("component_id", "dead"), ("reason", "buffer_full")],
    ) as usize;
    assert!(discarded > 0, "nothing discarded by a full buffer");
    es.state().always = None;
    // Everything not discarded (and counted) arrives.
    assert!(
        wait_for(LONG, || es.state().tracked.len() + discarded >= ids.len()),
        "dead got {} with {discarded} discarded; stderr:\n{}",
        es.state().tracked.len(),
        weir.stderr()
    );
    assert_eq!(es.state().tracked.len() + discarded, ids.len());
    stop_cleanly(weir);
}

/// Walks the records of a segment: (offset, record length with header, events).
fn records(path: &Path) -> Vec<(usize, usize, usize)> {
    let bytes = std::fs::read(path).unwrap();
    let mut out = Vec::new();
    let mut at = 0;
    while at + 8 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        // Payload: format version, then the event count (u32, little endian).
        let events = u32::from_le_bytes(bytes[at + 9..at + 13].try_into().unwrap()) as usize;
        out.push((at, 8 + len, events));
        at += 8 + len;
    }
    out
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .filter(|p| std::fs::metadata(p).map(|m| m.len() > 0).unwrap_or(false))
        .collect();
    v.sort();
    v
}

#[test]
fn a_corrupted_disk_buffer_is_repaired_at_start_and_reports_exactly_what_it_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let es = EsServer::start_with(EsState { always: Some(Fault::Status(503)), ..tracking() });
    let n = 30_000;
    let (ids, ends) = write_input(&dir.path().join("input.log"), n, None);
    // 16 MiB: 2 MiB segments, so the events (about 9 MB) spread over several.
    let pipeline = format!(
        "shutdown_timeout_secs = 2\n{SOURCE}{}",
        es_sink(
            "es",
            &es.url(),
            "id_key = \"id\"\nbuffer.type = \"disk\"\nbuffer.max_bytes = 16777216"
        )
    );
    let weir = Weir::start(dir.path(), &pipeline);
    let buffered = |w: &Weir| w.metric("weir_buffer_events", &[("component_id", "es")]);
    assert!(
        wait_for(LONG, || buffered(&weir) >= n as f64),
        "buffered {}; stderr:\n{}",
        buffered(&weir),
        weir.stderr()
    );
    // Once the source's checkpoint has passed every line, the buffer alone holds them.
    assert!(wait_for(LONG, || checkpointed_lines(dir.path(), &ends) == n));
    weir.kill9();
    let buf = dir.path().join("data/buffers/es");
    let (code, report) = buffer_check(&dir.path().join("data"));
    assert_eq!(code, 0, "{report}");
    assert_eq!(events_waiting(&report), n, "{report}");
    let segs = segments(&buf);
    assert!(segs.len() >= 3, "{report}");

    // 1. Flip a byte inside a record in the middle of the first segment.
    let first = records(&segs[0]);
    let (at, len, flipped_events) = first[first.len() / 2];
    let mut bytes = std::fs::read(&segs[0]).unwrap();
    bytes[at + 8 + 40] ^= 0x5a;
    std::fs::write(&segs[0], &bytes).unwrap();
    // 2. Cut the last record of the last segment in half.
    let last_seg = segs.last().unwrap();
    let last = records(last_seg);
    let (cut_at, cut_len, cut_events) = *last.last().unwrap();
    let kept = cut_at + cut_len / 2;
    std::fs::OpenOptions::new().write(true).open(last_seg).unwrap().set_len(kept as u64).unwrap();
    // 3. A zero-length segment file.
    std::fs::write(buf.join("00000000000000000099.seg"), b"").unwrap();

    let (code, report) = buffer_check(&dir.path().join("data"));
    assert_eq!(code, 1, "{report}");
    let name = |p: &Path| p.file_name().unwrap().to_string_lossy().into_owned();
    for expected in [
        format!(
            "CORRUPT {}: {len} bytes at offset {at}: 1 record whose checksum does not match",
            name(&segs[0])
        ),
        format!(
            "CORRUPT {}: {} bytes at offset {cut_at}: 1 record cut short",
            name(last_seg),
            kept - cut_at
        ),
        "00000000000000000099.seg  empty (removed at start)".to_string(),
    ] {
        assert!(report.contains(&expected), "missing `{expected}` in:\n{report}");
    }

    // weir starts, says what it dropped, and delivers the rest.
    es.state().always = None;
    let weir = Weir::start(dir.path(), &pipeline);
    let lost = flipped_events + cut_events;
    // The file source's checkpoint passed every event (the buffer had synced them), so the
    // dropped ones do not come back.
    assert!(
        wait_for(LONG, || es.state().tracked.len() >= n - lost),
        "{} of {} arrived; stderr:\n{}",
        es.state().tracked.len(),
        n - lost,
        weir.stderr()
    );
    let log = weir.stderr();
    for expected in [
        format!("{len} bytes at offset {at}: 1 record whose checksum does not match"),
        format!("{} bytes at offset {cut_at}: 1 record cut short", kept - cut_at),
    ] {
        assert!(log.contains(&expected), "missing `{expected}` in:\n{log}");
    }
    assert_eq!(weir.metric("weir_buffer_corrupted_records_total", &[("component_id", "es")]), 2.0);
    assert_eq!(
        weir.metric("weir_buffer_corrupted_bytes_total", &[("component_id", "es")]),
        (len + kept - cut_at) as f64
    );
    assert!(wait_for(Duration::from_secs(30), || {
        weir.metric("weir_buffer_events", &[("component_id", "es")]) == 0.0
    }));
    assert_eq!(missing(&es, &ids).len(), lost);
    assert_eq!(duplicates(&es), 0);
    assert!(!buf.join("00000000000000000099.seg").exists());
    stop_cleanly(weir);
    let (code, report) = buffer_check(&dir.path().join("data"));
    assert_eq!(code, 0, "{report}");
}

fn dead_letters(dir: &Path) -> Vec<serde_json::Value> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut out = Vec::new();
    for e in entries.filter_map(Result::ok) {
        for l in read_lines(&e.path()) {
            out.push(serde_json::from_str(&l).expect("dead letters are JSON lines"));
        }
    }
    out
}

#[test]
fn permanent_rejections_land_in_the_dead_letter_file_with_their_reasons() {
    let dir = tempfile::tempdir().unwrap();
    let es = EsServer::start_with(EsState { poison_field: Some("poison".into()), ..tracking() });
    let (ids, _) = write_input(&dir.path().join("input.log"), 1000, Some(10));
    let pipeline = format!("{SOURCE}{}", es_sink("es", &es.url(), "id_key = \"id\""));
    let weir = Weir::start(dir.path(), &pipeline);
    let dl_dir = dir.path().join("data/dead_letter");
    assert!(
        wait_for(LONG, || es.state().tracked.len() >= 900 && dead_letters(&dl_dir).len() >= 100),
        "{} delivered, {} dead letters; stderr:\n{}",
        es.state().tracked.len(),
        dead_letters(&dl_dir).len(),
        weir.stderr()
    );
    let letters = dead_letters(&dl_dir);
    assert_eq!(letters.len(), 100);
    let mut rejected = HashSet::new();
    for l in &letters {
        assert_eq!(l["error"]["type"], "document_parsing_exception", "{l}");
        assert!(
            l["error"]["message"].as_str().unwrap().contains("failed to parse field [poison]"),
            "{l}"
        );
        assert_eq!(l["weir"]["dead_letter"]["sink"], "es");
        assert_eq!(l["weir"]["dead_letter"]["sink_type"], "elasticsearch");
        assert_eq!(l["weir"]["dead_letter"]["destination"], "weir");
        assert!(l["@timestamp"].as_str().is_some_and(|t| t.ends_with('Z')), "{l}");
        let original: serde_json::Value =
            serde_json::from_str(l["event"]["original"].as_str().unwrap()).unwrap();
        assert_eq!(original["poison"], "not a number");
        rejected.insert(original["id"].as_str().unwrap().to_string());
    }
    let poisoned: HashSet<String> = ids.iter().step_by(10).cloned().collect();
    assert_eq!(rejected, poisoned);
    assert_eq!(
        weir.metric(
            "weir_dead_letter_events_total",
            &[("component_id", "es"), ("reason", "document_parsing_exception")]
        ),
        100.0
    );
    stop_cleanly(weir);
    // The source moved past them: a restart sends nothing again.
    let weir = Weir::start(dir.path(), &pipeline);
    stop_cleanly(weir);
    assert_eq!(dead_letters(&dl_dir).len(), 100);
    assert_eq!(duplicates(&es), 0);
}

#[test]
fn the_source_waits_for_the_dead_letter_sink() {
    let dir = tempfile::tempdir().unwrap();
    let es = EsServer::start_with(EsState { poison_field: Some("poison".into()), ..tracking() });
    // The dead-letter destination is a second stand-in, down at first.
    let dlq =
        EsServer::start_with(EsState { always: Some(Fault::Status(503)), ..EsState::default() });
    let (ids, _) = write_input(&dir.path().join("input.log"), 1000, Some(10));
    let pipeline = format!(
        "shutdown_timeout_secs = 3\n[dead_letter]\nsink = \"rejects\"\n{SOURCE}{}{}",
        es_sink("es", &es.url(), "id_key = \"id\""),
        es_sink("rejects", &dlq.url(), "").replace("inputs = [\"parsed\"]", "inputs = []")
    );
    let weir = Weir::start(dir.path(), &pipeline);
    assert!(wait_for(LONG, || es.state().tracked.len() >= 900), "stderr:\n{}", weir.stderr());
    assert!(wait_for(LONG, || dlq.state().bulk_requests > 0));
    // The dead letters cannot be delivered: the stop times out and the checkpoint stays
    // before them.
    weir.stop();
    assert_eq!(dlq.state().doc_count(), 0);
    dlq.state().always = None;
    let weir = Weir::start(dir.path(), &pipeline);
    assert!(
        wait_for(LONG, || dlq.state().doc_count() >= 100),
        "{} dead letters; stderr:\n{}",
        dlq.state().doc_count(),
        weir.stderr()
    );
    let st = dlq.state();
    let rejected: HashSet<String> = st
        .all_docs()
        .iter()
        .map(|d| {
            let o: serde_json::Value =
                serde_json::from_str(d["event"]["original"].as_str().unwrap()).unwrap();
            o["id"].as_str().unwrap().to_string()
        })
        .collect();
    drop(st);
    let poisoned: HashSet<String> = ids.iter().step_by(10).cloned().collect();
    assert_eq!(rejected, poisoned);
    stop_cleanly(weir);
    // The good events sent again were answered 409 (they carry ids): not duplicated.
    assert_eq!(duplicates(&es), 0);
    assert!(missing(&es, &ids).iter().all(|id| poisoned.contains(id)));
}

/// A small tmpfs mounted by the test, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Option<Self> {
        std::fs::create_dir_all(at).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Self(at.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// A disk buffer on a 1 MiB tmpfs whose sink is down: the file system fills long before
/// `max_bytes` (64 MiB).
fn disk_full(when_full: &str) -> Option<(tempfile::TempDir, Tmpfs, EsServer, Weir, Vec<String>)> {
    if !is_root() {
        eprintln!("skipped: mounting a tmpfs needs root");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    // Root in a container without CAP_SYS_ADMIN cannot mount either: say so and skip.
    let Some(mount) = Tmpfs::mount(&dir.path().join("data/buffers/es"), "1m") else {
        eprintln!("skipped: `mount -t tmpfs` was refused on this machine");
        return None;
    };
    let es = EsServer::start_with(EsState { always: Some(Fault::Status(503)), ..tracking() });
    // More than the queues in front of the buffer hold (a raw line is estimated at what it
    // holds, ~300 bytes: the source's 2 MiB queue alone takes ~7,000 of them).
    let (ids, _) = write_input(&dir.path().join("input.log"), 60_000, None);
    let pipeline = format!(
        "shutdown_timeout_secs = 3\n{SOURCE}{}",
        es_sink(
            "es",
            &es.url(),
            &format!(
                "id_key = \"id\"\nbuffer.type = \"disk\"\nbuffer.max_bytes = 67108864\n\
                 buffer.when_full = \"{when_full}\""
            )
        )
    );
    let weir = Weir::start(dir.path(), &pipeline);
    Some((dir, mount, es, weir, ids))
}

#[test]
fn a_full_file_system_under_a_disk_buffer_blocks_and_recovers() {
    let Some((_dir, _mount, es, weir, ids)) = disk_full("block") else { return };
    assert!(
        wait_for(LONG, || weir.stderr().contains("the file system is full")),
        "stderr:\n{}",
        weir.stderr()
    );
    assert!(
        weir.stderr().contains("holding its input (when_full = block)"),
        "stderr:\n{}",
        weir.stderr()
    );
    let errors = |w: &Weir| {
        w.metric(
            "weir_component_errors_total",
            &[("component_id", "es"), ("error_type", "buffer_write_failed")],
        )
    };
    assert!(errors(&weir) >= 1.0);
    // Still running (alive; not ready, its requests fail), nothing panicked, and the source
    // is held back.
    assert!(crate::support::http_get(weir.api, "/health/live").is_ok_and(|(s, _)| s == 200));
    let total = std::fs::metadata(_dir.path().join("input.log")).unwrap().len() as f64;
    assert!(weir.metric("weir_component_received_bytes_total", &[("component_id", "in")]) < total);
    es.state().always = None;
    assert!(
        wait_for(LONG, || es.state().tracked.len() >= ids.len()),
        "{} of {}; stderr:\n{}",
        es.state().tracked.len(),
        ids.len(),
        weir.stderr()
    );
    assert!(missing(&es, &ids).is_empty());
    assert_eq!(duplicates(&es), 0);
    assert!(!weir.stderr().contains("panicked"));
    stop_cleanly(weir);
    nothing_left_to_replay(&_dir.path().join("data"));
}

#[test]
fn a_full_file_system_under_a_disk_buffer_drops_newest_when_asked() {
    let Some((dir, _mount, es, weir, ids)) = disk_full("drop_newest") else { return };
    let total = std::fs::metadata(dir.path().join("input.log")).unwrap().len() as f64;
    // The source is not held back: what does not fit is discarded and counted.
    assert!(
        wait_for(LONG, || {
            weir.metric("weir_component_received_bytes_total", &[("component_id", "in")]) >= total
        }),
        "stderr:\n{}",
        weir.stderr()
    );
    let discarded = |w: &Weir| {
        w.metric(
            "weir_component_discarded_events_total",
            &[("component_id", "es"), ("reason", "disk_full")],
        ) as usize
    };
    let buffered = |w: &Weir| w.metric("weir_buffer_events", &[("component_id", "es")]) as usize;
    assert!(
        wait_for(LONG, || discarded(&weir) + buffered(&weir) >= ids.len()),
        "discarded {}, buffered {}; stderr:\n{}",
        discarded(&weir),
        buffered(&weir),
        weir.stderr()
    );
    let dropped = discarded(&weir);
    assert!(dropped > 0);
    assert!(weir.stderr().contains("the file system is full"), "stderr:\n{}", weir.stderr());
    es.state().always = None;
    assert!(
        wait_for(LONG, || es.state().tracked.len() + dropped >= ids.len()),
        "{} delivered, {dropped} dropped; stderr:\n{}",
        es.state().tracked.len(),
        weir.stderr()
    );
    assert_eq!(es.state().tracked.len() + dropped, ids.len());
    assert!(!weir.stderr().contains("panicked"));
    stop_cleanly(weir);
    nothing_left_to_replay(&dir.path().join("data"));
}

/// After a clean stop on a file system that was full, the buffer is sound and its
/// acknowledged position covers everything: a restart would deliver nothing again.
fn nothing_left_to_replay(data_dir: &Path) {
    let (code, report) = buffer_check(data_dir);
    assert_eq!(code, 0, "{report}");
    assert_eq!(events_waiting(&report), 0, "{report}");
    assert!(report.contains("acknowledged position: segment"), "{report}");
}

#[test]
fn buffer_and_dead_letter_config_errors_are_located() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pipeline.toml");
    std::fs::write(
        &path,
        r#"[dead_letter]
sink = "reject"
[sources.in]
type = "stdin"
[sinks.out]
type = "console"
inputs = ["in"]
buffer.type = "disk"
buffer.max_bytes = 1000
[sinks.rejects]
type = "console"
inputs = []
"#,
    )
    .unwrap();
    let (code, out) = crate::support::validate(&[&path]);
    assert_eq!(code, 1, "{out}");
    for expected in [
        "pipeline.toml:2:1: dead_letter: dead_letter.sink \"reject\" names no sink (did you mean \"rejects\"?)",
        "pipeline.toml:9:8: sinks.out: buffer.max_bytes of a disk buffer must be at least 1048576",
        "pipeline.toml:12:1: sinks.rejects: `inputs` is empty",
    ] {
        assert!(out.contains(expected), "missing `{expected}` in:\n{out}");
    }
    std::fs::write(
        &path,
        "[dead_letter]\nsink = \"rejects\"\n[sources.in]\ntype = \"stdin\"\n[sinks.out]\n\
         type = \"console\"\ninputs = [\"in\"]\nbuffer.type = \"disk\"\n[sinks.rejects]\n\
         type = \"console\"\ninputs = []\n",
    )
    .unwrap();
    let (code, out) = crate::support::validate(&[&path]);
    assert_eq!(code, 0, "{out}");
}
