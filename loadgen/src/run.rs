//! `loadgen run`: drive one scenario (or all, mixed) at a fixed arrival rate,
//! sample the target's memory, judge, and write the summary and report.
//!
//! [`execute`] is the reusable entry point (`hunt`, `canary` and `oom` call it
//! with their own [`RunOpts`]); it never prints to stdout and returns the
//! [`RunSummary`] with the exit code it implies.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use tokio::time::Instant;

use crate::analysis::{self, human_bytes};
use crate::catalogue::Scenario;
use crate::load::{self, LoadConfig, LoadStats, Progress, Rate, Unit};
use crate::sampler::{self, SamplerConfig, Shared};
use crate::summary::{Latency, LoadSummary, RunSummary, SamplesInfo, SCHEMA};
use crate::target::{Control, Target};
use crate::{exit, parse_bytes, parse_duration, spawn, RateArg, UsageError};

/// Default triggering requests per second (`--rate auto`), before the
/// leak-budget cap.
pub const DEFAULT_RATE: f64 = 200.0;
/// The pre-load baseline lasts this long.
const BASELINE: Duration = Duration::from_millis(1200);

/// Options of `loadgen run`.
#[derive(Args, Clone, Debug)]
pub struct RunOpts {
    /// The service to load (http://HOST:PORT). Only loopback targets are
    /// accepted unless --allow-remote is given.
    #[arg(
        long,
        env = "LEAKLAB_TARGET",
        default_value = "http://127.0.0.1:8080",
        conflicts_with = "spawn"
    )]
    pub target: String,
    /// Start a leaklab-service child on a free loopback port instead of using
    /// --target, with the scenario's leak on (see --leak, --fixed). It is
    /// stopped when the run ends.
    #[arg(long)]
    pub spawn: bool,
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
    #[arg(long, default_value = "auto", value_parser = crate::parse_rate)]
    pub rate: RateArg,
    /// Whole run length, warm-up included (e.g. 40s, 2m).
    #[arg(long, default_value = "40s", value_parser = parse_duration)]
    pub duration: Duration,
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
    /// Bearer token for the target's /debug and /admin routes.
    #[arg(long, env = "LEAKLAB_ADMIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Allow a target that is not on loopback. Only load machines you own.
    #[arg(long)]
    pub allow_remote: bool,
    /// Directory for samples.jsonl, summary.json, report.html and plots.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Print only the summary JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// A finished run.
#[derive(Debug)]
pub struct RunOutcome {
    pub summary: RunSummary,
    /// 0 no leak, 3 leak found, 1 the run could not complete.
    pub exit_code: u8,
    /// Every sample kept, baseline to cool-down (what `samples.jsonl` holds).
    pub samples: Vec<sampler::Sample>,
}

/// The parts of a run that are set up before the load starts.
struct Prepared {
    target: Target,
    control: Control,
    service: Option<spawn::Service>,
    catalogue: Vec<Scenario>,
    scenario: Option<Scenario>,
    units: Vec<Unit>,
    caps: Vec<Option<u64>>,
    rate: Rate,
    pid: Option<u32>,
}

