//! The supervisor core: the process table, groups, the daemon's mood and the ordered shutdown.
//! Pure: inputs, commands and the current time in, `Action`s out (see design.md). The event
//! loop performs the actions and feeds their outcomes back; the control plane's requests come
//! in as commands (`command.rs`), whose answers leave as actions too.

pub mod command;
pub mod namespec;
pub mod process;
mod schedule;
pub mod state;

use std::collections::{HashMap, VecDeque};
use std::time::{Instant, SystemTime};

use crate::config::{GroupConfig, LogLevel};

/// The window of `restart_limit=` (restarts per second).
const RESTART_WINDOW: std::time::Duration = std::time::Duration::from_secs(1);
pub use command::{Answer, BadCommand, Command, Each, Issued, Refusal, Target, Ticket, UpdateReport, World};
pub use process::{Carried, Ctx, Effect, ExitInfo, Input, Process};
pub use state::{Mood, ProcessState};

/// Index of a process slot. Slots of removed groups are left empty and never reused while the
/// daemon runs, so a stale id can never reach another process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProcId(pub usize);

fn has_checks(pc: &crate::config::ProcessConfig) -> bool {
    pc.checks.ready.is_some() || pc.checks.health.is_some()
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Spawn(ProcId),
    Kill {
        id: ProcId,
        pid: u32,
        signal: i32,
        group: bool,
    },
    Log(LogLevel, String),
    StateChanged {
        id: ProcId,
        from: ProcessState,
        to: ProcessState,
        expected: Option<bool>,
        /// The pid at the change (for an exit, the pid that exited); 0 when there is none.
        pid: u32,
        /// The backoff counter at the change.
        tries: u32,
    },
    /// A group became active: its logs, sockets and listener pool are to be opened.
    GroupAdded(String),
    /// A group was removed: what was open for these processes is to be closed.
    GroupRemoved {
        name: String,
        members: Vec<ProcId>,
    },
    /// An update replaced some processes of a group: `dropped` are gone, `fresh` are new (their
    /// logs are to be opened before they spawn, which follows this action).
    GroupReplaced {
        name: String,
        fresh: Vec<ProcId>,
        dropped: Vec<ProcId>,
    },
    /// The answer of a command that waited (see `command.rs`).
    Answer(Ticket, Answer),
    /// A process was started (`true`) or stopped by hand, by a command: what `state_file=`
    /// keeps across restarts of the daemon.
    ByHand {
        id: ProcId,
        started: bool,
    },
    /// A `critical=true` program is gone for good, or programs ended as `exit_on=` waits for:
    /// the daemon is to stop everything and exit with this status (the loop first lets the
    /// children being started get their pids, so that the stop reaches them, then asks for the
    /// shutdown).
    ExitWith {
        status: i32,
    },
    /// The daemon is now running (each start or reload) / begins to stop.
    SupervisorRunning,
    SupervisorStopping,
    /// Every process is stopped after a shutdown or reload request.
    ShutdownComplete(Mood),
}

#[derive(Clone, Debug)]
pub struct Group {
    pub config: GroupConfig,
    pub members: Vec<ProcId>,
}

#[derive(Debug, Default)]
pub struct Supervisor {
    slots: Vec<Option<Process>>,
    /// Active groups in insertion order (config order at boot; added groups go last).
    groups: Vec<Group>,
    /// Where each group is in `groups`, by name: events look their group up by name, and a
    /// scan made starting 1000 one-program groups quadratic (7% of the daemon's CPU).
    group_index: HashMap<String, usize>,
    mood: Option<Mood>,
    /// Groups still to be stopped during shutdown, highest priority last.
    stop_groups: Option<Vec<String>>,
    /// Some process has `depends_on=` (otherwise dependency checks cost nothing).
    any_deps: bool,
    /// Some process has a readiness or health check (`Probes` need not look otherwise).
    any_checks: bool,
    /// `restart_limit=`: automatic restarts allowed per second across the daemon (0: any).
    restart_limit: u32,
    /// When the automatic restarts of the last second began, oldest first.
    recent_restarts: VecDeque<Instant>,
    actions: VecDeque<Action>,
    /// Commands whose answers wait for the state machine.
    waits: Vec<(Ticket, command::Wait)>,
    /// A critical program's end was reported (once: the daemon is stopping for it).
    critical_reported: bool,
    /// Which processes are due for a `Tick`, and when.
    schedule: schedule::Schedule,
    /// How many steps the processes were given (inputs and ticks), for tests and metrics.
    steps: u64,
    /// ShutdownComplete was sent (once: the loop ends on it).
    shutdown_complete: bool,
    /// When to say again which processes a shutdown or reload waits for (none: at once).
    shutdown_report: Option<Instant>,
    /// `exit_on=`: whether programs ending for good end the daemon.
    exit_on: crate::config::ExitOn,
}

