//! The open model: arrivals at planned times, each sent on one of at most
//! `connections` pooled connections; latency from the planned time; late or
//! crowded arrivals dropped and counted.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::send::{send_unit, Pooled, PooledSender};
use super::{
    host_header, lock, pick_unit, planned_offset, record, LoadConfig, LoadStats, Progress, Unit,
};

/// Runs the open model at `rate` arrivals per second.
pub(super) async fn drive_open(
    cfg: &LoadConfig,
    rate: f64,
    units: Arc<Vec<Unit>>,
    progress: Arc<Progress>,
    start: Instant,
) -> Result<LoadStats> {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Pooled = Client::builder(TokioExecutor::new())
        // Never more than `connections` in use (see connection_slots below).
        .pool_max_idle_per_host(cfg.connections.max(1))
        .pool_idle_timeout(Duration::from_secs(30))
        .build(connector);
    let base: Arc<str> = Arc::from(cfg.target.base.as_str());
    let authority = host_header(cfg)?;
    let stats = Arc::new(Mutex::new(LoadStats::new()));
    let slots = Arc::new(Semaphore::new(cfg.max_in_flight));
    // At most `connections` requests on the wire: a stalled target makes
    // arrivals queue here (latency still counts from the planned time), not
    // open hundreds of connections that the target then has to hold.
    let connection_slots = Arc::new(Semaphore::new(cfg.connections.max(1)));
    let mut per_kind = vec![0u64; units.len()];
    let caps: Vec<Option<u64>> = (0..units.len())
        .map(|k| cfg.per_unit_cap.get(k).copied().flatten())
        .collect();

    // Bounded by the planned offsets (which end at `duration`) and max_units.
    for i in 0u64.. {
        if progress.stopped() || cfg.max_units.is_some_and(|m| i >= m) {
            break;
        }
        let Some(offset) = planned_offset(i, rate, cfg.ramp, cfg.duration) else {
            break;
        };
        let planned = start + offset;
        if planned > Instant::now() {
            tokio::time::sleep_until(planned).await;
        }
        let now = Instant::now();
        let Some((kind, nth)) = pick_unit(i, &mut per_kind, &caps) else {
            break;
        };
        let permit = if now.duration_since(planned) > cfg.max_lag {
            None
        } else {
            slots.clone().try_acquire_owned().ok()
        };
        let Some(permit) = permit else {
            progress.dropped.fetch_add(1, Ordering::Relaxed);
            lock(&stats).record_dropped(now.duration_since(start));
            continue;
        };
        progress.sent.fetch_add(1, Ordering::Relaxed);
        let (client, base, authority, units, stats, progress) = (
            client.clone(),
            base.clone(),
            authority.clone(),
            units.clone(),
            stats.clone(),
            progress.clone(),
        );
        let key = format!("{}-{i}", cfg.key_prefix);
        let (connection_slots, give_up_at) = (connection_slots.clone(), planned + cfg.max_lag);
        tokio::spawn(async move {
            let _permit = permit;
            // Wait for one of the `connections` connections; an arrival that
            // cannot get one within max_lag of its planned time is dropped.
            let Ok(Ok(_connection)) =
                tokio::time::timeout_at(give_up_at, connection_slots.acquire_owned()).await
            else {
                progress.dropped.fetch_add(1, Ordering::Relaxed);
                progress.sent.fetch_sub(1, Ordering::Relaxed);
                lock(&stats).record_dropped(Instant::now().duration_since(start));
                return;
            };
            let mut http = 0;
            let outcome = send_unit(
                &mut PooledSender(&client),
                &units[kind],
                nth,
                &base,
                &authority,
                &key,
                &mut http,
            )
            .await;
            let done = Instant::now();
            record(
                &progress,
                &mut lock(&stats),
                outcome,
                http,
                done.duration_since(start),
                done.duration_since(planned),
            );
        });
    }
    // Wait for in-flight requests, bounded: stragglers past 10 s are abandoned.
    let _ = tokio::time::timeout(
        Duration::from_secs(10),
        slots.acquire_many(cfg.max_in_flight as u32),
    )
    .await;
    let out = lock(&stats).clone();
    Ok(out)
}
