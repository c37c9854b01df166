//! One HTTP/1.x connection as a state machine without I/O: bytes in, requests out, responses
//! in, bytes out, with the time given to it. The server (`server.rs`) moves the bytes between
//! it and a socket; everything about framing, limits and authentication is decided here, so
//! it is tested without sockets and fuzzed with inputs split at every byte.
//!
//! Every buffer is bounded before anything is read into it: a head is at most [`MAX_HEAD`]
//! bytes, a body at most what its route allows (413 at once for a larger declared length,
//! whatever the number), a chunked body the same, and nothing is ever allocated from a length
//! the peer declares. Heads are parsed with `httparse` (no allocation, fuzzed upstream).

use std::time::{Duration, Instant, SystemTime};

use super::auth::{self, AuthOutcome};
use super::httpdate::http_date;
use crate::config::Credentials;

/// The longest request head (request line and headers) accepted; longer ones get 431.
pub const MAX_HEAD: usize = 16 * 1024;
/// The most header fields in a head.
const MAX_HEADERS: usize = 64;
/// The longest chunk-size line of a chunked body (extensions included).
const MAX_CHUNK_LINE: usize = 1024;
/// How much unsent response may wait before the next pipelined request is read: a client that
/// sends requests and never reads the answers is not answered further.
const MAX_QUEUED_OUTPUT: usize = 64 * 1024;
/// After its last answer, a connection that is being closed reads and drops what the client
/// still sends, up to this much or `LINGER_TIME`, before it closes: closing with unread input
/// makes the kernel send a reset, which can destroy the answer (a 401 or 413) before the client
/// has read it.
const LINGER_BYTES: usize = 1 << 20;
const LINGER_TIME: Duration = Duration::from_secs(2);
/// The most buffer capacity a connection keeps between requests.
const KEPT_BUFFER: usize = 16 * 1024;

/// How long the parts of a connection's life may take.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    /// From a connection's accept, or a request's first byte, until the request (head and body)
    /// is complete.
    pub request: Duration,
    /// An idle keep-alive connection after a completed request (Medusa's zombie timeout).
    pub idle: Duration,
    /// A response that makes no progress because the client does not read it.
    pub write: Duration,
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        Timeouts {
            request: Duration::from_secs(10),
            idle: Duration::from_secs(30 * 60),
            write: Duration::from_secs(60),
        }
    }
}

/// What a connection checks a request against.
pub struct Policy<'a> {
    /// The listener's credentials; None: every request is allowed.
    pub auth: Option<&'a Credentials>,
    /// The largest body a request to this target may have.
    pub body_limit: fn(&str) -> usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

impl Version {
    pub fn as_str(self) -> &'static str {
        match self {
            Version::Http10 => "HTTP/1.0",
            Version::Http11 => "HTTP/1.1",
        }
    }
}

/// A complete, authenticated request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// The request target as sent (`/RPC2`, `/logtail/x?y`).
    pub target: String,
    pub version: Version,
    /// Every header, names lowercased, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// A response to write: status, headers besides Server/Date/Content-Length/Content-Type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub content_type: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn new(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Response {
        Response { status, content_type: content_type.into(), headers: Vec::new(), body: body.into() }
    }

    /// Medusa's error page for `code`.
    pub fn error(code: u16) -> Response {
        Response::new(code, "text/html", error_body(code))
    }

    pub fn with(mut self, name: &str, value: &str) -> Response {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// What `poll` found.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// Answer it with `respond` or `start_stream`; nothing more is read until then.
    Request(Request),
    /// A line for the main log (a failed login).
    Log(String),
}

#[derive(Debug)]
enum Phase {
    /// Waiting for (the rest of) a request head.
    Head,
    /// Reading the body of a request whose head was accepted.
    Body { req: Request, framing: Framing, keep_alive: bool, limit: usize },
    /// The request was handed out; its answer is awaited.
    Answering { version: Version, keep_alive: bool, head_only: bool },
    /// A response without end (`/logtail`): data is pushed until the connection closes.
    Streaming { chunked: bool },
    /// Write what is queued, shut the sending side, drop what still comes (`linger`), close.
    Closing,
}

