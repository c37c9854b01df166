//! The daemon's life (reference 2.9–2.11): load the config, set limits and privileges, open
//! the logs and control sockets, daemonize, write the pidfile, run the loop; on reload, do it
//! again in the same process with the new config; at exit, remove the pidfile and sockets.

use std::os::unix::net::UnixStream;
use std::path::Path;

use signal_hook::iterator::backend::SignalDelivery;
use signal_hook::iterator::exfiltrator::SignalOnly;

use super::event_loop::{EventLoop, LoopExit, Signals, HANDLED_SIGNALS};
use super::logfile;
use super::mainlog::MainLog;
use super::spawn;
use super::upgrade;
use crate::cli::{self, DaemonArgs};
use crate::config::{self, Config, LogLevel, MainLog as MainLogSetting, Overrides};
use crate::rpc::server::{Server, Settings};
use crate::sys;

/// A usage error: two lines on stderr and exit status 2, as supervisord.
pub fn usage_error(argv0: &str, msg: &str) -> i32 {
    cli::usage_error(argv0, msg).print()
}

fn load(path: &Path, overrides: &Overrides) -> Result<Config, Vec<String>> {
    config::load(path, overrides).map_err(|errs| errs.iter().map(ToString::to_string).collect())
}

/// A takeover under way (upgrade in place): how to fall back, and what was handed over.
struct TakeOver {
    fallback: upgrade::Fallback,
    handoff: upgrade::Handoff,
    unknown: Vec<String>,
}

impl TakeOver {
    /// This binary cannot take over: the old one is executed again (returns only if that fails).
    fn give_up(self, why: &str) -> i32 {
        let fds = self.handoff.fds();
        self.fallback.give_up(why, &fds)
    }
}

/// `MINISV_UPGRADE_CHECK`: the pre-flight run of an upgrade. Loads the config as the daemon
/// would, reads the draft handoff it was given (its fd is the variable's value) and places each
/// process in the config, and says which version this is and which handoffs it reads.
fn upgrade_check(argv0: &str, args: &DaemonArgs) -> i32 {
    let config = match cli::load_or_exit(argv0, args) {
        Ok(c) => c,
        Err(exit) => return exit.print(),
    };
    let draft = std::env::var(upgrade::CHECK_ENV).ok().and_then(|v| v.parse::<std::os::fd::RawFd>().ok());
    if let Some(fd) = draft {
        let text = match upgrade::read_fd(fd) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("minisv: cannot read the handoff: {e}");
                return 2;
            }
        };
        let handoff = match upgrade::Handoff::decode(&text, std::time::Instant::now(), upgrade::mono_ns()) {
            Ok((h, _)) => h,
            Err(e) => {
                eprintln!("minisv: cannot read the handoff: {e}");
                return 2;
            }
        };
        let missing: Vec<&str> = handoff
            .processes
            .iter()
            .filter(|p| {
                let (group, name) = crate::supervisor::namespec::split(&p.namespec);
                !config
                    .groups
                    .iter()
                    .any(|g| g.name == group && g.processes.iter().any(|pc| Some(pc.name.as_str()) == name))
            })
            .map(|p| p.namespec.as_str())
            .collect();
        if !missing.is_empty() {
            eprintln!("minisv: the config has no place for {}", missing.join(", "));
            return 2;
        }
    }
    println!("minisv {} handoff {}", env!("CARGO_PKG_VERSION"), upgrade::VERSION);
    0
}

