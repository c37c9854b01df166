//! The control side of the event loop: requests from the HTTP threads, replies that wait for
//! the state machine, and the operations behind reread/update/remove, log clearing and stdin.

use std::io;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, Sender};
use std::sync::Arc;
use std::time::Duration;

use mio::Waker;
use std::time::{Instant, SystemTime};

use mio::unix::SourceFd;
use mio::Interest;

use super::{stdin_token, Channel, EventLoop, ProcIo};
use crate::config::{GroupConfig, LogLevel};
use crate::daemon::spawn;
use crate::rpc::api::{self, Reply};
use crate::rpc::http::{RequestKind, ServerHandle, ServerReply, ServerRequest};
use crate::supervisor::{Input, ProcId, RemoveError};

/// How long after an accept failure the control servers are restarted (and between tries).
const SERVER_RETRY: Duration = Duration::from_secs(1);
/// How long a connection may wait in the backlog before the servers count as stuck.
const ACCEPT_WATCHDOG: Duration = Duration::from_secs(2);

/// Group names (added, changed, removed), as `reloadConfig` reports them.
pub type GroupChanges = (Vec<String>, Vec<String>, Vec<String>);

impl EventLoop {
    /// Takes control requests from the HTTP threads (after `mio::Waker::wake`).
    pub fn set_requests(&mut self, rx: Receiver<ServerRequest>) {
        self.requests = Some(rx);
    }

    /// The control servers, and what restarting them takes.
    pub fn set_server(&mut self, server: ServerHandle, tx: Sender<ServerRequest>, waker: Arc<Waker>) {
        self.watch_listeners(&server);
        self.server = Some(server);
        self.server_tx = Some(tx);
        self.server_waker = Some(waker);
    }

    pub fn take_server(&mut self) -> Option<ServerHandle> {
        self.server.take()
    }

    /// tiny_http's accept thread ends for good on an accept error (EMFILE ...): say so once and
    /// restart the servers shortly (again and again while binding fails, e.g. still out of fds).
    fn check_servers(&mut self) {
        let Some(server) = &self.server else { return };
        for h in server.health() {
            if let Some(err) = h.accept_error {
                let key = format!("{}: {}", h.section, err);
                if !self.reported_accept_errors.contains(&key) {
                    self.log.log(
                        LogLevel::Critical,
                        &format!(
                            "[{}] stopped accepting connections: {} (open connections are still served); \
                             restarting the control servers",
                            h.section, err
                        ),
                    );
                    self.reported_accept_errors.push(key);
                }
                self.server_retry.get_or_insert(Instant::now() + SERVER_RETRY);
            }
        }
    }

    /// Watches the listening sockets: each arriving connection wakes the loop once.
    fn watch_listeners(&mut self, server: &ServerHandle) {
        for (i, fd) in server.listener_fds().into_iter().enumerate() {
            let token = mio::Token(super::LISTENER_TOKEN_BASE + i);
            if token.0 >= super::PIPE_TOKEN_BASE {
                break;
            }
            if let Err(e) = self.poll.registry().register(&mut SourceFd(&fd), token, Interest::READABLE) {
                self.log.log(LogLevel::Warn, &format!("cannot watch a control socket: {e}"));
            }
        }
    }

    /// A connection arrived: if it is still waiting now, check in a moment that it was
    /// accepted (usually tiny_http has taken it already, and nothing more is scheduled, so
    /// control traffic leaves no timer behind).
    pub(super) fn connection_arrived(&mut self) {
        let waiting = self.server.as_ref().is_some_and(|s| s.listener_fds().into_iter().any(crate::sys::readable_now));
        if waiting {
            self.accept_check.get_or_insert(Instant::now() + ACCEPT_WATCHDOG);
        }
    }

    /// Connections still waiting at two checks, ACCEPT_WATCHDOG after one arrived and a second
    /// later, with no request coming through in between, mean nobody accepts any more
    /// (tiny_http's accept thread ended or panicked, e.g. out of fds): restart the servers.
    pub(super) fn check_accepting(&mut self) {
        self.accept_check = None;
        let Some(server) = &self.server else { return };
        let waiting = server.listener_fds().into_iter().any(crate::sys::readable_now);
        match self.accept_suspect {
            // Connections keep arriving and requests keep coming through: the acceptor is
            // alive, the backlog just is not empty at the moment we look.
            Some(requests) if !waiting || self.requests_seen != requests => self.accept_suspect = None,
            None if !waiting => {}
            None => {
                self.accept_suspect = Some(self.requests_seen);
                self.accept_check = Some(Instant::now() + Duration::from_secs(1));
            }
            Some(_) => self.restart_stuck_servers(),
        }
    }

    fn restart_stuck_servers(&mut self) {
        self.accept_suspect = None;
        self.log.log(
            LogLevel::Critical,
            "the control server stopped accepting connections (connections waited for seconds); restarting it",
        );
        self.restart_servers();
    }

