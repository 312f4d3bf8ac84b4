//! [`RunPlan`]: the typed way to start a run. `loadgen run` builds one from
//! its options; `hunt`, `canary` and `oom` build theirs directly, with the
//! same defaults (`RunPlan::new`) and builder methods for what they change.

use std::path::PathBuf;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::args::RateArg;
use crate::target::AccessOpts;

/// Whole run length, warm-up included (`--duration`).
pub const DURATION: Duration = Duration::from_secs(40);
/// Warm-up excluded from the analysis (`--warmup`).
pub const WARMUP: Duration = Duration::from_secs(10);
/// Connections to the target (`--connections`).
pub const CONNECTIONS: usize = 64;
/// Triggering requests in flight at most (`--max-in-flight`).
pub const MAX_IN_FLIGHT: usize = 1024;
/// An arrival this late is dropped (`--max-lag`).
pub const MAX_LAG: Duration = Duration::from_secs(1);
/// Memory sampling interval (`--sample-interval`).
pub const SAMPLE_INTERVAL: Duration = Duration::from_millis(250);
/// The pre-load baseline lasts this long.
pub const BASELINE: Duration = Duration::from_millis(1200);

/// What a run sends: one scenario's recipe, a mix of several, every one, or
/// a plain `GET path`.
#[derive(Clone, Debug, PartialEq)]
pub enum Workload {
    One(String),
    /// A mixed workload over these scenarios, round-robin (`a,b`).
    Mix(Vec<String>),
    /// A mixed workload over every scenario of the catalogue.
    All,
    /// `GET path`, no scenario.
    Path(String),
}

impl Workload {
    /// `--scenario`: an id, `all`, or a comma list.
    pub fn parse(scenario: &str) -> Workload {
        match scenario {
            "all" => Workload::All,
            ids if ids.contains(',') => Workload::Mix(
                ids.split(',')
                    .map(str::trim)
                    .filter(|id| !id.is_empty())
                    .map(str::to_owned)
                    .collect(),
            ),
            id => Workload::One(id.to_owned()),
        }
    }

    /// As `--scenario` (or `--path`) spells it; the summary's `scenario`.
    pub fn label(&self) -> String {
        match self {
            Workload::One(id) => id.clone(),
            Workload::Mix(ids) => ids.join(","),
            Workload::All => "all".into(),
            Workload::Path(path) => path.clone(),
        }
    }

    /// The scenario ids named (none for `all` and a path).
    pub fn ids(&self) -> &[String] {
        match self {
            Workload::One(id) => std::slice::from_ref(id),
            Workload::Mix(ids) => ids,
            Workload::All | Workload::Path(_) => &[],
        }
    }
}

/// Which leaks a spawned child has on.
#[derive(Clone, Debug, PartialEq)]
pub enum SpawnLeaks {
    /// The workload's own scenarios (none for `all`).
    Workload,
    /// These (`--leak`).
    These(Vec<String>),
    /// None, every leak fixed explicitly (`--fixed`).
    Fixed,
}

/// The service a run loads.
#[derive(Clone, Debug)]
pub enum TargetPlan {
    /// A running service.
    Url { url: String, access: AccessOpts },
    /// A leaklab-service child started for the run and stopped after it
    /// (its log is `service.log` in the output directory).
    Spawn {
        leaks: SpawnLeaks,
        token: Option<String>,
    },
}

