//! `cargo ci bench-detect`: a benchmark, not a test. How fast and how
//! right `loadgen run --until-verdict` is: every catalogue scenario once at
//! its default rate (`loadgen run --spawn --scenario ID --until-verdict`,
//! release binaries), timed from the end of warm-up to the verdict and
//! checked against the catalogue's class (a negative control is right when
//! it is not called a leak); then `--control-runs` more runs of each
//! negative control, counted for false alarms. It prints a table, the
//! totals and whether the targets (every leak called correctly within 10 s
//! of measurement, no false alarm in the control runs) were met; the rows go
//! to `OUT/bench-detect.json` and each run's files under `OUT/<id>[-N]/`.
//! Last, the canary's delay from a flag toggle to its regression verdict
//! ([`canary`]), unless `--no-canary`.

pub mod canary;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;
use leaklab_model::run::RunSummary;
use leaklab_model::{Catalogue, LeakClass, Scenario};
use serde::Serialize;

use crate::build::{loadgen_binary, service_binary, source_fingerprint};
use crate::json;
use crate::lessons::parse_duration;
use crate::process::output_within;

/// The target: a leak called within this long of measurement.
const LEAK_WITHIN_S: f64 = 10.0;

/// Options of `cargo ci bench-detect`.
#[derive(Debug, Args)]
pub struct DetectOpts {
    /// Extra runs of each negative control, counted for false alarms.
    #[arg(long, default_value_t = 20)]
    pub control_runs: usize,
    /// Only these scenarios (repeatable); default every one.
    #[arg(long = "only", value_name = "ID")]
    pub only: Vec<String>,
    /// The most a run may last (`loadgen run --duration`).
    #[arg(long, default_value = "40s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Warm-up of each run (`loadgen run --warmup`).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// The most a canary pair may run (`loadgen canary --duration`).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub canary_duration: Duration,
    /// Skip the canary's toggle-to-regression delays.
    #[arg(long)]
    pub no_canary: bool,
    /// Where each run's files and bench-detect.json go.
    #[arg(long, default_value = "out/bench-detect")]
    pub out: PathBuf,
}

/// One run, as measured.
#[derive(Debug, Serialize)]
pub struct Row {
    pub scenario: String,
    /// The catalogue's class.
    pub expected: LeakClass,
    pub negative_control: bool,
    /// The verdict's class; null when the run failed.
    pub class: Option<LeakClass>,
    pub leak: Option<bool>,
    /// `sequential` or `fixed-window`.
    pub decided_by: Option<String>,
    /// Seconds from the end of warm-up to the verdict.
    pub after_s: Option<f64>,
    /// The class is the catalogue's (a negative control: not called a leak).
    pub right: bool,
    /// Wall time of the whole run, spawn included.
    pub wall_s: f64,
    /// What went wrong, when the run gave no summary.
    pub error: Option<String>,
}

/// Runs the benchmark and prints its figures; true when it completed.
pub fn run(opts: &DetectOpts) -> Result<bool> {
    let loadgen = loadgen_binary()?;
    let (service, _) = service_binary(&[], &source_fingerprint()?)?;
    let catalogue = catalogue(&service)?;
    std::fs::create_dir_all(&opts.out)?;
    let chosen: Vec<&Scenario> = catalogue
        .iter()
        .filter(|s| opts.only.is_empty() || opts.only.contains(&s.id))
        .collect();
    let runner = Runner {
        loadgen: &loadgen,
        service: &service,
        opts,
    };
    let mut rows = Vec::new();
    for (i, s) in chosen.iter().enumerate() {
        eprintln!("[bench-detect {}/{}] {}", i + 1, chosen.len(), s.id);
        rows.push(runner.one(s, &s.id)?);
    }
    let mut controls = Vec::new();
    for s in chosen.iter().filter(|s| s.negative_control) {
        for k in 1..=opts.control_runs {
            eprintln!("[bench-detect control {k}/{}] {}", opts.control_runs, s.id);
            controls.push(runner.one(s, &format!("{}-{k}", s.id))?);
        }
    }
    let mut pairs = Vec::new();
    if !opts.no_canary {
        let toggled = canary::chosen(&chosen);
        for (i, s) in toggled.iter().enumerate() {
            eprintln!("[bench-detect canary {}/{}] {}", i + 1, toggled.len(), s.id);
            pairs.push(canary::one(&loadgen, &service, opts, s)?);
        }
    }
    std::fs::write(
        opts.out.join("bench-detect.json"),
        serde_json::to_vec_pretty(
            &serde_json::json!({"catalogue": rows, "controls": controls, "canary": pairs}),
        )?,
    )?;
    print!("{}", table(&rows));
    print!("{}", totals(&rows, &controls));
    if !opts.no_canary {
        print!("{}", canary::table(&pairs));
        print!("{}", canary::totals(&pairs));
    }
    Ok(true)
}

