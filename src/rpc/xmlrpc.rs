//! XML-RPC values, requests and responses (reference 4.2).
//!
//! The encoder writes the exact shapes of Python's `xmlrpc.client.dumps`, which is what Supervisor
//! answers with and what its clients send, with two deliberate differences: a raw `\r` is written as
//! `&#13;` (Python's parser would turn it into `\n`), and characters that XML 1.0 forbids are
//! replaced by U+FFFD so the document stays well-formed (quirk Q17).
//!
//! The decoder accepts what Supervisor's own decoder accepts (`int`, `i4`, `boolean`, `string`,
//! `double`, `dateTime.iso8601`, `base64`, `array`, `struct`, untyped text) and `i8` and `nil`,
//! which supervisord takes as untyped values (an `<i8>` arrives there as the string of its digits,
//! which its methods turn back into a number; here it is the integer it says). Nesting is bounded
//! and DTDs are refused.

use std::fmt;

/// One XML-RPC value. `Struct` keeps its members in document order.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Int(i64),
    Bool(bool),
    String(String),
    Double(f64),
    DateTime(String),
    Base64(Vec<u8>),
    Array(Vec<Value>),
    Struct(Vec<(String, Value)>),
    Nil,
}

impl Value {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            Value::Int(i) => Some(*i != 0),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }

    /// The first member named `key` of a struct.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Struct(members) => members.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// `get(key)` as a string, `""` when missing or not a string.
    pub fn str_of(&self, key: &str) -> &str {
        self.get(key).and_then(Value::as_str).unwrap_or("")
    }

    /// `get(key)` as an int, 0 when missing or not an int (booleans count as 0/1).
    pub fn int_of(&self, key: &str) -> i64 {
        match self.get(key) {
            Some(Value::Int(i)) => *i,
            Some(Value::Bool(b)) => i64::from(*b),
            _ => 0,
        }
    }

    /// Builds a struct from `(&str, Value)` pairs, keeping their order.
    pub fn structure<K: Into<String>>(members: impl IntoIterator<Item = (K, Value)>) -> Value {
        Value::Struct(members.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value::String(s.to_string())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Value {
        Value::String(s)
    }
}

impl From<i64> for Value {
    fn from(i: i64) -> Value {
        Value::Int(i)
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Value {
        Value::Bool(b)
    }
}

/// An XML-RPC fault (`faultCode`, `faultString`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fault {
    pub code: i32,
    pub string: String,
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (fault {})", self.string, self.code)
    }
}

/// Why a document could not be decoded. `offset` is the byte position where it went wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    pub offset: usize,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid XML-RPC at byte {}: {}", self.offset, self.message)
    }
}

impl std::error::Error for ParseError {}

/// Deepest nesting of arrays/structs accepted; deeper documents are refused, never recursed into.
pub const MAX_DEPTH: usize = 64;

// ---------------------------------------------------------------------------------------------
// Encoding

/// Supervisor's `capped_int`: Python's marshaller refuses ints beyond 32 bits.
fn capped(i: i64) -> i64 {
    i.clamp(-(i32::MAX as i64), i32::MAX as i64)
}

/// Escapes text as Python's `xmlrpc.client.escape` does (`& < >` only), plus `\r` → `&#13;` and
/// characters XML 1.0 forbids → U+FFFD.
pub fn escape(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\r' => out.push_str("&#13;"),
            '\t' | '\n' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
}

