//! The one thread that owns all state: a mio loop over the signal self-pipe, the children's
//! pipes and the control channel. It sleeps in `poll` until the earliest deadline of the core,
//! or forever when there is none, so an idle daemon makes no wakeups.

use std::collections::{HashMap, VecDeque};
use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use signal_hook::iterator::backend::SignalDelivery;
use signal_hook::iterator::exfiltrator::SignalOnly;

use super::compress;
use super::logfile::LogFile;
use super::mainlog::MainLog;
use super::notify::{self, Notice, NotifySocket};
use super::probe::{Outcome, Probes};
use super::spawn::{self, SpawnPlan};
use super::state_file::StateFile;
use crate::config::{Channel, Config, LogFile as LogSetting, LogLevel, ProcessConfig};
use crate::events::capture::Capture;
use crate::events::pool::Pools;
use crate::events::tick::Ticker;
use crate::events::types::Event;
use crate::rpc::api::Pending;
use crate::rpc::server::Server;
use crate::supervisor::{Action, ExitInfo, Input, Mood, ProcId, Supervisor};
use crate::sys;

mod control;
mod events;
mod host;
pub mod output;
mod sockets;
mod timers;
mod upgrade;

pub use upgrade::UpgradeRecord;

use timers::{Clock, Timer, Timers};

pub type Signals = SignalDelivery<UnixStream, SignalOnly>;

/// The signals the daemon acts on (2.9). Each has a handler, so even as PID 1 none is dropped.
pub const HANDLED_SIGNALS: &[i32] =
    &[libc::SIGTERM, libc::SIGINT, libc::SIGQUIT, libc::SIGHUP, libc::SIGUSR1, libc::SIGUSR2, libc::SIGCHLD];

const SIGNAL_TOKEN: Token = Token(0);
/// How often the memory of programs with `memory_limit=` is read (while one runs).
const MEMORY_CHECK: Duration = Duration::from_secs(5);
/// The notify socket (`ready_notify=`, `watchdog_sec=`).
const NOTIFY_TOKEN: Token = Token(1);
/// Tokens 2 to 15 are the control servers' listeners, and `1 << 29` up their connections
/// (`rpc::server`); `1 << 30` up the probes.
const PIPE_TOKEN_BASE: usize = 16;
/// Bytes read from one pipe per wakeup before the others get their turn.
const READ_BUDGET: usize = 1 << 20;
/// A new pipe's buffer on Linux (and so the most one read of it gets), and what a pipe that
/// was found full grows to.
const PIPE_DEFAULT_SIZE: usize = 64 * 1024;
const FLOOD_BUF_KEEP: Duration = Duration::from_secs(1);
/// The fds the fd table is grown for ahead (`reserve_fds`): up to three pipes per program and
/// a log held open, and some for listeners, connections and the daemon's own files.
const FDS_PER_PROCESS: u64 = 4;
const FDS_BASE: u64 = 64;

/// At most this much is read from a pipe after its process exited (a pipe holds 64 KiB to
/// 1 MiB, so everything the process itself wrote fits).
const EXIT_DRAIN_LIMIT: usize = 16 << 20;

/// Four tokens per process slot: stdout, stderr, the readiness pipe (readable) and stdin
/// (writable).
fn pipe_token(id: ProcId, ch: Channel) -> Token {
    Token(PIPE_TOKEN_BASE + id.0 * 4 + ch as usize)
}

fn ready_token(id: ProcId) -> Token {
    Token(PIPE_TOKEN_BASE + id.0 * 4 + 2)
}

fn stdin_token(id: ProcId) -> Token {
    Token(PIPE_TOKEN_BASE + id.0 * 4 + 3)
}

enum PipeToken {
    Output(ProcId, Channel),
    Ready(ProcId),
    Stdin(ProcId),
}

fn token_pipe(token: Token) -> Option<PipeToken> {
    let n = token.0.checked_sub(PIPE_TOKEN_BASE)?;
    let id = ProcId(n / 4);
    Some(match n % 4 {
        0 => PipeToken::Output(id, Channel::Stdout),
        1 => PipeToken::Output(id, Channel::Stderr),
        2 => PipeToken::Ready(id),
        _ => PipeToken::Stdin(id),
    })
}

/// The I/O side of one process: its pipes (per spawn) and its logs (per group add).
pub struct ProcIo {
    pub stdin: Option<OwnedFd>,
    /// Bytes for stdin that the pipe did not take yet (sent when it becomes writable).
    stdin_buf: Vec<u8>,
    pipes: [Option<File>; 2],
    pub logs: [Option<LogFile>; 2],
    /// The read end of the `ready_fd` pipe, until the program says it is ready.
    ready: Option<File>,
    /// Whether a write error of this log was already reported (reported once per episode).
    log_failing: [bool; 2],
    /// Whether the next byte of each channel starts a line (for log_prefix/log_timestamps).
    at_line_start: [bool; 2],
    /// Capture mode per channel (`*_capture_maxbytes`), new at each spawn.
    captures: [Option<Capture>; 2],
    /// Whether the pipe was found full and given a larger buffer.
    grown: [bool; 2],
}

impl Default for ProcIo {
    fn default() -> ProcIo {
        ProcIo {
            stdin: None,
            stdin_buf: Vec::new(),
            pipes: [None, None],
            logs: [None, None],
            ready: None,
            log_failing: [false; 2],
            at_line_start: [true; 2],
            grown: [false; 2],
            captures: [None, None],
        }
    }
}

/// Why the loop ended.
pub enum LoopExit {
    Shutdown,
    /// Reload with this new config (already parsed and valid), keeping these processes (by
    /// namespec) stopped: they were stopped by hand before the reload.
    Reload(Box<Config>, Vec<String>),
}

