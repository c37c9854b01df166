//! The `[supervisorctl]` section (reference 1.7) and the config file search (0.3).
//!
//! TODO: use config::load_ctl once the config loader lands; this is a minimal reader of the one
//! section `minisv ctl` needs (RawConfigParser rules: `key = value` or `key: value`, `;`/`#`
//! comments, inline comments after whitespace, continuation lines, `%(here)s` and `%(ENV_X)s`).

use std::path::{Path, PathBuf};

/// What `[supervisorctl]` provides (mirrors `config::CtlConfig`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CtlSettings {
    pub serverurl: String,
    pub username: Option<String>,
    pub password: Option<String>,
    pub prompt: String,
    pub history_file: Option<PathBuf>,
}

pub const DEFAULT_SERVERURL: &str = "http://localhost:9001";
pub const DEFAULT_PROMPT: &str = "minisv";

impl Default for CtlSettings {
    fn default() -> Self {
        CtlSettings {
            serverurl: DEFAULT_SERVERURL.into(),
            username: None,
            password: None,
            prompt: DEFAULT_PROMPT.into(),
            history_file: None,
        }
    }
}

/// The places searched when no `-c` is given, in order: in each place `minisv.conf` comes before
/// `supervisord.conf`. `argv0` is the program path as invoked (`here` is its grandparent dir).
pub fn search_paths(argv0: &str) -> Vec<PathBuf> {
    let here = Path::new(argv0).parent().and_then(Path::parent).map(Path::to_path_buf).unwrap_or_default();
    let places: Vec<PathBuf> = vec![
        here.join("etc"),
        here.clone(),
        PathBuf::new(),
        PathBuf::from("etc"),
        PathBuf::from("/etc"),
        PathBuf::from("/etc/supervisor"),
    ];
    let mut out = Vec::new();
    for place in places {
        out.push(place.join("minisv.conf"));
        out.push(place.join("supervisord.conf"));
    }
    out
}

/// Lexically normalizes a path made absolute against the CWD (Python's normpath(abspath())).
fn normalize(p: &str) -> PathBuf {
    let path = Path::new(p);
    let abs =
        if path.is_absolute() { path.to_path_buf() } else { std::env::current_dir().unwrap_or_default().join(path) };
    let mut out = PathBuf::from("/");
    for c in abs.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::Normal(n) => out.push(n),
            _ => {}
        }
    }
    out
}

