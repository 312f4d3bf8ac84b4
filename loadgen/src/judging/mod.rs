//! The judging stage: from samples to a verdict. Per-signal trends, the
//! leak class, the component, burn rate, time-to-OOM and the ground-truth
//! check.
//!
//! A signal *rises* only when three things hold over the window after
//! warm-up: the Mann–Kendall test is significant (p < 0.01) and the slope's
//! 95% interval excludes zero; the growth over the window is practically large
//! (at least a fixed floor per kind of signal and four times the noise around
//! the fit); and it is not levelling off (the last third's slope is at least
//! 30% of the whole window's). The last rule is what keeps bounded caches and
//! high-water marks from being called leaks. Steps against the pre-load
//! baseline then tell `rss-retained`, `plateau`, `bounded` and `churn` apart.
//!
//! - [`stats`]: Theil–Sen, Mann–Kendall and helpers.
//! - [`signals`]: the series in the samples and their fits.
//! - `classify`: the class from the fits.
//! - `outside`: the verdict for a target seen only from outside (RSS and
//!   named series, no allocator statistics).
//! - [`oom`]: time to OOM, and the kill predicted from cgroup usage.
//! - [`sequential`]: the confidence sequences behind `--until-verdict`.
//! - [`stopping`]: `--until-verdict`'s stopping rule: the sequential test
//!   looked at once a second, the judge's agreement before a stop.
//! - [`truth`]: the ground-truth check against the catalogue.
//! - [`canary`]: a baseline and a canary compared.

pub mod canary;
mod classify;
pub mod oom;
mod outside;
pub mod sequential;
pub mod signals;
pub mod stats;
pub mod stopping;
pub mod truth;

use std::collections::BTreeMap;

use leaklab_model::run::{Sample, SignalFit, Verdict};
use leaklab_model::{Catalogue, LeakClass};

pub use truth::ground_truth;

/// Everything the verdict is computed from.
pub struct Judged {
    pub signals: BTreeMap<String, SignalFit>,
    pub verdict: Verdict,
}

/// Judges a run. `limit` is `--limit`, else the cgroup limit seen in samples.
pub fn judge(samples: &[Sample], catalogue: &Catalogue, limit: Option<u64>) -> Judged {
    judge_within(samples, catalogue, limit, None)
}

/// [`judge`] at an early look of a run that may go on to `horizon_s` of
/// measurement (`--until-verdict`'s stopping rule): a climb's practical
/// floor is the rate that would reach the fixed window's floor over that
/// whole window, as the sequential test's is.
pub fn judge_within(
    samples: &[Sample],
    catalogue: &Catalogue,
    limit: Option<u64>,
    horizon_s: Option<f64>,
) -> Judged {
    let series = signals::series(samples);
    let signals = signals::fits_within(&series, horizon_s);
    let limit = limit.or_else(|| samples.iter().rev().find_map(|s| s.cgroup_limit()));
    if !signals.contains_key("allocated") {
        if let Some(verdict) = outside::judge_outside(&series, &signals, limit) {
            return Judged { signals, verdict };
        }
    }
    if signals.get("allocated").is_none_or(|f| f.n < 8) {
        let verdict = Verdict {
            leak: false,
            class: LeakClass::None,
            findings: Vec::new(),
            time_to_oom_s: None,
            time_to_oom_interval_s: None,
            limit_bytes: limit,
            reasons: vec!["too few samples after warm-up to judge".into()],
        };
        return Judged { signals, verdict };
    }
    let c = classify::classify(&classify::Evidence {
        series: &series,
        signals: &signals,
        catalogue,
    });
    let (time_to_oom_s, time_to_oom_interval_s) = if c.leak {
        oom::time_to_oom(&signals, c.heap_signal, limit)
    } else {
        (None, None)
    };
    let verdict = Verdict {
        leak: c.leak,
        class: c.class,
        findings: c.findings,
        time_to_oom_s,
        time_to_oom_interval_s,
        limit_bytes: limit,
        reasons: c.reasons,
    };
    Judged { signals, verdict }
}

#[cfg(test)]
mod tests {
    use super::*;
    use leaklab_model::run::{ProcReading, TargetMemory};
    use leaklab_model::{Scenario, Step};

