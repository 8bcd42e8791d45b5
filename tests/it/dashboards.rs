//! What the dashboards and alerts read, checked with Prometheus's own tools (Debian's
//! `prometheus` and `prometheus-alertmanager`): `/metrics` passes `promtool check metrics` in
//! the Prometheus text format and is OpenMetrics otherwise, with the `process_*` series and
//! the series of what can go wrong registered at 0; every PromQL expression of the Grafana
//! dashboards passes `promtool check rules`, as do the alert rules, and the Prometheus and
//! Alertmanager configurations pass `promtool check config` and `amtool check-config`; every
//! metric the dashboards and the alert rules name is on the `/metrics` of the shipped
//! model-monitoring pipeline running on its sample logs.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use regex::Regex;

use crate::loki_server::LokiServer;
use crate::support::{Weir, free_port, require_command, wait_for};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `GET /metrics` with an optional `Accept` header: (Content-Type, body).
fn scrape(api: SocketAddr, accept: Option<&str>) -> (String, String) {
    let mut s = TcpStream::connect_timeout(&api, Duration::from_secs(2)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let accept = accept.map(|a| format!("Accept: {a}\r\n")).unwrap_or_default();
    write!(s, "GET /metrics HTTP/1.1\r\nHost: {api}\r\n{accept}Connection: close\r\n\r\n").unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let content_type = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-type: ").map(str::to_string))
        .unwrap_or_default();
    (content_type, body.to_string())
}

/// `promtool check metrics` on `text`: (success, what it said).
fn promtool_check_metrics(text: &str) -> (bool, String) {
    let mut child = Command::new(require_command("promtool"))
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let said =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), said)
}

/// Whether `text` has a sample of `name` whose labels include every pair of `labels`.
fn has_series(text: &str, name: &str, labels: &[(&str, &str)]) -> bool {
    text.lines().filter(|l| !l.starts_with('#')).any(|l| {
        let series = l.rsplit_once(' ').map_or(l, |(s, _)| s);
        let (n, rest) = series.split_once('{').unwrap_or((series, ""));
        n == name && labels.iter().all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")))
    })
}

fn sample(text: &str, name: &str) -> f64 {
    crate::support::metric_sum(text, name, &[])
}

#[test]
fn metrics_pass_promtool_with_process_series_and_zeros_from_the_start() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("in.log"), "").unwrap();
    // Nothing listens at the Loki endpoint: the sink retries, and nothing has failed yet.
    let dead = free_port();
    let weir = Weir::start(
        dir.path(),
        &format!(
            r#"
[sources.in]
type = "file"
include = ["{{{{dir}}}}/in.log"]

[sinks.out]
type = "loki"
inputs = ["in"]
endpoint = "http://127.0.0.1:{dead}"
labels.job = "test"
"#
        ),
    );
    let (content_type, text) = scrape(weir.api, Some("text/plain; version=0.0.4"));
    assert!(content_type.starts_with("text/plain; version=0.0.4"), "{content_type}");
    let (ok, said) = promtool_check_metrics(&text);
    assert!(ok, "promtool check metrics:\n{said}\non:\n{text}");
    assert!(!text.contains("# EOF") && !text.contains("# UNIT"), "{text}");

    // What Prometheus sends by default, and no header at all: OpenMetrics.
    for accept in [
        Some(
            "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
        ),
        None,
    ] {
        let (content_type, om) = scrape(weir.api, accept);
        assert!(content_type.starts_with("application/openmetrics-text"), "{content_type}");
        assert!(om.ends_with("# EOF\n"), "{om}");
        assert!(om.contains("# TYPE weir_component_received_events counter\n"), "{om}");
    }

    // The process series, with values that hold for this process.
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    let start = sample(&text, "process_start_time_seconds");
    assert!(start > now - 300.0 && start <= now + 1.0, "start {start}, now {now}");
    assert!(sample(&text, "process_resident_memory_bytes") > 1e6, "{text}");
    assert!(sample(&text, "process_virtual_memory_bytes") > 1e6, "{text}");
    let open = sample(&text, "process_open_fds");
    assert!(open >= 3.0 && sample(&text, "process_max_fds") >= open, "{text}");
    assert!(has_series(&text, "process_cpu_seconds_total", &[]), "{text}");

    // What can go wrong at the sink is on /metrics at 0 before it has happened.
    let sink = [("component_id", "out")];
    for reason in ["http_400", "http_404", "missing_field", "entry_out_of_order"] {
        let r = [sink[0], ("reason", reason)];
        assert!(has_series(&text, "weir_dead_letter_events_total", &r), "{reason}:\n{text}");
        assert!(has_series(&text, "weir_sink_rejected_events_total", &r), "{reason}:\n{text}");
    }
    for error in ["retries_exhausted", "credentials_refused"] {
        let e = [sink[0], ("error_type", error)];
        assert!(has_series(&text, "weir_component_errors_total", &e), "{error}:\n{text}");
    }
    // And at the file source.
    for error in ["read_failed", "checkpoint_write_failed"] {
        let e = [("component_id", "in"), ("error_type", error)];
        assert!(has_series(&text, "weir_component_errors_total", &e), "{error}:\n{text}");
        assert_eq!(crate::support::metric_sum(&text, "weir_component_errors_total", &e), 0.0);
    }
    assert_eq!(sample(&text, "weir_dead_letter_events_total"), 0.0);
    assert!(has_series(&text, "weir_sink_retries_total", &sink), "{text}");
    weir.stop();
}

