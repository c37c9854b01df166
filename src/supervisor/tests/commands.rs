//! The control plane's commands (`command.rs`) against the fake clock and a fake world: what
//! is answered at once, what waits and when its answer comes, and the rules behind them.

use super::*;

fn manual(name: &str) -> ProcessConfig {
    let mut p = pconf(name);
    p.autostart = false;
    p
}

fn one(name: &str) -> Target {
    Target::Group(name.into())
}

#[test]
fn a_start_that_waits_is_answered_once_running() {
    let mut h = Harness::new(vec![group("a", 1, vec![manual("a")])]);
    let id = h.id("a");
    let ticket = h.command(Command::Start { target: Target::Process(id), wait: true }).expect_err("waits");
    assert_eq!(h.state("a"), ProcessState::Starting);
    assert_eq!(h.answer(ticket), None, "not before startsecs");
    h.advance(999);
    assert_eq!(h.answer(ticket), None);
    h.advance(1);
    assert_eq!(h.answer(ticket), Some(&Answer::Done));
}

#[test]
fn a_start_without_wait_is_answered_once_spawned_and_a_spawn_error_is_its_answer() {
    let mut h = Harness::new(vec![group("a", 1, vec![manual("a")]), group("b", 1, vec![manual("b")])]);
    let id = h.id("a");
    let ticket = h.command(Command::Start { target: Target::Process(id), wait: false }).expect_err("spawn first");
    assert_eq!(h.answer(ticket), Some(&Answer::Done), "answered in the same round as the spawn");
    assert_eq!(h.state("a"), ProcessState::Starting);
    h.spawn_error = Some("no such file".into());
    let id = h.id("b");
    let ticket = h.command(Command::Start { target: Target::Process(id), wait: false }).expect_err("spawn first");
    assert_eq!(h.answer(ticket), Some(&Answer::Refused(Refusal::SpawnError("b".into()))));
}

#[test]
fn refusals_come_at_once() {
    let mut h = Harness::new(vec![group("a", 1, vec![manual("a")]), group("b", 1, vec![manual("b")])]);
    h.missing = vec!["b".into()];
    let (a, b) = (h.id("a"), h.id("b"));
    let answer = h.command(Command::Start { target: Target::Process(b), wait: true });
    assert_eq!(answer, Ok(Answer::Refused(Refusal::NoFile("no such file: /bin/true".into()))));
    assert!(h.spawns.is_empty());
    let answer = h.command(Command::Stop { target: Target::Process(a), wait: true });
    assert_eq!(answer, Ok(Answer::Refused(Refusal::NotRunning("a".into()))));
    let _ = h.command(Command::Start { target: Target::Process(a), wait: false });
    let answer = h.command(Command::Start { target: Target::Process(a), wait: true });
    assert_eq!(answer, Ok(Answer::Refused(Refusal::AlreadyStarted("a".into()))));
    let answer = h.command(Command::Signal { target: Target::Process(b), signal: Ok(libc::SIGHUP) });
    assert_eq!(answer, Ok(Answer::Refused(Refusal::NotRunning("b".into()))));
    assert!(h.signals.is_empty());
    let answer = h.command(Command::RemoveGroup("a".into()));
    assert_eq!(answer, Ok(Answer::Refused(Refusal::StillRunning("a".into()))));
    let answer = h.command(Command::RemoveGroup("zzz".into()));
    assert_eq!(answer, Ok(Answer::Refused(Refusal::BadName("zzz".into()))));
    let answer = h.command(Command::AddGroup(Box::new(group("b", 1, vec![manual("b")]))));
    assert_eq!(answer, Ok(Answer::Refused(Refusal::AlreadyAdded("b".into()))));
}

