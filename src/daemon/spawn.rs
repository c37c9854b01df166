//! Starting a child (reference 2.3): resolve the command in the parent, prepare everything
//! that needs allocation before the clone, and keep the child side to plain system calls.
//!
//! The child is started with clone(CLONE_VM | CLONE_VFORK | CLONE_FILES) on a stack mapped
//! once: it shares the daemon's memory until it execs, while the daemon's thread waits (no page
//! tables copied), and copies only the first few fds of the daemon's fd table (`Slots`).
//! It gets fds 0-2 only (everything else is marked close-on-exec: fix of Q7), default signal
//! dispositions and an empty mask, its own process group, then supplementary groups, gid and
//! uid, the directory and the umask. A failure in the child is reported to the parent as (step,
//! errno) in the memory they share, so the parent can say which step failed.

use std::ffi::{CString, OsString};
use std::fs;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, AtomicU8, Ordering};

use crate::sys;

/// Why a command cannot be started, found in the parent before fork.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CommandError {
    /// `can't find command 'x'` (the RPC answers NO_FILE).
    NotFound(String),
    /// `command at 'x' is a directory`, `... is not executable`, `can't parse command`,
    /// `command is empty`, `no permission to run command 'x'` (NOT_EXECUTABLE).
    NotExecutable(String),
}

impl CommandError {
    pub fn message(&self) -> &str {
        match self {
            CommandError::NotFound(m) | CommandError::NotExecutable(m) => m,
        }
    }
}

/// Python's `repr()` of a string, used in Supervisor's messages (one implementation).
pub use crate::config::ini::py_repr;

/// Python's `shlex.split(s)` (POSIX mode, no comments).
pub fn shlex_split(s: &str) -> Result<Vec<String>, &'static str> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' | '\n' | '\r' => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err("No closing quotation"),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('\\' | '"')) => word.push(c),
                            Some(c) => {
                                word.push('\\');
                                word.push(c);
                            }
                            None => return Err("No closing quotation"),
                        },
                        Some(c) => word.push(c),
                        None => return Err("No closing quotation"),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some(c) => word.push(c),
                    None => return Err("No escaped character"),
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

/// Splits `command` and finds the program as Supervisor does: a name with a `/` is used as is,
/// otherwise each directory of `path` (the program's PATH, or ours, or a default) is tried.
pub fn resolve_command(command: &str, path: Option<&str>) -> Result<(PathBuf, Vec<String>), CommandError> {
    let argv = shlex_split(command)
        .map_err(|e| CommandError::NotExecutable(format!("can't parse command {}: {}", py_repr(command), e)))?;
    let Some(program) = argv.first() else {
        return Err(CommandError::NotExecutable("command is empty".into()));
    };
    let found = if program.contains('/') {
        let p = PathBuf::from(program);
        fs::metadata(&p).ok().map(|m| (p, m))
    } else {
        let search = path.unwrap_or("/bin:/usr/bin:/usr/local/bin");
        search.split(':').find_map(|dir| {
            let p = Path::new(dir).join(program);
            fs::metadata(&p).ok().map(|m| (p, m))
        })
    };
    let Some((file, meta)) = found else {
        return Err(CommandError::NotFound(format!("can't find command {}", py_repr(program))));
    };
    let shown = file.display().to_string();
    if meta.is_dir() {
        return Err(CommandError::NotExecutable(format!("command at {} is a directory", py_repr(&shown))));
    }
    if meta.permissions().mode() & 0o111 == 0 {
        return Err(CommandError::NotExecutable(format!("command at {} is not executable", py_repr(&shown))));
    }
    let c = CString::new(file.as_os_str().as_bytes())
        .map_err(|_| CommandError::NotExecutable(format!("can't parse command {}: NUL byte", py_repr(command))))?;
    if sys::access_x(&c).is_err() {
        return Err(CommandError::NotExecutable(format!("no permission to run command {}", py_repr(&shown))));
    }
    Ok((file, argv))
}

/// The daemon's environment as `KEY=VALUE` C strings, made once: every child's environment
/// starts from it, and only what a program sets on top is made per spawn (building the whole
/// environment for each child was a seventh of the daemon's CPU starting 1000 programs).
pub struct BaseEnv {
    /// Each variable with the length of its key.
    vars: Vec<(CString, usize)>,
}

impl BaseEnv {
    pub fn new(vars: impl IntoIterator<Item = (OsString, OsString)>) -> BaseEnv {
        let vars = vars
            .into_iter()
            // The environment cannot hold a NUL; skip rather than fail every spawn.
            .filter_map(|(k, v)| Some((env_var(&k, &v)?, k.len())))
            .collect();
        BaseEnv { vars }
    }

    fn keys_and_vars(&self) -> impl Iterator<Item = (&[u8], &CString)> {
        self.vars.iter().map(|(kv, n)| (&kv.as_bytes()[..*n], kv))
    }
}

/// `KEY=VALUE` as a C string; None if either holds a NUL.
fn env_var(k: &OsString, v: &OsString) -> Option<CString> {
    let mut kv = Vec::with_capacity(k.len() + v.len() + 1);
    kv.extend_from_slice(k.as_bytes());
    kv.push(b'=');
    kv.extend_from_slice(v.as_bytes());
    CString::new(kv).ok()
}

