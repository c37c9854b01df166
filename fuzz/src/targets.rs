//! The fuzz targets: one function per parser, each taking raw bytes, asserting that nothing
//! panics and checking the invariants that are cheap to state.
//!
//! This file is shared: the cargo-fuzz binaries in `fuzz/fuzz_targets/` call it, and the
//! integration test `tests/it/fuzz_smoke.rs` includes it with `#[path]`, so the smoke test in
//! CI and the long fuzz runs check exactly the same things. It may only use `minisv`, `mio`
//! and `std`.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use minisv::config::expand::{expand as expand_text, Names};
use minisv::config::ini::{is_py_space, Ini};
use minisv::config::types;
use minisv::rpc::xmlrpc::{self, Value};

/// Largest input a target is fed: bigger ones say nothing new and only slow the run down.
pub const MAX_INPUT: usize = 64 * 1024;

/// A target: raw bytes in, a panic on any violated invariant.
pub type Target = fn(&[u8]);

/// Every target, by the name of its cargo-fuzz binary and corpus directory.
pub const TARGETS: &[(&str, Target)] = &[
    ("ini", ini),
    ("expand", expand),
    ("types", types_target),
    ("config_load", config_load),
    ("xmlrpc_call", xmlrpc_call),
    ("xmlrpc_response", xmlrpc_response),
    ("xmlrpc_roundtrip", xmlrpc_roundtrip),
    ("base64", base64),
    ("shlex", shlex),
    ("output", output),
    ("ctl_transport", ctl_transport),
    ("http_server", http_server),
];

/// Reads structured choices from the front of the input and hands out the rest as text.
pub struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Input { data }
    }
    pub fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((b, rest)) => {
                self.data = rest;
                *b
            }
            None => 0,
        }
    }
    pub fn bytes(&mut self, n: usize) -> &'a [u8] {
        let n = n.min(self.data.len());
        let (head, rest) = self.data.split_at(n);
        self.data = rest;
        head
    }
    /// Bytes up to (not including) the next `sep`, or everything left.
    pub fn until(&mut self, sep: u8) -> &'a [u8] {
        match self.data.iter().position(|&b| b == sep) {
            Some(i) => {
                let head = &self.data[..i];
                self.data = &self.data[i + 1..];
                head
            }
            None => self.rest(),
        }
    }
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.data)
    }
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}

fn text(data: &[u8]) -> String {
    String::from_utf8_lossy(data).into_owned()
}

/// A directory of our own for targets that need files, removed by nobody: it lives in the
/// system temp dir and is reused by every call in this process.
fn scratch_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("minisv-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create the fuzz scratch dir");
        dir
    })
}

// ---------------------------------------------------------------------------------------------
// INI reader

/// Renders parsed sections back to INI text that the reader must read back to the same map.
/// `None` when a value holds text that the reader (like Python's) would take for a comment on
/// a second reading (`a ;b` survives a first reading when a `#` cut the line before it).
fn render_ini(ini: &Ini) -> Option<String> {
    let risky = |s: &str| {
        let chars: Vec<char> = s.chars().collect();
        chars.windows(2).any(|w| is_py_space(w[0]) && (w[1] == ';' || w[1] == '#')) || s.starts_with([';', '#'])
    };
    let mut out = String::new();
    let mut section = |name: &str, entries: &[(String, minisv::config::ini::Value)]| -> Option<()> {
        out.push_str(&format!("[{name}]\n"));
        for (key, value) in entries {
            if risky(key) || key.contains(['\n', '\r']) {
                return None;
            }
            let mut lines = value.text.split('\n');
            let first = lines.next().unwrap_or("");
            if risky(first) {
                return None;
            }
            out.push_str(&format!("{key}={first}\n"));
            for line in lines {
                if risky(line) {
                    return None;
                }
                out.push_str(&format!("  {line}\n"));
            }
        }
        Some(())
    };
    if !ini.defaults.is_empty() {
        section("DEFAULT", &ini.defaults)?;
    }
    for s in &ini.sections {
        if risky(&s.name) {
            return None;
        }
        section(&s.name, &s.entries)?;
    }
    Some(out)
}

fn ini_shape(ini: &Ini) -> Vec<(String, Vec<(String, String)>)> {
    let mut out =
        vec![("DEFAULT".to_string(), ini.defaults.iter().map(|(k, v)| (k.clone(), v.text.clone())).collect())];
    for s in &ini.sections {
        out.push((s.name.clone(), s.entries.iter().map(|(k, v)| (k.clone(), v.text.clone())).collect()));
    }
    out
}

