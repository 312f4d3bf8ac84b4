//! A container as the target's process: `--container NAME|ID` asks the
//! Docker Engine (`docker inspect`) for the container's main process as the
//! host sees it, so loadgen reads that pid's `/proc` (RSS, fds, maps) and its
//! memory cgroup (the container's: usage, limit, OOM kills) exactly as for
//! `--pid`. The load still goes only to `--target`.

use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::errors::UsageError;

/// The host pid of running container `name` (a name or an id).
pub fn pid_of(name: &str) -> Result<u32> {
    if name.is_empty() || name.starts_with('-') {
        bail!(UsageError(format!(
            "--container {name:?}: not a container name or id"
        )));
    }
    let out = Command::new("docker")
        .args([
            "inspect",
            "--type",
            "container",
            "--format",
            "{{.State.Pid}} {{.State.Running}}",
            name,
        ])
        .output()
        .context("running `docker inspect` (is Docker installed?)")?;
    if !out.status.success() {
        bail!(UsageError(format!(
            "--container {name}: docker inspect says: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    parse_inspect(name, &String::from_utf8_lossy(&out.stdout))
}

/// Reads `PID RUNNING` as `docker inspect --format` prints it.
fn parse_inspect(name: &str, text: &str) -> Result<u32> {
    let mut words = text.split_whitespace();
    let pid: u32 = words
        .next()
        .and_then(|w| w.parse().ok())
        .with_context(|| format!("docker inspect printed {text:?} for {name}"))?;
    if words.next() != Some("true") || pid == 0 {
        bail!(UsageError(format!(
            "--container {name}: the container is not running"
        )));
    }
    Ok(pid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_running_container_gives_its_pid_and_a_stopped_one_a_usage_error() {
        assert_eq!(parse_inspect("svc", "4242 true\n").unwrap(), 4242);
        let err = parse_inspect("svc", "0 false\n").unwrap_err();
        assert!(err.downcast_ref::<UsageError>().is_some(), "{err}");
        assert!(parse_inspect("svc", "garbage").is_err());
        assert!(pid_of("-rf")
            .unwrap_err()
            .to_string()
            .contains("not a container"));
    }
}
