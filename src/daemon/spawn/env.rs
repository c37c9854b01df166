//! A child's environment (reference 2.3): the daemon's own, made into C strings once, with what
//! a program sets on top (SUPERVISOR_*, its user's HOME/USER/LOGNAME/SHELL, `[supervisord]
//! environment_file` and `environment`, its own `environment_file` and `environment`,
//! `CREDENTIALS_DIRECTORY`). The same for the program and for its command probes.

use std::ffi::{CString, OsString};
use std::os::unix::ffi::OsStrExt;

use super::{credentials, dotenv};
use crate::config::model::{ProcessConfig, SupervisordConfig};

/// The daemon's environment as `KEY=VALUE` C strings, made once: every child's environment
/// starts from it, and only what a program sets on top is made per spawn (building the whole
/// environment for each child was a seventh of the daemon's CPU starting 1000 programs).
pub struct BaseEnv {
    /// Each variable with the length of its key.
    vars: Vec<(CString, usize)>,
}

impl BaseEnv {
    pub fn new(vars: impl IntoIterator<Item = (OsString, OsString)>) -> BaseEnv {
        let vars = vars
            .into_iter()
            // The environment cannot hold a NUL; skip rather than fail every spawn.
            .filter_map(|(k, v)| Some((env_var(&k, &v)?, k.len())))
            .collect();
        BaseEnv { vars }
    }

    fn keys_and_vars(&self) -> impl Iterator<Item = (&[u8], &CString)> {
        self.vars.iter().map(|(kv, n)| (&kv.as_bytes()[..*n], kv))
    }
}

/// `KEY=VALUE` as a C string; None if either holds a NUL.
fn env_var(k: &OsString, v: &OsString) -> Option<CString> {
    let mut kv = Vec::with_capacity(k.len() + v.len() + 1);
    kv.extend_from_slice(k.as_bytes());
    kv.push(b'=');
    kv.extend_from_slice(v.as_bytes());
    CString::new(kv).ok()
}

/// A child's `envp`: the variables of `base` that `set` does not set, then those of `set`, the
/// last of each key only, in the order of those last ones. The pointers point into `base` and
/// into the returned strings, which must outlive them. Err: a key whose variable has a NUL.
pub(super) fn compose_env(
    base: &BaseEnv,
    set: &[(OsString, OsString)],
) -> Result<(Vec<CString>, Vec<*const libc::c_char>), OsString> {
    let last = |i: usize, k: &OsString| !set[i + 1..].iter().any(|(later, _)| later == k);
    let mut extra = Vec::with_capacity(set.len());
    for (i, (k, v)) in set.iter().enumerate() {
        if !last(i, k) {
            continue;
        }
        extra.push(env_var(k, v).ok_or_else(|| k.clone())?);
    }
    let overridden = |key: &[u8]| set.iter().any(|(k, _)| k.as_bytes() == key);
    let envp = base
        .keys_and_vars()
        .filter(|(key, _)| !overridden(key))
        .map(|(_, kv)| kv.as_ptr())
        .chain(extra.iter().map(|kv| kv.as_ptr()))
        .chain(std::iter::once(std::ptr::null()))
        .collect();
    Ok((extra, envp))
}