pub fn ini(data: &[u8]) {
    let input = text(data);
    let file = Path::new("/etc/fuzz.conf");
    let mut parsed = Ini::new();
    let result = parsed.read(&input, file);
    let lines = input.split_inclusive(['\n', '\r']).count().max(1);
    match &result {
        Ok(()) => {}
        Err(e) => {
            let span = e.span();
            assert!(span.line >= 1 && span.line <= lines, "error line {} outside 1..={lines}", span.line);
            assert!(!e.to_string().is_empty());
        }
    }
    for s in &parsed.sections {
        assert!(!s.name.is_empty() && s.name != "DEFAULT", "bad section name {:?}", s.name);
        for (k, v) in &s.entries {
            assert!(v.span.line >= 1 && v.span.line <= lines, "value line {} outside 1..={lines}", v.span.line);
            assert_eq!(k, &k.to_lowercase(), "keys are lowercased");
            assert!(!v.text.ends_with(is_py_space), "values are stripped: {:?}", v.text);
            // get() sees what items() lists.
            assert_eq!(parsed.get(&s.name, k).map(|x| &x.text), Some(&v.text));
        }
    }
    if result.is_err() {
        return;
    }
    // Round trip: the map rendered as text reads back to the same map.
    if let Some(rendered) = render_ini(&parsed) {
        let mut again = Ini::new();
        again.read(&rendered, file).unwrap_or_else(|e| panic!("rendered INI does not parse: {e}\n{rendered}"));
        assert_eq!(ini_shape(&again), ini_shape(&parsed), "INI round trip differs; rendered:\n{rendered}");
    }
}

// ---------------------------------------------------------------------------------------------
// %(name)s expansion

pub fn expand(data: &[u8]) {
    let mut input = Input::new(data);
    let num = i64::from(input.byte() as i8) * 1000 + i64::from(input.byte());
    let mut names = Names::new();
    names.set_str("program_name", "web");
    names.set_str("group_name", "web");
    names.set_int("process_num", num);
    names.set_int("numprocs", 3);
    names.set_str("here", "/etc/supervisor");
    names.set_str("host_node_name", "box");
    names.set_str("ENV_HOME", "/root");
    names.set_str("c", "\u{e9}");
    names.add_env([("X", "%(program_name)s"), ("EMPTY", "")]);
    let text_in = text(input.rest());
    let result = expand_text(&text_in, &names, "program:web.command");
    match &result {
        Ok(out) => {
            if !text_in.contains('%') {
                assert_eq!(out, &text_in, "text without % must come back unchanged");
            }
        }
        Err(msg) => assert!(msg.starts_with("Format string "), "unexpected error text {msg:?}"),
    }
    // Expanding is deterministic.
    assert_eq!(expand_text(&text_in, &names, "program:web.command"), result);
}

// ---------------------------------------------------------------------------------------------
// Value types

