//! Upgrade in place, the loop's side (`daemon::upgrade` has the handoff's format).
//!
//! Asked by `minisv.upgrade` or SIGUSR1: the config file must still be what runs (else the
//! new daemon would read another one), then the binary at the daemon's path is run once with
//! `MINISV_UPGRADE_CHECK` (it loads the config and names the handoff versions it reads),
//! watched by the loop like any child, with a deadline. Only if it answers as expected is the
//! reply sent and the binary executed in this process, with the handoff: the children stay
//! ours, their pipes, logs and sockets stay open. A binary that cannot run, crashes or
//! answers otherwise is reported, and nothing changes.
//!
//! The new daemon takes over in `take_over`: each carried process's state, pipes, logs and
//! listener state, and the sockets, without events (nothing happened to the programs) and
//! without starting anything that was not running.

use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::Interest;

use super::{pipe_token, ready_token, stdin_token, Channel, EventLoop, ProcIo};
use crate::config::LogLevel;
use crate::daemon::upgrade::{self, Fallback, Handoff, ProcRecord};
use crate::supervisor::{self, Mood, ProcId, Refusal, Ticket};

/// How long the new binary's pre-flight run may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(10);
/// The most of the pre-flight run's output kept (for its message).
const CHECK_OUTPUT: usize = 4096;

/// An upgrade under way: the pre-flight run of the new binary.
pub(super) struct Check {
    pid: u32,
    output: File,
    pub(super) deadline: Instant,
    /// The request that asked for it (none for SIGUSR1).
    ticket: Option<Ticket>,
}

/// What the daemon says of its upgrades (`minisv.lastUpgrade`).
#[derive(Clone, Debug, Default)]
pub struct UpgradeRecord {
    /// Upgrades tried so far, by this daemon and those it was upgraded from.
    pub generation: u64,
    /// The last one's outcome: whether the new binary took over, and what happened.
    pub last: Option<(bool, String)>,
}

impl EventLoop {
    /// The binary an upgrade executes (the path the daemon was started from).
    pub fn set_executable(&mut self, path: PathBuf) {
        self.executable = Some(path);
    }

    pub fn upgrade_record(&self) -> &UpgradeRecord {
        &self.upgrades
    }

    /// Starts an upgrade: Err is why it cannot be; Ok, the ticket whose answer comes when the
    /// new binary has passed its pre-flight run (or failed it).
    pub(super) fn begin_upgrade(&mut self, ticket: Option<Ticket>) -> Result<(), String> {
        if self.check.is_some() || self.upgrade_go {
            return Err("an upgrade is already under way".into());
        }
        if self.sup.mood() != Mood::Running || self.pending_reload.is_some() {
            return Err(format!("the daemon is {}", self.sup.mood().name().to_lowercase()));
        }
        let exe = self.executable.clone().ok_or("the daemon's executable is not known")?;
        self.config_unchanged()?;
        // The handoff as it is now, for the new binary to read as it will after the exec (a
        // dry run: it names the processes it could not place).
        let draft = self.make_handoff().encode(Instant::now(), upgrade::mono_ns());
        let draft = upgrade::write_memfd(&draft).map_err(|e| format!("cannot write the handoff: {e}"))?;
        // stdout and stderr into one pipe, read once it has exited (a pipe holds 64 KiB, far
        // more than it prints).
        let (read, write) = crate::sys::pipe().map_err(|e| format!("cannot make a pipe: {e}"))?;
        let write2 = write.try_clone().map_err(|e| format!("cannot make a pipe: {e}"))?;
        let mut cmd = std::process::Command::new(&exe);
        cmd.args(std::env::args_os().skip(1))
            .env(upgrade::CHECK_ENV, draft.as_raw_fd().to_string())
            .env_remove(upgrade::HANDOFF_ENV)
            .stdin(Stdio::null())
            .stdout(Stdio::from(write))
            .stderr(Stdio::from(write2));
        // Its own process group: a ^C at the daemon's terminal is not for it.
        cmd.process_group(0);
        // The draft is left open for the child only (closed here once it is started).
        upgrade::set_cloexec(draft.as_raw_fd(), false).map_err(|e| format!("cannot pass the handoff: {e}"))?;
        let spawned = cmd.spawn();
        drop(draft);
        let child = spawned.map_err(|e| format!("cannot run {}: {e}", exe.display()))?;
        // The write ends close with `cmd`: the pipe ends when the child has exited.
        drop(cmd);
        let pid = child.id();
        // The loop reaps it (SIGCHLD).
        drop(child);
        let output = File::from(read);
        crate::sys::set_nonblocking(output.as_raw_fd())
            .map_err(|e| format!("cannot read the pre-flight run's output: {e}"))?;
        self.log.log(LogLevel::Info, &format!("upgrade: checking the new binary {} (pid {pid})", exe.display()));
        self.check = Some(Check { pid, output, deadline: self.now.mono + CHECK_TIMEOUT, ticket });
        Ok(())
    }

