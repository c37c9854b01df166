//! Events and event listeners (reference section 6) with real, unmodified listeners: a plain
//! shell listener, one written with Supervisor's own `childutils`, and superlance's crashmail.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use crate::harness::*;
use crate::pyenv::python_supervisor;
use minisv::rpc::xmlrpc::Value;

/// A listener in plain sh: records each event's header line and body into $OUT.
const SHELL_LISTENER: &str = r#"#!/bin/sh
while :; do
  printf 'READY\n'
  IFS= read -r header || exit 0
  len=${header##*len:}
  printf '%s\n' "$header" >> "$OUT"
  dd bs=1 count="$len" >> "$OUT" 2>/dev/null
  printf '\n--\n' >> "$OUT"
  printf 'RESULT 2\nOK'
done
"#;

fn script(dir: &TempDir, name: &str, text: &str) -> String {
    let p = dir.write(name, text);
    fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).expect("chmod");
    p.display().to_string()
}

/// The recorded events as (header, body) pairs.
fn recorded(path: &std::path::Path) -> Vec<(String, String)> {
    let text = fs::read_to_string(path).unwrap_or_default();
    text.split("--\n")
        .filter_map(|e| {
            let (h, b) = e.split_once('\n')?;
            Some((h.to_string(), b.strip_suffix('\n').unwrap_or(b).to_string()))
        })
        .collect()
}

fn header_field<'a>(header: &'a str, key: &str) -> &'a str {
    header.split(' ').find_map(|f| f.strip_prefix(&format!("{key}:"))).unwrap_or("")
}

#[test]
fn shell_listener_gets_every_kind_of_event_in_supervisors_format() {
    let dir = TempDir::new("evshell");
    let listener = script(&dir, "listener.sh", SHELL_LISTENER);
    let conf = dir.write(
        "sv.conf",
        &format!(
            "{}[eventlistener:rec]\ncommand={listener}\nevents=PROCESS_STATE,PROCESS_COMMUNICATION,REMOTE_COMMUNICATION,\
             SUPERVISOR_STATE_CHANGE,PROCESS_GROUP,PROCESS_LOG\nenvironment=OUT=\"%(here)s/events.txt\"\n\
             stdout_logfile=%(here)s/rec.proto\nbuffer_size=50\n\
             [program:talker]\ncommand=sh -c 'echo before; echo \"<!--XSUPERVISOR:BEGIN-->captured data<!--XSUPERVISOR:END-->\"; \
             echo after; exec sleep 1000'\nstdout_capture_maxbytes=1KB\nstdout_logfile=%(here)s/talker.log\nstartsecs=0\n\
             stdout_events_enabled=true\n",
            base_config(dir.path())
        ),
    );
    let d = Daemon::start_with(dir, conf, &[]);
    d.wait_state("rec", "RUNNING", 10.0);
    d.rpc("supervisor.sendRemoteCommEvent", &[Value::from("mytype"), Value::from("hello data")]).expect("remote");
    let events = wait_for(10.0, "the remote event", || {
        let complete = fs::read_to_string(d.path("events.txt")).ok()?.contains("hello data\n--\n");
        complete.then(|| recorded(&d.path("events.txt")))
    });
    let names: Vec<&str> = events.iter().map(|(h, _)| header_field(h, "eventname")).collect();
    // Boot order: the groups, the daemon running, then the starts.
    assert_eq!(
        &names[..3],
        ["PROCESS_GROUP_ADDED", "PROCESS_GROUP_ADDED", "SUPERVISOR_STATE_CHANGE_RUNNING"],
        "{names:?}"
    );
    for (i, (h, body)) in events.iter().enumerate() {
        assert!(
            h.starts_with(&format!("ver:3.0 server:supervisor serial:{i} pool:rec poolserial:{i} eventname:")),
            "{h}"
        );
        assert_eq!(header_field(h, "len"), body.chars().count().to_string(), "len counts characters: {h}");
    }
    let find = |name: &str| events.iter().find(|(h, _)| header_field(h, "eventname") == name).map(|(_, b)| b.as_str());
    assert_eq!(find("PROCESS_GROUP_ADDED"), Some("groupname:rec\n"), "the trailing newline is part of the body");
    let talker_pid = d.info("talker").int_of("pid");
    assert_eq!(
        find("PROCESS_COMMUNICATION_STDOUT"),
        Some(format!("processname:talker groupname:talker pid:{talker_pid}\ncaptured data").as_str())
    );
    assert_eq!(find("REMOTE_COMMUNICATION"), Some("type:mytype\nhello data"));
    assert!(
        events.iter().any(|(h, b)| header_field(h, "eventname") == "PROCESS_STATE_RUNNING"
            && b == &format!("processname:talker groupname:talker from_state:STARTING pid:{talker_pid}")),
        "{events:?}"
    );
    assert!(events.iter().any(|(h, b)| header_field(h, "eventname") == "PROCESS_LOG_STDOUT"
        && b.starts_with(&format!("processname:talker groupname:talker pid:{talker_pid} channel:stdout\n"))));
    // Captured data is not in the program's log; what follows END is (no stuck output, Q3).
    let log =
        wait_for(5.0, "talker's log", || fs::read_to_string(d.path("talker.log")).ok().filter(|s| s.contains("after")));
    assert_eq!(log, "before\n\nafter\n");
    // The listener's stdout log records the protocol.
    let proto = fs::read_to_string(d.path("rec.proto")).expect("protocol log");
    assert!(proto.starts_with("READY\nRESULT 2\nOKREADY\n"), "{proto}");
}

