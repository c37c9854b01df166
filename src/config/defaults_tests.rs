//! The options table (`options.rs`) is where defaults are written: a config that leaves every
//! optional key out must load to exactly the table's defaults, key by key, so that a default
//! written anywhere else (and different) fails here. Supervisor's own defaults are compared
//! with the table by the integration test `defaults::table_matches_supervisor_4_3`.

use std::path::{Path, PathBuf};

use super::load::absolute;
use super::options::{self, Key};
use super::types::{self, LogFileName};
use super::*;

/// The keys a section cannot go without: they have no default.
const REQUIRED: &[(&str, &str)] = &[
    ("PROGRAM", "command"),
    ("EVENTLISTENER_EXTRA", "events"),
    ("FCGI_EXTRA", "socket"),
    ("GROUP", "programs"),
    ("INCLUDE", "files"),
    ("UNIX_HTTP_SERVER", "file"),
    ("INET_HTTP_SERVER", "port"),
];

const TABLES: &[(&str, &[Key])] = &[
    ("SUPERVISORD", options::SUPERVISORD),
    ("UNIX_HTTP_SERVER", options::UNIX_HTTP_SERVER),
    ("INET_HTTP_SERVER", options::INET_HTTP_SERVER),
    ("SUPERVISORCTL", options::SUPERVISORCTL),
    ("PROGRAM", options::PROGRAM),
    ("EVENTLISTENER_EXTRA", options::EVENTLISTENER_EXTRA),
    ("EVENTLISTENER_POOL", options::EVENTLISTENER_POOL),
    ("FCGI_EXTRA", options::FCGI_EXTRA),
    ("GROUP", options::GROUP),
    ("INCLUDE", options::INCLUDE),
    ("RPCINTERFACE", options::RPCINTERFACE),
];

struct Loaded {
    config: Config,
    dir: PathBuf,
}

impl Drop for Loaded {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.dir).ok();
    }
}

/// Every kind of section, each with only the keys it requires.
fn load_minimal() -> Loaded {
    // One directory per call: the tests run in parallel, and each removes its own.
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("minisv-defaults-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let factory = options::default_of(options::RPCINTERFACE, "supervisor.rpcinterface_factory");
    let text = format!(
        "[supervisord]\n\
         [unix_http_server]\nfile={d}/s.sock\n\
         [inet_http_server]\nport=127.0.0.1:9001\n\
         [supervisorctl]\n\
         [rpcinterface:supervisor]\nsupervisor.rpcinterface_factory={factory}\n\
         [program:p]\ncommand=/bin/true\n\
         [program:n]\ncommand=/bin/true\nprocess_name=n%(process_num)d\n\
         [eventlistener:l]\ncommand=/bin/cat\nevents=TICK_5\n\
         [fcgi-program:f]\ncommand=/bin/true\nsocket=unix://{d}/f.sock\n\
         [group:g]\nprograms=q\n\
         [program:q]\ncommand=/bin/true\n",
        d = dir.display()
    );
    let path = dir.join("supervisord.conf");
    std::fs::write(&path, text).expect("write config");
    let config = match load(&path, &Overrides::default()) {
        Ok(c) => c,
        Err(e) => panic!("the minimal config does not load: {e:#?}"),
    };
    Loaded { config, dir }
}

/// The schedule of a program that sets only `schedule=`.
fn scheduled() -> crate::config::Schedule {
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("minisv-defaults-sched-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("supervisord.conf");
    std::fs::write(&path, "[supervisord]\n[program:s]\ncommand=/bin/true\nschedule=@hourly\n").expect("write config");
    let config = load(&path, &Overrides::default());
    let _ = std::fs::remove_dir_all(&dir);
    let config = config.unwrap_or_else(|e| panic!("does not load: {e:#?}"));
    config.groups[0].processes[0].schedule.clone().expect("a schedule")
}

fn group<'a>(config: &'a Config, name: &str) -> &'a GroupConfig {
    config.groups.iter().find(|g| g.name == name).unwrap_or_else(|| panic!("no group {name}"))
}

