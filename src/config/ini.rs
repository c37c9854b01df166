//! The INI reader: Python 3 `configparser.RawConfigParser(inline_comment_prefixes=(';', '#'),
//! strict=False)`, the parser Supervisor uses, ported rule for rule, with a file:line on every
//! value. A differential test below checks it against Python's own parser.

use std::fmt;
use std::path::{Path, PathBuf};

use super::model::Span;

/// One value as written (continuation lines joined with `\n`), with the line of its key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Value {
    pub text: String,
    pub span: Span,
}

/// A section, merged over every place it appears (later keys win, keeping their first position).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Section {
    pub name: String,
    /// The first header of this section.
    pub span: Span,
    pub entries: Vec<(String, Value)>,
}

impl Section {
    fn set(&mut self, key: String, value: Value) {
        match self.entries.iter_mut().find(|(k, _)| *k == key) {
            Some(entry) => entry.1 = value,
            None => self.entries.push((key, value)),
        }
    }
}

/// The two errors Python's parser raises, with Supervisor's texts (see `Display`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IniError {
    /// Lines that are neither a section header, an option nor a comment (all of them).
    Parsing {
        file: PathBuf,
        /// (1-based line number, the raw line including its newline if it had one)
        lines: Vec<(usize, String)>,
    },
    /// An option line before any section header.
    NoSectionHeader { file: PathBuf, line: usize, text: String },
}

impl fmt::Display for IniError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IniError::Parsing { file, lines } => {
                write!(f, "Source contains parsing errors: {}", py_repr(&file.to_string_lossy()))?;
                for (line, text) in lines {
                    write!(f, "\n\t[line {line:2}]: {}", py_repr(text))?;
                }
                Ok(())
            }
            IniError::NoSectionHeader { file, line, text } => write!(
                f,
                "File contains no section headers.\nfile: {}, line: {line}\n{}",
                py_repr(&file.to_string_lossy()),
                py_repr(text)
            ),
        }
    }
}

impl IniError {
    /// The first offending line, for the diagnostic's location.
    pub fn span(&self) -> Span {
        match self {
            IniError::Parsing { file, lines } => {
                Span { file: file.as_path().into(), line: lines.first().map(|l| l.0).unwrap_or(1) }
            }
            IniError::NoSectionHeader { file, line, .. } => Span { file: file.as_path().into(), line: *line },
        }
    }
}

/// Python's `repr()` of a str (the quoting used in Supervisor's messages).
pub fn py_repr(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') { '"' } else { '\'' };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if !py_printable(c) => match c as u32 {
                n if n <= 0xff => out.push_str(&format!("\\x{n:02x}")),
                n if n <= 0xffff => out.push_str(&format!("\\u{n:04x}")),
                n => out.push_str(&format!("\\U{n:08x}")),
            },
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

/// Python's `str.isprintable()` for the characters it escapes in `repr()`: other controls,
/// format characters and separators other than the ASCII space, and private use. (An
/// approximation of the Unicode categories Cc, Cf, Co, Zl, Zp and Zs, plus the noncharacters;
/// other unassigned code points are printed as they are.)
fn py_printable(c: char) -> bool {
    let n = c as u32;
    // Noncharacters (U+FDD0..U+FDEF, and the last two code points of every plane) are never
    // assigned: Python escapes them.
    let noncharacter = (0xfdd0..=0xfdef).contains(&n) || n & 0xfffe == 0xfffe;
    !noncharacter
        && !matches!(n,
        0x80..=0xa0 | 0xad | 0x600..=0x605 | 0x61c | 0x6dd | 0x70f | 0x1680 | 0x180e
        | 0x2000..=0x200f | 0x2028..=0x202f | 0x205f..=0x2064 | 0x2066..=0x206f | 0x3000
        | 0xfeff | 0xfff9..=0xfffb | 0xe000..=0xf8ff | 0xf0000..=0x10ffff | 0x110bd | 0x1bca0..=0x1bca3
        | 0x1d173..=0x1d17a | 0xe0001 | 0xe0020..=0xe007f)
}