    /// The config file must still give the groups that run: the new daemon reads it.
    fn config_unchanged(&mut self) -> Result<(), String> {
        let config = (self.reloader)().map_err(|errors| {
            format!("the config file cannot be read now, so a new daemon could not start: {}", errors.join("; "))
        })?;
        let mut diffs = Vec::new();
        for g in &config.groups {
            match self.sup.group(&g.name) {
                None => diffs.push(format!("{} added", g.name)),
                Some(running) if !crate::config::same_group(&running.config, g) => {
                    diffs.push(format!("{} changed", g.name))
                }
                Some(_) => {}
            }
        }
        for g in self.sup.groups() {
            if !config.groups.iter().any(|n| n.name == g.config.name) {
                diffs.push(format!("{} removed", g.config.name));
            }
        }
        if config.unix_http_servers != self.config.unix_http_servers
            || config.inet_http_servers != self.config.inet_http_servers
        {
            diffs.push("the control sockets ([unix_http_server], [inet_http_server]) changed".into());
        }
        if diffs.is_empty() {
            return Ok(());
        }
        Err(format!(
            "the config file no longer gives the programs that run ({}): apply it with `update` (or undo the change) first",
            diffs.join(", ")
        ))
    }

    /// A reaped pid that may be the pre-flight run: true if it was.
    pub(super) fn upgrade_check_reaped(&mut self, pid: u32, ok: bool, message: &str) -> bool {
        if self.check.as_ref().is_none_or(|c| c.pid != pid) {
            return false;
        }
        let Some(mut check) = self.check.take() else { return false };
        let mut out = Vec::new();
        let _ = (&mut check.output).take(CHECK_OUTPUT as u64).read_to_end(&mut out);
        let text = String::from_utf8_lossy(&out).trim().to_string();
        let exe = self.executable.clone().unwrap_or_default();
        let verdict = match text.lines().find_map(parse_check_line) {
            // A shutdown or reload began while the check ran.
            _ if self.sup.mood() != Mood::Running || self.pending_reload.is_some() => {
                Err(format!("the daemon is {}", self.sup.mood().name().to_lowercase()))
            }
            Some((version, versions)) if ok && versions.contains(&upgrade::VERSION) => Ok(version),
            Some((version, _)) if ok => Err(format!(
                "{} (minisv {version}) cannot read this daemon's handoff (version {})",
                exe.display(),
                upgrade::VERSION
            )),
            _ if ok => Err(format!("{} is not a minisv that can take over: it said {:?}", exe.display(), text)),
            _ => Err(format!("{} failed its pre-flight run ({message}): {text}", exe.display())),
        };
        match verdict {
            Ok(version) => {
                self.log.log(LogLevel::Info, &format!("upgrade: executing {} (minisv {version})", exe.display()));
                if let Some(t) = check.ticket {
                    self.on_answer(t, supervisor::Answer::Done);
                }
                // Executed at the top of the loop, once the reply is on its way.
                self.upgrade_go = true;
            }
            Err(why) => self.upgrade_refused(check.ticket, why),
        }
        true
    }

    /// The pre-flight run did not end in time: it is killed, and the upgrade refused.
    pub(super) fn upgrade_check_timeout(&mut self) {
        let Some(check) = self.check.as_ref().filter(|c| c.deadline <= self.now.mono) else { return };
        let pid = check.pid;
        let _ = crate::sys::kill(pid, libc::SIGKILL, true);
        let _ = crate::sys::kill(pid, libc::SIGKILL, false);
        // Reaped by the loop as an unknown pid.
        let ticket = self.check.take().and_then(|c| c.ticket);
        let why = format!("the new binary's pre-flight run did not end within {} s (killed)", CHECK_TIMEOUT.as_secs());
        self.upgrade_refused(ticket, why);
    }

