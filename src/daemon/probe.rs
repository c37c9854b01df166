//! `ready_check=` and `health_check=` probes, run by the event loop without blocking it.
//!
//! A TCP or HTTP probe is a non-blocking socket registered with the loop's poll; a command probe
//! is a child started as its program is (same spawn path, user, environment, directory, umask
//! and clean signal state; stdin, stdout and stderr on /dev/null), reaped by the loop's SIGCHLD
//! path. A process without probes costs nothing, and a
//! probe costs a wakeup only when an attempt is due or ends.
//!
//! Per process, one slot at a time: a ready slot while it is STARTING with `ready_check` (first
//! attempt at once, then every `ready_check_interval`; `ready_timeout` ends the wait), a health
//! slot while it is RUNNING with `health_check` (first attempt after `health_check_interval`).
//! The slot is dropped, and its attempt abandoned, as soon as the process leaves that state.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Interest, Registry, Token};

use super::spawn::ChildSetup;
use crate::config::model::{Probe, ProcessConfig};
use crate::supervisor::{ProcId, ProcessState, Supervisor};

/// Probe sockets get tokens from here up (one per process: `PROBE_TOKEN_BASE + id`). It fits a
/// 32-bit usize and stays far above the pipe tokens of any process table.
pub const PROBE_TOKEN_BASE: usize = 1 << 30;

/// The most of an HTTP answer read to find its status line.
const MAX_STATUS_LINE: usize = 4096;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Ready,
    Health,
}

/// What the loop must feed to the state machine.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Ready(ProcId),
    Unhealthy(ProcId, String),
    /// A failed attempt worth a debug line (the loop logs it).
    Failed(ProcId, String),
}

struct Slot {
    kind: Kind,
    /// The pid of the process the slot watches: a new child gets a new slot.
    pid: u32,
    probe: Probe,
    interval: Duration,
    timeout: Duration,
    retries: u32,
    /// When the next attempt starts (while none runs).
    next: Instant,
    failures: u32,
    attempt: Option<Attempt>,
}

enum Attempt {
    Socket { stream: TcpStream, request: Vec<u8>, written: usize, answer: Vec<u8>, deadline: Instant },
    Command { pid: u32, deadline: Instant },
}

impl Attempt {
    fn deadline(&self) -> Instant {
        match self {
            Attempt::Socket { deadline, .. } | Attempt::Command { deadline, .. } => *deadline,
        }
    }
}

#[derive(Default)]
pub struct Probes {
    slots: HashMap<ProcId, Slot>,
}

impl Probes {
    pub fn new() -> Probes {
        Probes::default()
    }

    /// Brings the slots in line with the processes' states, ends attempts that timed out and
    /// starts the attempts that are due.
    pub fn sync(
        &mut self,
        sup: &Supervisor,
        setup: &ChildSetup,
        registry: &Registry,
        now: Instant,
        out: &mut Vec<Outcome>,
    ) {
        // The usual case, no checks anywhere: nothing to look at (this runs on every wake-up).
        if self.slots.is_empty() && !sup.has_checks() {
            return;
        }
        let mut wanted: Vec<(ProcId, Kind, u32, Probe, u64)> = Vec::new();
        for (id, p) in sup.processes() {
            let checks = &p.config.checks;
            let want = match p.state {
                ProcessState::Starting if p.pid != 0 => {
                    checks.ready.clone().map(|pr| (Kind::Ready, pr, checks.ready_interval))
                }
                ProcessState::Running => checks.health.clone().map(|pr| (Kind::Health, pr, checks.health_interval)),
                _ => None,
            };
            if let Some((kind, probe, interval)) = want {
                wanted.push((id, kind, p.pid, probe, interval));
            }
        }
        // Drop the slots no longer wanted (or now for another child or state).
        let stale: Vec<ProcId> = self
            .slots
            .iter()
            .filter(|(id, s)| !wanted.iter().any(|w| w.0 == **id && w.1 == s.kind && w.2 == s.pid))
            .map(|(id, _)| *id)
            .collect();
        for id in stale {
            if let Some(mut slot) = self.slots.remove(&id) {
                abandon(&mut slot, registry);
            }
        }
        for (id, kind, pid, probe, interval) in wanted {
            let Some(p) = sup.process(id) else { continue };
            let interval = Duration::from_secs(interval.max(1));
            self.slots.entry(id).or_insert_with(|| Slot {
                kind,
                pid,
                probe,
                interval,
                timeout: Duration::from_secs(p.config.checks.timeout.max(1)),
                retries: p.config.checks.health_retries.max(1),
                // Readiness is looked for at once; health only after a first interval.
                next: if kind == Kind::Ready { now } else { now + interval },
                failures: 0,
                attempt: None,
            });
        }
        let ids: Vec<ProcId> = self.slots.keys().copied().collect();
        for id in ids {
            let Some(slot) = self.slots.get_mut(&id) else { continue };
            if slot.attempt.as_ref().is_some_and(|a| a.deadline() <= now) {
                let why = format!("no answer within {} seconds (check_timeout)", slot.timeout.as_secs());
                abandon(slot, registry);
                self.finish(id, Err(why), now, out);
                continue;
            }
            if slot.attempt.is_none() && slot.next <= now {
                let Some(p) = sup.process(id) else { continue };
                match start(id, slot, (setup, &p.config, &p.group), registry, now) {
                    Ok(attempt) => slot.attempt = Some(attempt),
                    Err(why) => self.finish(id, Err(why), now, out),
                }
            }
        }
    }

