//! Document ingest: `POST /documents?id={key}` takes a document (the opaque
//! request body), keeps its header in an index, and `GET /documents?id={key}`
//! answers from that index.
//!
//! Scenario seeded here: `subslice-pin` (retention). The index means to keep
//! only each document's first `document_header_bytes` bytes. On the leaky path
//! the kept header is `Bytes::slice` of the body: a view that shares the body's
//! reference count, so the whole buffer (default 1 MiB) stays alive for as
//! long as the 32-byte header does. The fixed path copies the header out
//! (`Bytes::copy_from_slice`) and the body is freed when the request ends.
//!
//! The index is bounded by entry count ([`INDEX_CAPACITY`], oldest evicted),
//! sized for 32-byte headers: a few MiB on the fixed path. The leak is that the
//! bound counts entries while each entry silently pins a megabyte, so the leaky
//! path reaches the leak budget (2 GiB) long before the bound (16 GiB).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use bytes::Bytes;
use lru::LruCache;
use serde::{Deserialize, Serialize};

use super::{Component, Ctx, Gauges};
use crate::catalogue::{map_slot_bytes, size_class, LeakClass, Scenario, ScenarioId, Step};
use crate::config::Config;
use crate::error::{validate_key, AppError};
use crate::extract::{Query, RawBody};

/// Most documents the index keeps; the oldest is evicted past it.
pub const INDEX_CAPACITY: usize = 16 * 1024;

/// Bytes of a distinct key as ground truth models it: loadgen's keys
/// (`lg<pid><millis>-<n>`, about 26 bytes) at their jemalloc size class.
const MODEL_KEY_BYTES: u64 = 32;

/// One indexed document.
struct IndexEntry {
    /// The document's header. LEAKY PATH: a slice of the request body, so it
    /// keeps the whole body buffer alive. FIXED PATH: an owned copy of the
    /// header bytes only.
    header: Bytes,
    /// The document's full length, for the lookup answer.
    document_bytes: u64,
    /// Leak-budget bytes this entry reserved (0 on the fixed path), given back
    /// when it is evicted or replaced.
    reserved: u64,
}

/// The index: headers by document id, evicted oldest first. An
/// `lru::LruCache` used as a FIFO: lookups `peek` and a re-ingested id is
/// replaced in place (`peek_mut`), so only a new id changes the order.
struct Index {
    by_id: LruCache<String, IndexEntry>,
}

impl Default for Index {
    fn default() -> Self {
        // Unbounded to lru (it would reserve the whole table up front), capped
        // at INDEX_CAPACITY here.
        Index {
            by_id: LruCache::unbounded(),
        }
    }
}

/// The ingest component.
pub struct DocumentIngest {
    ctx: Ctx,
    /// Headers of the last [`INDEX_CAPACITY`] documents, owned by the
    /// process-wide component. A `std::sync::Mutex`: held for one insert or
    /// lookup, never across an `.await`.
    index: Mutex<Index>,
    /// Entries whose header pins its document's body (leaky path), now.
    pinned: AtomicU64,
    /// Documents ingested so far.
    ingested: AtomicU64,
}

#[derive(Deserialize)]
struct DocumentQuery {
    id: String,
}

/// What `POST /documents` answers.
#[derive(Serialize)]
struct Ingested {
    id: String,
    document_bytes: usize,
    header_bytes: usize,
    indexed: usize,
}

/// What `GET /documents` answers.
#[derive(Serialize)]
struct Lookup {
    id: String,
    document_bytes: u64,
    header_hex: String,
}

/// Heap bytes the body of a document of `len` bytes occupies, plus the
/// `Bytes` shared header made when it is first sliced.
fn pinned_body_bytes(len: u64) -> u64 {
    size_class(len) + size_class(24)
}

impl DocumentIngest {
    pub fn new(ctx: Ctx) -> DocumentIngest {
        DocumentIngest {
            ctx,
            index: Mutex::new(Index::default()),
            pinned: AtomicU64::new(0),
            ingested: AtomicU64::new(0),
        }
    }