/// A child's `envp`: the variables of `base` that `set` does not set, then those of `set`, the
/// last of each key only, in the order of those last ones. The pointers point into `base` and
/// into the returned strings, which must outlive them. Err: a key whose variable has a NUL.
fn compose_env(
    base: &BaseEnv,
    set: &[(OsString, OsString)],
) -> Result<(Vec<CString>, Vec<*const libc::c_char>), OsString> {
    let last = |i: usize, k: &OsString| !set[i + 1..].iter().any(|(later, _)| later == k);
    let mut extra = Vec::with_capacity(set.len());
    for (i, (k, v)) in set.iter().enumerate() {
        if !last(i, k) {
            continue;
        }
        extra.push(env_var(k, v).ok_or_else(|| k.clone())?);
    }
    let overridden = |key: &[u8]| set.iter().any(|(k, _)| k.as_bytes() == key);
    let envp = base
        .keys_and_vars()
        .filter(|(key, _)| !overridden(key))
        .map(|(_, kv)| kv.as_ptr())
        .chain(extra.iter().map(|kv| kv.as_ptr()))
        .chain(std::iter::once(std::ptr::null()))
        .collect();
    Ok((extra, envp))
}

/// Everything the child needs, prepared in the parent.
pub struct SpawnPlan<'a> {
    pub program: PathBuf,
    pub argv: Vec<String>,
    /// The child's environment: `base` with `env` set on top, in order (a later one wins).
    pub base: &'a BaseEnv,
    pub env: Vec<(OsString, OsString)>,
    pub directory: Option<String>,
    pub umask: Option<u32>,
    /// (uid, gid, supplementary groups) to switch to.
    pub user: Option<(u32, u32, Vec<u32>)>,
    pub redirect_stderr: bool,
    /// For fcgi-program: the listening socket becomes fd 0 (no stdin pipe).
    pub stdin_socket: Option<OwnedFd>,
    /// `ready_fd=N`: a pipe whose write end is the child's fd N.
    pub ready_fd: Option<i32>,
}

/// The parent's ends of a spawned child's pipes (all non-blocking).
pub struct Spawned {
    pub pid: u32,
    pub stdin: Option<OwnedFd>,
    pub stdout: OwnedFd,
    pub stderr: Option<OwnedFd>,
    /// The read end of the `ready_fd` pipe.
    pub ready: Option<OwnedFd>,
}

// Steps reported by the child when it fails before exec.
const STEP_SIGNALS: u8 = 1;
const STEP_GROUPS: u8 = 2;
const STEP_GID: u8 = 3;
const STEP_UID: u8 = 4;
const STEP_CHDIR: u8 = 5;
const STEP_FDS: u8 = 6;
const STEP_PGID: u8 = 7;
const STEP_EXEC: u8 = 8;

/// What the child reads between clone and exec, all prepared by the parent (the child shares
/// the parent's memory and must not allocate), and where it reports a failure.
struct ChildSpec {
    path: CString,
    argv: Vec<*const libc::c_char>,
    envp: Vec<*const libc::c_char>,
    /// The fds that become the child's 0, 1 and 2.
    stdio: [RawFd; 3],
    /// (uid, gid) to switch to, after `groups`.
    user: Option<(libc::uid_t, libc::gid_t)>,
    groups: Vec<libc::gid_t>,
    directory: Option<CString>,
    umask: Option<libc::mode_t>,
    /// (the write end of the readiness pipe, the fd number the program expects it at).
    ready: Option<(RawFd, RawFd)>,
    /// Nonzero: the child starts on the daemon's fd table and keeps a copy of the fds below
    /// this one (`Slots`).
    keep_below: RawFd,
    /// The child takes its fd table with unshare(CLONE_FILES), as on a kernel without
    /// close_range (tests only).
    unshare_only: bool,
    /// Set by a child that fails: the step and the errno.
    failed_step: AtomicU8,
    failed_errno: AtomicI32,
}