/// Python's `repr(float)`: shortest round-trip digits, exponent form when the decimal point is
/// before the 4th leading zero or after the 16th digit.
pub fn python_float_repr(f: f64) -> String {
    if f.is_nan() {
        return "nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf".into() } else { "-inf".into() };
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0.0".into() } else { "0.0".into() };
    }
    // `{:e}` gives the shortest round-trip mantissa: "1.2345e-7".
    let sci = format!("{:e}", f.abs());
    let (mant, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mant.chars().filter(|c| c.is_ascii_digit()).collect();
    let decpt = exp + 1; // position of the decimal point relative to the digits
    let sign = if f < 0.0 { "-" } else { "" };
    let body = if decpt <= -4 || decpt > 16 {
        let mut m = digits[..1].to_string();
        if digits.len() > 1 {
            m.push('.');
            m.push_str(&digits[1..]);
        }
        let e = decpt - 1;
        format!("{m}e{}{:02}", if e < 0 { '-' } else { '+' }, e.abs())
    } else if decpt <= 0 {
        format!("0.{}{}", "0".repeat((-decpt) as usize), digits)
    } else if decpt as usize >= digits.len() {
        format!("{}{}.0", digits, "0".repeat(decpt as usize - digits.len()))
    } else {
        format!("{}.{}", &digits[..decpt as usize], &digits[decpt as usize..])
    };
    format!("{sign}{body}")
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding, no line breaks.
pub fn base64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes base64, ignoring whitespace (as Python's `decodebytes` does). `None` on bad input.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let mut acc: u32 = 0;
    let mut bits = 0;
    let mut pad = 0;
    for c in text.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => {
                pad += 1;
                continue;
            }
            c if c.is_ascii_whitespace() => continue,
            _ => return None,
        };
        if pad > 0 {
            return None;
        }
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    if pad > 2 {
        return None;
    }
    Some(out)
}

fn encode_value(v: &Value, out: &mut String) {
    match v {
        Value::Int(i) => {
            out.push_str("<value><int>");
            out.push_str(&capped(*i).to_string());
            out.push_str("</int></value>\n");
        }
        Value::Bool(b) => {
            out.push_str(if *b {
                "<value><boolean>1</boolean></value>\n"
            } else {
                "<value><boolean>0</boolean></value>\n"
            });
        }
        Value::String(s) => {
            out.push_str("<value><string>");
            escape(s, out);
            out.push_str("</string></value>\n");
        }
        Value::Double(f) => {
            out.push_str("<value><double>");
            out.push_str(&python_float_repr(*f));
            out.push_str("</double></value>\n");
        }
        Value::DateTime(s) => {
            out.push_str("<value><dateTime.iso8601>");
            escape(s, out);
            out.push_str("</dateTime.iso8601></value>\n");
        }
        Value::Base64(data) => {
            // base64.encodebytes: 76-column lines, each ending in a newline.
            out.push_str("<value><base64>\n");
            let enc = base64_encode(data);
            for line in enc.as_bytes().chunks(76) {
                out.push_str(std::str::from_utf8(line).unwrap_or(""));
                out.push('\n');
            }
            out.push_str("</base64></value>\n");
        }
        Value::Array(items) => {
            out.push_str("<value><array><data>\n");
            for item in items {
                encode_value(item, out);
            }
            out.push_str("</data></array></value>\n");
        }
        Value::Struct(members) => {
            out.push_str("<value><struct>\n");
            for (k, item) in members {
                out.push_str("<member>\n<name>");
                escape(k, out);
                out.push_str("</name>\n");
                encode_value(item, out);
                out.push_str("</member>\n");
            }
            out.push_str("</struct></value>\n");
        }
        // Python writes nil without the trailing newline.
        Value::Nil => out.push_str("<value><nil/></value>"),
    }
}

/// One value as `dumps` writes it (`<value>...</value>\n`).
pub fn encode_value_to_string(v: &Value) -> String {
    let mut out = String::new();
    encode_value(v, &mut out);
    out
}

/// A `methodResponse` carrying one value, as `dumps((v,), methodresponse=True)`.
pub fn encode_response(v: &Value) -> String {
    let mut out = String::from("<?xml version='1.0'?>\n<methodResponse>\n<params>\n<param>\n");
    encode_value(v, &mut out);
    out.push_str("</param>\n</params>\n</methodResponse>\n");
    out
}

/// A fault response, as `dumps(Fault(code, msg))`.
pub fn encode_fault(code: i32, msg: &str) -> String {
    let fault = Value::Struct(vec![
        ("faultCode".into(), Value::Int(i64::from(code))),
        ("faultString".into(), Value::String(msg.to_string())),
    ]);
    let mut out = String::from("<?xml version='1.0'?>\n<methodResponse>\n<fault>\n");
    encode_value(&fault, &mut out);
    out.push_str("</fault>\n</methodResponse>\n");
    out
}