#[test]
fn a_group_start_answers_in_the_groups_order_and_waits_for_running_only_with_wait() {
    let names = ["g1", "g2", "g3"];
    let procs = |h: &mut Harness| {
        h.missing = vec!["g2".into()];
    };
    // Without wait: each result once spawned, in order, the refused one in its place.
    let mut h = Harness::new(vec![group("g", 1, names.iter().map(|n| manual(n)).collect())]);
    procs(&mut h);
    let ticket = h.command(Command::Start { target: one("g"), wait: false }).expect_err("spawns first");
    let Some(Answer::Each(items)) = h.answer(ticket) else { panic!("answered: {:?}", h.answers) };
    let got: Vec<(&str, bool)> = items.iter().map(|e| (e.name.as_str(), e.result.is_ok())).collect();
    assert_eq!(got, vec![("g1", true), ("g2", false), ("g3", true)]);
    assert_eq!(items[1].result, Err(Refusal::NoFile("no such file: /bin/true".into())));
    // With wait: the refusal comes first (known at once), the others once RUNNING.
    let mut h = Harness::new(vec![group("g", 1, names.iter().map(|n| manual(n)).collect())]);
    procs(&mut h);
    let ticket = h.command(Command::Start { target: one("g"), wait: true }).expect_err("waits");
    assert_eq!(h.answer(ticket), None);
    h.advance(1000);
    let Some(Answer::Each(items)) = h.answer(ticket) else { panic!("answered: {:?}", h.answers) };
    let got: Vec<&str> = items.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(got, vec!["g2", "g1", "g3"]);
}

#[test]
fn a_stop_with_wait_is_answered_once_stopped() {
    let mut h = Harness::new(vec![group("a", 1, vec![pconf("a")])]);
    h.advance(1000);
    h.advance(1000);
    let id = h.id("a");
    let ticket = h.command(Command::Stop { target: Target::Process(id), wait: true }).expect_err("waits");
    assert_eq!(h.kills, vec![("a".into(), libc::SIGTERM, false)]);
    assert_eq!(h.answer(ticket), None);
    h.killed("a", "SIGTERM");
    assert_eq!(h.answer(ticket), Some(&Answer::Done));
}

#[test]
fn starting_a_dependent_starts_its_dependencies_first_and_waits_for_them() {
    let mut a = dep("a", &[]);
    a.autostart = false;
    let mut b = dep("b", &["a"]);
    b.autostart = false;
    let mut c = dep("c", &["b"]);
    c.autostart = false;
    let mut h = Harness::new(vec![group("a", 1, vec![a]), group("b", 1, vec![b]), group("c", 1, vec![c])]);
    let id = h.id("c");
    let ticket = h.command(Command::Start { target: Target::Process(id), wait: true }).expect_err("waits");
    assert_eq!(h.spawns, vec!["a"], "the chain starts at its root");
    h.advance(1000);
    assert_eq!(h.spawns, vec!["a", "b"]);
    h.advance(1000);
    assert_eq!(h.spawns, vec!["a", "b", "c"]);
    assert_eq!(h.answer(ticket), None, "c is not RUNNING yet");
    h.advance(1000);
    assert_eq!(h.answer(ticket), Some(&Answer::Done));
}

#[test]
fn stopping_a_dependency_stops_what_depends_on_it_first() {
    let mut h = Harness::new(vec![
        group("a", 1, vec![dep("a", &[])]),
        group("b", 1, vec![dep("b", &["a"])]),
        group("c", 1, vec![dep("c", &["b"])]),
    ]);
    for _ in 0..4 {
        h.advance(1000);
    }
    assert_eq!(h.state("c"), ProcessState::Running);
    let id = h.id("a");
    let ticket = h.command(Command::Stop { target: Target::Process(id), wait: true }).expect_err("waits");
    assert_eq!(h.kills.iter().map(|k| k.0.as_str()).collect::<Vec<_>>(), vec!["c"], "the outermost first");
    h.killed("c", "SIGTERM");
    h.tick();
    assert_eq!(h.kills.iter().map(|k| k.0.as_str()).collect::<Vec<_>>(), vec!["c", "b"]);
    h.killed("b", "SIGTERM");
    h.tick();
    assert_eq!(h.answer(ticket), None);
    h.killed("a", "SIGTERM");
    assert_eq!(h.answer(ticket), Some(&Answer::Done));
}

