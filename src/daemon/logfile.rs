//! Log files: append, rotate exactly as Supervisor's RotatingFileHandler (reference 3.3), reopen
//! (SIGUSR2) and clear. Character devices, FIFOs and sockets (`/dev/stdout` in a container) are
//! written but never rotated (fix of Q11).
//!
//! minisv adds (issue 22): rotation at the start of each hour or day of local time, checked
//! at each write (a log is rotated when it is written to: an idle program's log is rotated at
//! its next write, and an idle daemon makes no wakeup for it); gzip-compressed backups
//! (`compress`); and JSON lines for program output forwarded to the daemon's stdout.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use super::compress;
use crate::config::{RotateEvery, Rotation};

#[derive(Debug)]
pub struct LogFile {
    path: PathBuf,
    maxbytes: u64,
    backups: u32,
    file: Option<File>,
    /// Kept open by the event loop across bursts of output (see LOG_HOLD there).
    pub held: bool,
    /// Bytes in the current file (what Supervisor's `tell()` gives).
    size: u64,
    /// Only regular files are rotated.
    rotatable: bool,
    /// Bytes that could not be written since the last successful write (disk full ...).
    pub dropped: u64,
    /// An AUTO log not created yet: (prefix, suffix) of its name. The first open creates it
    /// new (mode 0600), under another random name if that one was taken meanwhile.
    deferred: Option<(String, String)>,
    rotation: Rotation,
    /// With a rotation period: when the current file's period ends (seconds since the epoch),
    /// from the time of its last write; `None` while it is empty.
    period_end: Option<i64>,
    /// `log_format=json` on the daemon's stdout: each line of output as a JSON object.
    json: Option<Box<JsonLines>>,
}

/// Program output turned into one JSON object per line.
#[derive(Debug)]
struct JsonLines {
    program: String,
    channel: &'static str,
    /// The end of the output so far that is not a whole line yet.
    partial: Vec<u8>,
}

/// A partial line longer than this is written as a line of its own.
const JSON_PARTIAL_MAX: usize = 16 * 1024;

impl LogFile {
    /// Opens `path` for appending (created 0666 less the umask, as Python's `open(path, 'a')`).
    pub fn open(path: &Path, maxbytes: u64, backups: u32) -> io::Result<LogFile> {
        let mut log = LogFile::new(path.to_path_buf(), maxbytes, backups, None);
        log.reopen()?;
        Ok(log)
    }

    fn new(path: PathBuf, maxbytes: u64, backups: u32, deferred: Option<(String, String)>) -> LogFile {
        LogFile {
            path,
            maxbytes,
            backups,
            file: None,
            held: false,
            size: 0,
            rotatable: true,
            dropped: 0,
            deferred,
            rotation: Rotation::default(),
            period_end: None,
            json: None,
        }
    }

    /// `*_logfile_rotate=` and `*_logfile_compress=`.
    pub fn set_rotation(&mut self, rotation: Rotation) {
        self.rotation = rotation;
    }

    /// Writes each line as `{"time", "program", "channel", "line"}` when this log is the
    /// daemon's own stdout or stderr (`/dev/stdout`, `/dev/fd/1`, `/proc/self/fd/1` ...);
    /// any other log is left as it is. Returns whether it applies.
    pub fn frame_json(&mut self, program: &str, channel: &'static str) -> bool {
        if !is_daemon_stdio(&self.path) {
            return false;
        }
        self.json = Some(Box::new(JsonLines { program: program.to_string(), channel, partial: Vec::new() }));
        true
    }

    /// An AUTO log: a file with a unique name in `dir` (`prefix`, 8 random characters,
    /// `suffix`), mode 0600, as Supervisor's mkstemp. Its name is chosen now and shown at once
    /// (getProcessInfo, `status`), but the file is created by the first output or the first
    /// read: creating two files per program up front is most of the time it takes to start a
    /// thousand programs (ext4 inode allocation). `dir` must be a writable directory now.
    pub fn deferred_unique(dir: &Path, prefix: &str, suffix: &str, maxbytes: u64, backups: u32) -> io::Result<LogFile> {
        // One system call: with the trailing slash, anything but a directory is ENOTDIR.
        let mut with_slash = std::os::unix::ffi::OsStrExt::as_bytes(dir.as_os_str()).to_vec();
        with_slash.push(b'/');
        let c = std::ffi::CString::new(with_slash).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        crate::syscall!(access(c.as_ptr(), libc::W_OK | libc::X_OK))?;
        let mut seed = random_seed();
        let path = dir.join(format!("{prefix}{}{suffix}", random_name(&mut seed)));
        Ok(LogFile::new(path, maxbytes, backups, Some((prefix.to_string(), suffix.to_string()))))
    }

