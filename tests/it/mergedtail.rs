//! `tail -f` of several logs (issue 22, point 3; Supervisor #246): `minisv ctl tail -f a b`,
//! `all` and `group:*` over one `/mergedtail` connection, with real programs writing to stdout
//! and stderr; the stream over raw HTTP; lines held back and cut; a client that stops reading;
//! a daemon that stays asleep while a stream is open. The web page's side is in `web.rs`.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use minisv::rpc::xmlrpc::Value;

use crate::harness::*;
use crate::http::{collect, log_ends_with, sockets};
use crate::pyenv::python_supervisor;
use crate::soak::rss_kb;

/// alpha writes numbered lines to stdout (a log that rotates every 2 KB) and stderr; beta to
/// stdout only (its stderr log stays empty).
const TWO: &str = "[program:alpha]\n\
    command=sh -c 'i=0; while :; do i=$((i+1)); echo \"alpha-out-$i ......................................................................\"; echo alpha-err-$i >&2; sleep 0.02; done'\n\
    startsecs=0\nstdout_logfile=%(here)s/alpha.log\nstdout_logfile_maxbytes=2KB\nstdout_logfile_backups=3\n\n\
    [program:beta]\ncommand=sh -c 'i=0; while :; do i=$((i+1)); echo beta-out-$i; sleep 0.03; done'\nstartsecs=0\n";

/// `minisv ctl tail -f args...`, its stdout collected as it comes (a line without its end
/// too: `http::collect` takes whole lines).
fn ctl_tail(d: &Daemon, args: &[&str]) -> (Child, Arc<Mutex<String>>) {
    let mut child = Command::new(BIN)
        .args(["ctl", "-c"])
        .arg(&d.conf)
        .args(["tail", "-f"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("minisv ctl");
    let text = Arc::new(Mutex::new(String::new()));
    let mut out = child.stdout.take().expect("stdout");
    let t = text.clone();
    std::thread::spawn(move || {
        let mut got = Vec::new();
        let mut buf = [0u8; 8192];
        while let Ok(n @ 1..) = out.read(&mut buf) {
            got.extend_from_slice(&buf[..n]);
            *t.lock().unwrap() = String::from_utf8_lossy(&got).into_owned();
        }
    });
    (child, text)
}

/// Ctrl-C, then the exit status.
fn interrupt(child: &mut Child) -> Option<i32> {
    kill(child.id(), libc::SIGINT);
    wait_for(10.0, "the client to end on Ctrl-C", || child.try_wait().ok().flatten()).code()
}

/// `tail -f args...` until its output holds `until`, then Ctrl-C: (stdout, status).
fn follow_until(d: &Daemon, args: &[&str], until: &str) -> (String, Option<i32>) {
    let (mut child, text) = ctl_tail(d, args);
    wait_for(20.0, &format!("`tail -f {}` to show {until:?}", args.join(" ")), || {
        text.lock().unwrap().contains(until).then_some(())
    });
    let code = interrupt(&mut child);
    // The reader thread has what the client wrote once its pipe is closed.
    wait_for(5.0, "the client's output to end", || (Arc::strong_count(&text) == 1).then_some(()));
    let out = text.lock().unwrap().clone();
    (out, code)
}

/// The text of the lines of the stream labelled `label`.
fn lines_of<'a>(text: &'a str, label: &str) -> Vec<&'a str> {
    text.lines()
        .filter_map(|l| {
            let (lab, rest) = l.split_once(" | ")?;
            (lab.trim_end() == label).then_some(rest)
        })
        .collect()
}

/// The N of every `<word>N` line, in order.
fn numbers(lines: &[&str], word: &str) -> Vec<u64> {
    lines.iter().filter_map(|l| l.strip_prefix(word)?.split(' ').next()?.parse().ok()).collect()
}

fn assert_consecutive(ns: &[u64], what: &str) {
    assert!(ns.len() > 10, "{what}: too few lines: {ns:?}");
    for w in ns.windows(2) {
        assert_eq!(w[1], w[0] + 1, "{what}: a gap or a repeat in {ns:?}");
    }
}

