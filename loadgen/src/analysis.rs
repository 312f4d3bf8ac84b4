//! From samples to a verdict: per-signal trends, the leak class, the
//! component, burn rate, time-to-OOM and the ground-truth check.
//!
//! A signal *rises* only when three things hold over the window after
//! warm-up: the Mann–Kendall test is significant (p < 0.01) and the slope's
//! 95% interval excludes zero; the growth over the window is practically large
//! (at least a fixed floor per kind of signal and four times the noise around
//! the fit); and it is not levelling off (the last third's slope is at least
//! 30% of the whole window's). The last rule is what keeps bounded caches and
//! high-water marks from being called leaks. Steps against the pre-load
//! baseline then tell `rss-retained`, `plateau`, `bounded` and `churn` apart.

use std::collections::BTreeMap;

use crate::catalogue::Scenario;
use crate::sampler::{Phase, Sample};
use crate::stats::{mad_sigma, mann_kendall, median, theil_sen, thin};
use crate::summary::{Finding, GroundTruth, SignalFit, Verdict};

const MIB: f64 = 1024.0 * 1024.0;
/// Heap per leaked task above which a heap climb beside a task climb is
/// judged a retention of its own: a parked task holds its future, a request
/// context and a channel (the catalogue's task leaks pin 2.5 to 4.6 KiB); a
/// task pinning more than this is itself something a heap profile should show.
const TASK_PINNED_MAX: f64 = 8.0 * 1024.0;
/// Points fed to the O(n²) statistics at most.
const MAX_POINTS: usize = 1024;
/// Significance level of the trend test.
const ALPHA: f64 = 0.01;
/// A window whose last third rises slower than this share of the whole is levelling off.
const LEVELLING: f64 = 0.3;
/// Smallest step above the baseline that counts as RSS kept after a spike.
const RSS_RETAINED_MIN: f64 = 32.0 * MIB;
/// Smallest rise of the live heap above the baseline that counts as "rose then flat".
const HIGH_WATER_MIN: f64 = MIB;
/// Freed pages the allocator holds beyond the baseline that show allocation churn.
const CHURN_UNUSED_MIN: f64 = 2.0 * MIB;
/// Spread of `allocated` in the window that shows allocation churn.
const CHURN_SPREAD_MIN: f64 = 512.0 * 1024.0;

/// What a series measures, which sets its practical floor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Bytes,
    Count,
}

impl Kind {
    /// Growth over the window below this is never a leak, however significant.
    fn min_growth(self) -> f64 {
        match self {
            Kind::Bytes => MIB,
            Kind::Count => 16.0,
        }
    }
}

/// One named series over the run.
#[derive(Clone, Debug)]
pub struct Series {
    pub name: String,
    pub kind: Kind,
    /// (t, value) over the whole run, baseline included.
    pub points: Vec<(f64, f64)>,
    pub phases: Vec<Phase>,
}

impl Series {
    fn window(&self) -> (Vec<f64>, Vec<f64>) {
        let measured: Vec<usize> = (0..self.points.len())
            .filter(|&i| self.phases[i] == Phase::Measure)
            .collect();
        // A run cut short in warm-up is judged on what there is.
        let idx: Vec<usize> = if measured.len() >= 8 {
            measured
        } else {
            (0..self.points.len())
                .filter(|&i| self.phases[i] != Phase::Baseline)
                .collect()
        };
        let keep = thin(idx.len(), MAX_POINTS);
        let x = keep.iter().map(|&k| self.points[idx[k]].0).collect();
        let y = keep.iter().map(|&k| self.points[idx[k]].1).collect();
        (x, y)
    }

    /// The values sampled before the load started.
    fn baseline_values(&self) -> Vec<f64> {
        self.points
            .iter()
            .zip(&self.phases)
            .filter(|(_, p)| **p == Phase::Baseline)
            .map(|(pt, _)| pt.1)
            .collect()
    }

    fn baseline(&self) -> Option<f64> {
        let b = self.baseline_values();
        (!b.is_empty()).then(|| median(&b))
    }

    fn baseline_spread(&self) -> f64 {
        spread(&self.baseline_values())
    }
}

fn spread(v: &[f64]) -> f64 {
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if v.is_empty() {
        0.0
    } else {
        hi - lo
    }
}

