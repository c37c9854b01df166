//! Loader tests: whole config files in a temporary directory, exact diagnostics.

use super::*;
use std::sync::atomic::{AtomicUsize, Ordering};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A temporary directory holding config files; removed on drop.
struct Dir(PathBuf);

impl Dir {
    fn new(files: &[(&str, &str)]) -> Dir {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("minisv-cfg-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (name, text) in files {
            let path = dir.join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        Dir(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    fn load(&self) -> Result<Config, Vec<Diagnostic>> {
        load(&self.path("supervisord.conf"), &Overrides::default())
    }

    /// Diagnostics rendered with paths relative to the directory.
    fn render(&self, list: &[Diagnostic]) -> Vec<String> {
        let prefix = format!("{}/", self.0.display());
        list.iter().map(|d| d.to_string().replace(&prefix, "")).collect()
    }

    fn errors(&self) -> Vec<String> {
        match self.load() {
            Ok(_) => panic!("expected errors"),
            Err(e) => self.render(&e),
        }
    }

    fn warnings(&self) -> Vec<String> {
        match self.load() {
            Ok(c) => self.render(&c.warnings),
            Err(e) => panic!("unexpected errors: {:#?}", self.render(&e)),
        }
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.0).ok();
    }
}

const HEAD: &str = "[supervisord]\nlogfile=/tmp/minisv-test.log\n";

fn conf(body: &str) -> Dir {
    Dir::new(&[("supervisord.conf", &format!("{HEAD}{body}"))])
}

fn process<'a>(config: &'a Config, name: &str) -> &'a ProcessConfig {
    config
        .groups
        .iter()
        .flat_map(|g| g.processes.iter())
        .find(|p| p.name == name)
        .unwrap_or_else(|| panic!("no process {name}"))
}

#[test]
fn tutorial_program_loads_with_warnings_about_supervisor2_keys_and_shell_syntax() {
    let dir = conf(
        "[program:api]
user=root
directory= /srv/api
command= /srv/api/run-api -Xmx1g --spring.profiles.active=dev >springboot.log
autostart=true
autorestart=true
startsecs=5
priority=1
loglevel=debug
log_stderr=true
stdout_logfile=/var/log/api2.log
redirect_stderr=true
",
    );
    let config = dir.load().unwrap();
    let api = process(&config, "api");
    assert_eq!(api.user.as_ref().map(|u| u.uid), Some(0));
    assert_eq!(api.directory.as_deref(), Some("/srv/api"));
    assert_eq!(api.startsecs, 5);
    assert_eq!(api.autorestart, AutoRestart::Always);
    assert_eq!(api.stdout.logfile, LogFile::Path(PathBuf::from("/var/log/api2.log")));
    assert_eq!(api.stderr.logfile, LogFile::None);
    assert_eq!(
        dir.render(&config.warnings),
        vec![
            "supervisord.conf:11: [program:api] loglevel: 'loglevel' is not a program option (it is the [supervisord] main log level); it is ignored: child output is logged as is",
            "supervisord.conf:12: [program:api] log_stderr: 'log_stderr' is a Supervisor 2 setting, not a program option; it is ignored: stderr is logged to stderr_logfile= (or to the stdout log with redirect_stderr=true)",
            "supervisord.conf:6: [program:api] command: '>springboot.log' is passed to the program as an argument: commands do not run through a shell. To log output use stdout_logfile= (and redirect_stderr=true for stderr), or run it with sh -c '...'",
        ]
    );
}

#[test]
fn all_errors_reported_at_once() {
    let dir = Dir::new(&[
        (
            "supervisord.conf",
            "[supervisord]\nloglevel=warning\n[include]\nfiles=conf.d/*.conf\n[program:web]\ncommand=/bin/true\nstartsecs=five\n",
        ),
        ("conf.d/api.conf", "[program:api]\ncommand=/bin/true\n\nautostart=maybe\nstopsignal=FOO\n"),
    ]);
    assert_eq!(
        dir.errors(),
        vec![
            "supervisord.conf:2: [supervisord] loglevel: bad logging level name 'warning'; expected critical, error, warn, info, debug, trace or blather",
            "supervisord.conf:7: [program:web] startsecs: 'five' is not a whole number; expected an integer",
            "conf.d/api.conf:4: [program:api] autostart: not a valid boolean value: 'maybe'; expected true/false, yes/no, on/off or 1/0",
            "conf.d/api.conf:5: [program:api] stopsignal: value 'FOO' is not a valid signal name; expected a signal name such as TERM, HUP, INT, QUIT, KILL, USR1 or USR2, or its number",
        ]
    );
}

