//! tokio-console sees the leaked tasks: a `--features console` build of the
//! service, with the `task-leak` scenario on and `RUST_LOG=error` (the log
//! filter must not starve the console layer of tokio's task spans), is
//! driven with distinct-key requests; a console client (console-api's
//! gRPC `InstrumentClient`, what the `tokio-console` tool speaks) then
//! watches the updates and counts the tasks spawned in `fanout.rs` that never
//! finished: one collector per request. The same body against the fixed
//! path sees them all finish.
//!
//! Runs only with the feature: `cargo test -p leaklab-service --features
//! console --test console`. `.ci/run` leaves it out: its own build of the
//! service takes about 3 minutes that CI's 40-minute budget does not have.
#![cfg(feature = "console")]

#[path = "../e2e/helpers.rs"]
#[allow(dead_code)]
mod helpers;

use std::collections::{HashMap, HashSet};
use std::net::TcpListener;
use std::time::Duration;

use console_api::instrument::instrument_client::InstrumentClient;
use console_api::instrument::InstrumentRequest;
use http::Method;

use helpers::{key, Service};

/// Requests driven: each spawns fan-out collector tasks.
const REQUESTS: usize = 40;

/// What the console reported about the tasks spawned in one source file.
#[derive(Debug, Default)]
struct Seen {
    spawned: usize,
    finished: usize,
}

/// A free loopback port for the console's gRPC server.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Watches the console's updates for `window` and tallies the tasks whose
/// spawn location is in `file`: how many were spawned, how many dropped.
async fn watch(addr: &str, file: &str, window: Duration) -> Seen {
    // The server starts with the service: wait for it, bounded.
    let mut client = None;
    for _ in 0..100 {
        if let Ok(c) = InstrumentClient::connect(format!("http://{addr}")).await {
            client = Some(c);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut client =
        client.unwrap_or_else(|| panic!("no console server answered at {addr} within 10 s"));
    let mut stream = client
        .watch_updates(InstrumentRequest {})
        .await
        .expect("watch_updates")
        .into_inner();
    let mut ours: HashSet<u64> = HashSet::new();
    let mut dropped: HashMap<u64, bool> = HashMap::new();
    let deadline = tokio::time::Instant::now() + window;
    // Bounded by the window: the server sends an update about once a second.
    while let Ok(Ok(Some(update))) = tokio::time::timeout_at(deadline, stream.message()).await {
        let Some(tasks) = update.task_update else {
            continue;
        };
        for task in tasks.new_tasks {
            let in_file = task
                .location
                .as_ref()
                .and_then(|l| l.file.as_deref())
                .is_some_and(|f| f.ends_with(file));
            if let (true, Some(id)) = (in_file, task.id) {
                ours.insert(id.id);
            }
        }
        for (id, stats) in tasks.stats_update {
            if stats.dropped_at.is_some() {
                dropped.insert(id, true);
            }
        }
    }
    Seen {
        spawned: ours.len(),
        finished: ours.iter().filter(|id| dropped.contains_key(id)).count(),
    }
}

/// Starts the service with the console on a free port, drives the task-leak
/// route, and watches.
async fn console_run(leak: bool) -> Seen {
    let console = format!("127.0.0.1:{}", free_port());
    let flag = if leak { "--leak" } else { "--fix" };
    let svc = Service::start_env(
        &[flag, "task-leak"],
        &[
            ("TOKIO_CONSOLE_BIND", console.as_str()),
            ("RUST_LOG", "error"),
        ],
    );
    // The client first: the console sends each task once, when it is new.
    let watcher = {
        let console = console.clone();
        tokio::spawn(async move { watch(&console, "fanout.rs", Duration::from_secs(12)).await })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    svc.drive(REQUESTS, 4, |i| {
        (
            Method::GET,
            format!("/items/{}", key("console", i)),
            Vec::new(),
        )
    })
    .await;
    let seen = watcher.await.expect("the watcher");
    eprintln!(
        "console ({}): {} tasks spawned in fanout.rs, {} finished, {} alive",
        if leak { "leaky" } else { "fixed" },
        seen.spawned,
        seen.finished,
        seen.spawned - seen.finished
    );
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_console_sees_one_leaked_fanout_collector_per_request() {
    let seen = console_run(true).await;
    let alive = seen.spawned - seen.finished;
    // Each request fans out to workers that finish and one collector that,
    // on the leaky path, waits forever (the catalogue's 1 task per request).
    assert!(
        seen.spawned > REQUESTS && alive >= REQUESTS,
        "the console saw {} tasks spawned in fanout.rs for {REQUESTS} leaky requests, {alive} never finished",
        seen.spawned
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_console_sees_every_fixed_fanout_task_finish() {
    let seen = console_run(false).await;
    let alive = seen.spawned - seen.finished;
    assert!(
        seen.spawned > REQUESTS && alive <= REQUESTS / 10,
        "the console saw {} tasks spawned in fanout.rs for {REQUESTS} fixed requests, {alive} never finished",
        seen.spawned
    );
}
