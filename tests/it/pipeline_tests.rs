//! `weir test`: the `[[tests]]` of every shipped pipeline pass; a failing expectation is
//! reported with what came out; malformed tests are errors with their position for
//! `validate` and `test`, and never stop `run`.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use crate::support::weir_bin;

fn weir_test(args: &[&Path]) -> Output {
    Command::new(weir_bin()).arg("test").args(args).output().expect("run weir test")
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The "N tests: P passed, F failed" line: (N, F).
fn summary(stdout: &str) -> (usize, usize) {
    let line = stdout.lines().last().unwrap_or_default();
    let words: Vec<&str> = line.split_whitespace().collect();
    match words.as_slice() {
        [n, _, _, _, f, "failed"] => (n.parse().unwrap(), f.parse().unwrap()),
        _ => panic!("no summary line in:\n{stdout}"),
    }
}

#[test]
fn every_shipped_pipeline_passes_its_tests() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(files.len() >= 7, "{files:?}");
    for file in &files {
        let out = weir_test(&[file]);
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(0), "{}:\n{stdout}{stderr}", file.display());
        let (tests, failed) = summary(&stdout);
        assert!(tests >= 2, "{} carries {tests} tests", file.display());
        assert_eq!(failed, 0);
    }
    // No file: the embedded default pipeline, as `weir run` takes it.
    let out = weir_test(&[]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(summary(&stdout).0 >= 4, "{stdout}");
}

#[test]
fn a_changed_expectation_fails_a_shipped_test() {
    // The shipped tests check what they claim: the same pipeline with one expected value
    // changed fails that test alone.
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines/model-server-to-elk.toml");
    let text_in = std::fs::read_to_string(&path).unwrap();
    let changed = text_in
        .replace("assert_eq!(.event.duration, 2000000)", "assert_eq!(.event.duration, 2000)");
    assert_ne!(changed, text_in);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("elk.toml");
    std::fs::write(&file, changed).unwrap();
    let out = weir_test(&[&file]);
    let (stdout, _) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert_eq!(summary(&stdout), (3, 1), "{stdout}");
    assert!(stdout.contains("assertion failed: 2000000 == 2000"), "{stdout}");
}

const PIPELINE: &str = r#"
[sources.in]
type = "stdin"

[transforms.parsed]
type = "parse_json"
inputs = ["in"]

[transforms.errors]
type = "filter"
inputs = ["parsed"]
condition = '.level == "ERROR"'

[sinks.out]
type = "console"
inputs = ["errors"]
"#;

#[test]
fn a_failing_expectation_shows_what_came_out() {
    let tests = r#"
[[tests]]
name = "errors pass"
[[tests.inputs]]
insert_at = "parsed"
type = "raw"
value = '{"level":"ERROR","msg":"boom"}'
[[tests.outputs]]
extract_from = "errors"
[[tests.outputs.conditions]]
type = "vrl"
source = '.msg == "boom"'

[[tests]]
name = "wrong message"
[[tests.inputs]]
insert_at = "parsed"
value = '{"level":"ERROR","msg":"boom"}'
[[tests.outputs]]
extract_from = "errors"
[[tests.outputs.conditions]]
source = 'assert_eq!(.msg, "bang")'

[[tests]]
name = "filtered out"
[[tests.inputs]]
insert_at = "parsed"
type = "log"
log_fields = { message = '{"level":"INFO"}', "host.name" = "gpu-1" }
[[tests.outputs]]
extract_from = "errors"
"#;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("p.toml");
    std::fs::write(&file, format!("{PIPELINE}{tests}")).unwrap();
    let out = weir_test(&[&file]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stdout.contains("test errors pass ... passed\n"), "{stdout}");
    assert!(stdout.contains("test wrong message ... failed\n"), "{stdout}");
    let f = file.display();
    for needle in [
        format!("--- wrong message ({f}:30:1) ---"),
        format!("extract_from \"errors\" ({f}:36:16): condition 1 of 1 failed ({f}:38:10):"),
        "    assert_eq!(.msg, \"bang\")".to_string(),
        "assertion failed: \"boom\" == \"bang\"".to_string(),
        "  what came out (1 event):".to_string(),
        // The event, as pretty JSON.
        "      \"msg\": \"boom\"\n".to_string(),
        format!("--- filtered out ({f}:40:1) ---"),
        format!("extract_from \"errors\" ({f}:47:16): no output"),
        "what ran: parsed (1 in, 1 out), errors (1 in, 0 out)".to_string(),
        "3 tests: 1 passed, 2 failed".to_string(),
    ] {
        assert!(stdout.contains(&needle), "no {needle:?} in:\n{stdout}");
    }
}

