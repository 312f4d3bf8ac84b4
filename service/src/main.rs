//! `leaklab-service`: run the leaky API.
//!
//! ```text
//! cargo run -p leaklab-service -- --leak unbounded-cache --leak task-leak
//! cargo run -p leaklab-service -- scenarios --json
//! ```
//!
//! jemalloc is the global allocator, with heap profiling compiled in and
//! sampling one allocation per 512 KiB (`lg_prof_sample:19`), keeping
//! cumulative counts for the allocation profile (`prof_accum`).

use std::process::ExitCode;

#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc reads this at start: profiling compiled in and active, one sample
/// per 2^19 bytes allocated on average. `--heap-profiling off` deactivates it.
///
/// `prof_accum`: each sampled stack also counts what it ever allocated, freed
/// or not (`/debug/pprof/allocs`). jemalloc then keeps every sampled stack,
/// and the per-thread counters of threads that exited, for the life of the
/// process, in its own metadata (not in `allocated`); `cargo ci bench-allocs`
/// measures the cost. `MALLOC_CONF=prof_accum:false` in the environment turns
/// it off (the environment is read after this string).
#[allow(non_upper_case_globals)]
#[export_name = "malloc_conf"]
pub static malloc_conf: &[u8] = b"prof:true,prof_active:true,prof_accum:true,lg_prof_sample:19\0";

fn main() -> ExitCode {
    leaklab_service::cli::main()
}
