//! Exports: `POST /exports/{key}` adds a record (the request body) to the
//! running export archive and answers once the record is written;
//! `GET /exports` answers the export job's status.
//!
//! The export job is one long-running task (spawned on `ctx.tracker`, ended
//! by `ctx.shutdown`, logging when it stops) that consumes the stream of
//! records in a loop (`records.recv().await`, one turn per record). Each
//! record is written as one *part*: the job opens a part writer ([`ExportPart`]: a
//! staging block of `export_block_bytes`, 64 KiB, and an open handle counted
//! in `export_open_handles`), frames the record into the block, pads and
//! checksums it, and adds it to the archive's totals. Every
//! `export_archive_interval` (an hour) the archive is sealed and the next
//! one starts; the archive itself keeps only running totals.
//!
//! Scenario seeded here: `defer-in-loop` (retention). In Go, `defer
//! part.Close()` inside the loop runs every close only when the function
//! returns. Rust has no such statement: a part bound inside the loop body is
//! dropped at the end of its turn. The Rust form of the bug is the guard kept
//! in a collection that lives as long as the loop.
//! LEAKY PATH: each part is pushed into the archive's `open_parts` vector, to
//! be closed when the archive is sealed: the job holds every part it wrote
//! this hour, each with its whole staging block, until the hour ends (or the
//! service stops). The heap climbs by a block per record for as long as the
//! archive is open.
//! FIXED PATH: a part is closed (dropped) at the end of its own turn of the
//! loop, so at most one block is alive at a time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::{Component, Ctx, Gauges};
use crate::catalogue::{size_class, LeakClass, Scenario, ScenarioId, Step};
use crate::config::Config;
use crate::error::{validate_key, AppError};
use crate::extract::{Path, RawBody};

/// Bytes of a distinct key as ground truth models it: loadgen's keys
/// (`lg<pid><millis>-<n>`, about 26 bytes) at their jemalloc size class.
const MODEL_KEY_BYTES: u64 = 32;

/// Room a staging block keeps for a part's header (the key's length, the
/// key of at most 128 bytes, the record's length); the record gets the rest.
pub const PART_HEADER_ROOM: u64 = 256;

/// Records waiting for the export job at most; a full queue answers 429.
pub const QUEUE_CAPACITY: usize = 1024;

/// How long `POST /exports/{key}` waits for the job to write its record.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// When the part of a record is closed. Chosen by the handler, which reads
/// the scenario's flag once per request; the job obeys it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CloseAt {
    /// FIXED PATH: at the end of the loop turn that wrote it.
    EndOfTurn,
    /// LEAKY PATH: when the archive is sealed, like a `defer` in the loop.
    /// `reserved` is what the part took from the leak budget.
    ArchiveSeal { reserved: u64 },
}

/// One record on its way to the export job.
struct Record {
    key: String,
    /// The request body. Dropped as soon as it is framed into a block.
    data: Bytes,
    close: CloseAt,
    /// Where the job reports the written part.
    written: oneshot::Sender<Written>,
}

/// What `POST /exports/{key}` answers: the part the record became.
#[derive(Clone, Debug, Serialize)]
pub struct Written {
    pub key: String,
    /// The archive the record went into (1 for the first since start).
    pub archive: u64,
    /// The part's number within that archive (from 1).
    pub part: u64,
    /// Bytes of the part's block (the record, framed and padded).
    pub bytes: u64,
    pub checksum: u64,
}

/// Counters shared by the handlers, the job and the gauges.
#[derive(Default)]
struct ExportStats {
    /// Part writers open now: incremented when a part opens, decremented
    /// when it is dropped (closed).
    open_handles: AtomicU64,
    /// Records written since start.
    records: AtomicU64,
    /// Archives sealed since start.
    sealed: AtomicU64,
    /// The archive being written. A `std::sync::Mutex`: held for a counter
    /// update or a status read, never across `.await`.
    current: Mutex<ArchiveTotals>,
}

