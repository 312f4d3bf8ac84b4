//! A run's live progress on stderr, once a second: the phase (baseline,
//! warm-up, measuring, cool-down), elapsed against the planned total and
//! the time left, requests done and their rate, errors and drops, the
//! newest heap, RSS and task readings, and the running slope of the live
//! heap over the measured window so far (Theil–Sen, the estimator the
//! verdict uses), with `--until-verdict`'s running decision after it.
//!
//! On a terminal it is a bar redrawn in place (indicatif) with the time
//! left and the same figures, cut to the terminal's width; anywhere else (a pipe, a CI log) it is one plain
//! line a second, so logs stay readable and greppable.

use std::io::IsTerminal;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use leaklab_model::run::{Phase, Sample};
use tokio::time::Instant;

use super::until_verdict::UntilVerdict;
use crate::engine::Progress;
use crate::human::human_bytes;
use crate::judging::stats::theil_sen;
use crate::sampling::Shared;

/// The running slope uses at most this many of the newest measured samples
/// (Theil–Sen reads every pair: bounded work per tick).
const SLOPE_WINDOW: usize = 120;

/// The live heap's measured points so far, for the running slope.
#[derive(Debug, Default)]
pub struct RunningSlope {
    points: Vec<(f64, f64)>,
}

impl RunningSlope {
    /// Adds a sample's live heap when it is a new measured one.
    pub fn push(&mut self, sample: &Sample) {
        let Some(memory) = sample.memory.as_ref() else {
            return;
        };
        if sample.phase != Phase::Measure || self.points.last().is_some_and(|p| p.0 >= sample.t) {
            return;
        }
        self.points.push((sample.t, memory.allocated as f64));
        if self.points.len() > SLOPE_WINDOW {
            self.points.remove(0);
        }
    }

    /// Bytes per second, once there are three measured points.
    pub fn slope(&self) -> Option<f64> {
        let (x, y): (Vec<f64>, Vec<f64>) = self.points.iter().copied().unzip();
        theil_sen(&x, &y).map(|fit| fit.slope)
    }
}

/// How a phase reads on the line.
fn phase_name(phase: Option<Phase>) -> &'static str {
    match phase {
        Some(Phase::Baseline) | None => "baseline",
        Some(Phase::Warmup) => "warm-up",
        Some(Phase::Measure) => "measuring",
        Some(Phase::Cooldown) => "cool-down",
    }
}

/// One progress line's figures, without the elapsed prefix.
pub fn describe(
    phase: Option<Phase>,
    done: u64,
    per_s: u64,
    (errors, dropped): (u64, u64),
    latest: Option<&Sample>,
    slope: Option<f64>,
) -> String {
    let mem = match latest.and_then(|s| s.memory.as_ref().map(|m| (s.rss(), m))) {
        Some((rss, m)) => format!(
            " | allocated {} rss {} tasks {}",
            human_bytes(m.allocated as f64),
            human_bytes(rss.unwrap_or(m.rss) as f64),
            m.alive_tasks
        ),
        None => " | memory: no answer".into(),
    };
    let slope = slope
        .map(|s| {
            let sign = if s < 0.0 { "-" } else { "+" };
            format!(" | heap slope {sign}{}/s", human_bytes(s.abs()))
        })
        .unwrap_or_default();
    format!(
        "{:<9} {done:>8} done {per_s:>6}/s  errors {errors}  dropped {dropped}{mem}{slope}",
        phase_name(phase)
    )
}

/// What the progress line and the TUI read once per tick: the load's
/// counters, the newest sample, the running slope and `--until-verdict`'s
/// running decision.
pub struct Status {
    progress: Arc<Progress>,
    shared: Arc<Shared>,
    until_verdict: Option<Arc<UntilVerdict>>,
    slope: RunningSlope,
    /// Requests done at the last rate update, and when.
    last: (u64, Instant),
    per_s: u64,
}

/// One tick's reading.
pub struct Tick {
    /// The figures ([`describe`]).
    pub line: String,
    /// `--until-verdict`'s running decision (` | ...`), or empty.
    pub decision: String,
    pub latest: Option<Sample>,
}

impl Status {
    pub fn new(
        progress: Arc<Progress>,
        shared: Arc<Shared>,
        until_verdict: Option<Arc<UntilVerdict>>,
    ) -> Status {
        Status {
            progress,
            shared,
            until_verdict,
            slope: RunningSlope::default(),
            last: (0, Instant::now()),
            per_s: 0,
        }
    }

