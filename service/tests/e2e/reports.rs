//! Ground truth of `closure-capture` (report callbacks): one body, both paths.
//!
//! Distinct reports are rendered through the catalogue's recipe
//! (`GET /reports/{key}`), each registering a score callback for the digest.
//! Leaky: every closure holds its whole 64 KiB report, so `allocated` grows by
//! the catalogue's bytes per request. Fixed: closures hold one `u64`.

use crate::helpers::{delta, recipe_run, within_pct, RecipeRun, Service};

const ID: &str = "closure-capture";
/// Reports per run: 160 × 64 KiB = 10 MiB on the leaky path.
const REPORTS: usize = 160;
const WARMUP: usize = 32;

async fn reports_run(leak: bool) -> RecipeRun {
    recipe_run(ID, leak, "closure-capt", WARMUP, REPORTS, 8).await
}

/// The digest calls every registered callback, whichever way it captured.
async fn assert_digest_covers_every_report(svc: &Service) {
    let digest = svc.get("/reports").await.json();
    assert_eq!(digest["reports"], (WARMUP + REPORTS) as u64, "{digest}");
}

#[tokio::test]
async fn leaky_callbacks_keep_the_whole_report_alive_for_one_number() {
    let run = reports_run(true).await;
    let grew = delta(&run.before, &run.after, "/allocated");
    let expected = run.truth * REPORTS as f64;
    eprintln!("{ID} leaky: allocated grew {grew}, expected {expected}");
    assert!(
        within_pct(grew as f64, expected, 25.0),
        "allocated grew {grew} bytes over {REPORTS} reports, expected {expected} (±25%)"
    );
    assert_eq!(
        delta(
            &run.before,
            &run.after,
            "/components/report_callbacks_capturing"
        ),
        REPORTS as i64
    );
    assert_digest_covers_every_report(&run.svc).await;
}

#[tokio::test]
async fn fixed_callbacks_capture_only_the_score_and_keep_the_floor_flat() {
    let run = reports_run(false).await;
    let grew = delta(&run.before, &run.after, "/allocated");
    let leak = run.truth * REPORTS as f64;
    eprintln!("{ID} fixed: allocated grew {grew}, the leak would be {leak}");
    assert!(
        (grew as f64) < 0.25 * leak,
        "allocated grew {grew} bytes over {REPORTS} reports (the leak is {leak})"
    );
    assert_eq!(run.after["components"]["report_callbacks_capturing"], 0);
    assert_digest_covers_every_report(&run.svc).await;
}
