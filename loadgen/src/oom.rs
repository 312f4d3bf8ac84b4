//! `loadgen oom`: the memory-limit experiment. A service runs under a memory
//! limit with one leak on; loadgen drives that leak at a fixed rate until the
//! kernel's OOM killer ends the service, predicting the time of the kill as
//! the run goes, and then reports predicted against actual.
//!
//! Two ways to impose the limit:
//!
//! - the default needs no Docker: the service is started in a memory cgroup of
//!   loadgen's own (`leaklab_probe::cgroup::MemoryCgroup`, root, cgroup v1 or
//!   v2), joined before it executes so every byte counts;
//! - `--docker` starts docker-compose's `service` with `SERVICE_MEM_LIMIT` set
//!   to the limit (the image must be built; see the README).
//!
//! The prediction: a Theil–Sen line through the cgroup's memory usage since
//! the warm-up ended, extended to the limit. Each prediction is the time of
//! the kill, in seconds since the load started (the same clock as the actual
//! kill), so `prediction_error_pct` compares like with like. The error quoted
//! is that of the prediction made at half the actual time.
//!
//! Evidence of an OOM kill: the service died of SIGKILL (exit code 137 in
//! Docker's and the shell's terms) and the cgroup's `oom_kill` counter went up
//! (cgroup mode) or Docker recorded `OOMKilled` (compose mode).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use plotters::prelude::*;
use serde::Serialize;
use tokio::time::Instant;

use crate::analysis::human_bytes;
use crate::catalogue::Scenario;
use crate::load::{self, LoadConfig, Progress, Rate, Unit};
use crate::sampler::{self, CgroupReading, Phase, Sample};
use crate::stats;
use crate::target::{Control, Target};
use crate::{exit, parse_bytes, parse_duration, spawn, RateArg, UsageError};

/// `leaklab.oom/v1`.
pub const SCHEMA: &str = "leaklab.oom/v1";
/// The smallest limit accepted: the service itself needs some room.
const MIN_LIMIT: u64 = 32 << 20;
/// Fitted predictions need at least this many samples after the warm-up.
const MIN_FIT_SAMPLES: usize = 6;
/// Theil–Sen is quadratic: fit on at most this many (evenly thinned) samples.
const MAX_FIT_SAMPLES: usize = 400;
/// `--rate auto` stays within these bounds.
const AUTO_RATE_BOUNDS: (f64, f64) = (1.0, 5000.0);

/// Options of `loadgen oom`.
#[derive(Args, Clone, Debug)]
pub struct OomOpts {
    /// The leak to drive (a scenario id that leaks: not a negative control).
    #[arg(long)]
    pub scenario: String,
    /// The memory limit (e.g. 256MiB): the cgroup's limit, or the container's
    /// mem_limit with --docker.
    #[arg(long, default_value = "256MiB", value_parser = parse_bytes)]
    pub limit: u64,
    /// Run the service with docker-compose (its `service`, image already
    /// built) instead of in a memory cgroup of loadgen's own.
    #[arg(long)]
    pub docker: bool,
    /// The compose file for --docker.
    #[arg(long, default_value = "docker-compose.yml", requires = "docker")]
    pub compose_file: PathBuf,
    /// Leave the compose project (`leaklab-oom`) in place afterwards, for
    /// `docker inspect` and `docker logs`.
    #[arg(long, requires = "docker")]
    pub keep: bool,
    /// Triggering requests per second, or `auto`: a rate at which the leak's
    /// catalogue footprint would fill the headroom in about --fill-in.
    #[arg(long, default_value = "auto", value_parser = crate::parse_rate)]
    pub rate: RateArg,
    /// With --rate auto: how long the leak should take to fill the limit.
    #[arg(long, default_value = "90s", value_parser = parse_duration)]
    pub fill_in: Duration,
    /// Give up after this long; the service is then reported as not killed.
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    pub max_duration: Duration,
    /// Let the service thrash at the limit: by default it pins its code pages
    /// (`leaklab-service --lock-code on`) so that the kernel kills it when the
    /// limit is reached; with this flag the kernel first evicts and re-reads
    /// its code for a while (the service stops answering but lives on), and
    /// the kill comes later than any usage trend can say.
    #[arg(long)]
    pub allow_thrash: bool,
    /// Samples before this are not used for predictions.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Memory sampling interval.
    #[arg(long, default_value = "500ms", value_parser = parse_duration)]
    pub sample_interval: Duration,
    /// Bearer token for the service's /debug and /admin routes.
    #[arg(long, env = "LEAKLAB_ADMIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Directory for oom.json, samples.jsonl, oom.svg and the service log.
    #[arg(long, default_value = "out/oom")]
    pub out: PathBuf,
    /// Print only the JSON result on stdout.
    #[arg(long)]
    pub json: bool,
}

