//! Every libc call of the daemon outside spawning goes through this module (habit 5).

pub mod signals;
pub mod users;

use std::ffi::CString;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

/// Runs a libc call and turns -1 into the current `io::Error`.
#[macro_export]
macro_rules! syscall {
    ($fn: ident ( $($arg: expr),* $(,)* ) ) => {{
        // SAFETY: the caller passes arguments that are valid for this libc call.
        #[allow(unused_unsafe, clippy::macro_metavars_in_unsafe)]
        let res = unsafe { libc::$fn($($arg, )*) };
        if res == -1 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(res)
        }
    }};
}

/// `SIGTERM` for 15; `signal 99` for a number without a name.
pub fn signal_name(sig: i32) -> String {
    match crate::config::signal_name(sig) {
        Some(name) => name.to_string(),
        None => format!("signal {sig}"),
    }
}

/// Supervisor's `decode_wait_status`: (exitstatus, message), where a signal death is -1, plus
/// the status a shell would report (128 + N for a death by signal N).
pub fn decode_wait_status(status: i32) -> (i32, String, i32) {
    if libc::WIFEXITED(status) {
        let code = libc::WEXITSTATUS(status);
        (code, format!("exit status {code}"), code)
    } else if libc::WIFSIGNALED(status) {
        let sig = libc::WTERMSIG(status);
        let mut msg = format!("terminated by {}", signal_name(sig));
        if libc::WCOREDUMP(status) {
            msg.push_str(" (core dumped)");
        }
        (-1, msg, 128 + sig)
    } else {
        (-1, format!("unknown termination cause 0x{status:04x}"), 255)
    }
}

/// The symbolic name of an errno (`ENOENT`), as Python's `errno.errorcode` gives it.
/// Allocation-free, so a forked child may use it.
pub fn errno_str(errno: i32) -> &'static str {
    match errno {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::ESRCH => "ESRCH",
        libc::EINTR => "EINTR",
        libc::EIO => "EIO",
        libc::ENXIO => "ENXIO",
        libc::E2BIG => "E2BIG",
        libc::ENOEXEC => "ENOEXEC",
        libc::EBADF => "EBADF",
        libc::ECHILD => "ECHILD",
        libc::EAGAIN => "EAGAIN",
        libc::ENOMEM => "ENOMEM",
        libc::EACCES => "EACCES",
        libc::EFAULT => "EFAULT",
        libc::EBUSY => "EBUSY",
        libc::EEXIST => "EEXIST",
        libc::ENOTDIR => "ENOTDIR",
        libc::EISDIR => "EISDIR",
        libc::EINVAL => "EINVAL",
        libc::ENFILE => "ENFILE",
        libc::EMFILE => "EMFILE",
        libc::ETXTBSY => "ETXTBSY",
        libc::EFBIG => "EFBIG",
        libc::ENOSPC => "ENOSPC",
        libc::EROFS => "EROFS",
        libc::EPIPE => "EPIPE",
        libc::ENAMETOOLONG => "ENAMETOOLONG",
        libc::ELOOP => "ELOOP",
        libc::EADDRINUSE => "EADDRINUSE",
        libc::ECONNREFUSED => "ECONNREFUSED",
        libc::EDQUOT => "EDQUOT",
        libc::ESPIPE => "ESPIPE",
        _ => "EUNKNOWN",
    }
}

/// `access(path, X_OK)`.
pub fn access_x(path: &CString) -> io::Result<()> {
    syscall!(access(path.as_ptr(), libc::X_OK))?;
    Ok(())
}

/// One reaped child.
pub struct Reaped {
    pub pid: u32,
    pub status: i32,
}

