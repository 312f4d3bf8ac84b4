//! leaklab-service: a tokio + axum HTTP API with feature-flagged seeded memory
//! leaks, each beside its fixed twin, that reports its own memory truthfully.
//!
//! # Layout
//!
//! - [`cli`]: options and the binary's entry point.
//! - [`app`]: the router, the admin-token guard, start and graceful shutdown.
//! - [`shutdown`]: signals on a thread of their own; a deadline, then a forced exit.
//! - [`catalogue`]: scenario ids, classes and ground truth (docs/catalogue.md).
//! - [`flags`]: the runtime leak switches; [`budget`]: the leak budget.
//! - [`components`]: the API's parts (cache, fan-out, churn, ...), one module
//!   per component with its leaky and fixed paths side by side.
//! - [`telemetry`]: `/debug/memory`, `/metrics`, heap profiles, the task census
//!   and task dumps.
//! - [`config`], [`error`], [`extract`]: parameters, the one error type, and
//!   extractors that reject with it.
//!
//! The binary installs jemalloc as the global allocator with heap profiling
//! compiled in (see `main.rs`); the library does not, so tests that read
//! allocator numbers run the binary.

pub mod app;
pub mod budget;
#[macro_use]
pub mod catalogue;
pub mod cli;
pub mod components;
pub mod config;
pub mod error;
pub mod extract;
pub mod flags;
pub mod pin;
pub mod shutdown;
pub mod telemetry;
