//! The XML-RPC methods (reference 4.5, 4.6), run on the event loop thread, the only owner of
//! process state. One table declares every method with its signature, help text and handler
//! (habit 8). A method that changes processes decodes its arguments into a core command
//! (`supervisor::Command`) and encodes the core's answer; when the answer waits for the state
//! machine (start/stop with wait, group operations, update), the method returns a `Pending`
//! that the loop resumes with the answer. Multicall runs its calls in turn the same way.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::{Instant, SystemTime};

use super::faults::{self, RpcError};
use super::host::Host;
use super::info;
use super::xmlrpc::{self, Value};
use crate::config::ini::py_repr;
use crate::config::{Channel, LogLevel};
use crate::supervisor::{Answer, Command, Each, Issued, Mood, ProcId, Refusal, Target, Ticket};

/// What a method returns.
pub enum Reply {
    Done(Value),
    Later(Pending),
}

type Outcome = Result<Reply, RpcError>;

/// A reply that waits for the core's answer to a command.
#[derive(Debug)]
pub enum Pending {
    /// The answer is the method's result.
    Answer(Ticket),
    /// system.multicall: `current` waits; the calls after it run once it is answered.
    Multicall { current: Box<Pending>, calls: VecDeque<Value>, results: Vec<Value> },
}

impl Pending {
    /// The command whose answer this reply waits for.
    pub fn ticket(&self) -> Ticket {
        match self {
            Pending::Answer(t) => *t,
            Pending::Multicall { current, .. } => current.ticket(),
        }
    }
}

struct Method {
    name: &'static str,
    signature: &'static [&'static str],
    help: &'static str,
    handler: fn(&mut dyn Host, &Args) -> Outcome,
    /// `supervisor.*` methods refuse to work while shutting down (SHUTDOWN_STATE).
    checks_state: bool,
}

const fn m(
    name: &'static str,
    signature: &'static [&'static str],
    help: &'static str,
    handler: fn(&mut dyn Host, &Args) -> Outcome,
) -> Method {
    let bytes = name.as_bytes();
    // "supervisor." methods check the daemon state; "system." ones never do.
    let checks_state = bytes.len() > 11 && bytes[0] == b's' && bytes[1] == b'u';
    Method { name, signature, help, handler, checks_state }
}

const READ_HELP: &str = "Read length bytes from name's log starting at offset.\n\n@param string name Process name (or group:name)\n@param int offset Offset to start reading from (negative: from the end)\n@param int length Number of bytes to read (0: up to the end)\n@return string result Bytes of log";
const TAIL_HELP: &str = "Tail a process log: read length bytes from offset, and tell whether bytes were skipped.\n\n@param string name Process name (or group:name)\n@param int offset Offset to start reading from\n@param int length Maximum number of bytes to return\n@return array result [string bytes, int offset, bool overflow]";

