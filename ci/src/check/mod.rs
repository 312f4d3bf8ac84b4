//! `cargo ci check WHAT FILE [EXPECTATIONS]...`: CI's expectations on the
//! JSON the tools write, one report at a time, read through the shared types
//! in `leaklab-model` (so a renamed field is an error naming it, not a
//! default that passes).
//!
//! Each check prints one line with the report's figures on stdout, and each
//! expectation that was not met on stderr as `expected ..., found ...`.
//!
//! # Layout
//!
//! - [`hunt`]: `loadgen hunt --json` (`leaklab.hunt/v1`).
//! - [`bisect`]: `cargo ci bisect --json`.
//! - [`oom`]: `loadgen oom --json` (`leaklab.oom/v1`), cgroup or `--docker`.
//! - [`run`]: `loadgen run --json` (`leaklab.run/v1`).
//! - [`canary`]: `loadgen canary --json` (`leaklab.canary/v1`).
//! - [`memory`]: the service's `GET /debug/memory` (which leaks are on).

use std::fmt::Display;
use std::path::Path;

use anyhow::Result;
use clap::{Args, Subcommand};

pub mod bisect;
pub mod canary;
pub mod hunt;
pub mod memory;
pub mod oom;
pub mod run;

/// `cargo ci check --help`.
pub const LONG_ABOUT: &str = "\
Check one JSON report against CI's expectations.

The report is read into the type its writer uses (leaklab-model), so a field
that is missing, renamed or of the wrong type is an error that names the file
and the field; reports with a `schema` must carry the one this build reads.
Each check prints one line with the report's figures on stdout, then, on
stderr, every expectation that was not met: what was expected, what was found.

Examples:
  cargo ci check hunt out/ci-hunt.json --expect unbounded-cache:retention --fixed-flat
  cargo ci check bisect out/ci-bisect.json --first-bad r3
  cargo ci check oom out/ci-oom.json --max-error-pct 15
  cargo ci check run out/ci-compose-run.json --leak --limit-bytes 256MiB
  cargo ci check canary out/ci-canary.json --regression --class retention --component cache
  cargo ci check memory out/ci-memory.json --leaks-on unbounded-cache

Exit codes: 0 every expectation met; 1 an expectation not met, or the file
could not be read as that report; 2 bad command line.";

/// Options of `cargo ci check`.
#[derive(Debug, Args)]
pub struct CheckOpts {
    #[command(subcommand)]
    pub report: Report,
}

/// Which report to check.
#[derive(Debug, Subcommand)]
pub enum Report {
    /// `loadgen hunt --json` (leaklab.hunt/v1): the leaks it found, and that
    /// the re-measurement with the fixes on is flat.
    Hunt(hunt::HuntCheck),
    /// `cargo ci bisect --json`: the first bad release, and that the search
    /// kept within its bound of measurements (always checked).
    Bisect(bisect::BisectCheck),
    /// `loadgen oom --json` (leaklab.oom/v1): the service was OOM-killed
    /// (always checked: killed, exit 137, and the kernel's record), and how
    /// close the half-time prediction came.
    Oom(oom::OomCheck),
    /// `loadgen run --json` (leaklab.run/v1): the verdict, its class, the
    /// memory limit the run saw.
    Run(run::RunCheck),
    /// `loadgen canary --json` (leaklab.canary/v1): regression or not, its
    /// class and component.
    Canary(canary::CanaryCheck),
    /// The service's `GET /debug/memory`: which scenarios' leaky paths are on.
    Memory(memory::MemoryCheck),
}

/// What a check found.
#[derive(Debug, Default)]
pub struct Checked {
    /// One line with the report's figures, for a person.
    pub line: String,
    /// Each expectation not met: `expected ..., found ...`.
    pub unmet: Vec<String>,
}

impl Checked {
    /// A check whose figures read `line`, nothing unmet yet.
    pub fn new(line: impl Into<String>) -> Checked {
        Checked {
            line: line.into(),
            unmet: Vec::new(),
        }
    }

    /// Records `expected` and `found` as unmet unless `met`.
    pub fn expect(&mut self, met: bool, expected: impl Display, found: impl Display) {
        if !met {
            self.unmet
                .push(format!("expected {expected}, found {found}"));
        }
    }

    /// Whether every expectation was met.
    pub fn passed(&self) -> bool {
        self.unmet.is_empty()
    }
}

/// One kind of report and the expectations on it.
pub trait Check {
    /// The report's type.
    type Report;
    /// Reads `file` as the report (typed; the schema checked where it has one).
    fn read(file: &Path) -> Result<Self::Report>;
    /// The report file named on the command line.
    fn file(&self) -> &Path;
    /// Judges the report against the expectations given.
    fn check(&self, report: &Self::Report) -> Checked;
}

