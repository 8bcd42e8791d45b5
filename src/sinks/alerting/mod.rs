//! Alerts on model health: the `alertmanager` sink (Alertmanager API v2, `POST /api/v2/alerts`)
//! and the generic `webhook` sink (a JSON body shaped like Alertmanager's own webhook), both
//! driven by the same alert rules.
//!
//! ```toml
//! [sinks.alerts]
//! type = "alertmanager"                 # or "webhook", endpoint = the URL to POST to
//! inputs = ["drift", "inference"]
//! endpoint = "http://127.0.0.1:9093"
//! resend_interval_secs = 60             # firing alerts are sent again this often
//! labels = { team = "ml-platform" }     # added to every alert
//!
//! [[sinks.alerts.rules]]
//! name = "ModelDataDrift"               # the alert's `alertname`
//! kind = "drift"                        # dataset drift of a model (per feature: per_feature = true)
//! for_windows = 2                       # hysteresis: fires after 2 drifted windows in a row,
//!                                       # resolves after 2 clean ones
//!
//! [[sinks.alerts.rules]]
//! name = "ModelErrorRate"
//! kind = "error_rate"                   # failed / all requests per model and version
//! window_secs = 60
//! warning = 0.05
//! critical = 0.2
//! min_requests = 20
//!
//! [[sinks.alerts.rules]]
//! name = "ModelNoData"
//! kind = "no_data"                      # no event from a model for after_secs
//! after_secs = 300
//! models = ["churn-xgb"]                # expected from the start (others once seen)
//! ```
//!
//! Rules read the inference event schema of `parse_model_log` and the reports of the `drift`
//! transform. Each alert has a stable label set: `alertname`, `model`, `version` (and
//! `feature`), `severity` and the sink's `labels`, so Alertmanager deduplicates re-sends.
//! Severity comes in bands: a drift alert is `critical` when a drifted feature's PSI reaches
//! 0.25, else `warning`; an error-rate alert is `critical` at `critical`, else `warning`. A
//! change of band resolves the alert of the old band and fires the new one. Firing alerts carry
//! `endsAt` = now + 4 × `resend_interval_secs` (as Prometheus does), so they lapse on their own
//! if weir stops; resolution sends `endsAt` = now.
//!
//! Delivery goes through the request sinks' HTTP client (`sinks/util/http.rs`: `http://` or
//! `https://`, `tls.*`, `auth.*`, the environment's proxy settings) with their backoff
//! (`request.*`, `sinks/util/retry.rs`). Events are acknowledged once the rules have read
//! them: a notification is not an event, so the per-event settling and dead letters of the
//! request driver do not apply. Notifications that cannot be delivered are kept and sent again
//! after the backoff, at most [`MAX_QUEUED`] of them (older ones are dropped, counted and
//! logged at ERROR); a rejected payload (HTTP 4xx but 429) or one that exhausted
//! `request.retry_attempts` is dropped, counted and logged. Rule state is bounded by
//! [`MAX_ALERT_KEYS`] model/version keys per sink.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use rand::SeedableRng;
use rand::rngs::StdRng;
use reqwest::header::{CONTENT_TYPE, HeaderValue};
use serde::Deserialize;
use tokio::time::Instant;
use vrl::value::Value;

use super::util::http::{AuthConfig, HttpClient, HttpRequest, TlsConfig, check_url};
use super::util::metrics::SinkMetrics;
use super::util::retry::SerialRequestConfig;
use crate::component::{SinkComponent, SinkContext};
use crate::error::{BuildError, ConfigIssue, Task};
use crate::event::{Event, batch_size};
use crate::internal_events::RateLimit;
use crate::monitoring::report::{DriftReport, PsiLevel};

/// Notifications kept for retry at most.
pub const MAX_QUEUED: usize = 1000;
/// Model/version keys a sink tracks at most.
pub const MAX_ALERT_KEYS: usize = 10_000;

/// The rules and delivery options both alert sinks share.
#[derive(Debug, Clone)]
pub struct AlertOptions {
    pub rules: Vec<RuleConfig>,
    pub labels: BTreeMap<String, String>,
    pub resend_interval_secs: u64,
    pub evaluation_interval_secs: u64,
}

