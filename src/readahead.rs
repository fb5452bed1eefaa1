//! Reads a segment on a helper thread, one chunk ahead of the scanner, so that the
//! copy out of the page cache (or the wait for the disk) overlaps the checks of the
//! chunk before it on the other core.

use std::io;
use std::sync::mpsc::{self, Receiver, SendError, Sender, SyncSender};
use std::thread::JoinHandle;

use crate::storage::ReadFile;

/// Free bytes in front of every chunk, so that the unread end of the previous chunk
/// (part of a record) can be put in front of the next one without moving the chunk.
pub(crate) const HEADROOM: usize = 64 << 10;

/// Bytes read into one chunk. A quarter MiB: the chunks in flight stay in the
/// cores' caches (1 MiB chunks measured 30-40% slower end to end).
pub(crate) const CHUNK: usize = 256 << 10;

/// Chunks read and not yet taken (besides the one being read and the one being
/// checked): bounds the memory to a few chunks however far the reader gets ahead.
const QUEUED: usize = 2;

/// Chunk buffers kept from one segment for the next (no allocation per segment).
const POOL: usize = QUEUED + 3;

/// A chunk of the file: its bytes are `buf[HEADROOM..HEADROOM + len]`.
pub(crate) struct Chunk {
    pub buf: Vec<u8>,
    pub len: usize,
}

type Message = io::Result<Chunk>;

/// A helper thread reading one file from its current position up to a size fixed at
/// the start, in order, a chunk at a time. Dropping it stops the thread (after the
/// read under way, at most one chunk) and waits for it.
pub(crate) struct ReadAhead {
    chunks: Option<Receiver<Message>>,
    recycle: Option<Sender<Vec<u8>>>,
    thread: Option<JoinHandle<Vec<Vec<u8>>>>,
    /// Buffers handed back after the thread finished.
    spare: Vec<Vec<u8>>,
}

impl ReadAhead {
    /// Starts reading `size` bytes of `file`, into the buffers of `pool` first (see
    /// [`ReadAhead::stop`]). Gives the file back if no thread can be started (the
    /// caller then reads it itself).
    pub fn start(
        file: Box<dyn ReadFile>,
        size: u64,
        pool: Vec<Vec<u8>>,
    ) -> Result<Self, Box<dyn ReadFile>> {
        let (file_tx, file_rx) = mpsc::channel::<Box<dyn ReadFile>>();
        let (chunk_tx, chunk_rx) = mpsc::sync_channel::<Message>(QUEUED);
        let (recycle_tx, recycle_rx) = mpsc::channel::<Vec<u8>>();
        for buf in pool {
            let _ = recycle_tx.send(buf);
        }
        let spawned = std::thread::Builder::new()
            .name("walctl-readahead".into())
            .spawn(move || match file_rx.recv() {
                Ok(file) => read_chunks(file, size, &chunk_tx, &recycle_rx),
                Err(_) => Vec::new(),
            });
        let thread = match spawned {
            Ok(t) => t,
            Err(_) => return Err(file),
        };
        // The thread is waiting for the file: it cannot have gone away.
        if let Err(SendError(file)) = file_tx.send(file) {
            let _ = thread.join();
            return Err(file);
        }
        Ok(ReadAhead {
            chunks: Some(chunk_rx),
            recycle: Some(recycle_tx),
            thread: Some(thread),
            spare: Vec::new(),
        })
    }

    /// The next chunk in file order, or `None` once every byte up to the size given
    /// at the start has been handed out (or after an error was).
    pub fn next(&mut self) -> Option<Message> {
        self.chunks.as_ref()?.recv().ok()
    }

    /// Hands a chunk's buffer back for the thread to read into again (no allocation
    /// per chunk). Buffers of another size are dropped.
    pub fn recycle(&mut self, buf: Vec<u8>) {
        if buf.len() != HEADROOM + CHUNK {
            return;
        }
        match &self.recycle {
            Some(tx) => {
                if let Err(SendError(buf)) = tx.send(buf) {
                    self.spare.push(buf);
                }
            }
            None => self.spare.push(buf),
        }
    }

    /// Stops the thread and returns the chunk buffers it held, for the next segment.
    pub fn stop(&mut self) -> Vec<Vec<u8>> {
        let mut bufs = std::mem::take(&mut self.spare);
        // Chunks read and not taken; dropping the receiver then ends the thread at its
        // next send (it keeps that buffer), or it ends after its read.
        if let Some(rx) = self.chunks.take() {
            bufs.extend(rx.try_iter().filter_map(|m| m.ok().map(|c| c.buf)));
        }
        self.recycle = None;
        if let Some(t) = self.thread.take() {
            if let Ok(kept) = t.join() {
                bufs.extend(kept);
            }
        }
        bufs.truncate(POOL);
        bufs
    }
}

impl Drop for ReadAhead {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The thread: reads `size` bytes in order and sends them a chunk at a time; returns
/// the buffers it holds at the end. A file that ends before `size` (cut while being
/// read) is an error, as it is for a reader that reads for itself.
fn read_chunks(
    mut file: Box<dyn ReadFile>,
    size: u64,
    chunks: &SyncSender<Message>,
    recycled: &Receiver<Vec<u8>>,
) -> Vec<Vec<u8>> {
    let mut kept = Vec::new();
    let mut pos = 0u64;
    while pos < size {
        let mut buf = recycled
            .try_recv()
            .unwrap_or_else(|_| vec![0u8; HEADROOM + CHUNK]);
        let want = (size - pos).min(CHUNK as u64) as usize;
        let msg = loop {
            match file.read(&mut buf[HEADROOM..HEADROOM + want]) {
                Ok(0) => {
                    break Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "file shrank while being read",
                    ))
                }
                Ok(len) => break Ok(len),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => break Err(e),
            }
        };
        let msg = match msg {
            Ok(len) => {
                pos += len as u64;
                Ok(Chunk { buf, len })
            }
            Err(e) => {
                kept.push(buf);
                Err(e)
            }
        };
        let failed = msg.is_err();
        if let Err(SendError(msg)) = chunks.send(msg) {
            if let Ok(c) = msg {
                kept.push(c.buf);
            }
            break;
        }
        if failed {
            break;
        }
    }
    kept.extend(recycled.try_iter());
    kept
}