#[test]
fn numprocs_requires_process_num_in_name() {
    let dir = conf("[program:w]\ncommand=/bin/true\nnumprocs=2\n");
    assert_eq!(
        dir.errors(),
        vec!["supervisord.conf:3: [program:w] process_name: %(process_num) must be present within process_name when numprocs > 1 (numprocs=2, process_name=%(program_name)s); for example process_name=%(program_name)s_%(process_num)02d"]
    );
}

#[test]
fn numprocs_is_bounded() {
    let dir = conf("[program:w]\ncommand=/bin/true\nprocess_name=%(process_num)d\nnumprocs=32147483648\n");
    assert_eq!(
        dir.errors(),
        vec!["supervisord.conf:6: [program:w] numprocs: numprocs must be at most 10000 (got 32147483648)"]
    );
    let dir = conf("[program:w]\ncommand=/bin/true\nprocess_name=%(process_num)d\nnumprocs=10000\n");
    let config = dir.load().expect("10000 is allowed");
    assert_eq!(config.groups[0].processes.len(), 10_000);
}

#[test]
fn numprocs_expands_names_commands_and_logs_per_process() {
    let dir = conf(
        "[program:w]\nprocess_name=%(program_name)s_%(process_num)02d\nnumprocs=3\nnumprocs_start=1\ncommand=/bin/echo %(process_num)d of %(numprocs)d %(ENV_PORT)s\nenvironment=PORT=\"80%(process_num)02d\"\nstdout_logfile=/tmp/%(process_num)s.log\n",
    );
    let config = dir.load().unwrap();
    let names: Vec<&str> = config.groups[0].processes.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, vec!["w_01", "w_02", "w_03"]);
    let p = process(&config, "w_02");
    assert_eq!(p.command, "/bin/echo 2 of 3 8002");
    assert_eq!(p.environment, vec![("PORT".to_string(), "8002".to_string())]);
    assert_eq!(p.stdout.logfile, LogFile::Path(PathBuf::from("/tmp/2.log")));
}

#[test]
fn process_num_is_not_available_in_pre_loop_keys() {
    let dir = conf("[program:w]\ncommand=/bin/true\npriority=%(process_num)d\n");
    let errors = dir.errors();
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0].starts_with("supervisord.conf:5: [program:w] priority: Format string '%(process_num)d' for 'program:w.priority' contains names ('process_num') which cannot be expanded. Available names: ENV_"),
        "{}",
        errors[0]
    );
    assert!(errors[0].ends_with(", here"), "{}", errors[0]);
}

#[test]
fn bare_percent_in_command_is_badly_formatted() {
    let dir = conf("[program:a]\ncommand=/bin/echo 100%\n");
    assert_eq!(
        dir.errors(),
        vec!["supervisord.conf:4: [program:a] command: Format string '/bin/echo 100%' for 'program:a.command' is badly formatted: incomplete format"]
    );
}

#[test]
fn missing_command_names_the_section() {
    let dir = conf("[program:a]\nautostart=false\n");
    assert_eq!(
        dir.errors(),
        vec!["supervisord.conf:3: [program:a] program section program:a does not specify a command"]
    );
}

#[test]
fn unknown_keys_and_sections_warn_with_did_you_mean() {
    let dir = conf("[program:a]\ncommand=/bin/true\nautorestar=true\nfrobnicate=1\n[programs:b]\ncommand=x\n");
    assert_eq!(
        dir.warnings(),
        vec![
            "supervisord.conf:5: [program:a] autorestar: unknown key (ignored); did you mean 'autorestart'?",
            "supervisord.conf:6: [program:a] frobnicate: unknown key (ignored)",
            "supervisord.conf:7: [programs:b] unknown section (ignored); did you mean [program:b]?",
        ]
    );
}