/// The running totals of the open archive: all an archive keeps of its
/// records once their parts are closed.
#[derive(Clone, Debug, Default)]
struct ArchiveTotals {
    number: u64,
    records: u64,
    bytes: u64,
    digest: u64,
    /// When it opened (None before the job starts).
    opened_at: Option<Instant>,
}

/// An open part writer: a staging block the record is framed into, and the
/// open handle it counts for. Closing a part is dropping it: its block is
/// freed and its handle given back.
pub struct ExportPart {
    key: String,
    block: Vec<u8>,
    stats: Arc<ExportStats>,
}

impl ExportPart {
    /// Opens a part for `key` with a staging block of `block_bytes`. Kept
    /// out of line so a heap profile names it as the allocation site of the
    /// blocks.
    #[inline(never)]
    fn open(key: String, block_bytes: usize, stats: &Arc<ExportStats>) -> ExportPart {
        stats.open_handles.fetch_add(1, Ordering::Relaxed);
        ExportPart {
            key,
            block: Vec::with_capacity(block_bytes),
            stats: stats.clone(),
        }
    }

    /// Frames `record` into the block: the key's length and the key, the
    /// record's length and the record, then zeros to the block's end (every
    /// page of the block is written), `block_bytes` in all. Returns the
    /// checksum of the framed bytes.
    fn write(&mut self, record: &[u8], block_bytes: usize) -> u64 {
        self.block.clear();
        self.block
            .extend_from_slice(&(self.key.len() as u16).to_le_bytes());
        self.block.extend_from_slice(self.key.as_bytes());
        self.block
            .extend_from_slice(&(record.len() as u32).to_le_bytes());
        self.block.extend_from_slice(record);
        let checksum = self.block.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ *b as u64).wrapping_mul(0x100_0000_01b3)
        });
        self.block.resize(block_bytes, 0);
        checksum
    }
}

