//! Every command of `minisv ctl`, declared once: name, help text and handler (reference 5.2).
//! Outputs and exit statuses follow supervisorctl 4.3; deliberate differences say so.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::client::{faults, CallError, CallResult};
use super::mergedtail::{self, Painter};
use super::output::{self, OpResult};
use super::transport::{basic_auth, stream_get, HttpError, StreamEnd};
use super::{exit, term, Ctl};
use crate::rpc::xmlrpc::Value;

/// One command: its name, its help text (printed line by line), and what it does.
pub struct Command {
    pub name: &'static str,
    pub help: &'static str,
    /// Shown in the `help` topic list (supervisorctl leaves out `help` itself).
    pub listed: bool,
    pub run: fn(&mut Ctl, &str) -> CallResult<()>,
}

/// The command table, sorted by name.
pub const COMMANDS: &[Command] = &[
    Command {
        name: "add",
        help: "add <name> [...]\tActivates any updates in config for process/group",
        listed: true,
        run: add,
    },
    Command { name: "avail", help: "avail\t\t\tDisplay all configured processes", listed: true, run: avail },
    Command {
        name: "clear",
        help: "clear <name>\t\tClear a process' log files.\n\
               clear <name> <name>\tClear multiple process' log files\n\
               clear all\t\tClear all process' log files",
        listed: true,
        run: clear,
    },
    Command { name: "exit", help: "exit\tExit the supervisor shell.", listed: true, run: quit },
    Command {
        name: "fg",
        help: "fg <process>\tConnect to a process in foreground mode\n\t\tCtrl-C to exit",
        listed: true,
        run: fg,
    },
    Command {
        name: "help",
        help: "help\t\tPrint a list of available actions\nhelp <action>\tPrint help for <action>",
        listed: false,
        run: help,
    },
    Command {
        name: "logrotate",
        help: "logrotate\t\tRotate the logs of every process and the main log now (minisv)\n\
               logrotate <name> [...]\tRotate the logs of these processes or groups now",
        listed: false,
        run: logrotate,
    },
    Command {
        name: "maintail",
        help: "maintail -f \tContinuous tail of supervisor main log file (Ctrl-C to exit)\n\
               maintail -100\tlast 100 *bytes* of supervisord main log file\n\
               maintail\tlast 1600 *bytes* of supervisor main log file\n",
        listed: true,
        run: maintail,
    },
    Command {
        name: "open",
        help: "open <url>\tConnect to a remote supervisord process.\n\
               \t\t(for UNIX domain socket, use unix:///socket/path)",
        listed: true,
        run: open,
    },
    Command {
        name: "pid",
        help: "pid\t\t\tGet the PID of supervisord.\n\
               pid <name>\t\tGet the PID of a single child process by name.\n\
               pid all\t\t\tGet the PID of every child process, one per line.",
        listed: true,
        run: pid,
    },
    Command { name: "quit", help: "quit\tExit the supervisor shell.", listed: true, run: quit },
    Command { name: "reload", help: "reload \t\tRestart the remote supervisord.", listed: true, run: reload },
    Command {
        name: "remove",
        help: "remove <name> [...]\tRemoves process/group from active config",
        listed: true,
        run: remove,
    },
    Command {
        name: "reopen",
        help: "reopen\t\t\tReopen every log file at its path, after an external rotation (minisv)\n\
               reopen <name> [...]\tReopen the logs of these processes or groups",
        listed: false,
        run: reopen,
    },
    Command {
        name: "reread",
        help: "reread \t\t\tReload the daemon's configuration files without add/remove",
        listed: true,
        run: reread,
    },
    Command {
        name: "restart",
        help: "restart <name>\t\tRestart a process\n\
               restart <gname>:*\tRestart all processes in a group\n\
               restart <name> <name>\tRestart multiple processes or groups\n\
               restart all\t\tRestart all processes\n\
               Note: restart does not reread config files. For that, see reread and update.",
        listed: true,
        run: restart,
    },
    Command { name: "shutdown", help: "shutdown \tShut the remote supervisord down.", listed: true, run: shutdown },
    Command {
        name: "signal",
        help: "signal <signal name> <name>\t\tSignal a process\n\
               signal <signal name> <gname>:*\t\tSignal all processes in a group\n\
               signal <signal name> <name> <name>\tSignal multiple processes or groups\n\
               signal <signal name> all\t\tSignal all processes",
        listed: true,
        run: signal,
    },
    Command {
        name: "start",
        help: "start <name>\t\tStart a process\n\
               start <gname>:*\t\tStart all processes in a group\n\
               start <name> <name>\tStart multiple processes or groups\n\
               start all\t\tStart all processes",
        listed: true,
        run: start,
    },
    Command {
        name: "status",
        help: "status <name>\t\tGet status for a single process\n\
               status <gname>:*\tGet status for all processes in a group\n\
               status <name> <name>\tGet status for multiple named processes\n\
               status\t\t\tGet all process status info",
        listed: true,
        run: status,
    },
    Command {
        name: "stop",
        help: "stop <name>\t\tStop a process\n\
               stop <gname>:*\t\tStop all processes in a group\n\
               stop <name> <name>\tStop multiple processes or groups\n\
               stop all\t\tStop all processes",
        listed: true,
        run: stop,
    },
    Command {
        name: "tail",
        help: "tail [-f] <name> [stdout|stderr] (default stdout)\n\
               Ex:\n\
               tail -f <name>\t\tContinuous tail of named process stdout\n\
               \t\t\tCtrl-C to exit.\n\
               tail -100 <name>\tlast 100 *bytes* of process stdout\n\
               tail <name> stderr\tlast 1600 *bytes* of process stderr",
        listed: true,
        run: tail,
    },
    Command {
        name: "update",
        help: "update\t\t\tReload config and add/remove as necessary, and will restart affected programs\n\
               update all\t\tReload config and add/remove as necessary, and will restart affected programs\n\
               update <gname> [...]\tUpdate specific groups",
        listed: true,
        run: update,
    },
    Command {
        name: "upgrade",
        help: "upgrade\t\tExecute the daemon's binary again in its place, keeping every program\n\
               \t\trunning (same pids, pipes, logs and sockets): after installing a new minisv (minisv)",
        listed: false,
        run: upgrade,
    },
    Command {
        name: "version",
        help: "version\t\t\tShow the version of the remote supervisord process",
        listed: true,
        run: version,
    },
];

