//! `log_to_metric`: Prometheus counters, gauges and histograms derived from events, exported on
//! weir's `GET /metrics` beside weir's own series.
//!
//! ```toml
//! [transforms.model_metrics]
//! type = "log_to_metric"
//! inputs = ["inference"]
//! preset = "inference"              # the standard model-server series, see below
//! max_series_per_metric = 1000      # the hard label-cardinality cap
//!
//! [[transforms.model_metrics.metrics]]
//! type = "histogram"                # counter | gauge | histogram
//! name = "model_queue_seconds"      # exported as weir_model_queue_seconds
//! field = "inference.queue_seconds"
//! condition = '.event.action == "request"'
//! tags = { model = "{{ model.name }}", version = "{{ model.version }}" }
//! buckets = [0.01, 0.1, 1.0]
//! ```
//!
//! Events pass through unchanged: the transform observes them. A counter counts the events
//! that have `field` (every event when unset), or adds the field's value with
//! `increment_by_value = true`; a gauge is set to the field's value (the value of the latest
//! event by `@timestamp`, or by arrival for events without one); a histogram observes it.
//! `condition` (VRL) limits a metric to the events for which it is true. `tags` are templates
//! (`{{ field }}`); a tag whose field is missing is the empty string, which Prometheus reads as
//! the label being absent.
//!
//! `preset = "inference"` adds, over the inference event schema of `parse_model_log`:
//! `weir_model_requests_total`, `weir_model_errors_total` (requests whose `event.outcome` is
//! `failure`), `weir_model_request_duration_seconds` (histogram of `inference.latency_seconds`),
//! all by `model`, `version` and `status_class`, `weir_model_tokens_total` by `model`,
//! `version` and `kind` (`prompt`, `completion`), and from LLM engine stats lines the gauges
//! `weir_model_gpu_kv_cache_usage_ratio`, `weir_model_requests_running`,
//! `weir_model_requests_waiting` and `weir_model_generation_tokens_per_second`.
//!
//! Invariants: label cardinality is bounded. Each metric admits at most
//! `max_series_per_metric` label sets; an event that would create one more is not observed
//! for that metric, counted in `weir_metric_series_refused_total{metric}` and logged (rate
//! limited). Request, trace and span ids can never be labels: a tag naming such a field is a
//! configuration error. A metric name used by several transforms is one family, shared, and
//! must have the same type everywhere.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, OnceLock};

use chrono::{DateTime, Utc};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use serde::Deserialize;
use vrl::path::OwnedValuePath;
use vrl::value::Value;

use super::vrl_program::{VrlProgram, VrlRunner};
use super::{Transform, TransformOutput};
use crate::component::TransformComponent;
use crate::error::ConfigIssue;
use crate::event::{Event, parse_path};
use crate::internal_events::{ProgramFailed, RateLimit};
use crate::metrics::{ComponentMetrics, Labels};
use crate::template::Template;

/// `[transforms.<id>] type = "log_to_metric"`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogToMetricConfig {
    /// A set of standard metrics to add: `inference`.
    #[serde(default)]
    pub preset: Option<String>,
    /// Metrics of your own.
    #[serde(default)]
    pub metrics: Vec<MetricConfig>,
    /// The most label sets (series) one metric may have. Default 1000.
    #[serde(default = "default_max_series")]
    pub max_series_per_metric: usize,
}

fn default_max_series() -> usize {
    1000
}

/// One metric.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricConfig {
    /// The kind of metric: a counter adds up, a gauge keeps the last value seen, a histogram
    /// counts observations into buckets.
    #[serde(rename = "type")]
    pub kind: MetricKind,
    /// The name without weir's `weir_` prefix, e.g. `model_requests_total`.
    pub name: String,
    /// The `# HELP` text.
    #[serde(default)]
    pub help: Option<String>,
    /// The field counted or observed.
    #[serde(default)]
    pub field: Option<String>,
    /// Counters: add the field's value instead of one.
    #[serde(default)]
    pub increment_by_value: bool,
    /// A VRL condition; the metric only sees events for which it is true.
    #[serde(default)]
    pub condition: Option<String>,
    /// Label name -> template.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Histogram bucket upper bounds. Default: latency buckets from 5 ms to 60 s.
    #[serde(default)]
    pub buckets: Option<Vec<f64>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricKind {
    Counter,
    Gauge,
    Histogram,
}

