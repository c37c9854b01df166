//! Child output, from its pipe to where it goes (reference 3.2, 3.6): the pipes read in bursts
//! with a budget, capture mode, a listener's protocol, the program's log (held open across
//! bursts, prefixed), syslog, the main log at debug and PROCESS_LOG events; and the pure text
//! helpers they use (ANSI stripping, line prefixes, syslog lines).

use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant, SystemTime};

use mio::unix::SourceFd;

use super::events::event_channel;
use super::{EventLoop, PIPE_DEFAULT_SIZE};
use crate::config::{Channel, LogLevel, ProcessConfig};
use crate::events::types::Event;
use crate::supervisor::ProcId;
use crate::sys;

const PIPE_GROWN_SIZE: usize = 1 << 20;
/// Reads of a grown pipe empty it at once: fewer, larger writes to the log cost the file system
/// less per byte (200 MB into a rotated log, against 128 KiB reads, 6 runs each: 1360-1670 ->
/// 1810-2150 MB/s, daemon CPU 0.115-0.138 -> 0.083-0.095 s; 512 KiB reads gave 1690-1960 MB/s
/// and 0.089-0.107 s). The buffer is mapped while floods last and unmapped FLOOD_BUF_KEEP after
/// the last one, so the memory is the daemon's only while a program floods.
const FLOOD_BUF: usize = PIPE_GROWN_SIZE;
/// How long a program's log stays open across bursts of output: a program printing a line
/// every few milliseconds cost an open, an fstat and a close of its log per line (a quarter of
/// the daemon's CPU with 300 such programs). It is closed LOG_HOLD after the first burst, so a
/// log moved away by someone else is still picked up within about a second, and an idle program
/// holds no log open.
const LOG_HOLD: Duration = Duration::from_secs(1);
/// The most logs held open that way at once, whatever the fd limit.
const MAX_HELD_LOGS: usize = 1024;
/// The most output one PROCESS_LOG event or one copy in the main log (at loglevel debug)
/// carries: what Supervisor reads from a pipe at once.
const OUTPUT_CHUNK: usize = 128 * 1024;
const MAX_GROWN_PIPES: usize = 16;

/// The text put before each line of a program's log output, if any: a timestamp
/// (`log_timestamps`) and `log_prefix`, each followed by a space.
fn line_prefix(pc: &ProcessConfig) -> Option<Vec<u8>> {
    if pc.log_prefix.is_none() && !pc.log_timestamps {
        return None;
    }
    let mut prefix = String::new();
    if pc.log_timestamps {
        prefix.push_str(&crate::daemon::mainlog::timestamp(SystemTime::now()));
        prefix.push(' ');
    }
    if let Some(p) = &pc.log_prefix {
        prefix.push_str(p);
        prefix.push(' ');
    }
    Some(prefix.into_bytes())
}

/// How many logs may be held open with `children` running: at most half of the fds left under
/// the soft limit by the children's pipes (3 each) and 64 for everything else, so that held
/// logs never take the fds a spawn or a connection needs.
fn held_logs_cap(fd_limit: u64, children: usize) -> usize {
    let spare = fd_limit.saturating_sub(3 * children as u64 + 64) / 2;
    spare.min(MAX_HELD_LOGS as u64) as usize
}

impl EventLoop {
    /// Reads a pipe until it would block, hits EOF or has read `budget` bytes.
    pub(super) fn read_pipe(&mut self, id: ProcId, ch: Channel, budget: usize) {
        self.read_pipe_burst(id, ch, budget);
        self.release_log(id, ch);
    }

    /// After a burst of output: closes the program's log file (it reopens on the next write),
    /// or holds it open until LOG_HOLD from now for the bursts to come.
    pub(super) fn release_log(&mut self, id: ProcId, ch: Channel) {
        let cap = self.held_logs_cap();
        let Some(log) = self.io.get_mut(id.0).and_then(|io| io.logs[ch as usize].as_mut()) else {
            return;
        };
        if log.held {
            return;
        }
        if self.held_logs.len() < cap {
            log.held = true;
            self.held_logs.push_back((id, ch, self.now.mono + LOG_HOLD));
            return;
        }
        log.release();
    }

