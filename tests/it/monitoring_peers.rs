//! Model monitoring against real peers: Prometheus scrapes the derived series from weir's
//! `/metrics`; Alertmanager receives weir's alerts and their resolution; an MLflow tracking
//! server receives the drift metrics. Each peer runs on loopback from a temporary directory.

use std::io::Write;
use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::{
    Peer, Weir, dechunk, free_port, http_get, http_post_json, read_lines, require_command,
    test_python, url_encode, wait_for, weir_bin,
};

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn append(path: &std::path::Path, lines: &[String]) {
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap();
    for l in lines {
        writeln!(f, "{l}").unwrap();
    }
}

fn torchserve_line(model: &str, status: u16, ms: u32) -> String {
    format!(
        "2026-05-01 10:00:00,123 [INFO ] W-9000-{model}_1.0 ACCESS_LOG - /10.0.0.1:40000 \"POST /predictions/{model}/1.0 HTTP/1.1\" {status} {ms}"
    )
}

/// The value of a Prometheus instant query with one result, if it has one.
fn prometheus_value(addr: SocketAddr, query: &str) -> Option<f64> {
    let (status, body) =
        http_get(addr, &format!("/api/v1/query?query={}", url_encode(query))).ok()?;
    if status != 200 {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(&dechunk(&body)).ok()?;
    v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
}

#[test]
fn prometheus_scrapes_the_derived_model_series() {
    let prometheus = require_command("prometheus");
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    // 40 requests of prom-model: 4 failed, latencies 10..49 ms.
    let lines: Vec<String> = (0..40)
        .map(|i| torchserve_line("prom-model", if i % 10 == 0 { 503 } else { 200 }, 10 + i))
        .collect();
    append(&log, &lines);
    let weir = Weir::start(
        dir.path(),
        r#"
[sources.ts]
type = "file"
include = ["{{dir}}/access.log"]

[transforms.inference]
type = "parse_model_log"
inputs = ["ts"]
format = "torchserve_access"
timezone = "UTC"

[transforms.model_metrics]
type = "log_to_metric"
inputs = ["inference"]
preset = "inference"

[sinks.drop]
type = "blackhole"
inputs = ["model_metrics"]
"#,
    );
    let port = free_port();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: weir\n    metrics_path: /metrics\n    static_configs:\n      - targets: ['{}']\n",
            weir.api
        ),
    )
    .unwrap();
    let peer = Peer::start(
        dir.path(),
        "prometheus",
        Command::new(prometheus)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("tsdb").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}")),
    );
    let addr = loopback(port);
    let requests = r#"sum(weir_model_requests_total{model="prom-model",version="1.0"})"#;
    let seen = wait_for(Duration::from_secs(60), || prometheus_value(addr, requests) == Some(40.0));
    assert!(
        seen,
        "Prometheus never saw 40 requests; its log:\n{}\nweir:\n{}",
        peer.output(),
        weir.stderr()
    );
    let errors = r#"sum(weir_model_errors_total{model="prom-model",status_class="5xx"})"#;
    assert_eq!(prometheus_value(addr, errors), Some(4.0));
    let ratio = r#"sum(weir_model_errors_total{model="prom-model"}) / sum(weir_model_requests_total{model="prom-model"})"#;
    assert_eq!(prometheus_value(addr, ratio), Some(0.1));
    let count = r#"sum(weir_model_request_duration_seconds_count{model="prom-model"})"#;
    assert_eq!(prometheus_value(addr, count), Some(40.0));
    // Latencies 10..49 ms: 0.010 + ... + 0.049 = 1.180 s.
    let sum = r#"sum(weir_model_request_duration_seconds_sum{model="prom-model"})"#;
    let s = prometheus_value(addr, sum).unwrap();
    assert!((s - 1.18).abs() < 1e-9, "{s}");
    // A histogram quantile from the buckets: the median is in the 25-50 ms bucket.
    let p50 = r#"histogram_quantile(0.5, sum by (le) (weir_model_request_duration_seconds_bucket{model="prom-model"}))"#;
    let q = prometheus_value(addr, p50).unwrap();
    assert!((0.025..=0.05).contains(&q), "{q}");
    weir.stop();
}

