//! What a child is started with, decided in the parent: the plan of one spawn, and the part
//! that every child of a program shares (the program itself and its command probes): the
//! program's user, environment, directory and umask.

use std::ffi::OsString;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::rc::Rc;

use super::command::resolve_command;
use super::env::{program_env, search_path, BaseEnv};
use super::lanes::Spawner;
use crate::config::model::{ProcessConfig, SupervisordConfig};
use crate::sys;

/// Everything the child needs, prepared in the parent.
pub struct SpawnPlan {
    pub program: PathBuf,
    pub argv: Vec<String>,
    /// The child's environment: `base` with `env` set on top, in order (a later one wins).
    pub base: Rc<BaseEnv>,
    pub env: Vec<(OsString, OsString)>,
    pub directory: Option<String>,
    pub umask: Option<u32>,
    /// (uid, gid, supplementary groups) to switch to.
    pub user: Option<(u32, u32, Vec<u32>)>,
    pub redirect_stderr: bool,
    /// For fcgi-program: the listening socket becomes fd 0 (no stdin pipe).
    pub stdin_socket: Option<OwnedFd>,
    /// `ready_fd=N`: a pipe whose write end is the child's fd N.
    pub ready_fd: Option<i32>,
    /// minisv's `listen=` sockets with their names: the child's fds 3 and up, announced with
    /// systemd's LISTEN_FDS, LISTEN_FDNAMES and LISTEN_PID.
    pub listen: Vec<(String, OwnedFd)>,
    /// `rlimit_*=`, `nice=`, `oom_score_adj=`.
    pub limits: crate::config::Limits,
    /// `cgroup=`: the `cgroup.procs` file the child writes itself into.
    pub cgroup: Option<PathBuf>,
}

/// The parent's ends of a spawned child's pipes (all non-blocking).
pub struct Spawned {
    pub pid: u32,
    pub stdin: Option<OwnedFd>,
    pub stdout: OwnedFd,
    pub stderr: Option<OwnedFd>,
    /// The read end of the `ready_fd` pipe.
    pub ready: Option<OwnedFd>,
}

/// The user a child of `pc` switches to: (uid, gid, groups) as root; None without `user=`, or
/// when the daemon already runs as that user. Supervisor's message when it cannot switch.
pub fn program_user(pc: &ProcessConfig) -> Result<Option<(u32, u32, Vec<u32>)>, String> {
    let Some(u) = &pc.user else { return Ok(None) };
    let euid = sys::geteuid();
    if euid != 0 && euid != u.uid {
        return Err("Can't drop privilege as nonroot user".into());
    }
    Ok((euid == 0).then(|| (u.uid, u.gid, u.groups.clone())))
}

/// What the daemon gives every child of a program besides the program's own settings.
pub struct ChildSetup<'a> {
    pub spawner: &'a Spawner,
    /// The daemon's environment.
    pub base: &'a Rc<BaseEnv>,
    /// SUPERVISOR_SERVER_URL for programs without their own `serverurl=` (2.8).
    pub server_url: Option<&'a str>,
    /// `[supervisord]`: its environment and environment files.
    pub daemon: &'a SupervisordConfig,
}

impl ChildSetup<'_> {
    /// Runs `command` beside program `pc` of `group` (a command probe): as the program's user,
    /// with its environment, directory and umask, in a process group of its own, with stdin,
    /// stdout and stderr on /dev/null. Returns its pid once it has exec'd; the caller reaps it.
    pub fn run_beside(&self, pc: &ProcessConfig, group: &str, command: &str) -> Result<u32, String> {
        let (program, argv) = resolve_command(command, search_path(pc, &self.daemon.environment).as_deref())
            .map_err(|e| e.message().to_string())?;
        let plan = SpawnPlan {
            program,
            argv,
            base: Rc::clone(self.base),
            env: program_env(pc, group, self.server_url, self.daemon)?,
            directory: pc.directory.clone(),
            umask: pc.umask,
            user: program_user(pc)?,
            redirect_stderr: true,
            stdin_socket: None,
            ready_fd: None,
            listen: Vec::new(),
            limits: Default::default(),
            cgroup: None,
        };
        self.spawner.spawn_quiet(plan, &pc.name)
    }
}
