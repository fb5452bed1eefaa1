//! Repair after a crash, losing nothing: the library behind `walctl truncate-corrupt`.
//!
//! Repair is two steps, so that what will happen can be read before it happens:
//!
//! 1. [`plan`] scans the log with the one scanner and decides, for a [`Policy`], what
//!    would be cut: every segment touched, the byte offset and number of bytes, the
//!    LSNs of the intact records that would go, whole segments that would go, and the
//!    last LSN the log keeps. It changes nothing and takes no lock.
//! 2. [`apply`] takes the writer lock, plans again from the current state (never from
//!    a stale plan), copies every byte it is about to cut into a new quarantine entry
//!    (copies and manifest fsynced), reads the copies back
//!    against the manifest, and only then cuts: whole later segments are removed
//!    newest first with an fsync of the directory after each (a crash never leaves a
//!    hole in the middle of the segment ids), then the damaged segment is truncated
//!    (file and directory fsynced).
//!
//! A crash at any point loses nothing: every byte is either still in the log or in a
//! complete quarantine entry. Running [`apply`] again re-plans from what is on disk
//! and finishes the job (the rerun saves the bytes still to be cut in a new entry).
//! On a clean log both steps find nothing to do.
//!
//! [`restore`] puts the bytes of a quarantine entry back, byte for byte;
//! [`list_quarantine`] lists the entries.
//!
//! ```no_run
//! use std::sync::Arc;
//! use walctl::repair::{self, Policy, Verdict};
//! use walctl::storage::FileStorage;
//!
//! let storage = Arc::new(FileStorage::open("wal_data")?);
//! let plan = repair::plan(storage.clone(), Policy::TolerateTail)?;
//! for cut in &plan.cuts {
//!     println!("{} from offset {}: {} bytes", cut.segment, cut.offset, cut.bytes);
//! }
//! if plan.verdict == Verdict::Cut {
//!     let done = repair::apply(storage.clone(), Policy::TolerateTail)?;
//!     println!("saved in quarantine {}", done.quarantine.unwrap().id);
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Policies
//! - [`Policy::TolerateTail`] cuts only a torn tail of the newest segment (what a
//!   crash mid-write leaves), at the end of its last complete record. Any other
//!   damage makes it refuse ([`Verdict::Refuse`], naming [`Policy::PointInTime`]).
//! - [`Policy::PointInTime`] keeps everything before the first problem of the log and
//!   cuts everything from it on: the rest of that segment and every later segment.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;

use crate::error::{Error, Problem, ProblemKind, Result, Severity};
use crate::quarantine::{self, Cut, Manifest, RestoredItem};
use crate::salvage::{SalvageEvent, Salvager};
use crate::scan::{scan_log, ScanOptions, ScanReport, SegmentSummary};
use crate::segment::SegmentFile;
use crate::storage::{DirLock, Storage};

/// What a repair may cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Policy {
    /// Only a torn tail of the newest segment; refuse anything else.
    TolerateTail,
    /// Everything from the first problem of the log on.
    PointInTime,
}

impl Policy {
    /// The policy's name as the command line and manifests spell it.
    pub fn name(self) -> &'static str {
        match self {
            Policy::TolerateTail => "tolerate-tail",
            Policy::PointInTime => "point-in-time",
        }
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How a segment is cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CutAction {
    /// Cut from `offset` to the end of the segment; the segment stays.
    Truncate,
    /// The whole segment goes.
    Remove,
}

/// A run of consecutive LSNs, both ends included.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LsnRange {
    /// First LSN.
    pub first: u64,
    /// Last LSN.
    pub last: u64,
}

impl fmt::Display for LsnRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}-{}", self.first, self.last)
        }
    }
}

/// One cut of a [`Plan`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlannedCut {
    /// Segment file name.
    pub segment: String,
    /// Segment id.
    pub segment_id: u64,
    /// Truncate or remove.
    pub action: CutAction,
    /// First byte cut (0 for a removed segment).
    pub offset: u64,
    /// Bytes cut.
    pub bytes: u64,
    /// Size of the segment when planned.
    pub size: u64,
    /// Intact records (framing, CRC and LSN order fine) among the cut bytes.
    pub intact_records: u64,
    /// Their LSNs.
    pub lsns: Vec<LsnRange>,
    /// Cut bytes that are not intact records: the torn or damaged record itself, and
    /// whatever past the damage could not be framed as records.
    pub damaged_bytes: u64,
    /// LSNs of the intact checkpoints among the cut records.
    pub checkpoints: Vec<u64>,
}

