//! The leak class of a run, from its fitted signals: the climbs first
//! (task-leak, retention, off-heap), and for a run where nothing climbs, its
//! shape against the pre-load baseline (rss-retained, plateau, churn,
//! bounded, none).

use std::collections::BTreeMap;

use leaklab_model::run::{Finding, SignalFit};
use leaklab_model::{Catalogue, LeakClass};

use super::signals::{component_for, spread, tail_floor, tail_level, Series, ALPHA};
use crate::human::{human_bytes, MIB};

/// Heap per leaked task above which a heap climb beside a task climb is
/// judged a retention of its own: a parked task holds its future, a request
/// context and a channel (the catalogue's task leaks pin 2.5 to 4.6 KiB); a
/// task pinning more than this is itself something a heap profile should show.
const TASK_PINNED_MAX: f64 = 8.0 * 1024.0;
/// Smallest step above the baseline that counts as RSS kept after a spike.
const RSS_RETAINED_MIN: f64 = 32.0 * MIB;
/// Smallest rise of the live heap above the baseline that counts as "rose then flat".
const HIGH_WATER_MIN: f64 = MIB;
/// Freed pages the allocator holds beyond the baseline that show allocation churn.
const CHURN_UNUSED_MIN: f64 = 2.0 * MIB;
/// Spread of `allocated` in the window that shows allocation churn.
const CHURN_SPREAD_MIN: f64 = 512.0 * 1024.0;

/// What a classification reads: the series, their fits and the catalogue.
pub(super) struct Evidence<'a> {
    pub series: &'a BTreeMap<String, Series>,
    pub signals: &'a BTreeMap<String, SignalFit>,
    pub catalogue: &'a Catalogue,
}

/// The class and what was found, with a sentence per reason.
pub(super) struct Classified {
    pub leak: bool,
    pub class: LeakClass,
    pub findings: Vec<Finding>,
    pub reasons: Vec<String>,
    /// The bytes signal a time-to-OOM is projected on (`allocated`, else `rss`).
    pub heap_signal: &'static str,
}

impl Evidence<'_> {
    fn rising(&self, name: &str) -> bool {
        self.signals.get(name).is_some_and(|f| f.rising)
    }

    fn slope(&self, name: &str) -> f64 {
        self.signals.get(name).map(|f| f.slope_per_s).unwrap_or(0.0)
    }

    /// A finding of `class` in `signal`, its component and gauge found by
    /// correlation; `bytes_signal` gives its burn rate.
    fn finding(&self, class: LeakClass, signal: &str, bytes_signal: Option<&str>) -> Finding {
        let (component, gauge) =
            component_for(self.series, self.signals, signal, class, self.catalogue);
        Finding {
            class,
            component,
            gauge,
            signal: signal.into(),
            slope_per_s: self.slope(signal),
            burn_rate_bytes_per_h: bytes_signal.map(|b| self.slope(b) * 3600.0),
        }
    }

    /// The level of the last quarter of `name` above its baseline.
    fn step(&self, name: &str) -> Option<f64> {
        let s = self.series.get(name)?;
        Some(tail_level(s)? - s.baseline()?)
    }
}

/// Classifies a run with enough samples.
pub(super) fn classify(ev: &Evidence) -> Classified {
    let mut reasons = Vec::new();
    let (findings, heap_signal) = climbs(ev, &mut reasons);
    if let Some(first) = findings.first() {
        return Classified {
            leak: true,
            class: first.class,
            findings,
            reasons,
            heap_signal,
        };
    }
    let (class, findings) = flat_shape(ev, &mut reasons);
    Classified {
        leak: class.is_leak(),
        class,
        findings,
        reasons,
        heap_signal,
    }
}

