//! `[include] files=`: Python `glob.glob` (`*`, `?`, `[...]`; hidden names only match a
//! pattern that starts with `.`), applied to patterns joined onto the main file's directory.

use std::path::{Path, PathBuf};

/// Python `fnmatch.fnmatchcase` for one path component.
pub fn fnmatch(name: &[char], pattern: &[char]) -> bool {
    let Some((&first, rest)) = pattern.split_first() else {
        return name.is_empty();
    };
    match first {
        '*' => (0..=name.len()).any(|i| fnmatch(&name[i..], rest)),
        '?' => !name.is_empty() && fnmatch(&name[1..], rest),
        '[' => match parse_class(rest) {
            Some((class, after)) => match name.split_first() {
                Some((&c, tail)) => class_matches(&class, c) && fnmatch(tail, after),
                None => false,
            },
            // No closing bracket: a literal '['.
            None => name.first() == Some(&'[') && fnmatch(&name[1..], rest),
        },
        c => name.first() == Some(&c) && fnmatch(&name[1..], rest),
    }
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
