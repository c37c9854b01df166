//! The child, between clone and exec: the few system calls that turn a clone of the daemon
//! into the program (its own fd table with fds 0-2 only, default signal dispositions and an
//! empty mask, its own process group, groups, gid, uid, directory, umask), reading only what
//! the parent prepared, and reporting a failure as (step, errno) in the memory they share.

use std::convert::Infallible;
use std::ffi::CString;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicI32, AtomicU8, Ordering};

use super::raw::{syscall as sc, KernelSigset};
use super::signals::child_default_dispositions;
use crate::sys;

// Steps reported by the child when it fails before exec.
pub(super) const STEP_SIGNALS: u8 = 1;
pub(super) const STEP_GROUPS: u8 = 2;
pub(super) const STEP_GID: u8 = 3;
pub(super) const STEP_UID: u8 = 4;
pub(super) const STEP_CHDIR: u8 = 5;
pub(super) const STEP_FDS: u8 = 6;
pub(super) const STEP_PGID: u8 = 7;
pub(super) const STEP_EXEC: u8 = 8;
pub(super) const STEP_RLIMIT: u8 = 9;
pub(super) const STEP_NICE: u8 = 10;
pub(super) const STEP_OOM: u8 = 11;
pub(super) const STEP_CGROUP: u8 = 12;

/// `LISTEN_PID=` and room for any pid and a NUL.
pub(super) const PID_PREFIX: &[u8] = b"LISTEN_PID=";
pub(super) const PID_SLOT: usize = 32;

/// What the child reads between clone and exec, all prepared by the parent (the child shares
/// the parent's memory and must not allocate), and where it reports a failure.
pub(super) struct ChildSpec {
    pub(super) path: CString,
    pub(super) argv: Vec<*const libc::c_char>,
    pub(super) envp: Vec<*const libc::c_char>,
    /// The fds that become the child's 0, 1 and 2.
    pub(super) stdio: [RawFd; 3],
    /// (uid, gid) to switch to, after `groups`.
    pub(super) user: Option<(libc::uid_t, libc::gid_t)>,
    pub(super) groups: Vec<libc::gid_t>,
    pub(super) directory: Option<CString>,
    pub(super) umask: Option<libc::mode_t>,
    /// (the write end of the readiness pipe, the fd number the program expects it at).
    pub(super) ready: Option<(RawFd, RawFd)>,
    /// The `listen=` sockets, which become the child's fds 3 and up (at most `MAX_LISTEN`).
    pub(super) listen: Vec<RawFd>,
    /// Non-null: a `PID_SLOT`-byte buffer holding `PID_PREFIX`, where the child writes its pid
    /// and a NUL after the prefix (the environment entry LISTEN_PID points to it).
    pub(super) listen_pid: *mut u8,
    /// Nonzero: the child starts on the daemon's fd table and keeps a copy of the fds below
    /// this one (`Slots`).
    pub(super) keep_below: RawFd,
    /// The child takes its fd table with unshare(CLONE_FILES), as on a kernel without
    /// close_range (tests only).
    pub(super) unshare_only: bool,
    /// The signals (bit `sig - 1`) the child sets back to the default disposition.
    pub(super) reset_signals: u128,
    /// `rlimit_*=`: (resource, limits), set before `user=` takes effect.
    pub(super) rlimits: Vec<(libc::c_int, libc::rlimit64)>,
    /// `nice=`.
    pub(super) nice: Option<i32>,
    /// `oom_score_adj=`: the /proc file and the value to write in it.
    pub(super) oom: Option<(CString, Vec<u8>)>,
    /// `cgroup=`: the `cgroup.procs` file of the program's cgroup, which the child joins.
    pub(super) cgroup: Option<CString>,
    /// Set by a child that fails: the step and the errno.
    pub(super) failed_step: AtomicU8,
    pub(super) failed_errno: AtomicI32,
}

impl ChildSpec {
    /// The message of a failed start, as Supervisor's child says it (`couldn't chdir to /x:
    /// ENOENT`); None if the child did not fail. `uid`, `directory` and `arg0` are the plan's.
    pub(super) fn failure(&self, uid: u32, directory: Option<&str>, arg0: &str) -> Option<String> {
        let step = self.failed_step.load(Ordering::Acquire);
        if step == 0 {
            return None;
        }
        let en = sys::errno_str(self.failed_errno.load(Ordering::Acquire));
        Some(match step {
            STEP_SIGNALS => format!("couldn't reset signals: {en}"),
            STEP_GROUPS => format!("Could not set groups of effective user: {en}"),
            STEP_GID => format!("Could not set group id of effective user: {en}"),
            STEP_UID => format!("couldn't setuid to {uid}: {en}"),
            STEP_CHDIR => format!("couldn't chdir to {}: {en}", directory.unwrap_or("")),
            STEP_FDS => format!("couldn't set up file descriptors: {en}"),
            STEP_PGID => format!("couldn't set the process group: {en}"),
            STEP_RLIMIT => format!("couldn't set the resource limits (rlimit_*): {en}"),
            STEP_NICE => format!("couldn't set the nice value: {en}"),
            STEP_OOM => format!("couldn't set oom_score_adj: {en}"),
            STEP_CGROUP => format!("couldn't join its cgroup (cgroup=): {en}"),
            _ => format!("couldn't exec {arg0}: {en}"),
        })
    }
}

