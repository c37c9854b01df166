//! The core's command boundary: what the control plane asks of the supervisor (start, stop,
//! signal, add/remove/update a group, shut down), decided here against the process table.
//!
//! `Supervisor::command(ticket, command, now, wall, world)` answers at once, or keeps the
//! answer here until the state machine gets there (a start that waits for RUNNING, a group
//! stop, an update that waits for its changed processes to stop): it then comes out as
//! `Action::Answer(ticket, answer)` with the other actions, which the loop performs in order.
//! The caller decodes requests into commands and encodes answers; it never steps a process.
//!
//! The only I/O a command needs (is the program there? send a signal) goes through [`World`],
//! which the loop implements and the tests fake.

use std::time::{Instant, SystemTime};

use super::{Action, Input, Mood, ProcId, ProcessState, RemoveError, Supervisor};
use crate::config::{GroupConfig, ProcessConfig};

/// Names a command whose answer comes later (given by the caller, returned with the answer).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Ticket(pub u64);

/// What a start, stop or signal applies to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Process(ProcId),
    Group(String),
    /// Every process, by group priority then process priority.
    All,
}

#[derive(Clone, Debug)]
pub enum Command {
    /// startProcess / startProcessGroup / startAllProcesses.
    Start { target: Target, wait: bool },
    /// stopProcess / stopProcessGroup / stopAllProcesses.
    Stop { target: Target, wait: bool },
    /// signalProcess / signalProcessGroup / signalAllProcesses; `Err` holds a signal that could
    /// not be parsed (each process of a group then answers BAD_SIGNAL, as in Supervisor).
    Signal { target: Target, signal: Result<i32, String> },
    /// addProcessGroup: activates a group of the config last read; its processes autostart.
    AddGroup(Box<GroupConfig>),
    /// removeProcessGroup: only a group whose processes are all stopped.
    RemoveGroup(String),
    /// minisv.updateProcessGroup: stops the processes whose settings changed, then applies the
    /// new config in place and starts again those that were running.
    UpdateGroup(Box<GroupConfig>),
    /// supervisor.shutdown.
    Shutdown,
}

/// Why a command was refused, with Supervisor's fault in mind (the caller maps each to its
/// code and text).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    BadName(String),
    BadSignal(String),
    NoFile(String),
    NotExecutable(String),
    AlreadyStarted(String),
    AlreadyAdded(String),
    NotRunning(String),
    StillRunning(String),
    SpawnError(String),
    AbnormalTermination(String),
    Failed(String),
    ShutdownState,
}

/// One process's result in a group or all operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Each {
    pub name: String,
    pub group: String,
    pub result: Result<(), Refusal>,
}

/// What `update` did to a group's processes (process names, each list sorted).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UpdateReport {
    pub added: Vec<String>,
    pub changed: Vec<String>,
    pub removed: Vec<String>,
    pub unchanged: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// Done (Supervisor's `True`).
    Done,
    /// A group or all operation: one result per process, in completion order.
    Each(Vec<Each>),
    Updated(UpdateReport),
    Refused(Refusal),
}

/// The command was answered at once, or its answer comes later as `Action::Answer`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Issued {
    Now(Answer),
    Later(Ticket),
}

/// Why a process's command cannot be run, with the message startProcess answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BadCommand {
    /// The program is not found (NO_FILE).
    NotFound(String),
    /// A directory, not executable, not runnable by us, or not parsable (NOT_EXECUTABLE).
    NotExecutable(String),
}

/// The I/O a command needs, done by the loop (faked in tests).
pub trait World {
    /// Whether a process's command can be found and run now (startProcess's pre-check).
    fn can_run(&mut self, config: &ProcessConfig) -> Result<(), BadCommand>;
    /// Sends `signal` to `pid` (signalProcess); the error's text if it fails.
    fn signal(&mut self, pid: u32, signal: i32) -> Result<(), String>;
}

/// An answer the core still waits for.
#[derive(Debug)]
pub(super) enum Wait {
    /// A start: once spawned (and with `wait`, once RUNNING or failed).
    Start { id: ProcId, wait: bool },
    /// A stop with `wait`: once in a stopped state (saying every 2 s that it waits).
    Stop { id: ProcId, report: Report },
    /// A group or all operation.
    Each { waiting: Vec<Item>, results: Vec<Each> },
    /// An update: applied once `stopping` are stopped (`ready` says since when) and the
    /// actions of their stops have been performed (see `take_actions`).
    Update {
        config: Option<Box<GroupConfig>>,
        stopping: Vec<ProcId>,
        restart: Vec<String>,
        report: UpdateReport,
        ready: Option<(Instant, SystemTime)>,
    },
}

