//! Ground truth of `timer-per-request` (request watchdog): one body, both paths.
//!
//! Distinct keys go through the recipe (`GET /ping/{key}`, the cheapest
//! watched route). Leaky: every request leaves a watchdog task parked in its
//! 300 s sleep with the 2 KiB request context, so alive tasks grow by one and
//! `allocated` by the catalogue's bytes per request, and the task census counts
//! them at the watchdog's spawn site. Fixed: the watchdog is aborted with its
//! request; tasks and heap return to the baseline.

use std::time::Duration;

use serde_json::Value;

use crate::helpers::{delta, key, recipe_request, within_pct, Service};

const ID: &str = "timer-per-request";
const REQUESTS: usize = 2000;
const WARMUP: usize = 100;

struct Run {
    svc: Service,
    truth: f64,
    before: Value,
    after: Value,
}

async fn watchdog_run(leak: bool, requests: usize) -> Run {
    let args: &[&str] = if leak { &["--leak", ID] } else { &[] };
    let svc = Service::start(args);
    let scenario = svc.scenario(ID).await;
    let truth = scenario["bytes_per_request"].as_f64().unwrap();
    let step = scenario["recipe"][0].clone();
    let request = |i: usize| recipe_request(&step, &key("watchdog", i));
    svc.drive(WARMUP, 8, request).await;
    let before = svc.settled_memory(Duration::from_secs(5), 16 << 10).await;
    svc.drive(requests, 8, |i| request(WARMUP + i)).await;
    let baseline_tasks = before["alive_tasks"].as_i64().unwrap();
    let after = if leak {
        svc.settled_memory(Duration::from_secs(5), 16 << 10).await
    } else {
        // Aborted watchdogs end on the runtime's next turn: await it. Both
        // numbers: a client connection task ending can bring `alive_tasks`
        // back to the baseline while the last watchdog is still being dropped.
        svc.await_memory(Duration::from_secs(5), |m| {
            m["alive_tasks"].as_i64().unwrap() <= baseline_tasks
                && m["components"]["watchdog_tasks"] == 0
        })
        .await
    };
    Run {
        svc,
        truth,
        before,
        after,
    }
}

#[tokio::test]
async fn leaky_watchdog_leaves_one_sleeping_task_per_request() {
    let run = watchdog_run(true, REQUESTS).await;
    let tasks = delta(&run.before, &run.after, "/alive_tasks");
    let grew = delta(&run.before, &run.after, "/allocated");
    let expected = run.truth * REQUESTS as f64;
    eprintln!("{ID} leaky: tasks +{tasks}, allocated grew {grew}, expected {expected}");
    assert!(
        within_pct(tasks as f64, REQUESTS as f64, 25.0),
        "alive tasks rose by {tasks}, expected {REQUESTS} (±25%)"
    );
    assert!(
        within_pct(grew as f64, expected, 25.0),
        "allocated grew {grew} bytes over {REQUESTS} requests, expected {expected} (±25%)"
    );
    assert_eq!(
        delta(&run.before, &run.after, "/components/watchdog_tasks"),
        REQUESTS as i64
    );
    // The sampler's own reads are not watched: polling adds no task.
    let polled = run
        .svc
        .await_memory(Duration::from_secs(1), |_| false)
        .await;
    assert_eq!(
        delta(&run.after, &polled, "/alive_tasks"),
        0,
        "/debug/memory leaked watchdogs"
    );
}

#[tokio::test]
async fn fixed_watchdog_ends_with_its_request() {
    let run = watchdog_run(false, REQUESTS).await;
    let tasks = delta(&run.before, &run.after, "/alive_tasks");
    let grew = delta(&run.before, &run.after, "/allocated");
    let leaky = run.truth * REQUESTS as f64;
    eprintln!("{ID} fixed: tasks +{tasks}, allocated grew {grew} (leaky would be {leaky})");
    assert!(tasks <= 0, "alive tasks rose by {tasks} on the fixed path");
    assert!(
        (grew as f64) < 0.1 * leaky,
        "allocated grew {grew} bytes on the fixed path"
    );
    assert_eq!(run.after["components"]["watchdog_tasks"], 0);
}

/// Live tasks the census counts at the watchdog's spawn site, and the top site.
async fn parked_watchdogs(leak: bool) -> (i64, String) {
    let run = watchdog_run(leak, 60).await;
    let census = run.svc.get("/debug/tasks?format=json").await.json();
    let sites = census["sites"].as_array().unwrap();
    let parked = sites
        .iter()
        .filter(|s| {
            s["site"]
                .as_str()
                .unwrap()
                .contains("components/watchdog.rs")
        })
        .map(|s| s["alive"].as_i64().unwrap())
        .sum();
    let top = sites[0]["site"].as_str().unwrap().to_owned();
    (parked, top)
}

#[tokio::test]
async fn task_census_counts_leaked_watchdogs_at_their_spawn_site() {
    let (parked, top) = parked_watchdogs(true).await;
    assert!(parked >= 60, "{parked} watchdogs alive, top site {top}");
    assert!(
        top.contains("components/watchdog.rs"),
        "top site is not the watchdog's: {top}"
    );
}

#[tokio::test]
async fn task_census_shows_no_live_watchdog_on_the_fixed_path() {
    let (parked, top) = parked_watchdogs(false).await;
    assert_eq!(
        parked, 0,
        "watchdogs alive on the fixed path; top site {top}"
    );
}