/// Supervisor's `shutdown_report`: `waiting for a, b to die` every 3 seconds.
const SHUTDOWN_REPORT_EVERY: std::time::Duration = std::time::Duration::from_secs(3);

/// See `Supervisor::match_group`.
struct Matching {
    /// (index in the new config, the process of that name now, whether it is the same)
    pairs: Vec<(usize, Option<ProcId>, bool)>,
    gone: Vec<ProcId>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RemoveError {
    NoSuchGroup,
    StillRunning,
}

impl Supervisor {
    pub fn new() -> Supervisor {
        Supervisor { mood: Some(Mood::Running), ..Supervisor::default() }
    }

    pub fn mood(&self) -> Mood {
        self.mood.unwrap_or(Mood::Running)
    }

    fn ctx(&self, id: ProcId, now: Instant, wall: SystemTime) -> Ctx {
        let (deps_ready, dependents_stopped) = if self.any_deps {
            (
                self.deps_ready(id),
                self.dependents(id).iter().all(|d| self.process(*d).is_none_or(|p| p.state.is_stopped())),
            )
        } else {
            (true, true)
        };
        let may_restart = self.restart_limit == 0
            || self.recent_restarts.iter().filter(|t| now < **t + RESTART_WINDOW).count() < self.restart_limit as usize;
        Ctx { now, wall, may_start: self.mood() == Mood::Running, deps_ready, dependents_stopped, may_restart }
    }

    /// Sets `exit_on=` (the daemon exits when programs have ended for good).
    pub fn set_exit_on(&mut self, exit_on: crate::config::ExitOn) {
        self.exit_on = exit_on;
    }

    /// Sets `restart_limit=` (automatic restarts per second across the daemon; 0: no limit).
    pub fn set_restart_limit(&mut self, per_second: u32) {
        self.restart_limit = per_second;
        self.recent_restarts.clear();
    }

    /// When the restart limit lets the next held restart go, if one is held.
    fn restart_limit_deadline(&self) -> Option<Instant> {
        if self.restart_limit == 0 || !self.schedule.any_held() {
            return None;
        }
        // At most `restart_limit` restarts are kept: a slot frees when the oldest leaves the window.
        self.recent_restarts.front().map(|t| *t + RESTART_WINDOW)
    }

    /// The processes `id` depends on (`depends_on=`), other than itself.
    pub fn dependencies(&self, id: ProcId) -> Vec<ProcId> {
        let Some(p) = self.process(id) else { return Vec::new() };
        if p.config.depends_on.is_empty() {
            return Vec::new();
        }
        self.processes()
            .filter(|(other, q)| {
                *other != id
                    && p.config
                        .depends_on
                        .iter()
                        .any(|spec| crate::config::depends::matches(spec, &q.group, q.name(), &q.config.program))
            })
            .map(|(other, _)| other)
            .collect()
    }

    /// The processes that depend on `id`.
    pub fn dependents(&self, id: ProcId) -> Vec<ProcId> {
        let Some(p) = self.process(id) else { return Vec::new() };
        self.processes()
            .filter(|(other, q)| {
                *other != id
                    && q.config
                        .depends_on
                        .iter()
                        .any(|spec| crate::config::depends::matches(spec, &p.group, p.name(), &p.config.program))
            })
            .map(|(other, _)| other)
            .collect()
    }

