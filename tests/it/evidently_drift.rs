//! Drift as Evidently computes it: for each case of `tests/data/drift/` (scikit-learn
//! datasets split into a reference and a current window, written with Evidently's own verdicts
//! by `tests/python/evidently_drift.py`, Evidently 0.7.23), `weir profile` profiles the
//! reference with its default column typing, the `drift` transform tests the current rows as
//! one window, and every column must get Evidently's test, its score within 1e-6 (relative to
//! the score, absolute below 1) and its verdict.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::{Map, Value};

use crate::support::weir_bin;

/// The CSV's rows as JSON objects: integers stay integers, other numbers floats, the rest text.
fn rows(path: &Path) -> Vec<Map<String, Value>> {
    let mut reader = csv::Reader::from_path(path).unwrap();
    let headers = reader.headers().unwrap().clone();
    reader
        .records()
        .map(|r| {
            let r = r.unwrap();
            headers
                .iter()
                .zip(r.iter())
                .map(|(h, v)| {
                    let value = if let Ok(i) = v.parse::<i64>() {
                        Value::from(i)
                    } else if let Ok(f) = v.parse::<f64>() {
                        Value::from(f)
                    } else {
                        Value::from(v)
                    };
                    (h.to_string(), value)
                })
                .collect()
        })
        .collect()
}

/// weir's drift report of `case`: `drift.features`.
fn weir_report(case: &Path, work: &Path) -> Map<String, Value> {
    let profile = work.join("profile.json");
    let out = Command::new(weir_bin())
        .args(["profile", "--input"])
        .arg(case.join("reference.csv"))
        .arg("--out")
        .arg(&profile)
        .output()
        .unwrap();
    assert!(out.status.success(), "weir profile: {}", String::from_utf8_lossy(&out.stderr));
    let current = rows(&case.join("current.csv"));
    let config = work.join("drift.toml");
    std::fs::write(
        &config,
        format!(
            r#"data_dir = "{data}"
[sources.rows]
type = "stdin"

[transforms.events]
type = "parse_json"
inputs = ["rows"]

[transforms.drift]
type = "drift"
inputs = ["events"]
references = ["{profile}"]
window.count = {n}
window.secs = 86400
min_samples = 1

[sinks.out]
type = "console"
inputs = ["drift"]
encoding.codec = "json"
"#,
            data = work.join("data").display(),
            profile = profile.display(),
            n = current.len(),
        ),
    )
    .unwrap();
    let mut child = Command::new(weir_bin())
        .args(["run", "--config"])
        .arg(&config)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    for row in &current {
        let event = serde_json::json!({"model": {"name": "m"}, "inference": {"features": row}});
        writeln!(stdin, "{event}").unwrap();
    }
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let report: Value = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|e| e["event"]["action"] == "drift_window")
        .unwrap_or_else(|| panic!("no drift report in:\n{text}"));
    report["drift"]["features"].as_object().unwrap().clone()
}

#[test]
fn drift_matches_evidently_on_sklearn_datasets() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/drift");
    let mut cases: Vec<_> = std::fs::read_dir(&root).unwrap().map(|e| e.unwrap().path()).collect();
    cases.sort();
    assert!(cases.len() >= 4, "the drift cases are missing from {}", root.display());
    let mut problems = Vec::new();
    let mut worst: f64 = 0.0;
    let mut compared = 0;
    for case in &cases {
        let work = tempfile::tempdir().unwrap();
        let evidently: Map<String, Value> =
            serde_json::from_str(&std::fs::read_to_string(case.join("evidently.json")).unwrap())
                .unwrap();
        let weir = weir_report(case, work.path());
        let name = case.file_name().unwrap().to_string_lossy();
        for (column, want) in &evidently {
            let Some(got) = weir.get(column) else {
                problems.push(format!("{name}/{column}: not tested by weir"));
                continue;
            };
            compared += 1;
            if got["method"] != want["method"] {
                problems.push(format!(
                    "{name}/{column}: weir ran {} where Evidently ran {}",
                    got["method"], want["method"]
                ));
                continue;
            }
            let (g, w) =
                (got["score"].as_f64().unwrap_or(f64::NAN), want["score"].as_f64().unwrap());
            let err = (g - w).abs() / w.abs().max(1.0);
            worst = worst.max(err);
            if err.is_nan() || err > 1e-6 {
                problems.push(format!(
                    "{name}/{column} ({}): score {g}, Evidently {w}",
                    want["method"]
                ));
            }
            if got["drifted"] != want["drifted"] {
                problems.push(format!(
                    "{name}/{column}: drifted {} where Evidently says {}",
                    got["drifted"], want["drifted"]
                ));
            }
        }
    }
    eprintln!("{compared} columns compared, largest score difference {worst:e}");
    assert!(problems.is_empty(), "{} differences:\n{}", problems.len(), problems.join("\n"));
}
