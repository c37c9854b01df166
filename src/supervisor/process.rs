//! One supervised process: Supervisor's state machine (reference 2.2–2.6), pure.
//!
//! `Process::handle(input, ctx, out)` decides every (state, input) pair in one `match` without a
//! wildcard arm, so a new state or input does not compile until each pair is decided. It reads no
//! clock (`ctx.now` is given) and does no I/O: it pushes `Effect`s that the event loop performs
//! (spawn, kill, log) and feeds the outcome back as another input.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::state::ProcessState;
use crate::config::{AutoRestart, LogLevel, ProcessConfig};

/// How a child ended, decoded once from its wait status (`decode_wait_status`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExitInfo {
    /// The exit code, or -1 for a death by signal (Supervisor's quirk Q19).
    pub exitstatus: i32,
    /// `exit status 1`, `terminated by SIGTERM`, `terminated by SIGSEGV (core dumped)`.
    pub message: String,
    /// The status a shell would report: the exit code, or 128 + N for a death by signal N.
    pub shell_status: i32,
}

/// What happened to a process, as seen by its state machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// Start it: a start request, an autostart, an autorestart or a retry after backoff.
    Start,
    /// The loop forked it.
    Spawned { pid: u32 },
    /// The loop could not start it (command not found, fork failed, exec failed ...).
    SpawnFailed { message: String },
    /// It was reaped.
    Exited(ExitInfo),
    /// An administrative stop (stop request, or a group being stopped).
    Stop,
    /// A group is stopped for shutdown: a process in BACKOFF gives up (→ FATAL).
    GiveUp,
    /// Time passed: check deadlines (startsecs, backoff delay, stopwaitsecs) and restarts.
    Tick,
    /// Sending a signal failed with something other than ESRCH.
    KillFailed { message: String },
    /// The program wrote its readiness line on `ready_fd`, or its `ready_check` passed.
    Ready,
    /// Its `health_check` failed `health_check_retries` times in a row, or it is over its
    /// `memory_limit`: `reason` says what, `by` which setting (for the log line).
    Unhealthy { reason: String, by: &'static str },
    /// It sent WATCHDOG=1 (systemd's notify protocol, with `watchdog_sec=`).
    Watchdog,
}

/// What the loop must do for this process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Resolve the command and start the child; answer with `Spawned` or `SpawnFailed` once it
    /// has exec'd or failed.
    Spawn,
    /// Send `signal` to the pid, or to its process group when `group`.
    Kill {
        signal: i32,
        group: bool,
    },
    Log(LogLevel, String),
    /// This step restarted the process automatically (counted for `restart_limit`).
    AutoRestarted,
    /// The state changed (events and waiting RPC replies hang on this).
    Changed {
        from: ProcessState,
        to: ProcessState,
        expected: Option<bool>,
        /// The pid at the change (for an exit, the pid that exited), 0 when there is none.
        pid: u32,
        /// The backoff counter at the change (the `tries` of state events).
        tries: u32,
    },
}

/// Context for one step: the current time and whether the daemon may start things.
#[derive(Clone, Copy, Debug)]
pub struct Ctx {
    pub now: Instant,
    pub wall: SystemTime,
    /// False while shutting down or reloading: no autostart, autorestart or retry.
    pub may_start: bool,
    /// Every process named by `depends_on=` is RUNNING (true without dependencies).
    pub deps_ready: bool,
    /// Every process that depends on this one is stopped (true without dependents).
    pub dependents_stopped: bool,
    /// The daemon-wide `restart_limit` allows an automatic restart now.
    pub may_restart: bool,
}

