//! Every shipped pipeline parses its own sample logs: each `pipelines/*.toml` whose file
//! sources name files of `deploy/sample-logs/` (by the file-name pattern of their `include`,
//! the environment's default taken; read from the beginning) runs on those files, its sinks
//! replaced by one file sink each, its drift references taken from `deploy/profiles/`. No
//! event it writes may carry `error.message`, and every event read from a line keeps what the
//! file source set (`log.file.path`, `host.name`) and has an `@timestamp`: parsing never hides
//! a source's fields. A pipeline with no file source, or none that names a sample file, is
//! listed as not covered (the demo pipeline is run by `model_monitoring`); every sample file
//! must be read by some pipeline.

use std::path::{Path, PathBuf};
use std::time::Duration;

use regex::Regex;
use toml_edit::{DocumentMut, Item, Table, value};

use crate::support::{Weir, read_lines, wait_for};

/// `${VAR:-default}` becomes its default; `${VAR}` stays (it then names nothing).
fn defaults(text: &str) -> String {
    Regex::new(r"\$\{[A-Z_]+:-([^}]*)\}").unwrap().replace_all(text, "$1").into_owned()
}

/// A file-name glob (`*`, `?`) as a regex.
fn glob(name: &str) -> Regex {
    let mut re = String::from("^");
    for ch in name.chars() {
        match ch {
            '*' => re.push_str(".*"),
            '?' => re.push('.'),
            c => re.push_str(&regex::escape(&c.to_string())),
        }
    }
    Regex::new(&(re + "$")).unwrap()
}

fn samples() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/sample-logs");
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    files
}

