//! walctl: a write-ahead log that reads and writes, byte for byte, the on-disk format
//! of the Go library `github.com/wizenheimer/wal`, without its weaknesses.
//!
//! - [`writer::Wal`] appends records (durably, by default), rotates segments, keeps
//!   retention from ever dropping what recovery needs, and repairs a torn tail on open
//!   after saving the bytes it cuts.
//! - [`reader::WalReader`] streams records from an LSN or from the newest checkpoint.
//! - [`scan::Scanner`] is the one scanner behind open, readers, dump, verify and repair.
//! - [`repair`] plans and applies `truncate-corrupt` repairs that save every cut byte
//!   in the [`quarantine`] first, and restores them.
//! - [`salvage`] reads past damage, resynchronising on the next intact record.
//! - [`codec`] is the one record codec; [`segment`] names and lists segments;
//!   [`storage`] is the file-system seam that tests put faults behind.
//! - [`bench`] holds the workloads of `walctl bench`, each measured beside a
//!   plain-system-call baseline on the same disk.
//!
//! ```no_run
//! use walctl::writer::{Wal, WalOptions};
//! let wal = Wal::open("wal_data", WalOptions::default())?;
//! let lsn = wal.append(b"operation data")?; // durable when it returns
//! wal.checkpoint(b"state snapshot")?;
//! wal.close()?;
//! # Ok::<(), walctl::Error>(())
//! ```

#![warn(missing_docs)]

pub mod archive;
pub mod bench;
pub mod codec;
pub mod error;
pub mod prealloc;
pub mod quarantine;
mod readahead;
pub mod reader;
pub mod repair;
pub mod salvage;
pub mod scan;
pub mod segment;
pub mod storage;
pub mod writer;

/// The prost-generated `WAL_Entry` of `proto/wal.proto`.
pub mod proto {
    #![allow(missing_docs)]
    include!(concat!(env!("OUT_DIR"), "/wal.rs"));
}

pub use error::{Error, Problem, ProblemKind, Result, Severity};
