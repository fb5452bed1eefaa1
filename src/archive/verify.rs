//! `archive verify`: the archive against its manifest. Every recorded segment must be
//! there with its size and entity tag, the segments' LSNs must follow on from one
//! another, and the manifest's own checksum must hold; `deep` also downloads every
//! segment, checks its sha256 and every record with the one scanner.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;

use super::error::ArchiveError;
use super::manifest::{Entry, Manifest, MANIFEST_OBJECT};
use super::mem::OneSegment;
use super::store::{Archive, ObjectInfo};
use super::Result;
use crate::digest::{sha256_hex, short_sha};
use crate::segment::{parse_segment_name, segment_name};

/// What is wrong with an archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// A segment the manifest records (or the id sequence implies) has no object.
    Missing,
    /// The object's size is not the recorded one.
    SizeMismatch,
    /// The object's entity tag is not the one recorded when it was archived: it was
    /// written again since (with the same size).
    Replaced,
    /// The object's sha256 is not the recorded one (`deep`).
    ChecksumMismatch,
    /// A record in the object fails its check (`deep`).
    Damaged,
    /// A segment's first LSN does not follow the previous segment's last.
    LsnGap,
    /// There are segment objects but no manifest.
    ManifestMissing,
    /// The manifest cannot be read or its checksum is wrong.
    ManifestInvalid,
    /// A segment object the manifest does not record (a push cut short before it
    /// recorded it; the next push records it). A warning only.
    Unlisted,
}

/// One finding of [`verify`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ArchiveProblem {
    /// What kind.
    pub kind: ProblemKind,
    /// The object it is about.
    pub object: String,
    /// What exactly.
    pub message: String,
}

/// The result of [`verify`].
#[derive(Debug, Clone, Default, Serialize)]
pub struct VerifyReport {
    /// The archive's URL.
    pub url: String,
    /// Segments the manifest records.
    pub segments: usize,
    /// Their bytes.
    pub bytes: u64,
    /// First and last LSN recorded.
    pub first_lsn: Option<u64>,
    /// Last LSN recorded.
    pub last_lsn: Option<u64>,
    /// Whether every segment was downloaded and checked record by record.
    pub deep: bool,
    /// Records checked (`deep`).
    pub records_checked: u64,
    /// What is wrong: the archive is damaged or incomplete.
    pub problems: Vec<ArchiveProblem>,
    /// What is odd but harmless.
    pub warnings: Vec<ArchiveProblem>,
}

/// Checks `archive` against its manifest (see the module documentation).
pub fn verify(archive: &Archive, deep: bool) -> Result<VerifyReport> {
    let mut report = VerifyReport {
        url: archive.url().to_string(),
        deep,
        ..VerifyReport::default()
    };
    let listed: BTreeMap<u64, ObjectInfo> = archive
        .list()?
        .into_iter()
        .filter_map(|o| Some((parse_segment_name(&o.name)?, o)))
        .collect();
    let Some(manifest) = load_manifest(archive, &listed, &mut report)? else {
        return Ok(report);
    };
    report.segments = manifest.segments.len();
    report.bytes = manifest.segments.iter().map(|e| e.size).sum();
    report.first_lsn = manifest.segments.iter().find_map(|e| e.first_lsn);
    report.last_lsn = manifest.segments.iter().rev().find_map(|e| e.last_lsn);

    let mut present = Vec::new();
    let mut prev: Option<&Entry> = None;
    for e in &manifest.segments {
        if let Some(p) = prev {
            report.problems.extend(between(p, e, &listed));
        }
        prev = Some(e);
        let (found, there) = check_object(e, listed.get(&e.id));
        report.problems.extend(found);
        if there {
            present.push(e.clone());
        }
    }
    for (id, o) in &listed {
        if manifest.get(*id).is_none() {
            report.warnings.push(problem(
                ProblemKind::Unlisted,
                &o.name,
                format!(
                    "{} is not in the manifest (a push cut short; the next push records it)",
                    o.name
                ),
            ));
        }
    }
    if deep {
        check_deep(archive, &present, &mut report)?;
    }
    Ok(report)
}

fn problem(kind: ProblemKind, object: &str, message: String) -> ArchiveProblem {
    ArchiveProblem {
        kind,
        object: object.to_string(),
        message,
    }
}

