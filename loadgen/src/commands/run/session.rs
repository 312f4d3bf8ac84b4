//! A live run: the sampler started (its baseline first), then the load, and
//! the progress line; [`Session::wait`] lets both run their course,
//! [`Session::stop`] ends them early (`loadgen oom`, at the kill). With
//! `--until-verdict` the stopping rule watches every sample and ends both
//! itself when the evidence is decisive ([`super::until_verdict`]).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use leaklab_model::run::Sample;
use tokio::sync::mpsc::UnboundedSender;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::plan::RunPlan;
use super::prepare::Prepared;
use super::until_verdict::{self, UntilVerdict};
use crate::engine::{self, LoadConfig, LoadStats, Progress};
use crate::judging::stopping::StopRule;
use crate::sampling::{self, CgroupProbe, SampleLog, SamplerConfig, Shared};
use crate::target::spawn::ExitProbe;

/// The sampler runs this long past the load, for the cool-down.
const COOLDOWN: Duration = Duration::from_millis(500);

/// What a caller adds to a session.
#[derive(Default)]
pub struct Hooks {
    /// Told the instant the load starts (sample time 0), for callers that act
    /// on the target during the run (`loadgen canary`'s toggles).
    pub started: Option<oneshot::Sender<Instant>>,
    /// The target's exit, when the caller started it (else the plan's child).
    pub exit_probe: Option<ExitProbe>,
    /// A cgroup the caller made, read instead of the pid's.
    pub cgroup_probe: Option<CgroupProbe>,
    /// Every sample as it is taken.
    pub tap: Option<UnboundedSender<Sample>>,
    /// The caller watches the target's death itself: the sampler samples on.
    pub own_death_watch: bool,
}

/// A run in progress. Its tasks are owned here: [`Session::wait`] and
/// [`Session::stop`] join or abort every one.
pub struct Session {
    pub progress: Arc<Progress>,
    pub shared: Arc<Shared>,
    /// Sample time 0: when the load started.
    pub start: Instant,
    load: JoinHandle<Result<LoadStats>>,
    sampler: JoinHandle<Result<SampleLog>>,
    cancel: CancellationToken,
    printer: Option<JoinHandle<()>>,
    ctrl_c: JoinHandle<()>,
    stop_at: Duration,
    /// With `--until-verdict`: the stopping rule's state, and its task.
    pub until_verdict: Option<Arc<UntilVerdict>>,
    watcher: Option<JoinHandle<()>>,
    /// Carries a caller's stop to the load (see [`RunPlan::stop`]).
    linker: Option<JoinHandle<()>>,
}