    /// An AUTO log takes the name an old daemon gave it (upgrade in place): opened if the file
    /// is there, still deferred if nothing was written to it yet.
    pub fn take_name(&mut self, path: &Path) -> io::Result<()> {
        self.path = path.to_path_buf();
        if self.deferred.is_some() && std::fs::symlink_metadata(path).is_err() {
            return Ok(());
        }
        self.deferred = None;
        self.reopen()?;
        self.release();
        Ok(())
    }

    /// Creates a deferred AUTO log now (see `deferred_unique`); nothing for any other log.
    pub fn materialize(&mut self) -> io::Result<()> {
        if self.deferred.is_some() {
            self.open_now()?;
            self.release();
        }
        Ok(())
    }

    /// Creates the deferred AUTO log, new, under its name or another if that one is taken.
    fn create_deferred(&mut self, prefix: &str, suffix: &str) -> io::Result<File> {
        let dir = self.path.parent().map(Path::to_path_buf).unwrap_or_default();
        let mut seed = random_seed();
        for _ in 0..100 {
            match OpenOptions::new()
                .append(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&self.path)
            {
                Ok(file) => return Ok(file),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    self.path = dir.join(format!("{prefix}{}{suffix}", random_name(&mut seed)));
                }
                Err(e) => return Err(e),
            }
        }
        Err(io::Error::new(io::ErrorKind::AlreadyExists, "no unique log file name found"))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Closes the file until the next write (which opens it again in append mode, so a file
    /// rotated or truncated by someone else meanwhile is picked up). The daemon holds a log
    /// open only while output flows (and at most LOG_HOLD at a time, see the event loop): an
    /// idle program costs its pipes and nothing more.
    pub fn release(&mut self) {
        self.flush_json();
        self.file = None;
        self.held = false;
    }

    /// Closes and opens the file again at the same path (for external log rotation). A
    /// deferred AUTO log stays as it is until written or read.
    pub fn reopen(&mut self) -> io::Result<()> {
        if self.deferred.is_some() {
            return Ok(());
        }
        self.open_now()
    }

    /// Opens the file for appending, creating a deferred AUTO log.
    fn open_now(&mut self) -> io::Result<()> {
        self.file = None;
        let file = match self.deferred.clone() {
            Some((prefix, suffix)) => {
                let file = self.create_deferred(&prefix, &suffix)?;
                self.deferred = None;
                file
            }
            None => OpenOptions::new()
                .append(true)
                .create(true)
                .mode(0o666)
                .custom_flags(nofollow_in_shared_dir(&self.path))
                .open(&self.path)?,
        };
        let meta = file.metadata()?;
        self.rotatable = meta.file_type().is_file();
        self.size = if self.rotatable { meta.len() } else { 0 };
        // The period of what the file holds, from its last write: a file written before the
        // daemon started (or before the last hour) is rotated at the first write.
        self.period_end = match period_secs(self.rotation.every) {
            Some(period) if self.size > 0 => meta.modified().ok().map(|t| period_end(epoch_secs(t), period)),
            _ => None,
        };
        self.file = Some(file);
        Ok(())
    }

    /// Supervisor's clear: remove the file and start an empty one (backups are kept).
    pub fn clear(&mut self) -> io::Result<()> {
        if self.deferred.is_some() {
            return Ok(());
        }
        self.file = None;
        if self.rotatable {
            match fs::remove_file(&self.path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        self.reopen()
    }

    /// `write_at` now (for logs without a rotation period the time is not read).
    pub fn write(&mut self, data: &[u8]) -> io::Result<()> {
        let now = match self.rotation.every {
            RotateEvery::Size if self.json.is_none() => UNIX_EPOCH,
            _ => SystemTime::now(),
        };
        self.write_at(data, now)
    }

    /// Writes all of `data` at time `now`, then rotates if the file reached maxbytes. A file
    /// whose rotation period ended before `now` is rotated first. On an error the bytes not
    /// written are counted in `dropped` and the error is returned (the caller reports it).
    pub fn write_at(&mut self, data: &[u8], now: SystemTime) -> io::Result<()> {
        if self.file.is_none() {
            if let Err(e) = self.open_now() {
                self.dropped += data.len() as u64;
                return Err(e);
            }
        }
        if let Some(period) = period_secs(self.rotation.every).filter(|_| self.rotatable) {
            let secs = epoch_secs(now);
            match self.period_end {
                Some(end) if secs >= end && self.size > 0 => {
                    self.rotate()?;
                    if self.size == 0 {
                        self.period_end = None;
                    }
                }
                _ => {}
            }
            if self.period_end.is_none() {
                self.period_end = Some(period_end(secs, period));
            }
        }
        if let Some(json) = self.json.as_mut() {
            let framed = json.frame(data, now, false);
            return self.write_raw(&framed);
        }
        self.write_raw(data)
    }

    /// Writes a partial line held for JSON framing as a line of its own (when the log is
    /// released: the program has been quiet for a while, or its output ended).
    fn flush_json(&mut self) {
        let Some(json) = self.json.as_mut().filter(|j| !j.partial.is_empty()) else { return };
        let framed = json.frame(b"", SystemTime::now(), true);
        let _ = self.write_raw(&framed);
    }

    fn write_raw(&mut self, data: &[u8]) -> io::Result<()> {
        if self.file.is_none() {
            if let Err(e) = self.open_now() {
                self.dropped += data.len() as u64;
                return Err(e);
            }
        }
        let Some(file) = self.file.as_mut() else {
            return Ok(());
        };
        let mut rest = data;
        while !rest.is_empty() {
            match file.write(rest) {
                Ok(0) => {
                    self.dropped += rest.len() as u64;
                    return Err(io::Error::new(io::ErrorKind::WriteZero, "wrote nothing"));
                }
                Ok(n) => {
                    self.size += n as u64;
                    rest = &rest[n..];
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.dropped += rest.len() as u64;
                    return Err(e);
                }
            }
        }
        if self.rotatable && self.maxbytes > 0 && self.size >= self.maxbytes {
            self.rotate()?;
        }
        Ok(())
    }

    /// Rotation on request (`minisv ctl logrotate`): as at maxbytes, for regular files only.
    pub fn rotate_now(&mut self) -> io::Result<()> {
        if self.deferred.is_some() {
            return Ok(());
        }
        if self.file.is_none() {
            self.reopen()?;
        }
        if self.rotatable {
            // Asked for by hand, a rotation keeps the old file even with no backups configured
            // (at maxbytes, backups=0 truncates).
            let backups = self.backups;
            self.backups = backups.max(1);
            let rotated = self.rotate();
            self.backups = backups;
            rotated?;
        }
        Ok(())
    }

    /// `f.(n-1)` → `f.n` ... `f` → `f.1`, then a new empty `f`; with no backups, truncate.
    /// With compression, `f` is renamed to a name of its own and queued for gzip, which puts
    /// it in as `f.1.gz` once compressed (see `compress`).
    pub fn rotate(&mut self) -> io::Result<()> {
        if self.rotation.compress && self.backups > 0 {
            self.file = None;
            if compress::available() {
                let staging = compress::staging_name(&self.path);
                rename_if_exists(&self.path, &staging)?;
                compress::enqueue(compress::Job {
                    source: staging,
                    log: self.path.clone(),
                    backups: self.backups,
                    budget: self.maxbytes.saturating_mul(u64::from(self.backups)),
                });
            } else {
                // No gzip (said once in the log): plain backups, among any compressed ones.
                compress::shift_in(&self.path, self.backups, &self.path, false)?;
            }
            return self.start_empty();
        }
        self.file = None;
        if self.backups > 0 {
            for i in (1..self.backups).rev() {
                let from = numbered(&self.path, i);
                let to = numbered(&self.path, i + 1);
                if from.exists() {
                    remove_if_exists(&to)?;
                    rename_if_exists(&from, &to)?;
                }
            }
            let first = numbered(&self.path, 1);
            remove_if_exists(&first)?;
            rename_if_exists(&self.path, &first)?;
        }
        self.start_empty()
    }

    /// A new empty file at the log's path.
    fn start_empty(&mut self) -> io::Result<()> {
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o666)
            .custom_flags(nofollow_in_shared_dir(&self.path))
            .open(&self.path)?;
        self.size = 0;
        self.file = Some(file);
        Ok(())
    }
}

/// The length in seconds of a rotation period.
fn period_secs(every: RotateEvery) -> Option<i64> {
    match every {
        RotateEvery::Size => None,
        RotateEvery::Hourly => Some(3600),
        RotateEvery::Daily => Some(86_400),
    }
}

fn epoch_secs(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64) - 1,
    }
}

