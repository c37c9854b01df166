//! A child's signal state: every signal whose disposition in the daemon is not the default is
//! set back to it in the child (a handler of ours must not run in a child that shares our
//! memory, and an ignored signal would stay ignored through exec). The set is read in the
//! parent, once per change of the dispositions (`sys::signals`); the child only writes.

use std::cell::Cell;

#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
use super::raw::syscall as sc;
use crate::sys;

/// The signals not at their default here, read again only when `sys::signals` says they
/// changed since: (the generation they were read at, the set).
#[derive(Default)]
pub(super) struct SignalCache(Cell<Option<(u64, u128)>>);

impl SignalCache {
    /// `non_default_signals()`, read anew if a disposition changed since it was last read.
    /// Only the signals that are not at their default need a reset in the child: a few, where
    /// resetting all of them was 62 system calls per child (17 ms for 1000 children here).
    pub(super) fn current(&self) -> u128 {
        let generation = sys::signals::generation();
        match self.0.get() {
            Some((read_at, set)) if read_at == generation => set,
            _ => {
                let set = non_default_signals();
                self.0.set(Some((generation, set)));
                set
            }
        }
    }
}

/// The signals (bit `sig - 1`) whose disposition in this process is not the default: those
/// with a handler, which must not run in a child that shares our memory, and those ignored,
/// which would stay ignored through exec. A signal whose disposition cannot be read counts in.
pub(super) fn non_default_signals() -> u128 {
    let mut set = 0;
    for sig in 1..=max_signal() {
        if sig != libc::SIGKILL && sig != libc::SIGSTOP && !at_default(sig) {
            set |= 1 << (sig - 1);
        }
    }
    set
}

/// In the child: the default disposition for the signals in `set` (`non_default_signals`).
pub(super) fn child_default_dispositions(set: u128) {
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

#[cfg(test)]
mod tests {
    use super::*;

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

    extern "C" fn ignore_it(_: libc::c_int) {}

    #[test]
    fn the_set_is_read_again_after_a_disposition_changed() {
        let cache = SignalCache::default();
        let bit = 1u128 << (libc::SIGUSR2 - 1);
        // No other test touches SIGUSR2.
        assert_eq!(cache.current() & bit, 0);
        sys::signals::catch(libc::SIGUSR2, ignore_it).expect("sigaction");
        assert_ne!(cache.current() & bit, 0, "a handler set through sys::signals is seen");
    }
}
