//! Every system call the binary makes itself, each behind a safe function: polls and
//! reads of the standard descriptors, `dump --follow`'s signal handler, and the
//! bench's page-cache, file-system and child-process calls. Linux-only ones have
//! their fallback here. (The library's own calls are in its `storage/sys.rs`.)

use std::io;
use std::path::Path;
use std::process::Child;
use std::sync::atomic::{AtomicBool, Ordering};

/// Whether stdout's reader has hung up (POLLERR or POLLHUP on descriptor 1).
pub fn stdout_hung_up() -> bool {
    let mut fd = libc::pollfd {
        fd: libc::STDOUT_FILENO,
        events: 0,
        revents: 0,
    };
    // SAFETY: poll(2) on one pollfd we own, with no timeout.
    let n = unsafe { libc::poll(&mut fd, 1, 0) };
    n > 0 && fd.revents & (libc::POLLERR | libc::POLLHUP) != 0
}

/// Waits up to `timeout_ms` (-1: for ever, 0: not at all) until a read of
/// descriptor 0 would return at once; retried on EINTR.
pub fn poll_stdin(timeout_ms: i32) -> io::Result<bool> {
    let mut pfd = libc::pollfd {
        fd: libc::STDIN_FILENO,
        events: libc::POLLIN,
        revents: 0,
    };
    loop {
        // SAFETY: one valid pollfd on the stack.
        let rc = unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
        if rc >= 0 {
            return Ok(rc > 0 && pfd.revents != 0);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// One read(2) of descriptor 0 into `buf` (no user-space buffer that would hide
/// data from [`poll_stdin`]); errors, EINTR and EAGAIN included, as they come.
pub fn read_stdin(buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: reads at most buf.len() bytes into memory we own.
    let rc = unsafe { libc::read(libc::STDIN_FILENO, buf.as_mut_ptr().cast(), buf.len()) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(rc as usize)
}

/// The size of standard input when it is a regular file (a redirect), else `None`.
pub fn stdin_file_size() -> Option<u64> {
    // SAFETY: fstat(2) on descriptor 0 into a struct we own; all-zero is a valid stat.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::fstat(libc::STDIN_FILENO, &mut st) };
    (rc == 0 && st.st_mode & libc::S_IFMT == libc::S_IFREG).then_some(st.st_size as u64)
}

/// The statfs magic number of the file system holding `dir` (Linux; `None`
/// elsewhere or on failure).
#[cfg(target_os = "linux")]
pub fn filesystem_magic(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: statfs is plain old data; the path is NUL-terminated.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    #[allow(clippy::unnecessary_cast)]
    Some(st.f_type as u64)
}

#[cfg(not(target_os = "linux"))]
pub fn filesystem_magic(_dir: &Path) -> Option<u64> {
    None
}

/// Drops a file's clean pages from the page cache (Linux; elsewhere nothing, and a
/// "cold" read is warm, so its numbers say less about the disk).
pub fn evict(path: &Path) {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::io::AsRawFd;
        if let Ok(f) = std::fs::File::open(path) {
            // SAFETY: advisory call on a descriptor we own; no memory is shared.
            unsafe {
                libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED);
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = path;
}

/// Writes back every dirty page of the file system holding `dir` (syncfs on Linux;
/// elsewhere sync, every file system).
pub fn syncfs(dir: &Path) {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::io::AsRawFd;
        if let Ok(f) = std::fs::File::open(dir) {
            // SAFETY: syncfs on a descriptor we own.
            unsafe {
                libc::syncfs(f.as_raw_fd());
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = dir;
        // SAFETY: sync takes no arguments.
        unsafe { libc::sync() };
    }
}

/// Set by SIGINT/SIGTERM while following.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop_signal(_sig: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// Ctrl-C and SIGTERM end `--follow` cleanly (status 0). The handler resets itself
/// (SA_RESETHAND): a second signal ends the process at once, even if it is stuck
/// writing to a full pipe.
pub fn install_stop_handler() -> io::Result<()> {
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe; the
    // sigaction struct is fully initialised (zeroed, then the fields we set).
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_stop_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
        sa.sa_flags = libc::SA_RESETHAND;
        libc::sigemptyset(&mut sa.sa_mask);
        for sig in [libc::SIGINT, libc::SIGTERM] {
            if libc::sigaction(sig, &sa, std::ptr::null_mut()) != 0 {
                return Err(io::Error::last_os_error());
            }
        }
    }
    Ok(())
}

/// Whether SIGINT or SIGTERM came since [`install_stop_handler`].
pub fn stop_requested() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// How a child process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// It exited with this status.
    Exited(i32),
    /// This signal killed it.
    Killed(i32),
}

/// How a child process ended, and the most memory it held.
#[derive(Debug, Clone, Copy)]
pub struct ChildExit {
    /// How it ended.
    pub ended: Ended,
    /// Its peak resident set, in KiB.
    pub max_rss_kib: u64,
}

/// Waits for `child` with wait4(2), for its peak memory as well as its status
/// (retried on EINTR). The child is reaped: `child` must not be waited for again.
pub fn wait_with_rusage(child: &Child) -> io::Result<ChildExit> {
    let pid = child.id() as libc::pid_t;
    let mut status: libc::c_int = 0;
    // SAFETY: rusage is plain old data; zero is a valid value for every field.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: waits for our own child; both pointers are to live locals.
        let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if rc == pid {
            break;
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    // Without WUNTRACED, wait4 reports only children that ended: one that did not
    // exit was killed.
    let ended = if libc::WIFEXITED(status) {
        Ended::Exited(libc::WEXITSTATUS(status))
    } else {
        Ended::Killed(libc::WTERMSIG(status))
    };
    Ok(ChildExit {
        ended,
        max_rss_kib: usage.ru_maxrss.max(0) as u64,
    })
}
