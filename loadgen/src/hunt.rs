//! `loadgen hunt`: the capstone leak hunt, end to end, as an on-call engineer
//! would run it.
//!
//! 1. Start a `leaklab-service` with two seeded leaks (default
//!    `unbounded-cache,task-leak`) and drive distinct-key load over both
//!    leaks' routes; confirm the climb.
//! 2. Read the slope (burn rate) and estimate time-to-OOM against `--limit`.
//! 3. Classify each leak from the signals alone (live heap vs RSS vs alive
//!    tasks) and say why, before any artifact is taken.
//! 4. Take the artifact each class calls for: a heap-profile diff (baseline at
//!    the end of warm-up vs the end) for retention, the task census (live
//!    tasks by spawn site, with ages; `--await-dump` adds tokio's await-point
//!    dump) for a task leak, an smaps summary for off-heap memory,
//!    allocator stats for RSS retained, component gauges for a plateau.
//! 5. Walk each retention path to its owner: the component whose gauge grows
//!    per request, the function that allocates, what holds it.
//! 6. Switch the fixes on (`PUT /admin/flags/{id}`), re-run the identical
//!    load, and show the floor flat and the task count stable.
//! 7. Write `hunt.md`, `report.html` and the artifacts under `--out`, print a
//!    summary (`--json`: `leaklab.hunt/v1`), exit 3 when it found leaks.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Args, Parser};
use serde::Serialize;
use serde_json::Value;

use crate::analysis::human_bytes;
use crate::catalogue::Scenario;
use crate::pprof;
use crate::run::{self, RunOpts};
use crate::summary::{Finding, RunSummary};
use crate::target::{Control, Target};
use crate::{exit, parse_bytes, parse_duration, spawn, Cli, Command, RateArg};

/// Options of `loadgen hunt`.
#[derive(Args, Clone, Debug)]
pub struct HuntOpts {
    /// The two seeded leaks (catalogue ids, comma-separated), ideally of different classes.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "unbounded-cache,task-leak"
    )]
    pub leaks: Vec<String>,
    /// Memory limit the time-to-OOM estimate is made against.
    #[arg(long, default_value = "1GiB", value_parser = parse_bytes)]
    pub limit: u64,
    /// Length of each of the two runs (leaky, then fixed), warm-up included.
    #[arg(long, default_value = "45s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Warm-up of each run, excluded from the verdict; the baseline heap profile is taken at its end.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Triggering requests per second (`auto`: loadgen's default, capped by the leak budget).
    #[arg(long, default_value = "auto", value_parser = crate::parse_rate)]
    pub rate: RateArg,
    /// Directory for the report and the artifacts.
    #[arg(long, default_value = "out/hunt")]
    pub out: PathBuf,
    /// Print only the `leaklab.hunt/v1` JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Also take tokio's await-point task dump for a task leak (tasks-await.txt),
    /// beside the task census. Opt-in: such a dump can wedge a busy service.
    #[arg(long)]
    pub await_dump: bool,
}

/// One leak the hunt found (`findings` in docs/interfaces.md).
#[derive(Debug, Serialize)]
pub struct HuntFinding {
    /// The seeded scenario this finding is attributed to, if any.
    pub scenario: Option<String>,
    pub class: String,
    pub component: Option<String>,
    pub signal: String,
    pub burn_rate_bytes_per_h: Option<f64>,
    pub time_to_oom_s: Option<f64>,
    /// The artifact taken for this class (a file under `--out`).
    pub artifact: Option<String>,
    /// Why the signals say this class.
    pub why: String,
    /// The retention path: who holds what, allocated where.
    pub path: String,
}

/// The re-measurement with the fixes on.
#[derive(Debug, Serialize)]
pub struct AfterFix {
    pub leak: bool,
    pub class: String,
    pub burn_rate_bytes_per_h: f64,
    pub alive_tasks_slope_per_s: f64,
}

/// What `loadgen hunt --json` prints.
#[derive(Debug, Serialize)]
pub struct HuntReport {
    pub schema: &'static str,
    pub leaks: Vec<String>,
    pub findings: Vec<HuntFinding>,
    pub after_fix: AfterFix,
    pub report: String,
    pub markdown: String,
    pub elapsed_s: f64,
}

fn step(n: usize, text: impl AsRef<str>) {
    eprintln!("\n[hunt {n}/7] {}", text.as_ref());
}

