//! `cargo ci check bisect FILE`: what `cargo ci bisect --json` named first
//! bad ([`BisectReport`]), and that the search kept within its bound.

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::Args;
use leaklab_model::bisect::BisectReport;

use super::{Check, Checked};
use crate::json;

/// Options of `cargo ci check bisect`.
#[derive(Debug, Args)]
pub struct BisectCheck {
    /// The report (`cargo ci bisect --json > FILE`).
    pub file: PathBuf,
    /// The release the search must name as the first bad one; `none` when
    /// no release may be bad.
    #[arg(long, value_name = "RELEASE")]
    pub first_bad: Option<String>,
}

impl Check for BisectCheck {
    type Report = BisectReport;

    fn read(file: &Path) -> Result<BisectReport> {
        json::read(file)
    }

    fn file(&self) -> &Path {
        &self.file
    }

    fn check(&self, report: &BisectReport) -> Checked {
        let first_bad = report.first_bad.as_deref().unwrap_or("none");
        let mut checked = Checked::new(format!(
            "first bad {first_bad} with {} measurements (at most {}) of {} releases, {} builds, {:.0} s",
            report.measurements,
            report.max_measurements,
            report.measured.len(),
            report.builds,
            report.elapsed_s
        ));
        if let Some(expected) = &self.first_bad {
            checked.expect(
                first_bad == expected,
                format_args!("first bad release {expected}"),
                first_bad,
            );
        }
        checked.expect(
            report.measurements <= report.max_measurements,
            format_args!(
                "at most {} measurements (the binary search's bound)",
                report.max_measurements
            ),
            report.measurements,
        );
        checked
    }
}

#[cfg(test)]
mod tests {
    use leaklab_model::bisect::Row;

    use super::*;

    fn report(first_bad: Option<&str>, measurements: usize) -> BisectReport {
        let row = |release: &str, verdict: &str| Row {
            release: release.to_owned(),
            burn_rate_bytes_per_h: Some(1e6),
            verdict: Some(verdict.to_owned()),
            features: vec![],
        };
        BisectReport {
            first_bad: first_bad.map(str::to_owned),
            measured: vec![
                row("r1", "no leak"),
                row("r2", "no leak"),
                row("r3", "leak (retention)"),
            ],
            builds: 2,
            measurements,
            max_measurements: 2,
            elapsed_s: 180.0,
            plot: "out/ci-bisect/burn-rate-by-release.svg".into(),
        }
    }

    fn expecting(first_bad: &str) -> BisectCheck {
        BisectCheck {
            file: "out/ci-bisect.json".into(),
            first_bad: Some(first_bad.to_owned()),
        }
    }

    #[test]
    fn the_planted_release_found_within_the_bound_passes() {
        let checked = expecting("r3").check(&report(Some("r3"), 2));
        assert!(checked.passed(), "{:?}", checked.unmet);
        assert_eq!(
            checked.line,
            "first bad r3 with 2 measurements (at most 2) of 3 releases, 2 builds, 180 s"
        );
    }

    #[test]
    fn the_json_keeps_the_fields_and_order_cargo_ci_bisect_always_printed() {
        let mut r = report(Some("r3"), 2);
        r.measured.truncate(1);
        r.measured[0].features = vec!["leak-churn".into()];
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"first_bad":"r3","measured":[{"release":"r1","burn_rate_bytes_per_h":1000000.0,"verdict":"no leak","features":["leak-churn"]}],"builds":2,"measurements":2,"max_measurements":2,"elapsed_s":180.0,"plot":"out/ci-bisect/burn-rate-by-release.svg"}"#
        );
    }

    #[test]
    fn another_release_or_too_many_measurements_fail() {
        let checked = expecting("r3").check(&report(None, 3));
        assert_eq!(
            checked.unmet,
            [
                "expected first bad release r3, found none",
                "expected at most 2 measurements (the binary search's bound), found 3",
            ]
        );
        assert!(expecting("none").check(&report(None, 2)).passed());
    }
}
