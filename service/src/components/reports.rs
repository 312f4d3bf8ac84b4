//! STUB, not built yet: the `closure-capture` scenario's component (reports).
//!
//! See `shared/SCENARIOS.md` and `service/README.md` ("Adding a scenario").

use std::sync::Arc;

use axum::Router;

use super::{Component, Ctx, Gauges};
use crate::catalogue::{LeakClass, Scenario, ScenarioId, Step};
use crate::config::Config;

/// The component (stub).
pub struct Reports {
    _ctx: Ctx,
}

impl Reports {
    pub fn new(ctx: Ctx) -> Reports {
        Reports { _ctx: ctx }
    }
}

impl Component for Reports {
    fn router(self: Arc<Self>) -> Router {
        Router::new()
    }

    fn gauges(&self, _out: &mut Gauges) {}
}

/// The `closure-capture` catalogue entry (no ground truth claimed until built).
pub fn scenario(_c: &Config) -> Scenario {
    Scenario::new(
        ScenarioId::ClosureCapture,
        LeakClass::Retention,
        "reports",
        vec![Step::get("/reports/{key}")],
    )
    .gauge("report_callbacks")
    .paths("not built yet", "not built yet")
}
