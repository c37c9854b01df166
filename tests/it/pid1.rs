//! minisv as PID 1 of a PID namespace (`unshare --pid --fork --mount-proc`, as root): what a
//! container runtime gives it.

use std::fs;
use std::process::{Child, Command, Stdio};

use crate::harness::*;

/// PID namespaces need root (`#[ignore]`d tests, run by `.ci/run`): run without it, or where
/// `unshare` is refused, the test fails and says so.
fn require_unshare() {
    // SAFETY: geteuid cannot fail.
    assert_eq!(unsafe { libc::geteuid() }, 0, "this test needs root: PID namespaces (unshare --pid)");
    let out = Command::new("unshare").args(["--pid", "--fork", "--mount-proc", "true"]).output();
    assert!(
        out.as_ref().is_ok_and(|o| o.status.success()),
        "this test needs `unshare --pid --fork --mount-proc` to work: {out:?}"
    );
}

/// Starts `unshare ... minisv -n -c conf` and returns it with minisv's pid as seen from here.
fn start_pid1(dir: &TempDir, programs: &str) -> (Child, u32) {
    let conf = dir.write("sv.conf", &format!("{}{}", debug_config(dir.path()), programs));
    let child = Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc", BIN, "-n", "-c"])
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("unshare");
    let unshare_pid = child.id();
    let minisv: u32 = wait_for(10.0, "minisv inside the namespace", || {
        let children = fs::read_to_string(format!("/proc/{unshare_pid}/task/{unshare_pid}/children")).ok()?;
        children.split_whitespace().next()?.parse().ok()
    });
    wait_for(10.0, "the daemon to start", || {
        Some(read_lossy(&dir.join("main.log"))).filter(|l| l.contains("minisv started with pid 1\n"))
    });
    (child, minisv)
}

fn zombies_of(pid: u32) -> Vec<u32> {
    let Ok(children) = fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")) else { return Vec::new() };
    children
        .split_whitespace()
        .filter_map(|c| c.parse().ok())
        .filter(|c: &u32| {
            fs::read_to_string(format!("/proc/{c}/stat"))
                .is_ok_and(|s| s.rsplit(')').next().is_some_and(|r| r.trim_start().starts_with('Z')))
        })
        .collect()
}

#[test]
#[ignore = "needs root: PID namespaces (unshare --pid); .ci/run runs it"]
fn as_pid1_reaps_a_burst_of_double_forked_orphans_and_stops_in_order_on_sigterm() {
    require_unshare();
    let dir = TempDir::new("pid1");
    let (mut child, minisv) = start_pid1(
        &dir,
        "[program:forker]\ncommand=sh -c 'i=0; while [ $i -lt 200 ]; do (sleep 0.2 &); i=$((i+1)); done; echo done; exec sleep 1000'\n\
         startsecs=0\npriority=1\nstdout_logfile=%(here)s/forker.out\n\
         [program:last]\ncommand=sleep 1000\nstartsecs=0\npriority=2\n",
    );
    wait_for(20.0, "the burst", || fs::read_to_string(dir.join("forker.out")).ok().filter(|s| s.contains("done")));
    let log = || read_lossy(&dir.join("main.log"));
    wait_for(20.0, "200 orphans reaped", || (log().matches("reaped unknown pid").count() >= 200).then_some(()));
    assert_eq!(zombies_of(minisv), Vec::<u32>::new(), "no zombies left");

    kill(minisv, libc::SIGTERM);
    let status = wait_for(20.0, "the namespace to end", || child.try_wait().ok().flatten());
    assert_eq!(status.code(), Some(0), "a shutdown by signal exits 0");
    let log = log();
    let stop_at = |n: &str| log.find(&format!("stopped: {n} (")).unwrap_or_else(|| panic!("{n} stopped\n{log}"));
    assert!(stop_at("last") < stop_at("forker"), "reverse priority order\n{log}");
}

#[test]
#[ignore = "needs root: PID namespaces (unshare --pid); .ci/run runs it"]
fn as_pid1_a_critical_programs_status_is_the_containers() {
    require_unshare();
    let dir = TempDir::new("pid1crit");
    let (mut child, _) = start_pid1(
        &dir,
        "[program:app]\ncommand=sh -c 'sleep 0.3; kill -SEGV $$'\ncritical=true\nautorestart=false\nstartsecs=0\n",
    );
    let status = wait_for(20.0, "the namespace to end", || child.try_wait().ok().flatten());
    assert_eq!(status.code(), Some(128 + libc::SIGSEGV), "a signal death gives 128+N");
}

#[test]
fn ctrl_c_in_a_terminal_reaches_minisv_which_stops_programs_in_order() {
    // The programs are in their own process groups, so the terminal's SIGINT goes to minisv
    // only; minisv then stops them with their stopsignal (TERM), in reverse priority.
    let dir = TempDir::new("ctrlc");
    let conf = dir.write(
        "sv.conf",
        &format!(
            "{}[program:a]\ncommand=sleep 1000\nstartsecs=0\npriority=1\n[program:b]\ncommand=sleep 1000\nstartsecs=0\npriority=2\n",
            debug_config(dir.path())
        ),
    );
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/py/ctrl_c.py");
    let status =
        Command::new("python3").arg(script).arg(BIN).arg(&conf).arg(dir.join("main.log")).status().expect("python3");
    let log = read_lossy(&dir.join("main.log"));
    assert_eq!(status.code(), Some(0), "{log}");
    assert!(log.contains("WARN received SIGINT indicating exit request"), "{log}");
    let b = log.find("stopped: b (terminated by SIGTERM)").expect("b stopped by minisv");
    let a = log.find("stopped: a (terminated by SIGTERM)").expect("a stopped by minisv");
    assert!(b < a, "reverse priority order\n{log}");
}
