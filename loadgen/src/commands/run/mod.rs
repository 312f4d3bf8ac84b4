//! `loadgen run`: drive one scenario (or several, mixed) at a fixed arrival
//! rate, sample the target's memory, judge, and write the summary and report.
//!
//! A run is a [`RunPlan`] (`plan`): `loadgen run` builds one from [`RunOpts`],
//! `hunt`, `canary` and `oom` build theirs directly. [`execute`] composes the
//! stages: `prepare` (target, catalogue, workload), `session` (sampling and
//! load, the live `progress` line or the `tui`, and with `--until-verdict` the stopping rule, `until_verdict`),
//! judging, and the reports. It never prints to stdout and returns the
//! [`RunSummary`] with the exit code it implies.

pub mod plan;
pub mod prepare;
pub mod progress;
pub mod session;
pub mod tui;
pub mod until_verdict;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use leaklab_model::run::{
    Latency, LoadSummary, RunSummary, Sample, SamplesInfo, TargetDied, SCHEMA,
};

use crate::args::{parse_bytes, parse_duration, parse_rate, RateArg};
use crate::engine::{LoadStats, Rate};
use crate::errors::exit;
use crate::judging;
use crate::reports;
use crate::sampling::SampleLog;
use crate::target::TargetOpts;

pub use plan::{RunPlan, SpawnLeaks, TargetPlan, Workload};
use prepare::Prepared;
pub use prepare::DEFAULT_RATE;
pub use session::Hooks;
use session::Session;
use until_verdict::UntilVerdict;