/// The end of the period of local time (an hour or a day) that `secs` is in. Where the UTC
/// offset changes at that end (daylight saving time), the offset of the end is used: a day
/// ends at local midnight, whether it had 23, 24 or 25 hours.
fn period_end(secs: i64, period: i64) -> i64 {
    // tm_gmtoff is a C long: 32 bits on armv7 and MIPS (the conversion is a no-op on 64 bits).
    #[allow(clippy::useless_conversion)]
    let offset = |t: i64| i64::from(crate::sys::localtime(t).tm_gmtoff);
    let local_end = |off: i64| ((secs + off).div_euclid(period) + 1) * period;
    let before = offset(secs);
    let end = local_end(before) - before;
    let after = offset(end);
    if after == before {
        return end;
    }
    // The offset changed within the period: the end in the new offset, if that is still
    // after `secs` (else the old one, which is).
    let other = local_end(before) - after;
    if other > secs {
        other
    } else {
        end
    }
}

/// Whether a log path names the daemon's own stdout or stderr.
pub fn is_daemon_stdio(path: &Path) -> bool {
    matches!(
        path.to_str(),
        Some("/dev/stdout" | "/dev/stderr" | "/dev/fd/1" | "/dev/fd/2" | "/proc/self/fd/1" | "/proc/self/fd/2")
    )
}