    /// Indexes `document` under `id`; returns the header length and the index size.
    fn ingest(&self, id: &str, document: Bytes) -> (usize, usize) {
        let header_len = document.len().min(self.ctx.config.document_header_bytes);
        let reserve = pinned_body_bytes(document.len() as u64);
        let entry = if self.ctx.leak_admitted(ScenarioId::SubslicePin, reserve) {
            // LEAKY: `slice` shares the body's allocation; the index entry,
            // owned by this component until evicted, pins the whole body.
            IndexEntry {
                header: document.slice(..header_len),
                document_bytes: document.len() as u64,
                reserved: reserve,
            }
        } else {
            // FIXED: an owned copy of the header; the body is freed when this
            // request ends.
            IndexEntry {
                header: Bytes::copy_from_slice(&document[..header_len]),
                document_bytes: document.len() as u64,
                reserved: 0,
            }
        };
        drop(document);
        let mut freed = Vec::new();
        let indexed = {
            let mut index = self.index.lock().expect("index lock");
            if entry.reserved > 0 {
                self.pinned.fetch_add(1, Ordering::Relaxed);
            }
            if let Some(slot) = index.by_id.peek_mut(id) {
                freed.push(std::mem::replace(slot, entry));
            } else {
                // Evict before inserting, so the index never outgrows the bound.
                while index.by_id.len() >= INDEX_CAPACITY {
                    let Some((_, oldest)) = index.by_id.pop_lru() else {
                        break;
                    };
                    freed.push(oldest);
                }
                index.by_id.push(id.to_owned(), entry);
            }
            index.by_id.len()
        };
        // Dropped outside the lock: freeing a pinned megabyte takes a moment.
        for old in freed {
            self.forget(old);
        }
        self.ingested.fetch_add(1, Ordering::Relaxed);
        (header_len, indexed)
    }

    /// Drops an entry that left the index and gives back what it reserved.
    fn forget(&self, entry: IndexEntry) {
        if entry.reserved > 0 {
            self.pinned.fetch_sub(1, Ordering::Relaxed);
            self.ctx
                .budget
                .release(ScenarioId::SubslicePin, entry.reserved);
        }
    }

    fn lookup(&self, id: &str) -> Option<Lookup> {
        let index = self.index.lock().expect("index lock");
        index.by_id.peek(id).map(|entry| Lookup {
            id: id.to_owned(),
            document_bytes: entry.document_bytes,
            header_hex: entry.header.iter().map(|b| format!("{b:02x}")).collect(),
        })
    }
}

async fn ingest_document(
    State(ingest): State<Arc<DocumentIngest>>,
    Query(query): Query<DocumentQuery>,
    RawBody(document): RawBody,
) -> Result<(StatusCode, Json<Ingested>), AppError> {
    let id = validate_key(&query.id)?;
    if document.is_empty() {
        return Err(AppError::BadRequest(
            "a document needs a body (its first bytes are its header)".into(),
        ));
    }
    let document_bytes = document.len();
    let (header_bytes, indexed) = ingest.ingest(id, document);
    Ok((
        StatusCode::CREATED,
        Json(Ingested {
            id: id.to_owned(),
            document_bytes,
            header_bytes,
            indexed,
        }),
    ))
}

async fn lookup_document(
    State(ingest): State<Arc<DocumentIngest>>,
    Query(query): Query<DocumentQuery>,
) -> Result<Json<Lookup>, AppError> {
    let id = validate_key(&query.id)?;
    ingest
        .lookup(id)
        .map(Json)
        .ok_or_else(|| AppError::NotFound(format!("no document `{id}` in the index")))
}

impl Component for DocumentIngest {
    fn router(self: Arc<Self>) -> Router {
        Router::new()
            .route("/documents", post(ingest_document).get(lookup_document))
            .with_state(self)
    }

    fn gauges(&self, out: &mut Gauges) {
        let entries = self.index.lock().expect("index lock").by_id.len() as u64;
        out.gauge(
            "ingest_index_entries",
            entries,
            "Documents in the ingest index; each holds its 32-byte header.",
        );
        out.variant_gauge(
            "ingest_pinned_documents",
            self.pinned.load(Ordering::Relaxed),
            "Index entries whose header slice pins the whole document body.",
        );
        out.counter(
            "ingest_documents",
            self.ingested.load(Ordering::Relaxed),
            "Documents ingested since start.",
        );
    }
}

/// The `subslice-pin` catalogue entry.
pub fn scenario(c: &Config) -> Scenario {
    // Per document on the leaky path: the whole body buffer (axum collects a
    // multi-chunk body into one allocation of exactly its length) and the
    // `Bytes` shared header that slicing it creates, plus the index entry
    // every path keeps: the id's buffer, the LruCache's boxed node (the key
    // String 24, the IndexEntry, and the two list pointers) and its map slot
    // (a key reference and a node pointer, 16). Not the header: it is inside
    // the body.
    let entry = size_class(MODEL_KEY_BYTES)
        + size_class(24 + std::mem::size_of::<IndexEntry>() as u64 + 16)
        + map_slot_bytes(16);
    let bytes = pinned_body_bytes(c.document_bytes) + entry;
    Scenario::new(
        ScenarioId::SubslicePin,
        LeakClass::Retention,
        "ingest",
        vec![Step::with_body("POST", "/documents?id={key}", c.document_bytes)],
    )
    .retains(bytes)
    .gauge("ingest_pinned_documents")
    .paths(
        "the ingest index keeps each document's 32-byte header as a Bytes::slice of the body, pinning the whole 1 MiB body buffer",
        "the index keeps a copy of the header (Bytes::copy_from_slice); the body is freed when the request ends",
    )
}
