//! `loadgen canary`: a baseline and a canary of the same service under
//! identical load, side by side, with flag toggles on the canary at set
//! times. This is the canary flag-toggle exercise: turn a leak's flag on in
//! the canary (a bad change rolling out), see the canary's memory part from
//! the baseline's, turn it off again (the rollback) and see it stop.
//!
//! ```text
//! loadgen canary --spawn                                      # two local services; unbounded-cache on in the canary at the end of warm-up
//! loadgen canary --spawn --toggle task-leak@20 --toggle task-leak=off@60
//! loadgen canary --baseline http://127.0.0.1:8081 --canary http://127.0.0.1:8082   # compose's canary pair
//! ```
//!
//! Both sides get the same [`RunOpts`] (workload, rate, duration, warm-up),
//! run concurrently through [`run::execute_with`]. Each side is then judged
//! again over the same comparison window: after the warm-up, or after the
//! last toggle plus `--settle` when that is later, so the canary is judged on
//! how it behaves with its final flags. The canary regresses when its
//! verdict is a leak and the slope of the finding's signal is above the
//! baseline's (and above zero) with the two 95% intervals apart. Exit 3 then, 0 when it does
//! not, 1 when a side could not be measured, 2 on bad usage.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Parser};
use serde::Serialize;
use tokio::time::Instant;

use crate::analysis::{self, human_bytes};
use crate::catalogue::Scenario;
use crate::run::{self, RunOpts, RunOutcome};
use crate::sampler::{Phase, Sample};
use crate::summary::{SignalFit, Verdict};
use crate::target::{Control, Target};
use crate::{exit, parse_bytes, parse_duration, spawn, Cli, Command, RateArg, UsageError};

/// Schema of `canary.json` and of `--json`.
pub const SCHEMA: &str = "leaklab.canary/v1";

/// Signals compared side by side.
const COMPARED: [&str; 4] = ["allocated", "rss", "rss_outside_allocator", "alive_tasks"];

/// Options of `loadgen canary`.
#[derive(Args, Clone, Debug)]
pub struct CanaryOpts {
    /// The baseline service (the release, or the flags, running now).
    #[arg(long, required_unless_present = "spawn", conflicts_with = "spawn")]
    pub baseline: Option<String>,
    /// The canary service: the same service with the change under test.
    #[arg(long, required_unless_present = "spawn", conflicts_with = "spawn")]
    pub canary: Option<String>,
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
    pub toggles: Vec<Toggle>,
    /// The workload on both sides: `all` (a mixed load over every route; a
    /// change does not say where its leak is), one scenario id, or a comma list.
    #[arg(long, default_value = "all")]
    pub scenario: String,
    /// Triggering requests per second on each side (`auto`: as `loadgen run`).
    #[arg(long, default_value = "auto", value_parser = crate::parse_rate)]
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
    /// Bearer token for both targets' /debug and /admin routes.
    #[arg(long, env = "LEAKLAB_ADMIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Allow targets that are not on loopback (e.g. compose service names).
    #[arg(long)]
    pub allow_remote: bool,
    /// Directory for canary.json, canary.svg and each side's run files.
    #[arg(long, default_value = "out/canary")]
    pub out: PathBuf,
    /// Print only the JSON report on stdout.
    #[arg(long)]
    pub json: bool,
}

/// One flag change on the canary.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Toggle {
    pub id: String,
    pub enabled: bool,
    /// Seconds after the load starts.
    #[serde(rename = "at_s", serialize_with = "secs")]
    pub at: Duration,
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// Parses `ID@SECONDS`, `ID=on@SECONDS` or `ID=off@SECONDS` (`@30s`, `@1m` too).
pub fn parse_toggle(s: &str) -> Result<Toggle, String> {
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
    Ok(Toggle {
        id: id.to_string(),
        enabled,
        at: parse_duration(at)?,
    })
}

/// What happened to one toggle.
#[derive(Clone, Debug, Serialize)]
pub struct ToggleDone {
    #[serde(flatten)]
    pub toggle: Toggle,
    /// When it was applied (seconds after the canary's load started).
    pub applied_at_s: Option<f64>,
    pub error: Option<String>,
}

