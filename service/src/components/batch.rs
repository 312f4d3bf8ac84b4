//! STUB, not built yet: the `rss-retained` scenario's component (batch).
//!
//! See `shared/SCENARIOS.md` and `service/README.md` ("Adding a scenario").

use std::sync::Arc;

use axum::Router;

use super::{Component, Ctx, Gauges};
use crate::catalogue::{LeakClass, Scenario, ScenarioId, Step};
use crate::config::Config;

/// The component (stub).
pub struct BatchIngest {
    _ctx: Ctx,
}

impl BatchIngest {
    pub fn new(ctx: Ctx) -> BatchIngest {
        BatchIngest { _ctx: ctx }
    }
}

impl Component for BatchIngest {
    fn router(self: Arc<Self>) -> Router {
        Router::new()
    }

    fn gauges(&self, _out: &mut Gauges) {}
}

/// The `rss-retained` catalogue entry (no ground truth claimed until built).
pub fn scenario(_c: &Config) -> Scenario {
    Scenario::new(
        ScenarioId::RssRetained,
        LeakClass::RssRetained,
        "batch",
        vec![Step::with_body("POST", "/batch", 0)],
    )
    .gauge("batch_jobs")
    .paths("not built yet", "not built yet")
}