/// The catalogue of the service binary being measured.
fn catalogue(service: &Path) -> Result<Catalogue> {
    let out = output_within(
        Command::new(service).args(["scenarios", "--json"]),
        Duration::from_secs(60),
        "leaklab-service scenarios --json",
    )?;
    json::parse(&out.stdout, "leaklab-service scenarios --json")
}

/// What every run shares.
struct Runner<'a> {
    loadgen: &'a Path,
    service: &'a Path,
    opts: &'a DetectOpts,
}

impl Runner<'_> {
    /// One `loadgen run --until-verdict` of `s`, its files under `OUT/name`.
    fn one(&self, s: &Scenario, name: &str) -> Result<Row> {
        let dir = self.opts.out.join(name);
        let started = Instant::now();
        let limit = self.opts.duration + Duration::from_secs(120);
        let out = output_within(
            Command::new(self.loadgen)
                .env("LEAKLAB_SERVICE_BIN", self.service)
                .args([
                    "run",
                    "--spawn",
                    "--scenario",
                    &s.id,
                    "--until-verdict",
                    "--json",
                ])
                .args([
                    "--duration",
                    &format!("{}ms", self.opts.duration.as_millis()),
                ])
                .args(["--warmup", &format!("{}ms", self.opts.warmup.as_millis())])
                .arg("--out")
                .arg(&dir),
            limit,
            "loadgen run --until-verdict",
        )?;
        let wall_s = started.elapsed().as_secs_f64();
        let parsed: Result<RunSummary> = json::parse_report(&out.stdout, "loadgen run --json")
            .with_context(|| format!("loadgen exited {:?}", out.status.code()));
        let mut row = Row {
            scenario: s.id.clone(),
            expected: s.class,
            negative_control: s.negative_control,
            class: None,
            leak: None,
            decided_by: None,
            after_s: None,
            right: false,
            wall_s,
            error: None,
        };
        match parsed {
            Ok(summary) => {
                let v = &summary.verdict;
                row.right = if s.negative_control {
                    !v.leak
                } else {
                    v.leak && v.class == s.class
                };
                row.class = Some(v.class);
                row.leak = Some(v.leak);
                row.decided_by = summary.sequential.as_ref().map(|q| q.decided_by.clone());
                row.after_s = summary.sequential.as_ref().map(|q| q.decision_after_s);
            }
            Err(e) => row.error = Some(format!("{e:#}")),
        }
        eprintln!(
            "    {} in {:.1} s after warm-up by {} ({}), {:.0} s in all",
            row.class
                .map(|c| c.to_string())
                .unwrap_or_else(|| "no verdict".into()),
            row.after_s.unwrap_or(f64::NAN),
            row.decided_by.as_deref().unwrap_or("-"),
            if row.right { "right" } else { "WRONG" },
            wall_s
        );
        Ok(row)
    }
}

/// One line per catalogue scenario.
pub fn table(rows: &[Row]) -> String {
    let mut out = format!(
        "{:<19} {:<13} {:<13} {:<13} {:>10}  {}\n",
        "scenario", "expected", "verdict", "decided by", "after (s)", "right"
    );
    for r in rows {
        out.push_str(&format!(
            "{:<19} {:<13} {:<13} {:<13} {:>10}  {}\n",
            r.scenario,
            format!(
                "{}{}",
                r.expected,
                if r.negative_control { "*" } else { "" }
            ),
            r.class.map(|c| c.to_string()).unwrap_or_else(|| "-".into()),
            r.decided_by.as_deref().unwrap_or("-"),
            r.after_s
                .map(|a| format!("{a:.1}"))
                .unwrap_or_else(|| "-".into()),
            if r.right { "yes" } else { "NO" },
        ));
    }
    out.push_str("(* negative control: right when not called a leak)\n");
    out
}

