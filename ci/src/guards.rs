//! `cargo ci guards`: the leak guards of `service/tests/guards`, run N times
//! in a row and tallied.
//!
//! Two uses: the false-positive check (the guards on the fixed code, 20 runs
//! in a row: warm-up must never pass for a leak) and a bad release (the same
//! guards built with `--features leak-ID`, which must fail with `leak guard:`).
//! Each run is `cargo test -p leaklab-service --test guards -- FILTER
//! --nocapture`; every guard prints one line (`ID Variant: <outcome> in Ns`),
//! which this reads back.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::build::workspace_root;

/// One guard's line from one run.
#[derive(Clone, Debug, PartialEq)]
pub struct GuardLine {
    pub scenario: String,
    pub variant: String,
    /// The guard's own message: `leak guard held: ...` or `leak guard: ...`.
    pub message: String,
    pub seconds: f64,
}

impl GuardLine {
    pub fn held(&self) -> bool {
        self.message.starts_with("leak guard held:")
    }
}

/// Reads `ID Variant: <outcome> in 1.2s` lines out of a test run's output.
pub fn parse_lines(output: &str) -> Vec<GuardLine> {
    output
        .lines()
        .filter_map(|line| {
            let (head, rest) = line.split_once(": leak guard")?;
            let (scenario, variant) = head.split_once(' ')?;
            let (message, secs) = rest.rsplit_once(" in ")?;
            Some(GuardLine {
                scenario: scenario.to_string(),
                variant: variant.to_string(),
                message: format!("leak guard{message}"),
                seconds: secs.trim_end_matches('s').parse().ok()?,
            })
        })
        .collect()
}

/// Tally of one scenario and variant over every run.
#[derive(Debug, Default)]
pub struct Tally {
    pub held: usize,
    pub tripped: usize,
    /// The last message of each kind, to quote.
    pub last_held: Option<String>,
    pub last_tripped: Option<String>,
}

/// Runs the guards `repeat` times; prints a line per run and a table; fails
/// when a run's test binary failed, unless `expect_failures`.
pub fn run(
    repeat: usize,
    filter: &str,
    features: &[String],
) -> Result<BTreeMap<(String, String), Tally>> {
    let root = workspace_root();
    let mut args: Vec<String> = [
        "test",
        "--quiet",
        "-p",
        "leaklab-service",
        "--test",
        "guards",
    ]
    .map(String::from)
    .to_vec();
    if !features.is_empty() {
        let list: Vec<String> = features
            .iter()
            .map(|f| {
                format!(
                    "leaklab-service/{}",
                    f.trim_start_matches("leaklab-service/")
                )
            })
            .collect();
        args.extend(["--features".to_string(), list.join(",")]);
    }
    args.extend(["--".into(), filter.into(), "--nocapture".into()]);
    eprintln!(
        "cargo ci guards: {repeat} run(s) of `cargo {}`",
        args.join(" ")
    );
    let mut tally: BTreeMap<(String, String), Tally> = BTreeMap::new();
    for i in 1..=repeat {
        let started = Instant::now();
        let out = Command::new(env!("CARGO"))
            .args(&args)
            .current_dir(&root)
            .output()
            .context("running cargo test")?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let lines = parse_lines(&text);
        if lines.is_empty() {
            bail!("run {i}: no guard ran (filter {filter:?}?):\n{text}");
        }
        let held = lines.iter().filter(|l| l.held()).count();
        eprintln!(
            "run {i}/{repeat}: {} guards, {held} held, {} tripped; cargo test {} ({:.1} s)",
            lines.len(),
            lines.len() - held,
            if out.status.success() {
                "passed"
            } else {
                "FAILED"
            },
            started.elapsed().as_secs_f64()
        );
        for l in lines {
            let t = tally
                .entry((l.scenario.clone(), l.variant.clone()))
                .or_default();
            if l.held() {
                t.held += 1;
                t.last_held = Some(l.message);
            } else {
                t.tripped += 1;
                t.last_tripped = Some(l.message);
            }
        }
    }
    Ok(tally)
}

/// The table: per scenario and variant, held/tripped counts and a message.
pub fn print(
    tally: &BTreeMap<(String, String), Tally>,
    out: &mut impl std::io::Write,
) -> Result<()> {
    writeln!(
        out,
        "{:<20} {:<13} {:>5} {:>8}  last message",
        "scenario", "variant", "held", "tripped"
    )?;
    for ((scenario, variant), t) in tally {
        let msg = t
            .last_tripped
            .as_ref()
            .or(t.last_held.as_ref())
            .cloned()
            .unwrap_or_default();
        writeln!(
            out,
            "{scenario:<20} {variant:<13} {:>5} {:>8}  {msg}",
            t.held, t.tripped
        )?;
    }
    let held: usize = tally.values().map(|t| t.held).sum();
    let tripped: usize = tally.values().map(|t| t.tripped).sum();
    writeln!(
        out,
        "in all: {} guard checks, {held} held, {tripped} tripped",
        held + tripped
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guard_lines_are_read_back_from_test_output() {
        let out = "running 2 tests\n\
            unbounded-cache BuildDefault: leak guard held: allocated 12 KiB and alive_tasks +0 over 100000 requests (limits 8 MiB and 16) in 9.3s\n\
            test x ... ok\n\
            task-leak LeakOn: leak guard: alive_tasks grew by 2000 over 2000 requests (limit 16) in 0.4s\n";
        let lines = parse_lines(out);
        assert_eq!(lines.len(), 2);
        assert!(lines[0].held());
        assert_eq!(lines[0].scenario, "unbounded-cache");
        assert_eq!(lines[0].variant, "BuildDefault");
        assert_eq!(lines[0].seconds, 9.3);
        assert!(!lines[1].held());
        assert!(lines[1]
            .message
            .starts_with("leak guard: alive_tasks grew by 2000"));
    }
}
