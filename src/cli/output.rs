//! Terminal conventions in one place: buffered stdout, NDJSON lines, one-line errors
//! on stderr, NO_COLOR, progress bars only on a terminal, and quiet exit on a closed
//! pipe.

use std::io::{self, IsTerminal, Write};
use std::path::Path;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use walctl::scan::SegmentSummary;
use walctl::{Problem, Severity};

/// Logs at least this large get a progress bar (on a terminal).
pub const PROGRESS_MIN_BYTES: u64 = 64 << 20;

/// Whether an error (anywhere in its chain) is a write to a closed pipe.
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
            || c.downcast_ref::<walctl::Error>().is_some_and(|w| {
                matches!(w, walctl::Error::Io { source, .. } if source.kind() == io::ErrorKind::BrokenPipe)
            })
    })
}

/// Prints `walctl: error: ...` with the whole cause chain on one line, leaving out a
/// cause whose text the message before it already says, and ending with what to do
/// next when there is something to say.
pub fn error_line_with(e: &anyhow::Error, next: Option<String>) {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    if let Some(next) = next {
        line.push_str("; ");
        line.push_str(&next);
    }
    let _ = writeln!(io::stderr().lock(), "walctl: error: {line}");
}

/// `n` with the singular or plural noun: "1 segment", "3 segments".
pub fn count(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// A path or word as a POSIX shell reads it back unchanged: as it is when it holds
/// only safe characters, else in single quotes (a `'` inside as `'\''`); bytes that
/// are not UTF-8 in bash's `$'\xNN'`.
pub fn shell_quote(s: &std::ffi::OsStr) -> String {
    use std::os::unix::ffi::OsStrExt;
    let b = s.as_bytes();
    let safe = |c: &u8| c.is_ascii_alphanumeric() || b"_./,:@%+=-".contains(c);
    if !b.is_empty() && b.iter().all(safe) {
        return String::from_utf8_lossy(b).into_owned();
    }
    match std::str::from_utf8(b) {
        Ok(text) => format!("'{}'", text.replace('\'', "'\\''")),
        Err(_) => {
            let mut q = String::from("$'");
            for &c in b {
                if c.is_ascii_alphanumeric() || c == b' ' || b"_./,:@%+=-".contains(&c) {
                    q.push(c as char);
                } else {
                    q.push_str(&format!("\\x{c:02x}"));
                }
            }
            q.push('\'');
            q
        }
    }
}

/// Prints a diagnostic line on stderr.
pub fn note(msg: impl std::fmt::Display) {
    let _ = writeln!(io::stderr().lock(), "walctl: {msg}");
}

/// Whether colour may be used on stdout: a terminal, and `NO_COLOR` unset or empty.
pub fn color_enabled() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && io::stdout().is_terminal()
}

/// Buffered stdout. Callers flush when a batch of output must reach the reader.
pub fn stdout() -> io::BufWriter<io::StdoutLock<'static>> {
    io::BufWriter::with_capacity(64 * 1024, io::stdout().lock())
}

/// Writes one value as one JSON line. The line is built whole first: a value that
/// cannot be serialized is an error with nothing written, never half a line.
pub fn json_line(out: &mut impl Write, value: &impl Serialize) -> io::Result<()> {
    let mut line = serde_json::to_vec(value).map_err(io::Error::other)?;
    line.push(b'\n');
    out.write_all(&line)
}

/// A byte-progress bar on stderr when stderr is a terminal, the work is large, and
/// the user did not ask for quiet or JSON output; hidden otherwise.
pub fn progress(total_bytes: u64, quiet: bool, what: &str) -> ProgressBar {
    if quiet || total_bytes < PROGRESS_MIN_BYTES || !io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::with_draw_target(Some(total_bytes), ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template(
        "{msg} [{bar:40}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    pb.set_style(style);
    pb.set_message(what.to_string());
    pb
}

/// An optional value in a text report: the value, or `-` when there is none.
pub fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_string(), |v| v.to_string())
}

