//! Slow, stuck and abusive HTTP clients (issues 7 and 19): every limit is in force before
//! authentication, nothing is left behind, and the daemon keeps exactly one thread.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use minisv::rpc::xmlrpc::Value;

use crate::harness::*;
use crate::soak::{fd_count, rss_kb, thread_count};

/// A plain HTTP/1.1 request to the inet listener on loopback: (status, head, body).
pub fn http_tcp(port: u16, method: &str, path: &str, body: &[u8]) -> std::io::Result<(u16, String, Vec<u8>)> {
    http_on(TcpStream::connect(("127.0.0.1", port))?, method, path, body, None)
}

/// A daemon with an inet listener on loopback and a program whose pid must not change,
/// started with `env` (the HTTP limits) in its environment; `supervisord` is added to its
/// `[supervisord]` section.
fn daemon_env(tag: &str, supervisord: &str, env: &[(&str, &str)]) -> (Daemon, u16, u32) {
    let port = free_port();
    let dir = TempDir::new(tag);
    let base = base_config(dir.path()).replace("[supervisord]\n", &format!("[supervisord]\n{supervisord}"));
    let conf = dir.write(
        "sv.conf",
        &format!(
            "{base}[inet_http_server]\nport=127.0.0.1:{port}\n\n[program:keeper]\ncommand=sleep 1000\nstartsecs=0\n"
        ),
    );
    let d = Daemon::start_env(dir, conf, &[], env);
    let pid = wait_for(10.0, "keeper", || d.spawned_pid("keeper"));
    (d, port, pid)
}

fn daemon(tag: &str) -> (Daemon, u16, u32) {
    daemon_env(tag, "", &[])
}

/// Writes `byte` in 64 KiB chunks until `limit` bytes are sent, 30 s pass, or the server ends
/// the connection: (whether it was ended, bytes sent). The stream needs a write timeout.
fn flood(s: &mut TcpStream, byte: u8, limit: usize) -> (bool, usize) {
    let chunk = vec![byte; 64 * 1024];
    let (start, mut sent) = (Instant::now(), 0usize);
    loop {
        if start.elapsed() > Duration::from_secs(30) || sent >= limit {
            return (false, sent);
        }
        match s.write(&chunk) {
            Ok(n) => sent += n,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => return (true, sent),
        }
    }
}

/// The unix socket answers getState within 3 s, the program kept its pid, and the daemon has
/// one thread.
fn still_serving(d: &Daemon, keeper: u32) {
    let t = Instant::now();
    let state = d.rpc("supervisor.getState", &[]).expect("getState");
    assert!(t.elapsed() < Duration::from_secs(3), "getState took {:?}", t.elapsed());
    assert_eq!(state.str_of("statename"), "RUNNING");
    assert!(pid_alive(keeper));
    assert_eq!(d.spawned_pid("keeper"), Some(keeper), "the program was not restarted");
    let info = d.rpc("supervisor.getProcessInfo", &[Value::from("keeper")]).expect("info");
    assert_eq!(info.int_of("pid"), i64::from(keeper));
    assert_eq!(thread_count(d.pid), 1, "the daemon has one thread");
}

/// Whether the server has ended this connection (EOF or reset) within `secs`; the socket
/// must have a short read timeout.
fn ended<S: Read>(s: &mut S, secs: f64) -> bool {
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let mut b = [0u8; 4096];
    while Instant::now() < deadline {
        match s.read(&mut b) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => continue,
            Err(_) => return true,
        }
    }
    false
}

/// The daemon's fds come back to `fds0` (give or take the log held open).
fn fds_come_back(d: &Daemon, fds0: usize) -> usize {
    wait_for(10.0, "the daemon's fds to come back", || {
        let n = fd_count(d.pid);
        (n <= fds0 + 1).then_some(n)
    })
}

const CAP: usize = 32;
const CLIENTS: usize = 100;

