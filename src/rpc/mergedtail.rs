//! `GET /mergedtail?name=web&name=worker:*[&channel=stdout|stderr]` (minisv, Supervisor #246):
//! the logs of several processes in one stream, stdout and stderr of each, every line after the
//! label of the log it comes from, padded to one width:
//!
//! ```text
//! web                 | GET / 200
//! web (stderr)        | slow query
//! worker:w_0          | job 1 done
//! worker:w_0 (stderr) | retrying job 2
//! ```
//!
//! `name` takes what `minisv ctl` takes: a process (`web`, `group:name`), a group (`group:*`) or
//! `all`. The loop resolves the names once, when the stream starts ([`resolve`]): a log that
//! cannot be followed (`stdout_logfile=NONE`, syslog, a device) is named at the start of the
//! stream with the reason, and an unknown name refuses the stream (404, with lines for the client
//! to print).
//!
//! The stream keeps no file open and no log data: for each log it keeps how far it has read,
//! and it reads a file only when the socket takes more, as `/logtail` does, so a client that
//! stops reading costs nothing but that. Each log begins with its last 1024 bytes, from the first
//! whole line in them; then the logs take turns, up to 16 KiB each, so that a busy program
//! does not hold the others back. The lines of one log keep their order; between logs, lines
//! come in the order the daemon wrote them as far as the client keeps up: new lines are looked
//! for after each wake-up of the loop (the one that wrote them), as `/logtail` does; but with
//! more than 16 logs, once a look at every log (a `stat` each) found nothing, the next waits
//! 100 µs per log, so that `tail -f all` of hundreds of programs in a busy daemon costs a few
//! percent of a CPU, not a third of one (measured: 402 logs, 100 wake-ups a second).
//!
//! A line is sent whole: what follows the last newline of a log waits for the rest of its line,
//! for at most [`HOLD`] (a prompt, a last line without newline) or [`MAX_LINE`] bytes. Then it is
//! sent as it is and its line stays open: the rest follows directly, unless a line of another
//! log comes first, which ends the open line (the rest then gets a label of its own).
//!
//! Truncation and rotation are followed as `/logtail` follows them: a shorter file is announced
//! with `==> File truncated <==` and read from its start; a new file at the path is read from its
//! start, after the rest of the old one, which minisv's rotation renamed to `<path>.1`.

use std::collections::HashSet;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::host::Host;
use crate::config::Channel;
use crate::supervisor::namespec;
use crate::supervisor::ProcId;

/// Each log begins with this much of its end (as `/logtail` does), from its first whole line.
const INITIAL_TAIL: u64 = 1024;
/// The most read from one log at once.
const READ_CHUNK: usize = 16 * 1024;
/// A line without its end is held back at most this long ...
pub const HOLD: Duration = Duration::from_millis(500);
/// ... and at most this long (then it is sent in pieces). Half of `READ_CHUNK`, so that a read
/// always sends something.
pub const MAX_LINE: usize = READ_CHUNK / 2;
/// One piece of the stream takes no further line from its log once it is this long.
const OUT_BUDGET: usize = 16 * 1024;
/// After a look at every log found nothing, the next look waits this long per log (at most
/// `MAX_SCAN_EVERY`): a `stat` costs a few microseconds, so following many logs costs a few
/// percent of a CPU at most, however often the daemon wakes up ...
const SCAN_EVERY_PER_LOG: Duration = Duration::from_micros(100);
const MAX_SCAN_EVERY: Duration = Duration::from_millis(250);
/// ... but up to this many logs are looked at after every wake-up, as `/logtail` is: such a
/// look costs less than the extra wake-up that putting it off would (measured with 2 logs:
/// 8 times the wake-ups and 4 times the CPU when put off by 200 µs).
const LOOK_ALWAYS: usize = 16;

/// One log of the stream, as the loop found it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MergedSource {
    pub namespec: String,
    pub channel: Channel,
    /// The file to follow, or why there is none.
    pub log: Result<PathBuf, String>,
}

/// Whether `names` ask for several logs: more than one, a group (`group:*`) or `all`. One
/// process is Supervisor's `/logtail` (and its tail page).
pub fn several<S: AsRef<str>>(names: &[S]) -> bool {
    names.len() > 1
        || names.iter().any(|n| {
            let n = n.as_ref();
            n == "all" || namespec::split(n).1.is_none()
        })
}

