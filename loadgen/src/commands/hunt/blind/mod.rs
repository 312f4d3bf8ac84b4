//! `loadgen hunt --blind`: the hunt that is not told which leaks are on, as
//! against a real service. It works from evidence and the public catalogue
//! (what each route can retain, which gauge belongs to which component),
//! never from the flags.
//!
//! 1. **Screen**: the mixed workload over every route of the catalogue, at
//!    rates that keep each scenario inside a quarter of its leak budget;
//!    which signals rise and which component gauges climb.
//! 2. **Differential**: each route group the screen points at is driven
//!    alone; a scenario is named only if its gauge climbs again (a
//!    level-shaped class: if the run's verdict reaches that class) when
//!    only its route carries traffic. Each finding gets its class from the
//!    signals, its route, its own share of the burn and the evidence.
//! 3. **Artifacts**: the one each class calls for (heap-profile diff over
//!    the group's window, task census, smaps, allocator numbers).
//! 4. **Fix and prove**: only the named scenarios' flags are switched off
//!    (`PUT /admin/flags/{id}`), the screen's load is run again, and the
//!    floor must be flat with no named gauge still climbing; else "fix not
//!    proven" and exit 4. A proof that fails is run once more, because a
//!    stalled machine can fake a slope.
//!
//! A leak budget that runs out during the hunt is reported, never read as
//! "flat".

pub mod evidence;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use leaklab_model::hunt::{AfterFix, HuntFinding, HuntReport, SCHEMA};
use leaklab_model::run::RunSummary;
use leaklab_model::{Catalogue, LeakClass};

use self::evidence::{candidates, confirm, route_groups, Candidate, Confirmed, Group};
use super::HuntOpts;
use crate::args::RateArg;
use crate::artifacts::pprof::{self, SiteGrowth};
use crate::artifacts::{self, fetch, Artifact};
use crate::commands::run::{self, RunPlan, Workload};
use crate::errors::exit;
use crate::human::human_bytes;
use crate::reports::hunt::{html, markdown, per_hour, signals_line, slope};
use crate::target::spawn::{Launch, Service};
use crate::target::{Control, Target};

/// Warm-up of a route group's own window.
const GROUP_WARMUP: Duration = Duration::from_secs(5);
/// A route group's whole window, warm-up included.
const GROUP_DURATION: Duration = Duration::from_secs(17);
/// Each run of the hunt may fill this share of a scenario's leak budget
/// (screen, group window and proof stay inside it together).
const BUDGET_SHARE: f64 = 0.25;

fn step(n: usize, text: impl AsRef<str>) {
    eprintln!("\n[blind {n}/5] {}", text.as_ref());
}

/// The service under study: one the hunt started, or `--target`.
struct Subject {
    url: String,
    pid: Option<u32>,
    control: Control,
    /// Kept so a spawned child lives as long as the hunt.
    _child: Option<Service>,
    /// Its leak budget per scenario, when it says.
    budget: Option<u64>,
    seed: Option<u64>,
}

/// Rounds of screen, differential and proof: a proof that still climbs
/// starts another round from its own evidence (a second leak the first
/// round missed, or a stalled machine that faked a slope).
const ROUNDS: usize = 2;

