//! Ground truth and data exposure of `pool-no-reset` (render buffers): one
//! body per property, both paths.
//!
//! Distinct keys go through the recipe (`POST /render/{key}` with a 4 KiB
//! body). Leaky: pooled buffers are never cleared, so `allocated` grows by one
//! rendered document per request, and a response carries the start of the
//! pooled buffer: an earlier request's document. Fixed: buffers are cleared
//! and capped; the heap stays flat and every response is its own document.

use http::{Method, StatusCode};

use crate::helpers::{delta, recipe_run, within_pct, RecipeRun, Service};

const ID: &str = "pool-no-reset";
const RENDERS: usize = 1500;
const WARMUP: usize = 16;

async fn render_run(leak: bool) -> RecipeRun {
    recipe_run(ID, leak, "render", WARMUP, RENDERS, 4).await
}

#[tokio::test]
async fn leaky_render_pool_keeps_every_document_it_rendered() {
    let run = render_run(true).await;
    let grew = delta(&run.before, &run.after, "/allocated");
    let expected = run.truth * RENDERS as f64;
    eprintln!("{ID} leaky: allocated grew {grew}, expected {expected}");
    assert!(
        within_pct(grew as f64, expected, 25.0),
        "allocated grew {grew} bytes over {RENDERS} renders, expected {expected} (±25%)"
    );
    let pooled = delta(&run.before, &run.after, "/components/pool_stale_bytes");
    assert!(
        within_pct(pooled as f64, expected, 5.0),
        "stale bytes in the pool grew {pooled}, expected {expected}"
    );
}

#[tokio::test]
async fn fixed_render_pool_keeps_the_floor_flat() {
    let run = render_run(false).await;
    let grew = delta(&run.before, &run.after, "/allocated");
    let leaky = run.truth * RENDERS as f64;
    eprintln!("{ID} fixed: allocated grew {grew} (leaky would be {leaky})");
    assert!(
        (grew as f64) < 0.05 * leaky,
        "allocated grew {grew} bytes on the fixed path"
    );
    assert_eq!(run.after["components"]["pool_stale_bytes"], 0);
    // At most render_pool_max (8) buffers of at most the 64 KiB cap.
    assert!(
        run.after["components"]["pool_capacity_bytes"]
            .as_i64()
            .unwrap()
            <= 8 * 64 * 1024
    );
}

/// Renders a secret for one client, then a public payload for another, one
/// after the other (so the second takes the buffer the first gave back).
/// Returns the second response and the document it should have been.
async fn second_client_sees(leak: bool) -> (Vec<u8>, Vec<u8>) {
    let args: &[&str] = if leak { &["--leak", ID] } else { &[] };
    let svc = Service::start(args);
    let secret = b"SECRET-alice-token-0123456789abcdef;".repeat(100);
    let public = b"public-bob-payload..................".repeat(100);
    assert_eq!(secret.len(), public.len());
    let first = svc
        .send(Method::POST, "/render/alice", secret.clone(), &[])
        .await;
    assert_eq!(first.status, StatusCode::OK);
    let second = svc
        .send(Method::POST, "/render/bobby", public.clone(), &[])
        .await;
    assert_eq!(second.status, StatusCode::OK);
    let mut own = format!("<render key=\"bobby\" bytes=\"{}\">\n", public.len()).into_bytes();
    own.extend_from_slice(&public);
    own.extend_from_slice(b"\n</render>\n");
    (second.body.to_vec(), own)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn leaky_render_pool_leaks_an_earlier_requests_secret_into_a_response() {
    let (body, own) = second_client_sees(true).await;
    assert!(
        contains(&body, b"SECRET-alice-token"),
        "the second client's response carried no bytes of the first's secret: {:?}",
        String::from_utf8_lossy(&body[..body.len().min(80)])
    );
    assert_ne!(body, own, "the leaky path answered the right document");
}

#[tokio::test]
async fn fixed_render_pool_answers_each_client_its_own_document_only() {
    let (body, own) = second_client_sees(false).await;
    assert!(
        !contains(&body, b"SECRET-alice-token"),
        "the fixed path exposed the first client's secret"
    );
    assert_eq!(body, own, "the fixed path answered the wrong document");
}
