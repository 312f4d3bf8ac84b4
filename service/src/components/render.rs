//! `POST /render/{key}`: renders a document (a header, the request body as
//! its payload, a footer) into a buffer taken from a pool, and answers it.
//!
//! Scenario seeded here: `pool-no-reset` (retention, and a data-exposure bug).
//! The renderer appends to the buffer it is given and the handler answers the
//! first `written` bytes of it: both assume the pool hands out empty buffers.
//! LEAKY PATH: buffers go back to the pool without being cleared or capped, so
//! every document rendered stays in its pooled buffer (each one grows by a
//! whole document per use, forever), and the next request that takes that
//! buffer answers the bytes at its start: an earlier request's document.
//! FIXED PATH: a buffer is cleared when it goes back, and one whose capacity
//! grew past `render_buffer_cap_bytes` is dropped instead of pooled.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use bytes::Bytes;

use super::{Component, Ctx, Gauges};
use crate::catalogue::{LeakClass, Scenario, ScenarioId, Step};
use crate::config::Config;
use crate::error::{validate_key, AppError};
use crate::extract::{Path, RawBody};

/// Body size of the catalogue recipe: one rendered payload.
pub const RECIPE_BODY_BYTES: u64 = 4 * 1024;

/// Key length the ground truth assumes (loadgen's keys are `<prefix>-<n>`).
const MODEL_KEY_BYTES: u64 = 16;

/// Size of one chunk of a render buffer (a jemalloc size class exactly).
pub const CHUNK_BYTES: usize = 16 * 1024;

/// A render buffer made of fixed-size chunks (like hyper's `BufList`), so
/// appending never moves what is already written: growth costs one chunk
/// allocation per 16 KiB, however large the buffer has become.
#[derive(Debug, Default)]
pub struct RenderBuf {
    chunks: Vec<Vec<u8>>,
    len: usize,
}

impl RenderBuf {
    /// Bytes written.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes allocated for chunks.
    pub fn capacity(&self) -> usize {
        self.chunks.len() * CHUNK_BYTES
    }

    /// Appends `data` after what is written.
    pub fn extend_from_slice(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let full = self.chunks.last().is_none_or(|c| c.len() == CHUNK_BYTES);
            if full {
                self.chunks.push(Vec::with_capacity(CHUNK_BYTES));
            }
            let chunk = self.chunks.last_mut().expect("a chunk with room");
            let n = (CHUNK_BYTES - chunk.len()).min(data.len());
            chunk.extend_from_slice(&data[..n]);
            self.len += n;
            data = &data[n..];
        }
    }

    /// A copy of the first `n` bytes written.
    pub fn prefix(&self, n: usize) -> Bytes {
        let mut out = Vec::with_capacity(n.min(self.len));
        for chunk in &self.chunks {
            let take = (n - out.len()).min(chunk.len());
            out.extend_from_slice(&chunk[..take]);
            if out.len() == n {
                break;
            }
        }
        Bytes::from(out)
    }

    /// Empties the buffer, keeping its first chunk for reuse.
    pub fn clear(&mut self) {
        self.chunks.truncate(1);
        if let Some(first) = self.chunks.first_mut() {
            first.clear();
        }
        self.len = 0;
    }
}

/// A pooled render buffer and what the leak budget holds for it.
#[derive(Default)]
struct PooledBuffer {
    buf: RenderBuf,
    /// Bytes of stale documents in `buf` reserved from the `pool-no-reset`
    /// budget (leaky path only); given back when the buffer is cleared or dropped.
    reserved: u64,
}

/// The render component.
pub struct RenderPool {
    ctx: Ctx,
    /// Idle buffers, at most `render_pool_max` (LIFO: a sequential client gets
    /// the buffer the previous request used). A `std::sync::Mutex`: held for a
    /// push or a pop, never across `.await`.
    /// LEAKY PATH: the buffers here keep every document rendered into them (the
    /// pool owns them for the life of the process); FIXED PATH: they are empty
    /// and at most `render_buffer_cap_bytes` each.
    pool: Mutex<Vec<PooledBuffer>>,
    documents: AtomicU64,
    /// Buffers the fixed path refused to pool because they grew past the cap.
    refused: AtomicU64,
}

/// Bytes of the document [`render_document`] writes for `key` and a payload of `payload` bytes.
pub fn document_len(key_bytes: u64, payload: u64) -> u64 {
    // `<render key="KEY" bytes="N">\n` + payload + `\n</render>\n`
    let digits = payload.max(1).ilog10() as u64 + 1;
    (25 + key_bytes + digits) + payload + 11
}

/// Appends `key`'s document to `out` and returns how many bytes it wrote.
/// Kept out of line so a heap profile names it as the buffers' allocation site.
#[inline(never)]
pub fn render_document(out: &mut RenderBuf, key: &str, payload: &[u8]) -> usize {
    let header = format!("<render key=\"{key}\" bytes=\"{}\">\n", payload.len());
    let footer = b"\n</render>\n";
    let len = header.len() + payload.len() + footer.len();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(payload);
    out.extend_from_slice(footer);
    len
}

