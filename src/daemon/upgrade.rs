//! Upgrade in place (`minisv ctl upgrade`, SIGUSR1): the handoff from the old daemon to the
//! new binary that it executes in its own process (same pid, so every child stays its child).
//!
//! The old daemon writes what the new one needs into a memfd: each process's state machine
//! (`Carried`), the fds of its pipes, the paths of its logs, and the sockets the daemon holds
//! (control listeners, the notify socket, fcgi and `listen=` sockets). Those fds are left open
//! across the exec; the memfd's number is in `MINISV_HANDOFF`. The format is text, one field
//! per line, versioned: a field the reader does not know is reported and skipped, a version it
//! does not know refuses the takeover (and the old binary is executed again).
//!
//! Times: monotonic instants are written as offsets from the moment of writing, and the
//! reader adds the time the exec took (CLOCK_MONOTONIC is the system's, so both daemons read
//! the same clock); wall-clock times as nanoseconds since the epoch.

use std::fs::File;
use std::io::{self, Read, Seek, Write};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::events::listener::ListenerState;
use crate::supervisor::process::Deferred;
use crate::supervisor::{Carried, ProcessState};

/// The handoff format this binary writes and reads.
pub const VERSION: u32 = 1;
/// The environment variable naming the handoff's fd (removed from the environment at once).
pub const HANDOFF_ENV: &str = "MINISV_HANDOFF";
/// Set when the new binary gave up and executed the old one again: why.
pub const FAILED_ENV: &str = "MINISV_UPGRADE_FAILED";
/// Set for the pre-flight run of the new binary: it loads the config, prints its version and
/// the handoff versions it reads, and exits.
pub const CHECK_ENV: &str = "MINISV_UPGRADE_CHECK";
/// The most a handoff may be (1000 programs take about 400 KB).
const MAX_HANDOFF: u64 = 64 << 20;

/// What the old daemon hands to the new one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Handoff {
    /// The version of the binary that wrote it.
    pub from_version: String,
    /// How many upgrades this daemon has been through (this one included).
    pub generation: u64,
    /// Why the last takeover failed, when this handoff comes back to the old binary.
    pub failed: Option<String>,
    pub recent_restarts: Vec<Instant>,
    pub critical_reported: bool,
    /// The control listeners, in the order `rpc::server` keeps them.
    pub http: Vec<RawFd>,
    /// The notify socket and its address.
    pub notify: Option<(RawFd, String)>,
    /// fcgi-program sockets: group, URL, fd.
    pub fcgi: Vec<(String, String, RawFd)>,
    /// `listen=` sockets: group, program, fds in the order of its addresses.
    pub listen: Vec<(String, String, Vec<RawFd>)>,
    pub processes: Vec<ProcRecord>,
}

/// One process: its state machine and its I/O.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcRecord {
    pub namespec: String,
    pub core: Carried,
    /// stdout and stderr pipes (read ends).
    pub pipes: [Option<RawFd>; 2],
    /// stdin (write end) and the readiness pipe (read end).
    pub stdin: Option<RawFd>,
    pub ready: Option<RawFd>,
    /// Bytes for stdin the pipe had not taken yet.
    pub stdin_buf: Vec<u8>,
    pub at_line_start: [bool; 2],
    /// The paths its logs were written to (an AUTO log's random name included).
    pub logs: [Option<PathBuf>; 2],
    /// Its event listener protocol state, for a listener.
    pub listener: Option<ListenerState>,
}

impl ProcRecord {
    pub fn new(namespec: String, core: Carried) -> ProcRecord {
        ProcRecord {
            namespec,
            core,
            pipes: [None, None],
            stdin: None,
            ready: None,
            stdin_buf: Vec::new(),
            at_line_start: [true, true],
            logs: [None, None],
            listener: None,
        }
    }

    /// Every fd it holds.
    pub fn fds(&self) -> impl Iterator<Item = RawFd> + '_ {
        self.pipes.iter().chain([&self.stdin, &self.ready]).flatten().copied()
    }
}