/// Extracts every signal from the samples: allocator numbers, RSS (the
/// independent reading when there is one), tasks, fds, maps, derived series
/// and each component gauge (`components.NAME`).
pub fn series(samples: &[Sample]) -> BTreeMap<String, Series> {
    let mut out: BTreeMap<String, Series> = BTreeMap::new();
    let mut push = |name: &str, kind: Kind, t: f64, phase: Phase, v: f64| {
        let s = out.entry(name.to_string()).or_insert_with(|| Series {
            name: name.to_string(),
            kind,
            points: Vec::new(),
            phases: Vec::new(),
        });
        s.points.push((t, v));
        s.phases.push(phase);
    };
    for s in samples {
        let Some(m) = &s.memory else {
            if let Some(p) = &s.proc {
                push("rss", Kind::Bytes, s.t, s.phase, p.rss as f64);
            }
            continue;
        };
        let rss = s.rss().unwrap_or(m.rss) as f64;
        push("allocated", Kind::Bytes, s.t, s.phase, m.allocated as f64);
        push("active", Kind::Bytes, s.t, s.phase, m.active as f64);
        push("resident", Kind::Bytes, s.t, s.phase, m.resident as f64);
        push("rss", Kind::Bytes, s.t, s.phase, rss);
        push(
            "alive_tasks",
            Kind::Count,
            s.t,
            s.phase,
            m.alive_tasks as f64,
        );
        let fds = s.proc.as_ref().map(|p| p.open_fds).unwrap_or(m.open_fds);
        push("open_fds", Kind::Count, s.t, s.phase, fds as f64);
        let maps = s.proc.as_ref().map(|p| p.maps).unwrap_or(m.maps);
        push("maps", Kind::Count, s.t, s.phase, maps as f64);
        // RSS the allocator does not account for: anonymous maps, stacks, ...
        push(
            "rss_outside_allocator",
            Kind::Bytes,
            s.t,
            s.phase,
            rss - m.resident as f64,
        );
        // Pages the allocator holds but no live allocation uses.
        push(
            "allocator_unused",
            Kind::Bytes,
            s.t,
            s.phase,
            m.resident.saturating_sub(m.allocated) as f64,
        );
        // Requests loadgen has sent and not yet seen answered.
        push("in_flight", Kind::Count, s.t, s.phase, s.in_flight as f64);
        for (g, v) in &m.components {
            push(
                &format!("components.{g}"),
                Kind::Count,
                s.t,
                s.phase,
                *v as f64,
            );
        }
    }
    out
}

/// Fits one series over the measurement window.
pub fn fit(s: &Series) -> Option<SignalFit> {
    let (x, y) = s.window();
    let ts = theil_sen(&x, &y)?;
    let mk = mann_kendall(&y)?;
    let n = x.len();
    let residuals: Vec<f64> = x.iter().zip(&y).map(|(x, y)| y - ts.at(*x)).collect();
    let noise = mad_sigma(&residuals);
    let third = n / 3;
    let (first3, last3) = if third >= 4 {
        (
            theil_sen(&x[..third], &y[..third])
                .map(|f| f.slope)
                .unwrap_or(ts.slope),
            theil_sen(&x[n - third..], &y[n - third..])
                .map(|f| f.slope)
                .unwrap_or(ts.slope),
        )
    } else {
        (ts.slope, ts.slope)
    };
    let span = x[n - 1] - x[0];
    let growth = ts.slope * span;
    let significant = mk.p_value < ALPHA && mk.z > 0.0 && ts.ci95.0 > 0.0;
    let practical = growth >= s.kind.min_growth().max(4.0 * noise);
    let levelling = last3 < LEVELLING * ts.slope;
    Some(SignalFit {
        slope_per_s: ts.slope,
        ci95: [ts.ci95.0, ts.ci95.1],
        p_value: mk.p_value,
        first: y[0],
        last: y[n - 1],
        baseline: s.baseline(),
        n,
        noise,
        slope_first_third: first3,
        slope_last_third: last3,
        rising: significant && practical && !levelling,
    })
}

/// Everything the verdict is computed from.
pub struct Judged {
    pub signals: BTreeMap<String, SignalFit>,
    pub verdict: Verdict,
}

/// 10th percentile of the last quarter of the window of a series.
fn tail_floor(s: &Series) -> Option<f64> {
    let (_, y) = s.window();
    if y.is_empty() {
        return None;
    }
    let mut tail = y[y.len() - y.len().div_ceil(4)..].to_vec();
    tail.sort_by(f64::total_cmp);
    Some(tail[tail.len() / 10])
}

