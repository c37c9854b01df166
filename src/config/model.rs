//! The typed, validated configuration: what `config::load` produces and what the rest of
//! minisv consumes. Nothing here parses text; see `ini.rs`, `expand.rs` and `types.rs`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where a value came from: the file (as the user named it, absolute after loading) and the
/// 1-based line of its key (or of the section header for section-level problems). Every value
/// has one, and the loader copies them about 40 times per program: the file's name is shared.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Span {
    pub file: Arc<Path>,
    pub line: usize,
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

/// A problem found in a config file. Rendered in one place:
/// `file:line: [section] key: message` (the parts that are unknown are left out).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub span: Option<Span>,
    pub section: Option<String>,
    pub key: Option<String>,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(span) = &self.span {
            write!(f, "{span}: ")?;
        }
        if let Some(section) = &self.section {
            write!(f, "[{section}] ")?;
        }
        if let Some(key) = &self.key {
            write!(f, "{key}: ")?;
        }
        f.write_str(&self.message)
    }
}

/// Everything `config::load` returns on success. Warnings and infos are logged by the daemon
/// once its main log is open (Supervisor logs parse warnings at WARN after startup).
#[derive(Clone, Debug)]
pub struct Config {
    /// The main config file, absolute.
    pub path: PathBuf,
    pub supervisord: SupervisordConfig,
    pub unix_http_servers: Vec<UnixHttpServerConfig>,
    pub inet_http_servers: Vec<InetHttpServerConfig>,
    /// `[supervisorctl]`, if present (read by `minisv ctl`).
    pub supervisorctl: Option<CtlConfig>,
    /// Whether `[rpcinterface:supervisor]` is present: without it only `system.*` exists.
    pub rpcinterface_supervisor: bool,
    /// Process groups sorted by (priority, name), as Supervisor inserts them (1.14).
    pub groups: Vec<GroupConfig>,
    pub warnings: Vec<Diagnostic>,
    /// Informational startup lines, e.g. `Included extra file "/etc/x.conf" during parsing`.
    pub infos: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LogLevel {
    Blather = 3,
    Trace = 5,
    Debug = 10,
    Info = 20,
    Warn = 30,
    Error = 40,
    Critical = 50,
}

impl LogLevel {
    /// The four-letter name used in the main log (`INFO`, `DEBG`, ...).
    pub fn tag(self) -> &'static str {
        match self {
            LogLevel::Blather => "BLAT",
            LogLevel::Trace => "TRAC",
            LogLevel::Debug => "DEBG",
            LogLevel::Info => "INFO",
            LogLevel::Warn => "WARN",
            LogLevel::Error => "ERRO",
            LogLevel::Critical => "CRIT",
        }
    }
}

/// A resolved user (from `user=`): resolved when the config is loaded, so that the child
/// never calls into NSS after fork.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserSpec {
    /// The name as written (a name or a number).
    pub spec: String,
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups (the primary gid first), as `initgroups` would set them.
    pub groups: Vec<u32>,
    pub home: String,
    pub shell: String,
}

#[derive(Clone, Debug)]
pub struct SupervisordConfig {
    /// `None` for `logfile=syslog`... see `MainLog`.
    pub logfile: MainLog,
    pub logfile_maxbytes: u64,
    pub logfile_backups: u32,
    pub loglevel: LogLevel,
    pub pidfile: PathBuf,
    pub umask: u32,
    pub nodaemon: bool,
    pub silent: bool,
    pub minfds: u64,
    pub minprocs: u64,
    pub nocleanup: bool,
    pub childlogdir: PathBuf,
    pub user: Option<UserSpec>,
    pub directory: Option<PathBuf>,
    pub strip_ansi: bool,
    /// `environment=` pairs in the order written.
    pub environment: Vec<(String, String)>,
    /// minisv: `environment_file=` paths, read at every spawn, under `environment`.
    pub environment_files: Vec<PathBuf>,
    /// minisv: where each process's `credentials=` are copied (None: `credentials::default_root`).
    pub credentials_directory: Option<PathBuf>,
    pub identifier: String,
    /// minisv: automatic restarts allowed per second across all programs (0: no limit).
    pub restart_limit: u32,
    /// minisv: when the daemon exits by itself (`exit_on=`).
    pub exit_on: ExitOn,
    /// minisv: where programs started or stopped by hand are kept across restarts.
    pub state_file: Option<PathBuf>,
    /// minisv: `logfile_rotate=` and `logfile_compress=` of the main log.
    pub logfile_rotation: Rotation,
    /// minisv: `log_format=`, the shape of what the daemon writes to its stdout.
    pub log_format: LogFormat,
}

