//! `leaklab-probe`: what the kernel says about a process's memory.
//!
//! Both the service (about itself) and loadgen (about its target, so a verdict
//! does not rest on the target's word alone) read the same facts through this
//! crate: resident set size and mapping count from `/proc/<pid>`, open file
//! descriptors, an `smaps` summary for off-heap hunts, and the memory cgroup's
//! usage and limit, for cgroup v2 and v1 alike.
//!
//! Every reader returns `None` (or an error) rather than guessing when a file
//! is missing, e.g. on a kernel without `smaps_rollup`.

pub mod cgroup;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// Which process to read: this one, or another by pid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pid {
    /// `/proc/self`.
    Current,
    /// `/proc/<pid>`.
    Of(u32),
}

impl Pid {
    fn dir(self) -> PathBuf {
        match self {
            Pid::Current => PathBuf::from("/proc/self"),
            Pid::Of(pid) => PathBuf::from(format!("/proc/{pid}")),
        }
    }
}

/// Bytes in one memory page.
pub fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions; it returns -1 on error.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if size > 0 {
        size as u64
    } else {
        4096
    }
}

/// Resident set size in bytes (`/proc/<pid>/statm`, second field).
pub fn rss_bytes(pid: Pid) -> io::Result<u64> {
    let statm = fs::read_to_string(pid.dir().join("statm"))?;
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|f| f.parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "statm has no resident field"))?;
    Ok(pages * page_size())
}

/// Number of open file descriptors.
pub fn open_fds(pid: Pid) -> io::Result<u64> {
    Ok(fs::read_dir(pid.dir().join("fd"))?.count() as u64)
}

/// Number of memory mappings (lines of `/proc/<pid>/maps`).
pub fn map_count(pid: Pid) -> io::Result<u64> {
    let maps = fs::read(pid.dir().join("maps"))?;
    Ok(maps.iter().filter(|b| **b == b'\n').count() as u64)
}

/// Whether the process still exists (and is not a zombie).
pub fn is_alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state letter follows the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .map(|(_, rest)| !rest.trim_start().starts_with('Z'))
            .unwrap_or(false),
        Err(_) => false,
    }
}

