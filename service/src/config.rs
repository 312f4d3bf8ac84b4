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
    /// Mystery mode (`--mystery SEED`): which leaks are on is hidden from
    /// every route and the log; gauges that name a variant are left out.
    pub mystery: bool,

    // ---- issue 3 scenarios: one block per component ----
    /// `POST /documents` body size loadgen sends (subslice-pin's trigger).
    pub document_bytes: u64,
    /// Bytes of a document's header kept in the ingest index.
    pub document_header_bytes: usize,
    /// Buffer each event-bus subscriber owns (lapsed-listener).
    pub subscriber_buffer_bytes: u64,
    /// How long `GET /events/{key}` long-polls before it times out.
    pub event_poll_timeout: Duration,
    /// Size of one rendered report (closure-capture).
    pub report_bytes: u64,
    /// Line items per order (arc-cycle).
    pub order_items: u64,
    /// Bytes of one line item's payload (arc-cycle).
    pub order_item_bytes: u64,
    /// `POST /jobs` body size loadgen sends (unbounded-queue).
    pub job_bytes: u64,
    /// Capacity of the bounded job queue (the fixed path): full means 429.
    pub queue_capacity: usize,
    /// How many jobs per second the background worker drains.
    pub worker_jobs_per_s: u64,
    /// Largest buffer the render pool takes back on the fixed path.
    pub render_buffer_cap_bytes: usize,
    /// Buffers the render pool keeps.
    pub render_pool_max: usize,
    /// How long a request watchdog sleeps (timer-per-request).
    pub watchdog_timeout: Duration,
    /// Size of one anonymous map (offheap-mmap).
    pub mmap_bytes: u64,
    /// Most maps the fixed blob registry keeps.
    pub mmap_registry_max: usize,
    /// Bytes a one-shot batch job allocates (rss-retained).
    pub batch_bytes: u64,
    /// Bytes of one session's value (map-no-shrink).
    pub session_bytes: u64,
    /// Elements merged by `POST /merge` (vec-regrowth).
    pub merge_elements: usize,
    /// Staging block of one export part (defer-in-loop): what a part kept
    /// open holds.
    pub export_block_bytes: u64,
    /// `POST /exports/{key}` body size loadgen sends (defer-in-loop's trigger).
    pub export_record_bytes: u64,
    /// How long the export job writes into one archive before sealing it
    /// (and, on the leaky path, closing the parts it kept open).
    pub export_archive_interval: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            value_bytes: 10 * 1024,
            cache_capacity_bytes: 16 << 20,
            cache_small_capacity_bytes: 4 << 20,
            cache_ttl: Duration::from_secs(600),
            context_bytes: 2 * 1024,
            fanout_deadline: Duration::from_secs(2),
            churn_bytes: 1 << 20,
            max_body_bytes: 4 << 20,
            leak_budget_bytes: 2 << 30,
            heap_profiling: true,
            mystery: false,
            document_bytes: 1 << 20,
            document_header_bytes: 32,
            subscriber_buffer_bytes: 4 * 1024,
            event_poll_timeout: Duration::from_millis(20),
            report_bytes: 64 * 1024,
            order_items: 8,
            order_item_bytes: 256,
            job_bytes: 4 * 1024,
            queue_capacity: 256,
            worker_jobs_per_s: 20,
            render_buffer_cap_bytes: 64 * 1024,
            render_pool_max: 8,
            watchdog_timeout: Duration::from_secs(300),
            mmap_bytes: 256 * 1024,
            mmap_registry_max: 16,
            batch_bytes: 256 << 20,
            session_bytes: 512,
            merge_elements: 100_000,
            export_block_bytes: 64 * 1024,
            export_record_bytes: 1024,
            export_archive_interval: Duration::from_secs(3600),
        }
    }
}
