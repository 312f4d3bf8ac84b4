//! `cargo ci`: leaklab's project tasks, as a library with a thin `main`
//! (run through the cargo alias in `.cargo/config.toml`).
//!
//! # Layout
//!
//! - [`releases`]: `ci/releases.toml`, ordered releases as feature sets.
//! - [`build`]: builds a release's service binary, cached by feature set.
//! - [`measure`]: runs loadgen's mixed workload against one release.
//! - [`bisect`]: the binary search for the first bad release.
//! - [`plot`]: burn rate by release, with deploy markers.
//! - [`prove`]: measured proof sections for `fixes/<id>.md`.
//! - [`bench`]: what heap profiling and the allocation profile cost.
//! - [`detect`]: how fast and how right `loadgen run --until-verdict` is.
//! - [`guards`]: the leak guards run N times in a row, tallied.
//! - [`process`]: child processes with a deadline.
//! - [`soak`]: task evidence asked for under load, counted when it does not answer.
//! - [`json`]: other programs' JSON read into `leaklab-model`'s types (a
//!   missing field is an error naming it, never a default).
//! - [`check`]: CI's expectations on one report (`cargo ci check hunt FILE ...`).
//! - [`tidy`]: repository rules: every scenario complete, `//!` docs, no
//!   tracked generated files, short functions, no module cycles.
//! - [`hunt_bench`]: the blind hunt over a sweep of graded mysteries.
//! - [`html_check`]: report pages self-contained and shown by headless Chromium.
//! - [`lessons`]: every lesson's `check` blocks run, so the curriculum's
//!   promises cannot rot.
//!
//! ```text
//! cargo ci bisect [--releases ci/releases.toml] [--json]
//! cargo ci prove [--only ID]... [--dry-run]
//! cargo ci bench-profiling [--rounds 5] [--duration 6s]
//! cargo ci bench-allocs [--rounds 5] [--duration 6s] [--scenario churn] [--fetches 6]
//! cargo ci bench-detect [--control-runs 20] [--only ID]... [--duration 40s] [--warmup 10s] [--canary-duration 60s] [--no-canary]
//! cargo ci guards [--repeat 20] [--variant build-default|leak-on|both] [--features leak-ID]... [--only ID]...
//! cargo ci soak-tasks [--mode census|await|both] [--services 4] [--requests 10] [--timeout 10s]
//! cargo ci check hunt|bisect|oom|run|canary|memory FILE [EXPECTATIONS]...
//! cargo ci tidy [--only scenarios|docs|generated|fn-length|cycles]... [--src DIR]... [--max-fn-lines 120]
//! cargo ci hunt-bench [--from 100] [--count 8] [--min-none 5] [--rates 100,200,400]
//! cargo ci check-html FILE... [--screenshot DIR] [--require-browser]
//! cargo ci lessons [--only NN]... [--list] [--dry-run] [--timeout 120s] [--quick]
//! ```

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};
/// What `cargo ci bisect --json` prints: the shared type, so whoever reads it
/// (`cargo ci check bisect`) reads the same fields.
pub use leaklab_model::bisect::{BisectReport, Row};

pub mod bench;
pub mod bisect;
pub mod build;
pub mod check;
pub mod detect;
pub mod guards;
pub mod html_check;
pub mod hunt_bench;
pub mod json;
pub mod lessons;
pub mod measure;
pub mod plot;
pub mod process;
pub mod prove;
pub mod releases;
pub mod soak;
pub mod tidy;

/// leaklab's project tasks.
#[derive(Debug, Parser)]
#[command(name = "cargo ci", bin_name = "cargo ci", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Task,
}

