//! Batching standard input: records split out of the stream are committed as one
//! batch whenever the input pauses or a bound is reached, and acknowledged at once.

use std::io::{self, Read, Write};
use std::time::Instant;

use anyhow::{anyhow, Context};
use walctl::writer::Wal;

use walctl::codec::MAX_DATA_LEN;

use super::{BATCH_MAX_AGE, BATCH_MAX_BYTES, BATCH_MAX_RECORDS, READ_CHUNK};
use crate::cli::args::Encoding;
use crate::cli::decode::{decode_into, max_encoded_len, DecodedBound, IN_MEMORY_MAX};
use crate::cli::sys;

/// Entries waiting to be appended, in one arena.
#[derive(Debug, Default)]
pub struct Batch {
    arena: Vec<u8>,
    ends: Vec<usize>,
    started: Option<Instant>,
}

impl Batch {
    fn push_decoded(&mut self, enc: Option<Encoding>, raw: &[u8]) -> Result<(), String> {
        match enc {
            None => self.arena.extend_from_slice(raw),
            Some(enc) => decode_into(enc, raw, &mut self.arena)?,
        }
        let start = self.ends.last().copied().unwrap_or(0);
        if self.arena.len() - start > MAX_DATA_LEN {
            self.arena.truncate(start);
            return Err(format!(
                "entry is larger than the maximum record size ({MAX_DATA_LEN} bytes)"
            ));
        }
        self.ends.push(self.arena.len());
        self.started.get_or_insert_with(Instant::now);
        Ok(())
    }

    pub(super) fn push(&mut self, data: &[u8]) {
        self.arena.extend_from_slice(data);
        self.ends.push(self.arena.len());
    }

    /// The entries, in order.
    pub fn slices(&self) -> Vec<&[u8]> {
        let mut start = 0;
        self.ends
            .iter()
            .map(|&end| {
                let s = &self.arena[start..end];
                start = end;
                s
            })
            .collect()
    }

    /// Whether there is nothing to append.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    fn full(&self) -> bool {
        self.arena.len() >= BATCH_MAX_BYTES || self.ends.len() >= BATCH_MAX_RECORDS
    }

    fn aged(&self) -> bool {
        self.started.is_some_and(|t| t.elapsed() >= BATCH_MAX_AGE)
    }

    fn clear(&mut self) {
        self.arena.clear();
        self.ends.clear();
        self.started = None;
        if self.arena.capacity() > 4 * BATCH_MAX_BYTES {
            self.arena.shrink_to(BATCH_MAX_BYTES);
        }
    }
}

/// Where committed batches go.
pub trait Sink {
    /// Appends the batch, makes it durable per the sync policy, acknowledges it, and
    /// empties it. An empty batch is a no-op.
    fn commit(&mut self, batch: &mut Batch) -> anyhow::Result<()>;
}

/// Appends batches to the log and prints their LSNs.
pub(super) struct Committer<'a, W: Write> {
    pub(super) wal: &'a Wal,
    pub(super) out: W,
    pub(super) json: bool,
    /// Whether to hand each batch to the OS (the policy does not fsync it).
    pub(super) flush_os: bool,
    pub(super) first: Option<u64>,
    pub(super) last: Option<u64>,
    pub(super) count: u64,
    /// stdout was closed by its reader: keep appending, stop printing.
    pub(super) stdout_closed: bool,
}

impl<W: Write> Sink for Committer<'_, W> {
    fn commit(&mut self, batch: &mut Batch) -> anyhow::Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let dir = self.wal.storage().root();
        let acked = self.last;
        let what = || match acked {
            Some(l) => format!(
                "appending to {} (every LSN printed, up to {l}, is durable)",
                dir.display()
            ),
            None => format!("appending to {} (no LSN was printed)", dir.display()),
        };
        let (first, last) = self.wal.append_batch(&batch.slices()).with_context(what)?;
        if self.flush_os {
            self.wal.flush().with_context(what)?;
        }
        batch.clear();
        self.first.get_or_insert(first);
        self.last = Some(last);
        self.count += last - first + 1;
        if !self.json && !self.stdout_closed {
            let printed = (first..=last)
                .try_for_each(|lsn| writeln!(self.out, "{lsn}"))
                .and_then(|()| self.out.flush());
            match printed {
                // Whoever read the LSNs has gone (`| head -1`). The input is still
                // appended, all of it: a closed stdout must not drop entries.
                Err(e) if e.kind() == io::ErrorKind::BrokenPipe => self.stdout_closed = true,
                other => other?,
            }
        }
        Ok(())
    }
}

