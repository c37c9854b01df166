//! The loop as the control plane's [`Host`]: the XML-RPC methods and the web pages reach the
//! daemon only through these calls.

use std::io;
use std::path::PathBuf;
use std::time::{Instant, SystemTime};

use super::EventLoop;
use crate::config::{Channel, GroupConfig, LogLevel};
use crate::daemon::spawn::CommandError;
use crate::events::types::Event;
use crate::rpc::host::{BadCommand, GroupChanges, Host};
use crate::supervisor::{ProcId, RemoveError, Supervisor};

impl Host for EventLoop {
    fn sup(&self) -> &Supervisor {
        &self.sup
    }

    fn sup_mut(&mut self) -> &mut Supervisor {
        &mut self.sup
    }

    fn perform_actions(&mut self) {
        EventLoop::perform_actions(self);
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

    fn check_command(&self, id: ProcId) -> Result<(), BadCommand> {
        EventLoop::check_command(self, id).map_err(|e| match e {
            CommandError::NotFound(m) => BadCommand::NotFound(m),
            CommandError::NotExecutable(m) => BadCommand::NotExecutable(m),
        })
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

    fn add_group(&mut self, group: GroupConfig) {
        EventLoop::add_group(self, group);
    }

    fn apply_group_update(&mut self, config: GroupConfig, restart: &[String]) {
        EventLoop::apply_group_update(self, config, restart);
    }

    fn remove_group(&mut self, name: &str) -> Result<(), RemoveError> {
        EventLoop::remove_group(self, name)
    }
}
