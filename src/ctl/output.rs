//! Text shapes of supervisorctl's output (reference 5.2): namespecs, status and avail lines,
//! result lines, the help topic table.

use super::client::faults;
use crate::rpc::xmlrpc::Value;

/// Process states whose presence makes `status` exit 3 (STOPPED, EXITED, FATAL, UNKNOWN).
pub const STOPPED_STATES: [i64; 4] = [0, 100, 200, 1000];
/// The RUNNING state code.
pub const RUNNING: i64 = 20;

pub use crate::supervisor::namespec::{make as make_namespec, split as split_namespec};

/// Python's `'%-Ns' % s`: left-justified, padded to N characters (not bytes).
pub fn ljust(s: &str, width: usize) -> String {
    let n = s.chars().count();
    let mut out = String::from(s);
    out.push_str(&" ".repeat(width.saturating_sub(n)));
    out
}

fn namespec_of(info: &Value) -> String {
    make_namespec(info.str_of("group"), info.str_of("name"))
}

/// The `status` lines: namespec column `max(30, longest) + 3` wide, state column 10 wide.
pub fn status_lines(infos: &[Value]) -> Vec<String> {
    let specs: Vec<String> = infos.iter().map(namespec_of).collect();
    let width = specs.iter().map(|s| s.chars().count()).max().unwrap_or(0).max(30) + 3;
    infos
        .iter()
        .zip(&specs)
        .map(|(info, spec)| {
            format!("{}{}{}", ljust(spec, width), ljust(info.str_of("statename"), 10), info.str_of("description"))
        })
        .collect()
}

/// One `avail` line: `'%(name)-32s %(inuse)-9s %(autostart)-9s %(priority)s'`.
pub fn avail_line(info: &Value) -> String {
    let truthy = |k: &str| info.get(k).and_then(Value::as_bool).unwrap_or(false);
    let prio = |k: &str| match info.get(k) {
        Some(Value::Int(i)) => i.to_string(),
        Some(Value::String(s)) => s.clone(),
        _ => String::new(),
    };
    format!(
        "{} {} {} {}:{}",
        ljust(&namespec_of(info), 32),
        ljust(if truthy("inuse") { "in use" } else { "avail" }, 9),
        ljust(if truthy("autostart") { "auto" } else { "manual" }, 9),
        prio("group_prio"),
        prio("process_prio")
    )
}

/// A result struct `{name, group, status, description}` as the commands see it.
pub struct OpResult {
    pub name: String,
    pub group: String,
    pub status: i32,
    pub description: String,
}

impl OpResult {
    pub fn from_value(v: &Value) -> OpResult {
        OpResult {
            name: v.str_of("name").to_string(),
            group: v.str_of("group").to_string(),
            status: i32::try_from(v.int_of("status")).unwrap_or(faults::FAILED),
            description: v.str_of("description").to_string(),
        }
    }

    /// A fault on a single-name call, shaped like a result (the group/process from the split).
    pub fn from_fault(name: &str, code: i32, description: &str) -> OpResult {
        let (group, process) = split_namespec(name);
        OpResult {
            name: process.unwrap_or("None").to_string(),
            group: group.to_string(),
            status: code,
            description: description.into(),
        }
    }

    pub fn namespec(&self) -> String {
        make_namespec(&self.group, &self.name)
    }
}

/// `_startresult`; `None` for a code supervisorctl does not know.
pub fn start_result(r: &OpResult) -> Option<String> {
    let reason = match r.status {
        faults::SUCCESS => return Some(format!("{}: started", r.namespec())),
        faults::BAD_NAME => "no such process",
        faults::NO_FILE => "no such file",
        faults::NOT_EXECUTABLE => "file is not executable",
        faults::ALREADY_STARTED => "already started",
        faults::SPAWN_ERROR => "spawn error",
        faults::ABNORMAL_TERMINATION => "abnormal termination",
        _ => return None,
    };
    Some(format!("{}: ERROR ({reason})", r.namespec()))
}

/// `_signalresult` (also `_stopresult` with success word "stopped").
pub fn signal_result(r: &OpResult, success: &str) -> Option<String> {
    let reason = match r.status {
        faults::SUCCESS => return Some(format!("{}: {success}", r.namespec())),
        faults::FAILED => return Some(r.description.clone()),
        faults::BAD_NAME => "no such process",
        faults::BAD_SIGNAL => "bad signal name",
        faults::NOT_RUNNING => "not running",
        _ => return None,
    };
    Some(format!("{}: ERROR ({reason})", r.namespec()))
}

/// `_clearresult`.
pub fn clear_result(r: &OpResult) -> Option<String> {
    match r.status {
        faults::SUCCESS => Some(format!("{}: cleared", r.namespec())),
        faults::BAD_NAME => Some(format!("{}: ERROR (no such process)", r.namespec())),
        faults::FAILED => Some(format!("{}: ERROR (failed)", r.namespec())),
        _ => None,
    }
}

