//! Model monitoring through the real binary and against reference implementations: every
//! sample line of the shared model-server data read by `parse_model_log`, `weir profile`, and
//! the drift statistics compared with SciPy's.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use weir::monitoring::profile::{FeatureProfile, NumericProfile, Profile};
use weir::monitoring::stats;

use crate::support::{Weir, read_lines, test_data, test_python, wait_for, weir_bin};

/// The sample files and the grammar each must be read by.
const SAMPLES: &[(&str, &str)] = &[
    ("torchserve_access.log", "torchserve_access"),
    ("torchserve_metrics.log", "torchserve_metrics"),
    ("triton_verbose.log", "triton"),
    ("vllm.log", "vllm"),
    ("bentoml_access.log", "bentoml_access"),
    ("bentoml_monitoring.jsonl", "bentoml_monitoring"),
    ("rayserve_access.log", "rayserve_access"),
    ("rayserve_json.log", "rayserve_json"),
    ("kserve_container.log", "kserve"),
];

#[test]
fn every_sample_line_is_read_by_its_grammar_in_a_running_pipeline() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    let mut expected = 0;
    for (file, _) in SAMPLES {
        let src = test_data().join("model-servers").join(file);
        std::fs::copy(&src, logs.join(file)).unwrap();
        expected += read_lines(&src).iter().filter(|l| !l.is_empty()).count();
    }
    let weir = Weir::start(
        dir.path(),
        r#"
[sources.servers]
type = "file"
include = ["{{dir}}/logs/*"]

[transforms.inference]
type = "parse_model_log"
inputs = ["servers"]
format = "auto"
timezone = "UTC"

[sinks.out]
type = "file"
inputs = ["inference"]
path = "{{dir}}/out.json"
encoding.codec = "json"
"#,
    );
    let out = dir.path().join("out.json");
    let done = wait_for(Duration::from_secs(30), || read_lines(&out).len() >= expected);
    assert!(done, "{} of {expected} events; stderr:\n{}", read_lines(&out).len(), weir.stderr());
    for line in read_lines(&out) {
        let event: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert!(event.get("error").is_none(), "not parsed: {event}");
        let path = event["log"]["file"]["path"].as_str().unwrap();
        let file = Path::new(path).file_name().unwrap().to_str().unwrap();
        let grammar = SAMPLES.iter().find(|(f, _)| *f == file).unwrap().1;
        assert_eq!(event["event"]["dataset"], grammar, "{event}");
    }
    let metrics = weir.metrics();
    let parsed = crate::support::metric_sum(
        &metrics,
        "weir_model_log_parsed_events_total",
        &[("component_id", "inference")],
    );
    let failed = crate::support::metric_sum(
        &metrics,
        "weir_model_log_parse_failures_total",
        &[("component_id", "inference")],
    );
    assert_eq!((parsed, failed), (expected as f64, 0.0), "{metrics}");
    weir.stop();
}

