//! The canary's judgement: the baseline's and the canary's fits compared
//! signal by signal over the same window, and a regression when the canary
//! leaks and its leak's signal climbs clear of the baseline's.

use std::collections::BTreeMap;

use leaklab_model::canary::{CanaryVerdict, Compared};
use leaklab_model::run::{Phase, Sample, SignalFit, Verdict};

use crate::human::human_bytes;

/// Signals compared side by side.
const COMPARED: [&str; 4] = ["allocated", "rss", "rss_outside_allocator", "alive_tasks"];

/// Samples re-phased so that only `from_s..` counts as the measurement window.
pub fn windowed(samples: &[Sample], from_s: f64) -> Vec<Sample> {
    samples
        .iter()
        .cloned()
        .map(|mut s| {
            if s.phase == Phase::Measure && s.t < from_s {
                s.phase = Phase::Warmup;
            }
            s
        })
        .collect()
}

/// Compares the two sides' fits signal by signal.
pub fn compare(
    baseline: &BTreeMap<String, SignalFit>,
    canary: &BTreeMap<String, SignalFit>,
) -> Vec<Compared> {
    COMPARED
        .iter()
        .filter_map(|name| {
            let (b, c) = (baseline.get(*name)?, canary.get(*name)?);
            Some(Compared {
                signal: name.to_string(),
                baseline_slope_per_s: b.slope_per_s,
                baseline_ci95: b.ci95,
                canary_slope_per_s: c.slope_per_s,
                canary_ci95: c.ci95,
                delta_per_s: c.slope_per_s - b.slope_per_s,
                canary_above: c.ci95[0] > b.ci95[1].max(0.0),
            })
        })
        .collect()
}

/// The canary regresses when it leaks and the leak's signal climbs faster
/// than the baseline's, intervals apart.
pub fn judge(baseline: &Verdict, canary: &Verdict, compared: &[Compared]) -> CanaryVerdict {
    let mut reasons = Vec::new();
    let Some(finding) = canary.findings.first().filter(|_| canary.leak) else {
        reasons.push(format!(
            "the canary does not leak ({}); the baseline {}",
            canary.class,
            if baseline.leak {
                format!("does ({})", baseline.class)
            } else {
                format!("does not either ({})", baseline.class)
            }
        ));
        return CanaryVerdict {
            regression: false,
            class: canary.class,
            component: None,
            signal: None,
            burn_rate_delta_bytes_per_h: None,
            reasons,
        };
    };
    let row = compared.iter().find(|c| c.signal == finding.signal);
    let above = row.is_some_and(|c| c.canary_above);
    let bytes = finding.signal != "alive_tasks";
    let delta_per_h = row
        .filter(|_| bytes)
        .map(|c| c.delta_per_s * 3600.0)
        .or_else(|| {
            // A task leak's burn rate is in bytes of allocated heap.
            compared
                .iter()
                .find(|c| c.signal == "allocated")
                .map(|c| c.delta_per_s * 3600.0)
        });
    match row {
        Some(c) if above => reasons.push(format!(
            "the canary's {} climbs at {}/s [{}, {}], the baseline's at {}/s [{}, {}]: the intervals are apart",
            c.signal,
            fmt(bytes, c.canary_slope_per_s),
            fmt(bytes, c.canary_ci95[0]),
            fmt(bytes, c.canary_ci95[1]),
            fmt(bytes, c.baseline_slope_per_s),
            fmt(bytes, c.baseline_ci95[0]),
            fmt(bytes, c.baseline_ci95[1]),
        )),
        Some(c) => reasons.push(format!(
            "the canary leaks ({}) but its {} slope ({}/s) is not clear of the baseline's ({}/s): the leak is not new in the canary",
            canary.class,
            c.signal,
            fmt(bytes, c.canary_slope_per_s),
            fmt(bytes, c.baseline_slope_per_s),
        )),
        None => reasons.push(format!(
            "the canary leaks ({}) in {}, which the baseline does not report",
            canary.class, finding.signal
        )),
    }
    CanaryVerdict {
        regression: above || (row.is_none() && !baseline.leak),
        class: canary.class,
        component: finding.component.clone(),
        signal: Some(finding.signal.clone()),
        burn_rate_delta_bytes_per_h: delta_per_h,
        reasons,
    }
}