/// `--rate` as `loadgen run` parses it (also for `loadgen canary`'s runs).
pub(crate) fn rate_arg(rate: &RateArg) -> String {
    match rate {
        RateArg::Auto => "auto".into(),
        RateArg::Max => "max".into(),
        RateArg::Fixed(r) => format!("{r}"),
    }
}

/// `loadgen run` options for one of the hunt's two identical runs.
fn run_opts(url: &str, pid: u32, leaks: &[String], opts: &HuntOpts, out: &Path) -> Result<RunOpts> {
    let args: Vec<String> = vec![
        "loadgen".into(),
        "run".into(),
        format!("--target={url}"),
        format!("--pid={pid}"),
        format!("--scenario={}", leaks.join(",")),
        format!("--rate={}", rate_arg(&opts.rate)),
        format!("--duration={}ms", opts.duration.as_millis()),
        format!("--warmup={}ms", opts.warmup.as_millis()),
        format!("--limit={}", opts.limit),
        format!("--out={}", out.display()),
    ];
    match Cli::try_parse_from(args)?.command {
        Command::Run(run) => Ok(run),
        _ => unreachable!("parsed a run command"),
    }
}

/// One of the hunt's two identical runs (leaky, then fixed) against `service`.
async fn identical_load(
    service: &spawn::Service,
    opts: &HuntOpts,
    out: &Path,
) -> Result<RunSummary> {
    let run = run_opts(&service.url, service.pid, &opts.leaks, opts, out)?;
    Ok(run::execute(&run).await?.summary)
}

/// Fetches `path` with a generous timeout (profiles and dumps take a while to symbolize).
async fn fetch(control: &Control, path: &str) -> Result<Vec<u8>> {
    control
        .get_bytes_within(path, Duration::from_secs(60))
        .await
        .map(|b| b.to_vec())
        .with_context(|| format!("GET {path}"))
}

fn mb_per_h(bytes_per_s: f64) -> String {
    format!("{:.1} MB/h", bytes_per_s * 3600.0 / 1e6)
}

fn duration_text(s: Option<f64>) -> String {
    match s {
        Some(s) if s.is_finite() && s < 3600.0 => format!("{:.0} min", s / 60.0),
        Some(s) if s.is_finite() => format!("{:.1} h", s / 3600.0),
        _ => "never (not rising)".into(),
    }
}

/// Which seeded scenario a finding belongs to: same component first, then same class.
fn attribute<'a>(
    finding: &Finding,
    seeded: &'a [Scenario],
    taken: &[String],
) -> Option<&'a Scenario> {
    let free = |s: &&Scenario| !taken.contains(&s.id);
    seeded
        .iter()
        .filter(free)
        .find(|s| {
            finding.component.as_deref() == Some(s.component.as_str()) && s.class == finding.class
        })
        .or_else(|| {
            seeded
                .iter()
                .filter(free)
                .find(|s| s.class == finding.class)
        })
        .or_else(|| {
            seeded
                .iter()
                .filter(free)
                .find(|s| finding.component.as_deref() == Some(s.component.as_str()))
        })
}

fn slope(summary: &RunSummary, signal: &str) -> f64 {
    summary
        .signals
        .get(signal)
        .map(|f| f.slope_per_s)
        .unwrap_or(0.0)
}

