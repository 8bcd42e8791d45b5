//! `drift`: compares live feature values with a reference profile of the training data over
//! tumbling windows, and emits one drift report per window.
//!
//! ```toml
//! [transforms.drift]
//! type = "drift"
//! inputs = ["inference"]
//! references = ["/etc/weir/churn-xgb-3.profile.json"]   # written by `weir profile`
//! window.count = 1000        # a window closes after this many events with features ...
//! window.secs = 300          # ... or this long after it opened, whichever comes first
//! min_samples = 100          # features with fewer values in a window are not tested
//! ```
//!
//! Events are read from `field` (default `inference.features`, as `parse_model_log` writes
//! them), grouped by `model.name` and `model.version`, and matched to the reference profile
//! of that model (a profile without a version matches every version).
//!
//! Without a training profile, `baseline_events = N` takes the first N events of each model
//! and version as its reference (drift against a production baseline rather than against
//! the training data); a model with a profile in `references` uses the profile. The tests are
//! Evidently's default selection (`evidently/legacy/calculations/stattests/registry.py`,
//! `_get_default_stattest`), by the feature's type (see [`crate::monitoring::profile`]), the
//! reference's size and the number of distinct values in reference and window together:
//!
//! | feature | reference rows > 1000 | otherwise |
//! |---|---|---|
//! | numeric, more than 5 values | Wasserstein distance / reference std, drift at >= 0.1 | two-sample KS, drift at p <= 0.05 |
//! | numeric, at most 5 values | Jensen-Shannon distance over the values, drift at >= 0.1 | chi-square (3 to 5 values) or Z-test (2), drift at p < 0.05 |
//! | categorical | Jensen-Shannon distance, drift at >= 0.1 | chi-square, or the two-proportion Z-test for at most 2 categories, drift at p < 0.05 |
//!
//! Scores are Evidently's to 1e-9 when the profile kept the reference's values (up to
//! 100,000 per feature, `RAW_SAMPLE_MAX`). Above that, the Wasserstein distance is computed
//! from 1,000 quantiles of the profile's sketch; its measured error is below
//! [`SKETCH_WASSERSTEIN_ERROR`] of the normed distance (the threshold is 0.1).
//!
//! PSI is always reported (`ok` < 0.1 <= `warning` < 0.25 <= `critical`), over the
//! reference's decile bins for numeric features and over categories for categorical ones.
//! The dataset drifts when at least `drift_share` (default 0.5) of the tested features drift.
//!
//! Output: the transform consumes its input (the events are observed, as by a metric
//! aggregator, and count as delivered) and emits one event per closed window:
//! `event.action = "drift_window"`, `model.*`, `drift.window.{start,end,events}`,
//! `drift.dataset.{drifted,share,features_drifted,features_tested}` and
//! `drift.features.<name>.{type,method,score,threshold,p_value,statistic,drifted,psi,
//! psi_level,samples}`. It also sets the gauges of [`crate::monitoring::gauges`]. With
//! `feature_events = true` it emits as well one event per feature of the window
//! (`event.action = "drift_feature"`, `drift.window.*`, `drift.feature.{name,type,method,
//! score,...}`), which a store can chart split by the feature's name.
//!
//! Invariants: memory is bounded: a window holds at most `window.count` values per feature,
//! and at most [`MAX_WINDOWS`] model/version windows are open (events of further ones are
//! counted as `drift_window_refused` and not tested). A window closes when an event arrives
//! after its end (transforms run on arriving batches), and a window still open when weir stops
//! is not reported.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use vrl::path::OwnedValuePath;
use vrl::value::{ObjectMap, Value};

use super::{Transform, TransformOutput};
use crate::component::TransformComponent;
use crate::error::ConfigIssue;
use crate::event::{Event, parse_path};
use crate::internal_events::EventsDiscarded;
use crate::metrics::ComponentMetrics;
use crate::monitoring::gauges;
use crate::monitoring::profile::{FEW_VALUES, FeatureProfile, OTHER_CATEGORY, Profile};
use crate::monitoring::report::{DriftReport, FeatureReport, ModelKey};
use crate::monitoring::stats;

/// Where the model's name and version are read, beside the features (see `reads`).
static MODEL_NAME: LazyLock<OwnedValuePath> =
    LazyLock::new(|| vrl::owned_value_path!("model", "name"));
static MODEL_VERSION: LazyLock<OwnedValuePath> =
    LazyLock::new(|| vrl::owned_value_path!("model", "version"));

/// The most model/version windows open at once.
pub const MAX_WINDOWS: usize = 256;
/// Evidently's switch between the tests: above this many reference rows, distances.
pub const LARGE_REFERENCE_ROWS: u64 = 1000;
/// Drift thresholds (Evidently's defaults).
pub const DISTANCE_THRESHOLD: f64 = 0.1;
pub const P_VALUE_THRESHOLD: f64 = 0.05;
/// The largest error of the normed Wasserstein distance from a sketched reference (above
/// `RAW_SAMPLE_MAX` values) against the exact one: the unit test measured at most 0.0013 over
/// skewed and symmetric references of 300,000 values and shifted windows.
pub const SKETCH_WASSERSTEIN_ERROR: f64 = 0.002;
/// Points of the reference quantile function used for the Wasserstein distance.
const REFERENCE_QUANTILES: usize = 1000;
/// The most values a window may hold per feature, whatever `window.count` says.
const MAX_WINDOW_COUNT: usize = 1_000_000;

/// The most features a baseline collects per model.
pub const MAX_BASELINE_FEATURES: usize = 100;

