//! Test helpers: the service binary (built with `cargo build -p
//! leaklab-service` when missing), a child service that is killed on drop,
//! and running the `loadgen` binary with `--json`.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

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

/// A running service, killed when dropped.
pub struct Service {
    pub url: String,
    pub child: Child,
}

impl Service {
    pub fn start(args: &[&str]) -> Service {
        let mut child = Command::new(service_bin())
            .args(["--addr", "127.0.0.1:0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("service starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let first = lines.next().expect("a first line").expect("utf-8");
        // Keep draining so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        let url = first
            .strip_prefix("listening on ")
            .expect("listening line")
            .trim()
            .to_string();
        Service { url, child }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `loadgen ARGS`; returns the exit code, stdout and stderr.
pub fn loadgen(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(args)
        .env("LEAKLAB_SERVICE_BIN", service_bin())
        .env_remove("LEAKLAB_TARGET")
        .env_remove("LEAKLAB_ADMIN_TOKEN")
        .output()
        .expect("loadgen runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
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