/// Runs the daemon; returns the process exit status.
pub fn run(argv0: &str, args: &DaemonArgs) -> i32 {
    // The path an upgrade in place executes: where this binary was started from, read before
    // a package manager replaces the file there.
    let executable = std::env::current_exe().ok();
    if std::env::var_os(upgrade::CHECK_ENV).is_some() {
        return upgrade_check(argv0, args);
    }
    let mut takeover = match upgrade::incoming() {
        None => None,
        Some((fallback, Ok((handoff, unknown)))) => Some(TakeOver { fallback, handoff, unknown }),
        Some((fallback, Err(why))) => return fallback.give_up(&why, &[]),
    };
    sys::tune_allocator();
    if args.config.is_none() && sys::geteuid() == 0 && takeover.is_none() {
        eprintln!(
            "minisv: warning: running as root and searching for the config file in default locations \
             (including the current directory); you probably want to give an absolute path with -c"
        );
    }
    let mut config = match cli::load_or_exit(argv0, args) {
        Ok(c) => c,
        Err(exit) => match takeover {
            Some(t) => return t.give_up(&format!("the config cannot be loaded: {}", exit.stderr.trim())),
            None => return exit.print(),
        },
    };
    let argv0 = argv0.to_string();
    crate::daemon::spawn::mark_fds_cloexec();
    let Start { mut startup_lines, spawner, mut signals } = match first_start(&argv0, &config) {
        Ok(s) => s,
        Err(status) => match takeover {
            Some(t) => return t.give_up(&format!("the daemon cannot start (status {status})")),
            None => return status,
        },
    };
    let mut first = true;
    let mut keep_stopped: Vec<String> = Vec::new();
    // The control servers outlive a reload: listeners that did not change keep their sockets
    // and their connections.
    let mut http_server: Option<Server> = None;
    loop {
        let mut log = match open_main_log(&argv0, &config, first && takeover.is_none()) {
            Ok(log) => log,
            Err(status) => return status,
        };
        for (level, line) in startup_lines.drain(..) {
            log.log(level, &line);
        }
        if let Some(t) = takeover.take() {
            // Upgrade in place: the old daemon's processes, pipes and sockets are taken over.
            let resumed = resume(t, &config, log, &mut signals, args, spawner.clone(), executable.clone());
            let (mut event_loop, exit) = match resumed {
                Ok(l) => l,
                Err(status) => return status,
            };
            first = false;
            match finish_loop(&mut event_loop, exit, &config.supervisord.pidfile, &mut http_server) {
                Next::Exit(status) => return status,
                Next::Reload(new_config, stopped) => {
                    config = *new_config;
                    keep_stopped = stopped;
                }
            }
            continue;
        }
        log_config_notes(&config, &mut log, true);
        let (server, http_lines) = match bind_control(&argv0, &config, http_server.take(), first, &mut log) {
            Ok(bound) => bound,
            Err(status) => return status,
        };

        if first && !config.supervisord.nodaemon {
            if let Err(e) = daemonize(&config, &mut log) {
                log.log(LogLevel::Critical, &format!("cannot daemonize: {e}"));
                return 1;
            }
        }
        first = false;

        let pidfile = config.supervisord.pidfile.clone();
        if let Err(e) = write_pidfile(&pidfile) {
            log.log(LogLevel::Critical, &format!("could not write pidfile {}: {e}", pidfile.display()));
        }

        let reload_path = config.path.clone();
        let overrides = args.overrides.clone();
        let reloader = Box::new(move || load(&reload_path, &overrides));
        let rpc_enabled = config.rpcinterface_supervisor;
        let servers = config.unix_http_servers.len() + config.inet_http_servers.len();
        let mut event_loop = match EventLoop::new(config, log, &mut signals, reloader, spawner.clone()) {
            Ok(l) => l,
            Err(e) => {
                eprintln!("minisv: cannot start the event loop: {e}");
                let _ = std::fs::remove_file(&pidfile);
                return 1;
            }
        };
        if let Err(e) = event_loop.set_http(server) {
            event_loop.log.log(LogLevel::Critical, &format!("cannot serve the control sockets: {e}"));
        }
        if rpc_enabled {
            for _ in 0..servers {
                event_loop.log.log(LogLevel::Info, "RPC interface 'supervisor' initialized");
            }
        }
        for (level, line) in http_lines {
            event_loop.log.log(level, &line);
        }
        event_loop.log.log(LogLevel::Info, &format!("minisv started with pid {}", sys::getpid()));
        if let Some(exe) = executable.clone() {
            event_loop.set_executable(exe);
        }
        event_loop.add_configured_groups();
        event_loop.apply_state_file();
        event_loop.keep_stopped(&std::mem::take(&mut keep_stopped));
        let exit = event_loop.run(&mut signals);
        match finish_loop(&mut event_loop, exit, &pidfile, &mut http_server) {
            Next::Exit(status) => return status,
            Next::Reload(new_config, stopped) => {
                config = *new_config;
                keep_stopped = stopped;
            }
        }
    }
}

/// What follows a loop's end.
enum Next {
    Exit(i32),
    Reload(Box<Config>, Vec<String>),
}

/// After a loop: its pipes and logs closed, the pidfile removed; at shutdown the control
/// sockets too.
fn finish_loop(
    event_loop: &mut EventLoop,
    exit: std::io::Result<LoopExit>,
    pidfile: &Path,
    http_server: &mut Option<Server>,
) -> Next {
    *http_server = event_loop.take_http();
    event_loop.close_all();
    let _ = std::fs::remove_file(pidfile);
    match exit {
        Ok(LoopExit::Shutdown) => {
            // Closes the sockets and unlinks the socket files.
            drop(http_server.take());
            event_loop.log.close();
            Next::Exit(event_loop.exit_status)
        }
        Ok(LoopExit::Reload(new_config, stopped)) => Next::Reload(new_config, stopped),
        Err(e) => {
            event_loop.log.log(LogLevel::Critical, &format!("event loop failed: {e}"));
            Next::Exit(1)
        }
    }
}

