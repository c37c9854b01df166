//! Result handlers (`result_handler=` of an `[eventlistener:x]` section): what supervisord does
//! with the body of a listener's `RESULT`. supervisord imports a Python function; minisv
//! cannot load Python code, so it has three built in, each writing exactly what its Python
//! original writes:
//!
//! - `supervisor.dispatchers:default_handler`: `OK` accepts the event, anything else rejects it.
//! - `supervisor_stdlog:log_handler` (the supervisor-stdlog package, 0.7.9): the body is the
//!   payload of a PROCESS_LOG event (the listener echoes it); each line of its data is written
//!   to the daemon's stdout (or stderr, for the stderr channel) after the process name, in
//!   colours. It never rejects: a failure is reported on stderr (Python prints a traceback).
//! - `supervisor_stdout:event_handler` (the supervisor-stdout package, 0.1.1, Python 2): writes
//!   `<name> <channel> | <data>` to the daemon's stdout with Python 2's `print x,`; a body it
//!   cannot parse raises, which supervisord reports as "event caused an error".
//!
//! The Python modules keep state in globals, for the whole daemon: [`HandlerState`] is that
//! state, held once by the pools.

/// The built-in handlers, as `result_handler=` names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResultHandler {
    Default,
    Stdlog,
    Stdout,
}

/// Every built-in handler with its name, the default first.
pub const BUILT_IN: &[(&str, ResultHandler)] = &[
    ("supervisor.dispatchers:default_handler", ResultHandler::Default),
    ("supervisor_stdlog:log_handler", ResultHandler::Stdlog),
    ("supervisor_stdout:event_handler", ResultHandler::Stdout),
];

impl ResultHandler {
    /// The handler a `result_handler=` value names, if it is built in.
    pub fn from_spec(spec: &str) -> Option<ResultHandler> {
        BUILT_IN.iter().find(|(name, _)| *name == spec).map(|(_, h)| *h)
    }

    /// The names, for messages: `a, b and c`.
    pub fn names_text() -> String {
        let names: Vec<&str> = BUILT_IN.iter().map(|(n, _)| *n).collect();
        match names.split_last() {
            Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
            _ => names.join(""),
        }
    }
}

/// What the handler decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The event was processed (the handler returned).
    Processed,
    /// The handler rejected it (RejectEvent): it is offered again.
    Rejected,
    /// The handler raised anything else: the listener goes UNKNOWN and the event is offered again.
    Error,
}

/// Where the handler writes: the daemon's own stdout or stderr.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// supervisor-stdlog's colours: `RAINBOWS` (one per process name, in turn) and `LOGCOLOR`.
const RAINBOWS: [u8; 5] = [36, 33, 32, 35, 34];
const STDOUT_COLOR: u8 = 37;
const STDERR_COLOR: u8 = 31;
const OTHER_COLOR: u8 = 34;

/// The handlers' module globals, one set per daemon.
#[derive(Clone, Debug, Default)]
pub struct HandlerState {
    /// supervisor-stdlog `PADWIDTH`: the longest process name seen, plus one.
    pad: usize,
    /// supervisor-stdlog `COLORMAP`: a process name's colour, fixed when first seen.
    colors: Vec<(String, u8)>,
    /// supervisor-stdlog `COLORSIT`: how many times the colour cycle was advanced. Python's
    /// `COLORMAP.setdefault(name, next(COLORSIT))` advances it at every event, not only for a
    /// new name, so a new name's colour depends on how many events came before.
    turns: usize,
    /// Python 2's `sys.stdout.softspace`, for supervisor-stdout's `print x,`: the next print
    /// starts with a space.
    softspace: bool,
}

/// Python's `str.split()` without arguments (runs of whitespace, none at the ends), then
/// `dict(x.split(':') for x in ...)`: every token must hold exactly one colon; a later
/// duplicate wins. `None` where Python raises ValueError.
fn headers<'a>(tokens: impl Iterator<Item = &'a str>) -> Option<Vec<(&'a str, &'a str)>> {
    let mut out: Vec<(&str, &str)> = Vec::new();
    for t in tokens {
        let (k, v) = t.split_once(':')?;
        if v.contains(':') {
            return None;
        }
        out.retain(|(key, _)| *key != k);
        out.push((k, v));
    }
    Some(out)
}

fn header<'a>(h: &[(&'a str, &'a str)], key: &str) -> Option<&'a str> {
    h.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
}

