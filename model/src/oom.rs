//! `leaklab.oom/v1`: what `loadgen oom --json` prints and `oom.json` holds:
//! a leak run under a memory limit to the OOM kill, predicted against actual.

use serde::{Deserialize, Serialize};

pub const SCHEMA: &str = "leaklab.oom/v1";

/// One prediction of the kill, made at `at_s`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    /// When the prediction was made (seconds since the load started).
    pub at_s: f64,
    /// When the kill is predicted (seconds since the load started).
    pub predicted_time_to_oom_s: f64,
    /// `predicted_time_to_oom_s - at_s`.
    pub remaining_s: f64,
    /// The fitted usage at `at_s`.
    pub usage_bytes: f64,
    pub slope_bytes_per_s: f64,
}

/// What shows the kernel killed the service for memory.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct OomEvidence {
    /// How the service ended, in words.
    pub exit: Option<String>,
    /// 128 + signal for a signal death (137 = SIGKILL), else the exit code.
    pub exit_code: Option<i32>,
    /// The cgroup's `oom_kill` counter before and after (cgroup mode).
    pub cgroup_oom_kills_before: Option<u64>,
    pub cgroup_oom_kills_after: Option<u64>,
    /// Docker's `State.OOMKilled` (compose mode).
    pub docker_oom_killed: Option<bool>,
}

/// The result (`--json`, and `oom.json` in the out directory).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OomReport {
    pub schema: String,
    pub scenario: String,
    /// `cgroup` or `docker`.
    pub mode: String,
    pub cgroup_version: Option<String>,
    pub limit_bytes: u64,
    pub rate: f64,
    pub requests: u64,
    /// Whether the OOM killer ended the service (SIGKILL and an OOM record).
    pub killed: bool,
    /// Seconds from the start of the load to the kill, or null.
    pub actual_time_to_oom_s: Option<f64>,
    /// The prediction made at half the actual time (or the last one when the
    /// service was not killed).
    pub predicted_time_to_oom_s: Option<f64>,
    /// `(predicted - actual) / actual`, in percent.
    pub prediction_error_pct: Option<f64>,
    pub burn_rate_bytes_per_h: Option<f64>,
    pub baseline_usage_bytes: u64,
    pub peak_usage_bytes: u64,
    /// First sample within 1% of the limit.
    pub limit_reached_at_s: Option<f64>,
    /// The last sample at which completed requests still went up.
    pub last_progress_at_s: Option<f64>,
    /// Whether the service's code was pinned (see `--allow-thrash`).
    pub code_pinned: bool,
    pub evidence: OomEvidence,
    pub predictions: Vec<Prediction>,
    pub samples: String,
    pub plot: Option<String>,
    pub notes: Vec<String>,
}