#[test]
fn connections_over_the_cap_end_the_oldest_idle_stranger_first() {
    let cap = CAP.to_string();
    let (d, port, keeper) = daemon_env("cap", "", &[("MINISV_HTTP_MAX_CONNECTIONS", &cap)]);
    let fds0 = fd_count(d.pid);
    // An authenticated keep-alive client, connected before the crowd.
    let mut friend = UnixStream::connect(d.path("sv.sock")).expect("connect");
    let call = minisv::rpc::xmlrpc::encode_call("supervisor.getState", &[]);
    let request = format!("POST /RPC2 HTTP/1.1\r\nContent-Length: {}\r\n\r\n{call}", call.len());
    let ask = |s: &mut UnixStream| -> String {
        s.write_all(request.as_bytes()).expect("send");
        s.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
        let mut got = Vec::new();
        let mut b = [0u8; 4096];
        while !got.windows(17).any(|w| w == b"</methodResponse>") {
            let n = s.read(&mut b).expect("answer");
            assert!(n > 0, "closed: {}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&b[..n]);
        }
        String::from_utf8_lossy(&got).into_owned()
    };
    assert!(ask(&mut friend).starts_with("HTTP/1.1 200 OK"));
    let mut tcp: Vec<TcpStream> =
        (0..CLIENTS).map(|_| TcpStream::connect(("127.0.0.1", port)).expect("connect")).collect();
    let mut unix: Vec<UnixStream> =
        (0..CLIENTS).map(|_| UnixStream::connect(d.path("sv.sock")).expect("connect")).collect();
    // Served while the crowd is there (this one too is a stranger until it asks).
    still_serving(&d, keeper);
    for s in &tcp {
        s.set_read_timeout(Some(Duration::from_millis(1))).expect("timeout");
    }
    for s in &unix {
        s.set_read_timeout(Some(Duration::from_millis(1))).expect("timeout");
    }
    let (mut tcp_done, mut unix_done) = (vec![false; CLIENTS], vec![false; CLIENTS]);
    // Per listener, the cap holds the newest strangers (and, on the unix socket, the friend
    // and the connection still_serving used, if it was not ended in turn).
    wait_for(10.0, "the connections over the cap to end", || {
        for (s, done) in tcp.iter_mut().zip(tcp_done.iter_mut()) {
            *done = *done || ended(s, 0.0005);
        }
        for (s, done) in unix.iter_mut().zip(unix_done.iter_mut()) {
            *done = *done || ended(s, 0.0005);
        }
        let n = (tcp_done.iter().filter(|d| **d).count(), unix_done.iter().filter(|d| **d).count());
        (n.0 >= CLIENTS - CAP && n.1 >= CLIENTS - CAP - 1).then_some(n)
    });
    // The oldest were ended, the newest kept.
    assert!(tcp_done[0] && unix_done[0], "the oldest strangers were kept");
    assert!(!tcp_done[CLIENTS - 1] && !unix_done[CLIENTS - 1], "the newest strangers were ended");
    // The friend made a request before: it is not ended for strangers, and still answered.
    assert!(ask(&mut friend).starts_with("HTTP/1.1 200 OK"));
    assert_eq!(thread_count(d.pid), 1);
    d.wait_log("dropped HTTP connections: ", 5.0);
    drop((tcp, unix, friend));
    let fds1 = fds_come_back(&d, fds0);
    eprintln!("abuse: {CLIENTS} idle tcp + {CLIENTS} idle unix over a cap of {CAP}: fds {fds0} -> {fds1}");
    still_serving(&d, keeper);
}

#[test]
fn a_header_sent_forever_gets_431_at_16_kib_and_memory_stays_bounded() {
    let (d, port, keeper) = daemon("header");
    let rss0 = rss_kb(d.pid);
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_write_timeout(Some(Duration::from_secs(2))).expect("timeout");
    s.write_all(b"GET / HTTP/1.1\r\nX-Forever: ").expect("write");
    let (start, (cut, sent)) = (Instant::now(), flood(&mut s, b'a', 256 << 20));
    let rss1 = rss_kb(d.pid);
    eprintln!(
        "abuse: header flood: cut {cut} after {} KB in {:?}; RSS {rss0} -> {rss1} kB",
        sent >> 10,
        start.elapsed()
    );
    assert!(cut, "the server never cut a header of {} MB", sent >> 20);
    // What the kernel's buffers took before the close was seen (a few MB at most on loopback).
    assert!(sent < 32 << 20, "{sent} bytes were taken");
    assert!(rss1 <= rss0 + 1024, "RSS {rss0} -> {rss1} kB");
    // The answer, when the reset did not throw it away.
    let mut u = UnixStream::connect(d.path("sv.sock")).expect("connect");
    let mut head = b"GET / HTTP/1.1\r\nX: ".to_vec();
    head.resize(17 * 1024, b'a');
    let _ = u.write_all(&head);
    u.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    let mut answer = [0u8; 12];
    let _ = u.read_exact(&mut answer);
    assert_eq!(&answer, b"HTTP/1.1 431");
    still_serving(&d, keeper);
}

#[test]
fn a_100_mb_body_gets_413_without_being_read() {
    let (d, port, keeper) = daemon("body");
    let rss0 = rss_kb(d.pid);
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_write_timeout(Some(Duration::from_secs(2))).expect("timeout");
    let len = 100usize << 20;
    let head = format!("POST /RPC2 HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml\r\nContent-Length: {len}\r\n\r\n");
    s.write_all(head.as_bytes()).expect("write");
    let (start, (cut, sent)) = (Instant::now(), flood(&mut s, b'<', len));
    let rss1 = rss_kb(d.pid);
    eprintln!(
        "abuse: 100 MB body: cut {cut} after {} KB in {:?}; RSS {rss0} -> {rss1} kB",
        sent >> 10,
        start.elapsed()
    );
    assert!(cut && sent < 32 << 20, "the body was read: {sent} bytes taken");
    assert!(rss1 <= rss0 + 1024, "RSS {rss0} -> {rss1} kB");
    still_serving(&d, keeper);
}

/// Whatever length a request declares, it is answered at once and the connection closed
/// without a byte of the body read: nothing is left behind (tiny_http 0.12 kept a thread and
/// two fds for each request declaring more than it could allocate).
#[test]
fn any_declared_body_over_the_limit_is_answered_at_once_and_leaves_nothing_behind() {
    let (d, port, keeper) = daemon("declared");
    let (threads0, fds0) = (thread_count(d.pid), fd_count(d.pid));
    assert_eq!(threads0, 1);
    let lengths = [
        ("104857600", 413),
        ("1000000000", 413),
        ("9000000000000000000", 413),
        ("18446744073709551615", 413),
        ("123456789012345678901234567890", 413),
        ("12x", 400),
        ("-5", 400),
    ];
    let mut held = Vec::new();
    for i in 0..200 {
        let (len, want) = lengths[i % lengths.len()];
        let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
        let head = format!("POST /RPC2 HTTP/1.1\r\nHost: x\r\nContent-Length: {len}\r\n\r\nsome bytes");
        s.write_all(head.as_bytes()).expect("write");
        let mut answer = [0u8; 12];
        s.read_exact(&mut answer).expect("an answer");
        assert_eq!(String::from_utf8_lossy(&answer), format!("HTTP/1.1 {want}"), "request {i}: {len}");
        assert!(ended(&mut s, 5.0), "request {i}: the connection stayed open");
        // The clients keep their ends: the server's are closed all the same.
        held.push(s);
    }
    assert_eq!(thread_count(d.pid), 1);
    let fds1 = fds_come_back(&d, fds0);
    eprintln!("abuse: 200 declared bodies: threads {threads0} -> 1, fds {fds0} -> {fds1}");
    still_serving(&d, keeper);
}

#[test]
fn garbage_bytes_get_the_connection_closed() {
    let (d, port, keeper) = daemon("garbage");
    let rss0 = rss_kb(d.pid);
    // A fixed pseudo-random byte stream (xorshift), 1 MB, with the odd CRLF in it.
    let mut x: u32 = 0x9e37_79b9;
    let garbage: Vec<u8> = (0..1 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect();
    for sock in ["tcp", "unix"] {
        let ended_ok = if sock == "tcp" {
            let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
            s.set_read_timeout(Some(Duration::from_millis(50))).expect("timeout");
            let _ = s.write_all(&garbage);
            ended(&mut s, 20.0)
        } else {
            let mut s = UnixStream::connect(d.path("sv.sock")).expect("connect");
            s.set_read_timeout(Some(Duration::from_millis(50))).expect("timeout");
            let _ = s.write_all(&garbage);
            ended(&mut s, 20.0)
        };
        assert!(ended_ok, "{sock}: the server kept a connection that sent garbage");
    }
    let rss1 = rss_kb(d.pid);
    eprintln!("abuse: garbage: RSS {rss0} -> {rss1} kB");
    assert!(rss1 <= rss0 + 1024, "RSS {rss0} -> {rss1} kB");
    still_serving(&d, keeper);
}

/// A connection that does not complete a request in time is closed, on both listeners; one
/// byte at a time does not keep it open.
#[test]
fn a_client_that_does_not_complete_a_request_in_time_is_dropped() {
    let (d, port, keeper) = daemon_env("silent", "", &[("MINISV_HTTP_REQUEST_TIMEOUT", "1")]);
    let fds0 = fd_count(d.pid);
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let mut u = UnixStream::connect(d.path("sv.sock")).expect("connect");
    let mut slow = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_millis(50))).expect("timeout");
    u.set_read_timeout(Some(Duration::from_millis(50))).expect("timeout");
    slow.set_read_timeout(Some(Duration::from_millis(50))).expect("timeout");
    let t = Instant::now();
    // A byte every 100 ms: a head that would take minutes.
    let mut slow_ended = false;
    for b in b"GET / HTTP/1.1\r\nX-Slow: ".iter().cycle().take(100) {
        if slow.write_all(&[*b]).is_err() || ended(&mut slow, 0.1) {
            slow_ended = true;
            break;
        }
    }
    assert!(slow_ended, "a head sent a byte at a time kept its connection for {:?}", t.elapsed());
    assert!(ended(&mut s, 5.0), "tcp client still connected after {:?}", t.elapsed());
    assert!(ended(&mut u, 5.0), "unix client still connected after {:?}", t.elapsed());
    let elapsed = t.elapsed();
    eprintln!("abuse: silent clients dropped after {elapsed:?}");
    assert!(elapsed >= Duration::from_millis(900), "dropped before the timeout: {elapsed:?}");
    still_serving(&d, keeper);
    d.wait_log("that did not complete a request in time", 5.0);
    fds_come_back(&d, fds0);
}

