//! `leaklab.hunt/v1`: what `loadgen hunt --json` prints.

use serde::{Deserialize, Serialize};

use crate::LeakClass;

pub const SCHEMA: &str = "leaklab.hunt/v1";

/// One leak the hunt found.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HuntFinding {
    /// The scenario this finding is attributed to, if any.
    pub scenario: Option<String>,
    pub class: LeakClass,
    pub component: Option<String>,
    pub signal: String,
    pub burn_rate_bytes_per_h: Option<f64>,
    pub time_to_oom_s: Option<f64>,
    /// The artifact taken for this class (a file under `--out`).
    pub artifact: Option<String>,
    /// Why the signals say this class.
    pub why: String,
    /// The retention path: who holds what, allocated where.
    pub path: String,
    /// The route whose traffic triggers it (a blind hunt's differential step).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    /// What showed it, one line each (a blind hunt's evidence).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub evidence: Vec<String>,
}

/// The re-measurement with the fixes on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AfterFix {
    pub leak: bool,
    pub class: LeakClass,
    pub burn_rate_bytes_per_h: f64,
    pub alive_tasks_slope_per_s: f64,
}

/// The whole report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HuntReport {
    pub schema: String,
    pub leaks: Vec<String>,
    pub findings: Vec<HuntFinding>,
    pub after_fix: AfterFix,
    /// Path of `report.html`.
    pub report: String,
    /// Path of `hunt.md`.
    pub markdown: String,
    pub elapsed_s: f64,
    /// True for `loadgen hunt --blind`: `leaks` is empty, the findings come
    /// from evidence only.
    #[serde(default)]
    pub blind: bool,
    /// The mystery seed of a service the blind hunt started itself (for
    /// `loadgen grade`); the hunt never reads what it turned on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mystery_seed: Option<u64>,
    /// Whether the re-measurement with the named fixes on found the floor
    /// flat; `None` when there was nothing to fix.
    #[serde(default)]
    pub fix_proven: Option<bool>,
    /// What the hunt could not tell, or what cut its evidence short.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}