fn default_resend() -> u64 {
    60
}
fn default_tick() -> u64 {
    1
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleKind {
    Drift,
    ErrorRate,
    NoData,
}

/// One alert rule.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// The `alertname`.
    pub name: String,
    /// `drift` (the `drift` transform's reports), `error_rate` (failed / all requests per
    /// model and version) or `no_data` (a model silent for `after_secs`). Required.
    pub kind: RuleKind,
    /// Consecutive bad windows to fire, and good ones to resolve. Default 2.
    #[serde(default = "default_for_windows")]
    pub for_windows: u32,
    /// `drift`: one alert per drifted feature instead of one per model.
    #[serde(default)]
    pub per_feature: bool,
    /// `error_rate`: the rate (0 to 1) at which the alert fires as `warning`.
    #[serde(default = "default_warning")]
    pub warning: f64,
    /// `error_rate`: the rate (0 to 1) at which the alert is `critical` instead of `warning`.
    #[serde(default = "default_critical")]
    pub critical: f64,
    /// `error_rate`: the evaluation window.
    #[serde(default = "default_window")]
    pub window_secs: u64,
    /// `error_rate`: fewer requests in a window count as healthy.
    #[serde(default = "default_min_requests")]
    pub min_requests: u64,
    /// `no_data`: silence that fires the alert.
    #[serde(default = "default_after")]
    pub after_secs: u64,
    /// `no_data`: models expected from the start, `name` or `name:version`.
    #[serde(default)]
    pub models: Vec<String>,
    /// `no_data`: the severity (default `warning`).
    #[serde(default)]
    pub severity: Option<String>,
    /// Extra labels of this rule's alerts.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

fn default_for_windows() -> u32 {
    2
}
fn default_warning() -> f64 {
    0.05
}
fn default_critical() -> f64 {
    0.2
}
fn default_window() -> u64 {
    60
}
fn default_min_requests() -> u64 {
    20
}
fn default_after() -> u64 {
    300
}

impl AlertOptions {
    pub fn check(&self) -> Vec<ConfigIssue> {
        let mut issues = Vec::new();
        if self.rules.is_empty() {
            issues.push(ConfigIssue::field("rules", "give at least one [[rules]] entry"));
        }
        for r in &self.rules {
            let mut bad = |m: String| {
                issues.push(ConfigIssue::field("rules", format!("rule `{}`: {m}", r.name)))
            };
            if r.name.is_empty() {
                bad("`name` (the alertname) is empty".into());
            }
            if r.for_windows == 0 {
                bad("`for_windows` must be at least 1".into());
            }
            if r.kind == RuleKind::ErrorRate
                && !(0.0 < r.warning && r.warning <= r.critical && r.critical <= 1.0)
            {
                bad("need 0 < warning <= critical <= 1".into());
            }
            if r.window_secs == 0 || r.after_secs == 0 {
                bad("`window_secs` and `after_secs` must be at least 1".into());
            }
        }
        if self.resend_interval_secs == 0 || self.evaluation_interval_secs == 0 {
            issues.push(ConfigIssue::general(
                "resend_interval_secs and evaluation_interval_secs must be at least 1",
            ));
        }
        issues
    }
}

/// One alert as sent.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub resolved: bool,
}

