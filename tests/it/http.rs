//! The control plane inside the event loop (issue 19): streams that last as long as their
//! client reads, HTTP/1.0 and 1.1 as clients speak them, answers while the daemon restarts,
//! and one thread at every moment.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use minisv::rpc::xmlrpc::{self, Value};

use crate::harness::*;
use crate::pyenv::python_supervisor;
use crate::soak::{fd_count, rss_kb, thread_count};

/// A program that prints `line<N>` every 100 ms, with a log that rotates every 2 KB.
const COUNTER: &str = "[program:counter]\ncommand=sh -c 'i=0; while :; do i=$((i+1)); echo line$i; sleep 0.1; done'\n\
                       startsecs=0\nstdout_logfile=%(here)s/counter.log\nstdout_logfile_maxbytes=2KB\nstdout_logfile_backups=3\n";

/// Every timeout of the server made short: a stream must outlive them all.
const SHORT: &[(&str, &str)] = &[("MINISV_HTTP_REQUEST_TIMEOUT", "0.3"), ("MINISV_HTTP_IDLE_TIMEOUT", "0.3")];

fn start(tag: &str, programs: &str, env: &[(&str, &str)]) -> Daemon {
    let dir = TempDir::new(tag);
    let conf = dir.write("sv.conf", &format!("{}{programs}", base_config(dir.path())));
    Daemon::start_env(dir, conf, &[], env)
}

/// The highest `line<N>` in `text`.
fn last_line(text: &str) -> u64 {
    text.lines().filter_map(|l| l.trim().strip_prefix("line")?.parse().ok()).max().unwrap_or(0)
}

/// The counter's own count, from its log.
fn counted(d: &Daemon) -> u64 {
    last_line(&read_lossy(&d.path("counter.log")))
}

/// Reads a child's stdout on a thread, into a shared string.
pub(crate) fn collect(
    mut child: std::process::Child,
) -> (std::process::Child, std::sync::Arc<std::sync::Mutex<String>>) {
    let text = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let out = child.stdout.take().expect("stdout");
    let t = text.clone();
    std::thread::spawn(move || {
        let mut r = BufReader::new(out);
        let mut line = String::new();
        while r.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
            t.lock().unwrap().push_str(&line);
            line.clear();
        }
    });
    (child, text)
}

/// `tail -f` through every client streams past the server's request and idle timeouts, and
/// across rotations of the log, without a gap.
#[test]
fn tail_f_streams_for_as_long_as_the_client_reads_through_every_client() {
    let d = start("tailf", COUNTER, SHORT);
    wait_for(10.0, "the counter", || (counted(&d) >= 3).then_some(()));
    let sockets0 = sockets(d.pid);
    let conf = d.conf.display().to_string();
    let spawn = |cmd: &mut Command| collect(cmd.stdout(Stdio::piped()).stderr(Stdio::null()).spawn().expect("spawn"));
    let (mut ours, ours_text) = spawn(Command::new(BIN).args(["ctl", "-c", &conf, "tail", "-f", "counter"]));
    let (mut py, py_text) =
        spawn(Command::new(python_supervisor().join("supervisorctl")).args(["-c", &conf, "tail", "-f", "counter"]));
    let (mut curl, curl_text) = spawn(Command::new("curl").args([
        "-sN",
        "--unix-socket",
        &d.path("sv.sock").display().to_string(),
        "http://localhost/logtail/counter",
    ]));
    let (mut main, main_text) = spawn(Command::new("curl").args([
        "-sN",
        "--unix-socket",
        &d.path("sv.sock").display().to_string(),
        "http://localhost/mainlogtail",
    ]));
    // Well past the timeouts (0.3 s) and several rotations (a 2 KB log holds ~250 lines).
    let start = Instant::now();
    let target = counted(&d) + 40;
    wait_for(30.0, "the counter to go on", || (counted(&d) >= target).then_some(()));
    let t = start.elapsed();
    for (name, text) in [("minisv ctl", &ours_text), ("supervisorctl", &py_text), ("curl /logtail", &curl_text)] {
        wait_for(10.0, &format!("{name} to see line{target}"), || {
            (last_line(&text.lock().unwrap()) >= target).then_some(())
        });
    }
    // The curl stream has every line from its first whole one on, in order (rotation followed).
    let got: Vec<u64> =
        curl_text.lock().unwrap().lines().skip(1).filter_map(|l| l.strip_prefix("line")?.parse().ok()).collect();
    assert!(got.len() > 30, "{got:?}");
    for w in got.windows(2) {
        assert_eq!(w[1], w[0] + 1, "a gap or a repeat in the stream: {got:?}");
    }
    // The main log's stream is alive too: it shows a line written now.
    d.signal(libc::SIGUSR2);
    wait_for(10.0, "the main log's stream to show a new line", || {
        main_text.lock().unwrap().contains("received SIGUSR2 indicating log reopen request").then_some(())
    });
    for (name, child) in
        [("minisv ctl", &mut ours), ("supervisorctl", &mut py), ("curl", &mut curl), ("curl main", &mut main)]
    {
        assert!(child.try_wait().expect("wait").is_none(), "{name} ended by itself after {t:?}");
    }
    eprintln!("http: four streams alive after {t:?} with 0.3 s timeouts; {} lines in order", got.len());
    assert_eq!(thread_count(d.pid), 1);
    for child in [&mut ours, &mut py, &mut curl, &mut main] {
        kill(child.id(), libc::SIGINT);
        let _ = wait_for(10.0, "a client to end", || child.try_wait().ok().flatten());
    }
    // Their connections are gone with them.
    wait_for(10.0, "the streams' connections to close", || (sockets(d.pid) == sockets0).then_some(()));
}

