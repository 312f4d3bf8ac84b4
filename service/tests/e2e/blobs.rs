//! Ground truth of `offheap-mmap` (blob scratch space): one body, both paths.
//!
//! Distinct keys go through the recipe (`PUT /blobs/{key}` with a 16 KiB
//! body). Leaky: every blob keeps a touched 256 KiB anonymous map, so RSS
//! grows by the catalogue's RSS per request and the mapping count by two (the
//! slot and its guard page), while jemalloc's `allocated` stays flat. Fixed:
//! the registry keeps the 16 newest maps and unmaps the rest.

use std::time::Duration;

use serde_json::Value;

use crate::helpers::{delta, key, recipe_request, within_pct, Service};

const ID: &str = "offheap-mmap";
const BLOBS: usize = 200;
/// More than the fixed registry holds (16), so it is full before the baseline.
const WARMUP: usize = 24;
const MIB: i64 = 1 << 20;

struct Run {
    rss_truth: f64,
    before: Value,
    after: Value,
}

async fn blobs_run(leak: bool) -> Run {
    let args: &[&str] = if leak { &["--leak", ID] } else { &[] };
    let svc = Service::start(args);
    let scenario = svc.scenario(ID).await;
    let rss_truth = scenario["rss_bytes_per_request"].as_f64().unwrap();
    let step = scenario["recipe"][0].clone();
    let request = |i: usize| recipe_request(&step, &key("blobs", i));
    svc.drive(WARMUP, 4, request).await;
    let before = svc.settled_memory(Duration::from_secs(5), 64 << 10).await;
    svc.drive(BLOBS, 4, |i| request(WARMUP + i)).await;
    let after = svc.settled_memory(Duration::from_secs(5), 64 << 10).await;
    Run {
        rss_truth,
        before,
        after,
    }
}

#[tokio::test]
async fn leaky_blob_registry_grows_rss_and_mappings_outside_the_heap() {
    let run = blobs_run(true).await;
    let rss = delta(&run.before, &run.after, "/rss");
    let maps = delta(&run.before, &run.after, "/maps");
    let heap = delta(&run.before, &run.after, "/allocated");
    let expected = run.rss_truth * BLOBS as f64;
    eprintln!("{ID} leaky: rss grew {rss}, expected {expected}; maps +{maps}; allocated {heap}");
    assert!(
        within_pct(rss as f64, expected, 25.0),
        "RSS grew {rss} bytes over {BLOBS} blobs, expected {expected} (±25%)"
    );
    assert!(
        maps >= BLOBS as i64 && maps <= 2 * BLOBS as i64 + 16,
        "mappings grew by {maps} over {BLOBS} blobs (expected ~2 each)"
    );
    assert!(
        heap.abs() < 2 * MIB,
        "allocated moved {heap} bytes: the maps should be invisible to jemalloc"
    );
    assert_eq!(
        delta(&run.before, &run.after, "/components/mmap_regions"),
        BLOBS as i64
    );
}

#[tokio::test]
async fn fixed_blob_registry_unmaps_the_oldest() {
    let run = blobs_run(false).await;
    let rss = delta(&run.before, &run.after, "/rss");
    let maps = delta(&run.before, &run.after, "/maps");
    let heap = delta(&run.before, &run.after, "/allocated");
    let leaky = run.rss_truth * BLOBS as f64;
    eprintln!(
        "{ID} fixed: rss grew {rss} (leaky would be {leaky}); maps +{maps}; allocated {heap}"
    );
    assert!(
        (rss as f64) < 0.1 * leaky,
        "RSS grew {rss} bytes on the fixed path"
    );
    assert!(maps < 16, "mappings grew by {maps} on the fixed path");
    assert!(heap.abs() < 2 * MIB, "allocated moved {heap} bytes");
    assert_eq!(run.after["components"]["mmap_regions"], 16);
}