#[test]
fn childutils_listener_and_superlance_crashmail_work_unchanged() {
    let py = python_supervisor();
    let dir = TempDir::new("evpy");
    let listener = script(
        &dir,
        "cu.py",
        &format!(
            "#!{}\nimport os, sys\nfrom supervisor import childutils\n\
             while True:\n    headers, payload = childutils.listener.wait(sys.stdin, sys.stdout)\n\
             \x20   with open(os.environ['OUT'], 'a') as f:\n\
             \x20       f.write(headers['eventname'] + ' ' + payload.replace('\\n', '|') + '\\n')\n\
             \x20   childutils.listener.ok(sys.stdout)\n",
            py.join("python").display()
        ),
    );
    let sendmail = script(&dir, "sendmail.sh", "#!/bin/sh\ncat >> \"$(dirname \"$0\")/mail.txt\"\n");
    let conf = dir.write(
        "sv.conf",
        &format!(
            "{}[eventlistener:cu]\ncommand={listener}\nevents=PROCESS_STATE_EXITED,REMOTE_COMMUNICATION\n\
             environment=OUT=\"%(here)s/cu.txt\"\n\
             [eventlistener:crashmail]\ncommand={} -a -m ops@example.invalid -s \"{sendmail}\"\nevents=PROCESS_STATE_EXITED\n\
             [program:crasher]\ncommand=sh -c 'sleep 0.3; exit 3'\nstartsecs=0\nautorestart=false\nautostart=false\n",
            base_config(dir.path()),
            py.join("crashmail").display()
        ),
    );
    let d = Daemon::start_with(dir, conf, &[]);
    d.wait_state("cu", "RUNNING", 10.0);
    d.wait_state("crashmail", "RUNNING", 10.0);
    d.rpc("supervisor.startProcess", &[Value::from("crasher")]).expect("start");
    d.wait_state("crasher", "EXITED", 10.0);
    let mail = wait_for(15.0, "crashmail's mail", || {
        fs::read_to_string(d.path("mail.txt")).ok().filter(|m| m.contains("crasher"))
    });
    assert!(mail.contains("To: ops@example.invalid"), "{mail}");
    assert!(mail.contains("Subject:") && mail.contains("crasher"), "{mail}");
    d.rpc("supervisor.sendRemoteCommEvent", &[Value::from("t"), Value::from("x")]).expect("remote");
    let got = wait_for(10.0, "childutils listener output", || {
        fs::read_to_string(d.path("cu.txt")).ok().filter(|s| s.contains("REMOTE_COMMUNICATION"))
    });
    assert!(
        got.contains("PROCESS_STATE_EXITED processname:crasher groupname:crasher from_state:RUNNING expected:0 pid:"),
        "{got}"
    );
    assert!(got.contains("REMOTE_COMMUNICATION type:t|x"), "{got}");
}