/// Runs the blind hunt; returns the exit code.
pub async fn execute(opts: &HuntOpts) -> Result<u8> {
    let started = Instant::now();
    std::fs::create_dir_all(&opts.out)
        .with_context(|| format!("creating {}", opts.out.display()))?;
    let subject = subject(opts).await?;
    let catalogue = subject.control.catalogue().await?;
    let mut notes = Vec::new();

    step(1, "screening: the mixed workload over every route");
    let (first_screen, mut growth) = screened(opts, &subject, &opts.out.join("1-screen")).await?;
    budget_note(&subject, &mut notes).await;
    let mut screen = first_screen.clone();
    let mut confirmed: Vec<Confirmed> = Vec::new();
    let mut findings = Vec::new();
    let (mut proof, mut fix_proven) = (screen.clone(), None);
    for round in 1..=ROUNDS {
        let cands: Vec<Candidate> = candidates(&screen, &catalogue, &growth)
            .into_iter()
            .filter(|c| !confirmed.iter().any(|k| k.scenario.id == c.scenario.id))
            .collect();
        for c in &cands {
            eprintln!("        candidate {}: {}", c.scenario.id, c.why);
        }
        step(
            2,
            format!(
                "differential (round {round}): each route the evidence points at, driven alone"
            ),
        );
        let (new, windows) = differential(opts, &subject, &catalogue, &cands, round).await?;
        budget_note(&subject, &mut notes).await;
        step(3, "taking the artifact each class calls for");
        for c in &new {
            let window = windows
                .iter()
                .find(|(route, _)| *route == c.route)
                .map(|(_, w)| w);
            let window = window.unwrap_or(&screen);
            findings.push(
                finding(
                    opts,
                    &subject,
                    c,
                    window,
                    &growth,
                    screen.verdict.time_to_oom_s,
                )
                .await?,
            );
        }
        confirmed.extend(new);
        if confirmed.is_empty() && !screen.verdict.leak {
            eprintln!("        nothing named and nothing rises: no fix to prove");
            break;
        }
        step(4, format!("round {round}: switching off only the named scenarios and re-running the screen's load"));
        let out = opts.out.join(format!("4-proof-{round}"));
        let (p, g) = prove(opts, &subject, &confirmed, &out).await?;
        budget_note(&subject, &mut notes).await;
        let flat = !p.verdict.leak
            && confirmed
                .iter()
                .all(|c| !evidence::gauge_climbs(&p, &c.scenario.gauge));
        proof = p;
        fix_proven = (!confirmed.is_empty()).then_some(flat);
        if flat || round == ROUNDS {
            break;
        }
        eprintln!("        the floor still moves: hunting again from this run's evidence");
        (screen, growth) = (proof.clone(), g);
    }
    unexplained(&proof, &confirmed, &mut findings);
    if fix_proven.is_none() && !findings.is_empty() {
        fix_proven = Some(false);
    }
    match fix_proven {
        Some(true) => eprintln!("        fix proven: with the named fixes the floor is flat"),
        Some(false) => eprintln!(
            "        FIX NOT PROVEN: with the named fixes memory still climbs ({})",
            proof.verdict.class
        ),
        None => eprintln!("        no leak: nothing climbs, nothing to fix"),
    }

    step(5, "writing the report");
    let report = HuntReport {
        schema: SCHEMA.into(),
        leaks: Vec::new(),
        findings,
        after_fix: AfterFix {
            leak: proof.verdict.leak,
            class: proof.verdict.class,
            burn_rate_bytes_per_h: slope(&proof, "allocated") * 3600.0,
            alive_tasks_slope_per_s: slope(&proof, "alive_tasks"),
        },
        report: opts.out.join("report.html").display().to_string(),
        markdown: opts.out.join("hunt.md").display().to_string(),
        elapsed_s: started.elapsed().as_secs_f64(),
        blind: true,
        mystery_seed: subject.seed,
        fix_proven,
        notes,
    };
    write(opts, &report, &first_screen, &proof)?;
    Ok(match report.fix_proven {
        None => exit::NO_LEAK,
        Some(false) => exit::FIX_NOT_PROVEN,
        Some(true) => exit::LEAK,
    })
}

/// The screen's load (every route, mixed) with heap profiles at warm-up's
/// end and at the end, diffed by allocation site (written to `out`).
async fn screened(
    opts: &HuntOpts,
    subject: &Subject,
    out: &Path,
) -> Result<(RunSummary, Vec<SiteGrowth>)> {
    let baseline = super::steps::baseline_profile(subject.control.clone(), opts.warmup);
    let timing = (opts.duration, opts.warmup);
    let (run, _) = load(opts, subject, Workload::All, out, timing, opts.rate).await?;
    describe(&run);
    let base = baseline.await.ok().and_then(Result::ok);
    let growth = match (base, fetch(&subject.control, "/debug/pprof/heap").await) {
        (Some(base), Ok(end)) => {
            std::fs::create_dir_all(out)?;
            std::fs::write(out.join("heap-end.pb.gz"), &end)?;
            std::fs::write(out.join("heap-base.pb.gz"), &base)?;
            let sites = |b: &[u8]| pprof::decode(b).map(|p| pprof::sites(&p, "leaklab_service::"));
            match (sites(&base), sites(&end)) {
                (Ok(b), Ok(e)) => pprof::diff(&b, &e, 40),
                _ => Vec::new(),
            }
        }
        _ => Vec::new(),
    };
    let text: String = growth
        .iter()
        .map(|g| format!("{:>12}  {}\n", human_bytes(g.growth_bytes as f64), g.site))
        .collect();
    std::fs::create_dir_all(out)?;
    std::fs::write(out.join("heap-diff.txt"), text)?;
    Ok((run, growth))
}

