use super::*;
use crate::config::options;

fn args(list: &[&str]) -> Result<DaemonArgs, Exit> {
    let v: Vec<String> = list.iter().map(|s| s.to_string()).collect();
    parse_daemon_args("/usr/bin/minisv", &v)
}

fn usage_err(list: &[&str]) -> String {
    match args(list) {
        Err(e) => {
            assert_eq!(e.code, 2);
            e.stderr
        }
        Ok(a) => panic!("expected an error, got {a:?}"),
    }
}

#[test]
fn short_long_and_attached_forms_are_accepted() {
    let a = args(&["-cfoo.conf", "-nk", "--loglevel=debug", "--umask", "077", "-e", "warn"]);
    assert!(a.is_err(), "-e after --loglevel conflicts");
    let a =
        args(&["-cfoo.conf", "-nk", "--loglevel=debug", "--umask", "077", "-a", "2048", "--minprocs=10", "--strip"])
            .unwrap();
    assert_eq!(a.config, Some(PathBuf::from("foo.conf")));
    assert_eq!(a.overrides.nodaemon, Some(true));
    assert_eq!(a.overrides.nocleanup, Some(true));
    assert_eq!(a.overrides.loglevel.as_deref(), Some("debug"));
    assert_eq!(a.overrides.umask.as_deref(), Some("077"));
    assert_eq!(a.overrides.minfds.as_deref(), Some("2048"));
    assert_eq!(a.overrides.minprocs.as_deref(), Some("10"));
    assert_eq!(a.overrides.strip_ansi, Some(true));
    assert!(args(&["-c", "x.conf", "--test"]).unwrap().test);
}

#[test]
fn usage_errors_use_supervisor_texts() {
    let tail = "For help, use /usr/bin/minisv -h\n";
    assert_eq!(usage_err(&["-n", "-n"]), format!("Error: conflicting command line option '-n'\n{tail}"));
    assert_eq!(usage_err(&["-x"]), format!("Error: option -x not recognized\n{tail}"));
    assert_eq!(usage_err(&["--bogus"]), format!("Error: option --bogus not recognized\n{tail}"));
    assert_eq!(
        usage_err(&["--nodeamon"]),
        format!("Error: option --nodeamon not recognized (did you mean --nodaemon?)\n{tail}")
    );
    assert_eq!(usage_err(&["-c"]), format!("Error: option -c requires argument\n{tail}"));
    assert_eq!(usage_err(&["--nodaemon=1"]), format!("Error: option --nodaemon must not have an argument\n{tail}"));
    assert_eq!(usage_err(&["--log"]), format!("Error: option --log not a unique prefix\n{tail}"));
    assert_eq!(
        usage_err(&["-n", "extra", "-k"]),
        format!("Error: positional arguments are not supported: ['extra', '-k']\n{tail}")
    );
    assert_eq!(
        usage_err(&["-m", "abc"]),
        format!("Error: invalid value for -m 'abc': abc can not be converted to an octal type\n{tail}")
    );
    assert_eq!(
        usage_err(&["--loglevel=warning"]),
        format!("Error: invalid value for --loglevel 'warning': bad logging level name 'warning'\n{tail}")
    );
    assert_eq!(usage_err(&["-u", "nosuchuser"]), format!("Error: Invalid user name nosuchuser\n{tail}"));
}

#[test]
fn help_and_version_exit_zero() {
    let help = args(&["-h"]).unwrap_err();
    assert_eq!(help.code, 0);
    for o in OPTIONS {
        assert!(help.stdout.contains(&format!("--{}", o.long)), "{}", o.long);
    }
    for sub in ["ctl", "check", "echo-conf"] {
        assert!(help.stdout.contains(&format!("\n{sub} -- ")), "{sub}");
    }
    let version = args(&["--version"]).unwrap_err();
    assert_eq!((version.code, version.stdout.as_str()), (0, concat!(env!("CARGO_PKG_VERSION"), "\n")));
}

#[test]
fn echo_conf_is_a_valid_config() {
    let dir = std::env::temp_dir().join(format!("minisv-echo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("minisv.conf");
    std::fs::write(&path, echo_conf()).unwrap();
    let loaded = config::load(&path, &Overrides::default());
    std::fs::remove_dir_all(&dir).ok();
    let config = loaded.unwrap();
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);
    assert!(config.rpcinterface_supervisor);
    assert_eq!(config.unix_http_servers[0].chmod, 0o700);
    assert!(config.groups.is_empty());
}

#[test]
fn echo_conf_shows_every_section_and_option() {
    let text = echo_conf();
    let tables: &[(&str, &[options::Key])] = &[
        ("supervisord", options::SUPERVISORD),
        ("unix_http_server", options::UNIX_HTTP_SERVER),
        ("inet_http_server", options::INET_HTTP_SERVER),
        ("supervisorctl", options::SUPERVISORCTL),
        ("program:", options::PROGRAM),
        ("eventlistener:", options::EVENTLISTENER_EXTRA),
        ("fcgi-program:", options::FCGI_EXTRA),
        ("group:", options::GROUP),
        ("include", options::INCLUDE),
        ("rpcinterface:supervisor", options::RPCINTERFACE),
    ];
    for (section, keys) in tables {
        assert!(text.contains(&format!("[{section}")) || text.contains(&format!(";[{section}")), "{section}");
        for k in keys.iter() {
            let shown = text.lines().any(|l| {
                let l = l.trim_start_matches(';');
                l.starts_with(&format!("{}=", k.name)) || l.starts_with(&format!("{} =", k.name))
            });
            assert!(shown, "echo-conf misses {section} {}", k.name);
        }
    }
}

#[test]
fn check_report_lists_groups_and_processes() {
    let dir = std::env::temp_dir().join(format!("minisv-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("minisv.conf");
    std::fs::write(&path, "[supervisord]\nlogfile=/tmp/x.log\n[program:web]\ncommand=/bin/web --port 80\nuser=root\nstdout_logfile=NONE\nredirect_stderr=true\n[eventlistener:l]\ncommand=/bin/l\nevents=TICK_5\nautostart=no\n").unwrap();
    let config = config::load(&path, &Overrides::default()).unwrap();
    let report = check_report(&config);
    std::fs::remove_dir_all(&dir).ok();
    let table: Vec<&str> = report.lines().skip_while(|l| !l.starts_with("GROUP")).collect();
    assert_eq!(
        table,
        vec![
            "GROUP  KIND      PRIO  PROCESS  PRIO  AUTOSTART  USER  STDOUT LOG  STDERR LOG   COMMAND",
            "l      listener  -1    l        999   no         -     AUTO        AUTO         /bin/l",
            "web    program   999   web      999   yes        root  -           (to stdout)  /bin/web --port 80",
        ]
    );
    assert!(report.contains(": OK (2 groups, 2 processes)\n"), "{report}");
}

#[test]
fn check_fails_with_every_error_prefixed() {
    let a = DaemonArgs { config: Some(PathBuf::from("/nonexistent/x.conf")), ..DaemonArgs::default() };
    let exit = load_or_exit("minisv", &a).unwrap_err();
    assert_eq!(exit.code, 2);
    assert_eq!(exit.stderr, "Error: could not find config file /nonexistent/x.conf\nFor help, use minisv -h\n");
}