/// minisv: how a log file is rotated besides at `maxbytes` (`*_logfile_rotate=`), and whether
/// its backups are compressed (`*_logfile_compress=`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rotation {
    pub every: RotateEvery,
    pub compress: bool,
}

/// minisv's `*_logfile_rotate=`: a period of local time that starts a new file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RotateEvery {
    /// At `maxbytes` only (Supervisor's behaviour).
    #[default]
    Size,
    Hourly,
    Daily,
}

/// minisv's `log_format=`: plain text (Supervisor's) or one JSON object per line for what
/// the daemon writes to its own stdout (its log lines in the foreground, and the output of
/// programs logged to /dev/stdout or /dev/stderr).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// minisv's `exit_on=`: whether the daemon ends by itself when programs have ended for good
/// (for containers that run a batch of jobs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ExitOn {
    /// Only on a request or a `critical=true` program (Supervisor's behaviour).
    #[default]
    Never,
    /// When every program that ran has ended for good: with the worst exit status.
    AllExited,
    /// When any program has ended for good: with its exit status.
    AnyExited,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MainLog {
    File(PathBuf),
    Syslog,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    /// Plain text, or `{SHA}` followed by 40 lowercase hex digits.
    pub password: String,
}

/// The most `[unix_http_server]` and `[inet_http_server]` sections together: the daemon's
/// event loop numbers its listeners' tokens for this many.
pub const MAX_HTTP_SERVERS: usize = 14;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnixHttpServerConfig {
    /// The section name (`unix_http_server` or `unix_http_server:x`), used in log lines.
    pub section: String,
    pub file: PathBuf,
    pub chmod: u32,
    /// `None` leaves owner and group unchanged; `Some((uid, gid))` with `u32::MAX` for "unchanged".
    pub chown: Option<(u32, u32)>,
    pub auth: Option<Credentials>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InetHttpServerConfig {
    pub section: String,
    /// Host as written (lowercased); empty for "all interfaces" (`*:port`, `:port`, `port`).
    pub host: String,
    pub port: u16,
    pub auth: Option<Credentials>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CtlConfig {
    pub serverurl: String,
    pub username: Option<String>,
    pub password: Option<String>,
    pub prompt: String,
    pub history_file: Option<PathBuf>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AutoRestart {
    Never,
    Unexpected,
    Always,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogFile {
    None,
    Auto,
    Path(PathBuf),
}

/// A process's stdout or stderr. The discriminants index per-channel arrays (pipes, logs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Channel {
    Stdout = 0,
    Stderr = 1,
}

impl Channel {
    pub fn name(self) -> &'static str {
        match self {
            Channel::Stdout => "stdout",
            Channel::Stderr => "stderr",
        }
    }
}

/// One output channel's log settings (`stdout_*` or `stderr_*`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelConfig {
    pub logfile: LogFile,
    pub maxbytes: u64,
    pub backups: u32,
    pub capture_maxbytes: u64,
    pub events_enabled: bool,
    pub syslog: bool,
    /// minisv: `*_logfile_rotate=` and `*_logfile_compress=`.
    pub rotation: Rotation,
}

/// minisv's `rlimit_*=`, `nice=` and `oom_score_adj=`: set in the child before it execs (and
/// before `user=` takes effect, so that root may raise a hard limit).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    /// (RLIMIT_* resource, soft, hard); `u64::MAX` is infinity.
    pub rlimits: Vec<(i32, u64, u64)>,
    pub nice: Option<i32>,
    pub oom_score_adj: Option<i32>,
    /// `cgroup=`, `memory_max=` ...: the program's own cgroup, if it has one.
    pub cgroup: Option<CgroupLimits>,
}

/// A program's cgroup (v2) and the limits written in it; `None` leaves the kernel's default
/// (`max`). `u64::MAX` is `max`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CgroupLimits {
    pub memory_max: Option<u64>,
    pub memory_high: Option<u64>,
    /// Percent of one CPU (cpu.max is written as quota and period).
    pub cpu_max: Option<u64>,
    pub pids_max: Option<u64>,
}

