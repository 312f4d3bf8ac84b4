//! `leaklab.run/v1`: the run summary `loadgen run --json` prints and
//! `summary.json` holds, and the lines of `samples.jsonl` (one [`Sample`]
//! each, written as the run goes). Field names are a stable interface
//! (`docs/interfaces.md`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::LeakClass;

pub const SCHEMA: &str = "leaklab.run/v1";

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RunSummary {
    pub schema: String,
    pub scenario: Option<String>,
    pub target: String,
    /// The pid whose `/proc` was read independently, when known.
    pub pid: Option<u32>,
    pub load: LoadSummary,
    /// Per signal, over the measurement window (after warm-up).
    pub signals: BTreeMap<String, SignalFit>,
    pub verdict: Verdict,
    pub ground_truth: Option<GroundTruth>,
    pub target_died: Option<TargetDied>,
    pub samples: SamplesInfo,
    /// Path of the HTML report, when `--out` was given.
    pub report: Option<String>,
    pub notes: Vec<String>,
    /// `--until-verdict` ended the run before `--duration`: its sequential
    /// test was decisive and the judge agreed.
    #[serde(default)]
    pub stopped_early: bool,
    /// With `--until-verdict`: which test gave the verdict, and when.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequential: Option<SequentialSummary>,
}

/// How a `--until-verdict` run reached its verdict. The verdict itself is
/// always the judge's, over the samples taken.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SequentialSummary {
    /// `sequential` (decisive before the maximum: the run stopped) or
    /// `fixed-window` (the run went on to `--duration`).
    pub decided_by: String,
    /// What the sequential test decided: `climb` (a leak call: a watched
    /// signal's confidence sequence lies above zero and its growth is large
    /// and persists) or `flat` (every watched signal's lies below its
    /// practical floor); null when the run reached the maximum undecided.
    pub decision: Option<String>,
    /// The signal whose confidence sequence called the climb.
    pub signal: Option<String>,
    /// Seconds from the end of warm-up to the decision; when the fixed
    /// window decided, to the end of the load.
    pub decision_after_s: f64,
    /// Looks taken, one per second of measurement.
    pub looks: u32,
    /// The error budget of each call (climb, flat) over every look and signal.
    pub alpha: f64,
    /// At the last look, how far the evidence was from a leak call and from
    /// a flat call (0 to 1; 1 is a call).
    pub evidence_leak: f64,
    pub evidence_flat: f64,
    /// `--duration`: the most the run could last.
    pub max_duration_s: f64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct LoadSummary {
    /// Triggering requests per second asked for; null in max-rate mode.
    pub rate_target: Option<f64>,
    /// Completed triggering requests per second over the measurement window.
    pub rate_achieved: f64,
    /// Triggering requests completed.
    pub requests: u64,
    /// HTTP requests sent (recipes with several steps send more).
    pub http_requests: u64,
    /// Transport errors and 5xx answers.
    pub errors: u64,
    /// Arrivals that could not be sent on time.
    pub dropped: u64,
    pub status_4xx: u64,
    pub duration_s: f64,
    pub warmup_s: f64,
    /// Coordinated-omission corrected (from the planned send time).
    pub latency_ms: Latency,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub mean: f64,
}

