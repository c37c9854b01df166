//! The control side of the event loop: requests from the HTTP connections, commands to the
//! core and the replies that wait for its answers, the I/O that follows a group's addition,
//! update or removal, reread, log clearing and stdin.

use std::io;
use std::os::fd::AsRawFd;
use std::path::PathBuf;

use mio::unix::SourceFd;
use mio::Interest;

use super::{stdin_token, Channel, EventLoop, ProcIo};
use crate::config::{Config, LogLevel, ProcessConfig};
use crate::daemon::spawn;
use crate::events::types::Event;
use crate::rpc::api::{self, Reply};
use crate::rpc::faults::{self, RpcError};
use crate::rpc::host::GroupChanges;
use crate::rpc::server::{Answer, ConnRef, Incoming, Server};
use crate::rpc::web::{WebOutcome, WebRequest};
use crate::rpc::xmlrpc::{Fault, Value};
use crate::supervisor::{self, BadCommand, Command, Issued, ProcId, Ticket};

/// Who waits for a deferred reply: the connection, and for a web action the request, whose
/// page is made from the result.
pub struct Waiter {
    conn: ConnRef,
    web: Option<WebRequest>,
}

/// The I/O that the core's commands need, done here.
struct LoopWorld<'a> {
    config: &'a Config,
}

impl supervisor::World for LoopWorld<'_> {
    fn can_run(&mut self, pc: &ProcessConfig) -> Result<(), BadCommand> {
        match spawn::resolve_command(
            &pc.command,
            spawn::search_path(pc, &self.config.supervisord.environment).as_deref(),
        ) {
            Ok(_) => Ok(()),
            Err(spawn::CommandError::NotFound(m)) => Err(BadCommand::NotFound(m)),
            Err(spawn::CommandError::NotExecutable(m)) => Err(BadCommand::NotExecutable(m)),
        }
    }

    fn signal(&mut self, pid: u32, signal: i32) -> Result<(), String> {
        crate::sys::kill(pid, signal, false).map_err(|e| e.to_string())
    }
}

impl EventLoop {
    /// Runs a command of the control plane in the core. What it asks for is performed by the
    /// caller's drain (`perform_actions`), where a later answer also comes out.
    pub(super) fn command(&mut self, command: Command) -> Issued {
        self.tickets += 1;
        let ticket = Ticket(self.tickets);
        let mut world = LoopWorld { config: &self.config };
        match self.sup.command(ticket, command, self.now.mono, self.now.wall, &mut world) {
            Some(answer) => Issued::Now(answer),
            None => Issued::Later(ticket),
        }
    }

    /// The core answered a command that waited: the reply that waits for it goes on (a
    /// multicall runs its next calls) or is sent. A reply whose client has gone is still
    /// carried on (an update must still be applied), then answered to no one.
    pub(super) fn on_answer(&mut self, ticket: Ticket, answer: supervisor::Answer) {
        let Some(i) = self.pending.iter().position(|(p, _)| p.ticket() == ticket) else { return };
        let (pending, waiter) = self.pending.swap_remove(i);
        match api::resume(self, pending, answer) {
            Ok(Reply::Later(p)) => self.pending.push((p, waiter)),
            Ok(Reply::Done(v)) => self.answer_result(waiter, Ok(v)),
            Err(e) => self.answer_result(waiter, Err(e)),
        }
    }

    /// The control servers, bound for this config (and kept from the last loop at a reload):
    /// registered with this loop.
    pub fn set_http(&mut self, mut server: Server) -> io::Result<()> {
        server.register(self.poll.registry())?;
        self.http = Some(server);
        Ok(())
    }

    /// Takes the control servers out of this loop (at its end), for the next one or to close.
    pub fn take_http(&mut self) -> Option<Server> {
        let mut server = self.http.take()?;
        server.deregister(self.poll.registry());
        Some(server)
    }

    /// Readiness of a listener or a connection.
    pub(super) fn on_http_event(&mut self, event: &mio::event::Event) {
        if let Some(server) = &mut self.http {
            server.on_event(self.poll.registry(), event, self.now.mono, self.now.wall);
        }
    }

    /// Answers the requests the connections made (bounded per wake-up; the rest wait for the
    /// next round, which does not sleep while any are left), ends the connections past their
    /// time, and logs what the limits dropped. True if a request was served.
    pub(super) fn serve_http(&mut self) -> bool {
        let Some(server) = &mut self.http else { return false };
        let now = self.now.mono;
        server.expire(self.poll.registry(), now);
        server.resume(self.poll.registry(), now, self.now.wall);
        for (level, line) in server.report(now) {
            self.log.log(level, &line);
        }
        let mut served = false;
        for _ in 0..1024 {
            let Some((conn, request)) = self.http.as_mut().and_then(Server::next_request) else { break };
            served = true;
            match request {
                Incoming::XmlRpc(body) => match api::handle_request(self, &body) {
                    Some(Ok(Reply::Done(v))) => self.answer(conn, Answer::Xml(api::encode(&Ok(v)))),
                    Some(Ok(Reply::Later(p))) => self.pending.push((p, Waiter { conn, web: None })),
                    Some(Err(e)) => self.answer(conn, Answer::Xml(api::encode(&Err(e)))),
                    None => self.answer(conn, Answer::BadRequest),
                },
                Incoming::Log(level, message) => self.log.log(level, &message),
                Incoming::Web(web) => match crate::rpc::web::handle(self, &web) {
                    WebOutcome::Now(r) => self.answer(conn, Answer::Web(r)),
                    // Completed by poll_pending like a waiting XML-RPC call.
                    WebOutcome::Later(p) => self.pending.push((p, Waiter { conn, web: Some(web) })),
                },
                Incoming::Tail { namespec, channel } => {
                    let path = match namespec {
                        None => self.log.path(),
                        Some(name) => self.tail_path(&name, &channel),
                    };
                    self.answer(conn, Answer::Tail(path));
                }
                Incoming::MergedTail { names, channel } => {
                    let found = crate::rpc::mergedtail::resolve(self, &names, channel.as_deref());
                    self.answer(conn, Answer::MergedTail(found));
                }
            }
            self.perform_actions();
        }
        served
    }

