//! Sessions: `PUT /sessions/{key}?burst=N` opens N sessions for `{key}`
//! (`{key}.0` .. `{key}.N-1`, each with `session_bytes` of state), `DELETE
//! /sessions/{key}?burst=N` closes them, `GET /sessions/{key}` counts them.
//!
//! Scenario seeded here: `map-no-shrink` (plateau). The store is one
//! `HashMap`. A burst of inserts grows its table (capacity doubles as it
//! fills); deleting the entries frees their keys and values but never the
//! table.
//! LEAKY PATH: the table keeps the capacity of the largest burst forever:
//! capacity far above length, `capacity × (slot + control byte)` of heap held
//! by an empty map. Later bursts of the same size fit in it, so memory rises
//! once to that high-water mark and stays flat.
//! FIXED PATH: after deletes, when the length has fallen to a quarter of the
//! capacity or less, the map is shrunk (`shrink_to`) to twice its length.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::State;
use axum::routing::put;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{Component, Ctx, Gauges};
use crate::catalogue::{size_class, LeakClass, Scenario, ScenarioId, Step};
use crate::config::Config;
use crate::error::{validate_key, AppError};
use crate::extract::{Path, Query};

/// Sessions one request may open or close at most.
pub const MAX_BURST: u32 = 65_536;

/// Sessions per burst in the catalogue recipe (keep the recipe's `?burst=` equal).
pub const RECIPE_BURST: u64 = 16_384;

/// One open session.
#[derive(Debug)]
pub struct Session {
    /// Tokens, claims and preferences: `session_bytes` of state.
    pub state: Box<[u8]>,
    pub opened_at: Instant,
}

/// One slot of the session table: the key and the session, inline.
pub const SLOT_BYTES: u64 = std::mem::size_of::<(String, Session)>() as u64;

/// Bytes of a SwissTable (std's `HashMap`) of full `capacity`, as one allocation:
/// a slot and a control byte per bucket, plus one group (16) of trailing
/// control bytes. Buckets are a power of two, 7/8 of them usable (below 8
/// buckets: all but one).
pub fn table_bytes(capacity: u64) -> u64 {
    if capacity == 0 {
        return 0;
    }
    let buckets = if capacity < 8 {
        capacity + 1
    } else {
        capacity / 7 * 8
    };
    allocated_bytes(buckets * (SLOT_BYTES + 1) + 16)
}

/// What jemalloc's `allocated` counts for one allocation of `bytes`: its
/// size class when small; whole pages when large (16 KiB and up). Measured:
/// freeing the 16384-session table (1 867 792 bytes) lowers `allocated` by
/// ~1.87 MB, not by the 2 MiB of its nominal size class.
fn allocated_bytes(bytes: u64) -> u64 {
    if bytes < 16 * 1024 {
        size_class(bytes)
    } else {
        bytes.div_ceil(4096) * 4096
    }
}

/// Capacity a table has after `n` inserts into an empty one.
pub fn capacity_after(n: u64) -> u64 {
    let buckets = match n {
        0 => return 0,
        1..=3 => 4,
        4..=7 => 8,
        _ => (n * 8 / 7).next_power_of_two(),
    };
    if buckets < 8 {
        buckets - 1
    } else {
        buckets / 8 * 7
    }
}

/// The map and what the leak budget holds for it.
struct SessionStore {
    map: HashMap<String, Session>,
    /// The table's full capacity (7/8 of its buckets). `HashMap::capacity()`
    /// is length plus free slots, and deleted entries leave tombstones that
    /// are not free, so it understates the table after deletes; the table
    /// only grows during inserts, when `capacity()` is the full capacity.
    table_capacity: usize,
    /// LEAKY PATH: table bytes kept beyond what the entries need, reserved
    /// from the `map-no-shrink` budget; given back when the table shrinks.
    reserved: u64,
}

/// The sessions component.
pub struct Sessions {
    ctx: Ctx,
    /// LEAKY PATH: the table's capacity is owned by this process-wide store
    /// and never given back after a burst; FIXED PATH: shrunk after deletes.
    /// A `std::sync::Mutex`: held for one burst's inserts or removals, never
    /// across `.await`.
    store: Mutex<SessionStore>,
    opened: AtomicU64,
    closed: AtomicU64,
}

#[derive(Deserialize)]
struct BurstQuery {
    burst: Option<u32>,
}

impl BurstQuery {
    fn burst(&self) -> Result<u32, AppError> {
        match self.burst.unwrap_or(1) {
            n @ 1..=MAX_BURST => Ok(n),
            _ => Err(AppError::BadRequest(format!(
                "burst must be 1 to {MAX_BURST}"
            ))),
        }
    }
}

fn session_key(key: &str, i: u32) -> String {
    format!("{key}.{i}")
}

impl Sessions {
    pub fn new(ctx: Ctx) -> Sessions {
        Sessions {
            ctx,
            store: Mutex::new(SessionStore {
                map: HashMap::new(),
                table_capacity: 0,
                reserved: 0,
            }),
            opened: AtomicU64::new(0),
            closed: AtomicU64::new(0),
        }
    }