/// The climbing signals: a task leak, a retention, off-heap growth.
fn climbs(ev: &Evidence, reasons: &mut Vec<String>) -> (Vec<Finding>, &'static str) {
    let mut findings = Vec::new();
    // A target that cannot keep up piles requests (and their tasks) up: a
    // task climb counts only when it is well beyond the requests in flight.
    let saturated = ev.rising("in_flight");
    if saturated {
        reasons.push(format!(
            "the target is not keeping up: requests in flight climb {:.1}/s",
            ev.slope("in_flight")
        ));
    }
    let tasks_up = ev.rising("alive_tasks")
        && (!saturated || ev.slope("alive_tasks") > 3.0 * ev.slope("in_flight"));
    let alloc_up = ev.rising("allocated");
    let heap_signal = if alloc_up { "allocated" } else { "rss" };
    if tasks_up {
        findings.push(ev.finding(LeakClass::TaskLeak, "alive_tasks", Some(heap_signal)));
        reasons.push(format!(
            "alive tasks climb {:.1}/s and keep climbing",
            ev.slope("alive_tasks")
        ));
    }
    // With tasks climbing, a heap climb is theirs unless it is more than a
    // parked task plausibly pins: its future, a request context, a channel.
    let heap_beyond_tasks =
        !tasks_up || ev.slope("allocated") / ev.slope("alive_tasks").max(1e-9) > TASK_PINNED_MAX;
    if alloc_up && heap_beyond_tasks {
        findings.push(ev.finding(LeakClass::Retention, "allocated", Some("allocated")));
        reasons.push(format!(
            "live heap (allocated) climbs {}/s and keeps climbing",
            human_bytes(ev.slope("allocated"))
        ));
    }
    if ev.rising("rss")
        && ev.rising("rss_outside_allocator")
        && ev.slope("allocated") < 0.25 * ev.slope("rss")
    {
        findings.push(ev.finding(LeakClass::OffHeap, "rss", Some("rss")));
        reasons.push(format!(
            "RSS climbs {}/s outside the allocator while allocated stays flat",
            human_bytes(ev.slope("rss"))
        ));
    }
    (findings, heap_signal)
}

/// Nothing climbs: what the run's shape against its baseline says.
fn flat_shape(ev: &Evidence, reasons: &mut Vec<String>) -> (LeakClass, Vec<Finding>) {
    let rss_step = ev.step("rss").unwrap_or(0.0);
    let alloc_step = ev.step("allocated").unwrap_or(0.0);
    // The floor (10th percentile) of the last quarter above the baseline:
    // in-flight buffers lift the median for a moment, never the floor.
    let allocated = ev.series.get("allocated");
    let alloc_floor_step = allocated
        .and_then(|s| Some(tail_floor(s)? - s.baseline()?))
        .unwrap_or(0.0);
    let unused_step = ev.step("allocator_unused").unwrap_or(0.0);
    let alloc_noise = allocated.map(|s| s.baseline_spread()).unwrap_or(0.0);
    if rss_step >= RSS_RETAINED_MIN && alloc_step < 0.25 * rss_step && unused_step >= 0.5 * rss_step
    {
        let finding = ev.finding(LeakClass::RssRetained, "rss", None);
        reasons.push(format!(
            "RSS stays {} above the floor while the live heap is back within {}: the allocator keeps freed pages",
            human_bytes(rss_step),
            human_bytes(alloc_step.max(0.0))
        ));
        return (LeakClass::RssRetained, vec![finding]);
    }
    if let Some(why) = churn_gauge(ev.signals, ev.catalogue) {
        // A churn component counting allocations explains a modest floor
        // step (its in-flight work) as well.
        reasons.push(format!(
            "the live heap does not climb while {why}: allocation churn, not retention"
        ));
        return (LeakClass::Churn, Vec::new());
    }
    if alloc_floor_step >= HIGH_WATER_MIN.max(8.0 * alloc_noise) {
        return risen_then_flat(ev, alloc_floor_step, reasons);
    }
    if let Some(why) = churning(ev.series, alloc_step, unused_step) {
        reasons.push(format!(
            "the live heap floor is flat while {why}: allocation churn, not retention"
        ));
        return (LeakClass::Churn, Vec::new());
    }
    reasons.push("no signal climbs significantly after warm-up".into());
    (LeakClass::None, Vec::new())
}

