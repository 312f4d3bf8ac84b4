//! `cargo ci prove`: the proof section of each `fixes/<id>.md`, measured.
//!
//! For each scenario it runs `loadgen run --spawn --scenario ID` twice with
//! identical load, once with the leak on and once with the fix (`--fixed`),
//! and writes a table of what was measured between the write-up's
//! `<!-- proof:begin -->` and `<!-- proof:end -->` markers, with the command
//! that produced it. No number in a proof section is typed by hand.
//!
//! Slopes prove a fix for the classes that climb. For the level-shaped ones
//! (plateau, rss-retained, churn, regrowth, a pool) the slope of the fixed
//! run is flat either way; what the fix changes is a level. So each block has
//! a second table read from the runs' `samples.jsonl`: the high-water marks
//! of the live heap and RSS, both again after the load ended, the
//! allocations one request costs (the allocator's own request counter over
//! the request count) and the scenario's catalogue gauge per request and at
//! the end (fresh buffers per request for a pool, entries for a table).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};
use leaklab_model::run::{Phase, RunSummary, Sample};

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
    pub levels: Levels,
}

/// The levels of one run, from its samples (bytes, counts); `None` where
/// no sample carried the reading.
#[derive(Debug, Default, PartialEq)]
pub struct Levels {
    /// Highest live heap (`allocated`) once the load started.
    pub peak_allocated: Option<u64>,
    /// Live heap at the last sample, after the load ended.
    pub end_allocated: Option<u64>,
    pub peak_rss: Option<u64>,
    pub end_rss: Option<u64>,
    /// Allocator requests per triggering request over the measured window.
    pub allocations_per_request: Option<f64>,
    /// The catalogue gauge's change per triggering request over the window.
    pub gauge_per_request: Option<f64>,
    /// The catalogue gauge at the last sample.
    pub gauge_end: Option<u64>,
}

impl Levels {
    /// Reads the levels from the samples of one run; `gauge` is the
    /// scenario's catalogue gauge.
    pub fn from_samples(samples: &[Sample], gauge: Option<&str>) -> Levels {
        let loaded: Vec<&Sample> = samples
            .iter()
            .filter(|s| s.phase != Phase::Baseline && s.memory.is_some())
            .collect();
        let memory = |s: &&Sample| s.memory.clone().unwrap_or_default();
        let component = |s: &&Sample| gauge.and_then(|g| memory(s).components.get(g).copied());
        let measured: Vec<&&Sample> = loaded
            .iter()
            .filter(|s| s.phase == Phase::Measure)
            .collect();
        // A per-request figure: the counter's change over the window divided
        // by the requests completed in it.
        let per_request = |read: &dyn Fn(&&Sample) -> Option<u64>| {
            let (first, last) = (measured.first()?, measured.last()?);
            let requests = last.requests.checked_sub(first.requests)?;
            let (a, b) = (read(first)?, read(last)?);
            (requests > 0).then(|| (b as f64 - a as f64) / requests as f64)
        };
        // An allocator without the counter reports 0 throughout: unknown.
        let allocations = |s: &&Sample| Some(memory(s).allocations).filter(|&n| n > 0);
        Levels {
            peak_allocated: loaded.iter().map(|s| memory(s).allocated).max(),
            end_allocated: loaded.last().map(|s| memory(s).allocated),
            peak_rss: loaded.iter().filter_map(|s| s.rss()).max(),
            end_rss: loaded.last().and_then(|s| s.rss()),
            allocations_per_request: per_request(&allocations),
            gauge_per_request: per_request(&|s| component(s)),
            gauge_end: loaded.last().and_then(component),
        }
    }
}

/// Reads a run's `samples.jsonl`.
pub fn read_samples(path: &Path) -> Result<Vec<Sample>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| {
            serde_json::from_str(line)
                .with_context(|| format!("{}: line {}", path.display(), i + 1))
        })
        .collect()
}

/// Runs loadgen for `id`, leaky or fixed, writing its files under `out`;
/// `gauge` is the scenario's catalogue gauge, read for the levels.
pub fn run(
    loadgen: &Path,
    id: &str,
    fixed: bool,
    (duration, warmup): (&str, &str),
    gauge: Option<&str>,
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
    // loadgen's progress (phase, time left, running slope) shows through:
    // a measurement is minutes of otherwise silent waiting.
    .stderr(Stdio::inherit());
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
    let levels = Levels::from_samples(&read_samples(&out.join("samples.jsonl"))?, gauge);
    Ok(Run {
        summary,
        exit_code,
        levels,
    })
}

