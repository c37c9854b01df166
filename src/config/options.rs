//! The config vocabulary, declared once: every section kind with its keys and defaults. The
//! loader warns about keys not listed here; `echo-conf` and its test are checked against it.

/// One key of a section.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Key {
    pub name: &'static str,
    /// The default as it would be written in the file (empty when there is none).
    pub default: &'static str,
    pub doc: &'static str,
}

const fn key(name: &'static str, default: &'static str, doc: &'static str) -> Key {
    Key { name, default, doc }
}

pub const SUPERVISORD: &[Key] = &[
    key("logfile", "supervisord.log", "main log file, or 'syslog'"),
    key("logfile_maxbytes", "50MB", "rotate the main log at this size (0 = never)"),
    key("logfile_backups", "10", "rotated main logs to keep"),
    key("loglevel", "info", "critical, error, warn, info, debug, trace or blather"),
    key("pidfile", "supervisord.pid", "pid file of the daemon"),
    key("umask", "022", "umask of the daemon (applied when daemonizing)"),
    key("nodaemon", "false", "stay in the foreground"),
    key("silent", "false", "with nodaemon, do not copy the log to stdout"),
    key("minfds", "1024", "raise the open files limit to at least this"),
    key("minprocs", "200", "raise the process limit to at least this"),
    key("nocleanup", "false", "keep AUTO child logs at start"),
    key("childlogdir", "/tmp", "directory of AUTO child logs (default: $TMPDIR or /tmp)"),
    key("user", "", "drop privileges to this user at start"),
    key("directory", "", "chdir here when daemonizing"),
    key("strip_ansi", "false", "strip ANSI escapes from child output"),
    key("environment", "", "KEY=\"value\",KEY2=\"value\" added to every child"),
    key("environment_file", "", "minisv: dotenv files (comma-separated) read at every spawn of every child"),
    key(
        "credentials_directory",
        "",
        "minisv: where programs' credentials= are copied (default: /run/minisv/credentials as root)",
    ),
    key("identifier", "supervisor", "name of this instance in the RPC API"),
    key("restart_limit", "0", "minisv: automatic restarts per second across all programs (0: no limit)"),
    key("exit_on", "never", "minisv: exit when programs end for good: never, all-exited or any-exited"),
    key("state_file", "", "minisv: file that keeps programs started or stopped by hand across restarts"),
    // Logs for small disks (issue 22, point 4).
    key("logfile_rotate", "size", "minisv: also rotate the main log hourly or daily (size: at maxbytes only)"),
    key("logfile_compress", "false", "minisv: compress rotated main logs with gzip"),
    key("log_format", "text", "minisv: text or json, for what the daemon writes to its stdout"),
];

pub const UNIX_HTTP_SERVER: &[Key] = &[
    key("file", "", "path of the control socket (required)"),
    key("chmod", "0700", "socket file mode"),
    key("chown", "", "socket owner, user or user:group"),
    key("username", "", "user name for the control interface"),
    key("password", "", "password, plain or {SHA} followed by the SHA-1 hex digest"),
];

pub const INET_HTTP_SERVER: &[Key] = &[
    key("port", "", "host:port to listen on (required); *:port or :port for all interfaces"),
    key("username", "", "user name for the control interface"),
    key("password", "", "password, plain or {SHA} followed by the SHA-1 hex digest"),
];

pub const SUPERVISORCTL: &[Key] = &[
    key("serverurl", "http://localhost:9001", "unix:///path/to/socket or http://host:port"),
    key("username", "", "user name sent to the server"),
    key("password", "", "password sent to the server"),
    key("prompt", "minisv", "prompt of the interactive shell"),
    key("history_file", "", "readline history file"),
];

/// The default of `name` in `table`, as it would be written in the file ("" when there is
/// none). The parser takes its defaults from here; a name the table lacks is a mistake in the
/// parser, found by the test of the defaults, which reads every key.
pub fn default_of(table: &[Key], name: &str) -> &'static str {
    match table.iter().find(|k| k.name == name) {
        Some(k) => k.default,
        None => panic!("the options table has no key {name}"),
    }
}

