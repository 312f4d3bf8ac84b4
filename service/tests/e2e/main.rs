//! End-to-end tests of leaklab-service, built as one test binary (STYLE.md 7).
//!
//! Each test starts the real binary on `127.0.0.1:0` (jemalloc is the global
//! allocator only there), drives it over a real socket and reads its
//! `/debug/memory`. A test for a leak runs one body against the leaky and the
//! fixed path and asserts opposite outcomes (STYLE.md 8).

mod allocs;
mod auth;
mod batch;
mod blobs;
mod bus;
mod exports;
mod helpers;
mod ingest;
mod leaks;
mod malformed;
mod merge;
mod metrics;
mod mystery;
mod orders;
mod render;
mod reports;
mod request_metrics;
mod sessions;
mod stability;
mod watchdog;
mod worker;
