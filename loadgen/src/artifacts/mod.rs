//! The artifacts stage: the evidence each leak class calls for, taken from a
//! live target and written under an output directory.
//!
//! - [`pprof`]: reading pprof heap profiles and diffing them by allocation site.
//! - [`heap`]: retention, a heap-profile diff since warm-up.
//! - [`tasks`]: a task leak, the task census by spawn site.
//! - [`smaps`]: off-heap memory, an smaps summary.
//! - [`memory`]: RSS retained and plateaus, allocator stats and gauges.

pub mod heap;
pub mod memory;
pub mod pprof;
pub mod smaps;
pub mod tasks;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::target::Control;

/// What one artifact came to.
#[derive(Debug, Default)]
pub struct Artifact {
    /// The file written (under the output directory), if any.
    pub file: Option<PathBuf>,
    /// The retention path it shows: who holds what, allocated where.
    pub path: String,
}

/// Fetches `path` with a generous timeout (profiles and dumps take a while to symbolize).
pub async fn fetch(control: &Control, path: &str) -> Result<Vec<u8>> {
    control
        .get_bytes_within(path, Duration::from_secs(60))
        .await
        .map(|b| b.to_vec())
        .with_context(|| format!("GET {path}"))
}
