//! Event types, their hierarchy and their payloads (reference 6.1).
//!
//! Every event that is emitted has a concrete type (`EventType`). The abstract types (`EVENT`,
//! `PROCESS_STATE`, `TICK` ...) exist only as names a listener may subscribe to; Supervisor
//! matches them with `isinstance`, so an abstract name receives all its subtypes.

use crate::supervisor::state::ProcessState;

/// A concrete event type, named as `eventname:` shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventType {
    ProcessStateStopped,
    ProcessStateExited,
    ProcessStateStarting,
    ProcessStateStopping,
    ProcessStateBackoff,
    ProcessStateFatal,
    ProcessStateRunning,
    ProcessStateUnknown,
    ProcessCommunicationStdout,
    ProcessCommunicationStderr,
    ProcessLogStdout,
    ProcessLogStderr,
    RemoteCommunication,
    SupervisorStateChangeRunning,
    SupervisorStateChangeStopping,
    Tick5,
    Tick60,
    Tick3600,
    ProcessGroupAdded,
    ProcessGroupRemoved,
    /// minisv's own: the kernel's OOM killer ended a process in its cgroup (`memory_max=`).
    ProcessOom,
}

/// The abstract types (subscribable, never emitted).
pub const ABSTRACT_TYPES: [&str; 7] = [
    "EVENT",
    "PROCESS_STATE",
    "PROCESS_COMMUNICATION",
    "PROCESS_LOG",
    "SUPERVISOR_STATE_CHANGE",
    "TICK",
    "PROCESS_GROUP",
];

impl EventType {
    pub const ALL: [EventType; 21] = [
        EventType::ProcessStateStopped,
        EventType::ProcessStateExited,
        EventType::ProcessStateStarting,
        EventType::ProcessStateStopping,
        EventType::ProcessStateBackoff,
        EventType::ProcessStateFatal,
        EventType::ProcessStateRunning,
        EventType::ProcessStateUnknown,
        EventType::ProcessCommunicationStdout,
        EventType::ProcessCommunicationStderr,
        EventType::ProcessLogStdout,
        EventType::ProcessLogStderr,
        EventType::RemoteCommunication,
        EventType::SupervisorStateChangeRunning,
        EventType::SupervisorStateChangeStopping,
        EventType::Tick5,
        EventType::Tick60,
        EventType::Tick3600,
        EventType::ProcessGroupAdded,
        EventType::ProcessGroupRemoved,
        EventType::ProcessOom,
    ];

