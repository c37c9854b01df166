//! The clone: a child is started with clone(CLONE_VM) on a stack of its lane, and, where the
//! fd slots could be reserved, sharing the daemon's fd table until it has copied the few fds it
//! needs. `Spawner` owns what every spawn reuses (the lanes' stacks and busy flags, the slots,
//! the signals to reset, what the kernel refused); the daemon's loop owns one, and each test
//! its own.

use std::cell::Cell;
use std::io;
use std::rc::Rc;
use std::sync::atomic::{AtomicI32, Ordering};

use super::child::{child_main, ChildSpec};
use super::raw;
use super::signals::SignalCache;
use super::slots::Slots;

/// How many children may be between clone and exec at once, each on its own stack and fd
/// slots (a lane). The daemon starts the next child while the previous ones exec on the other
/// CPUs, instead of sleeping in clone(CLONE_VFORK) until each has exec'd: starting 1000
/// programs was mostly that wait, and cross-CPU wake-ups.
pub const LANES: usize = 4;

/// The stack a child runs on until exec, mapped once per lane; below it a page that is never
/// accessible, so an overflow faults instead of writing over the daemon's memory.
const CHILD_STACK: usize = 64 * 1024;
const GUARD: usize = 4096;

/// Starts children; cheap to clone (all clones share the lanes). Each child in flight keeps
/// the lanes alive until it no longer runs on them.
#[derive(Clone)]
pub struct Spawner {
    pub(super) lanes: Rc<Lanes>,
}

/// What every spawn reuses. Single-threaded: a spawner and its children in flight stay on the
/// thread that made them.
pub(super) struct Lanes {
    /// The lowest address of each stack mapping (its guard page); 0 until first used. One per
    /// lane, and a spare one for a child started while every lane is taken: that one is
    /// waited for in clone (CLONE_VFORK), so the spare is always free again after.
    stacks: [Cell<usize>; LANES + 1],
    /// A child has the lane: from its clone until `finish` has seen it exec or exit.
    busy: [Cell<bool>; LANES],
    /// Per lane: nonzero while its child may run on it. The kernel zeroes it and wakes its
    /// futex when the child execs or exits (CLONE_CHILD_CLEARTID): the point where a vfork
    /// parent would resume. It lives as long as any child that may still run on the lane (each
    /// holds the `Rc`).
    running: [AtomicI32; LANES],
    pub(super) slots: Option<Slots>,
    signals: SignalCache,
    /// Set once a clone with CLONE_FILES was refused: later ones go without.
    shared_table_refused: Cell<bool>,
    /// Set once a clone(CLONE_VM) without CLONE_VFORK was refused: later ones wait for the exec.
    async_refused: Cell<bool>,
    /// Whether each of those was noted in the log already.
    noted: Cell<(bool, bool)>,
    forced: Cell<Forced>,
}

/// Paths that a test can force on its own spawner: spawning as when no fd slots could be
/// reserved, as on a kernel without close_range, and waiting in clone for the exec
/// (CLONE_VFORK). Always the default outside tests.
#[derive(Clone, Copy, Default)]
pub(super) struct Forced {
    pub(super) without_slots: bool,
    pub(super) without_close_range: bool,
    pub(super) with_vfork: bool,
}

impl Spawner {
    /// A spawner, with its fd slots reserved: to be made while the daemon's fd numbers are
    /// still low (at startup, before any listener, log or child pipe). Without them (no
    /// `/dev/null`), each child copies the whole fd table; the second value says why then.
    pub fn new() -> (Spawner, Option<String>) {
        let (slots, note) = match Slots::reserve() {
            Ok(slots) => (Some(slots), None),
            Err(e) => (
                None,
                Some(format!("could not reserve fds for spawning (each child will copy the daemon's fd table): {e}")),
            ),
        };
        let lanes = Lanes {
            stacks: Default::default(),
            busy: Default::default(),
            running: [const { AtomicI32::new(0) }; LANES],
            slots,
            signals: SignalCache::default(),
            shared_table_refused: Cell::new(false),
            async_refused: Cell::new(false),
            noted: Cell::new((false, false)),
            forced: Cell::new(Forced::default()),
        };
        (Spawner { lanes: Rc::new(lanes) }, note)
    }

