//! The loop as the control plane's [`Host`]: the XML-RPC methods and the web pages reach the
//! daemon only through these calls.

use std::io;
use std::path::PathBuf;
use std::time::{Instant, SystemTime};

use super::EventLoop;
use crate::config::{Channel, GroupConfig, LogLevel};
use crate::events::types::Event;
use crate::rpc::host::{GroupChanges, Host};
use crate::supervisor::{Command, Issued, ProcId, Supervisor};

impl Host for EventLoop {
    fn sup(&self) -> &Supervisor {
        &self.sup
    }

    fn command(&mut self, command: Command) -> Issued {
        EventLoop::command(self, command)
    }

    fn supervisor_interface(&self) -> bool {
        self.config.rpcinterface_supervisor
    }

    fn identifier(&self) -> &str {
        &self.config.supervisord.identifier
    }

    fn stored_groups(&self) -> &[GroupConfig] {
        &self.stored.groups
    }

    fn log(&mut self, level: LogLevel, message: &str) {
        self.log.log(level, message);
    }

    fn main_log_path(&self) -> Option<PathBuf> {
        self.log.path()
    }

    fn clear_main_log(&mut self) -> io::Result<()> {
        self.log.clear()
    }

    fn rotate_main_log(&mut self) -> io::Result<()> {
        self.log.rotate()
    }

    fn reopen_logs(&mut self) {
        EventLoop::reopen_logs(self);
    }

    fn reopen_process_logs(&mut self, id: ProcId) -> io::Result<()> {
        EventLoop::reopen_process_logs(self, id)
    }

    fn rotate_process_logs(&mut self, id: ProcId) -> io::Result<()> {
        EventLoop::rotate_process_logs(self, id)
    }

    fn clear_process_logs(&mut self, id: ProcId) -> io::Result<()> {
        self.clear_logs(id)
    }

    fn log_path(&self, id: ProcId, ch: Channel) -> Option<PathBuf> {
        EventLoop::log_path(self, id, ch)
    }

    fn readable_log_path(&mut self, id: ProcId, ch: Channel) -> Option<PathBuf> {
        EventLoop::readable_log_path(self, id, ch)
    }

    fn send_stdin(&mut self, id: ProcId, data: &[u8]) -> io::Result<()> {
        EventLoop::send_stdin(self, id, data)
    }

    fn notify(&mut self, event: Event) {
        EventLoop::notify(self, event);
    }

    fn reread(&mut self) -> Result<GroupChanges, Vec<String>> {
        EventLoop::reread(self)
    }

    fn reload(&mut self, now: Instant, wall: SystemTime) -> Result<(), Vec<String>> {
        EventLoop::reload(self, now, wall)
    }

    fn upgrade(&mut self) -> Result<crate::supervisor::Ticket, String> {
        self.tickets += 1;
        let ticket = crate::supervisor::Ticket(self.tickets);
        self.begin_upgrade(Some(ticket))?;
        Ok(ticket)
    }

    fn last_upgrade(&self) -> (u64, Option<(bool, String)>) {
        let r = self.upgrade_record();
        (r.generation, r.last.clone())
    }
}