/// Upgrade in place, the new daemon's first loop: the event loop is made, the control
/// listeners taken over (the last step that can fail: until then the old binary can be
/// executed again), then the sockets, the groups and the carried processes; it runs until it
/// ends. Nothing is started that was not, and no event is sent for what did not change.
fn resume(
    t: TakeOver,
    config: &Config,
    mut log: MainLog,
    signals: &mut Signals,
    args: &DaemonArgs,
    spawner: spawn::Spawner,
    executable: Option<std::path::PathBuf>,
) -> Result<(EventLoop, std::io::Result<LoopExit>), i32> {
    log_config_notes(config, &mut log, false);
    let reload_path = config.path.clone();
    let overrides = args.overrides.clone();
    let reloader = Box::new(move || load(&reload_path, &overrides));
    let mut event_loop = match EventLoop::new(config.clone(), log, signals, reloader, spawner) {
        Ok(l) => l,
        Err(e) => return Err(t.give_up(&format!("cannot start the event loop: {e}"))),
    };
    // A fault for the tests of the fallback (debug builds only; the first takeover only).
    #[cfg(debug_assertions)]
    if t.fallback.failed.is_none() && std::env::var_os("MINISV_TEST_FAIL_TAKEOVER").is_some() {
        return Err(t.give_up("MINISV_TEST_FAIL_TAKEOVER is set"));
    }
    let (settings, warnings) = Settings::from_env();
    let inherited: Vec<std::os::fd::OwnedFd> = t.handoff.http.iter().filter_map(|fd| upgrade::adopt(*fd)).collect();
    let (server, mut http_lines) = match Server::bind_adopting(config, settings, inherited) {
        Ok(bound) => bound,
        Err(e) => return Err(t.give_up(&format!("cannot open the control sockets: {e}"))),
    };
    http_lines.extend(warnings.into_iter().map(|w| (LogLevel::Warn, w)));
    // From here nothing fails: the old binary is not needed any more.
    let TakeOver { fallback, handoff, unknown } = t;
    let failed = fallback.failed.clone();
    if let Err(e) = event_loop.set_http(server) {
        event_loop.log.log(LogLevel::Critical, &format!("cannot serve the control sockets: {e}"));
    }
    for (level, line) in http_lines {
        event_loop.log.log(level, &line);
    }
    for line in unknown {
        event_loop.log.log(LogLevel::Warn, &format!("upgrade: {line} (written by minisv {})", handoff.from_version));
    }
    if let Some(exe) = executable {
        event_loop.set_executable(exe);
    }
    event_loop.adopt_sockets(&handoff);
    event_loop.set_resuming(true);
    event_loop.add_configured_groups();
    event_loop.perform_actions();
    let missing = event_loop.take_over(&handoff);
    event_loop.set_resuming(false);
    event_loop.load_state_file(false);
    for name in &missing {
        let msg = format!("upgrade: {name} is not in the config: its pipes are closed, and it is not supervised");
        event_loop.log.log(LogLevel::Error, &msg);
    }
    upgrade::close_all(&handoff.fds());
    fallback.done();
    let kept = handoff.processes.iter().filter(|p| p.core.pid != 0 && !missing.contains(&p.namespec)).count();
    let ok = failed.is_none();
    let message = match failed {
        None => format!(
            "upgraded in place from minisv {} to {} (pid {}): {kept} running processes taken over",
            handoff.from_version,
            env!("CARGO_PKG_VERSION"),
            sys::getpid()
        ),
        Some(why) => format!(
            "upgrade failed: the new binary could not take over ({why}); minisv {} (pid {}) goes on",
            env!("CARGO_PKG_VERSION"),
            sys::getpid()
        ),
    };
    event_loop.record_takeover(handoff.generation, ok, message);
    if let Err(e) = write_pidfile(&config.supervisord.pidfile) {
        let msg = format!("could not write pidfile {}: {e}", config.supervisord.pidfile.display());
        event_loop.log.log(LogLevel::Critical, &msg);
    }
    // Signals that came during the exec were held: they are delivered now, to our handlers.
    sys::signals::unblock_only(HANDLED_SIGNALS);
    let exit = event_loop.run_resumed(signals);
    Ok((event_loop, exit))
}

