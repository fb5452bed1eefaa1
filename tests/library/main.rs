//! The library in this process: the writer and readers, the format against the Go
//! reference's fixtures, group commit, preallocation, the scanner's paths, repair
//! (plan, apply, restore), power cuts over the fault-injecting storage, and the
//! proptest properties and fuzzing. Few children are spawned here: a child holds a
//! copy of every descriptor (a released log lock included) until its exec, and
//! `power_loss` reopens its logs many times.
//! One test binary for the area (the helpers in `tests/common` compile once).

#[path = "../common/mod.rs"]
mod common;

mod format;
mod fuzz;
mod group_commit;
mod library_api;
mod power_loss;
mod prealloc;
mod prop_wal;
mod repair;
mod scan_paths;
mod unreadable;
mod wal;