/// Python's `str.isspace()` (Rust's `is_whitespace` lacks the four separators 0x1c-0x1f).
pub fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\x1c'..='\x1f').contains(&c)
}

/// Python's `str.strip()`.
pub fn py_strip(s: &str) -> &str {
    s.trim_matches(is_py_space)
}

/// All sections read so far, in the order they first appeared, plus `[DEFAULT]`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ini {
    pub sections: Vec<Section>,
    /// Section name → index in `sections` (a config with thousands of programs is read in
    /// linear time).
    index: std::collections::HashMap<String, usize>,
    /// `[DEFAULT]` keys: they show up in every section that does not set them itself.
    pub defaults: Vec<(String, Value)>,
}

const INLINE_PREFIXES: [char; 2] = [';', '#'];

/// Where the inline comment starts, following Python's search exactly: each round finds the
/// next occurrence of every prefix, and the round stops at the first one that qualifies
/// (preceded by whitespace or at column 0).
fn inline_comment_start(line: &[char]) -> Option<usize> {
    let find = |prefix: char, from: usize| line.iter().skip(from).position(|&c| c == prefix).map(|p| p + from);
    let mut pending: Vec<(char, isize)> = INLINE_PREFIXES.iter().map(|&p| (p, -1)).collect();
    let mut start: Option<usize> = None;
    while start.is_none() && !pending.is_empty() {
        let mut next = Vec::new();
        for (prefix, index) in pending {
            let Some(found) = find(prefix, (index + 1) as usize) else {
                continue;
            };
            next.push((prefix, found as isize));
            if found == 0 || is_py_space(line[found - 1]) {
                start = Some(start.map_or(found, |s: usize| s.min(found)));
            }
        }
        pending = next;
    }
    start
}

/// Splits text into lines the way a Python text file iterates (universal newlines), each line
/// keeping its `\n`.
fn py_lines(text: &str) -> Vec<String> {
    let normalized = text.replace("\r\n", "\n").replace('\r', "\n");
    normalized.split_inclusive('\n').map(str::to_string).collect()
}

#[derive(Clone, Copy)]
enum Cursor {
    None,
    Defaults,
    Section(usize),
}

impl Ini {
    pub fn new() -> Ini {
        Ini::default()
    }

