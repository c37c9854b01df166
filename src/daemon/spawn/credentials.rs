//! Credentials (`credentials=NAME:PATH,...`), systemd's idea: at each spawn the daemon copies
//! each file into a directory of the process's own, readable only by the program's user, and
//! gives its path in `CREDENTIALS_DIRECTORY`; the directory is removed when the process exits.
//! A secret then lives in a file the program reads, not in its environment (which `ps e`, core
//! dumps and every child it starts can see), and the source file can stay readable by root only.
//!
//! Layout: `<credentials_directory>/<group>:<process>/<NAME>`; the top directory is the
//! daemon's (mode 0711: others may pass through, not list), each process's is 0700 and owned by
//! its user, each file 0400.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::dotenv::io_reason;
use crate::config::model::ProcessConfig;

/// The largest credential file copied.
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// `credentials_directory`'s default: under /run as root, else under $XDG_RUNTIME_DIR or the
/// temporary directory, per user.
pub fn default_root() -> PathBuf {
    let euid = crate::sys::geteuid();
    if euid == 0 {
        return PathBuf::from("/run/minisv/credentials");
    }
    match std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        Some(d) => PathBuf::from(d).join("minisv/credentials"),
        None => std::env::temp_dir().join(format!("minisv-{euid}/credentials")),
    }
}

/// The directory of one process's credentials.
pub fn process_dir(root: &Path, group: &str, name: &str) -> PathBuf {
    root.join(format!("{group}:{name}"))
}

/// Copies the credentials of `pc` into a fresh directory for this spawn; its path. None when the
/// program has none. Err: why the spawn cannot go on (no credential value is ever in it).
pub fn prepare(root: &Path, group: &str, pc: &ProcessConfig) -> Result<Option<PathBuf>, String> {
    if pc.credentials.is_empty() {
        return Ok(None);
    }
    ensure_root(root)?;
    let dir = process_dir(root, group, &pc.name);
    remove_dir(&dir);
    let fail = |what: &str, p: &Path, e: std::io::Error| {
        format!("credentials: cannot {what} {}: {}", p.display(), io_reason(&e))
    };
    fs::DirBuilder::new().mode(0o700).create(&dir).map_err(|e| fail("create", &dir, e))?;
    let owner = pc.user.as_ref().filter(|_| crate::sys::geteuid() == 0).map(|u| (u.uid, u.gid));
    let result = (|| {
        for (name, source) in &pc.credentials {
            let mut data = Vec::new();
            fs::File::open(source)
                .and_then(|f| f.take(MAX_FILE_BYTES + 1).read_to_end(&mut data))
                .map_err(|e| fail("read", source, e))?;
            if data.len() as u64 > MAX_FILE_BYTES {
                return Err(format!("credentials: {} is larger than 1024 KiB", source.display()));
            }
            let target = dir.join(name);
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o400)
                .open(&target)
                .map_err(|e| fail("create", &target, e))?;
            f.write_all(&data).map_err(|e| fail("write", &target, e))?;
            if let Some((uid, gid)) = owner {
                std::os::unix::fs::fchown(&f, Some(uid), Some(gid)).map_err(|e| fail("chown", &target, e))?;
            }
        }
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).map_err(|e| fail("chown", &dir, e))?;
        }
        Ok(())
    })();
    match result {
        Ok(()) => Ok(Some(dir)),
        Err(e) => {
            remove_dir(&dir);
            Err(e)
        }
    }
}

/// Removes a process's credentials (after it exited); nothing when it has none.
pub fn remove(root: &Path, group: &str, pc: &ProcessConfig) {
    if !pc.credentials.is_empty() {
        remove_dir(&process_dir(root, group, &pc.name));
    }
}

fn remove_dir(dir: &Path) {
    // Never follows a symlink planted in its place: remove_dir_all removes the link itself.
    let _ = fs::remove_dir_all(dir);
}

/// Creates the top directory (0711) if need be, and refuses one that others could write to or
/// that another user owns: they could swap a process's directory for their own.
fn ensure_root(root: &Path) -> Result<(), String> {
    if !root.exists() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o711)
            .create(root)
            .map_err(|e| format!("credentials: cannot create {}: {}", root.display(), io_reason(&e)))?;
    }
    let meta = fs::symlink_metadata(root)
        .map_err(|e| format!("credentials: cannot use {}: {}", root.display(), io_reason(&e)))?;
    if !meta.is_dir() || meta.uid() != crate::sys::geteuid() || meta.mode() & 0o022 != 0 {
        return Err(format!(
            "credentials: {} must be a directory of minisv's user that no one else can write to",
            root.display()
        ));
    }
    Ok(())
}
