//! Ground truth of `map-no-shrink` (sessions): one body, both paths.
//!
//! A triggering request is the recipe's two steps: a burst of 16384 sessions
//! opened (`PUT /sessions/{key}?burst=16384`), then closed (`DELETE`). Leaky:
//! the first burst grows the table to the catalogue's high-water mark and the
//! empty map keeps it (capacity far above length); later bursts add nothing,
//! a plateau. Fixed: the table is shrunk after the deletes. Both warm up on
//! the fixed path, then set the flag, so the baseline has no table in it.

use std::time::Duration;

use http::StatusCode;
use serde_json::Value;

use crate::helpers::{delta, key, recipe_request, within_pct, Service};

const ID: &str = "map-no-shrink";
/// Triggering requests after the first: the plateau must hold through them.
const MORE: usize = 4;

struct Run {
    high_water: f64,
    before: Value,
    /// After the first triggering request.
    first: Value,
    /// After `MORE` more.
    after: Value,
}

async fn sessions_run(leak: bool) -> Run {
    let svc = Service::start(&[]);
    let scenario = svc.scenario(ID).await;
    let high_water = scenario["high_water_bytes"].as_f64().unwrap();
    let recipe = scenario["recipe"].as_array().unwrap().clone();
    let trigger = |i: usize| {
        let svc = &svc;
        let recipe = &recipe;
        async move {
            for step in recipe {
                let (method, path, body) = recipe_request(step, &key("sessions", i));
                let reply = svc.send(method, &path, body, &[]).await;
                assert_eq!(reply.status, StatusCode::OK, "{path}: {:?}", reply.body);
            }
        }
    };
    // Warm-up: the same bursts on the fixed path (which leaves no table), so
    // connections and the allocator's caches are in the baseline; then the
    // flag for the measured bursts.
    for i in 0..2 {
        trigger(1000 + i).await;
    }
    svc.set_flag(ID, leak).await;
    let before = svc.settled_memory(Duration::from_secs(5), 16 << 10).await;
    trigger(0).await;
    let first = svc.settled_memory(Duration::from_secs(5), 16 << 10).await;
    for i in 1..=MORE {
        trigger(i).await;
    }
    let after = svc.settled_memory(Duration::from_secs(5), 16 << 10).await;
    Run {
        high_water,
        before,
        first,
        after,
    }
}

#[tokio::test]
async fn leaky_session_map_keeps_its_burst_capacity_then_stays_flat() {
    let run = sessions_run(true).await;
    let rose = delta(&run.before, &run.first, "/allocated");
    let then = delta(&run.first, &run.after, "/allocated");
    let capacity = run.after["components"]["sessions_capacity"]
        .as_i64()
        .unwrap();
    eprintln!(
        "{ID} leaky: allocated rose {rose} (high water {}), then {then}; capacity {capacity}",
        run.high_water
    );
    assert!(
        within_pct(rose as f64, run.high_water, 25.0),
        "allocated rose {rose} bytes after the first burst, expected {} (±25%)",
        run.high_water
    );
    assert!(
        (then.abs() as f64) < 0.25 * run.high_water,
        "allocated moved {then} bytes over {MORE} more bursts: not a plateau"
    );
    assert_eq!(run.after["components"]["sessions_len"], 0);
    assert!(capacity >= 16384, "capacity {capacity} after a 16384 burst");
    assert_eq!(run.first["components"]["sessions_capacity"], capacity);
}

#[tokio::test]
async fn fixed_session_map_gives_its_capacity_back() {
    let run = sessions_run(false).await;
    let grew = delta(&run.before, &run.after, "/allocated");
    eprintln!(
        "{ID} fixed: allocated grew {grew} (leaky high water {})",
        run.high_water
    );
    assert!(
        (grew as f64) < 0.25 * run.high_water,
        "allocated grew {grew} bytes on the fixed path"
    );
    assert_eq!(run.after["components"]["sessions_len"], 0);
    assert_eq!(run.after["components"]["sessions_capacity"], 0);
    assert_eq!(run.first["components"]["sessions_capacity"], 0);
}
