//! A small JSON writer for the web API (RFC 8259 output only; minisv never reads JSON).

use super::xmlrpc::Value;

/// A JSON value. Objects keep their members in the order given.
#[derive(Clone, Debug, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

impl Json {
    pub fn obj<K: Into<String>>(members: impl IntoIterator<Item = (K, Json)>) -> Json {
        Json::Obj(members.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }

    pub fn str(s: impl Into<String>) -> Json {
        Json::Str(s.into())
    }

    /// The text, compact, without a trailing newline.
    pub fn render(&self) -> String {
        let mut out = String::new();
        self.write(&mut out);
        out
    }

    pub fn write(&self, out: &mut String) {
        match self {
            Json::Null => out.push_str("null"),
            Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Json::Int(n) => out.push_str(&n.to_string()),
            // JSON has no NaN or infinity.
            Json::Float(f) if !f.is_finite() => out.push_str("null"),
            Json::Float(f) => out.push_str(&format!("{f:?}")),
            Json::Str(s) => escape(s, out),
            Json::Arr(items) => {
                out.push('[');
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    v.write(out);
                }
                out.push(']');
            }
            Json::Obj(members) => {
                out.push('{');
                for (i, (k, v)) in members.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    escape(k, out);
                    out.push(':');
                    v.write(out);
                }
                out.push('}');
            }
        }
    }
}

/// A JSON string literal. Besides what JSON requires, `<`, `>`, `&` and the line separators
/// U+2028/U+2029 are escaped, so the text is also safe inside an HTML `<script>` element.
pub fn escape(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => out.push_str(&format!("\\u{:04x}", c as u32)),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// An XML-RPC value as JSON: structs become objects, base64 becomes its text form.
pub fn from_value(v: &Value) -> Json {
    match v {
        Value::Int(n) => Json::Int(*n),
        Value::Bool(b) => Json::Bool(*b),
        Value::String(s) | Value::DateTime(s) => Json::Str(s.clone()),
        Value::Double(f) => Json::Float(*f),
        Value::Base64(b) => Json::Str(String::from_utf8_lossy(b).into_owned()),
        Value::Array(items) => Json::Arr(items.iter().map(from_value).collect()),
        Value::Struct(members) => Json::Obj(members.iter().map(|(k, v)| (k.clone(), from_value(v))).collect()),
        Value::Nil => Json::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_escaped() {
        let s = Json::str("a\"b\\c\nd\u{1}e</script>\u{2028}é");
        assert_eq!(s.render(), r#""a\"b\\c\nd\u0001e\u003c/script\u003e\u2028é""#);
    }

    #[test]
    fn nesting_and_order() {
        let v = Json::obj([
            ("b", Json::Int(-3)),
            ("a", Json::Arr(vec![Json::Null, Json::Bool(true), Json::Float(1.5), Json::Float(f64::NAN)])),
            ("o", Json::obj::<&str>([])),
        ]);
        assert_eq!(v.render(), r#"{"b":-3,"a":[null,true,1.5,null],"o":{}}"#);
    }

    #[test]
    fn xmlrpc_values_convert() {
        let v = Value::structure([("name", Value::from("x")), ("pid", Value::Int(7)), ("ok", Value::Bool(false))]);
        assert_eq!(from_value(&v).render(), r#"{"name":"x","pid":7,"ok":false}"#);
    }
}