impl Session {
    /// Starts sampling now and the load after the plan's baseline; returns
    /// once the load has started.
    pub async fn start(plan: &RunPlan, p: &Prepared, hooks: Hooks) -> Session {
        let progress = Arc::new(Progress::default());
        let shared = Arc::new(Shared::default());
        let start = Instant::now() + plan.baseline;
        if let Some(tx) = hooks.started {
            // The caller may have given up waiting; the run goes on regardless.
            let _ = tx.send(start);
        }
        // A caller's stop cancels this run's token (a child of it) and, by
        // the linker below, tells the load to stop.
        let cancel = plan
            .stop
            .as_ref()
            .map(CancellationToken::child_token)
            .unwrap_or_default();
        let linker = plan.stop.is_some().then(|| {
            let (cancel, progress) = (cancel.clone(), progress.clone());
            // Ends when the run's token is cancelled, or aborted with the run.
            tokio::spawn(async move {
                cancel.cancelled().await;
                progress.stop.store(true, Ordering::Relaxed);
            })
        });
        let stop_at = plan.duration + COOLDOWN;
        // With --until-verdict the sampler's tap feeds the stopping rule,
        // which passes every sample on to the caller's tap.
        let (tap, until_verdict, watcher) = if plan.until_verdict {
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            let status = Arc::new(UntilVerdict::default());
            let rule = StopRule::new(plan.warmup, plan.duration, p.catalogue.clone(), plan.limit);
            let watcher = until_verdict::spawn(
                rule,
                rx,
                hooks.tap,
                status.clone(),
                progress.clone(),
                cancel.clone(),
            );
            (Some(tx), Some(status), Some(watcher))
        } else {
            (hooks.tap, None, None)
        };
        let cfg = SamplerConfig {
            pid: p.pid,
            samples_path: plan.out.as_ref().map(|d| d.join("samples.jsonl")),
            exit_probe: hooks
                .exit_probe
                .or_else(|| p.service.as_ref().map(|s| s.exit_probe())),
            cgroup_probe: hooks.cgroup_probe,
            watch_death: !hooks.own_death_watch,
            tap,
            cancel: cancel.clone(),
            external: p.external,
            metrics: p.metrics.clone(),
            ..SamplerConfig::new(plan.sample_interval, plan.warmup, plan.duration)
        };
        let sampler = tokio::spawn(sampling::run(
            p.control.clone(),
            cfg,
            progress.clone(),
            shared.clone(),
            start,
            stop_at,
        ));
        let printer = if plan.tui && super::tui::available() {
            Some(tokio::spawn(super::tui::live(
                progress.clone(),
                shared.clone(),
                until_verdict.clone(),
                (start, plan.duration, plan.warmup),
                format!("{} against {}", plan.workload.label(), p.target.base),
            )))
        } else {
            (!plan.quiet).then(|| {
                tokio::spawn(super::progress::progress_line(
                    progress.clone(),
                    shared.clone(),
                    until_verdict.clone(),
                    start,
                    plan.duration,
                ))
            })
        };
        tokio::time::sleep_until(start).await;
        let ctrl_c = {
            let progress = progress.clone();
            tokio::spawn(async move {
                if tokio::signal::ctrl_c().await.is_ok() {
                    progress.stop.store(true, Ordering::Relaxed);
                }
            })
        };
        let load = tokio::spawn({
            let (cfg, units, progress) = (load_config(plan, p), p.units.clone(), progress.clone());
            async move { engine::drive(&cfg, Arc::new(units), progress, start).await }
        });
        Session {
            progress,
            shared,
            start,
            load,
            sampler,
            cancel,
            printer,
            ctrl_c,
            stop_at,
            until_verdict,
            watcher,
            linker,
        }
    }

    /// Lets the load run its course, then the sampler its cool-down.
    pub async fn wait(mut self) -> Result<(LoadStats, SampleLog)> {
        let stats = (&mut self.load).await.context("the load task")?;
        let stats = match stats {
            Ok(stats) => stats,
            Err(e) => {
                self.end_helpers();
                self.sampler.abort();
                return Err(e);
            }
        };
        let within = self.stop_at + Duration::from_secs(15);
        let log = tokio::time::timeout(within, &mut self.sampler)
            .await
            .context("the memory sampler did not finish")?
            .context("memory sampler")??;
        // The sampler has dropped its tap: the rule sees its last samples and ends.
        if let Some(watcher) = self.watcher.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), watcher).await;
        }
        self.end_helpers();
        Ok((stats, log))
    }

    /// Stops the load and the sampler now; the load's tally when it ended
    /// within 10 s.
    pub async fn stop(self) -> (Option<LoadStats>, Result<SampleLog>) {
        self.progress.stop.store(true, Ordering::Relaxed);
        self.cancel.cancel();
        self.end_helpers();
        let stats = tokio::time::timeout(Duration::from_secs(10), self.load)
            .await
            .ok()
            .and_then(|r| r.ok())
            .and_then(|r| r.ok());
        let log = match self.sampler.await {
            Ok(log) => log,
            Err(e) => Err(anyhow::anyhow!("memory sampler: {e}")),
        };
        (stats, log)
    }

    fn end_helpers(&self) {
        self.ctrl_c.abort();
        for h in self.printer.iter().chain(&self.watcher).chain(&self.linker) {
            h.abort();
        }
    }
}

/// The engine's configuration for a plan.
fn load_config(plan: &RunPlan, p: &Prepared) -> LoadConfig {
    let key_prefix = format!(
        "lg{:x}{:x}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    );
    LoadConfig {
        target: p.target.clone(),
        rate: p.rate,
        duration: plan.duration,
        ramp: plan.ramp,
        connections: plan.connections,
        max_in_flight: plan.max_in_flight.max(1),
        max_lag: plan.max_lag,
        key_prefix,
        max_units: plan.max_requests,
        per_unit_cap: p.caps.clone(),
    }
}
