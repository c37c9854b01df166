//! Capture mode for one output channel (reference 3.5), pure.
//!
//! With `*_capture_maxbytes > 0`, what a process writes between `<!--XSUPERVISOR:BEGIN-->` and
//! `<!--XSUPERVISOR:END-->` becomes a PROCESS_COMMUNICATION_STDOUT/STDERR event instead of log
//! output. Tokens may be split across reads.
//!
//! Quirk Q3, fixed: Supervisor keeps up to a token's length of output in its buffer until more
//! arrives, so a trailing `after\n` following END (or any short last line) may never reach the
//! log. Here only a suffix that could still be the start of the token being looked for is held
//! back; everything else is handed out at once, and `finish` flushes the rest at EOF.

use std::collections::VecDeque;

pub const BEGIN_TOKEN: &[u8] = b"<!--XSUPERVISOR:BEGIN-->";
pub const END_TOKEN: &[u8] = b"<!--XSUPERVISOR:END-->";

/// What to do with a piece of output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Normal output: the child log, the main log copy at debug and, if
    /// `*_events_enabled`, a PROCESS_LOG event.
    Log(Vec<u8>),
    /// Output inside BEGIN/END. Supervisor passes it through the same `_log()` while its
    /// child logger is the capture buffer: it raises PROCESS_LOG events (if enabled) and goes to
    /// the main log at debug, but it is **not** written to the child log.
    Captured(Vec<u8>),
    /// END seen: emit PROCESS_COMMUNICATION_STDOUT/STDERR with this data (what the capture buffer
    /// holds, bounded by capture_maxbytes), and log at debug `'<name>' <channel> emitted a comm
    /// event`.
    Communication(Vec<u8>),
}

/// Supervisor's BoundIO: when a write would take the buffer past `maxbytes`, the first
/// `len(write)` bytes are dropped from the front first (so one write larger than `maxbytes`
/// is still kept whole).
#[derive(Clone, Debug, Default)]
struct BoundIo {
    maxbytes: usize,
    buf: VecDeque<u8>,
}

impl BoundIo {
    fn write(&mut self, b: &[u8]) {
        if self.buf.len() + b.len() > self.maxbytes {
            let n = b.len().min(self.buf.len());
            self.buf.drain(..n);
        }
        self.buf.extend(b);
    }

    fn take(&mut self) -> Vec<u8> {
        self.buf.drain(..).collect()
    }
}

/// Capture state of one channel (stdout or stderr) of one process; make a new one at each spawn.
#[derive(Clone, Debug)]
pub struct Capture {
    enabled: bool,
    capturing: bool,
    /// A suffix of the output that may be the start of the token being looked for.
    pending: Vec<u8>,
    captured: BoundIo,
}

impl Capture {
    /// `capture_maxbytes` 0 disables capture mode: output is passed on as it comes.
    pub fn new(capture_maxbytes: u64) -> Capture {
        Capture {
            enabled: capture_maxbytes > 0,
            capturing: false,
            pending: Vec::new(),
            captured: BoundIo {
                maxbytes: usize::try_from(capture_maxbytes).unwrap_or(usize::MAX),
                buf: VecDeque::new(),
            },
        }
    }

    /// Whether output is being captured (between BEGIN and END).
    pub fn capturing(&self) -> bool {
        self.capturing
    }

    /// Bytes read from the channel.
    pub fn feed(&mut self, bytes: &[u8], out: &mut Vec<Output>) {
        if bytes.is_empty() {
            return;
        }
        if !self.enabled {
            out.push(Output::Log(bytes.to_vec()));
            return;
        }
        let mut data = std::mem::take(&mut self.pending);
        data.extend_from_slice(bytes);
        let mut rest: &[u8] = &data;
        loop {
            let token = if self.capturing { END_TOKEN } else { BEGIN_TOKEN };
            match find(rest, token) {
                Some(pos) => {
                    self.emit(&rest[..pos], out);
                    if self.capturing {
                        out.push(Output::Communication(self.captured.take()));
                    }
                    self.capturing = !self.capturing;
                    rest = &rest[pos + token.len()..];
                }
                None => {
                    let keep = prefix_at_end(rest, token);
                    self.emit(&rest[..rest.len() - keep], out);
                    self.pending = rest[rest.len() - keep..].to_vec();
                    return;
                }
            }
        }
    }

    /// End of file: nothing more will come, so what was held back (a possible token start) is
    /// output after all. A capture without END produces no event, as in Supervisor.
    pub fn finish(&mut self, out: &mut Vec<Output>) {
        let pending = std::mem::take(&mut self.pending);
        self.emit(&pending, out);
        self.captured.take();
        self.capturing = false;
    }

