//! Assembles the HTTP API: component routes, the telemetry and admin routes,
//! the admin-token guard, and graceful shutdown.
//!
//! [`Service::start`] binds, serves in the background and returns the bound
//! address, so tests bind `127.0.0.1:0` and the binary binds `--addr`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::budget::LeakBudget;
use crate::catalogue::{self, ScenarioId};
use crate::components::{self, Component, Ctx, Gauges};
use crate::config::Config;
use crate::error::AppError;
use crate::extract::{JsonBody, Path, Query};
use crate::flags::Flags;
use crate::telemetry::{allocs, census, heap, memory, prometheus, tasks};

/// Shared state of the core routes.
pub struct App {
    pub ctx: Ctx,
    pub components: Vec<Arc<dyn Component>>,
    started: Instant,
    /// When set, `/debug/*` and `/admin/*` writes need `Authorization: Bearer <token>`.
    admin_token: Option<String>,
    /// Cancelled when a graceful shutdown starts (before in-flight requests
    /// finish, unlike `ctx.shutdown`), so a request that waits on purpose
    /// (`/debug/pprof/allocs?seconds=N`) ends instead of holding it up.
    draining: CancellationToken,
}

impl App {
    /// Builds the state and every component. Flags start at the build defaults.
    pub fn new(config: Config, admin_token: Option<String>) -> Arc<App> {
        let ctx = Ctx {
            budget: Arc::new(LeakBudget::new(config.leak_budget_bytes)),
            config: Arc::new(config),
            flags: Arc::new(Flags::from_build()),
            shutdown: CancellationToken::new(),
            tracker: TaskTracker::new(),
        };
        if ctx.config.mystery {
            ctx.budget.anonymise();
        }
        let components = components::build(&ctx);
        Arc::new(App {
            ctx,
            components,
            started: Instant::now(),
            admin_token: admin_token.filter(|t| !t.is_empty()),
            draining: CancellationToken::new(),
        })
    }

    /// Every component's gauges.
    pub fn gauges(&self) -> Gauges {
        let mut out = Gauges::new();
        for c in &self.components {
            c.gauges(&mut out);
        }
        out
    }

    /// The `/debug/memory` document, read now.
    pub async fn memory_report(&self) -> memory::MemoryReport {
        // Gauges first: reading them runs the bounded cache's pending evictions,
        // so the allocator numbers below see their effect.
        let mystery = self.ctx.config.mystery;
        let components = if mystery {
            self.gauges().without_variant_names()
        } else {
            self.gauges()
        };
        let alloc = memory::allocator_stats();
        let (rss, open_fds, maps) = memory::process_stats();
        memory::MemoryReport {
            allocated: alloc.allocated,
            active: alloc.active,
            resident: alloc.resident,
            mapped: alloc.mapped,
            retained: alloc.retained,
            allocations: alloc.allocations,
            rss,
            alive_tasks: memory::alive_tasks(),
            open_fds,
            maps,
            cgroup: memory::cgroup(),
            components,
            leaks_on: (!mystery).then(|| self.ctx.flags.on_ids()),
            uptime_s: self.started.elapsed().as_secs_f64(),
            pid: std::process::id(),
            budget: (!mystery).then(|| self.ctx.budget.snapshot()),
            budget_exhausted: self.ctx.budget.exhausted_count(),
            leak_budget_bytes: self.ctx.budget.limit_bytes(),
            heap_profiling: heap::profiling_active().await,
        }
    }
}

/// Builds the whole router.
pub fn router(app: Arc<App>) -> Router {
    let guarded = Router::new()
        .route("/debug/memory", get(debug_memory))
        .route("/debug/pprof/heap", get(debug_heap))
        .route("/debug/pprof/allocs", get(debug_allocs))
        .route("/debug/tasks", get(debug_tasks))
        .route("/admin/flags/{id}", put(set_flag))
        .route("/admin/profiling", put(set_profiling))
        .route_layer(middleware::from_fn_with_state(app.clone(), require_token));
    let open = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
        .route("/admin/scenarios", get(admin_scenarios))
        .route("/admin/flags", get(get_flags))
        .route("/admin/profiling", get(get_profiling));
    let mut router = guarded.merge(open).with_state(app.clone());
    for component in &app.components {
        router = router.merge(component.clone().router());
    }
    for component in &app.components {
        router = component.clone().wrap(router);
    }
    router
        .fallback(|| async { AppError::NotFound("no such route (see README: routes)".into()) })
        .method_not_allowed_fallback(|| async {
            (
                StatusCode::METHOD_NOT_ALLOWED,
                Json(serde_json::json!({"error": "method not allowed on this route"})),
            )
        })
        .layer(DefaultBodyLimit::max(app.ctx.config.max_body_bytes))
}