#[derive(Debug)]
enum Framing {
    Length(usize),
    Chunked(Chunk),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// Reading a chunk-size line.
    Size,
    /// This many data bytes of the current chunk are left.
    Data(usize),
    /// The CRLF after a chunk's data.
    DataEnd,
    /// Trailer lines after the last chunk, until an empty one.
    Trailers(usize),
}

pub struct Conn {
    phase: Phase,
    /// Received bytes not consumed yet (bounded: see `read_room`).
    input: Vec<u8>,
    output: Vec<u8>,
    /// How much of `output` was written.
    sent: usize,
    /// The peer closed its side: no more input.
    eof: bool,
    /// While closing: how much more input is read and dropped.
    linger: usize,
    /// The sending side was shut down (closing, once the last answer was written).
    write_shut: bool,
    /// How much of `input` is known to hold no end of a head: the head is parsed again only
    /// when new bytes may complete it, not at every byte a slow client sends.
    scanned: usize,
    /// Some request on this connection was allowed (it is no longer a stranger).
    authenticated: bool,
    /// Requests answered.
    served: u64,
    /// When the current wait began (accept, first byte of a request, last answer, last write
    /// progress), and what the wait is for.
    since: Instant,
    timeouts: Timeouts,
}

/// Why a connection is past its time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    Request,
    Idle,
    Write,
    Linger,
}

impl Conn {
    pub fn new(now: Instant, timeouts: Timeouts) -> Conn {
        Conn {
            phase: Phase::Head,
            input: Vec::new(),
            output: Vec::new(),
            sent: 0,
            eof: false,
            linger: LINGER_BYTES,
            write_shut: false,
            scanned: 0,
            authenticated: false,
            served: 0,
            since: now,
            timeouts,
        }
    }

    /// How many more bytes the connection takes now (0: do not read).
    pub fn read_room(&self) -> usize {
        match &self.phase {
            Phase::Head | Phase::Answering { .. } => MAX_HEAD.saturating_sub(self.input.len()),
            // Bodies are moved out of `input` as they come: keep at most a few KiB there.
            Phase::Body { .. } => (MAX_HEAD * 4).saturating_sub(self.input.len()),
            // Whatever a tail's client sends is read and dropped (to notice it leaving).
            Phase::Streaming { .. } => MAX_HEAD,
            Phase::Closing => self.linger.min(MAX_HEAD),
        }
    }

    /// Takes bytes read from the socket (at most `read_room` of them).
    pub fn received(&mut self, data: &[u8], now: Instant) {
        if data.is_empty() {
            return;
        }
        match self.phase {
            Phase::Streaming { .. } => return,
            Phase::Closing => {
                self.linger = self.linger.saturating_sub(data.len());
                return;
            }
            // On a connection that was answered before, the first byte of the next request
            // starts its clock (blank lines do not); a new connection's clock runs from its
            // accept until its first request is complete.
            Phase::Head if self.served > 0 && self.is_idle() && data.iter().any(|b| !matches!(b, b'\r' | b'\n')) => {
                self.since = now;
            }
            _ => {}
        }
        self.input.extend_from_slice(data);
    }

    /// The peer closed its sending side.
    pub fn received_eof(&mut self) {
        self.eof = true;
    }

    /// The authenticated flag, for the choice of whom to evict.
    pub fn is_authenticated(&self) -> bool {
        self.authenticated
    }

    /// Waiting for a request with nothing of it received and nothing to send: ending the
    /// connection now loses nothing.
    pub fn is_idle(&self) -> bool {
        matches!(self.phase, Phase::Head)
            && self.input.iter().all(|b| matches!(b, b'\r' | b'\n'))
            && self.output_len() == 0
    }

