//! Ground truth of `unbounded-queue` (job worker): one body, both paths.
//!
//! Jobs are posted through the catalogue's recipe (`POST /jobs`) far faster
//! than the worker drains them (20 jobs/s). Leaky: every job is accepted into
//! an unbounded channel and waits there with its payload, so `allocated`
//! grows by the catalogue's bytes per request. Fixed: the bounded queue fills
//! to its capacity, the rest get 429, and the floor stays flat.

use std::time::Duration;

use futures_util::stream::{self, StreamExt};
use http::StatusCode;
use serde_json::Value;

use crate::helpers::{delta, key, recipe_request, within_pct, Service};

const ID: &str = "unbounded-queue";
/// Jobs per run: 5000 × ~4.1 KiB ≈ 20 MiB on the leaky path.
const JOBS: usize = 5000;

struct Run {
    truth: f64,
    accepted: usize,
    rejected: usize,
    before: Value,
    after: Value,
}

async fn worker_run(leak: bool) -> Run {
    let args: &[&str] = if leak { &["--leak", ID] } else { &[] };
    let svc = Service::start(args);
    let scenario = svc.scenario(ID).await;
    let truth = scenario["bytes_per_request"].as_f64().unwrap();
    let step = scenario["recipe"][0].clone();
    // Warm-up: a few jobs the worker drains at once, and the connections.
    svc.drive(8, 8, |i| recipe_request(&step, &key("queue-warm", i)))
        .await;
    let before = svc
        .await_memory(Duration::from_secs(5), |m| {
            m["components"]["queue_depth"] == 0
        })
        .await;
    let statuses: Vec<StatusCode> = stream::iter(0..JOBS)
        .map(|i| {
            let (method, path, body) = recipe_request(&step, &key("queue", i));
            let svc = &svc;
            async move { svc.send(method, &path, body, &[]).await.status }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    let after = svc.settled_memory(Duration::from_secs(5), 64 << 10).await;
    let accepted = statuses
        .iter()
        .filter(|s| **s == StatusCode::ACCEPTED)
        .count();
    let rejected = statuses
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert_eq!(accepted + rejected, JOBS, "other statuses: {statuses:?}");
    Run {
        truth,
        accepted,
        rejected,
        before,
        after,
    }
}

#[tokio::test]
async fn leaky_queue_accepts_every_job_and_holds_them_all_in_memory() {
    let run = worker_run(true).await;
    let grew = delta(&run.before, &run.after, "/allocated");
    let expected = run.truth * JOBS as f64;
    eprintln!("{ID} leaky: allocated grew {grew}, expected {expected}");
    assert_eq!(run.accepted, JOBS);
    assert!(
        within_pct(grew as f64, expected, 25.0),
        "allocated grew {grew} bytes over {JOBS} jobs, expected {expected} (±25%)"
    );
    // The worker drains 20 jobs/s meanwhile: almost all are still waiting.
    let depth = run.after["components"]["queue_depth"].as_i64().unwrap();
    let done = delta(&run.before, &run.after, "/components/jobs_done");
    assert_eq!(depth + done, JOBS as i64, "depth {depth}, done {done}");
    assert!(depth > (JOBS as i64) * 9 / 10, "queue depth {depth}");
}

#[tokio::test]
async fn fixed_queue_pushes_back_with_429_and_keeps_the_floor_flat() {
    let run = worker_run(false).await;
    let grew = delta(&run.before, &run.after, "/allocated");
    let leak = run.truth * JOBS as f64;
    eprintln!(
        "{ID} fixed: allocated grew {grew}, the leak would be {leak}; {} accepted, {} got 429",
        run.accepted, run.rejected
    );
    assert!(
        (grew as f64) < 0.25 * leak,
        "allocated grew {grew} bytes over {JOBS} jobs (the leak is {leak})"
    );
    assert!(run.rejected > JOBS / 2, "only {} got 429", run.rejected);
    let done = delta(&run.before, &run.after, "/components/jobs_done") as usize;
    let capacity = run.after["components"]["queue_capacity"].as_u64().unwrap() as usize;
    assert!(
        run.accepted <= capacity + done,
        "{} accepted past a queue of {capacity} ({done} done)",
        run.accepted
    );
    assert!(run.after["components"]["queue_depth"].as_u64().unwrap() <= capacity as u64);
}
