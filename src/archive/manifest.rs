//! The archive's manifest: one object per prefix listing every archived segment (id,
//! size, sha256, LSN range, checkpoints) with a checksum over the list. It is an
//! index: every field can be rebuilt from the segment objects themselves.

use serde::{Deserialize, Serialize};

use super::error::ArchiveError;
use super::mem::OneSegment;
use super::store::Archive;
use super::Result;
use crate::digest::sha256_hex;
use crate::scan::SegmentSummary;
use crate::segment::{parse_segment_name, segment_name};
use std::sync::Arc;

/// Name of the manifest object in an archive's prefix.
pub const MANIFEST_OBJECT: &str = "walctl-manifest.json";

/// One archived segment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Segment id.
    pub id: u64,
    /// Object name (`segment-<id>`).
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// sha256 of the bytes, hex.
    pub sha256: String,
    /// Records in it.
    pub records: u64,
    /// LSN of its first record.
    pub first_lsn: Option<u64>,
    /// LSN of its last record.
    pub last_lsn: Option<u64>,
    /// Checkpoint records in it.
    pub checkpoints: u64,
    /// LSN of its last checkpoint.
    pub last_checkpoint_lsn: Option<u64>,
    /// The store's entity tag for the object when it was archived: a replaced object
    /// gets another, which `archive verify` sees without downloading it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e_tag: Option<String>,
}

impl Entry {
    /// The entry of a segment whose bytes hash to `sha256` and that the scanner
    /// summarised as `s`.
    pub fn new(s: &SegmentSummary, sha256: String) -> Entry {
        Entry {
            id: s.id,
            name: s.name.clone(),
            size: s.size,
            sha256,
            records: s.records,
            first_lsn: s.first_lsn,
            last_lsn: s.last_lsn,
            checkpoints: s.checkpoints,
            last_checkpoint_lsn: s.last_checkpoint_lsn,
            e_tag: None,
        }
    }
}

/// The manifest object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Format version (1).
    pub version: u32,
    /// Every archived segment, by id.
    pub segments: Vec<Entry>,
    /// sha256 of the JSON of `segments`: a manifest damaged in the store is found.
    pub checksum: String,
}

impl Default for Manifest {
    fn default() -> Self {
        Manifest {
            version: 1,
            segments: Vec::new(),
            checksum: checksum(&[]),
        }
    }
}

fn checksum(segments: &[Entry]) -> String {
    sha256_hex(&serde_json::to_vec(segments).unwrap_or_default())
}

impl Manifest {
    /// The entry of segment `id`.
    pub fn get(&self, id: u64) -> Option<&Entry> {
        self.segments
            .binary_search_by_key(&id, |e| e.id)
            .ok()
            .map(|i| &self.segments[i])
    }

    /// Adds (or replaces) the entry of its segment, keeping ids in order.
    pub fn insert(&mut self, entry: Entry) {
        match self.segments.binary_search_by_key(&entry.id, |e| e.id) {
            Ok(i) => self.segments[i] = entry,
            Err(i) => self.segments.insert(i, entry),
        }
        self.checksum = checksum(&self.segments);
    }

    /// Whether the recorded checksum matches the entries.
    pub fn checksum_ok(&self) -> bool {
        self.checksum == checksum(&self.segments)
    }

    /// Reads the manifest of `archive`; `None` when there is none yet. A manifest
    /// that does not parse or whose checksum is wrong is an error.
    pub fn load(archive: &Archive) -> Result<Option<Manifest>> {
        let bytes = match archive.get(MANIFEST_OBJECT) {
            Ok(b) => b,
            Err(ArchiveError::Store {
                not_found: true, ..
            }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let bad = |reason: String| ArchiveError::Manifest {
            object: archive.object_url(MANIFEST_OBJECT),
            reason,
        };
        let m: Manifest =
            serde_json::from_slice(&bytes).map_err(|e| bad(format!("cannot be read ({e})")))?;
        if m.version != 1 {
            return Err(bad(format!("unknown version {}", m.version)));
        }
        if !m.checksum_ok() {
            return Err(bad("its checksum does not match its entries".into()));
        }
        // Names become file names at restore: only `segment-<id>` itself.
        if let Some(e) = m.segments.iter().find(|e| e.name != segment_name(e.id)) {
            return Err(bad(format!(
                "entry {} is named {:?}, not {}",
                e.id,
                e.name,
                segment_name(e.id)
            )));
        }
        if m.segments.windows(2).any(|w| w[0].id >= w[1].id) {
            return Err(bad("its segments are not in id order".into()));
        }
        Ok(Some(m))
    }

    /// Writes the manifest to `archive`.
    pub fn save(&self, archive: &Archive) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| ArchiveError::Manifest {
            object: archive.object_url(MANIFEST_OBJECT),
            reason: e.to_string(),
        })?;
        archive.put_overwrite(MANIFEST_OBJECT, bytes)
    }

    /// Rebuilds the manifest from the segment objects of `archive` alone: each is
    /// downloaded, hashed and scanned. Segments that fail their check are left out and
    /// returned by name with the problem.
    pub fn rebuild(archive: &Archive) -> Result<(Manifest, Vec<(String, String)>)> {
        let objects: Vec<_> = archive
            .list()?
            .into_iter()
            .filter(|o| parse_segment_name(&o.name).is_some())
            .collect();
        let names: Vec<String> = objects.iter().map(|o| o.name.clone()).collect();
        let mut m = Manifest::default();
        let mut bad = Vec::new();
        archive.get_each(&names, 4, |name, bytes| {
            let id = parse_segment_name(name).unwrap_or_default();
            let sha = sha256_hex(&bytes);
            let summary = OneSegment::new(archive.url(), id, Arc::new(bytes)).check()?;
            match &summary.problem {
                Some(p) => bad.push((name.to_string(), p.to_string())),
                None => m.insert(Entry {
                    e_tag: objects
                        .iter()
                        .find(|o| o.name == name)
                        .and_then(|o| o.e_tag.clone()),
                    ..Entry::new(&summary, sha)
                }),
            }
            Ok(())
        })?;
        Ok((m, bad))
    }
}
