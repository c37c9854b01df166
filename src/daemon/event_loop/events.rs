//! The event system in the loop (reference section 6): state changes, output and ticks become
//! events offered to the listener pools; what the pools ask for (writes to a listener's stdin,
//! log lines, the listener's protocol log) is done here.

use std::time::SystemTime;

use super::{Channel, EventLoop};
use crate::config::{GroupKind, LogLevel};
use crate::events::capture::{Capture, Output};
use crate::events::pool::{Action as PoolAction, Pool};
use crate::events::types::{self, Event, StateChange};
use crate::supervisor::{ProcId, ProcessState};

/// Our channel as the events module names it.
pub(super) fn event_channel(ch: Channel) -> types::Channel {
    match ch {
        Channel::Stdout => types::Channel::Stdout,
        Channel::Stderr => types::Channel::Stderr,
    }
}

impl EventLoop {
    /// Offers an event to every pool that subscribes to it.
    pub fn notify(&mut self, event: Event) {
        if self.resuming {
            return;
        }
        let mut out = Vec::new();
        self.pools.notify(event, &mut out);
        self.run_pool_actions(out);
    }

    /// The pool of an event listener process, `None` for other processes.
    pub(super) fn listener_pool(&self, id: ProcId) -> Option<(String, String)> {
        let p = self.sup.process(id)?;
        let group = self.sup.group(&p.group)?;
        matches!(group.config.kind, GroupKind::EventListener { .. }).then(|| (p.group.clone(), p.config.name.clone()))
    }

    /// Registers the pool of a listener group (before its PROCESS_GROUP_ADDED is offered: a
    /// pool receives its own).
    pub(super) fn add_pool(&mut self, group: &crate::config::GroupConfig) {
        if let Some(pool) = Pool::from_config(group) {
            self.pools.add(pool);
        }
    }

    /// Removes a pool (before PROCESS_GROUP_REMOVED is offered: a pool never receives its own).
    pub(super) fn remove_pool(&mut self, name: &str) {
        self.pools.remove(name);
    }

    /// Feeds a listener's stdout to its pool's protocol machine. False if `id` is no listener.
    pub(super) fn listener_output(&mut self, id: ProcId, data: &[u8]) -> bool {
        let Some((pool, name)) = self.listener_pool(id) else {
            return false;
        };
        let mut out = Vec::new();
        self.pools.output(&pool, &name, data, &mut out);
        self.run_pool_actions(out);
        true
    }

    pub(super) fn listener_spawned(&mut self, id: ProcId) {
        if let Some((pool, name)) = self.listener_pool(id) {
            let mut out = Vec::new();
            self.pools.spawned(&pool, &name, &mut out);
            self.run_pool_actions(out);
        }
    }

    pub(super) fn listener_exited(&mut self, id: ProcId) {
        if let Some((pool, name)) = self.listener_pool(id) {
            let mut out = Vec::new();
            self.pools.exited(&pool, &name, &mut out);
            self.run_pool_actions(out);
        }
    }

    /// A process changed state: PROCESS_STATE_* (with the pid and tries of that moment), and a
    /// listener becomes able (RUNNING) or unable to take events.
    pub(super) fn state_event(
        &mut self,
        id: ProcId,
        from: ProcessState,
        to: ProcessState,
        expected: Option<bool>,
        pid: u32,
        tries: u32,
    ) {
        let Some(p) = self.sup.process(id) else {
            return;
        };
        let (name, group) = (p.config.name.clone(), p.group.clone());
        let change =
            StateChange { process: &name, group: &group, from, to, tries, expected: expected.unwrap_or(false), pid };
        let event = Event::process_state(&change);
        self.notify(event);
        if let Some((pool, listener)) = self.listener_pool(id) {
            let mut out = Vec::new();
            self.pools.set_running(&pool, &listener, to == ProcessState::Running, &mut out);
            self.run_pool_actions(out);
        }
    }