/// The command named `name`; `EOF` (what the shell sends at end of input) is `quit`.
pub fn find(name: &str) -> Option<&'static Command> {
    let name = if name == "EOF" { "quit" } else { name };
    COMMANDS.iter().find(|c| c.name == name)
}

fn print_help(ctl: &mut Ctl, name: &str) {
    if let Some(c) = find(name) {
        ctl.output(c.help);
    }
}

/// A command's arguments, split on whitespace.
fn words(arg: &str) -> Vec<&str> {
    arg.split_whitespace().collect()
}

fn unexpected(what: String) -> CallError {
    CallError::BadUrl(what)
}

/// Python's `repr()` of a str, for the `ERROR: <Fault ...>` lines of `fg` (one implementation).
use crate::config::ini::py_repr;

fn fault_repr(e: &CallError) -> String {
    match e {
        CallError::Fault { fault, .. } => {
            format!("<Fault {}: {}>", fault.code, py_repr(&fault.string))
        }
        other => other.to_string(),
    }
}

// ---------------------------------------------------------------------------------------------

fn help(ctl: &mut Ctl, arg: &str) -> CallResult<()> {
    let arg = arg.trim();
    if arg.is_empty() {
        ctl.output("");
        let header = "default commands (type help <topic>):";
        ctl.output(header);
        ctl.output(&"=".repeat(header.len()));
        let names: Vec<&str> = COMMANDS.iter().filter(|c| c.listed).map(|c| c.name).collect();
        for line in output::columnize(&names, 79) {
            ctl.output(&line);
        }
        ctl.output("");
        // minisv's own commands, after supervisorctl's list (which stays as it prints it).
        let header = "minisv commands (type help <topic>):";
        ctl.output(header);
        ctl.output(&"=".repeat(header.len()));
        let own: Vec<&str> = COMMANDS.iter().filter(|c| !c.listed && c.name != "help").map(|c| c.name).collect();
        for line in output::columnize(&own, 79) {
            ctl.output(&line);
        }
        ctl.output("");
    } else {
        match COMMANDS.iter().find(|c| c.name == arg) {
            Some(c) => ctl.output(c.help),
            None => ctl.output(&format!("*** No help on {arg}")),
        }
    }
    Ok(())
}

fn quit(ctl: &mut Ctl, _arg: &str) -> CallResult<()> {
    ctl.output("");
    ctl.quit = true;
    Ok(())
}

fn status(ctl: &mut Ctl, arg: &str) -> CallResult<()> {
    if !ctl.upcheck()? {
        // supervisorctl reports every upcheck failure of `status` as "unknown".
        ctl.exitstatus = exit::STATUS_UNKNOWN;
        return Ok(());
    }
    let all = ctl.client.get_all_process_info()?;
    let mut names = words(arg);
    // minisv: `status -l` adds memory and CPU per process (minisv.getProcessStats).
    let long = names.first() == Some(&"-l");
    if long {
        names.remove(0);
    }
    let matching: Vec<Value> = if names.is_empty() || names.contains(&"all") {
        all
    } else {
        let mut m = Vec::new();
        for name in names {
            let (group, process) = output::split_namespec(name);
            let before = m.len();
            for info in &all {
                let hit = info.str_of("group") == group && process.is_none_or(|p| info.str_of("name") == p);
                if hit {
                    m.push(info.clone());
                }
            }
            if m.len() == before {
                let msg = match process {
                    None => format!("{group}: ERROR (no such group)"),
                    Some(_) => format!("{name}: ERROR (no such process)"),
                };
                ctl.output(&msg);
                ctl.exitstatus = exit::STATUS_UNKNOWN;
            }
        }
        m
    };
    let stats = if long {
        match ctl.client.call("minisv.getProcessStats", &[]) {
            Ok(Value::Array(rows)) => rows,
            Ok(_) => Vec::new(),
            Err(e) if e.fault_code() == Some(faults::UNKNOWN_METHOD) => {
                ctl.output("ERROR: status -l needs a minisv daemon");
                Vec::new()
            }
            Err(e) => return Err(e),
        }
    } else {
        Vec::new()
    };
    for (line, info) in output::status_lines(&matching).into_iter().zip(&matching) {
        if !long {
            ctl.output(&line);
            continue;
        }
        let row =
            stats.iter().find(|s| s.str_of("group") == info.str_of("group") && s.str_of("name") == info.str_of("name"));
        match row {
            Some(s) => {
                let cpu = match s.get("cpu_seconds") {
                    Some(Value::Double(d)) => *d,
                    _ => 0.0,
                };
                // The limit it is held to, if any (`memory_limit=` polled, `memory_max=` in its cgroup).
                let limit = ["memory_max", "memory_limit"].into_iter().find_map(|key| match s.get(key) {
                    Some(Value::Double(d)) if *d > 0.0 => {
                        Some(format!(" of {} ({key})", output::human_bytes(*d as u64)))
                    }
                    _ => None,
                });
                ctl.output(&format!(
                    "{line}  rss {}{}  cpu {:.2}s",
                    output::human_bytes(s.int_of("rss_bytes") as u64),
                    limit.unwrap_or_default(),
                    cpu
                ))
            }
            None => ctl.output(&line),
        }
    }
    if matching.iter().any(|i| output::STOPPED_STATES.contains(&i.int_of("state"))) {
        ctl.exitstatus = exit::STATUS_NOT_RUNNING;
    }
    Ok(())
}