/// What the first start sets up once: the spawner, the limits, the privileges, the signals.
struct Start {
    /// Lines for the main log, once it is open.
    startup_lines: Vec<(LogLevel, String)>,
    spawner: spawn::Spawner,
    signals: Signals,
}

/// First start only: limits, privileges, signals; refuses to run beside another instance.
/// `Err` is the exit status (the error was printed).
fn first_start(argv0: &str, config: &Config) -> Result<Start, i32> {
    let mut startup_lines: Vec<(LogLevel, String)> = Vec::new();
    // Made while the fd numbers are still low (its fd slots), kept across reloads.
    let (spawner, note) = spawn::Spawner::new();
    if let Some(e) = note {
        startup_lines.push((LogLevel::Warn, e));
    }
    for (resource, min, name) in [
        (libc::RLIMIT_NOFILE, config.supervisord.minfds, "RLIMIT_NOFILE"),
        (libc::RLIMIT_NPROC, config.supervisord.minprocs, "RLIMIT_NPROC"),
    ] {
        match sys::raise_rlimit(resource, min) {
            Ok(true) => startup_lines.push((LogLevel::Info, format!("Increased {name} limit to {min}"))),
            Ok(false) => {}
            Err(e) => {
                let key = if name == "RLIMIT_NOFILE" { "minfds" } else { "minprocs" };
                return Err(usage_error(
                    argv0,
                    &format!(
                        "The minimum number of {} required to run this process is {} as per the \"{key}\" command-line \
                         argument or config file setting. The current environment will only allow you to open fewer. \
                         Either raise the limit (ulimit) or lower the \"{key}\" setting ({e}).",
                        if key == "minfds" { "file descriptors" } else { "available processes" },
                        min
                    ),
                ));
            }
        }
    }
    match &config.supervisord.user {
        Some(user) => {
            let euid = sys::geteuid();
            if euid != 0 && euid != user.uid {
                return Err(usage_error(argv0, "Can't drop privilege as nonroot user"));
            }
            if euid == 0 {
                if let Err(e) = sys::drop_privileges(user.uid, user.gid, &user.groups) {
                    return Err(usage_error(argv0, &format!("Could not switch to user {}: {e}", user.name)));
                }
                startup_lines.push((LogLevel::Info, format!("Set uid to user {} succeeded", user.uid)));
            }
        }
        None => {
            if sys::geteuid() == 0 {
                startup_lines.insert(
                    0,
                    (
                        LogLevel::Critical,
                        "minisv is running as root.  Privileges were not dropped because no user is specified in \
                         the config file.  If you intend to run as root, you can set user=root in the config file to \
                         avoid this message."
                            .into(),
                    ),
                );
            }
        }
    }
    if sys::getpid() != 1 {
        // Orphans of our children are re-parented to us and reaped (as PID 1 that is automatic).
        let _ = sys::set_child_subreaper();
    }
    let signals = match make_signals() {
        Ok(s) => s,
        Err(e) => return Err(usage_error(argv0, &format!("cannot install signal handlers: {e}"))),
    };

    if let Some(pid) = running_instance(&config.supervisord.pidfile) {
        return Err(usage_error(
            argv0,
            &format!(
                "another minisv is running with pid {pid} (pidfile {}); stop it first, or use another pidfile",
                config.supervisord.pidfile.display()
            ),
        ));
    }
    Ok(Start { startup_lines, spawner, signals })
}

/// The main log of this (re)start. At the first start a log that cannot be opened is an error
/// (`Err`: the exit status); after a reload the daemon goes on, logging to stderr.
fn open_main_log(argv0: &str, config: &Config, first: bool) -> Result<MainLog, i32> {
    let mut log = MainLog::early(config.supervisord.loglevel);
    let echo = config.supervisord.nodaemon && !config.supervisord.silent;
    let json = config.supervisord.log_format == crate::config::LogFormat::Json;
    log.set_format(config.supervisord.logfile_rotation, json);
    let opened = match &config.supervisord.logfile {
        MainLogSetting::File(p) => {
            log.open(Some(p), config.supervisord.logfile_maxbytes, config.supervisord.logfile_backups, echo)
        }
        MainLogSetting::Syslog => log.open(None, 0, 0, echo),
    };
    if let Err(e) = opened {
        let shown = match &config.supervisord.logfile {
            MainLogSetting::File(p) => p.display().to_string(),
            MainLogSetting::Syslog => "syslog".into(),
        };
        if first {
            return Err(usage_error(argv0, &format!("cannot open the log file {shown}: {e}")));
        }
        // After a reload the daemon goes on: the lines go to stderr, the newest 64 KiB are
        // kept for the file, and it is tried again at the next reopen (SIGUSR2).
        log.log(
            LogLevel::Error,
            &format!(
                "cannot open the log file {shown} after the reload: {e}; logging to stderr until it can be \
                 opened (tried again on SIGUSR2)"
            ),
        );
    }
    Ok(log)
}