/// Compares without an early exit, so timing does not reveal a prefix.
fn token_matches(given: &[u8], expected: &[u8]) -> bool {
    given.len() == expected.len()
        && given
            .iter()
            .zip(expected)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

async fn require_token(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    if let Some(expected) = &app.admin_token {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !token_matches(given.as_bytes(), expected.as_bytes()) {
            return AppError::Unauthorized.into_response();
        }
    }
    next.run(request).await
}

async fn debug_memory(State(app): State<Arc<App>>) -> impl IntoResponse {
    Json(app.memory_report().await)
}

async fn metrics(State(app): State<Arc<App>>) -> impl IntoResponse {
    let report = app.memory_report().await;
    let mut out = String::with_capacity(4096);
    prometheus::render(&report, &mut out);
    for component in &app.components {
        component.render_metrics(&mut out);
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
}

#[derive(Deserialize)]
struct HeapQuery {
    format: Option<String>,
}

async fn debug_heap(Query(q): Query<HeapQuery>) -> Result<Response, AppError> {
    let format = match q.format.as_deref() {
        None | Some("pprof") | Some("proto") => heap::HeapFormat::Pprof,
        Some("svg") | Some("flamegraph") => heap::HeapFormat::Svg,
        Some(other) => {
            return Err(AppError::BadRequest(format!(
                "format must be pprof or svg, not `{other}`"
            )))
        }
    };
    let bytes = heap::dump(format).await?;
    let (content_type, disposition) = match format {
        heap::HeapFormat::Pprof => (
            "application/octet-stream",
            "attachment; filename=\"heap.pb.gz\"",
        ),
        heap::HeapFormat::Svg => ("image/svg+xml", "inline; filename=\"heap.svg\""),
    };
    Ok((
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        Body::from(bytes),
    )
        .into_response())
}

#[derive(Deserialize)]
struct AllocsQuery {
    /// An interval to profile (1 to 60 s); none: since profiling started.
    seconds: Option<u64>,
}

async fn debug_allocs(
    State(app): State<Arc<App>>,
    Query(q): Query<AllocsQuery>,
) -> Result<Response, AppError> {
    let bytes = allocs::profile(q.seconds, &app.draining).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"allocs.pb.gz\"",
            ),
        ],
        Body::from(bytes),
    )
        .into_response())
}

#[derive(Deserialize)]
struct TasksQuery {
    format: Option<String>,
    /// `census` (default) or `await` (the opt-in await-point dump).
    mode: Option<String>,
    limit: Option<usize>,
}

/// `text` or `json`; anything else is the client's mistake.
fn text_or_json(format: Option<&str>) -> Result<bool, AppError> {
    match format {
        None | Some("text") => Ok(false),
        Some("json") => Ok(true),
        Some(other) => Err(AppError::BadRequest(format!(
            "format must be text or json, not `{other}`"
        ))),
    }
}

async fn debug_tasks(Query(q): Query<TasksQuery>) -> Result<Response, AppError> {
    let json = text_or_json(q.format.as_deref())?;
    match q.mode.as_deref() {
        None | Some("census") => {
            let census = census::get().ok_or_else(|| {
                AppError::Unavailable(
                    "no task census on this runtime: it needs tokio's task hooks \
                     (RUSTFLAGS=\"--cfg tokio_unstable\", see .cargo/config.toml) and a \
                     runtime built by leaklab-service"
                        .into(),
                )
            })?;
            let report = census.report(memory::alive_tasks());
            Ok(if json {
                Json(report).into_response()
            } else {
                report.render_text().into_response()
            })
        }
        Some("await") => {
            let limit = q.limit.unwrap_or(2000).clamp(1, 100_000);
            let dump = tasks::dump(limit).await?;
            let mut response = if json {
                Json(&dump).into_response()
            } else {
                tasks::render_text(&dump).into_response()
            };
            response.headers_mut().insert(
                header::WARNING,
                header::HeaderValue::from_static(
                    "199 leaklab \"await-point task dumps can wedge a busy runtime\"",
                ),
            );
            Ok(response)
        }
        Some(other) => Err(AppError::BadRequest(format!(
            "mode must be census or await, not `{other}`"
        ))),
    }
}

