//! `loadgen rules`: a Prometheus alerting-rule file that encodes loadgen's
//! judgement for a fleet: a memory series whose slope over a window, with
//! the warm-up excluded, burns faster than a threshold and is still
//! climbing at the end of the window (a bounded cache levels off, churn has
//! no slope), and a time-to-OOM alert that extends that slope to a limit.
//! With `--test` it also writes a `promtool test rules` file with synthetic
//! series: a leak that must fire, a bounded cache and churn that must not.
//!
//! ```text
//! loadgen rules --limit 256MiB --out out/rules --test
//! promtool check rules out/rules/leaklab-memory.rules.yml
//! promtool test rules out/rules/leaklab-memory.test.yml
//! ```

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;

use crate::args::{parse_bytes, parse_duration};
use crate::errors::{exit, UsageError};

/// Options of `loadgen rules`.
#[derive(Args, Clone, Debug)]
pub struct RulesOpts {
    /// The memory series to watch (a gauge in bytes).
    #[arg(long, default_value = "process_resident_memory_bytes")]
    pub metric: String,
    /// Burn rate that alerts, bytes per hour (e.g. 50MB, 100MiB).
    #[arg(long, default_value = "50MB", value_parser = parse_bytes)]
    pub burn_per_hour: u64,
    /// The slope's window (a `deriv` over this range).
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    pub window: Duration,
    /// Warm-up after the process starts, excluded (needs `process_start_time_seconds`).
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    pub warmup: Duration,
    /// The memory limit for the time-to-OOM alert (e.g. the container's).
    #[arg(long, default_value = "1GiB", value_parser = parse_bytes)]
    pub limit: u64,
    /// Alert when the limit is predicted within this long.
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    pub horizon: Duration,
    /// How long the condition must hold before the alert fires.
    #[arg(long = "for", default_value = "2m", value_parser = parse_duration)]
    pub hold: Duration,
    /// Directory for `leaklab-memory.rules.yml` (and the test file).
    #[arg(long, default_value = "out/rules")]
    pub out: PathBuf,
    /// Also write `leaklab-memory.test.yml` for `promtool test rules`.
    #[arg(long)]
    pub test: bool,
}

/// A duration as PromQL writes it (`600s`).
fn prom(d: Duration) -> String {
    format!("{}s", d.as_secs())
}

/// The rule file.
pub fn rules_yaml(o: &RulesOpts) -> String {
    let m = &o.metric;
    let burn = o.burn_per_hour as f64 / 3600.0;
    let tail = (o.window / 3).max(Duration::from_secs(60));
    let age = prom(o.warmup + o.window);
    let climbing = format!(
        "deriv({m}[{w}]) > {burn:.3}\n            and deriv({m}[{t}]) > {half:.3}\n            and on(instance, job) (time() - process_start_time_seconds) > {secs}",
        w = prom(o.window),
        t = prom(tail),
        half = burn / 2.0,
        secs = (o.warmup + o.window).as_secs(),
    );
    format!(
        "# Written by `loadgen rules`: loadgen's leak judgement as Prometheus alerts.\n\
         # A slope over {w} that burns more than {mb} and is still climbing over\n\
         # the last {t} (a bounded cache levels off; churn has no slope), counted only\n\
         # {age} after the process started (warm-up {wu} plus one window).\n\
         groups:\n  - name: leaklab-memory\n    rules:\n\
         \x20     - alert: MemoryBurn\n        expr: |\n          {climbing}\n        for: {hold}\n\
         \x20       labels:\n          severity: warning\n        annotations:\n\
         \x20         summary: \"memory climbs faster than {mb} after warm-up\"\n\
         \x20     - alert: MemoryTimeToOOM\n        expr: |\n\
         \x20         predict_linear({m}[{w}], {horizon}) > {limit}\n            and {climbing}\n\
         \x20       for: {hold}\n        labels:\n          severity: critical\n        annotations:\n\
         \x20         summary: \"memory reaches {limit} bytes within {horizon_h}\"\n",
        w = prom(o.window),
        t = prom(tail),
        mb = crate::human::human_per_hour(o.burn_per_hour as f64),
        wu = prom(o.warmup),
        hold = prom(o.hold),
        horizon = o.horizon.as_secs(),
        horizon_h = prom(o.horizon),
        limit = o.limit,
    )
}

