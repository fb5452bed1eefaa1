//! The quarantine: every byte walctl ever cuts from a log is first copied here,
//! fsynced, and described by a JSON manifest, so that nothing is simply deleted and
//! any cut can be put back.
//!
//! Layout inside the log directory (a name that can never parse as a segment):
//!
//! ```text
//! .walctl-quarantine/
//!   2026-11-25T043000Z-1234-0/      one entry per repair or open-time cut
//!     manifest.json
//!     segment-3@8192                bytes cut from segment-3 starting at offset 8192
//! ```
//!
//! An entry is built under `<id>.partial`, fsynced, then renamed into place: a crash
//! leaves either no entry or a complete one (a stray `.partial` holds only copies).
//!
//! The entries may live elsewhere instead (a [`Location`] of its own, the command
//! line's `--quarantine-dir DIR`), for instance on another file system when the log's
//! is full; each entry then sits directly in that directory and its manifest records
//! where it is and which log its bytes came from.
//!
//! [`verify`] re-reads an entry's copies against its manifest; [`restore`] puts the
//! bytes of an entry back where they were cut, byte for byte, and only when that
//! cannot mix old records with records written since.

use std::io::Read;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::digest::hex;
pub use crate::digest::sha256_hex;

use crate::error::{Error, Result};
use crate::segment::{list_segments, parse_segment_name};
use crate::storage::{EntryKind, Storage};

/// Name of the quarantine directory inside a log directory.
pub const QUARANTINE_DIR: &str = ".walctl-quarantine";
/// Name of an entry's manifest.
pub const MANIFEST: &str = "manifest.json";
/// Written into an entry once its bytes were restored (holding the time).
pub const RESTORED: &str = "restored";
const PARTIAL: &str = ".partial";

/// Bytes to cut: from `offset` to the end of `file` (offset 0 with `whole_file` means
/// the file itself goes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cut {
    /// Segment file name.
    pub file: String,
    /// First byte to cut.
    pub offset: u64,
    /// The whole file is removed, not truncated.
    pub whole_file: bool,
}

/// One saved piece of a quarantine entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestItem {
    /// The file the bytes came from.
    pub file: String,
    /// Where they started in it.
    pub offset: u64,
    /// How many bytes.
    pub length: u64,
    /// sha256 of the bytes, hex.
    pub sha256: String,
    /// Whether the whole file was removed.
    pub whole_file: bool,
    /// Name of the copy inside the entry.
    pub saved_as: String,
    /// Size of the original file before the cut.
    pub original_size: u64,
}

/// The manifest of a quarantine entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Entry id (its directory name).
    pub id: String,
    /// When it was made, RFC 3339 UTC.
    pub time: String,
    /// Why the bytes were cut.
    pub reason: String,
    /// Which policy or operation cut them.
    pub policy: String,
    /// walctl version that cut them.
    pub walctl_version: String,
    /// The LSN the next record appended after this cut gets: the first LSN cut (the
    /// point in time), which a writer keeps to when the cut left the log without
    /// records, so that no LSN is ever given out twice ([`lsn_floor_at`]). Absent in
    /// manifests of walctl versions that did not record it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_lsn: Option<u64>,
    /// The pieces.
    pub items: Vec<ManifestItem>,
    /// Where the entry was saved, when not inside the log directory
    /// (`--quarantine-dir`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub saved_in: Option<String>,
    /// The log directory the bytes were cut from, when the entry is kept outside it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_dir: Option<String>,
}

/// Where quarantine entries are kept: the log's own `.walctl-quarantine/`, or a
/// directory of their own.
#[derive(Clone, Copy)]
pub struct Location<'a> {
    storage: &'a dyn Storage,
    /// Directory of the entries inside `storage` ("" for its root).
    base: &'static str,
}

impl std::fmt::Debug for Location<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Location({})", self.path().display())
    }
}

impl<'a> Location<'a> {
    /// `.walctl-quarantine/` inside the log directory `log` (the default).
    pub fn in_log(log: &'a dyn Storage) -> Self {
        Location {
            storage: log,
            base: QUARANTINE_DIR,
        }
    }

