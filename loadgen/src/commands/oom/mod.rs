//! `loadgen oom`: the memory-limit experiment. A service runs under a memory
//! limit with one leak on; loadgen drives that leak at a fixed rate until the
//! kernel's OOM killer ends the service, predicting the time of the kill as
//! the run goes, and then reports predicted against actual.
//!
//! Two ways to impose the limit:
//!
//! - the default needs no Docker: the service is started in a memory cgroup of
//!   loadgen's own (`leaklab_probe::cgroup::MemoryCgroup`, root, cgroup v1 or
//!   v2), joined before it executes so every byte counts;
//! - `--docker` starts docker-compose's `service` with `SERVICE_MEM_LIMIT` set
//!   to the limit (the image must be built; see the README).
//!
//! The prediction: a Theil–Sen line through the cgroup's memory usage since
//! the warm-up ended, extended to the limit. Each prediction is the time of
//! the kill, in seconds since the load started (the same clock as the actual
//! kill), so `prediction_error_pct` compares like with like. The error quoted
//! is that of the prediction made at half the actual time.
//!
//! The run is a [`RunPlan`] with no baseline: the sampler writes
//! `samples.jsonl` and hands each sample to the watch loop (`watch`), which
//! predicts the kill and polls the service's end every 100 ms.
//!
//! Evidence of an OOM kill: the service died of SIGKILL (exit code 137 in
//! Docker's and the shell's terms) and the cgroup's `oom_kill` counter went up
//! (cgroup mode) or Docker recorded `OOMKilled` (compose mode).

mod target;
mod watch;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use clap::Args;
use leaklab_model::oom::{OomEvidence, OomReport, Prediction, SCHEMA};
use leaklab_model::run::{CgroupReading, Sample};
use leaklab_model::Scenario;

use crate::args::{parse_bytes, parse_duration, parse_rate, RateArg};
use crate::commands::run::{prepare, session, RunPlan, Workload, DEFAULT_RATE};
use crate::errors::{exit, find_scenario, UsageError};
use crate::human::human_bytes;
use crate::reports;
use crate::target::{AccessOpts, Control};

use target::{CgroupTarget, DockerTarget, OomTarget};
use watch::Watched;

/// The smallest limit accepted: the service itself needs some room.
const MIN_LIMIT: u64 = 32 << 20;
/// `--rate auto` stays within these bounds.
const AUTO_RATE_BOUNDS: (f64, f64) = (1.0, 5000.0);

