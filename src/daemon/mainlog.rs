//! The daemon's own log (reference 3.1): `YYYY-MM-DD HH:MM:SS,mmm LEVL message`, rotated like
//! child logs, optionally to syslog, and copied to stdout in the foreground unless silent.

use std::io::{self, Write};
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use super::logfile::{rfc3339_utc, LogFile};
use crate::config::{LogLevel, Rotation};

pub struct MainLog {
    pub level: LogLevel,
    file: Option<LogFile>,
    syslog: bool,
    echo_stdout: bool,
    /// Lines logged while no file is open (startup, or a file that could not be opened),
    /// written to it once it is: at most `PENDING_MAX`, the newest kept.
    pending: Vec<u8>,
    /// Bytes of the oldest pending lines that were dropped to keep that bound.
    dropped: usize,
    /// The file the log should go to while it cannot be opened; opening is tried again at
    /// each reopen (SIGUSR2, `reopenLogs`).
    wanted: Option<(PathBuf, u64, u32)>,
    /// `logfile_rotate=` and `logfile_compress=`.
    rotation: Rotation,
    /// `log_format=json`: the lines copied to stdout (and the file, when it is the daemon's
    /// stdout or stderr) are `{"time", "level", "message"}` objects.
    json: bool,
}

/// The most held for a log file that cannot be opened yet.
const PENDING_MAX: usize = 64 * 1024;

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
        MainLog {
            level,
            file: None,
            syslog: false,
            echo_stdout: false,
            pending: Vec::new(),
            dropped: 0,
            wanted: None,
            rotation: Rotation::default(),
            json: false,
        }
    }

    /// minisv's `logfile_rotate=`, `logfile_compress=` and `log_format=json`: before `open`.
    pub fn set_format(&mut self, rotation: Rotation, json: bool) {
        self.rotation = rotation;
        self.json = json;
    }

    /// Opens a log file with this log's rotation.
    fn open_file(&self, path: &std::path::Path, maxbytes: u64, backups: u32) -> io::Result<LogFile> {
        let mut file = LogFile::open(path, maxbytes, backups)?;
        file.set_rotation(self.rotation);
        Ok(file)
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
                self.syslog = false;
                self.file = None;
                let file = match self.open_file(path, maxbytes, backups) {
                    Ok(f) => f,
                    Err(e) => {
                        self.wanted = Some((path.clone(), maxbytes, backups));
                        return Err(e);
                    }
                };
                self.wanted = None;
                self.start_file(file);
            }
        }
        Ok(())
    }

    /// Writes what was held for the file, then uses it.
    fn start_file(&mut self, mut file: LogFile) {
        if self.dropped > 0 {
            let note = format!(
                "{} WARN {} bytes of log lines written while this file could not be opened were dropped; the newest follow\n",
                timestamp(SystemTime::now()),
                self.dropped
            );
            let _ = file.write(note.as_bytes());
            self.dropped = 0;
        }
        if !self.pending.is_empty() {
            let _ = file.write(&self.pending);
            self.pending = Vec::new();
        }
        self.file = Some(file);
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
        self.write_line(level, &|| msg.to_string(), line.as_bytes(), at);
    }

    /// Child output copied into the main log at debug: `DEBG 'name' stdout output:\n<data>\n`.
    pub fn child_output(&mut self, name: &str, channel: &str, data: &[u8]) {
        if !self.enabled(LogLevel::Debug) {
            return;
        }
        let at = SystemTime::now();
        let mut line = format!("{} DEBG '{}' {} output:\n", timestamp(at), name, channel).into_bytes();
        line.extend_from_slice(data);
        line.push(b'\n');
        // The text for syslog is made only when the log goes there.
        let msg = || format!("'{name}' {channel} output:\n{}", String::from_utf8_lossy(data));
        self.write_line(LogLevel::Debug, &msg, &line, at);
    }

    fn write_line(&mut self, level: LogLevel, msg: &dyn Fn() -> String, line: &[u8], at: SystemTime) {
        let json = self.json.then(|| json_line(level, &msg(), at));
        if self.echo_stdout {
            let mut out = io::stdout().lock();
            let _ = out.write_all(json.as_deref().unwrap_or(line));
            let _ = out.flush();
        }
        // A log file that is the daemon's stdout or stderr gets the JSON form too.
        let line = match &json {
            Some(j) if self.file.as_ref().is_some_and(|f| is_stdio(f.path())) => j.as_slice(),
            _ => line,
        };
        if self.syslog {
            let prio = match level {
                LogLevel::Critical => libc::LOG_CRIT,
                LogLevel::Error => libc::LOG_ERR,
                LogLevel::Warn => libc::LOG_WARNING,
                LogLevel::Info => libc::LOG_INFO,
                LogLevel::Debug | LogLevel::Trace | LogLevel::Blather => libc::LOG_DEBUG,
            };
            crate::sys::syslog(prio, &msg());
        } else if let Some(file) = self.file.as_mut() {
            if file.write(line).is_err() && !self.echo_stdout {
                // The log is unwritable (disk full ...): say so where someone may see it.
                let _ = io::stderr().write_all(line);
            }
        } else {
            self.hold(line);
            if !self.echo_stdout {
                let _ = io::stderr().write_all(line);
            }
        }
    }

    /// Keeps a line for the file to come, dropping the oldest whole lines past `PENDING_MAX`.
    fn hold(&mut self, line: &[u8]) {
        self.pending.extend_from_slice(line);
        if self.pending.len() > PENDING_MAX {
            let excess = self.pending.len() - PENDING_MAX;
            let cut =
                self.pending[excess..].iter().position(|&b| b == b'\n').map_or(self.pending.len(), |i| excess + i + 1);
            self.pending.drain(..cut);
            self.dropped += cut;
        }
    }

    /// Reopens the file at its path; a file that could not be opened before is tried again.
    /// Errors name the file.
    pub fn reopen(&mut self) -> io::Result<()> {
        if let Some((path, maxbytes, backups)) = self.wanted.clone() {
            let file = self.open_file(&path, maxbytes, backups).map_err(|e| named(&path, e))?;
            self.wanted = None;
            self.start_file(file);
            return Ok(());
        }
        match self.file.as_mut() {
            Some(f) => f.reopen().map_err(|e| named(f.path(), e)),
            None => Ok(()),
        }
    }

    /// Rotates the file now. Errors name the file.
    pub fn rotate(&mut self) -> io::Result<()> {
        match self.file.as_mut() {
            Some(f) => f.rotate_now().map_err(|e| named(f.path(), e)),
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

/// `{"time":"...","level":"info","message":"..."}` and a newline.
fn json_line(level: LogLevel, msg: &str, at: SystemTime) -> Vec<u8> {
    let name = match level {
        LogLevel::Critical => "critical",
        LogLevel::Error => "error",
        LogLevel::Warn => "warn",
        LogLevel::Info => "info",
        LogLevel::Debug => "debug",
        LogLevel::Trace => "trace",
        LogLevel::Blather => "blather",
    };
    let mut out = format!("{{\"time\":\"{}\",\"level\":\"{name}\",\"message\":", rfc3339_utc(at));
    crate::rpc::json::escape(msg, &mut out);
    out.push_str("}\n");
    out.into_bytes()
}

fn is_stdio(path: &std::path::Path) -> bool {
    super::logfile::is_daemon_stdio(path)
}

/// `e` with the file's path in front.
fn named(path: &std::path::Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_file_that_cannot_be_opened_keeps_a_bounded_tail_and_is_retried_at_reopen() {
        let dir = std::env::temp_dir().join(format!("minisv-mainlog-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("sub/main.log");
        let mut log = MainLog::early(LogLevel::Info);
        // echo_stdout keeps the test's stderr quiet; the lines are held all the same.
        let err = log.open(Some(&path), 0, 0, true).expect_err("the directory does not exist");
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        for i in 0..20_000 {
            log.log(LogLevel::Info, &format!("line {i}"));
        }
        assert!(log.pending.len() <= PENDING_MAX, "{} bytes held", log.pending.len());
        assert!(log.pending.starts_with(b"20") && log.pending.ends_with(b"line 19999\n"));
        // Still missing: the error names the file.
        let e = log.reopen().expect_err("still no directory");
        assert!(e.to_string().starts_with(&path.display().to_string()), "{e}");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        log.reopen().expect("opened at last");
        log.log(LogLevel::Info, "after");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("bytes of log lines written while this file could not be opened were dropped"));
        assert!(text.contains("line 19999\n") && !text.contains("line 0\n") && text.ends_with("after\n"), "{text}");
        assert!(log.pending.is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
