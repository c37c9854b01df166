//! `getAllConfigInfo` structs (reference 4.5): what the stored config says of each process.

use super::xmlrpc::Value;
use crate::config::{GroupConfig, LogFile, ProcessConfig};

fn logfile(l: &LogFile) -> Value {
    match l {
        LogFile::None => Value::from("none"),
        LogFile::Auto => Value::from("auto"),
        LogFile::Path(p) => Value::from(p.display().to_string()),
    }
}

fn int(n: impl TryInto<i64>) -> Value {
    Value::Int(n.try_into().unwrap_or(i64::MAX).clamp(-(i32::MAX as i64), i32::MAX as i64))
}

/// One struct, keys in Supervisor's order.
pub fn config_info(g: &GroupConfig, p: &ProcessConfig, inuse: bool) -> Value {
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
        ("stdout_logfile", logfile(&p.stdout.logfile)),
        ("stdout_logfile_backups", int(p.stdout.backups)),
        ("stdout_logfile_maxbytes", int(p.stdout.maxbytes)),
        ("stdout_syslog", Value::Bool(p.stdout.syslog)),
        ("stopsignal", int(p.stopsignal)),
        ("stopwaitsecs", int(p.stopwaitsecs)),
        ("stderr_capture_maxbytes", int(p.stderr.capture_maxbytes)),
        ("stderr_events_enabled", Value::Bool(p.stderr.events_enabled)),
        ("stderr_logfile", logfile(&p.stderr.logfile)),
        ("stderr_logfile_backups", int(p.stderr.backups)),
        ("stderr_logfile_maxbytes", int(p.stderr.maxbytes)),
        ("stderr_syslog", Value::Bool(p.stderr.syslog)),
        ("serverurl", p.serverurl.as_deref().map(Value::from).unwrap_or_else(|| Value::from("auto"))),
    ])
}
