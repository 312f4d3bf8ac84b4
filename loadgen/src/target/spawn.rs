//! Starting a `leaklab-service` child on a free loopback port: the one place
//! loadgen does it (`run --spawn`, `scenarios --spawn`, `hunt`, `canary
//! --spawn`, `oom`, `bench`, and the integration tests).
//!
//! [`Launch`] names the leaks, fixes, admin token and extra flags; the child
//! never inherits `LEAKLAB_LEAKS`, `LEAKLAB_FIXES` or `LEAKLAB_ADMIN_TOKEN`
//! from loadgen's environment, so what runs is what the launch says. Its
//! `listening on http://ADDR` line gives the URL.
//!
//! The binary is `LEAKLAB_SERVICE_BIN`, else looked for next to loadgen's own
//! executable, then in `target/{release,debug}` of the workspace; if none is
//! found it is built with `cargo build -p leaklab-service`. The child is
//! killed and reaped when the [`Service`] is dropped, so no run leaves a stray
//! process behind.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use leaklab_model::Catalogue;

/// The service's environment knobs a child must not inherit.
const INHERITED_KNOBS: [&str; 3] = ["LEAKLAB_LEAKS", "LEAKLAB_FIXES", "LEAKLAB_ADMIN_TOKEN"];
/// How long the child may take to print its address.
const ADDRESS_WITHIN: Duration = Duration::from_secs(20);

/// Prepares the child's command before it executes (e.g. joins a cgroup).
pub type Prepare = Box<dyn FnOnce(&mut Command) -> std::io::Result<()> + Send>;

/// A running child service.
pub struct Service {
    pub url: String,
    pub pid: u32,
    /// Shared with [`Service::exit_probe`]'s closures (the sampler polls it);
    /// a std mutex, held only for a `try_wait`.
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

/// How to start one child: its flags, its log, and a hook run before it executes.
#[derive(Default)]
pub struct Launch {
    args: Vec<String>,
    log: Option<PathBuf>,
    binary: Option<PathBuf>,
    prepare: Option<Prepare>,
}

impl std::fmt::Debug for Launch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Launch")
            .field("args", &self.args)
            .field("log", &self.log)
            .finish()
    }
}

impl Launch {
    /// A child with no leak on and no token.
    pub fn new() -> Launch {
        Launch::default()
    }

    /// Turns leak `id` on (`--leak ID`).
    pub fn leak(self, id: impl Into<String>) -> Launch {
        self.arg("--leak").arg(id)
    }

    /// Turns each of `ids` on.
    pub fn leaks<S: Into<String>>(self, ids: impl IntoIterator<Item = S>) -> Launch {
        ids.into_iter().fold(self, Launch::leak)
    }

    /// Turns leak `id` off explicitly (`--fix ID`): a "bad release" binary
    /// turns its leaks on by default.
    pub fn fix(self, id: impl Into<String>) -> Launch {
        self.arg("--fix").arg(id)
    }

    /// `--admin-token` when `token` is given.
    pub fn admin_token(self, token: Option<&str>) -> Launch {
        match token {
            Some(t) => self.arg("--admin-token").arg(t),
            None => self,
        }
    }

    /// Any other flag or value, in order.
    pub fn arg(mut self, arg: impl Into<String>) -> Launch {
        self.args.push(arg.into());
        self
    }

    /// The child's stderr goes to `path` (else nowhere).
    pub fn log(mut self, path: impl Into<PathBuf>) -> Launch {
        self.log = Some(path.into());
        self
    }

    /// This binary instead of the one [`service_binary`] finds.
    pub fn binary(mut self, path: impl Into<PathBuf>) -> Launch {
        self.binary = Some(path.into());
        self
    }

    /// `prepare` runs on the command before it executes.
    pub fn prepare(
        mut self,
        prepare: impl FnOnce(&mut Command) -> std::io::Result<()> + Send + 'static,
    ) -> Launch {
        self.prepare = Some(Box::new(prepare));
        self
    }

    /// Starts the child and waits for its address (blocking).
    pub fn start_blocking(self) -> Result<Service> {
        let bin = match self.binary {
            Some(b) => b,
            None => service_binary()?,
        };
        let stderr = match &self.log {
            Some(p) => Stdio::from(
                std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?,
            ),
            None => Stdio::null(),
        };
        let mut command = Command::new(&bin);
        command
            .arg("--addr")
            .arg("127.0.0.1:0")
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr);
        for knob in INHERITED_KNOBS {
            command.env_remove(knob);
        }
        if let Some(prepare) = self.prepare {
            prepare(&mut command).with_context(|| format!("preparing {}", bin.display()))?;
        }
        let child = command
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        Service::from_child(child, &bin)
    }

    /// [`Launch::start_blocking`] on a blocking thread.
    pub async fn start(self) -> Result<Service> {
        tokio::task::spawn_blocking(move || self.start_blocking())
            .await
            .context("the thread starting the service")?
    }
}

/// The workspace's target directory, judged from an executable's path
/// (`<target>/<profile>/loadgen` or `<target>/<profile>/deps/...`).
pub fn target_dir_of(exe: &Path) -> Option<PathBuf> {
    exe.ancestors()
        .find(|p| p.file_name().is_some_and(|n| n == "target"))
        .map(Path::to_path_buf)
}

