//! The gauges of drift and accuracy windows on `/metrics`, registered once per process.
//!
//! - `weir_feature_drift_score{model,version,feature,method}`: the last window's drift score
//!   (normalised Wasserstein, Jensen-Shannon distance, or a KS / chi-square p-value);
//! - `weir_feature_drift_detected{model,version,feature}`: 1 when that window drifted, else 0;
//! - `weir_feature_drift_psi{model,version,feature}`: the last window's PSI;
//! - `weir_dataset_drift_detected{model,version}`, `weir_dataset_drift_share{model,version}`;
//! - `weir_model_accuracy{model,version}`, `weir_model_mae`, `weir_model_rmse`,
//!   `weir_model_label_coverage_ratio`, `weir_model_label_delay_seconds`;
//! - `weir_accuracy_join_evicted_total{component_id,reason}`: predictions dropped from the join
//!   state unlabelled (`expired` or `capacity`).

use std::sync::OnceLock;
use std::sync::atomic::AtomicU64;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use crate::metrics::Labels;

pub type FloatGauge = Gauge<f64, AtomicU64>;
type GaugeFamily = Family<Labels, FloatGauge>;

pub struct MonitoringGauges {
    pub drift_score: GaugeFamily,
    pub drift_detected: GaugeFamily,
    pub drift_psi: GaugeFamily,
    pub dataset_drift_detected: GaugeFamily,
    pub dataset_drift_share: GaugeFamily,
    pub accuracy: GaugeFamily,
    pub mae: GaugeFamily,
    pub rmse: GaugeFamily,
    pub label_coverage: GaugeFamily,
    pub label_delay: GaugeFamily,
    pub join_evicted: Family<Labels, Counter>,
}

pub fn get() -> &'static MonitoringGauges {
    static GAUGES: OnceLock<MonitoringGauges> = OnceLock::new();
    GAUGES.get_or_init(|| {
        let g = MonitoringGauges {
            drift_score: Family::default(),
            drift_detected: Family::default(),
            drift_psi: Family::default(),
            dataset_drift_detected: Family::default(),
            dataset_drift_share: Family::default(),
            accuracy: Family::default(),
            mae: Family::default(),
            rmse: Family::default(),
            label_coverage: Family::default(),
            label_delay: Family::default(),
            join_evicted: Family::default(),
        };
        let t = crate::metrics::global();
        t.register(
            "feature_drift_score",
            "Drift score of a feature in the last window (normalised Wasserstein, Jensen-Shannon distance, or KS / chi-square p-value, by method)",
            g.drift_score.clone(),
        );
        t.register(
            "feature_drift_detected",
            "1 when the feature drifted in the last window, else 0",
            g.drift_detected.clone(),
        );
        t.register(
            "feature_drift_psi",
            "Population stability index of a feature in the last window",
            g.drift_psi.clone(),
        );
        t.register(
            "dataset_drift_detected",
            "1 when at least drift_share of the features drifted in the last window",
            g.dataset_drift_detected.clone(),
        );
        t.register(
            "dataset_drift_share",
            "Share of the tested features that drifted in the last window",
            g.dataset_drift_share.clone(),
        );
        t.register(
            "model_accuracy",
            "Share of labelled predictions that were right, last window (classification)",
            g.accuracy.clone(),
        );
        t.register("model_mae", "Mean absolute error, last window (regression)", g.mae.clone());
        t.register("model_rmse", "Root mean squared error, last window (regression)", g.rmse.clone());
        t.register(
            "model_label_coverage_ratio",
            "Share of the window's predictions that received a ground-truth label",
            g.label_coverage.clone(),
        );
        t.register(
            "model_label_delay_seconds",
            "Mean delay between a prediction and its ground-truth label, last window",
            g.label_delay.clone(),
        );
        t.register(
            "accuracy_join_evicted",
            "Predictions dropped from the label join state without a label, by reason",
            g.join_evicted.clone(),
        );
        g
    })
}

/// `model`, `version` and more label pairs.
pub fn labels(model: &str, version: &str, more: &[(&str, &str)]) -> Labels {
    let mut l = vec![
        ("model".to_string(), model.to_string()),
        ("version".to_string(), version.to_string()),
    ];
    l.extend(more.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    l
}