/// `[transforms.<id>] type = "drift"`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DriftConfig {
    /// Reference profiles written by `weir profile`, one per model (and version).
    #[serde(default)]
    pub references: Vec<PathBuf>,
    /// For models without a profile: the first this many events are the reference.
    #[serde(default)]
    pub baseline_events: Option<usize>,
    /// Features to test; default: every feature of the profile.
    #[serde(default)]
    pub features: Vec<String>,
    /// Where the events hold their feature values.
    #[serde(default = "default_field")]
    pub field: String,
    /// The comparison window: `window.count` events, or `window.secs`, whichever comes
    /// first.
    #[serde(default)]
    pub window: WindowConfig,
    /// Features with fewer values in a window are reported as not tested.
    #[serde(default = "default_min_samples")]
    pub min_samples: usize,
    /// Share of drifted features at which the dataset counts as drifted.
    #[serde(default = "default_drift_share")]
    pub drift_share: f64,
    /// Also emit one event per feature and window (`event.action = "drift_feature"`), for
    /// stores that chart by a field's value: Kibana's drift dashboard splits by
    /// `drift.feature.name`.
    #[serde(default)]
    pub feature_events: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowConfig {
    /// Events per window. Default 1000.
    #[serde(default = "default_window_count")]
    pub count: usize,
    /// Seconds a window stays open at most. Default: no time limit.
    #[serde(default)]
    pub secs: Option<u64>,
}

impl Default for WindowConfig {
    fn default() -> Self {
        Self { count: default_window_count(), secs: None }
    }
}

fn default_field() -> String {
    "inference.features".into()
}
fn default_window_count() -> usize {
    1000
}
fn default_min_samples() -> usize {
    100
}
fn default_drift_share() -> f64 {
    0.5
}

impl TransformComponent for DriftConfig {
    type Built = Drift;

    /// What can be checked without reading the profiles.
    fn check(&self, _metrics: &ComponentMetrics) -> Vec<ConfigIssue> {
        let mut issues = Vec::new();
        if self.references.is_empty() && self.baseline_events.is_none() {
            issues.push(ConfigIssue::field(
                "references",
                "give at least one profile written by `weir profile`, or `baseline_events`",
            ));
        }
        if self.baseline_events.is_some_and(|n| !(2..=MAX_WINDOW_COUNT).contains(&n)) {
            issues.push(ConfigIssue::field(
                "baseline_events",
                format!("must be between 2 and {MAX_WINDOW_COUNT}"),
            ));
        }
        if self.window.count == 0 || self.window.count > MAX_WINDOW_COUNT {
            issues.push(ConfigIssue::field(
                "window.count",
                format!("must be between 1 and {MAX_WINDOW_COUNT}"),
            ));
        }
        if self.window.secs == Some(0) {
            issues.push(ConfigIssue::field("window.secs", "must be at least 1"));
        }
        if self.min_samples == 0 || self.min_samples > self.window.count {
            issues.push(ConfigIssue::field("min_samples", "must be between 1 and window.count"));
        }
        if !(self.drift_share > 0.0 && self.drift_share <= 1.0) {
            issues.push(ConfigIssue::field("drift_share", "must be in (0, 1]"));
        }
        if let Err(e) = parse_path(&self.field) {
            issues.push(ConfigIssue::field("field", e));
        }
        issues
    }

    /// Drift emits reports, never its input: it needs only the features and the model.
    fn reads(&self) -> Option<Vec<OwnedValuePath>> {
        let features = parse_path(&self.field).ok()?;
        Some(vec![features, MODEL_NAME.clone(), MODEL_VERSION.clone()])
    }

    /// Reads the profiles and builds the transform.
    fn build(&self, metrics: &ComponentMetrics) -> Result<Drift, ConfigIssue> {
        if let Some(issue) = self.check(metrics).into_iter().next() {
            return Err(issue);
        }
        let mut references = Vec::new();
        for path in &self.references {
            let profile =
                Profile::load(path).map_err(|e| ConfigIssue::field("references", e.to_string()))?;
            references.push(Reference::new(&profile, &self.features).map_err(|e| {
                ConfigIssue::field("references", format!("{}: {e}", path.display()))
            })?);
        }
        Ok(Drift {
            references,
            field: parse_path(&self.field).map_err(|e| ConfigIssue::field("field", e))?,
            window_count: self.window.count,
            window_secs: self.window.secs,
            min_samples: self.min_samples,
            drift_share: self.drift_share,
            feature_events: self.feature_events,
            windows: HashMap::new(),
            refused: EventsDiscarded::new(
                metrics,
                crate::metrics::discard_reason::DRIFT_WINDOW_REFUSED,
            ),
            now: Utc::now,
            baseline_events: self.baseline_events,
            only: self.features.clone(),
            baselines: HashMap::new(),
            component: metrics.id().to_string(),
        })
    }
}

/// A baseline being gathered: every value of each feature, by type as seen.
#[derive(Default)]
struct Baseline {
    events: usize,
    numbers: BTreeMap<String, Vec<f64>>,
    texts: BTreeMap<String, HashMap<String, u64>>,
}

impl Baseline {
    fn push(&mut self, features: &ObjectMap, only: &[String]) {
        self.events += 1;
        for (name, v) in features {
            if !only.is_empty() && !only.iter().any(|o| o.as_str() == name.as_str()) {
                continue;
            }
            let known =
                self.numbers.contains_key(name.as_str()) || self.texts.contains_key(name.as_str());
            if !known && self.numbers.len() + self.texts.len() >= MAX_BASELINE_FEATURES {
                continue;
            }
            match v {
                Value::Integer(_) | Value::Float(_) => {
                    if let Some(x) = number(v) {
                        self.numbers.entry(name.to_string()).or_default().push(x);
                    }
                }
                other => {
                    if let Some(c) = category(other) {
                        *self.texts.entry(name.to_string()).or_default().entry(c).or_default() += 1;
                    }
                }
            }
        }
    }

