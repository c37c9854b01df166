//! `minisv ctl`: a supervisorctl 4.3 work-alike (reference 0.2, 5).
//!
//! `main(args)` parses the options, reads `[supervisorctl]`, runs the action given on the command
//! line and/or the interactive shell, and returns the exit status supervisorctl would.

pub mod client;
pub mod commands;
pub mod mergedtail;
pub mod options;
pub mod output;
pub mod settings;
pub mod shell;
pub mod term;
pub mod transport;

use std::io::Write;

use client::{CallError, CallResult, Client};
use settings::CtlSettings;

/// supervisorctl's LSBInitExitStatuses.
pub mod exit {
    pub const SUCCESS: i32 = 0;
    pub const GENERIC: i32 = 1;
    pub const INVALID_ARGS: i32 = 2;
    pub const UNIMPLEMENTED_FEATURE: i32 = 3;
    pub const INSUFFICIENT_PRIVILEGES: i32 = 4;
    pub const NOT_INSTALLED: i32 = 5;
    pub const NOT_RUNNING: i32 = 7;
    /// LSBStatusExitStatuses, used by `status` only.
    pub const STATUS_NOT_RUNNING: i32 = 3;
    pub const STATUS_UNKNOWN: i32 = 4;
}

/// The API version the client speaks (`supervisor.getVersion()`).
pub const API_VERSION: &str = "3.0";

/// The state of one `minisv ctl` run: settings in effect, the connection, the exit status so far.
pub struct Ctl {
    pub settings: CtlSettings,
    /// Whether questions may be asked (the shell, or `-i`).
    pub interactive: bool,
    pub client: Client,
    pub exitstatus: i32,
    /// Set by `quit`/`exit`/EOF to leave the shell.
    pub quit: bool,
    pub input: shell::Input,
    out: Box<dyn Write>,
}

impl Ctl {
    pub fn new(settings: CtlSettings, interactive: bool, out: Box<dyn Write>) -> Ctl {
        let client = Client::new(&settings.serverurl, settings.username.as_deref(), settings.password.as_deref());
        Ctl { settings, interactive, client, exitstatus: exit::SUCCESS, quit: false, input: shell::Input::new(), out }
    }

    /// supervisorctl's `output`: the message and a newline, flushed.
    pub fn output(&mut self, msg: &str) {
        let _ = self.out.write_all(msg.as_bytes());
        let _ = self.out.write_all(b"\n");
        let _ = self.out.flush();
    }

    /// Raw bytes to stdout (streamed log data).
    pub fn write_raw(&mut self, data: &[u8]) {
        let _ = self.out.write_all(data);
        let _ = self.out.flush();
    }

    /// Points the client at another serverurl (`open`) or new credentials (after a 401 prompt).
    pub fn reconnect(&mut self) {
        self.client =
            Client::new(&self.settings.serverurl, self.settings.username.as_deref(), self.settings.password.as_deref());
    }

    /// `set_exitstatus_from_xmlrpc_fault`: the last non-ignored result wins.
    pub fn set_exitstatus_from_fault(&mut self, code: i32, ignored: Option<i32>) {
        self.exitstatus = exitstatus_after_fault(self.exitstatus, code, ignored);
    }