#[derive(Clone, Debug)]
pub struct Process {
    pub config: Arc<ProcessConfig>,
    pub group: String,
    pub state: ProcessState,
    pub pid: u32,
    /// Monotonic time of the last spawn (None if never started).
    pub laststart: Option<Instant>,
    /// Wall-clock time of the last spawn and of the last exit, for getProcessInfo.
    pub start_wall: Option<SystemTime>,
    pub stop_wall: Option<SystemTime>,
    /// The pending deadline of STARTING/BACKOFF/STOPPING (Supervisor's `delay`).
    pub delay: Option<Instant>,
    pub backoff: u32,
    pub killing: bool,
    pub spawnerr: Option<String>,
    pub exitstatus: Option<i32>,
    pub administrative_stop: bool,
    pub system_stop: bool,
    /// The shell-style status of the last exit (for `critical=`).
    pub last_status: Option<i32>,
    /// When it last entered RUNNING (for `backoff_window`).
    running_since: Option<Instant>,
    /// A start or a stop that was asked for and waits for its moment.
    pub deferred: Option<Deferred>,
    /// How many times it was started again after its first start (for metrics).
    pub restarts: u64,
    /// It did not become ready within `ready_timeout` and was killed for it.
    ready_failed: bool,
    /// At the last tick, an automatic restart was due but waited for `restart_limit`.
    pub restart_held: bool,
    /// The wait of the pending restart was logged.
    restart_held_logged: bool,
    /// Why it was last restarted by its `health_check` (shown in its status until a start or
    /// stop by hand).
    pub health_failure: Option<String>,
    /// When its watchdog runs out (`watchdog_sec=`, while RUNNING): a WATCHDOG=1 moves it on.
    pub watchdog_due: Option<Instant>,
    /// The last STATUS= it sent (notify protocol), shown in its status while it runs.
    pub status_text: Option<String>,
    /// `schedule=`: when it is next due, on the wall clock and as the deadline.
    pub next_run: Option<(SystemTime, Instant)>,
}

/// A start or stop that waits: the process is in another state until its moment comes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Deferred {
    /// Start once the processes it depends on (depends_on) are RUNNING; or, after a
    /// health_check failure, once the stop it is in has ended.
    Start,
    /// Stop once the processes that depend on it have stopped.
    Stop,
}

/// What a process's state machine has learned, apart from its config: carried across an
/// upgrade in place (`daemon::upgrade`), so that the new daemon goes on where the old one was.
/// The default is a process never started.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Carried {
    pub state: ProcessState,
    pub pid: u32,
    pub laststart: Option<Instant>,
    pub start_wall: Option<SystemTime>,
    pub stop_wall: Option<SystemTime>,
    pub delay: Option<Instant>,
    pub backoff: u32,
    pub killing: bool,
    pub spawnerr: Option<String>,
    pub exitstatus: Option<i32>,
    pub administrative_stop: bool,
    pub system_stop: bool,
    pub last_status: Option<i32>,
    pub running_since: Option<Instant>,
    pub deferred: Option<Deferred>,
    pub restarts: u64,
    pub ready_failed: bool,
    pub restart_held: bool,
    pub health_failure: Option<String>,
    pub watchdog_due: Option<Instant>,
    pub status_text: Option<String>,
    pub next_run: Option<(SystemTime, Instant)>,
}

fn secs(n: i64) -> Duration {
    Duration::from_secs(n.max(0) as u64)
}

