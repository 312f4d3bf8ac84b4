//! `loadgen bench oha`: loadgen and oha side by side, at maximum rate, against
//! the same cheap route of the same service for the same duration; prints the
//! requests per second of each and the ratio. A benchmark, not a test.
//!
//! oha is installed on first use with
//! `cargo install oha --locked --root <target>/bench-tools` (`--locked`: one of
//! its dependencies otherwise asks for a newer rustc). Both tools use HTTP/1.1,
//! keep-alive and the same number of connections; they run one after the
//! other (never at once, they would share the CPU), alternating who goes first
//! over `--rounds`.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use tokio::time::Instant;

use crate::args::parse_duration;
use crate::engine::{self, LoadConfig, Progress, Rate, Unit};
use crate::errors::exit;
use crate::target::spawn::{self, Launch};
use crate::target::{Control, Target};

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum BenchTool {
    /// hatoo/oha.
    Oha,
}

/// Options of `loadgen bench`.
#[derive(Args, Clone, Debug)]
pub struct BenchOpts {
    /// The tool to compare with.
    pub tool: BenchTool,
    /// How long each tool runs per round.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Connections for both tools.
    #[arg(long, default_value_t = 32)]
    pub connections: usize,
    /// The route both tools hit.
    #[arg(long, default_value = "/healthz")]
    pub path: String,
    /// Rounds (the order alternates); the mean of each tool is reported.
    #[arg(long, default_value_t = 1)]
    pub rounds: usize,
    /// A running service to use instead of starting one (loopback only).
    #[arg(long)]
    pub target: Option<String>,
    /// The oha binary (default: <target>/bench-tools/bin/oha, installed if missing).
    #[arg(long)]
    pub oha: Option<PathBuf>,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

fn oha_binary(opts: &BenchOpts) -> Result<PathBuf> {
    if let Some(p) = &opts.oha {
        return Ok(p.clone());
    }
    let exe = std::env::current_exe()?;
    let root = spawn::target_dir_of(&exe)
        .unwrap_or_else(|| PathBuf::from("target"))
        .join("bench-tools");
    let bin = root.join("bin").join("oha");
    if bin.is_file() {
        return Ok(bin);
    }
    eprintln!("bench: installing oha into {} (once)", root.display());
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["install", "oha", "--locked", "--root"])
        .arg(&root)
        .status()
        .context("running cargo install oha")?;
    if !status.success() || !bin.is_file() {
        bail!("cargo install oha --locked failed ({status})");
    }
    Ok(bin)
}

async fn run_oha(bin: &PathBuf, url: &str, opts: &BenchOpts) -> Result<f64> {
    let out = tokio::process::Command::new(bin)
        .arg("-z")
        .arg(format!("{}ms", opts.duration.as_millis()))
        .arg("-c")
        .arg(opts.connections.to_string())
        .args(["--no-tui", "--output-format", "json"])
        .arg(url)
        .kill_on_drop(true)
        .output()
        .await
        .context("running oha")?;
    if !out.status.success() {
        bail!("oha failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).context("oha's JSON")?;
    let rps = v["summary"]["requestsPerSec"]
        .as_f64()
        .context("no summary.requestsPerSec in oha's output")?;
    let success = v["summary"]["successRate"].as_f64().unwrap_or(1.0);
    if success < 0.99 {
        bail!("oha saw only {:.1}% successful requests", success * 100.0);
    }
    Ok(rps)
}

async fn run_loadgen(target: &Target, opts: &BenchOpts) -> Result<f64> {
    let cfg = LoadConfig {
        target: target.clone(),
        rate: Rate::Max,
        duration: opts.duration,
        ramp: None,
        connections: opts.connections,
        max_in_flight: opts.connections,
        max_lag: Duration::from_secs(1),
        key_prefix: "bench".into(),
        max_units: None,
        per_unit_cap: vec![],
    };
    let progress = Arc::new(Progress::default());
    let start = Instant::now();
    let stats = engine::drive(
        &cfg,
        Arc::new(vec![Unit::get(&opts.path)?]),
        progress,
        start,
    )
    .await?;
    if stats.errors > stats.units_done / 100 {
        bail!(
            "loadgen saw {} errors in {} requests",
            stats.errors,
            stats.units_done
        );
    }
    Ok(stats.units_done as f64 / stats.elapsed.as_secs_f64())
}

/// Runs the bench; prints the result on stdout.
pub async fn execute(opts: &BenchOpts) -> Result<u8> {
    let BenchTool::Oha = opts.tool;
    let oha = tokio::task::spawn_blocking({
        let o = opts.clone();
        move || oha_binary(&o)
    })
    .await??;
    let service = match &opts.target {
        Some(_) => None,
        None => Some(Launch::new().start().await?),
    };
    let url = opts
        .target
        .clone()
        .or(service.as_ref().map(|s| s.url.clone()))
        .unwrap_or_default();
    let target = Target::parse(&url, None, false)?;
    Control::new(&target)
        .wait_ready(Duration::from_secs(10))
        .await?;
    let route = format!("{}{}", target.base, opts.path);
    let (mut oha_rps, mut lg_rps) = (Vec::new(), Vec::new());
    for round in 0..opts.rounds.max(1) {
        if round % 2 == 0 {
            lg_rps.push(run_loadgen(&target, opts).await?);
            oha_rps.push(run_oha(&oha, &route, opts).await?);
        } else {
            oha_rps.push(run_oha(&oha, &route, opts).await?);
            lg_rps.push(run_loadgen(&target, opts).await?);
        }
        eprintln!(
            "bench round {}: loadgen {:.0} req/s, oha {:.0} req/s",
            round + 1,
            lg_rps[round],
            oha_rps[round]
        );
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let (o, l) = (mean(&oha_rps), mean(&lg_rps));
    if opts.json {
        println!(
            "{}",
            serde_json::json!({"route": route, "duration_s": opts.duration.as_secs_f64(), "connections": opts.connections,
                "rounds": opts.rounds, "oha_rps": o, "loadgen_rps": l, "ratio": l / o})
        );
    } else {
        println!(
            "route {route}, {} connections, {:?} per tool per round, {} round(s)",
            opts.connections, opts.duration, opts.rounds
        );
        println!("oha     {o:>10.0} req/s");
        println!("loadgen {l:>10.0} req/s");
        println!("ratio loadgen/oha {:.3}", l / o);
    }
    drop(service);
    Ok(exit::NO_LEAK)
}
