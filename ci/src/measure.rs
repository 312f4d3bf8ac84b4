//! Measuring one release: start its service on loopback, drive the identical
//! mixed workload with `loadgen run --scenario all`, read the verdict.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{bail, Context, Result};
use leaklab_model::run::RunSummary;
use leaklab_model::LeakClass;
use serde::Serialize;

use crate::json;
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
    pub class: LeakClass,
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
    let summary: RunSummary = json::parse_report(
        &output.stdout,
        "the summary `loadgen run --scenario all --json` printed",
    )?;
    Ok(Measurement {
        leak: summary.verdict.leak,
        class: summary.verdict.class,
        burn_rate_bytes_per_h: burn_rate_bytes_per_h(&summary)?,
        summary_path: out.join("summary.json"),
    })
}

/// The largest finding's burn rate, or the live heap's slope per hour when no
/// finding has one (no leak). A summary with neither cannot be measured.
pub fn burn_rate_bytes_per_h(summary: &RunSummary) -> Result<f64> {
    let largest = summary
        .verdict
        .findings
        .iter()
        .filter_map(|f| f.burn_rate_bytes_per_h)
        .reduce(f64::max);
    if let Some(burn) = largest {
        return Ok(burn);
    }
    let allocated = summary.signals.get("allocated").with_context(|| {
        format!(
            "loadgen's summary has no burn rate in its findings and no `allocated` signal \
             (signals: {:?}); too few samples?",
            summary.signals.keys().collect::<Vec<_>>()
        )
    })?;
    Ok(allocated.slope_per_s * 3600.0)
}

#[cfg(test)]
mod tests {
    use leaklab_model::run::SignalFit;

    use super::*;
    use crate::check::run::tests::summary;

    #[test]
    fn the_burn_rate_is_the_largest_finding_else_the_heap_slope_else_an_error() {
        let leaky = summary(true, LeakClass::Retention, None);
        assert_eq!(burn_rate_bytes_per_h(&leaky).unwrap(), 3.6e9);
        let mut flat = summary(false, LeakClass::None, None);
        let err = burn_rate_bytes_per_h(&flat).unwrap_err().to_string();
        assert!(err.contains("no `allocated` signal"), "{err}");
        flat.signals.insert(
            "allocated".into(),
            SignalFit {
                slope_per_s: 10.0,
                ci95: [9.0, 11.0],
                p_value: 0.5,
                first: 0.0,
                last: 0.0,
                baseline: None,
                n: 60,
                noise: 1.0,
                slope_first_third: 10.0,
                slope_last_third: 10.0,
                rising: false,
            },
        );
        assert_eq!(burn_rate_bytes_per_h(&flat).unwrap(), 36_000.0);
    }
}
