//! `accuracy`: model quality from delayed ground truth. Predictions and ground-truth labels
//! (from any source) are joined by request id; each window of joined predictions gives the
//! accuracy (classification) or MAE and RMSE (regression), the label coverage and the label
//! delay.
//!
//! ```toml
//! [transforms.quality]
//! type = "accuracy"
//! inputs = ["inference", "labels"]
//! task = "classification"            # or "regression"
//! label_field = "inference.label"    # events with this field are ground truth
//! join_window_secs = 3600            # a prediction waits this long for its label
//! max_pending = 100000               # the most predictions (and early labels) held
//! window.count = 1000                # predictions resolved (labelled or expired) per window
//! window.secs = 300
//! ```
//!
//! An event with `label_field` and a request id (`request_id_field`, default
//! `http.request.id`) is a label; one with `prediction_field` (default `inference.prediction`)
//! and a request id is a prediction. A label may arrive before its prediction: it waits, under
//! the same bounds. Classification compares the two as text (`1`, `1.0` and `"1"` are equal);
//! regression as numbers.
//!
//! Output: the transform consumes its input and emits one event per closed window:
//! `event.action = "quality_window"`, `model.*`, `quality.{predictions,labelled,correct,
//! accuracy,mae,rmse,label_coverage,label_delay_seconds}`; the gauges of
//! [`crate::monitoring::gauges`] follow the last window.
//!
//! Invariants: join state is bounded: at most `max_pending` predictions and as many early
//! labels are held. A prediction that waited `join_window_secs` unlabelled, or that is pushed
//! out by a newer one when the state is full, is evicted and counted
//! (`weir_accuracy_join_evicted_total{reason="expired"|"capacity"}`); it counts in its window
//! as unlabelled, which is what label coverage measures. At most [`MAX_WINDOWS`] model/version
//! windows are open at once.

use std::collections::{HashMap, VecDeque};

use chrono::{DateTime, Utc};
use prometheus_client::metrics::counter::Counter;
use serde::Deserialize;
use vrl::path::OwnedValuePath;
use vrl::value::Value;

use super::drift::WindowConfig;
use super::{Transform, TransformOutput};
use crate::component::TransformComponent;
use crate::error::ConfigIssue;
use crate::event::{Event, parse_path};
use crate::internal_events::EventsDiscarded;
use crate::metrics::ComponentMetrics;
use crate::monitoring::gauges;
use crate::monitoring::report::{ModelKey, QualityReport};

/// The most model/version windows open at once.
pub const MAX_WINDOWS: usize = 256;

/// `[transforms.<id>] type = "accuracy"`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccuracyConfig {
    /// `classification` (prediction and label compared as text) or `regression` (as
    /// numbers).
    pub task: Task,
    /// The request id that joins a prediction and its label. Default `http.request.id`.
    #[serde(default = "default_request_id_field")]
    pub request_id_field: String,
    /// An event with this field (and a request id) is a prediction. Default
    /// `inference.prediction`.
    #[serde(default = "default_prediction_field")]
    pub prediction_field: String,
    /// An event with this field (and a request id) is a label. Default `inference.label`.
    #[serde(default = "default_label_field")]
    pub label_field: String,
    /// How long a prediction waits for its label (and a label for its prediction).
    /// Default 3600.
    #[serde(default = "default_join_window")]
    pub join_window_secs: u64,
    /// The most predictions (and as many early labels) held while they wait. Default
    /// 100000.
    #[serde(default = "default_max_pending")]
    pub max_pending: usize,
    /// The report window: `window.count` predictions resolved (labelled or expired), or
    /// `window.secs`, whichever comes first.
    #[serde(default)]
    pub window: WindowConfig,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Task {
    Classification,
    Regression,
}

fn default_request_id_field() -> String {
    "http.request.id".into()
}
fn default_prediction_field() -> String {
    "inference.prediction".into()
}
fn default_label_field() -> String {
    "inference.label".into()
}
fn default_join_window() -> u64 {
    3600
}
fn default_max_pending() -> usize {
    100_000
}

