//! The reports of the monitoring transforms, as types: a [`DriftReport`] per window of the
//! `drift` transform and a [`QualityReport`] per window of `accuracy`, read by the alerting
//! and MLflow sinks.
//!
//! A report travels as an event, so that any sink can store it (Elasticsearch, Loki, a file);
//! its fields are written by `to_event` and read back by `from_event`, both here, so the
//! transforms and the sinks share these types and never a field name. `from_event` answers
//! `None` for any other event; a report whose optional parts are missing or of another type
//! (an event made by hand, by `remap`) reads as absent parts, never as an error.

use chrono::{DateTime, Utc};
use ordered_float::NotNan;
use vrl::value::{KeyString, ObjectMap, Value};

use crate::event::Event;

/// PSI bands (the common reading of the population stability index): below
/// [`PSI_WARNING`] stable, from [`PSI_CRITICAL`] a significant shift.
pub const PSI_WARNING: f64 = 0.1;
pub const PSI_CRITICAL: f64 = 0.25;

/// `event.action` of a drift report.
pub const DRIFT_ACTION: &str = "drift_window";
/// `event.action` of the per-feature events of a drift report ([`DriftReport::feature_events`]).
pub const DRIFT_FEATURE_ACTION: &str = "drift_feature";
/// `event.action` of a quality report.
pub const QUALITY_ACTION: &str = "quality_window";

/// The band of a PSI value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum PsiLevel {
    Ok,
    Warning,
    Critical,
}

impl PsiLevel {
    pub fn of(psi: f64) -> Self {
        if psi >= PSI_CRITICAL {
            Self::Critical
        } else if psi >= PSI_WARNING {
            Self::Warning
        } else {
            Self::Ok
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Warning => "warning",
            Self::Critical => "critical",
        }
    }
}

/// The model a report is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ModelKey {
    pub name: String,
    /// Empty when the events named no version.
    pub version: String,
}

/// One window of the `drift` transform: the verdict on the dataset and on each feature.
#[derive(Debug, Clone, PartialEq)]
pub struct DriftReport {
    pub model: ModelKey,
    pub window_start: Option<DateTime<Utc>>,
    /// The window's end, also the event's `@timestamp`.
    pub window_end: Option<DateTime<Utc>>,
    /// Events with features in the window.
    pub events: u64,
    /// At least `drift_share` of the tested features drifted.
    pub dataset_drifted: bool,
    /// Drifted features over tested ones.
    pub share: Option<f64>,
    pub features_tested: u64,
    pub features_drifted: u64,
    /// In the reference profile's order.
    pub features: Vec<FeatureReport>,
}

/// One feature of a [`DriftReport`].
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureReport {
    pub name: String,
    pub categorical: bool,
    /// The test used, by Evidently's name (`wasserstein`, `ks`, `jensenshannon`, `chisquare`, `z`).
    pub method: String,
    /// Values of the feature in the window.
    pub samples: u64,
    pub threshold: Option<f64>,
    /// False when the window held fewer than `min_samples` values: no verdict then.
    pub tested: bool,
    pub score: Option<f64>,
    pub statistic: Option<f64>,
    pub p_value: Option<f64>,
    pub drifted: bool,
    pub psi: Option<f64>,
}

impl FeatureReport {
    /// The feature's verdict as a report holds it (under its name).
    fn to_value(&self) -> Value {
        let mut m = ObjectMap::new();
        let mut put = |k: &str, v: Value| {
            m.insert(KeyString::from(k), v);
        };
        put("type", Value::from(if self.categorical { "categorical" } else { "numeric" }));
        put("method", Value::from(self.method.as_str()));
        put("samples", int(self.samples));
        put("tested", Value::Boolean(self.tested));
        put("drifted", Value::Boolean(self.drifted));
        let optional = [
            ("threshold", self.threshold),
            ("score", self.score),
            ("statistic", self.statistic),
            ("p_value", self.p_value),
            ("psi", self.psi),
        ];
        for (k, v) in optional {
            if let Some(v) = v {
                put(k, float(v));
            }
        }
        if let Some(psi) = self.psi {
            put("psi_level", Value::from(PsiLevel::of(psi).as_str()));
        }
        Value::Object(m)
    }
}

