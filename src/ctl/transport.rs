//! HTTP/1.1 to the daemon over `unix://path` or `http://host:port` (reference 4.2, 4.7):
//! `POST /RPC2` on one persistent connection, and `GET` streams for `/logtail`, `/mainlogtail`
//! and `/mergedtail`.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use crate::rpc::xmlrpc::base64_encode;

/// Where the daemon listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    Unix(String),
    Tcp { host: String, port: u16 },
}

impl Endpoint {
    /// Parses a serverurl as supervisorctl does: `unix://<path>` or `http://host[:port][/ignored]`.
    pub fn parse(url: &str) -> Result<Endpoint, String> {
        if let Some(path) = url.strip_prefix("unix://") {
            return Ok(Endpoint::Unix(path.to_string()));
        }
        if let Some(rest) = url.strip_prefix("http://") {
            let hostport = rest.split(['/', '?', '#']).next().unwrap_or("");
            let hostport = hostport.rsplit('@').next().unwrap_or(hostport);
            let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
                let (h, after) = v6.split_once(']').ok_or_else(|| format!("bad serverurl {url}"))?;
                (h.to_string(), after.strip_prefix(':').unwrap_or(""))
            } else {
                match hostport.rsplit_once(':') {
                    Some((h, p)) => (h.to_string(), p),
                    None => (hostport.to_string(), ""),
                }
            };
            let port = if port.is_empty() {
                80
            } else {
                port.parse::<u16>().map_err(|_| format!("bad port in serverurl {url}"))?
            };
            if host.is_empty() {
                return Err(format!("no host in serverurl {url}"));
            }
            return Ok(Endpoint::Tcp { host, port });
        }
        Err(format!("unknown protocol for serverurl {url} (expected unix:// or http://)"))
    }

    /// The Host header Python's http.client sends.
    fn host_header(&self) -> String {
        match self {
            Endpoint::Unix(_) => "localhost".into(),
            Endpoint::Tcp { host, port: 80 } => host.clone(),
            Endpoint::Tcp { host, port } => format!("{host}:{port}"),
        }
    }

    pub fn connect(&self) -> io::Result<Stream> {
        match self {
            Endpoint::Unix(path) => UnixStream::connect(path).map(Stream::Unix),
            Endpoint::Tcp { host, port } => TcpStream::connect((host.as_str(), *port)).map(|s| {
                let _ = s.set_nodelay(true);
                Stream::Tcp(s)
            }),
        }
    }
}

