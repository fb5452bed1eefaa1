//! The archive's typed errors. None of them ever holds a credential: store errors are
//! kept as redacted text, and a refused signature is reported as "access denied" with
//! the endpoint and bucket only.

use std::io;
use std::path::PathBuf;

use crate::error::Problem;

/// Errors of [`crate::archive`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ArchiveError {
    /// The archive URL cannot be used.
    #[error("bad archive URL {url:?}: {reason}")]
    BadUrl {
        /// The URL as given.
        url: String,
        /// Why.
        reason: String,
    },
    /// The store refused the credentials (wrong key or secret, or no permission).
    #[error("access denied by {endpoint} (bucket {bucket}) while trying to {op}: check AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and the bucket's permissions")]
    AccessDenied {
        /// The endpoint asked.
        endpoint: String,
        /// The bucket.
        bucket: String,
        /// What was being done.
        op: String,
    },
    /// The bucket does not exist.
    #[error("bucket {bucket} does not exist at {endpoint} (while trying to {op})")]
    NoSuchBucket {
        /// The endpoint asked.
        endpoint: String,
        /// The bucket.
        bucket: String,
        /// What was being done.
        op: String,
    },
    /// The store could not be reached at all.
    #[error("cannot reach {endpoint} (bucket {bucket}) while trying to {op}: {reason}")]
    Unreachable {
        /// The endpoint asked.
        endpoint: String,
        /// The bucket.
        bucket: String,
        /// What was being done.
        op: String,
        /// What the client said (credentials removed).
        reason: String,
    },
    /// The store answered with an error.
    #[error("{op} {object}: {message}")]
    Store {
        /// What was being done.
        op: String,
        /// The object's URL.
        object: String,
        /// What the store said (credentials removed).
        message: String,
        /// The object does not exist.
        not_found: bool,
    },
    /// An object exists with other bytes than the segment it would hold.
    #[error("conflict: {object} already exists with different bytes ({detail}); refusing to overwrite it")]
    Conflict {
        /// The object's URL.
        object: String,
        /// How it differs.
        detail: String,
    },
    /// A sealed segment failed its local check and was not archived.
    #[error("{} failed its local check: {problem}; it was not archived", path.display())]
    LocalDamage {
        /// The segment file.
        path: PathBuf,
        /// The first problem in it.
        problem: Box<Problem>,
    },
    /// The directory to push holds no segment file.
    #[error("not a WAL directory: {} holds no segment files (segment-<N>); nothing was changed", dir.display())]
    NotALog {
        /// The directory.
        dir: PathBuf,
    },
    /// The archive does not hold what the operation needs.
    #[error("{message}")]
    Incomplete {
        /// What is missing or wrong.
        message: String,
        /// The archive operation that would show or fix it, if any.
        remedy: Option<Remedy>,
    },
    /// The manifest cannot be read or used.
    #[error("manifest {object}: {reason}")]
    Manifest {
        /// The manifest's URL.
        object: String,
        /// What is wrong.
        reason: String,
    },
    /// Local I/O failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The local path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The local log could not be read.
    #[error(transparent)]
    Log(#[from] crate::Error),
}

/// The archive operation that shows or fixes what an [`ArchiveError`] reports: the
/// library names it, a front end says how to run it (the CLI: `walctl archive ...`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Remedy {
    /// Rebuild the manifest from the segment objects ([`crate::archive::manifest::Manifest::rebuild`]).
    Rebuild,
    /// Compare the archive with its manifest ([`crate::archive::verify`]).
    Verify,
    /// Compare every object's bytes with the manifest (`verify` with `deep`).
    VerifyDeep,
}

impl ArchiveError {
    pub(crate) fn incomplete(message: String, remedy: Option<Remedy>) -> Self {
        ArchiveError::Incomplete { message, remedy }
    }

    /// What would show or fix this error, when an archive operation can.
    pub fn remedy(&self) -> Option<Remedy> {
        match self {
            ArchiveError::Incomplete { remedy, .. } => *remedy,
            ArchiveError::Manifest { .. } => Some(Remedy::Rebuild),
            _ => None,
        }
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        ArchiveError::Io {
            op,
            path: path.into(),
            source,
        }
    }

    /// Whether this error reports damaged data (a local segment that failed its check),
    /// as opposed to a failure to do the job.
    pub fn is_damage(&self) -> bool {
        matches!(self, ArchiveError::LocalDamage { .. })
    }
}
