//! `leak-guard`: the Rust form of a warm-up-aware heap-growth test and of
//! goleak, for the tests of any tokio service.
//!
//! A guard warms the code up (caches fill, pools reach their size, lazy
//! statics initialise), reads the live heap and the alive tokio tasks, drives
//! a number of distinct requests, lets in-flight work finish, reads again, and
//! fails when either grew past its limit:
//!
//! ```no_run
//! # async fn example() {
//! use leak_guard::LeakGuard;
//! // In a test binary whose global allocator is tikv_jemallocator::Jemalloc:
//! let outcome = LeakGuard::new()
//!     .requests(100_000)
//!     .check(|i| async move {
//!         // send request `i` (a distinct key) to the code under test
//!         let _ = i;
//!     })
//!     .await;
//! outcome.assert_holds(); // panics with "leak guard: allocated grew ... (limit 8 MiB)"
//! # }
//! ```
//!
//! The heap is read from jemalloc (`stats.allocated` after an epoch advance,
//! feature `jemalloc`, on by default), or from any [`Probe`] you pass. Tasks are
//! counted on the current tokio runtime. For leaks the allocator cannot see
//! (anonymous maps, pages it keeps resident) a guard can also watch the
//! resident set size from `/proc/self/statm` ([`LeakGuard::limit_rss_bytes`]);
//! RSS is noisier than the live heap, so give it a generous limit. Guards in one process serialise on a
//! global lock, since the heap is shared by every test thread: keep guard tests
//! in a test binary of their own.

use std::fmt;
use std::future::Future;
use std::time::{Duration, Instant};

use futures_util::stream::{self, StreamExt};

/// One reading of the two signals.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reading {
    /// Bytes in live heap allocations.
    pub allocated: u64,
    /// Alive tasks on the current tokio runtime.
    pub alive_tasks: u64,
    /// Resident set size, when the guard watches it.
    pub rss: Option<u64>,
}

/// How a guard reads the live heap.
pub trait Probe {
    /// Live heap bytes now.
    fn allocated(&self) -> u64;
}

/// jemalloc's `stats.allocated`, refreshed by an epoch advance before each read.
#[cfg(feature = "jemalloc")]
#[derive(Clone, Copy, Debug, Default)]
pub struct Jemalloc;

#[cfg(feature = "jemalloc")]
impl Probe for Jemalloc {
    fn allocated(&self) -> u64 {
        let _ = tikv_jemalloc_ctl::epoch::advance();
        tikv_jemalloc_ctl::stats::allocated::read()
            .map(|b| b as u64)
            .unwrap_or(0)
    }
}

impl<F: Fn() -> u64> Probe for F {
    fn allocated(&self) -> u64 {
        self()
    }
}

fn alive_tasks() -> u64 {
    tokio::runtime::Handle::try_current()
        .map(|h| h.metrics().num_alive_tasks() as u64)
        .unwrap_or(0)
}

/// Which signal tripped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    Allocated,
    AliveTasks,
    Rss,
}

/// The result of one guard run.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub before: Reading,
    pub after: Reading,
    pub requests: usize,
    pub limit_bytes: u64,
    pub limit_tasks: u64,
    pub limit_rss_bytes: Option<u64>,
    /// The resident signal's name ("rss" unless a guard reads it another way).
    pub rss_name: &'static str,
    /// Signals that grew past their limit.
    pub tripped: Vec<Signal>,
    pub elapsed: Duration,
}

impl Outcome {
    /// Growth of the live heap (negative when it shrank).
    pub fn allocated_growth(&self) -> i64 {
        self.after.allocated as i64 - self.before.allocated as i64
    }

    /// Growth of the alive task count.
    pub fn task_growth(&self) -> i64 {
        self.after.alive_tasks as i64 - self.before.alive_tasks as i64
    }

    /// Growth of the resident set, when watched.
    pub fn rss_growth(&self) -> Option<i64> {
        Some(self.after.rss? as i64 - self.before.rss? as i64)
    }

