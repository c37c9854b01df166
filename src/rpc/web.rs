//! The web side of the HTTP server: Supervisor's status and tail pages, `/metrics`, `/healthz`
//! and a small JSON API, all served by the listeners that carry XML-RPC, behind the same auth.
//!
//! [`handle`] runs on the event loop thread and gets every fact and performs every action
//! through the XML-RPC methods ([`api::call`]), so the pages can never disagree with
//! `minisv ctl`. An action that waits for the state machine (stop, start, restart) returns
//! [`WebOutcome::Later`]; the loop completes it like any deferred XML-RPC call and the HTTP
//! thread turns the result into a page with [`finish`], which touches no state.
//!
//! Cross-site request forgery: every state change needs proof that it comes from minisv's own
//! page or from a script, not from a page on another site that the browser happens to show:
//! - the page's forms (POST) carry a token drawn from the kernel's random source once per daemon
//!   process; Supervisor's GET links (`index.html?action=stop&processname=x`) are honoured only
//!   when they carry the same token as `token=`;
//! - JSON API POSTs carry the token (`X-CSRF-Token` header or `token=`), or a header that a
//!   cross-site form cannot send: `Content-Type: application/json` or `X-Requested-With`. Such
//!   requests would need a CORS preflight, which minisv never grants. A browser's `Origin` or
//!   `Sec-Fetch-Site` naming another site refuses them in any case.
//!
//! A refused request gets 403 and changes nothing.

mod html;

use std::sync::OnceLock;

use super::api::{self, Pending, Reply};
use super::faults::{self, RpcError};
use super::host::Host;
use super::json::{self, Json};
use super::metrics::{self, Family, Kind};
use super::xmlrpc::{Fault, Value};

/// The largest form or JSON body read; larger ones get 413.
pub const MAX_BODY: usize = 64 << 10;

/// A request for a web page or the JSON API, as the HTTP thread hands it to the loop.
#[derive(Clone, Debug, Default)]
pub struct WebRequest {
    /// `GET`, `HEAD`, `POST`, ...
    pub method: String,
    /// The path without query, not unquoted.
    pub path: String,
    /// The query string without `?` (empty if none).
    pub query: String,
    /// The headers the web side looks at (lowercase names): host, origin, referer, cookie,
    /// content-type, sec-fetch-site, x-requested-with, x-csrf-token.
    pub headers: Vec<(String, String)>,
    /// The body, at most [`MAX_BODY`] bytes.
    pub body: Vec<u8>,
    /// The client's address, or None on a unix socket.
    pub peer: Option<String>,
}

/// The headers copied into [`WebRequest::headers`].
pub const HEADERS: &[&str] =
    &["host", "origin", "referer", "cookie", "content-type", "sec-fetch-site", "x-requested-with", "x-csrf-token"];

impl WebRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// Query parameters, then those of a urlencoded form body.
    fn params(&self) -> Vec<(String, String)> {
        let mut out = parse_form(&self.query);
        let ctype = self.header("content-type").unwrap_or("");
        if self.method == "POST" && ctype.starts_with("application/x-www-form-urlencoded") {
            out.extend(parse_form(&String::from_utf8_lossy(&self.body)));
        }
        out
    }

    fn param(&self, name: &str) -> Option<String> {
        self.params().into_iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }
}

/// What the loop sends back for a web request: an HTTP response as the connections write it.
pub use super::conn::Response as WebResponse;

/// The web side's kinds of answer.
impl WebResponse {
    fn html(status: u16, body: String) -> WebResponse {
        let mut r = WebResponse::new(status, "text/html;charset=utf-8", body);
        r.headers = html::page_headers();
        r
    }

    fn json(status: u16, v: &Json) -> WebResponse {
        let mut body = v.render();
        body.push('\n');
        WebResponse::new(status, "application/json", body).with("Cache-Control", "no-store")
    }

    fn text(status: u16, body: &str) -> WebResponse {
        WebResponse::new(status, "text/plain;charset=utf-8", body).with("Cache-Control", "no-store")
    }
}

