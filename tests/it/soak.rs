//! Soak (issue 7): 50 programs crash-looping and restarting, each logging numbered lines to
//! small rotated logs, RPC clients polling on both listeners, a few stops and starts, and a
//! reload every 30 s (every 60 s in runs longer than 10 minutes). Afterwards the daemon's RSS,
//! fd count and thread count are back where they were, no child is left a zombie, no log byte
//! is lost and nothing panicked.
//!
//! `MINISV_SOAK_SECONDS` sets the length (default 120, the CI run); `tests/soak/run` runs this
//! same test for an hour with a release build.
//!
//! "Back where they were" is measured at two quiet points built the same way: every program
//! stopped (stopAllProcesses), no client connected, and the fd and thread counts unchanged for
//! 6 s (tiny_http's spare pool threads end after 5 s idle). The first quiet point follows a
//! warm-up with client traffic and one reload, so that allocator arenas and pool threads have
//! reached their working size; the second follows a last reload after the soak. Then fds must
//! be equal, threads within `POOL_SPREAD` (tiny_http's idle workers), and RSS within
//! `RSS_SLACK_KB`: allocator fragmentation moves RSS by a few hundred kB between two quiet
//! points, a leak of one buffer per request, spawn or reload grows it by tens of MB over
//! thousands of them.

use std::collections::HashMap;
use std::fs;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use minisv::rpc::xmlrpc::{self, Value};

use crate::abuse::http_tcp;
use crate::harness::*;

/// The idle workers two quiet points may differ by: tiny_http's pool minimum (4), for each of
/// the two listeners (unix socket and TCP).
const POOL_SPREAD: usize = 2 * 4;

const PROGRAMS: usize = 50;
/// See the module doc.
const RSS_SLACK_KB: u64 = 2048;
const LOG_MAXBYTES: &str = "16KB";
const LOG_BACKUPS: usize = 4;

/// One run of a soak program: numbered lines ("<name> <pid> <n>"), then "<name> <pid> end <n>",
/// then exit with 0, 1 or 2. SIGTERM only sets a flag, so the end line always tells how many
/// lines were written, whatever the moment the signal came. Runs last 0.25 to 6 s, so the
/// startsecs=1 programs sometimes fail into BACKOFF.
const CHILD: &str = r#"name=$1
i=0
stop=
trap 'stop=1' TERM
n=$(( ($$ * 7919) % 24 + 1 ))
while [ $i -lt $n ] && [ -z "$stop" ]; do
  for k in 1 2 3 4; do
    i=$((i+1)); echo "$name $$ $i"
  done
  sleep 0.25
done
echo "$name $$ end $i"
exit $(( $$ % 3 ))
"#;

pub fn rss_kb(pid: u32) -> u64 {
    proc_status(pid, "VmRSS").and_then(|v| v.split_whitespace().next()?.parse().ok()).unwrap_or(0)
}

pub fn fd_count(pid: u32) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
}

