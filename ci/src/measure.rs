//! Measuring one release: start its service on loopback, drive the identical
//! mixed workload with `loadgen run --scenario all`, read the verdict.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{bail, Context, Result};
use serde::Serialize;
use serde_json::Value;

use crate::process::{output_within, LOADGEN_LIMIT};

/// The load every release gets: the same for all, so burn rates compare.
#[derive(Clone, Debug, Serialize)]
pub struct Workload {
    pub rate: String,
    pub duration: String,
    pub warmup: String,
}

/// One release's measurement.
#[derive(Clone, Debug, Serialize)]
pub struct Measurement {
    pub leak: bool,
    pub class: String,
    /// The largest finding's burn rate, or the live heap's slope when no leak was found.
    pub burn_rate_bytes_per_h: f64,
    pub summary_path: PathBuf,
}

/// A service child process, killed on drop.
struct Service(Child);

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(binary: &Path) -> Result<(Service, String, u32)> {
    let mut child = Command::new(binary)
        .args(["--addr", "127.0.0.1:0"])
        .env("RUST_LOG", "warn")
        .env_remove("LEAKLAB_LEAKS")
        .env_remove("LEAKLAB_FIXES")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    let pid = child.id();
    let stdout = child.stdout.take().expect("piped");
    let service = Service(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .with_context(|| format!("unexpected first line {line:?}"))?;
    Ok((service, url.to_owned(), pid))
}

/// Runs the workload against `binary`; loadgen's files go to `out`.
pub fn measure(
    loadgen: &Path,
    binary: &Path,
    workload: &Workload,
    out: &Path,
) -> Result<Measurement> {
    let (_service, url, pid) = start(binary)?;
    std::fs::create_dir_all(out)?;
    let mut cmd = Command::new(loadgen);
    cmd.args([
        "run",
        "--target",
        &url,
        "--pid",
        &pid.to_string(),
        "--scenario",
        "all",
    ])
    .args([
        "--rate",
        &workload.rate,
        "--duration",
        &workload.duration,
        "--warmup",
        &workload.warmup,
    ])
    .arg("--json")
    .arg("--out")
    .arg(out)
    .stderr(Stdio::inherit());
    let output = output_within(&mut cmd, LOADGEN_LIMIT, "loadgen run --scenario all")?;
    let code = output.status.code().unwrap_or(-1);
    if code != 0 && code != 3 {
        bail!("loadgen exited {code}: could not measure");
    }
    let summary: Value =
        serde_json::from_slice(&output.stdout).context("loadgen --json printed no summary")?;
    let verdict = &summary["verdict"];
    let leak = verdict["leak"].as_bool().unwrap_or(false);
    let burn = verdict["findings"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f["burn_rate_bytes_per_h"].as_f64())
        .fold(None, |best: Option<f64>, b| {
            Some(best.map_or(b, |x| x.max(b)))
        });
    let burn_rate_bytes_per_h = burn.unwrap_or_else(|| {
        summary["signals"]["allocated"]["slope_per_s"]
            .as_f64()
            .unwrap_or(0.0)
            * 3600.0
    });
    Ok(Measurement {
        leak,
        class: verdict["class"].as_str().unwrap_or("none").to_owned(),
        burn_rate_bytes_per_h,
        summary_path: out.join("summary.json"),
    })
}
