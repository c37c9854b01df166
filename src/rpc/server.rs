//! The control servers (4.1, 4.2, 4.7) as sources of the event loop: the unix and inet
//! listeners and every connection are registered with the loop's `Poll`, and each connection
//! is a [`Conn`] state machine fed by readiness. There is no thread: a request that needs the
//! loop (XML-RPC, a page, where a log is) is queued for it with [`Server::next_request`] and
//! answered with [`Server::answer`], at once or much later (a start that waits); `/logtail`
//! and `/mergedtail` streams are fed from the log files at their offsets whenever the socket
//! takes more, so a slow or stopped reader costs no memory.
//!
//! Limits, all before authentication: a head of at most 16 KiB, a body of at most the route's
//! limit (413 without reading it), a request complete within `request` seconds of its
//! connection (or its first byte), and at most `max_connections` per listener: the oldest idle
//! connection that never made an allowed request is ended first for a new one, then the
//! oldest idle one.
//!
//! The server outlives a reload: listeners whose settings did not change keep their sockets
//! and connections (a keep-alive client stays connected); it is registered again with the new
//! loop's `Poll`.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use mio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use mio::{Interest, Registry, Token};

use super::conn::{Conn, Event, Policy, Response, Timeouts};
use super::httpdate::http_date;
use super::listen::{self, Unlinker};
use super::mergedtail::{MergedSource, MergedTail};
use super::route::{body_limit, route_request, Routed, Waiting};
use super::tail::{Follow, Tail};
use super::web::{WebRequest, WebResponse};
use crate::config::{Config, Credentials, InetHttpServerConfig, LogLevel, UnixHttpServerConfig};

/// Listener tokens: `LISTENER_TOKEN_BASE + i` for at most `MAX_LISTENERS` listeners.
pub const LISTENER_TOKEN_BASE: usize = 2;
pub const MAX_LISTENERS: usize = crate::config::MAX_HTTP_SERVERS;
/// Connection tokens: `CONN_TOKEN_BASE + slot` (below the probes' `1 << 30`).
pub const CONN_TOKEN_BASE: usize = 1 << 29;
const MAX_SLOTS: usize = 1 << 28;

/// The most connections a listener keeps open (less when the fd limit is lower; see `cap`).
pub const MAX_CONNECTIONS: usize = 1024;
/// What one read from a socket takes at most.
const SCRATCH: usize = 64 * 1024;
/// What one wake-up reads from one connection at most, before the others get their turn.
const READ_BUDGET: usize = 1 << 20;
/// Accepting is paused this long after the process ran out of fds with nothing to end.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);
/// Connections ended by the limits are logged at most once in this time, with their counts.
const DROP_LOG_EVERY: Duration = Duration::from_secs(60);

/// A request for the event loop.
#[derive(Debug)]
pub enum Incoming {
    /// The body of POST /RPC2; answer with `Answer::Xml` or `Answer::BadRequest`.
    XmlRpc(Vec<u8>),
    /// A page, `/metrics`, `/healthz` or the JSON API; answer with `Answer::Web`.
    Web(WebRequest),
    /// Where the log for `/logtail/<namespec>[/<channel>]` is (namespec %-unquoted), or the
    /// main log's (`/mainlogtail`, namespec None); answer with `Answer::Tail`.
    Tail { namespec: Option<String>, channel: String },
    /// The logs of `/mergedtail?name=...&channel=...` (names %-unquoted, in the order given);
    /// answer with `Answer::MergedTail`.
    MergedTail { names: Vec<String>, channel: Option<String> },
    /// A line for the main log; no answer.
    Log(LogLevel, String),
}

/// The loop's answer to an [`Incoming`].
#[derive(Debug)]
pub enum Answer {
    /// A complete XML document: 200 text/xml.
    Xml(String),
    /// The body is not an XML-RPC call: 400, as Supervisor answers.
    BadRequest,
    Web(WebResponse),
    /// The log file to stream, or None: 404.
    Tail(Option<PathBuf>),
    /// The logs to stream, or why not (404 with that text).
    MergedTail(Result<Vec<MergedSource>, String>),
}

/// A connection as the loop holds it while its answer is pending; stale once the connection
/// is closed (its slot may then serve another).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnRef {
    slot: usize,
    generation: u64,
}

/// The limits in force (from the environment, for tests and tuning; see minisv(8)).
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    pub timeouts: Timeouts,
    pub max_connections: usize,
    /// Dropped connections are reported at most this often (one line for all of them).
    pub drop_log_every: Duration,
}

impl Settings {
    /// `MINISV_HTTP_REQUEST_TIMEOUT` (seconds, fractions allowed), `MINISV_HTTP_IDLE_TIMEOUT`
    /// and `MINISV_HTTP_MAX_CONNECTIONS` override the defaults; a value that cannot be used is
    /// named in a warning and the default kept.
    pub fn from_env() -> (Settings, Vec<String>) {
        Settings::from_vars(|name| std::env::var(name).ok(), crate::sys::fd_limit())
    }