/// supervisord-dependent-startup reads these from program sections; supervisord ignores them
/// silently, and so does minisv (elsewhere they are unknown keys as any other).
#[test]
fn dependent_startup_keys_of_programs_are_accepted_without_a_warning() {
    let dir = conf(
        "[program:a]\ncommand=/bin/true\ndependent_startup=true\ndependent_startup_inherit_priority=true\n\
         [program:b]\ncommand=/bin/true\ndependent_startup=true\ndependent_startup_wait_for=a:running\n\
         [group:g]\nprograms=a\ndependent_startup=true\n",
    );
    assert_eq!(dir.warnings(), vec!["supervisord.conf:13: [group:g] dependent_startup: unknown key (ignored)"]);
}

/// A header missing its `]` is read by Python's parser as a key of the section above: a hint
/// says so (issue 20, point 9), rather than only "unknown key" for the lines after it.
#[test]
fn section_header_without_bracket_gets_a_hint() {
    let dir = conf("[program:a]\ncommand=/bin/true\n[program:b\ncommand=/bin/false\n");
    assert_eq!(
        dir.warnings(),
        vec![
            "supervisord.conf:5: [program:a] [program: section header without ']'? This line is read as a key of [program:a], and so are the lines after it",
        ]
    );
}

#[test]
fn include_globs_relative_to_main_file_sorted_with_infos() {
    let dir = Dir::new(&[
        ("supervisord.conf", "[supervisord]\n[include]\nfiles=conf.d/*.conf missing/*.ini\n"),
        ("conf.d/b.conf", "[program:b]\ncommand=/bin/b %(here)s\n"),
        ("conf.d/a.conf", "[program:a]\ncommand=/bin/a\n"),
        ("conf.d/.hidden.conf", "[program:h]\ncommand=/bin/h\n"),
    ]);
    let config = dir.load().unwrap();
    let prefix = format!("{}/", dir.0.display());
    let infos: Vec<String> = config.infos.iter().map(|i| i.replace(&prefix, "")).collect();
    assert_eq!(
        infos,
        vec![
            "Included extra file \"conf.d/a.conf\" during parsing",
            "Included extra file \"conf.d/b.conf\" during parsing"
        ]
    );
    assert_eq!(
        dir.render(&config.warnings),
        vec!["supervisord.conf:3: [include] files: No file matches via include \"missing/*.ini\""]
    );
    assert_eq!(process(&config, "b").command, format!("/bin/b {}", dir.path("conf.d").display()));
    assert_eq!(*process(&config, "b").span.file, *dir.path("conf.d/b.conf"));
    assert_eq!(config.groups.len(), 2);
}

#[test]
fn include_without_files_is_an_error() {
    let dir = conf("[include]\n");
    assert_eq!(
        dir.errors(),
        vec!["supervisord.conf:3: [include] .ini file has [include] section, but no files setting"]
    );
}

#[test]
fn parse_errors_in_included_files_carry_their_location() {
    let dir = Dir::new(&[
        ("supervisord.conf", "[supervisord]\n[include]\nfiles=x.conf\n"),
        ("x.conf", "[program:x]\ncommand=/bin/x\noops\n"),
    ]);
    let errors = dir.errors();
    assert_eq!(errors.len(), 1);
    assert_eq!(
        errors[0],
        "x.conf:3: cannot read 'oops'; expected a [section] header, key = value (or key: value), a comment, or an indented continuation line"
    );
}

#[test]
fn missing_supervisord_section_is_an_error() {
    let dir = Dir::new(&[("supervisord.conf", "[program:a]\ncommand=x\n")]);
    let errors = dir.errors();
    assert_eq!(errors.len(), 1);
    assert!(errors[0].starts_with(".ini file does not include supervisord section ("));
}

