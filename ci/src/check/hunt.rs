//! `cargo ci check hunt FILE`: what `loadgen hunt --json` found
//! ([`HuntReport`], `leaklab.hunt/v1`), and whether the fix flattened it.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::Result;
use clap::Args;
use leaklab_model::hunt::HuntReport;
use leaklab_model::LeakClass;

use super::{mib_per_h, Check, Checked};
use crate::json;

/// Options of `cargo ci check hunt`.
#[derive(Debug, Args)]
pub struct HuntCheck {
    /// The report (`loadgen hunt --json > FILE`).
    pub file: PathBuf,
    /// A finding the hunt must report, as SCENARIO:CLASS (e.g.
    /// `unbounded-cache:retention`); repeatable. Other findings may be there too.
    #[arg(long = "expect", value_name = "SCENARIO:CLASS")]
    pub expect: Vec<Expected>,
    /// The re-measurement with the fixes on must find no leak.
    #[arg(long)]
    pub fixed_flat: bool,
    /// The hunt must have named leaks and proven its fix (`fix_proven: true`,
    /// what exit code 3 means; 4 is "fix not proven").
    #[arg(long)]
    pub fix_proven: bool,
}

/// A finding expected: the scenario it is attributed to and its class.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expected {
    pub scenario: String,
    pub class: LeakClass,
}

impl FromStr for Expected {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (scenario, class) = s
            .split_once(':')
            .ok_or_else(|| format!("`{s}` is not SCENARIO:CLASS (e.g. task-leak:task-leak)"))?;
        Ok(Expected {
            scenario: scenario.to_owned(),
            class: class.parse().map_err(|e| format!("{e}"))?,
        })
    }
}

impl fmt::Display for Expected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.scenario, self.class)
    }
}

impl Check for HuntCheck {
    type Report = HuntReport;

    fn read(file: &Path) -> Result<HuntReport> {
        json::read_report(file)
    }

    fn file(&self) -> &Path {
        &self.file
    }

    fn check(&self, report: &HuntReport) -> Checked {
        let found: Vec<String> = report
            .findings
            .iter()
            .map(|f| {
                let scenario = f.scenario.as_deref().unwrap_or("(unattributed)");
                format!("{scenario}:{}", f.class)
            })
            .collect();
        let found_list = if found.is_empty() {
            "no findings".to_owned()
        } else {
            found.join(", ")
        };
        let after = &report.after_fix;
        let after_line = if after.leak {
            format!(
                "a leak ({}, {})",
                after.class,
                mib_per_h(Some(after.burn_rate_bytes_per_h))
            )
        } else {
            "no leak".to_owned()
        };
        let mut checked = Checked::new(format!("found {found_list}; after the fix: {after_line}"));
        for expected in &self.expect {
            let met = report.findings.iter().any(|f| {
                f.scenario.as_deref() == Some(expected.scenario.as_str())
                    && f.class == expected.class
            });
            checked.expect(met, format_args!("a finding {expected}"), &found_list);
        }
        if self.fixed_flat {
            checked.expect(!after.leak, "no leak after the fix", &after_line);
        }
        if self.fix_proven {
            let proven = match report.fix_proven {
                Some(true) => "fix proven",
                Some(false) => "fix not proven",
                None => "nothing to fix",
            };
            checked.expect(
                report.fix_proven == Some(true),
                "leaks named and the fix proven",
                proven,
            );
        }
        checked
    }
}

#[cfg(test)]
mod tests {
    use leaklab_model::hunt::{AfterFix, HuntFinding};

    use super::*;

    fn finding(scenario: &str, class: LeakClass) -> HuntFinding {
        HuntFinding {
            scenario: Some(scenario.to_owned()),
            class,
            component: None,
            signal: "allocated".to_owned(),
            burn_rate_bytes_per_h: Some(1e9),
            time_to_oom_s: None,
            artifact: None,
            why: String::new(),
            path: String::new(),
            route: None,
            evidence: Vec::new(),
        }
    }

    fn report(findings: Vec<HuntFinding>, leak_after_fix: bool) -> HuntReport {
        HuntReport {
            schema: leaklab_model::hunt::SCHEMA.to_owned(),
            leaks: vec!["unbounded-cache".into(), "task-leak".into()],
            findings,
            after_fix: AfterFix {
                leak: leak_after_fix,
                class: if leak_after_fix {
                    LeakClass::Retention
                } else {
                    LeakClass::None
                },
                burn_rate_bytes_per_h: 0.0,
                alive_tasks_slope_per_s: 0.0,
            },
            report: "out/hunt/report.html".into(),
            markdown: "out/hunt/hunt.md".into(),
            elapsed_s: 90.0,
            blind: false,
            mystery_seed: None,
            fix_proven: None,
            notes: Vec::new(),
        }
    }

    fn ci_check() -> HuntCheck {
        HuntCheck {
            file: "out/ci-hunt.json".into(),
            expect: vec![
                "unbounded-cache:retention".parse().unwrap(),
                "task-leak:task-leak".parse().unwrap(),
            ],
            fixed_flat: true,
            fix_proven: false,
        }
    }

    #[test]
    fn fix_proven_needs_a_named_leak_and_a_proven_fix() {
        let check = HuntCheck {
            file: "out/ci-blind.json".into(),
            expect: Vec::new(),
            fixed_flat: false,
            fix_proven: true,
        };
        let mut r = report(vec![finding("task-leak", LeakClass::TaskLeak)], false);
        r.fix_proven = Some(true);
        assert!(check.check(&r).passed());
        r.fix_proven = Some(false);
        assert_eq!(
            check.check(&r).unmet,
            ["expected leaks named and the fix proven, found fix not proven"]
        );
        r.fix_proven = None;
        assert!(!check.check(&r).passed());
    }

    #[test]
    fn both_seeded_leaks_found_and_a_flat_fix_pass() {
        let r = report(
            vec![
                finding("unbounded-cache", LeakClass::Retention),
                finding("task-leak", LeakClass::TaskLeak),
            ],
            false,
        );
        let checked = ci_check().check(&r);
        assert!(checked.passed(), "{:?}", checked.unmet);
        assert_eq!(
            checked.line,
            "found unbounded-cache:retention, task-leak:task-leak; after the fix: no leak"
        );
    }

    #[test]
    fn a_missing_or_misclassed_finding_and_a_leaky_fix_fail_saying_what_was_found() {
        let r = report(vec![finding("task-leak", LeakClass::Retention)], true);
        let checked = ci_check().check(&r);
        assert_eq!(
            checked.unmet,
            [
                "expected a finding unbounded-cache:retention, found task-leak:retention",
                "expected a finding task-leak:task-leak, found task-leak:retention",
                "expected no leak after the fix, found a leak (retention, 0.0 MiB/h)",
            ]
        );
    }

    #[test]
    fn an_expectation_names_a_known_class() {
        assert!("task-leak:leaky".parse::<Expected>().is_err());
        assert!("task-leak".parse::<Expected>().is_err());
    }
}
