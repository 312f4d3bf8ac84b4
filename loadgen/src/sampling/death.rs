//! Target death, seen from the sampler: the child's exit, a pid that is
//! gone (with an OOM kill when its cgroup counted one), a live pid silent
//! for [`SILENT_LIMIT`], or, without a pid, refused connections.

use std::sync::atomic::Ordering;
use std::time::Duration;

use leaklab_model::run::TargetDied;
use leaklab_probe::Pid;
use tokio::time::Instant;

use super::{signed_secs, SamplerConfig};
use crate::engine::Progress;

/// Consecutive failed reads of a live-but-silent target before it is called dead.
const SILENT_LIMIT: Duration = Duration::from_secs(10);

/// What the sampler remembers between samples to judge death.
pub(super) struct Watch {
    /// The first of the current run of unanswered samples.
    silent_since: Option<Instant>,
    /// The cgroup's OOM kills when sampling began.
    first_oom_kills: Option<u64>,
}

impl Watch {
    pub(super) fn new(cfg: &SamplerConfig) -> Watch {
        Watch {
            silent_since: None,
            first_oom_kills: cfg
                .pid
                .and_then(|p| leaklab_probe::cgroup_memory(Pid::Of(p))?.oom_kills),
        }
    }

    /// After a sample taken at `now`: the death, once the target is dead.
    pub(super) fn observe(
        &mut self,
        cfg: &SamplerConfig,
        unreachable: bool,
        now: Instant,
        start: Instant,
        progress: &Progress,
    ) -> Option<TargetDied> {
        if !unreachable {
            self.silent_since = None;
            return None;
        }
        let since = *self.silent_since.get_or_insert(now);
        let reason = death_reason(
            cfg,
            self.first_oom_kills,
            now.duration_since(since),
            progress,
        )?;
        Some(TargetDied {
            at_s: signed_secs(since, start).max(0.0),
            reason,
        })
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
