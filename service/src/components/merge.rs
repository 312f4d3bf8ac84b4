//! `POST /merge/{key}?runs=R`: a k-way merge of R sorted runs (generated from
//! the key) into one vector of `merge_elements` values, answered as a summary.
//!
//! Scenario seeded here: `vec-regrowth`, a negative control (churn). The
//! merged vector lives only for the request either way: nothing is retained.
//! LEAKY "PATH" (flag on): the output starts as `Vec::new()` and grows one
//! push at a time, so it is reallocated (and copied) at every doubling, about
//! 15 times for 100 000 elements, and twice its final size is allocated in
//! all: a higher allocation rate, a flat `allocated` floor.
//! FIXED PATH: the output is pre-sized (`Vec::with_capacity`): one allocation.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{Component, Ctx, Gauges};
use crate::catalogue::{LeakClass, Scenario, ScenarioId, Step};
use crate::config::Config;
use crate::error::{validate_key, AppError};
use crate::extract::{Path, Query};

/// Runs merged when the request does not say.
const DEFAULT_RUNS: usize = 8;
/// Most runs a request may ask for.
const MAX_RUNS: usize = 64;

/// The merge component.
pub struct Merge {
    ctx: Ctx,
    requests: AtomicU64,
    /// Times an output vector was (re)allocated: the allocation-count signal.
    allocations: AtomicU64,
    /// Bytes those allocations asked for in all: the allocation-rate signal.
    allocated_bytes: AtomicU64,
}

/// How the output vector is grown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Growth {
    /// One push at a time from empty (reallocates at every doubling).
    PushByPush,
    /// Sized for the whole output up front.
    Presized,
}

/// What a merge did to the allocator, counted from the vector's capacity.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct MergeStats {
    pub allocations: u64,
    pub allocated_bytes: u64,
}

/// One sorted run of `len` values, deterministic from `seed`.
fn run(seed: u64, len: usize) -> Vec<u64> {
    let mut state = seed | 1;
    let mut value = 0u64;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            value += state % 1024;
            value
        })
        .collect()
}

/// Merges `runs` into one sorted vector grown the `growth` way. Kept out of
/// line so an allocation profile names it.
#[inline(never)]
pub fn merge_runs(runs: &[Vec<u64>], growth: Growth) -> (Vec<u64>, MergeStats) {
    let total: usize = runs.iter().map(Vec::len).sum();
    let mut stats = MergeStats::default();
    let mut out = match growth {
        Growth::PushByPush => Vec::new(),
        Growth::Presized => Vec::with_capacity(total),
    };
    let note = |capacity: usize, stats: &mut MergeStats| {
        stats.allocations += 1;
        stats.allocated_bytes += (capacity * std::mem::size_of::<u64>()) as u64;
    };
    if out.capacity() > 0 {
        note(out.capacity(), &mut stats);
    }
    let mut heads: BinaryHeap<Reverse<(u64, usize, usize)>> = runs
        .iter()
        .enumerate()
        .filter_map(|(r, run)| run.first().map(|v| Reverse((*v, r, 0))))
        .collect();
    while let Some(Reverse((value, r, i))) = heads.pop() {
        let before = out.capacity();
        out.push(value);
        if out.capacity() != before {
            note(out.capacity(), &mut stats);
        }
        if let Some(next) = runs[r].get(i + 1) {
            heads.push(Reverse((*next, r, i + 1)));
        }
    }
    (out, stats)
}

#[derive(Deserialize)]
struct MergeQuery {
    runs: Option<usize>,
}

impl Merge {
    pub fn new(ctx: Ctx) -> Merge {
        Merge {
            ctx,
            requests: AtomicU64::new(0),
            allocations: AtomicU64::new(0),
            allocated_bytes: AtomicU64::new(0),
        }
    }

    fn merge(&self, key: &str, runs: usize) -> Value {
        let elements = self.ctx.config.merge_elements;
        let seed = key.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
        });
        let inputs: Vec<Vec<u64>> = (0..runs)
            .map(|r| {
                let len = elements / runs + usize::from(r < elements % runs);
                run(seed.wrapping_add(r as u64), len)
            })
            .collect();
        let growth = if self.ctx.flags.is_on(ScenarioId::VecRegrowth) {
            // "LEAKY" (churn): grown push by push; freed at the end of the
            // request, so nothing is retained, only reallocated.
            Growth::PushByPush
        } else {
            // FIXED: one allocation of the final size, also freed at the end.
            Growth::Presized
        };
        let (merged, stats) = merge_runs(&inputs, growth);
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.allocations
            .fetch_add(stats.allocations, Ordering::Relaxed);
        self.allocated_bytes
            .fetch_add(stats.allocated_bytes, Ordering::Relaxed);
        let digest = merged
            .iter()
            .step_by(97)
            .fold(0u64, |h, v| h.rotate_left(7) ^ v);
        json!({
            "key": key,
            "runs": runs,
            "elements": merged.len(),
            "first": merged.first(),
            "last": merged.last(),
            "digest": digest,
            "allocations": stats.allocations,
        })
    }
}

async fn merge(
    State(merge): State<Arc<Merge>>,
    Path(key): Path<String>,
    Query(query): Query<MergeQuery>,
) -> Result<Json<Value>, AppError> {
    let key = validate_key(&key)?;
    let runs = match query.runs.unwrap_or(DEFAULT_RUNS) {
        n @ 1..=MAX_RUNS => n,
        _ => {
            return Err(AppError::BadRequest(format!(
                "runs must be 1 to {MAX_RUNS}"
            )))
        }
    };
    Ok(Json(merge.merge(key, runs)))
}

impl Component for Merge {
    fn router(self: Arc<Self>) -> Router {
        Router::new()
            .route("/merge/{key}", post(merge))
            .with_state(self)
    }

    fn gauges(&self, out: &mut Gauges) {
        out.counter(
            "merge_requests",
            self.requests.load(Ordering::Relaxed),
            "Merges done since start.",
        );
        out.counter(
            "merge_reallocations",
            self.allocations.load(Ordering::Relaxed),
            "Allocations the merges made for their output vectors.",
        );
        out.counter(
            "merge_allocated_bytes_total",
            self.allocated_bytes.load(Ordering::Relaxed),
            "Bytes the merges allocated for their output vectors.",
        );
    }
}

/// The `vec-regrowth` catalogue entry.
pub fn scenario(_c: &Config) -> Scenario {
    // Nothing outlives the request on either path: 0 retained. The signal is
    // allocation count and bytes (`merge_reallocations`,
    // `merge_allocated_bytes_total`), not the `allocated` floor.
    Scenario::new(
        ScenarioId::VecRegrowth,
        LeakClass::Churn,
        "merge",
        vec![Step::with_body("POST", "/merge/{key}", 0)],
    )
    .gauge("merge_reallocations")
    .paths(
        "the merged vector grows push by push from empty: ~15 reallocations and twice its size allocated per request, nothing retained",
        "the merged vector is pre-sized: one allocation per request, nothing retained",
    )
}
