//! `getAllConfigInfo` structs (reference 4.5): what the stored config says of each process.

use std::path::PathBuf;

use super::host::Host;
use super::xmlrpc::Value;
use crate::config::{Channel, GroupConfig, LogFile, ProcessConfig};

/// A log setting as supervisord reports it. An AUTO log of a group in use is the file its
/// process writes, `<childlogdir>/<name>-<channel>---<identifier>-XXXXXXXX.log`, named when
/// the group was added and created by the first output or read (`running`). An AUTO log of a
/// group not in use has no name yet, and is `auto`, as supervisord says.
fn logfile(l: &LogFile, running: Option<PathBuf>) -> Value {
    match (l, running) {
        (LogFile::None, _) => Value::from("none"),
        (LogFile::Auto, Some(path)) => Value::from(path.display().to_string()),
        (LogFile::Auto, None) => Value::from("auto"),
        (LogFile::Path(p), _) => Value::from(p.display().to_string()),
    }
}

/// The file an AUTO log of `p` is written to: its process's, if it runs with an AUTO log on
/// that channel too (after a `reread`, the stored config may say something else).
fn auto_path(lp: &dyn Host, g: &GroupConfig, p: &ProcessConfig, ch: Channel) -> Option<PathBuf> {
    let id = lp.sup().find(&g.name, &p.name)?;
    let running = &lp.sup().process(id)?.config;
    let auto = |pc: &ProcessConfig| match ch {
        Channel::Stdout => matches!(pc.stdout.logfile, LogFile::Auto),
        Channel::Stderr => matches!(pc.stderr.logfile, LogFile::Auto),
    };
    (auto(p) && auto(running)).then(|| lp.log_path(id, ch)).flatten()
}

fn int(n: impl TryInto<i64>) -> Value {
    Value::Int(n.try_into().unwrap_or(i64::MAX).clamp(-(i32::MAX as i64), i32::MAX as i64))
}

/// One struct, keys in Supervisor's order.
pub fn config_info(lp: &dyn Host, g: &GroupConfig, p: &ProcessConfig) -> Value {
    let inuse = lp.sup().group(&g.name).is_some();
    let stdout_logfile = logfile(&p.stdout.logfile, auto_path(lp, g, p, Channel::Stdout));
    let stderr_logfile = logfile(&p.stderr.logfile, auto_path(lp, g, p, Channel::Stderr));
    Value::structure([
        ("autostart", Value::Bool(p.autostart)),
        ("directory", p.directory.as_deref().map(Value::from).unwrap_or_else(|| Value::from("none"))),
        ("uid", p.user.as_ref().map(|u| int(u.uid)).unwrap_or_else(|| Value::from("none"))),
        ("command", Value::from(p.command.as_str())),
        ("exitcodes", Value::Array(p.exitcodes.iter().map(|c| int(*c)).collect())),
        ("group", Value::from(g.name.as_str())),
        ("group_prio", int(g.priority)),
        ("inuse", Value::Bool(inuse)),
        ("killasgroup", Value::Bool(p.killasgroup)),
        ("name", Value::from(p.name.as_str())),
        ("process_prio", int(p.priority)),
        ("redirect_stderr", Value::Bool(p.redirect_stderr)),
        ("startretries", int(p.startretries)),
        ("startsecs", int(p.startsecs)),
        ("stdout_capture_maxbytes", int(p.stdout.capture_maxbytes)),
        ("stdout_events_enabled", Value::Bool(p.stdout.events_enabled)),
        ("stdout_logfile", stdout_logfile),
        ("stdout_logfile_backups", int(p.stdout.backups)),
        ("stdout_logfile_maxbytes", int(p.stdout.maxbytes)),
        ("stdout_syslog", Value::Bool(p.stdout.syslog)),
        ("stopsignal", int(p.stopsignal)),
        ("stopwaitsecs", int(p.stopwaitsecs)),
        ("stderr_capture_maxbytes", int(p.stderr.capture_maxbytes)),
        ("stderr_events_enabled", Value::Bool(p.stderr.events_enabled)),
        ("stderr_logfile", stderr_logfile),
        ("stderr_logfile_backups", int(p.stderr.backups)),
        ("stderr_logfile_maxbytes", int(p.stderr.maxbytes)),
        ("stderr_syslog", Value::Bool(p.stderr.syslog)),
        // Unset and AUTO are both None to supervisord, which says `none`.
        ("serverurl", p.serverurl.as_deref().map(Value::from).unwrap_or_else(|| Value::from("none"))),
    ])
}