/// Every method, aliases included, sorted by name (the listMethods order).
static METHODS: &[Method] = &[
    m("minisv.getProcessStats", &["array"], "Memory and CPU of every running process with its descendants, read from /proc.\n\n@return array result Structs: name, group, pid, rss_bytes (int), cpu_seconds (double), memory_limit and memory_max (double, bytes; 0 when not set)", get_process_stats),
    m("minisv.lastUpgrade", &["struct"], "What the daemon knows of its upgrades in place: how many were tried (generation), and the last one's outcome.\n\n@return struct result generation (int), pid (int), version (string), ok (boolean, false when none was tried or the last failed), message (string)", last_upgrade),
    m("minisv.reopenLogs", &["boolean", "string"], "Close and reopen log files at their paths, for external log rotation (as SIGUSR2 does): of one process, or of every process and the main log when the name is empty or 'all'.\n\n@param string name The process name (or group:name, group:*), empty or 'all'\n@return boolean result Always True unless error", reopen_logs),
    m("minisv.rotateLogs", &["boolean", "string"], "Rotate log files now (f.1 ... f.N as when maxbytes is reached): of one process, or of every process and the main log when the name is empty or 'all'.\n\n@param string name The process name (or group:name, group:*), empty or 'all'\n@return boolean result Always True unless error", rotate_logs),
    m("minisv.updateProcessGroup", &["struct", "string"], "Apply the configuration last read (by reloadConfig) to an active group, restarting only the processes whose own settings changed. Unchanged processes keep running, and processes stopped by hand stay stopped. Supervisor restarts the whole group instead.\n\n@param string name The group name\n@return struct result Process names: added, changed, removed, unchanged", update_process_group),
    m("minisv.upgrade", &["boolean"], "Upgrade in place: run the binary at the daemon's path once to check it, then execute it in this process, where it takes over every program (same pids, pipes, logs and sockets; nothing is stopped). Answers before the exec; see minisv.lastUpgrade for the outcome. Refused while stopping or reloading, and when the config file no longer gives the programs that run.\n\n@return boolean result True once the new binary passed its check (it is executed next)", upgrade),
    m("supervisor.addProcessGroup", &["boolean", "string"], "Activate a process group from the configuration that was last read.\n\n@param string name Name of the group to add\n@return boolean result True if successful", add_process_group),
    m("supervisor.clearAllProcessLogs", &["array"], "Clear the stdout and stderr logs of every process.\n\n@return array result An array of process status info structs", clear_all_process_logs),
    m("supervisor.clearLog", &["boolean"], "Clear the main log.\n\n@return boolean result Always true unless error", clear_log),
    m("supervisor.clearProcessLog", &["boolean", "string"], "Clear the stdout and stderr logs of a process and reopen them.\n\n@param string name The name of the process (or group:name)\n@return boolean result Always True unless error", clear_process_logs),
    m("supervisor.clearProcessLogs", &["boolean", "string"], "Clear the stdout and stderr logs of a process and reopen them.\n\n@param string name The name of the process (or group:name)\n@return boolean result Always True unless error", clear_process_logs),
    m("supervisor.getAPIVersion", &["string"], "Return the version of the RPC API used by minisv (Supervisor's, for compatibility).\n\n@return string version The API version", get_api_version),
    m("supervisor.getAllConfigInfo", &["array"], "Get info about every process in the configuration that was last read.\n\n@return array result An array of process config info structs", get_all_config_info),
    m("supervisor.getAllProcessInfo", &["array"], "Get info about all processes, sorted by group and then process name.\n\n@return array result An array of process status results", get_all_process_info),
    m("supervisor.getIdentification", &["string"], "Return the identifier of this daemon (the identifier setting).\n\n@return string identifier Identifying string", get_identification),
    m("supervisor.getPID", &["int"], "Return the process id of the daemon.\n\n@return int PID", get_pid),
    m("supervisor.getProcessInfo", &["struct", "string"], "Get info about one process.\n\n@param string name The name of the process (or group:name)\n@return struct result A structure containing data about the process", get_process_info),
    m("supervisor.getState", &["struct"], "Return the current state of the daemon as a struct.\n\n@return struct A struct with keys int statecode, string statename", get_state),
    m("supervisor.getSupervisorVersion", &["string"], "Return the version of minisv.\n\n@return string version The version", get_supervisor_version),
    m("supervisor.getVersion", &["string"], "Return the version of the RPC API used by minisv (an alias of getAPIVersion).\n\n@return string version The API version", get_api_version),
    m("supervisor.readLog", &["string", "int", "int"], "Read length bytes from the main log starting at offset.\n\n@param int offset Offset to start reading from (negative: from the end)\n@param int length Number of bytes to read (0: up to the end)\n@return string result Bytes of log", read_log),
    m("supervisor.readMainLog", &["string", "int", "int"], "Read length bytes from the main log starting at offset.\n\n@param int offset Offset to start reading from (negative: from the end)\n@param int length Number of bytes to read (0: up to the end)\n@return string result Bytes of log", read_log),
    m("supervisor.readProcessLog", &["string", "string", "int", "int"], READ_HELP, read_stdout_log),
    m("supervisor.readProcessStderrLog", &["string", "string", "int", "int"], READ_HELP, read_stderr_log),
    m("supervisor.readProcessStdoutLog", &["string", "string", "int", "int"], READ_HELP, read_stdout_log),
    m("supervisor.reloadConfig", &["array"], "Read the configuration again and report what changed, without applying it.\n\n@return array result [[added, changed, removed]]", reload_config),
    m("supervisor.removeProcessGroup", &["boolean", "string"], "Remove a stopped process group from the active configuration.\n\n@param string name Name of the group to remove\n@return boolean result Indicates whether the removal was successful", remove_process_group),
    m("supervisor.restart", &["boolean"], "Stop everything and start again with the configuration read anew, in the same process.\n\n@return boolean result Always true unless error", restart),
    m("supervisor.sendProcessStdin", &["boolean", "string", "string"], "Send a string of chars to the stdin of a process.\n\n@param string name The process name to send to (or group:name)\n@param string chars The character data to send to the process\n@return boolean result Always return True unless error", send_process_stdin),
    m("supervisor.sendRemoteCommEvent", &["boolean", "string", "string"], "Send an event that will be received by event listeners subscribed to REMOTE_COMMUNICATION.\n\n@param string type String for the \"type\" key in the event header\n@param string data Data for the event body\n@return boolean Always return True unless error", send_remote_comm_event),
    m("supervisor.shutdown", &["boolean"], "Stop every process and then the daemon.\n\n@return boolean result Always returns True unless error", shutdown),
    m("supervisor.signalAllProcesses", &["array", "string"], "Send a signal to every process that can receive one.\n\n@param string signal Signal to send, as name ('HUP') or number ('1')\n@return array result An array of process status info structs", signal_all_processes),
    m("supervisor.signalProcess", &["boolean", "string", "string"], "Send a signal to a process (to its pid only).\n\n@param string name Name of the process to signal (or 'group:name')\n@param string signal Signal to send, as name ('HUP') or number ('1')\n@return boolean result Always True unless error", signal_process),
    m("supervisor.signalProcessGroup", &["array", "string", "string"], "Send a signal to every process of a group.\n\n@param string name The group name\n@param string signal Signal to send, as name ('HUP') or number ('1')\n@return array result An array of process status info structs", signal_process_group),
    m("supervisor.startAllProcesses", &["array", "boolean"], "Start every process listed in the configuration, in priority order.\n\n@param boolean wait Wait for each process to be fully started\n@return array result An array of process status info structs", start_all_processes),
    m("supervisor.startProcess", &["boolean", "string", "boolean"], "Start a process.\n\n@param string name Process name (or ``group:name``, or ``group:*``)\n@param boolean wait Wait for process to be fully started\n@return boolean result Always true unless error", start_process),
    m("supervisor.startProcessGroup", &["array", "string", "boolean"], "Start every process of a group.\n\n@param string name The group name\n@param boolean wait Wait for each process to be fully started\n@return array result An array of process status info structs", start_process_group),
    m("supervisor.stopAllProcesses", &["array", "boolean"], "Stop every process, in reverse priority order.\n\n@param boolean wait Wait for each process to be fully stopped\n@return array result An array of process status info structs", stop_all_processes),
    m("supervisor.stopProcess", &["boolean", "string", "boolean"], "Stop a process.\n\n@param string name The name of the process to stop (or 'group:name')\n@param boolean wait Wait for the process to be fully stopped\n@return boolean result Always true unless error", stop_process),
    m("supervisor.stopProcessGroup", &["array", "string", "boolean"], "Stop every process of a group.\n\n@param string name The group name\n@param boolean wait Wait for each process to be fully stopped\n@return array result An array of process status info structs", stop_process_group),
    m("supervisor.tailProcessLog", &["array", "string", "int", "int"], TAIL_HELP, tail_stdout_log),
    m("supervisor.tailProcessStderrLog", &["array", "string", "int", "int"], TAIL_HELP, tail_stderr_log),
    m("supervisor.tailProcessStdoutLog", &["array", "string", "int", "int"], TAIL_HELP, tail_stdout_log),
    m("system.listMethods", &["array"], "Return an array listing the available method names.\n\n@return array result An array of method names available (strings).", list_methods),
    m("system.methodHelp", &["string", "string"], "Return a string showing the method's documentation.\n\n@param string name The name of the method.\n@return string result The documentation for the method name.", method_help),
    m("system.methodSignature", &["array", "string"], "Return an array describing the method signature: [rtype, ptype, ptype...].\n\n@param string name The name of the method.\n@return array result The result.", method_signature),
    m("system.multicall", &["array", "array"], "Process an array of calls, and return an array of results. Each call is a struct with keys methodName and params. Successful results are returned as they are (not wrapped in an array), as Supervisor does.\n\n@param array calls An array of call requests\n@return array result An array of results", multicall),
];

