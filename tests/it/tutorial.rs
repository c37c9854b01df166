//! The classic Supervisor tutorial, followed as a new user would (issue 2's definition of done):
//! `minisv echo-conf > conf`, an `[include]` of `conf.d/*.conf`, a `[program:api]` block copied
//! from an old tutorial, `minisv -c conf`.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use crate::harness::*;

/// The block as users copy it from old tutorials; only the absolute paths are moved into the
/// test's directory, and rotation is configured small so the test can see it happen.
const API_BLOCK: &str = "[program:api]
user=root
directory= /srv/api
command= /srv/api/run-api -Xmx1g --spring.profiles.active=dev >springboot.log
autostart=true
autorestart=true
startsecs=5
priority=1
loglevel=debug
log_stderr=true
stdout_logfile=/var/log/api2.log
redirect_stderr=true
stdout_logfile_maxbytes=2KB
stdout_logfile_backups=3
";

const RUN_API: &str = "#!/bin/sh
echo \"run-api in $(pwd) with: $*\"
i=0
while [ $i -lt 300 ]; do echo \"api line $i\"; i=$((i+1)); done
echo 'to stderr' >&2
exec sleep 1000
";

fn current_user() -> String {
    if unsafe_geteuid() == 0 {
        return "root".into();
    }
    std::env::var("USER").unwrap_or_else(|_| "root".into())
}

fn unsafe_geteuid() -> u32 {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() }
}

#[test]
fn classic_tutorial_works_end_to_end() {
    let dir = TempDir::new("tutorial");
    let d = dir.path().display().to_string();

    // minisv echo-conf > conf, with its /tmp paths moved into this test's directory.
    let sample = minisv(&["echo-conf"], dir.path());
    assert!(sample.status.success());
    let sample = String::from_utf8(sample.stdout).expect("utf-8").replace("/tmp/minisv", &format!("{d}/minisv"));
    let conf = dir.write("conf", &format!("{sample}\n[include]\nfiles=conf.d/*.conf\n"));

    let block = API_BLOCK
        .replace("/srv/api", &format!("{d}/srv/api"))
        .replace("/var/log", &format!("{d}/var/log"))
        .replace("user=root", &format!("user={}", current_user()));
    let api_conf = dir.write("conf.d/api.conf", &block);
    let script = dir.write("srv/api/run-api", RUN_API);
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).expect("chmod");
    fs::create_dir_all(dir.join("var/log")).expect("mkdir");

    // Start it as a user would: it daemonizes.
    let out = minisv(&["-c", conf.to_str().expect("utf-8")], dir.path());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let daemon_pid: u32 =
        wait_for(10.0, "the pidfile", || fs::read_to_string(dir.join("minisv.pid")).ok()?.trim().parse().ok());
    let _guard = KillOnDrop(daemon_pid);
    let log = || fs::read_to_string(dir.join("minisv.log")).unwrap_or_default();

    // The warnings name the file and line of each Supervisor-2 setting and of the shell redirect.
    let main_log = wait_for(15.0, "startup warnings", || Some(log()).filter(|l| l.contains("spawned: 'api'")));
    let at = |key: &str| {
        let line = block.lines().position(|l| l.starts_with(key)).expect("key in block") + 1;
        format!("{}:{line}: [program:api] {key}", api_conf.display())
    };
    assert!(main_log.contains(&format!("WARN {}: 'loglevel' is not a program option", at("loglevel"))), "{main_log}");
    assert!(
        main_log.contains(&format!("WARN {}: 'log_stderr' is a Supervisor 2 setting", at("log_stderr"))),
        "{main_log}"
    );
    assert!(
        main_log
            .contains(&format!("WARN {}: '>springboot.log' is passed to the program as an argument", at("command"))),
        "{main_log}"
    );

    // It runs in its directory with the redirect as a plain argument, and its output is logged
    // (stderr too, redirected) and rotated as configured.
    let _api_log = dir.join("var/log/api2.log");
    let all_output = || -> String {
        ["var/log/api2.log.3", "var/log/api2.log.2", "var/log/api2.log.1", "var/log/api2.log"]
            .iter()
            .map(|f| fs::read_to_string(dir.join(f)).unwrap_or_default())
            .collect()
    };
    wait_for(15.0, "rotated output", || dir.join("var/log/api2.log.1").exists().then_some(()));
    let first = wait_for(15.0, "stderr in the log", || Some(all_output()).filter(|s| s.contains("to stderr")));
    assert!(first.ends_with("api line 299\nto stderr\n"), "{first}");
    assert!(!dir.join("var/log/api2.log.4").exists(), "three backups at most");
    assert!(!dir.join("srv/api/springboot.log").exists(), "no shell: nothing is redirected");

    // After startsecs it is RUNNING; a SIGKILL is followed by a restart within 100 ms.
    wait_for(20.0, "api RUNNING", || log().contains("success: api entered RUNNING state").then_some(()));
    let spawned = |l: &str| -> Vec<u32> {
        l.lines().filter_map(|x| x.split("spawned: 'api' with pid ").nth(1)?.trim().parse().ok()).collect()
    };
    let pid = *spawned(&log()).last().expect("api pid");
    let killed = Instant::now();
    kill(pid, libc::SIGKILL);
    let new_pid = wait_for(5.0, "api restarted", || spawned(&log()).into_iter().find(|p| *p != pid));
    let took = killed.elapsed();
    assert!(took < Duration::from_millis(100), "restarted after {took:?}");
    assert!(pid_alive(new_pid));
    let cwd_line = wait_for(15.0, "the program's report", || {
        all_output().lines().find(|l| l.starts_with("run-api in ")).map(str::to_string)
    });
    assert_eq!(cwd_line, format!("run-api in {d}/srv/api with: -Xmx1g --spring.profiles.active=dev >springboot.log"));

    kill(daemon_pid, libc::SIGTERM);
    wait_for(15.0, "the daemon to exit", || (!pid_alive(daemon_pid)).then_some(()));
    assert!(!pid_alive(new_pid), "programs are stopped with the daemon");
}

struct KillOnDrop(u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if pid_alive(self.0) {
            kill(self.0, libc::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(15);
            while pid_alive(self.0) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}