/// Default histogram buckets, in seconds.
pub const LATENCY_BUCKETS: &[f64] =
    &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

/// Fields that identify one request (or trace): unbounded, so never labels.
const ID_FIELDS: &[&str] = &[
    "request_id",
    "request.id",
    "requestid",
    "trace.id",
    "span.id",
    "transaction.id",
    "trace_id",
    "span_id",
];

/// The `inference` preset over the schema of `parse_model_log`.
fn inference_preset() -> Vec<MetricConfig> {
    let requests = r#".event.action == "request" || .event.action == "prediction" || .event.action == "prediction_failed""#;
    let tags = |extra: Option<(&str, &str)>| {
        let mut t = BTreeMap::from([
            ("model".to_string(), "{{ model.name }}".to_string()),
            ("version".to_string(), "{{ model.version }}".to_string()),
        ]);
        match extra {
            Some((k, v)) => t.insert(k.to_string(), v.to_string()),
            None => t.insert("status_class".into(), "{{ inference.status_class }}".into()),
        };
        t
    };
    let metric =
        |kind, name: &str, help: &str, field: Option<&str>, condition: String, tags| MetricConfig {
            kind,
            name: name.into(),
            help: Some(help.into()),
            field: field.map(str::to_string),
            increment_by_value: kind == MetricKind::Counter && field.is_some(),
            condition: Some(condition),
            tags,
            buckets: None,
        };
    // LLM engine stats (vLLM): the last value seen, by model and version.
    let stats = |name: &str, help: &str, field: &str| MetricConfig {
        kind: MetricKind::Gauge,
        name: name.into(),
        help: Some(help.into()),
        field: Some(field.into()),
        increment_by_value: false,
        condition: Some(r#".event.action == "stats""#.into()),
        tags: BTreeMap::from([
            ("model".to_string(), "{{ model.name }}".to_string()),
            ("version".to_string(), "{{ model.version }}".to_string()),
        ]),
        buckets: None,
    };
    let mut all = vec![
        stats(
            "model_gpu_kv_cache_usage_ratio",
            "GPU KV-cache usage of an LLM engine (0 to 1)",
            "inference.gpu_kv_cache_usage",
        ),
        stats(
            "model_requests_running",
            "Requests an LLM engine is running",
            "inference.requests.running",
        ),
        stats(
            "model_requests_waiting",
            "Requests waiting in an LLM engine's queue",
            "inference.requests.waiting",
        ),
        stats(
            "model_generation_tokens_per_second",
            "Generation throughput of an LLM engine",
            "inference.throughput.generation_tokens_per_second",
        ),
    ];
    all.extend([
        metric(
            MetricKind::Counter,
            "model_requests_total",
            "Inference requests seen in model-server logs",
            None,
            requests.into(),
            tags(None),
        ),
        metric(
            MetricKind::Counter,
            "model_errors_total",
            "Inference requests that failed, seen in model-server logs",
            None,
            format!(r#"({requests}) && .event.outcome == "failure""#),
            tags(None),
        ),
        metric(
            MetricKind::Histogram,
            "model_request_duration_seconds",
            "Inference request latency from model-server logs",
            Some("inference.latency_seconds"),
            requests.into(),
            tags(None),
        ),
        metric(
            MetricKind::Counter,
            "model_tokens_total",
            "Tokens processed by LLM servers, by kind",
            Some("inference.tokens.prompt"),
            "exists(.inference.tokens.prompt)".into(),
            tags(Some(("kind", "prompt"))),
        ),
        metric(
            MetricKind::Counter,
            "model_tokens_total",
            "Tokens processed by LLM servers, by kind",
            Some("inference.tokens.completion"),
            "exists(.inference.tokens.completion)".into(),
            tags(Some(("kind", "completion"))),
        ),
    ]);
    all
}

type FloatCounter = Counter<f64, AtomicU64>;
type FloatGauge = Gauge<f64, AtomicU64>;

#[derive(Clone)]
struct Buckets(Arc<Vec<f64>>);

impl MetricConstructor<Histogram> for Buckets {
    fn new_metric(&self) -> Histogram {
        Histogram::new(self.0.iter().copied())
    }
}

#[derive(Clone)]
enum Families {
    Counter(Family<Labels, FloatCounter>),
    Gauge(Family<Labels, FloatGauge>),
    Histogram(Family<Labels, Histogram, Buckets>, Arc<Vec<f64>>),
}

/// A metric family shared by every transform that names it, with its admitted label sets.
struct Shared {
    kind: MetricKind,
    families: Families,
    /// Label sets admitted so far, never more than the cap of the transform admitting; each
    /// with the time of the event a gauge series was last set from (unused by the others).
    series: Mutex<HashMap<Labels, Latest>>,
}

/// The time of the event a gauge series was last set from: instances transform batches at
/// once, so the event of the latest time wins, not the batch finished last.
type Latest = Arc<Mutex<Option<DateTime<Utc>>>>;

/// Every derived metric by exported name (without the `weir_` prefix).
fn registry() -> &'static Mutex<HashMap<String, Arc<Shared>>> {
    static SHARED: OnceLock<Mutex<HashMap<String, Arc<Shared>>>> = OnceLock::new();
    SHARED.get_or_init(Default::default)
}

fn refused_family() -> &'static Family<Labels, Counter> {
    static REFUSED: OnceLock<Family<Labels, Counter>> = OnceLock::new();
    REFUSED.get_or_init(|| {
        let f = Family::default();
        crate::metrics::global().register(
            "metric_series_refused",
            "Observations not recorded because their metric reached max_series_per_metric",
            f.clone(),
        );
        f
    })
}