impl TransformComponent for AccuracyConfig {
    type Built = Accuracy;

    fn build(&self, metrics: &ComponentMetrics) -> Result<Accuracy, ConfigIssue> {
        let path = |f: &str, key: &str| parse_path(f).map_err(|e| ConfigIssue::field(key, e));
        if self.max_pending == 0 {
            return Err(ConfigIssue::field("max_pending", "must be at least 1"));
        }
        if self.join_window_secs == 0 {
            return Err(ConfigIssue::field("join_window_secs", "must be at least 1"));
        }
        if self.window.count == 0 {
            return Err(ConfigIssue::field("window.count", "must be at least 1"));
        }
        let evicted = |reason: &str| {
            gauges::get().join_evicted.get_or_create_owned(&vec![
                ("component_id".to_string(), metrics.id().to_string()),
                ("reason".to_string(), reason.to_string()),
            ])
        };
        Ok(Accuracy {
            task: self.task,
            request_id: path(&self.request_id_field, "request_id_field")?,
            prediction: path(&self.prediction_field, "prediction_field")?,
            label: path(&self.label_field, "label_field")?,
            join_window: chrono::Duration::seconds(self.join_window_secs as i64),
            max_pending: self.max_pending,
            window_count: self.window.count,
            window_secs: self.window.secs,
            predictions: HashMap::new(),
            prediction_order: VecDeque::new(),
            labels: HashMap::new(),
            label_order: VecDeque::new(),
            windows: HashMap::new(),
            evicted_expired: evicted("expired"),
            evicted_capacity: evicted("capacity"),
            refused: EventsDiscarded::new(
                metrics,
                crate::metrics::discard_reason::QUALITY_WINDOW_REFUSED,
            ),
            now: Utc::now,
        })
    }
}

struct Pending {
    model: (String, String),
    value: Value,
    /// When the prediction was made (its `@timestamp`, else when weir saw it).
    at: DateTime<Utc>,
    /// When weir took it in, for expiry.
    seen: DateTime<Utc>,
}

struct EarlyLabel {
    value: Value,
    at: DateTime<Utc>,
    seen: DateTime<Utc>,
}

#[derive(Default)]
struct Window {
    started: Option<DateTime<Utc>>,
    predictions: u64,
    labelled: u64,
    correct: u64,
    abs_error: f64,
    sq_error: f64,
    delay: f64,
}

/// The transform.
pub struct Accuracy {
    task: Task,
    request_id: OwnedValuePath,
    prediction: OwnedValuePath,
    label: OwnedValuePath,
    join_window: chrono::Duration,
    max_pending: usize,
    window_count: usize,
    window_secs: Option<u64>,
    predictions: HashMap<String, Pending>,
    /// Request ids in arrival order, for expiry; entries already joined are skipped.
    prediction_order: VecDeque<(String, DateTime<Utc>)>,
    labels: HashMap<String, EarlyLabel>,
    label_order: VecDeque<(String, DateTime<Utc>)>,
    windows: HashMap<(String, String), Window>,
    evicted_expired: Counter,
    evicted_capacity: Counter,
    refused: EventsDiscarded,
    now: fn() -> DateTime<Utc>,
}

fn text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::Null => None,
        v @ (Value::Bytes(_) | Value::String(_)) => v.to_str_lossy().map(|s| s.into_owned()),
        Value::Float(f) if f.fract() == 0.0 && f.abs() < 1e15 => {
            Some(format!("{}", f.into_inner() as i64))
        }
        other => Some(other.to_string_lossy().into_owned()),
    }
}

fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Integer(i) => Some(*i as f64),
        Value::Float(f) => Some(f.into_inner()),
        Value::Bytes(_) | Value::String(_) => v.to_str_lossy()?.trim().parse().ok(),
        Value::Boolean(b) => Some(f64::from(u8::from(*b))),
        _ => None,
    }
}

