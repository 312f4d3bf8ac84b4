//! The stopping rule of `loadgen run --until-verdict`: every sample of a run
//! goes in as it is taken; once a second of measurement the
//! [`sequential`](super::sequential) test looks at `allocated`,
//! `alive_tasks` and RSS outside the allocator (`rss` for a target without
//! allocator stats), and when it is decisive the judge
//! ([`judge`](super::judge), the same classification as the fixed window)
//! is asked over the samples taken so far. The run stops only when both
//! agree: a climb the judge calls a leak, or flat signals in which it finds
//! no climb. The judge's veto only makes stops rarer, so the sequential
//! test's error bound still holds, and the verdict the run reports, the
//! judge's over the same samples, cannot contradict the reason it stopped.
//! When nothing is decisive the run goes on to its maximum (`--duration`)
//! and ends with the fixed-window verdict.
//!
//! Nor does a run stop early once the target has fallen behind its load
//! (requests in flight piled past [`STALL_SECONDS`] of arrivals at some
//! sample): loadgen then opens connections and holds requests, which moves
//! the target's heap and task count by themselves, and an early call would
//! rest on that. Such a run goes on to the fixed window.

use std::collections::BTreeMap;
use std::time::Duration;

use leaklab_model::run::{Phase, Sample, Verdict};
use leaklab_model::{Catalogue, LeakClass};

use super::judge_within;
use super::sequential::{warmup_noise, Decision, Look, SequentialTest, Watched};
use super::signals::{self, Series};

/// The signals the sequential test watches: the climbs the judge classifies,
/// in its order (a task leak first, then the heap, then RSS). RSS is watched
/// outside the allocator when the target reports its allocator's resident
/// pages: the judge's off-heap climb needs that part to rise, and the whole
/// RSS swings by megabytes as the allocator takes pages and gives them back,
/// which would hold a flat call back for nothing.
pub const WATCHED: [&str; 3] = ["alive_tasks", "allocated", "rss_outside_allocator"];
/// Watched instead of `rss_outside_allocator` for a target without
/// allocator stats (only `/proc`'s RSS).
pub const WATCHED_RSS: &str = "rss";
/// Seconds of measurement between looks.
pub const LOOK_EVERY_S: f64 = 1.0;
/// A sample with more requests in flight than this many seconds of arrivals
/// (and at least [`STALL_MIN`]) shows a target that fell behind its load.
pub const STALL_SECONDS: f64 = 0.1;
/// In flight that never counts as falling behind.
pub const STALL_MIN: f64 = 8.0;
/// Samples kept at most; beyond, every other measured one is dropped (as the
/// run's own sample log does), so a long run stays bounded.
const MAX_KEPT: usize = 8192;

/// Why the run stopped early.
#[derive(Clone, Debug)]
pub struct Stop {
    pub decision: Decision,
    /// Seconds from the end of warm-up to the look that decided.
    pub after_s: f64,
    /// The judge's verdict over the samples at that look.
    pub verdict: Verdict,
}

/// The stopping rule's state over one run.
pub struct StopRule {
    test: SequentialTest,
    warmup_s: f64,
    /// The most measurement the run may have (its maximum less the warm-up).
    horizon_s: f64,
    catalogue: Catalogue,
    limit: Option<u64>,
    samples: Vec<Sample>,
    next_look_s: f64,
    /// Per watched signal, how far it fell back in the warm-up (read once).
    warmup_noise: Option<BTreeMap<String, f64>>,
    last: Option<Look>,
    stop: Option<Stop>,
    /// The target fell behind its load during measurement: no early stop.
    stalled: bool,
}

impl StopRule {
    /// A rule for a run of `duration` (the maximum) with `warmup`, judged
    /// against `catalogue` and `limit` as the run's verdict is.
    pub fn new(
        warmup: Duration,
        duration: Duration,
        catalogue: Catalogue,
        limit: Option<u64>,
    ) -> StopRule {
        let horizon = duration.saturating_sub(warmup).as_secs_f64();
        StopRule {
            test: SequentialTest::new(horizon),
            warmup_s: warmup.as_secs_f64(),
            horizon_s: horizon,
            catalogue,
            limit,
            samples: Vec::new(),
            next_look_s: LOOK_EVERY_S,
            warmup_noise: None,
            last: None,
            stop: None,
            stalled: false,
        }
    }

