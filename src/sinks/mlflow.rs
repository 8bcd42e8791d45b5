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
//! tagged `model.name`, `model.version`). Each [`DriftReport`] logs `drift.<feature>.score`,
//! `drift.<feature>.psi`, `drift.<feature>.detected` (0/1), `drift.dataset.share` and
//! `drift.dataset.detected`; each [`QualityReport`] logs `quality.accuracy`, `quality.mae`,
//! `quality.rmse`, `quality.label_coverage` and `quality.label_delay_seconds`. The step is the
//! window's number in the run, the timestamp the window's end. Other events are ignored
//! (acknowledged).
//!
//! Delivery goes through the request sinks' HTTP client (`sinks/util/http.rs`: `http://` or
//! `https://`, `tls.*`, `auth.*`, the environment's proxy settings) with their backoff
//! (`request.*`, `sinks/util/retry.rs`). A batch's reports are sent per run with
//! `runs/log-batch` (at most 1000 metrics a request, the API's limit), each report settled on
//! its own run's outcome: delivered; rejected (HTTP 4xx but 429) and handed with its
//! acknowledgement handles to the dead-letter destination, counted in
//! `weir_sink_rejected_events_total{reason="mlflow_rejected"}`; or, when a failure (connection,
//! 5xx, timeout) outlasts `request.retry_attempts` or happens once shutdown has begun, marked
//! errored, so the source reads it again after a restart. While it retries the sink holds its
//! input (backpressure).

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use rand::SeedableRng;
use rand::rngs::StdRng;
use reqwest::Method;
use reqwest::header::{CONTENT_TYPE, HeaderValue};
use serde::Deserialize;
use serde_json::json;
use tokio::time::Instant;

use super::util::driver::Item;
use super::util::http::{AuthConfig, HttpClient, HttpRequest, SendError, TlsConfig, check_url};
use super::util::metrics::SinkMetrics;
use super::util::retry::{Backoff, SerialRequestConfig};
use crate::component::{ShutdownSignal, SinkComponent, SinkContext};
use crate::dead_letter::{Rejected, original_of};
use crate::error::{BuildError, ComponentError, ConfigIssue, Task};
use crate::event::{Event, EventStatus, batch_size};
use crate::internal_events::RateLimit;
use crate::monitoring::report::{DriftReport, ModelKey, QualityReport};

/// Metrics per `log-batch` request (MLflow's limit).
const MAX_METRICS_PER_REQUEST: usize = 1000;
/// The rejection reason of events MLflow refused.
const REJECTED: &str = "mlflow_rejected";

/// `[sinks.<id>] type = "mlflow"`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MlflowConfig {
    /// The tracking server, e.g. `http://127.0.0.1:5000`.
    pub endpoint: String,
    /// The experiment the runs belong to.
    #[serde(default = "default_experiment")]
    pub experiment: String,
    /// Timeout and backoff of the requests.
    #[serde(default)]
    pub request: SerialRequestConfig,
    /// Credentials sent with every request (MLflow's basic auth, or a bearer token for a
    /// managed server); none by default.
    pub auth: Option<AuthConfig>,
    /// TLS settings for an `https` endpoint; by default the system's roots are trusted.
    pub tls: Option<TlsConfig>,
}

fn default_experiment() -> String {
    "weir-monitoring".into()
}

impl SinkComponent for MlflowConfig {
    /// Nothing compiled: the HTTP client takes the settings as they are.
    type Checked = ();

    fn check(&self) -> Result<(), Vec<ConfigIssue>> {
        let mut issues = Vec::new();
        if let Err(e) = check_url(&self.endpoint) {
            issues.push(ConfigIssue::field("endpoint", e.to_string()));
        }
        if self.experiment.trim().is_empty() {
            issues.push(ConfigIssue::field("experiment", "must not be empty"));
        }
        issues.extend(self.request.check());
        issues.extend(self.auth.iter().flat_map(AuthConfig::check));
        issues.extend(self.tls.iter().flat_map(TlsConfig::check));
        if issues.is_empty() { Ok(()) } else { Err(issues) }
    }

    fn build(&self, (): (), cx: SinkContext) -> Result<Task, BuildError> {
        let http = HttpClient::new(
            vec![self.endpoint.clone()],
            self.tls.as_ref(),
            self.auth.as_ref(),
            self.request.timeout(),
        )
        .map_err(|message| BuildError::Client { what: "HTTP client", message })?;
        let client = Client {
            http,
            metrics: SinkMetrics::new(&cx.metrics),
            experiment: self.experiment.clone(),
            experiment_id: None,
            runs: HashMap::new(),
        };
        Ok(Box::pin(run(cx, client, self.request.backoff())))
    }
}