/// Forks and execs. An error message says which step failed, as Supervisor's child does
/// (`couldn't chdir to /x: ENOENT`, `couldn't exec /x: EACCES`, `too many open files ...`).
pub fn spawn(plan: SpawnPlan<'_>, name: &str) -> Result<Spawned, String> {
    let pipe_err = |e: io::Error| {
        if e.raw_os_error() == Some(libc::EMFILE) || e.raw_os_error() == Some(libc::ENFILE) {
            format!("too many open files to spawn {}", py_repr(name))
        } else {
            format!(
                "unknown error making dispatchers for {}: {}",
                py_repr(name),
                sys::errno_str(e.raw_os_error().unwrap_or(0))
            )
        }
    };
    let arg0 = plan.argv.first().map_or("", String::as_str);
    let nul = |what: &str| format!("couldn't exec {arg0}: {what} contains a NUL byte");
    // Everything the child uses is prepared here: nothing is allocated after the clone.
    let path = CString::new(plan.program.as_os_str().as_bytes()).map_err(|_| nul("the command"))?;
    let argv: Vec<CString> = plan
        .argv
        .iter()
        .map(|a| CString::new(a.as_bytes()))
        .collect::<Result<_, _>>()
        .map_err(|_| nul("an argument"))?;
    let (_extra, envp) =
        compose_env(plan.base, &plan.env).map_err(|k| nul(&format!("environment variable {}", k.to_string_lossy())))?;
    let directory = match &plan.directory {
        Some(d) => {
            Some(CString::new(d.as_bytes()).map_err(|_| format!("directory {} contains a NUL byte", py_repr(d)))?)
        }
        None => None,
    };

    let stdin_pipe = if plan.stdin_socket.is_none() { Some(sys::pipe().map_err(pipe_err)?) } else { None };
    let (out_r, out_w) = sys::pipe().map_err(pipe_err)?;
    let err_pipe = if plan.redirect_stderr { None } else { Some(sys::pipe().map_err(pipe_err)?) };
    let ready_pipe = match plan.ready_fd {
        Some(_) => Some(sys::pipe().map_err(pipe_err)?),
        None => None,
    };
    let (stdin_r, stdin_w) = stdin_pipe.unzip();
    let (err_r, err_w) = err_pipe.unzip();
    // The daemon's ends are made non-blocking before the child exists, so that no error after
    // it has started can report a running child as a failed start. (Each end is its own open
    // file: the child's ends stay blocking.)
    let ours = [Some(&out_r), err_r.as_ref(), stdin_w.as_ref(), ready_pipe.as_ref().map(|(r, _)| r)];
    for fd in ours.into_iter().flatten() {
        sys::set_nonblocking(fd.as_raw_fd()).map_err(pipe_err)?;
    }
    // The child's ends: closed here once the child has them.
    let child_stdin = stdin_r.or(plan.stdin_socket);
    let stdio = [
        child_stdin.as_ref().map_or(-1, |fd| fd.as_raw_fd()),
        out_w.as_raw_fd(),
        err_w.as_ref().unwrap_or(&out_w).as_raw_fd(),
    ];

    let mut spec = ChildSpec {
        argv: argv.iter().map(|a| a.as_ptr()).chain(std::iter::once(std::ptr::null())).collect(),
        envp,
        path,
        stdio,
        user: plan.user.as_ref().map(|u| (u.0 as libc::uid_t, u.1 as libc::gid_t)),
        groups: plan.user.as_ref().map(|u| u.2.iter().map(|g| *g as libc::gid_t).collect()).unwrap_or_default(),
        directory,
        umask: plan.umask.map(|m| m as libc::mode_t),
        ready: ready_pipe.as_ref().zip(plan.ready_fd).map(|((_, w), n)| (w.as_raw_fd(), n)),
        keep_below: 0,
        unshare_only: test_paths().without_close_range,
        failed_step: AtomicU8::new(0),
        failed_errno: AtomicI32::new(0),
    };
    let pid = clone_and_exec(&mut spec).map_err(|errno| match errno {
        libc::EAGAIN => format!("Too many processes in process table to spawn {}", py_repr(name)),
        n => format!("couldn't fork {}: {}", py_repr(name), sys::errno_str(n)),
    })?;
    drop((child_stdin, out_w, err_w));
    let step = spec.failed_step.load(Ordering::Acquire);
    if step != 0 {
        // The child has exited (status 127): reap it here, so the loop never sees an unknown pid.
        let mut status = 0;
        // SAFETY: waitpid on our own child with a valid status pointer.
        while unsafe { libc::waitpid(pid, &mut status, 0) } == -1
            && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted
        {}
        let en = sys::errno_str(spec.failed_errno.load(Ordering::Acquire));
        return Err(match step {
            STEP_SIGNALS => format!("couldn't reset signals: {en}"),
            STEP_GROUPS => format!("Could not set groups of effective user: {en}"),
            STEP_GID => format!("Could not set group id of effective user: {en}"),
            STEP_UID => format!("couldn't setuid to {}: {en}", user_uid(&plan.user)),
            STEP_CHDIR => format!("couldn't chdir to {}: {en}", plan.directory.as_deref().unwrap_or("")),
            STEP_FDS => format!("couldn't set up file descriptors: {en}"),
            STEP_PGID => format!("couldn't set the process group: {en}"),
            _ => format!("couldn't exec {arg0}: {en}"),
        });
    }
    Ok(Spawned { pid: pid as u32, stdin: stdin_w, stdout: out_r, stderr: err_r, ready: ready_pipe.map(|(r, _)| r) })
}

fn user_uid(user: &Option<(u32, u32, Vec<u32>)>) -> u32 {
    user.as_ref().map(|u| u.0).unwrap_or(0)
}

/// The stack the child runs on until exec, mapped once; below it a page that is never
/// accessible, so an overflow faults instead of writing over the daemon's memory.
const CHILD_STACK: usize = 64 * 1024;
const GUARD: usize = 4096;

/// What every spawn reuses: the child's stack and the fd slots.
struct Spawner {
    /// The lowest address of the stack mapping (its guard page).
    stack: usize,
    slots: Option<Slots>,
}

/// Low-numbered fds, reserved at startup, where the parent puts a child's ends for the clone.
///
/// The child starts sharing the daemon's fd table (CLONE_FILES) and takes a copy of only the fds
/// below `end` (close_range with CLOSE_RANGE_UNSHARE): with 1000 programs the daemon holds 3000
/// pipe ends, and a child that copied the whole table took a reference on each and closed each
/// again at exec (flushing every one: a third of the CPU a `sleep` child needs to start). Each
/// slot always holds an fd (`/dev/null` when idle), so no other thread's open() ever gets its
/// number.
struct Slots {
    idle: OwnedFd,
    /// stdin, stdout, stderr, readiness.
    fds: [OwnedFd; 4],
    /// One above the highest slot: the child keeps the fds below it.
    end: RawFd,
    /// The slots holding a child's end now (bit i: slot i).
    busy: std::cell::Cell<u8>,
}