    /// The profile of what was gathered; a feature seen both as numbers and as text is
    /// categorical.
    fn into_profile(self, model: &str, version: &str) -> Profile {
        use crate::monitoring::profile::{
            CategoricalProfile, ModelId, NumericProfile, PROFILE_VERSION,
        };
        let mut features = BTreeMap::new();
        let mut numbers = self.numbers;
        for (name, mut counts) in self.texts {
            for x in numbers.remove(&name).unwrap_or_default() {
                *counts.entry(x.to_string()).or_default() += 1;
            }
            let p = CategoricalProfile::from_counts(counts, 0);
            features.insert(name, FeatureProfile::Categorical(p));
        }
        for (name, values) in numbers {
            if let Some(p) = NumericProfile::from_values(values, 0) {
                features.insert(name, FeatureProfile::Numeric(Box::new(p)));
            }
        }
        Profile {
            weir_profile: PROFILE_VERSION,
            model: Some(ModelId { name: model.to_string(), version: Some(version.to_string()) }),
            rows: self.events as u64,
            features,
        }
    }
}

/// One reference profile, prepared for testing.
pub struct Reference {
    model: Option<(String, Option<String>)>,
    features: Vec<FeatureRef>,
}

struct FeatureRef {
    name: String,
    kind: RefKind,
}

enum RefKind {
    Numeric {
        rows: u64,
        std: f64,
        /// The reference quantile function at evenly spaced points, for Wasserstein.
        quantiles: Vec<f64>,
        /// The raw reference values (up to `RAW_SAMPLE_MAX`), for KS and an exact
        /// Wasserstein distance.
        sample: Option<Vec<f64>>,
        /// The reference's values and counts when it has at most `FEW_VALUES` of them.
        few_values: Option<Vec<(f64, u64)>>,
        edges: Vec<f64>,
        proportions: Vec<f64>,
    },
    Categorical {
        rows: u64,
        /// Categories in a fixed order, with the reference count of each.
        categories: Vec<String>,
        counts: Vec<f64>,
        other: f64,
    },
}

impl Reference {
    pub fn new(profile: &Profile, only: &[String]) -> Result<Self, String> {
        let mut features = Vec::new();
        for f in only {
            if !profile.features.contains_key(f) {
                return Err(format!("feature `{f}` is not in the profile"));
            }
        }
        for (name, fp) in &profile.features {
            if !only.is_empty() && !only.contains(name) {
                continue;
            }
            let kind = match fp {
                FeatureProfile::Numeric(n) => {
                    let quantiles = (0..REFERENCE_QUANTILES)
                        .map(|k| {
                            let q = (k as f64 + 0.5) / REFERENCE_QUANTILES as f64;
                            n.sketch.quantile(q).ok().flatten().unwrap_or(n.mean)
                        })
                        .collect();
                    RefKind::Numeric {
                        rows: n.count,
                        std: n.std,
                        quantiles,
                        sample: n.sample.clone(),
                        few_values: n.few_values.clone(),
                        edges: n.bin_edges.clone(),
                        proportions: n.bin_proportions.clone(),
                    }
                }
                FeatureProfile::Categorical(c) => RefKind::Categorical {
                    rows: c.count,
                    categories: c.frequencies.keys().cloned().collect(),
                    counts: c.frequencies.values().map(|v| *v as f64).collect(),
                    other: c.other as f64,
                },
            };
            features.push(FeatureRef { name: name.clone(), kind });
        }
        if features.is_empty() {
            return Err("the profile has no features to test".into());
        }
        Ok(Self {
            model: profile.model.as_ref().map(|m| (m.name.clone(), m.version.clone())),
            features,
        })
    }

    fn matches(&self, model: &str, version: &str) -> bool {
        match &self.model {
            None => true,
            Some((m, v)) => m == model && v.as_deref().is_none_or(|v| v == version),
        }
    }
}

/// The values of one model/version gathered in the open window.
struct Window {
    reference: usize,
    started: DateTime<Utc>,
    events: usize,
    numeric: Vec<Vec<f64>>,
    categorical: Vec<HashMap<String, u64>>,
}

/// The transform.
pub struct Drift {
    references: Vec<Reference>,
    field: OwnedValuePath,
    window_count: usize,
    window_secs: Option<u64>,
    min_samples: usize,
    drift_share: f64,
    feature_events: bool,
    windows: HashMap<(String, String), Window>,
    refused: EventsDiscarded,
    now: fn() -> DateTime<Utc>,
    baseline_events: Option<usize>,
    only: Vec<String>,
    baselines: HashMap<(String, String), Baseline>,
    component: String,
}

fn text(v: Option<&Value>) -> String {
    match v {
        Some(Value::Null) | None => String::new(),
        Some(v @ (Value::Bytes(_) | Value::String(_))) => {
            v.to_str_lossy().unwrap_or_default().into_owned()
        }
        Some(other) => other.to_string_lossy().into_owned(),
    }
}

fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Integer(i) => Some(*i as f64),
        Value::Float(f) => Some(f.into_inner()),
        Value::Bytes(_) | Value::String(_) => v.to_str_lossy()?.trim().parse::<f64>().ok(),
        _ => None,
    }
    .filter(|f| f.is_finite())
}

fn category(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::Bytes(_) | Value::String(_) => v.to_str_lossy().map(|s| s.into_owned()),
        other => Some(other.to_string_lossy().into_owned()),
    }
}

/// The verdict on one feature in one window.
#[derive(Debug, Clone)]
pub struct FeatureDrift {
    pub name: String,
    pub categorical: bool,
    pub method: &'static str,
    pub samples: usize,
    /// `None` when the window had fewer than `min_samples` values.
    pub score: Option<f64>,
    pub threshold: f64,
    pub statistic: Option<f64>,
    pub p_value: Option<f64>,
    pub drifted: bool,
    pub psi: Option<f64>,
}

