//! Real servers on temporary unix sockets and 127.0.0.1 ports, a fake event loop on a thread,
//! and a small raw HTTP client.

use super::*;
use crate::rpc::listen::ADDR_IN_USE;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::AtomicUsize;
use std::time::{Duration, Instant};

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

type Answer = dyn Fn(RequestKind, Sender<ServerReply>) + Send + Sync;

/// A served set of sockets with a fake loop that answers with `answer`.
struct Running {
    handle: Option<ServerHandle>,
    unix: Vec<PathBuf>,
    inet: Vec<SocketAddr>,
    _poll: mio::Poll,
}

fn start(inet: &[InetHttpServerConfig], unix: &[UnixHttpServerConfig], answer: Arc<Answer>) -> Running {
    let (bound, _logs) = bind_sections(inet, unix).expect("bind");
    let unix = bound.unix_files();
    let inet = bound.inet_addrs();
    let poll = mio::Poll::new().expect("poll");
    let waker = Arc::new(mio::Waker::new(poll.registry(), mio::Token(0)).expect("waker"));
    let (tx, rx) = mpsc::channel::<ServerRequest>();
    std::thread::spawn(move || {
        for rq in rx {
            answer(rq.kind, rq.reply);
        }
    });
    let handle = serve(bound, tx, waker);
    Running { handle: Some(handle), unix, inet, _poll: poll }
}