    /// The directory `storage` is opened on: one entry per subdirectory.
    pub fn dir(storage: &'a dyn Storage) -> Self {
        Location { storage, base: "" }
    }

    /// Whether the entries live outside the log directory.
    pub fn is_separate(&self) -> bool {
        self.base.is_empty()
    }

    /// The directory holding the entries.
    pub fn path(&self) -> PathBuf {
        self.storage.root().join(self.base)
    }

    /// Path of an entry's directory.
    pub fn entry_dir(&self, id: &str) -> PathBuf {
        self.path().join(id)
    }

    /// Path of a saved piece of entry `id`.
    pub fn saved_file(&self, id: &str, item: &ManifestItem) -> PathBuf {
        self.storage
            .root()
            .join(self.entry_path(id, &item.saved_as))
    }

    fn rel(&self, rest: &str) -> String {
        if self.base.is_empty() {
            rest.to_string()
        } else {
            format!("{}/{rest}", self.base)
        }
    }

    fn entry_path(&self, id: &str, name: &str) -> String {
        self.rel(&format!("{id}/{name}"))
    }

    fn err(&self, op: &'static str, name: &str) -> impl Fn(std::io::Error) -> Error {
        let path = self.storage.root().join(name);
        move |e| Error::io(op, path.clone(), e)
    }
}

fn new_id() -> String {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let now = SystemTime::now();
    let stamp = humantime::format_rfc3339_seconds(now)
        .to_string()
        .replace(':', "");
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = now
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{stamp}-{}-{nanos:09}-{n}", std::process::id())
}

/// Why and how bytes are cut, as a manifest records it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CutInfo<'a> {
    /// Why the bytes are cut.
    pub reason: &'a str,
    /// Which policy or operation cuts them.
    pub policy: &'a str,
    /// The LSN the next record appended after the cut gets ([`Manifest::next_lsn`]).
    pub next_lsn: Option<u64>,
}

/// Copies the bytes of every cut, from the log kept by `log`, into a new, fsynced
/// quarantine entry at `q` and returns its manifest. Nothing in the log is changed:
/// the caller cuts afterwards.
pub(crate) fn save_at(
    log: &dyn Storage,
    q: Location<'_>,
    info: CutInfo<'_>,
    cuts: &[Cut],
) -> Result<Manifest> {
    let storage = q.storage;
    if !q.base.is_empty() {
        match storage.create_dir(q.base) {
            Ok(()) => storage.sync_dir("").map_err(q.err("fsync", ""))?,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(q.err("create", q.base)(e)),
        }
    }
    let id = new_id();
    let partial = format!("{id}{PARTIAL}");
    let pdir = q.rel(&partial);
    storage.create_dir(&pdir).map_err(q.err("create", &pdir))?;
    let saved = fill_entry(log, q, &id, &partial, info, cuts);
    if saved.is_err() {
        // A half-made copy is useless (the log still holds every byte, since the
        // caller cuts nothing after an error) and takes space on what may be a full
        // disk: remove it, as far as that goes, under whichever name it got to (the
        // rename may have happened before the fsync after it failed). A crash here
        // leaves it behind instead, which is harmless: `.partial` entries are never
        // listed or restored.
        for dir_name in [partial.as_str(), id.as_str()] {
            let dir = q.rel(dir_name);
            if let Ok(entries) = storage.list(&dir) {
                for e in entries {
                    let _ = storage.remove_file(&q.entry_path(dir_name, &e.name));
                }
                let _ = storage.remove_dir(&dir);
            }
        }
    }
    saved
}