impl Handoff {
    /// Every fd the handoff names.
    pub fn fds(&self) -> Vec<RawFd> {
        let mut fds: Vec<RawFd> = self.http.clone();
        fds.extend(self.notify.iter().map(|n| n.0));
        fds.extend(self.fcgi.iter().map(|f| f.2));
        fds.extend(self.listen.iter().flat_map(|l| l.2.iter().copied()));
        fds.extend(self.processes.iter().flat_map(ProcRecord::fds));
        fds
    }

    /// The handoff as text; `now` and `mono_ns` are one moment read from both clocks.
    pub fn encode(&self, now: Instant, mono_ns: u128) -> Vec<u8> {
        let mut w = Writer { out: Vec::with_capacity(256 + 400 * self.processes.len()), now };
        w.line("minisv-handoff", &[&VERSION.to_string()]);
        w.line("clock", &[&mono_ns.to_string()]);
        w.line("from-version", &[&esc(self.from_version.as_bytes())]);
        w.line("generation", &[&self.generation.to_string()]);
        if let Some(f) = &self.failed {
            w.line("failed", &[&esc(f.as_bytes())]);
        }
        let restarts: Vec<String> = self.recent_restarts.iter().map(|t| w.instant(Some(*t))).collect();
        w.line("recent-restarts", &restarts.iter().map(String::as_str).collect::<Vec<_>>());
        w.line("critical-reported", &[flag(self.critical_reported)]);
        let http: Vec<String> = self.http.iter().map(ToString::to_string).collect();
        w.line("http", &http.iter().map(String::as_str).collect::<Vec<_>>());
        if let Some((fd, addr)) = &self.notify {
            w.line("notify", &[&fd.to_string(), &esc(addr.as_bytes())]);
        }
        for (group, url, fd) in &self.fcgi {
            w.line("fcgi", &[&esc(group.as_bytes()), &esc(url.as_bytes()), &fd.to_string()]);
        }
        for (group, program, fds) in &self.listen {
            let mut args = vec![esc(group.as_bytes()), esc(program.as_bytes())];
            args.extend(fds.iter().map(ToString::to_string));
            w.line("listen", &args.iter().map(String::as_str).collect::<Vec<_>>());
        }
        for p in &self.processes {
            w.process(p);
        }
        w.line("end", &[]);
        w.out
    }

