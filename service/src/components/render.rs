//! STUB, not built yet: the `pool-no-reset` scenario's component (render).
//!
//! See `shared/SCENARIOS.md` and `service/README.md` ("Adding a scenario").

use std::sync::Arc;

use axum::Router;

use super::{Component, Ctx, Gauges};
use crate::catalogue::{LeakClass, Scenario, ScenarioId, Step};
use crate::config::Config;

/// The component (stub).
pub struct RenderPool {
    _ctx: Ctx,
}

impl RenderPool {
    pub fn new(ctx: Ctx) -> RenderPool {
        RenderPool { _ctx: ctx }
    }
}

impl Component for RenderPool {
    fn router(self: Arc<Self>) -> Router {
        Router::new()
    }

    fn gauges(&self, _out: &mut Gauges) {}
}

/// The `pool-no-reset` catalogue entry (no ground truth claimed until built).
pub fn scenario(_c: &Config) -> Scenario {
    Scenario::new(
        ScenarioId::PoolNoReset,
        LeakClass::Retention,
        "render",
        vec![Step::with_body("POST", "/render", 0)],
    )
    .gauge("pool_buffers")
    .paths("not built yet", "not built yet")
}
