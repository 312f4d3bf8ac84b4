//! STUB, not built yet: the `vec-regrowth` scenario's component (merge).
//!
//! See `shared/SCENARIOS.md` and `service/README.md` ("Adding a scenario").

use std::sync::Arc;

use axum::Router;

use super::{Component, Ctx, Gauges};
use crate::catalogue::{LeakClass, Scenario, ScenarioId, Step};
use crate::config::Config;

/// The component (stub).
pub struct Merge {
    _ctx: Ctx,
}

impl Merge {
    pub fn new(ctx: Ctx) -> Merge {
        Merge { _ctx: ctx }
    }
}

impl Component for Merge {
    fn router(self: Arc<Self>) -> Router {
        Router::new()
    }

    fn gauges(&self, _out: &mut Gauges) {}
}

/// The `vec-regrowth` catalogue entry (no ground truth claimed until built).
pub fn scenario(_c: &Config) -> Scenario {
    Scenario::new(
        ScenarioId::VecRegrowth,
        LeakClass::Churn,
        "merge",
        vec![Step::with_body("POST", "/merge", 0)],
    )
    .gauge("merge_requests")
    .paths("not built yet", "not built yet")
}
