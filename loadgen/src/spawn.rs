//! Starts a `leaklab-service` child process on a free loopback port and
//! returns its URL and pid (for `run --spawn`, benches, and later `hunt` and
//! `oom`).
//!
//! The binary is looked for next to loadgen's own executable, then in
//! `target/{release,debug}` of the workspace; if none is found it is built
//! with `cargo build -p leaklab-service`. The child is killed and reaped when
//! the [`Service`] is dropped, so no run leaves a stray process behind.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};

/// A running child service.
pub struct Service {
    pub url: String,
    pub pid: u32,
    child: Arc<Mutex<Child>>,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("url", &self.url)
            .field("pid", &self.pid)
            .finish()
    }
}

/// The workspace's target directory, judged from an executable's path
/// (`<target>/<profile>/loadgen` or `<target>/<profile>/deps/...`).
pub fn target_dir_of(exe: &Path) -> Option<PathBuf> {
    exe.ancestors()
        .find(|p| p.file_name().is_some_and(|n| n == "target"))
        .map(Path::to_path_buf)
}

/// Finds the `leaklab-service` binary, building it when missing.
pub fn service_binary() -> Result<PathBuf> {
    let name = format!("leaklab-service{}", std::env::consts::EXE_SUFFIX);
    if let Ok(p) = std::env::var("LEAKLAB_SERVICE_BIN") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe().context("locating loadgen's executable")?;
    let mut candidates = Vec::new();
    if let Some(dir) = exe.parent() {
        candidates.push(dir.join(&name));
        if dir.file_name().is_some_and(|n| n == "deps") {
            if let Some(up) = dir.parent() {
                candidates.push(up.join(&name));
            }
        }
    }
    let target = target_dir_of(&exe);
    if let Some(t) = &target {
        candidates.push(t.join("release").join(&name));
        candidates.push(t.join("debug").join(&name));
    }
    if let Some(found) = candidates.iter().find(|p| p.is_file()) {
        return Ok(found.clone());
    }
    // Not built yet: build it with the same profile as loadgen.
    let release = exe.components().any(|c| c.as_os_str() == "release");
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.args(["build", "-p", "leaklab-service"]);
    if release {
        cmd.arg("--release");
    }
    if let Some(root) = target.as_ref().and_then(|t| t.parent()) {
        cmd.current_dir(root);
    }
    let status = cmd
        .status()
        .context("running cargo build -p leaklab-service")?;
    if !status.success() {
        bail!("cargo build -p leaklab-service failed ({status})");
    }
    let profile = if release { "release" } else { "debug" };
    let built = target
        .map(|t| t.join(profile).join(&name))
        .ok_or_else(|| anyhow!("no target directory"))?;
    built
        .is_file()
        .then_some(built.clone())
        .ok_or_else(|| anyhow!("{} still missing after the build", built.display()))
}

/// The catalogue of the service binary (`leaklab-service scenarios --json`),
/// to check scenario and leak ids before starting it.
pub fn catalogue() -> Result<Vec<crate::catalogue::Scenario>> {
    let bin = service_binary()?;
    let out = Command::new(&bin)
        .args(["scenarios", "--json"])
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {} scenarios --json", bin.display()))?;
    if !out.status.success() {
        bail!("{} scenarios --json failed ({})", bin.display(), out.status);
    }
    crate::catalogue::parse(&String::from_utf8_lossy(&out.stdout))
}

/// Starts the service with `args` (after `--addr 127.0.0.1:0`). Its stderr
/// goes to `log` when given, else nowhere.
pub fn start(args: &[String], log: Option<&Path>) -> Result<Service> {
    start_with(args, log, |_| Ok(()))
}

/// [`start`], with `prepare` applied to the command first (e.g. to confine the
/// child to a memory cgroup before it executes).
pub fn start_with(
    args: &[String],
    log: Option<&Path>,
    prepare: impl FnOnce(&mut Command) -> std::io::Result<()>,
) -> Result<Service> {
    let bin = service_binary()?;
    let stderr = match log {
        Some(p) => Stdio::from(
            std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?,
        ),
        None => Stdio::null(),
    };
    let mut command = Command::new(&bin);
    command
        .arg("--addr")
        .arg("127.0.0.1:0")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr);
    prepare(&mut command).with_context(|| format!("preparing {}", bin.display()))?;
    let mut child = command
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let pid = child.id();
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow!("no stdout from the child"))?;
    let (tx, rx) = std::sync::mpsc::channel();
    // Reads the first line, then drains stdout until the child exits (EOF),
    // so a chatty child never blocks on a full pipe.
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        let first = lines.next();
        let _ = tx.send(first);
        for _ in lines {}
    });
    let child = Arc::new(Mutex::new(child));
    let mut service_guard = Service {
        url: String::new(),
        pid,
        child,
    };
    let first = rx
        .recv_timeout(Duration::from_secs(20))
        .map_err(|_| anyhow!("{} printed no address within 20 s", bin.display()))?;
    let line = match first {
        Some(Ok(line)) => line,
        _ => bail!(
            "{} exited before printing its address ({})",
            bin.display(),
            service_guard.exit_status().unwrap_or_default()
        ),
    };
    let url = line
        .strip_prefix("listening on ")
        .map(str::trim)
        .ok_or_else(|| anyhow!("unexpected first line from the service: {line:?}"))?
        .to_string();
    service_guard.url = url;
    Ok(service_guard)
}

impl Service {
    /// `Some(description)` once the child has exited.
    pub fn exit_status(&self) -> Option<String> {
        let mut child = self.child.lock().unwrap_or_else(|p| p.into_inner());
        match child.try_wait() {
            Ok(Some(status)) => Some(describe_exit(status)),
            _ => None,
        }
    }

    /// The raw exit status once the child has exited (for OOM evidence).
    pub fn raw_exit_status(&self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.lock().unwrap_or_else(|p| p.into_inner());
        child.try_wait().ok().flatten()
    }

    /// A cloneable probe for the sampler's death detection.
    pub fn exit_probe(&self) -> crate::sampler::ExitProbe {
        let child = self.child.clone();
        Arc::new(move || {
            let mut child = child.lock().unwrap_or_else(|p| p.into_inner());
            child.try_wait().ok().flatten().map(describe_exit)
        })
    }
}

pub fn describe_exit(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match status.signal() {
        Some(9) => "killed by SIGKILL (the OOM killer sends this)".into(),
        Some(sig) => format!("killed by signal {sig}"),
        None => format!("exited with {status}"),
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let mut child = self.child.lock().unwrap_or_else(|p| p.into_inner());
        if let Ok(None) = child.try_wait() {
            let _ = child.kill();
        }
        let _ = child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_target_dir_is_found_from_an_executable_path() {
        let p = Path::new("/w/target/debug/deps/loadgen-123");
        assert_eq!(target_dir_of(p), Some(PathBuf::from("/w/target")));
        assert_eq!(target_dir_of(Path::new("/usr/bin/loadgen")), None);
    }
}
