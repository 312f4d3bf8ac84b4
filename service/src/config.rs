//! Run-time parameters of the service's components (sizes, capacities, timeouts).
//!
//! Every ground-truth number in the catalogue is computed from these, so a run
//! with a different `--value-bytes` still has a calibrated truth.

use std::time::Duration;

/// Parameters of every component. `Config::default()` is "default parameters"
/// in the catalogue's sense.
#[derive(Clone, Debug)]
pub struct Config {
    /// Size of one computed item value (`GET /items/{key}`).
    pub value_bytes: u64,
    /// Weighted capacity of the bounded item cache (the fixed path).
    pub cache_capacity_bytes: u64,
    /// Capacity of the bounded cache when the `bounded-cache` control is on:
    /// small, so a short run reaches the ceiling during warm-up.
    pub cache_small_capacity_bytes: u64,
    /// How long the bounded cache keeps an entry.
    pub cache_ttl: Duration,
    /// Size of the per-request context (headers, trace baggage) a spawned task holds.
    pub context_bytes: u64,
    /// How long `GET /items/{key}` waits for its fanned-out value before answering 504.
    pub fanout_deadline: Duration,
    /// Scratch buffer size of `GET /churn/{key}`.
    pub churn_bytes: u64,
    /// Largest request body accepted by any route.
    pub max_body_bytes: usize,
    /// Per-scenario cap on bytes a leaky path may retain (`--leak-budget`).
    pub leak_budget_bytes: u64,
    /// Whether jemalloc heap profiling is active at start.
    pub heap_profiling: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            value_bytes: 10 * 1024,
            cache_capacity_bytes: 64 << 20,
            cache_small_capacity_bytes: 8 << 20,
            cache_ttl: Duration::from_secs(600),
            context_bytes: 2 * 1024,
            fanout_deadline: Duration::from_secs(2),
            churn_bytes: 1 << 20,
            max_body_bytes: 4 << 20,
            leak_budget_bytes: 2 << 30,
            heap_profiling: true,
        }
    }
}