impl DriftReport {
    /// The report as the event the `drift` transform emits.
    pub fn to_event(&self) -> Event {
        let features = self
            .features
            .iter()
            .map(|f| (KeyString::from(f.name.as_str()), f.to_value()))
            .collect();
        let mut dataset = object([
            ("drifted", Value::Boolean(self.dataset_drifted)),
            ("features_tested", int(self.features_tested)),
            ("features_drifted", int(self.features_drifted)),
        ]);
        if let Some(share) = self.share {
            dataset.insert("share".into(), float(share));
        }
        let drift = object([
            ("window", self.window()),
            ("dataset", Value::Object(dataset)),
            ("features", Value::Object(features)),
        ]);
        let drift = Value::Object(drift);
        report_event(DRIFT_ACTION, "weir.drift", &self.model, self.window_end, "drift", drift)
    }

    /// One event per feature (`event.action = "drift_feature"`): the window and
    /// `drift.feature.{name,type,method,score,...}`. The report keys its features by name,
    /// which a store that charts by a field's value (Kibana's Lens) cannot split by.
    pub fn feature_events(&self) -> Vec<Event> {
        self.features
            .iter()
            .map(|f| {
                let mut feature = f.to_value();
                if let Value::Object(m) = &mut feature {
                    m.insert("name".into(), Value::from(f.name.as_str()));
                }
                let drift = object([("window", self.window()), ("feature", feature)]);
                let drift = Value::Object(drift);
                let at = self.window_end;
                report_event(DRIFT_FEATURE_ACTION, "weir.drift", &self.model, at, "drift", drift)
            })
            .collect()
    }

    /// `drift.window`: its events, start and end.
    fn window(&self) -> Value {
        let mut window = object([("events", int(self.events))]);
        for (k, t) in [("start", self.window_start), ("end", self.window_end)] {
            if let Some(t) = t {
                window.insert(k.into(), Value::Timestamp(t));
            }
        }
        Value::Object(window)
    }

    /// The drift report an event carries, if it is one.
    pub fn from_event(event: &Event) -> Option<Self> {
        let model = report_model(event, DRIFT_ACTION)?;
        let drift = event.get_top("drift").and_then(Value::as_object);
        let part = |k: &str| drift.and_then(|d| d.get(k)).and_then(Value::as_object);
        let (window, dataset) = (part("window"), part("dataset"));
        let features = part("features")
            .into_iter()
            .flatten()
            .filter_map(|(name, f)| {
                let f = f.as_object()?;
                Some(FeatureReport {
                    name: name.to_string(),
                    categorical: text(f.get("type")).as_deref() == Some("categorical"),
                    method: text(f.get("method")).unwrap_or_default(),
                    samples: count(f.get("samples")),
                    threshold: number(f.get("threshold")),
                    tested: boolean(f.get("tested")),
                    score: number(f.get("score")),
                    statistic: number(f.get("statistic")),
                    p_value: number(f.get("p_value")),
                    drifted: boolean(f.get("drifted")),
                    psi: number(f.get("psi")),
                })
            })
            .collect();
        fn get<'a>(m: Option<&'a ObjectMap>, k: &str) -> Option<&'a Value> {
            m.and_then(|m| m.get(k))
        }
        Some(Self {
            model,
            window_start: timestamp(get(window, "start")),
            window_end: timestamp(get(window, "end")).or_else(|| event.timestamp()),
            events: count(get(window, "events")),
            dataset_drifted: boolean(get(dataset, "drifted")),
            share: number(get(dataset, "share")),
            features_tested: count(get(dataset, "features_tested")),
            features_drifted: count(get(dataset, "features_drifted")),
            features,
        })
    }
}