/// Rose, then flat. A gauge that fell back while memory stayed is a
/// high-water mark (plateau); otherwise a full, bounded structure.
fn risen_then_flat(
    ev: &Evidence,
    alloc_floor_step: f64,
    reasons: &mut Vec<String>,
) -> (LeakClass, Vec<Finding>) {
    let fallen = fallen_gauge(ev.series);
    let emptied = fallen.is_none();
    let Some(g) = fallen.or_else(|| emptied_but_reserved(ev.series)) else {
        reasons.push(format!(
            "live heap rose {} above the floor, then levelled off: high, not leaking",
            human_bytes(alloc_floor_step)
        ));
        return (LeakClass::Bounded, Vec::new());
    };
    // The scenario whose gauge this is, else one whose gauge has its prefix.
    let prefix = g.split('_').next().unwrap_or(&g);
    let component = ev
        .catalogue
        .iter()
        .find(|s| s.gauge == g)
        .or_else(|| {
            ev.catalogue
                .iter()
                .find(|s| s.gauge.split('_').next() == Some(prefix))
        })
        .map(|s| s.component.clone())
        .or_else(|| Some(prefix.to_owned()));
    reasons.push(if emptied {
        format!(
            "live heap rose {} to a high-water mark and stays there, held by {g} while the structure is empty again",
            human_bytes(alloc_floor_step)
        )
    } else {
        format!(
            "live heap rose {} to a high-water mark and stays there while {g} fell back",
            human_bytes(alloc_floor_step)
        )
    });
    let finding = Finding {
        class: LeakClass::Plateau,
        component,
        gauge: Some(g),
        signal: "allocated".into(),
        slope_per_s: ev.slope("allocated"),
        burn_rate_bytes_per_h: None,
    };
    (LeakClass::Plateau, vec![finding])
}

/// A structure that is empty while the room it reserved stays: a component
/// gauge naming a reservation (`*capacity*`, `*table*`) that rose and holds,
/// while its sibling count (`PREFIX_len`, `*_entries`) is back at its floor.
/// This catches a high-water mark whose bursts are too short to be seen at
/// the sampling rate (the count is never caught above zero), where
/// [`fallen_gauge`] needs to see the peak.
fn emptied_but_reserved(series: &BTreeMap<String, Series>) -> Option<String> {
    let gauges: Vec<(&str, &Series)> = series
        .iter()
        .filter_map(|(name, s)| Some((name.strip_prefix("components.")?, s)))
        .collect();
    let held = |name: &str, s: &Series| -> bool {
        let reserved = name.contains("capacity") || name.contains("table");
        let floor = if name.ends_with("_bytes") {
            HIGH_WATER_MIN
        } else {
            8.0
        };
        let (Some(base), Some(tail)) = (s.baseline(), tail_level(s)) else {
            return false;
        };
        reserved && tail - base >= floor
    };
    let empty = |s: &Series| -> bool {
        matches!((s.baseline(), tail_level(s)), (Some(base), Some(tail)) if (tail - base).abs() <= 1.0)
    };
    gauges.iter().find_map(|(name, s)| {
        if !held(name, s) {
            return None;
        }
        let prefix = name.split('_').next()?;
        gauges
            .iter()
            .any(|(other, o)| {
                other.starts_with(prefix)
                    && (*other == format!("{prefix}_len") || other.ends_with("_entries"))
                    && empty(o)
            })
            .then(|| name.to_string())
    })
}

/// A component gauge that rose at least 8 and then fell back below half its
/// peak by the end of the run; not one whose rise was work in flight (at its
/// peak, loadgen had at least half as many requests unanswered: a stall
/// fills and empties a gauge of things in flight without any high-water mark).
fn fallen_gauge(series: &BTreeMap<String, Series>) -> Option<String> {
    let in_flight = series.get("in_flight");
    series.iter().find_map(|(name, s)| {
        let g = name.strip_prefix("components.")?;
        let (peak_t, peak) =
            s.points
                .iter()
                .copied()
                .fold((0.0, 0.0), |m, p| if p.1 > m.1 { p } else { m });
        let base = s.baseline().unwrap_or(0.0);
        let last = tail_level(s)?;
        let rise = peak - base;
        let pending = in_flight.map_or(0.0, |f| value_near(f, peak_t));
        (rise >= 8.0 && last - base <= 0.5 * rise && pending < 0.5 * rise).then(|| g.to_string())
    })
}

/// The value of `s` at the sample nearest `t`.
fn value_near(s: &Series, t: f64) -> f64 {
    s.points
        .iter()
        .min_by(|a, b| (a.0 - t).abs().total_cmp(&(b.0 - t).abs()))
        .map_or(0.0, |p| p.1)
}

/// The gauge of a churn-class catalogue scenario that climbs (its component
/// counts the allocations it churns through), described.
fn churn_gauge(signals: &BTreeMap<String, SignalFit>, catalogue: &Catalogue) -> Option<String> {
    catalogue
        .iter()
        .filter(|s| s.class == LeakClass::Churn && !s.gauge.is_empty())
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
