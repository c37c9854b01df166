//! cgroup v2 for programs with `cgroup=true` or a cgroup limit (`memory_max=`, `memory_high=`,
//! `cpu_max=`, `pids_max=`): each such program runs in a cgroup of its own, below a base
//! cgroup of this daemon's, `<the daemon's cgroup>/minisv.<pid>`, so that everything it starts
//! stays countable and killable whatever process group or session it moves to.
//!
//! The daemon finds its cgroup in `/proc/self/cgroup` and the cgroup2 mount in
//! `/proc/self/mountinfo`. Controllers are enabled on the way down where they are available;
//! when the daemon's own cgroup cannot enable them because the daemon is in it (a systemd unit
//! with `Delegate=yes`: no process may sit in a cgroup that passes controllers on), the daemon
//! moves into `minisv.<pid>/supervisor` first. A limit whose controller is not available is
//! reported, and the program runs without it. An upgrade in place finds the same base again
//! (same pid), from the daemon's cgroup, moved or not.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// The leaf the daemon moves into when its own cgroup must pass controllers on.
const DAEMON_LEAF: &str = "supervisor";
/// The controllers minisv's limits use.
const CONTROLLERS: [&str; 3] = ["memory", "cpu", "pids"];

pub struct Cgroups {
    /// `<the daemon's cgroup>/minisv.<pid>`.
    base: PathBuf,
    /// Set up (made, controllers enabled) at the first program that needs it.
    ready: bool,
    /// The controllers that the programs' cgroups have.
    enabled: Vec<String>,
    /// What the set-up could not do (logged once).
    notes: Vec<String>,
}

/// A program's cgroup: its directory, and its OOM kills counted before this start.
#[derive(Clone, Debug)]
pub struct ProgramCgroup {
    pub dir: PathBuf,
    pub oom_kills: u64,
}

impl Cgroups {
    /// The daemon's cgroups, or why they cannot be used.
    pub fn detect() -> Result<Cgroups, String> {
        let own = fs::read_to_string("/proc/self/cgroup").map_err(|e| format!("cannot read /proc/self/cgroup: {e}"))?;
        let mounts =
            fs::read_to_string("/proc/self/mountinfo").map_err(|e| format!("cannot read /proc/self/mountinfo: {e}"))?;
        let base = locate(&mounts, &own, std::process::id())?;
        let parent = base.parent().unwrap_or(Path::new("/"));
        // SAFETY: access() on a NUL-terminated path.
        let path = std::ffi::CString::new(std::os::unix::ffi::OsStrExt::as_bytes(parent.as_os_str()))
            .map_err(|_| "a cgroup path with a NUL byte".to_string())?;
        if unsafe { libc::access(path.as_ptr(), libc::W_OK) } != 0 {
            return Err(format!(
                "the daemon's cgroup {} is not writable ({}): run as root, in a container with a writable cgroup, \
                 or with Delegate=yes in a systemd unit",
                parent.display(),
                io::Error::last_os_error()
            ));
        }
        Ok(Cgroups { base, ready: false, enabled: Vec::new(), notes: Vec::new() })
    }

    pub fn base(&self) -> &Path {
        &self.base
    }

    /// What the set-up could not do, once.
    pub fn take_notes(&mut self) -> Vec<String> {
        std::mem::take(&mut self.notes)
    }

