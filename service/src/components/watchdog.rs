//! The request watchdog: middleware that logs requests still running after
//! `watchdog_timeout` (300 s), plus `GET /ping/{key}`, the cheapest route it
//! watches.
//!
//! Scenario seeded here: `timer-per-request` (task-leak). Every watched request
//! gets a watchdog task that sleeps for the timeout, holding the request's
//! context (ids, path, 2 KiB of baggage for the slow-request log).
//! LEAKY PATH: the task is spawned and its `JoinHandle` dropped, so nothing
//! ends it when the request finishes: it stays parked in `RequestWatchdog`'s
//! sleep for the full 300 s. The number alive is bounded by rate × timeout,
//! but grows without bound in any window shorter than the timeout.
//! FIXED PATH: the handle is kept in an abort-on-drop guard for the length of
//! the request, so the watchdog ends when the request does (answered, failed,
//! or its future dropped because the client went away).
//!
//! Watched: every route except the operational ones (`/healthz`, `/metrics`,
//! `/debug/*`, `/admin/*`), so a sampler polling `/debug/memory` does not
//! itself leak. `GET /ping/{key}` exists so a load run can drive the
//! middleware alone, without any handler's own memory in the signal.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};
use tokio::time::Sleep;
use tokio_util::task::AbortOnDropHandle;

use super::{Component, Ctx, Gauges};
use crate::budget::LeakBudget;
use crate::catalogue::{size_class, LeakClass, Scenario, ScenarioId, Step};
use crate::config::Config;
use crate::error::{validate_key, AppError};
use crate::extract::Path;

/// Bytes tokio's task cell adds around the future it runs (header, core,
/// trailer: ~112 with this build's tokio); the cell is 128-byte aligned.
const TASK_CELL_OVERHEAD: u64 = 112;

/// Bytes of one watchdog task's cell, at its jemalloc size class.
fn task_cell_bytes() -> u64 {
    let cell = std::mem::size_of::<RequestWatchdog>() as u64 + TASK_CELL_OVERHEAD;
    size_class(cell.div_ceil(128) * 128)
}

/// What a watchdog holds of its request, for the slow-request log.
#[derive(Debug)]
pub struct WatchedRequest {
    pub request_id: u64,
    pub path: String,
    /// Trace baggage and headers captured at the start, `context_bytes` long.
    pub baggage: Vec<u8>,
}

/// The watchdog component.
pub struct Watchdog {
    ctx: Ctx,
    next_request_id: AtomicU64,
    /// Watchdog tasks alive now: +1 at spawn, -1 when the task ends (a guard
    /// moved into it). On the leaky path it climbs with every request.
    alive: Arc<AtomicU64>,
    /// Requests a watchdog found still running at its timeout.
    slow_requests: Arc<AtomicU64>,
}

/// Decrements the alive gauge when the watchdog task ends (it fires or is
/// aborted), and gives its leak-budget reservation back.
struct WatchdogAlive {
    gauge: Arc<AtomicU64>,
    leaked: Option<(Arc<LeakBudget>, u64)>,
}

impl Drop for WatchdogAlive {
    fn drop(&mut self) {
        self.gauge.fetch_sub(1, Ordering::Relaxed);
        if let Some((budget, bytes)) = self.leaked.take() {
            budget.release(ScenarioId::TimerPerRequest, bytes);
        }
    }
}

/// A request's watchdog: sleeps `timeout`, then logs the request if it has
/// not finished. Every leaked watchdog is alive at its spawn site (what the
/// `/debug/tasks` census counts) and parked in its `poll` (the await point
/// `/debug/tasks?mode=await` groups them by).
///
/// A hand-written future rather than an `async fn`: its `poll` is kept out of
/// line, so a task dump shows this frame even in optimised builds (an
/// `async fn` body polled directly by its task is inlined into tokio's root
/// frame and vanishes from the trace).
pub struct RequestWatchdog {
    request: WatchedRequest,
    timeout: Duration,
    /// Boxed so the watchdog stays `Unpin` without unsafe pin projection.
    sleep: Pin<Box<Sleep>>,
    finished: Arc<AtomicBool>,
    slow_requests: Arc<AtomicU64>,
    _alive: WatchdogAlive,
}

impl Future for RequestWatchdog {
    type Output = ();

    #[inline(never)]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        ready!(this.sleep.as_mut().poll(cx));
        if !this.finished.load(Ordering::Relaxed) {
            this.slow_requests.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                request_id = this.request.request_id,
                path = %this.request.path,
                baggage = this.request.baggage.len(),
                timeout_s = this.timeout.as_secs(),
                "request still running at its watchdog timeout"
            );
        }
        Poll::Ready(())
    }
}

