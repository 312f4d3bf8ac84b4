//! `cargo ci check run FILE`: the verdict of one `loadgen run --json`
//! ([`RunSummary`], `leaklab.run/v1`).

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::Args;
use leaklab_model::run::RunSummary;
use leaklab_model::LeakClass;

use super::{mib_per_h, parse_bytes, wanted, Check, Checked};
use crate::json;

/// Options of `cargo ci check run`.
#[derive(Debug, Args)]
pub struct RunCheck {
    /// The run summary (`loadgen run --json > FILE`, or `summary.json` in its --out).
    pub file: PathBuf,
    /// The verdict must be a leak.
    #[arg(long, conflicts_with = "no_leak")]
    pub leak: bool,
    /// The verdict must be no leak.
    #[arg(long)]
    pub no_leak: bool,
    /// The verdict's class (retention, task-leak, off-heap, rss-retained,
    /// plateau, churn, bounded, none).
    #[arg(long)]
    pub class: Option<LeakClass>,
    /// The memory limit the run saw (`verdict.limit_bytes`, e.g. the
    /// container's): bytes, or with KiB, MiB, GiB.
    #[arg(long, value_name = "BYTES", value_parser = parse_bytes)]
    pub limit_bytes: Option<u64>,
}

impl Check for RunCheck {
    type Report = RunSummary;

    fn read(file: &Path) -> Result<RunSummary> {
        json::read_report(file)
    }

    fn file(&self) -> &Path {
        &self.file
    }

    fn check(&self, s: &RunSummary) -> Checked {
        let v = &s.verdict;
        let verdict = if v.leak {
            format!("leak ({})", v.class)
        } else {
            format!("no leak ({})", v.class)
        };
        let burn = v
            .findings
            .iter()
            .filter_map(|f| f.burn_rate_bytes_per_h)
            .reduce(f64::max);
        let limit = v
            .limit_bytes
            .map(|b| format!("{b} bytes"))
            .unwrap_or_else(|| "none".to_owned());
        let mut checked = Checked::new(format!(
            "{}: verdict {verdict}, limit {limit}, burn {}, {:.0} req/s, {} errors",
            s.scenario.as_deref().unwrap_or("(no scenario)"),
            mib_per_h(burn),
            s.load.rate_achieved,
            s.load.errors
        ));
        if let Some(leak) = wanted(self.leak, self.no_leak) {
            let expected = if leak { "a leak" } else { "no leak" };
            checked.expect(v.leak == leak, format_args!("{expected}"), &verdict);
        }
        if let Some(class) = self.class {
            checked.expect(v.class == class, format_args!("class {class}"), v.class);
        }
        if let Some(bytes) = self.limit_bytes {
            checked.expect(
                v.limit_bytes == Some(bytes),
                format_args!("limit {bytes} bytes"),
                &limit,
            );
        }
        checked
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeMap;

    use leaklab_model::run::{Finding, Latency, LoadSummary, SamplesInfo, Verdict};

    use super::*;

    /// A run summary of `unbounded-cache` with this verdict, everything else
    /// minimal (a finding burning 3.6 GB/h when `leak`).
    pub(crate) fn summary(leak: bool, class: LeakClass, limit_bytes: Option<u64>) -> RunSummary {
        let findings = if leak {
            vec![Finding {
                class,
                component: Some("cache".into()),
                gauge: Some("cache_entries".into()),
                signal: "allocated".into(),
                slope_per_s: 1e6,
                burn_rate_bytes_per_h: Some(3.6e9),
            }]
        } else {
            vec![]
        };
        RunSummary {
            schema: leaklab_model::run::SCHEMA.into(),
            scenario: Some("unbounded-cache".into()),
            target: "http://service:8080".into(),
            pid: None,
            load: LoadSummary {
                rate_target: Some(100.0),
                rate_achieved: 99.6,
                requests: 1_500,
                http_requests: 1_500,
                errors: 0,
                dropped: 0,
                status_4xx: 0,
                duration_s: 15.0,
                warmup_s: 5.0,
                latency_ms: Latency::default(),
            },
            signals: BTreeMap::new(),
            verdict: Verdict {
                leak,
                class,
                findings,
                time_to_oom_s: None,
                time_to_oom_interval_s: None,
                limit_bytes,
                reasons: vec![],
            },
            ground_truth: None,
            target_died: None,
            samples: SamplesInfo {
                taken: 100,
                kept: 100,
                interval_s: 0.2,
                path: None,
            },
            report: None,
            notes: vec![],
            stopped_early: false,
            sequential: None,
        }
    }

    fn compose_job() -> RunCheck {
        RunCheck {
            file: "out/ci-compose-run.json".into(),
            leak: true,
            no_leak: false,
            class: None,
            limit_bytes: Some(256 << 20),
        }
    }

    #[test]
    fn a_leak_under_the_container_limit_passes() {
        let checked = compose_job().check(&summary(true, LeakClass::Retention, Some(256 << 20)));
        assert!(checked.passed(), "{:?}", checked.unmet);
        assert_eq!(
            checked.line,
            "unbounded-cache: verdict leak (retention), limit 268435456 bytes, burn 3433.2 MiB/h, \
             100 req/s, 0 errors"
        );
    }

    #[test]
    fn no_leak_another_class_or_no_limit_fail() {
        let mut check = compose_job();
        check.class = Some(LeakClass::Retention);
        let checked = check.check(&summary(false, LeakClass::Churn, None));
        assert_eq!(
            checked.unmet,
            [
                "expected a leak, found no leak (churn)",
                "expected class retention, found churn",
                "expected limit 268435456 bytes, found none",
            ]
        );
    }
}
