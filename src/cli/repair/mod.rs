//! `walctl truncate-corrupt`: plan (dry run) or apply a repair that saves every cut
//! byte in the quarantine first; list and restore quarantine entries.

mod prune;

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use serde_json::{json, Value};
use walctl::quarantine::{Manifest, RestoreAction, QUARANTINE_DIR};
use walctl::repair::{self, CutAction, LsnRange, Plan, PlannedCut, Policy, Verdict};
use walctl::scan::ScanReport;
use walctl::segment::segment_name;
use walctl::storage::{LockProbe, Storage};
use walctl::{Problem, ProblemKind};

use super::exit::Exit;
use super::open::{require_segments, DirArg, QuarantineArg};
use super::output;

/// Repair a damaged log without losing a byte: every cut byte is saved first.
///
/// A dry run by default: prints what it would cut (segment, byte offset, number of
/// bytes, the LSNs of the intact records that would go, whole segments that would
/// go) and changes nothing. --apply takes the writer lock, copies the bytes it cuts
/// into DIR/.walctl-quarantine/<ID>/ (fsynced, with a JSON manifest), then cuts.
/// Killed at any point, nothing is lost: run it again to finish. --restore ID puts
/// the bytes back, byte for byte.
///
/// Policies:
///   tolerate-tail (default)  cut only a torn tail of the newest segment (what a
///                            crash mid-write leaves); refuse any other damage
///   point-in-time            keep everything before the first problem, cut
///                            everything from it on (the rest of that segment and
///                            every later segment)
#[derive(Debug, clap::Args)]
#[command(
    verbatim_doc_comment,
    after_help = "\
Examples:
  walctl truncate-corrupt --dir /var/lib/app/wal
  walctl truncate-corrupt --dir /var/lib/app/wal --apply
  walctl truncate-corrupt --dir /var/lib/app/wal --policy point-in-time --apply
  walctl truncate-corrupt --dir /var/lib/app/wal --apply --quarantine-dir /mnt/other/q
  walctl truncate-corrupt --dir /var/lib/app/wal --list-quarantine
  walctl truncate-corrupt --dir /var/lib/app/wal --restore 2026-11-25T043000Z-1234-000000001-0
  walctl truncate-corrupt --dir /var/lib/app/wal --prune-quarantine --older-than 30d