fn pid(ctl: &mut Ctl, arg: &str) -> CallResult<()> {
    if !ctl.upcheck()? {
        return Ok(());
    }
    let names = words(arg);
    if names.is_empty() {
        let p = ctl.client.get_pid()?;
        ctl.output(&p.to_string());
    } else if names.contains(&"all") {
        for info in ctl.client.get_all_process_info()? {
            ctl.output(&info.int_of("pid").to_string());
        }
    } else {
        for name in names {
            match ctl.client.get_process_info(name) {
                Ok(info) => {
                    let p = info.int_of("pid");
                    ctl.output(&p.to_string());
                    if p == 0 {
                        ctl.exitstatus = exit::NOT_RUNNING;
                    }
                }
                Err(e) if e.fault_code() == Some(faults::BAD_NAME) => {
                    ctl.exitstatus = exit::GENERIC;
                    ctl.output(&format!("No such process {name}"));
                }
                Err(e) => {
                    ctl.exitstatus = exit::GENERIC;
                    return Err(e);
                }
            }
        }
    }
    Ok(())
}

/// Prints the lines of a group/all result array with `fmt`, accumulating the exit status.
fn show_results(
    ctl: &mut Ctl,
    results: &[Value],
    fmt: fn(&OpResult) -> Option<String>,
    ignored: Option<i32>,
) -> CallResult<()> {
    for v in results {
        let r = OpResult::from_value(v);
        let Some(line) = fmt(&r) else {
            return Err(unexpected(format!("unknown result code {} for {}", r.status, r.namespec())));
        };
        ctl.output(&line);
        ctl.set_exitstatus_from_fault(r.status, ignored);
    }
    Ok(())
}

fn start_line(r: &OpResult) -> Option<String> {
    output::start_result(r)
}
fn stop_line(r: &OpResult) -> Option<String> {
    output::signal_result(r, "stopped")
}
fn signal_line(r: &OpResult) -> Option<String> {
    output::signal_result(r, "signalled")
}
fn clear_line(r: &OpResult) -> Option<String> {
    output::clear_result(r)
}

