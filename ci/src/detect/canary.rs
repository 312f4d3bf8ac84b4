//! `cargo ci bench-detect`'s canary part: how soon `loadgen canary
//! --until-verdict` flags a bad change after the flag that carries it is
//! turned on in the canary. For each climbing leak of the catalogue (and
//! each negative control, which must not be flagged), two fresh services
//! take the scenario's own workload at its default rate; the canary's flag
//! is toggled on at the end of the warm-up, and the delay is the time from
//! the toggle being applied to the pair's verdict.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use leaklab_model::canary::CanaryReport;
use leaklab_model::{LeakClass, Scenario};
use serde::Serialize;

use super::DetectOpts;
use crate::json;
use crate::process::output_within;

/// The target: a regression flagged within this long of the toggle.
pub const REGRESSION_WITHIN_S: f64 = 15.0;

/// One canary run, as measured.
#[derive(Debug, Serialize)]
pub struct CanaryRow {
    pub scenario: String,
    /// A leak (flagged when right) or a negative control (not flagged).
    pub expect_regression: bool,
    pub regression: Option<bool>,
    /// `sequential` or `fixed-window`.
    pub decided_by: Option<String>,
    /// Seconds from the toggle being applied to the verdict.
    pub after_toggle_s: Option<f64>,
    pub right: bool,
    pub wall_s: f64,
    pub error: Option<String>,
}

/// The scenarios a canary toggle is measured on: the leaks that climb (a
/// one-shot or level-shaped leak turned on mid-run is no burn rate to
/// flag) and the negative controls.
pub fn chosen<'a>(scenarios: &[&'a Scenario]) -> Vec<&'a Scenario> {
    scenarios
        .iter()
        .copied()
        .filter(|s| {
            s.negative_control
                || matches!(
                    s.class,
                    LeakClass::Retention | LeakClass::TaskLeak | LeakClass::OffHeap
                )
        })
        .collect()
}

/// One `loadgen canary --spawn --until-verdict` with `s`'s flag toggled on
/// in the canary at the end of the warm-up.
pub fn one(loadgen: &Path, service: &Path, opts: &DetectOpts, s: &Scenario) -> Result<CanaryRow> {
    let dir = opts.out.join(format!("canary-{}", s.id));
    let warmup_ms = opts.warmup.as_millis();
    let started = Instant::now();
    let out = output_within(
        Command::new(loadgen)
            .env("LEAKLAB_SERVICE_BIN", service)
            .args(["canary", "--spawn", "--until-verdict", "--json"])
            .args(["--scenario", &s.id])
            .args(["--toggle", &format!("{}@{warmup_ms}ms", s.id)])
            .args([
                "--duration",
                &format!("{}ms", opts.canary_duration.as_millis()),
            ])
            .args(["--warmup", &format!("{warmup_ms}ms")])
            .arg("--out")
            .arg(&dir),
        opts.canary_duration + Duration::from_secs(120),
        "loadgen canary --until-verdict",
    )?;
    let wall_s = started.elapsed().as_secs_f64();
    let parsed: Result<CanaryReport> = json::parse_report(&out.stdout, "loadgen canary --json")
        .with_context(|| format!("loadgen exited {:?}", out.status.code()));
    let mut row = CanaryRow {
        scenario: s.id.clone(),
        expect_regression: !s.negative_control,
        regression: None,
        decided_by: None,
        after_toggle_s: None,
        right: false,
        wall_s,
        error: None,
    };
    match parsed {
        Ok(r) => {
            row.regression = Some(r.verdict.regression);
            row.right = r.verdict.regression == row.expect_regression;
            let q = r.sequential.as_ref();
            row.decided_by = q.map(|q| q.decided_by.clone());
            row.after_toggle_s = q.and_then(|q| q.after_toggle_s);
        }
        Err(e) => row.error = Some(format!("{e:#}")),
    }
    eprintln!(
        "    {} {:.1} s after the toggle by {} ({}), {:.0} s in all",
        match row.regression {
            Some(true) => "regression",
            Some(false) => "no regression",
            None => "no verdict",
        },
        row.after_toggle_s.unwrap_or(f64::NAN),
        row.decided_by.as_deref().unwrap_or("-"),
        if row.right { "right" } else { "WRONG" },
        wall_s
    );
    Ok(row)
}

