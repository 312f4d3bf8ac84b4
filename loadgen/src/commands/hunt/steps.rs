//! The hunt's seven steps, one function each (see the module above).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use leaklab_model::hunt::{AfterFix, HuntFinding, HuntReport, SCHEMA};
use leaklab_model::run::{Finding, RunSummary};
use leaklab_model::{LeakClass, Scenario};
use tokio::task::JoinHandle;

use super::HuntOpts;
use crate::artifacts::{self, fetch, Artifact};
use crate::commands::run::{self, RunPlan, Workload};
use crate::human::human_bytes;
use crate::reports::hunt::{duration_text, html, markdown, per_hour, signals_line, slope};
use crate::target::spawn::{Launch, Service};
use crate::target::{AccessOpts, Control, Target};

fn step(n: usize, text: impl AsRef<str>) {
    eprintln!("\n[hunt {n}/7] {}", text.as_ref());
}

/// Step 1: a service with both leaks on, ready.
pub(super) async fn start_service(
    opts: &HuntOpts,
    seeded: &[Scenario],
) -> Result<(Service, Control)> {
    step(
        1,
        format!(
            "starting leaklab-service with two seeded leaks: {} ({}) and {} ({})",
            seeded[0].id, seeded[0].class, seeded[1].id, seeded[1].class
        ),
    );
    let log = opts.out.join("service.log");
    let service = Launch::new()
        .leaks(opts.leaks.iter().cloned())
        .log(&log)
        .start()
        .await?;
    let control = Control::new(&Target::parse(&service.url, None, false)?);
    control.wait_ready(Duration::from_secs(10)).await?;
    eprintln!(
        "        {} (pid {}), log in {}",
        service.url,
        service.pid,
        log.display()
    );
    Ok((service, control))
}

/// The baseline heap profile, taken when warm-up ends, in case a retention
/// verdict calls for a diff; nothing is read from it before then.
pub(super) fn baseline_profile(control: Control, warmup: Duration) -> JoinHandle<Result<Vec<u8>>> {
    tokio::spawn(async move {
        // The first profile that has samples to symbolize loads the
        // symbolizer's tables into the service's own heap and keeps them
        // (tens of MiB in a release build, over 100 MiB in a debug one).
        // Take one halfway through warm-up and discard it: that step then
        // falls inside warm-up, and the tables are in both profiles, never
        // growth between them.
        tokio::time::sleep(warmup / 2).await;
        let _ = fetch(&control, "/debug/pprof/heap").await;
        tokio::time::sleep(warmup - warmup / 2).await;
        fetch(&control, "/debug/pprof/heap").await
    })
}

/// One of the hunt's two identical runs (leaky, then fixed) against `service`.
async fn identical_load(service: &Service, opts: &HuntOpts, out: &Path) -> Result<RunSummary> {
    let plan = RunPlan::against(
        &service.url,
        Some(service.pid),
        AccessOpts::default(),
        Workload::Mix(opts.leaks.clone()),
    )
    .rate(opts.rate)
    .timing(opts.duration, opts.warmup)
    .until_verdict(opts.until_verdict)
    .limit(Some(opts.limit))
    .out(out);
    let summary = run::execute(&plan).await?.summary;
    if let Some(seq) = summary
        .sequential
        .as_ref()
        .filter(|_| summary.stopped_early)
    {
        let what = match (seq.decision.as_deref(), seq.signal.as_deref()) {
            (Some("climb"), Some(signal)) => format!("{signal} climbs"),
            (Some("flat"), _) => "flat".to_owned(),
            _ => "decided".to_owned(),
        };
        eprintln!(
            "        stopped early: {what}, {:.1} s after warm-up ({} looks)",
            seq.decision_after_s, seq.looks
        );
    }
    Ok(summary)
}