impl FeatureDrift {
    fn report(&self) -> FeatureReport {
        FeatureReport {
            name: self.name.clone(),
            categorical: self.categorical,
            method: self.method.to_string(),
            samples: self.samples as u64,
            threshold: Some(self.threshold),
            tested: self.score.is_some(),
            score: self.score,
            statistic: self.statistic,
            p_value: self.p_value,
            drifted: self.drifted,
            psi: self.psi,
        }
    }
}

impl FeatureRef {
    fn test_numeric(&self, values: &mut [f64], min_samples: usize) -> FeatureDrift {
        let RefKind::Numeric { rows, std, quantiles, sample, few_values, edges, proportions } =
            &self.kind
        else {
            unreachable!("called for numeric features only")
        };
        values.sort_by(f64::total_cmp);
        let small = *rows <= LARGE_REFERENCE_ROWS;
        // Evidently counts the distinct values of reference and current together: with at most
        // five, the values are tested as categories.
        let few = few_values.as_deref().and_then(|r| few_counts(r, values));
        let method = match (&few, small) {
            (Some(f), true) => {
                if f.0.len() > 2 {
                    "chisquare"
                } else {
                    "z"
                }
            }
            (Some(_), false) => "jensenshannon",
            (None, true) => "ks",
            (None, false) => "wasserstein",
        };
        let mut r = FeatureDrift::untested(&self.name, false, method, values.len());
        if values.len() < min_samples {
            return r;
        }
        match (few, method) {
            (Some((reference, current)), _) => {
                r.set(categorical_test(method, &reference, &current))
            }
            (None, "ks") => {
                if let Some(t) = sample.as_deref().and_then(|s| stats::ks_2samp(s, values)) {
                    r.set(Score::p_value(t));
                }
            }
            _ => {
                // Exact on the raw reference; from the sketch's quantiles above RAW_SAMPLE_MAX.
                let reference = sample.as_deref().unwrap_or(quantiles.as_slice());
                let w = stats::wasserstein(reference, values).unwrap_or(0.0);
                // A constant reference: any movement is drift.
                let score = if *std > 0.0 {
                    w / std
                } else if w > 0.0 {
                    f64::INFINITY
                } else {
                    0.0
                };
                r.set(Score { score, statistic: w, p_value: None });
            }
        }
        r.psi = Some(stats::psi(proportions, &stats::bin_proportions(edges, values)));
        r
    }

    fn test_categorical(&self, seen: &HashMap<String, u64>, min_samples: usize) -> FeatureDrift {
        let RefKind::Categorical { rows, categories, counts, other } = &self.kind else {
            unreachable!("called for categorical features only")
        };
        let n: u64 = seen.values().sum();
        // Reference categories in order, then "other", then categories new in this window.
        let mut reference: Vec<f64> = counts.clone();
        let mut current: Vec<f64> =
            categories.iter().map(|c| *seen.get(c).unwrap_or(&0) as f64).collect();
        let mut new: BTreeMap<&str, u64> = BTreeMap::new();
        for (c, k) in seen {
            if categories.binary_search(c).is_err() {
                new.insert(c.as_str(), *k);
            }
        }
        if *other > 0.0 {
            // Unknown categories may be among the reference's "other".
            reference.push(*other);
            current.push(new.values().sum::<u64>() as f64);
        } else {
            for k in new.values() {
                reference.push(0.0);
                current.push(*k as f64);
            }
        }
        let present =
            reference.iter().zip(&current).filter(|(r, c)| **r > 0.0 || **c > 0.0).count();
        let method = match (*rows <= LARGE_REFERENCE_ROWS, present <= 2) {
            (true, true) => "z",
            (true, false) => "chisquare",
            (false, _) => "jensenshannon",
        };
        let mut r = FeatureDrift::untested(&self.name, true, method, n as usize);
        if (n as usize) < min_samples {
            return r;
        }
        r.set(categorical_test(method, &reference, &current));
        let ref_total: f64 = reference.iter().sum();
        let ref_props: Vec<f64> = reference.iter().map(|c| c / ref_total).collect();
        let cur_props: Vec<f64> = current.iter().map(|c| c / n as f64).collect();
        r.psi = Some(stats::psi(&ref_props, &cur_props));
        r
    }
}

/// A test's score, statistic and p-value.
struct Score {
    score: f64,
    statistic: f64,
    p_value: Option<f64>,
}

impl Score {
    fn p_value(t: stats::TestResult) -> Self {
        Self { score: t.p_value, statistic: t.statistic, p_value: Some(t.p_value) }
    }
}

impl FeatureDrift {
    fn untested(name: &str, categorical: bool, method: &'static str, samples: usize) -> Self {
        let distance = matches!(method, "wasserstein" | "jensenshannon");
        Self {
            name: name.to_string(),
            categorical,
            method,
            samples,
            score: None,
            threshold: if distance { DISTANCE_THRESHOLD } else { P_VALUE_THRESHOLD },
            statistic: None,
            p_value: None,
            drifted: false,
            psi: None,
        }
    }

    /// Records a score and decides as Evidently does: distances drift at or above the
    /// threshold, p-values below it (KS at or below).
    fn set(&mut self, s: Score) {
        self.drifted = match self.method {
            "wasserstein" | "jensenshannon" => s.score >= self.threshold,
            "ks" => s.score <= self.threshold,
            _ => s.score < self.threshold,
        };
        self.score = Some(s.score);
        self.statistic = Some(s.statistic);
        self.p_value = s.p_value;
    }
}

