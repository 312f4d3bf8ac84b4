//! `cargo ci check oom FILE`: that `loadgen oom --json` saw the service
//! OOM-killed ([`OomReport`], `leaklab.oom/v1`), and how close the
//! half-time prediction of the kill came.

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::Args;
use leaklab_model::oom::OomReport;

use super::{seconds, Check, Checked};
use crate::json;

/// 128 + SIGKILL: how a process the OOM killer ended exits.
const SIGKILL_EXIT: i32 = 137;

/// Options of `cargo ci check oom`. Always checked: the service was killed,
/// exited 137, and the kernel recorded an OOM kill (the cgroup's `oom_kill`
/// counter rose; with `--docker`, Docker's `State.OOMKilled`).
#[derive(Debug, Args)]
pub struct OomCheck {
    /// The report (`loadgen oom --json > FILE`).
    pub file: PathBuf,
    /// The run was a compose container (`loadgen oom --docker`): Docker's
    /// OOMKilled is the kernel's record. Without it, the run had a cgroup of
    /// its own and its oom_kill counter must have risen.
    #[arg(long)]
    pub docker: bool,
    /// The prediction made at half the actual time may miss the kill by at
    /// most this many percent, either way.
    #[arg(long, value_name = "PCT")]
    pub max_error_pct: Option<f64>,
}

fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "-".to_owned())
}

impl OomCheck {
    fn line(&self, r: &OomReport) -> String {
        let e = &r.evidence;
        let prediction = format!(
            "predicted at half-time {} ({})",
            seconds(r.predicted_time_to_oom_s),
            r.prediction_error_pct
                .map(|p| format!("{p:+.1}%"))
                .unwrap_or_else(|| "no error figure".to_owned())
        );
        let killed = if r.killed { "killed" } else { "NOT killed" };
        if self.docker {
            format!(
                "{}: container {killed} at {} (exit {}, OOMKilled {}), {prediction}",
                r.mode,
                seconds(r.actual_time_to_oom_s),
                opt(e.exit_code),
                opt(e.docker_oom_killed)
            )
        } else {
            format!(
                "{} {}: {killed} at {} (exit {}), {prediction}, oom_kill {} -> {}",
                r.mode,
                r.cgroup_version.as_deref().unwrap_or("?"),
                seconds(r.actual_time_to_oom_s),
                opt(e.exit_code),
                opt(e.cgroup_oom_kills_before),
                opt(e.cgroup_oom_kills_after)
            )
        }
    }
}

impl Check for OomCheck {
    type Report = OomReport;

    fn read(file: &Path) -> Result<OomReport> {
        json::read_report(file)
    }

    fn file(&self) -> &Path {
        &self.file
    }

    fn check(&self, r: &OomReport) -> Checked {
        let e = &r.evidence;
        let mut checked = Checked::new(self.line(r));
        let mode = if self.docker { "docker" } else { "cgroup" };
        checked.expect(r.mode == mode, format_args!("mode {mode}"), &r.mode);
        checked.expect(r.killed, "the service OOM-killed", "it was not killed");
        checked.expect(
            e.exit_code == Some(SIGKILL_EXIT),
            format_args!("exit code {SIGKILL_EXIT} (SIGKILL)"),
            format_args!(
                "{} ({})",
                opt(e.exit_code),
                e.exit.as_deref().unwrap_or("-")
            ),
        );
        if self.docker {
            checked.expect(
                e.docker_oom_killed == Some(true),
                "Docker's State.OOMKilled true",
                opt(e.docker_oom_killed),
            );
        } else {
            let rose = matches!(
                (e.cgroup_oom_kills_before, e.cgroup_oom_kills_after),
                (Some(before), Some(after)) if after > before
            );
            checked.expect(
                rose,
                "the cgroup's oom_kill counter to rise",
                format_args!(
                    "{} -> {}",
                    opt(e.cgroup_oom_kills_before),
                    opt(e.cgroup_oom_kills_after)
                ),
            );
        }
        if let Some(max) = self.max_error_pct {
            checked.expect(
                r.prediction_error_pct.is_some_and(|p| p.abs() <= max),
                format_args!("a half-time prediction within ±{max}% of the kill"),
                r.prediction_error_pct
                    .map(|p| format!("{p:+.1}%"))
                    .unwrap_or_else(|| "no prediction error (no kill, or no prediction)".into()),
            );
        }
        checked
    }
}