/// Keys of `[program:x]`; `[eventlistener:x]` and `[fcgi-program:x]` add theirs below.
pub const PROGRAM: &[Key] = &[
    key("command", "", "the program and its arguments (required); no shell is involved"),
    key("process_name", "%(program_name)s", "process name; must contain %(process_num) when numprocs > 1"),
    key("numprocs", "1", "number of processes"),
    key("numprocs_start", "0", "first process_num"),
    key("priority", "999", "start order (low first) and stop order (high first)"),
    key("autostart", "true", "start when the daemon starts"),
    key("autorestart", "unexpected", "restart on exit: true, false or unexpected"),
    key("startsecs", "1", "seconds the process must stay up to count as started"),
    key("startretries", "3", "failed starts before FATAL; infinite (or -1): never give up (minisv)"),
    key("backoff_max", "0", "minisv: the longest wait in seconds between start attempts (0: no limit)"),
    key("restart_delay", "0", "minisv: seconds to wait before an automatic restart after an exit"),
    key("fatal_retry", "0", "minisv: seconds after which a FATAL process is started again (0: never)"),
    key("backoff_window", "0", "minisv: an exit this many seconds after RUNNING still grows the backoff (0: off)"),
    key("exitcodes", "0", "expected exit codes"),
    key("stopsignal", "TERM", "signal sent to stop the process"),
    key("stopwaitsecs", "10", "seconds to wait before SIGKILL"),
    key("stopasgroup", "false", "send the stop signal to the whole process group"),
    key("killasgroup", "false", "send SIGKILL to the whole process group"),
    key("user", "", "run as this user"),
    key("directory", "", "chdir here before exec"),
    key("umask", "", "umask of the process (default: inherited)"),
    key("redirect_stderr", "false", "send stderr to the stdout log"),
    key("stdout_logfile", "AUTO", "stdout log: a path, AUTO or NONE"),
    key("stdout_logfile_maxbytes", "50MB", "rotate the stdout log at this size"),
    key("stdout_logfile_backups", "10", "rotated stdout logs to keep"),
    key("stdout_capture_maxbytes", "0", "capture mode buffer (0 = off)"),
    key("stdout_events_enabled", "false", "emit PROCESS_LOG_STDOUT events"),
    key("stdout_syslog", "false", "also send stdout to syslog"),
    key("stderr_logfile", "AUTO", "stderr log: a path, AUTO or NONE"),
    key("stderr_logfile_maxbytes", "50MB", "rotate the stderr log at this size"),
    key("stderr_logfile_backups", "10", "rotated stderr logs to keep"),
    key("stderr_capture_maxbytes", "0", "capture mode buffer (0 = off)"),
    key("stderr_events_enabled", "false", "emit PROCESS_LOG_STDERR events"),
    key("stderr_syslog", "false", "also send stderr to syslog"),
    // Logs for small disks (issue 22, point 4).
    key("stdout_logfile_rotate", "size", "minisv: also rotate the stdout log hourly or daily"),
    key("stdout_logfile_compress", "false", "minisv: compress rotated stdout logs with gzip"),
    key("stderr_logfile_rotate", "size", "minisv: also rotate the stderr log hourly or daily"),
    key("stderr_logfile_compress", "false", "minisv: compress rotated stderr logs with gzip"),
    key("environment", "", "KEY=\"value\",KEY2=\"value\" for this process"),
    key("environment_file", "", "minisv: dotenv files (comma-separated) read at every spawn, under environment="),
    key(
        "credentials",
        "",
        "minisv: NAME:PATH,... files copied at every spawn into $CREDENTIALS_DIRECTORY, readable by the program's user only",
    ),
    key("serverurl", "AUTO", "SUPERVISOR_SERVER_URL given to the process"),
    key(
        "depends_on",
        "",
        "minisv: programs or groups that must be RUNNING before this one starts (and stop after it)",
    ),
    key("ready_fd", "", "minisv: the program writes a line on this fd when it is ready (instead of startsecs)"),
    key("ready_timeout", "60", "minisv: seconds the program has to become ready (with ready_fd, ready_check or ready_notify)"),
    key("ready_notify", "false", "minisv: ready when the program sends READY=1 to NOTIFY_SOCKET (systemd's sd_notify)"),
    key("watchdog_sec", "0", "minisv: restart the program when its WATCHDOG=1 pings stop for this long (0: no watchdog)"),
    key("memory_limit", "0", "minisv: restart the program when its process tree uses more memory (RSS) than this (0: none)"),
    key("schedule", "", "minisv: start the program at these times: a cron expression (5 fields, or 6 with seconds) or @hourly"),
    key("schedule_overlap", "skip", "minisv: a run due while the last still runs: skip or queue"),
    key("schedule_timezone", "local", "minisv: the schedule's time: local or utc"),
    key("run_on_start", "false", "minisv: a scheduled program also runs when the daemon starts"),
    key("rlimit_nofile", "", "minisv: open files limit, soft[:hard] or infinity (set before exec)"),
    key("rlimit_nproc", "", "minisv: processes limit of the program's user, soft[:hard] or infinity"),
    key("rlimit_core", "", "minisv: core file size limit (e.g. 0 or 100MB), soft[:hard] or infinity"),
    key("rlimit_as", "", "minisv: address space limit (e.g. 2GB), soft[:hard] or infinity"),
    key("rlimit_cpu", "", "minisv: CPU seconds limit, soft[:hard] or infinity"),
    key("rlimit_fsize", "", "minisv: file size limit (e.g. 1GB), soft[:hard] or infinity"),
    key("nice", "", "minisv: the program's nice value, -20 to 19"),
    key("oom_score_adj", "", "minisv: the program's OOM killer adjustment, -1000 to 1000"),
    key("cgroup", "false", "minisv: run the program in a cgroup (v2) of its own, whose leftovers are killed when it ends"),
    key("memory_max", "", "minisv: cgroup memory.max of the program (a size, or max); implies cgroup"),
    key("memory_high", "", "minisv: cgroup memory.high of the program (a size, or max); implies cgroup"),
    key("cpu_max", "", "minisv: cgroup cpu.max of the program, in CPUs (e.g. 0.5 or 2; or 50%% of one); implies cgroup"),
    key("pids_max", "", "minisv: cgroup pids.max of the program (a number, or max); implies cgroup"),
    key("ready_check", "", "minisv: a probe (host:port, http://127.0.0.1:port/path or a command) that says the program is ready"),
    key("ready_check_interval", "1", "minisv: seconds between ready_check attempts"),
    key("health_check", "", "minisv: a probe (same forms as ready_check) run while RUNNING; failing it restarts the program"),
    key("health_check_interval", "10", "minisv: seconds between health checks"),
    key("health_check_retries", "3", "minisv: failed health checks in a row before a restart"),
    key(
        "listen",
        "",
        "minisv: sockets held open across restarts and passed as fds 3 and up (LISTEN_FDS): [NAME:]tcp://IP:PORT or [NAME:]unix:///path, comma separated",
    ),
    key("check_timeout", "5", "minisv: seconds before one ready_check or health_check attempt fails"),
    key(
        "log_prefix",
        "",
        "minisv: put this text and a space before each line of output in the logs; %(process_name)s works here",
    ),
    key("log_timestamps", "false", "minisv: put a timestamp before each line of output in the logs"),
    key(
        "critical",
        "false",
        "minisv: when this program goes FATAL, or exits and will not be restarted, stop everything and exit with its status",
    ),
];

