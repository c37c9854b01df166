//! The daemon's command line (supervisord's options, parsed the way Python's `getopt` does),
//! `minisv check` and `minisv echo-conf`.

use std::path::PathBuf;

use crate::config::{self, Config, GroupKind, LogFile, Overrides};

mod sample;
pub use sample::echo_conf;

/// What an option sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    Help,
    Version,
    Config,
    Test,
    ProfileOptions,
    Nodaemon,
    Silent,
    Nocleanup,
    StripAnsi,
    User,
    Umask,
    Directory,
    Logfile,
    LogfileMaxbytes,
    LogfileBackups,
    Loglevel,
    Pidfile,
    Identifier,
    Childlogdir,
    Minfds,
    Minprocs,
}

struct Opt {
    short: Option<char>,
    long: &'static str,
    arg: Option<&'static str>,
    target: Target,
    help: &'static str,
}

const fn opt(
    short: Option<char>,
    long: &'static str,
    arg: Option<&'static str>,
    target: Target,
    help: &'static str,
) -> Opt {
    Opt { short, long, arg, target, help }
}

/// The daemon's options, declared once: the parser and the usage text read this table.
const OPTIONS: &[Opt] = &[
    opt(
        Some('c'),
        "configuration",
        Some("FILENAME"),
        Target::Config,
        "configuration file path (searches if not given)",
    ),
    opt(
        Some('n'),
        "nodaemon",
        None,
        Target::Nodaemon,
        "run in the foreground (same as 'nodaemon=true' in config file)",
    ),
    opt(Some('s'), "silent", None, Target::Silent, "no logs to stdout (maps to 'silent=true' in config file)"),
    opt(Some('h'), "help", None, Target::Help, "print this usage message and exit"),
    opt(Some('v'), "version", None, Target::Version, "print the minisv version number and exit"),
    opt(Some('u'), "user", Some("USER"), Target::User, "run the daemon as this user (or numeric uid)"),
    opt(Some('m'), "umask", Some("UMASK"), Target::Umask, "use this umask for the daemon (default is 022)"),
    opt(Some('d'), "directory", Some("DIRECTORY"), Target::Directory, "directory to chdir to when daemonized"),
    opt(Some('l'), "logfile", Some("FILENAME"), Target::Logfile, "use FILENAME as logfile path"),
    opt(
        Some('y'),
        "logfile_maxbytes",
        Some("BYTES"),
        Target::LogfileMaxbytes,
        "use BYTES to limit the max size of logfile",
    ),
    opt(
        Some('z'),
        "logfile_backups",
        Some("NUM"),
        Target::LogfileBackups,
        "number of backups to keep when max bytes reached",
    ),
    opt(
        Some('e'),
        "loglevel",
        Some("LEVEL"),
        Target::Loglevel,
        "use LEVEL as log level (debug,info,warn,error,critical)",
    ),
    opt(Some('j'), "pidfile", Some("FILENAME"), Target::Pidfile, "write a pid file for the daemon process to FILENAME"),
    opt(Some('i'), "identifier", Some("STR"), Target::Identifier, "identifier used for this instance of the daemon"),
    opt(Some('q'), "childlogdir", Some("DIRECTORY"), Target::Childlogdir, "the log directory for child process logs"),
    opt(
        Some('k'),
        "nocleanup",
        None,
        Target::Nocleanup,
        "prevent the removal of old automatic child log files at startup",
    ),
    opt(Some('a'), "minfds", Some("NUM"), Target::Minfds, "the minimum number of file descriptors for start success"),
    opt(Some('t'), "strip_ansi", None, Target::StripAnsi, "strip ansi escape codes from process output"),
    opt(None, "minprocs", Some("NUM"), Target::Minprocs, "the minimum number of processes available for start success"),
    opt(None, "profile_options", Some("OPTIONS"), Target::ProfileOptions, "accepted for compatibility and ignored"),
    opt(
        None,
        "test",
        None,
        Target::Test,
        "check the configuration, print the process table and exit (as 'minisv check')",
    ),
];

/// The daemon's parsed command line.
#[derive(Clone, Debug, Default)]
pub struct DaemonArgs {
    /// `-c`; `None` means search (see `config::search`).
    pub config: Option<PathBuf>,
    pub overrides: Overrides,
    /// `--test`: check the config and exit instead of running.
    pub test: bool,
}

/// Output and exit status for a command line that ends before running anything.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exit {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Exit {
    /// Prints the output and returns the exit status.
    pub fn print(&self) -> i32 {
        print!("{}", self.stdout);
        eprint!("{}", self.stderr);
        self.code
    }
}