impl Slots {
    fn reserve() -> io::Result<Slots> {
        let devnull = fs::File::open("/dev/null")?;
        let low = |fd: RawFd| -> io::Result<OwnedFd> {
            // SAFETY: F_DUPFD_CLOEXEC on an fd we own returns a new fd that we then own.
            let n = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) };
            if n == -1 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: `n` was just returned by fcntl and is owned by nobody else.
            Ok(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(n) })
        };
        let idle = low(devnull.as_raw_fd())?;
        let fds = [low(idle.as_raw_fd())?, low(idle.as_raw_fd())?, low(idle.as_raw_fd())?, low(idle.as_raw_fd())?];
        let end = fds.iter().map(|f| f.as_raw_fd()).max().unwrap_or(2) + 1;
        Ok(Slots { idle, fds, end, busy: std::cell::Cell::new(0) })
    }

    /// Puts `fd` in slot `i` (close-on-exec); the slot's previous fd is closed.
    fn put(&self, i: usize, fd: RawFd) -> io::Result<RawFd> {
        let slot = self.fds[i].as_raw_fd();
        // SAFETY: dup3 onto a slot we own: it replaces the slot's open file, nothing else.
        if unsafe { libc::dup3(fd, slot, libc::O_CLOEXEC) } == -1 {
            return Err(io::Error::last_os_error());
        }
        self.busy.set(self.busy.get() | 1 << i);
        Ok(slot)
    }

    /// Gives the slots in use back their idle fd, closing the child's ends held there.
    fn clear(&self) {
        for i in 0..self.fds.len() {
            if self.busy.get() & 1 << i != 0 {
                // Cannot fail: both fds are ours and open, and the slot is never being allocated.
                let _ = self.put(i, self.idle.as_raw_fd());
            }
        }
        self.busy.set(0);
    }
}

static SPAWNER: std::sync::Mutex<Option<Spawner>> = std::sync::Mutex::new(None);

fn spawner() -> std::sync::MutexGuard<'static, Option<Spawner>> {
    SPAWNER.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Reserves the fd slots while the daemon's fd numbers are still low (at startup, before any
/// listener, log or child pipe). Without them (no `/dev/null`), each child copies the whole fd
/// table, as before. Returns the reason when they could not be reserved.
pub fn reserve_fd_slots() -> Option<String> {
    let mut sp = spawner();
    if sp.as_ref().is_some_and(|s| s.slots.is_some()) {
        return None;
    }
    match Slots::reserve() {
        Ok(slots) => {
            match sp.as_mut() {
                Some(s) => s.slots = Some(slots),
                None => *sp = Some(Spawner { stack: 0, slots: Some(slots) }),
            }
            None
        }
        Err(e) => Some(format!("could not reserve fds for spawning (each child will copy the daemon's fd table): {e}")),
    }
}

/// Starts the child with clone(CLONE_VM | CLONE_VFORK), as posix_spawn does: no copy of the
/// daemon's page tables, and this thread sleeps until the child has exec'd or failed. Unlike
/// glibc's posix_spawn, the child's stack is mapped once instead of mapped and unmapped for
/// every spawn (each unmap flushed the TLBs of the other CPUs), the child shares the fd table
/// until it has taken the few fds it needs (see `Slots`), and it also switches user, umask and
/// the readiness fd, so no program needs a fork of the whole daemon. `spec`'s fds are the
/// daemon's; they are moved into the slots here. Returns the pid, or the errno of clone (or of
/// placing the fds).
fn clone_and_exec(spec: &mut ChildSpec) -> Result<libc::pid_t, i32> {
    // One child at a time on the stack and in the slots: the lock is held until the child no
    // longer runs on the one and the parent has cleared the other.
    let mut sp = spawner();
    let sp = sp.get_or_insert(Spawner { stack: 0, slots: None });
    if sp.stack == 0 {
        // SAFETY: a fresh anonymous private mapping, whose first page is made inaccessible.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                CHILD_STACK + GUARD,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error().raw_os_error().unwrap_or(libc::ENOMEM));
        }
        // SAFETY: the first page of the mapping just made.
        unsafe { libc::mprotect(base, GUARD, libc::PROT_NONE) };
        sp.stack = base as usize;
    }
    let top = sp.stack + GUARD + CHILD_STACK;
    let mut flags = libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD;
    let slots = sp.slots.as_ref().filter(|_| !test_paths().without_slots);
    if let Some(slots) = slots {
        let placed = (|| -> io::Result<()> {
            for i in 0..3 {
                if spec.stdio[i] >= 0 {
                    spec.stdio[i] = slots.put(i, spec.stdio[i])?;
                }
            }
            if let Some((fd, _)) = &mut spec.ready {
                *fd = slots.put(3, *fd)?;
            }
            Ok(())
        })();
        if let Err(e) = placed {
            slots.clear();
            return Err(e.raw_os_error().unwrap_or(libc::EBADF));
        }
        if !SHARED_TABLE_REFUSED.load(Ordering::Relaxed) {
            spec.keep_below = slots.end;
            flags |= libc::CLONE_FILES;
        }
    }
    let mut pid = clone_child(top, flags, spec);
    if pid == Err(libc::EINVAL) && flags & libc::CLONE_FILES != 0 {
        // Some emulators (qemu-user) refuse CLONE_FILES with CLONE_VFORK. Then every child
        // copies the whole table, as without slots; the slots still hold its ends.
        SHARED_TABLE_REFUSED.store(true, Ordering::Relaxed);
        spec.keep_below = 0;
        pid = clone_child(top, flags & !libc::CLONE_FILES, spec);
    }
    if let Some(slots) = slots {
        slots.clear();
    }
    pid
}

