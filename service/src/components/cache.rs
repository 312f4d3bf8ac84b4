//! The item cache in front of a slow value computation: `GET /items/{key}`.
//!
//! Scenarios seeded here:
//! - `unbounded-cache` (retention): every computed value is kept in a global
//!   `HashMap` forever.
//! - `bounded-cache` (negative control, bounded): the fixed cache run at a small
//!   capacity, so it visibly rises to its ceiling and stays there.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use bytes::Bytes;
use serde::Serialize;

use super::fanout::FanOut;
use super::{Component, Ctx, Gauges};
use crate::catalogue::{map_slot_bytes, size_class, LeakClass, Scenario, ScenarioId, Step};
use crate::config::Config;
use crate::error::{validate_key, AppError};
use crate::extract::Path;

/// A moka cache of computed values, weighted by bytes.
type BoundedCache = moka::sync::Cache<String, Bytes>;

/// Values by key, with two storage strategies side by side.
pub struct ItemCache {
    ctx: Ctx,
    /// Computes a value's parts (and carries the `task-leak` scenario).
    fanout: Arc<FanOut>,
    /// LEAKY PATH (`unbounded-cache`): every value ever computed, by key. Nothing
    /// evicts and keys are distinct, so this map (owned by the process-wide
    /// `ItemCache`) retains value + key per request until the leak budget stops
    /// it. Turning the flag off stops the growth; what was kept stays.
    /// A `std::sync::Mutex`: held for one lookup or insert, never across `.await`.
    unbounded: Mutex<HashMap<String, Bytes>>,
    /// FIXED PATH: bounded by total bytes (`cache_capacity_bytes`) and by age
    /// (`cache_ttl`); moka evicts least-recently-used entries past the capacity.
    bounded: BoundedCache,
    /// `bounded-cache` control: the same cache at `cache_small_capacity_bytes`.
    bounded_small: BoundedCache,
    hits: AtomicU64,
    misses: AtomicU64,
}

fn bounded(capacity_bytes: u64, config: &Config) -> BoundedCache {
    moka::sync::Cache::builder()
        .weigher(|key: &String, value: &Bytes| {
            (key.len() + value.len()).try_into().unwrap_or(u32::MAX)
        })
        .max_capacity(capacity_bytes)
        .time_to_live(config.cache_ttl)
        .build()
}

/// What `GET /items/{key}` answers (the value itself stays server-side).
#[derive(Debug, Serialize)]
pub struct ItemView {
    pub key: String,
    pub bytes: usize,
    pub cached: bool,
    /// First bytes of the value, so a client can check it is the key's value.
    pub head: u64,
}

impl ItemView {
    fn new(key: &str, value: &Bytes, cached: bool) -> ItemView {
        let mut head = [0u8; 8];
        let n = value.len().min(8);
        head[..n].copy_from_slice(&value[..n]);
        ItemView {
            key: key.to_owned(),
            bytes: value.len(),
            cached,
            head: u64::from_le_bytes(head),
        }
    }
}

/// Bytes one unbounded entry costs: the value and the key, as jemalloc sizes them.
fn entry_cost(key: &str, value: &Bytes) -> u64 {
    size_class(value.len() as u64) + size_class(key.len() as u64)
}

/// Builds the value of `key` from its fanned-out parts. Kept out of line so a
/// heap profile names it as the allocation site of cached values.
#[inline(never)]
pub fn compute_value(value_bytes: usize, parts: &[Bytes]) -> Bytes {
    let mut value = Vec::with_capacity(value_bytes);
    for part in parts {
        let room = value_bytes - value.len();
        value.extend_from_slice(&part[..part.len().min(room)]);
    }
    value.resize(value_bytes, 0);
    Bytes::from(value)
}

