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

use std::io::Read;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
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

/// Copies the bytes of every cut into a new, fsynced quarantine entry and returns its
/// manifest. Nothing in the log is changed: the caller cuts afterwards.
pub fn save(storage: &dyn Storage, reason: &str, policy: &str, cuts: &[Cut]) -> Result<Manifest> {
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
        let dst_name = entry_path(&partial, &saved_as);
        let mut dst = storage.create(&dst_name).map_err(io("create", &dst_name))?;
        let mut hasher = Sha256::new();
        let mut left = size - offset;
        while left > 0 {
            let want = left.min(buf.len() as u64) as usize;
            let n = src.read(&mut buf[..want]).map_err(io("read", &cut.file))?;
            if n == 0 {
                return Err(Error::Quarantine {
                    id: id.clone(),
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
        id: id.clone(),
        time: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        reason: reason.to_string(),
        policy: policy.to_string(),
        walctl_version: env!("CARGO_PKG_VERSION").to_string(),
        items,
    };
    let json = serde_json::to_vec_pretty(&manifest).expect("a manifest always serializes");
    let mname = entry_path(&partial, MANIFEST);
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

/// Every complete quarantine entry, oldest first.
pub fn list(storage: &dyn Storage) -> Result<Vec<Manifest>> {
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
    ids.iter().map(|id| load(storage, id)).collect()
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