/// The logs of `names` (each `all`, `group:*` or a process), stdout and stderr of each process
/// unless `channel` names one, in the order given, groups and `all` in `status` order, each
/// process once. Err: the lines saying which names are unknown, as `minisv ctl` prints them.
pub fn resolve(host: &mut dyn Host, names: &[String], channel: Option<&str>) -> Result<Vec<MergedSource>, String> {
    let only = match channel {
        None | Some("") => None,
        Some("stdout") => Some(Channel::Stdout),
        Some("stderr") => Some(Channel::Stderr),
        Some(other) => return Err(format!("Error: bad channel {}\n", crate::config::ini::py_repr(other))),
    };
    if names.is_empty() {
        return Err("Error: no process name given\n".into());
    }
    let sup = host.sup();
    let mut ids: Vec<ProcId> = Vec::new();
    let mut errors = String::new();
    // `status` order: by group, then by name.
    let sorted = |ids: &mut dyn Iterator<Item = ProcId>| {
        let mut v: Vec<(String, String, ProcId)> =
            ids.filter_map(|id| sup.process(id).map(|p| (p.group.clone(), p.name().to_string(), id))).collect();
        v.sort();
        v.into_iter().map(|(_, _, id)| id).collect::<Vec<_>>()
    };
    for name in names {
        if name == "all" {
            ids.extend(sorted(&mut sup.processes().map(|(id, _)| id)));
            continue;
        }
        match namespec::split(name) {
            (group, None) => match sup.group(group) {
                Some(g) => ids.extend(sorted(&mut g.members.iter().copied())),
                None => errors.push_str(&format!("{group}: ERROR (no such group)\n")),
            },
            (group, Some(process)) => match sup.find(group, process) {
                Some(id) => ids.push(id),
                // Supervisor reads a bare name as `name:name`: say how to name the group.
                None if !name.contains(':') && sup.group(group).is_some() => {
                    errors.push_str(&format!("{name}: ERROR (no such process; the group is {name}:*)\n"))
                }
                None => errors.push_str(&format!("{name}: ERROR (no such process)\n")),
            },
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let mut once = HashSet::new();
    ids.retain(|id| once.insert(*id));
    if ids.is_empty() {
        return Err("Error: no process to follow\n".into());
    }
    let channels: &[Channel] = match only {
        Some(Channel::Stdout) => &[Channel::Stdout],
        Some(Channel::Stderr) => &[Channel::Stderr],
        None => &[Channel::Stdout, Channel::Stderr],
    };
    let mut out = Vec::with_capacity(ids.len() * channels.len());
    for id in ids {
        for &channel in channels {
            let Some(p) = host.sup().process(id) else { continue };
            let namespec = namespec::make(&p.group, p.name());
            let redirected = channel == Channel::Stderr && p.config.redirect_stderr;
            let syslog = match channel {
                Channel::Stdout => p.config.stdout.syslog,
                Channel::Stderr => p.config.stderr.syslog,
            };
            let log = match host.log_path(id, channel) {
                // Its stderr is in its stdout log: nothing is missing.
                None if redirected && only.is_none() => continue,
                None if redirected => Err("no stderr log: redirect_stderr=true sends it to stdout".to_string()),
                None if syslog => Err("no log file: it goes to syslog".to_string()),
                None => Err("no log file".to_string()),
                Some(path) => match host.readable_log_path(id, channel) {
                    Some(p) if std::fs::metadata(&p).is_ok_and(|m| m.is_file()) => Ok(p),
                    Some(p) => Err(format!("not a regular file: {}", p.display())),
                    None => Err(format!("cannot open {}", path.display())),
                },
            };
            out.push(MergedSource { namespec, channel, log });
        }
    }
    Ok(out)
}

/// Which file a log is (so that a rotation, which puts another file at the path, is seen).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileId {
    pub dev: u64,
    pub ino: u64,
}

/// The file system as the stream reads it (the tests give it files in memory).
pub trait Files {
    /// The identity and size of the regular file at `path`; None if there is none.
    fn stat(&self, path: &Path) -> Option<(FileId, u64)>;
    /// Reads the file at `path` from `pos`, if it still is `id`: how many bytes (0 at its end, or
    /// when another file is there now).
    fn read_at(&self, path: &Path, id: FileId, pos: u64, buf: &mut [u8]) -> usize;
}

/// The real files, opened for each read and closed after it: a stream of a thousand logs holds
/// no descriptor that the daemon needs for its programs.
pub struct Disk;

impl Files for Disk {
    fn stat(&self, path: &Path) -> Option<(FileId, u64)> {
        let m = std::fs::metadata(path).ok()?;
        m.is_file().then(|| (FileId { dev: m.dev(), ino: m.ino() }, m.len()))
    }

    fn read_at(&self, path: &Path, id: FileId, pos: u64, buf: &mut [u8]) -> usize {
        let Ok(file) = crate::sys::open_regular(path) else { return 0 };
        match file.metadata() {
            Ok(m) if m.dev() == id.dev && m.ino() == id.ino => {}
            _ => return 0,
        }
        // Bounded: a signal interrupts a read at most once per signal.
        for _ in 0..16 {
            match file.read_at(buf, pos) {
                Ok(n) => return n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => return 0,
            }
        }
        0
    }
}

/// Where a rotated log's previous file is (minisv's and Supervisor's rotation).
fn backup_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(".1");
    PathBuf::from(s)
}

