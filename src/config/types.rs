//! Value types of Supervisor's datatypes.py (reference 1.3): the same accepted spellings and
//! the same error texts. Each converter returns the message without location; the loader adds
//! file:line, section and key.

use std::path::{Path, PathBuf};

use super::ini::{is_py_space, py_repr, py_strip};
use super::model::{AutoRestart, LogLevel, UserSpec};
use crate::sys::users;

pub const TRUTHY: [&str; 4] = ["yes", "true", "on", "1"];
pub const FALSY: [&str; 4] = ["no", "false", "off", "0"];

/// `boolean`: yes/true/on/1 and no/false/off/0, any case.
pub fn boolean(s: &str) -> Result<bool, String> {
    let lower = s.to_lowercase();
    if TRUTHY.contains(&lower.as_str()) {
        Ok(true)
    } else if FALSY.contains(&lower.as_str()) {
        Ok(false)
    } else {
        Err(format!("not a valid boolean value: {}", py_repr(s)))
    }
}

/// minisv's `exit_on=`.
pub fn exit_on(s: &str) -> Result<super::model::ExitOn, String> {
    use super::model::ExitOn;
    match s.trim().to_lowercase().as_str() {
        "never" | "" => Ok(ExitOn::Never),
        "all-exited" => Ok(ExitOn::AllExited),
        "any-exited" => Ok(ExitOn::AnyExited),
        _ => Err(format!("'{s}' is not a known exit_on")),
    }
}

/// Python's `int(s, base)`: surrounding whitespace, a sign, `_` between digits, and for
/// base 8 an optional `0o` prefix. `None` when Python would raise.
pub(crate) fn py_int(s: &str, base: u32) -> Option<i128> {
    let t = py_strip(s);
    let (negative, rest) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let rest = if base == 8 {
        rest.strip_prefix("0o")
            .or_else(|| rest.strip_prefix("0O"))
            .map(|r| r.strip_prefix('_').unwrap_or(r))
            .unwrap_or(rest)
    } else {
        rest
    };
    if rest.is_empty() || rest.starts_with('_') || rest.ends_with('_') || rest.contains("__") {
        return None;
    }
    let mut value: i128 = 0;
    for c in rest.chars().filter(|&c| c != '_') {
        let d = c.to_digit(base)? as i128;
        value = value.checked_mul(base as i128)?.checked_add(d)?;
    }
    Some(if negative { -value } else { value })
}

/// `integer`: Python `int()` in base 10.
/// `startretries`: an integer, or `infinite` (minisv; stored as -1, which also means infinite).
/// `ready_check=` / `health_check=`: `http://127.0.0.1:8080/path` (loopback only), `host:port`
/// or `tcp://host:port` (an IP address or `localhost`: nothing blocks on name lookups), or else
/// a command line.
pub fn probe(s: &str) -> Result<super::model::Probe, String> {
    use super::model::Probe;
    let s = py_strip(s);
    if s.is_empty() {
        return Err("empty value".into());
    }
    let lower = s.to_ascii_lowercase();
    if lower.starts_with("https://") {
        return Err("https is not supported (use http:// on loopback, host:port or a command)".into());
    }
    if lower.starts_with("http://") {
        let rest = &s["http://".len()..];
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let addr = socket_addr(authority, 80)?;
        if !addr.ip().is_loopback() {
            return Err(format!(
                "{} is not a loopback address (http probes are for 127.0.0.1, ::1 or localhost)",
                addr.ip()
            ));
        }
        if path.bytes().any(|b| b.is_ascii_whitespace() || b.is_ascii_control()) {
            return Err(format!("bad URL path {}", py_repr(path)));
        }
        return Ok(Probe::Http { addr, host: authority.to_string(), path: path.to_string() });
    }
    if let Some(rest) = lower.strip_prefix("tcp://") {
        return socket_addr(rest, 0).map(Probe::Tcp);
    }
    let looks_like_address = !s.contains(|c: char| c.is_whitespace() || c == '/')
        && s.rsplit_once(':')
            .is_some_and(|(h, p)| !h.is_empty() && !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    if looks_like_address {
        return socket_addr(s, 0).map(Probe::Tcp);
    }
    Ok(Probe::Command(s.to_string()))
}

/// `host:port` with an IP address (IPv6 in brackets) or `localhost`; `default_port` 0 means
/// the port is required.
fn socket_addr(s: &str, default_port: u16) -> Result<std::net::SocketAddr, String> {
    use std::net::{IpAddr, Ipv4Addr, SocketAddr};
    let (host, port) = match s.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(':') || h.starts_with('[') => (h, Some(p)),
        _ => (s, None),
    };
    let port = match port {
        Some(p) => p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| format!("bad port {}", py_repr(p)))?,
        None if default_port > 0 => default_port,
        None => return Err(format!("{} has no port; expected host:port", py_repr(s))),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let ip = if host.eq_ignore_ascii_case("localhost") {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        host.parse::<IpAddr>()
            .map_err(|_| format!("{} is not an IP address or localhost (names are not looked up)", py_repr(host)))?
    };
    Ok(SocketAddr::new(ip, port))
}

