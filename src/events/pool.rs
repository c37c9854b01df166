//! Event listener pools (reference 6.2): one per `[eventlistener:x]` group.
//!
//! A pool buffers the events it subscribes to (at most `buffer_size`; when full, the oldest is
//! dropped) and hands each one to the first of its listeners that is RUNNING and READY, in the
//! group's process order. A FAILed event, or one whose listener died while BUSY, goes back to the
//! head of the buffer. `Pools` holds every pool in the order they were added, which is the order
//! events are offered to them, and the global event serial.
//!
//! Nothing here does I/O: each call pushes `Action`s for the loop.

use std::collections::VecDeque;
use std::rc::Rc;

use crate::config::{GroupConfig, GroupKind, LogLevel};

use super::envelope::{envelope, Serial};
use super::handler::{HandlerState, ResultHandler, Stream};
use super::listener::{Input, Listener, ListenerState, Output};
use super::types::{subscribes, Event, EventType};

/// What the loop must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Write an event envelope to the listener's stdin (buffered by the loop until the pipe takes
    /// it). If the pipe is closed (EPIPE), call `Pools::write_failed`.
    Write { pool: String, listener: String, bytes: Vec<u8> },
    /// A line for the main log.
    Log(LogLevel, String),
    /// Bytes a result handler writes to the daemon's own stdout or stderr.
    Print(Stream, Vec<u8>),
    /// Raw protocol bytes read from the listener's stdout, for its `stdout_logfile`.
    ChildLog { pool: String, listener: String, bytes: Vec<u8> },
}

/// An event as a pool holds it: shared between pools, with its serials.
#[derive(Clone, Debug)]
struct Queued {
    event: Rc<Event>,
    serial: u64,
    pool_serial: u64,
}

#[derive(Clone, Debug)]
struct Slot {
    listener: Listener,
    /// The process is RUNNING (only RUNNING listeners receive events; STARTING ones buffer).
    running: bool,
    /// A write to its stdin failed with EPIPE: skip it until it is spawned again.
    stdin_closed: bool,
    /// The event it is BUSY with.
    in_flight: Option<Queued>,
}

/// One `[eventlistener:x]` group.
#[derive(Clone, Debug)]
pub struct Pool {
    name: String,
    events: Vec<String>,
    buffer_size: usize,
    buffer: VecDeque<Queued>,
    serial: Serial,
    slots: Vec<Slot>,
}

impl Pool {
    /// `listeners` are the group's process names, in the group's process order (the order
    /// Supervisor tries them in).
    pub fn new(name: &str, events: Vec<String>, buffer_size: usize, listeners: &[&str]) -> Pool {
        Pool {
            name: name.to_string(),
            events,
            buffer_size: buffer_size.max(1),
            buffer: VecDeque::new(),
            serial: Serial::new(),
            slots: listeners
                .iter()
                .map(|n| Slot { listener: Listener::new(n), running: false, stdin_closed: false, in_flight: None })
                .collect(),
        }
    }

    /// The pool of an `[eventlistener:x]` group; `None` for other groups.
    pub fn from_config(group: &GroupConfig) -> Option<Pool> {
        match &group.kind {
            GroupKind::EventListener { events, buffer_size, result_handler } => {
                let names: Vec<&str> = group.processes.iter().map(|p| p.name.as_str()).collect();
                // The loader refuses a handler that is not built in.
                let handler = ResultHandler::from_spec(result_handler).unwrap_or(ResultHandler::Default);
                Some(Pool::new(&group.name, events.clone(), *buffer_size, &names).with_handler(handler))
            }
            GroupKind::Program | GroupKind::Fcgi { .. } => None,
        }
    }

