//! The state machine of reference 2.2–2.7 with a fake clock: every transition, in microseconds.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use super::*;
use crate::config::{AutoRestart, ChannelConfig, GroupKind, LogFile, ProcessConfig, Span};

fn channel() -> ChannelConfig {
    ChannelConfig {
        logfile: LogFile::None,
        maxbytes: 0,
        backups: 0,
        capture_maxbytes: 0,
        events_enabled: false,
        syslog: false,
        rotation: Default::default(),
    }
}

fn pconf(name: &str) -> ProcessConfig {
    ProcessConfig {
        name: name.into(),
        program: name.into(),
        command: "/bin/true".into(),
        directory: None,
        umask: None,
        priority: 999,
        autostart: true,
        autorestart: AutoRestart::Unexpected,
        startsecs: 1,
        startretries: 3,
        exitcodes: vec![0],
        stopsignal: libc::SIGTERM,
        stopwaitsecs: 10,
        stopasgroup: false,
        killasgroup: false,
        user: None,
        redirect_stderr: false,
        stdout: channel(),
        stderr: channel(),
        environment: vec![],
        environment_files: vec![],
        credentials: vec![],
        serverurl: None,
        critical: false,
        restart: crate::config::RestartPolicy::default(),
        depends_on: vec![],
        ready_fd: None,
        ready_timeout: 60,
        ready_notify: false,
        watchdog_sec: 0,
        memory_limit: 0,
        schedule: None,
        limits: Default::default(),
        checks: Default::default(),
        listen: Vec::new(),
        log_prefix: None,
        log_timestamps: false,
        span: Span { file: Path::new("t.conf").into(), line: 1 },
    }
}

fn group(name: &str, priority: i64, procs: Vec<ProcessConfig>) -> GroupConfig {
    GroupConfig {
        name: name.into(),
        priority,
        kind: GroupKind::Program,
        processes: procs.into_iter().map(std::sync::Arc::new).collect(),
        span: Span { file: Path::new("t.conf").into(), line: 1 },
    }
}

/// A supervisor with a fake clock and a fake loop that records what it was asked to do.
struct Harness {
    sup: Supervisor,
    t0: Instant,
    now: Instant,
    next_pid: u32,
    log: Vec<String>,
    changes: Vec<(String, ProcessState)>,
    spawns: Vec<String>,
    kills: Vec<(String, i32, bool)>,
    /// When set, spawns fail with this message.
    spawn_error: Option<String>,
    done: Option<Mood>,
    /// Answers of commands that waited, in order.
    answers: Vec<(Ticket, Answer)>,
    /// The status a critical program asked the daemon to exit with.
    critical: Option<i32>,
    running_events: usize,
    /// Starts (true) and stops by hand, in order.
    by_hand: Vec<(String, bool)>,
    /// Programs whose command the fake world does not find.
    missing: Vec<String>,
    /// The signals the fake world sent, by pid.
    signals: Vec<(u32, i32)>,
    tickets: u64,
}

impl Harness {
    fn new(groups: Vec<GroupConfig>) -> Harness {
        let mut sup = Supervisor::new();
        for g in groups {
            sup.add_group(g);
        }
        let t0 = Instant::now();
        let mut h = Harness {
            sup,
            t0,
            now: t0,
            next_pid: 100,
            log: vec![],
            changes: vec![],
            spawns: vec![],
            kills: vec![],
            spawn_error: None,
            done: None,
            answers: vec![],
            critical: None,
            running_events: 0,
            by_hand: vec![],
            missing: vec![],
            signals: vec![],
            tickets: 0,
        };
        h.run();
        h
    }

    fn wall(&self) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000) + (self.now - self.t0)
    }

    fn id(&self, name: &str) -> ProcId {
        self.sup.processes().find(|(_, p)| p.name() == name).map(|(id, _)| id).expect("process exists")
    }

    fn state(&self, name: &str) -> ProcessState {
        self.sup.process(self.id(name)).expect("process").state
    }

    fn proc(&self, name: &str) -> &Process {
        self.sup.process(self.id(name)).expect("process")
    }

    /// Performs queued actions the way the event loop does.
    fn run(&mut self) {
        while let Some(action) = self.sup.take_actions() {
            match action {
                Action::Spawn(id) => {
                    let name = self.sup.process(id).expect("p").name().to_string();
                    self.spawns.push(name);
                    let input = match &self.spawn_error {
                        Some(msg) => Input::SpawnFailed { message: msg.clone() },
                        None => {
                            self.next_pid += 1;
                            Input::Spawned { pid: self.next_pid }
                        }
                    };
                    let (now, wall) = (self.now, self.wall());
                    self.sup.feed(id, input, now, wall);
                }
                Action::Kill { id, signal, group, .. } => {
                    let name = self.sup.process(id).expect("p").name().to_string();
                    self.kills.push((name, signal, group));
                }
                Action::Log(level, msg) => self.log.push(format!("{} {}", level.tag(), msg)),
                Action::StateChanged { id, to, .. } => {
                    let name = self.sup.process(id).expect("p").name().to_string();
                    self.changes.push((name, to));
                }
                Action::ShutdownComplete(mood) => self.done = Some(mood),
                Action::Answer(ticket, answer) => self.answers.push((ticket, answer)),
                Action::ExitWith { status } => {
                    // As the loop: the daemon stops everything for it.
                    self.critical = Some(status);
                    let (now, wall) = (self.now, self.wall());
                    self.sup.request_stop(Mood::Shutdown, now, wall);
                }
                Action::SupervisorRunning => self.running_events += 1,
                Action::ByHand { id, started } => {
                    let name = self.sup.process(id).expect("p").name().to_string();
                    self.by_hand.push((name, started));
                }
                Action::GroupAdded(_)
                | Action::GroupRemoved { .. }
                | Action::GroupReplaced { .. }
                | Action::SupervisorStopping => {}
            }
        }
    }

    /// Runs a command as the control plane does, then performs what follows: its answer now,
    /// or the ticket its answer comes with (in `answers`).
    fn command(&mut self, command: Command) -> Result<Answer, Ticket> {
        self.tickets += 1;
        let ticket = Ticket(self.tickets);
        let (now, wall) = (self.now, self.wall());
        let mut world = FakeWorld { missing: self.missing.clone(), signals: Vec::new() };
        let answer = self.sup.command(ticket, command, now, wall, &mut world);
        self.signals.extend(world.signals);
        self.run();
        answer.ok_or(ticket)
    }

    /// The answer that came for `ticket`, if any.
    fn answer(&self, ticket: Ticket) -> Option<&Answer> {
        self.answers.iter().find(|(t, _)| *t == ticket).map(|(_, a)| a)
    }

    fn tick(&mut self) {
        let (now, wall) = (self.now, self.wall());
        self.sup.tick(now, wall);
        self.run();
    }

    fn advance(&mut self, ms: u64) {
        self.now += Duration::from_millis(ms);
        self.tick();
    }

    fn feed(&mut self, name: &str, input: Input) {
        let id = self.id(name);
        let (now, wall) = (self.now, self.wall());
        self.sup.feed(id, input, now, wall);
        self.run();
    }

    fn exit(&mut self, name: &str, code: i32) {
        self.feed(
            name,
            Input::Exited(ExitInfo { exitstatus: code, message: format!("exit status {code}"), shell_status: code }),
        );
    }

    fn killed(&mut self, name: &str, sig: &str) {
        self.feed(
            name,
            Input::Exited(ExitInfo { exitstatus: -1, message: format!("terminated by {sig}"), shell_status: 137 }),
        );
    }

    fn has_log(&self, line: &str) -> bool {
        self.log.iter().any(|l| l == line)
    }
}