pub fn retries(s: &str) -> Result<i64, String> {
    if py_strip(s).eq_ignore_ascii_case("infinite") {
        return Ok(-1);
    }
    integer(s)
}

pub fn integer(s: &str) -> Result<i64, String> {
    let n = py_int(s, 10).ok_or_else(|| format!("{} is not a whole number", py_repr(s)))?;
    i64::try_from(n).map_err(|_| format!("{} is out of range", py_strip(s)))
}

/// `byte_size`: an int with an optional KB/MB/GB suffix (any case). A negative size means the
/// same as 0 in Supervisor (never rotate, no capture), so it is returned as 0.
pub fn byte_size(s: &str) -> Result<u64, String> {
    let lower = s.to_lowercase();
    let (number, factor) = [("kb", 1u64 << 10), ("mb", 1 << 20), ("gb", 1 << 30)]
        .iter()
        .find_map(|(suffix, factor)| lower.strip_suffix(suffix).map(|n| (n.to_string(), *factor)))
        .unwrap_or((lower.clone(), 1));
    let n =
        py_int(&number, 10).ok_or_else(|| format!("{} is not a whole number of bytes, KB, MB or GB", py_repr(s)))?;
    let total = n.checked_mul(factor as i128).ok_or_else(|| format!("{s} is out of range"))?;
    u64::try_from(total.max(0)).map_err(|_| format!("{s} is out of range"))
}

/// `octal_type`: `int(v, 8)` (umask, chmod, socket_mode).
pub fn octal(s: &str) -> Result<u32, String> {
    py_int(s, 8).and_then(|n| u32::try_from(n).ok()).ok_or_else(|| format!("{s} can not be converted to an octal type"))
}

/// Linux signal names (Python's `signal` module on Linux, aliases after their main name).
pub const SIGNALS: &[(&str, i32)] = &[
    ("SIGHUP", 1),
    ("SIGINT", 2),
    ("SIGQUIT", 3),
    ("SIGILL", 4),
    ("SIGTRAP", 5),
    ("SIGABRT", 6),
    ("SIGIOT", 6),
    ("SIGBUS", 7),
    ("SIGFPE", 8),
    ("SIGKILL", 9),
    ("SIGUSR1", 10),
    ("SIGSEGV", 11),
    ("SIGUSR2", 12),
    ("SIGPIPE", 13),
    ("SIGALRM", 14),
    ("SIGTERM", 15),
    ("SIGSTKFLT", 16),
    ("SIGCHLD", 17),
    ("SIGCLD", 17),
    ("SIGCONT", 18),
    ("SIGSTOP", 19),
    ("SIGTSTP", 20),
    ("SIGTTIN", 21),
    ("SIGTTOU", 22),
    ("SIGURG", 23),
    ("SIGXCPU", 24),
    ("SIGXFSZ", 25),
    ("SIGVTALRM", 26),
    ("SIGPROF", 27),
    ("SIGWINCH", 28),
    ("SIGIO", 29),
    ("SIGPOLL", 29),
    ("SIGPWR", 30),
    ("SIGSYS", 31),
    ("SIGRTMIN", 34),
    ("SIGRTMAX", 64),
];

/// A signal name (`TERM`, `sigusr1`, `SIGHUP`; any case, `SIG` optional) → its number.
pub fn signal_number(name: &str) -> Option<i32> {
    let upper = py_strip(name).to_uppercase();
    let full = if upper.starts_with("SIG") { upper } else { format!("SIG{upper}") };
    SIGNALS.iter().find(|(n, _)| *n == full).map(|(_, num)| *num)
}