    /// The pool's `result_handler=`, for all its listeners.
    pub fn with_handler(mut self, handler: ResultHandler) -> Pool {
        for slot in &mut self.slots {
            slot.listener = slot.listener.clone().with_handler(handler);
        }
        self
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn subscribes(&self, kind: EventType) -> bool {
        subscribes(&self.events, kind)
    }

    /// The global serials of the buffered events, oldest first.
    pub fn buffered(&self) -> Vec<u64> {
        self.buffer.iter().map(|q| q.serial).collect()
    }

    pub fn listener_state(&self, listener: &str) -> Option<ListenerState> {
        self.slots.iter().find(|s| s.listener.name() == listener).map(|s| s.listener.state())
    }

    /// Buffers an event: at the tail when new, at the head when it comes back (rejected, or no
    /// listener could take it). When the buffer is full, the oldest event is dropped first.
    fn accept(&mut self, q: Queued, head: bool, rebuffer: bool, out: &mut Vec<Action>) {
        if rebuffer {
            out.push(Action::Log(
                LogLevel::Debug,
                format!(
                    "rebuffering event {} for pool {} (buf size={}, max={})",
                    q.serial,
                    self.name,
                    self.buffer.len(),
                    self.buffer_size
                ),
            ));
        }
        if self.buffer.len() >= self.buffer_size {
            if let Some(dropped) = self.buffer.pop_front() {
                out.push(Action::Log(
                    LogLevel::Error,
                    format!("pool {} event buffer overflowed, discarding event {}", self.name, dropped.serial),
                ));
            }
        }
        if head {
            self.buffer.push_front(q);
        } else {
            self.buffer.push_back(q);
        }
    }

    fn ready_slot(&self) -> Option<usize> {
        self.slots.iter().position(|s| s.running && !s.stdin_closed && s.listener.state() == ListenerState::Ready)
    }

    /// Sends buffered events, oldest first, each to the first RUNNING and READY listener, until
    /// the buffer is empty or nobody can take the next one.
    fn dispatch(&mut self, identifier: &str, out: &mut Vec<Action>) {
        if self.ready_slot().is_none() {
            return; // Supervisor only dispatches when some listener can take an event.
        }
        while let Some(q) = self.buffer.pop_front() {
            let Some(i) = self.ready_slot() else {
                // Nobody free: back to the head, and stop.
                self.accept(q, true, true, out);
                break;
            };
            let slot = &mut self.slots[i];
            let bytes = envelope(identifier, q.serial, &self.name, q.pool_serial, q.event.kind, &q.event.payload);
            let listener = slot.listener.name().to_string();
            let mut ignored = Vec::new();
            slot.listener.handle(Input::EventSent, &mut ignored);
            out.push(Action::Write { pool: self.name.clone(), listener: listener.clone(), bytes });
            out.push(Action::Log(LogLevel::Debug, format!("event {} sent to listener {}", q.serial, listener)));
            slot.in_flight = Some(q);
        }
    }

    /// Feeds one input to listener `i` and applies what it says to the pool.
    fn step(&mut self, i: usize, input: Input<'_>, ctx: Ctx<'_>, out: &mut Vec<Action>) {
        let Ctx { identifier, handlers } = ctx;
        let mut outputs = Vec::new();
        self.slots[i].listener.handle_with(input, handlers, &mut outputs);
        for o in outputs {
            match o {
                Output::Changed { .. } => {}
                Output::Processed => self.slots[i].in_flight = None,
                Output::Rejected => {
                    if let Some(q) = self.slots[i].in_flight.take() {
                        self.accept(q, true, true, out);
                    }
                }
                Output::Log(level, msg) => out.push(Action::Log(level, msg)),
                Output::Print(stream, bytes) => out.push(Action::Print(stream, bytes)),
                Output::ChildLog(bytes) => out.push(Action::ChildLog {
                    pool: self.name.clone(),
                    listener: self.slots[i].listener.name().to_string(),
                    bytes,
                }),
            }
        }
        self.dispatch(identifier, out);
    }

    fn slot_index(&self, listener: &str) -> Option<usize> {
        self.slots.iter().position(|s| s.listener.name() == listener)
    }
}

/// What `Pools` lends a pool that steps a listener.
struct Ctx<'a> {
    identifier: &'a str,
    handlers: &'a mut HandlerState,
}

/// Every pool, in the order they were added, plus the global event serial.
#[derive(Clone, Debug)]
pub struct Pools {
    identifier: String,
    serial: Serial,
    pools: Vec<Pool>,
    /// The result handlers' state, daemon-wide as Python module globals are.
    handlers: HandlerState,
}

