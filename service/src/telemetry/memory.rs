//! `GET /debug/memory`: allocator, kernel and component numbers in one JSON.
//!
//! jemalloc caches its statistics; they are refreshed by advancing the epoch
//! before every read, so `allocated` is the live heap at this moment, not at
//! the last refresh.

use std::collections::BTreeMap;

use serde::Serialize;
use tikv_jemalloc_ctl::{epoch, stats};

use crate::budget::BudgetState;
use crate::components::Gauges;
use leaklab_probe::{CgroupMemory, Pid};

/// jemalloc's view, in bytes.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct AllocatorStats {
    /// Bytes in live allocations: the live heap.
    pub allocated: u64,
    /// Bytes in active pages (allocated plus fragmentation inside them).
    pub active: u64,
    /// Bytes in physically resident pages jemalloc maps (incl. metadata, dirty pages).
    pub resident: u64,
    /// Bytes in extents jemalloc has mapped.
    pub mapped: u64,
    /// Bytes in virtual memory jemalloc retains without returning it to the OS.
    pub retained: u64,
    /// Allocation requests served since start, over every arena (small and
    /// large). Thread caches merge their counts when they flush, so the
    /// figure lags by what the caches have served since (a few hundred small
    /// allocations per thread); over seconds it is the allocation rate.
    pub allocations: u64,
}

/// Reads the allocator's statistics after advancing the epoch.
pub fn allocator_stats() -> AllocatorStats {
    // Advancing the epoch refreshes the cached statistics; failure leaves stale
    // (not wrong) numbers, so it is logged rather than fatal.
    if let Err(err) = epoch::advance() {
        tracing::warn!(%err, "jemalloc epoch advance failed");
    }
    let read = |r: tikv_jemalloc_ctl::Result<usize>| r.map(|v| v as u64).unwrap_or(0);
    AllocatorStats {
        allocated: read(stats::allocated::read()),
        active: read(stats::active::read()),
        resident: read(stats::resident::read()),
        mapped: read(stats::mapped::read()),
        retained: read(stats::retained::read()),
        allocations: allocation_requests(),
    }
}

/// jemalloc's cumulative allocation requests over all arenas
/// (`MALLCTL_ARENAS_ALL` is arena 4096); 0 when the statistics are not
/// compiled in.
fn allocation_requests() -> u64 {
    let read = |name: &[u8]| {
        // SAFETY: both names are NUL-terminated `uint64_t` statistics.
        unsafe { tikv_jemalloc_ctl::raw::read::<u64>(name) }.unwrap_or(0)
    };
    read(b"stats.arenas.4096.small.nrequests\0") + read(b"stats.arenas.4096.large.nrequests\0")
}

/// Live tokio tasks on the current runtime.
pub fn alive_tasks() -> u64 {
    tokio::runtime::Handle::try_current()
        .map(|h| h.metrics().num_alive_tasks() as u64)
        .unwrap_or(0)
}

/// The `/debug/memory` document (docs/interfaces.md).
#[derive(Debug, Serialize)]
pub struct MemoryReport {
    pub allocated: u64,
    pub active: u64,
    pub resident: u64,
    pub mapped: u64,
    pub retained: u64,
    /// Allocation requests served since start ([`AllocatorStats::allocations`]).
    pub allocations: u64,
    pub rss: u64,
    pub alive_tasks: u64,
    pub open_fds: u64,
    /// Number of memory mappings (`/proc/self/maps` lines).
    pub maps: u64,
    pub cgroup: Option<CgroupMemory>,
    pub components: Gauges,
    /// Leak flags that are on; left out in mystery mode.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leaks_on: Option<Vec<&'static str>>,
    pub uptime_s: f64,
    pub pid: u32,
    /// Scenarios that retain anything, against the per-scenario leak budget;
    /// left out in mystery mode.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget: Option<BTreeMap<&'static str, BudgetState>>,
    /// How many leaky paths have reached the leak budget and stopped retaining
    /// (shown in mystery mode too: a hunt must know when a climb was cut off).
    pub budget_exhausted: u64,
    pub leak_budget_bytes: u64,
    pub heap_profiling: bool,
}

/// Kernel-side numbers about this process; zeros where /proc is unreadable.
pub fn process_stats() -> (u64, u64, u64) {
    (
        leaklab_probe::rss_bytes(Pid::Current).unwrap_or(0),
        leaklab_probe::open_fds(Pid::Current).unwrap_or(0),
        leaklab_probe::map_count(Pid::Current).unwrap_or(0),
    )
}

/// This process's memory cgroup.
pub fn cgroup() -> Option<CgroupMemory> {
    leaklab_probe::cgroup_memory(Pid::Current)
}
