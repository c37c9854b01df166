//! The integration-test harness: a temp dir per test, the real `minisv` binary on a config
//! written there, waits on conditions with deadlines (never fixed sleeps), an XML-RPC client
//! over the daemon's unix socket, and cleanup by pid.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use minisv::rpc::xmlrpc::{self, Fault, Value};

pub const BIN: &str = env!("CARGO_BIN_EXE_minisv");

/// A directory removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// The directory of a daemon that was stopped, for the next daemon of the test (its config,
    /// logs and state stay); this one no longer removes it.
    pub fn take_for_restart(&mut self) -> TempDir {
        TempDir(std::mem::take(&mut self.0))
    }

    pub fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::SeqCst);
        // Short names: unix socket paths must stay under 108 bytes.
        let dir = std::env::temp_dir().join(format!("msv-{}-{}-{}", tag, std::process::id(), n));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn join(&self, p: &str) -> PathBuf {
        self.0.join(p)
    }

    pub fn write(&self, name: &str, content: &str) -> PathBuf {
        let p = self.0.join(name);
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent).expect("mkdir");
        }
        fs::write(&p, content).expect("write file");
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if self.0.as_os_str().is_empty() {
            return; // taken for another daemon (`take_for_restart`)
        }
        kill_leftovers(&self.0);
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Ends, by pid, the processes that a test's daemon started and that outlived it: a program's
/// own children are not the daemon's to stop (without stopasgroup, Supervisor signals only the
/// pid it spawned), and a test may kill its daemon on purpose. They are found by the
/// environment every program gets, `SUPERVISOR_SERVER_URL=unix://<dir>/...`, which names this
/// test's own directory.
fn kill_leftovers(dir: &Path) {
    let mark = format!("SUPERVISOR_SERVER_URL=unix://{}/", dir.display()).into_bytes();
    let Ok(entries) = fs::read_dir("/proc") else {
        return;
    };
    for pid in entries.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok()) {
        let Ok(environ) = fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        if environ.split(|b| *b == 0).any(|var| var.starts_with(&mark)) {
            kill(pid as u32, libc::SIGKILL);
        }
    }
}

/// Polls `f` until it returns Some, or panics after `secs` with `what`.
pub fn wait_for<T>(secs: f64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let mut pause = Duration::from_millis(1);
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {secs}s waiting for {what}");
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(25));
    }
}

pub fn pid_alive(pid: u32) -> bool {
    // A zombie is dead for our purposes.
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat.rsplit(')').next().is_some_and(|rest| !rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

pub fn kill(pid: u32, sig: i32) {
    // SAFETY: sending a signal to a pid this test started.
    unsafe { libc::kill(pid as i32, sig) };
}

/// `/proc/<pid>/status` field, e.g. `SigBlk`.
pub fn proc_status(pid: u32, field: &str) -> Option<String> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix(&format!("{field}:")).map(|v| v.trim().to_string()))
}

/// A running daemon on a config in its own temp dir.
pub struct Daemon {
    pub dir: TempDir,
    pub conf: PathBuf,
    pub child: Option<Child>,
    pub pid: u32,
}

/// A file's text, with bytes that are not UTF-8 replaced ("" if it cannot be read). The main log
/// holds programs' output at loglevel=debug, which may be any bytes: read strictly, one such
/// byte made the whole log read as "", and a wait for a line already there could time out.
/// The soft limit named `what` in /proc/PID/limits (e.g. "Max open files"); 0 if unknown.
pub fn proc_limit(pid: u32, what: &str) -> u64 {
    let limits = read_lossy(Path::new(&format!("/proc/{pid}/limits")));
    let line = limits.lines().find(|l| l.starts_with(what)).unwrap_or("");
    line[what.len().min(line.len())..].split_whitespace().next().and_then(|v| v.parse().ok()).unwrap_or(0)
}

pub fn read_lossy(path: &Path) -> String {
    String::from_utf8_lossy(&fs::read(path).unwrap_or_default()).into_owned()
}

/// A free loopback port (bound, then released for the test to use).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

