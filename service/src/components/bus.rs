//! STUB, not built yet: the `lapsed-listener` scenario's component (bus).
//!
//! See `shared/SCENARIOS.md` and `service/README.md` ("Adding a scenario").

use std::sync::Arc;

use axum::Router;

use super::{Component, Ctx, Gauges};
use crate::catalogue::{LeakClass, Scenario, ScenarioId, Step};
use crate::config::Config;

/// The component (stub).
pub struct EventBus {
    _ctx: Ctx,
}

impl EventBus {
    pub fn new(ctx: Ctx) -> EventBus {
        EventBus { _ctx: ctx }
    }
}

impl Component for EventBus {
    fn router(self: Arc<Self>) -> Router {
        Router::new()
    }

    fn gauges(&self, _out: &mut Gauges) {}
}

/// The `lapsed-listener` catalogue entry (no ground truth claimed until built).
pub fn scenario(_c: &Config) -> Scenario {
    Scenario::new(
        ScenarioId::LapsedListener,
        LeakClass::Retention,
        "bus",
        vec![Step::get("/events/{key}")],
    )
    .gauge("bus_subscribers")
    .paths("not built yet", "not built yet")
}
