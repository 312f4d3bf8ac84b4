//! `loadgen`: drives distinct-key load at a fixed arrival rate against a
//! leaklab service, samples its memory and judges whether it leaks.
//!
//! ```text
//! cargo run --release -p loadgen -- run --spawn --scenario unbounded-cache --out out/
//! cargo run --release -p loadgen -- --help
//! ```
//!
//! Everything lives in the library (`loadgen::main`); this is only the entry.

use clap::Parser;

fn main() -> std::process::ExitCode {
    loadgen::main(loadgen::Cli::parse())
}