    /// True when no signal grew past its limit.
    pub fn holds(&self) -> bool {
        self.tripped.is_empty()
    }

    /// Panics with the guard's message when it tripped.
    #[track_caller]
    pub fn assert_holds(&self) {
        if !self.holds() {
            panic!("{self}");
        }
    }

    /// Panics when the guard did not trip (for tests that expect a leak).
    #[track_caller]
    pub fn assert_trips(&self) {
        if self.holds() {
            panic!("expected the leak guard to trip, but it held: {self}");
        }
    }
}

/// Bytes as a person reads them: `1.1 GiB`, `8 MiB`, `512 B`.
pub fn human_bytes(bytes: i64) -> String {
    let sign = if bytes < 0 { "-" } else { "" };
    let b = bytes.unsigned_abs() as f64;
    let (value, unit) = match b {
        b if b >= (1u64 << 30) as f64 => (b / (1u64 << 30) as f64, "GiB"),
        b if b >= (1u64 << 20) as f64 => (b / (1u64 << 20) as f64, "MiB"),
        b if b >= 1024.0 => (b / 1024.0, "KiB"),
        b => return format!("{sign}{b} B"),
    };
    if value.fract() < 0.05 || value >= 100.0 {
        format!("{sign}{value:.0} {unit}")
    } else {
        format!("{sign}{value:.1} {unit}")
    }
}

impl fmt::Display for Outcome {
    /// `leak guard: allocated grew 1.1 GiB over 100000 requests (limit 8 MiB)`,
    /// or a "held" line with both growths.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        for signal in &self.tripped {
            parts.push(match signal {
                Signal::Allocated => format!(
                    "allocated grew {} over {} requests (limit {})",
                    human_bytes(self.allocated_growth()),
                    self.requests,
                    human_bytes(self.limit_bytes as i64)
                ),
                Signal::AliveTasks => format!(
                    "alive_tasks grew by {} over {} requests (limit {})",
                    self.task_growth(),
                    self.requests,
                    self.limit_tasks
                ),
                Signal::Rss => format!(
                    "{} grew {} over {} requests (limit {})",
                    self.rss_name,
                    human_bytes(self.rss_growth().unwrap_or(0)),
                    self.requests,
                    human_bytes(self.limit_rss_bytes.unwrap_or(0) as i64)
                ),
            });
        }
        if parts.is_empty() {
            write!(
                f,
                "leak guard held: allocated {} and alive_tasks {:+} over {} requests (limits {} and {})",
                human_bytes(self.allocated_growth()),
                self.task_growth(),
                self.requests,
                human_bytes(self.limit_bytes as i64),
                self.limit_tasks
            )
        } else {
            write!(f, "leak guard: {}", parts.join("; "))
        }
    }
}

/// Serialises guards within one process: the heap is shared by every thread.
static GUARD_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A heap-growth and task-leak check.
#[derive(Clone, Debug)]
pub struct LeakGuard {
    warmup: usize,
    requests: usize,
    concurrency: usize,
    limit_bytes: u64,
    limit_tasks: u64,
    limit_rss_bytes: Option<u64>,
    /// What "rss" means for this guard: its name in messages and how to read it.
    rss_probe: (&'static str, fn() -> Option<u64>),
    settle: Duration,
}

/// The process's resident set size from `/proc/self/statm`.
pub fn process_rss() -> Option<u64> {
    leaklab_probe::rss_bytes(leaklab_probe::Pid::Current).ok()
}

impl Default for LeakGuard {
    fn default() -> Self {
        Self::new()
    }
}

impl LeakGuard {
    /// 100,000 requests after a warm-up of 10,000, 16 at a time; limits 8 MiB of
    /// heap and 16 tasks; up to 5 s for in-flight work to finish.
    pub fn new() -> LeakGuard {
        LeakGuard {
            warmup: 10_000,
            requests: 100_000,
            concurrency: 16,
            limit_bytes: 8 << 20,
            limit_tasks: 16,
            limit_rss_bytes: None,
            rss_probe: ("rss", process_rss),
            settle: Duration::from_secs(5),
        }
    }

