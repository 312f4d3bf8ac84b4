//! The retention artifact: a heap-profile diff by allocation site, between
//! the profile taken when warm-up ended and one taken now, and the retention
//! path it points at (the component whose gauge grows, the site that allocates).

use std::path::Path;

use anyhow::Result;
use leaklab_model::run::{Finding, RunSummary};
use leaklab_model::Scenario;

use super::{fetch, pprof, Artifact};
use crate::human::human_bytes;
use crate::target::Control;

/// Allocation sites of the heap-profile route itself (its symbolizer).
const PROFILER_SITE: &str = "leaklab_service::telemetry::heap::";

/// Heap-profile diff: where the live heap grew between warm-up's end and now.
/// `mixed` is how many scenarios share the run round-robin: each gets
/// 1/`mixed` of the triggering requests, so per-request figures are per
/// request of this scenario.
pub async fn retention_artifact(
    mixed: usize,
    control: &Control,
    out: &Path,
    baseline: Option<&[u8]>,
    f: &Finding,
    owner: Option<&Scenario>,
    leaky: &RunSummary,
) -> Result<Artifact> {
    let end = fetch(control, "/debug/pprof/heap").await?;
    std::fs::write(out.join("heap-end.pb.gz"), &end)?;
    if let Ok(svg) = fetch(control, "/debug/pprof/heap?format=svg").await {
        std::fs::write(out.join("heap-end.svg"), svg)?;
    }
    let end_sites = pprof::sites(&pprof::decode(&end)?, "leaklab_service::");
    let base_sites = match baseline {
        Some(b) => {
            std::fs::write(out.join("heap-base.pb.gz"), b)?;
            pprof::sites(&pprof::decode(b)?, "leaklab_service::")
        }
        None => pprof::Sites::default(),
    };
    let rows = pprof::diff(&base_sites, &end_sites, 10);
    let text = pprof::diff_table(&rows, "in-use bytes, jemalloc samples");
    let diff_path = out.join("heap-diff.txt");
    std::fs::write(&diff_path, &text)?;
    eprintln!("        heap profile diff -> {}", diff_path.display());
    for line in text.lines().take(4) {
        eprintln!("          {line}");
    }
    // Which component's gauge grows per request, and what the top site grew
    // per triggering request between the two profiles.
    let rate = (leaky.load.rate_achieved / mixed.max(1) as f64).max(1e-9);
    let window_requests = (rate * (leaky.load.duration_s - leaky.load.warmup_s)).max(1.0);
    let gauge = f
        .gauge
        .clone()
        .or_else(|| owner.map(|o| o.gauge.clone()))
        .unwrap_or_default();
    let per_unit = leaky
        .signals
        .get(&format!("components.{gauge}"))
        .map(|g| g.slope_per_s / rate)
        .unwrap_or(0.0);
    // The profiler's own tables are not the service's retention.
    let path = match rows.iter().find(|r| !r.site.contains(PROFILER_SITE)) {
        Some(top) => format!(
            "{} (gauge {gauge} +{per_unit:.2} per request) retains what {} allocates: +{} in the heap profile since warm-up, ~{} per request of this scenario",
            f.component.as_deref().unwrap_or("?"),
            top.site,
            human_bytes(top.growth_bytes as f64),
            human_bytes(top.growth_bytes as f64 / window_requests),
        ),
        None => format!(
            "{} (gauge {gauge} +{per_unit:.2} per request); the heap profile sampled no growth",
            f.component.as_deref().unwrap_or("?")
        ),
    };
    Ok(Artifact {
        file: Some(diff_path),
        path,
    })
}