/// Writes the copies and the manifest of entry `id` into its `.partial` directory,
/// fsyncs them, and renames the directory to its final name.
fn fill_entry(
    log: &dyn Storage,
    q: Location<'_>,
    id: &str,
    partial: &str,
    info: CutInfo<'_>,
    cuts: &[Cut],
) -> Result<Manifest> {
    let root = log.root().to_path_buf();
    let io = |op: &'static str, name: &str| {
        let path = root.join(name);
        move |e| Error::io(op, path, e)
    };
    let storage = q.storage;
    let pdir = q.rel(partial);
    let mut items = Vec::new();
    let mut buf = vec![0u8; 1 << 20];
    for cut in cuts {
        let mut src = log.open_read(&cut.file).map_err(io("open", &cut.file))?;
        let size = src.size().map_err(io("stat", &cut.file))?;
        let offset = if cut.whole_file {
            0
        } else {
            cut.offset.min(size)
        };
        src.seek_to(offset).map_err(io("seek", &cut.file))?;
        let saved_as = if cut.whole_file {
            cut.file.clone()
        } else {
            format!("{}@{offset}", cut.file)
        };
        let dst_name = q.entry_path(partial, &saved_as);
        let mut dst = storage
            .create(&dst_name)
            .map_err(q.err("create", &dst_name))?;
        let mut hasher = Sha256::new();
        let mut left = size - offset;
        while left > 0 {
            let want = left.min(buf.len() as u64) as usize;
            let n = src.read(&mut buf[..want]).map_err(io("read", &cut.file))?;
            if n == 0 {
                return Err(Error::Quarantine {
                    id: id.to_string(),
                    reason: format!("{} shrank while being copied", cut.file),
                });
            }
            hasher.update(&buf[..n]);
            dst.write_all(&buf[..n])
                .map_err(q.err("write", &dst_name))?;
            left -= n as u64;
        }
        dst.sync_data().map_err(q.err("fsync", &dst_name))?;
        items.push(ManifestItem {
            file: cut.file.clone(),
            offset,
            length: size - offset,
            sha256: hex(&hasher.finalize()),
            whole_file: cut.whole_file,
            saved_as,
            original_size: size,
        });
    }
    let manifest = Manifest {
        id: id.to_string(),
        time: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        reason: info.reason.to_string(),
        policy: info.policy.to_string(),
        walctl_version: env!("CARGO_PKG_VERSION").to_string(),
        next_lsn: info.next_lsn,
        items,
        saved_in: q
            .is_separate()
            .then(|| q.entry_dir(id).to_string_lossy().into_owned()),
        log_dir: q
            .is_separate()
            .then(|| log.root().to_string_lossy().into_owned()),
    };
    let json = serde_json::to_vec_pretty(&manifest).expect("a manifest always serializes");
    let mname = q.entry_path(partial, MANIFEST);
    let mut m = storage.create(&mname).map_err(q.err("create", &mname))?;
    m.write_all(&json).map_err(q.err("write", &mname))?;
    m.sync_data().map_err(q.err("fsync", &mname))?;
    storage.sync_dir(&pdir).map_err(q.err("fsync", &pdir))?;
    let fdir = q.rel(id);
    storage
        .rename(&pdir, &fdir)
        .map_err(q.err("rename", &pdir))?;
    storage.sync_dir(q.base).map_err(q.err("fsync", q.base))?;
    Ok(manifest)
}

/// Reads the manifest of entry `id`.
pub fn load(storage: &dyn Storage, id: &str) -> Result<Manifest> {
    load_at(Location::in_log(storage), id)
}

