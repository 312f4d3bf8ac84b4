//! Robust trend statistics for memory series: Theil–Sen slope with a 95%
//! interval, the Mann–Kendall trend test, and small helpers (median, MAD).
//!
//! No well-kept crate offers Theil–Sen or Mann–Kendall, so they are written
//! here and unit-tested against known series; the standard normal CDF comes
//! from `statrs`. Both tests are O(n²) in the number of points; callers keep
//! series short (see [`thin`]).

use statrs::distribution::{ContinuousCDF, Normal};

/// z for a two-sided 95% interval.
const Z_975: f64 = 1.959_963_984_540_054;

/// A Theil–Sen fit `y = intercept + slope * x`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TheilSen {
    pub slope: f64,
    pub intercept: f64,
    /// 95% interval of the slope (Sen 1968, from the ranks of the pair slopes).
    pub ci95: (f64, f64),
}

impl TheilSen {
    /// The fitted value at `x`.
    pub fn at(&self, x: f64) -> f64 {
        self.intercept + self.slope * x
    }
}

/// The Mann–Kendall test of a monotonic trend.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MannKendall {
    /// Sum of signs over all ordered pairs.
    pub s: i64,
    /// Normal approximation of S, with continuity and tie corrections.
    pub z: f64,
    /// Two-sided p-value.
    pub p_value: f64,
    /// Kendall's tau (S over the number of pairs).
    pub tau: f64,
}

