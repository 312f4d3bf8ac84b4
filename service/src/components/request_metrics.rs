//! Request metrics: middleware around every route that counts requests by
//! status class and records their latency in a histogram, one series per
//! route label, exported on `/metrics` as `leaklab_http_requests_total` and
//! `leaklab_http_request_duration_seconds`.
//!
//! Scenario seeded here: `label-cardinality` (retention). On the leaky path
//! the route label is the raw request path (`/items/k-000123`), so every
//! distinct key creates a new series: a histogram in the registry's map plus
//! its label text, leaked as a `&'static str` (as metrics crates that want
//! `'static` labels invite). The fixed path labels by the matched route
//! template (`axum::extract::MatchedPath`: `/items/{key}`), a set bounded by
//! the routes the service has. The trigger is any request whose key is in its
//! path; the catalogue uses `GET /items/{key}`.

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::Router;

use super::{Component, Ctx, Gauges};
use crate::catalogue::{map_slot_bytes, size_class, LeakClass, Scenario, ScenarioId, Step};
use crate::config::Config;

/// Upper bounds of the latency histogram's buckets, in microseconds.
const LATENCY_BUCKETS_US: [u64; 12] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 1_000_000,
];

/// Most series one `/metrics` answer renders. A leaky run can hold millions
/// (each is ~1 KiB of exposition text); past this the answer says how many it
/// left out rather than build a multi-gigabyte string.
const MAX_RENDERED_SERIES: usize = 10_000;

/// The label of requests that matched no route (fixed path).
const UNMATCHED: &str = "unmatched";

/// The catalogue's trigger route, whose raw path becomes a label when leaking.
const TRIGGER_PREFIX: &str = "/items/";

/// Length of a distinct key as ground truth models it: loadgen's keys
/// (`lg<pid><millis>-<n>`) are about 26 bytes.
const MODEL_KEY_LEN: u64 = 26;

/// One labelled series: counters and a latency histogram, updated lock-free
/// through an `Arc` taken from the registry once per request.
#[derive(Default)]
struct Series {
    requests: AtomicU64,
    /// Responses by status class: index 0 is 1xx ... index 4 is 5xx.
    by_class: [AtomicU64; 5],
    latency_sum_us: AtomicU64,
    /// Per-bucket (not cumulative) counts; the last bucket is "above all bounds".
    latency_buckets: [AtomicU64; LATENCY_BUCKETS_US.len() + 1],
}

impl Series {
    fn record(&self, status: u16, latency_us: u64) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let class = (status / 100).clamp(1, 5) as usize - 1;
        self.by_class[class].fetch_add(1, Ordering::Relaxed);
        self.latency_sum_us.fetch_add(latency_us, Ordering::Relaxed);
        let bucket = LATENCY_BUCKETS_US
            .iter()
            .position(|bound| latency_us <= *bound)
            .unwrap_or(LATENCY_BUCKETS_US.len());
        self.latency_buckets[bucket].fetch_add(1, Ordering::Relaxed);
    }
}

/// The registry and middleware component.
pub struct RequestMetrics {
    ctx: Ctx,
    /// Series by route label, owned by the process-wide registry for the life
    /// of the process (a series is never dropped: a scraper expects counters to
    /// persist). The keys are interned label strings (`Box::leak`): on the
    /// fixed path one per route template, on the leaky path one per distinct
    /// raw path, which is the leak. A `std::sync::Mutex`: held for one lookup
    /// or insert per request, never across `.await`.
    series: Mutex<HashMap<&'static str, Arc<Series>>>,
    /// Series created by the leaky path (raw-path labels).
    raw_series: AtomicU64,
}

impl RequestMetrics {
    pub fn new(ctx: Ctx) -> RequestMetrics {
        RequestMetrics {
            ctx,
            series: Mutex::new(HashMap::new()),
            raw_series: AtomicU64::new(0),
        }
    }

    /// The series `request` is counted in, created if new.
    fn series_for(&self, request: &Request) -> Arc<Series> {
        let template = request
            .extensions()
            .get::<MatchedPath>()
            .map(MatchedPath::as_str)
            .unwrap_or(UNMATCHED);
        if self.ctx.flags.is_on(ScenarioId::LabelCardinality) {
            let raw = request.uri().path();
            let mut series = self.series.lock().expect("series lock");
            if let Some(found) = series.get(raw) {
                return found.clone();
            }
            if self
                .ctx
                .budget
                .try_retain(ScenarioId::LabelCardinality, series_bytes(raw.len() as u64))
            {
                // LEAKY: a new series for every distinct path, its label text
                // leaked for the life of the process; the registry's map keeps
                // the series. Distinct keys make this unbounded.
                let label: &'static str = Box::leak(raw.to_owned().into_boxed_str());
                let created = Arc::new(Series::default());
                series.insert(label, created.clone());
                self.raw_series.fetch_add(1, Ordering::Relaxed);
                return created;
            }
            // Budget spent: count it under its route template below instead.
        }
        // FIXED: the route template. Interning it is bounded by the number of
        // routes (plus "unmatched"), so the map stops growing once every
        // route has been seen.
        let mut series = self.series.lock().expect("series lock");
        if let Some(found) = series.get(template) {
            return found.clone();
        }
        let label: &'static str = Box::leak(template.to_owned().into_boxed_str());
        series.entry(label).or_default().clone()
    }
}