/// The promtool unit test: synthetic series sampled every minute for two
/// hours, judged at the end.
pub fn test_yaml(o: &RulesOpts, rules_file: &str) -> Result<String> {
    let minutes = 120u64;
    let at = minutes - 1;
    let settle = ((o.warmup + o.window).as_secs() / 60) + 2;
    if settle + (o.hold.as_secs() / 60) >= at {
        return Err(UsageError(format!(
            "--warmup plus --window ({} min) leave no room in the test's {minutes} minutes",
            settle
        ))
        .into());
    }
    let burn_per_min = (o.burn_per_hour as f64 / 60.0 * 2.0).ceil() as u64;
    let base = 100_000_000u64;
    // The leak: twice the burn, from the start, reaching the limit inside the horizon.
    let leak_start = o.limit.saturating_sub(burn_per_min * (at + 30)).max(base);
    let series = |name: &str, values: String| {
        format!(
            "      - series: '{}{{instance=\"{name}\", job=\"t\"}}'\n        values: '{values}'\n",
            o.metric
        )
    };
    let mut input = String::new();
    input += &series("leak", format!("{leak_start}+{burn_per_min}x{minutes}"));
    // Bounded: rises for ten minutes, then stays.
    input += &series(
        "bounded",
        format!(
            "{base}+{burn_per_min}x10 {}x{}",
            base + 10 * burn_per_min,
            minutes - 10
        ),
    );
    // Churn: up and down by a burn's worth every minute, no slope.
    let churn: Vec<String> = (0..=minutes)
        .map(|i| (base + (i % 2) * burn_per_min * 5).to_string())
        .collect();
    input += &series("churn", churn.join(" "));
    for name in ["leak", "bounded", "churn"] {
        let _ = writeln!(
            input,
            "      - series: 'process_start_time_seconds{{instance=\"{name}\", job=\"t\"}}'\n        values: '0x{minutes}'"
        );
    }
    let expect = |alert: &str, severity: &str, summary: String| {
        format!(
            "      - eval_time: {at}m\n        alertname: {alert}\n        exp_alerts:\n\
             \x20         - exp_labels:\n              severity: {severity}\n              instance: leak\n              job: t\n\
             \x20           exp_annotations:\n              summary: \"{summary}\"\n"
        )
    };
    let mb = crate::human::human_per_hour(o.burn_per_hour as f64);
    Ok(format!(
        "# Written by `loadgen rules --test`: run `promtool test rules` on it.\n\
         # A leak (twice the burn) must fire both alerts; a bounded cache and churn must not.\n\
         rule_files:\n  - {rules_file}\nevaluation_interval: 1m\ntests:\n  - interval: 1m\n    input_series:\n{input}\
         \x20   alert_rule_test:\n{}{}",
        expect(
            "MemoryBurn",
            "warning",
            format!("memory climbs faster than {mb} after warm-up")
        ),
        expect(
            "MemoryTimeToOOM",
            "critical",
            format!("memory reaches {} bytes within {}", o.limit, prom(o.horizon))
        ),
    ))
}

/// Runs `loadgen rules`.
pub fn execute(o: &RulesOpts) -> Result<u8> {
    std::fs::create_dir_all(&o.out).with_context(|| format!("creating {}", o.out.display()))?;
    let rules = o.out.join("leaklab-memory.rules.yml");
    std::fs::write(&rules, rules_yaml(o))?;
    eprintln!(
        "wrote {} (check: promtool check rules {0})",
        rules.display()
    );
    if o.test {
        let test = o.out.join("leaklab-memory.test.yml");
        std::fs::write(&test, test_yaml(o, "leaklab-memory.rules.yml")?)?;
        eprintln!("wrote {} (run: promtool test rules {0})", test.display());
    }
    Ok(exit::NO_LEAK)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        rules: RulesOpts,
    }

    #[test]
    fn the_rules_exclude_warm_up_and_need_a_climb_still_going_at_the_end() {
        let o = Cli::parse_from(["rules", "--limit", "256MiB", "--burn-per-hour", "36MB"]).rules;
        let yaml = rules_yaml(&o);
        // 36 MB/h is 10 000 B/s over the window, 5 000 B/s over its last third.
        assert!(
            yaml.contains("deriv(process_resident_memory_bytes[600s]) > 10000.000"),
            "{yaml}"
        );
        assert!(yaml.contains("deriv(process_resident_memory_bytes[200s]) > 5000.000"));
        assert!(yaml.contains("(time() - process_start_time_seconds) > 900"));
        assert!(
            yaml.contains("predict_linear(process_resident_memory_bytes[600s], 3600) > 268435456")
        );
        let test = test_yaml(&o, "r.yml").unwrap();
        assert!(test.contains("instance: leak") && !test.contains("instance: bounded\n"));
        let long = Cli::parse_from(["rules", "--warmup", "2h"]).rules;
        assert!(test_yaml(&long, "r.yml").is_err());
    }
}
