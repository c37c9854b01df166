//! The daemon core as a user sees it: the real binary, real children, real files.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::*;
use minisv::rpc::xmlrpc::Value;

#[test]
fn sigkilled_program_is_restarted_within_100ms() {
    let d = Daemon::start("restart", "[program:api]\ncommand=sleep 1000\nstartsecs=0\nautorestart=true\n");
    let first = wait_for(5.0, "api to spawn", || d.spawned_pid("api"));
    d.wait_log("success: api entered RUNNING state", 5.0);
    let killed_at = Instant::now();
    kill(first, libc::SIGKILL);
    let second = wait_for(5.0, "a new api pid", || d.spawned_pid("api").filter(|p| *p != first));
    let took = killed_at.elapsed();
    assert!(pid_alive(second));
    assert!(took < Duration::from_millis(100), "restart took {took:?}");
    d.wait_log("exited: api (terminated by SIGKILL; not expected)", 5.0);
}

#[test]
fn quick_exits_back_off_linearly_then_fatal() {
    let d = Daemon::start("backoff", "[program:bad]\ncommand=sh -c 'exit 3'\nstartretries=2\n");
    d.wait_log("gave up: bad entered FATAL state, too many start retries too quickly", 10.0);
    let log = d.log();
    assert_eq!(log.matches("spawned: 'bad'").count(), 3, "startretries + 1 attempts\n{log}");
    assert_eq!(log.matches("WARN exited: bad (exit status 3; not expected)").count(), 3);
    assert!(!log.contains("success: bad"), "an exit before startsecs never counts as RUNNING (Q1)");
}

#[test]
fn missing_command_is_a_spawn_error_then_fatal() {
    let d = Daemon::start("notfound", "[program:nf]\ncommand=nonexistent_cmd_xyz\nstartretries=1\n");
    d.wait_log("gave up: nf entered FATAL state", 10.0);
    assert_eq!(d.count_log("INFO spawnerr: can't find command 'nonexistent_cmd_xyz'"), 2);
}

#[test]
fn stop_escalates_to_sigkill_after_stopwaitsecs() {
    let mut d = Daemon::start(
        "escalate",
        "[program:stubborn]\ncommand=sh -c 'trap \"\" TERM; echo ready; while :; do sleep 0.1; done'\nstopwaitsecs=1\n\
         startsecs=0\nstdout_logfile=%(here)s/s.out\n",
    );
    let pid = wait_for(5.0, "stubborn to spawn", || d.spawned_pid("stubborn"));
    // The trap is set once it says so; a SIGTERM before that would end it at once.
    wait_for(5.0, "the trap", || fs::read_to_string(d.path("s.out")).ok().filter(|s| s.contains("ready")));
    let t0 = Instant::now();
    let status = d.stop();
    assert!(status.success(), "a shutdown by signal exits 0");
    let log = d.log();
    assert!(log.contains(&format!("WARN killing 'stubborn' ({pid}) with SIGKILL")), "{log}");
    assert!(log.contains("WARN stopped: stubborn (terminated by SIGKILL)"), "{log}");
    assert!(t0.elapsed() >= Duration::from_millis(900), "SIGKILL only after stopwaitsecs");
    assert!(!pid_alive(pid));
}

#[test]
fn stopasgroup_takes_grandchildren_along() {
    let d = Daemon::start(
        "pgroup",
        "[program:tree]\ncommand=sh -c 'sleep 1000 & sleep 1000 & echo $!; wait'\nstopasgroup=true\nstartsecs=0\n\
         stdout_logfile=%(here)s/tree.out\n",
    );
    let sh = wait_for(5.0, "tree to spawn", || d.spawned_pid("tree"));
    let grandchild: u32 =
        wait_for(5.0, "the grandchild pid", || fs::read_to_string(d.path("tree.out")).ok()?.trim().parse().ok());
    assert!(pid_alive(grandchild));
    // The child leads its own process group.
    let pgrp = fs::read_to_string(format!("/proc/{sh}/stat")).expect("stat");
    let fields: Vec<&str> = pgrp.rsplit(')').next().expect("stat").split_whitespace().collect();
    assert_eq!(fields[2], sh.to_string(), "pgid = pid");
    d.signal(libc::SIGTERM);
    wait_for(10.0, "the grandchild to die with its group", || (!pid_alive(grandchild)).then_some(()));
}

#[test]
fn numprocs_makes_named_processes() {
    let d = Daemon::start(
        "numprocs",
        "[program:w]\ncommand=sleep 1000\nnumprocs=3\nnumprocs_start=1\nprocess_name=%(program_name)s_%(process_num)02d\n",
    );
    for name in ["w_01", "w_02", "w_03"] {
        let pid = wait_for(5.0, name, || d.spawned_pid(name));
        assert!(pid_alive(pid));
    }
    assert!(d.spawned_pid("w_00").is_none());
}

#[test]
fn children_get_only_fds_0_to_2_and_a_clean_signal_state() {
    let d = Daemon::start("clean", SELF_REPORT);
    assert_clean_report(&d);
}

/// A program that reports on itself after exec: its open fds, its signal mask and dispositions
/// (read with shell builtins: while the shell runs a command it may block signals itself) and
/// what its stdin is.
const SELF_REPORT: &str = "[program:c]\ncommand=sh -c 'ls /proc/$$/fd; while IFS= read -r l; do case \"$l\" in SigBlk*|SigIgn*) echo \"$l\";; esac; done < /proc/$$/status; readlink /proc/$$/fd/0; echo done; exec sleep 1000'\n\
     startsecs=0\nstdout_logfile=%(here)s/c.out\n";

/// Fds 0-2 only, no signal blocked or ignored, stdin a pipe from the daemon.
fn assert_clean_report(d: &Daemon) {
    let out = wait_for(10.0, "the report", || fs::read_to_string(d.path("c.out")).ok().filter(|s| s.contains("done")));
    let mut lines = out.lines();
    let fds: Vec<&str> = lines.by_ref().take_while(|l| !l.starts_with("Sig")).collect();
    assert_eq!(fds, vec!["0", "1", "2"], "no fd leaks into children (Q7)\n{out}");
    assert!(out.contains("SigBlk:\t0000000000000000\n"), "empty signal mask\n{out}");
    assert!(out.contains("SigIgn:\t0000000000000000\n"), "no ignored signals\n{out}");
    assert!(out.lines().any(|l| l.starts_with("pipe:[")), "stdin is the daemon's pipe\n{out}");
}

/// The same when the daemon itself was started with fd 0 closed and signals ignored (as by
/// `nohup ... <&-`): the daemon puts /dev/null on a closed fd 0-2 at startup, so that no pipe
/// or log lands there, and the ignored dispositions must not reach the program.
#[test]
fn children_are_clean_when_the_daemon_starts_with_stdin_closed_and_signals_ignored() {
    use std::os::unix::process::CommandExt;
    let dir = TempDir::new("nohup");
    let conf = dir.write("sv.conf", &format!("{}{}", base_config(dir.path()), SELF_REPORT));
    let mut cmd = std::process::Command::new(BIN);
    cmd.arg("-n").arg("-c").arg(&conf).current_dir(dir.path());
    cmd.stdout(fs::File::create(dir.join("stdout.txt")).expect("stdout"));
    cmd.stderr(fs::File::create(dir.join("stderr.txt")).expect("stderr"));
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::close(0);
            libc::signal(libc::SIGHUP, libc::SIG_IGN);
            libc::signal(libc::SIGUSR1, libc::SIG_IGN);
            Ok(())
        });
    }
    let child = cmd.spawn().expect("spawn minisv");
    let pid = child.id();
    let d = Daemon { dir, conf, child: Some(child), pid };
    assert_clean_report(&d);
    let pid = d.info("c").int_of("pid");
    assert_eq!(String::from_utf8_lossy(&d.ctl(&["pid", "c"]).stdout).trim(), pid.to_string());
}

/// A command that is found but cannot be executed (its interpreter is missing) fails in the
/// child at exec: the error names the step and errno, and the failed child is reaped at once
/// (no zombie, no unknown pid for the loop).
#[test]
fn an_exec_failure_in_the_child_is_reported_and_the_child_reaped() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new("execfail");
    let script = dir.write("bad.sh", "#!/nonexistent/interpreter\n");
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).expect("chmod");
    let conf = dir.write(
        "sv.conf",
        &format!(
            "{}[program:bad]\ncommand={}\nstartretries=1\nstartsecs=0\n",
            base_config(dir.path()),
            script.display()
        ),
    );
    let d = Daemon::start_with(dir, conf, &[]);
    let info = d.wait_state("bad", "FATAL", 10.0);
    let desc = info.str_of("description");
    assert_eq!(desc, format!("couldn't exec {}: ENOENT", script.display()));
    assert_eq!(d.count_log("spawnerr: couldn't exec"), 2, "{}", d.log());
    let zombies: Vec<String> = fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter_map(|e| fs::read_to_string(e.path().join("stat")).ok())
        .filter(|st| {
            let f: Vec<&str> = st.rsplit(')').next().unwrap_or("").split_whitespace().collect();
            f.first() == Some(&"Z") && f.get(1) == Some(&d.pid.to_string().as_str())
        })
        .collect();
    assert!(zombies.is_empty(), "zombies of the daemon: {zombies:?}");
    assert!(!d.log().contains("unknown pid"), "{}", d.log());
}

