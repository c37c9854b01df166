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

/// The two errors Python's parser raises (where supervisord prints Python's texts, these are
/// said in plain words, one per line at fault).
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

const EXPECTED_LINE: &str =
    "expected a [section] header, key = value (or key: value), a comment, or an indented continuation line";

impl IniError {
    /// One (location, message) for each line at fault.
    pub fn diagnostics(&self) -> Vec<(Span, String)> {
        let at = |file: &PathBuf, line: usize| Span { file: file.as_path().into(), line };
        let shown = |text: &str| py_repr(text.trim_end_matches(['\n', '\r']));
        match self {
            IniError::Parsing { file, lines } => lines
                .iter()
                .map(|(line, text)| (at(file, *line), format!("cannot read {}; {EXPECTED_LINE}", shown(text))))
                .collect(),
            IniError::NoSectionHeader { file, line, text } => {
                vec![(at(file, *line), format!("{} comes before any [section] header", shown(text)))]
            }
        }
    }

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

impl fmt::Display for IniError {
    /// Every line at fault, `line N: message`, one a line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (span, message)) in self.diagnostics().into_iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "line {}: {message}", span.line)?;
        }
        Ok(())
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

/// Where the inline comment starts (a byte index), following Python's search exactly: each
/// round finds the next occurrence of every prefix, and the round stops at the first one that
/// qualifies (preceded by whitespace or at column 0).
fn inline_comment_start(line: &str) -> Option<usize> {
    // The index each prefix was last found at (None: not found any more). The prefixes are
    // ASCII, so the next search starts one byte after.
    let mut found: [Option<usize>; INLINE_PREFIXES.len()] = [Some(0); INLINE_PREFIXES.len()];
    let mut first_round = true;
    let mut start: Option<usize> = None;
    while start.is_none() && found.iter().any(Option::is_some) {
        for (prefix, slot) in INLINE_PREFIXES.iter().zip(found.iter_mut()) {
            let Some(from) = *slot else { continue };
            let from = if first_round { 0 } else { from + 1 };
            *slot = line.get(from..).and_then(|rest| rest.find(*prefix)).map(|p| p + from);
            let Some(at) = *slot else { continue };
            if at == 0 || line[..at].chars().next_back().is_some_and(is_py_space) {
                start = Some(start.map_or(at, |s: usize| s.min(at)));
            }
        }
        first_round = false;
    }
    start
}

/// The text with universal newlines (as a Python text file reads it): `\r\n` and `\r` become
/// `\n`.
fn py_newlines(text: &str) -> std::borrow::Cow<'_, str> {
    if text.contains('\r') {
        std::borrow::Cow::Owned(text.replace("\r\n", "\n").replace('\r', "\n"))
    } else {
        std::borrow::Cow::Borrowed(text)
    }
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
        // Whether the last line set an option (with a non-empty name) that may continue.
        let mut in_option = false;
        // Every option line read, with its value; continuation lines join the last one.
        let mut pending: Vec<(Cursor, String, String, usize)> = Vec::new();
        let mut indent_level = 0usize;
        let mut errors: Vec<(usize, String)> = Vec::new();

        for (index, line) in py_newlines(text).split_inclusive('\n').enumerate() {
            let lineno = index + 1;
            let mut comment_start = inline_comment_start(line);
            let stripped_line = py_strip(line);
            if stripped_line.starts_with('#') || stripped_line.starts_with(';') {
                comment_start = Some(0);
            }
            let value = py_strip(comment_start.map_or(line, |i| &line[..i]));
            if value.is_empty() {
                // empty_lines_in_values: a blank line (not a comment) joins the value.
                if comment_start.is_none() && !matches!(cursor, Cursor::None) && in_option {
                    if let Some(last) = pending.last_mut() {
                        last.2.push('\n');
                    }
                }
                continue;
            }
            // In characters, as Python counts them.
            let cur_indent = line.chars().position(|c| !is_py_space(c)).unwrap_or(0);
            if !matches!(cursor, Cursor::None) && in_option && cur_indent > indent_level {
                if let Some(last) = pending.last_mut() {
                    last.2.push('\n');
                    last.2.push_str(value);
                }
                continue;
            }
            indent_level = cur_indent;
            if let Some(header) = section_header(value) {
                if header == "DEFAULT" {
                    cursor = Cursor::Defaults;
                } else {
                    let pos = match self.index.get(header).copied() {
                        Some(pos) => pos,
                        None => {
                            self.sections.push(Section {
                                name: header.to_string(),
                                span: Span { file: shared.clone(), line: lineno },
                                entries: Vec::new(),
                            });
                            self.index.insert(header.to_string(), self.sections.len() - 1);
                            self.sections.len() - 1
                        }
                    };
                    cursor = Cursor::Section(pos);
                }
                in_option = false;
                continue;
            }
            if matches!(cursor, Cursor::None) {
                return Err(IniError::NoSectionHeader {
                    file: file.to_path_buf(),
                    line: lineno,
                    text: line.to_string(),
                });
            }
            match split_option(value) {
                Some((name, val)) => {
                    if name.is_empty() {
                        errors.push((lineno, line.to_string()));
                    }
                    let key = py_strip_end(name).to_lowercase();
                    in_option = !key.is_empty();
                    pending.push((cursor, key, py_strip(val).to_string(), lineno));
                }
                None => errors.push((lineno, line.to_string())),
            }
        }

        for (target, key, mut text, lineno) in pending {
            text.truncate(text.trim_end_matches(is_py_space).len());
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
fn section_header(value: &str) -> Option<&str> {
    let rest = value.strip_prefix('[')?;
    let end = rest.rfind(']')?;
    if end == 0 {
        return None;
    }
    Some(&rest[..end])
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