pub const EVENTLISTENER_EXTRA: &[Key] = &[
    key("events", "", "event types to subscribe to (required)"),
    key("buffer_size", "10", "event queue size"),
    key(
        "result_handler",
        "supervisor.dispatchers:default_handler",
        "built in: this one, supervisor_stdlog:log_handler and supervisor_stdout:event_handler",
    ),
];

/// The one key with two defaults: an `[eventlistener:x]` section's `priority` is 999 for its
/// processes (`PROGRAM`) and -1 for its pool (supervisord 4.3 reports process_prio 999 and
/// group_prio -1). Not in `keys_of`: the section has one `priority` key.
pub const EVENTLISTENER_POOL: &[Key] = &[key("priority", "-1", "priority of the pool")];

pub const FCGI_EXTRA: &[Key] = &[
    key("socket", "", "unix:///absolute/path or tcp://host:port (required)"),
    key("socket_backlog", "", "listen backlog (default: SOMAXCONN)"),
    key("socket_owner", "", "unix socket owner, user or user:group"),
    key("socket_mode", "0700", "unix socket mode"),
];

pub const GROUP: &[Key] =
    &[key("programs", "", "comma-separated program names (required)"), key("priority", "999", "group priority")];

pub const INCLUDE: &[Key] = &[key("files", "", "space-separated globs, relative to this file's directory")];

