//! The real Python Supervisor 4.3.0, for differential tests: a venv under `target/pyvenv`, created
//! once (under a file lock, so parallel tests and test binaries do not race).

use std::fs::File;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

fn target_dir() -> PathBuf {
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"))
}

/// Holds an exclusive `flock` on a file until dropped.
pub(crate) struct Lock(File);

impl Lock {
    pub(crate) fn take(path: &Path) -> Lock {
        let f = File::create(path).unwrap_or_else(|e| panic!("cannot create lock file {}: {e}", path.display()));
        // SAFETY: flock on a descriptor we own; blocks until the lock is ours.
        let r = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) };
        assert_eq!(r, 0, "flock {} failed: {}", path.display(), std::io::Error::last_os_error());
        Lock(f)
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        // SAFETY: unlocking a descriptor we own.
        unsafe { libc::flock(self.0.as_raw_fd(), libc::LOCK_UN) };
    }
}

/// What the venv holds, as pip is asked for it.
const PACKAGES: &[&str] =
    &["supervisor==4.3.0", "superlance==2.0.0", "supervisor-stdlog==0.7.9", "supervisord-dependent-startup==1.4.0"];

fn run(cmd: &mut Command, what: &str) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The bin dir of a venv holding `supervisord` and `supervisorctl` 4.3.0, superlance's event
/// listeners (`crashmail`, `httpok`, ...), and two plugins that real configs use:
/// supervisor-stdlog (a listener and the result handler `supervisor_stdlog:log_handler`) and
/// supervisord-dependent-startup (a listener that reads `dependent_startup*` keys).
pub fn python_supervisor() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let target = target_dir();
        let _ = std::fs::create_dir_all(&target);
        let venv = target.join("pyvenv");
        let bin = venv.join("bin");
        // The marker names everything installed, so a venv from an older list is made again.
        let done = venv.join(format!(".{}-installed", PACKAGES.join("-")));
        let _lock = Lock::take(&target.join("pyvenv.lock"));
        if !done.exists() {
            let _ = std::fs::remove_dir_all(&venv);
            run(Command::new("python3").args(["-m", "venv"]).arg(&venv), "creating a Python venv (python3 -m venv)");
            run(
                Command::new(bin.join("pip")).args(["install", "--quiet"]).args(PACKAGES),
                &format!("pip install {} (the real supervisorctl, event listeners and plugins)", PACKAGES.join(" ")),
            );
            File::create(&done).unwrap_or_else(|e| panic!("cannot create {}: {e}", done.display()));
        }
        bin
    })
    .clone()
}
