//! Argument types more than one command takes.

use std::time::Duration;

use walctl::SyncPolicy;

/// When appended entries are made durable (`--sync`, of `append`, `checkpoint` and
/// `bench`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SyncMode {
    /// fsync before acknowledging (one fsync per batch).
    Always,
    /// Hand each batch to the OS before acknowledging; fsync every interval.
    Interval,
    /// Hand each batch to the OS before acknowledging; fsync only at rotation and exit.
    Never,
}

impl SyncMode {
    /// The library's policy; `interval` is used by `Interval` only.
    pub fn policy(self, interval: Duration) -> SyncPolicy {
        match self {
            SyncMode::Always => SyncPolicy::Always,
            SyncMode::Interval => SyncPolicy::Interval(interval),
            SyncMode::Never => SyncPolicy::Never,
        }
    }
}
