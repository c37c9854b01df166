//! Bounds on the clients of one listener (issue 7), which tiny_http 0.12 does not have: it
//! gives every connection a thread for as long as the client keeps it open, reads a header
//! line of any length, and exposes neither the accepted sockets nor an accept hook.
//!
//! So a guard thread per listener finds the listener's connections among the process's fds
//! (sockets whose local address is the listener's and that do not listen) and applies:
//! - a cap: beyond `MAX_CONNECTIONS` the oldest connections are ended at once, so that new
//!   clients are served while someone holds connections open;
//! - a lifetime: a connection open for `lifetime()` is shut down for reading. A request in
//!   flight still gets its answer (the write side stays open), then tiny_http reads EOF and
//!   closes; an idle, stuck or never-sending client, or one that sends a header forever, is
//!   dropped; what is still open at twice the lifetime is aborted. `/logtail` streams, which
//!   are meant to last, keep streaming (logtail.rs takes a read side shut by someone else for
//!   tiny_http's own `SHUT_RD`), but for TCP a client that leaves is then noticed at the next
//!   write only. Exempting them needs `logtail::Claims::contains` to be visible here;
//! - TCP only: a connection that has received `MAX_TCP_BYTES` (TCP_INFO) is reset. There is no
//!   event for that count, so it is looked at on a timer while a TCP connection is open (every
//!   5 to 100 ms, sooner the faster it grows: `TcpWatch`). AF_UNIX has no such counter.
//!
//! Shutting a socket down from outside is how a connection is ended without its fds: for
//! AF_UNIX, `SHUT_RD` also makes the peer's further writes fail (EPIPE); for TCP, `SHUT_RD`
//! alone lets incoming data still be read, so TCP connections are aborted with
//! `connect(AF_UNSPEC)` (RST, queues purged, a blocked reader woken).
//!
//! How the guard learns of a connection: polling the listener is not enough, since poll
//! checks readiness again after waking, and when tiny_http's accept thread has taken the
//! connection first, the guard sleeps on. So the listener is put in signal-driven mode
//! (`O_ASYNC`, owner: the guard thread): the kernel queues a SIGIO to the guard when a client
//! connects, whoever accepts first, and the guard reads it from a signalfd. SIGIO is blocked in
//! the guard thread only and directed at that thread, so no other thread ever receives it.
//!
//! Cost: one thread per listener, asleep in `poll` on that signalfd, a duplicate of the
//! listening socket and the connections it knows of; it scans `/proc/self/fd` when a
//! connection arrives or is closed, when one reaches its lifetime, and every 5 to 100 ms while
//! a TCP connection is open (for the byte cap); an idle daemon makes no wake-ups. Nothing else is set on the
//! listening socket (SO_RCVTIMEO there makes accept() fail and ends tiny_http's accept
//! thread).

use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::syscall;

/// Open connections per listener; Supervisor's clients use one or two at a time.
pub const MAX_CONNECTIONS: usize = 64;
/// How long a connection may stay open before it is shut for reading. nginx and Apache use 60 s
/// for a header or a body stall and 5 to 75 s for an idle keep-alive connection.
pub const DEFAULT_LIFETIME_SECS: u64 = 30;
/// The largest body accepted (8 MiB) plus headers, twice over.
pub const MAX_TCP_BYTES: u64 = 17 << 20;
/// How long a wait for an accepted connection backs off to.
const TICK: Duration = Duration::from_secs(1);
/// The byte cap has no event: while a TCP connection is open its bytes received are looked at
/// every `TCP_CHECK_MAX` at most, sooner the faster they grow (see `TcpWatch`).
const TCP_CHECK_MIN: Duration = Duration::from_millis(5);
const TCP_CHECK_MAX: Duration = Duration::from_millis(100);

/// `MINISV_HTTP_LIFETIME_SECS` overrides the lifetime (the tests use a short one).
pub fn lifetime() -> Duration {
    let secs = std::env::var("MINISV_HTTP_LIFETIME_SECS").ok().and_then(|s| s.parse::<u64>().ok());
    Duration::from_secs(secs.filter(|&s| s > 0).unwrap_or(DEFAULT_LIFETIME_SECS))
}