pub fn types_target(data: &[u8]) {
    let mut input = Input::new(data);
    let which = input.byte();
    let s = text(input.rest());
    match which % 20 {
        0 => {
            if let Ok(b) = types::boolean(&s) {
                assert_eq!(types::boolean(if b { "true" } else { "false" }), Ok(b));
            }
        }
        1 => {
            if let Ok(n) = types::integer(&s) {
                assert_eq!(types::integer(&n.to_string()), Ok(n), "integer({s:?})");
            }
        }
        2 => {
            if let Ok(n) = types::byte_size(&s) {
                assert_eq!(types::byte_size(&n.to_string()), Ok(n), "byte_size({s:?})");
            }
        }
        3 => {
            if let Ok(n) = types::octal(&s) {
                assert_eq!(types::octal(&format!("{n:o}")), Ok(n), "octal({s:?})");
            }
        }
        4 => {
            if let Ok(n) = types::signal(&s) {
                assert!(n == 0 || types::signal_name(n).is_some(), "signal({s:?}) = {n} has no name");
            }
        }
        5 => {
            if let Ok(codes) = types::exitcodes(&s) {
                assert!(codes.iter().all(|c| (0..=255).contains(c)), "exitcodes({s:?}) = {codes:?}");
                assert!(codes.len() <= s.len() + 1);
            }
        }
        6 => {
            let _ = types::auto_restart(&s);
        }
        7 => {
            let _ = types::log_level(&s);
        }
        8 => {
            let _ = types::logfile_name(&s);
        }
        9 => {
            let _ = types::user(&s);
        }
        10 => {
            let _ = types::user_group(&s);
        }
        11 => {
            if let Ok((_, port)) = types::inet_address(&s) {
                assert!(port >= 1);
            }
        }
        12 => {
            if let Ok(u) = types::url(&s) {
                assert_eq!(u, s);
            }
        }
        13 => {
            if let Ok(name) = types::process_or_group_name(&s) {
                assert!(!name.contains([' ', ':', '/']), "name {name:?}");
            }
        }
        14 => {
            if let Ok(env) = types::environment(&s) {
                let mut keys: Vec<&String> = env.pairs.iter().map(|(k, _)| k).collect();
                let n = keys.len();
                keys.dedup();
                assert_eq!(keys.len(), n);
            }
        }
        15 => {
            let parts = types::py_split(&s);
            assert!(parts.iter().all(|p| !p.is_empty() && !p.contains(is_py_space)), "py_split({s:?}) = {parts:?}");
        }
        16 => {
            if let Some(n) = types::signal_number(&s) {
                assert!(types::signal_name(n).is_some());
            }
        }
        17 => {
            let _ = types::existing_directory(&s);
        }
        18 => {
            let _ = types::existing_dirpath(&s);
        }
        _ => {
            let expanded = types::expand_user(&s);
            if !s.starts_with('~') {
                assert_eq!(expanded, s);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The whole loader

/// Splits the input at this line into the main file and `inc.conf` (for `[include]`).
pub const INCLUDE_SPLIT: &str = "\n--8<-- inc.conf\n";

pub fn config_load(data: &[u8]) {
    use minisv::config::{load, load_ctl, Overrides};
    let dir = scratch_dir().join(format!("load-{:?}", std::thread::current().id()));
    std::fs::create_dir_all(&dir).expect("create the config dir");
    let input = text(data);
    let (main, inc) = input.split_once(INCLUDE_SPLIT).unwrap_or((&input, ""));
    let main_path = dir.join("supervisord.conf");
    std::fs::write(&main_path, main).expect("write the config");
    std::fs::write(dir.join("inc.conf"), inc).expect("write the include");
    let first = load(&main_path, &Overrides::default());
    match &first {
        Ok(cfg) => {
            for g in &cfg.groups {
                assert!(!g.name.is_empty());
            }
        }
        Err(errors) => {
            assert!(!errors.is_empty(), "a failed load reports at least one error");
            for e in errors {
                assert!(!e.to_string().is_empty());
            }
        }
    }
    let _ = load_ctl(&main_path);
    // Loading is deterministic.
    let second = load(&main_path, &Overrides::default());
    assert_eq!(format!("{first:?}"), format!("{second:?}"), "two loads of the same file differ");
}

// ---------------------------------------------------------------------------------------------
// XML-RPC

/// Text as it comes back from the encoder: characters XML 1.0 forbids become U+FFFD.
fn xml_text(t: &str) -> String {
    t.chars()
        .map(|c| match c {
            '\t' | '\n' | '\r' => c,
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => '\u{FFFD}',
            c => c,
        })
        .collect()
}

/// What a value becomes after one encode → decode: ints capped to 32 bits, characters XML
/// forbids replaced (quirk Q17).
pub fn normalize(v: &Value) -> Value {
    let s = |t: &str| xml_text(t);
    match v {
        Value::Int(i) => Value::Int((*i).clamp(-(i32::MAX as i64), i32::MAX as i64)),
        Value::String(t) => Value::String(s(t)),
        Value::DateTime(t) => Value::DateTime(s(t).trim().to_string()),
        Value::Array(items) => Value::Array(items.iter().map(normalize).collect()),
        Value::Struct(members) => Value::Struct(members.iter().map(|(k, v)| (s(k), normalize(v))).collect()),
        other => other.clone(),
    }
}

/// Equality that takes NaN as equal to NaN (and keeps -0.0 apart from 0.0).
pub fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Double(x), Value::Double(y)) => x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()),
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same_value(a, b)),
        (Value::Struct(x), Value::Struct(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|((ka, a), (kb, b))| ka == kb && same_value(a, b))
        }
        _ => a == b,
    }
}

fn depth(v: &Value) -> usize {
    match v {
        Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        Value::Struct(m) => 1 + m.iter().map(|(_, v)| depth(v)).max().unwrap_or(0),
        _ => 0,
    }
}