/// Standard input as the pump sees it.
pub trait Input {
    /// One read; 0 is end of input.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize>;
    /// Whether a read would return at once (data or end of input is ready).
    fn ready(&mut self) -> bool;
}

/// File descriptor 0, read with read(2) (no user-space buffer hides data from poll).
pub(super) struct StdinFd;

impl Input for StdinFd {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match sys::read_stdin(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // An inherited non-blocking descriptor: wait until it is readable.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    sys::poll_stdin(-1)?;
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn ready(&mut self) -> bool {
        // On a poll failure, commit now rather than sit on read input.
        sys::poll_stdin(0).unwrap_or(false)
    }
}

/// How standard input is cut into entries.
#[derive(Debug, Clone, Copy)]
pub struct Split {
    /// The terminator: `\n` or NUL.
    pub sep: u8,
    /// Remove a `\r` before the terminator.
    pub strip_cr: bool,
    /// Decode each piece (`None`: raw bytes).
    pub enc: Option<Encoding>,
}

impl Split {
    fn unit(&self) -> &'static str {
        if self.sep == b'\n' {
            "line"
        } else {
            "entry"
        }
    }

    fn max_piece_len(&self) -> usize {
        max_encoded_len(self.enc) + usize::from(self.strip_cr)
    }
}

/// Reads `input` to its end, cutting it per `split` and committing batches to `sink`
/// whenever input has nothing more ready, a batch is full or old, and at the end.
/// On undecodable input the entries before it are committed, then it fails naming the
/// line (or NUL-separated entry) and its byte offset.
pub fn pump(input: &mut impl Input, split: Split, sink: &mut impl Sink) -> anyhow::Result<()> {
    let mut cut = Cutter {
        split,
        sink,
        batch: Batch::default(),
        pieces: 0,
    };
    let mut buf: Vec<u8> = Vec::with_capacity(READ_CHUNK);
    // Bytes at the front of `buf` known to hold no terminator.
    let mut searched = 0usize;
    // Offset in the input of buf[0].
    let mut base: u64 = 0;
    // `buf` holds input left over after a long piece: look at it before reading more.
    let mut carried = false;
    loop {
        let eof = if std::mem::take(&mut carried) {
            false
        } else {
            match read_more(input, &mut buf) {
                Ok(eof) => eof,
                Err(e) => {
                    return Err(cut.fail(anyhow::Error::new(e).context("read standard input")))
                }
            }
        };
        let start = cut.pieces_in(&buf, searched, base, eof)?;
        if start > 0 {
            buf.drain(..start);
            base += start as u64;
        }
        searched = buf.len();
        if eof {
            return cut.commit();
        }
        if buf.len() > IN_MEMORY_MAX {
            if cut.long_piece(input, &mut buf, &mut base)? {
                return Ok(());
            }
            searched = 0;
            carried = true;
            continue;
        }
        if buf.len() > split.max_piece_len() {
            return Err(cut.too_long(base));
        }
        if buf.capacity() > 4 * READ_CHUNK && buf.len() < READ_CHUNK {
            buf.shrink_to(2 * READ_CHUNK);
        }
        if !cut.batch.is_empty() && (cut.batch.aged() || !input.ready()) {
            cut.commit()?;
        }
    }
}

/// One read from `input` onto the end of `buf`; whether input ended.
fn read_more(input: &mut impl Input, buf: &mut Vec<u8>) -> io::Result<bool> {
    let len = buf.len();
    buf.resize(len + READ_CHUNK, 0);
    match input.read(&mut buf[len..]) {
        Ok(n) => {
            buf.truncate(len + n);
            Ok(n == 0)
        }
        Err(e) => {
            buf.truncate(len);
            Err(e)
        }
    }
}

/// [`pump`]'s entries on their way to the sink: the batch being filled and how many
/// pieces of input came before.
struct Cutter<'a, S: Sink> {
    split: Split,
    sink: &'a mut S,
    batch: Batch,
    pieces: u64,
}

