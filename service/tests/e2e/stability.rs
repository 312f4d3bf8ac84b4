//! The service under study must stay usable while it is studied: task
//! evidence under load never wedges it, it always stops on SIGTERM, and a
//! request that never answers fails its test in seconds, naming the route.

use std::io::Write;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use http::{Method, StatusCode};

use crate::helpers::{key, Service};

/// Requests of the two task leaks' routes, `concurrency` at a time, until `stop`.
async fn keep_loading(svc: &Service, stop: &AtomicBool, sent: &AtomicUsize) {
    use futures_util::stream::{self, StreamExt};
    stream::iter(0..)
        .take_while(|_| std::future::ready(!stop.load(Ordering::Relaxed)))
        .for_each_concurrent(8, |i: usize| async move {
            let path = if i % 2 == 0 {
                format!("/ping/{}", key("load", i))
            } else {
                format!("/items/{}", key("load", i))
            };
            let reply = svc.get(&path).await;
            assert!(reply.status.is_success(), "{path}: {}", reply.status);
            sent.fetch_add(1, Ordering::Relaxed);
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_answers_and_stops_on_sigterm_after_task_evidence_bursts_under_load() {
    let mut svc = Service::start(&["--leak", "timer-per-request", "--leak", "task-leak"])
        .with_request_timeout(Duration::from_secs(10));
    let stop = AtomicBool::new(false);
    let sent = AtomicUsize::new(0);
    let census = async {
        let mut largest = 0;
        for round in 0..40 {
            let format = if round % 2 == 0 { "json" } else { "text" };
            let reply = svc.get(&format!("/debug/tasks?format={format}")).await;
            assert_eq!(
                reply.status,
                StatusCode::OK,
                "census {round}: {:?}",
                reply.body
            );
            if format == "json" {
                largest = largest.max(reply.json()["sites"][0]["alive"].as_i64().unwrap());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        stop.store(true, Ordering::Relaxed);
        largest
    };
    let (largest, ()) = tokio::join!(census, keep_loading(&svc, &stop, &sent));
    let sent = sent.load(Ordering::Relaxed);
    eprintln!("40 census requests under load ({sent} requests sent); largest site {largest} alive");
    assert!(sent > 100, "the load did not run ({sent} requests)");
    assert!(largest > 50, "the census saw no leaked tasks ({largest})");
    assert_eq!(svc.get("/healthz").await.status, StatusCode::OK);

    svc.signal(libc::SIGTERM);
    let code = svc.wait_exit(Duration::from_secs(15)).unwrap();
    assert_eq!(
        code,
        Some(0),
        "exit after SIGTERM; stderr:\n{}",
        svc.stderr_text()
    );
}

/// A request left half-sent: its body never completes, so the graceful
/// shutdown waits on it.
fn stalled_upload(svc: &Service) -> TcpStream {
    let addr = svc.base.trim_start_matches("http://");
    let mut stream = TcpStream::connect(addr).expect("connect");
    write!(
        stream,
        "POST /documents?id=stalled HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576\r\n\r\npartial"
    )
    .expect("send headers");
    stream
}

#[tokio::test]
async fn a_shutdown_held_up_past_its_deadline_exits_anyway_saying_so() {
    let mut svc = Service::start(&["--shutdown-timeout", "2s"]);
    assert_eq!(svc.get("/healthz").await.status, StatusCode::OK);
    let _held = stalled_upload(&svc);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let sent = Instant::now();
    svc.signal(libc::SIGTERM);
    let code = svc.wait_exit(Duration::from_secs(20)).unwrap();
    let took = sent.elapsed();
    let stderr = svc.stderr_text();
    assert_eq!(code, Some(1), "stderr:\n{stderr}");
    assert!(
        took >= Duration::from_millis(1500),
        "exited after {took:?}, before its deadline"
    );
    assert!(
        stderr.contains("graceful shutdown did not finish within 2s"),
        "stderr:\n{stderr}"
    );
}

#[tokio::test]
async fn a_second_sigterm_ends_a_held_up_shutdown_at_once() {
    let mut svc = Service::start(&["--shutdown-timeout", "60s"]);
    let _held = stalled_upload(&svc);
    tokio::time::sleep(Duration::from_millis(200)).await;
    svc.signal(libc::SIGTERM);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        svc.wait_exit(Duration::ZERO).is_err(),
        "exited before the second signal"
    );
    svc.signal(libc::SIGTERM);
    let code = svc.wait_exit(Duration::from_secs(10)).unwrap();
    let stderr = svc.stderr_text();
    assert_eq!(code, Some(1), "stderr:\n{stderr}");
    assert!(stderr.contains("a second SIGTERM"), "stderr:\n{stderr}");
}

/// A stopped process still accepts connections (the kernel does) but never
/// answers: the test's request times out and panics naming the route.
#[tokio::test]
#[should_panic(expected = "GET /healthz did not answer within 2s")]
async fn a_request_that_never_answers_fails_the_test_naming_the_route() {
    let svc = Service::start(&[]).with_request_timeout(Duration::from_secs(2));
    svc.freeze();
    let _ = svc.get("/healthz").await;
}

/// The same hang with the default timeouts, to show how the suite fails:
/// `cargo test -p leaklab-service --test e2e -- --ignored deliberately_hung`.
/// Not part of the suite: it fails by design.
#[tokio::test]
#[ignore = "fails by design: shows how a hung request fails the suite"]
async fn deliberately_hung_request_fails_the_suite_in_minutes() {
    let svc = Service::start(&[]);
    svc.freeze();
    let _ = svc.get("/debug/tasks").await;
    let _ = Method::GET;
}