/// One log of a stream: where it is read up to, and nothing of its content.
struct Log {
    /// `label | `, padded to the stream's width.
    label: Vec<u8>,
    path: PathBuf,
    /// The file being read; None before the first look, or when there was none.
    id: Option<FileId>,
    started: bool,
    /// The file is read at `<path>.1`: the rest of a file that was rotated away.
    backup: bool,
    /// Sent up to here.
    pos: u64,
    /// Looked at up to here: `pos..seen` is the start of a line still without its end.
    seen: u64,
    /// Since when that line waits.
    held_since: Option<Instant>,
}

/// A `/mergedtail` stream.
pub struct MergedTail {
    logs: Vec<Log>,
    /// The notes about logs that cannot be followed, sent first.
    intro: Vec<u8>,
    /// The log whose turn is next.
    next: usize,
    /// The log whose line was sent without its end, if the stream ends in the middle of it.
    open: Option<usize>,
    /// When a look at every log last found nothing.
    idle_since: Option<Instant>,
    /// A look was put off (see `SCAN_EVERY_PER_LOG`): one is due at `idle_since` + the pause.
    put_off: bool,
}

/// The label of a log: its namespec, with `(stderr)` for stderr.
pub fn label(namespec: &str, channel: Channel) -> String {
    match channel {
        Channel::Stdout => namespec.to_string(),
        Channel::Stderr => format!("{namespec} (stderr)"),
    }
}

impl MergedTail {
    pub fn new(sources: Vec<MergedSource>) -> MergedTail {
        let labels: Vec<String> = sources.iter().map(|s| label(&s.namespec, s.channel)).collect();
        let width = labels.iter().map(|l| l.chars().count()).max().unwrap_or(0);
        let mut logs = Vec::new();
        let mut intro = Vec::new();
        for (s, l) in sources.into_iter().zip(labels) {
            let label = format!("{l:<width$} | ").into_bytes();
            match s.log {
                Ok(path) => logs.push(Log {
                    label,
                    path,
                    id: None,
                    started: false,
                    backup: false,
                    pos: 0,
                    seen: 0,
                    held_since: None,
                }),
                Err(why) => {
                    intro.extend_from_slice(&label);
                    intro.extend_from_slice(format!("==> {why} <==\n").as_bytes());
                }
            }
        }
        MergedTail { logs, intro, next: 0, open: None, idle_since: None, put_off: false }
    }

    /// How long after a fruitless look at every log the next one waits.
    fn pause(&self) -> Duration {
        if self.logs.len() <= LOOK_ALWAYS {
            return Duration::ZERO;
        }
        (SCAN_EVERY_PER_LOG * self.logs.len() as u32).min(MAX_SCAN_EVERY)
    }

    /// How many logs the stream follows.
    pub fn len(&self) -> usize {
        self.logs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.logs.is_empty()
    }

    /// When the stream has something to do though no log grew: a line held back is due to be
    /// sent without its end, or a look that was put off.
    pub fn deadline(&self) -> Option<Instant> {
        let held = self.logs.iter().filter_map(|l| l.held_since).min().map(|t| t + HOLD);
        let look = self.idle_since.filter(|_| self.put_off).map(|t| t + self.pause());
        [held, look].into_iter().flatten().min()
    }

