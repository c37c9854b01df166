//! Compressing rotated logs (`*_logfile_compress=true`) without blocking the event loop: a
//! rotation renames `x.log` at once to a name of its own (`x.log.rotated-N`) and queues it
//! here; the loop starts `gzip -n -f x.log.rotated-N` (found on the daemon's PATH) through the
//! daemon's own spawn path, as a quiet child (stdin, stdout and stderr on /dev/null) known to
//! the loop's reaper, which hands its exit back here. gzip writes `x.log.rotated-N.gz` and
//! removes its input itself; then the backups `x.log.i.gz` move up one and it becomes
//! `x.log.1.gz`. The jobs run one at a time, in the order of the rotations, so a burst of
//! rotations lands in order (the daemon's programs keep the other cores meanwhile).
//!
//! The queue is a value of the daemon's (single) thread rather than a field of the loop: the log
//! files that rotate are owned in many places (the main log, each process's channels, the
//! control commands that rotate by hand), and none of them needs a handle to the loop this way.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::fs;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use super::spawn::{BaseEnv, SpawnPlan, Spawner};
use crate::config::LogLevel;

/// A rotated backup to compress.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Job {
    /// The log file (`x.log`).
    pub log: PathBuf,
    /// Where the rotation put its content (`x.log.rotated-N`).
    pub source: PathBuf,
    pub backups: u32,
    /// `maxbytes x backups`: what the backups may take together (0: no bound).
    pub budget: u64,
}

impl Job {
    fn source(&self) -> PathBuf {
        self.source.clone()
    }
}

#[derive(Default)]
struct State {
    /// gzip's path once looked up (at the first rotation that compresses); `Some(None)` when
    /// it is not on PATH.
    gzip: Option<Option<PathBuf>>,
    queue: VecDeque<Job>,
    running: Option<(u32, Job)>,
    /// Lines for the main log (the loop writes them: this module has no log of its own).
    notes: Vec<(LogLevel, String)>,
    /// The number of the next rotated file.
    serial: u64,
}

thread_local! {
    static STATE: RefCell<State> = RefCell::new(State::default());
}

/// The path of backup `n` of `log`: `x.log.n`, or `x.log.n.gz`.
pub fn numbered(log: &Path, n: u32, gz: bool) -> PathBuf {
    let mut s = log.as_os_str().to_owned();
    s.push(if gz { format!(".{n}.gz") } else { format!(".{n}") });
    PathBuf::from(s)
}

/// Whether backups can be compressed: gzip is on the daemon's PATH. Looked up once; when it
/// is missing, that is said once in the main log and backups are kept uncompressed.
pub fn available() -> bool {
    STATE.with(|s| {
        let mut s = s.borrow_mut();
        if s.gzip.is_none() {
            let path = std::env::var("PATH").ok();
            let found = super::spawn::resolve_command_in("gzip", path.as_deref(), &mut Default::default()).ok();
            if found.is_none() {
                s.notes.push((
                    LogLevel::Warn,
                    "gzip is not on PATH: rotated logs with *_logfile_compress=true are kept uncompressed".into(),
                ));
            }
            s.gzip = Some(found.map(|(program, _)| program));
        }
        matches!(s.gzip, Some(Some(_)))
    })
}

/// A name for the content of `log` just rotated, unique in this daemon: `x.log.rotated-N`.
pub fn staging_name(log: &Path) -> PathBuf {
    let n = STATE.with(|s| {
        let mut s = s.borrow_mut();
        s.serial += 1;
        s.serial
    });
    let mut name = log.as_os_str().to_owned();
    name.push(format!(".rotated-{n}"));
    PathBuf::from(name)
}

/// Queues a rotated file for compression.
pub fn enqueue(job: Job) {
    STATE.with(|s| s.borrow_mut().queue.push_back(job));
}

/// Whether the loop has something to do here (checked at each wakeup: one borrow).
pub fn pending() -> bool {
    STATE.with(|s| {
        let s = s.borrow();
        !s.notes.is_empty() || (s.running.is_none() && !s.queue.is_empty())
    })
}

/// Starts the next queued compression when none runs; returns the lines to log.
pub fn start_next(spawner: &Spawner, base: &Rc<BaseEnv>) -> Vec<(LogLevel, String)> {
    STATE.with(|s| {
        let mut s = s.borrow_mut();
        while s.running.is_none() {
            let Some(job) = s.queue.pop_front() else { break };
            let Some(Some(gzip)) = s.gzip.clone() else { break };
            let source = job.source();
            let Some(arg) = source.to_str() else { continue };
            let plan = SpawnPlan {
                program: gzip,
                argv: vec!["gzip".into(), "-n".into(), "-f".into(), "--".into(), arg.into()],
                base: Rc::clone(base),
                env: Vec::new(),
                directory: None,
                umask: None,
                user: None,
                redirect_stderr: true,
                stdin_socket: None,
                ready_fd: None,
                listen: Vec::new(),
                limits: Default::default(),
                cgroup: None,
            };
            match spawner.spawn_quiet(plan, "gzip") {
                Ok(pid) => s.running = Some((pid, job)),
                Err(e) => s.notes.push((LogLevel::Error, format!("cannot compress {}: {e}", source.display()))),
            }
        }
        std::mem::take(&mut s.notes)
    })
}