#[test]
fn malformed_tests_are_errors_with_positions_but_never_stop_run() {
    let tests = r#"
[[tests]]
nme = "typo"
[[tests.inputs]]
insert_at = "parsd"
value = "x"
[[tests.outputs]]
extract_from = ["out", "errors.nope"]
[[tests.outputs.conditions]]
type = "check_fields"
source = '.x = 1'

[[tests]]
name = "from a source"
no_outputs_from = ["errors"]
[[tests.inputs]]
insert_at = "in"
type = "lg"
"#;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("p.toml");
    std::fs::write(&file, format!("{PIPELINE}{tests}")).unwrap();
    let f = file.display();
    let expected = [
        format!("{f}:18:1: test `tests[0]`: missing `name`"),
        format!("{f}:19:1: test `tests[0]`: unknown key `nme` in a test; did you mean `name`?"),
        format!(
            "{f}:21:13: test `tests[0]`: insert_at = \"parsd\" names no transform; did you mean \"parsed\"?"
        ),
        format!("{f}:24:17: test `tests[0]`: \"out\" is a sink; sinks do not run in tests"),
        format!("{f}:24:24: test `tests[0]`: transforms.errors has no output `nope`"),
        format!("{f}:26:8: test `tests[0]`: unknown condition type `check_fields`"),
        format!("{f}:27:10: test `tests[0]`: VRL program does not compile"),
        format!(
            "{f}:31:20: test `from a source`: \"errors\" is not downstream of this test's insert_at"
        ),
        format!("{f}:33:13: test `from a source`: insert_at = \"in\" names a source"),
        format!(
            "{f}:34:8: test `from a source`: unknown input type `lg`; known types: raw, log, vrl"
        ),
    ];
    let out = Command::new(weir_bin()).args(["validate", "--config"]).arg(&file).output().unwrap();
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    for needle in &expected {
        assert!(stderr.contains(&format!("error: {needle}")), "no {needle:?} in:\n{stderr}");
    }
    let out = weir_test(&[&file]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(78), "{stdout}{stderr}");
    assert!(stderr.contains(&expected[0]), "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");

    // `run` ignores tests: the pipeline runs on standard input and prints the error line.
    let mut child = Command::new(weir_bin())
        .args(["run", "--config"])
        .arg(&file)
        .env("WEIR_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"{\"level\":\"INFO\"}\n{\"level\":\"ERROR\",\"msg\":\"boom\"}\n").unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("\"msg\":\"boom\""), "{stdout}{stderr}");
    assert!(!stdout.contains("INFO"), "{stdout}");
}

/// `event_count` (weir's own; Vector's outputs have no count) checks how many events an
/// output has, and shows them when the count is wrong. A Vector `type = "metric"` input is
/// refused with the reason: weir's events are logs.
#[test]
fn event_count_checks_how_many_events_came_out() {
    let tests = r#"
[[tests]]
name = "two errors of three"
[[tests.inputs]]
insert_at = "parsed"
value = '{"level":"ERROR","msg":"one"}'
[[tests.inputs]]
insert_at = "parsed"
value = '{"level":"INFO","msg":"two"}'
[[tests.inputs]]
insert_at = "parsed"
value = '{"level":"ERROR","msg":"three"}'
[[tests.outputs]]
extract_from = "errors"
event_count = 2
[[tests.outputs]]
extract_from = "parsed"
event_count = 3
[[tests.outputs.conditions]]
source = '.msg == "two"'

[[tests]]
name = "one error expected"
[[tests.inputs]]
insert_at = "parsed"
value = '{"level":"ERROR","msg":"one"}'
[[tests.inputs]]
insert_at = "parsed"
value = '{"level":"ERROR","msg":"again"}'
[[tests.outputs]]
extract_from = "errors"
event_count = 1
"#;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("p.toml");
    std::fs::write(&file, format!("{PIPELINE}{tests}")).unwrap();
    let out = weir_test(&[&file]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stdout.contains("test two errors of three ... passed\n"), "{stdout}");
    assert!(stdout.contains("test one error expected ... failed\n"), "{stdout}");
    let f = file.display();
    for needle in [
        format!("extract_from \"errors\" ({f}:47:16): event_count = 1 ({f}:48:15), got 2 events:"),
        "      \"msg\": \"one\"\n".to_string(),
        "      \"msg\": \"again\"\n".to_string(),
        "2 tests: 1 passed, 1 failed".to_string(),
    ] {
        assert!(stdout.contains(&needle), "no {needle:?} in:\n{stdout}");
    }

    let malformed = r#"
[[tests]]
name = "malformed"
[[tests.inputs]]
insert_at = "parsed"
type = "metric"
[[tests.outputs]]
extract_from = "errors"
event_count = 0
"#;
    std::fs::write(&file, format!("{PIPELINE}{malformed}")).unwrap();
    let out = weir_test(&[&file]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(78), "{stdout}{stderr}");
    for needle in [
        format!(
            "{f}:22:8: test `malformed`: `type = \"metric\"` is not supported: events in weir are logs"
        ),
        format!("{f}:25:15: test `malformed`: `event_count` must be a whole number of at least 1"),
    ] {
        assert!(stderr.contains(&needle), "no {needle:?} in:\n{stderr}");
    }
}