/// The counts of each value in the reference and the window, when together they hold at most
/// `FEW_VALUES` distinct values (`values` sorted).
fn few_counts(reference: &[(f64, u64)], values: &[f64]) -> Option<(Vec<f64>, Vec<f64>)> {
    let mut keys: Vec<f64> = reference.iter().map(|(v, _)| *v).collect();
    for v in values {
        if !keys.contains(v) {
            if keys.len() == FEW_VALUES {
                return None;
            }
            keys.push(*v);
        }
    }
    keys.sort_by(f64::total_cmp);
    let ref_counts = keys
        .iter()
        .map(|k| reference.iter().find(|(v, _)| v == k).map_or(0.0, |(_, c)| *c as f64))
        .collect();
    let cur_counts =
        keys.iter().map(|k| values.iter().filter(|v| *v == k).count() as f64).collect();
    Some((ref_counts, cur_counts))
}

/// Evidently's tests of counts over the same categories (reference, current).
fn categorical_test(method: &str, reference: &[f64], current: &[f64]) -> Score {
    let (n_ref, n_cur) = (reference.iter().sum::<f64>(), current.iter().sum::<f64>());
    match method {
        "jensenshannon" => {
            let d = stats::jensen_shannon(reference, current).unwrap_or(0.0);
            Score { score: d, statistic: d, p_value: None }
        }
        "z" => {
            // The share of the second category (of at most two); one category only: p = 1.
            let present: Vec<usize> =
                (0..reference.len()).filter(|i| reference[*i] > 0.0 || current[*i] > 0.0).collect();
            let t = match present.get(1) {
                Some(&i) => stats::z_test(reference[i], n_ref, current[i], n_cur),
                None => stats::z_test(0.0, n_ref, 0.0, n_cur),
            };
            Score::p_value(t.unwrap_or(stats::TestResult { statistic: 0.0, p_value: 1.0 }))
        }
        _ => {
            let expected: Vec<f64> = reference.iter().map(|c| c * n_cur / n_ref).collect();
            match stats::chi_square(current, &expected) {
                Some(t) => Score::p_value(t),
                None => Score { score: 1.0, statistic: 0.0, p_value: Some(1.0) },
            }
        }
    }
}

impl Drift {
    /// Tests the window's features and emits its report (and, when asked, its features'
    /// events).
    fn close(
        &self,
        key: (String, String),
        w: Window,
        end: DateTime<Utc>,
        out: &mut TransformOutput,
    ) {
        let reference = &self.references[w.reference];
        let mut results = Vec::new();
        let (mut ni, mut ci) = (0, 0);
        let mut numeric = w.numeric;
        for f in &reference.features {
            match f.kind {
                RefKind::Numeric { .. } => {
                    results.push(f.test_numeric(&mut numeric[ni], self.min_samples));
                    ni += 1;
                }
                RefKind::Categorical { .. } => {
                    results.push(f.test_categorical(&w.categorical[ci], self.min_samples));
                    ci += 1;
                }
            }
        }
        let tested = results.iter().filter(|r| r.score.is_some()).count();
        let drifted = results.iter().filter(|r| r.drifted).count();
        let share = if tested > 0 { drifted as f64 / tested as f64 } else { 0.0 };
        let dataset_drift = tested > 0 && share >= self.drift_share;

        let (model, version) = key;
        let g = gauges::get();
        for r in &results {
            let Some(score) = r.score else { continue };
            let l = gauges::labels(&model, &version, &[("feature", &r.name)]);
            let mut with_method = l.clone();
            with_method.push(("method".into(), r.method.into()));
            g.drift_score.get_or_create(&with_method).set(score);
            g.drift_detected.get_or_create(&l).set(if r.drifted { 1.0 } else { 0.0 });
            if let Some(psi) = r.psi {
                g.drift_psi.get_or_create(&l).set(psi);
            }
        }
        if tested > 0 {
            let l = gauges::labels(&model, &version, &[]);
            g.dataset_drift_detected.get_or_create(&l).set(if dataset_drift { 1.0 } else { 0.0 });
            g.dataset_drift_share.get_or_create(&l).set(share);
        }
        let report = DriftReport {
            model: ModelKey { name: model, version },
            window_start: Some(w.started),
            window_end: Some(end),
            events: w.events as u64,
            dataset_drifted: dataset_drift,
            share: Some(share),
            features_tested: tested as u64,
            features_drifted: drifted as u64,
            features: results.iter().map(FeatureDrift::report).collect(),
        };
        out.push(report.to_event());
        if self.feature_events {
            for e in report.feature_events() {
                out.push(e);
            }
        }
    }

    fn observe(&mut self, event: &Event, out: &mut TransformOutput) {
        let Some(Value::Object(features)) = event.get(&self.field) else { return };
        let model = text(event.get(&MODEL_NAME));
        let version = text(event.get(&MODEL_VERSION));
        let key = (model, version);
        let now = (self.now)();
        if !self.windows.contains_key(&key) {
            let Some(reference) = self.references.iter().position(|r| r.matches(&key.0, &key.1))
            else {
                self.gather_baseline(key, features);
                return;
            };
            if self.windows.len() >= MAX_WINDOWS {
                self.refused.emit(1);
                return;
            }
            let r = &self.references[reference];
            let numeric =
                r.features.iter().filter(|f| matches!(f.kind, RefKind::Numeric { .. })).count();
            let categorical = r.features.len() - numeric;
            self.windows.insert(
                key.clone(),
                Window {
                    reference,
                    started: now,
                    events: 0,
                    numeric: vec![Vec::new(); numeric],
                    categorical: vec![HashMap::new(); categorical],
                },
            );
        }
        let Some(w) = self.windows.get_mut(&key) else { return };
        let reference = &self.references[w.reference];
        let (mut ni, mut ci) = (0, 0);
        let mut any = false;
        for f in &reference.features {
            let v = features.get(f.name.as_str());
            match f.kind {
                RefKind::Numeric { .. } => {
                    if let Some(x) = v.and_then(number) {
                        w.numeric[ni].push(x);
                        any = true;
                    }
                    ni += 1;
                }
                RefKind::Categorical { ref categories, other, .. } => {
                    if let Some(c) = v.and_then(category) {
                        // Categories beyond the reference's kept ones share one slot, which
                        // bounds the map by the reference's size plus one.
                        let c = if other > 0.0 && categories.binary_search(&c).is_err() {
                            OTHER_CATEGORY.to_string()
                        } else {
                            c
                        };
                        *w.categorical[ci].entry(c).or_default() += 1;
                        any = true;
                    }
                    ci += 1;
                }
            }
        }
        if any {
            w.events += 1;
        }
        let full = w.events >= self.window_count;
        let expired = self.window_secs.is_some_and(|s| (now - w.started).num_seconds() >= s as i64);
        if (full || expired)
            && let Some(w) = self.windows.remove(&key)
        {
            self.close(key, w, now, out);
        }
    }

