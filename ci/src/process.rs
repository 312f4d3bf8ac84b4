//! Child processes with a deadline: a task never waits forever on a loadgen
//! run, a build or a test run; past its limit the child is killed and the
//! error names what ran too long.

use std::io::Read;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// How long one loadgen run may take: every run here is a minute or two.
pub const LOADGEN_LIMIT: Duration = Duration::from_secs(15 * 60);

/// Runs `cmd` to its end and collects its stdout (stderr passes through
/// unless the caller piped it), killing it if it runs past `limit`.
pub fn output_within(cmd: &mut Command, limit: Duration, what: &str) -> Result<Output> {
    let mut child = cmd
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {what}"))?;
    let mut stdout = child.stdout.take().expect("piped stdout");
    let reader = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = stdout.read_to_end(&mut bytes);
        bytes
    });
    let mut stderr = child.stderr.take();
    let err_reader = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(stderr) = stderr.as_mut() {
            let _ = stderr.read_to_end(&mut bytes);
        }
        bytes
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child
            .try_wait()
            .with_context(|| format!("waiting for {what}"))?
        {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{what} ran past its limit of {limit:?} and was killed");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    Ok(Output {
        status,
        stdout: reader.join().unwrap_or_default(),
        stderr: err_reader.join().unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_child_past_its_limit_is_killed_and_named() {
        let started = Instant::now();
        let err = output_within(
            Command::new("sleep").arg("30"),
            Duration::from_millis(300),
            "sleep 30",
        )
        .unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(10));
        assert!(err.to_string().contains("sleep 30 ran past"), "{err}");
        let out = output_within(
            Command::new("echo").arg("hi"),
            Duration::from_secs(10),
            "echo",
        )
        .unwrap();
        assert_eq!(out.stdout, b"hi\n");
    }
}