#[test]
fn an_update_stops_only_the_changed_processes_then_replaces_and_restarts_them() {
    let mut h = Harness::new(vec![group("g", 1, vec![pconf("same"), pconf("changed"), pconf("gone")])]);
    h.advance(1000);
    h.advance(1000);
    let mut changed = pconf("changed");
    changed.command = "/bin/false".into();
    let new = group("g", 1, vec![pconf("same"), changed, pconf("new")]);
    let ticket = h.command(Command::UpdateGroup(Box::new(new))).expect_err("waits for the stops");
    let mut killed: Vec<&str> = h.kills.iter().map(|k| k.0.as_str()).collect();
    killed.sort();
    assert_eq!(killed, vec!["changed", "gone"]);
    h.killed("changed", "SIGTERM");
    assert_eq!(h.answer(ticket), None, "gone still runs");
    h.killed("gone", "SIGTERM");
    let report = UpdateReport {
        added: vec!["new".into()],
        changed: vec!["changed".into()],
        removed: vec!["gone".into()],
        unchanged: vec!["same".into()],
    };
    assert_eq!(h.answer(ticket), Some(&Answer::Updated(report)));
    assert_eq!(h.state("same"), ProcessState::Running, "untouched");
    assert_eq!(h.proc("changed").config.command, "/bin/false");
    assert_eq!(h.state("changed"), ProcessState::Starting, "started again: it was running");
    assert_eq!(h.state("new"), ProcessState::Starting, "autostarts");
    assert!(h.sup.processes().all(|(_, p)| p.name() != "gone"));
}

#[test]
fn signalling_a_group_with_an_unknown_signal_answers_for_each_process() {
    let mut h = Harness::new(vec![group("g", 1, vec![pconf("a"), pconf("b"), manual("c")])]);
    h.advance(1000);
    h.advance(1000);
    let answer = h.command(Command::Signal { target: one("g"), signal: Err("NOPE".into()) });
    let Ok(Answer::Each(items)) = answer else { panic!("{answer:?}") };
    assert_eq!(items.len(), 2, "only the signallable ones");
    assert!(items.iter().all(|e| e.result == Err(Refusal::BadSignal("NOPE".into()))));
    assert!(h.signals.is_empty());
    let answer = h.command(Command::Signal { target: one("g"), signal: Ok(libc::SIGUSR1) });
    let Ok(Answer::Each(items)) = answer else { panic!("{answer:?}") };
    assert!(items.iter().all(|e| e.result.is_ok()));
    assert_eq!(h.signals.iter().map(|s| s.1).collect::<Vec<_>>(), vec![libc::SIGUSR1, libc::SIGUSR1]);
}

#[test]
fn a_critical_program_gone_for_good_stops_the_daemon_with_its_status_once() {
    let mut a = pconf("a");
    a.critical = true;
    a.autorestart = AutoRestart::Never;
    let mut b = pconf("b");
    b.critical = true;
    b.autorestart = AutoRestart::Never;
    let mut h = Harness::new(vec![group("a", 1, vec![a, b])]);
    h.advance(1000);
    h.advance(1000);
    h.exit("a", 3);
    assert_eq!(h.critical, Some(3));
    assert!(
        h.has_log("CRIT critical program a is EXITED and will not be restarted: stopping everything, exit status 3")
    );
    assert_eq!(h.sup.mood(), Mood::Shutdown);
    h.killed("b", "SIGTERM");
    assert_eq!(h.critical, Some(3), "reported once");
    assert_eq!(h.log.iter().filter(|l| l.starts_with("CRIT critical")).count(), 1);
}

#[test]
fn a_critical_program_that_is_restarted_does_not_stop_the_daemon() {
    let mut a = pconf("a");
    a.critical = true;
    a.autorestart = AutoRestart::Always;
    let mut h = Harness::new(vec![group("a", 1, vec![a])]);
    h.advance(1000);
    h.advance(1000);
    h.exit("a", 3);
    assert_eq!(h.critical, None);
    assert_eq!(h.state("a"), ProcessState::Starting);
}

#[test]
fn the_running_event_comes_from_the_core_before_the_first_start() {
    let mut h = Harness::new(vec![group("a", 1, vec![pconf("a")])]);
    assert_eq!(h.running_events, 0);
    let (now, wall) = (h.now, h.wall());
    h.sup.begin(now, wall);
    let first = h.sup.take_actions();
    assert_eq!(first, Some(Action::SupervisorRunning));
    h.run();
    assert_eq!(h.spawns, vec!["a"]);
}