impl CgroupLimits {
    /// The files of the cgroup and what is written in each, in order.
    pub fn files(&self) -> Vec<(&'static str, String)> {
        let size = |v: u64| if v == u64::MAX { "max".to_string() } else { v.to_string() };
        let mut out = Vec::new();
        if let Some(v) = self.memory_high {
            out.push(("memory.high", size(v)));
        }
        if let Some(v) = self.memory_max {
            out.push(("memory.max", size(v)));
        }
        if let Some(pct) = self.cpu_max {
            // Per 100 ms, as systemd's CPUQuota=.
            let quota = if pct == u64::MAX { "max".to_string() } else { (pct * 1000).to_string() };
            out.push(("cpu.max", format!("{quota} 100000")));
        }
        if let Some(v) = self.pids_max {
            out.push(("pids.max", size(v)));
        }
        out
    }
}

/// The `rlimit_*` keys, with their resource and whether the value is a size (KB, MB, GB).
pub const RLIMIT_KEYS: &[(&str, i32, bool)] = &[
    ("rlimit_nofile", libc::RLIMIT_NOFILE as i32, false),
    ("rlimit_nproc", libc::RLIMIT_NPROC as i32, false),
    ("rlimit_core", libc::RLIMIT_CORE as i32, true),
    ("rlimit_as", libc::RLIMIT_AS as i32, true),
    ("rlimit_cpu", libc::RLIMIT_CPU as i32, false),
    ("rlimit_fsize", libc::RLIMIT_FSIZE as i32, true),
];

/// minisv's `schedule=` with its companions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    pub cron: super::cron::Cron,
    /// `schedule_overlap=queue`: a run due while the last one still runs starts once it has
    /// ended; `skip` (the default) leaves it out.
    pub queue: bool,
    /// `schedule_timezone=utc` (the default is the daemon's local time).
    pub utc: bool,
    /// `run_on_start=true`: also runs when the daemon starts (or the group is added).
    pub run_on_start: bool,
}

/// One process, after numprocs expansion.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessConfig {
    pub name: String,
    /// The `program:`/`fcgi-program:`/`eventlistener:` name this process came from.
    pub program: String,
    pub command: String,
    pub directory: Option<String>,
    pub umask: Option<u32>,
    pub priority: i64,
    pub autostart: bool,
    pub autorestart: AutoRestart,
    pub startsecs: i64,
    pub startretries: i64,
    pub exitcodes: Vec<i32>,
    pub stopsignal: i32,
    pub stopwaitsecs: i64,
    pub stopasgroup: bool,
    pub killasgroup: bool,
    pub user: Option<UserSpec>,
    pub redirect_stderr: bool,
    pub stdout: ChannelConfig,
    pub stderr: ChannelConfig,
    /// The program's own `environment=` pairs, in order (the `[supervisord]` ones are applied
    /// under them at spawn time).
    pub environment: Vec<(String, String)>,
    /// minisv: `environment_file=` paths, read at every spawn, under `environment`. Their values
    /// are never kept in the config (nor shown by getAllConfigInfo).
    pub environment_files: Vec<PathBuf>,
    /// minisv: `credentials=NAME:PATH` pairs, copied at every spawn into the process's own
    /// directory (`CREDENTIALS_DIRECTORY`).
    pub credentials: Vec<(String, PathBuf)>,
    /// `None` means AUTO: computed from the first HTTP server (2.8).
    pub serverurl: Option<String>,
    /// minisv: the daemon exits with this program's status when it fails for good.
    pub critical: bool,
    /// minisv's restart policies (all 0 = Supervisor's behaviour).
    pub restart: RestartPolicy,
    /// minisv: what must be RUNNING before this process starts (see `config::depends`).
    pub depends_on: Vec<String>,
    /// minisv: the fd on which the program writes a line when it is ready (then RUNNING), and
    /// how long it has for that (seconds) before the start counts as failed.
    pub ready_fd: Option<i32>,
    pub ready_timeout: i64,
    /// minisv: the program speaks systemd's notify protocol (`NOTIFY_SOCKET`): it is ready
    /// when it sends READY=1 (`ready_notify=`); `watchdog_sec=` > 0 restarts it when its
    /// WATCHDOG=1 pings stop for that long.
    pub ready_notify: bool,
    pub watchdog_sec: u64,
    /// minisv: restart the program when its process tree's RSS exceeds this (bytes; 0: none).
    pub memory_limit: u64,
    /// minisv: `schedule=`: started at the times of a cron expression.
    pub schedule: Option<Schedule>,
    /// minisv: resource limits, nice value and OOM score set in the child before exec.
    pub limits: Limits,
    /// minisv: `ready_check=` and `health_check=` probes.
    pub checks: Checks,
    /// minisv: sockets the daemon binds and holds for the program across its restarts,
    /// passed as fds 3 and up with systemd's `LISTEN_FDS` convention.
    pub listen: Vec<Listen>,
    /// minisv: text (and a space) put before each line of output in the program's logs.
    pub log_prefix: Option<String>,
    /// minisv: a timestamp before each line of output in the program's logs.
    pub log_timestamps: bool,
    /// Where the process's section starts, for runtime messages.
    pub span: Span,
}