/// Step 1, continued: the leaky run, and whether memory climbs.
pub(super) async fn leaky_run(
    opts: &HuntOpts,
    service: &Service,
    seeded: &[Scenario],
) -> Result<RunSummary> {
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
    let leaky = identical_load(service, opts, &opts.out.join("1-leaky")).await?;
    if let Some(died) = &leaky.target_died {
        bail!(
            "the service died during the leaky run at {:.1} s: {}",
            died.at_s,
            died.reason
        );
    }
    eprintln!("        {}", signals_line(&leaky));
    if !leaky.verdict.leak {
        eprintln!(
            "        memory does not climb: no leak to hunt ({})",
            leaky.verdict.reasons.join("; ")
        );
    }
    Ok(leaky)
}

/// Step 2: the slope and the time to OOM.
pub(super) fn read_burn(opts: &HuntOpts, leaky: &RunSummary) {
    step(2, "reading the slope and the time to OOM");
    eprintln!(
        "        live heap burns {} (rss {}); limit {} -> OOM in {}",
        per_hour(slope(leaky, "allocated")),
        per_hour(slope(leaky, "rss")),
        human_bytes(opts.limit as f64),
        duration_text(leaky.verdict.time_to_oom_s)
    );
}

/// A finding with the seeded scenario it is attributed to and why its class.
pub(super) struct Classified {
    finding: Finding,
    owner: Option<Scenario>,
    why: String,
}

/// Why the signals say `f`'s class, in a sentence.
fn why(f: &Finding) -> String {
    match f.class {
        LeakClass::TaskLeak => format!(
            "alive tasks climb {:.1}/s and never come back: tasks are parked, not finishing",
            f.slope_per_s
        ),
        LeakClass::Retention => format!(
            "the live heap (allocated) climbs {}/s with RSS: reachable objects are kept",
            human_bytes(f.slope_per_s)
        ),
        LeakClass::OffHeap => format!(
            "RSS climbs {}/s while allocated stays flat: memory outside the allocator",
            human_bytes(f.slope_per_s)
        ),
        LeakClass::RssRetained => {
            "RSS stays at its peak while allocated fell back: the allocator keeps freed pages"
                .to_owned()
        }
        LeakClass::Plateau => {
            "memory rose once and stays while the component's length fell: a high-water mark"
                .to_owned()
        }
        LeakClass::RssGrowth => "RSS climbs".to_owned(),
        LeakClass::Churn | LeakClass::Bounded | LeakClass::None => format!("class {}", f.class),
    }
}

/// Step 3: each finding classified from the signals and attributed.
pub(super) fn classify(leaky: &RunSummary, seeded: &[Scenario]) -> Vec<Classified> {
    step(
        3,
        "classifying from the signals, before taking any artifact",
    );
    for reason in &leaky.verdict.reasons {
        eprintln!("        - {reason}");
    }
    let mut taken = Vec::new();
    let mut classified = Vec::new();
    for f in &leaky.verdict.findings {
        let owner = attribute(f, seeded, &taken).cloned();
        if let Some(o) = &owner {
            taken.push(o.id.clone());
        }
        let why = why(f);
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
        classified.push(Classified {
            finding: f.clone(),
            owner,
            why,
        });
    }
    classified
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

/// What step 4 works from.
pub(super) struct Taken<'a> {
    pub control: &'a Control,
    pub pid: u32,
    /// The heap profile taken when warm-up ended.
    pub baseline: Option<&'a [u8]>,
    pub leaky: &'a RunSummary,
    /// Scenarios sharing the run round-robin.
    pub mixed: usize,
}