/// Set once a clone with CLONE_FILES was refused: later ones go without.
static SHARED_TABLE_REFUSED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// clone(2) of `child_main` on the stack below `top`; the pid, or clone's errno.
fn clone_child(top: usize, flags: libc::c_int, spec: &ChildSpec) -> Result<libc::pid_t, i32> {
    // Every signal blocked, the libc's internal ones too, from before the clone: the child
    // shares our memory, so no handler of ours may run in it. It empties its mask before exec.
    let all: u64 = !0;
    let mut old: u64 = 0;
    // SAFETY: rt_sigprocmask with valid 8-byte sets. clone gets a function that makes only
    // system calls on `spec`, which outlives the child's use of it (CLONE_VFORK: this thread
    // resumes once the child has exec'd or exited), and the top of a mapped stack.
    unsafe {
        libc::syscall(libc::SYS_rt_sigprocmask, libc::SIG_SETMASK, &all as *const u64, &mut old as *mut u64, 8usize);
        let pid =
            libc::clone(child_main, top as *mut libc::c_void, flags, spec as *const ChildSpec as *mut libc::c_void);
        let errno = io::Error::last_os_error().raw_os_error().unwrap_or(0);
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            &old as *const u64,
            std::ptr::null_mut::<u64>(),
            8usize,
        );
        if pid == -1 {
            Err(errno)
        } else {
            Ok(pid)
        }
    }
}

/// Paths that tests can force, on their own thread only: spawning as when no fd slots could
/// be reserved, and as on a kernel without close_range. Always the default outside tests.
#[derive(Clone, Copy, Default)]
struct TestPaths {
    without_slots: bool,
    without_close_range: bool,
}

#[cfg(test)]
thread_local! {
    static TEST_PATHS: std::cell::Cell<TestPaths> =
        const { std::cell::Cell::new(TestPaths { without_slots: false, without_close_range: false }) };
}

#[cfg(test)]
fn test_paths() -> TestPaths {
    TEST_PATHS.with(std::cell::Cell::get)
}

#[cfg(not(test))]
fn test_paths() -> TestPaths {
    TestPaths::default()
}

/// The child, between clone and exec. It runs on its own stack in the daemon's memory while
/// the daemon's thread waits, so it only reads `spec` and makes system calls: no allocation,
/// no lock, nothing that may panic. The libc functions it calls are plain system calls; user
/// and groups change through the system calls themselves (libc's wrappers would have every
/// thread of the daemon change its ids too).
extern "C" fn child_main(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the `ChildSpec` that clone_and_exec keeps alive until we exec or exit.
    let spec = unsafe { &*(arg as *const ChildSpec) };
    let fail = |step: u8| -> libc::c_int {
        let errno = io::Error::last_os_error().raw_os_error().unwrap_or(0);
        spec.failed_errno.store(errno, Ordering::Release);
        spec.failed_step.store(step, Ordering::Release);
        // SAFETY: _exit ends the child at once (no exit handler of the daemon runs).
        unsafe { libc::_exit(127) }
    };
    // SAFETY: system calls on the fds, ids and strings the parent prepared.
    unsafe {
        // First a fd table of our own (CLONE_FILES: until now it is the daemon's): a copy of
        // the fds below the slots' end only, or, on a kernel without close_range, of all.
        if spec.keep_below > 0
            && (spec.unshare_only
                || libc::syscall(
                    libc::SYS_close_range,
                    spec.keep_below as libc::c_uint,
                    libc::c_uint::MAX,
                    CLOSE_RANGE_UNSHARE,
                ) == -1)
            && libc::syscall(libc::SYS_unshare, libc::CLONE_FILES) == -1
        {
            return fail(STEP_FDS);
        }
        child_default_dispositions();
        if libc::setpgid(0, 0) == -1 {
            return fail(STEP_PGID);
        }
        // Fds 0-2 of the child. A source that is itself one of 0-2 (the daemon was started with
        // one of them closed, and it has no slots) first moves out of the way, so that no dup2
        // overwrites another's source and none is a no-op that would leave close-on-exec set.
        let mut src = spec.stdio;
        for fd in src.iter_mut() {
            if (0..3).contains(fd) {
                *fd = libc::fcntl(*fd, libc::F_DUPFD_CLOEXEC, 3);
                if *fd == -1 {
                    return fail(STEP_FDS);
                }
            }
        }
        for (target, fd) in (0..).zip(src) {
            if fd >= 0 && libc::dup2(fd, target) == -1 {
                return fail(STEP_FDS);
            }
        }
        if let Some((uid, gid)) = spec.user {
            if libc::syscall(SYS_SETGROUPS, spec.groups.len(), spec.groups.as_ptr()) == -1 {
                return fail(STEP_GROUPS);
            }
            if libc::syscall(SYS_SETGID, gid) == -1 {
                return fail(STEP_GID);
            }
            if libc::syscall(SYS_SETUID, uid) == -1 {
                return fail(STEP_UID);
            }
        }
        if let Some(dir) = &spec.directory {
            if libc::chdir(dir.as_ptr()) == -1 {
                return fail(STEP_CHDIR);
            }
        }
        if let Some(mask) = spec.umask {
            libc::umask(mask);
        }
        if !child_cloexec_from(3) {
            return fail(STEP_FDS);
        }
        // After the close-on-exec sweep: the readiness fd is the one fd besides 0-2 that the
        // program keeps.
        if let Some((fd, n)) = spec.ready {
            let ok = if fd == n { libc::fcntl(fd, libc::F_SETFD, 0) != -1 } else { libc::dup2(fd, n) != -1 };
            if !ok {
                return fail(STEP_FDS);
            }
        }
        // The raw system call: libc's sigprocmask keeps its own internal signals (32, 33)
        // blocked, and that mask would survive exec.
        let empty: u64 = 0;
        if libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            &empty as *const u64,
            std::ptr::null_mut::<u64>(),
            8usize,
        ) == -1
        {
            return fail(STEP_SIGNALS);
        }
        libc::execve(spec.path.as_ptr(), spec.argv.as_ptr(), spec.envp.as_ptr());
    }
    fail(STEP_EXEC)
}