/// Every Prometheus expression of the Grafana dashboards: (dashboard, panel title, expr),
/// with Grafana's variables given values Prometheus reads (`$__rate_interval` a duration,
/// `$model` and the others a regex matching anything), and the variables' own queries.
fn dashboard_exprs() -> Vec<(String, String, String)> {
    let dir = root().join("deploy/grafana/dashboards");
    let mut out = Vec::new();
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    let label_values = Regex::new(r"^label_values\((.*),\s*[a-zA-Z_]+\)$").unwrap();
    let var = Regex::new(r"\$[a-zA-Z_]+").unwrap();
    let concrete = |e: &str| {
        let e = e.replace("$__rate_interval", "5m").replace("$__interval", "1m");
        var.replace_all(&e, ".*").into_owned()
    };
    for f in files.iter().filter(|f| f.extension().is_some_and(|e| e == "json")) {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        let d: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(f).unwrap())
            .unwrap_or_else(|e| panic!("{name} is not JSON: {e}"));
        for v in d["templating"]["list"].as_array().unwrap() {
            if v["datasource"]["type"] != "prometheus" {
                continue;
            }
            let q = v["query"]["query"].as_str().or(v["query"].as_str()).unwrap();
            let selector = label_values
                .captures(q)
                .unwrap_or_else(|| panic!("{name}: variable query {q} is not label_values"))[1]
                .to_string();
            out.push((name.clone(), format!("variable {}", v["name"]), concrete(&selector)));
        }
        for p in d["panels"].as_array().unwrap() {
            for t in p["targets"].as_array().into_iter().flatten() {
                let ds =
                    if t["datasource"].is_null() { &p["datasource"] } else { &t["datasource"] };
                if ds["type"] == "prometheus" {
                    let expr = t["expr"].as_str().unwrap();
                    out.push((name.clone(), p["title"].to_string(), concrete(expr)));
                }
            }
        }
    }
    out
}

/// The alert rules' expressions.
fn alert_exprs() -> Vec<String> {
    let text = std::fs::read_to_string(root().join("deploy/prometheus/alerts.yml")).unwrap();
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("expr: "))
        .map(|e| e.trim_matches('"').to_string())
        .collect()
}

fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().unwrap();
    (
        out.status.success(),
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
    )
}

#[test]
fn dashboards_alerts_and_configurations_pass_promtool_and_amtool() {
    let promtool = require_command("promtool");
    let exprs = dashboard_exprs();
    let boards: BTreeSet<&str> = exprs.iter().map(|(d, _, _)| d.as_str()).collect();
    assert!(boards.contains("model-monitoring.json") && boards.contains("weir.json"), "{boards:?}");
    assert!(exprs.len() >= 25, "{exprs:#?}");
    // One recording rule per expression: promtool parses each as PromQL.
    let dir = tempfile::tempdir().unwrap();
    let mut rules = String::from("groups:\n  - name: dashboards\n    rules:\n");
    for (i, (_, _, e)) in exprs.iter().enumerate() {
        rules.push_str(&format!(
            "      - record: dashboard_expression_{i}\n        expr: {}\n",
            serde_json::to_string(e).unwrap()
        ));
    }
    let file = dir.path().join("dashboards.rules.yml");
    std::fs::write(&file, &rules).unwrap();
    let (ok, said) = run(Command::new(&promtool).args(["check", "rules"]).arg(&file));
    assert!(ok, "{said}\n{rules}");
    assert!(said.contains(&format!("SUCCESS: {} rules found", exprs.len())), "{said}");

    let (ok, said) = run(Command::new(&promtool)
        .args(["check", "rules", "deploy/prometheus/alerts.yml"])
        .current_dir(root()));
    assert!(ok, "{said}");
    let (ok, said) = run(Command::new(&promtool)
        .args(["check", "config", "deploy/prometheus/prometheus.yml"])
        .current_dir(root()));
    assert!(ok, "{said}");
    assert!(said.contains("SUCCESS"), "{said}");
    let (ok, said) = run(Command::new(require_command("amtool"))
        .args(["check-config", "deploy/alertmanager/alertmanager.yml"])
        .current_dir(root()));
    assert!(ok, "{said}");
}