fn normal(rng: &mut StdRng, mean: f64, std: f64) -> f64 {
    let (u1, u2): (f64, f64) = (rng.random::<f64>().max(1e-12), rng.random());
    mean + std * (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

#[test]
fn weir_profile_writes_a_profile_the_drift_transform_reads() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("train.csv");
    let mut rng = StdRng::seed_from_u64(1);
    let mut text = String::from("tenure,plan,label\n");
    for _ in 0..3000 {
        let plan = ["gold", "silver", "bronze"][rng.random_range(0..3)];
        text.push_str(&format!(
            "{:.3},{plan},{}\n",
            normal(&mut rng, 24.0, 8.0),
            rng.random_range(0..2)
        ));
    }
    std::fs::write(&csv, text).unwrap();
    let out = dir.path().join("ref.json");
    let status = Command::new(weir_bin())
        .args(["profile", "--input"])
        .arg(&csv)
        .args(["--features", "tenure,plan", "--model", "churn", "--model-version", "3", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    assert_eq!(
        String::from_utf8_lossy(&status.stdout).trim(),
        format!("profiled 3000 rows, 2 features -> {}", out.display())
    );
    let p = Profile::load(&out).unwrap();
    assert_eq!(p.model.as_ref().unwrap().name, "churn");
    assert!(matches!(p.features["tenure"], FeatureProfile::Numeric(_)));
    assert!(matches!(p.features["plan"], FeatureProfile::Categorical(_)));

    // A bad input is a clear error and a non-zero exit.
    let bad = Command::new(weir_bin())
        .args(["profile", "--input"])
        .arg(&csv)
        .args(["--features", "nope", "--out"])
        .arg(dir.path().join("x.json"))
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("feature `nope` is not in"));
}

/// One comparison case: two numeric samples and two categorical count vectors.
struct Case {
    a: Vec<f64>,
    b: Vec<f64>,
}

fn cases() -> Vec<Case> {
    let mut rng = StdRng::seed_from_u64(42);
    let mut sample = |n: usize, mean: f64, std: f64| -> Vec<f64> {
        (0..n).map(|_| normal(&mut rng, mean, std)).collect()
    };
    let mut out = vec![
        Case { a: sample(100, 0.0, 1.0), b: sample(80, 0.0, 1.0) },
        Case { a: sample(500, 50.0, 10.0), b: sample(300, 53.0, 10.0) },
        Case { a: sample(1000, 0.0, 1.0), b: sample(1000, 0.2, 1.0) },
        Case { a: sample(700, 5.0, 2.0), b: sample(350, 5.0, 3.0) },
        // Beyond 10,000 values SciPy (and weir) switch to the asymptotic distribution.
        Case { a: sample(12_000, 0.0, 1.0), b: sample(11_000, 0.03, 1.0) },
    ];
    // Ties: integer-valued data.
    let mut rng = StdRng::seed_from_u64(7);
    out.push(Case {
        a: (0..400).map(|_| rng.random_range(0..10) as f64).collect(),
        b: (0..250).map(|_| rng.random_range(1..10) as f64).collect(),
    });
    for c in &mut out {
        c.a.sort_by(f64::total_cmp);
        c.b.sort_by(f64::total_cmp);
    }
    out
}

fn close(what: &str, weir: f64, scipy: f64, abs: f64, rel: f64) {
    let ok = (weir - scipy).abs() <= abs + rel * scipy.abs();
    assert!(ok, "{what}: weir {weir} vs SciPy {scipy} (tolerance {abs} + {rel}·|SciPy|)");
}

const SCIPY_SCRIPT: &str = r#"
import json, sys
import numpy as np
from scipy import stats
from scipy.spatial.distance import jensenshannon
data = json.load(open(sys.argv[1]))
out = []
for c in data["cases"]:
    a, b = np.array(c["a"]), np.array(c["b"])
    ks = stats.ks_2samp(a, b, method="auto")
    edges = np.array(c["edges"])
    pa = np.bincount(np.searchsorted(edges, a, side="right"), minlength=len(edges) + 1) / len(a)
    pb = np.bincount(np.searchsorted(edges, b, side="right"), minlength=len(edges) + 1) / len(b)
    pa_f = np.where(pa == 0, 0.0001, pa)
    pb_f = np.where(pb == 0, 0.0001, pb)
    obs, ref = np.array(c["observed"], float), np.array(c["reference"], float)
    exp = ref / ref.sum() * obs.sum()
    chi = stats.chisquare(obs, exp)
    out.append({
        "ks_stat": float(ks.statistic), "ks_p": float(ks.pvalue),
        "wasserstein": float(stats.wasserstein_distance(a, b)),
        "std_a": float(np.std(a)),
        "psi": float(np.sum((pb_f - pa_f) * np.log(pb_f / pa_f))),
        "js": float(jensenshannon(ref, obs)),
        "chi_stat": float(chi.statistic), "chi_p": float(chi.pvalue),
    })
print(json.dumps(out))
"#;

#[test]
fn drift_statistics_agree_with_scipy() {
    let python = test_python();
    let dir = tempfile::tempdir().unwrap();
    let cases = cases();
    // Categorical counts per case: a reference and an observed vector over 4 categories.
    let mut rng = StdRng::seed_from_u64(9);
    let mut cats: Vec<(Vec<f64>, Vec<f64>)> = Vec::new();
    let mut json_cases = Vec::new();
    for c in &cases {
        let reference: Vec<f64> = (0..4).map(|_| rng.random_range(20..400) as f64).collect();
        let observed: Vec<f64> = (0..4).map(|_| rng.random_range(10..200) as f64).collect();
        let profile = NumericProfile::from_values(c.a.clone(), 0).unwrap();
        json_cases.push(serde_json::json!({
            "a": c.a, "b": c.b, "edges": profile.bin_edges,
            "reference": reference, "observed": observed,
        }));
        cats.push((reference, observed));
    }
    let input = dir.path().join("cases.json");
    std::fs::write(&input, serde_json::json!({ "cases": json_cases }).to_string()).unwrap();
    let script = dir.path().join("scipy_reference.py");
    std::fs::write(&script, SCIPY_SCRIPT).unwrap();
    let out = Command::new(&python).arg(&script).arg(&input).output().unwrap();
    assert!(out.status.success(), "SciPy failed: {}", String::from_utf8_lossy(&out.stderr));
    let scipy: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();

    for (i, (c, s)) in cases.iter().zip(&scipy).enumerate() {
        let f = |k: &str| s[k].as_f64().unwrap();
        let what = |k: &str| format!("case {i} ({}x{}) {k}", c.a.len(), c.b.len());
        let ks = stats::ks_2samp(&c.a, &c.b).unwrap();
        close(&what("KS statistic"), ks.statistic, f("ks_stat"), 1e-12, 0.0);
        if c.a.len().max(c.b.len()) <= stats::KS_EXACT_MAX_N {
            // The exact distribution: agreement to rounding.
            close(&what("KS p-value (exact)"), ks.p_value, f("ks_p"), 1e-9, 1e-6);
        } else {
            // SciPy's asymptotic branch uses the one-sample distribution at n = mn/(m+n);
            // weir uses its Kolmogorov limit: close for samples this large.
            close(&what("KS p-value (asymptotic)"), ks.p_value, f("ks_p"), 0.01, 0.05);
        }
        close(
            &what("Wasserstein"),
            stats::wasserstein(&c.a, &c.b).unwrap(),
            f("wasserstein"),
            1e-9,
            1e-9,
        );
        let (_, std) = stats::mean_std(&c.a);
        close(&what("reference std (ddof 0)"), std, f("std_a"), 1e-9, 1e-9);

        // PSI over the profile's decile bins.
        let profile = NumericProfile::from_values(c.a.clone(), 0).unwrap();
        let psi =
            stats::psi(&profile.bin_proportions, &stats::bin_proportions(&profile.bin_edges, &c.b));
        close(&what("PSI"), psi, f("psi"), 1e-12, 1e-9);

        // The Wasserstein distance weir computes in production: reference from the profile's
        // quantile sketch (1,000 quantiles of a DDSketch with 0.1% relative accuracy),
        // normalised by the reference std. Stated tolerance: 0.01 of a standard deviation.
        let quantiles: Vec<f64> = (0..1000)
            .map(|k| profile.sketch.quantile((k as f64 + 0.5) / 1000.0).unwrap().unwrap())
            .collect();
        let w_sketch = stats::wasserstein(&quantiles, &c.b).unwrap() / profile.std;
        close(
            &what("normalised Wasserstein from the sketch"),
            w_sketch,
            f("wasserstein") / f("std_a"),
            0.01,
            0.0,
        );

        let (reference, observed) = &cats[i];
        close(
            &what("Jensen-Shannon"),
            stats::jensen_shannon(reference, observed).unwrap(),
            f("js"),
            1e-12,
            1e-9,
        );
        let total: f64 = observed.iter().sum();
        let ref_total: f64 = reference.iter().sum();
        let expected: Vec<f64> = reference.iter().map(|r| r / ref_total * total).collect();
        let chi = stats::chi_square(observed, &expected).unwrap();
        close(&what("chi-square statistic"), chi.statistic, f("chi_stat"), 1e-9, 1e-9);
        close(&what("chi-square p-value"), chi.p_value, f("chi_p"), 1e-12, 1e-6);
    }
}

#[test]
fn the_default_pipeline_shows_the_demo_drift_being_detected() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;

    // The embedded default pipeline (the same file), its demo's draws seeded: a clean window
    // can read as drifted by chance, and an unseeded first window once did.
    let demo = "type = \"demo\"\n";
    let default = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines/default.toml"),
    )
    .unwrap()
    .replacen(demo, &format!("{demo}seed = 7\n"), 1);
    assert!(default.contains("seed = 7"), "the default pipeline has no demo source");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("default.toml");
    std::fs::write(&config, default).unwrap();
    let port = crate::support::free_port();
    let mut child = Command::new(weir_bin())
        .args(["run", "--config"])
        .arg(&config)
        .env("WEIR_API_ADDRESS", format!("127.0.0.1:{port}"))
        // Fast lines, drift after a few seconds: the same pipeline, sped up.
        .env("WEIR_DEMO_INTERVAL_MS", "2")
        .env("WEIR_DEMO_DRIFT_AFTER_SECS", "6")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    // Drift reports in order: some clean ones first, then drift detected.
    let reader = std::thread::spawn(move || {
        let mut verdicts = Vec::new();
        let mut lines = BufReader::new(stdout).lines();
        for line in lines.by_ref() {
            let Ok(line) = line else { break };
            let event: serde_json::Value = serde_json::from_str(&line).unwrap();
            if event["event"]["action"] != "drift_window" {
                continue;
            }
            assert_eq!(event["model"]["name"], "churn-xgb");
            assert_eq!(event["service"]["name"], "model-serving");
            let drifted = event["drift"]["dataset"]["drifted"].as_bool().unwrap();
            verdicts.push(drifted);
            if drifted && verdicts.iter().any(|d| !d) {
                break;
            }
            if verdicts.len() > 200 {
                break;
            }
        }
        (verdicts, lines)
    });
    let (verdicts, lines) = reader.join().unwrap();
    // weir's console keeps writing until it stops: a closed pipe would fail its sink (and so
    // its exit code), so the rest is read to the end.
    let drain = std::thread::spawn(move || lines.count());
    assert!(verdicts.first() == Some(&false), "{verdicts:?}");
    assert!(verdicts.last() == Some(&true), "drift never detected: {verdicts:?}");
    let api = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let metrics = crate::support::http_get(api, "/metrics").unwrap().1;
    let m = |name: &str| crate::support::metric_sum(&metrics, name, &[("model", "churn-xgb")]);
    assert_eq!(m("weir_dataset_drift_detected"), 1.0, "{metrics}");
    assert!(m("weir_model_requests_total") > 0.0);
    assert!(m("weir_model_request_duration_seconds_count") > 0.0);
    crate::support::signal(child.id(), "INT");
    assert!(child.wait().unwrap().success());
    drain.join().unwrap();
}