impl<S: Sink> Cutter<'_, S> {
    fn commit(&mut self) -> anyhow::Result<()> {
        self.sink.commit(&mut self.batch)
    }

    /// Commits the entries before a failure, then returns it (or the commit's own
    /// failure, which is the worse news).
    fn fail(&mut self, e: anyhow::Error) -> anyhow::Error {
        match self.commit() {
            Ok(()) => e,
            Err(c) => c,
        }
    }

    /// The next piece, at byte `offset` of input, cannot fit a record.
    fn too_long(&mut self, offset: u64) -> anyhow::Error {
        let e = anyhow!(
            "standard input {} {} (byte offset {offset}) is longer than any record can be ({MAX_DATA_LEN} bytes)",
            self.split.unit(),
            self.pieces + 1
        );
        self.fail(e)
    }

    /// Adds one piece found at byte `offset` of input; `terminated`: a terminator
    /// (not the end of input) ended it. Undecodable bytes fail, naming the piece.
    fn push(&mut self, piece: &[u8], terminated: bool, offset: u64) -> anyhow::Result<()> {
        let mut piece = piece;
        if terminated && self.split.strip_cr {
            piece = piece.strip_suffix(b"\r").unwrap_or(piece);
        }
        self.pieces += 1;
        if let Err(msg) = self.batch.push_decoded(self.split.enc, piece) {
            let e = anyhow!(
                "standard input {} {} (byte offset {offset}): {msg}",
                self.split.unit(),
                self.pieces
            );
            return Err(self.fail(e));
        }
        Ok(())
    }

    /// Adds every piece `buf` holds whole (and at `eof` the unterminated last one),
    /// committing full batches; `buf[..searched]` holds no terminator and `buf[0]` is
    /// byte `base` of input. Returns how many bytes of `buf` were taken.
    fn pieces_in(
        &mut self,
        buf: &[u8],
        mut searched: usize,
        base: u64,
        eof: bool,
    ) -> anyhow::Result<usize> {
        let mut start = 0usize;
        while start < buf.len() {
            let end = match memchr::memchr(self.split.sep, &buf[searched..]) {
                Some(p) => searched + p,
                None if eof => buf.len(),
                None => break,
            };
            let terminated = end < buf.len();
            self.push(&buf[start..end], terminated, base + start as u64)?;
            start = end + usize::from(terminated);
            searched = start;
            if self.batch.full() {
                self.commit()?;
            }
        }
        Ok(start)
    }

    /// `buf` is the start of one piece longer than what input may hold in memory
    /// before it is known to fit: the rest of it waits in a temporary file, then it is
    /// added and committed alone. `base` moves past it; returns whether input ended.
    fn long_piece(
        &mut self,
        input: &mut impl Input,
        buf: &mut Vec<u8>,
        base: &mut u64,
    ) -> anyhow::Result<bool> {
        let long = match long_piece(input, self.split, buf) {
            Ok(l) => l,
            Err(e) => return Err(self.fail(e)),
        };
        let Some((raw, terminated, eof)) = long else {
            return Err(self.too_long(*base));
        };
        self.push(&raw, terminated, *base)?;
        *base += raw.len() as u64 + u64::from(terminated);
        drop(raw);
        self.commit()?;
        Ok(eof)
    }
}

