//! The listening sockets the daemon makes for its programs: `[fcgi-program:x]` sockets
//! (reference 1.11), shared by all the processes of the group as their fd 0, and minisv's
//! `listen=` sockets (when each is opened and closed: `event_loop::sockets`).

use std::fs;
use std::io;
use std::net::TcpListener;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::UnixListener;

use crate::config::{FcgiSocket, ListenAddr};
use crate::sys;

/// Creates, binds and listens; the error text is Supervisor's `Could not create FastCGI socket`.
pub fn create(socket: &FcgiSocket, url: &str, backlog: Option<u32>) -> Result<OwnedFd, String> {
    let fail = |e: io::Error| format!("Could not create FastCGI socket {url}: {e}");
    let fd: OwnedFd = match socket {
        FcgiSocket::Unix { path, owner, mode } => {
            // A socket file left by an earlier run is in the way of bind.
            if fs::symlink_metadata(path).is_ok() {
                fs::remove_file(path).map_err(fail)?;
            }
            let l = UnixListener::bind(path).map_err(fail)?;
            if let Some(mode) = mode {
                fs::set_permissions(path, fs::Permissions::from_mode(*mode)).map_err(fail)?;
            }
            if let Some((uid, gid)) = owner {
                sys::chown(path, *uid, *gid).map_err(fail)?;
            }
            l.into()
        }
        FcgiSocket::Tcp { host, port } => TcpListener::bind((host.as_str(), *port)).map_err(fail)?.into(),
    };
    let backlog = backlog.map(|b| b as i32).unwrap_or(libc::SOMAXCONN);
    sys::listen(fd.as_raw_fd(), backlog).map_err(fail)?;
    Ok(fd)
}

/// Binds and listens on a `listen=` address (minisv): SO_REUSEADDR for tcp (std sets it), the
/// longest queue the system allows (clients wait there while the program restarts); a unix
/// socket's stale file is replaced, and the new one is given to `owner` (uid, gid).
pub fn bind_listen(addr: &ListenAddr, owner: Option<(u32, u32)>) -> Result<OwnedFd, String> {
    let fail = |e: io::Error| format!("cannot listen on {addr}: {e}");
    let fd: OwnedFd = match addr {
        ListenAddr::Tcp(a) => TcpListener::bind(a).map_err(fail)?.into(),
        ListenAddr::Unix(path) => {
            if fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket()) {
                fs::remove_file(path).map_err(fail)?;
            }
            let l = UnixListener::bind(path).map_err(fail)?;
            if let Some((uid, gid)) = owner {
                sys::chown(path, uid, gid).map_err(fail)?;
            }
            l.into()
        }
    };
    sys::listen(fd.as_raw_fd(), libc::SOMAXCONN).map_err(fail)?;
    Ok(fd)
}