/// Positional arguments with Python's rules: a wrong count is INCORRECT_PARAMETERS, and each
/// argument is taken as supervisord's methods take it (`int(offset)`, `if wait:`), checked side by
/// side with supervisord 4.3. Where supervisord fails with HTTP 500 (`int('five')`, a number as a
/// process name), the answer here is an INCORRECT_PARAMETERS fault.
pub struct Args<'a>(&'a [Value]);

fn bad_params() -> RpcError {
    RpcError::new(faults::INCORRECT_PARAMETERS)
}

/// Python's `str()` of a scalar argument (supervisord formats those into its answers and events).
fn py_str(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Int(n) => Some(n.to_string()),
        Value::Bool(b) => Some(if *b { "True" } else { "False" }.to_string()),
        Value::Double(f) => Some(xmlrpc::python_float_repr(*f)),
        _ => None,
    }
}

/// Python's `int(v)`: an integer, a boolean, a double (truncated) or a string holding an integer
/// (`' 7 '`, `'+7'`, `'1_000'`).
fn py_int(v: &Value) -> Result<i64, RpcError> {
    let refused = |what: String| RpcError::with(faults::INCORRECT_PARAMETERS, what);
    match v {
        Value::Int(n) => Ok(*n),
        Value::Bool(b) => Ok(i64::from(*b)),
        Value::Double(f) if f.is_finite() && f.abs() < 9.0e18 => Ok(f.trunc() as i64),
        Value::Double(f) => Err(refused(format!("{} is not a finite integer", xmlrpc::python_float_repr(*f)))),
        Value::String(s) => match crate::config::types::py_int(s, 10) {
            Some(n) => i64::try_from(n).map_err(|_| refused(format!("{} is out of range", py_repr(s)))),
            None => Err(refused(format!("{} is not an integer", py_repr(s)))),
        },
        _ => Err(bad_params()),
    }
}

/// Python's truth value of an argument, as supervisord's `if wait:` reads it: `0`, `0.0`, `''`,
/// an empty array or struct and nil are false; anything else, even the string `'false'`, is true.
fn truthy(v: &Value) -> bool {
    match v {
        Value::Int(n) => *n != 0,
        Value::Bool(b) => *b,
        Value::Double(f) => *f != 0.0,
        Value::String(s) => !s.is_empty(),
        Value::DateTime(_) => true,
        Value::Base64(b) => !b.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Struct(m) => !m.is_empty(),
        Value::Nil => false,
    }
}

impl Args<'_> {
    fn count(&self, min: usize, max: usize) -> Result<(), RpcError> {
        if self.0.len() < min || self.0.len() > max {
            return Err(bad_params());
        }
        Ok(())
    }

    fn str(&self, i: usize) -> Result<&str, RpcError> {
        self.0.get(i).and_then(Value::as_str).ok_or_else(bad_params)
    }

    fn int(&self, i: usize) -> Result<i64, RpcError> {
        self.0.get(i).ok_or_else(bad_params).and_then(py_int)
    }

    fn bool_or(&self, i: usize, default: bool) -> bool {
        self.0.get(i).map_or(default, truthy)
    }
}

/// Decodes and runs one XML-RPC request body. `None`: the body is not an XML-RPC call (the
/// HTTP layer answers 400, as Supervisor does); the error is logged.
pub fn handle_request(lp: &mut dyn Host, body: &[u8]) -> Option<Outcome> {
    match xmlrpc::parse_method_call(body) {
        Ok((method, params)) => Some(call(lp, &method, &params)),
        Err(e) => {
            let shown = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
            lp.log(LogLevel::Error, &format!("XML-RPC request data {shown:?} is invalid: {e}"));
            None
        }
    }
}

/// Runs `method` with `params`.
pub fn call(lp: &mut dyn Host, method: &str, params: &[Value]) -> Outcome {
    let Some(m) = METHODS.iter().find(|m| m.name == method && available(lp, m)) else {
        return Err(RpcError::new(faults::UNKNOWN_METHOD));
    };
    if m.checks_state && lp.sup().mood() != Mood::Running && method != "supervisor.sendRemoteCommEvent" {
        return Err(RpcError::new(faults::SHUTDOWN_STATE));
    }
    (m.handler)(lp, &Args(params))
}

