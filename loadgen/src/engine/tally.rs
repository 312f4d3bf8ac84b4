//! What a load run measured: one HdrHistogram of latency and a bucket per
//! second (bounded for any run length), merged across connection tasks.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Longest run the per-second buckets cover (a week); beyond it seconds fold
/// into the last bucket, so memory stays bounded.
const MAX_BUCKETS: usize = 7 * 24 * 3600;

/// Histogram range: 1 µs to 10 minutes, 3 significant digits.
const HIST_MAX_US: u64 = 600_000_000;

/// One second of load.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct SecondBucket {
    pub completed: u64,
    pub errors: u64,
    pub dropped: u64,
    pub max_latency_us: u64,
}

/// Everything a load run measured.
#[derive(Clone, Debug)]
pub struct LoadStats {
    /// Latency of completed triggering requests, µs.
    pub latency_us: Histogram<u64>,
    pub per_second: Vec<SecondBucket>,
    /// HTTP requests sent (a unit may have several steps).
    pub http_requests: u64,
    pub units_done: u64,
    pub errors: u64,
    pub dropped: u64,
    /// 4xx answers (a refusal such as 429 is not a transport error).
    pub status_4xx: u64,
    pub elapsed: Duration,
}

impl LoadStats {
    pub(super) fn new() -> LoadStats {
        LoadStats {
            latency_us: Histogram::new_with_bounds(1, HIST_MAX_US, 3)
                .expect("static histogram bounds are valid"),
            per_second: Vec::new(),
            http_requests: 0,
            units_done: 0,
            errors: 0,
            dropped: 0,
            status_4xx: 0,
            elapsed: Duration::ZERO,
        }
    }

    fn bucket(&mut self, at: Duration) -> &mut SecondBucket {
        let i = (at.as_secs() as usize).min(MAX_BUCKETS - 1);
        if self.per_second.len() <= i {
            self.per_second.resize(i + 1, SecondBucket::default());
        }
        &mut self.per_second[i]
    }

    pub(super) fn record_done(&mut self, at: Duration, latency: Duration, ok: bool) {
        let us = (latency.as_micros() as u64).clamp(1, HIST_MAX_US);
        let b = self.bucket(at);
        b.completed += 1;
        b.max_latency_us = b.max_latency_us.max(us);
        if !ok {
            b.errors += 1;
        }
        self.units_done += 1;
        if !ok {
            self.errors += 1;
        }
        // Clamped into range above, so recording cannot fail.
        let _ = self.latency_us.record(us);
    }

    pub(super) fn record_dropped(&mut self, at: Duration) {
        self.bucket(at).dropped += 1;
        self.dropped += 1;
    }

    pub(super) fn merge(&mut self, other: &LoadStats) {
        let _ = self.latency_us.add(&other.latency_us);
        if self.per_second.len() < other.per_second.len() {
            self.per_second
                .resize(other.per_second.len(), SecondBucket::default());
        }
        for (a, b) in self.per_second.iter_mut().zip(&other.per_second) {
            a.completed += b.completed;
            a.errors += b.errors;
            a.dropped += b.dropped;
            a.max_latency_us = a.max_latency_us.max(b.max_latency_us);
        }
        self.http_requests += other.http_requests;
        self.units_done += other.units_done;
        self.errors += other.errors;
        self.dropped += other.dropped;
        self.status_4xx += other.status_4xx;
    }

    /// Triggering requests completed per second between `from` and `to`
    /// seconds after the start (whole buckets).
    pub fn rate_between(&self, from: f64, to: f64) -> f64 {
        let a = from.max(0.0).round() as usize;
        let b = (to.round() as usize).min(self.per_second.len());
        if b <= a {
            return 0.0;
        }
        let n: u64 = self.per_second[a..b].iter().map(|s| s.completed).sum();
        n as f64 / (b - a) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_between_counts_whole_seconds() {
        let mut s = LoadStats::new();
        for sec in 0..10u64 {
            for _ in 0..(100 + sec) {
                s.record_done(Duration::from_secs(sec), Duration::from_millis(1), true);
            }
        }
        assert!((s.rate_between(0.0, 10.0) - 104.5).abs() < 1e-9);
        assert!((s.rate_between(5.0, 10.0) - 107.0).abs() < 1e-9);
        assert_eq!(s.units_done, 1045);
    }
}