/// Whether the watchdog watches requests to `path`.
fn watched(path: &str) -> bool {
    !(path == "/healthz"
        || path == "/metrics"
        || path.starts_with("/debug/")
        || path.starts_with("/admin/"))
}

impl Watchdog {
    pub fn new(ctx: Ctx) -> Watchdog {
        Watchdog {
            ctx,
            next_request_id: AtomicU64::new(1),
            alive: Arc::new(AtomicU64::new(0)),
            slow_requests: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Spawns the watchdog of one request.
    fn spawn(
        &self,
        path: &str,
        finished: Arc<AtomicBool>,
        leaked: Option<u64>,
    ) -> tokio::task::JoinHandle<()> {
        let config = &self.ctx.config;
        let request = WatchedRequest {
            request_id: self.next_request_id.fetch_add(1, Ordering::Relaxed),
            path: path.to_owned(),
            baggage: vec![0x77; config.context_bytes as usize],
        };
        self.alive.fetch_add(1, Ordering::Relaxed);
        let alive = WatchdogAlive {
            gauge: self.alive.clone(),
            leaked: leaked.map(|bytes| (self.ctx.budget.clone(), bytes)),
        };
        tokio::spawn(RequestWatchdog {
            request,
            timeout: config.watchdog_timeout,
            sleep: Box::pin(tokio::time::sleep(config.watchdog_timeout)),
            finished,
            slow_requests: self.slow_requests.clone(),
            _alive: alive,
        })
    }
}

async fn watch(State(watchdog): State<Arc<Watchdog>>, request: Request, next: Next) -> Response {
    if !watched(request.uri().path()) {
        return next.run(request).await;
    }
    let finished = Arc::new(AtomicBool::new(false));
    let truth = scenario(&watchdog.ctx.config).bytes_per_request;
    if watchdog
        .ctx
        .leak_admitted(ScenarioId::TimerPerRequest, truth)
    {
        // LEAKY: the JoinHandle is dropped here, which detaches the task: it
        // sleeps the whole timeout after the request is answered, and keeps
        // its `WatchedRequest` (2 KiB of baggage) and timer entry until then.
        drop(watchdog.spawn(request.uri().path(), finished.clone(), Some(truth)));
        let response = next.run(request).await;
        finished.store(true, Ordering::Relaxed);
        return response;
    }
    // FIXED: the handle lives as long as the request; dropping it (answered,
    // or the request future dropped) aborts the watchdog and frees its context.
    let _watchdog =
        AbortOnDropHandle::new(watchdog.spawn(request.uri().path(), finished.clone(), None));
    let response = next.run(request).await;
    finished.store(true, Ordering::Relaxed);
    response
}

async fn ping(Path(key): Path<String>) -> Result<Json<Value>, AppError> {
    let key = validate_key(&key)?;
    Ok(Json(json!({ "key": key, "pong": true })))
}

impl Component for Watchdog {
    fn router(self: Arc<Self>) -> Router {
        Router::new().route("/ping/{key}", get(ping))
    }

    fn gauges(&self, out: &mut Gauges) {
        out.gauge(
            "watchdog_tasks",
            self.alive.load(Ordering::Relaxed),
            "Request watchdog tasks alive; each holds its request context until it ends.",
        );
        out.counter(
            "watchdog_slow_requests",
            self.slow_requests.load(Ordering::Relaxed),
            "Requests still running when their watchdog fired.",
        );
    }

    fn wrap(self: Arc<Self>, app: Router) -> Router {
        app.layer(middleware::from_fn_with_state(self, watch))
    }
}

/// The `timer-per-request` catalogue entry.
pub fn scenario(c: &Config) -> Scenario {
    // Per leaked request: one task (its cell holds the `RequestWatchdog`:
    // the context's fields, the guard), its boxed timer entry, the 2 KiB
    // baggage, the path copied into the context (`/ping/` and a key: 32 bytes)
    // and the `finished` flag's `Arc` (16 bytes of counts and a bool).
    let bytes = size_class(c.context_bytes)
        + task_cell_bytes()
        + size_class(std::mem::size_of::<Sleep>() as u64)
        + size_class(32)
        + size_class(24);
    Scenario::new(
        ScenarioId::TimerPerRequest,
        LeakClass::TaskLeak,
        "watchdog",
        vec![Step::get("/ping/{key}")],
    )
    .retains(bytes)
    .tasks(1)
    .gauge("watchdog_tasks")
    .paths(
        "a watchdog task per request sleeps 300 s in RequestWatchdog::poll holding the request's 2 KiB context; its JoinHandle is dropped, so nothing aborts it when the request ends",
        "the JoinHandle is kept in an abort-on-drop guard for the request's length: the watchdog ends with its request",
    )
}
