//! Typed XML-RPC calls to the daemon (reference 4.5), and the one-line rendering of failures.

use std::fmt;
use std::io;

use super::transport::{basic_auth, Endpoint, HttpError, RpcConnection};
use crate::rpc::xmlrpc::{encode_call, parse_response, Fault, Value};

/// Fault codes of reference 4.3 that the client reacts to.
/// Supervisor's fault codes: one table, shared with the server.
pub use crate::rpc::faults;

/// A failed call, carrying what a user needs to act on it.
#[derive(Debug)]
pub enum CallError {
    /// The server answered with a fault.
    Fault { method: String, fault: Fault },
    /// The socket could not be opened.
    Connect { url: String, err: io::Error },
    /// The connection broke during the exchange.
    Io { url: String, err: io::Error },
    /// A non-200 HTTP answer (401 means credentials are needed).
    Http { url: String, code: u16, reason: String },
    /// The answer was not XML-RPC, or not the type the method returns.
    BadResponse { url: String, method: String, message: String },
    /// The serverurl itself is unusable.
    BadUrl(String),
}

impl CallError {
    pub fn fault_code(&self) -> Option<i32> {
        match self {
            CallError::Fault { fault, .. } => Some(fault.code),
            _ => None,
        }
    }

    pub fn is_unauthorized(&self) -> bool {
        matches!(self, CallError::Http { code: 401, .. })
    }
}

/// Short text for the errno values users meet when connecting.
fn describe_io(err: &io::Error) -> String {
    match err.raw_os_error() {
        Some(libc::ENOENT) => "no such file".into(),
        Some(libc::ECONNREFUSED) => "connection refused".into(),
        Some(libc::EACCES) => "permission denied".into(),
        _ => {
            let s = err.to_string();
            // "Connection reset by peer (os error 104)" → "connection reset by peer"
            let s = s.split(" (os error").next().unwrap_or(&s).to_string();
            let mut c = s.chars();
            match c.next() {
                Some(f) => f.to_lowercase().collect::<String>() + c.as_str(),
                None => s,
            }
        }
    }
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::Fault { method, fault } => {
                write!(f, "{method} failed: {} (fault {})", fault.string, fault.code)
            }
            CallError::Connect { url, err } => {
                write!(f, "cannot connect to {url}: {}", describe_io(err))?;
                match err.raw_os_error() {
                    Some(libc::EACCES | libc::EPERM) => {
                        write!(f, " (do the socket's chmod= and chown= let this user in?)")
                    }
                    Some(libc::ENOENT | libc::ECONNREFUSED | libc::ENOTSOCK) => write!(f, " (is minisv running?)"),
                    _ => Ok(()),
                }
            }
            CallError::Io { url, err } => {
                write!(f, "connection to {url} failed: {}", describe_io(err))
            }
            CallError::Http { url, code, reason } => {
                write!(f, "{url} answered HTTP {code} {reason}")
            }
            CallError::BadResponse { url, method, message } => {
                write!(f, "unexpected answer from {url} to {method}: {message}")
            }
            CallError::BadUrl(msg) => write!(f, "{msg}"),
        }
    }
}

pub type CallResult<T> = Result<T, CallError>;

/// An XML-RPC client bound to one serverurl and one set of credentials.
pub struct Client {
    pub url: String,
    conn: Result<RpcConnection, String>,
}

impl Client {
    pub fn new(url: &str, username: Option<&str>, password: Option<&str>) -> Client {
        let auth = match (username, password) {
            (Some(u), Some(p)) => Some(basic_auth(u, p)),
            _ => None,
        };
        let conn = Endpoint::parse(url).map(|e| RpcConnection::new(e, auth));
        Client { url: url.to_string(), conn }
    }

    /// Closes the kept-alive XML-RPC connection; the next call opens another.
    pub fn disconnect(&mut self) {
        if let Ok(c) = &mut self.conn {
            c.close();
        }
    }

    pub fn endpoint(&self) -> CallResult<&Endpoint> {
        match &self.conn {
            Ok(c) => Ok(&c.endpoint),
            Err(m) => Err(CallError::BadUrl(m.clone())),
        }
    }