#[test]
fn missing_file_is_reported() {
    let errors = load(Path::new("/nonexistent/minisv.conf"), &Overrides::default()).unwrap_err();
    assert_eq!(errors[0].to_string(), "could not find config file /nonexistent/minisv.conf");
}

#[test]
fn groups_sort_by_priority_then_name_and_group_keeps_programs_order() {
    let dir = conf(
        "[program:z]\ncommand=/bin/z\npriority=1\n[program:b]\ncommand=/bin/b\n[program:a]\ncommand=/bin/a\n[group:g]\nprograms=y,x\npriority=500\n[program:x]\ncommand=/bin/x\npriority=1\n[program:y]\ncommand=/bin/y\npriority=2\n",
    );
    let config = dir.load().unwrap();
    let groups: Vec<(&str, i64)> = config.groups.iter().map(|g| (g.name.as_str(), g.priority)).collect();
    assert_eq!(groups, vec![("z", 1), ("g", 500), ("a", 999), ("b", 999)]);
    let members: Vec<&str> = config.groups[1].processes.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(members, vec!["y", "x"]);
}

#[test]
fn group_and_program_with_same_name_warns_and_keeps_the_first() {
    let dir = conf("[group:a]\nprograms=b\npriority=5\n[program:b]\ncommand=/bin/b\n[program:a]\ncommand=/bin/a\n");
    let config = dir.load().unwrap();
    assert_eq!(config.groups.len(), 1);
    assert_eq!(config.groups[0].processes[0].name, "b");
    let prefix = format!("{}/", dir.0.display());
    assert_eq!(
        dir.render(&config.warnings),
        vec![format!(
            "supervisord.conf:8: [program:a] group name 'a' is defined twice: by [group:a] at {prefix}supervisord.conf:3 and by [program:a] at {prefix}supervisord.conf:8; [group:a] is used (it sorts first by priority, then name) and [program:a] is ignored; rename one of them"
        )
        .replace(&prefix, "")]
    );
}

#[test]
fn same_program_in_two_groups_gives_two_processes() {
    let dir = conf("[group:g1]\nprograms=p\n[group:g2]\nprograms=p\n[program:p]\ncommand=/bin/p\n");
    let config = dir.load().unwrap();
    let groups: Vec<(&str, usize)> = config.groups.iter().map(|g| (g.name.as_str(), g.processes.len())).collect();
    assert_eq!(groups, vec![("g1", 1), ("g2", 1)]);
}

#[test]
fn group_naming_unknown_program_is_an_error() {
    let dir = conf("[group:g]\nprograms=nope\n");
    assert_eq!(
        dir.errors(),
        vec!["supervisord.conf:4: [group:g] programs: [group:g] names unknown program or fcgi-program nope"]
    );
}

