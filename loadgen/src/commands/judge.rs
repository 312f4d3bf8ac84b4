//! `loadgen judge samples.jsonl --catalogue cat.json`: judges a recorded run
//! again (no load) and prints its signals and verdict as JSON.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use leaklab_model::Catalogue;

use crate::args::parse_bytes;
use crate::errors::exit;
use crate::judging;
use crate::sampling::read_samples;

/// Options of `loadgen judge`.
#[derive(Args, Debug)]
pub struct JudgeOpts {
    /// A samples.jsonl written by `loadgen run --out`.
    pub samples: PathBuf,
    /// The catalogue JSON (`leaklab-service scenarios --json`), for components.
    #[arg(long)]
    pub catalogue: Option<PathBuf>,
    /// Memory limit for time-to-OOM.
    #[arg(long, value_parser = parse_bytes)]
    pub limit: Option<u64>,
}

/// Judges the file; exit 3 when the verdict is a leak.
pub fn execute(opts: &JudgeOpts) -> Result<u8> {
    let samples = read_samples(&opts.samples)?;
    let catalogue: Catalogue = match &opts.catalogue {
        Some(p) => serde_json::from_str(&std::fs::read_to_string(p)?)
            .with_context(|| format!("the catalogue {}", p.display()))?,
        None => Catalogue::default(),
    };
    let j = judging::judge(&samples, &catalogue, opts.limit);
    println!(
        "{}",
        serde_json::to_string_pretty(
            &serde_json::json!({"signals": j.signals, "verdict": j.verdict})
        )?
    );
    Ok(if j.verdict.leak {
        exit::LEAK
    } else {
        exit::NO_LEAK
    })
}
