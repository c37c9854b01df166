//! `[include] files=`: Python `glob.glob` (`*`, `?`, `[...]`; hidden names only match a
//! pattern that starts with `.`), applied to patterns joined onto the main file's directory.

use std::path::{Path, PathBuf};

/// Python `fnmatch.fnmatchcase` for one path component. Linear in the name for each `*`
/// (the classic greedy match that goes back only to the last star), so a pattern of many
/// stars cannot take exponential time, as a naive recursion did (found by fuzzing
/// `config_load`: `files=inc.****...` hung the loader).
pub fn fnmatch(name: &[char], pattern: &[char]) -> bool {
    let tokens = tokenize(pattern);
    let (mut t, mut n) = (0, 0);
    // After the last star seen: the token after it, and the name position it was tried at.
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match tokens.get(t) {
            Some(Token::Star) => {
                star = Some((t + 1, n));
                t += 1;
            }
            Some(tok) if tok.matches(name[n]) => {
                t += 1;
                n += 1;
            }
            _ => match star {
                // Let the last star take one more character and try again from there.
                Some((after, at)) => {
                    star = Some((after, at + 1));
                    t = after;
                    n = at + 1;
                }
                None => return false,
            },
        }
    }
    tokens[t..].iter().all(|tok| matches!(tok, Token::Star))
}

enum Token {
    Star,
    Any,
    Class(Class),
    Char(char),
}

impl Token {
    /// Whether this one-character token matches `c` (a star is handled by the caller).
    fn matches(&self, c: char) -> bool {
        match self {
            Token::Star => false,
            Token::Any => true,
            Token::Class(class) => class_matches(class, c),
            Token::Char(x) => *x == c,
        }
    }
}

fn tokenize(pattern: &[char]) -> Vec<Token> {
    let mut tokens = Vec::new();
    let mut rest = pattern;
    while let Some((&first, after)) = rest.split_first() {
        rest = after;
        let token = match first {
            // Consecutive stars match what one does.
            '*' if matches!(tokens.last(), Some(Token::Star)) => continue,
            '*' => Token::Star,
            '?' => Token::Any,
            '[' => match parse_class(after) {
                Some((class, past)) => {
                    rest = past;
                    Token::Class(class)
                }
                // No closing bracket: a literal '['.
                None => Token::Char('['),
            },
            c => Token::Char(c),
        };
        tokens.push(token);
    }
    tokens
}

struct Class {
    negate: bool,
    items: Vec<(char, char)>,
}

/// Parses the inside of `[...]` (after `[`), returning the class and what follows `]`.
fn parse_class(p: &[char]) -> Option<(Class, &[char])> {
    let mut i = 0;
    let negate = p.first() == Some(&'!');
    if negate {
        i += 1;
    }
    // A ']' right after '[' or '[!' is literal.
    if p.get(i) == Some(&']') {
        i += 1;
    }
    while i < p.len() && p[i] != ']' {
        i += 1;
    }
    if i >= p.len() {
        return None;
    }
    let body = &p[usize::from(negate)..i];
    let mut items = Vec::new();
    let mut j = 0;
    while j < body.len() {
        if j + 2 < body.len() && body[j + 1] == '-' {
            items.push((body[j], body[j + 2]));
            j += 3;
        } else {
            items.push((body[j], body[j]));
            j += 1;
        }
    }
    Some((Class { negate, items }, &p[i + 1..]))
}

fn class_matches(class: &Class, c: char) -> bool {
    let hit = class.items.iter().any(|&(lo, hi)| lo <= c && c <= hi);
    hit != class.negate
}