Exit codes: 0 the log is (now) clean or there is nothing to do; 3 (dry run) the
only damage is a torn tail; 4 (dry run) corruption, or the policy refuses; 1 could
not act (lock held, I/O error, a full disk, restore refused); 2 usage error."
)]
pub struct Args {
    #[command(flatten)]
    dir: DirArg,
    /// Make the cuts (without it: a dry run that changes nothing).
    #[arg(long)]
    apply: bool,
    /// What may be cut.
    #[arg(long, value_enum, default_value_t = PolicyArg::TolerateTail)]
    policy: PolicyArg,
    /// Report as JSON: one object (NDJSON, one entry a line, with --list-quarantine).
    #[arg(long)]
    json: bool,
    /// Put the bytes of quarantine entry ID back exactly where they were cut. Refuses,
    /// changing nothing, if the log was written to since the cut, or while a newer
    /// entry that cut the same segment at or before it is not restored (it names
    /// that entry: restore it first).
    #[arg(long, value_name = "ID", conflicts_with_all = ["apply", "policy", "list_quarantine"])]
    restore: Option<String>,
    /// List the quarantine entries (what was cut, when, why, whether restored),
    /// oldest first.
    #[arg(long, conflicts_with_all = ["apply", "policy"])]
    list_quarantine: bool,
    /// Delete quarantine entries: a dry run that lists what it would delete; with
    /// --apply it deletes them. All entries, or those older than --older-than.
    #[arg(long, conflicts_with_all = ["policy", "list_quarantine", "restore"])]
    prune_quarantine: bool,
    /// With --prune-quarantine: only entries older than this (e.g. 30d, 12h, 90min).
    #[arg(long, value_name = "DURATION", requires = "prune_quarantine", value_parser = humantime::parse_duration)]
    older_than: Option<std::time::Duration>,
    /// Print nothing (no report, no notes): the exit code is the answer. An error
    /// that stops the command is still named on stderr.
    #[arg(long, short = 'q', conflicts_with_all = ["json", "list_quarantine"])]
    quiet: bool,
    #[command(flatten)]
    quarantine: QuarantineArg,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum PolicyArg {
    /// Cut only a torn tail of the newest segment.
    TolerateTail,
    /// Cut everything from the first problem on.
    PointInTime,
}

impl From<PolicyArg> for Policy {
    fn from(p: PolicyArg) -> Policy {
        match p {
            PolicyArg::TolerateTail => Policy::TolerateTail,
            PolicyArg::PointInTime => Policy::PointInTime,
        }
    }
}

pub fn run(args: Args) -> anyhow::Result<Exit> {
    let dir = args.dir.dir.clone();
    let storage = args.dir.open_local()?;
    if args.list_quarantine {
        let q = args.quarantine.open(false)?;
        return list(&args, storage.as_ref(), q.as_deref());
    }
    if let Some(id) = &args.restore {
        let q = args.quarantine.open(false)?;
        return restore(&args, storage, id, q.as_deref());
    }
    if args.prune_quarantine {
        let q = args.quarantine.open(false)?;
        return prune::run(
            storage,
            q,
            prune::Opts {
                older_than: args.older_than,
                apply: args.apply,
                json: args.json,
                quiet: args.quiet,
            },
        );
    }
    // Before anything that could create a file (the lock): a wrong --dir is an error,
    // never an empty log.
    require_segments(storage.as_ref())?;
    let policy = Policy::from(args.policy);
    if args.apply {
        let q = args.quarantine.open(true)?;
        let applied = repair::apply_with(storage, policy, q.as_deref())?;
        for w in &applied.warnings {
            output::note(format_args!("warning: {w}"));
        }
        if let Some(q) = &applied.next_lsn_only_in {
            output::note(format_args!(
                "give --quarantine-dir {} to the next writer (`walctl append`), so that LSNs do \
                 not restart at 1",
                output::shell_quote(q.as_os_str())
            ));
        }
        let exit = match &applied.plan.verdict {
            Verdict::Clean => Exit::Ok,
            Verdict::Refuse(_) => Exit::Corrupt,
            Verdict::Cut => Exit::from_severity(applied.after.as_ref().and_then(|a| a.worst())),
        };
        let o = Outcome {
            dir: &dir,
            plan: &applied.plan,
            applied: Some(&applied),
            writer: None,
            exit,
        };
        report(&args, &o)?;
        Ok(exit)
    } else {
        let writer = storage.probe_lock().unwrap_or(LockProbe::Unknown);
        let plan = repair::plan(storage, policy)?;
        let exit = match &plan.verdict {
            Verdict::Clean => Exit::Ok,
            Verdict::Refuse(_) => Exit::Corrupt,
            Verdict::Cut => Exit::from_severity(plan.worst),
        };
        let o = Outcome {
            dir: &dir,
            plan: &plan,
            applied: None,
            writer: Some(&writer),
            exit,
        };
        report(&args, &o)?;
        Ok(exit)
    }
}

/// The two ways on from a segment missing in the middle of the log.
fn explain_missing(out: &mut impl Write, dir: &Path, p: &Problem) -> std::io::Result<()> {
    let ProblemKind::MissingSegment {
        first_id, last_id, ..
    } = p.kind
    else {
        return Ok(());
    };
    let files = (first_id..=last_id)
        .take(4)
        .map(|id| dir.join(segment_name(id)).display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    writeln!(
        out,
        "  the file is gone, not damaged: the segments before and after it are intact. Either\n  \
         1. put it back ({files}) from a backup or an archive copy and run `walctl verify` \
         again: nothing needs cutting; or\n  \
         2. cut the log at the hole: --policy point-in-time removes every segment after it \
         (saved to the quarantine first) and keeps the records before it."
    )
}

fn lsn_list(lsns: &[LsnRange]) -> String {
    const SHOWN: usize = 8;
    let mut s: Vec<String> = lsns.iter().take(SHOWN).map(|r| r.to_string()).collect();
    if lsns.len() > SHOWN {
        s.push(format!("and {} more ranges", lsns.len() - SHOWN));
    }
    s.join(", ")
}

fn cut_line(c: &PlannedCut, done: bool) -> String {
    let what = match (c.action, done) {
        (CutAction::Truncate, false) => format!("truncate at offset {}", c.offset),
        (CutAction::Truncate, true) => format!("truncated at offset {}", c.offset),
        (CutAction::Remove, false) => "remove whole segment".to_string(),
        (CutAction::Remove, true) => "removed whole segment".to_string(),
    };
    let records = match c.intact_records {
        0 => "no intact records".to_string(),
        n => format!("{n} intact records (LSN {})", lsn_list(&c.lsns)),
    };
    let mut s = format!("  {}  {what}: {} bytes, {records}", c.segment, c.bytes);
    if c.damaged_bytes > 0 {
        s.push_str(&format!(", {} damaged bytes", c.damaged_bytes));
    }
    s
}

fn kept_line(plan: &Plan) -> String {
    match (plan.kept_first_lsn, plan.kept_last_lsn) {
        (Some(a), Some(b)) => format!(
            "LSN {}; the next append gets LSN {}",
            LsnRange { first: a, last: b },
            plan.next_lsn()
        ),
        _ => format!("no records; the next append gets LSN {}", plan.next_lsn()),
    }
}

/// Which checkpoints a cut takes and where recovery starts afterwards, e.g.
/// "removes checkpoint LSN 1001; recovery will then start at the first kept record
/// (LSN 930-1000): no checkpoint is kept".
fn recovery_line(plan: &Plan, done: bool) -> String {
    let cps = plan.cut_checkpoints();
    let (removes, starts) = if done {
        ("removed", "recovery now starts")
    } else {
        ("removes", "recovery will then start")
    };
    let mut s = match cps.as_slice() {
        [] => format!("{removes} no checkpoint"),
        [one] => format!("{removes} checkpoint LSN {one}"),
        many => {
            let shown: Vec<String> = many.iter().rev().take(8).map(u64::to_string).collect();
            let more = many.len().saturating_sub(8);
            format!(
                "{removes} {} checkpoints: LSN {}{} (newest first)",
                many.len(),
                shown.join(", "),
                if more > 0 {
                    format!(" and {more} older")
                } else {
                    String::new()
                }
            )
        }
    };
    s.push_str("; ");
    match (plan.kept_checkpoint_lsn, plan.kept_first_lsn) {
        (Some(cp), _) => s.push_str(&format!("{starts} at checkpoint LSN {cp}")),
        (None, Some(first)) => s.push_str(&format!(
            "{starts} at the first kept record, LSN {first}: no checkpoint is kept"
        )),
        (None, None) => s.push_str(&format!(
            "the log keeps no record, so {starts} from the first record appended (LSN {})",
            plan.next_lsn()
        )),
    }
    s
}

fn cuts_json(plan: &Plan) -> Value {
    json!({
        "policy": plan.policy,
        "cuts": plan.cuts,
        "bytes": plan.bytes(),
        "intact_records": plan.intact_records(),
        "kept_first_lsn": plan.kept_first_lsn,
        "kept_last_lsn": plan.kept_last_lsn,
        "next_lsn": plan.next_lsn(),
        "cut_checkpoints": plan.cut_checkpoints(),
        "kept_checkpoint_lsn": plan.kept_checkpoint_lsn,
    })
}

/// What a run of truncate-corrupt planned or did, for its report.
struct Outcome<'a> {
    /// The log directory as given.
    dir: &'a Path,
    plan: &'a Plan,
    /// What `--apply` did; `None` for a dry run.
    applied: Option<&'a repair::Applied>,
    /// Whether a writer holds the log (a dry run looks; `--apply` took the lock).
    writer: Option<&'a LockProbe>,
    exit: Exit,
}

impl Outcome<'_> {
    fn quarantine(&self) -> Option<&Manifest> {
        self.applied.and_then(|a| a.quarantine.as_ref())
    }