/// The manifest, or `None` when there is none to check against (the problem is in
/// `report` then). An archive with neither manifest nor segment is an error: most
/// likely a mistyped URL, and nothing there is not "clean".
fn load_manifest(
    archive: &Archive,
    listed: &BTreeMap<u64, ObjectInfo>,
    report: &mut VerifyReport,
) -> Result<Option<Manifest>> {
    match Manifest::load(archive) {
        Ok(Some(m)) => Ok(Some(m)),
        Ok(None) if listed.is_empty() => Err(ArchiveError::incomplete(
            format!(
                "nothing to verify: {} holds no manifest and no segment",
                archive.url()
            ),
            None,
        )),
        Ok(None) => {
            report.problems.push(problem(
                ProblemKind::ManifestMissing,
                MANIFEST_OBJECT,
                format!(
                    "{} segment objects but no manifest; it can be rebuilt from them",
                    listed.len()
                ),
            ));
            Ok(None)
        }
        Err(ArchiveError::Manifest { reason, .. }) => {
            report.problems.push(problem(
                ProblemKind::ManifestInvalid,
                MANIFEST_OBJECT,
                reason,
            ));
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// What is wrong between two consecutive manifest entries: segment objects missing
/// between their ids, an LSN gap between their records.
fn between(p: &Entry, e: &Entry, listed: &BTreeMap<u64, ObjectInfo>) -> Vec<ArchiveProblem> {
    let mut found = Vec::new();
    // One finding per run of missing ids, however long (a manifest is input).
    // (From both ends: a few steps each, however long the run.)
    let mut gap = (p.id.saturating_add(1)..e.id).filter(|id| !listed.contains_key(id));
    if let Some(first) = gap.next() {
        let last = gap.next_back().unwrap_or(first);
        let name = segment_name(first);
        let what = if last == first {
            format!("{name} is missing")
        } else {
            format!("{name}..{} are missing", segment_name(last))
        };
        found.push(problem(
            ProblemKind::Missing,
            &name,
            format!(
                "{what}: the archive holds {} and {} but nothing between",
                p.name, e.name
            ),
        ));
    }
    if let (Some(last), Some(first)) = (p.last_lsn, e.first_lsn) {
        if first != last.saturating_add(1) {
            found.push(problem(
                ProblemKind::LsnGap,
                &e.name,
                format!(
                    "{} starts at LSN {first} but {} ends at LSN {last}",
                    e.name, p.name
                ),
            ));
        }
    }
    found
}

/// A manifest entry against the object listed under its name: what is wrong, and
/// whether the object is there to be read (by a deep check).
fn check_object(e: &Entry, listed: Option<&ObjectInfo>) -> (Option<ArchiveProblem>, bool) {
    match listed {
        None => (
            Some(problem(
                ProblemKind::Missing,
                &e.name,
                format!(
                    "{} is missing: the manifest records it ({} bytes, LSN {}) but the archive has no such object",
                    e.name,
                    e.size,
                    lsn_range(e.first_lsn, e.last_lsn)
                ),
            )),
            false,
        ),
        Some(o) if o.size != e.size => (
            Some(problem(
                ProblemKind::SizeMismatch,
                &e.name,
                format!("{} holds {} bytes; the manifest records {}", e.name, o.size, e.size),
            )),
            false,
        ),
        Some(o) if e.e_tag.is_some() && o.e_tag.is_some() && o.e_tag != e.e_tag => (
            Some(problem(
                ProblemKind::Replaced,
                &e.name,
                format!(
                    "{} was replaced after it was archived (entity tag {}, recorded {})",
                    e.name,
                    o.e_tag.as_deref().unwrap_or_default(),
                    e.e_tag.as_deref().unwrap_or_default()
                ),
            )),
            true,
        ),
        Some(_) => (None, true),
    }
}

/// Reads every present segment object: its sha256 against the manifest, then every
/// record (CRC, LSN order) and its LSN range against the manifest's.
fn check_deep(archive: &Archive, present: &[Entry], report: &mut VerifyReport) -> Result<()> {
    let names: Vec<String> = present.iter().map(|e| e.name.clone()).collect();
    let mut i = 0;
    archive.get_each(&names, 4, |name, bytes| {
        let e = &present[i];
        i += 1;
        let sha = sha256_hex(&bytes);
        if sha != e.sha256 {
            report.problems.push(problem(
                ProblemKind::ChecksumMismatch,
                name,
                format!(
                    "{name}: sha256 {} but the manifest records {}",
                    short_sha(&sha),
                    short_sha(&e.sha256)
                ),
            ));
        }
        let s = OneSegment::new(archive.url(), e.id, Arc::new(bytes)).check()?;
        report.records_checked += s.records;
        if let Some(p) = &s.problem {
            report
                .problems
                .push(problem(ProblemKind::Damaged, name, format!("{p}")));
        } else if (s.first_lsn, s.last_lsn) != (e.first_lsn, e.last_lsn) {
            report.problems.push(problem(
                ProblemKind::Damaged,
                name,
                format!(
                    "{name} holds LSN {} but the manifest records LSN {}",
                    lsn_range(s.first_lsn, s.last_lsn),
                    lsn_range(e.first_lsn, e.last_lsn)
                ),
            ));
        }
        Ok(())
    })
}

fn lsn_range(first: Option<u64>, last: Option<u64>) -> String {
    match (first, last) {
        (Some(a), Some(b)) => format!("{a}..={b}"),
        _ => "none".into(),
    }
}
