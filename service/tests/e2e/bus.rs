//! Ground truth of `lapsed-listener` (event bus): one body, both paths.
//!
//! Distinct topics are long-polled through the catalogue's recipe
//! (`GET /events/{key}`), each poll timing out. Leaky: every poll leaves its
//! subscriber (and 4 KiB inbox) registered on the bus, so `allocated` grows by
//! the catalogue's bytes per request. Fixed: the subscription guard
//! unregisters it, and the floor stays flat.

use http::Method;

use crate::helpers::{delta, key, recipe_run, within_pct, RecipeRun, Service};

const ID: &str = "lapsed-listener";
/// Polls per run: 2500 × ~4.3 KiB ≈ 10.6 MiB on the leaky path.
const POLLS: usize = 2500;
const WARMUP: usize = 200;
/// Polls in flight: each waits out the 20 ms poll timeout.
const CONCURRENCY: usize = 32;

async fn bus_run(leak: bool) -> RecipeRun {
    recipe_run(ID, leak, "lapsed-listen", WARMUP, POLLS, CONCURRENCY).await
}

#[tokio::test]
async fn leaky_bus_keeps_a_subscriber_for_every_timed_out_poll() {
    let run = bus_run(true).await;
    let grew = delta(&run.before, &run.after, "/allocated");
    let expected = run.truth * POLLS as f64;
    eprintln!("{ID} leaky: allocated grew {grew}, expected {expected}");
    assert!(
        within_pct(grew as f64, expected, 25.0),
        "allocated grew {grew} bytes over {POLLS} polls, expected {expected} (±25%)"
    );
    assert_eq!(
        delta(&run.before, &run.after, "/components/bus_subscribers"),
        POLLS as i64
    );
}

#[tokio::test]
async fn fixed_bus_unregisters_every_subscriber_when_its_poll_ends() {
    let run = bus_run(false).await;
    let grew = delta(&run.before, &run.after, "/allocated");
    let leak = run.truth * POLLS as f64;
    eprintln!("{ID} fixed: allocated grew {grew}, the leak would be {leak}");
    assert!(
        (grew as f64) < 0.25 * leak,
        "allocated grew {grew} bytes over {POLLS} polls (the leak is {leak})"
    );
    assert_eq!(run.after["components"]["bus_subscribers"], 0);
    assert_eq!(run.after["components"]["bus_topics"], 0);
}

#[tokio::test]
async fn a_published_event_wakes_the_long_poll_on_its_topic() {
    let svc = Service::start(&[]);
    let topic = key("bus-wake", 0);
    let path = format!("/events/{topic}");
    let poll = svc.get(&path);
    let publish = async {
        // The poll registers within its 20 ms window; publish until it has.
        for _ in 0..200 {
            let reply = svc.send(Method::POST, &path, b"ping".to_vec(), &[]).await;
            if reply.json()["delivered"] == 1 {
                return true;
            }
            tokio::task::yield_now().await;
        }
        false
    };
    let (polled, delivered) = tokio::join!(poll, publish);
    assert!(delivered, "no subscriber saw the event");
    let polled = polled.json();
    assert_eq!(polled["timed_out"], false, "{polled}");
    assert_eq!(polled["event_bytes"], 4, "{polled}");
}
