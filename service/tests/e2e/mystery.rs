//! Mystery mode reveals nothing: with `--mystery SEED`, no route but the
//! catalogue and no log line names a scenario, gauges that name a variant
//! are gone, and the flags can still be switched (without saying what they
//! were).

use http::{Method, StatusCode};
use leaklab_service::cli::mystery_draw;

use crate::helpers::{key, recipe_request, Service};

/// Words of `text` made of `[A-Za-z0-9_/-]`: an id inside a longer name
/// (`leaklab_churn_allocations`) or a route (`/churn/{key}`, which every
/// service has) is not a mention of the id.
fn tokens(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || "_/-".contains(c)))
        .filter(|t| !t.is_empty())
}

#[tokio::test]
async fn mystery_mode_names_no_scenario_on_any_route_or_in_the_log() {
    // A seed that turns on two leaks or more (and a decoy, if the draw has one).
    let seed = (0..200u64)
        .find(|s| mystery_draw(*s).len() >= 3)
        .expect("a seed with three scenarios on");
    let drawn = mystery_draw(seed);
    let seed_text = seed.to_string();
    let svc = Service::start_env(&["--mystery", &seed_text], &[("RUST_LOG", "info")]);

    // A little traffic over every scenario's recipe, so every component has
    // something to show.
    let catalogue = svc.get("/admin/scenarios").await.json();
    let scenarios = catalogue.as_array().unwrap();
    let ids: Vec<String> = scenarios
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_owned())
        .collect();
    for s in scenarios {
        for step in s["recipe"].as_array().unwrap() {
            if step["path"].as_str().unwrap().starts_with("/batch") {
                continue; // a 256 MiB job: not needed to show the telemetry
            }
            // Keys that do not repeat the scenario's id (raw paths can show up
            // as metric labels).
            let prefix = format!("m{}", step["path"].as_str().unwrap().len());
            svc.drive(3, 3, |i| recipe_request(step, &key(&prefix, i)))
                .await;
        }
    }

    let mut seen = Vec::new();
    for path in [
        "/debug/memory",
        "/metrics",
        "/debug/tasks",
        "/debug/tasks?format=json",
        "/admin/profiling",
        "/healthz",
    ] {
        let reply = svc.get(path).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}");
        seen.push((path, String::from_utf8_lossy(&reply.body).into_owned()));
    }
    let flags = svc.get("/admin/flags").await;
    assert_eq!(flags.status, StatusCode::FORBIDDEN);
    seen.push((
        "/admin/flags",
        String::from_utf8_lossy(&flags.body).into_owned(),
    ));
    seen.push(("the log", svc.stderr_text()));

    for (where_, text) in &seen {
        for token in tokens(text) {
            assert!(
                !ids.iter().any(|id| id == token),
                "{where_} names scenario `{token}` in mystery mode:\n{text}"
            );
        }
        for variant in [
            "cache_unbounded_entries",
            "mmap_unbounded_regions",
            "label_series_raw_paths",
            "report_callbacks_capturing",
        ] {
            assert!(!text.contains(variant), "{where_} shows {variant}");
        }
    }
    let memory = svc.memory().await;
    assert!(memory.get("leaks_on").is_none() && memory.get("budget").is_none());
    assert!(
        memory["components"]["cache_entries"].is_u64(),
        "real gauges stay"
    );

    // A fix can still be tried; the answer does not say what the flag was.
    let id = drawn[0].as_str();
    let reply = svc
        .admin(
            Method::PUT,
            &format!("/admin/flags/{id}"),
            br#"{"enabled": false}"#.to_vec(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.json().get("was").is_none(), "{:?}", reply.body);
}

#[tokio::test]
async fn mystery_mode_refuses_leak_flags_beside_it() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_leaklab-service"))
        .args(["--mystery", "1", "--leak", "churn"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot be used with"));
}
