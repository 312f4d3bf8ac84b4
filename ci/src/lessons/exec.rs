//! Running one block's command: `sh -c` from the repository root, stdout and
//! stderr captured, in a process group of its own so that past its limit the
//! whole group is killed (`sh`, loadgen and the service loadgen spawned),
//! not just `sh`. Like [`crate::process::output_within`], but a command past
//! its limit is an outcome to report (the block fails), not an error.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::expect::Outcome;

/// How long the readers get to finish once the command ended (a leftover
/// that still holds the pipes is killed first).
const DRAIN: Duration = Duration::from_secs(5);

/// Runs `command` with `sh -c` in `dir`, killing its process group past `limit`.
pub fn run_within(command: &str, dir: &Path, limit: Duration) -> Result<Outcome> {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(command)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .with_context(|| format!("starting sh -c {command:?}"))?;
    let stdout = reader(
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    );
    let stderr = reader(
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + limit;
    let (exit, timed_out) = loop {
        if let Some(status) = child.try_wait().context("waiting for the command")? {
            break (status.code(), None);
        }
        if Instant::now() >= deadline {
            kill_group(&mut child);
            let _ = child.wait();
            break (None, Some(limit));
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    // Anything the command left running in its group (a service whose
    // loadgen died) would hold the pipes open and a port: it goes too.
    kill_group(&mut child);
    Ok(Outcome {
        exit,
        timed_out,
        stdout: joined(stdout),
        stderr: joined(stderr),
    })
}

fn reader(stream: Option<Box<dyn Read + Send>>) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut s) = stream {
            let _ = s.read_to_end(&mut bytes);
        }
        bytes
    })
}

fn joined(handle: JoinHandle<Vec<u8>>) -> String {
    let deadline = Instant::now() + DRAIN;
    while !handle.is_finished() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    if !handle.is_finished() {
        return String::new();
    }
    String::from_utf8_lossy(&handle.join().unwrap_or_default()).into_owned()
}

/// SIGKILL to the child's process group (its id: `process_group(0)`).
fn kill_group(child: &mut Child) {
    let Ok(pgid) = libc::pid_t::try_from(child.id()) else {
        return;
    };
    // SAFETY: kill(2) with a negative pid signals that process group; no
    // memory is passed. ESRCH (the group is gone) is the usual result.
    unsafe {
        libc::kill(-pgid, libc::SIGKILL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_streams_and_the_exit_code_are_captured() {
        let out = run_within(
            "echo out; echo err >&2; exit 3",
            Path::new("/"),
            Duration::from_secs(10),
        )
        .unwrap();
        assert_eq!(
            (out.exit, out.stdout.as_str(), out.stderr.as_str()),
            (Some(3), "out\n", "err\n")
        );
        assert!(out.timed_out.is_none());
    }

    #[test]
    fn past_its_limit_the_whole_group_is_killed() {
        let started = Instant::now();
        // The background sleep holds stdout: only a group kill lets the readers finish.
        let out = run_within(
            "sleep 30 & sleep 30",
            Path::new("/"),
            Duration::from_millis(300),
        )
        .unwrap();
        assert_eq!(out.timed_out, Some(Duration::from_millis(300)));
        assert_eq!(out.exit, None);
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "{:?}",
            started.elapsed()
        );
    }
}
