//! The off-heap artifact: an smaps summary of the target, where resident
//! memory outside the allocator sits.

use std::path::Path;

use anyhow::{Context, Result};
use leaklab_model::run::Finding;

use super::Artifact;
use crate::human::human_bytes;

/// smaps summary of the target: where resident memory outside the allocator sits.
pub fn offheap_artifact(pid: u32, out: &Path, f: &Finding) -> Result<Artifact> {
    let smaps =
        leaklab_probe::smaps_summary(leaklab_probe::Pid::Of(pid)).context("reading smaps")?;
    let path = out.join("smaps.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&smaps)?)?;
    eprintln!(
        "        smaps summary -> {}: {} mappings, {} anonymous ones holding {} resident",
        path.display(),
        smaps.mappings,
        smaps.anon_mappings,
        human_bytes(smaps.anon_mapping_rss_bytes as f64)
    );
    Ok(Artifact {
        file: Some(path),
        path: format!(
            "{} anonymous mappings hold {} resident outside the allocator; {} grows them ({} climbs {}/s)",
            smaps.anon_mappings,
            human_bytes(smaps.anon_mapping_rss_bytes as f64),
            f.component.as_deref().unwrap_or("?"),
            f.signal,
            human_bytes(f.slope_per_s)
        ),
    })
}
