//! The XML-RPC methods (reference 4.5, 4.6), run on the event loop thread, the only owner of
//! process state. One table declares every method with its signature, help text and handler
//! (habit 8). A method either answers at once or returns a `Pending` that the loop completes
//! when the state machine gets there (start/stop with wait, group operations, multicall).

use std::path::PathBuf;
use std::time::{Instant, SystemTime};

use super::faults::{self, RpcError};
use super::host::{BadCommand, Host};
use super::info;
use super::xmlrpc::{self, Value};
use crate::config::{Channel, LogLevel};
use crate::supervisor::{Input, Mood, ProcId, ProcessState};

/// What a method returns.
pub enum Reply {
    Done(Value),
    Later(Pending),
}

type Outcome = Result<Reply, RpcError>;

/// A reply that waits for the state machine.
#[derive(Debug)]
pub enum Pending {
    /// startProcess(wait=True): RUNNING → True, spawnerr → SPAWN_ERROR, other → ABNORMAL_TERMINATION.
    Start { id: ProcId, name: String },
    /// stopProcess(wait=True): done once in a stopped state.
    Stop { id: ProcId },
    /// A group or all operation: one result struct per process, in completion order.
    All { waiting: Vec<(ProcId, String, String, Pending)>, results: Vec<Value> },
    /// minisv.updateProcessGroup: waits for the changed processes to stop, then applies.
    Update { config: Box<crate::config::GroupConfig>, stopping: Vec<ProcId>, restart: Vec<String>, report: Value },
    /// system.multicall: calls run one after another, each deferred one awaited first.
    Multicall { calls: std::collections::VecDeque<Value>, results: Vec<Value>, current: Option<Box<Pending>> },
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
    m("minisv.getProcessStats", &["array"], "Memory and CPU of every running process with its descendants, read from /proc.\n\n@return array result Structs: name, group, pid, rss_bytes (int), cpu_seconds (double)", get_process_stats),
    m("minisv.reopenLogs", &["boolean", "string"], "Close and reopen log files at their paths, for external log rotation (as SIGUSR2 does): of one process, or of every process and the main log when the name is empty or 'all'.\n\n@param string name The process name (or group:name, group:*), empty or 'all'\n@return boolean result Always True unless error", reopen_logs),
    m("minisv.rotateLogs", &["boolean", "string"], "Rotate log files now (f.1 ... f.N as when maxbytes is reached): of one process, or of every process and the main log when the name is empty or 'all'.\n\n@param string name The process name (or group:name, group:*), empty or 'all'\n@return boolean result Always True unless error", rotate_logs),
    m("minisv.updateProcessGroup", &["struct", "string"], "Apply the configuration last read (by reloadConfig) to an active group, restarting only the processes whose own settings changed. Unchanged processes keep running, and processes stopped by hand stay stopped. Supervisor restarts the whole group instead.\n\n@param string name The group name\n@return struct result Process names: added, changed, removed, unchanged", update_process_group),
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

/// Positional arguments with Python's rules: a wrong count is INCORRECT_PARAMETERS.
pub struct Args<'a>(&'a [Value]);

