//! Starting a child (reference 2.3): resolve the command in the parent, prepare everything
//! that needs allocation before the clone, and keep the child side to plain system calls.
//!
//! The child is started with clone(CLONE_VM | CLONE_FILES) on a stack mapped once per lane:
//! it shares the daemon's memory until it execs (no page tables copied), and copies only the
//! first few fds of the daemon's fd table (`Slots`). The daemon does not wait for the exec
//! there: up to `LANES` children are on their way to exec at once, and the kernel zeroes a
//! word of the lane's when a child has exec'd or exited (CLONE_CHILD_CLEARTID), which `finish`
//! waits for. Where that cannot be used (no raw system calls for the architecture, or an
//! emulator that refuses it), the daemon's thread waits in clone(CLONE_VFORK) instead.
//! The child gets fds 0-2 only (everything else is marked close-on-exec: fix of Q7), default
//! signal dispositions and an empty mask, its own process group, then supplementary groups,
//! gid and uid, the directory and the umask. A failure in the child is reported to the parent
//! as (step, errno) in the memory they share, so the parent can say which step failed.

use std::collections::HashMap;
use std::ffi::{CString, OsString};
use std::fs;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicI32, AtomicU8, Ordering};

use crate::sys;

mod raw;
use raw::syscall as sc;

/// Why a command cannot be started, found in the parent before the clone.
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
    resolve_command_in(command, path, &mut FoundCommands::default())
}

/// The programs found during one batch of starts, by name and search path. Starting 1000
/// programs at once looked the same `sleep` up in each directory of a long PATH for each of
/// them (16 system calls a program with the PATH of the benchmark, a sixth of the daemon's CPU
/// in that start). The loop
/// empties it after each batch, so a program installed, removed or shadowed between two
/// batches is seen as Supervisor would see it.
#[derive(Default)]
pub struct FoundCommands(HashMap<String, PathBuf>);

impl FoundCommands {
    pub fn clear(&mut self) {
        self.0.clear();
    }
}

/// `resolve_command`, with what `found` already holds taken as found.
pub fn resolve_command_in(
    command: &str,
    path: Option<&str>,
    found: &mut FoundCommands,
) -> Result<(PathBuf, Vec<String>), CommandError> {
    let argv = shlex_split(command)
        .map_err(|e| CommandError::NotExecutable(format!("can't parse command {}: {}", py_repr(command), e)))?;
    let Some(program) = argv.first() else {
        return Err(CommandError::NotExecutable("command is empty".into()));
    };
    let search = path.unwrap_or("/bin:/usr/bin:/usr/local/bin");
    let key = format!("{program}\0{search}");
    if let Some(file) = found.0.get(&key) {
        return Ok((file.clone(), argv));
    }
    let file = find_program(command, program, search)?;
    found.0.insert(key, file.clone());
    Ok((file, argv))
}

