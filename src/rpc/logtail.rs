//! `/logtail` and `/mainlogtail` streams (4.7): the last 1024 bytes, then every new byte as
//! its own flushed chunk, following truncation and rotation.
//!
//! A stream sleeps in `poll(2)` on an inotify fd (the file and its directory) and on its own
//! client connection (`POLLRDHUP`), so an idle tail costs no wake-ups and a client that goes
//! away is noticed at once. Without inotify it re-checks the file every 200 ms.
//!
//! tiny_http 0.12 gives no access to a request's socket, so the connection is looked up among
//! the process's fds: exactly for TCP (the peer address is known); for unix sockets all
//! connections share one local name, so the newest one not already claimed by another tail
//! is taken, which is right unless two clients connect at the same moment. Without a match the
//! stream ends only when a write fails.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::syscall;

/// Supervisor sends this much of the existing file first.
const INITIAL_TAIL: u64 = 1024;
/// The largest chunk read and sent at once.
const READ_CHUNK: usize = 64 * 1024;
/// Re-check interval when inotify is unavailable (Supervisor polls every 100 ms).
const FALLBACK_POLL_MS: i32 = 200;

/// The local address of a listener, to recognize its connections.
#[derive(Clone, Debug)]
pub enum ConnectionId {
    /// The path the socket was bound to (what `getsockname` reports for its connections).
    Unix(PathBuf),
    Tcp(SocketAddr),
}

/// Socket inodes watched by live tails, so two tails never pick the same unix connection;
/// and the number of live tails.
#[derive(Default)]
pub struct Claims(Mutex<HashSet<u64>>, AtomicUsize);

impl Claims {
    pub fn active(&self) -> usize {
        self.1.load(Ordering::SeqCst)
    }
    fn contains(&self, inode: u64) -> bool {
        self.0.lock().map(|s| s.contains(&inode)).unwrap_or(false)
    }
    fn insert(&self, inode: u64) {
        if let Ok(mut s) = self.0.lock() {
            s.insert(inode);
        }
    }
    fn remove(&self, inode: u64) {
        if let Ok(mut s) = self.0.lock() {
            s.remove(&inode);
        }
    }
}

/// A tail's own fd of its client connection.
pub struct Connection {
    fd: OwnedFd,
    inode: u64,
    tcp: bool,
    /// `POLLRDHUP` until it fires for a reason other than the client leaving.
    events: i16,
}

pub struct TailStart {
    /// The raw response writer; the status line and headers are already written.
    pub writer: Box<dyn Write + Send>,
    pub path: PathBuf,
    pub file: File,
    pub chunked: bool,
    pub connection: Option<Connection>,
}

fn fstat(fd: RawFd) -> Option<libc::stat> {
    // SAFETY: stat is plain old data; zeroed is valid and fstat overwrites it.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    syscall!(fstat(fd, &mut st)).ok()?;
    Some(st)
}

/// `getsockname`/`getpeername` into a sockaddr_storage.
fn sock_addr(fd: RawFd, peer: bool) -> Option<(libc::sockaddr_storage, libc::socklen_t)> {
    // SAFETY: sockaddr_storage is plain old data; zeroed is valid.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    let p = (&mut ss as *mut libc::sockaddr_storage).cast::<libc::sockaddr>();
    let res = if peer { syscall!(getpeername(fd, p, &mut len)) } else { syscall!(getsockname(fd, p, &mut len)) };
    res.ok().map(|_| (ss, len))
}