    /// Reads one file's text into this parser, merging with what was read before.
    pub fn read(&mut self, text: &str, file: &Path) -> Result<(), IniError> {
        let shared: std::sync::Arc<Path> = file.into();
        let mut cursor = Cursor::None;
        let mut optname: Option<String> = None;
        // Every option line read, with its value lines; continuation lines go to the last one.
        let mut pending: Vec<(Cursor, String, Vec<String>, usize)> = Vec::new();
        let mut indent_level = 0usize;
        let mut errors: Vec<(usize, String)> = Vec::new();

        for (index, line) in py_lines(text).iter().enumerate() {
            let lineno = index + 1;
            let chars: Vec<char> = line.chars().collect();
            let mut comment_start = inline_comment_start(&chars);
            let stripped_line = py_strip(line);
            if stripped_line.starts_with('#') || stripped_line.starts_with(';') {
                comment_start = Some(0);
            }
            let head: String = match comment_start {
                Some(i) => chars[..i].iter().collect(),
                None => line.clone(),
            };
            let value = py_strip(&head).to_string();
            if value.is_empty() {
                // empty_lines_in_values: a blank line (not a comment) joins the value.
                if comment_start.is_none() && !matches!(cursor, Cursor::None) && optname.is_some() {
                    if let Some(last) = pending.last_mut() {
                        last.2.push(String::new());
                    }
                }
                continue;
            }
            let cur_indent = chars.iter().position(|&c| !is_py_space(c)).unwrap_or(0);
            if !matches!(cursor, Cursor::None) && optname.is_some() && cur_indent > indent_level {
                if let Some(last) = pending.last_mut() {
                    last.2.push(value);
                }
                continue;
            }
            indent_level = cur_indent;
            if let Some(header) = section_header(&value) {
                if header == "DEFAULT" {
                    cursor = Cursor::Defaults;
                } else {
                    let pos = match self.index.get(header.as_str()).copied() {
                        Some(pos) => pos,
                        None => {
                            self.sections.push(Section {
                                name: header.clone(),
                                span: Span { file: shared.clone(), line: lineno },
                                entries: Vec::new(),
                            });
                            self.index.insert(header.to_string(), self.sections.len() - 1);
                            self.sections.len() - 1
                        }
                    };
                    cursor = Cursor::Section(pos);
                }
                optname = None;
                continue;
            }
            if matches!(cursor, Cursor::None) {
                return Err(IniError::NoSectionHeader { file: file.to_path_buf(), line: lineno, text: line.clone() });
            }
            let target = cursor;
            match split_option(&value) {
                Some((name, val)) => {
                    if name.is_empty() {
                        errors.push((lineno, line.clone()));
                    }
                    let key = py_strip_end(name).to_lowercase();
                    optname = if key.is_empty() { None } else { Some(key.clone()) };
                    pending.push((target, key, vec![py_strip(val).to_string()], lineno));
                }
                None => errors.push((lineno, line.clone())),
            }
        }

        for (target, key, lines, lineno) in pending {
            let joined = lines.join("\n");
            let text = joined.trim_end_matches(is_py_space).to_string();
            let value = Value { text, span: Span { file: shared.clone(), line: lineno } };
            match target {
                Cursor::None => {}
                Cursor::Defaults => match self.defaults.iter_mut().find(|(k, _)| *k == key) {
                    Some(entry) => entry.1 = value,
                    None => self.defaults.push((key, value)),
                },
                Cursor::Section(i) => self.sections[i].set(key, value),
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(IniError::Parsing { file: file.to_path_buf(), lines: errors })
        }
    }

    pub fn section(&self, name: &str) -> Option<&Section> {
        self.index.get(name).map(|&i| &self.sections[i])
    }

    pub fn has_section(&self, name: &str) -> bool {
        self.section(name).is_some()
    }

    /// A value as Python's `get(section, key)` returns it: the section's own, else `[DEFAULT]`'s.
    pub fn get(&self, section: &str, key: &str) -> Option<&Value> {
        let own = self.section(section)?.entries.iter().find(|(k, _)| k == key).map(|(_, v)| v);
        own.or_else(|| self.defaults.iter().find(|(k, _)| k == key).map(|(_, v)| v))
    }

    /// Every key visible in a section (its own, then the `[DEFAULT]` ones it does not set).
    pub fn items(&self, section: &str) -> Vec<(&str, &Value)> {
        let Some(sec) = self.section(section) else {
            return Vec::new();
        };
        let mut out: Vec<(&str, &Value)> = sec.entries.iter().map(|(k, v)| (k.as_str(), v)).collect();
        for (k, v) in &self.defaults {
            if !sec.entries.iter().any(|(key, _)| key == k) {
                out.push((k.as_str(), v));
            }
        }
        out
    }
}

fn py_strip_end(s: &str) -> &str {
    s.trim_end_matches(is_py_space)
}

/// `\[(?P<header>.+)\]` matched at the start: the header runs to the last `]`.
fn section_header(value: &str) -> Option<String> {
    let rest = value.strip_prefix('[')?;
    let end = rest.rfind(']')?;
    if end == 0 {
        return None;
    }
    Some(rest[..end].to_string())
}

/// `(?P<option>.*?)\s*(?P<vi>=|:)\s*(?P<value>.*)$`: the first `=` or `:` separates.
fn split_option(value: &str) -> Option<(&str, &str)> {
    let pos = value.find(['=', ':'])?;
    Some((&value[..pos], &value[pos + 1..]))
}

#[doc(hidden)]
pub mod differential;

#[cfg(test)]
mod tests;
