//! Program-like sections (`[program:x]`, `[eventlistener:x]`, `[fcgi-program:x]`) and
//! `[group:x]` → process groups, following options.py's `process_groups_from_parser`.

use super::expand::{ExpValue, Names};
use super::ini::py_strip;
use super::load::*;
use super::model::*;
use super::options::{self, PROGRAM as P};
use super::sections::parse_environment;
use super::types::{self, LogFileName};
use crate::events::handler::ResultHandler;
use std::sync::Arc;

/// The most processes one program section may make. Supervisor has no limit, and a mistyped
/// `numprocs=32147483648` made the loader run until memory ran out (found by fuzzing); ten
/// thousand copies of one program is far beyond what a supervisor is used for (each costs
/// three pipes).
pub const MAX_NUMPROCS: i64 = 10_000;

fn list_of_strings(s: &str) -> Vec<String> {
    if s.is_empty() {
        return Vec::new();
    }
    s.split(',').map(|x| py_strip(x).to_string()).collect()
}

fn text_of(g: Got) -> Option<String> {
    match g {
        Got::Found(t, _) => Some(t),
        _ => None,
    }
}

/// A section's name part as a process/group name, or an error recorded.
fn checked_name(ld: &mut Loader, section: &str) -> Option<String> {
    let raw = section.split_once(':').map(|x| x.1).unwrap_or("");
    match types::process_or_group_name(raw) {
        Ok(name) => Some(name),
        Err(msg) => {
            let span = ld.section_span(section);
            ld.error(Some(span), section, None, msg);
            None
        }
    }
}

pub fn groups(ld: &mut Loader) -> Vec<GroupConfig> {
    let all: Vec<String> = ld.ini.sections.iter().map(|s| s.name.clone()).collect();
    let none = Names::new();
    let mut groups = Vec::new();
    let mut exclude: Vec<String> = Vec::new();

    for section in all.iter().filter(|s| s.starts_with("group:")) {
        let Some(name) = checked_name(ld, section) else {
            continue;
        };
        let programs = list_of_strings(&text_of(ld.get(section, "programs", &none)).unwrap_or_default());
        let priority = ld.conv_def(section, "priority", &none, options::GROUP, types::integer, EXPECT_INT);
        let span = ld.section_span(section);
        let programs_span = ld.raw(section, "programs").map(|v| v.span).or(Some(span.clone()));
        let mut processes = Vec::new();
        for program in programs {
            let p = format!("program:{program}");
            let f = format!("fcgi-program:{program}");
            let member = match (all.contains(&p), all.contains(&f)) {
                (false, false) => {
                    ld.error(
                        programs_span.clone(),
                        section,
                        Some("programs"),
                        format!("[{section}] names unknown program or fcgi-program {program}"),
                    );
                    continue;
                }
                (true, true) => {
                    ld.error(
                        programs_span.clone(),
                        section,
                        Some("programs"),
                        format!("[{section}] name {program} is ambiguous (exists as program and fcgi-program)"),
                    );
                    continue;
                }
                (true, false) => p,
                (false, true) => f,
            };
            exclude.push(member.clone());
            processes.extend(processes_from_section(ld, &member, &name));
        }
        processes.shrink_to_fit();
        groups.push(GroupConfig { name, priority, kind: GroupKind::Program, processes, span });
    }

    for section in all.iter().filter(|s| s.starts_with("program:") && !exclude.contains(s)) {
        let Some(name) = checked_name(ld, section) else {
            continue;
        };
        let priority = ld.conv_def(section, "priority", &none, P, types::integer, EXPECT_INT);
        let processes = processes_from_section(ld, section, &name);
        let span = ld.section_span(section);
        groups.push(GroupConfig { name, priority, kind: GroupKind::Program, processes, span });
    }

    for section in all.iter().filter(|s| s.starts_with("eventlistener:")) {
        if let Some(group) = event_listener(ld, section) {
            groups.push(group);
        }
    }

    for section in all.iter().filter(|s| s.starts_with("fcgi-program:") && !exclude.contains(s)) {
        if let Some(group) = fcgi_program(ld, section) {
            groups.push(group);
        }
    }

    groups.sort_by(|a, b| (a.priority, &a.name).cmp(&(b.priority, &b.name)));
    drop_colliding_groups(ld, groups)
}

/// Q12: Supervisor keeps the first group of a name (in sorted order) and silently drops the rest.
fn drop_colliding_groups(ld: &mut Loader, groups: Vec<GroupConfig>) -> Vec<GroupConfig> {
    let mut kept: Vec<GroupConfig> = Vec::new();
    for group in groups {
        if let Some(first) = kept.iter().find(|g| g.name == group.name) {
            let first_section = section_at(ld, &first.span);
            let second_section = section_at(ld, &group.span);
            let message = format!(
                "group name '{}' is defined twice: by [{first_section}] at {} and by [{second_section}] at {}; [{first_section}] is used (it sorts first by priority, then name) and [{second_section}] is ignored; rename one of them",
                group.name, first.span, group.span
            );
            ld.warn(Some(group.span.clone()), &second_section, None, message);
            continue;
        }
        kept.push(group);
    }
    kept
}