    fn from_vars(var: impl Fn(&str) -> Option<String>, fd_limit: u64) -> (Settings, Vec<String>) {
        let mut warnings = Vec::new();
        let mut secs = |name: &str, default: Duration| match var(name) {
            None => default,
            Some(v) => match v.trim().parse::<f64>() {
                Ok(s) if s.is_finite() && s > 0.0 && s < 1e9 => Duration::from_secs_f64(s),
                _ => {
                    warnings.push(format!(
                        "{name}={v:?} is not a number of seconds above 0; using {}",
                        default.as_secs_f64()
                    ));
                    default
                }
            },
        };
        let defaults = Timeouts::default();
        let timeouts = Timeouts {
            request: secs("MINISV_HTTP_REQUEST_TIMEOUT", defaults.request),
            idle: secs("MINISV_HTTP_IDLE_TIMEOUT", defaults.idle),
            ..defaults
        };
        let fd_cap = (fd_limit / 4).clamp(8, MAX_SLOTS as u64) as usize;
        let default = MAX_CONNECTIONS.min(fd_cap);
        let max_connections = match var("MINISV_HTTP_MAX_CONNECTIONS") {
            None => default,
            Some(v) => match v.trim().parse::<usize>() {
                Ok(n) if n > 0 => n.min(MAX_SLOTS),
                _ => {
                    warnings
                        .push(format!("MINISV_HTTP_MAX_CONNECTIONS={v:?} is not a number above 0; using {default}"));
                    default
                }
            },
        };
        (Settings { timeouts, max_connections, drop_log_every: DROP_LOG_EVERY }, warnings)
    }
}

/// What a listener was made from, to tell at a reload whether it changed.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Origin {
    Unix(UnixHttpServerConfig),
    Inet(InetHttpServerConfig),
}

impl Origin {
    fn auth(&self) -> Option<&Credentials> {
        match self {
            Origin::Unix(c) => c.auth.as_ref(),
            Origin::Inet(c) => c.auth.as_ref(),
        }
    }

    fn section(&self) -> &str {
        match self {
            Origin::Unix(c) => &c.section,
            Origin::Inet(c) => &c.section,
        }
    }

    /// Whether the socket itself is the same (auth may change without rebinding).
    fn same_socket(&self, other: &Origin) -> bool {
        match (self, other) {
            (Origin::Unix(a), Origin::Unix(b)) => a.file == b.file && a.chmod == b.chmod && a.chown == b.chown,
            (Origin::Inet(a), Origin::Inet(b)) => a.host == b.host && a.port == b.port,
            _ => false,
        }
    }
}

enum Socket {
    Unix(UnixListener),
    Tcp(TcpListener),
}

struct Listener {
    origin: Origin,
    socket: Socket,
    /// Unlinks the unix socket file when the listener goes.
    _unlinker: Option<Unlinker>,
    /// Connections in accept order (with stale entries of closed ones, compacted now and then).
    order: VecDeque<ConnRef>,
    open: usize,
    /// The listener may have connections waiting (edge-triggered readiness not yet drained).
    ready: bool,
    /// Accepting paused until then (out of fds).
    paused_until: Option<Instant>,
}

impl Listener {
    /// Connections may be waiting (readiness not drained to WouldBlock) and accepting is not
    /// paused.
    fn may_accept(&self) -> bool {
        self.ready && self.paused_until.is_none()
    }
}

