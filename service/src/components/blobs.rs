//! STUB, not built yet: the `offheap-mmap` scenario's component (blobs).
//!
//! See `shared/SCENARIOS.md` and `service/README.md` ("Adding a scenario").

use std::sync::Arc;

use axum::Router;

use super::{Component, Ctx, Gauges};
use crate::catalogue::{LeakClass, Scenario, ScenarioId, Step};
use crate::config::Config;

/// The component (stub).
pub struct BlobScratch {
    _ctx: Ctx,
}

impl BlobScratch {
    pub fn new(ctx: Ctx) -> BlobScratch {
        BlobScratch { _ctx: ctx }
    }
}

impl Component for BlobScratch {
    fn router(self: Arc<Self>) -> Router {
        Router::new()
    }

    fn gauges(&self, _out: &mut Gauges) {}
}

/// The `offheap-mmap` catalogue entry (no ground truth claimed until built).
pub fn scenario(_c: &Config) -> Scenario {
    Scenario::new(
        ScenarioId::OffheapMmap,
        LeakClass::OffHeap,
        "blobs",
        vec![Step::with_body("PUT", "/blobs/{key}", 0)],
    )
    .gauge("mmap_regions")
    .paths("not built yet", "not built yet")
}