    pub fn is_streaming(&self) -> bool {
        matches!(self.phase, Phase::Streaming { .. })
    }

    /// Whether the connection is over: close it once `output` is empty (`done` checks both).
    pub fn done(&self) -> bool {
        let closing = match self.phase {
            // Once the answer is out: at the client's EOF, or when lingering is over.
            Phase::Closing => self.eof || self.linger == 0,
            // Nothing more can come and nothing is owed: what `poll` could not make a request of
            // will not become one (a request still queued behind unsent output keeps the
            // output non-empty).
            Phase::Head | Phase::Body { .. } => self.eof,
            // The client left before its answer (Supervisor's server closes on EOF too): the
            // loop's answer goes to no one, and the connection costs nothing meanwhile.
            Phase::Answering { .. } => self.eof,
            Phase::Streaming { .. } => self.eof,
        };
        closing && self.output_len() == 0
    }

    /// Whether the sending side should be shut down now: the connection is closing and its
    /// last answer is written. Call `write_shut` once done.
    pub fn wants_write_shutdown(&self) -> bool {
        matches!(self.phase, Phase::Closing) && self.output_len() == 0 && !self.write_shut
    }

    pub fn write_shut(&mut self) {
        self.write_shut = true;
    }

    /// Bytes to write.
    pub fn output(&self) -> &[u8] {
        &self.output[self.sent..]
    }

    pub fn output_len(&self) -> usize {
        self.output.len() - self.sent
    }

    /// `n` bytes of `output` were written.
    pub fn wrote(&mut self, n: usize, now: Instant) {
        self.sent += n.min(self.output_len());
        if n > 0 {
            self.since_write(now);
        }
        if self.sent == self.output.len() {
            self.output.clear();
            self.sent = 0;
            // A large answer's buffer is not kept for the next small one, nor by an idle
            // connection (1024 of them each keeping a 250 KB answer's would be 250 MB).
            if self.output.capacity() > KEPT_BUFFER {
                self.output = Vec::new();
            }
        }
    }

    /// While a response is being written, its progress is what the clock measures (not while
    /// a request is being read: that clock runs from the request's start).
    fn since_write(&mut self, now: Instant) {
        let reading = match self.phase {
            Phase::Body { .. } => true,
            Phase::Head => !self.is_idle() || self.served == 0,
            _ => false,
        };
        if !reading {
            self.since = now;
        }
    }

    /// When this connection is next due to be looked at (`expired`), if ever.
    pub fn deadline(&self) -> Option<Instant> {
        self.expiry().map(|(_, after)| self.since + after)
    }

    fn expiry(&self) -> Option<(Expiry, Duration)> {
        match self.phase {
            // A stream's client may stop reading as long as it likes: what waits for it is one
            // chunk, read from the file when the socket takes it.
            Phase::Streaming { .. } => None,
            _ if self.output_len() > 0 && !matches!(self.phase, Phase::Body { .. }) => {
                Some((Expiry::Write, self.timeouts.write))
            }
            Phase::Head if self.is_idle() && self.served > 0 => Some((Expiry::Idle, self.timeouts.idle)),
            Phase::Head | Phase::Body { .. } => Some((Expiry::Request, self.timeouts.request)),
            // The answer is the loop's to give.
            Phase::Answering { .. } => None,
            // Lingering, from the moment the last answer was written.
            Phase::Closing => Some((Expiry::Linger, LINGER_TIME)),
        }
    }

    /// Whether the connection has outlived its deadline (then close it).
    pub fn expired(&self, now: Instant) -> Option<Expiry> {
        let (why, after) = self.expiry()?;
        (now >= self.since + after).then_some(why)
    }

    /// Parses what was received: the next request, a log line, or nothing yet. Errors are
    /// answered here (400, 401, 411, 413, 431) and end the connection.
    pub fn poll(&mut self, policy: &Policy, wall: SystemTime) -> Option<Event> {
        let event = self.parse(policy, wall);
        if self.input.is_empty() && self.input.capacity() > KEPT_BUFFER {
            self.input = Vec::new();
        }
        event
    }

