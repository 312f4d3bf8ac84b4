//! The canary's two sides: started as children or given as URLs, told
//! apart in the progress line, and the canary's toggles applied on time.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use leaklab_model::canary::ToggleDone;
use tokio::time::Instant;

use super::{CanaryOpts, ToggleArg};
use crate::errors::{find_scenario, UsageError};
use crate::human::human_bytes;
use crate::target::spawn::{self, Launch, Service};
use crate::target::Control;

/// The baseline (0) and the canary (1).
pub(super) struct Sides {
    pub urls: [String; 2],
    pub pids: [Option<u32>; 2],
    /// Where each side's run writes.
    pub dirs: [PathBuf; 2],
    /// The children started for `--spawn`, stopped by [`Sides::stop`].
    services: Vec<Service>,
}

impl Sides {
    /// Two children of ours (`--spawn`), or the URLs given.
    pub async fn start(opts: &CanaryOpts) -> Result<Sides> {
        let dirs = [opts.out.join("baseline"), opts.out.join("canary")];
        if !opts.spawn {
            let (Some(b), Some(c)) = (&opts.baseline, &opts.canary) else {
                return Err(
                    UsageError("give --baseline URL and --canary URL, or --spawn".into()).into(),
                );
            };
            return Ok(Sides {
                urls: [b.clone(), c.clone()],
                pids: [opts.baseline_pid, opts.canary_pid],
                dirs,
                services: Vec::new(),
            });
        }
        let known = spawn::catalogue().await?;
        for id in &opts.canary_leaks {
            find_scenario(&known, id)?;
        }
        let token = opts.access.token.as_deref();
        let b = Launch::new()
            .admin_token(token)
            .log(opts.out.join("baseline-service.log"))
            .start()
            .await?;
        let c = Launch::new()
            .admin_token(token)
            .leaks(opts.canary_leaks.iter().cloned())
            .log(opts.out.join("canary-service.log"))
            .start()
            .await?;
        Ok(Sides {
            urls: [b.url.clone(), c.url.clone()],
            pids: [Some(b.pid), Some(c.pid)],
            dirs,
            services: vec![b, c],
        })
    }

    /// Stops the children (when there are any); the rest stays for the report.
    pub fn stop(mut self) -> Sides {
        self.services.clear();
        self
    }

    /// What is about to run, on stderr.
    pub fn announce(&self, opts: &CanaryOpts, toggles: &[ToggleArg]) {
        let pid = |p: Option<u32>| p.map(|p| format!(" (pid {p})")).unwrap_or_default();
        eprintln!(
            "loadgen canary: {} on both sides for {:.0} s ({:.0} s warm-up)\n  baseline {}{}\n  canary   {}{}",
            opts.scenario,
            opts.duration.as_secs_f64(),
            opts.warmup.as_secs_f64(),
            self.urls[0],
            pid(self.pids[0]),
            self.urls[1],
            pid(self.pids[1]),
        );
        for t in toggles {
            eprintln!(
                "  toggle: {} {} on the canary at {:.0} s",
                t.id,
                if t.enabled { "on" } else { "off" },
                t.at.as_secs_f64()
            );
        }
    }
}

/// Applies each toggle at its time after the canary's load starts.
pub(super) async fn apply_toggles(
    canary: Control,
    toggles: Vec<ToggleArg>,
    started: tokio::sync::oneshot::Receiver<Instant>,
    quiet: bool,
) -> Vec<ToggleDone> {
    let Ok(start) = started.await else {
        // The run failed before its load started: nothing was applied.
        return toggles
            .into_iter()
            .map(|toggle| ToggleDone {
                toggle: toggle.to_model(),
                applied_at_s: None,
                error: Some("the canary's run did not start".into()),
            })
            .collect();
    };
    let mut done = Vec::new();
    for toggle in toggles {
        tokio::time::sleep_until(start + toggle.at).await;
        let result = canary.set_flag(&toggle.id, toggle.enabled).await;
        let at = start.elapsed().as_secs_f64();
        if !quiet {
            match &result {
                Ok(()) => eprintln!(
                    "[{at:>4.0}s] canary: {} {}",
                    toggle.id,
                    if toggle.enabled { "on" } else { "off" }
                ),
                Err(e) => eprintln!("[{at:>4.0}s] canary: toggle {} failed: {e:#}", toggle.id),
            }
        }
        done.push(ToggleDone {
            applied_at_s: result.is_ok().then_some(at),
            error: result.err().map(|e| format!("{e:#}")),
            toggle: toggle.to_model(),
        });
    }
    done
}

/// Every 2 s on stderr: both sides' heap, RSS and tasks.
pub(super) fn progress_line(
    sides: &Sides,
    opts: &CanaryOpts,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let controls: Vec<Control> = sides
        .urls
        .iter()
        .filter_map(|u| opts.access.target(u).ok())
        .map(|t| Control::new(&t))
        .collect();
    let duration = opts.duration;
    async move {
        let start = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_secs(2));
        tick.tick().await;
        // Bounded by the run's length (and aborted when the runs end).
        for _ in 0..duration.as_secs() / 2 + 15 {
            tick.tick().await;
            let mut line = format!("[{:>4.0}s]", start.elapsed().as_secs_f64());
            for (name, c) in ["baseline", "canary"].iter().zip(&controls) {
                match c.memory().await {
                    Ok(m) => line.push_str(&format!(
                        "  {name}: allocated {} rss {} tasks {}",
                        human_bytes(m.allocated as f64),
                        human_bytes(m.rss as f64),
                        m.alive_tasks
                    )),
                    Err(e) => line.push_str(&format!("  {name}: {e}")),
                }
            }
            eprintln!("{line}");
        }
    }
}
