//! A `/logtail` or `/mainlogtail` stream (4.7): the last 1024 bytes of the log, then every
//! new byte, read from the file at the stream's offset only when its socket takes more (so a
//! client that stops reading costs no memory), following truncation and rotation. And what a
//! connection streams: one log, or several merged (`/mergedtail`).

use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::PathBuf;
use std::time::{Instant, SystemTime};

use super::conn::Conn;
use super::mergedtail::{Disk, MergedTail};

/// What a streaming connection follows.
pub(super) enum Follow {
    One(Tail),
    Merged(MergedTail),
}

impl Follow {
    /// Pushes the next piece of the stream into `conn`: true if there was one.
    pub(super) fn feed(&mut self, buf: &mut [u8], conn: &mut Conn, now: Instant) -> io::Result<bool> {
        match self {
            Follow::One(t) => t.feed(buf, conn),
            Follow::Merged(m) => {
                let mut piece = Vec::new();
                m.next_piece(&Disk, buf, now, &mut piece);
                conn.push(&piece);
                Ok(!piece.is_empty())
            }
        }
    }

    /// When the stream has something to do even if no log grows (a line held back, a look
    /// put off).
    pub(super) fn deadline(&self) -> Option<Instant> {
        match self {
            Follow::One(_) => None,
            Follow::Merged(m) => m.deadline(),
        }
    }
}

/// The most a tail reads from its file at once (and so keeps queued for its socket).
const TAIL_CHUNK: usize = 16 * 1024;
/// Supervisor's tails begin with this much of the existing file.
const INITIAL_TAIL: u64 = 1024;

/// A `/logtail` stream: the file, where it is read up to, and the path to follow rotation.
pub(super) struct Tail {
    path: PathBuf,
    file: File,
    inode: u64,
    pos: u64,
}

impl Tail {
    /// Opens the log at `path`, positioned on its last 1024 bytes; also its mtime.
    pub(super) fn open(path: PathBuf) -> Option<(Tail, Option<SystemTime>)> {
        let file = crate::sys::open_regular(&path).ok()?;
        let meta = file.metadata().ok();
        let mtime = meta.as_ref().and_then(|m| m.modified().ok());
        let size = meta.as_ref().map_or(0, |m| m.len());
        let inode = meta.as_ref().map_or(0, |m| m.ino());
        Some((Tail { path, file, inode, pos: size.saturating_sub(INITIAL_TAIL) }, mtime))
    }

    /// Reads what the tail's file has past its offset into the stream (at most one chunk): true if
    /// something was pushed. At the end of the file, follows truncation and rotation as
    /// Supervisor's `_follow` does: a shorter file was truncated, a different inode at the path is
    /// a rotated file, streamed from its start once the rest of the old one is sent.
    pub(super) fn feed(&mut self, buf: &mut [u8], conn: &mut Conn) -> io::Result<bool> {
        let want = buf.len().min(TAIL_CHUNK);
        let n = loop {
            match self.file.read_at(&mut buf[..want], self.pos) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break 0,
            }
        };
        if n > 0 {
            self.pos += n as u64;
            conn.push(&buf[..n]);
            return Ok(true);
        }
        let size = self.file.metadata().map(|m| m.len()).unwrap_or(self.pos);
        if size < self.pos {
            conn.push(b"==> File truncated <==\n");
            self.pos = 0;
            return Ok(true);
        }
        if let Ok(meta) = std::fs::metadata(&self.path) {
            if meta.ino() != self.inode {
                if let Ok(f) = crate::sys::open_regular(&self.path) {
                    self.inode = f.metadata().map(|m| m.ino()).unwrap_or(meta.ino());
                    self.file = f;
                    self.pos = 0;
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }
}