    fn parse(&mut self, policy: &Policy, wall: SystemTime) -> Option<Event> {
        // Bounded: each round consumes input or changes the phase.
        for _ in 0..8 {
            match &mut self.phase {
                Phase::Head => {
                    if self.output_len() > MAX_QUEUED_OUTPUT {
                        return None;
                    }
                    match self.parse_head(policy, wall) {
                        Step::Again => continue,
                        Step::Wait => return None,
                        Step::Emit(e) => return Some(e),
                    }
                }
                Phase::Body { .. } => match self.read_body() {
                    Ok(true) => {
                        let Phase::Body { req, keep_alive, .. } = std::mem::replace(&mut self.phase, Phase::Head)
                        else {
                            unreachable!("matched above")
                        };
                        return Some(self.hand_out(req, keep_alive));
                    }
                    Ok(false) => return None,
                    Err(code) => {
                        self.fail(code, wall);
                        return None;
                    }
                },
                Phase::Answering { .. } | Phase::Streaming { .. } | Phase::Closing => return None,
            }
        }
        None
    }

    fn hand_out(&mut self, req: Request, keep_alive: bool) -> Event {
        let head_only = req.method == "HEAD";
        self.phase = Phase::Answering { version: req.version, keep_alive, head_only };
        Event::Request(req)
    }

    /// Answers with `code` and Medusa's error page, then closes.
    fn fail(&mut self, code: u16, wall: SystemTime) {
        let version = match &self.phase {
            Phase::Body { req, .. } => req.version,
            _ => Version::Http11,
        };
        let mut resp = Response::error(code);
        if code == 401 {
            resp = resp.with("WWW-Authenticate", "Basic realm=\"default\"");
        }
        self.input = Vec::new();
        write_response(&mut self.output, version, &resp, Some("close"), false, wall);
        self.phase = Phase::Closing;
    }

