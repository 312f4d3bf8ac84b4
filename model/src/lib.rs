//! `leaklab-model`: the types leaklab's programs share, serde only.
//!
//! When one program reads another's JSON, both use these types, so a renamed
//! field is a compile error, not a silent default. The JSON they produce is
//! documented field by field in `docs/interfaces.md`; each report carries its
//! `schema` string.
//!
//! # Layout
//!
//! - [`class`]: [`LeakClass`], the verdict classes (retention, task-leak, ...).
//! - [`catalogue`]: the scenario catalogue (`leaklab-service scenarios --json`,
//!   `GET /admin/scenarios`): [`Scenario`], [`Step`], [`Catalogue::find`].
//! - [`run`]: `leaklab.run/v1`, the run summary, and `samples.jsonl`'s lines.
//! - [`hunt`]: `leaklab.hunt/v1`. [`canary`]: `leaklab.canary/v1`.
//!   [`oom`]: `leaklab.oom/v1`. [`bisect`]: `cargo ci bisect --json`.
//! - [`tasks`]: `leaklab.tasks/v1`, the service's task census.
//! - [`mystery`]: which leaks a mystery seed turns on (service and grader agree).

pub mod bisect;
pub mod canary;
pub mod catalogue;
pub mod class;
pub mod hunt;
pub mod mystery;
pub mod oom;
pub mod run;
pub mod tasks;

pub use catalogue::{Catalogue, Scenario, Step, UnknownScenario};
pub use class::LeakClass;
