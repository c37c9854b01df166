//! Faults the daemon survives (issue 7): it keeps supervising, stays responsive and says what
//! happened in one clear line.

use std::fs;
use std::process::Command;

use crate::harness::*;

fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// A small tmpfs, unmounted on drop.
struct SmallFs(std::path::PathBuf);

impl SmallFs {
    fn mount(dir: &std::path::Path, size: &str) -> Option<SmallFs> {
        fs::create_dir_all(dir).ok()?;
        let ok = Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"]).arg(dir).status();
        ok.is_ok_and(|s| s.success()).then(|| SmallFs(dir.to_path_buf()))
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
#[ignore = "needs root: mounts a small tmpfs; .ci/run runs it"]
fn full_log_disk_drops_output_with_a_count_and_recovers() {
    assert!(is_root(), "this test needs root: it mounts a small tmpfs");
    let dir = TempDir::new("diskfull");
    let _fs = SmallFs::mount(&dir.join("small"), "256k").expect("mount -t tmpfs (a full disk is made with one)");
    let conf = dir.write(
        "sv.conf",
        &format!(
            "{}[program:writer]\ncommand=sh -c 'while :; do seq -f \"line %%g\" 1 500; sleep 0.01; done'\n\
             stdout_logfile=%(here)s/small/w.log\nstdout_logfile_maxbytes=0\nstartsecs=0\n\
             [program:other]\ncommand=sleep 1000\nstartsecs=0\n",
            base_config(dir.path())
        ),
    );
    let d = Daemon::start_with(dir, conf, &[]);
    d.wait_log("writer: cannot write stdout log", 20.0);
    assert!(d.log().contains("No space left on device"), "{}", d.log());
    assert_eq!(d.count_log("writer: cannot write stdout log"), 1, "said once, not once per write");
    // Still supervising and answering.
    assert_eq!(d.state("other"), "RUNNING");
    assert_eq!(d.state("writer"), "RUNNING", "the writer is not blocked");
    // Space comes back: logging resumes and the loss is reported with a byte count.
    d.rpc("supervisor.clearProcessLogs", &[minisv::rpc::xmlrpc::Value::from("writer")]).expect("clear");
    d.wait_log("writer: writing ", 20.0);
    let log = d.log();
    let line = log.lines().find(|l| l.contains("works again;")).expect("recovery line");
    let lost: u64 =
        line.split("; ").nth(1).and_then(|s| s.split(' ').next()).and_then(|n| n.parse().ok()).expect("count");
    assert!(lost > 0, "{line}");
    wait_for(10.0, "new output", || fs::read_to_string(d.path("small/w.log")).ok().filter(|s| s.contains("line ")));
}

#[test]
fn socket_path_naming_a_regular_file_is_refused_and_the_file_kept() {
    let dir = TempDir::new("notsock");
    let victim = dir.write("important.txt", "keep me\n");
    let conf = dir.write(
        "sv.conf",
        &base_config(dir.path())
            .replace(&format!("file={}/sv.sock", dir.path().display()), &format!("file={}", victim.display())),
    );
    let out = minisv(&["-n", "-c", conf.to_str().expect("utf-8")], dir.path());
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("exists and is not a socket; not removing it"), "{err}");
    assert_eq!(fs::read_to_string(&victim).expect("still there"), "keep me\n");
}

#[test]
fn inet_server_without_password_must_listen_on_loopback() {
    let dir = TempDir::new("openinet");
    let conf = dir.write("sv.conf", &format!("{}[inet_http_server]\nport=*:9\n", base_config(dir.path())));
    let out = minisv(&["check", "-c", conf.to_str().expect("utf-8")], dir.path());
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("[inet_http_server] port: *:9 is reachable from other machines but [inet_http_server] has no username and password"), "{err}");
    let conf = dir.write("ok.conf", &format!("{}[inet_http_server]\nport=127.0.0.1:9\n", base_config(dir.path())));
    assert_eq!(minisv(&["check", "-c", conf.to_str().expect("utf-8")], dir.path()).status.code(), Some(0));
}

