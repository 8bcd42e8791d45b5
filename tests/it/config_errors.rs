//! `weir validate`: every error at once, each with its component and `file:line:column`,
//! worded for the person who wrote the file.

use crate::support::validate;

/// Validates `text` as a file named `pipeline.toml`; returns (exit code, stdout) with the
/// temporary directory removed from paths.
fn check(text: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pipeline.toml");
    std::fs::write(&path, text).unwrap();
    let (code, out) = validate(&[&path]);
    (code, out.replace(&format!("{}/", dir.path().display()), ""))
}

/// Asserts that validating `text` fails with exactly `expected` (one error per line, then the
/// count line).
fn expect_errors(text: &str, expected: &[&str]) {
    let (code, out) = check(text);
    let mut want: Vec<String> = expected.iter().map(|e| format!("error: {e}")).collect();
    want.push(format!(
        "{} error{} found",
        expected.len(),
        if expected.len() == 1 { "" } else { "s" }
    ));
    assert_eq!(out.lines().collect::<Vec<_>>(), want, "full output:\n{out}");
    assert_eq!(code, 1);
}

const GOOD_TAIL: &str = r#"
[sinks.out]
type = "console"
inputs = ["in"]
"#;

#[test]
fn a_valid_pipeline_is_ok() {
    let (code, out) = check(&format!("[sources.in]\ntype = \"stdin\"\n{GOOD_TAIL}"));
    assert_eq!((code, out.as_str()), (0, "Configuration OK\n"));
}

#[test]
fn unknown_keys_are_named_with_their_position() {
    expect_errors(
        r#"
[sources.in]
type = "file"
include = ["/var/log/*.log"]
read_form = "end"

[sinks.out]
type = "console"
inputs = ["in"]
"#,
        &[
            "pipeline.toml:5:1: sources.in: unknown field `read_form`, expected one of `include`, `exclude`, `read_from`, `glob_interval_ms`, `poll_interval_ms`, `max_line_bytes`, `oversize`, `multiline`, `fingerprint_bytes`, `ignore_older_secs`, `rotate_wait_ms`, `max_read_bytes`, `checkpoint_interval_ms`, `close_inactive_secs`, `max_open_files`, `forget_after_secs`, `inotify`",
        ],
    );
}

#[test]
fn unknown_types_suggest_the_closest() {
    expect_errors(
        &format!("[sources.in]\ntype = \"stdn\"\n{GOOD_TAIL}"),
        &[
            "pipeline.toml:2:8: sources.in: unknown source type `stdn`; did you mean `stdin`? known types: demo, file, http_server, kafka, kubernetes_logs, opentelemetry, stdin, syslog",
        ],
    );
}

#[test]
fn inputs_that_name_nothing_and_cycles() {
    expect_errors(
        r#"
[sources.model_logs]
type = "stdin"

[transforms.parsed]
type = "parse_json"
inputs = ["model_log"]

[transforms.a]
type = "filter"
inputs = ["b", "model_logs"]
condition = "true"

[transforms.b]
type = "filter"
inputs = ["a"]
condition = "true"

[sinks.out]
type = "console"
inputs = ["parsed", "a", "b.nope", "out"]
"#,
        &[
            "pipeline.toml:7:1: transforms.parsed: input \"model_log\" names no source or transform (did you mean \"model_logs\"?)",
            "pipeline.toml:11:1: transforms.a: the inputs form a cycle: a -> b -> a",
            "pipeline.toml:21:1: sinks.out: input \"b.nope\" names no output: `b` has no named outputs",
            "pipeline.toml:21:1: sinks.out: input \"out\" is a sink; only sources and transforms can be inputs",
        ],
    );
}

#[test]
fn type_errors_and_bad_values() {
    expect_errors(
        r#"
[sources.in]
type = "file"
include = "/var/log/*.log"

[transforms.t]
type = "parse_timestamp"
inputs = ["in"]
formats = ["%Y-%m-%d"]
timezone = "Mars/Olympus"

[sinks.out]
type = "console"
inputs = ["t"]
encoding.codec = "xml"
"#,
        &[
            "pipeline.toml:4:11: sources.in: invalid type: string \"/var/log/*.log\", expected a list",
            "pipeline.toml:10:1: transforms.t: unknown time zone `Mars/Olympus`: use `local`, `UTC` or an IANA name like `Europe/Berlin`",
            "pipeline.toml:15:18: sinks.out: unknown variant `xml`, expected `json` or `text`",
        ],
    );
}

#[test]
fn missing_environment_variables_are_named() {
    expect_errors(
        &format!(
            "[sources.in]\ntype = \"file\"\ninclude = [\"${{WEIR_TEST_SURELY_UNSET}}/x.log\"]\n{GOOD_TAIL}"
        ),
        &[
            "pipeline.toml:3:13: environment variable `WEIR_TEST_SURELY_UNSET` is not set and has no default (write `${WEIR_TEST_SURELY_UNSET:-default}` to give one)",
        ],
    );
    let (code, _) = check(&format!(
        "[sources.in]\ntype = \"file\"\ninclude = [\"${{WEIR_TEST_SURELY_UNSET:-/tmp}}/x.log\"]\n{GOOD_TAIL}"
    ));
    assert_eq!(code, 0);
}