/// 10,000 idle connections (within the fd limit, and the cap raised to hold them): memory
/// per connection stays small and an authenticated call made meanwhile answers at once.
#[test]
fn ten_thousand_idle_connections_cost_little_and_a_call_still_answers_at_once() {
    const N: usize = 10_000;
    // This process needs an fd per client too.
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit with a valid pointer; raising the soft limit to the hard one.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
    }
    assert!(lim.rlim_cur as usize > N + 2000, "the fd limit {} is too low for this test", lim.rlim_cur);
    let minfds = format!("minfds={}\n", N + 1000);
    let cap = (2 * N).to_string();
    let (d, port, keeper) =
        daemon_env("tenk", &minfds, &[("MINISV_HTTP_MAX_CONNECTIONS", &cap), ("MINISV_HTTP_REQUEST_TIMEOUT", "120")]);
    let (rss0, fds0) = (rss_kb(d.pid), fd_count(d.pid));
    let limit = crate::harness::proc_limit(d.pid, "Max open files");
    if limit <= (N + 100) as u64 {
        panic!("the daemon's fd limit {limit} is too low for {N} connections (minfds)");
    }
    let mut clients = Vec::with_capacity(N);
    for i in 0..N {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap_or_else(|e| panic!("connection {i}: {e}"));
        // Half of them have sent part of a head.
        if i % 2 == 0 {
            let _ = (&s).write_all(b"POST /RPC2 HTTP/1.1\r\nHost: x\r\n");
        }
        clients.push(s);
    }
    // fds0 may still count the connection of the harness's readiness check (getState), which
    // the daemon closes just after answering: one fd of slack.
    wait_for(30.0, "the daemon to accept them all", || (fd_count(d.pid) + 1 >= fds0 + N).then_some(()));
    let rss1 = rss_kb(d.pid);
    let t = Instant::now();
    let state = d.rpc("supervisor.getState", &[]).expect("getState");
    let took = t.elapsed();
    assert_eq!(state.str_of("statename"), "RUNNING");
    let per_conn = (rss1.saturating_sub(rss0) * 1024) / N as u64;
    eprintln!(
        "abuse: {N} idle connections: RSS {rss0} -> {rss1} kB ({per_conn} bytes each), getState in {took:?}, \
         threads {}",
        thread_count(d.pid)
    );
    assert!(took < Duration::from_millis(500), "getState took {took:?} among {N} connections");
    assert!(per_conn <= 2048, "{per_conn} bytes of RSS per idle connection");
    assert_eq!(thread_count(d.pid), 1);
    drop(clients);
    fds_come_back(&d, fds0);
    still_serving(&d, keeper);
}
