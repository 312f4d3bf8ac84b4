//! Benchmarks of the service's profiling, measured. They print figures and
//! assert nothing.
//!
//! `cargo ci bench-profiling`: what heap profiling costs. Starts two release
//! services, one with jemalloc heap-profile sampling active and one with it
//! inactive, and drives `GET /items/{key}` (leaks off, distinct keys) at
//! maximum rate with loadgen, alternating rounds so both see the same machine
//! noise. Prints requests/s per round, the medians and their ratio.
//!
//! `cargo ci bench-allocs`: what the allocation profile
//! (`/debug/pprof/allocs`) costs. The same alternating rounds between a
//! service with jemalloc's cumulative counts (`prof_accum`, the default) and
//! one without (`MALLOC_CONF=prof_accum:false`), both sampling; then the
//! memory each holds after the same load, and the time to serve the
//! allocation profile (and the in-use one, for comparison).
//!
//! On a machine with two CPUs or more both pin the services to the first CPU
//! and loadgen to the others (`taskset`, from util-linux), so the load
//! generator and the service do not take each other's cycles and a round's
//! rate measures the service. `LEAKLAB_BENCH_PIN=0` turns that off; the
//! first line printed says which.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use leaklab_model::run::RunSummary;
use serde::Deserialize;

use crate::json;
use crate::process::{output_within, LOADGEN_LIMIT};

/// A service child process, killed on drop.
struct Service {
    child: Child,
    url: String,
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(binary: &Path, profiling: bool) -> Result<Service> {
    start_with(
        binary,
        &["--heap-profiling", if profiling { "on" } else { "off" }],
        &[],
    )
}

/// The CPU lists the services and loadgen are pinned to, when they are.
#[derive(Debug, Clone)]
struct Pinning {
    service: String,
    load: String,
}

/// Pins on a machine with two CPUs or more where `taskset` runs, unless
/// `LEAKLAB_BENCH_PIN=0`. Decided once per bench.
fn pinning() -> Option<&'static Pinning> {
    static PINNING: OnceLock<Option<Pinning>> = OnceLock::new();
    PINNING
        .get_or_init(|| {
            if std::env::var("LEAKLAB_BENCH_PIN").is_ok_and(|v| v == "0") {
                return None;
            }
            let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
            let taskset = Command::new("taskset")
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            (cpus >= 2 && taskset).then(|| Pinning {
                service: "0".into(),
                load: if cpus == 2 {
                    "1".into()
                } else {
                    format!("1-{}", cpus - 1)
                },
            })
        })
        .as_ref()
}

/// What the bench's first line says about pinning.
fn pinning_line() -> String {
    match pinning() {
        Some(p) => format!(
            "pinned: services on CPU {}, loadgen on CPU {} (taskset)",
            p.service, p.load
        ),
        None => "not pinned: services and loadgen share every CPU".into(),
    }
}

/// `program`, run under `taskset -c CPUS` when the bench pins.
fn pinned(program: &Path, cpus: impl Fn(&Pinning) -> &str) -> Command {
    match pinning() {
        Some(p) => {
            let mut cmd = Command::new("taskset");
            cmd.args(["-c", cpus(p)]).arg(program);
            cmd
        }
        None => Command::new(program),
    }
}

/// Starts `binary` on a free loopback port with `args` and `env` added.
fn start_with(binary: &Path, args: &[&str], env: &[(&str, &str)]) -> Result<Service> {
    let mut child = pinned(binary, |p| &p.service)
        .args(["--addr", "127.0.0.1:0"])
        .args(args)
        .env("RUST_LOG", "warn")
        .env_remove("LEAKLAB_LEAKS")
        .env_remove("LEAKLAB_ADMIN_TOKEN")
        .env_remove("MALLOC_CONF")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("piped")).read_line(&mut line)?;
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .with_context(|| format!("unexpected {line:?}"))?
        .to_owned();
    Ok(Service { child, url })
}

fn round(loadgen: &Path, url: &str, duration: &str, connections: usize) -> Result<f64> {
    round_of(loadgen, url, "unbounded-cache", duration, connections)
}

/// One max-rate loadgen run of `scenario`'s requests; the rate achieved.
fn round_of(
    loadgen: &Path,
    url: &str,
    scenario: &str,
    duration: &str,
    connections: usize,
) -> Result<f64> {
    let mut cmd = pinned(loadgen, |p| &p.load);
    cmd.args([
        "run",
        "--target",
        url,
        "--scenario",
        scenario,
        "--rate",
        "max",
    ])
    .args([
        "--duration",
        duration,
        "--warmup",
        "1s",
        "--connections",
        &connections.to_string(),
        "--json",
    ])
    .stderr(Stdio::null());
    let output = output_within(&mut cmd, LOADGEN_LIMIT, "loadgen run --rate max")?;
    let summary: RunSummary = json::parse_report(
        &output.stdout,
        "the summary `loadgen run --rate max --json` printed",
    )?;
    if summary.load.errors > 0 {
        bail!(
            "{} errors during a round against {url}",
            summary.load.errors
        );
    }
    Ok(summary.load.rate_achieved)
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    }
}

