//! systemd's notify protocol (`sd_notify`), for programs with `ready_notify=` or
//! `watchdog_sec=`: one datagram socket for the daemon, named in each such child's
//! `NOTIFY_SOCKET`, read by the event loop. The kernel tells who sent each message
//! (SO_PASSCRED), so a message is taken only from the pid minisv started (systemd's
//! `NotifyAccess=main`), and one program cannot speak for another.
//!
//! Messages are newline-separated `KEY=VALUE` assignments. minisv acts on `READY=1`,
//! `STATUS=...`, `WATCHDOG=1` and refuses `MAINPID=` (it supervises the process it started);
//! other keys (`STOPPING=1`, `RELOADING=1`, `ERRNO=`, ...) are ignored.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// The most datagrams read per wakeup (the rest wait for the next one).
const MAX_PER_WAKEUP: usize = 256;
/// The largest message kept (systemd's limit is about the same); longer ones are cut.
const MAX_MESSAGE: usize = 4096;

/// What one assignment of a message asks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notice {
    Ready,
    Status(String),
    Watchdog,
    /// `MAINPID=`: refused (the value is kept for the log line).
    MainPid(String),
}

/// The items of a message that minisv acts on, in order.
pub fn parse(message: &str) -> Vec<Notice> {
    message
        .lines()
        .filter_map(|line| {
            let (key, value) = line.split_once('=')?;
            match (key, value) {
                ("READY", "1") => Some(Notice::Ready),
                ("STATUS", text) => Some(Notice::Status(text.to_string())),
                ("WATCHDOG", "1") => Some(Notice::Watchdog),
                ("MAINPID", pid) => Some(Notice::MainPid(pid.to_string())),
                _ => None,
            }
        })
        .collect()
}

pub struct NotifySocket {
    sock: UnixDatagram,
    /// `NOTIFY_SOCKET`'s value: `@` and the abstract name.
    address: String,
}

impl NotifySocket {
    /// A socket in the abstract namespace (nothing in the file system to clean up), named
    /// after this daemon's pid.
    pub fn open() -> io::Result<NotifySocket> {
        let name = format!("minisv-notify-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes())?;
        let sock = UnixDatagram::bind_addr(&addr)?;
        sock.set_nonblocking(true)?;
        let on: libc::c_int = 1;
        crate::syscall!(setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PASSCRED,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t
        ))?;
        Ok(NotifySocket { sock, address: format!("@{name}") })
    }

    /// The socket an old daemon held (upgrade in place), with its address.
    pub fn adopt(fd: std::os::fd::OwnedFd, address: String) -> io::Result<NotifySocket> {
        let sock = UnixDatagram::from(fd);
        sock.set_nonblocking(true)?;
        Ok(NotifySocket { sock, address })
    }

    pub fn address(&self) -> &str {
        &self.address
    }

    pub fn fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }

    /// The messages waiting, each with the pid that sent it (bounded per call).
    pub fn receive(&self, out: &mut Vec<(u32, String)>) {
        let mut buf = vec![0u8; MAX_MESSAGE];
        for _ in 0..MAX_PER_WAKEUP {
            match self.receive_one(&mut buf) {
                Ok(Some(m)) => out.push(m),
                Ok(None) => continue, // a message without credentials: not taken
                Err(_) => break,      // WouldBlock, or nothing more to read
            }
        }
    }

    fn receive_one(&self, buf: &mut [u8]) -> io::Result<Option<(u32, String)>> {
        // Room for one SCM_CREDENTIALS message, aligned as cmsg headers need.
        let mut control = [0u64; 8];
        let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
        // SAFETY: an all-zero msghdr is valid; the pointers set below outlive the call.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&control) as _;
        let n = crate::syscall!(recvmsg(self.sock.as_raw_fd(), &mut msg, libc::MSG_DONTWAIT | libc::MSG_CMSG_CLOEXEC))?;
        let mut pid = None;
        // SAFETY: msg was filled by recvmsg; the CMSG_* walk stays within msg_controllen.
        unsafe {
            let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
            while !cmsg.is_null() {
                if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_CREDENTIALS {
                    let cred: libc::ucred = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast());
                    pid = Some(cred.pid as u32);
                }
                cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
            }
        }
        let text = String::from_utf8_lossy(&buf[..n as usize]).into_owned();
        Ok(pid.map(|p| (p, text)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_read_as_systemd_writes_them() {
        assert_eq!(parse("READY=1"), vec![Notice::Ready]);
        assert_eq!(
            parse("READY=1\nSTATUS=Serving 3 clients\nWATCHDOG=1\nMAINPID=4711\nSTOPPING=1\nERRNO=2\n"),
            vec![
                Notice::Ready,
                Notice::Status("Serving 3 clients".into()),
                Notice::Watchdog,
                Notice::MainPid("4711".into())
            ]
        );
        assert_eq!(parse("READY=0\nWATCHDOG=trigger\ngarbage\n"), vec![]);
    }

    #[test]
    fn a_message_comes_with_the_pid_that_sent_it() {
        // Two sockets in one test process: the name is per pid, so the second cannot bind.
        let sock = NotifySocket::open().expect("open");
        let client = UnixDatagram::unbound().expect("client");
        let addr = SocketAddr::from_abstract_name(&sock.address()[1..]).expect("addr");
        client.send_to_addr(b"READY=1\nSTATUS=up", &addr).expect("send");
        let mut got = Vec::new();
        sock.receive(&mut got);
        assert_eq!(got, vec![(std::process::id(), "READY=1\nSTATUS=up".to_string())]);
        got.clear();
        sock.receive(&mut got);
        assert!(got.is_empty(), "nothing more");
    }
}
