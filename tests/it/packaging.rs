//! The files under `packaging/`: the Dockerfile and its config, the systemd unit, the OpenWrt
//! procd and sysvinit init scripts, the logrotate snippet, the static build and smoke-test
//! scripts, and the tool that lays out the static binaries' code. Each is checked by the tool that reads it when the tool is installed (`sh -n`,
//! `bash -n`, `systemd-analyze verify`, `logrotate`, `shellcheck`), and the init scripts and the
//! logrotate snippet are run against the real daemon.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::harness::{kill, pid_alive, wait_for, Daemon, TempDir, BIN};

pub(crate) fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub(crate) fn packaging(p: &str) -> PathBuf {
    root().join("packaging").join(p)
}

pub(crate) fn read(p: &str) -> String {
    fs::read_to_string(packaging(p)).unwrap_or_else(|e| panic!("read packaging/{p}: {e}"))
}

/// Whether `cmd` can be run (found on PATH).
fn have(cmd: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {cmd}"))
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A tool an #[ignore]d test needs: installed with apt-get (Debian's `package`) when missing
/// and running as root, as CI does; the test fails, saying what to install, when it cannot be.
fn need(cmd: &str, package: &str) {
    if have(cmd) {
        return;
    }
    // SAFETY: geteuid cannot fail.
    assert_eq!(unsafe { libc::geteuid() }, 0, "this test needs {cmd}: apt-get install {package} (or run it as root)");
    // One install at a time (tests run in parallel; dpkg takes a lock), waiting for any other.
    static APT: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = APT.lock().unwrap_or_else(|e| e.into_inner());
    if have(cmd) {
        return;
    }
    let ok = Command::new("apt-get")
        .args(["install", "-y", "-q", "--no-install-recommends", "-o", "DPkg::Lock::Timeout=300", package])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok && have(cmd), "this test needs {cmd}, and apt-get install {package} failed");
}

pub(crate) fn show(what: &str, out: &Output) -> String {
    format!(
        "{what}: {}\n--- stdout\n{}--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

pub(crate) fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("run {cmd:?}: {e}"))
}

fn assert_success(what: &str, out: &Output) {
    assert!(out.status.success(), "{}", show(what, out));
}

/// `sh -n` (or `bash -n`) on a script.
fn syntax_check(shell: &str, p: &str) {
    let out = run(Command::new(shell).arg("-n").arg(packaging(p)));
    assert_success(&format!("{shell} -n packaging/{p}"), &out);
    assert!(out.stderr.is_empty(), "{}", show(&format!("{shell} -n packaging/{p}"), &out));
}

// ---- Dockerfile ----------------------------------------------------------------------------

/// The Dockerfile's instructions: (INSTRUCTION, arguments), continuation lines joined,
/// comments and blank lines dropped.
fn dockerfile_instructions(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut pending = String::new();
    for line in text.lines() {
        let t = line.trim();
        if pending.is_empty() && (t.is_empty() || t.starts_with('#')) {
            continue;
        }
        if let Some(head) = t.strip_suffix('\\') {
            pending.push_str(head);
            pending.push(' ');
            continue;
        }
        pending.push_str(t);
        let full = std::mem::take(&mut pending);
        let (ins, args) = full.split_once(char::is_whitespace).unwrap_or((&full, ""));
        out.push((ins.to_ascii_uppercase(), args.trim().to_string()));
    }
    assert!(pending.is_empty(), "the Dockerfile ends with a continuation line");
    out
}

/// A JSON array of strings (the exec form of ENTRYPOINT and CMD), or None.
fn json_string_array(s: &str) -> Option<Vec<String>> {
    let inner = s.trim().strip_prefix('[')?.strip_suffix(']')?;
    let mut items = Vec::new();
    let mut chars = inner.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            return if items.is_empty() { Some(items) } else { None };
        }
        if chars.next()? != '"' {
            return None;
        }
        let mut item = String::new();
        loop {
            match chars.next()? {
                '"' => break,
                '\\' => match chars.next()? {
                    c @ ('"' | '\\' | '/') => item.push(c),
                    'n' => item.push('\n'),
                    't' => item.push('\t'),
                    _ => return None,
                },
                c => item.push(c),
            }
        }
        items.push(item);
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        match chars.next() {
            None => return Some(items),
            Some(',') => {}
            Some(_) => return None,
        }
    }
}

