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

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::header::HeaderValue;
use hyper::{Method, Request};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde::Serialize;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::catalogue::Scenario;
use crate::target::{source_chain, Target};

/// Longest run the per-second buckets cover (a week); beyond it seconds fold
/// into the last bucket, so memory stays bounded.
const MAX_BUCKETS: usize = 7 * 24 * 3600;
/// Histogram range: 1 µs to 10 minutes, 3 significant digits.
const HIST_MAX_US: u64 = 600_000_000;

/// Arrival rate.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Rate {
    /// Triggering requests per second, open model.
    Fixed(f64),
    /// As fast as `connections` connections go, closed model.
    Max,
}

/// One prepared HTTP step: method, path split around `{key}`, shared body.
#[derive(Clone, Debug)]
pub struct PreparedStep {
    method: Method,
    /// Path before `{key}` and, when the template has a key, the part after it.
    head: String,
    tail: Option<String>,
    /// Sent as is; cloning `Bytes` shares the buffer.
    body: Bytes,
    /// The parsed origin-form URI when the path has no `{key}`.
    origin: Option<hyper::Uri>,
    /// Send the key as `x-leaklab-key` (scenario steps; not plain GETs).
    key_header: bool,
}

/// The request shape of one triggering request (a catalogue recipe).
#[derive(Clone, Debug)]
pub struct Unit {
    pub scenario: Option<String>,
    steps: Vec<PreparedStep>,
}

impl Unit {
    /// From a catalogue entry's recipe.
    pub fn from_scenario(s: &Scenario) -> Result<Unit> {
        let steps = s
            .steps()
            .iter()
            .map(|st| PreparedStep::new(&st.method, &st.path, st.body_bytes, true))
            .collect::<Result<Vec<_>>>()?;
        Ok(Unit {
            scenario: Some(s.id.clone()),
            steps,
        })
    }

    /// Whether any step needs the key (in its path or as a header).
    fn uses_key(&self) -> bool {
        self.steps.iter().any(|s| s.tail.is_some() || s.key_header)
    }

    /// A plain `GET path` (e.g. `/healthz` for benches).
    pub fn get(path: &str) -> Result<Unit> {
        Ok(Unit {
            scenario: None,
            steps: vec![PreparedStep::new("GET", path, 0, false)?],
        })
    }
}

impl PreparedStep {
    fn new(method: &str, path: &str, body_bytes: u64, key_header: bool) -> Result<PreparedStep> {
        let method = Method::from_bytes(method.as_bytes())
            .with_context(|| format!("bad method {method}"))?;
        let (head, tail) = match path.split_once("{key}") {
            Some((h, t)) => (h.to_string(), Some(t.to_string())),
            None => (path.to_string(), None),
        };
        let origin = if tail.is_none() {
            head.parse().ok()
        } else {
            None
        };
        Ok(PreparedStep {
            method,
            head,
            tail,
            body: Bytes::from(vec![b'x'; body_bytes as usize]),
            origin,
            key_header,
        })
    }

