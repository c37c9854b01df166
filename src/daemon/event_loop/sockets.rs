//! The sockets the daemon holds for its programs. An `[fcgi-program:x]` socket lives as
//! Supervisor's does (its `SocketManager`): opened by the first spawn of a process of the
//! group, closed when the last process of the group has exited (so a client is refused, not
//! left waiting for a program that is not there), and opened again by the next spawn.

use std::os::fd::OwnedFd;

use super::EventLoop;
use crate::config::{GroupKind, Listen, LogLevel, ProcessConfig};
use crate::supervisor::ProcId;

/// The `listen=` sockets of one program of a group, in the order of its addresses.
pub(super) struct HeldListen {
    addrs: Vec<Listen>,
    fds: Vec<OwnedFd>,
}

impl HeldListen {
    pub(super) fn new(addrs: Vec<Listen>, fds: Vec<OwnedFd>) -> HeldListen {
        HeldListen { addrs, fds }
    }

    pub(super) fn raw_fds(&self) -> Vec<std::os::fd::RawFd> {
        self.fds.iter().map(std::os::fd::AsRawFd::as_raw_fd).collect()
    }
}

/// Where the `listen=` sockets of a program of a group are held: (group, program).
pub(super) type ListenKey = (String, String);

impl EventLoop {
    /// A group was added: its fcgi socket is created to find a bad one now, and closed again
    /// until a process starts, as Supervisor does at group creation (its first reference is
    /// dropped at once).
    pub(super) fn check_fcgi_socket(&mut self, group: &str) {
        // Held already: taken over from the daemon before an upgrade, with processes using it.
        if self.fcgi_sockets.contains_key(group) {
            return;
        }
        if self.open_fcgi_socket(group).is_ok() {
            self.close_fcgi_socket(group);
        }
    }

    /// The fcgi socket for a spawn of a process of `group` (None for other groups), opened if
    /// it is closed. The error is the spawn's error.
    pub(super) fn fcgi_socket_for(&mut self, group: &str) -> Result<Option<OwnedFd>, String> {
        let Some(GroupKind::Fcgi { socket_url, .. }) = self.sup.group(group).map(|g| &g.config.kind) else {
            return Ok(None);
        };
        let url = socket_url.clone();
        // A socket of an earlier config of the group (an update changed the URL) is not this one.
        if self.fcgi_sockets.get(group).is_some_and(|(held, _)| *held != url) {
            self.close_fcgi_socket(group);
        }
        if !self.fcgi_sockets.contains_key(group) {
            self.open_fcgi_socket(group)?;
        }
        match self.fcgi_sockets.get(group) {
            Some((_, fd)) => fd.try_clone().map(Some).map_err(|e| format!("Could not use FastCGI socket {url}: {e}")),
            None => Err(format!("FastCGI socket {url} could not be created")),
        }
    }

    /// A process changed state: when no process of its fcgi group is left with a child (or
    /// one on its way), the group's socket is closed. Supervisor closes it when the last
    /// process is reaped, or its spawn failed; the unix socket's file stays, so a connect is
    /// refused (ECONNREFUSED) there too.
    pub(super) fn release_idle_fcgi_socket(&mut self, id: ProcId) {
        let Some(group) = self.sup.process(id).map(|p| p.group.clone()) else { return };
        if !self.fcgi_sockets.contains_key(&group) {
            return;
        }
        let Some(members) = self.sup.group(&group).map(|g| g.members.clone()) else { return };
        let live = members
            .iter()
            .any(|m| self.sup.process(*m).is_some_and(|p| p.pid != 0) || self.in_flight.iter().any(|(i, _)| i == m));
        if !live {
            self.close_fcgi_socket(&group);
        }
    }

    fn open_fcgi_socket(&mut self, group: &str) -> Result<(), String> {
        let Some(GroupKind::Fcgi { socket, socket_url, backlog }) =
            self.sup.group(group).map(|g| g.config.kind.clone())
        else {
            return Ok(());
        };
        // Supervisor's log lines, which say when clients can connect.
        self.log.log(LogLevel::Info, &format!("Creating socket {socket_url}"));
        match crate::daemon::fcgi::create(&socket, &socket_url, backlog) {
            Ok(fd) => {
                self.fcgi_sockets.insert(group.to_string(), (socket_url, fd));
                Ok(())
            }
            Err(e) => {
                self.log.log(LogLevel::Error, &e);
                Err(e)
            }
        }
    }