fn section_at(ld: &Loader, span: &Span) -> String {
    ld.ini.sections.iter().find(|s| s.span == *span).map(|s| s.name.clone()).unwrap_or_default()
}

fn event_listener(ld: &mut Loader, section: &str) -> Option<GroupConfig> {
    let none = Names::new();
    let pool = section.split_once(':').map(|x| x.1.to_string()).unwrap_or_default();
    let span = ld.section_span(section);
    let priority = ld.conv_def(section, "priority", &none, options::EVENTLISTENER_POOL, types::integer, EXPECT_INT);
    let buffer_size =
        ld.conv_def(section, "buffer_size", &none, options::EVENTLISTENER_EXTRA, types::integer, EXPECT_INT);
    if buffer_size < 1 {
        let s = ld.raw(section, "buffer_size").map(|v| v.span);
        ld.error(
            s,
            section,
            Some("buffer_size"),
            format!("[{section}] section sets invalid buffer_size ({buffer_size}); expected at least 1"),
        );
    }
    let default = options::default_of(options::EVENTLISTENER_EXTRA, "result_handler");
    let result_handler = text_of(ld.get(section, "result_handler", &none)).unwrap_or_else(|| default.to_string());
    if ResultHandler::from_spec(&result_handler).is_none() {
        let s = ld.raw(section, "result_handler").map(|v| v.span);
        ld.error(
            s,
            section,
            Some("result_handler"),
            format!(
                "{result_handler} cannot be resolved within [{section}]: minisv cannot load Python code; its built-in handlers are {}",
                ResultHandler::names_text()
            ),
        );
    }
    let events_span = ld.raw(section, "events").map(|v| v.span);
    let mut events: Vec<String> = Vec::new();
    for name in list_of_strings(&text_of(ld.get(section, "events", &none)).unwrap_or_default()) {
        let upper = name.to_uppercase();
        if !events.contains(&upper) {
            events.push(upper);
        }
    }
    if events.is_empty() {
        ld.error(
            events_span.clone().or(Some(span.clone())),
            section,
            None,
            format!("[{section}] section requires an \"events\" line"),
        );
    }
    for event in &events {
        if !options::EVENT_TYPES.contains(&event.as_str()) {
            let hint = options::did_you_mean(event, options::EVENT_TYPES.iter().copied())
                .map(|e| format!("did you mean {e}? "))
                .unwrap_or_default();
            ld.error(
                events_span.clone(),
                section,
                Some("events"),
                format!(
                    "Unknown event type {event} in [{section}] events; {hint}known types: {}",
                    options::EVENT_TYPES.join(", ")
                ),
            );
        }
    }
    if ld.conv_def(section, "redirect_stderr", &none, P, types::boolean, EXPECT_BOOL) {
        let s = ld.raw(section, "redirect_stderr").map(|v| v.span);
        ld.error(
            s,
            section,
            Some("redirect_stderr"),
            format!("[{section}] section sets redirect_stderr=true but this is not allowed because it will interfere with the eventlistener protocol"),
        );
    }
    let processes = processes_from_section(ld, section, &pool);
    Some(GroupConfig {
        name: pool,
        priority,
        kind: GroupKind::EventListener {
            events,
            buffer_size: usize::try_from(buffer_size.max(1)).unwrap_or(1),
            result_handler,
        },
        processes,
        span,
    })
}