/// The tasks.
#[derive(Debug, Subcommand)]
pub enum Task {
    /// Build releases as needed, measure each one's burn rate under identical
    /// load, and binary-search for the first bad release.
    Bisect(BisectOpts),
    /// Measure each scenario leaky and fixed with identical load and write the
    /// numbers into the proof section of its fixes/<id>.md.
    Prove(ProveOpts),
    /// Benchmark (not a test): throughput of GET /items/{key} with jemalloc
    /// heap profiling active vs inactive, alternating rounds.
    BenchProfiling(BenchOpts),
    /// Benchmark (not a test): what the allocation profile costs. Throughput
    /// with jemalloc's cumulative counts (prof_accum) on vs off, alternating
    /// rounds; the memory each service holds after the same load; the time
    /// to serve /debug/pprof/allocs (and /debug/pprof/heap, for comparison).
    BenchAllocs(BenchAllocsOpts),
    /// Benchmark (not a test): `loadgen run --until-verdict` over every
    /// catalogue scenario (time from warm-up to a verdict, right or not) and
    /// N more runs of each negative control (false alarms); a table, totals
    /// and whether the targets were met.
    BenchDetect(detect::DetectOpts),
    /// Run the leak guards (service/tests/guards) N times in a row and tally
    /// them: on the fixed code every guard must hold every time (no false
    /// positives from warm-up); with --features leak-ID (a bad release) its
    /// build_default guard trips. Exits 1 when any guard tripped.
    Guards(GuardsOpts),
    /// Benchmark (not a test): several services under mixed load with task
    /// leaks on, each asked for its task evidence many times; prints how many
    /// requests did not answer in time, how many services stopped answering
    /// /healthz and how many did not stop on SIGTERM. Exits 1 if any did.
    SoakTasks(SoakOpts),
    /// Check one JSON report against CI's expectations (typed: a missing or
    /// mistyped field is an error naming it). Prints one line with the
    /// figures; exits 1 saying what was expected and what was found.
    #[command(long_about = check::LONG_ABOUT)]
    Check(check::CheckOpts),
    /// Repository rules: every scenario complete (guard, write-up, README
    /// line, catalogue snapshot, Cargo feature, docs section), every .rs file
    /// opens with a //! doc, no tracked generated files, no long functions, no
    /// module cycles. Exits 1 listing every problem.
    #[command(long_about = tidy::LONG_ABOUT)]
    Tidy(tidy::TidyOpts),
    /// Run every lesson's `check` blocks (docs/lessons/NN-*.md) against
    /// freshly built release binaries: a PASS/FAIL line per block, then
    /// `lessons: N passed, M failed`. Exits 1 when any failed.
    #[command(long_about = lessons::LONG_ABOUT)]
    Lessons(lessons::LessonsOpts),
    /// Benchmark (not a test): the blind hunt over a sweep of mysteries
    /// (single leaks, pairs, triples and no-leak draws, at rates from half
    /// to twice the default), each graded against its seed: precision,
    /// recall, false alarms, wrong classes, median and worst time.
    HuntBench(hunt_bench::HuntBenchOpts),
    /// Check report pages: self-contained (plots inline, every local link
    /// resolves) and shown by headless Chromium (a screenshot, no resource
    /// that failed to load). Exits 1 listing every problem.
    CheckHtml(html_check::HtmlCheckOpts),
}

/// Options of `cargo ci soak-tasks`.
#[derive(Debug, Args)]
pub struct SoakOpts {
    /// What to ask for: the census (default /debug/tasks), the await-point
    /// dump (?mode=await), or a round of each.
    #[arg(long, value_enum, default_value = "both")]
    pub mode: soak::Mode,
    /// Services at once.
    #[arg(long, default_value_t = 4)]
    pub services: usize,
    /// Task-evidence requests per service per round.
    #[arg(long, default_value_t = 10)]
    pub requests: usize,
    /// How long one request may take before it counts as not answered (seconds).
    #[arg(long, default_value_t = 10)]
    pub timeout: u64,
    /// Background load per service, requests per second.
    #[arg(long, default_value_t = 100)]
    pub rate: u32,
    /// Another leaklab-service build to soak (e.g. an older release); default: this tree's release build.
    #[arg(long)]
    pub service_bin: Option<PathBuf>,
    /// Print the rounds as JSON on stdout (the table goes to stderr).
    #[arg(long)]
    pub json: bool,
}

/// Runs `cargo ci soak-tasks`; Ok(true) when every request answered and every
/// service kept answering and stopped.
pub fn run_soak(opts: &SoakOpts) -> Result<bool> {
    let loadgen = build::loadgen_binary()?;
    let service_bin = match &opts.service_bin {
        Some(path) => soak::given_binary(path)?,
        None => build::service_binary(&[], &build::source_fingerprint()?)?.0,
    };
    let plan = soak::Plan {
        services: opts.services.max(1),
        requests: opts.requests.max(1),
        timeout: std::time::Duration::from_secs(opts.timeout.max(1)),
        rate: opts.rate,
        service_bin,
        loadgen,
    };
    let mut reports = Vec::new();
    for &mode in soak::rounds(opts.mode) {
        eprintln!(
            "cargo ci soak-tasks: {mode:?} round: {} services of {}, {} requests each, {} s timeout",
            plan.services,
            plan.service_bin.display(),
            plan.requests,
            plan.timeout.as_secs()
        );
        reports.push(soak::round(&plan, mode)?);
    }
    if opts.json {
        soak::print(&reports, &mut std::io::stderr())?;
        println!("{}", serde_json::to_string_pretty(&reports)?);
    } else {
        soak::print(&reports, &mut std::io::stdout())?;
    }
    Ok(reports
        .iter()
        .all(|r| r.timed_out + r.failed + r.healthz_lost + r.did_not_stop + r.stopped_forced == 0))
}

