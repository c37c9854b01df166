//! The few terminal and signal calls `minisv ctl` needs; every libc call of the client lives here,
//! but for setting its SIGINT handler, which goes through `sys::signals` like every change of a
//! disposition (the daemon's spawn path watches them; the tests run both in one process).

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigint(_: libc::c_int) {
    // Only an atomic store: async-signal-safe.
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Routes SIGINT to a flag instead of killing the process. Installed without SA_RESTART so a
/// blocking read returns EINTR and the caller can look at the flag.
pub fn catch_sigint() {
    // Through sys, which tells the spawn path that a disposition changed (the tests run client
    // and daemon code in one process).
    let _ = crate::sys::signals::catch(libc::SIGINT, on_sigint);
}

/// Whether Ctrl-C was pressed since the last `clear_interrupt`.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

pub fn clear_interrupt() {
    INTERRUPTED.store(false, Ordering::SeqCst);
}

pub fn is_tty(fd: i32) -> bool {
    // SAFETY: isatty only inspects the descriptor number.
    unsafe { libc::isatty(fd) == 1 }
}

/// Waits up to `timeout_ms` for `fd` to become readable. `Ok(false)` on timeout or EINTR.
pub fn wait_readable(fd: i32, timeout_ms: i32) -> io::Result<bool> {
    let mut p = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
    // SAFETY: `p` is a valid pollfd array of length 1 for the duration of the call.
    let r = unsafe { libc::poll(&mut p, 1, timeout_ms) };
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::Interrupted {
            return Ok(false);
        }
        return Err(e);
    }
    Ok(r > 0)
}

/// Reads raw bytes from a descriptor; EINTR surfaces as `Interrupted`.
pub fn read_fd(fd: i32, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid writable memory of `buf.len()` bytes.
    let r = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

/// Terminal settings saved on entry and restored on drop.
pub struct TermMode {
    fd: i32,
    saved: libc::termios,
}

impl TermMode {
    fn get(fd: i32) -> io::Result<libc::termios> {
        // SAFETY: a zeroed termios is valid; tcgetattr fills it for a terminal fd.
        unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(fd, &mut t) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(t)
        }
    }

    fn set(fd: i32, t: &libc::termios) -> io::Result<()> {
        // SAFETY: `t` is a valid termios obtained from tcgetattr and modified field by field.
        if unsafe { libc::tcsetattr(fd, libc::TCSADRAIN, t) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Character-at-a-time input without echo or signals (the line editor handles Ctrl-C itself).
    pub fn raw(fd: i32) -> io::Result<TermMode> {
        let saved = Self::get(fd)?;
        let mut t = saved;
        t.c_lflag &= !(libc::ICANON | libc::ECHO | libc::ISIG | libc::IEXTEN);
        t.c_iflag &= !(libc::IXON | libc::ICRNL);
        t.c_cc[libc::VMIN] = 1;
        t.c_cc[libc::VTIME] = 0;
        Self::set(fd, &t)?;
        Ok(TermMode { fd, saved })
    }

    /// Line input without echo (password prompts).
    pub fn no_echo(fd: i32) -> io::Result<TermMode> {
        let saved = Self::get(fd)?;
        let mut t = saved;
        t.c_lflag &= !libc::ECHO;
        Self::set(fd, &t)?;
        Ok(TermMode { fd, saved })
    }
}

impl Drop for TermMode {
    fn drop(&mut self) {
        let _ = Self::set(self.fd, &self.saved);
    }
}
