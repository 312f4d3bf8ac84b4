//! Test helpers: the service binary (built with `cargo build -p
//! leaklab-service` when missing), a child service that is killed on drop
//! (started by loadgen's own spawn helper), and running the `loadgen` binary
//! with `--json`.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// `target/<profile>/leaklab-service`, next to the loadgen binary under test.
pub fn service_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let loadgen = PathBuf::from(env!("CARGO_BIN_EXE_loadgen"));
        let dir = loadgen
            .parent()
            .expect("loadgen has a directory")
            .to_path_buf();
        let bin = dir.join("leaklab-service");
        if !bin.is_file() {
            let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
            let release = dir.ends_with("release");
            let mut cmd = Command::new(env!("CARGO"));
            cmd.current_dir(root)
                .args(["build", "-p", "leaklab-service"]);
            if release {
                cmd.arg("--release");
            }
            let status = cmd.status().expect("cargo runs");
            assert!(status.success(), "cargo build -p leaklab-service failed");
        }
        assert!(bin.is_file(), "{} missing", bin.display());
        bin
    })
    .clone()
}

/// A running service, killed when dropped: loadgen's own spawn helper, on
/// the binary found above.
pub struct Service(loadgen::target::spawn::Service);

impl Service {
    pub fn start(args: &[&str]) -> Service {
        let launch = args
            .iter()
            .fold(loadgen::target::spawn::Launch::new(), |l, a| l.arg(*a))
            .binary(service_bin());
        Service(launch.start_blocking().expect("service starts"))
    }

    pub fn url(&self) -> &str {
        &self.0.url
    }

    pub fn pid(&self) -> u32 {
        self.0.pid
    }

    /// Kills it now (a target that dies mid-run).
    pub fn kill(&self) {
        self.0.kill();
    }
}

/// How long one `loadgen` run in a test may take; the longest (the hunt) takes
/// about two minutes in a debug build.
const LOADGEN_LIMIT: Duration = Duration::from_secs(8 * 60);

/// Runs `loadgen ARGS`; returns the exit code, stdout and stderr. A run past
/// [`LOADGEN_LIMIT`] is killed and the test panics naming it.
pub fn loadgen(args: &[&str]) -> (i32, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(args)
        .env("LEAKLAB_SERVICE_BIN", service_bin())
        .env_remove("LEAKLAB_TARGET")
        .env_remove("LEAKLAB_ADMIN_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("loadgen runs");
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let stdout = drain(Box::new(child.stdout.take().expect("piped")));
    let stderr = drain(Box::new(child.stderr.take().expect("piped")));
    let deadline = Instant::now() + LOADGEN_LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for loadgen") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "loadgen {} ran past {LOADGEN_LIMIT:?}; killed. stderr:\n{}",
                args.join(" "),
                stderr.join().unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    (
        status.code().unwrap_or(-1),
        stdout.join().unwrap_or_default(),
        stderr.join().unwrap_or_default(),
    )
}

/// A fresh scratch directory under the target dir.
pub fn scratch(name: &str) -> PathBuf {
    let dir =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}