#[test]
fn adding_and_removing_a_group_are_commands() {
    let mut h = Harness::new(vec![]);
    let answer = h.command(Command::AddGroup(Box::new(group("a", 1, vec![pconf("a")]))));
    assert_eq!(answer, Ok(Answer::Done));
    assert_eq!(h.spawns, vec!["a"], "it autostarts at once");
    h.advance(1000);
    let id = h.id("a");
    let _ = h.command(Command::Stop { target: Target::Process(id), wait: false });
    h.killed("a", "SIGTERM");
    assert_eq!(h.command(Command::RemoveGroup("a".into())), Ok(Answer::Done));
    assert!(h.sup.group("a").is_none());
}

#[test]
fn a_tick_steps_only_the_processes_that_are_due() {
    let procs = (0..1000).map(|i| pconf(&format!("p{i}"))).collect();
    let mut h = Harness::new(vec![group("g", 1, procs)]);
    h.tick();
    assert_eq!(h.spawns.len(), 1000);
    h.advance(1000);
    assert!(h.sup.processes().all(|(_, p)| p.state == ProcessState::Running));
    assert_eq!(h.sup.next_deadline(), None, "nothing is due: the loop may sleep");
    let before = h.sup.steps();
    h.advance(5000);
    assert_eq!(h.sup.steps(), before, "a wakeup with nothing due steps no process");
    // One exits: it alone is stepped (its exit, then its restart's ticks).
    h.exit("p500", 1);
    assert_eq!(h.state("p500"), ProcessState::Starting);
    let before = h.sup.steps();
    h.advance(1000);
    assert_eq!(h.state("p500"), ProcessState::Running);
    assert!(h.sup.steps() - before <= 2, "{} steps", h.sup.steps() - before);
}

#[test]
fn shutdown_complete_is_sent_once_whatever_ticks_follow() {
    let mut h = Harness::new(vec![group("a", 1, vec![pconf("a")])]);
    h.advance(1000);
    let (now, wall) = (h.now, h.wall());
    h.sup.request_stop(Mood::Restarting, now, wall);
    h.run();
    h.killed("a", "SIGTERM");
    h.tick();
    assert_eq!(h.done, Some(Mood::Restarting));
    h.done = None;
    h.tick();
    h.advance(1000);
    assert_eq!(h.done, None, "the loop ends on the first one; a second would end the next");
}

#[test]
fn a_stop_that_waits_says_so_every_two_seconds_as_supervisord() {
    let mut slow = pconf("slow");
    slow.stopwaitsecs = 5;
    let mut h = Harness::new(vec![group("slow", 1, vec![slow])]);
    h.advance(1000);
    h.advance(1000);
    let id = h.id("slow");
    let ticket = h.command(Command::Stop { target: Target::Process(id), wait: true }).expect_err("waits");
    let said = |h: &Harness| h.log.iter().filter(|l| *l == "INFO waiting for slow to stop").count();
    assert_eq!(said(&h), 1, "at once");
    assert_eq!(h.sup.next_deadline(), Some(h.now + Duration::from_secs(2)), "the loop wakes to say it again");
    h.advance(1999);
    assert_eq!(said(&h), 1);
    h.advance(1);
    assert_eq!(said(&h), 2);
    h.advance(2000);
    assert_eq!(said(&h), 3);
    h.advance(1000);
    assert!(h.has_log("WARN killing 'slow' (101) with SIGKILL"), "{:?}", h.log);
    h.killed("slow", "SIGKILL");
    assert_eq!(h.answer(ticket), Some(&Answer::Done));
    assert_eq!(h.sup.next_deadline(), None, "nothing to say once stopped");
}

#[test]
fn a_shutdown_says_what_it_waits_for_every_three_seconds() {
    let mut h = Harness::new(vec![group("fast", 1, vec![pconf("fast")]), group("slow", 1, vec![pconf("slow")])]);
    h.advance(1000);
    h.advance(1000);
    let answer = h.command(Command::Shutdown);
    assert_eq!(answer, Ok(Answer::Done));
    assert!(h.has_log("INFO waiting for fast, slow to die"), "{:?}", h.log);
    assert!(h.has_log("BLAT slow state: STOPPING"), "{:?}", h.log);
    h.killed("slow", "SIGTERM");
    h.advance(3000);
    assert!(h.has_log("INFO waiting for fast to die"), "{:?}", h.log);
}