/// What the guard did, for one log line.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Dropped {
    pub over_cap: usize,
    pub too_old: usize,
    pub too_many_bytes: usize,
}

/// Starts the guard of the listener `listener` (a duplicate is kept). It ends when `stopping`
/// is set or the listener is shut down. `log` gets a line each time connections are dropped
/// (at most one a minute, with the counts since the last one).
pub fn guard(
    listener: RawFd,
    section: &str,
    stopping: &Arc<AtomicBool>,
    log: impl Fn(String) + Send + 'static,
) -> io::Result<()> {
    let dup = syscall!(fcntl(listener, libc::F_DUPFD_CLOEXEC, 0))?;
    // SAFETY: fcntl just returned this new fd, which nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(dup) };
    let local = Local::of(fd.as_raw_fd()).ok_or_else(|| io::Error::other("not a unix or IPv4 listener"))?;
    let listener_ino = fstat(fd.as_raw_fd()).map(|s| s.st_ino).unwrap_or(0);
    let (stopping, section) = (stopping.clone(), section.to_string());
    let limits = Limits { max: MAX_CONNECTIONS, lifetime: lifetime(), max_tcp_bytes: MAX_TCP_BYTES };
    // Returns once the guard is told of new connections, so none made after the daemon says
    // it has started goes unseen.
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::Builder::new().name(format!("http-guard:{section}")).spawn(move || {
        let connects = ConnectSignal::new(fd.as_raw_fd());
        let _ = ready_tx.send(());
        let connects = match connects {
            Ok(c) => Some(c),
            Err(e) => {
                log(format!("[{section}] cannot be told of new HTTP connections ({e}); some may go unbounded"));
                None
            }
        };
        run(&fd, connects.as_ref(), &local, listener_ino, &limits, &stopping, &section, &log);
    })?;
    let _ = ready_rx.recv_timeout(Duration::from_secs(5));
    Ok(())
}

#[derive(Clone, Copy, Debug)]
struct Limits {
    max: usize,
    lifetime: Duration,
    max_tcp_bytes: u64,
}