    /// Everything `id` depends on, directly or not, each after its own dependencies: the
    /// order in which they start before it.
    pub fn dependencies_first(&self, id: ProcId) -> Vec<ProcId> {
        self.closure(id, Supervisor::dependencies)
    }

    /// Everything that depends on `id`, directly or not, each after what depends on it: the
    /// order in which they stop before it.
    pub fn dependents_first(&self, id: ProcId) -> Vec<ProcId> {
        self.closure(id, Supervisor::dependents)
    }

    /// Depth first, each node after its `next` ones, each once; `id` itself is left out.
    fn closure(&self, id: ProcId, next: fn(&Supervisor, ProcId) -> Vec<ProcId>) -> Vec<ProcId> {
        if !self.any_deps {
            return Vec::new();
        }
        fn visit(
            sup: &Supervisor,
            id: ProcId,
            next: fn(&Supervisor, ProcId) -> Vec<ProcId>,
            seen: &mut Vec<ProcId>,
            out: &mut Vec<ProcId>,
        ) {
            for n in next(sup, id) {
                if !seen.contains(&n) {
                    seen.push(n);
                    visit(sup, n, next, seen, out);
                    out.push(n);
                }
            }
        }
        let (mut seen, mut out) = (vec![id], Vec::new());
        visit(self, id, next, &mut seen, &mut out);
        out
    }

    /// Every dependency of `id` is RUNNING.
    pub fn deps_ready(&self, id: ProcId) -> bool {
        self.dependencies(id).iter().all(|d| self.process(*d).is_some_and(|p| p.state == ProcessState::Running))
    }

    /// `any_deps` and `any_checks`, after a process was added or removed.
    fn update_any_flags(&mut self) {
        self.any_deps = self.slots.iter().flatten().any(|p| !p.config.depends_on.is_empty());
        self.any_checks = self.slots.iter().flatten().any(|p| has_checks(&p.config));
    }

    pub fn process(&self, id: ProcId) -> Option<&Process> {
        self.slots.get(id.0).and_then(Option::as_ref)
    }

    /// Every live process with its id, in slot order.
    pub fn processes(&self) -> impl Iterator<Item = (ProcId, &Process)> {
        self.slots.iter().enumerate().filter_map(|(i, p)| p.as_ref().map(|p| (ProcId(i), p)))
    }

    pub fn groups(&self) -> &[Group] {
        &self.groups
    }

    pub fn group(&self, name: &str) -> Option<&Group> {
        self.group_index.get(name).map(|i| &self.groups[*i])
    }

    /// The process `name` of group `group`.
    pub fn find(&self, group: &str, name: &str) -> Option<ProcId> {
        let g = self.group(group)?;
        g.members.iter().copied().find(|id| self.process(*id).is_some_and(|p| p.name() == name))
    }

    /// Groups in start order: ascending priority, ties in insertion order (a stable sort).
    pub fn groups_by_priority(&self) -> Vec<&Group> {
        let mut groups: Vec<&Group> = self.groups.iter().collect();
        groups.sort_by_key(|g| g.config.priority);
        groups
    }

    /// The next action for the loop to perform. When none is left, work that waited for the
    /// actions before it to be performed goes ahead (an update whose stops are done).
    pub fn take_actions(&mut self) -> Option<Action> {
        if self.actions.is_empty() {
            self.apply_ready_updates();
        }
        self.actions.pop_front()
    }