enum Stream {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl Stream {
    fn source(&mut self) -> &mut dyn mio::event::Source {
        match self {
            Stream::Unix(s) => s,
            Stream::Tcp(s) => s,
        }
    }
}

impl Stream {
    fn shutdown(&self) -> io::Result<()> {
        match self {
            Stream::Unix(s) => s.shutdown(std::net::Shutdown::Write),
            Stream::Tcp(s) => s.shutdown(std::net::Shutdown::Write),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => s.read(buf),
            Stream::Tcp(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => s.write(buf),
            Stream::Tcp(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

struct Connection {
    listener: usize,
    generation: u64,
    stream: Stream,
    conn: Conn,
    peer: Option<SocketAddr>,
    readable: bool,
    writable: bool,
    /// The request handed to the loop, while its answer is awaited: what it was, to finish a
    /// web answer or a tail.
    waiting: Option<Waiting>,
    tail: Option<Follow>,
    /// The deadline last put in the timer heap.
    deadline: Option<Instant>,
}

#[derive(Default)]
struct DropCounts {
    over_cap: usize,
    timed_out: usize,
    /// Ended to make room when accept() found no free fd.
    out_of_fds: usize,
    last_logged: Option<Instant>,
}

pub struct Server {
    listeners: Vec<Listener>,
    slots: Vec<Option<Connection>>,
    free: Vec<usize>,
    generations: u64,
    /// Connection deadlines (lazily deleted: an entry counts only if it is still its
    /// connection's deadline).
    timers: BinaryHeap<Reverse<(Instant, usize, u64)>>,
    incoming: VecDeque<(ConnRef, Incoming)>,
    /// Connections that still had input when their read budget ran out.
    unfinished: Vec<ConnRef>,
    scratch: Vec<u8>,
    settings: Settings,
    dropped: DropCounts,
    /// How many connections stream logs (so that a wake-up without any looks at none).
    tails: usize,
}

impl Server {
    /// Binds every `[unix_http_server]`/`[inet_http_server]` of the config (Supervisor builds
    /// the list with the inet sections first). Err(message) is a usage error; sockets bound
    /// before it are closed and their files unlinked. Also returns the lines to log.
    pub fn bind(config: &Config, settings: Settings) -> Result<(Server, Vec<(LogLevel, String)>), String> {
        Server::bind_sections(&config.inet_http_servers, &config.unix_http_servers, settings)
    }

    pub fn bind_sections(
        inet: &[InetHttpServerConfig],
        unix: &[UnixHttpServerConfig],
        settings: Settings,
    ) -> Result<(Server, Vec<(LogLevel, String)>), String> {
        let mut server = Server {
            listeners: Vec::new(),
            slots: Vec::new(),
            free: Vec::new(),
            generations: 0,
            timers: BinaryHeap::new(),
            incoming: VecDeque::new(),
            unfinished: Vec::new(),
            scratch: Vec::new(),
            settings,
            dropped: DropCounts::default(),
            tails: 0,
        };
        let wanted = origins(inet, unix);
        // The config reader refuses more; checked here too, before anything is bound.
        if wanted.len() > MAX_LISTENERS {
            return Err(too_many_listeners());
        }
        for origin in wanted {
            let listener = open_listener(origin)?;
            server.listeners.push(listener);
        }
        let logs = server.unauthenticated_warnings();
        Ok((server, logs))
    }

    /// As `bind`, taking the listening sockets an old daemon left (upgrade in place) for the
    /// sections whose address they have, so that clients are not refused meanwhile; the others
    /// are bound, and the sockets left over closed.
    pub fn bind_adopting(
        config: &Config,
        settings: Settings,
        inherited: Vec<std::os::fd::OwnedFd>,
    ) -> Result<(Server, Vec<(LogLevel, String)>), String> {
        Server::bind_adopting_sections(&config.inet_http_servers, &config.unix_http_servers, settings, inherited)
    }

    pub fn bind_adopting_sections(
        inet: &[InetHttpServerConfig],
        unix: &[UnixHttpServerConfig],
        settings: Settings,
        mut inherited: Vec<std::os::fd::OwnedFd>,
    ) -> Result<(Server, Vec<(LogLevel, String)>), String> {
        let (mut server, logs) = Server::bind_sections(&[], &[], settings)?;
        let wanted = origins(inet, unix);
        if wanted.len() > MAX_LISTENERS {
            return Err(too_many_listeners());
        }
        // The new sockets are bound first: if one fails, nothing taken over has been wrapped
        // (a dropped unix listener unlinks its file, which the old daemon still serves).
        let mut slots: Vec<Result<(Origin, std::os::fd::OwnedFd), Origin>> = Vec::with_capacity(wanted.len());
        for origin in wanted {
            slots.push(match inherited.iter().position(|fd| origin_matches(&origin, fd)) {
                Some(i) => Ok((origin, inherited.swap_remove(i))),
                None => Err(origin),
            });
        }
        let mut opened: Vec<Result<(Origin, std::os::fd::OwnedFd), Listener>> = Vec::with_capacity(slots.len());
        for slot in slots {
            opened.push(match slot {
                Ok(taken) => Ok(taken),
                Err(origin) => Err(open_listener(origin)?),
            });
        }
        for slot in opened {
            server.listeners.push(match slot {
                Ok((origin, fd)) => adopt_listener(origin, fd),
                Err(new) => new,
            });
        }
        let mut logs = logs;
        logs.extend(server.unauthenticated_warnings());
        Ok((server, logs))
    }

    /// The listening sockets' fds, for an upgrade in place.
    pub fn listener_fds(&self) -> Vec<std::os::fd::RawFd> {
        use std::os::fd::AsRawFd;
        self.listeners
            .iter()
            .map(|l| match &l.socket {
                Socket::Unix(s) => s.as_raw_fd(),
                Socket::Tcp(s) => s.as_raw_fd(),
            })
            .collect()
    }

    fn unauthenticated_warnings(&self) -> Vec<(LogLevel, String)> {
        self.listeners
            .iter()
            .filter(|l| l.origin.auth().is_none())
            .map(|l| {
                let msg = format!("Server '{}' running without any HTTP authentication checking", l.origin.section());
                (LogLevel::Critical, msg)
            })
            .collect()
    }

    /// After a reload: keeps the listeners whose socket settings did not change (with their
    /// connections, and the new credentials), closes the others and binds the new ones.
    /// Call before `register` with the new loop's registry.
    pub fn reconfigure(&mut self, config: &Config) -> Result<Vec<(LogLevel, String)>, String> {
        self.reconfigure_sections(&config.inet_http_servers, &config.unix_http_servers)
    }

    pub fn reconfigure_sections(
        &mut self,
        inet: &[InetHttpServerConfig],
        unix: &[UnixHttpServerConfig],
    ) -> Result<Vec<(LogLevel, String)>, String> {
        let wanted = origins(inet, unix);
        // The config reader refuses more; checked here too, before anything is closed.
        if wanted.len() > MAX_LISTENERS {
            return Err(too_many_listeners());
        }
        let old = std::mem::take(&mut self.listeners);
        // Old index -> new index, for the listeners kept.
        let mut moved: Vec<Option<usize>> = Vec::with_capacity(old.len());
        for l in &old {
            let i = wanted.iter().enumerate().position(|(i, w)| l.origin.same_socket(w) && !moved.contains(&Some(i)));
            moved.push(i);
        }
        // What goes is closed (and its socket file unlinked) before anything new is bound, so a
        // changed unix socket can be bound at the same path; its connections end with it.
        let mut kept: Vec<Option<Listener>> = (0..wanted.len()).map(|_| None).collect();
        for (j, l) in old.into_iter().enumerate() {
            if let Some(i) = moved[j] {
                kept[i] = Some(l);
            }
        }
        for s in self.slots.iter_mut() {
            if let Some(c) = s {
                match moved.get(c.listener).copied().flatten() {
                    Some(i) => c.listener = i,
                    None => *s = None,
                }
            }
        }
        self.free = (0..self.slots.len()).rev().filter(|&i| self.slots[i].is_none()).collect();
        self.tails = self.slots.iter().flatten().filter(|c| c.tail.is_some()).count();
        for (i, w) in wanted.into_iter().enumerate() {
            let l = match kept[i].take() {
                Some(mut l) => {
                    l.origin = w;
                    l.order.clear();
                    l.open = 0;
                    l
                }
                None => open_listener(w)?,
            };
            self.listeners.push(l);
        }
        let mut refs: Vec<(usize, ConnRef)> = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(slot, s)| s.as_ref().map(|c| (c.listener, ConnRef { slot, generation: c.generation })))
            .collect();
        refs.sort_by_key(|(_, r)| r.generation);
        for (l, r) in refs {
            self.listeners[l].open += 1;
            self.listeners[l].order.push_back(r);
        }
        // Requests already read stay queued for the next loop (those of closed connections are
        // answered to no one).
        Ok(self.unauthenticated_warnings())
    }

    /// Registers the listeners and connections with a (new) loop's registry.
    pub fn register(&mut self, registry: &Registry) -> io::Result<()> {
        for (i, l) in self.listeners.iter_mut().enumerate() {
            let token = Token(LISTENER_TOKEN_BASE + i);
            match &mut l.socket {
                Socket::Unix(s) => registry.register(s, token, Interest::READABLE)?,
                Socket::Tcp(s) => registry.register(s, token, Interest::READABLE)?,
            }
            l.ready = true;
        }
        for (slot, s) in self.slots.iter_mut().enumerate() {
            if let Some(c) = s {
                registry.register(
                    c.stream.source(),
                    Token(CONN_TOKEN_BASE + slot),
                    Interest::READABLE | Interest::WRITABLE,
                )?;
                c.readable = true;
                c.writable = true;
            }
        }
        Ok(())
    }

    /// Takes the sockets out of a loop's registry (before that loop is dropped for a reload).
    pub fn deregister(&mut self, registry: &Registry) {
        for l in &mut self.listeners {
            let _ = match &mut l.socket {
                Socket::Unix(s) => registry.deregister(s),
                Socket::Tcp(s) => registry.deregister(s),
            };
        }
        for c in self.slots.iter_mut().flatten() {
            let _ = registry.deregister(c.stream.source());
        }
    }

    /// Whether `token` is one of the server's.
    pub fn owns(token: Token) -> bool {
        (LISTENER_TOKEN_BASE..LISTENER_TOKEN_BASE + MAX_LISTENERS).contains(&token.0)
            || (CONN_TOKEN_BASE..CONN_TOKEN_BASE + MAX_SLOTS).contains(&token.0)
    }

    /// The addresses the `[inet_http_server]`s listen on (with the actual port when 0 was asked).
    pub fn inet_addrs(&self) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter_map(|l| match &l.socket {
                Socket::Tcp(s) => s.local_addr().ok(),
                Socket::Unix(_) => None,
            })
            .collect()
    }

    /// The socket files of the `[unix_http_server]`s.
    pub fn unix_files(&self) -> Vec<PathBuf> {
        self.listeners
            .iter()
            .filter_map(|l| match &l.origin {
                Origin::Unix(c) => Some(c.file.clone()),
                Origin::Inet(_) => None,
            })
            .collect()
    }

    /// Open connections, over all listeners.
    pub fn connections(&self) -> usize {
        self.listeners.iter().map(|l| l.open).sum()
    }

    /// How many `/logtail`, `/mainlogtail` and `/mergedtail` streams are running.
    pub fn active_tails(&self) -> usize {
        self.tails
    }

    /// Handles readiness of one of the server's tokens.
    pub fn on_event(&mut self, registry: &Registry, event: &mio::event::Event, now: Instant, wall: SystemTime) {
        let t = event.token().0;
        if t >= CONN_TOKEN_BASE {
            let slot = t - CONN_TOKEN_BASE;
            let Some(c) = self.slots.get_mut(slot).and_then(Option::as_mut) else { return };
            if event.is_readable() || event.is_read_closed() || event.is_error() {
                c.readable = true;
            }
            if event.is_writable() || event.is_write_closed() || event.is_error() {
                c.writable = true;
            }
            let r = ConnRef { slot, generation: c.generation };
            self.drive(registry, r, now, wall);
        } else if let Some(l) = self.listeners.get_mut(t - LISTENER_TOKEN_BASE) {
            l.ready = true;
            self.accept(registry, t - LISTENER_TOKEN_BASE, now, wall);
        }
    }

    /// Work left over from the last wake-up (read budgets, paused accepts due): true if the
    /// loop should not sleep.
    pub fn has_work(&self) -> bool {
        !self.unfinished.is_empty() || !self.incoming.is_empty() || self.listeners.iter().any(Listener::may_accept)
    }

    /// Continues connections whose read budget ran out, and accepts left for later (the bound
    /// on one round, or a pause for lack of fds).
    pub fn resume(&mut self, registry: &Registry, now: Instant, wall: SystemTime) {
        for r in std::mem::take(&mut self.unfinished) {
            self.drive(registry, r, now, wall);
        }
        for i in 0..self.listeners.len() {
            let l = &mut self.listeners[i];
            if l.paused_until.is_some_and(|t| t <= now) {
                l.paused_until = None;
            }
            // Connections left in the backlog by the bound on one round, or by a pause.
            if l.may_accept() {
                self.accept(registry, i, now, wall);
            }
        }
    }

    /// The earliest time a connection or a paused listener needs looking at.
    pub fn next_deadline(&mut self) -> Option<Instant> {
        // Drop stale heap entries from the top so the answer is a live deadline.
        while let Some(Reverse((at, slot, generation))) = self.timers.peek().copied() {
            let live = self
                .slots
                .get(slot)
                .and_then(Option::as_ref)
                .is_some_and(|c| c.generation == generation && c.deadline == Some(at));
            if live {
                break;
            }
            self.timers.pop();
        }
        let paused = self.listeners.iter().filter_map(|l| l.paused_until).min();
        [self.timers.peek().map(|Reverse((at, ..))| *at), paused].into_iter().flatten().min()
    }

    /// Ends the connections past their deadline.
    pub fn expire(&mut self, registry: &Registry, now: Instant) {
        // Bounded by the heap's size.
        for _ in 0..self.timers.len() {
            let Some(Reverse((at, slot, generation))) = self.timers.peek().copied() else { break };
            if at > now {
                break;
            }
            self.timers.pop();
            let Some(c) = self.slots.get_mut(slot).and_then(Option::as_mut) else { continue };
            if c.generation != generation || c.deadline != Some(at) {
                continue;
            }
            c.deadline = None;
            if c.conn.expired(now).is_some() {
                self.dropped.timed_out += 1;
                self.close(registry, slot);
            } else if c.tail.as_ref().and_then(Follow::deadline).is_none_or(|t| t > now) {
                self.arm(slot);
            }
            // Otherwise it is due for a merged tail (a line held back, a look put off):
            // `pump_tails`, at the end of this wake-up, does it and arms again. Driving it here
            // as well would make two looks in one wake-up, the second put off again: a timer
            // that never ends.
        }
    }

    /// A log line about connections ended by the limits since the last one, at most once a
    /// minute.
    pub fn report(&mut self, now: Instant) -> Vec<(LogLevel, String)> {
        let d = &mut self.dropped;
        if d.over_cap + d.timed_out + d.out_of_fds == 0
            || d.last_logged.is_some_and(|t| now < t + self.settings.drop_log_every)
        {
            return Vec::new();
        }
        let mut line = format!(
            "dropped HTTP connections: {} over the limit of {} per listener, {} that did not complete a request in time",
            d.over_cap, self.settings.max_connections, d.timed_out
        );
        if d.out_of_fds > 0 {
            line.push_str(&format!(", {} idle ones to accept new ones while out of file descriptors", d.out_of_fds));
        }
        d.over_cap = 0;
        d.timed_out = 0;
        d.out_of_fds = 0;
        d.last_logged = Some(now);
        vec![(LogLevel::Warn, line)]
    }

    /// The next request for the loop.
    pub fn next_request(&mut self) -> Option<(ConnRef, Incoming)> {
        self.incoming.pop_front()
    }

    fn get_mut(&mut self, r: ConnRef) -> Option<&mut Connection> {
        self.slots.get_mut(r.slot).and_then(Option::as_mut).filter(|c| c.generation == r.generation)
    }

    /// Answers a request; nothing happens if its connection is gone.
    pub fn answer(&mut self, registry: &Registry, r: ConnRef, answer: Answer, now: Instant, wall: SystemTime) {
        let Some(c) = self.get_mut(r) else { return };
        let waiting = c.waiting.take();
        match (answer, &waiting) {
            (Answer::Xml(xml), _) => c.conn.respond(&Response::new(200, "text/xml", xml), wall, now),
            (Answer::BadRequest, _) => c.conn.respond(&Response::error(400), wall, now),
            (Answer::Web(w), _) => c.conn.respond(&w, wall, now),
            (Answer::Tail(path), _) => match path.and_then(Tail::open) {
                Some((tail, mtime)) => {
                    let mut head = Response::new(200, "text/plain;charset=utf-8", Vec::new())
                        .with("Last-Modified", &http_date(mtime.unwrap_or(wall)));
                    if !matches!(waiting, Some(Waiting::Tail { main: true })) {
                        // A program's tail is meant to be seen as it comes, also behind a proxy.
                        head = head.with("X-Accel-Buffering", "no");
                    }
                    c.conn.start_stream(&head, wall);
                    c.tail = Some(Follow::One(tail));
                    self.tails += 1;
                }
                None => c.conn.respond(&Response::error(404), wall, now),
            },
            (Answer::MergedTail(Ok(sources)), _) => {
                let head = Response::new(200, "text/plain;charset=utf-8", Vec::new()).with("X-Accel-Buffering", "no");
                c.conn.start_stream(&head, wall);
                c.tail = Some(Follow::Merged(MergedTail::new(sources)));
                self.tails += 1;
            }
            // The lines say which names are unknown, for the client to print.
            (Answer::MergedTail(Err(why)), _) => {
                c.conn.respond(&Response::new(404, "text/plain;charset=utf-8", why), wall, now)
            }
        }
        self.drive(registry, r, now, wall);
    }

    /// After every wake-up: tails waiting at the end of their file look again (a log only grows
    /// while the loop runs, so looking after each wake-up misses nothing and costs no timer).
    pub fn pump_tails(&mut self, registry: &Registry, now: Instant, wall: SystemTime) {
        if self.tails == 0 {
            return;
        }
        let refs: Vec<ConnRef> = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(slot, s)| {
                s.as_ref().filter(|c| c.tail.is_some()).map(|c| ConnRef { slot, generation: c.generation })
            })
            .collect();
        for r in refs {
            self.drive(registry, r, now, wall);
        }
    }

    fn accept(&mut self, registry: &Registry, i: usize, now: Instant, wall: SystemTime) {
        let mut errors = 0;
        // Bounded: at most the cap's worth of new connections per wake-up per listener... and a
        // few more, so a flood cannot keep the loop in here.
        for _ in 0..self.settings.max_connections.max(64) {
            let l = &mut self.listeners[i];
            if l.paused_until.is_some() {
                return;
            }
            let accepted = match &l.socket {
                Socket::Unix(s) => s.accept().map(|(s, _)| (Stream::Unix(s), None)),
                Socket::Tcp(s) => s.accept().map(|(s, a)| (Stream::Tcp(s), Some(a))),
            };
            let (stream, peer) = match accepted {
                Ok(a) => a,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    l.ready = false;
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e)
                    if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)) =>
                {
                    // Out of fds: end an idle connection to make room, or wait a moment.
                    if !self.evict(registry, i) {
                        self.listeners[i].paused_until = Some(now + ACCEPT_PAUSE);
                        return;
                    }
                    self.dropped.over_cap -= 1;
                    self.dropped.out_of_fds += 1;
                    continue;
                }
                // ECONNABORTED and the like concern one connection only; an error that keeps
                // coming pauses accepting as running out of fds does (no spinning on it).
                Err(_) => {
                    errors += 1;
                    if errors >= 16 {
                        self.listeners[i].paused_until = Some(now + ACCEPT_PAUSE);
                        return;
                    }
                    continue;
                }
            };
            if self.listeners[i].open >= self.settings.max_connections && !self.evict(registry, i) {
                // Every connection is busy: the new one is refused.
                self.dropped.over_cap += 1;
                drop(stream);
                continue;
            }
            self.add(registry, i, stream, peer, now, wall);
        }
    }