    pub fn name(self) -> &'static str {
        match self {
            EventType::ProcessStateStopped => "PROCESS_STATE_STOPPED",
            EventType::ProcessStateExited => "PROCESS_STATE_EXITED",
            EventType::ProcessStateStarting => "PROCESS_STATE_STARTING",
            EventType::ProcessStateStopping => "PROCESS_STATE_STOPPING",
            EventType::ProcessStateBackoff => "PROCESS_STATE_BACKOFF",
            EventType::ProcessStateFatal => "PROCESS_STATE_FATAL",
            EventType::ProcessStateRunning => "PROCESS_STATE_RUNNING",
            EventType::ProcessStateUnknown => "PROCESS_STATE_UNKNOWN",
            EventType::ProcessCommunicationStdout => "PROCESS_COMMUNICATION_STDOUT",
            EventType::ProcessCommunicationStderr => "PROCESS_COMMUNICATION_STDERR",
            EventType::ProcessLogStdout => "PROCESS_LOG_STDOUT",
            EventType::ProcessLogStderr => "PROCESS_LOG_STDERR",
            EventType::RemoteCommunication => "REMOTE_COMMUNICATION",
            EventType::SupervisorStateChangeRunning => "SUPERVISOR_STATE_CHANGE_RUNNING",
            EventType::SupervisorStateChangeStopping => "SUPERVISOR_STATE_CHANGE_STOPPING",
            EventType::Tick5 => "TICK_5",
            EventType::Tick60 => "TICK_60",
            EventType::Tick3600 => "TICK_3600",
            EventType::ProcessGroupAdded => "PROCESS_GROUP_ADDED",
            EventType::ProcessGroupRemoved => "PROCESS_GROUP_REMOVED",
            EventType::ProcessOom => "PROCESS_OOM",
        }
    }

    /// The abstract type directly above this one (`EVENT` is above all of them).
    pub fn parent(self) -> Option<&'static str> {
        match self {
            EventType::ProcessStateStopped
            | EventType::ProcessStateExited
            | EventType::ProcessStateStarting
            | EventType::ProcessStateStopping
            | EventType::ProcessStateBackoff
            | EventType::ProcessStateFatal
            | EventType::ProcessStateRunning
            | EventType::ProcessStateUnknown => Some("PROCESS_STATE"),
            EventType::ProcessCommunicationStdout | EventType::ProcessCommunicationStderr => {
                Some("PROCESS_COMMUNICATION")
            }
            EventType::ProcessLogStdout | EventType::ProcessLogStderr => Some("PROCESS_LOG"),
            EventType::SupervisorStateChangeRunning | EventType::SupervisorStateChangeStopping => {
                Some("SUPERVISOR_STATE_CHANGE")
            }
            EventType::Tick5 | EventType::Tick60 | EventType::Tick3600 => Some("TICK"),
            EventType::ProcessGroupAdded | EventType::ProcessGroupRemoved => Some("PROCESS_GROUP"),
            // REMOTE_COMMUNICATION (and minisv's PROCESS_OOM) derive from Event directly.
            EventType::RemoteCommunication | EventType::ProcessOom => None,
        }
    }

    /// Whether a subscription to `name` (concrete or abstract) receives this type.
    pub fn is_a(self, name: &str) -> bool {
        name == "EVENT" || name == self.name() || self.parent() == Some(name)
    }

    /// The state event raised on entering `state`.
    pub fn for_state(state: ProcessState) -> EventType {
        match state {
            ProcessState::Stopped => EventType::ProcessStateStopped,
            ProcessState::Starting => EventType::ProcessStateStarting,
            ProcessState::Running => EventType::ProcessStateRunning,
            ProcessState::Backoff => EventType::ProcessStateBackoff,
            ProcessState::Stopping => EventType::ProcessStateStopping,
            ProcessState::Exited => EventType::ProcessStateExited,
            ProcessState::Fatal => EventType::ProcessStateFatal,
            ProcessState::Unknown => EventType::ProcessStateUnknown,
        }
    }

    /// The TICK period in seconds, for the three TICK types.
    pub fn tick_period(self) -> Option<u64> {
        match self {
            EventType::Tick5 => Some(5),
            EventType::Tick60 => Some(60),
            EventType::Tick3600 => Some(3600),
            EventType::ProcessStateStopped
            | EventType::ProcessStateExited
            | EventType::ProcessStateStarting
            | EventType::ProcessStateStopping
            | EventType::ProcessStateBackoff
            | EventType::ProcessStateFatal
            | EventType::ProcessStateRunning
            | EventType::ProcessStateUnknown
            | EventType::ProcessCommunicationStdout
            | EventType::ProcessCommunicationStderr
            | EventType::ProcessLogStdout
            | EventType::ProcessLogStderr
            | EventType::RemoteCommunication
            | EventType::SupervisorStateChangeRunning
            | EventType::SupervisorStateChangeStopping
            | EventType::ProcessGroupAdded
            | EventType::ProcessGroupRemoved
            | EventType::ProcessOom => None,
        }
    }
}

/// Whether a pool with `events=subscribed` receives an event of type `event`.
///
/// Supervisor registers one callback per subscribed name, so a pool that names two types matching
/// the same event (`EVENT,TICK_5`) buffers and delivers it twice, with the same serials (verified
/// against 4.3.0). minisv delivers it once: the answer here is a yes or no.
pub fn subscribes(subscribed: &[String], event: EventType) -> bool {
    subscribed.iter().any(|name| event.is_a(name))
}

/// An output channel of a process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Channel {
    Stdout,
    Stderr,
}

impl Channel {
    pub fn name(self) -> &'static str {
        match self {
            Channel::Stdout => "stdout",
            Channel::Stderr => "stderr",
        }
    }
}

/// A process state change, with the values taken when it happened (before the pid is reset).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StateChange<'a> {
    pub process: &'a str,
    pub group: &'a str,
    pub from: ProcessState,
    pub to: ProcessState,
    /// The backoff counter (0 on a fresh start; 1 on the first failure).
    pub tries: u32,
    /// Only PROCESS_STATE_EXITED shows it.
    pub expected: bool,
    pub pid: u32,
}

/// One event: its type and its payload, exactly as a listener receives it after the header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub kind: EventType,
    /// Always valid UTF-8 when built by the constructors below (data that is not is replaced by
    /// `Undecodable: b'...'`, as Supervisor does).
    pub payload: Vec<u8>,
}

