//! Ground truth of `arc-cycle` (orders): one body, both paths.
//!
//! Distinct orders go through the catalogue's recipe (`POST /orders/{key}`,
//! the body is the line-item data). Each order is dropped when its request
//! ends. Leaky: items hold strong `Arc`s back to their order, the cycle is
//! never freed, and `allocated` grows by the catalogue's bytes per request.
//! Fixed: `Weak` back-pointers, every order freed.

use crate::helpers::{delta, key, recipe_request, recipe_run, within_pct, RecipeRun, Service};

const ID: &str = "arc-cycle";
/// Orders per run: 4000 × ~2.9 KiB ≈ 11 MiB on the leaky path.
const ORDERS: usize = 4000;
const WARMUP: usize = 200;

async fn orders_run(leak: bool) -> RecipeRun {
    recipe_run(ID, leak, "arc-cycle", WARMUP, ORDERS, 8).await
}

#[tokio::test]
async fn leaky_orders_are_never_freed_once_their_items_point_back_strongly() {
    let run = orders_run(true).await;
    let grew = delta(&run.before, &run.after, "/allocated");
    let expected = run.truth * ORDERS as f64;
    eprintln!("{ID} leaky: allocated grew {grew}, expected {expected}");
    assert!(
        within_pct(grew as f64, expected, 25.0),
        "allocated grew {grew} bytes over {ORDERS} orders, expected {expected} (±25%)"
    );
    assert_eq!(
        delta(&run.before, &run.after, "/components/orders_alive"),
        ORDERS as i64
    );
}

#[tokio::test]
async fn fixed_orders_with_weak_back_pointers_are_all_freed() {
    let run = orders_run(false).await;
    let grew = delta(&run.before, &run.after, "/allocated");
    let leak = run.truth * ORDERS as f64;
    eprintln!("{ID} fixed: allocated grew {grew}, the leak would be {leak}");
    assert!(
        (grew as f64) < 0.25 * leak,
        "allocated grew {grew} bytes over {ORDERS} orders (the leak is {leak})"
    );
    assert_eq!(run.after["components"]["orders_alive"], 0);
    assert_eq!(
        delta(&run.before, &run.after, "/components/orders_placed"),
        ORDERS as i64
    );
}

#[tokio::test]
async fn turning_the_flag_off_stops_new_cycles_and_keeps_the_old_ones() {
    let svc = Service::start(&["--leak", ID]);
    let step = svc.scenario(ID).await["recipe"][0].clone();
    let request = |i: usize| recipe_request(&step, &key("arc-toggle", i));
    svc.drive(100, 8, request).await;
    assert_eq!(svc.number("components/orders_alive").await, 100);
    svc.set_flag(ID, false).await;
    svc.drive(100, 8, |i| request(100 + i)).await;
    // What leaked stays leaked (nothing can reach it to free it); nothing new leaks.
    assert_eq!(svc.number("components/orders_alive").await, 100);
    assert_eq!(svc.number("components/orders_placed").await, 200);
}