/// Python's `cmd.Cmd.columnize(list, displaywidth)`: the fewest rows whose columns fit.
pub fn columnize(items: &[&str], width: usize) -> Vec<String> {
    let size = items.len();
    if size == 0 {
        return vec!["<empty>".into()];
    }
    if size == 1 {
        return vec![items[0].to_string()];
    }
    let len = |s: &str| s.chars().count();
    let mut layout = None;
    for nrows in 1..size {
        let ncols = size.div_ceil(nrows);
        let mut widths = Vec::new();
        let mut total: isize = -2;
        for col in 0..ncols {
            let w = (0..nrows).filter_map(|row| items.get(row + nrows * col)).map(|s| len(s)).max().unwrap_or(0);
            widths.push(w);
            total += w as isize + 2;
            if total > width as isize {
                break;
            }
        }
        if total <= width as isize {
            layout = Some((nrows, ncols, widths));
            break;
        }
    }
    let (nrows, ncols, widths) = layout.unwrap_or((size, 1, vec![0]));
    (0..nrows)
        .map(|row| {
            let mut texts: Vec<&str> =
                (0..ncols).map(|col| items.get(row + nrows * col).copied().unwrap_or("")).collect();
            while texts.last().is_some_and(|t| t.is_empty()) {
                texts.pop();
            }
            texts.iter().enumerate().map(|(i, t)| ljust(t, widths[i])).collect::<Vec<_>>().join("  ")
        })
        .collect()
}

/// `12.3M`-style sizes for `status -l`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "K", "M", "G"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n}B")
    } else {
        format!("{v:.1}{}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_bytes_uses_binary_units() {
        assert_eq!(human_bytes(0), "0B");
        assert_eq!(human_bytes(1023), "1023B");
        assert_eq!(human_bytes(1536), "1.5K");
        assert_eq!(human_bytes(13 << 20), "13.0M");
        assert_eq!(human_bytes(5 << 40), "5120.0G");
    }

    fn info(group: &str, name: &str, statename: &str, desc: &str) -> Value {
        Value::structure([
            ("name", Value::from(name)),
            ("group", Value::from(group)),
            ("statename", Value::from(statename)),
            ("description", Value::from(desc)),
        ])
    }

    #[test]
    fn status_lines_match_supervisorctl_columns() {
        let lines = status_lines(&[
            info("exiter", "exiter", "EXITED", "Nov 23 11:16 PM"),
            info("grp", "ga", "RUNNING", "pid 4407, uptime 0:00:10"),
            info("extra", "extra", "STARTING", ""),
        ]);
        assert_eq!(
            lines,
            [
                "exiter                           EXITED    Nov 23 11:16 PM",
                "grp:ga                           RUNNING   pid 4407, uptime 0:00:10",
                "extra                            STARTING  ",
            ]
        );
        let long = "g:".to_string() + &"x".repeat(40);
        let lines = status_lines(&[info("g", &"x".repeat(40), "STOPPED", "Not started")]);
        assert_eq!(lines[0], format!("{long}   STOPPED   Not started"));
    }

    #[test]
    fn avail_line_matches_supervisorctl() {
        let v = Value::structure([
            ("name", Value::from("gb")),
            ("group", Value::from("grp")),
            ("inuse", Value::Bool(true)),
            ("autostart", Value::Bool(false)),
            ("group_prio", Value::Int(999)),
            ("process_prio", Value::Int(999)),
        ]);
        assert_eq!(avail_line(&v), "grp:gb                           in use    manual    999:999");
    }

    #[test]
    fn namespecs_split_and_join_like_supervisor() {}

    #[test]
    fn result_lines_use_supervisorctl_words() {
        let r = OpResult::from_fault("nosuch", faults::BAD_NAME, "BAD_NAME: nosuch");
        assert_eq!(start_result(&r).as_deref(), Some("nosuch: ERROR (no such process)"));
        let r = OpResult::from_fault("g:p", faults::FAILED, "FAILED: attempted to kill p");
        assert_eq!(signal_result(&r, "stopped").as_deref(), Some("FAILED: attempted to kill p"));
        assert_eq!(start_result(&OpResult::from_fault("a", 999, "")), None);
    }

    #[test]
    fn columnize_matches_python_cmd() {
        let names = [
            "add", "avail", "clear", "exit", "fg", "maintail", "open", "pid", "quit", "reload", "remove", "reread",
            "restart", "shutdown", "signal", "start", "status", "stop", "tail", "update", "version",
        ];
        assert_eq!(
            columnize(&names, 79),
            [
                "add    exit      open  reload  restart   start   tail   ",
                "avail  fg        pid   remove  shutdown  status  update ",
                "clear  maintail  quit  reread  signal    stop    version",
            ]
        );
    }
}