/// The file `program` (the first word of `command`) names, directly or in a directory of
/// `search`, checked as Supervisor checks it before it forks.
fn find_program(command: &str, program: &str, search: &str) -> Result<PathBuf, CommandError> {
    let found = if program.contains('/') {
        let p = PathBuf::from(program);
        fs::metadata(&p).ok().map(|m| (p, m))
    } else {
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
    Ok(file)
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
pub struct SpawnPlan {
    pub program: PathBuf,
    pub argv: Vec<String>,
    /// The child's environment: `base` with `env` set on top, in order (a later one wins).
    pub base: Rc<BaseEnv>,
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
    /// The signals (bit `sig - 1`) the child sets back to the default disposition.
    reset_signals: u128,
    /// Set by a child that fails: the step and the errno.
    failed_step: AtomicU8,
    failed_errno: AtomicI32,
}

/// How many children may be between clone and exec at once, each on its own stack and fd
/// slots (a lane). The daemon starts the next child while the previous ones exec on the other
/// CPUs, instead of sleeping in clone(CLONE_VFORK) until each has exec'd: starting 1000
/// programs was mostly that wait, and cross-CPU wake-ups.
pub const LANES: usize = 4;

/// A child that was cloned and may not have exec'd yet. `finish` says how its start went;
/// until then its lane, and the memory it reads, stay reserved.
pub struct InFlight {
    pid: libc::pid_t,
    /// The lane whose stack and slots the child runs on; None once it no longer does (it was
    /// started with CLONE_VFORK, or `finish` saw it exec or exit).
    lane: Option<usize>,
    /// Where the child reads its instructions and reports a failure.
    spec: Box<ChildSpec>,
    /// What `spec`'s pointers point into.
    _argv: Vec<CString>,
    _env_extra: Vec<CString>,
    _env_base: Rc<BaseEnv>,
    spawned: Option<Spawned>,
    /// For the message of a failed start.
    arg0: String,
    directory: Option<String>,
    uid: u32,
}

impl InFlight {
    pub fn pid(&self) -> u32 {
        self.pid as u32
    }

    /// Waits until the child no longer runs on its lane (it has exec'd or exited), then gives
    /// the lane back.
    fn release_lane(&mut self) {
        if let Some(lane) = self.lane.take() {
            wait_off_lane(lane, self.pid);
            let mut sp = spawner();
            if let Some(sp) = sp.as_mut() {
                if let Some(slots) = &sp.slots {
                    slots.clear(lane);
                }
                sp.busy[lane] = false;
            }
            drop(sp);
            LANE_FREED.notify_one();
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        // The child may still read `spec` and run on the lane's stack.
        self.release_lane();
    }
}

/// Starts a child: prepares everything it needs and clones it. Whether it got as far as exec
/// is known from `finish`. An error message says which step failed, as Supervisor's child does
/// (`couldn't chdir to /x: ENOENT`, `couldn't exec /x: EACCES`, `too many open files ...`).
pub fn spawn(plan: SpawnPlan, name: &str) -> Result<InFlight, String> {
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
    let arg0 = plan.argv.first().cloned().unwrap_or_default();
    let nul = |what: &str| format!("couldn't exec {arg0}: {what} contains a NUL byte");
    // Everything the child uses is prepared here: nothing is allocated after the clone.
    let path = CString::new(plan.program.as_os_str().as_bytes()).map_err(|_| nul("the command"))?;
    let argv: Vec<CString> = plan
        .argv
        .iter()
        .map(|a| CString::new(a.as_bytes()))
        .collect::<Result<_, _>>()
        .map_err(|_| nul("an argument"))?;
    let (env_extra, envp) = compose_env(&plan.base, &plan.env)
        .map_err(|k| nul(&format!("environment variable {}", k.to_string_lossy())))?;
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

    let (ready_r, ready_w) = ready_pipe.unzip();
    let mut spec = Box::new(ChildSpec {
        argv: argv.iter().map(|a| a.as_ptr()).chain(std::iter::once(std::ptr::null())).collect(),
        envp,
        path,
        stdio,
        user: plan.user.as_ref().map(|u| (u.0 as libc::uid_t, u.1 as libc::gid_t)),
        groups: plan.user.as_ref().map(|u| u.2.iter().map(|g| *g as libc::gid_t).collect()).unwrap_or_default(),
        directory,
        umask: plan.umask.map(|m| m as libc::mode_t),
        ready: ready_w.as_ref().zip(plan.ready_fd).map(|(w, n)| (w.as_raw_fd(), n)),
        keep_below: 0,
        unshare_only: test_paths().without_close_range,
        reset_signals: 0,
        failed_step: AtomicU8::new(0),
        failed_errno: AtomicI32::new(0),
    });
    let (pid, lane) = clone_and_exec(&mut spec).map_err(|errno| match errno {
        libc::EAGAIN => format!("Too many processes in process table to spawn {}", py_repr(name)),
        n => format!("couldn't fork {}: {}", py_repr(name), sys::errno_str(n)),
    })?;
    drop((child_stdin, out_w, err_w, ready_w));
    Ok(InFlight {
        pid,
        lane,
        spec,
        _argv: argv,
        _env_extra: env_extra,
        _env_base: plan.base,
        spawned: Some(Spawned { pid: pid as u32, stdin: stdin_w, stdout: out_r, stderr: err_r, ready: ready_r }),
        arg0,
        directory: plan.directory,
        uid: user_uid(&plan.user),
    })
}

/// Waits until the child has exec'd or failed: its pipes, or the message of the step that
/// failed (the child, which exited with status 127, is reaped here, so the loop never sees an
/// unknown pid).
pub fn finish(mut child: InFlight) -> Result<Spawned, String> {
    child.release_lane();
    let step = child.spec.failed_step.load(Ordering::Acquire);
    if step == 0 {
        return Ok(child.spawned.take().expect("finished once"));
    }
    reap(child.pid);
    let en = sys::errno_str(child.spec.failed_errno.load(Ordering::Acquire));
    Err(match step {
        STEP_SIGNALS => format!("couldn't reset signals: {en}"),
        STEP_GROUPS => format!("Could not set groups of effective user: {en}"),
        STEP_GID => format!("Could not set group id of effective user: {en}"),
        STEP_UID => format!("couldn't setuid to {}: {en}", child.uid),
        STEP_CHDIR => format!("couldn't chdir to {}: {en}", child.directory.as_deref().unwrap_or("")),
        STEP_FDS => format!("couldn't set up file descriptors: {en}"),
        STEP_PGID => format!("couldn't set the process group: {en}"),
        _ => format!("couldn't exec {}: {en}", child.arg0),
    })
}

/// SIGKILLs a child that has exec'd, and its process group (its own: the child made it), and
/// waits for the child to be gone (it cannot block a signal that kills it, so the wait is
/// short).
pub fn kill_and_reap(pid: u32) {
    // Through sys::kill and its pid guard (never pid 0 or -1: everyone).
    let _ = crate::sys::kill(pid, libc::SIGKILL, true);
    let _ = crate::sys::kill(pid, libc::SIGKILL, false);
    reap(pid as libc::pid_t);
}

/// Waits for our child `pid` to exit and collects it (here, so the loop never sees an unknown
/// pid).
fn reap(pid: libc::pid_t) {
    let mut status = 0;
    // SAFETY: waitpid on our own child with a valid status pointer.
    while unsafe { libc::waitpid(pid, &mut status, 0) } == -1
        && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted
    {}
}

fn user_uid(user: &Option<(u32, u32, Vec<u32>)>) -> u32 {
    user.as_ref().map(|u| u.0).unwrap_or(0)
}

/// The stack a child runs on until exec, mapped once per lane; below it a page that is never
/// accessible, so an overflow faults instead of writing over the daemon's memory.
const CHILD_STACK: usize = 64 * 1024;
const GUARD: usize = 4096;

/// What every spawn reuses: the lanes' stacks and the fd slots.
struct Spawner {
    /// The lowest address of each lane's stack mapping (its guard page); 0 until first used.
    stacks: [usize; LANES],
    /// A child has the lane: from its clone until `finish` has seen it exec or exit.
    busy: [bool; LANES],
    slots: Option<Slots>,
    /// `non_default_signals()`, read at the first spawn after `signal_dispositions_changed`.
    signals: Option<u128>,
}

impl Spawner {
    const fn new() -> Spawner {
        Spawner { stacks: [0; LANES], busy: [false; LANES], slots: None, signals: None }
    }
}

/// To be called after this process has set a signal's handler, ignored a signal, or set one
/// back to the default: the next child reads the dispositions again instead of trusting the
/// ones read at an earlier spawn. The daemon sets its handlers once, before any program starts.
pub fn signal_dispositions_changed() {
    if let Some(sp) = spawner().as_mut() {
        sp.signals = None;
    }
}

/// Per lane: nonzero while its child may run on it. The kernel zeroes it and wakes its futex
/// when the child execs or exits (CLONE_CHILD_CLEARTID): the point where a vfork parent would
/// resume.
static RUNNING_ON_LANE: [AtomicI32; LANES] = [const { AtomicI32::new(0) }; LANES];

/// Signalled whenever a lane is given back.
static LANE_FREED: std::sync::Condvar = std::sync::Condvar::new();

/// Waits until lane `lane`'s child (`pid`) has exec'd or exited. Bounded by the child: the
/// kernel clears the word at either; a child that died without clearing it (a core dump before
/// exec) is seen by waitid, checked every 20 ms.
fn wait_off_lane(lane: usize, pid: libc::pid_t) {
    let word = &RUNNING_ON_LANE[lane];
    while word.load(Ordering::Acquire) != 0 {
        let timeout = libc::timespec { tv_sec: 0, tv_nsec: 20_000_000 };
        // SAFETY: FUTEX_WAIT on a live word with a valid timeout. Shared, not private: the
        // kernel's wake at exec is a shared one.
        unsafe {
            libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAIT, 1, &timeout as *const libc::timespec)
        };
        if word.load(Ordering::Acquire) == 0 {
            break;
        }
        // SAFETY: waitid on our own child with a valid siginfo; WNOWAIT leaves it to be reaped.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let dead = unsafe {
            libc::waitid(libc::P_PID, pid as libc::id_t, &mut info, libc::WEXITED | libc::WNOHANG | libc::WNOWAIT) == 0
                && info.si_pid() != 0
        };
        if dead {
            break;
        }
    }
    word.store(0, Ordering::Release);
}

/// Low-numbered fds, reserved at startup, where the parent puts a child's ends for the clone.
///
/// The child starts sharing the daemon's fd table (CLONE_FILES) and takes a copy of only the fds
/// below `end` (close_range with CLOSE_RANGE_UNSHARE): with 1000 programs the daemon holds 3000
/// pipe ends, and a child that copied the whole table took a reference on each and closed each
/// again at exec (flushing every one: a third of the CPU a `sleep` child needs to start). Each
/// slot always holds an fd (`/dev/null` when idle), so no other thread's open() ever gets its
/// number. Each lane has its own slots: the parent fills one lane's while the child of another
/// may not have taken its copy yet. A child's copy holds the other lanes' slots too, until its
/// exec closes them (they are close-on-exec): an end of another child's pipe may stay open
/// that much longer.
struct Slots {
    idle: OwnedFd,
    /// Per lane: stdin, stdout, stderr, readiness.
    fds: [[OwnedFd; 4]; LANES],
    /// One above the highest slot: the child keeps the fds below it.
    end: RawFd,
    /// Per lane, the slots holding a child's end now (bit i: slot i).
    busy: [std::cell::Cell<u8>; LANES],
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
        let mut lanes = Vec::with_capacity(LANES);
        for _ in 0..LANES {
            let i = idle.as_raw_fd();
            lanes.push([low(i)?, low(i)?, low(i)?, low(i)?]);
        }
        let fds: [[OwnedFd; 4]; LANES] = lanes.try_into().unwrap_or_else(|_| unreachable!("LANES lanes"));
        let end = fds.iter().flatten().map(|f| f.as_raw_fd()).max().unwrap_or(2) + 1;
        Ok(Slots { idle, fds, end, busy: Default::default() })
    }

    /// Puts `fd` in slot `i` of `lane` (close-on-exec); the slot's previous fd is closed.
    fn put(&self, lane: usize, i: usize, fd: RawFd) -> io::Result<RawFd> {
        let slot = self.fds[lane][i].as_raw_fd();
        // SAFETY: dup3 onto a slot we own: it replaces the slot's open file, nothing else.
        if unsafe { libc::dup3(fd, slot, libc::O_CLOEXEC) } == -1 {
            return Err(io::Error::last_os_error());
        }
        self.busy[lane].set(self.busy[lane].get() | 1 << i);
        Ok(slot)
    }

    /// Gives the lane's slots in use back their idle fd, closing the child's ends held there.
    fn clear(&self, lane: usize) {
        for i in 0..4 {
            if self.busy[lane].get() & 1 << i != 0 {
                // Cannot fail: both fds are ours and open, and the slot is never being allocated.
                let _ = self.put(lane, i, self.idle.as_raw_fd());
            }
        }
        self.busy[lane].set(0);
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
    let sp = sp.get_or_insert_with(Spawner::new);
    if sp.slots.is_some() {
        return None;
    }
    match Slots::reserve() {
        Ok(slots) => {
            sp.slots = Some(slots);
            None
        }
        Err(e) => Some(format!("could not reserve fds for spawning (each child will copy the daemon's fd table): {e}")),
    }
}

/// Starts the child with clone(CLONE_VM), as posix_spawn does: no copy of the daemon's page
/// tables. Unlike glibc's posix_spawn, this thread does not sleep until the child has exec'd
/// (CLONE_VFORK) where the child can run on raw system calls: the kernel tells when it has
/// (`RUNNING_ON_LANE`), and `finish` waits for that. The child's stack is mapped once per lane
/// instead of mapped and unmapped for every spawn (each unmap flushed the TLBs of the other
/// CPUs), the child shares the fd table until it has taken the few fds it needs (see `Slots`),
/// and it also switches user, umask and the readiness fd, so no program needs a fork of the
/// whole daemon. `spec`'s fds are the daemon's; they are moved into the lane's slots here.
/// Returns the pid and the lane the child may still run on, or the errno of clone (or of
/// placing the fds).
fn clone_and_exec(spec: &mut ChildSpec) -> Result<(libc::pid_t, Option<usize>), i32> {
    let mut guard = spawner();
    // A free lane: the loop never starts more than LANES children before finishing one, so it
    // never waits here; threads that spawn concurrently (tests) may.
    let lane = loop {
        let sp = guard.get_or_insert_with(Spawner::new);
        if let Some(lane) = sp.busy.iter().position(|b| !b) {
            break lane;
        }
        guard = LANE_FREED.wait(guard).unwrap_or_else(std::sync::PoisonError::into_inner);
    };
    let sp = guard.get_or_insert_with(Spawner::new);
    if sp.stacks[lane] == 0 {
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
        sp.stacks[lane] = base as usize;
    }
    let top = sp.stacks[lane] + GUARD + CHILD_STACK;
    let mut shared_table = false;
    let slots = sp.slots.as_ref().filter(|_| !test_paths().without_slots);
    if let Some(slots) = slots {
        let placed = (|| -> io::Result<()> {
            for i in 0..3 {
                if spec.stdio[i] >= 0 {
                    spec.stdio[i] = slots.put(lane, i, spec.stdio[i])?;
                }
            }
            if let Some((fd, _)) = &mut spec.ready {
                *fd = slots.put(lane, 3, *fd)?;
            }
            Ok(())
        })();
        if let Err(e) = placed {
            slots.clear(lane);
            return Err(e.raw_os_error().unwrap_or(libc::EBADF));
        }
        if !SHARED_TABLE_REFUSED.load(Ordering::Relaxed) {
            spec.keep_below = slots.end;
            shared_table = true;
        }
    }
    // Only the signals that are not at their default need a reset in the child: a few, where
    // resetting all of them was 62 system calls per child (17 ms for 1000 children here).
    spec.reset_signals = *sp.signals.get_or_insert_with(non_default_signals);
    let files = if shared_table { libc::CLONE_FILES } else { 0 };
    let mut result = Err(libc::EINVAL);
    if raw::AVAILABLE && !ASYNC_REFUSED.load(Ordering::Relaxed) && !test_paths().with_vfork {
        RUNNING_ON_LANE[lane].store(1, Ordering::Release);
        let flags = libc::CLONE_VM | libc::CLONE_CHILD_CLEARTID | libc::SIGCHLD | files;
        result = clone_child(top, flags, spec, RUNNING_ON_LANE[lane].as_ptr());
        match result {
            Ok(pid) => {
                sp.busy[lane] = true;
                return Ok((pid, Some(lane)));
            }
            // Some emulators (qemu-user) take CLONE_VM only with the flags of a thread, and a
            // sandbox's system call filter may refuse it: from now on, every child is started
            // with CLONE_VFORK.
            Err(libc::EINVAL | libc::EPERM | libc::ENOSYS) => {
                ASYNC_REFUSED.store(true, Ordering::Relaxed);
                result = Err(libc::EINVAL);
            }
            Err(_) => {}
        }
        RUNNING_ON_LANE[lane].store(0, Ordering::Release);
    }
    if result == Err(libc::EINVAL) {
        let flags = libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD;
        result = clone_child(top, flags | files, spec, std::ptr::null_mut());
        if matches!(result, Err(libc::EINVAL | libc::EPERM | libc::ENOSYS)) && shared_table {
            // Some emulators (qemu-user) refuse CLONE_FILES with CLONE_VFORK, and a sandbox's
            // filter might. Then every child copies the whole table, as without slots; the
            // slots still hold its ends.
            SHARED_TABLE_REFUSED.store(true, Ordering::Relaxed);
            spec.keep_below = 0;
            result = clone_child(top, flags, spec, std::ptr::null_mut());
        }
    }
    // With CLONE_VFORK the child has exec'd or exited by now; after a failed clone there is
    // none: the lane is free again either way.
    if let Some(slots) = slots {
        slots.clear(lane);
    }
    result.map(|pid| (pid, None))
}

/// Set once a clone with CLONE_FILES was refused: later ones go without.
static SHARED_TABLE_REFUSED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
/// Set once a clone(CLONE_VM) without CLONE_VFORK was refused: later ones wait for the exec.
static ASYNC_REFUSED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Each once: why children start in a slower way than they could (a clone was refused), for
/// the daemon's log.
pub fn take_fallback_note() -> Option<&'static str> {
    static NOTED_ASYNC: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    static NOTED_TABLE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if ASYNC_REFUSED.load(Ordering::Relaxed) && !NOTED_ASYNC.swap(true, Ordering::Relaxed) {
        return Some(
            "clone(CLONE_VM) without CLONE_VFORK was refused (qemu-user and some sandboxes do): children \
             are started one at a time, each waited for until it has exec'd",
        );
    }
    if SHARED_TABLE_REFUSED.load(Ordering::Relaxed) && !NOTED_TABLE.swap(true, Ordering::Relaxed) {
        return Some(
            "clone(CLONE_VFORK | CLONE_FILES) was refused (EINVAL; qemu-user does): each child copies \
             the daemon's whole fd table",
        );
    }
    None
}

