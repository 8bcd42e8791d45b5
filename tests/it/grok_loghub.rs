//! `parse_grok` on real logs: the loghub samples, each line parsed into the fields of the
//! `*_structured.csv` published beside it (the reference a correct parser must reproduce).

use std::collections::BTreeMap;
use std::time::Duration;

use crate::support::{Weir, read_lines, test_data, wait_for};

/// (dataset, grok pattern). Field names are the CSV's column names.
const DATASETS: &[(&str, &str)] = &[
    ("Apache", r"^\[%{DATA:Time}\] \[%{LOGLEVEL:Level}\] %{DATA:Content}\s*$"),
    (
        "Linux",
        r"^%{MONTH:Month} +%{MONTHDAY:Date} %{TIME:Time} %{NOTSPACE:Level} +%{DATA:Component}(?:\[%{POSINT:PID}\])?: +%{DATA:Content}\s*$",
    ),
    (
        "OpenSSH",
        r"^%{MONTH:Date} +%{MONTHDAY:Day} %{TIME:Time} %{NOTSPACE:Component} sshd\[%{POSINT:Pid}\]: %{DATA:Content}\s*$",
    ),
    (
        "HDFS",
        r"^%{INT:Date} %{INT:Time} %{INT:Pid} %{LOGLEVEL:Level} %{NOTSPACE:Component}: %{DATA:Content}\s*$",
    ),
    (
        "Spark",
        r"^%{NOTSPACE:Date} %{TIME:Time} %{LOGLEVEL:Level} %{NOTSPACE:Component}: %{DATA:Content}\s*$",
    ),
    (
        "Hadoop",
        r"^%{NOTSPACE:Date} %{NOTSPACE:Time} %{LOGLEVEL:Level} \[%{DATA:Process}\] %{NOTSPACE:Component}: %{DATA:Content}\s*$",
    ),
];

#[test]
fn grok_reproduces_the_loghub_reference_fields() {
    let dir = tempfile::tempdir().unwrap();
    let mut pipeline = String::new();
    for (name, pattern) in DATASETS {
        let log = dir.path().join(format!("{name}.log"));
        let mut text =
            std::fs::read(test_data().join(format!("loghub/{name}/{name}_2k.log"))).unwrap();
        // A tailer reads a line once it is complete; some samples lack the final newline.
        if !text.ends_with(b"\n") {
            text.push(b'\n');
        }
        std::fs::write(&log, text).unwrap();
        pipeline.push_str(&format!(
            r#"
[sources.{name}_file]
type = "file"
include = ["{log}"]

[transforms.{name}_grok]
type = "parse_grok"
inputs = ["{name}_file"]
pattern = '{pattern}'

[sinks.{name}_out]
type = "file"
inputs = ["{name}_grok"]
path = "{{{{dir}}}}/{name}.out"
"#,
            log = log.display()
        ));
    }
    let weir = Weir::start(dir.path(), &pipeline);
    for (name, _) in DATASETS {
        let out = dir.path().join(format!("{name}.out"));
        let ok = wait_for(Duration::from_secs(60), || read_lines(&out).len() >= 2000);
        assert!(ok, "{name}: {} lines out; stderr:\n{}", read_lines(&out).len(), weir.stderr());
    }
    assert!(weir.stop().success());

    for (name, _) in DATASETS {
        let out = read_lines(&dir.path().join(format!("{name}.out")));
        let mut csv = csv::Reader::from_path(
            test_data().join(format!("loghub/{name}/{name}_2k.log_structured.csv")),
        )
        .unwrap();
        let headers: Vec<String> = csv.headers().unwrap().iter().map(str::to_string).collect();
        let mut mismatches = Vec::new();
        let mut rows = 0;
        for (record, line) in csv.records().zip(&out) {
            let record = record.unwrap();
            rows += 1;
            let event: serde_json::Value = serde_json::from_str(line).unwrap();
            assert!(event.get("error").is_none(), "{name}: grok failed on {line}");
            let expected: BTreeMap<&str, &str> = headers
                .iter()
                .map(String::as_str)
                .zip(record.iter())
                .filter(|(h, _)| !matches!(*h, "LineId" | "EventId" | "EventTemplate"))
                .collect();
            for (field, want) in expected {
                let got = event.get(field).and_then(|v| v.as_str()).unwrap_or("");
                if got != want {
                    mismatches
                        .push(format!("line {}: {field}: got {got:?}, want {want:?}", &record[0]));
                }
            }
        }
        assert_eq!(rows, 2000, "{name}");
        assert!(
            mismatches.is_empty(),
            "{name}: {} mismatches, first: {:#?}",
            mismatches.len(),
            &mismatches[..mismatches.len().min(5)]
        );
    }
}