#[cfg(test)]
mod tests {
    use leaklab_model::oom::OomEvidence;

    use super::*;

    fn report(mode: &str, error_pct: f64, evidence: OomEvidence) -> OomReport {
        OomReport {
            schema: leaklab_model::oom::SCHEMA.to_owned(),
            scenario: "unbounded-cache".into(),
            mode: mode.into(),
            cgroup_version: Some("v2".into()),
            limit_bytes: 128 << 20,
            rate: 300.0,
            requests: 12_000,
            killed: evidence.exit_code == Some(137),
            actual_time_to_oom_s: Some(40.0),
            predicted_time_to_oom_s: Some(40.0 * (1.0 + error_pct / 100.0)),
            prediction_error_pct: Some(error_pct),
            burn_rate_bytes_per_h: Some(1e10),
            baseline_usage_bytes: 20 << 20,
            peak_usage_bytes: 128 << 20,
            limit_reached_at_s: Some(39.5),
            last_progress_at_s: Some(39.8),
            code_pinned: true,
            evidence,
            predictions: vec![],
            samples: "out/ci-oom/samples.jsonl".into(),
            plot: None,
            notes: vec![],
        }
    }

    fn cgroup_kill(before: u64, after: u64) -> OomEvidence {
        OomEvidence {
            exit: Some("killed by SIGKILL".into()),
            exit_code: Some(137),
            cgroup_oom_kills_before: Some(before),
            cgroup_oom_kills_after: Some(after),
            docker_oom_killed: None,
        }
    }

    fn check(docker: bool, max_error_pct: Option<f64>) -> OomCheck {
        OomCheck {
            file: "out/ci-oom.json".into(),
            docker,
            max_error_pct,
        }
    }

    #[test]
    fn a_recorded_kill_predicted_within_bounds_passes() {
        let checked = check(false, Some(15.0)).check(&report("cgroup", -3.5, cgroup_kill(0, 1)));
        assert!(checked.passed(), "{:?}", checked.unmet);
        assert_eq!(
            checked.line,
            "cgroup v2: killed at 40.0 s (exit 137), predicted at half-time 38.6 s (-3.5%), oom_kill 0 -> 1"
        );
        let docker = OomEvidence {
            exit_code: Some(137),
            docker_oom_killed: Some(true),
            ..OomEvidence::default()
        };
        let checked = check(true, None).check(&report("docker", 30.0, docker));
        assert!(checked.passed(), "{:?}", checked.unmet);
    }

    #[test]
    fn no_kernel_record_or_a_poor_prediction_fails() {
        let checked = check(false, Some(15.0)).check(&report("cgroup", 20.0, cgroup_kill(1, 1)));
        assert_eq!(
            checked.unmet,
            [
                "expected the cgroup's oom_kill counter to rise, found 1 -> 1",
                "expected a half-time prediction within ±15% of the kill, found +20.0%",
            ]
        );
        let not_killed = OomEvidence {
            exit_code: Some(0),
            docker_oom_killed: Some(false),
            ..OomEvidence::default()
        };
        let checked = check(true, None).check(&report("docker", 0.0, not_killed));
        assert_eq!(checked.unmet.len(), 3, "{:?}", checked.unmet);
        assert!(checked.unmet[0].starts_with("expected the service OOM-killed"));
        let checked = check(true, None).check(&report("cgroup", 0.0, cgroup_kill(0, 1)));
        assert!(checked.unmet[0].starts_with("expected mode docker, found cgroup"));
    }
}