#[test]
fn eventlistener_rules() {
    let dir = conf(
        "[eventlistener:l]\ncommand=/bin/l\nevents=process_state,TICK_5,PROCESS_STATE\n[eventlistener:bad]\ncommand=/bin/l\nevents=TICK_7\nresult_handler=mymod:handler\nbuffer_size=0\n",
    );
    assert_eq!(
        dir.errors(),
        vec![
            &format!("supervisord.conf:8: [eventlistener:bad] events: Unknown event type TICK_7 in [eventlistener:bad] events; did you mean TICK_5? known types: {}", options::EVENT_TYPES.join(", ")),
            "supervisord.conf:9: [eventlistener:bad] result_handler: mymod:handler cannot be resolved within [eventlistener:bad]: minisv cannot load Python code; its built-in handlers are supervisor.dispatchers:default_handler, supervisor_stdlog:log_handler and supervisor_stdout:event_handler",
            "supervisord.conf:10: [eventlistener:bad] buffer_size: [eventlistener:bad] section sets invalid buffer_size (0); expected at least 1",
        ]
    );
    let dir = conf("[eventlistener:l]\ncommand=/bin/l\nevents=process_state,TICK_5,PROCESS_STATE\n");
    let config = dir.load().unwrap();
    assert_eq!(config.groups[0].priority, -1);
    match &config.groups[0].kind {
        GroupKind::EventListener { events, buffer_size, .. } => {
            assert_eq!(events, &vec!["PROCESS_STATE".to_string(), "TICK_5".to_string()]);
            assert_eq!(*buffer_size, 10);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn fcgi_socket_forms() {
    let dir = conf("[fcgi-program:u]\ncommand=/bin/u\nsocket=unix:///tmp/%(program_name)s.sock\n[fcgi-program:t]\ncommand=/bin/t\nsocket=tcp://LocalHost:9000\nsocket_backlog=5\n");
    let config = dir.load().unwrap();
    let kinds: Vec<&GroupKind> = config.groups.iter().map(|g| &g.kind).collect();
    assert_eq!(
        kinds,
        vec![
            &GroupKind::Fcgi {
                socket: FcgiSocket::Tcp { host: "localhost".into(), port: 9000 },
                socket_url: "tcp://LocalHost:9000".into(),
                backlog: Some(5)
            },
            &GroupKind::Fcgi {
                socket: FcgiSocket::Unix { path: PathBuf::from("/tmp/u.sock"), owner: None, mode: Some(0o700) },
                socket_url: "unix:///tmp/u.sock".into(),
                backlog: None
            },
        ]
    );
    let dir = conf("[fcgi-program:r]\ncommand=/bin/r\nsocket=unix://rel.sock\n[fcgi-program:m]\ncommand=/bin/m\nsocket=tcp://h:1\nsocket_mode=0600\n");
    assert_eq!(
        dir.errors(),
        vec![
            "supervisord.conf:5: [fcgi-program:r] socket: Unix socket path rel.sock is not an absolute path",
            "supervisord.conf:8: [fcgi-program:m] socket: socket_owner and socket_mode params should only be used with a Unix domain socket",
        ]
    );
}

#[test]
fn environment_with_unquoted_space_warns() {
    let dir = conf("[program:a]\ncommand=/bin/a\nenvironment=A=with space\n");
    let config = dir.load().unwrap();
    assert_eq!(process(&config, "a").environment, vec![("A".to_string(), "with".to_string())]);
    assert_eq!(
        dir.render(&config.warnings),
        vec!["supervisord.conf:5: [program:a] environment: the value of A ends at a space, so \"space\" is dropped (Supervisor does the same); quote values with spaces: A=\"...\""]
    );
}

#[test]
fn supervisord_environment_feeds_env_expansions() {
    let dir = Dir::new(&[(
        "supervisord.conf",
        "[supervisord]\nenvironment=GREETING=\"hi there\"\n[program:a]\ncommand=/bin/echo %(ENV_GREETING)s\n",
    )]);
    let config = dir.load().unwrap();
    assert_eq!(process(&config, "a").command, "/bin/echo hi there");
    assert_eq!(config.supervisord.environment, vec![("GREETING".to_string(), "hi there".to_string())]);
}

#[test]
fn command_line_overrides_beat_the_config() {
    let dir = conf("[supervisord]\nloglevel=debug\nnodaemon=false\nlogfile=relative.log\n");
    let config = dir.load().unwrap();
    assert_eq!(config.supervisord.loglevel, LogLevel::Debug);
    assert_eq!(config.supervisord.logfile, MainLog::File(load::absolute(Path::new("relative.log"))));
    let ov = Overrides {
        loglevel: Some("error".into()),
        nodaemon: Some(true),
        umask: Some("077".into()),
        ..Overrides::default()
    };
    let config = load(&dir.path("supervisord.conf"), &ov).unwrap();
    assert_eq!(
        (config.supervisord.loglevel, config.supervisord.nodaemon, config.supervisord.umask),
        (LogLevel::Error, true, 0o77)
    );
    let ov = Overrides { minfds: Some("many".into()), ..Overrides::default() };
    let errors = load(&dir.path("supervisord.conf"), &ov).unwrap_err();
    assert_eq!(errors[0].to_string(), "--minfds: 'many' is not a whole number; expected an integer");
}

#[test]
fn program_defaults_match_supervisor() {
    let dir = conf("[program:a]\ncommand=/bin/a\n");
    let config = dir.load().unwrap();
    let a = process(&config, "a");
    assert_eq!((a.priority, a.autostart, a.startsecs, a.startretries, a.stopwaitsecs), (999, true, 1, 3, 10));
    assert_eq!((a.stopsignal, a.exitcodes.clone(), a.autorestart.clone()), (15, vec![0], AutoRestart::Unexpected));
    assert_eq!(
        a.stdout,
        ChannelConfig {
            logfile: LogFile::Auto,
            maxbytes: 50 << 20,
            backups: 10,
            capture_maxbytes: 0,
            events_enabled: false,
            syslog: false,
            rotation: Default::default()
        }
    );
    assert_eq!(a.serverurl, None);
    assert!(!config.rpcinterface_supervisor);
    assert_eq!(config.supervisord.pidfile, load::absolute(Path::new("supervisord.pid")));
    assert_eq!(config.supervisord.identifier, "supervisor");
}

#[test]
fn auto_log_without_rollover_and_syslog_logfile_warn() {
    let dir = conf("[program:r]\ncommand=/bin/r\nstdout_logfile_maxbytes=0\nstderr_logfile=syslog\n");
    let config = dir.load().unwrap();
    assert!(process(&config, "r").stderr.syslog);
    assert_eq!(
        dir.render(&config.warnings),
        vec![
            "supervisord.conf:5: [program:r] stdout_logfile_maxbytes: For [program:r], AUTO logging used for stdout_logfile without rollover, set maxbytes > 0 to avoid filling up filesystem unintentionally",
            "supervisord.conf:6: [program:r] stderr_logfile: For [program:r], stderr_logfile=syslog but this is deprecated and will be removed.  Use stderr_syslog=true to enable syslog instead.",
        ]
    );
}

#[test]
fn http_servers_and_auth() {
    let dir = conf("[unix_http_server]\nfile=%(here)s/s.sock\nchmod=0770\n[inet_http_server]\nport=*:9001\nusername=u\n[rpcinterface:supervisor]\nsupervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n");
    assert_eq!(
        dir.errors(),
        vec!["supervisord.conf:6: [inet_http_server] Section [inet_http_server] contains incomplete authentication: If a username or a password is specified, both the username and password must be specified"]
    );
    let dir = conf("[unix_http_server]\nfile=%(here)s/s.sock\nchmod=0770\n[inet_http_server]\nport=*:9001\nusername=u\npassword=p\n[rpcinterface:supervisor]\nsupervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n[rpcinterface:other]\nx=1\n");
    let config = dir.load().unwrap();
    assert!(config.rpcinterface_supervisor);
    assert_eq!(config.unix_http_servers[0].file, dir.path("s.sock"));
    assert_eq!(config.unix_http_servers[0].chmod, 0o770);
    assert_eq!((config.inet_http_servers[0].host.as_str(), config.inet_http_servers[0].port), ("", 9001));
    assert_eq!(dir.render(&config.warnings).len(), 1);
}

#[test]
fn ctl_section_is_read_alone() {
    let dir = conf("[supervisorctl]\nserverurl=unix://%(here)s/../x/s.sock\nprompt=hey\n");
    let ctl = load_ctl(&dir.path("supervisord.conf")).unwrap().unwrap();
    assert_eq!(ctl.serverurl, format!("unix://{}", dir.0.parent().unwrap().join("x/s.sock").display()));
    assert_eq!(ctl.prompt, "hey");
    let dir = conf("");
    assert_eq!(load_ctl(&dir.path("supervisord.conf")), Ok(None));
}

#[test]
fn search_checks_minisv_conf_first_in_each_place() {
    let paths = search_paths("/usr/bin/minisv");
    let shown: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    assert_eq!(
        shown,
        vec![
            "/usr/etc/minisv.conf",
            "/usr/etc/supervisord.conf",
            "/usr/minisv.conf",
            "/usr/supervisord.conf",
            "minisv.conf",
            "supervisord.conf",
            "etc/minisv.conf",
            "etc/supervisord.conf",
            "/etc/minisv.conf",
            "/etc/supervisord.conf",
            "/etc/supervisor/minisv.conf",
            "/etc/supervisor/supervisord.conf",
        ]
    );
}

#[test]
fn probe_and_restart_limit_options_parse_and_bad_values_name_the_line() {
    let dir = conf(
        "[program:a]\ncommand=/bin/true\nready_check=localhost:8080\nhealth_check=http://127.0.0.1:8080/healthz\n\
         health_check_interval=5\n",
    );
    let config = dir.load().expect("valid");
    let a = process(&config, "a");
    assert_eq!(a.checks.ready, Some(crate::config::model::Probe::Tcp("127.0.0.1:8080".parse().unwrap())));
    assert!(matches!(&a.checks.health, Some(crate::config::model::Probe::Http { path, .. }) if path == "/healthz"));
    assert_eq!(
        (a.checks.ready_interval, a.checks.health_interval, a.checks.health_retries, a.checks.timeout),
        (1, 5, 3, 5)
    );
    assert_eq!(config.supervisord.restart_limit, 0, "no limit unless asked");

    let dir = Dir::new(&[(
        "supervisord.conf",
        "[supervisord]\nlogfile=/tmp/minisv-test.log\nrestart_limit=-1\n\
         [program:a]\ncommand=/bin/true\nready_fd=3\nready_check=127.0.0.1:1\ncheck_timeout=0\n",
    )]);
    assert_eq!(
        dir.errors(),
        vec![
            "supervisord.conf:3: [supervisord] restart_limit: -1 is negative; expected 0 (no limit) or more",
            "supervisord.conf:7: [program:a] ready_check: ready_check and ready_fd cannot both be set; choose one",
            "supervisord.conf:8: [program:a] check_timeout: 0 is too small; expected a whole number of seconds, 1 or more",
        ]
    );
}

#[test]
fn same_group_ignores_where_settings_were_written_and_nothing_else() {
    let load = |body: &str| conf(body).load().expect("valid config").groups.remove(0);
    let base = load("[program:a]\ncommand=sleep 1\nnumprocs=2\nprocess_name=a%(process_num)d\n");
    // The same settings, a few lines further down.
    let moved = load("\n\n[program:a]\n\ncommand=sleep 1\nnumprocs=2\nprocess_name=a%(process_num)d\n");
    assert_ne!(base.span, moved.span);
    assert!(same_group(&base, &moved));
    for changed in [
        "[program:a]\ncommand=sleep 2\nnumprocs=2\nprocess_name=a%(process_num)d\n",
        "[program:a]\ncommand=sleep 1\nnumprocs=3\nprocess_name=a%(process_num)d\n",
        "[program:a]\ncommand=sleep 1\nnumprocs=2\nprocess_name=a%(process_num)d\npriority=5\n",
        "[program:a]\ncommand=sleep 1\nnumprocs=2\nprocess_name=a%(process_num)d\nstartsecs=9\n",
    ] {
        assert!(!same_group(&base, &load(changed)), "{changed}");
    }
}

#[test]
fn a_program_sections_processes_hold_no_spare_capacity() {
    // Each process's settings are kept once, shared by the loaded and re-read config and the
    // running process; spare room in a one-process group's list cost 2.3 KB per program.
    let config = conf(
        "[program:a]\ncommand=sleep 1\n[program:b]\ncommand=sleep 1\nnumprocs=3\nprocess_name=b%(process_num)d\n\
         [program:c]\ncommand=sleep 1\n[program:d]\ncommand=sleep 1\n[group:g]\nprograms=c,d\n",
    )
    .load()
    .expect("valid config");
    assert_eq!(config.groups.len(), 3);
    for g in &config.groups {
        assert_eq!(g.processes.capacity(), g.processes.len(), "{}", g.name);
    }
    let copy = config.clone();
    assert!(std::sync::Arc::ptr_eq(&config.groups[0].processes[0], &copy.groups[0].processes[0]));
}

#[test]
fn at_most_fourteen_control_servers() {
    let servers: String = (1..=15).map(|i| format!("[unix_http_server:s{i}]\nfile=/tmp/s{i}.sock\n")).collect();
    let dir = conf(&servers);
    assert_eq!(
        dir.errors(),
        vec!["supervisord.conf:31: [unix_http_server:s15] 15 [unix_http_server] and [inet_http_server] sections; at most 14 are served"]
    );
    let servers: String = (1..=14).map(|i| format!("[unix_http_server:s{i}]\nfile=/tmp/s{i}.sock\n")).collect();
    assert_eq!(conf(&servers).load().expect("14 are allowed").unix_http_servers.len(), 14);
}

#[test]
fn listener_processes_default_to_priority_999_and_their_pool_to_minus_one() {
    // As supervisord 4.3 reports them (getAllConfigInfo: process_prio 999, group_prio -1).
    let dir = conf(
        "[eventlistener:l]\ncommand=/bin/cat\nevents=PROCESS_STATE\n\
         [eventlistener:m]\ncommand=/bin/cat\nevents=PROCESS_STATE\npriority=5\n",
    );
    let config = dir.load().expect("loads");
    let group = |name: &str| config.groups.iter().find(|g| g.name == name).expect("group");
    assert_eq!((group("l").priority, group("l").processes[0].priority), (-1, 999));
    assert_eq!((group("m").priority, group("m").processes[0].priority), (5, 5));
}

#[test]
fn listen_addresses_with_names_and_defaults() {
    let dir = conf("[program:web]\ncommand=/bin/w\nlisten=http:tcp://127.0.0.1:8080, unix:///run/%(program_name)s.sock\n  tcp://[::1]:81\n");
    let config = dir.load().unwrap();
    let pc = &config.groups[0].processes[0];
    let got: Vec<(String, String)> = pc.listen.iter().map(|l| (l.name.clone(), l.addr.to_string())).collect();
    assert_eq!(
        got,
        [
            ("http".to_string(), "tcp://127.0.0.1:8080".to_string()),
            ("web".to_string(), "unix:///run/web.sock".to_string()),
            ("web".to_string(), "tcp://[::1]:81".to_string()),
        ]
    );
}

#[test]
fn bad_listen_addresses_are_errors_with_file_and_line() {
    let dir = conf(
        "[program:a]\ncommand=/bin/a\nlisten=tcp://127.0.0.1:0\n[program:b]\ncommand=/bin/b\nlisten=unix://rel.sock\n\
         [program:c]\ncommand=/bin/c\nlisten=http://x:1\n[program:d]\ncommand=/bin/d\nlisten=tcp://nohost:80\n\
         [program:e]\ncommand=/bin/e\nlisten=a b:tcp://127.0.0.1:1\n[program:f]\ncommand=/bin/f\nready_fd=4\n\
         listen=tcp://127.0.0.1:1,tcp://127.0.0.1:2\n[program:g]\ncommand=/bin/g\nlisten=tcp://127.0.0.1:1 tcp://127.0.0.1:1\n",
    );
    let expected = "expected tcp://IP:PORT (PORT 1 to 65535, [IPv6] in brackets, or localhost) or unix:///absolute/path (under 108 bytes), optionally after NAME:";
    assert_eq!(
        dir.errors(),
        vec![
            format!("supervisord.conf:5: [program:a] listen: bad address tcp://127.0.0.1:0; {expected}"),
            format!("supervisord.conf:8: [program:b] listen: bad address unix://rel.sock; {expected}"),
            format!("supervisord.conf:11: [program:c] listen: bad address http://x:1; {expected}"),
            format!("supervisord.conf:14: [program:d] listen: bad address tcp://nohost:80; {expected}"),
            format!("supervisord.conf:17: [program:e] listen: bad address a; {expected}"),
            "supervisord.conf:21: [program:f] listen: ready_fd=4 is one of the fds the listen sockets take (3 to 4)"
                .into(),
            "supervisord.conf:24: [program:g] listen: tcp://127.0.0.1:1 is listed twice".into(),
        ]
    );
}