/// `waitpid(-1, WNOHANG)`: `Ok(None)` when no child has changed state (or none is left).
pub fn reap_one() -> io::Result<Option<Reaped>> {
    let mut status = 0;
    loop {
        match syscall!(waitpid(-1, &mut status, libc::WNOHANG)) {
            Ok(0) => return Ok(None),
            Ok(pid) => return Ok(Some(Reaped { pid: pid as u32, status })),
            Err(e) if e.raw_os_error() == Some(libc::ECHILD) => return Ok(None),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// `kill(pid, sig)`, or to the process group when `group`. ESRCH is not an error (the process
/// may have died before the signal; its exit is on its way).
pub fn kill(pid: u32, sig: i32, group: bool) -> io::Result<()> {
    let target = if group { -(pid as i32) } else { pid as i32 };
    if pid == 0 || pid > i32::MAX as u32 {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    match syscall!(kill(target, sig)) {
        Ok(_) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Ok(()),
        Err(e) => Err(e),
    }
}

/// A pipe with both ends close-on-exec: `(read, write)`.
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    syscall!(pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC))?;
    // SAFETY: pipe2 succeeded, so both fds are open and owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Executes `path` in this process with `argv` and the current environment; returns only on
/// failure, with its error.
pub fn execv(path: &std::ffi::CStr, argv: &[std::ffi::CString]) -> io::Error {
    let mut ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    ptrs.push(std::ptr::null());
    // SAFETY: NUL-terminated strings and a NULL-terminated array that outlive the call; the
    // environment is the process's own (`environ`), unchanged by other threads (there are none).
    unsafe { libc::execv(path.as_ptr(), ptrs.as_ptr()) };
    io::Error::last_os_error()
}

/// Executes the file open at `fd` (execveat with AT_EMPTY_PATH, so a file since replaced or
/// deleted at its path still runs); returns only on failure.
pub fn fexecv(fd: RawFd, argv: &[std::ffi::CString]) -> io::Error {
    let mut ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    ptrs.push(std::ptr::null());
    extern "C" {
        static environ: *const *const libc::c_char;
    }
    // SAFETY: as execv; the empty path with AT_EMPTY_PATH names the fd itself.
    unsafe {
        libc::syscall(libc::SYS_execveat, fd, c"".as_ptr(), ptrs.as_ptr(), environ, libc::AT_EMPTY_PATH);
    }
    io::Error::last_os_error()
}

pub fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // One system call (F_GETFL and F_SETFL are two): this runs for every pipe of every spawn.
    let on: libc::c_int = 1;
    syscall!(ioctl(fd, libc::FIONBIO, &on))?;
    Ok(())
}

pub fn getpid() -> u32 {
    // SAFETY: getpid cannot fail.
    unsafe { libc::getpid() as u32 }
}

pub fn geteuid() -> u32 {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() }
}

pub fn umask(mask: u32) -> u32 {
    // SAFETY: umask cannot fail.
    unsafe { libc::umask(mask as libc::mode_t) as u32 }
}

/// The type of `getrlimit`'s resource argument differs between glibc and musl.
#[cfg(target_env = "gnu")]
pub type RlimitResource = libc::__rlimit_resource_t;
#[cfg(not(target_env = "gnu"))]
pub type RlimitResource = libc::c_int;

/// Raises the soft limit of `resource` to at least `min` (and the hard limit too if allowed).
/// Returns Ok(true) when it changed something.
pub fn raise_rlimit(resource: RlimitResource, min: u64) -> io::Result<bool> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    syscall!(getrlimit(resource, &mut lim))?;
    if lim.rlim_cur >= min {
        return Ok(false);
    }
    let new = libc::rlimit { rlim_cur: min, rlim_max: lim.rlim_max.max(min) };
    match syscall!(setrlimit(resource, &new)) {
        Ok(_) => Ok(true),
        Err(_) => {
            let soft_only = libc::rlimit { rlim_cur: min, rlim_max: lim.rlim_max };
            syscall!(setrlimit(resource, &soft_only))?;
            Ok(true)
        }
    }
}

/// Makes the process's fd table hold at least `fds` descriptors (fewer if RLIMIT_NOFILE is
/// lower), by placing a copy of `any` at the last of them and closing it. The kernel grows the
/// table only when an fd beyond it is opened, doubling it each time, and while the table is
/// shared (the HTTP threads, a child started with CLONE_FILES) each growth waits for an RCU
/// grace period: the daemon's thread slept 12-15 ms in each of four of them while starting
/// 1000 programs, with both CPUs idle in the first. Grown before the threads exist, it waits
/// for none; grown at once later, for one. Returns the size now guaranteed.
pub fn grow_fd_table(any: RawFd, fds: u64) -> io::Result<u64> {
    let fds = fds.min(fd_limit()).min(i32::MAX as u64);
    if fds == 0 {
        return Ok(0);
    }
    let copy = syscall!(fcntl(any, libc::F_DUPFD_CLOEXEC, (fds - 1) as libc::c_int))?;
    // SAFETY: fcntl just returned this fd, which nothing else owns.
    drop(unsafe { OwnedFd::from_raw_fd(copy) });
    Ok(fds)
}

/// The soft limit on open fds (1024 if it cannot be read; u64::MAX when unlimited).
pub fn fd_limit() -> u64 {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    match syscall!(getrlimit(libc::RLIMIT_NOFILE, &mut lim)) {
        Ok(_) => lim.rlim_cur,
        Err(_) => 1024,
    }
}

/// Becomes a child subreaper, so orphans of our children are re-parented to us and reaped.
pub fn set_child_subreaper() -> io::Result<()> {
    syscall!(prctl(libc::PR_SET_CHILD_SUBREAPER, 1 as libc::c_ulong, 0, 0, 0))?;
    Ok(())
}

/// fork() for daemonizing: returns 0 in the child, the child's pid in the parent.
/// Only called before any thread is started.
pub fn fork() -> io::Result<i32> {
    syscall!(fork())
}