#[test]
fn misbehaving_listeners_do_not_disturb_the_daemon() {
    let dir = TempDir::new("evbad");
    // Replies FAIL to the first event it gets, OK afterwards: the event comes back (same serial).
    let fail_once = script(
        &dir,
        "fail.sh",
        "#!/bin/sh\nn=0\nwhile :; do printf 'READY\\n'; IFS= read -r h || exit 0; len=${h##*len:}; \
         dd bs=1 count=\"$len\" >/dev/null 2>&1; echo \"$h\" >> \"$OUT\"; \
         if [ $n -eq 0 ]; then printf 'RESULT 4\\nFAIL'; else printf 'RESULT 2\\nOK'; fi; n=1; done\n",
    );
    // Says READY, then garbage.
    let garbage = script(
        &dir,
        "garbage.sh",
        "#!/bin/sh\nprintf 'READY\\n'\nread -r h\nprintf 'what is this\\n'\nexec sleep 1000\n",
    );
    // Never reads its events.
    let deaf = script(&dir, "deaf.sh", "#!/bin/sh\nprintf 'READY\\n'\nexec sleep 1000\n");
    let conf = dir.write(
        "sv.conf",
        &format!(
            "{}[eventlistener:failer]\ncommand={fail_once}\nevents=REMOTE_COMMUNICATION\nenvironment=OUT=\"%(here)s/failer.txt\"\nbuffer_size=50\n\
             [eventlistener:garbage]\ncommand={garbage}\nevents=REMOTE_COMMUNICATION\n\
             [eventlistener:deaf]\ncommand={deaf}\nevents=REMOTE_COMMUNICATION\nbuffer_size=3\n\
             [program:worker]\ncommand=sleep 1000\nstartsecs=0\n",
            base_config(dir.path())
        ),
    );
    let d = Daemon::start_with(dir, conf, &[]);
    for name in ["failer", "garbage", "deaf"] {
        d.wait_state(name, "RUNNING", 10.0);
    }
    for i in 0..20 {
        d.rpc("supervisor.sendRemoteCommEvent", &[Value::from("t"), Value::from(format!("event {i}"))])
            .expect("remote");
    }
    // FAIL: the same event is offered again, then the rest follow.
    let got = wait_for(10.0, "failer to see every event", || {
        let s = fs::read_to_string(d.path("failer.txt")).ok()?;
        (s.lines().count() >= 21).then_some(s)
    });
    let serials: Vec<&str> = got.lines().map(|h| header_field(h, "poolserial")).collect();
    assert_eq!(serials[0], serials[1], "a FAILed event is delivered again: {serials:?}");
    // Garbage: the listener goes UNKNOWN and the log says so.
    d.wait_log("garbage", 5.0);
    wait_for(10.0, "the protocol error to be logged", || {
        let log = d.log();
        (log.contains("UNKNOWN") && log.contains("garbage")).then_some(())
    });
    // Deaf: its buffer overflows, the oldest events are discarded with a log line; nothing else.
    wait_for(10.0, "overflow lines", || {
        d.log().contains("pool deaf event buffer overflowed, discarding event").then_some(())
    });
    // The daemon still supervises and answers.
    assert_eq!(d.state("worker"), "RUNNING");
    let pid = d.info("worker").int_of("pid") as u32;
    kill(pid, libc::SIGKILL);
    wait_for(10.0, "worker restarted", || (d.info("worker").int_of("pid") as u32 != pid).then_some(()));
}

#[test]
fn listener_that_dies_while_busy_gets_its_event_again() {
    let dir = TempDir::new("evdie");
    // The first instance dies as soon as it has an event; the next one records it.
    let dier = script(
        &dir,
        "dier.sh",
        "#!/bin/sh\nprintf 'READY\\n'\nIFS= read -r h || exit 0\nlen=${h##*len:}\nbody=$(dd bs=1 count=\"$len\" 2>/dev/null)\n\
         if [ ! -e \"$OUT.died\" ]; then touch \"$OUT.died\"; exit 1; fi\n\
         printf '%s %s\\n' \"$h\" \"$body\" >> \"$OUT\"\nprintf 'RESULT 2\\nOK'\nexec sleep 1000\n",
    );
    let conf = dir.write(
        "sv.conf",
        &format!(
            "{}[eventlistener:dier]\ncommand={dier}\nevents=REMOTE_COMMUNICATION\nenvironment=OUT=\"%(here)s/dier.txt\"\n\
             autorestart=true\nstartsecs=0\n",
            base_config(dir.path())
        ),
    );
    let d = Daemon::start_with(dir, conf, &[]);
    d.wait_state("dier", "RUNNING", 10.0);
    d.rpc("supervisor.sendRemoteCommEvent", &[Value::from("t"), Value::from("precious")]).expect("remote");
    let got = wait_for(15.0, "the event after the restart", || {
        fs::read_to_string(d.path("dier.txt")).ok().filter(|s| !s.is_empty())
    });
    assert!(got.contains("eventname:REMOTE_COMMUNICATION") && got.ends_with("type:t\nprecious\n"), "{got}");
}

#[test]
fn tick_5_arrives_on_a_five_second_boundary() {
    let dir = TempDir::new("evtick");
    let listener = script(&dir, "listener.sh", SHELL_LISTENER);
    let conf = dir.write(
        "sv.conf",
        &format!(
            "{}[eventlistener:ticks]\ncommand={listener}\nevents=TICK_5\nenvironment=OUT=\"%(here)s/ticks.txt\"\n",
            base_config(dir.path())
        ),
    );
    let d = Daemon::start_with(dir, conf, &[]);
    let events = wait_for(15.0, "a TICK_5", || {
        // A whole entry: the listener writes the header, the body, then the separator.
        let complete = fs::read_to_string(d.path("ticks.txt")).ok()?.contains("\n--\n");
        complete.then(|| recorded(&d.path("ticks.txt")))
    });
    let (h, body) = &events[0];
    assert_eq!(header_field(h, "eventname"), "TICK_5");
    let when: u64 = body.strip_prefix("when:").expect("when:").parse().expect("number");
    assert_eq!(when % 5, 0, "the boundary, a multiple of 5: {body}");
}

