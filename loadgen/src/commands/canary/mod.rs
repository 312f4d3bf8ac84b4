//! `loadgen canary`: a baseline and a canary of the same service under
//! identical load, side by side, with flag toggles on the canary at set
//! times. This is the canary flag-toggle exercise: turn a leak's flag on in
//! the canary (a bad change rolling out), see the canary's memory part from
//! the baseline's, turn it off again (the rollback) and see it stop.
//!
//! ```text
//! loadgen canary --spawn                                      # two local services; unbounded-cache on in the canary at the end of warm-up
//! loadgen canary --spawn --toggle task-leak@20 --toggle task-leak=off@60
//! loadgen canary --spawn --until-verdict --scenario task-leak --toggle task-leak@10 --warmup 10s   # stops once decided
//! loadgen canary --baseline http://127.0.0.1:8081 --canary http://127.0.0.1:8082   # compose's canary pair
//! loadgen canary --prometheus http://127.0.0.1:9090 --baseline-query 'process_resident_memory_bytes{role="baseline"}' --canary-query 'process_resident_memory_bytes{role="canary"}' --since 5m
//! ```
//!
//! Both sides get the same run plan (workload, rate, duration, warm-up),
//! run concurrently through [`run::execute_with`]. Each side is then judged
//! again over the same comparison window: after the warm-up, or after the
//! last toggle plus `--settle` when that is later, so the canary is judged on
//! how it behaves with its final flags. The canary regresses when its
//! verdict is a leak and the slope of the finding's signal is above the
//! baseline's (and above zero) with the two 95% intervals apart. Exit 3 then, 0 when it does
//! not, 1 when a side could not be measured, 2 on bad usage.

mod prom;
mod sides;
mod until;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use leaklab_model::canary::{CanaryReport, Side, Toggle, ToggleDone, SCHEMA};
use leaklab_model::run::{Phase, Sample};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::args::{parse_bytes, parse_duration, parse_rate, RateArg};
use crate::commands::run::{self, Hooks, RunOutcome, RunPlan, Workload};
use crate::errors::{exit, find_scenario, UsageError};
use crate::judging::{self, canary::windowed};
use crate::reports;
use crate::target::{AccessOpts, Control};

use sides::Sides;

/// Options of `loadgen canary`.
#[derive(Args, Clone, Debug)]
pub struct CanaryOpts {
    /// The baseline service (the release, or the flags, running now).
    #[arg(long, required_unless_present_any = ["spawn", "prometheus"], conflicts_with = "spawn")]
    pub baseline: Option<String>,
    /// The canary service: the same service with the change under test.
    #[arg(long, required_unless_present_any = ["spawn", "prometheus"], conflicts_with = "spawn")]
    pub canary: Option<String>,
    /// Judge the pair from this Prometheus server's series instead of
    /// driving load (with --baseline-query and --canary-query; --warmup
    /// and --limit apply).
    #[arg(long, value_name = "URL", conflicts_with_all = ["spawn", "baseline", "canary"], requires_all = ["baseline_query", "canary_query"])]
    pub prometheus: Option<String>,
    /// With --prometheus: the PromQL giving the baseline's one series, e.g.
    /// `process_resident_memory_bytes{role="baseline"}`.
    #[arg(long, value_name = "PROMQL", requires = "prometheus")]
    pub baseline_query: Option<String>,
    /// With --prometheus: the PromQL giving the canary's one series.
    #[arg(long, value_name = "PROMQL", requires = "prometheus")]
    pub canary_query: Option<String>,
    /// With --prometheus: how far back the range starts.
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    pub since: Duration,
    /// With --prometheus: resolution of the range query.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub step: Duration,
    /// Start both as leaklab-service children on free loopback ports, no leak
    /// on in either. Without --toggle or --canary-leak the canary gets
    /// `--toggle unbounded-cache@<warm-up>`.
    #[arg(long)]
    pub spawn: bool,
    /// With --spawn: a leak on in the canary from its start (repeatable).
    #[arg(long = "canary-leak", value_name = "ID", requires = "spawn")]
    pub canary_leaks: Vec<String>,
    /// Flip a flag on the canary during the run (repeatable): `ID@SECONDS`
    /// turns leak ID on SECONDS after the load starts, `ID=off@SECONDS` turns
    /// it off again (the rollback). Needs the canary's admin token if it has one.
    #[arg(long = "toggle", value_name = "ID[=on|off]@SECONDS", value_parser = parse_toggle)]
    pub toggles: Vec<ToggleArg>,
    /// The workload on both sides: `all` (a mixed load over every route; a
    /// change does not say where its leak is), one scenario id, or a comma list.
    #[arg(long, default_value = "all")]
    pub scenario: String,
    /// Triggering requests per second on each side (`auto`: as `loadgen run`).
    #[arg(long, default_value = "auto", value_parser = parse_rate)]
    pub rate: RateArg,
    /// Whole run length, warm-up included.
    #[arg(long, default_value = "90s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Warm-up excluded from the comparison.
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// After the last toggle, this long is left out of the comparison while
    /// the change takes hold.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub settle: Duration,
    /// The baseline's pid, for independent /proc reads (known with --spawn).
    #[arg(long)]
    pub baseline_pid: Option<u32>,
    /// The canary's pid, for independent /proc reads (known with --spawn).
    #[arg(long)]
    pub canary_pid: Option<u32>,
    /// Memory limit for time-to-OOM; default: each target's cgroup limit.
    #[arg(long, value_parser = parse_bytes)]
    pub limit: Option<u64>,
    #[command(flatten)]
    pub access: AccessOpts,
    /// Directory for canary.json, canary.svg and each side's run files.
    #[arg(long, default_value = "out/canary")]
    pub out: PathBuf,
    /// Stop both sides as soon as the pair is decided: the canary's
    /// sequential test (as `loadgen run --until-verdict`), watched from the
    /// comparison window's start, calls a climb the baseline does not share
    /// (a regression) or calls the canary flat; --duration is then the
    /// maximum.
    #[arg(long, conflicts_with = "prometheus")]
    pub until_verdict: bool,
    /// Print only the JSON report on stdout.
    #[arg(long)]
    pub json: bool,
}