pub fn fmt(bytes: bool, v: f64) -> String {
    if bytes {
        human_bytes(v)
    } else {
        format!("{v:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use leaklab_model::run::Finding;
    use leaklab_model::LeakClass;

    fn fit(slope: f64, lo: f64, hi: f64) -> SignalFit {
        SignalFit {
            slope_per_s: slope,
            ci95: [lo, hi],
            p_value: 0.0,
            first: 0.0,
            last: 0.0,
            baseline: None,
            n: 100,
            noise: 0.0,
            slope_first_third: slope,
            slope_last_third: slope,
            rising: slope > 0.0,
        }
    }

    fn verdict(leak: bool, class: LeakClass, signal: &str) -> Verdict {
        Verdict {
            leak,
            class,
            findings: if leak {
                vec![Finding {
                    class,
                    component: Some("cache".into()),
                    gauge: None,
                    signal: signal.into(),
                    slope_per_s: 1.0,
                    burn_rate_bytes_per_h: None,
                }]
            } else {
                vec![]
            },
            time_to_oom_s: None,
            time_to_oom_interval_s: None,
            limit_bytes: None,
            reasons: vec![],
        }
    }

    #[test]
    fn a_canary_regresses_only_when_its_leak_climbs_clear_of_the_baseline() {
        let flat: BTreeMap<_, _> = [("allocated".to_string(), fit(0.0, -500.0, 500.0))].into();
        let climbing: BTreeMap<_, _> = [("allocated".to_string(), fit(2e6, 1.9e6, 2.1e6))].into();
        let rows = compare(&flat, &climbing);
        assert_eq!(rows.len(), 1);
        assert!(rows[0].canary_above);
        let v = judge(
            &verdict(false, LeakClass::Churn, ""),
            &verdict(true, LeakClass::Retention, "allocated"),
            &rows,
        );
        assert!(v.regression, "{v:?}");
        assert_eq!(v.component.as_deref(), Some("cache"));
        assert_eq!(v.burn_rate_delta_bytes_per_h, Some(2e6 * 3600.0));

        // The same leak on both sides is not the canary's doing.
        let rows = compare(&climbing, &climbing);
        let v = judge(
            &verdict(true, LeakClass::Retention, "allocated"),
            &verdict(true, LeakClass::Retention, "allocated"),
            &rows,
        );
        assert!(!v.regression, "{v:?}");

        // A slower decline than the baseline's is not a climb.
        let base: BTreeMap<_, _> = [("alive_tasks".to_string(), fit(-0.18, -0.20, -0.15))].into();
        let can: BTreeMap<_, _> = [("alive_tasks".to_string(), fit(-0.08, -0.09, -0.06))].into();
        assert!(!compare(&base, &can)[0].canary_above);

        // A canary that does not leak never regresses.
        let rows = compare(&flat, &flat);
        let v = judge(
            &verdict(false, LeakClass::None, ""),
            &verdict(false, LeakClass::None, ""),
            &rows,
        );
        assert!(!v.regression);
    }

    #[test]
    fn the_window_starts_after_the_last_toggle() {
        let s = |t: f64| Sample {
            t,
            phase: if t < 10.0 {
                Phase::Warmup
            } else {
                Phase::Measure
            },
            requests: 0,
            in_flight: 0,
            memory: None,
            proc: None,
            cgroup: None,
            metrics: None,
            error: None,
        };
        let samples: Vec<Sample> = [5.0, 12.0, 30.0, 40.0].into_iter().map(s).collect();
        let w = windowed(&samples, 35.0);
        let phases: Vec<Phase> = w.iter().map(|s| s.phase).collect();
        assert_eq!(
            phases,
            [Phase::Warmup, Phase::Warmup, Phase::Warmup, Phase::Measure]
        );
    }
}