pub const RPCINTERFACE: &[Key] = &[key(
    "supervisor.rpcinterface_factory",
    "supervisor.rpcinterface:make_main_rpcinterface",
    "the only factory minisv provides",
)];

/// Supervisor 2 settings (and main-log settings) that people put in program sections.
pub const LEGACY_PROGRAM_KEYS: &[(&str, &str)] = &[
    (
        "loglevel",
        "'loglevel' is not a program option (it is the [supervisord] main log level); it is ignored: child output is logged as is",
    ),
    (
        "log_stderr",
        "'log_stderr' is a Supervisor 2 setting, not a program option; it is ignored: stderr is logged to stderr_logfile= (or to the stdout log with redirect_stderr=true)",
    ),
    (
        "log_stdout",
        "'log_stdout' is a Supervisor 2 setting, not a program option; it is ignored: stdout is logged to stdout_logfile=",
    ),
    (
        "logfile",
        "'logfile' is a Supervisor 2 setting, not a program option; it is ignored: use stdout_logfile= (and stderr_logfile= or redirect_stderr=true)",
    ),
];

/// Keys that well-known Supervisor plugins read from `[program:x]` sections, with the plugin
/// that reads them. supervisord ignores them, and so does minisv, without a warning: the
/// plugin (an event listener) reads the config file itself.
pub const PLUGIN_PROGRAM_KEYS: &[(&str, &str)] = &[
    ("dependent_startup", "supervisord-dependent-startup"),
    ("dependent_startup_wait_for", "supervisord-dependent-startup"),
    ("dependent_startup_inherit_priority", "supervisord-dependent-startup"),
];

/// Event type names `events=` accepts (reference 6.1).
pub const EVENT_TYPES: &[&str] = &[
    "EVENT",
    "PROCESS_STATE",
    "PROCESS_STATE_STOPPED",
    "PROCESS_STATE_EXITED",
    "PROCESS_STATE_STARTING",
    "PROCESS_STATE_STOPPING",
    "PROCESS_STATE_BACKOFF",
    "PROCESS_STATE_FATAL",
    "PROCESS_STATE_RUNNING",
    "PROCESS_STATE_UNKNOWN",
    "PROCESS_COMMUNICATION",
    "PROCESS_COMMUNICATION_STDOUT",
    "PROCESS_COMMUNICATION_STDERR",
    "PROCESS_LOG",
    "PROCESS_LOG_STDOUT",
    "PROCESS_LOG_STDERR",
    "REMOTE_COMMUNICATION",
    "SUPERVISOR_STATE_CHANGE",
    "SUPERVISOR_STATE_CHANGE_RUNNING",
    "SUPERVISOR_STATE_CHANGE_STOPPING",
    "TICK",
    "TICK_5",
    "TICK_60",
    "TICK_3600",
    "PROCESS_GROUP",
    "PROCESS_GROUP_ADDED",
    "PROCESS_GROUP_REMOVED",
    "PROCESS_OOM",
];

/// The kinds of sections, by name or `prefix:`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SectionKind {
    Supervisord,
    UnixHttpServer,
    InetHttpServer,
    Supervisorctl,
    Program,
    Group,
    EventListener,
    FcgiProgram,
    Include,
    RpcInterface,
    CtlPlugin,
}