/// [`load`] from the entries at `q`. An id with no entry there is
/// [`Error::NoSuchEntry`].
pub(crate) fn load_at(q: Location<'_>, id: &str) -> Result<Manifest> {
    let storage = q.storage;
    if id.is_empty() || id.contains('/') || id.starts_with('.') || id.ends_with(PARTIAL) {
        return Err(Error::Quarantine {
            id: id.into(),
            reason: "not a quarantine entry id".into(),
        });
    }
    let name = q.entry_path(id, MANIFEST);
    let mut f = match storage.open_read(&name) {
        Ok(f) => f,
        Err(e) => {
            // No entry by that name at all (not a damaged one): say so.
            let listed = storage.list(q.base);
            let absent = match &listed {
                Ok(entries) => !entries.iter().any(|d| d.name == id),
                Err(l) => l.kind() == std::io::ErrorKind::NotFound,
            };
            if e.kind() == std::io::ErrorKind::NotFound && absent {
                return Err(Error::NoSuchEntry {
                    id: id.into(),
                    dir: q.path(),
                });
            }
            return Err(Error::io("open", storage.root().join(&name), e));
        }
    };
    let size = f
        .size()
        .map_err(|e| Error::io("stat", storage.root().join(&name), e))?;
    if size > 16 << 20 {
        return Err(Error::Quarantine {
            id: id.into(),
            reason: format!("manifest of {size} bytes is too large"),
        });
    }
    let mut s = Vec::with_capacity(size as usize);
    f.read_to_end(&mut s)
        .map_err(|e| Error::io("read", storage.root().join(&name), e))?;
    serde_json::from_slice(&s).map_err(|e| Error::Quarantine {
        id: id.into(),
        reason: format!("unreadable manifest: {e}"),
    })
}

/// Every complete quarantine entry, oldest first; an entry that cannot be read is
/// an error (see [`entries`] to list around it).
pub fn list(storage: &dyn Storage) -> Result<Vec<Manifest>> {
    entries(storage)?.into_iter().map(|(_, m)| m).collect()
}

/// The order of entries in time: the id's second, then its nanoseconds, process and
/// counter (`<second>-<pid>-<nanos>-<n>`; a string sort would let the pid decide
/// within a second).
fn id_order(id: &str) -> (String, u64, u64, u64, String) {
    let mut parts = id.rsplitn(4, '-');
    let n = parts.next().and_then(|p| p.parse().ok());
    let nanos = parts.next().and_then(|p| p.parse().ok());
    let pid = parts.next().and_then(|p| p.parse().ok());
    match (parts.next(), pid, nanos, n) {
        (Some(stamp), Some(pid), Some(nanos), Some(n)) => {
            (stamp.to_string(), nanos, pid, n, String::new())
        }
        _ => (id.to_string(), 0, 0, 0, id.to_string()),
    }
}

/// Every entry of the quarantine by id, in id order, each with its manifest or the
/// reason it cannot be read: one damaged entry (or a stray directory) does not hide
/// the others. Half-made (`.partial`) entries are not listed.
pub fn entries(storage: &dyn Storage) -> Result<Vec<(String, Result<Manifest>)>> {
    entries_at(Location::in_log(storage))
}

/// [`entries`] at `q`, oldest first.
pub fn entries_at(q: Location<'_>) -> Result<Vec<(String, Result<Manifest>)>> {
    let entries = match q.storage.list(q.base) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("list", q.path(), e)),
    };
    let mut ids: Vec<String> = entries
        .into_iter()
        .filter(|e| e.kind == EntryKind::Dir && !e.name.ends_with(PARTIAL))
        .map(|e| e.name)
        .collect();
    ids.sort_by_cached_key(|id| id_order(id));
    Ok(ids
        .into_iter()
        .map(|id| {
            let m = load_at(q, &id);
            (id, m)
        })
        .collect())
}

/// [`lsn_floor_at`] of the log's own quarantine.
pub(crate) fn lsn_floor(storage: &dyn Storage) -> Result<Option<u64>> {
    lsn_floor_at(Location::in_log(storage))
}

/// The lowest LSN a writer may give out when the log holds no record: the highest
/// [`Manifest::next_lsn`] among the readable quarantine entries at `q` (`None`: no
/// entry records one). A cut that left the log empty must not let LSNs restart at 1.
pub fn lsn_floor_at(q: Location<'_>) -> Result<Option<u64>> {
    Ok(entries_at(q)?
        .into_iter()
        .filter_map(|(_, m)| m.ok().and_then(|m| m.next_lsn))
        .max())
}

const COPY_CHUNK: usize = 1 << 20;

fn quarantine_err(id: &str, reason: String) -> Error {
    Error::Quarantine {
        id: id.into(),
        reason,
    }
}