// On 32-bit ARM the plain id system calls take 16-bit ids; these take 32-bit ones.
#[cfg(target_arch = "arm")]
const SYS_SETGROUPS: libc::c_long = libc::SYS_setgroups32;
#[cfg(target_arch = "arm")]
const SYS_SETGID: libc::c_long = libc::SYS_setgid32;
#[cfg(target_arch = "arm")]
const SYS_SETUID: libc::c_long = libc::SYS_setuid32;
#[cfg(not(target_arch = "arm"))]
const SYS_SETGROUPS: libc::c_long = libc::SYS_setgroups;
#[cfg(not(target_arch = "arm"))]
const SYS_SETGID: libc::c_long = libc::SYS_setgid;
#[cfg(not(target_arch = "arm"))]
const SYS_SETUID: libc::c_long = libc::SYS_setuid;

/// Marks every fd from 3 up close-on-exec in the daemon itself, once at startup: fds inherited
/// from whoever started it must not reach the programs (fix of Q7), and std opens ours with
/// O_CLOEXEC already.
pub fn mark_fds_cloexec() {
    child_cloexec_from(3);
}

/// In the child: the default disposition for every catchable signal (one handled in the daemon
/// must not run in the child; one ignored would pass through exec). With the system call itself
/// where its layout is known: libc's wrapper refuses its internal signals (32, 33), and musl's
/// takes a lock for SIGABRT.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
fn child_default_dispositions() {
    for sig in 1..libc::SIGRTMAX() {
        if sig != libc::SIGKILL && sig != libc::SIGSTOP {
            raw_default_disposition(sig);
        }
    }
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn child_default_dispositions() {
    // SAFETY: sigemptyset/sigaction are async-signal-safe and get valid pointers.
    unsafe {
        let mut act: libc::sigaction = std::mem::zeroed();
        act.sa_sigaction = libc::SIG_DFL;
        libc::sigemptyset(&mut act.sa_mask);
        for sig in 1..libc::SIGRTMAX() {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                libc::sigaction(sig, &act, std::ptr::null_mut());
            }
        }
    }
}

/// The kernel's `struct sigaction` on the architectures that have `sa_restorer`.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
#[repr(C)]
struct KernelSigaction {
    handler: usize,
    flags: libc::c_ulong,
    restorer: usize,
    mask: u64,
}

#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
fn raw_default_disposition(sig: libc::c_int) {
    let act = KernelSigaction { handler: libc::SIG_DFL, flags: 0, restorer: 0, mask: 0 };
    // SAFETY: rt_sigaction with a valid struct of the kernel's layout and an 8-byte sigset.
    unsafe {
        libc::syscall(
            libc::SYS_rt_sigaction,
            sig,
            &act as *const KernelSigaction,
            std::ptr::null_mut::<KernelSigaction>(),
            8usize,
        );
    }
}

const CLOSE_RANGE_UNSHARE: libc::c_uint = 1 << 1;

/// In the child: mark every fd >= `from` close-on-exec (close_range, or one by one).
fn child_cloexec_from(from: RawFd) -> bool {
    const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
    // SAFETY: close_range with the CLOEXEC flag only changes fd flags; it closes nothing, so
    // std's own error pipe keeps working.
    let r =
        unsafe { libc::syscall(libc::SYS_close_range, from as libc::c_uint, libc::c_uint::MAX, CLOSE_RANGE_CLOEXEC) };
    if r == 0 {
        return true;
    }
    // Older kernels: walk the fds up to the soft limit.
    // SAFETY: getrlimit and fcntl are async-signal-safe; fcntl on a closed fd just fails.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        let max =
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 { lim.rlim_cur.min(1 << 20) as RawFd } else { 1024 };
        for fd in from..max {
            let flags = libc::fcntl(fd, libc::F_GETFD);
            if flags >= 0 && flags & libc::FD_CLOEXEC == 0 {
                libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC);
            }
        }
    }
    true
}

