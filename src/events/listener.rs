//! The event listener protocol (reference 6.3), one state machine per listener process.
//!
//! The listener's stdout is the protocol channel: `READY\n` asks for an event, `RESULT <len>\n`
//! followed by `<len>` bytes answers it. Bytes arrive in arbitrary chunks; the machine buffers
//! what it cannot decide yet. `Listener::handle` decides every (state, input) pair in one `match`
//! without a wildcard arm, and pushes `Output`s for the pool and the loop.

use crate::config::ini::py_repr;
use crate::config::LogLevel;

use super::handler::{HandlerState, ResultHandler, Stream, Verdict};
use super::types::py_bytes_repr;

/// Supervisor's EventListenerStates, with their codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ListenerState {
    /// Asked for an event (`READY\n`); the pool may send one.
    Ready,
    /// An event was sent; waiting for its result.
    Busy,
    /// Fresh from a spawn or done with an event; waiting for `READY\n`.
    Acknowledged,
    /// Broke the protocol; receives nothing until it is restarted.
    Unknown,
}

impl ListenerState {
    pub fn code(self) -> i32 {
        match self {
            ListenerState::Ready => 10,
            ListenerState::Busy => 20,
            ListenerState::Acknowledged => 30,
            ListenerState::Unknown => 40,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ListenerState::Ready => "READY",
            ListenerState::Busy => "BUSY",
            ListenerState::Acknowledged => "ACKNOWLEDGED",
            ListenerState::Unknown => "UNKNOWN",
        }
    }
}

/// What happened to the listener process, as the protocol sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Input<'a> {
    /// It was forked: a new protocol session starts in ACKNOWLEDGED.
    Spawned,
    /// Bytes read from its stdout (any chunk, possibly empty).
    Output(&'a [u8]),
    /// The pool wrote an event envelope to its stdin.
    EventSent,
    /// It was reaped.
    Exited,
    /// Writing the event to its stdin failed with EPIPE: it never got the event.
    WriteFailed,
}

/// What the pool and the loop must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    Changed {
        from: ListenerState,
        to: ListenerState,
    },
    /// The event in flight was handled (`OK`): forget it.
    Processed,
    /// The event in flight was not handled (a `FAIL` result, a bad result line, or the listener
    /// died while BUSY): put it back at the head of the pool's buffer.
    Rejected,
    /// A line for the main log.
    Log(LogLevel, String),
    /// Bytes a result handler writes to the daemon's own stdout or stderr.
    Print(Stream, Vec<u8>),
    /// Raw protocol bytes for the listener's stdout log (`stdout_logfile`), chunk by chunk as
    /// read (the loop applies strip_ansi if it is on).
    ChildLog(Vec<u8>),
}

const READY_TOKEN: &[u8] = b"READY\n";
const RESULT_TOKEN_START_LEN: usize = b"RESULT ".len();

/// One listener process's protocol state.
#[derive(Clone, Debug)]
pub struct Listener {
    name: String,
    state: ListenerState,
    /// Bytes read but not yet decided on.
    buf: Vec<u8>,
    /// The announced length of the result body, once its `RESULT` line is read.
    result_len: Option<usize>,
    result: Vec<u8>,
    /// What a result body means (`result_handler=`).
    handler: ResultHandler,
}

impl Listener {
    pub fn new(name: &str) -> Listener {
        Listener {
            name: name.to_string(),
            state: ListenerState::Acknowledged,
            buf: Vec::new(),
            result_len: None,
            result: Vec::new(),
            handler: ResultHandler::Default,
        }
    }