/// Runs the hunt; returns the exit code.
pub async fn execute(opts: &HuntOpts) -> Result<u8> {
    let started = Instant::now();
    if opts.leaks.len() != 2 || opts.leaks[0] == opts.leaks[1] {
        bail!(crate::UsageError(format!(
            "--leaks takes two different catalogue ids, got {:?}",
            opts.leaks
        )));
    }
    std::fs::create_dir_all(&opts.out)
        .with_context(|| format!("creating {}", opts.out.display()))?;
    let catalogue = tokio::task::spawn_blocking(spawn::catalogue).await??;
    let mut seeded = Vec::new();
    for id in &opts.leaks {
        let s = catalogue
            .iter()
            .find(|s| &s.id == id)
            .cloned()
            .ok_or_else(|| {
                let ids: Vec<&str> = catalogue.iter().map(|s| s.id.as_str()).collect();
                crate::UsageError(format!(
                    "unknown leak {id:?}; the catalogue has: {}",
                    ids.join(", ")
                ))
            })?;
        if s.negative_control {
            bail!(crate::UsageError(format!(
                "{id} is a negative control (no leak to hunt)"
            )));
        }
        seeded.push(s);
    }
    if seeded[0].class == seeded[1].class {
        eprintln!(
            "note: both leaks are of class {}; the hunt is clearest with two different classes",
            seeded[0].class
        );
    }

    step(
        1,
        format!(
            "starting leaklab-service with two seeded leaks: {} ({}) and {} ({})",
            seeded[0].id, seeded[0].class, seeded[1].id, seeded[1].class
        ),
    );
    let mut args = Vec::new();
    for id in &opts.leaks {
        args.push("--leak".to_owned());
        args.push(id.clone());
    }
    let log = opts.out.join("service.log");
    let service = tokio::task::spawn_blocking(move || spawn::start(&args, Some(&log))).await??;
    let control = Control::new(&Target::parse(&service.url, None, false)?);
    control.wait_ready(Duration::from_secs(10)).await?;
    eprintln!(
        "        {} (pid {}), log in {}",
        service.url,
        service.pid,
        opts.out.join("service.log").display()
    );

    // The baseline heap profile is taken when warm-up ends, in case a
    // retention verdict calls for a diff; nothing is read from it before then.
    let base_control = control.clone();
    let warmup = opts.warmup;
    let baseline = tokio::spawn(async move {
        // The first profile that has samples to symbolize loads the
        // symbolizer's tables into the service's own heap and keeps them
        // (tens of MiB in a release build, over 100 MiB in a debug one).
        // Take one halfway through warm-up and discard it: that step then
        // falls inside warm-up, and the tables are in both profiles, never
        // growth between them.
        tokio::time::sleep(warmup / 2).await;
        let _ = fetch(&base_control, "/debug/pprof/heap").await;
        tokio::time::sleep(warmup - warmup / 2).await;
        fetch(&base_control, "/debug/pprof/heap").await
    });
    eprintln!(
        "        driving distinct-key load over {} for {:?} ({:?} warm-up)",
        seeded
            .iter()
            .flat_map(|s| s.recipe.iter().map(|r| format!("{} {}", r.method, r.path)))
            .collect::<Vec<_>>()
            .join(" + "),
        opts.duration,
        opts.warmup
    );
    let leaky_dir = opts.out.join("1-leaky");
    let leaky = identical_load(&service, opts, &leaky_dir).await?;
    if let Some(died) = &leaky.target_died {
        bail!(
            "the service died during the leaky run at {:.1} s: {}",
            died.at_s,
            died.reason
        );
    }
    let allocated = leaky.signals.get("allocated");
    let tasks = leaky.signals.get("alive_tasks");
    eprintln!(
        "        live heap {} -> {}, RSS {} -> {}, alive tasks {:.0} -> {:.0}",
        human_bytes(allocated.map(|f| f.first).unwrap_or(0.0)),
        human_bytes(allocated.map(|f| f.last).unwrap_or(0.0)),
        human_bytes(leaky.signals.get("rss").map(|f| f.first).unwrap_or(0.0)),
        human_bytes(leaky.signals.get("rss").map(|f| f.last).unwrap_or(0.0)),
        tasks.map(|f| f.first).unwrap_or(0.0),
        tasks.map(|f| f.last).unwrap_or(0.0),
    );
    if !leaky.verdict.leak {
        eprintln!(
            "        memory does not climb: no leak to hunt ({})",
            leaky.verdict.reasons.join("; ")
        );
    }

    step(2, "reading the slope and the time to OOM");
    eprintln!(
        "        live heap burns {} (rss {}); limit {} -> OOM in {}",
        mb_per_h(slope(&leaky, "allocated")),
        mb_per_h(slope(&leaky, "rss")),
        human_bytes(opts.limit as f64),
        duration_text(leaky.verdict.time_to_oom_s)
    );

    step(
        3,
        "classifying from the signals, before taking any artifact",
    );
    for reason in &leaky.verdict.reasons {
        eprintln!("        - {reason}");
    }
    let mut taken = Vec::new();
    let mut findings = Vec::new();
    for f in &leaky.verdict.findings {
        let owner = attribute(f, &seeded, &taken).cloned();
        if let Some(o) = &owner {
            taken.push(o.id.clone());
        }
        let why = match f.class.as_str() {
            "task-leak" => format!(
                "alive tasks climb {:.1}/s and never come back: tasks are parked, not finishing",
                f.slope_per_s
            ),
            "retention" => format!(
                "the live heap (allocated) climbs {}/s with RSS: reachable objects are kept",
                human_bytes(f.slope_per_s)
            ),
            "off-heap" => format!(
                "RSS climbs {}/s while allocated stays flat: memory outside the allocator",
                human_bytes(f.slope_per_s)
            ),
            "rss-retained" => {
                "RSS stays at its peak while allocated fell back: the allocator keeps freed pages"
                    .to_owned()
            }
            "plateau" => {
                "memory rose once and stays while the component's length fell: a high-water mark"
                    .to_owned()
            }
            other => format!("class {other}"),
        };
        eprintln!(
            "        {} -> {} in {} ({})",
            owner
                .as_ref()
                .map(|o| o.id.as_str())
                .unwrap_or("(unattributed)"),
            f.class,
            f.component.as_deref().unwrap_or("?"),
            why
        );
        findings.push((f.clone(), owner, why));
    }

    step(4, "taking the artifact each class calls for");
    // Heap profiles first: a task dump's own working memory would show in them.
    findings.sort_by_key(|(f, _, _)| f.class != "retention");
    let mut hunt_findings = Vec::new();
    let baseline = baseline.await.ok().and_then(Result::ok);
    for (f, owner, why) in findings {
        let (artifact, path) = match f.class.as_str() {
            "retention" => {
                retention_artifact(
                    seeded.len(),
                    &control,
                    &opts.out,
                    baseline.as_deref(),
                    &f,
                    owner.as_ref(),
                    &leaky,
                )
                .await?
            }
            "task-leak" => task_artifact(&control, &opts.out, &f, opts.await_dump).await?,
            "off-heap" => offheap_artifact(service.pid, &opts.out, &f, owner.as_ref())?,
            "rss-retained" | "plateau" => {
                memory_artifact(&control, &opts.out, &f, owner.as_ref()).await?
            }
            _ => (None, String::new()),
        };
        hunt_findings.push(HuntFinding {
            scenario: owner.as_ref().map(|o| o.id.clone()),
            class: f.class.clone(),
            component: f.component.clone(),
            signal: f.signal.clone(),
            burn_rate_bytes_per_h: f.burn_rate_bytes_per_h,
            time_to_oom_s: leaky.verdict.time_to_oom_s,
            artifact: artifact.map(|p| p.display().to_string()),
            why,
            path,
        });
    }

    step(5, "walking each retention path to its owner");
    for f in &hunt_findings {
        eprintln!(
            "        {}: {}",
            f.scenario.as_deref().unwrap_or(&f.class),
            f.path
        );
    }

    step(
        6,
        "switching the fixes on and re-running the identical load",
    );
    for id in &opts.leaks {
        control.set_flag(id, false).await?;
        eprintln!("        PUT /admin/flags/{id} {{\"enabled\": false}}");
    }
    let fixed_dir = opts.out.join("2-fixed");
    let fixed = identical_load(&service, opts, &fixed_dir).await?;
    let after_fix = AfterFix {
        leak: fixed.verdict.leak,
        class: fixed.verdict.class.clone(),
        burn_rate_bytes_per_h: slope(&fixed, "allocated") * 3600.0,
        alive_tasks_slope_per_s: slope(&fixed, "alive_tasks"),
    };
    eprintln!(
        "        with the fixes: {} (live heap {}, alive tasks {:+.2}/s)",
        if after_fix.leak {
            format!("still leaking ({})", after_fix.class)
        } else {
            "no leak: the floor is flat".to_owned()
        },
        mb_per_h(slope(&fixed, "allocated")),
        after_fix.alive_tasks_slope_per_s
    );

    step(7, "writing the report");
    let markdown_path = opts.out.join("hunt.md");
    let html_path = opts.out.join("report.html");
    let mut report = HuntReport {
        schema: "leaklab.hunt/v1",
        leaks: opts.leaks.clone(),
        findings: hunt_findings,
        after_fix,
        report: html_path.display().to_string(),
        markdown: markdown_path.display().to_string(),
        elapsed_s: 0.0,
    };
    report.elapsed_s = started.elapsed().as_secs_f64();
    std::fs::write(&markdown_path, markdown(&report, &leaky, &fixed, opts))?;
    std::fs::write(&html_path, html(&report, &leaky, &fixed, opts))?;
    std::fs::write(
        opts.out.join("hunt.json"),
        serde_json::to_vec_pretty(&report)?,
    )?;
    eprintln!(
        "        {} and {}",
        markdown_path.display(),
        html_path.display()
    );
    if opts.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", markdown(&report, &leaky, &fixed, opts));
    }
    drop(service);
    Ok(if report.findings.is_empty() {
        exit::NO_LEAK
    } else {
        exit::LEAK
    })
}