    /// Requests driven before the first reading (to reach steady state).
    pub fn warmup(mut self, n: usize) -> Self {
        self.warmup = n;
        self
    }

    /// Requests driven between the two readings.
    pub fn requests(mut self, n: usize) -> Self {
        self.requests = n;
        self
    }

    /// Requests in flight at once.
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    /// Most heap growth tolerated, in bytes.
    pub fn limit_bytes(mut self, bytes: u64) -> Self {
        self.limit_bytes = bytes;
        self
    }

    /// Most alive-task growth tolerated.
    pub fn limit_tasks(mut self, tasks: u64) -> Self {
        self.limit_tasks = tasks;
        self
    }

    /// Also watch the resident set size, tolerating `bytes` of growth (Linux).
    pub fn limit_rss_bytes(mut self, bytes: u64) -> Self {
        self.limit_rss_bytes = Some(bytes);
        self
    }

    /// Reads the resident signal another way, under another name in messages:
    /// e.g. resident memory outside the allocator, for off-heap leaks, where
    /// the allocator's own cached pages would be noise.
    pub fn rss_probe(mut self, name: &'static str, read: fn() -> Option<u64>) -> Self {
        self.rss_probe = (name, read);
        self
    }

    /// The request indices that fall between the two readings.
    pub fn measured_range(&self) -> std::ops::Range<usize> {
        self.warmup..self.warmup + self.requests
    }

    /// How long to wait, at most, for in-flight tasks to finish before each reading.
    pub fn settle(mut self, within: Duration) -> Self {
        self.settle = within;
        self
    }

    /// Runs the guard with the jemalloc probe. `drive(i)` sends request `i`;
    /// indices run from 0 through warm-up and measured requests, so a key made
    /// from `i` is distinct across the whole run.
    #[cfg(feature = "jemalloc")]
    pub async fn check<F, Fut>(&self, drive: F) -> Outcome
    where
        F: FnMut(usize) -> Fut,
        Fut: Future<Output = ()>,
    {
        self.check_with(&Jemalloc, drive).await
    }

    /// Runs the guard with a given heap probe.
    pub async fn check_with<P, F, Fut>(&self, probe: &P, mut drive: F) -> Outcome
    where
        P: Probe + ?Sized,
        F: FnMut(usize) -> Fut,
        Fut: Future<Output = ()>,
    {
        let _serial = GUARD_LOCK.lock().await;
        let started = Instant::now();
        let concurrency = self.concurrency;
        let mut run = |range: std::ops::Range<usize>| {
            let futures: Vec<Fut> = range.map(&mut drive).collect();
            stream::iter(futures)
                .buffer_unordered(concurrency)
                .collect::<Vec<()>>()
        };
        run(0..self.warmup).await;
        let idle = self.settle_tasks(None).await;
        let rss = || self.limit_rss_bytes.and_then(|_| (self.rss_probe.1)());
        let before = Reading {
            allocated: probe.allocated(),
            alive_tasks: idle,
            rss: rss(),
        };
        // Drive in slices so the futures of 100,000 requests are not all built at once.
        let end = self.warmup + self.requests;
        let mut next = self.warmup;
        while next < end {
            let stop = (next + 1024).min(end);
            run(next..stop).await;
            next = stop;
        }
        let tasks = self.settle_tasks(Some(before.alive_tasks)).await;
        let after = Reading {
            allocated: probe.allocated(),
            alive_tasks: tasks,
            rss: rss(),
        };
        let mut tripped = Vec::new();
        if after.allocated as i64 - before.allocated as i64 > self.limit_bytes as i64 {
            tripped.push(Signal::Allocated);
        }
        if after.alive_tasks as i64 - before.alive_tasks as i64 > self.limit_tasks as i64 {
            tripped.push(Signal::AliveTasks);
        }
        if let (Some(limit), Some(b), Some(a)) = (self.limit_rss_bytes, before.rss, after.rss) {
            if a as i64 - b as i64 > limit as i64 {
                tripped.push(Signal::Rss);
            }
        }
        Outcome {
            before,
            after,
            requests: self.requests,
            limit_bytes: self.limit_bytes,
            limit_tasks: self.limit_tasks,
            limit_rss_bytes: self.limit_rss_bytes,
            rss_name: self.rss_probe.0,
            tripped,
            elapsed: started.elapsed(),
        }
    }

