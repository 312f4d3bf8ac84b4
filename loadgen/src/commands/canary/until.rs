//! `loadgen canary --until-verdict`: a task that takes both sides' samples
//! as they are taken and stops both runs as soon as the pair is decided.
//!
//! The canary's samples go through the same stopping rule as `loadgen run
//! --until-verdict` ([`StopRule`]: alpha-spending confidence sequences on the
//! watched slopes, the judge agreeing), with the comparison window's start
//! (after the warm-up, or after the last toggle has settled) as the end of
//! its warm-up: everything before it is the noise the rule measures, nothing
//! before it counts as evidence. When the rule calls a climb, the baseline's
//! samples over the same window are judged and the pair compared by the
//! canary rule ([`canary::judge`]); only a regression stops the runs (a climb
//! the baseline shares is no regression, and the fixed window then decides).
//! When the rule calls the canary flat, no regression is possible and the
//! runs stop too. The comparison only makes calls rarer, so the rule's error
//! bound holds for the pair's call.

use std::time::Duration;

use leaklab_model::canary::CanarySequential;
use leaklab_model::run::{Phase, Sample};
use leaklab_model::Catalogue;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::judging;
use crate::judging::canary::{self, windowed};
use crate::judging::sequential::Decision;
use crate::judging::stopping::StopRule;

/// What the watcher needs to know of the run.
pub(super) struct Window {
    /// Seconds after the load starts when the comparison window opens.
    pub from_s: f64,
    /// The runs' maximum length.
    pub duration: Duration,
    pub catalogue: Catalogue,
    pub limit: Option<u64>,
    /// Print the decision on stderr as it is made.
    pub loud: bool,
}

/// The pair's call, when one was made before the maximum.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Call {
    pub regression: bool,
    /// Seconds after the load started.
    pub at_s: f64,
}

/// What the watcher saw, once both runs have ended.
#[derive(Debug, Default)]
pub(super) struct Watched {
    pub call: Option<Call>,
    pub looks: u32,
    pub alpha: f64,
    pub notes: Vec<String>,
}

impl Watched {
    /// The report's record, given the last toggle applied (seconds after
    /// the load started).
    pub fn summary(&self, duration: Duration, last_toggle_s: Option<f64>) -> CanarySequential {
        let max = duration.as_secs_f64();
        let (decided_by, decision, at_s) = match &self.call {
            Some(c) => (
                "sequential",
                Some(if c.regression {
                    "regression"
                } else {
                    "no-regression"
                }),
                c.at_s,
            ),
            None => ("fixed-window", None, max),
        };
        CanarySequential {
            decided_by: decided_by.into(),
            decision: decision.map(str::to_owned),
            decided_at_s: at_s,
            after_toggle_s: last_toggle_s.map(|t| at_s - t),
            looks: self.looks,
            alpha: self.alpha,
            max_duration_s: max,
        }
    }
}

/// The pair's state as samples arrive.
struct Pair {
    window: Window,
    rule: StopRule,
    baseline: Vec<Sample>,
    watched: Watched,
}

impl Pair {
    fn new(window: Window) -> Pair {
        let rule = StopRule::new(
            Duration::from_secs_f64(window.from_s),
            window.duration,
            window.catalogue.clone(),
            window.limit,
        );
        Pair {
            window,
            rule,
            baseline: Vec::new(),
            watched: Watched::default(),
        }
    }

    /// Takes one canary sample; the call when the pair is decided by it.
    fn canary(&mut self, mut sample: Sample) -> Option<Call> {
        if self.rule.stop().is_some() {
            return None;
        }
        if sample.phase == Phase::Measure && sample.t < self.window.from_s {
            sample.phase = Phase::Warmup;
        }
        let t = sample.t;
        let stop = self.rule.push(sample)?.clone();
        self.watched.looks = self.rule.looks();
        let regression = match stop.decision {
            Decision::Flat => false,
            Decision::Climb { .. } => {
                let (catalogue, limit) = (&self.window.catalogue, self.window.limit);
                let base = windowed(&self.baseline, self.window.from_s);
                let horizon = Some(self.rule.horizon_s());
                let base = judging::judge_within(&base, catalogue, limit, horizon);
                // The canary's samples as the rule kept them, re-phased to the window.
                let ours = judging::judge_within(self.rule.samples(), catalogue, limit, horizon);
                let compared = canary::compare(&base.signals, &ours.signals);
                let verdict = canary::judge(&base.verdict, &ours.verdict, &compared);
                if !verdict.regression {
                    self.watched.notes.push(format!(
                        "--until-verdict: the canary's climb was called at {t:.1} s, but not as a regression ({}); the fixed window decides",
                        verdict.reasons.join("; ")
                    ));
                    return None;
                }
                true
            }
        };
        Some(Call {
            regression,
            at_s: t,
        })
    }
}