/// The middleware: finds the request's series, runs the request, records it.
async fn record(
    State(metrics): State<Arc<RequestMetrics>>,
    request: Request,
    next: Next,
) -> Response {
    let series = metrics.series_for(&request);
    let started = Instant::now();
    let response = next.run(request).await;
    let latency_us = started.elapsed().as_micros().min(u64::MAX as u128) as u64;
    series.record(response.status().as_u16(), latency_us);
    response
}

/// Escapes a Prometheus label value (backslash, double quote, newline).
fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Component for RequestMetrics {
    fn router(self: Arc<Self>) -> Router {
        Router::new()
    }

    fn gauges(&self, out: &mut Gauges) {
        let series = self.series.lock().expect("series lock").len() as u64;
        out.gauge(
            "label_series",
            series,
            "Request-metrics series (one per route label); each holds a latency histogram.",
        );
        out.variant_gauge(
            "label_series_raw_paths",
            self.raw_series.load(Ordering::Relaxed),
            "Series labelled by a raw request path instead of a route template.",
        );
    }

    fn wrap(self: Arc<Self>, app: Router) -> Router {
        app.layer(middleware::from_fn_with_state(self, record))
    }

    fn render_metrics(&self, out: &mut String) {
        let (snapshot, left_out) = {
            let series = self.series.lock().expect("series lock");
            let mut some: Vec<(&'static str, Arc<Series>)> = series
                .iter()
                .take(MAX_RENDERED_SERIES)
                .map(|(k, v)| (*k, v.clone()))
                .collect();
            some.sort_unstable_by_key(|(label, _)| *label);
            let left_out = series.len() - some.len();
            (some, left_out)
        };
        if left_out > 0 {
            let _ = writeln!(
                out,
                "# leaklab: {left_out} more request series not rendered (label_series counts them all)"
            );
        }
        let _ = writeln!(
            out,
            "# HELP leaklab_http_requests_total Requests answered, by route label and status class.\n# TYPE leaklab_http_requests_total counter"
        );
        for (label, series) in &snapshot {
            let route = escape_label(label);
            for (i, count) in series.by_class.iter().enumerate() {
                let count = count.load(Ordering::Relaxed);
                if count > 0 {
                    let _ = writeln!(
                        out,
                        "leaklab_http_requests_total{{route=\"{route}\",status=\"{}xx\"}} {count}",
                        i + 1
                    );
                }
            }
        }
        let _ = writeln!(
            out,
            "# HELP leaklab_http_request_duration_seconds Time to the response head, by route label.\n# TYPE leaklab_http_request_duration_seconds histogram"
        );
        for (label, series) in &snapshot {
            let route = escape_label(label);
            let mut cumulative = 0;
            for (bound, count) in LATENCY_BUCKETS_US.iter().zip(&series.latency_buckets) {
                cumulative += count.load(Ordering::Relaxed);
                let _ = writeln!(
                    out,
                    "leaklab_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"{}\"}} {cumulative}",
                    *bound as f64 / 1e6
                );
            }
            let total = series.requests.load(Ordering::Relaxed);
            let sum_s = series.latency_sum_us.load(Ordering::Relaxed) as f64 / 1e6;
            let _ = writeln!(
                out,
                "leaklab_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {total}\nleaklab_http_request_duration_seconds_sum{{route=\"{route}\"}} {sum_s}\nleaklab_http_request_duration_seconds_count{{route=\"{route}\"}} {total}"
            );
        }
    }
}

/// Heap bytes a new series with a label of `label_len` bytes costs: its `Arc`
/// cell, the leaked label text, and its map slot (`&str` 16 + `Arc` 8).
fn series_bytes(label_len: u64) -> u64 {
    size_class(16 + std::mem::size_of::<Series>() as u64)
        + size_class(label_len)
        + map_slot_bytes(16 + 8)
}

/// The `label-cardinality` catalogue entry.
pub fn scenario(_c: &Config) -> Scenario {
    // Per request on a distinct key: one new series whose label is the raw
    // path `/items/<key>`.
    let bytes = series_bytes(TRIGGER_PREFIX.len() as u64 + MODEL_KEY_LEN);
    Scenario::new(
        ScenarioId::LabelCardinality,
        LeakClass::Retention,
        "metrics",
        vec![Step::get("/items/{key}")],
    )
    .retains(bytes)
    .gauge("label_series")
    .paths(
        "the request-metrics middleware labels each series by the raw path, so every distinct key adds a histogram series and its leaked &'static str label to the registry",
        "label by the matched route template (MatchedPath, e.g. /items/{key}): one series per route",
    )
}