/// `${NAME:-default}` and `${NAME}` replaced from `values`, other defaults taken.
fn substitute(text: &str, values: &[(&str, String)]) -> String {
    let re = Regex::new(r"\$\{([A-Z_]+)(?::-([^}]*))?\}").unwrap();
    re.replace_all(text, |c: &regex::Captures| {
        values
            .iter()
            .find(|(k, _)| *k == &c[1])
            .map(|(_, v)| v.clone())
            .or_else(|| c.get(2).map(|d| d.as_str().to_string()))
            .unwrap_or_else(|| panic!("{} has no value", &c[1]))
    })
    .into_owned()
}

/// The names of metrics in PromQL expressions (weir's and the process's).
fn metric_names(exprs: impl Iterator<Item = String>) -> BTreeSet<String> {
    let name = Regex::new(r"\b((?:weir|process)_[a-z0-9_]+)\b").unwrap();
    exprs
        .flat_map(|e| name.find_iter(&e).map(|m| m.as_str().to_string()).collect::<Vec<_>>())
        .collect()
}

#[test]
fn every_metric_the_dashboards_and_alerts_name_is_served_by_the_monitoring_pipeline() {
    let loki = LokiServer::start();
    let dir = tempfile::tempdir().unwrap();
    let samples = root().join("deploy/sample-logs");
    let samples = samples.display().to_string();
    let text = std::fs::read_to_string(root().join("pipelines/model-monitoring.toml")).unwrap();
    // The shipped pipeline on its sample logs, as its environment variables configure it;
    // Alertmanager and MLflow are not running (their sinks retry), Loki is the stand-in.
    let pipeline = substitute(
        &text,
        &[
            ("TORCHSERVE_LOGS", samples.clone()),
            ("PREDICTION_LOGS", samples.clone()),
            ("LABEL_LOGS", samples.clone()),
            (
                "WEIR_REFERENCE_PROFILE",
                root().join("deploy/profiles/churn-xgb-3.profile.json").display().to_string(),
            ),
            ("ALERTMANAGER_URL", format!("http://127.0.0.1:{}", free_port())),
            ("MLFLOW_TRACKING_URI", format!("http://127.0.0.1:{}", free_port())),
            ("LOKI_ENDPOINT", loki.url()),
            ("WEIR_OUT", dir.path().join("out").display().to_string()),
        ],
    );
    // Windows of 100 instead of 1000, so that the samples' 300 predictions fill some.
    let mut doc: toml_edit::DocumentMut = pipeline.parse().unwrap();
    doc.remove("data_dir");
    doc.remove("api");
    for id in ["drift", "quality"] {
        doc["transforms"][id]["window"]["count"] = toml_edit::value(100);
    }
    let weir = Weir::start(dir.path(), &doc.to_string());
    let named = metric_names(dashboard_exprs().into_iter().map(|(_, _, e)| e).chain(alert_exprs()));
    assert!(named.len() >= 20, "{named:?}");
    // The samples hold requests, failures, tokens, two drift windows and labels: every
    // series appears once they are read (and Loki has answered a push).
    let mut text = String::new();
    let mut missing: Vec<&String> = Vec::new();
    let served = wait_for(Duration::from_secs(60), || {
        text = scrape(weir.api, Some("text/plain")).1;
        missing = named.iter().filter(|n| !has_series(&text, n, &[])).collect();
        missing.is_empty() && !loki.state().accepted.is_empty()
    });
    assert!(
        served,
        "named by dashboards or alerts, not served: {missing:?}\n{text}\nstderr:\n{}",
        weir.stderr()
    );
    let (ok, said) = promtool_check_metrics(&text);
    assert!(ok, "promtool check metrics:\n{said}");
    // The Loki panel's stream selector finds the model's lines: job and model labels.
    let streams = loki.state().streams();
    assert!(
        streams.iter().any(|s| s.get("job").map(String::as_str) == Some("model-serving")
            && s.get("model").map(String::as_str) == Some("churn-xgb")),
        "{streams:?}"
    );
    let failures = loki
        .state()
        .accepted
        .iter()
        .filter(|a| {
            let v: serde_json::Value = serde_json::from_str(&a.line).unwrap();
            v["event"]["outcome"] == "failure" && a.metadata.contains_key("version")
        })
        .count();
    assert!(failures > 0, "no failure reached Loki for the logs panel");
    weir.stop();
}