pub enum WebOutcome {
    Now(WebResponse),
    /// The loop answers with the XML-RPC result once the state machine gets there; the HTTP
    /// thread then calls [`finish`] with the same request.
    Later(Pending),
}

/// The pages and endpoints.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Page {
    Index,
    Tail,
    Metrics,
    Healthz,
    ApiSupervisor,
    ApiProcesses,
    ApiProcess(String),
    ApiAction(String, String),
    NotFound,
}

/// Routes a path (without query). API namespecs are %-unquoted (`grp%3Aproc` or `grp:proc`).
pub fn route(path: &str) -> Page {
    match path {
        "/" | "/index.html" => return Page::Index,
        "/tail.html" => return Page::Tail,
        "/metrics" => return Page::Metrics,
        "/healthz" => return Page::Healthz,
        "/api/v1/supervisor" => return Page::ApiSupervisor,
        "/api/v1/processes" | "/api/v1/processes/" => return Page::ApiProcesses,
        _ => {}
    }
    let Some(rest) = path.strip_prefix("/api/v1/processes/") else { return Page::NotFound };
    let parts: Vec<&str> = rest.split('/').collect();
    match parts.as_slice() {
        [ns] if !ns.is_empty() => Page::ApiProcess(unquote(ns)),
        [ns, action] if !ns.is_empty() && !action.is_empty() => Page::ApiAction(unquote(ns), action.to_string()),
        _ => Page::NotFound,
    }
}

/// The stylesheet and script, served by the HTTP thread itself: (content type, bytes).
pub fn static_asset(path: &str) -> Option<(&'static str, &'static [u8])> {
    match path {
        "/static/minisv.css" => Some(("text/css;charset=utf-8", include_bytes!("web.css"))),
        "/static/minisv.js" => Some(("text/javascript;charset=utf-8", include_bytes!("web.js"))),
        _ => None,
    }
}

// ---- CSRF --------------------------------------------------------------------------------

/// The token of this daemon process: 128 random bits in hex.
pub fn csrf_token() -> &'static str {
    static TOKEN: OnceLock<String> = OnceLock::new();
    TOKEN.get_or_init(|| {
        let mut bytes = [0u8; 16];
        let read = std::fs::File::open("/dev/urandom").and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes));
        if read.is_err() {
            // std seeds its hash keys from the OS's random source too.
            use std::hash::{BuildHasher, Hasher};
            for chunk in bytes.chunks_mut(8) {
                let mut h = std::collections::hash_map::RandomState::new().build_hasher();
                h.write_u128(
                    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos(),
                );
                chunk.copy_from_slice(&h.finish().to_le_bytes()[..chunk.len()]);
            }
        }
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    })
}