    /// Ends the oldest idle connection of listener `i` that never made an allowed request, or
    /// else the oldest idle one. False if there is none.
    fn evict(&mut self, registry: &Registry, i: usize) -> bool {
        let order = &self.listeners[i].order;
        let mut stranger = None;
        let mut idle = None;
        for (pos, r) in order.iter().enumerate() {
            let Some(c) = self.slots.get(r.slot).and_then(Option::as_ref).filter(|c| c.generation == r.generation)
            else {
                continue;
            };
            if c.conn.is_idle() && c.waiting.is_none() {
                if !c.conn.is_authenticated() {
                    stranger = Some((pos, *r));
                    break;
                }
                idle.get_or_insert((pos, *r));
            }
        }
        let Some((_, r)) = stranger.or(idle) else { return false };
        self.dropped.over_cap += 1;
        self.close(registry, r.slot);
        true
    }

    fn add(
        &mut self,
        registry: &Registry,
        i: usize,
        mut stream: Stream,
        peer: Option<SocketAddr>,
        now: Instant,
        wall: SystemTime,
    ) {
        let slot = match self.free.pop() {
            Some(s) => s,
            None if self.slots.len() < MAX_SLOTS => {
                self.slots.push(None);
                self.slots.len() - 1
            }
            None => return,
        };
        if registry
            .register(stream.source(), Token(CONN_TOKEN_BASE + slot), Interest::READABLE | Interest::WRITABLE)
            .is_err()
        {
            self.free.push(slot);
            return;
        }
        self.generations += 1;
        let generation = self.generations;
        self.slots[slot] = Some(Connection {
            listener: i,
            generation,
            stream,
            conn: Conn::new(now, self.settings.timeouts),
            peer,
            readable: true,
            writable: true,
            waiting: None,
            tail: None,
            deadline: None,
        });
        let l = &mut self.listeners[i];
        l.open += 1;
        l.order.push_back(ConnRef { slot, generation });
        if l.order.len() > 2 * l.open + 64 {
            let slots = &self.slots;
            l.order
                .retain(|r| slots.get(r.slot).and_then(Option::as_ref).is_some_and(|c| c.generation == r.generation));
        }
        self.drive(registry, ConnRef { slot, generation }, now, wall);
    }