/// Options of `loadgen run`.
#[derive(Args, Clone, Debug)]
pub struct RunOpts {
    #[command(flatten)]
    pub target: TargetOpts,
    /// With --spawn: leaks to turn on in the child (repeatable). Default: the
    /// scenario's own id (none for --scenario all).
    #[arg(long = "leak", value_name = "ID", requires = "spawn")]
    pub leaks: Vec<String>,
    /// With --spawn: start the child with no leak on (the fixed paths), also
    /// those a "bad release" build turns on by default.
    #[arg(long, requires = "spawn", conflicts_with = "leaks")]
    pub fixed: bool,
    /// Scenario id from the target's catalogue, `all` for a mixed workload over
    /// every scenario's recipe, or a comma list (`a,b`) for a mix of those.
    #[arg(long, required_unless_present = "path")]
    pub scenario: Option<String>,
    /// Instead of a scenario, GET this path (e.g. /healthz).
    #[arg(long, conflicts_with = "scenario")]
    pub path: Option<String>,
    /// Triggering requests per second, `auto` (200/s; for one scenario
    /// lowered so the run stays inside half the target's leak budget, for
    /// `all` each heavy scenario stops at half the budget instead) or `max`
    /// (closed model, --connections back to back).
    #[arg(long, default_value = "auto", value_parser = parse_rate)]
    pub rate: RateArg,
    /// Whole run length, warm-up included (e.g. 40s, 2m); with
    /// --until-verdict, the most it may last.
    #[arg(long, default_value = "40s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Stop as soon as the evidence is decisive: after warm-up, look once a
    /// second (a confidence sequence on the slope of allocated, alive_tasks
    /// and rss, its error rate held over every look) and stop at a leak call
    /// or a decisive no-climb that the judge agrees with; --duration is the
    /// maximum, where the fixed-window verdict decides.
    #[arg(long)]
    pub until_verdict: bool,
    /// Draw the run live on the terminal: the live heap, RSS and alive tasks
    /// over time with the fit forming through the measured part, the phase,
    /// the time left and the running decision. q, Esc or ctrl-c stop it
    /// early. Needs stderr to be a terminal (else the plain progress lines).
    #[arg(long)]
    pub tui: bool,
    /// Warm-up excluded from the analysis.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Ramp the rate linearly from 0 over this long.
    #[arg(long, value_parser = parse_duration)]
    pub ramp: Option<Duration>,
    /// Connections to the target, reused: in fixed-rate mode the most open
    /// at once (arrivals wait for a free one, and are dropped after
    /// --max-lag); in `--rate max` mode one task each, back to back.
    #[arg(long, default_value_t = 64)]
    pub connections: usize,
    /// Triggering requests in flight at most; arrivals beyond it are dropped.
    #[arg(long, default_value_t = 1024)]
    pub max_in_flight: usize,
    /// An arrival this late behind its planned time is dropped, not sent.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub max_lag: Duration,
    /// Stop after this many triggering requests.
    #[arg(long)]
    pub requests: Option<u64>,
    /// Memory sampling interval (2 Hz or faster is recommended).
    #[arg(long, default_value = "250ms", value_parser = parse_duration)]
    pub sample_interval: Duration,
    /// Memory limit for time-to-OOM (e.g. 1GiB); default: the target's cgroup limit.
    #[arg(long, value_parser = parse_bytes)]
    pub limit: Option<u64>,
    /// The target's pid, for independent /proc and cgroup reads.
    #[arg(long)]
    pub pid: Option<u32>,
    /// The target runs in this Docker container (name or id): its main
    /// process's /proc and memory cgroup are read, as with --pid.
    #[arg(long, value_name = "NAME|ID", conflicts_with_all = ["pid", "spawn"])]
    pub container: Option<String>,
    /// A Prometheus exposition to sample beside /proc (e.g.
    /// http://127.0.0.1:9100/metrics): for targets that are not leaklab
    /// services. Default there: the target's own /metrics when it answers
    /// Prometheus text. Its `process_resident_memory_bytes` is kept when present.
    #[arg(long, value_name = "URL")]
    pub metrics: Option<String>,
    /// A series of that exposition to sample and judge (repeatable), e.g. a
    /// cache's entry count; it must exist in the first scrape.
    #[arg(long = "metric", value_name = "NAME")]
    pub metric_names: Vec<String>,
    /// Directory for samples.jsonl, summary.json, report.html and plots.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Print only the summary JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

impl RunOpts {
    /// The plan these options describe.
    pub fn plan(&self) -> RunPlan {
        let target = if self.target.spawn {
            TargetPlan::Spawn {
                leaks: if self.fixed {
                    SpawnLeaks::Fixed
                } else if !self.leaks.is_empty() {
                    SpawnLeaks::These(self.leaks.clone())
                } else {
                    SpawnLeaks::Workload
                },
                token: self.target.access.token.clone(),
            }
        } else {
            TargetPlan::Url {
                url: self.target.target.clone(),
                access: self.target.access.clone(),
            }
        };
        let workload = match (&self.scenario, &self.path) {
            (Some(s), _) => Workload::parse(s),
            (None, Some(p)) => Workload::Path(p.clone()),
            // clap requires one of the two.
            (None, None) => Workload::All,
        };
        RunPlan {
            metrics: self.metrics.clone(),
            metric_names: self.metric_names.clone(),
            pid: self.pid,
            rate: self.rate,
            duration: self.duration,
            warmup: self.warmup,
            ramp: self.ramp,
            connections: self.connections,
            max_in_flight: self.max_in_flight,
            max_lag: self.max_lag,
            max_requests: self.requests,
            sample_interval: self.sample_interval,
            limit: self.limit,
            out: self.out.clone(),
            quiet: self.json,
            until_verdict: self.until_verdict,
            tui: self.tui,
            ..RunPlan::new(target, workload)
        }
    }
}

/// A finished run.
#[derive(Debug)]
pub struct RunOutcome {
    pub summary: RunSummary,
    /// 0 no leak, 3 leak found, 1 the run could not complete.
    pub exit_code: u8,
    /// Every sample kept, baseline to cool-down (what `samples.jsonl` holds).
    pub samples: Vec<Sample>,
}

/// `loadgen run`: the summary as JSON on stdout, or in words on stderr.
pub async fn command(opts: &RunOpts) -> Result<u8> {
    let mut plan = opts.plan();
    if let Some(name) = &opts.container {
        plan.pid = Some(crate::target::container::pid_of(name)?);
    }
    let outcome = execute(&plan).await?;
    if opts.json {
        println!("{}", serde_json::to_string_pretty(&outcome.summary)?);
    } else {
        reports::run::print_human(&outcome.summary);
    }
    Ok(outcome.exit_code)
}

/// Runs the whole thing. Progress goes to stderr unless the plan is quiet.
pub async fn execute(plan: &RunPlan) -> Result<RunOutcome> {
    execute_with(plan, Hooks::default()).await
}

/// [`execute`] with a caller's [`Hooks`]: told the instant the load starts
/// (sample time 0), for callers that act on the target during the run
/// (`loadgen canary`'s toggles), and every sample as it is taken.
pub async fn execute_with(plan: &RunPlan, hooks: Hooks) -> Result<RunOutcome> {
    let p = prepare::prepare(plan).await?;
    let session = Session::start(plan, &p, hooks).await;
    let shared = session.shared.clone();
    let until_verdict = session.until_verdict.clone();
    let (stats, log) = session.wait().await?;
    let died = died(&p, shared.died());
    let outcome = finish(plan, &p, (stats, log), died, until_verdict.as_deref())?;
    drop(p.service);
    Ok(outcome)
}

/// The death the sampler saw; a target that dies is often already reaped by
/// the time we look, and the child's own exit status is the better reason.
fn died(p: &Prepared, died: Option<TargetDied>) -> Option<TargetDied> {
    died.map(|mut d| {
        if let Some(status) = p.service.as_ref().and_then(|s| s.exit_status()) {
            if !d.reason.contains(&status) {
                d.reason = format!("{}; {status}", d.reason);
            }
        }
        d
    })
}

/// Judges the samples and writes the summary and report. With
/// `--until-verdict`, the verdict is still the judge's over the samples
/// taken; the summary adds how and when it was reached.
fn finish(
    plan: &RunPlan,
    p: &Prepared,
    (stats, log): (LoadStats, SampleLog),
    died: Option<TargetDied>,
    until_verdict: Option<&UntilVerdict>,
) -> Result<RunOutcome> {
    let stop = until_verdict.and_then(|u| u.stop());
    // Stopped early: judged as the stopping rule judged it, against the
    // measurement the run could have had.
    let horizon = stop
        .as_ref()
        .map(|_| plan.duration.saturating_sub(plan.warmup).as_secs_f64());
    let judged = judging::judge_within(&log.samples, &p.catalogue, plan.limit, horizon);
    let end_s = match (&died, &stop) {
        (Some(d), _) => d.at_s,
        (None, Some(_)) => stats.elapsed.as_secs_f64().min(plan.duration.as_secs_f64()),
        (None, None) if plan.stopped_by_caller() => {
            stats.elapsed.as_secs_f64().min(plan.duration.as_secs_f64())
        }
        (None, None) => plan.duration.as_secs_f64(),
    };
    let rate_achieved = stats.rate_between(plan.warmup.as_secs_f64(), end_s);
    let ground_truth = judging::ground_truth(p.scenario.as_ref(), &judged.signals, rate_achieved);
    let mut notes = notes(p, &stats, died.as_ref());
    notes.extend(stop.as_ref().map(until_verdict::note));
    let (stopped_early, sequential) = match until_verdict {
        Some(u) => {
            let (early, s) = u.summary(plan, end_s - plan.warmup.as_secs_f64());
            (early, Some(s))
        }
        None => (false, None),
    };
    let mut summary = RunSummary {
        schema: SCHEMA.into(),
        scenario: Some(plan.workload.label()),
        target: p.target.base.clone(),
        pid: p.pid,
        load: load_summary(&stats, p.rate, rate_achieved, plan.warmup),
        signals: judged.signals,
        verdict: judged.verdict,
        ground_truth,
        target_died: died.clone(),
        samples: SamplesInfo {
            taken: log.taken,
            kept: log.samples.len(),
            interval_s: plan.sample_interval.as_secs_f64(),
            path: plan
                .out
                .as_ref()
                .map(|d| d.join("samples.jsonl").display().to_string()),
        },
        report: None,
        notes,
        stopped_early,
        sequential,
    };
    if let Some(dir) = &plan.out {
        match reports::write(dir, &summary, &log.samples, &stats) {
            Ok(path) => summary.report = Some(path.display().to_string()),
            Err(e) => summary.notes.push(format!("report not written: {e:#}")),
        }
        let json = serde_json::to_vec_pretty(&summary)?;
        std::fs::write(dir.join("summary.json"), json)
            .with_context(|| format!("writing {}/summary.json", dir.display()))?;
    }
    let exit_code = if summary.verdict.leak {
        exit::LEAK
    } else if died.is_some() {
        exit::COULD_NOT_RUN
    } else {
        exit::NO_LEAK
    };
    Ok(RunOutcome {
        summary,
        exit_code,
        samples: log.samples,
    })
}

/// What the reader of the summary should know about how the run went.
fn notes(p: &Prepared, stats: &LoadStats, died: Option<&TargetDied>) -> Vec<String> {
    let mut notes = Vec::new();
    if let Some(d) = died {
        notes.push(format!(
            "the target died {:.1} s into the run: {}; every sample taken is kept",
            d.at_s, d.reason
        ));
    }
    if stats.dropped > 0 {
        notes.push(format!(
            "{} arrivals could not be sent on time and were dropped",
            stats.dropped
        ));
    }
    if p.pid.is_none() {
        notes.push("pid unknown: RSS is the target's own report (give --pid for an independent /proc reading)".into());
    }
    notes
}

fn load_summary(
    stats: &LoadStats,
    rate: Rate,
    rate_achieved: f64,
    warmup: Duration,
) -> LoadSummary {
    let h = &stats.latency_us;
    let ms = |us: u64| us as f64 / 1000.0;
    let latency = if h.is_empty() {
        Latency::default()
    } else {
        Latency {
            p50: ms(h.value_at_quantile(0.5)),
            p90: ms(h.value_at_quantile(0.9)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
            mean: h.mean() / 1000.0,
        }
    };
    LoadSummary {
        rate_target: match rate {
            Rate::Fixed(r) => Some(r),
            Rate::Max => None,
        },
        rate_achieved,
        requests: stats.units_done,
        http_requests: stats.http_requests,
        errors: stats.errors,
        dropped: stats.dropped,
        status_4xx: stats.status_4xx,
        duration_s: stats.elapsed.as_secs_f64(),
        warmup_s: warmup.as_secs_f64(),
        latency_ms: latency,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        run: RunOpts,
    }

    #[test]
    fn the_cli_defaults_are_the_plan_defaults() {
        let opts = Cli::parse_from([
            "run",
            "--scenario",
            "churn",
            "--target",
            "http://127.0.0.1:1",
        ])
        .run;
        let from_cli = opts.plan();
        let direct = RunPlan::new(
            TargetPlan::Url {
                url: "http://127.0.0.1:1".into(),
                access: Default::default(),
            },
            Workload::One("churn".into()),
        );
        assert_eq!(format!("{from_cli:?}"), format!("{direct:?}"));
        let spawned = Cli::parse_from(["run", "--spawn", "--fixed", "--scenario", "a,b"])
            .run
            .plan();
        assert!(matches!(
            spawned.target,
            TargetPlan::Spawn {
                leaks: SpawnLeaks::Fixed,
                ..
            }
        ));
        assert_eq!(
            spawned.workload,
            Workload::Mix(vec!["a".into(), "b".into()])
        );
    }
}
