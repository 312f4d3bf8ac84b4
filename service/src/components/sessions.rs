//! STUB, not built yet: the `map-no-shrink` scenario's component (sessions).
//!
//! See `shared/SCENARIOS.md` and `service/README.md` ("Adding a scenario").

use std::sync::Arc;

use axum::Router;

use super::{Component, Ctx, Gauges};
use crate::catalogue::{LeakClass, Scenario, ScenarioId, Step};
use crate::config::Config;

/// The component (stub).
pub struct Sessions {
    _ctx: Ctx,
}

impl Sessions {
    pub fn new(ctx: Ctx) -> Sessions {
        Sessions { _ctx: ctx }
    }
}

impl Component for Sessions {
    fn router(self: Arc<Self>) -> Router {
        Router::new()
    }

    fn gauges(&self, _out: &mut Gauges) {}
}

/// The `map-no-shrink` catalogue entry (no ground truth claimed until built).
pub fn scenario(_c: &Config) -> Scenario {
    Scenario::new(
        ScenarioId::MapNoShrink,
        LeakClass::Plateau,
        "sessions",
        vec![Step::with_body("PUT", "/sessions/{key}", 0)],
    )
    .gauge("sessions_capacity")
    .paths("not built yet", "not built yet")
}