/// The I/O of commands, faked: programs in `missing` are not found; signals are recorded.
struct FakeWorld {
    missing: Vec<String>,
    signals: Vec<(u32, i32)>,
}

impl World for FakeWorld {
    fn can_run(&mut self, config: &ProcessConfig) -> Result<(), BadCommand> {
        if self.missing.contains(&config.name) {
            return Err(BadCommand::NotFound(format!("no such file: {}", config.command)));
        }
        Ok(())
    }

    fn signal(&mut self, pid: u32, signal: i32) -> Result<(), String> {
        self.signals.push((pid, signal));
        Ok(())
    }
}

#[test]
fn autostart_spawns_then_running_after_startsecs() {
    let mut h = Harness::new(vec![group("a", 999, vec![pconf("a")])]);
    h.tick();
    assert_eq!(h.state("a"), ProcessState::Starting);
    assert!(h.has_log("INFO spawned: 'a' with pid 101"), "{:?}", h.log);
    h.advance(999);
    assert_eq!(h.state("a"), ProcessState::Starting);
    h.advance(1);
    assert_eq!(h.state("a"), ProcessState::Running);
    assert!(h.has_log("INFO success: a entered RUNNING state, process has stayed up for > than 1 seconds (startsecs)"));
}

#[test]
fn deadline_is_start_plus_startsecs() {
    let mut h = Harness::new(vec![group("a", 999, vec![pconf("a")])]);
    h.tick();
    assert_eq!(h.sup.next_deadline(), Some(h.t0 + Duration::from_secs(1)));
    h.advance(1000);
    assert_eq!(h.sup.next_deadline(), None, "a RUNNING process needs no wakeup");
}

#[test]
fn startsecs_zero_is_running_at_once() {
    let mut p = pconf("a");
    p.startsecs = 0;
    let mut h = Harness::new(vec![group("a", 999, vec![p])]);
    h.tick();
    assert_eq!(h.state("a"), ProcessState::Running);
}

#[test]
fn autostart_false_stays_stopped() {
    let mut p = pconf("a");
    p.autostart = false;
    let mut h = Harness::new(vec![group("a", 999, vec![p])]);
    h.tick();
    h.advance(5000);
    assert_eq!(h.state("a"), ProcessState::Stopped);
    assert!(h.spawns.is_empty());
}

#[test]
fn quick_exit_goes_to_backoff_never_running_first() {
    // Q1: an exit before startsecs is BACKOFF even if the wakeup for startsecs is already due.
    let mut h = Harness::new(vec![group("a", 999, vec![pconf("a")])]);
    h.tick();
    h.now += Duration::from_millis(200);
    h.exit("a", 1);
    assert_eq!(h.state("a"), ProcessState::Backoff);
    assert!(!h.changes.contains(&("a".into(), ProcessState::Running)));
    assert_eq!(h.proc("a").spawnerr.as_deref(), Some("Exited too quickly (process log may have details)"));
    assert!(h.has_log("WARN exited: a (exit status 1; not expected)"));
}

#[test]
fn expected_exit_before_startsecs_is_still_backoff() {
    // Issue #260 behaviour kept: the exit code does not matter before startsecs.
    let mut h = Harness::new(vec![group("a", 999, vec![pconf("a")])]);
    h.tick();
    h.exit("a", 0);
    assert_eq!(h.state("a"), ProcessState::Backoff);
}

#[test]
fn backoff_is_linear_and_gives_up_after_startretries() {
    let mut p = pconf("a");
    p.startretries = 2;
    let mut h = Harness::new(vec![group("a", 999, vec![p])]);
    h.tick();
    let mut spawn_times = vec![h.now - h.t0];
    for _ in 0..10 {
        h.exit("a", 1);
        if h.state("a") == ProcessState::Fatal {
            break;
        }
        let deadline = h.sup.next_deadline().expect("backoff deadline");
        h.now = deadline;
        h.tick();
        spawn_times.push(h.now - h.t0);
    }
    // Spawns at t = 0, 1, 3 s, then FATAL (VERIFIED behaviour of 2.4).
    assert_eq!(spawn_times, vec![Duration::ZERO, Duration::from_secs(1), Duration::from_secs(3)]);
    assert_eq!(h.state("a"), ProcessState::Fatal);
    assert!(h.has_log("INFO gave up: a entered FATAL state, too many start retries too quickly"));
    assert_eq!(h.sup.next_deadline(), None);
}

