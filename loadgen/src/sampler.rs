//! Memory sampling: `/debug/memory` at a fixed interval, plus independent
//! `/proc/<pid>` and cgroup reads when the target's pid is known, so the
//! verdict does not rest on the target's word alone.
//!
//! Every sample is appended to `samples.jsonl` as it arrives (one flush per
//! line), so a crash of the target or of loadgen loses nothing already seen.
//! The in-memory copy is thinned (every other sample dropped) when it reaches
//! [`MAX_KEPT`], so memory stays bounded for any run length. The sampler also
//! notices the target dying and records when and why.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use leaklab_probe::Pid;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::load::Progress;
use crate::target::{Control, ControlError};

/// Samples kept in memory at most; older ones are thinned, not dropped wholesale.
pub const MAX_KEPT: usize = 4096;
/// Consecutive failed reads of a live-but-silent target before it is called dead.
const SILENT_LIMIT: Duration = Duration::from_secs(10);

/// Where in the run a sample was taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Before the load starts: the floor.
    Baseline,
    Warmup,
    Measure,
    /// After the load ended.
    Cooldown,
}

/// The target's own report (`/debug/memory`), the fields loadgen uses.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TargetMemory {
    #[serde(default)]
    pub allocated: u64,
    #[serde(default)]
    pub active: u64,
    #[serde(default)]
    pub resident: u64,
    #[serde(default)]
    pub mapped: u64,
    #[serde(default)]
    pub retained: u64,
    #[serde(default)]
    pub rss: u64,
    #[serde(default)]
    pub alive_tasks: u64,
    #[serde(default)]
    pub open_fds: u64,
    #[serde(default)]
    pub maps: u64,
    #[serde(default)]
    pub components: BTreeMap<String, u64>,
    #[serde(default)]
    pub cgroup: Option<CgroupReading>,
    #[serde(default)]
    pub pid: Option<u32>,
    #[serde(default)]
    pub leak_budget_bytes: Option<u64>,
}

/// A cgroup's memory, from the target or read independently.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CgroupReading {
    #[serde(default)]
    pub limit: Option<u64>,
    #[serde(default)]
    pub usage: u64,
    #[serde(default)]
    pub oom_kills: Option<u64>,
}

/// Independent `/proc/<pid>` numbers.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ProcReading {
    pub rss: u64,
    pub open_fds: u64,
    pub maps: u64,
}

/// One sample: one line of `samples.jsonl`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Seconds since the load started (negative in the baseline).
    pub t: f64,
    pub phase: Phase,
    /// Triggering requests completed so far.
    pub requests: u64,
    /// Triggering requests sent and not yet answered.
    #[serde(default)]
    pub in_flight: u64,
    #[serde(default)]
    pub memory: Option<TargetMemory>,
    #[serde(default)]
    pub proc: Option<ProcReading>,
    #[serde(default)]
    pub cgroup: Option<CgroupReading>,
    /// Why `memory` is missing, when it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Sample {
    /// RSS: the independent `/proc` reading when there is one, else the target's.
    pub fn rss(&self) -> Option<u64> {
        self.proc
            .as_ref()
            .map(|p| p.rss)
            .or_else(|| self.memory.as_ref().map(|m| m.rss))
    }

    /// The cgroup limit, independent reading first.
    pub fn cgroup_limit(&self) -> Option<u64> {
        self.cgroup
            .as_ref()
            .and_then(|c| c.limit)
            .or_else(|| self.memory.as_ref()?.cgroup.as_ref()?.limit)
    }
}

/// When and why the target stopped answering.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TargetDied {
    pub at_s: f64,
    pub reason: String,
}

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

/// Tells whether a started child has exited, and how.
pub type ExitProbe = Arc<dyn Fn() -> Option<String> + Send + Sync>;

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
}

/// State shared with the progress line and the run.
#[derive(Default)]
pub struct Shared {
    pub latest: Mutex<Option<Sample>>,
    pub died: Mutex<Option<TargetDied>>,
}