/// The service: `--target` (with `--pid`), or a mystery child.
async fn subject(opts: &HuntOpts) -> Result<Subject> {
    if let Some(url) = &opts.target {
        let target = opts.access.target(url)?;
        let control = Control::new(&target);
        control.wait_ready(Duration::from_secs(10)).await?;
        eprintln!("hunting {url} blind (pid {:?})", opts.pid);
        return Ok(Subject {
            url: target.base.clone(),
            pid: opts.pid,
            budget: control
                .memory()
                .await
                .ok()
                .and_then(|m| m.leak_budget_bytes),
            control,
            _child: None,
            seed: None,
        });
    }
    let seed = opts.mystery.unwrap_or_else(random_seed);
    let log = opts.out.join("service.log");
    let service = Launch::new()
        .arg("--mystery")
        .arg(seed.to_string())
        .admin_token(opts.access.token.as_deref())
        .log(&log)
        .start()
        .await?;
    let control = Control::new(&Target::parse(
        &service.url,
        opts.access.token.clone(),
        false,
    )?);
    control.wait_ready(Duration::from_secs(10)).await?;
    eprintln!(
        "hunting a mystery service blind: seed {seed}, {} (pid {}), log in {}\n\
         grade the answer afterwards: loadgen grade --mystery {seed} --answer-file {}",
        service.url,
        service.pid,
        log.display(),
        opts.out.join("hunt.json").display()
    );
    Ok(Subject {
        url: service.url.clone(),
        pid: Some(service.pid),
        budget: control
            .memory()
            .await
            .ok()
            .and_then(|m| m.leak_budget_bytes),
        control,
        _child: Some(service),
        seed: Some(seed),
    })
}

/// A seed from the clock, when `--mystery` was not given.
fn random_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64 % 1_000_000)
}

/// One run of `workload` against the subject.
async fn load(
    opts: &HuntOpts,
    subject: &Subject,
    workload: Workload,
    out: &Path,
    (duration, warmup): (Duration, Duration),
    rate: RateArg,
) -> Result<(RunSummary, Vec<String>)> {
    let plan = RunPlan::against(&subject.url, subject.pid, opts.access.clone(), workload)
        .rate(rate)
        .timing(duration, warmup)
        .limit(Some(opts.limit))
        .budget_share(BUDGET_SHARE)
        .out(out);
    let outcome = run::execute(&plan).await?;
    let summary = outcome.summary;
    if let Some(died) = &summary.target_died {
        anyhow::bail!(
            "the service died at {:.1} s of {}: {} (samples kept in {})",
            died.at_s,
            out.display(),
            died.reason,
            out.display()
        );
    }
    Ok((summary, evidence::held_gauges(&outcome.samples)))
}

/// The signals of a run, in a line.
fn describe(run: &RunSummary) {
    eprintln!(
        "        {}; verdict: {}",
        signals_line(run),
        if run.verdict.leak {
            run.verdict
                .findings
                .iter()
                .map(|f| format!("{} in {}", f.class, f.signal))
                .collect::<Vec<_>>()
                .join(", ")
        } else {
            format!("no leak ({})", run.verdict.class)
        }
    );
}

/// Says so (once per count) when a scenario's leak budget is spent: a climb
/// was cut off, and a flat window after it is no evidence of health.
async fn budget_note(subject: &Subject, notes: &mut Vec<String>) {
    let Ok(memory) = subject.control.memory().await else {
        return;
    };
    if memory.budget_exhausted == 0 {
        return;
    }
    let note = format!(
        "{} scenario(s) spent their leak budget during the hunt: their climb was cut off, so a flat window after that is not evidence of no leak",
        memory.budget_exhausted
    );
    if !notes.contains(&note) {
        eprintln!("        note: {note}");
        notes.push(note);
    }
}