impl Accuracy {
    fn window(&mut self, model: &(String, String), now: DateTime<Utc>) -> Option<&mut Window> {
        if !self.windows.contains_key(model) {
            if self.windows.len() >= MAX_WINDOWS {
                self.refused.emit(1);
                return None;
            }
            self.windows.insert(model.clone(), Window { started: Some(now), ..Window::default() });
        }
        self.windows.get_mut(model)
    }

    fn joined(&mut self, p: Pending, label: Value, label_at: DateTime<Utc>, now: DateTime<Utc>) {
        let task = self.task;
        let Some(w) = self.window(&p.model, now) else { return };
        w.predictions += 1;
        w.labelled += 1;
        w.delay += (label_at - p.at).num_milliseconds().max(0) as f64 / 1000.0;
        match task {
            Task::Classification => {
                if text(Some(&p.value)) == text(Some(&label)) {
                    w.correct += 1;
                }
            }
            Task::Regression => {
                if let (Some(a), Some(b)) = (number(&p.value), number(&label)) {
                    w.abs_error += (a - b).abs();
                    w.sq_error += (a - b).powi(2);
                } else {
                    // Not comparable as numbers: counted as labelled with no error term.
                    w.labelled -= 1;
                }
            }
        }
    }

    fn unlabelled(&mut self, p: Pending, now: DateTime<Utc>) {
        if let Some(w) = self.window(&p.model, now) {
            w.predictions += 1;
        }
    }

    fn evict(&mut self, now: DateTime<Utc>) {
        let horizon = now - self.join_window;
        while let Some((id, seen)) = self.prediction_order.front().cloned() {
            let stale = self.predictions.get(&id).is_none_or(|p| p.seen != seen);
            if stale {
                self.prediction_order.pop_front();
                continue;
            }
            if seen > horizon {
                break;
            }
            self.prediction_order.pop_front();
            if let Some(p) = self.predictions.remove(&id) {
                self.evicted_expired.inc();
                self.unlabelled(p, now);
            }
        }
        while let Some((id, seen)) = self.label_order.front().cloned() {
            let stale = self.labels.get(&id).is_none_or(|l| l.seen != seen);
            if !stale && seen > horizon {
                break;
            }
            self.label_order.pop_front();
            if !stale {
                self.labels.remove(&id);
            }
        }
        // Joined entries leave stale ids behind; compact before they outgrow the state.
        if self.prediction_order.len() > 2 * self.max_pending {
            let predictions = &self.predictions;
            self.prediction_order
                .retain(|(id, seen)| predictions.get(id).is_some_and(|p| p.seen == *seen));
        }
        if self.label_order.len() > 2 * self.max_pending {
            let labels = &self.labels;
            self.label_order.retain(|(id, seen)| labels.get(id).is_some_and(|l| l.seen == *seen));
        }
    }

    fn observe(&mut self, event: &Event, now: DateTime<Utc>) {
        let Some(id) = text(event.get(&self.request_id)) else { return };
        let at = event.timestamp().unwrap_or(now);
        if let Some(label) = event.get(&self.label).filter(|v| !matches!(v, Value::Null)).cloned() {
            match self.predictions.remove(&id) {
                Some(p) => self.joined(p, label, at, now),
                None => {
                    if self.labels.len() >= self.max_pending
                        && let Some((old, _)) = self.label_order.pop_front()
                    {
                        self.labels.remove(&old);
                    }
                    self.labels.insert(id.clone(), EarlyLabel { value: label, at, seen: now });
                    self.label_order.push_back((id, now));
                }
            }
            return;
        }
        let Some(value) =
            event.get(&self.prediction).filter(|v| !matches!(v, Value::Null)).cloned()
        else {
            return;
        };
        let model = (
            text(event.get(&vrl::owned_value_path!("model", "name"))).unwrap_or_default(),
            text(event.get(&vrl::owned_value_path!("model", "version"))).unwrap_or_default(),
        );
        let p = Pending { model, value, at, seen: now };
        if let Some(l) = self.labels.remove(&id) {
            self.joined(p, l.value, l.at, now);
            return;
        }
        while self.predictions.len() >= self.max_pending {
            let Some((old, seen)) = self.prediction_order.pop_front() else { break };
            if self.predictions.get(&old).is_some_and(|p| p.seen == seen)
                && let Some(evicted) = self.predictions.remove(&old)
            {
                self.evicted_capacity.inc();
                self.unlabelled(evicted, now);
            }
        }
        if let Some(previous) = self.predictions.insert(id.clone(), p) {
            // The same request id twice: the older prediction stays unlabelled.
            self.unlabelled(previous, now);
        }
        self.prediction_order.push_back((id, now));
    }

