//! Real listeners on temporary unix sockets and 127.0.0.1 ports, driven by a small fake event
//! loop on a thread (the daemon's loop does the same with the real core), and a raw client.

use super::*;
use crate::rpc::conn::error_body;
use crate::rpc::listen::ADDR_IN_USE;
use crate::rpc::route::MAX_RPC_BODY;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;

const DEADLINE: Duration = Duration::from_secs(10);

struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("minisv-http-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }
    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn unix_cfg(file: &Path, auth: Option<(&str, &str)>) -> UnixHttpServerConfig {
    UnixHttpServerConfig {
        section: "unix_http_server".into(),
        file: file.to_path_buf(),
        chmod: 0o700,
        chown: None,
        auth: auth.map(|(u, p)| Credentials { username: u.into(), password: p.into() }),
    }
}

fn inet_cfg(port: u16, auth: Option<(&str, &str)>) -> InetHttpServerConfig {
    InetHttpServerConfig {
        section: "inet_http_server".into(),
        host: "127.0.0.1".into(),
        port,
        auth: auth.map(|(u, p)| Credentials { username: u.into(), password: p.into() }),
    }
}

/// What the fake loop does with a request.
enum Fake {
    Now(Answer),
    After(Duration, Answer),
    /// No answer (a log line, or a request left waiting).
    Nothing,
}

type Handler = dyn Fn(Incoming) -> Fake + Send + Sync;

type Sections = (Vec<InetHttpServerConfig>, Vec<UnixHttpServerConfig>);

/// A served set of sockets with a fake loop on a thread.
struct Running {
    unix: Vec<PathBuf>,
    inet: Vec<SocketAddr>,
    stop: Arc<AtomicBool>,
    waker: Arc<mio::Waker>,
    tails: Arc<AtomicUsize>,
    conns: Arc<AtomicUsize>,
    logs: Arc<std::sync::Mutex<Vec<String>>>,
    reload: mpsc::Sender<Sections>,
    thread: Option<JoinHandle<()>>,
}

impl Running {
    /// Reconfigures the server as a reload does: out of one `Poll`, into a new one.
    fn reload(&self, inet: &[InetHttpServerConfig], unix: &[UnixHttpServerConfig]) {
        self.reload.send((inet.to_vec(), unix.to_vec())).expect("loop alive");
        let _ = self.waker.wake();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.waker.wake();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn start(inet: &[InetHttpServerConfig], unix: &[UnixHttpServerConfig], handler: Arc<Handler>) -> Running {
    let settings =
        Settings { timeouts: Timeouts::default(), max_connections: MAX_CONNECTIONS, drop_log_every: DROP_LOG_EVERY };
    start_with(inet, unix, handler, settings)
}

fn start_with(
    inet: &[InetHttpServerConfig],
    unix: &[UnixHttpServerConfig],
    handler: Arc<Handler>,
    settings: Settings,
) -> Running {
    let (mut server, _logs) = Server::bind_sections(inet, unix, settings).expect("bind");
    let unix = server.unix_files();
    let inet = server.inet_addrs();
    let mut poll = mio::Poll::new().expect("poll");
    const WAKE: Token = Token(1);
    let waker = Arc::new(mio::Waker::new(poll.registry(), WAKE).expect("waker"));
    server.register(poll.registry()).expect("register");
    let stop = Arc::new(AtomicBool::new(false));
    let (tails, conns) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let logs = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (reload, reloads) = mpsc::channel::<Sections>();
    let (t_stop, t_tails, t_conns, t_logs) = (stop.clone(), tails.clone(), conns.clone(), logs.clone());
    let thread = std::thread::spawn(move || {
        let mut events = mio::Events::with_capacity(64);
        let mut later: Vec<(Instant, ConnRef, Answer)> = Vec::new();
        while !t_stop.load(Ordering::SeqCst) {
            let deadline = [server.next_deadline(), later.iter().map(|l| l.0).min()].into_iter().flatten().min();
            // This fake loop also wakes every 20 ms: the tests write the logs themselves (in the
            // daemon, only the loop writes them, so it needs no such wake-up), and the stop flag
            // is looked at after a reload replaced the poll the waker belongs to.
            let tick = Duration::from_millis(20);
            let timeout = if server.has_work() {
                Duration::ZERO
            } else {
                deadline.map_or(tick, |d| d.saturating_duration_since(Instant::now()).min(tick))
            };
            let timeout = Some(timeout);
            match poll.poll(&mut events, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => panic!("poll: {e}"),
            }
            for e in events.iter() {
                if Server::owns(e.token()) {
                    server.on_event(poll.registry(), e, Instant::now(), SystemTime::now());
                }
            }
            if let Ok((inet, unix)) = reloads.try_recv() {
                server.deregister(poll.registry());
                poll = mio::Poll::new().expect("poll");
                server.reconfigure_sections(&inet, &unix).expect("reconfigure");
                server.register(poll.registry()).expect("register again");
            }
            let now = Instant::now();
            server.expire(poll.registry(), now);
            server.resume(poll.registry(), now, SystemTime::now());
            for (_, line) in server.report(now) {
                t_logs.lock().unwrap().push(line);
            }
            while let Some((c, incoming)) = server.next_request() {
                if let Incoming::Log(_, line) = &incoming {
                    t_logs.lock().unwrap().push(line.clone());
                }
                match handler(incoming) {
                    Fake::Now(a) => server.answer(poll.registry(), c, a, Instant::now(), SystemTime::now()),
                    Fake::After(d, a) => later.push((Instant::now() + d, c, a)),
                    Fake::Nothing => {}
                }
            }
            let now = Instant::now();
            let (due, rest): (Vec<_>, Vec<_>) = later.into_iter().partition(|l| l.0 <= now);
            later = rest;
            for (_, c, a) in due {
                server.answer(poll.registry(), c, a, now, SystemTime::now());
            }
            server.pump_tails(poll.registry(), Instant::now(), SystemTime::now());
            t_tails.store(server.active_tails(), Ordering::SeqCst);
            t_conns.store(server.connections(), Ordering::SeqCst);
        }
    });
    Running { unix, inet, stop, waker, tails, conns, logs, reload, thread: Some(thread) }
}

/// Answers XML-RPC with the body wrapped in `<echo>`, and log paths from a fixed map.
fn echo_loop(logs: Vec<(Option<&'static str>, PathBuf)>) -> Arc<Handler> {
    Arc::new(move |incoming| match incoming {
        Incoming::XmlRpc(body) => Fake::Now(Answer::Xml(format!("<echo>{}</echo>", String::from_utf8_lossy(&body)))),
        Incoming::Tail { namespec, channel } => {
            let found = logs
                .iter()
                .find(|(n, _)| n.map(str::to_string) == namespec.as_ref().map(|n| format!("{n}/{channel}")))
                .map(|(_, p)| p.clone());
            Fake::Now(Answer::Tail(found))
        }
        Incoming::MergedTail { .. } => Fake::Now(Answer::MergedTail(Err("not here\n".into()))),
        Incoming::Log(..) => Fake::Nothing,
        Incoming::Web(req) => {
            let seen = format!(
                "{} {} ?{} {:?} {}",
                req.method,
                req.path,
                req.query,
                req.headers,
                String::from_utf8_lossy(&req.body)
            );
            let mut r = WebResponse::new(200, "text/plain", seen);
            r.headers.push(("X-Web".into(), "1".into()));
            Fake::Now(Answer::Web(r))
        }
    })
}

enum Client {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl Client {
    fn unix(path: &Path) -> Client {
        let s = UnixStream::connect(path).expect("connect unix");
        s.set_read_timeout(Some(DEADLINE)).expect("timeout");
        Client::Unix(s)
    }
    fn tcp(addr: SocketAddr) -> Client {
        let s = TcpStream::connect(addr).expect("connect tcp");
        s.set_read_timeout(Some(DEADLINE)).expect("timeout");
        Client::Tcp(s)
    }
}

impl Read for Client {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Client::Unix(s) => s.read(buf),
            Client::Tcp(s) => s.read(buf),
        }
    }
}

impl Write for Client {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Client::Unix(s) => s.write(buf),
            Client::Tcp(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

struct Reply {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(": ")?;
            k.eq_ignore_ascii_case(name).then(|| v.to_string())
        })
    }
}

/// Reads the status line and headers (byte by byte, so nothing after them is consumed).
fn read_head(conn: &mut Client) -> String {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match conn.read(&mut b) {
            Ok(1) => head.push(b[0]),
            other => panic!("connection ended in the head: {other:?} after {head:?}"),
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

fn read_response(conn: &mut Client) -> Reply {
    let head = read_head(conn);
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("status");
    let mut r = Reply { status, head, body: Vec::new() };
    let len: usize = r.header("Content-Length").and_then(|v| v.parse().ok()).unwrap_or(0);
    r.body = vec![0; len];
    conn.read_exact(&mut r.body).expect("body");
    r
}

fn exchange(conn: &mut Client, request: &str) -> Reply {
    conn.write_all(request.as_bytes()).expect("send");
    read_response(conn)
}

fn rpc_request(body: &str, extra: &str) -> String {
    format!(
        "POST /RPC2 HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/xml\r\n{extra}\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

const NOT_FOUND_BODY: &str = "<head>\r\n<title>Error response</title>\r\n</head>\r\n<body>\r\n\
<h1>Error response</h1>\r\n<p>Error code 404.\r\n<p>Message: Not Found.\r\n</body>\r\n";

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn error_body_is_medusas() {
    assert_eq!(error_body(404), NOT_FOUND_BODY);
}

#[test]
fn rpc_round_trip_on_unix_and_tcp() {
    let dir = TempDir::new();
    let sock = dir.path("sock");
    let run = start(&[inet_cfg(0, None)], &[unix_cfg(&sock, None)], echo_loop(vec![]));
    for mut conn in [Client::unix(&run.unix[0]), Client::tcp(run.inet[0])] {
        // Two requests on one persistent connection, as supervisorctl does.
        for body in ["<a/>", "<methodCall>x</methodCall>"] {
            let r = exchange(&mut conn, &rpc_request(body, ""));
            assert_eq!(r.status, 200);
            assert_eq!(r.header("Content-Type").as_deref(), Some("text/xml"));
            assert_eq!(String::from_utf8_lossy(&r.body), format!("<echo>{body}</echo>"));
        }
    }
    let mode = std::fs::metadata(&sock).map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()));
    assert_eq!(mode.map(|m| m & 0o777).ok(), Some(0o700));
    drop(run);
    assert!(!sock.exists(), "socket file unlinked at shutdown");
}

#[test]
fn auth_401_400_and_sha_password() {
    let dir = TempDir::new();
    let sha = "{SHA}1a91d62f7ca67399625a4368a6ab5d4a3baa6073"; // sha1("pw")
    let run = start(
        &[inet_cfg(0, Some(("bob", sha)))],
        &[unix_cfg(&dir.path("sock"), Some(("bob", "secret")))],
        echo_loop(vec![]),
    );
    let mut c = Client::unix(&run.unix[0]);
    let r = exchange(&mut c, "GET /ok.html HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(r.status, 401);
    assert_eq!(r.header("WWW-Authenticate").as_deref(), Some("Basic realm=\"default\""));
    assert_eq!(r.header("Connection").as_deref(), Some("close"));
    let mut c = Client::unix(&run.unix[0]);
    let r = exchange(&mut c, &rpc_request("<a/>", "Authorization: Basic Ym9iOnNlY3JldA==\r\n"));
    assert_eq!((r.status, r.body), (200, b"<echo><a/></echo>".to_vec()));
    let r = exchange(&mut c, "GET /ok.html HTTP/1.1\r\nAuthorization: Basic YQ\r\n\r\n");
    assert_eq!(r.status, 400);

    // {SHA}: the password works, the hash itself does not.
    let mut c = Client::tcp(run.inet[0]);
    let r = exchange(&mut c, "GET /ok.html HTTP/1.1\r\nAuthorization: Basic Ym9iOnB3\r\n\r\n");
    assert_eq!((r.status, r.body), (200, b"OK".to_vec()));
    let hash = "Ym9iOjFhOTFkNjJmN2NhNjczOTk2MjVhNDM2OGE2YWI1ZDRhM2JhYTYwNzM=";
    let r = exchange(&mut c, &format!("GET /ok.html HTTP/1.1\r\nAuthorization: Basic {hash}\r\n\r\n"));
    assert_eq!(r.status, 401);
}

#[test]
fn transport_errors() {
    let run = start(&[inet_cfg(0, None)], &[], echo_loop(vec![]));
    let mut c = Client::tcp(run.inet[0]);
    let r = exchange(&mut c, "GET /RPC2 HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(r.status, 400);
    let r = exchange(&mut c, "POST /RPC2 HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(r.status, 411);
    // Where that body would end is unknown: the connection ends.
    assert_eq!(r.header("Connection").as_deref(), Some("close"));
    let mut b = [0u8; 1];
    assert!(matches!(c.read(&mut b), Ok(0) | Err(_)));
    let mut c = Client::tcp(run.inet[0]);
    let r = exchange(&mut c, "GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(r.status, 404);
    assert_eq!(r.header("Content-Type").as_deref(), Some("text/html"));
    assert_eq!(String::from_utf8_lossy(&r.body), NOT_FOUND_BODY);
    let r = exchange(&mut c, "POST /logtail/x HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(r.status, 400);
    let r = exchange(&mut c, "GET /logtail/nosuch HTTP/1.1\r\n\r\n");
    assert_eq!(r.status, 404);
    let r = exchange(&mut c, "GET /ok.html HTTP/1.1\r\n\r\n");
    assert_eq!((r.status, r.body), (200, b"OK".to_vec()));
    // 413 comes back although the body is never sent.
    let mut c = Client::tcp(run.inet[0]);
    let big = MAX_RPC_BODY + 1;
    let r = exchange(&mut c, &format!("POST /RPC2 HTTP/1.1\r\nContent-Length: {big}\r\n\r\n"));
    assert_eq!(r.status, 413);
}

#[test]
fn deferred_reply_does_not_block_another_client() {
    let handler: Arc<Handler> = Arc::new(|incoming| match incoming {
        Incoming::XmlRpc(body) if body == b"slow" => {
            Fake::After(Duration::from_millis(200), Answer::Xml("slow done".into()))
        }
        _ => Fake::Now(Answer::Xml("fast done".into())),
    });
    let run = start(&[inet_cfg(0, None)], &[], handler);
    let mut slow = Client::tcp(run.inet[0]);
    slow.write_all(rpc_request("slow", "").as_bytes()).expect("send");
    let t0 = Instant::now();
    let r = exchange(&mut Client::tcp(run.inet[0]), &rpc_request("fast", ""));
    assert_eq!(r.body, b"fast done");
    assert!(t0.elapsed() < Duration::from_millis(150), "fast client waited {:?}", t0.elapsed());
    let r = read_response(&mut slow);
    assert_eq!(r.body, b"slow done");
}

#[test]
fn stale_socket_is_unlinked_and_live_one_refused() {
    let dir = TempDir::new();
    let sock = dir.path("sock");
    // A stale socket: bound, then its listener closed.
    drop(UnixListener::bind(&sock).expect("bind stale"));
    assert!(sock.exists());
    let _run = start(&[], &[unix_cfg(&sock, None)], echo_loop(vec![]));
    let r = exchange(&mut Client::unix(&sock), "GET /ok.html HTTP/1.1\r\n\r\n");
    assert_eq!(r.status, 200);

    // A live one (our own server) is refused with Supervisor's message, and left alone.
    let err = Server::bind_sections(&[], &[unix_cfg(&sock, None)], settings()).err();
    assert_eq!(err, Some(format!("{ADDR_IN_USE} ([unix_http_server] file={})", sock.display())));
    assert_eq!(
        ADDR_IN_USE,
        "Another program is already listening on a port that one of our HTTP servers is \
         configured to use.  Shut this program down first before starting supervisord."
    );
    let r = exchange(&mut Client::unix(&sock), "GET /ok.html HTTP/1.1\r\n\r\n");
    assert_eq!(r.status, 200);
}

#[test]
fn port_in_use_is_refused_and_bind_errors_are_usage_errors() {
    let run = start(&[inet_cfg(0, None)], &[], echo_loop(vec![]));
    let port = run.inet[0].port();
    let err = Server::bind_sections(&[inet_cfg(port, None)], &[], settings()).err();
    assert_eq!(err, Some(format!("{ADDR_IN_USE} ([inet_http_server] port=127.0.0.1:{port})")));
    let dir = TempDir::new();
    let missing = dir.path("missing/sock");
    let err = Server::bind_sections(&[], &[unix_cfg(&missing, None)], settings()).err();
    assert_eq!(
        err,
        Some(format!(
            "Cannot open an HTTP server: socket.error reported errno.ENOENT (2) ([unix_http_server] file={})",
            missing.display()
        ))
    );
    // A failure after a first bind leaves no socket file behind.
    let err =
        Server::bind_sections(&[inet_cfg(run.inet[0].port(), None)], &[unix_cfg(&dir.path("sock"), None)], settings());
    assert!(err.is_err());
    let ok_then_fail = Server::bind_sections(
        &[inet_cfg(0, None)],
        &[unix_cfg(&dir.path("sock"), None), unix_cfg(&dir.path("missing/sock"), None)],
        settings(),
    );
    assert!(ok_then_fail.is_err());
    assert!(!dir.path("sock").exists());
}

#[test]
fn a_reload_keeps_unchanged_listeners_with_their_connections_and_rebinds_changed_ones() {
    let dir = TempDir::new();
    let sock = dir.path("sock");
    let run = start(&[inet_cfg(0, None)], &[unix_cfg(&sock, None)], echo_loop(vec![]));
    let port = run.inet[0].port();
    let mut kept = Client::unix(&sock);
    assert_eq!(exchange(&mut kept, &rpc_request("<a/>", "")).body, b"<echo><a/></echo>");
    let mut tcp = Client::tcp(run.inet[0]);
    assert_eq!(exchange(&mut tcp, &rpc_request("<a/>", "")).body, b"<echo><a/></echo>");
    // The unix socket is unchanged, the inet one moves to another port.
    let other = std::net::TcpListener::bind("127.0.0.1:0").expect("port").local_addr().expect("addr").port();
    run.reload(&[inet_cfg(other, None)], &[unix_cfg(&sock, None)]);
    // The keep-alive connection on the unchanged listener still works after the reload...
    assert_eq!(exchange(&mut kept, &rpc_request("<b/>", "")).body, b"<echo><b/></echo>");
    // ... the one on the changed listener was closed with it, and the new port serves.
    let mut b = [0u8; 1];
    assert!(matches!(tcp.read(&mut b), Ok(0) | Err(_)), "the old port's connection was kept");
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err(), "the old port still listens");
    let mut fresh = Client::tcp(SocketAddr::from(([127, 0, 0, 1], other)));
    assert_eq!(exchange(&mut fresh, &rpc_request("<c/>", "")).body, b"<echo><c/></echo>");
    drop(run);
    assert!(!sock.exists(), "socket file unlinked at shutdown");
}

/// Reads one chunk of a chunked body.
fn read_chunk(conn: &mut Client) -> Vec<u8> {
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    while !line.ends_with(b"\r\n") {
        conn.read_exact(&mut b).expect("chunk size");
        line.push(b[0]);
    }
    let size = usize::from_str_radix(String::from_utf8_lossy(&line).trim(), 16).expect("hex");
    let mut data = vec![0; size + 2];
    conn.read_exact(&mut data).expect("chunk data");
    data.truncate(size);
    data
}

/// Reads chunks until `want` has been seen (chunk boundaries may differ from writes).
fn read_until(conn: &mut Client, want: &[u8]) -> Vec<u8> {
    let mut got = Vec::new();
    while !got.windows(want.len()).any(|w| w == want) {
        got.extend(read_chunk(conn));
    }
    got
}

fn append(path: &Path, data: &[u8]) {
    let mut f = std::fs::OpenOptions::new().append(true).create(true).open(path).expect("open");
    f.write_all(data).expect("append");
}

#[test]
fn logtail_streams_tail_appends_truncation_and_rotation() {
    let dir = TempDir::new();
    let log = dir.path("web.log");
    let initial: Vec<u8> = (0..2000u32).map(|i| b'a' + (i % 26) as u8).collect();
    std::fs::write(&log, &initial).expect("write");
    let logs = vec![(Some("grp:web/stderr"), log.clone())];
    let run = start(&[inet_cfg(0, None)], &[unix_cfg(&dir.path("sock"), None)], echo_loop(logs));
    for mut conn in [Client::tcp(run.inet[0]), Client::unix(&run.unix[0])] {
        std::fs::write(&log, &initial).expect("write");
        conn.write_all(b"GET /logtail/grp%3Aweb/stderr HTTP/1.1\r\nHost: x\r\n\r\n").expect("send");
        let head = read_head(&mut conn);
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(head.contains("\r\nTransfer-Encoding: chunked\r\n"), "{head}");
        assert!(head.contains("\r\nContent-Type: text/plain;charset=utf-8\r\n"), "{head}");
        assert!(head.contains("\r\nX-Accel-Buffering: no\r\n"), "{head}");
        assert!(head.contains("\r\nLast-Modified: "), "{head}");
        assert_eq!(read_chunk(&mut conn), &initial[2000 - 1024..]);

        append(&log, b"hello\n");
        assert_eq!(read_until(&mut conn, b"hello\n"), b"hello\n");

        std::fs::write(&log, b"").expect("truncate");
        append(&log, b"after truncation\n");
        let got = read_until(&mut conn, b"after truncation\n");
        assert!(got.starts_with(b"==> File truncated <==\n"), "{:?}", String::from_utf8_lossy(&got));

        append(&log, b"old tail\n");
        std::fs::rename(&log, dir.path("web.log.1")).expect("rotate");
        append(&log, b"new file\n");
        let got = read_until(&mut conn, b"new file\n");
        let got = String::from_utf8_lossy(&got);
        assert!(got.ends_with("new file\n"), "{got:?}");
    }
}

#[test]
fn mainlogtail_http10_is_a_plain_stream() {
    let dir = TempDir::new();
    let log = dir.path("main.log");
    std::fs::write(&log, b"line one\n").expect("write");
    let run = start(&[], &[unix_cfg(&dir.path("sock"), None)], echo_loop(vec![(None, log.clone())]));
    let mut conn = Client::unix(&run.unix[0]);
    conn.write_all(b"GET /mainlogtail HTTP/1.0\r\n\r\n").expect("send");
    let head = read_head(&mut conn);
    assert!(head.starts_with("HTTP/1.0 200 OK\r\n"), "{head}");
    assert!(!head.contains("Transfer-Encoding"), "{head}");
    assert!(!head.contains("X-Accel-Buffering"), "{head}");
    let mut buf = [0u8; 9];
    conn.read_exact(&mut buf).expect("initial");
    assert_eq!(&buf, b"line one\n");
    append(&log, b"two\n");
    let mut buf = [0u8; 4];
    conn.read_exact(&mut buf).expect("appended");
    assert_eq!(&buf, b"two\n");
}

#[test]
fn a_client_that_disconnects_from_an_idle_tail_ends_its_stream() {
    let dir = TempDir::new();
    let log = dir.path("idle.log");
    std::fs::write(&log, b"x\n").expect("write");
    let logs = vec![(Some("idle/stdout"), log.clone())];
    let run = start(&[inet_cfg(0, None)], &[unix_cfg(&dir.path("sock"), None)], echo_loop(logs));
    for mut conn in [Client::tcp(run.inet[0]), Client::unix(&run.unix[0])] {
        conn.write_all(b"GET /logtail/idle HTTP/1.1\r\n\r\n").expect("send");
        read_head(&mut conn);
        assert_eq!(read_chunk(&mut conn), b"x\n");
        wait_for("the tail to run", || run.tails.load(Ordering::SeqCst) == 1);
        drop(conn);
        // The file stays idle: only the connection tells the stream to end.
        wait_for("the tail to end", || run.tails.load(Ordering::SeqCst) == 0);
    }
}

#[test]
fn web_requests_reach_the_loop_and_static_files_do_not() {
    let run = start(&[inet_cfg(0, Some(("u", "p")))], &[], echo_loop(vec![]));
    let mut c = Client::tcp(run.inet[0]);
    let auth = "Authorization: Basic dTpw\r\n";
    let r = exchange(
        &mut c,
        &format!(
            "POST /index.html?a=1 HTTP/1.1\r\nHost: h\r\n{auth}Content-Type: application/x-www-form-urlencoded\r\n\
             X-Other: no\r\nContent-Length: 8\r\n\r\naction=x"
        ),
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("X-Web").as_deref(), Some("1"));
    assert_eq!(
        String::from_utf8_lossy(&r.body),
        "POST /index.html ?a=1 [(\"host\", \"h\"), (\"content-type\", \"application/x-www-form-urlencoded\")] action=x"
    );
    let r = exchange(&mut c, &format!("GET /static/minisv.css HTTP/1.1\r\n{auth}\r\n"));
    assert_eq!((r.status, r.header("Content-Type").as_deref()), (200, Some("text/css;charset=utf-8")));
    assert!(r.header("X-Web").is_none() && r.body.starts_with(b"/* minisv"));
    // Auth covers the pages and the static files.
    for path in ["/", "/static/minisv.js", "/metrics", "/api/v1/processes"] {
        let mut c = Client::tcp(run.inet[0]);
        let r = exchange(&mut c, &format!("GET {path} HTTP/1.1\r\n\r\n"));
        assert_eq!(r.status, 401, "{path}");
    }
    let mut c = Client::tcp(run.inet[0]);
    let big = crate::rpc::web::MAX_BODY + 1;
    let r = exchange(&mut c, &format!("POST / HTTP/1.1\r\n{auth}Content-Length: {big}\r\n\r\n{}", "a".repeat(big)));
    assert_eq!(r.status, 413);
}

fn settings() -> Settings {
    Settings { timeouts: Timeouts::default(), max_connections: MAX_CONNECTIONS, drop_log_every: DROP_LOG_EVERY }
}

#[test]
fn the_cap_keeps_the_newest_strangers_and_the_report_counts_the_rest() {
    // Every report at once: the loop may accept the ten over several wakeups (a loaded
    // machine), and the daemon's one line a minute would hold the rest back.
    let settings = Settings { timeouts: Timeouts::default(), max_connections: 4, drop_log_every: Duration::ZERO };
    let run = start_with(&[inet_cfg(0, None)], &[], echo_loop(vec![]), settings);
    let clients: Vec<TcpStream> = (0..10).map(|_| TcpStream::connect(run.inet[0]).expect("connect")).collect();
    wait_for("the cap to hold", || run.conns.load(Ordering::SeqCst) == 4);
    // The newest is one of those kept: it is served.
    let mut newest = Client::Tcp(clients.into_iter().last().expect("a client"));
    assert_eq!(exchange(&mut newest, &rpc_request("<n/>", "")).body, b"<echo><n/></echo>");
    // Reported as they are dropped: in one line, or in several when the loop accepted them
    // over more than one wakeup; 6 in all.
    wait_for("the report", || {
        let dropped: usize = run
            .logs
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| l.strip_prefix("dropped HTTP connections: ")?.split(' ').next()?.parse::<usize>().ok())
            .sum();
        dropped == 6
    });
    assert!(
        run.logs.lock().unwrap().iter().any(|l| l.contains(" over the limit of 4")),
        "{:?}",
        run.logs.lock().unwrap()
    );
}

#[test]
fn a_413_reaches_a_client_that_is_still_sending() {
    // 413 without reading the body, then Connection: close; the client is still sending. (The
    // connection lingers, dropping what still comes, so that no reset destroys the answer on a
    // real network; on loopback the answer arrives either way, so the lingering itself is
    // checked in conn's tests.)
    let run = start(&[inet_cfg(0, None)], &[], echo_loop(vec![]));
    for _ in 0..20 {
        let mut c = Client::tcp(run.inet[0]);
        let big = MAX_RPC_BODY + 1;
        let mut req = format!("POST /RPC2 HTTP/1.1\r\nContent-Length: {big}\r\n\r\n").into_bytes();
        req.extend(std::iter::repeat_n(b'x', 200_000));
        c.write_all(&req).expect("send");
        let r = read_response(&mut c);
        assert_eq!(r.status, 413);
        assert_eq!(r.header("Connection").as_deref(), Some("close"));
    }
}

#[test]
fn a_tail_of_a_fifo_is_refused_without_blocking_the_loop() {
    // Opening a FIFO for reading waits for a writer; on the loop's thread that would stop the
    // whole daemon (a log shipper's FIFO as stdout_logfile).
    let dir = TempDir::new();
    let fifo = dir.path("shipper.fifo");
    let c = std::ffi::CString::new(fifo.to_str().expect("utf-8 path")).expect("path");
    // SAFETY: mkfifo with a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
    let run = start(&[inet_cfg(0, None)], &[], echo_loop(vec![(Some("prog/stdout"), fifo.clone())]));
    let mut c = Client::tcp(run.inet[0]);
    let r = exchange(&mut c, "GET /logtail/prog HTTP/1.1\r\n\r\n");
    assert_eq!(r.status, 404);
    let r = exchange(&mut Client::tcp(run.inet[0]), "GET /ok.html HTTP/1.1\r\n\r\n");
    assert_eq!(r.status, 200);
}

#[test]
fn limits_from_the_environment_and_a_warning_for_each_unusable_value() {
    let vars = |pairs: &'static [(&'static str, &'static str)]| {
        move |name: &str| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string())
    };
    let (s, w) = Settings::from_vars(vars(&[]), 1024);
    assert_eq!((s.timeouts.request, s.max_connections), (Duration::from_secs(10), 256));
    assert!(w.is_empty());
    let (s, w) = Settings::from_vars(
        vars(&[("MINISV_HTTP_REQUEST_TIMEOUT", "0.5"), ("MINISV_HTTP_MAX_CONNECTIONS", "20000")]),
        1 << 20,
    );
    assert_eq!((s.timeouts.request, s.max_connections), (Duration::from_millis(500), 20000));
    assert!(w.is_empty());
    let (s, w) = Settings::from_vars(
        vars(&[("MINISV_HTTP_IDLE_TIMEOUT", "ten"), ("MINISV_HTTP_MAX_CONNECTIONS", "0")]),
        1 << 20,
    );
    assert_eq!((s.timeouts.idle, s.max_connections), (Duration::from_secs(1800), 1024));
    assert_eq!(
        w,
        vec![
            "MINISV_HTTP_IDLE_TIMEOUT=\"ten\" is not a number of seconds above 0; using 1800".to_string(),
            "MINISV_HTTP_MAX_CONNECTIONS=\"0\" is not a number above 0; using 1024".to_string(),
        ]
    );
}

/// Upgrade in place: a new server takes the old one's listening sockets (same socket file,
/// same port) instead of binding anew, and a client connected meanwhile is served by it.
#[test]
fn a_server_takes_over_the_listeners_of_an_old_one() {
    let dir = TempDir::new();
    let sock = dir.path("s.sock");
    let (old, _) = Server::bind_sections(&[inet_cfg(0, None)], &[unix_cfg(&sock, None)], settings()).expect("bind");
    let port = old.inet_addrs()[0].port();
    let fds: Vec<std::os::fd::OwnedFd> =
        old.listener_fds().into_iter().map(|fd| crate::daemon::upgrade::adopt(fd).expect("dup")).collect();
    // A client that connects during the switch waits in the backlog.
    let _early = UnixStream::connect(&sock).expect("connect before the takeover");
    // The old server goes as an exec would end it: its sockets are not closed, nor its file unlinked.
    std::mem::forget(old);
    let (new, _) = Server::bind_adopting_sections(&[inet_cfg(port, None)], &[unix_cfg(&sock, None)], settings(), fds)
        .expect("takes over, not EADDRINUSE");
    assert_eq!(new.inet_addrs()[0].port(), port);
    assert_eq!(new.unix_files(), vec![sock.clone()]);
    assert!(sock.exists());
}
