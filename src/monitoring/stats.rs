//! The drift statistics, as Evidently applies them and SciPy computes them.
//!
//! - [`ks_2samp`]: the two-sample Kolmogorov-Smirnov statistic and its two-sided p-value,
//!   computed as SciPy's `ks_2samp(method="auto")` does: the exact distribution when both
//!   samples have at most 10,000 values, else the asymptotic Kolmogorov distribution.
//! - [`wasserstein`]: the 1-D Wasserstein (earth mover's) distance between two samples, as
//!   `scipy.stats.wasserstein_distance`; Evidently divides it by the reference's standard
//!   deviation (population, `ddof = 0`).
//! - [`jensen_shannon`]: the Jensen-Shannon distance (the square root of the divergence,
//!   natural logarithm), as `scipy.spatial.distance.jensenshannon`.
//! - [`chi_square`]: Pearson's statistic and its p-value, as `scipy.stats.chisquare`.
//! - [`psi`]: the population stability index over given proportions, empty bins filled with
//!   0.0001 as Evidently does.
//! - [`z_test`]: the two-proportion Z-test Evidently runs on binary categorical features
//!   (`evidently/legacy/calculations/stattests/z_stattest.py`: pooled proportion, two-sided
//!   p-value `2·(1 - Φ(|z|))`).
//!
//! Written here rather than taken from a crate: `statrs` supplies the chi-square distribution,
//! but no maintained Rust crate has the two-sample KS exact distribution or these distances.
//! Each function names the reference it follows.

use statrs::distribution::{ChiSquared, ContinuousCDF, Normal};

/// Up to this many values per sample the KS p-value is exact (SciPy's `MAX_AUTO_N`).
pub const KS_EXACT_MAX_N: usize = 10_000;

/// The value empty bins get before PSI is computed (Evidently's default).
pub const PSI_EMPTY_BIN: f64 = 0.0001;

/// A test's outcome.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TestResult {
    pub statistic: f64,
    pub p_value: f64,
}

/// The largest distance between the empirical CDFs of two sorted samples (ties handled: the
/// CDFs are compared after every copy of a value).
pub fn ks_statistic(a: &[f64], b: &[f64]) -> f64 {
    let (n, m) = (a.len() as f64, b.len() as f64);
    let (mut i, mut j, mut d) = (0, 0, 0.0f64);
    while i < a.len() && j < b.len() {
        let x = a[i].min(b[j]);
        while i < a.len() && a[i] <= x {
            i += 1;
        }
        while j < b.len() && b[j] <= x {
            j += 1;
        }
        d = d.max((i as f64 / n - j as f64 / m).abs());
    }
    d
}

/// Two-sample, two-sided Kolmogorov-Smirnov test on sorted samples (`None` if one is empty).
pub fn ks_2samp(a: &[f64], b: &[f64]) -> Option<TestResult> {
    if a.is_empty() || b.is_empty() {
        return None;
    }
    let d = ks_statistic(a, b);
    let (m, n) = (a.len(), b.len());
    let p = if m.max(n) <= KS_EXACT_MAX_N {
        ks_exact_p_value(m, n, d)
    } else {
        let en = (m as f64 * n as f64) / (m + n) as f64;
        kolmogorov_sf(en.round().sqrt() * d)
    };
    Some(TestResult { statistic: d, p_value: p.clamp(0.0, 1.0) })
}