/// Reads the rest of a piece that already fills `buf` (all of `buf` is its start)
/// into a temporary file, stopping as soon as it cannot fit a record (`None`).
/// Otherwise returns the whole piece, whether a terminator ended it, and whether
/// input ended; `buf` then holds the input after the terminator.
fn long_piece(
    input: &mut impl Input,
    split: Split,
    buf: &mut Vec<u8>,
) -> anyhow::Result<Option<(Vec<u8>, bool, bool)>> {
    let limit = split.max_piece_len() as u64;
    let mut bound = DecodedBound {
        enc: split.enc,
        significant: 0,
    };
    let over = MAX_DATA_LEN as u64 + u64::from(split.strip_cr);
    bound.feed(buf);
    let mut total = buf.len() as u64;
    let context = "hold a long standard input line in a temporary file";
    let mut spill = tempfile::tempfile().context(context)?;
    spill.write_all(buf).context(context)?;
    buf.clear();
    buf.shrink_to(2 * READ_CHUNK);
    let mut chunk = vec![0u8; READ_CHUNK];
    let (terminated, eof) = loop {
        let n = input.read(&mut chunk).context("read standard input")?;
        if n == 0 {
            break (false, true);
        }
        let (body, rest) = match memchr::memchr(split.sep, &chunk[..n]) {
            Some(p) => (&chunk[..p], Some(&chunk[p + 1..n])),
            None => (&chunk[..n], None),
        };
        total += body.len() as u64;
        bound.feed(body);
        if total > limit || bound.decoded() > over {
            return Ok(None);
        }
        spill.write_all(body).context(context)?;
        if let Some(rest) = rest {
            buf.extend_from_slice(rest);
            break (true, false);
        }
    };
    let mut piece = Vec::with_capacity(total as usize);
    use std::io::Seek;
    spill
        .rewind()
        .and_then(|()| spill.read_to_end(&mut piece))
        .context(context)?;
    Ok(Some((piece, terminated, eof)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Input delivered in fixed chunks; `ready` says whether the next chunk is
    /// "already there".
    struct Chunks {
        chunks: Vec<(Vec<u8>, bool)>,
        next: usize,
    }

    impl Input for Chunks {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let Some((c, _)) = self.chunks.get(self.next) else {
                return Ok(0);
            };
            assert!(c.len() <= buf.len());
            buf[..c.len()].copy_from_slice(c);
            self.next += 1;
            Ok(c.len())
        }
        fn ready(&mut self) -> bool {
            // Whether the chunk just read was followed at once by the next one.
            self.chunks[self.next - 1].1
        }
    }

    #[derive(Default)]
    struct Collect(Vec<Vec<Vec<u8>>>);

    impl Sink for Collect {
        fn commit(&mut self, batch: &mut Batch) -> anyhow::Result<()> {
            if !batch.is_empty() {
                self.0
                    .push(batch.slices().iter().map(|s| s.to_vec()).collect());
                batch.clear();
            }
            Ok(())
        }
    }

    fn lines() -> Split {
        Split {
            sep: b'\n',
            strip_cr: true,
            enc: Some(Encoding::Utf8),
        }
    }

    fn run_chunks(chunks: &[(&[u8], bool)], split: Split) -> (Collect, anyhow::Result<()>) {
        let mut input = Chunks {
            chunks: chunks.iter().map(|(c, r)| (c.to_vec(), *r)).collect(),
            next: 0,
        };
        let mut sink = Collect::default();
        let res = pump(&mut input, split, &mut sink);
        (sink, res)
    }

    fn v(items: &[&[u8]]) -> Vec<Vec<u8>> {
        items.iter().map(|s| s.to_vec()).collect()
    }

    #[test]
    fn commits_when_input_pauses_and_keeps_partial_lines() {
        let (sink, res) = run_chunks(
            &[
                (b"a\nb", true),
                (b"c\r", false),
                (b"\n\nd\r\n", false),
                (b"last", false),
            ],
            lines(),
        );
        res.unwrap();
        // "a" waits while more input is ready; the pause after "c\r" commits it alone
        // ("bc" is still incomplete); the next pause commits "bc", "" and "d"; "last"
        // goes at end of input.
        assert_eq!(
            sink.0,
            vec![v(&[b"a"]), v(&[b"bc", b"", b"d"]), v(&[b"last"])]
        );
    }

    #[test]
    fn lone_cr_at_end_of_input_is_data() {
        let (sink, res) = run_chunks(&[(b"x\r", false)], lines());
        res.unwrap();
        assert_eq!(sink.0, vec![v(&[b"x\r"])]);
    }

    #[test]
    fn nul_split_takes_raw_bytes() {
        let split = Split {
            sep: 0,
            strip_cr: false,
            enc: None,
        };
        let (sink, res) = run_chunks(&[(b"a\r\n\xff\0\0b", false)], split);
        res.unwrap();
        // The complete pieces go at the pause; "b" is unterminated until input ends.
        assert_eq!(sink.0, vec![v(&[b"a\r\n\xff", b""]), v(&[b"b"])]);
    }

    #[test]
    fn bad_line_commits_earlier_lines_then_names_line_and_offset() {
        let split = Split {
            enc: Some(Encoding::Hex),
            ..lines()
        };
        let (sink, res) = run_chunks(&[(b"00ff\n", true), (b"ab\nzz\n01\n", false)], split);
        let err = format!("{:#}", res.unwrap_err());
        assert!(err.contains("line 3 (byte offset 8)"), "{err}");
        assert!(err.contains("'z'"), "{err}");
        assert_eq!(sink.0, vec![v(&[b"\x00\xff", b"\xab"])]);
    }
}