#[test]
fn environment_has_supervisor_variables_and_program_values() {
    let d = Daemon::start(
        "env",
        "[program:e]\ncommand=sh -c 'env; exec sleep 1000'\nenvironment=FOO=\"bar baz\",SUPERVISOR_GROUP_NAME=mine\n\
         stdout_logfile=%(here)s/e.out\n",
    );
    let env = wait_for(5.0, "env output", || {
        fs::read_to_string(d.path("e.out")).ok().filter(|s| s.contains("SUPERVISOR_PROCESS_NAME"))
    });
    assert!(env.contains("SUPERVISOR_ENABLED=1\n"));
    assert!(env.contains("SUPERVISOR_PROCESS_NAME=e\n"));
    assert!(env.contains("FOO=bar baz\n"));
    assert!(env.contains("SUPERVISOR_GROUP_NAME=mine\n"), "environment= overrides SUPERVISOR_* vars");
    assert!(env.contains(&format!("SUPERVISOR_SERVER_URL=unix://{}\n", d.path("sv.sock").display())));
}

#[test]
fn rotation_keeps_every_byte_in_order() {
    // 40000 numbered lines (~500 KB) through 64 KB files with many backups.
    let d = Daemon::start(
        "rotate",
        "[program:w]\ncommand=sh -c 'i=0; while [ $i -lt 40000 ]; do echo \"line $i\"; i=$((i+1)); done; exec sleep 1000'\n\
         stdout_logfile=%(here)s/w.log\nstdout_logfile_maxbytes=64KB\nstdout_logfile_backups=50\nstartsecs=0\n",
    );
    let expected: String = (0..40000).map(|i| format!("line {i}\n")).collect();
    let all = wait_for(20.0, "all output logged", || {
        let mut all = Vec::new();
        for n in (1..=50).rev() {
            if let Ok(b) = fs::read(d.path(&format!("w.log.{n}"))) {
                all.extend(b);
            }
        }
        all.extend(fs::read(d.path("w.log")).ok()?);
        (all.len() >= expected.len()).then_some(all)
    });
    assert_eq!(String::from_utf8(all).expect("utf-8"), expected, "concatenated backups equal the output");
    assert!(d.path("w.log.5").exists(), "it did rotate");
    for n in 1..=5 {
        let len = fs::metadata(d.path(&format!("w.log.{n}"))).expect("backup").len();
        assert!(len >= 64 * 1024, "backup {n} rotated at maxbytes ({len})");
    }
}

#[test]
fn redirect_stderr_and_append_across_restarts() {
    let d = Daemon::start(
        "append",
        "[program:a]\ncommand=sh -c 'echo out; echo err >&2; exit 1'\nredirect_stderr=true\nstartsecs=0\n\
         autorestart=true\nstdout_logfile=%(here)s/a.log\n",
    );
    let log = wait_for(10.0, "two runs in the log", || {
        fs::read_to_string(d.path("a.log")).ok().filter(|s| s.matches("err\n").count() >= 2)
    });
    assert!(log.starts_with("out\nerr\nout\nerr\n"), "{log}");
}

/// AUTO log names are chosen at start and shown at once, but a file is made only by the first
/// output or read: a thousand quiet programs no longer create two thousand files at startup.
#[test]
fn auto_logs_are_created_by_the_first_output_or_read() {
    let d = Daemon::start(
        "autolog",
        "[program:quiet]\ncommand=sleep 1000\nstartsecs=0\n\
         [program:talks]\ncommand=sh -c 'echo hello; exec sleep 1000'\nstartsecs=0\n",
    );
    let info = |name: &str| d.rpc("supervisor.getProcessInfo", &[Value::from(name)]).expect("info");
    wait_for(10.0, "both RUNNING", || {
        (info("quiet").str_of("statename") == "RUNNING" && info("talks").str_of("statename") == "RUNNING").then_some(())
    });
    let quiet = info("quiet").str_of("stdout_logfile").to_string();
    let quiet_err = info("quiet").str_of("stderr_logfile").to_string();
    let talks = info("talks").str_of("stdout_logfile").to_string();
    assert!(
        quiet.starts_with(&d.path("").display().to_string()) && quiet.contains("quiet-stdout---supervisor-"),
        "{quiet}"
    );
    wait_for(10.0, "the output logged", || fs::read_to_string(&talks).ok().filter(|s| s == "hello\n"));
    assert!(!Path::new(&quiet).exists(), "no output, no read: no file yet");
    assert!(!Path::new(&quiet_err).exists());
    // Reading the quiet log gives what Supervisor gives (empty), and makes the file.
    let text =
        d.rpc("supervisor.readProcessStdoutLog", &[Value::from("quiet"), Value::Int(0), Value::Int(0)]).expect("read");
    assert_eq!(text.as_str(), Some(""));
    assert!(Path::new(&quiet).exists());
    let tail = d
        .rpc("supervisor.tailProcessStderrLog", &[Value::from("quiet"), Value::Int(0), Value::Int(100)])
        .expect("tail");
    assert_eq!(tail.as_array().map(|a| a[0].as_str()), Some(Some("")));
    assert!(Path::new(&quiet_err).exists());
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(fs::metadata(&quiet).expect("meta").permissions().mode() & 0o777, 0o600);
}

#[test]
fn sigusr2_reopens_logs() {
    let d = Daemon::start(
        "reopen",
        "[program:r]\ncommand=sh -c 'while :; do echo tick; sleep 0.05; done'\nstdout_logfile=%(here)s/r.log\n",
    );
    wait_for(5.0, "output", || fs::metadata(d.path("r.log")).ok().filter(|m| m.len() > 0).map(|_| ()));
    fs::rename(d.path("r.log"), d.path("r.log.old")).expect("rename");
    d.signal(libc::SIGUSR2);
    d.wait_log("INFO received SIGUSR2 indicating log reopen request", 5.0);
    d.wait_log("INFO minisv logreopen", 5.0);
    wait_for(5.0, "output in the new file", || fs::read_to_string(d.path("r.log")).ok().filter(|s| s.contains("tick")));
}

#[test]
fn shutdown_stops_in_reverse_priority_order() {
    let mut d = Daemon::start(
        "order",
        "[program:first]\ncommand=sleep 1000\npriority=1\nstartsecs=0\n\
         [program:second]\ncommand=sleep 1000\npriority=2\nstartsecs=0\n\
         [program:third]\ncommand=sleep 1000\npriority=3\nstartsecs=0\n",
    );
    for n in ["first", "second", "third"] {
        d.wait_log(&format!("success: {n} entered RUNNING"), 5.0);
    }
    let log = d.log();
    let spawn_at = |n: &str| log.find(&format!("spawned: '{n}'")).expect("spawned");
    assert!(spawn_at("first") < spawn_at("second") && spawn_at("second") < spawn_at("third"));
    assert!(d.stop().success());
    let log = d.log();
    let stop_at = |n: &str| log.find(&format!("stopped: {n} (")).expect("stopped");
    assert!(stop_at("third") < stop_at("second") && stop_at("second") < stop_at("first"), "{log}");
    assert!(!d.path("sv.pid").exists(), "the pidfile is removed at exit");
}

#[test]
fn sighup_reloads_a_valid_config_and_keeps_running_on_a_bad_one() {
    let d = Daemon::start("reload", "[program:old]\ncommand=sleep 1000\nstartsecs=0\n");
    let old = wait_for(5.0, "old", || d.spawned_pid("old"));
    // A broken config is refused and nothing running is touched.
    let good = fs::read_to_string(&d.conf).expect("conf");
    fs::write(&d.conf, format!("{good}[program:broken]\ncommand=sleep 1\nstartsecs=five\n")).expect("write");
    d.signal(libc::SIGHUP);
    d.wait_log("reload refused, the running config is kept", 5.0);
    assert!(
        d.log().contains("[program:broken] startsecs: 'five' is not a whole number"),
        "the error names the key and the value\n{}",
        d.log()
    );
    assert!(pid_alive(old));
    // A valid one replaces it.
    fs::write(&d.conf, good.replace("[program:old]", "[program:new]")).expect("write");
    d.signal(libc::SIGHUP);
    d.wait_log("received SIGHUP indicating restart request", 5.0);
    let new = wait_for(10.0, "new", || d.spawned_pid("new"));
    assert!(pid_alive(new));
    wait_for(5.0, "old to stop", || (!pid_alive(old)).then_some(()));
    assert_eq!(d.pid, sys_pid_from_file(&d), "a reload happens in the same process");
}

fn sys_pid_from_file(d: &Daemon) -> u32 {
    wait_for(5.0, "pidfile", || fs::read_to_string(d.path("sv.pid")).ok()?.trim().parse().ok())
}

