//! `--lock-code`: pins the pages of the service's file-backed mappings (its
//! code, read-only data and shared libraries) in memory as they are touched.
//!
//! Why: under a memory limit with no swap, the kernel cannot reclaim anonymous
//! memory, so when a leak reaches the limit it evicts the only thing it can,
//! the program's own code pages, which the next instruction faults straight
//! back in from disk. The service then *thrashes*: it stops answering but is
//! not killed, often for tens of seconds, until reclaim finally gives up and
//! the OOM killer fires. That stall is real and worth seeing (`loadgen oom
//! --allow-thrash`), but it hides the moment the limit was reached. With the
//! code pinned, there is nothing left to reclaim at the limit and the kill
//! follows at once, which is what a time-to-OOM prediction is about.
//!
//! `mlock2(MLOCK_ONFAULT)` locks pages only once they are faulted in, so
//! nothing is read in or charged up front, and anonymous memory (the heap,
//! jemalloc's purging) is untouched. It needs root or `CAP_IPC_LOCK` (or a
//! large enough `RLIMIT_MEMLOCK`); without them the service says so and runs
//! unpinned.

use std::fs;

/// What [`lock_file_mappings`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Pinned {
    /// File-backed mappings locked.
    pub mappings: usize,
    /// Their total size (only the touched part is resident).
    pub bytes: u64,
    /// Mappings the kernel refused, with the first error.
    pub refused: usize,
    pub first_error: Option<String>,
}

/// One `/proc/self/maps` line's range, if it is a file-backed mapping.
fn file_mapping(line: &str) -> Option<(usize, usize)> {
    let mut fields = line.split_whitespace();
    let range = fields.next()?;
    let _perms = fields.next()?;
    let _offset = fields.next()?;
    let _dev = fields.next()?;
    let inode: u64 = fields.next()?.parse().ok()?;
    let path = fields.next()?;
    if inode == 0 || !path.starts_with('/') {
        return None;
    }
    let (start, end) = range.split_once('-')?;
    let start = usize::from_str_radix(start, 16).ok()?;
    let end = usize::from_str_radix(end, 16).ok()?;
    (end > start).then_some((start, end - start))
}

/// Locks every file-backed mapping of this process, on fault.
pub fn lock_file_mappings() -> std::io::Result<Pinned> {
    let maps = fs::read_to_string("/proc/self/maps")?;
    let mut pinned = Pinned::default();
    for (start, len) in maps.lines().filter_map(file_mapping) {
        // SAFETY: mlock2 only changes how the kernel treats pages of an
        // existing mapping of ours; it reads and writes no memory.
        let rc = unsafe { libc::mlock2(start as *const libc::c_void, len, libc::MLOCK_ONFAULT) };
        if rc == 0 {
            pinned.mappings += 1;
            pinned.bytes += len as u64;
        } else {
            pinned.refused += 1;
            pinned
                .first_error
                .get_or_insert_with(|| std::io::Error::last_os_error().to_string());
        }
    }
    Ok(pinned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_file_backed_mappings_are_picked() {
        assert_eq!(
            file_mapping("55d0c000-55d0d000 r-xp 00001000 08:01 1234 /usr/bin/app"),
            Some((0x55d0c000, 0x1000))
        );
        assert_eq!(
            file_mapping("7f00-7f10 rw-p 00000000 00:00 0 "),
            None,
            "anonymous"
        );
        assert_eq!(
            file_mapping("7ffd-7ffe rw-p 00000000 00:00 0 [stack]"),
            None
        );
        assert_eq!(file_mapping("garbage"), None);
    }
}