/// One process of a group operation that has no result yet (or has one that must wait for
/// the processes before it, see `Wait::Each`).
#[derive(Debug)]
pub(super) struct Item {
    name: String,
    group: String,
    wait: ItemWait,
}

#[derive(Debug)]
enum ItemWait {
    Start { id: ProcId, wait: bool },
    Stop { id: ProcId, report: Report },
    Known(Result<(), Refusal>),
}

/// Supervisor's `stop_report`: while a stop waits, `waiting for <name> to stop` at once, then
/// every 2 seconds while the process is STOPPING.
#[derive(Debug, Default)]
pub(super) struct Report {
    next: Option<Instant>,
}

const STOP_REPORT_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// How far a waiting start or stop has got.
enum Progress {
    /// Its child is being started: the loop reports the outcome within this round. Supervisor
    /// starts it inside the call, so results after it in a group wait for it.
    Spawning,
    /// It waits for the state machine (RUNNING, stopped).
    Waiting,
    Known(Result<(), Refusal>),
}

impl Supervisor {
    /// Runs a command of the control plane. `None`: the answer comes later as
    /// `Action::Answer(ticket, ..)`.
    pub fn command(
        &mut self,
        ticket: Ticket,
        command: Command,
        now: Instant,
        wall: SystemTime,
        world: &mut dyn World,
    ) -> Option<Answer> {
        let answer = match command {
            Command::Start { target: Target::Process(id), wait } => match self.start_one(id, now, wall, world) {
                Err(r) => Some(Answer::Refused(r)),
                Ok(()) => self.wait(ticket, Wait::Start { id, wait }, now, wall),
            },
            Command::Start { target, wait } => {
                let mut items = Vec::new();
                for id in self.targets(&target) {
                    // Looked at when its turn comes: starting one may start another (depends_on).
                    if self.process(id).is_none_or(|p| p.state.is_running()) {
                        continue;
                    }
                    let wait = match self.start_one(id, now, wall, world) {
                        Err(r) => ItemWait::Known(Err(r)),
                        Ok(()) => ItemWait::Start { id, wait },
                    };
                    items.push(self.item(id, wait));
                }
                self.wait(ticket, Wait::Each { waiting: items, results: Vec::new() }, now, wall)
            }
            Command::Stop { target: Target::Process(id), wait } => match self.stop_one(id, now, wall) {
                Err(r) => Some(Answer::Refused(r)),
                Ok(()) if wait => self.wait(ticket, Wait::Stop { id, report: Report::default() }, now, wall),
                Ok(()) => Some(Answer::Done),
            },
            Command::Stop { target, wait } => {
                let mut items = Vec::new();
                for id in self.targets(&target) {
                    if self.process(id).is_none_or(|p| !p.state.is_running()) {
                        continue;
                    }
                    let wait = match self.stop_one(id, now, wall) {
                        Err(r) => ItemWait::Known(Err(r)),
                        Ok(()) if wait => ItemWait::Stop { id, report: Report::default() },
                        Ok(()) => ItemWait::Known(Ok(())),
                    };
                    items.push(self.item(id, wait));
                }
                self.wait(ticket, Wait::Each { waiting: items, results: Vec::new() }, now, wall)
            }
            Command::Signal { target: Target::Process(id), signal } => Some(match self.signal_one(id, signal, world) {
                Ok(()) => Answer::Done,
                Err(r) => Answer::Refused(r),
            }),
            Command::Signal { target, signal } => {
                let mut results = Vec::new();
                for id in self.targets(&target) {
                    if self.process(id).is_none_or(|p| !p.state.is_signallable()) {
                        continue;
                    }
                    let result = self.signal_one(id, signal.clone(), world);
                    let Item { name, group, .. } = self.item(id, ItemWait::Known(Ok(())));
                    results.push(Each { name, group, result });
                }
                Some(Answer::Each(results))
            }
            Command::AddGroup(config) => {
                let name = config.name.clone();
                if !self.add_group(*config) {
                    return Some(Answer::Refused(Refusal::AlreadyAdded(name)));
                }
                // Its processes autostart now (Supervisor: on the next loop).
                self.tick(now, wall);
                Some(Answer::Done)
            }
            Command::RemoveGroup(name) => Some(match self.remove_group(&name) {
                Ok(_) => Answer::Done,
                Err(RemoveError::NoSuchGroup) => Answer::Refused(Refusal::BadName(name)),
                Err(RemoveError::StillRunning) => Answer::Refused(Refusal::StillRunning(name)),
            }),
            Command::UpdateGroup(config) => self.update_group(ticket, config, now, wall),
            Command::Shutdown => {
                self.request_stop(Mood::Shutdown, now, wall);
                Some(Answer::Done)
            }
        };
        self.settle(now, wall);
        answer
    }