/// A signal number → its main name (`15` → `SIGTERM`).
pub fn signal_name(num: i32) -> Option<&'static str> {
    SIGNALS.iter().find(|(_, n)| *n == num).map(|(name, _)| *name)
}

/// `signal_number` of datatypes.py: a number or a name. Python's own table also holds
/// `SIG_DFL`/`SIG_IGN` (0, 1), so 0 is a valid number there and here.
pub fn signal(s: &str) -> Result<i32, String> {
    let num = match py_int(s, 10) {
        Some(n) => n,
        None => match signal_number(s) {
            Some(n) => n as i128,
            None => return Err(format!("value {} is not a valid signal name", py_repr(s))),
        },
    };
    if num == 0 || SIGNALS.iter().any(|(_, n)| *n as i128 == num) {
        Ok(num as i32)
    } else {
        Err(format!("value {} is not a valid signal number", py_repr(s)))
    }
}

/// `list_of_exitcodes`: comma-separated ints in 0..=255; empty → none.
pub fn exitcodes(s: &str) -> Result<Vec<i32>, String> {
    if s.is_empty() {
        return Ok(Vec::new());
    }
    s.split(',')
        .map(|part| py_int(part, 10).filter(|n| (0..=255).contains(n)).map(|n| n as i32))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| format!("not a valid list of exit codes: {}", py_repr(s)))
}

/// `auto_restart`: `unexpected`, a truthy word (always) or a falsy word (never).
pub fn auto_restart(s: &str) -> Result<AutoRestart, String> {
    let lower = s.to_lowercase();
    if TRUTHY.contains(&lower.as_str()) {
        Ok(AutoRestart::Always)
    } else if FALSY.contains(&lower.as_str()) {
        Ok(AutoRestart::Never)
    } else if lower == "unexpected" {
        Ok(AutoRestart::Unexpected)
    } else {
        Err(format!("invalid 'autorestart' value {}", py_repr(&lower)))
    }
}

/// `logging_level`: note that `warning` is not accepted.
pub fn log_level(s: &str) -> Result<LogLevel, String> {
    match s.to_lowercase().as_str() {
        "critical" => Ok(LogLevel::Critical),
        "error" => Ok(LogLevel::Error),
        "warn" => Ok(LogLevel::Warn),
        "info" => Ok(LogLevel::Info),
        "debug" => Ok(LogLevel::Debug),
        "trace" => Ok(LogLevel::Trace),
        "blather" => Ok(LogLevel::Blather),
        _ => Err(format!("bad logging level name {}", py_repr(s))),
    }
}

/// `os.path.expanduser`: `~` and `~/x` use $HOME (or the passwd entry), `~user/x` that user's home.
pub fn expand_user(s: &str) -> String {
    let Some(rest) = s.strip_prefix('~') else {
        return s.to_string();
    };
    let (user, tail) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let home = if user.is_empty() {
        std::env::var("HOME").ok().or_else(|| users::user_by_uid(users::current_uid()).map(|p| p.home))
    } else {
        users::user_by_name(user).map(|p| p.home)
    };
    match home {
        Some(home) => {
            let home = if home.len() > 1 { home.trim_end_matches('/') } else { &home };
            format!("{home}{tail}")
        }
        None => s.to_string(),
    }
}

/// `existing_directory`: `~` expanded, must be a directory.
pub fn existing_directory(s: &str) -> Result<PathBuf, String> {
    let expanded = expand_user(s);
    if Path::new(&expanded).is_dir() {
        Ok(PathBuf::from(expanded))
    } else {
        Err(format!("{s} is not an existing directory"))
    }
}

/// `existing_dirpath`: `~` expanded; the directory part (if any) must exist.
pub fn existing_dirpath(s: &str) -> Result<PathBuf, String> {
    let expanded = expand_user(s);
    let path = PathBuf::from(&expanded);
    let dir = match expanded.rfind('/') {
        Some(0) => "/",
        Some(i) => &expanded[..i],
        None => return Ok(path),
    };
    if Path::new(dir).is_dir() {
        Ok(path)
    } else {
        Err(format!("The directory named as part of the path {s} does not exist"))
    }
}

/// What a `*_logfile` value means.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogFileName {
    None,
    Auto,
    /// Deprecated: the loader turns it into `*_syslog=true` with a warning.
    Syslog,
    Path(PathBuf),
}