    /// Appends the next piece of the stream to `out`: the notes, or what one log has that is
    /// due (the logs in turn, beginning after the last one that had something). Nothing is
    /// appended when no log has anything. `buf` is room to read into, at least `READ_CHUNK`
    /// long for whole reads.
    pub fn next_piece(&mut self, files: &dyn Files, buf: &mut [u8], now: Instant, out: &mut Vec<u8>) {
        if !self.intro.is_empty() {
            out.append(&mut self.intro);
            self.intro = Vec::new();
            return;
        }
        if self.idle_since.is_some_and(|t| now < t + self.pause()) {
            self.put_off = true;
            return;
        }
        let n = self.logs.len();
        for k in 0..n {
            let i = (self.next + k) % n;
            let before = out.len();
            self.step(i, files, buf, now, out);
            if out.len() > before {
                self.next = (i + 1) % n;
                return;
            }
        }
        self.idle_since = Some(now);
        self.put_off = false;
    }

    /// Sends every line held back as it is, and ends the open line (the end of a snapshot).
    pub fn finish(&mut self, files: &dyn Files, buf: &mut [u8], out: &mut Vec<u8>) {
        for i in 0..self.logs.len() {
            if self.logs[i].seen > self.logs[i].pos {
                self.flush(i, files, buf, out);
            }
        }
        if self.open.take().is_some() {
            out.push(b'\n');
        }
    }

    /// Starts text of log `i`: ends another log's open line, and puts the label unless the
    /// text continues log `i`'s own open line. The line is no longer open afterwards.
    fn begin(&mut self, i: usize, out: &mut Vec<u8>) {
        match self.open.take() {
            Some(j) if j == i => {}
            Some(_) => {
                out.push(b'\n');
                out.extend_from_slice(&self.logs[i].label);
            }
            None => out.extend_from_slice(&self.logs[i].label),
        }
    }

    /// Sends log `i`'s held line as far as it goes; the line stays open.
    fn flush(&mut self, i: usize, files: &dyn Files, buf: &mut [u8], out: &mut Vec<u8>) {
        let log = &mut self.logs[i];
        let held = ((log.seen - log.pos) as usize).min(buf.len());
        log.held_since = None;
        let (Some(id), true) = (log.id, held > 0) else { return };
        let path = if log.backup { backup_path(&log.path) } else { log.path.clone() };
        let n = files.read_at(&path, id, log.pos, &mut buf[..held]);
        if n == 0 {
            return;
        }
        log.pos += n as u64;
        log.seen = log.seen.max(log.pos);
        self.begin(i, out);
        out.extend_from_slice(&buf[..n]);
        self.open = Some(i);
    }

    /// Looks at log `i`: follows a truncation or rotation, sends its new whole lines (or a line
    /// held long enough), and holds back the start of a line without its end.
    fn step(&mut self, i: usize, files: &dyn Files, buf: &mut [u8], now: Instant, out: &mut Vec<u8>) {
        let before = out.len();
        // Bounded: at most a switch to the rotated file and one to the new file.
        for _ in 0..3 {
            let log = &mut self.logs[i];
            // The look at an idle log: one stat, nothing allocated.
            let found = if log.backup { files.stat(&backup_path(&log.path)) } else { files.stat(&log.path) };
            if !log.started {
                log.started = true;
                if let Some((id, size)) = found {
                    log.id = Some(id);
                    log.pos = first_line_of_end(files, &log.path, id, size, buf);
                    log.seen = log.pos;
                }
            }
            let (id, size) = match found {
                Some(f) => f,
                // The rotated file is gone: on to the new one (what was held of it is lost).
                None if log.backup => {
                    log.backup = false;
                    log.id = None;
                    continue;
                }
                // No file now (between a clear's removal and its reopening, or never made).
                None => return,
            };
            if log.id != Some(id) {
                if log.backup {
                    // Rotated once more: the new file at the path is what is left to follow.
                    log.backup = false;
                    log.id = None;
                    continue;
                }
                if let Some(old) = log.id {
                    if files.stat(&backup_path(&log.path)).is_some_and(|(b, _)| b == old) {
                        // The rest of the old file first.
                        log.backup = true;
                        continue;
                    }
                }
                // A new file (cleared, or rotated away beyond reach): from its start.
                log.id = Some(id);
                log.pos = 0;
                log.seen = 0;
                log.held_since = None;
            }
            if size < log.seen {
                log.pos = 0;
                log.seen = 0;
                log.held_since = None;
                self.begin(i, out);
                out.extend_from_slice(b"==> File truncated <==\n");
                return;
            }
            if size == log.seen {
                if log.backup {
                    // The rotated file is read to its end: its last line stays open for the
                    // new file to continue, which is read from its start.
                    self.flush(i, files, buf, out);
                    let log = &mut self.logs[i];
                    log.backup = false;
                    log.id = None;
                    log.pos = 0;
                    log.seen = 0;
                    if out.len() == before {
                        continue;
                    }
                    return;
                }
                if log.held_since.is_some_and(|t| now >= t + HOLD) {
                    self.flush(i, files, buf, out);
                }
                return;
            }
            self.read_lines(i, id, size, files, buf, now, out);
            return;
        }
    }