/// A connected socket of either kind.
pub enum Stream {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl Stream {
    fn set_read_timeout(&self, d: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Unix(s) => s.set_read_timeout(d),
            Stream::Tcp(s) => s.set_read_timeout(d),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => s.read(buf),
            Stream::Tcp(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => s.write(buf),
            Stream::Tcp(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Unix(s) => s.flush(),
            Stream::Tcp(s) => s.flush(),
        }
    }
}

/// What went wrong talking HTTP.
#[derive(Debug)]
pub enum HttpError {
    /// The socket could not be opened.
    Connect(io::Error),
    /// The exchange broke after connecting.
    Io(io::Error),
    /// A non-200 answer, with its body when it came with a length of at most 64 KiB (a
    /// `/mergedtail` refusal says why in it).
    Status { code: u16, reason: String, content_type: String, body: Vec<u8> },
    /// Not HTTP as we know it.
    Malformed(String),
}

impl From<io::Error> for HttpError {
    fn from(e: io::Error) -> Self {
        HttpError::Io(e)
    }
}

/// `Basic` credentials as supervisorctl builds them.
pub fn basic_auth(username: &str, password: &str) -> String {
    format!("Basic {}", base64_encode(format!("{username}:{password}").as_bytes()))
}

/// Largest response head or chunk-size line accepted.
const MAX_LINE: usize = 64 * 1024;
/// Largest RPC response body accepted (log reads are bounded by the caller's byte counts).
const MAX_BODY: usize = 256 * 1024 * 1024;
/// Largest body of a refused stream that is read.
const MAX_ERROR_BODY: usize = 64 * 1024;

struct Head {
    code: u16,
    reason: String,
    content_type: String,
    content_length: Option<usize>,
    chunked: bool,
    close: bool,
}

fn read_line<R: BufRead>(r: &mut R) -> Result<String, HttpError> {
    let mut line = Vec::new();
    let n = r.by_ref().take(MAX_LINE as u64).read_until(b'\n', &mut line)?;
    if n == 0 {
        return Err(HttpError::Io(io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed by the server")));
    }
    if !line.ends_with(b"\n") {
        return Err(HttpError::Malformed("header line too long or cut".into()));
    }
    while matches!(line.last(), Some(b'\n' | b'\r')) {
        line.pop();
    }
    Ok(String::from_utf8_lossy(&line).into_owned())
}

fn read_head<R: BufRead>(r: &mut R) -> Result<Head, HttpError> {
    let status = read_line(r)?;
    let mut parts = status.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    if !version.starts_with("HTTP/") {
        return Err(HttpError::Malformed(format!("bad status line {status:?}")));
    }
    let code = parts
        .next()
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or_else(|| HttpError::Malformed(format!("bad status line {status:?}")))?;
    let reason = parts.next().unwrap_or("").to_string();
    let mut head = Head {
        code,
        reason,
        content_type: String::new(),
        content_length: None,
        chunked: false,
        close: version == "HTTP/1.0",
    };
    for _ in 0..1000 {
        let line = read_line(r)?;
        if line.is_empty() {
            return Ok(head);
        }
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" => {
                head.content_length =
                    Some(value.parse().map_err(|_| HttpError::Malformed(format!("bad Content-Length {value:?}")))?)
            }
            "transfer-encoding" => head.chunked = value.eq_ignore_ascii_case("chunked"),
            "content-type" => head.content_type = value.to_string(),
            "connection" => head.close = value.eq_ignore_ascii_case("close"),
            _ => {}
        }
    }
    Err(HttpError::Malformed("too many headers".into()))
}

/// Reads one chunk of a chunked body; `None` at the last chunk.
fn read_chunk<R: BufRead>(r: &mut R) -> Result<Option<Vec<u8>>, HttpError> {
    let line = read_line(r)?;
    let size_text = line.split(';').next().unwrap_or("").trim();
    let size = usize::from_str_radix(size_text, 16)
        .map_err(|_| HttpError::Malformed(format!("bad chunk size {size_text:?}")))?;
    if size == 0 {
        // Trailers up to the blank line.
        for _ in 0..1000 {
            if read_line(r)?.is_empty() {
                break;
            }
        }
        return Ok(None);
    }
    if size > MAX_BODY {
        return Err(HttpError::Malformed("chunk too large".into()));
    }
    let mut data = vec![0; size];
    r.read_exact(&mut data)?;
    read_line(r)?; // CRLF after the data
    Ok(Some(data))
}

fn read_body<R: BufRead>(r: &mut R, head: &Head) -> Result<Vec<u8>, HttpError> {
    if head.chunked {
        let mut body = Vec::new();
        while let Some(chunk) = read_chunk(r)? {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(HttpError::Malformed("response too large".into()));
            }
            body.extend_from_slice(&chunk);
        }
        return Ok(body);
    }
    match head.content_length {
        Some(n) if n > MAX_BODY => Err(HttpError::Malformed("response too large".into())),
        Some(n) => {
            let mut body = vec![0; n];
            r.read_exact(&mut body)?;
            Ok(body)
        }
        None => {
            let mut body = Vec::new();
            r.take(MAX_BODY as u64).read_to_end(&mut body)?;
            Ok(body)
        }
    }
}

/// The XML-RPC connection: POSTs to `/RPC2`, reconnecting when a kept-alive connection was closed.
pub struct RpcConnection {
    pub endpoint: Endpoint,
    pub auth: Option<String>,
    conn: Option<BufReader<Stream>>,
}

impl RpcConnection {
    pub fn new(endpoint: Endpoint, auth: Option<String>) -> Self {
        RpcConnection { endpoint, auth, conn: None }
    }