    fn open(&self, key: &str, burst: u32) -> Value {
        let state_bytes = self.ctx.config.session_bytes as usize;
        let mut store = self.store.lock().expect("session store lock");
        for i in 0..burst {
            let session = Session {
                state: vec![0x5e; state_bytes].into_boxed_slice(),
                opened_at: Instant::now(),
            };
            store.map.insert(session_key(key, i), session);
        }
        store.table_capacity = store.table_capacity.max(store.map.capacity());
        self.opened.fetch_add(burst as u64, Ordering::Relaxed);
        json!({ "key": key, "opened": burst, "sessions": store.map.len() })
    }

    fn close(&self, key: &str, burst: u32) -> Value {
        let mut guard = self.store.lock().expect("session store lock");
        let store = &mut *guard;
        let closed = (0..burst)
            .filter(|i| store.map.remove(&session_key(key, *i)).is_some())
            .count() as u64;
        self.closed.fetch_add(closed, Ordering::Relaxed);
        let table = table_bytes(store.table_capacity as u64);
        let extra = table.saturating_sub(store.reserved);
        if self.ctx.flags.is_on(ScenarioId::MapNoShrink)
            && (extra == 0 || self.ctx.budget.try_retain(ScenarioId::MapNoShrink, extra))
        {
            // LEAKY: the table stays at its high-water capacity, empty or not.
            store.reserved += extra;
        } else if store.map.len() <= store.table_capacity / 4 {
            // FIXED: well below capacity, so give the table back down to
            // twice the length (0: the table is freed).
            let len = store.map.len();
            store.map.shrink_to(len * 2);
            store.table_capacity = store.map.capacity();
            self.ctx
                .budget
                .release(ScenarioId::MapNoShrink, std::mem::take(&mut store.reserved));
        }
        json!({ "key": key, "closed": closed, "sessions": store.map.len() })
    }

    fn count(&self, key: &str, burst: u32) -> u64 {
        let store = self.store.lock().expect("session store lock");
        (0..burst)
            .filter(|i| store.map.contains_key(&session_key(key, *i)))
            .count() as u64
    }
}

async fn put_sessions(
    State(sessions): State<Arc<Sessions>>,
    Path(key): Path<String>,
    Query(query): Query<BurstQuery>,
) -> Result<Json<Value>, AppError> {
    let key = validate_key(&key)?;
    Ok(Json(sessions.open(key, query.burst()?)))
}

async fn delete_sessions(
    State(sessions): State<Arc<Sessions>>,
    Path(key): Path<String>,
    Query(query): Query<BurstQuery>,
) -> Result<Json<Value>, AppError> {
    let key = validate_key(&key)?;
    Ok(Json(sessions.close(key, query.burst()?)))
}

async fn get_sessions(
    State(sessions): State<Arc<Sessions>>,
    Path(key): Path<String>,
    Query(query): Query<BurstQuery>,
) -> Result<Json<Value>, AppError> {
    let key = validate_key(&key)?;
    let open = sessions.count(key, query.burst()?);
    Ok(Json(json!({ "key": key, "open": open })))
}

impl Component for Sessions {
    fn router(self: Arc<Self>) -> Router {
        Router::new()
            .route(
                "/sessions/{key}",
                put(put_sessions).delete(delete_sessions).get(get_sessions),
            )
            .with_state(self)
    }

    fn gauges(&self, out: &mut Gauges) {
        let store = self.store.lock().expect("session store lock");
        let capacity = store.table_capacity as u64;
        out.gauge("sessions_len", store.map.len() as u64, "Open sessions.");
        out.gauge(
            "sessions_capacity",
            capacity,
            "Slots the session table has allocated (kept after sessions close unless it shrinks).",
        );
        out.gauge(
            "sessions_table_bytes",
            table_bytes(capacity),
            "Bytes the session table holds for its slots.",
        );
        drop(store);
        out.counter(
            "sessions_opened",
            self.opened.load(Ordering::Relaxed),
            "Sessions opened since start.",
        );
        out.counter(
            "sessions_closed",
            self.closed.load(Ordering::Relaxed),
            "Sessions closed since start.",
        );
    }
}

/// The `map-no-shrink` catalogue entry.
pub fn scenario(_c: &Config) -> Scenario {
    // A triggering request is a burst of RECIPE_BURST sessions opened, then
    // closed. The first one grows the table to `capacity_after(16384)` = 28672
    // (32768 buckets of a 56-byte slot and a control byte: 1.87 MB), and the
    // leaky path keeps it: that is the high-water mark.
    // (The burst is that large so the mark stands well clear of allocator
    // noise, a few hundred KiB of thread caches, in a short measurement.)
    // Every later burst of the same size fits in the table, so the honest
    // retained bytes per triggering request, over a run, are 0: a plateau, not
    // a slope. (Overlapping bursts raise the mark to the concurrent peak.)
    Scenario::new(
        ScenarioId::MapNoShrink,
        LeakClass::Plateau,
        "sessions",
        vec![
            Step::with_body("PUT", "/sessions/{key}?burst=16384", 0),
            Step::with_body("DELETE", "/sessions/{key}?burst=16384", 0),
        ],
    )
    .high_water(table_bytes(capacity_after(RECIPE_BURST)))
    // Each triggering request is 16,384 inserts and as many deletes: a few a
    // second show the plateau without overloading the route.
    .rate(5.0)
    .gauge("sessions_capacity")
    .paths(
        "the session HashMap keeps the capacity of its largest burst after the sessions are deleted: capacity far above length",
        "after deletes, a map at a quarter of its capacity or less is shrunk to twice its length",
    )
}