/// How many sockets the daemon holds.
pub(crate) fn sockets(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.flatten()
                .filter(|e| std::fs::read_link(e.path()).is_ok_and(|p| p.to_string_lossy().starts_with("socket:")))
                .count()
        })
        .unwrap_or(0)
}

/// A tail whose client stops reading costs no memory: the file is read only as the socket
/// takes it. When the client reads again, it gets everything, in order.
#[test]
fn a_stopped_reader_of_a_tail_costs_no_memory() {
    let flood = "[program:flood]\ncommand=sh -c 'i=0; while [ $i -lt 200000 ]; do i=$((i+1)); echo \"line$i ................................................................................\"; done; exec sleep 1000'\n\
                 startsecs=0\nstdout_logfile=%(here)s/flood.log\nstdout_logfile_maxbytes=0\n";
    let d = start("slowtail", flood, &[]);
    let mut s = UnixStream::connect(d.path("sv.sock")).expect("connect");
    // A small receive buffer, and no reading while the program writes ~20 MB.
    small_receive_buffer(&s);
    s.write_all(b"GET /logtail/flood HTTP/1.0\r\n\r\n").expect("send");
    let rss0 = rss_kb(d.pid);
    wait_for(60.0, "the flood to end", || log_ends_with(&d.path("flood.log"), "line200000 "));
    let rss1 = rss_kb(d.pid);
    eprintln!("http: 20 MB written under a stopped tail reader: RSS {rss0} -> {rss1} kB");
    assert!(rss1 <= rss0 + 2048, "RSS {rss0} -> {rss1} kB");
    // Reading now: every line from the first whole one, in order, up to the last.
    s.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
    let mut r = BufReader::new(s);
    let mut line = String::new();
    let mut last = 0u64;
    let deadline = Instant::now() + Duration::from_secs(60);
    while last < 200000 && Instant::now() < deadline {
        line.clear();
        if r.read_line(&mut line).expect("read") == 0 {
            break;
        }
        if let Some(n) = line.strip_prefix("line").and_then(|l| l.split(' ').next()?.parse::<u64>().ok()) {
            assert!(last == 0 || n == last + 1, "after line{last} came line{n}");
            last = n;
        }
    }
    assert_eq!(last, 200000);
}

/// Whether the last line of the file at `path` starts with `start`.
pub(crate) fn log_ends_with(path: &std::path::Path, start: &str) -> Option<()> {
    use std::io::{Seek, SeekFrom};
    let mut f = std::fs::File::open(path).ok()?;
    let len = f.metadata().ok()?.len();
    f.seek(SeekFrom::Start(len.saturating_sub(200))).ok()?;
    let mut tail = String::new();
    f.read_to_string(&mut tail).ok()?;
    tail.lines().last()?.starts_with(start).then_some(())
}

