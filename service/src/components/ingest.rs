//! STUB, not built yet: the `subslice-pin` scenario's component (ingest).
//!
//! See `shared/SCENARIOS.md` and `service/README.md` ("Adding a scenario").

use std::sync::Arc;

use axum::Router;

use super::{Component, Ctx, Gauges};
use crate::catalogue::{LeakClass, Scenario, ScenarioId, Step};
use crate::config::Config;

/// The component (stub).
pub struct DocumentIngest {
    _ctx: Ctx,
}

impl DocumentIngest {
    pub fn new(ctx: Ctx) -> DocumentIngest {
        DocumentIngest { _ctx: ctx }
    }
}

impl Component for DocumentIngest {
    fn router(self: Arc<Self>) -> Router {
        Router::new()
    }

    fn gauges(&self, _out: &mut Gauges) {}
}

/// The `subslice-pin` catalogue entry (no ground truth claimed until built).
pub fn scenario(_c: &Config) -> Scenario {
    Scenario::new(
        ScenarioId::SubslicePin,
        LeakClass::Retention,
        "ingest",
        vec![Step::with_body("POST", "/documents", 1 << 20)],
    )
    .gauge("ingest_index_entries")
    .paths("not built yet", "not built yet")
}