/// One window of the `accuracy` transform.
#[derive(Debug, Clone, PartialEq)]
pub struct QualityReport {
    pub model: ModelKey,
    pub window_start: Option<DateTime<Utc>>,
    /// The window's end, the event's `@timestamp`.
    pub window_end: Option<DateTime<Utc>>,
    pub predictions: u64,
    pub labelled: u64,
    /// Labelled over predictions.
    pub label_coverage: Option<f64>,
    /// Mean seconds from a prediction to its label (with at least one label).
    pub label_delay_seconds: Option<f64>,
    /// Classification: correct predictions and their share of the labelled ones.
    pub correct: Option<u64>,
    pub accuracy: Option<f64>,
    /// Regression: mean absolute and root mean square error.
    pub mae: Option<f64>,
    pub rmse: Option<f64>,
}

impl QualityReport {
    /// The report as the event the `accuracy` transform emits.
    pub fn to_event(&self) -> Event {
        let mut quality =
            object([("predictions", int(self.predictions)), ("labelled", int(self.labelled))]);
        if let Some(c) = self.correct {
            quality.insert("correct".into(), int(c));
        }
        let optional = [
            ("label_coverage", self.label_coverage),
            ("label_delay_seconds", self.label_delay_seconds),
            ("accuracy", self.accuracy),
            ("mae", self.mae),
            ("rmse", self.rmse),
        ];
        for (k, v) in optional {
            if let Some(v) = v {
                quality.insert(k.into(), float(v));
            }
        }
        if let Some(t) = self.window_start {
            quality
                .insert("window".into(), Value::Object(object([("start", Value::Timestamp(t))])));
        }
        let quality = Value::Object(quality);
        report_event(
            QUALITY_ACTION,
            "weir.quality",
            &self.model,
            self.window_end,
            "quality",
            quality,
        )
    }

    /// The quality report an event carries, if it is one.
    pub fn from_event(event: &Event) -> Option<Self> {
        let model = report_model(event, QUALITY_ACTION)?;
        let q = event.get_top("quality").and_then(Value::as_object);
        let get = |k: &str| q.and_then(|q| q.get(k));
        let window = get("window").and_then(Value::as_object);
        Some(Self {
            model,
            window_start: timestamp(window.and_then(|w| w.get("start"))),
            window_end: event.timestamp(),
            predictions: count(get("predictions")),
            labelled: count(get("labelled")),
            label_coverage: number(get("label_coverage")),
            label_delay_seconds: number(get("label_delay_seconds")),
            correct: get("correct").map(|v| count(Some(v))),
            accuracy: number(get("accuracy")),
            mae: number(get("mae")),
            rmse: number(get("rmse")),
        })
    }
}

/// The event of a report: ECS `event.*` saying what it is, `model.*`, the report's own tree
/// under `key`, and `@timestamp` at the window's end.
fn report_event(
    action: &str,
    dataset: &str,
    model: &ModelKey,
    at: Option<DateTime<Utc>>,
    key: &str,
    body: Value,
) -> Event {
    let root = object([
        (
            "event",
            Value::Object(object([
                ("kind", Value::from("metric")),
                ("action", Value::from(action)),
                ("dataset", Value::from(dataset)),
            ])),
        ),
        (
            "model",
            Value::Object(object([
                ("name", Value::from(model.name.as_str())),
                ("version", Value::from(model.version.as_str())),
            ])),
        ),
        (key, body),
    ]);
    let mut e = Event::from_value(Value::Object(root));
    if let Some(t) = at {
        e.insert_key("@timestamp", Value::Timestamp(t));
    }
    e.recompute_size();
    e
}

/// The model of a report event with `event.action` = `action`.
fn report_model(event: &Event, action: &str) -> Option<ModelKey> {
    let ev = event.get_top("event")?.as_object()?;
    if text(ev.get("action")).as_deref() != Some(action) {
        return None;
    }
    let model = event.get_top("model")?.as_object()?;
    Some(ModelKey {
        name: text(model.get("name"))?,
        version: text(model.get("version")).unwrap_or_default(),
    })
}

fn object<const N: usize>(entries: [(&str, Value); N]) -> ObjectMap {
    entries.into_iter().map(|(k, v)| (KeyString::from(k), v)).collect()
}