#[allow(clippy::too_many_arguments)]
fn run(
    listener: &OwnedFd,
    connects: Option<&ConnectSignal>,
    local: &Local,
    listener_ino: u64,
    limits: &Limits,
    stopping: &AtomicBool,
    section: &str,
    log: &dyn Fn(String),
) {
    let mut seen: HashMap<u64, Instant> = HashMap::new();
    let mut dropped = Dropped::default();
    let mut last_log: Option<Instant> = None;
    // After a wake-up on a pending connection that the scan did not find yet (tiny_http has
    // not accepted it), wait a little before polling again, so a listener whose accept thread
    // is gone does not spin. It starts non-zero: the first pass scans at once, for what was
    // accepted before the guard was told of connections.
    let mut backoff = Duration::from_millis(1);
    // The connections of the last scan: their fds are watched too, so that the guard wakes
    // when tiny_http closes one (POLLNVAL) instead of polling on a timer.
    let mut conns: Vec<Conn> = Vec::new();
    let mut tcp_watch = TcpWatch::default();
    // Scans left for a connection that was signalled but not found: accept() takes it off the
    // listener's queue before it puts its fd in the table, so for a moment it is neither
    // pending nor in a scan (the guard then slept on, and the connection was never bounded).
    let mut unfound: u8 = 0;
    loop {
        let timeout = if !backoff.is_zero() {
            backoff
        } else if let Some(check) = tcp_watch.next_check() {
            // The byte cap has no event: bytes received are looked at on a timer.
            check
        } else {
            // Otherwise only the next lifetime deadline, if any.
            match next_deadline(&seen, limits) {
                Some(at) => at.saturating_duration_since(Instant::now()).max(Duration::from_millis(1)),
                None => Duration::MAX,
            }
        };
        let timeout = if timeout == Duration::MAX { -1 } else { timeout.as_millis().min(i32::MAX as u128) as i32 };
        let mut p = vec![
            libc::pollfd {
                fd: listener.as_raw_fd(),
                events: if backoff.is_zero() { libc::POLLIN } else { 0 },
                revents: 0,
            },
            libc::pollfd { fd: connects.map_or(-1, |c| c.fd.as_raw_fd()), events: libc::POLLIN, revents: 0 },
        ];
        // Events 0: only POLLHUP, POLLERR and POLLNVAL (the fd closed) are reported.
        p.extend(conns.iter().map(|c| libc::pollfd { fd: c.fd, events: 0, revents: 0 }));
        match syscall!(poll(p.as_mut_ptr(), p.len() as libc::nfds_t, timeout)) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return,
            Ok(_) => {}
        }
        if stopping.load(Ordering::SeqCst) || p[0].revents & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0 {
            return;
        }
        let signalled = p[1].revents & libc::POLLIN != 0 && connects.is_some_and(ConnectSignal::drain);
        // Whether a connection still waits to be accepted, looked at before the scan: one
        // accepted before the scan is in it if still open.
        let pending = p[0].revents & libc::POLLIN != 0
            || ((signalled || !backoff.is_zero()) && crate::sys::readable_now(listener.as_raw_fd()));
        let before = seen.len();
        let now = Instant::now();
        conns = scan(local, listener_ino);
        let d = enforce(&conns, &mut seen, now, limits);
        // Ended ones are no longer watched for their close (their fd stays readable-shut
        // until tiny_http closes it); the lifetime deadline covers them.
        conns.retain(|c| !read_shut(c.fd));
        let counts = conns.iter().filter(|c| c.tcp).filter_map(|c| Some((c.ino, tcp_bytes_received(c.fd)?)));
        tcp_watch.update(counts, now, limits.max_tcp_bytes);
        dropped.over_cap += d.over_cap;
        dropped.too_old += d.too_old;
        dropped.too_many_bytes += d.too_many_bytes;
        // A connection that waits and was not found (tiny_http had not accepted it yet) is
        // looked for again, at growing intervals up to TICK; one signalled and not found, twice
        // (10 and 20 ms later: its accept was halfway). Otherwise a connection accepted
        // meanwhile was in the scan, or has closed already: nothing left to look for, so a
        // short request leaves at most two wake-ups behind.
        let found = seen.len() > before;
        unfound = if found {
            0
        } else if signalled {
            2
        } else {
            unfound.saturating_sub(1)
        };
        backoff = if (pending || unfound > 0) && !found {
            (backoff * 2).clamp(Duration::from_millis(10), TICK)
        } else {
            Duration::ZERO
        };
        if dropped != Dropped::default() && last_log.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
            log(format!(
                "[{section}] dropped HTTP connections: {} over the limit of {}, {} open longer than {} s, \
                 {} that sent more than {} bytes",
                dropped.over_cap,
                limits.max,
                dropped.too_old,
                limits.lifetime.as_secs(),
                dropped.too_many_bytes,
                limits.max_tcp_bytes
            ));
            dropped = Dropped::default();
            last_log = Some(Instant::now());
        }
    }
}

/// When to look again at the bytes received by the open TCP connections. A connection whose
/// count grows is looked at again in half the time it would take to reach the cap at the rate
/// seen, one whose count stands still at doubling intervals; both between `TCP_CHECK_MIN` and
/// `TCP_CHECK_MAX`. A flood is so cut at the cap plus a few milliseconds of it (it was cut once
/// a second, 130-230 MB on loopback), and a client that waits before flooding gets at most
/// 100 ms of it past the cap; an idle TCP client costs 10 wake-ups a second until it leaves or
/// reaches its lifetime.
#[derive(Default)]
struct TcpWatch {
    /// inode -> (bytes received, when, interval chosen then).
    seen: HashMap<u64, (u64, Instant, Duration)>,
    next: Option<Duration>,
}