/// What a [`Plan`] decided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// The log is clean: nothing to do.
    Clean,
    /// The plan's cuts repair the log.
    Cut,
    /// The policy does not allow what the damage needs; nothing would be cut. The
    /// boxed plan is what the suggested policy would do instead.
    Refuse(Box<Plan>),
}

/// What a repair would do, computed by [`plan`] from the log as it is now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// The policy it was made for.
    pub policy: Policy,
    /// Clean, cut, or refuse.
    pub verdict: Verdict,
    /// The worst problem of the log now (`None`: clean).
    pub worst: Option<Severity>,
    /// Every problem the scanner found, in log order.
    pub problems: Vec<Problem>,
    /// What would be cut, in segment order (empty unless the verdict is
    /// [`Verdict::Cut`]).
    pub cuts: Vec<PlannedCut>,
    /// Number of segments now.
    pub segments: usize,
    /// First LSN the log keeps (after the cuts, for [`Verdict::Cut`]).
    pub kept_first_lsn: Option<u64>,
    /// Last LSN the log keeps (after the cuts, for [`Verdict::Cut`]); a writer
    /// continues at the next one.
    pub kept_last_lsn: Option<u64>,
    /// The LSN a writer opened after the plan is applied gives out next: after the
    /// last kept record; when the cut keeps none, the first LSN cut (the damaged
    /// record's, derived from its neighbours when it cannot be read), never lower
    /// than where an earlier cut left the log ([`quarantine::lsn_floor_at`]). LSNs never
    /// restart.
    pub next_lsn: u64,
    /// The newest checkpoint the log keeps: where recovery starts afterwards
    /// (`None`: at the first kept record).
    pub kept_checkpoint_lsn: Option<u64>,
}

impl Plan {
    /// The LSN a writer opened after this plan is applied will assign next.
    pub fn next_lsn(&self) -> u64 {
        self.next_lsn
    }

    /// LSNs of the intact checkpoints the plan cuts, in log order.
    pub fn cut_checkpoints(&self) -> Vec<u64> {
        self.cuts
            .iter()
            .flat_map(|c| c.checkpoints.iter().copied())
            .collect()
    }

    /// Bytes the plan cuts.
    pub fn bytes(&self) -> u64 {
        self.cuts.iter().map(|c| c.bytes).sum()
    }

    /// Intact records the plan cuts.
    pub fn intact_records(&self) -> u64 {
        self.cuts.iter().map(|c| c.intact_records).sum()
    }

    /// The problem the plan starts cutting at: the first problem of the log.
    pub fn first_problem(&self) -> Option<&Problem> {
        self.problems.first()
    }

    /// Why the bytes are cut, as recorded in the quarantine manifest.
    pub fn reason(&self) -> String {
        let Some(p) = self.first_problem() else {
            return "nothing to cut: the log is clean".into();
        };
        let removed: Vec<&str> = self
            .cuts
            .iter()
            .filter(|c| c.action == CutAction::Remove)
            .map(|c| c.segment.as_str())
            .collect();
        let mut s = format!(
            "{p}; {} repair cut {} from offset {} to its end",
            self.policy, p.segment, p.offset
        );
        if !removed.is_empty() {
            s.push_str(&format!(" and removed {}", removed.join(", ")));
        }
        s
    }
}

/// Plans a repair of the log kept by `storage` under `policy`. Reads only: no lock,
/// no file created or changed.
pub fn plan(storage: Arc<dyn Storage>, policy: Policy) -> Result<Plan> {
    let report = scan_log(storage.clone(), ScanOptions::default(), |_| {})?;
    plan_for(&storage, policy, &report)
}

