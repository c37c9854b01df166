//! The XML-RPC API driven by Python's own `xmlrpc.client` (tests/py/api_check.py).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use crate::harness::*;

#[test]
fn python_xmlrpc_client_calls_every_method() {
    let dir = TempDir::new("api");
    let notexec = dir.write("notexec.sh", "echo never\n");
    fs::set_permissions(&notexec, fs::Permissions::from_mode(0o644)).expect("chmod");
    let programs = format!(
        "[program:sleeper]\ncommand=sleep 1000\nautorestart=false\n\
         [program:notfound]\ncommand=nonexistent_cmd_xyz\nautostart=false\n\
         [program:notexec]\ncommand={}\nautostart=false\n\
         [program:quick]\ncommand=sh -c 'exit 1'\nautostart=false\nstartretries=0\n\
         [program:cat]\ncommand=cat\nstartsecs=0\n\
         [program:nolog]\ncommand=sleep 1000\nstdout_logfile=NONE\nstartsecs=0\n\
         [program:binary]\ncommand=sh -c \"printf 'ok \\\\001\\\\002\\\\377\\\\376 end'\"\nstartsecs=0\nautorestart=false\n\
         [program:ga]\ncommand=sleep 1000\nstartsecs=0\n[program:gb]\ncommand=sleep 1000\nstartsecs=0\n\
         [group:grp]\nprograms=ga,gb\n",
        notexec.display()
    );
    let conf = dir.write("sv.conf", &format!("{}{}", base_config(dir.path()), programs));
    let mut d = Daemon::start_with(dir, conf, &[]);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/py/api_check.py");
    let out = Command::new("python3").arg(script).arg(d.path("sv.sock")).output().expect("python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "api_check.py failed:\n{stdout}\n{}\nlog:\n{}",
        String::from_utf8_lossy(&out.stderr),
        d.log()
    );
    assert!(stdout.contains("checks passed"), "{stdout}");
    eprintln!("{}", stdout.lines().last().unwrap_or_default());
    assert!(d.wait_exit(20.0).success(), "the shutdown method ends the daemon with status 0");
}

/// Seen side by side with supervisord 4.3: a channel without a log faults plain `NO_FILE`
/// (Supervisor's extra text is None, which it leaves out), and a method name with a trailing
/// space is unknown (Python's parser does not trim it).
#[test]
fn no_log_is_plain_no_file_and_method_names_are_not_trimmed() {
    let d = Daemon::start(
        "nofile",
        "[program:r]\ncommand=sleep 1000\nredirect_stderr=true\nstartsecs=0\n\
         [program:n]\ncommand=sleep 1000\nstdout_logfile=NONE\nstartsecs=0\n",
    );
    use minisv::rpc::xmlrpc::Value;
    let args = |name: &str| [Value::from(name), Value::Int(0), Value::Int(100)];
    let fault = d.rpc("supervisor.readProcessStderrLog", &args("r")).expect_err("no stderr log");
    assert_eq!((fault.code, fault.string.as_str()), (20, "NO_FILE"));
    let fault = d.rpc("supervisor.readProcessStdoutLog", &args("n")).expect_err("no stdout log");
    assert_eq!((fault.code, fault.string.as_str()), (20, "NO_FILE"));
    let fault = d.rpc("supervisor.getState ", &[]).expect_err("unknown");
    assert_eq!((fault.code, fault.string.as_str()), (1, "UNKNOWN_METHOD"));
}
