//! Starting a child (reference 2.3): resolve the command in the parent, plan everything that
//! needs allocation before fork, and keep the child side to async-signal-safe calls.
//!
//! The child gets fds 0-2 only (everything else is marked close-on-exec: fix of Q7), a clean
//! signal mask and default dispositions, its own process group, then supplementary groups, gid
//! and uid, the directory and the umask. A failure in the child is reported to the parent
//! through a close-on-exec pipe as (step, errno), so the parent can say which step failed.

use std::ffi::{CString, OsString};
use std::fs;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

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

/// Everything the child needs, prepared in the parent.
pub struct SpawnPlan {
    pub program: PathBuf,
    pub argv: Vec<String>,
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

/// Forks and execs. An error message says which step failed, as Supervisor's child does
/// (`couldn't chdir to /x: ENOENT`, `couldn't exec /x: EACCES`, `too many open files ...`).
pub fn spawn(plan: SpawnPlan, name: &str) -> Result<Spawned, String> {
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
    let stdin_pipe = if plan.stdin_socket.is_none() { Some(sys::pipe().map_err(pipe_err)?) } else { None };
    let (out_r, out_w) = sys::pipe().map_err(pipe_err)?;
    let err_pipe = if plan.redirect_stderr { None } else { Some(sys::pipe().map_err(pipe_err)?) };
    let ready_pipe = match plan.ready_fd {
        Some(_) => Some(sys::pipe().map_err(pipe_err)?),
        None => None,
    };

    let mut cmd = Command::new(&plan.program);
    if let Some(arg0) = plan.argv.first() {
        cmd.arg0(arg0);
    }
    cmd.args(plan.argv.iter().skip(1));
    cmd.env_clear();
    cmd.envs(plan.env.iter().map(|(k, v)| (k, v)));
    cmd.process_group(0);
    // The child's ends move into the Command (closed in the parent when it is dropped); the
    // parent keeps its own ends only.
    let (stdin_r, stdin_w) = match stdin_pipe {
        Some((r, w)) => (Some(r), Some(w)),
        None => (None, None),
    };
    let stdin = match (stdin_r, plan.stdin_socket) {
        (_, Some(sock)) => Stdio::from(sock),
        (Some(r), None) => Stdio::from(r),
        (None, None) => Stdio::null(),
    };
    cmd.stdin(stdin);
    let (err_r, err_w) = match err_pipe {
        Some((r, w)) => (Some(r), w),
        None => (None, out_w.try_clone().map_err(pipe_err)?),
    };
    cmd.stdout(Stdio::from(out_w));
    cmd.stderr(Stdio::from(err_w));

    // The fast path: with nothing to do between fork and exec that std cannot do itself, std
    // uses posix_spawn (a vfork: no copy of the daemon's page tables, much less CPU per spawn).
    // The signal mask is emptied and SIGPIPE reset by std; other ignored signals would be
    // inherited, so the fast path is taken only when the daemon ignores none (checked once);
    // stray fds were marked close-on-exec at startup (`mark_fds_cloexec`).
    let fast = plan.user.is_none() && plan.umask.is_none() && plan.ready_fd.is_none() && !ignores_signals();
    if fast {
        if let Some(dir) = &plan.directory {
            // posix_spawn reports a failed chdir as a bare errno: say which step it was.
            if let Err(e) = fs::metadata(dir).and_then(|m| {
                if m.is_dir() {
                    Ok(())
                } else {
                    Err(io::Error::from_raw_os_error(libc::ENOTDIR))
                }
            }) {
                return Err(format!("couldn't chdir to {}: {}", dir, sys::errno_str(e.raw_os_error().unwrap_or(0))));
            }
            cmd.current_dir(dir);
        }
    }

    // Everything the child uses is prepared here: no allocation happens after fork.
    let dir_c = match &plan.directory {
        Some(d) => {
            Some(CString::new(d.as_bytes()).map_err(|_| format!("directory {} contains a NUL byte", py_repr(d)))?)
        }
        None => None,
    };
    let user = plan.user.clone();
    let groups: Vec<libc::gid_t> =
        user.as_ref().map(|u| u.2.iter().map(|g| *g as libc::gid_t).collect()).unwrap_or_default();
    let umask = plan.umask;
    let ready = ready_pipe.as_ref().zip(plan.ready_fd).map(|((_, w), n)| (w.as_raw_fd(), n));
    // The child's report of the step that failed (the slow path only: posix_spawn has none).
    let (status_r, status_w) = if fast {
        (None, None)
    } else {
        let (r, w) = sys::pipe().map_err(pipe_err)?;
        (Some(r), Some(w))
    };
    let status_fd = status_w.as_ref().map_or(-1, |w| w.as_raw_fd());
    // SAFETY: the closure only makes async-signal-safe calls (sigprocmask, sigaction, setgroups,
    // setgid, setuid, chdir, umask, syscall(close_range), fcntl, write) on data prepared above.
    if !fast {
        unsafe {
            cmd.pre_exec(move || {
                let fail = |step: u8| -> io::Error {
                    let err = io::Error::last_os_error();
                    let errno = err.raw_os_error().unwrap_or(0);
                    let msg = [step, (errno & 0xff) as u8, ((errno >> 8) & 0xff) as u8];
                    libc::write(status_fd, msg.as_ptr() as *const libc::c_void, msg.len());
                    err
                };
                if !child_reset_signals() {
                    return Err(fail(STEP_SIGNALS));
                }
                if let Some((uid, gid, _)) = &user {
                    if libc::setgroups(groups.len(), groups.as_ptr()) == -1 {
                        return Err(fail(STEP_GROUPS));
                    }
                    if libc::setgid(*gid) == -1 {
                        return Err(fail(STEP_GID));
                    }
                    if libc::setuid(*uid) == -1 {
                        return Err(fail(STEP_UID));
                    }
                }
                if let Some(dir) = &dir_c {
                    if libc::chdir(dir.as_ptr()) == -1 {
                        return Err(fail(STEP_CHDIR));
                    }
                }
                if let Some(mask) = umask {
                    libc::umask(mask as libc::mode_t);
                }
                if !child_cloexec_from(3) {
                    return Err(fail(STEP_FDS));
                }
                // After the close-on-exec sweep: the readiness fd is the one fd besides 0-2
                // that the program keeps.
                if let Some((fd, n)) = ready {
                    let ok = if fd == n { libc::fcntl(fd, libc::F_SETFD, 0) != -1 } else { libc::dup2(fd, n) != -1 };
                    if !ok {
                        return Err(fail(STEP_FDS));
                    }
                }
                Ok(())
            });
        }
    }

    let result = cmd.spawn();
    drop(cmd); // closes the child's ends held by the Command
    drop(status_w);
    match result {
        Ok(child) => {
            let pid = child.id();
            // The loop reaps with waitpid(-1); the Child handle is only dropped, never waited on.
            drop(child);
            for fd in [Some(&out_r), err_r.as_ref(), stdin_w.as_ref()].into_iter().flatten() {
                sys::set_nonblocking(fd.as_raw_fd()).map_err(pipe_err)?;
            }
            let ready = ready_pipe.map(|(r, _)| r);
            if let Some(r) = &ready {
                sys::set_nonblocking(r.as_raw_fd()).map_err(pipe_err)?;
            }
            Ok(Spawned { pid, stdin: stdin_w, stdout: out_r, stderr: err_r, ready })
        }
        Err(e) => {
            let errno = e.raw_os_error().unwrap_or(0);
            let mut report = [0u8; 3];
            let step = match status_r.map(|r| fs::File::from(r).read(&mut report)) {
                Some(Ok(3)) => Some((report[0], i32::from(report[1]) | (i32::from(report[2]) << 8))),
                _ => None,
            };
            let en = |n: i32| sys::errno_str(n);
            let msg = match step {
                Some((STEP_SIGNALS, n)) => format!("couldn't reset signals: {}", en(n)),
                Some((STEP_GROUPS, n)) => {
                    format!("Could not set groups of effective user: {}", en(n))
                }
                Some((STEP_GID, n)) => {
                    format!("Could not set group id of effective user: {}", en(n))
                }
                Some((STEP_UID, n)) => {
                    format!("couldn't setuid to {}: {}", user_uid(&plan.user), en(n))
                }
                Some((STEP_CHDIR, n)) => {
                    format!("couldn't chdir to {}: {}", plan.directory.as_deref().unwrap_or(""), en(n))
                }
                Some((STEP_FDS, n)) => format!("couldn't close file descriptors: {}", en(n)),
                Some((_, n)) => format!("couldn't start: {}", en(n)),
                None if errno == libc::EAGAIN => {
                    format!("Too many processes in process table to spawn {}", py_repr(name))
                }
                None if errno == libc::EMFILE || errno == libc::ENFILE => {
                    format!("too many open files to spawn {}", py_repr(name))
                }
                None => format!("couldn't exec {}: {}", plan.argv.first().map(String::as_str).unwrap_or(""), en(errno)),
            };
            Err(msg)
        }
    }
}

fn user_uid(user: &Option<(u32, u32, Vec<u32>)>) -> u32 {
    user.as_ref().map(|u| u.0).unwrap_or(0)
}

/// Whether this process ignores a signal (other than SIGPIPE, which Rust ignores and std resets
/// for children): such a disposition would pass to children through exec. Checked once.
fn ignores_signals() -> bool {
    static IGNORES: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *IGNORES.get_or_init(|| {
        (1..libc::SIGRTMAX())
            .filter(|s| *s != libc::SIGPIPE && *s != libc::SIGKILL && *s != libc::SIGSTOP)
            .any(raw_is_ignored)
    })
}

/// Marks every fd from 3 up close-on-exec in the daemon itself, once at startup: fds inherited
/// from whoever started it must not reach the programs (fix of Q7), and std opens ours with
/// O_CLOEXEC already.
pub fn mark_fds_cloexec() {
    child_cloexec_from(3);
}

/// In the child: empty signal mask and default dispositions for every catchable signal.
fn child_reset_signals() -> bool {
    // SAFETY: sigemptyset/sigprocmask/sigaction are async-signal-safe and get valid pointers.
    unsafe {
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
            return false;
        }
        let mut act: libc::sigaction = std::mem::zeroed();
        act.sa_sigaction = libc::SIG_DFL;
        libc::sigemptyset(&mut act.sa_mask);
        for sig in 1..libc::SIGRTMAX() {
            if sig == libc::SIGKILL || sig == libc::SIGSTOP {
                continue;
            }
            if libc::sigaction(sig, &act, std::ptr::null_mut()) == -1 {
                // libc refuses its own internal signals (32, 33); an ignored disposition of
                // those would survive exec, so reset them with the system call itself.
                raw_default_disposition(sig);
            }
        }
    }
    true
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

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn raw_default_disposition(_sig: libc::c_int) {}

/// Whether `sig` is ignored, asked of the kernel itself (libc refuses to tell for its own
/// internal signals 32 and 33, which an ignoring parent may still have passed on to us).
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
fn raw_is_ignored(sig: libc::c_int) -> bool {
    let mut old = KernelSigaction { handler: 0, flags: 0, restorer: 0, mask: 0 };
    // SAFETY: rt_sigaction with no new action only reads the disposition into `old`.
    let r = unsafe {
        libc::syscall(
            libc::SYS_rt_sigaction,
            sig,
            std::ptr::null::<KernelSigaction>(),
            &mut old as *mut KernelSigaction,
            8usize,
        )
    };
    r == 0 && old.handler == libc::SIG_IGN
}

/// Elsewhere: assume something may be ignored, so the careful spawn path resets everything.
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn raw_is_ignored(_sig: libc::c_int) -> bool {
    true
}

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
