//! The non-program sections: reading files and `[include]`, `[supervisord]`, the HTTP servers,
//! `[supervisorctl]`, `[rpcinterface:x]`, and the unknown-section/key warnings.

use std::path::{Path, PathBuf};

use super::expand::Names;
use super::include::glob;
use super::ini::{py_strip, Ini};
use super::load::*;
use super::model::*;
use super::options::{self, SectionKind};
use super::types;
use super::Overrides;

/// Reads one file into the parser; a missing or unreadable file is an error.
pub fn read_file(ini: &mut Ini, path: &Path, errors: &mut Vec<Diagnostic>) -> bool {
    // Only regular files, and not huge ones: a FIFO would block the reader forever and
    // /dev/zero would never end.
    const MAX_CONFIG: u64 = 16 << 20;
    let refuse = |message: String, errors: &mut Vec<Diagnostic>| {
        errors.push(Diagnostic { span: None, section: None, key: None, message });
        false
    };
    if let Ok(meta) = std::fs::metadata(path) {
        if !meta.is_file() {
            return refuse(format!("could not read config file {}: not a regular file", path.display()), errors);
        }
        if meta.len() > MAX_CONFIG {
            return refuse(
                format!("could not read config file {}: larger than {} MiB", path.display(), MAX_CONFIG >> 20),
                errors,
            );
        }
    }
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => {
            let message = if e.kind() == std::io::ErrorKind::NotFound {
                format!("could not find config file {}", path.display())
            } else {
                format!("could not read config file {}: {e}", path.display())
            };
            errors.push(Diagnostic { span: None, section: None, key: None, message });
            return false;
        }
    };
    if let Err(e) = ini.read(&String::from_utf8_lossy(&bytes), path) {
        for (span, message) in e.diagnostics() {
            errors.push(Diagnostic { span: Some(span), section: None, key: None, message });
        }
    }
    true
}

/// `[include] files=`: one level, globbed against the main file's directory, sorted.
pub fn read_includes(ld: &mut Loader) {
    if !ld.ini.has_section("include") {
        return;
    }
    let mut names = Names::new();
    names.set_str("host_node_name", ld.host.clone());
    let span = ld.section_span("include");
    let files = match ld.get("include", "files", &names) {
        Got::Found(text, _) => text,
        Got::Bad => return,
        Got::Missing => {
            ld.error(Some(span), "include", None, ".ini file has [include] section, but no files setting");
            return;
        }
    };
    let base = ld.main.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("/"));
    for pattern in types::py_split(&files) {
        let full = base.join(pattern);
        let matches = glob(&full);
        if matches.is_empty() {
            let span = ld.raw("include", "files").map(|v| v.span);
            ld.warn(span, "include", Some("files"), format!("No file matches via include \"{}\"", full.display()));
            continue;
        }
        for file in matches {
            ld.infos.push(format!("Included extra file \"{}\" during parsing", file.display()));
            let mut errors = Vec::new();
            read_file(&mut ld.ini, &file, &mut errors);
            ld.errors.extend(errors);
        }
    }
}

fn normalize(p: &str) -> PathBuf {
    absolute(Path::new(&types::expand_user(p)))
}