    fn upgrade_refused(&mut self, ticket: Option<Ticket>, why: String) {
        self.log.log(LogLevel::Error, &format!("upgrade refused: {why}; this daemon goes on"));
        self.upgrades.generation += 1;
        self.upgrades.last = Some((false, why.clone()));
        if let Some(t) = ticket {
            self.on_answer(t, supervisor::Answer::Refused(Refusal::Failed(why)));
        }
    }

    /// Executes the new binary with the handoff. Returns only if the exec failed (everything is
    /// as before, and the failure is reported).
    pub(super) fn exec_upgrade(&mut self) {
        self.upgrade_go = false;
        // Children on their way to exec get their pids first.
        while self.finish_spawn() {}
        self.settle();
        // The reply to `upgrade`, and whatever else is ready, go out now.
        self.serve_http();
        let Some(exe) = self.executable.clone() else { return };
        let why = match self.try_exec(&exe) {
            Ok(never) => match never {},
            Err(e) => e,
        };
        self.log.log(LogLevel::Error, &format!("upgrade failed: {why}; this daemon goes on"));
        self.upgrades.generation += 1;
        self.upgrades.last = Some((false, why));
    }

    fn try_exec(&mut self, exe: &std::path::Path) -> Result<std::convert::Infallible, String> {
        // The old binary, to be executed again if the new one cannot take over.
        let old = File::open("/proc/self/exe").map_err(|e| format!("cannot open the running binary: {e}"))?;
        let h = self.make_handoff();
        let text = h.encode(Instant::now(), upgrade::mono_ns());
        let memfd = upgrade::write_memfd(&text).map_err(|e| format!("cannot write the handoff: {e}"))?;
        let mut fds = h.fds();
        fds.extend([memfd.as_raw_fd(), old.as_raw_fd()]);
        let carried = fds.len();
        let argv: Vec<std::ffi::CString> = std::env::args_os()
            .map(|a| std::ffi::CString::new(std::os::unix::ffi::OsStringExt::into_vec(a)).unwrap_or_default())
            .collect();
        let path = std::ffi::CString::new(std::os::unix::ffi::OsStrExt::as_bytes(exe.as_os_str()))
            .map_err(|_| "the executable's path has a NUL byte".to_string())?;
        // SAFETY: a plain environment update in our one thread, before the exec.
        unsafe { std::env::set_var(upgrade::HANDOFF_ENV, Fallback::env_value(memfd.as_raw_fd(), old.as_raw_fd())) };
        let n = self.sup.processes().filter(|(_, p)| p.pid != 0).count();
        self.log.log(
            LogLevel::Info,
            &format!("upgrade: handing {n} running processes and {carried} fds to {}", exe.display()),
        );
        // Signals wait, blocked, until the new daemon has its handlers (their default would
        // end it, and SIGCHLD's would be lost).
        let blocked = crate::sys::signals::block(super::HANDLED_SIGNALS);
        let mut cleared = Vec::new();
        for fd in fds.iter().copied() {
            if upgrade::set_cloexec(fd, false).is_ok() {
                cleared.push(fd);
            }
        }
        let err = crate::sys::execv(&path, &argv);
        // Still here: nothing happened. Put everything back.
        for fd in cleared {
            let _ = upgrade::set_cloexec(fd, true);
        }
        crate::sys::signals::unblock(&blocked);
        // SAFETY: as above.
        unsafe { std::env::remove_var(upgrade::HANDOFF_ENV) };
        drop(memfd);
        drop(old);
        Err(format!("cannot execute {}: {err}", exe.display()))
    }

