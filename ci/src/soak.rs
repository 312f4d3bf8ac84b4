//! `cargo ci soak-tasks`: a benchmark, not a test. Several services at once,
//! each under steady mixed load with task leaks on, each asked for its task
//! evidence many times; it counts the requests that did not answer in time,
//! the services that stopped answering `/healthz`, and those that did not
//! exit on SIGTERM.
//!
//! `--mode census` asks for the default `/debug/tasks` (the task census);
//! `--mode await` for `/debug/tasks?mode=await` (tokio's await-point dump,
//! the old default); `--mode both` runs one round of each on fresh services.
//! `--service-bin` points it at another build, e.g. an older release, to
//! measure before and after a change.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::Serialize;

/// What one round asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// `GET /debug/tasks?format=json` (the census; on an old build, its dump).
    Census,
    /// `GET /debug/tasks?mode=await&format=json&limit=500`.
    Await,
    /// A census round, then an await round, each on fresh services.
    Both,
}

/// The shape of a soak.
#[derive(Debug, Clone)]
pub struct Plan {
    pub services: usize,
    pub requests: usize,
    pub timeout: Duration,
    /// Requests per second of each service's background load.
    pub rate: u32,
    pub service_bin: PathBuf,
    pub loadgen: PathBuf,
}

/// One round's tally.
#[derive(Debug, Default, Serialize)]
pub struct RoundReport {
    pub mode: String,
    pub services: usize,
    pub requests: usize,
    pub answered: usize,
    /// Requests with no whole answer within the timeout.
    pub timed_out: usize,
    /// Requests refused or answered with a non-200 status.
    pub failed: usize,
    pub slowest_answer_s: f64,
    /// Services that no longer answered `/healthz` within 2 s after the round.
    pub healthz_lost: usize,
    /// Services that exited 0 within 15 s of SIGTERM.
    pub stopped_gracefully: usize,
    /// Services that exited on their own shutdown deadline (exit code 1).
    pub stopped_forced: usize,
    /// Services still running 15 s after SIGTERM (then SIGKILLed).
    pub did_not_stop: usize,
    pub elapsed_s: f64,
}

/// A service child with its load generator, both killed on drop.
struct Subject {
    service: Child,
    load: Option<Child>,
    addr: SocketAddr,
}

impl Drop for Subject {
    fn drop(&mut self) {
        if let Some(load) = self.load.as_mut() {
            let _ = load.kill();
            let _ = load.wait();
        }
        let _ = self.service.kill();
        let _ = self.service.wait();
    }
}

fn start_subject(plan: &Plan, duration: Duration) -> Result<Subject> {
    use std::io::BufRead;
    let mut service = Command::new(&plan.service_bin)
        .args(["--addr", "127.0.0.1:0"])
        .args(["--leak", "timer-per-request", "--leak", "task-leak"])
        .env("RUST_LOG", "warn")
        .env_remove("LEAKLAB_LEAKS")
        .env_remove("LEAKLAB_FIXES")
        .env_remove("LEAKLAB_ADMIN_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", plan.service_bin.display()))?;
    let mut line = String::new();
    std::io::BufReader::new(service.stdout.take().expect("piped")).read_line(&mut line)?;
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .with_context(|| format!("unexpected first line {line:?}"))?
        .to_owned();
    let addr: SocketAddr = url.trim_start_matches("http://").parse()?;
    let mut subject = Subject {
        service,
        load: None,
        addr,
    };
    let load = Command::new(&plan.loadgen)
        .args(["run", "--target", &url])
        .args([
            "--scenario",
            "task-leak,timer-per-request,churn,bounded-cache",
        ])
        .args(["--rate", &plan.rate.to_string()])
        .args(["--duration", &format!("{}s", duration.as_secs().max(5))])
        .args(["--warmup", "1s"])
        .env_remove("LEAKLAB_TARGET")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting loadgen")?;
    subject.load = Some(load);
    Ok(subject)
}

/// How a bounded GET ended.
enum Got {
    Answer { status: u16, took: Duration },
    TimedOut,
    Refused(String),
}

/// `GET path` over a fresh connection; a whole answer within `timeout` or not.
fn get(addr: SocketAddr, path: &str, timeout: Duration) -> Got {
    let started = Instant::now();
    let mut stream = match TcpStream::connect_timeout(&addr, timeout) {
        Ok(s) => s,
        Err(e) => return Got::Refused(e.to_string()),
    };
    let request = format!("GET {path} HTTP/1.1\r\nHost: soak\r\nConnection: close\r\n\r\n");
    if let Err(e) = stream.write_all(request.as_bytes()) {
        return Got::Refused(e.to_string());
    }
    let mut answer = Vec::new();
    let mut buf = [0u8; 64 << 10];
    loop {
        let left = timeout.saturating_sub(started.elapsed());
        if left.is_zero() {
            return Got::TimedOut;
        }
        let _ = stream.set_read_timeout(Some(left));
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Got::TimedOut
            }
            Err(e) => return Got::Refused(e.to_string()),
        }
    }
    let status = std::str::from_utf8(answer.get(9..12).unwrap_or_default())
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Got::Answer {
        status,
        took: started.elapsed(),
    }
}