/// Supervisor's usage error: two lines on stderr, status 2.
pub fn usage_error(argv0: &str, message: &str) -> Exit {
    Exit { code: 2, stdout: String::new(), stderr: format!("Error: {message}\nFor help, use {argv0} -h\n") }
}

/// The `-h` text, built from the option table.
pub fn usage(argv0: &str) -> String {
    let mut out = format!(
        "minisv -- run a set of applications as daemons (reads Supervisor config files).\n\nUsage: {argv0} [options]\n       {argv0} ctl [options] [action [arguments]]\n       {argv0} check [-c FILE]\n       {argv0} echo-conf\n\nOptions:\n"
    );
    for o in OPTIONS {
        let mut names = match o.short {
            Some(s) => format!("-{s}/--{}", o.long),
            None => format!("--{}", o.long),
        };
        if let Some(arg) = o.arg {
            names.push(' ');
            names.push_str(arg);
        }
        out.push_str(&format!("{names} -- {}\n", o.help));
    }
    out.push_str(
        "\nSubcommands:\nctl -- control a running daemon (the supervisorctl command line; see 'ctl -h')\ncheck -- validate the configuration, print warnings and the process table, start nothing\necho-conf -- print a commented sample configuration file\n",
    );
    out
}

/// Python's `repr()` of a list of str.
fn py_list(items: &[String]) -> String {
    let inner: Vec<String> = items.iter().map(|s| config::ini::py_repr(s)).collect();
    format!("[{}]", inner.join(", "))
}

/// Parses the daemon's options (`args` excludes argv[0]) as supervisord does: Python getopt
/// (`-cFILE`, `-c FILE`, grouped flags, `--opt=value`, `--opt value`, unique long prefixes),
/// each value checked with its type, a repeated option is a conflict.
pub fn parse_daemon_args(argv0: &str, args: &[String]) -> Result<DaemonArgs, Exit> {
    let err = |msg: String| usage_error(argv0, &msg);
    let mut found: Vec<(String, &Opt, Option<String>)> = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        i += 1;
        if a == "--" {
            break;
        }
        if let Some(body) = a.strip_prefix("--") {
            let (name, inline) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (body, None),
            };
            let exact = OPTIONS.iter().find(|o| o.long == name);
            let matches: Vec<&Opt> = OPTIONS.iter().filter(|o| o.long.starts_with(name)).collect();
            let o = match (exact, matches.len()) {
                (Some(o), _) => o,
                (None, 1) => matches[0],
                (None, 0) => {
                    // Supervisor's words, then a near miss if there is one.
                    let hint = crate::config::options::did_you_mean(name, OPTIONS.iter().map(|o| o.long))
                        .map(|m| format!(" (did you mean --{m}?)"))
                        .unwrap_or_default();
                    return Err(err(format!("option --{name} not recognized{hint}")));
                }
                _ => return Err(err(format!("option --{name} not a unique prefix"))),
            };
            let value = match (o.arg, inline) {
                (None, Some(_)) => return Err(err(format!("option --{} must not have an argument", o.long))),
                (None, None) => None,
                (Some(_), Some(v)) => Some(v),
                (Some(_), None) => match args.get(i) {
                    Some(v) => {
                        i += 1;
                        Some(v.clone())
                    }
                    None => return Err(err(format!("option --{} requires argument", o.long))),
                },
            };
            found.push((format!("--{}", o.long), o, value));
        } else if a.len() > 1 && a.starts_with('-') {
            let chars: Vec<char> = a[1..].chars().collect();
            let mut j = 0;
            while j < chars.len() {
                let c = chars[j];
                j += 1;
                let Some(o) = OPTIONS.iter().find(|o| o.short == Some(c)).or(if c == '?' {
                    OPTIONS.iter().find(|o| o.target == Target::Help)
                } else {
                    None
                }) else {
                    return Err(err(format!("option -{c} not recognized")));
                };
                let value = if o.arg.is_some() {
                    let rest: String = chars[j..].iter().collect();
                    j = chars.len();
                    if !rest.is_empty() {
                        Some(rest)
                    } else if let Some(v) = args.get(i) {
                        i += 1;
                        Some(v.clone())
                    } else {
                        return Err(err(format!("option -{c} requires argument")));
                    }
                } else {
                    None
                };
                found.push((format!("-{c}"), o, value));
            }
        } else {
            i -= 1;
            break;
        }
    }
    if i < args.len() {
        return Err(err(format!("positional arguments are not supported: {}", py_list(&args[i..]))));
    }

    let mut out = DaemonArgs::default();
    let mut seen: Vec<Target> = Vec::new();
    for (given, o, value) in found {
        match o.target {
            Target::Help => return Err(Exit { code: 0, stdout: usage(argv0), stderr: String::new() }),
            Target::Version => {
                return Err(Exit { code: 0, stdout: format!("{}\n", env!("CARGO_PKG_VERSION")), stderr: String::new() })
            }
            _ => {}
        }
        if seen.contains(&o.target) {
            return Err(err(format!("conflicting command line option {}", config::ini::py_repr(&given))));
        }
        seen.push(o.target);
        let v = value.unwrap_or_default();
        let check = |r: Result<(), String>| {
            r.map_err(|msg| err(format!("invalid value for {given} {}: {msg}", config::ini::py_repr(&v))))
        };
        let ov = &mut out.overrides;
        use crate::config::types as t;
        match o.target {
            Target::Help | Target::Version => {}
            Target::Config => out.config = Some(PathBuf::from(&v)),
            Target::Test => out.test = true,
            Target::ProfileOptions => {}
            Target::Nodaemon => ov.nodaemon = Some(true),
            Target::Silent => ov.silent = Some(true),
            Target::Nocleanup => ov.nocleanup = Some(true),
            Target::StripAnsi => ov.strip_ansi = Some(true),
            Target::User => {
                t::user(&v).map_err(&err)?;
                ov.user = Some(v);
            }
            Target::Umask => {
                check(t::octal(&v).map(drop))?;
                ov.umask = Some(v);
            }
            Target::Directory => {
                check(t::existing_directory(&v).map(drop))?;
                ov.directory = Some(v);
            }
            Target::Logfile => {
                check(t::existing_dirpath(&v).map(drop))?;
                ov.logfile = Some(v);
            }
            Target::LogfileMaxbytes => {
                check(t::byte_size(&v).map(drop))?;
                ov.logfile_maxbytes = Some(v);
            }
            Target::LogfileBackups => {
                check(t::integer(&v).map(drop))?;
                ov.logfile_backups = Some(v);
            }
            Target::Loglevel => {
                check(t::log_level(&v).map(drop))?;
                ov.loglevel = Some(v);
            }
            Target::Pidfile => {
                check(t::existing_dirpath(&v).map(drop))?;
                ov.pidfile = Some(v);
            }
            Target::Identifier => ov.identifier = Some(v),
            Target::Childlogdir => {
                check(t::existing_directory(&v).map(drop))?;
                ov.childlogdir = Some(v);
            }
            Target::Minfds => {
                check(t::integer(&v).map(drop))?;
                ov.minfds = Some(v);
            }
            Target::Minprocs => {
                check(t::integer(&v).map(drop))?;
                ov.minprocs = Some(v);
            }
        }
    }
    Ok(out)
}

