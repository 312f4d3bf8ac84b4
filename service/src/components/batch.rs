//! Batch ingest: `POST /batch?job={key}` runs a one-shot job that allocates
//! `batch_bytes` (256 MiB) in 1 MiB chunks, writes every page, digests it and
//! frees it all; `GET /batch` reports the component's state (cheap).
//!
//! Jobs run one at a time (a second concurrent one gets 409) on the batch
//! worker thread, which allocates from a jemalloc arena of its own
//! (`arenas.create`, then `thread.arena`), so the allocator's page-return
//! policy for batch memory can be set without touching the rest of the heap.
//!
//! Scenario seeded here: `rss-retained`. After the job `allocated` falls back
//! to its baseline either way; what differs is whether the freed pages go
//! back to the kernel.
//! LEAKY PATH: the batch arena's `dirty_decay_ms` and `muzzy_decay_ms` are set
//! to -1 (never decay), so jemalloc keeps the job's freed pages dirty and
//! resident: RSS stays at the peak for the life of the process.
//! FIXED PATH: the arena keeps its default decay and is purged right after
//! the job, so RSS comes back down at once.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tikv_jemalloc_ctl::raw;

use super::{Component, Ctx, Gauges};
use crate::catalogue::{LeakClass, Scenario, ScenarioId, Step};
use crate::config::Config;
use crate::error::{validate_key, AppError};
use crate::extract::Query;

/// Size of one allocation of a batch job: a jemalloc "large" extent, so it
/// bypasses the thread cache and goes straight to the batch arena.
const CHUNK_BYTES: usize = 1 << 20;

const PAGE_BYTES: usize = 4096;

/// The jemalloc arena batch jobs allocate from, and its default decay times.
#[derive(Clone, Copy, Debug)]
struct BatchArena {
    index: u32,
    dirty_decay_ms: isize,
    muzzy_decay_ms: isize,
}

fn ctl_name(arena: u32, key: &str) -> String {
    format!("arena.{arena}.{key}\0")
}

impl BatchArena {
    /// Creates the arena and reads the decay times it starts with.
    fn create() -> Result<BatchArena, String> {
        // SAFETY: `arenas.create` is a read-only `unsigned`; the decay keys are `ssize_t`.
        unsafe {
            let index: u32 = raw::read(b"arenas.create\0").map_err(|e| e.to_string())?;
            let dirty_decay_ms = raw::read(ctl_name(index, "dirty_decay_ms").as_bytes())
                .map_err(|e| e.to_string())?;
            let muzzy_decay_ms = raw::read(ctl_name(index, "muzzy_decay_ms").as_bytes())
                .map_err(|e| e.to_string())?;
            Ok(BatchArena {
                index,
                dirty_decay_ms,
                muzzy_decay_ms,
            })
        }
    }

