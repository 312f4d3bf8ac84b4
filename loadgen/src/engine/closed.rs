//! Max mode (closed model): one task per connection, back to back until the
//! deadline, indices claimed in blocks so tasks do not contend.
//!
//! Each task drives its own connection's I/O (hyper's `Connection` future,
//! polled beside the request in one `select!`) instead of spawning it as a
//! task of its own: a request then costs no hand-off between two tasks, and
//! no wake-up of a second one, on the way out or back.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::Full;
use hyper::client::conn::http1::Connection;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::send::{send_unit, Outcome, OwnSender};
use super::{host_header, lock, record, LoadConfig, LoadStats, Progress, Unit};

/// Runs max mode: `connections` tasks back to back until the deadline.
pub(super) async fn drive_closed(
    cfg: &LoadConfig,
    units: Arc<Vec<Unit>>,
    progress: Arc<Progress>,
    start: Instant,
) -> Result<LoadStats> {
    let deadline = start + cfg.duration;
    let next = Arc::new(AtomicU64::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..cfg.connections.max(1) {
        let (cfg, units, progress, next) =
            (cfg.clone(), units.clone(), progress.clone(), next.clone());
        workers.spawn(async move {
            connection_worker(&cfg, &units, &progress, &next, start, deadline).await
        });
    }
    let mut stats = LoadStats::new();
    while let Some(res) = workers.join_next().await {
        stats.merge(&res.context("load worker panicked")?);
    }
    Ok(stats)
}

/// A connection's I/O, driven by the task that sends on it.
type Io = Pin<Box<Connection<TokioIo<TcpStream>, Full<Bytes>>>>;

async fn connect(cfg: &LoadConfig) -> Result<(OwnSender, Io), String> {
    let stream = TcpStream::connect(cfg.target.addr)
        .await
        .map_err(|e| e.to_string())?;
    let _ = stream.set_nodelay(true);
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    Ok((OwnSender(sender), Box::pin(conn)))
}

async fn connection_worker(
    cfg: &LoadConfig,
    units: &[Unit],
    progress: &Progress,
    next: &AtomicU64,
    start: Instant,
    deadline: Instant,
) -> LoadStats {
    let mut stats = LoadStats::new();
    let mut sender: Option<(OwnSender, Io)> = None;
    let Ok(host) = host_header(cfg) else {
        return stats;
    };
    let mut key = String::with_capacity(cfg.key_prefix.len() + 24);
    // Indices are claimed in blocks and progress is published every BLOCK
    // requests, so connection tasks do not contend on shared counters.
    const BLOCK: u64 = 64;
    let (mut i, mut block_end) = (0u64, 0u64);
    let mut unpublished = 0u64;
    // Bounded by the deadline (and the stop flag).
    while Instant::now() < deadline && !progress.stopped() {
        if sender.is_none() {
            match connect(cfg).await {
                Ok(s) => sender = Some(s),
                Err(e) => {
                    progress.errors.fetch_add(1, Ordering::Relaxed);
                    progress.refused.fetch_add(1, Ordering::Relaxed);
                    *lock(&progress.last_error) = Some(format!("connect: {e}"));
                    stats.errors += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            }
        }
        let Some((s, io)) = sender.as_mut() else {
            continue;
        };
        if i == block_end {
            i = next.fetch_add(BLOCK, Ordering::Relaxed);
            block_end = i + BLOCK;
        }
        if cfg.max_units.is_some_and(|m| i >= m) {
            break;
        }
        let unit = &units[(i as usize) % units.len()];
        let nth = i / units.len() as u64;
        if unit.uses_key() {
            use std::fmt::Write;
            key.clear();
            let _ = write!(key, "{}-{i}", cfg.key_prefix);
        }
        i += 1;
        let sent_at = Instant::now();
        let mut http = 0;
        // The request and its connection's I/O, polled together; the
        // connection ending first (the peer closed it) fails the request.
        let outcome = tokio::select! {
            biased;
            outcome = send_unit(s, unit, nth, "", &host, &key, &mut http) => outcome,
            ended = io.as_mut() => Outcome::Failed(
                format!("connection closed: {}", ended.err().map(|e| e.to_string()).unwrap_or_else(|| "by the peer".into())),
                true,
            ),
        };
        let done = Instant::now();
        stats.http_requests += http;
        match outcome {
            Outcome::Ok { status_4xx } => {
                stats.status_4xx += status_4xx;
                stats.record_done(
                    done.duration_since(start),
                    done.duration_since(sent_at),
                    true,
                );
                unpublished += 1;
                if unpublished == BLOCK {
                    progress.sent.fetch_add(unpublished, Ordering::Relaxed);
                    progress
                        .units_done
                        .fetch_add(unpublished, Ordering::Relaxed);
                    unpublished = 0;
                }
            }
            failed => {
                if matches!(failed, Outcome::Failed(_, true)) {
                    sender = None;
                }
                progress.sent.fetch_add(1, Ordering::Relaxed);
                record(
                    progress,
                    &mut stats,
                    failed,
                    0,
                    done.duration_since(start),
                    done.duration_since(sent_at),
                );
            }
        }
    }
    progress.sent.fetch_add(unpublished, Ordering::Relaxed);
    progress
        .units_done
        .fetch_add(unpublished, Ordering::Relaxed);
    stats
}