    /// Reads everything now; the request rate is updated about once a
    /// second, however often this is called.
    pub fn tick(&mut self) -> Tick {
        let latest = self.shared.latest();
        if let Some(sample) = &latest {
            self.slope.push(sample);
        }
        let done = self.progress.units_done.load(Ordering::Relaxed);
        if self.last.1.elapsed() >= Duration::from_millis(900) {
            self.per_s = done - self.last.0;
            self.last = (done, Instant::now());
        }
        let line = describe(
            latest.as_ref().map(|s| s.phase),
            done,
            self.per_s,
            (
                self.progress.errors.load(Ordering::Relaxed),
                self.progress.dropped.load(Ordering::Relaxed),
            ),
            latest.as_ref(),
            self.slope.slope(),
        );
        let decision = self
            .until_verdict
            .as_ref()
            .map(|u| u.progress())
            .unwrap_or_default();
        Tick {
            line,
            decision,
            latest,
        }
    }
}

/// The bar, when stderr is a terminal.
fn terminal_bar(duration: Duration) -> Option<ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = ProgressBar::with_draw_target(
        Some(duration.as_secs().max(1)),
        ProgressDrawTarget::stderr_with_hz(4),
    );
    let style = ProgressStyle::with_template("[{bar:16}] {wide_msg}")
        .ok()?
        .progress_chars("=> ");
    bar.set_style(style);
    Some(bar)
}

/// Once a second on stderr until the run aborts it (and at most for the
/// run's duration and half a minute more: a bounded loop).
pub async fn progress_line(
    progress: Arc<Progress>,
    shared: Arc<Shared>,
    until_verdict: Option<Arc<UntilVerdict>>,
    start: Instant,
    duration: Duration,
) {
    let mut tick = tokio::time::interval_at(start + Duration::from_secs(1), Duration::from_secs(1));
    let bar = terminal_bar(duration);
    let mut status = Status::new(progress, shared, until_verdict);
    for _ in 0..=duration.as_secs() + 30 {
        tick.tick().await;
        let Tick { line, decision, .. } = status.tick();
        let elapsed = start.elapsed();
        match &bar {
            Some(bar) => {
                let left = duration.saturating_sub(elapsed).as_secs();
                bar.set_message(format!(
                    "{:.0}/{}s, {left}s left  {line}{decision}",
                    elapsed.as_secs_f64(),
                    duration.as_secs()
                ));
                bar.set_position(elapsed.as_secs().min(duration.as_secs()));
            }
            None => eprintln!(
                "[{:>4.0}s/{}s] {line}{decision}",
                elapsed.as_secs_f64(),
                duration.as_secs()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use leaklab_model::run::TargetMemory;

    use super::*;

    fn sample(t: f64, phase: Phase, allocated: u64) -> Sample {
        Sample {
            t,
            phase,
            requests: 0,
            in_flight: 0,
            memory: Some(TargetMemory {
                allocated,
                rss: 3 << 20,
                alive_tasks: 7,
                ..Default::default()
            }),
            proc: None,
            cgroup: None,
            metrics: None,
            error: None,
        }
    }

    #[test]
    fn the_running_slope_reads_only_new_measured_samples() {
        let mut slope = RunningSlope::default();
        // Warm-up climbs steeply; it must not count.
        for t in 0..5 {
            slope.push(&sample(t as f64, Phase::Warmup, t * 10_000_000));
        }
        assert_eq!(slope.slope(), None);
        for t in 5..15 {
            let s = sample(t as f64, Phase::Measure, 1_000_000 + t * 2048);
            slope.push(&s);
            // The same sample seen twice (the sampler is slower than the line).
            slope.push(&s);
        }
        assert_eq!(slope.slope(), Some(2048.0));
        for t in 15..15 + SLOPE_WINDOW as u64 {
            slope.push(&sample(t as f64, Phase::Measure, 5_000_000));
        }
        assert_eq!(slope.slope(), Some(0.0), "only the newest window counts");
    }

    #[test]
    fn a_line_names_the_phase_the_memory_and_the_slope() {
        let s = sample(9.0, Phase::Measure, 64 << 20);
        let line = describe(
            Some(Phase::Measure),
            1800,
            200,
            (0, 1),
            Some(&s),
            Some(-1536.0),
        );
        assert!(line.starts_with("measuring "), "{line}");
        assert!(
            line.contains("1800 done    200/s  errors 0  dropped 1"),
            "{line}"
        );
        assert!(
            line.contains("allocated 64.0 MiB rss 3.0 MiB tasks 7"),
            "{line}"
        );
        assert!(line.ends_with("heap slope -1.5 KiB/s"), "{line}");
        let none = describe(None, 0, 0, (0, 0), None, None);
        assert!(
            none.starts_with("baseline ") && none.ends_with("memory: no answer"),
            "{none}"
        );
    }
}