#[test]
fn failed_logins_are_logged_with_the_peer_and_never_the_password() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("port").local_addr().expect("addr").port();
    let d = Daemon::start(
        "badlogin",
        &format!("[inet_http_server]\nport=127.0.0.1:{port}\nusername=bob\npassword=s3cret\n[program:a]\ncommand=sleep 1000\n"),
    );
    let out = std::process::Command::new(BIN)
        .args(["ctl", "-s", &format!("http://127.0.0.1:{port}"), "-u", "bob", "-p", "wrongpass", "status"])
        .output()
        .expect("ctl");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "Server requires authentication\n");
    d.wait_log("WARN failed login for user \"bob\" from 127.0.0.1:", 10.0);
    let log = d.log();
    assert!(!log.contains("wrongpass") && !log.contains("s3cret"), "no password in the log");
    let info = d.rpc("supervisor.getAllConfigInfo", &[]).expect("config info");
    assert!(!format!("{info:?}").contains("s3cret"), "no password in getAllConfigInfo");
}

#[test]
fn a_thousand_children_exiting_at_once_are_all_reaped() {
    // Every child blocks opening a FIFO; opening and closing its write end releases them all
    // at the same instant: a SIGCHLD storm.
    let dir = TempDir::new("storm");
    let fifo = dir.join("go");
    let c = std::ffi::CString::new(fifo.to_str().expect("utf-8")).expect("path");
    // SAFETY: a valid path; mkfifo only creates a file.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let conf = dir.write(
        "sv.conf",
        &format!(
            "{}[program:w]\ncommand=sh -c 'read x < {}; exit 3'\nnumprocs=1000\nprocess_name=w%(process_num)d\n\
             startsecs=0\nautorestart=false\nstdout_logfile=NONE\nstderr_logfile=NONE\n",
            base_config(dir.path()).replace("[supervisord]\n", "[supervisord]\nminfds=4096\n"),
            fifo.display()
        ),
    );
    let d = Daemon::start_with(dir, conf, &[]);
    let all = |state: &str| -> usize {
        let infos = d.rpc("supervisor.getAllProcessInfo", &[]).expect("info");
        infos.as_array().expect("array").iter().filter(|i| i.str_of("statename") == state).count()
    };
    wait_for(60.0, "1000 RUNNING", || (all("RUNNING") == 1000).then_some(()));
    // Wait until every child is blocked in the FIFO open (each has exec'd sh by then).
    wait_for(60.0, "all children waiting", || {
        let infos = d.rpc("supervisor.getAllProcessInfo", &[]).expect("info");
        infos
            .as_array()
            .expect("array")
            .iter()
            .all(|i| {
                let pid = i.int_of("pid");
                fs::read_to_string(format!("/proc/{pid}/wchan"))
                    .is_ok_and(|w| w.contains("partner") || w.contains("fifo") || w.contains("pipe"))
            })
            .then_some(())
    });
    drop(fs::OpenOptions::new().write(true).open(d.path("go")).expect("open the FIFO"));
    wait_for(60.0, "1000 EXITED", || (all("EXITED") == 1000).then_some(()));
    let infos = d.rpc("supervisor.getAllProcessInfo", &[]).expect("info");
    assert!(infos.as_array().expect("array").iter().all(|i| i.int_of("exitstatus") == 3 && i.int_of("pid") == 0));
    let zombies = fs::read_to_string(format!("/proc/{}/task/{}/children", d.pid, d.pid)).unwrap_or_default();
    assert_eq!(zombies.trim(), "", "no child left, zombie or not");
}

