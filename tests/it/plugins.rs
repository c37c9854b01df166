//! Well-known Supervisor plugins, installed from PyPI into the test venv and run as real event
//! listeners: supervisor-stdlog (its result handler is built into minisv; its output is
//! compared with supervisord 4.3 running the Python one), supervisor-stdout (Python 2 only: its
//! listener loop runs under Python 3, and its handler's output is compared with its source),
//! and supervisord-dependent-startup (its `dependent_startup*` keys load without a warning).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::harness::*;
use crate::pyenv::python_supervisor;

/// A daemon, minisv or the real supervisord, on `dir/sv.conf`, its stdout and stderr in files.
struct Run {
    child: Child,
    dir: PathBuf,
}

impl Run {
    fn start(program: &Path, dir: &TempDir, programs: &str) -> Run {
        let conf = dir.write("sv.conf", &format!("{}{programs}", base_config(dir.path())));
        let out = std::fs::File::create(dir.join("stdout.txt")).expect("stdout file");
        let err = std::fs::File::create(dir.join("stderr.txt")).expect("stderr file");
        let child = Command::new(program)
            .args(["-n", "-c"])
            .arg(&conf)
            // supervisord's stdout is a file here: unbuffered, so what it wrote can be awaited.
            .env("PYTHONUNBUFFERED", "1")
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
        Run { child, dir: dir.path().to_path_buf() }
    }

    fn read(&self, name: &str) -> String {
        read_lossy(&self.dir.join(name))
    }

    /// The lines a result handler wrote to `name` (stdout.txt or stderr.txt): those that start
    /// with a colour or with the process name, not the daemon's own log lines.
    fn handler_lines(&self, name: &str, start: &str) -> String {
        self.read(name).lines().filter(|l| l.starts_with(start)).map(|l| format!("{l}\n")).collect()
    }

