//! `leaklab.canary/v1`: `canary.json`, a baseline and a canary judged side
//! by side.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::run::{SignalFit, Verdict};
use crate::LeakClass;

pub const SCHEMA: &str = "leaklab.canary/v1";

/// One flag change on the canary.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Toggle {
    pub id: String,
    pub enabled: bool,
    /// Seconds after the load starts.
    pub at_s: f64,
}

/// What happened to one toggle.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ToggleDone {
    #[serde(flatten)]
    pub toggle: Toggle,
    /// When it was applied (seconds after the canary's load started).
    pub applied_at_s: Option<f64>,
    pub error: Option<String>,
}

/// One side's result over the comparison window.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Side {
    pub target: String,
    pub pid: Option<u32>,
    pub verdict: Verdict,
    pub signals: BTreeMap<String, SignalFit>,
    /// `loadgen run`'s own summary is in this directory.
    pub dir: String,
    pub died: bool,
}

/// One signal on both sides.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Compared {
    pub signal: String,
    pub baseline_slope_per_s: f64,
    pub baseline_ci95: [f64; 2],
    pub canary_slope_per_s: f64,
    pub canary_ci95: [f64; 2],
    /// Canary minus baseline, units per second.
    pub delta_per_s: f64,
    /// The canary climbs, and its interval lies wholly above the baseline's
    /// (a slower decline than the baseline's is not a climb).
    pub canary_above: bool,
}

/// The judgement.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CanaryVerdict {
    /// The canary leaks and the baseline does not leak as much.
    pub regression: bool,
    /// The canary's leak class (`none` when it does not leak).
    pub class: LeakClass,
    pub component: Option<String>,
    pub signal: Option<String>,
    /// Extra bytes per hour the canary burns over the baseline in that signal.
    pub burn_rate_delta_bytes_per_h: Option<f64>,
    pub reasons: Vec<String>,
}

/// `canary.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CanaryReport {
    pub schema: String,
    pub scenario: String,
    /// Seconds after the load started: the comparison window.
    pub window_s: [f64; 2],
    pub toggles: Vec<ToggleDone>,
    pub baseline: Side,
    pub canary: Side,
    pub compared: Vec<Compared>,
    pub verdict: CanaryVerdict,
    pub plot: Option<String>,
    pub notes: Vec<String>,
    /// With `--until-verdict`: how and when the pair was decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequential: Option<CanarySequential>,
}

/// `loadgen canary --until-verdict`: the canary's sequential test, watched
/// from the start of the comparison window, stopped both sides as soon as
/// it was decisive and the side-by-side comparison agreed.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CanarySequential {
    /// `sequential` (decided before `--duration`: both runs stopped) or
    /// `fixed-window` (the runs went on to `--duration`).
    pub decided_by: String,
    /// `regression` or `no-regression`; null when the maximum came first.
    pub decision: Option<String>,
    /// Seconds after the load started when it was decided (for the fixed
    /// window, the end of the load).
    pub decided_at_s: f64,
    /// Seconds from the last toggle applied to the decision; null when no
    /// toggle was applied.
    pub after_toggle_s: Option<f64>,
    /// The canary's looks that spent error budget, one per second.
    pub looks: u32,
    /// The error budget of each call over every look and signal.
    pub alpha: f64,
    /// `--duration`: the most the runs could last.
    pub max_duration_s: f64,
}
