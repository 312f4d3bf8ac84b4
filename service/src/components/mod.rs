//! The service's components, each one real code with its seeded leak.
//!
//! A component is a module that owns one part of the API (a cache, a worker, a
//! bus...) and the catalogue entries of the scenarios seeded in it. Each leaky
//! path sits beside its fixed twin, chosen per request by the scenario's flag,
//! and each carries a comment naming what is retained and by whom.
//!
//! Adding a scenario is: a module here (its [`Component`] impl and its
//! `scenario()` entry), one line in [`build`] and one arm in [`scenario`].

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::budget::LeakBudget;
use crate::catalogue::{LeakClass, Scenario, ScenarioId, Step};
use crate::config::Config;
use crate::flags::Flags;

pub mod cache;
pub mod churn;
pub mod fanout;

/// Named gauges a component reports in `/debug/memory` and `/metrics`.
pub type Gauges = BTreeMap<&'static str, u64>;

/// What every component gets: configuration, flags, the leak budget, and the
/// owners of background work.
#[derive(Clone, Debug)]
pub struct Ctx {
    pub config: Arc<Config>,
    pub flags: Arc<Flags>,
    pub budget: Arc<LeakBudget>,
    /// Cancelled at shutdown; background loops select on it.
    pub shutdown: CancellationToken,
    /// Owns the service's background tasks so shutdown can wait for them.
    /// Leaked tasks are deliberately *not* spawned on it.
    pub tracker: TaskTracker,
}

impl Ctx {
    /// Whether `id`'s leaky path should run for this request: its flag is on
    /// and the leak budget admits `bytes` more.
    pub fn leak_admitted(&self, id: ScenarioId, bytes: u64) -> bool {
        self.flags.is_on(id) && self.budget.try_retain(id, bytes)
    }
}

/// One part of the API.
pub trait Component: Send + Sync + 'static {
    /// The routes this component serves, its state already applied.
    fn router(self: Arc<Self>) -> Router;

    /// Its gauges for `/debug/memory` and `/metrics`.
    fn gauges(&self, out: &mut Gauges);

    /// Wraps the whole app, for components that are middleware (default: none).
    fn wrap(self: Arc<Self>, app: Router) -> Router {
        app
    }

    /// Extra Prometheus exposition lines of its own (default: none).
    fn render_metrics(&self, _out: &mut String) {}
}

/// Builds every component. Order matters only for `wrap`: later wraps outermost.
pub fn build(ctx: &Ctx) -> Vec<Arc<dyn Component>> {
    let fanout = Arc::new(fanout::FanOut::new(ctx.clone()));
    let cache = Arc::new(cache::ItemCache::new(ctx.clone(), fanout.clone()));
    vec![cache, fanout, Arc::new(churn::Churn::new(ctx.clone()))]
}

/// The catalogue entry for `id`, from the module that implements it.
pub fn scenario(id: ScenarioId, config: &Config) -> Scenario {
    match id {
        ScenarioId::UnboundedCache | ScenarioId::BoundedCache => cache::scenario(id, config),
        ScenarioId::TaskLeak => fanout::scenario(config),
        ScenarioId::Churn => churn::scenario(config),
        other => not_yet_built(other),
    }
}

/// Catalogue entries for scenarios whose component is not written yet: class
/// and trigger from SCENARIOS.md, no ground truth claimed.
fn not_yet_built(id: ScenarioId) -> Scenario {
    use LeakClass::*;
    let (class, component, step) = match id {
        ScenarioId::SubslicePin => (
            Retention,
            "ingest",
            Step::with_body("POST", "/documents", 1 << 20),
        ),
        ScenarioId::LapsedListener => (Retention, "bus", Step::get("/events/{key}")),
        ScenarioId::ClosureCapture => (Retention, "reports", Step::get("/reports/{key}")),
        ScenarioId::ArcCycle => (Retention, "orders", Step::with_body("POST", "/orders", 0)),
        ScenarioId::LabelCardinality => (Retention, "metrics", Step::get("/items/{key}")),
        ScenarioId::UnboundedQueue => (Retention, "worker", Step::with_body("POST", "/jobs", 4096)),
        ScenarioId::PoolNoReset => (Retention, "render", Step::with_body("POST", "/render", 0)),
        ScenarioId::TimerPerRequest => (TaskLeak, "watchdog", Step::get("/items/{key}")),
        ScenarioId::OffheapMmap => (OffHeap, "blobs", Step::with_body("PUT", "/blobs/{key}", 0)),
        ScenarioId::RssRetained => (RssRetained, "batch", Step::with_body("POST", "/batch", 0)),
        ScenarioId::MapNoShrink => (
            Plateau,
            "sessions",
            Step::with_body("PUT", "/sessions/{key}", 0),
        ),
        ScenarioId::VecRegrowth => (Churn, "merge", Step::with_body("POST", "/merge", 0)),
        _ => unreachable!("{id} has its own module"),
    };
    Scenario::new(id, class, component, vec![step]).paths("not built yet", "not built yet")
}
