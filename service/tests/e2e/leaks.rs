//! Ground-truth tests of the platform's four scenarios: each body runs against
//! the leaky and the fixed path and the two tests assert opposite outcomes.

use std::time::Duration;

use http::{Method, StatusCode};
use serde_json::Value;

use crate::helpers::{key, within_pct, Service};

const MIB: i64 = 1 << 20;

/// What driving a scenario did to the service between two readings.
struct Growth {
    allocated: i64,
    alive_tasks: i64,
    before: Value,
    after: Value,
}

impl Growth {
    fn gauge(&self, name: &str) -> i64 {
        let read = |m: &Value| {
            m["components"][name]
                .as_i64()
                .unwrap_or_else(|| panic!("no gauge {name}"))
        };
        read(&self.after) - read(&self.before)
    }
}

/// Ground truth of `id` from the service's own catalogue.
async fn truth(svc: &Service, id: &str) -> Value {
    let catalogue = svc.get("/admin/scenarios").await.json();
    catalogue
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == id)
        .cloned()
        .unwrap_or_else(|| panic!("{id} not in catalogue"))
}

fn items(run: &'static str) -> impl Fn(usize) -> (Method, String, Vec<u8>) {
    move |i| (Method::GET, format!("/items/{}", key(run, i)), Vec::new())
}

/// Warms up, reads memory, drives `n` requests, reads again. With `settle`,
/// waits (bounded) for alive tasks to fall back to the starting count first.
async fn grow<F>(svc: &Service, warmup: usize, n: usize, settle: bool, make: F) -> Growth
where
    F: Fn(usize) -> (Method, String, Vec<u8>),
{
    svc.drive(warmup, 8, &make).await;
    let idle_tasks = |m: &Value| m["alive_tasks"].as_i64().unwrap() <= 4;
    let before = svc.await_memory(Duration::from_secs(10), idle_tasks).await;
    svc.drive(n, 8, |i| make(warmup + i)).await;
    let after = if settle {
        let limit = before["alive_tasks"].as_i64().unwrap();
        svc.await_memory(Duration::from_secs(10), |m| {
            m["alive_tasks"].as_i64().unwrap() <= limit
        })
        .await
    } else {
        svc.memory().await
    };
    Growth {
        allocated: after["allocated"].as_i64().unwrap() - before["allocated"].as_i64().unwrap(),
        alive_tasks: after["alive_tasks"].as_i64().unwrap()
            - before["alive_tasks"].as_i64().unwrap(),
        before,
        after,
    }
}

// ---- unbounded-cache --------------------------------------------------------

const CACHE_N: usize = 2000;

/// The cache scenario: 2000 distinct keys through `GET /items/{key}` with a 4 MiB
/// bounded cache, leak on or off.
async fn cache_run(leak: bool) -> (Growth, f64) {
    let mut args = vec!["--cache-capacity", "4MiB"];
    if leak {
        args.extend(["--leak", "unbounded-cache"]);
    }
    let svc = Service::start(&args);
    let truth = truth(&svc, "unbounded-cache").await["bytes_per_request"]
        .as_f64()
        .unwrap();
    (grow(&svc, 200, CACHE_N, true, items("cache")).await, truth)
}

#[tokio::test]
async fn leaky_cache_retains_its_ground_truth_for_every_distinct_key() {
    let (growth, truth) = cache_run(true).await;
    let expected = truth * CACHE_N as f64;
    assert!(
        within_pct(growth.allocated as f64, expected, 25.0),
        "allocated grew {} bytes, expected {expected} (±25%)",
        growth.allocated
    );
    assert_eq!(growth.gauge("cache_unbounded_entries"), CACHE_N as i64);
}

#[tokio::test]
async fn fixed_cache_keeps_the_floor_flat_under_distinct_keys() {
    let (growth, truth) = cache_run(false).await;
    // 2000 values are ~20 MiB; the bounded cache holds at most 4 MiB of them.
    assert!(
        growth.allocated < 6 * MIB,
        "allocated grew {} bytes past a 4 MiB cache",
        growth.allocated
    );
    assert!((growth.allocated as f64) < 0.25 * truth * CACHE_N as f64);
    assert!(
        growth.after["components"]["cache_bounded_weight_bytes"]
            .as_i64()
            .unwrap()
            <= 4 * MIB
    );
    assert_eq!(growth.gauge("cache_unbounded_entries"), 0);
}

// ---- task-leak ----------------------------------------------------------------

const TASK_N: usize = 2000;

/// The fan-out scenario. A 1 MiB cache is full after warm-up, so what grows is
/// what the fan-out leaves behind.
async fn task_run(leak: bool) -> (Growth, f64) {
    let mut args = vec!["--cache-capacity", "1MiB"];
    if leak {
        args.extend(["--leak", "task-leak"]);
    }
    let svc = Service::start(&args);
    let truth = truth(&svc, "task-leak").await["bytes_per_request"]
        .as_f64()
        .unwrap();
    (grow(&svc, 300, TASK_N, !leak, items("tasks")).await, truth)
}

#[tokio::test]
async fn leaky_fanout_leaves_one_parked_task_per_request() {
    let (growth, truth) = task_run(true).await;
    assert!(
        within_pct(growth.alive_tasks as f64, TASK_N as f64, 25.0),
        "alive tasks rose by {}, expected {TASK_N} (±25%)",
        growth.alive_tasks
    );
    let expected = truth * TASK_N as f64;
    assert!(
        within_pct(growth.allocated as f64, expected, 25.0),
        "allocated grew {} bytes, expected {expected} (±25%)",
        growth.allocated
    );
    assert!(within_pct(
        growth.gauge("fanout_collectors") as f64,
        TASK_N as f64,
        25.0
    ));
}