    /// Makes the base and enables the controllers on the way down (first use only).
    fn prepare(&mut self) -> Result<(), String> {
        if self.ready {
            return Ok(());
        }
        let parent = self.base.parent().unwrap_or(Path::new("/")).to_path_buf();
        make_dir(&self.base)?;
        let wanted: Vec<&str> = {
            let available = read_words(&parent.join("cgroup.controllers"));
            CONTROLLERS.iter().copied().filter(|c| available.iter().any(|a| a == c)).collect()
        };
        if !wanted.is_empty() {
            if enable(&parent, &wanted).is_err() {
                // EBUSY: the daemon is in that cgroup, which then may not pass controllers on.
                let leaf = self.base.join(DAEMON_LEAF);
                make_dir(&leaf)?;
                fs::write(leaf.join("cgroup.procs"), std::process::id().to_string())
                    .map_err(|e| format!("cannot move the daemon into {}: {e}", leaf.display()))?;
                if let Err(e) = enable(&parent, &wanted) {
                    self.notes.push(format!(
                        "cannot enable the {} controllers in {} ({e}): other processes are in it",
                        wanted.join(", "),
                        parent.display()
                    ));
                }
            }
            let passed: Vec<&str> = {
                let at_base = read_words(&self.base.join("cgroup.controllers"));
                wanted.iter().copied().filter(|c| at_base.iter().any(|a| a == c)).collect()
            };
            if !passed.is_empty() {
                if let Err(e) = enable(&self.base, &passed) {
                    self.notes.push(format!("cannot enable controllers in {}: {e}", self.base.display()));
                }
            }
        }
        self.enabled = read_words(&self.base.join("cgroup.subtree_control"));
        self.ready = true;
        Ok(())
    }

    /// The cgroup of program `name` (made if needed) with `limits` written in it; also the
    /// limits that could not be (the controller is not available, or the write failed).
    pub fn program(
        &mut self,
        name: &str,
        limits: &crate::config::CgroupLimits,
    ) -> Result<(ProgramCgroup, Vec<String>), String> {
        self.prepare()?;
        let dir = self.base.join(name.replace(['/', ':'], "."));
        make_dir(&dir)?;
        let mut problems = Vec::new();
        for (file, value) in limits.files() {
            let controller = file.split('.').next().unwrap_or(file);
            if !self.enabled.iter().any(|c| c == controller) {
                let available = read_words(&self.base.join("cgroup.controllers")).join(" ");
                problems.push(format!(
                    "{} is not in force: the {controller} controller is not available to {} (it has: {})",
                    key_of(file),
                    self.base.display(),
                    if available.is_empty() { "none" } else { &available }
                ));
                continue;
            }
            if let Err(e) = fs::write(dir.join(file), &value) {
                problems.push(format!("{} is not in force: cannot write {value} to {file}: {e}", key_of(file)));
            }
        }
        let oom_kills = oom_kills(&dir);
        Ok((ProgramCgroup { dir, oom_kills }, problems))
    }

    /// At exit: the programs' cgroups, then the base (what cannot be removed stays).
    pub fn remove_all(&self) {
        if let Ok(entries) = fs::read_dir(&self.base) {
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) && e.file_name() != DAEMON_LEAF {
                    let _ = fs::remove_dir(e.path());
                }
            }
        }
        let _ = fs::remove_dir(&self.base);
    }
}

/// `memory_max=` for `memory.max` (the config key of a cgroup file).
fn key_of(file: &str) -> String {
    file.replace('.', "_")
}

fn make_dir(dir: &Path) -> Result<(), String> {
    match fs::create_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(format!("cannot make the cgroup {}: {e}", dir.display())),
    }
}

fn read_words(path: &Path) -> Vec<String> {
    fs::read_to_string(path).unwrap_or_default().split_whitespace().map(str::to_string).collect()
}

fn enable(dir: &Path, controllers: &[&str]) -> io::Result<()> {
    let line: Vec<String> = controllers.iter().map(|c| format!("+{c}")).collect();
    fs::write(dir.join("cgroup.subtree_control"), line.join(" "))
}

/// The base cgroup of daemon `pid` from `/proc/self/mountinfo` and `/proc/self/cgroup`:
/// `<mount><own path>/minisv.<pid>`, or the parent of the leaf the daemon moved into.
fn locate(mountinfo: &str, self_cgroup: &str, pid: u32) -> Result<PathBuf, String> {
    let own = self_cgroup
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .ok_or("no cgroup v2 (the daemon's /proc/self/cgroup has no 0:: line)")?;
    // mountinfo: id parent major:minor root mount-point options ... - fstype source options
    let (root, mount) = mountinfo
        .lines()
        .find_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            (right.split_whitespace().next()? == "cgroup2").then(|| {
                let f: Vec<&str> = left.split_whitespace().collect();
                (f.get(3).copied().unwrap_or("/").to_string(), f.get(4).copied().unwrap_or("").to_string())
            })
        })
        .ok_or("no cgroup2 file system is mounted")?;
    let rel = own.strip_prefix(root.trim_end_matches('/')).unwrap_or(own);
    let dir = PathBuf::from(format!("{}/{}", mount.trim_end_matches('/'), rel.trim_start_matches('/')));
    let dir = PathBuf::from(dir.to_string_lossy().trim_end_matches('/').to_string());
    let name = format!("minisv.{pid}");
    // After an upgrade in place the daemon may be in its leaf already.
    if dir.file_name().is_some_and(|n| n == DAEMON_LEAF)
        && dir.parent().and_then(Path::file_name).is_some_and(|n| n == name.as_str())
    {
        return Ok(dir.parent().map(Path::to_path_buf).unwrap_or(dir));
    }
    Ok(dir.join(name))
}