/// Whether `pid` holds a socket listening on TCP `port` (IPv4 or IPv6):
/// a `LISTEN` entry for the port in the pid's network namespace whose inode
/// is one of the pid's open files. Tells a pid that serves a URL from one
/// that does not.
pub fn listens_on(pid: u32, port: u16) -> io::Result<bool> {
    let dir = Pid::Of(pid).dir();
    let mut inodes = std::collections::HashSet::new();
    for entry in fs::read_dir(dir.join("fd"))? {
        if let Ok(link) = fs::read_link(entry?.path()) {
            let link = link.to_string_lossy().into_owned();
            if let Some(inode) = link
                .strip_prefix("socket:[")
                .and_then(|s| s.strip_suffix(']'))
            {
                inodes.insert(inode.to_owned());
            }
        }
    }
    for table in ["net/tcp", "net/tcp6"] {
        let Ok(text) = fs::read_to_string(dir.join(table)) else {
            continue;
        };
        if listening_inodes(&text, port).any(|inode| inodes.contains(inode)) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Inodes of the `LISTEN` (state `0A`) sockets on `port` in a
/// `/proc/net/tcp{,6}` table.
fn listening_inodes(table: &str, port: u16) -> impl Iterator<Item = &str> {
    let want = format!("{port:04X}");
    table.lines().skip(1).filter_map(move |line| {
        let cols: Vec<&str> = line.split_whitespace().collect();
        let local_port = cols.get(1)?.rsplit(':').next()?;
        (local_port == want && cols.get(3) == Some(&"0A")).then(|| cols.get(9).copied())?
    })
}

/// One mapping of an smaps summary.
#[derive(Clone, Debug, Serialize)]
pub struct Mapping {
    /// The mapping's name: a path, `[heap]`, `[stack]`, or `[anon]`.
    pub name: String,
    pub size_bytes: u64,
    pub rss_bytes: u64,
    pub anonymous_bytes: u64,
}

/// `/proc/<pid>/smaps`, summed: totals and the mappings by name, largest RSS first.
#[derive(Clone, Debug, Serialize)]
pub struct SmapsSummary {
    pub mappings: u64,
    pub rss_bytes: u64,
    pub anonymous_bytes: u64,
    /// Anonymous mappings with no name (where `mmap(MAP_ANONYMOUS)` and the
    /// allocator's own arenas both land).
    pub anon_mappings: u64,
    pub anon_mapping_rss_bytes: u64,
    /// Mappings grouped by name, largest RSS first.
    pub by_name: Vec<Mapping>,
}

/// Reads and summarises `/proc/<pid>/smaps`.
pub fn smaps_summary(pid: Pid) -> io::Result<SmapsSummary> {
    let text = fs::read_to_string(pid.dir().join("smaps"))?;
    Ok(parse_smaps(&text))
}

fn kib_field(line: &str) -> Option<u64> {
    line.split_whitespace()
        .nth(1)?
        .parse::<u64>()
        .ok()
        .map(|kib| kib * 1024)
}

/// Parses smaps text (exposed for tests).
pub fn parse_smaps(text: &str) -> SmapsSummary {
    use std::collections::BTreeMap;
    let mut by_name: BTreeMap<String, Mapping> = BTreeMap::new();
    let mut summary = SmapsSummary {
        mappings: 0,
        rss_bytes: 0,
        anonymous_bytes: 0,
        anon_mappings: 0,
        anon_mapping_rss_bytes: 0,
        by_name: Vec::new(),
    };
    let mut current: Option<String> = None;
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        let first = fields.next().unwrap_or("");
        if first.contains('-') && !first.ends_with(':') {
            // A header: "start-end perms offset dev inode [name]".
            let name = fields
                .nth(4)
                .map(str::to_owned)
                .unwrap_or_else(|| "[anon]".to_owned());
            summary.mappings += 1;
            if name == "[anon]" {
                summary.anon_mappings += 1;
            }
            by_name.entry(name.clone()).or_insert_with(|| Mapping {
                name: name.clone(),
                size_bytes: 0,
                rss_bytes: 0,
                anonymous_bytes: 0,
            });
            current = Some(name);
            continue;
        }
        let Some(name) = current.as_ref() else {
            continue;
        };
        let entry = by_name.get_mut(name).expect("entry made at its header");
        match first {
            "Size:" => entry.size_bytes += kib_field(line).unwrap_or(0),
            "Rss:" => {
                let rss = kib_field(line).unwrap_or(0);
                entry.rss_bytes += rss;
                summary.rss_bytes += rss;
                if name == "[anon]" {
                    summary.anon_mapping_rss_bytes += rss;
                }
            }
            "Anonymous:" => {
                let anon = kib_field(line).unwrap_or(0);
                entry.anonymous_bytes += anon;
                summary.anonymous_bytes += anon;
            }
            _ => {}
        }
    }
    let mut mappings: Vec<Mapping> = by_name.into_values().collect();
    mappings.sort_by_key(|m| std::cmp::Reverse(m.rss_bytes));
    summary.by_name = mappings;
    summary
}

/// A memory cgroup's state.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct CgroupMemory {
    /// `v1` or `v2`.
    pub version: &'static str,
    /// The cgroup's path below the hierarchy root.
    pub path: String,
    /// The limit in bytes, or `None` when unlimited.
    pub limit: Option<u64>,
    pub usage: u64,
    /// `limit - usage` when limited.
    pub headroom: Option<u64>,
    /// Times the kernel's OOM killer killed a process in this cgroup.
    pub oom_kills: Option<u64>,
}

/// Limits at or above this are "no limit" (cgroup v1 writes a huge number).
const UNLIMITED: u64 = 1 << 60;

/// Where cgroup hierarchies are mounted; overridable for tests.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// The memory cgroup of `pid` (v2 first, then v1), or `None` when it has none
/// or the files cannot be read.
pub fn cgroup_memory(pid: Pid) -> Option<CgroupMemory> {
    let membership = fs::read_to_string(pid.dir().join("cgroup")).ok()?;
    cgroup_memory_at(Path::new(CGROUP_ROOT), &membership)
}

fn read_u64(path: &Path) -> Option<u64> {
    let text = fs::read_to_string(path).ok()?;
    let text = text.trim();
    if text == "max" {
        return Some(u64::MAX);
    }
    text.parse().ok()
}

fn counter(path: &Path, key: &str) -> Option<u64> {
    let text = fs::read_to_string(path).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.trim().parse().ok())
}