fn bad_params() -> RpcError {
    RpcError::new(faults::INCORRECT_PARAMETERS)
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
        match self.0.get(i) {
            Some(Value::Int(n)) => Ok(*n),
            Some(Value::Bool(b)) => Ok(i64::from(*b)),
            _ => Err(bad_params()),
        }
    }

    fn bool_or(&self, i: usize, default: bool) -> Result<bool, RpcError> {
        match self.0.get(i) {
            None => Ok(default),
            Some(v) => v.as_bool().ok_or_else(bad_params),
        }
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

fn now() -> (Instant, SystemTime) {
    (Instant::now(), SystemTime::now())
}

// ---- names -------------------------------------------------------------------------------

pub use crate::supervisor::namespec::{make as make_namespec, split as split_namespec};

enum Target {
    Group(String),
    Process(ProcId),
}

fn resolve(lp: &dyn Host, name: &str) -> Result<Target, RpcError> {
    let (group, process) = split_namespec(name);
    if lp.sup().group(group).is_none() {
        return Err(RpcError::with(faults::BAD_NAME, name));
    }
    match process {
        None => Ok(Target::Group(group.to_string())),
        Some(p) => lp.sup().find(group, p).map(Target::Process).ok_or_else(|| RpcError::with(faults::BAD_NAME, name)),
    }
}

fn resolve_process(lp: &dyn Host, name: &str) -> Result<ProcId, RpcError> {
    match resolve(lp, name)? {
        Target::Process(id) => Ok(id),
        Target::Group(_) => Err(RpcError::with(faults::BAD_NAME, name)),
    }
}

fn namespec_of(lp: &dyn Host, id: ProcId) -> String {
    lp.sup().process(id).map(|p| make_namespec(&p.group, p.name())).unwrap_or_default()
}

fn result_struct(lp: &dyn Host, id: ProcId, status: i32, description: &str) -> Value {
    let (name, group) = lp.sup().process(id).map(|p| (p.name().to_string(), p.group.clone())).unwrap_or_default();
    Value::structure([
        ("name", Value::from(name)),
        ("group", Value::from(group)),
        ("status", Value::Int(status as i64)),
        ("description", Value::from(description)),
    ])
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
    let (n, w) = now();
    lp.sup_mut().request_stop(Mood::Shutdown, n, w);
    done(true)
}

fn restart(lp: &mut dyn Host, a: &Args) -> Outcome {
    a.count(0, 0)?;
    let (n, w) = now();
    lp.reload(n, w).map_err(|errors| RpcError::with(faults::CANT_REREAD, errors.join("\n")))?;
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
        let inuse = lp.sup().group(&g.name).is_some();
        for p in &g.processes {
            out.push((p.name.clone(), super::configinfo::config_info(g, p, inuse)));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    done(Value::Array(out.into_iter().map(|(_, v)| v).collect()))
}

// ---- start / stop / signal ---------------------------------------------------------------

/// startProcess for one resolved process: the synchronous part; `Later` if it must wait.
fn start_one(lp: &mut dyn Host, id: ProcId, wait: bool) -> Outcome {
    let name = namespec_of(lp, id);
    match lp.check_command(id) {
        Ok(()) => {}
        Err(BadCommand::NotFound(msg)) => return Err(RpcError::with(faults::NO_FILE, msg)),
        Err(BadCommand::NotExecutable(msg)) => return Err(RpcError::with(faults::NOT_EXECUTABLE, msg)),
    }
    let state = lp.sup().process(id).map(|p| p.state).unwrap_or(ProcessState::Unknown);
    if state.is_running() {
        return Err(RpcError::with(faults::ALREADY_STARTED, name));
    }
    if state == ProcessState::Unknown {
        return Err(RpcError::with(faults::FAILED, format!("{name} is in an unknown process state")));
    }
    if lp.sup().has_deps() {
        // depends_on: its dependencies start first; it follows once they are RUNNING.
        for dep in lp.sup().dependencies(id) {
            if lp.sup().process(dep).is_some_and(|p| !p.state.is_running()) {
                let _ = start_one(lp, dep, false);
            }
        }
    }
    let (n, w) = now();
    lp.sup_mut().feed(id, Input::Start, n, w);
    lp.perform_actions();
    let p = lp.sup().process(id);
    if p.is_some_and(|p| p.spawnerr.is_some()) {
        return Err(RpcError::with(faults::SPAWN_ERROR, name));
    }
    let pending = Pending::Start { id, name };
    if wait && p.map(|p| p.state) != Some(ProcessState::Running) {
        return Ok(Reply::Later(pending));
    }
    done(true)
}

fn start_process(lp: &mut dyn Host, a: &Args) -> Outcome {
    a.count(1, 2)?;
    let name = a.str(0)?;
    let wait = a.bool_or(1, true)?;
    match resolve(lp, name)? {
        Target::Group(g) => start_group(lp, &g, wait),
        Target::Process(id) => start_one(lp, id, wait),
    }
}

/// make_allfunc: runs `one` for every process that passes `pred`, collecting result structs.
fn all(
    lp: &mut dyn Host,
    ids: Vec<ProcId>,
    pred: fn(ProcessState) -> bool,
    one: &mut dyn FnMut(&mut dyn Host, ProcId) -> Outcome,
) -> Outcome {
    let mut results = Vec::new();
    let mut waiting = Vec::new();
    for id in ids {
        let Some(p) = lp.sup().process(id) else { continue };
        if !pred(p.state) {
            continue;
        }
        let (name, group) = (p.name().to_string(), p.group.clone());
        match one(lp, id) {
            Err(e) => results.push(result_struct(lp, id, e.code, &e.fault_string())),
            Ok(Reply::Done(_)) => results.push(result_struct(lp, id, faults::SUCCESS, "OK")),
            Ok(Reply::Later(p)) => waiting.push((id, name, group, p)),
        }
    }
    let mut pending = Pending::All { waiting, results };
    match poll(lp, &mut pending) {
        Some(r) => r.map(Reply::Done),
        None => Ok(Reply::Later(pending)),
    }
}

fn start_group(lp: &mut dyn Host, group: &str, wait: bool) -> Outcome {
    let ids = lp.sup().members_by_priority(group);
    all(lp, ids, |s| !s.is_running(), &mut |lp, id| start_one(lp, id, wait))
}

fn start_process_group(lp: &mut dyn Host, a: &Args) -> Outcome {
    a.count(1, 2)?;
    let name = a.str(0)?;
    let wait = a.bool_or(1, true)?;
    if lp.sup().group(name).is_none() {
        return Err(RpcError::with(faults::BAD_NAME, name));
    }
    start_group(lp, name, wait)
}

fn start_all_processes(lp: &mut dyn Host, a: &Args) -> Outcome {
    a.count(0, 1)?;
    let wait = a.bool_or(0, true)?;
    let ids = lp.sup().all_by_priority();
    all(lp, ids, |s| !s.is_running(), &mut |lp, id| start_one(lp, id, wait))
}

fn stop_one(lp: &mut dyn Host, id: ProcId, wait: bool) -> Outcome {
    let name = namespec_of(lp, id);
    let Some(p) = lp.sup().process(id) else { return Err(RpcError::with(faults::BAD_NAME, name)) };
    // A restart that waits (restart_delay, fatal_retry) is called off by a stop.
    let pending = p.restart_pending();
    if !p.state.is_running() && !pending {
        return Err(RpcError::with(faults::NOT_RUNNING, name));
    }
    if p.pid == 0 && p.state != ProcessState::Backoff && !pending {
        let sig = crate::sys::signal_name(p.config.stopsignal);
        return Err(RpcError::with(
            faults::FAILED,
            format!("attempted to kill {} with sig {} but it wasn't running", p.name(), sig),
        ));
    }
    if lp.sup().has_deps() {
        // depends_on: whatever depends on it stops first.
        for dependent in lp.sup().dependents(id) {
            if lp.sup().process(dependent).is_some_and(|p| p.state.is_running()) {
                let _ = stop_one(lp, dependent, false);
            }
        }
    }
    let (n, w) = now();
    lp.sup_mut().feed(id, Input::Stop, n, w);
    lp.perform_actions();
    let stopped = lp.sup().process(id).is_none_or(|p| p.state.is_stopped());
    if wait && !stopped {
        return Ok(Reply::Later(Pending::Stop { id }));
    }
    done(true)
}

fn stop_process(lp: &mut dyn Host, a: &Args) -> Outcome {
    a.count(1, 2)?;
    let name = a.str(0)?;
    let wait = a.bool_or(1, true)?;
    match resolve(lp, name)? {
        Target::Group(g) => stop_group(lp, &g, wait),
        Target::Process(id) => stop_one(lp, id, wait),
    }
}

fn stop_group(lp: &mut dyn Host, group: &str, wait: bool) -> Outcome {
    // Ascending priority, as Supervisor's stopProcessGroup.
    let ids = lp.sup().members_by_priority(group);
    all(lp, ids, ProcessState::is_running, &mut |lp, id| stop_one(lp, id, wait))
}

fn stop_process_group(lp: &mut dyn Host, a: &Args) -> Outcome {
    a.count(1, 2)?;
    let name = a.str(0)?;
    let wait = a.bool_or(1, true)?;
    if lp.sup().group(name).is_none() {
        return Err(RpcError::with(faults::BAD_NAME, name));
    }
    stop_group(lp, name, wait)
}

fn stop_all_processes(lp: &mut dyn Host, a: &Args) -> Outcome {
    a.count(0, 1)?;
    let wait = a.bool_or(0, true)?;
    // Ascending priority, as Supervisor's stopAllProcesses (only shutdown goes in reverse).
    let ids = lp.sup().all_by_priority();
    all(lp, ids, ProcessState::is_running, &mut |lp, id| stop_one(lp, id, wait))
}

/// A signal given as a name (`HUP`, `sighup`) or a number (string or int).
fn parse_signal(v: Option<&Value>) -> Result<i32, RpcError> {
    let text = match v {
        Some(Value::Int(n)) => n.to_string(),
        Some(Value::String(s)) => s.clone(),
        _ => return Err(bad_params()),
    };
    crate::config::types::signal(&text).map_err(|_| RpcError::with(faults::BAD_SIGNAL, text))
}

fn signal_one(lp: &mut dyn Host, id: ProcId, sig: Result<i32, RpcError>) -> Outcome {
    let name = namespec_of(lp, id);
    let sig = sig?;
    let Some(p) = lp.sup().process(id) else { return Err(RpcError::with(faults::BAD_NAME, name)) };
    if !p.state.is_signallable() || p.pid == 0 {
        return Err(RpcError::with(faults::NOT_RUNNING, name));
    }
    crate::sys::kill(p.pid, sig, false).map_err(|e| RpcError::with(faults::FAILED, e.to_string()))?;
    done(true)
}

fn signal_process(lp: &mut dyn Host, a: &Args) -> Outcome {
    a.count(2, 2)?;
    let name = a.str(0)?;
    let target = resolve(lp, name)?;
    let sig = parse_signal(a.0.get(1));
    match target {
        Target::Group(g) => {
            let ids = lp.sup().members_by_priority(&g);
            all(lp, ids, ProcessState::is_signallable, &mut |lp, id| signal_one(lp, id, sig.clone()))
        }
        Target::Process(id) => {
            sig.clone()?;
            signal_one(lp, id, sig)
        }
    }
}

fn signal_process_group(lp: &mut dyn Host, a: &Args) -> Outcome {
    a.count(2, 2)?;
    let name = a.str(0)?;
    if lp.sup().group(name).is_none() {
        return Err(RpcError::with(faults::BAD_NAME, name));
    }
    let sig = parse_signal(a.0.get(1));
    let ids = lp.sup().members_by_priority(name);
    all(lp, ids, ProcessState::is_signallable, &mut |lp, id| signal_one(lp, id, sig.clone()))
}

fn signal_all_processes(lp: &mut dyn Host, a: &Args) -> Outcome {
    a.count(1, 1)?;
    let sig = parse_signal(a.0.first());
    let ids = lp.sup().all_by_priority();
    all(lp, ids, ProcessState::is_signallable, &mut |lp, id| signal_one(lp, id, sig.clone()))
}

fn send_process_stdin(lp: &mut dyn Host, a: &Args) -> Outcome {
    a.count(2, 2)?;
    let name = a.str(0)?;
    let chars = a.str(1)?.to_string();
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
    let (kind, data) = (a.str(0)?, a.str(1)?);
    lp.notify(crate::events::types::Event::remote_communication(kind, data));
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
    let name = a.str(0)?;
    let Some(group) = lp.stored_groups().iter().find(|g| g.name == name).cloned() else {
        return Err(RpcError::with(faults::BAD_NAME, name));
    };
    if lp.sup().group(name).is_some() {
        return Err(RpcError::with(faults::ALREADY_ADDED, name));
    }
    lp.add_group(group);
    let (n, w) = now();
    lp.sup_mut().tick(n, w);
    lp.perform_actions();
    done(true)
}

fn remove_process_group(lp: &mut dyn Host, a: &Args) -> Outcome {
    a.count(1, 1)?;
    let name = a.str(0)?;
    lp.remove_group(name).map_err(|e| match e {
        crate::supervisor::RemoveError::NoSuchGroup => RpcError::with(faults::BAD_NAME, name),
        crate::supervisor::RemoveError::StillRunning => RpcError::with(faults::STILL_RUNNING, name),
    })?;
    done(true)
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
    let Some(group) = lp.sup().group(name) else { return Err(RpcError::with(faults::BAD_NAME, name)) };
    let (mut added, mut changed, mut removed, mut unchanged) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut stop = Vec::new();
    let mut restart = Vec::new();
    for id in &group.members {
        let Some(p) = lp.sup().process(*id) else { continue };
        match config.processes.iter().find(|pc| pc.name == p.config.name) {
            Some(pc) if crate::config::same_process(&p.config, pc) => unchanged.push(p.config.name.clone()),
            found => {
                if found.is_some() {
                    changed.push(p.config.name.clone());
                    if p.state.is_running() {
                        restart.push(p.config.name.clone());
                    }
                } else {
                    removed.push(p.config.name.clone());
                }
                if !p.state.is_stopped() {
                    stop.push(*id);
                }
            }
        }
    }
    for pc in &config.processes {
        if !group.members.iter().any(|id| lp.sup().process(*id).is_some_and(|p| p.config.name == pc.name)) {
            added.push(pc.name.clone());
        }
    }
    for list in [&mut added, &mut changed, &mut removed, &mut unchanged] {
        list.sort();
    }
    let names = |v: Vec<String>| Value::Array(v.into_iter().map(Value::String).collect());
    let report = Value::structure([
        ("added", names(added)),
        ("changed", names(changed)),
        ("removed", names(removed)),
        ("unchanged", names(unchanged)),
    ]);
    let (n, w) = now();
    for id in &stop {
        lp.sup_mut().feed(*id, Input::Stop, n, w);
    }
    lp.perform_actions();
    let mut pending = Pending::Update { config: Box::new(config), stopping: stop, restart, report };
    match poll(lp, &mut pending) {
        Some(r) => r.map(Reply::Done),
        None => Ok(Reply::Later(pending)),
    }
}

/// The processes a log operation applies to: one, a group, or all (empty name or `all`).
fn log_targets(lp: &dyn Host, name: &str) -> Result<Option<Vec<ProcId>>, RpcError> {
    if name.is_empty() || name == "all" {
        return Ok(None);
    }
    Ok(Some(match resolve(lp, name)? {
        Target::Process(id) => vec![id],
        Target::Group(g) => lp.sup().members_by_priority(&g),
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

fn get_process_stats(lp: &mut dyn Host, a: &Args) -> Outcome {
    a.count(0, 0)?;
    let mut rows: Vec<(String, String, u32)> = lp
        .sup()
        .processes()
        .filter(|(_, p)| p.pid != 0)
        .map(|(_, p)| (p.group.clone(), p.name().to_string(), p.pid))
        .collect();
    rows.sort();
    let stats = rows
        .into_iter()
        .filter_map(|(group, name, pid)| {
            let u = super::metrics::tree_usage(pid)?;
            Some(Value::structure([
                ("name", Value::from(name)),
                ("group", Value::from(group)),
                ("pid", Value::Int(pid as i64)),
                ("rss_bytes", Value::Int(u.rss_bytes.min(i32::MAX as u64) as i64)),
                ("cpu_seconds", Value::Double(u.cpu_seconds)),
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
    let ids = lp.sup().all_by_priority();
    all(lp, ids, |_| true, &mut |lp, id| {
        lp.clear_process_logs(id).map_err(|e| RpcError::with(faults::FAILED, e.to_string()))?;
        done(true)
    })
}

// ---- system.* ----------------------------------------------------------------------------------

fn list_methods(lp: &mut dyn Host, a: &Args) -> Outcome {
    a.count(0, 0)?;
    done(Value::Array(METHODS.iter().filter(|m| available(lp, m)).map(|m| Value::from(m.name)).collect()))
}

fn method_help(_: &mut dyn Host, a: &Args) -> Outcome {
    a.count(1, 1)?;
    let name = a.str(0)?;
    let m = METHODS.iter().find(|m| m.name == name).ok_or_else(|| RpcError::new(faults::SIGNATURE_UNSUPPORTED))?;
    done(m.help)
}

fn method_signature(_: &mut dyn Host, a: &Args) -> Outcome {
    a.count(1, 1)?;
    let name = a.str(0)?;
    let m = METHODS.iter().find(|m| m.name == name).ok_or_else(|| RpcError::new(faults::SIGNATURE_UNSUPPORTED))?;
    done(Value::Array(m.signature.iter().map(|s| Value::from(*s)).collect()))
}

fn multicall(lp: &mut dyn Host, a: &Args) -> Outcome {
    a.count(1, 1)?;
    let calls = a.0[0].as_array().ok_or_else(bad_params)?;
    let mut pending = Pending::Multicall { calls: calls.iter().cloned().collect(), results: Vec::new(), current: None };
    match poll(lp, &mut pending) {
        Some(r) => r.map(Reply::Done),
        None => Ok(Reply::Later(pending)),
    }
}

fn fault_value(e: &RpcError) -> Value {
    Value::structure([("faultCode", Value::Int(e.code as i64)), ("faultString", Value::from(e.fault_string()))])
}

/// Advances a pending reply; `Some` once it is complete.
pub fn poll(lp: &mut dyn Host, pending: &mut Pending) -> Option<Result<Value, RpcError>> {
    match pending {
        Pending::Start { id, name } => {
            let Some(p) = lp.sup().process(*id) else {
                return Some(Err(RpcError::with(faults::ABNORMAL_TERMINATION, name.clone())));
            };
            if p.spawnerr.is_some() {
                return Some(Err(RpcError::with(faults::SPAWN_ERROR, name.clone())));
            }
            match p.state {
                ProcessState::Running => Some(Ok(Value::Bool(true))),
                ProcessState::Starting => None,
                // Waiting for its dependencies (depends_on).
                ProcessState::Stopped | ProcessState::Exited | ProcessState::Backoff if p.start_requested => None,
                _ => Some(Err(RpcError::with(faults::ABNORMAL_TERMINATION, name.clone()))),
            }
        }
        Pending::Stop { id } => match lp.sup().process(*id) {
            Some(p) if !p.state.is_stopped() => None,
            _ => Some(Ok(Value::Bool(true))),
        },
        Pending::All { waiting, results } => {
            let mut i = 0;
            while i < waiting.len() {
                let (id, name, group, inner) = &mut waiting[i];
                match poll(lp, inner) {
                    None => i += 1,
                    Some(outcome) => {
                        let (status, desc) = match outcome {
                            Ok(_) => (faults::SUCCESS, "OK".to_string()),
                            Err(e) => (e.code, e.fault_string()),
                        };
                        let _ = id;
                        results.push(Value::structure([
                            ("name", Value::from(name.as_str())),
                            ("group", Value::from(group.as_str())),
                            ("status", Value::Int(status as i64)),
                            ("description", Value::from(desc)),
                        ]));
                        waiting.remove(i);
                    }
                }
            }
            if waiting.is_empty() {
                Some(Ok(Value::Array(std::mem::take(results))))
            } else {
                None
            }
        }
        Pending::Update { config, stopping, restart, report } => {
            if stopping.iter().any(|id| lp.sup().process(*id).is_some_and(|p| !p.state.is_stopped())) {
                return None;
            }
            lp.apply_group_update((**config).clone(), restart);
            Some(Ok(std::mem::replace(report, Value::Nil)))
        }
        Pending::Multicall { calls, results, current } => {
            // Bounded by the number of calls: each turn finishes one call or waits.
            for _ in 0..=calls.len() + 1 {
                if let Some(inner) = current.as_mut() {
                    match poll(lp, inner) {
                        None => return None,
                        Some(Ok(v)) => results.push(v),
                        Some(Err(e)) => results.push(fault_value(&e)),
                    }
                    *current = None;
                }
                let Some(call) = calls.pop_front() else {
                    return Some(Ok(Value::Array(std::mem::take(results))));
                };
                let name = call.get("methodName").and_then(Value::as_str);
                let params = call.get("params").and_then(Value::as_array).unwrap_or(&[]).to_vec();
                let outcome = match name {
                    None => Err(RpcError::with(faults::INCORRECT_PARAMETERS, "No methodName")),
                    Some("system.multicall") => {
                        Err(RpcError::with(faults::INCORRECT_PARAMETERS, "Recursive system.multicall forbidden"))
                    }
                    Some(name) => call_owned(lp, name, &params),
                };
                match outcome {
                    Ok(Reply::Done(v)) => results.push(v),
                    Ok(Reply::Later(p)) => *current = Some(Box::new(p)),
                    Err(e) => results.push(fault_value(&e)),
                }
            }
            None
        }
    }
}

fn call_owned(lp: &mut dyn Host, name: &str, params: &[Value]) -> Outcome {
    call(lp, name, params)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespecs_split_like_supervisor() {
        assert_eq!(split_namespec("g:p"), ("g", Some("p")));
        assert_eq!(split_namespec("g:*"), ("g", None));
        assert_eq!(split_namespec("g:"), ("g", None));
        assert_eq!(split_namespec("x"), ("x", Some("x")));
        assert_eq!(make_namespec("x", "x"), "x");
        assert_eq!(make_namespec("g", "p"), "g:p");
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