/// The OOM kills counted in a cgroup (`memory.events`), 0 without the memory controller.
pub fn oom_kills(dir: &Path) -> u64 {
    fs::read_to_string(dir.join("memory.events"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("oom_kill ").and_then(|n| n.trim().parse().ok()))
        .unwrap_or(0)
}

/// Kills what is left in a program's cgroup (its main process has exited): the pids it had.
pub fn kill_left(dir: &Path) -> Vec<u32> {
    let pids: Vec<u32> = fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect();
    if pids.is_empty() {
        return pids;
    }
    // cgroup.kill (Linux 5.14) kills them all at once, new forks included; else one by one.
    if fs::write(dir.join("cgroup.kill"), "1").is_err() {
        for &pid in &pids {
            let _ = crate::sys::kill(pid, libc::SIGKILL, false);
        }
    }
    pids
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTS: &str = "24 30 0:22 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw\n\
                          25 30 0:23 / /proc rw - proc proc rw\n";

    #[test]
    fn the_base_is_below_the_daemons_cgroup_and_found_again_from_its_leaf() {
        let base = locate(MOUNTS, "0::/system.slice/minisv.service\n", 42).expect("found");
        assert_eq!(base, PathBuf::from("/sys/fs/cgroup/system.slice/minisv.service/minisv.42"));
        // After moving into its leaf (and an upgrade in place: the same pid).
        let again = locate(MOUNTS, "0::/system.slice/minisv.service/minisv.42/supervisor\n", 42).expect("found");
        assert_eq!(again, base);
        // The root of a container's cgroup namespace.
        assert_eq!(locate(MOUNTS, "0::/\n", 1).expect("found"), PathBuf::from("/sys/fs/cgroup/minisv.1"));
        // A hybrid host: v1 controllers and the v2 tree at .../unified.
        let hybrid = "31 25 0:26 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n";
        let v1 = "4:memory:/x\n0::/\n";
        assert_eq!(locate(hybrid, v1, 7).expect("found"), PathBuf::from("/sys/fs/cgroup/unified/minisv.7"));
        assert!(locate("25 30 0:23 / /proc rw - proc proc rw\n", "0::/\n", 1).unwrap_err().contains("no cgroup2"));
        assert!(locate(MOUNTS, "4:memory:/x\n", 1).unwrap_err().contains("no cgroup v2"));
    }

    #[test]
    fn limits_are_written_as_the_kernel_reads_them() {
        let l = crate::config::CgroupLimits {
            memory_max: Some(512 << 20),
            memory_high: Some(u64::MAX),
            cpu_max: Some(150),
            pids_max: Some(200),
        };
        assert_eq!(
            l.files(),
            vec![
                ("memory.high", "max".to_string()),
                ("memory.max", "536870912".to_string()),
                ("cpu.max", "150000 100000".to_string()),
                ("pids.max", "200".to_string()),
            ]
        );
    }

    #[test]
    fn oom_kills_are_read_from_memory_events() {
        let dir = std::env::temp_dir().join(format!("minisv-cg-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("dir");
        assert_eq!(oom_kills(&dir), 0);
        fs::write(dir.join("memory.events"), "low 0\nhigh 3\nmax 9\noom 2\noom_kill 2\noom_group_kill 0\n").expect("w");
        assert_eq!(oom_kills(&dir), 2);
        let _ = fs::remove_dir_all(&dir);
    }
}