/// Step 2: the route groups of the candidates, each driven alone.
async fn differential(
    opts: &HuntOpts,
    subject: &Subject,
    catalogue: &Catalogue,
    cands: &[Candidate],
    round: usize,
) -> Result<(Vec<Confirmed>, Vec<(String, RunSummary)>)> {
    let groups: Vec<Group> = route_groups(catalogue)
        .into_iter()
        .filter(|g| {
            cands
                .iter()
                .any(|c| g.members.iter().any(|m| m.id == c.scenario.id))
        })
        .collect();
    if groups.is_empty() {
        eprintln!("        nothing to drive alone: no gauge climbs and no leak class was found");
    }
    let mut confirmed = Vec::new();
    let mut windows = Vec::new();
    for (i, g) in groups.iter().enumerate() {
        eprintln!("        [{}/{}] {} alone", i + 1, groups.len(), g.route);
        let out = opts
            .out
            .join(format!("2-round{round}-{}", g.representative().id));
        let rate = group_rate(opts.rate, g, subject.budget);
        let (run, held) = load(
            opts,
            subject,
            Workload::One(g.representative().id.clone()),
            &out,
            (GROUP_DURATION, GROUP_WARMUP),
            rate,
        )
        .await?;
        describe(&run);
        for c in confirm(g, cands, &run, &held) {
            eprintln!(
                "        -> {} ({}): {}, its own burn {}",
                c.scenario.id,
                c.class,
                c.why,
                per_hour(c.burn_bytes_per_s)
            );
            confirmed.push(c);
        }
        windows.push((g.route.clone(), run));
    }
    Ok((confirmed, windows))
}

/// A route group's own rate: the hunt's, but never so high that the
/// heaviest scenario of the group would spend its share of the leak budget
/// inside the window (a climb cut off reads as flat), and never below three
/// times what a draining worker absorbs (below it a queue cannot grow).
fn group_rate(rate: RateArg, g: &Group, budget: Option<u64>) -> RateArg {
    let share = budget.map(|b| (b as f64 * BUDGET_SHARE * 2.0) as u64);
    let cap = run::prepare::auto_rate(&g.members, share, GROUP_DURATION);
    let floor = g
        .members
        .iter()
        .filter_map(|m| m.drain_per_s)
        .fold(0.0, f64::max)
        * 3.0;
    match rate {
        RateArg::Fixed(r) => RateArg::Fixed(r.min(cap).max(floor)),
        RateArg::Auto if floor > cap => RateArg::Fixed(floor),
        other => other,
    }
}

/// Step 3 for one confirmed scenario: its artifact and the finding.
async fn finding(
    opts: &HuntOpts,
    subject: &Subject,
    c: &Confirmed,
    window: &RunSummary,
    growth: &[SiteGrowth],
    time_to_oom_s: Option<f64>,
) -> Result<HuntFinding> {
    let f = window
        .verdict
        .findings
        .iter()
        .find(|f| f.class == c.class)
        .cloned()
        .unwrap_or_else(|| leaklab_model::run::Finding {
            class: c.class,
            component: Some(c.scenario.component.clone()),
            gauge: Some(c.scenario.gauge.clone()),
            signal: c.signal.clone(),
            slope_per_s: c.burn_bytes_per_s,
            burn_rate_bytes_per_h: Some(c.burn_bytes_per_s * 3600.0),
        });
    let dir = opts.out.join(format!("3-{}", c.scenario.id));
    std::fs::create_dir_all(&dir)?;
    let artifact = match c.class {
        LeakClass::Retention => heap_artifact(&dir, c, growth)?,
        LeakClass::TaskLeak => {
            artifacts::tasks::task_artifact(&subject.control, &dir, &f, opts.await_dump)
                .await
                .unwrap_or_default()
        }
        LeakClass::OffHeap => match subject.pid {
            Some(pid) => artifacts::smaps::offheap_artifact(pid, &dir, &f).unwrap_or_default(),
            None => Artifact::default(),
        },
        _ => artifacts::memory::memory_artifact(&subject.control, &dir, &f)
            .await
            .unwrap_or_default(),
    };
    let mut evidence = c.evidence.clone();
    if let Some(file) = &artifact.file {
        evidence.push(format!("artifact: {}", file.display()));
    }
    eprintln!("        {}: {}", c.scenario.id, artifact.path);
    Ok(HuntFinding {
        scenario: Some(c.scenario.id.clone()),
        class: c.class,
        component: Some(c.scenario.component.clone()),
        signal: c.signal.clone(),
        burn_rate_bytes_per_h: Some(c.burn_bytes_per_s * 3600.0),
        time_to_oom_s,
        artifact: artifact.file.map(|p: PathBuf| p.display().to_string()),
        why: c.why.clone(),
        path: artifact.path,
        route: Some(c.route.clone()),
        evidence,
    })
}