/// Runs the bench and prints its table.
pub fn profiling(
    service: &Path,
    loadgen: &Path,
    rounds: usize,
    duration: &str,
    connections: usize,
) -> Result<()> {
    let on = start(service, true)?;
    let off = start(service, false)?;
    println!("{}", pinning_line());
    println!("GET /items/{{key}}, leaks off, max rate, {connections} connections, {rounds} alternating rounds of {duration}");
    println!(
        "{:<6} {:>16} {:>16}",
        "round", "profiling on", "profiling off"
    );
    let (mut with, mut without) = (Vec::new(), Vec::new());
    for r in 0..rounds {
        // Alternate which goes first, so neither always gets the warmer machine.
        let (a, b) = if r % 2 == 0 { (&on, &off) } else { (&off, &on) };
        let ra = round(loadgen, &a.url, duration, connections)?;
        let rb = round(loadgen, &b.url, duration, connections)?;
        let (x, y) = if r % 2 == 0 { (ra, rb) } else { (rb, ra) };
        println!("{:<6} {:>12.0} r/s {:>12.0} r/s", r + 1, x, y);
        with.push(x);
        without.push(y);
    }
    let (m_on, m_off) = (median(with), median(without));
    println!("median {m_on:>12.0} r/s {m_off:>12.0} r/s");
    println!(
        "ratio on/off: {:.3} (profiling costs {:.1}% of throughput; target: under 5%)",
        m_on / m_off,
        (1.0 - m_on / m_off) * 100.0
    );
    Ok(())
}

/// One answer: status, body, and how long the whole answer took.
struct Fetched {
    status: u16,
    body: Vec<u8>,
    took: Duration,
}

/// `GET path` from the service at `url` over a fresh connection, read to the
/// end within `timeout` (the service answers these routes with a length, not
/// in chunks).
fn fetch(url: &str, path: &str, timeout: Duration) -> Result<Fetched> {
    let addr: SocketAddr = url
        .trim_start_matches("http://")
        .parse()
        .with_context(|| format!("not a loopback address: {url}"))?;
    let started = Instant::now();
    let mut stream = TcpStream::connect_timeout(&addr, timeout)
        .with_context(|| format!("connecting to {url} for {path}"))?;
    stream.set_read_timeout(Some(timeout))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"
    )?;
    let mut answer = Vec::new();
    stream
        .read_to_end(&mut answer)
        .with_context(|| format!("GET {path} did not answer within {timeout:?}"))?;
    let took = started.elapsed();
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .with_context(|| format!("GET {path}: no end of headers"))?;
    let status = std::str::from_utf8(answer.get(9..12).unwrap_or_default())
        .ok()
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("GET {path}: no status line"))?;
    Ok(Fetched {
        status,
        body: answer[split + 4..].to_vec(),
        took,
    })
}

/// The part of `/debug/memory` the bench prints (required fields: a renamed
/// one is an error, not a zero).
#[derive(Debug, Deserialize)]
struct MemoryReading {
    allocated: u64,
    resident: u64,
    rss: u64,
}

