//! STUB, not built yet: the `unbounded-queue` scenario's component (worker).
//!
//! See `shared/SCENARIOS.md` and `service/README.md` ("Adding a scenario").

use std::sync::Arc;

use axum::Router;

use super::{Component, Ctx, Gauges};
use crate::catalogue::{LeakClass, Scenario, ScenarioId, Step};
use crate::config::Config;

/// The component (stub).
pub struct JobWorker {
    _ctx: Ctx,
}

impl JobWorker {
    pub fn new(ctx: Ctx) -> JobWorker {
        JobWorker { _ctx: ctx }
    }
}

impl Component for JobWorker {
    fn router(self: Arc<Self>) -> Router {
        Router::new()
    }

    fn gauges(&self, _out: &mut Gauges) {}
}

/// The `unbounded-queue` catalogue entry (no ground truth claimed until built).
pub fn scenario(_c: &Config) -> Scenario {
    Scenario::new(
        ScenarioId::UnboundedQueue,
        LeakClass::Retention,
        "worker",
        vec![Step::with_body("POST", "/jobs", 4096)],
    )
    .gauge("queue_depth")
    .paths("not built yet", "not built yet")
}