pub struct EventLoop {
    config: Config,
    sup: Supervisor,
    pub(super) log: MainLog,
    poll: Poll,
    io: Vec<ProcIo>,
    pids: HashMap<u32, ProcId>,
    /// Pipes that still had data when their read budget ran out.
    unfinished: VecDeque<(ProcId, Channel)>,
    /// Open pipes that were given PIPE_GROWN_SIZE (at most MAX_GROWN_PIPES).
    grown_pipes: usize,
    buf: Vec<u8>,
    /// The buffer for grown pipes, while in use, with when it was last used.
    flood_buf: Option<(sys::MappedBuf, Instant)>,
    /// Logs left open after a burst of output, with when to close them (in that order).
    held_logs: VecDeque<(ProcId, Channel, Instant)>,
    /// RLIMIT_NOFILE's soft limit, read at startup (after minfds raised it).
    fd_limit: u64,
    /// The fd table's size made sure of so far (see `reserve_fds`).
    fd_table: u64,
    env_base: Rc<spawn::BaseEnv>,
    spawner: spawn::Spawner,
    /// Children cloned and not yet known to have exec'd (at most `spawn::LANES`), oldest first.
    in_flight: VecDeque<(ProcId, spawn::InFlight)>,
    /// The programs found in the batch of actions being performed.
    found_commands: spawn::FoundCommands,
    /// SUPERVISOR_SERVER_URL for programs without their own `serverurl=` (2.8).
    server_url: Option<String>,
    /// A config loaded for a reload, applied once everything has stopped.
    pending_reload: Option<Box<Config>>,
    /// Processes stopped by hand when a reload was asked for (they stay stopped after it).
    stopped_by_hand: Vec<String>,
    /// How to load the config again on SIGHUP.
    reloader: Box<dyn FnMut() -> Result<Config, Vec<String>>>,
    /// The config last read (by start or reread): what `avail` and `add` see.
    stored: Config,
    /// Set when the core asks to end the loop.
    exit: Option<LoopExit>,
    /// The daemon's exit status (non-zero when a critical program failed).
    pub(super) exit_status: i32,
    /// The control servers (listeners and connections), and the replies still waiting for
    /// the core.
    http: Option<Server>,
    pending: Vec<(Pending, control::Waiter)>,
    /// The last ticket given to a command of the control plane.
    tickets: u64,
    /// The time of this wakeup (read once after the poll).
    now: Clock,
    /// The earliest deadline of each source; the poll sleeps until the first.
    timers: Timers,
    /// `state_file=`: programs started or stopped by hand, kept across restarts.
    state_file: Option<StateFile>,
    /// The notify socket, opened for the first program that speaks the protocol.
    notify: Option<NotifySocket>,
    /// When to look next at the memory of programs with `memory_limit=` (while one runs).
    memory_check: Option<Instant>,
    /// The listening socket of each fcgi-program group (fd 0 of its processes), with its URL,
    /// while a process of the group runs (`sockets`).
    fcgi_sockets: HashMap<String, (String, OwnedFd)>,
    /// minisv's `listen=` sockets, held while their group is active (`sockets`).
    listen_sockets: HashMap<sockets::ListenKey, sockets::HeldListen>,
    /// Event listener pools and the TICK clock.
    pools: Pools,
    ticker: Ticker,
    /// `ready_check=` / `health_check=` probes in flight or scheduled.
    probes: Probes,
    /// The binary an upgrade in place executes (the daemon's own path).
    executable: Option<PathBuf>,
    /// An upgrade's pre-flight run of the new binary, while it runs.
    check: Option<upgrade::Check>,
    /// The new binary passed: executed at the top of the loop.
    upgrade_go: bool,
    upgrades: UpgradeRecord,
    /// A takeover is adding the groups again: no events.
    resuming: bool,
    /// cgroup v2, found at the first program with `cgroup=` (or why it cannot be used).
    cgroups: Option<Result<super::cgroup::Cgroups, String>>,
    /// The cgroup of each process that has one (while it has a child).
    cgroup_of: HashMap<ProcId, super::cgroup::ProgramCgroup>,
    /// Programs whose cgroup problems were logged (once per program).
    cgroup_noted: std::collections::HashSet<String>,
}

impl EventLoop {
    pub fn new(
        config: Config,
        log: MainLog,
        signals: &mut Signals,
        reloader: Box<dyn FnMut() -> Result<Config, Vec<String>>>,
        spawner: spawn::Spawner,
    ) -> io::Result<EventLoop> {
        let poll = Poll::new()?;
        let fd = signals.get_read().as_raw_fd();
        poll.registry().register(&mut SourceFd(&fd), SIGNAL_TOKEN, Interest::READABLE)?;
        let server_url = default_server_url(&config);
        let mut sup = Supervisor::new();
        sup.set_restart_limit(config.supervisord.restart_limit);
        sup.set_exit_on(config.supervisord.exit_on);
        let processes = config.groups.iter().map(|g| g.processes.len()).sum();
        let mut event_loop = EventLoop {
            stored: config.clone(),
            exit: None,
            exit_status: 0,
            http: None,
            pending: Vec::new(),
            tickets: 0,
            now: Clock::read(),
            timers: Timers::default(),
            state_file: None,
            notify: None,
            memory_check: None,
            fcgi_sockets: HashMap::new(),
            listen_sockets: HashMap::new(),
            pools: Pools::new(&config.supervisord.identifier),
            ticker: Ticker::new(),
            probes: Probes::new(),
            executable: None,
            check: None,
            upgrade_go: false,
            upgrades: UpgradeRecord::default(),
            resuming: false,
            cgroups: None,
            cgroup_of: HashMap::new(),
            cgroup_noted: std::collections::HashSet::new(),
            config,
            sup,
            log,
            poll,
            io: Vec::new(),
            pids: HashMap::new(),
            unfinished: VecDeque::new(),
            grown_pipes: 0,
            buf: vec![0; PIPE_DEFAULT_SIZE],
            flood_buf: None,
            held_logs: VecDeque::new(),
            fd_limit: sys::fd_limit(),
            fd_table: 0,
            env_base: Rc::new(spawn::BaseEnv::new(std::env::vars_os())),
            spawner,
            in_flight: VecDeque::new(),
            found_commands: spawn::FoundCommands::default(),
            server_url,
            pending_reload: None,
            stopped_by_hand: Vec::new(),
            reloader,
        };
        event_loop.reserve_fds(processes);
        Ok(event_loop)
    }

