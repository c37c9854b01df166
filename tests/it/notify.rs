//! systemd's notify protocol (`ready_notify=`, `watchdog_sec=`), spoken by a real client:
//! READY=1 makes the program RUNNING, STATUS= shows in its status, WATCHDOG=1 pings keep it,
//! and their silence restarts it; MAINPID= is refused.

use std::fs;

use crate::harness::*;
use crate::pyenv::python_supervisor;

const SERVICE: &str = r#"
import os, socket, sys, time
addr = os.environ["NOTIFY_SOCKET"]
if addr.startswith("@"):
    addr = "\0" + addr[1:]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
def send(m):
    s.sendto(m.encode(), addr)
d = sys.argv[1]
send("STATUS=warming up")
for _ in range(3000):
    if os.path.exists(d + "/go"):
        break
    time.sleep(0.01)
send("READY=1\nSTATUS=serving")
send("MAINPID=1")
for _ in range(3000):
    if not os.path.exists(d + "/mute"):
        send("WATCHDOG=1")
    time.sleep(0.1)
"#;

#[test]
fn a_notify_program_is_running_once_ready_says_its_status_and_is_restarted_when_its_watchdog_stops() {
    let dir = TempDir::new("notify");
    let script = dir.write("service.py", SERVICE);
    let python = python_supervisor().join("python");
    let d = Daemon::start_in(
        dir,
        &format!(
            "[program:svc]\ncommand={} {} %(here)s\nready_notify=true\nwatchdog_sec=2\nstartsecs=0\n",
            python.display(),
            script.display()
        ),
        &[],
    );
    let info = wait_for(10.0, "STATUS= while it starts", || {
        let info = d.info("svc");
        (info.str_of("description") == "warming up").then_some(info)
    });
    assert_eq!(info.str_of("statename"), "STARTING", "not RUNNING before READY=1 (startsecs=0 does not count)");
    fs::write(d.path("go"), "").expect("let it be ready");
    let info = d.wait_state("svc", "RUNNING", 10.0);
    let first = info.int_of("pid");
    wait_for(10.0, "the STATUS= after READY=1", || {
        d.info("svc").str_of("description").ends_with(", serving").then_some(())
    });
    d.wait_log(&format!("svc sent MAINPID=1: ignored (minisv supervises the process it started, pid {first})"), 10.0);
    assert!(d.log().contains("success: svc entered RUNNING state, process is ready (READY=1)"), "{}", d.log());
    // Pings keep it past watchdog_sec; silence restarts it.
    fs::write(d.path("mute"), "").expect("stop the pings");
    d.wait_log("svc is unhealthy (no WATCHDOG=1 for 2 seconds): restarting it (watchdog_sec)", 10.0);
    fs::remove_file(d.path("mute")).expect("ping again");
    let again = wait_for(15.0, "a new RUNNING instance", || {
        let info = d.info("svc");
        (info.str_of("statename") == "RUNNING" && info.int_of("pid") != first).then_some(info)
    });
    assert!(again.str_of("description").contains("restarted: unhealthy: no WATCHDOG=1 for 2 seconds"), "{again:?}");
}

#[test]
fn ready_notify_with_ready_fd_is_a_config_error_with_its_line() {
    let text = check_refuses("notifyconf", "[program:a]\ncommand=sleep 1\nready_notify=true\nready_fd=3\n");
    assert!(text.contains("[program:a] ready_notify: ready_notify and ready_fd cannot both be set"), "{text}");
}