    /// Adds a group; its processes autostart on the next `tick`.
    pub fn add_group(&mut self, config: GroupConfig) -> bool {
        if self.group(&config.name).is_some() {
            return false;
        }
        let mut members = Vec::with_capacity(config.processes.len());
        for pc in &config.processes {
            members.push(ProcId(self.slots.len()));
            self.slots.push(Some(Process::new(pc.clone(), config.name.clone())));
        }
        self.actions.push_back(Action::GroupAdded(config.name.clone()));
        self.any_deps |= config.processes.iter().any(|pc| !pc.depends_on.is_empty());
        self.any_checks |= config.processes.iter().any(|pc| has_checks(pc));
        self.group_index.insert(config.name.clone(), self.groups.len());
        for id in &members {
            // Looked at on the next tick (autostart).
            self.schedule.mark(*id);
        }
        self.groups.push(Group { config, members });
        self.reorder();
        true
    }

    /// The start order changed: the schedule follows it.
    fn reorder(&mut self) {
        let order: Vec<ProcId> = self.groups_by_priority().iter().flat_map(|g| g.members.iter().copied()).collect();
        self.schedule.set_order(order.into_iter());
    }

    /// Removes a group whose processes are all stopped.
    pub fn remove_group(&mut self, name: &str) -> Result<GroupConfig, RemoveError> {
        let idx = *self.group_index.get(name).ok_or(RemoveError::NoSuchGroup)?;
        let running =
            self.groups[idx].members.iter().any(|id| self.process(*id).is_some_and(|p| !p.state.is_stopped()));
        if running {
            return Err(RemoveError::StillRunning);
        }
        let group = self.groups.remove(idx);
        self.group_index = self.groups.iter().enumerate().map(|(i, g)| (g.config.name.clone(), i)).collect();
        for id in &group.members {
            self.slots[id.0] = None;
            self.schedule.forget(*id);
        }
        self.actions.push_back(Action::GroupRemoved { name: name.to_string(), members: group.members });
        self.update_any_flags();
        self.reorder();
        Ok(group.config)
    }

    /// How a group's processes map onto a new config of it: for each process of `config` (by
    /// index), the process of the same name in `members` and whether its settings are the
    /// same; and the members that `config` no longer has. The one diff behind `update`.
    fn match_group(&self, members: &[ProcId], config: &GroupConfig) -> Matching {
        let mut pairs = Vec::with_capacity(config.processes.len());
        for (i, pc) in config.processes.iter().enumerate() {
            let old = members.iter().copied().find(|id| self.process(*id).is_some_and(|p| p.config.name == pc.name));
            let same = old.and_then(|id| self.process(id)).is_some_and(|p| crate::config::same_process(&p.config, pc));
            pairs.push((i, old, same));
        }
        let gone = members.iter().copied().filter(|id| !pairs.iter().any(|(_, old, _)| *old == Some(*id))).collect();
        Matching { pairs, gone }
    }

    /// Replaces a group's config in place (minisv's `update`): processes whose settings did not
    /// change keep running untouched; the others must already be stopped and are replaced by
    /// fresh ones (which keep `laststart`, so a process stopped by hand is not autostarted).
    /// Returns (kept, fresh, dropped) ids.
    pub fn replace_group(&mut self, config: GroupConfig) -> (Vec<ProcId>, Vec<ProcId>, Vec<ProcId>) {
        let Some(&idx) = self.group_index.get(&config.name) else {
            return (Vec::new(), Vec::new(), Vec::new());
        };
        let old_members = self.groups[idx].members.clone();
        let matching = self.match_group(&old_members, &config);
        let (mut kept, mut fresh, mut members) = (Vec::new(), Vec::new(), Vec::new());
        for (i, old, same) in matching.pairs {
            let pc = &config.processes[i];
            match old {
                Some(id) if same => {
                    if let Some(p) = self.slots[id.0].as_mut() {
                        p.config = pc.clone();
                    }
                    kept.push(id);
                    members.push(id);
                }
                _ => {
                    let id = ProcId(self.slots.len());
                    let mut p = Process::new(pc.clone(), config.name.clone());
                    if let Some(prev) = old.and_then(|o| self.process(o)) {
                        p.laststart = prev.laststart;
                    }
                    self.slots.push(Some(p));
                    fresh.push(id);
                    members.push(id);
                }
            }
        }
        let dropped: Vec<ProcId> = old_members.into_iter().filter(|id| !kept.contains(id)).collect();
        for id in &dropped {
            self.slots[id.0] = None;
            self.schedule.forget(*id);
        }
        for id in &fresh {
            self.schedule.mark(*id);
        }
        self.actions.push_back(Action::GroupReplaced {
            name: config.name.clone(),
            fresh: fresh.clone(),
            dropped: dropped.clone(),
        });
        self.groups[idx] = Group { config, members };
        self.update_any_flags();
        self.reorder();
        (kept, fresh, dropped)
    }