/// A report waiting for its run's outcome: its metrics, the event (for its dead letter) and
/// the event's acknowledgement handles (errored if dropped unsettled, as at an abort).
struct Pending {
    metrics: Vec<serde_json::Value>,
    event: Event,
    handles: Item<()>,
}

async fn run(
    mut cx: SinkContext,
    mut client: Client,
    backoff: Backoff,
) -> Result<(), ComponentError> {
    let out = cx.metrics.output("_default");
    let exhausted = cx.metrics.error_counter(
        crate::metrics::error_type::RETRIES_EXHAUSTED,
        crate::metrics::Stage::Sending,
    );
    let mut retry = Retry { backoff, rng: StdRng::from_os_rng(), log: RateLimit::default() };
    while let Some(events) = cx.input.recv().await {
        cx.metrics.received(events.len(), batch_size(&events));
        // Each report is one step of its run, in arrival order; other events are dropped
        // here, which acknowledges them.
        let mut by_run: BTreeMap<ModelKey, Vec<Pending>> = BTreeMap::new();
        for mut event in events {
            if let Some((key, metrics)) = metrics_of(&event) {
                let handles = Item::new((), 0, &mut event);
                by_run.entry(key).or_default().push(Pending { metrics, event, handles });
            }
        }
        for (key, reports) in by_run {
            let result = {
                let steps: Vec<&[serde_json::Value]> =
                    reports.iter().map(|r| r.metrics.as_slice()).collect();
                client.log_retrying(&key, &steps, &mut retry, &cx.shutdown, &cx.id).await
            };
            match result {
                Ok(()) => {
                    out.sent(reports.len(), 0);
                    for r in reports {
                        r.handles.finish(EventStatus::Delivered);
                    }
                }
                Err(Failure::Rejected(why)) => {
                    client.metrics.rejected(REJECTED, reports.len());
                    tracing::error!(component = %cx.id, model = %key.name, version = %key.version,
                        error = %why, count = reports.len(),
                        "MLflow rejected the metrics; the reports go to the dead-letter destination");
                    let dead = reports
                        .into_iter()
                        .map(|mut r| Rejected {
                            finalizers: r.handles.take_finalizers(),
                            original: original_of(&r.event),
                            destination: Some(run_name(&key)),
                            reason: REJECTED.to_string(),
                            detail: why.clone(),
                        })
                        .collect();
                    cx.dead_letter.send(dead).await;
                }
                Err(Failure::Retry(why)) => {
                    // Dropping the reports' handles unsettled marks them errored.
                    exhausted.inc();
                    tracing::error!(component = %cx.id, model = %key.name, error = %why,
                        count = reports.len(),
                        "giving up on MLflow (retries exhausted or shutting down); these \
                         reports are not delivered and will be read again after a restart");
                }
            }
        }
    }
    Ok(())
}

enum Failure {
    Retry(String),
    Rejected(String),
}

/// The backoff of one sink and what its retries share.
struct Retry {
    backoff: Backoff,
    rng: StdRng,
    log: RateLimit,
}

struct Client {
    http: HttpClient,
    metrics: SinkMetrics,
    experiment: String,
    experiment_id: Option<String>,
    /// Run id and the next step, per model and version.
    runs: HashMap<ModelKey, (String, i64)>,
}

fn run_name(key: &ModelKey) -> String {
    if key.version.is_empty() { key.name.clone() } else { format!("{}-{}", key.name, key.version) }
}

impl Client {
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<serde_json::Value, Failure> {
        let mut req =
            HttpRequest { method, path: path.to_string(), headers: Vec::new(), body: Bytes::new() };
        if let Some(body) = body {
            req.headers.push((CONTENT_TYPE, HeaderValue::from_static("application/json")));
            req.body = Bytes::from(serde_json::to_vec(&body).unwrap_or_default());
        }
        let started = Instant::now();
        let resp = match self.http.send(self.http.endpoints.pick(), &req).await {
            Ok(resp) => resp,
            Err(e) => {
                self.metrics.request(if matches!(e, SendError::Timeout) {
                    "timeout"
                } else {
                    "error"
                });
                return Err(Failure::Retry(format!("{path}: {e}")));
            }
        };
        self.metrics.request(&resp.status.to_string());
        self.metrics.latency.observe(started.elapsed().as_secs_f64());
        match resp.status {
            200..=299 => Ok(serde_json::from_slice(&resp.body).unwrap_or(serde_json::Value::Null)),
            status @ 400..=499 if status != 429 => Err(Failure::Rejected(format!(
                "{path}: HTTP {status}: {}",
                String::from_utf8_lossy(&resp.body)
            ))),
            status => Err(Failure::Retry(format!("{path}: HTTP {status}"))),
        }
    }