/// Waits up to `within` for `child` to exit; its exit code, `Some(None)` for
/// a signal, `None` when it is still running.
fn wait_exit(child: &mut Child, within: Duration) -> Option<Option<i32>> {
    let deadline = Instant::now() + within;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status.code());
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One round: start the services and their load, ask each for task evidence
/// `requests` times (one service per thread), then check and stop them.
pub fn round(plan: &Plan, mode: Mode) -> Result<RoundReport> {
    let started = Instant::now();
    let path = match mode {
        Mode::Await => "/debug/tasks?mode=await&format=json&limit=500",
        _ => "/debug/tasks?format=json",
    };
    // The load runs for the longest the round can take, and is killed after.
    let longest = plan.timeout * plan.requests as u32 + Duration::from_secs(30);
    let mut subjects = (0..plan.services)
        .map(|_| start_subject(plan, longest))
        .collect::<Result<Vec<_>>>()?;
    // Let the load build up parked tasks before the first question.
    std::thread::sleep(Duration::from_secs(3));
    let mut report = RoundReport {
        mode: format!("{mode:?}").to_lowercase(),
        services: plan.services,
        ..RoundReport::default()
    };
    let outcomes: Vec<Vec<Got>> = std::thread::scope(|scope| {
        let handles: Vec<_> = subjects
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let addr = s.addr;
                scope.spawn(move || {
                    (0..plan.requests)
                        .map(|n| {
                            let got = get(addr, path, plan.timeout);
                            let what = match &got {
                                Got::Answer { status, took } => {
                                    format!("{status} in {:.2} s", took.as_secs_f64())
                                }
                                Got::TimedOut => format!("no answer within {:?}", plan.timeout),
                                Got::Refused(e) => format!("failed: {e}"),
                            };
                            eprintln!(
                                "  service {} request {}/{}: {what}",
                                i + 1,
                                n + 1,
                                plan.requests
                            );
                            std::thread::sleep(Duration::from_millis(200));
                            got
                        })
                        .collect()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect()
    });
    for got in outcomes.iter().flatten() {
        report.requests += 1;
        match got {
            Got::Answer { status: 200, took } => {
                report.answered += 1;
                report.slowest_answer_s = report.slowest_answer_s.max(took.as_secs_f64());
            }
            Got::Answer { .. } | Got::Refused(_) => report.failed += 1,
            Got::TimedOut => report.timed_out += 1,
        }
    }
    for s in &mut subjects {
        if let Some(load) = s.load.as_mut() {
            let _ = load.kill();
            let _ = load.wait();
        }
        if !matches!(
            get(s.addr, "/healthz", Duration::from_secs(2)),
            Got::Answer { status: 200, .. }
        ) {
            report.healthz_lost += 1;
        }
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(s.service.id() as i32, libc::SIGTERM) };
    }
    for s in &mut subjects {
        match wait_exit(&mut s.service, Duration::from_secs(15)) {
            Some(Some(0)) => report.stopped_gracefully += 1,
            Some(_) => report.stopped_forced += 1,
            None => report.did_not_stop += 1,
        }
    }
    drop(subjects);
    report.elapsed_s = started.elapsed().as_secs_f64();
    Ok(report)
}

/// The table a person reads.
pub fn print(reports: &[RoundReport], to: &mut dyn Write) -> std::io::Result<()> {
    writeln!(
        to,
        "{:<7} {:>8} {:>8} {:>8} {:>9} {:>6} {:>9} {:>12} {:>9} {:>7} {:>8}",
        "mode",
        "services",
        "requests",
        "answered",
        "timed out",
        "failed",
        "slowest s",
        "healthz lost",
        "graceful",
        "forced",
        "no stop"
    )?;
    for r in reports {
        writeln!(
            to,
            "{:<7} {:>8} {:>8} {:>8} {:>9} {:>6} {:>9.2} {:>12} {:>9} {:>7} {:>8}",
            r.mode,
            r.services,
            r.requests,
            r.answered,
            r.timed_out,
            r.failed,
            r.slowest_answer_s,
            r.healthz_lost,
            r.stopped_gracefully,
            r.stopped_forced,
            r.did_not_stop
        )?;
    }
    Ok(())
}

/// The rounds a mode asks for.
pub fn rounds(mode: Mode) -> &'static [Mode] {
    match mode {
        Mode::Both => &[Mode::Census, Mode::Await],
        Mode::Census => &[Mode::Census],
        Mode::Await => &[Mode::Await],
    }
}

/// A service binary given on the command line, checked to exist.
pub fn given_binary(path: &Path) -> Result<PathBuf> {
    anyhow::ensure!(path.is_file(), "{} is not a file", path.display());
    Ok(path.to_path_buf())
}
