//! The load engine: open-model arrivals at planned times, or a closed
//! max-rate mode with one task per connection.
//!
//! Open model (`Rate::Fixed`): arrival `i` is planned at a fixed offset from
//! the start (with an optional linear ramp). A dispatcher sleeps until each
//! planned time and hands the triggering request to a task that sends it on a
//! pooled, reused hyper connection (at most `connections` of them, like
//! wrk2's fixed connection set). Latency is measured from the *planned* time
//! (coordinated-omission corrected, as wrk2 does). An arrival that could not
//! be sent on time, because it is already `max_lag` late, every in-flight slot
//! is taken, or no connection came free within `max_lag`, is counted as
//! `dropped`, never silently skipped.
//!
//! Max mode (`Rate::Max`): `connections` tasks, each owning one HTTP/1
//! connection, send back to back until the deadline (what oha and wrk do).
//!
//! Keys come from a monotonic counter with a run prefix (`{prefix}-{i}`), so
//! no key repeats. Memory stays bounded for any run length: one HdrHistogram
//! plus one small bucket per second, no per-request records.
//!
//! - [`unit`]: a triggering request's HTTP steps (a catalogue recipe), and
//!   which steps run on which request (`every`).
//! - `send`: sending one unit over a pooled or an own connection.
//! - `open` and `closed`: the two drivers.
//! - [`tally`]: what a load run measured.

mod closed;
mod open;
mod send;
pub mod tally;
pub mod unit;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use hyper::header::HeaderValue;
use tokio::time::Instant;

use crate::target::Target;

pub use tally::{LoadStats, SecondBucket};
pub use unit::Unit;

use send::Outcome;

/// Arrival rate.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Rate {
    /// Triggering requests per second, open model.
    Fixed(f64),
    /// As fast as `connections` connections go, closed model.
    Max,
}

/// What a load run is asked to do.
#[derive(Clone, Debug)]
pub struct LoadConfig {
    pub target: Target,
    pub rate: Rate,
    pub duration: Duration,
    /// Linear ramp from 0 to the rate over this long (open model only).
    pub ramp: Option<Duration>,
    /// Connections: one task each in max mode; the most used at once in the open model.
    pub connections: usize,
    /// In-flight triggering requests at most (open model); more are dropped.
    pub max_in_flight: usize,
    /// An arrival later than this behind its planned time is dropped.
    pub max_lag: Duration,
    /// Key prefix, unique per run.
    pub key_prefix: String,
    /// Stop after this many triggering requests (e.g. 1 for a one-shot burst).
    pub max_units: Option<u64>,
    /// Triggering requests per unit kind are capped independently (mixed runs).
    pub per_unit_cap: Vec<Option<u64>>,
}

/// Live counters other tasks read (progress line, sampler) and the stop flag.
#[derive(Debug, Default)]
pub struct Progress {
    pub sent: AtomicU64,
    pub units_done: AtomicU64,
    pub errors: AtomicU64,
    pub dropped: AtomicU64,
    /// Transport errors of the "connection refused" kind, for death detection.
    pub refused: AtomicU64,
    /// Set to end the load early (target died, ctrl-c).
    pub stop: AtomicBool,
    pub last_error: Mutex<Option<String>>,
}