/// `--toggle`: one flag change on the canary, `at` after the load starts.
#[derive(Clone, Debug, PartialEq)]
pub struct ToggleArg {
    pub id: String,
    pub enabled: bool,
    pub at: Duration,
}

impl ToggleArg {
    /// As `canary.json` records it.
    pub fn to_model(&self) -> Toggle {
        Toggle {
            id: self.id.clone(),
            enabled: self.enabled,
            at_s: self.at.as_secs_f64(),
        }
    }
}

/// Parses `ID@SECONDS`, `ID=on@SECONDS` or `ID=off@SECONDS` (`@30s`, `@1m` too).
pub fn parse_toggle(s: &str) -> Result<ToggleArg, String> {
    let (flag, at) = s
        .rsplit_once('@')
        .ok_or_else(|| format!("{s:?}: expected ID@SECONDS or ID=off@SECONDS"))?;
    let (id, enabled) = match flag.split_once('=') {
        None => (flag, true),
        Some((id, "on")) => (id, true),
        Some((id, "off")) => (id, false),
        Some((_, v)) => return Err(format!("{s:?}: {v:?} is neither on nor off")),
    };
    if id.is_empty() {
        return Err(format!("{s:?}: no scenario id before '@'"));
    }
    Ok(ToggleArg {
        id: id.to_string(),
        enabled,
        at: parse_duration(at)?,
    })
}

/// Runs the whole comparison; returns the exit code.
pub async fn execute(opts: &CanaryOpts) -> Result<u8> {
    if let Some(url) = &opts.prometheus {
        return prom::execute(opts, url).await;
    }
    let (toggles, mut notes) = toggles(opts)?;
    std::fs::create_dir_all(&opts.out)
        .with_context(|| format!("creating {}", opts.out.display()))?;
    let sides = Sides::start(opts).await?;
    let canary = check_canary(opts, &sides, &toggles).await?;
    if !opts.json {
        sides.announce(opts, &toggles);
    }
    let (tx, rx) = tokio::sync::oneshot::channel::<Instant>();
    let toggler = tokio::spawn(sides::apply_toggles(
        canary.control,
        toggles.clone(),
        rx,
        opts.json,
    ));
    let progress = (!opts.json).then(|| tokio::spawn(sides::progress_line(&sides, opts)));
    let mut plans = [side_plan(opts, &sides, 0), side_plan(opts, &sides, 1)];
    let mut hooks = [Hooks::default(), Hooks::default()];
    hooks[1].started = Some(tx);
    let watcher = opts.until_verdict.then(|| {
        let stop = CancellationToken::new();
        let (b_tx, b_rx) = tokio::sync::mpsc::unbounded_channel();
        let (c_tx, c_rx) = tokio::sync::mpsc::unbounded_channel();
        for (plan, (hook, tap)) in plans.iter_mut().zip(hooks.iter_mut().zip([b_tx, c_tx])) {
            *plan = plan.clone().stop_on(stop.clone());
            hook.tap = Some(tap);
        }
        let window = until::Window {
            from_s: window_start(opts, toggles.iter().map(|t| t.at.as_secs_f64())),
            duration: opts.duration,
            catalogue: canary.catalogue.clone(),
            limit: opts.limit,
            loud: !opts.json,
        };
        until::spawn(window, b_rx, c_rx, stop)
    });
    let [b_hooks, c_hooks] = hooks;
    let (b_run, c_run) = tokio::join!(
        run::execute_with(&plans[0], b_hooks),
        run::execute_with(&plans[1], c_hooks)
    );
    if let Some(p) = progress {
        p.abort();
    }
    let done = toggler.await.context("the toggle task")?;
    let watched = match watcher {
        Some(w) => Some(w.await.context("the --until-verdict task")?),
        None => None,
    };
    let sides = sides.stop();
    let runs = [
        b_run.context("the baseline's run")?,
        c_run.context("the canary's run")?,
    ];
    let call_at = watched
        .as_ref()
        .and_then(|w| w.call.as_ref())
        .map(|c| c.at_s);
    let mut report = compare(
        opts,
        &sides,
        &canary.catalogue,
        &runs,
        done,
        call_at,
        &mut notes,
    );
    if let Some(w) = watched {
        notes.extend(w.notes.iter().cloned());
        let last = report
            .toggles
            .iter()
            .filter_map(|d| d.applied_at_s)
            .fold(None, |m: Option<f64>, t| Some(m.map_or(t, |m| m.max(t))));
        report.sequential = Some(w.summary(opts.duration, last));
    }
    report.notes = notes;
    finish(opts, report, &runs)
}