fn float(f: f64) -> Value {
    NotNan::new(f).map(Value::Float).unwrap_or(Value::Null)
}

fn int(n: u64) -> Value {
    Value::Integer(i64::try_from(n).unwrap_or(i64::MAX))
}

fn text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::Bytes(_) => v?.to_str_lossy().map(|s| s.into_owned()),
        Value::Null => None,
        other => Some(other.to_string_lossy().into_owned()),
    }
}

/// A finite number (an integer reads as its value).
fn number(v: Option<&Value>) -> Option<f64> {
    match v? {
        Value::Float(f) => Some(f.into_inner()).filter(|f| f.is_finite()),
        Value::Integer(i) => Some(*i as f64),
        _ => None,
    }
}

fn count(v: Option<&Value>) -> u64 {
    match v {
        Some(Value::Integer(i)) => u64::try_from(*i).unwrap_or(0),
        _ => 0,
    }
}

fn boolean(v: Option<&Value>) -> bool {
    matches!(v, Some(Value::Boolean(true)))
}

fn timestamp(v: Option<&Value>) -> Option<DateTime<Utc>> {
    match v? {
        Value::Timestamp(t) => Some(*t),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn t(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_800_000_000 + secs, 0).unwrap()
    }

    fn model() -> ModelKey {
        ModelKey { name: "churn".into(), version: "3".into() }
    }

    #[test]
    fn a_drift_report_reads_back_as_written() {
        let report = DriftReport {
            model: model(),
            window_start: Some(t(0)),
            window_end: Some(t(60)),
            events: 1000,
            dataset_drifted: true,
            share: Some(0.5),
            features_tested: 2,
            features_drifted: 1,
            features: vec![
                FeatureReport {
                    name: "tenure months".into(),
                    categorical: false,
                    method: "wasserstein".into(),
                    samples: 1000,
                    threshold: Some(0.1),
                    tested: true,
                    score: Some(0.3),
                    statistic: None,
                    p_value: None,
                    drifted: true,
                    psi: Some(0.4),
                },
                FeatureReport {
                    name: "plan".into(),
                    categorical: true,
                    method: "chi_square".into(),
                    samples: 3,
                    threshold: Some(0.05),
                    tested: false,
                    score: None,
                    statistic: None,
                    p_value: None,
                    drifted: false,
                    psi: None,
                },
            ],
        };
        let e = report.to_event();
        let json = serde_json::to_value(e.view()).unwrap();
        assert_eq!(json["event"]["action"], "drift_window");
        assert_eq!(json["drift"]["features"]["tenure months"]["psi_level"], "critical");
        assert_eq!(json["drift"]["dataset"]["share"], 0.5);
        let mut back = DriftReport::from_event(&e).unwrap();
        // Features come back in key order.
        back.features.sort_by(|a, b| b.name.cmp(&a.name));
        assert_eq!(back, report);
        assert!(QualityReport::from_event(&e).is_none());
        assert!(DriftReport::from_event(&Event::from_message("x")).is_none());
    }

    #[test]
    fn a_quality_report_reads_back_as_written() {
        let report = QualityReport {
            model: model(),
            window_start: Some(t(0)),
            window_end: Some(t(60)),
            predictions: 10,
            labelled: 8,
            label_coverage: Some(0.8),
            label_delay_seconds: Some(2.5),
            correct: Some(6),
            accuracy: Some(0.75),
            mae: None,
            rmse: None,
        };
        let e = report.to_event();
        assert_eq!(QualityReport::from_event(&e).unwrap(), report);
        assert!(DriftReport::from_event(&e).is_none());
    }

    #[test]
    fn psi_bands() {
        assert_eq!(PsiLevel::of(0.05), PsiLevel::Ok);
        assert_eq!(PsiLevel::of(PSI_WARNING), PsiLevel::Warning);
        assert_eq!(PsiLevel::of(PSI_CRITICAL), PsiLevel::Critical);
        assert_eq!(PsiLevel::of(f64::NAN), PsiLevel::Ok);
    }
}