/// One request on a fresh unix connection, raw: the whole answer until the server closes.
fn raw(d: &Daemon, request: &[u8]) -> String {
    let mut s = UnixStream::connect(d.path("sv.sock")).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    s.write_all(request).expect("send");
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

fn rpc_body(method: &str) -> String {
    xmlrpc::encode_call(method, &[])
}

#[test]
fn http_10_and_11_as_clients_speak_them() {
    let d = start("speak", "[program:a]\ncommand=sleep 1000\nstartsecs=0\n", &[]);
    let body = rpc_body("supervisor.getState");
    // HTTP/1.0 without keep-alive: answered and closed.
    let out = raw(&d, format!("POST /RPC2 HTTP/1.0\r\nContent-Length: {}\r\n\r\n{body}", body.len()).as_bytes());
    assert!(out.starts_with("HTTP/1.0 200 OK\r\n") && out.contains("RUNNING"), "{out}");
    // HTTP/1.0 with keep-alive: two answers on one connection, then Connection: close ends it.
    let one = format!("POST /RPC2 HTTP/1.0\r\nConnection: keep-alive\r\nContent-Length: {}\r\n\r\n{body}", body.len());
    let last = format!("POST /RPC2 HTTP/1.0\r\nContent-Length: {}\r\n\r\n{body}", body.len());
    let out = raw(&d, format!("{one}{last}").as_bytes());
    assert_eq!(out.matches("HTTP/1.0 200 OK").count(), 2, "{out}");
    assert!(out.contains("Connection: Keep-Alive\r\n"), "{out}");
    // HTTP/1.1 pipelined: three requests in one write, answered in order, the last closing.
    let req = |m: &str, close: bool| {
        let b = rpc_body(m);
        let c = if close { "Connection: close\r\n" } else { "" };
        format!("POST /RPC2 HTTP/1.1\r\n{c}Content-Length: {}\r\n\r\n{b}", b.len())
    };
    let out = raw(
        &d,
        format!(
            "{}{}{}",
            req("supervisor.getPID", false),
            req("supervisor.getAPIVersion", false),
            req("supervisor.getState", true)
        )
        .as_bytes(),
    );
    let (pid, api, state) = (out.find(&format!("<int>{}</int>", d.pid)), out.find("3.0"), out.find("RUNNING"));
    assert!(pid.is_some() && api.is_some() && state.is_some(), "{out}");
    assert!(pid < api && api < state, "answers out of order: {out}");
    // One byte at a time.
    let mut s = UnixStream::connect(d.path("sv.sock")).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    for b in req("supervisor.getState", true).bytes() {
        s.write_all(&[b]).expect("byte");
    }
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    assert!(out.starts_with("HTTP/1.1 200 OK\r\n") && out.contains("RUNNING"), "{out}");
    // curl sends Expect: 100-continue for large bodies (over 1 KB before 7.78, over 1 MB since);
    // asked for here so any version does.
    let big = xmlrpc::encode_call("supervisor.sendRemoteCommEvent", &[Value::from("t"), Value::from("x".repeat(4000))]);
    let out = Command::new("curl")
        .args([
            "-sv",
            "--unix-socket",
            &d.path("sv.sock").display().to_string(),
            "http://localhost/RPC2",
            "-H",
            "Content-Type: text/xml",
            "-H",
            "Expect: 100-continue",
            "--data-binary",
            "@-",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin.take().expect("stdin").write_all(big.as_bytes())?;
            c.wait_with_output()
        })
        .expect("curl");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(stderr.contains("Expect: 100-continue") && stderr.contains("HTTP/1.1 100 Continue"), "{stderr}");
    assert!(stdout.contains("<boolean>1</boolean>"), "{stdout}\n{stderr}");
    assert_eq!(thread_count(d.pid), 1);
}

/// A keep-alive connection stays usable across a reload when its listener did not change.
#[test]
fn a_keep_alive_connection_survives_a_reload() {
    let d = start("keepalive", "[program:a]\ncommand=sleep 1000\nstartsecs=0\n", &[]);
    let mut s = UnixStream::connect(d.path("sv.sock")).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let mut ask = |method: &str| -> String {
        let b = rpc_body(method);
        s.write_all(format!("POST /RPC2 HTTP/1.1\r\nContent-Length: {}\r\n\r\n{b}", b.len()).as_bytes()).expect("send");
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while !got.windows(17).any(|w| w == b"</methodResponse>") {
            let n = s.read(&mut buf).expect("answer");
            assert!(n > 0, "closed after: {}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&got).into_owned()
    };
    assert!(ask("supervisor.getState").contains("RUNNING"));
    let started = d.count_log("minisv started with pid");
    d.signal(libc::SIGHUP);
    wait_for(20.0, "the reload", || (d.count_log("minisv started with pid") > started).then_some(()));
    assert!(ask("supervisor.getState").contains("statename"), "the connection did not survive the reload");
    assert!(ask("supervisor.getPID").contains(&d.pid.to_string()));
}

/// Right after `restart()`, or during a reload, a call is answered at once (supervisord
/// answers SHUTDOWN_STATE while it stops everything); it used to hang 30 s, then get a 500.
#[test]
fn calls_made_while_the_daemon_restarts_are_answered_at_once() {
    let d = start(
        "restart",
        "[program:slow]\ncommand=sh -c 'trap \"sleep 0.3; exit 0\" TERM; while :; do sleep 0.05; done'\nstartsecs=0\n",
        &[],
    );
    d.wait_state("slow", "RUNNING", 10.0);
    for i in 0..8 {
        d.rpc("supervisor.restart", &[]).expect("restart");
        let t = Instant::now();
        let r = d.rpc("supervisor.getState", &[]);
        let took = t.elapsed();
        match &r {
            Ok(v) => assert!(["RESTARTING", "RUNNING"].contains(&v.str_of("statename")), "try {i}: {v:?}"),
            Err(f) => assert!(f.string.starts_with("SHUTDOWN_STATE"), "try {i}: {f:?}"),
        }
        assert!(took < Duration::from_secs(2), "try {i}: getState took {took:?}");
        // Faults (SHUTDOWN_STATE) until the new config runs.
        wait_for(20.0, "slow to run again", || {
            let info = d.rpc("supervisor.getProcessInfo", &[Value::from("slow")]).ok()?;
            (info.str_of("statename") == "RUNNING").then_some(())
        });
    }
    assert_eq!(thread_count(d.pid), 1);
}

/// A client that leaves while its answer waits (start with wait) costs nothing: the start goes
/// on, the connection is closed, and the daemon serves on.
#[test]
fn a_client_that_leaves_while_waiting_costs_nothing() {
    let d = start("leaver", "[program:late]\ncommand=sleep 1000\nstartsecs=1\nautostart=false\n", &[]);
    let fds0 = fd_count(d.pid);
    for _ in 0..20 {
        let call = xmlrpc::encode_call("supervisor.startProcess", &[Value::from("late"), Value::Bool(true)]);
        let mut s = UnixStream::connect(d.path("sv.sock")).expect("connect");
        s.write_all(format!("POST /RPC2 HTTP/1.1\r\nContent-Length: {}\r\n\r\n{call}", call.len()).as_bytes())
            .expect("send");
        wait_for(5.0, "the start", || (d.state("late") == "STARTING").then_some(()));
        drop(s);
        d.wait_state("late", "RUNNING", 10.0);
        d.rpc("supervisor.stopProcess", &[Value::from("late")]).expect("stop");
    }
    wait_for(10.0, "fds to come back", || (fd_count(d.pid) <= fds0 + 1).then_some(()));
    assert_eq!(thread_count(d.pid), 1);
}

/// The daemon has exactly one thread at every moment, also under a load of clients.
#[test]
fn one_thread_under_load() {
    let d = start(
        "onethread",
        "[program:a]\ncommand=sleep 1000\nstartsecs=0\nnumprocs=20\nprocess_name=a%(process_num)d\n",
        &[],
    );
    let sock = d.path("sv.sock");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let (sock, stop) = (sock.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut n = 0;
                while !stop.load(std::sync::atomic::Ordering::SeqCst) && n < 2000 {
                    let _ = rpc_unix(&sock, "supervisor.getAllProcessInfo", &[]);
                    n += 1;
                }
                n
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut looks = 0;
    while Instant::now() < deadline {
        let tasks = std::fs::read_dir(format!("/proc/{}/task", d.pid)).map(|t| t.count()).unwrap_or(0);
        assert_eq!(tasks, 1, "the daemon had {tasks} threads");
        looks += 1;
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let calls: usize = clients.into_iter().map(|c| c.join().expect("client")).sum();
    eprintln!("http: {looks} looks at /proc/PID/task during {calls} calls: always 1 thread");
    assert!(calls > 100, "only {calls} calls were made");
}

/// A 4 KiB receive buffer on a client's socket: a reader that stops reading holds little.
pub(crate) fn small_receive_buffer(s: &UnixStream) {
    let size: libc::c_int = 4096;
    // SAFETY: setsockopt with a valid int on a socket we own.
    unsafe {
        use std::os::fd::AsRawFd;
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}