    /// Capture mode's outputs: normal output, captured output (not in the child log), and the
    /// PROCESS_COMMUNICATION event at END.
    pub(super) fn capture_outputs(&mut self, id: ProcId, ch: Channel, outs: Vec<Output>) {
        for o in outs {
            match o {
                Output::Log(bytes) => self.deliver(id, ch, &bytes, true),
                Output::Captured(bytes) => self.deliver(id, ch, &bytes, false),
                Output::Communication(bytes) => {
                    let Some(p) = self.sup.process(id) else { continue };
                    let (name, group, pid) = (p.config.name.clone(), p.group.clone(), p.pid);
                    self.log.log(LogLevel::Debug, &format!("'{}' {} emitted a comm event", name, ch.name()));
                    self.notify(Event::process_communication(event_channel(ch), &name, &group, pid, &bytes));
                }
            }
        }
    }

    /// At EOF of a pipe: whatever capture mode still holds is delivered (fix of Q3).
    pub(super) fn finish_capture(&mut self, id: ProcId, ch: Channel) {
        let Some(mut capture) = self.io.get_mut(id.0).and_then(|io| io.captures[ch as usize].take()) else {
            return;
        };
        let mut outs = Vec::new();
        capture.finish(&mut outs);
        self.capture_outputs(id, ch, outs);
    }

    /// Fresh capture buffers for a new child.
    pub(super) fn new_captures(&mut self, id: ProcId) {
        let Some(p) = self.sup.process(id) else { return };
        let make = |max: u64| (max > 0).then(|| Capture::new(max));
        let captures = [make(p.config.stdout.capture_maxbytes), make(p.config.stderr.capture_maxbytes)];
        // A listener's stdout is its protocol channel: no capture there.
        let listener = self.listener_pool(id).is_some();
        if let Some(io) = self.io.get_mut(id.0) {
            io.captures = captures;
            if listener {
                io.captures[0] = None;
            }
        }
    }

    /// TICK_* events for the time boundaries passed since the last wakeup.
    pub(super) fn ticks(&mut self, now: SystemTime) {
        for event in self.ticker.check(now) {
            self.notify(event);
        }
    }

    /// How long until the next TICK a pool wants; `None` when none does.
    pub(super) fn tick_timeout(&self, now: SystemTime) -> Option<std::time::Duration> {
        self.ticker.next_deadline(now, |k| self.pools.wants(k))
    }

    pub(super) fn run_pool_actions(&mut self, actions: Vec<PoolAction>) {
        for action in actions {
            match action {
                PoolAction::Log(level, msg) => self.log.log(level, &msg),
                PoolAction::Print(stream, bytes) => print_std(stream, &bytes),
                PoolAction::ChildLog { pool, listener, bytes } => {
                    if let Some(id) = self.sup.find(&pool, &listener) {
                        self.write_child_log(id, Channel::Stdout, &bytes);
                    }
                }
                PoolAction::Write { pool, listener, bytes } => {
                    let written = match self.sup.find(&pool, &listener) {
                        Some(id) => self.send_stdin(id, &bytes).is_ok(),
                        None => false,
                    };
                    if !written {
                        let mut out = Vec::new();
                        self.pools.write_failed(&pool, &listener, &mut out);
                        // Bounded: a failed write re-queues the event for another listener,
                        // and a pool runs out of listeners to try.
                        self.run_pool_actions(out);
                    }
                }
            }
        }
    }
}

/// A result handler writes to the daemon's own stdout or stderr, as in supervisord (where a
/// container's runtime collects it). Failures are dropped: there is nowhere to report them.
fn print_std(stream: crate::events::handler::Stream, bytes: &[u8]) {
    use std::io::Write;
    let _ = match stream {
        crate::events::handler::Stream::Stdout => {
            let mut out = std::io::stdout().lock();
            out.write_all(bytes).and_then(|_| out.flush())
        }
        crate::events::handler::Stream::Stderr => std::io::stderr().lock().write_all(bytes),
    };
}