    /// Closes the group's fcgi socket, if open (at remove too: the group is gone).
    pub(super) fn close_fcgi_socket(&mut self, group: &str) {
        if let Some((url, fd)) = self.fcgi_sockets.remove(group) {
            drop(fd);
            self.log.log(LogLevel::Info, &format!("Closing socket {url}"));
        }
    }
}

impl EventLoop {
    /// A group was added or updated: the `listen=` sockets of each of its programs are bound,
    /// those already held for the same addresses kept (an update that does not change them
    /// leaves clients queued), and those of programs that no longer listen closed.
    pub(super) fn bind_listen_sockets(&mut self, group: &str) {
        let Some(configs) = self.sup.group(group).map(|g| g.config.processes.clone()) else { return };
        let wanted: Vec<&ProcessConfig> = configs.iter().map(|pc| &**pc).filter(|pc| !pc.listen.is_empty()).collect();
        self.listen_sockets.retain(|(g, program), held| {
            g != group || wanted.iter().any(|pc| pc.program == *program && pc.listen == held.addrs)
        });
        for pc in wanted {
            let key = (group.to_string(), pc.program.clone());
            if !self.listen_sockets.contains_key(&key) {
                // A failure is logged; the program's spawns then try again and fail with it.
                let _ = self.bind_listen(key, pc);
            }
        }
    }

    /// A group was removed: its `listen=` sockets are closed (a unix socket's file stays, as
    /// an fcgi socket's does; the next bind replaces it).
    pub(super) fn close_listen_sockets(&mut self, group: &str) {
        self.listen_sockets.retain(|(g, _), _| g != group);
    }

    /// The `listen=` sockets for a spawn of `pc` in `group`, with their names (bound now if
    /// an earlier bind failed). The error is the spawn's error.
    pub(super) fn listen_fds_for(&mut self, group: &str, pc: &ProcessConfig) -> Result<Vec<(String, OwnedFd)>, String> {
        if pc.listen.is_empty() {
            return Ok(Vec::new());
        }
        let key = (group.to_string(), pc.program.clone());
        if self.listen_sockets.get(&key).is_none_or(|held| held.addrs != pc.listen) {
            self.bind_listen(key.clone(), pc)?;
        }
        let held = self.listen_sockets.get(&key).ok_or_else(|| format!("{}: no listen sockets", pc.name))?;
        held.addrs
            .iter()
            .zip(&held.fds)
            .map(|(l, fd)| {
                let fd =
                    fd.try_clone().map_err(|e| format!("cannot pass the socket {} to {}: {e}", l.addr, pc.name))?;
                Ok((l.name.clone(), fd))
            })
            .collect()
    }

    fn bind_listen(&mut self, key: ListenKey, pc: &ProcessConfig) -> Result<(), String> {
        // A unix socket's file belongs to the program's user, who may have to hand it on.
        let owner = pc.user.as_ref().filter(|_| crate::sys::geteuid() == 0).map(|u| (u.uid, u.gid));
        let mut fds = Vec::with_capacity(pc.listen.len());
        for l in &pc.listen {
            match crate::daemon::fcgi::bind_listen(&l.addr, owner) {
                Ok(fd) => fds.push(fd),
                Err(e) => {
                    let e = format!("{}: {e} ({})", pc.name, pc.span);
                    self.log.log(LogLevel::Error, &e);
                    return Err(e);
                }
            }
        }
        let addrs: Vec<String> = pc.listen.iter().map(|l| l.addr.to_string()).collect();
        self.log.log(LogLevel::Info, &format!("{}: listening on {}", pc.program, addrs.join(", ")));
        self.listen_sockets.insert(key, HeldListen { addrs: pc.listen.clone(), fds });
        Ok(())
    }
}
