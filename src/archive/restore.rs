//! `archive restore`: downloads an archive's segments in parallel into a new
//! directory, each checked against the manifest's sha256, optionally cut right after
//! an LSN. The files go to a `DIR.partial-<pid>` directory renamed to DIR only when
//! everything is there, so DIR never looks complete when it is not.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::error::{ArchiveError, Remedy};
use super::manifest::{Entry, Manifest};
use super::mem::OneSegment;
use super::store::Archive;
use super::Result;
use crate::digest::{sha256_hex, short_sha};

/// How to restore. Set with the builder methods:
/// `RestoreOptions::default().to_lsn(Some(42)).parallel(8)`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RestoreOptions {
    /// Restore only up to this LSN: the segment holding it is cut right after it.
    pub to_lsn: Option<u64>,
    /// Downloads in flight at once.
    pub parallel: usize,
}

impl Default for RestoreOptions {
    fn default() -> Self {
        RestoreOptions {
            to_lsn: None,
            parallel: 4,
        }
    }
}

impl RestoreOptions {
    /// Sets [`to_lsn`](Self::to_lsn) (`None`: restore everything).
    pub fn to_lsn(mut self, lsn: Option<u64>) -> Self {
        self.to_lsn = lsn;
        self
    }

    /// Sets [`parallel`](Self::parallel), the downloads in flight at once.
    pub fn parallel(mut self, n: usize) -> Self {
        self.parallel = n;
        self
    }
}

/// What a restore wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreSummary {
    /// The restored directory.
    pub dir: PathBuf,
    /// Segments written.
    pub segments: usize,
    /// Bytes written.
    pub bytes: u64,
    /// First LSN restored.
    pub first_lsn: Option<u64>,
    /// Last LSN restored.
    pub last_lsn: Option<u64>,
    /// With `to_lsn`: the segment cut and the length it was cut to.
    pub cut: Option<(String, u64)>,
}

/// Restores `archive` into the new directory `target` (see the module
/// documentation). `progress` is called with the bytes written so far.
pub fn restore(
    archive: &Archive,
    target: &Path,
    opts: &RestoreOptions,
    mut progress: impl FnMut(u64),
) -> Result<RestoreSummary> {
    if fs::symlink_metadata(target).is_ok() {
        return Err(ArchiveError::io(
            "restore into",
            target,
            io::Error::new(
                io::ErrorKind::AlreadyExists,
                "it already exists; walctl restores only into a new directory",
            ),
        ));
    }
    let manifest = Manifest::load(archive)?.ok_or_else(|| {
        ArchiveError::incomplete(
            format!("nothing to restore: {} has no manifest", archive.url()),
            Some(Remedy::Rebuild),
        )
    })?;
    let chosen = choose(archive, &manifest, opts.to_lsn)?;
    let listed = archive.list()?;
    if let Some(e) = chosen
        .iter()
        .find(|e| !listed.iter().any(|o| o.name == e.name))
    {
        return Err(ArchiveError::incomplete(
            format!(
                "{} is missing from {}: nothing was restored",
                e.name,
                archive.url()
            ),
            Some(Remedy::Verify),
        ));
    }

    let partial = partial_path(target)?;
    fs::create_dir(&partial).map_err(|e| ArchiveError::io("create", &partial, e))?;
    let res = download(archive, &partial, &chosen, opts, &mut progress).and_then(|summary| {
        sync_dir(&partial)?;
        fs::rename(&partial, target).map_err(|e| ArchiveError::io("rename into", target, e))?;
        if let Some(parent) = target.parent().filter(|p| !p.as_os_str().is_empty()) {
            sync_dir(parent)?;
        }
        Ok(RestoreSummary {
            dir: target.to_path_buf(),
            ..summary
        })
    });
    if res.is_err() {
        // Only the copies this restore downloaded are there; nothing else is removed.
        let _ = fs::remove_dir_all(&partial);
    }
    res
}

