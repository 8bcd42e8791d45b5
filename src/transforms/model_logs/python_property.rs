//! The property test of Python format strings, with Python's `logging` as the peer: thousands
//! of random formats, date formats and records, formatted by Python
//! (`tests/python/logging_cases.py`); every field of every line must come back exactly.

use serde_json::Value as Json;
use vrl::value::Value;

use super::grammars::Grammars;
use super::python_format::{PythonFormat, Style};

const CASES: usize = 3000;

fn python_cases(seed: u64) -> Vec<Json> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = std::process::Command::new("python3")
        .arg(root.join("tests/python/logging_cases.py"))
        .arg(CASES.to_string())
        .arg(seed.to_string())
        .output()
        .expect("python3 runs (Python's logging is the peer of this test)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Whether weir's value is the one Python holds.
fn same(got: &Value, want: &Json) -> bool {
    match (got, want) {
        (Value::Bytes(_) | Value::String(_), Json::String(s)) => {
            got.to_str_lossy().is_some_and(|g| g == s.as_str())
        }
        (Value::Integer(i), Json::Number(n)) => n.as_i64() == Some(*i),
        // Python's repr of the float, parsed exactly here.
        (Value::Float(f), Json::Object(o)) => {
            o["float"].as_str().and_then(|t| t.parse::<f64>().ok()) == Some(f.into_inner())
        }
        _ => false,
    }
}

#[test]
fn python_formats_give_every_field_back() {
    let grammars = Grammars::new(Some("UTC"), None).unwrap();
    let cases = python_cases(20261207);
    assert_eq!(cases.len(), CASES);
    let mut failures = Vec::new();
    for case in &cases {
        let style = Style::from_name(case["style"].as_str().unwrap()).unwrap();
        let line = case["line"].as_str().unwrap();
        let format = case["format"].as_str().unwrap();
        let f = PythonFormat::new(format, style, case["datefmt"].as_str(), Some("UTC"))
            .unwrap_or_else(|e| panic!("format `{format}`: {e}"));
        let parsed = match grammars.parse_python(&f, line) {
            Ok(p) => p,
            Err(e) => {
                failures.push(format!("{format:?} did not read {line:?}: {e}"));
                continue;
            }
        };
        let get = |path: &str| -> Option<&Value> {
            parsed
                .fields
                .iter()
                .rev()
                .find(|(k, _)| *k == path)
                .map(|(_, v)| v)
                .or_else(|| parsed.extra.get(path))
        };
        for (path, want) in case["expected"].as_object().unwrap() {
            let ok = if path == "@timestamp_micros" {
                matches!(get("@timestamp"), Some(Value::Timestamp(t)) if Some(t.timestamp_micros()) == want.as_i64())
            } else {
                get(path).is_some_and(|got| same(got, want))
            };
            if !ok {
                failures.push(format!(
                    "{format:?} (datefmt {}) on {line:?}: `{path}` is {:?}, Python has {want}",
                    case["datefmt"],
                    get(if path == "@timestamp_micros" { "@timestamp" } else { path })
                ));
            }
        }
    }
    eprintln!("python formats: {} cases, {} failures", cases.len(), failures.len());
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures[..failures.len().min(20)].join("\n")
    );
}