/// A `methodCall`, as `dumps(params, methodname=method)`.
pub fn encode_call(method: &str, params: &[Value]) -> String {
    let mut out = String::from("<?xml version='1.0'?>\n<methodCall>\n<methodName>");
    escape(method, &mut out);
    out.push_str("</methodName>\n<params>\n");
    for p in params {
        out.push_str("<param>\n");
        encode_value(p, &mut out);
        out.push_str("</param>\n");
    }
    out.push_str("</params>\n</methodCall>\n");
    out
}

// ---------------------------------------------------------------------------------------------
// Decoding

#[derive(Debug, PartialEq)]
enum Token {
    Start(String),
    End(String),
    Text(String),
}

struct Tokens<'a> {
    src: &'a str,
    pos: usize,
    /// Tokens read but not consumed (a self-closing tag yields a start and an end).
    pending: std::collections::VecDeque<(usize, Token)>,
}

fn err<T>(offset: usize, message: impl Into<String>) -> Result<T, ParseError> {
    Err(ParseError { offset, message: message.into() })
}

fn decode_entities(raw: &str, offset: usize) -> Result<String, ParseError> {
    if !raw.contains('&') {
        return Ok(raw.to_string());
    }
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        rest = &rest[i + 1..];
        let Some(end) = rest.find(';') else {
            return err(offset, "unterminated entity");
        };
        let name = &rest[..end];
        let c = match name {
            "lt" => '<',
            "gt" => '>',
            "amp" => '&',
            "quot" => '"',
            "apos" => '\'',
            _ => {
                let code = if let Some(hex) = name.strip_prefix("#x") {
                    u32::from_str_radix(hex, 16).ok()
                } else if let Some(dec) = name.strip_prefix('#') {
                    dec.parse::<u32>().ok()
                } else {
                    None
                };
                match code.and_then(char::from_u32) {
                    Some(c) => c,
                    None => return err(offset, format!("unknown entity &{name};")),
                }
            }
        };
        out.push(c);
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

impl<'a> Tokens<'a> {
    fn new(src: &'a str) -> Self {
        Tokens { src, pos: 0, pending: std::collections::VecDeque::new() }
    }

    /// Reads one more token from the source into `pending` (nothing at the end of the input).
    fn read_raw(&mut self) -> Result<(), ParseError> {
        loop {
            let start = self.pos;
            let rest = &self.src[self.pos..];
            if rest.is_empty() {
                return Ok(());
            }
            if let Some(after) = rest.strip_prefix('<') {
                if after.starts_with('?') {
                    let Some(end) = rest.find("?>") else {
                        return err(start, "unterminated processing instruction");
                    };
                    self.pos += end + 2;
                    continue;
                }
                if after.starts_with("!--") {
                    let Some(end) = rest.find("-->") else {
                        return err(start, "unterminated comment");
                    };
                    self.pos += end + 3;
                    continue;
                }
                if after.starts_with('!') {
                    return err(start, "DTDs, entity declarations and CDATA are not accepted");
                }
                let Some(end) = rest.find('>') else {
                    return err(start, "unterminated tag");
                };
                let inner = &rest[1..end];
                self.pos += end + 1;
                if let Some(name) = inner.strip_prefix('/') {
                    self.pending.push_back((start, Token::End(name.trim().to_string())));
                    return Ok(());
                }
                let (inner, empty) = match inner.strip_suffix('/') {
                    Some(i) => (i, true),
                    None => (inner, false),
                };
                let name = inner.split_ascii_whitespace().next().unwrap_or("").to_string();
                if name.is_empty() {
                    return err(start, "empty tag name");
                }
                self.pending.push_back((start, Token::Start(name.clone())));
                if empty {
                    self.pending.push_back((start, Token::End(name)));
                }
                return Ok(());
            }
            let end = rest.find('<').unwrap_or(rest.len());
            self.pos += end;
            let text = decode_entities(&rest[..end], start)?;
            self.pending.push_back((start, Token::Text(text)));
            return Ok(());
        }
    }

    fn next(&mut self) -> Result<Option<(usize, Token)>, ParseError> {
        if self.pending.is_empty() {
            self.read_raw()?;
        }
        Ok(self.pending.pop_front())
    }

    fn peek(&mut self) -> Result<Option<&(usize, Token)>, ParseError> {
        if self.pending.is_empty() {
            self.read_raw()?;
        }
        Ok(self.pending.front())
    }

    /// The next token that is not whitespace-only text.
    fn next_significant(&mut self) -> Result<(usize, Token), ParseError> {
        loop {
            match self.next()? {
                None => return err(self.src.len(), "unexpected end of document"),
                Some((_, Token::Text(t))) if t.trim().is_empty() => continue,
                Some(t) => return Ok(t),
            }
        }
    }

    fn peek_significant(&mut self) -> Result<Option<&Token>, ParseError> {
        loop {
            let skip = matches!(self.peek()?, Some((_, Token::Text(t))) if t.trim().is_empty());
            if skip {
                self.pending.pop_front();
                continue;
            }
            return Ok(self.peek()?.map(|(_, t)| t));
        }
    }

    fn expect_start(&mut self, name: &str) -> Result<(), ParseError> {
        match self.next_significant()? {
            (_, Token::Start(n)) if n == name => Ok(()),
            (off, t) => err(off, format!("expected <{name}>, found {t:?}")),
        }
    }

    fn expect_end(&mut self, name: &str) -> Result<(), ParseError> {
        match self.next_significant()? {
            (_, Token::End(n)) if n == name => Ok(()),
            (off, t) => err(off, format!("expected </{name}>, found {t:?}")),
        }
    }

    /// Text up to `</name>` (empty if the element is empty).
    fn text_until_end(&mut self, name: &str) -> Result<String, ParseError> {
        let mut text = String::new();
        loop {
            match self.next()? {
                None => return err(self.src.len(), format!("unterminated <{name}>")),
                Some((_, Token::Text(t))) => text.push_str(&t),
                Some((_, Token::End(n))) if n == name => return Ok(text),
                Some((off, t)) => return err(off, format!("unexpected {t:?} inside <{name}>")),
            }
        }
    }
}

/// Parses the inside of a `<value>` (its start tag already consumed) up to and including `</value>`.
fn parse_value(tk: &mut Tokens, depth: usize) -> Result<Value, ParseError> {
    if depth > MAX_DEPTH {
        return err(tk.pos, "values nested too deeply");
    }
    // Untyped text or a typed child element.
    let mut text = String::new();
    let (off, tag) = loop {
        match tk.next()? {
            None => return err(tk.src.len(), "unterminated <value>"),
            Some((_, Token::Text(t))) => text.push_str(&t),
            Some((_, Token::End(n))) if n == "value" => return Ok(Value::String(text)),
            Some((off, Token::Start(n))) if text.trim().is_empty() => break (off, n),
            Some((off, t)) => return err(off, format!("unexpected {t:?} inside <value>")),
        }
    };
    let v = match tag.as_str() {
        "int" | "i4" | "i8" => int_value(off, &tk.text_until_end(&tag)?)?,
        "boolean" => match tk.text_until_end(&tag)?.trim() {
            "0" => Value::Bool(false),
            "1" => Value::Bool(true),
            other => return err(off, format!("bad boolean value {other:?}")),
        },
        "string" => Value::String(tk.text_until_end(&tag)?),
        "double" => {
            let t = tk.text_until_end(&tag)?;
            match t.trim().parse::<f64>() {
                Ok(f) => Value::Double(f),
                Err(_) => return err(off, format!("bad double value {t:?}")),
            }
        }
        "dateTime.iso8601" => Value::DateTime(tk.text_until_end(&tag)?.trim().to_string()),
        "base64" => match base64_decode(&tk.text_until_end(&tag)?) {
            Some(b) => Value::Base64(b),
            None => return err(off, "bad base64 data"),
        },
        "nil" => {
            tk.text_until_end(&tag)?;
            Value::Nil
        }
        "array" => {
            tk.expect_start("data")?;
            let mut items = Vec::new();
            loop {
                match tk.next_significant()? {
                    (_, Token::Start(n)) if n == "value" => items.push(parse_value(tk, depth + 1)?),
                    (_, Token::End(n)) if n == "data" => break,
                    (off, t) => return err(off, format!("unexpected {t:?} inside <data>")),
                }
            }
            tk.expect_end("array")?;
            Value::Array(items)
        }
        "struct" => {
            let mut members = Vec::new();
            loop {
                match tk.next_significant()? {
                    (_, Token::Start(n)) if n == "member" => {
                        tk.expect_start("name")?;
                        let name = tk.text_until_end("name")?;
                        tk.expect_start("value")?;
                        let v = parse_value(tk, depth + 1)?;
                        tk.expect_end("member")?;
                        members.push((name, v));
                    }
                    (_, Token::End(n)) if n == "struct" => break,
                    (off, t) => return err(off, format!("unexpected {t:?} inside <struct>")),
                }
            }
            Value::Struct(members)
        }
        other => return err(off, format!("unsupported type <{other}>")),
    };
    tk.expect_end("value")?;
    Ok(v)
}

fn int_value(off: usize, text: &str) -> Result<Value, ParseError> {
    match text.trim().parse::<i64>() {
        Ok(i) => Ok(Value::Int(i)),
        Err(_) => err(off, format!("bad int value {:?}", text.trim())),
    }
}

fn as_utf8(data: &[u8]) -> Result<&str, ParseError> {
    std::str::from_utf8(data)
        .map_err(|e| ParseError { offset: e.valid_up_to(), message: "the document is not valid UTF-8".into() })
}

/// `<params><param><value>..</value></param>...</params>` (the `<params>` start already consumed).
fn parse_params(tk: &mut Tokens) -> Result<Vec<Value>, ParseError> {
    let mut out = Vec::new();
    loop {
        match tk.next_significant()? {
            (_, Token::Start(n)) if n == "param" => {
                tk.expect_start("value")?;
                out.push(parse_value(tk, 0)?);
                tk.expect_end("param")?;
            }
            (_, Token::End(n)) if n == "params" => return Ok(out),
            (off, t) => return err(off, format!("unexpected {t:?} inside <params>")),
        }
    }
}

fn expect_document_end(tk: &mut Tokens) -> Result<(), ParseError> {
    let pos = tk.pos;
    match tk.peek_significant()? {
        None => Ok(()),
        Some(t) => err(pos, format!("trailing content {t:?}")),
    }
}

/// Decodes a request body into the method name and its parameters (missing `<params>` → none).
pub fn parse_method_call(data: &[u8]) -> Result<(String, Vec<Value>), ParseError> {
    let mut tk = Tokens::new(as_utf8(data)?);
    tk.expect_start("methodCall")?;
    tk.expect_start("methodName")?;
    // Not trimmed: Python's parser keeps the text as it is, so `supervisor.getState ` is an
    // unknown method there.
    let name = tk.text_until_end("methodName")?.to_string();
    if name.is_empty() {
        return err(tk.pos, "empty methodName");
    }
    let params = match tk.next_significant()? {
        (_, Token::Start(n)) if n == "params" => {
            let p = parse_params(&mut tk)?;
            tk.expect_end("methodCall")?;
            p
        }
        (_, Token::End(n)) if n == "methodCall" => Vec::new(),
        (off, t) => return err(off, format!("unexpected {t:?} inside <methodCall>")),
    };
    expect_document_end(&mut tk)?;
    Ok((name, params))
}

/// Decodes a `methodResponse`: the value, or the fault it carries.
pub fn parse_response(data: &[u8]) -> Result<Result<Value, Fault>, ParseError> {
    let mut tk = Tokens::new(as_utf8(data)?);
    tk.expect_start("methodResponse")?;
    let result = match tk.next_significant()? {
        (off, Token::Start(n)) if n == "params" => {
            let mut params = parse_params(&mut tk)?;
            if params.len() != 1 {
                return err(off, format!("a response carries one value, found {}", params.len()));
            }
            Ok(params.remove(0))
        }
        (off, Token::Start(n)) if n == "fault" => {
            tk.expect_start("value")?;
            let v = parse_value(&mut tk, 0)?;
            tk.expect_end("fault")?;
            let code = match v.get("faultCode") {
                Some(Value::Int(c)) => i32::try_from(*c).unwrap_or(0),
                _ => return err(off, "fault without an int faultCode"),
            };
            let string = v.str_of("faultString").to_string();
            Err(Fault { code, string })
        }
        (off, t) => return err(off, format!("unexpected {t:?} inside <methodResponse>")),
    };
    tk.expect_end("methodResponse")?;
    expect_document_end(&mut tk)?;
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Captured from Python 3.11: xmlrpc.client.dumps(({'a': 1, 'b': [True, 'x<&>"\'', 1.5, None]},),
    // methodresponse=True, allow_none=True)
    const PY_STRUCT_RESPONSE: &str = "<?xml version='1.0'?>\n<methodResponse>\n<params>\n<param>\n<value><struct>\n<member>\n<name>a</name>\n<value><int>1</int></value>\n</member>\n<member>\n<name>b</name>\n<value><array><data>\n<value><boolean>1</boolean></value>\n<value><string>x&lt;&amp;&gt;\"'</string></value>\n<value><double>1.5</double></value>\n<value><nil/></value></data></array></value>\n</member>\n</struct></value>\n</param>\n</params>\n</methodResponse>\n";

    // dumps((1, 's'), methodname='supervisor.startProcess')
    const PY_CALL: &str = "<?xml version='1.0'?>\n<methodCall>\n<methodName>supervisor.startProcess</methodName>\n<params>\n<param>\n<value><int>1</int></value>\n</param>\n<param>\n<value><string>s</string></value>\n</param>\n</params>\n</methodCall>\n";

    // dumps(Fault(10, 'BAD_NAME: a<b'))
    const PY_FAULT: &str = "<?xml version='1.0'?>\n<methodResponse>\n<fault>\n<value><struct>\n<member>\n<name>faultCode</name>\n<value><int>10</int></value>\n</member>\n<member>\n<name>faultString</name>\n<value><string>BAD_NAME: a&lt;b</string></value>\n</member>\n</struct></value>\n</fault>\n</methodResponse>\n";

    // dumps(((Binary(b'hello'*20), DateTime('20200101T00:00:00'), []),), methodresponse=True)
    const PY_BINARY: &str = "<?xml version='1.0'?>\n<methodResponse>\n<params>\n<param>\n<value><array><data>\n<value><base64>\naGVsbG9oZWxsb2hlbGxvaGVsbG9oZWxsb2hlbGxvaGVsbG9oZWxsb2hlbGxvaGVsbG9oZWxsb2hl\nbGxvaGVsbG9oZWxsb2hlbGxvaGVsbG9oZWxsb2hlbGxvaGVsbG9oZWxsbw==\n</base64></value>\n<value><dateTime.iso8601>20200101T00:00:00</dateTime.iso8601></value>\n<value><array><data>\n</data></array></value>\n</data></array></value>\n</param>\n</params>\n</methodResponse>\n";

    // dumps(({},), methodresponse=True)
    const PY_EMPTY_STRUCT: &str = "<?xml version='1.0'?>\n<methodResponse>\n<params>\n<param>\n<value><struct>\n</struct></value>\n</param>\n</params>\n</methodResponse>\n";

    fn sample_struct() -> Value {
        Value::structure([
            ("a", Value::Int(1)),
            ("b", Value::Array(vec![Value::Bool(true), Value::from("x<&>\"'"), Value::Double(1.5), Value::Nil])),
        ])
    }

    #[test]
    fn response_bytes_match_python_dumps() {
        assert_eq!(encode_response(&sample_struct()), PY_STRUCT_RESPONSE);
        assert_eq!(encode_response(&Value::Struct(vec![])), PY_EMPTY_STRUCT);
        let bin = Value::Array(vec![
            Value::Base64(b"hello".repeat(20)),
            Value::DateTime("20200101T00:00:00".into()),
            Value::Array(vec![]),
        ]);
        assert_eq!(encode_response(&bin), PY_BINARY);
    }

    #[test]
    fn call_and_fault_bytes_match_python_dumps() {
        assert_eq!(encode_call("supervisor.startProcess", &[Value::Int(1), "s".into()]), PY_CALL);
        assert_eq!(encode_fault(10, "BAD_NAME: a<b"), PY_FAULT);
    }

    #[test]
    fn python_documents_round_trip() {
        assert_eq!(parse_response(PY_STRUCT_RESPONSE.as_bytes()), Ok(Ok(sample_struct())));
        assert_eq!(parse_response(PY_FAULT.as_bytes()), Ok(Err(Fault { code: 10, string: "BAD_NAME: a<b".into() })));
        let (m, p) = parse_method_call(PY_CALL.as_bytes()).expect("call parses");
        assert_eq!(m, "supervisor.startProcess");
        assert_eq!(p, vec![Value::Int(1), Value::from("s")]);
        match parse_response(PY_BINARY.as_bytes()) {
            Ok(Ok(Value::Array(a))) => assert_eq!(a[0], Value::Base64(b"hello".repeat(20))),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn ints_are_capped_like_supervisor_capped_int() {
        assert_eq!(encode_value_to_string(&Value::Int(1 << 40)), "<value><int>2147483647</int></value>\n");
        assert_eq!(encode_value_to_string(&Value::Int(-(1 << 40))), "<value><int>-2147483647</int></value>\n");
    }

    #[test]
    fn carriage_return_and_forbidden_chars_are_escaped() {
        let v = Value::from("a\rb\x01c\td\ne\u{FFFF}");
        assert_eq!(encode_value_to_string(&v), "<value><string>a&#13;b\u{FFFD}c\td\ne\u{FFFD}</string></value>\n");
        let doc = encode_response(&Value::from("a\rb"));
        assert_eq!(parse_response(doc.as_bytes()), Ok(Ok(Value::from("a\rb"))));
    }

    #[test]
    fn floats_print_like_python_repr() {
        let cases = [
            (1e20, "1e+20"),
            (0.1, "0.1"),
            (-0.0, "-0.0"),
            (3.0, "3.0"),
            (1e-7, "1e-07"),
            (123456789012.5, "123456789012.5"),
            (f64::INFINITY, "inf"),
            (1e16, "1e+16"),
            (1e15, "1000000000000000.0"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (-2.5e-10, "-2.5e-10"),
        ];
        for (f, s) in cases {
            assert_eq!(python_float_repr(f), s, "{f}");
        }
    }

    #[test]
    fn decoder_accepts_supervisor_request_forms() {
        let doc = b"<?xml version=\"1.0\"?><methodCall><methodName>x.y</methodName><params>\
            <param><value><i4> 7 </i4></value></param>\
            <param><value>untyped &amp; &#65;&#x42;&apos;&quot;</value></param>\
            <param><value></value></param>\
            <param><value><boolean>0</boolean></value></param>\
            <param><value><double>2.5</double></value></param>\
            <param><value><base64>aGk=</base64></value></param>\
            <param><value><string/></value></param>\
            <param><value><struct><member><name>k</name><value><int>1</int></value></member></struct></value></param>\
            <param><value><i8>-3000000000</i8></value></param>\
            <param><value><nil/></value></param>\
            </params></methodCall>";
        let (m, p) = parse_method_call(doc).expect("parses");
        assert_eq!(m, "x.y");
        assert_eq!(
            p,
            vec![
                Value::Int(7),
                Value::from("untyped & AB'\""),
                Value::from(""),
                Value::Bool(false),
                Value::Double(2.5),
                Value::Base64(b"hi".to_vec()),
                Value::from(""),
                Value::structure([("k", Value::Int(1))]),
                Value::Int(-3_000_000_000),
                Value::Nil,
            ]
        );
        let (m, p) = parse_method_call(b"<methodCall><methodName>a.b</methodName></methodCall>").expect("parses");
        assert_eq!((m.as_str(), p.len()), ("a.b", 0));
    }

    #[test]
    fn decoder_refuses_what_supervisor_refuses() {
        let bad: &[&[u8]] = &[
            b"<!DOCTYPE x [<!ENTITY a 'b'>]><methodCall><methodName>a</methodName></methodCall>",
            b"<methodCall><methodName>a</methodName><params><param><value><int>99999999999999999999999</int></value></param></params></methodCall>",
            b"<methodCall><methodName>a</methodName><params><param><value><boolean>2</boolean></value></param></params></methodCall>",
            b"<methodCall><methodName>\xff\xfe</methodName></methodCall>",
            b"<methodCall><methodName>a</methodName><params><param><value>&bogus;</value></param></params></methodCall>",
            b"<methodCall>",
            b"",
            b"<methodCall><methodName></methodName></methodCall>",
            b"<methodCall><methodName>a</methodName></methodCall><extra/>",
        ];
        for doc in bad {
            assert!(parse_method_call(doc).is_err(), "{}", String::from_utf8_lossy(doc));
        }
    }

    #[test]
    fn deep_nesting_is_bounded_not_recursed() {
        let depth = 100_000;
        let mut doc = String::from("<methodCall><methodName>a</methodName><params><param><value>");
        doc.push_str(&"<array><data><value>".repeat(depth));
        doc.push_str(&"</value></data></array>".repeat(depth));
        doc.push_str("</value></param></params></methodCall>");
        let e = parse_method_call(doc.as_bytes()).expect_err("too deep");
        assert!(e.message.contains("nested too deeply"), "{e}");
        // Within the bound it works.
        let mut ok = String::from("<methodResponse><params><param><value>");
        ok.push_str(&"<array><data><value>".repeat(MAX_DEPTH));
        ok.push_str("<int>1</int>");
        ok.push_str(&"</value></data></array>".repeat(MAX_DEPTH));
        ok.push_str("</value></param></params></methodResponse>");
        assert!(matches!(parse_response(ok.as_bytes()), Ok(Ok(_))));
    }

    #[test]
    fn hostile_input_never_panics() {
        // Every prefix of valid documents, and a few byte soups.
        for doc in [PY_STRUCT_RESPONSE, PY_FAULT, PY_BINARY, PY_CALL] {
            for cut in 0..doc.len() {
                if doc.is_char_boundary(cut) {
                    let _ = parse_response(&doc.as_bytes()[..cut]);
                    let _ = parse_method_call(&doc.as_bytes()[..cut]);
                }
            }
        }
        let soups: &[&[u8]] =
            &[b"<", b">", b"</", b"<a/", b"&", b"&#;", b"&#x110000;", b"<value>&#0;</value>", b"<?", b"<!--"];
        for s in soups {
            let _ = parse_response(s);
            let _ = parse_method_call(s);
        }
    }

    #[test]
    fn base64_round_trips_every_length() {
        for n in 0..20u8 {
            let data: Vec<u8> = (0..n).map(|i| i.wrapping_mul(37)).collect();
            assert_eq!(base64_decode(&base64_encode(&data)), Some(data));
        }
        assert_eq!(base64_decode("a$=="), None);
    }

    #[test]
    fn every_value_kind_round_trips() {
        let v = Value::Array(vec![
            Value::Int(-5),
            Value::Bool(true),
            Value::from("é <tag> & \n"),
            Value::Double(-0.25),
            Value::DateTime("20240101T10:00:00".into()),
            Value::Base64(vec![0, 255, 10]),
            Value::structure([("x", Value::Array(vec![])), ("y", Value::Nil)]),
        ]);
        assert_eq!(parse_response(encode_response(&v).as_bytes()), Ok(Ok(v)));
    }
}

#[cfg(test)]
mod cr_regression {
    use super::*;

    #[test]
    fn carriage_return_next_to_replacement_chars_round_trips() {
        for s in ["(\u{fffd}\r\u{fffd}1", "a\rb", "\r", "\u{7f}\r", "literal &#13; stays"] {
            let v = Value::Array(vec![Value::String(s.to_string())]);
            let doc = encode_response(&v);
            let back = parse_response(doc.as_bytes()).expect("parses").expect("no fault");
            assert_eq!(back, v, "{doc}");
        }
    }
}