    /// Reads a handoff written by `encode`; also the fields it did not know (skipped).
    pub fn decode(text: &[u8], now: Instant, mono_ns: u128) -> Result<(Handoff, Vec<String>), String> {
        let mut lines = text.split(|b| *b == b'\n').enumerate().filter(|(_, l)| !l.is_empty());
        let (_, first) = lines.next().ok_or("the handoff is empty")?;
        let head = words(first);
        match head.as_slice() {
            ["minisv-handoff", v] if *v == VERSION.to_string() => {}
            ["minisv-handoff", v] => {
                return Err(format!("handoff version {v} is not known (this binary reads {VERSION})"))
            }
            _ => return Err("not a minisv handoff".into()),
        }
        let mut h = Handoff::default();
        let mut unknown = Vec::new();
        // Offsets are from the writer's moment: that moment, in this process's clock.
        let mut base = now;
        let mut ended = false;
        for (n, line) in lines {
            let at = |e: String| format!("handoff line {}: {e}", n + 1);
            let ws = words(line);
            let (key, args) = (ws[0], &ws[1..]);
            let r = Reader { base };
            if ended {
                return Err(at("text after the end".into()));
            }
            match key {
                "clock" => {
                    let then: u128 = one(args).and_then(|a| a.parse().map_err(|_| bad(a))).map_err(at)?;
                    let elapsed = Duration::from_nanos(mono_ns.saturating_sub(then).min(u64::MAX as u128) as u64);
                    base = now.checked_sub(elapsed).unwrap_or(now);
                }
                "from-version" => h.from_version = r.string(one(args).map_err(at)?).map_err(at)?,
                "generation" => h.generation = r.num(one(args).map_err(at)?).map_err(at)?,
                "failed" => h.failed = Some(r.string(one(args).map_err(at)?).map_err(at)?),
                "recent-restarts" => {
                    h.recent_restarts = args
                        .iter()
                        .map(|a| r.instant(a)?.ok_or_else(|| bad(a)))
                        .collect::<Result<_, _>>()
                        .map_err(at)?
                }
                "critical-reported" => h.critical_reported = r.flag(one(args).map_err(at)?).map_err(at)?,
                "http" => h.http = args.iter().map(|a| r.num(a)).collect::<Result<_, _>>().map_err(at)?,
                "notify" => match args {
                    [fd, addr] => h.notify = Some((r.num(fd).map_err(at)?, r.string(addr).map_err(at)?)),
                    _ => return Err(at("notify wants an fd and an address".into())),
                },
                "fcgi" => match args {
                    [g, url, fd] => {
                        h.fcgi.push((r.string(g).map_err(at)?, r.string(url).map_err(at)?, r.num(fd).map_err(at)?))
                    }
                    _ => return Err(at("fcgi wants a group, a URL and an fd".into())),
                },
                "listen" => match args {
                    [g, p, fds @ ..] => h.listen.push((
                        r.string(g).map_err(at)?,
                        r.string(p).map_err(at)?,
                        fds.iter().map(|f| r.num(f)).collect::<Result<_, _>>().map_err(at)?,
                    )),
                    _ => return Err(at("listen wants a group, a program and fds".into())),
                },
                "process" => {
                    let name = r.string(one(args).map_err(at)?).map_err(at)?;
                    h.processes.push(ProcRecord::new(name, Carried::default()));
                }
                "end" => ended = true,
                _ => {
                    let Some(p) = h.processes.last_mut() else {
                        unknown.push(at(format!("unknown field {key}")));
                        continue;
                    };
                    if !r.process_field(p, key, args).map_err(at)? {
                        unknown.push(at(format!("unknown field {key} of {}", p.namespec)));
                    }
                }
            }
        }
        if !ended {
            return Err("the handoff is cut short (no end line)".into());
        }
        Ok((h, unknown))
    }
}

struct Writer {
    out: Vec<u8>,
    now: Instant,
}

impl Writer {
    fn line(&mut self, key: &str, args: &[&str]) {
        self.out.extend_from_slice(key.as_bytes());
        for a in args {
            self.out.push(b' ');
            self.out.extend_from_slice(a.as_bytes());
        }
        self.out.push(b'\n');
    }

    fn instant(&self, t: Option<Instant>) -> String {
        match t {
            None => "-".into(),
            Some(t) if t >= self.now => format!("{}", (t - self.now).as_nanos()),
            Some(t) => format!("-{}", (self.now - t).as_nanos()),
        }
    }

    fn process(&mut self, p: &ProcRecord) {
        let c = &p.core;
        self.line("process", &[&esc(p.namespec.as_bytes())]);
        self.line("state", &[c.state.name()]);
        self.line("pid", &[&c.pid.to_string()]);
        let times = [
            ("laststart", c.laststart),
            ("delay", c.delay),
            ("running-since", c.running_since),
            ("watchdog-due", c.watchdog_due),
        ];
        for (key, t) in times {
            let v = self.instant(t);
            self.line(key, &[&v]);
        }
        self.line("start-wall", &[&wall(c.start_wall)]);
        self.line("stop-wall", &[&wall(c.stop_wall)]);
        match c.next_run {
            Some((w, t)) => {
                let t = self.instant(Some(t));
                self.line("next-run", &[&wall(Some(w)), &t]);
            }
            None => self.line("next-run", &["-"]),
        }
        self.line("backoff", &[&c.backoff.to_string()]);
        self.line("restarts", &[&c.restarts.to_string()]);
        self.line("exitstatus", &[&opt_num(c.exitstatus)]);
        self.line("last-status", &[&opt_num(c.last_status)]);
        let flags = [
            ("killing", c.killing),
            ("administrative-stop", c.administrative_stop),
            ("system-stop", c.system_stop),
            ("ready-failed", c.ready_failed),
            ("restart-held", c.restart_held),
        ];
        for (key, f) in flags {
            self.line(key, &[flag(f)]);
        }
        self.line("spawnerr", &[&opt_str(&c.spawnerr)]);
        self.line("health-failure", &[&opt_str(&c.health_failure)]);
        self.line("status-text", &[&opt_str(&c.status_text)]);
        let deferred = match c.deferred {
            None => "-",
            Some(Deferred::Start) => "start",
            Some(Deferred::Stop) => "stop",
        };
        self.line("deferred", &[deferred]);
        self.line("pipes", &[&opt_fd(p.pipes[0]), &opt_fd(p.pipes[1]), &opt_fd(p.stdin), &opt_fd(p.ready)]);
        self.line("stdin-buf", &[&esc(&p.stdin_buf)]);
        self.line("line-start", &[flag(p.at_line_start[0]), flag(p.at_line_start[1])]);
        let log =
            |l: &Option<PathBuf>| l.as_ref().map_or("-".to_string(), |p| format!("+{}", esc(p.as_os_str().as_bytes())));
        self.line("logs", &[&log(&p.logs[0]), &log(&p.logs[1])]);
        if let Some(l) = p.listener {
            self.line("listener", &[l.name()]);
        }
    }
}