/// Finds or registers the family `name` (counters without their `_total`, which the encoder
/// adds back).
fn shared(
    name: &str,
    kind: MetricKind,
    help: &str,
    buckets: &[f64],
) -> Result<Arc<Shared>, String> {
    let mut all = registry().lock().unwrap_or_else(|e| e.into_inner());
    if let Some(s) = all.get(name) {
        if s.kind != kind {
            return Err(format!(
                "metric `{name}` is already a {:?}; one name has one type",
                s.kind
            ));
        }
        if let Families::Histogram(_, b) = &s.families
            && b.as_slice() != buckets
        {
            return Err(format!("histogram `{name}` is already defined with other buckets"));
        }
        return Ok(Arc::clone(s));
    }
    let t = crate::metrics::global();
    let families = match kind {
        MetricKind::Counter => {
            let f = Family::<Labels, FloatCounter>::default();
            t.register(name.strip_suffix("_total").unwrap_or(name), help, f.clone());
            Families::Counter(f)
        }
        MetricKind::Gauge => {
            let f = Family::<Labels, FloatGauge>::default();
            t.register(name, help, f.clone());
            Families::Gauge(f)
        }
        MetricKind::Histogram => {
            let b = Arc::new(buckets.to_vec());
            let f = Family::new_with_constructor(Buckets(Arc::clone(&b)));
            t.register(name, help, f.clone());
            Families::Histogram(f, b)
        }
    };
    let s = Arc::new(Shared { kind, families, series: Mutex::default() });
    all.insert(name.to_string(), Arc::clone(&s));
    Ok(s)
}

#[derive(Clone)]
enum Handle {
    Counter(FloatCounter),
    Gauge(FloatGauge, Latest),
    Histogram(Histogram),
}

struct Rule {
    name: String,
    shared: Arc<Shared>,
    field: Option<OwnedValuePath>,
    by_value: bool,
    /// Index into `LogToMetric::conditions`.
    condition: Option<usize>,
    tags: Vec<(String, Template)>,
    /// Handles of the series this transform has admitted (bounded by the cap), by their tag
    /// values in the order of `tags`.
    cache: HashMap<Vec<String>, Handle>,
    /// This event's tag values, rendered into buffers kept from one event to the next.
    values: Vec<String>,
    refused: Counter,
    refused_log: RateLimit,
}

impl Rule {
    /// The series of this event's tag values (`values`), admitted under the cap shared by
    /// every transform writing the metric; `None` when the cap refuses it.
    fn admit(&mut self, max_series: usize, component: &str) -> Option<&Handle> {
        let labels: Labels =
            self.tags.iter().map(|(k, _)| k.clone()).zip(self.values.iter().cloned()).collect();
        let latest = {
            let mut series = self.shared.series.lock().unwrap_or_else(|e| e.into_inner());
            (series.contains_key(&labels) || series.len() < max_series)
                .then(|| Arc::clone(series.entry(labels.clone()).or_default()))
        };
        let Some(latest) = latest else {
            self.refused.inc();
            if let Some(suppressed) = self.refused_log.allow() {
                tracing::warn!(component = %component, metric = %self.name,
                    max_series_per_metric = max_series, suppressed,
                    "metric reached its series cap; new label sets are not recorded");
            }
            return None;
        };
        let h = match &self.shared.families {
            Families::Counter(f) => Handle::Counter(f.get_or_create_owned(&labels)),
            Families::Gauge(f) => Handle::Gauge(f.get_or_create_owned(&labels), latest),
            Families::Histogram(f, _) => Handle::Histogram(f.get_or_create_owned(&labels)),
        };
        Some(self.cache.entry(self.values.clone()).or_insert(h))
    }
}