pub fn xmlrpc_call(data: &[u8]) {
    let Ok((name, params)) = xmlrpc::parse_method_call(data) else {
        return;
    };
    assert!(!name.is_empty());
    assert!(params.iter().all(|p| depth(p) <= xmlrpc::MAX_DEPTH + 1));
    let doc = xmlrpc::encode_call(&name, &params);
    let (name2, params2) =
        xmlrpc::parse_method_call(doc.as_bytes()).unwrap_or_else(|e| panic!("our own call does not parse: {e}\n{doc}"));
    // The name is kept as it is, whitespace included, as Python's parser keeps it.
    assert_eq!(name2, xml_text(&name));
    let want: Vec<Value> = params.iter().map(normalize).collect();
    assert!(
        want.len() == params2.len() && want.iter().zip(&params2).all(|(a, b)| same_value(a, b)),
        "call round trip differs:\n{want:?}\n{params2:?}\n{doc}"
    );
}

pub fn xmlrpc_response(data: &[u8]) {
    match xmlrpc::parse_response(data) {
        Err(e) => assert!(e.offset <= data.len(), "error offset {} beyond {}", e.offset, data.len()),
        Ok(Ok(v)) => check_response_round_trip(&v),
        Ok(Err(fault)) => {
            let doc = xmlrpc::encode_fault(fault.code, &fault.string);
            let again = xmlrpc::parse_response(doc.as_bytes())
                .unwrap_or_else(|e| panic!("our own fault does not parse: {e}\n{doc}"));
            let want = normalize(&Value::String(fault.string.clone()));
            match again {
                Err(f) => {
                    assert_eq!(f.code, fault.code);
                    assert_eq!(Value::String(f.string), want);
                }
                Ok(v) => panic!("fault came back as a value {v:?}"),
            }
        }
    }
}

fn check_response_round_trip(v: &Value) {
    let doc = xmlrpc::encode_response(v);
    match xmlrpc::parse_response(doc.as_bytes()) {
        Ok(Ok(back)) => {
            let want = normalize(v);
            assert!(same_value(&want, &back), "response round trip differs:\n{want:?}\n{back:?}\n{doc}");
        }
        other => panic!("our own response does not parse back: {other:?}\n{doc}"),
    }
}

/// Builds a value from bytes (nesting bounded by `budget`).
fn build_value(input: &mut Input, depth_left: usize) -> Value {
    let tag = input.byte();
    let string = |input: &mut Input| {
        let n = input.byte() as usize % 24;
        text(input.bytes(n))
    };
    match tag % 10 {
        0 => Value::Int(i64::from_le_bytes(pad8(input.bytes(8)))),
        1 => Value::Bool(input.byte() & 1 == 1),
        2 | 9 => Value::String(string(input)),
        3 => Value::Double(f64::from_le_bytes(pad8(input.bytes(8)))),
        4 => Value::DateTime(string(input)),
        5 => {
            let n = input.byte() as usize % 80;
            Value::Base64(input.bytes(n).to_vec())
        }
        6 if depth_left > 0 => {
            let n = input.byte() as usize % 5;
            Value::Array((0..n).map(|_| build_value(input, depth_left - 1)).collect())
        }
        7 if depth_left > 0 => {
            let n = input.byte() as usize % 5;
            Value::Struct((0..n).map(|_| (string(input), build_value(input, depth_left - 1))).collect())
        }
        8 => Value::Nil,
        _ => Value::String(string(input)),
    }
}

fn pad8(b: &[u8]) -> [u8; 8] {
    let mut out = [0u8; 8];
    out[..b.len()].copy_from_slice(b);
    out
}

/// Any value we can build survives encode_response → parse_response, and encode_call →
/// parse_method_call when it holds no nil (calls refuse nil, as Supervisor does).
pub fn xmlrpc_roundtrip(data: &[u8]) {
    let mut input = Input::new(data);
    let v = build_value(&mut input, 8);
    check_response_round_trip(&v);
    let params = vec![v.clone(), Value::String("x".into())];
    let doc = xmlrpc::encode_call("supervisor.startProcess", &params);
    let has_nil = format!("{v:?}").contains("Nil");
    match xmlrpc::parse_method_call(doc.as_bytes()) {
        Ok((name, back)) => {
            assert_eq!(name, "supervisor.startProcess");
            let want: Vec<Value> = params.iter().map(normalize).collect();
            assert!(want.iter().zip(&back).all(|(a, b)| same_value(a, b)) && want.len() == back.len());
        }
        Err(e) => assert!(has_nil, "our own call does not parse: {e}\n{doc}"),
    }
}