/// Options of `cargo ci guards`.
#[derive(Debug, Args)]
pub struct GuardsOpts {
    /// Runs in a row.
    #[arg(long, default_value_t = 20)]
    pub repeat: usize,
    /// Which guards: `build-default` (the build's own flags: the fixed code in
    /// a default build), `leak-on` (each leak forced on) or `both`.
    #[arg(long, default_value = "build-default", value_parser = ["build-default", "leak-on", "both"])]
    pub variant: String,
    /// Build a bad release: leaklab-service features (`leak-unbounded-cache`), repeatable.
    #[arg(long = "features", value_name = "FEATURE")]
    pub features: Vec<String>,
    /// Only these scenarios' guards (repeatable); default: every scenario.
    #[arg(long = "only", value_name = "ID")]
    pub only: Vec<String>,
}

/// Runs `cargo ci guards`; Ok(true) when every guard held.
pub fn run_guards(opts: &GuardsOpts) -> Result<bool> {
    let variant = match opts.variant.as_str() {
        "build-default" => "build_default",
        "leak-on" => "leak_on",
        _ => "",
    };
    // libtest runs the tests that match any of its filters.
    let filters: Vec<String> = if opts.only.is_empty() {
        vec![variant.to_owned()]
    } else {
        opts.only
            .iter()
            .map(|id| format!("{}::{variant}", id.replace('-', "_")))
            .collect()
    };
    let started = Instant::now();
    let restore = build::RestoreDefaultBuild {
        armed: !opts.features.is_empty(),
        debug: true,
    };
    let tally = guards::run(opts.repeat.max(1), &filters, &opts.features);
    drop(restore);
    let tally = tally?;
    guards::print(&tally, &mut std::io::stdout())?;
    println!("{:.0} s", started.elapsed().as_secs_f64());
    Ok(tally.values().all(|t| t.tripped == 0))
}

/// Options of `cargo ci bench-profiling`.
#[derive(Debug, Args)]
pub struct BenchOpts {
    /// Rounds per side (many short ones: the median of many alternations
    /// is steadier than a few long rounds on a shared machine).
    #[arg(long, default_value_t = 12)]
    pub rounds: usize,
    /// Length of one round (loadgen --duration, 1 s of it warm-up).
    #[arg(long, default_value = "4s")]
    pub duration: String,
    /// loadgen connections in max-rate mode.
    #[arg(long, default_value_t = 32)]
    pub connections: usize,
}

/// Runs `cargo ci bench-profiling`.
pub fn run_bench_profiling(opts: &BenchOpts) -> Result<()> {
    let loadgen = build::loadgen_binary()?;
    let (service, _) = build::service_binary(&[], &build::source_fingerprint()?)?;
    bench::profiling(
        &service,
        &loadgen,
        opts.rounds,
        &opts.duration,
        opts.connections,
    )
}

/// Options of `cargo ci bench-allocs`.
#[derive(Debug, Args)]
pub struct BenchAllocsOpts {
    /// Rounds per side.
    #[arg(long, default_value_t = 5)]
    pub rounds: usize,
    /// Length of one round (loadgen --duration, 1 s of it warm-up).
    #[arg(long, default_value = "6s")]
    pub duration: String,
    /// loadgen connections in max-rate mode.
    #[arg(long, default_value_t = 32)]
    pub connections: usize,
    /// The loadgen scenario whose requests are driven (both services run
    /// `--leak churn`, so `churn` allocates and frees 1 MiB per request).
    #[arg(long, default_value = "churn")]
    pub scenario: String,
    /// Allocation profiles fetched after the load to time serving one (the
    /// first is reported alone, then the median of the rest).
    #[arg(long, default_value_t = 6)]
    pub fetches: usize,
}