/// Heap-profile diff: where the live heap grew between warm-up's end and now.
/// `mixed` is how many scenarios share the run round-robin: each gets
/// 1/`mixed` of the triggering requests, so per-request figures are per
/// request of this scenario.
async fn retention_artifact(
    mixed: usize,
    control: &Control,
    out: &Path,
    baseline: Option<&[u8]>,
    f: &Finding,
    owner: Option<&Scenario>,
    leaky: &RunSummary,
) -> Result<(Option<PathBuf>, String)> {
    let end = fetch(control, "/debug/pprof/heap").await?;
    std::fs::write(out.join("heap-end.pb.gz"), &end)?;
    if let Ok(svg) = fetch(control, "/debug/pprof/heap?format=svg").await {
        std::fs::write(out.join("heap-end.svg"), svg)?;
    }
    let end_sites = pprof::sites(&pprof::decode(&end)?, "leaklab_service::");
    let base_sites = match baseline {
        Some(b) => {
            std::fs::write(out.join("heap-base.pb.gz"), b)?;
            pprof::sites(&pprof::decode(b)?, "leaklab_service::")
        }
        None => pprof::Sites::default(),
    };
    let rows = pprof::diff(&base_sites, &end_sites, 10);
    let mut text = String::from(
        "growth      base        end         allocation site (in-use bytes, jemalloc samples)\n",
    );
    for r in &rows {
        let _ = writeln!(
            text,
            "{:>10}  {:>10}  {:>10}  {}",
            human_bytes(r.growth_bytes as f64),
            human_bytes(r.base_bytes as f64),
            human_bytes(r.end_bytes as f64),
            r.site
        );
    }
    let diff_path = out.join("heap-diff.txt");
    std::fs::write(&diff_path, &text)?;
    eprintln!("        heap profile diff -> {}", diff_path.display());
    for line in text.lines().take(4) {
        eprintln!("          {line}");
    }
    // Which component's gauge grows per request, and what the top site grew
    // per triggering request between the two profiles.
    let rate = (leaky.load.rate_achieved / mixed.max(1) as f64).max(1e-9);
    let window_requests = (rate * (leaky.load.duration_s - leaky.load.warmup_s)).max(1.0);
    let gauge = f
        .gauge
        .clone()
        .or_else(|| owner.map(|o| o.gauge.clone()))
        .unwrap_or_default();
    let per_unit = leaky
        .signals
        .get(&format!("components.{gauge}"))
        .map(|g| g.slope_per_s / rate)
        .unwrap_or(0.0);
    // The profiler's own tables are not the service's retention.
    let path = match rows.iter().find(|r| !r.site.contains(PROFILER_SITE)) {
        Some(top) => format!(
            "{} (gauge {gauge} +{per_unit:.2} per request) retains what {} allocates: +{} in the heap profile since warm-up, ~{} per request of this scenario",
            f.component.as_deref().unwrap_or("?"),
            top.site,
            human_bytes(top.growth_bytes as f64),
            human_bytes(top.growth_bytes as f64 / window_requests),
        ),
        None => format!(
            "{} (gauge {gauge} +{per_unit:.2} per request); the heap profile sampled no growth",
            f.component.as_deref().unwrap_or("?")
        ),
    };
    Ok((Some(diff_path), path))
}