/// The transform.
pub struct LogToMetric {
    rules: Vec<Rule>,
    /// Each distinct condition once: several metrics share one (the preset's three request
    /// metrics, its four engine gauges), and a condition is read-only, so one run per event
    /// answers for all of them.
    conditions: Vec<(String, VrlRunner)>,
    /// This event's verdict per condition, filled as rules ask (`Err`: the failure message).
    verdicts: Vec<Option<Result<bool, String>>>,
    max_series: usize,
    component: String,
    failed: ProgramFailed,
    not_numeric: Counter,
    not_numeric_log: RateLimit,
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Field names inside the `{{ }}` of a template.
fn template_fields(source: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = source;
    while let Some(open) = rest.find("{{") {
        let after = &rest[open + 2..];
        let Some(close) = after.find("}}") else { break };
        out.push(after[..close].trim().to_ascii_lowercase());
        rest = &after[close + 2..];
    }
    out
}

impl TransformComponent for LogToMetricConfig {
    type Built = LogToMetric;

    /// Counters and histograms add up in any order, gauges keep the latest event's value, and
    /// the series cap is shared: instances may observe batches at once.
    fn concurrent(&self) -> bool {
        true
    }

    fn build(&self, metrics: &ComponentMetrics) -> Result<LogToMetric, ConfigIssue> {
        let mut all = Vec::new();
        match self.preset.as_deref() {
            None => {}
            Some("inference") => all.extend(inference_preset()),
            Some(other) => {
                return Err(ConfigIssue::field(
                    "preset",
                    format!("unknown preset `{other}`: the one preset is `inference`"),
                ));
            }
        }
        all.extend(self.metrics.iter().cloned());
        if all.is_empty() {
            return Err(ConfigIssue::general(
                "give `preset = \"inference\"` or at least one [[metrics]] entry",
            ));
        }
        if self.max_series_per_metric == 0 {
            return Err(ConfigIssue::field("max_series_per_metric", "must be at least 1"));
        }
        let refused = refused_family();
        let mut rules = Vec::new();
        let mut conditions: Vec<(String, VrlRunner)> = Vec::new();
        for m in &all {
            let issue =
                |msg: String| ConfigIssue::field("metrics", format!("metric `{}`: {msg}", m.name));
            if m.name.starts_with("weir_") {
                return Err(issue(format!(
                    "leave out the `weir_` prefix (the registry adds it): name = \"{}\"",
                    &m.name[5..]
                )));
            }
            if !valid_name(&m.name) {
                return Err(issue(
                    "a Prometheus name is letters, digits and `_`, not starting with a digit"
                        .into(),
                ));
            }
            if matches!(m.kind, MetricKind::Gauge | MetricKind::Histogram) && m.field.is_none() {
                return Err(issue(
                    "a gauge or histogram needs `field`, the value it records".into(),
                ));
            }
            if m.increment_by_value && m.field.is_none() {
                return Err(issue("`increment_by_value` needs `field`".into()));
            }
            let mut tags = Vec::new();
            for (label, source) in &m.tags {
                if !valid_name(label) || label.starts_with("__") {
                    return Err(issue(format!("`{label}` is not a valid label name")));
                }
                if let Some(f) = template_fields(source)
                    .into_iter()
                    .find(|f| ID_FIELDS.iter().any(|id| f.ends_with(id)))
                {
                    return Err(issue(format!(
                        "tag `{label}` uses `{f}`: request, trace and span ids are unbounded and never labels"
                    )));
                }
                let t = Template::parse(source).map_err(&issue)?;
                tags.push((label.clone(), t));
            }
            let buckets = match &m.buckets {
                Some(b) if m.kind != MetricKind::Histogram => {
                    let _ = b;
                    return Err(issue("`buckets` is for histograms".into()));
                }
                Some(b) => {
                    if b.is_empty()
                        || b.windows(2).any(|w| w[0] >= w[1])
                        || b.iter().any(|x| !x.is_finite())
                    {
                        return Err(issue(
                            "`buckets` must be finite and strictly increasing".into(),
                        ));
                    }
                    b.clone()
                }
                None => LATENCY_BUCKETS.to_vec(),
            };
            let help = m
                .help
                .clone()
                .unwrap_or_else(|| format!("Derived from events by log_to_metric ({})", m.name));
            let shared = shared(&m.name, m.kind, &help, &buckets).map_err(issue)?;
            let condition = match &m.condition {
                Some(src) => match conditions.iter().position(|(s, _)| s == src) {
                    Some(i) => Some(i),
                    None => {
                        let runner = VrlRunner::new(VrlProgram::compile(src, true).map_err(issue)?);
                        conditions.push((src.clone(), runner));
                        Some(conditions.len() - 1)
                    }
                },
                None => None,
            };
            let field = match &m.field {
                Some(f) => Some(parse_path(f).map_err(issue)?),
                None => None,
            };
            rules.push(Rule {
                name: m.name.clone(),
                shared,
                field,
                by_value: m.increment_by_value,
                condition,
                values: vec![String::new(); tags.len()],
                tags,
                cache: HashMap::new(),
                refused: refused.get_or_create_owned(&vec![
                    ("component_id".to_string(), metrics.id().to_string()),
                    ("metric".to_string(), m.name.clone()),
                ]),
                refused_log: RateLimit::default(),
            });
        }
        Ok(LogToMetric {
            rules,
            verdicts: vec![None; conditions.len()],
            conditions,
            max_series: self.max_series_per_metric,
            component: metrics.id().to_string(),
            failed: ProgramFailed::new(metrics),
            not_numeric: metrics.error_counter(
                crate::metrics::error_type::VALUE_NOT_NUMERIC,
                crate::metrics::Stage::Processing,
            ),
            not_numeric_log: RateLimit::default(),
        })
    }
}

fn numeric(v: &Value) -> Option<f64> {
    match v {
        Value::Integer(i) => Some(*i as f64),
        Value::Float(f) => Some(f.into_inner()),
        Value::Boolean(b) => Some(if *b { 1.0 } else { 0.0 }),
        Value::Bytes(_) | Value::String(_) => {
            v.to_str_lossy()?.trim().parse::<f64>().ok().filter(|f| f.is_finite())
        }
        _ => None,
    }
}

impl LogToMetric {
    fn observe(&mut self, event: &mut Event, now: DateTime<Utc>) {
        let at = event.timestamp().unwrap_or(now);
        self.verdicts.iter_mut().for_each(|v| *v = None);
        for rule in &mut self.rules {
            if let Some(i) = rule.condition {
                let verdict = self.verdicts[i].get_or_insert_with(|| {
                    self.conditions[i].1.check(event).map_err(|e| e.to_string())
                });
                match verdict {
                    Ok(true) => {}
                    Ok(false) => continue,
                    Err(e) => {
                        // Each metric whose condition failed reports it, as before sharing.
                        self.failed.emit(e);
                        continue;
                    }
                }
            }
            let value = match &rule.field {
                None => 1.0,
                Some(path) => match event.get(path) {
                    None | Some(Value::Null) => continue,
                    Some(_) if rule.shared.kind == MetricKind::Counter && !rule.by_value => 1.0,
                    Some(v) => match numeric(v) {
                        Some(x) => x,
                        None => {
                            self.not_numeric.inc();
                            if let Some(suppressed) = self.not_numeric_log.allow() {
                                tracing::warn!(component = %self.component, metric = %rule.name,
                                    kind = v.kind_str(), suppressed, "field is not a number; not recorded");
                            }
                            continue;
                        }
                    },
                },
            };
            if rule.shared.kind == MetricKind::Counter && value < 0.0 {
                continue;
            }
            // A missing field renders as the empty label value.
            for (v, (_, t)) in rule.values.iter_mut().zip(&rule.tags) {
                v.clear();
                if t.render_into(event, now, v).is_err() {
                    v.clear();
                }
            }
            if let Some(handle) = rule.cache.get(rule.values.as_slice()) {
                record(handle, value, at);
            } else if let Some(handle) = rule.admit(self.max_series, &self.component) {
                record(handle, value, at);
            }
        }
    }
}

/// Adds `value` to a series; a gauge takes it only from an event as late as its last.
fn record(handle: &Handle, value: f64, at: DateTime<Utc>) {
    match handle {
        Handle::Counter(c) => {
            c.inc_by(value);
        }
        Handle::Gauge(g, latest) => {
            let mut latest = latest.lock().unwrap_or_else(|e| e.into_inner());
            if latest.is_none_or(|l| at >= l) {
                *latest = Some(at);
                g.set(value);
            }
        }
        Handle::Histogram(h) => h.observe(value),
    }
}

impl Transform for LogToMetric {
    fn transform(&mut self, events: Vec<Event>, out: &mut TransformOutput) {
        let now = Utc::now();
        for mut event in events {
            self.observe(&mut event, now);
            out.push(event);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::ComponentLabels;
    use crate::transforms::test_util::run;

    fn build(id: &str, toml: &str) -> LogToMetric {
        let c: LogToMetricConfig = toml_edit::de::from_str(toml).unwrap();
        c.build(&ComponentMetrics::new(ComponentLabels::new(id, "transform", "log_to_metric")))
            .unwrap()
    }

    fn sample(name: &str, labels: &[(&str, &str)]) -> f64 {
        let text = crate::metrics::global().encode();
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (series, value) = l.rsplit_once(' ')?;
                let (n, rest) = series.split_once('{').unwrap_or((series, ""));
                (n == name && labels.iter().all(|(k, v)| rest.contains(&format!("{k}=\"{v}\""))))
                    .then(|| value.parse::<f64>().ok())?
            })
            .sum()
    }

