//! Blob scratch space: `PUT /blobs/{key}` copies an uploaded blob into its own
//! anonymous memory map (a fixed-size slot, `mmap_bytes`, pre-faulted so
//! later work on it never page-faults, with a guard page after it that turns
//! an overrun into a crash instead of corruption); `GET /blobs/{key}` reads it.
//!
//! Scenario seeded here: `offheap-mmap` (off-heap). The maps are made with
//! `mmap(2)`, not the allocator, so jemalloc's `allocated` never sees them:
//! only RSS and the process's mapping count (`/proc/self/maps`) do.
//! LEAKY PATH: the registry keeps every key's slot forever; each distinct key
//! adds `mmap_bytes` of resident memory and two mappings (slot + guard).
//! FIXED PATH: the registry keeps the `mmap_registry_max` newest slots and
//! unmaps the oldest.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::routing::put;
use axum::{Json, Router};
use lru::LruCache;
use memmap2::MmapMut;
use serde_json::{json, Value};

use super::{Component, Ctx, Gauges};
use crate::catalogue::{size_class, LeakClass, Scenario, ScenarioId, Step};
use crate::config::Config;
use crate::error::{validate_key, AppError};
use crate::extract::{Path, RawBody};

/// Body size of the catalogue recipe: a blob smaller than its slot.
pub const RECIPE_BODY_BYTES: u64 = 16 * 1024;

/// Key length the ground truth assumes (loadgen's keys are `<prefix>-<n>`).
const MODEL_KEY_BYTES: u64 = 24;

fn page_size() -> usize {
    // SAFETY: sysconf has no memory-safety preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(page).unwrap_or(4096).max(1)
}

/// One blob's slot: an anonymous map of `slot_bytes` followed by a guard page.
pub struct BlobSlot {
    /// `slot_bytes + page` long; the last page is `PROT_NONE`. Only
    /// `map[..slot_bytes]` may be touched. Dropping it unmaps both.
    map: MmapMut,
    slot_bytes: usize,
    /// Bytes of the blob at the start of the slot.
    len: usize,
    /// Bytes reserved from the `offheap-mmap` budget (leaky registry only).
    reserved: u64,
}

