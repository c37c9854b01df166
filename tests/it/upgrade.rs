//! Upgrade in place (`minisv ctl upgrade`, SIGUSR1): the daemon executes the binary at its
//! path in its own process and the new daemon takes over every program. Each test runs a copy
//! of the binary in its own directory, which it replaces as a package manager would (a new
//! file renamed over the old one).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use minisv::rpc::xmlrpc::Value;

use crate::harness::*;

/// Writes `<name> <n>` on stdout and `<name> e<n>` on stderr for odd n, n = 0, 1, 2 ...
/// (about 500 lines a second), until stopped.
const WRITER: &str = r#"import os, sys, time
name = sys.argv[1]
for i in range(10000000):
    os.write(1, ('%s %d\n' % (name, i)).encode())
    if i % 2:
        os.write(2, ('%s e%d\n' % (name, i)).encode())
    time.sleep(0.002)
"#;

/// A copy of the binary in `dir`, which the test may replace.
fn copy_binary(dir: &TempDir) -> PathBuf {
    let exe = dir.join("minisv");
    fs::copy(BIN, &exe).expect("copy the binary");
    exe
}

/// Puts `content` at `path` as a package manager would: a new file renamed over the old one
/// (the running binary cannot be written in place).
fn install(path: &Path, content: &[u8]) {
    let tmp = path.with_extension("new");
    fs::write(&tmp, content).expect("write the new binary");
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755)).expect("chmod");
    fs::rename(&tmp, path).expect("rename over the old binary");
}

fn pids(d: &Daemon) -> Vec<(String, i64, i64)> {
    let all = d.rpc("supervisor.getAllProcessInfo", &[]).expect("getAllProcessInfo");
    let mut v: Vec<(String, i64, i64)> = all
        .as_array()
        .expect("array")
        .iter()
        .map(|p| (format!("{}:{}", p.str_of("group"), p.str_of("name")), p.int_of("pid"), p.int_of("start")))
        .collect();
    v.sort();
    v
}

fn lines_of(path: &Path) -> Vec<String> {
    read_lossy(path).lines().map(str::to_string).collect()
}

/// The numbers after `prefix` on each line, which must be every number from `first` on in
/// steps of `step`, each once and in order.
fn check_sequence(path: &Path, prefix: &str, first: u64, step: u64) -> usize {
    let lines = lines_of(path);
    assert!(!lines.is_empty(), "{} is empty", path.display());
    for (k, line) in lines.iter().enumerate() {
        let want = format!("{prefix}{}", first + step * k as u64);
        assert_eq!(line, &want, "{} line {}: every number once and in order", path.display(), k + 1);
    }
    lines.len()
}