    /// Drops the connection; the next request opens a new one.
    pub fn close(&mut self) {
        self.conn = None;
    }

    fn request(&self, body: &str) -> String {
        let mut req = format!(
            "POST /RPC2 HTTP/1.1\r\nHost: {}\r\nAccept-Encoding: identity\r\nUser-Agent: minisv-ctl\r\n\
             Content-Type: text/xml\r\nAccept: text/xml\r\n",
            self.endpoint.host_header()
        );
        if let Some(a) = &self.auth {
            req.push_str("Authorization: ");
            req.push_str(a);
            req.push_str("\r\n");
        }
        req.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
        req.push_str(body);
        req
    }

    /// Sends one request body and returns the 200 response body.
    pub fn post(&mut self, body: &str) -> Result<Vec<u8>, HttpError> {
        let req = self.request(body);
        let reused = self.conn.is_some();
        match self.exchange(&req) {
            // A kept-alive connection may have been closed by the server meanwhile: retry once on a
            // fresh one, as Python's xmlrpc client does.
            Err(HttpError::Io(_)) if reused => {
                self.conn = None;
                self.exchange(&req)
            }
            other => other,
        }
    }

    fn exchange(&mut self, req: &str) -> Result<Vec<u8>, HttpError> {
        if self.conn.is_none() {
            let s = self.endpoint.connect().map_err(HttpError::Connect)?;
            self.conn = Some(BufReader::new(s));
        }
        let result = (|| {
            let conn = self.conn.as_mut().ok_or_else(|| HttpError::Malformed("no connection".into()))?;
            conn.get_mut().write_all(req.as_bytes())?;
            let head = read_head(conn)?;
            let body = read_body(conn, &head)?;
            Ok((head, body))
        })();
        match result {
            Ok((head, body)) => {
                if head.close || head.code != 200 {
                    self.conn = None;
                }
                if head.code != 200 {
                    let Head { code, reason, content_type, .. } = head;
                    return Err(HttpError::Status { code, reason, content_type, body });
                }
                Ok(body)
            }
            Err(e) => {
                self.conn = None;
                Err(e)
            }
        }
    }
}

/// Outcome of a streamed GET.
pub enum StreamEnd {
    /// The caller asked to stop.
    Stopped,
    /// The server ended the response.
    Finished,
}

/// `GET path` and hands every piece of body to `sink` as it arrives, until the body ends or
/// `stop()` returns true (checked at least every 200 ms); `sink` first gets an empty piece once
/// the answer is 200 (the stream is open). Sends the headers of supervisorctl's http_client;
/// the Authorization header only when a password is set.
pub fn stream_get(
    endpoint: &Endpoint,
    path: &str,
    auth: Option<&str>,
    sink: &mut dyn FnMut(&[u8]),
    stop: &dyn Fn() -> bool,
) -> Result<StreamEnd, HttpError> {
    let stream = endpoint.connect().map_err(HttpError::Connect)?;
    stream.set_read_timeout(Some(Duration::from_millis(200)))?;
    let mut r = Retrying { inner: BufReader::new(stream), stop };
    let mut req = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nAccept-Encoding: chunked\r\nAccept: */*\r\nUser-agent: minisv-ctl\r\n",
        endpoint.host_header()
    );
    if let Some(a) = auth {
        req.push_str(&format!("Authorization: {a}\r\n"));
    }
    req.push_str("\r\n");
    r.inner.get_mut().write_all(req.as_bytes())?;
    let result = (|| {
        let head = read_head(&mut r)?;
        if head.code != 200 {
            let body = match head.content_length {
                Some(n) if n <= MAX_ERROR_BODY && !head.chunked => {
                    let mut body = vec![0; n];
                    r.read_exact(&mut body).map(|_| body).unwrap_or_default()
                }
                _ => Vec::new(),
            };
            let Head { code, reason, content_type, .. } = head;
            return Err(HttpError::Status { code, reason, content_type, body });
        }
        sink(&[]);
        if head.chunked {
            while let Some(chunk) = read_chunk(&mut r)? {
                sink(&chunk);
            }
        } else {
            let mut left = head.content_length.unwrap_or(usize::MAX);
            let mut buf = [0u8; 8192];
            while left > 0 {
                let n = r.read(&mut buf[..left.min(8192)])?;
                if n == 0 {
                    break;
                }
                sink(&buf[..n]);
                left -= n;
            }
        }
        Ok(StreamEnd::Finished)
    })();
    match result {
        Err(HttpError::Io(_)) if stop() => Ok(StreamEnd::Stopped),
        other => other,
    }
}

/// A reader that retries read timeouts until `stop()` says to give up. Giving up is reported as
/// `ErrorKind::Other`: std's `read_until`/`read_exact` would silently retry `Interrupted`.
struct Retrying<'a, R> {
    inner: R,
    stop: &'a dyn Fn() -> bool,
}

impl<R: BufRead> Read for Retrying<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = {
            let avail = self.fill_buf()?;
            let n = avail.len().min(buf.len());
            buf[..n].copy_from_slice(&avail[..n]);
            n
        };
        self.consume(n);
        Ok(n)
    }
}

impl<R: BufRead> BufRead for Retrying<'_, R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        // Bounded by the caller's stop condition; each turn waits at most the socket timeout.
        loop {
            if (self.stop)() {
                return Err(io::Error::other("stopped"));
            }
            match self.inner.fill_buf() {
                Ok(_) => break,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
                    ) =>
                {
                    continue
                }
                Err(e) => return Err(e),
            }
        }
        self.inner.fill_buf()
    }
    fn consume(&mut self, n: usize) {
        self.inner.consume(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serverurls_parse_like_supervisorctl() {
        assert_eq!(Endpoint::parse("unix:///tmp/s.sock"), Ok(Endpoint::Unix("/tmp/s.sock".into())));
        assert_eq!(
            Endpoint::parse("http://localhost:9001"),
            Ok(Endpoint::Tcp { host: "localhost".into(), port: 9001 })
        );
        assert_eq!(Endpoint::parse("http://127.0.0.1/RPC2"), Ok(Endpoint::Tcp { host: "127.0.0.1".into(), port: 80 }));
        assert_eq!(Endpoint::parse("http://[::1]:7/x"), Ok(Endpoint::Tcp { host: "::1".into(), port: 7 }));
        assert!(Endpoint::parse("ftp://x").is_err());
        assert!(Endpoint::parse("http://h:notaport").is_err());
    }

    #[test]
    fn basic_auth_matches_python() {
        // base64.encodebytes(b'bob:secret') from the reference's captured request.
        assert_eq!(basic_auth("bob", "secret"), "Basic Ym9iOnNlY3JldA==");
    }

    #[test]
    fn chunked_bodies_decode() {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n1;x=y\r\n!\r\n0\r\n\r\n";
        let mut r = BufReader::new(&raw[..]);
        let head = read_head(&mut r).expect("head");
        assert!(head.chunked);
        assert_eq!(read_body(&mut r, &head).expect("body"), b"hello!");
    }

    #[test]
    fn bad_heads_are_errors_not_panics() {
        for raw in
            [&b"garbage\r\n\r\n"[..], b"HTTP/1.1 abc\r\n\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", b""]
        {
            let mut r = BufReader::new(raw);
            assert!(read_head(&mut r).is_err());
        }
        let mut r = BufReader::new(&b"zz\r\n"[..]);
        assert!(read_chunk(&mut r).is_err());
    }
}