/// The `[supervisord]` and `[unix_http_server]` sections every test config starts with.
pub fn base_config(dir: &Path) -> String {
    format!(
        "[supervisord]\nlogfile={d}/main.log\npidfile={d}/sv.pid\nchildlogdir={d}\n\n\
         [unix_http_server]\nfile={d}/sv.sock\n\n[rpcinterface:supervisor]\n\
         supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n\n\
         [supervisorctl]\nserverurl=unix://{d}/sv.sock\n\n",
        d = dir.display()
    )
}

/// `base_config` at loglevel=debug, for tests that read the daemon's debug lines (programs'
/// output copied to the main log, reaped orphans, probe attempts).
pub fn debug_config(dir: &Path) -> String {
    base_config(dir).replace("[supervisord]\n", "[supervisord]\nloglevel=debug\n")
}

impl Daemon {
    /// `start` at loglevel=debug (see `debug_config`).
    pub fn start_debug(tag: &str, programs: &str) -> Daemon {
        let dir = TempDir::new(tag);
        let conf = dir.write("sv.conf", &format!("{}{}", debug_config(dir.path()), programs));
        Daemon::start_with(dir, conf, &[])
    }

    /// Starts `minisv -n` on the base config plus `programs`, waits until it is up.
    pub fn start(tag: &str, programs: &str) -> Daemon {
        Daemon::start_in(TempDir::new(tag), programs, &[])
    }

    /// Starts `minisv -n <extra>` on the base config plus `programs`, in `dir` (which may hold
    /// files the programs use), waits until it is up.
    pub fn start_in(dir: TempDir, programs: &str, extra: &[&str]) -> Daemon {
        let conf = dir.write("sv.conf", &format!("{}{}", base_config(dir.path()), programs));
        Daemon::start_with(dir, conf, extra)
    }

    pub fn start_with(dir: TempDir, conf: PathBuf, extra: &[&str]) -> Daemon {
        Daemon::start_env(dir, conf, extra, &[])
    }

    /// `start_with` with variables added to the daemon's environment.
    pub fn start_env(dir: TempDir, conf: PathBuf, extra: &[&str], env: &[(&str, &str)]) -> Daemon {
        Daemon::start_exe(dir, conf, Path::new(BIN), extra, env)
    }

    /// `start_env` with the binary at `exe` (a copy in the test's directory, which an upgrade
    /// test replaces).
    pub fn start_exe(dir: TempDir, conf: PathBuf, exe: &Path, extra: &[&str], env: &[(&str, &str)]) -> Daemon {
        default_sigint();
        // Appending: programs logging to /dev/stdout open the file again, with an offset of their own.
        let out = fs::File::options().create(true).append(true).open(dir.join("stdout.txt")).expect("stdout file");
        let err = fs::File::create(dir.join("stderr.txt")).expect("stderr file");
        let child = Command::new(exe)
            .envs(env.iter().copied())
            .env(OWNER_VAR, dir.path())
            .arg("-n")
            .arg("-c")
            .arg(&conf)
            .args(extra)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("spawn minisv");
        let pid = child.id();
        let mut d = Daemon { dir, conf, child: Some(child), pid };
        d.wait_running(10.0);
        d
    }

    /// Waits until the daemon answers `supervisor.getState` with RUNNING on its socket: the
    /// state, not a log line, says it is up. Fails at once if it exits on the way.
    pub fn wait_running(&mut self, secs: f64) {
        let sock = self.dir.join("sv.sock");
        wait_for(secs, "the daemon to answer supervisor.getState with RUNNING", || {
            if let Some(status) = self.try_exit() {
                panic!("minisv exited early with {status}\nstderr:\n{}\nlog:\n{}", self.stderr(), self.log());
            }
            let state = try_rpc(&sock, "supervisor.getState", &[])?.ok()?;
            (state.str_of("statename") == "RUNNING").then_some(())
        });
    }

    pub fn path(&self, p: &str) -> PathBuf {
        self.dir.join(p)
    }

    pub fn log(&self) -> String {
        read_lossy(&self.dir.join("main.log"))
    }

    pub fn stderr(&self) -> String {
        read_lossy(&self.dir.join("stderr.txt"))
    }

    /// Waits until the main log contains `needle` (the daemon's log is the ground truth).
    pub fn wait_log(&self, needle: &str, secs: f64) {
        wait_for(secs, &format!("log line {needle:?}"), || self.log().contains(needle).then_some(()));
    }