pub fn thread_count(pid: u32) -> usize {
    proc_status(pid, "Threads").and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// (pid, state letter) of the direct children of `parent`.
pub fn children(parent: u32) -> Vec<(u32, char)> {
    let mut out = Vec::new();
    let Ok(dir) = fs::read_dir("/proc") else { return out };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        // "pid (comm) S ppid ..."; comm may hold spaces and parentheses.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else { continue };
        let mut f = rest.split_whitespace();
        let state = f.next().and_then(|s| s.chars().next()).unwrap_or('?');
        if f.next().and_then(|p| p.parse::<u32>().ok()) == Some(parent) {
            out.push((pid, state));
        }
    }
    out
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Usage {
    rss_kb: u64,
    fds: usize,
    threads: usize,
}

fn usage(pid: u32) -> Usage {
    Usage { rss_kb: rss_kb(pid), fds: fd_count(pid), threads: thread_count(pid) }
}

/// Waits until the fd and thread counts have not changed for 6 s, then samples.
fn quiet_usage(pid: u32) -> Usage {
    let mut last = (fd_count(pid), thread_count(pid));
    let mut since = Instant::now();
    wait_for(90.0, "fd and thread counts to stay unchanged for 6 s", || {
        let now = (fd_count(pid), thread_count(pid));
        if now != last {
            last = now;
            since = Instant::now();
        }
        (since.elapsed() >= Duration::from_secs(6)).then_some(())
    });
    usage(pid)
}

fn name(i: usize) -> String {
    format!("p{i:02}")
}

fn config(dir: &Path, port: u16) -> String {
    let d = dir.display();
    let mut c = format!(
        "[supervisord]\nlogfile={d}/main.log\npidfile={d}/sv.pid\nchildlogdir={d}\nloglevel=info\n\n\
         [unix_http_server]\nfile={d}/sv.sock\n\n[inet_http_server]\nport=127.0.0.1:{port}\n\n\
         [rpcinterface:supervisor]\n\
         supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n\n"
    );
    for i in 0..PROGRAMS {
        // Explicit log paths: AUTO logs are deleted at each reload, by design.
        c.push_str(&format!(
            "[program:{n}]\ncommand=/bin/sh {d}/child.sh {n}\nautorestart=true\nstartsecs={s}\n\
             startretries=1000\nstopwaitsecs=10\nredirect_stderr=true\nstdout_logfile={d}/logs/{n}.log\n\
             stdout_logfile_maxbytes={LOG_MAXBYTES}\nstdout_logfile_backups={LOG_BACKUPS}\n\n",
            n = name(i),
            s = i % 2,
        ));
    }
    c
}

/// Checks one program's log files, oldest first; returns (bytes checked, runs checked).
fn check_program_log(dir: &Path, prog: &str) -> Result<(usize, usize), String> {
    let base = dir.join(format!("logs/{prog}.log"));
    let mut text = Vec::new();
    let mut rotated_away = false;
    for k in (1..=LOG_BACKUPS).rev() {
        let p = dir.join(format!("logs/{prog}.log.{k}"));
        if let Ok(b) = fs::read(&p) {
            rotated_away |= k == LOG_BACKUPS;
            text.extend(b);
        }
    }
    text.extend(fs::read(&base).map_err(|e| format!("{}: {e}", base.display()))?);
    let text = String::from_utf8(text).map_err(|_| format!("{prog}: log is not UTF-8"))?;
    if !text.is_empty() && !text.ends_with('\n') {
        return Err(format!("{prog}: the log ends in a partial line"));
    }
    let mut lines = text.lines().peekable();
    // The oldest kept file may start anywhere in a run (even mid-line): skip to a run's start.
    if rotated_away {
        while let Some(l) = lines.peek() {
            let f: Vec<&str> = l.split(' ').collect();
            if f.len() == 3 && f[0] == prog && f[2] == "1" {
                break;
            }
            lines.next();
        }
    }
    let mut bytes = 0;
    let mut runs = 0;
    // The run in progress: (pid, lines seen).
    let mut current: Option<(String, u64)> = None;
    for line in lines {
        bytes += line.len() + 1;
        let f: Vec<&str> = line.split(' ').collect();
        let bad = format!("{prog}: unexpected line {line:?} (run {current:?})");
        match (f.as_slice(), &mut current) {
            ([n, pid, "end", count], Some((cur, seen))) if *n == prog && pid == cur => {
                if count.parse::<u64>().ok() != Some(*seen) {
                    return Err(format!("{prog}: run {pid} wrote {count} lines, the log has {seen}"));
                }
                runs += 1;
                current = None;
            }
            ([n, pid, "end", "0"], None) if *n == prog && !pid.is_empty() => runs += 1,
            ([n, pid, seq], Some((cur, seen))) if *n == prog && pid == cur => {
                if seq.parse::<u64>().ok() != Some(*seen + 1) {
                    return Err(format!("{prog}: run {pid}: line {seq} after line {seen}"));
                }
                *seen += 1;
            }
            ([n, pid, "1"], None) if *n == prog => current = Some((pid.to_string(), 1)),
            _ => return Err(bad),
        }
    }
    if let Some((pid, seen)) = current {
        return Err(format!("{prog}: run {pid} has {seen} lines and no end line"));
    }
    Ok((bytes, runs))
}

/// Counts `needle` in the main log and its backups.
fn count_main_logs(dir: &Path, needle: &str) -> usize {
    let mut n = 0;
    for e in fs::read_dir(dir).into_iter().flatten().flatten() {
        let f = e.file_name();
        if f.to_str().is_some_and(|s| s == "main.log" || s.starts_with("main.log.")) {
            n += fs::read_to_string(e.path()).unwrap_or_default().matches(needle).count();
        }
    }
    n
}

#[derive(Default)]
struct Counters {
    ok: AtomicU64,
    failed: AtomicU64,
}

fn count(c: &Counters, ok: bool) {
    if ok { &c.ok } else { &c.failed }.fetch_add(1, Ordering::Relaxed);
}

/// Starts the polling clients; they run until `stop` is set.
fn clients(
    sock: &Path,
    port: u16,
    stop: &Arc<AtomicBool>,
    counters: &Arc<Counters>,
) -> Vec<std::thread::JoinHandle<()>> {
    let mut threads = Vec::new();
    // Two pollers on the unix socket: process info and log tails.
    for t in 0..2usize {
        let (sock, stop, counters) = (sock.to_path_buf(), stop.clone(), counters.clone());
        threads.push(std::thread::spawn(move || {
            let mut i = t;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let ok = if i % 2 == 0 {
                    try_rpc(&sock, "supervisor.getAllProcessInfo", &[]).is_some_and(|r| r.is_ok())
                } else {
                    let params = [Value::from(name(i % PROGRAMS).as_str()), Value::from(0i64), Value::from(2000i64)];
                    try_rpc(&sock, "supervisor.tailProcessStdoutLog", &params).is_some_and(|r| r.is_ok())
                };
                count(&counters, ok);
                std::thread::sleep(Duration::from_millis(50));
            }
        }));
    }
    // One poller on the inet listener.
    {
        let (stop, counters) = (stop.clone(), counters.clone());
        threads.push(std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let body = xmlrpc::encode_call("supervisor.getAllProcessInfo", &[]);
                let ok = http_tcp(port, "POST", "/RPC2", body.as_bytes())
                    .is_ok_and(|(s, _, b)| s == 200 && xmlrpc::parse_response(&b).is_ok_and(|r| r.is_ok()));
                count(&counters, ok);
                std::thread::sleep(Duration::from_millis(100));
            }
        }));
    }
    // A few stops and starts (faults such as NOT_RUNNING are normal in a crash loop).
    {
        let (sock, stop, counters) = (sock.to_path_buf(), stop.clone(), counters.clone());
        threads.push(std::thread::spawn(move || {
            let mut k = 0;
            while !stop.load(Ordering::Relaxed) {
                let prog = name(k % 3);
                k += 1;
                let a = try_rpc(&sock, "supervisor.stopProcess", &[Value::from(prog.as_str()), Value::from(true)]);
                let b = try_rpc(&sock, "supervisor.startProcess", &[Value::from(prog.as_str()), Value::from(false)]);
                count(&counters, a.is_some() && b.is_some());
                std::thread::sleep(Duration::from_millis(2000));
            }
        }));
    }
    threads
}

