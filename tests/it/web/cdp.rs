//! Just enough of the Chrome DevTools Protocol to drive Debian's headless chromium: a
//! websocket client (RFC 6455 handshake and framing), commands by id, and JSON picked out of
//! the answers by key. Events chromium sends in between are skipped.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::super::harness::{kill, wait_for, TempDir};

/// A headless chromium with its own profile, killed (by pid) when dropped.
pub struct Browser {
    child: Child,
    _profile: TempDir,
    pub port: u16,
}

/// The chromium binary, installed with apt when missing and running as root; None to skip.
pub fn chromium() -> Option<PathBuf> {
    let find = || ["/usr/bin/chromium", "/usr/bin/chromium-browser"].iter().map(PathBuf::from).find(|p| p.exists());
    if let Some(p) = find() {
        return Some(p);
    }
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: chromium is not installed and the test is not root (apt-get install chromium)");
        return None;
    }
    let ok = Command::new("apt-get")
        .args(["install", "-y", "-q", "chromium"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("skipped: apt-get install chromium failed");
    }
    find()
}

impl Browser {
    pub fn launch(bin: &Path) -> Browser {
        let profile = TempDir::new("chrome");
        let child = Command::new(bin)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-extensions",
                "--hide-scrollbars",
                "--remote-debugging-port=0",
                "--window-size=1200,800",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromium");
        let file = profile.join("DevToolsActivePort");
        let port = wait_for(30.0, "chromium's DevToolsActivePort", || {
            std::fs::read_to_string(&file).ok()?.lines().next()?.trim().parse::<u16>().ok()
        });
        Browser { child, _profile: profile, port }
    }

    /// A websocket to the first page target.
    pub fn page(&self) -> Page {
        let list = wait_for(10.0, "a page target", || {
            let mut s = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
            s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
            s.write_all(b"GET /json/list HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
            // Chromium keeps the connection open: read the head, then Content-Length bytes.
            let mut r = BufReader::new(s);
            let mut len = 0;
            loop {
                let mut line = String::new();
                r.read_line(&mut line).ok()?;
                if line.trim().is_empty() {
                    break;
                }
                if let Some((k, v)) = line.split_once(':') {
                    if k.eq_ignore_ascii_case("content-length") {
                        len = v.trim().parse().ok()?;
                    }
                }
            }
            let mut body = vec![0u8; len];
            r.read_exact(&mut body).ok()?;
            let text = String::from_utf8_lossy(&body).into_owned();
            text.contains("\"type\": \"page\"").then_some(text)
        });
        // The entry of type "page": its webSocketDebuggerUrl follows its type.
        let entry = &list[list.find("\"type\": \"page\"").expect("page")..];
        let at = entry.find("ws://").expect("webSocketDebuggerUrl");
        let url = &entry[at..entry[at..].find('"').map(|e| at + e).expect("url end")];
        let path = &url[url[5..].find('/').expect("path") + 5..];
        Page::connect(self.port, path)
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        kill(self.child.id(), libc::SIGKILL);
        let _ = self.child.wait();
    }
}

pub struct Page {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    next_id: u64,
}

impl Page {
    fn connect(port: u16, path: &str) -> Page {
        let s = TcpStream::connect(("127.0.0.1", port)).expect("connect to devtools");
        s.set_read_timeout(Some(Duration::from_secs(60))).expect("timeout");
        let mut writer = s.try_clone().expect("clone");
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        writer.write_all(req.as_bytes()).expect("handshake");
        let mut reader = BufReader::new(s);
        let mut status = String::new();
        reader.read_line(&mut status).expect("handshake answer");
        assert!(status.contains(" 101 "), "websocket handshake refused: {status}");
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).expect("handshake headers");
            if line == "\r\n" || line.is_empty() {
                break;
            }
        }
        Page { reader, writer, next_id: 1 }
    }

    fn send_frame(&mut self, payload: &[u8]) {
        let mut frame = vec![0x81u8];
        match payload.len() {
            n if n < 126 => frame.push(0x80 | n as u8),
            n if n < 65536 => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                frame.push(0x80 | 127);
                frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        let mask = [0x5a, 0x13, 0xc7, 0x2e];
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.writer.write_all(&frame).expect("send to chromium");
    }

    /// One whole message (fragments joined); pings are answered.
    fn recv_message(&mut self) -> String {
        let mut message = Vec::new();
        loop {
            let mut head = [0u8; 2];
            self.reader.read_exact(&mut head).expect("read from chromium");
            let (fin, opcode) = (head[0] & 0x80 != 0, head[0] & 0x0f);
            let mut len = (head[1] & 0x7f) as u64;
            if len == 126 {
                let mut b = [0u8; 2];
                self.reader.read_exact(&mut b).expect("len16");
                len = u16::from_be_bytes(b) as u64;
            } else if len == 127 {
                let mut b = [0u8; 8];
                self.reader.read_exact(&mut b).expect("len64");
                len = u64::from_be_bytes(b);
            }
            let mut payload = vec![0u8; len as usize];
            self.reader.read_exact(&mut payload).expect("payload");
            match opcode {
                0x8 => panic!("chromium closed the websocket"),
                0x9 => {
                    let mut pong = vec![0x8a, 0x80 | payload.len() as u8, 0, 0, 0, 0];
                    pong.extend_from_slice(&payload);
                    self.writer.write_all(&pong).expect("pong");
                    continue;
                }
                0xa => continue,
                _ => message.extend_from_slice(&payload),
            }
            if fin {
                return String::from_utf8_lossy(&message).into_owned();
            }
        }
    }

    /// Sends a command and returns its answer (the whole message); panics on an error answer.
    pub fn call(&mut self, method: &str, params: &str) -> String {
        let id = self.next_id;
        self.next_id += 1;
        self.send_frame(format!("{{\"id\":{id},\"method\":\"{method}\",\"params\":{params}}}").as_bytes());
        let want = format!("\"id\":{id},");
        loop {
            let m = self.recv_message();
            if std::env::var_os("CDP_DEBUG").is_some() {
                eprintln!("<- {}", &m[..m.len().min(300)]);
            }
            if m.starts_with(&format!("{{{want}")) || m.contains(&format!(",{want}")) || m.starts_with(&want) {
                assert!(!m.contains("\"error\":{"), "{method} failed: {m}");
                return m;
            }
        }
    }

    /// Runs a JavaScript expression that yields a string, and returns that string.
    pub fn eval(&mut self, expr: &str) -> String {
        let params = format!("{{\"expression\":{},\"returnByValue\":true}}", json_string(expr));
        let m = self.call("Runtime.evaluate", &params);
        string_after(&m, "\"value\":").unwrap_or_default()
    }
}

/// A JSON string literal.
pub fn json_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The JSON string that follows `key` in `text`, decoded.
pub fn string_after(text: &str, key: &str) -> Option<String> {
    let start = text.find(key)? + key.len();
    let mut chars = text[start..].trim_start().strip_prefix('"')?.chars();
    let mut out = String::new();
    loop {
        match chars.next()? {
            '"' => return Some(out),
            '\\' => match chars.next()? {
                'n' => out.push('\n'),
                't' => out.push('\t'),
                'r' => out.push('\r'),
                'u' => {
                    let hex: String = chars.by_ref().take(4).collect();
                    out.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?).unwrap_or('\u{fffd}'));
                }
                c => out.push(c),
            },
            c => out.push(c),
        }
    }
}