/// Starts the watcher; it ends when both sides' samplers have ended, and
/// cancels `stop` (both runs) when the pair is decided.
pub(super) fn spawn(
    window: Window,
    mut baseline: UnboundedReceiver<Sample>,
    mut canary: UnboundedReceiver<Sample>,
    stop: CancellationToken,
) -> JoinHandle<Watched> {
    tokio::spawn(async move {
        let loud = window.loud;
        let mut pair = Pair::new(window);
        let (mut b_open, mut c_open) = (true, true);
        // Bounded by the samplers: each drops its sender when it ends.
        while b_open || c_open {
            tokio::select! {
                s = baseline.recv(), if b_open => match s {
                    Some(s) => pair.baseline.push(s),
                    None => b_open = false,
                },
                s = canary.recv(), if c_open => match s {
                    Some(s) => {
                        if let Some(call) = pair.canary(s) {
                            if loud {
                                eprintln!(
                                    "[{:>4.0}s] decided: {}",
                                    call.at_s,
                                    if call.regression { "the canary regresses" } else { "no regression: the canary is flat" }
                                );
                            }
                            pair.watched.call = Some(call);
                            stop.cancel();
                        }
                    }
                    None => c_open = false,
                },
            }
        }
        pair.watched.looks = pair.rule.looks();
        pair.watched.alpha = pair.rule.alpha();
        pair.watched
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use leaklab_model::run::{ProcReading, TargetMemory};

    const DURATION: Duration = Duration::from_secs(60);

    /// A side at 4 Hz for 60 s (10 s warm-up): `f(t)` is its live heap.
    fn side(f: impl Fn(f64) -> f64) -> Vec<Sample> {
        (0..240)
            .map(|i| {
                let t = i as f64 * 0.25;
                let allocated = f(t) + ((i * 7919) % 13) as f64 * 2000.0;
                Sample {
                    t,
                    phase: crate::sampling::phase_at(t, Duration::from_secs(10), DURATION),
                    requests: 0,
                    in_flight: 0,
                    memory: Some(TargetMemory {
                        allocated: allocated as u64,
                        resident: (allocated + 3e6) as u64,
                        rss: (allocated + 20e6) as u64,
                        alive_tasks: 5,
                        ..Default::default()
                    }),
                    proc: Some(ProcReading {
                        rss: (allocated + 20e6) as u64,
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

    /// Feeds both sides in time order; the first call.
    fn decide(baseline: &[Sample], canary: &[Sample]) -> (Option<Call>, Watched) {
        let mut pair = Pair::new(Window {
            from_s: 25.0,
            duration: DURATION,
            catalogue: Catalogue::default(),
            limit: None,
            loud: false,
        });
        for (b, c) in baseline.iter().zip(canary) {
            pair.baseline.push(b.clone());
            if let Some(call) = pair.canary(c.clone()) {
                return (Some(call), pair.watched);
            }
        }
        (None, pair.watched)
    }

    /// The flag is toggled on at 20 s; the window opens at 25 s.
    fn toggled(t: f64) -> f64 {
        30e6 + 2e6 * (t - 20.0).max(0.0)
    }

    #[test]
    fn a_climb_after_the_toggle_is_a_regression_called_soon_after_the_window_opens() {
        let (call, _) = decide(&side(|_| 30e6), &side(toggled));
        let call = call.expect("a call");
        assert!(call.regression);
        assert!(call.at_s > 25.0 && call.at_s < 35.0, "{call:?}");
    }

    #[test]
    fn a_climb_the_baseline_shares_stops_nothing_and_a_flat_canary_is_no_regression() {
        let (call, watched) = decide(&side(toggled), &side(toggled));
        assert_eq!(call, None);
        assert!(
            watched
                .notes
                .iter()
                .any(|n| n.contains("not as a regression")),
            "{:?}",
            watched.notes
        );
        // The growth before the window is not evidence: flat after it is flat.
        let (call, _) = decide(&side(|_| 30e6), &side(|t| 30e6 + 2e6 * t.min(22.0)));
        let call = call.expect("a call");
        assert!(!call.regression, "{call:?}");
    }
}