/// The child, between clone and exec. It runs on its lane's stack in the daemon's memory,
/// while the daemon's thread goes on (or waits, with CLONE_VFORK), so it only reads `spec` and
/// makes system calls with `sc`: no allocation, no lock, no errno, nothing that may panic.
/// User and groups change through the system calls themselves (libc's wrappers would have
/// every thread of the daemon change its ids too).
pub(super) extern "C" fn child_main(arg: *mut libc::c_void) -> libc::c_int {
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
unsafe fn child_exec(spec: &ChildSpec) -> Result<Infallible, (u8, i32)> {
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
        // The listen sockets' fds (and the readiness pipe's) move above the fds 0 to 2+n that
        // the stdio and the sockets are put at, so that no dup overwrites a source.
        let n = spec.listen.len().min(crate::config::MAX_LISTEN);
        let top = 3 + n as RawFd;
        let mut listen = [-1 as RawFd; crate::config::MAX_LISTEN];
        let mut ready = spec.ready;
        for (i, fd) in spec.listen.iter().take(n).enumerate() {
            listen[i] = *fd;
        }
        if n > 0 {
            for fd in listen[..n].iter_mut().chain(ready.as_mut().map(|r| &mut r.0)) {
                if *fd < top {
                    let moved = sc(libc::SYS_fcntl, a(*fd as usize, libc::F_DUPFD_CLOEXEC as usize, top as usize));
                    *fd = moved.map_err(at(STEP_FDS))? as RawFd;
                }
            }
        }
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
        // Its own cgroup first, so that everything it starts is counted there.
        if let Some(path) = &spec.cgroup {
            let flags = (libc::O_WRONLY | libc::O_CLOEXEC) as usize;
            let open = [libc::AT_FDCWD as isize as usize, path.as_ptr() as usize, flags, 0, 0, 0];
            let fd = sc(libc::SYS_openat, open).map_err(at(STEP_CGROUP))?;
            let written = sc(libc::SYS_write, a(fd, b"0".as_ptr() as usize, 1));
            let _ = sc(libc::SYS_close, a(fd, 0, 0));
            written.map_err(at(STEP_CGROUP))?;
        }
        // Limits, priority and OOM score while still the daemon's user: root may raise a hard
        // limit, lower the nice value and the OOM score; the program's user may not.
        for (resource, limit) in &spec.rlimits {
            let set = [0, *resource as usize, limit as *const libc::rlimit64 as usize, 0, 0, 0];
            sc(libc::SYS_prlimit64, set).map_err(at(STEP_RLIMIT))?;
        }
        if let Some(nice) = spec.nice {
            sc(libc::SYS_setpriority, a(libc::PRIO_PROCESS as usize, 0, nice as isize as usize))
                .map_err(at(STEP_NICE))?;
        }
        if let Some((path, value)) = &spec.oom {
            let flags = (libc::O_WRONLY | libc::O_CLOEXEC) as usize;
            let open = [libc::AT_FDCWD as isize as usize, path.as_ptr() as usize, flags, 0, 0, 0];
            let fd = sc(libc::SYS_openat, open).map_err(at(STEP_OOM))?;
            let written = sc(libc::SYS_write, a(fd, value.as_ptr() as usize, value.len()));
            let _ = sc(libc::SYS_close, a(fd, 0, 0));
            written.map_err(at(STEP_OOM))?;
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
        // After the close-on-exec sweep: the listen sockets at 3 and up, and the readiness fd,
        // are the fds besides 0-2 that the program keeps.
        for (target, fd) in (3..).zip(&listen[..n]) {
            sc(libc::SYS_dup3, a(*fd as usize, target, 0)).map_err(at(STEP_FDS))?;
        }
        if !spec.listen_pid.is_null() {
            let pid = sc(libc::SYS_getpid, a(0, 0, 0)).unwrap_or(0);
            write_pid(spec.listen_pid, pid);
        }
        if let Some((fd, n)) = ready {
            let kept = if fd == n {
                sc(libc::SYS_fcntl, a(fd as usize, libc::F_SETFD as usize, 0))
            } else {
                sc(libc::SYS_dup3, a(fd as usize, n as usize, 0))
            };
            kept.map_err(at(STEP_FDS))?;
        }
        // The raw system call: libc's sigprocmask keeps its own internal signals (32, 33)
        // blocked, and that mask would survive exec.
        let empty: KernelSigset = 0;
        let size = std::mem::size_of::<KernelSigset>();
        sc(
            libc::SYS_rt_sigprocmask,
            [libc::SIG_SETMASK as usize, &empty as *const KernelSigset as usize, 0, size, 0, 0],
        )
        .map_err(at(STEP_SIGNALS))?;
        let exec = [spec.path.as_ptr() as usize, spec.argv.as_ptr() as usize, spec.envp.as_ptr() as usize, 0, 0, 0];
        // It returns only on failure.
        Err((STEP_EXEC, sc(libc::SYS_execve, exec).err().unwrap_or(libc::ENOEXEC)))
    }
}

/// Writes `pid` in decimal and a NUL after `PID_PREFIX` in the `PID_SLOT`-byte buffer `slot`
/// (no allocation: this runs in the child).
///
/// # Safety
/// `slot` points to `PID_SLOT` writable bytes that nothing else uses meanwhile.
unsafe fn write_pid(slot: *mut u8, pid: usize) {
    let mut digits = [0u8; 20];
    let (mut len, mut rest) = (0, pid);
    loop {
        digits[len] = b'0' + (rest % 10) as u8;
        len += 1;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    let start = PID_PREFIX.len();
    for i in 0..len.min(PID_SLOT - start - 1) {
        // SAFETY: within the slot (start + len + 1 <= PID_SLOT).
        unsafe { *slot.add(start + i) = digits[len - 1 - i] };
    }
    // SAFETY: as above.
    unsafe { *slot.add(start + len.min(PID_SLOT - start - 1)) = 0 };
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
