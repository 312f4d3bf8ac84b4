//! The background job worker: `POST /jobs` queues the request body as a job
//! (202 Accepted) for a worker task that drains the queue at
//! `worker_jobs_per_s` (default 20 jobs/s).
//!
//! Scenario seeded here: `unbounded-queue` (retention). On the leaky path jobs
//! go into an unbounded channel: when POSTs arrive faster than the worker
//! drains, the channel holds every waiting job and its payload, and the queue
//! grows without limit. The fixed path uses a bounded channel of
//! `queue_capacity` jobs: `try_send` on a full queue answers 429, which pushes
//! the excess back to the client (backpressure) instead of into memory.
//!
//! The worker is a background task spawned on `ctx.tracker` and ends on
//! `ctx.shutdown` (see `app::serve`); it logs when it stops.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use serde::Serialize;
use tokio::sync::mpsc;
use tokio::time::MissedTickBehavior;

use super::{Component, Ctx, Gauges};
use crate::catalogue::{size_class, LeakClass, Scenario, ScenarioId, Step};
use crate::config::Config;
use crate::error::AppError;
use crate::extract::RawBody;

/// Jobs per block of tokio's unbounded channel (its list of slot blocks).
const CHANNEL_BLOCK_SLOTS: u64 = 32;

/// One queued job.
struct Job {
    id: u64,
    /// The job's payload, copied out of the request body so a queued job owns
    /// exactly its bytes (a `Bytes` view could pin the connection's whole read
    /// buffer: the `subslice-pin` trap).
    payload: Vec<u8>,
    enqueued_at: Instant,
    /// Leak-budget bytes this job reserved (leaky path), given back when the
    /// worker takes it off the queue.
    reserved: u64,
}

/// Counters shared by the handlers and the worker task.
#[derive(Default)]
struct QueueStats {
    /// Jobs waiting in either channel now.
    depth: AtomicU64,
    accepted: AtomicU64,
    rejected: AtomicU64,
    done: AtomicU64,
    /// Checksum of processed payloads, so the work is not optimized away.
    digest: AtomicU64,
}

/// The worker component: the two queues' senders; the worker task owns the receivers.
pub struct JobWorker {
    ctx: Ctx,
    /// LEAKY PATH: an unbounded channel. Every job sent waits in the channel's
    /// blocks, owned by the channel (shared by this sender and the worker's
    /// receiver), until the worker gets to it; nothing limits how many wait.
    unbounded: mpsc::UnboundedSender<Job>,
    /// FIXED PATH: a channel of `queue_capacity` jobs; at most that many
    /// payloads wait, and a full queue is the client's 429.
    bounded: mpsc::Sender<Job>,
    stats: Arc<QueueStats>,
    next_id: AtomicU64,
}

/// What `POST /jobs` answers.
#[derive(Serialize)]
struct Accepted {
    job: u64,
    queue_depth: u64,
}

impl JobWorker {
    /// Creates the queues and spawns the worker on `ctx.tracker` (so it must
    /// be called inside a tokio runtime).
    pub fn new(ctx: Ctx) -> JobWorker {
        let (unbounded, unbounded_rx) = mpsc::unbounded_channel();
        let (bounded, bounded_rx) = mpsc::channel(ctx.config.queue_capacity.max(1));
        let stats = Arc::new(QueueStats::default());
        ctx.tracker
            .spawn(drain(ctx.clone(), bounded_rx, unbounded_rx, stats.clone()));
        JobWorker {
            ctx,
            unbounded,
            bounded,
            stats,
            next_id: AtomicU64::new(1),
        }
    }