    /// Grows the fd table at once for `processes` programs (see `sys::grow_fd_table`): called
    /// from `new`, before the HTTP threads share the table, when the config is read again (for
    /// what it may add), and when processes are added.
    pub(super) fn reserve_fds(&mut self, processes: usize) {
        let want = FDS_BASE + FDS_PER_PROCESS * processes as u64;
        if want <= self.fd_table {
            return;
        }
        // Asked once per size: past RLIMIT_NOFILE, or on an error, the kernel grows it as before.
        self.fd_table = want;
        if let Err(e) = sys::grow_fd_table(self.poll.as_raw_fd(), want) {
            self.log.log(LogLevel::Debug, &format!("could not grow the fd table to {want}: {e}"));
        }
    }

    /// `reserve_fds` for the processes there are now.
    pub(super) fn reserve_fds_for_processes(&mut self) {
        // `io` has an entry per process slot ever used: when even that many fit, so do they.
        if FDS_BASE + FDS_PER_PROCESS * self.io.len() as u64 <= self.fd_table {
            return;
        }
        let processes = self.sup.processes().count();
        self.reserve_fds(processes);
    }

    pub fn registry(&self) -> &mio::Registry {
        self.poll.registry()
    }

    /// Adds the configured groups (in config order); their logs are opened as the loop starts.
    pub fn add_configured_groups(&mut self) {
        for g in self.config.groups.clone() {
            self.sup.add_group(g);
        }
    }

    /// `state_file=`: reads it (what is wrong with it goes to the main log) and applies it to
    /// the configured processes: stopped by hand stay stopped, started by hand start (even with
    /// `autostart=false`). Names no longer configured are kept in the file, and ignored.
    pub fn apply_state_file(&mut self) {
        self.load_state_file(true);
    }

    /// Reads `state_file=`, and applies it to the processes if `apply` (not after an upgrade
    /// in place, where the processes are as the old daemon left them).
    pub fn load_state_file(&mut self, apply: bool) {
        let Some(path) = self.config.supervisord.state_file.clone() else { return };
        let (file, problems) = StateFile::load(&path);
        for p in problems {
            self.log.log(LogLevel::Warn, &p);
        }
        for (spec, started) in file.entries().filter(|_| apply) {
            let (group, name) = crate::supervisor::namespec::split(spec);
            let Some(id) = name.and_then(|n| self.sup.find(group, n)) else { continue };
            if started {
                self.sup.mark_started_by_hand(id);
            } else {
                self.sup.mark_stopped_by_hand(id, self.now.mono);
            }
            let what = if started { "started" } else { "stopped" };
            self.log.log(LogLevel::Info, &format!("{spec} was {what} by hand (state file {})", path.display()));
        }
        self.state_file = Some(file);
    }

    /// `memory_limit=`: the RSS of each running limited program's process tree, read from
    /// /proc every MEMORY_CHECK; one over its limit is restarted (stop signal, then started
    /// again, as a failed health check). The look is scheduled only while such a program runs.
    fn check_memory(&mut self) {
        let limited: Vec<(ProcId, u32, u64)> = self
            .sup
            .processes()
            .filter(|(_, p)| p.config.memory_limit > 0 && p.state == crate::supervisor::ProcessState::Running)
            .map(|(id, p)| (id, p.pid, p.config.memory_limit))
            .collect();
        self.memory_check = (!limited.is_empty()).then(|| self.now.mono + MEMORY_CHECK);
        for (id, pid, limit) in limited {
            let Some(usage) = crate::rpc::metrics::tree_usage(pid) else { continue };
            if usage.rss_bytes > limit {
                let reason = format!("its memory ({} bytes) is over memory_limit ({limit} bytes)", usage.rss_bytes);
                self.sup.feed(id, Input::Unhealthy { reason, by: "memory_limit" }, self.now.mono, self.now.wall);
            }
        }
    }

    /// The notify socket's address for a child's NOTIFY_SOCKET, opening it the first time.
    fn notify_address(&mut self) -> Result<String, String> {
        if self.notify.is_none() {
            let sock = NotifySocket::open().map_err(|e| format!("cannot open the notify socket: {e}"))?;
            let fd = sock.fd();
            self.poll
                .registry()
                .register(&mut SourceFd(&fd), NOTIFY_TOKEN, Interest::READABLE)
                .map_err(|e| format!("cannot watch the notify socket: {e}"))?;
            self.notify = Some(sock);
        }
        Ok(self.notify.as_ref().map(|n| n.address().to_string()).unwrap_or_default())
    }

    /// Messages on the notify socket: each taken from the pid minisv started, as its process's
    /// READY=1, STATUS=, WATCHDOG=1; MAINPID= is refused.
    fn on_notify(&mut self) {
        let Some(sock) = &self.notify else { return };
        let mut messages = Vec::new();
        sock.receive(&mut messages);
        for (pid, text) in messages {
            let Some(&id) = self.pids.get(&pid) else {
                self.log.log(LogLevel::Debug, &format!("notify message from pid {pid}, not a program's: ignored"));
                continue;
            };
            for notice in notify::parse(&text) {
                let (now, wall) = (self.now.mono, self.now.wall);
                match notice {
                    Notice::Ready => self.sup.feed(id, Input::Ready, now, wall),
                    Notice::Watchdog => self.sup.feed(id, Input::Watchdog, now, wall),
                    Notice::Status(status) => self.sup.set_status_text(id, status),
                    Notice::MainPid(other) => {
                        let name = self.sup.process(id).map(|p| p.name().to_string()).unwrap_or_default();
                        let msg = format!(
                            "{name} sent MAINPID={other}: ignored (minisv supervises the process it started, pid {pid})"
                        );
                        self.log.log(LogLevel::Warn, &msg);
                    }
                }
            }
        }
    }

    /// A start or stop by hand, kept in the state file.
    fn record_by_hand(&mut self, id: ProcId, started: bool) {
        let Some(file) = self.state_file.as_mut() else { return };
        let Some(p) = self.sup.process(id) else { return };
        let spec = crate::supervisor::namespec::make(&p.group, p.name());
        if let Err(e) = file.set(&spec, started) {
            self.log.log(LogLevel::Error, &format!("cannot write the state file: {e}"));
        }
    }

