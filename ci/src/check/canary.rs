//! `cargo ci check canary FILE`: the judgement of `loadgen canary --json`
//! ([`CanaryReport`], `leaklab.canary/v1`).

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::Args;
use leaklab_model::canary::CanaryReport;
use leaklab_model::LeakClass;

use super::{mib_per_h, wanted, Check, Checked};
use crate::json;

/// Options of `cargo ci check canary`.
#[derive(Debug, Args)]
pub struct CanaryCheck {
    /// The report (`loadgen canary --json > FILE`, or `canary.json` in its --out).
    pub file: PathBuf,
    /// The canary must regress (it leaks and the baseline does not as much).
    #[arg(long, conflicts_with = "no_regression")]
    pub regression: bool,
    /// The canary must not regress.
    #[arg(long)]
    pub no_regression: bool,
    /// The canary's leak class.
    #[arg(long)]
    pub class: Option<LeakClass>,
    /// The component the canary's leak is attributed to (a catalogue
    /// component, e.g. `cache`).
    #[arg(long)]
    pub component: Option<String>,
}

impl Check for CanaryCheck {
    type Report = CanaryReport;

    fn read(file: &Path) -> Result<CanaryReport> {
        json::read_report(file)
    }

    fn file(&self) -> &Path {
        &self.file
    }

    fn check(&self, r: &CanaryReport) -> Checked {
        let v = &r.verdict;
        let component = v.component.as_deref().unwrap_or("none");
        let mut checked = Checked::new(format!(
            "regression={} class={} component={component}, {} over the baseline; baseline {}",
            v.regression,
            v.class,
            mib_per_h(v.burn_rate_delta_bytes_per_h),
            if r.baseline.verdict.leak {
                format!("leaks ({})", r.baseline.verdict.class)
            } else {
                format!("no leak ({})", r.baseline.verdict.class)
            }
        ));
        if let Some(regression) = wanted(self.regression, self.no_regression) {
            let expected = if regression {
                "a regression"
            } else {
                "no regression"
            };
            checked.expect(
                v.regression == regression,
                expected,
                format_args!("regression={}", v.regression),
            );
        }
        if let Some(class) = self.class {
            checked.expect(v.class == class, format_args!("class {class}"), v.class);
        }
        if let Some(expected) = &self.component {
            checked.expect(
                v.component.as_ref() == Some(expected),
                format_args!("component {expected}"),
                component,
            );
        }
        checked
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use leaklab_model::canary::{CanaryVerdict, Side};
    use leaklab_model::run::Verdict;

    use super::*;

    fn side(target: &str, class: LeakClass) -> Side {
        Side {
            target: target.into(),
            pid: None,
            verdict: Verdict {
                leak: class.is_leak(),
                class,
                findings: vec![],
                time_to_oom_s: None,
                time_to_oom_interval_s: None,
                limit_bytes: None,
                reasons: vec![],
            },
            signals: BTreeMap::new(),
            dir: "out/ci-canary".into(),
            died: false,
        }
    }

    fn report(regression: bool, class: LeakClass, component: Option<&str>) -> CanaryReport {
        CanaryReport {
            schema: leaklab_model::canary::SCHEMA.into(),
            scenario: "unbounded-cache,task-leak,churn".into(),
            window_s: [15.0, 40.0],
            toggles: vec![],
            baseline: side("http://127.0.0.1:18081", LeakClass::None),
            canary: side("http://127.0.0.1:18082", class),
            compared: vec![],
            verdict: CanaryVerdict {
                regression,
                class,
                component: component.map(str::to_owned),
                signal: Some("allocated".into()),
                burn_rate_delta_bytes_per_h: Some(2.5e9),
                reasons: vec![],
            },
            plot: None,
            notes: vec![],
            sequential: None,
        }
    }

    fn ci_pair() -> CanaryCheck {
        CanaryCheck {
            file: "out/ci-canary.json".into(),
            regression: true,
            no_regression: false,
            class: Some(LeakClass::Retention),
            component: Some("cache".into()),
        }
    }

    #[test]
    fn the_leaky_canary_judged_a_cache_retention_regression_passes() {
        let checked = ci_pair().check(&report(true, LeakClass::Retention, Some("cache")));
        assert!(checked.passed(), "{:?}", checked.unmet);
        assert_eq!(
            checked.line,
            "regression=true class=retention component=cache, 2384.2 MiB/h over the baseline; \
             baseline no leak (none)"
        );
    }

    #[test]
    fn no_regression_or_another_class_or_component_fails() {
        let checked = ci_pair().check(&report(false, LeakClass::TaskLeak, None));
        assert_eq!(
            checked.unmet,
            [
                "expected a regression, found regression=false",
                "expected class retention, found task-leak",
                "expected component cache, found none",
            ]
        );
    }
}
