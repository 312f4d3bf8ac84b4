//! The watch loop of `loadgen oom`: every sample from the sampler's tap
//! becomes a prediction of the kill (after the warm-up) and, every 5 s, a
//! progress line; the service's end is polled every 100 ms, so the kill's
//! time is known to 0.1 s.

use std::time::Duration;

use leaklab_model::oom::Prediction;
use leaklab_model::run::{Phase, Sample};
use tokio::sync::mpsc::UnboundedReceiver;

use super::target::OomTarget;
use super::OomOpts;
use crate::commands::run::session::Session;
use crate::human::human_bytes;
use crate::judging::oom::predict;

/// How often the service's end is polled.
const POLL: Duration = Duration::from_millis(100);
/// How often a progress line is printed.
const LINE_EVERY: f64 = 5.0;

/// What the watch saw.
pub(super) struct Watched {
    /// Seconds since the load started when the service was seen to end.
    pub ended: Option<f64>,
    pub interrupted: bool,
    /// Every sample, in order.
    pub samples: Vec<Sample>,
    /// One per sample after the warm-up, once there are enough.
    pub predictions: Vec<Prediction>,
    /// The sampler's tap, for the samples still in it.
    tap: UnboundedReceiver<Sample>,
    /// (t, usage) after the warm-up, what predictions are fitted on.
    fit_points: Vec<(f64, f64)>,
    next_line_s: f64,
    limit: f64,
    quiet: bool,
}

impl Watched {
    /// One sample: kept, predicted from, and shown every [`LINE_EVERY`] s.
    fn observe(&mut self, sample: Sample) {
        let t = sample.t;
        let reading = sample.cgroup.clone();
        let requests = sample.requests;
        let measured = sample.phase == Phase::Measure;
        self.samples.push(sample);
        let Some(reading) = reading else { return };
        if measured {
            self.fit_points.push((t, reading.usage as f64));
            if let Some(p) = predict(&self.fit_points, t, self.limit) {
                self.predictions.push(p);
            }
        }
        if self.quiet || t < self.next_line_s {
            return;
        }
        self.next_line_s += LINE_EVERY;
        let prediction = match self.predictions.last() {
            Some(p) if p.at_s == t => format!(
                "predicted kill at {:.0}s (in {:.0}s), {}/s",
                p.predicted_time_to_oom_s,
                p.remaining_s,
                human_bytes(p.slope_bytes_per_s)
            ),
            _ => "no prediction yet".into(),
        };
        eprintln!(
            "[{t:>4.0}s] {requests:>8} requests | cgroup {} of {} | {prediction}",
            human_bytes(reading.usage as f64),
            human_bytes(self.limit),
        );
    }

    /// With the samples the sampler sent before it stopped.
    pub(super) fn drained(mut self) -> Watched {
        while let Ok(sample) = self.tap.try_recv() {
            self.observe(sample);
        }
        self
    }
}

/// Watches until the service ends, ctrl-c, or `--max-duration`.
pub(super) async fn watch(
    opts: &OomOpts,
    target: &OomTarget,
    live: &Session,
    tap: UnboundedReceiver<Sample>,
) -> Watched {
    let mut w = Watched {
        ended: None,
        interrupted: false,
        samples: Vec::new(),
        predictions: Vec::new(),
        tap,
        fit_points: Vec::new(),
        next_line_s: LINE_EVERY,
        limit: opts.limit as f64,
        quiet: opts.json,
    };
    let mut poll = tokio::time::interval(POLL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    // Bounded by --max-duration (or the kill, or ctrl-c).
    loop {
        tokio::select! {
            _ = poll.tick() => {}
            _ = &mut ctrl_c => { w.interrupted = true; }
            Some(sample) = w.tap.recv() => { w.observe(sample); }
        }
        let t_now = live.start.elapsed().as_secs_f64();
        if target.ended() {
            w.ended = Some(t_now);
            break;
        }
        if w.interrupted || t_now > opts.max_duration.as_secs_f64() {
            break;
        }
    }
    w
}
