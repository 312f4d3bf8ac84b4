//! The artifact for RSS retained and plateaus: the allocator's stats and the
//! component gauges (`/debug/memory`) as the target reports them.

use std::path::Path;

use anyhow::Result;
use leaklab_model::run::Finding;
use leaklab_model::LeakClass;
use serde_json::Value;

use super::{fetch, Artifact};
use crate::human::human_bytes;
use crate::target::Control;

/// Allocator stats and component gauges, for RSS retained and plateaus.
pub async fn memory_artifact(control: &Control, out: &Path, f: &Finding) -> Result<Artifact> {
    let memory: Value = serde_json::from_slice(&fetch(control, "/debug/memory").await?)?;
    let path = out.join(format!("{}-memory.json", f.class));
    std::fs::write(&path, serde_json::to_vec_pretty(&memory)?)?;
    let n = |k: &str| memory[k].as_f64().unwrap_or(0.0);
    let text = match f.class {
        LeakClass::RssRetained => format!(
            "RSS {} while the live heap is {}: jemalloc keeps {} of freed pages resident ({})",
            human_bytes(n("rss")),
            human_bytes(n("allocated")),
            human_bytes(n("resident") - n("active")),
            f.component.as_deref().unwrap_or("?")
        ),
        LeakClass::Plateau
        | LeakClass::RssGrowth
        | LeakClass::Retention
        | LeakClass::TaskLeak
        | LeakClass::OffHeap
        | LeakClass::Churn
        | LeakClass::Bounded
        | LeakClass::None => format!(
            "{} holds its high-water mark: gauges {}",
            f.component.as_deref().unwrap_or("?"),
            memory["components"]
        ),
    };
    Ok(Artifact {
        file: Some(path),
        path: text,
    })
}