/// The config's warnings and notes, and the cleanup of old AUTO logs (not after an upgrade in
/// place: the programs still write to theirs).
fn log_config_notes(config: &Config, log: &mut MainLog, cleanup: bool) {
    for w in &config.warnings {
        log.log(LogLevel::Warn, &w.to_string());
    }
    for i in &config.infos {
        log.log(LogLevel::Info, i);
    }
    if cleanup && !config.supervisord.nocleanup {
        if let Err(e) = logfile::cleanup_auto_logs(&config.supervisord.childlogdir, &config.supervisord.identifier) {
            log.log(
                LogLevel::Warn,
                &format!("cannot clean up AUTO logs in {}: {e}", config.supervisord.childlogdir.display()),
            );
        }
    }
}

/// The control sockets: bound at the first start (before daemonizing, so that a bind error
/// is the user's to see), reconfigured after a reload. `Err` is the exit status.
fn bind_control(
    argv0: &str,
    config: &Config,
    kept: Option<Server>,
    first: bool,
    log: &mut MainLog,
) -> Result<(Server, Vec<(LogLevel, String)>), i32> {
    let bound = match kept {
        None => {
            let (settings, warnings) = Settings::from_env();
            Server::bind(config, settings).map(|(server, mut lines)| {
                lines.extend(warnings.into_iter().map(|w| (LogLevel::Warn, w)));
                (server, lines)
            })
        }
        Some(mut server) => server.reconfigure(config).map(|lines| (server, lines)),
    };
    match bound {
        Ok(b) => Ok(b),
        Err(msg) if first => Err(usage_error(argv0, &msg)),
        Err(msg) => {
            log.log(LogLevel::Critical, &format!("cannot open the control sockets after a reload: {msg}"));
            Err(2)
        }
    }
}

fn write_pidfile(pidfile: &Path) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .custom_flags(logfile::nofollow_in_shared_dir(pidfile))
        .open(pidfile)?;
    writeln!(f, "{}", sys::getpid())
}

/// The pid in `pidfile` if it names a live minisv other than this process (a second instance
/// on the same config would start every program twice).
fn running_instance(pidfile: &Path) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(pidfile).ok()?.trim().parse().ok()?;
    if pid == sys::getpid() || pid == 0 {
        return None;
    }
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok()?;
    let ours = std::fs::read_link("/proc/self/exe").ok()?;
    // A recycled pid that now belongs to another program is not an instance.
    (exe.file_name() == ours.file_name()).then_some(pid)
}

fn make_signals() -> std::io::Result<Signals> {
    let (read, write) = UnixStream::pair()?;
    read.set_nonblocking(true)?;
    write.set_nonblocking(true)?;
    let signals = SignalDelivery::with_pipe(read, write, SignalOnly, HANDLED_SIGNALS.iter().copied());
    sys::signals::dispositions_changed();
    signals
}

/// Supervisor's daemonize (2.11): fork, the parent exits, the child changes directory (if
/// `directory=`), points 0-2 at /dev/null, starts a new session and sets the umask.
fn daemonize(config: &Config, log: &mut MainLog) -> std::io::Result<()> {
    match sys::fork()? {
        0 => {}
        _ => {
            log.log(LogLevel::Blather, "minisv forked; parent exiting");
            // SAFETY: _exit ends the parent at once without running destructors, which belong to
            // the child now.
            unsafe { libc::_exit(0) };
        }
    }
    log.log(LogLevel::Info, "daemonizing the minisv process");
    if let Some(dir) = &config.supervisord.directory {
        match std::env::set_current_dir(dir) {
            Ok(()) => log.log(
                LogLevel::Info,
                &format!("set current directory: {}", crate::daemon::spawn::py_repr(&dir.display().to_string())),
            ),
            Err(e) => log.log(
                LogLevel::Critical,
                &format!("can't chdir into {}: {e}", crate::daemon::spawn::py_repr(&dir.display().to_string())),
            ),
        }
    }
    sys::stdio_to_devnull()?;
    sys::setsid()?;
    sys::umask(config.supervisord.umask);
    Ok(())
}
