//! The HTTP side of the control interface (4.1, 4.2, 4.7), on tiny_http.
//!
//! The event loop owns all state, so this module only moves bytes: each request is
//! authenticated and routed on its own thread, handed to the loop as a [`ServerRequest`], and
//! answered with whatever the loop sends back, however late. Slow clients therefore never block
//! the loop or each other; `/logtail` streams run on their own threads and ask the loop only
//! where the file is.
//!
//! Threads: tiny_http's accept thread and pool (one thread per open connection), one `recv`
//! thread per server, and one thread per request in flight or per live tail.
//!
//! Later work, noted here so it is not forgotten: tiny_http 0.12 has no limit on header size
//! or on the number of connections, and no read timeout; a client can hold a thread open.

use std::io::{self, Write};
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::SystemTime;

use crate::config::{Config, Credentials, InetHttpServerConfig, LogLevel, UnixHttpServerConfig};
use crate::rpc::auth::{self, AuthOutcome};
use crate::rpc::httpdate::http_date;
use crate::rpc::listen::{self, Unlinker};
use crate::rpc::logtail::{self, ConnectionId, TailStart};
use crate::rpc::web::{self, WebRequest, WebResponse};

/// A request for the event loop. The loop answers through `reply` (possibly much later, e.g. a
/// start with wait=true); if the loop drops `reply` unanswered, the client gets a 500.
pub struct ServerRequest {
    pub kind: RequestKind,
    pub reply: Sender<ServerReply>,
}

pub enum RequestKind {
    /// The body of POST /RPC2 (already authenticated, size-checked).
    XmlRpc(Vec<u8>),
    /// Where the log for /logtail/<namespec>[/<channel>] is (namespec %-unquoted, channel as
    /// given, default "stdout"), or the main log for /mainlogtail (namespec None).
    LogPath { namespec: Option<String>, channel: String },
    /// A line for the main log (no answer expected), e.g. a failed login.
    Log { level: LogLevel, message: String },
    /// A web page, `/metrics`, `/healthz` or the JSON API: answered with `ServerReply::Web`,
    /// or, for an action that waits, with `ServerReply::XmlRpc` of its result, which the
    /// HTTP thread hands to `web::finish`.
    Web(WebRequest),
}

pub enum ServerReply {
    /// A complete XML document: 200, Content-Type text/xml, Content-Length.
    XmlRpc(String),
    /// The log file to stream, or None → 404.
    LogPath(Option<PathBuf>),
    /// The request body is not an XML-RPC call: 400, as Supervisor answers.
    BadRequest,
    /// A web answer.
    Web(WebResponse),
}

/// The largest XML-RPC body accepted; larger ones get 413 before their body is read.
pub const MAX_RPC_BODY: usize = 8 << 20;

/// The longest declared body that is answered (413) and whose unread rest tiny_http is left to
/// discard. tiny_http 0.12 discards it by allocating a zeroed buffer of the whole remaining
/// length (its EqualReader's Drop): the pages are only mapped, not touched beyond what the
/// client sends, but an allocation the kernel refuses aborts the daemon. So the limit is half
/// of what one allocation may take now (see `sys::allocatable_bytes`: the RAM, or what is left
/// under a strict commit limit, shared then by the most connections a listener keeps, since
/// their discards add up), and at least `MAX_RPC_BODY`.
///
/// Beyond it a request is abandoned unanswered: its connection's thread and two fds stay for
/// the life of the daemon (tiny_http's next read waits on the abandoned reader). Each such
/// request is logged with its peer.
fn max_drainable_body() -> usize {
    static LIMIT: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *LIMIT.get_or_init(|| {
        let mut half = crate::sys::allocatable_bytes().unwrap_or(0) / 2;
        if crate::sys::strict_overcommit() {
            half /= super::limits::MAX_CONNECTIONS as u64;
        }
        usize::try_from(half).unwrap_or(usize::MAX).clamp(MAX_RPC_BODY, isize::MAX as usize)
    })
}

