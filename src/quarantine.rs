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
//! [`verify`] re-reads an entry's copies against its manifest; [`restore`] puts the
//! bytes of an entry back where they were cut, byte for byte, and only when that
//! cannot mix old records with records written since.

use std::io::Read;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::segment::{list_segments, parse_segment_name};
use crate::storage::{EntryKind, Storage};

/// Name of the quarantine directory inside a log directory.
pub const QUARANTINE_DIR: &str = ".walctl-quarantine";
/// Name of an entry's manifest.
pub const MANIFEST: &str = "manifest.json";
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
    /// records, so that no LSN is ever given out twice ([`lsn_floor`]). Absent in
    /// manifests of walctl versions that did not record it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_lsn: Option<u64>,
    /// The pieces.
    pub items: Vec<ManifestItem>,
}

fn entry_path(id: &str, name: &str) -> String {
    format!("{QUARANTINE_DIR}/{id}/{name}")
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
pub struct CutInfo<'a> {
    /// Why the bytes are cut.
    pub reason: &'a str,
    /// Which policy or operation cuts them.
    pub policy: &'a str,
    /// The LSN the next record appended after the cut gets ([`Manifest::next_lsn`]).
    pub next_lsn: Option<u64>,
}

/// Copies the bytes of every cut into a new, fsynced quarantine entry and returns its
/// manifest. Nothing in the log is changed: the caller cuts afterwards.
pub fn save(storage: &dyn Storage, info: CutInfo<'_>, cuts: &[Cut]) -> Result<Manifest> {
    let root = storage.root().to_path_buf();
    let io = |op: &'static str, name: &str| {
        let path = root.join(name);
        move |e| Error::io(op, path, e)
    };
    match storage.create_dir(QUARANTINE_DIR) {
        Ok(()) => storage.sync_dir("").map_err(io("fsync", ""))?,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io("create", QUARANTINE_DIR)(e)),
    }
    let id = new_id();
    let partial = format!("{id}{PARTIAL}");
    let pdir = format!("{QUARANTINE_DIR}/{partial}");
    storage.create_dir(&pdir).map_err(io("create", &pdir))?;
    let saved = fill_entry(storage, &id, &partial, info, cuts);
    if saved.is_err() {
        // A half-made copy is useless (the log still holds every byte, since the
        // caller cuts nothing after an error) and takes space on what may be a full
        // disk: remove it, as far as that goes, under whichever name it got to (the
        // rename may have happened before the fsync after it failed). A crash here
        // leaves it behind instead, which is harmless: `.partial` entries are never
        // listed or restored.
        for dir_name in [partial.as_str(), id.as_str()] {
            let dir = format!("{QUARANTINE_DIR}/{dir_name}");
            if let Ok(entries) = storage.list(&dir) {
                for e in entries {
                    let _ = storage.remove_file(&entry_path(dir_name, &e.name));
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
    storage: &dyn Storage,
    id: &str,
    partial: &str,
    info: CutInfo<'_>,
    cuts: &[Cut],
) -> Result<Manifest> {
    let root = storage.root().to_path_buf();
    let io = |op: &'static str, name: &str| {
        let path = root.join(name);
        move |e| Error::io(op, path, e)
    };
    let pdir = format!("{QUARANTINE_DIR}/{partial}");
    let mut items = Vec::new();
    let mut buf = vec![0u8; 1 << 20];
    for cut in cuts {
        let mut src = storage
            .open_read(&cut.file)
            .map_err(io("open", &cut.file))?;
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
        let dst_name = entry_path(partial, &saved_as);
        let mut dst = storage.create(&dst_name).map_err(io("create", &dst_name))?;
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
            dst.write_all(&buf[..n]).map_err(io("write", &dst_name))?;
            left -= n as u64;
        }
        dst.sync_data().map_err(io("fsync", &dst_name))?;
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
    };
    let json = serde_json::to_vec_pretty(&manifest).expect("a manifest always serializes");
    let mname = entry_path(partial, MANIFEST);
    let mut m = storage.create(&mname).map_err(io("create", &mname))?;
    m.write_all(&json).map_err(io("write", &mname))?;
    m.sync_data().map_err(io("fsync", &mname))?;
    storage.sync_dir(&pdir).map_err(io("fsync", &pdir))?;
    let fdir = format!("{QUARANTINE_DIR}/{id}");
    storage.rename(&pdir, &fdir).map_err(io("rename", &pdir))?;
    storage
        .sync_dir(QUARANTINE_DIR)
        .map_err(io("fsync", QUARANTINE_DIR))?;
    Ok(manifest)
}

/// Reads the manifest of entry `id`.
pub fn load(storage: &dyn Storage, id: &str) -> Result<Manifest> {
    if id.is_empty() || id.contains('/') || id.starts_with('.') || id.ends_with(PARTIAL) {
        return Err(Error::Quarantine {
            id: id.into(),
            reason: "not a quarantine entry id".into(),
        });
    }
    let name = entry_path(id, MANIFEST);
    let mut f = storage
        .open_read(&name)
        .map_err(|e| Error::io("open", storage.root().join(&name), e))?;
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

/// Every entry of the quarantine by id, in id order, each with its manifest or the
/// reason it cannot be read: one damaged entry (or a stray directory) does not hide
/// the others. Half-made (`.partial`) entries are not listed.
pub fn entries(storage: &dyn Storage) -> Result<Vec<(String, Result<Manifest>)>> {
    let entries = match storage.list(QUARANTINE_DIR) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("list", storage.root().join(QUARANTINE_DIR), e)),
    };
    let mut ids: Vec<String> = entries
        .into_iter()
        .filter(|e| e.kind == EntryKind::Dir && !e.name.ends_with(PARTIAL))
        .map(|e| e.name)
        .collect();
    ids.sort();
    Ok(ids
        .into_iter()
        .map(|id| {
            let m = load(storage, &id);
            (id, m)
        })
        .collect())
}