/// The segment id an item names, after checking that its names cannot point
/// anywhere but a segment of this log and a file of this entry.
fn item_segment(id: &str, item: &ManifestItem) -> Result<u64> {
    let seg = parse_segment_name(&item.file).ok_or_else(|| {
        quarantine_err(
            id,
            format!(
                "manifest names {:?}, which is not a segment file",
                item.file
            ),
        )
    })?;
    let s = &item.saved_as;
    if s.is_empty() || s.contains('/') || s.starts_with('.') || s == MANIFEST {
        return Err(quarantine_err(
            id,
            format!("manifest names {s:?} as a saved copy, which is not a file of the entry"),
        ));
    }
    if item.whole_file && item.offset != 0 {
        return Err(quarantine_err(
            id,
            format!(
                "manifest says all of {} was saved, but from offset {}",
                item.file, item.offset
            ),
        ));
    }
    Ok(seg)
}

/// Length and sha256 of a whole file, streamed.
fn digest(storage: &dyn Storage, name: &str) -> Result<(u64, String)> {
    let path = storage.root().join(name);
    let mut f = storage
        .open_read(name)
        .map_err(|e| Error::io("open", &path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; COPY_CHUNK];
    let mut total = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(|e| Error::io("read", &path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    Ok((total, hex(&hasher.finalize())))
}

/// Checks that every saved copy of `manifest` is present, with the length and sha256
/// its manifest records, and that its names are sane. Changes nothing.
pub fn verify(storage: &dyn Storage, manifest: &Manifest) -> Result<()> {
    verify_at(Location::in_log(storage), manifest)
}

/// [`verify`] of an entry at `q`.
pub(crate) fn verify_at(q: Location<'_>, manifest: &Manifest) -> Result<()> {
    for item in &manifest.items {
        item_segment(&manifest.id, item)?;
        let name = q.entry_path(&manifest.id, &item.saved_as);
        let (len, sha) = digest(q.storage, &name)?;
        if len != item.length || sha != item.sha256 {
            return Err(quarantine_err(
                &manifest.id,
                format!(
                    "saved copy {name} is {len} bytes with sha256 {sha}, but the manifest \
                     records {} bytes with sha256 {}: the copy is damaged",
                    item.length, item.sha256
                ),
            ));
        }
    }
    Ok(())
}

/// Whether `len` bytes of `a` from `a_off` equal those of `b` from `b_off`.
fn same_bytes(
    (sa, a, a_off): (&dyn Storage, &str, u64),
    (sb, b, b_off): (&dyn Storage, &str, u64),
    len: u64,
) -> Result<bool> {
    let open = |storage: &dyn Storage,
                name: &str,
                off: u64|
     -> Result<Box<dyn crate::storage::ReadFile>> {
        let path = storage.root().join(name);
        let mut f = storage
            .open_read(name)
            .map_err(|e| Error::io("open", &path, e))?;
        f.seek_to(off).map_err(|e| Error::io("seek", &path, e))?;
        Ok(f)
    };
    let (mut fa, mut fb) = (open(sa, a, a_off)?, open(sb, b, b_off)?);
    let (mut ba, mut bb) = (vec![0u8; COPY_CHUNK], vec![0u8; COPY_CHUNK]);
    let mut left = len;
    while left > 0 {
        let want = left.min(COPY_CHUNK as u64) as usize;
        let ra = crate::storage::read_up_to(&mut *fa, &mut ba[..want])
            .map_err(|e| Error::io("read", sa.root().join(a), e))?;
        let rb = crate::storage::read_up_to(&mut *fb, &mut bb[..want])
            .map_err(|e| Error::io("read", sb.root().join(b), e))?;
        if ra != want || rb != want || ba[..want] != bb[..want] {
            return Ok(false);
        }
        left -= want as u64;
    }
    Ok(true)
}

/// Appends the bytes of saved copy `src` from `from` to its end onto `dst`, and
/// fdatasyncs `dst`.
fn copy_out(
    (storage, src): (&dyn Storage, &str),
    from: u64,
    dst: &mut dyn crate::storage::WriteFile,
    dst_path: PathBuf,
) -> Result<u64> {
    let src_path = storage.root().join(src);
    let mut f = storage
        .open_read(src)
        .map_err(|e| Error::io("open", &src_path, e))?;
    f.seek_to(from)
        .map_err(|e| Error::io("seek", &src_path, e))?;
    let mut buf = vec![0u8; COPY_CHUNK];
    let mut total = 0u64;
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| Error::io("read", &src_path, e))?;
        if n == 0 {
            break;
        }
        dst.write_all(&buf[..n])
            .map_err(|e| Error::io("write", &dst_path, e))?;
        total += n as u64;
    }
    dst.sync_data()
        .map_err(|e| Error::io("fsync", &dst_path, e))?;
    Ok(total)
}

/// What [`restore`] did with one saved piece.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestoreAction {
    /// The saved bytes were appended to the segment, which ended where the cut began
    /// (or part-way through them, after an interrupted restore).
    Appended,
    /// The segment did not exist and was recreated from the saved copy.
    Created,
    /// The segment already holds exactly these bytes: nothing to do.
    AlreadyPresent,
}