#[test]
fn superlance_httpok_restarts_a_program_whose_url_fails() {
    // httpok checks the URL on each TICK and restarts the program through the XML-RPC API
    // (it finds the daemon through SUPERVISOR_SERVER_URL, set by minisv).
    let py = python_supervisor();
    let dir = TempDir::new("evhttpok");
    let sendmail = script(&dir, "sendmail.sh", "#!/bin/sh\ncat >> \"$(dirname \"$0\")/mail.txt\"\n");
    let dead_port = std::net::TcpListener::bind("127.0.0.1:0").expect("port").local_addr().expect("addr").port();
    let conf = dir.write(
        "sv.conf",
        &format!(
            "{}[eventlistener:httpok]\ncommand={} -p web -t 2 -m ops@example.invalid -s \"{sendmail}\" http://127.0.0.1:{dead_port}/\n\
             events=TICK_5\n\
             [program:web]\ncommand=sleep 1000\nstartsecs=0\n",
            base_config(dir.path()),
            py.join("httpok").display()
        ),
    );
    let d = Daemon::start_with(dir, conf, &[]);
    let first = d.wait_state("web", "RUNNING", 10.0).int_of("pid");
    let second = wait_for(20.0, "httpok to restart web", || {
        let info = d.info("web");
        (info.str_of("statename") == "RUNNING" && info.int_of("pid") != first).then(|| info.int_of("pid"))
    });
    assert_ne!(second, first);
    let mail =
        wait_for(10.0, "httpok's mail", || fs::read_to_string(d.path("mail.txt")).ok().filter(|m| m.contains("web")));
    assert!(mail.contains("To: ops@example.invalid"), "{mail}");
}

/// What minisv(8) says of a listener stopped first (its group's priority above every other):
/// it still receives SUPERVISOR_STATE_CHANGE_STOPPING, offered to every listener before any
/// process is stopped (supervisord 4.3 stops such a listener without handing it the event),
/// and, as in supervisord, it gets PROCESS_GROUP_ADDED only for its own group and those added
/// after it, not for a group of lower priority added before its pool existed.
#[test]
fn a_listener_stopped_first_still_gets_stopping_and_no_added_of_earlier_groups() {
    let dir = TempDir::new("evstop");
    // The listener outlives its stop signal (killed after stopwaitsecs): on a loaded machine it
    // may still be answering RUNNING when the shutdown begins, and STOPPING is then handed to
    // it once it says READY again, which must come before it is gone.
    let listener = script(&dir, "listener.sh", &SHELL_LISTENER.replacen("while :; do", "trap '' TERM\nwhile :; do", 1));
    let conf = dir.write(
        "sv.conf",
        &format!(
            "{}[program:early]\ncommand=sleep 1000\nstartsecs=0\n\
             [eventlistener:lis]\ncommand={listener}\nevents=PROCESS_GROUP,SUPERVISOR_STATE_CHANGE\npriority=1000\nstopwaitsecs=2\n\
             environment=OUT=\"%(here)s/events.txt\"\n\
             [program:later]\ncommand=sleep 1000\nstartsecs=0\npriority=1001\n",
            base_config(dir.path())
        ),
    );
    let mut d = Daemon::start_with(dir, conf, &[]);
    let events_path = d.path("events.txt");
    wait_for(10.0, "SUPERVISOR_STATE_CHANGE_RUNNING at the listener", || {
        fs::read_to_string(&events_path).ok()?.contains("eventname:SUPERVISOR_STATE_CHANGE_RUNNING").then_some(())
    });
    d.stop();
    let events: Vec<(String, String)> =
        recorded(&events_path).into_iter().map(|(h, b)| (header_field(&h, "eventname").to_string(), b)).collect();
    let events: Vec<(&str, &str)> = events.iter().map(|(h, b)| (h.as_str(), b.as_str())).collect();
    assert_eq!(
        events,
        [
            ("PROCESS_GROUP_ADDED", "groupname:lis\n"),
            ("PROCESS_GROUP_ADDED", "groupname:later\n"),
            ("SUPERVISOR_STATE_CHANGE_RUNNING", ""),
            ("SUPERVISOR_STATE_CHANGE_STOPPING", ""),
        ]
    );
}
