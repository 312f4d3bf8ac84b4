//! `loadgen run --until-verdict`: a task of the session that hands every
//! sample to the stopping rule ([`judging::stopping`]) as it is taken and,
//! once the rule stops, ends the load and the sampling; the running decision
//! for the progress line; and what the summary records of it.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use leaklab_model::run::{Sample, SequentialSummary};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::plan::RunPlan;
use crate::engine::Progress;
use crate::judging::sequential::{Decision, Look};
use crate::judging::stopping::{Stop, StopRule};

/// What the stopping rule has seen so far, shared with the progress line
/// and read by the run at its end.
#[derive(Debug, Default)]
pub struct UntilVerdict {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    last: Option<Look>,
    stop: Option<Stop>,
    looks: u32,
    alpha: f64,
    stalled: bool,
}

impl UntilVerdict {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn update(&self, rule: &StopRule) {
        let mut s = self.state();
        s.last = rule.last_look().cloned();
        s.stop = rule.stop().cloned();
        s.looks = rule.looks();
        s.alpha = rule.alpha();
        s.stalled = rule.stalled();
    }

    /// The stop, once the rule decided.
    pub fn stop(&self) -> Option<Stop> {
        self.state().stop.clone()
    }

    /// The running decision, for the progress line.
    pub fn progress(&self) -> String {
        let s = self.state();
        if let Some(stop) = &s.stop {
            return format!(" | decided: {}", decision_words(&stop.decision));
        }
        if s.stalled {
            return " | until-verdict: the target fell behind its load; the fixed window decides"
                .into();
        }
        match s.last.as_ref().map(|l| (l, l.leak_evidence())) {
            None => " | until-verdict: warm-up".into(),
            Some((_, None)) => " | until-verdict: gathering the first points".into(),
            Some((look, Some((signal, leak)))) => format!(
                " | evidence {leak:.2} of the way to a leak call ({signal}), {:.2} to no leak",
                look.flat_evidence()
            ),
        }
    }

    /// The summary's record: stopped early or not, and how the verdict was
    /// reached. `measured_s`: seconds of load after warm-up.
    pub fn summary(&self, plan: &RunPlan, measured_s: f64) -> (bool, SequentialSummary) {
        let s = self.state();
        let (leak, flat) = s
            .last
            .as_ref()
            .map(|l| {
                (
                    l.leak_evidence().map(|e| e.1).unwrap_or(0.0),
                    l.flat_evidence(),
                )
            })
            .unwrap_or((0.0, 0.0));
        let (decided_by, decision, signal, after) = match &s.stop {
            Some(stop) => (
                "sequential",
                Some(match stop.decision {
                    Decision::Climb { .. } => "climb",
                    Decision::Flat => "flat",
                }),
                match &stop.decision {
                    Decision::Climb { signal } => Some(signal.clone()),
                    Decision::Flat => None,
                },
                stop.after_s,
            ),
            None => ("fixed-window", None, None, measured_s.max(0.0)),
        };
        let summary = SequentialSummary {
            decided_by: decided_by.into(),
            decision: decision.map(str::to_owned),
            signal,
            decision_after_s: after,
            looks: s.looks,
            alpha: s.alpha,
            evidence_leak: leak,
            evidence_flat: flat,
            max_duration_s: plan.duration.as_secs_f64(),
        };
        (s.stop.is_some(), summary)
    }
}

/// A decision in words: `a leak call on allocated`, `no climb`.
pub fn decision_words(d: &Decision) -> String {
    match d {
        Decision::Climb { signal } => format!("a leak call on {signal}"),
        Decision::Flat => "no climb in any watched signal".into(),
    }
}

/// The note a run that stopped early carries.
pub fn note(stop: &Stop) -> String {
    format!(
        "stopped early (--until-verdict): {} {:.1} s after warm-up, by the sequential test's confidence sequences, with the judge agreeing",
        decision_words(&stop.decision),
        stop.after_s
    )
}

/// Starts the task: every sample from `samples` goes to `rule` (and on to
/// `forward`, the caller's own tap, when there is one); when the rule
/// stops, the load is told to stop and the sampler is cancelled. Ends when
/// the sampler drops its side of the channel.
pub fn spawn(
    mut rule: StopRule,
    mut samples: UnboundedReceiver<Sample>,
    forward: Option<UnboundedSender<Sample>>,
    status: Arc<UntilVerdict>,
    progress: Arc<Progress>,
    cancel: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        // Bounded by the sampler: it drops the sender when it ends.
        while let Some(sample) = samples.recv().await {
            if let Some(tx) = &forward {
                // The caller may have stopped listening; the rule goes on.
                let _ = tx.send(sample.clone());
            }
            if rule.stop().is_some() {
                continue;
            }
            let stopped = rule.push(sample).is_some();
            status.update(&rule);
            if stopped {
                progress.stop.store(true, Ordering::Relaxed);
                cancel.cancel();
            }
        }
    })
}
