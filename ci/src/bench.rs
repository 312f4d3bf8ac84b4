//! `cargo ci bench-profiling`: what heap profiling costs, measured.
//!
//! Starts two release services, one with jemalloc heap-profile sampling active
//! and one with it inactive, and drives `GET /items/{key}` (leaks off,
//! distinct keys) at maximum rate with loadgen, alternating rounds so both
//! see the same machine noise. Prints requests/s per round, the medians and
//! their ratio. A benchmark, not a test: it asserts nothing.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use anyhow::{bail, Context, Result};
use leaklab_model::run::RunSummary;

use crate::json;
use crate::process::{output_within, LOADGEN_LIMIT};

/// A service child process, killed on drop.
struct Service {
    child: Child,
    url: String,
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(binary: &Path, profiling: bool) -> Result<Service> {
    let mut child = Command::new(binary)
        .args([
            "--addr",
            "127.0.0.1:0",
            "--heap-profiling",
            if profiling { "on" } else { "off" },
        ])
        .env("RUST_LOG", "warn")
        .env_remove("LEAKLAB_LEAKS")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("piped")).read_line(&mut line)?;
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .with_context(|| format!("unexpected {line:?}"))?
        .to_owned();
    Ok(Service { child, url })
}

fn round(loadgen: &Path, url: &str, duration: &str, connections: usize) -> Result<f64> {
    let mut cmd = Command::new(loadgen);
    cmd.args([
        "run",
        "--target",
        url,
        "--scenario",
        "unbounded-cache",
        "--rate",
        "max",
    ])
    .args([
        "--duration",
        duration,
        "--warmup",
        "1s",
        "--connections",
        &connections.to_string(),
        "--json",
    ])
    .stderr(Stdio::null());
    let output = output_within(&mut cmd, LOADGEN_LIMIT, "loadgen run --rate max")?;
    let summary: RunSummary = json::parse_report(
        &output.stdout,
        "the summary `loadgen run --rate max --json` printed",
    )?;
    if summary.load.errors > 0 {
        bail!(
            "{} errors during a round against {url}",
            summary.load.errors
        );
    }
    Ok(summary.load.rate_achieved)
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    }
}

/// Runs the bench and prints its table.
pub fn profiling(
    service: &Path,
    loadgen: &Path,
    rounds: usize,
    duration: &str,
    connections: usize,
) -> Result<()> {
    let on = start(service, true)?;
    let off = start(service, false)?;
    println!("GET /items/{{key}}, leaks off, max rate, {connections} connections, {rounds} alternating rounds of {duration}");
    println!(
        "{:<6} {:>16} {:>16}",
        "round", "profiling on", "profiling off"
    );
    let (mut with, mut without) = (Vec::new(), Vec::new());
    for r in 0..rounds {
        // Alternate which goes first, so neither always gets the warmer machine.
        let (a, b) = if r % 2 == 0 { (&on, &off) } else { (&off, &on) };
        let ra = round(loadgen, &a.url, duration, connections)?;
        let rb = round(loadgen, &b.url, duration, connections)?;
        let (x, y) = if r % 2 == 0 { (ra, rb) } else { (rb, ra) };
        println!("{:<6} {:>12.0} r/s {:>12.0} r/s", r + 1, x, y);
        with.push(x);
        without.push(y);
    }
    let (m_on, m_off) = (median(with), median(without));
    println!("median {m_on:>12.0} r/s {m_off:>12.0} r/s");
    println!(
        "ratio on/off: {:.3} (profiling costs {:.1}% of throughput; target: under 5%)",
        m_on / m_off,
        (1.0 - m_on / m_off) * 100.0
    );
    Ok(())
}