struct Reader {
    base: Instant,
}

impl Reader {
    fn num<T: std::str::FromStr>(&self, a: &str) -> Result<T, String> {
        a.parse().map_err(|_| bad(a))
    }

    fn opt_num<T: std::str::FromStr>(&self, a: &str) -> Result<Option<T>, String> {
        if a == "-" {
            Ok(None)
        } else {
            self.num(a).map(Some)
        }
    }

    fn opt_fd(&self, a: &str) -> Result<Option<RawFd>, String> {
        self.opt_num(a)
    }

    fn flag(&self, a: &str) -> Result<bool, String> {
        match a {
            "1" => Ok(true),
            "0" => Ok(false),
            _ => Err(bad(a)),
        }
    }

    fn string(&self, a: &str) -> Result<String, String> {
        String::from_utf8(unesc(a)?).map_err(|_| bad(a))
    }

    fn opt_string(&self, a: &str) -> Result<Option<String>, String> {
        match a.strip_prefix('+') {
            Some(s) => self.string(s).map(Some),
            None if a == "-" => Ok(None),
            None => Err(bad(a)),
        }
    }

    fn instant(&self, a: &str) -> Result<Option<Instant>, String> {
        if a == "-" {
            return Ok(None);
        }
        let (neg, digits) = match a.strip_prefix('-') {
            Some(d) => (true, d),
            None => (false, a),
        };
        let ns: u64 = digits.parse().map_err(|_| bad(a))?;
        let d = Duration::from_nanos(ns);
        Ok(Some(if neg { self.base.checked_sub(d).unwrap_or(self.base) } else { self.base + d }))
    }

    fn wall(&self, a: &str) -> Result<Option<SystemTime>, String> {
        if a == "-" {
            return Ok(None);
        }
        let ns: u64 = a.parse().map_err(|_| bad(a))?;
        Ok(Some(UNIX_EPOCH + Duration::from_nanos(ns)))
    }