    /// Waits (at most `settle`) until the alive task count reaches `target`, or,
    /// without a target, stops falling; returns the count.
    async fn settle_tasks(&self, target: Option<u64>) -> u64 {
        let deadline = Instant::now() + self.settle;
        let mut last = alive_tasks();
        loop {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let now = alive_tasks();
            let done = match target {
                Some(target) => now <= target,
                None => now >= last,
            };
            if done || Instant::now() >= deadline {
                return now;
            }
            last = now;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    /// A fake heap: each request adds `per_request` bytes to a counter.
    async fn fake_run(per_request: u64, warmup_growth: u64) -> Outcome {
        let heap = Arc::new(AtomicU64::new(1_000_000));
        let probe = {
            let heap = heap.clone();
            move || heap.load(Ordering::Relaxed)
        };
        LeakGuard::new()
            .warmup(100)
            .requests(1000)
            .settle(Duration::from_millis(50))
            .check_with(&probe, |i| {
                let heap = heap.clone();
                async move {
                    let grow = if i < 100 { warmup_growth } else { per_request };
                    heap.fetch_add(grow, Ordering::Relaxed);
                }
            })
            .await
    }

    #[tokio::test]
    async fn growth_past_the_limit_trips_with_a_message_naming_the_signal() {
        let outcome = fake_run(10 * 1024, 0).await;
        outcome.assert_trips();
        let message = outcome.to_string();
        assert!(
            message
                .starts_with("leak guard: allocated grew 9.8 MiB over 1000 requests (limit 8 MiB)"),
            "{message}"
        );
    }

    #[tokio::test]
    async fn warm_up_growth_is_not_counted() {
        // 1 MiB per warm-up request (a cache filling), nothing after.
        let outcome = fake_run(0, 1 << 20).await;
        outcome.assert_holds();
        assert_eq!(outcome.allocated_growth(), 0);
    }

    #[tokio::test]
    async fn tasks_left_behind_trip_the_task_signal() {
        let outcome = LeakGuard::new()
            .warmup(10)
            .requests(100)
            .settle(Duration::from_millis(100))
            .check_with(&|| 0u64, |_| async {
                tokio::spawn(std::future::pending::<()>());
            })
            .await;
        assert_eq!(outcome.tripped, vec![Signal::AliveTasks]);
        assert!(outcome
            .to_string()
            .starts_with("leak guard: alive_tasks grew by 100 over 100 requests"));
    }

    #[tokio::test]
    async fn resident_memory_the_allocator_does_not_see_trips_the_rss_signal() {
        let mut kept = Vec::new();
        let outcome = LeakGuard::new()
            .warmup(0)
            .requests(64)
            .limit_rss_bytes(16 << 20)
            .settle(Duration::from_millis(20))
            .check_with(&|| 0u64, |_| {
                // 1 MiB per request, written so the pages are resident.
                kept.push(vec![1u8; 1 << 20]);
                async {}
            })
            .await;
        assert_eq!(outcome.tripped, vec![Signal::Rss], "{outcome}");
        assert!(
            outcome.to_string().starts_with("leak guard: rss grew"),
            "{outcome}"
        );
        drop(kept);
    }

    #[test]
    fn human_bytes_reads_like_the_interface_example() {
        assert_eq!(human_bytes(1_181_116_006), "1.1 GiB");
        assert_eq!(human_bytes(8 << 20), "8 MiB");
        assert_eq!(human_bytes(512), "512 B");
    }
}
