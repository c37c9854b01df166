//! Environment files (`environment_file=`): the dotenv syntax that systemd's `EnvironmentFile=`,
//! Docker's `--env-file` and the dotenv libraries share, read at every spawn.
//!
//! - `KEY=VALUE` lines; blank lines and lines starting with `#` are skipped; `export ` before the
//!   key is allowed (so the file can be sourced by a shell); spaces around the `=` are allowed.
//! - A key is a letter or `_`, then letters, digits or `_`.
//! - An unquoted value runs to the end of the line, without the spaces around it; ` #` starts a
//!   comment.
//! - `'...'` keeps everything literally; `"..."` understands `\\`, `\"`, `\n`, `\t`, `\r` and `\$`
//!   (any other backslash is kept). Quoted values may span lines (certificates, keys).
//! - Nothing is expanded: `$OTHER` stays as written.
//!
//! Errors name the file and line but never the text of the line: it may hold a secret.

use std::io::Read;
use std::path::Path;

/// The largest environment file read (a mistake, such as pointing at a log, should not fill
/// the daemon's memory).
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// Reads and parses one environment file. Err: `path:line: what is wrong` (or `path: why it
/// cannot be read`).
pub fn read(path: &Path) -> Result<Vec<(String, String)>, String> {
    let name = path.display();
    let file = std::fs::File::open(path).map_err(|e| format!("{name}: {}", io_reason(&e)))?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes).map_err(|e| format!("{name}: {}", io_reason(&e)))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(format!("{name}: larger than {} KiB; is it really an environment file?", MAX_FILE_BYTES / 1024));
    }
    let text = String::from_utf8(bytes).map_err(|_| format!("{name}: not UTF-8 text"))?;
    parse(&text).map_err(|(line, msg)| format!("{name}:{line}: {msg}"))
}

/// An I/O error in plain words ("permission denied", not "Permission denied (os error 13)").
pub fn io_reason(e: &std::io::Error) -> String {
    let s = e.to_string();
    let s = s.split(" (os error").next().unwrap_or(&s);
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

/// Parses the text of an environment file into its pairs, in order. Err: (line, message).
pub fn parse(text: &str) -> Result<Vec<(String, String)>, (usize, String)> {
    let lines: Vec<&str> = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l)).collect();
    let mut pairs = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let lineno = i + 1;
        let line = lines[i].trim_start();
        i += 1;
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = match line.strip_prefix("export") {
            Some(rest) if rest.starts_with([' ', '\t']) => rest.trim_start(),
            _ => line,
        };
        let Some((key, rest)) = line.split_once('=') else {
            return Err((lineno, "expected KEY=VALUE".into()));
        };
        let key = key.trim_end();
        if !valid_key(key) {
            return Err((
                lineno,
                "the name before '=' is not a variable name (letters, digits and _, not starting with a digit)".into(),
            ));
        }
        let raw = rest;
        let rest = rest.trim_start();
        let value = match rest.chars().next() {
            Some(q @ ('\'' | '"')) => {
                let (value, after, used) = quoted(&rest[1..], q, &lines[i..])
                    .ok_or_else(|| (lineno, format!("{key}: the value's opening {q} is never closed")))?;
                i += used;
                let after = after.trim_start();
                if !after.is_empty() && !after.starts_with('#') {
                    return Err((lineno + used, format!("{key}: unexpected text after the closing {q}")));
                }
                value
            }
            _ => unquoted(raw),
        };
        if value.contains('\0') {
            return Err((lineno, format!("{key}: a value cannot hold a NUL byte")));
        }
        pairs.push((key.to_string(), value));
    }
    Ok(pairs)
}