#[test]
fn idle_daemon_makes_no_wakeups() {
    let d = Daemon::start(
        "idle",
        "[program:a]\ncommand=sleep 1000\nstartsecs=0\n[program:b]\ncommand=sleep 1000\nstartsecs=0\n",
    );
    d.wait_log("success: b entered RUNNING", 5.0);
    d.wait_log("success: a entered RUNNING", 5.0);
    // Voluntary context switches of every thread of the daemon (the loop and the HTTP
    // threads), by thread id and name, so a failure says which one woke.
    let switches = || -> std::collections::BTreeMap<String, u64> {
        fs::read_dir(format!("/proc/{}/task", d.pid))
            .expect("tasks")
            .filter_map(|t| {
                let t = t.ok()?;
                let s = fs::read_to_string(t.path().join("status")).ok()?;
                let name = s.lines().find_map(|l| l.strip_prefix("Name:"))?.trim().to_string();
                let v = s.lines().find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))?;
                Some((format!("{} {name}", t.file_name().to_string_lossy()), v.trim().parse::<u64>().ok()?))
            })
            .collect()
    };
    // "RUNNING" is logged before the loop goes to sleep (it still trims the heap and finishes
    // the round), and a thread starved of CPU on a busy machine may run its last step of
    // starting up later still: count from when the loop thread sleeps in epoll_wait, every
    // thread sleeps, and no thread has woken for QUIET. A wake-up that repeats more often than
    // QUIET never lets this wait end; one that repeats less often falls in the interval below.
    const QUIET: Duration = Duration::from_millis(300);
    let main_task = format!("/proc/{}/task/{}", d.pid, d.pid);
    let mut last = (switches(), Instant::now());
    wait_for(10.0, "the daemon to go to sleep and stay asleep", || {
        let wchan = fs::read_to_string(format!("{main_task}/wchan")).unwrap_or_default();
        let in_epoll = wchan.contains("epoll") || wchan.is_empty() || wchan == "0";
        let all_asleep = fs::read_dir(format!("/proc/{}/task", d.pid)).ok()?.flatten().all(|t| {
            let stat = fs::read_to_string(t.path().join("stat")).unwrap_or_default();
            stat.rsplit(')').next().and_then(|r| r.split_whitespace().next()) == Some("S")
        });
        let now = switches();
        if now != last.0 || !(in_epoll && all_asleep) {
            last = (now, Instant::now());
            return None;
        }
        (last.1.elapsed() >= QUIET).then_some(())
    });
    let before = switches();
    std::thread::sleep(Duration::from_secs(2)); // measuring idleness needs an interval of time
    let after = switches();
    assert_eq!(after, before, "an idle daemon sleeps in poll with no timeout (thread id, name: switches)");
}