    /// One field of the last process record; false if the key is not known.
    fn process_field(&self, p: &mut ProcRecord, key: &str, args: &[&str]) -> Result<bool, String> {
        let c = &mut p.core;
        match key {
            "state" => {
                let a = one(args)?;
                c.state = ProcessState::ALL.into_iter().find(|s| s.name() == a).ok_or_else(|| bad(a))?;
            }
            "pid" => c.pid = self.num(one(args)?)?,
            "laststart" => c.laststart = self.instant(one(args)?)?,
            "delay" => c.delay = self.instant(one(args)?)?,
            "running-since" => c.running_since = self.instant(one(args)?)?,
            "watchdog-due" => c.watchdog_due = self.instant(one(args)?)?,
            "start-wall" => c.start_wall = self.wall(one(args)?)?,
            "stop-wall" => c.stop_wall = self.wall(one(args)?)?,
            "next-run" => {
                c.next_run = match args {
                    ["-"] => None,
                    [w, t] => Some((self.wall(w)?.ok_or_else(|| bad(w))?, self.instant(t)?.ok_or_else(|| bad(t))?)),
                    _ => return Err("next-run wants a time and a deadline".into()),
                }
            }
            "backoff" => c.backoff = self.num(one(args)?)?,
            "restarts" => c.restarts = self.num(one(args)?)?,
            "exitstatus" => c.exitstatus = self.opt_num(one(args)?)?,
            "last-status" => c.last_status = self.opt_num(one(args)?)?,
            "killing" => c.killing = self.flag(one(args)?)?,
            "administrative-stop" => c.administrative_stop = self.flag(one(args)?)?,
            "system-stop" => c.system_stop = self.flag(one(args)?)?,
            "ready-failed" => c.ready_failed = self.flag(one(args)?)?,
            "restart-held" => c.restart_held = self.flag(one(args)?)?,
            "spawnerr" => c.spawnerr = self.opt_string(one(args)?)?,
            "health-failure" => c.health_failure = self.opt_string(one(args)?)?,
            "status-text" => c.status_text = self.opt_string(one(args)?)?,
            "deferred" => {
                c.deferred = match one(args)? {
                    "-" => None,
                    "start" => Some(Deferred::Start),
                    "stop" => Some(Deferred::Stop),
                    a => return Err(bad(a)),
                }
            }
            "pipes" => match args {
                [out, err, stdin, ready] => {
                    p.pipes = [self.opt_fd(out)?, self.opt_fd(err)?];
                    p.stdin = self.opt_fd(stdin)?;
                    p.ready = self.opt_fd(ready)?;
                }
                _ => return Err("pipes wants four fds".into()),
            },
            "stdin-buf" => p.stdin_buf = unesc(one(args)?)?,
            "line-start" => match args {
                [a, b] => p.at_line_start = [self.flag(a)?, self.flag(b)?],
                _ => return Err("line-start wants two flags".into()),
            },
            "logs" => match args {
                [a, b] => {
                    let path = |s: &str| -> Result<Option<PathBuf>, String> {
                        match s.strip_prefix('+') {
                            Some(e) => Ok(Some(PathBuf::from(std::ffi::OsString::from_vec(unesc(e)?)))),
                            None if s == "-" => Ok(None),
                            None => Err(bad(s)),
                        }
                    };
                    p.logs = [path(a)?, path(b)?];
                }
                _ => return Err("logs wants two paths".into()),
            },
            "listener" => {
                let a = one(args)?;
                let states =
                    [ListenerState::Ready, ListenerState::Busy, ListenerState::Acknowledged, ListenerState::Unknown];
                p.listener = Some(states.into_iter().find(|s| s.name() == a).ok_or_else(|| bad(a))?);
            }
            _ => return Ok(false),
        }
        Ok(true)
    }
}

fn words(line: &[u8]) -> Vec<&str> {
    // The writer escapes everything but printable ASCII: a line that is not is damaged, and
    // its non-ASCII words fail to parse.
    line.split(|b| *b == b' ').map(|w| std::str::from_utf8(w).unwrap_or("\u{fffd}")).collect()
}

fn one<'a>(args: &[&'a str]) -> Result<&'a str, String> {
    match args {
        [a] => Ok(a),
        _ => Err(format!("wants one value, has {}", args.len())),
    }
}

fn bad(a: &str) -> String {
    format!("bad value '{a}'")
}

fn flag(f: bool) -> &'static str {
    if f {
        "1"
    } else {
        "0"
    }
}

fn opt_fd(fd: Option<RawFd>) -> String {
    fd.map_or("-".into(), |f| f.to_string())
}

fn opt_num(n: Option<i32>) -> String {
    n.map_or("-".into(), |n| n.to_string())
}

fn opt_str(s: &Option<String>) -> String {
    s.as_ref().map_or("-".into(), |s| format!("+{}", esc(s.as_bytes())))
}

fn wall(t: Option<SystemTime>) -> String {
    t.and_then(|t| t.duration_since(UNIX_EPOCH).ok()).map_or("-".into(), |d| d.as_nanos().to_string())
}

