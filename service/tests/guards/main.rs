//! Leak guards over every catalogue scenario, in process (STYLE.md 7, 8).
//!
//! This test binary makes jemalloc its global allocator, builds the app with
//! `App::new` and drives each scenario's recipe through the router with
//! `tower::ServiceExt::oneshot`, distinct keys throughout, under a
//! [`leak_guard::LeakGuard`]. Per scenario, one body runs twice:
//!
//! - `leak_on`: the scenario's flag forced on. A leak must trip the guard; a
//!   negative control must hold.
//! - `build_default`: flags as this build sets them. In the default build every
//!   leak is off, so the guard must hold; in a "bad release" built with
//!   `--features leaklab-service/leak-<id>` this test fails with
//!   `leak guard: <signal> grew ...`, which is the point.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::Router;
use http::{Method, Request};
use leak_guard::{LeakGuard, Outcome};
use leaklab_service::app::{router, App};
use leaklab_service::catalogue::{scenario, LeakClass, ScenarioId};
use leaklab_service::config::Config;
use tower::ServiceExt;

#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Heap growth a guard tolerates (the leak-guard default).
const LIMIT_BYTES: u64 = 8 << 20;
/// RSS growth tolerated where a guard watches RSS: generous, RSS is noisy.
const RSS_LIMIT_BYTES: u64 = 32 << 20;

/// Which flags a guard run uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Variant {
    LeakOn,
    BuildDefault,
}

/// How one scenario's guard run is shaped.
struct Plan {
    guard: LeakGuard,
    /// A path rewrite applied to every recipe step (e.g. a bigger burst).
    rewrite: Option<(&'static str, &'static str)>,
}

impl From<LeakGuard> for Plan {
    fn from(guard: LeakGuard) -> Plan {
        Plan {
            guard,
            rewrite: None,
        }
    }
}

/// Per-scenario size of the run. Requests are 100,000 unless a route's own work
/// makes that slow; parameters shrink where the default would make a run long
/// without changing what is retained or not.
fn plan(id: ScenarioId, config: &mut Config) -> Plan {
    let guard = LeakGuard::new()
        .requests(100_000)
        // Enough to fill the 16 MiB item cache (~1,600 values) and every pool.
        .warmup(3_000)
        .limit_bytes(LIMIT_BYTES)
        .settle(Duration::from_secs(2));
    match id {
        // 1 MiB of memset per request is 100 GB over a full run; 64 KiB still
        // allocates a large (page-backed) buffer per request.
        ScenarioId::Churn => {
            config.churn_bytes = 64 * 1024;
            guard.into()
        }
        // Each poll must time out to leave its subscriber behind; 1 ms does.
        ScenarioId::LapsedListener => {
            config.event_poll_timeout = Duration::from_millis(1);
            guard.concurrency(256).into()
        }
        // An 8 KiB report is captured just as a 64 KiB one is, at an eighth of the building.
        ScenarioId::ClosureCapture => {
            config.report_bytes = 8 * 1024;
            guard.into()
        }
        // 64 KiB documents pin just as 1 MiB ones do, at a sixteenth of the copying.
        ScenarioId::SubslicePin => {
            config.document_bytes = 64 * 1024;
            guard.into()
        }
        // Off the allocator's books: watch RSS. 16 KiB maps are as resident as 256 KiB ones.
        ScenarioId::OffheapMmap => {
            config.mmap_bytes = 16 * 1024;
            guard
                .limit_rss_bytes(RSS_LIMIT_BYTES)
                .rss_probe("rss outside the allocator", rss_outside_allocator)
                .into()
        }
        // One 64 MiB job after warm-up; its pages either stay resident or go back.
        ScenarioId::RssRetained => {
            config.batch_bytes = 64 << 20;
            guard
                .warmup(200)
                .requests(2_000)
                .limit_rss_bytes(RSS_LIMIT_BYTES)
                .into()
        }
        // A plateau rises once, at the first burst: measure from before it, with
        // the largest burst the route takes; the kept table (~7.5 MiB) exceeds
        // a 4 MiB limit, while the fixed path gives it all back.
        ScenarioId::MapNoShrink => Plan {
            guard: guard.warmup(0).requests(16).limit_bytes(4 << 20),
            rewrite: Some(("burst=16384", "burst=65536")),
        },
        // Two hundred elements regrow a vector by the same doublings, fewer of them.
        ScenarioId::VecRegrowth => {
            config.merge_elements = 200;
            guard.into()
        }
        // 16 KiB staging blocks are kept open (or closed each turn) just as
        // 64 KiB ones are, at a quarter of the padding written per record.
        ScenarioId::DeferInLoop => {
            config.export_block_bytes = 16 * 1024;
            guard.into()
        }
        _ => guard.into(),
    }
}

/// Resident memory jemalloc does not account for: RSS minus the allocator's
/// own resident pages (which include the dirty pages it caches for reuse).
fn rss_outside_allocator() -> Option<u64> {
    let rss = leak_guard::process_rss()?;
    tikv_jemalloc_ctl::epoch::advance().ok()?;
    let resident = tikv_jemalloc_ctl::stats::resident::read().ok()? as u64;
    Some(rss.saturating_sub(resident))
}