    /// Each once: why children start in a slower way than they could (a clone was refused), for
    /// the daemon's log.
    pub fn take_fallback_note(&self) -> Option<&'static str> {
        let lanes = &self.lanes;
        let (noted_async, noted_table) = lanes.noted.get();
        if lanes.async_refused.get() && !noted_async {
            lanes.noted.set((true, noted_table));
            return Some(
                "clone(CLONE_VM) without CLONE_VFORK was refused (qemu-user and some sandboxes do): children \
                 are started one at a time, each waited for until it has exec'd",
            );
        }
        if lanes.shared_table_refused.get() && !noted_table {
            lanes.noted.set((noted_async, true));
            return Some(
                "clone(CLONE_VFORK | CLONE_FILES) was refused (EINVAL; qemu-user does): each child copies \
                 the daemon's whole fd table",
            );
        }
        None
    }

    #[cfg(test)]
    pub(super) fn force(&self, forced: Forced) {
        self.lanes.forced.set(forced);
    }
}

impl Lanes {
    pub(super) fn forced(&self) -> Forced {
        self.forced.get()
    }

    /// The top of stack `i` (a lane's, or the spare at `LANES`), mapped at its first use.
    fn stack_top(&self, i: usize) -> Result<usize, i32> {
        if self.stacks[i].get() == 0 {
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
            self.stacks[i].set(base as usize);
        }
        Ok(self.stacks[i].get() + GUARD + CHILD_STACK)
    }

