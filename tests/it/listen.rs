//! minisv's `listen=` (issue 21, point 5): sockets the daemon binds and holds for a program
//! across its restarts, passed with systemd's convention (LISTEN_FDS, LISTEN_PID,
//! LISTEN_FDNAMES, fds from 3).

use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use minisv::rpc::xmlrpc::Value;

use crate::harness::{free_port, wait_for, Daemon, TempDir};
use crate::pyenv::python_supervisor;

/// A variable of /proc/PID/environ.
fn environ_var(pid: u32, key: &str) -> Option<String> {
    let env = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    let prefix = format!("{key}=");
    env.split(|b| *b == 0)
        .find_map(|v| v.strip_prefix(prefix.as_bytes()).map(|v| String::from_utf8_lossy(v).into_owned()))
}

/// What fd `n` of `pid` is (the target of /proc/PID/fd/N), None if it is not open.
fn fd_target(pid: u32, n: u32) -> Option<String> {
    std::fs::read_link(format!("/proc/{pid}/fd/{n}")).ok().map(|p| p.display().to_string())
}

/// The inode of the socket listening on 127.0.0.1:`port`, from /proc/net/tcp.
fn tcp_listener_inode(port: u16) -> Option<String> {
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    let local = format!("0100007F:{port:04X}");
    table.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        // State 0A is LISTEN.
        (f.get(1) == Some(&local.as_str()) && f.get(3) == Some(&"0A")).then(|| f.get(9).map(|s| s.to_string()))?
    })
}

#[test]
fn listen_sockets_are_passed_as_fds_from_3_with_systemds_variables() {
    let port = free_port();
    let dir = TempDir::new("listen-env");
    let sock = dir.join("l.sock");
    let programs = format!(
        "[program:p]\ncommand=sleep 1000\nstartsecs=0\nenvironment=LISTEN_FDS=\"9\"\n\
         listen=web:tcp://127.0.0.1:{port}, unix://{}\n",
        sock.display()
    );
    let d = Daemon::start_in(dir, &programs, &[]);
    let pid = d.wait_state("p", "RUNNING", 10.0).int_of("pid") as u32;
    assert_eq!(environ_var(pid, "LISTEN_PID"), Some(pid.to_string()), "LISTEN_PID is the program's pid");
    assert_eq!(environ_var(pid, "LISTEN_FDS").as_deref(), Some("2"), "ours win over environment=");
    assert_eq!(environ_var(pid, "LISTEN_FDNAMES").as_deref(), Some("web:p"));
    let inode = tcp_listener_inode(port).expect("the daemon listens on the port");
    assert_eq!(fd_target(pid, 3), Some(format!("socket:[{inode}]")), "fd 3 is the first address");
    assert!(fd_target(pid, 4).is_some_and(|t| t.starts_with("socket:[")), "fd 4: {:?}", fd_target(pid, 4));
    assert_eq!(fd_target(pid, 5), None, "nothing else is passed");
    // The program does not accept: the kernel queues the connections for it.
    TcpStream::connect(("127.0.0.1", port)).expect("a tcp connection is queued");
    std::os::unix::net::UnixStream::connect(&sock).expect("a unix connection is queued");
    // The sockets stay while the program is stopped: a client waits, it is not refused.
    d.rpc("supervisor.stopProcess", &[Value::from("p")]).expect("stop");
    TcpStream::connect(("127.0.0.1", port)).expect("still queued while p is stopped");
    assert!(d.log().contains(&format!("p: listening on tcp://127.0.0.1:{port}, unix://{}", sock.display())));
}

/// What the looping client saw: connections refused, and answered.
#[derive(Default)]
struct Seen {
    refused: AtomicUsize,
    answered: AtomicUsize,
    stop: AtomicBool,
}

/// A client that connects in a loop to 127.0.0.1:`port` until told to stop.
fn client_loop(port: u16, seen: Arc<Seen>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        while !seen.stop.load(Ordering::Relaxed) {
            match TcpStream::connect_timeout(&addr, Duration::from_secs(10)) {
                Ok(mut s) => {
                    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
                    let mut buf = Vec::new();
                    // A connection the old program had accepted is cut when it is stopped:
                    // neither refused nor answered.
                    if s.read_to_end(&mut buf).is_ok() && buf == b"ok\n" {
                        seen.answered.fetch_add(1, Ordering::Relaxed);
                    }
                }
                // Refused, or reset in the listen queue of a socket that was closed meanwhile
                // (a program that binds its own port): either way no connection.
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::ConnectionReset
                    ) =>
                {
                    seen.refused.fetch_add(1, Ordering::Relaxed);
                    // Not a busy loop while nothing listens.
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(e) => panic!("connect: {e}"),
            }
        }
    })
}