    /// After a reload: processes that were stopped by hand before it are not autostarted.
    pub fn keep_stopped(&mut self, namespecs: &[String]) {
        for spec in namespecs {
            let (group, name) = crate::supervisor::namespec::split(spec);
            let Some(id) = name.and_then(|n| self.sup.find(group, n)) else { continue };
            self.sup.mark_stopped_by_hand(id, self.now.mono);
            self.log.log(LogLevel::Info, &format!("{spec} was stopped by hand before the reload: it stays stopped"));
        }
    }

    fn open_log(&mut self, pc: &ProcessConfig, ch: Channel) -> Option<LogFile> {
        self.open_log_at(pc, ch, None)
    }

    /// A process's log, at `at` instead of the configured path when given (an upgrade in place
    /// keeps an AUTO log's name).
    fn open_log_at(&mut self, pc: &ProcessConfig, ch: Channel, at: Option<&std::path::Path>) -> Option<LogFile> {
        let settings = match ch {
            Channel::Stdout => &pc.stdout,
            Channel::Stderr => &pc.stderr,
        };
        if ch == Channel::Stderr && pc.redirect_stderr {
            return None;
        }
        let opened = match (&settings.logfile, at) {
            (LogSetting::None, _) => return None,
            (_, Some(path)) => LogFile::open(path, settings.maxbytes, settings.backups),
            (LogSetting::Path(path), None) => LogFile::open(path, settings.maxbytes, settings.backups),
            (LogSetting::Auto, None) => {
                let prefix = format!("{}-{}---{}-", pc.name, ch.name(), self.config.supervisord.identifier);
                let dir = self.config.supervisord.childlogdir.clone();
                LogFile::deferred_unique(&dir, &prefix, ".log", settings.maxbytes, settings.backups)
            }
        };
        match opened {
            Ok(mut log) => {
                log.set_rotation(settings.rotation);
                if self.config.supervisord.log_format == crate::config::LogFormat::Json {
                    log.frame_json(&pc.name, ch.name());
                }
                // Opened to check it can be; held open only while output flows.
                log.release();
                Some(log)
            }
            Err(e) => {
                let what = match &settings.logfile {
                    LogSetting::Path(p) => p.display().to_string(),
                    _ => format!("an AUTO log in {}", self.config.supervisord.childlogdir.display()),
                };
                self.log.log(
                    LogLevel::Error,
                    &format!("{}: cannot open {} log {}: {} ({})", pc.name, ch.name(), what, e, pc.span),
                );
                None
            }
        }
    }

    pub fn io(&self, id: ProcId) -> Option<&ProcIo> {
        self.io.get(id.0)
    }

    pub fn io_mut(&mut self, id: ProcId) -> Option<&mut ProcIo> {
        self.io.get_mut(id.0)
    }

    /// Runs until everything has stopped after a shutdown or reload request.
    pub fn run(&mut self, signals: &mut Signals) -> io::Result<LoopExit> {
        self.now = Clock::read();
        // At boot: PROCESS_GROUP_ADDED for each group, SUPERVISOR_STATE_CHANGE_RUNNING, then the
        // first starts (Supervisor's order).
        self.perform_actions();
        self.ticks(self.now.wall);
        self.sup.begin(self.now.mono, self.now.wall);
        self.run_on(signals)
    }

    /// Runs after an upgrade in place (`take_over`): the daemon was running already, so no
    /// SUPERVISOR_STATE_CHANGE_RUNNING; the carried processes are looked at once.
    pub fn run_resumed(&mut self, signals: &mut Signals) -> io::Result<LoopExit> {
        self.now = Clock::read();
        self.sup.tick(self.now.mono, self.now.wall);
        self.run_on(signals)
    }