impl ItemCache {
    pub fn new(ctx: Ctx, fanout: Arc<FanOut>) -> ItemCache {
        let bounded_cache = bounded(ctx.config.cache_capacity_bytes, &ctx.config);
        let bounded_small = bounded(ctx.config.cache_small_capacity_bytes, &ctx.config);
        ItemCache {
            ctx,
            fanout,
            unbounded: Mutex::new(HashMap::new()),
            bounded: bounded_cache,
            bounded_small,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    async fn compute(&self, key: &str) -> Result<Bytes, AppError> {
        self.misses.fetch_add(1, Ordering::Relaxed);
        let parts = self.fanout.gather(key).await?;
        Ok(compute_value(self.ctx.config.value_bytes as usize, &parts))
    }

    /// The value of `key`, from the cache or computed.
    pub async fn get_or_compute(&self, key: &str) -> Result<ItemView, AppError> {
        if self.ctx.flags.is_on(ScenarioId::UnboundedCache) {
            let found = self.unbounded.lock().expect("cache lock").get(key).cloned();
            if let Some(value) = found {
                self.hits.fetch_add(1, Ordering::Relaxed);
                return Ok(ItemView::new(key, &value, true));
            }
            let value = self.compute(key).await?;
            if self
                .ctx
                .budget
                .try_retain(ScenarioId::UnboundedCache, entry_cost(key, &value))
            {
                // LEAKY: inserted, never removed.
                self.unbounded
                    .lock()
                    .expect("cache lock")
                    .insert(key.to_owned(), value.clone());
                return Ok(ItemView::new(key, &value, false));
            }
            // Budget spent: serve through the bounded cache below instead.
        }
        let cache = if self.ctx.flags.is_on(ScenarioId::BoundedCache) {
            &self.bounded_small
        } else {
            &self.bounded
        };
        if let Some(value) = cache.get(key) {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(ItemView::new(key, &value, true));
        }
        let value = self.compute(key).await?;
        // FIXED: moka evicts past the byte capacity, so this insert cannot grow the heap without bound.
        cache.insert(key.to_owned(), value.clone());
        Ok(ItemView::new(key, &value, false))
    }
}

async fn get_item(
    State(cache): State<Arc<ItemCache>>,
    Path(key): Path<String>,
) -> Result<Json<ItemView>, AppError> {
    let key = validate_key(&key)?;
    Ok(Json(cache.get_or_compute(key).await?))
}

impl Component for ItemCache {
    fn router(self: Arc<Self>) -> Router {
        Router::new()
            .route("/items/{key}", get(get_item))
            .with_state(self)
    }

    fn gauges(&self, out: &mut Gauges) {
        self.bounded.run_pending_tasks();
        self.bounded_small.run_pending_tasks();
        let unbounded = self.unbounded.lock().expect("cache lock").len() as u64;
        let bounded = self.bounded.entry_count() + self.bounded_small.entry_count();
        out.gauge(
            "cache_entries",
            unbounded + bounded,
            "Entries in the item cache; each holds one computed value.",
        );
        out.variant_gauge(
            "cache_unbounded_entries",
            unbounded,
            "Entries in the leaky cache map that is never evicted.",
        );
        out.variant_gauge(
            "cache_bounded_weight_bytes",
            self.bounded.weighted_size() + self.bounded_small.weighted_size(),
            "Bytes the bounded (moka) cache weighs, up to its capacity.",
        );
        out.counter(
            "cache_hits",
            self.hits.load(Ordering::Relaxed),
            "Item cache hits.",
        );
        out.counter(
            "cache_misses",
            self.misses.load(Ordering::Relaxed),
            "Item cache misses (each computed a value).",
        );
    }
}

/// Catalogue entries of the scenarios seeded here.
pub fn scenario(id: ScenarioId, c: &Config) -> Scenario {
    match id {
        ScenarioId::UnboundedCache => {
            // The value and its key at their jemalloc size classes, plus the map's
            // slot (String 24 + Bytes 32 bytes) and the `Bytes` shared header
            // made when the value is first cloned.
            let slot = map_slot_bytes(24 + 32);
            let bytes = size_class(c.value_bytes) + size_class(32) + slot + 32;
            Scenario::new(id, LeakClass::Retention, "cache", vec![Step::get("/items/{key}")])
                .retains(bytes)
                .gauge("cache_entries")
                .paths(
                    "ItemCache's HashMap keeps every computed value (allocated in compute_value) forever",
                    "a moka cache weighted by bytes with a capacity and a TTL",
                )
        }
        ScenarioId::BoundedCache => Scenario::new(
            id,
            LeakClass::Bounded,
            "cache",
            vec![Step::get("/items/{key}")],
        )
        .gauge("cache_bounded_weight_bytes")
        .paths(
            "the bounded cache at a small capacity (4 MiB): rises to its ceiling, then flat",
            "the bounded cache at its normal capacity (--cache-capacity)",
        ),
        _ => unreachable!("{id} is not a cache scenario"),
    }
}