impl Alert {
    /// Alertmanager API v2's `postableAlert`, plus `status` for webhooks.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "status": if self.resolved { "resolved" } else { "firing" },
            "labels": self.labels,
            "annotations": self.annotations,
            "startsAt": self.starts_at.to_rfc3339_opts(SecondsFormat::Millis, true),
            "endsAt": self.ends_at.to_rfc3339_opts(SecondsFormat::Millis, true),
            "generatorURL": "",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Severity {
    Warning,
    Critical,
}

impl Severity {
    fn name(self) -> &'static str {
        match self {
            Self::Warning => "warning",
            Self::Critical => "critical",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Key {
    rule: usize,
    model: String,
    version: String,
    feature: Option<String>,
}

#[derive(Default)]
struct State {
    bad: u32,
    good: u32,
    firing: Option<Firing>,
}

struct Firing {
    severity: Severity,
    started: DateTime<Utc>,
    last_sent: DateTime<Utc>,
    summary: String,
}

#[derive(Default)]
struct Requests {
    total: u64,
    failed: u64,
}

/// The rules' state: reads events, decides what to send.
pub struct AlertEngine {
    rules: Vec<RuleConfig>,
    labels: BTreeMap<String, String>,
    resend: chrono::Duration,
    states: HashMap<Key, State>,
    requests: HashMap<(usize, String, String), Requests>,
    window_started: HashMap<usize, DateTime<Utc>>,
    last_seen: HashMap<(String, String), DateTime<Utc>>,
    out: Vec<Alert>,
    refused_keys: u64,
}

fn text(event: &Event, path: &[&str]) -> Option<String> {
    let (first, rest) = path.split_first()?;
    let mut v = event.get_top(first)?;
    for seg in rest {
        v = v.as_object()?.get(*seg)?;
    }
    match v {
        Value::Bytes(_) | Value::String(_) => v.to_str_lossy().map(|s| s.into_owned()),
        Value::Null => None,
        other => Some(other.to_string_lossy().into_owned()),
    }
}

impl AlertEngine {
    pub fn new(options: &AlertOptions, now: DateTime<Utc>) -> Self {
        let mut engine = Self {
            rules: options.rules.clone(),
            labels: options.labels.clone(),
            resend: chrono::Duration::seconds(options.resend_interval_secs as i64),
            states: HashMap::new(),
            requests: HashMap::new(),
            window_started: HashMap::new(),
            last_seen: HashMap::new(),
            out: Vec::new(),
            refused_keys: 0,
        };
        for rule in &engine.rules {
            for m in &rule.models {
                let (name, version) = m.split_once(':').unwrap_or((m, ""));
                engine.last_seen.insert((name.to_string(), version.to_string()), now);
            }
        }
        engine
    }

    /// Notifications decided since the last call.
    pub fn take(&mut self) -> Vec<Alert> {
        std::mem::take(&mut self.out)
    }

    /// Keys the engine refused to track (over [`MAX_ALERT_KEYS`]).
    pub fn refused_keys(&self) -> u64 {
        self.refused_keys
    }

    fn alert(&self, key: &Key, f: &Firing, resolved: bool, now: DateTime<Utc>) -> Alert {
        let rule = &self.rules[key.rule];
        let mut labels = self.labels.clone();
        labels.extend(rule.labels.clone());
        labels.insert("alertname".into(), rule.name.clone());
        labels.insert("model".into(), key.model.clone());
        labels.insert("version".into(), key.version.clone());
        if let Some(feature) = &key.feature {
            labels.insert("feature".into(), feature.clone());
        }
        labels.insert("severity".into(), f.severity.name().into());
        let annotations = BTreeMap::from([("summary".to_string(), f.summary.clone())]);
        let ends_at = if resolved { now } else { now + self.resend * 4 };
        Alert { labels, annotations, starts_at: f.started, ends_at, resolved }
    }

    /// One window's verdict for a key: `Some(severity)` when bad.
    fn step(&mut self, key: Key, verdict: Option<(Severity, String)>, now: DateTime<Utc>) {
        if !self.states.contains_key(&key) && self.states.len() >= MAX_ALERT_KEYS {
            self.refused_keys += 1;
            return;
        }
        let need = self.rules[key.rule].for_windows;
        let mut state = self.states.remove(&key).unwrap_or_default();
        match verdict {
            Some((severity, summary)) => {
                state.bad += 1;
                state.good = 0;
                match &mut state.firing {
                    Some(f) if f.severity != severity => {
                        // A new band is a new alert: resolve the old one, fire the new one.
                        let old = self.alert(&key, f, true, now);
                        self.out.push(old);
                        let f = Firing { severity, started: now, last_sent: now, summary };
                        self.out.push(self.alert(&key, &f, false, now));
                        state.firing = Some(f);
                    }
                    Some(f) => f.summary = summary,
                    None if state.bad >= need => {
                        let f = Firing { severity, started: now, last_sent: now, summary };
                        self.out.push(self.alert(&key, &f, false, now));
                        state.firing = Some(f);
                    }
                    None => {}
                }
            }
            None => {
                state.good += 1;
                state.bad = 0;
                if state.good >= need
                    && let Some(f) = state.firing.take()
                {
                    self.out.push(self.alert(&key, &f, true, now));
                }
            }
        }
        if state.firing.is_some() || state.bad > 0 {
            self.states.insert(key, state);
        }
    }

    /// Reads one event: drift reports are judged at once, requests are counted.
    pub fn observe(&mut self, event: &Event, now: DateTime<Utc>) {
        let Some(model) = text(event, &["model", "name"]) else { return };
        let version = text(event, &["model", "version"]).unwrap_or_default();
        let action = text(event, &["event", "action"]).unwrap_or_default();
        let ours = text(event, &["event", "dataset"]).is_some_and(|d| d.starts_with("weir."));
        let drift = DriftReport::from_event(event);
        if !ours
            && (self.last_seen.len() < MAX_ALERT_KEYS
                || self.last_seen.contains_key(&(model.clone(), version.clone())))
        {
            self.last_seen.insert((model.clone(), version.clone()), now);
            // Data is back: resolve at once.
            for (i, r) in self.rules.iter().enumerate() {
                if r.kind == RuleKind::NoData {
                    let key = Key {
                        rule: i,
                        model: model.clone(),
                        version: version.clone(),
                        feature: None,
                    };
                    if let Some(f) = self.states.remove(&key).and_then(|s| s.firing) {
                        let a = self.alert(&key, &f, true, now);
                        self.out.push(a);
                    }
                }
            }
        }
        for i in 0..self.rules.len() {
            match self.rules[i].kind {
                RuleKind::Drift => {
                    if let Some(report) = &drift {
                        self.drift(i, report, now)
                    }
                }
                RuleKind::ErrorRate
                    if matches!(
                        action.as_str(),
                        "request" | "prediction" | "prediction_failed"
                    ) =>
                {
                    let key = (i, model.clone(), version.clone());
                    if self.requests.len() < MAX_ALERT_KEYS || self.requests.contains_key(&key) {
                        let r = self.requests.entry(key).or_default();
                        r.total += 1;
                        if text(event, &["event", "outcome"]).as_deref() == Some("failure") {
                            r.failed += 1;
                        }
                    }
                }
                _ => {}
            }
        }
    }

    fn drift(&mut self, rule: usize, report: &DriftReport, now: DateTime<Utc>) {
        let (model, version) = (&report.model.name, &report.model.version);
        let band = |psi: f64| {
            if PsiLevel::of(psi) == PsiLevel::Critical {
                Severity::Critical
            } else {
                Severity::Warning
            }
        };
        let tested = report.features.iter().filter(|f| f.tested);
        let drifted: Vec<(&str, f64)> = tested
            .clone()
            .filter(|f| f.drifted)
            .map(|f| (&*f.name, f.psi.unwrap_or(0.0)))
            .collect();
        if self.rules[rule].per_feature {
            for f in tested {
                let verdict = f.drifted.then(|| {
                    let psi = f.psi.unwrap_or(0.0);
                    let summary = format!(
                        "feature {} of {model} {version} drifted from its training data \
                         (PSI {psi:.3})",
                        f.name
                    );
                    (band(psi), summary)
                });
                let key = Key {
                    rule,
                    model: model.clone(),
                    version: version.clone(),
                    feature: Some(f.name.clone()),
                };
                self.step(key, verdict, now);
            }
        } else {
            let verdict = report.dataset_drifted.then(|| {
                let worst = drifted.iter().map(|(_, p)| *p).fold(0.0, f64::max);
                let names: Vec<&str> = drifted.iter().map(|(n, _)| *n).collect();
                (band(worst), format!("{model} {version}: input drift in {}", names.join(", ")))
            });
            let key = Key { rule, model: model.clone(), version: version.clone(), feature: None };
            self.step(key, verdict, now);
        }
    }

    /// Evaluates time-based rules and re-sends firing alerts that are due.
    pub fn tick(&mut self, now: DateTime<Utc>) {
        for i in 0..self.rules.len() {
            let rule = self.rules[i].clone();
            match rule.kind {
                RuleKind::ErrorRate => {
                    let started = *self.window_started.entry(i).or_insert(now);
                    if (now - started).num_seconds() < rule.window_secs as i64 {
                        continue;
                    }
                    self.window_started.insert(i, now);
                    // Keys with requests this window, and keys whose alert is pending or firing.
                    let mut keys: Vec<(String, String)> = self
                        .requests
                        .keys()
                        .filter(|(r, _, _)| *r == i)
                        .map(|(_, m, v)| (m.clone(), v.clone()))
                        .collect();
                    keys.extend(
                        self.states
                            .keys()
                            .filter(|k| k.rule == i)
                            .map(|k| (k.model.clone(), k.version.clone())),
                    );
                    keys.sort();
                    keys.dedup();
                    for (model, version) in keys {
                        let r = self
                            .requests
                            .remove(&(i, model.clone(), version.clone()))
                            .unwrap_or_default();
                        let rate = if r.total > 0 { r.failed as f64 / r.total as f64 } else { 0.0 };
                        let verdict =
                            (r.total >= rule.min_requests && rate >= rule.warning).then(|| {
                                let band = if rate >= rule.critical {
                                    Severity::Critical
                                } else {
                                    Severity::Warning
                                };
                                (
                                    band,
                                    format!(
                                        "{model} {version}: {:.1}% of {} requests failed",
                                        rate * 100.0,
                                        r.total
                                    ),
                                )
                            });
                        let key = Key { rule: i, model, version, feature: None };
                        self.step(key, verdict, now);
                    }
                }
                RuleKind::NoData => {
                    let severity = match rule.severity.as_deref() {
                        Some("critical") => Severity::Critical,
                        _ => Severity::Warning,
                    };
                    let silent: Vec<(String, String, i64)> = self
                        .last_seen
                        .iter()
                        .filter(|(_, t)| (now - **t).num_seconds() >= rule.after_secs as i64)
                        .map(|((m, v), t)| (m.clone(), v.clone(), (now - *t).num_seconds()))
                        .collect();
                    for (model, version, secs) in silent {
                        let key = Key {
                            rule: i,
                            model: model.clone(),
                            version: version.clone(),
                            feature: None,
                        };
                        if self.states.get(&key).is_some_and(|s| s.firing.is_some()) {
                            continue;
                        }
                        let f = Firing {
                            severity,
                            started: now,
                            last_sent: now,
                            summary: format!("no events from {model} {version} for {secs} s"),
                        };
                        self.out.push(self.alert(&key, &f, false, now));
                        self.states.insert(key, State { bad: 1, good: 0, firing: Some(f) });
                    }
                }
                RuleKind::Drift => {}
            }
        }
        // Re-send what is firing, so Alertmanager keeps it active.
        let due: Vec<Key> = self
            .states
            .iter()
            .filter(|(_, s)| s.firing.as_ref().is_some_and(|f| now - f.last_sent >= self.resend))
            .map(|(k, _)| k.clone())
            .collect();
        for key in due {
            if let Some(f) = self.states.get_mut(&key).and_then(|s| s.firing.as_mut()) {
                f.last_sent = now;
            }
            if let Some(f) = self.states.get(&key).and_then(|s| s.firing.as_ref()) {
                let a = self.alert(&key, f, false, now);
                self.out.push(a);
            }
        }
    }
}

/// Where an alert sink delivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// `POST {endpoint}/api/v2/alerts` with a JSON array of alerts.
    Alertmanager,
    /// `POST {endpoint}` with `{"version":"4","status":...,"alerts":[...]}`.
    Webhook,
}

impl Target {
    /// The request carrying `alerts`, relative to the endpoint.
    fn request(self, alerts: &[Alert]) -> HttpRequest {
        let alerts: Vec<serde_json::Value> = alerts.iter().map(Alert::to_json).collect();
        let (path, body) = match self {
            Self::Alertmanager => ("/api/v2/alerts", serde_json::Value::Array(alerts)),
            Self::Webhook => {
                let firing = alerts.iter().any(|a| a["status"] == "firing");
                let body = serde_json::json!({
                    "version": "4",
                    "receiver": "weir",
                    "status": if firing { "firing" } else { "resolved" },
                    "alerts": alerts,
                });
                ("", body)
            }
        };
        HttpRequest {
            method: reqwest::Method::POST,
            path: path.to_string(),
            headers: vec![(CONTENT_TYPE, HeaderValue::from_static("application/json"))],
            body: Bytes::from(serde_json::to_vec(&body).unwrap_or_default()),
        }
    }
}

/// How a delivery attempt ended.
enum Sent {
    Delivered,
    /// Refused for good (HTTP 4xx but 429): `status` and the receiver's words.
    Rejected(u16, String),
    /// Worth another attempt: why.
    Retry(String),
}

/// One attempt at delivering `alerts`.
async fn send(
    client: &HttpClient,
    metrics: &SinkMetrics,
    target: Target,
    alerts: &[Alert],
) -> Sent {
    let req = target.request(alerts);
    let started = Instant::now();
    match client.send(client.endpoints.pick(), &req).await {
        Ok(resp) => {
            metrics.request(&resp.status.to_string());
            metrics.latency.observe(started.elapsed().as_secs_f64());
            match resp.status {
                200..=299 => Sent::Delivered,
                400..=499 if resp.status != 429 => {
                    Sent::Rejected(resp.status, String::from_utf8_lossy(&resp.body).into_owned())
                }
                status => Sent::Retry(format!("HTTP {status}")),
            }
        }
        Err(e) => {
            metrics.request(if matches!(e, super::util::http::SendError::Timeout) {
                "timeout"
            } else {
                "error"
            });
            Sent::Retry(e.to_string())
        }
    }
}

/// The sink task shared by `alertmanager` and `webhook` (`options` checked).
pub fn build_sink(
    options: AlertOptions,
    target: Target,
    client: HttpClient,
    request: &SerialRequestConfig,
    mut cx: SinkContext,
) -> Task {
    let backoff = request.backoff();
    Box::pin(async move {
        let mut engine = AlertEngine::new(&options, Utc::now());
        let mut queue: VecDeque<Alert> = VecDeque::new();
        let mut tick = tokio::time::interval(Duration::from_secs(options.evaluation_interval_secs));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut rng = StdRng::from_os_rng();
        let mut retries: u32 = 0;
        let mut next_attempt = Instant::now();
        let metrics = SinkMetrics::new(&cx.metrics);
        let sent_metrics = cx.metrics.output("_default");
        let dropped =
            cx.metrics.discarded_counter(crate::metrics::discard_reason::ALERT_QUEUE_FULL);
        let rejected = cx.metrics.error_counter(
            crate::metrics::error_type::ALERT_REJECTED,
            crate::metrics::Stage::Sending,
        );
        let failed = cx.metrics.error_counter(
            crate::metrics::error_type::ALERT_SEND_FAILED,
            crate::metrics::Stage::Sending,
        );
        let exhausted = cx.metrics.error_counter(
            crate::metrics::error_type::RETRIES_EXHAUSTED,
            crate::metrics::Stage::Sending,
        );
        let mut log_limit = RateLimit::default();
        loop {
            let closed = tokio::select! {
                batch = cx.input.recv() => match batch {
                    Some(events) => {
                        cx.metrics.received(events.len(), batch_size(&events));
                        let now = Utc::now();
                        for e in &events {
                            engine.observe(e, now);
                        }
                        false
                    }
                    None => true,
                },
                _ = tick.tick() => {
                    engine.tick(Utc::now());
                    false
                }
            };
            queue.extend(engine.take());
            while queue.len() > MAX_QUEUED {
                queue.pop_front();
                dropped.inc();
                if let Some(suppressed) = log_limit.allow() {
                    tracing::error!(component = %cx.id, suppressed, "alert queue full: the oldest undelivered notification was dropped");
                }
            }
            if !queue.is_empty() && (closed || Instant::now() >= next_attempt) {
                let batch: Vec<Alert> = queue.iter().cloned().collect();
                match send(&client, &metrics, target, &batch).await {
                    Sent::Delivered => {
                        queue.clear();
                        retries = 0;
                        sent_metrics.sent(batch.len(), 0);
                    }
                    Sent::Rejected(status, response) => {
                        queue.clear();
                        retries = 0;
                        rejected.inc_by(batch.len() as u64);
                        tracing::error!(component = %cx.id, status, %response,
                            count = batch.len(), "alerts rejected by the receiver; dropped");
                    }
                    Sent::Retry(why) if !backoff.allows(u64::from(retries)) => {
                        queue.clear();
                        retries = 0;
                        exhausted.inc();
                        tracing::error!(component = %cx.id, error = %why, count = batch.len(),
                            "alerts not delivered after request.retry_attempts; dropped");
                    }
                    Sent::Retry(why) => {
                        failed.inc();
                        metrics.retries.inc();
                        let delay = backoff.delay(retries, &mut rng);
                        retries = retries.saturating_add(1);
                        next_attempt = Instant::now() + delay;
                        if let Some(suppressed) = log_limit.allow() {
                            tracing::warn!(component = %cx.id, error = %why, suppressed,
                                retry_in_ms = delay.as_millis() as u64,
                                "cannot deliver alerts; will retry");
                        }
                    }
                }
            }
            if closed {
                if !queue.is_empty() {
                    tracing::error!(component = %cx.id, count = queue.len(), "stopping with undelivered alert notifications");
                }
                break;
            }
        }
        if engine.refused_keys() > 0 {
            tracing::warn!(component = %cx.id, refused = engine.refused_keys(), "alert keys over the limit were not tracked");
        }
        Ok(())
    })
}

/// `[sinks.<id>] type = "alertmanager"` and `type = "webhook"`: the same options; for
/// Alertmanager `endpoint` is its base URL (`http://127.0.0.1:9093`), for a webhook the URL
/// posted to.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertSinkConfig {
    /// For `alertmanager` its base URL (`http://127.0.0.1:9093`; `/api/v2/alerts` is added),
    /// for `webhook` the URL posted to. Required.
    pub endpoint: String,
    /// The alert rules (`[[sinks.ID.rules]]`); none by default, which sends nothing.
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
    /// Labels added to every alert.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Firing alerts are sent again this often. Default 60.
    #[serde(default = "default_resend")]
    pub resend_interval_secs: u64,
    /// How often time-based rules (error-rate windows, no data) are evaluated. Default 1.
    #[serde(default = "default_tick")]
    pub evaluation_interval_secs: u64,
    /// Timeout and backoff of the requests.
    #[serde(default)]
    pub request: SerialRequestConfig,
    /// Credentials sent with every request; none by default.
    pub auth: Option<AuthConfig>,
    /// TLS settings for an `https` endpoint; by default the system's roots are trusted.
    pub tls: Option<TlsConfig>,
}

impl AlertSinkConfig {
    pub fn options(&self) -> AlertOptions {
        AlertOptions {
            rules: self.rules.clone(),
            labels: self.labels.clone(),
            resend_interval_secs: self.resend_interval_secs,
            evaluation_interval_secs: self.evaluation_interval_secs,
        }
    }