    /// supervisorctl's `upcheck`: `Ok(false)` after printing why the server cannot be used.
    pub fn upcheck(&mut self) -> CallResult<bool> {
        match self.client.get_version() {
            Ok(v) if v == API_VERSION => Ok(true),
            Ok(v) => {
                self.output(&format!(
                    "Sorry, this version of supervisorctl expects to talk to a server with API version {API_VERSION}, but the remote version is {v}."
                ));
                self.exitstatus = exit::NOT_INSTALLED;
                Ok(false)
            }
            Err(e) if e.fault_code() == Some(client::faults::UNKNOWN_METHOD) => {
                self.output(
                    "Sorry, supervisord responded but did not recognize the supervisor namespace commands that \
                     supervisorctl uses to control it.  Please check that the [rpcinterface:supervisor] section is \
                     enabled in the configuration file (see sample.conf).",
                );
                self.exitstatus = exit::UNIMPLEMENTED_FEATURE;
                Ok(false)
            }
            Err(e) if self.report_unreachable(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// When no daemon answers (the connect itself failed), prints the one line every command
    /// prints, sets the exit status every command but `status` exits with, and says `true`.
    pub fn report_unreachable(&mut self, err: &CallError) -> bool {
        let CallError::Connect { err: io, .. } = err else {
            return false;
        };
        self.exitstatus = exit_when_unreachable(io.raw_os_error());
        self.output(&format!("minisv ctl: {err}"));
        true
    }

    /// Runs one command line, as `Controller.onecmd`: unknown syntax, the 401 retry, and one clear
    /// line for any error the command did not handle itself (no Python-style `error:` lines).
    pub fn onecmd(&mut self, line: &str) {
        for attempt in 0..5 {
            let Some(err) = self.onecmd_once(line) else {
                return;
            };
            if err.is_unauthorized() {
                self.output("Server requires authentication");
                if self.interactive && attempt < 4 {
                    let Some(user) = self.input.ask("Username:") else {
                        break;
                    };
                    let pass = self.input.ask_password("Password:").unwrap_or_default();
                    self.output("");
                    self.settings.username = Some(user);
                    self.settings.password = Some(pass);
                    self.reconnect();
                    continue;
                }
                // One line only (quirk Q9: supervisorctl repeats the command and adds an error: line).
                self.exitstatus = exit::GENERIC;
                return;
            }
            if self.report_unreachable(&err) {
                return;
            }
            self.output(&format!("minisv ctl: {err}"));
            self.exitstatus = exit::GENERIC;
            return;
        }
        self.exitstatus = exit::GENERIC;
    }

    fn onecmd_once(&mut self, line: &str) -> Option<CallError> {
        let (cmd, arg, line) = shell::parseline(line);
        if line.is_empty() {
            return None;
        }
        let Some(cmd) = cmd.filter(|c| !c.is_empty()) else {
            self.default(&line);
            return None;
        };
        match commands::find(&cmd) {
            Some(c) => (c.run)(self, &arg).err(),
            None => {
                self.default(&line);
                None
            }
        }
    }

    fn default(&mut self, line: &str) {
        self.output(&format!("*** Unknown syntax: {line}"));
        self.exitstatus = exit::GENERIC;
    }
}

/// The exit status after one result code (`set_exitstatus_from_xmlrpc_fault`): SUCCESS and the
/// ignored code leave it alone, dead-program faults give 7, anything else 1.
pub fn exitstatus_after_fault(current: i32, code: i32, ignored: Option<i32>) -> i32 {
    use client::faults::*;
    if code == SUCCESS || Some(code) == ignored {
        current
    } else if matches!(code, SPAWN_ERROR | ABNORMAL_TERMINATION | NOT_RUNNING) {
        exit::NOT_RUNNING
    } else {
        exit::GENERIC
    }
}

/// The exit status of any command but `status` (which says 4, "unknown", as supervisorctl does)
/// when no daemon answers: 7, LSB's "program is not running", whatever the command and however the
/// connect failed, except 4, LSB's "insufficient privilege", when the socket's permissions refused
/// us (a daemon may well be running). supervisorctl says 7 or 4 only for the commands that check
/// the server first, and 4 for a refused connection; minisv-ctl(1) has the table.
pub fn exit_when_unreachable(errno: Option<i32>) -> i32 {
    match errno {
        Some(libc::EACCES | libc::EPERM) => exit::INSUFFICIENT_PRIVILEGES,
        _ => exit::NOT_RUNNING,
    }
}

/// `minisv ctl [options] [action [arguments]]`; `args` are the words after `ctl`.
pub fn main(args: Vec<String>) -> i32 {
    let argv0 = std::env::args().next().unwrap_or_else(|| "minisv".into());
    let opts = match options::parse(&args) {
        Ok(options::Parsed::Help) => {
            print!("{}", options::USAGE);
            return 0;
        }
        Ok(options::Parsed::Run(o)) => o,
        Err(msg) => return options::usage_error(&msg),
    };
    let file = match &opts.configuration {
        Some(c) => Some(std::path::PathBuf::from(c)),
        None => settings::search_paths(&argv0).into_iter().find(|p| p.exists()),
    };
    let mut s = match &file {
        Some(path) => match settings::load(path) {
            Ok(s) => s,
            Err(msg) => return options::usage_error(&msg),
        },
        None => CtlSettings::default(),
    };
    if let Some(u) = &opts.serverurl {
        s.serverurl = u.clone();
    }
    if opts.username.is_some() {
        s.username = opts.username.clone();
    }
    if opts.password.is_some() {
        s.password = opts.password.clone();
    }
    if let Some(h) = &opts.history_file {
        s.history_file = Some(std::path::PathBuf::from(h));
    }
    let shell_wanted = opts.args.is_empty() || opts.interactive;
    let mut ctl = Ctl::new(s, shell_wanted, Box::new(std::io::stdout()));
    if !opts.args.is_empty() {
        ctl.onecmd(&opts.args.join(" "));
        if !opts.interactive {
            return ctl.exitstatus;
        }
    }
    // Quirk Q10 fixed: `-i` with an action runs the action, then the shell.
    shell::run(&mut ctl);
    0
}

#[cfg(test)]
mod tests {
    use super::client::faults::*;
    use super::*;

    #[test]
    fn exit_status_accumulates_like_supervisorctl() {
        assert_eq!(exitstatus_after_fault(0, SUCCESS, None), 0);
        assert_eq!(exitstatus_after_fault(0, ALREADY_STARTED, Some(ALREADY_STARTED)), 0);
        assert_eq!(exitstatus_after_fault(0, SPAWN_ERROR, Some(ALREADY_STARTED)), 7);
        assert_eq!(exitstatus_after_fault(7, BAD_NAME, None), 1);
        // The last non-ignored result wins, even when it is "better".
        assert_eq!(exitstatus_after_fault(1, NOT_RUNNING, None), 7);
        assert_eq!(exitstatus_after_fault(7, SUCCESS, None), 7);
        assert_eq!(exitstatus_after_fault(0, NOT_RUNNING, Some(NOT_RUNNING)), 0);
    }

    #[test]
    fn no_daemon_is_not_running_unless_permissions_refused_us() {
        assert_eq!(exit_when_unreachable(Some(libc::ENOENT)), exit::NOT_RUNNING);
        assert_eq!(exit_when_unreachable(Some(libc::ECONNREFUSED)), exit::NOT_RUNNING);
        assert_eq!(exit_when_unreachable(None), exit::NOT_RUNNING);
        assert_eq!(exit_when_unreachable(Some(libc::EACCES)), exit::INSUFFICIENT_PRIVILEGES);
        assert_eq!(exit_when_unreachable(Some(libc::EPERM)), exit::INSUFFICIENT_PRIVILEGES);
    }
}
