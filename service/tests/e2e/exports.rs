//! Ground truth of `defer-in-loop` (exports): one body, both paths.
//!
//! Distinct records go through the catalogue's recipe (`POST /exports/{key}`,
//! the body is the record). The export job writes each as a part with a
//! 64 KiB staging block. Leaky: every part is kept open until the archive is
//! sealed (an hour), so `allocated` grows by the catalogue's bytes per record
//! and `export_open_handles` by one. Fixed: each part is closed at the end of
//! its turn, nothing stays.

use http::{Method, StatusCode};

use crate::helpers::{delta, key, recipe_request, recipe_run, within_pct, RecipeRun, Service};

const ID: &str = "defer-in-loop";
/// Records per run: 1000 × ~64 KiB ≈ 63 MiB on the leaky path.
const RECORDS: usize = 1000;
const WARMUP: usize = 100;

async fn exports_run(leak: bool) -> RecipeRun {
    recipe_run(ID, leak, "defer-in-loop", WARMUP, RECORDS, 8).await
}

#[tokio::test]
async fn leaky_parts_stay_open_until_the_archive_is_sealed() {
    let run = exports_run(true).await;
    let grew = delta(&run.before, &run.after, "/allocated");
    let expected = run.truth * RECORDS as f64;
    eprintln!("{ID} leaky: allocated grew {grew}, expected {expected}");
    assert!(
        within_pct(grew as f64, expected, 25.0),
        "allocated grew {grew} bytes over {RECORDS} records, expected {expected} (±25%)"
    );
    assert_eq!(
        delta(&run.before, &run.after, "/components/export_open_handles"),
        RECORDS as i64
    );
    let status = run.svc.get("/exports").await.json();
    assert_eq!(
        status["open_handles"],
        (WARMUP + RECORDS) as u64,
        "{status}"
    );
    assert_eq!(status["archives_sealed"], 0, "{status}");
}

#[tokio::test]
async fn fixed_parts_are_closed_at_the_end_of_their_turn() {
    let run = exports_run(false).await;
    let grew = delta(&run.before, &run.after, "/allocated");
    let leak = run.truth * RECORDS as f64;
    eprintln!("{ID} fixed: allocated grew {grew}, the leak would be {leak}");
    assert!(
        (grew as f64) < 0.25 * leak,
        "allocated grew {grew} bytes over {RECORDS} records (the leak is {leak})"
    );
    assert_eq!(run.after["components"]["export_open_handles"], 0);
    assert_eq!(
        delta(&run.before, &run.after, "/components/export_records"),
        RECORDS as i64
    );
}

#[tokio::test]
async fn turning_the_flag_off_closes_new_parts_and_keeps_the_old_ones_open() {
    let svc = Service::start(&["--leak", ID]);
    let step = svc.scenario(ID).await["recipe"][0].clone();
    let request = |i: usize| recipe_request(&step, &key("export-toggle", i));
    svc.drive(100, 8, request).await;
    assert_eq!(svc.number("components/export_open_handles").await, 100);
    svc.set_flag(ID, false).await;
    svc.drive(100, 8, |i| request(100 + i)).await;
    // The kept parts wait for the archive's seal; the new ones were closed.
    assert_eq!(svc.number("components/export_open_handles").await, 100);
    assert_eq!(svc.number("components/export_records").await, 200);
}

#[tokio::test]
async fn an_export_answers_its_part_and_bad_records_get_a_4xx_with_a_message() {
    let svc = Service::start(&[]);
    let reply = svc
        .send(Method::POST, "/exports/rec-1", b"hello".to_vec(), &[])
        .await;
    assert_eq!(reply.status, StatusCode::CREATED);
    let written = reply.json();
    assert_eq!(written["key"], "rec-1");
    assert_eq!(
        (written["archive"].as_u64(), written["part"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(written["bytes"], 64 * 1024);
    for (path, body, status) in [
        ("/exports/rec-2", Vec::new(), StatusCode::BAD_REQUEST),
        (
            "/exports/has%20space",
            b"x".to_vec(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "/exports/rec-3",
            vec![b'x'; 64 * 1024],
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
    ] {
        let reply = svc.send(Method::POST, path, body, &[]).await;
        assert_eq!(reply.status, status, "POST {path}");
        assert!(
            reply.json()["error"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "POST {path}: no message"
        );
    }
    let status = svc.get("/exports").await.json();
    assert_eq!(
        (status["records"].as_u64(), status["open_handles"].as_u64()),
        (Some(1), Some(0))
    );
    assert!(
        status["seal_in_s"].as_f64().is_some_and(|s| s > 3000.0),
        "{status}"
    );
}
