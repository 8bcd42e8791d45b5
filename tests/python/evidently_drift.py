"""Evidently's own drift verdicts on scikit-learn datasets: the reference of weir's drift test.

Writes, per case, `tests/data/drift/<case>/reference.csv`, `current.csv` and `evidently.json`
(per column: the type Evidently inferred, the test its default selection chose, the score and
the verdict). `tests/it/evidently_drift.rs` runs `weir profile` and the `drift` transform on
the same CSV files and compares.

Evidently is not installed by the test set-up (it is heavy, and pins pandas below 2.3): these
files were made with Evidently 0.7.23 and pandas 2.2 in a virtual environment of their own,

    python3 -m venv ev && ev/bin/pip install "evidently>=0.7,<0.8" "pandas>=2.2,<2.3" scikit-learn
    ev/bin/python tests/python/evidently_drift.py

and are committed; run it again to check them against a newer Evidently.
"""

import json
import pathlib

import numpy as np
import pandas as pd
from sklearn.datasets import load_breast_cancer, load_digits, load_wine

from evidently import Dataset, Report
from evidently.presets import DataDriftPreset

OUT = pathlib.Path(__file__).resolve().parents[1] / "data" / "drift"


def cases():
    rng = np.random.default_rng(20261207)
    bc = load_breast_cancer(as_frame=True).frame
    # Small reference (300 rows): KS for the measurements, the Z-test for the 0/1 target.
    order = rng.permutation(len(bc))
    yield "breast_cancer_split", bc.iloc[order[:300]], bc.iloc[order[300:]]
    # The current window skewed to large tumours: drift in most columns.
    big = bc.sort_values("mean radius").iloc[-200:]
    yield "breast_cancer_shifted", bc.iloc[order[:300]], big
    # Three classes: chi-square for the target.
    wine = load_wine(as_frame=True).frame
    order = rng.permutation(len(wine))
    yield "wine_split", wine.iloc[order[:100]], wine.iloc[order[100:]]
    # Large reference (1,200 rows of 8x8 images): pixels with at most ten levels are
    # categorical (Jensen-Shannon), the others numeric (Wasserstein); the current window
    # holds only the digits 0 to 4.
    digits = load_digits(as_frame=True).frame
    order = rng.permutation(len(digits))
    ref = digits.iloc[order[:1200]]
    rest = digits.iloc[order[1200:]]
    yield "digits_large", ref, rest
    yield "digits_shifted", ref, rest[rest["target"] < 5]
    # A large float reference: breast cancer rows drawn with replacement, with noise of 1% of
    # each column's spread, rounded to 4 decimals (2,000 rows); the current window from the
    # malignant rows.
    cols = [c for c in bc.columns if c != "target"]
    noise = bc[cols].std().to_numpy() * 0.01
    idx = rng.integers(0, len(bc), 2000)
    ref = bc.iloc[idx].copy()
    ref[cols] = (ref[cols].to_numpy() + rng.normal(0.0, 1.0, (2000, len(cols))) * noise).round(4)
    malignant = bc[bc["target"] == 0]
    idx = rng.integers(0, len(malignant), 800)
    cur = malignant.iloc[idx].copy()
    cur[cols] = (cur[cols].to_numpy() + rng.normal(0.0, 1.0, (800, len(cols))) * noise).round(4)
    yield "breast_cancer_large", ref, cur


METHODS = {
    "K-S p_value": "ks",
    "Z-test p_value": "z",
    "chi-square p_value": "chisquare",
    "Jensen-Shannon distance": "jensenshannon",
    "Wasserstein distance (normed)": "wasserstein",
}


def evidently_columns(ref, cur):
    report = Report([DataDriftPreset()])
    snapshot = report.run(Dataset.from_pandas(cur.reset_index(drop=True)), Dataset.from_pandas(ref.reset_index(drop=True)))
    out = {}
    for m in snapshot.dict()["metrics"]:
        config = m["config"]
        if config["type"] != "evidently:metric_v2:ValueDrift":
            continue
        method = METHODS[config["method"]]
        threshold = float(config["threshold"])
        score = float(m["value"])
        distance = method in ("jensenshannon", "wasserstein")
        if distance:
            drifted = score >= threshold
        elif method == "ks":
            drifted = score <= threshold
        else:
            drifted = score < threshold
        out[config["column"]] = {"method": method, "score": score, "threshold": threshold, "drifted": drifted}
    return out


def main():
    for name, ref, cur in cases():
        d = OUT / name
        d.mkdir(parents=True, exist_ok=True)
        ref.to_csv(d / "reference.csv", index=False)
        cur.to_csv(d / "current.csv", index=False)
        columns = evidently_columns(ref, cur)
        (d / "evidently.json").write_text(json.dumps(columns, indent=1, sort_keys=True) + "\n")
        print(name, len(ref), len(cur), len(columns), "columns", sum(c["drifted"] for c in columns.values()), "drifted")


if __name__ == "__main__":
    main()