#[test]
fn spawn_error_goes_to_backoff_with_spawnerr() {
    let mut h = Harness::new(vec![group("a", 999, vec![pconf("a")])]);
    h.spawn_error = Some("can't find command 'nope'".into());
    h.tick();
    assert_eq!(h.state("a"), ProcessState::Backoff);
    assert_eq!(h.proc("a").spawnerr.as_deref(), Some("can't find command 'nope'"));
    assert!(h.has_log("INFO spawnerr: can't find command 'nope'"));
    for _ in 0..10 {
        if let Some(d) = h.sup.next_deadline() {
            h.now = d;
        }
        h.tick();
    }
    assert_eq!(h.state("a"), ProcessState::Fatal);
    assert_eq!(h.spawns.len(), 4, "startretries + 1 attempts");
}

#[test]
fn running_exit_expected_with_autorestart_unexpected_stays_exited() {
    let mut h = Harness::new(vec![group("a", 999, vec![pconf("a")])]);
    h.tick();
    h.advance(1500);
    h.exit("a", 0);
    assert_eq!(h.state("a"), ProcessState::Exited);
    assert!(h.has_log("INFO exited: a (exit status 0; expected)"));
    h.advance(5000);
    assert_eq!(h.state("a"), ProcessState::Exited);
    assert_eq!(h.spawns.len(), 1);
}

#[test]
fn running_exit_unexpected_restarts_immediately() {
    let mut h = Harness::new(vec![group("a", 999, vec![pconf("a")])]);
    h.tick();
    h.advance(1500);
    h.exit("a", 3);
    // EXITED then STARTING again in the same step, with spawnerr "Bad exit code" cleared by spawn.
    assert!(h.changes.ends_with(&[("a".into(), ProcessState::Exited), ("a".into(), ProcessState::Starting)]));
    assert!(h.has_log("WARN exited: a (exit status 3; not expected)"));
    assert_eq!(h.spawns.len(), 2);
}

#[test]
fn signal_death_is_exitstatus_minus_one_and_unexpected() {
    let mut p = pconf("a");
    p.autorestart = AutoRestart::Never;
    let mut h = Harness::new(vec![group("a", 999, vec![p])]);
    h.tick();
    h.advance(1500);
    h.killed("a", "SIGKILL");
    assert_eq!(h.state("a"), ProcessState::Exited);
    assert_eq!(h.proc("a").exitstatus, Some(-1));
    assert_eq!(h.proc("a").spawnerr.as_deref(), Some("Bad exit code -1"));
    assert!(h.has_log("WARN exited: a (terminated by SIGKILL; not expected)"));
}

#[test]
fn autorestart_sweep_over_exit_codes() {
    // Every exit code 0..=255 against exitcodes=0,2 for all three autorestart values.
    for policy in [AutoRestart::Never, AutoRestart::Unexpected, AutoRestart::Always] {
        for code in 0..=255 {
            let mut p = pconf("a");
            p.exitcodes = vec![0, 2];
            p.autorestart = policy.clone();
            let mut h = Harness::new(vec![group("a", 999, vec![p])]);
            h.tick();
            h.advance(1500);
            h.exit("a", code);
            let expected = code == 0 || code == 2;
            let restarted = h.spawns.len() == 2;
            let should = match policy {
                AutoRestart::Never => false,
                AutoRestart::Unexpected => !expected,
                AutoRestart::Always => true,
            };
            assert_eq!(restarted, should, "policy {policy:?} code {code}");
        }
    }
}

#[test]
fn exit_after_startsecs_but_before_tick_counts_as_running() {
    let mut h = Harness::new(vec![group("a", 999, vec![pconf("a")])]);
    h.tick();
    h.now += Duration::from_millis(1200);
    h.exit("a", 0);
    assert!(h.changes.ends_with(&[("a".into(), ProcessState::Running), ("a".into(), ProcessState::Exited)]));
}

#[test]
fn stop_sends_stopsignal_then_sigkill_after_stopwaitsecs() {
    let mut p = pconf("a");
    p.stopwaitsecs = 2;
    p.stopsignal = libc::SIGINT;
    let mut h = Harness::new(vec![group("a", 999, vec![p])]);
    h.tick();
    h.advance(1500);
    h.feed("a", Input::Stop);
    assert_eq!(h.state("a"), ProcessState::Stopping);
    assert_eq!(h.kills, vec![("a".into(), libc::SIGINT, false)]);
    assert!(h.has_log("DEBG killing a (pid 101) with signal SIGINT"));
    h.advance(1999);
    assert_eq!(h.kills.len(), 1);
    h.advance(1);
    assert_eq!(h.kills.last(), Some(&("a".into(), libc::SIGKILL, false)));
    assert!(h.has_log("WARN killing 'a' (101) with SIGKILL"));
    h.killed("a", "SIGKILL");
    assert_eq!(h.state("a"), ProcessState::Stopped);
    assert!(h.has_log("WARN stopped: a (terminated by SIGKILL)"));
    h.advance(10_000);
    assert_eq!(h.state("a"), ProcessState::Stopped, "a stopped process is not autostarted again");
}

#[test]
fn stopasgroup_signals_the_process_group_and_killasgroup_the_sigkill() {
    let mut p = pconf("a");
    p.stopasgroup = true;
    p.killasgroup = true;
    p.stopwaitsecs = 1;
    let mut h = Harness::new(vec![group("a", 999, vec![p])]);
    h.tick();
    h.advance(1500);
    h.feed("a", Input::Stop);
    assert!(h.has_log("DEBG killing a (pid 101) process group with signal SIGTERM"));
    h.advance(1000);
    assert_eq!(h.kills, vec![("a".into(), libc::SIGTERM, true), ("a".into(), libc::SIGKILL, true)]);
}

#[test]
fn sigkill_is_resent_every_stopwaitsecs_while_stuck() {
    let mut p = pconf("a");
    p.stopwaitsecs = 1;
    let mut h = Harness::new(vec![group("a", 999, vec![p])]);
    h.tick();
    h.advance(1500);
    h.feed("a", Input::Stop);
    for _ in 0..3 {
        h.advance(1000);
    }
    assert_eq!(h.kills.iter().filter(|k| k.1 == libc::SIGKILL).count(), 3);
    assert_eq!(h.state("a"), ProcessState::Stopping);
}

#[test]
fn stop_in_backoff_is_stopped_without_signal() {
    let mut h = Harness::new(vec![group("a", 999, vec![pconf("a")])]);
    h.tick();
    h.exit("a", 1);
    assert_eq!(h.state("a"), ProcessState::Backoff);
    h.feed("a", Input::Stop);
    assert_eq!(h.state("a"), ProcessState::Stopped);
    assert!(h.kills.is_empty());
    assert!(h.has_log("DEBG Attempted to kill a, which is in BACKOFF state."));
    h.advance(10_000);
    assert_eq!(h.state("a"), ProcessState::Stopped);
}