    fn namespec(&self, id: ProcId) -> String {
        self.process(id).map(|p| super::namespec::make(&p.group, p.name())).unwrap_or_default()
    }

    fn item(&self, id: ProcId, wait: ItemWait) -> Item {
        let (name, group) = self.process(id).map(|p| (p.name().to_string(), p.group.clone())).unwrap_or_default();
        Item { name, group, wait }
    }

    /// The processes of a group (by process priority) or of all groups (by group priority,
    /// then process priority), as Supervisor's group and all operations take them.
    fn targets(&self, target: &Target) -> Vec<ProcId> {
        match target {
            Target::Process(id) => vec![*id],
            Target::Group(g) => self.members_by_priority(g),
            Target::All => self.all_by_priority(),
        }
    }

    /// startProcess for one process, up to the spawn request: its dependencies (depends_on)
    /// that are not running are started first.
    fn start_one(&mut self, id: ProcId, now: Instant, wall: SystemTime, world: &mut dyn World) -> Result<(), Refusal> {
        self.start_deps_and(id, now, wall, world)?;
        self.actions.push_back(Action::ByHand { id, started: true });
        Ok(())
    }

    fn start_deps_and(
        &mut self,
        id: ProcId,
        now: Instant,
        wall: SystemTime,
        world: &mut dyn World,
    ) -> Result<(), Refusal> {
        let name = self.namespec(id);
        let p = self.process(id).ok_or_else(|| Refusal::BadName(name.clone()))?;
        match world.can_run(&p.config) {
            Ok(()) => {}
            Err(BadCommand::NotFound(msg)) => return Err(Refusal::NoFile(msg)),
            Err(BadCommand::NotExecutable(msg)) => return Err(Refusal::NotExecutable(msg)),
        }
        if p.state.is_running() {
            return Err(Refusal::AlreadyStarted(name));
        }
        if p.state == ProcessState::Unknown {
            return Err(Refusal::Failed(format!("{name} is in an unknown process state")));
        }
        for dep in self.dependencies_first(id) {
            let Some(d) = self.process(dep) else { continue };
            if !d.state.is_running() && d.state != ProcessState::Unknown && world.can_run(&d.config).is_ok() {
                self.step(dep, Input::Start, now, wall);
            }
        }
        self.step(id, Input::Start, now, wall);
        Ok(())
    }

    /// Whether stopProcess may stop `id` now.
    fn stoppable(&self, id: ProcId) -> Result<(), Refusal> {
        let name = self.namespec(id);
        let p = self.process(id).ok_or_else(|| Refusal::BadName(name.clone()))?;
        // A restart that waits (restart_delay, fatal_retry) is called off by a stop.
        let pending = p.restart_pending();
        if !p.state.is_running() && !pending {
            return Err(Refusal::NotRunning(name));
        }
        if p.pid == 0 && p.state != ProcessState::Backoff && !pending {
            let sig = crate::sys::signal_name(p.config.stopsignal);
            return Err(Refusal::Failed(format!(
                "attempted to kill {} with sig {} but it wasn't running",
                p.name(),
                sig
            )));
        }
        Ok(())
    }

    /// stopProcess for one process: whatever depends on it (depends_on) stops first.
    fn stop_one(&mut self, id: ProcId, now: Instant, wall: SystemTime) -> Result<(), Refusal> {
        self.stoppable(id)?;
        self.actions.push_back(Action::ByHand { id, started: false });
        for dependent in self.dependents_first(id) {
            if self.process(dependent).is_some_and(|p| p.state.is_running()) && self.stoppable(dependent).is_ok() {
                self.step(dependent, Input::Stop, now, wall);
            }
        }
        self.step(id, Input::Stop, now, wall);
        Ok(())
    }

