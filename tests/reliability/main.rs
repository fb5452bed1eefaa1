//! Reliability with real processes: crash loops of killed writers, damaged files
//! read by every command, a full disk, and readers, writers and tools running side
//! by side. (Power cuts over the fault-injecting storage are in `tests/library`.)
//! One test binary for the area (the helpers in `tests/common` compile once).

#[path = "../common/mod.rs"]
mod common;

mod concurrency;
mod crash_loop;
mod damage;
mod full_disk;