/// Step 4: the artifact each class calls for, heap profiles first (a task
/// dump's own working memory would show in them).
pub(super) async fn take_artifacts(
    opts: &HuntOpts,
    t: &Taken<'_>,
    mut classified: Vec<Classified>,
) -> Result<Vec<HuntFinding>> {
    step(4, "taking the artifact each class calls for");
    classified.sort_by_key(|c| c.finding.class != LeakClass::Retention);
    // The run's heap burn is the seeded leaks' together; each finding gets
    // its owner's share by the catalogue's per-request truth (the mix sends
    // each the same number of requests).
    let owned: f64 = classified
        .iter()
        .filter_map(|c| c.owner.as_ref())
        .map(|o| o.bytes_per_request as f64)
        .sum();
    let mut findings = Vec::new();
    for Classified {
        finding: f,
        owner,
        why,
    } in classified
    {
        let artifact = match f.class {
            LeakClass::Retention => {
                artifacts::heap::retention_artifact(
                    t.mixed,
                    t.control,
                    &opts.out,
                    t.baseline,
                    &f,
                    owner.as_ref(),
                    t.leaky,
                )
                .await?
            }
            LeakClass::TaskLeak => {
                artifacts::tasks::task_artifact(t.control, &opts.out, &f, opts.await_dump).await?
            }
            LeakClass::OffHeap => artifacts::smaps::offheap_artifact(t.pid, &opts.out, &f)?,
            LeakClass::RssRetained | LeakClass::Plateau | LeakClass::RssGrowth => {
                artifacts::memory::memory_artifact(t.control, &opts.out, &f).await?
            }
            LeakClass::Churn | LeakClass::Bounded | LeakClass::None => Artifact::default(),
        };
        findings.push(HuntFinding {
            scenario: owner.as_ref().map(|o| o.id.clone()),
            class: f.class,
            component: f.component.clone(),
            signal: f.signal.clone(),
            burn_rate_bytes_per_h: match (&owner, f.burn_rate_bytes_per_h) {
                (Some(o), Some(all)) if owned > 0.0 => {
                    Some(all * o.bytes_per_request as f64 / owned)
                }
                (_, all) => all,
            },
            time_to_oom_s: t.leaky.verdict.time_to_oom_s,
            artifact: artifact.file.map(|p| p.display().to_string()),
            why,
            path: artifact.path,
            route: None,
            evidence: Vec::new(),
        });
    }
    Ok(findings)
}

/// Step 5: each retention path, to its owner.
pub(super) fn walk_paths(findings: &[HuntFinding]) {
    step(5, "walking each retention path to its owner");
    for f in findings {
        eprintln!(
            "        {}: {}",
            f.scenario.as_deref().unwrap_or(f.class.as_str()),
            f.path
        );
    }
}

/// Step 6: the fixes on, the identical load again.
pub(super) async fn prove_fix(
    opts: &HuntOpts,
    service: &Service,
    control: &Control,
) -> Result<(RunSummary, AfterFix)> {
    step(
        6,
        "switching the fixes on and re-running the identical load",
    );
    for id in &opts.leaks {
        control.set_flag(id, false).await?;
        eprintln!("        PUT /admin/flags/{id} {{\"enabled\": false}}");
    }
    let fixed = identical_load(service, opts, &opts.out.join("2-fixed")).await?;
    let after_fix = AfterFix {
        leak: fixed.verdict.leak,
        class: fixed.verdict.class,
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
        per_hour(slope(&fixed, "allocated")),
        after_fix.alive_tasks_slope_per_s
    );
    Ok((fixed, after_fix))
}

/// Step 7: `hunt.md`, `report.html`, `hunt.json`, and the summary printed.
pub(super) fn write_report(
    opts: &HuntOpts,
    findings: Vec<HuntFinding>,
    after_fix: AfterFix,
    leaky: &RunSummary,
    fixed: &RunSummary,
    started: Instant,
) -> Result<HuntReport> {
    step(7, "writing the report");
    let markdown_path = opts.out.join("hunt.md");
    let html_path = opts.out.join("report.html");
    let fix_proven = (!findings.is_empty()).then_some(!after_fix.leak);
    let report = HuntReport {
        schema: SCHEMA.into(),
        leaks: opts.leaks.clone(),
        findings,
        after_fix,
        report: html_path.display().to_string(),
        markdown: markdown_path.display().to_string(),
        elapsed_s: started.elapsed().as_secs_f64(),
        blind: false,
        mystery_seed: None,
        fix_proven,
        notes: Vec::new(),
    };
    let md = markdown(&report, leaky, fixed, opts.limit);
    std::fs::write(&markdown_path, &md)?;
    std::fs::write(
        &html_path,
        html(&report, leaky, fixed, opts.limit, &opts.out),
    )?;
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
        eprint!("{md}");
    }
    Ok(report)
}
