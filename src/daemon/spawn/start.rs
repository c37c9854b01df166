//! One start, from plan to exec: the parent prepares every string and fd the child needs (it
//! must not allocate after the clone), clones it on a lane, and `finish` later says whether it
//! got as far as exec, with the step that failed if not.

use std::ffi::{CString, OsString};
use std::fs;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::rc::Rc;
use std::sync::atomic::{AtomicI32, AtomicU8};

use super::child::ChildSpec;
use super::command::py_repr;
use super::env::{compose_env, BaseEnv};
use super::lanes::{Lanes, Spawner};
use super::plan::{SpawnPlan, Spawned};
use crate::sys;

/// A child that was cloned and may not have exec'd yet. `finish` says how its start went;
/// until then its lane, and the memory it reads, stay reserved.
pub struct InFlight {
    pid: libc::pid_t,
    /// The lane whose stack and slots the child runs on; None once it no longer does (it was
    /// started with CLONE_VFORK, or `finish` saw it exec or exit).
    lane: Option<usize>,
    lanes: Rc<Lanes>,
    /// Where the child reads its instructions and reports a failure.
    spec: Box<ChildSpec>,
    /// What `spec`'s pointers point into.
    _argv: Vec<CString>,
    _listen_pid: Option<PidSlot>,
    _env_extra: Vec<CString>,
    _env_base: Rc<BaseEnv>,
    /// The parent's ends of the pipes (None for a child with its stdio on /dev/null).
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
            self.lanes.release(lane, self.pid);
        }
    }

    /// Waits until the child has exec'd or failed; on failure, reaps it and says why.
    fn outcome(&mut self) -> Result<(), String> {
        self.release_lane();
        match self.spec.failure(self.uid, self.directory.as_deref(), &self.arg0) {
            None => Ok(()),
            Some(message) => {
                reap(self.pid);
                Err(message)
            }
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        // The child may still read `spec` and run on the lane's stack.
        self.release_lane();
    }
}

/// Where the child's fds 0-2 come from.
enum Stdio {
    /// Pipes to the daemon (stdin a socket instead for fcgi-program), as the plan says.
    Pipes,
    /// All three on /dev/null.
    Null,
}

impl Spawner {
    /// Starts a child: prepares everything it needs and clones it. Whether it got as far as
    /// exec is known from `finish`. An error message says which step failed, as Supervisor's
    /// child does (`couldn't chdir to /x: ENOENT`, `couldn't exec /x: EACCES`, `too many open
    /// files ...`).
    pub fn spawn(&self, plan: SpawnPlan, name: &str) -> Result<InFlight, String> {
        self.start(plan, name, Stdio::Pipes)
    }

    /// Starts a child with its stdin, stdout and stderr on /dev/null and waits until it has
    /// exec'd: its pid, or why it did not start. The plan's `redirect_stderr`, `stdin_socket`
    /// and `ready_fd` are not used.
    pub fn spawn_quiet(&self, plan: SpawnPlan, name: &str) -> Result<u32, String> {
        let mut child = self.start(plan, name, Stdio::Null)?;
        child.outcome().map(|()| child.pid())
    }