    fn enqueue(&self, payload: &[u8]) -> Result<Accepted, AppError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let reserve = queued_job_bytes(payload.len() as u64);
        let leak = self.ctx.leak_admitted(ScenarioId::UnboundedQueue, reserve);
        let job = Job {
            id,
            payload: payload.to_vec(),
            enqueued_at: Instant::now(),
            reserved: if leak { reserve } else { 0 },
        };
        // Counted before sending so the worker never sees a depth below zero.
        self.stats.depth.fetch_add(1, Ordering::Relaxed);
        let sent = if leak {
            // LEAKY: always accepted; the job waits in the unbounded channel
            // however long the queue already is.
            self.unbounded
                .send(job)
                .map_err(|_| AppError::Unavailable("the job worker has stopped".into()))
        } else {
            // FIXED: accepted only if there is room; otherwise 429 and the job
            // (with its payload) is dropped here.
            self.bounded.try_send(job).map_err(|err| match err {
                mpsc::error::TrySendError::Full(_) => AppError::TooManyRequests(format!(
                    "the job queue is full ({} jobs waiting); retry later",
                    self.ctx.config.queue_capacity
                )),
                mpsc::error::TrySendError::Closed(_) => {
                    AppError::Unavailable("the job worker has stopped".into())
                }
            })
        };
        match sent {
            Ok(()) => {
                self.stats.accepted.fetch_add(1, Ordering::Relaxed);
                Ok(Accepted {
                    job: id,
                    queue_depth: self.stats.depth.load(Ordering::Relaxed),
                })
            }
            Err(err) => {
                self.stats.depth.fetch_sub(1, Ordering::Relaxed);
                self.stats.rejected.fetch_add(1, Ordering::Relaxed);
                if leak {
                    self.ctx.budget.release(ScenarioId::UnboundedQueue, reserve);
                }
                Err(err)
            }
        }
    }
}

/// Processes one job: a digest of its payload.
fn process(job: &Job) -> u64 {
    job.payload
        .iter()
        .fold(job.id, |h, b| (h ^ *b as u64).wrapping_mul(0x100_0000_01b3))
}

/// The worker task: takes one job at a time from either queue, at most
/// `worker_jobs_per_s` per second, until `ctx.shutdown`.
async fn drain(
    ctx: Ctx,
    mut bounded: mpsc::Receiver<Job>,
    mut unbounded: mpsc::UnboundedReceiver<Job>,
    stats: Arc<QueueStats>,
) {
    let rate = ctx.config.worker_jobs_per_s.max(1);
    let mut pace = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    pace.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = ctx.shutdown.cancelled() => break,
            _ = pace.tick() => {}
        }
        let job = tokio::select! {
            biased;
            _ = ctx.shutdown.cancelled() => break,
            Some(job) = bounded.recv() => job,
            Some(job) = unbounded.recv() => job,
            else => break,
        };
        stats.depth.fetch_sub(1, Ordering::Relaxed);
        let digest = process(&job);
        stats.digest.fetch_add(digest, Ordering::Relaxed);
        stats.done.fetch_add(1, Ordering::Relaxed);
        if job.reserved > 0 {
            ctx.budget.release(ScenarioId::UnboundedQueue, job.reserved);
        }
        tracing::trace!(
            job = job.id,
            waited_ms = job.enqueued_at.elapsed().as_millis() as u64,
            "job done"
        );
    }
    tracing::info!(
        queued = stats.depth.load(Ordering::Relaxed),
        done = stats.done.load(Ordering::Relaxed),
        "job worker stopped"
    );
}

async fn post_job(
    State(worker): State<Arc<JobWorker>>,
    RawBody(payload): RawBody,
) -> Result<(StatusCode, Json<Accepted>), AppError> {
    if payload.is_empty() {
        return Err(AppError::BadRequest(
            "a job needs a payload (the request body)".into(),
        ));
    }
    Ok((StatusCode::ACCEPTED, Json(worker.enqueue(&payload)?)))
}

impl Component for JobWorker {
    fn router(self: Arc<Self>) -> Router {
        Router::new()
            .route("/jobs", post(post_job))
            .with_state(self)
    }

    fn gauges(&self, out: &mut Gauges) {
        let s = &self.stats;
        out.gauge(
            "queue_depth",
            s.depth.load(Ordering::Relaxed),
            "Jobs waiting in the worker queue; each holds its payload.",
        );
        out.gauge(
            "queue_capacity",
            self.ctx.config.queue_capacity as u64,
            "Capacity of the bounded worker queue.",
        );
        out.counter(
            "jobs_accepted",
            s.accepted.load(Ordering::Relaxed),
            "Jobs accepted into the queue.",
        );
        out.counter(
            "jobs_rejected",
            s.rejected.load(Ordering::Relaxed),
            "Jobs refused with 429 because the queue was full.",
        );
        out.counter(
            "jobs_done",
            s.done.load(Ordering::Relaxed),
            "Jobs the worker finished.",
        );
    }
}

