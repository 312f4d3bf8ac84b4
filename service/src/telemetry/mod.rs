//! The service's truthful account of its own memory.
//!
//! - [`memory`]: `/debug/memory`, jemalloc stats after an epoch advance, RSS,
//!   tasks, fds, cgroup, component gauges.
//! - [`prometheus`]: `/metrics`, the same numbers in text exposition format.
//! - [`heap`]: `/debug/pprof/heap`, jemalloc heap profiles (pprof or SVG).
//! - [`tasks`]: `/debug/tasks`, a tokio task dump grouped by await point.

pub mod heap;
pub mod memory;
pub mod prometheus;
pub mod tasks;