fn memory(service: &Service) -> Result<MemoryReading> {
    let got = fetch(&service.url, "/debug/memory", Duration::from_secs(10))?;
    if got.status != 200 {
        bail!("/debug/memory answered {}", got.status);
    }
    json::parse(&got.body, "/debug/memory")
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Loads the symbolizer's tables into `service` the same way on both sides,
/// so their memory differs by prof_accum alone: 200 `GET /items/{key}` keep
/// about 2 MiB in the bounded cache (live samples for the in-use profile to
/// symbolize), then one `GET /debug/pprof/heap`.
fn warm(service: &Service) -> Result<()> {
    for i in 0..200 {
        let got = fetch(
            &service.url,
            &format!("/items/bench-warm-{i}"),
            Duration::from_secs(10),
        )?;
        if got.status != 200 {
            bail!("/items/bench-warm-{i} answered {}", got.status);
        }
    }
    let heap = fetch(&service.url, "/debug/pprof/heap", Duration::from_secs(120))?;
    if heap.status != 200 {
        bail!("/debug/pprof/heap answered {}", heap.status);
    }
    Ok(())
}

/// Memory of both services before and after the rounds (both with the
/// symbolizer loaded), and how much more the prof_accum one grew.
fn print_memory(
    before_on: &MemoryReading,
    before_off: &MemoryReading,
    after_on: &MemoryReading,
    after_off: &MemoryReading,
) {
    println!(
        "memory, before -> after the rounds: {:>24} {:>24} {:>14}",
        "prof_accum on", "prof_accum off", "growth on-off"
    );
    type Field = fn(&MemoryReading) -> u64;
    let fields: [(&str, Field); 3] = [
        ("allocated", |m| m.allocated),
        ("resident", |m| m.resident),
        ("rss", |m| m.rss),
    ];
    for (name, field) in fields {
        let (b_on, a_on) = (field(before_on), field(after_on));
        let (b_off, a_off) = (field(before_off), field(after_off));
        let growth = (mib(a_on) - mib(b_on)) - (mib(a_off) - mib(b_off));
        println!(
            "{name:<35} {:>9.1} -> {:>6.1} MiB {:>9.1} -> {:>6.1} MiB {growth:>+10.1} MiB",
            mib(b_on),
            mib(a_on),
            mib(b_off),
            mib(a_off)
        );
    }
}

/// Options of one `cargo ci bench-allocs` run.
#[derive(Debug, Clone)]
pub struct AllocsBench {
    pub rounds: usize,
    pub duration: String,
    pub connections: usize,
    /// The loadgen scenario driven (its requests; both services run `--leak churn`).
    pub scenario: String,
    /// Profiles fetched to time serving one.
    pub fetches: usize,
}

/// Times `fetches` answers of `path`: the first alone (it may load the
/// symbolizer), then the median of the rest; and the size of the last.
fn time_profile(service: &Service, path: &str, fetches: usize) -> Result<(f64, f64, usize)> {
    let mut times = Vec::new();
    let mut size = 0;
    for _ in 0..fetches.max(2) {
        let got = fetch(&service.url, path, Duration::from_secs(120))?;
        if got.status != 200 {
            bail!("{path} answered {}", got.status);
        }
        times.push(got.took.as_secs_f64() * 1000.0);
        size = got.body.len();
    }
    let first = times.remove(0);
    Ok((first, median(times), size))
}

/// Runs `cargo ci bench-allocs` and prints its tables.
pub fn allocs(service: &Path, loadgen: &Path, bench: &AllocsBench) -> Result<()> {
    let args = ["--leak", "churn"];
    let on = start_with(service, &args, &[])?;
    let off = start_with(service, &args, &[("MALLOC_CONF", "prof_accum:false")])?;
    let limit = Duration::from_secs(120);
    let refused = fetch(&off.url, "/debug/pprof/allocs", limit)?;
    if refused.status != 503 {
        bail!(
            "the service started with MALLOC_CONF=prof_accum:false answered /debug/pprof/allocs with {}, not 503: the setting did not reach jemalloc",
            refused.status
        );
    }
    // The first profile loads the symbolizer: time it on a fresh service.
    let cold = fetch(&on.url, "/debug/pprof/allocs", limit)?;
    if cold.status != 200 {
        bail!("/debug/pprof/allocs answered {}", cold.status);
    }
    warm(&on)?;
    warm(&off)?;
    let (before_on, before_off) = (memory(&on)?, memory(&off)?);
    let (rounds, connections) = (bench.rounds.max(1), bench.connections);
    println!("{}", pinning_line());
    println!(
        "scenario {}, leaks off but churn, max rate, {connections} connections, {rounds} alternating rounds of {}",
        bench.scenario, bench.duration
    );
    println!(
        "{:<6} {:>16} {:>16}",
        "round", "prof_accum on", "prof_accum off"
    );
    let (mut with, mut without) = (Vec::new(), Vec::new());
    for r in 0..rounds {
        // Alternate which goes first, so neither always gets the warmer machine.
        let (a, b) = if r % 2 == 0 { (&on, &off) } else { (&off, &on) };
        let ra = round_of(
            loadgen,
            &a.url,
            &bench.scenario,
            &bench.duration,
            connections,
        )?;
        let rb = round_of(
            loadgen,
            &b.url,
            &bench.scenario,
            &bench.duration,
            connections,
        )?;
        let (x, y) = if r % 2 == 0 { (ra, rb) } else { (rb, ra) };
        println!("{:<6} {:>12.0} r/s {:>12.0} r/s", r + 1, x, y);
        with.push(x);
        without.push(y);
    }
    let (m_on, m_off) = (median(with), median(without));
    println!("median {m_on:>12.0} r/s {m_off:>12.0} r/s");
    println!(
        "ratio on/off: {:.3} (prof_accum costs {:.1}% of throughput)",
        m_on / m_off,
        (1.0 - m_on / m_off) * 100.0
    );
    print_memory(&before_on, &before_off, &memory(&on)?, &memory(&off)?);
    let (first, warm, size) = time_profile(&on, "/debug/pprof/allocs", bench.fetches)?;
    println!(
        "GET /debug/pprof/allocs: first {:.0} ms on a fresh service (loads the symbolizer), after the load {first:.0} ms, then median {warm:.0} ms of {}; {:.1} KiB gzipped",
        cold.took.as_secs_f64() * 1000.0,
        bench.fetches.max(2) - 1,
        size as f64 / 1024.0
    );
    let (_, heap_warm, heap_size) = time_profile(&on, "/debug/pprof/heap", bench.fetches)?;
    println!(
        "GET /debug/pprof/heap (for comparison): median {heap_warm:.0} ms; {:.1} KiB gzipped",
        heap_size as f64 / 1024.0
    );
    Ok(())
}
