//! The alert rules on their own: hysteresis, bands, resolution, re-sends, no data.

use chrono::TimeZone;

use super::*;

fn t(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_800_000_000 + secs, 0).unwrap()
}

fn options(rules: &str) -> AlertOptions {
    let c: AlertSinkConfig = toml_edit::de::from_str(&format!(
        "endpoint = \"http://127.0.0.1:1\"\nresend_interval_secs = 30\nlabels = {{ team = \"ml\" }}\n{rules}"
    ))
    .unwrap();
    assert!(c.check().is_ok(), "{:?}", c.check().err());
    c.options()
}

fn drift_window(drifted: bool, psi: f64) -> Event {
    Event::from_value(crate::event::Value::from(&serde_json::json!({
        "event": {"action": "drift_window", "dataset": "weir.drift"},
        "model": {"name": "churn", "version": "3"},
        "drift": {
            "dataset": {"drifted": drifted},
            "features": {
                "tenure": {"tested": true, "drifted": drifted, "psi": psi},
                "plan": {"tested": true, "drifted": false, "psi": 0.01},
            },
        },
    })))
}

fn request(failed: bool) -> Event {
    Event::from_value(crate::event::Value::from(&serde_json::json!({
        "event": {"action": "request", "outcome": (if failed { "failure" } else { "success" })},
        "model": {"name": "churn", "version": "3"},
    })))
}

#[test]
fn drift_fires_after_n_windows_and_resolves_after_n_clean_ones() {
    let mut e = AlertEngine::new(
        &options("[[rules]]\nname = \"Drift\"\nkind = \"drift\"\nfor_windows = 2"),
        t(0),
    );
    e.observe(&drift_window(true, 0.15), t(1));
    assert!(e.take().is_empty(), "one window is not enough");
    e.observe(&drift_window(false, 0.0), t(2));
    e.observe(&drift_window(true, 0.15), t(3));
    assert!(e.take().is_empty(), "the streak was broken");
    e.observe(&drift_window(true, 0.15), t(4));
    let fired = e.take();
    assert_eq!(fired.len(), 1);
    let a = &fired[0];
    assert!(!a.resolved);
    assert_eq!(a.labels["alertname"], "Drift");
    assert_eq!(a.labels["model"], "churn");
    assert_eq!(a.labels["version"], "3");
    assert_eq!(a.labels["severity"], "warning");
    assert_eq!(a.labels["team"], "ml");
    assert_eq!(
        a.ends_at,
        t(4) + chrono::Duration::seconds(120),
        "lapses after 4 re-send intervals"
    );
    assert!(a.annotations["summary"].contains("tenure"));

    // Still drifting: no new notification until the re-send is due.
    e.observe(&drift_window(true, 0.15), t(5));
    e.tick(t(20));
    assert!(e.take().is_empty());
    e.tick(t(34));
    let resent = e.take();
    assert_eq!(resent.len(), 1);
    assert_eq!(resent[0].labels, a.labels, "re-sends keep the label set (Alertmanager dedups)");
    assert_eq!(resent[0].starts_at, a.starts_at);

    e.observe(&drift_window(false, 0.0), t(40));
    assert!(e.take().is_empty(), "one clean window does not resolve");
    e.observe(&drift_window(false, 0.0), t(41));
    let resolved = e.take();
    assert_eq!(resolved.len(), 1);
    assert!(resolved[0].resolved);
    assert_eq!(resolved[0].ends_at, t(41));
    assert_eq!(resolved[0].labels, a.labels);
}

#[test]
fn a_band_change_resolves_the_old_alert_and_fires_the_new() {
    let mut e = AlertEngine::new(
        &options("[[rules]]\nname = \"Drift\"\nkind = \"drift\"\nfor_windows = 1"),
        t(0),
    );
    e.observe(&drift_window(true, 0.12), t(1));
    assert_eq!(e.take()[0].labels["severity"], "warning");
    e.observe(&drift_window(true, 0.4), t(2));
    let n = e.take();
    assert_eq!(n.len(), 2);
    assert!(n[0].resolved && n[0].labels["severity"] == "warning");
    assert!(!n[1].resolved && n[1].labels["severity"] == "critical");
}

#[test]
fn per_feature_drift_alerts() {
    let mut e = AlertEngine::new(
        &options(
            "[[rules]]\nname = \"FeatureDrift\"\nkind = \"drift\"\nfor_windows = 1\nper_feature = true",
        ),
        t(0),
    );
    e.observe(&drift_window(true, 0.3), t(1));
    let n = e.take();
    assert_eq!(n.len(), 1);
    assert_eq!(n[0].labels["feature"], "tenure");
    assert_eq!(n[0].labels["severity"], "critical");
}

