//! What `cargo ci bisect --json` prints: each release's burn rate under
//! identical load and the first bad release.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// One release, measured or not.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Row {
    pub release: String,
    pub burn_rate_bytes_per_h: Option<f64>,
    /// `leak (CLASS)` or `no leak`; null when the release was not measured.
    pub verdict: Option<String>,
    pub features: Vec<String>,
}

/// The report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BisectReport {
    pub first_bad: Option<String>,
    pub measured: Vec<Row>,
    pub builds: usize,
    pub measurements: usize,
    pub max_measurements: usize,
    pub elapsed_s: f64,
    pub plot: PathBuf,
}