fn ctl_text(d: &Daemon, args: &[&str]) -> (i32, String) {
    let out = d.ctl(args);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn an_upgrade_keeps_twenty_writers_running_and_loses_no_line() {
    let dir = TempDir::new("upg");
    dir.write("w.py", WRITER);
    let exe = copy_binary(&dir);
    let conf = dir.write(
        "sv.conf",
        &format!(
            "{}[program:w]\ncommand=python3 %(here)s/w.py w%(process_num)02d\nnumprocs=20\n\
             process_name=w%(process_num)02d\nstdout_logfile=%(here)s/w%(process_num)02d.log\nstartsecs=1\n\
             [program:manual]\ncommand=sleep 1000\nstartsecs=0\n",
            base_config(dir.path())
        ),
    );
    let d = Daemon::start_exe(dir, conf, &exe, &[], &[]);
    let names: Vec<String> = (0..20).map(|i| format!("w{i:02}")).collect();
    for n in &names {
        d.wait_state(&format!("w:{n}"), "RUNNING", 20.0);
    }
    // Stopped by hand: stays stopped through the upgrade (not autostarted by the new daemon).
    assert_eq!(ctl_text(&d, &["stop", "manual"]).0, 0);
    let before = pids(&d);
    let daemon_pid = d.rpc("supervisor.getPID", &[]).expect("getPID").as_int();
    let log = |n: &str| d.path(&format!("{n}.log"));
    for n in &names {
        wait_for(20.0, "output before the upgrade", || (lines_of(&log(n)).len() >= 50).then_some(()));
    }

    // The same build, installed anew at the path the daemon was started from.
    install(&exe, &fs::read(BIN).expect("read the binary"));
    let (code, text) = ctl_text(&d, &["upgrade"]);
    assert_eq!(code, 0, "{text}\n{}", d.log());
    assert!(text.contains("20 running processes taken over"), "{text}");
    // The second one by signal.
    d.signal(libc::SIGUSR1);
    wait_for(20.0, "the second upgrade", || (d.count_log("upgraded in place from minisv") == 2).then_some(()));

    assert_eq!(pids(&d), before, "the same pids and start times");
    assert_eq!(d.rpc("supervisor.getPID", &[]).expect("getPID").as_int(), daemon_pid, "the daemon keeps its pid");
    assert_eq!(d.state("manual"), "STOPPED");
    let at_upgrade: Vec<usize> = names.iter().map(|n| lines_of(&log(n)).len()).collect();
    for (n, seen) in names.iter().zip(&at_upgrade) {
        wait_for(20.0, "output after the upgrades", || (lines_of(&log(n)).len() >= seen + 200).then_some(()));
    }
    let (code, text) = ctl_text(&d, &["stop", "w:*"]);
    assert_eq!(code, 0, "{text}");
    for n in &names {
        let info = d.info(&format!("w:{n}"));
        let out = check_sequence(&log(n), &format!("{n} "), 0, 1);
        // stderr went to an AUTO log, whose name the new daemon kept.
        let err = PathBuf::from(info.str_of("stderr_logfile"));
        let errs = check_sequence(&err, &format!("{n} e"), 1, 2);
        assert!(out > 250 && errs > 100, "{n}: {out} lines of stdout, {errs} of stderr");
    }
    let auto_logs = fs::read_dir(d.dir.path())
        .expect("read dir")
        .filter(|e| e.as_ref().is_ok_and(|e| e.file_name().to_string_lossy().starts_with("w00-stderr---")))
        .count();
    assert_eq!(auto_logs, 1, "one AUTO stderr log for w00, not one per daemon");
    assert_eq!(d.count_log("spawned: 'manual'"), 1, "manual was not started again\n{}", d.log());
}

#[test]
fn an_upgrade_to_a_broken_binary_or_one_that_cannot_take_over_leaves_the_daemon_running() {
    let dir = TempDir::new("upgbad");
    let exe = copy_binary(&dir);
    let conf =
        dir.write("sv.conf", &format!("{}[program:s]\ncommand=sleep 1000\nstartsecs=0\n", base_config(dir.path())));
    // The fault makes a new binary (this debug build) give up after the exec, before taking over.
    let d = Daemon::start_exe(dir, conf.clone(), &exe, &[], &[("MINISV_TEST_FAIL_TAKEOVER", "1")]);
    d.wait_state("s", "RUNNING", 10.0);
    let before = pids(&d);
    let good = fs::read(BIN).expect("read the binary");

    let cases: [(&str, Vec<u8>, &str); 4] = [
        (
            "a script that fails",
            b"#!/bin/sh\necho broken >&2\nexit 3\n".to_vec(),
            "failed its pre-flight run (exit status 3): broken",
        ),
        ("not an executable at all", vec![0x7f, b'E', b'L', b'F', 1, 2, 3, 0, 0, 0, 0, 0], "cannot run"),
        ("a program that is not minisv", b"#!/bin/sh\necho hello\n".to_vec(), "is not a minisv that can take over"),
        ("a crash", b"#!/bin/sh\nkill -SEGV $$\n".to_vec(), "terminated by SIGSEGV"),
    ];
    for (what, content, said) in cases {
        install(&exe, &content);
        let (code, text) = ctl_text(&d, &["upgrade"]);
        assert_eq!(code, 1, "{what}: {text}");
        assert!(text.contains("ERROR: upgrade refused:") && text.contains(said), "{what}: {text}");
        assert_eq!(pids(&d), before, "{what}: nothing changed");
    }

    // A binary that passes the check and then cannot take over: the old one is executed again.
    install(&exe, &good);
    let (code, text) = ctl_text(&d, &["upgrade"]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("the new binary could not take over (MINISV_TEST_FAIL_TAKEOVER is set)"), "{text}");
    assert!(text.contains("goes on"), "{text}");
    assert_eq!(pids(&d), before, "the old binary took its processes back");
    assert_eq!(ctl_text(&d, &["restart", "s"]).0, 0, "and supervises them");
    d.wait_state("s", "RUNNING", 10.0);

    // A config that no longer gives the running programs is refused before anything runs.
    fs::write(
        &conf,
        format!("{}[program:s]\ncommand=sleep 1000\n[program:t]\ncommand=sleep 1000\n", base_config(d.dir.path())),
    )
    .expect("edit the config");
    let (code, text) = ctl_text(&d, &["upgrade"]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("t added") && text.contains("update"), "{text}");
    assert!(d.log().contains("upgrade refused"), "{}", d.log());
}

#[test]
#[ignore = "needs root: PID namespaces (unshare --pid); .ci/run runs it"]
fn as_pid1_an_upgrade_keeps_pid_1_and_every_program() {
    // SAFETY: geteuid cannot fail.
    assert_eq!(unsafe { libc::geteuid() }, 0, "this test needs root: PID namespaces (unshare --pid)");
    let dir = TempDir::new("upgpid1");
    dir.write("w.py", WRITER);
    let exe = copy_binary(&dir);
    let conf = dir.write(
        "sv.conf",
        &format!(
            "{}[program:w]\ncommand=python3 %(here)s/w.py w\nstdout_logfile=%(here)s/w.log\nstartsecs=0\n",
            base_config(dir.path())
        ),
    );
    let mut child: Child = Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc"])
        .arg(&exe)
        .args(["-n", "-c"])
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("unshare");
    let sock = dir.join("sv.sock");
    let rpc = |m: &str| try_rpc(&sock, m, &[]).and_then(Result::ok);
    wait_for(10.0, "minisv as PID 1", || rpc("supervisor.getPID").filter(|p| p.as_int() == Some(1)));
    let w_pid = || {
        try_rpc(&sock, "supervisor.getProcessInfo", &[Value::from("w")])
            .and_then(Result::ok)
            .filter(|i| i.str_of("statename") == "RUNNING")
            .map(|i| i.int_of("pid"))
    };
    let before = wait_for(10.0, "w RUNNING", w_pid);
    wait_for(10.0, "output", || (lines_of(&dir.join("w.log")).len() >= 50).then_some(()));
    install(&exe, &fs::read(BIN).expect("read the binary"));
    let out = Command::new(BIN).args(["ctl", "-c"]).arg(&conf).arg("upgrade").output().expect("ctl upgrade");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success() && text.contains("(pid 1)"), "{text}{}", read_lossy(&dir.join("main.log")));
    assert_eq!(rpc("supervisor.getPID").and_then(|p| p.as_int()), Some(1), "still PID 1");
    assert_eq!(w_pid(), Some(before), "w kept its pid");
    let seen = lines_of(&dir.join("w.log")).len();
    wait_for(10.0, "output after the upgrade", || (lines_of(&dir.join("w.log")).len() >= seen + 100).then_some(()));
    let out = Command::new(BIN).args(["ctl", "-c"]).arg(&conf).arg("shutdown").output().expect("ctl shutdown");
    assert!(out.status.success());
    let status = wait_for(20.0, "the namespace to end", || child.try_wait().ok().flatten());
    assert_eq!(status.code(), Some(0));
    check_sequence(&dir.join("w.log"), "w ", 0, 1);
}