/// Median and largest of some times.
pub(crate) fn spread(times: impl Iterator<Item = f64>) -> (f64, f64) {
    let mut t: Vec<f64> = times.collect();
    t.sort_by(f64::total_cmp);
    let median = t.get(t.len() / 2).copied().unwrap_or(f64::NAN);
    (median, t.last().copied().unwrap_or(f64::NAN))
}

/// The totals, and whether the targets were met.
pub fn totals(rows: &[Row], controls: &[Row]) -> String {
    let leaks: Vec<&Row> = rows.iter().filter(|r| !r.negative_control).collect();
    let right = leaks.iter().filter(|r| r.right).count();
    let fast = leaks
        .iter()
        .filter(|r| r.right && r.after_s.is_some_and(|a| a <= LEAK_WITHIN_S))
        .count();
    let (leak_median, leak_max) = spread(leaks.iter().filter_map(|r| r.after_s));
    let all_controls: Vec<&Row> = rows
        .iter()
        .filter(|r| r.negative_control)
        .chain(controls)
        .collect();
    let alarms = controls.iter().filter(|r| r.leak != Some(false)).count();
    let early = all_controls
        .iter()
        .filter(|r| r.decided_by.as_deref() == Some("sequential"))
        .count();
    let (control_median, control_max) = spread(all_controls.iter().filter_map(|r| r.after_s));
    let met = |ok: bool| if ok { "MET" } else { "NOT MET" };
    format!(
        "leaks: {right} of {} called with the catalogue's class, {fast} of them within {LEAK_WITHIN_S:.0} s of measurement; \
         time to verdict after warm-up: median {leak_median:.1} s, worst {leak_max:.1} s\n\
         negative controls: {alarms} false alarm(s) in {} control runs; {early} of {} control runs stopped early; \
         time to verdict after warm-up: median {control_median:.1} s, worst {control_max:.1} s\n\
         target: every leak called correctly within {LEAK_WITHIN_S:.0} s of measurement: {}\n\
         target: no false alarm in {} control runs: {}\n",
        leaks.len(),
        controls.len(),
        all_controls.len(),
        met(fast == leaks.len()),
        controls.len(),
        met(alarms == 0 && !controls.is_empty()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, control: bool, class: LeakClass, after: f64) -> Row {
        Row {
            scenario: id.into(),
            expected: if control { LeakClass::Churn } else { class },
            negative_control: control,
            class: Some(class),
            leak: Some(class.is_leak()),
            decided_by: Some("sequential".into()),
            after_s: Some(after),
            right: if control { !class.is_leak() } else { true },
            wall_s: 20.0,
            error: None,
        }
    }

    #[test]
    fn totals_say_whether_the_targets_were_met() {
        let rows = vec![
            row("a", false, LeakClass::Retention, 3.0),
            row("b", false, LeakClass::TaskLeak, 12.0),
            row("c", true, LeakClass::Churn, 5.0),
        ];
        let controls = vec![row("c-1", true, LeakClass::Churn, 4.0)];
        let t = totals(&rows, &controls);
        assert!(
            t.contains("2 of 2 called with the catalogue's class, 1 of them within 10 s"),
            "{t}"
        );
        assert!(t.contains("within 10 s of measurement: NOT MET"), "{t}");
        assert!(t.contains("0 false alarm(s) in 1 control runs"), "{t}");
        assert!(t.contains("no false alarm in 1 control runs: MET"), "{t}");
        let alarmed = vec![row("c-1", true, LeakClass::Retention, 4.0)];
        assert!(totals(&rows, &alarmed).contains("control runs: NOT MET"));
        assert!(table(&rows).contains("churn*"));
    }
}