fn job(name: &str) -> ProcessConfig {
    let mut p = pconf(name);
    p.autorestart = AutoRestart::Never;
    p.startsecs = 0;
    p
}

#[test]
fn exit_on_all_exited_ends_the_daemon_when_every_job_has_ended_with_the_worst_status() {
    let mut h = Harness::new(vec![group("a", 1, vec![job("a")]), group("b", 1, vec![job("b"), job("c")])]);
    h.sup.set_exit_on(crate::config::ExitOn::AllExited);
    h.tick();
    h.exit("a", 0);
    assert_eq!(h.critical, None, "b and c still run");
    h.exit("b", 3);
    assert_eq!(h.critical, None, "c still runs");
    h.exit("c", 0);
    assert_eq!(h.critical, Some(3), "the worst status");
    assert!(h.has_log("WARN every program has ended (exit_on=all-exited): exit status 3"), "{:?}", h.log);
    assert_eq!(h.sup.mood(), Mood::Shutdown);
}

#[test]
fn exit_on_waits_for_restarts_to_come_and_any_exited_takes_the_first_end() {
    let mut again = job("again");
    again.autorestart = AutoRestart::Always;
    let mut h = Harness::new(vec![group("g", 1, vec![job("once"), again])]);
    h.sup.set_exit_on(crate::config::ExitOn::AllExited);
    h.tick();
    h.exit("once", 0);
    h.exit("again", 0);
    assert_eq!(h.critical, None, "`again` is restarted: not ended");
    assert_eq!(h.state("again"), ProcessState::Running);

    let mut h = Harness::new(vec![group("g", 1, vec![job("first"), job("second")])]);
    h.sup.set_exit_on(crate::config::ExitOn::AnyExited);
    h.tick();
    h.killed("second", "SIGKILL");
    assert_eq!(h.critical, Some(137));
    assert!(h.has_log("WARN second has ended (exit_on=any-exited): stopping everything, exit status 137"));
}

#[test]
fn exit_on_never_is_supervisors_behaviour() {
    let mut h = Harness::new(vec![group("a", 1, vec![job("a")])]);
    h.tick();
    h.exit("a", 1);
    assert_eq!(h.critical, None);
    assert_eq!(h.sup.mood(), Mood::Running);
}

#[test]
fn starts_and_stops_by_hand_are_reported_for_the_state_file_and_a_start_by_hand_survives() {
    let mut h = Harness::new(vec![group("a", 1, vec![manual("a")]), group("b", 1, vec![pconf("b")])]);
    h.advance(1000);
    let (a, b) = (h.id("a"), h.id("b"));
    let _ = h.command(Command::Start { target: Target::Process(a), wait: false });
    let _ = h.command(Command::Stop { target: Target::Process(b), wait: false });
    assert_eq!(h.by_hand, vec![("a".to_string(), true), ("b".to_string(), false)]);
    // A daemon started again with that state: `a` (autostart=false) starts, `b` does not.
    let mut h = Harness::new(vec![group("a", 1, vec![manual("a")]), group("b", 1, vec![pconf("b")])]);
    let (a, b) = (h.id("a"), h.id("b"));
    let now = h.now;
    h.sup.mark_started_by_hand(a);
    h.sup.mark_stopped_by_hand(b, now);
    h.tick();
    assert_eq!(h.spawns, vec!["a"]);
}