/// `logfile_name`.
pub fn logfile_name(s: &str) -> Result<LogFileName, String> {
    match s.to_lowercase().as_str() {
        "none" | "off" => Ok(LogFileName::None),
        "auto" => Ok(LogFileName::Auto),
        "syslog" => Ok(LogFileName::Syslog),
        _ => existing_dirpath(s).map(LogFileName::Path),
    }
}

/// `name_to_uid` plus everything the spawner needs, resolved now.
pub fn user(s: &str) -> Result<UserSpec, String> {
    let entry = match py_int(s, 10) {
        Some(n) => u32::try_from(n).ok().and_then(users::user_by_uid).ok_or_else(|| format!("Invalid user id {s}"))?,
        None => users::user_by_name(s).ok_or_else(|| format!("Invalid user name {s}"))?,
    };
    Ok(UserSpec {
        spec: s.to_string(),
        groups: users::group_list(&entry.name, entry.gid),
        name: entry.name,
        uid: entry.uid,
        gid: entry.gid,
        home: entry.home,
        shell: entry.shell,
    })
}

fn uid_of(s: &str) -> Option<u32> {
    match py_int(s, 10) {
        Some(n) => u32::try_from(n).ok().filter(|&uid| users::user_by_uid(uid).is_some()),
        None => users::user_by_name(s).map(|p| p.uid),
    }
}

fn gid_of(s: &str) -> Option<u32> {
    match py_int(s, 10) {
        Some(n) => u32::try_from(n).ok().filter(|&gid| users::group_exists(gid)),
        None => users::group_by_name(s),
    }
}

/// `colon_separated_user_group`: `user` or `user:group` → (uid, gid), `u32::MAX` for "unchanged".
pub fn user_group(s: &str) -> Result<(u32, u32), String> {
    let err = || format!("Invalid user:group definition {s}");
    match s.split_once(':') {
        None => Ok((uid_of(s).ok_or_else(err)?, u32::MAX)),
        Some((u, g)) => Ok((uid_of(u).ok_or_else(err)?, gid_of(g).ok_or_else(err)?)),
    }
}

fn port_number(s: &str) -> Result<u16, String> {
    let n = py_int(s, 10).ok_or_else(|| format!("{} is not a whole number", py_repr(s)))?;
    if n < 1 {
        Err(format!("{n} is below lower bound (1)"))
    } else if n > 65535 {
        Err(format!("{n} is above upper bound (65535)"))
    } else {
        Ok(n as u16)
    }
}

/// `inet_address`: `host:port`, `*:port`, `:port` or `port` → (lowercased host or "", port).
pub fn inet_address(s: &str) -> Result<(String, u16), String> {
    match s.rsplit_once(':') {
        Some((host, port)) => {
            if port.is_empty() {
                return Err(format!("no port number specified in {}", py_repr(port)));
            }
            let port = port_number(port)?;
            let host = host.to_lowercase();
            Ok((if host == "*" { String::new() } else { host }, port))
        }
        None => port_number(s)
            .map(|port| (String::new(), port))
            .map_err(|_| format!("not a valid port number: {} ", py_repr(s))),
    }
}

/// `url`: needs a scheme and a netloc or a path (urllib's `urlparse` rules).
pub fn url(s: &str) -> Result<String, String> {
    let err = || format!("value {} is not a URL", py_repr(s));
    let (scheme, rest) = s.split_once(':').ok_or_else(err)?;
    let scheme_ok = scheme.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && scheme.chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
    if !scheme_ok {
        return Err(err());
    }
    let rest = rest.split(['?', '#']).next().unwrap_or("");
    let has_netloc = rest.strip_prefix("//").is_some_and(|r| !r.split('/').next().unwrap_or("").is_empty());
    let has_path = match rest.strip_prefix("//") {
        Some(r) => r.contains('/'),
        None => !rest.is_empty(),
    };
    if has_netloc || has_path {
        Ok(s.to_string())
    } else {
        Err(err())
    }
}

/// `process_or_group_name`: stripped; no space, `:` or `/`.
pub fn process_or_group_name(s: &str) -> Result<String, String> {
    let stripped = py_strip(s);
    for c in [' ', ':', '/'] {
        if stripped.contains(c) {
            return Err(format!("Invalid name: {} because of character: {}", py_repr(s), py_repr(&c.to_string())));
        }
    }
    Ok(stripped.to_string())
}