/// clone(2) of `child_main` on the stack below `top`; the pid, or clone's errno. `clear_tid`:
/// the word the kernel zeroes when the child execs or exits (with CLONE_CHILD_CLEARTID).
fn clone_child(
    top: usize,
    flags: libc::c_int,
    spec: &ChildSpec,
    clear_tid: *mut libc::pid_t,
) -> Result<libc::pid_t, i32> {
    // Every signal blocked, the libc's internal ones too, from before the clone: the child
    // shares our memory, so no handler of ours may run in it. It empties its mask before exec.
    let all: u64 = !0;
    let mut old: u64 = 0;
    // SAFETY: rt_sigprocmask with valid 8-byte sets. clone gets a function that makes only
    // system calls on `spec`, which outlives the child's use of it (with CLONE_VFORK this
    // thread resumes once the child has exec'd or exited; without, `InFlight` keeps it until
    // the kernel has cleared `clear_tid`), and the top of a mapped stack.
    unsafe {
        libc::syscall(libc::SYS_rt_sigprocmask, libc::SIG_SETMASK, &all as *const u64, &mut old as *mut u64, 8usize);
        let pid = raw::clone(top, flags, child_main, spec as *const ChildSpec as *mut libc::c_void, clear_tid);
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            &old as *const u64,
            std::ptr::null_mut::<u64>(),
            8usize,
        );
        pid
    }
}