    pub(super) fn held_logs_cap(&self) -> usize {
        held_logs_cap(self.fd_limit, self.pids.len())
    }

    /// Closes the held logs whose time has come.
    pub(super) fn close_held_logs(&mut self, now: Instant) {
        while let Some(&(id, ch, until)) = self.held_logs.front() {
            if until > now {
                break;
            }
            self.held_logs.pop_front();
            if let Some(log) = self.io.get_mut(id.0).and_then(|io| io.logs[ch as usize].as_mut()) {
                if log.held {
                    log.release();
                }
            }
        }
    }

    pub(super) fn read_pipe_burst(&mut self, id: ProcId, ch: Channel, budget: usize) {
        let grown = self.io.get(id.0).is_some_and(|io| io.grown[ch as usize]);
        let mut flood = match grown {
            true => self.flood_buf.take().map(|(b, _)| b).or_else(|| sys::MappedBuf::new(FLOOD_BUF).ok()),
            false => None,
        };
        let mut small = std::mem::take(&mut self.buf);
        let mut total = 0;
        while let Some(pipe) = self.io.get_mut(id.0).and_then(|io| io.pipes[ch as usize].as_mut()) {
            let buf: &mut [u8] = match flood.as_mut() {
                Some(f) => f.as_mut_slice(),
                None => &mut small,
            };
            match pipe.read(buf) {
                Ok(0) => {
                    self.close_pipe(id, ch);
                    break;
                }
                Ok(n) => {
                    if n >= PIPE_DEFAULT_SIZE {
                        self.grow_pipe(id, ch);
                    }
                    self.on_output(id, ch, &buf[..n]);
                    total += n;
                    if total >= budget {
                        self.unfinished.push_back((id, ch));
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.log.log(LogLevel::Error, &format!("reading {} of pid: {}", ch.name(), e));
                    self.close_pipe(id, ch);
                    break;
                }
            }
        }
        self.buf = small;
        if let Some(f) = flood {
            self.flood_buf = Some((f, self.now.mono));
        }
    }

    /// A pipe found full holds more from now on, so that a program writing a lot wakes the
    /// daemon once per PIPE_GROWN_SIZE instead of once per 64 KiB (200 MB through a log:
    /// 1330-1550 -> 1540-1680 MB/s, daemon CPU 0.11-0.13 -> 0.11-0.12 s). Only a few at a
    /// time: a non-root user's pipes share a page limit (fs.pipe-user-pages-soft, 64 MiB by
    /// default), past which the kernel gives new pipes one or two pages.
    pub(super) fn grow_pipe(&mut self, id: ProcId, ch: Channel) {
        if self.grown_pipes >= MAX_GROWN_PIPES {
            return;
        }
        let Some(io) = self.io.get_mut(id.0) else {
            return;
        };
        let Some(pipe) = io.pipes[ch as usize].as_ref() else {
            return;
        };
        if io.grown[ch as usize] {
            return;
        }
        // Refused past that limit: the pipe then stays as it is, and is not tried again.
        io.grown[ch as usize] = true;
        self.grown_pipes += 1;
        let _ = crate::syscall!(fcntl(pipe.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_GROWN_SIZE as libc::c_int));
    }

    /// A pipe is closed or replaced: it no longer counts among the grown ones.
    pub(super) fn forget_growth(&mut self, id: ProcId, ch: Channel) {
        if let Some(io) = self.io.get_mut(id.0) {
            if std::mem::replace(&mut io.grown[ch as usize], false) {
                self.grown_pipes -= 1;
            }
        }
    }

    pub(super) fn close_pipe(&mut self, id: ProcId, ch: Channel) {
        self.finish_capture(id, ch);
        self.release_log(id, ch);
        self.forget_growth(id, ch);
        if let Some(pipe) = self.io.get_mut(id.0).and_then(|io| io.pipes[ch as usize].take()) {
            let fd = pipe.as_raw_fd();
            let _ = self.poll.registry().deregister(&mut SourceFd(&fd));
            if let Some(p) = self.sup.process(id) {
                let msg = format!("fd {} closed, stopped monitoring {} ({})", fd, p.name(), ch.name());
                self.log.log(LogLevel::Debug, &msg);
            }
        }
    }

    /// Child output: to its log (ANSI stripped if asked), syslog, and the main log at debug.
    pub(super) fn on_output(&mut self, id: ProcId, ch: Channel, data: &[u8]) {
        let data = if self.config.supervisord.strip_ansi { strip_ansi(data) } else { data.into() };
        // A listener's stdout is the event protocol, not program output.
        if ch == Channel::Stdout && self.listener_output(id, &data) {
            return;
        }
        let captured = match self.io.get_mut(id.0).and_then(|io| io.captures[ch as usize].as_mut()) {
            Some(capture) => {
                let mut outs = Vec::new();
                capture.feed(&data, &mut outs);
                Some(outs)
            }
            None => None,
        };
        match captured {
            Some(outs) => self.capture_outputs(id, ch, outs),
            None => self.deliver(id, ch, &data, true),
        }
    }

    /// Where program output goes: its log (unless captured), syslog, the main log at debug,
    /// and a PROCESS_LOG event when `*_events_enabled`.
    pub(super) fn deliver(&mut self, id: ProcId, ch: Channel, data: &[u8], to_child_log: bool) {
        let Some(p) = self.sup.process(id) else {
            return;
        };
        // The config is shared, not copied: nothing here allocates per chunk unless asked to
        // (syslog, events, the main log at debug).
        let config = std::sync::Arc::clone(&p.config);
        let settings = match ch {
            Channel::Stdout => &config.stdout,
            Channel::Stderr => &config.stderr,
        };
        let name = config.name.as_str();
        if to_child_log {
            self.write_child_log(id, ch, data);
        }
        if settings.syslog {
            for line in syslog_lines(data) {
                sys::syslog(libc::LOG_INFO, &format!("{} {}", name, String::from_utf8_lossy(line)));
            }
        }
        // Per piece of at most what Supervisor reads at once, though a grown pipe is read 1 MiB
        // at a time: the main log's copy and listeners see the chunk sizes they always have.
        for piece in data.chunks(OUTPUT_CHUNK) {
            self.log.child_output(name, ch.name(), piece);
            if settings.events_enabled {
                let Some(p) = self.sup.process(id) else { return };
                let event = Event::process_log(event_channel(ch), name, &p.group, p.pid, piece);
                self.notify(event);
            }
        }
    }

    /// Writes to a program's log file (with its line prefix), reporting a failing log once and
    /// its recovery with the count of bytes lost.
    pub(super) fn write_child_log(&mut self, id: ProcId, ch: Channel, data: &[u8]) {
        let Some(p) = self.sup.process(id) else {
            return;
        };
        let prefix = line_prefix(&p.config);
        let mut failure = None;
        let now = self.now.wall;
        if let Some(io) = self.io.get_mut(id.0) {
            let framed;
            let to_log: &[u8] = match &prefix {
                Some(prefix) => {
                    framed = prefix_lines(data, prefix, &mut io.at_line_start[ch as usize]);
                    &framed
                }
                None => data,
            };
            if let Some(log) = io.logs[ch as usize].as_mut() {
                match log.write_at(to_log, now) {
                    Ok(()) => {
                        if io.log_failing[ch as usize] {
                            io.log_failing[ch as usize] = false;
                            failure = Some((
                                LogLevel::Warn,
                                format!(
                                    "{}: writing {} works again; {} bytes of output were lost",
                                    p.config.name,
                                    log.path().display(),
                                    log.dropped
                                ),
                            ));
                            log.dropped = 0;
                        }
                    }
                    Err(e) => {
                        if !io.log_failing[ch as usize] {
                            io.log_failing[ch as usize] = true;
                            failure = Some((
                                LogLevel::Error,
                                format!(
                                    "{}: cannot write {} log {}: {}; output is dropped (and counted) until it works again",
                                    p.config.name,
                                    ch.name(),
                                    log.path().display(),
                                    e
                                ),
                            ));
                        }
                    }
                }
            }
        }
        if let Some((level, msg)) = failure {
            self.log.log(level, &msg);
        }
    }
}

/// Supervisor's `strip_escapes`: removes `ESC[` up to and including the first byte in
/// `HfABCDRsuJKhlpm`. Returns the input unchanged (borrowed) when it has no escape.
pub fn strip_ansi(data: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    const ESC: &[u8] = b"\x1b[";
    const ENDS: &[u8] = b"HfABCDRsuJKhlpm";
    if !data.windows(2).any(|w| w == ESC) {
        return std::borrow::Cow::Borrowed(data);
    }
    let mut out = Vec::with_capacity(data.len());
    let mut i = 0;
    while i < data.len() {
        if data[i..].starts_with(ESC) {
            match data[i + 2..].iter().position(|b| ENDS.contains(b)) {
                Some(end) => i += 2 + end + 1,
                // An unfinished sequence: Supervisor drops the rest of the chunk.
                None => break,
            }
        } else {
            out.push(data[i]);
            i += 1;
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Puts `prefix` before every line of `data` (`log_prefix`/`log_timestamps`, Supervisor issue
/// #553). `at_line_start` carries over between reads, so a line split across two reads gets
/// one prefix, at its start.
pub fn prefix_lines(data: &[u8], prefix: &[u8], at_line_start: &mut bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + prefix.len() * 4);
    for &b in data {
        if *at_line_start {
            out.extend_from_slice(prefix);
            *at_line_start = false;
        }
        out.push(b);
        if b == b'\n' {
            *at_line_start = true;
        }
    }
    out
}

/// Splits output into syslog lines: Supervisor logs each line of a chunk, the trailing
/// newline stripped.
pub fn syslog_lines(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let data = data.strip_suffix(b"\n").unwrap_or(data);
    data.split(|b| *b == b'\n')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_logs_leave_the_fds_that_spawns_need() {
        // 300 children under the common 1024 limit: 900 pipe fds, 64 kept free, half the rest.
        assert_eq!(held_logs_cap(1024, 300), 30);
        assert_eq!(held_logs_cap(1024, 400), 0);
        assert_eq!(held_logs_cap(1024, 0), 480);
        assert_eq!(held_logs_cap(1 << 20, 1000), MAX_HELD_LOGS);
        assert_eq!(held_logs_cap(u64::MAX, 1000), MAX_HELD_LOGS);
    }

    #[test]
    fn strip_ansi_removes_color_codes_only() {
        assert_eq!(&*strip_ansi(b"\x1b[31mred\x1b[0m plain"), b"red plain");
        assert_eq!(&*strip_ansi(b"\x1b[2J\x1b[1;1Hhome"), b"home");
        assert_eq!(&*strip_ansi(b"no escapes"), b"no escapes");
        assert_eq!(&*strip_ansi(b"\x1b(B keeps non-CSI"), b"\x1b(B keeps non-CSI");
    }

    #[test]
    fn prefix_goes_before_each_line_even_when_split_across_reads() {
        let mut start = true;
        let mut out = prefix_lines(b"one\ntw", b"[a] ", &mut start);
        out.extend(prefix_lines(b"o\n\nthree", b"[a] ", &mut start));
        assert_eq!(out, b"[a] one\n[a] two\n[a] \n[a] three");
        assert!(!start);
        assert_eq!(prefix_lines(b"", b"x", &mut start), b"");
    }

    #[test]
    fn syslog_lines_drop_the_final_newline() {
        let lines: Vec<&[u8]> = syslog_lines(b"a\nb\n").collect();
        assert_eq!(lines, vec![&b"a"[..], &b"b"[..]]);
    }
}