/// Sockets bound before daemonizing (they survive fork; threads don't).
pub struct BoundServers {
    servers: Vec<BoundServer>,
}

struct BoundServer {
    section: String,
    auth: Option<Credentials>,
    socket: BoundSocket,
}

enum BoundSocket {
    Unix(listen::UnixSocket),
    Tcp(TcpListener),
}

impl BoundServers {
    /// The addresses the `[inet_http_server]`s listen on (with the actual port when 0 was asked).
    pub fn inet_addrs(&self) -> Vec<SocketAddr> {
        self.servers
            .iter()
            .filter_map(|s| match &s.socket {
                BoundSocket::Tcp(l) => l.local_addr().ok(),
                BoundSocket::Unix(_) => None,
            })
            .collect()
    }

    /// The socket files of the `[unix_http_server]`s.
    pub fn unix_files(&self) -> Vec<PathBuf> {
        self.servers
            .iter()
            .filter_map(|s| match &s.socket {
                BoundSocket::Unix(u) => Some(u.file().to_path_buf()),
                BoundSocket::Tcp(_) => None,
            })
            .collect()
    }
}

/// Binds every [unix_http_server]/[inet_http_server] of the config. Err(message) is a usage
/// error (the daemon prints `Error: <message>` and exits 2). Also returns the lines the daemon
/// must log. Sockets bound before an error are closed and their files unlinked.
pub fn bind(config: &Config) -> Result<(BoundServers, Vec<(LogLevel, String)>), String> {
    bind_sections(&config.inet_http_servers, &config.unix_http_servers)
}

fn bind_sections(
    inet: &[InetHttpServerConfig],
    unix: &[UnixHttpServerConfig],
) -> Result<(BoundServers, Vec<(LogLevel, String)>), String> {
    let mut servers = Vec::new();
    let mut logs = Vec::new();
    // Supervisor builds its server list with the inet sections first.
    for cfg in inet {
        let listener = listen::bind_inet(cfg)?;
        servers.push(BoundServer {
            section: cfg.section.clone(),
            auth: cfg.auth.clone(),
            socket: BoundSocket::Tcp(listener),
        });
    }
    for cfg in unix {
        let socket = listen::bind_unix(cfg)?;
        servers.push(BoundServer {
            section: cfg.section.clone(),
            auth: cfg.auth.clone(),
            socket: BoundSocket::Unix(socket),
        });
    }
    for s in &servers {
        if s.auth.is_none() {
            logs.push((
                LogLevel::Critical,
                format!("Server '{}' running without any HTTP authentication checking", s.section),
            ));
        }
    }
    Ok((BoundServers { servers }, logs))
}

/// How one server is doing; see [`ServerHandle::health`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerHealth {
    /// The config section (`unix_http_server`, `inet_http_server:x`).
    pub section: String,
    /// Set when the server stopped accepting new connections, with the error (e.g. EMFILE).
    /// Open connections are still served. Rebinding is the caller's choice: shut the handle
    /// down, `bind` and `serve` again.
    pub accept_error: Option<String>,
}

/// The running servers. Dropping it is the same as [`ServerHandle::shutdown`].
pub struct ServerHandle {
    servers: Vec<RunningServer>,
}

struct RunningServer {
    section: String,
    server: Option<Arc<tiny_http::Server>>,
    /// A second fd of the listening socket: `shutdown(2)` on it wakes tiny_http's accept().
    listener: Option<OwnedFd>,
    recv_thread: Option<JoinHandle<()>>,
    stopping: Arc<AtomicBool>,
    accept_error: Arc<Mutex<Option<String>>>,
    unlinker: Option<Unlinker>,
    tails: Option<Arc<logtail::Claims>>,
}