fn plan_for(storage: &Arc<dyn Storage>, policy: Policy, report: &ScanReport) -> Result<Plan> {
    let problems: Vec<Problem> = report.problems().cloned().collect();
    // Read only when the log would keep no record: where earlier cuts left it.
    let floor =
        || -> Result<u64> { Ok(quarantine::lsn_floor(storage.as_ref())?.unwrap_or(1).max(1)) };
    let base = Plan {
        policy,
        verdict: Verdict::Clean,
        worst: report.worst(),
        problems,
        cuts: Vec::new(),
        segments: report.segments.len(),
        kept_first_lsn: report.first_lsn,
        kept_last_lsn: report.last_lsn,
        next_lsn: match report.last_lsn {
            Some(l) => l.saturating_add(1),
            None => floor()?,
        },
        kept_checkpoint_lsn: report.newest_checkpoint.as_ref().map(|c| c.lsn),
    };
    let Some(first) = base.problems.first().cloned() else {
        return Ok(base);
    };
    // Bytes that cannot be read cannot be saved first: nothing is cut.
    if let Some(p) = base
        .problems
        .iter()
        .find(|p| p.severity == Severity::Unreadable)
    {
        return Err(Error::scan(p.clone()));
    }
    // A torn tail is only ever reported for the newest segment and makes the log's
    // worst severity TornTail only when it is its one problem.
    if policy == Policy::TolerateTail && base.worst != Some(Severity::TornTail) {
        let suggested = plan_for(storage, Policy::PointInTime, report)?;
        return Ok(Plan {
            verdict: Verdict::Refuse(Box::new(suggested)),
            ..base
        });
    }
    let (cuts, first_cut) = planned_cuts(storage, report, &first)?;
    let kept_last_lsn = first.last_good_lsn;
    let next_lsn = match kept_last_lsn {
        Some(l) => l.saturating_add(1),
        None => first_cut.unwrap_or(1).max(floor()?),
    };
    // Everything the scan read before the first problem is kept.
    let kept_checkpoint_lsn = report
        .segments
        .iter()
        .filter(|s| s.id <= first.segment_id)
        .filter_map(|s| s.last_checkpoint_lsn)
        .max();
    Ok(Plan {
        verdict: Verdict::Cut,
        cuts,
        kept_first_lsn: kept_last_lsn.and(report.first_lsn),
        kept_last_lsn,
        next_lsn,
        kept_checkpoint_lsn,
        ..base
    })
}

/// The cuts that take the log back to just before `first`, its first problem: the
/// damaged segment cut at the damage, every later one removed (a missing segment
/// has no file to cut). Also the first LSN cut, for a cut that keeps no record:
/// known from the first intact record after the damage, less the damaged records
/// before it.
fn planned_cuts(
    storage: &Arc<dyn Storage>,
    report: &ScanReport,
    first: &Problem,
) -> Result<(Vec<PlannedCut>, Option<u64>)> {
    let mut cuts = Vec::new();
    let mut first_cut: Option<u64> = None;
    let mut unknown_before = Some(0u64);
    for s in &report.segments {
        if matches!(
            s.problem.as_ref().map(|p| &p.kind),
            Some(ProblemKind::MissingSegment { .. })
        ) {
            continue;
        }
        if s.id == first.segment_id {
            let rest = survey(storage, s, first.offset, first.last_good_lsn)?;
            match rest.first_lsn {
                Some(a) => first_cut = Some(a.saturating_sub(rest.steps_before_first).max(1)),
                None if rest.complete => unknown_before = Some(rest.steps),
                None => unknown_before = None,
            }
            cuts.push(PlannedCut {
                segment: s.name.clone(),
                segment_id: s.id,
                action: CutAction::Truncate,
                offset: first.offset,
                bytes: s.size - first.offset,
                size: s.size,
                intact_records: rest.records,
                lsns: rest.lsns,
                damaged_bytes: rest.damaged,
                checkpoints: rest.checkpoints,
            });
        } else if s.id > first.segment_id {
            if let (None, Some(a), Some(_)) = (first_cut, s.first_lsn, s.last_lsn) {
                // Exact when every record between the damage and here is counted;
                // otherwise this segment's first LSN, which is never too low.
                first_cut = Some(match unknown_before {
                    Some(n) => a.saturating_sub(n).max(1),
                    None => a,
                });
            }
            cuts.push(removal(storage, s)?);
        }
    }
    Ok((cuts, first_cut))
}