/// One saved piece put back by [`restore`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RestoredItem {
    /// The segment.
    pub file: String,
    /// Where the piece starts in it.
    pub offset: u64,
    /// Length of the piece.
    pub length: u64,
    /// What was done.
    pub action: RestoreAction,
    /// Bytes written now (less than `length` when an earlier restore stopped part-way).
    pub written: u64,
}

/// Prefix of the temporary name a whole segment is rebuilt under before it is renamed
/// into place (never a segment name).
pub(crate) const RESTORE_TMP_PREFIX: &str = ".walctl-restore.";

/// Puts the bytes of quarantine entry `id` back exactly where they were cut, so the
/// segments become byte-identical to what they were before the cut. The caller holds
/// the writer lock.
///
/// Nothing is changed, and an [`Error::Quarantine`] says why, unless every piece can
/// go back safely:
/// - the saved copies match their manifest ([`verify`]);
/// - a truncated segment still ends where the cut began, or already holds a prefix
///   of (or all of) the saved bytes there (a restore that was interrupted, or one
///   that already happened: restoring is idempotent);
/// - a removed segment is absent, or present with exactly the saved bytes;
/// - no segment after the first one of the entry exists that the entry does not
///   hold (records written since the cut would end up before older ones).
///
/// Pieces go back lowest segment first, a removed segment under a temporary name
/// that is fsynced and then renamed into place, so a crash part-way leaves a shorter
/// log with no hole in its segment ids, and running `restore` again finishes the job.
/// The entry itself is kept.
pub fn restore(storage: &dyn Storage, id: &str) -> Result<Vec<RestoredItem>> {
    restore_at(storage, Location::in_log(storage), id)
}

/// [`restore`] of entry `id` at `q` into the log kept by `storage`.
pub(crate) fn restore_at(
    storage: &dyn Storage,
    q: Location<'_>,
    id: &str,
) -> Result<Vec<RestoredItem>> {
    let manifest = load_at(q, id)?;
    verify_at(q, &manifest)?;
    if let Some((newer, why)) = newer_cut_first(q, &manifest)? {
        return Err(quarantine_err(
            id,
            format!(
                "the newer entry {newer} {why} and is not restored: it holds what was written \
                 after this cut. Restore {newer} first. Nothing was changed"
            ),
        ));
    }
    let items = items_by_segment(id, &manifest)?;
    let Some(&(lowest, _)) = items.first() else {
        return Ok(Vec::new());
    };
    let segments = list_segments(storage)?;
    if let Some(newer) = segments
        .iter()
        .find(|s| s.id > lowest && !items.iter().any(|(i, _)| *i == s.id))
    {
        return Err(quarantine_err(
            id,
            format!(
                "{} exists but is not part of this entry: it was written after the cut, and \
                 restoring would put older records after it. Nothing was changed",
                newer.name
            ),
        ));
    }
    // Every item is checked before anything is written: a refusal changes nothing.
    let mut plan = Vec::with_capacity(items.len());
    for &(seg, item) in &items {
        let saved = q.entry_path(id, &item.saved_as);
        let size = segments.iter().find(|s| s.id == seg).map(|s| s.size);
        let step = restore_step(storage, q, id, item, &saved, size)?;
        plan.push((item, saved, step));
    }
    let marker = RestoredMark(q, id);
    let mut out = Vec::with_capacity(plan.len());
    for (item, saved, step) in plan {
        let (action, written) = carry_out(storage, q, item, &saved, step)?;
        out.push(RestoredItem {
            file: item.file.clone(),
            offset: item.offset,
            length: item.length,
            action,
            written,
        });
    }
    marker.write();
    Ok(out)
}

