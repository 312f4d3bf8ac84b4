//! `vec-regrowth` (merge handler), a negative control: one body, both variants.
//!
//! Distinct keys go through the recipe (`POST /merge/{key}`, 100 000 values
//! merged). Either way the merged vector is freed with the request, so the
//! `allocated` floor is flat; what differs is the allocation count: ~16
//! reallocations per request grown push by push, one when pre-sized.

use std::time::Duration;

use serde_json::Value;

use crate::helpers::{delta, key, recipe_request, Service};

const ID: &str = "vec-regrowth";
const MERGES: usize = 60;
const WARMUP: usize = 6;
const MIB: i64 = 1 << 20;

struct Run {
    before: Value,
    after: Value,
}

async fn merge_run(regrowth: bool) -> Run {
    let args: &[&str] = if regrowth { &["--leak", ID] } else { &[] };
    let svc = Service::start(args);
    let scenario = svc.scenario(ID).await;
    assert_eq!(scenario["bytes_per_request"], 0);
    assert_eq!(scenario["negative_control"], true);
    let step = scenario["recipe"][0].clone();
    let request = |i: usize| recipe_request(&step, &key("merge", i));
    svc.drive(WARMUP, 2, request).await;
    let before = svc.settled_memory(Duration::from_secs(5), 64 << 10).await;
    svc.drive(MERGES, 2, |i| request(WARMUP + i)).await;
    let after = svc.settled_memory(Duration::from_secs(5), 64 << 10).await;
    Run { before, after }
}

#[tokio::test]
async fn regrowing_merge_reallocates_often_and_keeps_the_floor_flat() {
    let run = merge_run(true).await;
    let heap = delta(&run.before, &run.after, "/allocated");
    let reallocs = delta(&run.before, &run.after, "/components/merge_reallocations");
    eprintln!("{ID} regrowth: allocated moved {heap}; {reallocs} allocations for {MERGES} merges");
    assert!(heap.abs() < 2 * MIB, "allocated moved {heap} bytes");
    assert!(
        reallocs >= 10 * MERGES as i64,
        "{reallocs} allocations for {MERGES} merges grown push by push"
    );
}

#[tokio::test]
async fn presized_merge_allocates_once_and_keeps_the_floor_flat() {
    let run = merge_run(false).await;
    let heap = delta(&run.before, &run.after, "/allocated");
    let reallocs = delta(&run.before, &run.after, "/components/merge_reallocations");
    eprintln!("{ID} presized: allocated moved {heap}; {reallocs} allocations for {MERGES} merges");
    assert!(heap.abs() < 2 * MIB, "allocated moved {heap} bytes");
    assert_eq!(
        reallocs, MERGES as i64,
        "one allocation per pre-sized merge"
    );
}