/// `[supervisord]`, with the command line on top.
pub fn supervisord(ld: &mut Loader, ov: &Overrides) -> SupervisordConfig {
    const S: &str = "supervisord";
    let none = Names::new();
    // A command-line value beats the config: convert it with the same type, no expansion. Without
    // a default given, the options table's is taken (converted the same way).
    macro_rules! pick {
        ($field:ident, $key:expr, $conv:expr, $expected:expr) => {
            pick!($field, $key, table_default(options::SUPERVISORD, $key, $conv), $conv, $expected)
        };
        ($field:ident, $key:expr, $default:expr, $conv:expr, $expected:expr) => {
            match &ov.$field {
                Some(v) => match $conv(v.as_str()) {
                    Ok(x) => x,
                    Err(msg) => {
                        ld.errors.push(Diagnostic {
                            span: None,
                            section: None,
                            key: Some(format!("--{}", $key)),
                            message: format!("{msg}; expected {}", $expected),
                        });
                        $default
                    }
                },
                None => ld.conv(S, $key, &none, $default, $conv, $expected),
            }
        };
    }
    let flag = |o: Option<bool>, ld: &mut Loader, key: &str| match o {
        Some(v) => v,
        None => ld.conv_def(S, key, &none, options::SUPERVISORD, types::boolean, EXPECT_BOOL),
    };
    let minfds = pick!(minfds, "minfds", types::integer, EXPECT_INT);
    let minprocs = pick!(minprocs, "minprocs", types::integer, EXPECT_INT);
    // An empty default in the table: not set.
    let directory = pick!(directory, "directory", None, |s: &str| types::existing_directory(s).map(Some), EXPECT_DIR);
    let user = pick!(user, "user", None, |s: &str| types::user(s).map(Some), EXPECT_USER);
    let umask = pick!(umask, "umask", types::octal, EXPECT_OCTAL);
    let main_log = |s: &str| -> Result<MainLog, String> {
        if s == "syslog" {
            Ok(MainLog::Syslog)
        } else {
            types::existing_dirpath(s).map(|_| MainLog::File(normalize(s)))
        }
    };
    let logfile = pick!(logfile, "logfile", main_log, EXPECT_PATH);
    let logfile_maxbytes = pick!(logfile_maxbytes, "logfile_maxbytes", types::byte_size, EXPECT_SIZE);
    let logfile_backups = pick!(logfile_backups, "logfile_backups", types::integer, EXPECT_INT);
    let loglevel = pick!(loglevel, "loglevel", types::log_level, EXPECT_LEVEL);
    let pid = |s: &str| types::existing_dirpath(s).map(|_| normalize(s));
    let pidfile = pick!(pidfile, "pidfile", pid, EXPECT_PATH);
    let identifier = pick!(identifier, "identifier", |s: &str| Ok::<_, String>(s.to_string()), "");
    let nodaemon = flag(ov.nodaemon, ld, "nodaemon");
    let silent = flag(ov.silent, ld, "silent");
    let childlogdir = pick!(
        childlogdir,
        "childlogdir",
        default_childlogdir(),
        |s: &str| types::existing_directory(s).map(|p| absolute(&p)),
        EXPECT_DIR
    );
    let nocleanup = flag(ov.nocleanup, ld, "nocleanup");
    let strip_ansi = flag(ov.strip_ansi, ld, "strip_ansi");
    let restart_limit = ld.conv_def(S, "restart_limit", &none, options::SUPERVISORD, types::integer, EXPECT_INT);
    if restart_limit < 0 {
        let span = ld.raw(S, "restart_limit").map(|v| v.span);
        ld.error(span, S, Some("restart_limit"), format!("{restart_limit} is negative; expected 0 (no limit) or more"));
    }
    let restart_limit = restart_limit.clamp(0, u32::MAX as i64) as u32;
    let exit_on =
        ld.conv_def(S, "exit_on", &none, options::SUPERVISORD, types::exit_on, "never, all-exited or any-exited");
    let state_path = |s: &str| -> Result<Option<PathBuf>, String> {
        if s.is_empty() {
            return Ok(None);
        }
        types::existing_dirpath(s).map(|_| Some(normalize(s)))
    };
    let state_file = ld.conv_def(S, "state_file", &none, options::SUPERVISORD, state_path, EXPECT_PATH);
    let logfile_rotation = Rotation {
        every: ld.conv_def(S, "logfile_rotate", &none, options::SUPERVISORD, types::rotate_every, EXPECT_ROTATE),
        compress: ld.conv_def(S, "logfile_compress", &none, options::SUPERVISORD, types::boolean, EXPECT_BOOL),
    };
    let log_format = ld.conv_def(S, "log_format", &none, options::SUPERVISORD, types::log_format, EXPECT_LOG_FORMAT);

    // Expanded twice, as Supervisor does (the getter, then with host_node_name).
    let mut env_names = Names::new();
    env_names.set_str("host_node_name", ld.host.clone());
    let environment = match ld.get_with(S, "environment", &Names::new(), 1) {
        Got::Found(once, span) => match ld.expand(&once, &span, &env_names, "environment") {
            Ok(text) => parse_environment(ld, S, &text, &span),
            Err(msg) => {
                ld.error(Some(span), S, Some("environment"), msg);
                Vec::new()
            }
        },
        _ => Vec::new(),
    };
    ld.env.add_env(environment.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let got = ld.get(S, "environment_file", &none);
    let environment_files = environment_files(ld, S, got);
    let credentials_directory = match ld.get(S, "credentials_directory", &none) {
        Got::Found(text, _) if !text.trim().is_empty() => Some(normalize(text.trim())),
        _ => None,
    };

    SupervisordConfig {
        logfile,
        logfile_maxbytes,
        logfile_backups: u32::try_from(logfile_backups.max(0)).unwrap_or(u32::MAX),
        loglevel,
        pidfile,
        umask,
        nodaemon,
        silent,
        minfds: u64::try_from(minfds.max(0)).unwrap_or(0),
        minprocs: u64::try_from(minprocs.max(0)).unwrap_or(0),
        nocleanup,
        childlogdir,
        user,
        directory,
        strip_ansi,
        environment,
        environment_files,
        credentials_directory,
        identifier,
        restart_limit,
        exit_on,
        state_file,
        logfile_rotation,
        log_format,
    }
}

/// `childlogdir`'s default: Python's `tempfile.gettempdir()`, `$TMPDIR` when it names a
/// directory, else the options table's `/tmp`.
fn default_childlogdir() -> PathBuf {
    match std::env::var_os("TMPDIR").map(PathBuf::from).filter(|d| d.is_dir()) {
        Some(dir) => dir,
        None => PathBuf::from(options::default_of(options::SUPERVISORD, "childlogdir")),
    }
}

/// Parses an expanded `environment=` value, warning about what Supervisor silently drops (Q18).
pub fn parse_environment(ld: &mut Loader, section: &str, text: &str, span: &Span) -> Vec<(String, String)> {
    match types::environment(text) {
        Ok(env) => {
            for (key, token) in &env.skipped {
                ld.warn(
                    Some(span.clone()),
                    section,
                    Some("environment"),
                    format!(
                        "the value of {key} ends at a space, so {token:?} is dropped (Supervisor does the same); quote values with spaces: {key}=\"...\""
                    ),
                );
            }
            env.pairs
        }
        Err(msg) => {
            ld.error(Some(span.clone()), section, Some("environment"), format!("{msg}; expected {EXPECT_ENV}"));
            Vec::new()
        }
    }
}

fn server_sections(ld: &Loader, base: &str) -> Vec<String> {
    ld.ini
        .sections
        .iter()
        .filter(|s| s.name == base || s.name.starts_with(&format!("{base}:")))
        .map(|s| s.name.clone())
        .collect()
}

fn credentials(ld: &mut Loader, section: &str) -> Option<Credentials> {
    let none = Names::new();
    let user = match ld.get(section, "username", &none) {
        Got::Found(t, _) => Some(t),
        _ => None,
    };
    let pass = match ld.get(section, "password", &none) {
        Got::Found(t, _) => Some(t),
        _ => None,
    };
    match (user, pass) {
        (Some(username), Some(password)) => Some(Credentials { username, password }),
        (None, None) => None,
        _ => {
            let span = ld.section_span(section);
            ld.error(
                Some(span),
                section,
                None,
                format!("Section [{section}] contains incomplete authentication: If a username or a password is specified, both the username and password must be specified"),
            );
            None
        }
    }
}

pub fn unix_http_servers(ld: &mut Loader) -> Vec<UnixHttpServerConfig> {
    let none = Names::new();
    let mut out = Vec::new();
    for section in server_sections(ld, "unix_http_server") {
        let file = match ld.get(&section, "file", &none) {
            Got::Found(t, _) => normalize(py_strip(&t)),
            Got::Bad => continue,
            Got::Missing => {
                let span = ld.section_span(&section);
                ld.error(Some(span), &section, None, format!("section [{section}] has no file value"));
                continue;
            }
        };
        let chown = ld.conv_opt(
            &section,
            "chown",
            &none,
            |s| types::user_group(s).map_err(|_| format!("Invalid sockchown value {s}")),
            EXPECT_USER_GROUP,
        );
        let chmod = ld.conv_def(
            &section,
            "chmod",
            &none,
            options::UNIX_HTTP_SERVER,
            |s| types::octal(s).map_err(|_| format!("Invalid chmod value {s}")),
            EXPECT_OCTAL,
        );
        let auth = credentials(ld, &section);
        out.push(UnixHttpServerConfig { section, file, chmod, chown, auth });
    }
    out
}

pub fn inet_http_servers(ld: &mut Loader) -> Vec<InetHttpServerConfig> {
    let none = Names::new();
    let mut out = Vec::new();
    for section in server_sections(ld, "inet_http_server") {
        let auth = credentials(ld, &section);
        let (host, port) = match ld.get(&section, "port", &none) {
            Got::Found(t, span) => match types::inet_address(&t) {
                Ok(hp) => hp,
                Err(msg) => {
                    ld.error(Some(span), &section, Some("port"), format!("{msg}; expected {EXPECT_PORT}"));
                    continue;
                }
            },
            Got::Bad => continue,
            Got::Missing => {
                let span = ld.section_span(&section);
                ld.error(Some(span), &section, None, format!("section [{section}] has no port value"));
                continue;
            }
        };
        let credentials_given = ld.raw(&section, "username").is_some() || ld.raw(&section, "password").is_some();
        if !credentials_given && !is_loopback(&host) {
            // Supervisor allows it; minisv refuses: anyone who reaches the port could run
            // anything as the daemon's user.
            let span = ld.raw(&section, "port").map(|v| v.span);
            let shown = if host.is_empty() { format!("*:{port}") } else { format!("{host}:{port}") };
            ld.error(
                span,
                &section,
                Some("port"),
                format!(
                    "{shown} is reachable from other machines but [{section}] has no username and password: \
                     anyone who can connect could control every program; set username= and password=, \
                     or listen on 127.0.0.1"
                ),
            );
            continue;
        }
        out.push(InetHttpServerConfig { section, host, port, auth });
    }
    out
}

/// Whether an `[inet_http_server]` host only accepts connections from this machine.
fn is_loopback(host: &str) -> bool {
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// `[supervisorctl]` as supervisorctl reads it.
pub fn supervisorctl(ld: &mut Loader) -> Option<CtlConfig> {
    const S: &str = "supervisorctl";
    if !ld.ini.has_section(S) {
        return None;
    }
    let none = Names::new();
    let text = |g: Got| match g {
        Got::Found(t, _) => Some(t),
        _ => None,
    };
    let default = |key| options::default_of(options::SUPERVISORCTL, key).to_string();
    let mut serverurl = text(ld.get(S, "serverurl", &none)).unwrap_or_else(|| default("serverurl"));
    if let Some(path) = serverurl.strip_prefix("unix://") {
        serverurl = format!("unix://{}", normalize(path).display());
    }
    let prompt = text(ld.get(S, "prompt", &none)).unwrap_or_else(|| default("prompt"));
    let username = text(ld.get(S, "username", &none));
    let password = text(ld.get(S, "password", &none));
    let history_file = text(ld.get(S, "history_file", &none)).filter(|h| !h.is_empty()).map(|h| normalize(&h));
    Some(CtlConfig { serverurl, username, password, prompt, history_file })
}

/// `[rpcinterface:x]`: only Supervisor's main interface exists in minisv.
pub fn rpcinterfaces(ld: &mut Loader) -> bool {
    let mut found = false;
    let factory_supported = options::default_of(options::RPCINTERFACE, "supervisor.rpcinterface_factory");
    let sections: Vec<String> =
        ld.ini.sections.iter().map(|s| s.name.clone()).filter(|n| n.starts_with("rpcinterface:")).collect();
    for section in sections {
        let span = ld.section_span(&section);
        let factory = ld.raw(&section, "supervisor.rpcinterface_factory");
        if section != "rpcinterface:supervisor" {
            ld.warn(
                Some(span),
                &section,
                None,
                "unsupported: minisv cannot load Python RPC interfaces; only [rpcinterface:supervisor] is provided, this section is ignored",
            );
            continue;
        }
        match factory {
            None => ld.error(
                Some(span),
                &section,
                None,
                format!("section [{section}] does not specify a supervisor.rpcinterface_factory"),
            ),
            Some(v) if v.text.trim() == factory_supported => found = true,
            Some(v) => ld.error(
                Some(v.span),
                &section,
                Some("supervisor.rpcinterface_factory"),
                format!(
                    "{} cannot be resolved within [{section}]: minisv cannot load Python code; expected {}",
                    v.text, factory_supported
                ),
            ),
        }
    }
    found
}

/// Unknown sections and keys (Supervisor ignores them silently), legacy program keys.
pub fn vocabulary_warnings(ld: &mut Loader) {
    let sections = ld.ini.sections.clone();
    for section in &sections {
        let Some(kind) = options::section_kind(&section.name) else {
            let base = section.name.split(':').next().unwrap_or("");
            let hint = options::did_you_mean(base, options::SECTIONS.iter().map(|s| s.0))
                .map(|b| {
                    let rest = section.name.strip_prefix(base).unwrap_or("");
                    format!("; did you mean [{b}{rest}]?")
                })
                .unwrap_or_default();
            ld.warn(Some(section.span.clone()), &section.name, None, format!("unknown section (ignored){hint}"));
            continue;
        };
        if kind == SectionKind::CtlPlugin {
            ld.warn(
                Some(section.span.clone()),
                &section.name,
                None,
                "unsupported: minisv ctl cannot load Python plugins; this section is ignored",
            );
        }
        let Some(keys) = options::keys_of(kind) else {
            continue;
        };
        let program_like = matches!(kind, SectionKind::Program | SectionKind::EventListener | SectionKind::FcgiProgram);
        for (key, value) in &section.entries {
            if keys.iter().any(|k| k.name == key) {
                continue;
            }
            if kind == SectionKind::Program && options::PLUGIN_PROGRAM_KEYS.iter().any(|(k, _)| k == key) {
                continue;
            }
            // `[program:b` without its `]` reads as the key `[program` of the section above
            // (Python's parser splits at the `:`), and so do the lines after it.
            if key.starts_with('[') {
                let msg = format!(
                    "section header without ']'? This line is read as a key of [{}], and so are the lines after it",
                    section.name
                );
                ld.warn(Some(value.span.clone()), &section.name, Some(key), msg);
                continue;
            }
            if program_like {
                if let Some((_, msg)) = options::LEGACY_PROGRAM_KEYS.iter().find(|(k, _)| k == key) {
                    ld.warn(Some(value.span.clone()), &section.name, Some(key), *msg);
                    continue;
                }
            }
            let hint = options::did_you_mean(key, keys.iter().map(|k| k.name))
                .map(|k| format!("; did you mean '{k}'?"))
                .unwrap_or_default();
            ld.warn(Some(value.span.clone()), &section.name, Some(key), format!("unknown key (ignored){hint}"));
        }
    }
}

/// minisv: `environment_file=` (already expanded): comma-separated paths, `~` and relative paths
/// resolved as other paths are. The files are read at spawn time, not now: a missing one fails
/// the spawn, not the config.
pub fn environment_files(ld: &mut Loader, section: &str, got: Got) -> Vec<PathBuf> {
    let Got::Found(text, span) = got else { return Vec::new() };
    let mut files = Vec::new();
    for part in text.split(',').map(str::trim) {
        if part.is_empty() {
            ld.error(Some(span.clone()), section, Some("environment_file"), "an empty path; expected PATH[,PATH...]");
            continue;
        }
        files.push(normalize(part));
    }
    files
}

/// minisv: `credentials=NAME:PATH[,NAME:PATH...]` (already expanded). A name becomes a file
/// name in the process's credentials directory.
pub fn credential_files(ld: &mut Loader, section: &str, got: Got) -> Vec<(String, PathBuf)> {
    let Got::Found(text, span) = got else { return Vec::new() };
    let mut out: Vec<(String, PathBuf)> = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, path) = part.split_once(':').map(|(n, p)| (n.trim(), p.trim())).unwrap_or((part, ""));
        let good_name = !name.is_empty()
            && name != "."
            && name != ".."
            && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        let msg = if !good_name {
            Some(format!("{name:?} is not a credential name (letters, digits, '_', '-' and '.')"))
        } else if path.is_empty() {
            Some(format!("{name}: no path"))
        } else if out.iter().any(|(n, _)| n == name) {
            Some(format!("{name} is given twice"))
        } else {
            None
        };
        match msg {
            Some(m) => ld.error(
                Some(span.clone()),
                section,
                Some("credentials"),
                format!("{m}; expected NAME:PATH[,NAME:PATH...]"),
            ),
            None => out.push((name.to_string(), normalize(path))),
        }
    }
    out
}
