//! The fd slots: a few low fds where the parent puts a child's ends of its pipes for the
//! clone, so that the child copies only those of the daemon's fd table.

use std::cell::Cell;
use std::fs;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use super::lanes::LANES;

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
pub(super) struct Slots {
    idle: OwnedFd,
    /// Per lane: stdin, stdout, stderr, readiness.
    pub(super) fds: [[OwnedFd; 4]; LANES],
    /// One above the highest slot: the child keeps the fds below it.
    pub(super) end: RawFd,
    /// Per lane, the slots holding a child's end now (bit i: slot i).
    busy: [Cell<u8>; LANES],
}

impl Slots {
    pub(super) fn reserve() -> io::Result<Slots> {
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
    pub(super) fn put(&self, lane: usize, i: usize, fd: RawFd) -> io::Result<RawFd> {
        let slot = self.fds[lane][i].as_raw_fd();
        // SAFETY: dup3 onto a slot we own: it replaces the slot's open file, nothing else.
        if unsafe { libc::dup3(fd, slot, libc::O_CLOEXEC) } == -1 {
            return Err(io::Error::last_os_error());
        }
        self.busy[lane].set(self.busy[lane].get() | 1 << i);
        Ok(slot)
    }

    /// Gives the lane's slots in use back their idle fd, closing the child's ends held there.
    pub(super) fn clear(&self, lane: usize) {
        for i in 0..4 {
            if self.busy[lane].get() & 1 << i != 0 {
                // Cannot fail: both fds are ours and open, and the slot is never being allocated.
                let _ = self.put(lane, i, self.idle.as_raw_fd());
            }
        }
        self.busy[lane].set(0);
    }
}