fn fcgi_program(ld: &mut Loader, section: &str) -> Option<GroupConfig> {
    let none = Names::new();
    let name = checked_name(ld, section)?;
    let span = ld.section_span(section);
    let priority = ld.conv_def(section, "priority", &none, P, types::integer, EXPECT_INT);
    let proc_user = ld.conv_opt(section, "user", &none, types::user, EXPECT_USER);
    let backlog = match ld.conv_opt(section, "socket_backlog", &none, types::integer, EXPECT_INT) {
        Some(b) if !(1..=65535).contains(&b) => {
            let s = ld.raw(section, "socket_backlog").map(|v| v.span);
            ld.error(
                s,
                section,
                Some("socket_backlog"),
                format!("Invalid socket_backlog value {b}; expected 1 to 65535"),
            );
            None
        }
        b => b.map(|b| b as u32),
    };
    let owner = ld.conv_opt(
        section,
        "socket_owner",
        &none,
        |s| types::user_group(s).map_err(|_| format!("Invalid socket_owner value {s}")),
        EXPECT_USER_GROUP,
    );
    let mode = ld.conv_opt(
        section,
        "socket_mode",
        &none,
        |s| types::octal(s).map_err(|_| format!("Invalid socket_mode value {s}")),
        EXPECT_OCTAL,
    );
    let mut names = Names::new();
    names.set_str("program_name", name.clone());
    let (url, url_span) = match ld.get(section, "socket", &names) {
        Got::Found(t, s) if !t.is_empty() => (t, s),
        Got::Bad => return None,
        _ => {
            ld.error(Some(span), section, None, format!("[{section}] section requires a \"socket\" line"));
            return None;
        }
    };
    let socket = if let Some(path) = url.strip_prefix("unix://") {
        if !path.starts_with('/') {
            ld.error(
                Some(url_span),
                section,
                Some("socket"),
                format!("Unix socket path {path} is not an absolute path"),
            );
            return None;
        }
        let owner = owner.or_else(|| {
            proc_user.as_ref().filter(|u| u.uid != crate::sys::users::current_uid()).map(|u| (u.uid, u.gid))
        });
        FcgiSocket::Unix {
            path: absolute(std::path::Path::new(path)),
            owner,
            mode: Some(mode.unwrap_or_else(|| table_default(options::FCGI_EXTRA, "socket_mode", types::octal))),
        }
    } else {
        if owner.is_some() || mode.is_some() {
            ld.error(
                Some(url_span),
                section,
                Some("socket"),
                "socket_owner and socket_mode params should only be used with a Unix domain socket",
            );
            return None;
        }
        match parse_tcp(&url) {
            Some((host, port)) => FcgiSocket::Tcp { host, port },
            None => {
                ld.error(
                    Some(url_span),
                    section,
                    Some("socket"),
                    format!("Bad socket format {url}; expected unix:///absolute/path or tcp://host:port"),
                );
                return None;
            }
        }
    };
    let processes = processes_from_section(ld, section, &name);
    Some(GroupConfig { name, priority, kind: GroupKind::Fcgi { socket, socket_url: url, backlog }, processes, span })
}

/// The most `listen=` addresses of one program.
pub const MAX_LISTEN: usize = 16;

/// minisv's `listen=`: `[name:]tcp://ip:port` or `[name:]unix:///absolute/path`, separated by
/// commas or spaces. A name defaults to the program's (systemd's defaults to the socket
/// unit's); it must not clash with `ready_fd`, which would be one of the fds they take.
fn listen_addresses(
    ld: &mut Loader,
    section: &str,
    names: &Names,
    program: &str,
    ready_fd: Option<i32>,
) -> Vec<Listen> {
    let (text, span) = match ld.get(section, "listen", names) {
        Got::Found(t, s) => (t, s),
        Got::Bad | Got::Missing => return Vec::new(),
    };
    let mut out = Vec::new();
    for item in text.split(|c: char| c == ',' || c.is_whitespace()).filter(|i| !i.is_empty()) {
        let (name, url) = match item.split_once("://") {
            Some((head, _)) if head.contains(':') => {
                let (name, url) = item.split_once(':').unwrap_or(("", item));
                (name.to_string(), url)
            }
            _ => (program.to_string(), item),
        };
        let bad_name = name.is_empty()
            || name.len() > 255
            || !name.chars().all(|c| c.is_ascii_alphanumeric() || "_.-@".contains(c));
        let addr = if let Some(path) = url.strip_prefix("unix://") {
            (path.starts_with('/') && path.len() < 108).then(|| ListenAddr::Unix(std::path::PathBuf::from(path)))
        } else if let Some(hp) = url.strip_prefix("tcp://") {
            let hp = hp.strip_prefix("localhost:").map(|p| format!("127.0.0.1:{p}")).unwrap_or(hp.to_string());
            hp.parse::<std::net::SocketAddr>().ok().filter(|a| a.port() != 0).map(ListenAddr::Tcp)
        } else {
            None
        };
        match addr {
            _ if bad_name => ld.error(
                Some(span.clone()),
                section,
                Some("listen"),
                format!("bad name {name:?} in {item}; expected letters, digits, '_', '.', '-' or '@'"),
            ),
            None => ld.error(
                Some(span.clone()),
                section,
                Some("listen"),
                format!(
                    "bad address {item}; expected tcp://IP:PORT (PORT 1 to 65535, [IPv6] in brackets, or localhost) \
                     or unix:///absolute/path (under 108 bytes), optionally after NAME:"
                ),
            ),
            Some(addr) if out.iter().any(|l: &Listen| l.addr == addr) => {
                ld.error(Some(span.clone()), section, Some("listen"), format!("{item} is listed twice"))
            }
            Some(addr) => out.push(Listen { name, addr }),
        }
    }
    if out.len() > MAX_LISTEN {
        let msg = format!("{} addresses; at most {MAX_LISTEN} are allowed", out.len());
        ld.error(Some(span.clone()), section, Some("listen"), msg);
        out.truncate(MAX_LISTEN);
    }
    if let Some(fd) = ready_fd.filter(|fd| (3..3 + out.len() as i32).contains(fd)) {
        let msg = format!("ready_fd={fd} is one of the fds the listen sockets take (3 to {})", 2 + out.len());
        ld.error(Some(span), section, Some("listen"), msg);
    }
    out
}