/// Median of the last quarter of the window of a series.
fn tail_level(s: &Series) -> Option<f64> {
    let (_, y) = s.window();
    if y.is_empty() {
        return None;
    }
    Some(median(&y[y.len() - y.len().div_ceil(4)..]))
}

/// The catalogue gauge (and its component) that moves with `signal`: among
/// rising component gauges the one most rank-correlated with it, gauges of
/// scenarios of the finding's `class` first (two gauges can both climb one per
/// request when two leaks share a route), then gauges of leak scenarios before
/// those of negative controls.
fn component_for(
    series: &BTreeMap<String, Series>,
    signals: &BTreeMap<String, SignalFit>,
    signal: &str,
    class: &str,
    catalogue: &[Scenario],
) -> (Option<String>, Option<String>) {
    let Some(base) = series.get(signal) else {
        return (None, None);
    };
    let (_, yb) = base.window();
    let mut best: Option<(bool, bool, f64, String)> = None;
    for (name, fit) in signals {
        let Some(gauge) = name.strip_prefix("components.") else {
            continue;
        };
        if !(fit.slope_per_s > 0.0 && fit.p_value < ALPHA) {
            continue;
        }
        let (_, yg) = series[name].window();
        let n = yb.len().min(yg.len());
        if n < 8 {
            continue;
        }
        let tau = kendall_tau(&yb[..n], &yg[..n]);
        let leak_gauge = catalogue
            .iter()
            .any(|s| s.gauge == gauge && !s.negative_control);
        let same_class = catalogue
            .iter()
            .any(|s| s.gauge == gauge && s.class == class);
        let key = (same_class, leak_gauge, tau, gauge.to_string());
        if best
            .as_ref()
            .is_none_or(|b| (key.0, key.1, key.2) > (b.0, b.1, b.2))
        {
            best = Some(key);
        }
    }
    let Some((_, _, _, gauge)) = best else {
        return (None, None);
    };
    let component = catalogue
        .iter()
        .find(|s| s.gauge == gauge)
        .map(|s| s.component.clone())
        .or_else(|| gauge.split('_').next().map(str::to_string));
    (component, Some(gauge))
}

fn kendall_tau(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len().min(b.len());
    let mut s = 0i64;
    for i in 0..n {
        for j in (i + 1)..n {
            let da = (a[j] - a[i]).signum();
            let db = (b[j] - b[i]).signum();
            s += (da * db) as i64;
        }
    }
    let pairs = (n * n.saturating_sub(1) / 2).max(1) as f64;
    s as f64 / pairs
}

