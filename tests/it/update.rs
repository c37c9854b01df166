//! `minisv ctl update` restarts only what changed (Supervisor restarts whole groups and
//! autostarts processes that were stopped by hand: its issues #1154, #1637, #214); the real
//! supervisorctl keeps Supervisor's behaviour.

use std::fs;

use crate::harness::*;
use crate::pyenv::python_supervisor;

const GROUP: &str = "[group:g]\nprograms=a,b\n\
    [program:a]\ncommand=sleep 1000\nstartsecs=0\n\
    [program:b]\ncommand=sleep 1001\nstartsecs=0\n\
    [program:c]\ncommand=sleep 1002\nstartsecs=0\n";

fn pid(d: &Daemon, name: &str) -> i64 {
    d.info(name).int_of("pid")
}

#[test]
fn update_restarts_only_changed_processes_and_keeps_manual_stops() {
    let d = Daemon::start("update", GROUP);
    d.wait_state("g:a", "RUNNING", 10.0);
    d.wait_state("g:b", "RUNNING", 10.0);
    d.wait_state("c", "RUNNING", 10.0);
    let (a, c) = (pid(&d, "g:a"), pid(&d, "c"));
    let out = d.ctl(&["stop", "g:b"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "g:b: stopped\n");

    // b's settings change too, but it was stopped by hand: it stays stopped. a is untouched.
    let conf = fs::read_to_string(&d.conf).expect("conf");
    fs::write(
        &d.conf,
        conf.replace("sleep 1001", "sleep 2001")
            .replace("[program:c]\ncommand=sleep 1002", "[program:c]\ncommand=sleep 2002"),
    )
    .expect("write");
    let out = d.ctl(&["update"]);
    // In supervisorctl's words, though only c and g:b were touched.
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "c: stopped\nc: updated process group\ng: stopped\ng: updated process group\n"
    );
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(pid(&d, "g:a"), a, "an unchanged process keeps running");
    assert_eq!(d.state("g:b"), "STOPPED", "a process stopped by hand stays stopped (#214)");
    let c2 = d.wait_state("c", "RUNNING", 10.0).int_of("pid");
    assert_ne!(c2, c, "a changed running process is restarted with its new settings");
    let cmdline = fs::read_to_string(format!("/proc/{c2}/cmdline")).expect("cmdline");
    assert_eq!(cmdline, "sleep\u{0}2002\u{0}");

    // Nothing changed: nothing is printed, nothing restarts.
    let out = d.ctl(&["update"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "");
    assert_eq!(pid(&d, "c"), c2);
}

#[test]
fn python_supervisorctl_update_keeps_supervisors_semantics() {
    let d = Daemon::start("pyupdate", GROUP);
    d.wait_state("g:a", "RUNNING", 10.0);
    let a = pid(&d, "g:a");
    let conf = fs::read_to_string(&d.conf).expect("conf");
    fs::write(&d.conf, conf.replace("sleep 1001", "sleep 2001")).expect("write");
    let out = std::process::Command::new(python_supervisor().join("supervisorctl"))
        .arg("-c")
        .arg(&d.conf)
        .arg("update")
        .output()
        .expect("supervisorctl");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "g: stopped\ng: updated process group\n");
    let a2 = d.wait_state("g:a", "RUNNING", 10.0).int_of("pid");
    assert_ne!(a2, a, "supervisorctl restarts the whole changed group");
}