/// One prediction of the kill, made at `at_s`.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Prediction {
    /// When the prediction was made (seconds since the load started).
    pub at_s: f64,
    /// When the kill is predicted (seconds since the load started).
    pub predicted_time_to_oom_s: f64,
    /// `predicted_time_to_oom_s - at_s`.
    pub remaining_s: f64,
    /// The fitted usage at `at_s`.
    pub usage_bytes: f64,
    pub slope_bytes_per_s: f64,
}

/// What shows the kernel killed the service for memory.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct OomEvidence {
    /// How the service ended, in words.
    pub exit: Option<String>,
    /// 128 + signal for a signal death (137 = SIGKILL), else the exit code.
    pub exit_code: Option<i32>,
    /// The cgroup's `oom_kill` counter before and after (cgroup mode).
    pub cgroup_oom_kills_before: Option<u64>,
    pub cgroup_oom_kills_after: Option<u64>,
    /// Docker's `State.OOMKilled` (compose mode).
    pub docker_oom_killed: Option<bool>,
}

/// The result (`--json`, and `oom.json` in the out directory).
#[derive(Clone, Debug, Serialize)]
pub struct OomReport {
    pub schema: &'static str,
    pub scenario: String,
    /// `cgroup` or `docker`.
    pub mode: &'static str,
    pub cgroup_version: Option<String>,
    pub limit_bytes: u64,
    pub rate: f64,
    pub requests: u64,
    /// Whether the OOM killer ended the service (SIGKILL and an OOM record).
    pub killed: bool,
    /// Seconds from the start of the load to the kill, or null.
    pub actual_time_to_oom_s: Option<f64>,
    /// The prediction made at half the actual time (or the last one when the
    /// service was not killed).
    pub predicted_time_to_oom_s: Option<f64>,
    /// `(predicted - actual) / actual`, in percent.
    pub prediction_error_pct: Option<f64>,
    pub burn_rate_bytes_per_h: Option<f64>,
    pub baseline_usage_bytes: u64,
    pub peak_usage_bytes: u64,
    /// First sample within 1% of the limit.
    pub limit_reached_at_s: Option<f64>,
    /// The last sample at which completed requests still went up.
    pub last_progress_at_s: Option<f64>,
    /// Whether the service's code was pinned (see `--allow-thrash`).
    pub code_pinned: bool,
    pub evidence: OomEvidence,
    pub predictions: Vec<Prediction>,
    pub samples: String,
    pub plot: Option<String>,
    pub notes: Vec<String>,
}

/// Runs the experiment; returns the exit code (3 when the service was
/// OOM-killed, 0 when it survived, 1 when it died of something else).
pub async fn execute(opts: &OomOpts) -> Result<u8> {
    if opts.limit < MIN_LIMIT {
        return Err(UsageError(format!(
            "--limit {} is too small: the service alone needs about 20 MiB; give at least {}",
            human_bytes(opts.limit as f64),
            human_bytes(MIN_LIMIT as f64)
        ))
        .into());
    }
    if opts.max_duration <= opts.warmup {
        return Err(UsageError("--max-duration must be longer than --warmup".into()).into());
    }
    if opts.rate == RateArg::Max {
        return Err(UsageError(
            "--rate max is not a fixed rate: give a number or auto, so the slope means something"
                .into(),
        )
        .into());
    }
    std::fs::create_dir_all(&opts.out)
        .with_context(|| format!("creating {}", opts.out.display()))?;
    let mut target = if opts.docker {
        OomTarget::Docker(DockerTarget::start(opts).await?)
    } else {
        OomTarget::Cgroup(CgroupTarget::start(opts).await?)
    };
    let result = experiment(opts, &mut target).await;
    let teardown = target.stop(opts.keep);
    let report = result?;
    if let Err(e) = teardown {
        eprintln!("loadgen oom: cleaning up: {e:#}");
    }
    let json = serde_json::to_string_pretty(&report)?;
    std::fs::write(opts.out.join("oom.json"), &json)
        .with_context(|| format!("writing {}/oom.json", opts.out.display()))?;
    if opts.json {
        println!("{json}");
    } else {
        print_human(&report, &opts.out);
    }
    Ok(if report.killed {
        exit::LEAK
    } else if report.evidence.exit.is_some() {
        exit::COULD_NOT_RUN
    } else {
        exit::NO_LEAK
    })
}

/// The service under a limit, however it was started.
enum OomTarget {
    Cgroup(CgroupTarget),
    Docker(DockerTarget),
}

struct CgroupTarget {
    // Field order matters: the service is killed and reaped before the cgroup
    // is removed (a cgroup with a process in it cannot be).
    service: spawn::Service,
    cgroup: Arc<leaklab_probe::cgroup::MemoryCgroup>,
    oom_kills_before: Option<u64>,
}