/// The pipeline rewritten to read the sample files and write every sink to a file; `None`
/// when none of its file sources names a sample. Returns the outputs, how many records the
/// samples hold (by each source's multiline start pattern) and the samples read.
fn on_samples(text: &str, dir: &Path) -> Option<(String, Vec<PathBuf>, usize, Vec<PathBuf>)> {
    let mut doc: DocumentMut = defaults(text).parse().unwrap();
    doc.remove("data_dir");
    doc.remove("api");
    let mut records = 0;
    let mut matched = false;
    let mut read = Vec::new();
    if let Some(sources) = doc.get_mut("sources").and_then(Item::as_table_mut) {
        for (_, source) in sources.iter_mut() {
            let Some(source) = source.as_table_mut() else { continue };
            if source.get("type").and_then(|t| t.as_str()) != Some("file") {
                continue;
            }
            let includes: Vec<String> = source["include"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect();
            let names: Vec<Regex> = includes
                .iter()
                .map(|i| glob(Path::new(i).file_name().unwrap().to_str().unwrap()))
                .collect();
            let files: Vec<PathBuf> = samples()
                .into_iter()
                .filter(|f| {
                    let name = f.file_name().unwrap().to_str().unwrap();
                    names.iter().any(|g| g.is_match(name))
                })
                .collect();
            let start = source
                .get("multiline")
                .and_then(|m| m.get("start_pattern"))
                .and_then(|p| p.as_str())
                .map(|p| Regex::new(p).unwrap());
            for f in &files {
                let text = std::fs::read_to_string(f).unwrap();
                records += text
                    .lines()
                    .filter(|l| !l.is_empty() && start.as_ref().is_none_or(|s| s.is_match(l)))
                    .count();
            }
            matched |= !files.is_empty();
            read.extend(files.iter().cloned());
            let mut list = toml_edit::Array::new();
            for f in &files {
                list.push(f.display().to_string());
            }
            if files.is_empty() {
                list.push(dir.join("nothing-*.log").display().to_string());
            }
            source["include"] = value(list);
            source["read_from"] = value("beginning");
        }
    }
    // Drift references by file name from the profiles shipped beside the samples.
    if let Some(transforms) = doc.get_mut("transforms").and_then(Item::as_table_mut) {
        for (_, t) in transforms.iter_mut() {
            let Some(refs) = t.get_mut("references").and_then(Item::as_array_mut) else { continue };
            let profiles = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/profiles");
            for r in refs.iter_mut() {
                let name = Path::new(r.as_str().unwrap()).file_name().unwrap().to_owned();
                *r = profiles.join(name).display().to_string().into();
            }
        }
    }
    if !matched {
        return None;
    }
    let mut outputs = Vec::new();
    if let Some(sinks) = doc.get_mut("sinks").and_then(Item::as_table_mut) {
        let ids: Vec<String> = sinks.iter().map(|(k, _)| k.to_string()).collect();
        for id in ids {
            let inputs = sinks[id.as_str()]["inputs"].clone();
            let out = dir.join(format!("{id}.jsonl"));
            let mut t = Table::new();
            t["type"] = value("file");
            t["inputs"] = inputs;
            t["path"] = value(out.display().to_string());
            t["encoding"]["codec"] = value("json");
            sinks[id.as_str()] = Item::Table(t);
            outputs.push(out);
        }
    }
    doc.remove("dead_letter");
    Some((doc.to_string(), outputs, records, read))
}

#[test]
fn shipped_pipelines_parse_their_sample_logs() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines");
    let mut covered = Vec::new();
    let mut problems = Vec::new();
    let mut lost = Vec::new();
    let mut read: std::collections::BTreeSet<String> = Default::default();
    let mut paths: Vec<PathBuf> =
        std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    paths.sort();
    for path in paths.iter().filter(|p| p.extension().is_some_and(|e| e == "toml")) {
        let work = tempfile::tempdir().unwrap();
        let text = std::fs::read_to_string(path).unwrap();
        let Some((pipeline, outputs, records, samples_read)) = on_samples(&text, work.path())
        else {
            eprintln!("{}: no file source names a sample log: not covered", path.display());
            continue;
        };
        let weir = Weir::start(work.path(), &pipeline);
        let count = || outputs.iter().map(|o| read_lines(o).len()).sum::<usize>();
        let done = wait_for(Duration::from_secs(30), || count() >= records);
        weir.stop();
        assert!(done, "{}: {} of {records} records written", path.display(), count());
        for o in &outputs {
            for line in read_lines(o) {
                let e: serde_json::Value = serde_json::from_str(&line).unwrap();
                if let Some(lost_fields) = source_fields_lost(&e) {
                    lost.push(format!("{}: {lost_fields} lost in {line}", path.display()));
                }
                if let Some(m) = e.get("error").and_then(|e| e.get("message")) {
                    // An error the log itself reports (a traceback, a failed prediction) is
                    // not a parse failure: those events name their error type or stack, or
                    // say the request failed.
                    if e["error"].get("type").is_none()
                        && e["error"].get("stack_trace").is_none()
                        && e["event"]["outcome"] != "failure"
                    {
                        problems.push(format!("{}: {m} in {line}", path.display()));
                    }
                }
            }
        }
        covered.push(path.file_name().unwrap().to_string_lossy().into_owned());
        read.extend(
            samples_read.iter().map(|f| f.file_name().unwrap().to_string_lossy().into_owned()),
        );
    }
    assert!(!covered.is_empty(), "no pipeline reads a sample log");
    assert!(problems.is_empty(), "events with error.message:\n{}", problems.join("\n"));
    assert!(lost.is_empty(), "source fields hidden by parsing:\n{}", lost.join("\n"));
    for f in samples() {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        if f.extension().is_some_and(|e| e == "py") {
            continue;
        }
        assert!(read.contains(&name), "no shipped pipeline read the sample {name} ({covered:?})");
    }
}

/// What a line's event lacks of the fields its file source set, or `None`. Reports of the
/// monitoring transforms (drift, accuracy) are not lines, and have none of them.
fn source_fields_lost(e: &serde_json::Value) -> Option<String> {
    let action = e["event"]["action"].as_str().unwrap_or("");
    if action.ends_with("_window") {
        return None;
    }
    let mut lost = Vec::new();
    if !e["log"]["file"]["path"].is_string() {
        lost.push("log.file.path");
    }
    if !e["host"]["name"].is_string() {
        lost.push("host.name");
    }
    if !e["@timestamp"].is_string() {
        lost.push("@timestamp");
    }
    (!lost.is_empty()).then(|| lost.join(", "))
}
