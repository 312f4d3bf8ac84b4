//! The admin token: guarded routes answer 401 without it and change nothing.

use http::{Method, StatusCode};

use crate::helpers::Service;

/// Every route that needs the token when one is set.
const GUARDED: &[(&str, &str, &str)] = &[
    ("GET", "/debug/memory", ""),
    ("GET", "/debug/pprof/heap", ""),
    ("GET", "/debug/pprof/heap?format=svg", ""),
    ("GET", "/debug/pprof/allocs", ""),
    ("GET", "/debug/pprof/allocs?seconds=1", ""),
    ("GET", "/debug/tasks", ""),
    ("PUT", "/admin/flags/unbounded-cache", "{\"enabled\":true}"),
    ("PUT", "/admin/profiling", "{\"active\":false}"),
];

#[tokio::test]
async fn guarded_routes_refuse_a_missing_or_wrong_token_and_change_nothing() {
    let svc = Service::start(&["--admin-token", "s3cret"]);
    let flags_before = svc.get("/admin/flags").await.json();
    let profiling_before = svc.get("/admin/profiling").await.json();
    for (method, path, body) in GUARDED {
        let method: Method = method.parse().unwrap();
        for auth in [
            None,
            Some("Bearer wrong"),
            Some("s3cret"),
            Some("Bearer s3cre"),
            Some("Bearer s3cret2"),
        ] {
            let mut headers = vec![("content-type", "application/json")];
            if let Some(auth) = auth {
                headers.push(("authorization", auth));
            }
            let reply = svc
                .send(method.clone(), path, body.as_bytes().to_vec(), &headers)
                .await;
            assert_eq!(
                reply.status,
                StatusCode::UNAUTHORIZED,
                "{method} {path} with {auth:?}"
            );
        }
    }
    assert_eq!(
        svc.get("/admin/flags").await.json(),
        flags_before,
        "a refused write changed a flag"
    );
    assert_eq!(
        svc.get("/admin/profiling").await.json(),
        profiling_before,
        "a refused write changed profiling"
    );
    // The right token opens every one of them.
    for (method, path, body) in GUARDED {
        let reply = svc
            .admin(method.parse().unwrap(), path, body.as_bytes().to_vec())
            .await;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "{method} {path} with the token"
        );
    }
    assert_eq!(
        svc.get("/admin/flags").await.json()["unbounded-cache"],
        true
    );
}

#[tokio::test]
async fn without_a_token_configured_debug_routes_are_open() {
    let svc = Service::start(&[]);
    assert_eq!(svc.get("/debug/memory").await.status, StatusCode::OK);
    assert_eq!(svc.get("/admin/scenarios").await.status, StatusCode::OK);
}

#[tokio::test]
async fn heap_profiles_are_gzipped_pprof_and_svg() {
    let svc = Service::start(&[]);
    let pprof = svc.get("/debug/pprof/heap").await;
    assert_eq!(pprof.status, StatusCode::OK);
    assert_eq!(&pprof.body[..2], &[0x1f, 0x8b], "not gzip");
    let mut decoded = Vec::new();
    std::io::Read::read_to_end(
        &mut flate2::read::GzDecoder::new(&pprof.body[..]),
        &mut decoded,
    )
    .expect("gunzip");
    assert!(decoded.len() > 100, "empty profile");
    let svg = svc.get("/debug/pprof/heap?format=svg").await;
    assert_eq!(svg.status, StatusCode::OK);
    assert!(
        String::from_utf8_lossy(&svg.body).contains("<svg"),
        "not an SVG"
    );
}
