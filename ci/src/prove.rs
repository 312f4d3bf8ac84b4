//! `cargo ci prove`: the proof section of each `fixes/<id>.md`, measured.
//!
//! For each scenario it runs `loadgen run --spawn --scenario ID` twice with
//! identical load, once with the leak on and once with the fix (`--fixed`),
//! and writes a table of what was measured between the write-up's
//! `<!-- proof:begin -->` and `<!-- proof:end -->` markers, with the command
//! that produced it. No number in a proof section is typed by hand.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Result};
use leaklab_model::run::RunSummary;

use crate::build::workspace_root;
use crate::json;
use crate::process::{output_within, LOADGEN_LIMIT};

const BEGIN: &str = "<!-- proof:begin -->";
const END: &str = "<!-- proof:end -->";

/// One measured run.
#[derive(Debug)]
pub struct Run {
    pub summary: RunSummary,
    pub exit_code: i32,
}

/// Runs loadgen for `id`, leaky or fixed, writing its files under `out`.
pub fn run(
    loadgen: &Path,
    id: &str,
    fixed: bool,
    duration: &str,
    warmup: &str,
    out: &Path,
) -> Result<Run> {
    let mut cmd = Command::new(loadgen);
    cmd.args([
        "run",
        "--spawn",
        "--scenario",
        id,
        "--duration",
        duration,
        "--warmup",
        warmup,
        "--json",
        "--out",
    ])
    .arg(out)
    .stderr(Stdio::null());
    if fixed {
        cmd.arg("--fixed");
    }
    let output = output_within(
        &mut cmd,
        LOADGEN_LIMIT,
        &format!("loadgen run --scenario {id}"),
    )?;
    let exit_code = output.status.code().unwrap_or(-1);
    if exit_code != 0 && exit_code != 3 {
        bail!("loadgen run --scenario {id} exited {exit_code}");
    }
    let summary = json::parse_report(
        &output.stdout,
        &format!("the summary `loadgen run --scenario {id} --json` printed"),
    )?;
    Ok(Run { summary, exit_code })
}

/// A signal's slope per hour in MB, `-` when the run has no such signal (too
/// few samples to fit it).
fn mb_per_h(summary: &RunSummary, signal: &str) -> String {
    summary
        .signals
        .get(signal)
        .map(|f| format!("{:.1}", f.slope_per_s * 3600.0 / 1e6))
        .unwrap_or_else(|| "-".into())
}

/// A signal's slope per second, `-` when the run has no such signal.
fn per_s(summary: &RunSummary, signal: &str) -> String {
    summary
        .signals
        .get(signal)
        .map(|f| format!("{:.1}", f.slope_per_s))
        .unwrap_or_else(|| "-".into())
}

/// The markdown block for one scenario's two runs.
pub fn proof_block(id: &str, duration: &str, warmup: &str, leaky: &Run, fixed: &Run) -> String {
    let row = |name: &str, run: &Run| {
        let s = &run.summary;
        format!(
            "| {name} | {} | {} | {} | {} | {} | {:.0} |",
            if s.verdict.leak { "leak" } else { "no leak" },
            s.verdict.class,
            mb_per_h(s, "allocated"),
            mb_per_h(s, "rss"),
            per_s(s, "alive_tasks"),
            s.load.rate_achieved,
        )
    };
    let truth_line = match &leaky.summary.ground_truth {
        Some(truth) => format!(
            "Ground truth check (leaky run): expected {} slope {:.0}/s, measured {:.0}/s, error {:.1}%.\n",
            truth.signal, truth.expected_slope_per_s, truth.measured_slope_per_s, truth.error_pct
        ),
        None => "This scenario declares no per-request slope to check (negative control or one-shot).\n"
            .to_owned(),
    };
    format!(
        "{BEGIN}\nMeasured by `cargo ci prove --only {id}`{} (`loadgen run --spawn --scenario {id} --duration {duration} --warmup {warmup}`, then the same with `--fixed`):\n\n\
         | run | verdict | class | allocated MB/h | RSS MB/h | tasks/s | req/s |\n|---|---|---|---|---|---|---|\n{}\n{}\n\n{truth_line}{END}",
        source_commit()
            .map(|c| format!(" at commit {c}"))
            .unwrap_or_default(),
        row("leak on", leaky),
        row("fixed", fixed)
    )
}

/// The short hash of the checked-out commit, `+dirty` when the tree has changes.
fn source_commit() -> Option<String> {
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(workspace_root())
            .output()
            .ok()
            .filter(|o| o.status.success())
    };
    let head = git(&["rev-parse", "--short", "HEAD"])?;
    let head = String::from_utf8_lossy(&head.stdout).trim().to_owned();
    // Only the code counts: fixes/ itself changes as the proofs are written.
    let dirty = git(&["status", "--porcelain", "--", ".", ":!fixes", ":!out"])
        .is_some_and(|o| !o.stdout.is_empty());
    Some(if dirty { format!("{head}+dirty") } else { head })
}

/// Replaces the proof block in `doc` (or appends one).
pub fn splice(doc: &str, block: &str) -> String {
    match (doc.find(BEGIN), doc.find(END)) {
        (Some(b), Some(e)) if e > b => format!("{}{block}{}", &doc[..b], &doc[e + END.len()..]),
        _ => format!(
            "{}\n\n## Proof by re-measurement\n\n{block}\n",
            doc.trim_end()
        ),
    }
}

/// The write-up of `id`.
pub fn doc_path(id: &str) -> PathBuf {
    workspace_root().join("fixes").join(format!("{id}.md"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proof_block_replaces_the_old_one_and_keeps_the_text_around_it() {
        let doc = format!("# x\n\ntext\n\n{BEGIN}\nold\n{END}\n\nafter\n");
        let spliced = splice(&doc, &format!("{BEGIN}\nnew\n{END}"));
        assert_eq!(
            spliced,
            format!("# x\n\ntext\n\n{BEGIN}\nnew\n{END}\n\nafter\n")
        );
        let appended = splice("# y\n", &format!("{BEGIN}\nnew\n{END}"));
        assert!(appended.contains("## Proof by re-measurement") && appended.contains("new"));
    }
}