/// The lowest LSN a writer may give out when the log holds no record: the highest
/// [`Manifest::next_lsn`] among the readable quarantine entries (`None`: no entry
/// records one). A cut that left the log empty must not let LSNs restart at 1.
pub fn lsn_floor(storage: &dyn Storage) -> Result<Option<u64>> {
    Ok(entries(storage)?
        .into_iter()
        .filter_map(|(_, m)| m.ok().and_then(|m| m.next_lsn))
        .max())
}

/// Path (relative to the log directory) of a saved piece, for readers of the entry.
pub fn saved_path(id: &str, item: &ManifestItem) -> String {
    entry_path(id, &item.saved_as)
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// sha256 of a byte slice, hex: the digest the manifests record.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
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
    for item in &manifest.items {
        item_segment(&manifest.id, item)?;
        let name = saved_path(&manifest.id, item);
        let (len, sha) = digest(storage, &name)?;
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
    storage: &dyn Storage,
    (a, a_off): (&str, u64),
    (b, b_off): (&str, u64),
    len: u64,
) -> Result<bool> {
    let open = |name: &str, off: u64| -> Result<Box<dyn crate::storage::ReadFile>> {
        let path = storage.root().join(name);
        let mut f = storage
            .open_read(name)
            .map_err(|e| Error::io("open", &path, e))?;
        f.seek_to(off).map_err(|e| Error::io("seek", &path, e))?;
        Ok(f)
    };
    let (mut fa, mut fb) = (open(a, a_off)?, open(b, b_off)?);
    let (mut ba, mut bb) = (vec![0u8; COPY_CHUNK], vec![0u8; COPY_CHUNK]);
    let mut left = len;
    while left > 0 {
        let want = left.min(COPY_CHUNK as u64) as usize;
        let ra = crate::storage::read_up_to(&mut *fa, &mut ba[..want])
            .map_err(|e| Error::io("read", storage.root().join(a), e))?;
        let rb = crate::storage::read_up_to(&mut *fb, &mut bb[..want])
            .map_err(|e| Error::io("read", storage.root().join(b), e))?;
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
    storage: &dyn Storage,
    src: &str,
    from: u64,
    dst: &mut dyn crate::storage::WriteFile,
    dst_name: &str,
) -> Result<u64> {
    let src_path = storage.root().join(src);
    let dst_path = storage.root().join(dst_name);
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
pub const RESTORE_TMP_PREFIX: &str = ".walctl-restore.";

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
    enum Step {
        Append { from: u64 },
        Create,
        Nothing,
    }
    let manifest = load(storage, id)?;
    verify(storage, &manifest)?;
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
    let mut plan = Vec::with_capacity(items.len());
    for &(seg, item) in &items {
        let saved = saved_path(id, item);
        let size = segments.iter().find(|s| s.id == seg).map(|s| s.size);
        let step = match size {
            None if item.whole_file || item.offset == 0 => Step::Create,
            None => {
                return Err(quarantine_err(
                    id,
                    format!(
                        "{} no longer exists, but the cut began at offset {} (a later repair \
                         removed it? restore the later entries first). Nothing was changed",
                        item.file, item.offset
                    ),
                ))
            }
            Some(size) if item.whole_file => {
                if size == item.length && same_bytes(storage, (&item.file, 0), (&saved, 0), size)? {
                    Step::Nothing
                } else {
                    return Err(quarantine_err(
                        id,
                        format!(
                            "{} exists ({size} bytes) and differs from the saved copy ({} bytes): \
                             it was written after the cut. Nothing was changed",
                            item.file, item.length
                        ),
                    ));
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
                    || !same_bytes(storage, (&item.file, item.offset), (&saved, 0), done)?
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
                if done == item.length {
                    Step::Nothing
                } else {
                    Step::Append { from: done }
                }
            }
        };
        plan.push((item, saved, step));
    }
    let root = storage.root().to_path_buf();
    let mut out = Vec::with_capacity(plan.len());
    for (item, saved, step) in plan {
        let (action, written) = match step {
            Step::Nothing => (RestoreAction::AlreadyPresent, 0),
            Step::Append { from } => {
                let mut f = storage
                    .open_append(&item.file)
                    .map_err(|e| Error::io("open", root.join(&item.file), e))?;
                let n = copy_out(storage, &saved, from, &mut *f, &item.file)?;
                (RestoreAction::Appended, n)
            }
            Step::Create => {
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
                let n = copy_out(storage, &saved, 0, &mut *f, &tmp)?;
                drop(f);
                storage
                    .rename(&tmp, &item.file)
                    .map_err(|e| Error::io("rename", root.join(&tmp), e))?;
                storage
                    .sync_dir("")
                    .map_err(|e| Error::io("fsync", &root, e))?;
                (RestoreAction::Created, n)
            }
        };
        out.push(RestoredItem {
            file: item.file.clone(),
            offset: item.offset,
            length: item.length,
            action,
            written,
        });
    }
    Ok(out)
}