fn has_magic(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// Python `glob.glob(pattern)` for an absolute pattern, sorted.
pub fn glob(pattern: &Path) -> Vec<PathBuf> {
    let text = pattern.to_string_lossy();
    if !has_magic(&text) {
        return if std::fs::symlink_metadata(pattern).is_ok() { vec![pattern.to_path_buf()] } else { Vec::new() };
    }
    let mut current = vec![PathBuf::from(if text.starts_with('/') { "/" } else { "." })];
    let parts: Vec<&str> = text.split('/').filter(|p| !p.is_empty()).collect();
    for (index, part) in parts.iter().enumerate() {
        let last = index + 1 == parts.len();
        let mut next = Vec::new();
        for base in &current {
            if has_magic(part) {
                let Ok(entries) = std::fs::read_dir(base) else {
                    continue;
                };
                let pat: Vec<char> = part.chars().collect();
                for entry in entries.flatten() {
                    let name = entry.file_name().to_string_lossy().into_owned();
                    if name.starts_with('.') && !part.starts_with('.') {
                        continue;
                    }
                    let chars: Vec<char> = name.chars().collect();
                    if fnmatch(&chars, &pat) {
                        let path = base.join(&name);
                        if last || path.is_dir() {
                            next.push(path);
                        }
                    }
                }
            } else {
                let path = base.join(part);
                let ok = if last { std::fs::symlink_metadata(&path).is_ok() } else { path.is_dir() };
                if ok {
                    next.push(path);
                }
            }
        }
        current = next;
    }
    let mut out: Vec<PathBuf> = current;
    out.sort_by(|a, b| a.to_string_lossy().cmp(&b.to_string_lossy()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(name: &str, pattern: &str) -> bool {
        fnmatch(&name.chars().collect::<Vec<_>>(), &pattern.chars().collect::<Vec<_>>())
    }

    #[test]
    fn fnmatch_follows_python() {
        assert!(m("a.conf", "*.conf"));
        assert!(!m("a.ini", "*.conf"));
        assert!(m("ab", "a?"));
        assert!(m("a1", "a[0-9]"));
        assert!(!m("a1", "a[!0-9]"));
        assert!(m("a]", "a[]]"));
        assert!(m("a[", "a["));
        assert!(m("", "*"));
        assert!(m("abc", "a**c") && m("ac", "a*c") && !m("ab", "a*c"));
        assert!(m("a*b", "a[*]b") && !m("axb", "a[*]b"));
        assert!(m("x.conf.conf", "*.conf") && m("aXbXc", "*X*X*") && !m("aXb", "*X*X*"));
        assert!(m("ab", "[a-c]?") && !m("[ab", "[a-c]?b"));
        assert!(m("[ab", "[ab") && m("a[b", "a[b"));
    }

    #[test]
    fn many_stars_take_no_time() {
        let name: Vec<char> = "inc.conf".repeat(8).chars().collect();
        let pattern: Vec<char> = format!("inc.{}x", "*".repeat(60)).chars().collect();
        let t = std::time::Instant::now();
        assert!(!fnmatch(&name, &pattern));
        let stars: Vec<char> = "*a".repeat(40).chars().collect();
        assert!(!fnmatch(&"a".repeat(39).chars().collect::<Vec<_>>(), &stars));
        assert!(t.elapsed() < std::time::Duration::from_secs(1), "{:?}", t.elapsed());
    }

    #[test]
    fn glob_is_sorted_and_skips_hidden_files() {
        let dir = std::env::temp_dir().join(format!("minisv-glob-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        for f in ["b.conf", "a.conf", ".hidden.conf", "c.ini", "sub/d.conf"] {
            std::fs::write(dir.join(f), "").unwrap();
        }
        let found = glob(&dir.join("*.conf"));
        assert_eq!(found, vec![dir.join("a.conf"), dir.join("b.conf")]);
        assert_eq!(glob(&dir.join("*/*.conf")), vec![dir.join("sub/d.conf")]);
        assert_eq!(glob(&dir.join("c.ini")), vec![dir.join("c.ini")]);
        assert!(glob(&dir.join("nope*")).is_empty());
        std::fs::remove_dir_all(&dir).ok();
    }
}