/// A whole later segment removed by a cut, with what it holds: its intact records
/// (also those after damage of its own), their checkpoints, the damaged bytes.
fn removal(storage: &Arc<dyn Storage>, s: &SegmentSummary) -> Result<PlannedCut> {
    let mut found = Survey::default();
    if let (Some(a), Some(b)) = (s.first_lsn, s.last_lsn) {
        found.add(a, b, s.records);
    }
    if s.checkpoints > 0 {
        found.checkpoints = checkpoints_before(storage, s)?;
    }
    match &s.problem {
        Some(p) => {
            let rest = survey(storage, s, p.offset, p.last_good_lsn)?;
            for r in &rest.lsns {
                found.add(r.first, r.last, 0);
            }
            found.records += rest.records;
            found.damaged += rest.damaged;
            found.checkpoints.extend(rest.checkpoints);
        }
        None => found.damaged += s.size - s.valid_len,
    }
    Ok(PlannedCut {
        segment: s.name.clone(),
        segment_id: s.id,
        action: CutAction::Remove,
        offset: 0,
        bytes: s.size,
        size: s.size,
        intact_records: found.records,
        lsns: found.lsns,
        damaged_bytes: found.damaged,
        checkpoints: found.checkpoints,
    })
}

/// Carries the plan's cuts out, once their bytes are saved: later segments removed
/// newest first, then the damaged one cut, the directory fsynced after each.
fn make_cuts(storage: &dyn Storage, plan: &Plan) -> Result<()> {
    let root = storage.root().to_path_buf();
    let sync_dir = || {
        storage
            .sync_dir("")
            .map_err(|e| Error::io("fsync", &root, e))
    };
    for c in plan.cuts.iter().rev() {
        if c.action == CutAction::Remove {
            storage
                .remove_file(&c.segment)
                .map_err(|e| Error::io("remove", root.join(&c.segment), e))?;
            sync_dir()?;
        }
    }
    for c in &plan.cuts {
        if c.action == CutAction::Truncate {
            storage
                .truncate(&c.segment, c.offset)
                .map_err(|e| Error::io("truncate", root.join(&c.segment), e))?;
            sync_dir()?;
        }
    }
    Ok(())
}

/// A cut that keeps no record, its bytes saved in another directory `q`: a writer
/// opened without that directory must still continue at the next LSN, so a
/// copy-less entry in the log's own quarantine says where it is (the cut freed the
/// space it takes). On failure, the warning to give.
fn note_next_lsn(
    storage: &dyn Storage,
    q: quarantine::Location<'_>,
    plan: &Plan,
    entry: &str,
) -> std::result::Result<(), String> {
    let reason = format!(
        "the log keeps no record after this cut; its bytes are in quarantine entry {entry} \
         in {}, and the next LSN is {}",
        q.path().display(),
        plan.next_lsn
    );
    let info = quarantine::CutInfo {
        reason: &reason,
        policy: plan.policy.name(),
        next_lsn: Some(plan.next_lsn),
    };
    let in_log = quarantine::Location::in_log(storage);
    quarantine::save_at(storage, in_log, info, &[])
        .map(|_| ())
        .map_err(|e| {
            format!(
                "could not note the next LSN ({}) in the log's own quarantine ({e}): only the \
             quarantine in {} holds it, and the next writer must be given that directory \
             so that LSNs do not restart at 1",
                plan.next_lsn,
                q.path().display()
            )
        })
}

/// Intact records found in a byte range that is to be cut.
#[derive(Debug, Default)]
struct Survey {
    records: u64,
    lsns: Vec<LsnRange>,
    damaged: u64,
    /// LSNs of the intact checkpoints.
    checkpoints: Vec<u64>,
    /// LSN of the first intact record, and how many damaged records (framing whole)
    /// were stepped over before it.
    first_lsn: Option<u64>,
    steps_before_first: u64,
    /// Damaged records stepped over in all.
    steps: u64,
    /// Whether the range was framed record by record to its end (so `steps` counts
    /// every record in it that is not intact).
    complete: bool,
}

impl Survey {
    fn add(&mut self, first: u64, last: u64, records: u64) {
        self.records += records;
        match self.lsns.last_mut() {
            Some(r) if r.last.checked_add(1) == Some(first) => r.last = last,
            _ => self.lsns.push(LsnRange { first, last }),
        }
    }
}

