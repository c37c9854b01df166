//! `cgroup=` and the cgroup limits (cgroup v2): a program's whole process tree is in its own
//! cgroup, so what escaped its process group is killed when it ends. Needs a writable cgroup v2
//! (root on the host): `#[ignore]`d, run by `.ci/run`.

use std::fs;
use std::path::PathBuf;

use crate::harness::*;

/// Where the daemon's programs' cgroups are made: below the test process's own cgroup v2.
fn cgroup_mount_and_own() -> (PathBuf, String) {
    let own = fs::read_to_string("/proc/self/cgroup").expect("/proc/self/cgroup");
    let own = own.lines().find_map(|l| l.strip_prefix("0::")).expect("a cgroup v2 line").to_string();
    let mounts = fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let mount = mounts
        .lines()
        .find(|l| l.split(" - ").nth(1).is_some_and(|r| r.starts_with("cgroup2 ")))
        .and_then(|l| l.split_whitespace().nth(4))
        .expect("a cgroup2 mount");
    (PathBuf::from(mount), own)
}

fn escaped_pid(d: &Daemon, file: &str) -> u32 {
    wait_for(10.0, "the escaped process's pid", || fs::read_to_string(d.path(file)).ok()?.trim().parse().ok())
}

#[test]
#[ignore = "needs a writable cgroup v2 (root); .ci/run runs it"]
fn a_programs_cgroup_holds_what_escaped_its_process_group_and_it_is_killed_at_the_end() {
    // SAFETY: geteuid cannot fail.
    assert_eq!(unsafe { libc::geteuid() }, 0, "this test needs root: it writes the cgroup v2 tree");
    let (mount, own) = cgroup_mount_and_own();
    // Each program starts a process in a session of its own (setsid): stopasgroup cannot reach it.
    let program = |name: &str, extra: &str| {
        format!(
            "[program:{name}]\ncommand=sh -c 'setsid sh -c \"echo \\$$ > %(here)s/{name}.pid; exec sleep 1000\" & exec sleep 1000'\n\
             startsecs=0\nstopasgroup=true\n{extra}"
        )
    };
    let d = Daemon::start(
        "cgroup",
        &format!("{}{}", program("boxed", "cgroup=true\nmemory_max=100MB\npids_max=50\n"), program("loose", "")),
    );
    d.wait_state("boxed", "RUNNING", 10.0);
    d.wait_state("loose", "RUNNING", 10.0);
    let boxed = escaped_pid(&d, "boxed.pid");
    let loose = escaped_pid(&d, "loose.pid");
    let base = mount.join(own.trim_start_matches('/')).join(format!("minisv.{}", d.pid));
    let cg = fs::read_to_string(format!("/proc/{boxed}/cgroup")).expect("its cgroup");
    assert!(cg.contains(&format!("/minisv.{}/boxed", d.pid)), "the escaped process is in boxed's cgroup: {cg}");
    assert!(d.log().contains(&format!("boxed: runs in the cgroup {}", base.join("boxed").display())), "{}", d.log());
    // A limit whose controller this machine's cgroup v2 lacks is said, not silently dropped.
    let controllers = fs::read_to_string(base.join("cgroup.subtree_control")).unwrap_or_default();
    if controllers.split_whitespace().any(|c| c == "memory") {
        assert_eq!(fs::read_to_string(base.join("boxed/memory.max")).expect("memory.max").trim(), "104857600");
    } else {
        assert!(
            d.log().contains("boxed: memory_max is not in force: the memory controller is not available"),
            "{}",
            d.log()
        );
    }

    for name in ["boxed", "loose"] {
        let out = d.ctl(&["stop", name]);
        assert!(out.status.success(), "{out:?}");
    }
    wait_for(10.0, "boxed's escaped process to be killed", || (!pid_alive(boxed)).then_some(()));
    d.wait_log(&format!("boxed: killed 1 process left in its cgroup (pids {boxed})"), 10.0);
    // Without a cgroup it outlives its program (Supervisor's #1101): the test ends it.
    assert!(pid_alive(loose), "loose's escaped process survives its stop");
    kill(loose, libc::SIGKILL);
    let out = d.ctl(&["shutdown"]);
    assert!(out.status.success(), "{out:?}");
    wait_for(10.0, "the cgroups removed at exit", || (!base.exists()).then_some(()));
}