/// Judges a run. `limit` is `--limit`, else the cgroup limit seen in samples.
pub fn judge(samples: &[Sample], catalogue: &[Scenario], limit: Option<u64>) -> Judged {
    let series = series(samples);
    let signals: BTreeMap<String, SignalFit> = series
        .iter()
        .filter_map(|(k, s)| Some((k.clone(), fit(s)?)))
        .collect();
    let limit = limit.or_else(|| samples.iter().rev().find_map(|s| s.cgroup_limit()));
    let rising = |name: &str| signals.get(name).is_some_and(|f| f.rising);
    let slope = |name: &str| signals.get(name).map(|f| f.slope_per_s).unwrap_or(0.0);
    let mut findings = Vec::new();
    let mut reasons = Vec::new();
    let mut finding = |class: &str,
                       signal: &str,
                       bytes_signal: Option<&str>,
                       reasons: &mut Vec<String>,
                       why: String| {
        let (component, gauge) = component_for(&series, &signals, signal, class, catalogue);
        let burn = bytes_signal.map(|b| slope(b) * 3600.0);
        reasons.push(why);
        findings.push(Finding {
            class: class.into(),
            component,
            gauge,
            signal: signal.into(),
            slope_per_s: slope(signal),
            burn_rate_bytes_per_h: burn,
        });
    };

    if signals.get("allocated").is_none_or(|f| f.n < 8) {
        reasons.push("too few samples after warm-up to judge".into());
        return Judged {
            signals,
            verdict: Verdict {
                leak: false,
                class: "none".into(),
                findings,
                time_to_oom_s: None,
                time_to_oom_interval_s: None,
                limit_bytes: limit,
                reasons,
            },
        };
    }

    // A target that cannot keep up piles requests (and their tasks) up: a
    // task climb counts only when it is well beyond the requests in flight.
    let saturated = rising("in_flight");
    if saturated {
        reasons.push(format!(
            "the target is not keeping up: requests in flight climb {:.1}/s",
            slope("in_flight")
        ));
    }
    let tasks_up =
        rising("alive_tasks") && (!saturated || slope("alive_tasks") > 3.0 * slope("in_flight"));
    let alloc_up = rising("allocated");
    let rss_up = rising("rss");
    let heap_bytes_signal = if alloc_up { "allocated" } else { "rss" };
    if tasks_up {
        finding(
            "task-leak",
            "alive_tasks",
            Some(heap_bytes_signal),
            &mut reasons,
            format!(
                "alive tasks climb {:.1}/s and keep climbing",
                slope("alive_tasks")
            ),
        );
    }
    // With tasks climbing, a heap climb is theirs unless it is more than a
    // parked task plausibly pins: its future, a request context, a channel.
    let heap_beyond_tasks =
        !tasks_up || slope("allocated") / slope("alive_tasks").max(1e-9) > TASK_PINNED_MAX;
    if alloc_up && heap_beyond_tasks {
        finding(
            "retention",
            "allocated",
            Some("allocated"),
            &mut reasons,
            format!(
                "live heap (allocated) climbs {}/s and keeps climbing",
                human_bytes(slope("allocated"))
            ),
        );
    }
    if rss_up && rising("rss_outside_allocator") && slope("allocated") < 0.25 * slope("rss") {
        finding(
            "off-heap",
            "rss",
            Some("rss"),
            &mut reasons,
            format!(
                "RSS climbs {}/s outside the allocator while allocated stays flat",
                human_bytes(slope("rss"))
            ),
        );
    }

    let mut class = findings
        .first()
        .map(|f| f.class.clone())
        .unwrap_or_default();
    let mut leak = !findings.is_empty();
    if findings.is_empty() {
        let step = |name: &str| -> Option<f64> {
            let s = series.get(name)?;
            Some(tail_level(s)? - s.baseline()?)
        };
        let rss_step = step("rss").unwrap_or(0.0);
        let alloc_step = step("allocated").unwrap_or(0.0);
        // The floor (10th percentile) of the last quarter above the baseline:
        // in-flight buffers lift the median for a moment, never the floor.
        let alloc_floor_step = series
            .get("allocated")
            .and_then(|s| Some(tail_floor(s)? - s.baseline()?))
            .unwrap_or(0.0);
        let unused_step = step("allocator_unused").unwrap_or(0.0);
        let alloc_noise = series
            .get("allocated")
            .map(|s| s.baseline_spread())
            .unwrap_or(0.0);
        if rss_step >= RSS_RETAINED_MIN
            && alloc_step < 0.25 * rss_step
            && unused_step >= 0.5 * rss_step
        {
            class = "rss-retained".into();
            leak = true;
            let (component, gauge) =
                component_for(&series, &signals, "rss", "rss-retained", catalogue);
            findings.push(Finding {
                class: class.clone(),
                component,
                gauge,
                signal: "rss".into(),
                slope_per_s: slope("rss"),
                burn_rate_bytes_per_h: None,
            });
            reasons.push(format!(
                "RSS stays {} above the floor while the live heap is back within {}: the allocator keeps freed pages",
                human_bytes(rss_step),
                human_bytes(alloc_step.max(0.0))
            ));
        } else if let Some(why) = churn_gauge(&signals, catalogue) {
            // A churn component counting allocations explains a modest floor
            // step (its in-flight work) as well.
            class = "churn".into();
            reasons.push(format!(
                "the live heap does not climb while {why}: allocation churn, not retention"
            ));
        } else if alloc_floor_step >= HIGH_WATER_MIN.max(8.0 * alloc_noise) {
            // Rose, then flat. A gauge that fell back while memory stayed is a
            // high-water mark (plateau); otherwise a full, bounded structure.
            if let Some(g) = fallen_gauge(&series) {
                class = "plateau".into();
                leak = true;
                let component = catalogue
                    .iter()
                    .find(|s| s.gauge == g)
                    .map(|s| s.component.clone());
                findings.push(Finding {
                    class: class.clone(),
                    component,
                    gauge: Some(g.clone()),
                    signal: "allocated".into(),
                    slope_per_s: slope("allocated"),
                    burn_rate_bytes_per_h: None,
                });
                reasons.push(format!(
                    "live heap rose {} to a high-water mark and stays there while {g} fell back",
                    human_bytes(alloc_floor_step)
                ));
            } else {
                class = "bounded".into();
                reasons.push(format!(
                    "live heap rose {} above the floor, then levelled off: high, not leaking",
                    human_bytes(alloc_floor_step)
                ));
            }
        } else if let Some(why) = churning(&series, alloc_step, unused_step) {
            class = "churn".into();
            reasons.push(format!(
                "the live heap floor is flat while {why}: allocation churn, not retention"
            ));
        } else {
            class = "none".into();
            reasons.push("no signal climbs significantly after warm-up".into());
        }
    }
    if class.is_empty() {
        class = "none".into();
    }

    let (time_to_oom_s, time_to_oom_interval_s) = if leak {
        time_to_oom(&signals, heap_bytes_signal, limit)
    } else {
        (None, None)
    };
    Judged {
        signals,
        verdict: Verdict {
            leak,
            class,
            findings,
            time_to_oom_s,
            time_to_oom_interval_s,
            limit_bytes: limit,
            reasons,
        },
    }
}