/// The daemon grows its fd table once for the programs it has (each growth of a table shared
/// with threads sleeps an RCU grace period, 12-15 ms), at start and when programs are added,
/// before any of them runs: none starts here, so without that the table stays small (256).
#[test]
fn the_fd_table_is_grown_ahead_for_the_configured_programs() {
    let programs = |from: usize, to: usize| -> String {
        (from..to).map(|i| format!("[program:p{i}]\ncommand=sleep 1000\nautostart=false\n")).collect()
    };
    let d = Daemon::start("fdtable", &programs(0, 300));
    let limit: u64 = wait_for(5.0, "the fd limit", || {
        let limits = fs::read_to_string(format!("/proc/{}/limits", d.pid)).ok()?;
        limits.lines().find(|l| l.starts_with("Max open files"))?.split_whitespace().nth(3)?.parse().ok()
    });
    let fd_size = || -> u64 { proc_status(d.pid, "FDSize").expect("FDSize").trim().parse().expect("a number") };
    let want = |programs: u64| (64 + 4 * programs).min(limit);
    assert!(fd_size() >= want(300), "FDSize {} for 300 programs (limit {limit})", fd_size());
    let conf = fs::read_to_string(&d.conf).expect("config");
    fs::write(&d.conf, format!("{conf}{}", programs(300, 700))).expect("write");
    let out = d.ctl(&["update"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(d.state("p699"), "STOPPED");
    assert!(fd_size() >= want(700), "FDSize {} for 700 programs (limit {limit})", fd_size());
}

#[test]
fn daemonizes_and_writes_its_pidfile_without_n() {
    let dir = TempDir::new("daemonize");
    let conf = dir.write("sv.conf", &format!("{}[program:a]\ncommand=sleep 1000\n", base_config(dir.path())));
    let out = minisv(&["-c", conf.to_str().expect("utf-8")], dir.path());
    assert!(out.status.success(), "the parent exits 0 after forking");
    let pid: u32 = wait_for(10.0, "pidfile", || fs::read_to_string(dir.join("sv.pid")).ok()?.trim().parse().ok());
    assert!(pid_alive(pid));
    assert_eq!(proc_status(pid, "PPid").map(|p| p == "1" || p != std::process::id().to_string()), Some(true));
    kill(pid, libc::SIGTERM);
    wait_for(10.0, "the daemon to exit", || (!pid_alive(pid)).then_some(()));
    wait_for(5.0, "the pidfile removed", || (!dir.join("sv.pid").exists()).then_some(()));
}

#[test]
fn bad_config_reports_every_error_with_file_and_line() {
    let dir = TempDir::new("badconf");
    let conf = dir.write(
        "sv.conf",
        &format!("{}[program:a]\ncommand=sleep 1\nstartsecs=five\nautorestart=sometimes\n", base_config(dir.path())),
    );
    let out = minisv(&["-n", "-c", conf.to_str().expect("utf-8")], dir.path());
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    let line = fs::read_to_string(&conf).expect("conf").lines().position(|l| l == "startsecs=five").expect("line") + 1;
    assert!(
        err.contains(&format!("{}:{line}: [program:a] startsecs: 'five' is not a whole number", conf.display())),
        "{err}"
    );
    assert!(err.contains("autorestart"), "both errors at once: {err}");
    assert!(err.lines().last().is_some_and(|l| l.starts_with("For help, use ")), "{err}");
    assert!(!dir.join("sv.pid").exists(), "nothing was started");
    // `check`: the same errors in plain words, and no pointer to the usage text after an error
    // in the file (issue 20, point 10).
    let out = minisv(&["check", "-c", conf.to_str().expect("utf-8")], dir.path());
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    let first = err.lines().next().unwrap_or_default();
    assert_eq!(
        first,
        format!(
            "Error: {}:{line}: [program:a] startsecs: 'five' is not a whole number; expected an integer",
            conf.display()
        )
    );
    assert_eq!(err.lines().count(), 2, "{err}");
    assert!(!err.contains("For help") && !err.contains("int()"), "{err}");
    // A line the INI reader cannot read: one error for it, with its line, no Python repr of `\n`.
    fs::write(&conf, format!("{}[program:a]\ncommand=sleep 1\nthis is not an option\n", base_config(dir.path())))
        .expect("conf");
    let line =
        fs::read_to_string(&conf).expect("conf").lines().position(|l| l.starts_with("this is")).expect("line") + 1;
    let out = minisv(&["check", "-c", conf.to_str().expect("utf-8")], dir.path());
    assert_eq!(
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned()),
        (
            Some(2),
            format!(
                "Error: {}:{line}: cannot read 'this is not an option'; expected a [section] header, key = value \
                 (or key: value), a comment, or an indented continuation line\n",
                conf.display()
            )
        )
    );
}

#[test]
fn missing_config_file_is_a_usage_error() {
    let dir = TempDir::new("noconf");
    let out = minisv(&["-c", "/nonexistent/sv.conf"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).lines().next(),
        Some("Error: could not find config file /nonexistent/sv.conf")
    );
}

/// A user for privilege tests, created once. Needs root (`#[ignore]`d tests, run by `.ci/run`):
/// without it the test fails and says so.
pub(crate) fn test_user() -> Option<(u32, u32)> {
    // SAFETY: geteuid cannot fail.
    assert_eq!(unsafe { libc::geteuid() }, 0, "this test needs root: user= and useradd");
    let id = |flag: &str| -> Option<u32> {
        let out = std::process::Command::new("id").arg(flag).arg("minisvtest").output().ok()?;
        String::from_utf8(out.stdout).ok()?.trim().parse().ok()
    };
    if id("-u").is_none() {
        let status = std::process::Command::new("useradd")
            .args(["-r", "-M", "-d", "/home/minisvtest", "-s", "/bin/sh", "minisvtest"])
            .status()
            .expect("useradd");
        assert!(status.success() || id("-u").is_some(), "could not create the test user");
    }
    Some((id("-u")?, id("-g")?))
}

#[test]
#[ignore = "needs root: user= and useradd; .ci/run runs it"]
fn user_option_drops_privileges_and_sets_home() {
    let (uid, gid) = test_user().expect("the test user's uid and gid (id -u/-g minisvtest)");
    let d = Daemon::start(
        "user",
        "[program:u]\ncommand=sh -c 'id -u; id -g; echo \"$HOME $USER $LOGNAME $SHELL\"; exec sleep 1000'\nuser=minisvtest\n\
         stdout_logfile=%(here)s/u.out\nstartsecs=0\n",
    );
    let out =
        wait_for(5.0, "the report", || fs::read_to_string(d.path("u.out")).ok().filter(|s| s.lines().count() >= 3));
    assert_eq!(
        out,
        format!("{uid}\n{gid}\n/home/minisvtest minisvtest minisvtest /bin/sh\n"),
        "uid, gid, and HOME/USER/LOGNAME/SHELL from the password entry (Supervisor issue #435)"
    );
}

#[test]
fn fcgi_program_gets_the_listening_socket_as_fd_0() {
    let d = Daemon::start(
        "fcgi",
        "[fcgi-program:f]\nsocket=unix://%(here)s/f.sock\ncommand=sh -c 'readlink /proc/$$/fd/0; exec sleep 1000'\n\
         numprocs=2\nprocess_name=%(program_name)s_%(process_num)d\nstdout_logfile=%(here)s/%(process_num)d.out\n",
    );
    for n in ["0", "1"] {
        let out = wait_for(5.0, "the report", || {
            fs::read_to_string(d.path(&format!("{n}.out"))).ok().filter(|s| !s.is_empty())
        });
        assert!(out.starts_with("socket:["), "fd 0 is the shared socket: {out}");
    }
    let a = fs::read_to_string(d.path("0.out")).expect("0");
    assert_eq!(a, fs::read_to_string(d.path("1.out")).expect("1"), "both processes share one socket");
    assert!(std::os::unix::net::UnixStream::connect(d.path("f.sock")).is_ok(), "the socket listens");
}

#[test]
fn orphans_reparented_to_the_daemon_are_reaped() {
    // Reads debug lines of the main log.
    let d = Daemon::start_debug(
        "orphan",
        "[program:p]\ncommand=sh -c '(sleep 0.3 & echo $! > %(here)s/orphan.pid); exec sleep 1000'\nstartsecs=0\n",
    );
    let orphan: u32 =
        wait_for(5.0, "the orphan's pid", || fs::read_to_string(d.path("orphan.pid")).ok()?.trim().parse().ok());
    // Its parent (the subshell) is gone: it now belongs to minisv (a child subreaper).
    d.wait_log(&format!("reaped unknown pid {orphan} (exit status 0)"), 10.0);
    assert!(!std::path::Path::new(&format!("/proc/{orphan}")).exists(), "no zombie is left");
}

#[test]
fn fast_writer_loses_nothing_across_rotation_and_reopen() {
    // ~15 MB as fast as seq writes it, through 1 MB files, with log reopens in the middle.
    let d = Daemon::start(
        "fast",
        "[program:seq]\ncommand=sh -c 'seq 1 2000000; exec sleep 1000'\nstdout_logfile=%(here)s/seq.log\n\
         stdout_logfile_maxbytes=1MB\nstdout_logfile_backups=40\nstartsecs=0\n",
    );
    for _ in 0..3 {
        d.signal(libc::SIGUSR2);
    }
    let expected: String = (1..=2_000_000).map(|i| format!("{i}\n")).collect();
    let all = wait_for(60.0, "all output logged", || {
        let mut all = Vec::with_capacity(expected.len());
        for n in (1..=40).rev() {
            if let Ok(b) = fs::read(d.path(&format!("seq.log.{n}"))) {
                all.extend(b);
            }
        }
        all.extend(fs::read(d.path("seq.log")).ok()?);
        (all.len() >= expected.len()).then_some(all)
    });
    assert!(all == expected.as_bytes(), "the concatenated files are exactly what was written");
}

/// Output read 1 MiB at a time from a grown pipe still reaches the main log's debug copy (and
/// PROCESS_LOG events) in pieces of at most 128 KiB, as Supervisor reads it.
#[test]
fn a_flood_reaches_the_main_log_in_pieces_of_at_most_128_kib() {
    // Reads debug lines of the main log.
    let d = Daemon::start_debug(
        "chunks",
        "[program:big]\ncommand=python3 -c \"import os, sys; [os.write(1, bytes([64]) * 1048576) for _ in range(4)]; \
         sys.stdout.flush(); os.execvp('sleep', ['sleep', '1000'])\"\nstartsecs=0\nstdout_logfile=NONE\n",
    );
    let runs = wait_for(30.0, "4 MiB in the main log", || {
        let log = d.log();
        let runs: Vec<usize> = log.split(|c: char| c != '@').map(str::len).filter(|n| *n > 0).collect();
        (runs.iter().sum::<usize>() >= 4 << 20).then_some(runs)
    });
    assert_eq!(runs.iter().sum::<usize>(), 4 << 20);
    assert!(runs.iter().all(|n| *n <= 128 * 1024), "pieces of {:?} bytes", runs);
}

/// While a program floods, the daemon reads its grown pipe into a 1 MiB buffer of its own; a
/// second after the flood, that memory is given back.
#[test]
fn the_flood_buffer_is_given_back_after_the_flood() {
    // At loglevel info: at debug, the copy of the output in the main log allocates far more.
    let dir = TempDir::new("floodbuf");
    let d = Daemon::start_in(
        dir,
        "[program:yes]\ncommand=yes\nautostart=false\nstartsecs=0\nstdout_logfile=NONE\nstopsignal=KILL\n",
        &["-e", "info"],
    );
    let anon_kib = || -> u64 {
        let rollup = fs::read_to_string(format!("/proc/{}/smaps_rollup", d.pid)).expect("smaps_rollup");
        rollup
            .lines()
            .find_map(|l| l.strip_prefix("Anonymous:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("Anonymous")
    };
    let before = anon_kib();
    d.rpc("supervisor.startProcess", &[Value::from("yes"), Value::from(true)]).expect("start");
    // Once the pipe is grown, every read fills the buffer: the daemon's memory is up by it.
    wait_for(20.0, "the flood buffer to be in use", || (anon_kib() >= before + 768).then_some(()));
    let mut flooding = 0;
    for _ in 0..20 {
        flooding = flooding.max(anon_kib());
        std::thread::sleep(Duration::from_millis(5));
    }
    d.rpc("supervisor.stopProcess", &[Value::from("yes"), Value::from(true)]).expect("stop");
    let after = wait_for(10.0, "the buffer to be unmapped", || {
        let now = anon_kib();
        (now + 768 <= flooding).then_some(now)
    });
    assert!(after + 768 <= flooding, "{flooding} kB while flooding, {after} kB after");
}

/// A program found to fill its stdout pipe gets a 1 MiB pipe, so that a flood wakes the daemon
/// less often; at most 16 pipes at a time (a non-root user's pipes share a page limit, past
/// which the kernel gives new pipes one or two pages).
#[test]
fn flooding_programs_get_larger_pipes_up_to_a_limit() {
    let d = Daemon::start(
        "pipes",
        "[program:f]\ncommand=python3 %(here)s/flood.py\nnumprocs=17\nprocess_name=f%(process_num)02d\n\
         autostart=false\nstartsecs=0\nautorestart=false\nstdout_logfile=NONE\n\
         stderr_logfile=%(here)s/f%(process_num)02d.err\n",
    );
    // 64 KiB blocks until the pipe is larger or 64 MiB went through; then its size, and sleep
    // with the pipe open.
    fs::write(
        d.path("flood.py"),
        "import fcntl, os, sys\nF_GETPIPE_SZ = 1032\nblock = b'x' * 65536\nn = 0\n\
         while fcntl.fcntl(1, F_GETPIPE_SZ) == 65536 and n < 1024:\n    os.write(1, block)\n    n += 1\n\
         sys.stderr.write('%d\\n' % fcntl.fcntl(1, F_GETPIPE_SZ))\nsys.stderr.flush()\n\
         os.execvp('sleep', ['sleep', '1000'])\n",
    )
    .expect("write flood.py");
    let names: Vec<String> = (0..17).map(|i| format!("f{i:02}")).collect();
    let spec = |name: &str| Value::from(format!("f:{name}").as_str());
    let mut sizes = Vec::new();
    for name in &names {
        d.rpc("supervisor.startProcess", &[spec(name), Value::from(false)]).expect("start");
        let size: u64 = wait_for(60.0, "the pipe size", || {
            fs::read_to_string(d.path(&format!("{name}.err"))).ok()?.trim().parse().ok()
        });
        sizes.push(size);
    }
    let grown = sizes.iter().filter(|s| **s == 1 << 20).count();
    assert_eq!(grown, 16, "{sizes:?}");
    assert_eq!(sizes[16], 65536, "the 17th flood keeps its pipe: {sizes:?}");
    // A grown pipe counts no more once closed: the next flood is given one again.
    d.rpc("supervisor.stopProcess", &[spec("f00"), Value::from(true)]).expect("stop");
    fs::remove_file(d.path("f00.err")).expect("remove");
    d.rpc("supervisor.startProcess", &[spec("f00"), Value::from(false)]).expect("start");
    let again: u64 =
        wait_for(60.0, "the pipe size", || fs::read_to_string(d.path("f00.err")).ok()?.trim().parse().ok());
    assert_eq!(again, 1 << 20);
}

#[test]
fn critical_program_exit_status_becomes_the_daemons() {
    let mut d = Daemon::start(
        "critical",
        "[program:job]\ncommand=sh -c 'sleep 0.2; exit 3'\ncritical=true\nautorestart=false\nstartsecs=0\n\
         [program:other]\ncommand=sleep 1000\nstartsecs=0\n",
    );
    let other = wait_for(5.0, "other", || d.spawned_pid("other"));
    let status = d.wait_exit(15.0);
    assert_eq!(status.code(), Some(3), "the critical program's exit status");
    assert!(d.log().contains("CRIT critical program job is EXITED and will not be restarted"), "{}", d.log());
    assert!(!pid_alive(other), "everything else was stopped");
}

/// exit_on=all-exited: a batch of jobs ends the daemon once the last one has ended, with the
/// worst status; a program stopped by hand counts as done.
#[test]
fn exit_on_all_exited_ends_the_daemon_after_the_last_job_with_the_worst_status() {
    let dir = TempDir::new("exiton");
    let go = dir.join("go");
    let conf = dir.write(
        "supervisord.conf",
        &format!(
            "{}[program:fails]\ncommand=sh -c 'exit 5'\nautorestart=false\nstartsecs=0\n\
             [program:ok]\ncommand=sh -c 'while [ ! -e {go} ]; do sleep 0.02; done'\nautorestart=false\nstartsecs=0\n\
             [program:idle]\ncommand=sleep 1000\nautostart=false\n",
            base_config(dir.path()).replacen("[supervisord]\n", "[supervisord]\nexit_on=all-exited\n", 1),
            go = go.display()
        ),
    );
    let mut d = Daemon::start_with(dir, conf, &[]);
    d.wait_state("fails", "EXITED", 10.0);
    assert_eq!(d.state("ok"), "RUNNING", "the daemon waits for the last job");
    std::fs::write(&go, "").expect("let the last job end");
    let status = d.wait_exit(15.0);
    assert_eq!(status.code(), Some(5), "the worst status; {}", d.log());
    assert!(d.log().contains("every program has ended (exit_on=all-exited): exit status 5"), "{}", d.log());
}

#[test]
fn critical_program_killed_by_signal_gives_128_plus_n() {
    let mut d =
        Daemon::start("critsig", "[program:job]\ncommand=sleep 1000\ncritical=true\nautorestart=false\nstartsecs=0\n");
    let pid = wait_for(5.0, "job", || d.spawned_pid("job"));
    kill(pid, libc::SIGKILL);
    assert_eq!(d.wait_exit(15.0).code(), Some(128 + libc::SIGKILL));
}

#[test]
fn critical_program_going_fatal_stops_the_daemon() {
    let dir = TempDir::new("critfatal");
    let conf = dir.write(
        "sv.conf",
        &format!("{}[program:job]\ncommand=sh -c 'exit 4'\ncritical=true\nstartretries=0\n", base_config(dir.path())),
    );
    // It may all be over before anything could be asked: run it to the end.
    let out = minisv(&["-n", "-c", conf.to_str().expect("utf-8")], dir.path());
    assert_eq!(out.status.code(), Some(4), "FATAL after quick exits: the last exit status");
    let log = read_lossy(&dir.join("main.log"));
    assert!(log.contains("CRIT critical program job is FATAL and will not be restarted"), "{log}");
}

#[test]
fn critical_program_failing_to_start_stops_the_programs_started_with_it() {
    // `job` fails at chdir and, with startretries=0, is FATAL at once, while the programs
    // started in the same pass may still be on their way to exec: each must be stopped (none
    // left running), and the daemon must exit with 1 (the program never ran).
    let dir = TempDir::new("critspawn");
    let d = dir.path().display().to_string();
    let mut conf = format!(
        "{}[program:job]\ncommand=sleep 1000\ndirectory={d}/missing\ncritical=true\nstartretries=0\npriority=1\n",
        base_config(dir.path())
    );
    for i in 0..8 {
        conf += &format!(
            "[program:s{i}]\ncommand=sleep 1000\nstartsecs=0\npriority=2\nenvironment=MINISV_TEST_MARK=\"{d}\"\n"
        );
    }
    let conf = dir.write("sv.conf", &conf);
    let mut child = Command::new(BIN)
        .args(["-n", "-c", conf.to_str().expect("utf-8")])
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn minisv");
    let status = wait_for(20.0, "the daemon to exit", || child.try_wait().ok().flatten());
    let log = read_lossy(&dir.join("main.log"));
    // Every child of this daemon that has exec'd carries the mark in its environment (one
    // stuck before its exec would not, but `sleep 1000` gets there at once).
    let mark = format!("MINISV_TEST_MARK={d}");
    let alive: Vec<u32> = fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let environ = fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
            environ.split(|b| *b == 0).any(|var| var == mark.as_bytes()) && pid_alive(*pid)
        })
        .collect();
    for pid in &alive {
        kill(*pid, libc::SIGKILL);
    }
    assert!(alive.is_empty(), "left running: {alive:?}\n{log}");
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(log.contains("spawnerr: couldn't chdir to"), "{log}");
    assert!(log.contains("CRIT critical program job is FATAL and will not be restarted"), "{log}");
    assert!(!log.contains("ERRO"), "{log}");
}

#[test]
fn critical_program_that_is_restarted_does_not_stop_the_daemon() {
    let d = Daemon::start(
        "critok",
        "[program:job]\ncommand=sh -c 'sleep 0.1; exit 3'\ncritical=true\nautorestart=true\nstartsecs=0\n",
    );
    wait_for(10.0, "three runs", || (d.count_log("spawned: 'job'") >= 3).then_some(()));
    assert!(!d.log().contains("critical program"), "a restarted program is not gone for good");
}

#[test]
fn dev_stdout_log_with_maxbytes_is_written_and_never_rotated() {
    // Q11: a container's stdout is a pipe; Supervisor fails with "Illegal seek" when maxbytes > 0.
    // -s keeps the daemon's own log lines off its stdout, so only the program's output is there.
    let dir = TempDir::new("devstdout");
    let conf = dir.write(
        "sv.conf",
        &format!(
            "{}[program:talk]\ncommand=sh -c 'i=0; while [ $i -lt 3000 ]; do echo \"line $i\"; i=$((i+1)); done; exec sleep 1000'\n\
             stdout_logfile=/dev/stdout\nstdout_logfile_maxbytes=1KB\nstartsecs=0\n",
            base_config(dir.path())
        ),
    );
    let mut child = std::process::Command::new(BIN)
        .args(["-n", "-s", "-c"])
        .arg(&conf)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("minisv");
    let pid = child.id();
    let stdout = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        let mut lines = Vec::new();
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let done = line == "line 2999";
            lines.push(line);
            if done {
                break;
            }
        }
        lines
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    while !reader.is_finished() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    kill(pid, libc::SIGTERM);
    let lines = reader.join().expect("reader");
    let status = child.wait().expect("wait");
    let expected: Vec<String> = (0..3000).map(|i| format!("line {i}")).collect();
    assert_eq!(lines, expected, "every line, in order, with no daemon log lines in between (-s)");
    assert!(status.success());
    let log = read_lossy(&dir.join("main.log"));
    assert!(!log.contains("Illegal seek") && !log.contains("cannot write"), "{log}");
}

