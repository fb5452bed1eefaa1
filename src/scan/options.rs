//! How a scan walks a log: [`ScanOptions`] and its builder methods.

use crate::codec::MAX_BODY_LEN;

/// How a [`Scanner`](crate::scan::Scanner) walks a log. Set with the builder methods, which survive new
/// options: `ScanOptions::default().from_lsn(Some(100)).stop_at_first_problem(true)`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ScanOptions {
    /// Largest length prefix accepted; anything above is corruption, never allocated.
    pub max_body_len: u32,
    /// Skip whole segments whose records all come before this LSN (found by peeking
    /// at the first record of the following segment). Records before it in the first
    /// segment read are still returned; the caller filters them.
    pub from_lsn: Option<u64>,
    /// Stop at the first problem (readers) instead of going on with the next segment
    /// (verify).
    pub stop_at_first_problem: bool,
    /// Follow a live log: an incomplete record at the end of the newest segment means
    /// "not written yet", not damage; [`Scanner::poll`](crate::scan::Scanner::poll) looks for more.
    pub follow: bool,
    /// Read segments of at least this many bytes on a helper thread, a chunk ahead
    /// of the checks, so the copy from the page cache (or the wait for the disk)
    /// overlaps them. `None` reads every segment on the caller's thread. Never used
    /// while following. Default: 1 MiB.
    pub read_ahead_from: Option<u64>,
    /// [`scan_log`](crate::scan::scan_log) only: split a log of at least this many bytes (in two or more
    /// segments) into an older and a newer half, checked at once on two threads
    /// when the machine has two cores. The result is the one a single pass gives: the
    /// halves are joined only when the newer one starts with the LSN after the last
    /// of the older one and nothing is wrong at the seam; otherwise the log is read
    /// again in one pass. `None`: one pass. Default: 64 MiB.
    pub parallel_from: Option<u64>,
}

impl Default for ScanOptions {
    fn default() -> Self {
        ScanOptions {
            max_body_len: MAX_BODY_LEN,
            from_lsn: None,
            stop_at_first_problem: false,
            follow: false,
            read_ahead_from: Some(1 << 20),
            parallel_from: Some(64 << 20),
        }
    }
}

impl ScanOptions {
    /// Sets [`max_body_len`](Self::max_body_len).
    pub fn max_body_len(mut self, max: u32) -> Self {
        self.max_body_len = max;
        self
    }

    /// Sets [`from_lsn`](Self::from_lsn).
    pub fn from_lsn(mut self, from: Option<u64>) -> Self {
        self.from_lsn = from;
        self
    }

    /// Sets [`stop_at_first_problem`](Self::stop_at_first_problem).
    pub fn stop_at_first_problem(mut self, stop: bool) -> Self {
        self.stop_at_first_problem = stop;
        self
    }

    /// Sets [`follow`](Self::follow).
    pub fn follow(mut self, follow: bool) -> Self {
        self.follow = follow;
        self
    }

    /// Sets [`read_ahead_from`](Self::read_ahead_from).
    pub fn read_ahead_from(mut self, min: Option<u64>) -> Self {
        self.read_ahead_from = min;
        self
    }

    /// Sets [`parallel_from`](Self::parallel_from).
    pub fn parallel_from(mut self, min: Option<u64>) -> Self {
        self.parallel_from = min;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_builder_sets_its_own_option() {
        let d = ScanOptions::default();
        let o = ScanOptions::default()
            .max_body_len(7)
            .from_lsn(Some(9))
            .stop_at_first_problem(!d.stop_at_first_problem)
            .follow(!d.follow)
            .read_ahead_from(Some(11))
            .parallel_from(Some(13));
        assert_eq!(o.max_body_len, 7);
        assert_eq!(o.from_lsn, Some(9));
        assert_eq!(o.stop_at_first_problem, !d.stop_at_first_problem);
        assert_eq!(o.follow, !d.follow);
        assert_eq!(o.read_ahead_from, Some(11));
        assert_eq!(o.parallel_from, Some(13));
        let none = o.read_ahead_from(None).parallel_from(None).from_lsn(None);
        assert_eq!(
            (none.read_ahead_from, none.parallel_from, none.from_lsn),
            (None, None, None)
        );
    }
}