/// Runs `cargo ci bench-allocs`.
pub fn run_bench_allocs(opts: &BenchAllocsOpts) -> Result<()> {
    let loadgen = build::loadgen_binary()?;
    let (service, _) = build::service_binary(&[], &build::source_fingerprint()?)?;
    bench::allocs(
        &service,
        &loadgen,
        &bench::AllocsBench {
            rounds: opts.rounds,
            duration: opts.duration.clone(),
            connections: opts.connections,
            scenario: opts.scenario.clone(),
            fetches: opts.fetches,
        },
    )
}

/// Options of `cargo ci prove`.
#[derive(Debug, Args)]
pub struct ProveOpts {
    /// Only these scenarios (repeatable); default: every write-up in fixes/.
    #[arg(long = "only", value_name = "ID")]
    pub only: Vec<String>,
    /// Whole run per measurement, warm-up included.
    #[arg(long, default_value = "30s")]
    pub duration: String,
    /// Warm-up per measurement.
    #[arg(long, default_value = "8s")]
    pub warmup: String,
    /// Print the blocks instead of writing the files.
    #[arg(long)]
    pub dry_run: bool,
}

/// Runs `cargo ci prove`.
pub fn run_prove(opts: &ProveOpts) -> Result<()> {
    let loadgen = build::loadgen_binary()?;
    let mut ids = opts.only.clone();
    if ids.is_empty() {
        for entry in std::fs::read_dir(build::workspace_root().join("fixes"))? {
            let name = entry?.file_name().to_string_lossy().into_owned();
            if let Some(id) = name.strip_suffix(".md").filter(|id| *id != "README") {
                ids.push(id.to_owned());
            }
        }
        ids.sort();
    }
    let catalogue = build::loadgen_catalogue(&loadgen)?;
    let out = build::workspace_root().join("out/prove");
    let timing = (opts.duration.as_str(), opts.warmup.as_str());
    for id in &ids {
        let gauge = catalogue
            .find(id)
            .ok()
            .map(|s| s.gauge.as_str())
            .filter(|g| !g.is_empty());
        eprintln!("cargo ci prove: {id}: leak on");
        let leaky = prove::run(
            &loadgen,
            id,
            false,
            timing,
            gauge,
            &out.join(id).join("leaky"),
        )?;
        eprintln!("cargo ci prove: {id}: fixed");
        let fixed = prove::run(
            &loadgen,
            id,
            true,
            timing,
            gauge,
            &out.join(id).join("fixed"),
        )?;
        let block = prove::proof_block(id, timing, gauge, &leaky, &fixed);
        if opts.dry_run {
            println!("{block}\n");
            continue;
        }
        let path = prove::doc_path(id);
        let doc = std::fs::read_to_string(&path).unwrap_or_else(|_| format!("# {id}\n"));
        std::fs::write(&path, prove::splice(&doc, &block))?;
        eprintln!("cargo ci prove: {id}: wrote {}", path.display());
    }
    Ok(())
}

/// Options of `cargo ci bisect`.
#[derive(Debug, Args)]
pub struct BisectOpts {
    /// The ordered releases ([[release]] tables with name, features, notes).
    #[arg(long, default_value = "ci/releases.toml")]
    pub releases: PathBuf,
    /// Print `{first_bad, measured, builds}` as JSON on stdout (the table goes to stderr).
    #[arg(long)]
    pub json: bool,
    /// Requests per second of the mixed workload (the same for every release).
    #[arg(long, default_value = "300")]
    pub rate: String,
    /// Whole run per release, warm-up included (loadgen's --duration).
    #[arg(long, default_value = "60s")]
    pub duration: String,
    /// Warm-up per release, excluded from the verdict: long enough for the
    /// bounded structures of a mixed workload (the 16 MiB item cache) to fill.
    #[arg(long, default_value = "25s")]
    pub warmup: String,
    /// Where the plot and each release's loadgen files go.
    #[arg(long, default_value = "out/bisect")]
    pub out: PathBuf,
}