    fn parse_head(&mut self, policy: &Policy, wall: SystemTime) -> Step {
        // Empty lines before a request are allowed (RFC 9112 2.2); they do not count.
        let blank = self.input.iter().take_while(|b| matches!(b, b'\r' | b'\n')).count();
        if blank > 0 {
            self.input.drain(..blank);
            self.scanned = 0;
        }
        if self.input.is_empty() {
            return Step::Wait;
        }
        // Parsed the first time (garbage is refused at once), then only once bytes that may end
        // the head arrive, the limit is reached, or nothing more will come (so what a head
        // split anyhow gets is what it gets whole).
        let new = &self.input[self.scanned.saturating_sub(3)..];
        let may_end = new.windows(2).any(|w| w == b"\n\n") || new.windows(3).any(|w| w == b"\n\r\n");
        if self.scanned > 0 && !may_end && self.input.len() < MAX_HEAD && !self.eof {
            self.scanned = self.input.len();
            return Step::Wait;
        }
        self.scanned = self.input.len();
        let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut parsed = httparse::Request::new(&mut fields);
        let len = match parsed.parse(&self.input) {
            Ok(httparse::Status::Complete(n)) if n <= MAX_HEAD => n,
            Ok(httparse::Status::Complete(_)) | Err(httparse::Error::TooManyHeaders) => {
                self.fail(431, wall);
                return Step::Wait;
            }
            Ok(httparse::Status::Partial) if self.input.len() >= MAX_HEAD => {
                self.fail(431, wall);
                return Step::Wait;
            }
            Ok(httparse::Status::Partial) => return Step::Wait,
            Err(_) => {
                self.fail(400, wall);
                return Step::Wait;
            }
        };
        let version = if parsed.version == Some(0) { Version::Http10 } else { Version::Http11 };
        let req = Request {
            method: parsed.method.unwrap_or("GET").to_string(),
            target: parsed.path.unwrap_or("/").to_string(),
            version,
            headers: parsed
                .headers
                .iter()
                .map(|h| (h.name.to_ascii_lowercase(), String::from_utf8_lossy(h.value).trim().to_string()))
                .collect(),
            body: Vec::new(),
        };
        self.input.drain(..len);
        self.scanned = 0;
        let keep_alive = keep_alive(&req);
        // The body's framing, checked against the limit before a byte of it is read.
        let framing = match framing(&req) {
            Ok(f) => f,
            Err(code) => {
                self.phase = Phase::Body { req, framing: Framing::Length(0), keep_alive: false, limit: 0 };
                self.fail(code, wall);
                return Step::Wait;
            }
        };
        let limit = (policy.body_limit)(&req.target);
        if let Framing::Length(n) = framing {
            if n > limit {
                self.phase = Phase::Body { req, framing, keep_alive: false, limit };
                self.fail(413, wall);
                return Step::Wait;
            }
        }
        if let Some(creds) = policy.auth {
            match auth::check(req.header("authorization"), creds) {
                AuthOutcome::Allowed => {}
                AuthOutcome::Unauthorized => {
                    self.phase = Phase::Body { req, framing, keep_alive: false, limit };
                    self.fail(401, wall);
                    return Step::Wait;
                }
                AuthOutcome::WrongCredentials { user } => {
                    self.phase = Phase::Body { req, framing, keep_alive: false, limit };
                    self.fail(401, wall);
                    return Step::Emit(Event::Log(format!("failed login for user {user:?}")));
                }
                AuthOutcome::Malformed => {
                    self.phase = Phase::Body { req, framing, keep_alive: false, limit };
                    self.fail(400, wall);
                    return Step::Wait;
                }
            }
        }
        self.authenticated = true;
        let expects_body = !matches!(framing, Framing::Length(0));
        if expects_body
            && req.version == Version::Http11
            && req.header("expect").is_some_and(|e| e.eq_ignore_ascii_case("100-continue"))
        {
            self.output.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
        }
        self.phase = Phase::Body { req, framing, keep_alive, limit };
        Step::Again
    }

    /// Moves body bytes out of `input`: Ok(true) when the body is complete.
    fn read_body(&mut self) -> Result<bool, u16> {
        // A cursor over `input`, drained once at the end: draining at each chunk moved the
        // rest of the input every time (a body of 1-byte chunks cost seconds of the loop).
        let mut pos = 0;
        let result = self.decode_body(&mut pos);
        self.input.drain(..pos.min(self.input.len()));
        result
    }