/// Writes to a child's stdin without blocking: returns how much was taken.
pub fn write_nonblocking(fd: &OwnedFd, data: &[u8]) -> io::Result<usize> {
    let mut f = fs::File::from(fd.try_clone()?);
    match f.write(data) {
        Ok(n) => Ok(n),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_childs_environment_is_ours_with_the_programs_settings_on_top() {
        let os = |s: &str| OsString::from(s);
        let base = BaseEnv::new([(os("A"), os("1")), (os("B"), os("2")), (os("C"), os("3"))]);
        let set = [(os("B"), os("x")), (os("D"), os("y")), (os("B"), os("z")), (os("AA"), os(""))];
        let (_extra, envp) = compose_env(&base, &set).expect("no NUL");
        assert_eq!(envp.last(), Some(&std::ptr::null()));
        // SAFETY: every pointer but the last points to a live C string (base or _extra).
        let vars: Vec<&str> = envp[..envp.len() - 1]
            .iter()
            .map(|p| unsafe { std::ffi::CStr::from_ptr(*p) }.to_str().expect("utf-8"))
            .collect();
        assert_eq!(vars, ["A=1", "C=3", "D=y", "B=z", "AA="]);
        assert_eq!(compose_env(&base, &[(os("E"), os("a\0b"))]).err(), Some(os("E")));
    }

    /// Reads `fd` (non-blocking) to EOF, waiting at most 10 s in all.
    fn read_to_eof(fd: &OwnedFd) -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            assert!(!left.is_zero(), "no EOF within 10 s (a write end is still open somewhere): {out:?}");
            let mut pfd = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
            // SAFETY: poll on one valid pollfd.
            unsafe { libc::poll(&mut pfd, 1, left.as_millis() as libc::c_int) };
            // SAFETY: read into a buffer we own.
            match unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) } {
                0 => return String::from_utf8_lossy(&out).into_owned(),
                n if n > 0 => out.extend_from_slice(&buf[..n as usize]),
                _ => {}
            }
        }
    }

    /// `sh -c script` with no settings but these.
    fn sh_plan<'a>(base: &'a BaseEnv, script: &str, redirect_stderr: bool, ready_fd: Option<i32>) -> SpawnPlan<'a> {
        SpawnPlan {
            program: PathBuf::from("/bin/sh"),
            argv: vec!["sh".into(), "-c".into(), script.into()],
            base,
            env: Vec::new(),
            directory: None,
            umask: None,
            user: None,
            redirect_stderr,
            stdin_socket: None,
            ready_fd,
        }
    }

    #[test]
    fn a_child_takes_only_its_own_fds_through_the_slots_which_are_idle_again_after() {
        assert_eq!(reserve_fd_slots(), None);
        let slots: Vec<RawFd> = spawner()
            .as_ref()
            .and_then(|s| s.slots.as_ref())
            .expect("reserved")
            .fds
            .iter()
            .map(|f| f.as_raw_fd())
            .collect();
        assert!(slots.iter().all(|&fd| fd >= 3), "{slots:?}");
        // Fds of ours, not close-on-exec: none may reach the child.
        let ours: Vec<_> = (0..32).map(|_| sys::pipe().expect("pipe")).collect();
        for (r, _) in &ours {
            // SAFETY: clearing FD_CLOEXEC on an fd we own.
            unsafe { libc::fcntl(r.as_raw_fd(), libc::F_SETFD, 0) };
        }
        let base = BaseEnv::new(std::env::vars_os());
        let script = "ls /proc/$$/fd; readlink /proc/$$/fd/3; echo to-stderr >&2; cat; echo ready >&3";
        let plan = sh_plan(&base, script, false, Some(3));
        let child = spawn(plan, "slots").expect("spawned");
        for slot in &slots {
            let link = fs::read_link(format!("/proc/self/fd/{slot}")).expect("slot open");
            assert_eq!(link, Path::new("/dev/null"), "slot {slot} is idle again");
        }
        let stdin = child.stdin.expect("stdin pipe");
        assert_eq!(write_nonblocking(&stdin, b"from-stdin\n").expect("write"), 11);
        drop(stdin);
        let out = read_to_eof(&child.stdout);
        let err = read_to_eof(child.stderr.as_ref().expect("stderr pipe"));
        let ready = read_to_eof(child.ready.as_ref().expect("ready pipe"));
        let mut status = 0;
        // SAFETY: waitpid on our own child.
        assert_eq!(unsafe { libc::waitpid(child.pid as libc::pid_t, &mut status, 0) }, child.pid as libc::pid_t);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[..4], ["0", "1", "2", "3"], "only 0-2 and the readiness fd: {out}");
        assert!(lines[4].starts_with("pipe:["), "{out}");
        assert_eq!(lines[5..], ["from-stdin"], "{out}");
        assert_eq!((err.as_str(), ready.as_str()), ("to-stderr\n", "ready\n"));
        assert_eq!(status, 0);

        // A child with fewer ends (stderr to stdout, no readiness fd) leaves the slots idle too.
        let plan = sh_plan(&base, "echo out; echo err >&2", true, None);
        let child = spawn(plan, "slots2").expect("spawned");
        for slot in &slots {
            let link = fs::read_link(format!("/proc/self/fd/{slot}")).expect("slot open");
            assert_eq!(link, Path::new("/dev/null"), "slot {slot} is idle again");
        }
        assert!(child.stderr.is_none() && child.ready.is_none());
        assert_eq!(read_to_eof(&child.stdout), "out\nerr\n");
        // SAFETY: waitpid on our own child.
        assert_eq!(unsafe { libc::waitpid(child.pid as libc::pid_t, &mut status, 0) }, child.pid as libc::pid_t);

        // On a kernel without close_range the child copies the whole shared table with
        // unshare(CLONE_FILES); exec still leaves it only its own fds, and the slots are idle.
        TEST_PATHS.with(|p| p.set(TestPaths { without_close_range: true, ..TestPaths::default() }));
        let plan = sh_plan(&base, "ls /proc/$$/fd; readlink /proc/$$/fd/3", true, Some(3));
        let child = spawn(plan, "unshare").expect("spawned");
        TEST_PATHS.with(|p| p.set(TestPaths::default()));
        for slot in &slots {
            let link = fs::read_link(format!("/proc/self/fd/{slot}")).expect("slot open");
            assert_eq!(link, Path::new("/dev/null"), "slot {slot} is idle again");
        }
        let out = read_to_eof(&child.stdout);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[..4], ["0", "1", "2", "3"], "{out}");
        assert!(lines[4].starts_with("pipe:["), "{out}");
        // SAFETY: waitpid on our own child.
        assert_eq!(unsafe { libc::waitpid(child.pid as libc::pid_t, &mut status, 0) }, child.pid as libc::pid_t);

        // Without slots (none could be reserved), the child copies the whole table and still
        // keeps only its own fds.
        TEST_PATHS.with(|p| p.set(TestPaths { without_slots: true, ..TestPaths::default() }));
        let plan = sh_plan(&base, "ls /proc/$$/fd; readlink /proc/$$/fd/3", true, Some(3));
        let child = spawn(plan, "noslots").expect("spawned");
        TEST_PATHS.with(|p| p.set(TestPaths::default()));
        let out = read_to_eof(&child.stdout);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[..4], ["0", "1", "2", "3"], "{out}");
        assert!(lines[4].starts_with("pipe:["), "{out}");
        // SAFETY: waitpid on our own child.
        assert_eq!(unsafe { libc::waitpid(child.pid as libc::pid_t, &mut status, 0) }, child.pid as libc::pid_t);
        drop(ours);
    }

    #[test]
    fn shlex_matches_python() {
        assert_eq!(shlex_split("a 'b c' \"d \\\" e\" f\\ g").unwrap(), vec!["a", "b c", "d \" e", "f g"]);
        assert_eq!(shlex_split("  ").unwrap(), Vec::<String>::new());
        assert_eq!(shlex_split("a\nb").unwrap(), vec!["a", "b"]);
        assert_eq!(shlex_split("x'y'z").unwrap(), vec!["xyz"]);
        assert_eq!(shlex_split("'unterminated"), Err("No closing quotation"));
        assert_eq!(shlex_split("\"a\\nb\"").unwrap(), vec!["a\\nb"]);
    }

    #[test]
    fn repr_quotes_like_python() {
        assert_eq!(py_repr("abc"), "'abc'");
        assert_eq!(py_repr("it's"), "\"it's\"");
        assert_eq!(py_repr("a'b\"c"), "'a\\'b\"c'");
        assert_eq!(py_repr("a\\b"), "'a\\\\b'");
    }

    #[test]
    fn resolve_reports_supervisors_messages() {
        assert_eq!(
            resolve_command("nonexistent_cmd_xyz", Some("/bin")),
            Err(CommandError::NotFound("can't find command 'nonexistent_cmd_xyz'".into()))
        );
        assert_eq!(resolve_command("  ", None), Err(CommandError::NotExecutable("command is empty".into())));
        assert_eq!(
            resolve_command("/tmp", None),
            Err(CommandError::NotExecutable("command at '/tmp' is a directory".into()))
        );
        let plain = std::env::temp_dir().join(format!("minisv-spawn-plain-{}", std::process::id()));
        fs::write(&plain, "data").expect("write");
        fs::set_permissions(&plain, fs::Permissions::from_mode(0o644)).expect("chmod");
        assert_eq!(
            resolve_command(plain.to_str().expect("utf-8"), None),
            Err(CommandError::NotExecutable(format!("command at '{}' is not executable", plain.display())))
        );
        let _ = fs::remove_file(&plain);
        assert!(
            matches!(resolve_command("echo 'x", None), Err(CommandError::NotExecutable(m)) if m.starts_with("can't parse command"))
        );
        let (path, argv) = resolve_command("sh -c 'exit 0'", Some("/nonexistent:/bin")).expect("sh is in /bin");
        assert_eq!(path, PathBuf::from("/bin/sh"));
        assert_eq!(argv, vec!["sh", "-c", "exit 0"]);
    }
}