    /// When the loop must wake next for a probe, if any.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.slots.values().map(|s| s.attempt.as_ref().map_or(s.next, Attempt::deadline)).min()
    }

    /// Whether `token` belongs to a probe socket.
    pub fn owns(token: Token) -> bool {
        token.0 >= PROBE_TOKEN_BASE
    }

    /// A probe socket is readable or writable: moves its attempt on.
    pub fn on_event(&mut self, token: Token, registry: &Registry, now: Instant, out: &mut Vec<Outcome>) {
        let id = ProcId(token.0 - PROBE_TOKEN_BASE);
        let Some(slot) = self.slots.get_mut(&id) else { return };
        let verdict = match &mut slot.attempt {
            Some(Attempt::Socket { stream, request, written, answer, .. }) => advance(stream, request, written, answer),
            _ => None,
        };
        if let Some(result) = verdict {
            if let Some(Attempt::Socket { mut stream, .. }) = slot.attempt.take() {
                let _ = registry.deregister(&mut stream);
            }
            self.finish(id, result, now, out);
        }
    }

    /// A child was reaped that the process table does not know: if it is a command probe, its
    /// status is the verdict. Returns whether it was one.
    pub fn on_exit(&mut self, pid: u32, status_ok: bool, message: &str, now: Instant, out: &mut Vec<Outcome>) -> bool {
        let found = self
            .slots
            .iter()
            .find(|(_, s)| matches!(s.attempt, Some(Attempt::Command { pid: p, .. }) if p == pid))
            .map(|(id, _)| *id);
        let Some(id) = found else { return false };
        if let Some(slot) = self.slots.get_mut(&id) {
            slot.attempt = None;
        }
        self.finish(id, if status_ok { Ok(()) } else { Err(format!("command {message}")) }, now, out);
        true
    }

    /// Counts an attempt's result and schedules the next one.
    fn finish(&mut self, id: ProcId, result: Result<(), String>, now: Instant, out: &mut Vec<Outcome>) {
        let Some(slot) = self.slots.get_mut(&id) else { return };
        slot.next = now + slot.interval;
        match (slot.kind, result) {
            (Kind::Ready, Ok(())) => out.push(Outcome::Ready(id)),
            (Kind::Health, Ok(())) => slot.failures = 0,
            (kind, Err(why)) => {
                slot.failures += 1;
                if kind == Kind::Health && slot.failures >= slot.retries {
                    slot.failures = 0;
                    out.push(Outcome::Unhealthy(id, why));
                } else {
                    out.push(Outcome::Failed(id, why));
                }
            }
        }
    }
}