    fn request(model: &str, status: &str, outcome: &str, latency: f64) -> Event {
        Event::from_value(crate::event::Value::from(&serde_json::json!({
            "event": {"action": "request", "outcome": outcome},
            "model": {"name": model, "version": "1"},
            "inference": {"status_class": status, "latency_seconds": latency},
            "http": {"request": {"id": "r-1"}},
        })))
    }

    /// Two instances share a gauge: the value of the later event stays, whichever instance
    /// observes last; counters add up from both.
    #[test]
    fn instances_keep_the_latest_events_gauge_value() {
        let toml = r#"
            [[metrics]]
            type = "gauge"
            name = "concurrent_test_queue"
            field = "queue"
            [[metrics]]
            type = "counter"
            name = "concurrent_test_lines_total"
        "#;
        let (mut first, mut second) = (build("gauge_a", toml), build("gauge_a", toml));
        let at = |secs: i64, queue: i64| {
            let mut e =
                Event::from_value(crate::event::Value::from(&serde_json::json!({"queue": queue})));
            let t = DateTime::from_timestamp(1_700_000_000 + secs, 0).unwrap();
            e.insert(&crate::event::parse_path("\"@timestamp\"").unwrap(), Value::Timestamp(t));
            e
        };
        run(&mut second, 0, vec![at(10, 7)]);
        run(&mut first, 0, vec![at(5, 3)]);
        assert_eq!(sample("weir_concurrent_test_queue", &[]), 7.0, "an older event came last");
        run(&mut first, 0, vec![at(11, 4)]);
        assert_eq!(sample("weir_concurrent_test_queue", &[]), 4.0);
        assert_eq!(sample("weir_concurrent_test_lines_total", &[]), 3.0);
    }

