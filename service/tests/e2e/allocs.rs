//! `/debug/pprof/allocs`, the allocation profile: it counts what churn
//! allocates and frees (alloc_space grows, in-use does not), idle time adds
//! next to nothing, `?seconds=N` holds what was allocated during the interval,
//! and a malformed interval or a profiler that cannot answer gets a clear
//! error. The profiles are decoded with the service's own pprof messages.

use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use leaklab_service::telemetry::pprof;

use crate::helpers::{key, Service};

const MIB: f64 = 1024.0 * 1024.0;

/// The totals of one allocation profile.
#[derive(Debug)]
struct Totals {
    alloc_objects: f64,
    alloc_space: f64,
    inuse_space: f64,
}

/// Fetches `/debug/pprof/allocs{query}`, decodes it and sums its sample types.
async fn allocs(svc: &Service, query: &str) -> Totals {
    let path = format!("/debug/pprof/allocs{query}");
    let reply = svc.admin(Method::GET, &path, Vec::new()).await;
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "{path}: {}",
        String::from_utf8_lossy(&reply.body)
    );
    assert_eq!(&reply.body[..2], &[0x1f, 0x8b], "{path}: not gzip");
    let profile = pprof::decode(&reply.body).expect("a pprof protobuf");
    let types: Vec<&str> = profile
        .sample_type
        .iter()
        .map(|t| profile.string(t.r#type))
        .collect();
    assert_eq!(
        types,
        [
            "alloc_objects",
            "alloc_space",
            "inuse_objects",
            "inuse_space"
        ]
    );
    assert_eq!(profile.string(profile.default_sample_type), "alloc_space");
    let total = |name: &str| profile.total(profile.sample_index(name).unwrap()) as f64;
    Totals {
        alloc_objects: total("alloc_objects"),
        alloc_space: total("alloc_space"),
        inuse_space: total("inuse_space"),
    }
}

/// `n` churn requests (1 MiB allocated and freed each), 4 at a time.
async fn churn(svc: &Service, run: &str, n: usize) {
    svc.drive(n, 4, |i| {
        (Method::GET, format!("/churn/{}", key(run, i)), Vec::new())
    })
    .await;
}

#[tokio::test]
async fn the_allocation_profile_grows_with_churn_and_not_with_idle_time() {
    let svc = Service::start(&["--leak", "churn"]);
    // The first profile loads the symbolizer's tables into the heap and keeps them.
    allocs(&svc, "").await;

    // Since start: 200 MiB of churn shows in alloc_space, not in use.
    let before = allocs(&svc, "").await;
    churn(&svc, "allocs-a", 200).await;
    let after = allocs(&svc, "").await;
    let churned = after.alloc_space - before.alloc_space;
    let inuse_change = after.inuse_space - before.inuse_space;
    assert!(
        churned >= 0.7 * 200.0 * MIB,
        "alloc_space grew by {:.1} MiB over 200 churn requests of 1 MiB ({before:?} -> {after:?})",
        churned / MIB
    );
    assert!(after.alloc_objects > before.alloc_objects);
    assert!(
        inuse_change < churned / 10.0,
        "inuse_space changed by {:.1} MiB while alloc_space grew by {:.1} MiB",
        inuse_change / MIB,
        churned / MIB
    );

    // Two idle seconds allocate next to nothing.
    let idle = allocs(&svc, "?seconds=2").await;
    assert!(
        idle.alloc_space < churned / 20.0,
        "an idle 2 s interval allocated {:.1} MiB (the churn: {:.1} MiB)",
        idle.alloc_space / MIB,
        churned / MIB
    );

    // An interval with 50 churn requests inside it holds them.
    let started = Instant::now();
    let (during, churn_done) = tokio::join!(allocs(&svc, "?seconds=5"), async {
        // Let the interval's first dump be taken before the churn starts.
        tokio::time::sleep(Duration::from_secs(1)).await;
        churn(&svc, "allocs-b", 50).await;
        started.elapsed()
    });
    eprintln!(
        "allocs: churn of 200 MiB: alloc_space +{:.1} MiB, inuse_space {:+.1} MiB; \
         idle 2 s: {:.1} MiB; 5 s with 50 MiB of churn: {:.1} MiB (in use {:+.1} MiB)",
        churned / MIB,
        inuse_change / MIB,
        idle.alloc_space / MIB,
        during.alloc_space / MIB,
        during.inuse_space / MIB
    );
    assert!(
        churn_done < Duration::from_millis(4500),
        "the churn took until {churn_done:?}: it did not fit in the 5 s interval"
    );
    assert!(
        during.alloc_space >= 0.7 * 50.0 * MIB,
        "a 5 s interval with 50 churn requests of 1 MiB allocated {:.1} MiB",
        during.alloc_space / MIB
    );
    assert!(
        during.alloc_space > 10.0 * idle.alloc_space.max(MIB),
        "churn {:.1} MiB against idle {:.1} MiB over an interval",
        during.alloc_space / MIB,
        idle.alloc_space / MIB
    );
    assert!(
        during.inuse_space.abs() < during.alloc_space / 10.0,
        "in-use changed by {:.1} MiB over the churn interval",
        during.inuse_space / MIB
    );
}

#[tokio::test]
async fn the_allocation_profile_refuses_bad_intervals_and_says_why_it_cannot_answer() {
    let svc = Service::start(&[]);
    for query in [
        "?seconds=abc",
        "?seconds=-1",
        "?seconds=1.5",
        "?seconds=",
        "?seconds=0",
        "?seconds=61",
    ] {
        let reply = svc.get(&format!("/debug/pprof/allocs{query}")).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{query}");
        let error = reply.json()["error"].as_str().unwrap().to_owned();
        assert!(error.contains("seconds"), "{query}: {error}");
    }

    // Profiling off: a 503 that says so; on again: a profile.
    let off = serde_json::to_vec(&serde_json::json!({ "active": false })).unwrap();
    let on = serde_json::to_vec(&serde_json::json!({ "active": true })).unwrap();
    svc.admin(Method::PUT, "/admin/profiling", off).await;
    let reply = svc.get("/debug/pprof/allocs").await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(reply.json()["error"]
        .as_str()
        .unwrap()
        .contains("heap profiling is inactive"));
    svc.admin(Method::PUT, "/admin/profiling", on).await;
    assert_eq!(svc.get("/debug/pprof/allocs").await.status, StatusCode::OK);

    // jemalloc without cumulative counts: a 503 naming prof_accum; the
    // in-use profile still works.
    let svc = Service::start_env(&[], &[("MALLOC_CONF", "prof_accum:false")]);
    let reply = svc.get("/debug/pprof/allocs").await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(reply.json()["error"]
        .as_str()
        .unwrap()
        .contains("prof_accum"));
    assert_eq!(svc.get("/debug/pprof/heap").await.status, StatusCode::OK);
}