    fn decode_body(&mut self, pos: &mut usize) -> Result<bool, u16> {
        let Phase::Body { req, framing, limit, .. } = &mut self.phase else { return Ok(false) };
        // Bounded: each round consumes input or returns.
        loop {
            let rest = &self.input[*pos..];
            match framing {
                Framing::Length(left) => {
                    let n = (*left).min(rest.len());
                    req.body.extend_from_slice(&rest[..n]);
                    *pos += n;
                    *left -= n;
                    return Ok(*left == 0);
                }
                Framing::Chunked(state) => match *state {
                    Chunk::Size => {
                        let Some(end) = rest.iter().position(|&b| b == b'\n') else {
                            return if rest.len() > MAX_CHUNK_LINE { Err(400) } else { Ok(false) };
                        };
                        if end > MAX_CHUNK_LINE {
                            return Err(400);
                        }
                        let line = &rest[..end];
                        let line = line.strip_suffix(b"\r").unwrap_or(line);
                        let digits = line.split(|&b| b == b';').next().unwrap_or(b"");
                        let digits = std::str::from_utf8(digits).map_err(|_| 400u16)?.trim();
                        if digits.is_empty() || digits.len() > 16 {
                            // More than 16 hex digits is over any limit; none at all is garbage.
                            return Err(if digits.is_empty() { 400 } else { 413 });
                        }
                        let size = u64::from_str_radix(digits, 16).map_err(|_| 400u16)?;
                        *pos += end + 1;
                        if size > limit.saturating_sub(req.body.len()) as u64 {
                            return Err(413);
                        }
                        *state = if size == 0 { Chunk::Trailers(0) } else { Chunk::Data(size as usize) };
                    }
                    Chunk::Data(left) => {
                        let n = left.min(rest.len());
                        req.body.extend_from_slice(&rest[..n]);
                        *pos += n;
                        if n == left {
                            *state = Chunk::DataEnd;
                        } else {
                            *state = Chunk::Data(left - n);
                            return Ok(false);
                        }
                    }
                    Chunk::DataEnd => {
                        if rest.starts_with(b"\r\n") {
                            *pos += 2;
                        } else if rest.starts_with(b"\n") {
                            *pos += 1;
                        } else if rest.len() >= 2 || rest.first().is_some_and(|&b| b != b'\r') {
                            return Err(400);
                        } else {
                            return Ok(false);
                        }
                        *state = Chunk::Size;
                    }
                    Chunk::Trailers(seen) => {
                        let Some(end) = rest.iter().position(|&b| b == b'\n') else {
                            return if seen + rest.len() > MAX_HEAD { Err(431) } else { Ok(false) };
                        };
                        let empty = rest[..end].iter().all(|&b| b == b'\r');
                        if seen + end > MAX_HEAD {
                            return Err(431);
                        }
                        *pos += end + 1;
                        if empty {
                            return Ok(true);
                        }
                        *state = Chunk::Trailers(seen + end + 1);
                    }
                },
            }
        }
    }

    /// Answers the request handed out last. `wall` is for the Date header.
    pub fn respond(&mut self, resp: &Response, wall: SystemTime, now: Instant) {
        let Phase::Answering { version, keep_alive, head_only } = self.phase else { return };
        // A client that closed its side still gets the answers to requests it sent before.
        let keep_alive = keep_alive && !resp.headers.iter().any(|(k, v)| is_close(k, v));
        let connection = match (version, keep_alive) {
            (Version::Http10, true) => Some("Keep-Alive"),
            (Version::Http11, false) if !resp.headers.iter().any(|(k, v)| is_close(k, v)) => Some("close"),
            _ => None,
        };
        write_response(&mut self.output, version, resp, connection, head_only, wall);
        self.served += 1;
        self.since = now;
        self.phase = if keep_alive { Phase::Head } else { Phase::Closing };
    }

    /// Answers the request handed out last with a response that has no end: `head` holds the
    /// status line's code and headers; data follows through `push`. HTTP/1.1 streams chunked,
    /// HTTP/1.0 until the connection closes. Returns whether chunked.
    pub fn start_stream(&mut self, resp: &Response, wall: SystemTime) -> bool {
        let Phase::Answering { version, .. } = self.phase else { return false };
        let chunked = version == Version::Http11;
        let mut head = head(version, resp, wall);
        head.push_str(&format!("Content-Type: {}\r\n", resp.content_type));
        head.push_str(if chunked { "Transfer-Encoding: chunked\r\n\r\n" } else { "Connection: close\r\n\r\n" });
        self.output.extend_from_slice(head.as_bytes());
        self.input = Vec::new();
        self.served += 1;
        self.phase = Phase::Streaming { chunked };
        chunked
    }

    /// Appends data to a stream (framed as a chunk when chunked).
    pub fn push(&mut self, data: &[u8]) {
        let Phase::Streaming { chunked } = self.phase else { return };
        if data.is_empty() {
            return;
        }
        if chunked {
            self.output.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
            self.output.extend_from_slice(data);
            self.output.extend_from_slice(b"\r\n");
        } else {
            self.output.extend_from_slice(data);
        }
    }
}

enum Step {
    Again,
    Wait,
    Emit(Event),
}

fn is_close(name: &str, value: &str) -> bool {
    name.eq_ignore_ascii_case("connection") && value.eq_ignore_ascii_case("close")
}