    #[test]
    fn the_inference_preset() {
        let mut t = build("preset_test", "preset = \"inference\"");
        let mut events = vec![
            request("preset-a", "2xx", "success", 0.02),
            request("preset-a", "2xx", "success", 0.3),
            request("preset-a", "5xx", "failure", 1.5),
        ];
        events.push(Event::from_value(crate::event::Value::from(&serde_json::json!({
            "event": {"action": "stats"}, "model": {"name": "preset-a"},
            "inference": {"tokens": {"prompt": 12, "completion": 30}},
        }))));
        let (out, _) = run(&mut t, 0, events);
        assert_eq!(out.len(), 4, "events pass through");
        let m = [("model", "preset-a")];
        assert_eq!(sample("weir_model_requests_total", &m), 3.0);
        assert_eq!(
            sample("weir_model_requests_total", &[("model", "preset-a"), ("status_class", "2xx")]),
            2.0
        );
        assert_eq!(sample("weir_model_errors_total", &m), 1.0);
        assert_eq!(sample("weir_model_request_duration_seconds_count", &m), 3.0);
        assert!((sample("weir_model_request_duration_seconds_sum", &m) - 1.82).abs() < 1e-9);
        assert_eq!(
            sample(
                "weir_model_request_duration_seconds_bucket",
                &[("model", "preset-a"), ("le", "0.5")]
            ),
            2.0
        );
        assert_eq!(
            sample("weir_model_tokens_total", &[("model", "preset-a"), ("kind", "prompt")]),
            12.0
        );
        assert_eq!(
            sample("weir_model_tokens_total", &[("model", "preset-a"), ("kind", "completion")]),
            30.0
        );
        let stats = crate::event::Value::from(&serde_json::json!({
            "event": {"action": "stats"}, "model": {"name": "preset-a"},
            "inference": {"gpu_kv_cache_usage": 0.579, "requests": {"running": 10, "waiting": 4}},
        }));
        run(&mut t, 0, vec![Event::from_value(stats)]);
        assert_eq!(sample("weir_model_gpu_kv_cache_usage_ratio", &m), 0.579);
        assert_eq!(sample("weir_model_requests_waiting", &m), 4.0);
        let text = crate::metrics::global().encode();
        assert!(!text.contains("r-1"), "request ids never become labels");
    }