impl JsonLines {
    /// The whole lines of `partial + data` as JSON objects, one per line (`flush`: the rest
    /// too). Invalid UTF-8 becomes U+FFFD: JSON text is Unicode.
    fn frame(&mut self, data: &[u8], now: SystemTime, flush: bool) -> Vec<u8> {
        self.partial.extend_from_slice(data);
        let mut out = String::new();
        let time = rfc3339_utc(now);
        let mut start = 0;
        while let Some(nl) = self.partial[start..].iter().position(|&b| b == b'\n') {
            self.line(&mut out, &time, start, start + nl);
            start += nl + 1;
        }
        let rest = self.partial.len() - start;
        if (flush && rest > 0) || rest > JSON_PARTIAL_MAX {
            self.line(&mut out, &time, start, self.partial.len());
            start = self.partial.len();
        }
        self.partial.drain(..start);
        out.into_bytes()
    }

    fn line(&self, out: &mut String, time: &str, from: usize, to: usize) {
        use crate::rpc::json::escape;
        out.push_str("{\"time\":\"");
        out.push_str(time);
        out.push_str("\",\"program\":");
        escape(&self.program, out);
        out.push_str(",\"channel\":\"");
        out.push_str(self.channel);
        out.push_str("\",\"line\":");
        escape(&String::from_utf8_lossy(&self.partial[from..to]), out);
        out.push_str("}\n");
    }
}

/// `2026-11-23T22:16:40.801Z`: RFC 3339 in UTC, as log shippers parse it.
pub fn rfc3339_utc(t: SystemTime) -> String {
    crate::rpc::httpdate::rfc3339_utc(t)
}

/// `O_NOFOLLOW` when `path` is in a directory that others may write to (such as /tmp), where
/// someone could plant a symlink to make the daemon write over a file of their choice. Elsewhere
/// symlinks are followed, as users set them up on purpose.
pub fn nofollow_in_shared_dir(path: &Path) -> i32 {
    use std::os::unix::fs::PermissionsExt;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    match fs::metadata(dir) {
        Ok(meta) if meta.permissions().mode() & 0o002 != 0 => libc::O_NOFOLLOW,
        Ok(_) => 0,
        // Unknown: be careful.
        Err(_) => libc::O_NOFOLLOW,
    }
}