/// The toggles to apply, sorted, after the usage checks; and the notes so far.
fn toggles(opts: &CanaryOpts) -> Result<(Vec<ToggleArg>, Vec<String>)> {
    if opts.warmup >= opts.duration {
        return Err(UsageError(format!(
            "--warmup ({:?}) must be shorter than --duration ({:?})",
            opts.warmup, opts.duration
        ))
        .into());
    }
    let mut toggles = opts.toggles.clone();
    let mut notes = Vec::new();
    if opts.spawn && toggles.is_empty() && opts.canary_leaks.is_empty() {
        toggles.push(ToggleArg {
            id: "unbounded-cache".into(),
            enabled: true,
            at: opts.warmup,
        });
        notes.push(format!(
            "no --toggle or --canary-leak given: the canary turned unbounded-cache on at {:.0} s",
            opts.warmup.as_secs_f64()
        ));
    }
    toggles.sort_by_key(|t| t.at);
    if let Some(t) = toggles.iter().find(|t| t.at >= opts.duration) {
        return Err(UsageError(format!(
            "--toggle {}@{:?} comes after the run ends (--duration {:?})",
            t.id, t.at, opts.duration
        ))
        .into());
    }
    Ok((toggles, notes))
}

/// The canary, ready, its catalogue read, the toggles' ids in it, and its
/// flags reachable when there are toggles to apply.
struct Canary {
    control: Control,
    catalogue: leaklab_model::Catalogue,
}

async fn check_canary(opts: &CanaryOpts, sides: &Sides, toggles: &[ToggleArg]) -> Result<Canary> {
    let canary_target = opts.access.target(&sides.urls[1])?;
    opts.access.target(&sides.urls[0])?;
    let control = Control::new(&canary_target);
    let ready_within = Duration::from_secs(if opts.spawn { 10 } else { 3 });
    control.wait_ready(ready_within).await?;
    let catalogue = control
        .catalogue()
        .await
        .context("reading the canary's catalogue")?;
    for t in toggles {
        find_scenario(&catalogue, &t.id)?;
    }
    if !toggles.is_empty() {
        // A wrong or missing token would only show at the first toggle, mid-run.
        control.get_text("/admin/flags").await.map_err(|e| {
            anyhow::anyhow!("the canary's /admin/flags: {e} (does it want --token?)")
        })?;
    }
    Ok(Canary { control, catalogue })
}

/// The run plan of side `i` (0 the baseline, 1 the canary): identical but
/// for the target.
fn side_plan(opts: &CanaryOpts, sides: &Sides, i: usize) -> RunPlan {
    RunPlan::against(
        &sides.urls[i],
        sides.pids[i],
        opts.access.clone(),
        Workload::parse(&opts.scenario),
    )
    .rate(opts.rate)
    .timing(opts.duration, opts.warmup)
    .limit(opts.limit)
    .out(&sides.dirs[i])
    .quiet(true)
}

