//! Request fan-out: an item's value is assembled from shard lookups run as
//! spawned tasks, gathered by a collector task, with a deadline.
//!
//! Scenario seeded here: `task-leak`. The leaky collector keeps a clone of its
//! own channel's sender (for "retries"), so the channel can never close and
//! the collector, holding the request context, waits forever after it has
//! answered. The fix drops that sender and also selects on a
//! `CancellationToken` cancelled when the handler returns on any path
//! (answer, deadline, client gone).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::Router;
use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::{Component, Ctx, Gauges};
use crate::catalogue::{size_class, LeakClass, Scenario, ScenarioId, Step};
use crate::config::Config;
use crate::error::AppError;

crate::dump_frame! {
    /// The collector task's frame in task dumps.
    pub FanoutCollector
}

/// How many shard lookups one value is assembled from.
pub const SHARDS: usize = 4;

/// One shard's part of a value.
type Part = (usize, Bytes);

/// What a request carries into the tasks it spawns: ids and baggage (trace
/// context, headers) of `context_bytes` bytes.
#[derive(Debug)]
pub struct RequestContext {
    pub request_id: u64,
    pub key: String,
    pub baggage: Vec<u8>,
}

/// The fan-out component.
pub struct FanOut {
    ctx: Ctx,
    next_request_id: AtomicU64,
    /// Collector tasks alive now: +1 at spawn, -1 when the task ends (a guard
    /// moved into it). On the leaky path this climbs with every request.
    collectors: Arc<AtomicU64>,
}

/// Decrements the live-collector gauge when the collector task ends, and gives
/// its leak-budget reservation back.
struct CollectorAlive {
    gauge: Arc<AtomicU64>,
    leaked: Option<(Ctx, u64)>,
}

impl Drop for CollectorAlive {
    fn drop(&mut self) {
        self.gauge.fetch_sub(1, Ordering::Relaxed);
        if let Some((ctx, bytes)) = self.leaked.take() {
            ctx.budget.release(ScenarioId::TaskLeak, bytes);
        }
    }
}

/// Computes one shard's part of `key`'s value: deterministic bytes from the key.
fn compute_part(key: &str, shard: usize, len: usize) -> Bytes {
    let mut state = key
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325u64 ^ shard as u64, |h, b| {
            (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
        });
    let mut part = Vec::with_capacity(len);
    while part.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let word = state.to_le_bytes();
        part.extend_from_slice(&word[..(len - part.len()).min(8)]);
    }
    Bytes::from(part)
}

/// Gathers parts until the channel closes or `cancel` fires, answering on
/// `reply` as soon as every shard is in.
///
/// `retry_tx` is the leak. LEAKY PATH (`task-leak`): it is a clone of the
/// sender of `parts_rx`'s own channel. While this task holds it the channel
/// cannot close, `recv()` never returns `None`, and with `cancel` absent
/// nothing else ends the loop: the task, its `RequestContext` and the channel
/// stay alive forever. FIXED PATH: `retry_tx` is `None` (the loop ends when the
/// shards' senders are gone) and `cancel` ends it early when the handler
/// returns before the shards do.
async fn collect(
    request: RequestContext,
    mut parts_rx: mpsc::Receiver<Part>,
    retry_tx: Option<mpsc::Sender<Part>>,
    reply: oneshot::Sender<Vec<Bytes>>,
    cancel: Option<CancellationToken>,
    _alive: CollectorAlive,
) {
    let _retry_tx = retry_tx;
    let mut parts: Vec<Part> = Vec::with_capacity(SHARDS);
    let mut reply = Some(reply);
    loop {
        let part = match &cancel {
            Some(cancel) => tokio::select! {
                part = parts_rx.recv() => part,
                _ = cancel.cancelled() => break,
            },
            None => parts_rx.recv().await,
        };
        let Some(part) = part else { break };
        parts.push(part);
        if parts.len() == SHARDS {
            if let Some(reply) = reply.take() {
                parts.sort_by_key(|(shard, _)| *shard);
                let _ = reply.send(parts.drain(..).map(|(_, bytes)| bytes).collect());
            }
        }
    }
    tracing::trace!(request_id = request.request_id, key = %request.key, baggage = request.baggage.len(), "collector done");
}