/// What restoring one item takes.
enum RestoreStep {
    /// Append the saved bytes from this many on (the file ends inside the cut).
    Append { from: u64 },
    /// Put the whole saved copy back as a new file.
    Create,
    /// The bytes are there already.
    Nothing,
}

/// The entry's items with the segment each belongs to, in segment order; a
/// segment named twice is refused.
fn items_by_segment<'m>(id: &str, manifest: &'m Manifest) -> Result<Vec<(u64, &'m ManifestItem)>> {
    let mut items = Vec::with_capacity(manifest.items.len());
    for item in &manifest.items {
        let seg = item_segment(id, item)?;
        if items.iter().any(|(s, _)| *s == seg) {
            return Err(quarantine_err(
                id,
                format!("manifest holds {} twice", item.file),
            ));
        }
        items.push((seg, item));
    }
    items.sort_by_key(|(s, _)| *s);
    Ok(items)
}

/// How to put `item` back, given the size of its file now (`None`: gone), or why
/// it cannot be: the file was written to, or cut again, since.
fn restore_step(
    storage: &dyn Storage,
    q: Location<'_>,
    id: &str,
    item: &ManifestItem,
    saved: &str,
    size: Option<u64>,
) -> Result<RestoreStep> {
    match size {
        None if item.whole_file || item.offset == 0 => Ok(RestoreStep::Create),
        None => Err(quarantine_err(
            id,
            format!(
                "{} no longer exists, but the cut began at offset {} (a later repair \
                 removed it? restore the later entries first). Nothing was changed",
                item.file, item.offset
            ),
        )),
        Some(size) if item.whole_file => {
            if size == item.length
                && same_bytes((storage, &item.file, 0), (q.storage, saved, 0), size)?
            {
                Ok(RestoreStep::Nothing)
            } else {
                Err(quarantine_err(
                    id,
                    format!(
                        "{} exists ({size} bytes) and differs from the saved copy ({} bytes): \
                         it was written after the cut. Nothing was changed",
                        item.file, item.length
                    ),
                ))
            }
        }
        Some(size) => {
            let Some(end) = item.offset.checked_add(item.length) else {
                return Err(quarantine_err(
                    id,
                    format!(
                        "manifest says {} bytes at offset {} of {}: past any file. Nothing was changed",
                        item.length, item.offset, item.file
                    ),
                ));
            };
            let done = size.wrapping_sub(item.offset);
            if size < item.offset
                || size > end
                || !same_bytes(
                    (storage, &item.file, item.offset),
                    (q.storage, saved, 0),
                    done,
                )?
            {
                return Err(quarantine_err(
                    id,
                    format!(
                        "{} is {size} bytes and does not end where the cut began (offset {}, \
                         {} bytes cut): it was written to or cut again since. Nothing was changed",
                        item.file, item.offset, item.length
                    ),
                ));
            }
            Ok(match done == item.length {
                true => RestoreStep::Nothing,
                false => RestoreStep::Append { from: done },
            })
        }
    }
}