    /// [`Self::log`], retried after failures with the backoff; gives up when the retries
    /// are exhausted or once shutdown has begun, so a dead MLflow never holds weir's stop.
    async fn log_retrying(
        &mut self,
        key: &ModelKey,
        reports: &[&[serde_json::Value]],
        retry: &mut Retry,
        shutdown: &ShutdownSignal,
        id: &str,
    ) -> Result<(), Failure> {
        let mut retries: u32 = 0;
        loop {
            let why = match self.log(key, reports).await {
                Err(Failure::Retry(why)) => why,
                done => return done,
            };
            if shutdown.is_cancelled() || !retry.backoff.allows(u64::from(retries)) {
                return Err(Failure::Retry(why));
            }
            let delay = retry.backoff.delay(retries, &mut retry.rng);
            retries = retries.saturating_add(1);
            self.metrics.retries.inc();
            if let Some(suppressed) = retry.log.allow() {
                tracing::warn!(component = %id, error = %why, retry = retries,
                    delay_ms = delay.as_millis() as u64, suppressed, "cannot reach MLflow; retrying");
            }
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = shutdown.cancelled() => return Err(Failure::Retry(why)),
            }
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

    async fn run(&mut self, key: &ModelKey) -> Result<(String, i64), Failure> {
        if let Some(r) = self.runs.get(key) {
            return Ok(r.clone());
        }
        let (model, version) = (&key.name, &key.version);
        let experiment_id = self.experiment_id().await?;
        let run_name = run_name(key);
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
        self.runs.insert(key.clone(), (run_id.clone(), next_step));
        Ok((run_id, next_step))
    }

    /// Logs `reports` (each one step) into the run of `key`.
    async fn log(
        &mut self,
        key: &ModelKey,
        reports: &[&[serde_json::Value]],
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
            let body = json!({"run_id": run_id, "metrics": chunk});
            let sent = self.call(Method::POST, "/api/2.0/mlflow/runs/log-batch", Some(body)).await;
            if let Err(Failure::Rejected(_)) = &sent {
                // The run may have been deleted or closed: look it up again next time.
                self.runs.remove(key);
            }
            sent?;
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

/// The run key and the metrics of a drift or quality report; `None` for other events.
fn metrics_of(e: &Event) -> Option<(ModelKey, Vec<serde_json::Value>)> {
    let mut metrics = Vec::new();
    let mut put = |k: String, v: Option<f64>, at: i64| {
        if let Some(v) = v.filter(|v| v.is_finite()) {
            metrics.push(json!({"key": metric_key(&k), "value": v, "timestamp": at}));
        }
    };
    let flag = |b: bool| Some(f64::from(u8::from(b)));
    let millis = |t: Option<chrono::DateTime<chrono::Utc>>| {
        t.unwrap_or_else(chrono::Utc::now).timestamp_millis()
    };
    let key = if let Some(r) = DriftReport::from_event(e) {
        let at = millis(r.window_end);
        put("drift.dataset.share".into(), r.share, at);
        put("drift.dataset.detected".into(), flag(r.dataset_drifted), at);
        for f in r.features.iter().filter(|f| f.tested) {
            put(format!("drift.{}.score", f.name), f.score, at);
            put(format!("drift.{}.psi", f.name), f.psi, at);
            put(format!("drift.{}.detected", f.name), flag(f.drifted), at);
        }
        r.model
    } else {
        let q = QualityReport::from_event(e)?;
        let at = millis(q.window_end);
        put("quality.accuracy".into(), q.accuracy, at);
        put("quality.mae".into(), q.mae, at);
        put("quality.rmse".into(), q.rmse, at);
        put("quality.label_coverage".into(), q.label_coverage, at);
        put("quality.label_delay_seconds".into(), q.label_delay_seconds, at);
        q.model
    };
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
            crate::event::Value::Timestamp(chrono::DateTime::from_timestamp(1000, 0).unwrap()),
        );
        let (key, m) = metrics_of(&e).unwrap();
        assert_eq!(key, ModelKey { name: "churn".into(), version: "3".into() });
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