pub fn base64(data: &[u8]) {
    let enc = xmlrpc::base64_encode(data);
    assert_eq!(enc.len(), data.len().div_ceil(3) * 4);
    assert_eq!(xmlrpc::base64_decode(&enc).as_deref(), Some(data), "base64 round trip");
    if let Some(decoded) = xmlrpc::base64_decode(&text(data)) {
        assert!(decoded.len() <= data.len() * 3 / 4 + 3);
    }
}

// ---------------------------------------------------------------------------------------------
// Commands and output

/// POSIX shell quoting that `shlex.split` reads back as one word.
fn sh_quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', "'\"'\"'"))
}

pub fn shlex(data: &[u8]) {
    use minisv::daemon::spawn::{resolve_command, shlex_split};
    let s = text(data);
    if let Ok(words) = shlex_split(&s) {
        assert!(words.iter().map(|w| w.len()).sum::<usize>() <= s.len(), "words longer than the input");
        let quoted: Vec<String> = words.iter().map(|w| sh_quote(w)).collect();
        assert_eq!(shlex_split(&quoted.join(" ")).as_ref(), Ok(&words), "shlex quoting round trip");
    }
    // Resolving only stats files; it never runs anything.
    let _ = resolve_command(&s, Some("/nonexistent-fuzz-dir:/bin"));
}

pub fn output(data: &[u8]) {
    use minisv::daemon::output::{prefix_lines, strip_ansi, syslog_lines};
    let mut input = Input::new(data);
    let cut = input.byte() as usize;
    let prefix_len = input.byte() as usize % 8;
    let prefix = input.bytes(prefix_len).to_vec();
    let data = input.rest();

    let stripped = strip_ansi(data);
    assert!(stripped.len() <= data.len(), "strip_ansi made the output longer");
    if !data.windows(2).any(|w| w == b"\x1b[") {
        assert_eq!(&*stripped, data);
    }

    // Prefixing in one piece or in two gives the same bytes.
    let mut start = true;
    let whole = prefix_lines(data, &prefix, &mut start);
    let lines = data.iter().filter(|&&b| b == b'\n').count() + 1;
    assert!(whole.len() <= data.len() + prefix.len() * lines);
    let cut = if data.is_empty() { 0 } else { cut % (data.len() + 1) };
    let mut start2 = true;
    let mut parts = prefix_lines(&data[..cut], &prefix, &mut start2);
    parts.extend(prefix_lines(&data[cut..], &prefix, &mut start2));
    assert_eq!(parts, whole);
    assert_eq!(start, start2);

    let joined: Vec<u8> = syslog_lines(data).collect::<Vec<_>>().join(&b'\n');
    assert_eq!(joined, data.strip_suffix(b"\n").unwrap_or(data));
}

// ---------------------------------------------------------------------------------------------
// minisv ctl's HTTP client against a server that answers with the input

struct FakeServer {
    path: PathBuf,
    /// The response for the next connection.
    tx: std::sync::Mutex<std::sync::mpsc::Sender<Vec<u8>>>,
}

fn fake_server() -> &'static FakeServer {
    static SERVER: OnceLock<FakeServer> = OnceLock::new();
    SERVER.get_or_init(|| {
        let path = scratch_dir().join("fake-daemon.sock");
        let _ = std::fs::remove_file(&path);
        let listener = std::os::unix::net::UnixListener::bind(&path).expect("bind the fake daemon");
        let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
        std::thread::spawn(move || {
            for response in rx {
                let Ok((mut conn, _)) = listener.accept() else { return };
                // Read the request head (and the body of a POST) before answering, so that
                // closing never resets a connection with unread data.
                let mut req = Vec::new();
                let mut buf = [0u8; 4096];
                while !request_complete(&req) {
                    match conn.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = conn.write_all(&response);
                let _ = conn.shutdown(std::net::Shutdown::Write);
                // Wait for the client to hang up.
                while let Ok(n) = conn.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                }
            }
        });
        FakeServer { path, tx: std::sync::Mutex::new(tx) }
    })
}

fn request_complete(req: &[u8]) -> bool {
    let Some(end) = req.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&req[..end]).to_ascii_lowercase();
    let len = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    req.len() >= end + 4 + len
}