impl Pools {
    /// `identifier` is `[supervisord] identifier`, shown as `server:` in envelopes.
    pub fn new(identifier: &str) -> Pools {
        Pools {
            identifier: identifier.to_string(),
            serial: Serial::new(),
            pools: Vec::new(),
            handlers: HandlerState::default(),
        }
    }

    /// After a reload (the global serial keeps counting, as in Supervisor).
    pub fn set_identifier(&mut self, identifier: &str) {
        self.identifier = identifier.to_string();
    }

    /// Adds a pool; it receives events from now on. Add it *before* offering its own
    /// PROCESS_GROUP_ADDED: Supervisor builds the group first, so a pool sees its own addition.
    /// A pool of the same name is replaced.
    pub fn add(&mut self, pool: Pool) {
        self.remove(&pool.name);
        self.pools.push(pool);
    }

    /// Removes a pool and drops its buffered events. Remove it *before* offering its
    /// PROCESS_GROUP_REMOVED (Supervisor unsubscribes first, so a pool never sees its removal).
    pub fn remove(&mut self, name: &str) -> bool {
        let before = self.pools.len();
        self.pools.retain(|p| p.name != name);
        self.pools.len() != before
    }

    pub fn pool(&self, name: &str) -> Option<&Pool> {
        self.pools.iter().find(|p| p.name == name)
    }

    /// Whether any pool subscribes to `kind` (the loop only schedules TICKs that someone wants).
    pub fn wants(&self, kind: EventType) -> bool {
        self.pools.iter().any(|p| p.subscribes(kind))
    }

    /// Offers an event to every pool that subscribes to it, in the order the pools were added,
    /// and dispatches. The global serial is taken when the first pool accepts it, so an event
    /// nobody wants takes none. A pool's own listeners' events are offered to it like any other.
    pub fn notify(&mut self, event: Event, out: &mut Vec<Action>) {
        let event = Rc::new(event);
        let mut serial = None;
        for pool in &mut self.pools {
            if !pool.subscribes(event.kind) {
                continue;
            }
            let serial = *serial.get_or_insert_with(|| self.serial.take());
            let q = Queued { event: Rc::clone(&event), serial, pool_serial: pool.serial.take() };
            pool.accept(q, false, false, out);
            pool.dispatch(&self.identifier, out);
        }
    }

