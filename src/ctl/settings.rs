//! The `[supervisorctl]` section (reference 1.7) and the config file search (0.3), read with the
//! daemon's own config reader (`config::load_ctl`), so both agree on every parsing rule.

use std::path::{Path, PathBuf};

use crate::config;

/// What `[supervisorctl]` provides.
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

/// The places searched when no `-c` is given (`minisv.conf` before `supervisord.conf` in each).
pub fn search_paths(argv0: &str) -> Vec<PathBuf> {
    config::search_paths(argv0)
}

/// Reads `[supervisorctl]` from `path`. Errors are supervisorctl's usage messages (without
/// `Error: `): a missing or unreadable file, a file without the section, a bad value.
pub fn load(path: &Path) -> Result<CtlSettings, String> {
    match config::load_ctl(path) {
        Ok(Some(c)) => Ok(CtlSettings {
            serverurl: c.serverurl,
            username: c.username,
            password: c.password,
            prompt: c.prompt,
            history_file: c.history_file,
        }),
        Ok(None) => Err(".ini file does not include supervisorctl section".into()),
        Err(errors) => Err(errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("\nError: ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(name: &str, text: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("minisv-ctl-settings-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let p = dir.join("sv.conf");
        std::fs::write(&p, text).expect("write");
        p
    }

    #[test]
    fn reads_the_supervisorctl_section_with_here() {
        let p = write(
            "read",
            "[supervisord]\nlogfile=x\n[supervisorctl]\nserverurl = unix://%(here)s/a.sock ; comment\n\
             username: bob\npassword=p;w\nprompt=hello\n[program:x]\nserverurl=no\n",
        );
        let s = load(&p).expect("settings");
        let here = p.parent().expect("dir").display().to_string();
        assert_eq!(s.serverurl, format!("unix://{here}/a.sock"));
        assert_eq!(s.username.as_deref(), Some("bob"));
        assert_eq!(s.password.as_deref(), Some("p;w"));
        assert_eq!(s.prompt, "hello");
    }

    #[test]
    fn missing_section_and_file_are_usage_errors() {
        let p = write("nosection", "[supervisord]\n");
        assert_eq!(load(&p), Err(".ini file does not include supervisorctl section".into()));
        let missing = load(Path::new("/nonexistent/sv.conf")).unwrap_err();
        assert!(missing.contains("could not find config file /nonexistent/sv.conf"), "{missing}");
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