async fn prepare(opts: &RunOpts) -> Result<Prepared> {
    if opts.warmup >= opts.duration {
        return Err(UsageError(format!(
            "--warmup ({:?}) must be shorter than --duration ({:?})",
            opts.warmup, opts.duration
        ))
        .into());
    }
    if let Some(dir) = &opts.out {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let (target_url, service) = if opts.spawn {
        let mut args: Vec<String> = Vec::new();
        let leaks: Vec<String> = if opts.fixed {
            vec![]
        } else if !opts.leaks.is_empty() {
            opts.leaks.clone()
        } else {
            opts.scenario
                .iter()
                .filter(|s| *s != "all")
                .cloned()
                .collect()
        };
        let known = tokio::task::spawn_blocking(spawn::catalogue).await??;
        for id in leaks
            .iter()
            .chain(opts.scenario.iter().filter(|s| *s != "all"))
        {
            if !known.iter().any(|s| &s.id == id) {
                let ids: Vec<&str> = known.iter().map(|s| s.id.as_str()).collect();
                return Err(UsageError(format!(
                    "unknown scenario {id:?}; the service knows: {}, all",
                    ids.join(", ")
                ))
                .into());
            }
        }
        for l in leaks {
            args.push("--leak".into());
            args.push(l);
        }
        if opts.fixed {
            // Off explicitly too: a "bad release" binary turns its leaks on by default.
            for s in &known {
                args.push("--fix".into());
                args.push(s.id.clone());
            }
        }
        if let Some(t) = &opts.token {
            args.push("--admin-token".into());
            args.push(t.clone());
        }
        let log = opts.out.as_ref().map(|d| d.join("service.log"));
        let svc =
            tokio::task::spawn_blocking(move || spawn::start(&args, log.as_deref())).await??;
        (svc.url.clone(), Some(svc))
    } else {
        (opts.target.clone(), None)
    };
    let target = Target::parse(&target_url, opts.token.clone(), opts.allow_remote)?;
    let control = Control::new(&target);
    control
        .wait_ready(if service.is_some() {
            Duration::from_secs(10)
        } else {
            Duration::from_secs(2)
        })
        .await?;

    let catalogue: Vec<Scenario> = match control.get_json("/admin/scenarios").await {
        Ok(c) => c,
        Err(e) if opts.scenario.is_some() => {
            return Err(anyhow::anyhow!("reading the target's catalogue: {e}"))
        }
        Err(_) => Vec::new(),
    };
    let (scenario, mut picked): (Option<Scenario>, Vec<Scenario>) = match opts.scenario.as_deref() {
        Some("all") => (None, catalogue.clone()),
        // A comma list: a mixed workload over just those scenarios (`loadgen hunt`).
        Some(ids) if ids.contains(',') => {
            let mut picked = Vec::new();
            for id in ids.split(',').map(str::trim).filter(|id| !id.is_empty()) {
                let s = catalogue
                    .iter()
                    .find(|s| s.id == id)
                    .cloned()
                    .ok_or_else(|| {
                        let known: Vec<&str> = catalogue.iter().map(|s| s.id.as_str()).collect();
                        UsageError(format!(
                            "unknown scenario {id:?}; the target knows: {}, all",
                            known.join(", ")
                        ))
                    })?;
                picked.push(s);
            }
            (None, picked)
        }
        Some(id) => {
            let s = catalogue
                .iter()
                .find(|s| s.id == id)
                .cloned()
                .ok_or_else(|| {
                    let ids: Vec<&str> = catalogue.iter().map(|s| s.id.as_str()).collect();
                    UsageError(format!(
                        "unknown scenario {id:?}; the target knows: {}, all",
                        ids.join(", ")
                    ))
                })?;
            (Some(s.clone()), vec![s])
        }
        None => (None, Vec::new()),
    };
    let units: Vec<Unit> = match &opts.path {
        Some(p) => vec![Unit::get(p)?],
        None => picked
            .iter()
            .map(Unit::from_scenario)
            .collect::<Result<_>>()?,
    };
    let budget = control
        .get_json::<sampler::TargetMemory>("/debug/memory")
        .await
        .ok()
        .and_then(|m| m.leak_budget_bytes);
    let mixed = picked.len() > 1;
    let caps: Vec<Option<u64>> = picked
        .iter()
        .map(|s| {
            // In a mixed run, heavy scenarios stop at half the leak budget's
            // worth of requests instead of slowing every other scenario down.
            let budget_cap = budget
                .filter(|_| mixed && s.footprint_bytes() > 0)
                .map(|b| (b / 2 / s.footprint_bytes()).max(1));
            // A scenario whose own rate hint is below its share of a mixed
            // run (a burst per request) gets at most hint x duration requests.
            let hint_cap = s
                .rate
                .filter(|_| mixed)
                .map(|r| (r * opts.duration.as_secs_f64()).ceil().max(1.0) as u64);
            [s.requests_per_run, budget_cap, hint_cap]
                .into_iter()
                .flatten()
                .min()
        })
        .collect();

    let rate = match opts.rate {
        RateArg::Max => Rate::Max,
        RateArg::Fixed(r) => Rate::Fixed(r),
        // A mix takes its scenarios' rate hints as per-scenario caps (above),
        // not as the rate of the whole mix.
        RateArg::Auto if mixed => Rate::Fixed(DEFAULT_RATE),
        RateArg::Auto => Rate::Fixed(auto_rate(&mut picked, budget, opts.duration)),
    };
    let pid = opts.pid.or(service.as_ref().map(|s| s.pid));
    Ok(Prepared {
        target,
        control,
        service,
        catalogue,
        scenario,
        units,
        caps,
        rate,
        pid,
    })
}

/// `--rate auto`: the scenarios' own rate hint or [`DEFAULT_RATE`], lowered
/// so that no scenario's footprint over the run exceeds half the leak budget.
pub fn auto_rate(scenarios: &mut [Scenario], budget: Option<u64>, duration: Duration) -> f64 {
    let n = scenarios.len().max(1) as f64;
    let mut rate = scenarios
        .iter()
        .filter_map(|s| s.rate)
        .fold(DEFAULT_RATE, f64::min);
    if let Some(budget) = budget {
        for s in scenarios.iter() {
            let footprint = s.footprint_bytes() as f64;
            if footprint > 0.0 {
                // Each scenario gets rate / n of a mixed run.
                let cap = 0.5 * budget as f64 / (footprint * duration.as_secs_f64()) * n;
                rate = rate.min(cap);
            }
        }
    }
    rate.max(1.0).floor()
}

/// Runs the whole thing. Progress goes to stderr unless `opts.json`.
pub async fn execute(opts: &RunOpts) -> Result<RunOutcome> {
    execute_with(opts, None).await
}

/// [`execute`], telling `started` the instant the load starts (sample time 0),
/// for callers that act on the target during the run (`loadgen canary`'s toggles).
pub async fn execute_with(
    opts: &RunOpts,
    started: Option<tokio::sync::oneshot::Sender<Instant>>,
) -> Result<RunOutcome> {
    let p = prepare(opts).await?;
    let key_prefix = format!(
        "lg{:x}{:x}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    );
    let cfg = LoadConfig {
        target: p.target.clone(),
        rate: p.rate,
        duration: opts.duration,
        ramp: opts.ramp,
        connections: opts.connections,
        max_in_flight: opts.max_in_flight.max(1),
        max_lag: opts.max_lag,
        key_prefix,
        max_units: opts.requests,
        per_unit_cap: p.caps.clone(),
    };
    let progress = Arc::new(Progress::default());
    let shared = Arc::new(Shared::default());
    let start = Instant::now() + BASELINE;
    if let Some(tx) = started {
        // The caller may have given up waiting; the run goes on regardless.
        let _ = tx.send(start);
    }
    let samples_path = opts.out.as_ref().map(|d| d.join("samples.jsonl"));
    let sampler_cfg = SamplerConfig {
        interval: opts.sample_interval,
        pid: p.pid,
        warmup: opts.warmup,
        duration: opts.duration,
        samples_path: samples_path.clone(),
        exit_probe: p.service.as_ref().map(|s| s.exit_probe()),
    };
    let stop_at = opts.duration + Duration::from_millis(500);
    let sampler = tokio::spawn(sampler::run(
        p.control.clone(),
        sampler_cfg,
        progress.clone(),
        shared.clone(),
        start,
        stop_at,
    ));
    let printer = (!opts.json).then(|| {
        tokio::spawn(progress_line(
            progress.clone(),
            shared.clone(),
            start,
            opts.duration,
        ))
    });

    tokio::time::sleep_until(start).await;
    let ctrl_c = {
        let progress = progress.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                progress.stop.store(true, Ordering::Relaxed);
            }
        })
    };
    let stats = load::drive(&cfg, Arc::new(p.units.clone()), progress.clone(), start).await?;
    let log = tokio::time::timeout(stop_at + Duration::from_secs(15), sampler)
        .await
        .context("the memory sampler did not finish")??
        .context("memory sampler")?;
    ctrl_c.abort();
    if let Some(h) = printer {
        h.abort();
    }
    let died = shared
        .died
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    // A target that dies is often already reaped by the time we look; the
    // child's own exit status is the better reason.
    let died = died.map(|mut d| {
        if let Some(status) = p.service.as_ref().and_then(|s| s.exit_status()) {
            if !d.reason.contains(&status) {
                d.reason = format!("{}; {status}", d.reason);
            }
        }
        d
    });

    let judged = analysis::judge(&log.samples, &p.catalogue, opts.limit);
    let end_s = died
        .as_ref()
        .map(|d| d.at_s)
        .unwrap_or(opts.duration.as_secs_f64());
    let rate_achieved = stats.rate_between(opts.warmup.as_secs_f64(), end_s);
    let ground_truth = analysis::ground_truth(p.scenario.as_ref(), &judged.signals, rate_achieved);
    let mut notes = Vec::new();
    if let Some(d) = &died {
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
    let mut summary = RunSummary {
        schema: SCHEMA.into(),
        scenario: opts.scenario.clone().or_else(|| opts.path.clone()),
        target: p.target.base.clone(),
        pid: p.pid,
        load: load_summary(&stats, p.rate, rate_achieved, opts),
        signals: judged.signals,
        verdict: judged.verdict,
        ground_truth,
        target_died: died.clone(),
        samples: SamplesInfo {
            taken: log.taken,
            kept: log.samples.len(),
            interval_s: opts.sample_interval.as_secs_f64(),
            path: samples_path.map(|p| p.display().to_string()),
        },
        report: None,
        notes,
    };
    if let Some(dir) = &opts.out {
        match crate::report::write(dir, &summary, &log.samples, &stats) {
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
    drop(p.service);
    Ok(RunOutcome {
        summary,
        exit_code,
        samples: log.samples,
    })
}

fn load_summary(stats: &LoadStats, rate: Rate, rate_achieved: f64, opts: &RunOpts) -> LoadSummary {
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
        warmup_s: opts.warmup.as_secs_f64(),
        latency_ms: latency,
    }
}

/// Once a second on stderr: requests, errors, drops and the latest memory.
async fn progress_line(
    progress: Arc<Progress>,
    shared: Arc<Shared>,
    start: Instant,
    duration: Duration,
) {
    let mut tick = tokio::time::interval_at(start + Duration::from_secs(1), Duration::from_secs(1));
    let mut last_done = 0;
    // Bounded by the run's duration (and aborted by the run when it ends).
    for _ in 0..=duration.as_secs() + 30 {
        tick.tick().await;
        let done = progress.units_done.load(Ordering::Relaxed);
        let mem = shared
            .latest
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mem = match mem
            .as_ref()
            .and_then(|s| s.memory.as_ref().map(|m| (m, s.rss())))
        {
            Some((m, rss)) => format!(
                " | allocated {} rss {} tasks {}",
                human_bytes(m.allocated as f64),
                human_bytes(rss.unwrap_or(m.rss) as f64),
                m.alive_tasks
            ),
            None => " | memory: no answer".into(),
        };
        eprintln!(
            "[{:>4.0}s] {:>8} done {:>6}/s  errors {}  dropped {}{mem}",
            start.elapsed().as_secs_f64(),
            done,
            done - last_done,
            progress.errors.load(Ordering::Relaxed),
            progress.dropped.load(Ordering::Relaxed),
        );
        last_done = done;
    }
}

/// The human summary (stderr).
pub fn print_human(s: &RunSummary) {
    let l = &s.load;
    eprintln!();
    eprintln!(
        "loadgen: {} against {}{}",
        s.scenario.as_deref().unwrap_or("-"),
        s.target,
        s.pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
    );
    eprintln!(
        "load: {} target, {:.1}/s achieved after warm-up; {} requests, {} errors, {} dropped; latency ms p50 {:.2} p90 {:.2} p99 {:.2} p99.9 {:.2} max {:.2}",
        l.rate_target.map(|r| format!("{r:.0}/s")).unwrap_or_else(|| "max".into()),
        l.rate_achieved,
        l.requests,
        l.errors,
        l.dropped,
        l.latency_ms.p50,
        l.latency_ms.p90,
        l.latency_ms.p99,
        l.latency_ms.p999,
        l.latency_ms.max
    );
    eprintln!(
        "signals after {:.0} s warm-up (Theil–Sen slope [95% CI], Mann–Kendall p, first → last):",
        l.warmup_s
    );
    for name in [
        "allocated",
        "resident",
        "rss",
        "rss_outside_allocator",
        "alive_tasks",
        "open_fds",
        "maps",
    ] {
        if let Some(f) = s.signals.get(name) {
            print_signal(name, f);
        }
    }
    for (name, f) in s
        .signals
        .iter()
        .filter(|(n, f)| n.starts_with("components.") && f.slope_per_s != 0.0)
    {
        print_signal(name, f);
    }
    let v = &s.verdict;
    let head = if v.leak { "LEAK" } else { "no leak" };
    eprintln!("verdict: {head}: {}", v.class);
    for f in &v.findings {
        eprintln!(
            "  {} in {} (gauge {}), signal {} {:+.3}/s{}",
            f.class,
            f.component.as_deref().unwrap_or("?"),
            f.gauge.as_deref().unwrap_or("?"),
            f.signal,
            f.slope_per_s,
            f.burn_rate_bytes_per_h
                .map(|b| format!(", burn rate {}/h", human_bytes(b)))
                .unwrap_or_default()
        );
    }
    for r in &v.reasons {
        eprintln!("  because {r}");
    }
    if let (Some(t), Some(limit)) = (v.time_to_oom_s, v.limit_bytes) {
        let [lo, hi] = v.time_to_oom_interval_s.unwrap_or([None, None]);
        eprintln!(
            "  time to OOM against {}: {} [{} – {}]",
            human_bytes(limit as f64),
            human_secs(Some(t)),
            human_secs(lo),
            human_secs(hi)
        );
    }
    if let Some(g) = &s.ground_truth {
        eprintln!(
            "ground truth: {} expected {:.1}/s ({} per request × {:.1}/s), measured {:.1}/s: error {:+.1}%",
            g.signal, g.expected_slope_per_s, g.per_request, g.rate_achieved, g.measured_slope_per_s, g.error_pct
        );
    }
    if let Some(d) = &s.target_died {
        eprintln!("TARGET DIED at {:.1} s: {}", d.at_s, d.reason);
    }
    for n in &s.notes {
        eprintln!("note: {n}");
    }
    if let Some(r) = &s.report {
        eprintln!("report: {r}");
    }
}

fn print_signal(name: &str, f: &crate::summary::SignalFit) {
    let bytes =
        !name.starts_with("components.") && !matches!(name, "alive_tasks" | "open_fds" | "maps");
    let v = |x: f64| {
        if bytes {
            human_bytes(x)
        } else {
            format!("{x:.0}")
        }
    };
    eprintln!(
        "  {name:<34} {:>12}/s [{}, {}] p={:.1e}  {} → {}{}",
        v(f.slope_per_s),
        v(f.ci95[0]),
        v(f.ci95[1]),
        f.p_value,
        v(f.first),
        v(f.last),
        if f.rising { "  RISING" } else { "" }
    );
}

fn human_secs(s: Option<f64>) -> String {
    match s {
        None => "∞".into(),
        Some(s) if s < 120.0 => format!("{s:.0} s"),
        Some(s) if s < 7200.0 => format!("{:.1} min", s / 60.0),
        Some(s) => format!("{:.1} h", s / 3600.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_rate_keeps_a_heavy_scenario_inside_half_the_leak_budget() {
        let mut cat = crate::catalogue::parse(
            r#"[{"id":"pin","class":"retention","method":"POST","path":"/d","bytes_per_request":1048576},
                {"id":"light","class":"retention","method":"GET","path":"/i/{key}","bytes_per_request":10000}]"#,
        )
        .unwrap();
        let d = Duration::from_secs(40);
        // 0.5 × 2 GiB / (1 MiB × 40 s) = 25.6/s.
        assert_eq!(auto_rate(&mut cat[..1], Some(2 << 30), d), 25.0);
        assert_eq!(auto_rate(&mut cat[1..], Some(2 << 30), d), DEFAULT_RATE);
        assert_eq!(auto_rate(&mut cat[1..], None, d), DEFAULT_RATE);
    }
}