/// Allocation sites of the heap-profile route itself (its symbolizer).
const PROFILER_SITE: &str = "leaklab_service::telemetry::heap::";

/// Tasks whose traces the optional await-point dump resolves.
const TASK_DUMP_SAMPLE: usize = 500;

/// The await-point dump's text form, from its JSON: one block per await point.
fn render_await_dump(json: &Value) -> String {
    let mut text = format!(
        "WARNING: {}\n\nalive tasks: {}, traced: {}, resolved and grouped: {}\n\n",
        json["warning"].as_str().unwrap_or(""),
        json["alive_tasks"],
        json["traced"],
        json["grouped"]
    );
    for g in json["groups"].as_array().into_iter().flatten() {
        text.push_str(&format!(
            "{} task(s) at {}\n{}\n\n",
            g["count"],
            g["await_point"].as_str().unwrap_or("?"),
            g["trace"].as_str().unwrap_or("")
        ));
    }
    text
}

/// The task census (live tasks by spawn site, with ages): evidence that
/// cannot wedge the service. With `--await-dump`, tokio's await-point dump
/// as an extra; its failure only costs the extra.
async fn task_artifact(
    control: &Control,
    out: &Path,
    f: &Finding,
    await_dump: bool,
) -> Result<(Option<PathBuf>, String)> {
    let census: Value = serde_json::from_slice(&fetch(control, "/debug/tasks?format=json").await?)?;
    std::fs::write(out.join("tasks.json"), serde_json::to_vec_pretty(&census)?)?;
    let path = out.join("tasks.txt");
    std::fs::write(&path, fetch(control, "/debug/tasks").await?)?;
    let top = &census["sites"][0];
    let site = top["site"].as_str().unwrap_or("?").to_owned();
    eprintln!(
        "        task census -> {}: {} of {} alive tasks were spawned at {site} ({} of {} finished; oldest {:.0} s)",
        path.display(),
        top["alive"],
        census["alive_tasks"],
        top["finished"],
        top["spawned"],
        top["oldest_s"].as_f64().unwrap_or(0.0),
    );
    if await_dump {
        let path = format!("/debug/tasks?mode=await&format=json&limit={TASK_DUMP_SAMPLE}");
        match fetch(control, &path)
            .await
            .and_then(|b| Ok(serde_json::from_slice::<Value>(&b)?))
        {
            Ok(dump) => {
                let file = out.join("tasks-await.txt");
                std::fs::write(&file, render_await_dump(&dump))?;
                eprintln!(
                    "        await-point dump (extra) -> {}: top group waits at {}",
                    file.display(),
                    dump["groups"][0]["await_point"].as_str().unwrap_or("?")
                );
            }
            Err(err) => eprintln!("        await-point dump (extra) failed: {err:#}"),
        }
    }
    Ok((
        Some(path),
        format!(
            "{}: alive tasks climb {:.1}/s; {} tasks spawned at {site} are alive, {} of {} finished, the oldest {:.0} s old: each holds what its future captured",
            f.component.as_deref().unwrap_or("?"),
            f.slope_per_s,
            top["alive"],
            top["finished"],
            top["spawned"],
            top["oldest_s"].as_f64().unwrap_or(0.0),
        ),
    ))
}