/// Does `step` for `item`: what it did and how many bytes it wrote. A new file is
/// written under a temporary name and renamed into place (the directory fsynced).
fn carry_out(
    storage: &dyn Storage,
    q: Location<'_>,
    item: &ManifestItem,
    saved: &str,
    step: RestoreStep,
) -> Result<(RestoreAction, u64)> {
    let root = storage.root().to_path_buf();
    match step {
        RestoreStep::Nothing => Ok((RestoreAction::AlreadyPresent, 0)),
        RestoreStep::Append { from } => {
            let mut f = storage
                .open_append(&item.file)
                .map_err(|e| Error::io("open", root.join(&item.file), e))?;
            let n = copy_out((q.storage, saved), from, &mut *f, root.join(&item.file))?;
            Ok((RestoreAction::Appended, n))
        }
        RestoreStep::Create => {
            let tmp = format!("{RESTORE_TMP_PREFIX}{}", item.file);
            // A leftover of an interrupted restore is only a copy of saved bytes.
            match storage.remove_file(&tmp) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io("remove", root.join(&tmp), e)),
            }
            let mut f = storage
                .create(&tmp)
                .map_err(|e| Error::io("create", root.join(&tmp), e))?;
            let n = copy_out((q.storage, saved), 0, &mut *f, root.join(&tmp))?;
            drop(f);
            storage
                .rename(&tmp, &item.file)
                .map_err(|e| Error::io("rename", root.join(&tmp), e))?;
            storage
                .sync_dir("")
                .map_err(|e| Error::io("fsync", &root, e))?;
            Ok((RestoreAction::Created, n))
        }
    }
}

/// Marks entry `id` as restored (best effort: the bytes are back either way).
struct RestoredMark<'a>(Location<'a>, &'a str);

impl RestoredMark<'_> {
    fn write(&self) {
        let Location { storage, .. } = self.0;
        let name = self.0.entry_path(self.1, RESTORED);
        let stamp = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
        let _ = storage.remove_file(&name);
        if let Ok(mut f) = storage.create(&name) {
            if f.write_all(stamp.as_bytes()).is_ok() && f.sync_data().is_ok() {
                let _ = storage.sync_dir(&self.0.rel(self.1));
            }
        }
    }
}

/// When entry `id` at `q` was restored (`None`: never).
pub fn restored_at(q: Location<'_>, id: &str) -> Option<String> {
    let mut f = q.storage.open_read(&q.entry_path(id, RESTORED)).ok()?;
    let mut s = String::new();
    (&mut f).take(64).read_to_string(&mut s).ok()?;
    Some(s.trim().to_string())
}

/// A newer entry, not restored, that cut a file of `manifest` at or before where
/// `manifest` cut it: it holds records written after `manifest`'s cut, which
/// restoring `manifest` first would leave stranded in it.
fn newer_cut_first(q: Location<'_>, manifest: &Manifest) -> Result<Option<(String, String)>> {
    let mine = id_order(&manifest.id);
    for (id, m) in entries_at(q)? {
        let Ok(m) = m else { continue };
        if id_order(&id) <= mine || restored_at(q, &id).is_some() {
            continue;
        }
        for theirs in &m.items {
            if let Some(ours) = manifest
                .items
                .iter()
                .find(|i| i.file == theirs.file && theirs.offset <= i.offset)
            {
                return Ok(Some((
                    id.clone(),
                    format!(
                        "cut {} at offset {}, at or before this entry's cut at {}",
                        theirs.file, theirs.offset, ours.offset
                    ),
                )));
            }
        }
    }
    Ok(None)
}

/// Deletes entry `id` at `q`: its files, its directory, then an fsync of the
/// quarantine directory.
pub fn remove_at(q: Location<'_>, id: &str) -> Result<()> {
    load_at(q, id)?;
    let dir = q.rel(id);
    let files = q.storage.list(&dir).map_err(q.err("list", &dir))?;
    for f in files {
        let name = q.entry_path(id, &f.name);
        q.storage
            .remove_file(&name)
            .map_err(q.err("remove", &name))?;
    }
    q.storage.remove_dir(&dir).map_err(q.err("remove", &dir))?;
    q.storage.sync_dir(q.base).map_err(q.err("fsync", q.base))
}