    /// One call; the value or why there is none.
    pub fn call(&mut self, method: &str, params: &[Value]) -> CallResult<Value> {
        let url = self.url.clone();
        let conn = self.conn.as_mut().map_err(|m| CallError::BadUrl(m.clone()))?;
        let body = conn.post(&encode_call(method, params)).map_err(|e| match e {
            HttpError::Connect(err) => CallError::Connect { url: url.clone(), err },
            HttpError::Io(err) => CallError::Io { url: url.clone(), err },
            HttpError::Status { code, reason, .. } => CallError::Http { url: url.clone(), code, reason },
            HttpError::Malformed(message) => {
                CallError::BadResponse { url: url.clone(), method: method.into(), message }
            }
        })?;
        match parse_response(&body) {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(fault)) => Err(CallError::Fault { method: method.into(), fault }),
            Err(e) => {
                conn.close();
                Err(CallError::BadResponse { url, method: method.into(), message: e.to_string() })
            }
        }
    }

    fn bad(&self, method: &str, what: &str) -> CallError {
        CallError::BadResponse { url: self.url.clone(), method: method.into(), message: format!("expected {what}") }
    }

    fn call_string(&mut self, method: &str, params: &[Value]) -> CallResult<String> {
        match self.call(method, params)? {
            Value::String(s) => Ok(s),
            _ => Err(self.bad(method, "a string")),
        }
    }

    fn call_array(&mut self, method: &str, params: &[Value]) -> CallResult<Vec<Value>> {
        match self.call(method, params)? {
            Value::Array(a) => Ok(a),
            _ => Err(self.bad(method, "an array")),
        }
    }

    fn call_struct(&mut self, method: &str, params: &[Value]) -> CallResult<Value> {
        match self.call(method, params)? {
            v @ Value::Struct(_) => Ok(v),
            _ => Err(self.bad(method, "a struct")),
        }
    }

    pub fn get_version(&mut self) -> CallResult<String> {
        self.call_string("supervisor.getVersion", &[])
    }
    pub fn get_supervisor_version(&mut self) -> CallResult<String> {
        self.call_string("supervisor.getSupervisorVersion", &[])
    }
    pub fn get_pid(&mut self) -> CallResult<i64> {
        match self.call("supervisor.getPID", &[])? {
            Value::Int(i) => Ok(i),
            _ => Err(self.bad("supervisor.getPID", "an int")),
        }
    }
    pub fn get_all_process_info(&mut self) -> CallResult<Vec<Value>> {
        self.call_array("supervisor.getAllProcessInfo", &[])
    }
    pub fn get_process_info(&mut self, name: &str) -> CallResult<Value> {
        self.call_struct("supervisor.getProcessInfo", &[name.into()])
    }
    pub fn get_all_config_info(&mut self) -> CallResult<Vec<Value>> {
        self.call_array("supervisor.getAllConfigInfo", &[])
    }
    pub fn start_process(&mut self, name: &str) -> CallResult<Value> {
        self.call("supervisor.startProcess", &[name.into()])
    }
    pub fn start_process_group(&mut self, name: &str) -> CallResult<Vec<Value>> {
        self.call_array("supervisor.startProcessGroup", &[name.into()])
    }
    pub fn start_all_processes(&mut self) -> CallResult<Vec<Value>> {
        self.call_array("supervisor.startAllProcesses", &[])
    }
    pub fn stop_process(&mut self, name: &str) -> CallResult<Value> {
        self.call("supervisor.stopProcess", &[name.into()])
    }
    pub fn stop_process_group(&mut self, name: &str) -> CallResult<Vec<Value>> {
        self.call_array("supervisor.stopProcessGroup", &[name.into()])
    }
    pub fn stop_all_processes(&mut self) -> CallResult<Vec<Value>> {
        self.call_array("supervisor.stopAllProcesses", &[])
    }
    pub fn signal_process(&mut self, name: &str, sig: &str) -> CallResult<Value> {
        self.call("supervisor.signalProcess", &[name.into(), sig.into()])
    }
    pub fn signal_process_group(&mut self, name: &str, sig: &str) -> CallResult<Vec<Value>> {
        self.call_array("supervisor.signalProcessGroup", &[name.into(), sig.into()])
    }
    pub fn signal_all_processes(&mut self, sig: &str) -> CallResult<Vec<Value>> {
        self.call_array("supervisor.signalAllProcesses", &[sig.into()])
    }
    pub fn read_process_log(&mut self, name: &str, stderr: bool, bytes: i64) -> CallResult<String> {
        let m = if stderr { "supervisor.readProcessStderrLog" } else { "supervisor.readProcessStdoutLog" };
        self.call_string(m, &[name.into(), Value::Int(-bytes), Value::Int(0)])
    }
    pub fn read_log(&mut self, bytes: i64) -> CallResult<String> {
        self.call_string("supervisor.readLog", &[Value::Int(-bytes), Value::Int(0)])
    }
    pub fn clear_process_logs(&mut self, name: &str) -> CallResult<Value> {
        self.call("supervisor.clearProcessLogs", &[name.into()])
    }
    pub fn clear_all_process_logs(&mut self) -> CallResult<Vec<Value>> {
        self.call_array("supervisor.clearAllProcessLogs", &[])
    }
    /// `reloadConfig()` → (added, changed, removed) group names.
    pub fn reload_config(&mut self) -> CallResult<(Vec<String>, Vec<String>, Vec<String>)> {
        let v = self.call_array("supervisor.reloadConfig", &[])?;
        let names = |v: Option<&Value>| -> Vec<String> {
            v.and_then(Value::as_array)
                .map(|a| a.iter().filter_map(|x| x.as_str().map(String::from)).collect())
                .unwrap_or_default()
        };
        match v.first().and_then(Value::as_array) {
            Some(t) if t.len() == 3 => Ok((names(t.first()), names(t.get(1)), names(t.get(2)))),
            _ => Err(self.bad("supervisor.reloadConfig", "[[added, changed, removed]]")),
        }
    }
    pub fn add_process_group(&mut self, name: &str) -> CallResult<Value> {
        self.call("supervisor.addProcessGroup", &[name.into()])
    }
    pub fn remove_process_group(&mut self, name: &str) -> CallResult<Value> {
        self.call("supervisor.removeProcessGroup", &[name.into()])
    }
    pub fn send_process_stdin(&mut self, name: &str, chars: &str) -> CallResult<Value> {
        self.call("supervisor.sendProcessStdin", &[name.into(), chars.into()])
    }
    pub fn shutdown(&mut self) -> CallResult<Value> {
        self.call("supervisor.shutdown", &[])
    }
    pub fn restart(&mut self) -> CallResult<Value> {
        self.call("supervisor.restart", &[])
    }
}