#[test]
fn stop_while_starting_then_exit_is_stopped() {
    let mut h = Harness::new(vec![group("a", 999, vec![pconf("a")])]);
    h.tick();
    h.feed("a", Input::Stop);
    assert_eq!(h.state("a"), ProcessState::Stopping);
    h.killed("a", "SIGTERM");
    assert_eq!(h.state("a"), ProcessState::Stopped);
    assert!(h.has_log("WARN stopped: a (terminated by SIGTERM)"));
}

#[test]
fn stopped_with_expected_code_logs_info() {
    let mut h = Harness::new(vec![group("a", 999, vec![pconf("a")])]);
    h.tick();
    h.advance(1500);
    h.feed("a", Input::Stop);
    h.exit("a", 0);
    assert!(h.has_log("INFO stopped: a (exit status 0)"));
}

#[test]
fn start_from_fatal_and_exited_but_not_unknown() {
    let mut p = pconf("a");
    p.startretries = 0;
    let mut h = Harness::new(vec![group("a", 999, vec![p])]);
    h.tick();
    h.exit("a", 1);
    assert_eq!(h.state("a"), ProcessState::Fatal);
    h.feed("a", Input::Start);
    assert_eq!(h.state("a"), ProcessState::Starting);
    h.advance(1500);
    h.feed("a", Input::Stop);
    h.feed("a", Input::KillFailed { message: "EPERM".into() });
    assert_eq!(h.state("a"), ProcessState::Unknown);
    let spawns = h.spawns.len();
    h.feed("a", Input::Start);
    assert_eq!(h.spawns.len(), spawns);
}