impl BlobSlot {
    /// Maps a slot, copies `blob` in and touches every page so it is resident.
    /// Kept out of line so a profile or trace names the mapping site.
    #[inline(never)]
    pub fn new(slot_bytes: usize, blob: &[u8]) -> std::io::Result<BlobSlot> {
        let page = page_size();
        let slot_bytes = slot_bytes.max(blob.len()).max(1).div_ceil(page) * page;
        let mut map = MmapMut::map_anon(slot_bytes + page)?;
        // SAFETY: the range is the last page of a mapping we own, page-aligned
        // (mmap returns page-aligned memory and slot_bytes is rounded to
        // pages above); nothing reads or writes it afterwards.
        let rc = unsafe {
            libc::mprotect(
                map.as_mut_ptr().add(slot_bytes).cast(),
                page,
                libc::PROT_NONE,
            )
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let slot = &mut map[..slot_bytes];
        slot[..blob.len()].copy_from_slice(blob);
        // Pre-fault the rest of the slot: one write per page makes it resident.
        for offset in (blob.len()..slot_bytes).step_by(page) {
            slot[offset] = 0;
        }
        Ok(BlobSlot {
            map,
            slot_bytes,
            len: blob.len(),
            reserved: 0,
        })
    }

    fn blob(&self) -> &[u8] {
        &self.map[..self.slot_bytes][..self.len]
    }
}

/// FIXED PATH's registry: at most `max` slots, the least recently written
/// unmapped first (an `lru::LruCache` whose lookups `peek`, so only a
/// write moves a key to the front).
struct BoundedRegistry {
    slots: LruCache<String, BlobSlot>,
}

impl Default for BoundedRegistry {
    fn default() -> Self {
        // Unbounded to lru, capped here: the cap is a runtime setting.
        BoundedRegistry {
            slots: LruCache::unbounded(),
        }
    }
}

impl BoundedRegistry {
    fn insert(&mut self, key: String, slot: BlobSlot, max: usize) {
        // A rewritten key's old slot comes back here and is dropped (unmapped).
        drop(self.slots.push(key, slot));
        while self.slots.len() > max.max(1) {
            // Dropping the slot unmaps it.
            drop(self.slots.pop_lru());
        }
    }
}

/// The blob scratch component.
pub struct BlobScratch {
    ctx: Ctx,
    /// LEAKY PATH: every key's slot, never unmapped. This map, owned by the
    /// process-wide component, keeps `mmap_bytes` resident per distinct key
    /// (outside the allocator) until the leak budget stops it.
    /// `std::sync::Mutex`s: held for an insert or a lookup, never across `.await`.
    unbounded: Mutex<HashMap<String, BlobSlot>>,
    /// FIXED PATH: the newest `mmap_registry_max` slots.
    bounded: Mutex<BoundedRegistry>,
    /// Slots mapped so far.
    mapped: AtomicU64,
    /// The most slots the leaky registry keeps: each is two mappings, and a
    /// process that reaches `vm.max_map_count` mappings can no longer grow
    /// its heap (jemalloc maps too), so the leak stops at a quarter of it
    /// (8,191 slots at the default 65,530), whatever the byte budget says.
    max_leaked_slots: usize,
    /// Whether the map cap has been reported in the log.
    cap_logged: std::sync::atomic::AtomicBool,
}

/// A quarter of `vm.max_map_count`, in slots of two mappings each.
fn max_leaked_slots() -> usize {
    let limit = std::fs::read_to_string("/proc/sys/vm/max_map_count")
        .ok()
        .and_then(|s| s.trim().parse::<usize>().ok())
        .unwrap_or(65_530);
    (limit / 4 / 2).max(1)
}

/// Rounds `bytes` up to whole pages (a slot is a whole number of pages).
fn slot_bytes(bytes: u64) -> usize {
    let page = page_size();
    (bytes as usize).max(1).div_ceil(page) * page
}

/// Heap bytes of one leaky registry entry: the key at its size class and the
/// map's slot (String 24 + BlobSlot 40 bytes, at a 7/8 load factor, plus the
/// control byte).
fn entry_heap_bytes(key_bytes: u64) -> u64 {
    let slot = (24 + std::mem::size_of::<BlobSlot>() as u64 + 1) * 8 / 7;
    size_class(key_bytes) + slot
}

impl BlobScratch {
    pub fn new(ctx: Ctx) -> BlobScratch {
        BlobScratch {
            ctx,
            unbounded: Mutex::new(HashMap::new()),
            bounded: Mutex::new(BoundedRegistry::default()),
            mapped: AtomicU64::new(0),
            max_leaked_slots: max_leaked_slots(),
            cap_logged: std::sync::atomic::AtomicBool::new(false),
        }
    }

    fn put(&self, key: &str, blob: &[u8]) -> Result<Value, AppError> {
        let slot_len = slot_bytes(self.ctx.config.mmap_bytes);
        if blob.len() > slot_len {
            return Err(AppError::Rejected(
                axum::http::StatusCode::PAYLOAD_TOO_LARGE,
                format!("a blob is at most {slot_len} bytes (its scratch slot)"),
            ));
        }
        let mut slot = BlobSlot::new(slot_len, blob).map_err(|e| {
            AppError::Unavailable(format!("cannot map a {slot_len}-byte scratch slot: {e}"))
        })?;
        self.mapped.fetch_add(1, Ordering::Relaxed);
        let cost = slot_len as u64 + entry_heap_bytes(key.len() as u64);
        let at_cap =
            self.unbounded.lock().expect("blob registry lock").len() >= self.max_leaked_slots;
        if at_cap
            && self.ctx.flags.is_on(ScenarioId::OffheapMmap)
            && !self.cap_logged.swap(true, Ordering::Relaxed)
        {
            tracing::warn!(
                slots = self.max_leaked_slots,
                "offheap-mmap: the leaky registry holds a quarter of vm.max_map_count in mappings; no longer retaining (the map cap of the leak budget)"
            );
        }
        if !at_cap && self.ctx.leak_admitted(ScenarioId::OffheapMmap, cost) {
            // LEAKY: kept by key forever; only a PUT on the same key replaces
            // (and unmaps) a slot, and keys are distinct.
            slot.reserved = cost;
            let replaced = self
                .unbounded
                .lock()
                .expect("blob registry lock")
                .insert(key.to_owned(), slot);
            if let Some(old) = replaced {
                self.ctx
                    .budget
                    .release(ScenarioId::OffheapMmap, old.reserved);
            }
        } else {
            // FIXED: bounded; inserting past the bound unmaps the oldest slot.
            self.bounded.lock().expect("blob registry lock").insert(
                key.to_owned(),
                slot,
                self.ctx.config.mmap_registry_max,
            );
        }
        Ok(json!({ "key": key, "bytes": blob.len(), "slot_bytes": slot_len }))
    }