    /// Waits until lane `lane`'s child (`pid`) has exec'd or exited, then gives the lane back.
    /// Bounded by the child: the kernel clears the word at either; a child that died without
    /// clearing it (a core dump before exec) is seen by waitid, checked every 20 ms.
    pub(super) fn release(&self, lane: usize, pid: libc::pid_t) {
        let word = &self.running[lane];
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
                libc::waitid(libc::P_PID, pid as libc::id_t, &mut info, libc::WEXITED | libc::WNOHANG | libc::WNOWAIT)
                    == 0
                    && info.si_pid() != 0
            };
            if dead {
                break;
            }
        }
        word.store(0, Ordering::Release);
        if let Some(slots) = &self.slots {
            slots.clear(lane);
        }
        self.busy[lane].set(false);
    }

    /// Starts the child with clone(CLONE_VM), as posix_spawn does: no copy of the daemon's page
    /// tables. Unlike glibc's posix_spawn, this thread does not sleep until the child has
    /// exec'd (CLONE_VFORK) where the child can run on raw system calls: the kernel tells when
    /// it has (`running`), and `finish` waits for that. The child's stack is mapped once per
    /// lane instead of mapped and unmapped for every spawn (each unmap flushed the TLBs of the
    /// other CPUs), the child shares the fd table until it has taken the few fds it needs (see
    /// `Slots`), and it also switches user, umask and the readiness fd, so no program needs a
    /// fork of the whole daemon. `spec`'s fds are the daemon's; they are moved into the lane's
    /// slots here. With every lane taken (the loop finishes one before it starts another, but a
    /// probe may start meanwhile), the child runs on the spare stack, without slots, waited for
    /// in clone. Returns the pid and the lane the child may still run on, or the errno of clone
    /// (or of placing the fds).
    pub(super) fn clone_and_exec(&self, spec: &mut ChildSpec) -> Result<(libc::pid_t, Option<usize>), i32> {
        let lane = self.busy.iter().position(|b| !b.get());
        let top = self.stack_top(lane.unwrap_or(LANES))?;
        let forced = self.forced();
        // A child with listen sockets copies the whole fd table: they are the daemon's, above
        // the slots.
        let slots = lane
            .and_then(|lane| Some((lane, self.slots.as_ref()?)))
            .filter(|_| !forced.without_slots && spec.listen.is_empty());
        let mut shared_table = false;
        if let Some((lane, slots)) = slots {
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
            if !self.shared_table_refused.get() {
                spec.keep_below = slots.end;
                shared_table = true;
            }
        }
        spec.reset_signals = self.signals.current();
        let files = if shared_table { libc::CLONE_FILES } else { 0 };
        let mut result = Err(libc::EINVAL);
        match lane {
            Some(lane) if raw::AVAILABLE && !self.async_refused.get() && !forced.with_vfork => {
                self.running[lane].store(1, Ordering::Release);
                let flags = libc::CLONE_VM | libc::CLONE_CHILD_CLEARTID | libc::SIGCHLD | files;
                result = clone_child(top, flags, spec, self.running[lane].as_ptr());
                match result {
                    Ok(pid) => {
                        self.busy[lane].set(true);
                        return Ok((pid, Some(lane)));
                    }
                    // Some emulators (qemu-user) take CLONE_VM only with the flags of a thread,
                    // and a sandbox's system call filter may refuse it: from now on, every
                    // child is started with CLONE_VFORK.
                    Err(libc::EINVAL | libc::EPERM | libc::ENOSYS) => {
                        self.async_refused.set(true);
                        result = Err(libc::EINVAL);
                    }
                    Err(_) => {}
                }
                self.running[lane].store(0, Ordering::Release);
            }
            _ => {}
        }
        if result == Err(libc::EINVAL) {
            let flags = libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD;
            result = clone_child(top, flags | files, spec, std::ptr::null_mut());
            if matches!(result, Err(libc::EINVAL | libc::EPERM | libc::ENOSYS)) && shared_table {
                // Some emulators (qemu-user) refuse CLONE_FILES with CLONE_VFORK, and a
                // sandbox's filter might. Then every child copies the whole table, as without
                // slots; the slots still hold its ends.
                self.shared_table_refused.set(true);
                spec.keep_below = 0;
                result = clone_child(top, flags, spec, std::ptr::null_mut());
            }
        }
        // With CLONE_VFORK the child has exec'd or exited by now; after a failed clone there is
        // none: the lane is free again either way.
        if let Some((lane, slots)) = slots {
            slots.clear(lane);
        }
        result.map(|pid| (pid, None))
    }
}

impl Drop for Lanes {
    fn drop(&mut self) {
        // No child runs on a stack any more: each child in flight holds the lanes until it has
        // left its lane, and one on the spare stack was waited for in clone.
        for stack in &self.stacks {
            if stack.get() != 0 {
                // SAFETY: a mapping of ours, of this size, that nothing uses any more.
                unsafe { libc::munmap(stack.get() as *mut libc::c_void, CHILD_STACK + GUARD) };
            }
        }
    }
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
    let all: raw::KernelSigset = !0;
    let mut old: raw::KernelSigset = 0;
    let size = std::mem::size_of::<raw::KernelSigset>();
    // SAFETY: rt_sigprocmask with valid sets of the kernel's size. clone gets a function that
    // makes only system calls on `spec`, which outlives the child's use of it (with CLONE_VFORK
    // this thread resumes once the child has exec'd or exited; without, `InFlight` keeps it
    // until the kernel has cleared `clear_tid`), and the top of a mapped stack.
    unsafe {
        libc::syscall(libc::SYS_rt_sigprocmask, libc::SIG_SETMASK, &all as *const _, &mut old as *mut _, size);
        let pid = raw::clone(top, flags, child_main, spec as *const ChildSpec as *mut libc::c_void, clear_tid);
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            &old as *const raw::KernelSigset,
            std::ptr::null_mut::<raw::KernelSigset>(),
            size,
        );
        pid
    }
}