/// Requests a leaky run drives: enough to retain four times the guard's heap
/// limit by the catalogue's ground truth (a task leak trips on its first few
/// dozen tasks), between 2,000 and 100,000.
fn leaky_requests(truth_bytes: u64, limit_bytes: u64) -> usize {
    if truth_bytes == 0 {
        return 100_000;
    }
    ((4 * limit_bytes).div_ceil(truth_bytes) as usize).clamp(2_000, 100_000)
}

async fn send(app: &Router, method: &str, path: &str, body: Vec<u8>) {
    let request = Request::builder()
        .method(Method::from_bytes(method.as_bytes()).expect("method"))
        .uri(path)
        .body(Body::from(body))
        .expect("request");
    let response = app.clone().oneshot(request).await.expect("infallible");
    let status = response.status();
    // Backpressure (429) and a busy one-shot job (409) are answers, not failures.
    assert!(
        status.is_success() || status.as_u16() == 429 || status.as_u16() == 409,
        "{method} {path} -> {status}"
    );
    // Read the body so streaming handlers run to completion.
    let _ = axum::body::to_bytes(response.into_body(), usize::MAX).await;
}

/// Runs `id`'s recipe under the guard with the given flags.
async fn guard_run(id: ScenarioId, variant: Variant) -> Outcome {
    let mut config = Config::default();
    let Plan { mut guard, rewrite } = plan(id, &mut config);
    let entry = scenario(id, &config);
    if variant == Variant::LeakOn {
        // Size a leaky run from its ground truth in the signal that trips.
        match entry.class {
            LeakClass::Retention | LeakClass::TaskLeak => {
                guard = guard.requests(leaky_requests(entry.bytes_per_request, LIMIT_BYTES));
            }
            LeakClass::OffHeap => {
                guard =
                    guard.requests(leaky_requests(entry.rss_bytes_per_request, RSS_LIMIT_BYTES));
            }
            _ => {}
        }
    }
    let once_at = guard.measured_range().start;
    let app = App::new(config.clone(), None);
    if variant == Variant::LeakOn {
        app.ctx.flags.set(id, true);
    }
    let recipe = entry.recipe;
    let routes = router(app.clone());
    let routes = Arc::new(routes);
    let outcome = guard
        .check(|i| {
            let routes = routes.clone();
            let steps: Vec<(String, String, Vec<u8>)> = recipe
                .iter()
                .filter(|s| match s.every {
                    // A one-shot step runs on the first measured request.
                    0 => i == once_at,
                    n => i as u64 % n == 0,
                })
                .map(|s| {
                    let key = format!("guard-{i:09}");
                    (
                        s.method.to_owned(),
                        match rewrite {
                            Some((from, to)) => s.path.replace(from, to),
                            None => s.path.to_owned(),
                        }
                        .replace("{key}", &key),
                        vec![b'g'; s.body_bytes as usize],
                    )
                })
                .collect();
            async move {
                for (method, path, body) in steps {
                    send(&routes, &method, &path, body).await;
                }
            }
        })
        .await;
    app.ctx.shutdown.cancel();
    eprintln!(
        "{id} {variant:?}: {outcome} in {:.1}s",
        outcome.elapsed.as_secs_f64()
    );
    outcome
}

/// A leak trips the guard; a negative control holds it.
async fn leak_on(id: ScenarioId) {
    let outcome = guard_run(id, Variant::LeakOn).await;
    match scenario(id, &Config::default()).class {
        LeakClass::Churn | LeakClass::Bounded => outcome.assert_holds(),
        _ => outcome.assert_trips(),
    }
}

/// The build's own flags hold the guard (a bad release fails here).
async fn build_default(id: ScenarioId) {
    guard_run(id, Variant::BuildDefault).await.assert_holds();
}

macro_rules! guards {
    ($($name:ident => $id:expr),+ $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn leak_on_trips_the_guard_unless_a_negative_control() {
                super::leak_on($id).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn build_default_holds_the_guard() {
                super::build_default($id).await;
            }
        }
    )+};
}

guards! {
    unbounded_cache => leaklab_service::catalogue::ScenarioId::UnboundedCache,
    task_leak => leaklab_service::catalogue::ScenarioId::TaskLeak,
    churn => leaklab_service::catalogue::ScenarioId::Churn,
    bounded_cache => leaklab_service::catalogue::ScenarioId::BoundedCache,
    subslice_pin => leaklab_service::catalogue::ScenarioId::SubslicePin,
    lapsed_listener => leaklab_service::catalogue::ScenarioId::LapsedListener,
    closure_capture => leaklab_service::catalogue::ScenarioId::ClosureCapture,
    arc_cycle => leaklab_service::catalogue::ScenarioId::ArcCycle,
    label_cardinality => leaklab_service::catalogue::ScenarioId::LabelCardinality,
    unbounded_queue => leaklab_service::catalogue::ScenarioId::UnboundedQueue,
    pool_no_reset => leaklab_service::catalogue::ScenarioId::PoolNoReset,
    timer_per_request => leaklab_service::catalogue::ScenarioId::TimerPerRequest,
    offheap_mmap => leaklab_service::catalogue::ScenarioId::OffheapMmap,
    rss_retained => leaklab_service::catalogue::ScenarioId::RssRetained,
    map_no_shrink => leaklab_service::catalogue::ScenarioId::MapNoShrink,
    vec_regrowth => leaklab_service::catalogue::ScenarioId::VecRegrowth,
    defer_in_loop => leaklab_service::catalogue::ScenarioId::DeferInLoop,
}
