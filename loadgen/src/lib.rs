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
//! Exit codes: 0 no leak, 3 leak found, 2 bad usage, 1 could not run.
//!
//! # Layout
//!
//! - [`Cli`] / [`Command`]: clap options; `main.rs` only calls [`main`].
//! - [`run`]: `loadgen run`; [`run::execute`] is the reusable entry point.
//! - [`load`]: the load engine (open model at planned times, or max rate).
//! - [`sampler`]: `/debug/memory` plus `/proc/<pid>` and cgroup sampling,
//!   `samples.jsonl`, target-death detection.
//! - [`stats`]: Theil–Sen, Mann–Kendall and helpers.
//! - [`analysis`]: signals, the leak class, component, time-to-OOM, ground truth.
//! - [`summary`]: the `leaklab.run/v1` JSON.
//! - [`report`]: SVG plots and the HTML report.
//! - [`catalogue`]: the target's scenario catalogue.
//! - [`target`]: target URL, the loopback rule, control-plane requests.
//! - [`spawn`]: starting a `leaklab-service` child.
//! - [`bench`]: `loadgen bench oha`, loadgen against oha at max rate.
//! - [`hunt`]: `loadgen hunt`, the capstone leak hunt end to end.
//! - [`pprof`]: reading pprof heap profiles and diffing them by allocation site.
//! - [`oom`]: `loadgen oom`, the memory-limit experiment (cgroup or compose).
//! - [`canary`]: `loadgen canary`, a baseline and a canary under identical
//!   load, flags toggled on the canary, judged side by side.
//!
//! `loadgen judge samples.jsonl --catalogue cat.json` judges a recorded run again.

pub mod analysis;
pub mod bench;
pub mod canary;
pub mod catalogue;
pub mod hunt;
pub mod load;
pub mod oom;
pub mod pprof;
pub mod report;
pub mod run;
pub mod sampler;
pub mod spawn;
pub mod stats;
pub mod summary;
pub mod target;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// Exit codes (docs/interfaces.md).
pub mod exit {
    pub const NO_LEAK: u8 = 0;
    pub const COULD_NOT_RUN: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const LEAK: u8 = 3;
}

/// A usage error found after parsing (bad target, unknown scenario): exit 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

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
    Scenarios(ScenariosOpts),
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
    Judge(JudgeOpts),
}

/// Options of `loadgen judge`.
#[derive(Args, Debug)]
pub struct JudgeOpts {
    /// A samples.jsonl written by `loadgen run --out`.
    pub samples: std::path::PathBuf,
    /// The catalogue JSON (`leaklab-service scenarios --json`), for components.
    #[arg(long)]
    pub catalogue: Option<std::path::PathBuf>,
    /// Memory limit for time-to-OOM.
    #[arg(long, value_parser = parse_bytes)]
    pub limit: Option<u64>,
}

/// Options of `loadgen scenarios`.
#[derive(Args, Debug)]
pub struct ScenariosOpts {
    #[arg(
        long,
        env = "LEAKLAB_TARGET",
        default_value = "http://127.0.0.1:8080",
        conflicts_with = "spawn"
    )]
    pub target: String,
    /// Start a leaklab-service child to ask.
    #[arg(long)]
    pub spawn: bool,
    #[arg(long, env = "LEAKLAB_ADMIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Allow a target that is not on loopback.
    #[arg(long)]
    pub allow_remote: bool,
    /// Print the raw JSON.
    #[arg(long)]
    pub json: bool,
}

/// `--rate`: a number, `auto` or `max`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum RateArg {
    Auto,
    Max,
    Fixed(f64),
}

/// Parses `--rate`.
pub fn parse_rate(s: &str) -> Result<RateArg, String> {
    match s {
        "auto" => Ok(RateArg::Auto),
        "max" => Ok(RateArg::Max),
        _ => match s.parse::<f64>() {
            Ok(r) if r > 0.0 && r.is_finite() => Ok(RateArg::Fixed(r)),
            _ => Err(format!(
                "{s:?}: expected a positive number, `auto` or `max`"
            )),
        },
    }
}