    fn signal_one(&self, id: ProcId, signal: Result<i32, String>, world: &mut dyn World) -> Result<(), Refusal> {
        let name = self.namespec(id);
        let signal = signal.map_err(Refusal::BadSignal)?;
        let p = self.process(id).ok_or_else(|| Refusal::BadName(name.clone()))?;
        if !p.state.is_signallable() || p.pid == 0 {
            return Err(Refusal::NotRunning(name));
        }
        world.signal(p.pid, signal).map_err(Refusal::Failed)
    }

    /// minisv's update of one active group: only the processes whose settings changed stop.
    fn update_group(
        &mut self,
        ticket: Ticket,
        config: Box<GroupConfig>,
        now: Instant,
        wall: SystemTime,
    ) -> Option<Answer> {
        if self.mood() != Mood::Running {
            return Some(Answer::Refused(Refusal::ShutdownState));
        }
        let Some(group) = self.group(&config.name) else {
            return Some(Answer::Refused(Refusal::BadName(config.name.clone())));
        };
        let matching = self.match_group(&group.members, &config);
        let mut report = UpdateReport::default();
        let (mut stopping, mut restart) = (Vec::new(), Vec::new());
        for (i, old, same) in &matching.pairs {
            let name = config.processes[*i].name.clone();
            match (old, same) {
                (None, _) => report.added.push(name),
                (Some(_), true) => report.unchanged.push(name),
                (Some(id), false) => {
                    let state = self.process(*id).map(|p| p.state).unwrap_or(ProcessState::Stopped);
                    if state.is_running() {
                        restart.push(name.clone());
                    }
                    if !state.is_stopped() {
                        stopping.push(*id);
                    }
                    report.changed.push(name);
                }
            }
        }
        for id in &matching.gone {
            if let Some(p) = self.process(*id) {
                report.removed.push(p.name().to_string());
                if !p.state.is_stopped() {
                    stopping.push(*id);
                }
            }
        }
        for list in [&mut report.added, &mut report.changed, &mut report.removed, &mut report.unchanged] {
            list.sort();
        }
        for id in &stopping {
            self.step(*id, Input::Stop, now, wall);
        }
        self.wait(ticket, Wait::Update { config: Some(config), stopping, restart, report, ready: None }, now, wall)
    }

    /// Keeps `wait` under `ticket`, unless it is complete already.
    fn wait(&mut self, ticket: Ticket, mut wait: Wait, now: Instant, wall: SystemTime) -> Option<Answer> {
        let answer = self.advance(&mut wait, now, wall);
        if answer.is_none() {
            self.waits.push((ticket, wait));
        }
        answer
    }

    /// Answers the waits that the last inputs completed (as `Action::Answer`). Called at the
    /// end of every public input; bounded, since each round completes a wait or stops.
    pub(super) fn settle(&mut self, now: Instant, wall: SystemTime) {
        for _ in 0..16 {
            if self.waits.is_empty() {
                return;
            }
            let mut progressed = false;
            for (ticket, mut wait) in std::mem::take(&mut self.waits) {
                match self.advance(&mut wait, now, wall) {
                    Some(answer) => {
                        progressed = true;
                        self.actions.push_back(Action::Answer(ticket, answer));
                    }
                    None => self.waits.push((ticket, wait)),
                }
            }
            if !progressed {
                return;
            }
        }
    }

    fn start_progress(&self, id: ProcId, wait: bool) -> Progress {
        let name = || self.namespec(id);
        let Some(p) = self.process(id) else {
            return Progress::Known(Err(Refusal::AbnormalTermination(name())));
        };
        if p.spawning() {
            return Progress::Spawning;
        }
        if p.spawnerr.is_some() {
            return Progress::Known(Err(Refusal::SpawnError(name())));
        }
        if !wait {
            return Progress::Known(Ok(()));
        }
        match p.state {
            ProcessState::Running => Progress::Known(Ok(())),
            ProcessState::Starting => Progress::Waiting,
            // Waiting for its dependencies (depends_on).
            ProcessState::Stopped | ProcessState::Exited | ProcessState::Backoff if p.start_requested() => {
                Progress::Waiting
            }
            _ => Progress::Known(Err(Refusal::AbnormalTermination(name()))),
        }
    }

    fn stop_progress(&mut self, id: ProcId, report: &mut Report, now: Instant) -> Progress {
        let Some(p) = self.process(id).filter(|p| !p.state.is_stopped()) else {
            return Progress::Known(Ok(()));
        };
        if p.state == ProcessState::Stopping && report.next.is_none_or(|at| now >= at) {
            report.next = Some(now + STOP_REPORT_EVERY);
            let msg = format!("waiting for {} to stop", p.name());
            self.actions.push_back(Action::Log(crate::config::LogLevel::Info, msg));
        }
        Progress::Waiting
    }