/// One side's result over the comparison window.
#[derive(Clone, Debug, Serialize)]
pub struct Side {
    pub target: String,
    pub pid: Option<u32>,
    pub verdict: Verdict,
    pub signals: std::collections::BTreeMap<String, SignalFit>,
    /// `loadgen run`'s own summary is in this directory.
    pub dir: String,
    pub died: bool,
}

/// One signal on both sides.
#[derive(Clone, Debug, Serialize)]
pub struct Compared {
    pub signal: String,
    pub baseline_slope_per_s: f64,
    pub baseline_ci95: [f64; 2],
    pub canary_slope_per_s: f64,
    pub canary_ci95: [f64; 2],
    /// Canary minus baseline, units per second.
    pub delta_per_s: f64,
    /// The canary climbs, and its interval lies wholly above the baseline's
    /// (a slower decline than the baseline's is not a climb).
    pub canary_above: bool,
}

/// The judgement.
#[derive(Clone, Debug, Serialize)]
pub struct CanaryVerdict {
    /// The canary leaks and the baseline does not leak as much.
    pub regression: bool,
    /// The canary's leak class (`none` when it does not leak).
    pub class: String,
    pub component: Option<String>,
    pub signal: Option<String>,
    /// Extra bytes per hour the canary burns over the baseline in that signal.
    pub burn_rate_delta_bytes_per_h: Option<f64>,
    pub reasons: Vec<String>,
}

/// `canary.json`.
#[derive(Clone, Debug, Serialize)]
pub struct CanaryReport {
    pub schema: &'static str,
    pub scenario: String,
    /// Seconds after the load started: the comparison window.
    pub window_s: [f64; 2],
    pub toggles: Vec<ToggleDone>,
    pub baseline: Side,
    pub canary: Side,
    pub compared: Vec<Compared>,
    pub verdict: CanaryVerdict,
    pub plot: Option<String>,
    pub notes: Vec<String>,
}

fn run_opts(opts: &CanaryOpts, url: &str, pid: Option<u32>, dir: &Path) -> Result<RunOpts> {
    let rate = crate::hunt::rate_arg(&opts.rate);
    let args: Vec<String> = vec![
        "loadgen".into(),
        "run".into(),
        format!("--target={url}"),
        format!("--scenario={}", opts.scenario),
        format!("--rate={rate}"),
        format!("--duration={}ms", opts.duration.as_millis()),
        format!("--warmup={}ms", opts.warmup.as_millis()),
        format!("--out={}", dir.display()),
        "--json".into(),
    ];
    let Command::Run(mut run) = Cli::try_parse_from(args)?.command else {
        unreachable!("parsed a run command")
    };
    run.pid = pid;
    run.limit = opts.limit;
    run.token = opts.token.clone();
    run.allow_remote = opts.allow_remote;
    Ok(run)
}

/// Samples re-phased so that only `from_s..` counts as the measurement window.
fn windowed(samples: &[Sample], from_s: f64) -> Vec<Sample> {
    samples
        .iter()
        .cloned()
        .map(|mut s| {
            if s.phase == Phase::Measure && s.t < from_s {
                s.phase = Phase::Warmup;
            }
            s
        })
        .collect()
}

/// Compares the two sides' fits signal by signal.
pub fn compare(
    baseline: &std::collections::BTreeMap<String, SignalFit>,
    canary: &std::collections::BTreeMap<String, SignalFit>,
) -> Vec<Compared> {
    COMPARED
        .iter()
        .filter_map(|name| {
            let (b, c) = (baseline.get(*name)?, canary.get(*name)?);
            Some(Compared {
                signal: name.to_string(),
                baseline_slope_per_s: b.slope_per_s,
                baseline_ci95: b.ci95,
                canary_slope_per_s: c.slope_per_s,
                canary_ci95: c.ci95,
                delta_per_s: c.slope_per_s - b.slope_per_s,
                canary_above: c.ci95[0] > b.ci95[1].max(0.0),
            })
        })
        .collect()
}