/// Finds the `leaklab-service` binary: `LEAKLAB_SERVICE_BIN` when set;
/// inside the workspace, the build of loadgen's own profile, brought up to
/// date first (`cargo build -p leaklab-service`, a no-op when it is fresh,
/// once per process), so a changed service is never run stale; else (an
/// installed loadgen) the binary beside loadgen's.
pub fn service_binary() -> Result<PathBuf> {
    if let Ok(p) = std::env::var("LEAKLAB_SERVICE_BIN") {
        return Ok(PathBuf::from(p));
    }
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    if let Some(built) = BUILT.get() {
        return Ok(built.clone());
    }
    let name = format!("leaklab-service{}", std::env::consts::EXE_SUFFIX);
    let exe = std::env::current_exe().context("locating loadgen's executable")?;
    let target = target_dir_of(&exe);
    let workspace = target
        .as_ref()
        .and_then(|t| t.parent())
        .filter(|root| root.join("Cargo.toml").is_file());
    if let (Some(target), Some(root)) = (&target, workspace) {
        let release = exe.components().any(|c| c.as_os_str() == "release");
        match build_service(root, release) {
            Ok(()) => {
                let profile = if release { "release" } else { "debug" };
                let built = target.join(profile).join(&name);
                if !built.is_file() {
                    bail!("{} still missing after the build", built.display());
                }
                return Ok(BUILT.get_or_init(|| built).clone());
            }
            // No cargo here (a copied target directory): what was built before.
            Err(e) => eprintln!("loadgen: {e:#}; using the service binary found on disk"),
        }
    }
    let mut candidates = Vec::new();
    if let Some(dir) = exe.parent() {
        candidates.push(dir.join(&name));
        if dir.file_name().is_some_and(|n| n == "deps") {
            if let Some(up) = dir.parent() {
                candidates.push(up.join(&name));
            }
        }
    }
    if let Some(t) = &target {
        candidates.push(t.join("release").join(&name));
        candidates.push(t.join("debug").join(&name));
    }
    candidates
        .into_iter()
        .find(|p| p.is_file())
        .ok_or_else(|| anyhow!("no leaklab-service binary beside loadgen: set LEAKLAB_SERVICE_BIN"))
}

/// `cargo build -p leaklab-service` in the workspace at `root`, with
/// loadgen's profile; cargo's own output shows a real build's progress.
fn build_service(root: &Path, release: bool) -> Result<()> {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.args(["build", "-p", "leaklab-service"])
        .current_dir(root);
    if release {
        cmd.arg("--release");
    }
    let status = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .context("running cargo build -p leaklab-service")?;
    if !status.success() {
        bail!("cargo build -p leaklab-service failed ({status})");
    }
    Ok(())
}

/// The catalogue of the service binary (`leaklab-service scenarios --json`),
/// to check scenario and leak ids before starting it.
pub fn catalogue_blocking() -> Result<Catalogue> {
    let bin = service_binary()?;
    let out = Command::new(&bin)
        .args(["scenarios", "--json"])
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {} scenarios --json", bin.display()))?;
    if !out.status.success() {
        bail!("{} scenarios --json failed ({})", bin.display(), out.status);
    }
    serde_json::from_slice(&out.stdout)
        .with_context(|| format!("{} scenarios --json", bin.display()))
}

/// [`catalogue_blocking`] on a blocking thread.
pub async fn catalogue() -> Result<Catalogue> {
    tokio::task::spawn_blocking(catalogue_blocking)
        .await
        .context("the thread reading the catalogue")?
}

impl Service {
    /// Reads the child's `listening on URL` line; the child is killed if it
    /// prints something else or nothing within [`ADDRESS_WITHIN`].
    fn from_child(mut child: Child, bin: &Path) -> Result<Service> {
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
        let mut service = Service {
            url: String::new(),
            pid,
            child: Arc::new(Mutex::new(child)),
        };
        let first = rx
            .recv_timeout(ADDRESS_WITHIN)
            .map_err(|_| anyhow!("{} printed no address within 20 s", bin.display()))?;
        let line = match first {
            Some(Ok(line)) => line,
            _ => bail!(
                "{} exited before printing its address ({})",
                bin.display(),
                service.exit_status().unwrap_or_default()
            ),
        };
        service.url = line
            .strip_prefix("listening on ")
            .map(str::trim)
            .ok_or_else(|| anyhow!("unexpected first line from the service: {line:?}"))?
            .to_string();
        Ok(service)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Child> {
        self.child.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `Some(description)` once the child has exited.
    pub fn exit_status(&self) -> Option<String> {
        self.raw_exit_status().map(describe_exit)
    }

    /// The raw exit status once the child has exited (for OOM evidence).
    pub fn raw_exit_status(&self) -> Option<std::process::ExitStatus> {
        self.lock().try_wait().ok().flatten()
    }

    /// Kills the child now and reaps it (tests of target death).
    pub fn kill(&self) {
        let mut child = self.lock();
        let _ = child.kill();
        let _ = child.wait();
    }

    /// A cloneable probe for the sampler's death detection.
    pub fn exit_probe(&self) -> ExitProbe {
        let child = self.child.clone();
        Arc::new(move || {
            let mut child = child.lock().unwrap_or_else(|p| p.into_inner());
            child.try_wait().ok().flatten().map(describe_exit)
        })
    }
}

/// Tells whether a started child has exited, and how.
pub type ExitProbe = Arc<dyn Fn() -> Option<String> + Send + Sync>;

/// How a child ended, in words.
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
        let mut child = self.lock();
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

    #[test]
    fn a_launch_lists_its_flags_in_order() {
        let l = Launch::new()
            .leaks(["a", "b"])
            .fix("c")
            .admin_token(Some("t"))
            .admin_token(None);
        assert_eq!(
            l.args,
            [
                "--leak",
                "a",
                "--leak",
                "b",
                "--fix",
                "c",
                "--admin-token",
                "t"
            ]
        );
    }
}