/// Median of `values` (sorts a copy). NaN for an empty slice.
pub fn median(values: &[f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    median_sorted(&v)
}

fn median_sorted(v: &[f64]) -> f64 {
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Median absolute deviation from the median, scaled by 1.4826 so that it
/// estimates the standard deviation of normal noise.
pub fn mad_sigma(values: &[f64]) -> f64 {
    let m = median(values);
    let dev: Vec<f64> = values.iter().map(|v| (v - m).abs()).collect();
    1.4826 * median(&dev)
}

/// Theil–Sen estimator over points `(x, y)`. `None` with fewer than 3 points
/// or when all `x` are equal.
pub fn theil_sen(x: &[f64], y: &[f64]) -> Option<TheilSen> {
    let n = x.len().min(y.len());
    if n < 3 {
        return None;
    }
    let slopes = pair_slopes(x, y);
    if slopes.is_empty() {
        return None;
    }
    let slope = median_sorted(&slopes);
    let residual_intercepts: Vec<f64> = (0..n).map(|i| y[i] - slope * x[i]).collect();
    let intercept = median(&residual_intercepts);

    // Sen's interval: ranks (N - C)/2 and (N + C)/2 of the sorted pair slopes,
    // C = z * sqrt(Var(S)).
    let nf = n as f64;
    let var_s = nf * (nf - 1.0) * (2.0 * nf + 5.0) / 18.0;
    let c = Z_975 * var_s.sqrt();
    let m = slopes.len() as f64;
    let lo_rank = ((m - c) / 2.0).floor().max(0.0) as usize;
    let hi_rank = ((m + c) / 2.0).ceil().min(m - 1.0).max(0.0) as usize;
    let lo = slopes[lo_rank.min(slopes.len() - 1)];
    let hi = slopes[hi_rank.min(slopes.len() - 1)];
    Some(TheilSen {
        slope,
        intercept,
        ci95: (lo.min(slope), hi.max(slope)),
    })
}

/// The slopes `(y[j] - y[i]) / (x[j] - x[i])` of every pair of points
/// (`i < j`, `x` not equal), sorted: what Theil–Sen and Sen's interval read.
pub fn pair_slopes(x: &[f64], y: &[f64]) -> Vec<f64> {
    let n = x.len().min(y.len());
    let mut slopes = Vec::with_capacity(n * n.saturating_sub(1) / 2);
    for i in 0..n {
        for j in (i + 1)..n {
            let dx = x[j] - x[i];
            if dx != 0.0 {
                slopes.push((y[j] - y[i]) / dx);
            }
        }
    }
    slopes.sort_by(f64::total_cmp);
    slopes
}

/// Median of values already sorted. NaN for an empty slice.
pub fn median_of_sorted(sorted: &[f64]) -> f64 {
    if sorted.is_empty() {
        f64::NAN
    } else {
        median_sorted(sorted)
    }
}

/// Mann–Kendall trend test of `y` in time order. `None` with fewer than 3 points.
pub fn mann_kendall(y: &[f64]) -> Option<MannKendall> {
    let n = y.len();
    if n < 3 {
        return None;
    }
    let mut s: i64 = 0;
    for i in 0..n {
        for j in (i + 1)..n {
            s += match y[j].total_cmp(&y[i]) {
                std::cmp::Ordering::Greater => 1,
                std::cmp::Ordering::Less => -1,
                std::cmp::Ordering::Equal => 0,
            };
        }
    }
    // Tie correction: groups of equal values.
    let mut sorted = y.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mut tie_term = 0.0;
    let mut i = 0;
    while i < n {
        let mut j = i + 1;
        while j < n && sorted[j] == sorted[i] {
            j += 1;
        }
        let t = (j - i) as f64;
        if t > 1.0 {
            tie_term += t * (t - 1.0) * (2.0 * t + 5.0);
        }
        i = j;
    }
    let nf = n as f64;
    let var_s = (nf * (nf - 1.0) * (2.0 * nf + 5.0) - tie_term) / 18.0;
    let z = if var_s <= 0.0 {
        0.0
    } else if s > 0 {
        (s as f64 - 1.0) / var_s.sqrt()
    } else if s < 0 {
        (s as f64 + 1.0) / var_s.sqrt()
    } else {
        0.0
    };
    let p_value = 2.0 * (1.0 - standard_normal_cdf(z.abs()));
    let pairs = nf * (nf - 1.0) / 2.0;
    Some(MannKendall {
        s,
        z,
        p_value: p_value.clamp(0.0, 1.0),
        tau: s as f64 / pairs,
    })
}

/// Φ(z) of the standard normal distribution.
pub fn standard_normal_cdf(z: f64) -> f64 {
    // Normal::new(0, 1) cannot fail; fall back to the symmetric midpoint anyway.
    Normal::new(0.0, 1.0).map(|n| n.cdf(z)).unwrap_or(0.5)
}

/// The z with `1 - Φ(z) = p`: the one-sided critical value at level `p`.
pub fn upper_normal_quantile(p: f64) -> f64 {
    Normal::new(0.0, 1.0)
        .map(|n| -n.inverse_cdf(p.clamp(1e-300, 0.5)))
        .unwrap_or(f64::INFINITY)
}

/// Indices of at most `max` points spread evenly over `0..n` (first and last
/// kept), so that O(n²) statistics stay cheap for long runs.
pub fn thin(n: usize, max: usize) -> Vec<usize> {
    if n <= max || max < 2 {
        return (0..n).collect();
    }
    let step = (n - 1) as f64 / (max - 1) as f64;
    let mut out: Vec<usize> = (0..max)
        .map(|k| (k as f64 * step).round() as usize)
        .collect();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic pseudo-random sequence in [-1, 1) (xorshift), so tests
    /// need no RNG dependency and never flake.
    pub(crate) fn noise(seed: u64, n: usize) -> Vec<f64> {
        let mut state = seed.max(1);
        (0..n)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state % 2_000_001) as f64 / 1_000_000.0 - 1.0
            })
            .collect()
    }

    fn xs(n: usize, dt: f64) -> Vec<f64> {
        (0..n).map(|i| i as f64 * dt).collect()
    }

    #[test]
    fn theil_sen_recovers_the_slope_of_a_noisy_line() {
        let x = xs(120, 0.25);
        let e = noise(7, 120);
        // 2 MB/s on a 50 MB floor with ±1 MB noise.
        let y: Vec<f64> = x
            .iter()
            .zip(&e)
            .map(|(x, e)| 50e6 + 2e6 * x + 1e6 * e)
            .collect();
        let fit = theil_sen(&x, &y).unwrap();
        assert!((fit.slope - 2e6).abs() / 2e6 < 0.02, "slope {}", fit.slope);
        assert!(fit.ci95.0 < 2e6 && 2e6 < fit.ci95.1, "ci {:?}", fit.ci95);
        assert!(
            fit.ci95.0 > 1.8e6 && fit.ci95.1 < 2.2e6,
            "ci {:?}",
            fit.ci95
        );
        assert!((fit.at(0.0) - 50e6).abs() < 1e6);
        let mk = mann_kendall(&y).unwrap();
        assert!(mk.p_value < 1e-6 && mk.z > 0.0);
    }

    #[test]
    fn theil_sen_ignores_a_few_outliers() {
        let x = xs(60, 1.0);
        let mut y: Vec<f64> = x.iter().map(|x| 3.0 * x + 10.0).collect();
        y[5] = 1e9;
        y[40] = -1e9;
        let fit = theil_sen(&x, &y).unwrap();
        assert!((fit.slope - 3.0).abs() < 1e-9);
    }

    #[test]
    fn pure_noise_has_no_significant_trend_and_an_interval_around_zero() {
        let x = xs(120, 0.25);
        let y: Vec<f64> = noise(99, 120).iter().map(|e| 30e6 + 2e6 * e).collect();
        let fit = theil_sen(&x, &y).unwrap();
        assert!(fit.ci95.0 < 0.0 && fit.ci95.1 > 0.0, "ci {:?}", fit.ci95);
        let mk = mann_kendall(&y).unwrap();
        assert!(mk.p_value > 0.05, "p {}", mk.p_value);
    }

    #[test]
    fn a_step_is_a_trend_to_mann_kendall_but_thirds_show_it_flat() {
        // A single step in the middle: MK calls it a trend (it is monotone in
        // rank), which is why the classifier also compares window thirds.
        let x = xs(90, 1.0);
        let y: Vec<f64> = x
            .iter()
            .zip(noise(3, 90))
            .map(|(x, e)| if *x < 45.0 { 10e6 } else { 40e6 } + 1e5 * e)
            .collect();
        let mk = mann_kendall(&y).unwrap();
        assert!(mk.p_value < 0.001);
        let last = theil_sen(&x[60..], &y[60..]).unwrap();
        assert!(last.ci95.0 <= 0.0 && last.ci95.1 >= 0.0, "{last:?}");
    }

    #[test]
    fn a_plateau_has_a_steep_first_third_and_a_flat_last_third() {
        let x = xs(120, 0.25);
        let y: Vec<f64> = x
            .iter()
            .zip(noise(11, 120))
            .map(|(x, e)| 8e6 * (1.0 - (-x / 3.0).exp()) + 5e4 * e)
            .collect();
        let first = theil_sen(&x[..40], &y[..40]).unwrap();
        let last = theil_sen(&x[80..], &y[80..]).unwrap();
        assert!(first.slope > 10.0 * last.slope.abs(), "{first:?} {last:?}");
    }

    #[test]
    fn a_sawtooth_without_drift_has_a_slope_near_zero() {
        // Rises 1 MB/s for 5 s then drops back: a churn-like saw.
        let x = xs(160, 0.25);
        let y: Vec<f64> = x.iter().map(|x| 20e6 + 1e6 * (x % 5.0)).collect();
        let fit = theil_sen(&x, &y).unwrap();
        assert!(fit.slope.abs() < 0.05e6, "slope {}", fit.slope);
        // The same saw on a 100 kB/s drift: the drift is found.
        let y2: Vec<f64> = x.iter().zip(&y).map(|(x, y)| y + 0.5e6 * x).collect();
        let fit2 = theil_sen(&x, &y2).unwrap();
        assert!((fit2.slope - 0.5e6).abs() < 0.15e6, "slope {}", fit2.slope);
    }

    #[test]
    fn mann_kendall_matches_a_hand_computed_case() {
        // y = [1, 3, 2, 4]: pairs (+,+,+,-,+,+) → S = 4; Var = 4*3*13/18.
        let mk = mann_kendall(&[1.0, 3.0, 2.0, 4.0]).unwrap();
        assert_eq!(mk.s, 4);
        let z = 3.0 / (4.0f64 * 3.0 * 13.0 / 18.0).sqrt();
        assert!((mk.z - z).abs() < 1e-12);
        assert!((mk.tau - 4.0 / 6.0).abs() < 1e-12);
        // Ties lower the variance: all equal means no trend at all.
        let flat = mann_kendall(&[5.0; 10]).unwrap();
        assert_eq!(flat.s, 0);
        assert_eq!(flat.p_value, 1.0);
    }

    #[test]
    fn normal_cdf_and_helpers_are_right() {
        assert!((standard_normal_cdf(0.0) - 0.5).abs() < 1e-12);
        assert!((standard_normal_cdf(1.96) - 0.975).abs() < 1e-3);
        assert!((upper_normal_quantile(0.025) - Z_975).abs() < 1e-6);
        assert!((upper_normal_quantile(1e-4) - 3.719).abs() < 1e-3);
        assert_eq!(
            pair_slopes(&[0.0, 1.0, 2.0], &[0.0, 2.0, 1.0]),
            vec![-1.0, 0.5, 2.0]
        );
        assert_eq!(median_of_sorted(&[1.0, 2.0, 4.0]), 2.0);
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!((mad_sigma(&[1.0, 2.0, 3.0, 4.0, 100.0]) - 1.4826).abs() < 1e-9);
        assert_eq!(thin(5, 10), vec![0, 1, 2, 3, 4]);
        let t = thin(1000, 11);
        assert_eq!(t.len(), 11);
        assert_eq!((t[0], t[10]), (0, 999));
    }
}
