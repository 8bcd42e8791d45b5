//! `mlflow`: records drift scores and windowed quality metrics into MLflow runs, through
//! MLflow's REST tracking API (`/api/2.0/mlflow/...`), so a model's performance in production
//! sits beside the experiments that produced it.
//!
//! ```toml
//! [sinks.tracking]
//! type = "mlflow"
//! inputs = ["drift", "quality"]
//! endpoint = "http://127.0.0.1:5000"
//! experiment = "production-monitoring"     # created when missing
//! ```
//!
//! One run per model and version, named `<model>-<version>` (found by name, else created,
//! tagged `model.name`, `model.version`). Each report of the `drift` transform logs
//! `drift.<feature>.score`, `drift.<feature>.psi`, `drift.<feature>.detected` (0/1),
//! `drift.dataset.share` and `drift.dataset.detected`; each report of the `accuracy` transform
//! logs `quality.accuracy`, `quality.mae`, `quality.rmse`, `quality.label_coverage` and
//! `quality.label_delay_seconds`. The step is the window's number in the run, the timestamp
//! the window's end. Other events are ignored (acknowledged).
//!
//! Delivery: a batch's metrics are sent with `runs/log-batch` (at most 1000 per request, the
//! API's limit). A failure (connection, 5xx) is retried with a growing pause, holding the
//! input (backpressure); a rejection (4xx) marks the batch's events `Rejected`, counted and
//! logged. Only plain `http://` for now (see `alerting::http`).

use std::collections::HashMap;
use std::time::Duration;

use hyper::Method;
use serde::Deserialize;
use serde_json::json;
use vrl::value::Value;

use super::alerting::http::Endpoint;
use crate::config::ConfigIssue;
use crate::event::{Event, EventStatus, batch_size};
use crate::topology::{SinkContext, Task};

/// Metrics per `log-batch` request (MLflow's limit).
const MAX_METRICS_PER_REQUEST: usize = 1000;

/// `[sinks.<id>] type = "mlflow"`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MlflowConfig {
    /// The tracking server, e.g. `http://127.0.0.1:5000`.
    pub endpoint: String,
    /// The experiment the runs belong to.
    #[serde(default = "default_experiment")]
    pub experiment: String,
    #[serde(default = "default_timeout")]
    pub request_timeout_secs: u64,
}

fn default_experiment() -> String {
    "weir-monitoring".into()
}
fn default_timeout() -> u64 {
    30
}

impl MlflowConfig {
    pub fn check(&self) -> Vec<ConfigIssue> {
        let mut issues = Vec::new();
        if let Err(e) = Endpoint::parse(&self.endpoint) {
            issues.push(ConfigIssue::field("endpoint", e));
        }
        if self.experiment.trim().is_empty() {
            issues.push(ConfigIssue::field("experiment", "must not be empty"));
        }
        issues
    }

    pub fn build(&self, mut cx: SinkContext) -> Result<Task, String> {
        let endpoint = Endpoint::parse(&self.endpoint)?;
        let experiment = self.experiment.clone();
        let timeout = Duration::from_secs(self.request_timeout_secs);
        Ok(Box::pin(async move {
            let mut client =
                Client { endpoint, timeout, experiment, experiment_id: None, runs: HashMap::new() };
            let out = cx.metrics.output("_default");
            let rejected = cx.metrics.error_counter("mlflow_rejected", "sending");
            let failed = cx.metrics.error_counter("mlflow_request_failed", "sending");
            while let Some(events) = cx.input.recv().await {
                cx.metrics.received(events.len(), batch_size(&events));
                // Each report is one step of its run, in arrival order.
                let mut by_run: HashMap<(String, String), Vec<Vec<serde_json::Value>>> =
                    HashMap::new();
                for e in &events {
                    if let Some((key, metrics)) = metrics_of(e) {
                        by_run.entry(key).or_default().push(metrics);
                    }
                }
                let mut pause = Duration::from_millis(500);
                'runs: for (key, metrics) in by_run {
                    loop {
                        match client.log(&key, &metrics).await {
                            Ok(()) => {
                                out.sent(metrics.len(), 0);
                                continue 'runs;
                            }
                            Err(Failure::Rejected(why)) => {
                                for e in &events {
                                    e.update_status(EventStatus::Rejected);
                                }
                                rejected.inc();
                                tracing::error!(component = %cx.id, model = %key.0, error = %why,
                                    "MLflow rejected the metrics; they are dropped");
                                continue 'runs;
                            }
                            Err(Failure::Retry(why)) => {
                                failed.inc();
                                tracing::warn!(component = %cx.id, error = %why, retry_in = ?pause,
                                    "cannot reach MLflow; retrying");
                                tokio::time::sleep(pause).await;
                                pause = (pause * 2).min(Duration::from_secs(30));
                            }
                        }
                    }
                }
            }
            Ok(())
        }))
    }
}