/// `tcp://([^\s:]+):(\d+)$` with a port in 1..=65535.
fn parse_tcp(url: &str) -> Option<(String, u16)> {
    let rest = url.strip_prefix("tcp://")?;
    let (host, port) = rest.split_once(':')?;
    if host.is_empty()
        || host.chars().any(|c| c.is_whitespace())
        || port.is_empty()
        || !port.chars().all(|c| c.is_ascii_digit())
    {
        return None;
    }
    let port: u16 = port.parse().ok().filter(|&p| p >= 1)?;
    Some((host.to_lowercase(), port))
}

/// Shell syntax in a command that is not run through a shell, as (token, advice).
fn shell_syntax(command: &str) -> Option<String> {
    let words = types::py_split(command);
    let first = words.first().map(|w| w.rsplit('/').next().unwrap_or(w)).unwrap_or("");
    let is_shell = ["sh", "bash", "dash", "zsh", "ksh", "ash", "busybox"].contains(&first);
    if is_shell && words.iter().any(|w| w.starts_with("-c") || *w == "-lc") {
        return None;
    }
    for w in &words {
        let redirect = w.starts_with('>')
            || w.starts_with('<')
            || w.starts_with("2>")
            || w.starts_with("1>")
            || w.starts_with("&>");
        if redirect {
            return Some(format!(
                "'{w}' is passed to the program as an argument: commands do not run through a shell. To log output use stdout_logfile= (and redirect_stderr=true for stderr), or run it with sh -c '...'"
            ));
        }
        if ["|", "||", "&&", ";", "&"].contains(w) {
            return Some(format!(
                "'{w}' is passed to the program as an argument: commands do not run through a shell. Run it with sh -c '...' if you need a pipeline or a command list"
            ));
        }
        if let Some(pos) = w.find('$') {
            let next = w[pos + 1..].chars().next();
            if next.is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == '{' || c == '(') {
                return Some(format!(
                    "'{w}' is passed literally: commands do not run through a shell, so nothing expands $VARIABLES. Use %(ENV_NAME)s, or run it with sh -c '...'"
                ));
            }
        }
    }
    None
}

/// The keys of one output channel's options.
struct ChannelKeys {
    logfile: &'static str,
    syslog: &'static str,
    backups: &'static str,
    maxbytes: &'static str,
    rotate: &'static str,
    compress: &'static str,
}

const STDOUT_KEYS: ChannelKeys = ChannelKeys {
    logfile: "stdout_logfile",
    syslog: "stdout_syslog",
    backups: "stdout_logfile_backups",
    maxbytes: "stdout_logfile_maxbytes",
    rotate: "stdout_logfile_rotate",
    compress: "stdout_logfile_compress",
};

const STDERR_KEYS: ChannelKeys = ChannelKeys {
    logfile: "stderr_logfile",
    syslog: "stderr_syslog",
    backups: "stderr_logfile_backups",
    maxbytes: "stderr_logfile_maxbytes",
    rotate: "stderr_logfile_rotate",
    compress: "stderr_logfile_compress",
};

fn channel(
    ld: &mut Loader,
    section: &str,
    keys: &ChannelKeys,
    names: &Names,
    cmax: u64,
    events: bool,
) -> ChannelConfig {
    let (lf_key, sy_key) = (keys.logfile, keys.syslog);
    // Expanded twice, as Supervisor does.
    let logfile = match ld.get_with(section, lf_key, names, 2) {
        Got::Found(t, span) => match types::logfile_name(&t) {
            Ok(v) => v,
            Err(msg) => {
                ld.error(Some(span), section, Some(lf_key), format!("{msg}; expected {EXPECT_LOGFILE}"));
                LogFileName::None
            }
        },
        Got::Bad => LogFileName::None,
        Got::Missing => table_default(P, lf_key, types::logfile_name),
    };
    let backups = ld.conv_def(section, keys.backups, names, P, types::integer, EXPECT_INT);
    let maxbytes = ld.conv_def(section, keys.maxbytes, names, P, types::byte_size, EXPECT_SIZE);
    let mut syslog = ld.conv_def(section, sy_key, names, P, types::boolean, EXPECT_BOOL);
    let rotation = Rotation {
        every: ld.conv_def(section, keys.rotate, names, P, types::rotate_every, EXPECT_ROTATE),
        compress: ld.conv_def(section, keys.compress, names, P, types::boolean, EXPECT_BOOL),
    };
    let span = ld.raw(section, lf_key).map(|v| v.span);
    let maxbytes_span = ld.raw(section, keys.maxbytes).map(|v| v.span);
    let logfile = match logfile {
        LogFileName::Syslog => {
            ld.warn(
                span,
                section,
                Some(lf_key),
                format!("For [{section}], {lf_key}=syslog but this is deprecated and will be removed.  Use {sy_key}=true to enable syslog instead."),
            );
            syslog = true;
            LogFile::None
        }
        LogFileName::Auto => {
            if maxbytes == 0 {
                let key = if maxbytes_span.is_some() { keys.maxbytes } else { lf_key };
                ld.warn(
                    maxbytes_span.or(span).or_else(|| Some(ld.section_span(section))),
                    section,
                    Some(key),
                    format!("For [{section}], AUTO logging used for {lf_key} without rollover, set maxbytes > 0 to avoid filling up filesystem unintentionally"),
                );
            }
            LogFile::Auto
        }
        LogFileName::None => LogFile::None,
        LogFileName::Path(p) => LogFile::Path(p),
    };
    ChannelConfig {
        logfile,
        maxbytes,
        backups: u32::try_from(backups.max(0)).unwrap_or(u32::MAX),
        capture_maxbytes: cmax,
        events_enabled: events,
        syslog,
        rotation,
    }
}