/// The canary regresses when it leaks and the leak's signal climbs faster
/// than the baseline's, intervals apart.
pub fn judge(baseline: &Verdict, canary: &Verdict, compared: &[Compared]) -> CanaryVerdict {
    let mut reasons = Vec::new();
    let Some(finding) = canary.findings.first().filter(|_| canary.leak) else {
        reasons.push(format!(
            "the canary does not leak ({}); the baseline {}",
            canary.class,
            if baseline.leak {
                format!("does ({})", baseline.class)
            } else {
                format!("does not either ({})", baseline.class)
            }
        ));
        return CanaryVerdict {
            regression: false,
            class: canary.class.clone(),
            component: None,
            signal: None,
            burn_rate_delta_bytes_per_h: None,
            reasons,
        };
    };
    let row = compared.iter().find(|c| c.signal == finding.signal);
    let above = row.is_some_and(|c| c.canary_above);
    let bytes = finding.signal != "alive_tasks";
    let delta_per_h = row
        .filter(|_| bytes)
        .map(|c| c.delta_per_s * 3600.0)
        .or_else(|| {
            // A task leak's burn rate is in bytes of allocated heap.
            compared
                .iter()
                .find(|c| c.signal == "allocated")
                .map(|c| c.delta_per_s * 3600.0)
        });
    match row {
        Some(c) if above => reasons.push(format!(
            "the canary's {} climbs at {}/s [{}, {}], the baseline's at {}/s [{}, {}]: the intervals are apart",
            c.signal,
            fmt(bytes, c.canary_slope_per_s),
            fmt(bytes, c.canary_ci95[0]),
            fmt(bytes, c.canary_ci95[1]),
            fmt(bytes, c.baseline_slope_per_s),
            fmt(bytes, c.baseline_ci95[0]),
            fmt(bytes, c.baseline_ci95[1]),
        )),
        Some(c) => reasons.push(format!(
            "the canary leaks ({}) but its {} slope ({}/s) is not clear of the baseline's ({}/s): the leak is not new in the canary",
            canary.class,
            c.signal,
            fmt(bytes, c.canary_slope_per_s),
            fmt(bytes, c.baseline_slope_per_s),
        )),
        None => reasons.push(format!(
            "the canary leaks ({}) in {}, which the baseline does not report",
            canary.class, finding.signal
        )),
    }
    CanaryVerdict {
        regression: above || (row.is_none() && !baseline.leak),
        class: canary.class.clone(),
        component: finding.component.clone(),
        signal: Some(finding.signal.clone()),
        burn_rate_delta_bytes_per_h: delta_per_h,
        reasons,
    }
}

fn fmt(bytes: bool, v: f64) -> String {
    if bytes {
        human_bytes(v)
    } else {
        format!("{v:.2}")
    }
}

