//! STUB, not built yet: the `label-cardinality` scenario's component (metrics).
//!
//! See `shared/SCENARIOS.md` and `service/README.md` ("Adding a scenario").

use std::sync::Arc;

use axum::Router;

use super::{Component, Ctx, Gauges};
use crate::catalogue::{LeakClass, Scenario, ScenarioId, Step};
use crate::config::Config;

/// The component (stub).
pub struct RequestMetrics {
    _ctx: Ctx,
}

impl RequestMetrics {
    pub fn new(ctx: Ctx) -> RequestMetrics {
        RequestMetrics { _ctx: ctx }
    }
}

impl Component for RequestMetrics {
    fn router(self: Arc<Self>) -> Router {
        Router::new()
    }

    fn gauges(&self, _out: &mut Gauges) {}
}

/// The `label-cardinality` catalogue entry (no ground truth claimed until built).
pub fn scenario(_c: &Config) -> Scenario {
    Scenario::new(
        ScenarioId::LabelCardinality,
        LeakClass::Retention,
        "metrics",
        vec![Step::get("/items/{key}")],
    )
    .gauge("label_series")
    .paths("not built yet", "not built yet")
}
