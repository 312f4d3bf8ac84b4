//! Ground truth of `label-cardinality` (request metrics): one body, both paths.
//!
//! Distinct keys go through the catalogue's recipe (`GET /items/{key}`), with
//! a 1 MiB item cache that is full after the warm-up, so what grows is the
//! metrics registry. Leaky: the raw path is the route label, one new series
//! per key, and `allocated` grows by the catalogue's bytes per request. Fixed:
//! the route template is the label, and the series count stays put.

use std::time::Duration;

use serde_json::Value;

use crate::helpers::{delta, key, recipe_request, within_pct, Service};

const ID: &str = "label-cardinality";
/// Requests per run: 40,000 series of ~280 bytes ≈ 10.6 MiB on the leaky path.
const REQUESTS: usize = 40_000;
const WARMUP: usize = 400;

/// Keys as long as loadgen's (26 bytes), the length ground truth models.
fn label_key(i: usize) -> String {
    key("label-cardinality", i)
}

struct Run {
    svc: Service,
    truth: f64,
    before: Value,
    after: Value,
}

async fn metrics_run(leak: bool) -> Run {
    let mut args = vec!["--cache-capacity", "1MiB"];
    if leak {
        args.extend(["--leak", ID]);
    }
    let svc = Service::start(&args);
    let scenario = svc.scenario(ID).await;
    let truth = scenario["bytes_per_request"].as_f64().unwrap();
    let step = scenario["recipe"][0].clone();
    let request = |i: usize| recipe_request(&step, &label_key(i));
    svc.drive(WARMUP, 8, request).await;
    let before = svc.settled_memory(Duration::from_secs(5), 32 << 10).await;
    svc.drive(REQUESTS, 8, |i| request(WARMUP + i)).await;
    let after = svc.settled_memory(Duration::from_secs(5), 32 << 10).await;
    Run {
        svc,
        truth,
        before,
        after,
    }
}

#[tokio::test]
async fn leaky_metrics_add_a_labelled_series_for_every_distinct_key() {
    let run = metrics_run(true).await;
    let grew = delta(&run.before, &run.after, "/allocated");
    let expected = run.truth * REQUESTS as f64;
    eprintln!("{ID} leaky: allocated grew {grew}, expected {expected}");
    assert!(
        within_pct(grew as f64, expected, 25.0),
        "allocated grew {grew} bytes over {REQUESTS} requests, expected {expected} (±25%)"
    );
    assert_eq!(
        delta(&run.before, &run.after, "/components/label_series"),
        REQUESTS as i64
    );
    // /metrics renders a capped number of series and says how many it left out.
    let metrics = String::from_utf8(run.svc.get("/metrics").await.body.to_vec()).unwrap();
    assert!(
        metrics.contains("leaklab_http_requests_total{route=\"/items/label-cardinality-"),
        "no series labelled by a raw path"
    );
    assert!(
        metrics.contains("more request series not rendered"),
        "{} series rendered in full",
        run.after["components"]["label_series"]
    );
}

#[tokio::test]
async fn fixed_metrics_label_by_route_template_and_keep_the_floor_flat() {
    let run = metrics_run(false).await;
    let grew = delta(&run.before, &run.after, "/allocated");
    let leak = run.truth * REQUESTS as f64;
    eprintln!("{ID} fixed: allocated grew {grew}, the leak would be {leak}");
    assert!(
        (grew as f64) < 0.25 * leak,
        "allocated grew {grew} bytes over {REQUESTS} requests (the leak is {leak})"
    );
    assert_eq!(
        delta(&run.before, &run.after, "/components/label_series"),
        0
    );
    let metrics = String::from_utf8(run.svc.get("/metrics").await.body.to_vec()).unwrap();
    let line = format!(
        "leaklab_http_requests_total{{route=\"/items/{{key}}\",status=\"2xx\"}} {}",
        WARMUP + REQUESTS
    );
    assert!(metrics.contains(&line), "no line {line}");
}