    fn close(&mut self, registry: &Registry, slot: usize) {
        let Some(mut c) = self.slots.get_mut(slot).and_then(Option::take) else { return };
        if c.tail.is_some() {
            self.tails -= 1;
        }
        let _ = registry.deregister(c.stream.source());
        if let Some(l) = self.listeners.get_mut(c.listener) {
            l.open = l.open.saturating_sub(1);
        }
        self.free.push(slot);
        if self.listeners.iter().all(|l| l.open == 0) {
            // Nothing open: give the memory of a burst of connections back.
            self.slots = Vec::new();
            self.free = Vec::new();
            self.timers = BinaryHeap::new();
            self.scratch = Vec::new();
        }
    }

    /// Makes sure the connection's deadline is in the timer heap. A later deadline than the one
    /// armed needs no new entry: the armed one fires first and arms again (so a busy connection
    /// does not fill the heap).
    fn arm(&mut self, slot: usize) {
        let Some(c) = self.slots.get_mut(slot).and_then(Option::as_mut) else { return };
        match (deadline_of(c), c.deadline) {
            (Some(want), Some(armed)) if armed <= want => {}
            (Some(want), _) => {
                c.deadline = Some(want);
                self.timers.push(Reverse((want, slot, c.generation)));
            }
            // An entry still armed fires and finds nothing due.
            (None, _) => {}
        }
    }