/// Bytes as one word: printable ASCII but space and `%` as is, the rest `%XX`.
fn esc(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len());
    for &b in bytes {
        if b.is_ascii_graphic() && b != b'%' {
            s.push(b as char);
        } else {
            s.push_str(&format!("%{b:02X}"));
        }
    }
    s
}

fn unesc(s: &str) -> Result<Vec<u8>, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3).ok_or_else(|| bad(s))?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| bad(s))?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Ok(out)
}

/// CLOCK_MONOTONIC in nanoseconds (the clock `Instant` reads).
pub fn mono_ns() -> u128 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u128 * 1_000_000_000 + ts.tv_nsec as u128
}

/// Writes the handoff into a new memfd that an exec keeps open; its fd.
pub fn write_memfd(text: &[u8]) -> io::Result<OwnedFd> {
    // SAFETY: memfd_create with a NUL-terminated name; the fd returned is ours.
    let fd = unsafe { libc::memfd_create(c"minisv-handoff".as_ptr(), 0) };
    if fd == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: just created, owned by nobody else.
    let mut file = unsafe { File::from_raw_fd(fd) };
    file.write_all(text)?;
    file.rewind()?;
    Ok(OwnedFd::from(file))
}

/// Reads a handoff from its fd (from the start; the fd stays open for a fallback).
pub fn read_fd(fd: RawFd) -> io::Result<Vec<u8>> {
    // SAFETY: a dup of the fd named by our own environment; the copy is ours to close.
    let dup = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) };
    if dup == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: just returned by fcntl.
    let mut file = unsafe { File::from_raw_fd(dup) };
    file.rewind()?;
    let mut text = Vec::new();
    (&mut file).take(MAX_HANDOFF).read_to_end(&mut text)?;
    Ok(text)
}

/// How a new binary that cannot take over gives the handoff back to the old one.
pub struct Fallback {
    /// `MINISV_HANDOFF` as it was: the memfd's fd and the old binary's.
    env: String,
    memfd: RawFd,
    exe_fd: Option<RawFd>,
    /// Set when this process is the old binary executed again: why the new one gave up.
    pub failed: Option<String>,
}

/// A handoff read, with the fields it did not know; or why it could not be read.
pub type Parsed = Result<(Handoff, Vec<String>), String>;

/// The handoff this process was started with, if it was (an upgrade in place): how to fall
/// back, and the handoff or why it cannot be read. The variables are removed from the
/// environment (the programs must not see them).
pub fn incoming() -> Option<(Fallback, Parsed)> {
    let env = std::env::var(HANDOFF_ENV).ok()?;
    let failed = std::env::var(FAILED_ENV).ok();
    // SAFETY: at the start of the daemon, in its one thread.
    unsafe {
        std::env::remove_var(HANDOFF_ENV);
        std::env::remove_var(FAILED_ENV);
    }
    let mut fds = env.split(',').map(|f| f.parse::<RawFd>().ok());
    let memfd = fds.next().flatten().unwrap_or(-1);
    let exe_fd = fds.next().flatten();
    let fallback = Fallback { env: env.clone(), memfd, exe_fd, failed };
    let parsed = read_fd(memfd)
        .map_err(|e| format!("cannot read the handoff (fd {memfd}): {e}"))
        .and_then(|text| Handoff::decode(&text, Instant::now(), mono_ns()));
    Some((fallback, parsed))
}

impl Fallback {
    /// The value of `MINISV_HANDOFF` for a handoff in `memfd`, with the old binary at `exe_fd`.
    pub fn env_value(memfd: RawFd, exe_fd: RawFd) -> String {
        format!("{memfd},{exe_fd}")
    }

