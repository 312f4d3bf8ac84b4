//! Before a run's load starts: the target started or parsed and ready, its
//! catalogue read, the workload's scenarios found, their request shapes
//! prepared, and the rate and per-scenario caps set.

use std::time::Duration;

use anyhow::{Context, Result};
use leaklab_model::{Catalogue, Scenario};

use super::plan::{RunPlan, SpawnLeaks, TargetPlan, Workload};
use crate::args::RateArg;
use crate::engine::{Rate, Unit};
use crate::errors::{find_scenario, UsageError};
use crate::target::metrics::MetricsSource;
use crate::target::spawn::{self, Launch, Service};
use crate::target::{Control, ControlError, Target};

/// Default triggering requests per second (`--rate auto`), before the
/// leak-budget cap.
pub const DEFAULT_RATE: f64 = 200.0;

/// The parts of a run that are set up before the load starts.
pub struct Prepared {
    pub target: Target,
    pub control: Control,
    /// The child started for the run, stopped when this is dropped.
    pub service: Option<Service>,
    pub catalogue: Catalogue,
    /// The one scenario of the run, for the ground truth.
    pub scenario: Option<Scenario>,
    pub units: Vec<Unit>,
    /// Triggering requests per unit at most (mixed runs).
    pub caps: Vec<Option<u64>>,
    pub rate: Rate,
    pub pid: Option<u32>,
    /// Not a leaklab service: sampled from outside only.
    pub external: bool,
    /// The Prometheus exposition sampled beside /proc, if any.
    pub metrics: Option<MetricsSource>,
}