    fn after(&self) -> Option<&ScanReport> {
        self.applied.and_then(|a| a.after.as_ref())
    }
}

/// Prints a plan (dry run) or what `apply` did, as text or one JSON object, then
/// what to do next on stderr.
fn report(args: &Args, o: &Outcome) -> anyhow::Result<()> {
    if args.quiet {
        return Ok(());
    }
    let mut out = output::stdout();
    if args.json {
        output::json_line(&mut out, &report_json(o))?;
    } else {
        write_text(&mut out, args, o)?;
    }
    out.flush()?;
    note_writer(o.dir, o.writer);
    if !args.json {
        note_next(args, o);
    }
    Ok(())
}

/// The report as one JSON object.
fn report_json(o: &Outcome) -> Value {
    let (dir, plan) = (o.dir, o.plan);
    let quarantine = o.quarantine();
    let suggested = match &plan.verdict {
        Verdict::Refuse(s) => Some(s.as_ref()),
        _ => None,
    };
    let status = match (&plan.verdict, o.applied.is_some()) {
        (Verdict::Clean, _) => "clean",
        (Verdict::Refuse(_), _) => "refused",
        (Verdict::Cut, false) => "would_cut",
        (Verdict::Cut, true) => "cut",
    };
    let mut v = json!({
        // A path that is not UTF-8 is shown with U+FFFD, never a panic in json!.
        "dir": dir.to_string_lossy(),
        "policy": plan.policy,
        "apply": o.applied.is_some(),
        "status": status,
        "worst": plan.worst,
        "problems": plan.problems,
        "segments": plan.segments,
        "cuts": plan.cuts,
        "bytes": plan.bytes(),
        "intact_records": plan.intact_records(),
        "kept_first_lsn": plan.kept_first_lsn,
        "kept_last_lsn": plan.kept_last_lsn,
        "next_lsn": plan.next_lsn(),
        "cut_checkpoints": plan.cut_checkpoints(),
        "kept_checkpoint_lsn": plan.kept_checkpoint_lsn,
        "suggested_policy": suggested.map(|s| s.policy),
        "suggested": suggested.map(cuts_json),
        "quarantine_id": quarantine.map(|m| m.id.clone()),
        "quarantine_dir": quarantine.map(|m| entry_dir(dir, m).to_string_lossy().into_owned()),
        "worst_after": o.after().map(|a| a.worst()),
        "exit_code": o.exit as i32,
    });
    if let Some(w) = o.writer {
        v["writer_active"] = match w {
            LockProbe::Free => json!(false),
            LockProbe::Held { .. } => json!(true),
            LockProbe::Unknown => Value::Null,
        };
    }
    v
}