fn numbered(path: &Path, n: u32) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

// An external cleaner may remove files under us: ENOENT is not an error here.
fn remove_if_exists(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn rename_if_exists(from: &Path, to: &Path) -> io::Result<()> {
    match fs::rename(from, to) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// A seed for `random_name`: the next of a sequence (splitmix64) that starts from the kernel's
/// randomness, the time and the pid, once per process. (Seeding each name anew took two system
/// calls per AUTO log, 2000 for 1000 programs at startup.)
fn random_seed() -> u64 {
    const STEP: u64 = 0x9E37_79B9_7F4A_7C15;
    // A mutex, not an AtomicU64: 32-bit MIPS has no 64-bit atomics.
    static STATE: std::sync::Mutex<u64> = std::sync::Mutex::new(0);
    let mut state = STATE.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if *state == 0 {
        let mut buf = [0u8; 8];
        // SAFETY: getrandom writes at most buf.len() bytes into buf; a failure leaves it zeroed.
        unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), libc::GRND_NONBLOCK) };
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64);
        let first = u64::from_le_bytes(buf) ^ t.unwrap_or(0) ^ (crate::sys::getpid() as u64) << 32;
        *state = first | 1;
    }
    *state = state.wrapping_add(STEP);
    let mut z = *state;
    drop(state);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn random_name(seed: &mut u64) -> String {
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789_";
    (0..8)
        .map(|_| {
            // xorshift64*
            *seed ^= *seed >> 12;
            *seed ^= *seed << 25;
            *seed ^= *seed >> 27;
            let v = seed.wrapping_mul(0x2545_F491_4F6C_DD1D);
            CHARS[(v >> 33) as usize % CHARS.len()] as char
        })
        .collect()
}

/// Whether `name` is an AUTO child log of this identifier: Supervisor's cleanup pattern
/// `.+?---<identifier>-\S+\.log\.{0,1}\d{0,4}` (matched at the start of the name).
pub fn is_auto_log_name(name: &str, identifier: &str) -> bool {
    let marker = format!("---{identifier}-");
    let mut from = 1;
    while let Some(pos) = name.get(from..).and_then(|s| s.find(&marker)) {
        let rest = &name[from + pos + marker.len()..];
        // \S+ then ".log": at least one non-space char before a ".log".
        let mut search = 1;
        while let Some(p) = rest.get(search..).and_then(|s| s.find(".log")) {
            let stem = &rest[..search + p];
            if !stem.chars().any(char::is_whitespace) {
                return true;
            }
            search += p + 1;
        }
        from += pos + 1;
    }
    false
}