    /// How many times the main log contains `needle`.
    pub fn count_log(&self, needle: &str) -> usize {
        self.log().matches(needle).count()
    }

    /// The pid of the last `spawned: 'name' with pid N` line.
    pub fn spawned_pid(&self, name: &str) -> Option<u32> {
        let needle = format!("spawned: '{name}' with pid ");
        let log = self.log();
        let at = log.rfind(&needle)?;
        log[at + needle.len()..].split_whitespace().next()?.parse().ok()
    }

    pub fn signal(&self, sig: i32) {
        kill(self.pid, sig);
    }

    fn try_exit(&mut self) -> Option<ExitStatus> {
        self.child.as_mut().and_then(|c| c.try_wait().ok().flatten())
    }

    /// SIGTERM, then waits for the exit (with a deadline).
    pub fn stop(&mut self) -> ExitStatus {
        self.signal(libc::SIGTERM);
        self.wait_exit(20.0)
    }

    pub fn wait_exit(&mut self, secs: f64) -> ExitStatus {
        let status = wait_for(secs, "the daemon to exit", || self.try_exit());
        self.child = None;
        status
    }

    /// Calls an XML-RPC method over the unix socket.
    pub fn rpc(&self, method: &str, params: &[Value]) -> Result<Value, Fault> {
        rpc_unix(&self.dir.join("sv.sock"), method, params)
    }

    /// One call with a string argument that may fail (the daemon may be between two configs).
    pub fn rpc_try(&self, method: &str, arg: &str) -> Option<Value> {
        let sock = self.dir.join("sv.sock");
        let body = xmlrpc::encode_call(method, &[Value::from(arg)]);
        let (status, _, body) = http_unix(&sock, "POST", "/RPC2", body.as_bytes(), None).ok()?;
        if status != 200 {
            return None;
        }
        xmlrpc::parse_response(&body).ok()?.ok()
    }

    pub fn info(&self, name: &str) -> Value {
        self.rpc("supervisor.getProcessInfo", &[Value::from(name)]).expect("getProcessInfo")
    }

    pub fn state(&self, name: &str) -> String {
        self.info(name).str_of("statename").to_string()
    }

    pub fn wait_state(&self, name: &str, state: &str, secs: f64) -> Value {
        wait_for(secs, &format!("{name} to be {state}"), || {
            let info = self.info(name);
            (info.str_of("statename") == state).then_some(info)
        })
    }

    /// Runs `minisv ctl -c <conf> args...`.
    pub fn ctl(&self, args: &[&str]) -> Output {
        Command::new(BIN).arg("ctl").arg("-c").arg(&self.conf).args(args).output().expect("run minisv ctl")
    }
}

/// Tests end clients (`tail -f`, supervisorctl) with SIGINT, as Ctrl-C does. A test run
/// started in the background by a shell without job control inherits SIGINT and SIGQUIT
/// ignored, and so would every client, and Python's supervisorctl then keeps running: the test
/// process puts them back to their default once, before the first daemon.
fn default_sigint() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        for sig in [libc::SIGINT, libc::SIGQUIT] {
            // SAFETY: setting a disposition to its default; no handler of ours is involved.
            unsafe { libc::signal(sig, libc::SIG_DFL) };
        }
    });
}

/// Every process a test's daemon starts inherits this variable, set to the test's directory:
/// what still carries it once the daemon has exited was left behind.
const OWNER_VAR: &str = "MINISV_TEST_OWNER";