/// A signal's slope per hour in MiB, `-` when the run has no such signal (too
/// few samples to fit it).
fn mib_per_h(summary: &RunSummary, signal: &str) -> String {
    summary
        .signals
        .get(signal)
        .map(|f| format!("{:.1}", f.slope_per_s * 3600.0 / crate::check::MIB))
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

/// Bytes as MiB with one decimal, `-` when unknown.
fn mib(bytes: Option<u64>) -> String {
    bytes
        .map(|b| format!("{:.1}", b as f64 / (1024.0 * 1024.0)))
        .unwrap_or_else(|| "-".into())
}

/// A per-request figure, `-` when unknown.
fn per_request(value: Option<f64>) -> String {
    value
        .map(|v| format!("{v:.2}"))
        .unwrap_or_else(|| "-".into())
}

/// The levels table of a proof block.
fn levels_table(gauge: Option<&str>, leaky: &Run, fixed: &Run) -> String {
    let gauge_name = gauge.unwrap_or("gauge");
    let row = |name: &str, l: &Levels| {
        format!(
            "| {name} | {} | {} | {} | {} | {} | {} | {} |",
            mib(l.peak_allocated),
            mib(l.end_allocated),
            mib(l.peak_rss),
            mib(l.end_rss),
            per_request(l.allocations_per_request),
            per_request(l.gauge_per_request),
            l.gauge_end
                .map(|v| v.to_string())
                .unwrap_or_else(|| "-".into()),
        )
    };
    format!(
        "Levels (from each run's `samples.jsonl`; MiB; \"after\" is the last sample, once the load ended):\n\n\
         | run | peak allocated | allocated after | peak RSS | RSS after | allocations/request | `{gauge_name}`/request | `{gauge_name}` after |\n\
         |---|---|---|---|---|---|---|---|\n{}\n{}\n",
        row("leak on", &leaky.levels),
        row("fixed", &fixed.levels)
    )
}

/// The markdown block for one scenario's two runs.
pub fn proof_block(
    id: &str,
    (duration, warmup): (&str, &str),
    gauge: Option<&str>,
    leaky: &Run,
    fixed: &Run,
) -> String {
    let row = |name: &str, run: &Run| {
        let s = &run.summary;
        format!(
            "| {name} | {} | {} | {} | {} | {} | {:.0} |",
            if s.verdict.leak { "leak" } else { "no leak" },
            s.verdict.class,
            mib_per_h(s, "allocated"),
            mib_per_h(s, "rss"),
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
         | run | verdict | class | allocated MiB/h | RSS MiB/h | tasks/s | req/s |\n|---|---|---|---|---|---|---|\n{}\n{}\n\n{}\n{truth_line}{END}",
        source_commit()
            .map(|c| format!(" at commit {c}"))
            .unwrap_or_default(),
        row("leak on", leaky),
        row("fixed", fixed),
        levels_table(gauge, leaky, fixed),
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

    fn sample(
        t: f64,
        phase: Phase,
        requests: u64,
        allocated: u64,
        allocations: u64,
        gauge: u64,
    ) -> Sample {
        let mut memory = leaklab_model::run::TargetMemory {
            allocated,
            allocations,
            rss: allocated * 2,
            ..Default::default()
        };
        memory.components.insert("pool_buffers".into(), gauge);
        Sample {
            t,
            phase,
            requests,
            in_flight: 0,
            memory: Some(memory),
            proc: None,
            cgroup: None,
            metrics: None,
            error: None,
        }
    }

    #[test]
    fn levels_take_the_high_water_mark_the_end_and_per_request_costs_from_the_window() {
        let samples = [
            // The baseline's larger heap is not the run's high-water mark.
            sample(-1.0, Phase::Baseline, 0, 900, 10, 0),
            sample(0.5, Phase::Warmup, 50, 300, 500, 4),
            sample(1.0, Phase::Measure, 100, 400, 1_000, 10),
            sample(2.0, Phase::Measure, 300, 700, 1_600, 50),
            sample(3.0, Phase::Measure, 500, 600, 2_200, 90),
            sample(3.5, Phase::Cooldown, 550, 200, 2_300, 90),
        ];
        let levels = Levels::from_samples(&samples, Some("pool_buffers"));
        assert_eq!(levels.peak_allocated, Some(700));
        assert_eq!(levels.end_allocated, Some(200));
        assert_eq!(levels.peak_rss, Some(1400));
        assert_eq!(levels.end_rss, Some(400));
        // (2200 - 1000) / (500 - 100) and (90 - 10) / 400.
        assert_eq!(levels.allocations_per_request, Some(3.0));
        assert_eq!(levels.gauge_per_request, Some(0.2));
        assert_eq!(levels.gauge_end, Some(90));
        // No gauge, or an allocator without the counter: unknown, not zero.
        let no_counter: Vec<Sample> = samples
            .iter()
            .map(|s| sample(s.t, s.phase, s.requests, 1, 0, 0))
            .collect();
        let levels = Levels::from_samples(&no_counter, None);
        assert_eq!(levels.allocations_per_request, None);
        // A gauge that stays at zero (an empty table, an idle pool) is 0 per
        // request, not unknown.
        let zero_gauge = Levels::from_samples(&no_counter, Some("pool_buffers"));
        assert_eq!(zero_gauge.gauge_per_request, Some(0.0));
        assert_eq!(zero_gauge.gauge_end, Some(0));
        assert_eq!(levels.gauge_per_request, None);
        assert_eq!(levels.gauge_end, None);
    }
}
