//! `loadgen hunt`: the capstone leak hunt, end to end, as an on-call engineer
//! would run it.
//!
//! 1. Start a `leaklab-service` with two seeded leaks (default
//!    `unbounded-cache,task-leak`) and drive distinct-key load over both
//!    leaks' routes; confirm the climb.
//! 2. Read the slope (burn rate) and estimate time-to-OOM against `--limit`.
//! 3. Classify each leak from the signals alone (live heap vs RSS vs alive
//!    tasks) and say why, before any artifact is taken.
//! 4. Take the artifact each class calls for: a heap-profile diff (baseline at
//!    the end of warm-up vs the end) for retention, the task census (live
//!    tasks by spawn site, with ages; `--await-dump` adds tokio's await-point
//!    dump) for a task leak, an smaps summary for off-heap memory,
//!    allocator stats for RSS retained, component gauges for a plateau.
//! 5. Walk each retention path to its owner: the component whose gauge grows
//!    per request, the function that allocates, what holds it.
//! 6. Switch the fixes on (`PUT /admin/flags/{id}`), re-run the identical
//!    load, and show the floor flat and the task count stable.
//! 7. Write `hunt.md`, `report.html` and the artifacts under `--out`, print a
//!    summary (`--json`: `leaklab.hunt/v1`), exit 3 when it found leaks.
//!
//! Each step is a function of [`steps`]; [`execute`] runs them in order.

pub mod blind;
mod steps;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use leaklab_model::hunt::HuntReport;
use leaklab_model::Scenario;

use crate::args::{parse_bytes, parse_duration, parse_rate, RateArg};
use crate::errors::{exit, find_scenario, UsageError};
use crate::target::{spawn, AccessOpts};

/// Options of `loadgen hunt`.
#[derive(Args, Clone, Debug)]
pub struct HuntOpts {
    /// The two seeded leaks (catalogue ids, comma-separated), ideally of different classes.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "unbounded-cache,task-leak"
    )]
    pub leaks: Vec<String>,
    /// Memory limit the time-to-OOM estimate is made against.
    #[arg(long, default_value = "1GiB", value_parser = parse_bytes)]
    pub limit: u64,
    /// Length of each of the two runs (leaky, then fixed), warm-up included.
    #[arg(long, default_value = "45s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Warm-up of each run, excluded from the verdict; the baseline heap profile is taken at its end.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Triggering requests per second (`auto`: loadgen's default, capped by the leak budget).
    #[arg(long, default_value = "auto", value_parser = parse_rate)]
    pub rate: RateArg,
    /// End each of the two runs as soon as its evidence is decisive (the
    /// sequential test of `loadgen run --until-verdict`): `--duration` is
    /// then the longest a run may last. Both runs keep the same rate and
    /// workload; each stops on its own evidence.
    #[arg(long, conflicts_with = "blind")]
    pub until_verdict: bool,
    /// Directory for the report and the artifacts.
    #[arg(long, default_value = "out/hunt")]
    pub out: PathBuf,
    /// Print only the `leaklab.hunt/v1` JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Also take tokio's await-point task dump for a task leak (tasks-await.txt),
    /// beside the task census. Opt-in: such a dump can wedge a busy service.
    #[arg(long)]
    pub await_dump: bool,
    /// Hunt without being told which leaks are on (see `blind`): screen every
    /// route, drive the suspects alone, fix only what was named. Against a
    /// mystery service it starts itself, or `--target`.
    #[arg(long)]
    pub blind: bool,
    /// With --blind: the seed of the mystery service to start (default: one
    /// from the clock, printed). Grade the answer with `loadgen grade`.
    #[arg(long, value_name = "SEED", conflicts_with = "target")]
    pub mystery: Option<u64>,
    /// With --blind: hunt a running leaklab-service (e.g. one started with
    /// `--mystery SEED`) instead of starting one.
    #[arg(long, value_name = "URL", requires = "blind")]
    pub target: Option<String>,
    /// The --target's pid, for /proc reads (RSS, smaps).
    #[arg(long, requires = "target")]
    pub pid: Option<u32>,
    /// With --blind, for tests and teaching: switch off these flags in the
    /// proof instead of the ones the hunt named (a wrong fix must come out
    /// as "fix not proven").
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "ID",
        requires = "blind",
        hide = true
    )]
    pub fix_only: Option<Vec<String>>,
    #[command(flatten)]
    pub access: AccessOpts,
}

/// Runs the hunt; returns the exit code.
pub async fn execute(opts: &HuntOpts) -> Result<u8> {
    if opts.blind || opts.mystery.is_some() {
        return blind::execute(opts).await;
    }
    let started = Instant::now();
    let seeded = seeded_leaks(opts).await?;
    std::fs::create_dir_all(&opts.out)
        .with_context(|| format!("creating {}", opts.out.display()))?;
    let (service, control) = steps::start_service(opts, &seeded).await?;
    let baseline = steps::baseline_profile(control.clone(), opts.warmup);
    let leaky = steps::leaky_run(opts, &service, &seeded).await?;
    steps::read_burn(opts, &leaky);
    let classified = steps::classify(&leaky, &seeded);
    let baseline = baseline.await.ok().and_then(Result::ok);
    let taken = steps::Taken {
        control: &control,
        pid: service.pid,
        baseline: baseline.as_deref(),
        leaky: &leaky,
        mixed: seeded.len(),
    };
    let findings = steps::take_artifacts(opts, &taken, classified).await?;
    steps::walk_paths(&findings);
    let (fixed, after_fix) = steps::prove_fix(opts, &service, &control).await?;
    let report = steps::write_report(opts, findings, after_fix, &leaky, &fixed, started)?;
    drop(service);
    Ok(exit_code(&report))
}

/// The two seeded leaks from the service binary's catalogue; usage errors
/// for anything else.
async fn seeded_leaks(opts: &HuntOpts) -> Result<Vec<Scenario>> {
    if opts.leaks.len() != 2 || opts.leaks[0] == opts.leaks[1] {
        bail!(UsageError(format!(
            "--leaks takes two different catalogue ids, got {:?}",
            opts.leaks
        )));
    }
    let catalogue = spawn::catalogue().await?;
    let mut seeded = Vec::new();
    for id in &opts.leaks {
        let s = find_scenario(&catalogue, id)?;
        if s.negative_control {
            bail!(UsageError(format!(
                "{id} is a negative control (no leak to hunt)"
            )));
        }
        seeded.push(s.clone());
    }
    if seeded[0].class == seeded[1].class {
        eprintln!(
            "note: both leaks are of class {}; the hunt is clearest with two different classes",
            seeded[0].class
        );
    }
    Ok(seeded)
}

/// 0 nothing found, 3 leaks found and the fix proven, 4 leaks found and the
/// re-measurement with the fixes on still climbs.
fn exit_code(report: &HuntReport) -> u8 {
    match report.fix_proven {
        None => exit::NO_LEAK,
        Some(true) => exit::LEAK,
        Some(false) => exit::FIX_NOT_PROVEN,
    }
}