/// One program-like section → its processes, sorted by (priority, name).
/// How a program says it is ready, and its probes (minisv's keys).
struct Readiness {
    ready_fd: Option<i32>,
    ready_timeout: i64,
    ready_notify: bool,
    watchdog_sec: u64,
    checks: Checks,
}

/// `ready_fd`, `ready_timeout`, `ready_notify`, `watchdog_sec` and the probes, with the
/// combinations that cannot go together.
fn readiness(ld: &mut Loader, section: &str, n: &Names) -> Readiness {
    let ready_fd = match ld.raw(section, "ready_fd") {
        None => None,
        Some(_) => {
            let fd = ld.conv(section, "ready_fd", n, -1, types::integer, EXPECT_READY_FD);
            if (3..=1024).contains(&fd) {
                Some(fd as i32)
            } else {
                let s = ld.raw(section, "ready_fd").map(|v| v.span);
                ld.error(s, section, Some("ready_fd"), format!("{fd} is not a usable fd; expected {EXPECT_READY_FD}"));
                None
            }
        }
    };
    let ready_timeout = ld.conv_def(section, "ready_timeout", n, P, types::integer, EXPECT_INT);
    let ready_notify = ld.conv_def(section, "ready_notify", n, P, types::boolean, EXPECT_BOOL);
    if ready_notify && ready_fd.is_some() {
        let s = ld.raw(section, "ready_notify").map(|v| v.span);
        ld.error(s, section, Some("ready_notify"), "ready_notify and ready_fd cannot both be set; choose one");
    }
    let watchdog_sec = ld.conv_def(section, "watchdog_sec", n, P, types::integer, EXPECT_INT);
    if watchdog_sec < 0 {
        let s = ld.raw(section, "watchdog_sec").map(|v| v.span);
        ld.error(s, section, Some("watchdog_sec"), format!("{watchdog_sec} is negative; expected 0 (none) or seconds"));
    }
    let watchdog_sec = watchdog_sec.max(0) as u64;
    let checks = {
        let secs = |ld: &mut Loader, key: &str| -> u64 {
            let v = ld.conv_def(section, key, n, P, types::integer, EXPECT_SECONDS);
            if v < 1 {
                let s = ld.raw(section, key).map(|v| v.span);
                ld.error(s, section, Some(key), format!("{v} is too small; expected {EXPECT_SECONDS}"));
                return table_default(P, key, types::integer) as u64;
            }
            v as u64
        };
        let ready_interval = secs(ld, "ready_check_interval");
        let health_interval = secs(ld, "health_check_interval");
        let timeout = secs(ld, "check_timeout");
        let health_retries = secs(ld, "health_check_retries").min(u32::MAX as u64) as u32;
        let ready = ld.conv_opt(section, "ready_check", n, types::probe, EXPECT_PROBE);
        let health = ld.conv_opt(section, "health_check", n, types::probe, EXPECT_PROBE);
        if ready.is_some() && ready_fd.is_some() {
            let s = ld.raw(section, "ready_check").map(|v| v.span);
            ld.error(s, section, Some("ready_check"), "ready_check and ready_fd cannot both be set; choose one");
        }
        if ready.is_some() && ready_notify {
            let s = ld.raw(section, "ready_check").map(|v| v.span);
            ld.error(s, section, Some("ready_check"), "ready_check and ready_notify cannot both be set; choose one");
        }
        Checks { ready, ready_interval, health, health_interval, health_retries, timeout }
    };
    Readiness { ready_fd, ready_timeout, ready_notify, watchdog_sec, checks }
}

