//! Issue 3's tutorial workflow, as a new user follows it: a sample config with the HTTP server
//! and an include enabled, a program file dropped in, then `minisv ctl` update, status, stop,
//! start and `tail -f` (ended by Ctrl-C).

use std::fs;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::*;

/// Uncomments the `[inet_http_server]` section of the sample and sets its port.
fn enable_inet(sample: &str, port: u16) -> String {
    let mut out = String::new();
    let mut in_inet = false;
    for line in sample.lines() {
        let mut line = line.to_string();
        if line.starts_with(";[inet_http_server]") {
            in_inet = true;
            line = line[1..].to_string();
        } else if in_inet && line.starts_with(';') && !line.starts_with(";[") && line.contains('=') {
            line = line[1..].to_string();
            if line.starts_with("port=") {
                line = format!("port=127.0.0.1:{port}");
            }
        } else if !line.starts_with(';') || line.starts_with(";[") {
            in_inet = false;
        }
        out.push_str(&line);
        out.push('\n');
    }
    out
}

#[test]
fn tutorial_with_inet_server_update_status_stop_start_tail() {
    let dir = TempDir::new("ctltut");
    let d = dir.path().display().to_string();
    let port = free_port();
    let sample = String::from_utf8(minisv(&["echo-conf"], dir.path()).stdout).expect("utf-8");
    let sample = sample.replace("/tmp/minisv", &format!("{d}/minisv"));
    let conf_text = enable_inet(&sample, port) + "\n[include]\nfiles=conf.d/*.conf\n";
    assert!(conf_text.contains(&"\n[inet_http_server]".to_string()), "{conf_text}");
    assert!(conf_text.contains("\nusername=user") && conf_text.contains("\npassword=123"));
    let conf = dir.write("conf", &conf_text);
    let conf_s = conf.to_str().expect("utf-8").to_string();
    fs::create_dir_all(dir.join("conf.d")).expect("mkdir");

    let out = minisv(&["-c", &conf_s], dir.path());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let daemon: u32 =
        wait_for(10.0, "the pidfile", || fs::read_to_string(dir.join("minisv.pid")).ok()?.trim().parse().ok());
    let _guard = Reaper(daemon);
    wait_for(10.0, "the socket", || dir.join("minisv.sock").exists().then_some(()));

    let url = format!("http://127.0.0.1:{port}");
    let ctl = |args: &[&str]| -> (String, i32) {
        let out = Command::new(BIN)
            .args(["ctl", "-c", &conf_s, "-s", &url, "-u", "user", "-p", "123"])
            .args(args)
            .output()
            .expect("minisv ctl");
        (String::from_utf8_lossy(&out.stdout).into_owned(), out.status.code().unwrap_or(-1))
    };

    // Without credentials the inet server refuses.
    let out = Command::new(BIN).args(["ctl", "-c", &conf_s, "-s", &url, "status"]).output().expect("ctl");
    assert!(String::from_utf8_lossy(&out.stdout).contains("Server requires authentication"));

    dir.write(
        "conf.d/api.conf",
        "[program:api]\ncommand=sh -c 'i=0; while :; do echo \"api tick $i\"; i=$((i+1)); sleep 0.1; done'\n\
         stdout_logfile=%(here)s/api.log\n",
    );
    assert_eq!(ctl(&["update"]), ("api: added process group\n".to_string(), 0));
    wait_for(10.0, "api RUNNING", || {
        let (out, code) = ctl(&["status", "api"]);
        (code == 0 && out.starts_with("api") && out.contains("RUNNING   pid ")).then_some(())
    });
    assert_eq!(ctl(&["stop", "api"]), ("api: stopped\n".to_string(), 0));
    let (out, code) = ctl(&["status", "api"]);
    assert!(out.starts_with("api                              STOPPED   "), "{out}");
    assert_eq!(code, 3, "status exits 3 when a process shown is not running");
    assert_eq!(ctl(&["start", "api"]), ("api: started\n".to_string(), 0));

    // tail -f shows live output until Ctrl-C.
    let mut tail = Command::new(BIN)
        .args(["ctl", "-c", &conf_s, "-s", &url, "-u", "user", "-p", "123", "tail", "-f", "api"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("tail -f");
    let mut lines = BufReader::new(tail.stdout.take().expect("stdout")).lines();
    let first = lines.next().expect("a line").expect("utf-8");
    assert_eq!(first, "==> Press Ctrl-C to exit <==");
    let started = Instant::now();
    let mut ticks = Vec::new();
    for line in lines.by_ref() {
        let line = line.expect("utf-8");
        if let Some(n) = line.strip_prefix("api tick ") {
            ticks.push(n.parse::<u64>().expect("tick number"));
            if ticks.len() >= 15 {
                break;
            }
        }
        assert!(started.elapsed() < Duration::from_secs(20), "live output keeps coming");
    }
    assert!(ticks.windows(2).all(|w| w[1] == w[0] + 1 || w[1] == 0), "in order: {ticks:?}");
    kill(tail.id(), libc::SIGINT);
    let status = wait_for(10.0, "tail -f to end on Ctrl-C", || tail.try_wait().ok().flatten());
    assert!(status.code().is_some(), "tail -f ends by itself on SIGINT, not killed by it");

    let out = Command::new(BIN).args(["ctl", "-c", &conf_s, "shutdown"]).output().expect("ctl");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "Shut down\n");
    wait_for(15.0, "the daemon to exit", || (!pid_alive(daemon)).then_some(()));
}

struct Reaper(u32);

impl Drop for Reaper {
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