#[test]
fn strip_ansi_removes_escape_codes_from_child_logs() {
    let d = Daemon::start(
        "ansi",
        "[program:color]\ncommand=printf '\\033[31mred\\033[0m plain\\n'\nstdout_logfile=%(here)s/c.log\nstartsecs=0\n\
         autorestart=false\n",
    );
    // The base config has no strip_ansi; a second daemon with it shows the difference.
    let raw = wait_for(5.0, "raw output", || fs::read(d.path("c.log")).ok().filter(|b| !b.is_empty()));
    assert_eq!(raw, b"\x1b[31mred\x1b[0m plain\n");
    let dir = TempDir::new("ansi2");
    let conf = dir.write(
        "sv.conf",
        &format!(
            "{}[program:color]\ncommand=printf '\\033[31mred\\033[0m plain\\n'\nstdout_logfile=%(here)s/c.log\n\
             startsecs=0\nautorestart=false\n",
            base_config(dir.path()).replace("[supervisord]\n", "[supervisord]\nstrip_ansi=true\n")
        ),
    );
    let d2 = Daemon::start_with(dir, conf, &[]);
    let stripped = wait_for(5.0, "stripped output", || fs::read(d2.path("c.log")).ok().filter(|b| !b.is_empty()));
    assert_eq!(stripped, b"red plain\n");
}

#[test]
fn log_prefix_and_timestamps_mark_each_line() {
    let d = Daemon::start(
        "prefix",
        "[program:web]\ncommand=sh -c 'printf \"one\\ntw\"; sleep 0.1; printf \"o\\n\"; echo err >&2; exec sleep 1000'\n\
         log_prefix=[%(process_name)s]\nlog_timestamps=true\nstdout_logfile=%(here)s/web.log\nredirect_stderr=true\n\
         startsecs=0\n",
    );
    let text =
        wait_for(5.0, "three lines", || fs::read_to_string(d.path("web.log")).ok().filter(|s| s.lines().count() >= 3));
    let lines: Vec<&str> = text.lines().collect();
    for (line, want) in lines.iter().zip(["one", "two", "err"]) {
        // `2026-11-27 16:39:40,123 [web] one`
        let (stamp, rest) = line.split_at(23);
        assert_eq!(rest, format!(" [web] {want}"), "{text}");
        assert!(stamp.chars().nth(4) == Some('-') && stamp.chars().nth(19) == Some(','), "{line}");
    }
}

#[test]
fn a_second_instance_on_the_same_pidfile_refuses_to_start() {
    let d = Daemon::start("twice", "[program:a]\ncommand=sleep 1000\n");
    // The first instance logs that it started before it spawns; wait for the spawn, so that the
    // count below is about the second instance only.
    d.wait_log("spawned: 'a'", 10.0);
    let out = minisv(&["-n", "-c", d.conf.to_str().expect("utf-8")], d.dir.path());
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with(&format!("Error: another minisv is running with pid {} (pidfile ", d.pid)), "{err}");
    assert_eq!(d.count_log("spawned: 'a'"), 1, "nothing was started twice");
}