#[test]
fn json_string_array_parses_the_exec_form_only() {
    assert_eq!(json_string_array(r#"["/minisv", "-n"]"#), Some(vec!["/minisv".into(), "-n".into()]));
    assert_eq!(json_string_array(r#"[ "a\"b" ]"#), Some(vec!["a\"b".into()]));
    assert_eq!(json_string_array("[]"), Some(vec![]));
    assert_eq!(json_string_array("/minisv -n"), None);
    assert_eq!(json_string_array(r#"["/minisv", ]"#), None);
    assert_eq!(json_string_array(r#"['/minisv']"#), None);
}

#[test]
fn dockerfile_copies_what_exists_and_has_an_exec_form_entrypoint() {
    let text = read("Dockerfile");
    let ins = dockerfile_instructions(&text);
    let build_static = read("build-static");

    let froms: Vec<&str> = ins.iter().filter(|(i, _)| i == "FROM").map(|(_, a)| a.as_str()).collect();
    assert_eq!(froms.last(), Some(&"scratch"), "the final stage is FROM scratch: {froms:?}");

    let mut copied = Vec::new();
    for (i, args) in ins.iter().filter(|(i, _)| i == "COPY" || i == "ADD") {
        assert_eq!(i, "COPY", "use COPY, not ADD: {args}");
        let words: Vec<&str> = args.split_whitespace().collect();
        if words.iter().any(|w| w.starts_with("--from=")) {
            continue;
        }
        let words: Vec<&str> = words.into_iter().filter(|w| !w.starts_with("--")).collect();
        assert!(words.len() >= 2, "COPY needs a source and a destination: {args}");
        let (dest, sources) = words.split_last().expect("COPY words");
        for src in sources {
            if let Some(rest) = src.strip_prefix("target/static/") {
                // Produced by packaging/build-static for a target it builds.
                let triple = rest.strip_suffix("/minisv").unwrap_or_else(|| panic!("unexpected build output {src}"));
                assert!(build_static.contains(triple), "packaging/build-static does not build {triple}");
            } else {
                assert!(root().join(src).exists(), "COPY source {src} is not in the repository");
            }
            copied.push((src.to_string(), dest.to_string()));
        }
    }
    assert!(
        copied.contains(&("target/static/x86_64-unknown-linux-musl/minisv".into(), "/minisv".into())),
        "the static binary is copied to /minisv: {copied:?}"
    );
    assert!(
        copied.contains(&("packaging/container/minisv.conf".into(), "/etc/minisv.conf".into())),
        "the container config is copied to /etc/minisv.conf: {copied:?}"
    );

    let entrypoints: Vec<&str> = ins.iter().filter(|(i, _)| i == "ENTRYPOINT").map(|(_, a)| a.as_str()).collect();
    assert_eq!(entrypoints.len(), 1, "one ENTRYPOINT: {entrypoints:?}");
    assert_eq!(
        json_string_array(entrypoints[0]),
        Some(vec!["/minisv".to_string(), "-n".into(), "-c".into(), "/etc/minisv.conf".into()]),
        "ENTRYPOINT must be the JSON exec form (so that minisv is PID 1, not a shell)"
    );
}

#[test]
fn container_config_passes_minisv_check() {
    let conf = packaging("container/minisv.conf");
    let out = run(Command::new(BIN).arg("check").arg("-c").arg(&conf));
    assert_success("minisv check -c packaging/container/minisv.conf", &out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    for needle in ["main log: /dev/stdout", "pidfile: /run/minisv.pid", "unix:///run/minisv.sock", "demo"] {
        assert!(stdout.contains(needle), "{needle:?} missing from\n{stdout}");
    }
}

// ---- systemd -------------------------------------------------------------------------------

/// `[Section] key=value` lines of a unit file: (section, key, value).
fn unit_entries(text: &str) -> Vec<(String, String, String)> {
    let mut section = String::new();
    let mut out = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = s.to_string();
            continue;
        }
        let (k, v) = line.split_once('=').unwrap_or_else(|| panic!("not key=value: {line}"));
        out.push((section.clone(), k.trim().to_string(), v.trim().to_string()));
    }
    out
}

#[test]
fn systemd_unit_has_the_required_settings() {
    let entries = unit_entries(&read("minisv.service"));
    let get = |section: &str, key: &str| -> String {
        let found: Vec<&String> =
            entries.iter().filter(|(s, k, _)| s == section && k == key).map(|(_, _, v)| v).collect();
        assert_eq!(found.len(), 1, "[{section}] {key} once: {found:?}");
        found[0].clone()
    };
    assert_eq!(get("Service", "Type"), "simple");
    let exec: Vec<String> = get("Service", "ExecStart").split_whitespace().map(String::from).collect();
    assert!(exec[0].starts_with('/') && exec[0].ends_with("/minisv"), "ExecStart runs minisv: {exec:?}");
    assert!(exec.iter().any(|a| a == "-n"), "ExecStart keeps minisv in the foreground (-n): {exec:?}");
    assert_eq!(get("Service", "ExecReload"), "/bin/kill -HUP $MAINPID");
    assert!(["mixed", "process"].contains(&get("Service", "KillMode").as_str()));
    assert_eq!(get("Service", "Restart"), "on-failure");
    assert_eq!(get("Install", "WantedBy"), "multi-user.target");
}

/// `systemd-analyze verify` on a copy of `unit` running the test binary; its complaints.
fn systemd_verify(dir: &TempDir, name: &str, unit: &str) -> String {
    let conf = dir.write("minisv.conf", &crate::harness::base_config(dir.path()));
    let unit = unit.replace("/usr/bin/minisv", BIN).replace("/etc/minisv.conf", &conf.display().to_string());
    let path = dir.write(name, &unit);
    let out = run(Command::new("systemd-analyze").arg("verify").arg("--man=no").arg(&path));
    // Complaints about the unit name the file; other lines are about the host's own units.
    let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    all.lines().filter(|l| l.contains(name)).map(|l| format!("{l}\n")).collect()
}

#[test]
#[ignore = "needs systemd-analyze (apt-get install systemd, done when root); .ci/run runs it"]
fn systemd_unit_passes_systemd_analyze_verify() {
    need("systemd-analyze", "systemd");
    let dir = TempDir::new("unit");
    let unit = read("minisv.service");
    assert_eq!(systemd_verify(&dir, "minisv.service", &unit), "");
    // The check can fail: a misspelt key is reported.
    let bad = unit.replace("KillMode=", "KilMode=");
    assert!(systemd_verify(&dir, "bad.service", &bad).contains("KilMode"), "systemd-analyze missed a bad key");
}

// ---- OpenWrt procd -------------------------------------------------------------------------

#[test]
fn openwrt_init_script_asks_procd_for_a_foreground_respawned_minisv() {
    syntax_check("sh", "openwrt/minisv.init");
    let script = read("openwrt/minisv.init");
    assert!(script.starts_with("#!/bin/sh /etc/rc.common\n"), "an rc.common script");
    assert!(script.lines().any(|l| l == "USE_PROCD=1"), "USE_PROCD=1");
    // Source it with procd's functions stubbed out, and record what it asks procd to do. Its
    // log directory (in RAM on a router) is moved into a temp dir, where it must be made.
    let dir = TempDir::new("openwrt");
    let logdir = dir.join("log/minisv");
    let stubs = r#"
        procd_open_instance() { echo "open $*"; }
        procd_set_param() { echo "param $*"; }
        procd_close_instance() { echo "close $*"; }
        procd_send_signal() { echo "signal $*"; }
        . "$1"
        LOGDIR=$2
        echo "-- start_service"; start_service
        echo "-- reload_service"; reload_service
    "#;
    let out = run(Command::new("sh").arg("-c").arg(stubs).arg("sh").arg(packaging("openwrt/minisv.init")).arg(&logdir));
    assert!(logdir.is_dir(), "start_service did not make the log directory");
    assert!(
        script.contains("LOGDIR=/tmp/log/minisv"),
        "the init script makes the log directory of openwrt/minisv.conf"
    );
    assert_success("start_service and reload_service with stubbed procd", &out);
    let calls = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = calls.lines().collect();
    let start = lines.iter().position(|l| *l == "-- start_service").expect("start_service ran");
    let reload = lines.iter().position(|l| *l == "-- reload_service").expect("reload_service ran");
    let started = &lines[start + 1..reload];
    assert_eq!(started.first(), Some(&"open "), "{calls}");
    assert_eq!(started.last(), Some(&"close "), "{calls}");
    assert!(started.contains(&"param command /usr/bin/minisv -n -c /etc/minisv.conf"), "{calls}");
    assert!(started.iter().any(|l| l.starts_with("param respawn")), "{calls}");
    assert_eq!(&lines[reload + 1..], &["signal minisv * HUP"], "{calls}");
}

#[test]
fn openwrt_config_passes_minisv_check_and_logs_to_ram() {
    // minisv check wants the log directory, which the init script makes on the router: here it
    // is moved into a temp dir.
    let conf = read("openwrt/minisv.conf");
    let dir = TempDir::new("openwrt-conf");
    let logdir = dir.join("log/minisv");
    fs::create_dir_all(&logdir).expect("mkdir");
    let logdir = logdir.to_str().expect("utf-8 temp dir");
    let moved = dir.join("minisv.conf");
    fs::write(&moved, conf.replace("/tmp/log/minisv", logdir)).expect("write config");
    let out = run(Command::new(BIN).arg("check").arg("-c").arg(&moved));
    assert_success("minisv check -c packaging/openwrt/minisv.conf (logs in a temp dir)", &out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let main_log = format!("{logdir}/minisv.log");
    for needle in [main_log.as_str(), "/var/run/minisv.pid", "unix:///var/run/minisv.sock", "heartbeat"] {
        assert!(stdout.contains(needle), "{needle:?} missing from\n{stdout}");
    }
    // Nothing is written to the flash: every log is under /tmp (a tmpfs on OpenWrt), small.
    for line in conf.lines().filter(|l| l.contains("logfile=") || l.starts_with("childlogdir=")) {
        assert!(line.contains("=/tmp/log/minisv/") || line.ends_with("=/tmp/log/minisv"), "{line}");
    }
    assert!(conf.lines().any(|l| l == "logfile_maxbytes=64KB"), "{conf}");
    assert!(conf.lines().any(|l| l == "stdout_logfile_maxbytes=32KB"), "{conf}");
}

// ---- sysvinit ------------------------------------------------------------------------------

/// A daemon started by the init script: killed by pid when the test ends with it running.
struct Started {
    pidfile: PathBuf,
}

impl Drop for Started {
    fn drop(&mut self) {
        let Some(pid) = fs::read_to_string(&self.pidfile).ok().and_then(|s| s.trim().parse::<u32>().ok()) else {
            return;
        };
        if pid_alive(pid) {
            kill(pid, libc::SIGTERM);
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
            while pid_alive(pid) && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            if pid_alive(pid) {
                kill(pid, libc::SIGKILL);
            }
        }
    }
}

fn sysvinit(dir: &TempDir, path: Option<&str>, action: &str) -> Output {
    let mut cmd = Command::new("sh");
    cmd.arg(packaging("sysvinit/minisv"))
        .arg(action)
        .env("MINISV_BIN", BIN)
        .env("MINISV_CONF", dir.join("sv.conf"))
        .env("MINISV_PIDFILE", dir.join("init.pid"))
        .env("MINISV_DEFAULTS", dir.join("no-defaults"))
        .env("MINISV_STOP_TIMEOUT", "20")
        .current_dir(dir.path());
    if let Some(path) = path {
        cmd.env("PATH", path);
    }
    run(&mut cmd)
}

fn sysvinit_cycle(tag: &str, path: Option<&str>) {
    let dir = TempDir::new(tag);
    dir.write(
        "sv.conf",
        &format!(
            "{}[program:sleeper]\ncommand=sh -c 'exec sleep 1000'\nstartsecs=0\n",
            crate::harness::base_config(dir.path())
        ),
    );
    let pidfile = dir.join("init.pid");
    let _guard = Started { pidfile: pidfile.clone() };

    let out = sysvinit(&dir, path, "status");
    assert_eq!(
        (out.status.code(), String::from_utf8_lossy(&out.stdout).as_ref()),
        (Some(3), "minisv is not running\n")
    );

    let out = sysvinit(&dir, path, "start");
    assert_success("init script start", &out);
    let pid: u32 = fs::read_to_string(&pidfile).expect("pid file after start").trim().parse().expect("a pid");
    assert!(pid_alive(pid), "the daemon (pid {pid}) runs after start");
    let sleeper = wait_for(10.0, "sleeper RUNNING", || {
        let info = crate::harness::rpc_unix(
            &dir.join("sv.sock"),
            "supervisor.getProcessInfo",
            &[minisv::rpc::xmlrpc::Value::from("sleeper")],
        )
        .ok()?;
        (info.str_of("statename") == "RUNNING").then(|| info.int_of("pid") as u32)
    });

    let out = sysvinit(&dir, path, "status");
    assert_eq!(
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned()),
        (Some(0), format!("minisv is running (pid {pid})\n"))
    );
    let out = sysvinit(&dir, path, "start");
    assert_eq!(
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned()),
        (Some(0), format!("minisv is already running (pid {pid})\n"))
    );

    let out = sysvinit(&dir, path, "stop");
    assert_success("init script stop", &out);
    assert!(!pid_alive(pid), "the daemon (pid {pid}) is gone after stop");
    assert!(!pid_alive(sleeper), "the program (pid {sleeper}) is gone after stop");
    assert!(!pidfile.exists(), "the pid file is gone after stop");
    let out = sysvinit(&dir, path, "status");
    assert_eq!(out.status.code(), Some(3), "{}", show("status after stop", &out));
}

#[test]
fn sysvinit_script_starts_reports_and_stops_the_daemon() {
    syntax_check("sh", "sysvinit/minisv");
    sysvinit_cycle("sysv", None);
}

#[test]
fn sysvinit_script_works_without_start_stop_daemon() {
    // Debian and BusyBox install start-stop-daemon in an sbin directory: leave those out.
    let path = "/usr/local/bin:/usr/bin:/bin";
    let found = run(Command::new("sh").arg("-c").arg("command -v start-stop-daemon").env("PATH", path));
    if found.status.success() {
        eprintln!("skipped: start-stop-daemon is in {path}");
        return;
    }
    sysvinit_cycle("sysv-kill", Some(path));
}

// ---- logrotate -----------------------------------------------------------------------------

#[test]
fn logrotate_snippet_signals_the_daemon_after_rotating() {
    let snippet = read("logrotate/minisv");
    assert!(snippet.contains("postrotate") && snippet.contains("endscript"), "{snippet}");
    assert!(snippet.contains(r#"kill -USR2 "$(cat /run/minisv.pid)""#), "{snippet}");
}

#[test]
#[ignore = "needs logrotate (apt-get install logrotate, done when root); .ci/run runs it"]
fn logrotate_rotates_with_the_snippet_and_the_daemon_reopens_its_logs() {
    need("logrotate", "logrotate");
    let snippet = read("logrotate/minisv");
    let d = Daemon::start(
        "logrot",
        "[program:ticker]\ncommand=sh -c 'while :; do echo tick; sleep 0.05; done'\n\
         stdout_logfile=%(here)s/ticker.log\nstdout_logfile_maxbytes=0\nstartsecs=0\n",
    );
    let ticker = d.path("ticker.log");
    wait_for(10.0, "ticker output", || fs::read_to_string(&ticker).ok().filter(|s| s.contains("tick")));
    let main_log = d.path("main.log");
    let conf = d.dir.write(
        "logrotate.conf",
        &snippet
            .replace("/var/log/minisv/*.log", &format!("{}/*.log", d.dir.path().display()))
            .replace("/run/minisv.pid", &d.path("sv.pid").display().to_string()),
    );
    let state = d.path("logrotate.state");

    let dry = run(Command::new("logrotate").arg("-d").arg("-s").arg(&state).arg(&conf));
    assert_success("logrotate -d", &dry);

    let out = run(Command::new("logrotate").arg("-f").arg("-s").arg(&state).arg(&conf));
    assert_success("logrotate -f", &out);
    assert!(d.path("main.log.1").exists() && d.path("ticker.log.1").exists(), "{}", show("logrotate -f", &out));
    // SIGUSR2: the daemon reopened both files under their names.
    wait_for(10.0, "the main log reopened", || {
        Some(crate::harness::read_lossy(&main_log)).filter(|s| s.contains("minisv logreopen"))
    });
    wait_for(10.0, "the program log reopened", || fs::read_to_string(&ticker).ok().filter(|s| s.contains("tick")));
    assert!(fs::read_to_string(d.path("main.log.1")).expect("main.log.1").contains("received SIGUSR2"));
}

// ---- static builds -------------------------------------------------------------------------

#[test]
#[ignore = "needs shellcheck (apt-get install shellcheck, done when root); .ci/run runs it"]
fn shell_scripts_pass_shellcheck() {
    need("shellcheck", "shellcheck");
    for (shell, p) in [
        ("bash", "build-static"),
        ("bash", "smoke-test"),
        ("bash", "footprint"),
        ("sh", "sysvinit/minisv"),
        ("sh", "openwrt/minisv.init"),
    ] {
        let out = run(Command::new("shellcheck").arg("-s").arg(shell).arg(packaging(p)));
        assert_success(&format!("shellcheck packaging/{p}"), &out);
    }
}

#[test]
fn smoke_test_passes_on_the_test_binary() {
    syntax_check("bash", "smoke-test");
    let out = run(Command::new(packaging("smoke-test")).arg(BIN));
    assert_success("packaging/smoke-test on the test binary", &out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.lines().last().is_some_and(|l| l.starts_with("PASS ") && l.ends_with(": smoke test")), "{stdout}");
    assert!(!stdout.contains("FAIL"), "{stdout}");
}

#[test]
fn smoke_test_fails_on_a_binary_that_is_not_minisv() {
    // The smoke test can fail: `true` exits at once and never listens.
    let dir = TempDir::new("smokefail");
    let fake = dir.join("minisv");
    fs::write(&fake, "#!/bin/sh\nexit 0\n").expect("write fake");
    fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod fake");
    let out = run(Command::new(packaging("smoke-test")).arg(&fake).env("SMOKE_TIMEOUT", "2"));
    assert!(!out.status.success(), "{}", show("smoke-test on a fake binary", &out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("FAIL "), "{}", show("smoke-test on a fake binary", &out));
}

#[test]
fn build_static_is_valid_bash() {
    syntax_check("bash", "build-static");
    syntax_check("bash", "footprint");
}

#[test]
#[ignore = "five full static release builds (minutes), four under qemu-user; .ci/run runs it"]
fn build_static_builds_and_smoke_tests_every_target() {
    // aarch64 runs under qemu-user, which refuses clone(CLONE_VM) without CLONE_VFORK, and
    // clone(CLONE_VFORK | CLONE_FILES): its smoke test covers the daemon's fallbacks, and its
    // build the hot list mapped onto another target. armv7, mipsel and mips (the routers) have
    // no prebuilt standard library here: build-static builds their musl with Debian's cross
    // compilers, and their smoke tests run the daemon's libc paths (no raw clone there), on a
    // big-endian machine for mips.
    let targets = [
        "x86_64-unknown-linux-musl",
        "aarch64-unknown-linux-musl",
        "armv7-unknown-linux-musleabihf",
        "mipsel-unknown-linux-musl",
        "mips-unknown-linux-musl",
    ];
    let only = "x86_64,aarch64,armv7,mipsel,mips";
    let out = run(Command::new(packaging("build-static")).args(["--only", only, "--smoke"]).current_dir(root()));
    assert_success(&format!("packaging/build-static --only {only} --smoke"), &out);
    assert!(!String::from_utf8_lossy(&out.stderr).contains("SKIP "), "{}", show("build-static", &out));
    // Each binary was linked with the hot functions first, and the list is not out of date.
    // The list names the functions of the standard library it was traced with (rebuilt from
    // rust-src, or prebuilt): a build with the other one finds fewer, and says so.
    let stderr = String::from_utf8_lossy(&out.stderr);
    let list = fs::read_to_string(packaging("hot-functions.txt")).expect("hot-functions.txt");
    let list_rebuilt = list.lines().take(3).any(|l| l.contains("std rebuilt for size"));
    let build_rebuilt = stderr.contains("standard library: std rebuilt for size");
    assert!(build_rebuilt || stderr.contains("standard library: prebuilt std"), "{stderr}");
    let found: Vec<&str> = stderr.lines().filter(|l| l.contains("hot functions found in")).collect();
    assert_eq!(found.len(), targets.len(), "{stderr}");
    for line in found {
        let pct: u32 =
            line.rsplit('(').next().and_then(|p| p.strip_suffix("%)")).and_then(|p| p.parse().ok()).expect(line);
        let prebuilt_here = targets.iter().any(|t| line.contains(t) && stderr.contains(&format!("{t}: its prebuilt")));
        let same_std = list_rebuilt == (build_rebuilt && !prebuilt_here);
        let min = if same_std { 80 } else { 60 };
        assert!(pct >= min, "packaging/hot-functions.txt is out of date ({line}): run build-static --retrace");
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    for triple in targets {
        assert!(stdout.contains(&format!("PASS {triple}: smoke test")), "{stdout}");
        let dir = root().join(format!("target/static/{triple}"));
        assert!(dir.join("minisv").is_file(), "{}/minisv was not produced", dir.display());
        // The final link named its ordering file by content: cargo links again only when its
        // arguments change, and a new list with the same file name left the old order in.
        let order = fs::read(dir.join("symbol-order.txt")).expect("symbol-order.txt");
        let named: Vec<_> = fs::read_dir(&dir)
            .expect("read dir")
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.starts_with("symbol-order-") && n.ends_with(".txt"))
            .collect();
        assert_eq!(named.len(), 1, "one ordering file named by content in {}: {named:?}", dir.display());
        assert_eq!(fs::read(dir.join(&named[0])).expect("read"), order, "{} is not the current order", named[0]);
    }
    let x86_64_rebuilt = build_rebuilt && !stderr.contains("x86_64-unknown-linux-musl: its prebuilt");
    if list_rebuilt == x86_64_rebuilt {
        hot_list_covers_what_the_daemon_runs(&root().join("target/static/x86_64-unknown-linux-musl/minisv.unordered"));
    } else {
        eprintln!("skipped the stale-list check: the list and this build use different standard libraries");
    }
    footprint_measures_a_native_and_an_emulated_daemon();
}

/// packaging/footprint, which made the size and RSS table in packaging/README.md, on one
/// native and one emulated binary (one run each, 0 and 2 programs): the size is the file's,
/// and under qemu the guest's pages are counted apart from qemu's own.
fn footprint_measures_a_native_and_an_emulated_daemon() {
    let triples = ["x86_64-unknown-linux-musl", "armv7-unknown-linux-musleabihf"];
    let out = run(Command::new(packaging("footprint")).args(["--runs", "1", "--programs", "0 2"]).args(triples));
    assert_success("packaging/footprint", &out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    for triple in triples {
        let line = stdout.lines().find(|l| l.starts_with(triple)).unwrap_or_else(|| panic!("no {triple} in\n{stdout}"));
        let size = fs::metadata(root().join(format!("target/static/{triple}/minisv"))).expect("binary").len();
        let words: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(words[1], size.to_string(), "{line}");
        let guest: u64 = words[2].parse().expect(line);
        assert!((200..5000).contains(&guest), "an idle daemon's RSS in KB: {line}");
        if triple.starts_with("armv7") {
            let qemu: u64 = words[4].trim_end_matches(')').parse().expect(line);
            assert!(qemu > guest + 2000, "qemu's own VmRSS counts qemu too: {line}");
        }
    }
}

/// The committed list still names what the daemon runs: a function missing from it (new, or
/// renamed) lands among the cold code, and each one that runs costs the daemon a 64 KB window
/// of resident code. One trace of this build; a few functions run only when two events meet in
/// time, and the list (three runs merged) may lack one of those, so two are let pass.
fn hot_list_covers_what_the_daemon_runs(unordered: &Path) {
    if !cfg!(target_arch = "x86_64") {
        eprintln!("skipped: hot-functions trace runs on x86_64 only");
        return;
    }
    let dir = TempDir::new("hotstale");
    let out = run(Command::new(packaging("hot-functions"))
        .args(["trace", "--runs", "1"])
        .arg(unordered)
        .env("TMPDIR", dir.path()));
    if String::from_utf8_lossy(&out.stderr).contains("does not allow ptrace") {
        eprintln!("skipped: {}", String::from_utf8_lossy(&out.stderr).trim());
        return;
    }
    assert_success("hot-functions trace (the release build)", &out);
    let keys = |text: &str| -> Vec<String> {
        text.lines().filter(|l| !l.starts_with('#')).filter_map(|l| l.split(' ').next()).map(str::to_string).collect()
    };
    let listed: std::collections::HashSet<String> =
        keys(&fs::read_to_string(packaging("hot-functions.txt")).expect("hot-functions.txt")).into_iter().collect();
    let ran = keys(&String::from_utf8_lossy(&out.stdout));
    let missing: Vec<&String> = ran.iter().filter(|k| !listed.contains(*k)).collect();
    assert!(
        missing.len() <= 2,
        "packaging/hot-functions.txt lacks {} functions the daemon runs; run \
         packaging/build-static --only x86_64 --retrace and commit the list: {missing:#?}",
        missing.len()
    );
}

// ---- packaging/hot-functions -----------------------------------------------------------------

#[test]
fn hot_functions_order_finds_listed_functions_by_name_without_hash_and_fails_on_a_stale_list() {
    let dir = TempDir::new("hotorder");
    let list = dir.join("hot.txt");
    // Keys as a trace writes them: the legacy mangling's hash dropped, then the size in the
    // traced build (here not the test binary's: every instance of the name is taken then).
    fs::write(
        &list,
        "# a comment\n_ZN6minisv6daemon5spawn5lanes11clone_childE 1\n_ZN6minisv3ctl4mainE 1\n_ZN6minisv12no_such_thingE 7\n",
    )
    .expect("write list");
    let order = |min: &str| {
        run(Command::new(packaging("hot-functions")).args(["order", "--min-found", min]).arg(&list).arg(BIN))
    };
    let out = order("60");
    assert_success("hot-functions order", &out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let names: Vec<&str> = stdout.lines().collect();
    assert!(names.len() >= 2, "{}", show("hot-functions order", &out));
    assert!(names[0].starts_with("_ZN6minisv6daemon5spawn5lanes11clone_child17h"), "listed order kept: {names:?}");
    assert!(names.iter().any(|n| n.starts_with("_ZN6minisv3ctl4main17h")), "{names:?}");
    assert!(!stdout.contains("no_such_thing"), "{stdout}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("2 of 3 hot functions found"), "{}", show("order", &out));
    // 2 of 3 is below the default 80%: the list needs a new trace, and build-static stops.
    let out = order("80");
    assert!(!out.status.success(), "{}", show("hot-functions order --min-found 80", &out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--retrace"), "{}", show("order", &out));
}

#[test]
fn hot_functions_names_the_file_it_cannot_use() {
    let dir = TempDir::new("hotbad");
    let missing = dir.join("missing.txt");
    let text = dir.join("not-elf");
    fs::write(&text, "hello").expect("write");
    let damaged = dir.join("damaged");
    // The ELF header of the test binary with nothing after it: damaged.
    let bytes = fs::read(BIN).expect("read test binary");
    fs::write(&damaged, &bytes[..4096]).expect("write");
    let list = packaging("hot-functions.txt");
    for (args, want) in [
        (vec![missing.as_os_str(), Path::new(BIN).as_os_str()], format!("{}: No such file", missing.display())),
        (vec![list.as_os_str(), text.as_os_str()], format!("{}: not an ELF file", text.display())),
        (vec![list.as_os_str(), damaged.as_os_str()], format!("{}: a damaged ELF file", damaged.display())),
    ] {
        let out = run(Command::new(packaging("hot-functions")).arg("order").args(&args));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{}", show("hot-functions order", &out));
        assert!(stderr.contains(&want) && !stderr.contains("Traceback"), "want {want:?}: {stderr}");
    }
}

#[test]
fn hot_functions_keys_drop_only_what_changes_between_builds() {
    let names = [
        // legacy mangling: the hash goes, the path stays
        "_ZN6minisv6daemon5spawn11clone_child17hf713bd2187f0365aE",
        // v0: crate disambiguators go; identifiers that contain C, s, B or _ stay whole
        "_RNvXs3_NtNtCs7BliBxkEZsN_4core3fmt3numNtB9_8ByteStrNtB7_7Display3fmt",
        "_RNvMs_NtCsaz6eC2DG7lh_3std2osNtB4_10BorrowedFd15try_clone_to_owned",
        "_RNvCs1234_7Cs9_abcf.llvm.123456",
        "memcpy",
    ];
    let out = run(Command::new(packaging("hot-functions")).arg("key").args(names));
    assert_success("hot-functions key", &out);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).lines().collect::<Vec<_>>(),
        [
            "_ZN6minisv6daemon5spawn11clone_childE",
            "_RNvXs3_NtNtC4core3fmt3numNtB9_8ByteStrNtB7_7Display3fmt",
            "_RNvMs_NtC3std2osNtB4_10BorrowedFd15try_clone_to_owned",
            "_RNvC7Cs9_abcf",
            "memcpy",
        ]
    );
}

#[test]
fn hot_functions_trace_lists_what_the_daemon_ran_and_not_the_client() {
    if !cfg!(target_arch = "x86_64") {
        eprintln!("skipped: hot-functions trace runs on x86_64 only");
        return;
    }
    let dir = TempDir::new("hottrace");
    let out = run(Command::new(packaging("hot-functions"))
        .args(["trace", "--programs", "3", "--runs", "2", "--timeout", "60", BIN])
        .env("TMPDIR", dir.path()));
    if String::from_utf8_lossy(&out.stderr).contains("does not allow ptrace") {
        eprintln!("skipped: {}", String::from_utf8_lossy(&out.stderr).trim());
        return;
    }
    assert_success("hot-functions trace", &out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let keys: Vec<&str> = stdout.lines().filter(|l| !l.starts_with('#')).filter_map(|l| l.split(' ').next()).collect();
    assert!(stdout.starts_with("# Functions a running minisv daemon executes"), "{stdout:.300}");
    assert!(stdout.contains(" names from 2 runs, "), "{stdout:.300}");
    // Each (name, size) once: functions that differ only in what a key leaves out (a hash)
    // share a name and differ in size.
    let lines: Vec<&str> = stdout.lines().filter(|l| !l.starts_with('#')).collect();
    let mut unique = lines.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), lines.len(), "a function listed twice after merging the runs");
    // Startup first; what the workload drives later; never the ctl client.
    let pos = |k: &str| keys.iter().position(|x| *x == k);
    let start = pos("_ZN6minisv6config4loadE").unwrap_or_else(|| panic!("config::load not traced: {stdout:.2000}"));
    let spawn = pos("_ZN6minisv6daemon5spawn5lanes11clone_childE").expect("the spawn path was not traced");
    assert!(start < spawn, "config::load ran before the first spawn");
    assert!(pos("_ZN6minisv3ctl4mainE").is_none(), "ctl::main listed, but the daemon never runs it");
    // A legacy-mangled name ends in `17h` and 16 hex digits before its `E`: never in a key.
    let hashed = |k: &str| {
        k.strip_suffix('E')
            .and_then(|k| k.len().checked_sub(19).map(|at| &k[at..]))
            .is_some_and(|t| t.starts_with("17h") && t[3..].bytes().all(|b| b.is_ascii_hexdigit()))
    };
    assert!(!keys.is_empty() && keys.iter().all(|k| !hashed(k)), "a hash was left in a key: {stdout:.2000}");
    // Its temporary directory (config, socket, logs) is removed.
    assert_eq!(fs::read_dir(dir.path()).expect("read tmp").count(), 0, "hot-functions left files");
}
