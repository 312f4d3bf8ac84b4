//! The service's components, each one real code with its seeded leak.
//!
//! A component is a module that owns one part of the API (a cache, a worker, a
//! bus...) and the catalogue entries of the scenarios seeded in it. Each leaky
//! path sits beside its fixed twin, chosen per request by the scenario's flag,
//! and each carries a comment naming what is retained and by whom.
//!
//! Adding a scenario is: a module here (its [`Component`] impl and its
//! `scenario()` entry), and in this file its id in the [`ScenarioId`] list,
//! one line in [`build`] and one arm in [`scenario`]. Then its Cargo feature,
//! its guard, its docs section and its catalogue snapshot entry; `cargo ci
//! tidy` lists whatever is missing.

use std::sync::Arc;

use axum::Router;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::budget::LeakBudget;
use crate::catalogue::Scenario;
use crate::config::Config;
use crate::flags::Flags;

pub mod batch;
pub mod blobs;
pub mod bus;
pub mod cache;
pub mod churn;
pub mod exports;
pub mod fanout;
mod gauges;
pub mod ingest;
pub mod merge;
pub mod orders;
pub mod render;
pub mod reports;
pub mod request_metrics;
pub mod sessions;
pub mod watchdog;
pub mod worker;

pub use gauges::{Gauges, Kind as GaugeKind};

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

// Every scenario id, its Cargo feature, in catalogue order (the source of
// truth `cargo ci tidy` reads).
scenario_ids! {
    UnboundedCache => "unbounded-cache", "leak-unbounded-cache",
    SubslicePin => "subslice-pin", "leak-subslice-pin",
    LapsedListener => "lapsed-listener", "leak-lapsed-listener",
    ClosureCapture => "closure-capture", "leak-closure-capture",
    ArcCycle => "arc-cycle", "leak-arc-cycle",
    LabelCardinality => "label-cardinality", "leak-label-cardinality",
    UnboundedQueue => "unbounded-queue", "leak-unbounded-queue",
    PoolNoReset => "pool-no-reset", "leak-pool-no-reset",
    TaskLeak => "task-leak", "leak-task-leak",
    TimerPerRequest => "timer-per-request", "leak-timer-per-request",
    OffheapMmap => "offheap-mmap", "leak-offheap-mmap",
    RssRetained => "rss-retained", "leak-rss-retained",
    MapNoShrink => "map-no-shrink", "leak-map-no-shrink",
    Churn => "churn", "leak-churn",
    BoundedCache => "bounded-cache", "leak-bounded-cache",
    VecRegrowth => "vec-regrowth", "leak-vec-regrowth",
    DeferInLoop => "defer-in-loop", "leak-defer-in-loop",
}

/// Builds every component. Order matters only for `wrap`: later wraps outermost.
pub fn build(ctx: &Ctx) -> Vec<Arc<dyn Component>> {
    let fanout = Arc::new(fanout::FanOut::new(ctx.clone()));
    let cache = Arc::new(cache::ItemCache::new(ctx.clone(), fanout.clone()));
    vec![
        cache,
        fanout,
        Arc::new(churn::Churn::new(ctx.clone())),
        Arc::new(ingest::DocumentIngest::new(ctx.clone())),
        Arc::new(bus::EventBus::new(ctx.clone())),
        Arc::new(reports::Reports::new(ctx.clone())),
        Arc::new(orders::Orders::new(ctx.clone())),
        Arc::new(request_metrics::RequestMetrics::new(ctx.clone())),
        Arc::new(worker::JobWorker::new(ctx.clone())),
        Arc::new(render::RenderPool::new(ctx.clone())),
        Arc::new(watchdog::Watchdog::new(ctx.clone())),
        Arc::new(blobs::BlobScratch::new(ctx.clone())),
        Arc::new(batch::BatchIngest::new(ctx.clone())),
        Arc::new(sessions::Sessions::new(ctx.clone())),
        Arc::new(merge::Merge::new(ctx.clone())),
        Arc::new(exports::Exports::new(ctx.clone())),
    ]
}

/// The catalogue entry for `id`, from the module that implements it, with
/// that module's source file (what heap profiles name).
pub fn scenario(id: ScenarioId, config: &Config) -> Scenario {
    let (mut s, file) = match id {
        ScenarioId::UnboundedCache | ScenarioId::BoundedCache => {
            (cache::scenario(id, config), "cache.rs")
        }
        ScenarioId::TaskLeak => (fanout::scenario(config), "fanout.rs"),
        ScenarioId::Churn => (churn::scenario(config), "churn.rs"),
        ScenarioId::SubslicePin => (ingest::scenario(config), "ingest.rs"),
        ScenarioId::LapsedListener => (bus::scenario(config), "bus.rs"),
        ScenarioId::ClosureCapture => (reports::scenario(config), "reports.rs"),
        ScenarioId::ArcCycle => (orders::scenario(config), "orders.rs"),
        ScenarioId::LabelCardinality => (request_metrics::scenario(config), "request_metrics.rs"),
        ScenarioId::UnboundedQueue => (worker::scenario(config), "worker.rs"),
        ScenarioId::PoolNoReset => (render::scenario(config), "render.rs"),
        ScenarioId::TimerPerRequest => (watchdog::scenario(config), "watchdog.rs"),
        ScenarioId::OffheapMmap => (blobs::scenario(config), "blobs.rs"),
        ScenarioId::RssRetained => (batch::scenario(config), "batch.rs"),
        ScenarioId::MapNoShrink => (sessions::scenario(config), "sessions.rs"),
        ScenarioId::VecRegrowth => (merge::scenario(config), "merge.rs"),
        ScenarioId::DeferInLoop => (exports::scenario(config), "exports.rs"),
    };
    s.source = format!("src/components/{file}");
    s
}