pub fn setsid() -> io::Result<()> {
    syscall!(setsid())?;
    Ok(())
}

/// Points fds 0, 1 and 2 at /dev/null (a daemon has no terminal).
pub fn stdio_to_devnull() -> io::Result<()> {
    let path = CString::new("/dev/null").expect("static path has no NUL");
    let fd = syscall!(open(path.as_ptr(), libc::O_RDWR))?;
    for target in 0..3 {
        syscall!(dup2(fd, target))?;
    }
    if fd > 2 {
        syscall!(close(fd))?;
    }
    Ok(())
}

/// Sets the supplementary groups, the gid and then the uid of this process (daemon `user=`).
pub fn drop_privileges(uid: u32, gid: u32, groups: &[u32]) -> io::Result<()> {
    let groups: Vec<libc::gid_t> = groups.iter().map(|g| *g as libc::gid_t).collect();
    syscall!(setgroups(groups.len(), groups.as_ptr()))?;
    syscall!(setgid(gid))?;
    syscall!(setuid(uid))?;
    Ok(())
}

/// Local time broken down, for log timestamps and Supervisor's `%b %d %I:%M %p`.
pub fn localtime(epoch: i64) -> libc::tm {
    // SAFETY: an all-zero tm is a valid value to be overwritten.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // musl marks time_t deprecated (it will become 64-bit on 32-bit targets); it is still the
    // type localtime_r takes.
    #[allow(deprecated)]
    let t = epoch as libc::time_t;
    // SAFETY: both pointers are valid for the duration of the call; localtime_r is reentrant.
    unsafe { libc::localtime_r(&t, &mut tm) };
    tm
}

/// Whether `fd` refers to a regular file (only those are rotated).
pub fn is_regular_file(meta: &std::fs::Metadata) -> bool {
    meta.file_type().is_file()
}

/// syslog(3) with the daemon's identity, LOG_USER facility.
pub fn syslog(priority: i32, message: &str) {
    let Ok(msg) = CString::new(message.replace('\0', "\\0")) else {
        return;
    };
    let fmt = CString::new("%s").expect("static format has no NUL");
    // SAFETY: both strings are valid NUL-terminated C strings; "%s" consumes exactly one.
    unsafe { libc::syslog(libc::LOG_USER | priority, fmt.as_ptr(), msg.as_ptr()) };
}

/// `listen(fd, backlog)` again on a bound socket (it updates the backlog).
pub fn listen(fd: RawFd, backlog: i32) -> io::Result<()> {
    syscall!(listen(fd, backlog))?;
    Ok(())
}

/// `chown(path, uid, gid)`; `u32::MAX` leaves that id unchanged.
pub fn chown(path: &std::path::Path, uid: u32, gid: u32) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = CString::new(path.as_os_str().as_bytes()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    syscall!(chown(c.as_ptr(), uid, gid))?;
    Ok(())
}

/// Whether `fd` is readable right now (for a listening socket: a connection is waiting).
pub fn readable_now(fd: RawFd) -> bool {
    let mut pfd = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
    matches!(syscall!(poll(&mut pfd, 1, 0)), Ok(n) if n > 0 && pfd.revents & libc::POLLIN != 0)
}

/// Sets up glibc's malloc for a long-running daemon with bursts of HTTP threads (musl's needs
/// nothing): blocks of 1 MiB or more always come from their own mapping (glibc otherwise
/// raises that threshold up to 32 MiB after a large block is freed, and then serves such
/// blocks from a heap that keeps them, zeroing each calloc there page by page: 33 MB of RSS
/// for one discarded 100 MB request body), and threads share at most two arenas instead of up
/// to eight per core. Not lower: the 128 KiB blocks of the output path would then be mapped
/// and unmapped at every read (daemon CPU for 200 MB of logs 0.09 -> 0.13 s).
pub fn tune_allocator() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only changes malloc's parameters; called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Gives the pages of freed heap memory back to the kernel (glibc's `malloc_trim`, which also
/// releases free pages inside the heap, in every arena). musl's allocator returns large blocks
/// by itself.
pub fn release_free_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only releases memory that malloc holds free.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The largest single allocation that can be made at the moment without the kernel refusing
/// it: what is left under the commit limit in strict overcommit mode (vm.overcommit_memory=2),
/// else the physical memory (the heuristic mode refuses one allocation larger than RAM plus
/// swap). None if /proc and sysinfo say nothing.
pub fn allocatable_bytes() -> Option<u64> {
    if strict_overcommit() {
        let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
        return commit_headroom(&meminfo);
    }
    // SAFETY: sysinfo is plain old data; zeroed is valid and sysinfo() overwrites it.
    let mut si: libc::sysinfo = unsafe { std::mem::zeroed() };
    syscall!(sysinfo(&mut si)).ok()?;
    Some((si.totalram as u64).saturating_mul(u64::from(si.mem_unit.max(1))))
}