    #[test]
    fn the_series_cap_refuses_and_counts() {
        let mut t = build(
            "cap_test",
            r#"
max_series_per_metric = 3
[[metrics]]
type = "counter"
name = "cap_test_total"
tags = { user = "{{ user }}" }
"#,
        );
        let events = (0..10)
            .map(|i| {
                Event::from_value(crate::event::Value::from(
                    &serde_json::json!({"user": (format!("u{}", i % 5))}),
                ))
            })
            .collect();
        run(&mut t, 0, events);
        assert_eq!(sample("weir_cap_test_total", &[]), 6.0, "u0, u1, u2 twice each");
        assert_eq!(
            sample("weir_metric_series_refused_total", &[("metric", "cap_test_total")]),
            4.0
        );
    }

    #[test]
    fn gauges_and_values() {
        let mut t = build(
            "gauge_test",
            r#"
[[metrics]]
type = "gauge"
name = "gauge_test_kv_cache_usage"
field = "usage"
[[metrics]]
type = "counter"
name = "gauge_test_bytes_total"
field = "bytes"
increment_by_value = true
"#,
        );
        let events = vec![
            Event::from_value(crate::event::Value::from(
                &serde_json::json!({"usage": 0.5, "bytes": 10}),
            )),
            Event::from_value(crate::event::Value::from(
                &serde_json::json!({"usage": "0.25", "bytes": "x"}),
            )),
        ];
        run(&mut t, 0, events);
        assert_eq!(sample("weir_gauge_test_kv_cache_usage", &[]), 0.25);
        assert_eq!(sample("weir_gauge_test_bytes_total", &[]), 10.0);
    }

    #[test]
    fn config_errors() {
        for (toml, needle) in [
            ("", "preset"),
            ("preset = \"nope\"", "unknown preset"),
            (
                "[[metrics]]\ntype = \"counter\"\nname = \"weir_x_total\"",
                "leave out the `weir_` prefix",
            ),
            ("[[metrics]]\ntype = \"gauge\"\nname = \"g\"", "needs `field`"),
            (
                "[[metrics]]\ntype = \"counter\"\nname = \"ids_total\"\ntags = { id = \"{{ http.request.id }}\" }",
                "never labels",
            ),
            (
                "[[metrics]]\ntype = \"counter\"\nname = \"ids2_total\"\ntags = { id = \"{{ request_id }}\" }",
                "never labels",
            ),
            (
                "[[metrics]]\ntype = \"histogram\"\nname = \"h\"\nfield = \"x\"\nbuckets = [1.0, 0.5]",
                "increasing",
            ),
            ("[[metrics]]\ntype = \"counter\"\nname = \"1bad\"", "Prometheus name"),
            (
                "[[metrics]]\ntype = \"histogram\"\nname = \"model_requests_total\"\nfield = \"x\"",
                "already a Counter",
            ),
        ] {
            // The preset registers model_requests_total as a counter first.
            let _ = build("err_setup", "preset = \"inference\"");
            let c: LogToMetricConfig = toml_edit::de::from_str(toml).unwrap();
            let m = ComponentMetrics::new(ComponentLabels::new("e", "transform", "log_to_metric"));
            let e = c.build(&m).err().unwrap_or_else(|| panic!("{toml} built"));
            assert!(e.message.contains(needle), "{toml}: {}", e.message);
        }
    }
}
