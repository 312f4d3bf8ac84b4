//! Signals: every series a run's samples hold (allocator numbers, RSS,
//! tasks, fds, maps, derived series and each component gauge), each fitted
//! over the measurement window (Theil–Sen slope, Mann–Kendall p, noise,
//! thirds), and the component gauge that moves with a signal.

use std::collections::BTreeMap;

use leaklab_model::run::{Phase, Sample, SignalFit};
use leaklab_model::{Catalogue, LeakClass};

use super::stats::{mad_sigma, mann_kendall, median, theil_sen, thin};
use crate::human::MIB;
use crate::target::metrics::RESIDENT;

/// Points fed to the O(n²) statistics at most.
const MAX_POINTS: usize = 1024;

/// Significance level of the trend test.
pub(super) const ALPHA: f64 = 0.01;

/// A window whose last third rises slower than this share of the whole is levelling off.
const LEVELLING: f64 = 0.3;

/// What a series measures, which sets its practical floor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Bytes,
    Count,
}

impl Kind {
    /// Growth over the window below this is never a leak, however significant.
    pub fn min_growth(self) -> f64 {
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
    pub(super) fn window(&self) -> (Vec<f64>, Vec<f64>) {
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

    pub(super) fn baseline(&self) -> Option<f64> {
        let b = self.baseline_values();
        (!b.is_empty()).then(|| median(&b))
    }

    pub(super) fn baseline_spread(&self) -> f64 {
        spread(&self.baseline_values())
    }
}

pub(super) fn spread(v: &[f64]) -> f64 {
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
        for (name, v) in s.metrics.iter().flatten() {
            let kind = if name.ends_with("_bytes") {
                Kind::Bytes
            } else {
                Kind::Count
            };
            push(&format!("metrics.{name}"), kind, s.t, s.phase, *v);
        }
        let Some(m) = &s.memory else {
            // Seen from outside: /proc first, else the exposition's resident memory.
            let resident = s.metrics.as_ref().and_then(|m| m.get(RESIDENT).copied());
            if let Some(rss) = s.proc.as_ref().map(|p| p.rss as f64).or(resident) {
                push("rss", Kind::Bytes, s.t, s.phase, rss);
            }
            if let Some(p) = &s.proc {
                push("open_fds", Kind::Count, s.t, s.phase, p.open_fds as f64);
                push("maps", Kind::Count, s.t, s.phase, p.maps as f64);
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

/// Every series fitted (those with too few points left out).
pub fn fits(series: &BTreeMap<String, Series>) -> BTreeMap<String, SignalFit> {
    fits_within(series, None)
}

/// [`fits`] for a run that may go on to `horizon_s` of measurement (an early
/// look of `--until-verdict`): a climb is practical when its slope would
/// grow by the floor over that whole window.
pub fn fits_within(
    series: &BTreeMap<String, Series>,
    horizon_s: Option<f64>,
) -> BTreeMap<String, SignalFit> {
    series
        .iter()
        .filter_map(|(k, s)| Some((k.clone(), fit_within(s, horizon_s)?)))
        .collect()
}

/// Fits one series over the measurement window.
pub fn fit(s: &Series) -> Option<SignalFit> {
    fit_within(s, None)
}

/// [`fit`], the practical floor judged over `horizon_s` of measurement
/// when that is longer than the window so far (see [`fits_within`]).
pub fn fit_within(s: &Series, horizon_s: Option<f64>) -> Option<SignalFit> {
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
    // The floor as a rate over the window the run may last; the noise as
    // growth over the window so far. Without a horizon: growth over the window.
    let projected = ts.slope * span.max(horizon_s.unwrap_or(0.0));
    let practical = projected >= s.kind.min_growth() && growth >= 4.0 * noise;
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

/// 10th percentile of the last quarter of the window of a series.
pub(super) fn tail_floor(s: &Series) -> Option<f64> {
    let (_, y) = s.window();
    if y.is_empty() {
        return None;
    }
    let mut tail = y[y.len() - y.len().div_ceil(4)..].to_vec();
    tail.sort_by(f64::total_cmp);
    Some(tail[tail.len() / 10])
}

/// Median of the last quarter of the window of a series.
pub(super) fn tail_level(s: &Series) -> Option<f64> {
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
pub(super) fn component_for(
    series: &BTreeMap<String, Series>,
    signals: &BTreeMap<String, SignalFit>,
    signal: &str,
    class: LeakClass,
    catalogue: &Catalogue,
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
