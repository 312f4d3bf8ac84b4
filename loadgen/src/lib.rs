//! `loadgen`: drives distinct-key load at a fixed arrival rate against a
//! leaklab service, samples its memory, and judges whether it leaks.
//!
//! ```text
//! loadgen run --spawn --scenario unbounded-cache --out out/   # start a service, load it, judge
//! loadgen run --target http://127.0.0.1:8080 --scenario churn --pid 1234 --json
//! loadgen hunt                                                # the capstone: two leaks found, fixed, proven
//! loadgen scenarios --spawn                                   # the catalogue
//! loadgen bench oha --duration 10                             # loadgen vs oha at max rate
//! loadgen oom --scenario unbounded-cache --limit 256MiB        # run to the OOM kill, predicted vs actual
//! loadgen canary --spawn --toggle task-leak@20                # a baseline/canary pair, a flag flipped on the canary
//! ```
//!
//! Exit codes: 0 no leak, 3 leak found, 2 bad usage, 1 could not run, 4 a
//! hunt's fix not proven, 5 a graded answer not right.
//!
//! # Layout
//!
//! The modules are the pipeline's stages, each depending only on those
//! before it; the commands compose them.
//!
//! - [`args`], [`errors`], [`human`]: command-line values, exit codes and the
//!   usage error, numbers for people.
//! - [`target`]: the target's URL and the loopback rule, the options that
//!   name it, a control-plane client, starting a `leaklab-service` child.
//! - [`engine`]: the load engine (open model at planned times, or max rate),
//!   a scenario's recipe as requests.
//! - [`sampling`]: `/debug/memory` plus `/proc/<pid>` and cgroup sampling,
//!   `samples.jsonl`, target-death detection.
//! - [`judging`]: statistics, signals, the leak class, time-to-OOM, ground
//!   truth, the canary comparison.
//! - [`artifacts`]: the evidence each class calls for (heap-profile diffs,
//!   the task census, smaps, allocator stats).
//! - [`reports`]: SVG plots, HTML, markdown and the stderr summaries.
//! - [`commands`]: `run` (and [`commands::run::RunPlan`], the typed way to
//!   start a run), `hunt`, `canary`, `oom`, `judge`, `grade`, `scenarios`, `bench`.
//! - [`Cli`] / [`Command`]: clap options; `main.rs` only calls [`main`].
//!
//! The JSON loadgen reads and writes is `leaklab_model`'s types.

pub mod args;
pub mod artifacts;
pub mod commands;
pub mod engine;
pub mod errors;
pub mod human;
pub mod judging;
pub mod reports;
pub mod sampling;
pub mod target;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use commands::{bench, canary, grade, hunt, judge, oom, rules, run, scenarios};
pub use errors::{exit, UsageError};

/// Memory-leak load generator for leaklab services.
///
/// Only sends load to the address you name; targets off loopback are refused
/// unless --allow-remote is given.
#[derive(Parser, Debug)]
#[command(name = "loadgen", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Drive a scenario at a fixed rate, sample memory, and judge (exit 3 on a leak).
    Run(run::RunOpts),
    /// The capstone leak hunt, end to end: start a service with two leaks, confirm the
    /// climb, classify, take the right artifacts, fix, and prove the fix (exit 3 on leaks).
    Hunt(hunt::HuntOpts),
    /// Print the target's scenario catalogue.
    Scenarios(scenarios::ScenariosOpts),
    /// Benchmarks (not tests): `loadgen bench oha` compares loadgen with oha.
    Bench(bench::BenchOpts),
    /// The memory-limit experiment: run a leak under a memory limit (a cgroup of its own,
    /// or a compose container with --docker) until the OOM killer ends it, and report
    /// predicted against actual time-to-OOM (exit 3 when it was OOM-killed).
    Oom(oom::OomOpts),
    /// Canary practice: a baseline and a canary of one service under identical load,
    /// flags toggled on the canary at set times (--toggle ID@SECONDS), the two judged side
    /// by side (exit 3 when the canary leaks and the baseline does not).
    Canary(canary::CanaryOpts),
    /// Judge a recorded samples.jsonl again (no load): prints signals and verdict as JSON.
    Judge(judge::JudgeOpts),
    /// Grade an answer to a mystery (`leaklab-service --mystery SEED`) and reveal it
    /// (exit 0 when right and complete, 5 when not).
    Grade(grade::GradeOpts),
    /// Write Prometheus alerting rules for memory burn and time-to-OOM that encode the
    /// same judgement (slope over a window, warm-up excluded, still climbing, a limit),
    /// and with --test a `promtool test rules` file (a leak fires, bounded and churn don't).
    Rules(rules::RulesOpts),
}

/// Runs the parsed command and maps the result to an exit code.
pub fn main(cli: Cli) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("loadgen: cannot start the runtime: {e}");
            return ExitCode::from(exit::COULD_NOT_RUN);
        }
    };
    let result = rt.block_on(dispatch(cli));
    // Don't wait for stray connection tasks.
    rt.shutdown_timeout(Duration::from_millis(200));
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("loadgen: {e:#}");
            if e.downcast_ref::<UsageError>().is_some() {
                ExitCode::from(exit::USAGE)
            } else {
                ExitCode::from(exit::COULD_NOT_RUN)
            }
        }
    }
}

async fn dispatch(cli: Cli) -> anyhow::Result<u8> {
    match cli.command {
        Command::Run(opts) => run::command(&opts).await,
        Command::Hunt(opts) => hunt::execute(&opts).await,
        Command::Scenarios(opts) => scenarios::execute(&opts).await,
        Command::Oom(opts) => oom::execute(&opts).await,
        Command::Canary(opts) => canary::execute(&opts).await,
        Command::Bench(opts) => bench::execute(&opts).await,
        Command::Judge(opts) => judge::execute(&opts).await,
        Command::Grade(opts) => grade::execute(&opts),
        Command::Rules(opts) => rules::execute(&opts),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::RateArg;

    #[test]
    fn run_options_parse_and_conflicts_are_usage_errors() {
        let cli = Cli::try_parse_from([
            "loadgen",
            "run",
            "--spawn",
            "--scenario",
            "churn",
            "--rate",
            "100",
            "--duration",
            "20s",
        ])
        .unwrap();
        let Command::Run(o) = cli.command else {
            panic!("not run")
        };
        assert_eq!(o.rate, RateArg::Fixed(100.0));
        assert_eq!(o.warmup, Duration::from_secs(10));
        let e = Cli::try_parse_from([
            "loadgen",
            "run",
            "--spawn",
            "--target",
            "http://127.0.0.1:1",
            "--scenario",
            "x",
        ])
        .unwrap_err();
        assert_eq!(e.exit_code(), 2);
        let e = Cli::try_parse_from(["loadgen", "run"]).unwrap_err();
        assert_eq!(e.exit_code(), 2);
    }
}