/// One signal's trend over the measurement window.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SignalFit {
    /// Theil–Sen slope, units per second.
    pub slope_per_s: f64,
    pub ci95: [f64; 2],
    /// Mann–Kendall two-sided p-value.
    pub p_value: f64,
    pub first: f64,
    pub last: f64,
    /// Median of the samples before the load started, when there were any.
    pub baseline: Option<f64>,
    /// Points fitted.
    pub n: usize,
    /// Robust spread of the residuals around the fit (MAD σ).
    pub noise: f64,
    /// Theil–Sen slope of the first and the last third of the window.
    pub slope_first_third: f64,
    pub slope_last_third: f64,
    /// Significant, practically large, and not levelling off.
    pub rising: bool,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Finding {
    pub class: LeakClass,
    /// The catalogue component whose gauge moves with the signal.
    pub component: Option<String>,
    pub gauge: Option<String>,
    pub signal: String,
    pub slope_per_s: f64,
    pub burn_rate_bytes_per_h: Option<f64>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Verdict {
    pub leak: bool,
    pub class: LeakClass,
    pub findings: Vec<Finding>,
    pub time_to_oom_s: Option<f64>,
    /// 95% interval of the time to OOM; the upper end is null when the slope's
    /// interval reaches zero.
    pub time_to_oom_interval_s: Option<[Option<f64>; 2]>,
    pub limit_bytes: Option<u64>,
    /// Why, in a sentence each.
    pub reasons: Vec<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct GroundTruth {
    pub signal: String,
    /// Catalogue truth per triggering request.
    pub per_request: f64,
    pub rate_achieved: f64,
    pub expected_slope_per_s: f64,
    pub measured_slope_per_s: f64,
    pub error_pct: f64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct SamplesInfo {
    pub taken: u64,
    pub kept: usize,
    pub interval_s: f64,
    pub path: Option<String>,
}

/// Where in the run a sample was taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Before the load starts: the floor.
    Baseline,
    Warmup,
    Measure,
    /// After the load ended.
    Cooldown,
}

/// The target's own report (`/debug/memory`), the fields loadgen uses.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TargetMemory {
    #[serde(default)]
    pub allocated: u64,
    #[serde(default)]
    pub active: u64,
    #[serde(default)]
    pub resident: u64,
    #[serde(default)]
    pub mapped: u64,
    #[serde(default)]
    pub retained: u64,
    /// Allocation requests the allocator served since start (a counter).
    #[serde(default)]
    pub allocations: u64,
    #[serde(default)]
    pub rss: u64,
    #[serde(default)]
    pub alive_tasks: u64,
    #[serde(default)]
    pub open_fds: u64,
    #[serde(default)]
    pub maps: u64,
    #[serde(default)]
    pub components: BTreeMap<String, u64>,
    #[serde(default)]
    pub cgroup: Option<CgroupReading>,
    #[serde(default)]
    pub pid: Option<u32>,
    #[serde(default)]
    pub leak_budget_bytes: Option<u64>,
    /// How many scenarios have spent their leak budget (their leaky paths
    /// stopped retaining): a climb after that point is cut off.
    #[serde(default)]
    pub budget_exhausted: u64,
}

/// A cgroup's memory, from the target or read independently.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CgroupReading {
    #[serde(default)]
    pub limit: Option<u64>,
    #[serde(default)]
    pub usage: u64,
    #[serde(default)]
    pub oom_kills: Option<u64>,
}

/// Independent `/proc/<pid>` numbers.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ProcReading {
    pub rss: u64,
    pub open_fds: u64,
    pub maps: u64,
}

/// One sample: one line of `samples.jsonl`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Seconds since the load started (negative in the baseline).
    pub t: f64,
    pub phase: Phase,
    /// Triggering requests completed so far.
    pub requests: u64,
    /// Triggering requests sent and not yet answered.
    #[serde(default)]
    pub in_flight: u64,
    #[serde(default)]
    pub memory: Option<TargetMemory>,
    #[serde(default)]
    pub proc: Option<ProcReading>,
    #[serde(default)]
    pub cgroup: Option<CgroupReading>,
    /// Values scraped from the target's Prometheus exposition (`--metrics`),
    /// by series name: for targets that are not leaklab services.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<BTreeMap<String, f64>>,
    /// Why `memory` is missing, when it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Sample {
    /// RSS: the independent `/proc` reading when there is one, else the target's.
    pub fn rss(&self) -> Option<u64> {
        self.proc
            .as_ref()
            .map(|p| p.rss)
            .or_else(|| self.memory.as_ref().map(|m| m.rss))
    }

    /// The cgroup limit, independent reading first.
    pub fn cgroup_limit(&self) -> Option<u64> {
        self.cgroup
            .as_ref()
            .and_then(|c| c.limit)
            .or_else(|| self.memory.as_ref()?.cgroup.as_ref()?.limit)
    }
}

/// When and why the target stopped answering.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TargetDied {
    pub at_s: f64,
    pub reason: String,
}