/// Paths that tests can force, on their own thread only: spawning as when no fd slots could
/// be reserved, as on a kernel without close_range, and waiting in clone for the exec
/// (CLONE_VFORK). Always the default outside tests.
#[derive(Clone, Copy, Default)]
struct TestPaths {
    without_slots: bool,
    without_close_range: bool,
    with_vfork: bool,
}

#[cfg(test)]
thread_local! {
    static TEST_PATHS: std::cell::Cell<TestPaths> = const {
        std::cell::Cell::new(TestPaths { without_slots: false, without_close_range: false, with_vfork: false })
    };
}

#[cfg(test)]
fn test_paths() -> TestPaths {
    TEST_PATHS.with(std::cell::Cell::get)
}

#[cfg(not(test))]
fn test_paths() -> TestPaths {
    TestPaths::default()
}

/// The child, between clone and exec. It runs on its lane's stack in the daemon's memory,
/// while the daemon's thread goes on (or waits, with CLONE_VFORK), so it only reads `spec` and
/// makes system calls with `sc`: no allocation, no lock, no errno, nothing that may panic.
/// User and groups change through the system calls themselves (libc's wrappers would have
/// every thread of the daemon change its ids too).
extern "C" fn child_main(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the `ChildSpec` that is kept alive until we exec or exit.
    let spec = unsafe { &*(arg as *const ChildSpec) };
    // SAFETY: system calls on the fds, ids and strings the parent prepared.
    let Err((step, errno)) = unsafe { child_exec(spec) };
    spec.failed_errno.store(errno, Ordering::Release);
    spec.failed_step.store(step, Ordering::Release);
    // SAFETY: ends the child at once (no exit handler of the daemon runs).
    let _ = unsafe { sc(libc::SYS_exit_group, [127, 0, 0, 0, 0, 0]) };
    127
}