    /// A synthetic run: 2 s of baseline, 5 s warm-up, 30 s measured, 4 Hz.
    fn run(f: impl Fn(f64) -> (f64, f64, f64, f64)) -> Vec<Sample> {
        (-8..148)
            .map(|i| {
                let t = i as f64 * 0.25;
                let (allocated, resident, rss, tasks) = f(t.max(0.0));
                let wiggle = ((i * 7919) % 13) as f64 * 1000.0;
                Sample {
                    t,
                    phase: crate::sampling::phase_at(
                        t,
                        std::time::Duration::from_secs(5),
                        std::time::Duration::from_secs(37),
                    ),
                    requests: 0,
                    in_flight: 0,
                    memory: Some(TargetMemory {
                        allocated: (allocated + wiggle) as u64,
                        resident: (resident + wiggle) as u64,
                        rss: rss as u64,
                        alive_tasks: tasks as u64,
                        ..Default::default()
                    }),
                    proc: Some(ProcReading {
                        rss: (rss + wiggle) as u64,
                        open_fds: 14,
                        maps: 45,
                    }),
                    cgroup: None,
                    metrics: None,
                    error: None,
                }
            })
            .collect()
    }

    #[test]
    fn a_linear_heap_climb_is_retention_with_its_slope() {
        let samples = run(|t| (1e6 + 2e6 * t, 4e6 + 2e6 * t, 20e6 + 2.1e6 * t, 3.0));
        let j = judge(&samples, &Catalogue::default(), Some(1 << 30));
        assert!(j.verdict.leak);
        assert_eq!(j.verdict.class, LeakClass::Retention);
        let s = j.signals["allocated"].slope_per_s;
        assert!((s - 2e6).abs() < 0.02e6, "{s}");
        let tto = j.verdict.time_to_oom_s.unwrap();
        assert!(tto > 100.0 && tto < 1000.0, "{tto}");
    }

    #[test]
    fn climbing_tasks_are_a_task_leak() {
        let samples = run(|t| {
            (
                1e6 + 0.9e6 * t,
                4e6 + 0.9e6 * t,
                20e6 + t * 1e6,
                3.0 + 200.0 * t,
            )
        });
        let j = judge(&samples, &Catalogue::default(), None);
        assert_eq!(j.verdict.class, LeakClass::TaskLeak);
        assert!(j.verdict.leak);
    }

    #[test]
    fn a_heap_that_fills_during_warm_up_and_stays_is_bounded() {
        let samples = run(|t| {
            let a = 1e6 + 9e6 * (t / 4.0).min(1.0);
            (a, a + 3e6, a + 20e6, 3.0)
        });
        let j = judge(&samples, &Catalogue::default(), None);
        assert!(!j.verdict.leak, "{:?}", j.verdict);
        assert_eq!(j.verdict.class, LeakClass::Bounded);
    }

    #[test]
    fn a_flat_floor_with_big_swings_is_churn() {
        let samples = run(|t| {
            let swing = if (t * 4.0) as i64 % 5 == 0 {
                1.5e6
            } else {
                0.0
            };
            (1e6 + swing, 8e6, 30e6, 3.0)
        });
        let j = judge(&samples, &Catalogue::default(), None);
        assert!(!j.verdict.leak);
        assert_eq!(j.verdict.class, LeakClass::Churn);
    }

    #[test]
    fn rss_held_after_a_spike_is_rss_retained() {
        let samples = run(|t| {
            let held = if t > 0.5 { 256e6 } else { 0.0 };
            (1e6, 3e6 + held, 20e6 + held, 3.0)
        });
        let j = judge(&samples, &Catalogue::default(), None);
        assert_eq!(j.verdict.class, LeakClass::RssRetained);
        assert!(j.verdict.leak);
    }

    #[test]
    fn rss_climbing_outside_the_allocator_is_off_heap() {
        let samples = run(|t| (1e6, 3e6, 20e6 + 5e6 * t, 3.0));
        let j = judge(&samples, &Catalogue::default(), None);
        assert_eq!(j.verdict.class, LeakClass::OffHeap);
    }

