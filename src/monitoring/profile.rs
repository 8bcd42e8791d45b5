//! Reference profiles of training data: what `weir profile` writes and the `drift` transform
//! reads.
//!
//! A profile is JSON, versioned (`weir_profile: 1`) and tied to one model and version. Per
//! feature it holds:
//! - numeric: count, missing, mean, standard deviation (population), min, max, the decile
//!   edges of the reference with the reference's proportion in each of the ten bins (for PSI),
//!   a DDSketch quantile sketch (`sketches-ddsketch`, relative accuracy 0.1%) for the
//!   Wasserstein distance, the count of each value when there are at most
//!   [`FEW_VALUES`] distinct ones, and, when the reference has at most [`RAW_SAMPLE_MAX`]
//!   values, the values themselves: KS and Wasserstein are then computed on the raw data as
//!   Evidently computes them (scores equal to 1e-9); above, the Wasserstein distance comes
//!   from the sketch's quantiles (see `drift`'s documentation for its measured error);
//! - categorical: the frequency of each category (the [`MAX_CATEGORIES`] most frequent; the
//!   rest are summed under `other`).
//!
//! Column types follow Evidently 0.7's inference (`evidently/core/datasets.py`,
//! `infer_column_type`): text is categorical; numbers written as integers with at most
//! [`INTEGER_CARDINALITY_LIMIT`] distinct values (a class label, a flag) are categorical;
//! other numbers are numeric. `--categorical` and `--numeric` override it per feature.
//!
//! Invariant: a profile's size is bounded by its number of features, not by the number of
//! training rows. Building one (`weir profile`, a command run beside the pipeline, not on its
//! data path) holds the profiled features' values in memory: 8 bytes per numeric value.

use std::collections::{BTreeMap, HashMap};
use std::io::BufRead;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sketches_ddsketch::{Config as SketchConfig, DDSketch};

use super::stats::mean_std;

/// The format version written and read.
pub const PROFILE_VERSION: u32 = 1;
/// At most this many reference values are kept raw (800 KB per feature at most), so that
/// scores are Evidently's own up to references of this size.
pub const RAW_SAMPLE_MAX: usize = 100_000;
/// Numbers written as integers with at most this many distinct values are categorical
/// (Evidently's `INTEGER_CARDINALITY_LIMIT`).
pub const INTEGER_CARDINALITY_LIMIT: usize = 10;
/// Evidently tests a numeric feature with at most this many distinct values (reference and
/// current together) as categories; the profile keeps the counts of so few values.
pub const FEW_VALUES: usize = 5;
/// Categories kept per feature.
pub const MAX_CATEGORIES: usize = 1000;
/// The name the drift transform gives to categories beyond the kept ones.
pub const OTHER_CATEGORY: &str = "__other__";
/// DDSketch relative accuracy.
pub const SKETCH_ALPHA: f64 = 0.001;
const SKETCH_MAX_BINS: u32 = 8192;

/// Which model a profile describes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ModelId {
    pub name: String,
    /// `None` matches every version of the model.
    #[serde(default)]
    pub version: Option<String>,
}