fn gcd(mut a: usize, mut b: usize) -> usize {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// P(D >= d) for samples of sizes `m` and `n` under the null hypothesis.
///
/// Hodges (1958), "The significance probability of the Smirnov two-sample test": D >= d
/// exactly when the lattice path of the merged sample, from (0, 0) to (m, n), touches a point
/// with |i/m - j/n| >= d. Every path is equally likely, so the probability of staying inside
/// is the fraction of inside paths, computed column by column as a probability
/// (w(i, j) = w(i-1, j)·i/(i+j) + w(i, j-1)·j/(i+j)) so nothing overflows. `d` is first
/// rounded to the lattice (a multiple of 1/lcm(m, n)) and the boundary test done in integers,
/// as SciPy does, so values that differ by rounding error fall on the same side.
///
/// Row i's inside points are one run of j around i·n/m, whose ends only move right as i
/// grows, and every point outside it is 0; so only the run is computed. That is the full
/// table's arithmetic in the same order (the same bits), at a cost of m times the run's width
/// instead of m·n: a window that did not drift has a small d and a narrow run.
pub fn ks_exact_p_value(m: usize, n: usize, d: f64) -> f64 {
    let g = gcd(m, n);
    let lcm = (m / g) as f64 * n as f64;
    let h = (d * lcm).round();
    if h <= 0.0 {
        return 1.0;
    }
    // Inside when |i·n - j·m| < h·g.
    let bound = h * g as f64;
    let inside = |i: usize, j: usize| ((i * n) as f64 - (j * m) as f64).abs() < bound;
    let mut w = vec![0.0f64; n + 1];
    w[0] = 1.0;
    // The run of row 0 is 0..=hi; (0, 0) is inside since bound > 0.
    let (mut lo, mut hi) = (0, 0);
    while hi < n && inside(0, hi + 1) {
        hi += 1;
        w[hi] = w[hi - 1];
    }
    for i in 1..=m {
        // Points that left the run on its left become 0.
        while lo <= n && !inside(i, lo) {
            w[lo] = 0.0;
            lo += 1;
        }
        if lo > n {
            // No point of this row is inside: no path stays inside.
            return 1.0;
        }
        hi = hi.max(lo);
        while hi < n && inside(i, hi + 1) {
            hi += 1;
        }
        let fi = i as f64;
        // Right of the previous run w is still 0, as the full table has it.
        for j in lo.max(1)..=hi {
            let fj = j as f64;
            w[j] = (w[j] * fi + w[j - 1] * fj) / (fi + fj);
        }
    }
    1.0 - w[n]
}

/// The survival function of the Kolmogorov distribution, Q(x) = P(K > x).
///
/// For x >= 1: Q(x) = 2 Σ_{k>=1} (-1)^(k-1) exp(-2k²x²); below, the equivalent series
/// 1 - (√(2π)/x) Σ_{k>=1} exp(-(2k-1)²π²/(8x²)), which converges fast there (Marsaglia,
/// Tsang & Wang 2003, "Evaluating Kolmogorov's distribution", eq. 1 and 2).
pub fn kolmogorov_sf(x: f64) -> f64 {
    if x <= 0.0 {
        return 1.0;
    }
    if x >= 1.0 {
        let mut sum = 0.0;
        for k in 1..=100 {
            let k = k as f64;
            let term = (-2.0 * k * k * x * x).exp();
            sum += if k as u64 % 2 == 1 { term } else { -term };
            if term < 1e-18 {
                break;
            }
        }
        (2.0 * sum).clamp(0.0, 1.0)
    } else {
        let mut sum = 0.0;
        for k in 1..=100 {
            let odd = (2 * k - 1) as f64;
            let term = (-(odd * odd) * std::f64::consts::PI.powi(2) / (8.0 * x * x)).exp();
            sum += term;
            if term < 1e-18 {
                break;
            }
        }
        (1.0 - (2.0 * std::f64::consts::PI).sqrt() / x * sum).clamp(0.0, 1.0)
    }
}

/// The 1-D Wasserstein distance between two sorted samples: ∫ |U(x) - V(x)| dx over their
/// empirical CDFs (`scipy.stats.wasserstein_distance` with unit weights).
pub fn wasserstein(a: &[f64], b: &[f64]) -> Option<f64> {
    if a.is_empty() || b.is_empty() {
        return None;
    }
    let (n, m) = (a.len() as f64, b.len() as f64);
    let (mut i, mut j) = (0, 0);
    let mut prev = a[0].min(b[0]);
    let mut total = 0.0;
    while i < a.len() || j < b.len() {
        let x = match (a.get(i), b.get(j)) {
            (Some(&x), Some(&y)) => x.min(y),
            (Some(&x), None) => x,
            (None, Some(&y)) => y,
            (None, None) => break,
        };
        // Between `prev` and `x` both CDFs are flat.
        total += (x - prev) * (i as f64 / n - j as f64 / m).abs();
        while i < a.len() && a[i] <= x {
            i += 1;
        }
        while j < b.len() && b[j] <= x {
            j += 1;
        }
        prev = x;
    }
    Some(total)
}

/// Population standard deviation (`numpy.std`, `ddof = 0`) and mean.
pub fn mean_std(values: &[f64]) -> (f64, f64) {
    if values.is_empty() {
        return (0.0, 0.0);
    }
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
    (mean, var.sqrt())
}

/// Jensen-Shannon distance between two frequency vectors over the same categories (each
/// normalised to sum 1 first), natural logarithm.
pub fn jensen_shannon(p: &[f64], q: &[f64]) -> Option<f64> {
    let (sp, sq) = (p.iter().sum::<f64>(), q.iter().sum::<f64>());
    if p.len() != q.len() || sp <= 0.0 || sq <= 0.0 {
        return None;
    }
    let kl = |x: f64, m: f64| if x > 0.0 { x * (x / m).ln() } else { 0.0 };
    let mut js = 0.0;
    for (x, y) in p.iter().zip(q) {
        let (x, y) = (x / sp, y / sq);
        let m = (x + y) / 2.0;
        js += 0.5 * kl(x, m) + 0.5 * kl(y, m);
    }
    Some(js.max(0.0).sqrt())
}

/// Pearson's chi-square goodness-of-fit test of observed counts against expected ones, with
/// k - 1 degrees of freedom. An expected count of zero where something was observed makes the
/// statistic infinite and the p-value 0.
pub fn chi_square(observed: &[f64], expected: &[f64]) -> Option<TestResult> {
    if observed.len() != expected.len() || observed.len() < 2 {
        return None;
    }
    let mut stat = 0.0;
    for (o, e) in observed.iter().zip(expected) {
        if *e > 0.0 {
            stat += (o - e).powi(2) / e;
        } else if *o > 0.0 {
            return Some(TestResult { statistic: f64::INFINITY, p_value: 0.0 });
        }
    }
    let dist = ChiSquared::new((observed.len() - 1) as f64).ok()?;
    Some(TestResult { statistic: stat, p_value: dist.sf(stat).clamp(0.0, 1.0) })
}

/// Two-proportion Z-test: `k1` of `n1` reference values and `k2` of `n2` current values are
/// of the second category (of two). When both samples hold one and the same category the
/// p-value is 1, as in Evidently.
pub fn z_test(k1: f64, n1: f64, k2: f64, n2: f64) -> Option<TestResult> {
    if n1 <= 0.0 || n2 <= 0.0 {
        return None;
    }
    let (p1, p2) = (k1 / n1, k2 / n2);
    let pooled = (k1 + k2) / (n1 + n2);
    let var = pooled * (1.0 - pooled) * (1.0 / n1 + 1.0 / n2);
    if var <= 0.0 {
        return Some(TestResult { statistic: 0.0, p_value: 1.0 });
    }
    let z = (p1 - p2) / var.sqrt();
    let normal = Normal::new(0.0, 1.0).ok()?;
    Some(TestResult { statistic: z, p_value: (2.0 * (1.0 - normal.cdf(z.abs()))).clamp(0.0, 1.0) })
}

/// Population stability index Σ (c - r)·ln(c / r) over bin proportions, empty bins set to
/// [`PSI_EMPTY_BIN`].
pub fn psi(reference: &[f64], current: &[f64]) -> f64 {
    reference
        .iter()
        .zip(current)
        .map(|(r, c)| {
            let r = if *r > 0.0 { *r } else { PSI_EMPTY_BIN };
            let c = if *c > 0.0 { *c } else { PSI_EMPTY_BIN };
            (c - r) * (c / r).ln()
        })
        .sum()
}

/// Proportions of `values` in the bins cut by sorted interior `edges`: bin k holds the values
/// with exactly k edges <= value (`numpy.searchsorted(edges, x, side="right")`).
pub fn bin_proportions(edges: &[f64], values: &[f64]) -> Vec<f64> {
    let mut counts = vec![0.0; edges.len() + 1];
    for v in values {
        counts[edges.partition_point(|e| e <= v)] += 1.0;
    }
    let n = values.len().max(1) as f64;
    counts.iter().map(|c| c / n).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ks_small_cases_by_hand() {
        // Identical samples: D = 0, p = 1.
        let r = ks_2samp(&[1.0, 2.0, 3.0], &[1.0, 2.0, 3.0]).unwrap();
        assert_eq!((r.statistic, r.p_value), (0.0, 1.0));
        // Fully separated samples of 3 and 3: D = 1, p = 2 / C(6, 3) = 0.1.
        let r = ks_2samp(&[1.0, 2.0, 3.0], &[4.0, 5.0, 6.0]).unwrap();
        assert_eq!(r.statistic, 1.0);
        assert!((r.p_value - 0.1).abs() < 1e-12, "{}", r.p_value);
        // 2 and 4 separated: 2 / C(6, 2) = 2 / 15.
        let r = ks_2samp(&[1.0, 2.0], &[4.0, 5.0, 6.0, 7.0]).unwrap();
        assert!((r.p_value - 2.0 / 15.0).abs() < 1e-12, "{}", r.p_value);
        assert!(ks_2samp(&[], &[1.0]).is_none());
    }

    /// The whole table, as `ks_exact_p_value` computed it before it kept to the run.
    fn ks_exact_p_value_full(m: usize, n: usize, d: f64) -> f64 {
        let g = gcd(m, n);
        let lcm = (m / g) as f64 * n as f64;
        let h = (d * lcm).round();
        if h <= 0.0 {
            return 1.0;
        }
        let bound = h * g as f64;
        let inside = |i: usize, j: usize| ((i * n) as f64 - (j * m) as f64).abs() < bound;
        let mut w = vec![0.0f64; n + 1];
        w[0] = 1.0;
        for j in 1..=n {
            w[j] = if inside(0, j) { w[j - 1] } else { 0.0 };
        }
        for i in 1..=m {
            w[0] = if inside(i, 0) { w[0] } else { 0.0 };
            for j in 1..=n {
                w[j] = if inside(i, j) {
                    let (fi, fj) = (i as f64, j as f64);
                    (w[j] * fi + w[j - 1] * fj) / (fi + fj)
                } else {
                    0.0
                };
            }
        }
        1.0 - w[n]
    }

    #[test]
    fn ks_exact_run_is_bit_for_bit_the_full_table() {
        let sizes = [1, 2, 3, 5, 7, 12, 30, 64, 100, 257];
        for &m in &sizes {
            for &n in &sizes {
                // Every lattice distance k / lcm, and the points between them.
                let lcm = (m / gcd(m, n)) * n;
                let steps = lcm.min(300);
                for k in 0..=2 * steps {
                    let d = k as f64 / (2 * steps) as f64;
                    let (run, full) = (ks_exact_p_value(m, n, d), ks_exact_p_value_full(m, n, d));
                    assert_eq!(run.to_bits(), full.to_bits(), "m={m} n={n} d={d}: {run} {full}");
                }
            }
        }
        // Windows of the drift transform's default size.
        for d in [0.01, 0.03, 0.05, 0.061, 0.1, 0.5] {
            let (run, full) =
                (ks_exact_p_value(1000, 1000, d), ks_exact_p_value_full(1000, 1000, d));
            assert_eq!(run.to_bits(), full.to_bits(), "d={d}");
        }
    }

    #[test]
    fn kolmogorov_distribution_values() {
        // Known values: Q(1.0) = 0.26999967, Q(0.5) = 0.96394524, Q(1.36) ≈ 0.0494.
        assert!((kolmogorov_sf(1.0) - 0.269_999_67).abs() < 1e-7);
        assert!((kolmogorov_sf(0.5) - 0.963_945_24).abs() < 1e-7);
        assert!((kolmogorov_sf(1.36) - 0.049_47).abs() < 1e-4);
        assert_eq!(kolmogorov_sf(0.0), 1.0);
    }

    #[test]
    fn wasserstein_by_hand() {
        assert_eq!(wasserstein(&[0.0, 1.0, 3.0], &[5.0, 6.0, 8.0]), Some(5.0));
        assert_eq!(wasserstein(&[0.0], &[0.0, 2.0]), Some(1.0));
    }

    #[test]
    fn z_test_by_hand() {
        // 60/100 against 40/100: pooled 0.5, z = 0.2 / sqrt(0.25 · 0.02) = 2.828...
        let r = z_test(60.0, 100.0, 40.0, 100.0).unwrap();
        assert!((r.statistic - 2.828_427_124_746_19).abs() < 1e-12);
        assert!((r.p_value - 0.004_677_734_981_047_3).abs() < 1e-9, "{}", r.p_value);
        assert_eq!(z_test(0.0, 10.0, 0.0, 5.0).unwrap().p_value, 1.0);
    }

    #[test]
    fn js_chi_psi_by_hand() {
        assert_eq!(jensen_shannon(&[1.0, 0.0], &[1.0, 0.0]), Some(0.0));
        // Disjoint: JSD = ln 2.
        let d = jensen_shannon(&[1.0, 0.0], &[0.0, 1.0]).unwrap();
        assert!((d - std::f64::consts::LN_2.sqrt()).abs() < 1e-12);
        // 1 degree of freedom, statistic 3.841 -> p = 0.05.
        let r = chi_square(&[60.0, 40.0], &[50.0, 50.0]).unwrap();
        assert!((r.statistic - 4.0).abs() < 1e-12);
        assert!((r.p_value - 0.045_500_26).abs() < 1e-7, "{}", r.p_value);
        assert_eq!(chi_square(&[1.0, 1.0], &[2.0, 0.0]).unwrap().p_value, 0.0);
        assert_eq!(psi(&[0.5, 0.5], &[0.5, 0.5]), 0.0);
        assert!(psi(&[0.5, 0.5], &[0.9, 0.1]) > 0.25);
        assert_eq!(bin_proportions(&[1.0, 2.0], &[0.0, 1.0, 1.5, 2.0]), vec![0.25, 0.5, 0.25]);
    }
}
