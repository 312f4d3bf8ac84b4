//! The sampling stage: `/debug/memory` at a fixed interval, plus independent
//! `/proc/<pid>` and cgroup reads when the target's pid is known, so the
//! verdict does not rest on the target's word alone.
//!
//! Every sample is appended to `samples.jsonl` as it arrives (one flush per
//! line, see [`jsonl`]), so a crash of the target or of loadgen loses nothing
//! already seen. The in-memory copy is thinned (every other sample dropped)
//! when it reaches [`MAX_KEPT`], so memory stays bounded for any run length.
//! The sampler also notices the target dying and records when and why
//! ([`death`]); a caller that watches the target itself (`loadgen oom`) turns
//! that off and reads every sample from a tap instead.

pub mod death;
pub mod jsonl;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use leaklab_model::run::{CgroupReading, Phase, ProcReading, Sample, TargetDied};
use leaklab_probe::Pid;
use tokio::sync::mpsc::UnboundedSender;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::engine::Progress;
use crate::target::metrics::MetricsSource;
use crate::target::spawn::ExitProbe;
use crate::target::Control;

pub use jsonl::read_samples;

/// Samples kept in memory at most; older ones are thinned, not dropped wholesale.
pub const MAX_KEPT: usize = 4096;

/// Reads a cgroup's memory now (a cgroup loadgen made, rather than the pid's).
pub type CgroupProbe = Arc<dyn Fn() -> Option<CgroupReading> + Send + Sync>;

/// Samples kept in memory, thinned when full.
#[derive(Debug, Default)]
pub struct SampleLog {
    pub samples: Vec<Sample>,
    /// How many samples were taken in all (the file has every one).
    pub taken: u64,
}

impl SampleLog {
    fn push(&mut self, s: Sample) {
        self.taken += 1;
        if self.samples.len() >= MAX_KEPT {
            // Keep baseline samples; drop every other one of the rest.
            let mut i = 0usize;
            self.samples.retain(|x| {
                i += 1;
                x.phase == Phase::Baseline || i % 2 == 0
            });
        }
        self.samples.push(s);
    }
}

/// What the sampler needs.
pub struct SamplerConfig {
    pub interval: Duration,
    /// Target pid for `/proc` reads (`--pid`, the spawned child, or reported
    /// by the target itself when it runs on this host).
    pub pid: Option<u32>,
    pub warmup: Duration,
    pub duration: Duration,
    /// Where to append `samples.jsonl`, if anywhere.
    pub samples_path: Option<std::path::PathBuf>,
    pub exit_probe: Option<ExitProbe>,
    /// The cgroup to read instead of the pid's, when the caller made one.
    pub cgroup_probe: Option<CgroupProbe>,
    /// Call an unreachable target dead and stop the load (a run); off when
    /// the caller watches the target itself and wants every sample.
    pub watch_death: bool,
    /// Every sample is also sent here, as it is taken (unbounded: one small
    /// struct per interval, drained by the caller's loop).
    pub tap: Option<UnboundedSender<Sample>>,
    /// Ends the sampling early; the log so far is returned.
    pub cancel: CancellationToken,
    /// The target is not a leaklab service: no `/debug/memory` to read; it
    /// is alive while its pid is (or its exposition answers).
    pub external: bool,
    /// A Prometheus exposition sampled with every sample.
    pub metrics: Option<MetricsSource>,
}

impl SamplerConfig {
    /// Sampling every `interval` over a run of `duration` (`warmup` of it
    /// warm-up), death watched, nothing written, no tap.
    pub fn new(interval: Duration, warmup: Duration, duration: Duration) -> SamplerConfig {
        SamplerConfig {
            interval,
            pid: None,
            warmup,
            duration,
            samples_path: None,
            exit_probe: None,
            cgroup_probe: None,
            watch_death: true,
            tap: None,
            cancel: CancellationToken::new(),
            external: false,
            metrics: None,
        }
    }
}

/// State shared with the progress line and the run.
#[derive(Default)]
pub struct Shared {
    /// The newest sample (the progress line shows it).
    pub latest: Mutex<Option<Sample>>,
    /// Set once when the target is judged dead.
    pub died: Mutex<Option<TargetDied>>,
}

