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

/// Which flags a guard run uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Variant {
    LeakOn,
    BuildDefault,
}

/// Per-scenario size of the run. Requests are 100,000 unless a route's own work
/// makes that slow; parameters shrink where the default would make a run long
/// without changing what is retained or not.
fn plan(id: ScenarioId, config: &mut Config) -> LeakGuard {
    let guard = LeakGuard::new()
        .requests(100_000)
        .warmup(10_000)
        .limit_bytes(LIMIT_BYTES)
        .settle(Duration::from_secs(2));
    match id {
        // 1 MiB of memset per request is 100 GB over a full run; 64 KiB still
        // allocates a large (page-backed) buffer per request.
        ScenarioId::Churn => {
            config.churn_bytes = 64 * 1024;
            guard
        }
        // Each poll must time out to leave its subscriber behind; 1 ms does.
        ScenarioId::LapsedListener => {
            config.event_poll_timeout = Duration::from_millis(1);
            guard.concurrency(64)
        }
        // An 8 KiB report is captured just as a 64 KiB one is, at an eighth of the building.
        ScenarioId::ClosureCapture => {
            config.report_bytes = 8 * 1024;
            guard
        }
        // 64 KiB documents pin just as 1 MiB ones do, at a sixteenth of the copying.
        ScenarioId::SubslicePin => {
            config.document_bytes = 64 * 1024;
            guard
        }
        _ => guard,
    }
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
    let mut guard = plan(id, &mut config);
    let entry = scenario(id, &config);
    let negative = matches!(entry.class, LeakClass::Churn | LeakClass::Bounded);
    if variant == Variant::LeakOn && !negative {
        guard = guard.requests(leaky_requests(entry.bytes_per_request, LIMIT_BYTES));
    }
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
                    0 => i == 0,
                    n => i as u64 % n == 0,
                })
                .map(|s| {
                    let key = format!("guard-{i:09}");
                    (
                        s.method.to_owned(),
                        s.path.replace("{key}", &key),
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
            #[tokio::test]
            async fn leak_on_trips_the_guard_unless_a_negative_control() {
                super::leak_on($id).await;
            }

            #[tokio::test]
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
}