/// The child's steps up to exec; returns only if one fails: (the step, the errno).
unsafe fn child_exec(spec: &ChildSpec) -> Result<std::convert::Infallible, (u8, i32)> {
    let at = |step: u8| move |errno: i32| (step, errno);
    let a = |x: usize, y: usize, z: usize| [x, y, z, 0, 0, 0];
    // SAFETY (all below): system calls on the fds, ids and strings the parent prepared.
    unsafe {
        // First a fd table of our own (CLONE_FILES: until now it is the daemon's): a copy of
        // the fds below the slots' end only, or, on a kernel without close_range, of all.
        if spec.keep_below > 0 {
            let range = if spec.unshare_only {
                Err(libc::ENOSYS)
            } else {
                let unshare = CLOSE_RANGE_UNSHARE as usize;
                sc(libc::SYS_close_range, a(spec.keep_below as usize, libc::c_uint::MAX as usize, unshare))
            };
            if range.is_err() {
                sc(libc::SYS_unshare, a(libc::CLONE_FILES as usize, 0, 0)).map_err(at(STEP_FDS))?;
            }
        }
        child_default_dispositions(spec.reset_signals);
        sc(libc::SYS_setpgid, a(0, 0, 0)).map_err(at(STEP_PGID))?;
        // Fds 0-2 of the child. A source that is itself one of 0-2 (the daemon was started with
        // one of them closed, and it has no slots) first moves out of the way, so that no dup
        // overwrites another's source and none is a no-op that would leave close-on-exec set.
        let mut src = spec.stdio;
        for fd in src.iter_mut() {
            if (0..3).contains(fd) {
                let moved = sc(libc::SYS_fcntl, a(*fd as usize, libc::F_DUPFD_CLOEXEC as usize, 3));
                *fd = moved.map_err(at(STEP_FDS))? as RawFd;
            }
        }
        for (target, fd) in (0..).zip(src) {
            if fd >= 0 {
                sc(libc::SYS_dup3, a(fd as usize, target, 0)).map_err(at(STEP_FDS))?;
            }
        }
        if let Some((uid, gid)) = spec.user {
            let groups = a(spec.groups.len(), spec.groups.as_ptr() as usize, 0);
            sc(SYS_SETGROUPS, groups).map_err(at(STEP_GROUPS))?;
            sc(SYS_SETGID, a(gid as usize, 0, 0)).map_err(at(STEP_GID))?;
            sc(SYS_SETUID, a(uid as usize, 0, 0)).map_err(at(STEP_UID))?;
        }
        if let Some(dir) = &spec.directory {
            sc(libc::SYS_chdir, a(dir.as_ptr() as usize, 0, 0)).map_err(at(STEP_CHDIR))?;
        }
        if let Some(mask) = spec.umask {
            let _ = sc(libc::SYS_umask, a(mask as usize, 0, 0));
        }
        child_cloexec_from(3);
        // After the close-on-exec sweep: the readiness fd is the one fd besides 0-2 that the
        // program keeps.
        if let Some((fd, n)) = spec.ready {
            let kept = if fd == n {
                sc(libc::SYS_fcntl, a(fd as usize, libc::F_SETFD as usize, 0))
            } else {
                sc(libc::SYS_dup3, a(fd as usize, n as usize, 0))
            };
            kept.map_err(at(STEP_FDS))?;
        }
        // The raw system call: libc's sigprocmask keeps its own internal signals (32, 33)
        // blocked, and that mask would survive exec.
        let empty: u64 = 0;
        sc(libc::SYS_rt_sigprocmask, [libc::SIG_SETMASK as usize, &empty as *const u64 as usize, 0, 8, 0, 0])
            .map_err(at(STEP_SIGNALS))?;
        let exec = [spec.path.as_ptr() as usize, spec.argv.as_ptr() as usize, spec.envp.as_ptr() as usize, 0, 0, 0];
        // It returns only on failure.
        Err((STEP_EXEC, sc(libc::SYS_execve, exec).err().unwrap_or(libc::ENOEXEC)))
    }
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

/// The signals (bit `sig - 1`) whose disposition in this process is not the default: those
/// with a handler, which must not run in a child that shares our memory, and those ignored,
/// which would stay ignored through exec. A signal whose disposition cannot be read counts in.
fn non_default_signals() -> u128 {
    let mut set = 0;
    for sig in 1..=max_signal() {
        if sig != libc::SIGKILL && sig != libc::SIGSTOP && !at_default(sig) {
            set |= 1 << (sig - 1);
        }
    }
    set
}

/// In the child: the default disposition for the signals in `set` (`non_default_signals`).
fn child_default_dispositions(set: u128) {
    let mut left = set;
    while left != 0 {
        let sig = left.trailing_zeros() as libc::c_int + 1;
        left &= left - 1;
        default_disposition(sig);
    }
}

/// The kernel's `struct sigaction` on the architectures that have `sa_restorer`. There the
/// system call itself is made: libc's wrapper refuses its internal signals (32, 33), musl's
/// takes a lock for SIGABRT, and the child must not write errno.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
#[repr(C)]
struct KernelSigaction {
    handler: usize,
    flags: libc::c_ulong,
    restorer: usize,
    mask: u64,
}

#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
fn max_signal() -> libc::c_int {
    64
}

#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
fn at_default(sig: libc::c_int) -> bool {
    let mut old = KernelSigaction { handler: 0, flags: 0, restorer: 0, mask: 0 };
    // SAFETY: rt_sigaction that only reads the disposition, into a struct of the kernel's layout.
    let read =
        unsafe { sc(libc::SYS_rt_sigaction, [sig as usize, 0, &mut old as *mut KernelSigaction as usize, 8, 0, 0]) };
    read.is_ok() && old.handler == libc::SIG_DFL
}

#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
fn default_disposition(sig: libc::c_int) {
    let act = KernelSigaction { handler: libc::SIG_DFL, flags: 0, restorer: 0, mask: 0 };
    // SAFETY: rt_sigaction with a valid struct of the kernel's layout and an 8-byte sigset.
    let _ = unsafe { sc(libc::SYS_rt_sigaction, [sig as usize, &act as *const KernelSigaction as usize, 0, 8, 0, 0]) };
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn max_signal() -> libc::c_int {
    libc::SIGRTMAX().min(128)
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn at_default(sig: libc::c_int) -> bool {
    // SAFETY: sigaction that only reads the disposition into a zeroed struct.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        libc::sigaction(sig, std::ptr::null(), &mut old) == 0 && old.sa_sigaction == libc::SIG_DFL
    }
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn default_disposition(sig: libc::c_int) {
    // SAFETY: sigemptyset/sigaction are async-signal-safe and get valid pointers (the child
    // runs with CLONE_VFORK here, the daemon's thread stopped).
    unsafe {
        let mut act: libc::sigaction = std::mem::zeroed();
        act.sa_sigaction = libc::SIG_DFL;
        libc::sigemptyset(&mut act.sa_mask);
        libc::sigaction(sig, &act, std::ptr::null_mut());
    }
}

const CLOSE_RANGE_UNSHARE: libc::c_uint = 1 << 1;

/// In the child (and once in the daemon): mark every fd >= `from` close-on-exec (close_range,
/// or one by one on kernels without it).
fn child_cloexec_from(from: RawFd) {
    const CLOSE_RANGE_CLOEXEC: usize = 1 << 2;
    let max = libc::c_uint::MAX as usize;
    // SAFETY: close_range with the CLOEXEC flag only changes fd flags; it closes nothing.
    if unsafe { sc(libc::SYS_close_range, [from as usize, max, CLOSE_RANGE_CLOEXEC, 0, 0, 0]) }.is_ok() {
        return;
    }
    // Older kernels: walk the fds up to the soft limit.
    // SAFETY: prlimit64 into a valid struct; fcntl on a closed fd just fails.
    unsafe {
        let mut lim: libc::rlimit64 = std::mem::zeroed();
        let nofile = libc::RLIMIT_NOFILE as usize;
        let got = sc(libc::SYS_prlimit64, [0, nofile, 0, &mut lim as *mut libc::rlimit64 as usize, 0, 0]);
        let end = if got.is_ok() { lim.rlim_cur.min(1 << 20) as usize } else { 1024 };
        for fd in from as usize..end {
            if let Ok(flags) = sc(libc::SYS_fcntl, [fd, libc::F_GETFD as usize, 0, 0, 0, 0]) {
                if flags & libc::FD_CLOEXEC as usize == 0 {
                    let _ =
                        sc(libc::SYS_fcntl, [fd, libc::F_SETFD as usize, flags | libc::FD_CLOEXEC as usize, 0, 0, 0]);
                }
            }
        }
    }
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

    #[test]
    fn the_signals_a_child_resets_are_those_not_at_their_default_here() {
        let set = non_default_signals();
        let has = |sig: libc::c_int| set & 1 << (sig - 1) != 0;
        // Rust's runtime ignores SIGPIPE and handles SIGSEGV (stack overflow) in every program.
        assert!(has(libc::SIGPIPE) && has(libc::SIGSEGV), "{set:#x}");
        // Nothing here handles these; SIGKILL and SIGSTOP cannot be changed at all.
        for sig in [libc::SIGUSR1, libc::SIGWINCH, libc::SIGKILL, libc::SIGSTOP] {
            assert!(!has(sig), "signal {sig} in {set:#x}");
        }
        assert_eq!(set >> max_signal(), 0, "{set:#x}");
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
    fn sh_plan(base: &Rc<BaseEnv>, script: &str, redirect_stderr: bool, ready_fd: Option<i32>) -> SpawnPlan {
        SpawnPlan {
            program: PathBuf::from("/bin/sh"),
            argv: vec!["sh".into(), "-c".into(), script.into()],
            base: Rc::clone(base),
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
        let slots: Vec<[RawFd; 4]> = spawner()
            .as_ref()
            .and_then(|s| s.slots.as_ref())
            .expect("reserved")
            .fds
            .iter()
            .map(|lane| lane.each_ref().map(|f| f.as_raw_fd()))
            .collect();
        assert!(slots.iter().flatten().all(|&fd| fd >= 3), "{slots:?}");
        // Finishes the child; then no slot holds an end of its pipes any more. (Other tests may
        // be using the other lanes, or this one again by now: their pipes are not this child's.)
        let finish_idle = |child: InFlight| -> Spawned {
            let spawned = finish(child).expect("exec'd");
            let link = |fd: RawFd| fs::read_link(format!("/proc/self/fd/{fd}")).expect("open fd");
            let ours = [Some(&spawned.stdout), spawned.stderr.as_ref(), spawned.stdin.as_ref(), spawned.ready.as_ref()];
            let pipes: Vec<PathBuf> = ours.into_iter().flatten().map(|fd| link(fd.as_raw_fd())).collect();
            for slot in slots.iter().flatten() {
                assert!(!pipes.contains(&link(*slot)), "slot {slot} still holds {:?}", link(*slot));
            }
            spawned
        };
        // Fds of ours, not close-on-exec: none may reach the child.
        let ours: Vec<_> = (0..32).map(|_| sys::pipe().expect("pipe")).collect();
        for (r, _) in &ours {
            // SAFETY: clearing FD_CLOEXEC on an fd we own.
            unsafe { libc::fcntl(r.as_raw_fd(), libc::F_SETFD, 0) };
        }
        let base = Rc::new(BaseEnv::new(std::env::vars_os()));
        let script = "ls /proc/$$/fd; readlink /proc/$$/fd/3; echo to-stderr >&2; cat; echo ready >&3";
        let plan = sh_plan(&base, script, false, Some(3));
        let child = finish_idle(spawn(plan, "slots").expect("cloned"));
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
        let child = finish_idle(spawn(plan, "slots2").expect("cloned"));
        assert!(child.stderr.is_none() && child.ready.is_none());
        assert_eq!(read_to_eof(&child.stdout), "out\nerr\n");
        // SAFETY: waitpid on our own child.
        assert_eq!(unsafe { libc::waitpid(child.pid as libc::pid_t, &mut status, 0) }, child.pid as libc::pid_t);

        // On a kernel without close_range the child copies the whole shared table with
        // unshare(CLONE_FILES); exec still leaves it only its own fds, and the slots are idle.
        TEST_PATHS.with(|p| p.set(TestPaths { without_close_range: true, ..TestPaths::default() }));
        let plan = sh_plan(&base, "ls /proc/$$/fd; readlink /proc/$$/fd/3", true, Some(3));
        let child = finish_idle(spawn(plan, "unshare").expect("cloned"));
        TEST_PATHS.with(|p| p.set(TestPaths::default()));
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
        let child = finish_idle(spawn(plan, "noslots").expect("cloned"));
        TEST_PATHS.with(|p| p.set(TestPaths::default()));
        let out = read_to_eof(&child.stdout);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[..4], ["0", "1", "2", "3"], "{out}");
        assert!(lines[4].starts_with("pipe:["), "{out}");
        // SAFETY: waitpid on our own child.
        assert_eq!(unsafe { libc::waitpid(child.pid as libc::pid_t, &mut status, 0) }, child.pid as libc::pid_t);
        drop(ours);
    }

    fn errno() -> i32 {
        io::Error::last_os_error().raw_os_error().unwrap_or(0)
    }

    fn set_errno(value: i32) {
        // SAFETY: this thread's errno.
        unsafe { *libc::__errno_location() = value };
    }

    /// A child that fails at chdir: it exits 127, and `finish` says why and reaps it.
    fn failing_child(base: &Rc<BaseEnv>) -> InFlight {
        let mut plan = sh_plan(base, "echo never", true, None);
        plan.directory = Some("/nonexistent-minisv-dir".into());
        spawn(plan, "fails").expect("cloned")
    }

    fn assert_fails_at_chdir_and_is_reaped(child: InFlight) {
        let pid = child.pid;
        let message = finish(child).err().expect("a failed start");
        assert_eq!(message, "couldn't chdir to /nonexistent-minisv-dir: ENOENT");
        let mut status = 0;
        // SAFETY: waitpid with a valid status pointer; the pid was ours.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        assert_eq!((r, errno()), (-1, libc::ECHILD), "finish reaped the failed child");
    }

    #[test]
    fn children_go_to_exec_several_at_once_each_with_its_own_fds() {
        assert_eq!(reserve_fd_slots(), None);
        let base = Rc::new(BaseEnv::new(std::env::vars_os()));
        let script = |i: usize| format!("echo child-{i}; ls /proc/$$/fd");
        // LANES children started before any is finished, each on its own lane (where the
        // architecture has raw system calls: elsewhere each is waited for in clone).
        let children: Vec<InFlight> =
            (0..LANES).map(|i| spawn(sh_plan(&base, &script(i), true, None), "lanes").expect("cloned")).collect();
        let lanes: std::collections::HashSet<usize> = children.iter().filter_map(|c| c.lane).collect();
        assert_eq!(lanes.len(), if raw::AVAILABLE { LANES } else { 0 }, "children in flight on distinct lanes");
        let mut pids = Vec::new();
        for (i, child) in children.into_iter().enumerate() {
            let child = finish(child).expect("exec'd");
            let out = read_to_eof(&child.stdout);
            assert_eq!(out.lines().collect::<Vec<_>>(), [format!("child-{i}").as_str(), "0", "1", "2"], "{out}");
            pids.push(child.pid as libc::pid_t);
        }
        for pid in pids {
            let mut status = 0;
            // SAFETY: waitpid on our own child.
            assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
            assert_eq!(status, 0);
        }

        // A child that fails while the daemon goes on reports through `finish`, and writes
        // nothing of the daemon's thread: it runs on its thread-local storage, errno included.
        // (Set before the clone: a child that wrote its ENOENT there at any time is seen.)
        set_errno(libc::EDOM);
        let child = failing_child(&base);
        // SAFETY: waitid on our own child with a valid siginfo; WNOWAIT leaves it for finish.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let waited =
            unsafe { libc::waitid(libc::P_PID, child.pid as libc::id_t, &mut info, libc::WEXITED | libc::WNOWAIT) };
        assert_eq!(waited, 0);
        assert_ne!(errno(), libc::ENOENT, "the failing child wrote the daemon's errno");
        assert_fails_at_chdir_and_is_reaped(child);
    }

    #[test]
    fn the_clone_vfork_fallback_starts_children_and_reports_failures_the_same_way() {
        let base = Rc::new(BaseEnv::new(std::env::vars_os()));
        TEST_PATHS.with(|p| p.set(TestPaths { with_vfork: true, ..TestPaths::default() }));
        let child = spawn(sh_plan(&base, "echo vfork; ls /proc/$$/fd", true, None), "vfork").expect("cloned");
        let failing = failing_child(&base);
        TEST_PATHS.with(|p| p.set(TestPaths::default()));
        assert!(child.lane.is_none() && failing.lane.is_none(), "waited for in clone");
        assert_eq!(failing.spec.failed_step.load(Ordering::Acquire), STEP_CHDIR, "failed before clone returned");
        assert_fails_at_chdir_and_is_reaped(failing);
        let child = finish(child).expect("exec'd");
        assert_eq!(read_to_eof(&child.stdout), "vfork\n0\n1\n2\n");
        let mut status = 0;
        // SAFETY: waitpid on our own child.
        assert_eq!(unsafe { libc::waitpid(child.pid as libc::pid_t, &mut status, 0) }, child.pid as libc::pid_t);
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

    #[test]
    fn a_program_found_in_a_batch_is_not_looked_up_again_until_the_batch_ends() {
        let dir = std::env::temp_dir().join(format!("minisv-spawn-found-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("mkdir");
        let tool = dir.join("tool");
        fs::write(&tool, "#!/bin/sh\n").expect("write");
        fs::set_permissions(&tool, fs::Permissions::from_mode(0o755)).expect("chmod");
        let search = format!("/nonexistent:{}", dir.display());
        let mut found = FoundCommands::default();
        let first = resolve_command_in("tool a", Some(&search), &mut found).expect("found");
        assert_eq!(first, (tool.clone(), vec!["tool".to_string(), "a".to_string()]));
        fs::remove_file(&tool).expect("rm");
        // The same batch: taken as found (its arguments still its own); exec reports it gone.
        assert_eq!(resolve_command_in("tool b", Some(&search), &mut found).expect("cached").0, tool);
        // Another search path is another lookup.
        assert!(matches!(resolve_command_in("tool", Some("/bin"), &mut found), Err(CommandError::NotFound(_))));
        found.clear();
        assert!(matches!(resolve_command_in("tool", Some(&search), &mut found), Err(CommandError::NotFound(_))));
        let _ = fs::remove_dir(&dir);
    }
}