fn valid_key(key: &str) -> bool {
    let mut c = key.chars();
    matches!(c.next(), Some(f) if f == '_' || f.is_ascii_alphabetic())
        && c.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

/// An unquoted value: up to a ` #` comment, without surrounding spaces (`A=#x` is "#x").
fn unquoted(rest: &str) -> String {
    let mut end = rest.len();
    let b = rest.as_bytes();
    for (j, &c) in b.iter().enumerate() {
        if c == b'#' && j > 0 && (b[j - 1] == b' ' || b[j - 1] == b'\t') {
            end = j;
            break;
        }
    }
    rest[..end].trim().to_string()
}

/// A quoted value starting after the quote in `first`, continuing on `more` lines if need be:
/// (value, the text after the closing quote, lines used beyond the first). None: never closed.
fn quoted<'a>(first: &'a str, q: char, more: &[&'a str]) -> Option<(String, &'a str, usize)> {
    let mut value = String::new();
    let mut line = first;
    let mut used = 0;
    loop {
        let mut chars = line.char_indices();
        while let Some((j, c)) = chars.next() {
            if c == q {
                return Some((value, &line[j + 1..], used));
            }
            if c == '\\' && q == '"' {
                match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, 't')) => value.push('\t'),
                    Some((_, 'r')) => value.push('\r'),
                    Some((_, e @ ('\\' | '"' | '$'))) => value.push(e),
                    Some((_, other)) => {
                        value.push('\\');
                        value.push(other);
                    }
                    None => value.push('\\'),
                }
                continue;
            }
            value.push(c);
        }
        line = more.get(used)?;
        used += 1;
        value.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> Vec<(String, String)> {
        parse(text).unwrap_or_else(|e| panic!("{text:?}: {e:?}"))
    }

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn plain_lines_comments_and_blanks() {
        let text = "# a comment\n\nA=1\n  B = two words  \n\tC=x # trailing comment\nD=a#b\r\n   # indented comment\n";
        assert_eq!(ok(text), pairs(&[("A", "1"), ("B", "two words"), ("C", "x"), ("D", "a#b")]));
    }

    #[test]
    fn export_prefix_is_dropped() {
        assert_eq!(ok("export A=1\nexport\tB=2\nexporter=3\n"), pairs(&[("A", "1"), ("B", "2"), ("exporter", "3")]));
    }

    #[test]
    fn empty_values() {
        assert_eq!(
            ok("A=\nB=''\nC=\"\"\nD= # nothing\nE=#x\n"),
            pairs(&[("A", ""), ("B", ""), ("C", ""), ("D", ""), ("E", "#x")])
        );
    }

    #[test]
    fn single_quotes_are_literal() {
        assert_eq!(ok(r#"A='a "b" \n $c # d'"#), pairs(&[("A", r#"a "b" \n $c # d"#)]));
    }

    #[test]
    fn double_quotes_understand_escapes() {
        assert_eq!(ok(r#"A="x\ny\t\"q\" \\ \$HOME \z" # comment"#), pairs(&[("A", "x\ny\t\"q\" \\ $HOME \\z")]));
    }

    #[test]
    fn quoted_values_may_span_lines() {
        let text = "KEY=\"-----BEGIN-----\nabc\n-----END-----\"\nNEXT=1\n";
        assert_eq!(ok(text), pairs(&[("KEY", "-----BEGIN-----\nabc\n-----END-----"), ("NEXT", "1")]));
    }

    #[test]
    fn later_keys_are_kept_in_order() {
        assert_eq!(ok("A=1\nA=2\n"), pairs(&[("A", "1"), ("A", "2")]));
    }

    #[test]
    fn bad_lines_name_their_line_and_not_their_text() {
        let cases: &[(&str, usize, &str)] = &[
            ("A=1\nsecret-without-equals\n", 2, "expected KEY=VALUE"),
            ("1A=x\n", 1, "not a variable name"),
            ("MY-KEY=x\n", 1, "not a variable name"),
            ("=x\n", 1, "not a variable name"),
            ("A=1\nB=\"never closed\nC=3\n", 2, "B: the value's opening \" is never closed"),
            ("A='x' y\n", 1, "A: unexpected text after the closing '"),
            ("A=\"x\ny\" z\n", 2, "unexpected text after the closing"),
            ("A=\"a\\0b\0\"\n", 1, "NUL"),
        ];
        for (text, line, msg) in cases {
            let (l, m) = parse(text).expect_err(text);
            assert_eq!(l, *line, "{text:?}: {m}");
            assert!(m.contains(msg), "{text:?}: {m}");
            assert!(!m.contains("secret") && !m.contains("never closed\n"), "{m}");
        }
    }

    #[test]
    fn read_names_the_file() {
        let dir = std::env::temp_dir().join(format!("minisv-dotenv-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let f = dir.join("app.env");
        std::fs::write(&f, "A=1\nbad line\n").expect("write");
        assert_eq!(read(&f), Err(format!("{}:2: expected KEY=VALUE", f.display())));
        let missing = dir.join("missing.env");
        assert_eq!(read(&missing), Err(format!("{}: no such file or directory", missing.display())));
        std::fs::write(&f, vec![b'#'; MAX_FILE_BYTES as usize + 1]).expect("write");
        assert!(read(&f).expect_err("too big").contains("larger than 1024 KiB"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