/// Without `[rpcinterface:supervisor]` only `system.*` exists, as in Supervisor (1.13).
fn available(lp: &dyn Host, m: &Method) -> bool {
    lp.supervisor_interface() || !m.name.starts_with("supervisor.")
}

pub fn encode(result: &Result<Value, RpcError>) -> String {
    match result {
        Ok(v) => xmlrpc::encode_response(v),
        Err(e) => xmlrpc::encode_fault(e.code, &e.fault_string()),
    }
}

fn done(v: impl Into<Value>) -> Outcome {
    Ok(Reply::Done(v.into()))
}

// ---- names -------------------------------------------------------------------------------

pub use crate::supervisor::namespec::{make as make_namespec, split as split_namespec};

enum Resolved {
    Group(String),
    Process(ProcId),
}

fn resolve(lp: &dyn Host, name: &str) -> Result<Resolved, RpcError> {
    let (group, process) = split_namespec(name);
    if lp.sup().group(group).is_none() {
        return Err(RpcError::with(faults::BAD_NAME, name));
    }
    match process {
        None => Ok(Resolved::Group(group.to_string())),
        Some(p) => lp.sup().find(group, p).map(Resolved::Process).ok_or_else(|| RpcError::with(faults::BAD_NAME, name)),
    }
}

fn resolve_process(lp: &dyn Host, name: &str) -> Result<ProcId, RpcError> {
    match resolve(lp, name)? {
        Resolved::Process(id) => Ok(id),
        Resolved::Group(_) => Err(RpcError::with(faults::BAD_NAME, name)),
    }
}

// ---- status and info ---------------------------------------------------------------------

fn get_api_version(_: &mut dyn Host, a: &Args) -> Outcome {
    a.count(0, 0)?;
    done("3.0")
}

fn get_supervisor_version(_: &mut dyn Host, a: &Args) -> Outcome {
    a.count(0, 0)?;
    done(env!("CARGO_PKG_VERSION"))
}

fn get_identification(lp: &mut dyn Host, a: &Args) -> Outcome {
    a.count(0, 0)?;
    done(lp.identifier())
}

fn get_state(lp: &mut dyn Host, a: &Args) -> Outcome {
    a.count(0, 0)?;
    let mood = lp.sup().mood();
    done(Value::structure([("statecode", Value::Int(mood.code() as i64)), ("statename", Value::from(mood.name()))]))
}

fn get_pid(_: &mut dyn Host, a: &Args) -> Outcome {
    a.count(0, 0)?;
    done(Value::Int(crate::sys::getpid() as i64))
}

fn main_log_path(lp: &dyn Host) -> Result<PathBuf, RpcError> {
    match lp.main_log_path() {
        Some(p) if p.exists() => Ok(p),
        Some(p) => Err(RpcError::with(faults::NO_FILE, p.display().to_string())),
        // Supervisor raises NO_FILE with None as its extra text, which it leaves out.
        None => Err(RpcError::new(faults::NO_FILE)),
    }
}

fn read_log(lp: &mut dyn Host, a: &Args) -> Outcome {
    a.count(2, 2)?;
    let path = main_log_path(lp)?;
    let data = info::read_file(&path, a.int(0)?, a.int(1)?)?;
    done(info::log_text(&data))
}

fn clear_log(lp: &mut dyn Host, a: &Args) -> Outcome {
    a.count(0, 0)?;
    main_log_path(lp)?;
    lp.clear_main_log().map_err(|e| RpcError::with(faults::FAILED, e.to_string()))?;
    lp.log(LogLevel::Info, "reopening log file");
    done(true)
}

fn shutdown(lp: &mut dyn Host, a: &Args) -> Outcome {
    a.count(0, 0)?;
    issue(lp, Command::Shutdown)
}

fn restart(lp: &mut dyn Host, a: &Args) -> Outcome {
    a.count(0, 0)?;
    lp.reload(Instant::now(), SystemTime::now())
        .map_err(|errors| RpcError::with(faults::CANT_REREAD, errors.join("\n")))?;
    done(true)
}

fn get_process_info(lp: &mut dyn Host, a: &Args) -> Outcome {
    a.count(1, 1)?;
    let id = resolve_process(lp, a.str(0)?)?;
    done(process_info(lp, id))
}

fn process_info(lp: &dyn Host, id: ProcId) -> Value {
    let Some(p) = lp.sup().process(id) else { return Value::Nil };
    let out = lp.log_path(id, Channel::Stdout);
    let err = lp.log_path(id, Channel::Stderr);
    info::process_info(p, out.as_deref(), err.as_deref(), SystemTime::now())
}

fn get_all_process_info(lp: &mut dyn Host, a: &Args) -> Outcome {
    a.count(0, 0)?;
    let mut ids: Vec<(String, String, ProcId)> =
        lp.sup().processes().map(|(id, p)| (p.group.clone(), p.name().to_string(), id)).collect();
    ids.sort();
    done(Value::Array(ids.into_iter().map(|(_, _, id)| process_info(lp, id)).collect()))
}