/// A log's or segment's LSN range as `LSN a..=b`; `None` when it holds no record.
#[cfg_attr(not(feature = "s3"), allow(dead_code))] // `archive` is its one user so far
pub fn lsn_range(first: Option<u64>, last: Option<u64>) -> Option<String> {
    Some(format!("LSN {}..={}", first?, last?))
}

/// [`lsn_range`] as the summary lines of verify, segments and stats write it:
/// `LSN a ..= b`.
pub fn lsn_range_spaced(first: Option<u64>, last: Option<u64>) -> Option<String> {
    Some(format!("LSN {} ..= {}", first?, last?))
}

/// The command a reader of a problem report can run to see the record there.
pub fn inspect_hint(dir: &Path, segment_id: u64, offset: u64) -> String {
    format!(
        "walctl inspect --dir {} --segment {segment_id} --offset {offset}",
        dir.display()
    )
}

/// A problem as verify and segments report it in JSON: the problem's own fields plus
/// a readable message and how many bytes after it were left unread.
#[derive(Debug, Serialize)]
pub struct ProblemOut<'a> {
    #[serde(flatten)]
    problem: &'a Problem,
    message: String,
    unchecked_bytes: u64,
}

impl<'a> ProblemOut<'a> {
    pub fn new(problem: &'a Problem, segment_size: u64) -> Self {
        ProblemOut {
            problem,
            message: problem.to_string(),
            unchecked_bytes: segment_size.saturating_sub(problem.offset),
        }
    }
}

// The status words, the one place they are spelt: text and JSON, for every command.

/// The severity of a segment's problem (`None`: the segment is clean).
pub fn segment_severity(s: &SegmentSummary) -> Option<Severity> {
    s.problem.as_ref().map(|p| p.severity)
}

/// The worst severity among segments (`None`: all clean).
pub fn worst_of(segments: &[SegmentSummary]) -> Option<Severity> {
    segments.iter().filter_map(segment_severity).max()
}

/// A log's or segment's state in text: `ok`, `torn tail`, `unreadable` or `corrupt`
/// (JSON spells them as [`status_word`] does).
pub fn status_text(worst: Option<Severity>) -> &'static str {
    match worst {
        None => "ok",
        Some(Severity::TornTail) => "torn tail",
        Some(Severity::Unreadable) => "unreadable",
        Some(Severity::Corruption) => "corrupt",
    }
}

/// The word for a log's or segment's state: `ok`, `torn_tail`, `unreadable` or
/// `corrupt`.
pub fn status_word(worst: Option<Severity>) -> &'static str {
    match worst {
        None => "ok",
        Some(Severity::TornTail) => "torn_tail",
        Some(Severity::Unreadable) => "unreadable",
        Some(Severity::Corruption) => "corrupt",
    }
}

/// Table borders: box-drawing on a terminal; off one (a pipe, a file) plain columns
/// separated by spaces, so that awk and grep work.
pub fn table_preset() -> &'static str {
    if io::stdout().is_terminal() {
        comfy_table::presets::UTF8_FULL_CONDENSED
    } else {
        comfy_table::presets::NOTHING
    }
}

/// Lets a table fit the terminal only when stdout is one and its width is known: a pty
/// may report no width, and fitting into "no width" makes one-letter columns.
pub fn fit_to_terminal(table: &mut comfy_table::Table) {
    let fit = io::stdout().is_terminal() && table.width().is_some_and(|w| w >= 60);
    table.set_content_arrangement(if fit {
        comfy_table::ContentArrangement::Dynamic
    } else {
        comfy_table::ContentArrangement::Disabled
    });
}

/// Whether stdout's reader has gone (`walctl dump --follow | head -1` after `head`
/// exited): a follower waiting for records checks it, since otherwise it would only
/// notice at its next write, which may never come.
pub fn stdout_closed() -> bool {
    super::sys::stdout_hung_up()
}