/// Everything a run needs to know before it starts.
#[derive(Clone, Debug)]
pub struct RunPlan {
    pub target: TargetPlan,
    pub workload: Workload,
    /// The target's pid, for independent `/proc` and cgroup reads (a spawned
    /// child's is known).
    pub pid: Option<u32>,
    pub rate: RateArg,
    pub duration: Duration,
    pub warmup: Duration,
    /// Ramp the rate linearly from 0 over this long.
    pub ramp: Option<Duration>,
    pub connections: usize,
    pub max_in_flight: usize,
    pub max_lag: Duration,
    /// Stop after this many triggering requests.
    pub max_requests: Option<u64>,
    pub sample_interval: Duration,
    /// Memory limit for time-to-OOM; else the target's cgroup limit.
    pub limit: Option<u64>,
    /// Where samples.jsonl, summary.json, report.html and the plots go.
    pub out: Option<PathBuf>,
    /// No progress line on stderr (`--json`, or a caller with its own).
    pub quiet: bool,
    /// Samples taken before the load starts, for the floor.
    pub baseline: Duration,
    /// A Prometheus exposition to sample (`--metrics`).
    pub metrics: Option<String>,
    /// Its series to keep (`--metric`).
    pub metric_names: Vec<String>,
    /// The share of each scenario's leak budget this run may fill (`auto`
    /// rates and a mixed run's caps); 0.5 by default, less for a caller
    /// that runs the same service several times (the blind hunt).
    pub budget_share: f64,
    /// Stop as soon as the sequential test is decisive and the judge agrees
    /// (`--until-verdict`); `duration` is then the maximum.
    pub until_verdict: bool,
    /// Draw the run live on the terminal instead of progress lines (`--tui`).
    pub tui: bool,
    /// A caller's own early stop: cancelling it ends the load and the
    /// sampling as `--until-verdict`'s stop does (`loadgen canary
    /// --until-verdict` stops both sides on one decision).
    pub stop: Option<CancellationToken>,
}

impl RunPlan {
    /// A run of `workload` against `target` with `loadgen run`'s defaults.
    pub fn new(target: TargetPlan, workload: Workload) -> RunPlan {
        RunPlan {
            target,
            workload,
            pid: None,
            rate: RateArg::Auto,
            duration: DURATION,
            warmup: WARMUP,
            ramp: None,
            connections: CONNECTIONS,
            max_in_flight: MAX_IN_FLIGHT,
            max_lag: MAX_LAG,
            max_requests: None,
            sample_interval: SAMPLE_INTERVAL,
            limit: None,
            out: None,
            quiet: false,
            baseline: BASELINE,
            metrics: None,
            metric_names: Vec::new(),
            budget_share: 0.5,
            until_verdict: false,
            tui: false,
            stop: None,
        }
    }

    /// A run against the service at `url` (pid known when it is local).
    pub fn against(url: &str, pid: Option<u32>, access: AccessOpts, workload: Workload) -> RunPlan {
        let target = TargetPlan::Url {
            url: url.to_owned(),
            access,
        };
        RunPlan {
            pid,
            ..RunPlan::new(target, workload)
        }
    }

    pub fn rate(mut self, rate: RateArg) -> RunPlan {
        self.rate = rate;
        self
    }

    /// Run length (warm-up included) and warm-up.
    pub fn timing(mut self, duration: Duration, warmup: Duration) -> RunPlan {
        self.duration = duration;
        self.warmup = warmup;
        self
    }

    pub fn limit(mut self, limit: Option<u64>) -> RunPlan {
        self.limit = limit;
        self
    }

    pub fn out(mut self, dir: impl Into<PathBuf>) -> RunPlan {
        self.out = Some(dir.into());
        self
    }

    /// See [`RunPlan::budget_share`].
    pub fn budget_share(mut self, share: f64) -> RunPlan {
        self.budget_share = share;
        self
    }

    pub fn quiet(mut self, quiet: bool) -> RunPlan {
        self.quiet = quiet;
        self
    }

    pub fn sample_interval(mut self, every: Duration) -> RunPlan {
        self.sample_interval = every;
        self
    }

    /// See [`RunPlan::until_verdict`].
    pub fn until_verdict(mut self, on: bool) -> RunPlan {
        self.until_verdict = on;
        self
    }

    /// See [`RunPlan::stop`].
    pub fn stop_on(mut self, token: CancellationToken) -> RunPlan {
        self.stop = Some(token);
        self
    }

    /// The caller's stop was used: the run ended before its duration.
    pub fn stopped_by_caller(&self) -> bool {
        self.stop.as_ref().is_some_and(|t| t.is_cancelled())
    }

    /// No pre-load baseline: the load starts as the sampling does.
    pub fn without_baseline(mut self) -> RunPlan {
        self.baseline = Duration::ZERO;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scenario_argument_is_one_id_a_mix_or_all() {
        assert_eq!(Workload::parse("churn"), Workload::One("churn".into()));
        assert_eq!(Workload::parse("all"), Workload::All);
        let mix = Workload::parse("a, b,");
        assert_eq!(mix, Workload::Mix(vec!["a".into(), "b".into()]));
        assert_eq!(mix.label(), "a,b");
        assert_eq!(mix.ids(), ["a", "b"]);
        assert!(Workload::All.ids().is_empty());
    }
}