    /// Marks a process as stopped by hand (kept through a reload): no autostart.
    pub fn mark_stopped_by_hand(&mut self, id: ProcId, now: Instant) {
        if let Some(p) = self.slots.get_mut(id.0).and_then(Option::as_mut) {
            if p.state == ProcessState::Stopped && p.laststart.is_none() {
                p.administrative_stop = true;
                // As if started and stopped: autostart applies only to never-started processes.
                p.laststart = Some(now);
            }
        }
    }

    /// An upgrade in place: the state of one process, as the old daemon left it. It is looked
    /// at on the next tick, its deadlines filed again.
    pub fn resume(&mut self, id: ProcId, carried: Carried) {
        let Some(p) = self.slots.get_mut(id.0).and_then(Option::as_mut) else { return };
        p.resume(carried);
        let (deadline, held) = (p.deadline(), p.restart_held);
        self.schedule.file(id, deadline, held);
        self.schedule.mark(id);
    }

    /// An upgrade in place: the daemon-wide state besides the processes' (when the automatic
    /// restarts of the last second began, and whether a critical program's end was reported).
    pub fn carry_daemon(&self) -> (Vec<Instant>, bool) {
        (self.recent_restarts.iter().copied().collect(), self.critical_reported)
    }

    pub fn resume_daemon(&mut self, recent_restarts: Vec<Instant>, critical_reported: bool) {
        self.recent_restarts = recent_restarts.into();
        self.critical_reported = critical_reported;
    }

    /// The STATUS= a process sent (notify protocol): shown in its status while it runs.
    pub fn set_status_text(&mut self, id: ProcId, text: String) {
        if let Some(p) = self.slots.get_mut(id.0).and_then(Option::as_mut) {
            p.status_text = (!text.is_empty()).then_some(text);
        }
    }

    /// Marks a process as started by hand (kept by `state_file=` from a run before): it starts
    /// even with `autostart=false`, once what it depends on runs.
    pub fn mark_started_by_hand(&mut self, id: ProcId) {
        if let Some(p) = self.slots.get_mut(id.0).and_then(Option::as_mut) {
            if p.state == ProcessState::Stopped {
                p.deferred = Some(process::Deferred::Start);
                self.schedule.mark(id);
            }
        }
    }

    /// Feeds one input to one process and queues what follows (answers of commands it
    /// completes included).
    pub fn feed(&mut self, id: ProcId, input: Input, now: Instant, wall: SystemTime) {
        self.step(id, input, now, wall);
        self.settle(now, wall);
    }

    /// The daemon is running (at start and after each reload): SUPERVISOR_STATE_CHANGE_RUNNING,
    /// then the first starts (Supervisor's order).
    pub fn begin(&mut self, now: Instant, wall: SystemTime) {
        self.actions.push_back(Action::SupervisorRunning);
        self.tick(now, wall);
    }