    /// Stops the control servers and starts them again on fresh sockets.
    pub(super) fn restart_servers(&mut self) {
        self.server_retry = None;
        let (Some(tx), Some(waker)) = (self.server_tx.clone(), self.server_waker.clone()) else { return };
        if let Some(old) = self.server.take() {
            old.shutdown();
        }
        match crate::rpc::http::bind(&self.config) {
            Ok((bound, _)) => {
                let server = crate::rpc::http::serve(bound, tx, waker);
                self.watch_listeners(&server);
                self.server = Some(server);
                self.reported_accept_errors.clear();
                self.log.log(LogLevel::Info, "control servers restarted");
            }
            Err(e) => {
                self.log.log(LogLevel::Warn, &format!("cannot restart the control servers yet: {e}; retrying"));
                self.server_retry = Some(Instant::now() + SERVER_RETRY);
            }
        }
    }

    pub(super) fn on_wake(&mut self) {
        self.check_servers();
        // Bounded per wakeup; the HTTP threads wake us again for anything sent later.
        for _ in 0..10_000 {
            let Some(req) = self.requests.as_ref().and_then(|rx| rx.try_recv().ok()) else { return };
            self.requests_seen += 1;
            // A request came through: the acceptor is alive, no need to wake up to check it
            // (so control traffic leaves no timer behind).
            if self.accept_suspect.is_none() {
                self.accept_check = None;
            }
            match req.kind {
                RequestKind::XmlRpc(body) => match api::handle_request(self, &body) {
                    Some(Ok(Reply::Done(v))) => {
                        let _ = req.reply.send(ServerReply::XmlRpc(api::encode(&Ok(v))));
                    }
                    Some(Ok(Reply::Later(p))) => self.pending.push((p, req.reply)),
                    Some(Err(e)) => {
                        let _ = req.reply.send(ServerReply::XmlRpc(api::encode(&Err(e))));
                    }
                    None => {
                        let _ = req.reply.send(ServerReply::BadRequest);
                    }
                },
                RequestKind::Log { level, message } => self.log.log(level, &message),
                RequestKind::Web(web) => match crate::rpc::web::handle(self, &web) {
                    crate::rpc::web::WebOutcome::Now(r) => {
                        let _ = req.reply.send(ServerReply::Web(r));
                    }
                    // Completed by poll_pending like a waiting XML-RPC call.
                    crate::rpc::web::WebOutcome::Later(p) => self.pending.push((p, req.reply)),
                },
                RequestKind::LogPath { namespec, channel } => {
                    let path = match namespec {
                        None => self.log.path(),
                        Some(name) => self.tail_path(&name, &channel),
                    };
                    let _ = req.reply.send(ServerReply::LogPath(path));
                }
            }
            self.perform_actions();
        }
    }

    fn tail_path(&mut self, namespec: &str, channel: &str) -> Option<PathBuf> {
        let ch = match channel {
            "stdout" => Channel::Stdout,
            "stderr" => Channel::Stderr,
            _ => return None,
        };
        let (group, process) = api::split_namespec(namespec);
        let id = self.sup.find(group, process?)?;
        self.readable_log_path(id, ch)
    }

    /// Answers the replies that the last state changes completed.
    pub(super) fn poll_pending(&mut self) {
        let mut pending = std::mem::take(&mut self.pending);
        pending.retain_mut(|(p, reply)| match api::poll(self, p) {
            Some(result) => {
                let _ = reply.send(ServerReply::XmlRpc(api::encode(&result)));
                false
            }
            None => true,
        });
        // Requests that arrived while polling were pushed to self.pending: keep both.
        pending.append(&mut self.pending);
        self.pending = pending;
    }

    /// Re-reads the config into `stored` and compares it with the running groups:
    /// (added, changed, removed) group names, each sorted.
    pub fn reread(&mut self) -> Result<GroupChanges, Vec<String>> {
        let config = (self.reloader)()?;
        let mut added = Vec::new();
        let mut changed = Vec::new();
        for g in &config.groups {
            match self.sup.group(&g.name) {
                None => added.push(g.name.clone()),
                Some(running) => {
                    if !crate::config::same_group(&running.config, g) {
                        changed.push(g.name.clone());
                    }
                }
            }
        }
        let mut removed: Vec<String> = self
            .sup
            .groups()
            .iter()
            .filter(|g| !config.groups.iter().any(|n| n.name == g.config.name))
            .map(|g| g.config.name.clone())
            .collect();
        added.sort();
        changed.sort();
        removed.sort();
        // An update adds its groups one request at a time: grow the fd table once for all
        // that may come (the processes now and every one of the new config).
        let coming: usize = config.groups.iter().map(|g| g.processes.len()).sum();
        self.reserve_fds(self.sup.processes().count() + coming);
        self.stored = config;
        Ok((added, changed, removed))
    }