/// The report as text: the problems found, then the verdict.
fn write_text(out: &mut impl Write, args: &Args, o: &Outcome) -> std::io::Result<()> {
    let plan = o.plan;
    for p in &plan.problems {
        writeln!(out, "found: {p}")?;
        if let ProblemKind::MissingSegment { .. } = p.kind {
            explain_missing(out, o.dir, p)?;
        }
    }
    match (&plan.verdict, o.applied) {
        (Verdict::Clean, _) => writeln!(
            out,
            "nothing to do: the log is clean ({}, {})",
            output::count(plan.segments as u64, "segment", "segments"),
            kept_line(plan)
        ),
        (Verdict::Refuse(s), _) => write_refused(out, o, s),
        (Verdict::Cut, None) => write_would_cut(out, plan),
        (Verdict::Cut, Some(_)) => write_cut(out, args, o),
    }
}

/// A refused cut: what the policy asked for would take more than a torn tail, and
/// what the suggested policy `s` would cut.
fn write_refused(out: &mut impl Write, o: &Outcome, s: &Plan) -> std::io::Result<()> {
    writeln!(
        out,
        "policy {} cuts only a torn tail of the newest segment: refusing, nothing {}",
        o.plan.policy,
        if o.applied.is_some() {
            "was changed"
        } else {
            "would be changed"
        }
    )?;
    writeln!(
        out,
        "--policy {} would cut {} bytes ({} intact records):",
        s.policy,
        s.bytes(),
        s.intact_records()
    )?;
    for c in &s.cuts {
        writeln!(out, "{}", cut_line(c, false))?;
    }
    writeln!(out, "and keep {}", kept_line(s))?;
    writeln!(out, "it {}", recovery_line(s, false))
}

/// A dry run's plan: the cuts, what the log keeps, where recovery starts.
fn write_would_cut(out: &mut impl Write, plan: &Plan) -> std::io::Result<()> {
    writeln!(
        out,
        "policy {} would cut {} bytes ({} intact records):",
        plan.policy,
        plan.bytes(),
        plan.intact_records()
    )?;
    for c in &plan.cuts {
        writeln!(out, "{}", cut_line(c, false))?;
    }
    writeln!(out, "the log would keep {}", kept_line(plan))?;
    writeln!(out, "the cut {}", recovery_line(plan, false))
}