    /// `run`, with component gauges from `g(t)`.
    fn with_gauges(
        mut samples: Vec<Sample>,
        g: impl Fn(f64) -> Vec<(&'static str, u64)>,
    ) -> Vec<Sample> {
        for s in &mut samples {
            let m = s.memory.as_mut().unwrap();
            m.components = g(s.t.max(0.0))
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect();
        }
        samples
    }

    #[test]
    fn an_empty_map_holding_its_table_is_a_plateau_even_when_no_burst_is_seen() {
        // Bursts of sessions open and close between samples: `sessions_len`
        // is never caught above zero, but the table stays at its high-water mark.
        let risen = |t: f64| if t > 1.0 { 1.0 } else { t };
        let samples = with_gauges(
            run(|t| {
                let a = 1e6 + 2e6 * risen(t);
                (a, a + 3e6, a + 20e6, 3.0)
            }),
            |t| {
                vec![
                    ("sessions_len", 0),
                    ("sessions_capacity", (16384.0 * risen(t)) as u64),
                    ("sessions_table_bytes", (1.9e6 * risen(t)) as u64),
                    ("sessions_opened", (t * 1000.0) as u64),
                ]
            },
        );
        let cat = Catalogue(vec![Scenario::new(
            "map-no-shrink",
            LeakClass::Plateau,
            "sessions",
            vec![Step::get("/sessions/{key}")],
        )
        .gauge("sessions_capacity")]);
        let j = judge(&samples, &cat, None);
        assert_eq!(
            j.verdict.class,
            LeakClass::Plateau,
            "{:?}",
            j.verdict.reasons
        );
        assert_eq!(j.verdict.findings[0].component.as_deref(), Some("sessions"));
        // The same heap with the table given back is not a plateau.
        let shrunk = with_gauges(
            run(|t| {
                let a = 1e6 + 2e6 * risen(t);
                (a, a + 3e6, a + 20e6, 3.0)
            }),
            |t| {
                vec![
                    ("sessions_len", 0),
                    ("sessions_capacity", 0),
                    ("sessions_opened", (t * 1000.0) as u64),
                ]
            },
        );
        assert_eq!(judge(&shrunk, &cat, None).verdict.class, LeakClass::Bounded);
    }

    #[test]
    fn a_gauge_of_work_in_flight_emptied_after_a_stall_is_no_high_water_mark() {
        // The heap steps up 2 MB and stays; during a stall (10-14 s) 40
        // requests wait and a gauge counting in-flight collectors follows them.
        let stalled = |t: f64| (10.0..14.0).contains(&t);
        let heap = |t: f64| {
            let a = 1e6 + 2e6 * t.min(1.0);
            (a, a + 3e6, a + 20e6, 3.0)
        };
        let gauges = |t: f64| vec![("fanout_collectors", if stalled(t) { 40 } else { 0 })];
        let mut samples = with_gauges(run(heap), gauges);
        // Without loadgen's count of requests in flight the fall reads as a high-water mark...
        assert_eq!(
            judge(&samples, &Catalogue::default(), None).verdict.class,
            LeakClass::Plateau
        );
        // ... with it, the gauge's rise was the stall's.
        for s in &mut samples {
            s.in_flight = if stalled(s.t) { 41 } else { 1 };
        }
        let j = judge(&samples, &Catalogue::default(), None);
        assert_eq!(
            j.verdict.class,
            LeakClass::Bounded,
            "{:?}",
            j.verdict.reasons
        );
    }

    #[test]
    fn nothing_moving_is_none() {
        let samples = run(|_| (1e6, 3e6, 20e6, 3.0));
        let j = judge(&samples, &Catalogue::default(), None);
        assert_eq!(j.verdict.class, LeakClass::None);
        assert!(!j.verdict.leak);
    }

    #[test]
    fn ground_truth_compares_the_class_signal() {
        let cat = Catalogue(vec![Scenario::new(
            "u",
            LeakClass::Retention,
            "cache",
            vec![Step::get("/i/{key}")],
        )
        .retains(10000)]);
        let samples = run(|t| (1e6 + 2.1e6 * t, 4e6 + 2.1e6 * t, 20e6 + 2.1e6 * t, 3.0));
        let j = judge(&samples, &cat, None);
        let gt = ground_truth(cat.0.first(), &j.signals, 200.0).unwrap();
        assert_eq!(gt.expected_slope_per_s, 2e6);
        assert!((gt.error_pct - 5.0).abs() < 1.0, "{}", gt.error_pct);
        // A worker that drains 20/s: only the rest is retained.
        let mut drained = cat.0[0].clone();
        drained.drain_per_s = Some(20.0);
        let gt = ground_truth(Some(&drained), &j.signals, 200.0).unwrap();
        assert_eq!(gt.expected_slope_per_s, 1.8e6);
    }
}