impl HandlerState {
    /// Runs `handler` on a result body. What it writes is pushed to `writes`, in order.
    pub fn handle(&mut self, handler: ResultHandler, body: &[u8], writes: &mut Vec<(Stream, Vec<u8>)>) -> Verdict {
        match handler {
            ResultHandler::Default => {
                if body == b"OK" {
                    Verdict::Processed
                } else {
                    Verdict::Rejected
                }
            }
            ResultHandler::Stdlog => {
                if let Err(why) = self.stdlog(body, writes) {
                    // Python catches everything and prints the traceback on stderr.
                    writes.push((Stream::Stderr, format!("supervisor_stdlog:log_handler: {why}\n").into_bytes()));
                }
                Verdict::Processed
            }
            ResultHandler::Stdout => match self.stdout(body) {
                Some(text) => {
                    writes.push((Stream::Stdout, text));
                    Verdict::Processed
                }
                None => Verdict::Error,
            },
        }
    }

    /// supervisor_stdlog.log_handler.
    fn stdlog(&mut self, body: &[u8], writes: &mut Vec<(Stream, Vec<u8>)>) -> Result<(), &'static str> {
        // Python decodes strictly and drops the whole chunk when a character is cut between
        // two reads; minisv writes what it can (U+FFFD for the bad bytes) rather than lose it.
        let text = String::from_utf8_lossy(body);
        let (line, data) = text.split_once('\n').ok_or("no header line in the result")?;
        let h = headers(line.split_whitespace()).ok_or("a header is not key:value")?;
        let name = header(&h, "processname").ok_or("no processname header")?;
        self.pad = self.pad.max(name.chars().count() + 1);
        let next = RAINBOWS[self.turns % RAINBOWS.len()];
        self.turns += 1;
        let color = match self.colors.iter().find(|(n, _)| n == name) {
            Some((_, c)) => *c,
            None => {
                self.colors.push((name.to_string(), next));
                next
            }
        };
        let channel = header(&h, "channel").ok_or("no channel header")?;
        let (stream, text_color) = match channel {
            "stdout" => (Stream::Stdout, STDOUT_COLOR),
            "stderr" => (Stream::Stderr, STDERR_COLOR),
            _ => (Stream::Stdout, OTHER_COLOR),
        };
        let prefix = format!("\x1b[{color}m{name:<width$}| \x1b[{text_color}m", width = self.pad);
        let data = data.strip_suffix('\n').unwrap_or(data);
        let mut out = String::new();
        for l in data.split('\n') {
            out.push_str(&prefix);
            out.push_str(l);
            out.push_str("\x1b[m\n");
        }
        writes.push((stream, out.into_bytes()));
        Ok(())
    }

    /// supervisor_stdout.event_handler: `print '%s %s | %s' % (name, channel, data),` in
    /// Python 2, on the bytes as they are. `None` where it raises.
    fn stdout(&mut self, body: &[u8]) -> Option<Vec<u8>> {
        let at = body.iter().position(|&b| b == b'\n')?;
        let (line, data) = (&body[..at], &body[at + 1..]);
        // Python 2 str.split() splits bytes on ASCII whitespace.
        let line = std::str::from_utf8(line).ok()?;
        let h = headers(line.split(|c: char| c.is_ascii_whitespace() || c == '\x0b').filter(|t| !t.is_empty()))?;
        let (name, channel) = (header(&h, "processname")?, header(&h, "channel")?);
        let mut text = Vec::new();
        if self.softspace {
            text.push(b' ');
        }
        text.extend_from_slice(format!("{name} {channel} | ").as_bytes());
        text.extend_from_slice(data);
        // print sets softspace unless the text ends with whitespace other than a space.
        let last = *text.last().unwrap_or(&b' ');
        self.softspace = !matches!(last, b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r');
        Some(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(st: &mut HandlerState, h: ResultHandler, body: &[u8]) -> (Verdict, Vec<(Stream, String)>) {
        let mut w = Vec::new();
        let v = st.handle(h, body, &mut w);
        (v, w.into_iter().map(|(s, b)| (s, String::from_utf8_lossy(&b).into_owned())).collect())
    }

    #[test]
    fn names_are_listed_for_messages() {
        assert_eq!(
            ResultHandler::names_text(),
            "supervisor.dispatchers:default_handler, supervisor_stdlog:log_handler and supervisor_stdout:event_handler"
        );
        assert_eq!(ResultHandler::from_spec("supervisor_stdlog:log_handler"), Some(ResultHandler::Stdlog));
        assert_eq!(ResultHandler::from_spec("mymod:handler"), None);
    }

    #[test]
    fn default_handler_accepts_exactly_ok() {
        let mut st = HandlerState::default();
        assert_eq!(run(&mut st, ResultHandler::Default, b"OK"), (Verdict::Processed, vec![]));
        assert_eq!(run(&mut st, ResultHandler::Default, b"OK\n"), (Verdict::Rejected, vec![]));
    }

    /// Expected texts worked out from supervisor_stdlog.py 0.7.9 (and checked against it under
    /// supervisord 4.3 by the integration test `plugins::stdlog_*`).
    #[test]
    fn stdlog_pads_to_the_longest_name_and_colours_by_turn() {
        let mut st = HandlerState::default();
        let (v, w) =
            run(&mut st, ResultHandler::Stdlog, b"processname:web groupname:web pid:1 channel:stdout\nhello\nworld\n");
        assert_eq!(v, Verdict::Processed);
        assert_eq!(
            w,
            [(Stream::Stdout, "\x1b[36mweb | \x1b[37mhello\x1b[m\n\x1b[36mweb | \x1b[37mworld\x1b[m\n".to_string())]
        );
        let (_, w) = run(&mut st, ResultHandler::Stdlog, b"processname:web groupname:web pid:1 channel:stderr\noops");
        assert_eq!(w, [(Stream::Stderr, "\x1b[36mweb | \x1b[31moops\x1b[m\n".to_string())]);
        // Third event: the cycle was advanced twice, so the new name gets the third colour.
        let (_, w) = run(&mut st, ResultHandler::Stdlog, b"processname:worker groupname:w pid:2 channel:stdout\n\n");
        assert_eq!(w, [(Stream::Stdout, "\x1b[32mworker | \x1b[37m\x1b[m\n".to_string())]);
        let (_, w) =
            run(&mut st, ResultHandler::Stdlog, b"processname:web groupname:web pid:1 channel:stdout\nx\n\ny\n");
        let p = "\x1b[36mweb    | \x1b[37m";
        assert_eq!(w, [(Stream::Stdout, format!("{p}x\x1b[m\n{p}\x1b[m\n{p}y\x1b[m\n"))]);
    }

    #[test]
    fn stdlog_never_rejects() {
        let mut st = HandlerState::default();
        for body in [&b"no newline"[..], b"processname:a channel\nx", b"groupname:a\nx", b"processname:a\nx"] {
            let (v, w) = run(&mut st, ResultHandler::Stdlog, body);
            assert_eq!(v, Verdict::Processed);
            assert_eq!(w.len(), 1, "{w:?}");
            assert_eq!(w[0].0, Stream::Stderr);
        }
        // The event without a channel still advanced the cycle and fixed a's colour (the
        // first); the next new name gets the third (checked against supervisor_stdlog.py).
        let (_, w) = run(&mut st, ResultHandler::Stdlog, b"processname:a channel:stdout\nx");
        assert_eq!(w, [(Stream::Stdout, "\x1b[36ma | \x1b[37mx\x1b[m\n".to_string())]);
        let (_, w) = run(&mut st, ResultHandler::Stdlog, b"processname:bb channel:stdout\ny\n");
        assert_eq!(w, [(Stream::Stdout, "\x1b[32mbb | \x1b[37my\x1b[m\n".to_string())]);
    }

    /// Python 2's `print x,`: no newline of its own; a space before the next print unless the
    /// text ended with whitespace other than a space.
    #[test]
    fn stdout_handler_prints_like_python2_print_with_a_comma() {
        let mut st = HandlerState::default();
        let h = ResultHandler::Stdout;
        let (v, w) = run(&mut st, h, b"processname:web groupname:web pid:1 channel:stdout\nhello\n");
        assert_eq!((v, w), (Verdict::Processed, vec![(Stream::Stdout, "web stdout | hello\n".to_string())]));
        let (_, w) = run(&mut st, h, b"processname:web groupname:web pid:1 channel:stderr\npartial");
        assert_eq!(w, [(Stream::Stdout, "web stderr | partial".to_string())]);
        let (_, w) = run(&mut st, h, b"processname:web groupname:web pid:1 channel:stdout\nnext\n");
        assert_eq!(w, [(Stream::Stdout, " web stdout | next\n".to_string())]);
        for bad in [&b"no newline"[..], b"processname:web\nx", b"processname:a:b channel:stdout\nx", b"pid\nx"] {
            assert_eq!(run(&mut st, h, bad), (Verdict::Error, vec![]), "{}", String::from_utf8_lossy(bad));
        }
    }
}