    /// The new binary cannot take over: the old one is executed again with the same handoff
    /// (its `fds` left open) and told why. Returns, with the exit status, only if that is not
    /// possible (the old binary failed too, or cannot be executed): the programs then run on
    /// without a supervisor, which is said on stderr.
    pub fn give_up(self, why: &str, fds: &[RawFd]) -> i32 {
        let stop = |what: String| {
            eprintln!("minisv: {what}; the programs run on without a supervisor");
            1
        };
        if let Some(first) = &self.failed {
            return stop(format!("the upgrade failed ({first}) and the old binary cannot take over again: {why}"));
        }
        let Some(exe) = self.exe_fd else {
            return stop(format!("cannot take over ({why}) and the old binary is not known"));
        };
        eprintln!("minisv: cannot take over: {why}; executing the old binary again");
        for fd in fds.iter().copied().chain([self.memfd, exe]) {
            let _ = set_cloexec(fd, false);
        }
        // SAFETY: in the daemon's one thread, before the exec.
        unsafe {
            std::env::set_var(HANDOFF_ENV, &self.env);
            std::env::set_var(FAILED_ENV, why);
        }
        let argv: Vec<std::ffi::CString> =
            std::env::args_os().map(|a| std::ffi::CString::new(a.into_vec()).unwrap_or_default()).collect();
        let e = crate::sys::fexecv(exe, &argv);
        stop(format!("cannot take over ({why}) nor execute the old binary again ({e})"))
    }

    /// The takeover is done: the handoff and the old binary are closed.
    pub fn done(self) {
        for fd in [Some(self.memfd), self.exe_fd].into_iter().flatten() {
            // SAFETY: fds named by our environment for this purpose, owned by nobody else.
            unsafe { libc::close(fd) };
        }
    }
}

/// Sets or clears close-on-exec on an fd.
pub fn set_cloexec(fd: RawFd, on: bool) -> io::Result<()> {
    // SAFETY: F_GETFD/F_SETFD only change this fd's flags.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFD);
        if flags == -1 {
            return Err(io::Error::last_os_error());
        }
        let new = if on { flags | libc::FD_CLOEXEC } else { flags & !libc::FD_CLOEXEC };
        if libc::fcntl(fd, libc::F_SETFD, new) == -1 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// A copy (close-on-exec) of an fd named by a handoff, if it is open. The original stays open
/// until the takeover is done (`close_all`): a fallback to the old binary still has it.
pub fn adopt(fd: RawFd) -> Option<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC returns a new fd that only we own (or fails on a closed one).
    let dup = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) };
    // SAFETY: just returned by fcntl.
    (dup != -1).then(|| unsafe { OwnedFd::from_raw_fd(dup) })
}