impl CgroupTarget {
    async fn start(opts: &OomOpts) -> Result<CgroupTarget> {
        let name = format!("leaklab-oom-{}", std::process::id());
        let cgroup = leaklab_probe::cgroup::MemoryCgroup::create(&name, opts.limit)
            .map(Arc::new)
            .map_err(|e| {
                anyhow!(
                    "cannot make a memory cgroup ({e}); the cgroup mode needs root and a cgroup \
                     v1 or v2 memory controller: run as root, or use --docker"
                )
            })?;
        let oom_kills_before = cgroup.memory().and_then(|m| m.oom_kills);
        let args = service_args(&opts.scenario, opts.limit, !opts.allow_thrash);
        let log = opts.out.join("service.log");
        let confine = {
            let cgroup = cgroup.clone();
            move |cmd: &mut Command| cgroup.confine(cmd)
        };
        let service =
            tokio::task::spawn_blocking(move || spawn::start_with(&args, Some(&log), confine))
                .await??;
        Ok(CgroupTarget {
            service,
            cgroup,
            oom_kills_before,
        })
    }
}

/// The service's flags for an OOM run: the leak on, a leak budget well past
/// the limit so the kernel, not the budget, ends the climb, and the code
/// pinned unless thrashing is asked for.
fn service_args(scenario: &str, limit: u64, lock_code: bool) -> Vec<String> {
    vec![
        "--leak".into(),
        scenario.into(),
        "--leak-budget".into(),
        limit.saturating_mul(4).to_string(),
        "--lock-code".into(),
        if lock_code { "on" } else { "off" }.into(),
    ]
}

impl OomTarget {
    fn url(&self) -> String {
        match self {
            OomTarget::Cgroup(c) => c.service.url.clone(),
            OomTarget::Docker(d) => d.url.clone(),
        }
    }

    fn pid(&self) -> u32 {
        match self {
            OomTarget::Cgroup(c) => c.service.pid,
            OomTarget::Docker(d) => d.pid,
        }
    }

    fn mode(&self) -> &'static str {
        match self {
            OomTarget::Cgroup(_) => "cgroup",
            OomTarget::Docker(_) => "docker",
        }
    }

    /// Usage now: the cgroup's own file in cgroup mode, the container's
    /// cgroup through its pid in compose mode.
    fn usage(&self) -> Option<CgroupReading> {
        let m = match self {
            OomTarget::Cgroup(c) => c.cgroup.memory(),
            OomTarget::Docker(d) => leaklab_probe::cgroup_memory(leaklab_probe::Pid::Of(d.pid)),
        }?;
        Some(CgroupReading {
            limit: m.limit,
            usage: m.usage,
            oom_kills: m.oom_kills,
        })
    }

    fn cgroup_version(&self) -> Option<String> {
        match self {
            OomTarget::Cgroup(c) => Some(c.cgroup.version().to_string()),
            OomTarget::Docker(d) => leaklab_probe::cgroup_memory(leaklab_probe::Pid::Of(d.pid))
                .map(|m| m.version.to_string()),
        }
    }

    /// Has the service ended? Cheap enough to poll every 100 ms.
    fn ended(&self) -> bool {
        match self {
            OomTarget::Cgroup(c) => c.service.exit_status().is_some(),
            OomTarget::Docker(d) => !leaklab_probe::is_alive(d.pid),
        }
    }

    /// How it ended, once it has.
    fn evidence(&self) -> OomEvidence {
        match self {
            OomTarget::Cgroup(c) => {
                use std::os::unix::process::ExitStatusExt;
                let status = c.service.raw_exit_status();
                OomEvidence {
                    exit: status.map(spawn::describe_exit),
                    exit_code: status.and_then(|s| s.signal().map(|sig| 128 + sig).or(s.code())),
                    cgroup_oom_kills_before: c.oom_kills_before,
                    cgroup_oom_kills_after: c.cgroup.memory().and_then(|m| m.oom_kills),
                    docker_oom_killed: None,
                }
            }
            OomTarget::Docker(d) => d.evidence(),
        }
    }

    fn stop(self, keep: bool) -> Result<()> {
        match self {
            OomTarget::Cgroup(c) => {
                drop(c);
                Ok(())
            }
            OomTarget::Docker(d) if keep => {
                eprintln!(
                    "loadgen oom: left the compose project {} in place (--keep)",
                    d.project
                );
                Ok(())
            }
            OomTarget::Docker(d) => d.down(),
        }
    }
}

/// docker-compose's `service`, started for this run.
struct DockerTarget {
    compose: Vec<String>,
    file: PathBuf,
    project: String,
    env: Vec<(String, String)>,
    container: String,
    pid: u32,
    url: String,
}

