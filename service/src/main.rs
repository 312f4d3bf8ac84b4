//! `leaklab-service`: run the leaky API.
//!
//! ```text
//! cargo run -p leaklab-service -- --leak unbounded-cache --leak task-leak
//! cargo run -p leaklab-service -- scenarios --json
//! ```
//!
//! jemalloc is the global allocator, with heap profiling compiled in and
//! sampling one allocation per 512 KiB (`lg_prof_sample:19`).

use std::process::ExitCode;

#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc reads this at start: profiling compiled in and active, one sample
/// per 2^19 bytes allocated on average. `--heap-profiling off` deactivates it.
#[allow(non_upper_case_globals)]
#[export_name = "malloc_conf"]
pub static malloc_conf: &[u8] = b"prof:true,prof_active:true,lg_prof_sample:19\0";

fn main() -> ExitCode {
    leaklab_service::cli::main()
}