/// A reference profile.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub weir_profile: u32,
    #[serde(default)]
    pub model: Option<ModelId>,
    pub rows: u64,
    pub features: BTreeMap<String, FeatureProfile>,
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FeatureProfile {
    Numeric(Box<NumericProfile>),
    Categorical(CategoricalProfile),
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NumericProfile {
    pub count: u64,
    pub missing: u64,
    pub mean: f64,
    pub std: f64,
    pub min: f64,
    pub max: f64,
    /// Interior bin edges (the reference's deciles, duplicates removed).
    pub bin_edges: Vec<f64>,
    /// The reference's proportion in each bin (`bin_edges.len() + 1` bins).
    pub bin_proportions: Vec<f64>,
    pub sketch: DDSketch,
    /// Every value, sorted, when there are at most [`RAW_SAMPLE_MAX`].
    #[serde(default)]
    pub sample: Option<Vec<f64>>,
    /// Each distinct value and its count, when there are at most [`FEW_VALUES`].
    #[serde(default)]
    pub few_values: Option<Vec<(f64, u64)>>,
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CategoricalProfile {
    pub count: u64,
    pub missing: u64,
    pub frequencies: BTreeMap<String, u64>,
    /// Values of categories beyond the kept ones.
    #[serde(default)]
    pub other: u64,
}

impl NumericProfile {
    /// Builds from every value of the feature.
    pub fn from_values(mut values: Vec<f64>, missing: u64) -> Option<Self> {
        values.retain(|v| v.is_finite());
        if values.is_empty() {
            return None;
        }
        values.sort_by(f64::total_cmp);
        let (mean, std) = mean_std(&values);
        let mut sketch = DDSketch::new(SketchConfig::new(SKETCH_ALPHA, SKETCH_MAX_BINS, 1e-9));
        for v in &values {
            sketch.add(*v);
        }
        let n = values.len();
        // Deciles by the "lower" rule: the value at rank floor(q·(n-1)).
        let mut edges: Vec<f64> =
            (1..10).map(|k| values[(k as f64 / 10.0 * (n - 1) as f64) as usize]).collect();
        edges.dedup();
        let bin_proportions = super::stats::bin_proportions(&edges, &values);
        let mut few_values: Vec<(f64, u64)> = Vec::new();
        for v in &values {
            if let Some((last, c)) = few_values.last_mut()
                && *last == *v
            {
                *c += 1;
            } else if few_values.len() > FEW_VALUES {
                break;
            } else {
                few_values.push((*v, 1));
            }
        }
        Some(Self {
            count: n as u64,
            missing,
            mean,
            std,
            min: values[0],
            max: values[n - 1],
            bin_edges: edges,
            bin_proportions,
            sketch,
            sample: (n <= RAW_SAMPLE_MAX).then_some(values),
            few_values: (few_values.len() <= FEW_VALUES).then_some(few_values),
        })
    }
}

impl CategoricalProfile {
    pub fn from_counts(counts: HashMap<String, u64>, missing: u64) -> Self {
        let count = counts.values().sum();
        let mut by_freq: Vec<(String, u64)> = counts.into_iter().collect();
        by_freq.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let other = by_freq.iter().skip(MAX_CATEGORIES).map(|(_, c)| c).sum();
        by_freq.truncate(MAX_CATEGORIES);
        Self { count, missing, frequencies: by_freq.into_iter().collect(), other }
    }
}

/// Why a profile file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ProfileLoadError {
    #[error("cannot read the reference profile {}: {source}", .path.display())]
    Read {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is not a weir profile: {source}", .path.display())]
    NotAProfile {
        path: std::path::PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{} is profile format {found}, this weir reads {PROFILE_VERSION}", .path.display())]
    Format { path: std::path::PathBuf, found: u32 },
}

impl Profile {
    /// Reads and checks a profile file.
    pub fn load(path: &Path) -> Result<Self, ProfileLoadError> {
        let path_buf = || path.to_path_buf();
        let text = std::fs::read_to_string(path)
            .map_err(|source| ProfileLoadError::Read { path: path_buf(), source })?;
        let p: Profile = serde_json::from_str(&text)
            .map_err(|source| ProfileLoadError::NotAProfile { path: path_buf(), source })?;
        if p.weir_profile != PROFILE_VERSION {
            return Err(ProfileLoadError::Format { path: path_buf(), found: p.weir_profile });
        }
        Ok(p)
    }
}

/// What `weir profile` is asked for.
pub struct ProfileRequest<'a> {
    pub input: &'a Path,
    /// Features to profile; empty for every column.
    pub features: &'a [String],
    /// Features to treat as categorical even when their values are numbers.
    pub categorical: &'a [String],
    /// Features to treat as numeric even when they look categorical (few integers).
    pub numeric: &'a [String],
    pub model: Option<ModelId>,
}

/// A cell as read from the input.
enum Cell {
    Missing,
    /// A number, and whether it was written as an integer.
    Number(f64, bool),
    Text(String),
}

fn cell_from_text(s: &str) -> Cell {
    let t = s.trim();
    if t.is_empty() || t.eq_ignore_ascii_case("nan") || t.eq_ignore_ascii_case("null") {
        return Cell::Missing;
    }
    match t.parse::<f64>() {
        Ok(f) if f.is_finite() => Cell::Number(f, t.parse::<i64>().is_ok()),
        _ => Cell::Text(t.to_string()),
    }
}

fn cell_from_json(v: &serde_json::Value) -> Cell {
    match v {
        serde_json::Value::Null => Cell::Missing,
        serde_json::Value::Number(n) => {
            n.as_f64().map_or(Cell::Missing, |f| Cell::Number(f, n.is_i64() || n.is_u64()))
        }
        serde_json::Value::String(s) => Cell::Text(s.clone()),
        serde_json::Value::Bool(b) => Cell::Text(b.to_string()),
        other => Cell::Text(other.to_string()),
    }
}

/// Every value of a feature, gathered before its type is known.
#[derive(Default)]
struct Column {
    numbers: Vec<f64>,
    texts: HashMap<String, u64>,
    /// Numbers seen, as text, for when the column turns out categorical.
    number_texts: HashMap<String, u64>,
    /// Some number was written with a fraction or an exponent.
    fractional: bool,
    missing: u64,
}

impl Column {
    fn push(&mut self, cell: Cell, raw: impl FnOnce() -> String) {
        match cell {
            Cell::Missing => self.missing += 1,
            Cell::Number(f, integral) => {
                self.fractional |= !integral;
                self.numbers.push(f);
                *self.number_texts.entry(raw()).or_default() += 1;
            }
            Cell::Text(t) => *self.texts.entry(t).or_default() += 1,
        }
    }
}

/// Builds a profile from a CSV file (with a header row) or JSON lines (`.jsonl`, `.ndjson`;
/// one object per line, features as top-level keys or under `features`).
pub fn build(req: &ProfileRequest<'_>) -> Result<Profile, String> {
    let name = req.input.display();
    let ext = req.input.extension().and_then(|e| e.to_str()).unwrap_or_default();
    let mut columns: BTreeMap<String, Column> = BTreeMap::new();
    let wanted = |f: &str| req.features.is_empty() || req.features.iter().any(|w| w == f);
    let mut rows = 0u64;
    match ext {
        "csv" => {
            let mut reader = csv::Reader::from_path(req.input)
                .map_err(|e| format!("cannot read {name}: {e}"))?;
            let headers = reader.headers().map_err(|e| format!("{name}: {e}"))?.clone();
            for record in reader.records() {
                let record = record.map_err(|e| format!("{name}: {e}"))?;
                rows += 1;
                for (h, v) in headers.iter().zip(record.iter()) {
                    if wanted(h) {
                        columns
                            .entry(h.to_string())
                            .or_default()
                            .push(cell_from_text(v), || v.trim().to_string());
                    }
                }
            }
        }
        "jsonl" | "ndjson" | "json" => {
            let file =
                std::fs::File::open(req.input).map_err(|e| format!("cannot read {name}: {e}"))?;
            for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
                let line = line.map_err(|e| format!("{name}: {e}"))?;
                if line.trim().is_empty() {
                    continue;
                }
                let v: serde_json::Value = serde_json::from_str(&line)
                    .map_err(|e| format!("{name} line {}: {e}", i + 1))?;
                let obj = match v.get("features").and_then(|f| f.as_object()) {
                    Some(f) => f.clone(),
                    None => v
                        .as_object()
                        .cloned()
                        .ok_or_else(|| format!("{name} line {}: not a JSON object", i + 1))?,
                };
                rows += 1;
                for (k, v) in &obj {
                    if wanted(k) {
                        columns.entry(k.clone()).or_default().push(cell_from_json(v), || match v {
                            serde_json::Value::String(s) => s.clone(),
                            other => other.to_string(),
                        });
                    }
                }
            }
        }
        _ => return Err(format!("{name}: give a .csv or .jsonl file")),
    }
    if rows == 0 {
        return Err(format!("{name} has no rows"));
    }
    for f in req.features {
        if !columns.contains_key(f) {
            return Err(format!("feature `{f}` is not in {name}"));
        }
    }
    let mut features = BTreeMap::new();
    for (fname, mut col) in columns {
        // Rows that lacked the key count as missing.
        let seen = col.numbers.len() as u64 + col.texts.values().sum::<u64>() + col.missing;
        col.missing += rows.saturating_sub(seen);
        let few_integers = !col.fractional && col.number_texts.len() <= INTEGER_CARDINALITY_LIMIT;
        let categorical = req.categorical.contains(&fname)
            || (!req.numeric.contains(&fname) && (!col.texts.is_empty() || few_integers));
        if categorical && req.numeric.contains(&fname) {
            return Err(format!("feature `{fname}` is both --categorical and --numeric"));
        }
        if !col.texts.is_empty() && req.numeric.contains(&fname) {
            return Err(format!("feature `{fname}` has text values and cannot be --numeric"));
        }
        let profile = if categorical {
            let mut counts = col.texts;
            for (t, c) in col.number_texts {
                *counts.entry(t).or_default() += c;
            }
            FeatureProfile::Categorical(CategoricalProfile::from_counts(counts, col.missing))
        } else {
            match NumericProfile::from_values(col.numbers, col.missing) {
                Some(p) => FeatureProfile::Numeric(Box::new(p)),
                None => return Err(format!("feature `{fname}` has no values in {name}")),
            }
        };
        features.insert(fname, profile);
    }
    Ok(Profile { weir_profile: PROFILE_VERSION, model: req.model.clone(), rows, features })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_and_jsonl_profiles() {
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("train.csv");
        let mut text = String::from("x,plan,flag,unused\n");
        for i in 0..2000 {
            text.push_str(&format!("{},{},{},z\n", i as f64 / 10.0, ["a", "b", "c"][i % 3], i % 2));
        }
        text.push_str(",a,1,z\n");
        std::fs::write(&csv, text).unwrap();
        let features = vec!["x".to_string(), "plan".to_string(), "flag".to_string()];
        let p = build(&ProfileRequest {
            input: &csv,
            features: &features,
            categorical: &["flag".to_string()],
            numeric: &[],
            model: Some(ModelId { name: "m".into(), version: Some("1".into()) }),
        })
        .unwrap();
        assert_eq!(p.rows, 2001);
        assert!(!p.features.contains_key("unused"));
        let FeatureProfile::Numeric(x) = &p.features["x"] else { panic!() };
        assert_eq!((x.count, x.missing, x.min, x.max), (2000, 1, 0.0, 199.9));
        assert_eq!(x.bin_edges.len(), 9);
        assert!((x.bin_proportions.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert_eq!(x.sample.as_ref().map(Vec::len), Some(2000), "kept exactly");
        let median = x.sketch.quantile(0.5).unwrap().unwrap();
        assert!((median - 99.95).abs() < 0.2, "{median}");
        let FeatureProfile::Categorical(plan) = &p.features["plan"] else { panic!() };
        assert_eq!(plan.frequencies["a"], 668);
        let FeatureProfile::Categorical(flag) = &p.features["flag"] else { panic!() };
        assert_eq!(flag.frequencies.len(), 2);

        // Round trip through JSON.
        let json = serde_json::to_string(&p).unwrap();
        let path = dir.path().join("ref.json");
        std::fs::write(&path, json).unwrap();
        let back = Profile::load(&path).unwrap();
        assert_eq!(back.features.len(), 3);

        let jsonl = dir.path().join("train.jsonl");
        std::fs::write(&jsonl, "{\"features\": {\"a\": 1.5, \"b\": \"x\"}}\n{\"a\": 2.5}\n\n")
            .unwrap();
        let p = build(&ProfileRequest {
            input: &jsonl,
            features: &[],
            categorical: &[],
            numeric: &[],
            model: None,
        })
        .unwrap();
        let FeatureProfile::Numeric(a) = &p.features["a"] else { panic!() };
        assert_eq!(a.sample.as_deref(), Some(&[1.5, 2.5][..]));
        let FeatureProfile::Categorical(b) = &p.features["b"] else { panic!() };
        assert_eq!(b.missing, 1);
    }

    #[test]
    fn bad_inputs_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("x.txt");
        std::fs::write(&bad, "a").unwrap();
        let req = |p: &Path| {
            build(&ProfileRequest {
                input: p,
                features: &[],
                categorical: &[],
                numeric: &[],
                model: None,
            })
        };
        assert!(req(&bad).err().unwrap().contains(".csv or .jsonl"));
        let j = dir.path().join("x.jsonl");
        std::fs::write(&j, "[1]\n").unwrap();
        assert!(req(&j).err().unwrap().contains("not a JSON object"));
        assert!(req(&dir.path().join("missing.csv")).err().unwrap().contains("cannot read"));
        let p = dir.path().join("p.json");
        std::fs::write(&p, "{\"weir_profile\": 9, \"rows\": 1, \"features\": {}}").unwrap();
        let e = Profile::load(&p).err().unwrap();
        assert!(matches!(e, ProfileLoadError::Format { found: 9, .. }), "{e}");
        assert!(e.to_string().contains("format 9"), "{e}");
    }
}
