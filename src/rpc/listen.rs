//! Binding the control sockets as Supervisor does (1.5, 1.6), before daemonizing.

use std::ffi::CString;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, ToSocketAddrs};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::{InetHttpServerConfig, UnixHttpServerConfig};
use crate::syscall;

/// Supervisor's usage error for a port or socket that something else answers on.
pub const ADDR_IN_USE: &str = "Another program is already listening on a port that one of our \
HTTP servers is configured to use.  Shut this program down first before starting supervisord.";

/// How often a stale socket is unlinked and the link retried before giving up; a second
/// supervisord racing for the same file is the only way to need more than one retry.
const STALE_RETRIES: u32 = 5;

/// A bound unix socket; its file is unlinked when this is dropped, unless `release`d.
pub struct UnixSocket {
    pub listener: UnixListener,
    pub unlinker: Unlinker,
}

impl UnixSocket {
    /// Hands the unlinking over to the caller.
    pub fn release(self) -> (UnixListener, PathBuf) {
        (self.listener, self.unlinker.disarm())
    }

    pub fn file(&self) -> &Path {
        &self.unlinker.0
    }
}

/// Unlinks a socket file when dropped.
pub struct Unlinker(PathBuf);

impl Unlinker {
    pub fn new(file: PathBuf) -> Unlinker {
        Unlinker(file)
    }

    fn disarm(mut self) -> PathBuf {
        std::mem::take(&mut self.0)
    }
}

impl Drop for Unlinker {
    fn drop(&mut self) {
        if !self.0.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

/// Removes `path` if it is a socket; a missing path is fine; anything else is an error that
/// names it (the configured socket path points at a file that is not ours to remove).
fn remove_socket(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::FileTypeExt;
    match std::fs::symlink_metadata(path) {
        Err(_) => Ok(()),
        Ok(meta) if meta.file_type().is_socket() => std::fs::remove_file(path).or(Ok(())),
        Ok(_) => Err(format!(
            "{} exists and is not a socket; not removing it (check [unix_http_server] file=)",
            path.display()
        )),
    }
}

/// Binds `[unix_http_server]`: `<file>.<pid>`, chmod, hard link to `<file>`, chown.
/// The name a socket for `file` is bound at (then linked at `file`): what its getsockname says.
pub fn bound_name(file: &std::path::Path) -> PathBuf {
    PathBuf::from(format!("{}.{}", file.display(), std::process::id()))
}

pub fn bind_unix(cfg: &UnixHttpServerConfig) -> Result<UnixSocket, String> {
    let file = cfg.file.clone();
    let temp = bound_name(&file);
    // Only a socket is ever unlinked: a stale-socket check must not remove someone's file.
    remove_socket(&temp)?;
    let mut attempts = 0;
    let listener = loop {
        attempts += 1;
        // The socket file is created without group or other access, so there is no moment in
        // which it is more open than `chmod` (this runs before any thread that creates files).
        let old_mask = crate::sys::umask(0o077);
        let bound = UnixListener::bind(&temp);
        crate::sys::umask(old_mask);
        let listener = bound.map_err(|e| socket_error(&e))?;
        let linked = chmod(&temp, cfg.chmod).and_then(|()| std::fs::hard_link(&temp, &file));
        let _ = std::fs::remove_file(&temp);
        match linked {
            Ok(()) => break listener,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempts <= STALE_RETRIES => {
                drop(listener);
                if is_used(&file) {
                    return Err(ADDR_IN_USE.to_string());
                }
                eprintln!("Unlinking stale socket {}", file.display());
                remove_socket(&file)?;
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Err(ADDR_IN_USE.to_string()),
            Err(e) => return Err(socket_error(&e)),
        }
    };
    let sock = UnixSocket { listener, unlinker: Unlinker(file) };
    if let Some((uid, gid)) = cfg.chown {
        chown(sock.file(), uid, gid).map_err(|e| {
            if e.raw_os_error() == Some(libc::EPERM) {
                format!(
                    "Not permitted to chown {} to uid/gid ({}, {}); adjust \"sockchown\" value in \
                     config file or on command line to values that the current user ({}) can \
                     successfully chown",
                    sock.file().display(),
                    python_id(uid),
                    python_id(gid),
                    current_user_name()
                )
            } else {
                socket_error(&e)
            }
        })?;
    }
    Ok(sock)
}

/// Binds `[inet_http_server]`; an empty host means all interfaces. Supervisor's sockets are
/// AF_INET only, so a host name resolves to its first IPv4 address.
pub fn bind_inet(cfg: &InetHttpServerConfig) -> Result<TcpListener, String> {
    let ip = if cfg.host.is_empty() || cfg.host == "*" {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    } else if let Ok(ip) = cfg.host.parse::<Ipv4Addr>() {
        IpAddr::V4(ip)
    } else {
        let found =
            (cfg.host.as_str(), cfg.port).to_socket_addrs().ok().and_then(|mut addrs| addrs.find(|a| a.is_ipv4()));
        match found {
            Some(a) => a.ip(),
            None => {
                return Err(format!(
                    "Cannot open an HTTP server: socket.error reported cannot resolve host {:?}",
                    cfg.host
                ))
            }
        }
    };
    // std sets SO_REUSEADDR on unix, as Supervisor does.
    TcpListener::bind(SocketAddr::new(ip, cfg.port)).map_err(|e| socket_error(&e))
}

/// Supervisor's `openhttpservers` rendering of a socket error.
fn socket_error(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::EADDRINUSE) => ADDR_IN_USE.to_string(),
        Some(n) => match crate::sys::errno_str(n) {
            "EUNKNOWN" => format!("Cannot open an HTTP server: socket.error reported {n}"),
            name => format!("Cannot open an HTTP server: socket.error reported errno.{name} ({n})"),
        },
        None => format!("Cannot open an HTTP server: socket.error reported {e}"),
    }
}

/// Supervisor's `checkused`: something that accepts a connection and takes `GET / HTTP/1.0`
/// is a live server. Python waits forever for the answer; a server that accepts but stays
/// silent for a few seconds is taken as alive too.
fn is_used(file: &Path) -> bool {
    let Ok(mut s) = UnixStream::connect(file) else {
        return false;
    };
    if s.set_read_timeout(Some(Duration::from_secs(3))).is_err() {
        return true;
    }
    if s.write_all(b"GET / HTTP/1.0\r\n\r\n").is_err() {
        return false;
    }
    let mut byte = [0u8; 1];
    // Python counts an immediate EOF (recv gives b'') as an answer too.
    match s.read(&mut byte) {
        Ok(n) => n <= byte.len(),
        Err(e) => matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut),
    }
}

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

fn chmod(path: &Path, mode: u32) -> io::Result<()> {
    let p = c_path(path)?;
    syscall!(chmod(p.as_ptr(), mode as libc::mode_t)).map(|_| ())
}

/// `u32::MAX` leaves the id unchanged (chown's -1).
fn chown(path: &Path, uid: u32, gid: u32) -> io::Result<()> {
    let p = c_path(path)?;
    syscall!(chown(p.as_ptr(), uid as libc::uid_t, gid as libc::gid_t)).map(|_| ())
}

/// Python prints the "unchanged" id as -1.
fn python_id(id: u32) -> String {
    if id == u32::MAX {
        "-1".to_string()
    } else {
        id.to_string()
    }
}

fn current_user_name() -> String {
    let uid = crate::sys::geteuid();
    crate::sys::users::user_by_uid(uid).map_or_else(|| uid.to_string(), |p| p.name)
}
