//! STUB, not built yet: the `arc-cycle` scenario's component (orders).
//!
//! See `shared/SCENARIOS.md` and `service/README.md` ("Adding a scenario").

use std::sync::Arc;

use axum::Router;

use super::{Component, Ctx, Gauges};
use crate::catalogue::{LeakClass, Scenario, ScenarioId, Step};
use crate::config::Config;

/// The component (stub).
pub struct Orders {
    _ctx: Ctx,
}

impl Orders {
    pub fn new(ctx: Ctx) -> Orders {
        Orders { _ctx: ctx }
    }
}

impl Component for Orders {
    fn router(self: Arc<Self>) -> Router {
        Router::new()
    }

    fn gauges(&self, _out: &mut Gauges) {}
}

/// The `arc-cycle` catalogue entry (no ground truth claimed until built).
pub fn scenario(_c: &Config) -> Scenario {
    Scenario::new(
        ScenarioId::ArcCycle,
        LeakClass::Retention,
        "orders",
        vec![Step::with_body("POST", "/orders", 0)],
    )
    .gauge("orders_alive")
    .paths("not built yet", "not built yet")
}