    /// Adds an event of a model without a reference to its baseline; a full baseline becomes
    /// the model's reference.
    fn gather_baseline(&mut self, key: (String, String), features: &ObjectMap) {
        let Some(n) = self.baseline_events else { return };
        if !self.baselines.contains_key(&key) && self.baselines.len() >= MAX_WINDOWS {
            self.refused.emit(1);
            return;
        }
        let b = self.baselines.entry(key.clone()).or_default();
        b.push(features, &self.only);
        if b.events < n {
            return;
        }
        let Some(b) = self.baselines.remove(&key) else { return };
        let profile = b.into_profile(&key.0, &key.1);
        match Reference::new(&profile, &[]) {
            Ok(r) => {
                tracing::info!(component = %self.component, model = %key.0, version = %key.1,
                    events = n, features = r.features.len(), "drift baseline taken");
                self.references.push(r);
            }
            Err(e) => {
                tracing::warn!(component = %self.component, model = %key.0, error = %e,
                    "no drift baseline: the first events had no usable features");
            }
        }
    }

    /// Closes time windows that ended, even for models that went quiet.
    fn close_expired(&mut self, out: &mut TransformOutput) {
        let Some(secs) = self.window_secs else { return };
        let now = (self.now)();
        let expired: Vec<(String, String)> = self
            .windows
            .iter()
            .filter(|(_, w)| (now - w.started).num_seconds() >= secs as i64)
            .map(|(k, _)| k.clone())
            .collect();
        for key in expired {
            if let Some(w) = self.windows.remove(&key) {
                self.close(key, w, now, out);
            }
        }
    }
}

impl Transform for Drift {
    fn transform(&mut self, events: Vec<Event>, out: &mut TransformOutput) {
        for event in events {
            self.observe(&event, out);
        }
        self.close_expired(out);
    }
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;
    use crate::monitoring::profile::{
        CategoricalProfile, ModelId, NumericProfile, PROFILE_VERSION,
    };
    use crate::transforms::test_util::{metrics, run};

    /// A standard normal draw (Box-Muller), so the tests need no extra crate.
    fn normal(rng: &mut StdRng, mean: f64, std: f64) -> f64 {
        let (u1, u2): (f64, f64) = (rng.random::<f64>().max(1e-12), rng.random());
        mean + std * (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }

    fn plan(rng: &mut StdRng, p_gold: f64) -> &'static str {
        if rng.random::<f64>() < p_gold {
            "gold"
        } else if rng.random::<f64>() < 0.5 {
            "silver"
        } else {
            "bronze"
        }
    }

    /// A reference of `rows` rows: `tenure` ~ N(24, 8), `charges` ~ N(70, 20), `plan`.
    fn profile(rows: usize, seed: u64) -> Profile {
        let mut rng = StdRng::seed_from_u64(seed);
        let tenure: Vec<f64> = (0..rows).map(|_| normal(&mut rng, 24.0, 8.0)).collect();
        let charges: Vec<f64> = (0..rows).map(|_| normal(&mut rng, 70.0, 20.0)).collect();
        let mut plans = HashMap::new();
        for _ in 0..rows {
            *plans.entry(plan(&mut rng, 0.2).to_string()).or_default() += 1;
        }
        let mut features = BTreeMap::new();
        features.insert(
            "tenure".into(),
            FeatureProfile::Numeric(Box::new(NumericProfile::from_values(tenure, 0).unwrap())),
        );
        features.insert(
            "charges".into(),
            FeatureProfile::Numeric(Box::new(NumericProfile::from_values(charges, 0).unwrap())),
        );
        features.insert(
            "plan".into(),
            FeatureProfile::Categorical(CategoricalProfile::from_counts(plans, 0)),
        );
        Profile {
            weir_profile: PROFILE_VERSION,
            model: Some(ModelId { name: "churn".into(), version: Some("3".into()) }),
            rows: rows as u64,
            features,
        }
    }

    fn transform(p: &Profile, count: usize) -> Drift {
        Drift {
            references: vec![Reference::new(p, &[]).unwrap()],
            field: parse_path("inference.features").unwrap(),
            window_count: count,
            window_secs: None,
            min_samples: 100,
            drift_share: 0.5,
            feature_events: false,
            windows: HashMap::new(),
            refused: EventsDiscarded::new(&metrics(), "drift_window_refused"),
            now: Utc::now,
            baseline_events: None,
            only: Vec::new(),
            baselines: HashMap::new(),
            component: "test".into(),
        }
    }