fn get_all_config_info(lp: &mut dyn Host, a: &Args) -> Outcome {
    a.count(0, 0)?;
    let mut out = Vec::new();
    for g in lp.stored_groups() {
        for p in &g.processes {
            out.push((p.name.clone(), super::configinfo::config_info(lp, g, p)));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    done(Value::Array(out.into_iter().map(|(_, v)| v).collect()))
}

// ---- start / stop / signal ---------------------------------------------------------------

/// A core answer as the method's result: True, an array of result structs, the update's
/// report, or the fault.
fn answer_value(answer: Answer) -> Result<Value, RpcError> {
    match answer {
        Answer::Done => Ok(Value::Bool(true)),
        Answer::Each(items) => Ok(Value::Array(items.into_iter().map(each_value).collect())),
        Answer::Updated(r) => {
            let names = |v: Vec<String>| Value::Array(v.into_iter().map(Value::String).collect());
            Ok(Value::structure([
                ("added", names(r.added)),
                ("changed", names(r.changed)),
                ("removed", names(r.removed)),
                ("unchanged", names(r.unchanged)),
            ]))
        }
        Answer::Refused(r) => Err(refusal(r)),
    }
}

/// A refusal of the core as Supervisor's fault.
fn refusal(r: Refusal) -> RpcError {
    match r {
        Refusal::BadName(n) => RpcError::with(faults::BAD_NAME, n),
        Refusal::BadSignal(s) => RpcError::with(faults::BAD_SIGNAL, s),
        Refusal::NoFile(m) => RpcError::with(faults::NO_FILE, m),
        Refusal::NotExecutable(m) => RpcError::with(faults::NOT_EXECUTABLE, m),
        Refusal::AlreadyStarted(n) => RpcError::with(faults::ALREADY_STARTED, n),
        Refusal::AlreadyAdded(n) => RpcError::with(faults::ALREADY_ADDED, n),
        Refusal::NotRunning(n) => RpcError::with(faults::NOT_RUNNING, n),
        Refusal::StillRunning(n) => RpcError::with(faults::STILL_RUNNING, n),
        Refusal::SpawnError(n) => RpcError::with(faults::SPAWN_ERROR, n),
        Refusal::AbnormalTermination(n) => RpcError::with(faults::ABNORMAL_TERMINATION, n),
        Refusal::Failed(m) => RpcError::with(faults::FAILED, m),
        Refusal::ShutdownState => RpcError::new(faults::SHUTDOWN_STATE),
    }
}

/// One process's result struct in a group or all operation (make_allfunc's).
fn each_value(item: Each) -> Value {
    let (status, description) = match item.result {
        Ok(()) => (faults::SUCCESS, "OK".to_string()),
        Err(r) => {
            let e = refusal(r);
            (e.code, e.fault_string())
        }
    };
    Value::structure([
        ("name", Value::from(item.name)),
        ("group", Value::from(item.group)),
        ("status", Value::Int(status as i64)),
        ("description", Value::from(description)),
    ])
}

/// Runs a command in the core: its answer now, or a reply that waits for it.
fn issue(lp: &mut dyn Host, command: Command) -> Outcome {
    match lp.command(command) {
        Issued::Now(answer) => answer_value(answer).map(Reply::Done),
        Issued::Later(ticket) => Ok(Reply::Later(Pending::Answer(ticket))),
    }
}

fn target(lp: &dyn Host, name: &str) -> Result<Target, RpcError> {
    Ok(match resolve(lp, name)? {
        Resolved::Group(g) => Target::Group(g),
        Resolved::Process(id) => Target::Process(id),
    })
}

fn group_target(lp: &dyn Host, name: &str) -> Result<Target, RpcError> {
    if lp.sup().group(name).is_none() {
        return Err(RpcError::with(faults::BAD_NAME, name));
    }
    Ok(Target::Group(name.to_string()))
}

fn start_process(lp: &mut dyn Host, a: &Args) -> Outcome {
    a.count(1, 2)?;
    let target = target(lp, a.str(0)?)?;
    let wait = a.bool_or(1, true);
    issue(lp, Command::Start { target, wait })
}

fn start_process_group(lp: &mut dyn Host, a: &Args) -> Outcome {
    a.count(1, 2)?;
    let target = group_target(lp, a.str(0)?)?;
    let wait = a.bool_or(1, true);
    issue(lp, Command::Start { target, wait })
}

fn start_all_processes(lp: &mut dyn Host, a: &Args) -> Outcome {
    a.count(0, 1)?;
    let wait = a.bool_or(0, true);
    issue(lp, Command::Start { target: Target::All, wait })
}

fn stop_process(lp: &mut dyn Host, a: &Args) -> Outcome {
    a.count(1, 2)?;
    let target = target(lp, a.str(0)?)?;
    let wait = a.bool_or(1, true);
    issue(lp, Command::Stop { target, wait })
}

fn stop_process_group(lp: &mut dyn Host, a: &Args) -> Outcome {
    a.count(1, 2)?;
    let target = group_target(lp, a.str(0)?)?;
    let wait = a.bool_or(1, true);
    issue(lp, Command::Stop { target, wait })
}

fn stop_all_processes(lp: &mut dyn Host, a: &Args) -> Outcome {
    a.count(0, 1)?;
    let wait = a.bool_or(0, true);
    issue(lp, Command::Stop { target: Target::All, wait })
}

/// A signal given as a name (`HUP`, `sighup`) or a number (string or int); `Err` holds the
/// text of one that is not known (BAD_SIGNAL).
fn parse_signal(v: Option<&Value>) -> Result<Result<i32, String>, RpcError> {
    // supervisord tries `int(value)` first, so a boolean or a double is a number too.
    let text = match v {
        Some(Value::String(s)) => s.clone(),
        Some(v @ (Value::Int(_) | Value::Bool(_) | Value::Double(_))) => py_int(v)?.to_string(),
        _ => return Err(bad_params()),
    };
    Ok(crate::config::types::signal(&text).map_err(|_| text))
}

fn signal_process(lp: &mut dyn Host, a: &Args) -> Outcome {
    a.count(2, 2)?;
    let target = target(lp, a.str(0)?)?;
    let signal = parse_signal(a.0.get(1))?;
    // A group answers BAD_SIGNAL for each of its processes; a process, for the call.
    if let (Target::Process(_), Err(text)) = (&target, &signal) {
        return Err(RpcError::with(faults::BAD_SIGNAL, text.as_str()));
    }
    issue(lp, Command::Signal { target, signal })
}

fn signal_process_group(lp: &mut dyn Host, a: &Args) -> Outcome {
    a.count(2, 2)?;
    let target = group_target(lp, a.str(0)?)?;
    let signal = parse_signal(a.0.get(1))?;
    issue(lp, Command::Signal { target, signal })
}

fn signal_all_processes(lp: &mut dyn Host, a: &Args) -> Outcome {
    a.count(1, 1)?;
    let signal = parse_signal(a.0.first())?;
    issue(lp, Command::Signal { target: Target::All, signal })
}

fn send_process_stdin(lp: &mut dyn Host, a: &Args) -> Outcome {
    a.count(2, 2)?;
    // supervisord checks the data first and names it in the fault: `INCORRECT_PARAMETERS: 5`.
    let chars = match &a.0[1] {
        Value::String(s) => s.clone(),
        other => return Err(py_str(other).map_or_else(bad_params, |t| RpcError::with(faults::INCORRECT_PARAMETERS, t))),
    };
    let name = a.str(0)?;
    let id = resolve_process(lp, name)?;
    let Some(p) = lp.sup().process(id) else { return Err(RpcError::with(faults::BAD_NAME, name)) };
    if p.pid == 0 || p.killing {
        return Err(RpcError::with(faults::NOT_RUNNING, name));
    }
    lp.send_stdin(id, chars.as_bytes()).map_err(|_| RpcError::with(faults::NO_FILE, name))?;
    done(true)
}

fn send_remote_comm_event(lp: &mut dyn Host, a: &Args) -> Outcome {
    a.count(2, 2)?;
    // supervisord formats both into the event as Python's str() does, numbers included.
    let (kind, data) = (py_str(&a.0[0]).ok_or_else(bad_params)?, py_str(&a.0[1]).ok_or_else(bad_params)?);
    lp.notify(crate::events::types::Event::remote_communication(&kind, &data));
    done(true)
}

// ---- configuration ---------------------------------------------------------------------------

fn reload_config(lp: &mut dyn Host, a: &Args) -> Outcome {
    a.count(0, 0)?;
    let (added, changed, removed) =
        lp.reread().map_err(|errors| RpcError::with(faults::CANT_REREAD, errors.join("\n")))?;
    let arr = |v: Vec<String>| Value::Array(v.into_iter().map(Value::String).collect());
    done(Value::Array(vec![Value::Array(vec![arr(added), arr(changed), arr(removed)])]))
}

fn add_process_group(lp: &mut dyn Host, a: &Args) -> Outcome {
    a.count(1, 1)?;
    // A name that is a number is no group's name: BAD_NAME, as supervisord says.
    let name = py_str(&a.0[0]).ok_or_else(bad_params)?;
    let name = name.as_str();
    let Some(group) = lp.stored_groups().iter().find(|g| g.name == name).cloned() else {
        return Err(RpcError::with(faults::BAD_NAME, name));
    };
    issue(lp, Command::AddGroup(Box::new(group)))
}

fn remove_process_group(lp: &mut dyn Host, a: &Args) -> Outcome {
    a.count(1, 1)?;
    issue(lp, Command::RemoveGroup(a.str(0)?.to_string()))
}

/// minisv's `update` of one changed group: only the processes whose settings changed restart.
fn update_process_group(lp: &mut dyn Host, a: &Args) -> Outcome {
    a.count(1, 1)?;
    if lp.sup().mood() != Mood::Running {
        return Err(RpcError::new(faults::SHUTDOWN_STATE));
    }
    let name = a.str(0)?;
    let Some(config) = lp.stored_groups().iter().find(|g| g.name == name).cloned() else {
        return Err(RpcError::with(faults::BAD_NAME, name));
    };
    issue(lp, Command::UpdateGroup(Box::new(config)))
}

/// The processes a log operation applies to: one, a group, or all (empty name or `all`).
fn log_targets(lp: &dyn Host, name: &str) -> Result<Option<Vec<ProcId>>, RpcError> {
    if name.is_empty() || name == "all" {
        return Ok(None);
    }
    Ok(Some(match resolve(lp, name)? {
        Resolved::Process(id) => vec![id],
        Resolved::Group(g) => lp.sup().members_by_priority(&g),
    }))
}

fn reopen_logs(lp: &mut dyn Host, a: &Args) -> Outcome {
    a.count(1, 1)?;
    match log_targets(lp, a.str(0)?)? {
        None => lp.reopen_logs(),
        Some(ids) => {
            for id in ids {
                lp.reopen_process_logs(id).map_err(|e| RpcError::with(faults::FAILED, e.to_string()))?;
            }
        }
    }
    done(true)
}

fn rotate_logs(lp: &mut dyn Host, a: &Args) -> Outcome {
    a.count(1, 1)?;
    let ids = match log_targets(lp, a.str(0)?)? {
        None => {
            lp.rotate_main_log().map_err(|e| RpcError::with(faults::FAILED, format!("main log: {e}")))?;
            lp.sup().all_by_priority()
        }
        Some(ids) => ids,
    };
    for id in ids {
        lp.rotate_process_logs(id).map_err(|e| RpcError::with(faults::FAILED, e.to_string()))?;
    }
    done(true)
}

fn upgrade(lp: &mut dyn Host, a: &Args) -> Outcome {
    a.count(0, 0)?;
    let ticket = lp.upgrade().map_err(|why| RpcError::with(faults::FAILED, why))?;
    Ok(Reply::Later(Pending::Answer(ticket)))
}

fn last_upgrade(lp: &mut dyn Host, a: &Args) -> Outcome {
    a.count(0, 0)?;
    let (generation, last) = lp.last_upgrade();
    let (ok, message) = last.unwrap_or((false, String::new()));
    done(Value::structure([
        ("generation", Value::Int(generation.min(i32::MAX as u64) as i64)),
        ("pid", Value::Int(crate::sys::getpid() as i64)),
        ("version", Value::from(env!("CARGO_PKG_VERSION").to_string())),
        ("ok", Value::Bool(ok)),
        ("message", Value::from(message)),
    ]))
}

fn get_process_stats(lp: &mut dyn Host, a: &Args) -> Outcome {
    a.count(0, 0)?;
    let mut rows: Vec<(String, String, u32, u64, u64)> = lp
        .sup()
        .processes()
        .filter(|(_, p)| p.pid != 0)
        .map(|(_, p)| {
            let max = p.config.limits.cgroup.as_ref().and_then(|c| c.memory_max).filter(|m| *m != u64::MAX);
            (p.group.clone(), p.name().to_string(), p.pid, p.config.memory_limit, max.unwrap_or(0))
        })
        .collect();
    rows.sort();
    let stats = rows
        .into_iter()
        .filter_map(|(group, name, pid, limit, max)| {
            let u = super::metrics::tree_usage(pid)?;
            Some(Value::structure([
                ("name", Value::from(name)),
                ("group", Value::from(group)),
                ("pid", Value::Int(pid as i64)),
                ("rss_bytes", Value::Int(u.rss_bytes.min(i32::MAX as u64) as i64)),
                ("cpu_seconds", Value::Double(u.cpu_seconds)),
                // Doubles: XML-RPC ints are 32-bit, and limits are often over 2 GB.
                ("memory_limit", Value::Double(limit as f64)),
                ("memory_max", Value::Double(max as f64)),
            ]))
        })
        .collect();
    done(Value::Array(stats))
}

// ---- logs ------------------------------------------------------------------------------------

fn log_of(lp: &mut dyn Host, name: &str, ch: Channel) -> Result<PathBuf, RpcError> {
    let id = resolve_process(lp, name)?;
    if let Some(p) = lp.readable_log_path(id, ch) {
        return Ok(p);
    }
    match lp.log_path(id, ch) {
        Some(p) => Err(RpcError::with(faults::NO_FILE, p.display().to_string())),
        // Supervisor raises NO_FILE with None as its extra text, which it leaves out.
        None => Err(RpcError::new(faults::NO_FILE)),
    }
}

fn read_process_log(lp: &mut dyn Host, a: &Args, ch: Channel) -> Outcome {
    a.count(3, 3)?;
    let path = log_of(lp, a.str(0)?, ch)?;
    let data = info::read_file(&path, a.int(1)?, a.int(2)?)?;
    done(info::log_text(&data))
}

fn read_stdout_log(lp: &mut dyn Host, a: &Args) -> Outcome {
    read_process_log(lp, a, Channel::Stdout)
}

fn read_stderr_log(lp: &mut dyn Host, a: &Args) -> Outcome {
    read_process_log(lp, a, Channel::Stderr)
}

fn tail_process_log(lp: &mut dyn Host, a: &Args, ch: Channel) -> Outcome {
    a.count(3, 3)?;
    let name = a.str(0)?;
    let id = resolve_process(lp, name)?;
    let (offset, length) = (a.int(1)?, a.int(2)?);
    let (data, size, overflow) = match lp.readable_log_path(id, ch) {
        Some(path) => info::tail_file(&path, offset, length),
        None => (Vec::new(), 0, false),
    };
    done(Value::Array(vec![
        Value::String(info::log_text(&data)),
        Value::Int(size.min(i32::MAX as i64)),
        Value::Bool(overflow),
    ]))
}

fn tail_stdout_log(lp: &mut dyn Host, a: &Args) -> Outcome {
    tail_process_log(lp, a, Channel::Stdout)
}

fn tail_stderr_log(lp: &mut dyn Host, a: &Args) -> Outcome {
    tail_process_log(lp, a, Channel::Stderr)
}

fn clear_process_logs(lp: &mut dyn Host, a: &Args) -> Outcome {
    a.count(1, 1)?;
    let name = a.str(0)?;
    let id = resolve_process(lp, name)?;
    lp.clear_process_logs(id).map_err(|e| RpcError::with(faults::FAILED, e.to_string()))?;
    done(true)
}

fn clear_all_process_logs(lp: &mut dyn Host, a: &Args) -> Outcome {
    a.count(0, 0)?;
    let mut results = Vec::new();
    for id in lp.sup().all_by_priority() {
        let Some(p) = lp.sup().process(id) else { continue };
        let (name, group) = (p.name().to_string(), p.group.clone());
        let result = lp.clear_process_logs(id).map_err(|e| Refusal::Failed(e.to_string()));
        results.push(each_value(Each { name, group, result }));
    }
    done(Value::Array(results))
}

// ---- system.* ----------------------------------------------------------------------------------

fn list_methods(lp: &mut dyn Host, a: &Args) -> Outcome {
    a.count(0, 0)?;
    done(Value::Array(METHODS.iter().filter(|m| available(lp, m)).map(|m| Value::from(m.name)).collect()))
}

fn method_help(_: &mut dyn Host, a: &Args) -> Outcome {
    a.count(1, 1)?;
    // Anything that is not a method's name, a number included, is SIGNATURE_UNSUPPORTED there.
    let name = a.0[0].as_str();
    let m =
        METHODS.iter().find(|m| Some(m.name) == name).ok_or_else(|| RpcError::new(faults::SIGNATURE_UNSUPPORTED))?;
    done(m.help)
}

fn method_signature(_: &mut dyn Host, a: &Args) -> Outcome {
    a.count(1, 1)?;
    // Anything that is not a method's name, a number included, is SIGNATURE_UNSUPPORTED there.
    let name = a.0[0].as_str();
    let m =
        METHODS.iter().find(|m| Some(m.name) == name).ok_or_else(|| RpcError::new(faults::SIGNATURE_UNSUPPORTED))?;
    done(Value::Array(m.signature.iter().map(|s| Value::from(*s)).collect()))
}

fn multicall(lp: &mut dyn Host, a: &Args) -> Outcome {
    a.count(1, 1)?;
    let calls = a.0[0].as_array().ok_or_else(bad_params)?;
    run_calls(lp, calls.iter().cloned().collect(), Vec::new())
}

fn fault_value(e: &RpcError) -> Value {
    Value::structure([("faultCode", Value::Int(e.code as i64)), ("faultString", Value::from(e.fault_string()))])
}

/// A multicall entry's `params` as supervisord's `func(*params)` spreads them: none when missing,
/// an array's items, a string's characters, a struct's keys; `None` (INCORRECT_PARAMETERS) for
/// a value that Python cannot iterate.
fn multicall_params(v: Option<&Value>) -> Option<Vec<Value>> {
    match v {
        None => Some(Vec::new()),
        Some(Value::Array(a)) => Some(a.clone()),
        Some(Value::String(s)) => Some(s.chars().map(|c| Value::String(c.to_string())).collect()),
        Some(Value::Struct(m)) => Some(m.iter().map(|(k, _)| Value::String(k.clone())).collect()),
        Some(_) => None,
    }
}

/// Runs multicall's calls in turn until one must wait for the core (bounded by their count).
fn run_calls(lp: &mut dyn Host, mut calls: VecDeque<Value>, mut results: Vec<Value>) -> Outcome {
    while let Some(call) = calls.pop_front() {
        let name = call.get("methodName").and_then(Value::as_str);
        let outcome = match (name, multicall_params(call.get("params"))) {
            (None, _) => Err(RpcError::with(faults::INCORRECT_PARAMETERS, "No methodName")),
            (_, None) => Err(bad_params()),
            (Some("system.multicall"), _) => {
                Err(RpcError::with(faults::INCORRECT_PARAMETERS, "Recursive system.multicall forbidden"))
            }
            (Some(name), Some(params)) => self::call(lp, name, &params),
        };
        match outcome {
            Ok(Reply::Done(v)) => results.push(v),
            Ok(Reply::Later(current)) => {
                return Ok(Reply::Later(Pending::Multicall { current: Box::new(current), calls, results }))
            }
            Err(e) => results.push(fault_value(&e)),
        }
    }
    done(Value::Array(results))
}

/// Carries a waiting reply on with the core's answer to its command: the method's result, or
/// (in a multicall) a reply that waits for the next call's answer.
pub fn resume(lp: &mut dyn Host, pending: Pending, answer: Answer) -> Outcome {
    match pending {
        Pending::Answer(_) => answer_value(answer).map(Reply::Done),
        Pending::Multicall { current, calls, mut results } => match resume(lp, *current, answer) {
            Ok(Reply::Later(current)) => {
                Ok(Reply::Later(Pending::Multicall { current: Box::new(current), calls, results }))
            }
            Ok(Reply::Done(v)) => {
                results.push(v);
                run_calls(lp, calls, results)
            }
            Err(e) => {
                results.push(fault_value(&e));
                run_calls(lp, calls, results)
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// minisv(8) names each method of minisv's own, with its parameters.
    #[test]
    fn man_page_names_every_minisv_method() {
        let page = include_str!("../../man/minisv.8");
        for m in METHODS.iter().filter(|m| m.name.starts_with("minisv.")) {
            let params = if m.signature.len() > 1 { "(" } else { "()" };
            assert!(
                page.contains(&format!(".B {}{params}", m.name)) || page.contains(&format!(".BI {}{params}", m.name)),
                "minisv.8 does not describe {}",
                m.name
            );
        }
    }

    #[test]
    fn method_table_is_sorted_and_complete() {
        let names: Vec<&str> = METHODS.iter().map(|m| m.name).collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted, "listMethods is sorted");
        let supervisor_and_system = names.iter().filter(|n| !n.starts_with("minisv.")).count();
        assert_eq!(supervisor_and_system, 41, "Supervisor 4.3 lists 41 methods");
        for m in METHODS {
            assert!(m.help.contains("@return"), "{} help has @return", m.name);
            assert_eq!(m.checks_state, m.name.starts_with("supervisor."), "{}", m.name);
        }
    }

    #[test]
    fn fault_strings() {
        assert_eq!(RpcError::with(faults::BAD_NAME, "nosuch").fault_string(), "BAD_NAME: nosuch");
        assert_eq!(RpcError::new(faults::UNKNOWN_METHOD).fault_string(), "UNKNOWN_METHOD");
    }
}