    /// What the new daemon needs: every process's state and I/O, and the sockets.
    fn make_handoff(&mut self) -> Handoff {
        let (recent_restarts, critical_reported) = self.sup.carry_daemon();
        let mut h = Handoff {
            from_version: env!("CARGO_PKG_VERSION").to_string(),
            generation: self.upgrades.generation + 1,
            recent_restarts,
            critical_reported,
            http: self.http.as_ref().map(|s| s.listener_fds()).unwrap_or_default(),
            notify: self.notify.as_ref().map(|n| (n.fd(), n.address().to_string())),
            ..Handoff::default()
        };
        h.fcgi = self.fcgi_sockets.iter().map(|(g, (url, fd))| (g.clone(), url.clone(), fd.as_raw_fd())).collect();
        h.listen = self.listen_sockets.iter().map(|((g, p), held)| (g.clone(), p.clone(), held.raw_fds())).collect();
        let ids: Vec<ProcId> = self.sup.processes().map(|(id, _)| id).collect();
        for id in ids {
            let Some(p) = self.sup.process(id) else { continue };
            let spec = crate::supervisor::namespec::make(&p.group, p.name());
            let mut r = ProcRecord::new(spec, p.carry());
            if let Some(io) = self.io.get(id.0) {
                r.pipes = [0, 1].map(|i| io.pipes[i].as_ref().map(AsRawFd::as_raw_fd));
                r.stdin = io.stdin.as_ref().map(AsRawFd::as_raw_fd);
                r.ready = io.ready.as_ref().map(AsRawFd::as_raw_fd);
                r.stdin_buf = io.stdin_buf.clone();
                r.at_line_start = io.at_line_start;
                r.logs = [0, 1].map(|i| io.logs[i].as_ref().map(|l| l.path().to_path_buf()));
            }
            if let Some((pool, listener)) = self.listener_pool(id) {
                r.listener = self.pools.pool(&pool).and_then(|p| p.listener_state(&listener));
            }
            h.processes.push(r);
        }
        h
    }

    /// The sockets of a handoff, held before the groups are added (so that adding them keeps
    /// these instead of binding anew).
    pub fn adopt_sockets(&mut self, h: &Handoff) {
        if let Some((fd, addr)) = &h.notify {
            if let Some(owned) = upgrade::adopt(*fd) {
                match super::notify::NotifySocket::adopt(owned, addr.clone()) {
                    Ok(sock) => {
                        let raw = sock.fd();
                        if let Err(e) =
                            self.poll.registry().register(&mut SourceFd(&raw), super::NOTIFY_TOKEN, Interest::READABLE)
                        {
                            self.log.log(LogLevel::Error, &format!("cannot watch the notify socket: {e}"));
                        }
                        self.notify = Some(sock);
                    }
                    Err(e) => self.log.log(LogLevel::Error, &format!("cannot take over the notify socket: {e}")),
                }
            }
        }
        for (group, url, fd) in &h.fcgi {
            if let Some(owned) = upgrade::adopt(*fd) {
                self.fcgi_sockets.insert(group.clone(), (url.clone(), owned));
            }
        }
        for (group, program, fds) in &h.listen {
            let Some(pc) = self
                .config
                .groups
                .iter()
                .find(|g| g.name == *group)
                .and_then(|g| g.processes.iter().find(|pc| pc.program == *program))
            else {
                continue;
            };
            if pc.listen.len() != fds.len() {
                continue;
            }
            let owned: Vec<OwnedFd> = fds.iter().filter_map(|fd| upgrade::adopt(*fd)).collect();
            if owned.len() == fds.len() {
                self.listen_sockets.insert(
                    (group.clone(), program.clone()),
                    super::sockets::HeldListen::new(pc.listen.clone(), owned),
                );
            }
        }
    }