/// Takes one sample now.
pub async fn take(
    control: &Control,
    pid: Option<u32>,
    t: f64,
    phase: Phase,
    requests: u64,
    in_flight: u64,
) -> Sample {
    let (memory, error) = match control.get_json::<TargetMemory>("/debug/memory").await {
        Ok(m) => (Some(m), None),
        Err(e) => (None, Some(e.to_string())),
    };
    let proc = pid.and_then(|pid| {
        let p = Pid::Of(pid);
        Some(ProcReading {
            rss: leaklab_probe::rss_bytes(p).ok()?,
            open_fds: leaklab_probe::open_fds(p).unwrap_or(0),
            maps: leaklab_probe::map_count(p).unwrap_or(0),
        })
    });
    let cgroup = pid
        .and_then(|pid| leaklab_probe::cgroup_memory(Pid::Of(pid)))
        .map(|c| CgroupReading {
            limit: c.limit,
            usage: c.usage,
            oom_kills: c.oom_kills,
        });
    Sample {
        t,
        phase,
        requests,
        in_flight,
        memory,
        proc,
        cgroup,
        error,
    }
}

/// Samples until `stop_at` (time since `start`) or until the target dies.
/// `baseline` samples are taken before `start` by the caller's arrangement:
/// times before `start` get the baseline phase.
pub async fn run(
    control: Control,
    cfg: SamplerConfig,
    progress: Arc<Progress>,
    shared: Arc<Shared>,
    start: Instant,
    stop_at: Duration,
) -> Result<SampleLog> {
    let mut file = match &cfg.samples_path {
        Some(p) => Some(open_samples(p)?),
        None => None,
    };
    let mut log = SampleLog::default();
    let mut ticker = tokio::time::interval(cfg.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut silent_since: Option<Instant> = None;
    let first_oom_kills = cfg
        .pid
        .and_then(|p| leaklab_probe::cgroup_memory(Pid::Of(p))?.oom_kills);
    // Bounded by time: ends at `stop_at` after the start, or on death.
    loop {
        ticker.tick().await;
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
        let sample = take(&control, cfg.pid, t, phase, requests, in_flight).await;
        let unreachable = sample.memory.is_none();
        if let Some(f) = file.as_mut() {
            serde_json::to_writer(&mut *f, &sample)?;
            f.write_all(b"\n")?;
            f.flush()?;
        }
        *shared.latest.lock().unwrap_or_else(|p| p.into_inner()) = Some(sample.clone());
        log.push(sample);

        if unreachable {
            let since = *silent_since.get_or_insert(now);
            if let Some(reason) =
                death_reason(&cfg, first_oom_kills, now.duration_since(since), &progress)
            {
                *shared.died.lock().unwrap_or_else(|p| p.into_inner()) = Some(TargetDied {
                    at_s: signed_secs(since, start).max(0.0),
                    reason,
                });
                progress.stop.store(true, Ordering::Relaxed);
                break;
            }
        } else {
            silent_since = None;
        }
    }
    Ok(log)
}

fn open_samples(path: &Path) -> Result<BufWriter<File>> {
    let f = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    Ok(BufWriter::new(f))
}

fn signed_secs(at: Instant, start: Instant) -> f64 {
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

/// Whether an unreachable target is dead, and why.
fn death_reason(
    cfg: &SamplerConfig,
    first_oom_kills: Option<u64>,
    silent_for: Duration,
    progress: &Progress,
) -> Option<String> {
    if let Some(exit) = cfg.exit_probe.as_ref().and_then(|p| p()) {
        return Some(exit);
    }
    if let Some(pid) = cfg.pid {
        if !leaklab_probe::is_alive(pid) {
            let oom = leaklab_probe::cgroup_memory(Pid::Of(pid))
                .and_then(|c| c.oom_kills)
                .zip(first_oom_kills)
                .is_some_and(|(now, before)| now > before);
            return Some(if oom {
                format!("pid {pid} is gone; its cgroup counted an OOM kill")
            } else {
                format!("pid {pid} is gone")
            });
        }
        return (silent_for >= SILENT_LIMIT)
            .then(|| format!("pid {pid} alive but unresponsive for {silent_for:?}"));
    }
    // No pid: a refused connection twice over a second is death.
    let refused = progress.refused.load(Ordering::Relaxed) > 0;
    (silent_for >= Duration::from_secs(1) && refused || silent_for >= SILENT_LIMIT).then(|| {
        let last = progress
            .last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .unwrap_or_else(|| "no answer from /debug/memory".into());
        format!("target unreachable: {last}")
    })
}

/// Reads a `samples.jsonl` file (every line one [`Sample`]).
pub fn read_samples(path: &Path) -> Result<Vec<Sample>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str(l).with_context(|| format!("{}:{}", path.display(), i + 1))
        })
        .collect()
}

/// Whether a control error means the target is not there at all.
pub fn is_unreachable(e: &ControlError) -> bool {
    matches!(
        e,
        ControlError::Unreachable(_) | ControlError::Timeout { .. }
    )
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