fn wait_started(d: &Daemon, starts: usize) {
    wait_for(90.0, "the daemon to start again after the reload", || {
        (count_main_logs(d.dir.path(), "minisv started with pid") >= starts).then_some(())
    });
}

/// Stops every program and waits until none has a child left.
fn stop_all(d: &Daemon) {
    let _ = wait_for(90.0, "stopAllProcesses to be answered", || {
        try_rpc(&d.path("sv.sock"), "supervisor.stopAllProcesses", &[Value::from(true)]).filter(|r| r.is_ok())
    });
    wait_for(30.0, "every child to be gone", || children(d.pid).is_empty().then_some(()));
}

#[test]
fn soak_crash_loops_rpc_polling_and_reloads_leak_nothing() {
    let seconds: u64 = std::env::var("MINISV_SOAK_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(120);
    let reload_every = Duration::from_secs(if seconds > 600 { 60 } else { 30 });
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("port").local_addr().expect("addr").port();
    let dir = TempDir::new("soak");
    dir.write("child.sh", CHILD);
    fs::create_dir_all(dir.join("logs")).expect("logs dir");
    let conf = dir.write("sv.conf", &config(dir.path(), port));
    let d = Daemon::start_with(dir, conf, &[]);
    let sock = d.path("sv.sock");
    let started = Instant::now();

    // Warm-up: every program spawned once, client traffic, one reload.
    wait_for(120.0, "every program to spawn", || {
        let log = d.log();
        (0..PROGRAMS).all(|i| log.contains(&format!("spawned: '{}'", name(i)))).then_some(())
    });
    let stop = Arc::new(AtomicBool::new(false));
    let counters = Arc::new(Counters::default());
    let threads = clients(&sock, port, &stop, &counters);
    let mut starts = 1;
    d.signal(libc::SIGHUP);
    starts += 1;
    wait_started(&d, starts);
    wait_for(60.0, "some client traffic after the reload", || (counters.ok.load(Ordering::Relaxed) > 50).then_some(()));
    stop.store(true, Ordering::Relaxed);
    threads.into_iter().for_each(|t| t.join().expect("client thread"));
    stop_all(&d);
    let before = quiet_usage(d.pid);
    eprintln!("soak: baseline after warm-up ({:.0?}): {before:?}", started.elapsed());
    let _ = try_rpc(&sock, "supervisor.startAllProcesses", &[Value::from(false)]).expect("startAllProcesses");

    // The soak.
    let stop = Arc::new(AtomicBool::new(false));
    let threads = clients(&sock, port, &stop, &counters);
    let soak_start = Instant::now();
    let end = soak_start + Duration::from_secs(seconds);
    let mut next_reload = soak_start + reload_every;
    let mut zombie_seen: HashMap<u32, u32> = HashMap::new();
    let mut lasting_zombies = Vec::new();
    let mut max = usage(d.pid);
    let mut reload_samples = Vec::new();
    while Instant::now() < end {
        std::thread::sleep(Duration::from_millis(1000).min(end.saturating_duration_since(Instant::now())));
        // A zombie is normal for the instant between exit and reaping; one that lasts three
        // samples (2 s or more) is not reaped.
        let zombies: Vec<u32> = children(d.pid).into_iter().filter(|c| c.1 == 'Z').map(|c| c.0).collect();
        zombie_seen.retain(|pid, _| zombies.contains(pid));
        for z in zombies {
            let n = zombie_seen.entry(z).or_insert(0);
            *n += 1;
            if *n == 3 {
                lasting_zombies.push(z);
            }
        }
        let u = usage(d.pid);
        max = Usage { rss_kb: max.rss_kb.max(u.rss_kb), fds: max.fds.max(u.fds), threads: max.threads.max(u.threads) };
        if Instant::now() >= next_reload && Instant::now() + Duration::from_secs(5) < end {
            d.signal(libc::SIGHUP);
            starts += 1;
            wait_started(&d, starts);
            reload_samples.push(rss_kb(d.pid));
            eprintln!(
                "soak: {:.0?}: reload {}, {:?}, {} spawns",
                soak_start.elapsed(),
                starts - 1,
                usage(d.pid),
                count_main_logs(d.dir.path(), "spawned: '")
            );
            next_reload = Instant::now() + reload_every;
        }
    }
    stop.store(true, Ordering::Relaxed);
    threads.into_iter().for_each(|t| t.join().expect("client thread"));

    // The last reload, then the same quiet point as the baseline.
    d.signal(libc::SIGHUP);
    starts += 1;
    wait_started(&d, starts);
    stop_all(&d);
    let after = quiet_usage(d.pid);
    let spawns = count_main_logs(d.dir.path(), "spawned: '");
    let (mut bytes, mut runs) = (0, 0);
    let mut log_errors = Vec::new();
    for i in 0..PROGRAMS {
        match check_program_log(d.dir.path(), &name(i)) {
            Ok((b, r)) => {
                bytes += b;
                runs += r;
            }
            Err(e) => log_errors.push(e),
        }
    }
    let mut panics = count_main_logs(d.dir.path(), "panicked");
    panics += d.stderr().matches("panicked").count();
    eprintln!(
        "soak: {seconds} s, {} reloads, {spawns} spawns, RPC calls {} ok / {} failed",
        starts - 1,
        counters.ok.load(Ordering::Relaxed),
        counters.failed.load(Ordering::Relaxed)
    );
    eprintln!("soak: start {before:?}\nsoak: end   {after:?}\nsoak: peak  {max:?}");
    eprintln!("soak: RSS (kB) after each reload: {reload_samples:?}");
    eprintln!("soak: log check: {bytes} bytes in {runs} complete runs over {PROGRAMS} programs");
    eprintln!("soak: lasting zombies {lasting_zombies:?}, panics {panics}");
    assert!(log_errors.is_empty(), "log bytes lost or garbled:\n{}", log_errors.join("\n"));
    assert!(lasting_zombies.is_empty(), "children left unreaped: {lasting_zombies:?}");
    assert_eq!(panics, 0, "a panic in the main log or stderr:\n{}", d.stderr());
    assert_eq!(after.fds, before.fds, "fd count");
    // tiny_http keeps up to 4 idle workers per listener, but how many survive a quiet spell
    // depends on how their 5 s idle timeouts interleave (a worker that times out exits without
    // looking at how many are left), so two quiet points can differ by up to 4 per listener.
    // A leak of one thread per request, spawn or reload would add thousands.
    assert!(
        after.threads <= before.threads + POOL_SPREAD,
        "thread count grew from {} to {} (more than tiny_http's idle workers can explain)",
        before.threads,
        after.threads
    );
    assert!(after.rss_kb <= before.rss_kb + RSS_SLACK_KB, "RSS grew from {} kB to {} kB", before.rss_kb, after.rss_kb);
    assert!(spawns > PROGRAMS * 2 && runs > PROGRAMS, "the programs did crash-loop");
}
