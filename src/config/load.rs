//! The loader's shared state: the merged INI, the expansion names, and the diagnostics
//! collected so far. Section builders (`sections.rs`, `programs.rs`) read values through it.

use std::path::{Component, Path, PathBuf};

use super::expand::{expand_in, Names};
use super::ini::{Ini, Value};
use super::model::{Diagnostic, Span};
use super::options::{self, Key};

/// Whether a key was found and usable.
pub enum Got {
    Missing,
    /// An error was recorded already.
    Bad,
    Found(String, Span),
}

pub struct Loader {
    pub ini: Ini,
    /// The main config file, absolute.
    pub main: PathBuf,
    /// `ENV_*` names: the daemon's environment plus `[supervisord] environment=`.
    pub env: Names,
    pub host: String,
    pub errors: Vec<Diagnostic>,
    pub warnings: Vec<Diagnostic>,
    pub infos: Vec<String>,
}

/// `os.path.normpath(os.path.abspath(p))` without touching the file system.
pub fn absolute(p: &Path) -> PathBuf {
    let joined = if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/")).join(p)
    };
    let mut out = PathBuf::from("/");
    for comp in joined.components() {
        match comp {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(c) => out.push(c),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

/// The daemon's environment as `ENV_*` names.
pub fn process_env() -> Names {
    let mut names = Names::new();
    for (k, v) in std::env::vars_os() {
        names.set_str(format!("ENV_{}", k.to_string_lossy()), v.to_string_lossy().into_owned());
    }
    names
}

impl Loader {
    pub fn new(ini: Ini, main: PathBuf) -> Loader {
        Loader {
            ini,
            main,
            env: process_env(),
            host: crate::sys::users::hostname(),
            errors: Vec::new(),
            warnings: Vec::new(),
            infos: Vec::new(),
        }
    }

    pub fn raw(&self, section: &str, key: &str) -> Option<Value> {
        self.ini.get(section, key).cloned()
    }

    pub fn section_span(&self, section: &str) -> Span {
        match self.ini.section(section) {
            Some(s) => s.span.clone(),
            None => Span { file: self.main.as_path().into(), line: 1 },
        }
    }

    pub fn error(&mut self, span: Option<Span>, section: &str, key: Option<&str>, message: impl Into<String>) {
        self.errors.push(Diagnostic {
            span,
            section: Some(section.to_string()),
            key: key.map(str::to_string),
            message: message.into(),
        });
    }

    pub fn warn(&mut self, span: Option<Span>, section: &str, key: Option<&str>, message: impl Into<String>) {
        self.warnings.push(Diagnostic {
            span,
            section: Some(section.to_string()),
            key: key.map(str::to_string),
            message: message.into(),
        });
    }

    /// Expands `text`, found at `span`, with `extra` on top of the names every value has (ENV_*
    /// and `here`, the directory of the file it is in), without copying those. `what` names
    /// the value in an error.
    pub fn expand(&self, text: &str, span: &Span, extra: &Names, what: &str) -> Result<String, String> {
        if !text.contains('%') {
            return Ok(text.to_string()); // nothing to expand (most values)
        }
        let mut here = Names::new();
        here.set_str("here", span.file.parent().map(Path::to_path_buf).unwrap_or_default().to_string_lossy());
        expand_in(text, &[extra, &here, &self.env], what)
    }

    /// A value expanded with `extra` names (on top of ENV and `here`).
    pub fn get(&mut self, section: &str, key: &str, extra: &Names) -> Got {
        self.get_with(section, key, extra, 1)
    }

    /// Like `get`, expanding `times` times (Supervisor expands a few values twice).
    pub fn get_with(&mut self, section: &str, key: &str, extra: &Names, times: usize) -> Got {
        let Some(value) = self.raw(section, key) else {
            return Got::Missing;
        };
        if !value.text.contains('%') {
            return Got::Found(value.text, value.span); // nothing to expand (most values)
        }
        let what = format!("{section}.{key}");
        let mut text = value.text.clone();
        for _ in 0..times {
            match self.expand(&text, &value.span, extra, &what) {
                Ok(t) => text = t,
                Err(msg) => {
                    self.error(Some(value.span.clone()), section, Some(key), msg);
                    return Got::Bad;
                }
            }
        }
        Got::Found(text, value.span)
    }

    /// A converted value; the default when missing or bad (a bad value is recorded).
    pub fn conv<T>(
        &mut self,
        section: &str,
        key: &str,
        extra: &Names,
        default: T,
        convert: impl Fn(&str) -> Result<T, String>,
        expected: &str,
    ) -> T {
        match self.get(section, key, extra) {
            Got::Missing | Got::Bad => default,
            Got::Found(text, span) => match convert(&text) {
                Ok(v) => v,
                Err(msg) => {
                    self.error(Some(span), section, Some(key), format!("{msg}; expected {expected}"));
                    default
                }
            },
        }
    }

    /// A converted value; the default of `key` in the options `table` (converted the same way)
    /// when missing or bad (a bad value is recorded).
    pub fn conv_def<T>(
        &mut self,
        section: &str,
        key: &str,
        extra: &Names,
        table: &[Key],
        convert: impl Fn(&str) -> Result<T, String>,
        expected: &str,
    ) -> T {
        match self.get(section, key, extra) {
            Got::Missing | Got::Bad => table_default(table, key, convert),
            Got::Found(text, span) => match convert(&text) {
                Ok(v) => v,
                Err(msg) => {
                    self.error(Some(span), section, Some(key), format!("{msg}; expected {expected}"));
                    table_default(table, key, convert)
                }
            },
        }
    }

    /// An optional converted value (`None` when missing or bad).
    pub fn conv_opt<T>(
        &mut self,
        section: &str,
        key: &str,
        extra: &Names,
        convert: impl Fn(&str) -> Result<T, String>,
        expected: &str,
    ) -> Option<T> {
        self.conv(section, key, extra, None, |s| convert(s).map(Some), expected)
    }
}

/// The default of `key` in the options `table`, converted as a value in a file would be. A
/// default that does not convert is a mistake in the table (the test of the defaults converts
/// every one of them), not in the user's file.
pub fn table_default<T>(table: &[Key], key: &str, convert: impl Fn(&str) -> Result<T, String>) -> T {
    let text = options::default_of(table, key);
    match convert(text) {
        Ok(v) => v,
        Err(msg) => panic!("the default of {key} in the options table, {text:?}, does not convert: {msg}"),
    }
}

pub const EXPECT_BOOL: &str = "true/false, yes/no, on/off or 1/0";
pub const EXPECT_INT: &str = "an integer";
pub const EXPECT_READY_FD: &str = "a file descriptor number from 3 to 1024";
pub const EXPECT_PROBE: &str = "http://127.0.0.1:PORT/PATH, HOST:PORT or a command";
pub const EXPECT_SECONDS: &str = "a whole number of seconds, 1 or more";
pub const EXPECT_RETRIES: &str = "an integer, or infinite (also -1) to never give up";
pub const EXPECT_SIZE: &str = "a size in bytes such as 1024, 100KB, 50MB or 1GB";
pub const EXPECT_OCTAL: &str = "an octal number such as 022";
pub const EXPECT_SIGNAL: &str = "a signal name such as TERM, HUP, INT, QUIT, KILL, USR1 or USR2, or its number";
pub const EXPECT_EXITCODES: &str = "comma-separated exit codes between 0 and 255, such as 0,2";
pub const EXPECT_AUTORESTART: &str = "true, false or unexpected";
pub const EXPECT_LEVEL: &str = "critical, error, warn, info, debug, trace or blather";
pub const EXPECT_USER: &str = "an existing user name or uid";
pub const EXPECT_USER_GROUP: &str = "user or user:group naming an existing user and group";
pub const EXPECT_DIR: &str = "an existing directory";
pub const EXPECT_LOGFILE: &str = "a file path in an existing directory, AUTO, NONE or syslog";
pub const EXPECT_PATH: &str = "a file path in an existing directory";
pub const EXPECT_ROTATE: &str = "size, hourly or daily";
pub const EXPECT_LOG_FORMAT: &str = "text or json";
pub const EXPECT_ENV: &str = "KEY=\"value\" pairs separated by commas";
pub const EXPECT_PORT: &str = "host:port, *:port, :port or a port number between 1 and 65535";