    /// Sets the arena's decay times (-1: never return freed pages; 0: at once).
    fn set_decay(&self, dirty_ms: isize, muzzy_ms: isize) -> Result<(), String> {
        // SAFETY: both keys are `ssize_t` (isize) and writable.
        unsafe {
            raw::write(ctl_name(self.index, "muzzy_decay_ms").as_bytes(), muzzy_ms)
                .map_err(|e| e.to_string())?;
            raw::write(ctl_name(self.index, "dirty_decay_ms").as_bytes(), dirty_ms)
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// Returns every unused page of the arena to the kernel, then restores
    /// the default decay. `arena.<i>.purge` takes no value, which the
    /// typed `raw` API of tikv-jemalloc-ctl cannot express; setting a decay
    /// time of 0 has the same effect (jemalloc purges all unused pages on
    /// the spot: muzzy first so dirty pages are purged, not just made lazy).
    fn purge_and_restore(&self) -> Result<(), String> {
        self.set_decay(0, 0)?;
        self.set_decay(self.dirty_decay_ms, self.muzzy_decay_ms)
    }

    /// Dirty and muzzy bytes the arena holds: freed but still mapped pages.
    fn unused_bytes(&self) -> u64 {
        // Arena stats are cached until the epoch advances.
        let _ = tikv_jemalloc_ctl::epoch::advance();
        let read = |key: &str| -> u64 {
            let name = format!("stats.arenas.{}.{key}\0", self.index);
            // SAFETY: `stats.arenas.<i>.pdirty`/`pmuzzy` are `size_t`.
            unsafe { raw::read::<usize>(name.as_bytes()) }.unwrap_or(0) as u64
        };
        (read("pdirty") + read("pmuzzy")) * PAGE_BYTES as u64
    }
}

/// Runs one batch job on the calling thread (the batch worker, bound to the
/// batch arena): `bytes` in chunks, every page written, then digested and
/// freed. Kept out of line so a heap profile names it as the allocation site.
#[inline(never)]
fn run_job(bytes: u64) -> u64 {
    let chunks = (bytes as usize).div_ceil(CHUNK_BYTES);
    let mut held: Vec<Vec<u8>> = Vec::with_capacity(chunks);
    for i in 0..chunks {
        // A non-zero fill is a memset: every page is written, so resident.
        held.push(vec![(i % 251) as u8 + 1; CHUNK_BYTES]);
    }
    let digest = held.iter().fold(0xcbf2_9ce4_8422_2325u64, |acc, chunk| {
        chunk
            .iter()
            .step_by(PAGE_BYTES)
            .fold(acc, |h, b| (h ^ *b as u64).wrapping_mul(0x100_0000_01b3))
    });
    drop(held);
    digest
}

/// A job for the worker: its size, and where to send the digest.
type Job = (u64, tokio::sync::oneshot::Sender<u64>);

/// The batch arena and the one thread that allocates from it.
///
/// The thread lives as long as the component: jemalloc force-purges an arena
/// when the last thread bound to it exits or moves away, so a thread per job
/// (or a pooled blocking thread that rebinds) would hide the leak.
struct BatchWorker {
    arena: BatchArena,
    /// Jobs for the thread; dropping it (with the component) ends the thread.
    jobs: std::sync::mpsc::Sender<Job>,
}

impl BatchWorker {
    fn start() -> Result<BatchWorker, String> {
        let arena = BatchArena::create()?;
        let (jobs, queue) = std::sync::mpsc::channel::<Job>();
        let (bound_tx, bound_rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("batch-ingest".into())
            .spawn(move || {
                // SAFETY: `thread.arena` is an `unsigned`; the index was made by `arenas.create`.
                let bound = unsafe { raw::write(b"thread.arena\0", arena.index) };
                let _ = bound_tx.send(bound.map_err(|e| e.to_string()));
                while let Ok((bytes, reply)) = queue.recv() {
                    let _ = reply.send(run_job(bytes));
                }
                tracing::debug!("batch worker stopped");
            })
            .map_err(|e| format!("cannot start the batch thread: {e}"))?;
        bound_rx
            .recv()
            .map_err(|_| "the batch thread ended at start".to_owned())??;
        Ok(BatchWorker { arena, jobs })
    }
}

/// What a batch job reports.
#[derive(Clone, Debug, Serialize)]
pub struct JobReport {
    pub job: String,
    pub bytes: u64,
    pub chunks: u64,
    pub digest: u64,
    pub millis: u64,
    /// Whether the arena was purged after the job (the fixed path).
    pub purged: bool,
    /// Freed bytes the batch arena still holds resident after the job.
    pub arena_unused_bytes: u64,
}

/// The batch component.
pub struct BatchIngest {
    ctx: Ctx,
    /// Made on the first job: one arena and one worker thread for the
    /// process (jemalloc arenas are not destroyed while threads use them).
    worker: OnceLock<Result<BatchWorker, String>>,
    /// Set while a job runs: one at a time, a second gets 409.
    running: Arc<AtomicBool>,
    jobs: AtomicU64,
    /// LEAKY PATH: bytes of freed batch pages the arena keeps resident, as
    /// reserved from the `rss-retained` budget; given back when the fixed
    /// path purges. A `std::sync::Mutex`: only one job touches it at a time.
    held_bytes: Mutex<u64>,
    last: Mutex<Option<JobReport>>,
}

/// Clears `running` when the job ends, however it ends.
struct RunningGuard(Arc<AtomicBool>);

impl Drop for RunningGuard {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

impl BatchIngest {
    pub fn new(ctx: Ctx) -> BatchIngest {
        BatchIngest {
            ctx,
            worker: OnceLock::new(),
            running: Arc::new(AtomicBool::new(false)),
            jobs: AtomicU64::new(0),
            held_bytes: Mutex::new(0),
            last: Mutex::new(None),
        }
    }

    fn worker(&self) -> Result<&BatchWorker, AppError> {
        self.worker
            .get_or_init(BatchWorker::start)
            .as_ref()
            .map_err(|e| AppError::Unavailable(format!("no batch worker: {e}")))
    }

    /// Runs one job; `Ok(None)` when another is running.
    async fn run(&self, job: &str) -> Result<Option<JobReport>, AppError> {
        if self
            .running
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            return Ok(None);
        }
        let _running = RunningGuard(self.running.clone());
        let worker = self.worker()?;
        let arena = worker.arena;
        let bytes = self.ctx.config.batch_bytes;
        let held = *self.held_bytes.lock().expect("batch lock");
        // Freed pages of an earlier leaky job are reused by this one, so only
        // a larger job holds more.
        let leak = self
            .ctx
            .leak_admitted(ScenarioId::RssRetained, bytes.saturating_sub(held));
        let fail = |e: String| AppError::Internal(anyhow::anyhow!("batch arena control: {e}"));
        if leak {
            // LEAKY: jemalloc is told never to return this arena's freed pages.
            arena.set_decay(-1, -1).map_err(fail)?;
        } else {
            // FIXED: default decay (undoing a leaky job's setting) ...
            arena
                .set_decay(arena.dirty_decay_ms, arena.muzzy_decay_ms)
                .map_err(fail)?;
        }
        let started = Instant::now();
        let (reply, digest) = tokio::sync::oneshot::channel();
        worker
            .jobs
            .send((bytes, reply))
            .map_err(|_| AppError::Unavailable("the batch worker has stopped".into()))?;
        let digest = digest
            .await
            .map_err(|_| AppError::Unavailable("the batch worker has stopped".into()))?;
        let millis = started.elapsed().as_millis() as u64;
        let mut held_now = self.held_bytes.lock().expect("batch lock");
        if leak {
            // LEAKY: the job's pages stay resident, held by the arena.
            *held_now = held.max(bytes);
        } else {
            // FIXED: ... and a purge right after the job.
            arena.purge_and_restore().map_err(fail)?;
            self.ctx
                .budget
                .release(ScenarioId::RssRetained, std::mem::take(&mut *held_now));
        }
        drop(held_now);
        self.jobs.fetch_add(1, Ordering::Relaxed);
        let report = JobReport {
            job: job.to_owned(),
            bytes,
            chunks: (bytes as usize).div_ceil(CHUNK_BYTES) as u64,
            digest,
            millis,
            purged: !leak,
            arena_unused_bytes: arena.unused_bytes(),
        };
        *self.last.lock().expect("batch lock") = Some(report.clone());
        Ok(Some(report))
    }
}

#[derive(Deserialize)]
struct JobQuery {
    job: String,
}

async fn post_batch(
    State(batch): State<Arc<BatchIngest>>,
    Query(query): Query<JobQuery>,
) -> Result<Response, AppError> {
    let job = validate_key(&query.job)?;
    match batch.run(job).await? {
        Some(report) => Ok(Json(report).into_response()),
        None => Ok((
            StatusCode::CONFLICT,
            Json(json!({ "error": "a batch job is already running; retry when it ends" })),
        )
            .into_response()),
    }
}

async fn get_batch(State(batch): State<Arc<BatchIngest>>) -> impl IntoResponse {
    Json(json!({
        "running": batch.running.load(Ordering::Relaxed),
        "jobs": batch.jobs.load(Ordering::Relaxed),
        "batch_bytes": batch.ctx.config.batch_bytes,
        "last": *batch.last.lock().expect("batch lock"),
    }))
}

impl Component for BatchIngest {
    fn router(self: Arc<Self>) -> Router {
        Router::new()
            .route("/batch", get(get_batch).post(post_batch))
            .with_state(self)
    }

    fn gauges(&self, out: &mut Gauges) {
        out.counter(
            "batch_jobs",
            self.jobs.load(Ordering::Relaxed),
            "Batch jobs run since start.",
        );
        out.gauge(
            "batch_running",
            self.running.load(Ordering::Relaxed) as u64,
            "1 while a batch job runs, else 0.",
        );
        let unused = match self.worker.get() {
            Some(Ok(worker)) => worker.arena.unused_bytes(),
            _ => 0,
        };
        out.gauge(
            "batch_arena_unused_bytes",
            unused,
            "Freed bytes the batch arena still keeps in dirty pages (resident, reusable only by the arena).",
        );
    }
}

/// The `rss-retained` catalogue entry.
pub fn scenario(c: &Config) -> Scenario {
    // One job per run (the first step runs once: `every(0)`), then a cheap
    // status read per triggering request. The job's whole `batch_bytes` stays
    // resident after it on the leaky path (RSS at the peak); no live heap is
    // kept (`allocated` returns to baseline), so `bytes_per_request` is 0 and
    // the RSS figure is what the run's one job leaves behind, not a slope.
    Scenario::new(
        ScenarioId::RssRetained,
        LeakClass::RssRetained,
        "batch",
        vec![
            Step::with_body("POST", "/batch?job={key}", 0).every(0),
            Step::get("/batch"),
        ],
    )
    .rss(c.batch_bytes)
    .gauge("batch_arena_unused_bytes")
    .paths(
        "the batch arena's dirty/muzzy decay is set to -1, so the 256 MiB a job allocated (in run_job) and freed stays resident in jemalloc",
        "default decay and a purge of the batch arena right after the job: RSS comes back down",
    )
}
