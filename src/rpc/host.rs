//! What the XML-RPC methods and the web pages need from the daemon, and nothing more. The
//! daemon's event loop implements [`Host`], so `rpc` does not depend on `daemon`.

use std::io;
use std::path::PathBuf;
use std::time::{Instant, SystemTime};

use crate::config::{Channel, GroupConfig, LogLevel};
use crate::events::types::Event;
use crate::supervisor::{ProcId, RemoveError, Supervisor};

/// Group names (added, changed, removed), as `reloadConfig` reports them.
pub type GroupChanges = (Vec<String>, Vec<String>, Vec<String>);

/// Why a process's command cannot be run, with the message startProcess answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BadCommand {
    /// The program is not found (NO_FILE).
    NotFound(String),
    /// A directory, not executable, not runnable by us, or not parsable (NOT_EXECUTABLE).
    NotExecutable(String),
}

/// The daemon as the control plane sees it. Every call runs on the loop thread, which owns
/// the state; a method that changes the core's state is followed by `perform_actions`.
pub trait Host {
    /// The process table, the groups and the daemon's mood.
    fn sup(&self) -> &Supervisor;
    /// The same, to feed inputs to the core.
    fn sup_mut(&mut self) -> &mut Supervisor;
    /// Carries out the actions the core has queued (spawns, kills, log lines, events).
    fn perform_actions(&mut self);
    /// Whether `[rpcinterface:supervisor]` is configured.
    fn supervisor_interface(&self) -> bool;
    /// The `identifier=` of the running configuration.
    fn identifier(&self) -> &str;
    /// The groups of the configuration last read (at start or by `reread`).
    fn stored_groups(&self) -> &[GroupConfig];
    /// Writes a line to the main log.
    fn log(&mut self, level: LogLevel, message: &str);
    /// The main log's path, if it is written to a file.
    fn main_log_path(&self) -> Option<PathBuf>;
    /// Empties the main log.
    fn clear_main_log(&mut self) -> io::Result<()>;
    /// Rotates the main log now.
    fn rotate_main_log(&mut self) -> io::Result<()>;
    /// Reopens the main log and every process log at their paths; failures are logged.
    fn reopen_logs(&mut self);
    /// Reopens both logs of a process at their paths.
    fn reopen_process_logs(&mut self, id: ProcId) -> io::Result<()>;
    /// Rotates both logs of a process now.
    fn rotate_process_logs(&mut self, id: ProcId) -> io::Result<()>;
    /// Clears both logs of a process (backups are kept).
    fn clear_process_logs(&mut self, id: ProcId) -> io::Result<()>;
    /// The path of a process's log of this channel, if it has one.
    fn log_path(&self, id: ProcId, ch: Channel) -> Option<PathBuf>;
    /// The same, created empty if not written yet; None unless the file exists.
    fn readable_log_path(&mut self, id: ProcId, ch: Channel) -> Option<PathBuf>;
    /// Checks that a process's command can be found and run.
    fn check_command(&self, id: ProcId) -> Result<(), BadCommand>;
    /// Queues bytes for a process's stdin; an error if it has no open stdin.
    fn send_stdin(&mut self, id: ProcId, data: &[u8]) -> io::Result<()>;
    /// Offers an event to the event listener pools.
    fn notify(&mut self, event: Event);
    /// Reads the configuration again into the stored groups and compares it with the running ones.
    fn reread(&mut self) -> Result<GroupChanges, Vec<String>>;
    /// Reads the configuration again and, if it is valid, stops everything to apply it.
    fn reload(&mut self, now: Instant, wall: SystemTime) -> Result<(), Vec<String>>;
    /// Activates a group (its logs, sockets and listener pool); nothing if it is active already.
    fn add_group(&mut self, group: GroupConfig);
    /// Applies a changed group once its changed processes are stopped, starting `restart` again.
    fn apply_group_update(&mut self, config: GroupConfig, restart: &[String]);
    /// Removes a stopped group and closes its logs.
    fn remove_group(&mut self, name: &str) -> Result<(), RemoveError>;
}