/// Live processes (not zombies) whose environment has `OWNER_VAR=<dir>`.
fn processes_of(dir: &Path) -> Vec<u32> {
    let mark = format!("{OWNER_VAR}={}", dir.display()).into_bytes();
    let Ok(entries) = fs::read_dir("/proc") else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let environ = fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
            environ.split(|b| *b == 0).any(|var| var == mark.as_slice())
        })
        .collect()
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        kill(child.id(), libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut exited = false;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                exited = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        if !exited {
            let _ = child.kill();
            let _ = child.wait();
        }
        // The daemon stops its programs before it exits: anything of it still running was
        // left behind. It is ended here, and the test fails (a program that escaped its stop
        // is a bug, not something to clean up quietly).
        let mut left = processes_of(self.dir.path());
        let settle = Instant::now() + Duration::from_secs(2);
        while !left.is_empty() && Instant::now() < settle {
            std::thread::sleep(Duration::from_millis(20));
            left = processes_of(self.dir.path());
        }
        let described: Vec<String> = left
            .iter()
            .map(|pid| format!("{pid} {}", read_lossy(Path::new(&format!("/proc/{pid}/cmdline"))).replace('\0', " ")))
            .collect();
        for pid in &left {
            kill(*pid, libc::SIGKILL);
        }
        if std::thread::panicking() {
            return;
        }
        if !exited {
            panic!("minisv did not exit within 15 s of SIGTERM\nlog:\n{}", self.log());
        }
        if !described.is_empty() {
            panic!("the daemon left processes behind: {described:?}\nlog:\n{}", self.log());
        }
    }
}

/// One XML-RPC call, or `None` when the socket cannot be reached or answers with something
/// other than an XML-RPC response (yet): for waits.
pub fn try_rpc(sock: &Path, method: &str, params: &[Value]) -> Option<Result<Value, Fault>> {
    let body = xmlrpc::encode_call(method, params);
    let (status, _, body) = http_unix(sock, "POST", "/RPC2", body.as_bytes(), None).ok()?;
    if status != 200 {
        return None;
    }
    xmlrpc::parse_response(&body).ok()
}

/// One XML-RPC call over HTTP/1.1 on a unix socket.
pub fn rpc_unix(sock: &Path, method: &str, params: &[Value]) -> Result<Value, Fault> {
    let body = xmlrpc::encode_call(method, params);
    let response = http_unix(sock, "POST", "/RPC2", body.as_bytes(), None).expect("RPC over the unix socket");
    assert_eq!(response.0, 200, "HTTP status of {method}: {}", String::from_utf8_lossy(&response.2));
    xmlrpc::parse_response(&response.2).expect("a parsable XML-RPC response")
}

/// A plain HTTP request: (status, headers, body). Reads a Content-Length body.
pub fn http_unix(
    sock: &Path,
    method: &str,
    path: &str,
    body: &[u8],
    auth: Option<&str>,
) -> std::io::Result<(u16, String, Vec<u8>)> {
    http_on(UnixStream::connect(sock)?, method, path, body, auth)
}

/// One request with `Connection: close` on a connected stream (a 30 s read timeout is set):
/// (status, headers, body), the body being whatever follows the headers until EOF.
pub fn http_on<S: std::os::fd::AsFd + Read + Write>(
    mut s: S,
    method: &str,
    path: &str,
    body: &[u8],
    auth: Option<&str>,
) -> std::io::Result<(u16, String, Vec<u8>)> {
    set_read_timeout(&s, Duration::from_secs(30))?;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/xml\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if let Some(a) = auth {
        req.push_str(&format!("Authorization: Basic {a}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())?;
    s.write_all(body)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(raw.len());
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let body = raw.get(split + 4..).unwrap_or_default().to_vec();
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    Ok((status, head, body))
}

/// SO_RCVTIMEO on any socket (TcpStream and UnixStream each have their own method).
fn set_read_timeout(s: &impl std::os::fd::AsFd, t: Duration) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let tv = libc::timeval { tv_sec: t.as_secs() as libc::time_t, tv_usec: t.subsec_micros() as libc::suseconds_t };
    let len = std::mem::size_of::<libc::timeval>() as libc::socklen_t;
    // SAFETY: a valid timeval of the size given, on a socket fd borrowed for the call.
    let r = unsafe {
        libc::setsockopt(
            s.as_fd().as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            len,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Runs `minisv args...` to completion.
pub fn minisv(args: &[&str], cwd: &Path) -> Output {
    Command::new(BIN).args(args).current_dir(cwd).output().expect("run minisv")
}

/// `minisv check` on `base_config` followed by `programs`: it must refuse the config (status 2);
/// its stdout and stderr together, for the test to look for its error in.
pub fn check_refuses(tag: &str, programs: &str) -> String {
    let dir = TempDir::new(tag);
    let conf = dir.write("supervisord.conf", &format!("{}{programs}", base_config(dir.path())));
    let out = minisv(&["check", "-c", &conf.display().to_string()], dir.path());
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{text}");
    text
}
