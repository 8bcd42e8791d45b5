//! Model-server lines that no grammar was written from: `tests/data/model-servers/handwritten/`
//! holds lines written by hand, per kind, from each server's documented format (its logging
//! configuration or source, cited in the grammars) and from the shapes those servers print in
//! their own documentation, before the grammars that read them were run on them. They were
//! not edited after: a line that fails stays, and counts.
//!
//! Each file goes through `weir run` (stdin -> `parse_model_log` with `format = "auto"` ->
//! console) and the lines read without `error.message` are counted. `WEIR_BIN` names another
//! binary to measure (an older weir, for the rate before a change).

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::support::weir_bin;

/// Runs `lines` through `parse_model_log` (`auto`, UTC); returns the parsed events as JSON.
pub fn parse_model_lines(dir: &Path, lines: &str) -> Vec<serde_json::Value> {
    run_lines(dir, lines, "")
}

/// As [`parse_model_lines`], lines joined into records that start with `start` (a regex).
pub fn parse_model_lines_multiline(dir: &Path, lines: &str, start: &str) -> Vec<serde_json::Value> {
    let multiline = format!(
        "multiline.start_pattern = '{start}'\nmultiline.condition_pattern = '{start}'\nmultiline.mode = \"halt_before\"\nmultiline.timeout_ms = 200\n"
    );
    run_lines(dir, lines, &multiline)
}

fn run_lines(dir: &Path, lines: &str, source: &str) -> Vec<serde_json::Value> {
    let config = dir.join("lines.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = \"{}\"\n[sources.lines]\ntype = \"stdin\"\n{source}\n[transforms.models]\ntype = \"parse_model_log\"\ninputs = [\"lines\"]\ntimezone = \"UTC\"\n\n[sinks.out]\ntype = \"console\"\ninputs = [\"models\"]\nencoding.codec = \"json\"\n",
            dir.join("data").display()
        ),
    )
    .unwrap();
    let mut child = Command::new(weir_bin())
        .args(["run", "--config"])
        .arg(&config)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn weir");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(lines.as_bytes()).unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// (file, lines read at least): the rates measured when these lines were first run; a
/// change that reads fewer fails.
const KINDS: [(&str, usize); 10] = [
    ("uvicorn.log", 20),
    ("python_logging.log", 19),
    ("kserve.log", 18),
    ("torchserve_access.log", 15),
    ("torchserve_metrics.log", 15),
    ("triton.log", 15),
    ("vllm.log", 17),
    ("rayserve.log", 14),
    ("bentoml.log", 6),
    ("gunicorn_flask_django.log", 20),
];

#[test]
fn handwritten_lines_parse_rate_per_kind() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/model-servers/handwritten");
    let mut report = Vec::new();
    let mut short = Vec::new();
    for (file, floor) in KINDS {
        let dir = tempfile::tempdir().unwrap();
        let text = std::fs::read_to_string(root.join(file)).unwrap();
        let total = text.lines().filter(|l| !l.trim().is_empty()).count();
        let events = parse_model_lines(dir.path(), &text);
        assert_eq!(events.len(), total, "{file}: one event per line");
        let failed: Vec<String> = events
            .iter()
            // Every grammar names itself in `event.dataset`; a line none read has only the error.
            .filter(|e| e.get("event").and_then(|e| e.get("dataset")).is_none())
            .map(|e| format!("{} -> {}", e["message"], e["error"]["message"]))
            .collect();
        let parsed = total - failed.len();
        report.push(format!("{file}: {parsed}/{total}"));
        for f in &failed {
            report.push(format!("  not read: {f}"));
        }
        if parsed < floor {
            short.push(format!("{file}: {parsed} < {floor}"));
        }
    }
    eprintln!("{}", report.join("\n"));
    assert!(short.is_empty(), "fewer lines read than before: {short:?}\n{}", report.join("\n"));
}