    /// One input to one process, with what follows queued; no waits are looked at.
    fn step(&mut self, id: ProcId, input: Input, now: Instant, wall: SystemTime) {
        let ctx = self.ctx(id, now, wall);
        let Some(proc) = self.slots.get_mut(id.0).and_then(Option::as_mut) else {
            return;
        };
        let mut effects = Vec::new();
        let ticked = input == Input::Tick;
        proc.handle(input, &ctx, &mut effects);
        self.steps += 1;
        let pid = proc.pid;
        let (deadline, held) = (proc.deadline(), proc.restart_held);
        let changed = effects.iter().any(|e| matches!(e, Effect::Changed { .. }));
        // A Tick that leaves a deadline already passed would decide the same again: the
        // process then waits for an input or a change around it, which marks it.
        let deadline = deadline.filter(|at| !(ticked && *at <= now));
        self.schedule.file(id, deadline, held);
        if !ticked || changed {
            self.schedule.mark(id);
        }
        if self.restart_limit > 0 && effects.contains(&Effect::AutoRestarted) {
            self.recent_restarts.push_back(now);
            while self.recent_restarts.front().is_some_and(|t| now >= *t + RESTART_WINDOW)
                || self.recent_restarts.len() > self.restart_limit as usize
            {
                self.recent_restarts.pop_front();
            }
        }
        if changed && self.any_deps {
            // What depends on it, and what it depends on, may go now.
            for other in self.dependents(id).into_iter().chain(self.dependencies(id)) {
                self.schedule.mark(other);
            }
        }
        let (mut gone_to, mut stopped) = (None, false);
        for effect in effects {
            self.actions.push_back(match effect {
                Effect::AutoRestarted => continue,
                Effect::Spawn => Action::Spawn(id),
                Effect::Kill { signal, group } => Action::Kill { id, pid, signal, group },
                Effect::Log(level, msg) => Action::Log(level, msg),
                Effect::Changed { from, to, expected, pid, tries } => {
                    if matches!(to, ProcessState::Fatal | ProcessState::Exited) {
                        gone_to = Some(to);
                    }
                    stopped |= to.is_stopped();
                    Action::StateChanged { id, from, to, expected, pid, tries }
                }
            });
        }
        if let Some(to) = gone_to {
            self.check_critical(id, to);
        }
        if stopped {
            self.check_exit_on(id);
        }
    }

    /// Whether a process has ended for good: EXITED or FATAL with no restart to come.
    fn ended(p: &Process) -> bool {
        matches!(p.state, ProcessState::Exited | ProcessState::Fatal) && !p.restart_pending() && !p.restart_held
    }

    /// The status a process that ended gives the daemon: its exit code (128 + N for a signal
    /// death), 1 for FATAL without one.
    fn end_status(p: &Process) -> i32 {
        match (p.state, p.last_status) {
            (ProcessState::Exited, Some(s)) => s,
            (_, Some(s)) if s != 0 => s,
            _ => 1,
        }
    }

    /// `exit_on=any-exited`: a program that ended for good ends the daemon with its status.
    /// `exit_on=all-exited`: once every program is down and none will start again (ended,
    /// stopped by hand or never started), the worst status of those that ended.
    fn check_exit_on(&mut self, id: ProcId) {
        use crate::config::ExitOn;
        if self.exit_on == ExitOn::Never || self.mood() != Mood::Running || self.critical_reported {
            return;
        }
        let Some(p) = self.process(id) else { return };
        let (status, msg) = match self.exit_on {
            ExitOn::Never => return,
            ExitOn::AnyExited if !Supervisor::ended(p) => return,
            ExitOn::AnyExited => {
                let status = Supervisor::end_status(p);
                (
                    status,
                    format!("{} has ended (exit_on=any-exited): stopping everything, exit status {status}", p.name()),
                )
            }
            ExitOn::AllExited => {
                let waiting =
                    |q: &Process| !q.state.is_stopped() || q.restart_pending() || q.restart_held || q.start_requested();
                if self.processes().any(|(_, q)| waiting(q)) {
                    return;
                }
                let status = self
                    .processes()
                    .filter(|(_, q)| matches!(q.state, ProcessState::Exited | ProcessState::Fatal))
                    .map(|(_, q)| Supervisor::end_status(q))
                    .max()
                    .unwrap_or(0);
                (status, format!("every program has ended (exit_on=all-exited): exit status {status}"))
            }
        };
        self.critical_reported = true;
        let level = if status == 0 { LogLevel::Info } else { LogLevel::Warn };
        self.actions.push_back(Action::Log(level, msg));
        self.actions.push_back(Action::ExitWith { status });
    }