#[test]
fn children_that_close_stdout_or_write_fast_on_both_channels_are_handled() {
    let d = Daemon::start(
        "channels",
        "[program:closer]\ncommand=sh -c 'exec >&- 2>&-; exec sleep 1000'\nstartsecs=0\n\
         [program:both]\ncommand=sh -c '(head -c 50000000 /dev/zero | tr \"\\\\0\" o) & (head -c 50000000 /dev/zero | tr \"\\\\0\" e >&2); wait; exec sleep 1000'\n\
         stdout_logfile=%(here)s/out.log\nstderr_logfile=%(here)s/err.log\nstdout_logfile_maxbytes=0\nstderr_logfile_maxbytes=0\nstartsecs=0\n",
    );
    // While 100 MB pour in, the daemon answers.
    for _ in 0..20 {
        assert_eq!(d.rpc("supervisor.getState", &[]).expect("state").str_of("statename"), "RUNNING");
    }
    wait_for(60.0, "both logs complete", || {
        let o = fs::metadata(d.path("out.log")).ok()?.len();
        let e = fs::metadata(d.path("err.log")).ok()?.len();
        (o == 50_000_000 && e == 50_000_000).then_some(())
    });
    assert_eq!(d.state("closer"), "RUNNING", "closing its output does not end a program");
    let out = d.ctl(&["stop", "closer"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "closer: stopped\n");
}

#[test]
fn a_bounded_fork_bomb_is_killed_with_its_process_group() {
    let d = Daemon::start(
        "forkbomb",
        "[program:bomb]\ncommand=sh -c 'i=0; while [ $i -lt 100 ]; do sleep 1000 & i=$((i+1)); done; echo forked; wait'\n\
         stopasgroup=true\nstartsecs=0\nstdout_logfile=%(here)s/bomb.out\n",
    );
    let sh = d.wait_state("bomb", "RUNNING", 10.0).int_of("pid") as i32;
    wait_for(20.0, "the children", || fs::read_to_string(d.path("bomb.out")).ok().filter(|s| s.contains("forked")));
    let in_group = || -> usize {
        fs::read_dir("/proc")
            .map(|rd| {
                rd.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
                    .filter(|pid| {
                        fs::read_to_string(format!("/proc/{pid}/stat")).ok().is_some_and(|s| {
                            let f: Vec<&str> = s.rsplit(')').next().unwrap_or("").split_whitespace().collect();
                            f.get(2) == Some(&sh.to_string().as_str()) && f.first() != Some(&"Z")
                        })
                    })
                    .count()
            })
            .unwrap_or(0)
    };
    assert!(in_group() >= 101, "the shell and its 100 children share a process group");
    let out = d.ctl(&["stop", "bomb"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "bomb: stopped\n");
    wait_for(10.0, "the whole group gone", || (in_group() == 0).then_some(()));
}

#[test]
fn out_of_fds_spawns_fail_into_backoff_and_the_control_socket_keeps_answering() {
    let dir = TempDir::new("emfile");
    let conf = dir.write(
        "sv.conf",
        &format!(
            "{}[program:hog]\ncommand=sh -c 'sleep 3'\nnumprocs=12\nprocess_name=hog%(process_num)d\nstartsecs=0\n\
             autorestart=false\nstartretries=0\nstdout_logfile=NONE\nstderr_logfile=NONE\n",
            base_config(dir.path()).replace("[supervisord]\n", "[supervisord]\nloglevel=debug\nminfds=32\n")
        ),
    );
    let mut cmd = std::process::Command::new(BIN);
    cmd.args(["-n", "-c"]).arg(&conf).current_dir(dir.path());
    cmd.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
    // SAFETY: setrlimit is async-signal-safe; it only lowers this child's fd limit.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
            let lim = libc::rlimit { rlim_cur: 40, rlim_max: 40 };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().expect("minisv");
    let log = || read_lossy(&dir.join("main.log"));
    wait_for(10.0, "spawn failures", || log().contains("too many open files to spawn").then_some(()));
    // Connections held open use up the last fds: to accept a new one, the server ends the
    // oldest idle one, so the control socket keeps answering while they are held.
    let held: Vec<_> =
        (0..40).filter_map(|_| std::os::unix::net::UnixStream::connect(dir.join("sv.sock")).ok()).collect();
    let state = wait_for(10.0, "the control socket to answer with the fds used up", || {
        let body = minisv::rpc::xmlrpc::encode_call("supervisor.getState", &[]);
        let (status, _, body) = http_unix(&dir.join("sv.sock"), "POST", "/RPC2", body.as_bytes(), None).ok()?;
        (status == 200).then(|| String::from_utf8_lossy(&body).into_owned())
    });
    assert!(state.contains("RUNNING"));
    wait_for(10.0, "the out-of-fds line", || {
        log().contains("idle ones to accept new ones while out of file descriptors").then_some(())
    });
    drop(held);
    let l = log();
    assert!(l.contains("spawnerr: too many open files to spawn 'hog"), "{l}");
    kill(child.id(), libc::SIGTERM);
    let _ = wait_for(20.0, "exit", || child.try_wait().ok().flatten());
}