/// Closes the handoff's own fds once the takeover is done (the ones taken over were copied).
pub fn close_all(fds: &[RawFd]) {
    for &fd in fds {
        // SAFETY: fds the old daemon left to this process for the takeover, owned by nobody here
        // (`adopt` made copies).
        unsafe { libc::close(fd) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    fn sample(now: Instant) -> Handoff {
        let core = Carried {
            state: ProcessState::Running,
            pid: 4242,
            laststart: Some(now - Duration::from_secs(90)),
            running_since: Some(now - Duration::from_secs(89)),
            watchdog_due: Some(now + Duration::from_millis(1500)),
            start_wall: Some(UNIX_EPOCH + Duration::from_nanos(1_765_000_000_123_456_789)),
            backoff: 2,
            restarts: 7,
            exitstatus: Some(-1),
            spawnerr: Some("can't find command 'x y' %20".into()),
            status_text: Some(String::new()),
            deferred: Some(Deferred::Stop),
            next_run: Some((UNIX_EPOCH + Duration::from_secs(1_800_000_000), now + Duration::from_secs(60))),
            ..Carried::default()
        };
        let mut p = ProcRecord::new("web:web_0".into(), core);
        p.pipes = [Some(17), None];
        p.stdin = Some(19);
        p.stdin_buf = b"half a line\n\0\xff".to_vec();
        p.at_line_start = [false, true];
        p.logs = [Some(PathBuf::from("/var/log/a b/web%.log")), None];
        p.listener = Some(ListenerState::Busy);
        let mut stopped = ProcRecord::new("cron".into(), Carried::default());
        stopped.core.administrative_stop = true;
        Handoff {
            from_version: "0.1.0".into(),
            generation: 3,
            failed: None,
            recent_restarts: vec![now - Duration::from_millis(300)],
            critical_reported: true,
            http: vec![5, 6],
            notify: Some((7, "@minisv-notify-1".into())),
            fcgi: vec![("php".into(), "tcp://127.0.0.1:9000".into(), 11)],
            listen: vec![("web".into(), "web".into(), vec![12, 13])],
            processes: vec![p, stopped],
        }
    }

    #[test]
    fn a_handoff_reads_back_as_written() {
        let now = Instant::now();
        let h = sample(now);
        let text = h.encode(now, 1_000_000);
        // Read at the same moment of the clock: every instant comes back exactly.
        let (back, unknown) = Handoff::decode(&text, now, 1_000_000).expect("decodes");
        assert_eq!(back, h);
        assert!(unknown.is_empty(), "{unknown:?}");
        assert_eq!(back.fds(), vec![5, 6, 7, 11, 12, 13, 17, 19]);
    }

    #[test]
    fn instants_move_by_the_time_the_exec_took() {
        let now = Instant::now();
        let h = sample(now);
        let text = h.encode(now, 5_000_000_000);
        // Read 250 ms later by the monotonic clock, in a process whose Instant::now() is `later`.
        let later = now + Duration::from_secs(10);
        let (back, _) = Handoff::decode(&text, later, 5_250_000_000).expect("decodes");
        let shift = Duration::from_secs(10) - Duration::from_millis(250);
        let p = &back.processes[0].core;
        assert_eq!(p.laststart, Some(now - Duration::from_secs(90) + shift));
        assert_eq!(p.watchdog_due, Some(now + Duration::from_millis(1500) + shift));
        // Wall-clock times are as written.
        assert_eq!(p.start_wall, h.processes[0].core.start_wall);
    }

    #[test]
    fn unknown_fields_are_reported_and_skipped_and_damage_is_refused() {
        let now = Instant::now();
        let text = String::from_utf8(sample(now).encode(now, 0)).expect("ascii");
        let with_new = text.replace("backoff 2\n", "backoff 2\ncgroup /sys/fs/cgroup/x\n");
        let (back, unknown) = Handoff::decode(with_new.as_bytes(), now, 0).expect("decodes");
        assert_eq!(back.processes[0].core.backoff, 2);
        assert_eq!(unknown.len(), 1);
        assert!(unknown[0].contains("unknown field cgroup of web:web_0"), "{unknown:?}");

        // Cut at a line's end (a cut inside a line may first fail on that line's value).
        let cut = &text[..=text[..text.len() / 2].rfind('\n').expect("a line")];
        assert!(Handoff::decode(cut.as_bytes(), now, 0).unwrap_err().contains("cut short"));
        let bad_pid = text.replace("pid 4242", "pid forty");
        let e = Handoff::decode(bad_pid.as_bytes(), now, 0).unwrap_err();
        assert!(e.contains("bad value 'forty'") && e.starts_with("handoff line "), "{e}");
        let newer = text.replace("minisv-handoff 1", "minisv-handoff 2");
        assert!(Handoff::decode(newer.as_bytes(), now, 0).unwrap_err().contains("version 2 is not known"));
        assert!(Handoff::decode(b"", now, 0).is_err());
    }

    #[test]
    fn escaping_round_trips_every_byte() {
        let all: Vec<u8> = (0..=255).collect();
        let e = esc(&all);
        assert!(!e.contains(' ') && !e.contains('\n'));
        assert_eq!(unesc(&e).expect("unescapes"), all);
        assert!(unesc("%4").is_err() && unesc("%zz").is_err());
    }

    #[test]
    fn a_memfd_holds_the_text_and_is_read_from_its_start() {
        let fd = write_memfd(b"minisv-handoff 1\nend\n").expect("memfd");
        assert_eq!(read_fd(fd.as_raw_fd()).expect("read"), b"minisv-handoff 1\nend\n");
        // Read twice (the fallback reads it again).
        assert_eq!(read_fd(fd.as_raw_fd()).expect("read"), b"minisv-handoff 1\nend\n");
    }
}