impl Event {
    /// PROCESS_STATE_*: `processname:x groupname:g from_state:S` plus `tries:N` (STARTING,
    /// BACKOFF), `pid:N` (RUNNING, STOPPING, STOPPED) or `expected:0|1 pid:N` (EXITED). No
    /// trailing newline.
    pub fn process_state(change: &StateChange<'_>) -> Event {
        let mut s =
            format!("processname:{} groupname:{} from_state:{}", change.process, change.group, change.from.name());
        match change.to {
            ProcessState::Starting | ProcessState::Backoff => s.push_str(&format!(" tries:{}", change.tries)),
            ProcessState::Running | ProcessState::Stopping | ProcessState::Stopped => {
                s.push_str(&format!(" pid:{}", change.pid))
            }
            ProcessState::Exited => s.push_str(&format!(" expected:{} pid:{}", u8::from(change.expected), change.pid)),
            ProcessState::Fatal | ProcessState::Unknown => {}
        }
        Event { kind: EventType::for_state(change.to), payload: s.into_bytes() }
    }

    /// PROCESS_LOG_STDOUT/STDERR: `processname:x groupname:g pid:N channel:stdout\n<data>`.
    pub fn process_log(channel: Channel, process: &str, group: &str, pid: u32, data: &[u8]) -> Event {
        let kind = match channel {
            Channel::Stdout => EventType::ProcessLogStdout,
            Channel::Stderr => EventType::ProcessLogStderr,
        };
        let mut payload =
            format!("processname:{process} groupname:{group} pid:{pid} channel:{}\n", channel.name()).into_bytes();
        push_text(&mut payload, data);
        Event { kind, payload }
    }

    /// PROCESS_COMMUNICATION_STDOUT/STDERR: `processname:x groupname:g pid:N\n<data>`.
    pub fn process_communication(channel: Channel, process: &str, group: &str, pid: u32, data: &[u8]) -> Event {
        let kind = match channel {
            Channel::Stdout => EventType::ProcessCommunicationStdout,
            Channel::Stderr => EventType::ProcessCommunicationStderr,
        };
        let mut payload = format!("processname:{process} groupname:{group} pid:{pid}\n").into_bytes();
        push_text(&mut payload, data);
        Event { kind, payload }
    }

    /// REMOTE_COMMUNICATION (`supervisor.sendRemoteCommEvent`): `type:<type>\n<data>`.
    pub fn remote_communication(kind: &str, data: &str) -> Event {
        Event { kind: EventType::RemoteCommunication, payload: format!("type:{kind}\n{data}").into_bytes() }
    }

    /// SUPERVISOR_STATE_CHANGE_RUNNING: the main loop starts (each start or reload). Empty.
    pub fn supervisor_running() -> Event {
        Event { kind: EventType::SupervisorStateChangeRunning, payload: Vec::new() }
    }

    /// SUPERVISOR_STATE_CHANGE_STOPPING: shutdown or reload begins. Empty.
    pub fn supervisor_stopping() -> Event {
        Event { kind: EventType::SupervisorStateChangeStopping, payload: Vec::new() }
    }

    /// TICK_5/60/3600: `when:<boundary>`. `kind` must be a TICK type.
    pub fn tick(kind: EventType, when: u64) -> Event {
        Event { kind, payload: format!("when:{when}").into_bytes() }
    }

    /// PROCESS_OOM (minisv's own): `processname:x groupname:g pid:N memory_max:BYTES`, sent
    /// when a process of a program with `memory_max=` exits by SIGKILL with an OOM kill counted
    /// in its cgroup (`memory_max:max` when the limit is `max`).
    pub fn process_oom(process: &str, group: &str, pid: u32, memory_max: Option<u64>) -> Event {
        let max = match memory_max {
            Some(m) if m != u64::MAX => m.to_string(),
            _ => "max".to_string(),
        };
        let payload = format!("processname:{process} groupname:{group} pid:{pid} memory_max:{max}");
        Event { kind: EventType::ProcessOom, payload: payload.into_bytes() }
    }

    /// PROCESS_GROUP_ADDED: `groupname:g\n` (with the trailing newline).
    pub fn group_added(group: &str) -> Event {
        Event { kind: EventType::ProcessGroupAdded, payload: format!("groupname:{group}\n").into_bytes() }
    }

    /// PROCESS_GROUP_REMOVED: `groupname:g\n` (with the trailing newline).
    pub fn group_removed(group: &str) -> Event {
        Event { kind: EventType::ProcessGroupRemoved, payload: format!("groupname:{group}\n").into_bytes() }
    }
}