    /// When a waiting stop next says it waits (the loop wakes for it).
    pub(super) fn next_stop_report(&self) -> Option<Instant> {
        let stopping = |id: &ProcId| self.process(*id).is_some_and(|p| p.state == ProcessState::Stopping);
        let mut next: Option<Instant> = None;
        let mut consider = |at: Option<Instant>| {
            if let Some(at) = at {
                next = Some(next.map_or(at, |n| n.min(at)));
            }
        };
        for (_, wait) in &self.waits {
            match wait {
                Wait::Stop { id, report } if stopping(id) => consider(report.next),
                Wait::Each { waiting, .. } => {
                    for item in waiting {
                        if let ItemWait::Stop { id, report } = &item.wait {
                            if stopping(id) {
                                consider(report.next);
                            }
                        }
                    }
                }
                Wait::Start { .. } | Wait::Stop { .. } | Wait::Update { .. } => {}
            }
        }
        next
    }

    /// Moves a wait on; its answer once it is complete.
    fn advance(&mut self, wait: &mut Wait, now: Instant, wall: SystemTime) -> Option<Answer> {
        match wait {
            Wait::Start { id, wait } => match self.start_progress(*id, *wait) {
                Progress::Spawning | Progress::Waiting => None,
                Progress::Known(Ok(())) => Some(Answer::Done),
                Progress::Known(Err(r)) => Some(Answer::Refused(r)),
            },
            Wait::Stop { id, report } => match self.stop_progress(*id, report, now) {
                Progress::Spawning | Progress::Waiting => None,
                Progress::Known(_) => Some(Answer::Done),
            },
            Wait::Each { waiting, results } => {
                // A result is given once known, but not before those of the processes before
                // it that are still being spawned: Supervisor starts each in turn within the
                // call, so its results come in the group's order.
                let mut spawning = false;
                let mut i = 0;
                while i < waiting.len() {
                    let progress = match &mut waiting[i].wait {
                        ItemWait::Start { id, wait } => self.start_progress(*id, *wait),
                        ItemWait::Stop { id, report } => {
                            let id = *id;
                            self.stop_progress(id, report, now)
                        }
                        ItemWait::Known(r) => Progress::Known(r.clone()),
                    };
                    match progress {
                        Progress::Spawning => {
                            spawning = true;
                            i += 1;
                        }
                        Progress::Waiting => i += 1,
                        Progress::Known(r) if spawning => {
                            waiting[i].wait = ItemWait::Known(r);
                            i += 1;
                        }
                        Progress::Known(result) => {
                            let item = waiting.remove(i);
                            results.push(Each { name: item.name, group: item.group, result });
                        }
                    }
                }
                waiting.is_empty().then(|| Answer::Each(std::mem::take(results)))
            }
            Wait::Update { stopping, ready, .. } => {
                if ready.is_none() && stopping.iter().all(|id| self.process(*id).is_none_or(|p| p.state.is_stopped())) {
                    *ready = Some((now, wall));
                }
                None
            }
        }
    }

    /// Applies the updates whose processes have stopped, once the actions before have been
    /// performed (the events of those stops name processes that the update removes), and
    /// queues their answers. True if one was applied.
    pub(super) fn apply_ready_updates(&mut self) -> bool {
        let Some(i) = self.waits.iter().position(|(_, w)| matches!(w, Wait::Update { ready: Some(_), .. })) else {
            return false;
        };
        let (ticket, wait) = self.waits.remove(i);
        let Wait::Update { config, restart, report, ready: Some((now, wall)), .. } = wait else { return false };
        if let Some(config) = config {
            self.apply_update(*config, &restart, now, wall);
        }
        self.actions.push_back(Action::Answer(ticket, Answer::Updated(report)));
        self.settle(now, wall);
        true
    }

    /// Applies an update whose changed processes are stopped: unchanged ones keep running,
    /// changed ones are replaced and started again if they were running (`restart`).
    fn apply_update(&mut self, config: GroupConfig, restart: &[String], now: Instant, wall: SystemTime) {
        let (_, fresh, _) = self.replace_group(config);
        for id in fresh {
            if self.process(id).is_some_and(|p| restart.contains(&p.config.name)) {
                self.step(id, Input::Start, now, wall);
            }
        }
        self.tick_all(now, wall);
    }
}