/// Deletes the AUTO logs of `identifier` in `dir` (at start and reload unless nocleanup).
pub fn cleanup_auto_logs(dir: &Path, identifier: &str) -> io::Result<usize> {
    let mut removed = 0;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if is_auto_log_name(name, identifier)
            && entry.file_type().is_ok_and(|t| t.is_file())
            && fs::remove_file(entry.path()).is_ok()
        {
            removed += 1;
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("minisv-logfile-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).expect("tmpdir");
        d
    }

    fn gz_ok(path: &Path) -> bool {
        std::process::Command::new("gzip").arg("-t").arg(path).status().is_ok_and(|s| s.success())
    }

    fn gunzip(path: &Path) -> Vec<u8> {
        std::process::Command::new("gzip").arg("-dc").arg(path).output().expect("gzip -dc").stdout
    }

    #[test]
    fn compressed_rotation_keeps_gz_backups_under_maxbytes_times_backups() {
        let d = tmpdir("gz");
        let path = d.join("x.log");
        let mut log = LogFile::open(&path, 1000, 3).expect("open");
        log.set_rotation(Rotation { every: RotateEvery::Size, compress: true });
        // Incompressible bytes (a xorshift sequence): the compressed backups are about as big
        // as the plain ones, so the budget of 3 x 1000 bytes must be enforced by removal.
        let mut seed = 0x1234_5678_9abc_def0_u64;
        let mut all = Vec::new();
        for _ in 0..40 {
            let chunk: Vec<u8> = (0..97)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    seed as u8
                })
                .collect();
            all.extend_from_slice(&chunk);
            log.write(&chunk).expect("write");
            compress::run_queued_blocking();
        }
        assert!(compress::numbered(&path, 1, true).exists(), "x.log.1.gz");
        let mut total = 0;
        let mut tail = Vec::new();
        for n in (1..=3).rev() {
            assert!(!numbered(&path, n).exists(), "no plain backup {n}");
            let gz = compress::numbered(&path, n, true);
            if gz.exists() {
                assert!(gz_ok(&gz), "gzip -t {}", gz.display());
                total += fs::metadata(&gz).expect("meta").len();
                tail.extend(gunzip(&gz));
            }
        }
        assert!(total <= 3000, "{total} bytes of backups");
        assert!(!compress::numbered(&path, 4, true).exists());
        tail.extend(fs::read(&path).expect("current"));
        assert!(all.ends_with(&tail), "the backups and the file are the end of what was written, in order");
        // Text compresses: all three backups are kept.
        let text = d.join("t.log");
        let mut log = LogFile::open(&text, 1000, 3).expect("open");
        log.set_rotation(Rotation { every: RotateEvery::Size, compress: true });
        for i in 0..300 {
            log.write(format!("line {i:05} of some text\n").as_bytes()).expect("write");
            compress::run_queued_blocking();
        }
        for n in 1..=3 {
            assert!(gz_ok(&compress::numbered(&text, n, true)), "{n}");
        }
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn rotations_while_gzip_runs_land_in_order() {
        let d = tmpdir("gz-burst");
        let path = d.join("x.log");
        let (a, b, c) = ("a".repeat(100) + "\n", "b".repeat(100) + "\n", "c".repeat(100) + "\n");
        let mut log = LogFile::open(&path, 100, 3).expect("open");
        log.set_rotation(Rotation { every: RotateEvery::Size, compress: true });
        // Three rotations before any gzip has run.
        for text in [&a, &b, &c] {
            log.write(text.as_bytes()).expect("write");
        }
        assert_eq!(fs::read(&path).expect("read"), b"", "rotated at once each time");
        compress::run_queued_blocking();
        assert_eq!(gunzip(&compress::numbered(&path, 3, true)), a.as_bytes());
        assert_eq!(gunzip(&compress::numbered(&path, 2, true)), b.as_bytes());
        assert_eq!(gunzip(&compress::numbered(&path, 1, true)), c.as_bytes());
        let left: Vec<_> = fs::read_dir(&d).expect("dir").flatten().map(|e| e.file_name()).collect();
        assert_eq!(left.len(), 4, "x.log and three backups: {left:?}");
        let _ = fs::remove_dir_all(&d);
    }

    /// The start of the hour after `t`, as the log module computes it.
    fn next_hour(t: SystemTime) -> SystemTime {
        UNIX_EPOCH + std::time::Duration::from_secs(period_end(epoch_secs(t), 3600) as u64)
    }

    #[test]
    fn hourly_rotation_starts_a_file_at_the_first_write_of_a_new_hour() {
        use std::time::Duration;
        let d = tmpdir("hourly");
        let path = d.join("x.log");
        let mut log = LogFile::open(&path, 0, 5).expect("open");
        log.set_rotation(Rotation { every: RotateEvery::Hourly, compress: false });
        // A fake clock: ten seconds into some hour.
        let t0 = next_hour(SystemTime::now() + Duration::from_secs(86_400 * 30)) + Duration::from_secs(10);
        log.write_at(b"a\n", t0).expect("write");
        log.write_at(b"b\n", t0 + Duration::from_secs(3000)).expect("same hour");
        assert!(!numbered(&path, 1).exists());
        // Idle for three hours: nothing happens until the next write, which starts a new file.
        log.release();
        let later = t0 + Duration::from_secs(3 * 3600);
        log.write_at(b"c\n", later).expect("write");
        assert_eq!(fs::read(numbered(&path, 1)).expect("backup"), b"a\nb\n");
        assert_eq!(fs::read(&path).expect("current"), b"c\n");
        log.write_at(b"d\n", next_hour(later)).expect("write at the hour");
        assert_eq!(fs::read(numbered(&path, 2)).expect("backup"), b"a\nb\n");
        assert_eq!(fs::read(numbered(&path, 1)).expect("backup"), b"c\n");
        assert_eq!(fs::read(&path).expect("current"), b"d\n");
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn daily_rotation_judges_a_file_from_before_by_its_modification_time() {
        use std::time::Duration;
        let d = tmpdir("daily");
        let path = d.join("x.log");
        fs::write(&path, b"yesterday\n").expect("write");
        // Written two days ago.
        let old = SystemTime::now() - Duration::from_secs(2 * 86_400);
        fs::File::options().write(true).open(&path).expect("open").set_modified(old).expect("mtime");
        let mut log = LogFile::open(&path, 0, 2).expect("open");
        log.set_rotation(Rotation { every: RotateEvery::Daily, compress: false });
        log.reopen().expect("reopen");
        log.write_at(b"today\n", SystemTime::now()).expect("write");
        assert_eq!(fs::read(numbered(&path, 1)).expect("backup"), b"yesterday\n");
        assert_eq!(fs::read(&path).expect("current"), b"today\n");
        // A day is local: it ends at a local midnight, 23 to 25 hours after the one before.
        let now = epoch_secs(SystemTime::now());
        let end = period_end(now, 86_400);
        let next = period_end(end, 86_400);
        assert!(end > now && (23 * 3600..=25 * 3600).contains(&(next - end)), "{now} {end} {next}");
        assert_eq!(crate::sys::localtime(end).tm_hour, 0);
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn json_lines_are_whole_lines_escaped() {
        let mut j = JsonLines { program: "w\"eb".into(), channel: "stdout", partial: Vec::new() };
        let at = UNIX_EPOCH + std::time::Duration::from_millis(1_700_000_000_123);
        assert_eq!(j.frame(b"a\tb\x01\"\\ \xff\nhalf", at, false), b"{\"time\":\"2023-11-14T22:13:20.123Z\",\"program\":\"w\\\"eb\",\"channel\":\"stdout\",\"line\":\"a\\tb\\u0001\\\"\\\\ \xef\xbf\xbd\"}\n");
        assert_eq!(j.frame(b" line", at, false), b"");
        let out = String::from_utf8(j.frame(b"", at, true)).expect("utf-8");
        assert!(out.ends_with("\"line\":\"half line\"}\n"), "{out}");
        assert!(j.partial.is_empty());
    }

    #[test]
    fn rotation_keeps_every_byte_in_order() {
        let d = tmpdir("rot");
        let path = d.join("x.log");
        let mut log = LogFile::open(&path, 1000, 3).expect("open");
        let mut all = Vec::new();
        for i in 0..50u32 {
            let chunk = format!("line {i:04} {}\n", "x".repeat((i % 7) as usize * 30));
            all.extend_from_slice(chunk.as_bytes());
            log.write(chunk.as_bytes()).expect("write");
        }
        // The last three backups plus the current file hold the newest bytes, in order.
        let mut tail = Vec::new();
        for n in (1..=3).rev() {
            tail.extend(fs::read(numbered(&path, n)).expect("backup"));
        }
        tail.extend(fs::read(&path).expect("current"));
        assert!(all.ends_with(&tail), "concatenated backups are the end of what was written");
        assert!(!numbered(&path, 4).exists(), "no more than `backups` backups");
        for n in 1..=3 {
            let len = fs::metadata(numbered(&path, n)).expect("meta").len();
            assert!(len >= 1000, "a backup is rotated only once it reached maxbytes");
        }
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn zero_backups_truncates() {
        let d = tmpdir("trunc");
        let path = d.join("x.log");
        let mut log = LogFile::open(&path, 10, 0).expect("open");
        log.write(b"0123456789AB").expect("write");
        assert_eq!(fs::metadata(&path).expect("meta").len(), 0);
        assert!(!numbered(&path, 1).exists());
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn appends_across_reopen_and_clear_empties() {
        let d = tmpdir("append");
        let path = d.join("x.log");
        let mut log = LogFile::open(&path, 0, 0).expect("open");
        log.write(b"one\n").expect("write");
        let mut log2 = LogFile::open(&path, 0, 0).expect("open again");
        log2.write(b"two\n").expect("write");
        assert_eq!(fs::read(&path).expect("read"), b"one\ntwo\n");
        log2.clear().expect("clear");
        assert_eq!(fs::read(&path).expect("read"), b"");
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn symlinks_planted_in_a_world_writable_dir_are_not_followed() {
        use std::os::unix::fs::PermissionsExt;
        let d = tmpdir("shared");
        fs::set_permissions(&d, fs::Permissions::from_mode(0o1777)).expect("chmod");
        let target = d.join("victim");
        fs::write(&target, "precious").expect("write");
        std::os::unix::fs::symlink(&target, d.join("x.log")).expect("symlink");
        let err = LogFile::open(&d.join("x.log"), 0, 0).expect_err("must refuse the symlink");
        assert_eq!(err.raw_os_error(), Some(libc::ELOOP));
        assert_eq!(fs::read_to_string(&target).expect("read"), "precious");
        // In a private directory a symlink is followed, as set up by its owner.
        fs::set_permissions(&d, fs::Permissions::from_mode(0o755)).expect("chmod");
        let mut log = LogFile::open(&d.join("x.log"), 0, 0).expect("followed");
        log.write(b"!").expect("write");
        assert_eq!(fs::read_to_string(&target).expect("read"), "precious!");
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn dev_null_is_never_rotated() {
        let mut log = LogFile::open(Path::new("/dev/null"), 1, 2).expect("open");
        for _ in 0..10 {
            log.write(b"abc").expect("write to a character device");
        }
        assert!(!log.rotatable);
    }

    #[test]
    fn auto_log_names_match_supervisors_cleanup_pattern() {
        assert!(is_auto_log_name("web-stdout---supervisor-ab12cd34.log", "supervisor"));
        assert!(is_auto_log_name("web-stderr---supervisor-ab12cd34.log.3", "supervisor"));
        assert!(!is_auto_log_name("web-stdout---other-ab12cd34.log", "supervisor"));
        assert!(!is_auto_log_name("---supervisor-ab12cd34.log", "supervisor"), "needs a name before ---");
        assert!(!is_auto_log_name("web.log", "supervisor"));
    }

    #[test]
    fn unique_auto_logs_are_private_and_distinct() {
        use std::os::unix::fs::PermissionsExt;
        let d = tmpdir("auto");
        let mut a = LogFile::deferred_unique(&d, "p-stdout---supervisor-", ".log", 0, 0).expect("a");
        let mut b = LogFile::deferred_unique(&d, "p-stdout---supervisor-", ".log", 0, 0).expect("b");
        assert_ne!(a.path(), b.path());
        assert!(!a.path().exists(), "created by the first output or read only");
        a.write(b"x\n").expect("write");
        b.materialize().expect("materialize");
        let mode = fs::metadata(a.path()).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(fs::read(a.path()).expect("read"), b"x\n");
        assert_eq!(fs::read(b.path()).expect("read"), b"");
        assert_eq!(cleanup_auto_logs(&d, "supervisor").expect("cleanup"), 2);
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn a_deferred_auto_log_whose_name_was_taken_gets_another_and_never_follows_a_symlink() {
        let d = tmpdir("auto-taken");
        let mut a = LogFile::deferred_unique(&d, "p-stdout---supervisor-", ".log", 0, 0).expect("a");
        let planted = a.path().to_path_buf();
        let target = d.join("target");
        fs::write(&target, b"precious").expect("target");
        std::os::unix::fs::symlink(&target, &planted).expect("symlink");
        a.write(b"output\n").expect("write");
        assert_ne!(a.path(), planted.as_path(), "moved to a new name");
        assert_eq!(fs::read(a.path()).expect("read"), b"output\n");
        assert_eq!(fs::read(&target).expect("target"), b"precious");
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn a_deferred_auto_log_needs_a_writable_directory() {
        let d = tmpdir("auto-missing");
        let missing = d.join("nope");
        let errno = |dir: &Path| LogFile::deferred_unique(dir, "p-", ".log", 0, 0).err().and_then(|e| e.raw_os_error());
        assert_eq!(errno(&missing), Some(libc::ENOENT));
        let file = d.join("file");
        fs::write(&file, b"").expect("file");
        assert_eq!(errno(&file), Some(libc::ENOTDIR));
        assert_eq!(errno(&d), None, "a writable directory");
        let _ = fs::remove_dir_all(&d);
    }
}