    /// The request for `key`; `base` is empty for origin-form (own
    /// connections) or `http://host:port` for the pooled client.
    fn request(&self, base: &str, host: &HeaderValue, key: &str) -> Request<Full<Bytes>> {
        let mut req = Request::new(Full::new(self.body.clone()));
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = match (&self.origin, base.is_empty()) {
            // Keyless path on an own connection: the URI is parsed once.
            (Some(uri), true) => uri.clone(),
            _ => {
                let mut uri = String::with_capacity(base.len() + self.head.len() + key.len() + 8);
                uri.push_str(base);
                uri.push_str(&self.head);
                if let Some(tail) = &self.tail {
                    uri.push_str(key);
                    uri.push_str(tail);
                }
                // A path built from a catalogue template and our own key is
                // valid; fall back to "/" rather than panic on a hostile catalogue.
                uri.parse().unwrap_or_else(|_| hyper::Uri::from_static("/"))
            }
        };
        let headers = req.headers_mut();
        headers.insert(hyper::header::HOST, host.clone());
        if self.key_header {
            if let Ok(v) = HeaderValue::from_str(key) {
                headers.insert("x-leaklab-key", v);
            }
        }
        req
    }
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
    fn new() -> LoadStats {
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

    fn record_done(&mut self, at: Duration, latency: Duration, ok: bool) {
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

    fn record_dropped(&mut self, at: Duration) {
        self.bucket(at).dropped += 1;
        self.dropped += 1;
    }

    fn merge(&mut self, other: &LoadStats) {
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

/// What one unit's HTTP exchange came to.
enum Outcome {
    Ok { status_4xx: u64 },
    Failed(String, bool),
}

async fn send_unit<S>(
    send: &mut S,
    unit: &Unit,
    base: &str,
    host: &HeaderValue,
    key: &str,
    http_requests: &mut u64,
) -> Outcome
where
    S: SendRequest,
{
    let mut status_4xx = 0;
    for step in &unit.steps {
        *http_requests += 1;
        match send.send(step.request(base, host, key)).await {
            Ok(status) if status.is_server_error() => {
                return Outcome::Failed(
                    format!(
                        "HTTP {status} for {}{}",
                        step.head,
                        step.tail.as_deref().map(|_| "{key}").unwrap_or("")
                    ),
                    false,
                )
            }
            Ok(status) => {
                if status.is_client_error() {
                    status_4xx += 1;
                }
            }
            Err((msg, refused)) => return Outcome::Failed(msg, refused),
        }
    }
    Outcome::Ok { status_4xx }
}

/// Something that sends one request and drains the response body.
trait SendRequest {
    async fn send(
        &mut self,
        req: Request<Full<Bytes>>,
    ) -> Result<hyper::StatusCode, (String, bool)>;
}

type Pooled = Client<HttpConnector, Full<Bytes>>;

struct PooledSender<'a>(&'a Pooled);

impl SendRequest for PooledSender<'_> {
    async fn send(
        &mut self,
        req: Request<Full<Bytes>>,
    ) -> Result<hyper::StatusCode, (String, bool)> {
        let resp = self.0.request(req).await.map_err(|e| {
            let chain = source_chain(&e);
            let refused = chain.contains("refused") || chain.contains("reset");
            (format!("{e}: {chain}"), refused)
        })?;
        let status = resp.status();
        drain(resp.into_body()).await.map_err(|e| (e, false))?;
        Ok(status)
    }
}

struct OwnSender(hyper::client::conn::http1::SendRequest<Full<Bytes>>);

impl SendRequest for OwnSender {
    async fn send(
        &mut self,
        req: Request<Full<Bytes>>,
    ) -> Result<hyper::StatusCode, (String, bool)> {
        self.0.ready().await.map_err(|e| (e.to_string(), true))?;
        let resp = self
            .0
            .send_request(req)
            .await
            .map_err(|e| (e.to_string(), true))?;
        let status = resp.status();
        drain(resp.into_body()).await.map_err(|e| (e, false))?;
        Ok(status)
    }
}

async fn drain(mut body: hyper::body::Incoming) -> Result<(), String> {
    // Frames are dropped as they arrive: nothing of the response is kept.
    while let Some(frame) = body.frame().await {
        frame.map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Picks the unit for arrival `i` round-robin, skipping kinds past their cap.
/// Returns `None` when every kind is capped out.
fn pick_unit(i: u64, sent_per_kind: &mut [u64], caps: &[Option<u64>]) -> Option<usize> {
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
            return Some(idx);
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
        Rate::Fixed(rate) => drive_open(cfg, rate, units, progress.clone(), start).await?,
        Rate::Max => drive_closed(cfg, units, progress.clone(), start).await?,
    };
    stats.elapsed = start.elapsed();
    Ok(stats)
}

async fn drive_open(
    cfg: &LoadConfig,
    rate: f64,
    units: Arc<Vec<Unit>>,
    progress: Arc<Progress>,
    start: Instant,
) -> Result<LoadStats> {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Pooled = Client::builder(TokioExecutor::new())
        // Never more than `connections` in use (see connection_slots below).
        .pool_max_idle_per_host(cfg.connections.max(1))
        .pool_idle_timeout(Duration::from_secs(30))
        .build(connector);
    let base: Arc<str> = Arc::from(cfg.target.base.as_str());
    let authority = host_header(cfg)?;
    let stats = Arc::new(Mutex::new(LoadStats::new()));
    let slots = Arc::new(Semaphore::new(cfg.max_in_flight));
    // At most `connections` requests on the wire: a stalled target makes
    // arrivals queue here (latency still counts from the planned time), not
    // open hundreds of connections that the target then has to hold.
    let connection_slots = Arc::new(Semaphore::new(cfg.connections.max(1)));
    let mut per_kind = vec![0u64; units.len()];
    let caps: Vec<Option<u64>> = (0..units.len())
        .map(|k| cfg.per_unit_cap.get(k).copied().flatten())
        .collect();

    // Bounded by the planned offsets (which end at `duration`) and max_units.
    for i in 0u64.. {
        if progress.stopped() || cfg.max_units.is_some_and(|m| i >= m) {
            break;
        }
        let Some(offset) = planned_offset(i, rate, cfg.ramp, cfg.duration) else {
            break;
        };
        let planned = start + offset;
        if planned > Instant::now() {
            tokio::time::sleep_until(planned).await;
        }
        let now = Instant::now();
        let Some(kind) = pick_unit(i, &mut per_kind, &caps) else {
            break;
        };
        let permit = if now.duration_since(planned) > cfg.max_lag {
            None
        } else {
            slots.clone().try_acquire_owned().ok()
        };
        let Some(permit) = permit else {
            progress.dropped.fetch_add(1, Ordering::Relaxed);
            lock(&stats).record_dropped(now.duration_since(start));
            continue;
        };
        progress.sent.fetch_add(1, Ordering::Relaxed);
        let (client, base, authority, units, stats, progress) = (
            client.clone(),
            base.clone(),
            authority.clone(),
            units.clone(),
            stats.clone(),
            progress.clone(),
        );
        let key = format!("{}-{i}", cfg.key_prefix);
        let (connection_slots, give_up_at) = (connection_slots.clone(), planned + cfg.max_lag);
        tokio::spawn(async move {
            let _permit = permit;
            // Wait for one of the `connections` connections; an arrival that
            // cannot get one within max_lag of its planned time is dropped.
            let Ok(Ok(_connection)) =
                tokio::time::timeout_at(give_up_at, connection_slots.acquire_owned()).await
            else {
                progress.dropped.fetch_add(1, Ordering::Relaxed);
                progress.sent.fetch_sub(1, Ordering::Relaxed);
                lock(&stats).record_dropped(Instant::now().duration_since(start));
                return;
            };
            let mut http = 0;
            let outcome = send_unit(
                &mut PooledSender(&client),
                &units[kind],
                &base,
                &authority,
                &key,
                &mut http,
            )
            .await;
            let done = Instant::now();
            record(
                &progress,
                &mut lock(&stats),
                outcome,
                http,
                done.duration_since(start),
                done.duration_since(planned),
            );
        });
    }
    // Wait for in-flight requests, bounded: stragglers past 10 s are abandoned.
    let _ = tokio::time::timeout(
        Duration::from_secs(10),
        slots.acquire_many(cfg.max_in_flight as u32),
    )
    .await;
    let out = lock(&stats).clone();
    Ok(out)
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

async fn drive_closed(
    cfg: &LoadConfig,
    units: Arc<Vec<Unit>>,
    progress: Arc<Progress>,
    start: Instant,
) -> Result<LoadStats> {
    let deadline = start + cfg.duration;
    let next = Arc::new(AtomicU64::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..cfg.connections.max(1) {
        let (cfg, units, progress, next) =
            (cfg.clone(), units.clone(), progress.clone(), next.clone());
        workers.spawn(async move {
            connection_worker(&cfg, &units, &progress, &next, start, deadline).await
        });
    }
    let mut stats = LoadStats::new();
    while let Some(res) = workers.join_next().await {
        stats.merge(&res.context("load worker panicked")?);
    }
    Ok(stats)
}

async fn connect(cfg: &LoadConfig) -> Result<OwnSender, String> {
    let stream = tokio::net::TcpStream::connect(cfg.target.addr)
        .await
        .map_err(|e| e.to_string())?;
    let _ = stream.set_nodelay(true);
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    // The connection task ends when the sender is dropped or the peer closes.
    tokio::spawn(conn);
    Ok(OwnSender(sender))
}

async fn connection_worker(
    cfg: &LoadConfig,
    units: &[Unit],
    progress: &Progress,
    next: &AtomicU64,
    start: Instant,
    deadline: Instant,
) -> LoadStats {
    let mut stats = LoadStats::new();
    let mut sender: Option<OwnSender> = None;
    let Ok(host) = host_header(cfg) else {
        return stats;
    };
    let mut key = String::with_capacity(cfg.key_prefix.len() + 24);
    // Indices are claimed in blocks and progress is published every BLOCK
    // requests, so connection tasks do not contend on shared counters.
    const BLOCK: u64 = 64;
    let (mut i, mut block_end) = (0u64, 0u64);
    let mut unpublished = 0u64;
    // Bounded by the deadline (and the stop flag).
    while Instant::now() < deadline && !progress.stopped() {
        if sender.is_none() {
            match connect(cfg).await {
                Ok(s) => sender = Some(s),
                Err(e) => {
                    progress.errors.fetch_add(1, Ordering::Relaxed);
                    progress.refused.fetch_add(1, Ordering::Relaxed);
                    *lock(&progress.last_error) = Some(format!("connect: {e}"));
                    stats.errors += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            }
        }
        let Some(s) = sender.as_mut() else { continue };
        if i == block_end {
            i = next.fetch_add(BLOCK, Ordering::Relaxed);
            block_end = i + BLOCK;
        }
        if cfg.max_units.is_some_and(|m| i >= m) {
            break;
        }
        let unit = &units[(i as usize) % units.len()];
        if unit.uses_key() {
            use std::fmt::Write;
            key.clear();
            let _ = write!(key, "{}-{i}", cfg.key_prefix);
        }
        i += 1;
        let sent_at = Instant::now();
        let mut http = 0;
        let outcome = send_unit(s, unit, "", &host, &key, &mut http).await;
        let done = Instant::now();
        stats.http_requests += http;
        match outcome {
            Outcome::Ok { status_4xx } => {
                stats.status_4xx += status_4xx;
                stats.record_done(
                    done.duration_since(start),
                    done.duration_since(sent_at),
                    true,
                );
                unpublished += 1;
                if unpublished == BLOCK {
                    progress.sent.fetch_add(unpublished, Ordering::Relaxed);
                    progress
                        .units_done
                        .fetch_add(unpublished, Ordering::Relaxed);
                    unpublished = 0;
                }
            }
            failed => {
                if matches!(failed, Outcome::Failed(_, true)) {
                    sender = None;
                }
                progress.sent.fetch_add(1, Ordering::Relaxed);
                record(
                    progress,
                    &mut stats,
                    failed,
                    0,
                    done.duration_since(start),
                    done.duration_since(sent_at),
                );
            }
        }
    }
    progress.sent.fetch_add(unpublished, Ordering::Relaxed);
    progress
        .units_done
        .fetch_add(unpublished, Ordering::Relaxed);
    stats
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
        assert_eq!(picks, vec![0, 1, 2, 0, 2, 2]);
        let mut one = vec![0];
        assert_eq!(pick_unit(0, &mut one, &[Some(1)]), Some(0));
        assert_eq!(pick_unit(1, &mut one, &[Some(1)]), None);
    }

    #[test]
    fn requests_carry_the_key_in_path_and_header() {
        let step = PreparedStep::new("PUT", "/sessions/{key}/x", 3, true).unwrap();
        let req = step.request(
            "http://127.0.0.1:1",
            &HeaderValue::from_static("127.0.0.1:1"),
            "run-7",
        );
        assert_eq!(req.uri().to_string(), "http://127.0.0.1:1/sessions/run-7/x");
        assert_eq!(req.method(), Method::PUT);
        assert_eq!(req.headers()["x-leaklab-key"], "run-7");
        let plain = PreparedStep::new("POST", "/batch", 0, false)
            .unwrap()
            .request("", &HeaderValue::from_static("h:1"), "k");
        assert!(plain.headers().get("x-leaklab-key").is_none());
        assert_eq!(plain.uri().to_string(), "/batch");
    }

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