/// The single-name path shared by start/stop/signal: success line or the fault as a result line.
fn single(
    ctl: &mut Ctl,
    name: &str,
    res: CallResult<Value>,
    success: &str,
    fmt: fn(&OpResult) -> Option<String>,
    ignored: Option<i32>,
) -> CallResult<()> {
    match res {
        Ok(_) => {
            let (g, p) = output::split_namespec(name);
            ctl.output(&format!("{}: {success}", output::make_namespec(g, p.unwrap_or("None"))));
            Ok(())
        }
        Err(CallError::Fault { fault, .. }) => {
            let r = OpResult::from_fault(name, fault.code, &fault.string);
            let Some(line) = fmt(&r) else {
                return Err(unexpected(format!("unknown result code {} for {}", r.status, r.namespec())));
            };
            ctl.output(&line);
            ctl.set_exitstatus_from_fault(r.status, ignored);
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// What differs between `start` and `stop` (supervisorctl's exit statuses differ too).
struct StartStop {
    start: bool,
    verb: &'static str,
    done: &'static str,
    /// The exit status for a missing name and for an unknown group.
    usage_status: i32,
    /// The fault that is not an error (already started / not running).
    ignored: i32,
    line: fn(&OpResult) -> Option<String>,
}

const START: StartStop = StartStop {
    start: true,
    verb: "start",
    done: "started",
    usage_status: exit::INVALID_ARGS,
    ignored: faults::ALREADY_STARTED,
    line: start_line,
};

const STOP: StartStop = StartStop {
    start: false,
    verb: "stop",
    done: "stopped",
    usage_status: exit::GENERIC,
    ignored: faults::NOT_RUNNING,
    line: stop_line,
};

fn start(ctl: &mut Ctl, arg: &str) -> CallResult<()> {
    start_or_stop(ctl, arg, &START)
}

fn stop(ctl: &mut Ctl, arg: &str) -> CallResult<()> {
    start_or_stop(ctl, arg, &STOP)
}

fn start_or_stop(ctl: &mut Ctl, arg: &str, op: &StartStop) -> CallResult<()> {
    if !ctl.upcheck()? {
        return Ok(());
    }
    let names = words(arg);
    if names.is_empty() {
        ctl.output(&format!("Error: {} requires a process name", op.verb));
        ctl.exitstatus = op.usage_status;
        print_help(ctl, op.verb);
        return Ok(());
    }
    let ignored = Some(op.ignored);
    if names.contains(&"all") {
        let results = if op.start { ctl.client.start_all_processes()? } else { ctl.client.stop_all_processes()? };
        return show_results(ctl, &results, op.line, ignored);
    }
    for name in names {
        let (group, process) = output::split_namespec(name);
        if process.is_none() {
            let results =
                if op.start { ctl.client.start_process_group(group) } else { ctl.client.stop_process_group(group) };
            match results {
                Ok(results) => show_results(ctl, &results, op.line, ignored)?,
                Err(e) if e.fault_code() == Some(faults::BAD_NAME) => {
                    ctl.output(&format!("{group}: ERROR (no such group)"));
                    ctl.exitstatus = op.usage_status;
                }
                Err(e) => return Err(e),
            }
        } else {
            let res = if op.start { ctl.client.start_process(name) } else { ctl.client.stop_process(name) };
            single(ctl, name, res, op.done, op.line, ignored)?;
        }
    }
    Ok(())
}

fn signal(ctl: &mut Ctl, arg: &str) -> CallResult<()> {
    if !ctl.upcheck()? {
        return Ok(());
    }
    let args = words(arg);
    if args.len() < 2 {
        ctl.output("Error: signal requires a signal name and a process name");
        print_help(ctl, "signal");
        ctl.exitstatus = exit::GENERIC;
        return Ok(());
    }
    let sig = args[0];
    let names = &args[1..];
    if names.contains(&"all") {
        let results = ctl.client.signal_all_processes(sig)?;
        return show_results(ctl, &results, signal_line, None);
    }
    for name in names {
        let (group, process) = output::split_namespec(name);
        if process.is_none() {
            match ctl.client.signal_process_group(group, sig) {
                Ok(results) => show_results(ctl, &results, signal_line, None)?,
                Err(e) if e.fault_code() == Some(faults::BAD_NAME) => {
                    ctl.output(&format!("{group}: ERROR (no such group)"));
                    ctl.exitstatus = exit::GENERIC;
                }
                Err(e) => return Err(e),
            }
        } else {
            let res = ctl.client.signal_process(name, sig);
            single(ctl, name, res, "signalled", signal_line, None)?;
        }
    }
    Ok(())
}

fn restart(ctl: &mut Ctl, arg: &str) -> CallResult<()> {
    if !ctl.upcheck()? {
        return Ok(());
    }
    if words(arg).is_empty() {
        ctl.output("Error: restart requires a process name");
        ctl.exitstatus = exit::GENERIC;
        print_help(ctl, "restart");
        return Ok(());
    }
    stop(ctl, arg)?;
    start(ctl, arg)
}

fn clear(ctl: &mut Ctl, arg: &str) -> CallResult<()> {
    if !ctl.upcheck()? {
        return Ok(());
    }
    let names = words(arg);
    if names.is_empty() {
        ctl.output("Error: clear requires a process name");
        ctl.exitstatus = exit::GENERIC;
        print_help(ctl, "clear");
        return Ok(());
    }
    if names.contains(&"all") {
        let results = ctl.client.clear_all_process_logs()?;
        return show_results(ctl, &results, clear_line, None);
    }
    for name in names {
        let (group, process) = output::split_namespec(name);
        let targets: Vec<String> = match process {
            Some(_) => vec![name.to_string()],
            // Quirk Q8 fixed: `clear grp:*` clears every process of the group (supervisorctl
            // prints `grp:None: ERROR (no such process)`).
            None => {
                let members: Vec<String> = ctl
                    .client
                    .get_all_process_info()?
                    .iter()
                    .filter(|i| i.str_of("group") == group)
                    .map(|i| format!("{}:{}", i.str_of("group"), i.str_of("name")))
                    .collect();
                if members.is_empty() {
                    ctl.output(&format!("{group}: ERROR (no such group)"));
                    ctl.exitstatus = exit::GENERIC;
                }
                members
            }
        };
        for target in targets {
            let res = ctl.client.clear_process_logs(&target);
            single(ctl, &target, res, "cleared", clear_line, None)?;
        }
    }
    Ok(())
}

/// Prints why a log stream could not be read, on stderr (the 404 line is supervisorctl's).
fn report_stream_error(serverurl: &str, path: &str, e: HttpError) {
    let url = format!("{serverurl}{path}");
    match e {
        HttpError::Status { code, .. } => eprintln!("{url} Cannot read, status code {code}"),
        HttpError::Connect(err) => {
            eprintln!("minisv ctl: {}", CallError::Connect { url: serverurl.to_string(), err })
        }
        HttpError::Io(err) => eprintln!("minisv ctl: reading {url} failed: {err}"),
        HttpError::Malformed(m) => eprintln!("minisv ctl: reading {url} failed: {m}"),
    }
}

/// The body of `tail -f`, `maintail -f`: streams `path` until Ctrl-C or the server ends it.
fn tailf(ctl: &mut Ctl, path: &str) -> CallResult<()> {
    ctl.output("==> Press Ctrl-C to exit <==");
    let endpoint = ctl.client.endpoint()?.clone();
    let auth = match (&ctl.settings.username, &ctl.settings.password) {
        (u, Some(p)) => Some(basic_auth(u.as_deref().unwrap_or(""), p)),
        _ => None,
    };
    term::clear_interrupt();
    term::catch_sigint();
    let mut sink = |d: &[u8]| ctl.write_raw(d);
    let res = stream_get(&endpoint, path, auth.as_deref(), &mut sink, &term::interrupted);
    match res {
        Ok(StreamEnd::Stopped) => ctl.output(""),
        Ok(StreamEnd::Finished) => {}
        Err(e) => report_stream_error(&ctl.settings.serverurl, path, e),
    }
    Ok(())
}

fn tail(ctl: &mut Ctl, arg: &str) -> CallResult<()> {
    if !ctl.upcheck()? {
        return Ok(());
    }
    let mut args = words(arg);
    if args.is_empty() {
        ctl.output("Error: too few arguments");
        ctl.exitstatus = exit::GENERIC;
        print_help(ctl, "tail");
        return Ok(());
    }
    // minisv: `tail -f` of several names, a group or `all` (which supervisorctl refuses).
    if args[0] == "-f" {
        if let Some((names, channel)) = mergedtail::merged_request(&args[1..]) {
            return tail_merged(ctl, &names, channel);
        }
    }
    if args.len() > 3 {
        ctl.output("Error: too many arguments");
        ctl.exitstatus = exit::GENERIC;
        print_help(ctl, "tail");
        return Ok(());
    }
    let modifier = if args[0].starts_with('-') { Some(args.remove(0)) } else { None };
    let (name, channel) = match args.len() {
        1 => (args[0], "stdout".to_string()),
        0 => {
            ctl.output("Error: tail requires process name");
            ctl.exitstatus = exit::GENERIC;
            return Ok(());
        }
        _ => {
            let ch = args[args.len() - 1].to_lowercase();
            if ch != "stdout" && ch != "stderr" {
                ctl.output(&format!("Error: bad channel {}", py_repr(&ch)));
                ctl.exitstatus = exit::GENERIC;
                return Ok(());
            }
            (args[0], ch)
        }
    };
    let mut bytes = Some(1600i64);
    if let Some(m) = modifier {
        let what = &m[1..];
        if what == "f" {
            bytes = None;
        } else {
            match parse_py_int(what) {
                Some(n) => bytes = Some(n),
                None => {
                    ctl.output(&format!("Error: bad argument {m}"));
                    ctl.exitstatus = exit::GENERIC;
                    return Ok(());
                }
            }
        }
    }
    let Some(bytes) = bytes else {
        return tailf(ctl, &format!("/logtail/{name}/{channel}"));
    };
    match ctl.client.read_process_log(name, channel == "stderr", bytes) {
        Ok(text) => ctl.output(&text),
        Err(e) => {
            ctl.exitstatus = exit::GENERIC;
            let reason = match e.fault_code() {
                Some(faults::NO_FILE) => "no log file",
                Some(faults::FAILED) => "unknown error reading log",
                Some(faults::BAD_NAME) => "no such process name",
                _ => return Err(e),
            };
            ctl.output(&format!("{name}: ERROR ({reason})"));
        }
    }
    Ok(())
}

/// `tail -f` of several logs: one `/mergedtail` stream, its labels coloured on a terminal,
/// until Ctrl-C or the daemon ends it. Unknown names: the daemon's lines, status 1.
fn tail_merged(ctl: &mut Ctl, names: &[&str], channel: Option<&str>) -> CallResult<()> {
    let path = mergedtail::path(names, channel);
    let endpoint = ctl.client.endpoint()?.clone();
    let auth = match (&ctl.settings.username, &ctl.settings.password) {
        (u, Some(p)) => Some(basic_auth(u.as_deref().unwrap_or(""), p)),
        _ => None,
    };
    // One connection while it streams: the version check's is not kept open meanwhile.
    ctl.client.disconnect();
    term::clear_interrupt();
    term::catch_sigint();
    let mut painter = Painter::new(mergedtail::colour_wanted());
    let mut painted = Vec::new();
    let mut opened = false;
    let mut sink = |d: &[u8]| {
        if !opened {
            opened = true;
            ctl.output("==> Press Ctrl-C to exit <==");
        }
        painted.clear();
        painter.paint(d, &mut painted);
        ctl.write_raw(&painted);
    };
    let res = stream_get(&endpoint, &path, auth.as_deref(), &mut sink, &term::interrupted);
    match res {
        Ok(StreamEnd::Stopped) => ctl.output(""),
        Ok(StreamEnd::Finished) => {
            if !painter.at_line_start() {
                ctl.output("");
            }
        }
        // minisv's refusal: which names are unknown.
        Err(HttpError::Status { code: 404, content_type, body, .. }) if content_type.starts_with("text/plain") => {
            ctl.exitstatus = exit::GENERIC;
            ctl.write_raw(&body);
        }
        // Supervisor (or an older minisv) has no such stream.
        Err(HttpError::Status { code: 404, .. }) => {
            ctl.exitstatus = exit::GENERIC;
            ctl.output(&format!(
                "ERROR: {} cannot stream several logs at once (a minisv daemon can); tail -f one process",
                ctl.settings.serverurl
            ));
        }
        Err(e) => {
            ctl.exitstatus = exit::GENERIC;
            report_stream_error(&ctl.settings.serverurl, &path, e);
        }
    }
    Ok(())
}

/// Python's `int()` of a string: optional sign, digits, surrounding whitespace, `_` separators.
fn parse_py_int(s: &str) -> Option<i64> {
    let t = s.trim();
    if t.is_empty() || t.starts_with('_') || t.ends_with('_') || t.contains("__") {
        return None;
    }
    t.replace('_', "").parse::<i64>().ok()
}

fn maintail(ctl: &mut Ctl, arg: &str) -> CallResult<()> {
    if !ctl.upcheck()? {
        return Ok(());
    }
    let args = words(arg);
    let bytes = match args.as_slice() {
        [] => 1600,
        [a] => {
            let parsed = a.strip_prefix('-').map(|w| if w == "f" { None } else { Some(parse_py_int(w)) });
            match parsed {
                Some(None) => return tailf(ctl, "/mainlogtail"),
                Some(Some(Some(n))) => n,
                _ => {
                    ctl.output(&format!("Error: bad argument {a}"));
                    ctl.exitstatus = exit::GENERIC;
                    return Ok(());
                }
            }
        }
        _ => {
            ctl.output("Error: too many arguments");
            ctl.exitstatus = exit::GENERIC;
            print_help(ctl, "maintail");
            return Ok(());
        }
    };
    match ctl.client.read_log(bytes) {
        Ok(text) => ctl.output(&text),
        Err(e) => {
            ctl.exitstatus = exit::GENERIC;
            let reason = match e.fault_code() {
                Some(faults::NO_FILE) => "no log file",
                Some(faults::FAILED) => "unknown error reading log",
                _ => return Err(e),
            };
            ctl.output(&format!("supervisord: ERROR ({reason})"));
        }
    }
    Ok(())
}

/// Commands that accept no arguments print this and their help when given some.
fn no_args(ctl: &mut Ctl, name: &str, arg: &str) -> bool {
    if arg.is_empty() {
        return true;
    }
    ctl.output(&format!("Error: {name} accepts no arguments"));
    ctl.exitstatus = exit::GENERIC;
    print_help(ctl, name);
    false
}

fn avail(ctl: &mut Ctl, arg: &str) -> CallResult<()> {
    if !no_args(ctl, "avail", arg) {
        return Ok(());
    }
    match ctl.client.get_all_config_info() {
        Ok(infos) => {
            for info in infos {
                ctl.output(&output::avail_line(&info));
            }
            Ok(())
        }
        Err(e) => {
            ctl.exitstatus = exit::GENERIC;
            if e.fault_code() == Some(faults::SHUTDOWN_STATE) {
                ctl.output("ERROR: supervisor shutting down");
                return Ok(());
            }
            Err(e)
        }
    }
}

fn reread(ctl: &mut Ctl, arg: &str) -> CallResult<()> {
    if !no_args(ctl, "reread", arg) {
        return Ok(());
    }
    match ctl.client.reload_config() {
        Ok((added, changed, removed)) => {
            let mut lines: Vec<(String, &str)> = Vec::new();
            for (names, word) in [(added, "available"), (changed, "changed"), (removed, "disappeared")] {
                for n in names {
                    // A later list wins for a name in two lists, as Python's dict.update.
                    lines.retain(|(m, _)| *m != n);
                    lines.push((n, word));
                }
            }
            if lines.is_empty() {
                ctl.output("No config updates to processes");
            }
            lines.sort();
            for (n, w) in lines {
                ctl.output(&format!("{n}: {w}"));
            }
            Ok(())
        }
        Err(e) => {
            ctl.exitstatus = exit::GENERIC;
            match e {
                CallError::Fault { ref fault, .. } if fault.code == faults::SHUTDOWN_STATE => {
                    ctl.output("ERROR: supervisor shutting down");
                    Ok(())
                }
                CallError::Fault { ref fault, .. } if fault.code == faults::CANT_REREAD => {
                    ctl.output(&format!("ERROR: {}", fault.string));
                    Ok(())
                }
                e => Err(e),
            }
        }
    }
}

fn add(ctl: &mut Ctl, arg: &str) -> CallResult<()> {
    for name in words(arg) {
        match ctl.client.add_process_group(name) {
            Ok(_) => ctl.output(&format!("{name}: added process group")),
            Err(e) => match e.fault_code() {
                Some(faults::SHUTDOWN_STATE) => {
                    ctl.output("ERROR: shutting down");
                    ctl.exitstatus = exit::GENERIC;
                }
                // Quirk Q14, kept: an already-active group is not an error for the exit status.
                Some(faults::ALREADY_ADDED) => ctl.output("ERROR: process group already active"),
                Some(faults::BAD_NAME) => {
                    ctl.output(&format!("ERROR: no such process/group: {name}"));
                    ctl.exitstatus = exit::GENERIC;
                }
                _ => {
                    ctl.exitstatus = exit::GENERIC;
                    return Err(e);
                }
            },
        }
    }
    Ok(())
}

fn remove(ctl: &mut Ctl, arg: &str) -> CallResult<()> {
    for name in words(arg) {
        match ctl.client.remove_process_group(name) {
            Ok(_) => ctl.output(&format!("{name}: removed process group")),
            Err(e) => {
                ctl.exitstatus = exit::GENERIC;
                match e.fault_code() {
                    Some(faults::STILL_RUNNING) => ctl.output(&format!("ERROR: process/group still running: {name}")),
                    Some(faults::BAD_NAME) => ctl.output(&format!("ERROR: no such process/group: {name}")),
                    _ => return Err(e),
                }
            }
        }
    }
    Ok(())
}

fn update(ctl: &mut Ctl, arg: &str) -> CallResult<()> {
    let (added, changed, removed) = match ctl.client.reload_config() {
        Ok(r) => r,
        Err(e) => {
            ctl.exitstatus = exit::GENERIC;
            if e.fault_code() == Some(faults::SHUTDOWN_STATE) {
                ctl.output("ERROR: already shutting down");
                return Ok(());
            }
            return Err(e);
        }
    };
    let mut wanted: Vec<&str> = words(arg);
    wanted.sort();
    wanted.dedup();
    if wanted.contains(&"all") {
        wanted.clear();
    }
    if !wanted.is_empty() {
        let mut groups: Vec<String> =
            ctl.client.get_all_process_info()?.iter().map(|i| i.str_of("group").to_string()).collect();
        groups.extend(added.iter().cloned());
        for g in &wanted {
            if !groups.iter().any(|x| x == g) {
                ctl.output(&format!("ERROR: no such group: {g}"));
                ctl.exitstatus = exit::GENERIC;
            }
        }
    }
    let selected = |g: &String| wanted.is_empty() || wanted.contains(&g.as_str());
    for g in removed.iter().filter(|g| selected(g)) {
        let results = ctl.client.stop_process_group(g)?;
        ctl.output(&format!("{g}: stopped"));
        if results.iter().any(|r| r.int_of("status") == i64::from(faults::FAILED)) {
            ctl.output(&format!("{g}: has problems; not removing"));
            ctl.exitstatus = exit::GENERIC;
            continue;
        }
        ctl.client.remove_process_group(g)?;
        ctl.output(&format!("{g}: removed process group"));
    }
    for g in changed.iter().filter(|g| selected(g)) {
        // minisv restarts only the processes whose settings changed; a Supervisor daemon does
        // not have the method, and the whole group is restarted as supervisorctl does. The
        // words are supervisorctl's either way ("stopped", whether or not anything ran), so
        // scripts that read them see the same lines.
        match ctl.client.call("minisv.updateProcessGroup", &[Value::from(g.as_str())]) {
            Ok(_) => {
                ctl.output(&format!("{g}: stopped"));
                ctl.output(&format!("{g}: updated process group"));
                continue;
            }
            Err(e) if e.fault_code() == Some(faults::UNKNOWN_METHOD) => {}
            Err(e) => return Err(e),
        }
        ctl.client.stop_process_group(g)?;
        ctl.output(&format!("{g}: stopped"));
        ctl.client.remove_process_group(g)?;
        ctl.client.add_process_group(g)?;
        ctl.output(&format!("{g}: updated process group"));
    }
    for g in added.iter().filter(|g| selected(g)) {
        ctl.client.add_process_group(g)?;
        ctl.output(&format!("{g}: added process group"));
    }
    Ok(())
}

/// Asks a y/N question in interactive mode; always yes otherwise.
fn confirm(ctl: &mut Ctl, question: &str) -> bool {
    if !ctl.interactive {
        return true;
    }
    ctl.input.ask(question).is_some_and(|a| a.to_lowercase().starts_with('y'))
}

fn reload(ctl: &mut Ctl, arg: &str) -> CallResult<()> {
    if !no_args(ctl, "reload", arg) {
        return Ok(());
    }
    if !confirm(ctl, "Really restart the remote supervisord process y/N? ") {
        return Ok(());
    }
    match ctl.client.restart() {
        Ok(_) => ctl.output("Restarted supervisord"),
        Err(e) => {
            ctl.exitstatus = exit::GENERIC;
            if e.fault_code() != Some(faults::SHUTDOWN_STATE) {
                return Err(e);
            }
            ctl.output("ERROR: already shutting down");
        }
    }
    Ok(())
}

fn shutdown(ctl: &mut Ctl, arg: &str) -> CallResult<()> {
    if !no_args(ctl, "shutdown", arg) {
        return Ok(());
    }
    if !confirm(ctl, "Really shut the remote supervisord process down y/N? ") {
        return Ok(());
    }
    match ctl.client.shutdown() {
        Ok(_) => ctl.output("Shut down"),
        // Quirk Q14, kept: already shutting down leaves the exit status at 0.
        Err(e) if e.fault_code() == Some(faults::SHUTDOWN_STATE) => ctl.output("ERROR: already shutting down"),
        Err(e) if ctl.report_unreachable(&e) => {}
        Err(e) => {
            ctl.exitstatus = exit::GENERIC;
            return Err(e);
        }
    }
    Ok(())
}

/// `reopen` / `logrotate`: minisv's own methods; a Supervisor daemon lacks them.
fn log_command(ctl: &mut Ctl, arg: &str, method: &str, done: &str) -> CallResult<()> {
    let names = words(arg);
    let targets: Vec<&str> = if names.is_empty() || names.contains(&"all") { vec![""] } else { names };
    for name in targets {
        match ctl.client.call(method, &[Value::from(name)]) {
            Ok(_) if name.is_empty() => ctl.output(&format!("all logs {done}")),
            Ok(_) => ctl.output(&format!("{name}: {done}")),
            Err(e) if e.fault_code() == Some(faults::UNKNOWN_METHOD) => {
                ctl.output("ERROR: the daemon does not know this command (it is not minisv; send it SIGUSR2 to reopen its logs)");
                ctl.exitstatus = exit::GENERIC;
                return Ok(());
            }
            Err(e) if e.fault_code() == Some(faults::BAD_NAME) => {
                ctl.output(&format!("{name}: ERROR (no such process)"));
                ctl.exitstatus = exit::GENERIC;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn reopen(ctl: &mut Ctl, arg: &str) -> CallResult<()> {
    log_command(ctl, arg, "minisv.reopenLogs", "reopened")
}

fn logrotate(ctl: &mut Ctl, arg: &str) -> CallResult<()> {
    log_command(ctl, arg, "minisv.rotateLogs", "rotated")
}

/// How long `upgrade` waits for the new daemon to answer.
const UPGRADE_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// `upgrade`: asks for an upgrade in place, then waits (reconnecting) until the daemon has
/// been through it, and says how it went: the new daemon took over, or the old one goes on.
fn upgrade(ctl: &mut Ctl, arg: &str) -> CallResult<()> {
    if !no_args(ctl, "upgrade", arg) {
        return Ok(());
    }
    let before = match ctl.client.call("minisv.lastUpgrade", &[]) {
        Ok(v) => v,
        Err(e) if e.fault_code() == Some(faults::UNKNOWN_METHOD) => {
            ctl.output("ERROR: the daemon does not know this command (it is not minisv, or one without upgrades)");
            ctl.exitstatus = exit::GENERIC;
            return Ok(());
        }
        Err(e) if ctl.report_unreachable(&e) => return Ok(()),
        Err(e) => return Err(e),
    };
    let generation = before.int_of("generation");
    match ctl.client.call("minisv.upgrade", &[]) {
        Ok(_) => {}
        Err(CallError::Fault { fault, .. }) if fault.code == faults::FAILED => {
            let why = fault.string.strip_prefix("FAILED: ").unwrap_or(&fault.string).to_string();
            ctl.output(&format!("ERROR: upgrade refused: {why}"));
            ctl.exitstatus = exit::GENERIC;
            return Ok(());
        }
        Err(e) => return Err(e),
    }
    // The daemon answered, then executed the new binary: wait for whichever daemon runs next.
    let deadline = std::time::Instant::now() + UPGRADE_WAIT;
    let mut last_error = None;
    while std::time::Instant::now() < deadline {
        match ctl.client.call("minisv.lastUpgrade", &[]) {
            Ok(now) if now.int_of("generation") > generation => {
                let message = now.str_of("message").to_string();
                if now.get("ok").and_then(Value::as_bool) == Some(true) {
                    ctl.output(&message);
                } else {
                    ctl.output(&format!("ERROR: {message}"));
                    ctl.exitstatus = exit::GENERIC;
                }
                return Ok(());
            }
            Ok(_) => {}
            Err(e) => last_error = Some(e.to_string()),
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let why = last_error.map(|e| format!(" (last error: {e})")).unwrap_or_default();
    ctl.output(&format!("ERROR: the daemon did not report the upgrade within {} s{why}", UPGRADE_WAIT.as_secs()));
    ctl.exitstatus = exit::GENERIC;
    Ok(())
}

fn version(ctl: &mut Ctl, arg: &str) -> CallResult<()> {
    if !no_args(ctl, "version", arg) {
        return Ok(());
    }
    if !ctl.upcheck()? {
        return Ok(());
    }
    let v = ctl.client.get_supervisor_version()?;
    ctl.output(&v);
    Ok(())
}

fn open(ctl: &mut Ctl, arg: &str) -> CallResult<()> {
    let url = arg.trim();
    let scheme = url.split_once(':').map(|(s, _)| s.to_ascii_lowercase()).unwrap_or_default();
    if scheme != "unix" && scheme != "http" {
        ctl.output("ERROR: url must be http:// or unix://");
        ctl.exitstatus = exit::GENERIC;
        return Ok(());
    }
    ctl.settings.serverurl = url.to_string();
    ctl.reconnect();
    let old = ctl.exitstatus;
    let r = status(ctl, "");
    ctl.exitstatus = old;
    r
}

fn fg(ctl: &mut Ctl, arg: &str) -> CallResult<()> {
    if !ctl.upcheck()? {
        return Ok(());
    }
    let names = words(arg);
    if names.is_empty() {
        ctl.output("ERROR: no process name supplied");
        ctl.exitstatus = exit::GENERIC;
        print_help(ctl, "fg");
        return Ok(());
    }
    if names.len() > 1 {
        ctl.output("ERROR: too many process names supplied");
        ctl.exitstatus = exit::GENERIC;
        return Ok(());
    }
    let name = names[0];
    let info = match ctl.client.get_process_info(name) {
        Ok(i) => i,
        Err(e) if e.fault_code() == Some(faults::BAD_NAME) => {
            ctl.output("ERROR: bad process name supplied");
            ctl.exitstatus = exit::GENERIC;
            return Ok(());
        }
        Err(e @ CallError::Fault { .. }) => {
            ctl.output(&format!("ERROR: {}", fault_repr(&e)));
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    if info.int_of("state") != output::RUNNING {
        ctl.output("ERROR: process not running");
        ctl.exitstatus = exit::GENERIC;
        return Ok(());
    }
    ctl.output("==> Press Ctrl-C to exit <==");
    term::clear_interrupt();
    term::catch_sigint();
    let stop = Arc::new(AtomicBool::new(false));
    let endpoint = ctl.client.endpoint()?.clone();
    let auth = ctl.settings.password.as_ref().map(|p| basic_auth(ctl.settings.username.as_deref().unwrap_or(""), p));
    let mut threads = Vec::new();
    for channel in ["stdout", "stderr"] {
        let (endpoint, auth, stop) = (endpoint.clone(), auth.clone(), Arc::clone(&stop));
        let serverurl = ctl.settings.serverurl.clone();
        let path = format!("/logtail/{name}/{channel}");
        threads.push(std::thread::spawn(move || {
            let mut sink = |d: &[u8]| {
                use std::io::Write;
                let mut out = std::io::stdout().lock();
                let _ = out.write_all(d);
                let _ = out.flush();
            };
            let stopped = || stop.load(Ordering::SeqCst) || term::interrupted();
            if let Err(e) = stream_get(&endpoint, &path, auth.as_deref(), &mut sink, &stopped) {
                if matches!(e, HttpError::Status { .. }) || !stopped() {
                    report_stream_error(&serverurl, &path, e);
                }
            }
        }));
    }
    let result = fg_input_loop(ctl, name);
    stop.store(true, Ordering::SeqCst);
    for t in threads {
        let _ = t.join();
    }
    result
}

fn fg_input_loop(ctl: &mut Ctl, name: &str) -> CallResult<()> {
    loop {
        let line = match ctl.input.plain_line() {
            super::shell::Line::Text(t) => t,
            _ => {
                ctl.output("Exiting foreground");
                return Ok(());
            }
        };
        if let Err(e) = ctl.client.send_process_stdin(name, &(line + "\n")) {
            match e.fault_code() {
                Some(faults::NOT_RUNNING) => ctl.output("Process got killed"),
                Some(_) => ctl.output(&format!("ERROR: {}", fault_repr(&e))),
                None => return Err(e),
            }
            ctl.output("Exiting foreground");
            return Ok(());
        }
        let info = ctl.client.get_process_info(name)?;
        if info.int_of("state") != output::RUNNING {
            ctl.output("Process got killed");
            ctl.output("Exiting foreground");
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_and_unique() {
        for w in COMMANDS.windows(2) {
            assert!(w[0].name < w[1].name, "{} before {}", w[0].name, w[1].name);
        }
        assert_eq!(COMMANDS.iter().filter(|c| c.listed).count(), 21);
        assert!(find("EOF").is_some_and(|c| c.name == "quit"));
    }

    #[test]
    fn every_help_starts_with_its_command() {
        for c in COMMANDS {
            assert!(c.help.starts_with(c.name), "{}", c.name);
        }
    }

    #[test]
    fn python_reprs() {
        assert_eq!(py_repr("foo"), "'foo'");
        assert_eq!(py_repr("it's"), "\"it's\"");
        assert_eq!(py_repr("a\nb"), "'a\\nb'");
    }

    #[test]
    fn python_ints() {
        assert_eq!(parse_py_int("100"), Some(100));
        assert_eq!(parse_py_int("1_000"), Some(1000));
        assert_eq!(parse_py_int("x"), None);
        assert_eq!(parse_py_int(""), None);
    }
}