/// `rlimit_*`, `nice` and `oom_score_adj`.
fn limits(ld: &mut Loader, section: &str, n: &Names) -> super::model::Limits {
    let mut limits = super::model::Limits::default();
    for &(key, resource, size) in super::model::RLIMIT_KEYS {
        let one = |s: &str| -> Result<u64, String> {
            match s.trim() {
                "infinity" | "unlimited" => Ok(u64::MAX),
                t if size => types::byte_size(t),
                t => t.parse::<u64>().map_err(|_| format!("'{t}' is not a number")),
            }
        };
        let pair = |s: &str| -> Result<(u64, u64), String> {
            match s.split_once(':') {
                Some((soft, hard)) => {
                    let (soft, hard) = (one(soft)?, one(hard)?);
                    if soft > hard {
                        return Err(format!("the soft limit {soft} is above the hard limit {hard}"));
                    }
                    Ok((soft, hard))
                }
                None => one(s).map(|v| (v, v)),
            }
        };
        let expect =
            if size { "a size, soft:hard sizes, or infinity" } else { "a number, soft:hard numbers, or infinity" };
        if let Some((soft, hard)) = ld.conv_opt(section, key, n, pair, expect) {
            limits.rlimits.push((resource, soft, hard));
        }
    }
    let ranged = |lo: i64, hi: i64| {
        move |s: &str| match types::integer(s) {
            Ok(v) if (lo..=hi).contains(&v) => Ok(v as i32),
            Ok(v) => Err(format!("{v} is out of range")),
            Err(e) => Err(e),
        }
    };
    limits.nice = ld.conv_opt(section, "nice", n, ranged(-20, 19), "a nice value from -20 to 19");
    limits.oom_score_adj = ld.conv_opt(section, "oom_score_adj", n, ranged(-1000, 1000), "-1000 to 1000");
    let max_or =
        |f: fn(&str) -> Result<u64, String>| move |s: &str| if s.trim() == "max" { Ok(u64::MAX) } else { f(s.trim()) };
    let count = |s: &str| s.parse::<u64>().map_err(|_| format!("'{s}' is not a number"));
    // CPUs (`1.5`), or a percentage of one (`150%`, written `150%%` in the file).
    let percent = |s: &str| {
        let pct = match s.strip_suffix('%') {
            Some(p) => p.trim().parse::<f64>().ok(),
            None => s.trim().parse::<f64>().ok().map(|cpus| cpus * 100.0),
        };
        match pct {
            Some(p) if p.is_finite() && (1.0..=100_000.0).contains(&p.round()) => Ok(p.round() as u64),
            Some(_) => Err(format!("'{s}' is out of range (0.01 to 1000 CPUs)")),
            None => Err(format!("'{s}' is not a number of CPUs or a percentage")),
        }
    };
    let cg = super::model::CgroupLimits {
        memory_max: ld.conv_opt(section, "memory_max", n, max_or(types::byte_size), "a size or max"),
        memory_high: ld.conv_opt(section, "memory_high", n, max_or(types::byte_size), "a size or max"),
        cpu_max: ld.conv_opt(section, "cpu_max", n, max_or(percent), "CPUs (e.g. 0.5) or max"),
        pids_max: ld.conv_opt(section, "pids_max", n, max_or(count), "a number or max"),
    };
    let wanted = ld.conv_def(section, "cgroup", n, P, types::boolean, EXPECT_BOOL);
    limits.cgroup = (wanted || cg != super::model::CgroupLimits::default()).then_some(cg);
    limits
}

/// `schedule=` with `schedule_overlap`, `schedule_timezone` and `run_on_start`.
fn schedule(ld: &mut Loader, section: &str, n: &Names) -> Option<super::model::Schedule> {
    match ld.conv_opt(section, "schedule", n, super::cron::Cron::parse, "a cron expression") {
        None => None,
        Some(cron) => {
            let overlap = |s: &str| match s.trim().to_ascii_lowercase().as_str() {
                "skip" => Ok(false),
                "queue" => Ok(true),
                _ => Err(format!("'{s}' is not skip or queue")),
            };
            let zone = |s: &str| match s.trim().to_ascii_lowercase().as_str() {
                "local" => Ok(false),
                "utc" => Ok(true),
                _ => Err(format!("'{s}' is not local or utc")),
            };
            Some(super::model::Schedule {
                cron,
                queue: ld.conv_def(section, "schedule_overlap", n, P, overlap, "skip or queue"),
                utc: ld.conv_def(section, "schedule_timezone", n, P, zone, "local or utc"),
                run_on_start: ld.conv_def(section, "run_on_start", n, P, types::boolean, EXPECT_BOOL),
            })
        }
    }
}