    fn close_windows(&mut self, now: DateTime<Utc>, out: &mut TransformOutput) {
        let count = self.window_count as u64;
        let secs = self.window_secs;
        let done: Vec<(String, String)> = self
            .windows
            .iter()
            .filter(|(_, w)| {
                w.predictions >= count
                    || secs.is_some_and(|s| {
                        w.started.is_some_and(|t| (now - t).num_seconds() >= s as i64)
                    })
            })
            .map(|(k, _)| k.clone())
            .collect();
        for key in done {
            if let Some(w) = self.windows.remove(&key) {
                out.push(self.report(&key, &w, now));
            }
        }
    }

    fn report(&self, (model, version): &(String, String), w: &Window, now: DateTime<Utc>) -> Event {
        let g = gauges::get();
        let l = gauges::labels(model, version, &[]);
        let labelled = w.labelled as f64;
        let coverage = if w.predictions > 0 { labelled / w.predictions as f64 } else { 0.0 };
        g.label_coverage.get_or_create(&l).set(coverage);
        let mut report = QualityReport {
            model: ModelKey { name: model.clone(), version: version.clone() },
            window_start: w.started,
            window_end: Some(now),
            predictions: w.predictions,
            labelled: w.labelled,
            label_coverage: Some(coverage),
            label_delay_seconds: None,
            correct: None,
            accuracy: None,
            mae: None,
            rmse: None,
        };
        if w.labelled > 0 {
            let delay = w.delay / labelled;
            g.label_delay.get_or_create(&l).set(delay);
            report.label_delay_seconds = Some(delay);
            match self.task {
                Task::Classification => {
                    let acc = w.correct as f64 / labelled;
                    g.accuracy.get_or_create(&l).set(acc);
                    report.correct = Some(w.correct);
                    report.accuracy = Some(acc);
                }
                Task::Regression => {
                    let (mae, rmse) = (w.abs_error / labelled, (w.sq_error / labelled).sqrt());
                    g.mae.get_or_create(&l).set(mae);
                    g.rmse.get_or_create(&l).set(rmse);
                    report.mae = Some(mae);
                    report.rmse = Some(rmse);
                }
            }
        }
        report.to_event()
    }
}

impl Transform for Accuracy {
    fn transform(&mut self, events: Vec<Event>, out: &mut TransformOutput) {
        let now = (self.now)();
        for event in &events {
            self.observe(event, now);
        }
        self.evict(now);
        self.close_windows(now, out);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicI64, Ordering};

    use super::*;
    use crate::transforms::test_util::{metrics, run};

    static NOW: AtomicI64 = AtomicI64::new(1_000_000);
    fn clock() -> DateTime<Utc> {
        DateTime::from_timestamp(NOW.load(Ordering::SeqCst), 0).unwrap()
    }

    fn build(toml: &str) -> Accuracy {
        let c: AccuracyConfig = toml_edit::de::from_str(toml).unwrap();
        let mut a = c.build(&metrics()).unwrap();
        a.now = clock;
        a
    }

