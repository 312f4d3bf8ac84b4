//! The service under a memory limit, however it was started: a
//! `leaklab-service` child confined to a memory cgroup of loadgen's own
//! ([`CgroupTarget`]), or docker-compose's `service` with its `mem_limit`
//! ([`DockerTarget`]); its usage, its end, and the evidence of an OOM kill.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use leaklab_model::oom::OomEvidence;
use leaklab_model::run::CgroupReading;

use super::OomOpts;
use crate::errors::UsageError;
use crate::sampling::{cgroup_reading, CgroupProbe};
use crate::target::spawn::{self, ExitProbe, Launch, Service};

/// The service under a limit, however it was started.
pub(super) enum OomTarget {
    Cgroup(CgroupTarget),
    Docker(DockerTarget),
}

pub(super) struct CgroupTarget {
    // Field order matters: the service is killed and reaped before the cgroup
    // is removed (a cgroup with a process in it cannot be).
    service: Service,
    cgroup: Arc<leaklab_probe::cgroup::MemoryCgroup>,
    oom_kills_before: Option<u64>,
}

impl CgroupTarget {
    pub(super) async fn start(opts: &OomOpts) -> Result<CgroupTarget> {
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
        let service = args
            .into_iter()
            .fold(Launch::new(), |l, a| l.arg(a))
            .log(log)
            .prepare(confine)
            .start()
            .await?;
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
    pub(super) fn url(&self) -> String {
        match self {
            OomTarget::Cgroup(c) => c.service.url.clone(),
            OomTarget::Docker(d) => d.url.clone(),
        }
    }

    pub(super) fn pid(&self) -> u32 {
        match self {
            OomTarget::Cgroup(c) => c.service.pid,
            OomTarget::Docker(d) => d.pid,
        }
    }

    pub(super) fn mode(&self) -> &'static str {
        match self {
            OomTarget::Cgroup(_) => "cgroup",
            OomTarget::Docker(_) => "docker",
        }
    }

    /// Usage now: the cgroup's own file in cgroup mode, the container's
    /// cgroup through its pid in compose mode.
    pub(super) fn usage(&self) -> Option<CgroupReading> {
        self.cgroup_probe()()
    }

    /// [`OomTarget::usage`] as the sampler reads it.
    pub(super) fn cgroup_probe(&self) -> CgroupProbe {
        match self {
            OomTarget::Cgroup(c) => {
                let cgroup = c.cgroup.clone();
                Arc::new(move || cgroup.memory().map(cgroup_reading))
            }
            OomTarget::Docker(d) => {
                let pid = d.pid;
                Arc::new(move || {
                    leaklab_probe::cgroup_memory(leaklab_probe::Pid::Of(pid)).map(cgroup_reading)
                })
            }
        }
    }

    /// The child's exit, in cgroup mode (compose mode watches the pid).
    pub(super) fn exit_probe(&self) -> Option<ExitProbe> {
        match self {
            OomTarget::Cgroup(c) => Some(c.service.exit_probe()),
            OomTarget::Docker(_) => None,
        }
    }

    pub(super) fn cgroup_version(&self) -> Option<String> {
        match self {
            OomTarget::Cgroup(c) => Some(c.cgroup.version().to_string()),
            OomTarget::Docker(d) => leaklab_probe::cgroup_memory(leaklab_probe::Pid::Of(d.pid))
                .map(|m| m.version.to_string()),
        }
    }

    /// Has the service ended? Cheap enough to poll every 100 ms.
    pub(super) fn ended(&self) -> bool {
        match self {
            OomTarget::Cgroup(c) => c.service.exit_status().is_some(),
            OomTarget::Docker(d) => !leaklab_probe::is_alive(d.pid),
        }
    }

    /// How it ended, once it has.
    pub(super) fn evidence(&self) -> OomEvidence {
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

    pub(super) fn stop(self, keep: bool) -> Result<()> {
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
pub(super) struct DockerTarget {
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

    pub(super) async fn start(opts: &OomOpts) -> Result<DockerTarget> {
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