#[test]
fn ready_notify_waits_for_ready_and_the_watchdog_restarts_a_silent_program() {
    let mut p = pconf("svc");
    p.ready_notify = true;
    p.watchdog_sec = 3;
    let mut h = Harness::new(vec![group("svc", 1, vec![p])]);
    h.tick();
    h.advance(5000);
    assert_eq!(h.state("svc"), ProcessState::Starting, "startsecs does not count: READY=1 does");
    h.feed("svc", Input::Ready);
    assert_eq!(h.state("svc"), ProcessState::Running);
    assert!(h.has_log("INFO success: svc entered RUNNING state, process is ready (READY=1)"), "{:?}", h.log);
    assert_eq!(h.sup.next_deadline(), Some(h.now + Duration::from_secs(3)), "the watchdog's deadline");
    h.advance(2000);
    h.feed("svc", Input::Watchdog);
    h.advance(2000);
    assert_eq!(h.state("svc"), ProcessState::Running, "a ping moved the deadline on");
    h.advance(1000);
    assert_eq!(h.state("svc"), ProcessState::Stopping, "3 s without a ping");
    assert!(
        h.has_log("WARN svc is unhealthy (no WATCHDOG=1 for 3 seconds): restarting it (watchdog_sec)"),
        "{:?}",
        h.log
    );
    h.killed("svc", "SIGTERM");
    h.tick();
    assert_eq!(h.state("svc"), ProcessState::Starting, "started again");
    assert_eq!(h.proc("svc").health_failure.as_deref(), Some("no WATCHDOG=1 for 3 seconds"));
}

fn scheduled(name: &str, expr: &str, queue: bool) -> ProcessConfig {
    let mut p = job(name);
    p.startsecs = 1;
    p.schedule = Some(crate::config::Schedule {
        cron: crate::config::cron::Cron::parse(expr).expect("cron"),
        queue,
        utc: true,
        run_on_start: false,
    });
    p
}

#[test]
fn a_scheduled_program_runs_at_its_times_and_wakes_the_loop_only_then() {
    // Every 2 seconds (Quartz's seconds field); the harness's wall clock starts on a whole second.
    let mut h = Harness::new(vec![group("job", 1, vec![scheduled("job", "*/2 * * * * *", false)])]);
    h.tick();
    assert!(h.spawns.is_empty(), "not at start without run_on_start");
    let due = h.sup.next_deadline().expect("the next run is the loop's deadline");
    assert!(due > h.now && due <= h.now + Duration::from_secs(2), "{:?}", due - h.now);
    let steps = h.sup.steps();
    h.now = due - Duration::from_millis(1);
    h.tick();
    assert_eq!(h.sup.steps(), steps, "nothing before it is due");
    h.now = due;
    h.tick();
    assert_eq!(h.spawns, vec!["job"]);
    assert!(h.has_log("INFO job is due (schedule)"), "{:?}", h.log);
    h.advance(1000);
    h.exit("job", 0);
    assert_eq!(h.state("job"), ProcessState::Exited);
    h.advance(999);
    assert_eq!(h.spawns.len(), 1);
    h.advance(1);
    assert_eq!(h.spawns, vec!["job", "job"], "the next run, 2 s after the first");
}

#[test]
fn a_run_due_while_the_last_goes_on_is_skipped_or_queued() {
    for (queue, runs_after) in [(false, 1), (true, 2)] {
        let mut h = Harness::new(vec![group("job", 1, vec![scheduled("job", "*/2 * * * * *", queue)])]);
        h.tick();
        let due = h.sup.next_deadline().expect("due");
        h.now = due;
        h.tick();
        assert_eq!(h.spawns.len(), 1);
        h.advance(2000);
        assert_eq!(h.spawns.len(), 1, "still running at the next time");
        let said =
            if queue { "it runs again after it (schedule_overlap=queue)" } else { "skipped (schedule_overlap=skip)" };
        assert!(h.has_log(&format!("INFO job is due while its last run goes on: {said}")), "{:?}", h.log);
        h.exit("job", 0);
        h.tick();
        assert_eq!(h.spawns.len(), runs_after, "queue={queue}");
    }
}

#[test]
fn a_thousand_schedules_cost_a_wakeup_only_when_one_is_due() {
    let procs = (0..1000).map(|i| scheduled(&format!("j{i}"), "0 3 * * *", false)).collect();
    let mut h = Harness::new(vec![group("g", 1, procs)]);
    h.tick();
    let due = h.sup.next_deadline().expect("the first 3:00");
    assert!(due > h.now + Duration::from_secs(60), "hours away");
    let steps = h.sup.steps();
    for _ in 0..10 {
        h.advance(60_000);
    }
    assert_eq!(h.sup.steps(), steps, "no process is stepped before 3:00");
    h.now = due;
    h.tick();
    assert_eq!(h.spawns.len(), 1000);
}
