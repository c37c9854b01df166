//! Supervisor config files → typed `Config` (section 1 of the reference).
//!
//! `load` reads the main file and its `[include]`s, expands `%(name)s`, converts every value,
//! and returns either a `Config` or every error found, each with file:line.

pub mod cron;
pub mod depends;
pub mod expand;
pub mod include;
pub mod ini;
mod load;
pub mod model;
pub mod options;
mod programs;
mod sections;
pub mod types;

pub use model::*;
pub use programs::MAX_LISTEN;
pub use types::{signal_name, signal_number};

use std::path::{Path, PathBuf};

use ini::Ini;
use load::{absolute, Loader};

/// Values given on the daemon's command line; each one beats the config file (0.1).
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub nodaemon: Option<bool>,
    pub silent: Option<bool>,
    pub user: Option<String>,
    pub umask: Option<String>,
    pub directory: Option<String>,
    pub logfile: Option<String>,
    pub logfile_maxbytes: Option<String>,
    pub logfile_backups: Option<String>,
    pub loglevel: Option<String>,
    pub pidfile: Option<String>,
    pub identifier: Option<String>,
    pub childlogdir: Option<String>,
    pub nocleanup: Option<bool>,
    pub minfds: Option<String>,
    pub minprocs: Option<String>,
    pub strip_ansi: Option<bool>,
}

/// Drops repeats: per-process keys are read once per process (numprocs), and a few keys are
/// read at group and at process level; one report per place is enough.
fn dedup(list: &mut Vec<Diagnostic>) {
    let mut seen: Vec<Diagnostic> = Vec::new();
    list.retain(|d| {
        // Errors at the same key of the same place are one problem.
        let mut id = d.clone();
        if id.key.is_some() && id.span.is_some() {
            id.message.clear();
        }
        let new = !seen.contains(&id);
        if new {
            seen.push(id);
        }
        new
    });
}

/// Loads and validates a config for the daemon. On failure, every error found is returned.
pub fn load(path: &Path, overrides: &Overrides) -> Result<Config, Vec<Diagnostic>> {
    let main = absolute(path);
    let mut errors = Vec::new();
    let mut ini = Ini::new();
    if !sections::read_file(&mut ini, &main, &mut errors) {
        return Err(errors);
    }
    let mut ld = Loader::new(ini, main.clone());
    ld.errors = errors;
    sections::read_includes(&mut ld);
    sections::vocabulary_warnings(&mut ld);
    if !ld.ini.has_section("supervisord") {
        ld.errors.push(Diagnostic {
            span: None,
            section: None,
            key: None,
            message: format!(".ini file does not include supervisord section ({})", main.display()),
        });
        return Err(ld.errors);
    }
    let supervisord = sections::supervisord(&mut ld, overrides);
    let rpcinterface_supervisor = sections::rpcinterfaces(&mut ld);
    let groups = programs::groups(&mut ld);
    depends::check(&mut ld, &groups);
    let inet_http_servers = sections::inet_http_servers(&mut ld);
    let unix_http_servers = sections::unix_http_servers(&mut ld);
    let servers = inet_http_servers.len() + unix_http_servers.len();
    if servers > MAX_HTTP_SERVERS {
        let section = unix_http_servers.last().map_or_else(
            || inet_http_servers.last().map(|s| s.section.clone()).unwrap_or_default(),
            |s| s.section.clone(),
        );
        let span = ld.section_span(&section);
        ld.error(
            Some(span),
            &section,
            None,
            format!(
                "{servers} [unix_http_server] and [inet_http_server] sections; at most {} are served",
                MAX_HTTP_SERVERS
            ),
        );
    }
    let supervisorctl = sections::supervisorctl(&mut ld);
    dedup(&mut ld.errors);
    // Reported in the order they stand in the files (files in the order they were read).
    let mut files: Vec<std::sync::Arc<std::path::Path>> = Vec::new();
    for e in &ld.errors {
        if let Some(span) = &e.span {
            if !files.contains(&span.file) {
                files.push(span.file.clone());
            }
        }
    }
    ld.errors.sort_by_key(|e| e.span.as_ref().map(|s| (files.iter().position(|f| *f == s.file), s.line)));
    if !ld.errors.is_empty() {
        return Err(ld.errors);
    }
    dedup_exact(&mut ld.warnings);
    Ok(Config {
        path: main,
        supervisord,
        unix_http_servers,
        inet_http_servers,
        supervisorctl,
        rpcinterface_supervisor,
        groups,
        warnings: ld.warnings,
        infos: ld.infos,
    })
}

/// Reads only `[supervisorctl]` (no includes, as supervisorctl does). `Ok(None)` when the file
/// has no such section.
pub fn load_ctl(path: &Path) -> Result<Option<CtlConfig>, Vec<Diagnostic>> {
    let main = absolute(path);
    let mut errors = Vec::new();
    let mut ini = Ini::new();
    if !sections::read_file(&mut ini, &main, &mut errors) {
        return Err(errors);
    }
    let mut ld = Loader::new(ini, main);
    ld.errors = errors;
    let ctl = sections::supervisorctl(&mut ld);
    if ld.errors.is_empty() {
        Ok(ctl)
    } else {
        Err(ld.errors)
    }
}

/// The places searched for a config file, in order (0.3), `minisv.conf` before
/// `supervisord.conf` in each place. `here` is dirname(dirname(argv0)).
pub fn search_paths(argv0: &str) -> Vec<PathBuf> {
    let here = Path::new(argv0).parent().and_then(Path::parent).unwrap_or(Path::new(""));
    let mut out = Vec::new();
    for dir in [
        here.join("etc"),
        here.to_path_buf(),
        PathBuf::new(),
        PathBuf::from("etc"),
        PathBuf::from("/etc"),
        PathBuf::from("/etc/supervisor"),
    ] {
        for name in ["minisv.conf", "supervisord.conf"] {
            out.push(dir.join(name));
        }
    }
    out
}

/// The config search of 0.3 (`minisv.conf` before `supervisord.conf` in each place).
/// `argv0` is the program path as invoked. Returns the first existing file, or the list searched.
pub fn search(argv0: &str) -> Result<PathBuf, Vec<PathBuf>> {
    let paths = search_paths(argv0);
    match paths.iter().find(|p| p.exists()) {
        Some(p) => Ok(p.clone()),
        None => Err(paths),
    }
}

fn dedup_exact(list: &mut Vec<Diagnostic>) {
    let mut seen: Vec<Diagnostic> = Vec::new();
    list.retain(|d| {
        let new = !seen.contains(d);
        if new {
            seen.push(d.clone());
        }
        new
    });
}

#[cfg(test)]
mod defaults_tests;
#[cfg(test)]
mod tests;

/// Whether two groups are the same for reread/update (1.15): every setting, but not where in
/// the files they were written.
pub fn same_group(a: &GroupConfig, b: &GroupConfig) -> bool {
    let GroupConfig { name, priority, kind, processes, span: _ } = a;
    *name == b.name
        && *priority == b.priority
        && *kind == b.kind
        && processes.len() == b.processes.len()
        && processes.iter().zip(&b.processes).all(|(p, q)| same_process(p, q))
}

/// Whether two processes have the same settings (where they were written does not count).
pub fn same_process(a: &ProcessConfig, b: &ProcessConfig) -> bool {
    let mut b = b.clone();
    b.span = a.span.clone();
    *a == b
}