    /// Moves bytes between the connection and its socket until neither side can go on, hands
    /// out complete requests, feeds a tail, and closes the connection when it is done.
    fn drive(&mut self, registry: &Registry, r: ConnRef, now: Instant, wall: SystemTime) {
        if self.scratch.is_empty() {
            self.scratch = vec![0; SCRATCH];
        }
        let Server { slots, listeners, incoming, unfinished, scratch, .. } = self;
        let Some(c) = slots.get_mut(r.slot).and_then(Option::as_mut).filter(|c| c.generation == r.generation) else {
            return;
        };
        let policy = Policy { auth: listeners.get(c.listener).and_then(|l| l.origin.auth()), body_limit };
        let mut budget = READ_BUDGET;
        let mut failed = false;
        // Whether the rounds ran out with work left (then it goes on at the next wake-up:
        // readiness is edge-triggered, so no new event would come for it).
        let mut more = true;
        // Bounded: each round moves bytes or ends; the budget caps the reading.
        for _ in 0..256 {
            let mut progress = false;
            // Write.
            while c.writable && c.conn.output_len() > 0 {
                match c.stream.write(c.conn.output()) {
                    Ok(0) => {
                        failed = true;
                        break;
                    }
                    Ok(n) => {
                        c.conn.wrote(n, now);
                        progress = true;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => c.writable = false,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => {
                        failed = true;
                        break;
                    }
                }
            }
            if failed {
                break;
            }
            if c.conn.wants_write_shutdown() {
                // The last answer is out: the client sees EOF while what it still sends is read
                // and dropped (a close with unread input would reset the connection).
                let _ = c.stream.shutdown();
                c.conn.write_shut();
            }
            // Feed a tail from its files while the socket takes it.
            if let Some(t) = c.tail.as_mut() {
                if c.writable && c.conn.output_len() == 0 {
                    match t.feed(scratch, &mut c.conn, now) {
                        Ok(true) => continue,
                        Ok(false) => {}
                        Err(_) => {
                            failed = true;
                            break;
                        }
                    }
                }
            }
            // Read.
            let room = c.conn.read_room().min(scratch.len());
            if c.readable && room > 0 && budget > 0 {
                match c.stream.read(&mut scratch[..room]) {
                    Ok(0) => {
                        c.readable = false;
                        c.conn.received_eof();
                        progress = true;
                    }
                    Ok(n) => {
                        budget = budget.saturating_sub(n);
                        c.conn.received(&scratch[..n], now);
                        progress = true;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => c.readable = false,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => {
                        failed = true;
                        break;
                    }
                }
            }
            // Parse.
            if c.waiting.is_none() && !c.conn.is_streaming() {
                match c.conn.poll(&policy, wall) {
                    Some(Event::Request(req)) => {
                        progress = true;
                        match route_request(req, c.peer) {
                            Routed::Answer(resp) => c.conn.respond(&resp, wall, now),
                            Routed::Loop(kind, incoming_req) => {
                                c.waiting = Some(kind);
                                incoming.push_back((r, incoming_req));
                            }
                        }
                    }
                    Some(Event::Log(line)) => {
                        progress = true;
                        let peer = c.peer.map_or_else(|| "the unix socket".to_string(), |p| p.to_string());
                        let section = listeners.get(c.listener).map_or("", |l| l.origin.section());
                        incoming.push_back((
                            r,
                            Incoming::Log(LogLevel::Warn, format!("{line} from {peer} on [{section}]")),
                        ));
                    }
                    None => {}
                }
            }
            if !progress || budget == 0 {
                more = budget == 0 && c.readable;
                break;
            }
        }
        if more {
            unfinished.push(r);
        }
        if failed || c.conn.done() {
            self.close(registry, r.slot);
            return;
        }
        self.arm(r.slot);
    }
}

/// When a connection is next due: its own deadline, or what its merged tail has due (a line
/// held back, a look put off), only while the socket could take it: a client that does not
/// read gets no wake-ups.
fn deadline_of(c: &Connection) -> Option<Instant> {
    let tail = c.tail.as_ref().filter(|_| c.writable && c.conn.output_len() == 0).and_then(Follow::deadline);
    [c.conn.deadline(), tail].into_iter().flatten().min()
}

fn too_many_listeners() -> String {
    format!("at most {MAX_LISTENERS} [unix_http_server] and [inet_http_server] sections are served")
}

fn origins(inet: &[InetHttpServerConfig], unix: &[UnixHttpServerConfig]) -> Vec<Origin> {
    let inet = inet.iter().cloned().map(Origin::Inet);
    let unix = unix.iter().cloned().map(Origin::Unix);
    inet.chain(unix).collect()
}

fn open_listener(origin: Origin) -> Result<Listener, String> {
    // Supervisor's words, then which socket they are about (two daemons on one config, a
    // port another program holds).
    let which = match &origin {
        Origin::Unix(c) => format!("[{}] file={}", c.section, c.file.display()),
        Origin::Inet(c) => format!("[{}] port={}:{}", c.section, if c.host.is_empty() { "*" } else { &c.host }, c.port),
    };
    open_socket(origin).map_err(|e| format!("{e} ({which})"))
}

/// Whether an inherited listening socket is the one `origin` asks for: the same socket file,
/// or the same port.
fn origin_matches(origin: &Origin, fd: &std::os::fd::OwnedFd) -> bool {
    use std::os::fd::AsRawFd;
    // SAFETY: a zeroed sockaddr_storage filled by getsockname for an fd we own.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    let r = unsafe { libc::getsockname(fd.as_raw_fd(), (&mut ss as *mut libc::sockaddr_storage).cast(), &mut len) };
    if r == -1 {
        return false;
    }
    match origin {
        Origin::Unix(c) => {
            if ss.ss_family as i32 != libc::AF_UNIX {
                return false;
            }
            let Ok(std_l) = fd.try_clone().map(std::os::unix::net::UnixListener::from) else { return false };
            // Bound under a temporary name (`bound_name`), then linked; the name is the pid's
            // that bound it, which daemonizing changed.
            let Some(name) = std_l.local_addr().ok().and_then(|a| a.as_pathname().map(|p| p.to_path_buf())) else {
                return false;
            };
            name == c.file
                || name.parent() == c.file.parent()
                    && name.file_name().is_some_and(|n| {
                        let (n, f) =
                            (n.to_string_lossy(), c.file.file_name().map(|f| f.to_string_lossy()).unwrap_or_default());
                        n.strip_prefix(&*f)
                            .and_then(|rest| rest.strip_prefix('.'))
                            .is_some_and(|pid| pid.bytes().all(|b| b.is_ascii_digit()))
                    })
        }
        Origin::Inet(c) => {
            if ss.ss_family as i32 != libc::AF_INET && ss.ss_family as i32 != libc::AF_INET6 {
                return false;
            }
            let Ok(std_l) = fd.try_clone().map(std::net::TcpListener::from) else { return false };
            std_l.local_addr().is_ok_and(|a| c.port != 0 && a.port() == c.port)
        }
    }
}

/// A listening socket taken over from an old daemon. It is non-blocking already (the old
/// daemon's; the flag belongs to the open file, which the exec kept).
fn adopt_listener(origin: Origin, fd: std::os::fd::OwnedFd) -> Listener {
    let (socket, unlinker) = match &origin {
        Origin::Inet(_) => (Socket::Tcp(TcpListener::from_std(std::net::TcpListener::from(fd))), None),
        Origin::Unix(cfg) => (
            Socket::Unix(UnixListener::from_std(std::os::unix::net::UnixListener::from(fd))),
            Some(Unlinker::new(cfg.file.clone())),
        ),
    };
    Listener { origin, socket, _unlinker: unlinker, order: VecDeque::new(), open: 0, ready: true, paused_until: None }
}

fn open_socket(origin: Origin) -> Result<Listener, String> {
    let (socket, unlinker) = match &origin {
        Origin::Inet(cfg) => {
            let l = listen::bind_inet(cfg)?;
            l.set_nonblocking(true).map_err(|e| format!("cannot open [{}]: {e}", cfg.section))?;
            (Socket::Tcp(TcpListener::from_std(l)), None)
        }
        Origin::Unix(cfg) => {
            let (l, file) = listen::bind_unix(cfg)?.release();
            let unlinker = Unlinker::new(file);
            l.set_nonblocking(true).map_err(|e| format!("cannot open [{}]: {e}", cfg.section))?;
            (Socket::Unix(UnixListener::from_std(l)), Some(unlinker))
        }
    };
    Ok(Listener {
        origin,
        socket,
        _unlinker: unlinker,
        order: VecDeque::new(),
        open: 0,
        ready: true,
        paused_until: None,
    })
}

#[cfg(test)]
mod tests;