    fn start(&self, mut plan: SpawnPlan, name: &str, stdio: Stdio) -> Result<InFlight, String> {
        let arg0 = plan.argv.first().cloned().unwrap_or_default();
        if plan.listen.len() > crate::config::MAX_LISTEN {
            return Err(format!("couldn't exec {arg0}: more than {} listen sockets", crate::config::MAX_LISTEN));
        }
        // systemd's socket passing (sd_listen_fds(3)); set last, so that these win over the
        // program's `environment=`. LISTEN_PID is written by the child, which alone knows its
        // pid, into a slot made here.
        if !plan.listen.is_empty() {
            let names: Vec<&str> = plan.listen.iter().map(|(n, _)| n.as_str()).collect();
            let names = names.join(":");
            plan.env.push(("LISTEN_FDS".into(), plan.listen.len().to_string().into()));
            plan.env.push(("LISTEN_FDNAMES".into(), names.into()));
            plan.env.push(("LISTEN_PID".into(), "".into()));
        }
        // Everything the child uses is prepared here: nothing is allocated after the clone.
        let CStrings { path, argv, env_extra, mut envp, directory } = CStrings::new(&plan, &arg0)?;
        let listen_pid = (!plan.listen.is_empty()).then(PidSlot::new);
        if let Some(slot) = &listen_pid {
            // The placeholder's entry now points to the slot.
            let placeholder = env_extra.iter().find(|kv| kv.as_bytes() == b"LISTEN_PID=").map(|kv| kv.as_ptr());
            for p in envp.iter_mut().filter(|p| Some(**p) == placeholder) {
                *p = slot.ptr() as *const libc::c_char;
            }
        }
        let (child_ends, spawned) = match stdio {
            Stdio::Pipes => pipes(&mut plan, name)?,
            Stdio::Null => (null_ends(name)?, None),
        };
        let forced = self.lanes.forced();
        let mut spec = Box::new(ChildSpec {
            argv: argv.iter().map(|a| a.as_ptr()).chain(std::iter::once(std::ptr::null())).collect(),
            envp,
            path,
            stdio: child_ends.stdio(),
            user: plan.user.as_ref().map(|u| (u.0 as libc::uid_t, u.1 as libc::gid_t)),
            groups: plan.user.as_ref().map(|u| u.2.iter().map(|g| *g as libc::gid_t).collect()).unwrap_or_default(),
            directory,
            umask: plan.umask.map(|m| m as libc::mode_t),
            ready: child_ends.ready.as_ref().zip(plan.ready_fd).map(|(w, n)| (w.as_raw_fd(), n)),
            listen: plan.listen.iter().map(|(_, fd)| fd.as_raw_fd()).collect(),
            listen_pid: listen_pid.as_ref().map_or(std::ptr::null_mut(), PidSlot::ptr),
            keep_below: 0,
            unshare_only: forced.without_close_range,
            reset_signals: 0,
            rlimits: plan
                .limits
                .rlimits
                .iter()
                .map(|(r, soft, hard)| (*r as libc::c_int, libc::rlimit64 { rlim_cur: *soft, rlim_max: *hard }))
                .collect(),
            nice: plan.limits.nice,
            oom: plan
                .limits
                .oom_score_adj
                .map(|v| (CString::new("/proc/self/oom_score_adj").unwrap_or_default(), v.to_string().into_bytes())),
            cgroup: plan
                .cgroup
                .as_ref()
                .map(|p| CString::new(std::os::unix::ffi::OsStrExt::as_bytes(p.as_os_str())).unwrap_or_default()),
            failed_step: AtomicU8::new(0),
            failed_errno: AtomicI32::new(0),
        });
        let (pid, lane) = self.lanes.clone_and_exec(&mut spec).map_err(|errno| match errno {
            libc::EAGAIN => format!("Too many processes in process table to spawn {}", py_repr(name)),
            n => format!("couldn't fork {}: {}", py_repr(name), sys::errno_str(n)),
        })?;
        // The child's ends: closed here once the child has them.
        drop(child_ends);
        Ok(InFlight {
            pid,
            lane,
            lanes: Rc::clone(&self.lanes),
            spec,
            _argv: argv,
            _listen_pid: listen_pid,
            _env_extra: env_extra,
            _env_base: plan.base,
            spawned: spawned.map(|s| Spawned { pid: pid as u32, ..s }),
            arg0,
            directory: plan.directory,
            uid: plan.user.as_ref().map_or(0, |u| u.0),
        })
    }
}

/// The memory of `LISTEN_PID=<pid>`, which the child fills in (it shares the daemon's memory)
/// before exec: owned by the start in flight until the child no longer runs.
struct PidSlot(*mut [u8; super::child::PID_SLOT]);

impl PidSlot {
    fn new() -> PidSlot {
        let mut buf = [0u8; super::child::PID_SLOT];
        buf[..super::child::PID_PREFIX.len()].copy_from_slice(super::child::PID_PREFIX);
        PidSlot(Box::into_raw(Box::new(buf)))
    }

    fn ptr(&self) -> *mut u8 {
        self.0.cast()
    }
}

impl Drop for PidSlot {
    fn drop(&mut self) {
        // SAFETY: made by Box::into_raw in `new`, freed once, after the child's last use (the
        // start in flight drops it after its lane was released).
        drop(unsafe { Box::from_raw(self.0) });
    }
}

/// The child's strings as C strings: `envp` points into `env_extra` and the plan's base
/// environment.
struct CStrings {
    path: CString,
    argv: Vec<CString>,
    env_extra: Vec<CString>,
    envp: Vec<*const libc::c_char>,
    directory: Option<CString>,
}

impl CStrings {
    fn new(plan: &SpawnPlan, arg0: &str) -> Result<CStrings, String> {
        let nul = |what: &str| format!("couldn't exec {arg0}: {what} contains a NUL byte");
        let path = CString::new(plan.program.as_os_str().as_bytes()).map_err(|_| nul("the command"))?;
        let argv: Vec<CString> = plan
            .argv
            .iter()
            .map(|a| CString::new(a.as_bytes()))
            .collect::<Result<_, _>>()
            .map_err(|_| nul("an argument"))?;
        let (env_extra, envp) = compose_env(&plan.base, &plan.env)
            .map_err(|k: OsString| nul(&format!("environment variable {}", k.to_string_lossy())))?;
        let directory = match &plan.directory {
            Some(d) => {
                Some(CString::new(d.as_bytes()).map_err(|_| format!("directory {} contains a NUL byte", py_repr(d)))?)
            }
            None => None,
        };
        Ok(CStrings { path, argv, env_extra, envp, directory })
    }
}

