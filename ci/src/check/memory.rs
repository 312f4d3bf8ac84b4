//! `cargo ci check memory FILE`: which scenarios' leaky paths a running
//! service has on, from its `GET /debug/memory` (`leaks_on`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::Result;
use clap::Args;
use serde::Deserialize;

use super::{Check, Checked};
use crate::json;

/// The part of `/debug/memory` this check reads.
///
/// Declared here because `leaklab-model` has no type with `leaks_on` yet (its
/// `run::TargetMemory` holds what loadgen samples, every field defaulted).
/// The field is required: a renamed field fails instead of reading as "no
/// leak on".
#[derive(Clone, Debug, Deserialize)]
pub struct MemoryReport {
    /// Scenarios whose leaky path is on, in catalogue order.
    pub leaks_on: Vec<String>,
}

/// Options of `cargo ci check memory`.
#[derive(Debug, Args)]
pub struct MemoryCheck {
    /// The document (`curl -sf http://HOST/debug/memory > FILE`).
    pub file: PathBuf,
    /// Exactly these scenarios must have their leaky path on, as a comma
    /// list in any order (`unbounded-cache,task-leak`); `none` or an empty
    /// value: no leak may be on.
    #[arg(long, value_name = "IDS")]
    pub leaks_on: Option<LeakSet>,
}

/// A set of scenario ids, `none` when empty.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LeakSet(pub BTreeSet<String>);

impl FromStr for LeakSet {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.trim() == "none" {
            return Ok(LeakSet::default());
        }
        Ok(LeakSet(
            s.split(',')
                .map(str::trim)
                .filter(|id| !id.is_empty())
                .map(str::to_owned)
                .collect(),
        ))
    }
}

impl std::fmt::Display for LeakSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&self.0.iter().cloned().collect::<Vec<_>>().join(","))
        }
    }
}

impl Check for MemoryCheck {
    type Report = MemoryReport;

    fn read(file: &Path) -> Result<MemoryReport> {
        json::read(file)
    }

    fn file(&self) -> &Path {
        &self.file
    }

    fn check(&self, report: &MemoryReport) -> Checked {
        let on = LeakSet(report.leaks_on.iter().cloned().collect());
        let mut checked = Checked::new(format!("leaks on: {on}"));
        if let Some(expected) = &self.leaks_on {
            checked.expect(
                &on == expected,
                format_args!("leaks on: {expected}"),
                format_args!("leaks on: {on}"),
            );
        }
        checked
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expecting(ids: &str) -> MemoryCheck {
        MemoryCheck {
            file: "out/ci-memory-18082.json".into(),
            leaks_on: Some(ids.parse().unwrap()),
        }
    }

    fn report(ids: &[&str]) -> MemoryReport {
        MemoryReport {
            leaks_on: ids.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn the_same_leaks_in_any_order_pass() {
        let checked = expecting("task-leak, unbounded-cache")
            .check(&report(&["unbounded-cache", "task-leak"]));
        assert!(checked.passed(), "{:?}", checked.unmet);
        assert_eq!(checked.line, "leaks on: task-leak,unbounded-cache");
        assert!(expecting("none").check(&report(&[])).passed());
        assert!(expecting("").check(&report(&[])).passed());
    }

    #[test]
    fn a_missing_or_extra_leak_fails() {
        let checked = expecting("none").check(&report(&["unbounded-cache"]));
        assert_eq!(
            checked.unmet,
            ["expected leaks on: none, found leaks on: unbounded-cache"]
        );
        assert!(!expecting("unbounded-cache").check(&report(&[])).passed());
    }

    #[test]
    fn a_document_without_leaks_on_is_an_error() {
        let err = json::parse::<MemoryReport>(br#"{"allocated": 1}"#, "m.json").unwrap_err();
        assert!(
            err.to_string().contains("missing field `leaks_on`"),
            "{err}"
        );
    }
}
