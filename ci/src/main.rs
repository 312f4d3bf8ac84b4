//! `cargo ci`: leaklab's project tasks. Run `cargo ci --help`.

use std::process::ExitCode;

use clap::Parser;
use leaklab_ci::{
    check, lessons, print_table, run_bench_allocs, run_bench_profiling, run_bisect, run_guards,
    run_prove, run_soak, tidy, Cli, Task,
};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Task::Bisect(opts) => run_bisect(opts).and_then(|report| {
            if opts.json {
                print_table(&report, &mut std::io::stderr())?;
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print_table(&report, &mut std::io::stdout())?;
            }
            Ok(())
        }),
        Task::Prove(opts) => run_prove(opts),
        Task::BenchProfiling(opts) => run_bench_profiling(opts),
        Task::BenchAllocs(opts) => run_bench_allocs(opts),
        Task::BenchDetect(opts) => leaklab_ci::detect::run(opts).map(|_| ()),
        Task::Guards(opts) => match run_guards(opts) {
            Ok(true) => Ok(()),
            Ok(false) => return ExitCode::FAILURE,
            Err(e) => Err(e),
        },
        Task::SoakTasks(opts) => match run_soak(opts) {
            Ok(true) => Ok(()),
            Ok(false) => return ExitCode::FAILURE,
            Err(e) => Err(e),
        },
        Task::Check(opts) => match check::run(opts) {
            Ok(true) => Ok(()),
            Ok(false) => return ExitCode::FAILURE,
            Err(e) => Err(e),
        },
        Task::Tidy(opts) => match tidy::run(opts) {
            Ok(true) => Ok(()),
            Ok(false) => return ExitCode::FAILURE,
            Err(e) => Err(e),
        },
        Task::CheckHtml(opts) => match leaklab_ci::html_check::run(opts) {
            Ok(true) => Ok(()),
            Ok(false) => return ExitCode::FAILURE,
            Err(e) => Err(e),
        },
        Task::HuntBench(opts) => leaklab_ci::hunt_bench::run(opts).map(|_| ()),
        Task::Lessons(opts) => match lessons::run(opts) {
            Ok(true) => Ok(()),
            Ok(false) => return ExitCode::FAILURE,
            Err(e) => Err(e),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("cargo ci: {err:#}");
            ExitCode::FAILURE
        }
    }
}