/// A component gauge that rose at least 8 and then fell back below half its
/// peak by the end of the run.
fn fallen_gauge(series: &BTreeMap<String, Series>) -> Option<String> {
    series.iter().find_map(|(name, s)| {
        let g = name.strip_prefix("components.")?;
        let peak = s.points.iter().map(|p| p.1).fold(0.0, f64::max);
        let base = s.baseline().unwrap_or(0.0);
        let last = tail_level(s)?;
        (peak - base >= 8.0 && last - base <= 0.5 * (peak - base)).then(|| g.to_string())
    })
}

/// The gauge of a churn-class catalogue scenario that climbs (its component
/// counts the allocations it churns through), described.
fn churn_gauge(signals: &BTreeMap<String, SignalFit>, catalogue: &[Scenario]) -> Option<String> {
    catalogue
        .iter()
        .filter(|s| s.class == "churn" && !s.gauge.is_empty())
        .find(|s| {
            signals
                .get(&format!("components.{}", s.gauge))
                .is_some_and(|f| {
                    f.p_value < ALPHA && f.slope_per_s > 0.0 && f.slope_per_s * (f.n as f64) > 16.0
                })
        })
        .map(|s| format!("the {} gauge {} climbs", s.component, s.gauge))
}

/// Allocation churn around a flat floor without a catalogue gauge to say so:
/// the allocator keeps noticeably more freed pages than before the load, or
/// the live heap swings by more than half a MiB within the window (far more
/// than before the load). Returns what was seen.
fn churning(
    series: &BTreeMap<String, Series>,
    alloc_step: f64,
    unused_step: f64,
) -> Option<String> {
    if unused_step >= CHURN_UNUSED_MIN && alloc_step < 0.5 * unused_step {
        return Some(format!(
            "the allocator holds {} more freed pages than before the load",
            human_bytes(unused_step)
        ));
    }
    let s = series.get("allocated")?;
    let (_, y) = s.window();
    let floor_flat = {
        let n = y.len();
        n >= 8 && {
            let q = n / 4;
            let lo_first = y[..q.max(1)].iter().copied().fold(f64::INFINITY, f64::min);
            let lo_last = y[n - q.max(1)..]
                .iter()
                .copied()
                .fold(f64::INFINITY, f64::min);
            (lo_last - lo_first).abs() < HIGH_WATER_MIN
        }
    };
    let w = spread(&y);
    (floor_flat && w >= CHURN_SPREAD_MIN.max(4.0 * s.baseline_spread()))
        .then(|| format!("allocated swings by {}", human_bytes(w)))
}