/// Waits until a process's log of `channel` holds `text` (read through XML-RPC).
fn wait_logged(d: &Daemon, name: &str, channel: &str, text: &str) {
    let method =
        if channel == "stderr" { "supervisor.readProcessStderrLog" } else { "supervisor.readProcessStdoutLog" };
    wait_for(10.0, &format!("{name}'s {channel} to hold {text:?}"), || {
        let log = d.rpc(method, &[Value::from(name), Value::Int(0), Value::Int(0)]).ok()?;
        log.as_str()?.contains(text).then_some(())
    });
}

#[test]
fn tail_f_of_two_programs_follows_both_in_order_over_one_connection() {
    let d = Daemon::start("mtail", TWO);
    wait_for(10.0, "alpha's first lines", || (read_lossy(&d.path("alpha.log")).lines().count() >= 5).then_some(()));
    let sockets0 = sockets(d.pid);
    let (mut ours, text) = ctl_tail(&d, &["alpha", "beta"]);
    let logged = |t: &str| numbers(&read_lossy(&d.path(t)).lines().collect::<Vec<_>>(), "alpha-out-");
    let at_start = logged("alpha.log").last().copied().unwrap_or(0);
    // Lines written after the stream began, across several rotations of alpha's log (a line
    // is ~85 bytes: 2 KB every ~25 lines).
    wait_for(60.0, "lines written after the tail started", || {
        let t = text.lock().unwrap();
        let out = numbers(&lines_of(&t, "alpha"), "alpha-out-");
        let err = numbers(&lines_of(&t, "alpha (stderr)"), "alpha-err-");
        let beta = numbers(&lines_of(&t, "beta"), "beta-out-");
        (out.last() > Some(&(at_start + 150)) && err.last() > Some(&(at_start + 150)) && beta.len() > 20).then_some(())
    });
    // The stream is the one connection the client holds (its version check's is closed).
    wait_for(10.0, "one connection for four logs", || (sockets(d.pid) == sockets0 + 1).then_some(()));
    // The real supervisorctl's tail of one program works as ever, meanwhile.
    let (mut py, py_text) = collect(
        Command::new(python_supervisor().join("supervisorctl"))
            .args(["-c", &d.conf.display().to_string(), "tail", "-f", "alpha"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("supervisorctl"),
    );
    let now = logged("alpha.log").last().copied().unwrap_or(0);
    wait_for(20.0, "supervisorctl's tail -f of alpha", || {
        let t = py_text.lock().unwrap();
        let ns = numbers(&t.lines().collect::<Vec<_>>(), "alpha-out-");
        (t.starts_with("==> Press Ctrl-C to exit <==\n") && ns.last() > Some(&(now + 5))).then_some(())
    });
    interrupt(&mut py);
    assert_eq!(interrupt(&mut ours), Some(0), "Ctrl-C ends the merged tail cleanly");
    wait_for(5.0, "the client's output to end", || (Arc::strong_count(&text) == 1).then_some(()));
    let t = text.lock().unwrap().clone();
    assert!(t.starts_with("==> Press Ctrl-C to exit <==\n") && t.ends_with("\n\n"), "{t}");
    // Labels padded to the longest, "alpha (stderr)".
    assert!(t.contains("\nalpha          | alpha-out-"), "{t}");
    assert!(t.contains("\nalpha (stderr) | alpha-err-"), "{t}");
    assert!(t.contains("\nbeta           | beta-out-"), "{t}");
    assert!(!t.contains("beta (stderr) |"), "an empty log says nothing: {t}");
    // Every line of each log, in order, none twice: through the rotations of alpha's log too.
    assert_consecutive(&numbers(&lines_of(&t, "alpha"), "alpha-out-"), "alpha stdout");
    assert_consecutive(&numbers(&lines_of(&t, "alpha (stderr)"), "alpha-err-"), "alpha stderr");
    assert_consecutive(&numbers(&lines_of(&t, "beta"), "beta-out-"), "beta stdout");
    wait_for(10.0, "the stream's connection to close", || (sockets(d.pid) == sockets0).then_some(()));
}

/// A group of two, a program without logs, and one whose stderr goes to its stdout.
const MANY: &str = "[group:pool]\nprograms=p1,p2\n\n\
    [program:p1]\ncommand=sh -c 'echo p1 says; echo p1 warns >&2; exec sleep 1000'\nstartsecs=0\n\n\
    [program:p2]\ncommand=sh -c 'echo p2 says; exec sleep 1000'\nstartsecs=0\n\n\
    [program:solo]\ncommand=sleep 1000\nstartsecs=0\nstdout_logfile=NONE\nstderr_logfile=NONE\n\n\
    [program:joined]\ncommand=sh -c 'echo joined out; echo joined err >&2; exec sleep 1000'\nstartsecs=0\nredirect_stderr=true\n";

fn start_many(tag: &str) -> Daemon {
    let d = Daemon::start(tag, MANY);
    wait_logged(&d, "pool:p1", "stdout", "p1 says");
    wait_logged(&d, "pool:p1", "stderr", "p1 warns");
    wait_logged(&d, "pool:p2", "stdout", "p2 says");
    wait_logged(&d, "joined", "stdout", "joined err");
    d
}

#[test]
fn tail_f_of_all_or_a_group_names_the_logs_it_cannot_follow() {
    let d = start_many("mtailall");
    let (out, code) = follow_until(&d, &["pool:*"], "p2 says\n");
    assert_eq!(
        out,
        "==> Press Ctrl-C to exit <==\n\
         pool:p1          | p1 says\n\
         pool:p1 (stderr) | p1 warns\n\
         pool:p2          | p2 says\n\n"
    );
    assert_eq!(code, Some(0));
    // `all`, in status order: what has no file is named first; a redirected stderr is in stdout.
    let (out, _) = follow_until(&d, &["all"], "p2 says\n");
    assert_eq!(
        out,
        "==> Press Ctrl-C to exit <==\n\
         solo             | ==> no log file <==\n\
         solo (stderr)    | ==> no log file <==\n\
         joined           | joined out\n\
         joined           | joined err\n\
         pool:p1          | p1 says\n\
         pool:p1 (stderr) | p1 warns\n\
         pool:p2          | p2 says\n\n"
    );
    // A channel after the names keeps that channel of each.
    let (out, _) = follow_until(&d, &["all", "stderr"], "p1 warns\n");
    assert_eq!(
        out,
        "==> Press Ctrl-C to exit <==\n\
         joined (stderr)  | ==> no stderr log: redirect_stderr=true sends it to stdout <==\n\
         solo (stderr)    | ==> no log file <==\n\
         pool:p1 (stderr) | p1 warns\n\n"
    );
}

#[test]
fn unknown_names_refuse_the_stream_and_one_name_is_supervisors_tail() {
    let d = start_many("mtailbad");
    let out = d.ctl(&["tail", "-f", "nosuch", "pool:p1", "nog:*", "pool"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "nosuch: ERROR (no such process)\nnog: ERROR (no such group)\npool: ERROR (no such process; the group is pool:*)\n"
    );
    assert_eq!((String::from_utf8_lossy(&out.stderr).as_ref(), out.status.code()), ("", Some(1)));
    // One process: its /logtail, label-less, as supervisorctl shows it.
    let (out, _) = follow_until(&d, &["pool:p1", "stderr"], "p1 warns\n");
    assert_eq!(out, "==> Press Ctrl-C to exit <==\np1 warns\n\n");
    // Without -f, several names are supervisorctl's error still.
    let out = d.ctl(&["tail", "pool:p1", "pool:p2"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "Error: bad channel 'pool:p2'\n");
    assert_eq!(out.status.code(), Some(1));
}

/// One request on a unix connection: reads until the text holds `until` (or the server closes).
fn request_until(d: &Daemon, request: &str, until: &str) -> String {
    let mut s = UnixStream::connect(d.path("sv.sock")).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
    s.write_all(request.as_bytes()).expect("send");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains(until) {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

#[test]
fn the_stream_over_http() {
    let d = start_many("mtailhttp");
    let out = request_until(&d, "GET /mergedtail?name=pool%3A%2A HTTP/1.1\r\nHost: x\r\n\r\n", "p2 says\n");
    let (head, body) = out.split_once("\r\n\r\n").expect("a head");
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    for h in ["Content-Type: text/plain;charset=utf-8", "Transfer-Encoding: chunked", "X-Accel-Buffering: no"] {
        assert!(head.contains(h), "{h} missing: {head}");
    }
    assert!(body.contains("pool:p1          | p1 says\n"), "{body}");
    // HTTP/1.0: the bytes as they are, until the connection closes.
    let out =
        request_until(&d, "GET /mergedtail?name=pool:p2&name=pool:p1&channel=stdout HTTP/1.0\r\n\r\n", "p1 says\n");
    assert!(out.ends_with("\r\n\r\npool:p2 | p2 says\npool:p1 | p1 says\n"), "{out}");
    let out = request_until(&d, "GET /mergedtail?name=nosuch&name=pool:p1 HTTP/1.0\r\n\r\n", "\n\n");
    assert!(out.starts_with("HTTP/1.0 404 Not Found\r\n"), "{out}");
    assert!(out.contains("Content-Type: text/plain;charset=utf-8\r\n"), "{out}");
    assert!(out.ends_with("\r\n\r\nnosuch: ERROR (no such process)\n"), "{out}");
    let out = request_until(&d, "GET /mergedtail?name=pool:p1&channel=foo HTTP/1.0\r\n\r\n", "\n\n");
    assert!(out.ends_with("\r\n\r\nError: bad channel 'foo'\n"), "{out}");
    let out = request_until(&d, "POST /mergedtail?name=all HTTP/1.0\r\nContent-Length: 0\r\n\r\n", "\n\n");
    assert!(out.starts_with("HTTP/1.0 400 Bad Request\r\n"), "{out}");
}

#[test]
fn a_line_is_held_until_its_end_or_half_a_second_and_a_long_one_comes_whole() {
    // `long` writes when the test creates `go`: after the stream began, with `prompt` quiet.
    let programs = "[program:prompt]\ncommand=sh -c 'printf \"Password: \"; exec sleep 1000'\nstartsecs=0\n\n\
        [program:long]\ndirectory=%(here)s\n\
        command=sh -c 'while [ ! -e go ]; do sleep 0.02; done; head -c 20000 /dev/zero | tr -c x x; echo; echo after; exec sleep 1000'\n\
        startsecs=0\n";
    let d = Daemon::start("mtailheld", programs);
    wait_logged(&d, "prompt", "stdout", "Password: ");
    let (mut child, text) = ctl_tail(&d, &["prompt", "long"]);
    // The prompt has no newline: it is shown once it has waited half a second.
    wait_for(20.0, "the prompt", || text.lock().unwrap().contains("prompt          | Password: ").then_some(()));
    std::fs::write(d.path("go"), "").expect("go");
    wait_for(20.0, "the long line", || text.lock().unwrap().contains("| after\n").then_some(()));
    assert_eq!(interrupt(&mut child), Some(0));
    wait_for(5.0, "the client's output to end", || (Arc::strong_count(&text) == 1).then_some(()));
    let x = "x".repeat(20000);
    assert_eq!(
        *text.lock().unwrap(),
        format!(
            "==> Press Ctrl-C to exit <==\nprompt          | Password: \nlong            | {x}\nlong            | after\n\n"
        ),
        "the prompt's line is ended when another log's line comes; the long line joins up"
    );
}

/// A merged stream whose client stops reading costs the daemon no memory, however much the
/// programs write; once it reads again, it gets every line of each, in order.
#[test]
fn a_stopped_reader_of_a_merged_tail_costs_no_memory() {
    let flood = |name: &str| {
        format!(
            "[program:{name}]\ncommand=sh -c 'i=0; while [ $i -lt 100000 ]; do i=$((i+1)); echo \"{name}-$i ................................................................................\"; done; exec sleep 1000'\n\
             startsecs=0\nstdout_logfile=%(here)s/{name}.log\nstdout_logfile_maxbytes=0\n\n"
        )
    };
    let d = Daemon::start("mtailslow", &format!("{}{}", flood("f1"), flood("f2")));
    let mut s = UnixStream::connect(d.path("sv.sock")).expect("connect");
    crate::http::small_receive_buffer(&s);
    s.write_all(b"GET /mergedtail?name=f1&name=f2 HTTP/1.0\r\n\r\n").expect("send");
    let rss0 = rss_kb(d.pid);
    for f in ["f1", "f2"] {
        wait_for(120.0, "the floods to end", || log_ends_with(&d.path(&format!("{f}.log")), &format!("{f}-100000 ")));
    }
    let rss1 = rss_kb(d.pid);
    eprintln!("mergedtail: 2 x 10 MB written under a stopped reader of their merged tail: RSS {rss0} -> {rss1} kB");
    assert!(rss1 <= rss0 + 2048, "RSS {rss0} -> {rss1} kB");
    s.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
    let mut r = BufReader::new(s);
    let mut line = String::new();
    let mut last = [0u64; 2];
    let deadline = Instant::now() + Duration::from_secs(120);
    while last != [100000, 100000] && Instant::now() < deadline {
        line.clear();
        if r.read_line(&mut line).expect("read") == 0 {
            break;
        }
        let Some((label, text)) = line.split_once(" | ") else { continue };
        let label = label.trim_end();
        let i = if label == "f1" { 0 } else { 1 };
        let Some(n) = text.split(' ').next().and_then(|w| w.split('-').nth(1)).and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        assert!(text.starts_with(label), "{line}");
        assert!(last[i] == 0 || n == last[i] + 1, "{label}: after {} came {n}", last[i]);
        last[i] = n;
    }
    assert_eq!(last, [100000, 100000]);
}

/// Voluntary context switches of every thread of `pid`.
fn switches(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|tasks| {
            tasks
                .flatten()
                .filter_map(|t| {
                    let s = std::fs::read_to_string(t.path().join("status")).ok()?;
                    s.lines().find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))?.trim().parse::<u64>().ok()
                })
                .sum()
        })
        .unwrap_or(0)
}

/// CPU time used by `pid` so far, in clock ticks (utime + stime).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = read_lossy(std::path::Path::new(&format!("/proc/{pid}/stat")));
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    // After the command: state is field 3, utime 14 and stime 15.
    fields.get(11).and_then(|u| u.parse::<u64>().ok()).unwrap_or(0)
        + fields.get(12).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0)
}

/// An open merged tail of quiet programs costs no wake-up: none while nothing is written, and
/// one for a line that waits for its end, or for a look put off, not a timer that keeps firing.
/// With 2 logs, and with 42 (more than 16: looks at every log are spaced out).
#[test]
fn a_merged_tail_of_quiet_programs_lets_the_daemon_sleep() {
    let programs = "[program:a]\ncommand=sh -c 'printf \"no newline\"; exec sleep 1000'\nstartsecs=0\n\n\
                    [program:b]\ncommand=sh -c 'echo b; exec sleep 1000'\nstartsecs=0\n\n\
                    [program:q]\ncommand=sleep 1000\nnumprocs=20\nprocess_name=q_%(process_num)s\nstartsecs=0\n";
    let d = Daemon::start("mtailidle", programs);
    wait_logged(&d, "a", "stdout", "no newline");
    wait_logged(&d, "b", "stdout", "b");
    for names in [&["a", "b"][..], &["all"]] {
        stays_asleep(&d, names);
    }
}

fn stays_asleep(d: &Daemon, names: &[&str]) {
    let (mut child, text) = ctl_tail(d, names);
    wait_for(20.0, "the held line", || text.lock().unwrap().contains(" | no newline").then_some(()));
    // Quiet for 1.5 s in a row (longer than the daemon keeps an idle log file open after its
    // last write, 1 s, which ends with a wake-up to close it), then none for 2 s more: a timer
    // of the stream that fired again, or a wake-up per turn, would count here.
    let mut last = (switches(d.pid), Instant::now());
    wait_for(20.0, "the daemon to go to sleep", || {
        let now = switches(d.pid);
        if now != last.0 {
            last = (now, Instant::now());
            return None;
        }
        (last.1.elapsed() >= Duration::from_millis(1500)).then_some(())
    });
    let (before, cpu) = (switches(d.pid), cpu_ticks(d.pid));
    std::thread::sleep(Duration::from_secs(2)); // measuring idleness needs an interval of time
    assert_eq!(switches(d.pid), before, "the daemon woke with `tail -f {names:?}` open and nothing written");
    // A loop that polls with a zero timeout never sleeps, so it switches no more: its CPU shows.
    assert!(cpu_ticks(d.pid) <= cpu + 1, "the daemon used CPU: {} ticks", cpu_ticks(d.pid) - cpu);
    interrupt(&mut child);
}
