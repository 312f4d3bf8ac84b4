//! Ground truth of `subslice-pin` (document ingest): one body, both paths.
//!
//! Distinct documents of the catalogue's body size go through its recipe
//! (`POST /documents?id={key}`). Leaky: every indexed header pins its whole
//! body, so `allocated` grows by the catalogue's bytes per request (≈ the body
//! size, not the header size). Fixed: only header copies stay.

use http::StatusCode;

use crate::helpers::{delta, key, recipe_request, recipe_run, within_pct, RecipeRun};

const ID: &str = "subslice-pin";
/// Documents per run: 32 × 1 MiB, a clean 32 MiB signal on the leaky path.
const DOCS: usize = 32;
const WARMUP: usize = 8;

// Warm-up on the same connections, so their read buffers are in the baseline.
async fn ingest_run(leak: bool) -> RecipeRun {
    recipe_run(ID, leak, "subslice-pin", WARMUP, DOCS, 4).await
}

/// The index answers the last document's header: its first 32 bytes, on either path.
async fn assert_header_indexed(run: &RecipeRun) {
    let id = key("subslice-pin", WARMUP + DOCS - 1);
    let reply = run.svc.get(&format!("/documents?id={id}")).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.body);
    let (_, _, body) = recipe_request(&run.step, &id);
    let hex: String = body[..32].iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(reply.json()["header_hex"], hex.as_str());
}

#[tokio::test]
async fn leaky_ingest_pins_a_whole_body_behind_every_indexed_header() {
    let run = ingest_run(true).await;
    let grew = delta(&run.before, &run.after, "/allocated");
    let expected = run.truth * DOCS as f64;
    eprintln!("{ID} leaky: allocated grew {grew}, expected {expected}");
    assert!(
        within_pct(grew as f64, expected, 25.0),
        "allocated grew {grew} bytes over {DOCS} documents, expected {expected} (±25%)"
    );
    assert_eq!(
        delta(
            &run.before,
            &run.after,
            "/components/ingest_pinned_documents"
        ),
        DOCS as i64
    );
    assert_header_indexed(&run).await;
}

#[tokio::test]
async fn fixed_ingest_keeps_only_header_copies_and_the_floor_flat() {
    let run = ingest_run(false).await;
    let grew = delta(&run.before, &run.after, "/allocated");
    let leak = run.truth * DOCS as f64;
    eprintln!("{ID} fixed: allocated grew {grew}, the leak would be {leak}");
    assert!(
        (grew as f64) < 0.25 * leak,
        "allocated grew {grew} bytes over {DOCS} documents (the leak is {leak})"
    );
    assert_eq!(run.after["components"]["ingest_pinned_documents"], 0);
    assert_eq!(
        delta(&run.before, &run.after, "/components/ingest_index_entries"),
        DOCS as i64
    );
    assert_header_indexed(&run).await;
}