/// Both sides judged again over the comparison window: after warm-up, or
/// after the last toggle has settled.
fn compare(
    opts: &CanaryOpts,
    sides: &Sides,
    catalogue: &leaklab_model::Catalogue,
    runs: &[RunOutcome; 2],
    done: Vec<ToggleDone>,
    call_at: Option<f64>,
    notes: &mut Vec<String>,
) -> CanaryReport {
    let from_s = window_start(opts, done.iter().filter_map(|d| d.applied_at_s));
    // Stopped on a decision: judged over the samples the decision saw.
    let to_s = call_at.unwrap_or(opts.duration.as_secs_f64());
    if call_at.is_none() && to_s - from_s < 15.0 {
        notes.push(format!(
            "the comparison window ({from_s:.0}–{to_s:.0} s) is short; toggle earlier or run longer for a firmer verdict"
        ));
    }
    let side = |i: usize| -> Side {
        let run = &runs[i];
        let taken: Vec<Sample> = run
            .samples
            .iter()
            .filter(|s| s.t <= to_s + 1e-9 || s.phase != Phase::Measure)
            .cloned()
            .collect();
        // Decided early: judged as the decision judged it, against the
        // comparison the runs could have had.
        let horizon = call_at.map(|_| opts.duration.as_secs_f64() - from_s);
        let judged =
            judging::judge_within(&windowed(&taken, from_s), catalogue, opts.limit, horizon);
        Side {
            target: sides.urls[i].clone(),
            pid: sides.pids[i],
            verdict: judged.verdict,
            signals: judged.signals,
            dir: sides.dirs[i].display().to_string(),
            died: run.summary.target_died.is_some(),
        }
    };
    let (baseline, canary) = (side(0), side(1));
    for (name, s) in ["baseline", "canary"].iter().zip(runs) {
        if let Some(d) = &s.summary.target_died {
            notes.push(format!("the {name} died at {:.1} s: {}", d.at_s, d.reason));
        }
        if s.summary.load.dropped > 0 {
            notes.push(format!(
                "{} of the {name}'s arrivals were dropped (not sent on time): the machine may be too busy for two sides at this rate",
                s.summary.load.dropped
            ));
        }
    }
    if done.iter().any(|d| d.error.is_some()) {
        notes.push("a toggle failed: see toggles[].error".into());
    }
    let compared = judging::canary::compare(&baseline.signals, &canary.signals);
    let verdict = judging::canary::judge(&baseline.verdict, &canary.verdict, &compared);
    CanaryReport {
        schema: SCHEMA.into(),
        scenario: opts.scenario.clone(),
        window_s: [from_s, to_s],
        toggles: done,
        baseline,
        canary,
        compared,
        verdict,
        plot: None,
        notes: Vec::new(),
        sequential: None,
    }
}

/// Where the comparison window opens: after the warm-up, or after the last
/// of `toggles` (seconds after the load started) has settled.
fn window_start(opts: &CanaryOpts, toggles: impl Iterator<Item = f64>) -> f64 {
    let last_toggle = toggles.fold(f64::NEG_INFINITY, f64::max);
    opts.warmup
        .as_secs_f64()
        .max(last_toggle + opts.settle.as_secs_f64())
}

/// The plot, `canary.json`, the summary; the exit code.
fn finish(opts: &CanaryOpts, mut report: CanaryReport, runs: &[RunOutcome; 2]) -> Result<u8> {
    let plot = opts.out.join("canary.svg");
    match reports::canary::canary_plot(&plot, &report, &runs[0].samples, &runs[1].samples) {
        Ok(()) => report.plot = Some(plot.display().to_string()),
        Err(e) => report.notes.push(format!("plot not written: {e:#}")),
    }
    let json = serde_json::to_string_pretty(&report)?;
    std::fs::write(opts.out.join("canary.json"), &json)
        .with_context(|| format!("writing {}/canary.json", opts.out.display()))?;
    if opts.json {
        println!("{json}");
    } else {
        reports::canary::print_human(&report);
    }
    Ok(if report.verdict.regression {
        exit::LEAK
    } else if report.baseline.died || report.canary.died {
        exit::COULD_NOT_RUN
    } else {
        exit::NO_LEAK
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toggles_parse_with_their_errors() {
        assert_eq!(
            parse_toggle("task-leak@20").unwrap(),
            ToggleArg {
                id: "task-leak".into(),
                enabled: true,
                at: Duration::from_secs(20)
            }
        );
        let off = parse_toggle("unbounded-cache=off@1m").unwrap();
        assert!(!off.enabled);
        assert_eq!(off.at, Duration::from_secs(60));
        assert!(parse_toggle("task-leak").is_err());
        assert!(parse_toggle("@20").is_err());
        assert!(parse_toggle("x=maybe@2").is_err());
        assert!(parse_toggle("x@soon").is_err());
    }
}