    /// Above `RAW_SAMPLE_MAX` reference values the Wasserstein distance comes from the
    /// sketch's quantiles: its error against the exact distance, measured over skewed and
    /// symmetric references of 300,000 values and windows from unchanged to far shifted, stays
    /// within the bound the documentation states.
    #[test]
    fn sketched_wasserstein_error_is_bounded() {
        let mut rng = StdRng::seed_from_u64(7);
        let mut worst: f64 = 0.0;
        for skewed in [false, true] {
            let draw = |rng: &mut StdRng, shift: f64| {
                let x = normal(rng, 0.0, 1.0);
                if skewed {
                    (x * 0.8).exp() * 30.0 + shift * 30.0
                } else {
                    50.0 + 12.0 * x + shift * 12.0
                }
            };
            let reference: Vec<f64> = (0..300_000).map(|_| draw(&mut rng, 0.0)).collect();
            let mut sorted = reference.clone();
            sorted.sort_by(f64::total_cmp);
            let n = NumericProfile::from_values(reference, 0).unwrap();
            assert!(n.sample.is_none(), "above RAW_SAMPLE_MAX only the sketch is kept");
            let mut features = BTreeMap::new();
            features.insert("x".to_string(), FeatureProfile::Numeric(Box::new(n.clone())));
            let p = Profile { weir_profile: PROFILE_VERSION, model: None, rows: 300_000, features };
            let r = Reference::new(&p, &[]).unwrap();
            for shift in [0.0, 0.05, 0.1, 0.2, 0.5, 1.0] {
                let mut window: Vec<f64> = (0..1000).map(|_| draw(&mut rng, shift)).collect();
                let got = r.features[0].test_numeric(&mut window, 1).score.unwrap();
                let exact = stats::wasserstein(&sorted, &window).unwrap() / n.std;
                let err = (got - exact).abs();
                worst = worst.max(err);
            }
        }
        eprintln!("sketched Wasserstein: largest error {worst:e} (normed distance)");
        assert!(worst <= SKETCH_WASSERSTEIN_ERROR, "{worst}");
    }

    #[test]
    fn a_baseline_of_the_first_events_is_the_reference() {
        let p = profile(10, 11);
        let mut t = transform(&p, 500);
        t.references.clear();
        t.baseline_events = Some(2000);
        let mut rng = StdRng::seed_from_u64(12);
        let clean: Vec<Event> = (0..3000).map(|_| prediction(&mut rng, 0.0, 0.2)).collect();
        let (out, _) = run(&mut t, 0, clean);
        assert_eq!(out.len(), 2, "2000 baseline events, then 2 windows of 500");
        assert!(out.iter().all(|e| !dataset_drifted(e)));
        let json = serde_json::to_value(out[0].view()).unwrap();
        assert_eq!(json["drift"]["features"]["tenure"]["method"], "wasserstein");
        assert_eq!(json["drift"]["features"]["plan"]["method"], "jensenshannon");
        let drifted: Vec<Event> = (0..500).map(|_| prediction(&mut rng, 0.5, 0.5)).collect();
        let (out, _) = run(&mut t, 0, drifted);
        assert!(dataset_drifted(&out[0]));
    }

    /// With `feature_events`, each window's report is followed by one event per feature that
    /// carries the report's verdict on it under `drift.feature`, its name a value.
    #[test]
    fn feature_events_repeat_the_reports_verdict_per_feature() {
        let p = profile(5000, 21);
        let mut t = transform(&p, 500);
        t.feature_events = true;
        let mut rng = StdRng::seed_from_u64(22);
        let events: Vec<Event> = (0..500).map(|_| prediction(&mut rng, 0.5, 0.2)).collect();
        let (out, _) = run(&mut t, 0, events);
        assert_eq!(out.len(), 4, "a report and its three features");
        let report = serde_json::to_value(out[0].view()).unwrap();
        assert_eq!(report["event"]["action"], "drift_window");
        let mut names = Vec::new();
        for e in &out[1..] {
            let f = serde_json::to_value(e.view()).unwrap();
            assert_eq!(f["event"]["action"], "drift_feature");
            assert_eq!(f["event"]["dataset"], "weir.drift");
            assert_eq!(f["model"], report["model"]);
            assert_eq!(f["@timestamp"], report["@timestamp"]);
            assert_eq!(f["drift"]["window"], report["drift"]["window"]);
            let name = f["drift"]["feature"]["name"].as_str().unwrap().to_string();
            let mut expected = report["drift"]["features"][&name].clone();
            expected["name"] = serde_json::json!(name);
            assert_eq!(f["drift"]["feature"], expected);
            // Not a report: the alerting and MLflow sinks pass it by.
            assert!(DriftReport::from_event(e).is_none());
            names.push(name);
        }
        names.sort();
        assert_eq!(names, ["charges", "plan", "tenure"]);
        assert_eq!(out[1..].iter().filter(|e| dataset_drifted(e)).count(), 0);
        let tenure = serde_json::to_value(
            out[1..]
                .iter()
                .find(|e| {
                    e.get(&parse_path("drift.feature.name").unwrap())
                        == Some(&Value::from("tenure"))
                })
                .unwrap()
                .view(),
        )
        .unwrap();
        assert_eq!(tenure["drift"]["feature"]["drifted"], true, "{tenure}");
    }

    fn prediction(rng: &mut StdRng, shift: f64, p_gold: f64) -> Event {
        Event::from_value(crate::event::Value::from(&serde_json::json!({
            "model": {"name": "churn", "version": "3"},
            "inference": {"features": {
                "tenure": (normal(rng, 24.0 + shift * 8.0, 8.0)),
                "charges": (normal(rng, 70.0 + shift * 20.0, 20.0)),
                "plan": (plan(rng, p_gold)),
            }},
        })))
    }

    fn dataset_drifted(e: &Event) -> bool {
        e.get(&parse_path("drift.dataset.drifted").unwrap()) == Some(&Value::Boolean(true))
    }

