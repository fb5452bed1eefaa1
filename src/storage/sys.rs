//! Every system call the library makes, each behind a safe function: file locks,
//! read-ahead and write-back hints, the kernel's table of locks. Calls that exist
//! only on Linux have a fallback here (a no-op, or "cannot tell"), so the library
//! builds on any Unix and nothing above this file names a platform.

use std::fs::File;
use std::io;
use std::os::unix::io::AsRawFd;

/// `open(2)` flag: fail on a symbolic link instead of following it.
pub(crate) const O_NOFOLLOW: i32 = libc::O_NOFOLLOW;
/// `open(2)` flag: never block opening (a FIFO put where a file was expected).
pub(crate) const O_NONBLOCK: i32 = libc::O_NONBLOCK;

/// Which `flock(2)` lock to take.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Flock {
    /// `LOCK_EX`: the writer's lock.
    Exclusive,
    /// `LOCK_SH`: only to test whether an exclusive lock is held.
    Shared,
}

/// Takes a `flock(2)` lock on `f` without waiting: `Ok(false)` when someone else
/// holds a conflicting one.
pub(crate) fn try_flock(f: &File, kind: Flock) -> io::Result<bool> {
    let op = match kind {
        Flock::Exclusive => libc::LOCK_EX,
        Flock::Shared => libc::LOCK_SH,
    };
    // SAFETY: flock on a file descriptor we own; no memory is shared.
    let rc = unsafe { libc::flock(f.as_raw_fd(), op | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(true);
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
        return Ok(false);
    }
    Err(err)
}

/// Releases the `flock(2)` lock on `f`. Explicitly, not by closing: closing our
/// descriptor alone does not release the lock while a child process, forked by any
/// thread of this process and not yet exec'd, still holds a copy of it.
pub(crate) fn unlock(f: &File) {
    // SAFETY: flock on a descriptor we own; no memory is shared. A failure leaves
    // the lock to be released when the last copy of the descriptor closes.
    unsafe {
        libc::flock(f.as_raw_fd(), libc::LOCK_UN);
    }
}

/// Tells the OS that `f` is about to be read sequentially and that its first
/// `prefetch` bytes are wanted soon. Only a hint; a no-op off Linux.
#[cfg(target_os = "linux")]
pub(crate) fn advise_sequential(f: &File, prefetch: u64) {
    let fd = f.as_raw_fd();
    let len = prefetch.min(i64::MAX as u64) as libc::off_t;
    // SAFETY: advisory calls on a descriptor we own; no memory is shared. Failure
    // only means no read-ahead.
    unsafe {
        libc::posix_fadvise(fd, 0, 0, libc::POSIX_FADV_SEQUENTIAL);
        if len > 0 {
            libc::posix_fadvise(fd, 0, len, libc::POSIX_FADV_WILLNEED);
        }
    }
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn advise_sequential(_f: &File, _prefetch: u64) {}

/// Asks the OS to start writing `f`'s dirty pages to the device without waiting
/// (`sync_file_range(SYNC_FILE_RANGE_WRITE)`). Only a hint that promises nothing
/// about durability; a no-op off Linux.
#[cfg(target_os = "linux")]
pub(crate) fn start_writeback(f: &File) {
    // SAFETY: an advisory call on a descriptor we own. SYNC_FILE_RANGE_WRITE only
    // submits dirty pages for write-out and does not wait for them; a failure here
    // is seen (and reported) by the next fdatasync.
    unsafe {
        libc::sync_file_range(f.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE);
    }
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn start_writeback(_f: &File) {}

/// The pids holding an exclusive flock on the file `f` is open on, from the
/// kernel's table of locks (`/proc/locks`); `None` where there is no such table.
#[cfg(target_os = "linux")]
pub(crate) fn flock_holders(f: &File) -> Option<Vec<u32>> {
    use std::os::unix::fs::MetadataExt;
    let meta = f.metadata().ok()?;
    let dev = meta.dev();
    // As the kernel prints it: major:minor in hex (two digits at least), inode.
    let key = format!(
        "{:02x}:{:02x}:{}",
        libc::major(dev),
        libc::minor(dev),
        meta.ino()
    );
    let table = std::fs::read_to_string("/proc/locks").ok()?;
    Some(parse_proc_locks(&table, &key))
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn flock_holders(_f: &File) -> Option<Vec<u32>> {
    None
}

/// Pids of the granted exclusive flocks on `key` (`maj:min:inode`) in a
/// `/proc/locks` table. Waiters (`->`) hold nothing and are left out.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn parse_proc_locks(table: &str, key: &str) -> Vec<u32> {
    table
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace().skip(1);
            let (kind, _, mode, pid, file) = (
                words.next()?,
                words.next()?,
                words.next()?,
                words.next()?,
                words.next()?,
            );
            (kind == "FLOCK" && mode == "WRITE" && file == key)
                .then(|| pid.parse().ok())
                .flatten()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_granted_exclusive_flocks_on_the_file_count() {
        let table = "\
1: FLOCK  ADVISORY  WRITE 10300 fe:00:10010692 0 EOF
1: -> FLOCK  ADVISORY  WRITE 10400 fe:00:10010692 0 EOF
2: OFDLCK ADVISORY  WRITE -1 fe:00:10010692 0 EOF
3: FLOCK  ADVISORY  READ 10500 fe:00:10010692 0 EOF
4: FLOCK  ADVISORY  WRITE 10600 fe:00:100106920 0 EOF
5: POSIX  ADVISORY  WRITE 10700 fe:00:10010692 0 EOF
";
        assert_eq!(parse_proc_locks(table, "fe:00:10010692"), vec![10300]);
        assert!(parse_proc_locks(table, "fe:01:10010692").is_empty());
    }

    #[test]
    fn an_exclusive_flock_shuts_out_a_second_descriptor_until_unlocked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l");
        let a = File::create(&path).unwrap();
        let b = File::open(&path).unwrap();
        assert!(try_flock(&a, Flock::Exclusive).unwrap());
        assert!(!try_flock(&b, Flock::Shared).unwrap());
        unlock(&a);
        assert!(try_flock(&b, Flock::Shared).unwrap());
    }
}