/// Time until RSS reaches `limit` at the current slope, with the interval
/// from the slope's 95% interval. Uses RSS when it rises, else the heap signal.
fn time_to_oom(
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

/// Expected slope from the catalogue's truth × the achieved triggering rate
/// (less the catalogue's `drain_per_s`, when it has one), against the
/// measured slope of the class's signal.
pub fn ground_truth(
    scenario: Option<&Scenario>,
    signals: &BTreeMap<String, SignalFit>,
    rate_achieved: f64,
) -> Option<GroundTruth> {
    let scenario = scenario?;
    let (signal, per_request) = scenario.truth()?;
    let measured = signals.get(signal)?.slope_per_s;
    let retained_rate = (rate_achieved - scenario.drain_per_s.unwrap_or(0.0)).max(0.0);
    let expected = per_request * retained_rate;
    if expected <= 0.0 {
        return None;
    }
    Some(GroundTruth {
        signal: signal.into(),
        per_request,
        rate_achieved,
        expected_slope_per_s: expected,
        measured_slope_per_s: measured,
        error_pct: 100.0 * (measured - expected) / expected,
    })
}

/// `12.3 MiB`-style text for a byte count or rate.
pub fn human_bytes(b: f64) -> String {
    let a = b.abs();
    let (v, unit) = if a >= 1024.0 * MIB {
        (b / (1024.0 * MIB), "GiB")
    } else if a >= MIB {
        (b / MIB, "MiB")
    } else if a >= 1024.0 {
        (b / 1024.0, "KiB")
    } else {
        (b, "B")
    };
    format!("{v:.1} {unit}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sampler::{ProcReading, TargetMemory};

    /// A synthetic run: 2 s of baseline, 5 s warm-up, 30 s measured, 4 Hz.
    fn run(f: impl Fn(f64) -> (f64, f64, f64, f64)) -> Vec<Sample> {
        (-8..148)
            .map(|i| {
                let t = i as f64 * 0.25;
                let (allocated, resident, rss, tasks) = f(t.max(0.0));
                let wiggle = ((i * 7919) % 13) as f64 * 1000.0;
                Sample {
                    t,
                    phase: crate::sampler::phase_at(
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
                    error: None,
                }
            })
            .collect()
    }

    #[test]
    fn a_linear_heap_climb_is_retention_with_its_slope() {
        let samples = run(|t| (1e6 + 2e6 * t, 4e6 + 2e6 * t, 20e6 + 2.1e6 * t, 3.0));
        let j = judge(&samples, &[], Some(1 << 30));
        assert!(j.verdict.leak);
        assert_eq!(j.verdict.class, "retention");
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
        let j = judge(&samples, &[], None);
        assert_eq!(j.verdict.class, "task-leak");
        assert!(j.verdict.leak);
    }

    #[test]
    fn a_heap_that_fills_during_warm_up_and_stays_is_bounded() {
        let samples = run(|t| {
            let a = 1e6 + 9e6 * (t / 4.0).min(1.0);
            (a, a + 3e6, a + 20e6, 3.0)
        });
        let j = judge(&samples, &[], None);
        assert!(!j.verdict.leak, "{:?}", j.verdict);
        assert_eq!(j.verdict.class, "bounded");
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
        let j = judge(&samples, &[], None);
        assert!(!j.verdict.leak);
        assert_eq!(j.verdict.class, "churn");
    }

    #[test]
    fn rss_held_after_a_spike_is_rss_retained() {
        let samples = run(|t| {
            let held = if t > 0.5 { 256e6 } else { 0.0 };
            (1e6, 3e6 + held, 20e6 + held, 3.0)
        });
        let j = judge(&samples, &[], None);
        assert_eq!(j.verdict.class, "rss-retained");
        assert!(j.verdict.leak);
    }

    #[test]
    fn rss_climbing_outside_the_allocator_is_off_heap() {
        let samples = run(|t| (1e6, 3e6, 20e6 + 5e6 * t, 3.0));
        let j = judge(&samples, &[], None);
        assert_eq!(j.verdict.class, "off-heap");
    }

    #[test]
    fn nothing_moving_is_none() {
        let samples = run(|_| (1e6, 3e6, 20e6, 3.0));
        let j = judge(&samples, &[], None);
        assert_eq!(j.verdict.class, "none");
        assert!(!j.verdict.leak);
    }

    #[test]
    fn ground_truth_compares_the_class_signal() {
        let cat = crate::catalogue::parse(
            r#"[{"id":"u","class":"retention","method":"GET","path":"/i/{key}","bytes_per_request":10000}]"#,
        )
        .unwrap();
        let samples = run(|t| (1e6 + 2.1e6 * t, 4e6 + 2.1e6 * t, 20e6 + 2.1e6 * t, 3.0));
        let j = judge(&samples, &cat, None);
        let gt = ground_truth(cat.first(), &j.signals, 200.0).unwrap();
        assert_eq!(gt.expected_slope_per_s, 2e6);
        assert!((gt.error_pct - 5.0).abs() < 1.0, "{}", gt.error_pct);
        // A worker that drains 20/s: only the rest is retained.
        let mut drained = cat[0].clone();
        drained.drain_per_s = Some(20.0);
        let gt = ground_truth(Some(&drained), &j.signals, 200.0).unwrap();
        assert_eq!(gt.expected_slope_per_s, 1.8e6);
    }
}