impl TcpWatch {
    /// Takes the bytes received by each open TCP connection, by inode.
    fn update(&mut self, counts: impl Iterator<Item = (u64, u64)>, now: Instant, cap: u64) {
        let mut next: Option<Duration> = None;
        let mut seen = HashMap::new();
        for (ino, bytes) in counts {
            let interval = match self.seen.get(&ino) {
                Some(&(before, then, _)) if bytes > before && now > then => {
                    let rate = (bytes - before) as f64 / now.duration_since(then).as_secs_f64();
                    Duration::from_secs_f64(cap.saturating_sub(bytes) as f64 / rate / 2.0)
                }
                Some(&(_, _, interval)) => interval * 2,
                None => TCP_CHECK_MIN,
            }
            .clamp(TCP_CHECK_MIN, TCP_CHECK_MAX);
            seen.insert(ino, (bytes, now, interval));
            next = Some(next.map_or(interval, |n| n.min(interval)));
        }
        self.seen = seen;
        self.next = next;
    }

    fn next_check(&self) -> Option<Duration> {
        self.next
    }
}

/// When the next connection reaches its lifetime, or twice it (then it is aborted). One past
/// both has had all that can be done to it, and sets no timer.
fn next_deadline(seen: &HashMap<u64, Instant>, limits: &Limits) -> Option<Instant> {
    let now = Instant::now();
    seen.values()
        .filter_map(|&first| [first + limits.lifetime, first + limits.lifetime * 2].into_iter().find(|&t| t > now))
        .min()
}

/// The SIGIO that the kernel sends the guard thread when a client connects to the listener
/// (see the module doc), read from a signalfd. Made in the guard thread, which it concerns.
struct ConnectSignal {
    fd: OwnedFd,
}

/// `F_SETOWN_EX` and `F_OWNER_TID` of asm-generic/fcntl.h (x86, ARM, RISC-V; the libc crate
/// does not have them for every target), and its argument.
const F_SETOWN_EX: libc::c_int = 15;
const F_OWNER_TID: libc::c_int = 0;
#[repr(C)]
struct FOwnerEx {
    kind: libc::c_int,
    pid: libc::pid_t,
}

impl ConnectSignal {
    fn new(listener: RawFd) -> io::Result<ConnectSignal> {
        // SAFETY: sigset_t is plain old data, initialized by sigemptyset before use.
        let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: `set` is a valid sigset_t; blocking a signal in this thread only.
        unsafe {
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGIO);
        }
        // SAFETY: `set` is a valid sigset_t and the old mask is not asked for.
        let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        let raw = syscall!(signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK))?;
        // SAFETY: signalfd just returned this new fd, which nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: gettid has no preconditions.
        let tid = unsafe { libc::syscall(libc::SYS_gettid) } as libc::pid_t;
        let owner = FOwnerEx { kind: F_OWNER_TID, pid: tid };
        syscall!(fcntl(listener, F_SETOWN_EX, &owner as *const FOwnerEx))?;
        let flags = syscall!(fcntl(listener, libc::F_GETFL))?;
        syscall!(fcntl(listener, libc::F_SETFL, flags | libc::O_ASYNC))?;
        Ok(ConnectSignal { fd })
    }

    /// Reads the queued signals; true if there was one.
    fn drain(&self) -> bool {
        // SAFETY: signalfd_siginfo is plain old data; zeroed is valid and read overwrites it.
        let mut info: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
        let size = std::mem::size_of::<libc::signalfd_siginfo>();
        let mut any = false;
        for _ in 0..64 {
            let p = (&mut info as *mut libc::signalfd_siginfo).cast::<libc::c_void>();
            match syscall!(read(self.fd.as_raw_fd(), p, size)) {
                Ok(n) if n as usize == size => any = true,
                _ => break,
            }
        }
        any
    }
}

/// One open connection of the listener.
#[derive(Clone, Copy, Debug)]
struct Conn {
    fd: RawFd,
    ino: u64,
    tcp: bool,
}

/// How a connection is ended from outside (see the module doc).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum End {
    /// `SHUT_RD`: an answer in flight is still written, then tiny_http closes.
    ReadSide,
    /// TCP: reset; AF_UNIX: `SHUT_RDWR`.
    Abort,
}