impl ServerHandle {
    /// The listening sockets (second fds of them), for the loop's watchdog: a listening socket
    /// that stays readable (a connection waits) for a while means tiny_http's accept thread is
    /// gone, whether it ended on an accept error or panicked (its `try_clone().unwrap()` does
    /// on EMFILE).
    pub fn listener_fds(&self) -> Vec<std::os::fd::RawFd> {
        use std::os::fd::AsRawFd;
        self.servers.iter().filter_map(|s| s.listener.as_ref().map(|l| l.as_raw_fd())).collect()
    }

    /// Per server, whether it still accepts connections. tiny_http's accept thread ends for
    /// good on an accept() error (EMFILE, ENFILE, ...); when that happens the loop is woken,
    /// so the daemon can call this on each wake-up (a mutex per server, no I/O) and log
    /// `CRIT` once for each new `accept_error`.
    pub fn health(&self) -> Vec<ServerHealth> {
        self.servers
            .iter()
            .map(|s| ServerHealth {
                section: s.section.clone(),
                accept_error: s.accept_error.lock().map(|e| e.clone()).unwrap_or(None),
            })
            .collect()
    }

    /// How many `/logtail` streams are running.
    pub fn active_tails(&self) -> usize {
        self.servers.iter().filter_map(|s| s.tails.as_ref()).map(|t| t.active()).sum()
    }