/// Alerts Alertmanager holds for `model`, as (severity, endsAt) pairs.
fn alertmanager_alerts(addr: SocketAddr, model: &str) -> Vec<(String, String)> {
    let Ok((200, body)) = http_get(addr, "/api/v2/alerts") else { return Vec::new() };
    let v: serde_json::Value = serde_json::from_str(&dechunk(&body)).unwrap_or_default();
    v.as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["labels"]["model"] == model && a["labels"]["alertname"] == "ModelErrorRate")
        .map(|a| {
            (
                a["labels"]["severity"].as_str().unwrap_or_default().to_string(),
                a["endsAt"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[test]
fn alertmanager_receives_alerts_and_their_resolution() {
    let alertmanager = require_command("prometheus-alertmanager");
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = dir.path().join("alertmanager.yml");
    std::fs::write(&config, "route:\n  receiver: 'null'\nreceivers:\n  - name: 'null'\n").unwrap();
    let peer = Peer::start(
        dir.path(),
        "alertmanager",
        Command::new(alertmanager)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.path={}", dir.path().join("am").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address="),
    );
    let addr = loopback(port);
    let ready =
        wait_for(Duration::from_secs(30), || matches!(http_get(addr, "/-/ready"), Ok((200, _))));
    assert!(ready, "Alertmanager did not start:\n{}", peer.output());

    let log = dir.path().join("access.log");
    append(&log, &[torchserve_line("am-model", 200, 5)]);
    let weir = Weir::start(
        dir.path(),
        &format!(
            r#"
[sources.ts]
type = "file"
include = ["{{{{dir}}}}/access.log"]
poll_interval_ms = 20

[transforms.inference]
type = "parse_model_log"
inputs = ["ts"]
format = "torchserve_access"
timezone = "UTC"

[sinks.alerts]
type = "alertmanager"
inputs = ["inference"]
endpoint = "http://127.0.0.1:{port}"
resend_interval_secs = 2
labels = {{ team = "ml" }}

[[sinks.alerts.rules]]
name = "ModelErrorRate"
kind = "error_rate"
window_secs = 1
for_windows = 2
min_requests = 5
warning = 0.1
critical = 0.5
"#
        ),
    );
    // Fail 60% of requests until Alertmanager shows the critical alert.
    let start = Instant::now();
    let mut firing = Vec::new();
    while start.elapsed() < Duration::from_secs(60) {
        append(
            &log,
            &(0..10)
                .map(|i| torchserve_line("am-model", if i < 6 { 503 } else { 200 }, 5))
                .collect::<Vec<_>>(),
        );
        firing = alertmanager_alerts(addr, "am-model");
        if !firing.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(firing.len(), 1, "no alert in Alertmanager; weir:\n{}", weir.stderr());
    assert_eq!(firing[0].0, "critical");
    let ends: chrono::DateTime<chrono::Utc> = firing[0].1.parse().unwrap();
    assert!(ends > chrono::Utc::now(), "a firing alert ends in the future: {}", firing[0].1);

    // Healthy traffic: the alert is resolved (its endsAt moves to the past or it is gone).
    let start = Instant::now();
    let mut resolved = false;
    while start.elapsed() < Duration::from_secs(60) && !resolved {
        append(&log, &(0..10).map(|_| torchserve_line("am-model", 200, 5)).collect::<Vec<_>>());
        resolved = alertmanager_alerts(addr, "am-model").iter().all(|(_, ends)| {
            ends.parse::<chrono::DateTime<chrono::Utc>>().is_ok_and(|e| e <= chrono::Utc::now())
        });
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(resolved, "the alert was not resolved: {:?}", alertmanager_alerts(addr, "am-model"));
    weir.stop();
}

/// Starts an MLflow tracking server of the test's own (SQLite in `dir`); it takes about 20 s to
/// answer, so a test prepares its data before calling `mlflow_ready`.
fn start_mlflow(dir: &std::path::Path) -> (Peer, SocketAddr) {
    let mlflow = test_python().parent().unwrap().join("mlflow");
    assert!(mlflow.exists(), "{} is missing: run ./scripts/test.sh", mlflow.display());
    let port = free_port();
    let peer = Peer::start(
        dir,
        "mlflow",
        Command::new(&mlflow)
            .arg("server")
            .arg("--backend-store-uri")
            .arg(format!("sqlite:///{}", dir.join("mlflow.db").display()))
            .args(["--host", "127.0.0.1", "--port", &port.to_string(), "--workers", "1"]),
    );
    (peer, loopback(port))
}

/// Waits until the MLflow server at `addr` answers its health check.
fn mlflow_ready(peer: &Peer, addr: SocketAddr) {
    let ready =
        wait_for(Duration::from_secs(120), || matches!(http_get(addr, "/health"), Ok((200, _))));
    assert!(ready, "MLflow did not start:\n{}", peer.output());
}

#[test]
fn mlflow_receives_the_drift_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let (peer, addr) = start_mlflow(dir.path());

    // A reference profile, then 3 windows of predictions: the last two drifted.
    let train = dir.path().join("train.csv");
    let mut text = String::from("tenure,plan\n");
    for i in 0..2000 {
        text.push_str(&format!("{},{}\n", (i % 50) as f64, ["a", "b"][i % 2]));
    }
    std::fs::write(&train, text).unwrap();
    let reference = dir.path().join("ref.json");
    let ok = Command::new(weir_bin())
        .args(["profile", "--input"])
        .arg(&train)
        .args(["--model", "ml-model", "--out"])
        .arg(&reference)
        .status()
        .unwrap();
    assert!(ok.success());
    let log = dir.path().join("predictions.log");
    let lines: Vec<String> = (0..600)
        .map(|i| {
            let shift = if i >= 200 { 25.0 } else { 0.0 };
            format!(
                r#"{{"model":"ml-model","model_version":"1","request_id":{i},"features":{{"tenure":{},"plan":"{}"}},"prediction":"x"}}"#,
                (i % 50) as f64 + shift,
                ["a", "b"][i % 2]
            )
        })
        .collect();
    append(&log, &lines);

    mlflow_ready(&peer, addr);
    let weir = Weir::start(
        dir.path(),
        &format!(
            r#"
[sources.preds]
type = "file"
include = ["{{{{dir}}}}/predictions.log"]

[transforms.inference]
type = "parse_model_log"
inputs = ["preds"]
format = "json_prediction"

[transforms.drift]
type = "drift"
inputs = ["inference"]
references = ["{}"]
window.count = 200

[sinks.tracking]
type = "mlflow"
inputs = ["drift"]
endpoint = "http://{addr}"
experiment = "weir-it"
"#,
            reference.display()
        ),
    );
    // Read back: the run of ml-model 1 and its history of the dataset drift share.
    let history = || -> Option<Vec<serde_json::Value>> {
        let (_, body) =
            http_get(addr, "/api/2.0/mlflow/experiments/get-by-name?experiment_name=weir-it")
                .ok()?;
        let exp: serde_json::Value = serde_json::from_str(&dechunk(&body)).ok()?;
        let id = exp["experiment"]["experiment_id"].as_str()?.to_string();
        let (_, body) = http_post_json(
            addr,
            "/api/2.0/mlflow/runs/search",
            &format!(r#"{{"experiment_ids":["{id}"]}}"#),
        )
        .ok()?;
        let runs: serde_json::Value = serde_json::from_str(&body).ok()?;
        let run = &runs["runs"][0]["info"];
        let run_id = run["run_id"].as_str()?;
        assert_eq!(run["run_name"], "ml-model-1");
        let (_, body) = http_get(
            addr,
            &format!("/api/2.0/mlflow/metrics/get-history?run_id={run_id}&metric_key=drift.dataset.detected"),
        )
        .ok()?;
        let h: serde_json::Value = serde_json::from_str(&dechunk(&body)).ok()?;
        let metrics = h["metrics"].as_array()?.clone();
        (metrics.len() >= 3).then_some(metrics)
    };
    let mut got = None;
    let arrived = wait_for(Duration::from_secs(60), || {
        got = history();
        got.is_some()
    });
    assert!(
        arrived,
        "MLflow has no drift history; weir:\n{}\nmlflow:\n{}",
        weir.stderr(),
        peer.output()
    );
    let mut points: Vec<(i64, f64)> = got
        .unwrap()
        .iter()
        .map(|m| (m["step"].as_i64().unwrap_or(0), m["value"].as_f64().unwrap()))
        .collect();
    points.sort_by_key(|p| p.0);
    assert_eq!(
        points,
        vec![(0, 0.0), (1, 1.0), (2, 1.0)],
        "window 1 clean, windows 2 and 3 drifted"
    );
    weir.stop();
}

/// A one-route HTTP server on loopback that answers 200 and hands over every request body.
fn webhook_receiver() -> (SocketAddr, std::sync::mpsc::Receiver<serde_json::Value>) {
    use std::io::{BufRead, BufReader, Read};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut length = 0;
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
                if line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
                line.clear();
            }
            let mut body = vec![0; length];
            if reader.read_exact(&mut body).is_err() {
                continue;
            }
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            if let Ok(v) = serde_json::from_slice(&body)
                && tx.send(v).is_err()
            {
                return;
            }
        }
    });
    (addr, rx)
}

#[test]
fn the_webhook_sink_posts_firing_and_resolved_alerts() {
    let (hook, received) = webhook_receiver();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    append(&log, &(0..20).map(|_| torchserve_line("hook-model", 500, 5)).collect::<Vec<_>>());
    let weir = Weir::start(
        dir.path(),
        &format!(
            r#"
[sources.ts]
type = "file"
include = ["{{{{dir}}}}/access.log"]

[transforms.inference]
type = "parse_model_log"
inputs = ["ts"]
format = "torchserve_access"

[sinks.hook]
type = "webhook"
inputs = ["inference"]
endpoint = "http://{hook}/alerts"

[[sinks.hook.rules]]
name = "ModelErrorRate"
kind = "error_rate"
window_secs = 1
for_windows = 1
min_requests = 10
"#
        ),
    );
    let firing = received.recv_timeout(Duration::from_secs(30)).expect("no webhook call");
    assert_eq!(firing["status"], "firing", "{firing}");
    let alert = &firing["alerts"][0];
    assert_eq!(alert["labels"]["alertname"], "ModelErrorRate");
    assert_eq!(alert["labels"]["model"], "hook-model");
    assert_eq!(alert["labels"]["version"], "1.0");
    assert_eq!(alert["labels"]["severity"], "critical");
    assert!(
        alert["annotations"]["summary"].as_str().unwrap().contains("100.0% of 20 requests failed")
    );
    // No more traffic: the next window is healthy and resolves it.
    let resolved = received.recv_timeout(Duration::from_secs(30)).expect("no resolution");
    assert_eq!(resolved["status"], "resolved", "{resolved}");
    assert_eq!(resolved["alerts"][0]["labels"], alert["labels"]);
    weir.stop();
}

/// A drift report of `model` version 1 as the `drift` transform writes it, as one JSON line
/// (read back by `parse_json`).
fn drift_report_line(model: &str, drifted: bool) -> String {
    serde_json::json!({
        "event": {"kind": "metric", "action": "drift_window", "dataset": "weir.drift"},
        "model": {"name": model, "version": "1"},
        "drift": {
            "dataset": {"drifted": drifted, "share": if drifted { 1.0 } else { 0.0 }},
            "features": {"x": {"tested": true, "drifted": drifted, "score": 0.5, "psi": 0.4}},
        },
    })
    .to_string()
}

/// The `mlflow` sink reading report lines from `{{dir}}/reports.log`.
fn mlflow_pipeline(endpoint: &str, extra: &str) -> String {
    format!(
        r#"
shutdown_timeout_secs = 300

[sources.reports]
type = "file"
include = ["{{{{dir}}}}/reports.log"]
poll_interval_ms = 20

[transforms.json]
type = "parse_json"
inputs = ["reports"]

[sinks.tracking]
type = "mlflow"
inputs = ["json"]
endpoint = "{endpoint}"
experiment = "weir-it"
{extra}
"#
    )
}

/// An MLflow that cannot be reached does not hold weir's stop: the sink stops retrying when
/// shutdown begins (long before the 300 s shutdown timeout), and the report it could not
/// deliver is not acknowledged, so the source hands it out again after a restart.
#[test]
fn the_mlflow_sink_stops_retrying_at_shutdown_and_keeps_the_report() {
    let dir = tempfile::tempdir().unwrap();
    append(&dir.path().join("reports.log"), &[drift_report_line("m", true)]);
    let nobody = format!("http://127.0.0.1:{}", free_port());
    let backoff =
        "request.retry_initial_backoff_secs = 0.05\nrequest.retry_max_duration_secs = 0.2";
    let mut weir = Weir::start(dir.path(), &mlflow_pipeline(&nobody, backoff));
    let failures = || {
        weir.metric(
            "weir_sink_requests_total",
            &[("component_id", "tracking"), ("status", "error")],
        )
    };
    assert!(
        wait_for(Duration::from_secs(30), || failures() >= 3.0),
        "the sink is not retrying; stderr:\n{}",
        weir.stderr()
    );
    crate::support::signal(weir.child.id(), "TERM");
    // Were the sink still retrying, weir would wait for the 300 s shutdown timeout.
    let status = weir.wait(Duration::from_secs(60));
    assert!(status.success(), "{status}; stderr:\n{}", weir.stderr());
    assert!(weir.stderr().contains("giving up on MLflow"), "{}", weir.stderr());
    drop(weir);

    // Same source, same data directory: the report was not acknowledged, so it comes again.
    let again = Weir::start(
        dir.path(),
        r#"
[sources.reports]
type = "file"
include = ["{{dir}}/reports.log"]
poll_interval_ms = 20

[sinks.out]
type = "file"
inputs = ["reports"]
path = "{{dir}}/again.log"
encoding.codec = "text"
"#,
    );
    let out = dir.path().join("again.log");
    let arrived = wait_for(Duration::from_secs(30), || read_lines(&out).len() == 1);
    assert!(arrived, "the report was not read again; stderr:\n{}", again.stderr());
    assert!(read_lines(&out)[0].contains("drift_window"));
    assert!(again.stop().success());
}

/// The run id of `name` in experiment `weir-it` (active runs only), if it exists.
fn mlflow_run_id(addr: SocketAddr, name: &str) -> Option<String> {
    let (_, body) =
        http_get(addr, "/api/2.0/mlflow/experiments/get-by-name?experiment_name=weir-it").ok()?;
    let exp: serde_json::Value = serde_json::from_str(&dechunk(&body)).ok()?;
    let id = exp["experiment"]["experiment_id"].as_str()?.to_string();
    let filter = format!("tags.`mlflow.runName` = '{name}'");
    let query = serde_json::json!({"experiment_ids": [id], "filter": filter}).to_string();
    let (_, body) = http_post_json(addr, "/api/2.0/mlflow/runs/search", &query).ok()?;
    let runs: serde_json::Value = serde_json::from_str(&body).ok()?;
    runs["runs"][0]["info"]["run_id"].as_str().map(str::to_string)
}

/// How many points `run_id` has of `drift.dataset.detected`.
fn mlflow_points(addr: SocketAddr, run_id: &str) -> usize {
    let path = format!(
        "/api/2.0/mlflow/metrics/get-history?run_id={run_id}&metric_key=drift.dataset.detected"
    );
    let Ok((200, body)) = http_get(addr, &path) else { return 0 };
    let h: serde_json::Value = serde_json::from_str(&dechunk(&body)).unwrap_or_default();
    h["metrics"].as_array().map_or(0, Vec::len)
}

/// MLflow refuses to log into a deleted run (400, "must be in the 'active' state"): the reports
/// of that run, and only those, go to the dead-letter file, while the other model's reports
/// of the same batches are logged.
#[test]
fn mlflow_rejects_one_run_and_only_its_reports_are_dead_letters() {
    let dir = tempfile::tempdir().unwrap();
    let (peer, addr) = start_mlflow(dir.path());
    mlflow_ready(&peer, addr);

    let reports = dir.path().join("reports.log");
    append(&reports, &[drift_report_line("keep", true), drift_report_line("gone", true)]);
    let weir = Weir::start(dir.path(), &mlflow_pipeline(&format!("http://{addr}"), ""));
    let mut runs = None;
    let logged = wait_for(Duration::from_secs(60), || {
        runs = mlflow_run_id(addr, "keep-1").zip(mlflow_run_id(addr, "gone-1"));
        runs.as_ref()
            .is_some_and(|(k, g)| mlflow_points(addr, k) == 1 && mlflow_points(addr, g) == 1)
    });
    assert!(logged, "the first reports were not logged; weir:\n{}", weir.stderr());
    let (keep, gone) = runs.unwrap();
    let (status, body) = http_post_json(
        addr,
        "/api/2.0/mlflow/runs/delete",
        &serde_json::json!({"run_id": gone}).to_string(),
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");

    append(&reports, &[drift_report_line("keep", false), drift_report_line("gone", false)]);
    let letters = || -> Vec<serde_json::Value> {
        let Ok(files) = std::fs::read_dir(dir.path().join("data/dead_letter")) else {
            return Vec::new();
        };
        files
            .flatten()
            .flat_map(|f| read_lines(&f.path()))
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(&l).ok())
            .collect()
    };
    let settled = wait_for(Duration::from_secs(60), || {
        mlflow_points(addr, &keep) == 2 && !letters().is_empty()
    });
    assert!(settled, "keep has {} points; weir:\n{}", mlflow_points(addr, &keep), weir.stderr());
    let letters = letters();
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0]["error"]["type"], "mlflow_rejected");
    assert_eq!(letters[0]["weir"]["dead_letter"]["destination"], "gone-1");
    let original: serde_json::Value =
        serde_json::from_str(letters[0]["event"]["original"].as_str().unwrap()).unwrap();
    assert_eq!(original["model"]["name"], "gone");
    assert_eq!(original["drift"]["dataset"]["drifted"], false);
    assert_eq!(mlflow_points(addr, &gone), 1, "nothing more was logged into the deleted run");
    assert_eq!(
        weir.metric(
            "weir_sink_rejected_events_total",
            &[("component_id", "tracking"), ("reason", "mlflow_rejected")]
        ),
        1.0
    );
    assert!(weir.stop().success());
}