/// Expands `%(here)s`, `%(ENV_NAME)s` and `%%`; an unknown name is an error naming it.
fn expand(value: &str, here: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = value;
    while let Some(i) = rest.find('%') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        if let Some(r) = rest.strip_prefix("%%") {
            out.push('%');
            rest = r;
            continue;
        }
        let Some(inner) = rest.strip_prefix("%(") else {
            return Err(format!("'%' must be followed by '%' or '(', found: {rest:?}"));
        };
        let Some(end) = inner.find(")s") else {
            return Err(format!("bad interpolation syntax in {value:?}"));
        };
        let name = &inner[..end];
        let v = if name == "here" {
            here.to_string()
        } else if let Some(env) = name.strip_prefix("ENV_") {
            std::env::var(env).map_err(|_| format!("unknown expansion %({name})s in {value:?}"))?
        } else {
            return Err(format!("unknown expansion %({name})s in {value:?}"));
        };
        out.push_str(&v);
        rest = &inner[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The raw `key → value` pairs of one section, RawConfigParser style. `None` if the section is absent.
fn read_section(text: &str, wanted: &str) -> Option<Vec<(String, String)>> {
    let mut found = false;
    let mut in_section = false;
    let mut pairs: Vec<(String, String)> = Vec::new();
    let mut last_key: Option<usize> = None;
    for raw in text.lines() {
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with(';') || trimmed.starts_with('#') {
            continue;
        }
        // Continuation of the previous value.
        if raw.starts_with([' ', '\t']) {
            if let (true, Some(k)) = (in_section, last_key) {
                let v = strip_inline_comment(trimmed);
                pairs[k].1.push('\n');
                pairs[k].1.push_str(v);
            }
            continue;
        }
        if let Some(name) = trimmed.strip_prefix('[').and_then(|t| t.split_once(']')).map(|(n, _)| n) {
            in_section = name == wanted;
            found |= in_section;
            last_key = None;
            continue;
        }
        if !in_section {
            continue;
        }
        let pos = trimmed.find(['=', ':']);
        if let Some(p) = pos {
            let key = trimmed[..p].trim().to_lowercase();
            let value = strip_inline_comment(trimmed[p + 1..].trim()).to_string();
            if let Some(i) = pairs.iter().position(|(k, _)| *k == key) {
                pairs[i].1 = value;
                last_key = Some(i);
            } else {
                pairs.push((key, value));
                last_key = Some(pairs.len() - 1);
            }
        }
    }
    found.then_some(pairs)
}

/// Python 3's `inline_comment_prefixes=(';', '#')`: a prefix counts only after whitespace.
fn strip_inline_comment(v: &str) -> &str {
    let b = v.as_bytes();
    for i in 1..b.len() {
        if (b[i] == b';' || b[i] == b'#') && b[i - 1].is_ascii_whitespace() {
            return v[..i].trim_end();
        }
    }
    v
}

/// Reads `[supervisorctl]` from `path`. Errors are supervisorctl's usage messages (without
/// `Error: `): a missing file, an unreadable file, a file without the section.
pub fn load(path: &Path) -> Result<CtlSettings, String> {
    if !path.exists() {
        return Err(format!("could not find config file {}", path.display()));
    }
    let text = std::fs::read(path).map_err(|_| format!("could not read config file {}", path.display()))?;
    let text = String::from_utf8_lossy(&text);
    let pairs = read_section(&text, "supervisorctl").ok_or(".ini file does not include supervisorctl section")?;
    let abs = normalize(&path.to_string_lossy());
    let here = abs.parent().map(|p| p.to_string_lossy().into_owned()).unwrap_or_default();
    let get = |k: &str| pairs.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
    let mut s = CtlSettings::default();
    if let Some(url) = get("serverurl") {
        let url = expand(&url, &here)?;
        s.serverurl = match url.strip_prefix("unix://") {
            Some(p) => format!("unix://{}", normalize(p).display()),
            None => url,
        };
    }
    if let Some(p) = get("prompt") {
        s.prompt = p;
    }
    s.username = get("username");
    s.password = get("password");
    if let Some(h) = get("history_file") {
        let h = expand(&h, &here)?;
        if !h.is_empty() {
            s.history_file = Some(normalize(&h));
        }
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_supervisorctl_section() {
        let text = "[supervisord]\nlogfile=x\n[supervisorctl]\nserverurl = unix:///tmp/a.sock ; comment\n\
                    username: bob\npassword=p;w\nprompt=hello\n[program:x]\nserverurl=no\n";
        let pairs = read_section(text, "supervisorctl").expect("section");
        assert_eq!(
            pairs,
            vec![
                ("serverurl".into(), "unix:///tmp/a.sock".into()),
                ("username".into(), "bob".into()),
                ("password".into(), "p;w".into()),
                ("prompt".into(), "hello".into()),
            ]
        );
        assert_eq!(read_section("[supervisord]\n", "supervisorctl"), None);
    }

    #[test]
    fn here_and_env_expand() {
        std::env::set_var("MINISV_TEST_SETTINGS", "v");
        assert_eq!(expand("%(here)s/s.sock", "/etc/x"), Ok("/etc/x/s.sock".into()));
        assert_eq!(expand("%(ENV_MINISV_TEST_SETTINGS)s%%", "/"), Ok("v%".into()));
        assert!(expand("%(nope)s", "/").is_err());
    }

    #[test]
    fn search_puts_minisv_conf_first_in_each_place() {
        let p = search_paths("/usr/bin/minisv");
        assert_eq!(p[0], PathBuf::from("/usr/etc/minisv.conf"));
        assert_eq!(p[1], PathBuf::from("/usr/etc/supervisord.conf"));
        assert_eq!(p[4], PathBuf::from("minisv.conf"));
        assert_eq!(p[11], PathBuf::from("/etc/supervisor/supervisord.conf"));
    }
}