fn processes_from_section(ld: &mut Loader, section: &str, group_name: &str) -> Vec<Arc<ProcessConfig>> {
    let Some(program_name) = checked_name(ld, section) else {
        return Vec::new();
    };
    let span = ld.section_span(section);
    let mut names = Names::new();
    names.set_str("program_name", program_name.clone());
    names.set_str("host_node_name", ld.host.clone());
    names.set_str("group_name", group_name);
    let n = &names;
    // A listener's processes default to 999 like any program's; only its group defaults to -1
    // (supervisord 4.3 reports process_prio 999, group_prio -1).
    let priority = ld.conv_def(section, "priority", n, P, types::integer, EXPECT_INT);
    let autostart = ld.conv_def(section, "autostart", n, P, types::boolean, EXPECT_BOOL);
    let autorestart = ld.conv_def(section, "autorestart", n, P, types::auto_restart, EXPECT_AUTORESTART);
    let startsecs = ld.conv_def(section, "startsecs", n, P, types::integer, EXPECT_INT);
    // minisv: `infinite` (or -1) never gives up.
    let startretries = ld.conv_def(section, "startretries", n, P, types::retries, EXPECT_RETRIES);
    let backoff_max = ld.conv_def(section, "backoff_max", n, P, types::integer, EXPECT_INT).max(0) as u64;
    let restart_delay = ld.conv_def(section, "restart_delay", n, P, types::integer, EXPECT_INT).max(0) as u64;
    let fatal_retry = ld.conv_def(section, "fatal_retry", n, P, types::integer, EXPECT_INT).max(0) as u64;
    let backoff_window = ld.conv_def(section, "backoff_window", n, P, types::integer, EXPECT_INT).max(0) as u64;
    let stopsignal = ld.conv_def(section, "stopsignal", n, P, types::signal, EXPECT_SIGNAL);
    let stopwaitsecs = ld.conv_def(section, "stopwaitsecs", n, P, types::integer, EXPECT_INT);
    let stopasgroup = ld.conv_def(section, "stopasgroup", n, P, types::boolean, EXPECT_BOOL);
    // Supervisor's killasgroup defaults to stopasgroup's value (the table's "false" is
    // stopasgroup's default).
    let killasgroup = ld.conv(section, "killasgroup", n, stopasgroup, types::boolean, EXPECT_BOOL);
    let critical = ld.conv_def(section, "critical", n, P, types::boolean, EXPECT_BOOL);
    let log_timestamps = ld.conv_def(section, "log_timestamps", n, P, types::boolean, EXPECT_BOOL);
    let Readiness { ready_fd, ready_timeout, ready_notify, watchdog_sec, checks } = readiness(ld, section, n);
    let memory_limit = ld.conv_def(section, "memory_limit", n, P, types::byte_size, EXPECT_SIZE);
    let schedule = schedule(ld, section, n);
    let limits = limits(ld, section, n);
    let listen = listen_addresses(ld, section, n, &program_name, ready_fd);
    let depends_on = match ld.get(section, "depends_on", n) {
        Got::Found(t, _) => super::depends::parse(&t),
        Got::Bad | Got::Missing => Vec::new(),
    };
    let exitcodes = ld.conv_def(section, "exitcodes", n, P, types::exitcodes, EXPECT_EXITCODES);
    let redirect_stderr = ld.conv_def(section, "redirect_stderr", n, P, types::boolean, EXPECT_BOOL);
    let numprocs = ld.conv_def(section, "numprocs", n, P, types::integer, EXPECT_INT);
    let numprocs_start = ld.conv_def(section, "numprocs_start", n, P, types::integer, EXPECT_INT);
    if numprocs > MAX_NUMPROCS {
        let s = ld.raw(section, "numprocs").map(|v| v.span);
        ld.error(s, section, Some("numprocs"), format!("numprocs must be at most {MAX_NUMPROCS} (got {numprocs})"));
        return Vec::new();
    }
    let environment_raw = ld.raw(section, "environment");
    let stdout_cmax = ld.conv_def(section, "stdout_capture_maxbytes", n, P, types::byte_size, EXPECT_SIZE);
    let stdout_events = ld.conv_def(section, "stdout_events_enabled", n, P, types::boolean, EXPECT_BOOL);
    let stderr_cmax = ld.conv_def(section, "stderr_capture_maxbytes", n, P, types::byte_size, EXPECT_SIZE);
    let stderr_events = ld.conv_def(section, "stderr_events_enabled", n, P, types::boolean, EXPECT_BOOL);
    let serverurl =
        text_of(ld.get(section, "serverurl", n)).unwrap_or_else(|| options::default_of(P, "serverurl").to_string());
    let serverurl = Some(serverurl).filter(|s| !s.is_empty() && py_strip(s).to_uppercase() != "AUTO");
    let user = ld.conv_opt(section, "user", n, types::user, EXPECT_USER);
    let umask = ld.conv_opt(section, "umask", n, types::octal, EXPECT_OCTAL);

    let name_value = ld.raw(section, "process_name");
    let name_span = name_value.as_ref().map(|v| v.span.clone()).unwrap_or_else(|| span.clone());
    let process_name = match types::process_or_group_name(
        name_value.as_ref().map(|v| v.text.as_str()).unwrap_or(options::default_of(P, "process_name")),
    ) {
        Ok(p) => p,
        Err(msg) => {
            ld.error(Some(name_span), section, Some("process_name"), msg);
            return Vec::new();
        }
    };
    if numprocs > 1 && !process_name.contains("%(process_num)") {
        ld.error(
            Some(name_span.clone()),
            section,
            Some("process_name"),
            format!(
                "%(process_num) must be present within process_name when numprocs > 1 (numprocs={numprocs}, process_name={process_name}); for example process_name=%(program_name)s_%(process_num)02d"
            ),
        );
        return Vec::new();
    }
    if stopasgroup && !killasgroup {
        let s = ld.raw(section, "killasgroup").map(|v| v.span);
        ld.error(s, section, Some("killasgroup"), "Cannot set stopasgroup=true and killasgroup=false");
    }

    let mut processes = Vec::new();
    for process_num in numprocs_start..numprocs_start.saturating_add(numprocs.max(0)) {
        let mut names = names.clone();
        names.set_int("process_num", process_num);
        names.set_int("numprocs", numprocs);
        let environment = match &environment_raw {
            None => Vec::new(),
            Some(raw) => match ld.expand(&raw.text, &raw.span, &names, "environment") {
                Ok(text) => parse_environment(ld, section, &text, &raw.span),
                Err(msg) => {
                    ld.error(Some(raw.span.clone()), section, Some("environment"), msg);
                    Vec::new()
                }
            },
        };
        for (k, v) in &environment {
            names.insert(format!("ENV_{k}"), ExpValue::Str(v.clone()));
        }
        let directory = text_of(ld.get(section, "directory", &names));
        let got = ld.get(section, "environment_file", &names);
        let environment_files = super::sections::environment_files(ld, section, got);
        let got = ld.get(section, "credentials", &names);
        let credentials = super::sections::credential_files(ld, section, got);
        let stdout = channel(ld, section, &STDOUT_KEYS, &names, stdout_cmax, stdout_events);
        let mut stderr = channel(ld, section, &STDERR_KEYS, &names, stderr_cmax, stderr_events);
        if redirect_stderr {
            if matches!(stderr.logfile, LogFile::Path(_)) {
                let s = ld.raw(section, "stderr_logfile").map(|v| v.span);
                ld.warn(
                    s,
                    section,
                    Some("stderr_logfile"),
                    format!("For [{section}], redirect_stderr=true but stderr_logfile has also been set to a filename, the filename has been ignored"),
                );
            }
            stderr.logfile = LogFile::None;
        }
        let command = match ld.get(section, "command", &names) {
            Got::Found(t, s) => {
                if let Some(advice) = shell_syntax(&t) {
                    ld.warn(Some(s), section, Some("command"), advice);
                }
                t
            }
            Got::Bad => String::new(),
            Got::Missing => {
                ld.error(
                    Some(span.clone()),
                    section,
                    None,
                    format!("program section {section} does not specify a command"),
                );
                String::new()
            }
        };
        let name = match ld.expand(&process_name, &name_span, &names, "process_name") {
            Ok(n) => n,
            Err(msg) => {
                ld.error(Some(name_span.clone()), section, Some("process_name"), msg);
                continue;
            }
        };
        // %(process_name)s is there for log_prefix, the one key read after the name is known.
        names.set_str("process_name", name.clone());
        let log_prefix = text_of(ld.get(section, "log_prefix", &names)).filter(|p| !p.is_empty());
        processes.push(Arc::new(ProcessConfig {
            name,
            program: program_name.clone(),
            command,
            directory,
            umask,
            priority,
            autostart,
            autorestart: autorestart.clone(),
            startsecs,
            startretries,
            exitcodes: exitcodes.clone(),
            stopsignal,
            stopwaitsecs,
            stopasgroup,
            killasgroup,
            user: user.clone(),
            redirect_stderr,
            stdout,
            stderr,
            environment,
            environment_files,
            credentials,
            serverurl: serverurl.clone(),
            critical,
            restart: RestartPolicy { backoff_max, restart_delay, fatal_retry, backoff_window },
            depends_on: depends_on.clone(),
            ready_fd,
            ready_notify,
            watchdog_sec,
            memory_limit,
            schedule: schedule.clone(),
            limits: limits.clone(),
            ready_timeout,
            checks: checks.clone(),
            listen: listen.clone(),
            log_prefix,
            log_timestamps,
            span: span.clone(),
        }));
    }
    processes.sort_by(|a, b| (a.priority, &a.name).cmp(&(b.priority, &b.name)));
    processes.shrink_to_fit();
    processes
}