pub fn ctl_transport(data: &[u8]) {
    use minisv::ctl::transport::{stream_get, Endpoint, RpcConnection};
    let mut input = Input::new(data);
    let mode = input.byte();
    let response = input.rest();
    let server = fake_server();
    let endpoint = Endpoint::Unix(server.path.to_string_lossy().into_owned());
    let _ = Endpoint::parse(&text(response));
    let send = || server.tx.lock().unwrap_or_else(|e| e.into_inner()).send(response.to_vec()).expect("fake daemon");
    if mode & 1 == 0 {
        send();
        let mut conn = RpcConnection::new(endpoint, Some("Basic dXNlcjpwYXNz".into()));
        if let Ok(body) = conn.post("<?xml version='1.0'?>\n<methodCall>\n</methodCall>\n") {
            assert!(body.len() <= response.len(), "body longer than the response");
            let _ = xmlrpc::parse_response(&body);
        }
        conn.close();
    } else {
        send();
        let mut got = 0usize;
        let mut sink = |b: &[u8]| got += b.len();
        let _ = stream_get(&endpoint, "/logtail/web", None, &mut sink, &|| false);
        assert!(got <= response.len(), "streamed more than the response");
    }
}

// ---------------------------------------------------------------------------------------------
// The daemon's HTTP connections: framing, limits and Basic auth, split at every byte

/// `Authorization: Basic base64("user:password")`, the credentials of the fuzzed listener.
pub const GOOD_AUTH: &str = "Basic dXNlcjpwYXNzd29yZA==";

/// Feeds `input` to a connection in pieces of `step` bytes (each at most what it takes),
/// answers every request at once, and returns what it saw and wrote (Date headers blanked).
fn drive_conn(input: &[u8], step: usize, auth: Option<&minisv::config::Credentials>) -> (Vec<String>, Vec<u8>) {
    use minisv::rpc::conn::{Conn, Event, Policy, Response, Timeouts};
    use std::time::{Instant, SystemTime};
    let policy = Policy { auth, body_limit: |t| if t.starts_with("/RPC2") { 4096 } else { 64 } };
    let now = Instant::now();
    let mut conn = Conn::new(now, Timeouts::default());
    let (mut seen, mut out) = (Vec::new(), Vec::new());
    let mut rest = input;
    let mut eof = false;
    // Bounded: each round feeds at least one byte, or the EOF, or ends.
    for _ in 0..=input.len() + 2 {
        // Bounded: each request is answered, and a connection holds at most 16 KiB of input.
        for _ in 0..20_000 {
            match conn.poll(&policy, SystemTime::UNIX_EPOCH) {
                Some(Event::Request(r)) => {
                    let limit = if r.target.starts_with("/RPC2") { 4096 } else { 64 };
                    assert!(r.body.len() <= limit, "a body over the limit came through: {}", r.body.len());
                    if auth.is_some() {
                        let given = r.header("authorization").unwrap_or("").trim().to_string();
                        assert!(given.to_ascii_lowercase().starts_with("basic "), "allowed without Basic: {given:?}");
                    }
                    seen.push(format!("{} {} {:?} {}", r.method, r.target, r.version, r.body.len()));
                    conn.respond(&Response::new(200, "text/plain", "ok"), SystemTime::UNIX_EPOCH, now);
                }
                Some(Event::Log(line)) => seen.push(line),
                None => break,
            }
        }
        out.extend_from_slice(conn.output());
        let n = conn.output_len();
        conn.wrote(n, now);
        let take = step.min(conn.read_room()).min(rest.len());
        if take == 0 {
            // All sent (or nothing more taken): the client closes its side, once.
            if eof || !rest.is_empty() {
                break;
            }
            conn.received_eof();
            eof = true;
            continue;
        }
        conn.received(&rest[..take], now);
        rest = &rest[take..];
    }
    assert!(conn.read_room() <= minisv::rpc::conn::MAX_HEAD * 4);
    (seen, out)
}

pub fn http_server(data: &[u8]) {
    let mut input = Input::new(data);
    let flags = input.byte();
    let bytes = input.rest();
    let creds = minisv::config::Credentials { username: "user".into(), password: "password".into() };
    let auth = (flags & 1 == 1).then_some(&creds);
    let whole = drive_conn(bytes, usize::MAX, auth);
    // The same bytes split at every byte, and in pieces of a size the input chose, read the same.
    let step = usize::from(flags >> 1).max(1);
    assert_eq!(drive_conn(bytes, 1, auth), whole, "split at every byte");
    assert_eq!(drive_conn(bytes, step, auth), whole, "split every {step} bytes");
}
