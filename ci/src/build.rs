//! Building a release: `leaklab-service` with a set of leak features, cached
//! by feature set and source fingerprint under `target/ci-releases/`.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// The workspace root (where the root Cargo.toml is).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("ci/ is inside the workspace")
        .to_path_buf()
}

/// Where cargo puts what it builds: $CARGO_TARGET_DIR (from `root` when
/// relative), else `<root>/target`.
pub fn target_dir(root: &Path, env: Option<&str>) -> PathBuf {
    match env.filter(|s| !s.is_empty()) {
        Some(dir) => root.join(dir),
        None => root.join("target"),
    }
}

/// This process's target dir: the one the `cargo build`s below write to.
pub fn cargo_target_dir() -> PathBuf {
    target_dir(
        &workspace_root(),
        std::env::var("CARGO_TARGET_DIR").ok().as_deref(),
    )
}

fn hash_tree(dir: &Path, hasher: &mut DefaultHasher) -> Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .collect::<std::io::Result<_>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        if path.is_dir() {
            hash_tree(&path, hasher)?;
        } else {
            path.strip_prefix(workspace_root())
                .unwrap_or(&path)
                .hash(hasher);
            std::fs::read(&path)?.hash(hasher);
        }
    }
    Ok(())
}

/// A fingerprint of what a service build is made of: its sources, the crates it
/// uses from this workspace, the lock file and the cargo config.
pub fn source_fingerprint() -> Result<String> {
    let root = workspace_root();
    let mut hasher = DefaultHasher::new();
    for dir in ["service/src", "probe/src"] {
        hash_tree(&root.join(dir), &mut hasher)?;
    }
    for file in [
        "service/Cargo.toml",
        "probe/Cargo.toml",
        "Cargo.lock",
        "Cargo.toml",
        ".cargo/config.toml",
    ] {
        std::fs::read(root.join(file))
            .unwrap_or_default()
            .hash(&mut hasher);
    }
    Ok(format!("{:016x}", hasher.finish()))
}

/// Where a release with `features` is cached.
pub fn cache_dir(features: &[String], fingerprint: &str) -> PathBuf {
    let mut sorted = features.to_vec();
    sorted.sort();
    let name = if sorted.is_empty() {
        "no-leaks".to_owned()
    } else {
        sorted.join("+")
    };
    cargo_target_dir()
        .join("ci-releases")
        .join(fingerprint)
        .join(name)
}

/// The service binary of a release: cached, or built now. Returns the path and
/// whether a build ran.
pub fn service_binary(features: &[String], fingerprint: &str) -> Result<(PathBuf, bool)> {
    let dir = cache_dir(features, fingerprint);
    let binary = dir.join("leaklab-service");
    if binary.exists() {
        return Ok((binary, false));
    }
    let qualified: Vec<String> = features
        .iter()
        .map(|f| format!("leaklab-service/{f}"))
        .collect();
    let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cargo.current_dir(workspace_root()).args([
        "build",
        "--release",
        "--quiet",
        "-p",
        "leaklab-service",
    ]);
    if !qualified.is_empty() {
        cargo.args(["--features", &qualified.join(",")]);
    }
    let status = cargo.status().context("running cargo build")?;
    if !status.success() {
        bail!("cargo build of leaklab-service with features {features:?} failed ({status})");
    }
    std::fs::create_dir_all(&dir)?;
    std::fs::copy(cargo_target_dir().join("release/leaklab-service"), &binary)
        .with_context(|| format!("copying the build to {}", binary.display()))?;
    Ok((binary, true))
}

/// Puts `target/release/leaklab-service` back to the workspace's own build
/// (no leak features) when dropped, if a release was built meanwhile.
///
/// [`service_binary`] builds each release in the workspace's target dir (so
/// the dependencies are compiled once) and leaves that release's binary in
/// `target/release`. Everything else that starts `target/release/leaklab-service`
/// (`loadgen run --spawn`, `loadgen hunt`, `cargo ci prove`) must not find a
/// bad release there afterwards, even when the bisect stopped on an error.
/// `cargo ci guards --features` does the same to `target/debug` (the test
/// build of a bad release), which loadgen's and the service's own tests start.
#[derive(Debug, Default)]
pub struct RestoreDefaultBuild {
    pub armed: bool,
    /// `target/debug` instead of `target/release`.
    pub debug: bool,
}

impl Drop for RestoreDefaultBuild {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let profile = if self.debug { "debug" } else { "release" };
        eprintln!("cargo ci: rebuilding target/{profile}/leaklab-service without leak features");
        let mut args = vec!["build", "--quiet", "-p", "leaklab-service"];
        if !self.debug {
            args.push("--release");
        }
        let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .current_dir(workspace_root())
            .args(&args)
            .status();
        if !status.is_ok_and(|s| s.success()) {
            eprintln!(
                "cargo ci: WARNING: target/{profile}/leaklab-service may still be a bad release; run `cargo {}`",
                args.join(" ")
            );
        }
    }
}

/// The loadgen binary, built in release once per run.
pub fn loadgen_binary() -> Result<PathBuf> {
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(workspace_root())
        .args(["build", "--release", "--quiet", "-p", "loadgen"])
        .status()
        .context("running cargo build -p loadgen")?;
    if !status.success() {
        bail!("cargo build -p loadgen failed ({status})");
    }
    Ok(cargo_target_dir().join("release/loadgen"))
}

/// The catalogue, from a service the release loadgen starts for the purpose
/// (`loadgen scenarios --spawn --json`).
pub fn loadgen_catalogue(loadgen: &Path) -> Result<leaklab_model::Catalogue> {
    let out = crate::process::output_within(
        Command::new(loadgen).args(["scenarios", "--spawn", "--json"]),
        std::time::Duration::from_secs(120),
        "loadgen scenarios",
    )?;
    serde_json::from_slice(&out.stdout).context("reading loadgen scenarios --json")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_feature_set_has_one_cache_directory_whatever_its_order() {
        let a = cache_dir(&["leak-b".into(), "leak-a".into()], "f");
        let b = cache_dir(&["leak-a".into(), "leak-b".into()], "f");
        assert_eq!(a, b);
        assert!(a.ends_with("f/leak-a+leak-b"));
        assert!(cache_dir(&[], "f").ends_with("f/no-leaks"));
    }
}
