//! `samples.jsonl`: one [`Sample`] per line, appended and flushed as each is
//! taken, and read back for `loadgen judge` and the recorded-run tests.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::{Context, Result};
use leaklab_model::run::Sample;

/// Creates (truncates) the file at `path`.
pub fn create(path: &Path) -> Result<BufWriter<File>> {
    let f = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    Ok(BufWriter::new(f))
}

/// Appends one line and flushes it.
pub fn append(file: &mut BufWriter<File>, sample: &Sample) -> Result<()> {
    serde_json::to_writer(&mut *file, sample)?;
    file.write_all(b"\n")?;
    file.flush()?;
    Ok(())
}

/// Reads a `samples.jsonl` file (every line one [`Sample`]).
pub fn read_samples(path: &Path) -> Result<Vec<Sample>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str(l).with_context(|| format!("{}:{}", path.display(), i + 1))
        })
        .collect()
}