/// Applies the limits to the connections found by a scan; `seen` maps each connection (by
/// socket inode) to when it was first seen. Connections already ended stay in `seen` until
/// tiny_http closes them, and do not count towards the cap. A connection past its lifetime is
/// shut for reading; one still open at twice its lifetime (a TCP client still trickling
/// bytes in, an answer that never gets written) is aborted.
fn enforce(conns: &[Conn], seen: &mut HashMap<u64, Instant>, now: Instant, limits: &Limits) -> Dropped {
    let mut d = Dropped::default();
    seen.retain(|ino, _| conns.iter().any(|c| c.ino == *ino));
    let mut live: Vec<Conn> = Vec::new();
    for c in conns {
        let age = now.duration_since(*seen.entry(c.ino).or_insert(now));
        if age >= limits.lifetime * 2 {
            end(c, End::Abort);
        } else if age >= limits.lifetime {
            if end(c, End::ReadSide) {
                d.too_old += 1;
            }
        } else if c.tcp && tcp_bytes_received(c.fd).is_some_and(|b| b >= limits.max_tcp_bytes) {
            if end(c, End::Abort) {
                d.too_many_bytes += 1;
            }
        } else if !read_shut(c.fd) {
            live.push(*c);
        }
    }
    // Over the cap, the oldest go: a new client is served even while someone holds the
    // listener's connections open. Oldest is first seen; connections first seen by the same
    // scan are ordered by inode number, which grows with creation only roughly (the kernel
    // hands them out in per-CPU batches).
    live.sort_by_key(|c| (seen.get(&c.ino).copied(), c.ino));
    let excess = live.len().saturating_sub(limits.max);
    for c in &live[..excess] {
        if end(c, End::Abort) {
            d.over_cap += 1;
        }
    }
    d
}

/// Ends a connection; false if it was already ended that way or its fd is no longer that
/// socket.
fn end(c: &Conn, how: End) -> bool {
    let Ok(dup) = syscall!(fcntl(c.fd, libc::F_DUPFD_CLOEXEC, 0)) else { return false };
    // SAFETY: fcntl just returned this new fd, which nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(dup) };
    let fd = fd.as_raw_fd();
    // The fd number may have been reused since the scan: act only on the same socket, and
    // never on a listening one.
    if fstat(fd).map(|s| s.st_ino) != Some(c.ino) || listening(fd) {
        return false;
    }
    match (how, c.tcp) {
        (End::ReadSide, _) => !read_shut(fd) && syscall!(shutdown(fd, libc::SHUT_RD)).is_ok(),
        (End::Abort, true) => {
            if tcp_closed(fd) {
                return false;
            }
            // SAFETY: a zeroed sockaddr with family AF_UNSPEC, of the size given.
            let mut sa: libc::sockaddr = unsafe { std::mem::zeroed() };
            sa.sa_family = libc::AF_UNSPEC as libc::sa_family_t;
            let len = std::mem::size_of::<libc::sockaddr>() as libc::socklen_t;
            syscall!(connect(fd, &sa, len)).is_ok()
        }
        (End::Abort, false) => !fully_shut(fd) && syscall!(shutdown(fd, libc::SHUT_RDWR)).is_ok(),
    }
}

/// A listener's local address, to recognize its connections.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Local {
    Unix(Vec<u8>),
    Tcp(SocketAddr),
}

impl Local {
    fn of(fd: RawFd) -> Option<Local> {
        match sock_addr(fd, false)? {
            Addr::Unix(p) if !p.is_empty() => Some(Local::Unix(p)),
            Addr::Inet(a) => Some(Local::Tcp(a)),
            Addr::Unix(_) => None,
        }
    }

    fn owns(&self, fd: RawFd) -> Option<bool> {
        let tcp = match (self, sock_addr(fd, false)?) {
            (Local::Unix(l), Addr::Unix(p)) if *l == p => false,
            (Local::Tcp(l), Addr::Inet(a)) if a.port() == l.port() && (l.ip().is_unspecified() || a.ip() == l.ip()) => {
                true
            }
            _ => return None,
        };
        Some(tcp)
    }
}

