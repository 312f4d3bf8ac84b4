//! `loadgen judge`: judges memory series without sending load, and prints
//! their signals and verdict as JSON.
//!
//! - `loadgen judge samples.jsonl --catalogue cat.json`: a recorded run
//!   judged again.
//! - `loadgen judge --prometheus URL --query Q --since 10m`: each series of
//!   a Prometheus range query, judged by the same slope, trend test, class
//!   (where the series' kind allows one; see [`crate::target::prometheus`])
//!   and time-to-OOM as a run's samples.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use clap::Args;
use leaklab_model::Catalogue;

use crate::args::{parse_bytes, parse_duration};
use crate::errors::{exit, UsageError};
use crate::human::human_bytes;
use crate::judging;
use crate::sampling::read_samples;
use crate::target::prometheus::{self, Kind};
use crate::target::AccessOpts;

/// Options of `loadgen judge`.
#[derive(Args, Debug)]
pub struct JudgeOpts {
    /// A samples.jsonl written by `loadgen run --out`.
    #[arg(required_unless_present = "prometheus", conflicts_with = "prometheus")]
    pub samples: Option<PathBuf>,
    /// The catalogue JSON (`leaklab-service scenarios --json`), for components.
    #[arg(long)]
    pub catalogue: Option<PathBuf>,
    /// Memory limit for time-to-OOM.
    #[arg(long, value_parser = parse_bytes)]
    pub limit: Option<u64>,
    /// Judge series from this Prometheus server (http://HOST:PORT; loopback
    /// unless --allow-remote) instead of a samples file.
    #[arg(long, value_name = "URL", requires = "query")]
    pub prometheus: Option<String>,
    /// The PromQL expression (an instant vector: each series it returns is
    /// judged), e.g. `process_resident_memory_bytes{job="canary"}`.
    #[arg(long, value_name = "PROMQL")]
    pub query: Option<String>,
    /// How far back the range starts.
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    pub since: Duration,
    /// Resolution of the range query.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub step: Duration,
    /// The first part of the range, excluded from the verdict (a service
    /// filling its caches after a deploy).
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    pub warmup: Duration,
    #[command(flatten)]
    pub access: AccessOpts,
}

/// Judges the file or the query; exit 3 when a verdict is a leak.
pub async fn execute(opts: &JudgeOpts) -> Result<u8> {
    if let Some(url) = &opts.prometheus {
        return judge_prometheus(opts, url).await;
    }
    let path = opts
        .samples
        .as_ref()
        .context("a samples file or --prometheus")?;
    let samples = read_samples(path)?;
    let catalogue: Catalogue = match &opts.catalogue {
        Some(p) => serde_json::from_str(&std::fs::read_to_string(p)?)
            .with_context(|| format!("the catalogue {}", p.display()))?,
        None => Catalogue::default(),
    };
    let j = judging::judge(&samples, &catalogue, opts.limit);
    println!(
        "{}",
        serde_json::to_string_pretty(
            &serde_json::json!({"signals": j.signals, "verdict": j.verdict})
        )?
    );
    Ok(if j.verdict.leak {
        exit::LEAK
    } else {
        exit::NO_LEAK
    })
}

/// Each series of the range query, judged; a line per series on stderr,
/// the JSON (an array of `{series, kind, signals, verdict}`) on stdout.
async fn judge_prometheus(opts: &JudgeOpts, url: &str) -> Result<u8> {
    let query = opts.query.as_deref().unwrap_or_default();
    if opts.warmup >= opts.since {
        bail!(UsageError(format!(
            "--warmup ({:?}) leaves nothing of --since ({:?}) to judge",
            opts.warmup, opts.since
        )));
    }
    let server = opts.access.target(url)?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs_f64();
    let start = now - opts.since.as_secs_f64();
    let series = prometheus::query_range(&server, query, start, now, opts.step).await?;
    if series.is_empty() {
        bail!(UsageError(format!(
            "`{query}` matched no series in the last {:?} at {url}: check the metric name and labels",
            opts.since
        )));
    }
    let mut out = Vec::new();
    let mut leak = false;
    for s in &series {
        let name = s
            .labels
            .get("__name__")
            .cloned()
            .unwrap_or_else(|| query.to_owned());
        let kind = Kind::of(&name);
        let samples = prometheus::samples(s, kind, opts.warmup);
        let mut j = judging::judge(&samples, &Catalogue::default(), opts.limit);
        if kind == Kind::Unknown {
            j.verdict.reasons.insert(
                0,
                format!("{name}: its kind is not known from its name; judged as resident memory"),
            );
        }
        leak |= j.verdict.leak;
        let signal = match kind {
            Kind::Heap => "allocated",
            Kind::Tasks => "alive_tasks",
            _ => "rss",
        };
        let slope = j.signals.get(signal).map_or(0.0, |f| f.slope_per_s);
        eprintln!(
            "{}: {} points, {} ({}), slope {}/s{}",
            s.display(),
            s.points.len(),
            if j.verdict.leak { "LEAK" } else { "no leak" },
            j.verdict.class,
            if kind == Kind::Tasks {
                format!("{slope:.2}")
            } else {
                human_bytes(slope)
            },
            j.verdict
                .time_to_oom_s
                .map(|t| format!(", OOM in {:.0} min", t / 60.0))
                .unwrap_or_default()
        );
        out.push(serde_json::json!({
            "series": s.display(),
            "kind": format!("{kind:?}").to_lowercase(),
            "points": s.points.len(),
            "signals": j.signals,
            "verdict": j.verdict,
        }));
    }
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(if leak { exit::LEAK } else { exit::NO_LEAK })
}