    /// After everything else a wake-up did: tails at the end of their file look for more.
    pub(super) fn pump_tails(&mut self) {
        if let Some(server) = &mut self.http {
            server.pump_tails(self.poll.registry(), self.now.mono, self.now.wall);
        }
    }

    fn answer(&mut self, conn: ConnRef, answer: Answer) {
        if let Some(server) = &mut self.http {
            server.answer(self.poll.registry(), conn, answer, self.now.mono, self.now.wall);
        }
    }

    fn answer_result(&mut self, waiter: Waiter, result: Result<Value, RpcError>) {
        let answer = match &waiter.web {
            Some(req) => Answer::Web(crate::rpc::web::finish(
                req,
                result.map_err(|e| Fault { code: e.code, string: e.fault_string() }),
            )),
            None => Answer::Xml(api::encode(&result)),
        };
        self.answer(waiter.conn, answer);
    }

    /// At the end of this loop (a reload): replies still waiting get SHUTDOWN_STATE, as a call
    /// made now would.
    pub(super) fn abandon_pending(&mut self) {
        for (_, waiter) in std::mem::take(&mut self.pending) {
            self.answer_result(waiter, Err(RpcError::new(faults::SHUTDOWN_STATE)));
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

    /// Re-reads the config into `stored` and compares it with the running groups:
    /// (added, changed, removed) group names in Supervisor's order: added and changed as the
    /// config has them (by priority, then name), removed as they were activated.
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
        let removed: Vec<String> = self
            .sup
            .groups()
            .iter()
            .filter(|g| !config.groups.iter().any(|n| n.name == g.config.name))
            .map(|g| g.config.name.clone())
            .collect();
        // An update adds its groups one request at a time: grow the fd table once for all
        // that may come (the processes now and every one of the new config).
        let coming: usize = config.groups.iter().map(|g| g.processes.len()).sum();
        self.reserve_fds(self.sup.processes().count() + coming);
        self.stored = config;
        Ok((added, changed, removed))
    }

    /// A group became active: its fcgi socket, its listener pool and its processes' logs (before
    /// any of them spawns, which the core asks for after this), then the event.
    pub(super) fn on_group_added(&mut self, name: &str) {
        let Some(group) = self.sup.group(name).cloned() else { return };
        // A bad socket is reported now; its processes then fail to spawn with the message.
        self.check_fcgi_socket(name);
        self.bind_listen_sockets(name);
        if matches!(group.config.kind, crate::config::GroupKind::EventListener { .. }) {
            self.add_pool(&group.config);
        }
        for id in group.members {
            self.open_logs(id);
        }
        for pc in group.config.processes.iter().filter(|pc| pc.memory_limit > 0) {
            let msg = format!(
                "{}: memory_limit ({} bytes) is enforced by reading the RSS of its process tree every 5 s (no cgroup)",
                pc.name, pc.memory_limit
            );
            self.log.log(LogLevel::Info, &msg);
        }
        self.reserve_fds_for_processes();
        self.log.log(LogLevel::Debug, &format!("added process group {name}"));
        self.notify(Event::group_added(name));
    }

    /// A process's logs, opened to check they can be (held open only while output flows).
    fn open_logs(&mut self, id: ProcId) {
        let Some(pc) = self.sup.process(id).map(|p| p.config.clone()) else { return };
        if self.io.len() <= id.0 {
            self.io.resize_with(id.0 + 1, ProcIo::default);
        }
        let logs = [self.open_log(&pc, Channel::Stdout), self.open_log(&pc, Channel::Stderr)];
        self.io[id.0] = ProcIo { logs, ..ProcIo::default() };
    }

    /// What was open for processes that are gone: their pipes and logs.
    fn close_processes(&mut self, ids: &[ProcId]) {
        for id in ids {
            for ch in [Channel::Stdout, Channel::Stderr] {
                self.close_pipe(*id, ch);
            }
            if let Some(io) = self.io.get_mut(id.0) {
                *io = ProcIo::default();
            }
        }
    }

    /// An update replaced processes of a group: the gone ones are closed, the fresh ones get
    /// their logs (before they spawn, which the core asks for after this); a changed pool
    /// starts afresh (its listeners register again as they spawn).
    pub(super) fn on_group_replaced(&mut self, name: &str, fresh: &[ProcId], dropped: &[ProcId]) {
        if let Some(config) = self.sup.group(name).map(|g| g.config.clone()) {
            if matches!(config.kind, crate::config::GroupKind::EventListener { .. }) {
                self.remove_pool(name);
                self.add_pool(&config);
            }
        }
        self.bind_listen_sockets(name);
        self.close_processes(dropped);
        for id in fresh {
            self.open_logs(*id);
        }
        self.reserve_fds_for_processes();
    }

    /// A group was removed: its sockets, pool, pipes and logs are closed, then the event.
    pub(super) fn on_group_removed(&mut self, name: &str, members: &[ProcId]) {
        self.close_fcgi_socket(name);
        self.close_listen_sockets(name);
        self.remove_pool(name);
        self.close_processes(members);
        self.log.log(LogLevel::Debug, &format!("removed process group {name}"));
        self.notify(Event::group_removed(name));
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
