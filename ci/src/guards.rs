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
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use crate::build::workspace_root;
use crate::process::output_within;

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
    /// The message of the run with the largest heap growth, and that growth.
    pub worst: Option<(f64, String)>,
}

/// The heap growth a guard message states (`allocated 1.6 MiB`, `allocated
/// grew 1.1 GiB`, `allocated -293 KiB`), in bytes.
pub fn allocated_growth(message: &str) -> Option<f64> {
    let rest = message.split("allocated ").nth(1)?;
    let rest = rest.strip_prefix("grew ").unwrap_or(rest);
    let mut words = rest.split_whitespace();
    let value: f64 = words.next()?.parse().ok()?;
    let unit = match words.next()?.trim_end_matches(|c: char| !c.is_alphabetic()) {
        "B" => 1.0,
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    Some(value * unit)
}

/// Runs the guards `repeat` times; prints a line per run and a table; fails
/// when a run's test binary failed, unless `expect_failures`.
pub fn run(
    repeat: usize,
    filters: &[String],
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
    args.push("--".into());
    args.extend(filters.iter().cloned());
    args.push("--nocapture".into());
    eprintln!(
        "cargo ci guards: {repeat} run(s) of `cargo {}`",
        args.join(" ")
    );
    let mut tally: BTreeMap<(String, String), Tally> = BTreeMap::new();
    for i in 1..=repeat {
        let started = Instant::now();
        let out = output_within(
            Command::new(env!("CARGO"))
                .args(&args)
                .current_dir(&root)
                .stderr(std::process::Stdio::piped()),
            Duration::from_secs(30 * 60),
            "cargo test (the guards)",
        )?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let lines = parse_lines(&text);
        if lines.is_empty() {
            bail!("run {i}: no guard ran (filters {filters:?}?):\n{text}");
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
            } else {
                t.tripped += 1;
            }
            let growth = allocated_growth(&l.message).unwrap_or(f64::NEG_INFINITY);
            if t.worst.as_ref().is_none_or(|(g, _)| growth > *g) {
                t.worst = Some((growth, l.message));
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
        "{:<20} {:<13} {:>5} {:>8}  the run with the largest heap growth",
        "scenario", "variant", "held", "tripped"
    )?;
    for ((scenario, variant), t) in tally {
        let msg = t.worst.as_ref().map(|w| w.1.as_str()).unwrap_or_default();
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

    #[test]
    fn heap_growth_is_read_from_held_and_tripped_messages() {
        let held = "leak guard held: allocated -293 KiB and alive_tasks +0 over 100000 requests";
        assert_eq!(allocated_growth(held), Some(-293.0 * 1024.0));
        let tripped = "leak guard: allocated grew 1.1 GiB over 100000 requests (limit 8 MiB)";
        assert_eq!(
            allocated_growth(tripped),
            Some(1.1 * 1024.0 * 1024.0 * 1024.0)
        );
        assert_eq!(
            allocated_growth("leak guard: alive_tasks grew by 3 over 3 requests"),
            None
        );
    }
}