/// A child reaped by the loop: `None` when it is not a compressor; else what to log.
pub fn reaped(pid: u32, ok: bool, how: &str) -> Option<(LogLevel, String)> {
    let job = STATE.with(|s| {
        let mut s = s.borrow_mut();
        match &s.running {
            Some((p, _)) if *p == pid => s.running.take().map(|(_, j)| j),
            _ => None,
        }
    })?;
    let source = job.source();
    let mut gz = source.as_os_str().to_owned();
    gz.push(".gz");
    let gz = PathBuf::from(gz);
    // gzip keeps its input when it fails: that goes in as a plain backup.
    let (done, note) = if ok {
        (gz, (LogLevel::Debug, format!("compressed {} ({how})", source.display())))
    } else {
        let _ = fs::remove_file(&gz);
        let msg = format!("gzip {} failed ({how}): the backup is kept uncompressed", source.display());
        (source.clone(), (LogLevel::Error, msg))
    };
    if let Err(e) = shift_in(&job.log, job.backups, &done, ok) {
        return Some((LogLevel::Error, format!("cannot rotate {} into {}: {e}", done.display(), job.log.display())));
    }
    let removed = trim_to_budget(&job);
    let (level, mut msg) = note;
    if removed > 0 {
        msg.push_str(&format!("; removed the {removed} oldest backups to stay under maxbytes x backups"));
    }
    Some((level, msg))
}

/// The backups of a compressing log, which may be compressed or not (gzip missing for a
/// while, a failed gzip, the option just turned on): slot `i`, in either form, moves to slot
/// `i+1` (the last is dropped), then `newest` becomes `x.log.1.gz` (or `x.log.1`).
pub fn shift_in(log: &Path, backups: u32, newest: &Path, gz: bool) -> std::io::Result<()> {
    for i in (1..backups).rev() {
        if [false, true].iter().any(|&g| numbered(log, i, g).exists()) {
            for g in [false, true] {
                remove_if_exists(&numbered(log, i + 1, g))?;
            }
        }
        for g in [false, true] {
            rename_if_exists(&numbered(log, i, g), &numbered(log, i + 1, g))?;
        }
    }
    for g in [false, true] {
        remove_if_exists(&numbered(log, 1, g))?;
    }
    rename_if_exists(newest, &numbered(log, 1, gz))
}

// An external cleaner may remove files under us: ENOENT is not an error here.
fn remove_if_exists(path: &Path) -> std::io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn rename_if_exists(from: &Path, to: &Path) -> std::io::Result<()> {
    match fs::rename(from, to) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Removes the oldest backups while all of them together take more than `maxbytes x backups`
/// (compressed ones count with their compressed size); returns how many were removed.
pub fn trim_to_budget(job: &Job) -> usize {
    if job.budget == 0 {
        return 0;
    }
    let size = |p: &Path| fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let mut slots: Vec<(PathBuf, u64)> = Vec::new();
    for n in 1..=job.backups {
        for gz in [false, true] {
            let p = numbered(&job.log, n, gz);
            if p.exists() {
                let len = size(&p);
                slots.push((p, len));
            }
        }
    }
    let mut total: u64 = slots.iter().map(|s| s.1).sum();
    let mut removed = 0;
    // The newest backup stays even alone over the budget: it is the one just rotated.
    while total > job.budget && slots.len() > 1 {
        let Some((path, len)) = slots.pop() else { break };
        if fs::remove_file(&path).is_ok() {
            removed += 1;
        }
        total -= len;
    }
    removed
}

/// Test support: runs the queued jobs to completion with a plain blocking child (the unit
/// tests have no event loop).
#[cfg(test)]
pub fn run_queued_blocking() -> Vec<(LogLevel, String)> {
    let mut out = Vec::new();
    loop {
        let (job, gzip) = match STATE.with(|s| {
            let mut s = s.borrow_mut();
            let gzip = s.gzip.clone().flatten();
            s.queue.pop_front().map(|j| (j, gzip))
        }) {
            Some((job, Some(gzip))) => (job, gzip),
            Some((_, None)) => continue,
            None => break,
        };
        let status = std::process::Command::new(gzip).args(["-n", "-f", "--"]).arg(job.source()).status();
        STATE.with(|s| s.borrow_mut().running = Some((u32::MAX, job)));
        let ok = status.is_ok_and(|s| s.success());
        out.extend(reaped(u32::MAX, ok, "test"));
    }
    out.extend(STATE.with(|s| std::mem::take(&mut s.borrow_mut().notes)));
    out
}