/// What a child of program `pc` of `group` gets set on top of the daemon's environment (2.3):
/// SUPERVISOR_*, the user's HOME/USER/LOGNAME/SHELL (fix of Supervisor issue #435), then, a
/// later one winning: `[supervisord] environment_file`, `[supervisord] environment`, the
/// program's `environment_file`, the program's `environment`. The environment files are read
/// now, at every spawn; Err names the file and line that cannot be used (never a value), and
/// the spawn fails with it. With `credentials=`, CREDENTIALS_DIRECTORY names the process's
/// directory (made by `spawn_env`).
/// `server_url`: SUPERVISOR_SERVER_URL for a program without its own `serverurl=` (2.8).
pub fn program_env(
    pc: &ProcessConfig,
    group: &str,
    server_url: Option<&str>,
    daemon: &SupervisordConfig,
) -> Result<Vec<(OsString, OsString)>, String> {
    let mut env: Vec<(OsString, OsString)> = Vec::new();
    let mut set = |k: &str, v: &str| env.push((k.into(), v.into()));
    set("SUPERVISOR_ENABLED", "1");
    if let Some(url) = pc.serverurl.as_deref().or(server_url) {
        set("SUPERVISOR_SERVER_URL", url);
    }
    set("SUPERVISOR_PROCESS_NAME", &pc.name);
    set("SUPERVISOR_GROUP_NAME", group);
    if let Some(user) = &pc.user {
        set("HOME", &user.home);
        set("USER", &user.name);
        set("LOGNAME", &user.name);
        set("SHELL", &user.shell);
    }
    let read = |files: &[std::path::PathBuf]| -> Result<Vec<(String, String)>, String> {
        let mut pairs = Vec::new();
        for f in files {
            pairs.extend(dotenv::read(f).map_err(|e| format!("environment_file {e}"))?);
        }
        Ok(pairs)
    };
    for (k, v) in read(&daemon.environment_files)?.iter().chain(daemon.environment.iter()) {
        set(k, v);
    }
    for (k, v) in read(&pc.environment_files)?.iter().chain(pc.environment.iter()) {
        set(k, v);
    }
    if !pc.credentials.is_empty() {
        let dir = credentials::process_dir(&credentials_root(daemon), group, &pc.name);
        env.push(("CREDENTIALS_DIRECTORY".into(), dir.into_os_string()));
    }
    Ok(env)
}

/// The environment of a program's process (not of its probes): `program_env`, after copying
/// its credentials into their directory for this run.
pub fn spawn_env(
    pc: &ProcessConfig,
    group: &str,
    server_url: Option<&str>,
    daemon: &SupervisordConfig,
) -> Result<Vec<(OsString, OsString)>, String> {
    let env = program_env(pc, group, server_url, daemon)?;
    credentials::prepare(&credentials_root(daemon), group, pc)?;
    Ok(env)
}

/// Removes the credentials directory of a process that has exited (or failed to start).
pub fn remove_credentials(daemon: &SupervisordConfig, group: &str, pc: &ProcessConfig) {
    credentials::remove(&credentials_root(daemon), group, pc);
}

fn credentials_root(daemon: &SupervisordConfig) -> std::path::PathBuf {
    daemon.credentials_directory.clone().unwrap_or_else(credentials::default_root)
}

/// The PATH a command of program `pc` is looked up in: the program's, or `[supervisord]
/// environment`'s (`daemon_env`), or the daemon's own.
pub fn search_path(pc: &ProcessConfig, daemon_env: &[(String, String)]) -> Option<String> {
    let from = |list: &[(String, String)]| list.iter().rev().find(|(k, _)| k == "PATH").map(|(_, v)| v.clone());
    from(&pc.environment).or_else(|| from(daemon_env)).or_else(|| std::env::var("PATH").ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_childs_environment_is_ours_with_the_programs_settings_on_top() {
        let os = |s: &str| OsString::from(s);
        let base = BaseEnv::new([(os("A"), os("1")), (os("B"), os("2")), (os("C"), os("3"))]);
        let set = [(os("B"), os("x")), (os("D"), os("y")), (os("B"), os("z")), (os("AA"), os(""))];
        let (_extra, envp) = compose_env(&base, &set).expect("no NUL");
        assert_eq!(envp.last(), Some(&std::ptr::null()));
        // SAFETY: every pointer but the last points to a live C string (base or _extra).
        let vars: Vec<&str> = envp[..envp.len() - 1]
            .iter()
            .map(|p| unsafe { std::ffi::CStr::from_ptr(*p) }.to_str().expect("utf-8"))
            .collect();
        assert_eq!(vars, ["A=1", "C=3", "D=y", "B=z", "AA="]);
        assert_eq!(compose_env(&base, &[(os("E"), os("a\0b"))]).err(), Some(os("E")));
    }
}