/// Runs the whole comparison; returns the exit code.
pub async fn execute(opts: &CanaryOpts) -> Result<u8> {
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
        toggles.push(Toggle {
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
    std::fs::create_dir_all(&opts.out)
        .with_context(|| format!("creating {}", opts.out.display()))?;

    // The two targets: children of ours, or the URLs given.
    let (urls, pids, services) = if opts.spawn {
        let known = tokio::task::spawn_blocking(spawn::catalogue).await??;
        if let Some(id) = opts
            .canary_leaks
            .iter()
            .find(|id| !known.iter().any(|s| &s.id == *id))
        {
            return Err(unknown(id, &known).into());
        }
        let mut common = Vec::new();
        if let Some(t) = &opts.token {
            common.extend(["--admin-token".to_string(), t.clone()]);
        }
        let mut canary_args = common.clone();
        for id in &opts.canary_leaks {
            canary_args.extend(["--leak".to_string(), id.clone()]);
        }
        let (b_log, c_log) = (
            opts.out.join("baseline-service.log"),
            opts.out.join("canary-service.log"),
        );
        let b = tokio::task::spawn_blocking(move || spawn::start(&common, Some(&b_log))).await??;
        let c =
            tokio::task::spawn_blocking(move || spawn::start(&canary_args, Some(&c_log))).await??;
        (
            [b.url.clone(), c.url.clone()],
            [Some(b.pid), Some(c.pid)],
            vec![b, c],
        )
    } else {
        let (Some(b), Some(c)) = (&opts.baseline, &opts.canary) else {
            return Err(
                UsageError("give --baseline URL and --canary URL, or --spawn".into()).into(),
            );
        };
        (
            [b.clone(), c.clone()],
            [opts.baseline_pid, opts.canary_pid],
            Vec::new(),
        )
    };
    let canary_target = Target::parse(&urls[1], opts.token.clone(), opts.allow_remote)?;
    Target::parse(&urls[0], opts.token.clone(), opts.allow_remote)?;
    let canary = Control::new(&canary_target);
    let ready_within = Duration::from_secs(if opts.spawn { 10 } else { 3 });
    canary.wait_ready(ready_within).await?;
    let catalogue: Vec<Scenario> = canary
        .get_json("/admin/scenarios")
        .await
        .context("reading the canary's catalogue")?;
    if let Some(t) = toggles
        .iter()
        .find(|t| !catalogue.iter().any(|s| s.id == t.id))
    {
        return Err(unknown(&t.id, &catalogue).into());
    }
    if !toggles.is_empty() {
        // A wrong or missing token would only show at the first toggle, mid-run.
        canary.get_text("/admin/flags").await.map_err(|e| {
            anyhow::anyhow!("the canary's /admin/flags: {e} (does it want --token?)")
        })?;
    }

    let dirs = [opts.out.join("baseline"), opts.out.join("canary")];
    let b_opts = run_opts(opts, &urls[0], pids[0], &dirs[0])?;
    let c_opts = run_opts(opts, &urls[1], pids[1], &dirs[1])?;
    if !opts.json {
        eprintln!(
            "loadgen canary: {} on both sides for {:.0} s ({:.0} s warm-up)\n  baseline {}{}\n  canary   {}{}",
            opts.scenario,
            opts.duration.as_secs_f64(),
            opts.warmup.as_secs_f64(),
            urls[0],
            pids[0].map(|p| format!(" (pid {p})")).unwrap_or_default(),
            urls[1],
            pids[1].map(|p| format!(" (pid {p})")).unwrap_or_default(),
        );
        for t in &toggles {
            eprintln!(
                "  toggle: {} {} on the canary at {:.0} s",
                t.id,
                if t.enabled { "on" } else { "off" },
                t.at.as_secs_f64()
            );
        }
    }

    let (tx, rx) = tokio::sync::oneshot::channel::<Instant>();
    let toggler = {
        let canary = canary.clone();
        let toggles = toggles.clone();
        let quiet = opts.json;
        tokio::spawn(async move { apply_toggles(canary, toggles, rx, quiet).await })
    };
    let progress = (!opts.json).then(|| {
        let sides = [urls[0].clone(), urls[1].clone()];
        let token = opts.token.clone();
        let allow = opts.allow_remote;
        let duration = opts.duration;
        tokio::spawn(async move { progress_line(sides, token, allow, duration).await })
    });
    let (b_run, c_run) = tokio::join!(run::execute(&b_opts), run::execute_with(&c_opts, Some(tx)));
    if let Some(p) = progress {
        p.abort();
    }
    let done = toggler.await.context("the toggle task")?;
    drop(services);
    let b_run = b_run.context("the baseline's run")?;
    let c_run = c_run.context("the canary's run")?;

    // The comparison window: after warm-up, or after the last toggle has settled.
    let last_toggle = done
        .iter()
        .filter_map(|d| d.applied_at_s)
        .fold(f64::NEG_INFINITY, f64::max);
    let from_s = opts
        .warmup
        .as_secs_f64()
        .max(last_toggle + opts.settle.as_secs_f64());
    let to_s = opts.duration.as_secs_f64();
    if to_s - from_s < 15.0 {
        notes.push(format!(
            "the comparison window ({from_s:.0}–{to_s:.0} s) is short; toggle earlier or run longer for a firmer verdict"
        ));
    }
    let side = |run: &RunOutcome, url: &str, pid: Option<u32>, dir: &Path| -> Side {
        let judged = analysis::judge(&windowed(&run.samples, from_s), &catalogue, opts.limit);
        Side {
            target: url.to_string(),
            pid,
            verdict: judged.verdict,
            signals: judged.signals,
            dir: dir.display().to_string(),
            died: run.summary.target_died.is_some(),
        }
    };
    let baseline = side(&b_run, &urls[0], pids[0], &dirs[0]);
    let canary_side = side(&c_run, &urls[1], pids[1], &dirs[1]);
    for (name, s) in [("baseline", &b_run), ("canary", &c_run)] {
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
    let compared = compare(&baseline.signals, &canary_side.signals);
    let verdict = judge(&baseline.verdict, &canary_side.verdict, &compared);
    let mut report = CanaryReport {
        schema: SCHEMA,
        scenario: opts.scenario.clone(),
        window_s: [from_s, to_s],
        toggles: done,
        baseline,
        canary: canary_side,
        compared,
        verdict,
        plot: None,
        notes,
    };
    let plot = opts.out.join("canary.svg");
    match crate::report::canary_plot(&plot, &report, &b_run.samples, &c_run.samples) {
        Ok(()) => report.plot = Some(plot.display().to_string()),
        Err(e) => report.notes.push(format!("plot not written: {e:#}")),
    }
    let json = serde_json::to_string_pretty(&report)?;
    std::fs::write(opts.out.join("canary.json"), &json)
        .with_context(|| format!("writing {}/canary.json", opts.out.display()))?;
    if opts.json {
        println!("{json}");
    } else {
        print_human(&report);
    }
    Ok(if report.verdict.regression {
        exit::LEAK
    } else if report.baseline.died || report.canary.died {
        exit::COULD_NOT_RUN
    } else {
        exit::NO_LEAK
    })
}

fn unknown(id: &str, known: &[Scenario]) -> UsageError {
    let ids: Vec<&str> = known.iter().map(|s| s.id.as_str()).collect();
    UsageError(format!(
        "unknown scenario {id:?}; the service knows: {}",
        ids.join(", ")
    ))
}

/// Applies each toggle at its time after the canary's load starts.
async fn apply_toggles(
    canary: Control,
    toggles: Vec<Toggle>,
    started: tokio::sync::oneshot::Receiver<Instant>,
    quiet: bool,
) -> Vec<ToggleDone> {
    let Ok(start) = started.await else {
        // The run failed before its load started: nothing was applied.
        return toggles
            .into_iter()
            .map(|toggle| ToggleDone {
                toggle,
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
            toggle,
        });
    }
    done
}

/// Every 2 s on stderr: both sides' heap, RSS and tasks.
async fn progress_line(urls: [String; 2], token: Option<String>, allow: bool, duration: Duration) {
    let controls: Vec<Control> = urls
        .iter()
        .filter_map(|u| Target::parse(u, token.clone(), allow).ok())
        .map(|t| Control::new(&t))
        .collect();
    let start = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    tick.tick().await;
    // Bounded by the run's length (and aborted when the runs end).
    for _ in 0..duration.as_secs() / 2 + 15 {
        tick.tick().await;
        let mut line = format!("[{:>4.0}s]", start.elapsed().as_secs_f64());
        for (name, c) in ["baseline", "canary"].iter().zip(&controls) {
            match c
                .get_json::<crate::sampler::TargetMemory>("/debug/memory")
                .await
            {
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

fn print_human(r: &CanaryReport) {
    eprintln!();
    eprintln!(
        "compared over {:.0}–{:.0} s (Theil–Sen slope per second [95% CI]):",
        r.window_s[0], r.window_s[1]
    );
    eprintln!("  {:<22} {:>28} {:>28}", "signal", "baseline", "canary");
    for c in &r.compared {
        let bytes = c.signal != "alive_tasks";
        eprintln!(
            "  {:<22} {:>28} {:>28}{}",
            c.signal,
            format!(
                "{} [{}, {}]",
                fmt(bytes, c.baseline_slope_per_s),
                fmt(bytes, c.baseline_ci95[0]),
                fmt(bytes, c.baseline_ci95[1])
            ),
            format!(
                "{} [{}, {}]",
                fmt(bytes, c.canary_slope_per_s),
                fmt(bytes, c.canary_ci95[0]),
                fmt(bytes, c.canary_ci95[1])
            ),
            if c.canary_above { "  CANARY ABOVE" } else { "" }
        );
    }
    eprintln!(
        "baseline: {}; canary: {}",
        side_line(&r.baseline.verdict),
        side_line(&r.canary.verdict)
    );
    let v = &r.verdict;
    if v.regression {
        eprintln!(
            "verdict: REGRESSION: the canary leaks ({}{}){}",
            v.class,
            v.component
                .as_ref()
                .map(|c| format!(" in {c}"))
                .unwrap_or_default(),
            v.burn_rate_delta_bytes_per_h
                .map(|b| format!(", {}/h more than the baseline", human_bytes(b)))
                .unwrap_or_default()
        );
    } else {
        eprintln!("verdict: no regression in the canary");
    }
    for reason in &v.reasons {
        eprintln!("  because {reason}");
    }
    for n in &r.notes {
        eprintln!("note: {n}");
    }
    if let Some(p) = &r.plot {
        eprintln!("plot: {p}");
    }
}

fn side_line(v: &Verdict) -> String {
    if v.leak {
        format!("LEAK ({})", v.class)
    } else {
        format!("no leak ({})", v.class)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toggles_parse_with_their_errors() {
        assert_eq!(
            parse_toggle("task-leak@20").unwrap(),
            Toggle {
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

    fn fit(slope: f64, lo: f64, hi: f64) -> SignalFit {
        SignalFit {
            slope_per_s: slope,
            ci95: [lo, hi],
            p_value: 0.0,
            first: 0.0,
            last: 0.0,
            baseline: None,
            n: 100,
            noise: 0.0,
            slope_first_third: slope,
            slope_last_third: slope,
            rising: slope > 0.0,
        }
    }

    fn verdict(leak: bool, class: &str, signal: &str) -> Verdict {
        Verdict {
            leak,
            class: class.into(),
            findings: if leak {
                vec![crate::summary::Finding {
                    class: class.into(),
                    component: Some("cache".into()),
                    gauge: None,
                    signal: signal.into(),
                    slope_per_s: 1.0,
                    burn_rate_bytes_per_h: None,
                }]
            } else {
                vec![]
            },
            time_to_oom_s: None,
            time_to_oom_interval_s: None,
            limit_bytes: None,
            reasons: vec![],
        }
    }

    #[test]
    fn a_canary_regresses_only_when_its_leak_climbs_clear_of_the_baseline() {
        let flat: std::collections::BTreeMap<_, _> =
            [("allocated".to_string(), fit(0.0, -500.0, 500.0))].into();
        let climbing: std::collections::BTreeMap<_, _> =
            [("allocated".to_string(), fit(2e6, 1.9e6, 2.1e6))].into();
        let rows = compare(&flat, &climbing);
        assert_eq!(rows.len(), 1);
        assert!(rows[0].canary_above);
        let v = judge(
            &verdict(false, "churn", ""),
            &verdict(true, "retention", "allocated"),
            &rows,
        );
        assert!(v.regression, "{v:?}");
        assert_eq!(v.component.as_deref(), Some("cache"));
        assert_eq!(v.burn_rate_delta_bytes_per_h, Some(2e6 * 3600.0));

        // The same leak on both sides is not the canary's doing.
        let rows = compare(&climbing, &climbing);
        let v = judge(
            &verdict(true, "retention", "allocated"),
            &verdict(true, "retention", "allocated"),
            &rows,
        );
        assert!(!v.regression, "{v:?}");

        // A slower decline than the baseline's is not a climb.
        let base: std::collections::BTreeMap<_, _> =
            [("alive_tasks".to_string(), fit(-0.18, -0.20, -0.15))].into();
        let can: std::collections::BTreeMap<_, _> =
            [("alive_tasks".to_string(), fit(-0.08, -0.09, -0.06))].into();
        assert!(!compare(&base, &can)[0].canary_above);

        // A canary that does not leak never regresses.
        let rows = compare(&flat, &flat);
        let v = judge(
            &verdict(false, "none", ""),
            &verdict(false, "none", ""),
            &rows,
        );
        assert!(!v.regression);
    }

    #[test]
    fn the_window_starts_after_the_last_toggle() {
        let s = |t: f64| Sample {
            t,
            phase: if t < 10.0 {
                Phase::Warmup
            } else {
                Phase::Measure
            },
            requests: 0,
            in_flight: 0,
            memory: None,
            proc: None,
            cgroup: None,
            error: None,
        };
        let samples: Vec<Sample> = [5.0, 12.0, 30.0, 40.0].into_iter().map(s).collect();
        let w = windowed(&samples, 35.0);
        let phases: Vec<Phase> = w.iter().map(|s| s.phase).collect();
        assert_eq!(
            phases,
            [Phase::Warmup, Phase::Warmup, Phase::Warmup, Phase::Measure]
        );
    }
}