fn inet_addr(fd: RawFd, peer: bool) -> Option<SocketAddr> {
    let (ss, _) = sock_addr(fd, peer)?;
    if i32::from(ss.ss_family) != libc::AF_INET {
        return None;
    }
    // SAFETY: the family is AF_INET, so the storage holds a sockaddr_in.
    let sin = unsafe { &*(&ss as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
    let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
    Some(SocketAddr::V4(SocketAddrV4::new(ip, u16::from_be(sin.sin_port))))
}

fn unix_local_path(fd: RawFd) -> Option<Vec<u8>> {
    let (ss, len) = sock_addr(fd, false)?;
    if i32::from(ss.ss_family) != libc::AF_UNIX {
        return None;
    }
    // SAFETY: the family is AF_UNIX, so the storage holds a sockaddr_un.
    let sun = unsafe { &*(&ss as *const libc::sockaddr_storage).cast::<libc::sockaddr_un>() };
    let offset = std::mem::size_of::<libc::sa_family_t>();
    let n = (len as usize).saturating_sub(offset).min(sun.sun_path.len());
    let bytes: Vec<u8> = sun.sun_path[..n].iter().map(|&c| c as u8).collect();
    Some(bytes.split(|&b| b == 0).next().unwrap_or(&[]).to_vec())
}

/// Finds (and duplicates) the fd of the connection a tail request came on; see the module doc.
pub fn find_connection(local: &ConnectionId, remote: Option<SocketAddr>, claims: &Claims) -> Option<Connection> {
    let mut best: Option<(u64, RawFd)> = None;
    for entry in std::fs::read_dir("/proc/self/fd").ok()?.flatten() {
        let Some(fd) = entry.file_name().to_str().and_then(|s| s.parse::<RawFd>().ok()) else {
            continue;
        };
        let Some(st) = fstat(fd) else { continue };
        if st.st_mode & libc::S_IFMT != libc::S_IFSOCK || claims.contains(st.st_ino) {
            continue;
        }
        let matches = match local {
            ConnectionId::Tcp(l) => {
                let ours = inet_addr(fd, false)
                    .is_some_and(|a| a.port() == l.port() && (l.ip().is_unspecified() || a.ip() == l.ip()));
                ours && remote.is_some() && inet_addr(fd, true) == remote
            }
            ConnectionId::Unix(path) => {
                unix_local_path(fd).is_some_and(|p| p == path.as_os_str().as_bytes()) && sock_addr(fd, true).is_some()
            }
        };
        if matches && best.is_none_or(|(ino, _)| st.st_ino > ino) {
            best = Some((st.st_ino, fd));
        }
    }
    let (inode, fd) = best?;
    let dup = syscall!(fcntl(fd, libc::F_DUPFD_CLOEXEC, 0)).ok()?;
    // SAFETY: fcntl just returned this new fd, which nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(dup) };
    // The fd number may have been reused between the scan and the dup: check it is the same.
    if fstat(fd.as_raw_fd()).map(|st| st.st_ino) != Some(inode) {
        return None;
    }
    claims.insert(inode);
    let tcp = matches!(local, ConnectionId::Tcp(_));
    Some(Connection { fd, inode, tcp, events: libc::POLLRDHUP })
}

/// inotify on the file (writes, truncation, its own move or deletion) and on its directory
/// (a new file of that name after rotation).
struct Watch {
    fd: OwnedFd,
    file_wd: Option<i32>,
}

impl Watch {
    fn new(path: &Path) -> io::Result<Watch> {
        let raw = syscall!(inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC))?;
        // SAFETY: inotify_init1 just returned this fd, which nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let dir_mask = libc::IN_CREATE | libc::IN_MOVED_TO | libc::IN_MOVED_FROM | libc::IN_DELETE;
        add_watch(&fd, dir, dir_mask)?;
        let mut w = Watch { fd, file_wd: None };
        w.watch_file(path);
        Ok(w)
    }

    fn watch_file(&mut self, path: &Path) {
        if let Some(wd) = self.file_wd.take() {
            let _ = syscall!(inotify_rm_watch(self.fd.as_raw_fd(), wd));
        }
        let mask = libc::IN_MODIFY | libc::IN_ATTRIB | libc::IN_CLOSE_WRITE | libc::IN_MOVE_SELF | libc::IN_DELETE_SELF;
        self.file_wd = add_watch(&self.fd, path, mask).ok();
    }

    /// Reads every pending event; what changed is found by looking at the file again.
    fn drain(&self) {
        let mut buf = [0u8; 4096];
        loop {
            let n = syscall!(read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()));
            match n {
                Ok(n) if n > 0 => continue,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                _ => return,
            }
        }
    }
}

fn add_watch(fd: &OwnedFd, path: &Path, mask: u32) -> io::Result<i32> {
    let c =
        std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    syscall!(inotify_add_watch(fd.as_raw_fd(), c.as_ptr(), mask))
}

struct Tail {
    writer: Box<dyn Write + Send>,
    path: PathBuf,
    file: File,
    inode: u64,
    pos: u64,
    chunked: bool,
}