impl Progress {
    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

/// Offset of arrival `i` from the start, or `None` past `duration`.
/// With a ramp of `r` seconds the rate grows linearly from 0 to `rate`.
pub fn planned_offset(
    i: u64,
    rate: f64,
    ramp: Option<Duration>,
    duration: Duration,
) -> Option<Duration> {
    let i = i as f64;
    let t = match ramp.map(|r| r.as_secs_f64()).filter(|r| *r > 0.0) {
        Some(r) => {
            let ramp_arrivals = rate * r / 2.0;
            if i < ramp_arrivals {
                (2.0 * r * i / rate).sqrt()
            } else {
                r + (i - ramp_arrivals) / rate
            }
        }
        None => i / rate,
    };
    (t < duration.as_secs_f64()).then(|| Duration::from_secs_f64(t))
}

/// Picks the unit for arrival `i` round-robin, skipping kinds past their cap.
/// Returns the kind and how many of that kind came before (the unit's `nth`
/// request of the run), or `None` when every kind is capped out.
fn pick_unit(i: u64, sent_per_kind: &mut [u64], caps: &[Option<u64>]) -> Option<(usize, u64)> {
    let n = sent_per_kind.len();
    for k in 0..n {
        let idx = ((i as usize) + k) % n;
        if caps
            .get(idx)
            .copied()
            .flatten()
            .is_none_or(|cap| sent_per_kind[idx] < cap)
        {
            sent_per_kind[idx] += 1;
            return Some((idx, sent_per_kind[idx] - 1));
        }
    }
    None
}

/// Runs the load until `duration` has passed (or `progress.stop`), and
/// returns what it measured. `start` is the run's time zero.
pub async fn drive(
    cfg: &LoadConfig,
    units: Arc<Vec<Unit>>,
    progress: Arc<Progress>,
    start: Instant,
) -> Result<LoadStats> {
    anyhow::ensure!(!units.is_empty(), "no request shapes to send");
    let mut stats = match cfg.rate {
        Rate::Fixed(rate) => open::drive_open(cfg, rate, units, progress.clone(), start).await?,
        Rate::Max => closed::drive_closed(cfg, units, progress.clone(), start).await?,
    };
    stats.elapsed = start.elapsed();
    Ok(stats)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn record(
    progress: &Progress,
    stats: &mut LoadStats,
    outcome: Outcome,
    http: u64,
    at: Duration,
    latency: Duration,
) {
    stats.http_requests += http;
    progress.units_done.fetch_add(1, Ordering::Relaxed);
    match outcome {
        Outcome::Ok { status_4xx } => {
            stats.status_4xx += status_4xx;
            stats.record_done(at, latency, true);
        }
        Outcome::Failed(msg, refused) => {
            progress.errors.fetch_add(1, Ordering::Relaxed);
            if refused {
                progress.refused.fetch_add(1, Ordering::Relaxed);
            }
            *lock(&progress.last_error) = Some(msg);
            stats.record_done(at, latency, false);
        }
    }
}

fn host_header(cfg: &LoadConfig) -> Result<HeaderValue> {
    HeaderValue::from_str(&cfg.target.authority)
        .with_context(|| format!("bad authority {}", cfg.target.authority))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn planned_offsets_are_evenly_spaced_and_end_at_the_duration() {
        let d = Duration::from_secs(2);
        assert_eq!(planned_offset(0, 100.0, None, d), Some(Duration::ZERO));
        assert_eq!(
            planned_offset(50, 100.0, None, d),
            Some(Duration::from_millis(500))
        );
        assert_eq!(
            planned_offset(199, 100.0, None, d).map(|o| o.as_millis()),
            Some(1990)
        );
        assert_eq!(planned_offset(200, 100.0, None, d), None);
    }

    #[test]
    fn a_ramp_sends_half_as_many_requests_during_it_then_the_full_rate() {
        let ramp = Some(Duration::from_secs(10));
        let d = Duration::from_secs(20);
        // 100/s ramped over 10 s: 500 arrivals by t = 10 s, then 100 per second.
        let t500 = planned_offset(500, 100.0, ramp, d).unwrap().as_secs_f64();
        assert!((t500 - 10.0).abs() < 1e-9);
        let t125 = planned_offset(125, 100.0, ramp, d).unwrap().as_secs_f64();
        assert!((t125 - 5.0).abs() < 1e-9);
        let t600 = planned_offset(600, 100.0, ramp, d).unwrap().as_secs_f64();
        assert!((t600 - 11.0).abs() < 1e-9);
    }

    #[test]
    fn units_are_picked_round_robin_and_capped_kinds_are_skipped() {
        let mut sent = vec![0, 0, 0];
        let caps = vec![None, Some(1), None];
        let picks: Vec<_> = (0..6)
            .map(|i| pick_unit(i, &mut sent, &caps).unwrap())
            .collect();
        assert_eq!(picks, vec![(0, 0), (1, 0), (2, 0), (0, 1), (2, 1), (2, 2)]);
        let mut one = vec![0];
        assert_eq!(pick_unit(0, &mut one, &[Some(1)]), Some((0, 0)));
        assert_eq!(pick_unit(1, &mut one, &[Some(1)]), None);
    }
}