#[test]
fn every_state_input_pair_keeps_pid_consistent() {
    // Sweep: drive a process into each state, apply each input, and check the invariant that
    // a pid exists exactly in the states that have a child.
    let inputs = || {
        vec![
            Input::Start,
            Input::Spawned { pid: 999 },
            Input::SpawnFailed { message: "x".into() },
            Input::Exited(ExitInfo { exitstatus: 1, message: "exit status 1".into(), shell_status: 1 }),
            Input::Stop,
            Input::GiveUp,
            Input::Tick,
            Input::KillFailed { message: "EPERM".into() },
            Input::Ready,
            Input::Unhealthy { reason: "probe failed".into(), by: "health_check" },
            Input::Watchdog,
        ]
    };
    type Reach = (&'static str, fn(&mut Harness));
    let reach: Vec<Reach> = vec![
        ("stopped", |_| {}),
        ("starting", |h| h.tick()),
        // STARTING with its child asked for and not reported yet.
        ("spawning", |h| {
            let id = h.id("a");
            let (now, wall) = (h.now, h.wall());
            h.sup.feed(id, Input::Start, now, wall);
        }),
        ("running", |h| {
            h.tick();
            h.advance(1500)
        }),
        ("backoff", |h| {
            h.tick();
            h.exit("a", 1)
        }),
        ("stopping", |h| {
            h.tick();
            h.feed("a", Input::Stop)
        }),
        ("exited", |h| {
            h.tick();
            h.advance(1500);
            h.exit("a", 0)
        }),
        ("fatal", |h| {
            h.spawn_error = Some("e".into());
            for _ in 0..12 {
                h.advance(4000);
            }
            h.spawn_error = None;
        }),
        ("unknown", |h| {
            h.tick();
            h.feed("a", Input::Stop);
            h.feed("a", Input::KillFailed { message: "EPERM".into() })
        }),
    ];
    for (label, go) in &reach {
        for input in inputs() {
            let mut p = pconf("a");
            p.autostart = *label != "stopped";
            let mut h = Harness::new(vec![group("a", 999, vec![p])]);
            go(&mut h);
            let id = h.id("a");
            let (now, wall) = (h.now, h.wall());
            h.sup.feed(id, input.clone(), now, wall);
            h.run();
            let p = h.proc("a");
            let has_child = matches!(
                p.state,
                ProcessState::Starting | ProcessState::Running | ProcessState::Stopping | ProcessState::Unknown
            );
            if !has_child {
                assert_eq!(p.pid, 0, "from {label} with {input:?}: {} has pid {}", p.state, p.pid);
            }
            // A deferred stop waits in a state with a child; a deferred start in one without
            // (or in STOPPING, for a health_check restart).
            match p.deferred {
                Some(process::Deferred::Stop) => assert!(
                    matches!(p.state, ProcessState::Starting | ProcessState::Running),
                    "from {label} with {input:?}: a deferred stop in {}",
                    p.state
                ),
                Some(process::Deferred::Start) => assert!(
                    !matches!(p.state, ProcessState::Starting | ProcessState::Running | ProcessState::Unknown),
                    "from {label} with {input:?}: a deferred start in {}",
                    p.state
                ),
                None => {}
            }
            assert!(!p.spawning(), "from {label} with {input:?}: once the loop performed the spawn, it has a pid");
        }
    }
}

#[test]
fn shutdown_stops_groups_in_reverse_priority_one_group_at_a_time() {
    let mut h = Harness::new(vec![
        group("low", 10, vec![pconf("low")]),
        group("mid", 20, vec![pconf("mid")]),
        group("high", 30, vec![pconf("high")]),
    ]);
    h.tick();
    h.advance(1500);
    let (now, wall) = (h.now, h.wall());
    h.sup.request_stop(Mood::Shutdown, now, wall);
    h.run();
    assert_eq!(h.kills.iter().map(|k| k.0.as_str()).collect::<Vec<_>>(), vec!["high"]);
    h.killed("high", "SIGTERM");
    h.tick();
    assert_eq!(h.kills.iter().map(|k| k.0.as_str()).collect::<Vec<_>>(), vec!["high", "mid"]);
    h.exit("mid", 0);
    h.tick();
    h.exit("low", 0);
    h.tick();
    assert_eq!(h.done, Some(Mood::Shutdown));
    assert_eq!(h.kills.iter().map(|k| k.0.as_str()).collect::<Vec<_>>(), vec!["high", "mid", "low"]);
}

#[test]
fn shutdown_skips_idle_groups_without_waiting() {
    // Q2 fix: a hundred stopped groups and one running one finish in a single step.
    let mut groups = vec![group("run", 1, vec![pconf("run")])];
    for i in 0..100 {
        let mut p = pconf(&format!("idle{i}"));
        p.autostart = false;
        groups.push(group(&format!("idle{i}"), 500, vec![p]));
    }
    let mut h = Harness::new(groups);
    h.tick();
    h.advance(1500);
    let (now, wall) = (h.now, h.wall());
    h.sup.request_stop(Mood::Shutdown, now, wall);
    h.run();
    assert_eq!(h.kills.len(), 1, "the running group is signalled in the same step");
    h.exit("run", 0);
    h.tick();
    assert_eq!(h.done, Some(Mood::Shutdown));
}

#[test]
fn shutdown_gives_up_backoff_and_does_not_restart() {
    let mut h = Harness::new(vec![group("a", 1, vec![pconf("a")]), group("b", 2, vec![pconf("b")])]);
    h.tick();
    h.exit("a", 1);
    assert_eq!(h.state("a"), ProcessState::Backoff);
    h.advance(500);
    let (now, wall) = (h.now, h.wall());
    h.sup.request_stop(Mood::Shutdown, now, wall);
    h.run();
    h.exit("b", 0);
    h.tick();
    assert_eq!(h.state("a"), ProcessState::Fatal);
    assert_eq!(h.done, Some(Mood::Shutdown));
}

#[test]
fn processes_inside_a_group_stop_in_descending_priority() {
    let mut a = pconf("a");
    a.priority = 1;
    let mut b = pconf("b");
    b.priority = 2;
    let mut h = Harness::new(vec![group("g", 1, vec![a, b])]);
    h.tick();
    h.advance(1500);
    let (now, wall) = (h.now, h.wall());
    h.sup.request_stop(Mood::Shutdown, now, wall);
    h.run();
    assert_eq!(h.kills.iter().map(|k| k.0.as_str()).collect::<Vec<_>>(), vec!["b", "a"]);
}

#[test]
fn autostart_spawns_in_priority_order() {
    let mut h = Harness::new(vec![
        group("z", 5, vec![pconf("z")]),
        group("a", 50, vec![pconf("a")]),
        group("m", 5, vec![pconf("m")]),
    ]);
    h.tick();
    assert_eq!(h.spawns, vec!["z", "m", "a"], "stable sort by priority: ties keep insertion order");
}

#[test]
fn reload_ignored_while_shutting_down() {
    let mut h = Harness::new(vec![group("a", 1, vec![pconf("a")])]);
    h.tick();
    let (now, wall) = (h.now, h.wall());
    assert!(h.sup.request_stop(Mood::Shutdown, now, wall));
    assert!(!h.sup.request_stop(Mood::Restarting, now, wall));
    assert_eq!(h.sup.mood(), Mood::Shutdown);
}

#[test]
fn remove_group_refuses_while_running() {
    let mut h = Harness::new(vec![group("a", 1, vec![pconf("a")])]);
    h.tick();
    assert_eq!(h.sup.remove_group("a"), Err(RemoveError::StillRunning));
    assert_eq!(h.sup.remove_group("nope"), Err(RemoveError::NoSuchGroup));
    h.feed("a", Input::Stop);
    h.killed("a", "SIGTERM");
    assert!(h.sup.remove_group("a").is_ok());
    assert!(h.sup.processes().next().is_none());
}

#[test]
fn groups_are_found_by_name_after_one_before_them_is_removed() {
    let mut sup = Supervisor::new();
    for name in ["a", "b", "c"] {
        let mut pc = pconf(name);
        pc.autostart = false;
        assert!(sup.add_group(group(name, 1, vec![pc])));
    }
    assert!(!sup.add_group(group("b", 1, vec![pconf("b")])), "a second b is refused");
    assert!(sup.remove_group("a").is_ok());
    assert!(sup.group("a").is_none());
    for name in ["b", "c"] {
        assert_eq!(sup.group(name).map(|g| g.config.name.as_str()), Some(name));
        assert!(sup.find(name, name).is_some());
    }
    assert!(sup.add_group(group("a", 1, vec![pconf("a")])));
    assert_eq!(sup.groups().iter().map(|g| g.config.name.as_str()).collect::<Vec<_>>(), ["b", "c", "a"]);
    assert_eq!(sup.group("a").map(|g| g.config.name.as_str()), Some("a"));
}

fn policy(p: &mut ProcessConfig, f: impl FnOnce(&mut crate::config::RestartPolicy)) {
    f(&mut p.restart);
}

/// Runs the fake clock from deadline to deadline, making every spawn fail at once, and returns
/// the spawn times in seconds.
fn spawn_times_with_quick_exits(h: &mut Harness, name: &str, spawns: usize) -> Vec<u64> {
    h.tick();
    let mut times = vec![(h.now - h.t0).as_secs()];
    for _ in 0..200 {
        if times.len() >= spawns {
            break;
        }
        if h.state(name) == ProcessState::Starting {
            h.exit(name, 1);
        }
        let Some(d) = h.sup.next_deadline() else { break };
        h.now = d;
        let before = h.spawns.len();
        h.tick();
        if h.spawns.len() > before {
            times.push((h.now - h.t0).as_secs());
        }
    }
    times
}

#[test]
fn infinite_retries_never_give_up_and_backoff_max_caps_the_wait() {
    let mut p = pconf("a");
    p.startretries = -1;
    policy(&mut p, |r| r.backoff_max = 3);
    let mut h = Harness::new(vec![group("a", 999, vec![p])]);
    let times = spawn_times_with_quick_exits(&mut h, "a", 8);
    // Waits of 1, 2, 3, then 3 seconds forever.
    assert_eq!(times, vec![0, 1, 3, 6, 9, 12, 15, 18]);
    assert_ne!(h.state("a"), ProcessState::Fatal);
}

#[test]
fn negative_startretries_is_infinite() {
    let mut p = pconf("a");
    p.startretries = -1;
    let mut h = Harness::new(vec![group("a", 999, vec![p])]);
    let times = spawn_times_with_quick_exits(&mut h, "a", 6);
    assert_eq!(times, vec![0, 1, 3, 6, 10, 15], "linear backoff without a cap");
}

#[test]
fn restart_delay_waits_before_an_autorestart() {
    let mut p = pconf("a");
    p.autorestart = AutoRestart::Always;
    policy(&mut p, |r| r.restart_delay = 5);
    let mut h = Harness::new(vec![group("a", 999, vec![p])]);
    h.tick();
    h.advance(1500);
    h.exit("a", 0);
    assert_eq!(h.state("a"), ProcessState::Exited);
    assert_eq!(h.sup.next_deadline(), Some(h.now + Duration::from_secs(5)));
    h.advance(4999);
    assert_eq!(h.spawns.len(), 1);
    h.advance(1);
    assert_eq!(h.spawns.len(), 2, "restarted once restart_delay passed");
}

#[test]
fn stop_calls_off_a_pending_restart() {
    let mut p = pconf("a");
    p.autorestart = AutoRestart::Always;
    policy(&mut p, |r| r.restart_delay = 5);
    let mut h = Harness::new(vec![group("a", 999, vec![p])]);
    h.tick();
    h.advance(1500);
    h.exit("a", 0);
    assert!(h.proc("a").restart_pending());
    h.feed("a", Input::Stop);
    assert_eq!(h.state("a"), ProcessState::Stopped);
    h.advance(10_000);
    assert_eq!(h.spawns.len(), 1);
}

#[test]
fn fatal_retry_starts_a_fatal_process_again() {
    let mut p = pconf("a");
    p.startretries = 0;
    policy(&mut p, |r| r.fatal_retry = 30);
    let mut h = Harness::new(vec![group("a", 999, vec![p])]);
    h.tick();
    h.exit("a", 1);
    assert_eq!(h.state("a"), ProcessState::Fatal);
    assert_eq!(h.sup.next_deadline(), Some(h.now + Duration::from_secs(30)));
    h.advance(30_000);
    assert_eq!(h.state("a"), ProcessState::Starting);
    assert!(h.has_log("INFO retrying: a was FATAL for 30 seconds (fatal_retry)"));
}

#[test]
fn backoff_window_slows_down_crashes_right_after_startsecs() {
    // Supervisor restarts a program that dies just after startsecs at full speed forever (#1285).
    let mut p = pconf("a");
    p.autorestart = AutoRestart::Always;
    policy(&mut p, |r| {
        r.backoff_window = 10;
        r.backoff_max = 4;
    });
    let mut h = Harness::new(vec![group("a", 999, vec![p])]);
    h.tick();
    let mut restarts = Vec::new();
    for _ in 0..6 {
        h.advance(1000); // startsecs passes: RUNNING
        assert_eq!(h.state("a"), ProcessState::Running);
        h.now += Duration::from_millis(500);
        h.exit("a", 1); // dies half a second after RUNNING
        let wait = h.sup.next_deadline().map(|d| (d - h.now).as_secs()).unwrap_or(0);
        restarts.push(wait);
        if let Some(d) = h.sup.next_deadline() {
            h.now = d;
        }
        h.tick();
    }
    assert_eq!(restarts, vec![1, 2, 3, 4, 4, 4], "the wait grows up to backoff_max");
    // Staying up past the window resets it.
    h.advance(1000);
    h.advance(10_000);
    let spawns = h.spawns.len();
    h.exit("a", 1);
    assert_eq!(h.spawns.len(), spawns + 1, "an exit after the window restarts at once");
    assert_eq!(h.state("a"), ProcessState::Starting);
}

fn dep(name: &str, deps: &[&str]) -> ProcessConfig {
    let mut p = pconf(name);
    p.depends_on = deps.iter().map(|d| d.to_string()).collect();
    p
}

#[test]
fn a_dependency_chain_starts_in_order_each_once_the_previous_is_running() {
    // c depends on b, b on a; all autostart with startsecs=1.
    let mut h = Harness::new(vec![
        group("c", 1, vec![dep("c", &["b"])]),
        group("b", 2, vec![dep("b", &["a"])]),
        group("a", 3, vec![dep("a", &[])]),
    ]);
    h.tick();
    assert_eq!(h.spawns, vec!["a"], "priority alone would start c first");
    h.advance(1000);
    assert_eq!(h.spawns, vec!["a", "b"], "b starts as soon as a is RUNNING");
    h.advance(1000);
    assert_eq!(h.spawns, vec!["a", "b", "c"]);
    h.advance(1000);
    assert_eq!(h.state("c"), ProcessState::Running);
}

#[test]
fn shutdown_stops_dependents_first_whatever_the_priorities() {
    // a's group has the higher priority number: by priority alone it would stop first.
    let mut h = Harness::new(vec![group("a", 2, vec![dep("a", &[])]), group("b", 1, vec![dep("b", &["a"])])]);
    for _ in 0..4 {
        h.advance(1000);
    }
    assert_eq!(h.state("b"), ProcessState::Running);
    let (now, wall) = (h.now, h.wall());
    h.sup.request_stop(Mood::Shutdown, now, wall);
    h.run();
    assert_eq!(h.kills.iter().map(|k| k.0.as_str()).collect::<Vec<_>>(), vec!["b"]);
    h.killed("b", "SIGTERM");
    h.tick();
    assert_eq!(h.kills.iter().map(|k| k.0.as_str()).collect::<Vec<_>>(), vec!["b", "a"]);
    h.killed("a", "SIGTERM");
    h.tick();
    assert_eq!(h.done, Some(Mood::Shutdown));
}

#[test]
fn a_dependency_stopped_while_dependents_run_waits_for_them() {
    let mut h = Harness::new(vec![group("a", 1, vec![dep("a", &[])]), group("b", 1, vec![dep("b", &["a"])])]);
    for _ in 0..3 {
        h.advance(1000);
    }
    h.feed("a", Input::Stop);
    assert!(h.kills.is_empty(), "a waits while b runs");
    assert!(h.has_log("INFO a waits for the programs that depend on it to stop"));
    h.feed("b", Input::Stop);
    assert_eq!(h.kills.last().map(|k| k.0.as_str()), Some("b"));
    h.killed("b", "SIGTERM");
    h.tick();
    assert_eq!(h.kills.last().map(|k| k.0.as_str()), Some("a"), "then a stops");
}

#[test]
fn starting_a_dependent_by_hand_waits_for_its_dependency() {
    let mut a = dep("a", &[]);
    a.autostart = false;
    let mut b = dep("b", &["a"]);
    b.autostart = false;
    let mut h = Harness::new(vec![group("a", 1, vec![a]), group("b", 1, vec![b])]);
    h.feed("b", Input::Start);
    assert!(h.spawns.is_empty());
    assert!(h.proc("b").start_requested());
    h.feed("a", Input::Start);
    h.advance(1000);
    assert_eq!(h.spawns, vec!["a", "b"], "b follows once a is RUNNING");
}

#[test]
fn restarts_are_counted_after_the_first_start() {
    let mut p = pconf("a");
    p.autorestart = AutoRestart::Always;
    let mut h = Harness::new(vec![group("a", 999, vec![p])]);
    h.tick();
    assert_eq!(h.proc("a").restarts, 0);
    for _ in 0..3 {
        h.advance(1500);
        h.exit("a", 0);
    }
    assert_eq!(h.proc("a").restarts, 3);
}

#[test]
fn ready_fd_makes_running_when_the_program_says_so_not_after_startsecs() {
    let mut p = pconf("a");
    p.ready_fd = Some(3);
    p.startsecs = 1;
    p.ready_timeout = 30;
    let mut h = Harness::new(vec![group("a", 999, vec![p])]);
    h.tick();
    h.advance(5000);
    assert_eq!(h.state("a"), ProcessState::Starting, "startsecs does not apply");
    h.feed("a", Input::Ready);
    assert_eq!(h.state("a"), ProcessState::Running);
    assert!(h.has_log("INFO success: a entered RUNNING state, process is ready (ready_fd)"));
}

#[test]
fn not_ready_within_ready_timeout_is_a_failed_start() {
    // The same deadline whether readiness comes from ready_fd or from a ready_check probe.
    for by_probe in [false, true] {
        let mut p = pconf("a");
        if by_probe {
            p.checks.ready = Some(crate::config::model::Probe::Command("true".into()));
        } else {
            p.ready_fd = Some(3);
        }
        p.ready_timeout = 2;
        let mut h = Harness::new(vec![group("a", 999, vec![p])]);
        h.tick();
        h.advance(1999);
        assert_eq!(h.state("a"), ProcessState::Starting);
        h.advance(1);
        assert_eq!(h.kills, vec![("a".into(), libc::SIGKILL, false)]);
        assert!(h.has_log("WARN a did not become ready within 2 seconds (ready_timeout): killing it"));
        h.killed("a", "SIGKILL");
        assert_eq!(h.state("a"), ProcessState::Backoff);
        assert_eq!(h.proc("a").spawnerr.as_deref(), Some("not ready within 2 seconds (ready_timeout)"));
    }
}

#[test]
fn an_exit_before_ready_is_a_failed_start_whatever_startsecs() {
    let mut p = pconf("a");
    p.ready_fd = Some(3);
    p.startsecs = 0;
    let mut h = Harness::new(vec![group("a", 999, vec![p])]);
    h.tick();
    assert_eq!(h.state("a"), ProcessState::Starting, "startsecs=0 does not promote with ready_fd");
    h.advance(3000);
    h.exit("a", 0);
    assert_eq!(h.state("a"), ProcessState::Backoff);
}

#[test]
fn restart_limit_spaces_automatic_restarts_across_the_daemon() {
    let procs = ["a", "b", "c"]
        .iter()
        .map(|n| {
            let mut p = pconf(n);
            p.autorestart = AutoRestart::Always;
            p
        })
        .collect();
    let mut h = Harness::new(vec![group("g", 999, procs)]);
    h.sup.set_restart_limit(2);
    h.tick();
    // Autostart is not limited: all three start at once.
    assert_eq!(h.spawns, ["a", "b", "c"]);
    h.advance(1000);
    for n in ["a", "b", "c"] {
        assert_eq!(h.state(n), ProcessState::Running);
        h.exit(n, 1);
    }
    h.tick();
    assert_eq!(h.state("a"), ProcessState::Starting);
    assert_eq!(h.state("b"), ProcessState::Starting);
    assert_eq!(h.state("c"), ProcessState::Exited, "the third restart in a second waits");
    assert!(h.proc("c").restart_held);
    assert!(h.has_log("WARN delaying the restart of c: restart_limit reached"), "{:?}", h.log);
    // The loop is woken when the window lets it go, and not before.
    assert_eq!(h.sup.next_deadline(), Some(h.now + Duration::from_secs(1)));
    h.advance(999);
    assert_eq!(h.state("c"), ProcessState::Exited);
    h.advance(1);
    assert_eq!(h.state("c"), ProcessState::Starting);
    assert!(!h.proc("c").restart_held);
    assert_eq!(h.log.iter().filter(|l| l.contains("delaying the restart")).count(), 1, "logged once per wait");
}

#[test]
fn restart_limit_does_not_hold_manual_starts_or_outlive_a_shutdown() {
    let mut p = pconf("a");
    p.autorestart = AutoRestart::Always;
    let mut q = pconf("b");
    q.autorestart = AutoRestart::Always;
    let mut h = Harness::new(vec![group("g", 999, vec![p, q])]);
    h.sup.set_restart_limit(1);
    h.tick();
    h.advance(1000);
    h.exit("a", 1);
    h.exit("b", 1);
    h.tick();
    assert_eq!(h.state("a"), ProcessState::Starting);
    assert_eq!(h.state("b"), ProcessState::Exited);
    // A start by hand is not an automatic restart: it goes at once.
    h.feed("b", Input::Start);
    assert_eq!(h.state("b"), ProcessState::Starting);
    // Held restarts do not keep waking a daemon that is shutting down.
    h.advance(1000);
    h.exit("a", 1);
    h.exit("b", 1);
    h.tick();
    let (now, wall) = (h.now, h.wall());
    h.sup.request_stop(Mood::Shutdown, now, wall);
    h.tick();
    assert!(!h.proc("b").restart_held);
    assert_eq!(h.state("b"), ProcessState::Exited);
    // Only the stop of `a` (its stopwaitsecs) remains due, and saying every 3 s that the
    // shutdown waits for it.
    assert_eq!(h.state("a"), ProcessState::Stopping);
    assert!(h.has_log("INFO waiting for a to die"), "{:?}", h.log);
    assert_eq!(h.sup.next_deadline(), Some(h.now + Duration::from_secs(3)));
    h.advance(3000);
    assert_eq!(h.log.iter().filter(|l| *l == "INFO waiting for a to die").count(), 2);
    assert_eq!(h.sup.next_deadline(), Some(h.now + Duration::from_secs(3)).min(h.proc("a").deadline()));
}

#[test]
fn ready_check_waits_like_ready_fd() {
    let mut p = pconf("a");
    p.checks.ready = Some(crate::config::model::Probe::Tcp("127.0.0.1:9".parse().unwrap()));
    p.ready_timeout = 10;
    let mut h = Harness::new(vec![group("a", 999, vec![p])]);
    h.tick();
    h.advance(5000);
    assert_eq!(h.state("a"), ProcessState::Starting, "startsecs does not apply");
    h.feed("a", Input::Ready);
    assert_eq!(h.state("a"), ProcessState::Running);
    assert!(h.has_log("INFO success: a entered RUNNING state, process is ready (ready_check)"), "{:?}", h.log);
}

#[test]
fn unhealthy_running_process_is_stopped_and_started_again() {
    let mut h = Harness::new(vec![group("a", 999, vec![pconf("a")])]);
    h.tick();
    h.advance(1000);
    assert_eq!(h.state("a"), ProcessState::Running);
    h.feed("a", Input::Unhealthy { reason: "HTTP status 500".into(), by: "health_check" });
    assert!(h.has_log("WARN a is unhealthy (HTTP status 500): restarting it (health_check)"), "{:?}", h.log);
    assert_eq!(h.state("a"), ProcessState::Stopping);
    assert_eq!(h.kills.last(), Some(&("a".to_string(), libc::SIGTERM, false)));
    h.killed("a", "SIGTERM");
    h.tick();
    assert_eq!(h.state("a"), ProcessState::Starting, "started again");
    assert_eq!(h.spawns, ["a", "a"]);
    assert_eq!(h.proc("a").health_failure.as_deref(), Some("HTTP status 500"));
    // A verdict for a process no longer RUNNING is stale.
    h.feed("a", Input::Unhealthy { reason: "late".into(), by: "health_check" });
    assert_eq!(h.state("a"), ProcessState::Starting);
    // A stop by hand clears the reason.
    h.advance(1000);
    h.feed("a", Input::Stop);
    assert_eq!(h.proc("a").health_failure, None);
}

#[test]
fn stop_by_hand_during_a_health_restart_keeps_it_stopped() {
    let mut h = Harness::new(vec![group("a", 999, vec![pconf("a")])]);
    h.tick();
    h.advance(1000);
    h.feed("a", Input::Unhealthy { reason: "connect: refused".into(), by: "health_check" });
    assert_eq!(h.state("a"), ProcessState::Stopping);
    h.feed("a", Input::Stop);
    h.killed("a", "SIGTERM");
    h.advance(5000);
    assert_eq!(h.state("a"), ProcessState::Stopped);
    assert_eq!(h.spawns, ["a"], "not started again");
}

#[test]
fn has_checks_follows_the_groups_added_and_removed() {
    let mut sup = Supervisor::new();
    sup.add_group(group("plain", 1, vec![pconf("a")]));
    assert!(!sup.has_checks());
    let mut checked = pconf("b");
    checked.checks.health = Some(crate::config::Probe::Command("true".into()));
    sup.add_group(group("checked", 2, vec![checked]));
    assert!(sup.has_checks());
    assert!(sup.remove_group("checked").is_ok());
    assert!(!sup.has_checks());
}

mod commands;

/// Upgrade in place: a new core given each process's carried state goes on where the old one
/// was: a stop escalates to SIGKILL at its time, a retry after backoff comes at its time with
/// its counter, a process stopped by hand is not autostarted, and nothing else is started.
#[test]
fn processes_carried_through_an_upgrade_go_on_where_they_were() {
    let mut a = pconf("a");
    a.stopwaitsecs = 2;
    let mut c = pconf("c");
    c.autostart = false;
    let m = pconf("m");
    let groups =
        || vec![group("a", 1, vec![a.clone()]), group("c", 2, vec![c.clone()]), group("m", 3, vec![m.clone()])];
    let mut old = Harness::new(groups());
    old.tick();
    old.advance(1500);
    assert_eq!(old.state("a"), ProcessState::Running);
    old.feed("m", Input::Stop);
    old.killed("m", "SIGTERM");
    assert_eq!(old.state("m"), ProcessState::Stopped);
    old.feed("a", Input::Stop);
    old.feed("c", Input::Start);
    old.exit("c", 1);
    assert_eq!((old.state("c"), old.proc("c").backoff), (ProcessState::Backoff, 1));
    old.advance(500);

    let mut new = Harness::new(groups());
    (new.t0, new.now) = (old.t0, old.now);
    for name in ["a", "c", "m"] {
        let id = new.id(name);
        new.sup.resume(id, old.proc(name).carry());
    }
    new.tick();
    assert!(new.spawns.is_empty() && new.kills.is_empty(), "{:?} {:?}", new.spawns, new.kills);
    assert_eq!(new.state("a"), ProcessState::Stopping);
    assert_eq!(new.proc("a").pid, old.proc("a").pid);
    // a: 1.5 s of its stopwaitsecs were left; c: 0.5 s of its 1 s backoff.
    new.advance(499);
    assert!(new.spawns.is_empty());
    new.advance(1);
    assert_eq!(new.spawns, vec!["c".to_string()]);
    new.exit("c", 1);
    assert_eq!(new.proc("c").backoff, 2, "the backoff counter goes on");
    new.advance(999);
    assert!(new.kills.is_empty());
    new.advance(1);
    assert_eq!(new.kills, vec![("a".to_string(), libc::SIGKILL, false)]);
    new.advance(60_000);
    assert!(!new.spawns.contains(&"m".to_string()), "stopped by hand, m stays stopped");
    assert_eq!(new.state("m"), ProcessState::Stopped);
}
