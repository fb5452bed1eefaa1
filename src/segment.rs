//! Segment naming and listing: `segment-<decimal id>`, ordered by the parsed id,
//! everything else in the directory left alone.

use crate::error::{Error, Result};
use crate::storage::{EntryKind, ReadStorage};

/// The file-name prefix of every segment.
pub const SEGMENT_PREFIX: &str = "segment-";

/// The file name of segment `id`: `segment-<id>`, decimal, no padding.
pub fn segment_name(id: u64) -> String {
    format!("{SEGMENT_PREFIX}{id}")
}

/// The id of a segment file name, or `None` when the name is not exactly
/// `segment-<decimal id>` in canonical form (no sign, no leading zeros, no suffix).
pub fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix(SEGMENT_PREFIX)?;
    if digits.is_empty()
        || !digits.bytes().all(|b| b.is_ascii_digit())
        || (digits.len() > 1 && digits.starts_with('0'))
    {
        return None;
    }
    digits.parse().ok()
}

/// A segment file found in a log directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentFile {
    /// Parsed id.
    pub id: u64,
    /// File name (`segment-<id>`).
    pub name: String,
    /// Size in bytes when listed.
    pub size: u64,
}

/// Lists the segments of a log, ordered by id. Entries that are not segment names are
/// ignored; an entry with a segment name that is not a regular file (a directory, a
/// symbolic link, a device) is an error, never silently skipped or followed.
pub fn list_segments(storage: &dyn ReadStorage) -> Result<Vec<SegmentFile>> {
    let entries = storage
        .list("")
        .map_err(|e| Error::io("list", storage.root(), e))?;
    let mut out = Vec::new();
    for entry in entries {
        let Some(id) = parse_segment_name(&entry.name) else {
            continue;
        };
        match entry.kind {
            EntryKind::File => out.push(SegmentFile {
                id,
                name: entry.name,
                size: entry.size,
            }),
            EntryKind::Dir => {
                return Err(Error::BadSegment {
                    path: storage.root().join(&entry.name),
                    reason: "is a directory, not a segment file".into(),
                })
            }
            EntryKind::Symlink => {
                return Err(Error::BadSegment {
                    path: storage.root().join(&entry.name),
                    reason: "is a symbolic link; walctl does not follow links in a log directory"
                        .into(),
                })
            }
            EntryKind::Other => {
                return Err(Error::BadSegment {
                    path: storage.root().join(&entry.name),
                    reason: "is not a regular file".into(),
                })
            }
        }
    }
    out.sort_by_key(|s| s.id);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_strays_are_rejected() {
        for id in [0u64, 1, 9, 10, 123456789, u64::MAX] {
            assert_eq!(parse_segment_name(&segment_name(id)), Some(id));
        }
        for bad in [
            "segment-",
            "segment-0.bak",
            "segment-1.tmp",
            "segment-01",
            "segment--1",
            "segment-+1",
            "segment-1 ",
            "Segment-1",
            "segment-99999999999999999999999",
            "xsegment-1",
        ] {
            assert_eq!(parse_segment_name(bad), None, "{bad}");
        }
    }
}