impl RenderPool {
    pub fn new(ctx: Ctx) -> RenderPool {
        RenderPool {
            ctx,
            pool: Mutex::new(Vec::new()),
            documents: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        }
    }

    fn take(&self) -> PooledBuffer {
        self.pool
            .lock()
            .expect("render pool lock")
            .pop()
            .unwrap_or_default()
    }

    /// Empties a buffer and gives back what the budget held for it.
    fn reset(&self, pooled: &mut PooledBuffer) {
        pooled.buf.clear();
        self.ctx.budget.release(
            ScenarioId::PoolNoReset,
            std::mem::take(&mut pooled.reserved),
        );
    }

    /// Puts a buffer back, or drops it when the pool is full.
    fn give_back(&self, pooled: PooledBuffer) {
        let mut pool = self.pool.lock().expect("render pool lock");
        if pool.len() < self.ctx.config.render_pool_max {
            pool.push(pooled);
            return;
        }
        drop(pool);
        self.ctx
            .budget
            .release(ScenarioId::PoolNoReset, pooled.reserved);
    }

    /// Renders `key`'s document and returns the bytes the response carries.
    fn render(&self, key: &str, payload: &[u8]) -> Bytes {
        self.documents.fetch_add(1, Ordering::Relaxed);
        let mut pooled = self.take();
        let len = document_len(key.len() as u64, payload.len() as u64);
        if self.ctx.flags.is_on(ScenarioId::PoolNoReset) {
            if self.ctx.budget.try_retain(ScenarioId::PoolNoReset, len) {
                // LEAKY: the buffer still holds every document rendered into it
                // since it was made; this one is appended after them, and the
                // response below is the buffer's first `written` bytes.
                let written = render_document(&mut pooled.buf, key, payload);
                pooled.reserved += len;
                let response = pooled.buf.prefix(written);
                // LEAKY: back into the pool as is: not cleared, not capped.
                self.give_back(pooled);
                return response;
            }
            // Budget spent: keep what the pool holds, render this one the fixed way.
            self.give_back(pooled);
            pooled = PooledBuffer::default();
        }
        // FIXED: a buffer pooled while the leak was on may hold stale documents.
        self.reset(&mut pooled);
        let written = render_document(&mut pooled.buf, key, payload);
        let response = pooled.buf.prefix(written);
        // FIXED: cleared on return; a buffer grown past the cap is freed, not pooled.
        if pooled.buf.capacity() > self.ctx.config.render_buffer_cap_bytes {
            self.refused.fetch_add(1, Ordering::Relaxed);
        } else {
            pooled.buf.clear();
            self.give_back(pooled);
        }
        response
    }
}

async fn render(
    State(pool): State<Arc<RenderPool>>,
    Path(key): Path<String>,
    RawBody(payload): RawBody,
) -> Result<Response, AppError> {
    let key = validate_key(&key)?;
    let document = pool.render(key, &payload);
    Ok((
        [(header::CONTENT_TYPE, "application/octet-stream")],
        document,
    )
        .into_response())
}

impl Component for RenderPool {
    fn router(self: Arc<Self>) -> Router {
        Router::new()
            .route("/render/{key}", post(render))
            .with_state(self)
    }

    fn gauges(&self, out: &mut Gauges) {
        let pool = self.pool.lock().expect("render pool lock");
        out.gauge(
            "pool_buffers",
            pool.len() as u64,
            "Buffers in the render pool.",
        );
        out.gauge(
            "pool_capacity_bytes",
            pool.iter().map(|p| p.buf.capacity() as u64).sum(),
            "Capacity of the buffers the render pool holds.",
        );
        out.variant_gauge(
            "pool_stale_bytes",
            pool.iter().map(|p| p.buf.len() as u64).sum(),
            "Bytes of earlier documents left in pooled buffers (not cleared on return).",
        );
        drop(pool);
        out.counter(
            "render_documents",
            self.documents.load(Ordering::Relaxed),
            "Documents rendered since start.",
        );
        out.counter(
            "pool_refused_buffers",
            self.refused.load(Ordering::Relaxed),
            "Buffers the render pool refused to keep (too large).",
        );
    }
}

/// The `pool-no-reset` catalogue entry.
pub fn scenario(_c: &Config) -> Scenario {
    // Each leaky render appends one whole document to a pooled buffer that is
    // never cleared: the pool's capacity (live heap, in 16 KiB chunks, an
    // exact size class) grows by one document per request. The chunk lists
    // (24 bytes per 16 KiB) and each buffer's part-filled last chunk add
    // noise, not slope.
    let bytes = document_len(MODEL_KEY_BYTES, RECIPE_BODY_BYTES);
    Scenario::new(
        ScenarioId::PoolNoReset,
        LeakClass::Retention,
        "render",
        vec![Step::with_body("POST", "/render/{key}", RECIPE_BODY_BYTES)],
    )
    .retains(bytes)
    .gauge("pool_capacity_bytes")
    .paths(
        "pooled render buffers go back uncleared and uncapped: each keeps every document rendered into it (allocated in render_document), and a response carries an earlier request's bytes",
        "buffers are cleared when they go back to the pool, and one grown past 64 KiB is freed instead",
    )
}