/// The config file to use: `-c`, or the search of 0.3 (a usage error when nothing is found).
pub fn config_path(argv0: &str, args: &DaemonArgs) -> Result<PathBuf, Exit> {
    match &args.config {
        Some(p) => Ok(p.clone()),
        None => config::search(argv0).map_err(|searched| {
            let list: Vec<String> = searched.iter().map(|p| p.display().to_string()).collect();
            usage_error(
                argv0,
                &format!(
                    "No config file found at default paths ({}); use the -c option to specify a config file at a different path",
                    list.join(", ")
                ),
            )
        }),
    }
}

/// Loads the config for the daemon: every error as an `Error: ` line on stderr and status 2,
/// then supervisord's pointer to the usage text.
pub fn load_or_exit(argv0: &str, args: &DaemonArgs) -> Result<Config, Exit> {
    load_reporting(argv0, args, true)
}

fn load_reporting(argv0: &str, args: &DaemonArgs, usage_hint: bool) -> Result<Config, Exit> {
    let path = config_path(argv0, args)?;
    config::load(&path, &args.overrides).map_err(|errors| {
        let mut stderr = String::new();
        for e in &errors {
            stderr.push_str(&format!("Error: {e}\n"));
        }
        if usage_hint {
            stderr.push_str(&format!("For help, use {argv0} -h\n"));
        }
        Exit { code: 2, stdout: String::new(), stderr }
    })
}

/// `minisv check [options]` / `minisv --test`: validates, prints warnings and the process table
/// (status 0), or every error (status 2). Starts nothing. A config error is about the file, not
/// the command line, so no pointer to the usage text follows it.
pub fn check(argv0: &str, args: &DaemonArgs) -> i32 {
    match load_reporting(argv0, args, false) {
        Ok(config) => {
            print!("{}", check_report(&config));
            0
        }
        Err(exit) => exit.print(),
    }
}

