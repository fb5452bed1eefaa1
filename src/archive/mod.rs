//! Archiving a log beyond one machine: sealed segments pushed to S3-compatible object
//! storage (or `file://`, `memory://`), listed, verified and restored from there.
//!
//! - [`marker`] is the local record of what the archives hold; the writer's retention
//!   reads it and never deletes a segment an archive does not hold yet. It needs no
//!   object-store code and is always built.
//! - The rest is behind the `s3` feature (on by default): `Archive` connects to a
//!   store through `object_store` on a small current-thread tokio runtime, so that
//!   this module's API is synchronous like the rest of the library.
//! - `ArchiveStorage` (`s3`) reads an archive in place as a log directory (read-only).
//!
//! Guarantees: a segment object is never overwritten (conditional PUTs, and on stores
//! that ignore them a check before writing and a read-back after); every segment is
//! checked record by record before it leaves the machine; a restore is byte-identical
//! and never leaves its target looking complete when it is not.

pub mod marker;

#[cfg(feature = "s3")]
mod error;
#[cfg(feature = "s3")]
pub mod manifest;
#[cfg(feature = "s3")]
mod mem;
#[cfg(feature = "s3")]
mod push;
#[cfg(feature = "s3")]
mod restore;
#[cfg(feature = "s3")]
mod store;
#[cfg(feature = "s3")]
mod verify;
#[cfg(feature = "s3")]
mod view;

#[cfg(feature = "s3")]
pub use error::{ArchiveError, Remedy};
#[cfg(feature = "s3")]
pub use push::{push, PushEvent, PushSummary};
#[cfg(feature = "s3")]
pub use restore::{restore, RestoreOptions, RestoreSummary};
#[cfg(feature = "s3")]
pub use store::{is_archive_url, Archive, Connect, ObjectInfo, WriteMode};
#[cfg(feature = "s3")]
pub use verify::{verify, ArchiveProblem, ProblemKind, VerifyReport};
#[cfg(feature = "s3")]
pub use view::ArchiveStorage;

/// Result with [`ArchiveError`].
#[cfg(feature = "s3")]
pub type Result<T, E = ArchiveError> = std::result::Result<T, E>;