/// Appends child output to a payload the way Supervisor renders it: as is when it is valid
/// UTF-8, otherwise the whole chunk as `Undecodable: b'...'` (Python's bytes repr).
fn push_text(payload: &mut Vec<u8>, data: &[u8]) {
    if std::str::from_utf8(data).is_ok() {
        payload.extend_from_slice(data);
    } else {
        payload.extend_from_slice(b"Undecodable: ");
        payload.extend_from_slice(py_bytes_repr(data).as_bytes());
    }
}

/// Python's `repr()` of a bytes object: `b'...'`, or `b"..."` when the data holds `'` but no `"`.
pub fn py_bytes_repr(data: &[u8]) -> String {
    let quote = if data.contains(&b'\'') && !data.contains(&b'"') { b'"' } else { b'\'' };
    let mut out = String::with_capacity(data.len() + 3);
    out.push('b');
    out.push(quote as char);
    for &b in data {
        match b {
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            b if b == quote => {
                out.push('\\');
                out.push(b as char);
            }
            0x20..=0x7e => out.push(b as char),
            b => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out.push(quote as char);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::options::EVENT_TYPES;

    fn subs(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    fn change(to: ProcessState, from: ProcessState) -> StateChange<'static> {
        StateChange { process: "emitter", group: "emitter", from, to, tries: 0, expected: true, pid: 5492 }
    }

    fn text(e: &Event) -> &str {
        std::str::from_utf8(&e.payload).unwrap_or("<not utf-8>")
    }

    #[test]
    fn every_config_event_name_is_a_concrete_or_abstract_type() {
        let mut known: Vec<&str> = EventType::ALL.iter().map(|t| t.name()).collect();
        known.extend(ABSTRACT_TYPES);
        known.sort_unstable();
        let mut config: Vec<&str> = EVENT_TYPES.to_vec();
        config.sort_unstable();
        assert_eq!(known, config);
    }

    #[test]
    fn an_oom_kill_names_the_process_and_its_limit() {
        let e = Event::process_oom("web", "web", 4242, Some(512 << 20));
        assert_eq!(text(&e), "processname:web groupname:web pid:4242 memory_max:536870912");
        assert_eq!(e.kind.name(), "PROCESS_OOM");
        assert_eq!(text(&Event::process_oom("w", "g", 1, None)), "processname:w groupname:g pid:1 memory_max:max");
        assert!(subscribes(&subs(&["EVENT"]), e.kind) && !subscribes(&subs(&["PROCESS_STATE"]), e.kind));
    }

    #[test]
    fn event_matches_everything_including_ticks() {
        for t in EventType::ALL {
            assert!(subscribes(&subs(&["EVENT"]), t), "{}", t.name());
        }
    }

    #[test]
    fn abstract_types_receive_exactly_their_subtypes() {
        let cases: [(&str, &[EventType]); 6] = [
            (
                "PROCESS_STATE",
                &[
                    EventType::ProcessStateStopped,
                    EventType::ProcessStateExited,
                    EventType::ProcessStateStarting,
                    EventType::ProcessStateStopping,
                    EventType::ProcessStateBackoff,
                    EventType::ProcessStateFatal,
                    EventType::ProcessStateRunning,
                    EventType::ProcessStateUnknown,
                ],
            ),
            ("PROCESS_LOG", &[EventType::ProcessLogStdout, EventType::ProcessLogStderr]),
            ("PROCESS_COMMUNICATION", &[EventType::ProcessCommunicationStdout, EventType::ProcessCommunicationStderr]),
            (
                "SUPERVISOR_STATE_CHANGE",
                &[EventType::SupervisorStateChangeRunning, EventType::SupervisorStateChangeStopping],
            ),
            ("TICK", &[EventType::Tick5, EventType::Tick60, EventType::Tick3600]),
            ("PROCESS_GROUP", &[EventType::ProcessGroupAdded, EventType::ProcessGroupRemoved]),
        ];
        for (name, members) in cases {
            for t in EventType::ALL {
                assert_eq!(subscribes(&subs(&[name]), t), members.contains(&t), "{name} vs {}", t.name());
            }
        }
    }

    #[test]
    fn a_concrete_name_receives_only_itself() {
        for t in EventType::ALL {
            for u in EventType::ALL {
                assert_eq!(subscribes(&subs(&[t.name()]), u), t == u);
            }
        }
        assert!(!subscribes(&[], EventType::Tick5));
    }

    #[test]
    fn state_payloads_carry_tries_pid_or_expected_by_state() {
        use ProcessState as S;
        let mut c = change(S::Starting, S::Stopped);
        assert_eq!(text(&Event::process_state(&c)), "processname:emitter groupname:emitter from_state:STOPPED tries:0");
        c = change(S::Backoff, S::Starting);
        c.tries = 1;
        assert_eq!(
            text(&Event::process_state(&c)),
            "processname:emitter groupname:emitter from_state:STARTING tries:1"
        );
        let e = Event::process_state(&change(S::Running, S::Starting));
        assert_eq!(e.kind, EventType::ProcessStateRunning);
        assert_eq!(text(&e), "processname:emitter groupname:emitter from_state:STARTING pid:5492");
        assert_eq!(
            text(&Event::process_state(&change(S::Stopping, S::Running))),
            "processname:emitter groupname:emitter from_state:RUNNING pid:5492"
        );
        let mut stopped = change(S::Stopped, S::Backoff);
        stopped.pid = 0;
        assert_eq!(
            text(&Event::process_state(&stopped)),
            "processname:emitter groupname:emitter from_state:BACKOFF pid:0"
        );
        let mut exited = change(S::Exited, S::Running);
        exited.expected = false;
        assert_eq!(
            text(&Event::process_state(&exited)),
            "processname:emitter groupname:emitter from_state:RUNNING expected:0 pid:5492"
        );
        exited.expected = true;
        assert!(text(&Event::process_state(&exited)).ends_with("expected:1 pid:5492"));
        assert_eq!(
            text(&Event::process_state(&change(S::Fatal, S::Backoff))),
            "processname:emitter groupname:emitter from_state:BACKOFF"
        );
        assert_eq!(
            text(&Event::process_state(&change(S::Unknown, S::Running))),
            "processname:emitter groupname:emitter from_state:RUNNING"
        );
    }

    #[test]
    fn log_and_communication_payloads_have_a_header_line() {
        let e = Event::process_log(Channel::Stdout, "emitter", "emitter", 11171, b"plain line\nbefore");
        assert_eq!(e.kind, EventType::ProcessLogStdout);
        assert_eq!(text(&e), "processname:emitter groupname:emitter pid:11171 channel:stdout\nplain line\nbefore");
        let e = Event::process_log(Channel::Stderr, "a", "g", 1, b"x");
        assert_eq!(
            (e.kind, text(&e)),
            (EventType::ProcessLogStderr, "processname:a groupname:g pid:1 channel:stderr\nx")
        );
        let e =
            Event::process_communication(Channel::Stdout, "emitter", "emitter", 11171, "captured é data".as_bytes());
        assert_eq!(e.kind, EventType::ProcessCommunicationStdout);
        assert_eq!(text(&e), "processname:emitter groupname:emitter pid:11171\ncaptured é data");
    }

    #[test]
    fn undecodable_output_becomes_a_python_bytes_repr() {
        // Captured from Supervisor 4.3.0 (the chunk holds a quote, so the repr uses double quotes).
        let data = b"after\ncaf\xc3\xa9 \xe2\x82\xac\nbad \xff\xfe bytes 'q\n";
        let e = Event::process_log(Channel::Stdout, "emitter", "emitter", 11171, data);
        assert_eq!(
            text(&e),
            "processname:emitter groupname:emitter pid:11171 channel:stdout\n\
             Undecodable: b\"after\\ncaf\\xc3\\xa9 \\xe2\\x82\\xac\\nbad \\xff\\xfe bytes 'q\\n\""
        );
        assert_eq!(py_bytes_repr(b"\xff\x00a'\"\\\t\x7f"), "b'\\xff\\x00a\\'\"\\\\\\t\\x7f'");
        assert_eq!(py_bytes_repr(b"READY\n"), "b'READY\\n'");
    }

    #[test]
    fn other_payloads() {
        assert_eq!(text(&Event::remote_communication("mytype", "hello data")), "type:mytype\nhello data");
        assert_eq!(Event::supervisor_running().payload, b"");
        assert_eq!(Event::supervisor_stopping().kind, EventType::SupervisorStateChangeStopping);
        assert_eq!(text(&Event::tick(EventType::Tick5, 1795798280)), "when:1795798280");
        assert_eq!(text(&Event::group_added("lis")), "groupname:lis\n");
        let removed = Event::group_removed("lis");
        assert_eq!((removed.kind, text(&removed)), (EventType::ProcessGroupRemoved, "groupname:lis\n"));
    }
}
