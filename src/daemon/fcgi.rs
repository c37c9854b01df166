//! `[fcgi-program:x]` sockets (reference 1.11): created by the daemon, shared by all the
//! processes of the group as their fd 0 (when it is opened and closed: `event_loop::sockets`).

use std::fs;
use std::io;
use std::net::TcpListener;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;

use crate::config::FcgiSocket;
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