    /// Stops accepting, waits for the dispatch threads, unlinks the unix socket files.
    /// Requests in flight still get their answers; keep-alive connections that send another
    /// request afterwards get no answer and must reconnect. After this returns, `bind` may
    /// bind the same files and ports again (reload).
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        for s in &mut self.servers {
            s.stopping.store(true, Ordering::SeqCst);
            if let Some(fd) = s.listener.take() {
                // Makes the blocked accept() fail, which ends tiny_http's accept thread and
                // releases the port; tiny_http's own wake-up connects to the bound path,
                // which for unix sockets is the already unlinked temporary name.
                let _ = crate::syscall!(shutdown(fd.as_raw_fd(), libc::SHUT_RDWR));
            }
            if let Some(server) = &s.server {
                server.unblock();
            }
            if let Some(t) = s.recv_thread.take() {
                let _ = t.join();
            }
            // The last reference: tiny_http's Drop runs here, not later on another thread,
            // so it cannot unlink a socket file that a reload has bound again.
            s.server = None;
            s.unlinker = None;
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Starts the tiny_http servers and their threads. Requests go to `tx`, then `waker.wake()`.
/// Call after daemonizing (threads do not survive fork) and before the loop runs.
pub fn serve(bound: BoundServers, tx: Sender<ServerRequest>, waker: Arc<mio::Waker>) -> ServerHandle {
    let mut running = Vec::new();
    for b in bound.servers {
        let stopping = Arc::new(AtomicBool::new(false));
        let accept_error = Arc::new(Mutex::new(None));
        let (listener, unlinker, local, dup): (tiny_http::Listener, _, _, _) = match b.socket {
            BoundSocket::Unix(u) => {
                let (l, file) = u.release();
                let local =
                    l.local_addr().ok().and_then(|a| a.as_pathname().map(|p| p.to_path_buf())).map(ConnectionId::Unix);
                let dup = l.as_fd().try_clone_to_owned().ok();
                (UnixListener::into(l), Some(Unlinker::new(file)), local, dup)
            }
            BoundSocket::Tcp(l) => {
                let local = l.local_addr().ok().map(ConnectionId::Tcp);
                let dup = l.as_fd().try_clone_to_owned().ok();
                (l.into(), None, local, dup)
            }
        };
        let mut rs = RunningServer {
            section: b.section.clone(),
            server: None,
            listener: dup,
            recv_thread: None,
            stopping: stopping.clone(),
            accept_error: accept_error.clone(),
            unlinker,
            tails: None,
        };
        match tiny_http::Server::from_listener(listener, None) {
            Ok(server) => {
                let server = Arc::new(server);
                let ctx = Arc::new(Ctx {
                    section: b.section.clone(),
                    auth: b.auth,
                    tx: Mutex::new(tx.clone()),
                    waker: waker.clone(),
                    local,
                    tails: Arc::new(logtail::Claims::default()),
                });
                rs.tails = Some(ctx.tails.clone());
                if let Some(l) = &rs.listener {
                    let log_ctx = ctx.clone();
                    let log = move |message| tell_loop(&log_ctx, RequestKind::Log { level: LogLevel::Warn, message });
                    let _ = super::limits::guard(l.as_raw_fd(), &b.section, &rs.stopping, log);
                }
                let thread_server = server.clone();
                let thread_waker = waker.clone();
                let spawned = std::thread::Builder::new()
                    .name(format!("http:{}", b.section))
                    .spawn(move || recv_loop(&thread_server, &ctx, &stopping, &accept_error, &thread_waker));
                match spawned {
                    Ok(t) => rs.recv_thread = Some(t),
                    Err(e) => set_error(&rs.accept_error, format!("cannot start thread: {e}")),
                }
                rs.server = Some(server);
            }
            Err(e) => set_error(&rs.accept_error, e.to_string()),
        }
        running.push(rs);
    }
    ServerHandle { servers: running }
}

fn set_error(slot: &Mutex<Option<String>>, msg: String) {
    if let Ok(mut e) = slot.lock() {
        e.get_or_insert(msg);
    }
}

/// What a request thread needs.
struct Ctx {
    /// The config section of this server, for log lines.
    section: String,
    auth: Option<Credentials>,
    tx: Mutex<Sender<ServerRequest>>,
    waker: Arc<mio::Waker>,
    /// The listener's own address, to find a tail's connection among the process's fds.
    local: Option<ConnectionId>,
    tails: Arc<logtail::Claims>,
}

fn recv_loop(
    server: &tiny_http::Server,
    ctx: &Arc<Ctx>,
    stopping: &AtomicBool,
    accept_error: &Mutex<Option<String>>,
    waker: &mio::Waker,
) {
    loop {
        let received = server.recv();
        if stopping.load(Ordering::SeqCst) {
            // Dropping an unanswered request makes tiny_http send a 500.
            return;
        }
        match received {
            Ok(rq) => {
                let ctx = ctx.clone();
                // If the thread cannot be started, the request is dropped inside the closure
                // and tiny_http answers 500.
                let _ = std::thread::Builder::new().name("http-request".into()).spawn(move || {
                    let _ = catch_unwind(AssertUnwindSafe(|| handle(rq, &ctx)));
                });
            }
            Err(e) => {
                // tiny_http's accept thread has ended; open connections still deliver here.
                set_error(accept_error, e.to_string());
                let _ = waker.wake();
            }
        }
    }
}

/// Where a request goes (4.1 handler order).
#[derive(Debug, PartialEq, Eq)]
enum Route {
    Rpc,
    Logtail {
        namespec: String,
        channel: String,
    },
    MainLogtail,
    Ok,
    /// A page of `web` (status, tail, metrics, health, JSON API).
    Web,
    /// The stylesheet or script of the pages.
    Static,
    NotFound,
}

fn route(url: &str) -> Route {
    if url.starts_with("/RPC2") {
        return Route::Rpc;
    }
    if url.starts_with("/logtail") {
        return parse_logtail(url).unwrap_or(Route::NotFound);
    }
    if url.starts_with("/mainlogtail") {
        return Route::MainLogtail;
    }
    let path = uri_path(url);
    if path == "/ok.html" {
        return Route::Ok;
    }
    if web::static_asset(path).is_some() {
        return Route::Static;
    }
    if web::route(path) != web::Page::NotFound {
        return Route::Web;
    }
    Route::NotFound
}

/// Medusa's `split_uri`: the path ends at `;`, `?` or `#`.
fn uri_path(url: &str) -> &str {
    url.split([';', '?', '#']).next().unwrap_or("")
}

/// `/logtail/<namespec>[/<channel>]` as Supervisor's `logtail_handler` reads it.
fn parse_logtail(url: &str) -> Option<Route> {
    let path = uri_path(url);
    let path = if path.contains('%') { unquote(path) } else { path.to_string() };
    let path = path.trim_start_matches('/');
    let (_, rest) = path.split_once('/')?;
    let (name, channel) = rest.split_once('/').unwrap_or((rest, "stdout"));
    Some(Route::Logtail { namespec: name.to_string(), channel: channel.to_string() })
}

/// Python's `urllib.parse.unquote`: `%xx` → byte, anything malformed kept, UTF-8 with
/// replacement characters.
pub(crate) fn unquote(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
            if let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn header(rq: &tiny_http::Request, name: &str) -> Option<String> {
    rq.headers()
        .iter()
        .find(|h| h.field.as_str().as_str().eq_ignore_ascii_case(name))
        .map(|h| h.value.as_str().to_string())
}

fn handle(rq: tiny_http::Request, ctx: &Ctx) {
    let declared = rq.body_length().unwrap_or(0);
    if declared > max_drainable_body() {
        let peer = rq.remote_addr().map(ToString::to_string).unwrap_or_else(|| "the unix socket".into());
        let message = format!(
            "[{}] request from {peer} declares a body of {declared} bytes, more than can be discarded \
             ({} bytes): abandoned unanswered",
            ctx.section,
            max_drainable_body()
        );
        tell_loop(ctx, RequestKind::Log { level: LogLevel::Warn, message });
        // See max_drainable_body: dropping it could abort the daemon.
        std::mem::forget(rq);
        return;
    }
    if let Some(creds) = &ctx.auth {
        match auth::check(header(&rq, "Authorization").as_deref(), creds) {
            AuthOutcome::Allowed => {}
            AuthOutcome::Unauthorized => {
                let extra = [("Connection", "close"), ("WWW-Authenticate", "Basic realm=\"default\"")];
                return respond_error(rq, 401, &extra);
            }
            AuthOutcome::WrongCredentials { user } => {
                let peer = rq.remote_addr().map(ToString::to_string).unwrap_or_else(|| "the unix socket".into());
                let message = format!("failed login for user {user:?} from {peer} on [{}]", ctx.section);
                tell_loop(ctx, RequestKind::Log { level: LogLevel::Warn, message });
                let extra = [("Connection", "close"), ("WWW-Authenticate", "Basic realm=\"default\"")];
                return respond_error(rq, 401, &extra);
            }
            AuthOutcome::Malformed => return respond_error(rq, 400, &[]),
        }
    }
    let method = rq.method().clone();
    let is_get = method == tiny_http::Method::Get;
    match route(rq.url()) {
        Route::Rpc if method != tiny_http::Method::Post => respond_error(rq, 400, &[]),
        Route::Rpc => handle_rpc(rq, ctx),
        Route::Logtail { .. } | Route::MainLogtail if !is_get => respond_error(rq, 400, &[]),
        Route::Logtail { namespec, channel } => {
            handle_tail(rq, ctx, Some(namespec), channel);
        }
        Route::MainLogtail => handle_tail(rq, ctx, None, "stdout".to_string()),
        Route::Ok => respond(rq, 200, &[], "text/plain", b"OK"),
        Route::Static if !is_get && method != tiny_http::Method::Head => respond_error(rq, 400, &[]),
        Route::Static => {
            let (ctype, body) = web::static_asset(uri_path(rq.url())).unwrap_or(("text/plain", b""));
            let extra = [("Cache-Control", "max-age=300"), ("X-Content-Type-Options", "nosniff")];
            respond(rq, 200, &extra, ctype, body);
        }
        Route::Web => handle_web(rq, ctx),
        Route::NotFound => respond_error(rq, 404, &[]),
    }
}

fn handle_rpc(mut rq: tiny_http::Request, ctx: &Ctx) {
    let Some(len) = header(&rq, "Content-Length") else {
        return respond_error(rq, 411, &[]);
    };
    let Ok(len) = len.trim().parse::<usize>() else {
        return respond_error(rq, 400, &[]);
    };
    if len > MAX_RPC_BODY {
        // Through tiny_http, which writes the answer before it drains the unread body (our
        // raw writer would drain first, waiting for a body the client may never send).
        let ctype = tiny_http::Header::from_bytes("Content-Type", "text/html");
        let server = tiny_http::Header::from_bytes("Server", "Medusa/1.12");
        let mut response = tiny_http::Response::from_string(error_body(413)).with_status_code(413);
        for h in [ctype, server].into_iter().flatten() {
            response.add_header(h);
        }
        let _ = rq.respond(response);
        return;
    }
    let mut body = Vec::with_capacity(len);
    if io::Read::read_to_end(&mut io::Read::take(rq.as_reader(), len as u64), &mut body).is_err() || body.len() != len {
        // The client went away mid-body; nothing to answer.
        return;
    }
    match ask_loop(ctx, RequestKind::XmlRpc(body)) {
        Some(ServerReply::XmlRpc(xml)) => {
            respond(rq, 200, &[], "text/xml", xml.as_bytes());
            if xml.len() >= LARGE_ANSWER {
                drop(xml);
                crate::sys::release_free_memory();
            }
        }
        Some(ServerReply::BadRequest) => respond_error(rq, 400, &[]),
        _ => respond_error(rq, 500, &[]),
    }
}

/// An answer this large (getAllProcessInfo of a few hundred programs, a long log read) was built
/// in blocks that the allocator keeps once freed; they are given back to the kernel after it.
const LARGE_ANSWER: usize = 256 * 1024;

fn handle_web(mut rq: tiny_http::Request, ctx: &Ctx) {
    let url = rq.url().to_string();
    let path = uri_path(&url).to_string();
    let query = url.split_once('?').map(|(_, q)| q.split('#').next().unwrap_or("")).unwrap_or("").to_string();
    let headers = web::HEADERS.iter().filter_map(|h| header(&rq, h).map(|v| (h.to_string(), v))).collect();
    let mut body = Vec::new();
    let limit = web::MAX_BODY as u64 + 1;
    if io::Read::read_to_end(&mut io::Read::take(rq.as_reader(), limit), &mut body).is_err() {
        return;
    }
    if body.len() > web::MAX_BODY {
        return respond(rq, 413, &[("Connection", "close")], "text/plain", b"request body too large\n");
    }
    let req = WebRequest {
        method: rq.method().as_str().to_string(),
        path,
        query,
        headers,
        body,
        peer: rq.remote_addr().map(ToString::to_string),
    };
    let response = match ask_loop(ctx, RequestKind::Web(req.clone())) {
        Some(ServerReply::Web(r)) => r,
        // A deferred action: the loop answers with the XML-RPC result.
        Some(ServerReply::XmlRpc(xml)) => match crate::rpc::xmlrpc::parse_response(xml.as_bytes()) {
            Ok(result) => web::finish(&req, result),
            Err(_) => return respond_error(rq, 500, &[]),
        },
        _ => return respond_error(rq, 500, &[]),
    };
    let extra: Vec<(&str, &str)> = response.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    respond(rq, response.status, &extra, &response.content_type, &response.body);
}

fn handle_tail(rq: tiny_http::Request, ctx: &Ctx, namespec: Option<String>, channel: String) {
    let is_main = namespec.is_none();
    let path = match ask_loop(ctx, RequestKind::LogPath { namespec, channel }) {
        Some(ServerReply::LogPath(Some(path))) => path,
        Some(ServerReply::LogPath(None)) => return respond_error(rq, 404, &[]),
        _ => return respond_error(rq, 500, &[]),
    };
    let Ok(file) = std::fs::File::open(&path) else {
        return respond_error(rq, 404, &[]);
    };
    let mtime = file.metadata().and_then(|m| m.modified()).unwrap_or_else(|_| SystemTime::now());
    let chunked = *rq.http_version() >= tiny_http::HTTPVersion(1, 1);
    let version = version_str(&rq);
    let connection =
        ctx.local.as_ref().and_then(|local| logtail::find_connection(local, rq.remote_addr().copied(), &ctx.tails));
    let mut head = format!(
        "{version} 200 OK\r\nServer: Medusa/1.12\r\nDate: {}\r\nLast-Modified: {}\r\n\
         Content-Type: text/plain;charset=utf-8\r\n",
        http_date(SystemTime::now()),
        http_date(mtime)
    );
    if !is_main {
        head.push_str("X-Accel-Buffering: no\r\n");
    }
    if chunked {
        head.push_str("Transfer-Encoding: chunked\r\n");
    } else {
        head.push_str("Connection: close\r\n");
    }
    head.push_str("\r\n");
    let mut writer = rq.into_writer();
    if writer.write_all(head.as_bytes()).and_then(|()| writer.flush()).is_err() {
        return;
    }
    logtail::stream(TailStart { writer, path, file, chunked, connection }, &ctx.tails);
}

/// Sends a request to the loop and waits for its answer; None if the loop is gone or dropped
/// the reply.
/// Hands the loop something that needs no answer (a log line).
fn tell_loop(ctx: &Ctx, kind: RequestKind) {
    let (reply, _) = mpsc::channel();
    if let Ok(tx) = ctx.tx.lock() {
        if tx.send(ServerRequest { kind, reply }).is_ok() {
            let _ = ctx.waker.wake();
        }
    }
}

fn ask_loop(ctx: &Ctx, kind: RequestKind) -> Option<ServerReply> {
    let (reply, answer) = mpsc::channel();
    let sent = match ctx.tx.lock() {
        Ok(tx) => tx.send(ServerRequest { kind, reply }).is_ok(),
        Err(_) => false,
    };
    if !sent {
        return None;
    }
    let _ = ctx.waker.wake();
    answer.recv().ok()
}

fn version_str(rq: &tiny_http::Request) -> &'static str {
    if *rq.http_version() >= tiny_http::HTTPVersion(1, 1) {
        "HTTP/1.1"
    } else {
        "HTTP/1.0"
    }
}

fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        301 => "Moved Permanently",
        303 => "See Other",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Request Entity Too Large",
        503 => "Service Unavailable",
        _ => "Internal Server Error",
    }
}

