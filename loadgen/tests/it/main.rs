//! loadgen's integration tests, built as one binary (STYLE 7).
//!
//! - `helpers`: locating (or building) `leaklab-service`, starting it,
//!   running the `loadgen` binary.
//! - `runs`: short real runs against a real service: one leak and one
//!   negative control through the same test body, target death, usage errors.
//! - `hunt`: a short `loadgen hunt` end to end.
//! - `external`: targets that are not leaklab services (Python servers),
//!   judged from outside; bad inputs about them.
//! - `canary`: `loadgen canary` with a flag flipped on, and rolled back, mid-run.
//! - `prometheus`: a real Prometheus (Debian's package) scraping a leaky
//!   Python server; `loadgen judge --prometheus` against `loadgen run`.
//! - `recorded`: the classifier against `samples.jsonl` files recorded from
//!   real runs (`tests/data/`).

mod canary;
mod external;
mod helpers;
mod hunt;
mod prometheus;
mod recorded;
mod runs;