/// `docker compose` when the plugin is there, else `docker-compose`.
pub fn compose_command() -> Option<Vec<String>> {
    let works = |cmd: &[&str]| {
        Command::new(cmd[0])
            .args(&cmd[1..])
            .arg("version")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if works(&["docker", "compose"]) {
        Some(vec!["docker".into(), "compose".into()])
    } else if works(&["docker-compose"]) {
        Some(vec!["docker-compose".into()])
    } else {
        None
    }
}

fn free_loopback_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(l.local_addr()?.port())
}

fn run_checked(cmd: &mut Command, what: &str) -> Result<String> {
    let out = cmd.output().with_context(|| format!("running {what}"))?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

impl DockerTarget {
    fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.compose[0]);
        cmd.args(&self.compose[1..])
            .arg("-f")
            .arg(&self.file)
            .args(["-p", &self.project])
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd
    }

    async fn start(opts: &OomOpts) -> Result<DockerTarget> {
        let compose = compose_command().ok_or_else(|| {
            anyhow!("--docker needs Docker Compose (`docker compose` or `docker-compose`); neither runs here")
        })?;
        if !opts.compose_file.is_file() {
            return Err(UsageError(format!(
                "no compose file at {} (run from the repository root or give --compose-file)",
                opts.compose_file.display()
            ))
            .into());
        }
        let tag = std::env::var("LEAKLAB_TAG").unwrap_or_else(|_| "latest".into());
        let image = format!("leaklab/service:{tag}");
        let inspect = Command::new("docker")
            .args(["image", "inspect", &image])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .context("running docker")?;
        if !inspect.success() {
            bail!(
                "image {image} is not built; build it first (see the README): \
                 ci/docker/make-base-images.sh && RUST_IMAGE=leaklab/rust-builder:local docker-compose build service"
            );
        }
        let port = free_loopback_port()?;
        let env = vec![
            ("SERVICE_MEM_LIMIT".into(), opts.limit.to_string()),
            ("SERVICE_PORT".into(), port.to_string()),
            ("LEAKLAB_LEAKS".into(), opts.scenario.clone()),
            (
                "LEAKLAB_LEAK_BUDGET".into(),
                opts.limit.saturating_mul(4).to_string(),
            ),
            ("LEAKLAB_TAG".into(), tag),
            (
                "LEAKLAB_LOCK_CODE".into(),
                if opts.allow_thrash { "off" } else { "on" }.into(),
            ),
        ];
        let mut target = DockerTarget {
            compose,
            file: opts.compose_file.clone(),
            project: "leaklab-oom".into(),
            env,
            container: String::new(),
            pid: 0,
            url: format!("http://127.0.0.1:{port}"),
        };
        run_checked(
            &mut target.cmd(&["up", "-d", "--no-build", "--force-recreate", "service"]),
            "compose up service",
        )?;
        target.container = run_checked(&mut target.cmd(&["ps", "-q", "service"]), "compose ps")?;
        if target.container.is_empty() {
            bail!("compose started no `service` container");
        }
        let pid = run_checked(
            Command::new("docker").args(["inspect", "-f", "{{.State.Pid}}", &target.container]),
            "docker inspect",
        )?;
        target.pid = pid
            .parse()
            .with_context(|| format!("the container's pid {pid:?}"))?;
        if target.pid == 0 {
            bail!(
                "the service container is not running (docker logs {})",
                target.container
            );
        }
        Ok(target)
    }

    fn evidence(&self) -> OomEvidence {
        // Docker notes the exit a moment after the process is gone.
        let mut state = None;
        for _ in 0..50 {
            let out = Command::new("docker")
                .args([
                    "inspect",
                    "-f",
                    "{{.State.Running}} {{.State.ExitCode}} {{.State.OOMKilled}}",
                    &self.container,
                ])
                .output();
            if let Ok(out) = out {
                let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
                let parts: Vec<&str> = text.split_whitespace().collect();
                if parts.len() == 3 && parts[0] == "false" {
                    state = Some((parts[1].parse::<i32>().ok(), parts[2] == "true"));
                    break;
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        match state {
            Some((code, oom)) => OomEvidence {
                exit: Some(format!(
                    "container exited with {}{}",
                    code.map(|c| c.to_string()).unwrap_or("?".into()),
                    if oom { ", OOMKilled" } else { "" }
                )),
                exit_code: code,
                docker_oom_killed: Some(oom),
                ..OomEvidence::default()
            },
            None => OomEvidence::default(),
        }
    }

    fn down(self) -> Result<()> {
        run_checked(&mut self.cmd(&["down", "--timeout", "2"]), "compose down").map(|_| ())
    }
}

/// The run proper, with the target started.
async fn experiment(opts: &OomOpts, target: &mut OomTarget) -> Result<OomReport> {
    let url = target.url();
    let t = Target::parse(&url, opts.token.clone(), opts.docker)?;
    let control = Control::new(&t);
    control.wait_ready(Duration::from_secs(30)).await?;
    let catalogue: Vec<Scenario> = control
        .get_json("/admin/scenarios")
        .await
        .map_err(|e| anyhow!("reading the service's catalogue: {e}"))?;
    let scenario = catalogue
        .iter()
        .find(|s| s.id == opts.scenario)
        .cloned()
        .ok_or_else(|| {
            let ids: Vec<&str> = catalogue.iter().map(|s| s.id.as_str()).collect();
            UsageError(format!(
                "unknown scenario {:?}; the service knows: {}",
                opts.scenario,
                ids.join(", ")
            ))
        })?;
    if scenario.negative_control {
        return Err(UsageError(format!(
            "{} is a negative control: it does not leak, so nothing would reach the limit",
            scenario.id
        ))
        .into());
    }
    let baseline = target
        .usage()
        .ok_or_else(|| anyhow!("cannot read the service's cgroup memory"))?;
    let headroom = opts.limit.saturating_sub(baseline.usage);
    let rate = match opts.rate {
        RateArg::Fixed(r) => r,
        _ => auto_rate(headroom, scenario.footprint_bytes(), opts.fill_in),
    };
    let pid = target.pid();
    let mut notes = Vec::new();
    if let Some(l) = baseline.limit.filter(|l| *l != opts.limit) {
        notes.push(format!(
            "the cgroup's limit reads {l} bytes, not the {} asked for",
            opts.limit
        ));
    }
    if !opts.json {
        eprintln!(
            "oom: {} under {} ({} mode, {}), baseline usage {}, {rate:.0} req/s; \
             predictions start after {:.0}s of warm-up",
            scenario.id,
            human_bytes(opts.limit as f64),
            target.mode(),
            target.cgroup_version().unwrap_or_else(|| "cgroup ?".into()),
            human_bytes(baseline.usage as f64),
            opts.warmup.as_secs_f64()
        );
    }

    let cfg = LoadConfig {
        target: t.clone(),
        rate: Rate::Fixed(rate),
        duration: opts.max_duration,
        ramp: None,
        connections: 64,
        max_in_flight: 1024,
        max_lag: Duration::from_secs(1),
        key_prefix: format!("oom{:x}", std::process::id()),
        max_units: None,
        per_unit_cap: vec![None],
    };
    let units = Arc::new(vec![Unit::from_scenario(&scenario)?]);
    let progress = Arc::new(Progress::default());
    let start = Instant::now();
    let load = tokio::spawn({
        let progress = progress.clone();
        async move { load::drive(&cfg, units, progress, start).await }
    });

    // Death watch: polled every 100 ms, so the kill's time is known to 0.1 s.
    let mut ended = None;
    let samples_path = opts.out.join("samples.jsonl");
    let mut file = std::io::BufWriter::new(
        std::fs::File::create(&samples_path)
            .with_context(|| format!("creating {}", samples_path.display()))?,
    );
    let mut samples: Vec<Sample> = Vec::new();
    let mut predictions: Vec<Prediction> = Vec::new();
    let mut fit_points: Vec<(f64, f64)> = Vec::new();
    let mut next_sample = start;
    let mut next_line = start + Duration::from_secs(5);
    let mut poll = tokio::time::interval(Duration::from_millis(100));
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut interrupted = false;
    // Bounded by --max-duration (or the kill, or ctrl-c).
    loop {
        tokio::select! {
            _ = poll.tick() => {}
            _ = &mut ctrl_c => { interrupted = true; }
        }
        let now = Instant::now();
        let t_now = now.duration_since(start).as_secs_f64();
        if target.ended() {
            ended = Some(t_now);
            break;
        }
        if interrupted || t_now > opts.max_duration.as_secs_f64() {
            break;
        }
        if now < next_sample {
            continue;
        }
        next_sample += opts.sample_interval;
        // The cgroup first, at the sample's time; then the service's own view
        // (which may take a while when the service is short of memory).
        let reading = target.usage();
        let requests = progress.units_done.load(Ordering::Relaxed);
        let in_flight = progress
            .sent
            .load(Ordering::Relaxed)
            .saturating_sub(requests);
        let phase = if t_now < opts.warmup.as_secs_f64() {
            Phase::Warmup
        } else {
            Phase::Measure
        };
        let mut sample =
            sampler::take(&control, Some(pid), t_now, phase, requests, in_flight).await;
        if reading.is_some() {
            sample.cgroup = reading.clone();
        }
        serde_json::to_writer(&mut file, &sample)?;
        std::io::Write::write_all(&mut file, b"\n")?;
        std::io::Write::flush(&mut file)?;
        samples.push(sample);
        let Some(reading) = reading else { continue };
        if phase == Phase::Measure {
            fit_points.push((t_now, reading.usage as f64));
            if let Some(p) = predict(&fit_points, t_now, opts.limit as f64) {
                predictions.push(p);
            }
        }
        if !opts.json && now >= next_line {
            next_line += Duration::from_secs(5);
            let prediction = match predictions.last() {
                Some(p) if p.at_s == t_now => format!(
                    "predicted kill at {:.0}s (in {:.0}s), {}/s",
                    p.predicted_time_to_oom_s,
                    p.remaining_s,
                    human_bytes(p.slope_bytes_per_s)
                ),
                _ => "no prediction yet".into(),
            };
            eprintln!(
                "[{t_now:>4.0}s] {requests:>8} requests | cgroup {} of {} | {prediction}",
                human_bytes(reading.usage as f64),
                human_bytes(opts.limit as f64),
            );
        }
    }
    progress.stop.store(true, Ordering::Relaxed);
    let stats = tokio::time::timeout(Duration::from_secs(10), load)
        .await
        .ok()
        .and_then(|r| r.ok())
        .and_then(|r| r.ok());
    if interrupted {
        notes.push("interrupted (ctrl-c) before the service was killed".into());
    }
    let evidence = if ended.is_some() {
        target.evidence()
    } else {
        OomEvidence::default()
    };
    let oom_recorded = match (
        evidence.cgroup_oom_kills_before,
        evidence.cgroup_oom_kills_after,
        evidence.docker_oom_killed,
    ) {
        (_, _, Some(docker)) => docker,
        (before, Some(after), None) => after > before.unwrap_or(0),
        // A kernel without the oom_kill counter: SIGKILL at the limit is the evidence.
        (_, None, None) => true,
    };
    let killed = ended.is_some() && evidence.exit_code == Some(137) && oom_recorded;
    if ended.is_some() && !killed {
        notes.push(format!(
            "the service ended, but not by the OOM killer: {}",
            evidence.exit.as_deref().unwrap_or("unknown exit")
        ));
    }
    if ended.is_none() && !interrupted {
        notes.push(format!(
            "not killed within --max-duration {:.0}s",
            opts.max_duration.as_secs_f64()
        ));
    }
    let actual = ended.filter(|_| killed);
    let judged = match actual {
        Some(a) => predictions
            .iter()
            .rev()
            .find(|p| p.at_s <= a / 2.0)
            .cloned()
            .or_else(|| {
                notes.push(format!(
                    "no prediction was made by half the actual time ({:.1}s): the warm-up is too long for so short a run",
                    a / 2.0
                ));
                None
            }),
        None => predictions.last().cloned(),
    };
    let error = match (actual, &judged) {
        (Some(a), Some(p)) => Some((p.predicted_time_to_oom_s - a) / a * 100.0),
        _ => None,
    };
    let peak = samples
        .iter()
        .filter_map(|s| s.cgroup.as_ref().map(|c| c.usage))
        .max()
        .unwrap_or(baseline.usage);
    let burn = predictions.last().map(|p| p.slope_bytes_per_s * 3600.0);
    let limit_reached = samples
        .iter()
        .find(|s| {
            s.cgroup
                .as_ref()
                .is_some_and(|c| c.usage as f64 >= opts.limit as f64 * 0.99)
        })
        .map(|s| s.t);
    let last_progress = samples
        .windows(2)
        .rfind(|w| w[1].requests > w[0].requests)
        .map(|w| w[1].t);
    if let (Some(a), Some(p)) = (actual, last_progress) {
        if a - p > 5.0 {
            notes.push(format!(
                "the service stopped completing requests at {p:.1}s and was killed at {a:.1}s: \
                 {:.0}s stalled at the limit{}",
                a - p,
                if opts.allow_thrash {
                    " (thrashing on its own code, --allow-thrash)"
                } else {
                    ""
                }
            ));
        }
    }
    let plot_path = opts.out.join("oom.svg");
    let plot = match plot(
        &plot_path,
        &scenario.id,
        opts.limit,
        &samples,
        &predictions,
        actual,
    ) {
        Ok(()) => Some(plot_path.display().to_string()),
        Err(e) => {
            notes.push(format!("plot not written: {e:#}"));
            None
        }
    };
    Ok(OomReport {
        schema: SCHEMA,
        scenario: scenario.id.clone(),
        mode: target.mode(),
        cgroup_version: target.cgroup_version(),
        limit_bytes: opts.limit,
        rate,
        requests: stats
            .map(|s| s.units_done)
            .unwrap_or_else(|| progress.units_done.load(Ordering::Relaxed)),
        killed,
        actual_time_to_oom_s: actual,
        predicted_time_to_oom_s: judged.map(|p| p.predicted_time_to_oom_s),
        prediction_error_pct: error,
        burn_rate_bytes_per_h: burn,
        baseline_usage_bytes: baseline.usage,
        peak_usage_bytes: peak,
        limit_reached_at_s: limit_reached,
        last_progress_at_s: last_progress,
        code_pinned: !opts.allow_thrash,
        evidence,
        predictions,
        samples: samples_path.display().to_string(),
        plot,
        notes,
    })
}

/// `--rate auto`: fill `headroom` in `fill_in` at `footprint` bytes a request.
pub fn auto_rate(headroom: u64, footprint: u64, fill_in: Duration) -> f64 {
    if footprint == 0 {
        return crate::run::DEFAULT_RATE;
    }
    let rate = headroom as f64 / footprint as f64 / fill_in.as_secs_f64().max(1.0);
    rate.clamp(AUTO_RATE_BOUNDS.0, AUTO_RATE_BOUNDS.1)
}

/// The kill predicted from the usage points so far (`(t, bytes)` after the
/// warm-up): the robust line through them, extended to `limit`. `None` until
/// there are enough points, or while usage is not growing.
pub fn predict(points: &[(f64, f64)], at_s: f64, limit: f64) -> Option<Prediction> {
    if points.len() < MIN_FIT_SAMPLES {
        return None;
    }
    let idx = stats::thin(points.len(), MAX_FIT_SAMPLES);
    let x: Vec<f64> = idx.iter().map(|&i| points[i].0).collect();
    let y: Vec<f64> = idx.iter().map(|&i| points[i].1).collect();
    let fit = stats::theil_sen(&x, &y)?;
    if fit.slope <= 0.0 || !fit.slope.is_finite() {
        return None;
    }
    let usage = fit.at(at_s);
    let remaining = ((limit - usage) / fit.slope).max(0.0);
    Some(Prediction {
        at_s,
        predicted_time_to_oom_s: at_s + remaining,
        remaining_s: remaining,
        usage_bytes: usage,
        slope_bytes_per_s: fit.slope,
    })
}

fn print_human(r: &OomReport, out: &Path) {
    let limit = human_bytes(r.limit_bytes as f64);
    eprintln!();
    match (r.killed, r.actual_time_to_oom_s) {
        (true, Some(actual)) => {
            eprintln!(
                "OOM-killed: {} under {limit} after {actual:.1}s ({} requests at {:.0}/s; {})",
                r.scenario,
                r.requests,
                r.rate,
                r.evidence.exit.as_deref().unwrap_or("")
            );
            match (r.predicted_time_to_oom_s, r.prediction_error_pct) {
                (Some(p), Some(e)) => eprintln!(
                    "predicted at {:.1}s (half the actual time): kill at {p:.1}s, error {e:+.1}%",
                    actual / 2.0
                ),
                _ => eprintln!("no prediction at half the actual time"),
            }
            let evidence = &r.evidence;
            if let (Some(b), Some(a)) = (
                evidence.cgroup_oom_kills_before,
                evidence.cgroup_oom_kills_after,
            ) {
                eprintln!("cgroup oom_kill counter: {b} -> {a}");
            }
            if let Some(o) = evidence.docker_oom_killed {
                eprintln!("docker State.OOMKilled: {o}");
            }
            eprintln!("predictions as the run went (kill predicted at, made at):");
            for frac in [0.2, 0.35, 0.5, 0.65, 0.8] {
                if let Some(p) = r.predictions.iter().rev().find(|p| p.at_s <= actual * frac) {
                    eprintln!(
                        "  at {:>5.1}s ({:>3.0}% of the way): kill at {:>6.1}s ({:+.1}%)",
                        p.at_s,
                        frac * 100.0,
                        p.predicted_time_to_oom_s,
                        (p.predicted_time_to_oom_s - actual) / actual * 100.0
                    );
                }
            }
        }
        _ => {
            eprintln!(
                "not OOM-killed: {} under {limit}, peak usage {}",
                r.scenario,
                human_bytes(r.peak_usage_bytes as f64)
            );
            if let Some(p) = r.predicted_time_to_oom_s {
                eprintln!("last prediction: kill at {p:.0}s");
            }
        }
    }
    for n in &r.notes {
        eprintln!("note: {n}");
    }
    eprintln!(
        "wrote {}/oom.json, samples.jsonl{}",
        out.display(),
        if r.plot.is_some() { ", oom.svg" } else { "" }
    );
}

fn plot_err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("plotting: {e:?}")
}

/// Two panels: cgroup usage against the limit, and the predicted time of the
/// kill against when it was predicted, with the actual kill and a ±15% band.
fn plot(
    path: &Path,
    scenario: &str,
    limit: u64,
    samples: &[Sample],
    predictions: &[Prediction],
    actual: Option<f64>,
) -> Result<()> {
    const MIB: f64 = 1024.0 * 1024.0;
    let usage: Vec<(f64, f64)> = samples
        .iter()
        .filter_map(|s| Some((s.t, s.cgroup.as_ref()?.usage as f64 / MIB)))
        .collect();
    let t_max = actual
        .unwrap_or(0.0)
        .max(usage.last().map(|p| p.0).unwrap_or(1.0))
        .max(1.0);
    let limit_mib = limit as f64 / MIB;
    let root = SVGBackend::new(path, (900, 640)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err)?;
    let (top, bottom) = root.split_vertically(340);
    let mut chart = ChartBuilder::on(&top)
        .caption(
            format!(
                "cgroup memory: {scenario} under {}",
                human_bytes(limit as f64)
            ),
            ("sans-serif", 18),
        )
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..t_max * 1.05, 0.0..limit_mib * 1.1)
        .map_err(plot_err)?;
    chart
        .configure_mesh()
        .x_desc("seconds since the load started")
        .y_desc("MiB")
        .draw()
        .map_err(plot_err)?;
    chart
        .draw_series(LineSeries::new(usage.iter().copied(), BLUE))
        .map_err(plot_err)?
        .label("usage")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], BLUE));
    chart
        .draw_series(LineSeries::new(
            vec![(0.0, limit_mib), (t_max * 1.05, limit_mib)],
            RED.stroke_width(2),
        ))
        .map_err(plot_err)?
        .label("limit")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], RED));
    if let Some(a) = actual {
        chart
            .draw_series(LineSeries::new(
                vec![(a, 0.0), (a, limit_mib * 1.1)],
                BLACK.stroke_width(2),
            ))
            .map_err(plot_err)?
            .label(format!("killed at {a:.1}s"))
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], BLACK));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(plot_err)?;

    let points: Vec<(f64, f64)> = predictions
        .iter()
        .map(|p| (p.at_s, p.predicted_time_to_oom_s))
        .collect();
    let y_max = points
        .iter()
        .map(|p| p.1)
        .fold(actual.unwrap_or(1.0) * 1.3, f64::max)
        .min(t_max * 4.0);
    let mut chart = ChartBuilder::on(&bottom)
        .caption(
            "predicted time of the kill, as the run went",
            ("sans-serif", 18),
        )
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..t_max * 1.05, 0.0..y_max)
        .map_err(plot_err)?;
    chart
        .configure_mesh()
        .x_desc("predicted at (s)")
        .y_desc("kill at (s)")
        .draw()
        .map_err(plot_err)?;
    if let Some(a) = actual {
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(0.0, a * 0.85), (t_max * 1.05, a * 1.15)],
                RGBColor(200, 230, 200).mix(0.6).filled(),
            )))
            .map_err(plot_err)?
            .label("actual ±15%")
            .legend(|(x, y)| {
                Rectangle::new(
                    [(x, y - 5), (x + 15, y + 5)],
                    RGBColor(200, 230, 200).filled(),
                )
            });
        chart
            .draw_series(LineSeries::new(vec![(0.0, a), (t_max * 1.05, a)], BLACK))
            .map_err(plot_err)?
            .label("actual")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], BLACK));
    }
    chart
        .draw_series(LineSeries::new(
            points.iter().copied().filter(|p| p.1 <= y_max),
            BLUE,
        ))
        .map_err(plot_err)?
        .label("predicted")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], BLUE));
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(plot_err)?;
    root.present().map_err(plot_err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_linear_climb_is_predicted_to_reach_the_limit_on_time() {
        // 1 MiB/s from 20 MiB: a 100 MiB limit is reached at t = 80 s.
        let pts: Vec<(f64, f64)> = (0..40)
            .map(|i| {
                let t = 5.0 + i as f64 * 0.5;
                let noise = if i % 3 == 0 { 300_000.0 } else { -100_000.0 };
                (t, (20.0 + t) * 1048576.0 + noise)
            })
            .collect();
        let p = predict(&pts, 24.5, 100.0 * 1048576.0).unwrap();
        assert!((p.predicted_time_to_oom_s - 80.0).abs() < 1.0, "{p:?}");
        assert!((p.remaining_s - 55.5).abs() < 1.0, "{p:?}");
    }

    #[test]
    fn no_prediction_without_growth_or_enough_points() {
        let flat: Vec<(f64, f64)> = (0..20).map(|i| (i as f64, 50e6)).collect();
        assert_eq!(predict(&flat, 19.0, 100e6), None);
        let few: Vec<(f64, f64)> = (0..3).map(|i| (i as f64, i as f64 * 1e6)).collect();
        assert_eq!(predict(&few, 2.0, 100e6), None);
    }

    #[test]
    fn auto_rate_fills_the_headroom_in_the_time_asked() {
        let r = auto_rate(200 << 20, 16 << 10, Duration::from_secs(100));
        assert!((r - 128.0).abs() < 0.01, "{r}");
        assert_eq!(auto_rate(1 << 40, 1, Duration::from_secs(1)), 5000.0);
        assert_eq!(
            auto_rate(1 << 20, 0, Duration::from_secs(1)),
            crate::run::DEFAULT_RATE
        );
    }
}
