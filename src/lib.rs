//! walctl: a write-ahead log that reads and writes, byte for byte, the on-disk format
//! of the Go library `github.com/wizenheimer/wal`, without its weaknesses.
//!
//! The API at the crate root:
//! - [`Wal`] appends records (durably, by default), rotates segments, keeps retention
//!   from ever dropping what recovery needs, and repairs a torn tail on open after
//!   saving the bytes it cuts. [`Wal::read_all`] and [`Wal::read_from_checkpoint`]
//!   stream the log back (the Go library's `ReadAll` and `ReadFromCheckpoint`).
//! - [`WalReader`] reads a log without a lock, beside a running writer: from an LSN,
//!   from the newest checkpoint, or following it as it grows ([`Follow`]).
//! - [`EntryWriter`] and [`EntryReader`] frame records over any `io::Write` /
//!   `io::Read`, the very bytes of a segment.
//! - [`Error`] keeps the `std::io::Error` of every I/O failure as its
//!   [`source`](std::error::Error::source).
//!
//! Below them: [`scan::Scanner`] is the one scanner behind open, readers, dump, verify
//! and repair; [`repair`] plans and applies `truncate-corrupt` repairs that save every
//! cut byte in the [`quarantine`] first, and restores them; [`salvage`] reads past
//! damage; [`codec`] is the one record codec; [`segment`] names and lists segments;
//! [`storage`] is the file-system seam (with [`storage::MemStorage`] for tests).
//!
//! ```no_run
//! use walctl::{Wal, WalOptions};
//! let wal = Wal::open("wal_data", WalOptions::default())?;
//! let lsn = wal.append(b"operation data")?; // durable when it returns
//! wal.checkpoint(b"state snapshot")?;
//! for entry in wal.read_from_checkpoint()? {
//!     let entry = entry?;
//!     println!("{} {}", entry.lsn, entry.checkpoint);
//! }
//! wal.close()?;
//! # Ok::<(), walctl::Error>(())
//! ```

#![warn(missing_docs)]

pub mod archive;
pub mod codec;
pub mod digest;
mod entry;
pub mod error;
pub mod follow;
mod prealloc;
pub mod quarantine;
mod readahead;
pub mod reader;
pub mod repair;
pub mod salvage;
pub mod scan;
pub mod segment;
pub mod storage;
mod stream;
pub mod writer;

#[cfg(feature = "proto")]
pub mod proto;

pub use entry::Entry;
pub use error::{Error, Problem, ProblemKind, Result, Severity};
pub use follow::{CancelHandle, Follow};
pub use reader::{Entries, WalReader};
pub use stream::{EntryReader, EntryWriter};
pub use writer::{SyncPolicy, Wal, WalOptions};

/// README.md's Rust example, compiled (not run) by `cargo test --doc`, so that the
/// library section cannot drift from the API it shows.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
mod readme {}