    fn run_on(&mut self, signals: &mut Signals) -> io::Result<LoopExit> {
        let mut events = Events::with_capacity(256);
        self.perform_actions();
        // Reading the config and starting the programs left freed blocks in the heap (0.7 MB
        // with 1000 programs): give their pages back before settling down.
        crate::sys::release_free_memory();
        loop {
            self.settle();
            if let Some(exit) = self.exit.take() {
                self.abandon_pending();
                return Ok(exit);
            }
            if self.upgrade_go {
                // Returns only if the exec failed (reported; everything goes on).
                self.exec_upgrade();
                continue;
            }
            // Probes due now start, and a verdict goes to the state machine (then round again
            // to act on it; bounded, since an attempt's verdict comes at most once per start).
            if self.sync_probes() {
                continue;
            }
            self.pump_tails();
            if compress::pending() {
                for (level, note) in compress::start_next(&self.spawner, &self.env_base) {
                    self.log.log(level, &note);
                }
            }
            let timeout = if !self.unfinished.is_empty() || self.http.as_ref().is_some_and(Server::has_work) {
                Some(Duration::ZERO)
            } else {
                self.file_timers();
                // From the time now, not the wakeup's: what it did took some of the wait.
                self.timers.timeout(Instant::now())
            };
            match self.poll.poll(&mut events, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            // The one clock read of this wakeup.
            self.now = Clock::read();
            self.on_timers();
            let mut got_signals = false;
            for event in events.iter() {
                match event.token() {
                    SIGNAL_TOKEN => got_signals = true,
                    NOTIFY_TOKEN => self.on_notify(),
                    token if Server::owns(token) => self.on_http_event(event),
                    token if Probes::owns(token) => {
                        let mut outcomes = Vec::new();
                        self.probes.on_event(token, self.poll.registry(), self.now.mono, &mut outcomes);
                        self.apply_probe_outcomes(outcomes);
                    }
                    token => match token_pipe(token) {
                        Some(PipeToken::Output(id, ch)) => self.read_pipe(id, ch, READ_BUDGET),
                        Some(PipeToken::Stdin(id)) => self.flush_stdin(id),
                        Some(PipeToken::Ready(id)) => self.read_ready(id),
                        None => {}
                    },
                }
            }
            for _ in 0..self.unfinished.len() {
                if let Some((id, ch)) = self.unfinished.pop_front() {
                    self.read_pipe(id, ch, READ_BUDGET);
                }
            }
            self.serve_http();
            if got_signals {
                let pending: Vec<i32> = signals.pending().collect();
                // SIGCHLD first: exits are judged before anything else changes (Q1).
                if pending.contains(&libc::SIGCHLD) {
                    self.reap();
                }
                for sig in pending {
                    self.on_signal(sig);
                }
            }
            // The processes whose deadline has come, or that an input of this wakeup marked
            // (none for output alone): a wakeup with nothing due steps no process.
            self.sup.tick(self.now.mono, self.now.wall);
        }
    }

    /// Performs what the core asked for; while that marked processes to look at again (a
    /// dependency RUNNING, a spawn's outcome), steps them and performs again (bounded: each
    /// round moves a chain of dependencies one step).
    fn settle(&mut self) {
        self.perform_actions();
        for _ in 0..64 {
            if !self.sup.has_marked() {
                break;
            }
            self.sup.tick(self.now.mono, self.now.wall);
            self.perform_actions();
        }
    }

    /// Files each source's earliest deadline in the timer table.
    fn file_timers(&mut self) {
        let now = self.now;
        self.timers.set(Timer::Core, self.sup.next_deadline());
        self.timers.set(Timer::Http, self.http.as_mut().and_then(Server::next_deadline));
        // TICKs cost a wakeup only when some pool subscribes to them.
        self.timers.set(Timer::Tick, self.tick_timeout(now.wall).map(|d| now.mono + d));
        self.timers.set(Timer::Probes, self.probes.next_deadline());
        self.timers.set(Timer::HeldLogs, self.held_logs.front().map(|h| h.2));
        self.timers.set(Timer::FloodBuf, self.flood_buf.as_ref().map(|(_, used)| *used + FLOOD_BUF_KEEP));
        self.timers.set(Timer::Memory, self.memory_check);
        self.timers.set(Timer::Upgrade, self.check.as_ref().map(|c| c.deadline));
    }

    /// What the timers due at this wakeup do, outside the core (stepped at the end of the
    /// wakeup) and the HTTP server (served with the requests) and the probes (synced before
    /// the next poll).
    fn on_timers(&mut self) {
        let now = self.now;
        // TICK boundaries passed since the last wakeup (checked at each: three divisions).
        self.ticks(now.wall);
        if self.timers.due(Timer::FloodBuf, now.mono) {
            self.flood_buf = None;
        }
        if self.timers.due(Timer::HeldLogs, now.mono) {
            self.close_held_logs(now.mono);
        }
        if self.timers.due(Timer::Memory, now.mono) {
            self.check_memory();
        }
        if self.timers.due(Timer::Upgrade, now.mono) {
            self.upgrade_check_timeout();
        }
    }

    fn on_signal(&mut self, sig: i32) {
        let Clock { mono: now, wall } = self.now;
        match sig {
            libc::SIGTERM | libc::SIGINT | libc::SIGQUIT => {
                self.log.log(LogLevel::Warn, &format!("received {} indicating exit request", sys::signal_name(sig)));
                self.sup.request_stop(Mood::Shutdown, now, wall);
            }
            libc::SIGHUP => {
                if self.sup.mood() == Mood::Shutdown {
                    self.log.log(LogLevel::Warn, "ignored SIGHUP indicating restart request (shutdown in progress)");
                    return;
                }
                self.log.log(LogLevel::Warn, "received SIGHUP indicating restart request");
                // An invalid config was logged by reload(); the running one stays.
                let _ = self.reload(now, wall);
            }
            libc::SIGUSR1 => {
                self.log.log(LogLevel::Warn, "received SIGUSR1 indicating upgrade request");
                if let Err(why) = self.begin_upgrade(None) {
                    self.log.log(LogLevel::Error, &format!("upgrade refused: {why}"));
                }
            }
            libc::SIGUSR2 => {
                self.log.log(LogLevel::Info, "received SIGUSR2 indicating log reopen request");
                self.reopen_logs();
                self.log.log(LogLevel::Info, "minisv logreopen");
            }
            libc::SIGCHLD => self.log.log(LogLevel::Debug, "received SIGCHLD indicating a child quit"),
            other => {
                self.log.log(LogLevel::Blather, &format!("received {} indicating nothing", sys::signal_name(other)))
            }
        }
    }

    /// Parses the config again; only a valid one replaces the running one (after an ordered
    /// stop of everything). An invalid one is logged and nothing is touched.
    pub fn reload(&mut self, now: Instant, wall: SystemTime) -> Result<(), Vec<String>> {
        match (self.reloader)() {
            Ok(config) => {
                // A program stopped by hand stays stopped through the reload (minisv; Supervisor
                // starts it again if it has autostart).
                self.stopped_by_hand = self
                    .sup
                    .processes()
                    .filter(|(_, p)| p.administrative_stop && p.state.is_stopped())
                    .map(|(_, p)| crate::rpc::api::make_namespec(&p.group, p.name()))
                    .collect();
                self.pending_reload = Some(Box::new(config));
                self.sup.request_stop(Mood::Restarting, now, wall);
                Ok(())
            }
            Err(errors) => {
                for e in &errors {
                    self.log.log(LogLevel::Error, &format!("reload refused, the running config is kept: {e}"));
                }
                Err(errors)
            }
        }
    }

    pub fn reopen_logs(&mut self) {
        if let Err(e) = self.log.reopen() {
            eprintln!("minisv: cannot reopen the main log {e}");
            self.log.log(LogLevel::Error, &format!("cannot reopen the main log {e}"));
        }
        let mut failures = Vec::new();
        for io in &mut self.io {
            for log in io.logs.iter_mut().flatten() {
                // Reopened to report a problem now; held open only while output flows.
                if let Err(e) = log.reopen() {
                    failures.push(format!("cannot reopen {}: {}", log.path().display(), e));
                }
                log.release();
            }
        }
        for f in failures {
            self.log.log(LogLevel::Error, &f);
        }
    }

    /// Reaps every child that has exited: drains its pipes first (so its last output is logged
    /// before its exit), then feeds the exit to its state machine.
    fn reap(&mut self) {
        // Bounded: at most as many as could exist, plus orphans; stops at the first "none".
        for _ in 0..1_000_000 {
            let reaped = match sys::reap_one() {
                Ok(Some(r)) => r,
                Ok(None) => break,
                Err(e) => {
                    self.log.log(LogLevel::Error, &format!("waitpid failed: {e}"));
                    break;
                }
            };
            let (exitstatus, mut message, shell_status) = sys::decode_wait_status(reaped.status);
            match self.pids.remove(&reaped.pid) {
                Some(id) => {
                    if let Some(why) = self.cgroup_exit(id, reaped.status) {
                        message = format!("{message} ({why})");
                    }
                    for ch in [Channel::Stdout, Channel::Stderr] {
                        // What the child wrote before it exited is in the pipe now; bounded,
                        // because a grandchild may still hold the pipe and write forever.
                        self.read_pipe(id, ch, EXIT_DRAIN_LIMIT);
                        self.close_pipe(id, ch);
                    }
                    self.listener_exited(id);
                    self.close_ready(id);
                    if let Some(p) = self.sup.process(id) {
                        spawn::remove_credentials(&self.config.supervisord, &p.group, &p.config);
                    }
                    if let Some(io) = self.io.get_mut(id.0) {
                        // Registered only while input waits to be written (control.rs).
                        if let Some(fd) = io.stdin.take().filter(|_| !io.stdin_buf.is_empty()) {
                            let _ = self.poll.registry().deregister(&mut SourceFd(&fd.as_raw_fd()));
                        }
                        io.stdin_buf.clear();
                    }
                    let input = Input::Exited(ExitInfo { exitstatus, message, shell_status });
                    self.sup.feed(id, input, self.now.mono, self.now.wall);
                }
                None => {
                    let mut outcomes = Vec::new();
                    if self.upgrade_check_reaped(reaped.pid, shell_status == 0, &message) {
                    } else if self.probes.on_exit(reaped.pid, shell_status == 0, &message, self.now.mono, &mut outcomes)
                    {
                        self.apply_probe_outcomes(outcomes);
                    } else if let Some((level, note)) = compress::reaped(reaped.pid, shell_status == 0, &message) {
                        self.log.log(level, &note);
                    } else {
                        self.log.log(LogLevel::Debug, &format!("reaped unknown pid {} ({})", reaped.pid, message));
                    }
                }
            }
        }
    }

    /// The readiness pipe: a line (or any byte) means ready; end of file, it is closed.
    fn read_ready(&mut self, id: ProcId) {
        let mut buf = [0u8; 256];
        let mut ready = false;
        let mut closed = false;
        if let Some(pipe) = self.io.get_mut(id.0).and_then(|io| io.ready.as_mut()) {
            // Bounded: the pipe holds at most what the program wrote.
            for _ in 0..64 {
                match pipe.read(&mut buf) {
                    Ok(0) => {
                        closed = true;
                        break;
                    }
                    Ok(_) => ready = true,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
        }
        if ready || closed {
            self.close_ready(id);
        }
        if ready {
            self.sup.feed(id, Input::Ready, self.now.mono, self.now.wall);
        }
    }

    /// Starts due probes and ends timed-out ones; true when a verdict was fed.
    fn sync_probes(&mut self) -> bool {
        let mut outcomes = Vec::new();
        let setup = spawn::ChildSetup {
            spawner: &self.spawner,
            base: &self.env_base,
            server_url: self.server_url.as_deref(),
            daemon: &self.config.supervisord,
        };
        self.probes.sync(&self.sup, &setup, self.poll.registry(), self.now.mono, &mut outcomes);
        self.apply_probe_outcomes(outcomes)
    }

    /// Feeds probe verdicts to the state machine; true when one was fed.
    fn apply_probe_outcomes(&mut self, outcomes: Vec<Outcome>) -> bool {
        let mut fed = false;
        for outcome in outcomes {
            let (now, wall) = (self.now.mono, self.now.wall);
            match outcome {
                Outcome::Ready(id) => {
                    self.sup.feed(id, Input::Ready, now, wall);
                    fed = true;
                }
                Outcome::Unhealthy(id, reason) => {
                    self.sup.feed(id, Input::Unhealthy { reason, by: "health_check" }, now, wall);
                    fed = true;
                }
                Outcome::Failed(id, why) => {
                    if let Some(p) = self.sup.process(id) {
                        let msg = format!("probe of {} failed: {}", p.name(), why);
                        self.log.log(LogLevel::Debug, &msg);
                    }
                }
            }
        }
        fed
    }

    fn close_ready(&mut self, id: ProcId) {
        if let Some(pipe) = self.io.get_mut(id.0).and_then(|io| io.ready.take()) {
            let _ = self.poll.registry().deregister(&mut SourceFd(&pipe.as_raw_fd()));
        }
    }

    /// Performs what the core asked for, feeding outcomes back, until nothing is left.
    pub fn perform_actions(&mut self) {
        loop {
            self.perform_queued_actions();
            // A child still in flight: its outcome may bring more actions.
            if !self.finish_spawn() {
                break;
            }
        }
        // The next batch looks its programs up again.
        self.found_commands.clear();
    }

    fn perform_queued_actions(&mut self) {
        while let Some(action) = self.sup.take_actions() {
            match action {
                Action::Spawn(id) => self.spawn(id),
                Action::Kill { id, pid, signal, group } => {
                    if let Err(e) = sys::kill(pid, signal, group) {
                        let input = Input::KillFailed { message: e.to_string() };
                        self.sup.feed(id, input, self.now.mono, self.now.wall);
                    }
                }
                Action::Log(level, msg) => self.log.log(level, &msg),
                Action::StateChanged { id, from, to, expected, pid, tries } => {
                    if to == crate::supervisor::ProcessState::Running
                        && self.memory_check.is_none()
                        && self.sup.process(id).is_some_and(|p| p.config.memory_limit > 0)
                    {
                        self.memory_check = Some(self.now.mono + MEMORY_CHECK);
                    }
                    self.state_event(id, from, to, expected, pid, tries);
                    self.release_idle_fcgi_socket(id);
                }
                Action::GroupAdded(name) => self.on_group_added(&name),
                Action::GroupRemoved { name, members } => self.on_group_removed(&name, &members),
                Action::GroupReplaced { name, fresh, dropped } => self.on_group_replaced(&name, &fresh, &dropped),
                Action::Answer(ticket, answer) => self.on_answer(ticket, answer),
                Action::ByHand { id, started } => self.record_by_hand(id, started),
                Action::ExitWith { status } => {
                    self.exit_status = status;
                    // The children still on their way to exec get their pids in the core
                    // first, so that the stop reaches them.
                    while self.finish_spawn() {}
                    self.sup.request_stop(Mood::Shutdown, self.now.mono, self.now.wall);
                }
                Action::SupervisorRunning => self.notify(Event::supervisor_running()),
                Action::SupervisorStopping => self.notify(Event::supervisor_stopping()),
                Action::ShutdownComplete(mood) => {
                    self.exit = Some(match (mood, self.pending_reload.take()) {
                        (Mood::Restarting, Some(config)) => {
                            LoopExit::Reload(config, std::mem::take(&mut self.stopped_by_hand))
                        }
                        _ => LoopExit::Shutdown,
                    });
                }
            }
        }
    }

    /// What a child's environment sets on top of ours (2.3): SUPERVISOR_*, the user's HOME/USER/
    /// LOGNAME/SHELL (fix of Supervisor issue #435), `[supervisord]` environment files and
    /// `environment`, then the program's (a later one wins); Err: a file that cannot be used.
    fn child_env(&self, pc: &ProcessConfig, group: &str) -> Result<Vec<(OsString, OsString)>, String> {
        spawn::spawn_env(pc, group, self.server_url.as_deref(), &self.config.supervisord)
    }

    /// Starts a process's child. Its outcome is fed to the core once it has exec'd (or failed),
    /// which `finish_spawn` waits for; meanwhile up to `spawn::LANES` children are started.
    fn spawn(&mut self, id: ProcId) {
        if self.in_flight.iter().any(|(i, _)| *i == id) {
            // The core asks once per start; a second request would be a bug there, and the
            // start in flight answers for both.
            let name = self.sup.process(id).map(|p| p.name().to_string()).unwrap_or_default();
            self.log.log(LogLevel::Warn, &format!("{name} is already being started"));
            return;
        }
        if self.in_flight.len() >= spawn::LANES {
            self.finish_spawn();
        }
        let Some(p) = self.sup.process(id) else {
            return;
        };
        let pc = p.config.clone();
        let group = p.group.clone();
        let started = self.start_spawn(id, &pc, &group);
        while let Some(note) = self.spawner.take_fallback_note() {
            self.log.log(LogLevel::Info, note);
        }
        match started {
            Ok(child) => self.in_flight.push_back((id, child)),
            Err(message) => self.sup.feed(id, Input::SpawnFailed { message }, self.now.mono, self.now.wall),
        }
    }

    /// Waits for the oldest child in flight to exec (or fail) and feeds the outcome to the core.
    /// False if none is in flight.
    fn finish_spawn(&mut self) -> bool {
        let Some((id, child)) = self.in_flight.pop_front() else {
            return false;
        };
        let outcome = spawn::finish(child);
        // The core waits for this outcome in STARTING without a pid. (Nothing stops a process
        // while its spawn is in flight: the stops that can come while actions are performed
        // first finish every spawn, see check_critical.)
        let awaited =
            self.sup.process(id).is_some_and(|p| p.state == crate::supervisor::ProcessState::Starting && p.pid == 0);
        let input = match outcome {
            Ok(spawned) if !awaited => {
                // Were it ever to happen, the child must not run on unsupervised.
                let name = self.sup.process(id).map(|p| p.name().to_string()).unwrap_or_default();
                let msg = format!("{name} is no longer starting: killing its new child (pid {})", spawned.pid);
                self.log.log(LogLevel::Warn, &msg);
                spawn::kill_and_reap(spawned.pid);
                return true;
            }
            Ok(spawned) => Input::Spawned { pid: self.watch_child(id, spawned) },
            Err(message) => {
                if let Some(p) = self.sup.process(id) {
                    spawn::remove_credentials(&self.config.supervisord, &p.group, &p.config);
                }
                Input::SpawnFailed { message }
            }
        };
        self.sup.feed(id, input, self.now.mono, self.now.wall);
        true
    }

    fn start_spawn(&mut self, id: ProcId, pc: &ProcessConfig, group: &str) -> Result<spawn::InFlight, String> {
        if let Some(p) = self.sup.process(id) {
            if p.pid != 0 {
                return Err(format!("process '{}' already running", pc.name));
            }
        }
        let search = spawn::search_path(pc, &self.config.supervisord.environment);
        let (program, argv) = spawn::resolve_command_in(&pc.command, search.as_deref(), &mut self.found_commands)
            .map_err(|e| e.message().to_string())?;
        let user = spawn::program_user(pc)?;
        let stdin_socket = self.fcgi_socket_for(group)?;
        let plan = SpawnPlan {
            program,
            argv,
            base: Rc::clone(&self.env_base),
            env: {
                let mut env = self.child_env(pc, group)?;
                if pc.ready_notify || pc.watchdog_sec > 0 {
                    // Set last: the program's environment= cannot point it elsewhere.
                    env.push(("NOTIFY_SOCKET".into(), self.notify_address()?.into()));
                    if pc.watchdog_sec > 0 {
                        env.push(("WATCHDOG_USEC".into(), (pc.watchdog_sec * 1_000_000).to_string().into()));
                    }
                }
                env
            },
            directory: pc.directory.clone(),
            umask: pc.umask,
            user,
            redirect_stderr: pc.redirect_stderr,
            stdin_socket,
            ready_fd: pc.ready_fd,
            listen: self.listen_fds_for(group, pc)?,
            limits: pc.limits.clone(),
            cgroup: self.cgroup_for(id, pc, group),
        };
        self.spawner.spawn(plan, &pc.name)
    }

    /// Watches the pipes of a child that has exec'd; its pid.
    fn watch_child(&mut self, id: ProcId, spawned: spawn::Spawned) -> u32 {
        let name = self.sup.process(id).map(|p| p.config.name.clone()).unwrap_or_default();
        let pid = spawned.pid;
        if self.io.len() <= id.0 {
            self.io.resize_with(id.0 + 1, ProcIo::default);
        }
        let stdout = File::from(spawned.stdout);
        let stderr = spawned.stderr.map(File::from);
        let registry = self.poll.registry();
        for (ch, pipe) in [(Channel::Stdout, Some(&stdout)), (Channel::Stderr, stderr.as_ref())] {
            if let Some(pipe) = pipe {
                let fd = pipe.as_raw_fd();
                if let Err(e) = registry.register(&mut SourceFd(&fd), pipe_token(id, ch), Interest::READABLE) {
                    self.log.log(LogLevel::Error, &format!("cannot watch {} of {}: {}", ch.name(), name, e));
                }
            }
        }
        let ready = spawned.ready.map(File::from);
        if let Some(r) = &ready {
            let fd = r.as_raw_fd();
            if let Err(e) = registry.register(&mut SourceFd(&fd), ready_token(id), Interest::READABLE) {
                self.log.log(LogLevel::Error, &format!("cannot watch the ready_fd of {}: {}", name, e));
            }
        }
        self.forget_growth(id, Channel::Stdout);
        self.forget_growth(id, Channel::Stderr);
        let io = &mut self.io[id.0];
        io.ready = ready;
        io.pipes = [Some(stdout), stderr];
        io.stdin = spawned.stdin;
        self.pids.insert(pid, id);
        self.new_captures(id);
        self.listener_spawned(id);
        pid
    }

    /// `cgroup=`: the `cgroup.procs` file a new child of `pc` joins, its cgroup made and its
    /// limits written; None (and a log line, once per program) where cgroups cannot be used.
    fn cgroup_for(&mut self, id: ProcId, pc: &ProcessConfig, group: &str) -> Option<PathBuf> {
        let limits = pc.limits.cgroup.as_ref()?;
        let cgroups = self.cgroups.get_or_insert_with(super::cgroup::Cgroups::detect);
        let spec = crate::supervisor::namespec::make(group, &pc.name);
        let made = match cgroups {
            Ok(c) => c.program(&spec, limits).map(|(cg, problems)| (cg, problems, c.take_notes())),
            Err(e) => Err(e.clone()),
        };
        let first = self.cgroup_noted.insert(spec.clone());
        match made {
            Ok((cg, problems, notes)) => {
                for n in notes {
                    self.log.log(LogLevel::Warn, &format!("cgroups: {n}"));
                }
                if first {
                    for p in problems {
                        self.log.log(LogLevel::Warn, &format!("{}: {p}", pc.name));
                    }
                    self.log.log(LogLevel::Info, &format!("{}: runs in the cgroup {}", pc.name, cg.dir.display()));
                }
                let procs = cg.dir.join("cgroup.procs");
                self.cgroup_of.insert(id, cg);
                Some(procs)
            }
            Err(e) => {
                if first {
                    let msg = format!("{}: cgroup= is not in force, it runs without a cgroup of its own: {e}", pc.name);
                    self.log.log(LogLevel::Warn, &msg);
                }
                None
            }
        }
    }

    /// A process with a cgroup was reaped: what is left in the cgroup is killed (and said), and
    /// an OOM kill is named (returned, for the exit's description).
    fn cgroup_exit(&mut self, id: ProcId, status: i32) -> Option<String> {
        let cg = self.cgroup_of.remove(&id)?;
        let name = self.sup.process(id).map(|p| p.name().to_string()).unwrap_or_default();
        let left = super::cgroup::kill_left(&cg.dir);
        if !left.is_empty() {
            let pids: Vec<String> = left.iter().map(ToString::to_string).collect();
            let what = if left.len() == 1 { "process" } else { "processes" };
            let msg = format!("{name}: killed {} {what} left in its cgroup (pids {})", left.len(), pids.join(", "));
            self.log.log(LogLevel::Warn, &msg);
        }
        let killed = libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGKILL;
        if !(killed && super::cgroup::oom_kills(&cg.dir) > cg.oom_kills) {
            return None;
        }
        let (group, pid, max) = self
            .sup
            .process(id)
            .map(|p| (p.group.clone(), p.pid, p.config.limits.cgroup.as_ref().and_then(|c| c.memory_max)))
            .unwrap_or_default();
        self.log.log(LogLevel::Warn, &format!("{name}: killed by the kernel's OOM killer (memory_max)"));
        self.notify(Event::process_oom(&name, &group, pid, max));
        Some("killed for memory: memory_max".to_string())
    }

    /// Stops watching every child's pipes and closes every log (at exit or before a reload).
    pub fn close_all(&mut self) {
        if let Some(Ok(c)) = &self.cgroups {
            c.remove_all();
        }
        for i in 0..self.io.len() {
            for ch in [Channel::Stdout, Channel::Stderr] {
                self.close_pipe(ProcId(i), ch);
            }
        }
        self.io.clear();
        self.held_logs.clear();
    }

    /// The actual stdout/stderr log path of a process ('' when it has none).
    pub fn log_path(&self, id: ProcId, ch: Channel) -> Option<PathBuf> {
        self.io.get(id.0)?.logs[ch as usize].as_ref().map(|l| l.path().to_path_buf())
    }

    /// The log's path for reading it: an AUTO log not written yet is created now (empty), so
    /// that reading it works as in Supervisor, which creates them up front. None if the
    /// process has no such log or it does not exist.
    pub fn readable_log_path(&mut self, id: ProcId, ch: Channel) -> Option<PathBuf> {
        let log = self.io.get_mut(id.0)?.logs[ch as usize].as_mut()?;
        if let Err(e) = log.materialize() {
            let message = format!("cannot create log {}: {e}", log.path().display());
            self.log.log(LogLevel::Error, &message);
        }
        self.log_path(id, ch).filter(|p| p.exists())
    }
}

/// SUPERVISOR_SERVER_URL (2.8): the first unix server, else the first inet server.
pub fn default_server_url(config: &Config) -> Option<String> {
    if let Some(u) = config.unix_http_servers.first() {
        return Some(format!("unix://{}", u.file.display()));
    }
    config.inet_http_servers.first().map(|i| {
        let host = if i.host.is_empty() || i.host == "*" { "localhost" } else { &i.host };
        format!("http://{}:{}", host, i.port)
    })
}
