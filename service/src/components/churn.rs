//! `GET /churn/{key}`: a handler with a large scratch buffer.
//!
//! Scenario seeded here: `churn`, a negative control. With the flag on, every
//! request allocates and drops a fresh 1 MiB buffer: a high allocation rate,
//! nothing retained, a flat `allocated` floor. With it off, buffers come from a
//! small pool: the same work at a lower allocation rate. Neither is a leak.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use super::{Component, Ctx, Gauges};
use crate::catalogue::{LeakClass, Scenario, ScenarioId, Step};
use crate::config::Config;
use crate::error::{validate_key, AppError};
use crate::extract::Path;

/// Pooled scratch buffers kept at most (the pool is bounded: 4 × 1 MiB).
const POOL_MAX: usize = 4;

/// The churn handler's state.
pub struct Churn {
    ctx: Ctx,
    /// Scratch buffers waiting for reuse; at most [`POOL_MAX`], each cleared
    /// before it is handed out. A `std::sync::Mutex`: held for a push or pop.
    pool: Mutex<Vec<Vec<u8>>>,
    /// Fresh buffers allocated so far (the allocation-rate signal).
    allocations: AtomicU64,
}

/// Fills the scratch buffer from the key and digests it: real work on every page.
#[inline(never)]
fn scratch_work(buf: &mut [u8], key: &str) -> u64 {
    let seed = key
        .bytes()
        .fold(7u8, |a, b| a.wrapping_mul(31).wrapping_add(b));
    buf.fill(seed);
    buf.iter().step_by(4096).map(|b| *b as u64).sum()
}

impl Churn {
    pub fn new(ctx: Ctx) -> Churn {
        Churn {
            ctx,
            pool: Mutex::new(Vec::new()),
            allocations: AtomicU64::new(0),
        }
    }

    fn handle(&self, key: &str) -> u64 {
        let size = self.ctx.config.churn_bytes as usize;
        if self.ctx.flags.is_on(ScenarioId::Churn) {
            // Allocate, use, drop: nothing outlives the request.
            self.allocations.fetch_add(1, Ordering::Relaxed);
            let mut buf = vec![0u8; size];
            return scratch_work(&mut buf, key);
        }
        let pooled = self.pool.lock().expect("pool lock").pop();
        let mut buf = pooled.unwrap_or_else(|| {
            self.allocations.fetch_add(1, Ordering::Relaxed);
            vec![0u8; size]
        });
        let digest = scratch_work(&mut buf, key);
        let mut pool = self.pool.lock().expect("pool lock");
        if pool.len() < POOL_MAX {
            pool.push(buf);
        }
        digest
    }
}

async fn churn(
    State(churn): State<Arc<Churn>>,
    Path(key): Path<String>,
) -> Result<Json<Value>, AppError> {
    let key = validate_key(&key)?;
    let digest = churn.handle(key);
    Ok(Json(
        json!({ "key": key, "bytes": churn.ctx.config.churn_bytes, "digest": digest }),
    ))
}

impl Component for Churn {
    fn router(self: Arc<Self>) -> Router {
        Router::new()
            .route("/churn/{key}", get(churn))
            .with_state(self)
    }

    fn gauges(&self, out: &mut Gauges) {
        out.gauge(
            "churn_pool_buffers",
            self.pool.lock().expect("pool lock").len() as u64,
            "Scratch buffers kept in the pool for reuse.",
        );
        out.counter(
            "churn_allocations",
            self.allocations.load(Ordering::Relaxed),
            "1 MiB scratch buffers allocated since start.",
        );
    }
}

/// The `churn` catalogue entry.
pub fn scenario(_c: &Config) -> Scenario {
    Scenario::new(ScenarioId::Churn, LeakClass::Churn, "churn", vec![Step::get("/churn/{key}")])
        .gauge("churn_allocations")
        .paths(
            "allocates and drops a 1 MiB scratch buffer per request: allocation rate, nothing retained",
            "takes the scratch buffer from a pool of at most 4: lower allocation rate, nothing retained",
        )
}
