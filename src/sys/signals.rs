//! Changes to this process's signal dispositions, made or announced in one place.
//!
//! A child is started sharing the daemon's memory and must not run a handler of ours, and a
//! signal ignored here would stay ignored in the program it execs: the spawn path sets back to
//! the default every signal whose disposition is not the default. Reading all 64 dispositions
//! for every child was a cost worth avoiding, so the spawn path reads them once and again only
//! after a change, which whoever changes one announces here. The client (`minisv ctl`) and the
//! daemon both do, and in the tests they run in one process.

use std::io;
use std::sync::atomic::{AtomicU32, Ordering};

/// Bumped at every change of a disposition. Process-global on purpose: the dispositions it
/// stands for are the process's, whoever owns the code that changes them. 32 bits (32-bit MIPS
/// has no 64-bit atomics): dispositions change a few times in a process's life, not 2^32.
static GENERATION: AtomicU32 = AtomicU32::new(0);

/// To be called after this process has set a signal's handler, ignored a signal, or set one back
/// to the default by other means than `catch` (signal-hook's registration, for one).
pub fn dispositions_changed() {
    GENERATION.fetch_add(1, Ordering::AcqRel);
}

/// How many changes were announced so far: dispositions read at one generation hold until it
/// moves on.
pub fn generation() -> u64 {
    u64::from(GENERATION.load(Ordering::Acquire))
}

/// Blocks `sigs` for this thread (a pending one waits; the mask survives an exec); returns the
/// mask before, for `unblock`.
pub fn block(sigs: &[libc::c_int]) -> libc::sigset_t {
    // SAFETY: sigset_t values we own, filled by the libc calls.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for &s in sigs {
            libc::sigaddset(&mut set, s);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut old);
        old
    }
}

/// Sets the mask back to what `block` returned.
pub fn unblock(old: &libc::sigset_t) {
    // SAFETY: a mask returned by pthread_sigmask.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, old, std::ptr::null_mut()) };
}

/// Unblocks `sigs` (a new daemon after an upgrade: signals that came meanwhile are delivered
/// now, to its handlers).
pub fn unblock_only(sigs: &[libc::c_int]) {
    // SAFETY: as in `block`.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for &s in sigs {
            libc::sigaddset(&mut set, s);
        }
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
    }
}

/// Routes `sig` to `handler`, without SA_RESTART (a blocking call returns EINTR, so the caller
/// can look at what the handler recorded), and announces the change.
pub fn catch(sig: libc::c_int, handler: extern "C" fn(libc::c_int)) -> io::Result<()> {
    // SAFETY: a zeroed sigaction is a valid value; the handler is the caller's (it must be
    // async-signal-safe); the pointers passed are valid for the duration of the calls.
    let r = unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = handler as *const () as libc::sighandler_t;
        sa.sa_flags = 0;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(sig, &sa, std::ptr::null_mut())
    };
    dispositions_changed();
    if r == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
