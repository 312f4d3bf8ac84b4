//! `cargo ci hunt-bench`: a benchmark, not a test. The blind hunt
//! (`loadgen hunt --blind --mystery SEED`) over a sweep of mysteries, each
//! graded by `loadgen grade` against the seed's draw: how often it names
//! what is on (recall), how often what it names is on (precision), false
//! alarms (a leak named where none of that is on), wrong classes, and how
//! long a hunt takes.
//!
//! The sweep, seeds from `--from` up as the service draws them: one
//! single-leak mystery for every leak of the catalogue, `--count` with two
//! or three leaks, `--min-none` with none (controls only, or nothing); rates
//! cycle through `--rates` (triggering requests per second of the screen and
//! the route windows: 0.5x to 2x loadgen's default by default). Every hunt's
//! JSON and grade are kept under `--out`, the rows in `bench.json`, and the
//! table is printed.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;
use leaklab_model::mystery::{draw, Grade};
use leaklab_model::Catalogue;
use serde::Serialize;

use crate::build::{loadgen_binary, loadgen_catalogue};
use crate::lessons::parse_duration;
use crate::process::output_within;

/// Options of `cargo ci hunt-bench`.
#[derive(Debug, Args)]
pub struct HuntBenchOpts {
    /// First seed of the sweep.
    #[arg(long, default_value_t = 100)]
    pub from: u64,
    /// Mysteries with two or three leaks in the sweep (beside one single-leak
    /// mystery per leak of the catalogue and the no-leak ones).
    #[arg(long, default_value_t = 8)]
    pub count: u64,
    /// At least this many mysteries with no leak on.
    #[arg(long, default_value_t = 5)]
    pub min_none: usize,
    /// Rates the hunts cycle through (triggering requests per second).
    #[arg(long, value_delimiter = ',', default_value = "100,200,400")]
    pub rates: Vec<f64>,
    /// Where each hunt's output goes.
    #[arg(long, default_value = "out/hunt-bench")]
    pub out: PathBuf,
    /// A hunt still running after this long is killed and counted as
    /// naming nothing.
    #[arg(long, default_value = "15m", value_parser = parse_duration)]
    pub timeout: Duration,
}

/// One graded hunt.
#[derive(Debug, Serialize)]
pub struct Row {
    pub seed: u64,
    /// `single`, `multi` or `none`.
    pub kind: String,
    pub rate: f64,
    pub on: Vec<String>,
    pub named: Vec<String>,
    pub correct: usize,
    pub false_alarms: usize,
    pub wrong_class: usize,
    pub missed: usize,
    pub fix_proven: Option<bool>,
    pub elapsed_s: f64,
    pub exit: Option<i32>,
}

/// Runs the sweep; true when it completed (the figures are the result).
pub fn run(opts: &HuntBenchOpts) -> Result<bool> {
    let loadgen = loadgen_binary()?;
    let seeds = sweep(&loadgen_catalogue(&loadgen)?, opts);
    eprintln!(
        "hunt-bench: {} mysteries ({} single leaks, {} with two or three, {} with none)",
        seeds.len(),
        seeds.iter().filter(|s| s.1 == "single").count(),
        seeds.iter().filter(|s| s.1 == "multi").count(),
        seeds.iter().filter(|s| s.1 == "none").count()
    );
    std::fs::create_dir_all(&opts.out)?;
    let mut rows = Vec::new();
    for (i, (seed, kind)) in seeds.iter().enumerate() {
        let rate = opts.rates[i % opts.rates.len().max(1)];
        eprintln!(
            "[hunt-bench {}/{}] seed {seed} at {rate}/s",
            i + 1,
            seeds.len()
        );
        let mut row = hunt_one(&loadgen, *seed, rate, opts)?;
        row.kind = kind.to_string();
        eprintln!(
            "    on {:?}, named {:?}: {} correct, {} false alarm(s), {} wrong class, {} missed, {:.0} s",
            row.on, row.named, row.correct, row.false_alarms, row.wrong_class, row.missed, row.elapsed_s
        );
        rows.push(row);
    }
    std::fs::write(
        opts.out.join("bench.json"),
        serde_json::to_vec_pretty(&rows)?,
    )?;
    print!("{}", summary(&rows));
    Ok(true)
}

/// The sweep, seeds from `--from` up, drawn as the service draws them:
/// one single-leak mystery per leak of the catalogue, `--count` with two or
/// three leaks, and `--min-none` with none. Each seed with its kind.
fn sweep(catalogue: &Catalogue, opts: &HuntBenchOpts) -> Vec<(u64, &'static str)> {
    let ids = |leak: bool| -> Vec<&str> {
        catalogue
            .0
            .iter()
            .filter(|s| s.class.is_leak() == leak)
            .map(|s| s.id.as_str())
            .collect()
    };
    let (leaks, controls) = (ids(true), ids(false));
    let mut singles: Vec<&str> = Vec::new();
    let (mut multi, mut none) = (0u64, 0usize);
    let mut seeds = Vec::new();
    for seed in opts.from..opts.from.saturating_add(100_000) {
        let m = draw(seed, &leaks, &controls);
        let kind = match m.leaks.len() {
            0 if none < opts.min_none => {
                none += 1;
                "none"
            }
            1 if !singles.contains(&m.leaks[0].as_str()) => {
                singles.extend(leaks.iter().filter(|l| **l == m.leaks[0]));
                "single"
            }
            n if n >= 2 && multi < opts.count => {
                multi += 1;
                "multi"
            }
            _ => continue,
        };
        seeds.push((seed, kind));
        if singles.len() == leaks.len() && multi >= opts.count && none >= opts.min_none {
            break;
        }
    }
    seeds
}