/// The listener's connections: sockets with its local address that do not listen.
fn scan(local: &Local, listener_ino: u64) -> Vec<Conn> {
    let mut out: Vec<Conn> = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else { return out };
    for entry in dir.flatten() {
        let Some(fd) = entry.file_name().to_str().and_then(|s| s.parse::<RawFd>().ok()) else { continue };
        let Some(st) = fstat(fd) else { continue };
        if st.st_mode & libc::S_IFMT != libc::S_IFSOCK || st.st_ino == listener_ino {
            continue;
        }
        // tiny_http holds two fds per connection (its reader and writer); count it once.
        if out.iter().any(|c| c.ino == st.st_ino) {
            continue;
        }
        if let Some(tcp) = local.owns(fd) {
            if !listening(fd) {
                out.push(Conn { fd, ino: st.st_ino, tcp });
            }
        }
    }
    out
}

fn fstat(fd: RawFd) -> Option<libc::stat> {
    // SAFETY: stat is plain old data; zeroed is valid and fstat overwrites it.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    syscall!(fstat(fd, &mut st)).ok().map(|_| st)
}

fn getsockopt_int(fd: RawFd, level: i32, name: i32) -> Option<i32> {
    let mut v: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    syscall!(getsockopt(fd, level, name, (&mut v as *mut libc::c_int).cast(), &mut len)).ok().map(|_| v)
}

fn listening(fd: RawFd) -> bool {
    // Unknown counts as listening: never touch what might be a listener.
    getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_ACCEPTCONN) != Some(0)
}

fn tcp_info(fd: RawFd) -> Option<libc::tcp_info> {
    // SAFETY: tcp_info is plain old data; zeroed is valid and getsockopt overwrites it.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    let p = (&mut info as *mut libc::tcp_info).cast::<libc::c_void>();
    syscall!(getsockopt(fd, libc::IPPROTO_TCP, libc::TCP_INFO, p, &mut len)).ok().map(|_| info)
}

fn tcp_bytes_received(fd: RawFd) -> Option<u64> {
    tcp_info(fd).map(|i| i.tcpi_bytes_received)
}

/// `TCP_CLOSE` of linux/tcp.h: what a connection becomes once reset.
const TCP_CLOSE: u8 = 7;

fn tcp_closed(fd: RawFd) -> bool {
    tcp_info(fd).is_none_or(|i| i.tcpi_state == TCP_CLOSE)
}

/// Whether the read side is already shut (by us, or by tiny_http after a last request): a
/// zero-timeout poll reports POLLRDHUP. A client that shut its write side shows the same;
/// either way the connection is on its way out.
fn read_shut(fd: RawFd) -> bool {
    revents(fd, libc::POLLRDHUP) & (libc::POLLRDHUP | libc::POLLHUP) != 0
}

/// Both sides shut (POLLHUP).
fn fully_shut(fd: RawFd) -> bool {
    revents(fd, 0) & libc::POLLHUP != 0
}

fn revents(fd: RawFd, events: i16) -> i16 {
    let mut p = libc::pollfd { fd, events, revents: 0 };
    match syscall!(poll(&mut p, 1, 0)) {
        Ok(n) if n > 0 => p.revents,
        _ => 0,
    }
}

enum Addr {
    Unix(Vec<u8>),
    Inet(SocketAddr),
}