/// The child's ends of its fds 0-2 (stdin may be absent: fd 0 closed) and of the readiness pipe.
struct ChildEnds {
    stdin: Option<OwnedFd>,
    stdout: OwnedFd,
    /// None: stderr is stdout.
    stderr: Option<OwnedFd>,
    ready: Option<OwnedFd>,
}

impl ChildEnds {
    fn stdio(&self) -> [RawFd; 3] {
        [
            self.stdin.as_ref().map_or(-1, |fd| fd.as_raw_fd()),
            self.stdout.as_raw_fd(),
            self.stderr.as_ref().unwrap_or(&self.stdout).as_raw_fd(),
        ]
    }
}

/// Why the pipes of `name` could not be made, as Supervisor says it.
fn pipe_error(name: &str, e: io::Error) -> String {
    if e.raw_os_error() == Some(libc::EMFILE) || e.raw_os_error() == Some(libc::ENFILE) {
        format!("too many open files to spawn {}", py_repr(name))
    } else {
        format!(
            "unknown error making dispatchers for {}: {}",
            py_repr(name),
            sys::errno_str(e.raw_os_error().unwrap_or(0))
        )
    }
}

/// The pipes of a child: its ends, and the daemon's (pid still 0).
fn pipes(plan: &mut SpawnPlan, name: &str) -> Result<(ChildEnds, Option<Spawned>), String> {
    let pipe_err = |e| pipe_error(name, e);
    let stdin_pipe = if plan.stdin_socket.is_none() { Some(sys::pipe().map_err(pipe_err)?) } else { None };
    let (out_r, out_w) = sys::pipe().map_err(pipe_err)?;
    let err_pipe = if plan.redirect_stderr { None } else { Some(sys::pipe().map_err(pipe_err)?) };
    let ready_pipe = match plan.ready_fd {
        Some(_) => Some(sys::pipe().map_err(pipe_err)?),
        None => None,
    };
    let (stdin_r, stdin_w) = stdin_pipe.unzip();
    let (err_r, err_w) = err_pipe.unzip();
    let (ready_r, ready_w) = ready_pipe.unzip();
    // The daemon's ends are made non-blocking before the child exists, so that no error after
    // it has started can report a running child as a failed start. (Each end is its own open
    // file: the child's ends stay blocking.)
    for fd in [Some(&out_r), err_r.as_ref(), stdin_w.as_ref(), ready_r.as_ref()].into_iter().flatten() {
        sys::set_nonblocking(fd.as_raw_fd()).map_err(pipe_err)?;
    }
    let ends = ChildEnds { stdin: stdin_r.or(plan.stdin_socket.take()), stdout: out_w, stderr: err_w, ready: ready_w };
    let spawned = Spawned { pid: 0, stdin: stdin_w, stdout: out_r, stderr: err_r, ready: ready_r };
    Ok((ends, Some(spawned)))
}

/// Fds 0-2 of a child on /dev/null.
fn null_ends(name: &str) -> Result<ChildEnds, String> {
    let null = fs::OpenOptions::new().read(true).write(true).open("/dev/null").map_err(|e| pipe_error(name, e))?;
    let stdin = null.try_clone().map_err(|e| pipe_error(name, e))?;
    Ok(ChildEnds { stdin: Some(stdin.into()), stdout: null.into(), stderr: None, ready: None })
}

/// Waits until the child has exec'd or failed: its pipes, or the message of the step that
/// failed (the child, which exited with status 127, is reaped here, so the loop never sees an
/// unknown pid).
pub fn finish(mut child: InFlight) -> Result<Spawned, String> {
    child.outcome()?;
    Ok(child.spawned.take().expect("a child with pipes, finished once"))
}

/// SIGKILLs a child that has exec'd, and its process group (its own: the child made it), and
/// waits for the child to be gone (it cannot block a signal that kills it, so the wait is
/// short).
pub fn kill_and_reap(pid: u32) {
    // Through sys::kill and its pid guard (never pid 0 or -1: everyone).
    let _ = sys::kill(pid, libc::SIGKILL, true);
    let _ = sys::kill(pid, libc::SIGKILL, false);
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

#[cfg(test)]
mod tests;
