//! The daemon's own log (reference 3.1): `YYYY-MM-DD HH:MM:SS,mmm LEVL message`, rotated like
//! child logs, optionally to syslog, and copied to stdout in the foreground unless silent.

use std::io::{self, Write};
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use super::logfile::LogFile;
use crate::config::LogLevel;

pub struct MainLog {
    pub level: LogLevel,
    file: Option<LogFile>,
    syslog: bool,
    echo_stdout: bool,
    /// Lines logged before the file was opened (startup), kept to be written once it is.
    pending: Vec<u8>,
}

/// `2026-11-23 23:16:40,801` in local time.
pub fn timestamp(at: SystemTime) -> String {
    let d = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let tm = crate::sys::localtime(d.as_secs() as i64);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02},{:03}",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec,
        d.subsec_millis()
    )
}

impl MainLog {
    /// A log that only echoes to stderr, for the time before the config is read.
    pub fn early(level: LogLevel) -> MainLog {
        MainLog { level, file: None, syslog: false, echo_stdout: false, pending: Vec::new() }
    }

    /// Opens the configured target. `path = None` means syslog.
    pub fn open(&mut self, path: Option<&PathBuf>, maxbytes: u64, backups: u32, echo_stdout: bool) -> io::Result<()> {
        self.echo_stdout = echo_stdout;
        match path {
            None => {
                self.syslog = true;
                self.file = None;
            }
            Some(path) => {
                let mut file = LogFile::open(path, maxbytes, backups)?;
                if !self.pending.is_empty() {
                    let _ = file.write(&self.pending);
                    self.pending.clear();
                }
                self.file = Some(file);
                self.syslog = false;
            }
        }
        Ok(())
    }

    pub fn enabled(&self, level: LogLevel) -> bool {
        level >= self.level
    }

    pub fn path(&self) -> Option<PathBuf> {
        self.file.as_ref().map(|f| f.path().to_path_buf())
    }

    pub fn log(&mut self, level: LogLevel, msg: &str) {
        self.log_at(level, msg, SystemTime::now());
    }

    pub fn log_at(&mut self, level: LogLevel, msg: &str, at: SystemTime) {
        if !self.enabled(level) {
            return;
        }
        let line = format!("{} {} {}\n", timestamp(at), level.tag(), msg);
        self.write_line(level, msg, line.as_bytes());
    }

    /// Child output copied into the main log at debug: `DEBG 'name' stdout output:\n<data>\n`.
    pub fn child_output(&mut self, name: &str, channel: &str, data: &[u8]) {
        if !self.enabled(LogLevel::Debug) {
            return;
        }
        let mut line = format!("{} DEBG '{}' {} output:\n", timestamp(SystemTime::now()), name, channel).into_bytes();
        line.extend_from_slice(data);
        line.push(b'\n');
        let text = String::from_utf8_lossy(data).into_owned();
        self.write_line(LogLevel::Debug, &format!("'{name}' {channel} output:\n{text}"), &line);
    }

    fn write_line(&mut self, level: LogLevel, msg: &str, line: &[u8]) {
        if self.echo_stdout {
            let mut out = io::stdout().lock();
            let _ = out.write_all(line);
            let _ = out.flush();
        }
        if self.syslog {
            let prio = match level {
                LogLevel::Critical => libc::LOG_CRIT,
                LogLevel::Error => libc::LOG_ERR,
                LogLevel::Warn => libc::LOG_WARNING,
                LogLevel::Info => libc::LOG_INFO,
                LogLevel::Debug | LogLevel::Trace | LogLevel::Blather => libc::LOG_DEBUG,
            };
            crate::sys::syslog(prio, msg);
        } else if let Some(file) = self.file.as_mut() {
            if file.write(line).is_err() && !self.echo_stdout {
                // The log is unwritable (disk full ...): say so where someone may see it.
                let _ = io::stderr().write_all(line);
            }
        } else {
            self.pending.extend_from_slice(line);
            if !self.echo_stdout {
                let _ = io::stderr().write_all(line);
            }
        }
    }

    pub fn reopen(&mut self) -> io::Result<()> {
        match self.file.as_mut() {
            Some(f) => f.reopen(),
            None => Ok(()),
        }
    }

    pub fn rotate(&mut self) -> io::Result<()> {
        match self.file.as_mut() {
            Some(f) => f.rotate_now(),
            None => Ok(()),
        }
    }

    pub fn clear(&mut self) -> io::Result<()> {
        match self.file.as_mut() {
            Some(f) => f.clear(),
            None => Ok(()),
        }
    }

    pub fn close(&mut self) {
        self.file = None;
    }
}