/// Finds the intact records in bytes `from..size` of segment `s` (bytes the main
/// scan did not read because they lie after a problem) with LSNs after `after`: the
/// salvage's resync steps over every damaged range, whatever its framing.
fn survey(
    storage: &Arc<dyn Storage>,
    s: &SegmentSummary,
    from: u64,
    after: Option<u64>,
) -> Result<Survey> {
    let seg = SegmentFile {
        id: s.id,
        name: s.name.clone(),
        size: s.size,
    };
    let mut out = Survey::default();
    let mut intact = 0;
    let mut salvage = Salvager::within(storage.clone(), &seg, from, s.size, after)?;
    // Each damaged range holds at least one damaged record: counting one per range
    // never puts the first LSN cut below the real one. The range from `from` (the
    // problem) to the first intact record is not reported as a skip.
    while let Some(ev) = salvage.next()? {
        match ev {
            SalvageEvent::Record(r) => {
                out.add(r.lsn, r.lsn, 1);
                intact += r.len;
                if r.checkpoint {
                    out.checkpoints.push(r.lsn);
                }
                if out.first_lsn.is_none() {
                    out.steps += u64::from(r.offset > from);
                    out.first_lsn = Some(r.lsn);
                    out.steps_before_first = out.steps;
                }
            }
            SalvageEvent::Skipped(_) => out.steps += 1,
            _ => {}
        }
    }
    if out.first_lsn.is_none() && from < s.size {
        out.steps += 1;
    }
    // The salvage reads to the end of the range, past any damage.
    out.complete = true;
    out.damaged = (s.size - from).saturating_sub(intact);
    Ok(out)
}
/// LSNs of the intact checkpoints in segment `s` before its first problem.
fn checkpoints_before(storage: &Arc<dyn Storage>, s: &SegmentSummary) -> Result<Vec<u64>> {
    let seg = SegmentFile {
        id: s.id,
        name: s.name.clone(),
        size: s.size,
    };
    let mut out = Vec::new();
    let mut salvage = Salvager::within(storage.clone(), &seg, 0, s.valid_len, None)?;
    while let Some(ev) = salvage.next()? {
        if let SalvageEvent::Record(r) = ev {
            if r.checkpoint {
                out.push(r.lsn);
            }
        }
    }
    Ok(out)
}

/// What [`apply`] found and did.
#[derive(Debug, Clone, Serialize)]
pub struct Applied {
    /// The plan made under the lock from the log as it was.
    pub plan: Plan,
    /// The quarantine entry holding every cut byte; `Some` exactly when the plan's
    /// verdict was [`Verdict::Cut`] and the cuts were made.
    pub quarantine: Option<Manifest>,
    /// A scan of the log after the cuts (`None` when nothing was cut).
    pub after: Option<ScanReport>,
    /// What went wrong after the cuts without undoing them.
    pub warnings: Vec<String>,
    /// The quarantine directory that alone holds the next LSN, when the log keeps
    /// no record and its own quarantine could not note it (one of the
    /// [`warnings`](Self::warnings)): the next writer must be given this directory,
    /// or LSNs restart at 1.
    pub next_lsn_only_in: Option<PathBuf>,
}

/// Repairs the log under `policy`: takes the writer lock ([`Error::Locked`] while a
/// writer has the log open), plans from the current state, saves every byte to be
/// cut in a fsynced quarantine entry and checks the copies, then cuts (later
/// segments removed newest first, directory fsynced after each; then the damaged
/// segment truncated, file and directory fsynced).
///
/// With a clean log or a refusing policy nothing is changed and [`Applied::plan`]
/// says why. An error part-way (or a crash) loses nothing; calling `apply` again
/// finishes the job.
pub fn apply(storage: Arc<dyn Storage>, policy: Policy) -> Result<Applied> {
    apply_with(storage, policy, None)
}