/// The entries to restore: all, or up to the one holding `to_lsn`. The archive must
/// be contiguous over them.
fn choose(archive: &Archive, manifest: &Manifest, to_lsn: Option<u64>) -> Result<Vec<Entry>> {
    let entries = &manifest.segments;
    if entries.is_empty() {
        return Err(ArchiveError::incomplete(
            format!("nothing to restore: {} holds no segment", archive.url()),
            None,
        ));
    }
    for w in entries.windows(2) {
        let (a, b) = (&w[0], &w[1]);
        let lsn_ok = match (a.last_lsn, b.first_lsn) {
            (Some(l), Some(f)) => f == l.saturating_add(1),
            _ => true,
        };
        if a.id.checked_add(1) != Some(b.id) || !lsn_ok {
            return Err(ArchiveError::incomplete(
                format!(
                    "{} is not contiguous between {} and {}: nothing was restored",
                    archive.url(),
                    a.name,
                    b.name
                ),
                Some(Remedy::Verify),
            ));
        }
    }
    let Some(lsn) = to_lsn else {
        return Ok(entries.clone());
    };
    let first = entries.iter().find_map(|e| e.first_lsn);
    let last = entries.iter().rev().find_map(|e| e.last_lsn);
    match (first, last) {
        (Some(f), Some(l)) if f <= lsn && lsn <= l => {}
        _ => {
            let held = match (first, last) {
                (Some(f), Some(l)) => format!("{f}..={l}"),
                _ => "none".into(),
            };
            return Err(ArchiveError::incomplete(
                format!(
                    "LSN {lsn}, the point to restore to, is not in {} (it holds LSN {held}); \
                     nothing was restored",
                    archive.url(),
                ),
                None,
            ));
        }
    }
    Ok(entries
        .iter()
        .take_while(|e| e.first_lsn.is_none_or(|f| f <= lsn))
        .cloned()
        .collect())
}

fn download(
    archive: &Archive,
    dir: &Path,
    chosen: &[Entry],
    opts: &RestoreOptions,
    progress: &mut dyn FnMut(u64),
) -> Result<RestoreSummary> {
    let names: Vec<String> = chosen.iter().map(|e| e.name.clone()).collect();
    let mut summary = RestoreSummary {
        dir: dir.to_path_buf(),
        segments: 0,
        bytes: 0,
        first_lsn: chosen.iter().find_map(|e| e.first_lsn),
        last_lsn: None,
        cut: None,
    };
    let mut i = 0;
    archive.get_each(&names, opts.parallel, |name, mut bytes| {
        let e = &chosen[i];
        i += 1;
        let sha = sha256_hex(&bytes);
        if sha != e.sha256 || bytes.len() as u64 != e.size {
            return Err(ArchiveError::incomplete(
                format!(
                    "{} does not match the manifest (sha256 {}, recorded {}): nothing was \
                     restored",
                    archive.object_url(name),
                    short_sha(&sha),
                    short_sha(&e.sha256)
                ),
                Some(Remedy::VerifyDeep),
            ));
        }
        summary.last_lsn = e.last_lsn;
        if let Some(lsn) = opts.to_lsn.filter(|_| i == chosen.len()) {
            if e.last_lsn != Some(lsn) {
                let shared = Arc::new(bytes);
                let end = OneSegment::new(archive.url(), e.id, shared.clone())
                    .end_of(lsn)?
                    .ok_or_else(|| {
                        ArchiveError::incomplete(
                            format!(
                                "LSN {lsn} is not an intact record of {}",
                                archive.object_url(name)
                            ),
                            None,
                        )
                    })?;
                bytes = Arc::try_unwrap(shared).unwrap_or_else(|b| (*b).clone());
                bytes.truncate(end as usize);
                summary.cut = Some((name.to_string(), end));
            }
            summary.last_lsn = Some(lsn);
        }
        let path = dir.join(name);
        let mut f = File::options()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| ArchiveError::io("create", &path, e))?;
        f.write_all(&bytes)
            .and_then(|_| f.sync_all())
            .map_err(|e| ArchiveError::io("write", &path, e))?;
        summary.segments += 1;
        summary.bytes += bytes.len() as u64;
        progress(summary.bytes);
        Ok(())
    })?;
    Ok(summary)
}

fn partial_path(target: &Path) -> Result<PathBuf> {
    let name = target.file_name().ok_or_else(|| {
        ArchiveError::io(
            "restore into",
            target,
            io::Error::new(io::ErrorKind::InvalidInput, "not a directory name"),
        )
    })?;
    let mut partial = name.to_os_string();
    partial.push(format!(".partial-{}", std::process::id()));
    Ok(target.with_file_name(partial))
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(|e| ArchiveError::io("fsync", dir, e))
}