    /// Applies a changed group in place once its changed processes are stopped: unchanged ones
    /// keep running with their logs; changed ones get new logs and are started again if their
    /// names are in `restart` (they were running before the update).
    pub fn apply_group_update(&mut self, config: GroupConfig, restart: &[String]) {
        if matches!(config.kind, crate::config::GroupKind::EventListener { .. }) {
            // A changed pool starts afresh (its listeners register again as they spawn).
            self.remove_pool(&config.name);
            self.add_pool(&config);
        }
        let (_, fresh, dropped) = self.sup.replace_group(config);
        for id in dropped {
            for ch in [Channel::Stdout, Channel::Stderr] {
                self.close_pipe(id, ch);
            }
            if let Some(io) = self.io.get_mut(id.0) {
                *io = ProcIo::default();
            }
        }
        let now = Instant::now();
        for id in fresh {
            let Some(pc) = self.sup.process(id).map(|p| p.config.clone()) else { continue };
            if self.io.len() <= id.0 {
                self.io.resize_with(id.0 + 1, ProcIo::default);
            }
            let logs = [self.open_log(&pc, Channel::Stdout), self.open_log(&pc, Channel::Stderr)];
            self.io[id.0] = ProcIo { logs, ..ProcIo::default() };
            if restart.contains(&pc.name) {
                self.sup.feed(id, Input::Start, now, SystemTime::now());
            }
        }
        self.reserve_fds_for_processes();
        self.sup.tick(now, SystemTime::now());
        self.perform_actions();
    }

    /// Removes a stopped group and closes its logs.
    pub fn remove_group(&mut self, name: &str) -> Result<(), RemoveError> {
        let members = self.sup.group(name).map(|g| g.members.clone()).unwrap_or_default();
        self.sup.remove_group(name)?;
        self.fcgi_sockets.remove(name);
        self.remove_pool(name);
        for id in members {
            for ch in [Channel::Stdout, Channel::Stderr] {
                self.close_pipe(id, ch);
            }
            if let Some(io) = self.io.get_mut(id.0) {
                *io = ProcIo::default();
            }
        }
        self.perform_actions();
        Ok(())
    }

    /// Reopens both logs of a process at their paths (they stay closed until output flows).
    pub fn reopen_process_logs(&mut self, id: ProcId) -> io::Result<()> {
        if let Some(io) = self.io.get_mut(id.0) {
            for log in io.logs.iter_mut().flatten() {
                log.reopen()?;
                log.release();
            }
        }
        Ok(())
    }

    /// Rotates both logs of a process now (a log on a device is left as it is).
    pub fn rotate_process_logs(&mut self, id: ProcId) -> io::Result<()> {
        if let Some(io) = self.io.get_mut(id.0) {
            for log in io.logs.iter_mut().flatten() {
                log.rotate_now()?;
                log.release();
            }
        }
        Ok(())
    }

    /// Clears both logs of a process (remove and reopen; backups are kept).
    pub fn clear_logs(&mut self, id: ProcId) -> io::Result<()> {
        if let Some(io) = self.io.get_mut(id.0) {
            for log in io.logs.iter_mut().flatten() {
                log.clear()?;
                log.release();
            }
        }
        Ok(())
    }

    /// Queues bytes for a child's stdin and writes what the pipe takes now.
    pub fn send_stdin(&mut self, id: ProcId, data: &[u8]) -> io::Result<()> {
        let Some(io) = self.io.get_mut(id.0) else { return Err(io::ErrorKind::NotFound.into()) };
        if io.stdin.is_none() {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        io.stdin_buf.extend_from_slice(data);
        self.flush_stdin(id);
        match self.io.get(id.0) {
            Some(io) if io.stdin.is_some() => Ok(()),
            _ => Err(io::ErrorKind::BrokenPipe.into()),
        }
    }

    pub(super) fn flush_stdin(&mut self, id: ProcId) {
        let Some(io) = self.io.get_mut(id.0) else { return };
        let Some(fd) = io.stdin.as_ref() else { return };
        let raw = fd.as_raw_fd();
        while !io.stdin_buf.is_empty() {
            match spawn::write_nonblocking(fd, &io.stdin_buf) {
                Ok(0) => break,
                Ok(n) => {
                    io.stdin_buf.drain(..n);
                }
                Err(_) => {
                    io.stdin_buf.clear();
                    io.stdin = None;
                    let _ = self.poll.registry().deregister(&mut SourceFd(&raw));
                    return;
                }
            }
        }
        let registry = self.poll.registry();
        if io.stdin_buf.is_empty() {
            let _ = registry.deregister(&mut SourceFd(&raw));
        } else if registry.register(&mut SourceFd(&raw), stdin_token(id), Interest::WRITABLE).is_err() {
            let _ = registry.reregister(&mut SourceFd(&raw), stdin_token(id), Interest::WRITABLE);
        }
    }
}