enum Failure {
    Retry(String),
    Rejected(String),
}

struct Client {
    endpoint: Endpoint,
    timeout: Duration,
    experiment: String,
    experiment_id: Option<String>,
    /// Run id and the next step, per model and version.
    runs: HashMap<(String, String), (String, i64)>,
}

impl Client {
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<serde_json::Value, Failure> {
        let body = body.map(|b| serde_json::to_vec(&b).unwrap_or_default());
        match self.endpoint.request(method, path, body, self.timeout).await {
            Ok((status, body)) if (200..300).contains(&status) => {
                Ok(serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null))
            }
            Ok((status, body)) if (400..500).contains(&status) && status != 429 => {
                Err(Failure::Rejected(format!(
                    "{path}: HTTP {status}: {}",
                    String::from_utf8_lossy(&body)
                )))
            }
            Ok((status, _)) => Err(Failure::Retry(format!("{path}: HTTP {status}"))),
            Err(e) => Err(Failure::Retry(e)),
        }
    }

    async fn experiment_id(&mut self) -> Result<String, Failure> {
        if let Some(id) = &self.experiment_id {
            return Ok(id.clone());
        }
        let name: String = url_encode(&self.experiment);
        let found = self
            .call(
                Method::GET,
                &format!("/api/2.0/mlflow/experiments/get-by-name?experiment_name={name}"),
                None,
            )
            .await;
        let id = match found {
            Ok(v) => v["experiment"]["experiment_id"].as_str().map(str::to_string),
            // 404 RESOURCE_DOES_NOT_EXIST: create it.
            Err(Failure::Rejected(_)) => None,
            Err(e) => return Err(e),
        };
        let id = match id {
            Some(id) => id,
            None => {
                let v = self
                    .call(
                        Method::POST,
                        "/api/2.0/mlflow/experiments/create",
                        Some(json!({"name": self.experiment})),
                    )
                    .await?;
                v["experiment_id"]
                    .as_str()
                    .map(str::to_string)
                    .ok_or_else(|| Failure::Retry(format!("experiments/create answered {v}")))?
            }
        };
        self.experiment_id = Some(id.clone());
        Ok(id)
    }

    async fn run(&mut self, (model, version): &(String, String)) -> Result<(String, i64), Failure> {
        if let Some(r) = self.runs.get(&(model.clone(), version.clone())) {
            return Ok(r.clone());
        }
        let experiment_id = self.experiment_id().await?;
        let run_name =
            if version.is_empty() { model.clone() } else { format!("{model}-{version}") };
        let search = self
            .call(
                Method::POST,
                "/api/2.0/mlflow/runs/search",
                Some(json!({
                    "experiment_ids": [experiment_id],
                    "filter": format!("tags.`mlflow.runName` = '{}'", run_name.replace('\'', "")),
                    "max_results": 1,
                })),
            )
            .await?;
        let found = &search["runs"][0];
        // Steps continue after those already logged, so a restart does not overwrite history.
        let next_step = found["data"]["metrics"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| m["step"].as_i64())
            .max()
            .map_or(0, |s| s + 1);
        let run_id = match found["info"]["run_id"].as_str() {
            Some(id) => id.to_string(),
            None => {
                let v = self
                    .call(
                        Method::POST,
                        "/api/2.0/mlflow/runs/create",
                        Some(json!({
                            "experiment_id": experiment_id,
                            "run_name": run_name,
                            "start_time": chrono::Utc::now().timestamp_millis(),
                            "tags": [
                                {"key": "model.name", "value": model},
                                {"key": "model.version", "value": version},
                                {"key": "mlflow.source.name", "value": "weir"},
                            ],
                        })),
                    )
                    .await?;
                v["run"]["info"]["run_id"]
                    .as_str()
                    .map(str::to_string)
                    .ok_or_else(|| Failure::Retry(format!("runs/create answered {v}")))?
            }
        };
        self.runs.insert((model.clone(), version.clone()), (run_id.clone(), next_step));
        Ok((run_id, next_step))
    }

    /// Logs `reports` (each one step) into the run of `key`.
    async fn log(
        &mut self,
        key: &(String, String),
        reports: &[Vec<serde_json::Value>],
    ) -> Result<(), Failure> {
        let (run_id, step) = self.run(key).await?;
        let with_step: Vec<serde_json::Value> = reports
            .iter()
            .enumerate()
            .flat_map(|(i, metrics)| {
                metrics.iter().map(move |m| {
                    let mut m = m.clone();
                    m["step"] = json!(step + i as i64);
                    m
                })
            })
            .collect();
        for chunk in with_step.chunks(MAX_METRICS_PER_REQUEST) {
            self.call(
                Method::POST,
                "/api/2.0/mlflow/runs/log-batch",
                Some(json!({"run_id": run_id, "metrics": chunk})),
            )
            .await?;
        }
        if let Some(r) = self.runs.get_mut(key) {
            r.1 += reports.len() as i64;
        }
        Ok(())
    }
}