    /// The options, checked.
    pub fn check(&self) -> Result<AlertOptions, Vec<ConfigIssue>> {
        let options = self.options();
        let mut issues = options.check();
        if let Err(e) = check_url(&self.endpoint) {
            issues.push(ConfigIssue::field("endpoint", e.to_string()));
        }
        issues.extend(self.request.check());
        issues.extend(self.auth.iter().flat_map(AuthConfig::check));
        issues.extend(self.tls.iter().flat_map(TlsConfig::check));
        if issues.is_empty() { Ok(options) } else { Err(issues) }
    }

    /// The HTTP client of this sink (reads TLS and secret files).
    fn client(&self) -> Result<HttpClient, BuildError> {
        HttpClient::new(
            vec![self.endpoint.clone()],
            self.tls.as_ref(),
            self.auth.as_ref(),
            self.request.timeout(),
        )
        .map_err(|message| BuildError::Client { what: "HTTP client", message })
    }

    fn build_sink(
        &self,
        options: AlertOptions,
        target: Target,
        cx: SinkContext,
    ) -> Result<Task, BuildError> {
        Ok(build_sink(options, target, self.client()?, &self.request, cx))
    }
}

/// `[sinks.<id>] type = "alertmanager"`: alerts to Alertmanager's `POST /api/v2/alerts`.
#[derive(Debug, Clone, Deserialize)]
#[serde(transparent)]
pub struct AlertmanagerConfig(pub AlertSinkConfig);

/// `[sinks.<id>] type = "webhook"`: alerts as JSON to any URL.
#[derive(Debug, Clone, Deserialize)]
#[serde(transparent)]
pub struct WebhookConfig(pub AlertSinkConfig);

impl SinkComponent for AlertmanagerConfig {
    type Checked = AlertOptions;

    fn check(&self) -> Result<AlertOptions, Vec<ConfigIssue>> {
        self.0.check()
    }

    fn build(&self, options: AlertOptions, cx: SinkContext) -> Result<Task, BuildError> {
        self.0.build_sink(options, Target::Alertmanager, cx)
    }
}

impl SinkComponent for WebhookConfig {
    type Checked = AlertOptions;

    fn check(&self) -> Result<AlertOptions, Vec<ConfigIssue>> {
        self.0.check()
    }

    fn build(&self, options: AlertOptions, cx: SinkContext) -> Result<Task, BuildError> {
        self.0.build_sink(options, Target::Webhook, cx)
    }
}

#[cfg(test)]
mod tests;