/// Parses `500ms`, `30s`, `2m`, `1h` or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?}: expected e.g. 30s, 500ms, 2m"))?;
    let secs = match unit.trim() {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        u => return Err(format!("{s:?}: unknown unit {u:?} (ms, s, m, h)")),
    };
    if !(0.0..=30.0 * 86400.0).contains(&secs) {
        return Err(format!("{s:?}: out of range"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Parses `1GiB`, `512MiB`, `1000000` (bytes).
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    s.trim()
        .parse::<bytesize::ByteSize>()
        .map(|b| b.as_u64())
        .map_err(|e| format!("{s:?}: {e}"))
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
        Command::Run(opts) => {
            let outcome = run::execute(&opts).await?;
            if opts.json {
                println!("{}", serde_json::to_string_pretty(&outcome.summary)?);
            } else {
                run::print_human(&outcome.summary);
            }
            Ok(outcome.exit_code)
        }
        Command::Hunt(opts) => hunt::execute(&opts).await,
        Command::Scenarios(opts) => scenarios(opts).await,
        Command::Oom(opts) => oom::execute(&opts).await,
        Command::Canary(opts) => canary::execute(&opts).await,
        Command::Bench(opts) => bench::execute(&opts).await,
        Command::Judge(opts) => {
            let samples = sampler::read_samples(&opts.samples)?;
            let cat = match &opts.catalogue {
                Some(p) => catalogue::parse(&std::fs::read_to_string(p)?)?,
                None => Vec::new(),
            };
            let j = analysis::judge(&samples, &cat, opts.limit);
            println!(
                "{}",
                serde_json::to_string_pretty(
                    &serde_json::json!({"signals": j.signals, "verdict": j.verdict})
                )?
            );
            Ok(if j.verdict.leak {
                exit::LEAK
            } else {
                exit::NO_LEAK
            })
        }
    }
}

async fn scenarios(opts: ScenariosOpts) -> anyhow::Result<u8> {
    let service = if opts.spawn {
        Some(tokio::task::spawn_blocking(|| spawn::start(&[], None)).await??)
    } else {
        None
    };
    let url = service
        .as_ref()
        .map(|s| s.url.clone())
        .unwrap_or(opts.target.clone());
    let target = target::Target::parse(&url, opts.token.clone(), opts.allow_remote)?;
    let control = target::Control::new(&target);
    control.wait_ready(Duration::from_secs(10)).await?;
    let text = control.get_text("/admin/scenarios").await?;
    if opts.json {
        println!("{text}");
        return Ok(exit::NO_LEAK);
    }
    let cat = catalogue::parse(&text)?;
    println!(
        "{:<20} {:<13} {:<10} {:>10} {:>6} {:>10}  recipe",
        "id", "class", "component", "bytes/req", "tasks", "rss/req"
    );
    for s in &cat {
        let recipe: Vec<String> = s
            .steps()
            .iter()
            .map(|st| {
                format!(
                    "{} {}{}",
                    st.method,
                    st.path,
                    if st.body_bytes > 0 {
                        format!(" ({} B body)", st.body_bytes)
                    } else {
                        String::new()
                    }
                )
            })
            .collect();
        println!(
            "{:<20} {:<13} {:<10} {:>10} {:>6} {:>10}  {}{}",
            s.id,
            s.class,
            s.component,
            s.bytes_per_request,
            s.tasks_per_request,
            s.rss_bytes_per_request,
            recipe.join(" then "),
            if s.negative_control {
                "  [negative control]"
            } else {
                ""
            }
        );
    }
    Ok(exit::NO_LEAK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_bytes_and_rates_parse() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert!(parse_duration("3 weeks").is_err());
        assert_eq!(parse_bytes("1GiB"), Ok(1 << 30));
        assert_eq!(parse_bytes("1000"), Ok(1000));
        assert_eq!(parse_rate("max"), Ok(RateArg::Max));
        assert_eq!(parse_rate("250"), Ok(RateArg::Fixed(250.0)));
        assert!(parse_rate("-1").is_err());
    }

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
