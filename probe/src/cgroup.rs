//! A memory cgroup of our own, for running a process under a memory limit
//! without Docker (root, cgroup v1 or v2).
//!
//! The cgroup is made below this process's own memory cgroup, so it works
//! inside a container or a CI job's cgroup as well as on a bare host. A child
//! joins it *before* it executes (a `pre_exec` hook writes its pid to
//! `cgroup.procs`), so none of its allocations escape the limit. Swap is
//! disabled for the cgroup where the kernel allows, so the limit means RAM.

use std::fs;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{cgroup_memory_at, CgroupMemory, CGROUP_ROOT};

/// A memory cgroup this process made; removed (best effort) on drop.
#[derive(Debug)]
pub struct MemoryCgroup {
    dir: PathBuf,
    version: &'static str,
    /// The path below the hierarchy root, as `/proc/<pid>/cgroup` names it.
    rel: String,
}

fn own_paths() -> io::Result<(Option<String>, Option<String>)> {
    let membership = fs::read_to_string("/proc/self/cgroup")?;
    let mut v1 = None;
    let mut v2 = None;
    for line in membership.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if id == "0" && controllers.is_empty() {
            v2 = Some(path.to_owned());
        } else if controllers.split(',').any(|c| c == "memory") {
            v1 = Some(path.to_owned());
        }
    }
    Ok((v1, v2))
}

fn write(path: &Path, value: &str) -> io::Result<()> {
    fs::write(path, value).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("writing {value:?} to {}: {e}", path.display()),
        )
    })
}

impl MemoryCgroup {
    /// Makes `name` below this process's memory cgroup with `limit_bytes` of memory.
    pub fn create(name: &str, limit_bytes: u64) -> io::Result<MemoryCgroup> {
        let (v1, v2) = own_paths()?;
        let root = Path::new(CGROUP_ROOT);
        if let Some(parent) = v1 {
            let base = root.join("memory");
            // Inside a container the hierarchy is namespaced: our cgroup is its root.
            let parent_dir = [base.join(parent.trim_start_matches('/')), base.clone()]
                .into_iter()
                .find(|d| d.join("memory.limit_in_bytes").exists())
                .ok_or_else(|| {
                    io::Error::new(io::ErrorKind::NotFound, "no cgroup v1 memory hierarchy")
                })?;
            let dir = parent_dir.join(name);
            fs::create_dir_all(&dir)?;
            write(&dir.join("memory.limit_in_bytes"), &limit_bytes.to_string())?;
            // memsw exists only with swap accounting; where it does, RAM+swap = RAM.
            let memsw = dir.join("memory.memsw.limit_in_bytes");
            if memsw.exists() {
                let _ = write(&memsw, &limit_bytes.to_string());
            }
            let _ = write(&dir.join("memory.swappiness"), "0");
            let rel = format!("{}/{name}", parent.trim_end_matches('/'));
            return Ok(MemoryCgroup {
                dir,
                version: "v1",
                rel,
            });
        }
        if let Some(parent) = v2 {
            for base in [root.to_path_buf(), root.join("unified")] {
                let parent_dir = base.join(parent.trim_start_matches('/'));
                if !parent_dir.join("cgroup.subtree_control").exists() {
                    continue;
                }
                let controllers =
                    fs::read_to_string(parent_dir.join("cgroup.controllers")).unwrap_or_default();
                if !controllers.split_whitespace().any(|c| c == "memory") {
                    continue;
                }
                let _ = write(&parent_dir.join("cgroup.subtree_control"), "+memory");
                let dir = parent_dir.join(name);
                fs::create_dir_all(&dir)?;
                write(&dir.join("memory.max"), &limit_bytes.to_string())?;
                let _ = write(&dir.join("memory.swap.max"), "0");
                let rel = format!("{}/{name}", parent.trim_end_matches('/'));
                return Ok(MemoryCgroup {
                    dir,
                    version: "v2",
                    rel,
                });
            }
        }
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "no memory cgroup controller is available to this process",
        ))
    }

    /// The cgroup's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `v1` or `v2`.
    pub fn version(&self) -> &'static str {
        self.version
    }

    /// Makes `command`'s child join this cgroup before it executes.
    pub fn confine(&self, command: &mut Command) -> io::Result<()> {
        let procs = fs::OpenOptions::new()
            .write(true)
            .open(self.dir.join("cgroup.procs"))?;
        let fd = std::os::fd::IntoRawFd::into_raw_fd(procs);
        // SAFETY: the hook runs in the child between fork and exec; it only
        // calls async-signal-safe functions (getpid, write) on a stack buffer.
        unsafe {
            command.pre_exec(move || {
                let mut digits = [0u8; 20];
                let mut pid = libc::getpid() as u64;
                let mut at = digits.len();
                loop {
                    at -= 1;
                    digits[at] = b'0' + (pid % 10) as u8;
                    pid /= 10;
                    if pid == 0 {
                        break;
                    }
                }
                let len = digits.len() - at;
                if libc::write(fd, digits[at..].as_ptr().cast(), len) != len as isize {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        Ok(())
    }

    /// Usage, limit and OOM kills now.
    pub fn memory(&self) -> Option<CgroupMemory> {
        let membership = match self.version {
            "v1" => format!("1:memory:{}\n", self.rel),
            _ => format!("0::{}\n", self.rel),
        };
        cgroup_memory_at(Path::new(CGROUP_ROOT), &membership)
    }
}

impl Drop for MemoryCgroup {
    fn drop(&mut self) {
        // Fails while a process is still inside; the caller kills it first.
        let _ = fs::remove_dir(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Needs root and a memory controller; says so and returns otherwise.
    #[test]
    fn a_child_over_its_limit_is_oom_killed_inside_its_cgroup() {
        let cgroup = match MemoryCgroup::create(
            &format!("leaklab-probe-test-{}", std::process::id()),
            32 << 20,
        ) {
            Ok(c) => c,
            Err(err) => {
                eprintln!("skipping: cannot make a memory cgroup here: {err}");
                return;
            }
        };
        // A shell that fills 128 MiB of memory with a string (no python needed).
        let mut command = Command::new("sh");
        command.args([
            "-c",
            "x=$(head -c 134217728 /dev/zero | tr '\\0' 'a'); echo ${#x}",
        ]);
        command.stdout(std::process::Stdio::null());
        cgroup.confine(&mut command).unwrap();
        let status = command.status().unwrap();
        let memory = cgroup.memory().expect("cgroup readable");
        assert_eq!(memory.limit, Some(32 << 20));
        assert!(!status.success(), "the child fit in 32 MiB: {status:?}");
        assert!(
            memory.oom_kills.unwrap_or(0) >= 1,
            "no OOM kill recorded: {memory:?}"
        );
    }
}
