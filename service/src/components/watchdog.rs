//! STUB, not built yet: the `timer-per-request` scenario's component (watchdog).
//!
//! See `shared/SCENARIOS.md` and `service/README.md` ("Adding a scenario").

use std::sync::Arc;

use axum::Router;

use super::{Component, Ctx, Gauges};
use crate::catalogue::{LeakClass, Scenario, ScenarioId, Step};
use crate::config::Config;

/// The component (stub).
pub struct Watchdog {
    _ctx: Ctx,
}

impl Watchdog {
    pub fn new(ctx: Ctx) -> Watchdog {
        Watchdog { _ctx: ctx }
    }
}

impl Component for Watchdog {
    fn router(self: Arc<Self>) -> Router {
        Router::new()
    }

    fn gauges(&self, _out: &mut Gauges) {}
}

/// The `timer-per-request` catalogue entry (no ground truth claimed until built).
pub fn scenario(_c: &Config) -> Scenario {
    Scenario::new(
        ScenarioId::TimerPerRequest,
        LeakClass::TaskLeak,
        "watchdog",
        vec![Step::get("/items/{key}")],
    )
    .gauge("watchdog_tasks")
    .paths("not built yet", "not built yet")
}