    /// Sends the whole lines of log `i` past its position (up to the budget of a piece), and
    /// holds back or cuts what has no end yet.
    #[allow(clippy::too_many_arguments)]
    fn read_lines(
        &mut self,
        i: usize,
        id: FileId,
        size: u64,
        files: &dyn Files,
        buf: &mut [u8],
        now: Instant,
        out: &mut Vec<u8>,
    ) {
        let log = &self.logs[i];
        let start = log.pos;
        let want = ((size - start) as usize).min(READ_CHUNK).min(buf.len());
        let n = if log.backup {
            files.read_at(&backup_path(&log.path), id, start, &mut buf[..want])
        } else {
            files.read_at(&log.path, id, start, &mut buf[..want])
        };
        if n == 0 {
            return;
        }
        let mut used = 0;
        let mut budget_left = true;
        while let Some(k) = buf[used..n].iter().position(|&b| b == b'\n') {
            if out.len() >= OUT_BUDGET {
                budget_left = false;
                break;
            }
            self.begin(i, out);
            out.extend_from_slice(&buf[used..used + k + 1]);
            used += k + 1;
        }
        let grown = used == 0;
        if budget_left && n - used >= MAX_LINE {
            // A line too long to hold: sent as far as it goes, and left open.
            self.begin(i, out);
            out.extend_from_slice(&buf[used..n]);
            self.open = Some(i);
            used = n;
        }
        let log = &mut self.logs[i];
        log.pos = start + used as u64;
        // Over budget, the rest is read again next time.
        log.seen = if budget_left { start + n as u64 } else { log.pos };
        log.held_since = match (log.seen > log.pos, grown) {
            (false, _) => None,
            // The same line, longer now: it waits since it began.
            (true, true) => Some(log.held_since.unwrap_or(now)),
            (true, false) => Some(now),
        };
    }
}

/// Where a log's stream begins: the first whole line of its last `INITIAL_TAIL` bytes (where
/// they begin, if they hold no newline; 0 for a short file).
fn first_line_of_end(files: &dyn Files, path: &Path, id: FileId, size: u64, buf: &mut [u8]) -> u64 {
    let start = size.saturating_sub(INITIAL_TAIL);
    if start == 0 {
        return 0;
    }
    let want = ((size - start) as usize).min(buf.len());
    let n = files.read_at(path, id, start, &mut buf[..want]);
    match buf[..n].iter().position(|&b| b == b'\n') {
        Some(k) => start + k as u64 + 1,
        None => start,
    }
}

/// The beginning of the stream of `sources` as it would be now, every held line sent, at
/// most about `limit` bytes: what the web page shows before it follows the stream.
pub fn snapshot(sources: Vec<MergedSource>, limit: usize) -> Vec<u8> {
    let mut tail = MergedTail::new(sources);
    let mut buf = vec![0; READ_CHUNK];
    let mut out = Vec::new();
    let now = Instant::now();
    // Bounded: every piece moves a log forward, and the files do not grow meanwhile (only the
    // loop, which runs this, writes them).
    for _ in 0..(tail.len() * 4 + 8) {
        let before = out.len();
        tail.next_piece(&Disk, &mut buf, now, &mut out);
        if out.len() == before || out.len() >= limit {
            break;
        }
    }
    tail.finish(&Disk, &mut buf, &mut out);
    out
}

#[cfg(test)]
mod tests;