/// Runs `cargo ci bisect`.
pub fn run_bisect(opts: &BisectOpts) -> Result<BisectReport> {
    let started = Instant::now();
    let releases = releases::load(&opts.releases)?;
    let root = build::workspace_root();
    let out = if opts.out.is_absolute() {
        opts.out.clone()
    } else {
        root.join(&opts.out)
    };
    std::fs::create_dir_all(&out)?;
    eprintln!(
        "cargo ci bisect: {} releases from {}",
        releases.len(),
        opts.releases.display()
    );
    let loadgen = build::loadgen_binary()?;
    let fingerprint = build::source_fingerprint()?;
    let workload = measure::Workload {
        rate: opts.rate.clone(),
        duration: opts.duration.clone(),
        warmup: opts.warmup.clone(),
    };
    let mut results: Vec<Option<measure::Measurement>> = vec![None; releases.len()];
    let mut builds = 0;
    let mut restore = build::RestoreDefaultBuild::default();
    let search = bisect::first_bad(releases.len(), |i| {
        let release = &releases[i];
        eprintln!(
            "[{}/{}] {} features={:?}: building",
            i + 1,
            releases.len(),
            release.name,
            release.features
        );
        let (binary, built) = build::service_binary(&release.features, &fingerprint)?;
        builds += usize::from(built);
        restore.armed |= built;
        eprintln!(
            "[{}/{}] {}: measuring (rate {}, {} incl. {} warm-up)",
            i + 1,
            releases.len(),
            release.name,
            workload.rate,
            workload.duration,
            workload.warmup
        );
        let m = measure::measure(&loadgen, &binary, &workload, &out.join(&release.name))?;
        eprintln!(
            "[{}/{}] {}: {:.1} MiB/h, {}",
            i + 1,
            releases.len(),
            release.name,
            m.burn_rate_bytes_per_h / check::MIB,
            if m.leak {
                format!("leak ({})", m.class)
            } else {
                "no leak".to_owned()
            }
        );
        let bad = m.leak;
        results[i] = Some(m);
        Ok(bad)
    })?;
    let plot_path = out.join("burn-rate-by-release.svg");
    let points: Vec<plot::Point<'_>> = releases
        .iter()
        .zip(&results)
        .enumerate()
        .map(|(i, (r, m))| plot::Point {
            name: &r.name,
            burn_rate_mib_per_h: m.as_ref().map(|m| m.burn_rate_bytes_per_h / check::MIB),
            leak: m.as_ref().map(|m| m.leak),
            first_bad: search.first_bad == Some(i),
        })
        .collect();
    plot::burn_rate_by_release(&plot_path, &points)?;
    let measured = releases
        .iter()
        .zip(&results)
        .map(|(r, m)| Row {
            release: r.name.clone(),
            burn_rate_bytes_per_h: m.as_ref().map(|m| m.burn_rate_bytes_per_h),
            verdict: m.as_ref().map(|m| {
                if m.leak {
                    format!("leak ({})", m.class)
                } else {
                    "no leak".to_owned()
                }
            }),
            features: r.features.clone(),
        })
        .collect();
    drop(restore);
    Ok(BisectReport {
        first_bad: search.first_bad.map(|i| releases[i].name.clone()),
        measured,
        builds,
        measurements: search.measured.len(),
        max_measurements: bisect::max_measurements(releases.len()),
        elapsed_s: started.elapsed().as_secs_f64(),
        plot: plot_path,
    })
}

/// The table a person reads.
pub fn print_table(report: &BisectReport, to: &mut dyn std::io::Write) -> std::io::Result<()> {
    writeln!(
        to,
        "{:<12} {:>14}  {:<22} features",
        "release", "burn MiB/h", "verdict"
    )?;
    for row in &report.measured {
        let burn = row
            .burn_rate_bytes_per_h
            .map(|b| format!("{:.1}", b / check::MIB))
            .unwrap_or_else(|| "-".into());
        let verdict = row.verdict.clone().unwrap_or_else(|| "not measured".into());
        let mark = if report.first_bad.as_deref() == Some(row.release.as_str()) {
            "  <- first bad"
        } else {
            ""
        };
        writeln!(
            to,
            "{:<12} {:>14}  {:<22} {}{mark}",
            row.release,
            burn,
            verdict,
            row.features.join(",")
        )?;
    }
    writeln!(
        to,
        "first bad release: {}\nbuilds: {}, measurements: {} (at most {}), {:.0} s; plot: {}",
        report
            .first_bad
            .as_deref()
            .unwrap_or("none (the newest release is good)"),
        report.builds,
        report.measurements,
        report.max_measurements,
        report.elapsed_s,
        report.plot.display()
    )
}
