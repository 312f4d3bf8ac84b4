//! `GET /debug/pprof/heap`: jemalloc's in-use heap profile, as a gzipped pprof
//! protobuf (load it with `pprof` or `go tool pprof`) or, with `?format=svg`, a
//! flamegraph.
//!
//! jemalloc samples one allocation per 512 KiB allocated on average
//! (`lg_prof_sample:19` in the binary's `malloc_conf`), so a profile is cheap
//! to keep on and is an estimate scaled back to bytes.
//!
//! The cumulative counts of the same dumps make the allocation profile
//! (`/debug/pprof/allocs`, [`super::allocs`]).

use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::AppError;

/// How many times profiling was switched off. Switching off resets
/// jemalloc's counts (`prof.reset`), so an allocation profile over an
/// interval that saw a reset would subtract unrelated counts; it compares
/// this before and after. Written under the `PROF_CTL` lock.
static PROFILING_RESETS: AtomicU64 = AtomicU64::new(0);

/// See [`PROFILING_RESETS`].
pub fn profiling_resets() -> u64 {
    PROFILING_RESETS.load(Ordering::SeqCst)
}

/// The two renderings of a heap profile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeapFormat {
    Pprof,
    Svg,
}

/// What `?format=svg` answers before jemalloc has taken any sample.
const EMPTY_SVG: &str = concat!(
    r#"<svg xmlns="http://www.w3.org/2000/svg" width="640" height="40">"#,
    r#"<text x="10" y="25">no heap samples yet: jemalloc samples one allocation per 512 KiB allocated</text></svg>"#
);

/// Whether heap profiling is compiled in and active.
pub async fn profiling_active() -> bool {
    match jemalloc_pprof::PROF_CTL.as_ref() {
        Some(ctl) => ctl.lock().await.activated(),
        None => false,
    }
}

/// Turns sampling on or off. Errors when the binary was built without
/// profiling in `malloc_conf` (e.g. a test binary).
pub async fn set_profiling(active: bool) -> Result<(), AppError> {
    let ctl = jemalloc_pprof::PROF_CTL.as_ref().ok_or_else(|| {
        AppError::Unavailable("heap profiling is not compiled into this binary".into())
    })?;
    let mut ctl = ctl.lock().await;
    let result = if active {
        ctl.activate()
    } else {
        PROFILING_RESETS.fetch_add(1, Ordering::SeqCst);
        ctl.deactivate()
    };
    result.map_err(|e| AppError::Internal(anyhow::anyhow!("jemalloc prof.active: {e}")))
}

/// The profiler, locked, when it is compiled in and active (else 503):
/// what every dump (in-use or cumulative) starts from.
pub async fn active_profiler(
) -> Result<tokio::sync::OwnedMutexGuard<jemalloc_pprof::JemallocProfCtl>, AppError> {
    let ctl = jemalloc_pprof::PROF_CTL.as_ref().ok_or_else(|| {
        AppError::Unavailable("heap profiling is not compiled into this binary".into())
    })?;
    let guard = ctl.clone().lock_owned().await;
    if !guard.activated() {
        return Err(AppError::Unavailable(
            "heap profiling is inactive: start with --heap-profiling on or PUT /admin/profiling"
                .into(),
        ));
    }
    Ok(guard)
}

/// Dumps the heap profile. Symbolization and encoding run on a blocking thread.
pub async fn dump(format: HeapFormat) -> Result<Vec<u8>, AppError> {
    let mut guard = active_profiler().await?;
    tokio::task::spawn_blocking(move || {
        let mut profile = guard.dump_profile()?;
        drop(guard);
        // With prof_accum on, the dump also lists every stack that ever
        // allocated, including those with nothing in use now (`0: 0 [n: m]`),
        // which pprof_util's parser weighs as NaN (0/0) and its encoder then
        // panics on. They are not part of an in-use profile.
        profile
            .stacks
            .retain(|(stack, _)| stack.weight.is_finite() && stack.weight >= 1.0);
        match format {
            HeapFormat::Pprof => {
                Ok(profile.to_pprof(("inuse_space", "bytes"), ("space", "bytes"), None))
            }
            // A young process may have no sample yet; inferno refuses an empty graph.
            HeapFormat::Svg if profile.stacks.is_empty() => Ok(EMPTY_SVG.as_bytes().to_vec()),
            HeapFormat::Svg => {
                let mut opts = jemalloc_pprof::FlamegraphOptions::default();
                opts.title = "inuse_space".to_owned();
                opts.count_name = "bytes".to_owned();
                profile.to_flamegraph(&mut opts)
            }
        }
    })
    .await
    .map_err(|e| AppError::Internal(anyhow::anyhow!("heap dump task: {e}")))?
    .map_err(|e| AppError::Internal(e.context("jemalloc heap dump")))
}