/// minisv: what a `ready_check=` or `health_check=` probe does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Probe {
    /// Connect to this address: success when the connection is accepted.
    Tcp(std::net::SocketAddr),
    /// `GET path` on a loopback address: success on a 2xx status.
    Http { addr: std::net::SocketAddr, host: String, path: String },
    /// Run this command line (split like `command=`): success on exit status 0.
    Command(String),
}

/// minisv: readiness and health probes, intervals and timeout in seconds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checks {
    pub ready: Option<Probe>,
    pub ready_interval: u64,
    pub health: Option<Probe>,
    pub health_interval: u64,
    /// Failed health checks in a row that make the process be restarted.
    pub health_retries: u32,
    /// Each attempt of either probe fails after this long.
    pub timeout: u64,
}

impl Default for Checks {
    /// No probes, and the options table's intervals (what a section without probe keys gets).
    fn default() -> Checks {
        let secs = |key| match super::options::default_of(super::options::PROGRAM, key).parse::<u64>() {
            Ok(n) => n,
            Err(e) => panic!("the default of {key} in the options table is not a number: {e}"),
        };
        Checks {
            ready: None,
            ready_interval: secs("ready_check_interval"),
            health: None,
            health_interval: secs("health_check_interval"),
            health_retries: secs("health_check_retries") as u32,
            timeout: secs("check_timeout"),
        }
    }
}

/// minisv's restart policies, in seconds; 0 leaves Supervisor's behaviour.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RestartPolicy {
    /// The longest wait between two start attempts (the backoff grows by a second per failure).
    pub backoff_max: u64,
    /// A wait before an automatic restart after an exit.
    pub restart_delay: u64,
    /// A FATAL process is started again after this long.
    pub fatal_retry: u64,
    /// An exit within this long after reaching RUNNING counts as a failure: the backoff grows
    /// instead of being reset, so a program that crashes just after startsecs is slowed down.
    pub backoff_window: u64,
}

/// minisv: one `listen=` address, with the name given in `LISTEN_FDNAMES`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listen {
    pub name: String,
    pub addr: ListenAddr,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListenAddr {
    Tcp(std::net::SocketAddr),
    Unix(PathBuf),
}

impl std::fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ListenAddr::Tcp(a) => write!(f, "tcp://{a}"),
            ListenAddr::Unix(p) => write!(f, "unix://{}", p.display()),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FcgiSocket {
    Unix { path: PathBuf, owner: Option<(u32, u32)>, mode: Option<u32> },
    Tcp { host: String, port: u16 },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GroupKind {
    Program,
    EventListener {
        /// Upper-cased event type names, duplicates removed, in the order written.
        events: Vec<String>,
        buffer_size: usize,
        result_handler: String,
    },
    Fcgi {
        socket: FcgiSocket,
        /// The socket URL as written, for change detection and messages.
        socket_url: String,
        backlog: Option<u32>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupConfig {
    pub name: String,
    pub priority: i64,
    pub kind: GroupKind,
    /// Sorted by (priority, name) for homogeneous groups; `programs=` order for `[group:x]`.
    /// Shared: the config as loaded, the config as last re-read and the running process each
    /// hold the same one (with a thousand programs, copies were most of the daemon's memory).
    pub processes: Vec<Arc<ProcessConfig>>,
    pub span: Span,
}