/// One line per canary run.
pub fn table(rows: &[CanaryRow]) -> String {
    let mut out = format!(
        "{:<19} {:<11} {:<14} {:<13} {:>16}  {}\n",
        "canary toggle", "expected", "verdict", "decided by", "after toggle (s)", "right"
    );
    let said = |r: Option<bool>| match r {
        Some(true) => "regression",
        Some(false) => "none",
        None => "-",
    };
    for r in rows {
        out.push_str(&format!(
            "{:<19} {:<11} {:<14} {:<13} {:>16}  {}\n",
            r.scenario,
            said(Some(r.expect_regression)),
            said(r.regression),
            r.decided_by.as_deref().unwrap_or("-"),
            r.after_toggle_s
                .map(|a| format!("{a:.1}"))
                .unwrap_or_else(|| "-".into()),
            if r.right { "yes" } else { "NO" },
        ));
    }
    out
}

/// The canary's totals, and whether its target was met.
pub fn totals(rows: &[CanaryRow]) -> String {
    let leaks: Vec<&CanaryRow> = rows.iter().filter(|r| r.expect_regression).collect();
    let flagged = leaks.iter().filter(|r| r.right).count();
    let fast = leaks
        .iter()
        .filter(|r| r.right && r.after_toggle_s.is_some_and(|a| a <= REGRESSION_WITHIN_S))
        .count();
    let (median, worst) = super::spread(leaks.iter().filter_map(|r| r.after_toggle_s));
    let controls: Vec<&CanaryRow> = rows.iter().filter(|r| !r.expect_regression).collect();
    let alarms = controls
        .iter()
        .filter(|r| r.regression != Some(false))
        .count();
    let met = if fast == leaks.len() && !leaks.is_empty() {
        "MET"
    } else {
        "NOT MET"
    };
    format!(
        "canary: {flagged} of {} toggled leaks flagged as a regression, {fast} within {REGRESSION_WITHIN_S:.0} s of the toggle; \
         delay from toggle to verdict: median {median:.1} s, worst {worst:.1} s; \
         {alarms} of {} toggled negative controls flagged\n\
         target: canary regression flagged within {REGRESSION_WITHIN_S:.0} s of the toggle: {met}\n",
        leaks.len(),
        controls.len(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, expect: bool, flagged: bool, after: f64) -> CanaryRow {
        CanaryRow {
            scenario: id.into(),
            expect_regression: expect,
            regression: Some(flagged),
            decided_by: Some("sequential".into()),
            after_toggle_s: Some(after),
            right: expect == flagged,
            wall_s: 30.0,
            error: None,
        }
    }

    #[test]
    fn canary_totals_count_late_and_missed_regressions_and_false_flags() {
        let rows = vec![
            row("a", true, true, 7.0),
            row("b", true, true, 9.0),
            row("c", false, false, 20.0),
        ];
        let t = totals(&rows);
        assert!(t.contains("2 of 2 toggled leaks flagged"), "{t}");
        assert!(t.contains("2 within 15 s"), "{t}");
        assert!(
            t.contains("0 of 1 toggled negative controls flagged"),
            "{t}"
        );
        assert!(t.contains("of the toggle: MET"), "{t}");
        let late = vec![row("a", true, true, 16.0), row("c", false, true, 5.0)];
        let t = totals(&late);
        assert!(t.contains("0 within 15 s"), "{t}");
        assert!(
            t.contains("1 of 1 toggled negative controls flagged"),
            "{t}"
        );
        assert!(t.contains("NOT MET"), "{t}");
        assert!(table(&rows).contains("regression"));
    }
}