/// HTTP/1.1 keeps the connection unless told to close; HTTP/1.0 closes unless told to keep it.
fn keep_alive(req: &Request) -> bool {
    let tokens = |v: &str, t: &str| v.split(',').any(|x| x.trim().eq_ignore_ascii_case(t));
    let conn = req.headers.iter().filter(|(k, _)| k == "connection").map(|(_, v)| v.as_str());
    let mut close = false;
    let mut keep = false;
    for v in conn {
        close |= tokens(v, "close");
        keep |= tokens(v, "keep-alive");
    }
    match req.version {
        Version::Http11 => !close,
        Version::Http10 => keep && !close,
    }
}

/// The body's framing from Content-Length / Transfer-Encoding, or the status to refuse it with.
fn framing(req: &Request) -> Result<Framing, u16> {
    let mut length: Option<&str> = None;
    let mut chunked = false;
    for (k, v) in &req.headers {
        match k.as_str() {
            "content-length" => match length {
                // Two different lengths cannot both be right (request smuggling).
                Some(l) if l != v => return Err(400),
                _ => length = Some(v),
            },
            "transfer-encoding" => {
                if v.eq_ignore_ascii_case("chunked") {
                    chunked = true;
                } else {
                    return Err(400);
                }
            }
            _ => {}
        }
    }
    match (length, chunked) {
        (Some(_), true) => Err(400),
        (None, true) => Ok(Framing::Chunked(Chunk::Size)),
        (Some(l), false) => {
            if l.is_empty() || !l.bytes().all(|b| b.is_ascii_digit()) {
                return Err(400);
            }
            // Any number of digits: beyond usize it is over every limit.
            Ok(Framing::Length(l.parse::<usize>().unwrap_or(usize::MAX)))
        }
        (None, false) if req.method == "POST" && req.target.starts_with("/RPC2") => Err(411),
        (None, false) => Ok(Framing::Length(0)),
    }
}

pub fn reason(code: u16) -> &'static str {
    match code {
        100 => "Continue",
        200 => "OK",
        301 => "Moved Permanently",
        303 => "See Other",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Request Entity Too Large",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Internal Server Error",
    }
}

/// Medusa's error page (4.1), lines joined by CRLF.
pub fn error_body(code: u16) -> String {
    [
        "<head>",
        "<title>Error response</title>",
        "</head>",
        "<body>",
        "<h1>Error response</h1>",
        &format!("<p>Error code {code}."),
        &format!("<p>Message: {}.", reason(code)),
        "</body>",
        "",
    ]
    .join("\r\n")
}

/// The status line, Server, Date and the response's own headers.
fn head(version: Version, resp: &Response, wall: SystemTime) -> String {
    use std::fmt::Write;
    let mut head = String::with_capacity(160);
    let _ = write!(
        head,
        "{} {} {}\r\nServer: Medusa/1.12\r\nDate: {}\r\n",
        version.as_str(),
        resp.status,
        reason(resp.status),
        http_date(wall)
    );
    for (k, v) in &resp.headers {
        let _ = write!(head, "{k}: {v}\r\n");
    }
    head
}

/// `head`, `Connection` if given, Content-Length, Content-Type, body.
fn write_response(
    out: &mut Vec<u8>,
    version: Version,
    resp: &Response,
    connection: Option<&str>,
    head_only: bool,
    wall: SystemTime,
) {
    use std::fmt::Write;
    let mut head = head(version, resp, wall);
    if let Some(c) = connection {
        let _ = write!(head, "Connection: {c}\r\n");
    }
    let _ = write!(head, "Content-Length: {}\r\nContent-Type: {}\r\n\r\n", resp.body.len(), resp.content_type);
    out.reserve(head.len() + if head_only { 0 } else { resp.body.len() });
    out.extend_from_slice(head.as_bytes());
    if !head_only {
        out.extend_from_slice(&resp.body);
    }
}

#[cfg(test)]
mod tests;