/// The screen's heap-profile diff, at the sites in the scenario's code (all
/// sites when none is there), and the retention path it shows.
fn heap_artifact(dir: &Path, c: &Confirmed, growth: &[SiteGrowth]) -> Result<Artifact> {
    let needle = format!("({}:", c.scenario.source);
    let mine: Vec<&SiteGrowth> = growth
        .iter()
        .filter(|g| !c.scenario.source.is_empty() && g.site.contains(&needle))
        .collect();
    let rows: Vec<&SiteGrowth> = if mine.is_empty() {
        growth.iter().take(10).collect()
    } else {
        mine
    };
    let text = pprof::diff_table(
        rows.iter().copied(),
        "in-use bytes since the screen's warm-up",
    );
    let file = dir.join("heap-diff.txt");
    std::fs::write(&file, text)?;
    let path = match rows.iter().find(|r| r.growth_bytes > 0) {
        Some(top) if !c.scenario.source.is_empty() && top.site.contains(&needle) => format!(
            "{} keeps what {} allocates: +{} in the heap profile during the screen; {}",
            c.scenario.component,
            top.site,
            human_bytes(top.growth_bytes as f64),
            c.scenario.leaky_path
        ),
        _ => format!(
            "{} (gauge {}): no allocation site in {} grew enough to show in a sampled profile; {}",
            c.scenario.component, c.scenario.gauge, c.scenario.source, c.scenario.leaky_path
        ),
    };
    Ok(Artifact {
        file: Some(file),
        path,
    })
}

/// A leak class the screen found that no named scenario accounts for: an
/// unattributed finding, so the answer says "something else leaks".
fn unexplained(screen: &RunSummary, confirmed: &[Confirmed], findings: &mut Vec<HuntFinding>) {
    for f in &screen.verdict.findings {
        if !f.class.is_leak() || confirmed.iter().any(|c| c.class == f.class) {
            continue;
        }
        eprintln!(
            "        {} in {} has no owner the differential step could confirm",
            f.class, f.signal
        );
        findings.push(HuntFinding {
            scenario: None,
            class: f.class,
            component: f.component.clone(),
            signal: f.signal.clone(),
            burn_rate_bytes_per_h: f.burn_rate_bytes_per_h,
            time_to_oom_s: screen.verdict.time_to_oom_s,
            artifact: None,
            why: format!(
                "{} rises in the screen; no route alone confirmed an owner",
                f.signal
            ),
            path: String::new(),
            route: None,
            evidence: vec![format!("screen: {} rises {}/s", f.signal, f.slope_per_s)],
        });
    }
}

/// Step 4: the named fixes on (`confirmed`), the screen's load again.
async fn prove(
    opts: &HuntOpts,
    subject: &Subject,
    confirmed: &[Confirmed],
    out: &Path,
) -> Result<(RunSummary, Vec<SiteGrowth>)> {
    let named: Vec<String> = confirmed.iter().map(|c| c.scenario.id.clone()).collect();
    let ids = match &opts.fix_only {
        Some(ids) => {
            eprintln!(
                "        --fix-only: switching off {ids:?} instead of what was named ({named:?})"
            );
            ids.clone()
        }
        None => named,
    };
    for id in &ids {
        subject.control.set_flag(id, false).await?;
        eprintln!("        PUT /admin/flags/{id} {{\"enabled\": false}}");
    }
    screened(opts, subject, out).await
}

/// Step 5: `hunt.md`, `report.html`, `hunt.json`, and the summary printed.
fn write(
    opts: &HuntOpts,
    report: &HuntReport,
    screen: &RunSummary,
    proof: &RunSummary,
) -> Result<()> {
    let md = markdown(report, screen, proof, opts.limit);
    std::fs::write(&report.markdown, &md)?;
    std::fs::write(
        &report.report,
        html(report, screen, proof, opts.limit, &opts.out),
    )?;
    std::fs::write(
        opts.out.join("hunt.json"),
        serde_json::to_vec_pretty(report)?,
    )?;
    if opts.json {
        println!("{}", serde_json::to_string_pretty(report)?);
    } else {
        eprint!("{md}");
    }
    Ok(())
}