/// smaps summary of the target: where resident memory outside the allocator sits.
fn offheap_artifact(
    pid: u32,
    out: &Path,
    f: &Finding,
    _owner: Option<&Scenario>,
) -> Result<(Option<PathBuf>, String)> {
    let smaps =
        leaklab_probe::smaps_summary(leaklab_probe::Pid::Of(pid)).context("reading smaps")?;
    let path = out.join("smaps.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&smaps)?)?;
    eprintln!(
        "        smaps summary -> {}: {} mappings, {} anonymous ones holding {} resident",
        path.display(),
        smaps.mappings,
        smaps.anon_mappings,
        human_bytes(smaps.anon_mapping_rss_bytes as f64)
    );
    Ok((
        Some(path),
        format!(
            "{} anonymous mappings hold {} resident outside the allocator; {} grows them ({} climbs {}/s)",
            smaps.anon_mappings,
            human_bytes(smaps.anon_mapping_rss_bytes as f64),
            f.component.as_deref().unwrap_or("?"),
            f.signal,
            human_bytes(f.slope_per_s)
        ),
    ))
}

/// Allocator stats and component gauges, for RSS retained and plateaus.
async fn memory_artifact(
    control: &Control,
    out: &Path,
    f: &Finding,
    _owner: Option<&Scenario>,
) -> Result<(Option<PathBuf>, String)> {
    let memory: Value = serde_json::from_slice(&fetch(control, "/debug/memory").await?)?;
    let path = out.join(format!("{}-memory.json", f.class));
    std::fs::write(&path, serde_json::to_vec_pretty(&memory)?)?;
    let n = |k: &str| memory[k].as_f64().unwrap_or(0.0);
    let text = match f.class.as_str() {
        "rss-retained" => format!(
            "RSS {} while the live heap is {}: jemalloc keeps {} of freed pages resident ({})",
            human_bytes(n("rss")),
            human_bytes(n("allocated")),
            human_bytes(n("resident") - n("active")),
            f.component.as_deref().unwrap_or("?")
        ),
        _ => format!(
            "{} holds its high-water mark: gauges {}",
            f.component.as_deref().unwrap_or("?"),
            memory["components"]
        ),
    };
    Ok((Some(path), text))
}

fn markdown(
    report: &HuntReport,
    leaky: &RunSummary,
    fixed: &RunSummary,
    opts: &HuntOpts,
) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# leaklab hunt: {}\n", report.leaks.join(" + "));
    let _ = writeln!(
        md,
        "Leaky run: {:.0} triggering requests/s for {:.0} s; live heap {} -> {}; burn {}; time to OOM against {}: {}.\n",
        leaky.load.rate_achieved,
        leaky.load.duration_s,
        human_bytes(leaky.signals.get("allocated").map(|f| f.first).unwrap_or(0.0)),
        human_bytes(leaky.signals.get("allocated").map(|f| f.last).unwrap_or(0.0)),
        mb_per_h(slope(leaky, "allocated")),
        human_bytes(opts.limit as f64),
        duration_text(leaky.verdict.time_to_oom_s)
    );
    let _ = writeln!(
        md,
        "| leak | class | component | burn | why (signals) | artifact |\n|---|---|---|---|---|---|"
    );
    for f in &report.findings {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} |",
            f.scenario.as_deref().unwrap_or("?"),
            f.class,
            f.component.as_deref().unwrap_or("?"),
            f.burn_rate_bytes_per_h
                .map(|b| mb_per_h(b / 3600.0))
                .unwrap_or_else(|| "-".into()),
            f.why,
            f.artifact.as_deref().unwrap_or("-")
        );
    }
    let _ = writeln!(md, "\n## Retention paths\n");
    for f in &report.findings {
        let _ = writeln!(
            md,
            "- **{}**: {}",
            f.scenario.as_deref().unwrap_or(&f.class),
            f.path
        );
    }
    let _ = writeln!(
        md,
        "\n## After the fix\n\nSame load with the fixes on: {} (class {}), live heap {}, alive tasks {:+.2}/s, {:.0} requests/s.\n",
        if report.after_fix.leak { "still leaking" } else { "no leak" },
        report.after_fix.class,
        mb_per_h(report.after_fix.burn_rate_bytes_per_h / 3600.0),
        report.after_fix.alive_tasks_slope_per_s,
        fixed.load.rate_achieved
    );
    md
}

