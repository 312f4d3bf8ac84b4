//! Reports: `GET /reports/{key}` renders a report (default 64 KiB) and answers
//! its summary; it also registers a score callback that the digest,
//! `GET /reports`, calls later for every recent report.
//!
//! Scenario seeded here: `closure-capture` (retention). The callback needs one
//! number, the report's score. On the leaky path the closure captures the
//! whole rendered [`Report`] and computes the score when called, so the
//! registry keeps every report body alive for as long as its callback lives.
//! The fixed path computes the score first and captures only that `u64`.
//!
//! The registry is bounded by count ([`RECENT_REPORTS`], oldest dropped),
//! sized for callbacks of a few bytes: about 2 MiB on the fixed path. On the
//! leaky path the same bound would be 4 GiB of reports, so the leak budget
//! (2 GiB) stops it first.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

use super::{Component, Ctx, Gauges};
use crate::catalogue::{size_class, LeakClass, Scenario, ScenarioId, Step};
use crate::config::Config;
use crate::error::{validate_key, AppError};
use crate::extract::Path;

/// Most score callbacks the registry keeps; the oldest is dropped past it.
pub const RECENT_REPORTS: usize = 64 * 1024;

/// Bytes of a distinct key as ground truth models it: loadgen's keys
/// (`lg<pid><millis>-<n>`, about 26 bytes) at their jemalloc size class.
const MODEL_KEY_BYTES: u64 = 32;

/// A rendered report.
pub struct Report {
    pub key: String,
    /// The rendered document: rows of figures derived from the key.
    pub body: Vec<u8>,
}

impl Report {
    /// The one number the digest wants: a checksum-weighted score of the rows.
    pub fn score(&self) -> u64 {
        self.body
            .chunks(8)
            .map(|row| row.iter().map(|b| *b as u64).sum::<u64>())
            .fold(0u64, |acc, row| acc.wrapping_mul(31).wrapping_add(row))
            % 1_000_000
    }
}

/// Renders `key`'s report of `bytes` bytes. Kept out of line so a heap
/// profile names it as the allocation site of report bodies.
#[inline(never)]
pub fn render_report(key: &str, bytes: usize) -> Report {
    let mut state = key.bytes().fold(0x9e37_79b9_7f4a_7c15u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    });
    let mut body = Vec::with_capacity(bytes);
    while body.len() < bytes {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let row = state.to_le_bytes();
        body.extend_from_slice(&row[..(bytes - body.len()).min(8)]);
    }
    Report {
        key: key.to_owned(),
        body,
    }
}

/// A callback registered for the digest: returns a report's score.
type ScoreCallback = Box<dyn Fn() -> u64 + Send>;

/// A registered callback and the leak-budget bytes it reserved (0 when fixed).
struct Registered {
    score: ScoreCallback,
    reserved: u64,
}

/// The reports component.
pub struct Reports {
    ctx: Ctx,
    /// Score callbacks of the last [`RECENT_REPORTS`] reports, oldest first,
    /// owned by the process-wide component: each closure lives until it is
    /// dropped off the front. What a closure captured lives as long. A
    /// `std::sync::Mutex`: held for one push or one digest, never across `.await`.
    recent: Mutex<VecDeque<Registered>>,
    /// Callbacks now holding a whole report (leaky path).
    capturing: AtomicU64,
    rendered: AtomicU64,
}

/// What `GET /reports/{key}` answers (the body stays server-side).
#[derive(Serialize)]
struct Summary {
    key: String,
    bytes: usize,
    score: u64,
}

/// What `GET /reports` answers.
#[derive(Serialize)]
struct Digest {
    reports: usize,
    total_score: u64,
}

impl Reports {
    pub fn new(ctx: Ctx) -> Reports {
        Reports {
            ctx,
            recent: Mutex::new(VecDeque::new()),
            capturing: AtomicU64::new(0),
            rendered: AtomicU64::new(0),
        }
    }