/// Whether the kernel counts every allocation against a commit limit (vm.overcommit_memory=2):
/// then allocations made at the same time add up, where otherwise each is judged alone.
pub fn strict_overcommit() -> bool {
    std::fs::read_to_string("/proc/sys/vm/overcommit_memory").is_ok_and(|s| s.trim() == "2")
}

/// CommitLimit minus Committed_AS of `/proc/meminfo`, in bytes.
fn commit_headroom(meminfo: &str) -> Option<u64> {
    let kb = |key: &str| {
        meminfo.lines().find_map(|l| l.strip_prefix(key)?.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
    };
    Some(kb("CommitLimit:")?.saturating_sub(kb("Committed_AS:")?).saturating_mul(1024))
}

/// The memory page size (the unit of RSS in `/proc/<pid>/stat`); 4096 if sysconf fails.
pub fn page_size() -> u64 {
    syscall!(sysconf(libc::_SC_PAGESIZE)).ok().filter(|&n| n > 0).map_or(4096, |n| n as u64)
}

/// Clock ticks per second (the unit of CPU times in `/proc/<pid>/stat`); 100 if sysconf fails.
pub fn clock_ticks() -> u64 {
    syscall!(sysconf(libc::_SC_CLK_TCK)).ok().filter(|&n| n > 0).map_or(100, |n| n as u64)
}

/// Zeroed memory in a mapping of its own, unmapped when dropped: its pages go back to the
/// system at once, whatever the allocator would have done with a block of that size.
pub struct MappedBuf {
    ptr: *mut u8,
    len: usize,
}

impl MappedBuf {
    pub fn new(len: usize) -> io::Result<MappedBuf> {
        // SAFETY: a fresh anonymous private mapping; nothing else refers to it.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(MappedBuf { ptr: ptr.cast(), len })
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: `len` bytes mapped readable and writable (zero-filled when new), owned by self.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

impl Drop for MappedBuf {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, unmapped once.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

impl std::fmt::Debug for MappedBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MappedBuf({} bytes)", self.len)
    }
}

/// Opens a log file for reading on the loop's thread: never blocks (O_NONBLOCK: opening a FIFO
/// for reading waits for a writer, which could be the daemon itself), and refuses anything but
/// a regular file (a FIFO or a device has no offsets to read a log at).
pub fn open_regular(path: &std::path::Path) -> io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY).open(path)?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::other(format!("{} is not a regular file", path.display())));
    }
    Ok(file)
}

/// Writes to a non-blocking fd (a child's stdin) without waiting: how much was taken (0 when
/// the pipe is full).
pub fn write_nonblocking(fd: &OwnedFd, data: &[u8]) -> io::Result<usize> {
    use std::io::Write;
    let mut f = std::fs::File::from(fd.try_clone()?);
    match f.write(data) {
        Ok(n) => Ok(n),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd;

    fn fd_table_size() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").expect("status");
        status.lines().find_map(|l| l.strip_prefix("FDSize:")).expect("FDSize").trim().parse().expect("a number")
    }

    #[test]
    fn the_fd_table_grows_to_the_size_asked_for_within_the_limit() {
        let any = std::fs::File::open("/").expect("open /");
        let limit = super::fd_limit();
        let want = (fd_table_size() * 2).min(limit);
        assert_eq!(super::grow_fd_table(any.as_raw_fd(), want).expect("grow"), want);
        assert!(fd_table_size() >= want, "FDSize {} < {want}", fd_table_size());
        assert!(!std::path::Path::new(&format!("/proc/self/fd/{}", want - 1)).exists(), "the copy is closed");
        // More than RLIMIT_NOFILE allows is cut to it, not an error (where a table that size
        // is small enough to make in a test).
        if limit <= 1 << 16 {
            assert_eq!(super::grow_fd_table(any.as_raw_fd(), u64::MAX).expect("grow"), limit);
            assert!(fd_table_size() >= limit);
        }
        assert_eq!(super::grow_fd_table(any.as_raw_fd(), 0).expect("nothing"), 0);
    }
    #[test]
    fn commit_headroom_is_the_limit_minus_what_is_committed() {
        let meminfo = "MemTotal:       16000 kB\nCommitLimit:     8000 kB\nCommitted_AS:    3000 kB\n";
        assert_eq!(super::commit_headroom(meminfo), Some(5000 * 1024));
        assert_eq!(super::commit_headroom("CommitLimit: 10 kB\nCommitted_AS: 20 kB\n"), Some(0));
        assert_eq!(super::commit_headroom("MemTotal: 1 kB\n"), None);
        assert!(super::allocatable_bytes().is_some_and(|b| b > 0));
    }
}