#[test]
fn accuracy_from_delayed_labels_in_a_running_pipeline() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let append = |name: &str, lines: Vec<String>| {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.path().join(name))
            .unwrap();
        for l in lines {
            writeln!(f, "{l}").unwrap();
        }
    };
    // 100 predictions; labels for the first 80, all "yes": 60 of them were right.
    append(
        "predictions.log",
        (0..100)
            .map(|i| format!(r#"{{"model":"acc-model","model_version":"2","request_id":{i},"prediction":"{}"}}"#, if i % 4 == 0 { "no" } else { "yes" }))
            .collect(),
    );
    append(
        "labels.log",
        (0..80).map(|i| format!(r#"{{"request_id":{i},"label":"yes"}}"#)).collect(),
    );
    let weir = Weir::start(
        dir.path(),
        r#"
[sources.predictions]
type = "file"
include = ["{{dir}}/predictions.log"]

[sources.labels]
type = "file"
include = ["{{dir}}/labels.log"]

[transforms.inference]
type = "parse_model_log"
inputs = ["predictions"]
format = "json_prediction"

[transforms.truth]
type = "parse_json"
inputs = ["labels"]

[transforms.truth_fields]
type = "rename"
inputs = ["truth"]
fields = { request_id = "http.request.id", label = "inference.label" }

[transforms.quality]
type = "accuracy"
inputs = ["inference", "truth_fields"]
task = "classification"
join_window_secs = 2
window.count = 100

[sinks.reports]
type = "file"
inputs = ["quality"]
path = "{{dir}}/reports.json"
encoding.codec = "json"
"#,
    );
    // The 20 unlabelled predictions expire after 2 s; transforms act when events arrive, so
    // keep a trickle of labels for unknown requests coming until the report is written.
    let reports = dir.path().join("reports.json");
    let mut tick = 1000;
    let done = wait_for(Duration::from_secs(30), || {
        tick += 1;
        if tick % 10 == 0 {
            append("labels.log", vec![format!(r#"{{"request_id":{tick},"label":"x"}}"#)]);
        }
        read_lines(&reports).iter().any(|l| l.contains("acc-model"))
    });
    assert!(done, "no quality report; stderr:\n{}", weir.stderr());
    let line = read_lines(&reports).into_iter().find(|l| l.contains("acc-model")).unwrap();
    let report: serde_json::Value = serde_json::from_str(&line).unwrap();
    let q = &report["quality"];
    assert_eq!(
        (q["predictions"].as_i64(), q["labelled"].as_i64(), q["correct"].as_i64()),
        (Some(100), Some(80), Some(60)),
        "{report}"
    );
    assert_eq!(q["accuracy"].as_f64(), Some(0.75));
    assert_eq!(q["label_coverage"].as_f64(), Some(0.8));
    let m = weir.metrics();
    assert_eq!(
        crate::support::metric_sum(
            &m,
            "weir_model_accuracy",
            &[("model", "acc-model"), ("version", "2")]
        ),
        0.75
    );
    assert_eq!(
        crate::support::metric_sum(
            &m,
            "weir_accuracy_join_evicted_total",
            &[("component_id", "quality"), ("reason", "expired")]
        ),
        20.0
    );
    weir.stop();
}