#[test]
fn error_rate_windows_with_bands_and_a_minimum() {
    let mut e = AlertEngine::new(
        &options(
            "[[rules]]\nname = \"Errors\"\nkind = \"error_rate\"\nwindow_secs = 10\nfor_windows = 2\nmin_requests = 10\nwarning = 0.05\ncritical = 0.5",
        ),
        t(0),
    );
    e.tick(t(0));
    let window = |e: &mut AlertEngine, failed: usize, total: usize, at: i64| {
        for i in 0..total {
            e.observe(&request(i < failed), t(at));
        }
        e.tick(t(at + 10));
        e.take()
    };
    assert!(window(&mut e, 5, 5, 0).is_empty(), "under min_requests");
    assert!(window(&mut e, 2, 20, 10).is_empty(), "10% is bad, but one window only");
    let n = window(&mut e, 2, 20, 20);
    assert_eq!(n.len(), 1);
    assert_eq!(n[0].labels["severity"], "warning");
    assert!(n[0].annotations["summary"].contains("10.0% of 20"));
    let n = window(&mut e, 15, 20, 30);
    assert_eq!((n.len(), n[1].labels["severity"].as_str()), (2, "critical"));
    assert!(window(&mut e, 0, 20, 40).is_empty());
    let n = window(&mut e, 0, 20, 50);
    assert!(n[0].resolved);
}

#[test]
fn no_data_fires_for_expected_and_seen_models_and_resolves_when_data_returns() {
    let mut e = AlertEngine::new(
        &options(
            "[[rules]]\nname = \"NoData\"\nkind = \"no_data\"\nafter_secs = 60\nmodels = [\"expected:1\"]\nseverity = \"critical\"",
        ),
        t(0),
    );
    e.observe(&request(false), t(10));
    e.tick(t(59));
    assert!(e.take().is_empty());
    e.tick(t(61));
    let n = e.take();
    assert_eq!(n.len(), 1);
    assert_eq!(n[0].labels["model"], "expected");
    assert_eq!(n[0].labels["severity"], "critical");
    e.tick(t(71));
    let n = e.take();
    assert_eq!(n.len(), 1);
    assert_eq!(n[0].labels["model"], "churn");
    e.tick(t(72));
    assert!(e.take().is_empty(), "no duplicate while firing");
    e.observe(&request(false), t(80));
    let n = e.take();
    assert_eq!(n.len(), 1);
    assert!(n[0].resolved && n[0].labels["model"] == "churn");
}

#[test]
fn payloads() {
    let a = Alert {
        labels: BTreeMap::from([("alertname".to_string(), "X".to_string())]),
        annotations: BTreeMap::new(),
        starts_at: t(0),
        ends_at: t(60),
        resolved: false,
    };
    let req = Target::Alertmanager.request(std::slice::from_ref(&a));
    assert_eq!(req.path, "/api/v2/alerts");
    assert_eq!(req.method, reqwest::Method::POST);
    let v: serde_json::Value = serde_json::from_slice(&req.body).unwrap();
    assert_eq!(v[0]["labels"]["alertname"], "X");
    assert_eq!(v[0]["startsAt"], "2027-01-15T08:00:00.000Z");
    assert_eq!(v[0]["endsAt"], "2027-01-15T08:01:00.000Z");
    let req = Target::Webhook.request(&[a]);
    assert_eq!(req.path, "");
    let v: serde_json::Value = serde_json::from_slice(&req.body).unwrap();
    assert_eq!(v["status"], "firing");
    assert_eq!(v["alerts"][0]["status"], "firing");
}

#[test]
fn config_errors() {
    // https is accepted (the shared client speaks TLS); a URL without a scheme is not.
    let c: AlertSinkConfig = toml_edit::de::from_str("endpoint = \"https://am\"").unwrap();
    let issues = c.check().unwrap_err();
    assert!(issues.iter().any(|i| i.message.contains("at least one [[rules]]")));
    assert!(!issues.iter().any(|i| i.field.as_deref() == Some("endpoint")), "{issues:?}");
    let c: AlertSinkConfig = toml_edit::de::from_str("endpoint = \"am:9093\"").unwrap();
    assert!(c.check().unwrap_err().iter().any(|i| i.field.as_deref() == Some("endpoint")));
    let c: AlertSinkConfig =
        toml_edit::de::from_str("endpoint = \"http://am\"\nrequest.timeout_secs = 0").unwrap();
    assert!(c.check().unwrap_err().iter().any(|i| i.message.contains("request.timeout_secs")));
    let c: AlertSinkConfig = toml_edit::de::from_str(
        "endpoint = \"http://am\"\n[[rules]]\nname = \"E\"\nkind = \"error_rate\"\nwarning = 0.5\ncritical = 0.1",
    )
    .unwrap();
    assert!(c.check().unwrap_err()[0].message.contains("warning <= critical"));
    assert!(
        toml_edit::de::from_str::<AlertSinkConfig>("endpoint = \"http://am\"\nrulez = []").is_err()
    );
}
