//! The bytes of one segment: [`SegReader`] over the file or a read-ahead thread,
//! filling a reusable buffer.

use crate::error::Error;
use crate::readahead::{Chunk, ReadAhead, HEADROOM};
use crate::storage::{ReadFile, ReadStorage};

/// Buffer for reading a segment: large sequential reads, one chunk (256 KiB) each.
pub(super) const READ_CHUNK: usize = crate::readahead::CHUNK;

/// Bytes of a segment the scanner asks the OS to read ahead when it opens it (and
/// the one after it).
pub(super) const PREFETCH: u64 = 8 << 20;

/// Where a segment's bytes come from.
pub(super) enum Source {
    /// Read by the scanner's own thread.
    Direct(Box<dyn ReadFile>),
    /// Read by a helper thread, a chunk ahead (never while following).
    Ahead(ReadAhead),
}

/// Reads one segment with a reusable buffer.
pub(super) struct SegReader {
    pub(super) source: Source,
    /// File size this reader trusts (a snapshot; `poll` may raise it).
    pub(super) size: u64,
    /// File offset of `buf[start]`.
    pub(super) offset: u64,
    pub(super) start: usize,
    pub(super) end: usize,
}

impl SegReader {
    pub(super) fn available(&self) -> u64 {
        self.size - self.offset
    }

    /// Makes `need` bytes from `offset` contiguous in `buf`. The caller has checked
    /// that the file holds them and that `need` is bounded.
    pub(super) fn fill(&mut self, buf: &mut Vec<u8>, need: usize) -> std::io::Result<()> {
        if self.end - self.start >= need {
            return Ok(());
        }
        if let Source::Ahead(ahead) = &mut self.source {
            return fill_ahead(ahead, buf, &mut self.start, &mut self.end, need);
        }
        if self.start + need > buf.len() {
            buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
            if need > buf.len() {
                buf.resize(need.max(READ_CHUNK), 0);
            }
        }
        while self.end - self.start < need {
            let in_buf = (self.end - self.start) as u64;
            let file_left = self.size - self.offset - in_buf;
            let room = (buf.len() - self.end) as u64;
            let want = room.min(file_left) as usize;
            if want == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "file shrank while being read",
                ));
            }
            let at = self.end;
            let n = self.file()?.read(&mut buf[at..at + want])?;
            if n == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "file shrank while being read",
                ));
            }
            self.end += n;
        }
        Ok(())
    }

    /// The file, read by this thread (following never reads ahead).
    pub(super) fn file(&mut self) -> std::io::Result<&mut Box<dyn ReadFile>> {
        match &mut self.source {
            Source::Direct(f) => Ok(f),
            Source::Ahead(_) => Err(std::io::Error::other(
                "the segment is being read by the read-ahead thread",
            )),
        }
    }

    pub(super) fn advance(&mut self, n: usize) {
        self.start += n;
        self.offset += n as u64;
    }

    /// Whether every byte from `offset` to the end of the file is zero. A file cut
    /// short while this reads it counts as its zeros ending there: a writer cuts
    /// the unwritten, preallocated zeros of a segment at rotation.
    pub(super) fn rest_is_zero(&mut self, buf: &mut Vec<u8>) -> std::io::Result<bool> {
        let mut left = self.available();
        while left > 0 {
            let chunk = left.min(READ_CHUNK as u64) as usize;
            match self.fill(buf, chunk) {
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(true),
                r => r?,
            }
            if buf[self.start..self.start + chunk].iter().any(|&b| b != 0) {
                return Ok(false);
            }
            self.advance(chunk);
            left -= chunk as u64;
        }
        Ok(true)
    }
}

/// [`SegReader::fill`] from a read-ahead thread: the unread bytes `buf[start..end]`
/// go in front of the next chunk, in its headroom, and the chunk becomes the buffer
/// (no copy of the chunk itself). Only a record longer than the headroom that
/// straddles chunks is put together by copying.
fn fill_ahead(
    ahead: &mut ReadAhead,
    buf: &mut Vec<u8>,
    start: &mut usize,
    end: &mut usize,
    need: usize,
) -> std::io::Result<()> {
    while *end - *start < need {
        let Chunk {
            buf: mut chunk,
            len,
        } = ahead.next().unwrap_or_else(|| {
            Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "file shrank while being read",
            ))
        })?;
        let left = *end - *start;
        if left <= HEADROOM {
            chunk[HEADROOM - left..HEADROOM].copy_from_slice(&buf[*start..*end]);
            ahead.recycle(std::mem::replace(buf, chunk));
            *start = HEADROOM - left;
            *end = HEADROOM + len;
        } else {
            buf.copy_within(*start..*end, 0);
            *end = left;
            *start = 0;
            if buf.len() < left + len {
                buf.resize(left + len, 0);
            }
            buf[left..left + len].copy_from_slice(&chunk[HEADROOM..HEADROOM + len]);
            *end += len;
            ahead.recycle(chunk);
        }
    }
    Ok(())
}

/// The error of a failed read of segment `name`. The path is only built for an
/// error: reads run once per record.
pub(super) fn read_error<'a>(
    storage: &'a dyn ReadStorage,
    name: &'a str,
) -> impl Fn(std::io::Error) -> Error + Copy + 'a {
    move |e| Error::io("read", storage.root().join(name), e)
}