/// Heap bytes one waiting job of `payload` bytes costs: its payload and its
/// share of the channel block it sits in (32 slots of `Job` plus a header).
fn queued_job_bytes(payload: u64) -> u64 {
    let block = size_class(CHANNEL_BLOCK_SLOTS * std::mem::size_of::<Job>() as u64 + 32);
    size_class(payload) + block / CHANNEL_BLOCK_SLOTS
}

/// The `unbounded-queue` catalogue entry.
pub fn scenario(c: &Config) -> Scenario {
    // Per job that waits: its 4 KiB payload and its slot in the channel. The
    // queue grows by (POST rate - worker_jobs_per_s) × this per second.
    Scenario::new(
        ScenarioId::UnboundedQueue,
        LeakClass::Retention,
        "worker",
        vec![Step::with_body("POST", "/jobs", c.job_bytes)],
    )
    .retains(queued_job_bytes(c.job_bytes))
    .drain(c.worker_jobs_per_s as f64)
    .gauge("queue_depth")
    .paths(
        "POST /jobs sends into an unbounded channel: jobs arriving faster than the worker drains (20/s) wait in the channel, with their payloads, without limit",
        "a bounded channel (queue_capacity 256): try_send on a full queue answers 429 (backpressure)",
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio_util::sync::CancellationToken;
    use tokio_util::task::TaskTracker;

    use super::*;
    use crate::budget::LeakBudget;
    use crate::flags::Flags;

    fn ctx(config: Config, leak: bool) -> Ctx {
        let flags = Flags::from_build();
        flags.set(ScenarioId::UnboundedQueue, leak);
        Ctx {
            config: Arc::new(config),
            flags: Arc::new(flags),
            budget: Arc::new(LeakBudget::new(1 << 30)),
            shutdown: CancellationToken::new(),
            tracker: TaskTracker::new(),
        }
    }

    async fn stop(ctx: &Ctx) {
        ctx.shutdown.cancel();
        ctx.tracker.close();
        tokio::time::timeout(Duration::from_secs(2), ctx.tracker.wait())
            .await
            .expect("the worker stops on shutdown");
    }

    #[tokio::test]
    async fn the_worker_drains_both_queues_and_stops_on_shutdown() {
        for leak in [true, false] {
            let config = Config {
                worker_jobs_per_s: 1000,
                ..Config::default()
            };
            let ctx = ctx(config, leak);
            let worker = JobWorker::new(ctx.clone());
            for _ in 0..10 {
                worker.enqueue(b"job").expect("accepted");
            }
            let deadline = Instant::now() + Duration::from_secs(2);
            while worker.stats.done.load(Ordering::Relaxed) < 10 && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            assert_eq!(worker.stats.done.load(Ordering::Relaxed), 10, "leak {leak}");
            assert_eq!(worker.stats.depth.load(Ordering::Relaxed), 0);
            assert_eq!(ctx.budget.retained(ScenarioId::UnboundedQueue), 0);
            stop(&ctx).await;
        }
    }

    #[tokio::test]
    async fn a_full_bounded_queue_answers_429_and_the_unbounded_one_never_does() {
        let capacity = 4;
        for leak in [false, true] {
            let config = Config {
                queue_capacity: capacity,
                ..Config::default()
            };
            let ctx = ctx(config, leak);
            let worker = JobWorker::new(ctx.clone());
            // On this single-threaded test runtime the worker task cannot run
            // until the test awaits, so the queue only fills.
            let results: Vec<_> = (0..capacity + 3).map(|_| worker.enqueue(b"job")).collect();
            let refused = results
                .iter()
                .filter(|r| matches!(r, Err(AppError::TooManyRequests(_))))
                .count();
            assert_eq!(refused, if leak { 0 } else { 3 }, "leak {leak}");
            let queued = worker.stats.depth.load(Ordering::Relaxed) as usize;
            assert_eq!(queued, if leak { capacity + 3 } else { capacity });
            stop(&ctx).await;
        }
    }
}