async fn admin_scenarios(State(app): State<Arc<App>>) -> impl IntoResponse {
    Json(catalogue::catalogue(&app.ctx.config))
}

async fn get_flags(State(app): State<Arc<App>>) -> Result<impl IntoResponse, AppError> {
    if app.ctx.config.mystery {
        return Err(AppError::Forbidden(
            "mystery mode: which leaks are on is hidden; PUT /admin/flags/{id} still switches one"
                .into(),
        ));
    }
    Ok(Json(app.ctx.flags.snapshot()))
}

#[derive(Deserialize)]
struct FlagBody {
    enabled: bool,
}

async fn set_flag(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<FlagBody>,
) -> Result<impl IntoResponse, AppError> {
    let id: ScenarioId = id
        .parse()
        .map_err(|e: catalogue::UnknownScenario| AppError::NotFound(e.to_string()))?;
    let was = app.ctx.flags.set(id, body.enabled);
    if app.ctx.config.mystery {
        // What the flag was would give the mystery away.
        tracing::info!(scenario = %id, enabled = body.enabled, "leak flag set");
        return Ok(Json(
            serde_json::json!({ "id": id.as_str(), "enabled": body.enabled }),
        ));
    }
    tracing::info!(scenario = %id, enabled = body.enabled, was, "leak flag set");
    Ok(Json(
        serde_json::json!({ "id": id.as_str(), "enabled": body.enabled, "was": was }),
    ))
}

async fn get_profiling() -> impl IntoResponse {
    Json(serde_json::json!({ "active": heap::profiling_active().await }))
}

#[derive(Deserialize)]
struct ProfilingBody {
    active: bool,
}

async fn set_profiling(
    JsonBody(body): JsonBody<ProfilingBody>,
) -> Result<impl IntoResponse, AppError> {
    heap::set_profiling(body.active).await?;
    Ok(Json(serde_json::json!({ "active": body.active })))
}

/// A running service: its address, its state, and the handle to stop it.
pub struct Service {
    pub addr: SocketAddr,
    pub app: Arc<App>,
    stop: CancellationToken,
    task: JoinHandle<std::io::Result<()>>,
}

impl Service {
    /// Binds `addr` and serves `app` in the background until [`Service::stop`]
    /// or `shutdown` completes.
    pub async fn start(addr: SocketAddr, app: Arc<App>) -> std::io::Result<Service> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let stop = CancellationToken::new();
        let task = tokio::spawn(serve(listener, app.clone(), stop.clone().cancelled_owned()));
        Ok(Service {
            addr,
            app,
            stop,
            task,
        })
    }

    /// Stops accepting, lets in-flight requests finish, and stops background tasks.
    pub async fn stop(self) -> std::io::Result<()> {
        self.stop.cancel();
        self.task.await.map_err(std::io::Error::other)?
    }

    /// Waits until the server ends by itself.
    pub async fn wait(self) -> std::io::Result<()> {
        self.task.await.map_err(std::io::Error::other)?
    }
}

/// Serves until `shutdown` completes, then cancels background work and waits
/// (bounded) for the tracked tasks to end.
pub async fn serve(
    listener: TcpListener,
    app: Arc<App>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let ctx = app.ctx.clone();
    let draining = app.draining.clone();
    axum::serve(listener, router(app))
        .with_graceful_shutdown(async move {
            shutdown.await;
            draining.cancel();
        })
        .await?;
    ctx.shutdown.cancel();
    ctx.tracker.close();
    if tokio::time::timeout(Duration::from_secs(5), ctx.tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!("background tasks did not stop within 5 s");
    }
    tracing::info!("server stopped");
    Ok(())
}