/// Starts one attempt of a slot's probe; a command runs beside `program` (its setup, config and
/// group).
fn start(
    id: ProcId,
    slot: &Slot,
    program: (&ChildSetup, &ProcessConfig, &str),
    registry: &Registry,
    now: Instant,
) -> Result<Attempt, String> {
    let deadline = now + slot.timeout;
    let (addr, request) = match &slot.probe {
        Probe::Tcp(addr) => (*addr, Vec::new()),
        Probe::Http { addr, host, path } => (
            *addr,
            format!("GET {path} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: minisv\r\nConnection: close\r\n\r\n")
                .into_bytes(),
        ),
        Probe::Command(line) => {
            let (setup, pc, group) = program;
            // Reaped by the loop's SIGCHLD path (waitpid(-1)), never waited on here.
            return setup.run_beside(pc, group, line).map(|pid| Attempt::Command { pid, deadline });
        }
    };
    let mut stream = TcpStream::connect(addr).map_err(|e| format!("connect to {addr}: {e}"))?;
    registry
        .register(&mut stream, Token(PROBE_TOKEN_BASE + id.0), Interest::READABLE | Interest::WRITABLE)
        .map_err(|e| format!("cannot watch the probe socket: {e}"))?;
    Ok(Attempt::Socket { stream, request, written: 0, answer: Vec::new(), deadline })
}

/// Moves a socket attempt on; `Some` once it has a verdict.
fn advance(
    stream: &mut TcpStream,
    request: &[u8],
    written: &mut usize,
    answer: &mut Vec<u8>,
) -> Option<Result<(), String>> {
    if let Ok(Some(e)) | Err(e) = stream.take_error() {
        return Some(Err(format!("connect: {e}")));
    }
    match stream.peer_addr() {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotConnected => return None, // still connecting
        Err(e) => return Some(Err(format!("connect: {e}"))),
    }
    if request.is_empty() {
        return Some(Ok(())); // a TCP probe: the connection was accepted
    }
    // Bounded: each pass writes or reads something, or stops.
    for _ in 0..1024 {
        if *written < request.len() {
            match stream.write(&request[*written..]) {
                Ok(n) => *written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return None,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Some(Err(format!("sending the request: {e}"))),
            }
            continue;
        }
        let mut buf = [0u8; 1024];
        match stream.read(&mut buf) {
            Ok(0) => return Some(http_verdict(answer, true)),
            Ok(n) => {
                answer.extend_from_slice(&buf[..n]);
                if answer.windows(2).any(|w| w == b"\r\n") || answer.len() >= MAX_STATUS_LINE {
                    return Some(http_verdict(answer, false));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return None,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Some(Err(format!("reading the answer: {e}"))),
        }
    }
    None
}

/// `HTTP/1.x 2xx ...` passes; any other status, or no status line, fails.
fn http_verdict(answer: &[u8], closed: bool) -> Result<(), String> {
    let line_end = answer.windows(2).position(|w| w == b"\r\n").unwrap_or(answer.len());
    let line = String::from_utf8_lossy(&answer[..line_end]);
    let mut words = line.split(' ');
    let version = words.next().unwrap_or("");
    let code = words.next().and_then(|c| c.parse::<u16>().ok());
    match code {
        Some(c) if version.starts_with("HTTP/") && (200..300).contains(&c) => Ok(()),
        Some(c) if version.starts_with("HTTP/") => Err(format!("HTTP status {c}")),
        _ if closed && answer.is_empty() => Err("the connection was closed without an answer".into()),
        _ => Err(format!("not an HTTP answer: {:?}", line.chars().take(60).collect::<String>())),
    }
}

/// Ends a slot's attempt: its socket closed, its command killed (it is reaped by the loop).
fn abandon(slot: &mut Slot, registry: &Registry) {
    match slot.attempt.take() {
        Some(Attempt::Socket { mut stream, .. }) => {
            let _ = registry.deregister(&mut stream);
        }
        Some(Attempt::Command { pid, .. }) => {
            // Only the probe this slot started, by pid, and its process group (sys::kill
            // refuses pid 0, which would be the daemon's own group).
            let _ = crate::sys::kill(pid, libc::SIGKILL, true);
        }
        None => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_verdicts() {
        assert_eq!(http_verdict(b"HTTP/1.1 200 OK\r\n", false), Ok(()));
        assert_eq!(http_verdict(b"HTTP/1.0 204 No Content\r\n", false), Ok(()));
        assert_eq!(http_verdict(b"HTTP/1.1 503 Service Unavailable\r\n", false), Err("HTTP status 503".into()));
        assert_eq!(http_verdict(b"HTTP/1.1 302 Found\r\n", false), Err("HTTP status 302".into()));
        assert!(http_verdict(b"SSH-2.0-OpenSSH\r\n", false).is_err());
        assert_eq!(http_verdict(b"", true), Err("the connection was closed without an answer".into()));
    }
}