    fn prediction(id: u64, value: &str) -> Event {
        Event::from_value(crate::event::Value::from(&serde_json::json!({
            "model": {"name": "acc-m", "version": "1"},
            "http": {"request": {"id": (id.to_string())}},
            "inference": {"prediction": value},
        })))
    }

    fn label(id: u64, value: &str) -> Event {
        Event::from_value(crate::event::Value::from(
            &serde_json::json!({"http": {"request": {"id": (id.to_string())}}, "inference": {"label": value}}),
        ))
    }

    fn get(e: &Event, path: &str) -> Value {
        e.get(&parse_path(path).unwrap()).cloned().unwrap_or(Value::Null)
    }

    #[test]
    fn classification_accuracy_coverage_and_early_labels() {
        let mut a = build("task = \"classification\"\nwindow.count = 10\njoin_window_secs = 60");
        // 10 predictions; 8 labelled (6 right, 2 wrong), 2 never labelled.
        let mut events: Vec<Event> =
            (0..10).map(|i| prediction(i, if i < 6 { "yes" } else { "no" })).collect();
        // Label 9 arrives before its prediction in a second stream: it must still join.
        let (out, _) = run(&mut a, 0, vec![label(100, "no")]);
        assert!(out.is_empty());
        events.push(prediction(100, "no"));
        for i in 0..7 {
            events.push(label(i, "yes"));
        }
        let (out, _) = run(&mut a, 0, events);
        assert!(out.is_empty(), "only 8 resolved so far");
        NOW.fetch_add(61, Ordering::SeqCst);
        let (out, _) = run(&mut a, 0, Vec::new());
        assert_eq!(out.len(), 1, "expiry resolves the rest");
        let e = &out[0];
        assert_eq!(get(e, "quality.predictions"), Value::Integer(11));
        assert_eq!(get(e, "quality.labelled"), Value::Integer(8));
        assert_eq!(
            get(e, "quality.correct"),
            Value::Integer(7),
            "ids 0-5 right, 6 wrong, 100 right"
        );
        let Value::Float(acc) = get(e, "quality.accuracy") else { panic!() };
        assert!((acc.into_inner() - 7.0 / 8.0).abs() < 1e-12);
        let Value::Float(cov) = get(e, "quality.label_coverage") else { panic!() };
        assert!((cov.into_inner() - 8.0 / 11.0).abs() < 1e-12);
    }

    #[test]
    fn regression_errors() {
        let mut a = build("task = \"regression\"\nwindow.count = 3");
        let events = vec![
            prediction(1, "1.0"),
            prediction(2, "2.0"),
            prediction(3, "4.0"),
            label(1, "2.0"),
            label(2, "2.0"),
            label(3, "1.0"),
        ];
        let (out, _) = run(&mut a, 0, events);
        let Value::Float(mae) = get(&out[0], "quality.mae") else { panic!() };
        let Value::Float(rmse) = get(&out[0], "quality.rmse") else { panic!() };
        assert!((mae.into_inner() - 4.0 / 3.0).abs() < 1e-12);
        assert!((rmse.into_inner() - (10.0f64 / 3.0).sqrt()).abs() < 1e-12);
    }

    #[test]
    fn join_state_is_bounded_and_eviction_counted() {
        let mut a = build("task = \"classification\"\nmax_pending = 100\nwindow.count = 1000000");
        let before = a.evicted_capacity.get();
        let (out, _) = run(&mut a, 0, (0..1000).map(|i| prediction(i, "x")).collect());
        assert!(out.is_empty());
        assert_eq!(a.predictions.len(), 100);
        assert!(a.prediction_order.len() <= 200);
        assert_eq!(a.evicted_capacity.get() - before, 900);
        // The evicted ones count as unlabelled predictions of their window.
        assert_eq!(a.windows[&("acc-m".to_string(), "1".to_string())].predictions, 900);
    }
}