/// Compares in constant time (the token length is public).
fn same_secret(given: &str, token: &str) -> bool {
    given.len() == token.len() && given.bytes().zip(token.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

/// Whether a browser says the request comes from another site.
fn cross_site(req: &WebRequest) -> bool {
    if matches!(req.header("sec-fetch-site"), Some("cross-site" | "same-site")) {
        return true;
    }
    match (req.header("origin"), req.header("host")) {
        (Some(origin), Some(host)) => {
            let bare = origin.strip_prefix("http://").or_else(|| origin.strip_prefix("https://")).unwrap_or(origin);
            !bare.eq_ignore_ascii_case(host)
        }
        (Some(_), None) => true,
        _ => false,
    }
}

/// May this request change state? Page actions need the token; API calls the token or a
/// header that a cross-site form cannot set.
pub fn csrf_ok(req: &WebRequest, api: bool) -> bool {
    let token = csrf_token();
    let given = req.header("x-csrf-token").map(str::to_string).or_else(|| req.param("token"));
    if given.is_some_and(|g| same_secret(g.trim(), token)) {
        return true;
    }
    if !api || cross_site(req) {
        return false;
    }
    let json =
        req.header("content-type").is_some_and(|c| c.trim().to_ascii_lowercase().starts_with("application/json"));
    json || req.header("x-requested-with").is_some()
}

// ---- dispatch ----------------------------------------------------------------------------

/// Answers a web request on the loop thread.
pub fn handle(lp: &mut dyn Host, req: &WebRequest) -> WebOutcome {
    let page = route(&req.path);
    if let Some(refused) = check_method(&page, &req.method) {
        return WebOutcome::Now(refused);
    }
    let now = WebOutcome::Now;
    match page {
        Page::Index => index(lp, req),
        Page::Tail => now(tail(lp, req)),
        Page::Metrics => now(metrics_page(lp)),
        Page::Healthz => now(healthz(lp)),
        Page::ApiSupervisor => now(api_supervisor(lp)),
        Page::ApiProcesses => now(match api::call(lp, "supervisor.getAllProcessInfo", &[]) {
            Ok(Reply::Done(Value::Array(infos))) => {
                WebResponse::json(200, &Json::Arr(infos.iter().map(process_json).collect()))
            }
            other => api_error(&fault_of(other)),
        }),
        Page::ApiProcess(ns) => now(match api::call(lp, "supervisor.getProcessInfo", &[Value::from(ns.as_str())]) {
            Ok(Reply::Done(info)) => WebResponse::json(200, &process_json(&info)),
            other => api_error(&fault_of(other)),
        }),
        Page::ApiAction(ns, action) => api_action(lp, req, &ns, &action),
        Page::NotFound => now(not_found()),
    }
}

fn check_method(page: &Page, method: &str) -> Option<WebResponse> {
    let allowed: &[&str] = match page {
        Page::NotFound => return None,
        Page::Index => &["GET", "HEAD", "POST"],
        Page::ApiAction(..) => &["POST"],
        _ => &["GET", "HEAD"],
    };
    if allowed.contains(&method) {
        return None;
    }
    let r = WebResponse::text(405, "method not allowed\n").with("Allow", &allowed.join(", "));
    Some(r)
}

fn not_found() -> WebResponse {
    WebResponse::text(404, "not found\n")
}

/// An API result as a fault, for the error paths.
fn fault_of(r: Result<Reply, RpcError>) -> Fault {
    match r {
        Err(e) => Fault { code: e.code, string: e.fault_string() },
        Ok(_) => Fault { code: faults::FAILED, string: "FAILED: unexpected reply".into() },
    }
}

fn done_or_fault(r: Result<Reply, RpcError>) -> Result<Reply, Fault> {
    r.map_err(|e| Fault { code: e.code, string: e.fault_string() })
}

fn call_value(lp: &mut dyn Host, method: &str, params: &[Value]) -> Result<Value, Fault> {
    match api::call(lp, method, params) {
        Ok(Reply::Done(v)) => Ok(v),
        other => Err(fault_of(other)),
    }
}

// ---- actions -----------------------------------------------------------------------------

/// The page actions of Supervisor's web UI, and the API's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Action {
    Refresh,
    StopAll,
    RestartAll,
    Start,
    Stop,
    Restart,
    ClearLog,
}

impl Action {
    fn parse(s: &str) -> Option<Action> {
        Some(match s {
            "refresh" => Action::Refresh,
            "stopall" => Action::StopAll,
            "restartall" => Action::RestartAll,
            "start" => Action::Start,
            "stop" => Action::Stop,
            "restart" => Action::Restart,
            "clearlog" => Action::ClearLog,
            _ => return None,
        })
    }

    fn needs_name(self) -> bool {
        matches!(self, Action::Start | Action::Stop | Action::Restart | Action::ClearLog)
    }
}

fn call_struct(method: &str, params: Vec<Value>) -> Value {
    Value::structure([("methodName", Value::from(method)), ("params", Value::Array(params))])
}

/// Starts `action`; `wait` is the start's wait flag (stops always wait, as Supervisor's page).
fn issue(lp: &mut dyn Host, action: Action, ns: &str, wait: bool) -> Result<Reply, Fault> {
    let name = Value::from(ns);
    let r = match action {
        Action::Refresh => return Ok(Reply::Done(Value::Bool(true))),
        Action::Start => api::call(lp, "supervisor.startProcess", &[name, Value::Bool(wait)]),
        Action::Stop => api::call(lp, "supervisor.stopProcess", &[name, Value::Bool(true)]),
        Action::ClearLog => api::call(lp, "supervisor.clearProcessLogs", &[name]),
        Action::StopAll => api::call(lp, "supervisor.stopAllProcesses", &[Value::Bool(true)]),
        // As Supervisor's page: a multicall of stop and start.
        Action::Restart => {
            let calls = vec![
                call_struct("supervisor.stopProcess", vec![name.clone(), Value::Bool(true)]),
                call_struct("supervisor.startProcess", vec![name, Value::Bool(wait)]),
            ];
            api::call(lp, "system.multicall", &[Value::Array(calls)])
        }
        Action::RestartAll => {
            let calls = vec![
                call_struct("supervisor.stopAllProcesses", vec![Value::Bool(true)]),
                call_struct("supervisor.startAllProcesses", vec![Value::Bool(wait)]),
            ];
            api::call(lp, "system.multicall", &[Value::Array(calls)])
        }
    };
    done_or_fault(r)
}

/// A fault inside a multicall result array (a struct with faultCode).
fn multicall_fault(v: &Value) -> Option<Fault> {
    let code = v.get("faultCode")?.as_int()?;
    Some(Fault { code: code as i32, string: v.str_of("faultString").to_string() })
}

/// The fault that decides an action's outcome, if any. A restart of a process that was not
/// running just starts it.
fn action_fault(action: Action, result: &Result<Value, Fault>) -> Option<Fault> {
    let v = match result {
        Err(f) => return Some(f.clone()),
        Ok(v) => v,
    };
    if action == Action::Restart {
        let items = v.as_array().unwrap_or_default();
        let stop = items.first().and_then(multicall_fault).filter(|f| f.code != faults::NOT_RUNNING);
        return stop.or_else(|| items.get(1).and_then(multicall_fault));
    }
    None
}

/// Supervisor's messages after an action (web.py).
fn message(action: Action, ns: &str, result: &Result<Value, Fault>) -> String {
    let at = html::ctime(metrics::now_epoch() as i64);
    if let Some(f) = action_fault(action, result) {
        let what = match (action, f.code) {
            (_, faults::BAD_NAME) => return format!("No such process named {ns}"),
            (Action::Stop, faults::NOT_RUNNING) => "not running".to_string(),
            (Action::Start | Action::Restart, faults::NO_FILE) => "no such file".to_string(),
            (Action::Start | Action::Restart, faults::NOT_EXECUTABLE) => "file not executable".to_string(),
            (Action::Start | Action::Restart, faults::ALREADY_STARTED) => "already started".to_string(),
            (Action::Start | Action::Restart, faults::SPAWN_ERROR) => "spawn error".to_string(),
            (Action::Start | Action::Restart, faults::ABNORMAL_TERMINATION) => "abnormal termination".to_string(),
            _ => format!("unexpected rpc fault [{}] {}", f.code, f.string),
        };
        return if action.needs_name() { format!("ERROR: Process {ns}: {what}") } else { format!("ERROR: {what}") };
    }
    match action {
        Action::Refresh => format!("Page refreshed at {at}"),
        Action::StopAll => format!("All stopped at {at}"),
        Action::RestartAll => format!("All restarted at {at}"),
        Action::Start => format!("Process {ns} started"),
        Action::Stop => format!("Process {ns} stopped"),
        Action::Restart => format!("Process {ns} restarted"),
        Action::ClearLog => format!("Log for {ns} cleared"),
    }
}

/// After an action the browser goes back to the page with the message (POST/redirect/GET).
/// Supervisor answers 301 with an absolute URL; 303 makes the browser GET the page.
fn redirect(message: &str) -> WebResponse {
    let location = format!("/?message={}", quote(message));
    WebResponse::html(303, String::new()).with("Location", &location)
}

fn index(lp: &mut dyn Host, req: &WebRequest) -> WebOutcome {
    let params = req.params();
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let Some(action_name) = get("action").filter(|a| !a.is_empty()) else {
        let msg = get("message");
        return WebOutcome::Now(render_index(lp, msg.as_deref()));
    };
    let Some(action) = Action::parse(&action_name) else {
        return WebOutcome::Now(redirect(&format!("ERROR: unknown action {action_name}")));
    };
    if action != Action::Refresh && !csrf_ok(req, false) {
        return WebOutcome::Now(forbidden_page(lp));
    }
    let ns = get("processname").unwrap_or_default();
    if action.needs_name() {
        if ns.is_empty() {
            return WebOutcome::Now(redirect("ERROR: no process name given"));
        }
        if let Err(f) = call_value(lp, "supervisor.getProcessInfo", &[Value::from(ns.as_str())]) {
            if f.code == faults::BAD_NAME {
                return WebOutcome::Now(redirect(&format!("No such process named {ns}")));
            }
        }
    }
    match issue(lp, action, &ns, true) {
        Ok(Reply::Later(p)) => WebOutcome::Later(p),
        Ok(Reply::Done(v)) => WebOutcome::Now(redirect(&message(action, &ns, &Ok(v)))),
        Err(f) => WebOutcome::Now(redirect(&message(action, &ns, &Err(f)))),
    }
}

/// Turns the late result of an action into its answer (runs on the HTTP thread).
pub fn finish(req: &WebRequest, result: Result<Value, Fault>) -> WebResponse {
    match route(&req.path) {
        Page::Index => {
            let action = req.param("action").as_deref().and_then(Action::parse).unwrap_or(Action::Refresh);
            let ns = req.param("processname").unwrap_or_default();
            redirect(&message(action, &ns, &result))
        }
        Page::ApiAction(ns, action) => match Action::parse(&action) {
            Some(a) => api_result(a, &ns, &result),
            None => not_found(),
        },
        _ => WebResponse::text(500, "unexpected deferred reply\n"),
    }
}

fn forbidden_page(lp: &mut dyn Host) -> WebResponse {
    let ident = call_value(lp, "supervisor.getIdentification", &[]).ok();
    let ident = ident.as_ref().and_then(Value::as_str).unwrap_or("supervisor");
    WebResponse::html(403, html::forbidden(ident))
}

// ---- pages -------------------------------------------------------------------------------

fn render_index(lp: &mut dyn Host, message: Option<&str>) -> WebResponse {
    let infos = call_value(lp, "supervisor.getAllProcessInfo", &[]);
    let state = call_value(lp, "supervisor.getState", &[]).map(|s| s.str_of("statename").to_string());
    let ident = call_value(lp, "supervisor.getIdentification", &[]).ok();
    let ctx = html::IndexCtx {
        identification: ident.as_ref().and_then(Value::as_str).unwrap_or("supervisor"),
        state: state.as_deref().unwrap_or("UNKNOWN"),
        version: env!("CARGO_PKG_VERSION"),
        token: csrf_token(),
        message,
    };
    let body = match &infos {
        Ok(Value::Array(list)) => html::index(&ctx, list, None),
        Ok(_) => html::index(&ctx, &[], None),
        Err(f) => html::index(&ctx, &[], Some(&f.string)),
    };
    WebResponse::html(200, body)
}

fn tail(lp: &mut dyn Host, req: &WebRequest) -> WebResponse {
    let names: Vec<String> =
        req.params().into_iter().filter(|(k, v)| k == "processname" && !v.is_empty()).map(|(_, v)| v).collect();
    if super::mergedtail::several(&names) {
        return tail_merged(lp, req, &names);
    }
    let ns = req.param("processname").filter(|n| !n.is_empty());
    // Supervisor's quirk Q15: never fewer than 1024 bytes.
    let limit = req.param("limit").and_then(|l| l.trim().parse::<i64>().ok()).unwrap_or(1024).clamp(1024, 1 << 20);
    let stderr = req.param("channel").as_deref() == Some("stderr");
    let Some(ns) = ns else {
        return WebResponse::html(200, html::tail("", stderr, limit, Err("No process name found")));
    };
    let method = if stderr { "supervisor.tailProcessStderrLog" } else { "supervisor.tailProcessStdoutLog" };
    let text = match call_value(lp, method, &[Value::from(ns.as_str()), Value::Int(0), Value::Int(limit)]) {
        Ok(v) => Ok(v.as_array().and_then(|a| a.first()).and_then(Value::as_str).unwrap_or("").to_string()),
        Err(f) if f.code == faults::NO_FILE => Err(format!("No file for {ns}")),
        Err(f) if f.code == faults::BAD_NAME => Err(format!("No such process named {ns}")),
        Err(f) => Err(format!("ERROR: unexpected rpc fault [{}] {}", f.code, f.string)),
    };
    let status = if text.is_ok() { 200 } else { 404 };
    let text = text.as_deref().map_err(String::as_str);
    WebResponse::html(status, html::tail(&ns, stderr, limit, text))
}

/// The tail page of several logs (minisv): each log's last lines, labelled as in
/// `/mergedtail`, which its Follow button streams.
fn tail_merged(lp: &mut dyn Host, req: &WebRequest, names: &[String]) -> WebResponse {
    let channel = req.param("channel").filter(|c| c == "stdout" || c == "stderr");
    match super::mergedtail::resolve(lp, names, channel.as_deref()) {
        Ok(sources) => {
            let text = super::mergedtail::snapshot(sources, 1 << 20);
            let text = String::from_utf8_lossy(&text);
            WebResponse::html(200, html::tail_merged(names, channel.as_deref(), Ok(&text)))
        }
        Err(why) => WebResponse::html(404, html::tail_merged(names, channel.as_deref(), Err(why.trim_end()))),
    }
}

// ---- health and metrics ------------------------------------------------------------------

/// `critical=true` of a running process (the API does not expose it).
fn critical(lp: &dyn Host, group: &str, name: &str) -> bool {
    lp.sup()
        .groups()
        .iter()
        .filter(|g| g.config.name == group)
        .flat_map(|g| &g.config.processes)
        .any(|p| p.name == name && p.critical)
}

fn healthz(lp: &mut dyn Host) -> WebResponse {
    let state = match call_value(lp, "supervisor.getState", &[]) {
        Ok(s) => s.str_of("statename").to_string(),
        Err(f) if f.code == faults::SHUTDOWN_STATE => "SHUTDOWN".to_string(),
        Err(f) => return WebResponse::text(503, &format!("cannot tell: {}\n", f.string)),
    };
    if state != "RUNNING" {
        return WebResponse::text(503, &format!("the daemon is {state}\n"));
    }
    let infos = match call_value(lp, "supervisor.getAllProcessInfo", &[]) {
        Ok(Value::Array(list)) => list,
        Ok(_) => Vec::new(),
        Err(f) => return WebResponse::text(503, &format!("cannot tell: {}\n", f.string)),
    };
    let failed: Vec<String> = infos
        .iter()
        .filter(|i| i.str_of("statename") == "FATAL" && critical(lp, i.str_of("group"), i.str_of("name")))
        .map(|i| api::make_namespec(i.str_of("group"), i.str_of("name")))
        .collect();
    if failed.is_empty() {
        WebResponse::text(200, "ok\n")
    } else {
        WebResponse::text(503, &format!("critical program FATAL: {}\n", failed.join(", ")))
    }
}

/// Every process state, in Supervisor's code order.
const STATES: &[&str] = &["STOPPED", "STARTING", "RUNNING", "BACKOFF", "STOPPING", "EXITED", "FATAL", "UNKNOWN"];

fn metrics_page(lp: &mut dyn Host) -> WebResponse {
    let infos = match call_value(lp, "supervisor.getAllProcessInfo", &[]) {
        Ok(Value::Array(list)) => list,
        _ => Vec::new(),
    };
    let ident = call_value(lp, "supervisor.getIdentification", &[]).ok();
    let ident = ident.as_ref().and_then(Value::as_str).unwrap_or("supervisor").to_string();
    let restarts: Vec<(String, String, u64)> =
        lp.sup().processes().map(|(_, p)| (p.group.clone(), p.name().to_string(), p.restarts)).collect();
    let mut text = metrics_text(&infos, &ident);
    text.push_str(&restarts_text(&restarts));
    WebResponse::new(200, "text/plain; version=0.0.4; charset=utf-8", text).with("Cache-Control", "no-store")
}

/// `minisv_process_restarts_total`: starts after the first one, per process.
pub fn restarts_text(restarts: &[(String, String, u64)]) -> String {
    let mut f = Family::new(
        "minisv_process_restarts_total",
        Kind::Counter,
        "How many times the process was started again after its first start.",
    );
    for (group, name, n) in restarts {
        f.add(vec![("group", group.clone()), ("name", name.clone())], *n as f64);
    }
    metrics::render(&[f])
}

/// The exposition for these getProcessInfo structs; memory and CPU read from /proc.
pub fn metrics_text(infos: &[Value], identification: &str) -> String {
    use Kind::{Counter, Gauge};
    let mut info = Family::new("minisv_info", Gauge, "Version and identification of the minisv daemon (always 1).");
    info.add(vec![("version", env!("CARGO_PKG_VERSION").into()), ("identification", identification.into())], 1.0);
    let me = metrics::self_usage();
    let mut uptime = Family::new("minisv_uptime_seconds", Gauge, "Seconds since the minisv daemon started.");
    if me.start_time > 0.0 {
        uptime.add(vec![], (metrics::now_epoch() - me.start_time).max(0.0));
    }
    let mut start = Family::new(
        "process_start_time_seconds",
        Gauge,
        "Start time of the minisv daemon since the Unix epoch in seconds.",
    );
    start.add(vec![], me.start_time);
    let mut rss = Family::new("process_resident_memory_bytes", Gauge, "Resident memory of the minisv daemon in bytes.");
    rss.add(vec![], me.usage.rss_bytes as f64);
    let mut cpu =
        Family::new("process_cpu_seconds_total", Counter, "User and system CPU time of the minisv daemon in seconds.");
    cpu.add(vec![], me.usage.cpu_seconds);
    let mut fds = Family::new("process_open_fds", Gauge, "Open file descriptors of the minisv daemon.");
    fds.add(vec![], me.open_fds as f64);

    let mut p_state = Family::new(
        "minisv_process_state",
        Gauge,
        "Whether the process is in this state (1) or not (0); one series per state.",
    );
    let mut p_up = Family::new("minisv_process_up", Gauge, "1 if the process is RUNNING, else 0.");
    let mut p_pid = Family::new("minisv_process_pid", Gauge, "Process id, 0 when there is no process.");
    let mut p_start = Family::new(
        "minisv_process_start_time_seconds",
        Gauge,
        "Time of the last start since the Unix epoch in seconds, 0 if never started.",
    );
    let mut p_exit = Family::new("minisv_process_exit_status", Gauge, "Exit status of the last exit, 0 if none.");
    let mut p_rss = Family::new(
        "minisv_process_resident_memory_bytes",
        Gauge,
        "Resident memory of a running process and its live descendants in bytes.",
    );
    let mut p_cpu = Family::new(
        "minisv_process_cpu_seconds_total",
        Counter,
        "CPU time of a running process, its live descendants and its reaped children in seconds.",
    );
    for i in infos {
        let labels = || vec![("group", i.str_of("group").to_string()), ("name", i.str_of("name").to_string())];
        let state = i.str_of("statename");
        for s in STATES {
            let mut l = labels();
            l.push(("state", s.to_string()));
            p_state.add(l, f64::from(u8::from(*s == state)));
        }
        p_up.add(labels(), f64::from(u8::from(state == "RUNNING")));
        let pid = i.int_of("pid");
        p_pid.add(labels(), pid as f64);
        p_start.add(labels(), i.int_of("start") as f64);
        p_exit.add(labels(), i.int_of("exitstatus") as f64);
        if pid > 0 {
            if let Some(u) = metrics::tree_usage(pid as u32) {
                p_rss.add(labels(), u.rss_bytes as f64);
                p_cpu.add(labels(), u.cpu_seconds);
            }
        }
    }
    metrics::render(&[info, uptime, start, rss, cpu, fds, p_state, p_up, p_pid, p_start, p_exit, p_rss, p_cpu])
}

// ---- JSON API ----------------------------------------------------------------------------

/// A getProcessInfo struct as JSON, with the namespec and the uptime added.
fn process_json(info: &Value) -> Json {
    let Json::Obj(mut members) = json::from_value(info) else { return json::from_value(info) };
    let ns = api::make_namespec(info.str_of("group"), info.str_of("name"));
    let uptime =
        if info.str_of("statename") == "RUNNING" { (info.int_of("now") - info.int_of("start")).max(0) } else { 0 };
    members.insert(0, ("namespec".into(), Json::Str(ns)));
    members.push(("uptime".into(), Json::Int(uptime)));
    Json::Obj(members)
}

fn api_status(code: i32) -> u16 {
    match code {
        faults::BAD_NAME => 404,
        faults::ALREADY_STARTED | faults::NOT_RUNNING => 409,
        faults::SHUTDOWN_STATE => 503,
        faults::INCORRECT_PARAMETERS | faults::BAD_ARGUMENTS => 400,
        _ => 500,
    }
}

fn api_error(f: &Fault) -> WebResponse {
    let body = Json::obj([(
        "error",
        Json::obj([
            ("code", Json::Int(f.code.into())),
            ("name", Json::str(faults::fault_name(f.code))),
            ("message", Json::str(f.string.as_str())),
        ]),
    )]);
    WebResponse::json(api_status(f.code), &body)
}

fn api_supervisor(lp: &mut dyn Host) -> WebResponse {
    let state = match call_value(lp, "supervisor.getState", &[]) {
        Ok(s) => s,
        Err(f) => return api_error(&f),
    };
    let ident = call_value(lp, "supervisor.getIdentification", &[]).unwrap_or(Value::Nil);
    let pid = call_value(lp, "supervisor.getPID", &[]).unwrap_or(Value::Nil);
    WebResponse::json(
        200,
        &Json::obj([
            ("version", Json::str(env!("CARGO_PKG_VERSION"))),
            ("identification", json::from_value(&ident)),
            ("pid", json::from_value(&pid)),
            ("statecode", Json::Int(state.int_of("statecode"))),
            ("statename", Json::str(state.str_of("statename"))),
        ]),
    )
}

fn api_action(lp: &mut dyn Host, req: &WebRequest, ns: &str, action: &str) -> WebOutcome {
    let action = match action {
        "start" => Action::Start,
        "stop" => Action::Stop,
        "restart" => Action::Restart,
        _ => return WebOutcome::Now(not_found()),
    };
    if !csrf_ok(req, true) {
        let f = Fault {
            code: faults::FAILED,
            string: "FAILED: a state change needs Content-Type: application/json, X-Requested-With or the page's token"
                .into(),
        };
        return WebOutcome::Now(WebResponse { status: 403, ..api_error(&f) });
    }
    if let Err(f) = call_value(lp, "supervisor.getProcessInfo", &[Value::from(ns)]) {
        return WebOutcome::Now(api_error(&f));
    }
    let wait = req.param("wait").is_none_or(|w| !matches!(w.as_str(), "0" | "false" | "no"));
    match issue(lp, action, ns, wait) {
        Ok(Reply::Later(p)) => WebOutcome::Later(p),
        Ok(Reply::Done(v)) => WebOutcome::Now(api_result(action, ns, &Ok(v))),
        Err(f) => WebOutcome::Now(api_result(action, ns, &Err(f))),
    }
}

fn api_result(action: Action, ns: &str, result: &Result<Value, Fault>) -> WebResponse {
    if let Some(f) = action_fault(action, result) {
        return api_error(&f);
    }
    let verb = match action {
        Action::Start => "start",
        Action::Stop => "stop",
        _ => "restart",
    };
    WebResponse::json(
        200,
        &Json::obj([("namespec", Json::str(ns)), ("action", Json::str(verb)), ("ok", Json::Bool(true))]),
    )
}

// ---- URL encoding ------------------------------------------------------------------------

/// `%xx`-decoding as Python's `unquote` (one implementation, shared with the HTTP router).
fn unquote(s: &str) -> String {
    super::route::unquote(s)
}

/// `application/x-www-form-urlencoded` pairs (`+` is a space).
pub fn parse_form(s: &str) -> Vec<(String, String)> {
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (unquote(&k.replace('+', " ")), unquote(&v.replace('+', " ")))
        })
        .collect()
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests;