fn html(report: &HuntReport, leaky: &RunSummary, fixed: &RunSummary, opts: &HuntOpts) -> String {
    let md = markdown(report, leaky, fixed, opts);
    let escaped = md
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    let flame = if opts.out.join("heap-end.svg").exists() {
        "<h2>Heap profile (in-use, end of the leaky run)</h2><p><a href=\"heap-end.svg\">flamegraph</a> · <a href=\"heap-end.pb.gz\">pprof</a> · <a href=\"heap-diff.txt\">diff</a></p>"
    } else {
        ""
    };
    format!(
        "<!doctype html><meta charset=\"utf-8\"><title>leaklab hunt</title>\
         <style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}pre{{white-space:pre-wrap;background:#f6f6f6;padding:1em}}img{{max-width:100%}}</style>\
         <h1>leaklab hunt: {}</h1><pre>{escaped}</pre>\
         <h2>Leaky run</h2><img src=\"1-leaky/memory.svg\"><img src=\"1-leaky/tasks.svg\"><p><a href=\"1-leaky/report.html\">full report</a></p>\
         {flame}\
         <h2>With the fixes</h2><img src=\"2-fixed/memory.svg\"><img src=\"2-fixed/tasks.svg\"><p><a href=\"2-fixed/report.html\">full report</a></p>",
        report.leaks.join(" + ")
    )
}