/// Restarts `name` `times` times through XML-RPC while a client connects in a loop, each run
/// of the program answering a connection before it is stopped; (refused, answered) as the
/// client saw them.
fn restart_under_load(d: &Daemon, name: &str, port: u16, times: usize) -> (usize, usize) {
    d.wait_state(name, "RUNNING", 20.0);
    let seen = Arc::new(Seen::default());
    let client = client_loop(port, Arc::clone(&seen));
    for run in 0..times {
        let before = seen.answered.load(Ordering::Relaxed);
        wait_for(20.0, &format!("run {run} of {name} to answer a connection"), || {
            (seen.answered.load(Ordering::Relaxed) > before).then_some(())
        });
        d.rpc("supervisor.stopProcess", &[Value::from(name)]).expect("stop");
        d.rpc("supervisor.startProcess", &[Value::from(name)]).expect("start");
    }
    seen.stop.store(true, Ordering::Relaxed);
    client.join().expect("the client thread");
    (seen.refused.load(Ordering::Relaxed), seen.answered.load(Ordering::Relaxed))
}

#[test]
fn clients_queue_instead_of_being_refused_while_the_program_restarts_50_times() {
    let python = python_supervisor().join("python");
    let (held, own) = (free_port(), free_port());
    let server = "import os, socket\n\
                  s = socket.socket(fileno=3) if os.environ.get('LISTEN_PID') == str(os.getpid()) else None\n\
                  if s is None:\n    \
                      s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n    \
                      s.bind(('127.0.0.1', int(os.environ['OWN_PORT']))); s.listen(128)\n\
                  while True:\n    c, _ = s.accept(); c.sendall(b'ok\\n'); c.close()\n";
    let dir = TempDir::new("listen-restart");
    let script = dir.write("server.py", server);
    let programs = format!(
        "[program:held]\ncommand={py} {s}\nstartsecs=0\nlisten=tcp://127.0.0.1:{held}\n\n\
         [program:own]\ncommand={py} {s}\nstartsecs=0\nenvironment=OWN_PORT=\"{own}\"\n",
        py = python.display(),
        s = script.display()
    );
    let d = Daemon::start_in(dir, &programs, &[]);
    let (refused, answered) = restart_under_load(&d, "held", held, 50);
    assert_eq!(refused, 0, "connections refused while the program restarted ({answered} answered)");
    assert!(answered >= 50, "only {answered} connections answered");
    // The same server binding its own socket: the loop sees it refused between two runs (the
    // test can fail).
    let (refused, _) = restart_under_load(&d, "own", own, 10);
    assert!(refused > 0, "a program with its own socket was never refused: the loop proves nothing");
}

#[test]
#[ignore = "needs root: user= and a port below 1024"]
fn a_privileged_port_is_bound_before_user_takes_effect() {
    use std::os::unix::fs::MetadataExt;
    // A free port below 1024 (bound, then released for the daemon).
    let port =
        (600..1000).find(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok()).expect("a free port below 1024");
    let dir = TempDir::new("listen-root");
    let sock = dir.join("l.sock");
    let programs = format!(
        "[program:p]\ncommand=sleep 1000\nstartsecs=0\nuser=nobody\nlisten=tcp://127.0.0.1:{port} unix://{}\n",
        sock.display()
    );
    let d = Daemon::start_in(dir, &programs, &[]);
    let pid = d.wait_state("p", "RUNNING", 10.0).int_of("pid") as u32;
    let nobody = crate::harness::proc_status(pid, "Uid").expect("the program's uids");
    assert!(nobody.split_whitespace().all(|u| u != "0"), "the program runs as nobody: {nobody}");
    let inode = tcp_listener_inode(port).expect("the daemon listens on the port");
    assert_eq!(fd_target(pid, 3), Some(format!("socket:[{inode}]")));
    TcpStream::connect(("127.0.0.1", port)).expect("a connection is queued");
    let uid: u32 = nobody.split_whitespace().next().and_then(|u| u.parse().ok()).expect("a uid");
    assert_eq!(std::fs::metadata(&sock).expect("the unix socket's file").uid(), uid, "it belongs to the user");
}