/// Runs `cargo ci check`: prints the figures and what was not met; Ok(true)
/// when every expectation was met.
pub fn run(opts: &CheckOpts) -> Result<bool> {
    match &opts.report {
        Report::Hunt(c) => report("hunt", c),
        Report::Bisect(c) => report("bisect", c),
        Report::Oom(c) => report("oom", c),
        Report::Run(c) => report("run", c),
        Report::Canary(c) => report("canary", c),
        Report::Memory(c) => report("memory", c),
    }
}

fn report<C: Check>(name: &str, check: &C) -> Result<bool> {
    let file = check.file().display().to_string();
    let checked = check.check(&C::read(check.file())?);
    println!("{name} {file}: {}", checked.line);
    for unmet in &checked.unmet {
        eprintln!("cargo ci check {name}: {file}: {unmet}");
    }
    Ok(checked.passed())
}

/// `--leak`/`--no-leak` style pairs: Some(true), Some(false), or None (either).
pub fn wanted(yes: bool, no: bool) -> Option<bool> {
    match (yes, no) {
        (true, _) => Some(true),
        (_, true) => Some(false),
        _ => None,
    }
}

/// A byte size: a plain number of bytes, or with KiB, MiB, GiB (or KB, MB, GB).
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let digits = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(digits);
    let factor: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        other => {
            return Err(format!(
                "unknown unit `{other}` (use B, KiB, MiB, GiB, KB, MB, GB)"
            ))
        }
    };
    let number: f64 = number
        .parse()
        .map_err(|_| format!("`{s}` is not a size (e.g. 268435456, 256MiB)"))?;
    Ok((number * factor as f64).round() as u64)
}

/// Bytes per hour as MiB/h with one decimal, `-` when absent.
pub fn mib_per_h(bytes_per_h: Option<f64>) -> String {
    bytes_per_h
        .map(|b| format!("{:.1} MiB/h", b / MIB))
        .unwrap_or_else(|| "- MiB/h".to_owned())
}

/// One mebibyte, as a float: people read bytes in binary units.
pub const MIB: f64 = 1024.0 * 1024.0;

/// Seconds with one decimal, `-` when absent.
pub fn seconds(s: Option<f64>) -> String {
    s.map(|s| format!("{s:.1} s"))
        .unwrap_or_else(|| "- s".to_owned())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::{Cli, Task};

    #[test]
    fn sizes_parse_in_bytes_and_binary_units() {
        assert_eq!(parse_bytes("268435456"), Ok(268_435_456));
        assert_eq!(parse_bytes("256MiB"), Ok(256 << 20));
        assert_eq!(parse_bytes("1.5 GiB"), Ok(3 << 29));
        assert!(parse_bytes("12 parsecs").is_err());
        assert!(parse_bytes("MiB").is_err());
    }

    #[test]
    fn every_check_parses_from_the_command_line_as_ci_calls_it() {
        let parse = |args: &[&str]| {
            let cli = Cli::try_parse_from(["cargo ci", "check"].iter().chain(args))
                .unwrap_or_else(|e| panic!("{args:?}: {e}"));
            match cli.command {
                Task::Check(opts) => opts.report,
                other => panic!("{other:?}"),
            }
        };
        let Report::Hunt(hunt) = parse(&[
            "hunt",
            "out/ci-hunt.json",
            "--expect",
            "unbounded-cache:retention",
            "--expect",
            "task-leak:task-leak",
            "--fixed-flat",
        ]) else {
            panic!("not hunt")
        };
        assert_eq!(hunt.expect.len(), 2);
        assert!(hunt.fixed_flat);
        assert!(matches!(
            parse(&["bisect", "f.json", "--first-bad", "r3"]),
            Report::Bisect(_)
        ));
        let Report::Oom(oom) = parse(&["oom", "f.json", "--max-error-pct", "15", "--docker"])
        else {
            panic!("not oom")
        };
        assert_eq!((oom.max_error_pct, oom.docker), (Some(15.0), true));
        let Report::Run(run) = parse(&["run", "f.json", "--leak", "--limit-bytes", "268435456"])
        else {
            panic!("not run")
        };
        assert_eq!(run.limit_bytes, Some(256 << 20));
        assert!(matches!(
            parse(&[
                "canary",
                "f.json",
                "--regression",
                "--class",
                "retention",
                "--component",
                "cache"
            ]),
            Report::Canary(_)
        ));
        assert!(matches!(
            parse(&["memory", "f.json", "--leaks-on", "none"]),
            Report::Memory(_)
        ));
        let bad =
            Cli::try_parse_from(["cargo ci", "check", "run", "f.json", "--leak", "--no-leak"]);
        assert!(bad.is_err(), "--leak and --no-leak together");
        let bad = Cli::try_parse_from(["cargo ci", "check", "hunt", "f.json", "--expect", "x"]);
        assert!(bad.is_err(), "--expect needs SCENARIO:CLASS");
    }
}