    /// The target fell behind its load during measurement, so the run goes
    /// on to the fixed window.
    pub fn stalled(&self) -> bool {
        self.stalled
    }

    /// The latest look, if any.
    pub fn last_look(&self) -> Option<&Look> {
        self.last.as_ref()
    }

    /// The samples kept so far, as the rule's judge reads them.
    pub fn samples(&self) -> &[Sample] {
        &self.samples
    }

    /// The stop, once decided.
    pub fn stop(&self) -> Option<&Stop> {
        self.stop.as_ref()
    }

    /// Looks that spent error budget.
    pub fn looks(&self) -> u32 {
        self.test.looks()
    }

    /// The most measurement the run may have: a verdict at an early stop is
    /// judged against it ([`judge_within`]).
    pub fn horizon_s(&self) -> f64 {
        self.horizon_s
    }

    /// The error budget of each call.
    pub fn alpha(&self) -> f64 {
        self.test.alpha()
    }

    /// Takes the next sample (in time order). Looks when a second of
    /// measurement has passed since the last look; returns the stop when
    /// this look decided and the judge agreed.
    pub fn push(&mut self, sample: Sample) -> Option<&Stop> {
        if self.stop.is_some() {
            return self.stop.as_ref();
        }
        let at_s = sample.t - self.warmup_s;
        let measured = sample.phase == Phase::Measure;
        self.keep(sample);
        if !measured || at_s < self.next_look_s {
            return None;
        }
        self.next_look_s = (at_s / LOOK_EVERY_S).floor() * LOOK_EVERY_S + LOOK_EVERY_S;
        self.stalled = self.stalled || self.fell_behind();
        let look = self.look(at_s);
        let agreed = match &look.decision {
            Some(_) if self.stalled => None,
            Some(decision) => {
                let verdict = judge_within(
                    &self.samples,
                    &self.catalogue,
                    self.limit,
                    Some(self.horizon_s),
                )
                .verdict;
                let agrees = match decision {
                    Decision::Climb { .. } => verdict.leak,
                    Decision::Flat => !climbs(&verdict),
                };
                agrees.then(|| Stop {
                    decision: decision.clone(),
                    after_s: at_s,
                    verdict,
                })
            }
            None => None,
        };
        self.last = Some(look);
        self.stop = agreed;
        self.stop.as_ref()
    }

    /// Some measured sample had more requests in flight than
    /// [`STALL_SECONDS`] of the arrivals completed over the measurement.
    fn fell_behind(&self) -> bool {
        let measured: Vec<&Sample> = self
            .samples
            .iter()
            .filter(|s| s.phase == Phase::Measure)
            .collect();
        let (Some(first), Some(last)) = (measured.first(), measured.last()) else {
            return false;
        };
        let span = last.t - first.t;
        if span <= 0.0 {
            return false;
        }
        let rate = last.requests.saturating_sub(first.requests) as f64 / span;
        let limit = STALL_MIN.max(STALL_SECONDS * rate);
        measured.iter().any(|s| s.in_flight as f64 > limit)
    }

    fn keep(&mut self, sample: Sample) {
        if self.samples.len() >= MAX_KEPT {
            let mut i = 0usize;
            self.samples.retain(|s| {
                i += 1;
                s.phase != Phase::Measure || i % 2 == 0
            });
        }
        self.samples.push(sample);
    }

    /// The sequential test's look at the watched signals now.
    fn look(&mut self, at_s: f64) -> Look {
        let series = signals::series(&self.samples);
        let noise = self
            .warmup_noise
            .get_or_insert_with(|| warmup_noises(&series));
        let measured: Vec<(&str, &Series, Vec<f64>, Vec<f64>)> = watched(&series)
            .into_iter()
            .filter_map(|name| {
                let s = series.get(name)?;
                let (x, y) = s
                    .points
                    .iter()
                    .zip(&s.phases)
                    .filter(|(_, p)| **p == Phase::Measure)
                    .map(|(pt, _)| (pt.0 - self.warmup_s, pt.1))
                    .unzip();
                Some((name, s, x, y))
            })
            .collect();
        let watched: Vec<Watched> = measured
            .iter()
            .map(|(name, s, x, y)| Watched {
                name,
                kind: s.kind,
                x,
                y,
                warmup_noise: noise.get(*name).copied().unwrap_or(0.0),
            })
            .collect();
        self.test.look(at_s, &watched)
    }
}