    /// The listener of a pool whose `result_handler=` is `handler`.
    pub fn with_handler(mut self, handler: ResultHandler) -> Listener {
        self.handler = handler;
        self
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn state(&self) -> ListenerState {
        self.state
    }

    /// Takes up a state an old daemon left (upgrade in place), with nothing read yet.
    pub fn resume(&mut self, state: ListenerState) {
        self.state = state;
        self.buf.clear();
        self.result_len = None;
        self.result.clear();
    }

    /// `handle_with` for inputs that decide no result, or for handlers that keep no state.
    pub fn handle(&mut self, input: Input<'_>, out: &mut Vec<Output>) {
        self.handle_with(input, &mut HandlerState::default(), out);
    }

    /// Steps the machine. Every (state, input) pair is decided here; an `Output` keeps stepping
    /// while a decision leaves bytes in the buffer (`READY\n` after a result, say). A complete
    /// result goes to the result handler, whose daemon-wide state is `handlers`.
    pub fn handle_with(&mut self, input: Input<'_>, handlers: &mut HandlerState, out: &mut Vec<Output>) {
        use Input as I;
        use ListenerState as S;
        if let I::Output(bytes) = input {
            if bytes.is_empty() {
                return; // EOF: nothing new to decide on
            }
            // Every read is logged, whatever the state, as Supervisor's dispatcher does.
            out.push(Output::Log(
                LogLevel::Debug,
                format!("{} stdout output:\n{}", py_repr(&self.name), py_bytes_repr(bytes)),
            ));
            out.push(Output::ChildLog(bytes.to_vec()));
            self.buf.extend_from_slice(bytes);
        }
        loop {
            let more = match (self.state, input) {
                // --- Spawned: a fresh session, whatever came before --------------------------
                (S::Acknowledged | S::Ready | S::Busy | S::Unknown, I::Spawned) => {
                    // Supervisor sets the state directly when it builds the new dispatcher: no
                    // log line.
                    let from = self.state;
                    self.reset();
                    self.state = S::Acknowledged;
                    if from != S::Acknowledged {
                        out.push(Output::Changed { from, to: S::Acknowledged });
                    }
                    false
                }

                // --- Output ----------------------------------------------------------------
                (S::Acknowledged, I::Output(_)) => {
                    if self.buf.len() < READY_TOKEN.len() {
                        false // not enough to decide
                    } else if self.buf.starts_with(READY_TOKEN) {
                        self.buf.drain(..READY_TOKEN.len());
                        self.change(S::Ready, out);
                        !self.buf.is_empty()
                    } else {
                        self.buf.clear();
                        self.change(S::Unknown, out);
                        false
                    }
                }
                (S::Ready, I::Output(_)) => {
                    // Spurious output while waiting for an event: Supervisor is strict.
                    if !self.buf.is_empty() {
                        self.buf.clear();
                        self.change(S::Unknown, out);
                    }
                    false
                }
                (S::Busy, I::Output(_)) => self.read_result(handlers, out),
                (S::Unknown, I::Output(_)) => {
                    // Ignored until the process restarts.
                    self.buf.clear();
                    false
                }

                // --- EventSent -----------------------------------------------------------------
                (S::Ready, I::EventSent) => {
                    // Supervisor sets BUSY directly (no log line; the pool logs the send).
                    self.result_len = None;
                    self.result.clear();
                    self.state = S::Busy;
                    out.push(Output::Changed { from: S::Ready, to: S::Busy });
                    false
                }
                // The pool only sends to READY listeners; a stray report changes nothing.
                (S::Acknowledged | S::Busy | S::Unknown, I::EventSent) => false,

                // --- Exited --------------------------------------------------------------------
                (S::Busy, I::Exited) => {
                    // Died before answering: the event goes back to the pool. The state stays
                    // until the next spawn, as in Supervisor (the pool only sends to RUNNING
                    // processes anyway).
                    self.reset();
                    out.push(Output::Rejected);
                    false
                }
                // No event in flight: nothing to give back.
                (S::Acknowledged | S::Ready | S::Unknown, I::Exited) => {
                    self.reset();
                    false
                }

                // --- WriteFailed -----------------------------------------------------------------
                (S::Busy, I::WriteFailed) => {
                    // Supervisor writes synchronously and, on EPIPE, leaves the listener READY
                    // ("listener state unchanged"); minisv writes later, so it undoes the BUSY.
                    self.state = S::Ready;
                    out.push(Output::Changed { from: S::Busy, to: S::Ready });
                    false
                }
                // Only a sent event can fail to be written; a stale report changes nothing.
                (S::Acknowledged | S::Ready | S::Unknown, I::WriteFailed) => false,
            };
            if !more {
                break;
            }
        }
    }

    fn reset(&mut self) {
        self.buf.clear();
        self.result_len = None;
        self.result.clear();
    }

    /// BUSY: read the `RESULT <len>` line, then the body. Returns whether to keep stepping.
    fn read_result(&mut self, handlers: &mut HandlerState, out: &mut Vec<Output>) -> bool {
        match self.result_len {
            None => {
                let Some(pos) = self.buf.iter().position(|&b| b == b'\n') else {
                    return false; // no full result line yet
                };
                let line: Vec<u8> = self.buf.drain(..=pos).take(pos).collect();
                // Supervisor does not check the `RESULT ` prefix: it slices it off and parses the
                // rest with int().
                match parse_len(line.get(RESULT_TOKEN_START_LEN..).unwrap_or(b"")) {
                    Some(n) => {
                        self.result_len = Some(n);
                        // Keep stepping even with an empty buffer, so that `RESULT 0\n` is
                        // decided at once (Supervisor waits for one more byte).
                        true
                    }
                    None => {
                        let shown = match std::str::from_utf8(&line) {
                            Ok(s) => s.to_string(),
                            Err(_) => format!("Undecodable: {}", py_bytes_repr(&line)),
                        };
                        out.push(Output::Log(LogLevel::Warn, format!("{}: bad result line: '{shown}'", self.name)));
                        self.change(ListenerState::Unknown, out);
                        self.buf.clear();
                        out.push(Output::Rejected);
                        false
                    }
                }
            }
            Some(n) => {
                let take = (n - self.result.len()).min(self.buf.len());
                self.result.extend(self.buf.drain(..take));
                if self.result.len() < n {
                    return false; // the body is not complete yet
                }
                self.result_len = None;
                let body = std::mem::take(&mut self.result);
                let mut writes = Vec::new();
                let verdict = handlers.handle(self.handler, &body, &mut writes);
                out.extend(writes.into_iter().map(|(stream, bytes)| Output::Print(stream, bytes)));
                match verdict {
                    Verdict::Processed => {
                        out.push(Output::Log(LogLevel::Debug, format!("{}: event was processed", self.name)));
                        self.change(ListenerState::Acknowledged, out);
                        out.push(Output::Processed);
                    }
                    Verdict::Rejected => {
                        out.push(Output::Log(LogLevel::Warn, format!("{}: event was rejected", self.name)));
                        self.change(ListenerState::Acknowledged, out);
                        out.push(Output::Rejected);
                    }
                    Verdict::Error => {
                        out.push(Output::Log(LogLevel::Warn, format!("{}: event caused an error", self.name)));
                        self.change(ListenerState::Unknown, out);
                        out.push(Output::Rejected);
                    }
                }
                !self.buf.is_empty()
            }
        }
    }

    fn change(&mut self, to: ListenerState, out: &mut Vec<Output>) {
        let from = self.state;
        out.push(Output::Log(LogLevel::Debug, format!("{}: {} -> {}", self.name, from.name(), to.name())));
        self.state = to;
        out.push(Output::Changed { from, to });
        if to == ListenerState::Unknown {
            out.push(Output::Log(
                LogLevel::Warn,
                format!(
                    "{}: has entered the UNKNOWN state and will no longer receive events, this usually indicates \
                     the process violated the eventlistener protocol",
                    self.name
                ),
            ));
        }
    }
}

/// Python's `int()` of a bytes object, for the result length: ASCII whitespace around, an
/// optional sign, `_` between digits. A negative or oversized length is refused too (Supervisor
/// would take it and then never finish reading the body).
fn parse_len(s: &[u8]) -> Option<usize> {
    let is_space = |b: &u8| matches!(b, b' ' | b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r');
    let start = s.iter().position(|b| !is_space(b))?;
    let end = s.iter().rposition(|b| !is_space(b))? + 1;
    let t = &s[start..end];
    let t = t.strip_prefix(b"+").unwrap_or(t);
    if t.is_empty() || t.starts_with(b"_") || t.ends_with(b"_") || t.windows(2).any(|w| w == b"__") {
        return None;
    }
    let mut n: usize = 0;
    for &b in t.iter().filter(|&&b| b != b'_') {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(usize::from(b - b'0'))?;
    }
    Some(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ListenerState as S;

    fn feed(l: &mut Listener, bytes: &[u8]) -> Vec<Output> {
        let mut out = Vec::new();
        l.handle(Input::Output(bytes), &mut out);
        out
    }

    fn step(l: &mut Listener, input: Input<'_>) -> Vec<Output> {
        let mut out = Vec::new();
        l.handle(input, &mut out);
        out
    }

    fn results(out: &[Output]) -> Vec<&Output> {
        out.iter().filter(|o| matches!(o, Output::Processed | Output::Rejected)).collect()
    }

    fn logs(out: &[Output]) -> Vec<(LogLevel, &str)> {
        out.iter()
            .filter_map(|o| match o {
                Output::Log(level, msg) => Some((*level, msg.as_str())),
                _ => None,
            })
            .collect()
    }

    fn busy() -> Listener {
        let mut l = Listener::new("lis");
        feed(&mut l, b"READY\n");
        step(&mut l, Input::EventSent);
        assert_eq!(l.state(), S::Busy);
        l
    }

    #[test]
    fn codes_are_supervisors() {
        assert_eq!([S::Ready, S::Busy, S::Acknowledged, S::Unknown].map(|s| s.code()), [10, 20, 30, 40]);
    }

    #[test]
    fn ready_makes_a_fresh_listener_ready_with_supervisors_log_lines() {
        let mut l = Listener::new("lis");
        assert_eq!(l.state(), S::Acknowledged);
        let out = feed(&mut l, b"READY\n");
        assert_eq!(l.state(), S::Ready);
        assert_eq!(
            logs(&out),
            [(LogLevel::Debug, "'lis' stdout output:\nb'READY\\n'"), (LogLevel::Debug, "lis: ACKNOWLEDGED -> READY")]
        );
        assert!(out.contains(&Output::ChildLog(b"READY\n".to_vec())));
    }

    #[test]
    fn ready_split_at_every_byte_position() {
        for cut in 0..=READY_TOKEN.len() {
            let mut l = Listener::new("lis");
            feed(&mut l, &READY_TOKEN[..cut]);
            assert_eq!(l.state(), if cut == 6 { S::Ready } else { S::Acknowledged }, "cut {cut}");
            feed(&mut l, &READY_TOKEN[cut..]);
            assert_eq!(l.state(), S::Ready, "cut {cut}");
        }
        // One byte at a time.
        let mut l = Listener::new("lis");
        for b in READY_TOKEN {
            feed(&mut l, std::slice::from_ref(b));
        }
        assert_eq!(l.state(), S::Ready);
    }

    #[test]
    fn result_ok_split_at_every_byte_position_then_ready_again() {
        let traffic = b"RESULT 2\nOKREADY\n";
        for cut in 0..=traffic.len() {
            for cut2 in cut..=traffic.len() {
                let mut l = busy();
                let mut out = feed(&mut l, &traffic[..cut]);
                out.extend(feed(&mut l, &traffic[cut..cut2]));
                out.extend(feed(&mut l, &traffic[cut2..]));
                assert_eq!(results(&out), [&Output::Processed], "cuts {cut} {cut2}");
                assert_eq!(l.state(), S::Ready, "cuts {cut} {cut2}");
            }
        }
    }

    #[test]
    fn processed_logs_as_supervisor() {
        let mut l = busy();
        let out = feed(&mut l, b"RESULT 2\nOK");
        assert_eq!(
            logs(&out)[1..],
            [(LogLevel::Debug, "lis: event was processed"), (LogLevel::Debug, "lis: BUSY -> ACKNOWLEDGED")]
        );
        assert_eq!(out.last(), Some(&Output::Processed));
        assert_eq!(l.state(), S::Acknowledged);
    }

    #[test]
    fn fail_rejects_the_event_and_acknowledges() {
        for cut in 0..=14 {
            let traffic = b"RESULT 4\nFAIL";
            let mut l = busy();
            let mut out = feed(&mut l, &traffic[..cut.min(traffic.len())]);
            out.extend(feed(&mut l, &traffic[cut.min(traffic.len())..]));
            assert_eq!(results(&out), [&Output::Rejected]);
            assert!(logs(&out).contains(&(LogLevel::Warn, "lis: event was rejected")));
            assert_eq!(l.state(), S::Acknowledged);
        }
    }

    #[test]
    fn result_zero_is_decided_without_more_bytes() {
        let mut l = busy();
        let out = feed(&mut l, b"RESULT 0\n");
        assert_eq!(results(&out), [&Output::Rejected]);
        assert_eq!(l.state(), S::Acknowledged);
    }

    #[test]
    fn result_length_is_parsed_like_python_int() {
        assert_eq!(parse_len(b"2"), Some(2));
        assert_eq!(parse_len(b" +1_0\r"), Some(10));
        assert_eq!(parse_len(b""), None);
        assert_eq!(parse_len(b"x"), None);
        assert_eq!(parse_len(b"-1"), None);
        assert_eq!(parse_len(b"1__0"), None);
        assert_eq!(parse_len(b"99999999999999999999999"), None);
        // The prefix is not checked, as in Supervisor.
        let mut l = busy();
        let out = feed(&mut l, b"XXXXXX 2\nOK");
        assert_eq!(results(&out), [&Output::Processed]);
    }

    #[test]
    fn bad_result_line_goes_unknown_and_rejects() {
        let mut l = busy();
        let out = feed(&mut l, b"RESULT two\nOK");
        assert_eq!(l.state(), S::Unknown);
        assert_eq!(
            logs(&out)[1..],
            [
                (LogLevel::Warn, "lis: bad result line: 'RESULT two'"),
                (LogLevel::Debug, "lis: BUSY -> UNKNOWN"),
                (
                    LogLevel::Warn,
                    "lis: has entered the UNKNOWN state and will no longer receive events, this usually indicates \
                     the process violated the eventlistener protocol"
                ),
            ]
        );
        assert_eq!(results(&out), [&Output::Rejected]);
        let mut l = busy();
        let out = feed(&mut l, b"RESULT \xff\n");
        assert!(logs(&out).contains(&(LogLevel::Warn, "lis: bad result line: 'Undecodable: b'RESULT \\xff''")));
    }

    #[test]
    fn garbage_before_ready_goes_unknown_and_stays_there() {
        let mut l = Listener::new("lis");
        let out = feed(&mut l, b"hello world\n");
        assert_eq!(l.state(), S::Unknown);
        assert!(out.contains(&Output::Changed { from: S::Acknowledged, to: S::Unknown }));
        // Output is ignored (but still logged) until a restart.
        let out = feed(&mut l, b"READY\n");
        assert_eq!(l.state(), S::Unknown);
        assert!(out.contains(&Output::ChildLog(b"READY\n".to_vec())));
        step(&mut l, Input::Spawned);
        assert_eq!(l.state(), S::Acknowledged);
        feed(&mut l, b"READY\n");
        assert_eq!(l.state(), S::Ready);
    }

    #[test]
    fn output_while_ready_goes_unknown() {
        let mut l = Listener::new("lis");
        feed(&mut l, b"READY\nREADY\n");
        assert_eq!(l.state(), S::Unknown);
        let mut l = Listener::new("lis");
        feed(&mut l, b"READY\n");
        feed(&mut l, b"x");
        assert_eq!(l.state(), S::Unknown);
    }

    #[test]
    fn death_while_busy_rejects_the_event() {
        let mut l = busy();
        feed(&mut l, b"RESULT 2\nO");
        assert_eq!(step(&mut l, Input::Exited), [Output::Rejected]);
        // A new session starts clean: the half-read result is gone.
        step(&mut l, Input::Spawned);
        assert_eq!(l.state(), S::Acknowledged);
        feed(&mut l, b"READY\n");
        assert_eq!(l.state(), S::Ready);
    }

    #[test]
    fn death_while_not_busy_gives_nothing_back() {
        for prefix in [&b""[..], b"READY\n", b"junk!!"] {
            let mut l = Listener::new("lis");
            feed(&mut l, prefix);
            assert!(results(&step(&mut l, Input::Exited)).is_empty());
        }
    }

    #[test]
    fn an_event_sent_to_a_listener_that_is_not_ready_changes_nothing() {
        let mut l = Listener::new("lis");
        assert!(step(&mut l, Input::EventSent).is_empty());
        assert_eq!(l.state(), S::Acknowledged);
    }

    #[test]
    fn empty_read_is_eof_and_changes_nothing() {
        let mut l = Listener::new("lis");
        feed(&mut l, b"REA");
        assert!(feed(&mut l, b"").is_empty());
        feed(&mut l, b"DY\n");
        assert_eq!(l.state(), S::Ready);
    }
}
