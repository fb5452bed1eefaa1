//! `archive push`: every sealed segment (all but the newest) the archive does not hold
//! yet is checked record by record, uploaded without overwriting anything, confirmed,
//! recorded in the manifest and then in the directory's marker. Each step can be cut
//! short by a crash: the next push finds what is there and uploads nothing twice.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::error::ArchiveError;
use super::manifest::{Entry, Manifest};
use super::marker::Marker;
use super::mem::OneSegment;
use super::store::{Archive, PutOutcome, WriteMode};
use super::Result;
use crate::digest::{sha256_hex, short_sha};
use crate::error::{Problem, ProblemKind, Severity};
use crate::segment::{list_segments, SegmentFile};
use crate::storage::FileStorage;

/// What a push did with one segment, as it goes.
#[derive(Debug)]
pub enum PushEvent<'a> {
    /// The store's write mode, found before the first upload.
    WriteMode(&'a WriteMode),
    /// The segment was uploaded, confirmed and recorded.
    Uploaded(&'a Entry),
    /// The archive already held the segment, byte-identical (an earlier push was cut
    /// short after uploading it); it is recorded now, not uploaded again.
    Recorded(&'a Entry),
}

/// What a push did in total.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PushSummary {
    /// Sealed segments in the directory.
    pub sealed: usize,
    /// Segments uploaded by this push.
    pub uploaded: usize,
    /// Their bytes.
    pub uploaded_bytes: u64,
    /// Segments found already in the archive and recorded by this push.
    pub recorded: usize,
    /// Segments the archive held before this push.
    pub held: usize,
}

/// Pushes the sealed segments of the log in `dir` to `archive`, oldest first,
/// stopping at the first that cannot be archived (a local problem, a conflict, a
/// store error): the archive never holds a segment without every older one.
pub fn push(
    archive: &Archive,
    dir: &Path,
    mut on: impl FnMut(PushEvent<'_>),
) -> Result<PushSummary> {
    let storage =
        FileStorage::open(dir).map_err(|e| ArchiveError::io("open log directory", dir, e))?;
    let segments = list_segments(&storage)?;
    if segments.is_empty() {
        return Err(ArchiveError::NotALog {
            dir: dir.to_path_buf(),
        });
    }
    let sealed = &segments[..segments.len().saturating_sub(1)];
    let url = archive.url().to_string();
    let marker_path = dir.join(super::marker::MARKER_FILE);
    let mut marker = Marker::load(&storage)
        .map_err(|e| ArchiveError::io("read archive marker", &marker_path, e))?
        .unwrap_or_default();
    let mut summary = PushSummary {
        sealed: sealed.len(),
        ..PushSummary::default()
    };
    let todo: Vec<_> = sealed
        .iter()
        .filter(|s| !marker.holds(&url, s.id))
        .collect();
    summary.held = sealed.len() - todo.len();
    let registered = marker.archives.contains_key(&url);
    if todo.is_empty() && registered {
        return Ok(summary);
    }
    // The store is asked before the directory is touched: wrong credentials or an
    // unreachable store leave the log exactly as it was.
    let manifest = Manifest::load(archive)?.unwrap_or_default();
    // The probe is a write: a bucket that does not exist or a read-only key fails
    // here, still before the directory is touched.
    let mode = archive.write_mode()?;
    if !registered {
        // From now on retention keeps every segment this archive does not hold.
        marker.version = 1;
        marker.archives.insert(url.clone(), Vec::new());
        marker
            .save(&storage)
            .map_err(|e| ArchiveError::io("write archive marker", &marker_path, e))?;
    }
    if todo.is_empty() {
        return Ok(summary);
    }
    on(PushEvent::WriteMode(&mode));
    let mut book = Book {
        manifest,
        marker,
        pending: Vec::new(),
        manifest_dirty: false,
        since: Instant::now(),
    };
    let mut res = Ok(());
    for seg in todo {
        res = push_one(archive, dir, seg, &mut book, &mut summary, &mut on);
        if res.is_ok() && (book.pending.len() >= FLUSH_EVERY || book.since.elapsed() >= FLUSH_AFTER)
        {
            res = book.flush(archive, &storage, &url, &marker_path);
        }
        if res.is_err() {
            break;
        }
    }
    // What was done before a failure is recorded too.
    let flushed = book.flush(archive, &storage, &url, &marker_path);
    res.and(flushed)?;
    Ok(summary)
}

/// The manifest and marker are written after this many segments...
const FLUSH_EVERY: usize = 64;
/// ...or this long after the last write, and when the push ends.
const FLUSH_AFTER: Duration = Duration::from_secs(2);

/// What a push has to record: the manifest (in the store) and then the marker (in
/// the directory), always in that order, so that the marker never claims a segment
/// the manifest does not list. Between two flushes a crash leaves objects the
/// manifest does not list yet; the next push finds them and records them.
struct Book {
    manifest: Manifest,
    marker: Marker,
    /// Segments in the manifest (or about to be) that the marker does not hold yet.
    pending: Vec<u64>,
    manifest_dirty: bool,
    since: Instant,
}

impl Book {
    fn flush(
        &mut self,
        archive: &Archive,
        storage: &FileStorage,
        url: &str,
        marker_path: &Path,
    ) -> Result<()> {
        self.since = Instant::now();
        if self.pending.is_empty() {
            return Ok(());
        }
        if self.manifest_dirty {
            self.manifest.save(archive)?;
            self.manifest_dirty = false;
        }
        for id in self.pending.drain(..) {
            self.marker.add(url, id);
        }
        self.marker
            .save(storage)
            .map_err(|e| ArchiveError::io("write archive marker", marker_path, e))
    }
}

/// Pushes one sealed segment: recorded already, or checked and uploaded.
fn push_one(
    archive: &Archive,
    dir: &Path,
    seg: &SegmentFile,
    book: &mut Book,
    summary: &mut PushSummary,
    on: &mut impl FnMut(PushEvent<'_>),
) -> Result<()> {
    let path = dir.join(&seg.name);
    let bytes = std::fs::read(&path).map_err(|e| ArchiveError::io("read", &path, e))?;
    let sha = sha256_hex(&bytes);
    let size = bytes.len() as u64;
    let (entry, outcome) = match book.manifest.get(seg.id).cloned() {
        Some(e) if e.sha256 != sha || e.size != size => {
            return Err(ArchiveError::Conflict {
                object: archive.object_url(&seg.name),
                detail: format!(
                    "the archive's manifest records {} bytes with sha256 {} for it, the local \
                     segment has {size} bytes with sha256 {}: is this the same log?",
                    e.size,
                    short_sha(&e.sha256),
                    short_sha(&sha)
                ),
            })
        }
        // Recorded by an earlier push whose marker write was lost. The object must
        // still be there before the marker lets retention delete the local copy.
        Some(e) if archive.head(&seg.name)?.is_some_and(|o| o.size == size) => {
            (e, PutOutcome::AlreadyThere)
        }
        _ => {
            let done = upload(archive, &book.manifest, dir, seg, bytes, sha)?;
            book.manifest.insert(done.0.clone());
            book.manifest_dirty = true;
            done
        }
    };
    book.pending.push(seg.id);
    match outcome {
        PutOutcome::Created => {
            summary.uploaded += 1;
            summary.uploaded_bytes += entry.size;
            on(PushEvent::Uploaded(&entry));
        }
        PutOutcome::AlreadyThere => {
            summary.recorded += 1;
            on(PushEvent::Recorded(&entry));
        }
    }
    Ok(())
}

/// Checks one segment's bytes record by record (and its first LSN against the
/// segment before it), and uploads them.
fn upload(
    archive: &Archive,
    manifest: &Manifest,
    dir: &Path,
    seg: &SegmentFile,
    bytes: Vec<u8>,
    sha: String,
) -> Result<(Entry, PutOutcome)> {
    let path = dir.join(&seg.name);
    let bytes = Arc::new(bytes);
    let checked = OneSegment::new(dir, seg.id, bytes.clone()).check()?;
    if let Some(p) = checked.problem {
        return Err(ArchiveError::LocalDamage {
            path,
            problem: Box::new(p),
        });
    }
    check_continuity(manifest, &checked, &path)?;
    let bytes = Arc::try_unwrap(bytes).unwrap_or_else(|b| (*b).clone());
    let (outcome, e_tag) = archive.put_new(&seg.name, bytes, &sha)?;
    let entry = Entry {
        e_tag,
        ..Entry::new(&checked, sha)
    };
    Ok((entry, outcome))
}

/// The segment's first LSN must follow the last LSN of the segment before it in the
/// archive, when the archive holds that one.
fn check_continuity(
    manifest: &Manifest,
    seg: &crate::scan::SegmentSummary,
    path: &Path,
) -> Result<()> {
    let prev = seg
        .id
        .checked_sub(1)
        .and_then(|p| manifest.get(p))
        .and_then(|e| e.last_lsn);
    if let (Some(prev), Some(first)) = (prev, seg.first_lsn) {
        if first != prev.saturating_add(1) {
            let kind = if first > prev {
                ProblemKind::LsnGap {
                    expected: prev + 1,
                    found: first,
                }
            } else {
                ProblemKind::LsnRegression {
                    previous: prev,
                    found: first,
                }
            };
            return Err(ArchiveError::LocalDamage {
                path: path.to_path_buf(),
                problem: Box::new(Problem {
                    segment: seg.name.clone(),
                    segment_id: seg.id,
                    offset: 0,
                    severity: Severity::Corruption,
                    kind,
                    last_good_lsn: Some(prev),
                    cause: Default::default(),
                }),
            });
        }
    }
    Ok(())
}
