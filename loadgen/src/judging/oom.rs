//! Time to OOM: for a run, the time until RSS reaches the limit at the
//! current slope, with its 95% interval; for `loadgen oom`, the kill
//! predicted from the cgroup's usage so far.

use std::collections::BTreeMap;

use leaklab_model::oom::Prediction;
use leaklab_model::run::SignalFit;

use super::stats;

/// Fitted predictions need at least this many samples after the warm-up.
const MIN_FIT_SAMPLES: usize = 6;

/// Theil–Sen is quadratic: fit on at most this many (evenly thinned) samples.
const MAX_FIT_SAMPLES: usize = 400;

/// Time until RSS reaches `limit` at the current slope, with the interval
/// from the slope's 95% interval. Uses RSS when it rises, else the heap signal.
pub fn time_to_oom(
    signals: &BTreeMap<String, SignalFit>,
    heap: &str,
    limit: Option<u64>,
) -> (Option<f64>, Option<[Option<f64>; 2]>) {
    let Some(limit) = limit else {
        return (None, None);
    };
    let Some(rss) = signals.get("rss") else {
        return (None, None);
    };
    let fit = if rss.rising {
        rss
    } else {
        signals.get(heap).unwrap_or(rss)
    };
    if fit.slope_per_s <= 0.0 {
        return (None, None);
    }
    let headroom = (limit as f64 - rss.last).max(0.0);
    let at = |slope: f64| (slope > 0.0).then(|| headroom / slope);
    (
        at(fit.slope_per_s),
        Some([at(fit.ci95[1]), at(fit.ci95[0])]),
    )
}

/// The kill predicted from the usage points so far (`(t, bytes)` after the
/// warm-up): the robust line through them, extended to `limit`. `None` until
/// there are enough points, or while usage is not growing.
pub fn predict(points: &[(f64, f64)], at_s: f64, limit: f64) -> Option<Prediction> {
    if points.len() < MIN_FIT_SAMPLES {
        return None;
    }
    let idx = stats::thin(points.len(), MAX_FIT_SAMPLES);
    let x: Vec<f64> = idx.iter().map(|&i| points[i].0).collect();
    let y: Vec<f64> = idx.iter().map(|&i| points[i].1).collect();
    let fit = stats::theil_sen(&x, &y)?;
    if fit.slope <= 0.0 || !fit.slope.is_finite() {
        return None;
    }
    let usage = fit.at(at_s);
    let remaining = ((limit - usage) / fit.slope).max(0.0);
    Some(Prediction {
        at_s,
        predicted_time_to_oom_s: at_s + remaining,
        remaining_s: remaining,
        usage_bytes: usage,
        slope_bytes_per_s: fit.slope,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_linear_climb_is_predicted_to_reach_the_limit_on_time() {
        // 1 MiB/s from 20 MiB: a 100 MiB limit is reached at t = 80 s.
        let pts: Vec<(f64, f64)> = (0..40)
            .map(|i| {
                let t = 5.0 + i as f64 * 0.5;
                let noise = if i % 3 == 0 { 300_000.0 } else { -100_000.0 };
                (t, (20.0 + t) * 1048576.0 + noise)
            })
            .collect();
        let p = predict(&pts, 24.5, 100.0 * 1048576.0).unwrap();
        assert!((p.predicted_time_to_oom_s - 80.0).abs() < 1.0, "{p:?}");
        assert!((p.remaining_s - 55.5).abs() < 1.0, "{p:?}");
    }

    #[test]
    fn no_prediction_without_growth_or_enough_points() {
        let flat: Vec<(f64, f64)> = (0..20).map(|i| (i as f64, 50e6)).collect();
        assert_eq!(predict(&flat, 19.0, 100e6), None);
        let few: Vec<(f64, f64)> = (0..3).map(|i| (i as f64, i as f64 * 1e6)).collect();
        assert_eq!(predict(&few, 2.0, 100e6), None);
    }
}