    fn get(&self, key: &str) -> Option<Value> {
        let describe = |slot: &BlobSlot| {
            let blob = slot.blob();
            let digest = blob.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                (h ^ *b as u64).wrapping_mul(0x100_0000_01b3)
            });
            json!({ "key": key, "bytes": blob.len(), "digest": digest })
        };
        if let Some(slot) = self.unbounded.lock().expect("blob registry lock").get(key) {
            return Some(describe(slot));
        }
        self.bounded
            .lock()
            .expect("blob registry lock")
            .slots
            .peek(key)
            .map(describe)
    }
}

async fn put_blob(
    State(blobs): State<Arc<BlobScratch>>,
    Path(key): Path<String>,
    RawBody(blob): RawBody,
) -> Result<Json<Value>, AppError> {
    let key = validate_key(&key)?;
    Ok(Json(blobs.put(key, &blob)?))
}

async fn get_blob(
    State(blobs): State<Arc<BlobScratch>>,
    Path(key): Path<String>,
) -> Result<Json<Value>, AppError> {
    let key = validate_key(&key)?;
    blobs
        .get(key)
        .map(Json)
        .ok_or_else(|| AppError::NotFound(format!("no blob `{key}`")))
}

impl Component for BlobScratch {
    fn router(self: Arc<Self>) -> Router {
        Router::new()
            .route("/blobs/{key}", put(put_blob).get(get_blob))
            .with_state(self)
    }

    fn gauges(&self, out: &mut Gauges) {
        let unbounded = self.unbounded.lock().expect("blob registry lock").len() as u64;
        let bounded = self.bounded.lock().expect("blob registry lock").slots.len() as u64;
        let regions = unbounded + bounded;
        out.gauge(
            "mmap_regions",
            regions,
            "Blob scratch regions mapped now, each its own anonymous mapping outside the allocator.",
        );
        out.variant_gauge(
            "mmap_unbounded_regions",
            unbounded,
            "Regions the leaky blob registry keeps and never unmaps.",
        );
        out.gauge(
            "mmap_resident_bytes",
            regions * slot_bytes(self.ctx.config.mmap_bytes) as u64,
            "Bytes the mapped blob regions hold resident (touched pages).",
        );
        out.counter(
            "mmap_mapped_total",
            self.mapped.load(Ordering::Relaxed),
            "Blob regions mapped since start.",
        );
    }
}

/// The `offheap-mmap` catalogue entry.
pub fn scenario(c: &Config) -> Scenario {
    // RSS: the whole slot (every page written). The guard page is never
    // touched, so it is mapped but not resident. Heap: only the registry
    // entry, which is what `allocated` sees (~100 bytes, against 256 KiB of RSS).
    let rss = slot_bytes(c.mmap_bytes) as u64;
    Scenario::new(
        ScenarioId::OffheapMmap,
        LeakClass::OffHeap,
        "blobs",
        vec![Step::with_body("PUT", "/blobs/{key}", RECIPE_BODY_BYTES)],
    )
    .retains(entry_heap_bytes(MODEL_KEY_BYTES))
    .rss(rss)
    .gauge("mmap_regions")
    .paths(
        "the blob registry keeps every key's 256 KiB anonymous map (made in BlobSlot::new, touched) forever: RSS and the mapping count grow, jemalloc never sees it",
        "a registry of the 16 newest maps that unmaps the oldest",
    )
}