impl Process {
    pub fn new(config: Arc<ProcessConfig>, group: String) -> Process {
        Process {
            config,
            group,
            state: ProcessState::Stopped,
            pid: 0,
            laststart: None,
            start_wall: None,
            stop_wall: None,
            delay: None,
            backoff: 0,
            killing: false,
            spawnerr: None,
            exitstatus: None,
            administrative_stop: false,
            system_stop: false,
            last_status: None,
            running_since: None,
            deferred: None,
            restarts: 0,
            ready_failed: false,
            restart_held: false,
            restart_held_logged: false,
            health_failure: None,
            watchdog_due: None,
            status_text: None,
            next_run: None,
        }
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// Its state, for an upgrade in place.
    pub fn carry(&self) -> Carried {
        Carried {
            state: self.state,
            pid: self.pid,
            laststart: self.laststart,
            start_wall: self.start_wall,
            stop_wall: self.stop_wall,
            delay: self.delay,
            backoff: self.backoff,
            killing: self.killing,
            spawnerr: self.spawnerr.clone(),
            exitstatus: self.exitstatus,
            administrative_stop: self.administrative_stop,
            system_stop: self.system_stop,
            last_status: self.last_status,
            running_since: self.running_since,
            deferred: self.deferred,
            restarts: self.restarts,
            ready_failed: self.ready_failed,
            restart_held: self.restart_held,
            health_failure: self.health_failure.clone(),
            watchdog_due: self.watchdog_due,
            status_text: self.status_text.clone(),
            next_run: self.next_run,
        }
    }

    /// Takes up the state an old daemon carried (its config is this daemon's).
    pub fn resume(&mut self, c: Carried) {
        self.state = c.state;
        self.pid = c.pid;
        self.laststart = c.laststart;
        self.start_wall = c.start_wall;
        self.stop_wall = c.stop_wall;
        self.delay = c.delay;
        self.backoff = c.backoff;
        self.killing = c.killing;
        self.spawnerr = c.spawnerr;
        self.exitstatus = c.exitstatus;
        self.administrative_stop = c.administrative_stop;
        self.system_stop = c.system_stop;
        self.last_status = c.last_status;
        self.running_since = c.running_since;
        self.deferred = c.deferred;
        self.restarts = c.restarts;
        self.ready_failed = c.ready_failed;
        self.restart_held = c.restart_held;
        self.restart_held_logged = false;
        self.health_failure = c.health_failure;
        self.watchdog_due = c.watchdog_due;
        self.status_text = c.status_text;
        self.next_run = c.next_run;
    }

    /// The next moment at which `Tick` may change something, if any.
    pub fn deadline(&self) -> Option<Instant> {
        let own = self.state_deadline();
        match self.next_run {
            Some((_, at)) => Some(own.map_or(at, |d| d.min(at))),
            // A schedule not planned yet is planned at its first tick (a new process is marked).
            None => own,
        }
    }

    /// The deadline of its state (startsecs, backoff, stopwaitsecs, a restart delay, the
    /// watchdog).
    fn state_deadline(&self) -> Option<Instant> {
        match self.state {
            ProcessState::Starting if self.pid != 0 && self.awaits_ready() => {
                // With ready_fd the program says when it is ready; this is its deadline.
                if self.ready_failed {
                    return None;
                }
                Some(self.laststart? + secs(self.config.ready_timeout))
            }
            ProcessState::Starting if self.pid != 0 => {
                let start = self.laststart?;
                // Supervisor promotes when `now - laststart > startsecs`.
                if self.config.startsecs < 0 {
                    Some(start)
                } else {
                    Some(start + secs(self.config.startsecs))
                }
            }
            // EXITED and FATAL have a delay only for a pending restart (restart_delay,
            // backoff_window, fatal_retry).
            ProcessState::Backoff | ProcessState::Stopping | ProcessState::Exited | ProcessState::Fatal => self.delay,
            ProcessState::Running => self.watchdog_due,
            ProcessState::Starting | ProcessState::Stopped | ProcessState::Unknown => None,
        }
    }

    /// A start asked for that waits for the processes it depends on.
    pub fn start_requested(&self) -> bool {
        self.deferred == Some(Deferred::Start)
    }

    /// STARTING, with its child asked for but not reported yet (no pid).
    pub fn spawning(&self) -> bool {
        self.state == ProcessState::Starting && self.pid == 0
    }

    fn change(&mut self, to: ProcessState, expected: Option<bool>, ctx: &Ctx, out: &mut Vec<Effect>) {
        self.change_as(to, expected, self.pid, ctx, out);
    }

    /// A change that names `pid` (an exit's changes name the pid that exited).
    fn change_as(&mut self, to: ProcessState, expected: Option<bool>, pid: u32, ctx: &Ctx, out: &mut Vec<Effect>) {
        let from = self.state;
        if to == ProcessState::Backoff {
            // Linear backoff (2.4): the n-th failure waits n seconds (at most backoff_max).
            self.backoff += 1;
            self.delay = Some(ctx.now + self.backoff_wait());
        }
        if to == ProcessState::Running {
            self.running_since = Some(ctx.now);
        }
        self.state = to;
        out.push(Effect::Changed { from, to, expected, pid, tries: self.backoff });
    }

    /// The wait after the n-th failure: n seconds, capped by `backoff_max`.
    fn backoff_wait(&self) -> Duration {
        let max = self.config.restart.backoff_max;
        let n = self.backoff as u64;
        Duration::from_secs(if max > 0 { n.min(max) } else { n })
    }

    /// A restart is scheduled (restart_delay, backoff_window or fatal_retry) and not yet due.
    pub fn restart_pending(&self) -> bool {
        matches!(self.state, ProcessState::Exited | ProcessState::Fatal) && self.delay.is_some()
    }

    fn log(&self, out: &mut Vec<Effect>, level: LogLevel, msg: String) {
        out.push(Effect::Log(level, msg));
    }

    /// Steps the state machine.
    pub fn handle(&mut self, input: Input, ctx: &Ctx, out: &mut Vec<Effect>) {
        self.step(input, ctx, out);
    }

    /// Every (state, input) pair is decided here.
    fn step(&mut self, input: Input, ctx: &Ctx, out: &mut Vec<Effect>) {
        use Input as I;
        use ProcessState as S;
        match (self.state, input) {
            // --- Start -------------------------------------------------------------------
            (S::Stopped | S::Exited | S::Fatal | S::Backoff, I::Start) => {
                self.health_failure = None;
                if ctx.deps_ready {
                    self.spawn(ctx, out);
                } else if !self.start_requested() {
                    self.deferred = Some(Deferred::Start);
                    let msg = format!("{} waits for its dependencies (depends_on) to be RUNNING", self.name());
                    self.log(out, LogLevel::Info, msg);
                }
            }
            (S::Starting | S::Running | S::Stopping, I::Start) => {
                // Supervisor's spawn() refuses a second child for the same process.
                let msg = format!("process '{}' already running", self.name());
                self.log(out, LogLevel::Warn, msg);
            }
            // UNKNOWN cannot be started (the RPC layer reports FAILED).
            (S::Unknown, I::Start) => {}

            // --- Spawn outcome -------------------------------------------------------------
            (S::Starting, I::Spawned { pid }) => {
                if self.pid != 0 {
                    return; // a stale report: this start already has its child
                }
                self.pid = pid;
                let msg = format!("spawned: '{}' with pid {}", self.name(), pid);
                self.log(out, LogLevel::Info, msg);
                // startsecs=0 (or negative): RUNNING at once, as startProcess's transition().
                self.tick(ctx, out);
            }
            (S::Starting, I::SpawnFailed { message }) => {
                if self.pid != 0 {
                    return; // a stale report: this start already has its child
                }
                self.log(out, LogLevel::Info, format!("spawnerr: {message}"));
                self.spawnerr = Some(message);
                self.change(S::Backoff, None, ctx, out);
                self.tick(ctx, out);
            }
            // The loop only reports a spawn it was asked for, in STARTING; a stale report
            // (the process was stopped meanwhile) changes nothing.
            (
                S::Stopped | S::Running | S::Backoff | S::Stopping | S::Exited | S::Fatal | S::Unknown,
                I::Spawned { .. } | I::SpawnFailed { .. },
            ) => {}

            // --- Exit ----------------------------------------------------------------------
            (S::Stopping, I::Exited(info)) => {
                let pid = self.finish_common(ctx, &info);
                self.killing = false;
                self.delay = None;
                self.exitstatus = Some(info.exitstatus);
                let expected = self.config.exitcodes.contains(&info.exitstatus);
                self.change_as(S::Stopped, None, pid, ctx, out);
                let msg = format!("stopped: {} ({})", self.name(), info.message);
                self.log(out, if expected { LogLevel::Info } else { LogLevel::Warn }, msg);
            }
            (S::Starting, I::Exited(info)) => {
                let pid = self.finish_common(ctx, &info);
                // Q1 fix: the exit is judged by when it happened, before any promotion.
                let up = self.laststart.map(|t| ctx.now.saturating_duration_since(t));
                let too_quickly = match up {
                    // With ready_fd, an exit before it said it is ready is a failed start.
                    _ if self.awaits_ready() => true,
                    Some(up) => self.config.startsecs > 0 && up < secs(self.config.startsecs),
                    None => false,
                };
                if too_quickly {
                    self.exitstatus = None;
                    self.spawnerr = Some(if self.ready_failed {
                        format!("not ready within {} seconds (ready_timeout)", self.config.ready_timeout)
                    } else if self.awaits_ready() {
                        "Exited before it was ready (process log may have details)".into()
                    } else {
                        "Exited too quickly (process log may have details)".into()
                    });
                    self.change_as(S::Backoff, None, pid, ctx, out);
                    let msg = format!("exited: {} ({}; not expected)", self.name(), info.message);
                    self.log(out, LogLevel::Warn, msg);
                    self.tick(ctx, out);
                } else {
                    // It stayed up long enough: it was RUNNING, then exited.
                    self.change_as(S::Running, None, pid, ctx, out);
                    self.exit_from_running(info, pid, ctx, out);
                }
            }
            (S::Running, I::Exited(info)) => {
                let pid = self.finish_common(ctx, &info);
                self.exit_from_running(info, pid, ctx, out);
            }
            // A process whose stop signal failed may still exit later.
            (S::Unknown, I::Exited(info)) => {
                let pid = self.finish_common(ctx, &info);
                self.exit_from_running(info, pid, ctx, out);
            }
            // No child exists in these states; a stale reap changes nothing.
            (S::Stopped | S::Backoff | S::Exited | S::Fatal, I::Exited(_)) => {}

            // --- Stop ----------------------------------------------------------------------
            (S::Running | S::Starting, I::Stop) => {
                self.health_failure = None;
                self.administrative_stop = true;
                // A start that waited is called off; a stop that waits stays (and is said once).
                let waiting = self.deferred == Some(Deferred::Stop);
                self.deferred = None;
                if !ctx.dependents_stopped {
                    // Dependents stop first (depends_on); this one follows on a later tick.
                    self.deferred = Some(Deferred::Stop);
                    if !waiting {
                        let msg = format!("{} waits for the programs that depend on it to stop", self.name());
                        self.log(out, LogLevel::Info, msg);
                    }
                } else if self.spawning() {
                    // STARTING while the fork is still pending: nothing to signal.
                    self.change(S::Stopped, None, ctx, out);
                } else {
                    self.kill(self.config.stopsignal, self.config.stopasgroup, ctx, out);
                }
            }
            (S::Backoff, I::Stop) => {
                // Stopping a process in BACKOFF must not wait for its retries (2.6).
                self.administrative_stop = true;
                let msg = format!("Attempted to kill {}, which is in BACKOFF state.", self.name());
                self.log(out, LogLevel::Debug, msg);
                self.delay = None;
                self.change(S::Stopped, None, ctx, out);
            }
            // A restart that waits (restart_delay, fatal_retry) is called off by a stop.
            (S::Exited | S::Fatal, I::Stop) => {
                if self.delay.take().is_some() {
                    self.administrative_stop = true;
                    self.change(S::Stopped, None, ctx, out);
                }
            }
            // A stop by hand during a health_check restart calls the restart off.
            (S::Stopping, I::Stop) if self.start_requested() => {
                self.deferred = None;
                self.administrative_stop = true;
            }
            // Already stopping, or nothing to stop (the RPC layer answers NOT_RUNNING).
            (S::Stopping | S::Stopped | S::Unknown, I::Stop) => {}

            // --- GiveUp (group stopped for shutdown) ----------------------------------------
            (S::Backoff, I::GiveUp) => self.give_up(ctx, out),
            (S::Running | S::Starting, I::GiveUp) => self.step(I::Stop, ctx, out),
            (S::Stopping | S::Stopped | S::Exited | S::Fatal | S::Unknown, I::GiveUp) => {}

            // --- Time ----------------------------------------------------------------------
            (
                S::Stopped | S::Starting | S::Running | S::Backoff | S::Stopping | S::Exited | S::Fatal | S::Unknown,
                I::Tick,
            ) => self.tick(ctx, out),

            // --- Readiness (ready_fd, ready_check) ---------------------------------------------
            (S::Starting, I::Ready) => {
                if self.pid != 0 && self.awaits_ready() && !self.ready_failed {
                    let how = match () {
                        _ if self.config.ready_fd.is_some() => "ready_fd",
                        _ if self.config.ready_notify => "READY=1",
                        _ => "ready_check",
                    };
                    self.promote(ctx, out, format!("process is ready ({how})"));
                }
            }
            // Only a starting process waits for its readiness line; a late one changes nothing.
            (S::Stopped | S::Running | S::Backoff | S::Stopping | S::Exited | S::Fatal | S::Unknown, I::Ready) => {}

            // --- Health (health_check) --------------------------------------------------------
            (S::Running, I::Unhealthy { reason, by }) => self.restart_unhealthy(reason, by, ctx, out),
            // A verdict that arrives after the process left RUNNING is stale.
            (
                S::Stopped | S::Starting | S::Backoff | S::Stopping | S::Exited | S::Fatal | S::Unknown,
                I::Unhealthy { .. },
            ) => {}

            // --- Watchdog (notify protocol) ----------------------------------------------------
            (S::Running, I::Watchdog) => {
                if self.config.watchdog_sec > 0 {
                    self.watchdog_due = Some(ctx.now + Duration::from_secs(self.config.watchdog_sec));
                }
            }
            // Pings count from RUNNING on; before, or once it is going, they change nothing.
            (S::Stopped | S::Starting | S::Backoff | S::Stopping | S::Exited | S::Fatal | S::Unknown, I::Watchdog) => {}

            // --- Signal delivery failed -----------------------------------------------------
            (S::Stopping | S::Running | S::Starting, I::KillFailed { message }) => {
                let msg = format!("unknown problem killing {} ({}):{}", self.name(), self.pid, message);
                self.log(out, LogLevel::Critical, msg);
                self.killing = false;
                self.delay = None;
                self.change(S::Unknown, None, ctx, out);
            }
            (S::Stopped | S::Backoff | S::Exited | S::Fatal | S::Unknown, I::KillFailed { .. }) => {}
        }
    }

    /// Supervisor's `transition()` for this process: what time or the daemon's mood now allows.
    fn tick(&mut self, ctx: &Ctx, out: &mut Vec<Effect>) {
        use ProcessState as S;
        // Held again below if the restart is still due and still limited.
        self.restart_held = false;
        self.schedule_tick(ctx, out);
        match self.state {
            S::Exited => {
                if !ctx.may_start {
                    return;
                }
                let restart = match self.config.autorestart {
                    AutoRestart::Always => true,
                    AutoRestart::Unexpected => {
                        !self.exitstatus.is_some_and(|code| self.config.exitcodes.contains(&code))
                    }
                    AutoRestart::Never => false,
                };
                if restart && ctx.deps_ready && self.delay.is_none_or(|d| ctx.now >= d) {
                    self.auto_spawn(ctx, out);
                }
            }
            S::Stopped => {
                // A scheduled program starts at its times, and at start only with run_on_start.
                let at_start = match &self.config.schedule {
                    Some(s) => s.run_on_start,
                    None => self.config.autostart,
                };
                let wanted = (self.laststart.is_none() && at_start) || self.start_requested();
                if ctx.may_start && wanted && ctx.deps_ready {
                    self.spawn(ctx, out);
                }
            }
            S::Backoff => {
                // startretries < 0 (infinite): never give up.
                if self.config.startretries >= 0 && self.backoff as i64 > self.config.startretries {
                    self.give_up(ctx, out);
                    let msg =
                        format!("gave up: {} entered FATAL state, too many start retries too quickly", self.name());
                    self.log(out, LogLevel::Info, msg);
                } else if ctx.may_start && ctx.deps_ready && self.delay.is_none_or(|d| ctx.now >= d) {
                    self.auto_spawn(ctx, out);
                }
            }
            S::Starting if self.deferred == Some(Deferred::Stop) && ctx.dependents_stopped => self.stop_now(ctx, out),
            S::Starting => {
                if self.pid != 0 && self.deadline().is_some_and(|d| ctx.now >= d) {
                    if self.awaits_ready() {
                        // Not ready in time: the start failed; it goes BACKOFF once reaped.
                        self.ready_failed = true;
                        let msg = format!(
                            "{} did not become ready within {} seconds (ready_timeout): killing it",
                            self.name(),
                            self.config.ready_timeout
                        );
                        self.log(out, LogLevel::Warn, msg);
                        out.push(Effect::Kill { signal: libc::SIGKILL, group: self.config.killasgroup });
                    } else {
                        let why =
                            format!("process has stayed up for > than {} seconds (startsecs)", self.config.startsecs);
                        self.promote(ctx, out, why);
                    }
                }
            }
            S::Stopping => {
                if self.delay.is_some_and(|d| ctx.now >= d) && self.pid != 0 {
                    let msg = format!("killing '{}' ({}) with SIGKILL", self.name(), self.pid);
                    self.log(out, LogLevel::Warn, msg);
                    self.kill(libc::SIGKILL, self.config.killasgroup, ctx, out);
                }
            }
            S::Fatal => {
                if ctx.may_start && ctx.deps_ready && self.delay.is_some_and(|d| ctx.now >= d) {
                    if !ctx.may_restart {
                        self.hold_restart(out);
                        return;
                    }
                    let msg = format!(
                        "retrying: {} was FATAL for {} seconds (fatal_retry)",
                        self.name(),
                        self.config.restart.fatal_retry
                    );
                    self.log(out, LogLevel::Info, msg);
                    self.delay = None;
                    self.spawn(ctx, out);
                    out.push(Effect::AutoRestarted);
                }
            }
            S::Running if self.watchdog_due.is_some_and(|due| ctx.now >= due) => {
                self.watchdog_due = None;
                let reason = format!("no WATCHDOG=1 for {} seconds", self.config.watchdog_sec);
                self.restart_unhealthy(reason, "watchdog_sec", ctx, out);
            }
            S::Running => {
                if self.deferred == Some(Deferred::Stop) && ctx.dependents_stopped {
                    self.stop_now(ctx, out);
                }
            }
            S::Unknown => {}
        }
    }

    /// The next time `schedule=` is due after `after` (none past ~5 years).
    fn plan_next_run(&mut self, after: SystemTime, ctx: &Ctx) {
        use crate::config::cron::{Local, Utc};
        let Some(s) = &self.config.schedule else { return };
        let after = after.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
        let next = if s.utc { s.cron.next_after(after, &Utc) } else { s.cron.next_after(after, &Local) };
        self.next_run = next.map(|t| {
            let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(t.max(0) as u64);
            (wall, ctx.now + wall.duration_since(ctx.wall).unwrap_or_default())
        });
    }

    /// `schedule=`: a run that is due starts (or, while the last one still runs, is skipped or
    /// queued, as `schedule_overlap` says); a queued run starts once the last has ended.
    fn schedule_tick(&mut self, ctx: &Ctx, out: &mut Vec<Effect>) {
        use ProcessState as S;
        let Some(queue) = self.config.schedule.as_ref().map(|s| s.queue) else { return };
        if self.start_requested() && matches!(self.state, S::Exited | S::Fatal) && ctx.may_start && ctx.deps_ready {
            self.delay = None;
            self.spawn(ctx, out);
            return;
        }
        let Some((wall, at)) = self.next_run else {
            self.plan_next_run(ctx.wall, ctx);
            return;
        };
        if ctx.now < at {
            return;
        }
        if ctx.wall < wall {
            // The wall clock went back: the same run, later.
            self.plan_next_run(ctx.wall - Duration::from_secs(1), ctx);
            return;
        }
        // Runs missed while the machine slept are not made up: the next is after now.
        self.plan_next_run(ctx.wall, ctx);
        if !ctx.may_start {
            return;
        }
        match self.state {
            S::Stopped | S::Exited | S::Fatal if ctx.deps_ready => {
                let msg = format!("{} is due (schedule)", self.name());
                self.log(out, LogLevel::Info, msg);
                self.delay = None;
                self.spawn(ctx, out);
            }
            S::Stopped | S::Exited | S::Fatal => self.deferred = Some(Deferred::Start),
            S::Starting | S::Running | S::Backoff | S::Stopping if queue => {
                let msg = format!(
                    "{} is due while its last run goes on: it runs again after it (schedule_overlap=queue)",
                    self.name()
                );
                self.log(out, LogLevel::Info, msg);
                self.deferred = Some(Deferred::Start);
            }
            S::Starting | S::Running | S::Backoff | S::Stopping => {
                let msg = format!("{} is due while its last run goes on: skipped (schedule_overlap=skip)", self.name());
                self.log(out, LogLevel::Info, msg);
            }
            S::Unknown => {}
        }
    }

    /// RUNNING but unhealthy (its health_check failed, or its watchdog ran out): stopped with
    /// its stop signal, then started again by the tick in STOPPED.
    fn restart_unhealthy(&mut self, reason: String, by: &str, ctx: &Ctx, out: &mut Vec<Effect>) {
        let msg = format!("{} is unhealthy ({reason}): restarting it ({by})", self.name());
        self.log(out, LogLevel::Warn, msg);
        self.health_failure = Some(reason);
        self.watchdog_due = None;
        self.stop_now(ctx, out);
        self.deferred = Some(Deferred::Start);
    }

    /// STARTING → RUNNING: it stayed up for startsecs, or said it is ready.
    fn promote(&mut self, ctx: &Ctx, out: &mut Vec<Effect>, why: String) {
        self.delay = None;
        if self.config.watchdog_sec > 0 {
            self.watchdog_due = Some(ctx.now + Duration::from_secs(self.config.watchdog_sec));
        }
        // With backoff_window, the backoff is reset only once it stayed up that long.
        if self.config.restart.backoff_window == 0 {
            self.backoff = 0;
        }
        self.change(ProcessState::Running, None, ctx, out);
        let msg = format!("success: {} entered RUNNING state, {why}", self.name());
        self.log(out, LogLevel::Info, msg);
    }

    /// A stop that waited for the dependents to stop goes ahead.
    /// It says itself when it is ready (`ready_fd`, `ready_check`) instead of `startsecs`.
    pub fn awaits_ready(&self) -> bool {
        self.config.ready_fd.is_some() || self.config.checks.ready.is_some() || self.config.ready_notify
    }

    fn stop_now(&mut self, ctx: &Ctx, out: &mut Vec<Effect>) {
        self.deferred = None;
        if self.spawning() {
            self.change(ProcessState::Stopped, None, ctx, out);
        } else {
            self.kill(self.config.stopsignal, self.config.stopasgroup, ctx, out);
        }
    }

    /// An automatic restart (autorestart, a retry from BACKOFF): now, or once the daemon-wide
    /// `restart_limit` allows it.
    fn auto_spawn(&mut self, ctx: &Ctx, out: &mut Vec<Effect>) {
        if ctx.may_restart {
            self.spawn(ctx, out);
            out.push(Effect::AutoRestarted);
        } else {
            self.hold_restart(out);
        }
    }

    fn hold_restart(&mut self, out: &mut Vec<Effect>) {
        self.restart_held = true;
        if !self.restart_held_logged {
            self.restart_held_logged = true;
            let msg = format!("delaying the restart of {}: restart_limit reached", self.name());
            self.log(out, LogLevel::Warn, msg);
        }
    }

    fn spawn(&mut self, ctx: &Ctx, out: &mut Vec<Effect>) {
        self.restart_held = false;
        self.restart_held_logged = false;
        self.ready_failed = false;
        if self.laststart.is_some() {
            self.restarts += 1;
        }
        self.deferred = None;
        self.killing = false;
        self.watchdog_due = None;
        self.status_text = None;
        self.spawnerr = None;
        self.exitstatus = None;
        self.system_stop = false;
        self.administrative_stop = false;
        self.laststart = Some(ctx.now);
        self.start_wall = Some(ctx.wall);
        self.change(ProcessState::Starting, None, ctx, out);
        out.push(Effect::Spawn);
    }

    fn give_up(&mut self, ctx: &Ctx, out: &mut Vec<Effect>) {
        let retry = self.config.restart.fatal_retry;
        self.delay = (retry > 0).then(|| ctx.now + Duration::from_secs(retry));
        self.backoff = 0;
        self.system_stop = true;
        self.change(ProcessState::Fatal, None, ctx, out);
    }

    fn kill(&mut self, signal: i32, group: bool, ctx: &Ctx, out: &mut Vec<Effect>) {
        let as_group = if group { "process group " } else { "" };
        let msg = format!(
            "killing {} (pid {}) {}with signal {}",
            self.name(),
            self.pid,
            as_group,
            crate::sys::signal_name(signal)
        );
        self.log(out, LogLevel::Debug, msg);
        self.killing = true;
        self.delay = Some(ctx.now + secs(self.config.stopwaitsecs));
        if self.state != ProcessState::Stopping {
            self.change(ProcessState::Stopping, None, ctx, out);
        }
        out.push(Effect::Kill { signal, group });
    }

    /// What every exit does; the pid that exited.
    fn finish_common(&mut self, ctx: &Ctx, info: &ExitInfo) -> u32 {
        self.stop_wall = Some(ctx.wall);
        self.watchdog_due = None;
        self.last_status = Some(info.shell_status);
        std::mem::replace(&mut self.pid, 0)
    }

    fn exit_from_running(&mut self, info: ExitInfo, pid: u32, ctx: &Ctx, out: &mut Vec<Effect>) {
        self.delay = None;
        let window = self.config.restart.backoff_window;
        let early = window > 0
            && self.running_since.is_some_and(|t| ctx.now.saturating_duration_since(t) < Duration::from_secs(window));
        if early {
            // A crash soon after RUNNING counts as a failure: it is restarted after the backoff.
            self.backoff += 1;
        } else {
            self.backoff = 0;
        }
        self.killing = false;
        self.exitstatus = Some(info.exitstatus);
        let expected = self.config.exitcodes.contains(&info.exitstatus);
        if expected {
            self.change_as(ProcessState::Exited, Some(true), pid, ctx, out);
            let msg = format!("exited: {} ({}; expected)", self.name(), info.message);
            self.log(out, LogLevel::Info, msg);
        } else {
            self.spawnerr = Some(format!("Bad exit code {}", info.exitstatus));
            self.change_as(ProcessState::Exited, Some(false), pid, ctx, out);
            let msg = format!("exited: {} ({}; not expected)", self.name(), info.message);
            self.log(out, LogLevel::Warn, msg);
        }
        let wait = Duration::from_secs(self.config.restart.restart_delay).max(if early {
            self.backoff_wait()
        } else {
            Duration::ZERO
        });
        if !wait.is_zero() {
            self.delay = Some(ctx.now + wait);
        }
        self.tick(ctx, out);
    }
}