/// Section names: `(name, takes ":x" suffix, requires it, kind)`.
pub const SECTIONS: &[(&str, bool, bool, SectionKind)] = &[
    ("supervisord", false, false, SectionKind::Supervisord),
    ("unix_http_server", true, false, SectionKind::UnixHttpServer),
    ("inet_http_server", true, false, SectionKind::InetHttpServer),
    ("supervisorctl", false, false, SectionKind::Supervisorctl),
    ("program", true, true, SectionKind::Program),
    ("group", true, true, SectionKind::Group),
    ("eventlistener", true, true, SectionKind::EventListener),
    ("fcgi-program", true, true, SectionKind::FcgiProgram),
    ("include", false, false, SectionKind::Include),
    ("rpcinterface", true, true, SectionKind::RpcInterface),
    ("ctlplugin", true, true, SectionKind::CtlPlugin),
];

/// What kind of section a header names, if any.
pub fn section_kind(name: &str) -> Option<SectionKind> {
    let (base, suffix) = match name.split_once(':') {
        Some((b, s)) => (b, Some(s)),
        None => (name, None),
    };
    SECTIONS.iter().find_map(|(n, takes, requires, kind)| {
        let ok = *n == base && (suffix.is_none() || *takes) && (suffix.is_some() || !*requires);
        ok.then_some(*kind)
    })
}

/// The keys a section kind accepts (`None`: any key, e.g. `[rpcinterface:x]` kwargs).
pub fn keys_of(kind: SectionKind) -> Option<Vec<&'static Key>> {
    let keys: Vec<&Key> = match kind {
        SectionKind::Supervisord => SUPERVISORD.iter().collect(),
        SectionKind::UnixHttpServer => UNIX_HTTP_SERVER.iter().collect(),
        SectionKind::InetHttpServer => INET_HTTP_SERVER.iter().collect(),
        SectionKind::Supervisorctl => SUPERVISORCTL.iter().collect(),
        SectionKind::Program => PROGRAM.iter().collect(),
        SectionKind::EventListener => PROGRAM.iter().chain(EVENTLISTENER_EXTRA).collect(),
        SectionKind::FcgiProgram => PROGRAM.iter().chain(FCGI_EXTRA).collect(),
        SectionKind::Group => GROUP.iter().collect(),
        SectionKind::Include => INCLUDE.iter().collect(),
        SectionKind::RpcInterface | SectionKind::CtlPlugin => return None,
    };
    Some(keys)
}

/// Levenshtein distance, for "did you mean".
pub fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The closest candidate within a small distance.
pub fn did_you_mean<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (word.chars().count() / 3).clamp(1, 3);
    candidates
        .into_iter()
        .map(|c| (edit_distance(word, c), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn near_misses_get_a_suggestion() {
        let keys = PROGRAM.iter().map(|k| k.name);
        assert_eq!(did_you_mean("autorestar", keys.clone()), Some("autorestart"));
        assert_eq!(did_you_mean("comand", keys.clone()), Some("command"));
        assert_eq!(did_you_mean("xyzzy", keys), None);
    }

    #[test]
    fn section_kinds_follow_supervisor_names() {
        assert_eq!(section_kind("program:x"), Some(SectionKind::Program));
        assert_eq!(section_kind("program"), None);
        assert_eq!(section_kind("unix_http_server"), Some(SectionKind::UnixHttpServer));
        assert_eq!(section_kind("unix_http_server:b"), Some(SectionKind::UnixHttpServer));
        assert_eq!(section_kind("supervisord:x"), None);
        assert_eq!(section_kind("programs:x"), None);
    }

    #[test]
    fn keys_are_unique_per_section() {
        for (_, _, _, kind) in SECTIONS {
            if let Some(keys) = keys_of(*kind) {
                let mut names: Vec<&str> = keys.iter().map(|k| k.name).collect();
                names.sort();
                let before = names.len();
                names.dedup();
                assert_eq!(before, names.len(), "{kind:?}");
            }
        }
    }
}