    /// Waits until `name` holds `n` handler lines starting with `start`, with a deadline.
    fn wait_lines(&mut self, name: &str, start: &str, n: usize) -> String {
        wait_for(20.0, &format!("{n} lines starting with {start:?} in {name}"), || {
            if let Ok(Some(st)) = self.child.try_wait() {
                panic!("the daemon exited ({st}):\n{}\n{}", self.read("stdout.txt"), self.read("stderr.txt"));
            }
            let lines = self.handler_lines(name, start);
            (lines.lines().count() >= n).then_some(lines)
        })
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        kill(self.child.id(), libc::SIGTERM);
        if wait_for(20.0, "the daemon to exit", || self.child.try_wait().ok()).is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// supervisor-stdlog's README config, with a program that writes to both channels.
fn stdlog_config() -> String {
    format!(
        "[program:talker]\ncommand=sh -c 'printf \"one\\ntwo\\n\"; printf \"err\\n\" >&2; exec sleep 1000'\n\
         startsecs=0\nstdout_events_enabled = true\nstderr_events_enabled = true\n\n\
         [eventlistener:stdlog]\nevents = PROCESS_LOG\ncommand = {}\n\
         result_handler = supervisor_stdlog:log_handler\nbuffer_size = 100\n",
        python_supervisor().join("supervisor-stdlog").display()
    )
}

#[test]
fn stdlog_handler_writes_what_supervisor_stdlog_writes_under_supervisord() {
    let mut seen = Vec::new();
    for program in [python_supervisor().join("supervisord"), PathBuf::from(BIN)] {
        let dir = TempDir::new("stdlog");
        let mut run = Run::start(&program, &dir, &stdlog_config());
        let out = run.wait_lines("stdout.txt", "\x1b[", 2);
        let err = run.wait_lines("stderr.txt", "\x1b[", 1);
        seen.push((out, err));
    }
    let expected = (
        "\x1b[36mtalker | \x1b[37mone\x1b[m\n\x1b[36mtalker | \x1b[37mtwo\x1b[m\n".to_string(),
        "\x1b[36mtalker | \x1b[31merr\x1b[m\n".to_string(),
    );
    // The colour of a name depends on how many events came before it: with one program, the
    // first colour whatever the order of the stdout and stderr events.
    assert_eq!(seen[0], expected, "supervisord with supervisor-stdlog");
    assert_eq!(seen[1], seen[0], "minisv's built-in supervisor_stdlog:log_handler");
}

/// supervisor-stdout 0.1.1's listener loop (its `main`, which runs under Python 3 as it is).
const STDOUT_LISTENER: &str = "import sys
def write_stdout(s):
    sys.stdout.write(s)
    sys.stdout.flush()
while 1:
    write_stdout('READY\\n')
    line = sys.stdin.readline()
    headers = dict([ x.split(':') for x in line.split() ])
    data = sys.stdin.read(int(headers['len']))
    write_stdout('RESULT %s\\n%s'%(len(data), data))
";

#[test]
fn stdout_handler_prints_what_supervisor_stdout_prints() {
    let dir = TempDir::new("stdout");
    let listener = dir.write("supervisor_stdout.py", STDOUT_LISTENER);
    // supervisor-stdout's README config.
    let programs = format!(
        "[program:web]\ncommand = sh -c 'printf \"one\\ntwo\\n\"; printf \"err\\n\" >&2; exec sleep 1000'\n\
         startsecs=0\nstdout_events_enabled = true\nstderr_events_enabled = true\n\n\
         [eventlistener:stdout]\ncommand = {} {}\nbuffer_size = 100\nevents = PROCESS_LOG\n\
         result_handler = supervisor_stdout:event_handler\n",
        python_supervisor().join("python").display(),
        listener.display()
    );
    let mut run = Run::start(Path::new(BIN), &dir, &programs);
    let out = run.wait_lines("stdout.txt", "web ", 2);
    // `print '%s %s | %s' % (processname, channel, data),` of each event, in the order the
    // events came: each chunk ends with a newline, so Python 2 adds no space.
    let (stdout_event, stderr_event) = ("web stdout | one\ntwo\n", "web stderr | err\n");
    let both = [format!("{stdout_event}{stderr_event}"), format!("{stderr_event}{stdout_event}")];
    let text = run.read("stdout.txt");
    assert!(both.iter().any(|b| text.contains(b.as_str())), "stdout:\n{text}");
    assert!(out.contains("web stdout | one\n"), "{out}");
}

/// supervisord-dependent-startup's README setup: it starts `second` once `first` is RUNNING,
/// reading the `dependent_startup*` keys itself, which minisv loads without a warning.
#[test]
fn dependent_startup_runs_under_minisv_and_its_keys_load_silently() {
    let dir = TempDir::new("depst");
    let conf = dir.join("sv.conf");
    let programs = format!(
        "[program:first]\ncommand=sleep 1000\nautostart=false\nstartsecs=0\ndependent_startup=true\n\n\
         [program:second]\ncommand=sleep 1001\nautostart=false\nstartsecs=0\ndependent_startup=true\n\
         dependent_startup_wait_for=first:running\ndependent_startup_inherit_priority=true\n\n\
         [eventlistener:dependentstartup]\ncommand={} -m supervisord_dependent_startup -c {}\n\
         autostart=true\nautorestart=unexpected\nstartretries=0\nexitcodes=0,3\nevents=PROCESS_STATE\n",
        python_supervisor().join("python").display(),
        conf.display()
    );
    let d = Daemon::start_in(dir, &programs, &[]);
    d.wait_state("second", "RUNNING", 30.0);
    assert_eq!(d.state("first"), "RUNNING");
    let log = d.log();
    let (a, b) = (log.find("spawned: 'first'"), log.find("spawned: 'second'"));
    assert!(a.is_some() && a < b, "first starts before second:\n{log}");
    for text in [log, d.stderr()] {
        assert!(!text.contains("unknown key"), "no warning about the plugin's keys:\n{text}");
    }
    let check = minisv(&["check", "-c", &d.conf.display().to_string()], d.path("").as_path());
    let said = format!("{}{}", String::from_utf8_lossy(&check.stdout), String::from_utf8_lossy(&check.stderr));
    assert!(check.status.success() && !said.contains("unknown key"), "check says:\n{said}");
}