impl Tail {
    fn emit(&mut self, data: &[u8]) -> io::Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        if self.chunked {
            self.writer.write_all(format!("{:x}\r\n", data.len()).as_bytes())?;
            self.writer.write_all(data)?;
            self.writer.write_all(b"\r\n")?;
        } else {
            self.writer.write_all(data)?;
        }
        self.writer.flush()
    }

    /// Sends what was appended since the last call; a shorter file was truncated.
    fn send_new(&mut self) -> io::Result<()> {
        let Ok(size) = self.file.metadata().map(|m| m.len()) else {
            return Ok(());
        };
        if size < self.pos {
            self.emit(b"==> File truncated <==\n")?;
            self.pos = 0;
        }
        let mut buf = vec![0u8; READ_CHUNK.min((size - self.pos) as usize)];
        while self.pos < size {
            let want = READ_CHUNK.min((size - self.pos) as usize);
            let n = match self.file.read_at(&mut buf[..want], self.pos) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            };
            self.pos += n as u64;
            self.emit(&buf[..n])?;
        }
        Ok(())
    }

    /// Supervisor's `_follow`: a different inode at the path is a rotated file, streamed from
    /// its start. The rest of the old file is sent first.
    fn follow(&mut self, watch: &mut Option<Watch>) -> io::Result<()> {
        if let Ok(meta) = std::fs::metadata(&self.path) {
            if meta.ino() != self.inode {
                self.send_new()?;
                if let Ok(f) = File::open(&self.path) {
                    self.inode = f.metadata().map(|m| m.ino()).unwrap_or(meta.ino());
                    self.file = f;
                    self.pos = 0;
                    if let Some(w) = watch {
                        w.watch_file(&self.path);
                    }
                }
            }
        }
        self.send_new()
    }
}

enum Woken {
    Check,
    ClientGone,
}

/// `TCP_ESTABLISHED` of linux/tcp.h (not exported by libc).
const TCP_ESTABLISHED: u8 = 1;

/// TCP_INFO's state: whether the peer has sent its FIN (or more).
fn tcp_peer_closed(fd: RawFd) -> bool {
    // SAFETY: tcp_info is plain old data; zeroed is valid and getsockopt overwrites it.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    let p = (&mut info as *mut libc::tcp_info).cast::<libc::c_void>();
    match syscall!(getsockopt(fd, libc::IPPROTO_TCP, libc::TCP_INFO, p, &mut len)) {
        Ok(_) => info.tcpi_state != TCP_ESTABLISHED,
        Err(_) => true,
    }
}

fn wait(watch: &Option<Watch>, conn: &mut Option<Connection>) -> Woken {
    let mut fds = Vec::with_capacity(2);
    if let Some(w) = watch {
        fds.push(libc::pollfd { fd: w.fd.as_raw_fd(), events: libc::POLLIN, revents: 0 });
    }
    if let Some(c) = conn {
        fds.push(libc::pollfd { fd: c.fd.as_raw_fd(), events: c.events, revents: 0 });
    }
    let timeout = if watch.is_some() { -1 } else { FALLBACK_POLL_MS };
    loop {
        match syscall!(poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout)) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            // poll cannot fail on valid fds; re-check the file rather than spin.
            Err(_) => return Woken::Check,
            Ok(_) => break,
        }
    }
    let (Some(c), Some(p)) = (conn.as_mut(), fds.last()) else {
        return Woken::Check;
    };
    if p.revents & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0 {
        return Woken::ClientGone;
    }
    if p.revents & libc::POLLRDHUP != 0 {
        // tiny_http shuts the read side itself after an HTTP/1.0 or `Connection: close`
        // request, which looks the same. A unix peer that leaves also gives POLLHUP; a TCP
        // peer that leaves moves the socket out of ESTABLISHED.
        if c.tcp && tcp_peer_closed(c.fd.as_raw_fd()) {
            return Woken::ClientGone;
        }
        c.events = 0;
    }
    Woken::Check
}

/// Streams until the client goes away. The file is the one at `path` when the request came.
pub fn stream(start: TailStart, claims: &Claims) {
    let _active = Active::new(claims);
    let TailStart { writer, path, file, chunked, mut connection } = start;
    let (inode, size) = match file.metadata() {
        Ok(m) => (m.ino(), m.len()),
        Err(_) => (0, 0),
    };
    let mut tail = Tail { writer, path, file, inode, pos: size.saturating_sub(INITIAL_TAIL), chunked };
    let mut watch = Watch::new(&tail.path).ok();
    if tail.send_new().is_ok() {
        loop {
            if let Woken::ClientGone = wait(&watch, &mut connection) {
                break;
            }
            if let Some(w) = &watch {
                w.drain();
            }
            if tail.follow(&mut watch).is_err() {
                break;
            }
        }
    }
    if let Some(c) = connection {
        claims.remove(c.inode);
    }
}

/// Counts a live stream, also when it unwinds.
struct Active<'a>(&'a Claims);

impl<'a> Active<'a> {
    fn new(claims: &'a Claims) -> Active<'a> {
        claims.1.fetch_add(1, Ordering::SeqCst);
        Active(claims)
    }
}

impl Drop for Active<'_> {
    fn drop(&mut self) {
        self.0 .1.fetch_sub(1, Ordering::SeqCst);
    }
}