/// An applied cut: where the bytes were saved, the cuts, the log after them, and
/// how to undo it.
fn write_cut(out: &mut impl Write, args: &Args, o: &Outcome) -> std::io::Result<()> {
    let (dir, plan) = (o.dir, o.plan);
    let quarantine = o.quarantine();
    let after = o.after();
    if let Some(m) = quarantine {
        writeln!(
            out,
            "saved {} bytes in quarantine entry {} ({})",
            plan.bytes(),
            m.id,
            entry_dir(dir, m).display()
        )?;
    }
    writeln!(out, "policy {} cut:", plan.policy)?;
    for c in &plan.cuts {
        writeln!(out, "{}", cut_line(c, true))?;
    }
    writeln!(out, "the cut {}", recovery_line(plan, true))?;
    match after.and_then(|a| a.worst()) {
        None => writeln!(out, "the log is clean: {}", kept_line(plan))?,
        Some(_) => {
            for p in after.into_iter().flat_map(|a| a.problems()) {
                writeln!(out, "still found: {p}")?;
            }
        }
    }
    if let Some(m) = quarantine {
        let elsewhere = args
            .quarantine
            .quarantine_dir
            .as_ref()
            .map(|q| format!(" --quarantine-dir {}", output::shell_quote(q.as_os_str())))
            .unwrap_or_default();
        writeln!(
            out,
            "undo with: walctl truncate-corrupt --dir {}{elsewhere} --restore {}",
            output::shell_quote(dir.as_os_str()),
            m.id
        )?;
    }
    Ok(())
}

/// After the text report, on stderr: why a cut was refused, that a dry run changed
/// nothing, or that problems remain.
fn note_next(args: &Args, o: &Outcome) {
    let (dir, plan) = (o.dir, o.plan);
    match (&plan.verdict, o.applied.is_some()) {
        (Verdict::Refuse(s), _) => output::note(format_args!(
            "refusing: {} is not a torn tail of the newest segment; rerun with --policy {} to \
             cut from there on (every cut byte is saved in the quarantine first)",
            plan.first_problem()
                .map(|p| format!(
                    "the {} in {} at offset {}",
                    p.severity.word(),
                    p.segment,
                    p.offset
                ))
                .unwrap_or_default(),
            s.policy
        )),
        (Verdict::Cut, false) => output::note(format_args!(
            "dry run: nothing was changed. Run again with --apply to cut; the bytes are saved \
             in {} first",
            args.quarantine
                .quarantine_dir
                .clone()
                .unwrap_or_else(|| dir.join(QUARANTINE_DIR))
                .display()
        )),
        (Verdict::Cut, true) if o.after().and_then(|a| a.worst()).is_some() => {
            output::note("the log still has problems after the cut; run `walctl verify`")
        }
        _ => {}
    }
}

fn note_writer(dir: &Path, writer: Option<&LockProbe>) {
    if let Some(LockProbe::Held { holder }) = writer {
        output::note(format_args!(
            "a writer has {} open (lock {}{}): a torn tail may be a record it is writing right \
             now; --apply refuses until it closes",
            dir.display(),
            dir.join(walctl::storage::LOCK_FILE).display(),
            holder
                .as_deref()
                .map(|h| format!(", held by {h}"))
                .unwrap_or_default()
        ));
    }
}

fn after_lines(after: &ScanReport) -> Vec<String> {
    if after.worst().is_none() {
        return vec!["the log is clean".to_string()];
    }
    after
        .problems()
        .map(|p| format!("the log now shows (as before the cut): {p}"))
        .collect()
}

/// Where a quarantine entry was saved.
fn entry_dir(dir: &Path, m: &Manifest) -> std::path::PathBuf {
    match &m.saved_in {
        Some(p) => p.into(),
        None => dir.join(QUARANTINE_DIR).join(&m.id),
    }
}

fn restore(
    args: &Args,
    storage: Arc<dyn Storage>,
    id: &str,
    q: Option<&dyn Storage>,
) -> anyhow::Result<Exit> {
    let dir = storage.root().to_path_buf();
    let done = repair::restore_with(storage, id, q)
        .with_context(|| format!("restoring quarantine entry {id} into {}", dir.display()))?;
    if args.quiet {
        return Ok(Exit::Ok);
    }
    let mut out = output::stdout();
    if args.json {
        output::json_line(
            &mut out,
            &json!({
                "dir": dir.to_string_lossy(),
                "restored": done.id,
                "items": done.items,
                "worst_after": done.after.worst(),
                "problems_after": done.after.problems().collect::<Vec<_>>(),
                "last_lsn_after": done.after.last_lsn,
                "exit_code": 0,
            }),
        )?;
    } else {
        writeln!(out, "restored quarantine entry {}:", done.id)?;
        for i in &done.items {
            let what = match i.action {
                RestoreAction::Appended if i.written == i.length => {
                    format!("appended {} bytes at offset {}", i.written, i.offset)
                }
                RestoreAction::Appended => format!(
                    "appended the last {} of {} bytes at offset {} (an earlier restore had done the rest)",
                    i.written, i.length, i.offset
                ),
                RestoreAction::Created => format!("recreated ({} bytes)", i.written),
                RestoreAction::AlreadyPresent => {
                    format!("already holds these {} bytes at offset {}", i.length, i.offset)
                }
            };
            writeln!(out, "  {}  {what}", i.file)?;
        }
        for line in after_lines(&done.after) {
            writeln!(out, "{line}")?;
        }
    }
    out.flush()?;
    Ok(Exit::Ok)
}