    /// `critical=true`: a program that goes FATAL, or exits and will not be restarted, takes the
    /// daemon down with its status (128 + N for a signal death; 1 when it never ran). Looked at
    /// after the whole step: a process that is restarted is STARTING by then.
    fn check_critical(&mut self, id: ProcId, to: ProcessState) {
        if self.mood() != Mood::Running || self.critical_reported {
            return;
        }
        let Some(p) = self.process(id) else { return };
        if !p.config.critical || p.state != to {
            return;
        }
        let status = match (to, p.last_status) {
            (ProcessState::Exited, Some(s)) => s,
            (_, Some(s)) if s != 0 => s,
            _ => 1,
        };
        let msg = format!(
            "critical program {} is {} and will not be restarted: stopping everything, exit status {}",
            p.name(),
            to.name(),
            status
        );
        self.critical_reported = true;
        self.actions.push_back(Action::Log(LogLevel::Critical, msg));
        self.actions.push_back(Action::ExitWith { status });
    }

    /// Supervisor's per-iteration `transition()` of every process (in start order), then the
    /// shutdown logic when the mood is not RUNNING.
    pub fn tick(&mut self, now: Instant, wall: SystemTime) {
        self.tick_all(now, wall);
        self.settle(now, wall);
    }

    fn tick_all(&mut self, now: Instant, wall: SystemTime) {
        if self.restart_limit_deadline().is_some_and(|at| at <= now) {
            // A restart held by restart_limit may go now.
            self.schedule.mark_held();
        }
        // The processes that are due or marked, in start order; a change in one pass (a
        // dependency RUNNING, a dependent stopped) marks those it may let go, for the next pass
        // (bounded: a chain of dependencies moves one step per pass).
        for _ in 0..64 {
            let due = self.schedule.take(now);
            if due.is_empty() {
                break;
            }
            for id in due {
                self.step(id, Input::Tick, now, wall);
            }
        }
        if self.mood() != Mood::Running {
            self.shutdown_step(now, wall);
        }
    }

    /// The earliest deadline of any process, or None: the loop then sleeps until an event.
    pub fn next_deadline(&self) -> Option<Instant> {
        let shutdown_report = self.shutdown_report.filter(|_| self.stop_groups.is_some() && !self.shutdown_complete);
        [self.schedule.next(), self.restart_limit_deadline(), self.next_stop_report(), shutdown_report]
            .into_iter()
            .flatten()
            .min()
    }

    /// Starts an ordered shutdown (`Mood::Shutdown`) or reload (`Mood::Restarting`).
    /// A reload requested while shutting down is ignored; a shutdown during a reload wins.
    pub fn request_stop(&mut self, mood: Mood, now: Instant, wall: SystemTime) -> bool {
        match (self.mood(), mood) {
            (_, Mood::Running) => return false,
            (Mood::Shutdown, _) => return false,
            (Mood::Restarting, Mood::Restarting) => return false,
            (Mood::Running | Mood::Restarting, Mood::Shutdown | Mood::Restarting) => {}
        }
        self.mood = Some(mood);
        if self.stop_groups.is_none() {
            self.actions.push_back(Action::SupervisorStopping);
            // Snapshot in start order; stopped from the end (highest priority first).
            self.stop_groups = Some(self.groups_by_priority().iter().map(|g| g.config.name.clone()).collect());
        }
        self.shutdown_step(now, wall);
        self.settle(now, wall);
        true
    }

    /// Processes that are not in a stopped state.
    pub fn unstopped(&self) -> Vec<ProcId> {
        self.processes().filter(|(_, p)| !p.state.is_stopped()).map(|(id, _)| id).collect()
    }

    fn group_unstopped(&self, name: &str) -> bool {
        self.group(name)
            .is_some_and(|g| g.members.iter().any(|id| self.process(*id).is_some_and(|p| !p.state.is_stopped())))
    }