    /// Runs `windows` windows of 500 events, drift injected from event `inject_at` on, and
    /// returns each window's dataset verdict.
    fn verdicts(p: &Profile, windows: usize, inject_at: usize, seed: u64) -> Vec<bool> {
        let mut t = transform(p, 500);
        let mut rng = StdRng::seed_from_u64(seed);
        let events: Vec<Event> = (0..windows * 500)
            .map(|i| {
                if i >= inject_at {
                    prediction(&mut rng, 0.5, 0.5)
                } else {
                    prediction(&mut rng, 0.0, 0.2)
                }
            })
            .collect();
        let (out, _) = run(&mut t, 0, events);
        assert_eq!(out.len(), windows, "one report per window");
        out.iter().map(dataset_drifted).collect()
    }

    #[test]
    fn no_drift_no_alarm_with_a_large_reference() {
        let p = profile(5000, 1);
        let v = verdicts(&p, 20, usize::MAX, 2);
        assert!(v.iter().all(|d| !d), "{v:?}");
    }

    #[test]
    fn injected_drift_is_detected_in_the_first_full_window() {
        // Drift starts in the middle of window 6 (0-based): window 6 is mixed, window 7 is
        // the first entirely drifted one and must be flagged; none before 6 may be.
        for (rows, seed) in [(5000, 3), (800, 4)] {
            let p = profile(rows, seed);
            let v = verdicts(&p, 10, 6 * 500 + 250, seed + 10);
            assert!(v[..6].iter().all(|d| !d), "rows {rows}: false alarm before the drift: {v:?}");
            assert!(v[7..].iter().all(|d| *d), "rows {rows}: drift missed: {v:?}");
        }
    }

    #[test]
    fn small_references_use_ks_and_chi_square() {
        let p = profile(800, 5);
        let mut t = transform(&p, 300);
        let mut rng = StdRng::seed_from_u64(6);
        let (out, _) = run(&mut t, 0, (0..300).map(|_| prediction(&mut rng, 1.0, 0.6)).collect());
        let json = serde_json::to_value(out[0].view()).unwrap();
        let f = &json["drift"]["features"];
        assert_eq!(f["tenure"]["method"], "ks");
        assert_eq!(f["plan"]["method"], "chisquare");
        assert!(f["tenure"]["p_value"].as_f64().unwrap() < 1e-6, "{f}");
        assert_eq!(f["tenure"]["drifted"], true);
        assert_eq!(f["plan"]["drifted"], true);
        assert!(f["tenure"]["psi"].as_f64().unwrap() > 0.25);
        assert_eq!(f["tenure"]["psi_level"], "critical");
        let text = crate::metrics::global().encode();
        assert!(
            text.contains(
                "weir_feature_drift_detected{model=\"churn\",version=\"3\",feature=\"tenure\"} 1"
            ),
            "{text}"
        );
    }

    #[test]
    fn too_few_samples_are_not_tested_and_other_models_are_ignored() {
        let p = profile(5000, 7);
        let mut t = transform(&p, 150);
        let mut events: Vec<Event> = Vec::new();
        let mut rng = StdRng::seed_from_u64(8);
        for i in 0..150 {
            let mut e = prediction(&mut rng, 0.0, 0.2);
            if i % 2 == 0 {
                // Half the events lack `charges`: 75 values < min_samples.
                e.remove(&parse_path("inference.features.charges").unwrap());
            }
            events.push(e);
        }
        let other = Event::from_value(crate::event::Value::from(
            &serde_json::json!({"model": {"name": "other"}, "inference": {"features": {"tenure": 1.0}}}),
        ));
        events.push(other);
        let (out, _) = run(&mut t, 0, events);
        assert_eq!(out.len(), 1);
        let json = serde_json::to_value(out[0].view()).unwrap();
        assert_eq!(json["drift"]["features"]["charges"]["tested"], false);
        assert_eq!(json["drift"]["features"]["tenure"]["tested"], true);
        assert_eq!(json["drift"]["dataset"]["features_tested"], 2);
        assert!(t.windows.is_empty(), "the other model has no reference, so no window");
    }

    #[test]
    fn time_windows_close_on_the_next_batch() {
        use std::sync::atomic::{AtomicI64, Ordering};
        static NOW: AtomicI64 = AtomicI64::new(0);
        fn clock() -> DateTime<Utc> {
            DateTime::from_timestamp(NOW.load(Ordering::SeqCst), 0).unwrap()
        }
        let p = profile(5000, 9);
        let mut t = transform(&p, 1000);
        t.window_secs = Some(60);
        t.now = clock;
        NOW.store(1_000, Ordering::SeqCst);
        let mut rng = StdRng::seed_from_u64(10);
        let (out, _) = run(&mut t, 0, (0..200).map(|_| prediction(&mut rng, 0.0, 0.2)).collect());
        assert!(out.is_empty());
        NOW.store(1_061, Ordering::SeqCst);
        let (out, _) = run(&mut t, 0, Vec::new());
        assert_eq!(out.len(), 1, "the quiet model's window closed");
        assert_eq!(
            out[0].get(&parse_path("drift.window.events").unwrap()),
            Some(&Value::Integer(200))
        );
    }

    #[test]
    fn config_check_is_pure_and_clear() {
        let c: DriftConfig = toml_edit::de::from_str("references = []\nwindow.count = 0").unwrap();
        let issues = c.check(&metrics());
        assert!(issues.iter().any(|i| i.field.as_deref() == Some("references")));
        assert!(issues.iter().any(|i| i.field.as_deref() == Some("window.count")));
        let c: DriftConfig =
            toml_edit::de::from_str("references = [\"/nonexistent/p.json\"]").unwrap();
        assert!(c.check(&metrics()).is_empty(), "validation does not open the profile");
        assert!(c.build(&metrics()).err().unwrap().message.contains("cannot read"));
    }
}