#[test]
fn ctl_reload_restarts_everything_in_the_same_process_and_keeps_serving() {
    let d = Daemon::start("ctlreload", "[program:a]\ncommand=sleep 1000\nstartsecs=0\n");
    let before = d.wait_state("a", "RUNNING", 10.0).int_of("pid");
    let conf = fs::read_to_string(&d.conf).expect("conf");
    fs::write(&d.conf, format!("{conf}[program:b]\ncommand=sleep 1000\nstartsecs=0\n")).expect("write");
    let out = d.ctl(&["reload"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "Restarted supervisord\n");
    // The new config is in force once the daemon answers again: b exists, a was restarted.
    let b = wait_for(15.0, "b after the reload", || {
        d.rpc_try("supervisor.getProcessInfo", "b").filter(|i| i.str_of("statename") == "RUNNING")
    });
    assert!(b.int_of("pid") > 0);
    let after = d.wait_state("a", "RUNNING", 10.0).int_of("pid");
    assert_ne!(after, before, "a reload restarts the programs");
    assert_eq!(d.rpc("supervisor.getPID", &[]).expect("pid").as_int(), Some(d.pid as i64), "same process");
}

#[test]
fn infinite_retries_with_capped_backoff_keep_trying_and_python_tools_still_work() {
    let d =
        Daemon::start("infinite", "[program:flaky]\ncommand=sh -c 'exit 1'\nstartretries=infinite\nbackoff_max=1\n");
    wait_for(15.0, "five attempts", || (d.count_log("spawned: 'flaky'") >= 5).then_some(()));
    assert!(!d.log().contains("gave up: flaky"), "infinite retries never give up");
    let state = d.state("flaky");
    assert!(state == "BACKOFF" || state == "STARTING", "still trying: {state}");
    // The new options are invisible to Supervisor's own tools.
    let out = std::process::Command::new(crate::pyenv::python_supervisor().join("supervisorctl"))
        .arg("-c")
        .arg(&d.conf)
        .arg("avail")
        .output()
        .expect("supervisorctl");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "flaky                            in use    auto      999:999\n");
}

#[test]
fn a_missing_directory_is_a_clear_spawn_error() {
    let d = Daemon::start("nodir", "[program:a]\ncommand=sleep 1000\ndirectory=/nonexistent/dir\nstartretries=0\n");
    d.wait_log("spawnerr: couldn't chdir to /nonexistent/dir: ENOENT", 10.0);
    let info = d.wait_state("a", "FATAL", 10.0);
    assert_eq!(info.str_of("description"), "couldn't chdir to /nonexistent/dir: ENOENT");
}

#[test]
fn a_program_stopped_by_hand_stays_stopped_through_a_reload() {
    let d = Daemon::start(
        "keepstop",
        "[program:a]\ncommand=sleep 1000\nstartsecs=0\n[program:b]\ncommand=sleep 1000\nstartsecs=0\n",
    );
    d.wait_state("a", "RUNNING", 10.0);
    let b_before = d.wait_state("b", "RUNNING", 10.0).int_of("pid");
    assert_eq!(String::from_utf8_lossy(&d.ctl(&["stop", "a"]).stdout), "a: stopped\n");
    d.signal(libc::SIGHUP);
    d.wait_log("a was stopped by hand before the reload: it stays stopped", 15.0);
    let b_after = wait_for(15.0, "b restarted by the reload", || {
        d.rpc_try("supervisor.getProcessInfo", "b")
            .filter(|i| i.str_of("statename") == "RUNNING" && i.int_of("pid") != b_before)
    });
    assert!(b_after.int_of("pid") > 0);
    assert_eq!(d.state("a"), "STOPPED", "Supervisor would have started it again (autostart)");
    assert_eq!(String::from_utf8_lossy(&d.ctl(&["start", "a"]).stdout), "a: started\n");
}