impl Drop for ExportPart {
    fn drop(&mut self) {
        self.stats.open_handles.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The export job: owns the receiving end of the record stream.
struct ExportJob {
    ctx: Ctx,
    stats: Arc<ExportStats>,
    records: mpsc::Receiver<Record>,
}

impl ExportJob {
    /// Writes archive after archive until shutdown.
    async fn run(mut self) {
        let mut number = 1;
        while self.export_archive(number).await {
            number += 1;
        }
        tracing::info!(
            archives_sealed = self.stats.sealed.load(Ordering::Relaxed),
            records = self.stats.records.load(Ordering::Relaxed),
            "export job stopped"
        );
    }

    /// Exports records into archive `number` until it is due to be sealed
    /// (`export_archive_interval` after it opened) or the service shuts
    /// down, then seals it. Returns whether the job goes on.
    async fn export_archive(&mut self, number: u64) -> bool {
        let opened_at = Instant::now();
        *self.stats.current.lock().expect("export totals lock") = ArchiveTotals {
            number,
            opened_at: Some(opened_at),
            ..ArchiveTotals::default()
        };
        let seal_at = tokio::time::sleep_until(opened_at + self.ctx.config.export_archive_interval);
        tokio::pin!(seal_at);
        let block_bytes = self.ctx.config.export_block_bytes as usize;
        // LEAKY PATH: the parts whose close was put off until the archive is
        // sealed (Go's `defer part.Close()` in the loop). This vector lives
        // as long as the loop below, an hour, and keeps every such part and
        // its whole staging block alive until then.
        let mut open_parts: Vec<ExportPart> = Vec::new();
        let mut reserved = 0;
        let goes_on = loop {
            let record = tokio::select! {
                biased;
                _ = self.ctx.shutdown.cancelled() => break false,
                _ = &mut seal_at => break true,
                record = self.records.recv() => match record {
                    Some(record) => record,
                    None => break false,
                },
            };
            let Record {
                key,
                data,
                close,
                written,
            } = record;
            let mut part = ExportPart::open(key, block_bytes, &self.stats);
            let checksum = part.write(&data, block_bytes);
            drop(data);
            let _ = written.send(self.count(&part, checksum));
            match close {
                CloseAt::ArchiveSeal { reserved: bytes } => {
                    // LEAKY: "closed when the archive is sealed".
                    reserved += bytes;
                    open_parts.push(part);
                }
                // FIXED: closed here, at the end of its own turn: the block
                // is freed before the next record is read.
                CloseAt::EndOfTurn => drop(part),
            }
        };
        self.seal(open_parts, reserved);
        goes_on
    }

    /// Adds a written part to the archive's totals; what the client is told.
    fn count(&self, part: &ExportPart, checksum: u64) -> Written {
        self.stats.records.fetch_add(1, Ordering::Relaxed);
        let mut totals = self.stats.current.lock().expect("export totals lock");
        totals.records += 1;
        totals.bytes += part.block.len() as u64;
        totals.digest = totals.digest.rotate_left(5) ^ checksum;
        Written {
            key: part.key.clone(),
            archive: totals.number,
            part: totals.records,
            bytes: part.block.len() as u64,
            checksum,
        }
    }

    /// Seals the archive: closes the parts kept open for it (leaky path)
    /// and gives their leak-budget bytes back.
    fn seal(&self, open_parts: Vec<ExportPart>, reserved: u64) {
        let closed_at_seal = open_parts.len();
        drop(open_parts);
        self.ctx.budget.release(ScenarioId::DeferInLoop, reserved);
        self.stats.sealed.fetch_add(1, Ordering::Relaxed);
        let totals = self
            .stats
            .current
            .lock()
            .expect("export totals lock")
            .clone();
        tracing::info!(
            archive = totals.number,
            records = totals.records,
            bytes = totals.bytes,
            digest = totals.digest,
            parts_closed_at_seal = closed_at_seal,
            "export archive sealed"
        );
    }
}

/// The exports component: the sending end of the record stream.
pub struct Exports {
    ctx: Ctx,
    records: mpsc::Sender<Record>,
    stats: Arc<ExportStats>,
}

/// What `GET /exports` answers.
#[derive(Serialize)]
struct ExportStatus {
    /// The archive being written.
    archive: u64,
    archive_records: u64,
    archive_bytes: u64,
    /// Seconds until it is sealed.
    seal_in_s: f64,
    open_handles: u64,
    queue_depth: u64,
    records: u64,
    archives_sealed: u64,
}

impl Exports {
    /// Creates the record stream and spawns the export job on `ctx.tracker`
    /// (so it must be called inside a tokio runtime).
    pub fn new(ctx: Ctx) -> Exports {
        let (records, receiver) = mpsc::channel(QUEUE_CAPACITY);
        let stats = Arc::new(ExportStats::default());
        let job = ExportJob {
            ctx: ctx.clone(),
            stats: stats.clone(),
            records: receiver,
        };
        ctx.tracker.spawn(job.run());
        Exports {
            ctx,
            records,
            stats,
        }
    }

    /// Hands record `key` to the export job and waits until it is written.
    async fn export(&self, key: &str, data: Bytes) -> Result<Written, AppError> {
        let reserve = part_bytes(self.ctx.config.export_block_bytes);
        let close = if self.ctx.leak_admitted(ScenarioId::DeferInLoop, reserve) {
            CloseAt::ArchiveSeal { reserved: reserve }
        } else {
            CloseAt::EndOfTurn
        };
        let (written, answer) = oneshot::channel();
        let record = Record {
            key: key.to_owned(),
            data,
            close,
            written,
        };
        if let Err(err) = self.records.try_send(record) {
            if let CloseAt::ArchiveSeal { reserved } = close {
                self.ctx.budget.release(ScenarioId::DeferInLoop, reserved);
            }
            return Err(match err {
                mpsc::error::TrySendError::Full(_) => AppError::TooManyRequests(format!(
                    "the export queue is full ({QUEUE_CAPACITY} records waiting); retry later"
                )),
                mpsc::error::TrySendError::Closed(_) => {
                    AppError::Unavailable("the export job has stopped".into())
                }
            });
        }
        match tokio::time::timeout(WRITE_TIMEOUT, answer).await {
            Ok(Ok(written)) => Ok(written),
            Ok(Err(_)) => Err(AppError::Unavailable(
                "the export job stopped before writing the record".into(),
            )),
            Err(_) => Err(AppError::Timeout(format!(
                "the export job did not write the record within {} s",
                WRITE_TIMEOUT.as_secs()
            ))),
        }
    }

    fn status(&self) -> ExportStatus {
        let totals = self
            .stats
            .current
            .lock()
            .expect("export totals lock")
            .clone();
        let open_for = totals.opened_at.map_or(Duration::ZERO, |t| t.elapsed());
        ExportStatus {
            archive: totals.number,
            archive_records: totals.records,
            archive_bytes: totals.bytes,
            seal_in_s: self
                .ctx
                .config
                .export_archive_interval
                .saturating_sub(open_for)
                .as_secs_f64(),
            open_handles: self.stats.open_handles.load(Ordering::Relaxed),
            queue_depth: self.queue_depth(),
            records: self.stats.records.load(Ordering::Relaxed),
            archives_sealed: self.stats.sealed.load(Ordering::Relaxed),
        }
    }

    fn queue_depth(&self) -> u64 {
        (self.records.max_capacity() - self.records.capacity()) as u64
    }
}

/// Largest record a part's block takes.
pub fn max_record_bytes(c: &Config) -> u64 {
    c.export_block_bytes.saturating_sub(PART_HEADER_ROOM)
}

async fn post_export(
    State(exports): State<Arc<Exports>>,
    Path(key): Path<String>,
    RawBody(data): RawBody,
) -> Result<(StatusCode, Json<Written>), AppError> {
    let key = validate_key(&key)?;
    if data.is_empty() {
        return Err(AppError::BadRequest(
            "an export record needs data (the request body)".into(),
        ));
    }
    let max = max_record_bytes(&exports.ctx.config);
    if data.len() as u64 > max {
        return Err(AppError::Rejected(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("an export record fits one part: at most {max} bytes"),
        ));
    }
    Ok((StatusCode::CREATED, Json(exports.export(key, data).await?)))
}

async fn get_exports(State(exports): State<Arc<Exports>>) -> Json<ExportStatus> {
    Json(exports.status())
}

impl Component for Exports {
    fn router(self: Arc<Self>) -> Router {
        Router::new()
            .route("/exports", get(get_exports))
            .route("/exports/{key}", post(post_export))
            .with_state(self)
    }

    fn gauges(&self, out: &mut Gauges) {
        let s = &self.stats;
        out.gauge(
            "export_open_handles",
            s.open_handles.load(Ordering::Relaxed),
            "Export part writers open now; each holds its staging block until it is closed.",
        );
        out.gauge(
            "export_archive_records",
            s.current.lock().expect("export totals lock").records,
            "Records written into the export archive being written now.",
        );
        out.gauge(
            "export_queue_depth",
            self.queue_depth(),
            "Records waiting for the export job.",
        );
        out.counter(
            "export_records",
            s.records.load(Ordering::Relaxed),
            "Records exported since start.",
        );
        out.counter(
            "export_archives_sealed",
            s.sealed.load(Ordering::Relaxed),
            "Export archives sealed since start.",
        );
    }
}

/// Heap bytes one part kept open costs: its staging block, its key, and its
/// slot in the `open_parts` vector (counted at 3/2 of its size: the vector
/// is between half and fully used).
fn part_bytes(block_bytes: u64) -> u64 {
    let slot = std::mem::size_of::<ExportPart>() as u64;
    size_class(block_bytes) + size_class(MODEL_KEY_BYTES) + slot * 3 / 2
}

/// The `defer-in-loop` catalogue entry.
pub fn scenario(c: &Config) -> Scenario {
    // Per record on the leaky path: the part kept open until the archive is
    // sealed, an hour after it opened. Within the hour nothing comes back,
    // so over any run shorter than that the heap climbs by this per record.
    Scenario::new(
        ScenarioId::DeferInLoop,
        LeakClass::Retention,
        "exports",
        vec![Step::with_body(
            "POST",
            "/exports/{key}",
            c.export_record_bytes,
        )],
    )
    .retains(part_bytes(c.export_block_bytes))
    .gauge("export_open_handles")
    .paths(
        "the export job pushes every part it writes (a 64 KiB staging block and an open handle) into open_parts, to close them when the archive is sealed an hour later: a defer in the loop",
        "each part is closed (dropped) at the end of its own turn of the loop; the archive keeps only running totals",
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio_util::sync::CancellationToken;
    use tokio_util::task::TaskTracker;

    use super::*;
    use crate::budget::LeakBudget;
    use crate::flags::Flags;

    fn ctx(config: Config, leak: bool) -> Ctx {
        let flags = Flags::from_build();
        flags.set(ScenarioId::DeferInLoop, leak);
        Ctx {
            config: Arc::new(config),
            flags: Arc::new(flags),
            budget: Arc::new(LeakBudget::new(1 << 30)),
            shutdown: CancellationToken::new(),
            tracker: TaskTracker::new(),
        }
    }

    async fn stop(ctx: &Ctx) {
        ctx.shutdown.cancel();
        ctx.tracker.close();
        tokio::time::timeout(Duration::from_secs(2), ctx.tracker.wait())
            .await
            .expect("the export job stops on shutdown");
    }

    fn config(archive_interval: Duration) -> Config {
        Config {
            export_block_bytes: 4096,
            export_archive_interval: archive_interval,
            ..Config::default()
        }
    }

    #[tokio::test]
    async fn kept_parts_stay_open_until_the_archive_is_sealed_and_fixed_ones_close_each_turn() {
        for leak in [true, false] {
            let ctx = ctx(config(Duration::from_secs(1)), leak);
            let exports = Exports::new(ctx.clone());
            for i in 0..20 {
                let written = exports
                    .export(&format!("k{i}"), Bytes::from_static(b"record"))
                    .await
                    .expect("written");
                assert_eq!((written.archive, written.bytes), (1, 4096));
            }
            let open = exports.stats.open_handles.load(Ordering::Relaxed);
            let reserved = ctx.budget.retained(ScenarioId::DeferInLoop);
            if leak {
                assert_eq!(open, 20, "every part kept open for the seal");
                assert_eq!(reserved, 20 * part_bytes(4096));
            } else {
                assert_eq!((open, reserved), (0, 0), "closed at the end of each turn");
            }
            // The seal gives everything back.
            let deadline = Instant::now() + Duration::from_secs(4);
            while exports.stats.sealed.load(Ordering::Relaxed) == 0 && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            assert_eq!(
                exports.stats.sealed.load(Ordering::Relaxed),
                1,
                "leak {leak}"
            );
            assert_eq!(exports.stats.open_handles.load(Ordering::Relaxed), 0);
            assert_eq!(ctx.budget.retained(ScenarioId::DeferInLoop), 0);
            let next = exports
                .export("after", Bytes::from_static(b"record"))
                .await
                .expect("written");
            assert_eq!((next.archive, next.part), (2, 1));
            stop(&ctx).await;
            assert_eq!(exports.stats.open_handles.load(Ordering::Relaxed), 0);
        }
    }

    #[tokio::test]
    async fn a_part_frames_the_key_and_the_record_and_fills_its_block() {
        let stats = Arc::new(ExportStats::default());
        let mut part = ExportPart::open("key".into(), 64, &stats);
        assert_eq!(stats.open_handles.load(Ordering::Relaxed), 1);
        let checksum = part.write(b"abc", 64);
        assert_eq!(part.block.len(), 64);
        assert_eq!(&part.block[..12], b"\x03\x00key\x03\x00\x00\x00abc");
        assert!(part.block[12..].iter().all(|b| *b == 0));
        assert_ne!(checksum, part.write(b"abd", 64));
        drop(part);
        assert_eq!(stats.open_handles.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn ground_truth_is_the_block_the_key_and_a_vector_slot() {
        let slot = std::mem::size_of::<ExportPart>() as u64;
        assert_eq!(part_bytes(64 * 1024), 65_536 + 32 + slot * 3 / 2);
    }
}