/// The parsed `environment=` value.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Environment {
    /// Pairs in the order first written (a repeated key keeps its place, the last value wins).
    pub pairs: Vec<(String, String)>,
    /// Tokens that Supervisor silently skips where a `,` should be (`A=with space` skips
    /// `space`), with the key whose value they follow.
    pub skipped: Vec<(String, String)>,
}

/// `dict_of_key_value_pairs`: Python's non-POSIX `shlex` with `/.+-():` added to the word
/// characters, then `KEY = VALUE [, ...]` with quotes stripped from values.
pub fn environment(s: &str) -> Result<Environment, String> {
    let tokens = shlex_tokens(s)?;
    let mut env = Environment::default();
    let mut i = 0;
    while i < tokens.len() {
        if tokens.len() < i + 3 || tokens[i + 1] != "=" {
            return Err(format!("Unexpected end of key/value pairs in value '{s}'"));
        }
        let key = tokens[i].clone();
        let value = tokens[i + 2].trim_matches(['\'', '"']).to_string();
        match env.pairs.iter_mut().find(|(k, _)| *k == key) {
            Some(pair) => pair.1 = value,
            None => env.pairs.push((key.clone(), value)),
        }
        if let Some(sep) = tokens.get(i + 3) {
            if sep != "," {
                env.skipped.push((key, sep.clone()));
            }
        }
        i += 4;
    }
    Ok(env)
}

fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "_/.+-():".contains(c)
}

/// A port of `shlex.shlex(s)` (posix=False) token reading.
fn shlex_tokens(s: &str) -> Result<Vec<String>, String> {
    const WHITESPACE: &str = " \t\r\n";
    let chars: Vec<char> = s.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    let mut state = ' ';
    let mut token = String::new();
    // Skips to after the next newline, like `instream.readline()`.
    let skip_line = |i: &mut usize| {
        while *i < chars.len() && chars[*i] != '\n' {
            *i += 1;
        }
        if *i < chars.len() {
            *i += 1;
        }
    };
    loop {
        let next = chars.get(i).copied();
        i += usize::from(next.is_some());
        match state {
            ' ' => match next {
                None => break,
                Some(c) if WHITESPACE.contains(c) => {}
                Some('#') => skip_line(&mut i),
                Some(c) if is_word_char(c) => {
                    token.push(c);
                    state = 'a';
                }
                Some(c) if c == '\'' || c == '"' => {
                    token.push(c);
                    state = c;
                }
                Some(c) => tokens.push(c.to_string()),
            },
            '\'' | '"' => match next {
                None => return Err("No closing quotation".to_string()),
                Some(c) => {
                    token.push(c);
                    if c == state {
                        tokens.push(std::mem::take(&mut token));
                        state = ' ';
                    }
                }
            },
            _ => match next {
                None => {
                    if !token.is_empty() {
                        tokens.push(std::mem::take(&mut token));
                    }
                    break;
                }
                Some(c) if WHITESPACE.contains(c) => {
                    state = ' ';
                    if !token.is_empty() {
                        tokens.push(std::mem::take(&mut token));
                    }
                }
                // Non-POSIX shlex skips the rest of the line and keeps building the word.
                Some('#') => skip_line(&mut i),
                Some(c) if is_word_char(c) || c == '\'' || c == '"' => token.push(c),
                Some(c) => {
                    state = ' ';
                    if !token.is_empty() {
                        tokens.push(std::mem::take(&mut token));
                    }
                    tokens.push(c.to_string());
                }
            },
        }
    }
    Ok(tokens)
}

/// Python's `str.split()` (no argument).
pub fn py_split(s: &str) -> Vec<&str> {
    s.split(is_py_space).filter(|p| !p.is_empty()).collect()
}

#[cfg(test)]
mod tests;

/// minisv's `*_logfile_rotate=`.
pub fn rotate_every(s: &str) -> Result<super::model::RotateEvery, String> {
    use super::model::RotateEvery;
    match s.trim().to_lowercase().as_str() {
        "size" | "" => Ok(RotateEvery::Size),
        "hourly" => Ok(RotateEvery::Hourly),
        "daily" => Ok(RotateEvery::Daily),
        _ => Err(format!("'{s}' is not a rotation period")),
    }
}

/// minisv's `log_format=`.
pub fn log_format(s: &str) -> Result<super::model::LogFormat, String> {
    use super::model::LogFormat;
    match s.trim().to_lowercase().as_str() {
        "text" | "" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        _ => Err(format!("'{s}' is not a log format")),
    }
}