/// `check`'s look at each `command=` as things stand now (the daemon looks again at each
/// start, so these are warnings): a program that cannot be found or run, and a relative path,
/// which the daemon checks from its own working directory, not from the config file's.
fn command_warnings(config: &Config) -> Vec<config::Diagnostic> {
    use crate::daemon::spawn;
    let mut out = Vec::new();
    for g in &config.groups {
        let prefix = match g.kind {
            GroupKind::Program => "program",
            GroupKind::EventListener { .. } => "eventlistener",
            GroupKind::Fcgi { .. } => "fcgi-program",
        };
        let mut seen = std::collections::HashSet::new();
        for p in &g.processes {
            let section = format!("{prefix}:{}", p.program);
            let warn = |message: String| config::Diagnostic {
                span: Some(p.span.clone()),
                section: Some(section.clone()),
                key: Some("command".into()),
                message,
            };
            let search = spawn::search_path(p, &config.supervisord.environment);
            let first =
                spawn::shlex_split(&p.command).ok().and_then(|argv| argv.into_iter().next()).unwrap_or_default();
            let relative = (first.contains('/') && !first.starts_with('/')).then(|| {
                format!(
                    "{} is a relative path, checked from the directory the daemon runs in, not the config \
                     file's: give an absolute path",
                    spawn::py_repr(&first)
                )
            });
            let message = match (spawn::resolve_command(&p.command, search.as_deref()), relative) {
                (Err(e), None) => format!("{} (now; each start looks again)", e.message()),
                (Err(e), Some(r)) => format!("{} (now; each start looks again); {r}", e.message()),
                (Ok(_), Some(r)) => r,
                (Ok(_), None) => continue,
            };
            // numprocs copies of one section share their command's fate: one warning.
            if seen.insert(message.clone()) {
                out.push(warn(message));
            }
        }
    }
    out
}

fn log_name(log: &LogFile) -> String {
    match log {
        LogFile::None => "-".to_string(),
        LogFile::Auto => "AUTO".to_string(),
        LogFile::Path(p) => p.display().to_string(),
    }
}

/// The text `check` prints for a valid config.
pub fn check_report(config: &Config) -> String {
    let mut out = String::new();
    for info in &config.infos {
        out.push_str(&format!("INFO {info}\n"));
    }
    for w in config.warnings.iter().chain(&command_warnings(config)) {
        out.push_str(&format!("WARN {w}\n"));
    }
    let s = &config.supervisord;
    let count: usize = config.groups.iter().map(|g| g.processes.len()).sum();
    out.push_str(&format!("{}: OK ({} groups, {count} processes)\n", config.path.display(), config.groups.len()));
    let main_log = match &s.logfile {
        config::MainLog::File(p) => p.display().to_string(),
        config::MainLog::Syslog => "syslog".to_string(),
    };
    out.push_str(&format!("main log: {main_log} (level {:?})\npidfile: {}\n", s.loglevel, s.pidfile.display()));
    for u in &config.unix_http_servers {
        out.push_str(&format!(
            "[{}] unix://{}{}\n",
            u.section,
            u.file.display(),
            if u.auth.is_some() { " (auth)" } else { "" }
        ));
    }
    for i in &config.inet_http_servers {
        let host = if i.host.is_empty() { "*" } else { &i.host };
        out.push_str(&format!(
            "[{}] http://{host}:{}{}\n",
            i.section,
            i.port,
            if i.auth.is_some() { " (auth)" } else { "" }
        ));
    }
    if !config.rpcinterface_supervisor {
        out.push_str("note: no [rpcinterface:supervisor] section: only system.* methods will be served\n");
    }
    let header =
        ["GROUP", "KIND", "PRIO", "PROCESS", "PRIO", "AUTOSTART", "USER", "STDOUT LOG", "STDERR LOG", "COMMAND"];
    let mut rows: Vec<Vec<String>> = vec![header.iter().map(|h| h.to_string()).collect()];
    for g in &config.groups {
        let kind = match &g.kind {
            GroupKind::Program => "program".to_string(),
            GroupKind::EventListener { .. } => "listener".to_string(),
            GroupKind::Fcgi { .. } => "fcgi".to_string(),
        };
        if g.processes.is_empty() {
            rows.push(vec![
                g.name.clone(),
                kind.clone(),
                g.priority.to_string(),
                "(none)".into(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
            ]);
        }
        for p in &g.processes {
            let stderr = if p.redirect_stderr { "(to stdout)".to_string() } else { log_name(&p.stderr.logfile) };
            rows.push(vec![
                g.name.clone(),
                kind.clone(),
                g.priority.to_string(),
                p.name.clone(),
                p.priority.to_string(),
                if p.autostart { "yes" } else { "no" }.to_string(),
                p.user.as_ref().map(|u| u.name.clone()).unwrap_or_else(|| "-".to_string()),
                log_name(&p.stdout.logfile),
                stderr,
                p.command.replace('\n', " "),
            ]);
        }
    }
    let widths: Vec<usize> =
        (0..header.len()).map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0)).collect();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}  ", w = widths[c]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests;