/// Whether the parsed value of `key` (in `table`) is the table's default: `Err` says how not.
fn check(loaded: &Loaded, table: &str, key: &str, default: &'static str) -> Result<(), String> {
    let config = &loaded.config;
    let s = &config.supervisord;
    let p = &*group(config, "p").processes[0];
    let unset = |is_unset: bool| if default.is_empty() && is_unset { Ok(()) } else { Err("set".to_string()) };
    let same = |parsed: String, expected: String| {
        if parsed == expected {
            Ok(())
        } else {
            Err(format!("parsed as {parsed}, the table's default converts to {expected}"))
        }
    };
    macro_rules! eq {
        ($parsed:expr, $expected:expr) => {
            same(format!("{:?}", $parsed), format!("{:?}", $expected))
        };
    }
    let channel = |c: &ChannelConfig, k: &str| -> Result<(), String> {
        match k {
            "logfile" => match (types::logfile_name(default), &c.logfile) {
                (Ok(LogFileName::Auto), LogFile::Auto) | (Ok(LogFileName::None), LogFile::None) => Ok(()),
                (expected, parsed) => {
                    Err(format!("parsed as {parsed:?}, the table's default converts to {expected:?}"))
                }
            },
            "logfile_maxbytes" => eq!(c.maxbytes, types::byte_size(default)?),
            "logfile_backups" => eq!(c.backups as i64, types::integer(default)?),
            "capture_maxbytes" => eq!(c.capture_maxbytes, types::byte_size(default)?),
            "events_enabled" => eq!(c.events_enabled, types::boolean(default)?),
            "syslog" => eq!(c.syslog, types::boolean(default)?),
            "logfile_rotate" => eq!(c.rotation.every, types::rotate_every(default)?),
            "logfile_compress" => eq!(c.rotation.compress, types::boolean(default)?),
            _ => Err(format!("no check for {k}")),
        }
    };
    if REQUIRED.contains(&(table, key)) {
        return unset(true).map_err(|_| "a required key has a default".to_string());
    }
    match (table, key) {
        ("SUPERVISORD", "logfile") => eq!(s.logfile, MainLog::File(absolute(Path::new(default)))),
        ("SUPERVISORD", "logfile_maxbytes") => eq!(s.logfile_maxbytes, types::byte_size(default)?),
        ("SUPERVISORD", "logfile_backups") => eq!(s.logfile_backups as i64, types::integer(default)?),
        ("SUPERVISORD", "loglevel") => eq!(s.loglevel, types::log_level(default)?),
        ("SUPERVISORD", "pidfile") => eq!(s.pidfile, absolute(Path::new(default))),
        ("SUPERVISORD", "umask") => eq!(s.umask, types::octal(default)?),
        ("SUPERVISORD", "nodaemon") => eq!(s.nodaemon, types::boolean(default)?),
        ("SUPERVISORD", "silent") => eq!(s.silent, types::boolean(default)?),
        ("SUPERVISORD", "minfds") => eq!(s.minfds as i64, types::integer(default)?),
        ("SUPERVISORD", "minprocs") => eq!(s.minprocs as i64, types::integer(default)?),
        ("SUPERVISORD", "nocleanup") => eq!(s.nocleanup, types::boolean(default)?),
        ("SUPERVISORD", "childlogdir") => {
            // Python's tempfile.gettempdir(): $TMPDIR when it is a directory, else the table's.
            let tmp = std::env::var_os("TMPDIR").map(PathBuf::from).filter(|d| d.is_dir());
            eq!(s.childlogdir, tmp.unwrap_or_else(|| PathBuf::from(default)))
        }
        ("SUPERVISORD", "user") => unset(s.user.is_none()),
        ("SUPERVISORD", "directory") => unset(s.directory.is_none()),
        ("SUPERVISORD", "strip_ansi") => eq!(s.strip_ansi, types::boolean(default)?),
        ("SUPERVISORD", "environment") => unset(s.environment.is_empty()),
        ("SUPERVISORD", "environment_file") => unset(s.environment_files.is_empty()),
        ("SUPERVISORD", "credentials_directory") => unset(s.credentials_directory.is_none()),
        ("SUPERVISORD", "identifier") => eq!(s.identifier, default),
        ("SUPERVISORD", "restart_limit") => eq!(s.restart_limit as i64, types::integer(default)?),
        ("SUPERVISORD", "exit_on") => eq!(s.exit_on, types::exit_on(default)?),
        ("SUPERVISORD", "state_file") => unset(s.state_file.is_none()),
        ("SUPERVISORD", "logfile_rotate") => eq!(s.logfile_rotation.every, types::rotate_every(default)?),
        ("SUPERVISORD", "logfile_compress") => eq!(s.logfile_rotation.compress, types::boolean(default)?),
        ("SUPERVISORD", "log_format") => eq!(s.log_format, types::log_format(default)?),

        ("UNIX_HTTP_SERVER", "chmod") => eq!(config.unix_http_servers[0].chmod, types::octal(default)?),
        ("UNIX_HTTP_SERVER", "chown") => unset(config.unix_http_servers[0].chown.is_none()),
        ("UNIX_HTTP_SERVER", "username" | "password") => unset(config.unix_http_servers[0].auth.is_none()),
        ("INET_HTTP_SERVER", "username" | "password") => unset(config.inet_http_servers[0].auth.is_none()),

        ("SUPERVISORCTL", k) => {
            let ctl = config.supervisorctl.as_ref().ok_or("no [supervisorctl]")?;
            match k {
                "serverurl" => eq!(ctl.serverurl, default),
                "username" => unset(ctl.username.is_none()),
                "password" => unset(ctl.password.is_none()),
                "prompt" => eq!(ctl.prompt, default),
                "history_file" => unset(ctl.history_file.is_none()),
                _ => Err(format!("no check for {k}")),
            }
        }

        ("PROGRAM", "process_name") => eq!(p.name, default.replace("%(program_name)s", "p")),
        ("PROGRAM", "numprocs") => eq!(group(config, "p").processes.len() as i64, types::integer(default)?),
        ("PROGRAM", "numprocs_start") => eq!(group(config, "n").processes[0].name, format!("n{default}")),
        ("PROGRAM", "priority") => {
            eq!((p.priority, group(config, "p").priority), (types::integer(default)?, types::integer(default)?))
        }
        ("PROGRAM", "autostart") => eq!(p.autostart, types::boolean(default)?),
        ("PROGRAM", "autorestart") => eq!(p.autorestart, types::auto_restart(default)?),
        ("PROGRAM", "startsecs") => eq!(p.startsecs, types::integer(default)?),
        ("PROGRAM", "startretries") => eq!(p.startretries, types::retries(default)?),
        ("PROGRAM", "backoff_max") => eq!(p.restart.backoff_max as i64, types::integer(default)?),
        ("PROGRAM", "restart_delay") => eq!(p.restart.restart_delay as i64, types::integer(default)?),
        ("PROGRAM", "fatal_retry") => eq!(p.restart.fatal_retry as i64, types::integer(default)?),
        ("PROGRAM", "backoff_window") => eq!(p.restart.backoff_window as i64, types::integer(default)?),
        ("PROGRAM", "exitcodes") => eq!(p.exitcodes, types::exitcodes(default)?),
        ("PROGRAM", "stopsignal") => eq!(p.stopsignal, types::signal(default)?),
        ("PROGRAM", "stopwaitsecs") => eq!(p.stopwaitsecs, types::integer(default)?),
        ("PROGRAM", "stopasgroup") => eq!(p.stopasgroup, types::boolean(default)?),
        ("PROGRAM", "killasgroup") => eq!(p.killasgroup, types::boolean(default)?),
        ("PROGRAM", "user") => unset(p.user.is_none()),
        ("PROGRAM", "directory") => unset(p.directory.is_none()),
        ("PROGRAM", "umask") => unset(p.umask.is_none()),
        ("PROGRAM", "redirect_stderr") => eq!(p.redirect_stderr, types::boolean(default)?),
        ("PROGRAM", k) if k.starts_with("stdout_") => channel(&p.stdout, &k["stdout_".len()..]),
        ("PROGRAM", k) if k.starts_with("stderr_") => channel(&p.stderr, &k["stderr_".len()..]),
        ("PROGRAM", "environment") => unset(p.environment.is_empty()),
        ("PROGRAM", "environment_file") => unset(p.environment_files.is_empty()),
        ("PROGRAM", "credentials") => unset(p.credentials.is_empty()),
        ("PROGRAM", "serverurl") => {
            // AUTO (or nothing): computed from the first HTTP server at spawn time.
            let auto = default.is_empty() || default.eq_ignore_ascii_case("auto");
            eq!(p.serverurl, (!auto).then_some(default))
        }
        ("PROGRAM", "depends_on") => unset(p.depends_on.is_empty()),
        ("PROGRAM", "ready_fd") => unset(p.ready_fd.is_none()),
        ("PROGRAM", "listen") => unset(p.listen.is_empty()),
        ("PROGRAM", "ready_timeout") => eq!(p.ready_timeout, types::integer(default)?),
        ("PROGRAM", "ready_notify") => eq!(p.ready_notify, types::boolean(default)?),
        ("PROGRAM", "watchdog_sec") => eq!(p.watchdog_sec as i64, types::integer(default)?),
        ("PROGRAM", "memory_limit") => eq!(p.memory_limit as i64, types::byte_size(default)?),
        ("PROGRAM", "schedule") => unset(p.schedule.is_none()),
        ("PROGRAM", k) if k.starts_with("rlimit_") => unset(p.limits.rlimits.is_empty()),
        ("PROGRAM", "nice") => unset(p.limits.nice.is_none()),
        ("PROGRAM", "oom_score_adj") => unset(p.limits.oom_score_adj.is_none()),
        ("PROGRAM", "cgroup") => eq!(p.limits.cgroup.is_some(), types::boolean(default)?),
        ("PROGRAM", "memory_max" | "memory_high" | "cpu_max" | "pids_max") => unset(p.limits.cgroup.is_none()),
        // Read only with schedule=: a program with just that.
        ("PROGRAM", k @ ("schedule_overlap" | "schedule_timezone" | "run_on_start")) => {
            let s = scheduled();
            match k {
                "schedule_overlap" => eq!(s.queue, default == "queue"),
                "schedule_timezone" => eq!(s.utc, default == "utc"),
                _ => eq!(s.run_on_start, types::boolean(default)?),
            }
        }
        ("PROGRAM", "ready_check") => unset(p.checks.ready.is_none()),
        ("PROGRAM", "ready_check_interval") => eq!(p.checks.ready_interval as i64, types::integer(default)?),
        ("PROGRAM", "health_check") => unset(p.checks.health.is_none()),
        ("PROGRAM", "health_check_interval") => eq!(p.checks.health_interval as i64, types::integer(default)?),
        ("PROGRAM", "health_check_retries") => eq!(p.checks.health_retries as i64, types::integer(default)?),
        ("PROGRAM", "check_timeout") => eq!(p.checks.timeout as i64, types::integer(default)?),
        ("PROGRAM", "log_prefix") => unset(p.log_prefix.is_none()),
        ("PROGRAM", "log_timestamps") => eq!(p.log_timestamps, types::boolean(default)?),
        ("PROGRAM", "critical") => eq!(p.critical, types::boolean(default)?),

        ("EVENTLISTENER_EXTRA", k) => match (&group(config, "l").kind, k) {
            (GroupKind::EventListener { buffer_size, .. }, "buffer_size") => {
                eq!(*buffer_size as i64, types::integer(default)?)
            }
            (GroupKind::EventListener { result_handler, .. }, "result_handler") => eq!(result_handler, default),
            (kind, k) => Err(format!("no check for {k} ({kind:?})")),
        },
        ("EVENTLISTENER_POOL", "priority") => eq!(group(config, "l").priority, types::integer(default)?),
        ("FCGI_EXTRA", k) => match (&group(config, "f").kind, k) {
            (GroupKind::Fcgi { backlog, .. }, "socket_backlog") => unset(backlog.is_none()),
            (GroupKind::Fcgi { socket: FcgiSocket::Unix { owner, .. }, .. }, "socket_owner") => unset(owner.is_none()),
            (GroupKind::Fcgi { socket: FcgiSocket::Unix { mode, .. }, .. }, "socket_mode") => {
                eq!(mode, Some(types::octal(default)?))
            }
            (kind, k) => Err(format!("no check for {k} ({kind:?})")),
        },
        ("GROUP", "priority") => eq!(group(config, "g").priority, types::integer(default)?),
        ("RPCINTERFACE", "supervisor.rpcinterface_factory") => eq!(config.rpcinterface_supervisor, true),
        (table, key) => Err(format!("no check for [{table}] {key}: add one to this test")),
    }
}

#[test]
fn a_config_without_optional_keys_loads_to_the_option_tables_defaults() {
    let loaded = load_minimal();
    let mut wrong = Vec::new();
    let mut checked = 0;
    for (name, table) in TABLES {
        for key in table.iter() {
            checked += 1;
            if let Err(why) = check(&loaded, name, key.name, key.default) {
                wrong.push(format!("{name} {}={:?}: {why}", key.name, key.default));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {checked} defaults differ from the options table:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    assert!(checked > 80, "{checked}");
}

#[test]
fn listener_and_fcgi_processes_get_the_same_program_defaults() {
    // The PROGRAM keys are read by one function for all three program-like sections.
    let loaded = load_minimal();
    let config = &loaded.config;
    let p = &*group(config, "p").processes[0];
    for name in ["l", "f"] {
        let mut other = (*group(config, name).processes[0]).clone();
        other.name = p.name.clone();
        other.program = p.program.clone();
        other.command = p.command.clone();
        other.span = p.span.clone();
        assert_eq!(&other, p, "[{name}]");
    }
}