/// The names watched in `series`: [`WATCHED`], with [`WATCHED_RSS`] for a
/// target without allocator stats.
fn watched(series: &BTreeMap<String, Series>) -> Vec<&'static str> {
    WATCHED
        .iter()
        .map(|name| match *name {
            "rss_outside_allocator" if !series.contains_key(*name) => WATCHED_RSS,
            name => name,
        })
        .collect()
}

/// Each watched signal's fall back during the warm-up.
fn warmup_noises(series: &BTreeMap<String, Series>) -> BTreeMap<String, f64> {
    watched(series)
        .into_iter()
        .filter_map(|name| {
            let s = series.get(name)?;
            let y: Vec<f64> = s
                .points
                .iter()
                .zip(&s.phases)
                .filter(|(_, p)| **p == Phase::Warmup)
                .map(|(pt, _)| pt.1)
                .collect();
            Some((name.to_string(), warmup_noise(&y)))
        })
        .collect()
}

/// A verdict that found something climbing (rather than a level).
pub fn climbs(v: &Verdict) -> bool {
    v.findings.iter().any(|f| {
        matches!(
            f.class,
            LeakClass::Retention | LeakClass::TaskLeak | LeakClass::OffHeap | LeakClass::RssGrowth
        )
    })
}

/// Runs the rule over recorded samples (a run's, in time order): the stop
/// and the rule's final state, as a live run would have seen them.
pub fn replay(samples: &[Sample], mut rule: StopRule) -> StopRule {
    for s in samples {
        if rule.push(s.clone()).is_some() {
            break;
        }
    }
    rule
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::judging::judge;
    use leaklab_model::run::{ProcReading, TargetMemory};

    const WARMUP: Duration = Duration::from_secs(10);
    const DURATION: Duration = Duration::from_secs(40);

    /// A synthetic run at 4 Hz: 2 s of baseline, 10 s warm-up, 30 s measured.
    fn run(f: impl Fn(f64) -> (f64, f64)) -> Vec<Sample> {
        (-8..=160)
            .map(|i| {
                let t = i as f64 * 0.25;
                let (allocated, tasks) = f(t.max(0.0));
                let wiggle = ((i * 7919) % 13) as f64 * 2000.0;
                Sample {
                    t,
                    phase: crate::sampling::phase_at(t, WARMUP, DURATION),
                    requests: 0,
                    in_flight: 0,
                    memory: Some(TargetMemory {
                        allocated: (allocated + wiggle) as u64,
                        resident: (allocated + 3e6 + wiggle) as u64,
                        rss: (allocated + 20e6) as u64,
                        alive_tasks: tasks as u64,
                        ..Default::default()
                    }),
                    proc: Some(ProcReading {
                        rss: (allocated + 20e6 + wiggle) as u64,
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

    fn rule() -> StopRule {
        StopRule::new(WARMUP, DURATION, Catalogue::default(), None)
    }

    #[test]
    fn a_heap_climb_stops_the_run_early_with_the_judges_class() {
        let samples = run(|t| (1e6 + 2e6 * t, 5.0));
        let rule = replay(&samples, rule());
        let stop = rule.stop().expect("a stop");
        assert_eq!(
            stop.decision,
            Decision::Climb {
                signal: "allocated".into()
            }
        );
        assert!(stop.after_s <= 4.0, "{}", stop.after_s);
        assert_eq!(stop.verdict.class, LeakClass::Retention);
        // The run's verdict, over the samples up to the stop, is the same.
        let taken: Vec<Sample> = samples
            .iter()
            .filter(|s| s.t <= WARMUP.as_secs_f64() + stop.after_s)
            .cloned()
            .collect();
        assert_eq!(
            judge(&taken, &Catalogue::default(), None).verdict.class,
            LeakClass::Retention
        );
    }

    #[test]
    fn a_task_climb_stops_early_as_a_task_leak() {
        let samples = run(|t| (1e6 + 0.9e6 * t, 5.0 + 200.0 * t));
        let stop = replay(&samples, rule()).stop().cloned().expect("a stop");
        assert!(stop.after_s <= 4.0, "{}", stop.after_s);
        assert_eq!(stop.verdict.class, LeakClass::TaskLeak);
    }

    #[test]
    fn a_flat_run_stops_early_with_no_leak() {
        let samples = run(|_| (8e6, 5.0));
        let rule = replay(&samples, rule());
        let stop = rule.stop().expect("a stop");
        assert_eq!(stop.decision, Decision::Flat);
        assert!(!stop.verdict.leak);
        assert!(stop.after_s < 25.0, "{}", stop.after_s);
    }

    #[test]
    fn nothing_decisive_runs_to_the_maximum_and_the_fixed_window_decides() {
        // 60 kB/s under 1 MB of churn: never decisive either way within 30 s.
        let samples = run(|t| {
            let tooth = 1.5e6 * ((t * 4.0) as i64 % 7) as f64 / 7.0;
            (8e6 + 6e4 * t + tooth, 5.0)
        });
        let rule = replay(&samples, rule());
        assert!(rule.stop().is_none(), "{:?}", rule.stop());
        assert!(rule.looks() >= 25, "{}", rule.looks());
        // The run then ends at --duration and reports the judge over every sample.
        let fixed = judge(&samples, &Catalogue::default(), None).verdict;
        assert!(!fixed.leak, "{fixed:?}");
    }

    #[test]
    fn a_target_that_fell_behind_its_load_runs_to_the_fixed_window() {
        // A loud climb, but at one moment 40 requests were in flight at 200/s.
        let mut samples = run(|t| (1e6 + 2e6 * t, 5.0));
        for (i, s) in samples.iter_mut().enumerate() {
            s.requests = (200.0 * s.t.max(0.0)) as u64;
            s.in_flight = if i == 50 { 40 } else { 1 };
        }
        let stalled = replay(&samples, rule());
        assert!(stalled.stalled());
        assert!(stalled.stop().is_none(), "{:?}", stalled.stop());
        // 10 in flight is 50 ms of arrivals: keeping up.
        samples[50].in_flight = 10;
        assert!(replay(&samples, rule()).stop().is_some());
    }

    #[test]
    fn rss_the_allocator_holds_is_not_a_climb_and_rss_alone_is_watched_without_allocator_stats() {
        // RSS climbs with the allocator's resident pages while the live heap
        // stays flat: the allocator keeping freed pages, which the judge calls
        // churn, not a leak. RSS outside the allocator is what is watched.
        let mut samples = run(|_| (8e6, 5.0));
        for s in &mut samples {
            let up = (5e5 * s.t.max(0.0)) as u64;
            let m = s.memory.as_mut().unwrap();
            m.resident += up;
            m.rss += up;
            s.proc.as_mut().unwrap().rss += up;
        }
        let held = replay(&samples, rule());
        let last = held.last_look().expect("looks");
        let names: Vec<&str> = last.signals.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["alive_tasks", "allocated", "rss_outside_allocator"]);
        assert!(last.signals.iter().all(|s| !s.climbing), "{last:?}");
        assert!(
            !matches!(
                held.stop(),
                Some(Stop {
                    decision: Decision::Climb { .. },
                    ..
                })
            ),
            "{:?}",
            held.stop()
        );
        assert!(!judge(&samples, &Catalogue::default(), None).verdict.leak);
        // Without allocator stats (only /proc), RSS itself is watched.
        let bare: Vec<Sample> = samples
            .into_iter()
            .map(|mut s| {
                s.memory = None;
                s
            })
            .collect();
        let bare_rule = replay(&bare, rule());
        let last = bare_rule.last_look().expect("looks");
        assert!(
            last.signals.iter().any(|s| s.name == "rss" && s.climbing),
            "{last:?}"
        );
    }
}