fn sock_addr(fd: RawFd, peer: bool) -> Option<Addr> {
    // SAFETY: sockaddr_storage is plain old data; zeroed is valid.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    let p = (&mut ss as *mut libc::sockaddr_storage).cast::<libc::sockaddr>();
    if peer {
        syscall!(getpeername(fd, p, &mut len)).ok()?;
    } else {
        syscall!(getsockname(fd, p, &mut len)).ok()?;
    }
    match i32::from(ss.ss_family) {
        libc::AF_UNIX => {
            // SAFETY: the family says the storage holds a sockaddr_un.
            let sun = unsafe { &*(p as *const libc::sockaddr_un) };
            let offset = std::mem::size_of::<libc::sa_family_t>();
            let n = (len as usize).saturating_sub(offset).min(sun.sun_path.len());
            let bytes: Vec<u8> = sun.sun_path[..n].iter().map(|&c| c as u8).collect();
            Some(Addr::Unix(bytes.split(|&b| b == 0).next().unwrap_or(&[]).to_vec()))
        }
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let sin = unsafe { &*(p as *const libc::sockaddr_in) };
            let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
            Some(Addr::Inet(SocketAddr::V4(SocketAddrV4::new(ip, u16::from_be(sin.sin_port)))))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::unix::net::{UnixListener, UnixStream};
    use std::path::PathBuf;

    fn limits(max: usize, lifetime_ms: u64) -> Limits {
        Limits { max, lifetime: Duration::from_millis(lifetime_ms), max_tcp_bytes: 1 << 20 }
    }

    /// A unix listener in a directory of its own (removed on drop), with what the guard knows
    /// of it.
    struct Listening {
        dir: PathBuf,
        path: PathBuf,
        l: UnixListener,
        local: Local,
        ino: u64,
    }

    impl Listening {
        fn new(tag: &str) -> Listening {
            let dir = std::env::temp_dir().join(format!("limits-{tag}-{}", std::process::id()));
            let _ = std::fs::create_dir_all(&dir);
            let path = dir.join("s");
            let _ = std::fs::remove_file(&path);
            let l = UnixListener::bind(&path).expect("bind");
            let local = Local::of(l.as_raw_fd()).expect("local");
            let ino = fstat(l.as_raw_fd()).expect("fstat").st_ino;
            Listening { dir, path, l, local, ino }
        }

        /// `n` clients and the server's ends of their connections, in order.
        fn connect(&self, n: usize) -> (Vec<UnixStream>, Vec<UnixStream>) {
            (0..n)
                .map(|_| {
                    let c = UnixStream::connect(&self.path).expect("connect");
                    (c, self.l.accept().expect("accept").0)
                })
                .unzip()
        }

        fn scan(&self) -> Vec<Conn> {
            scan(&self.local, self.ino)
        }
    }

    impl Drop for Listening {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    fn ino(s: &UnixStream) -> u64 {
        fstat(s.as_raw_fd()).expect("fstat").st_ino
    }

    /// Whether the server ended this client's connection (EOF within 100 ms).
    fn ended(c: &mut UnixStream) -> bool {
        c.set_read_timeout(Some(Duration::from_millis(100))).expect("timeout");
        let mut b = [0u8; 1];
        matches!(c.read(&mut b), Ok(0))
    }

    #[test]
    fn tcp_byte_counts_are_looked_at_sooner_the_faster_they_grow() {
        let ms = Duration::from_millis;
        let cap = 17 << 20;
        let mut w = TcpWatch::default();
        let t0 = Instant::now();
        w.update(std::iter::empty(), t0, cap);
        assert_eq!(w.next_check(), None, "no TCP connection, no timer");
        w.update([(1, 0)].into_iter(), t0, cap);
        assert_eq!(w.next_check(), Some(TCP_CHECK_MIN), "a new connection is looked at soon");
        // Standing still: doubling intervals up to the longest.
        let mut t = t0;
        let mut seen = Vec::new();
        for _ in 0..6 {
            t += w.next_check().expect("a timer");
            w.update([(1, 0)].into_iter(), t, cap);
            seen.push(w.next_check().expect("a timer"));
        }
        assert_eq!(seen, vec![ms(10), ms(20), ms(40), ms(80), ms(100), ms(100)]);
        // 1 MB in 100 ms (10 MB/s): 16 MB left take 1.6 s, half of it is above the longest.
        t += ms(100);
        w.update([(1, 1 << 20)].into_iter(), t, cap);
        assert_eq!(w.next_check(), Some(TCP_CHECK_MAX));
        // 8 MB more in 100 ms (80 MB/s): 8 MB left take 100 ms, looked at again in 50.
        t += ms(100);
        w.update([(1, 9 << 20)].into_iter(), t, cap);
        assert_eq!(w.next_check(), Some(ms(50)));
        // A second connection flooding at 1.6 GB/s sets the timer for both.
        w.update([(1, 9 << 20), (2, 0)].into_iter(), t, cap);
        t += ms(5);
        w.update([(1, 9 << 20), (2, 8 << 20)].into_iter(), t, cap);
        assert_eq!(w.next_check(), Some(TCP_CHECK_MIN));
        // Gone: forgotten.
        w.update(std::iter::empty(), t, cap);
        assert_eq!(w.next_check(), None);
        assert!(w.seen.is_empty());
    }

    #[test]
    fn the_next_deadline_is_the_nearest_lifetime_or_twice_it_and_none_once_both_passed() {
        let l = limits(64, 10_000);
        let now = Instant::now();
        assert_eq!(next_deadline(&HashMap::new(), &l), None);
        let young = HashMap::from([(1, now)]);
        assert_eq!(next_deadline(&young, &l), Some(now + Duration::from_secs(10)));
        let old = now - Duration::from_secs(15);
        let both = HashMap::from([(1, now), (2, old)]);
        assert_eq!(next_deadline(&both, &l), Some(old + Duration::from_secs(20)), "the old one's abort comes first");
        let done = HashMap::from([(3, now - Duration::from_secs(25))]);
        assert_eq!(next_deadline(&done, &l), None, "nothing left to do: no timer");
    }

    #[test]
    fn finds_the_connections_of_a_listener_and_not_the_listener() {
        let l = Listening::new("scan");
        let (_clients, _servers) = l.connect(2);
        assert_eq!(l.scan().len(), 2, "the two accepted sockets; not the clients, not the listener");
    }

    #[test]
    fn a_connection_accepted_by_someone_else_first_is_still_signalled() {
        let l = Listening::new("sigio");
        let signal = ConnectSignal::new(l.l.as_raw_fd()).expect("signal-driven listener");
        assert!(!signal.drain(), "nothing yet");
        let (_clients, _servers) = l.connect(1);
        // The listener no longer looks readable (what made the guard miss such connections)...
        assert!(!crate::sys::readable_now(l.l.as_raw_fd()));
        // ...but the signal was queued when the client connected.
        let mut p = libc::pollfd { fd: signal.fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        assert_eq!(syscall!(poll(&mut p, 1, 5000)).expect("poll"), 1);
        assert!(signal.drain());
        assert!(!signal.drain(), "drained");
    }

    #[test]
    fn connections_first_seen_earlier_go_first_over_the_cap() {
        let l = Listening::new("order");
        let (mut clients, servers) = l.connect(3);
        let t0 = Instant::now();
        // Pretend the newest socket was seen first: the order is the guard's, not the inodes'.
        let newest = servers.iter().map(ino).max().expect("three");
        let mut seen = HashMap::from([(newest, t0)]);
        let d = enforce(&l.scan(), &mut seen, t0 + Duration::from_millis(10), &limits(2, 60_000));
        assert_eq!(d.over_cap, 1);
        for (c, s) in clients.iter_mut().zip(&servers) {
            assert_eq!(ended(c), ino(s) == newest, "only the one seen first is ended");
        }
    }

    #[test]
    fn the_oldest_connections_over_the_cap_are_ended_and_the_rest_kept() {
        let l = Listening::new("cap");
        let (mut clients, servers) = l.connect(5);
        // Seen one by one, a millisecond apart (inode numbers alone do not tell the order).
        let t0 = Instant::now();
        let mut seen: HashMap<u64, Instant> =
            servers.iter().enumerate().map(|(i, s)| (ino(s), t0 + Duration::from_millis(i as u64))).collect();
        let d = enforce(&l.scan(), &mut seen, t0, &limits(3, 60_000));
        assert_eq!(d, Dropped { over_cap: 2, too_old: 0, too_many_bytes: 0 });
        // The two oldest clients see EOF at once; the newest can still talk.
        for (i, c) in clients.iter_mut().enumerate() {
            assert_eq!(ended(c), i < 2, "client {i}");
        }
        // Counted once: the next pass drops nothing more.
        let d = enforce(&l.scan(), &mut seen, t0, &limits(3, 60_000));
        assert_eq!(d, Dropped::default());
        // Past the lifetime, the rest are shut for reading; a client's further writes fail.
        let later = t0 + Duration::from_millis(1000);
        let d = enforce(&l.scan(), &mut seen, later, &limits(3, 600));
        assert_eq!(d.too_old, 3);
        assert!(clients[4].write_all(b"x").is_err(), "EPIPE after the server shut its read side");
    }
}