/// [`apply`], saving the cut bytes in the directory kept by `quarantine` instead of
/// the log's own `.walctl-quarantine/` (`None`), for instance on another file system
/// when the log's is full.
pub fn apply_with(
    storage: Arc<dyn Storage>,
    policy: Policy,
    quarantine: Option<&dyn Storage>,
) -> Result<Applied> {
    let _lock = DirLock::acquire(storage.as_ref())?;
    let mut plan = plan(storage.clone(), policy)?;
    if let (Some(q), None) = (quarantine, plan.kept_last_lsn) {
        // Where earlier cuts kept elsewhere left the log counts too.
        let floor = quarantine::lsn_floor_at(quarantine::Location::dir(q))?;
        plan.next_lsn = plan.next_lsn.max(floor.unwrap_or(1));
    }
    if plan.verdict != Verdict::Cut {
        return Ok(Applied {
            plan,
            quarantine: None,
            after: None,
            warnings: Vec::new(),
            next_lsn_only_in: None,
        });
    }
    let cuts: Vec<Cut> = plan
        .cuts
        .iter()
        .map(|c| Cut {
            file: c.segment.clone(),
            offset: c.offset,
            whole_file: c.action == CutAction::Remove,
        })
        .collect();
    let reason = plan.reason();
    let info = quarantine::CutInfo {
        reason: &reason,
        policy: policy.name(),
        next_lsn: Some(plan.next_lsn),
    };
    let q = location(storage.as_ref(), quarantine);
    let manifest =
        quarantine::save_at(storage.as_ref(), q, info, &cuts).map_err(|e| Error::SaveFailed {
            quarantine: q.path(),
            last_lsn: plan.problems.first().and_then(|p| p.last_good_lsn),
            source: Box::new(e),
        })?;
    check_saved(&plan, &manifest)?;
    quarantine::verify_at(q, &manifest)?;

    make_cuts(storage.as_ref(), &plan)?;
    let mut warnings = Vec::new();
    let mut next_lsn_only_in = None;
    if q.is_separate() && plan.kept_last_lsn.is_none() {
        if let Err(w) = note_next_lsn(storage.as_ref(), q, &plan, &manifest.id) {
            warnings.push(w);
            next_lsn_only_in = Some(q.path());
        }
    }
    let after = scan_log(storage.clone(), ScanOptions::default(), |_| {})?;
    Ok(Applied {
        plan,
        quarantine: Some(manifest),
        after: Some(after),
        warnings,
        next_lsn_only_in,
    })
}

/// The saved copies must be exactly what the plan cuts; otherwise something else
/// changed the log between the scan and the copy, and nothing is cut.
fn check_saved(plan: &Plan, manifest: &Manifest) -> Result<()> {
    let same = plan.cuts.len() == manifest.items.len()
        && plan.cuts.iter().zip(&manifest.items).all(|(c, i)| {
            c.segment == i.file
                && c.offset == i.offset
                && c.bytes == i.length
                && c.size == i.original_size
        });
    if same {
        Ok(())
    } else {
        Err(Error::Quarantine {
            id: manifest.id.clone(),
            reason: "the log changed while its bytes were being saved (is another program \
                     writing to it?); nothing was cut, the entry holds only copies"
                .into(),
        })
    }
}

/// What [`restore`] did.
#[derive(Debug, Clone, Serialize)]
pub struct Restored {
    /// The quarantine entry.
    pub id: String,
    /// Each saved piece and what was done with it.
    pub items: Vec<RestoredItem>,
    /// A scan of the log afterwards (it usually shows the damage again).
    pub after: ScanReport,
}

/// Puts the bytes of quarantine entry `id` back where they were cut, under the writer
/// lock; see [`quarantine::restore`] for when it refuses (nothing changed) and why
/// it is idempotent and safe to rerun after a crash.
pub fn restore(storage: Arc<dyn Storage>, id: &str) -> Result<Restored> {
    restore_with(storage, id, None)
}

/// [`restore`] of an entry kept in the directory of `quarantine` (`None`: the log's
/// own).
pub fn restore_with(
    storage: Arc<dyn Storage>,
    id: &str,
    quarantine: Option<&dyn Storage>,
) -> Result<Restored> {
    let _lock = DirLock::acquire(storage.as_ref())?;
    let q = location(storage.as_ref(), quarantine);
    let items = quarantine::restore_at(storage.as_ref(), q, id)?;
    let after = scan_log(storage.clone(), ScanOptions::default(), |_| {})?;
    Ok(Restored {
        id: id.to_string(),
        items,
        after,
    })
}

/// Every quarantine entry of the log, oldest first, each with its manifest or why it
/// cannot be read (reads only).
pub fn list_quarantine(storage: &dyn Storage) -> Result<Vec<(String, Result<Manifest>)>> {
    quarantine::entries(storage)
}

/// The entries of the log's own quarantine, or of the directory of `quarantine`.
fn location<'a>(
    log: &'a dyn Storage,
    quarantine: Option<&'a dyn Storage>,
) -> quarantine::Location<'a> {
    match quarantine {
        Some(q) => quarantine::Location::dir(q),
        None => quarantine::Location::in_log(log),
    }
}