#[test]
fn invalid_toml_and_top_level_typos() {
    expect_errors(
        "[sources.in\ntype = \"stdin\"\n",
        &["pipeline.toml:1:12: invalid TOML: unclosed table, expected `]`"],
    );
    expect_errors(
        &format!("datadir = \"/x\"\n[sources.in]\ntype = \"stdin\"\n{GOOD_TAIL}"),
        &[
            "pipeline.toml:1:1: unknown key `datadir` at the top level (the top level holds data_dir, api, dead_letter, shutdown_timeout_secs, the [sources], [transforms] and [sinks] tables and [[tests]])",
        ],
    );
}

#[test]
fn bad_patterns_and_programs_point_at_their_field() {
    let (code, out) = check(
        r#"
[sources.in]
type = "stdin"

[transforms.r]
type = "parse_regex"
inputs = ["in"]
pattern = '(?P<x>unclosed'

[transforms.f]
type = "filter"
inputs = ["r"]
condition = ".status >="

[sinks.out]
type = "console"
inputs = ["f"]
"#,
    );
    assert_eq!(code, 1);
    assert!(
        out.contains("error: pipeline.toml:8:1: transforms.r: invalid regular expression:"),
        "{out}"
    );
    assert!(
        out.contains("error: pipeline.toml:13:1: transforms.f: VRL program does not compile:"),
        "{out}"
    );
    assert!(out.contains("unexpected end of program"), "{out}");
    assert!(out.ends_with("2 errors found\n"), "{out}");
}

#[test]
fn one_id_in_two_files() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.toml");
    let b = dir.path().join("b.toml");
    std::fs::write(&a, format!("[sources.in]\ntype = \"stdin\"\n{GOOD_TAIL}")).unwrap();
    std::fs::write(&b, "[sources.in]\ntype = \"demo\"\n").unwrap();
    let (code, out) = validate(&[&a, &b]);
    let out = out.replace(&format!("{}/", dir.path().display()), "");
    assert_eq!(code, 1);
    assert_eq!(
        out,
        "error: b.toml:1:10: sources.in: the id `in` is already used by sources.in at a.toml:1:10\n1 error found\n"
    );
}

#[test]
fn a_missing_file_is_reported() {
    let (code, out) = validate(&[std::path::Path::new("/nonexistent/pipeline.toml")]);
    assert_eq!(code, 1);
    assert!(out.starts_with("error: cannot read /nonexistent/pipeline.toml: "), "{out}");
}

/// An environment value that would close its string and open a table of its own: in a
/// string it stays the string's value (weir runs the pipeline as written, the value in the
/// field, and no other component); outside quotes it is an error naming the variable.
#[test]
fn environment_values_cannot_add_components() {
    use std::io::Write as _;
    use std::process::{Command, Stdio};

    let injection = "x\" }\n[sinks.injected]\ntype = \"console\"\ninputs = [\"in\"]\n#";
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("pipeline.toml");
    std::fs::write(
        &config,
        "[sources.in]\ntype = \"stdin\"\n\n[transforms.t]\ntype = \"set\"\ninputs = [\"in\"]\n\
         fields = { \"note\" = \"${WEIR_TEST_INJECTION}\" }\n\n[sinks.out]\ntype = \"console\"\n\
         inputs = [\"t\"]\nencoding.codec = \"json\"\n",
    )
    .unwrap();
    let mut child = Command::new(crate::support::weir_bin())
        .args(["run", "--config"])
        .arg(&config)
        .env("WEIR_TEST_INJECTION", injection)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"hello\n").unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let events: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.len(), 1, "one sink, one event: {events:#?}\n{stderr}");
    assert_eq!(events[0]["note"], injection, "the value, exactly");
    assert_eq!(events[0]["message"], "hello");

    // Outside quotes a value must be a number, boolean or date-time.
    std::fs::write(
        &config,
        "[sources.in]\ntype = \"demo\"\ninterval_ms = ${WEIR_TEST_INJECTION}\n\n[sinks.out]\n\
         type = \"console\"\ninputs = [\"in\"]\n",
    )
    .unwrap();
    let out = Command::new(crate::support::weir_bin())
        .arg("validate")
        .arg(&config)
        .env("WEIR_TEST_INJECTION", "5\n[sinks.injected]\ntype = \"console\"\ninputs = [\"in\"]")
        .output()
        .unwrap();
    // Errors go to standard error.
    assert_eq!(String::from_utf8_lossy(&out.stdout), "");
    let text = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains(
            "pipeline.toml:3:15: environment variable `WEIR_TEST_INJECTION` cannot be used here: \
             outside quotes its value must be one TOML number, boolean or date-time"
        ),
        "{text}"
    );
    assert!(!text.contains("injected"), "the value is not repeated: {text}");
    // A number outside quotes, as the default pipeline's `interval_ms`, still works.
    let out = Command::new(crate::support::weir_bin())
        .arg("validate")
        .arg(&config)
        .env("WEIR_TEST_INJECTION", "250")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "Configuration OK\n");
}