/// The pieces of an entry, short: the truncated segments with their offsets, then
/// the removed segments (a run of them as first..last).
fn pieces(m: &Manifest) -> String {
    let mut parts: Vec<String> = m
        .items
        .iter()
        .filter(|i| !i.whole_file)
        .map(|i| format!("{}@{}", i.file, i.offset))
        .collect();
    let whole: Vec<&str> = m
        .items
        .iter()
        .filter(|i| i.whole_file)
        .map(|i| i.file.as_str())
        .collect();
    match whole.as_slice() {
        [] => {}
        [one] => parts.push(format!("{one} (whole)")),
        [first, .., last] => parts.push(format!("{first}..{last} ({} whole)", whole.len())),
    }
    parts.join(", ")
}

fn list(args: &Args, storage: &dyn Storage, q: Option<&dyn Storage>) -> anyhow::Result<Exit> {
    let loc = match q {
        Some(q) => walctl::quarantine::Location::dir(q),
        None => walctl::quarantine::Location::in_log(storage),
    };
    let (entries, done) = read_entries(loc)?;
    let restored: Vec<Option<String>> = entries
        .iter()
        .map(|m| walctl::quarantine::restored_at(loc, &m.id))
        .collect();
    let mut out = output::stdout();
    if args.json {
        for (m, r) in entries.iter().zip(&restored) {
            let mut v = serde_json::to_value(m)?;
            v["restored"] = json!(r);
            output::json_line(&mut out, &v)?;
        }
        out.flush()?;
        return Ok(done);
    }
    if entries.is_empty() {
        output::note(format_args!(
            "no quarantine entries in {}",
            loc.path().display()
        ));
        return Ok(done);
    }
    write_table(&mut out, &entries, &restored)?;
    out.flush()?;
    Ok(done)
}

/// The quarantine entries at `loc` that can be read, and `Exit::Failed` when some
/// could not (each named on stderr).
fn read_entries(loc: walctl::quarantine::Location) -> anyhow::Result<(Vec<Manifest>, Exit)> {
    let mut entries = Vec::new();
    let mut skipped = 0;
    for (id, m) in walctl::quarantine::entries_at(loc)? {
        match m {
            Ok(m) => entries.push(m),
            // One damaged entry (or a stray directory) must not hide the others; the
            // exit status (1) tells scripts the listing is incomplete.
            Err(e) => {
                skipped += 1;
                output::note(format_args!("warning: skipping quarantine entry {id}: {e}"))
            }
        }
    }
    let done = if skipped == 0 { Exit::Ok } else { Exit::Failed };
    Ok((entries, done))
}

/// The entries as a table, one row each, in columns as wide as their widest cell.
fn write_table(
    out: &mut impl Write,
    entries: &[Manifest],
    restored: &[Option<String>],
) -> std::io::Result<()> {
    let rows: Vec<[String; 7]> = entries
        .iter()
        .zip(restored)
        .map(|(m, r)| {
            [
                m.id.clone(),
                m.time.clone(),
                m.policy.clone(),
                m.items.iter().map(|i| i.length).sum::<u64>().to_string(),
                r.clone().unwrap_or_else(|| "no".into()),
                pieces(m),
                m.reason.clone(),
            ]
        })
        .collect();
    let header = [
        "ID", "TIME", "POLICY", "BYTES", "RESTORED", "PIECES", "REASON",
    ];
    let mut widths = header.map(str::len);
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.len());
        }
    }
    let line = |cells: [&str; 7]| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i == 6 {
                s.push_str(c);
            } else if i == 3 {
                s.push_str(&format!("{c:>w$}  ", w = widths[i]));
            } else {
                s.push_str(&format!("{c:<w$}  ", w = widths[i]));
            }
        }
        s
    };
    writeln!(out, "{}", line(header))?;
    for r in &rows {
        writeln!(out, "{}", line(r.each_ref().map(String::as_str)))?;
    }
    Ok(())
}