#[test]
fn ctl_logrotate_and_reopen_work_on_demand() {
    let d = Daemon::start(
        "logrotate",
        "[program:w]\ncommand=sh -c 'while :; do echo tick; sleep 0.05; done'\nstdout_logfile=%(here)s/w.log\n\
         stdout_logfile_backups=0\n",
    );
    wait_for(10.0, "output", || fs::metadata(d.path("w.log")).ok().filter(|m| m.len() > 0).map(|_| ()));
    let out = d.ctl(&["logrotate", "w"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "w: rotated\n");
    assert!(d.path("w.log.1").exists(), "a rotation by hand keeps the old file even with backups=0");
    wait_for(10.0, "new output in a new file", || {
        fs::read_to_string(d.path("w.log")).ok().filter(|s| s.starts_with("tick"))
    });
    // External rotation (as logrotate without copytruncate does), then reopen.
    fs::rename(d.path("w.log"), d.path("w.log.moved")).expect("rename");
    let out = d.ctl(&["reopen"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "all logs reopened\n");
    wait_for(10.0, "output at the path again", || {
        fs::read_to_string(d.path("w.log")).ok().filter(|s| s.contains("tick"))
    });
    let out = d.ctl(&["logrotate", "nosuch"]);
    assert_eq!(
        (String::from_utf8_lossy(&out.stdout).into_owned(), out.status.code()),
        ("nosuch: ERROR (no such process)\n".to_string(), Some(1))
    );
}

#[test]
fn depends_on_cycles_and_unknown_names_are_config_errors() {
    let dir = TempDir::new("depcycle");
    let conf = dir.write(
        "sv.conf",
        &format!(
            "{}[program:a]\ncommand=sleep 1\ndepends_on=c\n[program:b]\ncommand=sleep 1\ndepends_on=a\n\
             [program:c]\ncommand=sleep 1\ndepends_on=b\n[program:d]\ncommand=sleep 1\ndepends_on=nosuch\n",
            base_config(dir.path())
        ),
    );
    let out = minisv(&["check", "-c", conf.to_str().expect("utf-8")], dir.path());
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("depends_on: dependencies make a cycle: a -> c -> b -> a"), "{err}");
    assert!(err.contains("[program:d] depends_on: 'nosuch' is not a program or group"), "{err}");
}

#[test]
fn a_dependency_chain_of_three_starts_and_stops_in_order() {
    let d = Daemon::start(
        "depchain",
        "[program:web]\ncommand=sleep 1000\ndepends_on=api\npriority=1\nstartsecs=1\n\
         [program:api]\ncommand=sleep 1000\ndepends_on=db\npriority=2\nstartsecs=1\n\
         [program:db]\ncommand=sleep 1000\npriority=3\nstartsecs=1\n",
    );
    d.wait_state("web", "RUNNING", 15.0);
    let log = d.log();
    let at = |s: &str| log.find(s).unwrap_or_else(|| panic!("{s}\n{log}"));
    assert!(at("spawned: 'db'") < at("success: db entered RUNNING"));
    assert!(at("success: db entered RUNNING") < at("spawned: 'api'"), "api waits for db\n{log}");
    assert!(at("success: api entered RUNNING") < at("spawned: 'web'"), "web waits for api\n{log}");
    // Stopping db stops what depends on it first.
    let out = d.ctl(&["stop", "db"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "db: stopped\n");
    let log = d.log();
    let at = |s: &str| log.find(s).unwrap_or_else(|| panic!("{s}\n{log}"));
    assert!(at("stopped: web (") < at("stopped: api ("));
    assert!(at("stopped: api (") < at("stopped: db ("));
    // Starting web starts its chain again, in order.
    let out = d.ctl(&["start", "web"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "web: started\n");
    assert_eq!(d.state("db"), "RUNNING");
    assert_eq!(d.state("api"), "RUNNING");
}

#[test]
fn ready_fd_makes_a_slow_server_running_when_it_says_it_is_ready() {
    let d = Daemon::start(
        "readyfd",
        "[program:slow]\ncommand=sh -c 'sleep 0.5; echo ready >&3; exec sleep 1000'\nready_fd=3\nstartsecs=30\n\
         [program:never]\ncommand=sleep 1000\nready_fd=3\nready_timeout=1\nstartretries=0\n\
         [program:user]\ncommand=sleep 1000\ndepends_on=slow\nstartsecs=0\n",
    );
    let info = d.wait_state("slow", "RUNNING", 10.0);
    assert!(info.int_of("now") - info.int_of("start") < 30, "not after startsecs");
    d.wait_log("success: slow entered RUNNING state, process is ready (ready_fd)", 5.0);
    // Dependents wait for readiness (user is spawned in the wakeup after slow's readiness,
    // which may come after the line was read).
    d.wait_log("spawned: 'user'", 10.0);
    let log = d.log();
    let spawned_user = log.find("spawned: 'user'").expect("user spawned");
    assert!(log.find("process is ready (ready_fd)").expect("ready") < spawned_user, "{log}");
    // A program that never says it is ready is a failed start.
    let info = d.wait_state("never", "FATAL", 15.0);
    assert_eq!(info.str_of("description"), "not ready within 1 seconds (ready_timeout)");
}

#[test]
fn ctl_status_l_shows_memory_and_cpu() {
    let d = Daemon::start(
        "statusl",
        "[program:a]\ncommand=sleep 1000\nstartsecs=0\n[program:off]\ncommand=sleep 1\nautostart=false\n\
         [program:held]\ncommand=sleep 1000\nstartsecs=0\nmemory_limit=3GB\n",
    );
    d.wait_state("a", "RUNNING", 10.0);
    d.wait_state("held", "RUNNING", 10.0);
    let out = d.ctl(&["status", "-l"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let a = text.lines().find(|l| l.starts_with("a ")).expect("a's line");
    // The size in K or M: a `sleep` read just after its exec may not have mapped 1 MB yet.
    let rss = a.split("  rss ").nth(1).and_then(|r| r.split("  cpu ").next()).unwrap_or("");
    let sized = rss.strip_suffix(['K', 'M']).is_some_and(|n| n.parse::<f64>().is_ok_and(|v| v > 0.0));
    assert!(a.contains("RUNNING   pid ") && sized && a.contains("  cpu ") && a.ends_with('s'), "{text}");
    assert!(!a.contains(" of "), "no limit: {a}");
    // A limit over 2 GB (XML-RPC ints are 32-bit) is shown whole.
    let held = text.lines().find(|l| l.starts_with("held ")).expect("held's line");
    assert!(held.contains(" of 3.0G (memory_limit)  cpu "), "{text}");
    let off = text.lines().find(|l| l.starts_with("off ")).expect("off's line");
    assert!(!off.contains("rss"), "no figures for a stopped process: {off}");
    assert_eq!(out.status.code(), Some(3), "exit status as for status");
}

#[test]
fn restart_limit_caps_the_automatic_restarts_of_crash_loops() {
    let dir = TempDir::new("restartlimit");
    let base = base_config(dir.path()).replace("[supervisord]\n", "[supervisord]\nrestart_limit=5\n");
    let programs = "[program:crash]\ncommand=/bin/sh -c 'exit 3'\nnumprocs=3\n\
                    process_name=%(program_name)s_%(process_num)d\nstartsecs=0\nautorestart=true\n";
    let conf = dir.write("sv.conf", &format!("{base}{programs}"));
    let mut d = Daemon::start_with(dir, conf, &[]);
    d.wait_log("delaying the restart of crash_", 10.0);
    // At most 5 automatic restarts in any second: 11 more spawns cannot take less than 2 s
    // (without the limit, three crash loops make hundreds of spawns a second).
    let t0 = Instant::now();
    let n0 = d.count_log("spawned: 'crash_");
    wait_for(20.0, "11 more spawns", || (d.count_log("spawned: 'crash_") >= n0 + 11).then_some(()));
    let took = t0.elapsed();
    assert!(took >= Duration::from_millis(1900), "11 restarts took only {took:?}");
    // The daemon stays controllable throughout.
    let out = d.ctl(&["status"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("crash:crash_0"));
    assert!(d.stop().success());
}

/// Programs' output reaches the main log at loglevel=debug as the bytes they wrote, which need
/// not be UTF-8: the log stays readable around them (the harness read it strictly once, and one
/// such byte hid every line, so waits for lines already there timed out now and then).
#[test]
fn output_that_is_not_utf8_in_the_main_log_hides_no_line() {
    // Reads debug lines of the main log.
    let d = Daemon::start_debug(
        "notutf8",
        "[program:binary]\ncommand=sh -c \"printf 'ok \\\\377\\\\376 end'\"\nstartsecs=0\nautorestart=false\n",
    );
    d.wait_state("binary", "EXITED", 10.0);
    d.wait_log("'binary' stdout output:", 10.0);
    let raw = fs::read(d.path("main.log")).expect("main log");
    assert!(String::from_utf8(raw).is_err(), "the program's bytes are in the log as written");
    assert!(d.log().contains("minisv started with pid"), "{}", d.log());
    // The daemon names itself minisv (issue 20, point 11); Supervisor's words stay for programs.
    assert!(!d.log().contains("supervisord"), "{}", d.log());
    assert!(d.log().contains("spawned: 'binary' with pid"), "{}", d.log());
    assert!(d.log().contains("ok \u{fffd}\u{fffd} end"), "{}", d.log());
}

/// A wakeup for programs' output alone steps no process, but deadlines still run out: with a
/// program talking every 5 ms (and no RPC after the starts, which would wake the daemon for
/// other reasons), startsecs and a backoff delay run out on time.
#[test]
fn deadlines_run_out_while_output_keeps_the_daemon_busy() {
    let dir = TempDir::new("busy");
    dir.write(
        "chatty.py",
        "import sys, time\nwhile True:\n    sys.stdout.write('x\\n')\n    sys.stdout.flush()\n    time.sleep(0.005)\n",
    );
    // At loglevel info: at debug, every line of chatty would be copied into the main log.
    let d = Daemon::start_in(
        dir,
        "[program:chatty]\ncommand=python3 %(here)s/chatty.py\nstartsecs=0\npriority=1\n\
         stdout_logfile=%(here)s/chatty.log\nstopsignal=KILL\n\
         [program:slow]\ncommand=sleep 1000\nstartsecs=1\nautostart=false\n\
         [program:failing]\ncommand=sh -c 'exit 3'\nstartsecs=1\nstartretries=1\nautostart=false\n",
        &["-e", "info"],
    );
    let lines = || read_lossy(&d.path("chatty.log")).lines().count();
    // The deadlines start once chatty talks (however long python takes to start).
    wait_for(20.0, "chatty to talk", || (lines() >= 20).then_some(()));
    let before = lines();
    for name in ["slow", "failing"] {
        d.rpc("supervisor.startProcess", &[Value::from(name), Value::Bool(false)]).expect("start");
    }
    let log = d.path("main.log");
    wait_for(20.0, "slow to be RUNNING after startsecs", || {
        read_lossy(&log).contains("success: slow entered RUNNING state").then_some(())
    });
    wait_for(20.0, "failing to be retried after its backoff delay, then FATAL", || {
        let text = read_lossy(&log);
        (text.matches("spawned: 'failing'").count() == 2 && text.contains("gave up: failing entered FATAL state"))
            .then_some(())
    });
    let talked = lines() - before;
    assert!(talked > 20, "chatty talked all along ({talked} lines while the deadlines ran)");
    assert_eq!(d.state("chatty"), "RUNNING");
}

/// A log stays open across bursts of output for about a second (not reopened for every line),
/// then is closed once output stops: an idle program holds no fd on its log. One moved away by
/// someone else while the program keeps talking is picked up again within about a second.
#[test]
fn logs_are_held_open_briefly_and_a_moved_log_is_picked_up() {
    let dir = TempDir::new("hold");
    // Talks every 5 ms until the file `stop` exists, then sleeps.
    dir.write(
        "talk.py",
        "import os, sys, time\nhere = os.path.dirname(os.path.abspath(__file__))\n\
         while not os.path.exists(os.path.join(here, 'stop')):\n    sys.stdout.write('x\\n')\n    sys.stdout.flush()\n    time.sleep(0.005)\n\
         os.execvp('sleep', ['sleep', '1000'])\n",
    );
    let d = Daemon::start_in(
        dir,
        "[program:talk]\ncommand=python3 %(here)s/talk.py\nstartsecs=0\nstdout_logfile=%(here)s/talk.log\n",
        &["-e", "info"],
    );
    let log = d.path("talk.log");
    let holds = |path: &Path| -> bool {
        fs::read_dir(format!("/proc/{}/fd", d.pid))
            .map(|r| r.flatten().any(|e| fs::read_link(e.path()).is_ok_and(|l| l == path)))
            .unwrap_or(false)
    };
    wait_for(20.0, "output in the log", || (read_lossy(&log).lines().count() > 50).then_some(()));
    // Moved away while the program talks: a new file appears at the path and fills.
    let moved = d.path("talk.log.moved");
    fs::rename(&log, &moved).expect("rename");
    wait_for(20.0, "a new log at the path", || (read_lossy(&log).lines().count() > 10).then_some(()));
    fs::write(d.path("stop"), "").expect("stop file");
    wait_for(20.0, "the daemon to close the log once output stopped", || (!holds(&log)).then_some(()));
    assert!(!holds(&moved), "the moved file is not held either");
    // Output after the pause opens it again (same file).
    d.rpc("supervisor.stopProcess", &[Value::from("talk"), Value::from(true)]).expect("stop");
    fs::remove_file(d.path("stop")).expect("remove stop file");
    let before = read_lossy(&log).lines().count();
    d.rpc("supervisor.startProcess", &[Value::from("talk"), Value::from(true)]).expect("start");
    wait_for(20.0, "more output in the same log", || (read_lossy(&log).lines().count() > before + 10).then_some(()));
}

#[test]
fn a_program_is_looked_up_again_at_each_start() {
    // Found once per batch of starts: a program put earlier on the PATH after the first start
    // is the one the next start runs.
    let dir = TempDir::new("lookup");
    // The program's PATH holds only the two directories: the script finds `sleep` itself.
    let script = |sub: &str| format!("#!/bin/sh\necho from-{sub}\nPATH=/usr/bin:/bin exec sleep 1000\n");
    let d_path = dir.path().display().to_string();
    for sub in ["one", "two"] {
        fs::create_dir(dir.join(sub)).expect("mkdir");
    }
    let tool = |sub: &str| {
        let p = dir.write(&format!("{sub}/tool"), &script(sub));
        fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    };
    tool("two");
    let conf = format!(
        "[program:t]\ncommand=tool\nenvironment=PATH=\"{d_path}/one:{d_path}/two\"\nstartsecs=0\n\
         stdout_logfile={d_path}/t.log\n"
    );
    let d = Daemon::start_in(dir, &conf, &[]);
    d.wait_state("t", "RUNNING", 10.0);
    let out = d.path("t.log");
    wait_for(10.0, "the first start's output", || read_lossy(&out).contains("from-two").then_some(()));
    d.rpc("supervisor.stopProcess", &[Value::from("t"), Value::from(true)]).expect("stop");
    let p = d.path("one/tool");
    fs::write(&p, script("one")).expect("write");
    fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    d.rpc("supervisor.startProcess", &[Value::from("t"), Value::from(true)]).expect("start");
    wait_for(10.0, "the second start's output", || read_lossy(&out).contains("from-one").then_some(()));
    // Each start ran once: the first kept running until it was stopped.
    assert_eq!(read_lossy(&out).matches("from-").count(), 2, "{}", read_lossy(&out));
    assert_eq!(d.state("t"), "RUNNING");
}

/// The harness itself: a process that escaped its program's stop (here a `setsid` grandchild)
/// fails the test that left it, instead of being killed quietly.
#[test]
#[should_panic(expected = "the daemon left processes behind")]
fn the_harness_fails_a_test_that_leaves_processes_behind() {
    let d = Daemon::start(
        "leftover",
        "[program:escaper]\ncommand=sh -c 'setsid sleep 1000 & exec sleep 1000'\nstartsecs=0\n",
    );
    d.wait_state("escaper", "RUNNING", 10.0);
    wait_for(10.0, "the escaped grandchild", || {
        let n = std::fs::read_dir("/proc")
            .ok()?
            .flatten()
            .filter(|e| {
                std::fs::read(e.path().join("environ")).is_ok_and(|env| {
                    env.split(|b| *b == 0)
                        .any(|v| v == format!("MINISV_TEST_OWNER={}", d.dir.path().display()).as_bytes())
                })
            })
            .count();
        (n >= 2).then_some(())
    });
    drop(d);
}

/// `check` warns, and still succeeds, when a `command=` cannot be found now or is a relative
/// path (checked from the daemon's directory); numprocs copies warn once (issue 20, point 9).
#[test]
fn check_warns_about_commands_not_found_or_relative() {
    let dir = TempDir::new("chkcmd");
    let conf = dir.write(
        "sv.conf",
        &format!(
            "{}[program:gone]\ncommand=no-such-program-anywhere --flag\nnumprocs=2\nprocess_name=%(program_name)s_%(process_num)s\n\
             [program:rel]\ncommand=bin/run.sh\n[program:fine]\ncommand=sleep 1\n",
            base_config(dir.path())
        ),
    );
    let text = fs::read_to_string(&conf).expect("conf");
    let line = |start: &str| text.lines().position(|l| l == start).expect("section") + 1;
    let out = minisv(&["check", "-c", conf.to_str().expect("utf-8")], dir.path());
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let warns: Vec<&str> = stdout.lines().filter(|l| l.starts_with("WARN ") && l.contains(" command: ")).collect();
    let c = conf.display();
    assert_eq!(
        warns,
        [
            format!("WARN {c}:{}: [program:gone] command: can't find command 'no-such-program-anywhere' (now; each start looks again)", line("[program:gone]")),
            format!(
                "WARN {c}:{}: [program:rel] command: can't find command 'bin/run.sh' (now; each start looks again); \
                 'bin/run.sh' is a relative path, checked from the directory the daemon runs in, not the config file's: \
                 give an absolute path",
                line("[program:rel]")
            ),
        ]
    );
}

/// state_file=: a program stopped by hand stays stopped after the daemon is started again, and
/// one started by hand starts again although autostart=false; a damaged file is reported and
/// ignored, never fatal.
#[test]
fn the_state_file_keeps_starts_and_stops_by_hand_across_restarts_of_the_daemon() {
    let dir = TempDir::new("statefile");
    let state = dir.join("minisv.state");
    let text = format!(
        "{}[program:web]\ncommand=sleep 1000\nstartsecs=0\n\
         [program:batch]\ncommand=sleep 1001\nstartsecs=0\nautostart=false\n",
        base_config(dir.path()).replacen(
            "[supervisord]\n",
            &format!("[supervisord]\nstate_file={}\n", state.display()),
            1
        )
    );
    let conf = dir.write("supervisord.conf", &text);
    let mut d = Daemon::start_with(dir, conf.clone(), &[]);
    d.wait_state("web", "RUNNING", 10.0);
    assert_eq!(d.state("batch"), "STOPPED");
    assert!(d.ctl(&["stop", "web"]).status.success());
    assert!(d.ctl(&["start", "batch"]).status.success());
    let saved = std::fs::read_to_string(&state).expect("the state file is written at once");
    assert!(saved.contains("stopped web\n") && saved.contains("started batch\n"), "{saved}");
    d.stop();
    // Started again: the same state, whatever autostart says.
    let dir = d.dir.take_for_restart();
    let mut d = Daemon::start_with(dir, conf.clone(), &[]);
    d.wait_state("batch", "RUNNING", 10.0);
    assert_eq!(d.state("web"), "STOPPED", "stopped by hand before the restart: {}", d.log());
    d.stop();
    // A damaged file: said in the log, and the daemon starts as configured.
    std::fs::write(&state, "stopped web\n\u{0}\u{1}garbage\n").expect("damage the file");
    let dir = d.dir.take_for_restart();
    let d = Daemon::start_with(dir, conf, &[]);
    d.wait_state("batch", "STOPPED", 10.0);
    assert_eq!(d.state("web"), "STOPPED");
    assert!(d.log().contains("minisv.state:2: cannot read"), "{}", d.log());
}

/// memory_limit=: a program whose process tree grows over its limit is restarted (its RSS is
/// read every 5 s while it runs), and the log says which mechanism is in force.
#[test]
fn a_program_over_its_memory_limit_is_restarted() {
    let d = Daemon::start(
        "memlimit",
        "[program:hog]\ncommand=python3 -c 'import time; b = bytearray(80 << 20); b[::4096] = b\"x\" * len(b[::4096]); time.sleep(1000)'\n\
         memory_limit=40MB\nstartsecs=0\n\
         [program:small]\ncommand=sleep 1000\nmemory_limit=40MB\nstartsecs=0\n",
    );
    let first = d.wait_state("hog", "RUNNING", 10.0).int_of("pid");
    let small = d.wait_state("small", "RUNNING", 10.0).int_of("pid");
    assert!(
        d.log().contains(
            "hog: memory_limit (41943040 bytes) is enforced by reading the RSS of its process tree every 5 s"
        ),
        "{}",
        d.log()
    );
    d.wait_log("hog is unhealthy (its memory (", 20.0);
    assert!(d.log().contains("is over memory_limit (41943040 bytes)): restarting it (memory_limit)"), "{}", d.log());
    wait_for(15.0, "hog started again", || {
        let info = d.info("hog");
        (info.str_of("statename") == "RUNNING" && info.int_of("pid") != first).then_some(())
    });
    assert_eq!(d.info("small").int_of("pid"), small, "a program under its limit is left alone");
}

/// schedule=: a program started at the times of a cron expression (here every second, with
/// Quartz's seconds field), under full supervision; its status says when it runs next.
#[test]
fn a_scheduled_program_runs_at_its_times() {
    let d = Daemon::start(
        "schedule",
        "[program:tick]\ncommand=sh -c 'echo run >> %(here)s/runs'\nschedule=* * * * * *\n\
         schedule_timezone=utc\nautorestart=false\nstartsecs=0\n",
    );
    let runs = d.path("runs");
    wait_for(10.0, "three runs", || {
        (std::fs::read_to_string(&runs).unwrap_or_default().lines().count() >= 3).then_some(())
    });
    assert!(d.log().contains("tick is due (schedule)"), "{}", d.log());
    let info = d.info("tick");
    assert!(info.str_of("description").contains("next run "), "{info:?}");
}

#[test]
fn a_bad_schedule_is_a_config_error_with_its_line() {
    let text = check_refuses("badsched", "[program:a]\ncommand=true\nschedule=61 * * * *\n");
    assert!(
        text.contains("supervisord.conf:17: [program:a] schedule: '61' is out of range for the minute (0-59)"),
        "{text}"
    );
}

/// rlimit_*=, nice= and oom_score_adj= are what the program finds when it starts (values a
/// user may set without root: lower limits, a higher nice value and OOM score); a limit the
/// system refuses fails the start with the step named.
#[test]
fn resource_limits_nice_and_oom_score_are_set_before_exec() {
    let d = Daemon::start(
        "limits",
        "[program:lim]\ncommand=sh -c 'cat /proc/self/limits > %(here)s/limits; \
         cut -d\" \" -f19 /proc/self/stat > %(here)s/nice; cat /proc/self/oom_score_adj > %(here)s/oom; \
         exec sleep 1000'\nstartsecs=0\n\
         rlimit_nofile=512:1024\nrlimit_core=0\nrlimit_fsize=1MB:infinity\nnice=7\noom_score_adj=600\n\
         [program:bad]\ncommand=sleep 1000\nstartsecs=0\nstartretries=0\nrlimit_nofile=2000000000\n",
    );
    d.wait_state("lim", "RUNNING", 10.0);
    let read = |p: &str| wait_for(10.0, p, || std::fs::read_to_string(d.path(p)).ok().filter(|s| s.ends_with('\n')));
    let limits = read("limits");
    let row = |name: &str| -> Vec<String> {
        let line = limits.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("{name} in {limits}"));
        line[name.len()..].split_whitespace().take(2).map(str::to_string).collect()
    };
    assert_eq!(row("Max open files"), ["512", "1024"], "{limits}");
    assert_eq!(row("Max core file size"), ["0", "0"], "{limits}");
    assert_eq!(row("Max file size"), ["1048576", "unlimited"], "{limits}");
    assert_eq!(read("nice").trim(), "7");
    assert_eq!(read("oom").trim(), "600");
    // More open files than the kernel allows any process (fs.nr_open), root included.
    let bad = d.wait_state("bad", "FATAL", 10.0);
    assert_eq!(bad.str_of("spawnerr"), "couldn't set the resource limits (rlimit_*): EPERM");
}

#[test]
fn a_bad_limit_is_a_config_error_with_its_line() {
    let text = check_refuses("badlimit", "[program:a]\ncommand=true\nrlimit_nofile=2048:1024\nnice=40\n");
    assert!(text.contains("[program:a] rlimit_nofile: the soft limit 2048 is above the hard limit 1024"), "{text}");
    assert!(text.contains("[program:a] nice: 40 is out of range; expected a nice value from -20 to 19"), "{text}");
}