/// Sets the run up.
pub async fn prepare(plan: &RunPlan) -> Result<Prepared> {
    if plan.warmup >= plan.duration {
        return Err(UsageError(format!(
            "--warmup ({:?}) must be shorter than --duration ({:?})",
            plan.warmup, plan.duration
        ))
        .into());
    }
    if let Some(dir) = &plan.out {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let (target, service) = start_target(plan).await?;
    let control = Control::new(&target);
    let ready_within = Duration::from_secs(if service.is_some() { 10 } else { 2 });
    control.wait_ready(ready_within).await?;
    // A target with no /debug/memory is not a leaklab service: it is
    // sampled from outside (its pid's /proc, its cgroup, its /metrics).
    let external = matches!(
        control.memory().await,
        Err(ControlError::Status { .. } | ControlError::Json { .. })
    );
    if let Some(pid) = plan.pid {
        check_pid(pid, &target)?;
    }
    let catalogue = if external {
        check_external(plan)?;
        Catalogue::default()
    } else {
        match control.catalogue().await {
            Ok(c) => c,
            Err(e) if !matches!(plan.workload, Workload::Path(_)) => {
                return Err(anyhow::anyhow!("reading the target's catalogue: {e}"))
            }
            Err(_) => Catalogue::default(),
        }
    };
    let metrics = open_metrics(plan, &target, external).await?;
    let (scenario, picked) = pick(&plan.workload, &catalogue)?;
    let units: Vec<Unit> = match &plan.workload {
        Workload::Path(p) => vec![Unit::get(p)?],
        _ => picked
            .iter()
            .map(Unit::from_scenario)
            .collect::<Result<_>>()?,
    };
    let budget = control
        .memory()
        .await
        .ok()
        .and_then(|m| m.leak_budget_bytes)
        // auto_rate and caps keep to half of what they are given.
        .map(|b| (b as f64 * plan.budget_share * 2.0) as u64);
    let mixed = picked.len() > 1;
    let rate = match plan.rate {
        RateArg::Max => Rate::Max,
        RateArg::Fixed(r) => Rate::Fixed(r),
        // A mix takes its scenarios' rate hints as per-scenario caps (below),
        // not as the rate of the whole mix.
        RateArg::Auto if mixed => Rate::Fixed(DEFAULT_RATE),
        RateArg::Auto => Rate::Fixed(auto_rate(&picked, budget, plan.duration)),
    };
    let pid = plan.pid.or(service.as_ref().map(|s| s.pid));
    Ok(Prepared {
        target,
        control,
        service,
        catalogue,
        scenario,
        units,
        caps: caps(&picked, budget, plan.duration),
        rate,
        pid,
        external,
        metrics,
    })
}

/// `pid` must be alive and, when it shares our network namespace and the
/// target is local, hold the target's listening socket: samples of another
/// process would judge the wrong program.
fn check_pid(pid: u32, target: &Target) -> Result<()> {
    if !leaklab_probe::is_alive(pid) {
        return Err(UsageError(format!("--pid {pid}: no such running process")).into());
    }
    let same_netns = std::fs::read_link(format!("/proc/{pid}/ns/net")).ok()
        == std::fs::read_link("/proc/self/ns/net").ok();
    let port = target.addr.port();
    // Only a loopback target is known to be served from this host: a pid
    // given beside a remote target (--allow-remote) is read, not matched.
    if same_netns && target.addr.ip().is_loopback() {
        if let Ok(false) = leaklab_probe::listens_on(pid, port) {
            return Err(UsageError(format!(
                "--pid {pid} does not listen on port {port}: it is not {}'s process",
                target.base
            ))
            .into());
        }
    }
    Ok(())
}

/// What a target that is not a leaklab service needs: a `--path` template
/// (it has no catalogue) and something to sample (`--pid` or `--metrics`).
fn check_external(plan: &RunPlan) -> Result<()> {
    if !matches!(plan.workload, Workload::Path(_)) {
        return Err(UsageError(
            "the target has no /debug/memory and no catalogue (not a leaklab service): \
             load it with --path TEMPLATE (e.g. --path '/k/{key}') instead of --scenario"
                .into(),
        )
        .into());
    }
    if plan.pid.is_none() && plan.metrics.is_none() {
        return Err(UsageError(
            "the target has no /debug/memory (not a leaklab service): give --pid PID \
             (its /proc and cgroup are read) and/or --metrics URL"
                .into(),
        )
        .into());
    }
    Ok(())
}

/// `--metrics` checked, or the target's own /metrics for an external target
/// when it answers Prometheus text.
async fn open_metrics(
    plan: &RunPlan,
    target: &Target,
    external: bool,
) -> Result<Option<MetricsSource>> {
    let access = match &plan.target {
        TargetPlan::Url { access, .. } => access.clone(),
        TargetPlan::Spawn { token, .. } => crate::target::AccessOpts {
            token: token.clone(),
            allow_remote: false,
        },
    };
    match &plan.metrics {
        Some(url) => Ok(Some(
            MetricsSource::open(url, &access, &plan.metric_names).await?,
        )),
        // `--metric` alone: the target's own /metrics.
        None if !plan.metric_names.is_empty() => {
            let url = format!("{}/metrics", target.base);
            Ok(Some(
                MetricsSource::open(&url, &access, &plan.metric_names).await?,
            ))
        }
        None if external => {
            let url = format!("{}/metrics", target.base);
            Ok(MetricsSource::open(&url, &access, &[]).await.ok())
        }
        None => Ok(None),
    }
}

/// The target: a child of ours started as the plan says, or the URL given.
async fn start_target(plan: &RunPlan) -> Result<(Target, Option<Service>)> {
    let (leaks, token) = match &plan.target {
        TargetPlan::Url { url, access } => return Ok((access.target(url)?, None)),
        TargetPlan::Spawn { leaks, token } => (leaks, token),
    };
    let known = spawn::catalogue().await?;
    let on: &[String] = match leaks {
        SpawnLeaks::Workload => plan.workload.ids(),
        SpawnLeaks::These(ids) => ids,
        SpawnLeaks::Fixed => &[],
    };
    for id in on.iter().chain(plan.workload.ids()) {
        find_scenario(&known, id)?;
    }
    let mut launch = Launch::new().leaks(on.iter().cloned());
    if *leaks == SpawnLeaks::Fixed {
        // Off explicitly too: a "bad release" binary turns its leaks on by default.
        launch = known.iter().fold(launch, |l, s| l.fix(s.id.clone()));
    }
    launch = launch.admin_token(token.as_deref());
    if let Some(dir) = &plan.out {
        launch = launch.log(dir.join("service.log"));
    }
    let service = launch.start().await?;
    let target = Target::parse(&service.url, token.clone(), false)?;
    Ok((target, Some(service)))
}

/// The workload's scenarios: (the single one, every one sent).
fn pick(workload: &Workload, catalogue: &Catalogue) -> Result<(Option<Scenario>, Vec<Scenario>)> {
    Ok(match workload {
        Workload::All => (None, catalogue.0.clone()),
        Workload::Mix(ids) => {
            let picked = ids
                .iter()
                .map(|id| find_scenario(catalogue, id).cloned())
                .collect::<Result<Vec<_>, _>>()?;
            (None, picked)
        }
        Workload::One(id) => {
            let s = find_scenario(catalogue, id)?.clone();
            (Some(s.clone()), vec![s])
        }
        Workload::Path(_) => (None, Vec::new()),
    })
}

/// Per-scenario caps of a mixed run.
fn caps(picked: &[Scenario], budget: Option<u64>, duration: Duration) -> Vec<Option<u64>> {
    let mixed = picked.len() > 1;
    picked
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
                .map(|r| (r * duration.as_secs_f64()).ceil().max(1.0) as u64);
            budget_cap.into_iter().chain(hint_cap).min()
        })
        .collect()
}

/// `--rate auto`: the scenarios' own rate hint or [`DEFAULT_RATE`], lowered
/// so that no scenario's footprint over the run exceeds half the leak budget.
pub fn auto_rate(scenarios: &[Scenario], budget: Option<u64>, duration: Duration) -> f64 {
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

#[cfg(test)]
mod tests {
    use super::*;
    use leaklab_model::{LeakClass, Step};

    #[test]
    fn auto_rate_keeps_a_heavy_scenario_inside_half_the_leak_budget() {
        let cat = [
            Scenario::new(
                "pin",
                LeakClass::Retention,
                "documents",
                vec![Step::with_body("POST", "/d", 0)],
            )
            .retains(1048576),
            Scenario::new(
                "light",
                LeakClass::Retention,
                "cache",
                vec![Step::get("/i/{key}")],
            )
            .retains(10000),
        ];
        let d = Duration::from_secs(40);
        // 0.5 × 2 GiB / (1 MiB × 40 s) = 25.6/s.
        assert_eq!(auto_rate(&cat[..1], Some(2 << 30), d), 25.0);
        assert_eq!(auto_rate(&cat[1..], Some(2 << 30), d), DEFAULT_RATE);
        assert_eq!(auto_rate(&cat[1..], None, d), DEFAULT_RATE);
    }
}