    fn emit(&mut self, data: &[u8], out: &mut Vec<Output>) {
        if data.is_empty() {
            return;
        }
        if self.capturing {
            self.captured.write(data);
            out.push(Output::Captured(data.to_vec()));
        } else {
            out.push(Output::Log(data.to_vec()));
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The length of the longest proper prefix of `token` that `data` ends with (medusa's
/// `find_prefix_at_end`).
fn prefix_at_end(data: &[u8], token: &[u8]) -> usize {
    (1..token.len()).rev().find(|&l| data.ends_with(&token[..l])).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, PartialEq, Eq)]
    struct Seen {
        log: Vec<u8>,
        captured: Vec<u8>,
        comms: Vec<Vec<u8>>,
    }

    fn collect(out: Vec<Output>) -> Seen {
        let mut s = Seen::default();
        for o in out {
            match o {
                Output::Log(b) => s.log.extend(b),
                Output::Captured(b) => s.captured.extend(b),
                Output::Communication(b) => s.comms.push(b),
            }
        }
        s
    }

    fn run(c: &mut Capture, chunks: &[&[u8]]) -> Vec<Output> {
        let mut out = Vec::new();
        for ch in chunks {
            c.feed(ch, &mut out);
        }
        out
    }

    const STREAM: &[u8] = b"before<!--XSUPERVISOR:BEGIN-->captured data<!--XSUPERVISOR:END-->after\n";

    #[test]
    fn tokens_split_at_every_pair_of_positions() {
        for i in 0..=STREAM.len() {
            for j in i..=STREAM.len() {
                let mut c = Capture::new(1024);
                let seen = collect(run(&mut c, &[&STREAM[..i], &STREAM[i..j], &STREAM[j..]]));
                let want = Seen {
                    log: b"before after\n".iter().filter(|&&b| b != b' ').copied().collect(),
                    captured: b"captured data".to_vec(),
                    comms: vec![b"captured data".to_vec()],
                };
                assert_eq!(seen, want, "cuts {i} {j}");
                assert!(!c.capturing());
            }
        }
    }

    #[test]
    fn output_after_end_is_not_stuck() {
        // Supervisor 4.3.0 kept `after\n` in its buffer (quirk Q3); here it is logged at once.
        let mut c = Capture::new(1024);
        let out = run(&mut c, &[b"<!--XSUPERVISOR:BEGIN-->x<!--XSUPERVISOR:END-->after\n"]);
        assert_eq!(
            out,
            [Output::Captured(b"x".to_vec()), Output::Communication(b"x".to_vec()), Output::Log(b"after\n".to_vec())]
        );
        // A short chunk that cannot start a token is logged at once too.
        assert_eq!(run(&mut c, &[b"ok\n"]), [Output::Log(b"ok\n".to_vec())]);
    }

    #[test]
    fn only_a_possible_token_prefix_is_held_back_until_eof() {
        let mut c = Capture::new(1024);
        assert_eq!(run(&mut c, &[b"line\n<!--XSUP"]), [Output::Log(b"line\n".to_vec())]);
        let mut out = Vec::new();
        c.finish(&mut out);
        assert_eq!(out, [Output::Log(b"<!--XSUP".to_vec())]);
        // A false start is released as soon as it stops matching.
        let mut c = Capture::new(1024);
        let seen = collect(run(&mut c, &[b"a<!--", b"x"]));
        assert_eq!(seen.log, b"a<!--x");
    }

    #[test]
    fn capture_without_end_gives_no_event_at_eof() {
        let mut c = Capture::new(1024);
        let mut out = run(&mut c, &[b"<!--XSUPERVISOR:BEGIN-->half<!--XSUPERVISOR:E"]);
        c.finish(&mut out);
        let seen = collect(out);
        assert_eq!((seen.log, seen.captured, seen.comms.len()), (vec![], b"half<!--XSUPERVISOR:E".to_vec(), 0));
    }

    #[test]
    fn empty_capture_emits_an_empty_event() {
        let mut c = Capture::new(1024);
        let seen = collect(run(&mut c, &[b"<!--XSUPERVISOR:BEGIN--><!--XSUPERVISOR:END-->"]));
        assert_eq!(seen.comms, [Vec::<u8>::new()]);
    }

    #[test]
    fn several_captures_in_one_read() {
        let mut c = Capture::new(1024);
        let seen = collect(run(
            &mut c,
            &[b"a<!--XSUPERVISOR:BEGIN-->1<!--XSUPERVISOR:END-->b<!--XSUPERVISOR:BEGIN-->2<!--XSUPERVISOR:END-->c"],
        ));
        assert_eq!(seen.log, b"abc");
        assert_eq!(seen.comms, [b"1".to_vec(), b"2".to_vec()]);
    }

    #[test]
    fn overflow_drops_the_length_of_the_write_from_the_front() {
        // BoundIO: 8 bytes, then a 6-byte write would make 14 > 10, so the first 6 go.
        let mut c = Capture::new(10);
        let seen = collect(run(&mut c, &[b"<!--XSUPERVISOR:BEGIN-->01234567", b"89abcd", b"<!--XSUPERVISOR:END-->"]));
        assert_eq!(seen.comms, [b"6789abcd".to_vec()]);
        // One write larger than maxbytes is kept whole.
        let mut c = Capture::new(10);
        let seen = collect(run(&mut c, &[b"<!--XSUPERVISOR:BEGIN-->0123456789abc<!--XSUPERVISOR:END-->"]));
        assert_eq!(seen.comms, [b"0123456789abc".to_vec()]);
        // The buffer is emptied after each event.
        let seen = collect(run(&mut c, &[b"<!--XSUPERVISOR:BEGIN-->z<!--XSUPERVISOR:END-->"]));
        assert_eq!(seen.comms, [b"z".to_vec()]);
    }

    #[test]
    fn disabled_capture_passes_everything_through() {
        let mut c = Capture::new(0);
        let out = run(&mut c, &[STREAM, b""]);
        assert_eq!(out, [Output::Log(STREAM.to_vec())]);
        let mut out = Vec::new();
        c.finish(&mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn end_token_outside_capture_is_plain_output() {
        let mut c = Capture::new(1024);
        let seen = collect(run(&mut c, &[b"x<!--XSUPERVISOR:END-->y"]));
        assert_eq!(seen.log, b"x<!--XSUPERVISOR:END-->y");
    }

    #[test]
    fn prefix_at_end_matches_medusa() {
        assert_eq!(prefix_at_end(b"abc<!--X", BEGIN_TOKEN), 5);
        assert_eq!(prefix_at_end(b"abc", BEGIN_TOKEN), 0);
        assert_eq!(prefix_at_end(b"<", END_TOKEN), 1);
        assert_eq!(prefix_at_end(&BEGIN_TOKEN[..23], BEGIN_TOKEN), 23);
    }
}