    fn render(&self, key: &str) -> Summary {
        let report = render_report(key, self.ctx.config.report_bytes as usize);
        self.rendered.fetch_add(1, Ordering::Relaxed);
        let score = report.score();
        let summary = Summary {
            key: key.to_owned(),
            bytes: report.body.len(),
            score,
        };
        let reserve = captured_report_bytes(&self.ctx.config);
        let registered = if self.ctx.leak_admitted(ScenarioId::ClosureCapture, reserve) {
            // LEAKY: `move` takes the whole report into the closure (it calls
            // `report.score()` later), so the registry keeps the 64 KiB body
            // alive for the sake of one number.
            self.capturing.fetch_add(1, Ordering::Relaxed);
            Registered {
                score: Box::new(move || report.score()),
                reserved: reserve,
            }
        } else {
            // FIXED: capture only the derived value; the report is dropped at
            // the end of this function.
            Registered {
                score: Box::new(move || score),
                reserved: 0,
            }
        };
        let evicted = {
            let mut recent = self.recent.lock().expect("reports lock");
            // Drop the oldest first, so the deque never outgrows the bound.
            let evicted = if recent.len() >= RECENT_REPORTS {
                recent.pop_front()
            } else {
                None
            };
            recent.push_back(registered);
            evicted
        };
        if let Some(old) = evicted {
            if old.reserved > 0 {
                self.capturing.fetch_sub(1, Ordering::Relaxed);
                self.ctx
                    .budget
                    .release(ScenarioId::ClosureCapture, old.reserved);
            }
        }
        summary
    }

    fn digest(&self) -> Digest {
        let recent = self.recent.lock().expect("reports lock");
        Digest {
            reports: recent.len(),
            total_score: recent
                .iter()
                .fold(0u64, |sum, r| sum.wrapping_add((r.score)())),
        }
    }
}

async fn get_report(
    State(reports): State<Arc<Reports>>,
    Path(key): Path<String>,
) -> Result<Json<Summary>, AppError> {
    let key = validate_key(&key)?;
    Ok(Json(reports.render(key)))
}

async fn get_digest(State(reports): State<Arc<Reports>>) -> Json<Digest> {
    Json(reports.digest())
}

impl Component for Reports {
    fn router(self: Arc<Self>) -> Router {
        Router::new()
            .route("/reports", get(get_digest))
            .route("/reports/{key}", get(get_report))
            .with_state(self)
    }

    fn gauges(&self, out: &mut Gauges) {
        let callbacks = self.recent.lock().expect("reports lock").len() as u64;
        out.gauge(
            "report_callbacks",
            callbacks,
            "Score callbacks the reports component keeps for its digest.",
        );
        out.variant_gauge(
            "report_callbacks_capturing",
            self.capturing.load(Ordering::Relaxed),
            "Kept callbacks that captured a whole report.",
        );
        out.counter(
            "reports_rendered",
            self.rendered.load(Ordering::Relaxed),
            "Reports rendered since start.",
        );
    }
}

/// Heap bytes a leaky callback keeps beyond a fixed one: the report body and
/// key, and the boxed closure holding the `Report` by value instead of a `u64`.
fn captured_report_bytes(c: &Config) -> u64 {
    size_class(c.report_bytes)
        + size_class(MODEL_KEY_BYTES)
        + size_class(std::mem::size_of::<Report>() as u64)
}

/// The `closure-capture` catalogue entry.
pub fn scenario(c: &Config) -> Scenario {
    // Per report on the leaky path: the rendered body and its key, held by the
    // boxed closure (a `Report` by value), plus the registry slot every path
    // keeps (a 16-byte box pointer and an 8-byte reservation, in a VecDeque at
    // half to full capacity).
    let slot = std::mem::size_of::<Registered>() as u64 * 3 / 2;
    let bytes = captured_report_bytes(c) + slot;
    Scenario::new(
        ScenarioId::ClosureCapture,
        LeakClass::Retention,
        "reports",
        vec![Step::get("/reports/{key}")],
    )
    .retains(bytes)
    .gauge("report_callbacks_capturing")
    .paths(
        "the score callback registered for the digest moves the whole rendered report (64 KiB) into its closure to compute one number later",
        "compute the score first and capture only that u64",
    )
}