impl Shared {
    /// The death recorded, if any.
    pub fn died(&self) -> Option<TargetDied> {
        self.died.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The newest sample, if any.
    pub fn latest(&self) -> Option<Sample> {
        self.latest
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// A probe's cgroup reading as a sample records it.
pub fn cgroup_reading(m: leaklab_probe::CgroupMemory) -> CgroupReading {
    CgroupReading {
        limit: m.limit,
        usage: m.usage,
        oom_kills: m.oom_kills,
    }
}

/// Takes one sample now: the independent readings first (at the sample's
/// time), then the target's own view, which may take a while when the
/// target is short of memory.
pub async fn take(
    control: &Control,
    cfg: &SamplerConfig,
    t: f64,
    phase: Phase,
    requests: u64,
    in_flight: u64,
) -> Sample {
    let pid = cfg.pid;
    let proc = pid.and_then(|pid| {
        let p = Pid::Of(pid);
        Some(ProcReading {
            rss: leaklab_probe::rss_bytes(p).ok()?,
            open_fds: leaklab_probe::open_fds(p).unwrap_or(0),
            maps: leaklab_probe::map_count(p).unwrap_or(0),
        })
    });
    let cgroup = cfg
        .cgroup_probe
        .as_ref()
        .and_then(|probe| probe())
        .or_else(|| {
            pid.and_then(|pid| leaklab_probe::cgroup_memory(Pid::Of(pid)))
                .map(cgroup_reading)
        });
    let (metrics, metrics_error) = match &cfg.metrics {
        Some(source) => match source.scrape().await {
            Ok(m) => (Some(m), None),
            Err(e) => (None, Some(format!("{}: {e}", source.url))),
        },
        None => (None, None),
    };
    let (memory, error) = if cfg.external {
        (None, metrics_error)
    } else {
        match control.memory().await {
            Ok(m) => (Some(m), None),
            Err(e) => (None, Some(e.to_string())),
        }
    };
    Sample {
        t,
        phase,
        requests,
        in_flight,
        memory,
        proc,
        cgroup,
        metrics,
        error,
    }
}

/// Samples until `stop_at` (time since `start`), until cancelled, or until
/// the target dies. Times before `start` get the baseline phase: the caller
/// starts the sampler early to measure the floor.
pub async fn run(
    control: Control,
    cfg: SamplerConfig,
    progress: Arc<Progress>,
    shared: Arc<Shared>,
    start: Instant,
    stop_at: Duration,
) -> Result<SampleLog> {
    let mut file = match &cfg.samples_path {
        Some(p) => Some(jsonl::create(p)?),
        None => None,
    };
    let mut log = SampleLog::default();
    let mut ticker = tokio::time::interval(cfg.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut watch = death::Watch::new(&cfg);
    // Bounded by time: ends at `stop_at` after the start, on cancel, or on death.
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = cfg.cancel.cancelled() => break,
        }
        let now = Instant::now();
        let t = signed_secs(now, start);
        if t > stop_at.as_secs_f64() {
            break;
        }
        let phase = phase_at(t, cfg.warmup, cfg.duration);
        let requests = progress.units_done.load(Ordering::Relaxed);
        let in_flight = progress
            .sent
            .load(Ordering::Relaxed)
            .saturating_sub(requests);
        let sample = take(&control, &cfg, t, phase, requests, in_flight).await;
        let unreachable = if cfg.external {
            // Outside view only: gone when its pid is, or when its exposition
            // (the only thing read from it) stops answering.
            cfg.pid.is_some_and(|p| !leaklab_probe::is_alive(p))
                || (cfg.pid.is_none() && sample.metrics.is_none())
        } else {
            sample.memory.is_none()
        };
        if let Some(f) = file.as_mut() {
            jsonl::append(f, &sample)?;
        }
        if let Some(tap) = &cfg.tap {
            // The receiver may have stopped listening; sampling goes on.
            let _ = tap.send(sample.clone());
        }
        *shared.latest.lock().unwrap_or_else(|p| p.into_inner()) = Some(sample.clone());
        log.push(sample);
        if !cfg.watch_death {
            continue;
        }
        if let Some(died) = watch.observe(&cfg, unreachable, now, start, &progress) {
            *shared.died.lock().unwrap_or_else(|p| p.into_inner()) = Some(died);
            progress.stop.store(true, Ordering::Relaxed);
            break;
        }
    }
    Ok(log)
}

/// Seconds from `start` to `at`, negative before it.
pub fn signed_secs(at: Instant, start: Instant) -> f64 {
    if at >= start {
        at.duration_since(start).as_secs_f64()
    } else {
        -start.duration_since(at).as_secs_f64()
    }
}

/// The phase of a sample taken `t` seconds after the load started.
pub fn phase_at(t: f64, warmup: Duration, duration: Duration) -> Phase {
    if t < 0.0 {
        Phase::Baseline
    } else if t < warmup.as_secs_f64() {
        Phase::Warmup
    } else if t <= duration.as_secs_f64() {
        Phase::Measure
    } else {
        Phase::Cooldown
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(t: f64, phase: Phase) -> Sample {
        Sample {
            t,
            phase,
            requests: 0,
            in_flight: 0,
            memory: None,
            proc: None,
            cgroup: None,
            metrics: None,
            error: None,
        }
    }

    #[test]
    fn the_log_thins_but_keeps_the_baseline_and_the_newest() {
        let mut log = SampleLog::default();
        log.push(sample(-1.0, Phase::Baseline));
        for i in 0..(3 * MAX_KEPT) {
            log.push(sample(i as f64, Phase::Measure));
        }
        assert!(log.samples.len() <= MAX_KEPT);
        assert_eq!(log.samples[0].phase, Phase::Baseline);
        assert_eq!(log.samples.last().unwrap().t, (3 * MAX_KEPT - 1) as f64);
        assert_eq!(log.taken, 3 * MAX_KEPT as u64 + 1);
    }

    #[test]
    fn phases_follow_the_clock() {
        let (w, d) = (Duration::from_secs(5), Duration::from_secs(20));
        assert_eq!(phase_at(-0.5, w, d), Phase::Baseline);
        assert_eq!(phase_at(1.0, w, d), Phase::Warmup);
        assert_eq!(phase_at(5.0, w, d), Phase::Measure);
        assert_eq!(phase_at(20.5, w, d), Phase::Cooldown);
    }
}