    fn with_slot(&mut self, pool: &str, listener: &str, f: impl FnOnce(&mut Pool, usize, Ctx<'_>)) {
        let ctx = Ctx { identifier: &self.identifier, handlers: &mut self.handlers };
        if let Some(p) = self.pools.iter_mut().find(|p| p.name == pool) {
            if let Some(i) = p.slot_index(listener) {
                f(p, i, ctx);
            }
        }
        // Unknown names are stale reports (the pool was removed meanwhile): ignored.
    }

    /// Upgrade in place: a listener goes on in the protocol state the old daemon left it in (an
    /// event it was BUSY with was the old daemon's: its result is taken and dropped).
    pub fn resume(&mut self, pool: &str, listener: &str, state: ListenerState, running: bool) {
        self.with_slot(pool, listener, |p, i, _| {
            p.slots[i].running = running;
            p.slots[i].listener.resume(state);
        });
    }

    /// The listener process was forked: its protocol starts over in ACKNOWLEDGED.
    pub fn spawned(&mut self, pool: &str, listener: &str, out: &mut Vec<Action>) {
        self.with_slot(pool, listener, |p, i, id| {
            p.slots[i].stdin_closed = false;
            if let Some(q) = p.slots[i].in_flight.take() {
                p.accept(q, true, true, out); // an exit was never reported: give the event back
            }
            p.step(i, Input::Spawned, id, out);
        });
    }

    /// The listener process entered `running` = RUNNING or left it. Call on every state change of
    /// a listener process; entering RUNNING lets it receive the events buffered meanwhile.
    pub fn set_running(&mut self, pool: &str, listener: &str, running: bool, out: &mut Vec<Action>) {
        self.with_slot(pool, listener, |p, i, ctx| {
            p.slots[i].running = running;
            p.dispatch(ctx.identifier, out);
        });
    }

    /// Bytes read from the listener's stdout (its protocol channel).
    pub fn output(&mut self, pool: &str, listener: &str, bytes: &[u8], out: &mut Vec<Action>) {
        self.with_slot(pool, listener, |p, i, id| p.step(i, Input::Output(bytes), id, out));
    }

    /// The listener process was reaped: an event it was BUSY with goes back to the head of the
    /// buffer. Feed its remaining stdout before this, as far as it was read.
    pub fn exited(&mut self, pool: &str, listener: &str, out: &mut Vec<Action>) {
        self.with_slot(pool, listener, |p, i, id| {
            p.slots[i].running = false;
            p.step(i, Input::Exited, id, out);
        });
    }

    /// Writing an envelope to the listener's stdin failed with EPIPE. The event goes back to the
    /// head and is offered to the next listener; this one gets nothing until it is spawned again.
    pub fn write_failed(&mut self, pool: &str, listener: &str, out: &mut Vec<Action>) {
        self.with_slot(pool, listener, |p, i, ctx| {
            let slot = &mut p.slots[i];
            slot.stdin_closed = true;
            let Some(q) = slot.in_flight.take() else { return };
            out.push(Action::Log(
                LogLevel::Debug,
                format!(
                    "epipe occurred while sending event {} to listener {}, listener state unchanged",
                    q.serial,
                    slot.listener.name()
                ),
            ));
            let mut ignored = Vec::new();
            slot.listener.handle(Input::WriteFailed, &mut ignored);
            p.accept(q, true, false, out);
            p.dispatch(ctx.identifier, out);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::types::Channel;

    fn writes(out: &[Action]) -> Vec<(String, String)> {
        out.iter()
            .filter_map(|a| match a {
                Action::Write { listener, bytes, .. } => {
                    let text = String::from_utf8_lossy(bytes);
                    let header = text.split('\n').next().unwrap_or("").to_string();
                    Some((listener.clone(), header))
                }
                _ => None,
            })
            .collect()
    }

    fn logs(out: &[Action]) -> Vec<(LogLevel, String)> {
        out.iter()
            .filter_map(|a| match a {
                Action::Log(level, msg) => Some((*level, msg.clone())),
                _ => None,
            })
            .collect()
    }

    fn pools(events: &[&str], buffer_size: usize, listeners: &[&str]) -> Pools {
        let mut ps = Pools::new("myid");
        ps.add(Pool::new("lis", events.iter().map(|s| s.to_string()).collect(), buffer_size, listeners));
        ps
    }

    fn start(ps: &mut Pools, listener: &str) -> Vec<Action> {
        let mut out = Vec::new();
        ps.spawned("lis", listener, &mut out);
        ps.output("lis", listener, b"READY\n", &mut out);
        ps.set_running("lis", listener, true, &mut out);
        out
    }

    fn remote(n: u32) -> Event {
        Event::remote_communication("t", &n.to_string())
    }

    #[test]
    fn events_wait_in_the_buffer_until_a_listener_is_running_and_ready() {
        let mut ps = pools(&["EVENT"], 10, &["lis"]);
        let mut out = Vec::new();
        ps.notify(Event::group_added("lis"), &mut out);
        ps.spawned("lis", "lis", &mut out);
        ps.output("lis", "lis", b"READY\n", &mut out); // READY while STARTING: still buffered
        assert!(writes(&out).is_empty());
        ps.set_running("lis", "lis", true, &mut out);
        assert_eq!(
            writes(&out),
            [(
                "lis".to_string(),
                "ver:3.0 server:myid serial:0 pool:lis poolserial:0 eventname:PROCESS_GROUP_ADDED len:14".to_string()
            )]
        );
        let full = out.iter().find_map(|a| match a {
            Action::Write { bytes, .. } => Some(bytes.clone()),
            _ => None,
        });
        assert_eq!(
            full.as_deref(),
            Some(&b"ver:3.0 server:myid serial:0 pool:lis poolserial:0 eventname:PROCESS_GROUP_ADDED len:14\ngroupname:lis\n"[..])
        );
        assert!(logs(&out).contains(&(LogLevel::Debug, "event 0 sent to listener lis".to_string())));
    }

    #[test]
    fn overflow_drops_the_oldest_with_supervisors_message() {
        let mut ps = pools(&["EVENT"], 3, &["lis"]);
        let mut out = Vec::new();
        for n in 0..5 {
            ps.notify(remote(n), &mut out);
        }
        assert_eq!(ps.pool("lis").map(|p| p.buffered()), Some(vec![2, 3, 4]));
        assert_eq!(
            logs(&out),
            [
                (LogLevel::Error, "pool lis event buffer overflowed, discarding event 0".to_string()),
                (LogLevel::Error, "pool lis event buffer overflowed, discarding event 1".to_string()),
            ]
        );
    }

    #[test]
    fn events_go_out_in_order_one_at_a_time_per_listener() {
        let mut ps = pools(&["REMOTE_COMMUNICATION"], 10, &["lis"]);
        let mut out = Vec::new();
        for n in 0..3 {
            ps.notify(remote(n), &mut out);
        }
        let out = start(&mut ps, "lis");
        assert_eq!(writes(&out).len(), 1);
        assert!(writes(&out)[0].1.contains("serial:0 "));
        assert!(logs(&out).contains(&(LogLevel::Debug, "rebuffering event 1 for pool lis (buf size=1, max=10)".into())));
        let mut out = Vec::new();
        ps.output("lis", "lis", b"RESULT 2\nOKREADY\n", &mut out);
        assert_eq!(writes(&out).len(), 1);
        assert!(writes(&out)[0].1.contains("serial:1 "));
        ps.output("lis", "lis", b"RESULT 2\nOKREADY\n", &mut out);
        ps.output("lis", "lis", b"RESULT 2\nOKREADY\n", &mut out);
        assert_eq!(writes(&out).len(), 2);
        assert!(writes(&out)[1].1.contains("serial:2 "));
        assert_eq!(ps.pool("lis").map(|p| p.buffered()), Some(vec![]));
    }

    #[test]
    fn the_first_running_ready_listener_in_process_order_gets_the_event() {
        let mut ps = pools(&["EVENT"], 10, &["lis_0", "lis_1", "lis_2"]);
        start(&mut ps, "lis_2");
        start(&mut ps, "lis_1");
        let mut out = Vec::new();
        ps.notify(remote(0), &mut out);
        ps.notify(remote(1), &mut out);
        ps.notify(remote(2), &mut out);
        let to: Vec<String> = writes(&out).into_iter().map(|(l, _)| l).collect();
        assert_eq!(to, ["lis_1", "lis_2"]);
        assert_eq!(ps.pool("lis").map(|p| p.buffered()), Some(vec![2]));
    }

    #[test]
    fn a_failed_event_goes_back_to_the_head_and_is_sent_again() {
        let mut ps = pools(&["EVENT"], 10, &["lis"]);
        start(&mut ps, "lis");
        let mut out = Vec::new();
        ps.notify(remote(0), &mut out);
        ps.notify(remote(1), &mut out);
        let mut out = Vec::new();
        ps.output("lis", "lis", b"RESULT 4\nFAIL", &mut out);
        assert_eq!(ps.pool("lis").map(|p| p.buffered()), Some(vec![0, 1]));
        assert!(logs(&out).contains(&(LogLevel::Warn, "lis: event was rejected".into())));
        assert!(logs(&out).contains(&(LogLevel::Debug, "rebuffering event 0 for pool lis (buf size=1, max=10)".into())));
        ps.output("lis", "lis", b"READY\n", &mut out);
        assert_eq!(writes(&out).len(), 1);
        // The same serials again: it is the same event.
        assert!(writes(&out)[0].1.contains("serial:0 pool:lis poolserial:0 "));
    }

    #[test]
    fn a_rejected_event_coming_back_to_a_full_buffer_drops_the_oldest() {
        let mut ps = pools(&["EVENT"], 2, &["lis"]);
        start(&mut ps, "lis");
        let mut out = Vec::new();
        for n in 0..3 {
            ps.notify(remote(n), &mut out); // 0 in flight, 1 and 2 buffered
        }
        let mut out = Vec::new();
        ps.output("lis", "lis", b"RESULT 4\nFAIL", &mut out);
        assert_eq!(ps.pool("lis").map(|p| p.buffered()), Some(vec![0, 2]));
        assert!(logs(&out).contains(&(LogLevel::Error, "pool lis event buffer overflowed, discarding event 1".into())));
    }

    #[test]
    fn a_listener_that_dies_while_busy_gets_its_event_requeued() {
        let mut ps = pools(&["EVENT"], 10, &["lis_0", "lis_1"]);
        start(&mut ps, "lis_0");
        let mut out = Vec::new();
        ps.notify(remote(0), &mut out);
        ps.notify(remote(1), &mut out);
        let mut out = Vec::new();
        ps.set_running("lis", "lis_0", false, &mut out);
        ps.exited("lis", "lis_0", &mut out);
        assert_eq!(ps.pool("lis").map(|p| p.buffered()), Some(vec![0, 1]));
        // Another listener takes it, head first.
        let out = start(&mut ps, "lis_1");
        assert!(writes(&out)[0].1.contains("serial:0 "));
        assert_eq!(ps.pool("lis").and_then(|p| p.listener_state("lis_0")), Some(ListenerState::Busy));
        let mut out = Vec::new();
        ps.spawned("lis", "lis_0", &mut out);
        assert_eq!(ps.pool("lis").and_then(|p| p.listener_state("lis_0")), Some(ListenerState::Acknowledged));
    }

    #[test]
    fn a_broken_listener_stops_receiving_and_the_event_is_requeued() {
        let mut ps = pools(&["EVENT"], 10, &["lis"]);
        start(&mut ps, "lis");
        let mut out = Vec::new();
        ps.notify(remote(0), &mut out);
        let mut out = Vec::new();
        ps.output("lis", "lis", b"garbage\n", &mut out);
        assert_eq!(ps.pool("lis").and_then(|p| p.listener_state("lis")), Some(ListenerState::Unknown));
        assert_eq!(ps.pool("lis").map(|p| p.buffered()), Some(vec![0]));
        ps.notify(remote(1), &mut out);
        assert!(writes(&out).is_empty());
    }

    #[test]
    fn epipe_moves_the_event_to_the_next_listener() {
        let mut ps = pools(&["EVENT"], 10, &["lis_0", "lis_1"]);
        start(&mut ps, "lis_0");
        start(&mut ps, "lis_1");
        let mut out = Vec::new();
        ps.notify(remote(0), &mut out);
        assert_eq!(writes(&out)[0].0, "lis_0");
        let mut out = Vec::new();
        ps.write_failed("lis", "lis_0", &mut out);
        assert_eq!(writes(&out), [("lis_1".into(), writes_header(0))]);
        assert!(logs(&out).contains(&(
            LogLevel::Debug,
            "epipe occurred while sending event 0 to listener lis_0, listener state unchanged".into()
        )));
        assert_eq!(ps.pool("lis").and_then(|p| p.listener_state("lis_0")), Some(ListenerState::Ready));
    }

    fn writes_header(serial: u64) -> String {
        format!("ver:3.0 server:myid serial:{serial} pool:lis poolserial:{serial} eventname:REMOTE_COMMUNICATION len:8")
    }

    #[test]
    fn global_serial_is_shared_and_pool_serials_are_per_pool() {
        let mut ps = Pools::new("myid");
        ps.add(Pool::new("a", vec!["PROCESS_LOG".into()], 10, &["a"]));
        ps.add(Pool::new("b", vec!["EVENT".into()], 10, &["b"]));
        let mut out = Vec::new();
        ps.notify(Event::tick(EventType::Tick5, 5), &mut out); // only b: serial 0
        ps.notify(Event::process_log(Channel::Stdout, "p", "p", 1, b"x"), &mut out); // a and b: serial 1
        ps.notify(Event::supervisor_running(), &mut out); // only b: serial 2
        assert_eq!(ps.pool("a").map(|p| p.buffered()), Some(vec![1]));
        assert_eq!(ps.pool("b").map(|p| p.buffered()), Some(vec![0, 1, 2]));
        let mut out = Vec::new();
        for name in ["a", "b"] {
            ps.spawned(name, name, &mut out);
            ps.output(name, name, b"READY\n", &mut out);
            ps.set_running(name, name, true, &mut out);
        }
        let headers = writes(&out);
        assert!(headers[0]
            .1
            .starts_with("ver:3.0 server:myid serial:1 pool:a poolserial:0 eventname:PROCESS_LOG_STDOUT"));
        assert!(headers[1].1.starts_with("ver:3.0 server:myid serial:0 pool:b poolserial:0 eventname:TICK_5"));
        // An event nobody subscribes to takes no serial.
        let mut ps = Pools::new("myid");
        ps.add(Pool::new("a", vec!["TICK_60".into()], 10, &["a"]));
        ps.notify(Event::tick(EventType::Tick5, 5), &mut out);
        ps.notify(Event::tick(EventType::Tick60, 60), &mut out);
        assert_eq!(ps.pool("a").map(|p| p.buffered()), Some(vec![0]));
    }

    #[test]
    fn an_event_matching_two_subscriptions_is_delivered_once() {
        let mut ps = pools(&["PROCESS_STATE_RUNNING", "PROCESS_STATE"], 10, &["lis"]);
        let mut out = Vec::new();
        ps.notify(remote(0), &mut out);
        ps.notify(Event::group_added("x"), &mut out);
        assert_eq!(ps.pool("lis").map(|p| p.buffered()), Some(vec![]));
        let change = crate::events::StateChange {
            process: "lis",
            group: "lis",
            from: crate::supervisor::state::ProcessState::Starting,
            to: crate::supervisor::state::ProcessState::Running,
            tries: 0,
            expected: true,
            pid: 7,
        };
        // A pool receives its own listeners' state events.
        ps.notify(Event::process_state(&change), &mut out);
        assert_eq!(ps.pool("lis").map(|p| p.buffered()), Some(vec![0]));
    }

    #[test]
    fn pools_are_offered_events_in_the_order_they_were_added_and_removal_drops_them() {
        let mut ps = Pools::new("id");
        ps.add(Pool::new("b", vec!["EVENT".into()], 10, &["b"]));
        ps.add(Pool::new("a", vec!["EVENT".into()], 10, &["a"]));
        let mut out = Vec::new();
        ps.notify(Event::group_added("a"), &mut out);
        assert!(ps.wants(EventType::Tick3600));
        assert!(ps.remove("b"));
        assert!(!ps.remove("b"));
        ps.add(Pool::new("b", vec!["TICK_5".into()], 10, &["b"]));
        ps.notify(Event::tick(EventType::Tick5, 5), &mut out);
        assert_eq!(ps.pool("a").map(|p| p.buffered()), Some(vec![0, 1]));
        assert_eq!(ps.pool("b").map(|p| p.buffered()), Some(vec![1]));
        // Reports about unknown pools or listeners are ignored.
        ps.output("nope", "x", b"READY\n", &mut out);
        ps.exited("a", "nope", &mut out);
    }

    #[test]
    fn protocol_traffic_is_returned_for_the_stdout_log() {
        let mut ps = pools(&["EVENT"], 10, &["lis"]);
        let out = start(&mut ps, "lis");
        assert!(out.contains(&Action::ChildLog {
            pool: "lis".into(),
            listener: "lis".into(),
            bytes: b"READY\n".to_vec()
        }));
    }

    #[test]
    fn fail_then_bad_result_line_logs_exactly_as_supervisor() {
        // Recorded from Supervisor 4.3.0 (main log at debug, after the first send): the listener
        // answers FAIL, gets the same event again, then sends a bad result line.
        let mut ps = Pools::new("supervisor");
        ps.add(Pool::new("bad", vec!["SUPERVISOR_STATE_CHANGE_RUNNING".into()], 10, &["bad"]));
        let mut out = Vec::new();
        ps.notify(Event::supervisor_running(), &mut out);
        ps.spawned("bad", "bad", &mut out);
        ps.output("bad", "bad", b"READY\n", &mut out);
        ps.set_running("bad", "bad", true, &mut out);
        let mut out = Vec::new();
        ps.output("bad", "bad", b"RESULT 4\nFAIL", &mut out);
        ps.output("bad", "bad", b"READY\n", &mut out);
        ps.output("bad", "bad", b"RESULT two\n", &mut out);
        let want = [
            "DEBG 'bad' stdout output:\nb'RESULT 4\\nFAIL'",
            "WARN bad: event was rejected",
            "DEBG bad: BUSY -> ACKNOWLEDGED",
            "DEBG rebuffering event 0 for pool bad (buf size=0, max=10)",
            "DEBG 'bad' stdout output:\nb'READY\\n'",
            "DEBG bad: ACKNOWLEDGED -> READY",
            "DEBG event 0 sent to listener bad",
            "DEBG 'bad' stdout output:\nb'RESULT two\\n'",
            "WARN bad: bad result line: 'RESULT two'",
            "DEBG bad: BUSY -> UNKNOWN",
            "WARN bad: has entered the UNKNOWN state and will no longer receive events, this usually indicates the \
             process violated the eventlistener protocol",
            "DEBG rebuffering event 0 for pool bad (buf size=0, max=10)",
        ];
        let got: Vec<String> = logs(&out).into_iter().map(|(l, m)| format!("{} {m}", l.tag())).collect();
        assert_eq!(got, want);
        assert_eq!(
            writes(&out),
            [(
                "bad".to_string(),
                "ver:3.0 server:supervisor serial:0 pool:bad poolserial:0 eventname:SUPERVISOR_STATE_CHANGE_RUNNING len:0"
                    .to_string()
            )]
        );
    }

    #[test]
    fn boot_sequence_serials_and_overflow_match_supervisor() {
        // Recorded from Supervisor 4.3.0: groups dup (PROCESS_STATE_RUNNING,PROCESS_STATE), lis
        // (EVENT, buffer 10) and emitter, added in that order; lis's listener becomes RUNNING
        // after 12 events, so events 0 and 1 overflow; the first event lis receives is serial 2.
        let mut ps = Pools::new("myid");
        let mut out = Vec::new();
        ps.add(Pool::new("dup", vec!["PROCESS_STATE_RUNNING".into(), "PROCESS_STATE".into()], 10, &["dup"]));
        ps.notify(Event::group_added("dup"), &mut out); // nobody wants it: no serial
        ps.add(Pool::new("lis", vec!["EVENT".into()], 10, &["lis"]));
        ps.notify(Event::group_added("lis"), &mut out); // 0
        ps.notify(Event::group_added("emitter"), &mut out); // 1
        ps.notify(Event::supervisor_running(), &mut out); // 2
        for n in 3..12 {
            ps.notify(remote(n), &mut out); // 3..=11 stand for STARTING, logs and RUNNING events
        }
        let early: Vec<String> = logs(&out).into_iter().map(|(l, m)| format!("{} {m}", l.tag())).collect();
        assert_eq!(
            early,
            [
                "ERRO pool lis event buffer overflowed, discarding event 0",
                "ERRO pool lis event buffer overflowed, discarding event 1"
            ]
        );
        let mut out = Vec::new();
        ps.spawned("lis", "lis", &mut out);
        ps.output("lis", "lis", b"READY\n", &mut out);
        let mut out = Vec::new();
        ps.set_running("lis", "lis", true, &mut out);
        let got: Vec<String> = logs(&out).into_iter().map(|(l, m)| format!("{} {m}", l.tag())).collect();
        assert_eq!(
            got,
            ["DEBG event 2 sent to listener lis", "DEBG rebuffering event 3 for pool lis (buf size=8, max=10)"]
        );
        assert_eq!(
            writes(&out)[0].1,
            "ver:3.0 server:myid serial:2 pool:lis poolserial:2 eventname:SUPERVISOR_STATE_CHANGE_RUNNING len:0"
        );
    }
}
