//! The local archive marker: a small file in the log directory recording which
//! segments each archive holds. `walctl archive push` writes it; the writer's
//! retention reads it (without any object-store code) and keeps every segment an
//! archive does not hold yet.

use std::collections::BTreeMap;
use std::io::{self, Read};

use serde::{Deserialize, Serialize};

use crate::storage::{ReadStorage, Storage};

/// File name of the marker inside a log directory.
pub const MARKER_FILE: &str = ".walctl-archive.json";
const MARKER_TMP: &str = ".walctl-archive.json.tmp";
/// The marker is tiny; anything larger is not ours and is not read into memory.
const MARKER_MAX: u64 = 16 << 20;

/// What the archives of a log directory hold, by archive URL (never with credentials).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Marker {
    /// Format version (1).
    pub version: u32,
    /// Per archive URL: the segment ids it holds, as sorted inclusive ranges.
    pub archives: BTreeMap<String, Vec<[u64; 2]>>,
}

impl Marker {
    /// Reads the marker of the log behind `storage`; `None` when the directory was
    /// never archived.
    pub fn load(storage: &dyn ReadStorage) -> io::Result<Option<Marker>> {
        let mut f = match storage.open_read(MARKER_FILE) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut text = Vec::new();
        (&mut f).take(MARKER_MAX).read_to_end(&mut text)?;
        let marker: Marker = serde_json::from_slice(&text)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        if marker.version != 1 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("unknown archive marker version {}", marker.version),
            ));
        }
        Ok(Some(marker))
    }

    /// Whether the archive at `url` holds segment `id`.
    pub fn holds(&self, url: &str, id: u64) -> bool {
        self.archives
            .get(url)
            .is_some_and(|ranges| ranges.iter().any(|[a, b]| *a <= id && id <= *b))
    }

    /// The first archive (by URL) that does not hold segment `id`, if any.
    pub fn missing_from(&self, id: u64) -> Option<&str> {
        self.archives
            .keys()
            .find(|url| !self.holds(url, id))
            .map(String::as_str)
    }

    /// Records that the archive at `url` holds segment `id`.
    pub fn add(&mut self, url: &str, id: u64) {
        self.version = 1;
        let ranges = self.archives.entry(url.to_string()).or_default();
        ranges.push([id, id]);
        ranges.sort_unstable();
        let mut merged: Vec<[u64; 2]> = Vec::with_capacity(ranges.len());
        for r in ranges.drain(..) {
            match merged.last_mut() {
                Some(last) if r[0] <= last[1].saturating_add(1) => last[1] = last[1].max(r[1]),
                _ => merged.push(r),
            }
        }
        *ranges = merged;
    }

    /// Writes the marker atomically: a temporary file, fsynced, renamed over the old
    /// one, then the directory fsynced. A crash leaves the old or the new marker.
    pub fn save(&self, storage: &dyn Storage) -> io::Result<()> {
        let text = serde_json::to_vec_pretty(self).map_err(io::Error::other)?;
        match storage.remove_file(MARKER_TMP) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let mut f = storage.create(MARKER_TMP)?;
        f.write_all(&text)?;
        f.sync_data()?;
        drop(f);
        storage.rename(MARKER_TMP, MARKER_FILE)?;
        storage.sync_dir("")
    }
}

/// Why retention must keep segment `id` of the log behind `storage`, or `None` when
/// it may go: the directory was never archived, or every archive holds the segment.
/// A marker that cannot be read keeps everything: losing a segment is not a risk
/// worth taking on a file walctl cannot understand.
pub fn retention_hold(storage: &dyn ReadStorage, id: u64) -> Option<String> {
    match Marker::load(storage) {
        Ok(None) => None,
        Ok(Some(m)) => m.missing_from(id).map(|url| {
            format!(
                "kept {}: the archive {url} does not hold it yet",
                crate::segment::segment_name(id)
            )
        }),
        Err(e) => Some(format!(
            "kept {}: the archive marker {} cannot be read ({e})",
            crate::segment::segment_name(id),
            storage.root().join(MARKER_FILE).display()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_merge_and_holds_answers_per_archive() {
        let mut m = Marker::default();
        for id in [3, 1, 2, 7, 5, 6] {
            m.add("s3://b/p", id);
        }
        assert_eq!(m.archives["s3://b/p"], vec![[1, 3], [5, 7]]);
        assert!(m.holds("s3://b/p", 2));
        assert!(!m.holds("s3://b/p", 4));
        assert!(!m.holds("s3://other/p", 2));
        m.add("s3://other/p", 2);
        assert_eq!(m.missing_from(2), None);
        assert_eq!(m.missing_from(5), Some("s3://other/p"));
        m.add("s3://b/p", 4);
        assert_eq!(m.archives["s3://b/p"], vec![[1, 7]]);
    }

    #[test]
    fn retention_holds_per_marker_and_everything_when_it_cannot_read_it() {
        let tmp = tempfile::tempdir().unwrap();
        let storage = crate::storage::FileStorage::open(tmp.path()).unwrap();
        assert_eq!(retention_hold(&storage, 0), None, "never archived");
        let mut m = Marker::default();
        m.add("s3://b/p", 0);
        m.save(&storage).unwrap();
        assert_eq!(Marker::load(&storage).unwrap(), Some(m));
        assert_eq!(retention_hold(&storage, 0), None);
        let why = retention_hold(&storage, 1).unwrap();
        assert!(
            why.contains("segment-1") && why.contains("s3://b/p"),
            "{why}"
        );
        std::fs::write(tmp.path().join(MARKER_FILE), b"{ not json").unwrap();
        let why = retention_hold(&storage, 0).unwrap();
        assert!(why.contains("cannot be read"), "{why}");
    }
}