/// Answers XML-RPC with the body wrapped in `<echo>`, and log paths from a fixed map.
fn echo_loop(logs: Vec<(Option<&'static str>, PathBuf)>) -> Arc<Answer> {
    Arc::new(move |kind, reply| match kind {
        RequestKind::XmlRpc(body) => {
            let _ = reply.send(ServerReply::XmlRpc(format!("<echo>{}</echo>", String::from_utf8_lossy(&body))));
        }
        RequestKind::LogPath { namespec, channel } => {
            let found = logs
                .iter()
                .find(|(n, _)| n.map(str::to_string) == namespec.as_ref().map(|n| format!("{n}/{channel}")))
                .map(|(_, p)| p.clone());
            let _ = reply.send(ServerReply::LogPath(found));
        }
        RequestKind::Log { .. } => {}
        RequestKind::Web(req) => {
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
            let _ = reply.send(ServerReply::Web(r));
        }
    })
}

enum Conn {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl Conn {
    fn unix(path: &Path) -> Conn {
        let s = UnixStream::connect(path).expect("connect unix");
        s.set_read_timeout(Some(DEADLINE)).expect("timeout");
        Conn::Unix(s)
    }
    fn tcp(addr: SocketAddr) -> Conn {
        let s = TcpStream::connect(addr).expect("connect tcp");
        s.set_read_timeout(Some(DEADLINE)).expect("timeout");
        Conn::Tcp(s)
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Unix(s) => s.read(buf),
            Conn::Tcp(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Conn::Unix(s) => s.write(buf),
            Conn::Tcp(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

struct Response {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(": ")?;
            k.eq_ignore_ascii_case(name).then(|| v.to_string())
        })
    }
}

/// Reads the status line and headers (byte by byte, so nothing after them is consumed).
fn read_head(conn: &mut Conn) -> String {
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

fn read_response(conn: &mut Conn) -> Response {
    let head = read_head(conn);
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("status");
    let mut r = Response { status, head, body: Vec::new() };
    let len: usize = r.header("Content-Length").and_then(|v| v.parse().ok()).unwrap_or(0);
    r.body = vec![0; len];
    conn.read_exact(&mut r.body).expect("body");
    r
}

fn exchange(conn: &mut Conn, request: &str) -> Response {
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
fn routes_like_supervisor() {
    assert_eq!(route("/RPC2"), Route::Rpc);
    assert_eq!(route("/RPC2/anything"), Route::Rpc);
    assert_eq!(
        route("/logtail/grp%3Aproc/stderr"),
        Route::Logtail { namespec: "grp:proc".into(), channel: "stderr".into() }
    );
    assert_eq!(route("/logtail/grp:proc"), Route::Logtail { namespec: "grp:proc".into(), channel: "stdout".into() });
    assert_eq!(route("/logtail/web?x=1"), Route::Logtail { namespec: "web".into(), channel: "stdout".into() });
    assert_eq!(route("/logtail/a/b/c"), Route::Logtail { namespec: "a".into(), channel: "b/c".into() });
    assert_eq!(route("/logtail"), Route::NotFound);
    assert_eq!(route("/mainlogtail"), Route::MainLogtail);
    assert_eq!(route("/ok.html"), Route::Ok);
    assert_eq!(route("/ok.html?x"), Route::Ok);
    assert_eq!(route("/"), Route::Web);
    assert_eq!(route("/index.html?action=refresh"), Route::Web);
    assert_eq!(route("/api/v1/processes/g%3Ap/stop"), Route::Web);
    assert_eq!(route("/metrics"), Route::Web);
    assert_eq!(route("/static/minisv.css"), Route::Static);
    assert_eq!(route("/static/other.css"), Route::NotFound);
    assert_eq!(route("/status.html"), Route::NotFound);
    assert_eq!(unquote("%41%zz%4"), "A%zz%4");
    assert_eq!(unquote("%e2%82%ac"), "€");
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
    for mut conn in [Conn::unix(&run.unix[0]), Conn::tcp(run.inet[0])] {
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
    let mut c = Conn::unix(&run.unix[0]);
    let r = exchange(&mut c, "GET /ok.html HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(r.status, 401);
    assert_eq!(r.header("WWW-Authenticate").as_deref(), Some("Basic realm=\"default\""));
    assert_eq!(r.header("Connection").as_deref(), Some("close"));
    let mut c = Conn::unix(&run.unix[0]);
    let r = exchange(&mut c, &rpc_request("<a/>", "Authorization: Basic Ym9iOnNlY3JldA==\r\n"));
    assert_eq!((r.status, r.body), (200, b"<echo><a/></echo>".to_vec()));
    let r = exchange(&mut c, "GET /ok.html HTTP/1.1\r\nAuthorization: Basic YQ\r\n\r\n");
    assert_eq!(r.status, 400);

    // {SHA}: the password works, the hash itself does not.
    let mut c = Conn::tcp(run.inet[0]);
    let r = exchange(&mut c, "GET /ok.html HTTP/1.1\r\nAuthorization: Basic Ym9iOnB3\r\n\r\n");
    assert_eq!((r.status, r.body), (200, b"OK".to_vec()));
    let hash = "Ym9iOjFhOTFkNjJmN2NhNjczOTk2MjVhNDM2OGE2YWI1ZDRhM2JhYTYwNzM=";
    let r = exchange(&mut c, &format!("GET /ok.html HTTP/1.1\r\nAuthorization: Basic {hash}\r\n\r\n"));
    assert_eq!(r.status, 401);
}

#[test]
fn transport_errors() {
    let run = start(&[inet_cfg(0, None)], &[], echo_loop(vec![]));
    let mut c = Conn::tcp(run.inet[0]);
    let r = exchange(&mut c, "GET /RPC2 HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(r.status, 400);
    let r = exchange(&mut c, "POST /RPC2 HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(r.status, 411);
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
    let mut c = Conn::tcp(run.inet[0]);
    let big = MAX_RPC_BODY + 1;
    let r = exchange(&mut c, &format!("POST /RPC2 HTTP/1.1\r\nContent-Length: {big}\r\n\r\n"));
    assert_eq!(r.status, 413);
}

#[test]
fn dropped_reply_is_a_500() {
    let run = start(&[inet_cfg(0, None)], &[], Arc::new(|_, reply| drop(reply)));
    let r = exchange(&mut Conn::tcp(run.inet[0]), &rpc_request("<a/>", ""));
    assert_eq!(r.status, 500);
}

#[test]
fn deferred_reply_does_not_block_another_client() {
    let answer: Arc<Answer> = Arc::new(|kind, reply| {
        if let RequestKind::XmlRpc(body) = kind {
            if body == b"slow" {
                std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_millis(200));
                    let _ = reply.send(ServerReply::XmlRpc("slow done".into()));
                });
            } else {
                let _ = reply.send(ServerReply::XmlRpc("fast done".into()));
            }
        }
    });
    let run = start(&[inet_cfg(0, None)], &[], answer);
    let mut slow = Conn::tcp(run.inet[0]);
    slow.write_all(rpc_request("slow", "").as_bytes()).expect("send");
    let t0 = Instant::now();
    let r = exchange(&mut Conn::tcp(run.inet[0]), &rpc_request("fast", ""));
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
    let r = exchange(&mut Conn::unix(&sock), "GET /ok.html HTTP/1.1\r\n\r\n");
    assert_eq!(r.status, 200);

    // A live one (our own server) is refused with Supervisor's message, and left alone.
    let err = bind_sections(&[], &[unix_cfg(&sock, None)]).err();
    assert_eq!(err.as_deref(), Some(ADDR_IN_USE));
    assert_eq!(
        ADDR_IN_USE,
        "Another program is already listening on a port that one of our HTTP servers is \
         configured to use.  Shut this program down first before starting supervisord."
    );
    let r = exchange(&mut Conn::unix(&sock), "GET /ok.html HTTP/1.1\r\n\r\n");
    assert_eq!(r.status, 200);
}

#[test]
fn port_in_use_is_refused_and_bind_errors_are_usage_errors() {
    let run = start(&[inet_cfg(0, None)], &[], echo_loop(vec![]));
    let err = bind_sections(&[inet_cfg(run.inet[0].port(), None)], &[]).err();
    assert_eq!(err.as_deref(), Some(ADDR_IN_USE));
    let dir = TempDir::new();
    let err = bind_sections(&[], &[unix_cfg(&dir.path("missing/sock"), None)]).err();
    assert_eq!(err.as_deref(), Some("Cannot open an HTTP server: socket.error reported errno.ENOENT (2)"));
    // A failure after a first bind leaves no socket file behind.
    let err = bind_sections(&[inet_cfg(run.inet[0].port(), None)], &[unix_cfg(&dir.path("sock"), None)]);
    assert!(err.is_err());
    let ok_then_fail = bind_sections(
        &[inet_cfg(0, None)],
        &[unix_cfg(&dir.path("sock"), None), unix_cfg(&dir.path("missing/sock"), None)],
    );
    assert!(ok_then_fail.is_err());
    assert!(!dir.path("sock").exists());
}

#[test]
fn reload_binds_the_same_file_and_port_again() {
    let dir = TempDir::new();
    let sock = dir.path("sock");
    let mut run = start(&[inet_cfg(0, None)], &[unix_cfg(&sock, None)], echo_loop(vec![]));
    let port = run.inet[0].port();
    if let Some(h) = run.handle.take() {
        h.shutdown();
    }
    assert!(!sock.exists());
    let run2 = start(&[inet_cfg(port, None)], &[unix_cfg(&sock, None)], echo_loop(vec![]));
    for mut conn in [Conn::unix(&sock), Conn::tcp(run2.inet[0])] {
        let r = exchange(&mut conn, &rpc_request("<b/>", ""));
        assert_eq!(r.body, b"<echo><b/></echo>");
    }
}

#[test]
fn health_reports_a_dead_accept_thread() {
    let run = start(&[inet_cfg(0, None)], &[], echo_loop(vec![]));
    let handle = run.handle.as_ref().expect("handle");
    assert_eq!(handle.health()[0].accept_error, None);
    // What EMFILE does to tiny_http: accept() fails and its accept thread ends.
    let fd = handle.servers[0].listener.as_ref().expect("listener fd").as_raw_fd();
    let _ = crate::syscall!(shutdown(fd, libc::SHUT_RDWR));
    wait_for("accept error", || handle.health()[0].accept_error.is_some());
    assert_eq!(handle.health()[0].section, "inet_http_server");
}

/// Reads one chunk of a chunked body.
fn read_chunk(conn: &mut Conn) -> Vec<u8> {
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
fn read_until(conn: &mut Conn, want: &[u8]) -> Vec<u8> {
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
    for mut conn in [Conn::tcp(run.inet[0]), Conn::unix(&run.unix[0])] {
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
    let mut conn = Conn::unix(&run.unix[0]);
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
fn a_client_that_disconnects_from_an_idle_tail_frees_its_thread() {
    let dir = TempDir::new();
    let log = dir.path("idle.log");
    std::fs::write(&log, b"x\n").expect("write");
    let logs = vec![(Some("idle/stdout"), log.clone())];
    let run = start(&[inet_cfg(0, None)], &[unix_cfg(&dir.path("sock"), None)], echo_loop(logs));
    let handle = run.handle.as_ref().expect("handle");
    for mut conn in [Conn::tcp(run.inet[0]), Conn::unix(&run.unix[0])] {
        conn.write_all(b"GET /logtail/idle HTTP/1.1\r\n\r\n").expect("send");
        read_head(&mut conn);
        assert_eq!(read_chunk(&mut conn), b"x\n");
        wait_for("the tail to run", || handle.active_tails() == 1);
        drop(conn);
        // The file stays idle: only the connection tells the stream to end.
        wait_for("the tail to end", || handle.active_tails() == 0);
    }
}

/// The real `supervisorctl` 4.3 against this server and a fake loop, once the integration
/// tests have installed it into `target/pyvenv` (they drive it against the whole daemon too).
#[test]
fn python_supervisorctl_talks_to_this_server() {
    let ctl = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/target/pyvenv/bin/supervisorctl"));
    if !ctl.exists() {
        eprintln!("skipped: no supervisorctl at {} yet (the integration tests install it)", ctl.display());
        return;
    }
    let answer: Arc<Answer> = Arc::new(|kind, reply| {
        if let RequestKind::XmlRpc(body) = kind {
            let body = String::from_utf8_lossy(&body);
            let value = if body.contains("supervisor.getPID") {
                "<int>4242</int>"
            } else if body.contains("supervisor.getVersion") {
                "<string>3.0</string>"
            } else {
                "<string>?</string>"
            };
            let _ = reply.send(ServerReply::XmlRpc(format!(
                "<?xml version='1.0'?>\n<methodResponse>\n<params>\n<param>\n\
                 <value>{value}</value>\n</param>\n</params>\n</methodResponse>\n"
            )));
        }
    });
    let dir = TempDir::new();
    let sock = dir.path("sock");
    let run = start(&[], &[unix_cfg(&sock, Some(("bob", "secret")))], answer);
    let conf = dir.path("ctl.conf");
    std::fs::write(&conf, format!("[supervisorctl]\nserverurl=unix://{}\n", sock.display())).expect("write conf");
    let conf = conf.to_string_lossy().into_owned();
    let out = std::process::Command::new(ctl)
        .args(["-c", &conf, "-u", "bob", "-p", "secret", "pid"])
        .output()
        .expect("run supervisorctl");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "4242\n", "{out:?}");
    assert!(out.status.success(), "{out:?}");
    let out = std::process::Command::new(ctl)
        .args(["-c", &conf, "-u", "bob", "-p", "wrong", "pid"])
        .output()
        .expect("run supervisorctl");
    assert!(String::from_utf8_lossy(&out.stdout).contains("Server requires authentication"), "{out:?}");
    drop(run);
}

#[test]
fn web_requests_reach_the_loop_and_static_files_do_not() {
    let run = start(&[inet_cfg(0, Some(("u", "p")))], &[], echo_loop(vec![]));
    let mut c = Conn::tcp(run.inet[0]);
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
        let mut c = Conn::tcp(run.inet[0]);
        let r = exchange(&mut c, &format!("GET {path} HTTP/1.1\r\n\r\n"));
        assert_eq!(r.status, 401, "{path}");
    }
    let mut c = Conn::tcp(run.inet[0]);
    let big = crate::rpc::web::MAX_BODY + 1;
    let r = exchange(&mut c, &format!("POST / HTTP/1.1\r\n{auth}Content-Length: {big}\r\n\r\n{}", "a".repeat(big)));
    assert_eq!(r.status, 413);
}