#[tokio::test]
async fn fixed_fanout_returns_to_the_baseline_task_count() {
    let (growth, truth) = task_run(false).await;
    assert!(
        growth.alive_tasks <= 0,
        "alive tasks rose by {} on the fixed path",
        growth.alive_tasks
    );
    assert!(
        (growth.allocated as f64) < 0.25 * truth * TASK_N as f64,
        "allocated grew {}",
        growth.allocated
    );
    assert_eq!(growth.after["components"]["fanout_collectors"], 0);
}

#[tokio::test]
async fn task_census_names_the_collectors_spawn_site_with_none_finished() {
    let svc = Service::start(&["--leak", "task-leak"]);
    svc.drive(50, 8, items("census")).await;
    let census = svc.get("/debug/tasks?format=json").await.json();
    assert_eq!(census["schema"], "leaklab.tasks/v1");
    let top = &census["sites"][0];
    assert!(top["alive"].as_i64().unwrap() >= 50, "top site: {top}");
    assert_eq!(top["finished"], 0, "top site: {top}");
    assert!(
        top["site"]
            .as_str()
            .unwrap()
            .contains("components/fanout.rs"),
        "top site: {top}"
    );
    assert!(top["oldest_s"].as_f64().unwrap() >= top["median_age_s"].as_f64().unwrap());
}

#[tokio::test]
async fn await_point_dump_is_opt_in_and_carries_its_warning() {
    let svc = Service::start(&["--leak", "task-leak"]);
    svc.drive(50, 8, items("dump")).await;
    let reply = svc.get("/debug/tasks?mode=await&format=json").await;
    assert_eq!(reply.status, StatusCode::OK);
    let dump = reply.json();
    assert!(
        dump["warning"].as_str().unwrap().contains("wedge"),
        "{dump}"
    );
    let top = &dump["groups"][0];
    assert!(top["count"].as_i64().unwrap() >= 50, "top group: {top}");
    assert!(
        top["await_point"]
            .as_str()
            .unwrap()
            .contains("fanout::collect"),
        "top group: {top}"
    );
}

// ---- churn (negative control) -------------------------------------------------

const CHURN_N: usize = 400;

async fn churn_run(fresh_buffers: bool) -> Growth {
    let args: &[&str] = if fresh_buffers {
        &["--leak", "churn"]
    } else {
        &[]
    };
    let svc = Service::start(args);
    grow(&svc, 50, CHURN_N, true, |i| {
        (
            Method::GET,
            format!("/churn/{}", key("churn", i)),
            Vec::new(),
        )
    })
    .await
}

#[tokio::test]
async fn churn_allocates_a_buffer_per_request_and_keeps_the_floor_flat() {
    let growth = churn_run(true).await;
    assert!(
        growth.allocated.abs() < 2 * MIB,
        "allocated moved {} bytes",
        growth.allocated
    );
    assert_eq!(growth.gauge("churn_allocations"), CHURN_N as i64);
}

#[tokio::test]
async fn pooled_churn_allocates_almost_nothing_and_keeps_the_floor_flat() {
    let growth = churn_run(false).await;
    assert!(
        growth.allocated.abs() < 2 * MIB,
        "allocated moved {} bytes",
        growth.allocated
    );
    assert!(
        growth.gauge("churn_allocations") <= 8,
        "pool missed: {}",
        growth.gauge("churn_allocations")
    );
}

// ---- bounded-cache (negative control) -----------------------------------------

/// Two rounds of 1500 distinct keys (~15 MiB each) against a 32 MiB cache, with
/// the small-capacity control on or off. Returns the second round's growth.
async fn bounded_run(small: bool) -> Growth {
    let mut args = vec!["--cache-capacity", "32MiB"];
    if small {
        args.extend(["--leak", "bounded-cache"]);
    }
    let svc = Service::start(&args);
    grow(&svc, 1500, 1500, true, items("bounded")).await
}

#[tokio::test]
async fn a_full_bounded_cache_stays_at_its_ceiling() {
    let growth = bounded_run(true).await;
    assert!(
        growth.allocated.abs() < 2 * MIB,
        "allocated moved {} bytes at the ceiling",
        growth.allocated
    );
    assert!(
        growth.after["components"]["cache_bounded_weight_bytes"]
            .as_i64()
            .unwrap()
            <= 4 * MIB + MIB / 2
    );
}

#[tokio::test]
async fn a_bounded_cache_below_its_ceiling_still_grows() {
    let growth = bounded_run(false).await;
    // Below capacity the cache keeps what it is given (~15 MiB more): high, but bounded.
    assert!(
        growth.allocated > 10 * MIB,
        "allocated grew only {} bytes",
        growth.allocated
    );
    assert!(
        growth.after["components"]["cache_bounded_weight_bytes"]
            .as_i64()
            .unwrap()
            <= 32 * MIB
    );
}

#[tokio::test]
async fn leaks_come_from_the_environment_and_an_empty_list_turns_none_on() {
    let svc = Service::start_env(&[], &[("LEAKLAB_LEAKS", "task-leak,unbounded-cache")]);
    let mut on: Vec<String> = svc.memory().await["leaks_on"]
        .as_array()
        .expect("leaks_on")
        .iter()
        .map(|v| v.as_str().expect("an id").to_owned())
        .collect();
    on.sort();
    assert_eq!(on, ["task-leak", "unbounded-cache"]);
    // What compose passes for an empty knob (`LEAKLAB_LEAKS: ""`): no leak.
    for empty in ["", " "] {
        let svc = Service::start_env(&[], &[("LEAKLAB_LEAKS", empty), ("LEAKLAB_FIXES", empty)]);
        assert_eq!(svc.memory().await["leaks_on"], serde_json::json!([]));
    }
}
