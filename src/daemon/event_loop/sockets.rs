//! The sockets the daemon holds for its programs. An `[fcgi-program:x]` socket lives as
//! Supervisor's does (its `SocketManager`): opened by the first spawn of a process of the
//! group, closed when the last process of the group has exited (so a client is refused, not
//! left waiting for a program that is not there), and opened again by the next spawn.

use std::os::fd::OwnedFd;

use super::EventLoop;
use crate::config::{GroupKind, LogLevel};
use crate::supervisor::ProcId;

impl EventLoop {
    /// A group was added: its fcgi socket is created to find a bad one now, and closed again
    /// until a process starts, as Supervisor does at group creation (its first reference is
    /// dropped at once).
    pub(super) fn check_fcgi_socket(&mut self, group: &str) {
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