    /// Takes over the carried processes (after the groups were added): their state, pipes,
    /// logs and listener state. Returns the names it could not place.
    pub fn take_over(&mut self, h: &Handoff) -> Vec<String> {
        let mut missing = Vec::new();
        for r in &h.processes {
            let (group, name) = crate::supervisor::namespec::split(&r.namespec);
            let Some(id) = name.and_then(|n| self.sup.find(group, n)) else {
                missing.push(r.namespec.clone());
                continue;
            };
            self.sup.resume(id, r.core.clone());
            if self.io.len() <= id.0 {
                self.io.resize_with(id.0 + 1, ProcIo::default);
            }
            self.resume_logs(id, r);
            for (i, ch) in [Channel::Stdout, Channel::Stderr].into_iter().enumerate() {
                let Some(fd) = r.pipes[i] else { continue };
                let Some(owned) = upgrade::adopt(fd) else { continue };
                let raw = owned.as_raw_fd();
                if let Err(e) =
                    self.poll.registry().register(&mut SourceFd(&raw), pipe_token(id, ch), Interest::READABLE)
                {
                    self.log.log(LogLevel::Error, &format!("cannot watch {} of {}: {e}", ch.name(), r.namespec));
                }
                self.io[id.0].pipes[i] = Some(File::from(owned));
            }
            if let Some(owned) = r.ready.and_then(upgrade::adopt) {
                let raw = owned.as_raw_fd();
                if let Err(e) = self.poll.registry().register(&mut SourceFd(&raw), ready_token(id), Interest::READABLE)
                {
                    self.log.log(LogLevel::Error, &format!("cannot watch the ready_fd of {}: {e}", r.namespec));
                }
                self.io[id.0].ready = Some(File::from(owned));
            }
            if let Some(owned) = r.stdin.and_then(upgrade::adopt) {
                if !r.stdin_buf.is_empty() {
                    let raw = owned.as_raw_fd();
                    let _ = self.poll.registry().register(&mut SourceFd(&raw), stdin_token(id), Interest::WRITABLE);
                }
                self.io[id.0].stdin = Some(owned);
                self.io[id.0].stdin_buf = r.stdin_buf.clone();
            }
            self.io[id.0].at_line_start = r.at_line_start;
            if r.core.pid != 0 {
                self.pids.insert(r.core.pid, id);
                self.new_captures(id);
                // Its cgroup (same base: same pid), so that its leftovers are killed at its end.
                if let Some(p) = self.sup.process(id) {
                    let (pc, group) = (p.config.clone(), p.group.clone());
                    let _ = self.cgroup_for(id, &pc, &group);
                }
            }
            if let (Some(state), Some((pool, listener))) = (r.listener, self.listener_pool(id)) {
                let running = r.core.state == crate::supervisor::ProcessState::Running;
                self.pools.resume(&pool, &listener, state, running);
            }
        }
        // `memory_limit=` is looked at while a limited program runs (set on entering RUNNING,
        // which these did under the old daemon).
        let limited = self
            .sup
            .processes()
            .any(|(_, p)| p.config.memory_limit > 0 && p.state == crate::supervisor::ProcessState::Running);
        if limited {
            self.memory_check = Some(self.now.mono + super::MEMORY_CHECK);
        }
        missing
    }

    /// A carried process's logs: at the paths the old daemon wrote (an AUTO log keeps its name).
    fn resume_logs(&mut self, id: ProcId, r: &ProcRecord) {
        let Some(pc) = self.sup.process(id).map(|p| p.config.clone()) else { return };
        for (i, ch) in [Channel::Stdout, Channel::Stderr].into_iter().enumerate() {
            let (Some(path), Some(current)) = (&r.logs[i], self.io[id.0].logs[i].as_ref()) else { continue };
            if current.path() == path {
                continue;
            }
            if let Some(log) = self.open_log_at(&pc, ch, Some(path)) {
                self.io[id.0].logs[i] = Some(log);
            }
        }
    }

    /// The outcome of the takeover this daemon made (or that came back to it), for
    /// `lastUpgrade` and the log.
    pub fn record_takeover(&mut self, generation: u64, ok: bool, message: String) {
        self.log.log(if ok { LogLevel::Info } else { LogLevel::Error }, &message);
        self.upgrades = UpgradeRecord { generation, last: Some((ok, message)) };
    }

    /// Events are not sent while a takeover adds the groups again (nothing happened to them).
    pub fn set_resuming(&mut self, on: bool) {
        self.resuming = on;
    }
}

/// `minisv <version> handoff <v>[,<v>...]`, the pre-flight run's answer.
fn parse_check_line(line: &str) -> Option<(String, Vec<u32>)> {
    let mut w = line.split_whitespace();
    if w.next()? != "minisv" {
        return None;
    }
    let version = w.next()?.to_string();
    if w.next()? != "handoff" {
        return None;
    }
    let versions = w.next()?.split(',').map(str::parse).collect::<Result<Vec<u32>, _>>().ok()?;
    Some((version, versions))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_check_line_names_the_version_and_handoff_versions() {
        assert_eq!(parse_check_line("minisv 0.2.0 handoff 1,2"), Some(("0.2.0".into(), vec![1, 2])));
        assert_eq!(parse_check_line("minisv 0.2.0 handoff 1"), Some(("0.2.0".into(), vec![1])));
        assert_eq!(parse_check_line("minisv 0.2.0"), None);
        assert_eq!(parse_check_line("supervisord 4.3.0 handoff 1"), None);
        assert_eq!(parse_check_line("minisv 0.2.0 handoff x"), None);
    }
}