impl FanOut {
    pub fn new(ctx: Ctx) -> FanOut {
        FanOut {
            ctx,
            next_request_id: AtomicU64::new(1),
            collectors: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Fans `key` out to [`SHARDS`] lookups and gathers their parts, in shard
    /// order, within the configured deadline.
    pub async fn gather(&self, key: &str) -> Result<Vec<Bytes>, AppError> {
        let config = &self.ctx.config;
        let truth = scenario(config).bytes_per_request;
        let leak = self.ctx.leak_admitted(ScenarioId::TaskLeak, truth);
        let request = RequestContext {
            request_id: self.next_request_id.fetch_add(1, Ordering::Relaxed),
            key: key.to_owned(),
            baggage: vec![0x5a; config.context_bytes as usize],
        };
        let part_len = (config.value_bytes as usize).div_ceil(SHARDS);
        let (parts_tx, parts_rx) = mpsc::channel::<Part>(SHARDS);
        for shard in 0..SHARDS {
            let tx = parts_tx.clone();
            let key = key.to_owned();
            tokio::spawn(async move {
                let _ = tx.send((shard, compute_part(&key, shard, part_len))).await;
            });
        }
        let (reply_tx, reply_rx) = oneshot::channel();
        // Cancelled when this function returns, whichever way it returns.
        let cancel = CancellationToken::new();
        let _cancel_on_return = cancel.clone().drop_guard();
        self.collectors.fetch_add(1, Ordering::Relaxed);
        let alive = CollectorAlive {
            gauge: self.collectors.clone(),
            leaked: leak.then(|| (self.ctx.clone(), truth)),
        };
        let collector = if leak {
            collect(request, parts_rx, Some(parts_tx), reply_tx, None, alive)
        } else {
            drop(parts_tx);
            collect(request, parts_rx, None, reply_tx, Some(cancel), alive)
        };
        tokio::spawn(FanoutCollector::new(collector));
        match tokio::time::timeout(config.fanout_deadline, reply_rx).await {
            Ok(Ok(parts)) => Ok(parts),
            Ok(Err(_)) => Err(AppError::Unavailable(
                "the value's shard lookups ended without an answer".into(),
            )),
            Err(_) => Err(AppError::Timeout(
                "the value's shard lookups missed their deadline".into(),
            )),
        }
    }
}

impl Component for FanOut {
    fn router(self: Arc<Self>) -> Router {
        Router::new()
    }

    fn gauges(&self, out: &mut Gauges) {
        out.gauge(
            "fanout_collectors",
            self.collectors.load(Ordering::Relaxed),
            "Fan-out collector tasks alive; each holds its request context until it ends.",
        );
    }
}

/// The `task-leak` catalogue entry.
pub fn scenario(c: &Config) -> Scenario {
    // Per leaked request: the 2 KiB baggage, the collector task's cell (its
    // future holds the context, the receiver and the retry sender), the mpsc
    // channel with its first block of 32 slots, and the key.
    let part_slot = 8 + 32; // (usize, Bytes)
    let channel = size_class(512) + size_class(32 * part_slot + 32);
    let task_cell = size_class(512);
    let bytes = size_class(c.context_bytes) + task_cell + channel + size_class(32);
    Scenario::new(ScenarioId::TaskLeak, LeakClass::TaskLeak, "fanout", vec![Step::get("/items/{key}")])
        .retains(bytes)
        .tasks(1)
        .gauge("fanout_collectors")
        .paths(
            "the fan-out collector holds a clone of its own channel's sender, so recv() never ends; the task and its 2 KiB request context stay",
            "the collector drops that sender and selects on a CancellationToken cancelled when the handler returns",
        )
}
