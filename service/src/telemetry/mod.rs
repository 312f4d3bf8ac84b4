//! The service's truthful account of its own memory.
//!
//! - [`memory`]: `/debug/memory`, jemalloc stats after an epoch advance, RSS,
//!   tasks, fds, cgroup, component gauges.
//! - [`prometheus`]: `/metrics`, the same numbers in text exposition format.
//! - [`heap`]: `/debug/pprof/heap`, jemalloc heap profiles (pprof or SVG).
//! - [`allocs`]: `/debug/pprof/allocs`, bytes and objects allocated per
//!   allocation site (jemalloc's cumulative counts), since start or over an
//!   interval.
//! - [`pprof`]: the pprof protobuf messages, to re-encode and to decode profiles.
//! - [`census`]: `/debug/tasks`, live tasks grouped by spawn site, with
//!   counts and ages, from tokio's task hooks (always on; cannot wedge).
//! - [`tasks`]: `/debug/tasks?mode=await`, tokio's await-point task dump
//!   (opt-in: it can wedge a busy multi-thread runtime).

pub mod allocs;
pub mod census;
pub mod heap;
pub mod memory;
pub mod pprof;
pub mod prometheus;
pub mod tasks;