    /// Stops the last group still running; moves on at once when a group is already down
    /// (fix of Q2: no loop turn per idle group).
    fn shutdown_step(&mut self, now: Instant, wall: SystemTime) {
        while let Some(last) = self.stop_groups.as_ref().and_then(|g| g.last().cloned()) {
            self.stop_group_for_shutdown(&last, now, wall);
            if self.group_unstopped(&last) {
                break;
            }
            if let Some(groups) = self.stop_groups.as_mut() {
                groups.pop();
            }
        }
        self.report_shutdown(now);
        if self.stop_groups.as_ref().is_some_and(Vec::is_empty) && self.unstopped().is_empty() {
            self.stop_groups = Some(Vec::new());
            let mood = self.mood();
            if !self.shutdown_complete {
                self.shutdown_complete = true;
                self.actions.push_back(Action::ShutdownComplete(mood));
            }
        }
    }

    /// `waiting for a, b to die` while a shutdown or reload waits for processes (at once, then
    /// every 3 seconds), with each one's state at blather level; names in group order.
    fn report_shutdown(&mut self, now: Instant) {
        if self.shutdown_report.is_some_and(|at| now < at) {
            return;
        }
        let unstopped: Vec<(String, ProcessState)> = self
            .groups
            .iter()
            .flat_map(|g| g.members.iter())
            .filter_map(|id| self.process(*id))
            .filter(|p| !p.state.is_stopped())
            .map(|p| (p.name().to_string(), p.state))
            .collect();
        if unstopped.is_empty() {
            return;
        }
        self.shutdown_report = Some(now + SHUTDOWN_REPORT_EVERY);
        let names: Vec<&str> = unstopped.iter().map(|(n, _)| n.as_str()).collect();
        self.actions.push_back(Action::Log(LogLevel::Info, format!("waiting for {} to die", names.join(", "))));
        for (name, state) in &unstopped {
            self.actions.push_back(Action::Log(LogLevel::Blather, format!("{name} state: {}", state.name())));
        }
    }

    /// `stop_all()` of a group: descending process priority; BACKOFF gives up.
    fn stop_group_for_shutdown(&mut self, name: &str, now: Instant, wall: SystemTime) {
        let Some(group) = self.group(name) else {
            return;
        };
        let mut members = group.members.clone();
        members.sort_by_key(|id| self.process(*id).map(|p| p.config.priority).unwrap_or(0));
        members.reverse();
        for id in members {
            // Whatever depends on it stops too, first, wherever it is in the stop order.
            for d in self.dependents_first(id) {
                self.step(d, Input::GiveUp, now, wall);
            }
            self.step(id, Input::GiveUp, now, wall);
        }
    }

    /// Some process was marked to be looked at on the next tick (an input, a change around it).
    pub fn has_marked(&self) -> bool {
        self.schedule.any_dirty()
    }

    /// How many steps processes were given so far (inputs and ticks).
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// Some process has `depends_on=`.
    pub fn has_deps(&self) -> bool {
        self.any_deps
    }

    /// Some process has a readiness or health check.
    pub fn has_checks(&self) -> bool {
        self.any_checks
    }

    /// Processes of a group, ordered for a group start (priority, stable).
    pub fn members_by_priority(&self, group: &str) -> Vec<ProcId> {
        let Some(g) = self.group(group) else {
            return Vec::new();
        };
        let mut members = g.members.clone();
        members.sort_by_key(|id| self.process(*id).map(|p| p.config.priority).unwrap_or(0));
        members
    }

    /// All processes ordered by group priority, then process priority (start/stop all).
    pub fn all_by_priority(&self) -> Vec<ProcId> {
        let mut all: Vec<(i64, i64, usize, ProcId)> = Vec::new();
        for (gi, g) in self.groups_by_priority().iter().enumerate() {
            for id in &g.members {
                if let Some(p) = self.process(*id) {
                    all.push((g.config.priority, p.config.priority, gi, *id));
                }
            }
        }
        all.sort_by_key(|(gp, pp, gi, _)| (*gp, *pp, *gi));
        all.into_iter().map(|(_, _, _, id)| id).collect()
    }
}

#[cfg(test)]
mod tests;