/// Medusa's error page (4.1), lines joined by CRLF.
fn error_body(code: u16) -> String {
    [
        "<head>",
        "<title>Error response</title>",
        "</head>",
        "<body>",
        "<h1>Error response</h1>",
        &format!("<p>Error code {code}."),
        &format!("<p>Message: {}.", reason(code)),
        "</body>",
        "",
    ]
    .join("\r\n")
}

fn respond_error(rq: tiny_http::Request, code: u16, extra: &[(&str, &str)]) {
    respond(rq, code, extra, "text/html", error_body(code).as_bytes());
}

/// Writes the whole response by hand: tiny_http would drop `Connection` headers and add its
/// own `Server`.
fn respond(rq: tiny_http::Request, code: u16, extra: &[(&str, &str)], ctype: &str, body: &[u8]) {
    let head_only = *rq.method() == tiny_http::Method::Head;
    let mut head = format!(
        "{} {code} {}\r\nServer: Medusa/1.12\r\nDate: {}\r\n",
        version_str(&rq),
        reason(code),
        http_date(SystemTime::now())
    );
    for (k, v) in extra {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\nContent-Type: {ctype}\r\n\r\n", body.len()));
    let mut w = rq.into_writer();
    let _ = w.write_all(head.as_bytes());
    if !head_only {
        let _ = w.write_all(body);
    }
    let _ = w.flush();
}

#[cfg(test)]
mod tests;