/// Percent-encodes a query value.
fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// MLflow metric keys allow letters, digits, `_ - . / ` and space; anything else becomes `_`.
fn metric_key(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_alphanumeric() || "_-./ ".contains(c) { c } else { '_' })
        .collect()
}

fn num(v: Option<&Value>) -> Option<f64> {
    match v? {
        Value::Float(f) => Some(f.into_inner()).filter(|f| f.is_finite()),
        Value::Integer(i) => Some(*i as f64),
        Value::Boolean(b) => Some(f64::from(u8::from(*b))),
        _ => None,
    }
}

/// The run key and the metrics of a drift or quality report; `None` for other events.
fn metrics_of(e: &Event) -> Option<((String, String), Vec<serde_json::Value>)> {
    let action = e.get_top("event")?.as_object()?.get("action")?;
    let model = e.get_top("model")?.as_object()?;
    let text = |v: Option<&Value>| match v {
        Some(v) => v.to_str_lossy().map(|s| s.into_owned()).unwrap_or_default(),
        None => String::new(),
    };
    let key = (text(model.get("name")), text(model.get("version")));
    let ts = e.timestamp().unwrap_or_else(chrono::Utc::now).timestamp_millis();
    let mut metrics = Vec::new();
    let mut put = |k: String, v: Option<f64>| {
        if let Some(v) = v {
            metrics.push(json!({"key": metric_key(&k), "value": v, "timestamp": ts}));
        }
    };
    match action.to_str_lossy()?.as_ref() {
        "drift_window" => {
            let drift = e.get_top("drift")?.as_object()?;
            if let Some(d) = drift.get("dataset").and_then(|d| d.as_object()) {
                put("drift.dataset.share".into(), num(d.get("share")));
                put("drift.dataset.detected".into(), num(d.get("drifted")));
            }
            for (name, f) in drift.get("features").and_then(|f| f.as_object()).into_iter().flatten()
            {
                let Some(f) = f.as_object() else { continue };
                if f.get("tested") != Some(&Value::Boolean(true)) {
                    continue;
                }
                put(format!("drift.{name}.score"), num(f.get("score")));
                put(format!("drift.{name}.psi"), num(f.get("psi")));
                put(format!("drift.{name}.detected"), num(f.get("drifted")));
            }
        }
        "quality_window" => {
            let q = e.get_top("quality")?.as_object()?;
            for k in ["accuracy", "mae", "rmse", "label_coverage", "label_delay_seconds"] {
                put(format!("quality.{k}"), num(q.get(k)));
            }
        }
        _ => return None,
    }
    (!metrics.is_empty()).then_some((key, metrics))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drift_reports_become_metrics() {
        let mut e = Event::from_value(crate::event::Value::from(&serde_json::json!({
            "event": {"action": "drift_window"},
            "model": {"name": "churn", "version": "3"},
            "drift": {
                "dataset": {"share": 0.5, "drifted": true},
                "features": {
                    "tenure months": {"tested": true, "score": 0.2, "psi": 0.3, "drifted": true},
                    "plan": {"tested": false, "drifted": false},
                },
            },
        })));
        e.insert_key(
            "@timestamp",
            Value::Timestamp(chrono::DateTime::from_timestamp(1000, 0).unwrap()),
        );
        let (key, m) = metrics_of(&e).unwrap();
        assert_eq!(key, ("churn".to_string(), "3".to_string()));
        let keys: Vec<&str> = m.iter().map(|m| m["key"].as_str().unwrap()).collect();
        assert_eq!(
            keys,
            [
                "drift.dataset.share",
                "drift.dataset.detected",
                "drift.tenure months.score",
                "drift.tenure months.psi",
                "drift.tenure months.detected"
            ]
        );
        assert_eq!(m[0]["timestamp"], 1_000_000);
        assert!(metrics_of(&Event::from_message("x")).is_none());
        assert_eq!(url_encode("a b/c"), "a%20b%2Fc");
        assert_eq!(metric_key("f(x)=1"), "f_x__1");
    }
}