/// The seed's answer key (an empty answer graded).
fn reveal(loadgen: &Path, seed: u64) -> Result<Grade> {
    let out = output_within(
        Command::new(loadgen).args(["grade", "--mystery", &seed.to_string(), "--json"]),
        Duration::from_secs(60),
        "loadgen grade",
    )?;
    serde_json::from_slice(&out.stdout).context("reading loadgen grade --json")
}

/// One hunt, graded.
fn hunt_one(loadgen: &Path, seed: u64, rate: f64, opts: &HuntBenchOpts) -> Result<Row> {
    let dir = opts.out.join(format!("seed-{seed}"));
    let started = Instant::now();
    let out = output_within(
        Command::new(loadgen).args([
            "hunt",
            "--blind",
            "--mystery",
            &seed.to_string(),
            "--rate",
            &rate.to_string(),
            "--json",
            "--out",
            &dir.display().to_string(),
        ]),
        opts.timeout,
        "loadgen hunt --blind",
    )?;
    let elapsed_s = started.elapsed().as_secs_f64();
    std::fs::write(dir.join("stderr.txt"), &out.stderr)?;
    let hunt = dir.join("hunt.json");
    let graded = output_within(
        Command::new(loadgen)
            .args([
                "grade",
                "--mystery",
                &seed.to_string(),
                "--json",
                "--answer-file",
            ])
            .arg(&hunt),
        Duration::from_secs(60),
        "loadgen grade",
    )?;
    let grade: Grade = if hunt.exists() {
        serde_json::from_slice(&graded.stdout).context("reading loadgen grade --json")?
    } else {
        reveal(loadgen, seed)?
    };
    std::fs::write(dir.join("grade.json"), &graded.stdout)?;
    let count = |o: &str| grade.answers.iter().filter(|a| a.outcome == o).count();
    let report: Option<leaklab_model::hunt::HuntReport> = std::fs::read(&hunt)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    Ok(Row {
        seed,
        kind: String::new(),
        rate,
        on: grade.reveal.leaks.clone(),
        named: grade.answers.iter().map(|a| a.text.clone()).collect(),
        correct: count("correct"),
        false_alarms: count("false-alarm"),
        wrong_class: count("wrong-class"),
        missed: grade.missed.len(),
        fix_proven: report.and_then(|r| r.fix_proven),
        elapsed_s,
        exit: out.status.code(),
    })
}

/// The figures: precision, recall, false alarms, wrong classes, times.
pub fn summary(rows: &[Row]) -> String {
    let correct: usize = rows.iter().map(|r| r.correct).sum();
    let named: usize = rows.iter().map(|r| r.named.len()).sum();
    let on: usize = rows.iter().map(|r| r.on.len()).sum();
    let false_alarms: usize = rows.iter().map(|r| r.false_alarms).sum();
    let wrong_class: usize = rows.iter().map(|r| r.wrong_class).sum();
    let none_rows: Vec<&Row> = rows.iter().filter(|r| r.on.is_empty()).collect();
    let none_alarmed = none_rows.iter().filter(|r| !r.named.is_empty()).count();
    let mut times: Vec<f64> = rows.iter().map(|r| r.elapsed_s).collect();
    times.sort_by(f64::total_cmp);
    let median = times.get(times.len() / 2).copied().unwrap_or(0.0);
    let worst = times.last().copied().unwrap_or(0.0);
    let perfect = rows
        .iter()
        .filter(|r| r.correct == r.on.len() && r.named.len() == r.correct)
        .count();
    let ratio = |a: usize, b: usize| if b == 0 { 1.0 } else { a as f64 / b as f64 };
    let mut table = String::from(
        "| seed | kind | rate/s | on | named | correct | false alarms | wrong class | missed | fix proven | time |\n|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        table.push_str(&format!(
            "| {} | {} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {:.0} s |\n",
            r.seed,
            r.kind,
            r.rate,
            if r.on.is_empty() {
                "none".to_owned()
            } else {
                r.on.join(", ")
            },
            if r.named.is_empty() {
                "none".to_owned()
            } else {
                r.named.join(", ")
            },
            r.correct,
            r.false_alarms,
            r.wrong_class,
            r.missed,
            r.fix_proven.map_or("-".to_owned(), |p| p.to_string()),
            r.elapsed_s
        ));
    }
    table + &format!(
        "\nhunt-bench: {} mysteries ({} with no leak), {} leaks on\n\
         precision {:.0}% ({correct}/{named} named were on)\n\
         recall    {:.0}% ({correct}/{on} leaks on were named)\n\
         false alarms: {false_alarms} named item(s) not on; {none_alarmed} of {} no-leak mysteries alarmed\n\
         wrong classes: {wrong_class}\n\
         perfect: {perfect} of {}\n\
         time per hunt: median {median:.0} s, worst {worst:.0} s\n",
        rows.len(),
        none_rows.len(),
        on,
        100.0 * ratio(correct, named),
        100.0 * ratio(correct, on),
        none_rows.len(),
        rows.len(),
    )
}
