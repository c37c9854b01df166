//! What the XML-RPC methods and the web pages need from the daemon, and nothing more. The
//! daemon's event loop implements [`Host`], so `rpc` does not depend on `daemon`.

use std::io;
use std::path::PathBuf;
use std::time::{Instant, SystemTime};

use crate::config::{Channel, GroupConfig, LogLevel};
use crate::events::types::Event;
use crate::supervisor::{Command, Issued, ProcId, Supervisor};

/// Group names (added, changed, removed), as `reloadConfig` reports them.
pub type GroupChanges = (Vec<String>, Vec<String>, Vec<String>);

/// The daemon as the control plane sees it. Every call runs on the loop thread, which owns
/// the state. The control plane reads the core, and changes it only by commands; the loop
/// performs what follows once the request is decoded.
pub trait Host {
    /// The process table, the groups and the daemon's mood (to read).
    fn sup(&self) -> &Supervisor;
    /// Runs a command in the core: its answer, or the ticket its answer will come with.
    fn command(&mut self, command: Command) -> Issued;
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
    /// Queues bytes for a process's stdin; an error if it has no open stdin.
    fn send_stdin(&mut self, id: ProcId, data: &[u8]) -> io::Result<()>;
    /// Offers an event to the event listener pools.
    fn notify(&mut self, event: Event);
    /// Reads the configuration again into the stored groups and compares it with the running ones.
    fn reread(&mut self) -> Result<GroupChanges, Vec<String>>;
    /// Reads the configuration again and, if it is valid, stops everything to apply it.
    fn reload(&mut self, now: Instant, wall: SystemTime) -> Result<(), Vec<String>>;
    /// Starts an upgrade in place: the answer comes with the ticket once the new binary has
    /// passed its pre-flight run (then it is executed) or failed it; Err is why it cannot start.
    fn upgrade(&mut self) -> Result<crate::supervisor::Ticket, String>;
    /// How many upgrades this daemon has been through, and the last one's outcome.
    fn last_upgrade(&self) -> (u64, Option<(bool, String)>);
}