/// Options of `loadgen oom`.
#[derive(Args, Clone, Debug)]
pub struct OomOpts {
    /// The leak to drive (a scenario id that leaks: not a negative control).
    #[arg(long)]
    pub scenario: String,
    /// The memory limit (e.g. 256MiB): the cgroup's limit, or the container's
    /// mem_limit with --docker.
    #[arg(long, default_value = "256MiB", value_parser = parse_bytes)]
    pub limit: u64,
    /// Run the service with docker-compose (its `service`, image already
    /// built) instead of in a memory cgroup of loadgen's own.
    #[arg(long)]
    pub docker: bool,
    /// The compose file for --docker.
    #[arg(long, default_value = "docker-compose.yml", requires = "docker")]
    pub compose_file: PathBuf,
    /// Leave the compose project (`leaklab-oom`) in place afterwards, for
    /// `docker inspect` and `docker logs`.
    #[arg(long, requires = "docker")]
    pub keep: bool,
    /// Triggering requests per second, or `auto`: a rate at which the leak's
    /// catalogue footprint would fill the headroom in about --fill-in.
    #[arg(long, default_value = "auto", value_parser = parse_rate)]
    pub rate: RateArg,
    /// With --rate auto: how long the leak should take to fill the limit.
    #[arg(long, default_value = "90s", value_parser = parse_duration)]
    pub fill_in: Duration,
    /// Give up after this long; the service is then reported as not killed.
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    pub max_duration: Duration,
    /// Let the service thrash at the limit: by default it pins its code pages
    /// (`leaklab-service --lock-code on`) so that the kernel kills it when the
    /// limit is reached; with this flag the kernel first evicts and re-reads
    /// its code for a while (the service stops answering but lives on), and
    /// the kill comes later than any usage trend can say.
    #[arg(long)]
    pub allow_thrash: bool,
    /// Samples before this are not used for predictions.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Memory sampling interval.
    #[arg(long, default_value = "500ms", value_parser = parse_duration)]
    pub sample_interval: Duration,
    /// Bearer token for the service's /debug and /admin routes.
    #[arg(long, env = "LEAKLAB_ADMIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Directory for oom.json, samples.jsonl, oom.svg and the service log.
    #[arg(long, default_value = "out/oom")]
    pub out: PathBuf,
    /// Print only the JSON result on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Runs the experiment; returns the exit code (3 when the service was
/// OOM-killed, 0 when it survived, 1 when it died of something else).
pub async fn execute(opts: &OomOpts) -> Result<u8> {
    check_usage(opts)?;
    std::fs::create_dir_all(&opts.out)
        .with_context(|| format!("creating {}", opts.out.display()))?;
    let mut target = if opts.docker {
        OomTarget::Docker(DockerTarget::start(opts).await?)
    } else {
        OomTarget::Cgroup(CgroupTarget::start(opts).await?)
    };
    let result = experiment(opts, &mut target).await;
    let teardown = target.stop(opts.keep);
    let report = result?;
    if let Err(e) = teardown {
        eprintln!("loadgen oom: cleaning up: {e:#}");
    }
    let json = serde_json::to_string_pretty(&report)?;
    std::fs::write(opts.out.join("oom.json"), &json)
        .with_context(|| format!("writing {}/oom.json", opts.out.display()))?;
    if opts.json {
        println!("{json}");
    } else {
        reports::oom::print_human(&report, &opts.out);
    }
    Ok(if report.killed {
        exit::LEAK
    } else if report.evidence.exit.is_some() {
        exit::COULD_NOT_RUN
    } else {
        exit::NO_LEAK
    })
}

fn check_usage(opts: &OomOpts) -> Result<()> {
    if opts.limit < MIN_LIMIT {
        return Err(UsageError(format!(
            "--limit {} is too small: the service alone needs about 20 MiB; give at least {}",
            human_bytes(opts.limit as f64),
            human_bytes(MIN_LIMIT as f64)
        ))
        .into());
    }
    if opts.max_duration <= opts.warmup {
        return Err(UsageError("--max-duration must be longer than --warmup".into()).into());
    }
    if opts.rate == RateArg::Max {
        return Err(UsageError(
            "--rate max is not a fixed rate: give a number or auto, so the slope means something"
                .into(),
        )
        .into());
    }
    Ok(())
}

/// The run proper, with the target started.
async fn experiment(opts: &OomOpts, target: &mut OomTarget) -> Result<OomReport> {
    let access = AccessOpts {
        token: opts.token.clone(),
        allow_remote: opts.docker,
    };
    let url = target.url();
    let scenario = leak_to_drive(opts, &access, &url).await?;
    let baseline = target
        .usage()
        .ok_or_else(|| anyhow!("cannot read the service's cgroup memory"))?;
    let rate = match opts.rate {
        RateArg::Fixed(r) => r,
        _ => auto_rate(
            opts.limit.saturating_sub(baseline.usage),
            scenario.footprint_bytes(),
            opts.fill_in,
        ),
    };
    let mut notes = Vec::new();
    if let Some(l) = baseline.limit.filter(|l| *l != opts.limit) {
        notes.push(format!(
            "the cgroup's limit reads {l} bytes, not the {} asked for",
            opts.limit
        ));
    }
    if !opts.json {
        eprintln!(
            "oom: {} under {} ({} mode, {}), baseline usage {}, {rate:.0} req/s; \
             predictions start after {:.0}s of warm-up",
            scenario.id,
            human_bytes(opts.limit as f64),
            target.mode(),
            target.cgroup_version().unwrap_or_else(|| "cgroup ?".into()),
            human_bytes(baseline.usage as f64),
            opts.warmup.as_secs_f64()
        );
    }
    let plan = RunPlan::against(
        &url,
        Some(target.pid()),
        access,
        Workload::One(scenario.id.clone()),
    )
    .rate(RateArg::Fixed(rate))
    .timing(opts.max_duration, opts.warmup)
    .sample_interval(opts.sample_interval)
    .out(&opts.out)
    .quiet(true)
    .without_baseline();
    let prepared = prepare::prepare(&plan).await?;
    let (tap, samples) = tokio::sync::mpsc::unbounded_channel();
    let hooks = session::Hooks {
        exit_probe: target.exit_probe(),
        cgroup_probe: Some(target.cgroup_probe()),
        tap: Some(tap),
        own_death_watch: true,
        ..session::Hooks::default()
    };
    let live = session::Session::start(&plan, &prepared, hooks).await;
    let watched = watch::watch(opts, target, &live, samples).await;
    let requests = live
        .progress
        .units_done
        .load(std::sync::atomic::Ordering::Relaxed);
    let (stats, _log) = live.stop().await;
    let watched = watched.drained();
    let outcome = Outcome {
        evidence: if watched.ended.is_some() {
            target.evidence()
        } else {
            OomEvidence::default()
        },
        requests: stats.map(|s| s.units_done).unwrap_or(requests),
        rate,
        baseline,
        notes,
    };
    Ok(report(opts, target, &scenario, watched, outcome))
}

/// The leak the run drives, from the service's own catalogue.
async fn leak_to_drive(opts: &OomOpts, access: &AccessOpts, url: &str) -> Result<Scenario> {
    let control = Control::new(&access.target(url)?);
    control.wait_ready(Duration::from_secs(30)).await?;
    let catalogue = control
        .catalogue()
        .await
        .map_err(|e| anyhow!("reading the service's catalogue: {e}"))?;
    let scenario = find_scenario(&catalogue, &opts.scenario)?.clone();
    if scenario.negative_control {
        return Err(UsageError(format!(
            "{} is a negative control: it does not leak, so nothing would reach the limit",
            scenario.id
        ))
        .into());
    }
    Ok(scenario)
}

/// What the run came to besides the watch.
struct Outcome {
    evidence: OomEvidence,
    requests: u64,
    rate: f64,
    baseline: CgroupReading,
    notes: Vec<String>,
}

/// Predicted against actual, the evidence, and the plot.
fn report(
    opts: &OomOpts,
    target: &OomTarget,
    scenario: &Scenario,
    w: Watched,
    o: Outcome,
) -> OomReport {
    let mut notes = o.notes;
    let evidence = o.evidence;
    if w.interrupted {
        notes.push("interrupted (ctrl-c) before the service was killed".into());
    }
    let killed = w.ended.is_some() && evidence.exit_code == Some(137) && oom_recorded(&evidence);
    if w.ended.is_some() && !killed {
        notes.push(format!(
            "the service ended, but not by the OOM killer: {}",
            evidence.exit.as_deref().unwrap_or("unknown exit")
        ));
    }
    if w.ended.is_none() && !w.interrupted {
        notes.push(format!(
            "not killed within --max-duration {:.0}s",
            opts.max_duration.as_secs_f64()
        ));
    }
    let actual = w.ended.filter(|_| killed);
    let judged = judged_prediction(&w.predictions, actual, &mut notes);
    let error = match (actual, &judged) {
        (Some(a), Some(p)) => Some((p.predicted_time_to_oom_s - a) / a * 100.0),
        _ => None,
    };
    let last_progress = w
        .samples
        .windows(2)
        .rfind(|win| win[1].requests > win[0].requests)
        .map(|win| win[1].t);
    if let (Some(a), Some(p)) = (actual, last_progress) {
        if a - p > 5.0 {
            notes.push(format!(
                "the service stopped completing requests at {p:.1}s and was killed at {a:.1}s: \
                 {:.0}s stalled at the limit{}",
                a - p,
                if opts.allow_thrash {
                    " (thrashing on its own code, --allow-thrash)"
                } else {
                    ""
                }
            ));
        }
    }
    let plot_path = opts.out.join("oom.svg");
    let plot = reports::oom::plot(
        &plot_path,
        &scenario.id,
        opts.limit,
        &w.samples,
        &w.predictions,
        actual,
    );
    let plot = match plot {
        Ok(()) => Some(plot_path.display().to_string()),
        Err(e) => {
            notes.push(format!("plot not written: {e:#}"));
            None
        }
    };
    OomReport {
        schema: SCHEMA.into(),
        scenario: scenario.id.clone(),
        mode: target.mode().into(),
        cgroup_version: target.cgroup_version(),
        limit_bytes: opts.limit,
        rate: o.rate,
        requests: o.requests,
        killed,
        actual_time_to_oom_s: actual,
        predicted_time_to_oom_s: judged.map(|p| p.predicted_time_to_oom_s),
        prediction_error_pct: error,
        burn_rate_bytes_per_h: w.predictions.last().map(|p| p.slope_bytes_per_s * 3600.0),
        baseline_usage_bytes: o.baseline.usage,
        peak_usage_bytes: peak_usage(&w.samples).unwrap_or(o.baseline.usage),
        limit_reached_at_s: limit_reached(&w.samples, opts.limit),
        last_progress_at_s: last_progress,
        code_pinned: !opts.allow_thrash,
        evidence,
        predictions: w.predictions,
        samples: opts.out.join("samples.jsonl").display().to_string(),
        plot,
        notes,
    }
}

/// Whether the kernel recorded an OOM kill.
fn oom_recorded(evidence: &OomEvidence) -> bool {
    match (
        evidence.cgroup_oom_kills_before,
        evidence.cgroup_oom_kills_after,
        evidence.docker_oom_killed,
    ) {
        (_, _, Some(docker)) => docker,
        (before, Some(after), None) => after > before.unwrap_or(0),
        // A kernel without the oom_kill counter: SIGKILL at the limit is the evidence.
        (_, None, None) => true,
    }
}

/// The prediction judged: the one made by half the actual time, or the last
/// when the service was not killed.
fn judged_prediction(
    predictions: &[Prediction],
    actual: Option<f64>,
    notes: &mut Vec<String>,
) -> Option<Prediction> {
    let Some(a) = actual else {
        return predictions.last().cloned();
    };
    let judged = predictions
        .iter()
        .rev()
        .find(|p| p.at_s <= a / 2.0)
        .cloned();
    if judged.is_none() {
        notes.push(format!(
            "no prediction was made by half the actual time ({:.1}s): the warm-up is too long for so short a run",
            a / 2.0
        ));
    }
    judged
}

fn peak_usage(samples: &[Sample]) -> Option<u64> {
    samples
        .iter()
        .filter_map(|s| s.cgroup.as_ref().map(|c| c.usage))
        .max()
}

/// The first sample within 1% of the limit.
fn limit_reached(samples: &[Sample], limit: u64) -> Option<f64> {
    samples
        .iter()
        .find(|s| {
            s.cgroup
                .as_ref()
                .is_some_and(|c| c.usage as f64 >= limit as f64 * 0.99)
        })
        .map(|s| s.t)
}

/// `--rate auto`: fill `headroom` in `fill_in` at `footprint` bytes a request.
pub fn auto_rate(headroom: u64, footprint: u64, fill_in: Duration) -> f64 {
    if footprint == 0 {
        return DEFAULT_RATE;
    }
    let rate = headroom as f64 / footprint as f64 / fill_in.as_secs_f64().max(1.0);
    rate.clamp(AUTO_RATE_BOUNDS.0, AUTO_RATE_BOUNDS.1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_rate_fills_the_headroom_in_the_time_asked() {
        let r = auto_rate(200 << 20, 16 << 10, Duration::from_secs(100));
        assert!((r - 128.0).abs() < 0.01, "{r}");
        assert_eq!(auto_rate(1 << 40, 1, Duration::from_secs(1)), 5000.0);
        assert_eq!(auto_rate(1 << 20, 0, Duration::from_secs(1)), DEFAULT_RATE);
    }
}