/// The same, against a given hierarchy root and `/proc/<pid>/cgroup` text.
pub fn cgroup_memory_at(root: &Path, membership: &str) -> Option<CgroupMemory> {
    let mut v1 = None;
    let mut v2 = None;
    for line in membership.lines() {
        let mut parts = line.splitn(3, ':');
        let (id, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        if id == "0" && controllers.is_empty() {
            v2 = Some(path.trim_start_matches('/').to_owned());
        } else if controllers.split(',').any(|c| c == "memory") {
            v1 = Some(path.trim_start_matches('/').to_owned());
        }
    }
    // A container sees its own cgroup as the root of a namespaced hierarchy, while
    // /proc/self/cgroup may still name the host path: try the path, then the root.
    let candidates = |base: PathBuf, path: &str| [base.join(path), base];
    if let Some(path) = v1.as_deref() {
        for dir in candidates(root.join("memory"), path) {
            if let Some(usage) = read_u64(&dir.join("memory.usage_in_bytes")) {
                let limit = read_u64(&dir.join("memory.limit_in_bytes")).filter(|l| *l < UNLIMITED);
                return Some(CgroupMemory {
                    version: "v1",
                    path: format!("/{path}"),
                    limit,
                    usage,
                    headroom: limit.map(|l| l.saturating_sub(usage)),
                    oom_kills: counter(&dir.join("memory.oom_control"), "oom_kill "),
                });
            }
        }
    }
    if let Some(path) = v2.as_deref() {
        // cgroup2 is at the root on pure v2 hosts and at `unified/` on hybrid ones.
        for base in [root.to_path_buf(), root.join("unified")] {
            for dir in candidates(base, path) {
                if let Some(usage) = read_u64(&dir.join("memory.current")) {
                    let limit = read_u64(&dir.join("memory.max")).filter(|l| *l < UNLIMITED);
                    return Some(CgroupMemory {
                        version: "v2",
                        path: format!("/{path}"),
                        limit,
                        usage,
                        headroom: limit.map(|l| l.saturating_sub(usage)),
                        oom_kills: counter(&dir.join("memory.events"), "oom_kill "),
                    });
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listening_socket_is_found_by_port_and_inode() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        assert!(listens_on(std::process::id(), port).unwrap());
        drop(listener);
        assert!(!listens_on(std::process::id(), port).unwrap());
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0\n";
        assert_eq!(listening_inodes(table, 8080).collect::<Vec<_>>(), ["4242"]);
    }

    #[test]
    fn own_rss_and_fds_are_readable_and_positive() {
        assert!(rss_bytes(Pid::Current).unwrap() > 0);
        assert!(open_fds(Pid::Current).unwrap() >= 3);
        assert!(map_count(Pid::Current).unwrap() > 0);
    }

    #[test]
    fn smaps_text_is_summed_by_name() {
        let text = "\
55d0-55d1 r-xp 00000000 08:01 1234 /usr/bin/app
Size:                  8 kB
Rss:                   4 kB
Anonymous:             0 kB
7f00-7f10 rw-p 00000000 00:00 0
Size:                256 kB
Rss:                256 kB
Anonymous:           256 kB
7f20-7f30 rw-p 00000000 00:00 0
Size:                256 kB
Rss:                128 kB
Anonymous:           128 kB
";
        let s = parse_smaps(text);
        assert_eq!(s.mappings, 3);
        assert_eq!(s.anon_mappings, 2);
        assert_eq!(s.anon_mapping_rss_bytes, 384 * 1024);
        assert_eq!(s.by_name[0].name, "[anon]");
        assert_eq!(s.rss_bytes, 388 * 1024);
    }

    #[test]
    fn cgroup_v1_and_v2_files_are_read_and_unlimited_is_none() {
        let root = std::env::temp_dir().join(format!("leaklab-probe-{}", std::process::id()));
        let v1 = root.join("memory/job");
        fs::create_dir_all(&v1).unwrap();
        fs::write(v1.join("memory.usage_in_bytes"), "1000\n").unwrap();
        fs::write(v1.join("memory.limit_in_bytes"), "4096\n").unwrap();
        fs::write(
            v1.join("memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
        )
        .unwrap();
        let got = cgroup_memory_at(&root, "4:memory:/job\n0::/\n").unwrap();
        assert_eq!(
            (
                got.version,
                got.limit,
                got.usage,
                got.headroom,
                got.oom_kills
            ),
            ("v1", Some(4096), 1000, Some(3096), Some(2))
        );

        let v2 = root.join("unified/svc");
        fs::create_dir_all(&v2).unwrap();
        fs::write(v2.join("memory.current"), "2000\n").unwrap();
        fs::write(v2.join("memory.max"), "max\n").unwrap();
        let got = cgroup_memory_at(&root, "0::/svc\n").unwrap();
        assert_eq!((got.version, got.limit, got.headroom), ("v2", None, None));
        fs::remove_dir_all(&root).unwrap();
    }
}
